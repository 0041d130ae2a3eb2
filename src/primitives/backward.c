/* backward.c - adjoints of the covariance (with its mean), of the weight fold
 * and of the sampled patch matrix (README, "Arithmetic": backward); the
 * public whitening adjoint ndcl_whiten_backward built from them is in
 * api.c. */
#include <math.h>

#include "primitives/backward.h"
#include "primitives/launch.h"

/* ------------------------------------------------------------ covariance */

/* mean_rows: the rows the mean was taken over (rows alone; the group's
 * in a share); xc_mean: NULL alone, else the group's column means of the
 * centred X, which give the centring's gradient. */
static ndcl_status cov_backward(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups,
                                size_t n, float scale, bool centered, size_t mean_rows,
                                cl_mem xc_mean, cl_mem dcov, cl_mem dmean, cl_mem dX,
                                cl_mem S, cl_mem v)
{
    const size_t cols = groups * n, nn = n * n;
    /* S = (dcov + dcovᵀ)·scale: Cov = XᵀX·scale reaches X through both factors. */
    {
        const int ni = (int)n, gi = (int)groups;
        const ndcl_arg args[] = {NDCL_ARG(ni), NDCL_ARG(gi), NDCL_ARG(scale),
                                 NDCL_ARG(dcov), NDCL_ARG(S)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_bw_sym", n, n, groups, args, 5));
    }
    if (groups == 1) {
        NDCL_TRY(ndcl_blas_gemm(ctx, false, false, rows, n, n, 1.0f, X, 0, n, S, 0, n, 0.0f,
                                dX, 0, n));
    } else {
        /* Group g is the column block at offset g*n of every row, so the
         * output's batches interleave: blas.c's zeroing for beta = 0
         * assumes whole rows per batch, hence a zeroed dX and beta = 1. */
        NDCL_TRY(ndcl_buffer_fill(ctx, dX, rows * cols, 0.0f));
        NDCL_TRY(ndcl_blas_gemm_batched(ctx, false, false, rows, n, n, 1.0f, X, 0, cols, n,
                                        S, 0, n, nn, 1.0f, dX, 0, cols, n, groups));
    }
    if (!centered && !dmean) return NDCL_SUCCESS;
    /* dX -= v with v = colmean(dXc) (the centring's gradient, when
     * centred) - dmean/rows (the mean's own gradient, spread over rows). */
    if (centered && xc_mean)
        /* The group's column means of dXc = Xc·S: (its column means of Xc)·S. */
        NDCL_TRY(ndcl_blas_gemm_batched(ctx, false, false, 1, n, n, 1.0f, xc_mean, 0, n, n,
                                        S, 0, n, nn, 0.0f, v, 0, n, n, groups));
    else if (centered)
        NDCL_TRY(ndcl_col_mean(ctx, dX, rows, cols, v));
    else
        NDCL_TRY(ndcl_buffer_fill(ctx, v, cols, 0.0f));
    if (dmean) {
        const int c = (int)cols;
        const float alpha = -1.0f / (float)mean_rows, beta = 1.0f;
        const ndcl_arg args[] = {NDCL_ARG(c), NDCL_ARG(alpha), NDCL_ARG(dmean),
                                 NDCL_ARG(beta), NDCL_ARG(v)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_axpby", cols, 1, 1, args, 5));
    }
    return ndcl_center(ctx, dX, rows, cols, v);
}

static ndcl_status cov_backward_call(ndcl_context *ctx, cl_mem X, size_t rows,
                                     size_t groups, size_t n, float scale, bool centered,
                                     size_t mean_rows, cl_mem xc_mean, cl_mem dcov,
                                     cl_mem dmean, cl_mem dX)
{
    size_t cols, nn, total, count;
    if (rows == 0 || groups == 0 || n == 0 || !ndcl_mul_ok(groups, n, &cols) ||
        !ndcl_mul_ok(n, n, &nn) || !ndcl_mul_ok(nn, groups, &total) ||
        !ndcl_mul_ok(rows, cols, &count) || !prims_fit_int(total, count, rows))
        return ndcl_fail(
            ctx, NDCL_ERR_UNSUPPORTED,
            "covariance backward of %zu rows x %zu groups of %zu: empty or more "
            "than 2^31-1 elements",
            rows, groups, n);
    cl_mem S = NULL, v = NULL;
    ndcl_status s = prims_buffer(ctx, total, &S);
    if (s == NDCL_SUCCESS) s = prims_buffer(ctx, cols, &v);
    if (s == NDCL_SUCCESS)
        s = cov_backward(ctx, X, rows, groups, n, scale, centered, mean_rows, xc_mean, dcov,
                         dmean, dX, S, v);
    prims_release(S);
    prims_release(v);
    return s;
}

ndcl_status ndcl_cov_backward(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups,
                              size_t n, float scale, bool centered, cl_mem dcov,
                              cl_mem dmean, cl_mem dX)
{
    return cov_backward_call(ctx, X, rows, groups, n, scale, centered, rows, NULL, dcov,
                             dmean, dX);
}

ndcl_status ndcl_cov_backward_share(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups,
                                    size_t n, float scale, size_t total_rows,
                                    cl_mem xc_mean, cl_mem dcov, cl_mem dmean, cl_mem dX)
{
    if (total_rows < rows || total_rows == 0)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "covariance backward of %zu rows of a group's %zu", rows,
                         total_rows);
    return cov_backward_call(ctx, X, rows, groups, n, scale, xc_mean != NULL, total_rows,
                             xc_mean, dcov, dmean, dX);
}

/* ------------------------------------------------------------ fold */

/* A weight-shaped buffer in the block basis: gathered into the temporary
 * *temp (allocated when NULL, else reused), or the buffer itself when the
 * basis is the weight's own layout. */
static ndcl_status to_block(ndcl_context *ctx, const ndcl_fold_geom *g, bool direct,
                            cl_mem W, size_t total, cl_mem *out, cl_mem *temp)
{
    if (direct) {
        *out = W;
        return NDCL_SUCCESS;
    }
    if (!*temp) NDCL_TRY(prims_buffer(ctx, total, temp));
    *out = *temp;
    return ndcl_fold_move(ctx, "ndcl_fold_gather", g, W, *temp);
}

static ndcl_status fold_backward(ndcl_context *ctx, const ndcl_fold_geom *g, cl_mem W,
                                 cl_mem Wp, cl_mem D, cl_mem mean, cl_mem dWp, cl_mem db,
                                 cl_mem dW, cl_mem dD, cl_mem dmean, cl_mem *tmp)
{
    const bool direct = g->fs == 1 && (g->R == 1 || g->rs == g->nf);
    const size_t rows = g->outputs * g->R, total = rows * g->nf, nf = g->nf;
    const size_t m = rows / g->batch; /* block rows per whitening matrix */
    /* G' = dW'r - db ⊗ μ, in a temporary (dWp is the caller's). */
    NDCL_TRY(prims_buffer(ctx, total, &tmp[0]));
    cl_mem G = tmp[0];
    if (direct)
        NDCL_TRY(ndcl_buffer_copy(ctx, dWp, 0, G, 0, total));
    else
        NDCL_TRY(ndcl_fold_move(ctx, "ndcl_fold_gather", g, dWp, G));
    {
        const int r = (int)rows, R = (int)g->R, mi = (int)m, n = (int)nf;
        const ndcl_arg args[] = {NDCL_ARG(r),  NDCL_ARG(R),    NDCL_ARG(mi), NDCL_ARG(n),
                                 NDCL_ARG(db), NDCL_ARG(mean), NDCL_ARG(G)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_bw_fold_bias", nf, g->outputs, 1, args, 7));
    }
    /* One block-basis temporary serves Wp, then W, then the product: each
     * use is enqueued after the last read of the one before. */
    if (dmean) {
        cl_mem Wpb;
        NDCL_TRY(to_block(ctx, g, direct, Wp, total, &Wpb, &tmp[1]));
        const int b = (int)g->batch, mi = (int)m, R = (int)g->R, n = (int)nf;
        const ndcl_arg args[] = {NDCL_ARG(b),  NDCL_ARG(mi),  NDCL_ARG(R),    NDCL_ARG(n),
                                 NDCL_ARG(db), NDCL_ARG(Wpb), NDCL_ARG(dmean)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_bw_fold_mean", nf, g->batch, 1, args, 7));
    }
    if (dD) {
        /* dD_g = Wr_gᵀ·G_g over the group's m block rows. */
        cl_mem Wb;
        NDCL_TRY(to_block(ctx, g, direct, W, total, &Wb, &tmp[1]));
        NDCL_TRY(ndcl_blas_gemm_batched(ctx, true, false, nf, nf, m, 1.0f, Wb, 0, nf,
                                        m * nf, G, 0, nf, m * nf, 0.0f, dD, 0, nf, nf * nf,
                                        g->batch));
    }
    if (dW) {
        /* dWr = G·Dᵀ, straight into dW when the basis is its layout. */
        cl_mem out = dW;
        if (!direct) {
            if (!tmp[1]) NDCL_TRY(prims_buffer(ctx, total, &tmp[1]));
            out = tmp[1];
        }
        NDCL_TRY(ndcl_blas_gemm_batched(ctx, false, true, m, nf, nf, 1.0f, G, 0, nf, m * nf,
                                        D, 0, nf, nf * nf, 0.0f, out, 0, nf, m * nf,
                                        g->batch));
        if (!direct) NDCL_TRY(ndcl_fold_move(ctx, "ndcl_fold_scatter", g, out, dW));
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_fold_backward(ndcl_context *ctx, const ndcl_fold_geom *g, cl_mem W,
                               cl_mem Wp, cl_mem D, cl_mem mean, cl_mem dWp, cl_mem db,
                               cl_mem dW, cl_mem dD, cl_mem dmean)
{
    if (g->outputs == 0 || g->R == 0 || g->nf == 0 || g->batch == 0 ||
        g->outputs % g->batch != 0 || g->K != g->R * g->nf ||
        (g->R - 1) * g->rs + (g->nf - 1) * g->fs >= g->K)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "fold backward geometry: outputs=%zu K=%zu R=%zu nf=%zu rs=%zu "
                         "fs=%zu batch=%zu",
                         g->outputs, g->K, g->R, g->nf, g->rs, g->fs, g->batch);
    const size_t rows = g->outputs * g->R;
    if (!prims_fit_int(rows * g->nf, rows, g->batch * g->nf * g->nf))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "fold backward of %zu x %zu weights: more than 2^31-1 elements",
                         g->outputs, g->K);
    cl_mem tmp[2] = {NULL, NULL};
    ndcl_status s = fold_backward(ctx, g, W, Wp, D, mean, dWp, db, dW, dD, dmean, tmp);
    for (int i = 0; i < 2; i++)
        prims_release(tmp[i]);
    return s;
}

/* ------------------------------------------------------------ patches */

ndcl_status ndcl_im2col_sampled_backward(ndcl_context *ctx, const ndcl_patch_geom *g,
                                         cl_mem dX, cl_mem dx)
{
    const int n = (int)g->n, cols = (int)g->cols;
    const int blocks = g->groups == 1 ? (int)(g->c / g->block) : 1;
    const int c = (int)g->c, h = (int)g->h, w = (int)g->w;
    const int kh = (int)g->kh, kw = (int)g->kw, pad = (int)g->pad, dil = (int)g->dil;
    const int stride = (int)g->stride, oh = (int)g->oh, ow = (int)g->ow;
    const int step = (int)(g->stride * g->stride), start = (int)g->start;
    const ndcl_arg args[] = {NDCL_ARG(n),   NDCL_ARG(cols), NDCL_ARG(blocks), NDCL_ARG(c),
                             NDCL_ARG(h),   NDCL_ARG(w),    NDCL_ARG(kh),     NDCL_ARG(kw),
                             NDCL_ARG(pad), NDCL_ARG(dil),  NDCL_ARG(stride), NDCL_ARG(oh),
                             NDCL_ARG(ow),  NDCL_ARG(step), NDCL_ARG(start),  NDCL_ARG(dX),
                             NDCL_ARG(dx)};
    /* ndcl_patch_geom_init checked that the sizes fit int. */
    const size_t ey = g->dil * (g->kh - 1) + 1, ex = g->dil * (g->kw - 1) + 1;
    /* Where no two patch elements copied one pixel (the 1x1 path, or a
     * sampling stride at least the kernel's extent: FastDeconv's default 3
     * for 3x3), each row of dX adds itself to its pixels: 3.5x faster than
     * the gather over the taps (11.5 -> 3.3 ms for a 128x32x14x14 layer). */
    if (g->oh == 0 || (g->stride >= ey && g->stride >= ex)) {
        const int positions = (int)g->positions;
        cl_mem tap = NULL;
        NDCL_TRY(ndcl_im2col_taps(ctx, g, &tap));
        const ndcl_arg rargs[] = {NDCL_ARG(positions), NDCL_ARG(cols),   NDCL_ARG(blocks),
                                  NDCL_ARG(c),         NDCL_ARG(h),      NDCL_ARG(w),
                                  NDCL_ARG(pad),       NDCL_ARG(stride), NDCL_ARG(oh),
                                  NDCL_ARG(ow),        NDCL_ARG(step),   NDCL_ARG(start),
                                  NDCL_ARG(tap),       NDCL_ARG(dX),     NDCL_ARG(dx)};
        ndcl_status s = positions == 0
                            ? NDCL_SUCCESS
                            : prims_launch3(ctx, "ndcl_im2col_sampled_scatter",
                                            (size_t)blocks, g->positions, 1, rargs,
                                            (int)(sizeof rargs / sizeof rargs[0]));
        prims_release(tap);
        return s;
    }
    return prims_launch3(ctx, "ndcl_im2col_sampled_adj", g->w, g->h, g->n * g->c, args,
                         (int)(sizeof args / sizeof args[0]));
}

/* ------------------------------------------------------------ whitening */
