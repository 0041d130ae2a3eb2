/* conv2d.c - the plain convolution a deconvolved layer ends with, a chunk
 * of images at a time: the chunk's patches (im2col) in a workspace sized
 * to the device, the products written straight into NCHW (per image) or
 * through a chunk-sized row buffer, and the adjoint with dW accumulated
 * over the chunks and the patches recomputed from x. */
#include "primitives/conv2d.h"

#include "blas/blas.h"
#include "primitives/launch.h"

/* From this many output positions per image on, the forward's per-image
 * products (Cout x P each) are as fast as one wide product per chunk and
 * save the move to NCHW; below it they are too thin for a BLAS. */
#define PER_IMAGE_MIN_P 256

/* Columns a chunk's products get at least, whatever the budget: below
 * this a BLAS runs thin products far from its rate (512 x 4608 by 16
 * columns per image: 3.5 s for the batch at one image per chunk, 0.18 s
 * at 64). */
#define MIN_COLUMNS 1024

/* Work-group size asked for the memory-bound kernels (see prims_launch_wide). */
#define WIDE_WG 4096

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
                   ndcl_mul_ok(g->n, g->P, &cols) && cols <= INT32_MAX &&
                       ndcl_mul_ok(g->n * g->c, g->h * g->w, &t) &&
                       ndcl_mul_ok(cols, g->cout, &t) && g->K <= INT32_MAX &&
                       g->n * g->c <= INT32_MAX,
                   "convolution of %zu samples x %zu positions is too large", g->n, g->P);
    return NDCL_SUCCESS;
}

size_t ndcl_conv_budget(const ndcl_context *ctx)
{
    if (ctx->info.type != NDCL_DEVICE_CPU) return NDCL_CONV_DEVICE_BUDGET;
    const uint64_t half = ctx->info.global_mem_cache_bytes / 2;
    return half < NDCL_CONV_CPU_BUDGET_MIN   ? NDCL_CONV_CPU_BUDGET_MIN
           : half > NDCL_CONV_CPU_BUDGET_MAX ? NDCL_CONV_CPU_BUDGET_MAX
                                             : (size_t)half;
}

ndcl_status ndcl_conv_plan_make(ndcl_context *ctx, const ndcl_conv_geom *g, bool backward,
                                ndcl_conv_plan *p)
{
    const size_t kp = g->K * g->P, cp = g->cout * g->P;
    const bool per_image = g->P >= PER_IMAGE_MIN_P;
    const bool need_tmp = backward || !per_image;
    /* The largest single buffer per image and the total per image. */
    const size_t widest = need_tmp && cp > kp ? cp : kp, per = kp + (need_tmp ? cp : 0);
    size_t chunk = g->chunk;
    if (chunk == 0) {
        chunk = ndcl_conv_budget(ctx) / sizeof(float) / (per ? per : 1);
        const size_t thin = (MIN_COLUMNS + g->P - 1) / g->P;
        if (chunk < thin) chunk = thin;
    }
    uint64_t cap = ctx->info.max_alloc_bytes ? ctx->info.max_alloc_bytes / sizeof(float)
                                             : (uint64_t)INT32_MAX;
    if (cap > INT32_MAX) cap = INT32_MAX; /* the kernels index a chunk with int */
    if (widest > cap)
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                         "the patches of one image (%zu x %zu floats) exceed the device's "
                         "largest allocation",
                         g->K, g->P);
    /* Within the allocation and the kernels' int item counts (nc*K, nc*C). */
    const size_t lim[] = {g->n, (size_t)cap / widest, INT32_MAX / g->K, INT32_MAX / g->c};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (chunk > lim[i]) chunk = lim[i];
    if (chunk == 0) chunk = 1;
    if (g->chunk == 0) {
        /* Even chunks: the same count of chunks, none much smaller than the rest. */
        size_t count = (g->n + chunk - 1) / chunk;
        chunk = (g->n + count - 1) / count;
    }
    *p = (ndcl_conv_plan){.chunk = chunk,
                          .per_image = per_image,
                          .col = chunk * kp,
                          .tmp = need_tmp ? chunk * cp : 0};
    return NDCL_SUCCESS;
}

/* The kernel arguments every patch kernel takes, in order. */
typedef struct patch_args {
    int C, H, W, KH, KW, stride, pad, dil, OH, OW, n0, nc, ks, ns;
} patch_args;

static patch_args patch(const ndcl_conv_geom *g, size_t n0, size_t nc, size_t ks, size_t ns)
{
    return (patch_args){(int)g->c,      (int)g->h,   (int)g->w,   (int)g->kh, (int)g->kw,
                        (int)g->stride, (int)g->pad, (int)g->dil, (int)g->oh, (int)g->ow,
                        (int)n0,        (int)nc,     (int)ks,     (int)ns};
}

