/* openblas.c - the OpenBLAS engine: on a CPU device whose memory is the host's
 * (CL_DEVICE_HOST_UNIFIED_MEMORY, as PoCL's), GEMM, strided-batched GEMM and
 * SYRK run in OpenBLAS through CBLAS on the buffers mapped into the host,
 * as native kernels in the order of the context's queue. The one file that
 * calls CBLAS. */
#include <cblas.h>
#include <limits.h>

#include "blas/blas.h"
#include "runtime/host_queue.h"

/* Queue order without blocking: each product is host work of
 * runtime/host_queue.h (maps, a native kernel that calls CBLAS on the
 * mapped addresses, unmaps), enqueued at once, so that it reads what the
 * kernels before it wrote, the kernels after it see what it wrote, and the
 * call returns at once, as with CLBlast. */

enum op_kind { OP_GEMM, OP_SYRK, OP_SYM };

/* What the native kernel needs besides the addresses: the product's sizes
 * (the runtime hands the function its own copy of this block). */
typedef struct job {
    enum op_kind kind;
    bool ta, tb;
    blasint m, n, k, lda, ldb, ldc;
    size_t sa, sb, sc, batch;
    float alpha, beta;
    int products; /* OP_SYM: 1 or 2 products summed */
} job;

static enum CBLAS_TRANSPOSE tr(bool t)
{
    return t ? CblasTrans : CblasNoTrans;
}

/* Rows of one panel of a symmetric sum: about a quarter of n (at least 64,
 * a multiple of 16), so that the panels' products on and right of the
 * diagonal do 5/8 of the whole products' flops in GEMMs still large
 * enough to run at OpenBLAS's full rate (measured at n = 576 on two
 * cores: 4 panels 0.65x the time of the whole products, 8 no better). */
static blasint sym_panel(blasint n)
{
    blasint h = (n / 4 + 15) / 16 * 16;
    return h < 64 ? n : h;
}

/* ptr: c, a1, b1(, a2, b2). The upper triangle panel by panel (rows
 * [p, p+h), columns [p, n)), then mirrored into the lower. */
static void run_sym(void *const *ptr, const job *j)
{
    const blasint n = j->n, h = sym_panel(n);
    const size_t nn = (size_t)n * (size_t)n;
    for (size_t b = 0; b < j->batch; b++) {
        float *c = (float *)ptr[0] + b * nn;
        for (int t = 0; t < j->products; t++) {
            const float *a = (const float *)ptr[1 + 2 * t] + b * nn;
            const float *bm = (const float *)ptr[2 + 2 * t] + b * nn;
            for (blasint p = 0; p < n; p += h) {
                const blasint rows = p + h > n ? n - p : h;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n - p, n,
                            j->alpha, a + (size_t)p * n, n, bm + p, n, t ? 1.0f : 0.0f,
                            c + (size_t)p * n + p, n);
            }
        }
        for (blasint r = 1; r < n; r++)
            for (blasint col = 0; col < r; col++)
                c[(size_t)r * n + col] = c[(size_t)col * n + r];
    }
}

/* ptr: a, (b,) c; for OP_SYM run_sym's. */
static void run(void *const *ptr, void *args)
{
    const job *j = args;
    if (j->kind == OP_SYM) {
        run_sym(ptr, j);
        return;
    }
    if (j->kind == OP_SYRK) {
        /* SYRK's n is the job's m, its k the job's k. */
        cblas_ssyrk(CblasRowMajor, CblasUpper, tr(j->ta), j->m, j->k, j->alpha, ptr[0],
                    j->lda, j->beta, ptr[1], j->ldc);
        return;
    }
    const float *a = ptr[0], *b = ptr[1];
    float *c = ptr[2];
    for (size_t i = 0; i < j->batch; i++)
        cblas_sgemm(CblasRowMajor, tr(j->ta), tr(j->tb), j->m, j->n, j->k, j->alpha,
                    a + i * j->sa, j->lda, b + i * j->sb, j->ldb, j->beta, c + i * j->sc,
                    j->ldc);
}

