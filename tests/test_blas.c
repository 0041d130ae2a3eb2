/* test_blas.c - the matrix-product engines: which one a context picks
 * (OpenBLAS on PoCL, CLBlast with NDCL_BLAS=clblast or NDCL_CPU_BLAS=0),
 * queue order across
 * a product, and on every engine the same edge cases against a
 * double-precision host product: offsets, leading dimensions above the row
 * length, transposes, beta != 0 and beta = 0 over NaN, strided batches,
 * SYRK's upper triangle, symmetric sums of commuting products, empty
 * products and bad arguments. */
#include <stdbool.h>

#include "blas/blas.h"
#include "config.h"
#include "harness.h"
#include "ndcl_cl.h"
#include "runtime/runtime.h"

/* ------------------------------------------------------------ engines */

/* The two variables that choose the engine, saved and restored around a
 * test's own settings (CI runs this suite with NDCL_BLAS set too). */
typedef struct engine_env {
    char v[2][64];
    bool set[2];
} engine_env;
static const char *const engine_vars[2] = {"NDCL_BLAS", "NDCL_CPU_BLAS"};

static engine_env env_clear(void)
{
    engine_env e = {0};
    for (int i = 0; i < 2; i++) {
        const char *old = getenv(engine_vars[i]);
        e.set[i] = old != NULL;
        if (old) snprintf(e.v[i], sizeof e.v[i], "%s", old);
        unsetenv(engine_vars[i]);
    }
    return e;
}

static void env_restore(const engine_env *e)
{
    for (int i = 0; i < 2; i++)
        if (e->set[i])
            setenv(engine_vars[i], e->v[i], 1);
        else
            unsetenv(engine_vars[i]);
}

/* A fresh context whose engine is fixed with the variable var set to value
 * (NULL: unset) and the other one unset at its first use; both are
 * restored after. */
static ndcl_context *context_env(const char *var, const char *value)
{
    engine_env saved = env_clear();
    if (value) setenv(var, value, 1);
    ndcl_context *ctx = NULL;
    ndcl_status s = ndcl_context_create(NULL, &ctx);
    if (s == NDCL_SUCCESS) ndcl_context_blas_engine(ctx);
    env_restore(&saved);
    ck_assert_msg(s == NDCL_SUCCESS, "context: %s", ndcl_context_last_error(NULL));
    return ctx;
}

/* The same with NDCL_CPU_BLAS, the older name of the choice. */
static ndcl_context *context_with(const char *value)
{
    return context_env("NDCL_CPU_BLAS", value);
}

static bool is_pocl(ndcl_context *ctx)
{
    ndcl_device_info d;
    TEST_OK(ctx, ndcl_context_device(ctx, &d));
    return strstr(d.platform_name, "Portable Computing Language") != NULL;
}

/* Every engine this build has on the test device: CLBlast, and the
 * automatic choice when it differs. */
static int engines(ndcl_context *out[2])
{
    out[0] = context_with("0");
    out[1] = context_with(NULL);
    if (!strcmp(ndcl_context_blas_engine(out[0]), ndcl_context_blas_engine(out[1]))) {
        ndcl_context_destroy(out[1]);
        return 1;
    }
    return 2;
}

static void engines_destroy(ndcl_context *e[2], int n)
{
    for (int i = 0; i < n; i++)
        ndcl_context_destroy(e[i]);
}

START_TEST(engine_choice)
{
    ndcl_context *autoc = context_with(NULL), *off = context_with("0");
    ndcl_context *other = context_with("1");
    const char *a = ndcl_context_blas_engine(autoc);
    ck_assert_str_eq(ndcl_context_blas_engine(off), "clblast");
    ck_assert_str_eq(ndcl_context_blas_engine(other), a); /* only "0" forces */
#ifdef NDCL_HOST_BLAS
    if (is_pocl(autoc)) ck_assert_str_eq(a, "openblas");
    cl_bool unified = CL_FALSE;
    clGetDeviceInfo(ndcl_context_cl_device(autoc), CL_DEVICE_HOST_UNIFIED_MEMORY,
                    sizeof unified, &unified, NULL);
    ndcl_device_info d;
    TEST_OK(autoc, ndcl_context_device(autoc, &d));
    ck_assert_str_eq(a, unified && d.type == NDCL_DEVICE_CPU ? "openblas" : "clblast");
#else
    (void)is_pocl;
    ck_assert_str_eq(a, "clblast");
#endif
    /* Fixed once chosen: changing the variable later changes nothing. */
    setenv("NDCL_CPU_BLAS", "0", 1);
    ck_assert_str_eq(ndcl_context_blas_engine(autoc), a);
    unsetenv("NDCL_CPU_BLAS");
    ck_assert_str_eq(ndcl_context_blas_engine(NULL), "");
    ndcl_context_destroy(autoc);
    ndcl_context_destroy(off);
    ndcl_context_destroy(other);
}
END_TEST

