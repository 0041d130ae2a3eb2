/* test_backward.c - the layers' backward passes and the whitening adjoint on
 * the device: against central differences of the double-precision host
 * reference, against the PyTorch golden data, state and argument errors,
 * and a few SGD steps that must lower a loss. */
#include <stdbool.h>
#include <unistd.h>

#include "harness.h"
#include "ndcl_cl.h"
#include "ref.h"

/* Gradients are compared relative to their scale: max |got - want| /
 * max |want|. */
#define TOL 1e-3
#define FD_STEP 1e-4

static double *to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static size_t prod(int ndim, const size_t *s)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= s[i];
    return n;
}

/* Gives the device layer and the reference the same random weight and bias. */
static void share_params(ndcl_layer *l, ref_layer *r, unsigned seed)
{
    const char *names[] = {"weight", "bias"};
    double *dst[] = {r->weight, r->bias};
    for (int k = 0; k < 2; k++) {
        size_t n = test_param_count(l, names[k]);
        if (!n) continue;
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, seed + (unsigned)k, -0.5f, 0.5f);
        TEST_OK(ndcl_layer_context(l), ndcl_layer_set_param(l, names[k], v, n));
        for (size_t i = 0; i < n; i++)
            dst[k][i] = v[i];
        free(v);
    }
}

/* One forward on both (keeps the running statistics in step). */
static void plain_step(ndcl_layer *l, ref_layer *r, ndcl_mode mode, int ndim,
                       const size_t *xs, unsigned seed)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    size_t n = prod(ndim, xs), ys[NDCL_MAX_DIMS];
    float *x = malloc(n * sizeof *x);
    test_fill_uniform(x, n, seed, -1.0f, 2.0f);
    double *xd = to_double(x, n);
    ck_assert_int_eq(ref_layer_out_shape(r, ndim, xs, ys), 0);
    double *y = malloc(prod(ndim, ys) * sizeof *y);
    ck_assert_int_eq(ref_layer_forward(r, mode, xd, ndim, xs, y), 0);
    ndcl_tensor *tx = test_tensor_from(ctx, ndim, xs, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, tx, &ty));
    TEST_OK(ctx, ndcl_finish(ctx));
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    free(x);
    free(xd);
    free(y);
}

/* The step under test: device forward + backward against the reference's
 * central differences for dx, dweight and dbias. */
static void fd_step(ndcl_layer *l, ref_layer *r, ndcl_mode mode, int ndim, const size_t *xs,
                    unsigned seed, const char *what)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    size_t nx = prod(ndim, xs), ys[NDCL_MAX_DIMS];
    ck_assert_int_eq(ref_layer_out_shape(r, ndim, xs, ys), 0);
    size_t ny = prod(ndim, ys);
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
    test_fill_uniform(x, nx, seed, -1.0f, 2.0f);
    test_fill_uniform(dy, ny, seed + 1, -1.0f, 1.0f);
    double *xd = to_double(x, nx), *dyd = to_double(dy, ny);
    size_t nw = r->n_weight, nb = r->n_bias;
    double *gx = malloc(nx * sizeof *gx), *gw = malloc((nw ? nw : 1) * sizeof *gw);
    double *gb = malloc((nb ? nb : 1) * sizeof *gb);
    ck_assert_int_eq(ref_layer_backward_fd(r, mode, xd, ndim, xs, dyd, FD_STEP, gx,
                                           nw ? gw : NULL, nb ? gb : NULL),
                     0);

    ndcl_tensor *tx = test_tensor_from(ctx, ndim, xs, x), *ty = NULL;
    ndcl_tensor *tdy = test_tensor_from(ctx, ndim, ys, dy);
    ndcl_tensor *tdx = NULL, *tdw = NULL, *tdb = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, tx, &ty));
    /* A bias-less conv or linear layer leaves *dbias NULL; a channel layer
     * takes no parameter outputs at all. */
    bool params = r->kind != NDCL_LAYER_CHANNEL;
    TEST_OK(ctx,
            ndcl_layer_backward(l, tdy, &tdx, params ? &tdw : NULL, params ? &tdb : NULL));
    TEST_OK(ctx, ndcl_finish(ctx));
    float *hx = test_tensor_to_host(tdx);
    double ex = test_rel_err_f(hx, gx, nx, 1e-3), ew = 0, eb = 0;
    if (nw) {
        float *hw = test_tensor_to_host(tdw);
        ew = test_rel_err_f(hw, gw, nw, 1e-3);
        free(hw);
    }
    if (nb) {
        ck_assert_ptr_nonnull(tdb);
        float *hb = test_tensor_to_host(tdb);
        eb = test_rel_err_f(hb, gb, nb, 1e-3);
        free(hb);
    } else {
        ck_assert_ptr_null(tdb); /* no bias, no bias gradient */
    }
    fprintf(stderr, "fd %-28s dx %.2e  dweight %.2e  dbias %.2e\n", what, ex, ew, eb);
    ck_assert_msg(ex < TOL, "%s: dx rel err %g", what, ex);
    ck_assert_msg(ew < TOL, "%s: dweight rel err %g", what, ew);
    ck_assert_msg(eb < TOL, "%s: dbias rel err %g", what, eb);
    /* Keep the reference in step with the device for what follows. */
    double *y = malloc(ny * sizeof *y);
    ck_assert_int_eq(ref_layer_forward(r, mode, xd, ndim, xs, y), 0);
    free(y);
    free(hx);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    free(x);
    free(dy);
    free(xd);
    free(dyd);
    free(gx);
    free(gw);
    free(gb);
}