static ndcl_status patch_launch(ndcl_context *ctx, const char *name, const patch_args *a,
                                cl_mem in, cl_mem out, size_t x, size_t y, size_t z)
{
    const ndcl_arg args[] = {
        NDCL_ARG(a->C),  NDCL_ARG(a->H),      NDCL_ARG(a->W),   NDCL_ARG(a->KH),
        NDCL_ARG(a->KW), NDCL_ARG(a->stride), NDCL_ARG(a->pad), NDCL_ARG(a->dil),
        NDCL_ARG(a->OH), NDCL_ARG(a->OW),     NDCL_ARG(a->n0),  NDCL_ARG(a->nc),
        NDCL_ARG(a->ks), NDCL_ARG(a->ns),     NDCL_ARG(in),     NDCL_ARG(out)};
    return prims_launch_wide(ctx, name, WIDE_WG, x, y, z, args,
                             (int)(sizeof args / sizeof args[0]));
}

/* The explicit vector width of the stride-1 patch kernels for rows of
 * `row` outputs: 8 or 4 floats per item, 1 (the kernels vectorised by the
 * runtime, or not) at other strides and for rows shorter than 4. */
static size_t vector_width(const ndcl_conv_geom *g, size_t row)
{
    if (g->stride != 1) return 1;
    return row >= 8 ? 8 : row >= 4 ? 4 : 1;
}

ndcl_status ndcl_conv_im2col(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                             size_t n0, size_t nc, size_t ks, size_t ns, cl_mem col)
{
    const patch_args a = patch(g, n0, nc, ks, ns);
    const size_t vw = vector_width(g, g->ow);
    if (vw > 1) {
        const char *name = vw == 8 ? "ndcl_im2col_chunk_v8" : "ndcl_im2col_chunk_v4";
        return patch_launch(ctx, name, &a, x, col, (g->ow + vw - 1) / vw, g->oh, g->K);
    }
    return patch_launch(ctx, "ndcl_im2col_chunk", &a, x, col, g->ow, g->oh, g->K);
}

ndcl_status ndcl_conv_col2im(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem dcol,
                             size_t n0, size_t nc, size_t ks, size_t ns, cl_mem dx)
{
    const patch_args a = patch(g, n0, nc, ks, ns);
    const size_t vw = vector_width(g, g->w);
    if (vw > 1) {
        const char *name = vw == 8 ? "ndcl_col2im_chunk_v8" : "ndcl_col2im_chunk_v4";
        return patch_launch(ctx, name, &a, dcol, dx, (g->w + vw - 1) / vw, g->h, nc * g->c);
    }
    /* The common sizes have their taps written out (vectorised on PoCL). */
    const char *name = g->kh == 3 && g->kw == 3   ? "ndcl_col2im_chunk_3x3"
                       : g->kh == 1 && g->kw == 1 ? "ndcl_col2im_chunk_1x1"
                                                  : "ndcl_col2im_chunk";
    return patch_launch(ctx, name, &a, dcol, dx, g->w, g->h, nc * g->c);
}

ndcl_status ndcl_conv_to_rows(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem y,
                              size_t n0, size_t nc, cl_mem t)
{
    const int P = (int)g->P, Co = (int)g->cout, first = (int)n0, count = (int)nc;
    const ndcl_arg args[] = {NDCL_ARG(P),     NDCL_ARG(Co), NDCL_ARG(first),
                             NDCL_ARG(count), NDCL_ARG(y),  NDCL_ARG(t)};
    return prims_launch_wide(ctx, "ndcl_conv_nchw_rows", WIDE_WG, g->P, g->cout, nc, args,
                             6);
}

ndcl_status ndcl_conv_from_rows(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem t,
                                cl_mem b, size_t n0, size_t nc, cl_mem y)
{
    const int P = (int)g->P, Co = (int)g->cout, first = (int)n0, count = (int)nc;
    const int hb = b != NULL;
    cl_mem bb = b ? b : t; /* any valid buffer: not read without a bias */
    const ndcl_arg args[] = {NDCL_ARG(P), NDCL_ARG(Co), NDCL_ARG(first), NDCL_ARG(count),
                             NDCL_ARG(t), NDCL_ARG(bb), NDCL_ARG(hb),    NDCL_ARG(y)};
    return prims_launch_wide(ctx, "ndcl_conv_rows_nchw", WIDE_WG, g->P, g->cout, nc, args,
                             8);
}

static ndcl_status bias_fill(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem b,
                             size_t n0, size_t nc, cl_mem y)
{
    const int P = (int)g->P, Co = (int)g->cout, first = (int)n0, count = (int)nc;
    const int hb = b != NULL;
    cl_mem bb = b ? b : y;
    const ndcl_arg args[] = {NDCL_ARG(P),  NDCL_ARG(Co), NDCL_ARG(first), NDCL_ARG(count),
                             NDCL_ARG(bb), NDCL_ARG(hb), NDCL_ARG(y)};
    return prims_launch_wide(ctx, "ndcl_conv_bias_fill", WIDE_WG, g->P, g->cout, nc, args,
                             7);
}

