/* host_gemm.h - the host BLAS's own rate for ndcl-bench's gemm suite: the
 * same products by cblas_sgemm on host memory, where ndcl was built with
 * the OpenBLAS engine. */
#ifndef NDCL_HOST_GEMM_H
#define NDCL_HOST_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* Whether this build has the host BLAS (the gemm-host suite). */
bool host_gemm_available(void);

/* One line naming the host BLAS library, its kernels and its threads
 * ("OpenBLAS 0.3.21 ... Haswell MAX_THREADS=64, 2 threads"), or "" without
 * one. */
void host_gemm_describe(char *buf, size_t size);

/* groups row-major products C_g = A_g B_g of m x k by k x n, the operands
 * of all groups side by side as ndcl's conv lays them out; NULL when out
 * of memory or without a host BLAS. */
typedef struct host_gemm host_gemm;
host_gemm *host_gemm_create(size_t groups, size_t m, size_t n, size_t k);
void host_gemm_run(host_gemm *h);
void host_gemm_destroy(host_gemm *h);

#endif