/* pre training steps, then the checked step in mode. */
static void fd_conv(const ndcl_conv2d_desc *d, size_t N, size_t H, size_t W, int pre,
                    ndcl_mode mode, const char *what)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, d, &l));
    ref_layer *r = ref_layer_conv2d(d);
    share_params(l, r, 11);
    size_t xs[4] = {N, (size_t)d->in_channels, H, W};
    for (int s = 0; s < pre; s++)
        plain_step(l, r, NDCL_TRAIN, 4, xs, 50 + (unsigned)s);
    fd_step(l, r, mode, 4, xs, 70, what);
    /* Evaluation again: now from the cached fold. */
    if (mode == NDCL_EVAL) fd_step(l, r, mode, 4, xs, 71, what);
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(fd_conv_g1)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 4, 3);
    d.padding = 1;
    d.block = 4;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv g1 (ss 3)");
    d.sampling_stride = 1;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv g1 (ss 1)");
}
END_TEST

START_TEST(fd_conv_g2)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 4, 3);
    d.padding = 1;
    d.groups = 2;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv groups 2");
    d.sampling_stride = 1;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv groups 2 (ss 1)");
}
END_TEST

START_TEST(fd_conv_1x1)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 4, 1);
    d.block = 4;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv 1x1");
    d.sampling_stride = 2;
    d.stride = 2;
    fd_conv(&d, 2, 7, 7, 0, NDCL_TRAIN, "conv 1x1 stride 2");
}
END_TEST

START_TEST(fd_conv_stride_dilation)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 3, 3);
    d.stride = 2;
    d.dilation = 2;
    d.padding = 2;
    d.block = 4;
    fd_conv(&d, 2, 9, 9, 0, NDCL_TRAIN, "conv stride 2 dilation 2");
    d.sampling_stride = 1;
    fd_conv(&d, 2, 9, 9, 0, NDCL_TRAIN, "conv s2 d2 (ss 1)");
}
END_TEST

START_TEST(fd_conv_gcd_nobias)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(6, 4, 3);
    d.padding = 1;
    d.block = 4; /* gcd 2 */
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv gcd block");
    d = ndcl_conv2d_desc_default(4, 4, 3);
    d.padding = 1;
    d.bias = 0;
    fd_conv(&d, 2, 6, 6, 0, NDCL_TRAIN, "conv no bias");
}
END_TEST

START_TEST(fd_conv_frozen_eval)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 3, 3);
    d.padding = 1;
    d.block = 2;
    d.freeze = 1;
    d.freeze_iter = 1; /* steps 1, 2 train; step 3 frozen */
    fd_conv(&d, 2, 6, 6, 2, NDCL_TRAIN, "conv frozen step");
    d = ndcl_conv2d_desc_default(8, 4, 3);
    d.padding = 1;
    d.block = 4;
    fd_conv(&d, 2, 6, 6, 1, NDCL_EVAL, "conv eval");
    d.groups = 2;
    fd_conv(&d, 2, 6, 6, 1, NDCL_EVAL, "conv groups 2 eval");
    d = ndcl_conv2d_desc_default(4, 4, 3);
    d.bias = 0;
    fd_conv(&d, 2, 6, 6, 1, NDCL_EVAL, "conv no bias eval");
}
END_TEST

static void fd_linear(const ndcl_linear_desc *d, size_t N, int pre, ndcl_mode mode,
                      const char *what)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_linear_create(ctx, d, &l));
    ref_layer *r = ref_layer_linear(d);
    share_params(l, r, 13);
    size_t xs[2] = {N, (size_t)d->in_features};
    for (int s = 0; s < pre; s++)
        plain_step(l, r, NDCL_TRAIN, 2, xs, 80 + (unsigned)s);
    fd_step(l, r, mode, 2, xs, 90, what);
    if (mode == NDCL_EVAL) fd_step(l, r, mode, 2, xs, 91, what); /* cached fold */
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(fd_linear_layers)
{
    ndcl_linear_desc d = ndcl_linear_desc_default(12, 5);
    d.block = 4;
    fd_linear(&d, 16, 0, NDCL_TRAIN, "linear");
    fd_linear(&d, 16, 1, NDCL_EVAL, "linear eval");
    d = ndcl_linear_desc_default(10, 5);
    d.block = 4; /* gcd 2 */
    fd_linear(&d, 16, 0, NDCL_TRAIN, "linear gcd block");
    d = ndcl_linear_desc_default(12, 5);
    d.block = 4;
    d.bias = 0;
    fd_linear(&d, 16, 0, NDCL_TRAIN, "linear no bias");
    fd_linear(&d, 16, 1, NDCL_EVAL, "linear no bias eval");
}
END_TEST

