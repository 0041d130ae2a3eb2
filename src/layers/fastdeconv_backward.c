/* fastdeconv_backward.c - the backward pass of the deconvolved convolution: the
 * plain convolution's adjoint, the fold's, and after a training step on
 * batch statistics the path back to x through the Newton-Schulz loop, the
 * covariance, the mean and the sampled patches. */
#include "primitives/backward.h"
#include "layers/fastdeconv.h"

/* Workspaces of one call, in the layer's bw scratches. */
enum { DWP, DBP, DD, DCOV, DMEAN, DXS, N_BUF };
_Static_assert(N_BUF <= NDCL_FD_BW, "conv backward needs more workspaces");

/* Everything up to the gradients of the statistics (dD, dmean in m[DD],
 * m[DMEAN] when stats): the convolution's adjoint and the fold's. */
static ndcl_status local_part(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor *dx,
                              ndcl_tensor *dW, ndcl_tensor *db, bool stats,
                              const ndcl_conv_geom *cg, ndcl_patch_geom *pg, cl_mem *m)
{
    ndcl_context *ctx = l->ctx;
    const bool need_dwp = dW || stats; /* dW'r feeds dW and dD */
    const size_t G = ndcl_fd(l)->groups, nf = ndcl_fd(l)->nf;
    ndcl_param *w = ndcl_layer_param(l, "weight");
    if (stats) NDCL_TRY(ndcl_conv_layer_patch_geom(l, cg, pg));
    const size_t need[N_BUF] = {
        [DWP] = need_dwp ? w->count : 0, [DBP] = cg->cout,
        [DD] = stats ? G * nf * nf : 0,  [DCOV] = stats ? G * nf * nf : 0,
        [DMEAN] = stats ? pg->cols : 0,  [DXS] = stats && dx ? pg->rows * pg->cols : 0,
    };
    for (int i = 0; i < N_BUF; i++)
        if (need[i]) {
            NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_fd(l)->bw[i], need[i]));
            m[i] = ndcl_fd(l)->bw[i].mem;
        }

    /* The adjoint of y = conv(x, W') + b' through the convolution's
     * algorithms (the forward's choice for this geometry). */
    NDCL_TRY(ndcl_conv_run_backward(ctx, cg, &ndcl_fd(l)->cws, ndcl_layer_kept_input(l),
                                    l->w_fold.mem, dy->mem, dx ? dx->mem : NULL, m[DWP],
                                    m[DBP]));

    /* The fold W' = Wr·D, b' = b - Σ W'·μ (μ, D: the batch's or the
     * running statistics the forward used). */
    if (need_dwp) {
        ndcl_fold_geom fg = ndcl_conv_fold_geom(l);
        NDCL_TRY(ndcl_fold_backward(ctx, &fg, stats ? l->wsave.mem : NULL, l->w_fold.mem,
                                    l->deconv.mem, l->mean.mem, m[DWP], m[DBP],
                                    dW ? dW->mem : NULL, m[DD], m[DMEAN]));
    }
    if (db) NDCL_TRY(ndcl_buffer_copy(ctx, m[DBP], 0, db->mem, 0, cg->cout));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_layer_backward(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor *dx,
                                     ndcl_tensor *dW, ndcl_tensor *db)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_conv2d_desc *d = &ndcl_fd(l)->desc;
    const ndcl_saved *r = &l->saved;
    const bool group = l->sync.bw_active;
    const size_t G = ndcl_fd(l)->groups, nf = ndcl_fd(l)->nf;
    ndcl_conv_geom cg;
    ndcl_patch_geom pg = {0};
    cl_mem m[N_BUF] = {NULL};
    /* The statistics' path only reaches x: without dx it is skipped, but
     * in a group this rank's share of dD and dmean reaches the others' x. */
    const bool stats = r->stats && (dx || group);
    ndcl_status s = ndcl_conv_layer_geom(l, r->xshape, &cg);
    if (s == NDCL_SUCCESS) s = local_part(l, dy, dx, dW, db, stats, &cg, &pg, m);
    if (group) {
        const ndcl_sync_seg seg[2] = {{m[DD], G * nf * nf}, {m[DMEAN], G * nf}};
        s = ndcl_sync_buffers(&l->sync, s, seg, 2);
    }
    NDCL_TRY(s);
    if (!stats || !dx) return NDCL_SUCCESS;

    /* D = isqrt(Cov), Cov = XcᵀXc/M + eps I, Xc = X - μ, X = patches(x). */
    NDCL_TRY(ndcl_isqrt_ns_backward(ctx, G, nf, d->n_iter, l->ns_saved.mem, l->deconv.mem,
                                    m[DD], m[DCOV]));
    if (group) {
        /* This rank's rows of the group's patch matrix (a 1x1 sample may
         * miss a small slice). */
        if (!pg.rows) return NDCL_SUCCESS;
        NDCL_TRY(ndcl_cov_backward_share(ctx, ndcl_fd(l)->X.mem, pg.rows, G, nf,
                                         (float)(1.0 / (double)l->sync.total_rows),
                                         l->sync.total_rows, l->sync.xcm.mem, m[DCOV],
                                         m[DMEAN], m[DXS]));
    } else {
        NDCL_TRY(ndcl_cov_backward(ctx, ndcl_fd(l)->X.mem, pg.rows, G, nf,
                                   1.0f / (float)pg.rows, true, m[DCOV], m[DMEAN], m[DXS]));
    }
    return ndcl_im2col_sampled_backward(ctx, &pg, m[DXS], dx->mem);
}
