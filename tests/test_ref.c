/* test_ref.c - the double-precision host reference (src/selftest/ref.h) against
 * facts computed independently here: hand-worked convolutions, the fold's
 * closed form, counters, first-batch copies and the whitening property. */
#include <stdint.h>

#include "harness.h"
#include "ref.h"

/* ------------------------------------------------------------- helpers */

static void fill(double *x, size_t n, unsigned seed, double lo, double hi)
{
    unsigned st = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * test_rand01(&st);
}

static double max_abs_diff(const double *a, const double *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= e)) e = d; /* NaN counts as the worst */
    }
    return e;
}

/* Centred covariance (1/M) of the columns cols[0..n-1] of an M x ld matrix,
 * written here so the whitening checks do not rely on ref_mean_cov. */
static void column_cov(const double *X, size_t M, size_t ld, size_t first, size_t n,
                       double *mean, double *cov)
{
    for (size_t j = 0; j < n; j++) {
        mean[j] = 0;
        for (size_t i = 0; i < M; i++)
            mean[j] += X[i * ld + first + j];
        mean[j] /= (double)M;
    }
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            double s = 0;
            for (size_t i = 0; i < M; i++)
                s += (X[i * ld + first + a] - mean[a]) * (X[i * ld + first + b] - mean[b]);
            cov[a * n + b] = s / (double)M;
        }
}

static double dist_to_identity(const double *A, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            e = fmax(e, fabs(A[i * n + j] - (i == j ? 1.0 : 0.0)));
    return e;
}

/* Correlated data with a non-zero mean: x = A·z + offset per sample of n
 * values, z uniform; A is well conditioned so Newton-Schulz converges. */
static void correlated(double *x, size_t M, size_t n, unsigned seed)
{
    unsigned st = seed * 2654435761u + 7;
    double *z = malloc(n * sizeof *z);
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < n; j++)
            z[j] = 2 * test_rand01(&st) - 1;
        for (size_t j = 0; j < n; j++) {
            double s = 0.5 + 0.3 * (double)j; /* offset */
            for (size_t k = 0; k <= j; k++)
                s += (k == j ? 1.0 : 0.6) * z[k];
            x[i * n + j] = s;
        }
    }
    free(z);
}

/* ------------------------------------------------------------- conv2d */

START_TEST(conv2d_by_hand)
{
    /* x = 1..9 as a 3x3 image, w = [[1, 2], [3, 4]]. */
    double x[9], w[4] = {1, 2, 3, 4}, b = 1, y[4];
    for (int i = 0; i < 9; i++)
        x[i] = i + 1;
    ref_conv2d(x, 1, 1, 3, 3, w, 1, 2, 2, &b, 1, 0, 1, 1, y);
    double want[4] = {38, 48, 68, 78};
    ck_assert_double_eq_tol(max_abs_diff(y, want, 4), 0, 1e-12);
    /* Padding 1, stride 2, no bias: the corners see 1, 2, 2 and 4 taps. */
    ref_conv2d(x, 1, 1, 3, 3, w, 1, 2, 2, NULL, 2, 1, 1, 1, y);
    double want_p[4] = {4, 18, 36, 77};
    ck_assert_double_eq_tol(max_abs_diff(y, want_p, 4), 0, 1e-12);
}
END_TEST

/* A second formulation: zero-pad the input explicitly, dilate the kernel by
 * inserting zeros, then correlate each group's channel slice with stride. */
static void conv_by_padding(const double *x, size_t N, size_t C, size_t H, size_t W,
                            const double *w, size_t Cout, size_t kh, size_t kw,
                            const double *b, size_t s, size_t p, size_t d, size_t G,
                            double *y, size_t *Ho, size_t *Wo)
{
    size_t Hp = H + 2 * p, Wp = W + 2 * p;
    size_t dkh = d * (kh - 1) + 1, dkw = d * (kw - 1) + 1, cg = C / G, og = Cout / G;
    double *xp = calloc(N * C * Hp * Wp, sizeof *xp);
    double *wd = calloc(Cout * cg * dkh * dkw, sizeof *wd);
    for (size_t i = 0; i < N * C; i++)
        for (size_t h = 0; h < H; h++)
            for (size_t v = 0; v < W; v++)
                xp[(i * Hp + h + p) * Wp + v + p] = x[(i * H + h) * W + v];
    for (size_t i = 0; i < Cout * cg; i++)
        for (size_t a = 0; a < kh; a++)
            for (size_t c = 0; c < kw; c++)
                wd[(i * dkh + a * d) * dkw + c * d] = w[(i * kh + a) * kw + c];
    *Ho = (Hp - dkh) / s + 1;
    *Wo = (Wp - dkw) / s + 1;
    for (size_t n = 0; n < N; n++)
        for (size_t g = 0; g < G; g++)
            for (size_t oo = 0; oo < og; oo++) {
                size_t o = g * og + oo;
                for (size_t oy = 0; oy < *Ho; oy++)
                    for (size_t ox = 0; ox < *Wo; ox++) {
                        double acc = b[o];
                        for (size_t ci = 0; ci < cg; ci++)
                            for (size_t a = 0; a < dkh; a++)
                                for (size_t c = 0; c < dkw; c++)
                                    acc +=
                                        wd[((o * cg + ci) * dkh + a) * dkw + c] *
                                        xp[((n * C + g * cg + ci) * Hp + oy * s + a) * Wp +
                                           ox * s + c];
                        y[((n * Cout + o) * *Ho + oy) * *Wo + ox] = acc;
                    }
            }
    free(xp);
    free(wd);
}

