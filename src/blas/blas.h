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

/* The elements a batch of row-major rows x cols matrices spans: [off, *end)
 * with *end = off + (batch-1)*stride + (rows-1)*ld + cols, or *end = off
 * when a matrix has no element. False when that overflows size_t. */
bool ndcl_blas_span(size_t off, size_t rows, size_t cols, size_t ld, size_t stride,
                    size_t batch, size_t *end);

/* An engine: the three products above with the same contracts, enqueued
 * (or run) in the order of the context's in-order queue, so that a product
 * sees everything enqueued before it and work enqueued after it sees the
 * product. The dispatchers have already returned for empty products
 * (m, n or batch 0) and checked the operands. Filled the way pocl fills struct
 * pocl_device_ops: the portable engine first, faster ones beside it for the devices they
 * fit. */
typedef struct ndcl_blas_engine {
    const char *name; /* as ndcl-query and ndcl-bench print it */
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
} ndcl_blas_engine;

/* CLBlast: every OpenCL device (clblast.c). */
extern const ndcl_blas_engine ndcl_blas_clblast;

#ifdef NDCL_HOST_BLAS
/* OpenBLAS through CBLAS on mapped buffers, as native kernels (host.c):
 * CPU devices whose memory is the host's. Built with -Dhost_blas (found
 * by default). */
extern const ndcl_blas_engine ndcl_blas_host;

/* Whether ctx's device is one the host engine serves: a CPU device with
 * CL_DEVICE_HOST_UNIFIED_MEMORY that runs native kernels. */
bool ndcl_blas_host_fits(ndcl_context *ctx);
#endif

/* The engine of ctx's products, chosen on first use and kept: the host
 * engine where it is built and fits the device, unless the environment
 * variable NDCL_CPU_BLAS is "0"; CLBlast otherwise. */
const ndcl_blas_engine *ndcl_blas_engine_of(ndcl_context *ctx);

#endif
