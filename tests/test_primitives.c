/* test_primitives.c - the deconvolution primitives (patches, mean and
 * covariance, Newton-Schulz isqrt, weight fold, whitening) against the
 * double-precision host reference, and the public wrappers' validation. */
#include <math.h>

#include "harness.h"
#include "primitives/primitives.h"
#include "ref.h"

/* Set TEST_VERBOSE=1 to print the measured errors. */
static void report(const char *what, double err)
{
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "%-44s rel err %.3g\n", what, err);
}

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static float *random_floats(size_t n, unsigned seed, float lo, float hi)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    test_fill_uniform(x, n, seed, lo, hi);
    return x;
}

static bool contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* ------------------------------------------------------------ host algebra */

/* c = a (m x k) * b (k x n), all double. */
static void mm(const double *a, const double *b, size_t m, size_t k, size_t n, double *c)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t l = 0; l < k; l++)
                s += a[i * k + l] * b[l * n + j];
            c[i * n + j] = s;
        }
}

/* A = Q diag(lambda) Qᵀ with Q a product of two random Householder
 * reflections: symmetric, with exactly the eigenvalues given. */
static void spd(size_t n, const double *lambda, unsigned seed, double *A)
{
    double *Q = calloc(n * n, sizeof *Q), *H = malloc(n * n * sizeof *H);
    double *P = malloc(n * n * sizeof *P), *v = malloc(n * sizeof *v);
    ck_assert(Q && H && P && v);
    for (size_t i = 0; i < n; i++)
        Q[i * n + i] = 1;
    unsigned st = seed;
    for (int r = 0; r < 2; r++) {
        double vv = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = test_rand01(&st) - 0.5;
            vv += v[i] * v[i];
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                H[i * n + j] = (i == j) - 2 * v[i] * v[j] / vv;
        mm(Q, H, n, n, n, P);
        memcpy(Q, P, n * n * sizeof *Q);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t l = 0; l < n; l++)
                s += Q[i * n + l] * lambda[l] * Q[j * n + l];
            A[i * n + j] = s;
        }
    free(Q), free(H), free(P), free(v);
}

/* ------------------------------------------------------------ patches */

typedef struct patch_case {
    size_t N, C, H, W, kh, kw, pad, dil, S, groups, block;
    const char *what;
} patch_case;

static const patch_case patch_cases[] = {
    {2, 3, 7, 6, 3, 3, 1, 1, 2, 1, 64, "3x3 pad 1 S=2, C < block"},
    {1, 6, 9, 8, 3, 2, 2, 2, 3, 1, 4, "3x2 pad 2 dil 2 S=3, block gcd(4,6)=2"},
    {3, 5, 4, 4, 2, 2, 0, 1, 3, 1, 5, "2x2 S=3, block = C"},
    {2, 8, 5, 7, 1, 1, 0, 1, 2, 1, 4, "1x1 S=2, block 4 of 8"},
    {1, 3, 5, 5, 1, 1, 1, 2, 1, 1, 2, "1x1 S=1 (padding ignored), block gcd=1"},
    {2, 4, 6, 6, 3, 3, 1, 1, 1, 2, 64, "3x3 pad 1 groups 2"},
    {1, 4, 5, 5, 1, 1, 0, 1, 3, 2, 8, "1x1 S=3 groups 2"},
    {1, 6, 7, 5, 3, 3, 0, 2, 2, 3, 64, "3x3 dil 2 S=2 groups 3"},
};

START_TEST(patches_match_reference)
{
    ndcl_context *ctx = test_ctx();
    for (size_t t = 0; t < sizeof patch_cases / sizeof patch_cases[0]; t++) {
        const patch_case *c = &patch_cases[t];
        size_t nx = c->N * c->C * c->H * c->W;
        float *x = random_floats(nx, 100 + (unsigned)t, -2, 2);
        double *xd = to_double(x, nx);
        int B = ref_block_conv((int)c->C, (int)c->block, (int)c->groups);
        size_t rows = 0, cols = 0;
        double *ref = ref_patches(xd, c->N, c->C, c->H, c->W, c->kh, c->kw, c->pad, c->dil,
                                  c->S, c->groups, (size_t)B, &rows, &cols);
        ck_assert_ptr_nonnull(ref);

        ndcl_tensor *tx = test_tensor_from(ctx, 4, (size_t[]){c->N, c->C, c->H, c->W}, x);
        ndcl_patch_desc d = {(int)c->kh, (int)c->kw,     (int)c->pad,  (int)c->dil,
                             (int)c->S,  (int)c->groups, (int)c->block};
        ndcl_tensor *X = NULL;
        TEST_OK(ctx, ndcl_patches(ctx, tx, &d, &X));
        ck_assert_int_eq(ndcl_tensor_ndim(X), 2);
        ck_assert_msg(ndcl_tensor_dim(X, 0) == rows && ndcl_tensor_dim(X, 1) == cols,
                      "%s: X is %zux%zu, reference %zux%zu", c->what, ndcl_tensor_dim(X, 0),
                      ndcl_tensor_dim(X, 1), rows, cols);
        float *got = test_tensor_to_host(X);
        double e = test_rel_err_f(got, ref, rows * cols, 1e-30);
        report(c->what, e);
        ck_assert_msg(e == 0, "%s: rel err %g (a copy must be exact)", c->what, e);
        /* A second call reuses the output tensor. */
        ndcl_tensor *again = X;
        TEST_OK(ctx, ndcl_patches(ctx, tx, &d, &again));
        ck_assert_ptr_eq(again, X);
        free(got), free(ref), free(x), free(xd);
        ndcl_tensor_destroy(X);
        ndcl_tensor_destroy(tx);
    }
}
END_TEST