START_TEST(conv2d_general_matches_padded_form)
{
    const size_t N = 2, C = 6, H = 7, W = 8, Cout = 4, kh = 3, kw = 2, G = 2;
    const size_t strides[2] = {1, 2}, pads[2] = {0, 2}, dils[2] = {1, 2};
    double x[2 * 6 * 7 * 8], w[4 * 6 * 3 * 2], b[4]; /* enough for groups = 1 */
    fill(x, sizeof x / sizeof *x, 1, -1, 1);
    fill(w, sizeof w / sizeof *w, 2, -1, 1);
    fill(b, 4, 3, -1, 1);
    for (int si = 0; si < 2; si++)
        for (int pi = 0; pi < 2; pi++)
            for (int di = 0; di < 2; di++)
                for (size_t g = 1; g <= G; g++) {
                    size_t s = strides[si], p = pads[pi], d = dils[di], Ho, Wo;
                    double want[2 * 4 * 11 * 12], got[2 * 4 * 11 * 12];
                    conv_by_padding(x, N, C, H, W, w, Cout, kh, kw, b, s, p, d, g, want,
                                    &Ho, &Wo);
                    ref_conv2d(x, N, C, H, W, w, Cout, kh, kw, b, s, p, d, g, got);
                    ck_assert_double_eq_tol(max_abs_diff(got, want, N * Cout * Ho * Wo), 0,
                                            1e-12);
                }
}
END_TEST

/* ------------------------------------------------------------ creation */

START_TEST(parameter_sizes_and_init)
{
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(6, 5, 3);
    cd.block = 4; /* 6 % 4 != 0 -> gcd 2 */
    ref_layer *l = ref_layer_conv2d(&cd);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->kind, NDCL_LAYER_CONV2D);
    ck_assert_int_eq(l->block, 2);
    ck_assert_int_eq(l->conv.block, 4); /* the descriptor as given */
    ck_assert_uint_eq(l->n_weight, 5 * 6 * 9);
    ck_assert_uint_eq(l->n_bias, 5);
    ck_assert_uint_eq(l->n_running_mean, 18);
    ck_assert_uint_eq(l->n_running_deconv, 18 * 18);
    ck_assert_double_eq(dist_to_identity(l->running_deconv, 18), 0);
    ck_assert_int_eq(l->counter, 0);
    ref_layer_free(l);

    cd = ndcl_conv2d_desc_default(6, 4, 3);
    cd.groups = 2; /* B = C/G = 3, nf = 27, one matrix per group */
    cd.bias = 0;
    l = ref_layer_conv2d(&cd);
    ck_assert_int_eq(l->block, 3);
    ck_assert_uint_eq(l->n_weight, 4 * 3 * 9);
    ck_assert_uint_eq(l->n_bias, 0);
    ck_assert_ptr_null(l->bias);
    ck_assert_uint_eq(l->n_running_mean, 54);
    ck_assert_uint_eq(l->n_running_deconv, 2 * 27 * 27);
    ck_assert_double_eq(dist_to_identity(l->running_deconv, 27), 0);
    ck_assert_double_eq(dist_to_identity(l->running_deconv + 27 * 27, 27), 0);
    ref_layer_free(l);

    cd = ndcl_conv2d_desc_default(3, 2, 1); /* block 64 > C -> 3 */
    l = ref_layer_conv2d(&cd);
    ck_assert_int_eq(l->block, 3);
    ref_layer_free(l);
    cd.groups = 2; /* 3 % 2 */
    ck_assert_ptr_null(ref_layer_conv2d(&cd));

    ndcl_linear_desc ld = ndcl_linear_desc_default(10, 3);
    ld.block = 4; /* -> gcd 2 */
    ld.bias = 0;
    l = ref_layer_linear(&ld);
    ck_assert_int_eq(l->block, 2);
    ck_assert_uint_eq(l->n_weight, 30);
    ck_assert_uint_eq(l->n_bias, 0);
    ck_assert_uint_eq(l->n_running_mean, 2);
    ck_assert_uint_eq(l->n_running_deconv, 4);
    ck_assert_double_eq(dist_to_identity(l->running_deconv, 2), 0);
    ref_layer_free(l);

    ndcl_channel_desc chd = ndcl_channel_desc_default(3);
    l = ref_layer_channel(&chd);
    ck_assert_int_eq(l->block, 3);
    ck_assert_uint_eq(l->n_weight, 0);
    ck_assert_uint_eq(l->n_running_mean, 3);
    ck_assert_uint_eq(l->n_running_deconv, 9);
    ck_assert_double_eq(l->running_var[0], 1.0);
    ck_assert_double_eq(l->running_mean2[0], 0.0);
    ck_assert_double_eq(dist_to_identity(l->running_deconv, 3), 0);
    ref_layer_free(l);
    ref_layer_free(NULL);
}
END_TEST

