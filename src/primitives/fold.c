/* fold.c - folds a whitening matrix into a layer's weights: W' = W·D with
 * each output's weights viewed as rows of nf (the block basis of the patch
 * matrix) and the bias correction b' = b - Σ_r (W'·μ)[o, r] (README,
 * "Arithmetic": conv2d step 5, linear). */
#include "primitives/primitives.h"
#include "primitives/launch.h"

ndcl_status ndcl_fold_move(ndcl_context *ctx, const char *name, const ndcl_fold_geom *g,
                           cl_mem src, cl_mem dst)
{
    const int rows = (int)(g->outputs * g->R), R = (int)g->R, nf = (int)g->nf;
    const int K = (int)g->K, rs = (int)g->rs, fs = (int)g->fs;
    const ndcl_arg args[] = {NDCL_ARG(rows), NDCL_ARG(R),  NDCL_ARG(nf),  NDCL_ARG(K),
                             NDCL_ARG(rs),   NDCL_ARG(fs), NDCL_ARG(src), NDCL_ARG(dst)};
    return prims_launch3(ctx, name, g->nf, g->outputs, 1, args, 8);
}

ndcl_status ndcl_fold(ndcl_context *ctx, const ndcl_fold_geom *g, cl_mem W, cl_mem bias,
                      cl_mem D, cl_mem mean, cl_mem W_out, cl_mem b_out)
{
    if (g->outputs == 0 || g->R == 0 || g->nf == 0 || g->batch == 0 ||
        g->outputs % g->batch != 0)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "fold geometry: outputs=%zu R=%zu nf=%zu batch=%zu (outputs must "
                         "be a multiple of batch, none zero)",
                         g->outputs, g->R, g->nf, g->batch);
    /* Every weight element must be reached exactly once for the scatter to
     * rebuild W whole: K = R*nf and the strides stay inside a row. */
    if (g->K != g->R * g->nf || (g->R - 1) * g->rs + (g->nf - 1) * g->fs >= g->K)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "fold geometry: K=%zu, R=%zu rows of nf=%zu at strides rs=%zu "
                         "fs=%zu do not tile a row",
                         g->K, g->R, g->nf, g->rs, g->fs);
    const size_t rows = g->outputs * g->R, total = rows * g->nf;
    if (!prims_fit_int(total, rows, g->batch * g->nf * g->nf))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "fold of %zu x %zu weights: more than 2^31-1 elements", g->outputs,
                         g->K);

    /* The block basis is W's own layout when each block row is contiguous
     * and the rows follow each other (linear layers, grouped convs). */
    const bool direct = g->fs == 1 && (g->R == 1 || g->rs == g->nf);
    const size_t m = (g->outputs / g->batch) * g->R; /* block rows per D */
    const size_t nf = g->nf;
    cl_mem Wb = NULL, Wp = NULL, v = NULL;
    ndcl_status s = NDCL_SUCCESS;
    if (!direct) {
        s = prims_buffer(ctx, total, &Wb);
        if (s == NDCL_SUCCESS) s = ndcl_fold_move(ctx, "ndcl_fold_gather", g, W, Wb);
    }
    /* W' lands in W_out directly unless it must be scattered or would
     * overwrite its own input (W_out == W). */
    bool wp_temp = !direct || W_out == W;
    if (s == NDCL_SUCCESS && wp_temp) s = prims_buffer(ctx, total, &Wp);
    cl_mem a = direct ? W : Wb, wp = wp_temp ? Wp : W_out;
    if (s == NDCL_SUCCESS)
        s = ndcl_blas_gemm_batched(ctx, false, false, m, nf, nf, 1.0f, a, 0, nf, m * nf, D,
                                   0, nf, nf * nf, 0.0f, wp, 0, nf, m * nf, g->batch);
    /* v = W'·μ per block row, each group with its own mean chunk. */
    if (s == NDCL_SUCCESS && b_out) {
        s = prims_buffer(ctx, rows, &v);
        if (s == NDCL_SUCCESS)
            s = ndcl_blas_gemm_batched(ctx, false, false, m, 1, nf, 1.0f, wp, 0, nf, m * nf,
                                       mean, 0, 1, nf, 0.0f, v, 0, 1, m, g->batch);
        if (s == NDCL_SUCCESS) {
            const int outputs = (int)g->outputs, R = (int)g->R, has_bias = bias != NULL;
            cl_mem b_in = bias ? bias : b_out; /* never read without a bias */
            const ndcl_arg args[] = {NDCL_ARG(outputs),  NDCL_ARG(R),
                                     NDCL_ARG(v),        NDCL_ARG(b_in),
                                     NDCL_ARG(has_bias), NDCL_ARG(b_out)};
            s = prims_launch3(ctx, "ndcl_fold_bias", g->outputs, 1, 1, args, 6);
        }
    }
    if (s == NDCL_SUCCESS && !direct)
        s = ndcl_fold_move(ctx, "ndcl_fold_scatter", g, Wp, W_out);
    if (s == NDCL_SUCCESS && direct && wp_temp)
        s = ndcl_buffer_copy(ctx, Wp, 0, W_out, 0, total);
    prims_release(Wb);
    prims_release(Wp);
    prims_release(v);
    return s;
}