static void fd_channel(const ndcl_channel_desc *d, int ndim, const size_t *xs, int pre,
                       ndcl_mode mode, const char *what)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, d, &l));
    ref_layer *r = ref_layer_channel(d);
    for (int s = 0; s < pre; s++)
        plain_step(l, r, NDCL_TRAIN, ndim, xs, 110 + (unsigned)s);
    fd_step(l, r, mode, ndim, xs, 120, what);
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(fd_channel_layers)
{
    ndcl_channel_desc d = ndcl_channel_desc_default(4);
    fd_channel(&d, 4, (size_t[]){3, 8, 6, 6}, 0, NDCL_TRAIN, "channel");
    fd_channel(&d, 4, (size_t[]){3, 10, 6, 6}, 0, NDCL_TRAIN, "channel leftover");
    fd_channel(&d, 4, (size_t[]){3, 10, 6, 6}, 1, NDCL_TRAIN, "channel leftover step 2");
    fd_channel(&d, 4, (size_t[]){3, 10, 6, 6}, 1, NDCL_EVAL, "channel leftover eval");
    ndcl_channel_desc e = ndcl_channel_desc_default(3);
    e.n_iter = 7;
    fd_channel(&e, 2, (size_t[]){20, 6}, 0, NDCL_TRAIN, "channel 2-D");
    fd_channel(&e, 2, (size_t[]){20, 7}, 0, NDCL_TRAIN, "channel 2-D leftover");
    fd_channel(&e, 2, (size_t[]){20, 7}, 1, NDCL_EVAL, "channel 2-D eval");
}
END_TEST

START_TEST(channel_eval_first_batch)
{
    /* Evaluation before any training batch: the forward uses the batch
     * mean (copied into running_mean1) and, for the leftover channels, the
     * batch variance; autograd sees them as constants, so dx is
     * scatter(Dᵀ·gather(dy)) and dy / sqrt(var + eps). */
    ndcl_context *ctx = test_ctx();
    ndcl_channel_desc d = ndcl_channel_desc_default(2);
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, &d, &l));
    float D[4] = {1.5f, -0.5f, 0.25f, 2.0f};
    TEST_OK(ctx, ndcl_layer_set_param(l, "running_deconv", D, 4));
    size_t xs[4] = {2, 3, 4, 4}, n = 2 * 3 * 16;
    float x[96], dy[96];
    test_fill_uniform(x, n, 5, -1.0f, 2.0f);
    test_fill_uniform(dy, n, 6, -1.0f, 1.0f);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xs, x), *ty = NULL, *tdx = NULL;
    ndcl_tensor *tdy = test_tensor_from(ctx, 4, xs, dy);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, tx, &ty));
    TEST_OK(ctx, ndcl_layer_backward(l, tdy, &tdx, NULL, NULL));
    float *got = test_tensor_to_host(tdx), var;
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_var", &var, 1));
    double want[96];
    /* B = 2 rows of c/B = 1 channel each; channel 2 is the leftover. */
    for (size_t b = 0; b < 2; b++)
        for (size_t p = 0; p < 16; p++) {
            for (size_t r = 0; r < 2; r++)
                want[(b * 3 + r) * 16 + p] =
                    (double)D[0 * 2 + r] * dy[(b * 3 + 0) * 16 + p] +
                    (double)D[1 * 2 + r] * dy[(b * 3 + 1) * 16 + p];
            want[(b * 3 + 2) * 16 + p] =
                dy[(b * 3 + 2) * 16 + p] / sqrt((double)var + 1e-2);
        }
    double e = test_rel_err_f(got, want, n, 1e-3);
    ck_assert_msg(e < 1e-5, "eval-first dx rel err %g", e);
    free(got);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_layer_destroy(l);
}
END_TEST

/* ------------------------------------------------------------ whitening */

/* L = Σ mean·dmean + Σ D·dD on the host reference. */
static double whiten_loss(const double *X, size_t M, size_t n, double eps, int n_iter,
                          const double *dmean, const double *dD)
{
    double *mean = malloc(n * sizeof *mean), *cov = malloc(n * n * sizeof *cov);
    double *D = malloc(n * n * sizeof *D);
    ref_mean_cov(X, M, 1, n, eps, 1, mean, cov);
    ref_isqrt(cov, 1, n, n_iter, D);
    double s = 0;
    for (size_t i = 0; i < n && dmean; i++)
        s += mean[i] * dmean[i];
    for (size_t i = 0; i < n * n; i++)
        s += D[i] * dD[i];
    free(mean);
    free(cov);
    free(D);
    return s;
}