START_TEST(patches_reject_bad_arguments)
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *x = test_tensor_from(ctx, 4, (size_t[]){1, 4, 3, 3}, NULL);
    ndcl_tensor *X = NULL;
    ndcl_patch_desc d = {3, 3, 0, 1, 1, 1, 64};

    d.kernel_h = 5; /* 5 > 3 + 2*0 */
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "kernel"));
    d.padding = 1; /* 5 <= 3 + 2: fits */
    TEST_OK(ctx, ndcl_patches(ctx, x, &d, &X));
    ndcl_tensor_destroy(X);
    X = NULL;
    d = (ndcl_patch_desc){3, 3, 0, 2, 1, 1, 64}; /* dilation 2 spans 5 > 3 */
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "dilation"));

    d = (ndcl_patch_desc){3, 3, 0, 1, 1, 3, 64};
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "groups"));
    d = (ndcl_patch_desc){3, 3, 0, 1, 0, 1, 64};
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "stride"));
    d = (ndcl_patch_desc){3, 3, -1, 1, 1, 1, 64};
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "padding"));
    d = (ndcl_patch_desc){3, 3, 0, 1, 1, 1, 0};
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "block"));
    d = (ndcl_patch_desc){0, 3, 0, 1, 1, 1, 64};
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "kernel_h"));

    d = (ndcl_patch_desc){3, 3, 0, 1, 1, 1, 64};
    ck_assert_int_eq(ndcl_patches(ctx, NULL, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "x is NULL"));
    ck_assert_int_eq(ndcl_patches(ctx, x, NULL, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "desc"));
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "out"));
    ck_assert_int_eq(ndcl_patches(NULL, x, &d, &X), NDCL_ERR_INVALID_ARG);
    ndcl_tensor *x2 = test_tensor_from(ctx, 2, (size_t[]){4, 9}, NULL);
    ck_assert_int_eq(ndcl_patches(ctx, x2, &d, &X), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "x has 2 dimensions"));
    /* An output of the wrong shape is refused and left alone. */
    ndcl_tensor *wrong = test_tensor_from(ctx, 2, (size_t[]){2, 2}, NULL), *w = wrong;
    ck_assert_int_eq(ndcl_patches(ctx, x, &d, &w), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "*out has shape [2,2]"));
    ck_assert_ptr_eq(w, wrong);
    ck_assert_ptr_null(X);
    ndcl_tensor_destroy(wrong);
    ndcl_tensor_destroy(x2);
    ndcl_tensor_destroy(x);
}
END_TEST

/* ------------------------------------------------------------ covariance */

typedef struct cov_case {
    size_t M, groups, n;
    int centered;
    const char *what;
} cov_case;

static const cov_case cov_cases[] = {
    {37, 1, 13, 1, "cov 37 x 13 centred"},
    {29, 1, 5, 0, "cov 29 x 5 uncentred"},
    {50, 2, 7, 1, "cov 50 x 2x7 centred"},
    {3, 3, 4, 1, "cov 3 x 3x4 centred"},
    {21, 2, 6, 0, "cov 21 x 2x6 uncentred"},
    {5000, 1, 3, 1, "cov 5000 x 3 centred (chunked mean)"},
    {1200, 1, 40, 1, "cov 1200 x 40 centred"},
    {90, 2, 64, 1, "cov 90 x 2x64 centred (a SYRK per group)"},
};

