/* clblast.c - the CLBlast engine, the one file that calls CLBlast: row-major
 * GEMM, strided-batched GEMM and SYRK enqueued on the context's queue, with
 * CLBlast's status codes mapped to ndcl_status and a message naming the
 * routine and its sizes. It runs on every OpenCL device. */
#include <clblast_c.h>

#include "blas/blas.h"
#include "runtime/runtime.h"

static const char *clblast_name(CLBlastStatusCode s)
{
    switch (s) {
    case CLBlastInvalidMatrixA: return "invalid matrix A";
    case CLBlastInvalidMatrixB: return "invalid matrix B";
    case CLBlastInvalidMatrixC: return "invalid matrix C";
    case CLBlastInvalidDimension: return "invalid dimension";
    case CLBlastInvalidLeadDimA: return "leading dimension of A too small";
    case CLBlastInvalidLeadDimB: return "leading dimension of B too small";
    case CLBlastInvalidLeadDimC: return "leading dimension of C too small";
    case CLBlastInsufficientMemoryA: return "buffer A too small";
    case CLBlastInsufficientMemoryB: return "buffer B too small";
    case CLBlastInsufficientMemoryC: return "buffer C too small";
    case CLBlastInsufficientMemoryTemp: return "temporary buffer too small";
    case CLBlastInvalidBatchCount: return "invalid batch count";
    case CLBlastInvalidLocalMemUsage: return "not enough local memory";
    case CLBlastDatabaseError: return "no tuning database entry";
    case CLBlastNotImplemented: return "not implemented";
    case CLBlastUnknownError: return "unknown error";
    case CLBlastUnexpectedError: return "unexpected error";
    default: return NULL;
    }
}

/* CLBlast's codes above -1000 are OpenCL's own; the rest are its own. */
static ndcl_status check(ndcl_context *ctx, CLBlastStatusCode s, const char *routine,
                         size_t m, size_t n, size_t k)
{
    if (s == CLBlastSuccess) return NDCL_SUCCESS;
    if (s > -1000) {
        ndcl_fail_cl(ctx, routine, (cl_int)s);
        ndcl_status mapped =
            (s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfHostMemory)
                ? NDCL_ERR_OUT_OF_MEMORY
                : NDCL_ERR_BLAS;
        return ndcl_fail(ctx, mapped, "CLBlast %s (m=%zu n=%zu k=%zu): %s (%d)", routine, m,
                         n, k, ndcl_cl_error_name((cl_int)s), (int)s);
    }
    const char *name = clblast_name(s);
    return ndcl_fail(ctx, NDCL_ERR_BLAS, "CLBlast %s (m=%zu n=%zu k=%zu): %s (%d)", routine,
                     m, n, k, name ? name : "error", (int)s);
}

/* BLAS lets C be uninitialised when beta is 0, but CLBlast computes
 * beta·C all the same, and 0·NaN is NaN: on a runtime whose fresh buffers
 * hold garbage (Oclgrind, GPUs) the product would be poisoned. So C is
 * zeroed first (rows x ldc from c_off: ndcl's C never has live data
 * between its rows). */
static ndcl_status zero_c(ndcl_context *ctx, float beta, cl_mem c, size_t c_off,
                          size_t rows, size_t ldc)
{
    if (beta != 0.0f) return NDCL_SUCCESS;
    float zero = 0.0f;
    cl_int err =
        clEnqueueFillBuffer(ctx->queue, c, &zero, sizeof zero, c_off * sizeof(float),
                            rows * ldc * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueFillBuffer(C)", err);
    return NDCL_SUCCESS;
}

/* CLBlast copies operands whose sizes are not multiples of its tile sizes
 * into padded temporary buffers, and when creating one fails it throws
 * from a destructor: std::terminate, the whole process aborts (seen with
 * SSYRK of a 134M x 4 patch matrix). So an operand whose padded copy (each
 * dimension rounded up to 128, CLBlast's largest tile) could not be
 * allocated is refused here as out of memory before CLBlast runs. */
static ndcl_status temp_fits(ndcl_context *ctx, const char *routine, size_t rows,
                             size_t cols)
{
    const size_t tile = 128;
    size_t r = (rows + tile - 1) / tile * tile, c = (cols + tile - 1) / tile * tile, bytes;
    uint64_t cap = ctx->info.max_alloc_bytes;
    if (cap && (!ndcl_mul_ok(r, c, &bytes) || !ndcl_mul_ok(bytes, sizeof(float), &bytes) ||
                bytes > cap))
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                         "CLBlast %s: a padded copy of a %zux%zu operand would exceed the "
                         "device's largest allocation (%llu bytes)",
                         routine, rows, cols, (unsigned long long)cap);
    return NDCL_SUCCESS;
}

