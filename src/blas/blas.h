/* blas.h - the matrix products of the library (GEMM, strided-batched GEMM,
 * SYRK) on device buffers, and the table of functions an engine fills to
 * compute them. Everything above this folder calls ndcl_blas_*; only the
 * engines call a BLAS library. */
#ifndef NDCL_BLAS_H
#define NDCL_BLAS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "ndcl_cl.h"

/* Row-major GEMM on raw buffers with element offsets:
 * C = alpha*op(A)*op(B) + beta*C, op(A) m x k, op(B) k x n. C may hold
 * garbage (even NaN) when beta is 0; an engine may then clear the whole
 * m x ldc extent of C (the elements between its rows included). */
/* Every dispatcher returns at once for an empty product (m, n or batch 0),
 * then checks what every engine needs, so that a bad call is
 * NDCL_ERR_INVALID_ARG with the same message on every engine and changes
 * nothing: k > 0, each leading dimension at least its row length, each
 * operand inside its buffer. */
ndcl_status ndcl_blas_gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                           size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                           cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                           size_t c_off, size_t ldc);

/* Strided-batched row-major GEMM: batch products at strides sa, sb, sc. */
ndcl_status ndcl_blas_gemm_batched(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                   size_t k, float alpha, cl_mem a, size_t a_off,
                                   size_t lda, size_t sa, cl_mem b, size_t b_off,
                                   size_t ldb, size_t sb, float beta, cl_mem c,
                                   size_t c_off, size_t ldc, size_t sc, size_t batch);

/* Row-major SYRK on the upper triangle: C = alpha*op(A)ᵀop(A) + beta*C
 * where trans selects C = alpha*AᵀA (A is k x n) when true, A·Aᵀ (A is
 * n x k) when false. Only the upper triangle of C is written. */
ndcl_status ndcl_blas_syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                           cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                           size_t c_off, size_t ldc);

/* C = alpha·(A1·B1 + A2·B2) for a batch of n x n row-major matrices (each
 * leading dimension n, stride n*n), where the caller guarantees that the
 * sum is symmetric: products of commuting symmetric matrices, as every
 * product of the Newton-Schulz loop and its tangent is. An engine may then
 * compute one triangle and mirror it (about 5/8 of the flops). A2 and B2
 * are both NULL for a single product; C overlaps no operand. */
ndcl_status ndcl_blas_gemm_sym(ndcl_context *ctx, size_t n, size_t batch, float alpha,
                               cl_mem a1, size_t a1_off, cl_mem b1, size_t b1_off,
                               cl_mem a2, size_t a2_off, cl_mem b2, size_t b2_off, cl_mem c,
                               size_t c_off);

/* The elements a batch of row-major rows x cols matrices spans: [off, *end)
 * with *end = off + (batch-1)*stride + (rows-1)*ld + cols, or *end = off
 * when a matrix has no element. False when that overflows size_t. */
bool ndcl_blas_span(size_t off, size_t rows, size_t cols, size_t ld, size_t stride,
                    size_t batch, size_t *end);

/* An engine: the four products above with the same contracts, enqueued
 * (or run) in the order of the context's in-order queue, so that a product
 * sees everything enqueued before it and work enqueued after it sees the
 * product. The dispatchers have already returned for empty products
 * (m, n or batch 0) and checked the operands. Filled the way pocl fills struct
 * pocl_device_ops: the portable engine first, faster ones beside it for the devices they
 * fit. */
typedef struct ndcl_blas_engine {
    const char *name; /* as NDCL_BLAS, ndcl-query and ndcl-bench name it */
    /* Whether the engine serves ctx's device. */
    bool (*fits)(ndcl_context *ctx);
    /* The largest size (m, n, k, a leading dimension) it takes, 0 for no
     * limit: a product beyond goes to the portable engine. */
    size_t max_extent;
    ndcl_status (*gemm)(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n, size_t k,
                        float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                        size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                        size_t ldc);
    ndcl_status (*gemm_batched)(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                                size_t sa, cl_mem b, size_t b_off, size_t ldb, size_t sb,
                                float beta, cl_mem c, size_t c_off, size_t ldc, size_t sc,
                                size_t batch);
    ndcl_status (*syrk)(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                        cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                        size_t c_off, size_t ldc);
    ndcl_status (*gemm_sym)(ndcl_context *ctx, size_t n, size_t batch, float alpha,
                            cl_mem a1, size_t a1_off, cl_mem b1, size_t b1_off, cl_mem a2,
                            size_t a2_off, cl_mem b2, size_t b2_off, cl_mem c,
                            size_t c_off);
} ndcl_blas_engine;

/* CLBlast: every OpenCL device (clblast.c); the portable engine. */
extern const ndcl_blas_engine ndcl_blas_clblast;

#ifdef NDCL_HOST_BLAS
/* OpenBLAS through CBLAS on mapped buffers, as native kernels
 * (openblas.c): CPU devices whose memory is the host's. Built with
 * -Dhost_blas (found by default). */
extern const ndcl_blas_engine ndcl_blas_openblas;
#endif

/* The engine of ctx's products, chosen on first use and kept: the one the
 * environment variable NDCL_BLAS names ("clblast", "openblas"; the older
 * NDCL_CPU_BLAS=0 stands for NDCL_BLAS=clblast), else the last engine of
 * the registry (blas.c: the portable one first, faster ones after) that
 * fits the device. NDCL_ERR_INVALID_ARG when NDCL_BLAS names no engine of
 * this build, NDCL_ERR_UNSUPPORTED when it names one that does not serve
 * the device; nothing is kept then, so a later call fails alike. */
ndcl_status ndcl_blas_engine_of(ndcl_context *ctx, const ndcl_blas_engine **out);

#endif
