/* channel_backward.c - the backward pass of channel deconvolution:
 * out = D·(x1 - μ1) back to x directly, through μ1 and the uncentred
 * covariance of the sample (training), and the leftover channels'
 * normalisation through their mean and variance (training) or with them
 * fixed (evaluation). */
#include "primitives/backward.h"
#include "layers/channel.h"

/* Workspaces of one call, in the layer's bw scratches. */
enum { DX1, DD, DCOV, DMEAN, DXS, SUMS, N_BUF };
_Static_assert(N_BUF <= NDCL_BW_SCRATCH, "channel backward needs more workspaces");

ndcl_status ndcl_channel_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                        ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db)
{
    (void)dW; /* no parameters: layer.c passes NULL */
    (void)db;
    ndcl_context *ctx = l->ctx;
    const ndcl_channel_desc *d = &l->channel;
    const ndcl_saved *r = &l->saved;
    if (!dx) return NDCL_SUCCESS; /* no parameters: nothing else to compute */
    ndcl_ch_geom g;
    ndcl_ch_geom_init(l, r->xdim, r->xshape, &g);
    const bool stats = r->stats, left = g.c < g.C;
    const size_t B = (size_t)g.B, L = g.L;
    const size_t need[N_BUF] = {
        [DX1] = B * L,
        [DD] = stats ? B * B : 0,
        [DCOV] = stats ? B * B : 0,
        [DMEAN] = stats ? B : 0,
        [DXS] = stats ? g.Ls * B : 0,
        [SUMS] = stats && left ? 2 : 0,
    };
    cl_mem m[N_BUF] = {NULL};
    for (int i = 0; i < N_BUF; i++)
        if (need[i]) {
            NDCL_TRY(ndcl_scratch_ensure(ctx, &l->bw[i], need[i]));
            m[i] = l->bw[i].mem;
        }

    /* dout: dy's first c channels as the B rows of the forward, where its
     * output rows were (l->tmp, B x L, not needed by the backward). */
    cl_mem dout = l->tmp.mem;
    const size_t gl[2] = {L, B};
    {
        const ndcl_arg args[] = {NDCL_ARG(g.N), NDCL_ARG(g.C), NDCL_ARG(g.HW),
                                 NDCL_ARG(g.B), NDCL_ARG(g.c), NDCL_ARG(dy->mem),
                                 NDCL_ARG(dout)};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_gather", 2, gl, NULL, args, 7));
    }
    /* out = D·x1c: dx1c = Dᵀ·dout (D the batch's or the running one, as
     * the forward used it). */
    NDCL_TRY(ndcl_blas_gemm(ctx, true, false, B, L, B, 1.0f, l->deconv.mem, 0, B, dout, 0,
                            L, 0.0f, m[DX1], 0, L));
    if (stats) {
        /* dD = dout·x1cᵀ (x1c kept centred in l->X); x1c = x1 - μ1 gives
         * dμ1 = -Σ_cols dx1c. */
        NDCL_TRY(ndcl_blas_gemm(ctx, false, true, B, B, L, 1.0f, dout, 0, L, l->X.mem, 0, L,
                                0.0f, m[DD], 0, B));
        NDCL_TRY(ndcl_strided_sum(ctx, m[DX1], 0, B, L, L, 1, -1.0f, m[DMEAN]));
        /* D = isqrt(x_sᵀx_s/Ls + eps I), μ1 = mean of x_s (uncentred
         * covariance): both reach the sampled columns of x1. */
        NDCL_TRY(ndcl_isqrt_ns_backward(ctx, 1, B, d->n_iter, l->ns_saved.mem,
                                        l->deconv.mem, m[DD], m[DCOV]));
        NDCL_TRY(ndcl_cov_backward(ctx, l->col.mem, g.Ls, 1, B, 1.0f / (float)g.Ls, false,
                                   m[DCOV], m[DMEAN], m[DXS]));
        const int Li = (int)L;
        const size_t gs[2] = {B, g.Ls};
        const ndcl_arg args[] = {NDCL_ARG(g.B), NDCL_ARG(Li), NDCL_ARG(g.step),
                                 NDCL_ARG(m[DXS]), NDCL_ARG(m[DX1])};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_sample_adj", 2, gs, NULL, args, 5));
    }
    {
        const ndcl_arg args[] = {NDCL_ARG(g.N),    NDCL_ARG(g.C), NDCL_ARG(g.HW),
                                 NDCL_ARG(g.B),    NDCL_ARG(g.c), NDCL_ARG(m[DX1]),
                                 NDCL_ARG(dx->mem)};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_scatter", 2, gl, NULL, args, 7));
    }
    if (!left) return NDCL_SUCCESS;

    /* Leftover channels: (x - m)/sqrt(v + eps) with m, v in extra. */
    cl_mem x = stats ? l->xsave.mem : dy->mem;    /* x is read in training only */
    cl_mem sums = stats ? m[SUMS] : l->extra.mem; /* likewise */
    if (stats) {
        size_t wg;
        NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ch_left_bw_sums", 256, sizeof(float), &wg));
        const ndcl_arg args[] = {
            NDCL_ARG(g.N),     NDCL_ARG(g.C),          NDCL_ARG(g.HW),
            NDCL_ARG(g.c),     NDCL_ARG(l->extra.mem), NDCL_ARG(x),
            NDCL_ARG(dy->mem), NDCL_ARG(sums),         NDCL_LOCAL(wg * sizeof(float))};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_left_bw_sums", 1, &wg, &wg, args, 9));
    }
    const size_t n = (size_t)g.N * (size_t)(g.C - g.c) * (size_t)g.HW;
    const int train = stats;
    const float eps = d->eps;
    const ndcl_arg args[] = {NDCL_ARG(g.N),   NDCL_ARG(g.C),          NDCL_ARG(g.HW),
                             NDCL_ARG(g.c),   NDCL_ARG(g.step),       NDCL_ARG(eps),
                             NDCL_ARG(train), NDCL_ARG(l->extra.mem), NDCL_ARG(sums),
                             NDCL_ARG(x),     NDCL_ARG(dy->mem),      NDCL_ARG(dx->mem)};
    return ndcl_launch(ctx, "ndcl_ch_left_bw", 1, &n, NULL, args, 12);
}
