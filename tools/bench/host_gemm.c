/* host_gemm.c - plain cblas_sgemm on malloc'd host memory at ndcl-bench's
 * GEMM sizes: the rate the OpenBLAS engine is measured against. Without
 * the host BLAS in the build, the functions say so and do nothing. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "host_gemm.h"

#ifdef NDCL_HOST_BLAS
#include <cblas.h>

struct host_gemm {
    size_t groups, m, n, k;
    float *a, *b, *c;
};

bool host_gemm_available(void)
{
    return true;
}

void host_gemm_describe(char *buf, size_t size)
{
    snprintf(buf, size, "%s, %d threads", openblas_get_config(),
             openblas_get_num_threads());
}

host_gemm *host_gemm_create(size_t groups, size_t m, size_t n, size_t k)
{
    host_gemm *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    *h = (host_gemm){groups,
                     m,
                     n,
                     k,
                     malloc(groups * m * k * sizeof(float)),
                     malloc(groups * k * n * sizeof(float)),
                     malloc(groups * m * n * sizeof(float))};
    if (!h->a || !h->b || !h->c) {
        host_gemm_destroy(h);
        return NULL;
    }
    /* The values of ndcl-bench's device operands do not matter to the
     * rate; these are small, finite and touch every page. */
    for (size_t i = 0; i < groups * m * k; i++)
        h->a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < groups * k * n; i++)
        h->b[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < groups * m * n; i++)
        h->c[i] = 0.0f;
    return h;
}

void host_gemm_run(host_gemm *h)
{
    for (size_t g = 0; g < h->groups; g++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)h->m, (blasint)h->n,
                    (blasint)h->k, 1.0f, h->a + g * h->m * h->k, (blasint)h->k,
                    h->b + g * h->k * h->n, (blasint)h->n, 0.0f, h->c + g * h->m * h->n,
                    (blasint)h->n);
}

void host_gemm_destroy(host_gemm *h)
{
    if (!h) return;
    free(h->a);
    free(h->b);
    free(h->c);
    free(h);
}

#else

bool host_gemm_available(void)
{
    return false;
}

void host_gemm_describe(char *buf, size_t size)
{
    if (size) buf[0] = '\0';
}

host_gemm *host_gemm_create(size_t groups, size_t m, size_t n, size_t k)
{
    (void)groups, (void)m, (void)n, (void)k;
    return NULL;
}

void host_gemm_run(host_gemm *h)
{
    (void)h;
}

void host_gemm_destroy(host_gemm *h)
{
    (void)h;
}

#endif
