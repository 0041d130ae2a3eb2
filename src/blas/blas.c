/* blas.c - the library's matrix products: the registry of engines, the
 * choice of one per context, the dispatch to it, and the public ndcl_gemm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"
#include "config.h"
#include "runtime/runtime.h"

/* The registry: the portable engine first, faster ones after it for the
 * devices they fit. */
static const ndcl_blas_engine *const registry[] = {
    &ndcl_blas_clblast,
#ifdef NDCL_HOST_BLAS
    &ndcl_blas_openblas,
#endif
};
enum { N_ENGINES = sizeof registry / sizeof registry[0] };

/* The engine the environment asks for: NDCL_BLAS, or its older alias
 * NDCL_CPU_BLAS=0 (NULL when neither is set). */
static const char *env_engine(void)
{
    const char *v = getenv("NDCL_BLAS");
    if (v && *v) return v;
    v = getenv("NDCL_CPU_BLAS");
    return v && !strcmp(v, "0") ? "clblast" : NULL;
}

static ndcl_status choose(ndcl_context *ctx, const ndcl_blas_engine **out)
{
    const char *want = env_engine();
    if (!want) {
        *out = registry[0];
        for (int i = N_ENGINES - 1; i > 0; i--)
            if (registry[i]->fits(ctx)) {
                *out = registry[i];
                break;
            }
        return NDCL_SUCCESS;
    }
    for (int i = 0; i < N_ENGINES; i++) {
        if (strcmp(want, registry[i]->name)) continue;
        if (!registry[i]->fits(ctx))
            return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                             "NDCL_BLAS=%s: that engine does not serve device %s", want,
                             ctx->info.name);
        *out = registry[i];
        return NDCL_SUCCESS;
    }
    char names[128] = "";
    for (int i = 0; i < N_ENGINES; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 registry[i]->name);
    return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                     "NDCL_BLAS=%s names no BLAS engine of this build (%s)", want, names);
}

ndcl_status ndcl_blas_engine_of(ndcl_context *ctx, const ndcl_blas_engine **out)
{
    if (!ctx->blas) {
        NDCL_TRY(choose(ctx, &ctx->blas));
        ndcl_trace("BLAS engine of the context: %s", ctx->blas->name);
    }
    *out = ctx->blas;
    return NDCL_SUCCESS;
}

const char *ndcl_context_blas_engine(const ndcl_context *ctx)
{
    /* Choosing fills a cache in the context; what it returns is the same
     * whenever it is asked, so the context stays logically const. */
    const ndcl_blas_engine *e;
    if (!ctx || ndcl_blas_engine_of((ndcl_context *)ctx, &e) != NDCL_SUCCESS) return "";
    return e->name;
}

/* The engine for one product: ctx's, or the portable one when a size is
 * past what ctx's takes. */
static ndcl_status engine_for(ndcl_context *ctx, size_t a, size_t b, size_t c, size_t d,
                              size_t e, size_t f, const ndcl_blas_engine **out)
{
    NDCL_TRY(ndcl_blas_engine_of(ctx, out));
    const size_t max = (*out)->max_extent;
    if (max && (a > max || b > max || c > max || d > max || e > max || f > max))
        *out = registry[0];
    return NDCL_SUCCESS;
}

static bool add_ok(size_t *sum, size_t b)
{
    if (b > SIZE_MAX - *sum) return false;
    *sum += b;
    return true;
}

bool ndcl_blas_span(size_t off, size_t rows, size_t cols, size_t ld, size_t stride,
                    size_t batch, size_t *end)
{
    size_t last, span;
    *end = off;
    if (rows == 0 || cols == 0 || batch == 0) return true;
    if (!ndcl_mul_ok(batch - 1, stride, &last) || !ndcl_mul_ok(rows - 1, ld, &span) ||
        !add_ok(&last, span) || !add_ok(&last, cols) || !add_ok(&last, off))
        return false;
    *end = last;
    return true;
}

/* One operand of a product as the caller describes it. */
typedef struct operand {
    const char *name; /* "A", "B", "C" */
    cl_mem mem;
    size_t off, rows, cols, ld, stride;
} operand;

