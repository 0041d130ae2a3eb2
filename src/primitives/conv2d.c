/* conv2d.c - the plain convolution a deconvolved layer ends with: im2col of
 * the whole batch as K x (N*P), one GEMM per group, then the move to NCHW
 * fused with the bias. Also its adjoints for the backward pass. */
#include "primitives/conv2d.h"

#include "blas/blas.h"
#include "primitives/backward.h"
#include "runtime/runtime.h"

ndcl_status ndcl_conv_geom_init(ndcl_context *ctx, ndcl_conv_geom *g)
{
    size_t eh = g->dil * (g->kh - 1) + 1, ew = g->dil * (g->kw - 1) + 1;
    NDCL_CHECK_ARG(ctx, g->h + 2 * g->pad >= eh && g->w + 2 * g->pad >= ew,
                   "kernel %zux%zu (dilation %zu) is larger than the padded input %zux%zu",
                   g->kh, g->kw, g->dil, g->h + 2 * g->pad, g->w + 2 * g->pad);
    g->oh = (g->h + 2 * g->pad - eh) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - ew) / g->stride + 1;
    g->K = g->c * g->kh * g->kw;
    g->P = g->oh * g->ow;
    size_t cols, t;
    NDCL_CHECK_ARG(ctx,
                   ndcl_mul_ok(g->n, g->P, &cols) && ndcl_mul_ok(cols, g->K, &t) &&
                       ndcl_mul_ok(cols, g->cout, &t) && cols <= INT32_MAX &&
                       t <= SIZE_MAX / 4,
                   "convolution of %zu samples x %zu positions is too large", g->n, g->P);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_im2col(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                             cl_mem col)
{
    int a[] = {(int)g->n,      (int)g->c,   (int)g->h,   (int)g->w,  (int)g->kh, (int)g->kw,
               (int)g->stride, (int)g->pad, (int)g->dil, (int)g->oh, (int)g->ow};
    ndcl_arg args[] = {NDCL_ARG(a[0]), NDCL_ARG(a[1]), NDCL_ARG(a[2]),  NDCL_ARG(a[3]),
                       NDCL_ARG(a[4]), NDCL_ARG(a[5]), NDCL_ARG(a[6]),  NDCL_ARG(a[7]),
                       NDCL_ARG(a[8]), NDCL_ARG(a[9]), NDCL_ARG(a[10]), NDCL_ARG(x),
                       NDCL_ARG(col)};
    size_t global[3] = {g->P, g->K, g->n};
    return ndcl_launch(ctx, "ndcl_im2col_full", 3, global, NULL, args, 13);
}

ndcl_status ndcl_conv_forward(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                              cl_mem w, cl_mem b, cl_mem y, cl_mem col, cl_mem tmp)
{
    NDCL_TRY(ndcl_conv_im2col(ctx, g, x, col));
    size_t NP = g->n * g->P, Kg = g->K / g->groups, Cg = g->cout / g->groups;
    /* tmp (Cout x NP) = W (Cout x K, block-diagonal by group) · col (K x NP). */
    for (size_t q = 0; q < g->groups; q++)
        NDCL_TRY(ndcl_blas_gemm(ctx, false, false, Cg, NP, Kg, 1.0f, w, q * Cg * Kg, Kg,
                                col, q * Kg * NP, NP, 0.0f, tmp, q * Cg * NP, NP));
    int N = (int)g->n, Co = (int)g->cout, P = (int)g->P, hb = b != NULL;
    cl_mem bb = b ? b : tmp; /* any valid buffer: unused without a bias */
    ndcl_arg args[] = {NDCL_ARG(N),  NDCL_ARG(Co), NDCL_ARG(P), NDCL_ARG(tmp),
                       NDCL_ARG(bb), NDCL_ARG(hb), NDCL_ARG(y)};
    size_t global[3] = {g->P, g->cout, g->n};
    return ndcl_launch(ctx, "ndcl_conv_bias_nchw", 3, global, NULL, args, 7);
}

ndcl_status ndcl_conv_backward_params(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem dy,
                                      cl_mem col, cl_mem dYt, cl_mem db, cl_mem dW)
{
    int N = (int)g->n, Co = (int)g->cout, P = (int)g->P;
    ndcl_arg args[] = {NDCL_ARG(N), NDCL_ARG(Co), NDCL_ARG(P), NDCL_ARG(dy), NDCL_ARG(dYt)};
    size_t global[3] = {g->P, g->cout, g->n};
    NDCL_TRY(ndcl_launch(ctx, "ndcl_bw_nchw_rows", 3, global, NULL, args, 5));
    size_t NP = g->n * g->P, Kg = g->K / g->groups, Cg = g->cout / g->groups;
    NDCL_TRY(ndcl_strided_sum(ctx, dYt, 0, g->cout, NP, NP, 1, 1.0f, db));
    if (dW)
        for (size_t q = 0; q < g->groups; q++)
            NDCL_TRY(ndcl_blas_gemm(ctx, false, true, Cg, Kg, NP, 1.0f, dYt, q * Cg * NP,
                                    NP, col, q * Kg * NP, NP, 0.0f, dW, q * Cg * Kg, Kg));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_backward_data(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem w,
                                    cl_mem dYt, cl_mem dx, cl_mem dcol)
{
    size_t NP = g->n * g->P, Kg = g->K / g->groups, Cg = g->cout / g->groups;
    for (size_t q = 0; q < g->groups; q++)
        NDCL_TRY(ndcl_blas_gemm(ctx, true, false, Kg, NP, Cg, 1.0f, w, q * Cg * Kg, Kg, dYt,
                                q * Cg * NP, NP, 0.0f, dcol, q * Kg * NP, NP));
    int a[] = {(int)g->n,      (int)g->c,   (int)g->h,   (int)g->w,  (int)g->kh, (int)g->kw,
               (int)g->stride, (int)g->pad, (int)g->dil, (int)g->oh, (int)g->ow};
    ndcl_arg args[] = {NDCL_ARG(a[0]), NDCL_ARG(a[1]), NDCL_ARG(a[2]),  NDCL_ARG(a[3]),
                       NDCL_ARG(a[4]), NDCL_ARG(a[5]), NDCL_ARG(a[6]),  NDCL_ARG(a[7]),
                       NDCL_ARG(a[8]), NDCL_ARG(a[9]), NDCL_ARG(a[10]), NDCL_ARG(dcol),
                       NDCL_ARG(dx)};
    size_t global[3] = {g->w, g->h, g->n * g->c};
    return ndcl_launch(ctx, "ndcl_col2im_full", 3, global, NULL, args, 13);
}