START_TEST(whiten_backward_fd)
{
    ndcl_context *ctx = test_ctx();
    const size_t M = 40, n = 6;
    const float eps = 1e-3f;
    float X[240], dm[6], dD[36];
    test_fill_uniform(X, M * n, 31, -1.0f, 2.0f);
    for (size_t i = 0; i < M; i++)
        X[i * n + 1] += 0.5f * X[i * n]; /* correlated */
    test_fill_uniform(dm, n, 32, -1.0f, 1.0f);
    test_fill_uniform(dD, n * n, 33, -1.0f, 1.0f);
    double *Xd = to_double(X, M * n), *dmd = to_double(dm, n), *dDd = to_double(dD, n * n);
    ndcl_tensor *tX = test_tensor_from(ctx, 2, (size_t[]){M, n}, X);
    ndcl_tensor *tm = test_tensor_from(ctx, 1, (size_t[]){n}, dm);
    ndcl_tensor *tD = test_tensor_from(ctx, 2, (size_t[]){n, n}, dD);
    /* One iteration: no dY, dZ chain; 10 and 11 on either side of the
     * longest loop the tangent form takes (isqrt_backward.c). */
    const int iters[] = {5, 5, 1, 10, 11};
    for (int c = 0; c < 5; c++) {
        const int with_mean = c == 0 ? 0 : 1 + (c == 2), n_iter = iters[c];
        double want[240];
        for (size_t i = 0; i < M * n; i++) {
            double keep = Xd[i];
            Xd[i] = keep + FD_STEP;
            double up = whiten_loss(Xd, M, n, eps, n_iter, with_mean ? dmd : NULL, dDd);
            Xd[i] = keep - FD_STEP;
            double down = whiten_loss(Xd, M, n, eps, n_iter, with_mean ? dmd : NULL, dDd);
            Xd[i] = keep;
            want[i] = (up - down) / (2 * FD_STEP);
        }
        ndcl_tensor *tdX = NULL;
        TEST_OK(ctx, ndcl_whiten_backward(ctx, tX, eps, n_iter, with_mean ? tm : NULL, tD,
                                          &tdX));
        float *got = test_tensor_to_host(tdX);
        double e = test_rel_err_f(got, want, M * n, 1e-3);
        fprintf(stderr, "fd whiten_backward (%s dmean, n_iter %d) dX %.2e\n",
                with_mean ? "with" : "without", n_iter, e);
        ck_assert_msg(e < TOL, "whiten_backward rel err %g", e);
        /* An existing output is reused. */
        TEST_OK(ctx, ndcl_whiten_backward(ctx, tX, eps, n_iter, with_mean ? tm : NULL, tD,
                                          &tdX));
        free(got);
        ndcl_tensor_destroy(tdX);
    }
    ndcl_tensor *bad = NULL;
    ck_assert_int_eq(ndcl_whiten_backward(ctx, tX, eps, 5, tm, tm, &bad),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "dD"));
    ck_assert_int_eq(ndcl_whiten_backward(ctx, tX, eps, 5, tm, tD, &tX),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(bad);
    ndcl_tensor_destroy(tX);
    ndcl_tensor_destroy(tm);
    ndcl_tensor_destroy(tD);
    free(Xd);
    free(dmd);
    free(dDd);
}
END_TEST

/* ------------------------------------------------------------ golden data */

static const char *data_dir(void)
{
    const char *dir = getenv("NDCL_TEST_DATA");
    static char probe[1024];
    if (!dir) {
        fprintf(stderr, "NDCL_TEST_DATA not set: golden gradients skipped\n");
        return NULL;
    }
    snprintf(probe, sizeof probe, "%s/conv_g1/dy1.npy", dir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "%s absent: golden gradients skipped\n", probe);
        return NULL;
    }
    return dir;
}

static float *read_npy(const char *dir, const char *cs, const char *file, int *nd,
                       size_t sh[NDCL_MAX_DIMS])
{
    char p[1024];
    float *v = NULL;
    snprintf(p, sizeof p, "%s/%s/%s", dir, cs, file);
    ck_assert_msg(ndcl_npy_read(p, &v, nd, sh) == NDCL_SUCCESS, "%s: %s", p,
                  ndcl_context_last_error(NULL));
    return v;
}

/* Compares a device tensor with a tensor of a gradient file. */
static double cmp_grad(const ndcl_tensor *t, const char *dir, const char *cs,
                       const char *file, const char *name)
{
    char p[1024];
    float *want = NULL;
    int nd;
    size_t sh[NDCL_MAX_DIMS];
    snprintf(p, sizeof p, "%s/%s/%s", dir, cs, file);
    ck_assert_msg(ndcl_safetensors_read_float(p, name, &want, &nd, sh) == NDCL_SUCCESS,
                  "%s: %s", p, ndcl_context_last_error(NULL));
    ck_assert_uint_eq(prod(nd, sh), ndcl_tensor_count(t));
    float *got = test_tensor_to_host(t);
    double e = test_rel_err_ff(got, want, prod(nd, sh), 1e-3);
    free(got);
    ndcl_free(want);
    return e;
}

/* One step of a case: load the layer file, forward on x in mode, backward
 * with dy; dx and the parameter gradients against PyTorch's. */
static void golden_step(const char *dir, const char *cs, const char *layer_file,
                        ndcl_mode mode, const char *xf, const char *dyf, const char *dxf,
                        const char *gradf)
{
    ndcl_context *ctx = test_ctx();
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/%s", dir, cs, layer_file);
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_layer_load(ctx, p, &l));
    int nd, ndy;
    size_t sh[NDCL_MAX_DIMS], shy[NDCL_MAX_DIMS];
    float *x = read_npy(dir, cs, xf, &nd, sh), *dy = read_npy(dir, cs, dyf, &ndy, shy);
    ndcl_tensor *tx = test_tensor_from(ctx, nd, sh, x), *ty = NULL;
    ndcl_tensor *tdy = test_tensor_from(ctx, ndy, shy, dy);
    ndcl_tensor *tdx = NULL, *tdw = NULL, *tdb = NULL;
    bool params = ndcl_layer_kind_of(l) != NDCL_LAYER_CHANNEL;
    bool bias = test_param_count(l, "bias") > 0;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, tx, &ty));
    TEST_OK(ctx,
            ndcl_layer_backward(l, tdy, &tdx, params ? &tdw : NULL, params ? &tdb : NULL));
    TEST_OK(ctx, ndcl_finish(ctx));
    int ndx;
    size_t shx[NDCL_MAX_DIMS];
    float *dx = read_npy(dir, cs, dxf, &ndx, shx);
    ck_assert_uint_eq(prod(ndx, shx), ndcl_tensor_count(tdx));
    float *got = test_tensor_to_host(tdx);
    double ex = test_rel_err_ff(got, dx, prod(ndx, shx), 1e-3), ew = 0, eb = 0;
    if (params) ew = cmp_grad(tdw, dir, cs, gradf, "weight");
    if (bias) eb = cmp_grad(tdb, dir, cs, gradf, "bias");
    fprintf(stderr, "golden %-14s %-5s dx %.2e  dweight %.2e  dbias %.2e\n", cs,
            mode == NDCL_TRAIN ? "train" : "eval", ex, ew, eb);
    ck_assert_msg(ex < TOL, "%s %s: dx rel err %g", cs, dxf, ex);
    ck_assert_msg(ew < TOL, "%s %s: dweight rel err %g", cs, gradf, ew);
    ck_assert_msg(eb < TOL, "%s %s: dbias rel err %g", cs, gradf, eb);
    free(got);
    ndcl_free(x);
    ndcl_free(dy);
    ndcl_free(dx);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    ndcl_layer_destroy(l);
}