START_TEST(output_shapes)
{
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(4, 7, 3);
    cd.stride = 2;
    cd.padding = 1;
    cd.dilation = 2;
    ref_layer *l = ref_layer_conv2d(&cd);
    size_t y[4];
    ck_assert_int_eq(ref_layer_out_shape(l, 4, (size_t[]){2, 4, 9, 10}, y), 0);
    /* (9 + 2 - 5)/2 + 1 = 4, (10 + 2 - 5)/2 + 1 = 4 */
    ck_assert_uint_eq(y[0], 2);
    ck_assert_uint_eq(y[1], 7);
    ck_assert_uint_eq(y[2], 4);
    ck_assert_uint_eq(y[3], 4);
    ref_layer_free(l);

    ndcl_linear_desc ld = ndcl_linear_desc_default(6, 3);
    l = ref_layer_linear(&ld);
    ck_assert_int_eq(ref_layer_out_shape(l, 2, (size_t[]){5, 6}, y), 0);
    ck_assert_uint_eq(y[0], 5);
    ck_assert_uint_eq(y[1], 3);
    ref_layer_free(l);

    ndcl_channel_desc chd = ndcl_channel_desc_default(2);
    l = ref_layer_channel(&chd);
    ck_assert_int_eq(ref_layer_out_shape(l, 4, (size_t[]){2, 5, 3, 4}, y), 0);
    ck_assert(y[0] == 2 && y[1] == 5 && y[2] == 3 && y[3] == 4);
    ck_assert_int_eq(ref_layer_out_shape(l, 2, (size_t[]){7, 5}, y), 0);
    ck_assert(y[0] == 7 && y[1] == 5);
    ref_layer_free(l);
}
END_TEST

/* ---------------------------------------------------------- conv layer */

START_TEST(conv_eval_fresh_is_plain_conv)
{
    /* Zero mean and identity deconv fold to the weights themselves, for
     * interleaved blocks (G = 1, B < C), groups and no bias alike. */
    const size_t N = 2, C = 4, H = 6, W = 5, Cout = 4;
    double x[2 * 4 * 6 * 5];
    fill(x, sizeof x / sizeof *x, 11, -1, 1);
    for (int variant = 0; variant < 3; variant++) {
        ndcl_conv2d_desc cd = ndcl_conv2d_desc_default((int)C, (int)Cout, 3);
        cd.block = 2;
        cd.padding = 1;
        cd.stride = 2;
        if (variant == 1) cd.groups = 2;
        if (variant == 2) cd.bias = 0;
        ref_layer *l = ref_layer_conv2d(&cd);
        fill(l->weight, l->n_weight, 12 + variant, -1, 1);
        if (l->bias) fill(l->bias, l->n_bias, 13, -1, 1);
        size_t ys[4];
        ck_assert_int_eq(ref_layer_out_shape(l, 4, (size_t[]){N, C, H, W}, ys), 0);
        size_t ny = ys[0] * ys[1] * ys[2] * ys[3];
        double *got = malloc(ny * sizeof *got), *want = malloc(ny * sizeof *want);
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 4, (size_t[]){N, C, H, W}, got),
                         0);
        ref_conv2d(x, N, C, H, W, l->weight, Cout, 3, 3, l->bias, 2, 1, 1,
                   (size_t)cd.groups, want);
        ck_assert_double_eq_tol(max_abs_diff(got, want, ny), 0, 1e-12);
        ck_assert_int_eq(l->counter, 0); /* eval does not count */
        free(got);
        free(want);
        ref_layer_free(l);
    }
}
END_TEST