START_TEST(covariance_matches_reference)
{
    ndcl_context *ctx = test_ctx();
    for (size_t t = 0; t < sizeof cov_cases / sizeof cov_cases[0]; t++) {
        const cov_case *c = &cov_cases[t];
        const size_t cols = c->groups * c->n, nX = c->M * cols;
        const size_t ncov = c->groups * c->n * c->n;
        /* An offset mean, so that centring matters. */
        float *x = random_floats(nX, 200 + (unsigned)t, 0.5f, 2.5f);
        for (size_t r = 0; r < c->M; r++)
            for (size_t j = 1; j < cols; j++)
                x[r * cols + j] += 0.5f * x[r * cols + j - 1];
        double *xd = to_double(x, nX);
        double *mref = malloc(cols * sizeof *mref), *cref = malloc(ncov * sizeof *cref);
        const double eps = 1e-3;
        ref_mean_cov(xd, c->M, c->groups, c->n, eps, c->centered, mref, cref);

        ndcl_tensor *tx = test_tensor_from(ctx, 2, (size_t[]){c->M, cols}, x);
        ndcl_tensor *mean = NULL, *cov = NULL;
        TEST_OK(ctx, ndcl_covariance(ctx, tx, (int)c->groups, (float)eps, c->centered,
                                     &mean, &cov));
        ck_assert_int_eq(ndcl_tensor_ndim(cov), c->groups == 1 ? 2 : 3);
        float *m = test_tensor_to_host(mean), *cv = test_tensor_to_host(cov);
        double em = test_rel_err_f(m, mref, cols, 1e-30);
        double ec = test_rel_err_f(cv, cref, ncov, 1e-30);
        char what[96];
        snprintf(what, sizeof what, "%s: mean", c->what);
        report(what, em);
        snprintf(what, sizeof what, "%s: cov", c->what);
        report(what, ec);
        ck_assert_msg(em < 1e-4 && ec < 1e-4, "%s: mean err %g cov err %g", c->what, em,
                      ec);
        /* Exactly symmetric (the mirror copies the triangle). */
        for (size_t g = 0; g < c->groups; g++)
            for (size_t i = 0; i < c->n; i++)
                for (size_t j = 0; j < i; j++)
                    ck_assert(cv[(g * c->n + i) * c->n + j] ==
                              cv[(g * c->n + j) * c->n + i]);
        /* X is left as it was. */
        float *back = test_tensor_to_host(tx);
        ck_assert_mem_eq(back, x, nX * sizeof *x);
        /* Outputs are reused, and the mean may be omitted. */
        ndcl_tensor *cov2 = cov;
        TEST_OK(ctx, ndcl_covariance(ctx, tx, (int)c->groups, (float)eps, c->centered, NULL,
                                     &cov2));
        ck_assert_ptr_eq(cov2, cov);
        float *cv2 = test_tensor_to_host(cov);
        ck_assert(test_rel_err_ff(cv2, cv, ncov, 1e-30) < 1e-6);
        free(x), free(xd), free(mref), free(cref), free(m), free(cv), free(cv2), free(back);
        ndcl_tensor_destroy(mean);
        ndcl_tensor_destroy(cov);
        ndcl_tensor_destroy(tx);
    }
}
END_TEST

/* The patch matrix of a layer feeds the covariance as the layer uses it. */
START_TEST(patches_then_covariance)
{
    ndcl_context *ctx = test_ctx();
    const size_t N = 2, C = 4, H = 9, W = 9, nx = N * C * H * W;
    float *x = random_floats(nx, 300, -1, 1);
    double *xd = to_double(x, nx);
    size_t rows, cols;
    double *P = ref_patches(xd, N, C, H, W, 3, 3, 1, 1, 2, 1, 2, &rows, &cols);
    ck_assert_ptr_nonnull(P);
    double *mref = malloc(cols * sizeof *mref), *cref = malloc(cols * cols * sizeof *cref);
    ref_mean_cov(P, rows, 1, cols, 1e-5, 1, mref, cref);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, (size_t[]){N, C, H, W}, x);
    ndcl_tensor *X = NULL, *mean = NULL, *cov = NULL;
    ndcl_patch_desc d = {3, 3, 1, 1, 2, 1, 2};
    TEST_OK(ctx, ndcl_patches(ctx, tx, &d, &X));
    TEST_OK(ctx, ndcl_covariance(ctx, X, 1, 1e-5f, 1, &mean, &cov));
    float *m = test_tensor_to_host(mean), *cv = test_tensor_to_host(cov);
    double em = test_rel_err_f(m, mref, cols, 1e-30),
           ec = test_rel_err_f(cv, cref, cols * cols, 1e-30);
    report("patches -> cov (18 features): mean", em);
    report("patches -> cov (18 features): cov", ec);
    ck_assert_msg(em < 1e-4 && ec < 1e-4, "mean err %g cov err %g", em, ec);
    free(x), free(xd), free(P), free(mref), free(cref), free(m), free(cv);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(X);
    ndcl_tensor_destroy(mean);
    ndcl_tensor_destroy(cov);
}
END_TEST

/* ------------------------------------------------------------ isqrt */

/* batch SPD matrices with eigenvalues spread over [lo, hi] (geometric). */
static double *spd_batch(size_t batch, size_t n, double lo, double hi, unsigned seed)
{
    double *A = malloc(batch * n * n * sizeof *A), *lambda = malloc(n * sizeof *lambda);
    ck_assert(A && lambda);
    for (size_t b = 0; b < batch; b++) {
        for (size_t i = 0; i < n; i++)
            lambda[i] = n == 1 ? hi : lo * pow(hi / lo, (double)i / (double)(n - 1));
        spd(n, lambda, seed + (unsigned)b * 7919u, A + b * n * n);
    }
    free(lambda);
    return A;
}