static const char *const golden_cases[] = {
    "conv_g1",       "conv_g2",     "conv_1x1",     "conv_s2d2", "conv_gcd",
    "conv_bigblock", "conv_nobias", "conv_freeze",  "linear",    "linear_gcd",
    "linear_nobias", "channel",     "channel_left", "channel_2d"};

START_TEST(golden_gradients)
{
    const char *dir = data_dir();
    if (!dir) return;
    const char *cs = golden_cases[_i];
    golden_step(dir, cs, "layer.safetensors", NDCL_TRAIN, "x1.npy", "dy1.npy", "dx1.npy",
                "grads1.safetensors");
    golden_step(dir, cs, "state_train2.safetensors", NDCL_EVAL, "x2.npy", "dy_eval.npy",
                "dx_eval.npy", "grads_eval.safetensors");
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(state_and_argument_errors)
{
    ndcl_context *ctx = test_ctx();
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 3, 3);
    d.padding = 1;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    float w[108], w_after[108], b[3] = {0.1f, -0.2f, 0.3f}, rm[36], rm_after[36];
    test_fill_uniform(w, 108, 3, -0.5f, 0.5f);
    TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 108));
    TEST_OK(ctx, ndcl_layer_set_param(l, "bias", b, 3));
    size_t xs[4] = {2, 4, 6, 6}, ys[4] = {2, 3, 6, 6};
    float x[288], dy[216];
    test_fill_uniform(x, 288, 4, -1.0f, 2.0f);
    test_fill_uniform(dy, 216, 5, -1.0f, 1.0f);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xs, x), *ty = NULL;
    ndcl_tensor *tdy = test_tensor_from(ctx, 4, ys, dy);
    ndcl_tensor *tdx = NULL, *tdw = NULL, *tdb = NULL;

    /* Before any forward. */
    ck_assert_int_eq(ndcl_layer_backward(l, tdy, &tdx, &tdw, &tdb), NDCL_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "forward"));
    ck_assert_ptr_null(tdx);

    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_mean", rm, 36));
    /* dy of the wrong shape, then a bad output: refused, nothing handed
     * out, nothing changed, and the saved forward still usable. */
    ndcl_tensor *bad = test_tensor_from(ctx, 4, (size_t[]){2, 3, 6, 5}, NULL);
    ck_assert_int_eq(ndcl_layer_backward(l, bad, &tdx, &tdw, &tdb), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "dy"));
    ck_assert_ptr_null(tdx);
    ck_assert_ptr_null(tdw);
    ck_assert_ptr_null(tdb);
    /* (a caller's buffer: one that ndcl created would take dx's shape) */
    cl_int err;
    cl_mem bad_mem = clCreateBuffer(ndcl_context_cl_context(ctx), CL_MEM_READ_WRITE,
                                    2 * 4 * 6 * 5 * sizeof(float), NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ndcl_tensor *bad_dx = NULL;
    TEST_OK(ctx, ndcl_tensor_wrap(ctx, bad_mem, 4, (size_t[]){2, 4, 6, 5}, &bad_dx));
    clReleaseMemObject(bad_mem);
    ndcl_tensor *bad_dx_in = bad_dx;
    ck_assert_int_eq(ndcl_layer_backward(l, tdy, &bad_dx, &tdw, &tdb),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "*dx"));
    ck_assert_ptr_eq(bad_dx, bad_dx_in);
    ck_assert_uint_eq(ndcl_tensor_dim(bad_dx, 3), 5);
    ndcl_tensor_destroy(bad_dx);
    ck_assert_ptr_null(tdw);
    ck_assert_int_eq(ndcl_layer_backward(l, NULL, &tdx, NULL, NULL), NDCL_ERR_INVALID_ARG);
    TEST_OK(ctx, ndcl_layer_get_param(l, "weight", w_after, 108));
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_mean", rm_after, 36));
    ck_assert_mem_eq(w, w_after, sizeof w);
    ck_assert_mem_eq(rm, rm_after, sizeof rm);

    /* The layer keeps its own copy of x: changing x does not matter. */
    float *x2 = malloc(sizeof x);
    test_fill_uniform(x2, 288, 99, -5.0f, 5.0f);
    TEST_OK(ctx, ndcl_tensor_write(tx, x2, 288));
    free(x2);
    TEST_OK(ctx, ndcl_layer_backward(l, tdy, &tdx, &tdw, &tdb));
    float *g1 = test_tensor_to_host(tdx), *gw1 = test_tensor_to_host(tdw);
    TEST_OK(ctx, ndcl_layer_get_param(l, "weight", w_after, 108));
    ck_assert_mem_eq(w, w_after, sizeof w);

    /* Twice: the saved state is gone. */
    ck_assert_int_eq(ndcl_layer_backward(l, tdy, &tdx, &tdw, &tdb), NDCL_ERR_STATE);

    /* The same step again from the original x, into the existing outputs:
     * the same gradients. */
    TEST_OK(ctx, ndcl_tensor_write(tx, x, 288));
    ndcl_layer *l2 = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l2));
    TEST_OK(ctx, ndcl_layer_set_param(l2, "weight", w, 108));
    TEST_OK(ctx, ndcl_layer_set_param(l2, "bias", b, 3));
    TEST_OK(ctx, ndcl_layer_forward(l2, NDCL_TRAIN, tx, &ty));
    ndcl_tensor *keep_dx = tdx;
    TEST_OK(ctx, ndcl_layer_backward(l2, tdy, &tdx, &tdw, NULL));
    ck_assert_ptr_eq(tdx, keep_dx);
    float *g2 = test_tensor_to_host(tdx), *gw2 = test_tensor_to_host(tdw);
    ck_assert_mem_eq(g1, g2, 288 * sizeof(float));
    ck_assert_mem_eq(gw1, gw2, 108 * sizeof(float));
    free(g1);
    free(g2);
    free(gw1);
    free(gw2);

    /* Released state. */
    TEST_OK(ctx, ndcl_layer_forward(l2, NDCL_TRAIN, tx, &ty));
    ndcl_layer_release_saved(l2);
    ck_assert_int_eq(ndcl_layer_backward(l2, tdy, &tdx, NULL, NULL), NDCL_ERR_STATE);
    ndcl_layer_release_saved(NULL);
    /* A forward after the release works as before. */
    TEST_OK(ctx, ndcl_layer_forward(l2, NDCL_TRAIN, tx, &ty));
    TEST_OK(ctx, ndcl_layer_backward(l2, tdy, NULL, &tdw, NULL));
    TEST_OK(ctx, ndcl_finish(ctx));
    ck_assert_int_eq(ndcl_layer_backward(NULL, tdy, &tdx, NULL, NULL),
                     NDCL_ERR_INVALID_ARG);

    /* A layer without a bias leaves *dbias alone; a channel layer takes no
     * parameter outputs. */
    d.bias = 0;
    ndcl_layer *nb = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &nb));
    TEST_OK(ctx, ndcl_layer_forward(nb, NDCL_TRAIN, tx, &ty));
    ndcl_tensor *none = NULL;
    TEST_OK(ctx, ndcl_layer_backward(nb, tdy, NULL, NULL, &none));
    ck_assert_ptr_null(none);
    ndcl_channel_desc cd = ndcl_channel_desc_default(2);
    ndcl_layer *ch = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, &cd, &ch));
    ndcl_tensor *cy = NULL, *cdx = NULL;
    TEST_OK(ctx, ndcl_layer_forward(ch, NDCL_TRAIN, tx, &cy));
    ck_assert_int_eq(ndcl_layer_backward(ch, tx, &cdx, &tdw, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "dweight"));
    TEST_OK(ctx, ndcl_layer_backward(ch, cy, &cdx, NULL, NULL));
    TEST_OK(ctx, ndcl_finish(ctx));

    ndcl_tensor_destroy(cy);
    ndcl_tensor_destroy(cdx);
    ndcl_layer_destroy(ch);
    ndcl_layer_destroy(nb);
    ndcl_layer_destroy(l2);
    ndcl_tensor_destroy(bad);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    ndcl_layer_destroy(l);
}
END_TEST