/* ------------------------------------------------------------ reference */

/* Row-major element (i, j) of op(X) for X stored with leading dimension ld. */
static double at(const float *x, bool t, size_t ld, size_t i, size_t j)
{
    return t ? x[j * ld + i] : x[i * ld + j];
}

/* C = alpha*op(A)*op(B) + beta*C in double; beta = 0 ignores C. */
static void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha,
                     const float *a, size_t lda, const float *b, size_t ldb, double beta,
                     const float *c, size_t ldc, double *out)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s += at(a, ta, lda, i, p) * at(b, tb, ldb, p, j);
            out[i * n + j] = alpha * s + (beta != 0 ? beta * c[i * ldc + j] : 0);
        }
}

/* A buffer of count floats with random values, and its host copy. */
typedef struct buf {
    ndcl_tensor *t;
    float *h;
    size_t count;
} buf;

static buf buf_new(ndcl_context *ctx, size_t count, unsigned seed, bool nan)
{
    buf b = {NULL, malloc(count * sizeof(float)), count};
    ck_assert_ptr_nonnull(b.h);
    test_fill_uniform(b.h, count, seed, -1.0f, 1.0f);
    if (nan)
        for (size_t i = 0; i < count; i++)
            b.h[i] = NAN;
    b.t = test_tensor_from(ctx, 1, (size_t[]){count}, b.h);
    return b;
}

static float *buf_read(const buf *b)
{
    return test_tensor_to_host(b->t);
}

static void buf_free(buf *b)
{
    ndcl_tensor_destroy(b->t);
    free(b->h);
}

#define MEM(b) ndcl_tensor_cl_mem((b).t)

/* Every element of got outside C's matrices (rows x cols each) equals the
 * original. With beta = 0 an engine may clear C's whole rows x ld extent
 * (blas.h), so the tests pass cols = ld then. */
static void assert_outside_unchanged(const float *got, const float *orig, size_t count,
                                     size_t off, size_t rows, size_t cols, size_t ld,
                                     size_t stride, size_t batch, const char *what)
{
    for (size_t e = 0; e < count; e++) {
        bool inside = false;
        if (e >= off)
            for (size_t q = 0; q < batch && !inside; q++) {
                size_t base = off + q * stride;
                if (e < base) continue;
                size_t r = (e - base) / ld, c = (e - base) % ld;
                inside = r < rows && c < cols;
            }
        if (inside) continue;
        bool same = (isnan(orig[e]) && isnan(got[e])) || got[e] == orig[e];
        ck_assert_msg(same, "%s: element %zu outside C changed (%g -> %g)", what, e,
                      (double)orig[e], (double)got[e]);
    }
}

/* NDCL_BLAS names the engine; a name that is no engine of this build, or
 * one that does not serve the device, fails the first product with a
 * message naming the variable, changes nothing, and fails alike again. */