START_TEST(conv_eval_fold_closed_form)
{
    /* 1x1 kernel, C = 6, B = 2: block g holds channels f·3 + g, so per pixel
     * y[o] = b[o] + Σ_g Σ_f Σ_f' W[o, f·3+g]·D[f, f']·(x[f'·3+g] − μ[f']). */
    const size_t N = 2, C = 6, H = 3, W = 2, Cout = 3, P = H * W, per = 3, B = 2;
    double x[2 * 6 * 3 * 2], y[2 * 3 * 3 * 2];
    fill(x, sizeof x / sizeof *x, 21, -1, 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        ndcl_conv2d_desc cd = ndcl_conv2d_desc_default((int)C, (int)Cout, 1);
        cd.block = 2;
        cd.bias = with_bias;
        ref_layer *l = ref_layer_conv2d(&cd);
        ck_assert_int_eq(l->block, 2);
        fill(l->weight, l->n_weight, 22, -1, 1);
        if (with_bias) fill(l->bias, l->n_bias, 23, -1, 1);
        fill(l->running_mean, 2, 24, -1, 1);
        fill(l->running_deconv, 4, 25, -1, 1);
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 4, (size_t[]){N, C, H, W}, y),
                         0);
        const double *D = l->running_deconv, *mu = l->running_mean;
        double err = 0;
        for (size_t n = 0; n < N; n++)
            for (size_t o = 0; o < Cout; o++)
                for (size_t p = 0; p < P; p++) {
                    double s = with_bias ? l->bias[o] : 0.0;
                    for (size_t g = 0; g < per; g++)
                        for (size_t f = 0; f < B; f++)
                            for (size_t f2 = 0; f2 < B; f2++)
                                s += l->weight[o * C + f * per + g] * D[f * B + f2] *
                                     (x[(n * C + f2 * per + g) * P + p] - mu[f2]);
                    err = fmax(err, fabs(s - y[(n * Cout + o) * P + p]));
                }
        ck_assert_double_eq_tol(err, 0, 1e-12);
        ref_layer_free(l);
    }
}
END_TEST

START_TEST(conv_train_running_mean)
{
    /* 1x1, C = 4, B = 2, sampling stride 2: the rows are every 4th pixel in
     * (n, h, w) order, and block g holds channels 2f + g, so the mean of
     * feature f pools channels 2f and 2f+1 over the kept pixels. After one
     * step from zero the running mean is m·μ. */
    const size_t N = 2, C = 4, H = 3, W = 5, P = H * W;
    double x[2 * 4 * 3 * 5], y[2 * 1 * 3 * 5];
    fill(x, sizeof x / sizeof *x, 31, 0, 2);
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default((int)C, 1, 1);
    cd.block = 2;
    cd.sampling_stride = 2;
    ref_layer *l = ref_layer_conv2d(&cd);
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 4, (size_t[]){N, C, H, W}, y), 0);
    double mu[2] = {0, 0};
    size_t count = 0;
    for (size_t r = 0; r < N * P; r += 4, count++)
        for (size_t f = 0; f < 2; f++)
            for (size_t g = 0; g < 2; g++)
                mu[f] += x[((r / P) * C + f * 2 + g) * P + r % P];
    for (size_t f = 0; f < 2; f++) {
        mu[f] /= (double)(count * 2);
        ck_assert_double_eq_tol(l->running_mean[f], 0.1f * mu[f], 1e-12);
    }
    ck_assert_int_eq(l->counter, 1);
    ref_layer_free(l);
}
END_TEST