static float *to_float(const double *x, size_t n)
{
    float *f = malloc(n * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

START_TEST(isqrt_matches_reference)
{
    ndcl_context *ctx = test_ctx();
    const struct {
        size_t batch, n;
        int n_iter;
        double lo, hi;
        const char *what;
    } cases[] = {
        {1, 13, 5, 0.01, 2.0, "isqrt 13x13, 5 iterations"},
        {3, 8, 7, 0.1, 1.0, "isqrt 3 x 8x8, 7 iterations"},
        {2, 5, 1, 0.5, 1.0, "isqrt 2 x 5x5, 1 iteration"},
        {1, 1, 3, 4.0, 4.0, "isqrt 1x1, 3 iterations"},
        {1, 33, 20, 0.05, 3.0, "isqrt 33x33, 20 iterations"},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const size_t batch = cases[t].batch, n = cases[t].n, count = batch * n * n;
        double *A = spd_batch(batch, n, cases[t].lo, cases[t].hi, 400 + (unsigned)t);
        float *Af = to_float(A, count);
        /* The reference runs on the float-rounded input the device sees. */
        double *Ad = to_double(Af, count), *Dref = malloc(count * sizeof *Dref);
        ref_isqrt(Ad, batch, n, cases[t].n_iter, Dref);
        ndcl_tensor *tA = batch == 1
                              ? test_tensor_from(ctx, 2, (size_t[]){n, n}, Af)
                              : test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, Af);
        ndcl_tensor *D = NULL;
        TEST_OK(ctx, ndcl_isqrt(ctx, tA, cases[t].n_iter, &D));
        ck_assert_int_eq(ndcl_tensor_ndim(D), batch == 1 ? 2 : 3);
        float *Dg = test_tensor_to_host(D);
        double e = test_rel_err_f(Dg, Dref, count, 1e-30);
        report(cases[t].what, e);
        ck_assert_msg(e < 1e-3, "%s: rel err %g", cases[t].what, e);
        TEST_OK(ctx, ndcl_finish(ctx));
        free(A), free(Af), free(Ad), free(Dref), free(Dg);
        ndcl_tensor_destroy(tA);
        ndcl_tensor_destroy(D);
    }
}
END_TEST

/* max |D·A·D - I| for each matrix of a batch. */
static double dad_error(const float *D, const double *A, size_t batch, size_t n)
{
    double *Dd = malloc(n * n * sizeof *Dd), *P = malloc(n * n * sizeof *P);
    double *Q = malloc(n * n * sizeof *Q), worst = 0;
    for (size_t b = 0; b < batch; b++) {
        for (size_t i = 0; i < n * n; i++)
            Dd[i] = D[b * n * n + i];
        mm(Dd, A + b * n * n, n, n, n, P);
        mm(P, Dd, n, n, n, Q);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                double d = fabs(Q[i * n + j] - (i == j));
                if (!(d <= worst)) worst = d;
            }
    }
    free(Dd), free(P), free(Q);
    return worst;
}

START_TEST(isqrt_converges_and_stays_finite)
{
    ndcl_context *ctx = test_ctx();
    const size_t n = 16, batch = 2;
    /* Well conditioned (condition 10): 20 iterations reach D·A·D = I. */
    double *A = spd_batch(batch, n, 0.3, 3.0, 500);
    float *Af = to_float(A, batch * n * n);
    ndcl_tensor *tA = test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, Af);
    ndcl_tensor *D = NULL;
    TEST_OK(ctx, ndcl_isqrt(ctx, tA, 20, &D));
    float *Dg = test_tensor_to_host(D);
    double e = dad_error(Dg, A, batch, n);
    report("isqrt cond 10, 20 iterations: |DAD - I|", e);
    ck_assert_msg(e < 1e-4, "|DAD - I| = %g", e);
    free(A), free(Af), free(Dg);
    ndcl_tensor_destroy(tA);

    /* Condition 1e6: far from converged after 5 iterations, but finite,
     * with no numerical flag. */
    A = spd_batch(batch, n, 1e-6, 1.0, 600);
    Af = to_float(A, batch * n * n);
    tA = test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, Af);
    for (int it = 5; it <= 30; it += 25) {
        TEST_OK(ctx, ndcl_isqrt(ctx, tA, it, &D));
        Dg = test_tensor_to_host(D);
        for (size_t i = 0; i < batch * n * n; i++)
            ck_assert_msg(isfinite(Dg[i]), "n_iter=%d: D[%zu] = %g", it, i, (double)Dg[i]);
        free(Dg);
        TEST_OK(ctx, ndcl_finish(ctx));
    }
    free(A), free(Af);
    ndcl_tensor_destroy(tA);
    ndcl_tensor_destroy(D);
}
END_TEST

START_TEST(isqrt_non_finite_raises_flag)
{
    ndcl_context *ctx = test_ctx();
    TEST_OK(ctx, ndcl_finish(ctx));
    const float bad[3] = {NAN, INFINITY, 0.0f};
    for (int k = 0; k < 3; k++) {
        float a[2 * 4 * 4];
        memset(a, 0, sizeof a);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++)
                a[b * 16 + i * 5] = 1.0f;
        /* The second matrix is broken (or all zero). */
        if (k < 2)
            a[16 + 6] = bad[k];
        else
            memset(a + 16, 0, 16 * sizeof(float));
        ndcl_tensor *tA = test_tensor_from(ctx, 3, (size_t[]){2, 4, 4}, a), *D = NULL;
        /* Enqueueing succeeds; the flag is reported by the next finish. */
        TEST_OK(ctx, ndcl_isqrt(ctx, tA, 3, &D));
        ck_assert_int_eq(ndcl_finish(ctx), NDCL_ERR_NUMERICAL);
        TEST_OK(ctx, ndcl_finish(ctx)); /* cleared */
        /* The first matrix is unaffected by the second. */
        float *Dg = test_tensor_to_host(D);
        double a0[16], d0[16];
        for (int i = 0; i < 16; i++)
            a0[i] = a[i];
        ref_isqrt(a0, 1, 4, 3, d0);
        ck_assert(test_rel_err_f(Dg, d0, 16, 1e-30) < 1e-6);
        free(Dg);
        ndcl_tensor_destroy(tA);
        ndcl_tensor_destroy(D);
    }
}
END_TEST

