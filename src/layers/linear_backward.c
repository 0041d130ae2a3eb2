/* linear_backward.c - the backward pass of the deconvolved linear layer:
 * y = x·W'ᵀ + b' through GEMMs, the fold's adjoint, and after a training
 * step the path back to x through the Newton-Schulz loop, the covariance
 * and the mean of x viewed as rows of B. */
#include "primitives/backward.h"
#include "layers/linear.h"

/* Workspaces of one call, in the layer's bw scratches. */
enum { DBP, DWP, DD, DCOV, DMEAN, DXS, N_BUF };
_Static_assert(N_BUF <= NDCL_LIN_BW, "linear backward needs more workspaces");

/* Everything up to the gradients of the statistics (dD, dmean in m[DD],
 * m[DMEAN] when stats): y = x·W'ᵀ + b' and the fold's adjoint. */
static ndcl_status local_part(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor *dx,
                              ndcl_tensor *dW, ndcl_tensor *db, bool stats, size_t count,
                              cl_mem *m)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_linear_desc *d = &ndcl_lin(l)->desc;
    const size_t F = (size_t)d->in_features, Fo = (size_t)d->out_features;
    const size_t B = (size_t)l->block;
    const size_t rows = count / F;
    if (count > INT32_MAX)
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "linear backward of %zu values: more than 2^31-1 (the kernels "
                         "index with int)",
                         count);
    const bool need_dwp = dW || stats;
    ndcl_param *w = ndcl_layer_param(l, "weight");
    const size_t need[N_BUF] = {
        [DBP] = Fo,
        [DWP] = need_dwp ? w->count : 0,
        [DD] = stats ? B * B : 0,
        [DCOV] = stats ? B * B : 0,
        [DMEAN] = stats ? B : 0,
        [DXS] = stats && dx ? count : 0,
    };
    for (int i = 0; i < N_BUF; i++)
        if (need[i]) {
            NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_lin(l)->bw[i], need[i]));
            m[i] = ndcl_lin(l)->bw[i].mem;
        }

    /* y = x·W'ᵀ + b': db' = Σ_rows dy, dW' = dyᵀ·x, dx = dy·W'. */
    NDCL_TRY(ndcl_strided_sum(ctx, dy->mem, 0, Fo, rows, 1, Fo, 1.0f, m[DBP]));
    NDCL_TRY(ndcl_dense_backward(ctx, rows, F, Fo, dy->mem, ndcl_layer_kept_input(l),
                                 l->w_fold.mem, need_dwp ? m[DWP] : NULL,
                                 dx ? dx->mem : NULL));
    /* The fold, as for the convolution (mean correction with or without a
     * bias). */
    if (need_dwp) {
        ndcl_fold_geom fg = ndcl_linear_fold_geom(l);
        NDCL_TRY(ndcl_fold_backward(ctx, &fg, stats ? l->wsave.mem : NULL, l->w_fold.mem,
                                    l->deconv.mem, l->mean.mem, m[DWP], m[DBP],
                                    dW ? dW->mem : NULL, m[DD], m[DMEAN]));
    }
    if (db) NDCL_TRY(ndcl_buffer_copy(ctx, m[DBP], 0, db->mem, 0, Fo));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_linear_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                       ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_linear_desc *d = &ndcl_lin(l)->desc;
    const ndcl_saved *r = &l->saved;
    const size_t B = (size_t)l->block;
    const bool group = l->sync.bw_active;
    size_t count = 1;
    for (int i = 0; i < r->xdim; i++)
        count *= r->xshape[i];
    const size_t M = count / B;
    /* In a group this rank's share of dD and dmean reaches the others' x,
     * so it is computed even without dx. */
    const bool stats = r->stats && (dx || group);
    cl_mem m[N_BUF] = {NULL};
    ndcl_status s = local_part(l, dy, dx, dW, db, stats, count, m);
    if (group) {
        const ndcl_sync_seg seg[2] = {{m[DD], B * B}, {m[DMEAN], B}};
        s = ndcl_sync_buffers(&l->sync, s, seg, 2);
    }
    NDCL_TRY(s);
    if (!stats || !dx) return NDCL_SUCCESS;

    /* The statistics of X = x viewed as M rows of B (centred in l->X). */
    NDCL_TRY(ndcl_isqrt_ns_backward(ctx, 1, B, d->n_iter, l->ns_saved.mem, l->deconv.mem,
                                    m[DD], m[DCOV]));
    if (group)
        NDCL_TRY(ndcl_cov_backward_share(
            ctx, ndcl_lin(l)->X.mem, M, 1, B, (float)(1.0 / (double)l->sync.total_rows),
            l->sync.total_rows, l->sync.xcm.mem, m[DCOV], m[DMEAN], m[DXS]));
    else
        NDCL_TRY(ndcl_cov_backward(ctx, ndcl_lin(l)->X.mem, M, 1, B, 1.0f / (float)M, true,
                                   m[DCOV], m[DMEAN], m[DXS]));
    return ndcl_axpby(ctx, count, 1.0f, m[DXS], 1.0f, dx->mem);
}