START_TEST(engine_named)
{
    ndcl_context *c = context_env("NDCL_BLAS", "clblast");
    ck_assert_str_eq(ndcl_context_blas_engine(c), "clblast");
    ndcl_context_destroy(c);
    ndcl_context *autoc = context_with(NULL);
    const bool host = !strcmp(ndcl_context_blas_engine(autoc), "openblas");
    ndcl_context_destroy(autoc);
    c = context_env("NDCL_BLAS", "openblas");
    /* "mkl" is no engine of any build; "openblas" is one of this build
     * only with OpenBLAS, and then fails only where it does not serve. */
#ifdef NDCL_HOST_BLAS
    if (host) ck_assert_str_eq(ndcl_context_blas_engine(c), "openblas");
    const char *bad[] = {"mkl", host ? NULL : "openblas"};
    const ndcl_status want[] = {NDCL_ERR_INVALID_ARG, NDCL_ERR_UNSUPPORTED};
#else
    (void)host;
    const char *bad[] = {"mkl", "openblas"};
    const ndcl_status want[] = {NDCL_ERR_INVALID_ARG, NDCL_ERR_INVALID_ARG};
#endif
    ndcl_context_destroy(c);
    for (int i = 0; i < 2; i++) {
        if (!bad[i]) continue;
        engine_env saved = env_clear();
        setenv("NDCL_BLAS", bad[i], 1);
        ndcl_context *ctx = NULL;
        TEST_OK(NULL, ndcl_context_create(NULL, &ctx));
        buf A = buf_new(ctx, 16, 3, 0), C = buf_new(ctx, 16, 4, 0);
        for (int again = 0; again < 2; again++) {
            ndcl_status s = ndcl_blas_gemm(ctx, false, false, 4, 4, 4, 1, MEM(A), 0, 4,
                                           MEM(A), 0, 4, 0, MEM(C), 0, 4);
            ck_assert_int_eq(s, want[i]);
            ck_assert_msg(strstr(ndcl_context_last_error(ctx), "NDCL_BLAS"), "message: %s",
                          ndcl_context_last_error(ctx));
        }
        ck_assert_str_eq(ndcl_context_blas_engine(ctx), "");
        env_restore(&saved);
        float *got = buf_read(&C);
        ck_assert_int_eq(memcmp(got, C.h, 16 * sizeof(float)), 0);
        free(got);
        buf_free(&A);
        buf_free(&C);
        ndcl_context_destroy(ctx);
    }
}
END_TEST

/* ------------------------------------------------------------ GEMM */

START_TEST(gemm_offsets_strides_transposes)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t m = 37, n = 29, k = 23, pad = 5, a_off = 7, b_off = 11, c_off = 13;
    for (int ei = 0; ei < ne; ei++)
        for (int t = 0; t < 4; t++)
            for (int bi = 0; bi < 2; bi++) {
                ndcl_context *ctx = e[ei];
                bool ta = t & 1, tb = t & 2;
                float beta = bi ? 0.5f : 0.0f, alpha = 1.5f;
                size_t a_cols = ta ? m : k, a_rows = ta ? k : m;
                size_t b_cols = tb ? k : n, b_rows = tb ? n : k;
                size_t lda = a_cols + pad, ldb = b_cols + pad + 2, ldc = n + pad + 1;
                buf A = buf_new(ctx, a_off + a_rows * lda, 1 + t, 0);
                buf B = buf_new(ctx, b_off + b_rows * ldb + 3, 2 + t, 0);
                /* beta = 0: C starts as NaN, which must not leak through. */
                buf C = buf_new(ctx, c_off + m * ldc + 4, 3 + t, beta == 0 ? 1 : 0);
                TEST_OK(ctx, ndcl_blas_gemm(ctx, ta, tb, m, n, k, alpha, MEM(A), a_off, lda,
                                            MEM(B), b_off, ldb, beta, MEM(C), c_off, ldc));
                float *got = buf_read(&C);
                double *ref = malloc(m * n * sizeof *ref);
                ref_gemm(ta, tb, m, n, k, alpha, A.h + a_off, lda, B.h + b_off, ldb, beta,
                         C.h + c_off, ldc, ref);
                float *packed = malloc(m * n * sizeof *packed);
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++)
                        packed[i * n + j] = got[c_off + i * ldc + j];
                double err = test_rel_err_f(packed, ref, m * n, 1e-3);
                ck_assert_msg(err < 1e-5, "%s ta=%d tb=%d beta=%g: error %g",
                              ndcl_context_blas_engine(ctx), ta, tb, (double)beta, err);
                assert_outside_unchanged(got, C.h, C.count, c_off, m, beta == 0 ? ldc : n,
                                         ldc, 0, 1, ndcl_context_blas_engine(ctx));
                free(got);
                free(ref);
                free(packed);
                buf_free(&A);
                buf_free(&B);
                buf_free(&C);
            }
    engines_destroy(e, ne);
}
END_TEST