START_TEST(conv_freeze_counter)
{
    /* freeze_iter 3: a step is frozen when the counter before it exceeds 3;
     * the counter wraps at 30. Frozen train steps leave the running buffers
     * alone and compute what eval computes. */
    const size_t N = 1, C = 2, H = 4, W = 4;
    double x[1 * 2 * 4 * 4], y[16], ye[16];
    fill(x, sizeof x / sizeof *x, 41, 0, 3);
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default((int)C, 1, 1);
    cd.sampling_stride = 1;
    cd.freeze = 1;
    cd.freeze_iter = 3;
    ref_layer *l = ref_layer_conv2d(&cd);
    fill(l->weight, l->n_weight, 42, -1, 1);
    int updates = 0;
    for (int step = 1; step <= 65; step++) {
        int want_frozen = (step - 1) % 30 > 3;
        double before[2], dbefore[4];
        memcpy(before, l->running_mean, sizeof before);
        memcpy(dbefore, l->running_deconv, sizeof dbefore);
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 4, (size_t[]){N, C, H, W}, ye),
                         0);
        ck_assert_int_eq(l->counter, (step - 1) % 30);
        ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 4, (size_t[]){N, C, H, W}, y),
                         0);
        ck_assert_int_eq(l->counter, step % 30);
        int changed = memcmp(before, l->running_mean, sizeof before) != 0;
        ck_assert_msg(changed == !want_frozen, "step %d: changed %d", step, changed);
        if (want_frozen) {
            ck_assert_mem_eq(dbefore, l->running_deconv, sizeof dbefore);
            ck_assert_double_eq(max_abs_diff(y, ye, 16), 0);
        }
        updates += changed;
    }
    ck_assert_int_eq(updates, 4 + 4 + 4); /* steps 1-4, 31-34, 61-64 */
    ref_layer_free(l);

    /* Without freeze the counter still wraps but every step updates. */
    cd.freeze = 0;
    l = ref_layer_conv2d(&cd);
    for (int step = 1; step <= 35; step++) {
        double before[2];
        memcpy(before, l->running_mean, sizeof before);
        ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 4, (size_t[]){N, C, H, W}, y),
                         0);
        ck_assert(memcmp(before, l->running_mean, sizeof before) != 0);
    }
    ck_assert_int_eq(l->counter, 5);
    ref_layer_free(l);
}
END_TEST

START_TEST(conv_train_whitens)
{
    /* 1x1, identity weight, every pixel sampled: each output pixel is
     * D·(x − μ), whose covariance over pixels is ≈ I (per group when G = 2:
     * only the within-group blocks are whitened). */
    const size_t N = 4, C = 4, H = 10, W = 10, P = H * W, M = N * P;
    for (int G = 1; G <= 2; G++) {
        double *pix = malloc(M * C * sizeof *pix);
        double *x = malloc(M * C * sizeof *x), *y = malloc(M * C * sizeof *y);
        correlated(pix, M, C, 50 + (unsigned)G);
        for (size_t r = 0; r < M; r++) /* pixel rows -> NCHW */
            for (size_t c = 0; c < C; c++)
                x[((r / P) * C + c) * P + r % P] = pix[r * C + c];
        ndcl_conv2d_desc cd = ndcl_conv2d_desc_default((int)C, (int)C, 1);
        cd.sampling_stride = 1;
        cd.groups = G;
        cd.eps = 1e-7f;
        cd.n_iter = 30;
        ref_layer *l = ref_layer_conv2d(&cd);
        size_t cg = C / (size_t)G;
        for (size_t o = 0; o < C; o++)
            l->weight[o * cg + o % cg] = 1.0;
        ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 4, (size_t[]){N, C, H, W}, y),
                         0);
        for (size_t r = 0; r < M; r++)
            for (size_t c = 0; c < C; c++)
                pix[r * C + c] = y[((r / P) * C + c) * P + r % P];
        for (size_t g = 0; g < (size_t)G; g++) {
            double mean[4], cov[16];
            column_cov(pix, M, C, g * cg, cg, mean, cov);
            ck_assert_double_eq_tol(dist_to_identity(cov, cg), 0, 1e-4);
            for (size_t j = 0; j < cg; j++)
                ck_assert_double_eq_tol(mean[j], 0, 1e-10);
        }
        free(pix);
        free(x);
        free(y);
        ref_layer_free(l);
    }
}
END_TEST

/* -------------------------------------------------------- linear layer */

