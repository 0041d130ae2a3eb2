/* stats.c - column sums and means, centring and (per-group) covariances of a patch
 * or feature matrix, and strided row or column sums: reduction kernels plus a
 * SYRK/GEMM of the BLAS engines (blas/). */
#include "primitives/primitives.h"
#include "primitives/launch.h"

/* Column sums of X divided by divisor (rows for the means, 1 for sums). */
static ndcl_status col_reduce(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols,
                              bool mean_wanted, cl_mem mean)
{
    static const char *const name = "ndcl_col_sum";
    if (rows == 0 || cols == 0)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG, "mean of a %zu x %zu matrix", rows,
                         cols);
    size_t count;
    if (!ndcl_mul_ok(rows, cols, &count) || !prims_fit_int(count, rows, cols))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "mean of a %zu x %zu matrix: more than 2^31-1 elements", rows,
                         cols);
    /* Work-group (lx, ly) with one float of local memory per item. */
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, name, 256, sizeof(float), &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    /* Up to 64 adjacent columns (contiguous loads), the rest of the group
     * as lanes over the rows; ly stays a power of two for the tree. */
    size_t lx = 1, ly = 1;
    while (lx * 2 <= wg && lx * 2 <= 64 && lx * 2 <= max_items[0] && lx < cols)
        lx *= 2;
    while (lx * ly * 2 <= wg && ly * 2 <= max_items[1])
        ly *= 2;
    /* Split the rows into chunks when the columns alone give too few
     * work-groups to fill the device; a second pass adds the chunks up. */
    const size_t col_groups = (cols + lx - 1) / lx;
    const size_t want_groups = 8 * (ctx->info.compute_units ? ctx->info.compute_units : 1);
    size_t chunks = 1;
    if (col_groups < want_groups) {
        chunks = (want_groups + col_groups - 1) / col_groups;
        size_t by_rows = rows / (ly * 8); /* at least 8 rows per lane */
        if (chunks > by_rows) chunks = by_rows ? by_rows : 1;
    }
    size_t per_chunk = (rows + chunks - 1) / chunks;
    chunks = (rows + per_chunk - 1) / per_chunk;

    cl_mem partial = NULL;
    if (chunks > 1) NDCL_TRY(prims_buffer(ctx, chunks * cols, &partial));
    const size_t local[2] = {lx, ly};
    ndcl_status s;
    {
        const int r = (int)rows, c = (int)cols, pc = (int)per_chunk;
        const float div = chunks > 1 || !mean_wanted ? 1.0f : (float)rows;
        cl_mem out = chunks > 1 ? partial : mean;
        const ndcl_arg args[] = {NDCL_ARG(r),
                                 NDCL_ARG(c),
                                 NDCL_ARG(pc),
                                 NDCL_ARG(div),
                                 NDCL_ARG(X),
                                 NDCL_ARG(out),
                                 NDCL_LOCAL(lx * ly * sizeof(float))};
        const size_t global[2] = {col_groups * lx, chunks * ly};
        s = ndcl_launch(ctx, name, 2, global, local, args, 7);
    }
    if (s == NDCL_SUCCESS && chunks > 1) {
        const int r = (int)chunks, c = (int)cols, pc = (int)chunks;
        const float div = mean_wanted ? (float)rows : 1.0f;
        const ndcl_arg args[] = {NDCL_ARG(r),
                                 NDCL_ARG(c),
                                 NDCL_ARG(pc),
                                 NDCL_ARG(div),
                                 NDCL_ARG(partial),
                                 NDCL_ARG(mean),
                                 NDCL_LOCAL(lx * ly * sizeof(float))};
        const size_t global[2] = {col_groups * lx, ly};
        s = ndcl_launch(ctx, name, 2, global, local, args, 7);
    }
    prims_release(partial);
    return s;
}

ndcl_status ndcl_col_mean(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols,
                          cl_mem mean)
{
    return col_reduce(ctx, X, rows, cols, true, mean);
}

ndcl_status ndcl_col_sum(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols, cl_mem sum)
{
    return col_reduce(ctx, X, rows, cols, false, sum);
}