/* Operands in one buffer (as the layers' workspaces hold them) map once. */
START_TEST(gemm_operands_share_a_buffer)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t m = 17, n = 19, k = 13;
    for (int ei = 0; ei < ne; ei++) {
        ndcl_context *ctx = e[ei];
        size_t a_off = 3, b_off = a_off + m * k + 2, c_off = b_off + k * n + 1;
        buf W = buf_new(ctx, c_off + m * n, 9, 0);
        TEST_OK(ctx, ndcl_blas_gemm(ctx, false, false, m, n, k, 1.0f, MEM(W), a_off, k,
                                    MEM(W), b_off, n, 2.0f, MEM(W), c_off, n));
        float *got = buf_read(&W);
        double ref[17 * 19];
        ref_gemm(false, false, m, n, k, 1.0, W.h + a_off, k, W.h + b_off, n, 2.0,
                 W.h + c_off, n, ref);
        double err = test_rel_err_f(got + c_off, ref, m * n, 1e-3);
        ck_assert_msg(err < 1e-5, "%s: error %g", ndcl_context_blas_engine(ctx), err);
        ck_assert_int_eq(memcmp(got, W.h, c_off * sizeof(float)), 0); /* A, B intact */
        free(got);
        buf_free(&W);
    }
    engines_destroy(e, ne);
}
END_TEST

START_TEST(gemm_batched_strides)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t m = 9, n = 14, k = 11, batch = 4;
    for (int ei = 0; ei < ne; ei++)
        for (int t = 0; t < 4; t++) {
            ndcl_context *ctx = e[ei];
            bool ta = t & 1, tb = t & 2;
            size_t a_rows = ta ? k : m, a_cols = ta ? m : k;
            size_t b_rows = tb ? n : k, b_cols = tb ? k : n;
            size_t lda = a_cols + 2, ldb = b_cols + 1, ldc = n + 3;
            size_t sa = a_rows * lda + 5, sb = b_rows * ldb + 2, sc = m * ldc + 7;
            size_t a_off = 4, b_off = 1, c_off = 6;
            buf A = buf_new(ctx, a_off + batch * sa, 20 + t, 0);
            buf B = buf_new(ctx, b_off + batch * sb, 30 + t, 0);
            buf C = buf_new(ctx, c_off + batch * sc, 40 + t, 0);
            TEST_OK(ctx, ndcl_blas_gemm_batched(ctx, ta, tb, m, n, k, 0.75f, MEM(A), a_off,
                                                lda, sa, MEM(B), b_off, ldb, sb, -0.25f,
                                                MEM(C), c_off, ldc, sc, batch));
            float *got = buf_read(&C);
            for (size_t q = 0; q < batch; q++) {
                double ref[9 * 14];
                float packed[9 * 14];
                ref_gemm(ta, tb, m, n, k, 0.75, A.h + a_off + q * sa, lda,
                         B.h + b_off + q * sb, ldb, -0.25, C.h + c_off + q * sc, ldc, ref);
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++)
                        packed[i * n + j] = got[c_off + q * sc + i * ldc + j];
                double err = test_rel_err_f(packed, ref, m * n, 1e-3);
                ck_assert_msg(err < 1e-5, "%s ta=%d tb=%d batch %zu: error %g",
                              ndcl_context_blas_engine(ctx), ta, tb, q, err);
            }
            assert_outside_unchanged(got, C.h, C.count, c_off, m, n, ldc, sc, batch,
                                     ndcl_context_blas_engine(ctx));
            free(got);
            buf_free(&A);
            buf_free(&B);
            buf_free(&C);
        }
    engines_destroy(e, ne);
}
END_TEST

/* ------------------------------------------------------------ SYRK */