START_TEST(linear_eval_fold)
{
    const size_t N = 5, F = 6, Fout = 3;
    double x[5 * 6], y[5 * 3];
    fill(x, N * F, 61, -1, 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        ndcl_linear_desc ld = ndcl_linear_desc_default((int)F, (int)Fout);
        ld.block = 4; /* -> 2: each row is 3 contiguous blocks */
        ld.bias = with_bias;
        ref_layer *l = ref_layer_linear(&ld);
        fill(l->weight, l->n_weight, 62, -1, 1);
        if (with_bias) fill(l->bias, l->n_bias, 63, -1, 1);
        /* Fresh: a plain linear layer. */
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 2, (size_t[]){N, F}, y), 0);
        double err = 0;
        for (size_t n = 0; n < N; n++)
            for (size_t o = 0; o < Fout; o++) {
                double s = with_bias ? l->bias[o] : 0;
                for (size_t i = 0; i < F; i++)
                    s += x[n * F + i] * l->weight[o * F + i];
                err = fmax(err, fabs(s - y[n * Fout + o]));
            }
        ck_assert_double_eq_tol(err, 0, 1e-12);
        /* A running mean with D = I: with a bias, b' = b − Σ_k W[o, 2k:2k+2]·μ;
         * without one, the correction applies from b = 0. */
        l->running_mean[0] = 0.7;
        l->running_mean[1] = -0.4;
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 2, (size_t[]){N, F}, y), 0);
        err = 0;
        for (size_t n = 0; n < N; n++)
            for (size_t o = 0; o < Fout; o++) {
                double s = 0;
                for (size_t i = 0; i < F; i++)
                    s += x[n * F + i] * l->weight[o * F + i];
                if (with_bias) s += l->bias[o];
                for (size_t i = 0; i < F; i++)
                    s -= l->weight[o * F + i] * l->running_mean[i % 2];
                err = fmax(err, fabs(s - y[n * Fout + o]));
            }
        ck_assert_double_eq_tol(err, 0, 1e-12);
        ref_layer_free(l);
    }
}
END_TEST

START_TEST(linear_train_whitens)
{
    const size_t N = 500, F = 4;
    double *x = malloc(N * F * sizeof *x), *y = malloc(N * F * sizeof *y);
    correlated(x, N, F, 71);
    ndcl_linear_desc ld = ndcl_linear_desc_default((int)F, (int)F); /* block 512 -> 4 */
    ld.eps = 1e-7f;
    ld.n_iter = 30;
    ref_layer *l = ref_layer_linear(&ld);
    ck_assert_int_eq(l->block, 4);
    for (size_t i = 0; i < F; i++)
        l->weight[i * F + i] = 1.0;
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 2, (size_t[]){N, F}, y), 0);
    double mean[4], cov[16], xmean[4], xcov[16];
    column_cov(y, N, F, 0, F, mean, cov);
    ck_assert_double_eq_tol(dist_to_identity(cov, F), 0, 1e-4);
    for (size_t j = 0; j < F; j++)
        ck_assert_double_eq_tol(mean[j], 0, 1e-10);
    /* Running buffers after one step from (0, I): m·μ and (1−m)·I + m·D,
     * where D·(Σ + eps)·D ≈ I. */
    column_cov(x, N, F, 0, F, xmean, xcov);
    for (size_t j = 0; j < F; j++)
        ck_assert_double_eq_tol(l->running_mean[j], 0.1f * xmean[j], 1e-12);
    const double m = 0.1f; /* the momentum as the layer widens it */
    double D[16], DS[16], DSD[16];
    for (size_t i = 0; i < F * F; i++)
        D[i] = (l->running_deconv[i] - (1 - m) * (i % (F + 1) == 0)) / m;
    for (size_t i = 0; i < F; i++)
        xcov[i * F + i] += 1e-7f;
    for (size_t i = 0; i < F; i++)
        for (size_t j = 0; j < F; j++) {
            DS[i * F + j] = 0;
            for (size_t k = 0; k < F; k++)
                DS[i * F + j] += D[i * F + k] * xcov[k * F + j];
        }
    for (size_t i = 0; i < F; i++)
        for (size_t j = 0; j < F; j++) {
            DSD[i * F + j] = 0;
            for (size_t k = 0; k < F; k++)
                DSD[i * F + j] += DS[i * F + k] * D[k * F + j];
        }
    ck_assert_double_eq_tol(dist_to_identity(DSD, F), 0, 1e-6);
    free(x);
    free(y);
    ref_layer_free(l);
}
END_TEST

/* ------------------------------------------------------- channel layer */

/* The statistics the original takes, computed by decoding each kept column
 * of x1 (B rows of (c/B, N, H, W) values) back to an NCHW index. */
static void channel_stats(const double *x, size_t N, size_t C, size_t HW, size_t B,
                          size_t sub, double *mean1, double *mean2, double *var)
{
    size_t per = C / B, c = per * B, cols = per * N * HW, ns = 0;
    for (size_t r = 0; r < B; r++)
        mean1[r] = 0;
    for (size_t q = 0; q < cols; q += sub, ns++) {
        size_t k = q / (N * HW), n = (q / HW) % N, p = q % HW;
        for (size_t r = 0; r < B; r++)
            mean1[r] += x[(n * C + r * per + k) * HW + p];
    }
    for (size_t r = 0; r < B; r++)
        mean1[r] /= (double)ns;
    size_t rest = (C - c) * HW, cnt = 0;
    double s = 0, s2 = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t t = 0; t < rest; t += sub, cnt++)
            s += x[(n * C + c) * HW + t];
    *mean2 = s / (double)cnt;
    for (size_t n = 0; n < N; n++)
        for (size_t t = 0; t < rest; t += sub) {
            double v = x[(n * C + c) * HW + t] - *mean2;
            s2 += v * v;
        }
    *var = s2 / (double)(cnt - 1);
}