/* The gradients of a conv step: forward then, after `meddle` (NULL: none)
 * changed the layer or x, backward; dx and dweight returned. */
static void conv_grads(ndcl_layer *l, ndcl_mode mode, ndcl_tensor *tx, ndcl_tensor *tdy,
                       void (*meddle)(ndcl_layer *, ndcl_tensor *), float **gx, float **gw)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    ndcl_tensor *ty = NULL, *tdx = NULL, *tdw = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, tx, &ty));
    if (meddle) meddle(l, tx);
    TEST_OK(ctx, ndcl_layer_backward(l, tdy, &tdx, &tdw, NULL));
    *gx = test_tensor_to_host(tdx);
    *gw = test_tensor_to_host(tdw);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
}

/* Changes every parameter and buffer, and x. */
static void meddle(ndcl_layer *l, ndcl_tensor *tx)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    const char *names[] = {"weight", "bias", "running_mean", "running_deconv"};
    for (int k = 0; k < 4; k++) {
        size_t n = test_param_count(l, names[k]);
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, 500 + (unsigned)k, -3.0f, 3.0f);
        TEST_OK(ctx, ndcl_layer_set_param(l, names[k], v, n));
        free(v);
    }
    size_t n = ndcl_tensor_count(tx);
    float *v = malloc(n * sizeof *v);
    test_fill_uniform(v, n, 600, -3.0f, 3.0f);
    TEST_OK(ctx, ndcl_tensor_write(tx, v, n));
    free(v);
}