START_TEST(syrk_upper_triangle_only)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t n = 21, k = 33, a_off = 5, c_off = 9;
    for (int ei = 0; ei < ne; ei++)
        for (int t = 0; t < 2; t++)
            for (int bi = 0; bi < 2; bi++) {
                ndcl_context *ctx = e[ei];
                bool trans = t;
                float beta = bi ? 0.5f : 0.0f;
                size_t a_rows = trans ? k : n, a_cols = trans ? n : k;
                size_t lda = a_cols + 3, ldc = n + 2;
                buf A = buf_new(ctx, a_off + a_rows * lda, 50 + t, 0);
                buf C = buf_new(ctx, c_off + n * ldc + 2, 60 + t, beta == 0 ? 1 : 0);
                TEST_OK(ctx, ndcl_blas_syrk(ctx, trans, n, k, 2.0f, MEM(A), a_off, lda,
                                            beta, MEM(C), c_off, ldc));
                float *got = buf_read(&C);
                /* AᵀA for A k x n (trans), A·Aᵀ for A n x k. */
                double ref[21 * 21];
                ref_gemm(trans, !trans, n, n, k, 2.0, A.h + a_off, lda, A.h + a_off, lda,
                         beta, C.h + c_off, ldc, ref);
                double err = 0, scale = 1e-3;
                for (size_t i = 0; i < n; i++)
                    for (size_t j = i; j < n; j++) {
                        scale = fmax(scale, fabs(ref[i * n + j]));
                        double d = fabs(got[c_off + i * ldc + j] - ref[i * n + j]);
                        if (!(d <= err)) err = d;
                    }
                ck_assert_msg(err / scale < 1e-5, "%s trans=%d beta=%g: error %g",
                              ndcl_context_blas_engine(ctx), trans, (double)beta,
                              err / scale);
                /* Strictly below the diagonal nothing is written when beta != 0
                 * (with beta = 0 CLBlast's engine clears C first). */
                for (size_t i = 1; i < n && beta != 0; i++)
                    for (size_t j = 0; j < i; j++)
                        ck_assert_msg(got[c_off + i * ldc + j] == C.h[c_off + i * ldc + j],
                                      "%s trans=%d: C[%zu][%zu] below the diagonal "
                                      "changed",
                                      ndcl_context_blas_engine(ctx), trans, i, j);
                assert_outside_unchanged(got, C.h, C.count, c_off, n, beta == 0 ? ldc : n,
                                         ldc, 0, 1, ndcl_context_blas_engine(ctx));
                free(got);
                buf_free(&A);
                buf_free(&C);
            }
    engines_destroy(e, ne);
}
END_TEST

/* ------------------------------------------------------------ symmetric sums */

/* ndcl_blas_gemm_sym on commuting symmetric operands (polynomials in one
 * symmetric S): the whole n x n result of each matrix, both triangles,
 * against the double product, on every engine; one and two products; n
 * below and above the OpenBLAS engine's panel size (several panels, the last
 * one short); C written over NaN (beta is 0); nothing outside C touched. */
START_TEST(gemm_sym_commuting_products)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t sizes[] = {5, 200, 300}, batch = 2, off = 7;
    for (int ei = 0; ei < ne; ei++)
        for (size_t si = 0; si < 3; si++)
            for (int two = 0; two < 2; two++) {
                ndcl_context *ctx = e[ei];
                const size_t n = sizes[si], nn = n * n, count = off + batch * nn + 3;
                /* Operands at off: P1 = S, Q1 = S² / n, P2 = I + S, Q2 = S. */
                float *h[4];
                double *S = malloc(nn * sizeof *S);
                for (int o = 0; o < 4; o++) {
                    h[o] = malloc(count * sizeof(float));
                    test_fill_uniform(h[o], count, 70 + o, -1.0f, 1.0f);
                }
                for (size_t q = 0; q < batch; q++) {
                    float *raw = malloc(nn * sizeof *raw);
                    test_fill_uniform(raw, nn, 80 + (unsigned)q, -1.0f, 1.0f);
                    for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < n; j++)
                            S[i * n + j] = 0.5 * ((double)raw[i * n + j] + raw[j * n + i]);
                    free(raw);
                    for (size_t i = 0; i < n; i++)
                        for (size_t j = 0; j < n; j++) {
                            double s2 = 0;
                            for (size_t t = 0; t < n; t++)
                                s2 += S[i * n + t] * S[t * n + j];
                            const size_t at = off + q * nn + i * n + j;
                            h[0][at] = (float)S[i * n + j];
                            h[1][at] = (float)(s2 / (double)n);
                            h[2][at] = (float)((i == j) + S[i * n + j]);
                            h[3][at] = (float)S[i * n + j];
                        }
                }
                ndcl_tensor *t[4];
                for (int o = 0; o < 4; o++)
                    t[o] = test_tensor_from(ctx, 1, (size_t[]){count}, h[o]);
                buf C = buf_new(ctx, count, 90, true);
                TEST_OK(ctx, ndcl_blas_gemm_sym(
                                 ctx, n, batch, -0.5f, ndcl_tensor_cl_mem(t[0]), off,
                                 ndcl_tensor_cl_mem(t[1]), off,
                                 two ? ndcl_tensor_cl_mem(t[2]) : NULL, off,
                                 two ? ndcl_tensor_cl_mem(t[3]) : NULL, off, MEM(C), off));
                float *got = buf_read(&C);
                double *ref = malloc(nn * sizeof *ref);
                for (size_t q = 0; q < batch; q++) {
                    const size_t b = off + q * nn;
                    ref_gemm(false, false, n, n, n, -0.5, h[0] + b, n, h[1] + b, n, 0.0,
                             NULL, n, ref);
                    if (two) {
                        double *r2 = malloc(nn * sizeof *r2);
                        ref_gemm(false, false, n, n, n, -0.5, h[2] + b, n, h[3] + b, n, 0.0,
                                 NULL, n, r2);
                        for (size_t i = 0; i < nn; i++)
                            ref[i] += r2[i];
                        free(r2);
                    }
                    double err = test_rel_err_f(got + b, ref, nn, 1e-3);
                    ck_assert_msg(err < 1e-5, "%s n=%zu two=%d batch %zu: error %g",
                                  ndcl_context_blas_engine(ctx), n, two, q, err);
                }
                assert_outside_unchanged(got, C.h, count, off, n, n, n, nn, batch,
                                         ndcl_context_blas_engine(ctx));
                free(got);
                free(ref);
                free(S);
                buf_free(&C);
                for (int o = 0; o < 4; o++) {
                    ndcl_tensor_destroy(t[o]);
                    free(h[o]);
                }
            }
    engines_destroy(e, ne);
}
END_TEST

