/* channel.c - the launches of channel deconvolution's kernels (cl/
 * channel.cl) and its two products, forward and adjoint (channel.h). */
#include "primitives/channel.h"
#include "blas/blas.h"
#include "primitives/launch.h"

void ndcl_ch_geom_init(int block, int sampling_stride, int ndim, const size_t *shape,
                       ndcl_ch_geom *g)
{
    size_t H = ndim == 4 ? shape[2] : 1, W = ndim == 4 ? shape[3] : 1;
    g->N = (int)shape[0];
    g->C = (int)shape[1];
    g->HW = (int)(H * W);
    g->B = block;
    g->c = g->C / g->B * g->B;
    g->L = (size_t)(g->c / g->B) * (size_t)g->N * (size_t)g->HW;
    size_t ss = (size_t)sampling_stride;
    g->step = (ss > 1 && H >= ss && W >= ss) ? (int)(ss * ss) : 1;
    g->Ls = (g->L + (size_t)g->step - 1) / (size_t)g->step;
}

ndcl_status ndcl_ch_gather(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x, cl_mem x1)
{
    size_t gl[2] = {g->L, (size_t)g->B};
    ndcl_arg ga[] = {NDCL_ARG(g->N), NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->B),
                     NDCL_ARG(g->c), NDCL_ARG(x),    NDCL_ARG(x1)};
    return ndcl_launch(ctx, "ndcl_ch_gather", 2, gl, NULL, ga, 7);
}

ndcl_status ndcl_ch_scatter(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem out, cl_mem y)
{
    size_t gl[2] = {g->L, (size_t)g->B};
    ndcl_arg sc[] = {NDCL_ARG(g->N), NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->B),
                     NDCL_ARG(g->c), NDCL_ARG(out),  NDCL_ARG(y)};
    return ndcl_launch(ctx, "ndcl_ch_scatter", 2, gl, NULL, sc, 7);
}

ndcl_status ndcl_ch_sample(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x1, cl_mem xs)
{
    int L = (int)g->L;
    size_t gs[2] = {(size_t)g->B, g->Ls};
    ndcl_arg sa[] = {NDCL_ARG(g->B), NDCL_ARG(L), NDCL_ARG(g->step), NDCL_ARG(x1),
                     NDCL_ARG(xs)};
    return ndcl_launch(ctx, "ndcl_ch_sample", 2, gs, NULL, sa, 5);
}

ndcl_status ndcl_ch_sample_share(ndcl_context *ctx, const ndcl_ch_geom *g, int per,
                                 cl_mem tab, size_t rows, cl_mem x1, cl_mem xs)
{
    const int L = (int)g->L;
    size_t gs[2] = {(size_t)g->B, rows};
    ndcl_arg sa[] = {NDCL_ARG(g->B), NDCL_ARG(L),  NDCL_ARG(per), NDCL_ARG(g->step),
                     NDCL_ARG(tab),  NDCL_ARG(x1), NDCL_ARG(xs)};
    return ndcl_launch(ctx, "ndcl_ch_sample_share", 2, gs, NULL, sa, 7);
}

ndcl_status ndcl_ch_center_rows(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem mean,
                                cl_mem x1)
{
    int L = (int)g->L;
    size_t gl[2] = {g->L, (size_t)g->B};
    ndcl_arg ca[] = {NDCL_ARG(g->B), NDCL_ARG(L), NDCL_ARG(mean), NDCL_ARG(x1)};
    return ndcl_launch(ctx, "ndcl_ch_center_rows", 2, gl, NULL, ca, 4);
}

ndcl_status ndcl_ch_whiten(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem D, cl_mem x1c,
                           cl_mem out)
{
    const size_t B = (size_t)g->B;
    return ndcl_blas_gemm(ctx, false, false, B, g->L, B, 1.0f, D, 0, B, x1c, 0, g->L, 0.0f,
                          out, 0, g->L);
}

ndcl_status ndcl_ch_whiten_backward(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem D,
                                    cl_mem x1c, cl_mem dout, cl_mem dx1c, cl_mem dD)
{
    const size_t B = (size_t)g->B, L = g->L;
    NDCL_TRY(ndcl_blas_gemm(ctx, true, false, B, L, B, 1.0f, D, 0, B, dout, 0, L, 0.0f,
                            dx1c, 0, L));
    if (!dD) return NDCL_SUCCESS;
    return ndcl_blas_gemm(ctx, false, true, B, B, L, 1.0f, dout, 0, L, x1c, 0, L, 0.0f, dD,
                          0, B);
}