/* One operand as a region: a batch of row-major rows x cols matrices at
 * element offset off (the dispatcher has checked that it fits its buffer
 * and is not empty). */
static ndcl_host_region operand(cl_mem mem, size_t off, size_t rows, size_t cols, size_t ld,
                                size_t stride, size_t batch, bool write)
{
    size_t end;
    ndcl_blas_span(off, rows, cols, ld, stride, batch, &end);
    return (ndcl_host_region){mem, off * sizeof(float), end * sizeof(float), write};
}

static ndcl_status gemm_batched(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                                size_t sa, cl_mem b, size_t b_off, size_t ldb, size_t sb,
                                float beta, cl_mem c, size_t c_off, size_t ldc, size_t sc,
                                size_t batch)
{
    const ndcl_host_region r[3] = {
        operand(a, a_off, ta ? k : m, ta ? m : k, lda, sa, batch, false),
        operand(b, b_off, tb ? n : k, tb ? k : n, ldb, sb, batch, false),
        operand(c, c_off, m, n, ldc, sc, batch, true)};
    job j = {.kind = OP_GEMM,
             .ta = ta,
             .tb = tb,
             .m = (blasint)m,
             .n = (blasint)n,
             .k = (blasint)k,
             .lda = (blasint)lda,
             .ldb = (blasint)ldb,
             .ldc = (blasint)ldc,
             .sa = sa,
             .sb = sb,
             .sc = sc,
             .batch = batch,
             .alpha = alpha,
             .beta = beta};
    return ndcl_host_enqueue(ctx, r, 3, run, &j, sizeof j, "BLAS");
}

static ndcl_status gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n, size_t k,
                        float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                        size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                        size_t ldc)
{
    return gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, 0, b, b_off, ldb, 0,
                        beta, c, c_off, ldc, 0, 1);
}

static ndcl_status syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                        cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                        size_t c_off, size_t ldc)
{
    const ndcl_host_region r[2] = {
        operand(a, a_off, trans ? k : n, trans ? n : k, lda, 0, 1, false),
        operand(c, c_off, n, n, ldc, 0, 1, true)};
    job j = {.kind = OP_SYRK,
             .ta = trans,
             .m = (blasint)n,
             .k = (blasint)k,
             .lda = (blasint)lda,
             .ldc = (blasint)ldc,
             .batch = 1,
             .alpha = alpha,
             .beta = beta};
    return ndcl_host_enqueue(ctx, r, 2, run, &j, sizeof j, "BLAS");
}

static ndcl_status gemm_sym(ndcl_context *ctx, size_t n, size_t batch, float alpha,
                            cl_mem a1, size_t a1_off, cl_mem b1, size_t b1_off, cl_mem a2,
                            size_t a2_off, cl_mem b2, size_t b2_off, cl_mem c, size_t c_off)
{
    const size_t nn = n * n;
    const ndcl_host_region r[5] = {
        operand(c, c_off, n, n, n, nn, batch, true),
        operand(a1, a1_off, n, n, n, nn, batch, false),
        operand(b1, b1_off, n, n, n, nn, batch, false),
        a2 ? operand(a2, a2_off, n, n, n, nn, batch, false) : (ndcl_host_region){0},
        a2 ? operand(b2, b2_off, n, n, n, nn, batch, false) : (ndcl_host_region){0}};
    job j = {.kind = OP_SYM,
             .n = (blasint)n,
             .batch = batch,
             .alpha = alpha,
             .products = a2 ? 2 : 1};
    return ndcl_host_enqueue(ctx, r, a2 ? 5 : 3, run, &j, sizeof j, "BLAS");
}

const ndcl_blas_engine ndcl_blas_openblas = {
    .name = "openblas",
    .fits = ndcl_host_queue_fits,
    /* CBLAS takes its sizes as int here (OpenBLAS without 64-bit
     * integers): a larger product goes to the portable engine. */
    .max_extent = sizeof(blasint) >= sizeof(size_t) ? 0 : (size_t)INT_MAX,
    .gemm = gemm,
    .gemm_batched = gemm_batched,
    .syrk = syrk,
    .gemm_sym = gemm_sym,
};