/* ------------------------------------------------------------ edges */

START_TEST(empty_products_change_nothing)
{
    ndcl_context *e[2];
    int ne = engines(e);
    for (int ei = 0; ei < ne; ei++) {
        ndcl_context *ctx = e[ei];
        buf A = buf_new(ctx, 64, 70, 0), C = buf_new(ctx, 64, 71, 0);
        TEST_OK(ctx, ndcl_blas_gemm(ctx, false, false, 0, 4, 4, 1, MEM(A), 0, 4, MEM(A), 0,
                                    4, 0, MEM(C), 0, 4));
        TEST_OK(ctx, ndcl_blas_gemm(ctx, false, false, 4, 0, 4, 1, MEM(A), 0, 4, MEM(A), 0,
                                    1, 0, MEM(C), 0, 1));
        TEST_OK(ctx, ndcl_blas_gemm_batched(ctx, false, false, 4, 4, 4, 1, MEM(A), 0, 4, 16,
                                            MEM(A), 0, 4, 16, 0, MEM(C), 0, 4, 16, 0));
        TEST_OK(ctx, ndcl_blas_syrk(ctx, true, 0, 4, 1, MEM(A), 0, 1, 0, MEM(C), 0, 1));
        TEST_OK(ctx, ndcl_finish(ctx));
        float *got = buf_read(&C);
        ck_assert_int_eq(memcmp(got, C.h, 64 * sizeof(float)), 0);
        free(got);
        buf_free(&A);
        buf_free(&C);
    }
    engines_destroy(e, ne);
}
END_TEST

/* An empty inner dimension, a leading dimension below the row length, an
 * operand past the end of its buffer: NDCL_ERR_INVALID_ARG naming it, and C
 * unchanged (beta = 0, so an engine that cleared C before checking would
 * show). */