/* ndcl_isqrt_ns's saved area: norms, then Y_k and Z_k entering iteration
 * k and its factor T_k, checked against the same iteration in double on
 * the host. */
START_TEST(isqrt_saved_layout)
{
    ndcl_context *ctx = test_ctx();
    const size_t batch = 2, n = 6, nn = n * n, bnn = batch * nn;
    const int n_iter = 4;
    double *A = spd_batch(batch, n, 0.2, 2.0, 700);
    float *Af = to_float(A, bnn);
    ndcl_tensor *tA = test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, Af);
    ndcl_tensor *D1 = test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, NULL);
    ndcl_tensor *D2 = test_tensor_from(ctx, 3, (size_t[]){batch, n, n}, NULL);
    const size_t ns = ndcl_isqrt_saved_size(batch, n, n_iter);
    ck_assert_uint_eq(ns, batch + 3 * (size_t)n_iter * bnn);
    ndcl_tensor *saved = test_tensor_from(ctx, 1, (size_t[]){ns}, NULL);
    TEST_OK(ctx, ndcl_isqrt_ns(ctx, ndcl_tensor_cl_mem(tA), batch, n, n_iter,
                               ndcl_tensor_cl_mem(D1), ndcl_tensor_cl_mem(saved)));
    TEST_OK(ctx, ndcl_isqrt_ns(ctx, ndcl_tensor_cl_mem(tA), batch, n, n_iter,
                               ndcl_tensor_cl_mem(D2), NULL));
    float *s = test_tensor_to_host(saved), *d1 = test_tensor_to_host(D1);
    float *d2 = test_tensor_to_host(D2);
    /* Saving does not change the result. */
    ck_assert(test_rel_err_ff(d1, d2, bnn, 1e-30) < 1e-6);

    double *Y = malloc(nn * sizeof *Y), *Z = malloc(nn * sizeof *Z),
           *T = malloc(nn * sizeof *T);
    double *P = malloc(nn * sizeof *P), worst = 0;
    for (size_t b = 0; b < batch; b++) {
        double norm = 0;
        for (size_t i = 0; i < nn; i++)
            norm += (double)Af[b * nn + i] * Af[b * nn + i];
        norm = sqrt(norm);
        ck_assert_msg(fabs(s[b] - norm) < 1e-5 * norm, "norm %zu: %g vs %g", b,
                      (double)s[b], norm);
        for (size_t i = 0; i < nn; i++) {
            Y[i] = Af[b * nn + i] / norm;
            Z[i] = i / n == i % n;
        }
        for (int k = 0; k < n_iter; k++) {
            const float *ys = s + batch + 3 * (size_t)k * bnn + b * nn;
            const float *zs = s + batch + (3 * (size_t)k + 1) * bnn + b * nn;
            const float *ts = s + batch + (3 * (size_t)k + 2) * bnn + b * nn;
            worst = fmax(worst, test_rel_err_f(ys, Y, nn, 1e-30));
            worst = fmax(worst, test_rel_err_f(zs, Z, nn, 1e-30));
            mm(Z, Y, n, n, n, P);
            for (size_t i = 0; i < nn; i++)
                T[i] = 0.5 * (3.0 * (i / n == i % n) - P[i]);
            worst = fmax(worst, test_rel_err_f(ts, T, nn, 1e-30));
            mm(Y, T, n, n, n, P);
            memcpy(Y, P, nn * sizeof *Y);
            mm(T, Z, n, n, n, P);
            memcpy(Z, P, nn * sizeof *Z);
        }
    }
    report("isqrt saved iterates", worst);
    ck_assert_msg(worst < 1e-4, "saved iterates rel err %g", worst);
    /* Z_0 is exactly the identity. */
    for (size_t i = 0; i < nn; i++)
        ck_assert(s[batch + bnn + i] == (float)(i / n == i % n));
    free(A), free(Af), free(s), free(d1), free(d2), free(Y), free(Z), free(T), free(P);
    ndcl_tensor_destroy(tA);
    ndcl_tensor_destroy(D1);
    ndcl_tensor_destroy(D2);
    ndcl_tensor_destroy(saved);
}
END_TEST

/* ------------------------------------------------------------ fold */

/* The fold of conv2d and linear layers, written out directly:
 *  conv G = 1: row (o, g) holds W[o, f·(C/B) + g], W' = W·D,
 *              b' = b - Σ_g (W'·μ)[o, g];
 *  conv G > 1: W as (G, Cout/G, nf), W'_g = W_g·D_g, b' = b - W'_g·μ_g;
 *  linear:     rows of B contiguous values, as conv G = 1 otherwise. */