START_TEST(backward_uses_its_forward_state)
{
    /* What the backward needs is the layer's own copy: changing the
     * parameters, the running statistics or x between the forward and the
     * backward changes nothing, in either mode. */
    ndcl_context *ctx = test_ctx();
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 4, 3);
    d.padding = 1;
    d.block = 4;
    const size_t xs[4] = {2, 8, 6, 6}, ys[4] = {2, 4, 6, 6}, nx = 576, ny = 288;
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
    test_fill_uniform(x, nx, 21, -1.0f, 2.0f);
    test_fill_uniform(dy, ny, 22, -1.0f, 1.0f);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xs, x),
                *tdy = test_tensor_from(ctx, 4, ys, dy);
    for (int mode = NDCL_TRAIN; mode <= NDCL_EVAL; mode++) {
        float *gx[2], *gw[2];
        for (int k = 0; k < 2; k++) {
            ndcl_layer *l = NULL;
            TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
            float w[288];
            test_fill_uniform(w, 288, 23, -0.5f, 0.5f);
            TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 288));
            ndcl_tensor *ty = NULL;
            TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty)); /* running stats */
            ndcl_tensor_destroy(ty);
            conv_grads(l, (ndcl_mode)mode, tx, tdy, k ? meddle : NULL, &gx[k], &gw[k]);
            TEST_OK(ctx, ndcl_tensor_write(tx, x, nx)); /* undo the meddling */
            ndcl_layer_destroy(l);
        }
        ck_assert_mem_eq(gx[0], gx[1], nx * sizeof(float));
        ck_assert_mem_eq(gw[0], gw[1], 288 * sizeof(float));
        for (int k = 0; k < 2; k++) {
            free(gx[k]);
            free(gw[k]);
        }
    }
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(tdy);
    free(x);
    free(dy);
}
END_TEST

/* The other kinds honour NDCL_LAYER_BORROW_INPUT as the conv does
 * (tests/test_conv.c): borrowed and untouched, the gradients of the
 * default; borrowed and overwritten before the backward, other gradients
 * (the layer read the caller's buffer, not a copy). */
static float *kind_grads(ndcl_layer *l, int ndim, const size_t *xs, const float *x,
                         size_t nx, bool borrow, bool overwrite, size_t *ng)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_BORROW_INPUT, borrow));
    ndcl_tensor *tx = test_tensor_from(ctx, ndim, xs, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    if (overwrite) {
        float *other = malloc(nx * sizeof *other);
        test_fill_uniform(other, nx, 77, -3.0f, 3.0f);
        TEST_OK(ctx, ndcl_tensor_write(tx, other, nx));
        free(other);
    }
    size_t ny = ndcl_tensor_count(ty);
    float *dy = malloc(ny * sizeof *dy);
    test_fill_uniform(dy, ny, 78, -1.0f, 1.0f);
    size_t ys[NDCL_MAX_DIMS];
    for (int i = 0; i < ndcl_tensor_ndim(ty); i++)
        ys[i] = ndcl_tensor_dim(ty, i);
    ndcl_tensor *tdy = test_tensor_from(ctx, ndcl_tensor_ndim(ty), ys, dy);
    ndcl_tensor *dx = NULL, *dw = NULL;
    bool params = ndcl_layer_kind_of(l) != NDCL_LAYER_CHANNEL;
    TEST_OK(ctx, ndcl_layer_backward(l, tdy, &dx, params ? &dw : NULL, NULL));
    TEST_OK(ctx, ndcl_finish(ctx));
    /* dx then dW (when the kind has one) in one array. */
    size_t nw = dw ? ndcl_tensor_count(dw) : 0;
    float *g = malloc((nx + nw) * sizeof *g), *hx = test_tensor_to_host(dx);
    memcpy(g, hx, nx * sizeof *g);
    if (dw) {
        float *hw = test_tensor_to_host(dw);
        memcpy(g + nx, hw, nw * sizeof *g);
        free(hw);
    }
    *ng = nx + nw;
    free(hx), free(dy);
    ndcl_tensor *t[] = {tx, ty, tdy, dx, dw};
    for (size_t i = 0; i < 5; i++)
        ndcl_tensor_destroy(t[i]);
    return g;
}

START_TEST(borrowed_input_other_kinds)
{
    ndcl_context *ctx = test_ctx();
    for (int kind = 0; kind < 2; kind++) {
        /* linear: dW' = dyᵀ·x; channel with a leftover channel (5 = 2*2 + 1):
         * its dx reads x. */
        const size_t xl[2] = {6, 16}, xc[4] = {3, 5, 4, 4};
        const int ndim = kind ? 4 : 2;
        const size_t *xs = kind ? xc : xl, nx = kind ? 240 : 96;
        float *x = malloc(nx * sizeof *x);
        test_fill_uniform(x, nx, 79, -1.0f, 2.0f);
        float *g[3];
        size_t ng = 0;
        for (int v = 0; v < 3; v++) {
            ndcl_layer *l = NULL;
            if (kind) {
                ndcl_channel_desc d = ndcl_channel_desc_default(2);
                TEST_OK(ctx, ndcl_channel_create(ctx, &d, &l));
            } else {
                ndcl_linear_desc d = ndcl_linear_desc_default(16, 8);
                d.block = 4;
                TEST_OK(ctx, ndcl_linear_create(ctx, &d, &l));
                float w[128];
                test_fill_uniform(w, 128, 80, -0.5f, 0.5f);
                TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 128));
            }
            g[v] = kind_grads(l, ndim, xs, x, nx, v > 0, v == 2, &ng);
            ndcl_layer_destroy(l);
        }
        ck_assert_msg(test_rel_err_ff(g[1], g[0], ng, 1e-30) < 1e-6,
                      "kind %d: borrowing changed the gradients", kind);
        ck_assert_msg(test_rel_err_ff(g[2], g[0], ng, 1e-30) > 1e-3,
                      "kind %d: an overwritten borrowed x left the gradients alone", kind);
        for (int v = 0; v < 3; v++)
            free(g[v]);
        free(x);
    }
}
END_TEST