ndcl_status ndcl_conv_row_sums(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem t,
                               size_t nc, bool accumulate, cl_mem db)
{
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_conv_row_sums", 256, sizeof(float), &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    while (wg > max_items[0])
        wg /= 2;
    const int len = (int)(nc * g->P), acc = accumulate;
    const ndcl_arg args[] = {NDCL_ARG(len), NDCL_ARG(t), NDCL_ARG(acc), NDCL_ARG(db),
                             NDCL_LOCAL(wg * sizeof(float))};
    const size_t global[2] = {wg, g->cout}, local[2] = {wg, 1};
    return ndcl_launch(ctx, "ndcl_conv_row_sums", 2, global, local, args, 5);
}

ndcl_status ndcl_conv_forward(ndcl_context *ctx, const ndcl_conv_geom *g,
                              const ndcl_conv_plan *p, cl_mem x, cl_mem w, cl_mem b,
                              cl_mem y, cl_mem col, cl_mem tmp)
{
    const size_t G = g->groups, Kg = g->K / G, Cg = g->cout / G, K = g->K, P = g->P;
    for (size_t n0 = 0; n0 < g->n; n0 += p->chunk) {
        const size_t nc = g->n - n0 < p->chunk ? g->n - n0 : p->chunk;
        if (p->per_image) {
            /* y_n = b + W·col_n for each image: the products add to the bias. */
            NDCL_TRY(ndcl_conv_im2col(ctx, g, x, n0, nc, P, K * P, col));
            NDCL_TRY(bias_fill(ctx, g, b, n0, nc, y));
            for (size_t q = 0; q < G; q++)
                NDCL_TRY(ndcl_blas_gemm_batched(ctx, false, false, Cg, P, Kg, 1.0f, w,
                                                q * Cg * Kg, Kg, 0, col, q * Kg * P, P,
                                                K * P, 1.0f, y, (n0 * g->cout + q * Cg) * P,
                                                P, g->cout * P, nc));
        } else {
            /* tmp (Cout x nc*P) = W (block-diagonal by group) · col (K x nc*P). */
            const size_t ncp = nc * P;
            NDCL_TRY(ndcl_conv_im2col(ctx, g, x, n0, nc, ncp, P, col));
            for (size_t q = 0; q < G; q++)
                NDCL_TRY(ndcl_blas_gemm(ctx, false, false, Cg, ncp, Kg, 1.0f, w,
                                        q * Cg * Kg, Kg, col, q * Kg * ncp, ncp, 0.0f, tmp,
                                        q * Cg * ncp, ncp));
            NDCL_TRY(ndcl_conv_from_rows(ctx, g, tmp, b, n0, nc, y));
        }
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_backward(ndcl_context *ctx, const ndcl_conv_geom *g,
                               const ndcl_conv_plan *p, cl_mem x, cl_mem w, cl_mem dy,
                               cl_mem dx, cl_mem dW, cl_mem db, cl_mem col, cl_mem tmp)
{
    if (!dx && !dW && !db) return NDCL_SUCCESS;
    const size_t G = g->groups, Kg = g->K / G, Cg = g->cout / G, P = g->P;
    for (size_t n0 = 0; n0 < g->n; n0 += p->chunk) {
        const size_t nc = g->n - n0 < p->chunk ? g->n - n0 : p->chunk, ncp = nc * P;
        /* The chunk of dy as the wide product's rows: Cout x nc*P in tmp. */
        NDCL_TRY(ndcl_conv_to_rows(ctx, g, dy, n0, nc, tmp));
        /* db += the rows' sums, while they are in cache. */
        if (db) NDCL_TRY(ndcl_conv_row_sums(ctx, g, tmp, nc, n0 > 0, db));
        if (dW) {
            /* dW += dYt·colᵀ, the first chunk overwriting. */
            NDCL_TRY(ndcl_conv_im2col(ctx, g, x, n0, nc, ncp, P, col));
            for (size_t q = 0; q < G; q++)
                NDCL_TRY(ndcl_blas_gemm(ctx, false, true, Cg, Kg, ncp, 1.0f, tmp,
                                        q * Cg * ncp, ncp, col, q * Kg * ncp, ncp,
                                        n0 ? 1.0f : 0.0f, dW, q * Cg * Kg, Kg));
        }
        if (dx) {
            /* dcol = Wᵀ·dYt into the patch workspace, then col2im. */
            for (size_t q = 0; q < G; q++)
                NDCL_TRY(ndcl_blas_gemm(ctx, true, false, Kg, ncp, Cg, 1.0f, w, q * Cg * Kg,
                                        Kg, tmp, q * Cg * ncp, ncp, 0.0f, col, q * Kg * ncp,
                                        ncp));
            NDCL_TRY(ndcl_conv_col2im(ctx, g, col, n0, nc, ncp, P, dx));
        }
    }
    return NDCL_SUCCESS;
}