typedef enum { FOLD_CONV, FOLD_GROUPED, FOLD_LINEAR } fold_kind;

static void host_fold(fold_kind kind, size_t outputs, size_t K, size_t nf, size_t G,
                      const double *W, const double *b, const double *D, const double *mu,
                      double *Wp, double *bp)
{
    const size_t R = K / nf;
    double *row = malloc(nf * sizeof *row), *out = malloc(nf * sizeof *out);
    for (size_t o = 0; o < outputs; o++) {
        double corr = 0;
        const size_t g_of = kind == FOLD_GROUPED ? o / (outputs / G) : 0;
        const double *Dg = D + g_of * nf * nf, *mg = mu + g_of * nf;
        for (size_t r = 0; r < R; r++) {
            for (size_t f = 0; f < nf; f++) {
                size_t idx = kind == FOLD_CONV ? f * R + r : r * nf + f;
                row[f] = W[o * K + idx];
            }
            mm(row, Dg, 1, nf, nf, out);
            for (size_t f = 0; f < nf; f++) {
                size_t idx = kind == FOLD_CONV ? f * R + r : r * nf + f;
                Wp[o * K + idx] = out[f];
                corr += out[f] * mg[f];
            }
        }
        bp[o] = (b ? b[o] : 0) - corr;
    }
    free(row), free(out);
}

START_TEST(fold_matches_host)
{
    ndcl_context *ctx = test_ctx();
    const struct {
        fold_kind kind;
        size_t outputs, K, nf, G; /* G: groups (grouped conv only) */
        const char *what;
    } cases[] = {
        /* Cout 5, C 6, 3x3, B 2: R = 3, nf = 18 */
        {FOLD_CONV, 5, 54, 18, 1, "fold conv groups 1"},
        /* Cout 4, C 4, 3x3, groups 2: nf = 2*9 */
        {FOLD_GROUPED, 4, 18, 18, 2, "fold conv groups 2"},
        /* Fout 3, F 8, B 4: R = 2 */
        {FOLD_LINEAR, 3, 8, 4, 1, "fold linear"},
        /* Cout 3, C 2, 1x1, B 1: R = 2, nf = 1 */
        {FOLD_CONV, 3, 2, 1, 1, "fold conv 1x1 block 1"},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const size_t O = cases[t].outputs, K = cases[t].K, nf = cases[t].nf;
        const size_t G = cases[t].G, R = K / nf;
        const size_t nD = G * nf * nf, nmu = G * nf;
        float *W = random_floats(O * K, 800 + (unsigned)t, -1, 1);
        float *b = random_floats(O, 810 + (unsigned)t, -1, 1);
        float *D = random_floats(nD, 820 + (unsigned)t, -0.5f, 0.5f);
        float *mu = random_floats(nmu, 830 + (unsigned)t, -1, 1);
        double *Wd = to_double(W, O * K), *bd = to_double(b, O), *Dd = to_double(D, nD);
        double *mud = to_double(mu, nmu);
        double *Wref = malloc(O * K * sizeof *Wref), *bref = malloc(O * sizeof *bref);
        ndcl_fold_geom g = {O, K, R, nf, 0, 0, G};
        switch (cases[t].kind) {
        case FOLD_CONV: g.rs = 1, g.fs = R; break;
        case FOLD_GROUPED: g.rs = 0, g.fs = 1; break;
        case FOLD_LINEAR: g.rs = nf, g.fs = 1; break;
        }
        ndcl_tensor *tW = test_tensor_from(ctx, 1, (size_t[]){O * K}, W);
        ndcl_tensor *tb = test_tensor_from(ctx, 1, (size_t[]){O}, b);
        ndcl_tensor *tD = test_tensor_from(ctx, 1, (size_t[]){nD}, D);
        ndcl_tensor *tm = test_tensor_from(ctx, 1, (size_t[]){nmu}, mu);
        ndcl_tensor *tWo = test_tensor_from(ctx, 1, (size_t[]){O * K}, NULL);
        ndcl_tensor *tbo = test_tensor_from(ctx, 1, (size_t[]){O}, NULL);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            host_fold(cases[t].kind, O, K, nf, G, Wd, with_bias ? bd : NULL, Dd, mud, Wref,
                      bref);
            TEST_OK(ctx, ndcl_fold(ctx, &g, ndcl_tensor_cl_mem(tW),
                                   with_bias ? ndcl_tensor_cl_mem(tb) : NULL,
                                   ndcl_tensor_cl_mem(tD), ndcl_tensor_cl_mem(tm),
                                   ndcl_tensor_cl_mem(tWo), ndcl_tensor_cl_mem(tbo)));
            float *Wg = test_tensor_to_host(tWo), *bg = test_tensor_to_host(tbo);
            double ew = test_rel_err_f(Wg, Wref, O * K, 1e-30);
            double eb = test_rel_err_f(bg, bref, O, 1e-30);
            char what[96];
            snprintf(what, sizeof what, "%s%s: W'", cases[t].what,
                     with_bias ? " + bias" : "");
            report(what, ew);
            snprintf(what, sizeof what, "%s%s: b'", cases[t].what,
                     with_bias ? " + bias" : "");
            report(what, eb);
            ck_assert_msg(ew < 1e-4 && eb < 1e-4, "%s bias=%d: W' err %g b' err %g",
                          cases[t].what, with_bias, ew, eb);
            free(Wg), free(bg);
        }
        /* No bias output wanted; folding in place (W_out = W). */
        TEST_OK(ctx,
                ndcl_fold(ctx, &g, ndcl_tensor_cl_mem(tW), NULL, ndcl_tensor_cl_mem(tD),
                          ndcl_tensor_cl_mem(tm), ndcl_tensor_cl_mem(tW), NULL));
        float *Wg = test_tensor_to_host(tW);
        ck_assert_msg(test_rel_err_f(Wg, Wref, O * K, 1e-30) < 1e-4, "%s in place",
                      cases[t].what);
        free(Wg);
        free(W), free(b), free(D), free(mu), free(Wd), free(bd), free(Dd), free(mud);
        free(Wref), free(bref);
        ndcl_tensor_destroy(tW);
        ndcl_tensor_destroy(tb);
        ndcl_tensor_destroy(tD);
        ndcl_tensor_destroy(tm);
        ndcl_tensor_destroy(tWo);
        ndcl_tensor_destroy(tbo);
    }
}
END_TEST