/* ------------------------------------------------------------ training */

START_TEST(sgd_lowers_the_loss)
{
    /* Regress a random plain convolution's output with a deconvolved conv
     * layer: 10 steps of SGD on L = ½‖y - target‖² / count, each of
     * which must lower it, by half in all. */
    ndcl_context *ctx = test_ctx();
    const size_t N = 4, C = 4, H = 8, W = 8, Co = 3, nx = N * C * H * W,
                 ny = N * Co * H * W;
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default((int)C, (int)Co, 3);
    d.padding = 1;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    float *x = malloc(nx * sizeof *x), wt[108], w[108], b[3] = {0, 0, 0};
    test_fill_uniform(x, nx, 41, -1.0f, 2.0f);
    test_fill_uniform(wt, 108, 42, -0.5f, 0.5f);
    test_fill_uniform(w, 108, 43, -0.1f, 0.1f);
    for (size_t i = 0; i < nx; i++)
        x[i] += (float)((i / (H * W)) % C); /* channel offsets */
    double *xd = to_double(x, nx), *wtd = to_double(wt, 108), bt[3] = {0.3, -0.2, 0.1};
    double *target = malloc(ny * sizeof *target);
    ref_conv2d(xd, N, C, H, W, wtd, Co, 3, 3, bt, 1, 1, 1, 1, target);
    TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 108));
    TEST_OK(ctx, ndcl_layer_set_param(l, "bias", b, 3));
    ndcl_tensor *tx = test_tensor_from(ctx, 4, (size_t[]){N, C, H, W}, x), *ty = NULL;
    ndcl_tensor *tdy = NULL, *tdw = NULL, *tdb = NULL;
    float *dy = malloc(ny * sizeof *dy), *y = malloc(ny * sizeof *y);
    float gw[108], gb[3];
    /* The whitened problem is well conditioned but not perfectly (five
     * Newton-Schulz iterations, zero padding): 0.5 overshoots, 0.3 does
     * not (measured on PoCL). */
    const float lr = 0.3f;
    double first = 0, last = 0;
    fprintf(stderr, "sgd loss:");
    for (int step = 0; step < 10; step++) {
        TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
        TEST_OK(ctx, ndcl_tensor_read(ty, y, ny));
        double loss = 0;
        for (size_t i = 0; i < ny; i++) {
            double r = y[i] - target[i];
            loss += 0.5 * r * r / (double)ny;
            dy[i] = (float)(r / (double)ny);
        }
        fprintf(stderr, " %.4g", loss);
        if (step == 0) first = loss;
        ck_assert_msg(step == 0 || loss < last, "step %d: loss %g after %g", step, loss,
                      last);
        last = loss;
        if (!tdy) tdy = test_tensor_from(ctx, 4, (size_t[]){N, Co, H, W}, NULL);
        TEST_OK(ctx, ndcl_tensor_write(tdy, dy, ny));
        TEST_OK(ctx, ndcl_layer_backward(l, tdy, NULL, &tdw, &tdb));
        TEST_OK(ctx, ndcl_tensor_read(tdw, gw, 108));
        TEST_OK(ctx, ndcl_tensor_read(tdb, gb, 3));
        for (int i = 0; i < 108; i++)
            w[i] -= lr * gw[i];
        for (int i = 0; i < 3; i++)
            b[i] -= lr * gb[i];
        TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 108));
        TEST_OK(ctx, ndcl_layer_set_param(l, "bias", b, 3));
    }
    fprintf(stderr, "\n");
    TEST_OK(ctx, ndcl_finish(ctx));
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
    free(x);
    free(xd);
    free(wtd);
    free(target);
    free(dy);
    free(y);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    ndcl_layer_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backward");
    TEST_ADD(s, fd_conv_g1);
    TEST_ADD(s, fd_conv_g2);
    TEST_ADD(s, fd_conv_1x1);
    TEST_ADD(s, fd_conv_stride_dilation);
    TEST_ADD(s, fd_conv_gcd_nobias);
    TEST_ADD(s, fd_conv_frozen_eval);
    TEST_ADD(s, fd_linear_layers);
    TEST_ADD(s, fd_channel_layers);
    TEST_ADD(s, channel_eval_first_batch);
    TEST_ADD(s, whiten_backward_fd);
    {
        TCase *tc = tcase_create("golden_gradients");
        tcase_set_timeout(tc, 900);
        tcase_add_loop_test(tc, golden_gradients, 0,
                            (int)(sizeof golden_cases / sizeof golden_cases[0]));
        suite_add_tcase(s, tc);
    }
    TEST_ADD(s, state_and_argument_errors);
    TEST_ADD(s, backward_uses_its_forward_state);
    TEST_ADD(s, borrowed_input_other_kinds);
    TEST_ADD(s, sgd_lowers_the_loss);
    return test_run(s);
}