static CLBlastTranspose tr(bool t)
{
    return t ? CLBlastTransposeYes : CLBlastTransposeNo;
}

static ndcl_status gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n, size_t k,
                        float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                        size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                        size_t ldc)
{
    NDCL_TRY(temp_fits(ctx, "SGEMM", m, k));
    NDCL_TRY(temp_fits(ctx, "SGEMM", k, n));
    NDCL_TRY(temp_fits(ctx, "SGEMM", m, n));
    NDCL_TRY(zero_c(ctx, beta, c, c_off, m, ldc));
    CLBlastStatusCode s =
        CLBlastSgemm(CLBlastLayoutRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, a_off, lda,
                     b, b_off, ldb, beta, c, c_off, ldc, &ctx->queue, NULL);
    return check(ctx, s, "SGEMM", m, n, k);
}

static ndcl_status gemm_batched(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                                size_t sa, cl_mem b, size_t b_off, size_t ldb, size_t sb,
                                float beta, cl_mem c, size_t c_off, size_t ldc, size_t sc,
                                size_t batch)
{
    if (batch == 1)
        return gemm(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                    c_off, ldc);
    size_t mk, kn, mn; /* every batch is padded into one temporary */
    if (!ndcl_mul_ok(m, batch, &mk) || !ndcl_mul_ok(k, batch, &kn) ||
        !ndcl_mul_ok(m, batch, &mn))
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                         "SGEMM strided-batched: size overflows");
    NDCL_TRY(temp_fits(ctx, "SGEMM strided-batched", mk, k));
    NDCL_TRY(temp_fits(ctx, "SGEMM strided-batched", kn, n));
    NDCL_TRY(temp_fits(ctx, "SGEMM strided-batched", mn, n));
    if (sc == m * ldc)
        NDCL_TRY(zero_c(ctx, beta, c, c_off, batch * m, ldc));
    else
        for (size_t i = 0; i < batch; i++)
            NDCL_TRY(zero_c(ctx, beta, c, c_off + i * sc, m, ldc));
    CLBlastStatusCode s = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, a_off, lda, sa, b, b_off,
        ldb, sb, beta, c, c_off, ldc, sc, batch, &ctx->queue, NULL);
    return check(ctx, s, "SGEMM strided-batched", m, n, k);
}

static ndcl_status syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                        cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                        size_t c_off, size_t ldc)
{
    NDCL_TRY(temp_fits(ctx, "SSYRK", n, k));
    NDCL_TRY(temp_fits(ctx, "SSYRK", n, n));
    NDCL_TRY(zero_c(ctx, beta, c, c_off, n, ldc));
    CLBlastStatusCode s =
        CLBlastSsyrk(CLBlastLayoutRowMajor, CLBlastTriangleUpper, tr(trans), n, k, alpha, a,
                     a_off, lda, beta, c, c_off, ldc, &ctx->queue, NULL);
    return check(ctx, s, "SSYRK", n, n, k);
}

/* The portable form: both products whole (CLBlast has no GEMMT). */
static ndcl_status gemm_sym(ndcl_context *ctx, size_t n, size_t batch, float alpha,
                            cl_mem a1, size_t a1_off, cl_mem b1, size_t b1_off, cl_mem a2,
                            size_t a2_off, cl_mem b2, size_t b2_off, cl_mem c, size_t c_off)
{
    const size_t nn = n * n;
    NDCL_TRY(gemm_batched(ctx, false, false, n, n, n, alpha, a1, a1_off, n, nn, b1, b1_off,
                          n, nn, 0.0f, c, c_off, n, nn, batch));
    if (!a2) return NDCL_SUCCESS;
    return gemm_batched(ctx, false, false, n, n, n, alpha, a2, a2_off, n, nn, b2, b2_off, n,
                        nn, 1.0f, c, c_off, n, nn, batch);
}

static bool fits_every_device(ndcl_context *ctx)
{
    (void)ctx;
    return true;
}

const ndcl_blas_engine ndcl_blas_clblast = {
    .name = "clblast",
    .fits = fits_every_device,
    .gemm = gemm,
    .gemm_batched = gemm_batched,
    .syrk = syrk,
    .gemm_sym = gemm_sym,
};