START_TEST(fold_rejects_bad_geometry)
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *t = test_tensor_from(ctx, 1, (size_t[]){64}, NULL);
    cl_mem m = ndcl_tensor_cl_mem(t);
    ndcl_fold_geom g = {3, 8, 2, 4, 4, 1, 2}; /* 3 outputs in 2 groups */
    ck_assert_int_eq(ndcl_fold(ctx, &g, m, NULL, m, m, m, NULL), NDCL_ERR_INVALID_ARG);
    g = (ndcl_fold_geom){3, 9, 2, 4, 4, 1, 1}; /* K != R*nf */
    ck_assert_int_eq(ndcl_fold(ctx, &g, m, NULL, m, m, m, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert(contains(ndcl_context_last_error(ctx), "K=9"));
    ndcl_tensor_destroy(t);
}
END_TEST

/* ------------------------------------------------------------ whiten */

START_TEST(whiten_matches_reference)
{
    ndcl_context *ctx = test_ctx();
    const size_t M = 300, n = 6;
    float *x = random_floats(M * n, 900, -1, 1);
    /* Correlated columns with different means. */
    for (size_t r = 0; r < M; r++)
        for (size_t j = 1; j < n; j++)
            x[r * n + j] += 0.6f * x[r * n + j - 1] + (float)j;
    double *xd = to_double(x, M * n), mref[6], cref[36], Dref[36];
    ref_mean_cov(xd, M, 1, n, 1e-5, 1, mref, cref);
    ref_isqrt(cref, 1, n, 20, Dref);
    ndcl_tensor *tx = test_tensor_from(ctx, 2, (size_t[]){M, n}, x);
    ndcl_tensor *mean = NULL, *D = NULL;
    TEST_OK(ctx, ndcl_whiten(ctx, tx, 1e-5f, 20, &mean, &D));
    float *m = test_tensor_to_host(mean), *Dg = test_tensor_to_host(D);
    double em = test_rel_err_f(m, mref, n, 1e-30),
           ed = test_rel_err_f(Dg, Dref, n * n, 1e-30);
    report("whiten 300 x 6: mean", em);
    report("whiten 300 x 6: D", ed);
    ck_assert_msg(em < 1e-4 && ed < 1e-3, "mean err %g D err %g", em, ed);
    /* The whitened data has identity covariance. */
    double e = dad_error(Dg, cref, 1, n);
    report("whiten 300 x 6: |D Cov D - I|", e);
    ck_assert_msg(e < 1e-3, "|D Cov D - I| = %g", e);
    /* Without the mean. */
    ndcl_tensor *D2 = D;
    TEST_OK(ctx, ndcl_whiten(ctx, tx, 1e-5f, 20, NULL, &D2));
    ck_assert_ptr_eq(D2, D);
    free(x), free(xd), free(m), free(Dg);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(mean);
    ndcl_tensor_destroy(D);
}
END_TEST

/* ------------------------------------------------------------ validation */

#define EXPECT_BAD(ctx, call, needle)                                                      \
    do {                                                                                   \
        ck_assert_int_eq((call), NDCL_ERR_INVALID_ARG);                                    \
        ck_assert_msg(contains(ndcl_context_last_error(ctx), (needle)),                    \
                      "%s: message \"%s\" does not name \"%s\"", #call,                    \
                      ndcl_context_last_error(ctx), (needle));                             \
    } while (0)

START_TEST(wrappers_reject_bad_arguments)
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *X = test_tensor_from(ctx, 2, (size_t[]){10, 8}, NULL);
    ndcl_tensor *X3 = test_tensor_from(ctx, 3, (size_t[]){2, 5, 8}, NULL);
    ndcl_tensor *sq = test_tensor_from(ctx, 2, (size_t[]){4, 4}, NULL);
    ndcl_tensor *rect = test_tensor_from(ctx, 2, (size_t[]){4, 5}, NULL);
    ndcl_tensor *vec = test_tensor_from(ctx, 1, (size_t[]){8}, NULL);
    ndcl_tensor *mean = NULL, *cov = NULL, *D = NULL;

    /* covariance */
    EXPECT_BAD(ctx, ndcl_covariance(ctx, NULL, 1, 1e-5f, 1, &mean, &cov), "X is NULL");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X3, 1, 1e-5f, 1, &mean, &cov), "X has 3");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 0, 1e-5f, 1, &mean, &cov), "groups=0");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 3, 1e-5f, 1, &mean, &cov), "groups=3");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, 0.0f, 1, &mean, &cov), "eps=0");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, -1.0f, 1, &mean, &cov), "eps=-1");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, NAN, 1, &mean, &cov), "eps=");
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, 1e-5f, 1, &mean, NULL), "cov is NULL");
    ndcl_tensor *c2 = sq; /* 8x8 expected */
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, 1e-5f, 1, &mean, &c2),
               "*cov has shape [4,4]");
    ck_assert_ptr_eq(c2, sq);
    ndcl_tensor *m2 = sq;
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 1, 1e-5f, 1, &m2, &cov), "*mean");
    ck_assert_ptr_null(cov); /* nothing created on failure */
    ck_assert_int_eq(ndcl_covariance(NULL, X, 1, 1e-5f, 1, &mean, &cov),
                     NDCL_ERR_INVALID_ARG);
    /* groups 2 wants [2, 4, 4] */
    c2 = sq;
    EXPECT_BAD(ctx, ndcl_covariance(ctx, X, 2, 1e-5f, 1, NULL, &c2), "expected [2,4,4]");

    /* isqrt */
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, NULL, 5, &D), "A is NULL");
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, rect, 5, &D), "A must be");
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, vec, 5, &D), "A must be");
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, sq, 0, &D), "n_iter=0");
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, sq, 5, NULL), "D is NULL");
    ndcl_tensor *d2 = rect;
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, sq, 5, &d2), "*D has shape [4,5]");
    ck_assert_int_eq(ndcl_isqrt(NULL, sq, 5, &D), NDCL_ERR_INVALID_ARG);

    /* whiten */
    EXPECT_BAD(ctx, ndcl_whiten(ctx, NULL, 1e-5f, 5, &mean, &D), "X is NULL");
    EXPECT_BAD(ctx, ndcl_whiten(ctx, X3, 1e-5f, 5, &mean, &D), "X has 3");
    EXPECT_BAD(ctx, ndcl_whiten(ctx, X, 0.0f, 5, &mean, &D), "eps=0");
    EXPECT_BAD(ctx, ndcl_whiten(ctx, X, 1e-5f, 0, &mean, &D), "n_iter=0");
    EXPECT_BAD(ctx, ndcl_whiten(ctx, X, 1e-5f, 5, &mean, NULL), "D is NULL");
    d2 = sq;
    EXPECT_BAD(ctx, ndcl_whiten(ctx, X, 1e-5f, 5, &mean, &d2), "*D has shape [4,4]");
    ck_assert_int_eq(ndcl_whiten(NULL, X, 1e-5f, 5, &mean, &D), NDCL_ERR_INVALID_ARG);

    /* Nothing was created by any failure. */
    ck_assert_ptr_null(mean);
    ck_assert_ptr_null(cov);
    ck_assert_ptr_null(D);
    /* A tensor of another context is refused. */
    ndcl_context *other = NULL;
    TEST_OK(NULL, ndcl_context_create(NULL, &other));
    ndcl_tensor *foreign = test_tensor_from(other, 2, (size_t[]){4, 4}, NULL);
    EXPECT_BAD(ctx, ndcl_isqrt(ctx, foreign, 5, &D), "another context");
    ndcl_tensor_destroy(foreign);
    ndcl_context_destroy(other);

    ndcl_tensor_destroy(X);
    ndcl_tensor_destroy(X3);
    ndcl_tensor_destroy(sq);
    ndcl_tensor_destroy(rect);
    ndcl_tensor_destroy(vec);
}
END_TEST

/* One case per primitive, so that CK_RUN_CASE can pick one (e.g. under
 * Oclgrind). */
static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("primitives");
    TCase *tc = tcase(s, "patches");
    tcase_add_test(tc, patches_match_reference);
    tcase_add_test(tc, patches_reject_bad_arguments);
    tc = tcase(s, "covariance");
    tcase_add_test(tc, covariance_matches_reference);
    tcase_add_test(tc, patches_then_covariance);
    tc = tcase(s, "isqrt");
    tcase_add_test(tc, isqrt_matches_reference);
    tcase_add_test(tc, isqrt_converges_and_stays_finite);
    tcase_add_test(tc, isqrt_non_finite_raises_flag);
    tcase_add_test(tc, isqrt_saved_layout);
    tc = tcase(s, "fold");
    tcase_add_test(tc, fold_matches_host);
    tcase_add_test(tc, fold_rejects_bad_geometry);
    tc = tcase(s, "whiten");
    tcase_add_test(tc, whiten_matches_reference);
    tcase_add_test(tc, wrappers_reject_bad_arguments);
    return test_run(s);
}
