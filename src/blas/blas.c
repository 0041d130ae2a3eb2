/* blas.c - the library's matrix products: the choice of engine per context,
 * the dispatch to it, and the public ndcl_gemm. */
#include <stdlib.h>
#include <string.h>

#include "blas/blas.h"
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

ndcl_status ndcl_blas_gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                           size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    if (m == 0 || n == 0) return NDCL_SUCCESS;
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
    return ndcl_blas_engine_of(ctx)->gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off,
                                                  lda, sa, b, b_off, ldb, sb, beta, c,
                                                  c_off, ldc, sc, batch);
}

ndcl_status ndcl_blas_syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                           cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                           size_t c_off, size_t ldc)
{
    if (n == 0) return NDCL_SUCCESS;
    return ndcl_blas_engine_of(ctx)->syrk(ctx, trans, n, k, alpha, a, a_off, lda, beta, c,
                                          c_off, ldc);
}

ndcl_status ndcl_gemm(ndcl_context *ctx, int trans_a, int trans_b, float alpha,
                      const ndcl_tensor *a, const ndcl_tensor *b, float beta,
                      ndcl_tensor *c)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
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
    return ndcl_blas_gemm(ctx, trans_a != 0, trans_b != 0, m, n, k, alpha, a->mem, 0,
                          a->shape[1], b->mem, 0, b->shape[1], beta, c->mem, 0,
                          c->shape[1]);
}