START_TEST(channel_leftover_and_first_batch)
{
    /* C = 5, B = 2: channels 0-3 whitened in 2 rows, channel 4 normalised.
     * 4x4 images with ss = 3: every 9th value feeds the statistics. */
    const size_t N = 3, C = 5, H = 4, W = 4, HW = H * W, n = N * C * HW;
    double x[3 * 5 * 16], x2[3 * 5 * 16], y[3 * 5 * 16];
    fill(x, n, 81, -1, 3);
    fill(x2, n, 82, 0, 1);
    ndcl_channel_desc chd = ndcl_channel_desc_default(2);
    ref_layer *l = ref_layer_channel(&chd);
    size_t ys[4];
    ck_assert_int_eq(ref_layer_out_shape(l, 4, (size_t[]){N, C, H, W}, ys), 0);
    ck_assert(ys[0] == N && ys[1] == C && ys[2] == H && ys[3] == W);
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 4, (size_t[]){N, C, H, W}, y), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert(isfinite(y[i]));
    ck_assert_int_eq(l->counter, 1);

    /* First batch: the running buffers start as copies of the statistics
     * (and the momentum step keeps them there). */
    double m1[2], m2, var, m1b[2], m2b, varb;
    channel_stats(x, N, C, HW, 2, 9, m1, &m2, &var);
    ck_assert_double_eq_tol(max_abs_diff(l->running_mean1, m1, 2), 0, 1e-12);
    ck_assert_double_eq_tol(l->running_mean2[0], m2, 1e-12);
    ck_assert_double_eq_tol(l->running_var[0], var, 1e-12);
    /* The leftover channel: (x − mean2)/√(var + eps) with batch values. */
    double err = 0;
    for (size_t s = 0; s < N; s++)
        for (size_t p = 0; p < HW; p++) {
            size_t i = (s * C + 4) * HW + p;
            err = fmax(err, fabs(y[i] - (x[i] - m2) / sqrt(var + 1e-2f)));
        }
    ck_assert_double_eq_tol(err, 0, 1e-12);

    /* Second batch: no copy, a momentum step. */
    const double m = 0.1f; /* the momentum as the layer widens it */
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x2, 4, (size_t[]){N, C, H, W}, y), 0);
    channel_stats(x2, N, C, HW, 2, 9, m1b, &m2b, &varb);
    for (size_t r = 0; r < 2; r++)
        ck_assert_double_eq_tol(l->running_mean1[r], (1 - m) * m1[r] + m * m1b[r], 1e-12);
    ck_assert_double_eq_tol(l->running_var[0], (1 - m) * var + m * varb, 1e-12);
    ck_assert_int_eq(l->counter, 2);

    /* Eval uses the running statistics and changes nothing. */
    double rm2 = l->running_mean2[0], rv = l->running_var[0];
    ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, x, 4, (size_t[]){N, C, H, W}, y), 0);
    ck_assert_int_eq(l->counter, 2);
    ck_assert_double_eq(l->running_mean2[0], rm2);
    err = 0;
    for (size_t s = 0; s < N; s++)
        for (size_t p = 0; p < HW; p++) {
            size_t i = (s * C + 4) * HW + p;
            err = fmax(err, fabs(y[i] - (x[i] - rm2) / sqrt(rv + 1e-2f)));
        }
    ck_assert_double_eq_tol(err, 0, 1e-12);
    ref_layer_free(l);
}
END_TEST

