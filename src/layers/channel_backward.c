/* channel_backward.c - the backward pass of channel deconvolution:
 * out = D·(x1 - μ1) back to x directly, through μ1 and the uncentred
 * covariance of the sample (training), and the leftover channels'
 * normalisation through their mean and variance (training) or with them
 * fixed (evaluation). */
#include "primitives/backward.h"
#include "layers/channel.h"

/* Workspaces of one call, in the layer's bw scratches. */
enum { DX1, DD, DCOV, DMEAN, DXS, SUMS, N_BUF };
_Static_assert(N_BUF <= NDCL_CH_BW, "channel backward needs more workspaces");

/* The leftover channels' sums Σ dy and Σ dy·(x - m) into sums. */
static ndcl_status left_sums(ndcl_layer *l, const ndcl_ch_geom *g, const ndcl_tensor *dy,
                             cl_mem sums)
{
    return ndcl_ch_left_backward_sums(l->ctx, g, ndcl_ch(l)->extra.mem,
                                      ndcl_layer_kept_input(l), dy->mem, sums);
}

/* Everything up to the gradients of the statistics: dx1c = Dᵀ·dout in
 * m[DX1], and with stats dD, dmean and the leftover sums (in a group,
 * this rank's shares of them). */
static ndcl_status local_part(ndcl_layer *l, const ndcl_tensor *dy, bool stats, bool group,
                              const ndcl_ch_geom *g, cl_mem *m)
{
    ndcl_context *ctx = l->ctx;
    const bool left = g->c < g->C;
    const size_t B = (size_t)g->B, L = g->L;
    const size_t rows = group ? l->sync.rows : g->Ls;
    const size_t need[N_BUF] = {
        [DX1] = B * L,
        [DD] = stats ? B * B : 0,
        [DCOV] = stats ? B * B : 0,
        [DMEAN] = stats ? B : 0,
        [DXS] = stats ? rows * B : 0,
        [SUMS] = stats && left ? 2 : 0,
    };
    for (int i = 0; i < N_BUF; i++)
        if (need[i]) {
            NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->bw[i], need[i]));
            m[i] = ndcl_ch(l)->bw[i].mem;
        }

    /* dout: dy's first c channels as the B rows of the forward, where its
     * output rows were (l->tmp, B x L, not needed by the backward). */
    cl_mem dout = ndcl_ch(l)->tmp.mem;
    NDCL_TRY(ndcl_ch_gather(ctx, g, dy->mem, dout));
    /* out = D·x1c: dx1c = Dᵀ·dout (D the batch's or the running one, as
     * the forward used it), and with stats dD = dout·x1cᵀ (x1c kept
     * centred in l->X). */
    NDCL_TRY(ndcl_ch_whiten_backward(ctx, g, l->deconv.mem, ndcl_ch(l)->X.mem, dout, m[DX1],
                                     stats ? m[DD] : NULL));
    if (!stats) return NDCL_SUCCESS;
    /* x1c = x1 - μ1 gives dμ1 = -Σ_cols dx1c. */
    NDCL_TRY(ndcl_strided_sum(ctx, m[DX1], 0, B, L, L, 1, -1.0f, m[DMEAN]));
    if (left) NDCL_TRY(left_sums(l, g, dy, m[SUMS]));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_channel_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                        ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db)
{
    (void)dW; /* no parameters: layer.c passes NULL */
    (void)db;
    ndcl_context *ctx = l->ctx;
    const ndcl_channel_desc *d = &ndcl_ch(l)->desc;
    const ndcl_saved *r = &l->saved;
    const bool group = l->sync.bw_active;
    /* No parameters: without dx nothing else to compute, except in a group,
     * where this rank's share of the statistics' gradients reaches the
     * others' x. */
    if (!dx && !group) return NDCL_SUCCESS;
    ndcl_ch_geom g;
    ndcl_ch_geom_init(d->block, d->sampling_stride, r->xdim, r->xshape, &g);
    const bool stats = r->stats, left = g.c < g.C;
    const size_t B = (size_t)g.B;
    cl_mem m[N_BUF] = {NULL};
    ndcl_status s = local_part(l, dy, stats, group, &g, m);
    if (group) {
        /* The leftover sums travel whether or not there are leftover
         * channels (the count is the configuration's). */
        const ndcl_sync_seg seg[3] = {{m[DD], B * B}, {m[DMEAN], B}, {m[SUMS], 2}};
        s = ndcl_sync_buffers(&l->sync, s, seg, 3);
    }
    NDCL_TRY(s);
    if (!dx) return NDCL_SUCCESS;

    if (stats) {
        /* D = isqrt(x_sᵀx_s/Ls + eps I), μ1 = mean of x_s (uncentred
         * covariance): both reach the sampled columns of x1. */
        NDCL_TRY(ndcl_isqrt_ns_backward(ctx, 1, B, d->n_iter, l->ns_saved.mem,
                                        l->deconv.mem, m[DD], m[DCOV]));
        if (group && l->sync.rows) {
            const size_t rows = l->sync.rows, total = l->sync.total_rows;
            NDCL_TRY(ndcl_cov_backward_share(ctx, ndcl_ch(l)->col.mem, rows, 1, B,
                                             (float)(1.0 / (double)total), total, NULL,
                                             m[DCOV], m[DMEAN], m[DXS]));
            NDCL_TRY(ndcl_ch_sample_share_backward(ctx, &g, g.c / g.B, l->sync.idx.mem,
                                                   rows, m[DXS], m[DX1]));
        } else if (!group) {
            NDCL_TRY(ndcl_cov_backward(ctx, ndcl_ch(l)->col.mem, g.Ls, 1, B,
                                       1.0f / (float)g.Ls, false, m[DCOV], m[DMEAN],
                                       m[DXS]));
            NDCL_TRY(ndcl_ch_sample_backward(ctx, &g, m[DXS], m[DX1]));
        }
    }
    NDCL_TRY(ndcl_ch_scatter(ctx, &g, m[DX1], dx->mem));
    if (!left) return NDCL_SUCCESS;

    /* Leftover channels: (x - m)/sqrt(v + eps) with m, v in extra; in
     * training every kept value also reaches m and v (the group's count of
     * them in a group). */
    cl_mem x = stats ? ndcl_layer_kept_input(l) : dy->mem; /* read in training only */
    cl_mem sums = stats ? m[SUMS] : ndcl_ch(l)->extra.mem; /* likewise */
    const int Lr = (g.C - g.c) * g.HW;
    const float kept =
        group ? (float)l->sync.kept : (float)(g.N * ((Lr + g.step - 1) / g.step));
    return ndcl_ch_left_backward(ctx, &g, kept, d->eps, stats, ndcl_ch(l)->extra.mem, sums,
                                 x, dy->mem, dx->mem);
}