static ndcl_status check(ndcl_context *ctx, const char *routine, size_t m, size_t n,
                         size_t k, size_t batch, const operand *ops, int n_ops)
{
    /* BLAS would scale C by beta; CLBlast refuses, so every engine does. */
    NDCL_CHECK_ARG(ctx, k > 0, "%s (m=%zu n=%zu k=%zu): k=0, an empty inner dimension",
                   routine, m, n, k);
    for (int i = 0; i < n_ops; i++) {
        const operand *o = &ops[i];
        size_t end, bytes = 0, need = o->cols > 1 ? o->cols : 1;
        NDCL_CHECK_ARG(ctx, o->mem, "%s (m=%zu n=%zu k=%zu): %s is NULL", routine, m, n, k,
                       o->name);
        NDCL_CHECK_ARG(ctx, o->ld >= need,
                       "%s (m=%zu n=%zu k=%zu): ld%c=%zu is less than the row length %zu "
                       "of %s",
                       routine, m, n, k, o->name[0] + ('a' - 'A'), o->ld, need, o->name);
        NDCL_CHECK_ARG(
            ctx, ndcl_blas_span(o->off, o->rows, o->cols, o->ld, o->stride, batch, &end),
            "%s (m=%zu n=%zu k=%zu): %s's extent overflows", routine, m, n, k, o->name);
        if (end == o->off) continue;
        cl_int err = clGetMemObjectInfo(o->mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL);
        if (err != CL_SUCCESS)
            return ndcl_fail_cl(ctx, "clGetMemObjectInfo(CL_MEM_SIZE)", err);
        NDCL_CHECK_ARG(ctx, end <= bytes / sizeof(float),
                       "%s (m=%zu n=%zu k=%zu): %s spans floats [%zu, %zu) of a buffer of "
                       "%zu",
                       routine, m, n, k, o->name, o->off, end, bytes / sizeof(float));
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_blas_gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                           size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    if (m == 0 || n == 0) return NDCL_SUCCESS;
    const operand ops[] = {{"A", a, a_off, ta ? k : m, ta ? m : k, lda, 0},
                           {"B", b, b_off, tb ? n : k, tb ? k : n, ldb, 0},
                           {"C", c, c_off, m, n, ldc, 0}};
    NDCL_TRY(check(ctx, "SGEMM", m, n, k, 1, ops, 3));
    const ndcl_blas_engine *e;
    NDCL_TRY(engine_for(ctx, m, n, k, lda, ldb, ldc, &e));
    return e->gemm(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                   c_off, ldc);
}

ndcl_status ndcl_blas_gemm_batched(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                   size_t k, float alpha, cl_mem a, size_t a_off,
                                   size_t lda, size_t sa, cl_mem b, size_t b_off,
                                   size_t ldb, size_t sb, float beta, cl_mem c,
                                   size_t c_off, size_t ldc, size_t sc, size_t batch)
{
    if (m == 0 || n == 0 || batch == 0) return NDCL_SUCCESS;
    const operand ops[] = {{"A", a, a_off, ta ? k : m, ta ? m : k, lda, sa},
                           {"B", b, b_off, tb ? n : k, tb ? k : n, ldb, sb},
                           {"C", c, c_off, m, n, ldc, sc}};
    NDCL_TRY(check(ctx, "SGEMM strided-batched", m, n, k, batch, ops, 3));
    const ndcl_blas_engine *e;
    NDCL_TRY(engine_for(ctx, m, n, k, lda, ldb, ldc, &e));
    return e->gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, sa, b, b_off, ldb,
                           sb, beta, c, c_off, ldc, sc, batch);
}

ndcl_status ndcl_blas_syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                           cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    if (n == 0) return NDCL_SUCCESS;
    const operand ops[] = {{"A", a, a_off, trans ? k : n, trans ? n : k, lda, 0},
                           {"C", c, c_off, n, n, ldc, 0}};
    NDCL_TRY(check(ctx, "SSYRK", n, n, k, 1, ops, 2));
    const ndcl_blas_engine *e;
    NDCL_TRY(engine_for(ctx, n, k, lda, ldc, 0, 0, &e));
    return e->syrk(ctx, trans, n, k, alpha, a, a_off, lda, beta, c, c_off, ldc);
}

ndcl_status ndcl_blas_gemm_sym(ndcl_context *ctx, size_t n, size_t batch, float alpha,
                               cl_mem a1, size_t a1_off, cl_mem b1, size_t b1_off,
                               cl_mem a2, size_t a2_off, cl_mem b2, size_t b2_off, cl_mem c,
                               size_t c_off)
{
    if (n == 0 || batch == 0) return NDCL_SUCCESS;
    const size_t nn = n * n;
    NDCL_CHECK_ARG(ctx, !a2 == !b2,
                   "symmetric SGEMM sum (n=%zu): A2 and B2 must both be given or both NULL",
                   n);
    const operand ops[] = {{"C", c, c_off, n, n, n, nn},
                           {"A1", a1, a1_off, n, n, n, nn},
                           {"B1", b1, b1_off, n, n, n, nn},
                           {"A2", a2, a2_off, n, n, n, nn},
                           {"B2", b2, b2_off, n, n, n, nn}};
    NDCL_TRY(check(ctx, "symmetric SGEMM sum", n, n, n, batch, ops, a2 ? 5 : 3));
    const ndcl_blas_engine *e;
    NDCL_TRY(engine_for(ctx, n, 0, 0, 0, 0, 0, &e));
    return e->gemm_sym(ctx, n, batch, alpha, a1, a1_off, b1, b1_off, a2, a2_off, b2, b2_off,
                       c, c_off);
}

ndcl_status ndcl_gemm(ndcl_context *ctx, int trans_a, int trans_b, float alpha,
                      const ndcl_tensor *a, const ndcl_tensor *b, float beta,
                      ndcl_tensor *c)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, a && b && c, "a=%p b=%p c=%p: none may be NULL", (const void *)a,
                   (const void *)b, (const void *)c);
    NDCL_CHECK_ARG(ctx, a->ctx == ctx && b->ctx == ctx && c->ctx == ctx,
                   "a, b and c must belong to ctx");
    NDCL_CHECK_ARG(ctx, a->ndim == 2 && b->ndim == 2 && c->ndim == 2,
                   "a, b and c must be 2-D (have %d, %d, %d dims)", a->ndim, b->ndim,
                   c->ndim);
    size_t m = trans_a ? a->shape[1] : a->shape[0];
    size_t k = trans_a ? a->shape[0] : a->shape[1];
    size_t kb = trans_b ? b->shape[1] : b->shape[0];
    size_t n = trans_b ? b->shape[0] : b->shape[1];
    NDCL_CHECK_ARG(ctx, k == kb, "inner dimensions differ: op(a) is %zux%zu, op(b) %zux%zu",
                   m, k, kb, n);
    NDCL_CHECK_ARG(ctx, c->shape[0] == m && c->shape[1] == n,
                   "c is %zux%zu, the product is %zux%zu", c->shape[0], c->shape[1], m, n);
    ndcl_tensor_touch(c);
    return ndcl_blas_gemm(ctx, trans_a != 0, trans_b != 0, m, n, k, alpha, a->mem, 0,
                          a->shape[1], b->mem, 0, b->shape[1], beta, c->mem, 0,
                          c->shape[1]);
}
