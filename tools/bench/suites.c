/* suites.c - ndcl-bench's suite table: each suite's setup, timed call,
 * cost model and --help entry, and the benchmark's life around them. The
 * plain convolution is reached only through the library's algorithm table
 * (conv/conv_algo.h), the block clamp through ndcl_block_clamp, the chunks
 * through the library's plan (ndcl_conv_plan_make). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ndcl_cl.h"
#include "suites.h"

/* A tensor's device buffer, for the internal entry points of bench.h. */
#define MEM(t) ndcl_tensor_cl_mem(t)

/* Returns early with the status of a failed call. */
#define BENCH_TRY(expr)                                                                    \
    do {                                                                                   \
        ndcl_status bench_try_s_ = (expr);                                                 \
        if (bench_try_s_ != NDCL_SUCCESS) return bench_try_s_;                             \
    } while (0)

#define STR_(x) #x
#define STR(x) STR_(x)

char error_msg[2048];
ndcl_status error_status;

const char *suite_name(suite_id s)
{
    return s == S_LSTEP ? "layer-step" : suites[s].name;
}

bool suite_applies(suite_id s, const shape *sh)
{
    return !sh->gemm_only || suites[s].gemm_row;
}

/* Records "what: status: detail" for the caller to print. */
static bool failed(bench *b, const char *what, ndcl_status s)
{
    error_status = s;
    const char *e = ndcl_context_last_error(b->ctx);
    snprintf(error_msg, sizeof error_msg, "%s %s: %s: %s%s%s", suite_name(b->suite),
             b->sh->text, what, ndcl_status_string(s), *e ? ": " : "", e);
    return false;
}

#define TRY(b, expr)                                                                       \
    do {                                                                                   \
        ndcl_status try_s_ = (expr);                                                       \
        if (try_s_ != NDCL_SUCCESS) return failed((b), #expr, try_s_);                     \
    } while (0)

/* ------------------------------------------------------------ inputs */

/* xorshift32, so that every run sees the same inputs. */
static float rand_sym(unsigned *state)
{
    unsigned x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (float)((x >> 8) / 16777216.0 * 2.0 - 1.0);
}

/* A tensor of uniform values in [-scale, scale) (scale 0: uninitialised). */
static ndcl_status tensor(ndcl_context *ctx, int ndim, const size_t *dims, float scale,
                          unsigned seed, ndcl_tensor **out)
{
    ndcl_tensor *t = NULL;
    BENCH_TRY(ndcl_tensor_create(ctx, ndim, dims, &t));
    if (scale != 0) {
        size_t n = ndcl_tensor_count(t);
        float *h = malloc(n * sizeof *h);
        if (!h) {
            ndcl_tensor_destroy(t);
            return NDCL_ERR_OUT_OF_MEMORY; /* of the host: reported as the status */
        }
        for (size_t i = 0; i < n; i++)
            h[i] = scale * rand_sym(&seed);
        ndcl_status s = ndcl_tensor_write(t, h, n);
        free(h);
        if (s != NDCL_SUCCESS) {
            ndcl_tensor_destroy(t);
            return s;
        }
    }
    *out = t;
    return NDCL_SUCCESS;
}

static ndcl_status tensor1(ndcl_context *ctx, size_t d0, float scale, unsigned seed,
                           ndcl_tensor **out)
{
    return tensor(ctx, 1, (size_t[]){d0}, scale, seed, out);
}

static ndcl_status input_x(bench *b, unsigned seed)
{
    const shape *s = b->sh;
    return tensor(b->ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 1.0f, seed, &b->x);
}

static void weight_shape(const shape *s, size_t out[4])
{
    out[0] = s->cout;
    out[1] = s->c / s->groups;
    out[2] = out[3] = s->k;
}

/* ------------------------------------------------------------ geometry */

/* Convolution, patch and fold geometry of a shape, as conv.c derives them
 * (the block clamped by the library's ndcl_block_clamp). */
static bool geometry(bench *b)
{
    const shape *s = b->sh;
    b->cg = (ndcl_conv_geom){.n = s->n,
                             .c = s->c,
                             .h = s->h,
                             .w = s->w,
                             .cout = s->cout,
                             .kh = s->k,
                             .kw = s->k,
                             .stride = s->stride,
                             .pad = s->pad,
                             .dil = 1,
                             .groups = s->groups};
    TRY(b, ndcl_conv_geom_init(b->ctx, &b->cg));
    const size_t B = (size_t)ndcl_block_clamp((int)s->c, (int)s->block, (int)s->groups);
    b->pg = (ndcl_patch_geom){.n = s->n,
                              .c = s->c,
                              .h = s->h,
                              .w = s->w,
                              .kh = s->k,
                              .kw = s->k,
                              .pad = s->pad,
                              .dil = 1,
                              .stride = s->ss * s->stride,
                              .groups = s->groups,
                              .block = B};
    TRY(b, ndcl_patch_geom_init(b->ctx, &b->pg));
    ndcl_fold_geom *f = &b->fg;
    *f = (ndcl_fold_geom){0};
    f->outputs = s->cout;
    f->K = s->c / s->groups * s->k * s->k;
    f->nf = b->pg.nf;
    f->batch = s->groups;
    if (s->groups == 1) {
        f->R = s->c / B; /* interleaved blocks: (o, r) element f at W[o, f*R + r] */
        f->rs = 1;
        f->fs = f->R;
    } else {
        f->R = 1;
        f->rs = 0;
        f->fs = 1;
    }
    return true;
}

/* The geometry and the chunk plan, as the conv layer plans them: what
 * every suite of a --shape starts from. */
static bool conv_geometry(bench *b)
{
    if (!geometry(b)) return false;
    TRY(b, ndcl_conv_plan_make(b->ctx, &b->cg, true, &b->plan));
    return true;
}

/* The shape's deconvolved conv layer. */
static ndcl_conv2d_desc layer_desc(const shape *s)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default((int)s->c, (int)s->cout, (int)s->k);
    d.stride = (int)s->stride;
    d.padding = (int)s->pad;
    d.groups = (int)s->groups;
    d.block = (int)s->block;
    d.sampling_stride = (int)s->ss;
    d.n_iter = N_ITER;
    return d;
}