ndcl_status ndcl_center(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols, cl_mem mean)
{
    size_t count;
    if (!ndcl_mul_ok(rows, cols, &count) || !prims_fit_int(count, rows, cols))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "centring a %zu x %zu matrix: more than 2^31-1 elements", rows,
                         cols);
    const int r = (int)rows, c = (int)cols;
    const ndcl_arg args[] = {NDCL_ARG(r), NDCL_ARG(c), NDCL_ARG(X), NDCL_ARG(mean)};
    return prims_launch3(ctx, "ndcl_center", cols, rows, 1, args, 4);
}

ndcl_status ndcl_cov(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups, size_t n,
                     float scale, float eps, cl_mem cov)
{
    size_t cols, nn, total;
    if (!ndcl_mul_ok(groups, n, &cols) || !ndcl_mul_ok(n, n, &nn) ||
        !ndcl_mul_ok(nn, groups, &total) || !prims_fit_int(total, cols, rows))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "covariance of %zu groups of %zu: more than 2^31-1 elements",
                         groups, n);
    /* The engines' table (blas/blas.h) has no batched SYRK (CLBlast has
     * none). Measured on PoCL (2 cores), with CLBlast: SYRK, which
     * computes one triangle, takes about half the time of a GEMM from
     * n = 64 up (15488 x 576: 274 ms vs 490 ms; 1024 x 512: 11 vs 32 ms);
     * for many small groups one strided-batched GEMM wins over a SYRK per
     * group (64 groups of 9: 21 ms vs 104 ms). */
    if (groups == 1 || n >= 64) {
        for (size_t g = 0; g < groups; g++)
            NDCL_TRY(ndcl_blas_syrk(ctx, true, n, rows, scale, X, g * n, cols, 0.0f, cov,
                                    g * nn, n));
    } else {
        /* Group g is the column block at offset g*n of every row. */
        NDCL_TRY(ndcl_blas_gemm_batched(ctx, true, false, n, n, rows, scale, X, 0, cols, n,
                                        X, 0, cols, n, 0.0f, cov, 0, n, nn, groups));
    }
    const int ni = (int)n, gi = (int)groups;
    const ndcl_arg args[] = {NDCL_ARG(ni), NDCL_ARG(gi), NDCL_ARG(eps), NDCL_ARG(cov)};
    return prims_launch3(ctx, "ndcl_cov_finish", n, n, groups, args, 4);
}

ndcl_status ndcl_strided_sum(ndcl_context *ctx, cl_mem X, size_t off, size_t rows, size_t n,
                             size_t rs, size_t cs, float alpha, cl_mem out)
{
    if (rows == 0) return NDCL_SUCCESS;
    if (!prims_fit_int(off, rows, n) || !prims_fit_int(rs, cs, 0))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "sums of %zu rows of %zu values: more than 2^31-1", rows, n);
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_strided_sum", 256, sizeof(float), &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    while (wg > max_items[0])
        wg /= 2;
    const int ni = (int)n, oi = (int)off, ri = (int)rs, ci = (int)cs;
    const ndcl_arg args[] = {
        NDCL_ARG(ni), NDCL_ARG(X),     NDCL_ARG(oi),  NDCL_ARG(ri),
        NDCL_ARG(ci), NDCL_ARG(alpha), NDCL_ARG(out), NDCL_LOCAL(wg * sizeof(float))};
    const size_t global[2] = {wg, rows}, local[2] = {wg, 1};
    return ndcl_launch(ctx, "ndcl_strided_sum", 2, global, local, args, 8);
}

ndcl_status ndcl_check_finite(ndcl_context *ctx, cl_mem stat, size_t off, size_t count,
                              cl_mem bad, cl_mem flag)
{
    int n = (int)count, o = (int)off;
    ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(stat), NDCL_ARG(o), NDCL_ARG(bad),
                       NDCL_ARG(flag)};
    size_t global = count;
    return ndcl_launch(ctx, "ndcl_check_finite", 1, &global, NULL, args, 5);
}

ndcl_status ndcl_momentum_update(ndcl_context *ctx, size_t count, float momentum, bool copy,
                                 cl_mem stat, size_t off, cl_mem running, cl_mem bad)
{
    int n = (int)count, c = copy, o = (int)off;
    ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(momentum), NDCL_ARG(c),  NDCL_ARG(stat),
                       NDCL_ARG(o), NDCL_ARG(running),  NDCL_ARG(bad)};
    size_t global = count;
    return ndcl_launch(ctx, "ndcl_momentum", 1, &global, NULL, args, 7);
}