START_TEST(channel_eval_before_training_copies)
{
    /* num_batches_tracked = 0 copies the batch statistics into the running
     * buffers even in eval mode; the deconv stays the identity, so the
     * whitened part is just x − mean1. */
    const size_t N = 2, C = 5, H = 3, W = 3, HW = H * W, n = N * C * HW;
    double x[2 * 5 * 9], x2[2 * 5 * 9], y[2 * 5 * 9];
    fill(x, n, 91, -2, 2);
    fill(x2, n, 92, 1, 2);
    ndcl_channel_desc chd = ndcl_channel_desc_default(2);
    ref_layer *l = ref_layer_channel(&chd);
    for (int pass = 0; pass < 2; pass++) {
        const double *in = pass ? x2 : x;
        double m1[2], m2, var;
        ck_assert_int_eq(ref_layer_forward(l, NDCL_EVAL, in, 4, (size_t[]){N, C, H, W}, y),
                         0);
        channel_stats(in, N, C, HW, 2, 9, m1, &m2, &var);
        ck_assert_int_eq(l->counter, 0);
        ck_assert_double_eq_tol(max_abs_diff(l->running_mean1, m1, 2), 0, 1e-12);
        ck_assert_double_eq_tol(l->running_mean2[0], m2, 1e-12);
        ck_assert_double_eq_tol(l->running_var[0], var, 1e-12);
        ck_assert_double_eq(dist_to_identity(l->running_deconv, 2), 0);
        double err = 0;
        for (size_t s = 0; s < N; s++)
            for (size_t ch = 0; ch < 4; ch++)
                for (size_t p = 0; p < HW; p++) {
                    size_t i = (s * C + ch) * HW + p;
                    err = fmax(err, fabs(y[i] - (in[i] - m1[ch / 2])));
                }
        ck_assert_double_eq_tol(err, 0, 1e-12);
    }
    ref_layer_free(l);
}
END_TEST

START_TEST(channel_covariance_is_uncentred)
{
    /* One variable: D = (E[x²] + eps)^-1/2 exactly (the scaled matrix is 1),
     * so y = (x − mean)/√(E[x²] + eps), not the variance. (N, 1) input. */
    const size_t N = 50;
    double x[50], y[50], mean = 0, sq = 0;
    fill(x, N, 101, 1, 3);
    for (size_t i = 0; i < N; i++) {
        mean += x[i] / (double)N;
        sq += x[i] * x[i] / (double)N;
    }
    ndcl_channel_desc chd = ndcl_channel_desc_default(1);
    ref_layer *l = ref_layer_channel(&chd);
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 2, (size_t[]){N, 1}, y), 0);
    double err = 0;
    for (size_t i = 0; i < N; i++)
        err = fmax(err, fabs(y[i] - (x[i] - mean) / sqrt(sq + 1e-2f)));
    ck_assert_double_eq_tol(err, 0, 1e-12);
    ref_layer_free(l);
}
END_TEST

START_TEST(channel_2d_whitens_centred_data)
{
    /* (N, C) input: H = W = 1 < ss, so every sample counts. With columns of
     * zero mean the uncentred covariance is the covariance, and the output
     * is white. */
    const size_t N = 400, C = 3;
    double *x = malloc(N * C * sizeof *x), *y = malloc(N * C * sizeof *y);
    double mean[3], cov[9];
    correlated(x, N, C, 111);
    column_cov(x, N, C, 0, C, mean, cov);
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < C; j++)
            x[i * C + j] -= mean[j];
    ndcl_channel_desc chd = ndcl_channel_desc_default((int)C);
    chd.eps = 1e-7f;
    chd.n_iter = 30;
    ref_layer *l = ref_layer_channel(&chd);
    ck_assert_int_eq(ref_layer_forward(l, NDCL_TRAIN, x, 2, (size_t[]){N, C}, y), 0);
    column_cov(y, N, C, 0, C, mean, cov);
    ck_assert_double_eq_tol(dist_to_identity(cov, C), 0, 1e-4);
    free(x);
    free(y);
    ref_layer_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ref");
    TCase *tc = tcase_create("ref");
    tcase_add_test(tc, conv2d_by_hand);
    tcase_add_test(tc, conv2d_general_matches_padded_form);
    tcase_add_test(tc, parameter_sizes_and_init);
    tcase_add_test(tc, output_shapes);
    tcase_add_test(tc, conv_eval_fresh_is_plain_conv);
    tcase_add_test(tc, conv_eval_fold_closed_form);
    tcase_add_test(tc, conv_train_running_mean);
    tcase_add_test(tc, conv_freeze_counter);
    tcase_add_test(tc, conv_train_whitens);
    tcase_add_test(tc, linear_eval_fold);
    tcase_add_test(tc, linear_train_whitens);
    tcase_add_test(tc, channel_leftover_and_first_batch);
    tcase_add_test(tc, channel_eval_before_training_copies);
    tcase_add_test(tc, channel_covariance_is_uncentred);
    tcase_add_test(tc, channel_2d_whitens_centred_data);
    suite_add_tcase(s, tc);
    return test_run(s);
}