/* Each chunk of the library's plan in turn: images n0 .. n0+nc-1. */
static ndcl_status over_chunks(bench *b,
                               ndcl_status (*piece)(bench *b, size_t n0, size_t nc))
{
    const size_t N = b->cg.n, chunk = b->plan.chunk;
    for (size_t n0 = 0; n0 < N; n0 += chunk)
        BENCH_TRY(piece(b, n0, N - n0 < chunk ? N - n0 : chunk));
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ cost model */

/* Useful flops (see --help). */
static double conv_flops(const shape *s, const ndcl_conv_geom *g)
{
    return 2.0 * (double)s->n * (double)g->P * (double)s->cout *
           (double)(s->c / s->groups) * (double)(s->k * s->k);
}

static double cov_flops(const shape *s, const ndcl_patch_geom *p)
{
    return (double)s->groups * (double)p->rows * (double)p->nf * (double)(p->nf + 1);
}

static double ns_flops(double groups, double nf)
{
    return groups * N_ITER * 3.0 * 2.0 * nf * nf * nf;
}

static double fold_flops(const ndcl_fold_geom *f)
{
    return 2.0 * (double)f->outputs * (double)f->R * (double)f->nf * (double)f->nf;
}

/* The (output, tap) pairs of one dimension that land inside the input
 * (size), not in the padding. */
static double taps_inside(size_t outputs, size_t k, size_t stride, size_t dil, size_t pad,
                          size_t size)
{
    double n = 0;
    for (size_t o = 0; o < outputs; o++)
        for (size_t i = 0; i < k; i++) {
            long long at = (long long)(o * stride + i * dil) - (long long)pad;
            n += at >= 0 && at < (long long)size;
        }
    return n;
}

/* Input values the sampled im2col reads (padding is written, not read). */
static double im2col_reads(const ndcl_patch_geom *g)
{
    if (g->kh * g->kw == 1) return (double)g->positions * (double)g->c;
    return (double)g->n * (double)g->c *
           taps_inside(g->oh, g->kh, g->stride, g->dil, g->pad, g->h) *
           taps_inside(g->ow, g->kw, g->stride, g->dil, g->pad, g->w);
}

/* Input values the convolution's im2col reads over the batch (each in-bounds
 * tap once), which col2im's gather reads back as patch values. */
static double conv_reads(const ndcl_conv_geom *g)
{
    return (double)g->n * (double)g->c *
           taps_inside(g->oh, g->kh, g->stride, g->dil, g->pad, g->h) *
           taps_inside(g->ow, g->kw, g->stride, g->dil, g->pad, g->w);
}

static double x_count(const ndcl_conv_geom *g)
{
    return (double)(g->n * g->c * g->h * g->w);
}

static double y_count(const ndcl_conv_geom *g)
{
    return (double)(g->n * g->P) * (double)g->cout;
}

static void note(bench *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->note, sizeof b->note, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ gemm, gemm-host */

/* M x N x K of the products: the --gemm problem's, or the convolution's
 * (one per group on the block-diagonal weight). */
static void gemm_sizes(const bench *b, size_t *G, size_t *M, size_t *N, size_t *K)
{
    const shape *s = b->sh;
    if (s->gemm_only) {
        *G = 1, *M = s->gm, *N = s->gn, *K = s->gk;
    } else {
        *G = s->groups;
        *M = b->cg.cout / *G;
        *N = b->cg.n * b->cg.P;
        *K = b->cg.K / *G;
    }
}

static bool setup_gemm(bench *b)
{
    ndcl_context *ctx = b->ctx;
    if (!b->sh->gemm_only && !conv_geometry(b)) return false;
    size_t G, M, N, K;
    gemm_sizes(b, &G, &M, &N, &K);
    TRY(b, tensor(ctx, 2, (size_t[]){G * M, K}, 1.0f, 1, &b->a));
    TRY(b, tensor(ctx, 2, (size_t[]){G * K, N}, 1.0f, 2, &b->b));
    TRY(b, tensor(ctx, 2, (size_t[]){G * M, N}, 0, 0, &b->c));
    return true;
}

static void cost_gemm(bench *b)
{
    size_t G, M, N, K;
    gemm_sizes(b, &G, &M, &N, &K);
    if (b->sh->gemm_only) {
        b->flops = 2.0 * (double)M * (double)N * (double)K;
    } else {
        b->flops = conv_flops(b->sh, &b->cg);
    }
    if (G > 1)
        note(b, "%zu x M=%zu N=%zu K=%zu", G, M, N, K);
    else
        note(b, "M=%zu N=%zu K=%zu", M, N, K);
}

static ndcl_status call_gemm(bench *b)
{
    if (b->sh->gemm_only) return ndcl_gemm(b->ctx, 0, 0, 1.0f, b->a, b->b, 0.0f, b->c);
    size_t G, M, N, K;
    gemm_sizes(b, &G, &M, &N, &K);
    for (size_t q = 0; q < G; q++)
        BENCH_TRY(ndcl_blas_gemm(b->ctx, false, false, M, N, K, 1.0f, MEM(b->a), q * M * K,
                                 K, MEM(b->b), q * K * N, N, 0.0f, MEM(b->c), q * M * N,
                                 N));
    return NDCL_SUCCESS;
}

static bool setup_gemm_host(bench *b)
{
    if (!b->sh->gemm_only && !geometry(b)) return false;
    size_t G, M, N, K;
    gemm_sizes(b, &G, &M, &N, &K);
    b->host = host_gemm_create(G, M, N, K);
    if (!b->host) return failed(b, "host operands", NDCL_ERR_OUT_OF_MEMORY);
    return true;
}

static void cost_gemm_host(bench *b)
{
    size_t G, M, N, K;
    gemm_sizes(b, &G, &M, &N, &K);
    b->flops = 2.0 * (double)G * (double)M * (double)N * (double)K;
    note(b, "cblas_sgemm on host memory");
}

static ndcl_status call_gemm_host(bench *b)
{
    host_gemm_run(b->host);
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ copy */

static bool setup_copy(bench *b)
{
    const shape *s = b->sh;
    if (!conv_geometry(b)) return false;
    TRY(b, input_x(b, 11));
    TRY(b, tensor(b->ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->c));
    return true;
}

static void cost_copy(bench *b)
{
    b->bytes = 8.0 * x_count(&b->cg);
    note(b, "%.0f floats", x_count(&b->cg));
}

static ndcl_status call_copy(bench *b)
{
    return ndcl_copy_floats(b->ctx, MEM(b->x), MEM(b->c), ndcl_tensor_count(b->x));
}

/* ------------------------------------------------------------ im2col */

static bool setup_im2col(bench *b)
{
    if (!conv_geometry(b)) return false;
    TRY(b, input_x(b, 11));
    TRY(b, tensor(b->ctx, 2, (size_t[]){b->pg.rows, b->pg.cols}, 0, 0, &b->X));
    return true;
}

static void cost_im2col(bench *b)
{
    const ndcl_patch_geom *pg = &b->pg;
    b->bytes = 4.0 * ((double)pg->rows * (double)pg->cols + im2col_reads(pg));
    note(b, "X %zux%zu", pg->rows, pg->cols);
}

static ndcl_status call_im2col(bench *b)
{
    return ndcl_im2col_sampled(b->ctx, &b->pg, MEM(b->x), MEM(b->X));
}

/* ------------------------------------------------------------ conv-im2col, col2im, layout,
 * bias-grad: the pieces of the backward, over the plan's chunks in the wide layout */

static bool setup_cim2col(bench *b)
{
    if (!conv_geometry(b)) return false;
    TRY(b, input_x(b, 11));
    TRY(b, tensor1(b->ctx, b->plan.col, 0, 0, &b->col));
    return true;
}

static void cost_cim2col(bench *b)
{
    const ndcl_conv_geom *cg = &b->cg;
    b->bytes = 4.0 * ((double)cg->K * (double)(cg->n * cg->P) + conv_reads(cg));
    note(b, "%zu x %zu*%zu, %zu images a chunk", cg->K, b->plan.chunk, cg->P,
         b->plan.chunk);
}

static ndcl_status piece_cim2col(bench *b, size_t n0, size_t nc)
{
    return ndcl_conv_im2col(b->ctx, &b->cg, MEM(b->x), n0, nc, nc * b->cg.P, b->cg.P,
                            MEM(b->col));
}

static ndcl_status call_cim2col(bench *b)
{
    return over_chunks(b, piece_cim2col);
}

static double ws_col(const bench *b)
{
    return 4.0 * (double)b->plan.col;
}

static bool setup_col2im(bench *b)
{
    const shape *s = b->sh;
    if (!conv_geometry(b)) return false;
    TRY(b, tensor1(b->ctx, b->plan.col, 1.0f, 12, &b->col));
    TRY(b, tensor(b->ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->dx));
    return true;
}

static void cost_col2im(bench *b)
{
    b->bytes = 4.0 * (conv_reads(&b->cg) + x_count(&b->cg));
    note(b, "%zu images a chunk", b->plan.chunk);
}

static ndcl_status piece_col2im(bench *b, size_t n0, size_t nc)
{
    return ndcl_conv_col2im(b->ctx, &b->cg, MEM(b->col), n0, nc, nc * b->cg.P, b->cg.P,
                            MEM(b->dx));
}

static ndcl_status call_col2im(bench *b)
{
    return over_chunks(b, piece_col2im);
}

static bool setup_layout(bench *b)
{
    if (!conv_geometry(b)) return false;
    const ndcl_conv_geom *cg = &b->cg;
    TRY(b,
        tensor(b->ctx, 4, (size_t[]){cg->n, cg->cout, cg->oh, cg->ow}, 1.0f, 13, &b->dy));
    TRY(b, tensor1(b->ctx, b->plan.tmp, 0, 0, &b->tmp));
    return true;
}

static void cost_layout(bench *b)
{
    b->bytes = 8.0 * y_count(&b->cg);
    note(b, "NCHW -> %zu x %zu*%zu rows", b->cg.cout, b->plan.chunk, b->cg.P);
}

static ndcl_status piece_layout(bench *b, size_t n0, size_t nc)
{
    return ndcl_conv_to_rows(b->ctx, &b->cg, MEM(b->dy), n0, nc, MEM(b->tmp));
}

static ndcl_status call_layout(bench *b)
{
    return over_chunks(b, piece_layout);
}

static double ws_tmp(const bench *b)
{
    return 4.0 * (double)b->plan.tmp;
}

static bool setup_biasgrad(bench *b)
{
    if (!conv_geometry(b)) return false;
    TRY(b, tensor1(b->ctx, b->plan.tmp, 1.0f, 14, &b->tmp));
    TRY(b, tensor1(b->ctx, b->sh->cout, 0, 0, &b->db));
    return true;
}

static void cost_biasgrad(bench *b)
{
    b->bytes = 4.0 * y_count(&b->cg);
    note(b, "%zu sums of %zu", b->cg.cout, b->cg.n * b->cg.P);
}

/* The backward's row sums over the chunk rows (in cache there). */
static ndcl_status piece_biasgrad(bench *b, size_t n0, size_t nc)
{
    return ndcl_conv_row_sums(b->ctx, &b->cg, MEM(b->tmp), nc, n0 > 0, MEM(b->db));
}

static ndcl_status call_biasgrad(bench *b)
{
    return over_chunks(b, piece_biasgrad);
}

/* ------------------------------------------------------------ cov, isqrt, fold */

/* The patch matrix of random x, and (as wanted) its centred statistics and
 * whitening matrix, as the layer computes them: realistic inputs for the
 * cov, isqrt and fold suites. */
static bool stats_chain(bench *b, bool want_cov, bool want_D)
{
    if (!conv_geometry(b)) return false;
    ndcl_context *ctx = b->ctx;
    const ndcl_patch_geom *p = &b->pg;
    size_t G = b->sh->groups, nf = p->nf;
    TRY(b, input_x(b, 11));
    TRY(b, tensor(ctx, 2, (size_t[]){p->rows, p->cols}, 0, 0, &b->X));
    TRY(b, tensor1(ctx, p->cols, 0, 0, &b->mean));
    TRY(b, ndcl_im2col_sampled(ctx, p, MEM(b->x), MEM(b->X)));
    if (!want_cov) return true;
    TRY(b, tensor(ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->cov));
    TRY(b, ndcl_col_mean(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    TRY(b, ndcl_center(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    TRY(b, ndcl_cov(ctx, MEM(b->X), p->rows, G, nf, 1.0f / (float)p->rows, 1e-5f,
                    MEM(b->cov)));
    TRY(b, tensor(ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->D));
    if (want_D) TRY(b, ndcl_isqrt_ns(ctx, MEM(b->cov), G, nf, N_ITER, MEM(b->D), NULL));
    TRY(b, ndcl_finish(ctx));
    return true;
}

static bool setup_cov(bench *b)
{
    if (!stats_chain(b, false, false)) return false;
    const size_t G = b->sh->groups, nf = b->pg.nf;
    TRY(b, tensor(b->ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->cov));
    return true;
}

static void cost_cov(bench *b)
{
    b->flops = cov_flops(b->sh, &b->pg);
    note(b, "M=%zu nf=%zu G=%zu", b->pg.rows, b->pg.nf, b->sh->groups);
}

static ndcl_status call_cov(bench *b)
{
    const ndcl_patch_geom *p = &b->pg;
    BENCH_TRY(ndcl_col_mean(b->ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    BENCH_TRY(ndcl_center(b->ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    return ndcl_cov(b->ctx, MEM(b->X), p->rows, b->sh->groups, p->nf, 1.0f / (float)p->rows,
                    1e-5f, MEM(b->cov));
}

static bool setup_isqrt(bench *b)
{
    return stats_chain(b, true, false);
}

static void cost_isqrt(bench *b)
{
    b->flops = ns_flops((double)b->sh->groups, (double)b->pg.nf);
    note(b, "G=%zu nf=%zu n_iter=%d", b->sh->groups, b->pg.nf, N_ITER);
}

static ndcl_status call_isqrt(bench *b)
{
    return ndcl_isqrt_ns(b->ctx, MEM(b->cov), b->sh->groups, b->pg.nf, N_ITER, MEM(b->D),
                         NULL);
}

static bool setup_fold(bench *b)
{
    const shape *s = b->sh;
    size_t wshape[4];
    weight_shape(s, wshape);
    if (!stats_chain(b, true, true)) return false;
    TRY(b, tensor(b->ctx, 4, wshape, 0.05f, 41, &b->W));
    TRY(b, tensor1(b->ctx, s->cout, 0.1f, 42, &b->bias));
    TRY(b, tensor(b->ctx, 4, wshape, 0, 0, &b->Wout));
    TRY(b, tensor1(b->ctx, s->cout, 0, 0, &b->bout));
    return true;
}

static void cost_fold(bench *b)
{
    b->flops = fold_flops(&b->fg);
    note(b, "%zu x %zu rows of nf=%zu", b->sh->cout, b->fg.R, b->pg.nf);
}

static ndcl_status call_fold(bench *b)
{
    return ndcl_fold(b->ctx, &b->fg, MEM(b->W), MEM(b->bias), MEM(b->D), MEM(b->mean),
                     MEM(b->Wout), MEM(b->bout));
}

/* ------------------------------------------------------------ the plain convolution */

/* Through the library's algorithm table, as the conv layer runs it: the
 * suite's algorithm forced, or auto's choice. */
static bool setup_conv_common(bench *b, bool forward)
{
    const shape *s = b->sh;
    ndcl_context *ctx = b->ctx;
    if (!conv_geometry(b)) return false;
    const ndcl_conv_geom *cg = &b->cg;
    const ndcl_conv_algorithm id = suites[b->suite].algo;
    b->cws = (ndcl_conv_ws){.col = &b->cws_col, .tmp = &b->cws_tmp, .force = id};
    if (id != NDCL_CONV_AUTO) {
        const ndcl_conv_algo *a = ndcl_conv_algo_find(id);
        char why[256];
        if (!a || !a->available(ctx) || !a->fits(ctx, cg, why, sizeof why)) {
            b->skip = true;
            return true;
        }
    }
    size_t wshape[4];
    weight_shape(s, wshape);
    size_t yshape[4] = {cg->n, cg->cout, cg->oh, cg->ow};
    TRY(b, input_x(b, 31));
    TRY(b, tensor(ctx, 4, wshape, 0.05f, 41, &b->W));
    if (forward) {
        TRY(b, tensor1(ctx, s->cout, 0.1f, 42, &b->bias));
        TRY(b, tensor(ctx, 4, yshape, 0, 0, &b->y));
    } else {
        TRY(b, tensor(ctx, 4, yshape, 0.01f, 51, &b->dy));
        TRY(b, tensor(ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->dx));
        TRY(b, tensor(ctx, 4, wshape, 0, 0, &b->dw));
        TRY(b, tensor1(ctx, s->cout, 0, 0, &b->db));
    }
    return true;
}

static bool setup_conv(bench *b)
{
    return setup_conv_common(b, true);
}

static bool setup_cback(bench *b)
{
    return setup_conv_common(b, false);
}

/* The chunk notes describe im2col + GEMM's plan: auto's rows and gemm's. */
static bool plan_notes(const bench *b)
{
    const ndcl_conv_algorithm id = suites[b->suite].algo;
    return id == NDCL_CONV_AUTO || id == NDCL_CONV_GEMM;
}

static void cost_conv(bench *b)
{
    const ndcl_conv_plan *pl = &b->plan;
    b->flops = conv_flops(b->sh, &b->cg);
    if (plan_notes(b))
        note(b, "%zu chunks of %zu images%s", (b->cg.n + pl->chunk - 1) / pl->chunk,
             pl->chunk, pl->per_image ? ", per-image products" : "");
    else
        note(b, "%s", "");
}

static void cost_cback(bench *b)
{
    const ndcl_conv_plan *pl = &b->plan;
    b->flops = 2.0 * conv_flops(b->sh, &b->cg);
    if (plan_notes(b))
        note(b, "dx, dW, db; %zu chunks of %zu images",
             (b->cg.n + pl->chunk - 1) / pl->chunk, pl->chunk);
    else
        note(b, "%s", "dx, dW, db");
}

/* Which algorithms auto took, after the runs. */
static void decided_conv(bench *b)
{
    if (!b->cws.chosen) return;
    size_t len = strlen(b->note);
    snprintf(b->note + len, sizeof b->note - len, "%sauto: %s", len ? "; " : "",
             b->cws.pass[NDCL_CONV_FWD]->name);
}

static void decided_cback(bench *b)
{
    if (!b->cws.chosen) return;
    size_t len = strlen(b->note);
    snprintf(b->note + len, sizeof b->note - len, "%sauto: dx %s, dW %s", len ? "; " : "",
             b->cws.pass[NDCL_CONV_BWD_DATA]->name,
             b->cws.pass[NDCL_CONV_BWD_WEIGHTS]->name);
}

static ndcl_status call_conv(bench *b)
{
    return ndcl_conv_run_forward(b->ctx, &b->cg, &b->cws, MEM(b->x), MEM(b->W),
                                 MEM(b->bias), MEM(b->y));
}

static ndcl_status call_cback(bench *b)
{
    return ndcl_conv_run_backward(b->ctx, &b->cg, &b->cws, MEM(b->x), MEM(b->W), MEM(b->dy),
                                  MEM(b->dx), MEM(b->dw), MEM(b->db));
}

/* The chunk buffers of auto's im2col + GEMM (the algorithm suites report
 * none, as before the table). */
static double ws_conv(const bench *b)
{
    return 4.0 * (double)(b->plan.per_image ? b->plan.col : b->plan.col + b->plan.tmp);
}

static double ws_cback(const bench *b)
{
    return 4.0 * (double)(b->plan.col + b->plan.tmp);
}

/* ------------------------------------------------------------ layers */

/* Random weight and bias of fan-in scale for a parameter set. */
static bool random_params(bench *b, ndcl_layer *l, const char *const *names, int n)
{
    static const unsigned seeds[] = {21, 22, 23};
    for (int i = 0; i < n; i++) {
        int nd;
        size_t shp[NDCL_MAX_DIMS], count = 1;
        TRY(b, ndcl_layer_param_shape(l, names[i], &nd, shp));
        for (int d = 0; d < nd; d++)
            count *= shp[d];
        float *h = malloc(count * sizeof *h);
        if (!h) return failed(b, "malloc", NDCL_ERR_OUT_OF_MEMORY);
        /* Weight rows hold the fan-in: shp[0] outputs. */
        float scale = i == 0 ? 1.0f / sqrtf((float)(count / shp[0])) : 0.1f;
        unsigned seed = seeds[i % 3];
        for (size_t k = 0; k < count; k++)
            h[k] = scale * rand_sym(&seed);
        ndcl_status s = ndcl_layer_set_param(l, names[i], h, count);
        free(h);
        TRY(b, s);
    }
    return true;
}

static bool setup_conv_layer(bench *b)
{
    if (!conv_geometry(b)) return false;
    ndcl_conv2d_desc d = layer_desc(b->sh);
    TRY(b, ndcl_conv2d_create(b->ctx, &d, &b->layer));
    static const char *const names[] = {"weight", "bias"};
    if (!random_params(b, b->layer, names, 2)) return false;
    TRY(b, input_x(b, 31));
    return true;
}

static void cost_ltrain(bench *b)
{
    const shape *s = b->sh;
    b->flops = conv_flops(s, &b->cg) + cov_flops(s, &b->pg) +
               ns_flops((double)s->groups, (double)b->pg.nf) + fold_flops(&b->fg);
    note(b, "B=%d nf=%zu M=%zu", ndcl_layer_block(b->layer), b->pg.nf, b->pg.rows);
}

static ndcl_status call_train(bench *b)
{
    return ndcl_layer_forward(b->layer, NDCL_TRAIN, b->x, &b->y);
}

static void cost_leval(bench *b)
{
    b->flops = conv_flops(b->sh, &b->cg);
    note(b, "folded weights cached");
}

static ndcl_status call_eval(bench *b)
{
    return ndcl_layer_forward(b->layer, NDCL_EVAL, b->x, &b->y);
}

static bool setup_lback(bench *b)
{
    if (!setup_conv_layer(b)) return false;
    const ndcl_conv_geom *cg = &b->cg;
    TRY(b,
        tensor(b->ctx, 4, (size_t[]){cg->n, cg->cout, cg->oh, cg->ow}, 0.01f, 51, &b->dy));
    return true;
}

static void cost_lback(bench *b)
{
    note(b, "forward untimed; dx, dW, db");
}

/* The backward needs a fresh forward before each call. */
static ndcl_status prepare_lback(bench *b)
{
    BENCH_TRY(ndcl_layer_forward(b->layer, NDCL_TRAIN, b->x, &b->y));
    return ndcl_finish(b->ctx);
}

static ndcl_status call_lback(bench *b)
{
    return ndcl_layer_backward(b->layer, b->dy, &b->dx, &b->dw, &b->db);
}

/* The device memory the layer holds besides its parameters. */
static double ws_layer(const bench *b)
{
    size_t bytes;
    if (ndcl_layer_workspace_bytes(b->layer, &bytes) != NDCL_SUCCESS) return NAN;
    return (double)bytes;
}

static bool setup_linear(bench *b)
{
    const shape *s = b->sh;
    if (!conv_geometry(b)) return false;
    size_t F = s->c * s->h * s->w;
    if (F > (1u << 24)) return failed(b, "C*H*W too large", NDCL_ERR_INVALID_ARG);
    ndcl_linear_desc d = ndcl_linear_desc_default((int)F, (int)s->cout);
    d.block = LINEAR_BLOCK;
    d.n_iter = N_ITER;
    TRY(b, ndcl_linear_create(b->ctx, &d, &b->layer));
    static const char *const names[] = {"weight", "bias"};
    if (!random_params(b, b->layer, names, 2)) return false;
    TRY(b, tensor(b->ctx, 2, (size_t[]){s->n, F}, 1.0f, 61, &b->x));
    return true;
}

static void cost_linear(bench *b)
{
    const shape *s = b->sh;
    size_t F = s->c * s->h * s->w;
    double B = ndcl_layer_block(b->layer), Fd = (double)F, M = (double)s->n * Fd / B;
    b->flops = 2.0 * (double)s->n * Fd * (double)s->cout + M * B * (B + 1) +
               ns_flops(1, B) + 2.0 * (double)s->cout * Fd * B;
    note(b, "x %zux%zu -> %zu, B=%.0f", s->n, F, s->cout, B);
}

static bool setup_channel(bench *b)
{
    const shape *s = b->sh;
    if (!conv_geometry(b)) return false;
    ndcl_channel_desc d = ndcl_channel_desc_default((int)s->c);
    d.sampling_stride = (int)s->ss;
    d.n_iter = N_ITER;
    TRY(b, ndcl_channel_create(b->ctx, &d, &b->layer));
    TRY(b, input_x(b, 71));
    return true;
}

static void cost_channel(bench *b)
{
    const shape *s = b->sh;
    double B = (double)s->c, L = (double)(s->n * s->h * s->w);
    size_t step = (s->ss > 1 && s->h >= s->ss && s->w >= s->ss) ? s->ss * s->ss : 1;
    double Ms = ceil(L / (double)step);
    b->flops = Ms * B * (B + 1) + ns_flops(1, B) + 2.0 * B * B * L;
    note(b, "B=%zu L=%.0f sampled %.0f", s->c, L, Ms);
}

/* ------------------------------------------------------------ the table */

#define ALGO_SUITE(sname, id, setup_fn, cost_fn, call_fn)                                  \
    {                                                                                      \
        .name = sname, .help_name = "", .algo = id, .reference = REF_NONE,                 \
        .setup = setup_fn, .cost = cost_fn, .call = call_fn                                \
    }

const suite suites[S_COUNT] = {
    [S_GEMM] = {.name = "gemm",
                .help = "SGEMM by the context's BLAS engine at the convolution's\n"
                        "GEMM sizes (M=Cout/G, N=N*Ho*Wo, K=(C/G)*k*k, G\n"
                        "products), or at --gemm M,N,K: the device's practical\n"
                        "ceiling; brings gemm-host along when the engine is the\n"
                        "host BLAS (openblas)",
                .gemm_row = true,
                .reference = REF_NONE,
                .setup = setup_gemm,
                .cost = cost_gemm,
                .call = call_gemm},
    [S_GEMM_HOST] = {.name = "gemm-host",
                     .help = "the same products by the host BLAS's own cblas_sgemm on\n"
                             "host memory (builds with the OpenBLAS engine): the gemm\n"
                             "row's note gives ndcl's rate over it; beside another\n"
                             "engine only on request, with 0.2 s after each call for\n"
                             "OpenBLAS's workers to stop spinning",
                     .gemm_row = true,
                     .reference = REF_NONE,
                     .setup = setup_gemm_host,
                     .cost = cost_gemm_host,
                     .call = call_gemm_host},
    [S_COPY] = {.name = "copy",
                .help = "a plain copy kernel of x's size: the device's memory\n"
                        "bandwidth, next to which the kernels' GB/s are read",
                .reference = REF_NONE,
                .setup = setup_copy,
                .cost = cost_copy,
                .call = call_copy},
    [S_IM2COL] = {.name = "im2col",
                  .help = "the sampled, block-regrouped patch matrix",
                  .reference = REF_NONE,
                  .setup = setup_im2col,
                  .cost = cost_im2col,
                  .call = call_im2col},
    [S_CIM2COL] = {.name = "conv-im2col",
                   .help = "the convolution's patches of the whole batch, chunk by chunk\n"
                           "into its bounded workspace",
                   .reference = REF_NONE,
                   .setup = setup_cim2col,
                   .cost = cost_cim2col,
                   .call = call_cim2col,
                   .workspace = ws_col},
    [S_COL2IM] = {.name = "col2im",
                  .help = "their adjoint: patch gradients back to dx, chunk by chunk",
                  .reference = REF_NONE,
                  .setup = setup_col2im,
                  .cost = cost_col2im,
                  .call = call_col2im,
                  .workspace = ws_col},
    [S_LAYOUT] = {.name = "layout",
                  .help = "dy (NCHW) moved to the products' row layout, chunk by chunk",
                  .reference = REF_NONE,
                  .setup = setup_layout,
                  .cost = cost_layout,
                  .call = call_layout,
                  .workspace = ws_tmp},
    [S_BIASGRAD] = {.name = "bias-grad",
                    .help = "the bias gradient: sums of the chunk rows of dy (as the\n"
                            "backward reads them, after layout: in cache)",
                    .reference = REF_NONE,
                    .setup = setup_biasgrad,
                    .cost = cost_biasgrad,
                    .call = call_biasgrad},
    [S_COV] = {.name = "cov",
               .help = "column mean + centring + covariance of that matrix",
               .reference = REF_NONE,
               .setup = setup_cov,
               .cost = cost_cov,
               .call = call_cov},
    [S_ISQRT] = {.name = "isqrt",
                 .help = "Newton-Schulz (" STR(
                     N_ITER) " iterations) on the nf x nf covariance,\n"
                             "the G groups batched",
                 .reference = REF_NONE,
                 .setup = setup_isqrt,
                 .cost = cost_isqrt,
                 .call = call_isqrt},
    [S_FOLD] = {.name = "fold",
                .help = "W' = W*D in the block basis and the bias correction",
                .reference = REF_NONE,
                .setup = setup_fold,
                .cost = cost_fold,
                .call = call_fold},
    [S_CONV] = {.name = "conv",
                .help = "the plain convolution as ndcl computes the layer's own,\n"
                        "no deconvolution, by the algorithm auto takes (the note\n"
                        "names it; NDCL_CONV_ALGO forces one)",
                .algo = NDCL_CONV_AUTO,
                .reference = REF_NONE,
                .setup = setup_conv,
                .cost = cost_conv,
                .call = call_conv,
                .decided = decided_conv,
                .workspace = ws_conv},
    [S_CBACK] = {.name = "conv-backward",
                 .help = "its backward: dx, dW and db from dy (x and W given)",
                 .algo = NDCL_CONV_AUTO,
                 .reference = S_CONV,
                 .setup = setup_cback,
                 .cost = cost_cback,
                 .call = call_cback,
                 .decided = decided_cback,
                 .workspace = ws_cback},
    [S_CONV_GEMM] = {.name = "conv/gemm",
                     .help_name = "conv/ALGO, conv-backward/ALGO",
                     .help = "the same by one algorithm each, ALGO gemm (chunks of\n"
                             "im2col + products), dnnl (oneDNN direct on blocked\n"
                             "tensors) or winograd (oneDNN Winograd F(4x4,3x3)); no\n"
                             "row where the algorithm is not built, does not serve the\n"
                             "device or does not fit the shape",
                     .algo = NDCL_CONV_GEMM,
                     .reference = REF_NONE,
                     .setup = setup_conv,
                     .cost = cost_conv,
                     .call = call_conv},
    [S_CONV_DNNL] =
        ALGO_SUITE("conv/dnnl", NDCL_CONV_DNNL, setup_conv, cost_conv, call_conv),
    [S_CONV_WINO] =
        ALGO_SUITE("conv/winograd", NDCL_CONV_WINOGRAD, setup_conv, cost_conv, call_conv),
    [S_CBACK_GEMM] = ALGO_SUITE("conv-backward/gemm", NDCL_CONV_GEMM, setup_cback,
                                cost_cback, call_cback),
    [S_CBACK_DNNL] = ALGO_SUITE("conv-backward/dnnl", NDCL_CONV_DNNL, setup_cback,
                                cost_cback, call_cback),
    [S_CBACK_WINO] = ALGO_SUITE("conv-backward/winograd", NDCL_CONV_WINOGRAD, setup_cback,
                                cost_cback, call_cback),
    [S_LTRAIN] = {.name = "layer-train",
                  .help = "the deconvolved conv layer (FastDeconv), training forward",
                  .reference = S_CONV,
                  .setup = setup_conv_layer,
                  .cost = cost_ltrain,
                  .call = call_train,
                  .workspace = ws_layer},
    [S_LEVAL] = {.name = "layer-eval",
                 .help = "the same layer, evaluation forward (folded weights cached)",
                 .reference = S_CONV,
                 .setup = setup_conv_layer,
                 .cost = cost_leval,
                 .call = call_eval,
                 .workspace = ws_layer},
    [S_LBACK] = {.name = "layer-backward",
                 .help = "its backward after a training forward (the forward is not\n"
                         "timed): dx, dW, db",
                 .reference = S_CBACK,
                 .setup = setup_lback,
                 .cost = cost_lback,
                 .prepare = prepare_lback,
                 .call = call_lback,
                 .workspace = ws_layer},
    [S_LINEAR] = {.name = "linear",
                  .help =
                      "Delinear training forward: x [N, C*H*W] -> [N, Cout],\n"
                      "block " STR(LINEAR_BLOCK) " (Delinear's default, clamped to C*H*W)",
                  .reference = REF_NONE,
                  .setup = setup_linear,
                  .cost = cost_linear,
                  .call = call_train},
    [S_CHANNEL] = {.name = "channel",
                   .help = "ChannelDeconv training forward on x [N, C, H, W] with\n"
                           "block = C (every channel whitened), the shape's ss",
                   .reference = REF_NONE,
                   .setup = setup_channel,
                   .cost = cost_channel,
                   .call = call_train},
};

void suites_help(FILE *f)
{
    for (int k = 0; k < S_COUNT; k++) {
        const suite *s = &suites[k];
        if (s->help_name && !s->help_name[0]) continue; /* under the previous entry */
        const char *name = s->help_name ? s->help_name : s->name;
        /* The text starts in column 18, or on the next line after a long name. */
        if (strlen(name) < 16)
            fprintf(f, "  %-15s ", name);
        else
            fprintf(f, "  %s\n%18s", name, "");
        for (const char *p = s->help; *p;) {
            size_t len = strcspn(p, "\n");
            fprintf(f, "%.*s\n", (int)len, p);
            p += len;
            if (*p == '\n') {
                p++;
                fprintf(f, "%18s", "");
            }
        }
    }
}

/* ------------------------------------------------------------ one benchmark */

bool bench_setup(bench *b)
{
    const suite *s = &suites[b->suite];
    if (!s->setup(b)) return false;
    if (!b->skip) s->cost(b);
    return true;
}

void bench_teardown(bench *b)
{
    host_gemm_destroy(b->host);
    b->host = NULL;
    ndcl_layer_destroy(b->layer);
    ndcl_conv_ws_release(b->ctx, &b->cws);
    ndcl_scratch_release(&b->cws_col);
    ndcl_scratch_release(&b->cws_tmp);
    ndcl_tensor *ts[] = {b->x,    b->X,    b->mean, b->cov, b->D,   b->W, b->bias,
                         b->Wout, b->bout, b->y,    b->col, b->tmp, b->a, b->b,
                         b->c,    b->dy,   b->dx,   b->dw,  b->db};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        ndcl_tensor_destroy(ts[i]);
    b->layer = NULL;
    b->x = b->X = b->mean = b->cov = b->D = b->W = b->bias = b->Wout = b->bout = NULL;
    b->y = b->col = b->tmp = b->a = b->b = b->c = b->dy = b->dx = b->dw = b->db = NULL;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

bool bench_time(bench *b, double *ms)
{
    if (b->skip) {
        if (ms) *ms = 0;
        return true;
    }
    const suite *su = &suites[b->suite];
    ndcl_status s = su->prepare ? su->prepare(b) : NDCL_SUCCESS;
    if (s != NDCL_SUCCESS) return failed(b, "forward before the backward", s);
    double t0 = now_ms();
    s = su->call(b);
    if (s == NDCL_SUCCESS) s = ndcl_finish(b->ctx);
    double t1 = now_ms();
    if (s != NDCL_SUCCESS) return failed(b, "call", s);
    if (ms) *ms = t1 - t0;
    return true;
}
