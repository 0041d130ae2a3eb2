/* blas.c - the library's matrix products: the choice of engine per context,
 * the dispatch to it, and the public ndcl_gemm. */
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"
#include "config.h"
#include "runtime/runtime.h"

/* The portable engine first, the faster one over it where it fits. */
static const ndcl_blas_engine *choose(ndcl_context *ctx)
{
#ifdef NDCL_HOST_BLAS
    const char *env = getenv("NDCL_CPU_BLAS");
    if (!(env && !strcmp(env, "0")) && ndcl_blas_host_fits(ctx)) return &ndcl_blas_host;
#endif
    (void)ctx;
    return &ndcl_blas_clblast;
}

const ndcl_blas_engine *ndcl_blas_engine_of(ndcl_context *ctx)
{
    if (!ctx->blas) {
        ctx->blas = choose(ctx);
        ndcl_trace("BLAS engine of the context: %s", ctx->blas->name);
    }
    return ctx->blas;
}

const char *ndcl_context_blas_engine(const ndcl_context *ctx)
{
    /* Choosing fills a cache in the context; what it returns is the same
     * whenever it is asked, so the context stays logically const. */
    return ctx ? ndcl_blas_engine_of((ndcl_context *)ctx)->name : "";
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
    return ndcl_blas_engine_of(ctx)->gemm(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b,
                                          b_off, ldb, beta, c, c_off, ldc);
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
    return ndcl_blas_engine_of(ctx)->gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off,
                                                  lda, sa, b, b_off, ldb, sb, beta, c,
                                                  c_off, ldc, sc, batch);
}

ndcl_status ndcl_blas_syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                           cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    if (n == 0) return NDCL_SUCCESS;
    const operand ops[] = {{"A", a, a_off, trans ? k : n, trans ? n : k, lda, 0},
                           {"C", c, c_off, n, n, ldc, 0}};
    NDCL_TRY(check(ctx, "SSYRK", n, n, k, 1, ops, 2));
    return ndcl_blas_engine_of(ctx)->syrk(ctx, trans, n, k, alpha, a, a_off, lda, beta, c,
                                          c_off, ldc);
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
