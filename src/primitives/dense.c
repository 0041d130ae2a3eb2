/* dense.c - the product of a dense (fully connected) layer, y = x·W'ᵀ + b',
 * and its adjoint: GEMMs of the BLAS engines and a bias kernel. */
#include "blas/blas.h"
#include "primitives/launch.h"
#include "primitives/primitives.h"

ndcl_status ndcl_dense_forward(ndcl_context *ctx, size_t rows, size_t F, size_t Fo,
                               cl_mem x, cl_mem W, cl_mem b, cl_mem y)
{
    NDCL_TRY(ndcl_blas_gemm(ctx, false, true, rows, Fo, F, 1.0f, x, 0, F, W, 0, F, 0.0f, y,
                            0, Fo));
    int r = (int)rows, c = (int)Fo;
    ndcl_arg args[] = {NDCL_ARG(r), NDCL_ARG(c), NDCL_ARG(b), NDCL_ARG(y)};
    size_t global[2] = {Fo, rows};
    return ndcl_launch(ctx, "ndcl_add_row_bias", 2, global, NULL, args, 4);
}

ndcl_status ndcl_dense_backward(ndcl_context *ctx, size_t rows, size_t F, size_t Fo,
                                cl_mem dy, cl_mem x, cl_mem W, cl_mem dW, cl_mem dx)
{
    if (dW)
        NDCL_TRY(ndcl_blas_gemm(ctx, true, false, Fo, F, rows, 1.0f, dy, 0, Fo, x, 0, F,
                                0.0f, dW, 0, F));
    if (dx)
        NDCL_TRY(ndcl_blas_gemm(ctx, false, false, rows, F, Fo, 1.0f, dy, 0, Fo, W, 0, F,
                                0.0f, dx, 0, F));
    return NDCL_SUCCESS;
}