START_TEST(bad_operands_change_nothing)
{
    ndcl_context *e[2];
    int ne = engines(e);
    for (int ei = 0; ei < ne; ei++) {
        ndcl_context *ctx = e[ei];
        buf A = buf_new(ctx, 64, 80, 0), C = buf_new(ctx, 64, 81, 0);
#define BAD(call, needle)                                                                  \
    do {                                                                                   \
        ndcl_status s_ = (call);                                                           \
        ck_assert_msg(s_ == NDCL_ERR_INVALID_ARG, "%s: %s -> %s",                          \
                      ndcl_context_blas_engine(ctx), #call, ndcl_status_string(s_));       \
        ck_assert_msg(strstr(ndcl_context_last_error(ctx), needle), "%s: message \"%s\"",  \
                      #call, ndcl_context_last_error(ctx));                                \
    } while (0)
        BAD(ndcl_blas_gemm(ctx, false, false, 4, 4, 4, 1, MEM(A), 0, 3, MEM(A), 0, 4, 0,
                           MEM(C), 0, 4),
            "lda=3");
        BAD(ndcl_blas_gemm(ctx, false, true, 4, 4, 4, 1, MEM(A), 0, 4, MEM(A), 0, 2, 0,
                           MEM(C), 0, 4),
            "ldb=2");
        BAD(ndcl_blas_gemm(ctx, false, false, 4, 4, 4, 1, MEM(A), 0, 4, MEM(A), 0, 4, 0,
                           MEM(C), 50, 4),
            "C spans");
        BAD(ndcl_blas_gemm(ctx, true, false, 4, 4, 4, 1, MEM(A), 61, 4, MEM(A), 0, 4, 0,
                           MEM(C), 0, 4),
            "A spans");
        BAD(ndcl_blas_gemm_batched(ctx, false, false, 4, 4, 4, 1, MEM(A), 0, 4, 16, MEM(A),
                                   0, 4, 16, 0, MEM(C), 0, 4, 16, 5),
            "A spans");
        BAD(ndcl_blas_gemm(ctx, false, false, 4, 4, 0, 1, MEM(A), 0, 1, MEM(A), 0, 4, 0,
                           MEM(C), 0, 4),
            "k=0");
        BAD(ndcl_blas_syrk(ctx, true, 4, 0, 1, MEM(A), 0, 4, 0, MEM(C), 0, 4), "k=0");
        BAD(ndcl_blas_syrk(ctx, false, 8, 8, 1, MEM(A), 0, 8, 0, MEM(C), 0, 7), "ldc=7");
        BAD(ndcl_blas_syrk(ctx, true, 8, 9, 1, MEM(A), 0, 8, 0, MEM(C), 0, 8), "A spans");
        BAD(ndcl_blas_gemm_sym(ctx, 4, 5, 1, MEM(A), 0, MEM(A), 0, NULL, 0, NULL, 0, MEM(C),
                               0),
            "C spans");
        BAD(ndcl_blas_gemm_sym(ctx, 4, 1, 1, MEM(A), 0, MEM(A), 0, MEM(A), 0, NULL, 0,
                               MEM(C), 0),
            "both");
        BAD(ndcl_blas_gemm_sym(ctx, 4, 1, 1, MEM(A), 0, MEM(A), 0, MEM(A), 50, MEM(A), 0,
                               MEM(C), 0),
            "A2 spans");
#undef BAD
        TEST_OK(ctx, ndcl_finish(ctx));
        float *got = buf_read(&C);
        ck_assert_int_eq(memcmp(got, C.h, 64 * sizeof(float)), 0);
        free(got);
        buf_free(&A);
        buf_free(&C);
    }
    engines_destroy(e, ne);
}
END_TEST

/* ------------------------------------------------------------ queue order */

/* A kernel that takes a while (a data-dependent loop the compiler cannot
 * fold) before it writes x[i] = i % 7, and one that copies a buffer. */
static const char *order_src =
    "__kernel void slow_write(__global float *x, int iters) {\n"
    "    size_t i = get_global_id(0);\n"
    "    float v = 0.0f;\n"
    "    for (int r = 0; r < iters; r++) v = v * 0.5f + 1.0f;\n"
    "    x[i] = (float)(i % 7) + (v - 2.0f);\n"
    "}\n"
    "__kernel void copy(__global const float *src, __global float *dst) {\n"
    "    dst[get_global_id(0)] = src[get_global_id(0)];\n"
    "}\n";

/* A slow kernel writes A, a product reads it and a kernel copies the
 * product, with nothing in between that waits: a product that read A
 * before the kernel finished (or ran after the copy) gives other numbers.
 * The kernel takes tens of milliseconds, so a product that does not wait
 * for it reads the zeros A held before. */
START_TEST(product_waits_for_the_queue)
{
    ndcl_context *e[2];
    int ne = engines(e);
    const size_t m = 64, n = 48, k = 32;
    for (int ei = 0; ei < ne; ei++) {
        ndcl_context *ctx = e[ei];
        cl_program prog;
        TEST_OK(ctx, ndcl_program_build_source(ctx, order_src, strlen(order_src), NULL,
                                               &prog, NULL));
        cl_int err;
        cl_kernel slow = clCreateKernel(prog, "slow_write", &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        cl_kernel copy = clCreateKernel(prog, "copy", &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        cl_command_queue q = ndcl_context_cl_queue(ctx);

        float *zeros = calloc(m * (k > n ? k : n), sizeof(float)); /* A and D */
        ndcl_tensor *A = test_tensor_from(ctx, 1, (size_t[]){m * k}, zeros);
        float *hb = malloc(k * n * sizeof(float));
        test_fill_uniform(hb, k * n, 90, -1, 1);
        ndcl_tensor *B = test_tensor_from(ctx, 1, (size_t[]){k * n}, hb);
        ndcl_tensor *C = test_tensor_from(ctx, 1, (size_t[]){m * n}, NULL);
        ndcl_tensor *D = test_tensor_from(ctx, 1, (size_t[]){m * n}, zeros);
        TEST_OK(ctx, ndcl_finish(ctx));

        cl_mem am = ndcl_tensor_cl_mem(A), cm = ndcl_tensor_cl_mem(C),
               dm = ndcl_tensor_cl_mem(D);
        int iters = 200000;
        size_t global = m * k, gc = m * n;
        ck_assert_int_eq(clSetKernelArg(slow, 0, sizeof am, &am), CL_SUCCESS);
        ck_assert_int_eq(clSetKernelArg(slow, 1, sizeof iters, &iters), CL_SUCCESS);
        ck_assert_int_eq(clSetKernelArg(copy, 0, sizeof cm, &cm), CL_SUCCESS);
        ck_assert_int_eq(clSetKernelArg(copy, 1, sizeof dm, &dm), CL_SUCCESS);
        ck_assert_int_eq(
            clEnqueueNDRangeKernel(q, slow, 1, NULL, &global, NULL, 0, NULL, NULL),
            CL_SUCCESS);
        TEST_OK(ctx, ndcl_blas_gemm(ctx, false, false, m, n, k, 1.0f, am, 0, k,
                                    ndcl_tensor_cl_mem(B), 0, n, 0.0f, cm, 0, n));
        ck_assert_int_eq(clEnqueueNDRangeKernel(q, copy, 1, NULL, &gc, NULL, 0, NULL, NULL),
                         CL_SUCCESS);
        float *got = test_tensor_to_host(D);

        float *ha = malloc(m * k * sizeof(float));
        for (size_t i = 0; i < m * k; i++)
            ha[i] = (float)(i % 7);
        double *ref = malloc(m * n * sizeof *ref);
        ref_gemm(false, false, m, n, k, 1.0, ha, k, hb, n, 0.0, NULL, n, ref);
        double e2 = test_rel_err_f(got, ref, m * n, 1e-3);
        ck_assert_msg(e2 < 1e-5,
                      "%s: the product did not see the kernel before it, or the "
                      "copy after it did not see the product (error %g)",
                      ndcl_context_blas_engine(ctx), e2);
        free(zeros);
        free(hb);
        free(ha);
        free(ref);
        free(got);
        ndcl_tensor_destroy(A);
        ndcl_tensor_destroy(B);
        ndcl_tensor_destroy(C);
        ndcl_tensor_destroy(D);
        clReleaseKernel(slow);
        clReleaseKernel(copy);
        clReleaseProgram(prog);
    }
    engines_destroy(e, ne);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("blas");
    TEST_ADD(s, engine_choice);
    TEST_ADD(s, engine_named);
    TEST_ADD(s, gemm_offsets_strides_transposes);
    TEST_ADD(s, gemm_operands_share_a_buffer);
    TEST_ADD(s, gemm_batched_strides);
    TEST_ADD(s, syrk_upper_triangle_only);
    TEST_ADD(s, gemm_sym_commuting_products);
    TEST_ADD(s, empty_products_change_nothing);
    TEST_ADD(s, bad_operands_change_nothing);
    TEST_ADD(s, product_waits_for_the_queue);
    return test_run(s);
}