ndcl_status ndcl_ch_left_stats(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x,
                               cl_mem out)
{
    size_t wg;
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ch_left_stats", 256, sizeof(float), &wg));
    ndcl_arg args[] = {
        NDCL_ARG(g->N),    NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->c),
        NDCL_ARG(g->step), NDCL_ARG(x),    NDCL_ARG(out),   NDCL_LOCAL(wg * sizeof(float))};
    return ndcl_launch(ctx, "ndcl_ch_left_stats", 1, &wg, &wg, args, 8);
}

ndcl_status ndcl_ch_left_moment(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x,
                                float shift, int square, cl_mem out)
{
    size_t wg;
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ch_left_moment", 256, sizeof(float), &wg));
    ndcl_arg args[] = {NDCL_ARG(g->N),    NDCL_ARG(g->C),
                       NDCL_ARG(g->HW),   NDCL_ARG(g->c),
                       NDCL_ARG(g->step), NDCL_ARG(shift),
                       NDCL_ARG(square),  NDCL_ARG(x),
                       NDCL_ARG(out),     NDCL_LOCAL(wg * sizeof(float))};
    return ndcl_launch(ctx, "ndcl_ch_left_moment", 1, &wg, &wg, args, 10);
}

ndcl_status ndcl_ch_left_apply(ndcl_context *ctx, const ndcl_ch_geom *g, float eps,
                               cl_mem mean, int mo, cl_mem var, int vo, cl_mem x, cl_mem y)
{
    size_t n = (size_t)g->N * (size_t)(g->C - g->c) * (size_t)g->HW;
    ndcl_arg args[] = {NDCL_ARG(g->N), NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->c),
                       NDCL_ARG(eps),  NDCL_ARG(mean), NDCL_ARG(mo),    NDCL_ARG(var),
                       NDCL_ARG(vo),   NDCL_ARG(x),    NDCL_ARG(y)};
    return ndcl_launch(ctx, "ndcl_ch_left_apply", 1, &n, NULL, args, 11);
}

ndcl_status ndcl_ch_sample_backward(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem dxs,
                                    cl_mem dx1)
{
    const int Li = (int)g->L;
    const size_t gs[2] = {(size_t)g->B, g->Ls};
    const ndcl_arg args[] = {NDCL_ARG(g->B), NDCL_ARG(Li), NDCL_ARG(g->step), NDCL_ARG(dxs),
                             NDCL_ARG(dx1)};
    return ndcl_launch(ctx, "ndcl_ch_sample_adj", 2, gs, NULL, args, 5);
}

ndcl_status ndcl_ch_sample_share_backward(ndcl_context *ctx, const ndcl_ch_geom *g, int per,
                                          cl_mem tab, size_t rows, cl_mem dxs, cl_mem dx1)
{
    const int Li = (int)g->L;
    const size_t gs[2] = {(size_t)g->B, rows};
    const ndcl_arg args[] = {NDCL_ARG(g->B),    NDCL_ARG(Li),  NDCL_ARG(per),
                             NDCL_ARG(g->step), NDCL_ARG(tab), NDCL_ARG(dxs),
                             NDCL_ARG(dx1)};
    return ndcl_launch(ctx, "ndcl_ch_sample_share_adj", 2, gs, NULL, args, 7);
}

ndcl_status ndcl_ch_left_backward_sums(ndcl_context *ctx, const ndcl_ch_geom *g,
                                       cl_mem stats, cl_mem x, cl_mem dy, cl_mem sums)
{
    size_t wg;
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ch_left_bw_sums", 256, sizeof(float), &wg));
    const ndcl_arg args[] = {
        NDCL_ARG(g->N), NDCL_ARG(g->C),  NDCL_ARG(g->HW),
        NDCL_ARG(g->c), NDCL_ARG(stats), NDCL_ARG(x),
        NDCL_ARG(dy),   NDCL_ARG(sums),  NDCL_LOCAL(wg * sizeof(float))};
    return ndcl_launch(ctx, "ndcl_ch_left_bw_sums", 1, &wg, &wg, args, 9);
}

ndcl_status ndcl_ch_left_backward(ndcl_context *ctx, const ndcl_ch_geom *g, float kept,
                                  float eps, bool train, cl_mem stats, cl_mem sums,
                                  cl_mem x, cl_mem dy, cl_mem dx)
{
    const size_t n = (size_t)g->N * (size_t)(g->C - g->c) * (size_t)g->HW;
    const int tr = train;
    const ndcl_arg args[] = {
        NDCL_ARG(g->N), NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->c),  NDCL_ARG(g->step),
        NDCL_ARG(kept), NDCL_ARG(eps),  NDCL_ARG(tr),    NDCL_ARG(stats), NDCL_ARG(sums),
        NDCL_ARG(x),    NDCL_ARG(dy),   NDCL_ARG(dx)};
    return ndcl_launch(ctx, "ndcl_ch_left_bw", 1, &n, NULL, args, 13);
}
