/* self_test.c - ndcl_self_test: the public calls and the layers on small
 * random problems against the double-precision host reference (ref.h). */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndcl.h"
#include "ref.h"
#include "runtime/runtime.h"

/* xorshift32, so that a failing check reproduces on any platform. */
static double rand01(unsigned *state)
{
    unsigned x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (x >> 8) / 16777216.0;
}

/* Fills f (and d with the same values, when not NULL) uniformly in [lo, hi):
 * device and reference must see identical inputs, so the float values are
 * drawn first and widened. */
static void fill(float *f, double *d, size_t n, unsigned *state, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)(lo + (hi - lo) * rand01(state));
        if (d) d[i] = f[i];
    }
}

/* max |a - b| / max |b|; NaN counts as the worst error. */
static double rel_err(const float *a, const double *b, size_t n)
{
    double scale = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(b[i]));
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= err)) err = e;
    }
    if (isnan(err)) return INFINITY;
    return scale > 0 ? err / scale : err;
}

/* ------------------------------------------------------------ checks */

/* What one check reports: its relative error, or why it could not run. */
typedef struct check_run {
    ndcl_context *ctx;
    unsigned seed;
    double err;
    ndcl_status status; /* of the failure that stopped the check */
    char msg[1024];
} check_run;

/* A check returns 0 when it measured r->err, -1 with r->msg set otherwise. */
typedef int (*check_fn)(check_run *r, const void *arg);

typedef struct check {
    const char *name;
    check_fn fn;
    double tolerance;
    const void *arg;
} check;

static int fail_msg(check_run *r, ndcl_status status, const char *fmt, ...)
{
    r->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Records a failed library call as "function: status: detail", taken from
 * the context right away, before cleanup calls can replace it. */
static int fail_call(check_run *r, const char *expr, ndcl_status s)
{
    int len = (int)strcspn(expr, "(");
    const char *e = ndcl_context_last_error(r->ctx);
    return fail_msg(r, s, "%.*s: %s%s%s", len, expr, ndcl_status_string(s), *e ? ": " : "",
                    e);
}

#define TRY(expr)                                                                          \
    do {                                                                                   \
        ndcl_status try_s_ = (expr);                                                       \
        if (try_s_ != NDCL_SUCCESS) {                                                      \
            rc = fail_call(r, #expr, try_s_);                                              \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

#define NEED(ptr)                                                                          \
    do {                                                                                   \
        if (!(ptr)) {                                                                      \
            rc = fail_msg(r, NDCL_ERR_OUT_OF_MEMORY, "out of host memory (" #ptr ")");     \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

static size_t shape_count(int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* A device tensor holding data. */
static ndcl_status upload(ndcl_context *ctx, int ndim, const size_t *shape,
                          const float *data, ndcl_tensor **out)
{
    ndcl_tensor *t = NULL;
    ndcl_status s = ndcl_tensor_create(ctx, ndim, shape, &t);
    if (s == NDCL_SUCCESS) s = ndcl_tensor_write(t, data, shape_count(ndim, shape));
    if (s != NDCL_SUCCESS) {
        ndcl_tensor_destroy(t);
        return s;
    }
    *out = t;
    return NDCL_SUCCESS;
}

/* Reads t and folds its error against ref (count values) into *err; a
 * tensor of the wrong size is a failure of its own. */
static int compare(check_run *r, const char *what, const ndcl_tensor *t, const double *ref,
                   size_t count, double *err)
{
    if (ndcl_tensor_count(t) != count)
        return fail_msg(r, NDCL_ERR_NUMERICAL, "%s has %zu elements, the reference %zu",
                        what, ndcl_tensor_count(t), count);
    float *h = malloc(count * sizeof *h);
    if (!h) return fail_msg(r, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    ndcl_status s = ndcl_tensor_read(t, h, count);
    if (s != NDCL_SUCCESS) {
        free(h);
        return fail_call(r, "ndcl_tensor_read", s);
    }
    double e = rel_err(h, ref, count);
    free(h);
    if (!(e <= *err)) *err = e;
    return 0;
}

/* gemm: every transpose combination, with alpha and beta not trivial. */
static int check_gemm(check_run *r, const void *arg)
{
    (void)arg;
    const size_t m = 17, k = 23, n = 19;
    int rc = 0;
    unsigned st = r->seed;
    float *fa = malloc(m * k * sizeof *fa), *fb = malloc(k * n * sizeof *fb);
    float *fc = malloc(m * n * sizeof *fc);
    double *da = malloc(m * k * sizeof *da), *db = malloc(k * n * sizeof *db);
    double *dc = malloc(m * n * sizeof *dc), *ref = malloc(m * n * sizeof *ref);
    ndcl_tensor *a = NULL, *b = NULL, *c = NULL;
    NEED(fa && fb && fc && da && db && dc && ref);
    r->err = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const float alpha = 0.75f, beta = -0.5f;
            fill(fa, da, m * k, &st, -1, 1);
            fill(fb, db, k * n, &st, -1, 1);
            fill(fc, dc, m * n, &st, -1, 1);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++) {
                    double s = 0;
                    for (size_t p = 0; p < k; p++)
                        s += (ta ? da[p * m + i] : da[i * k + p]) *
                             (tb ? db[j * k + p] : db[p * n + j]);
                    ref[i * n + j] = alpha * s + beta * dc[i * n + j];
                }
            size_t sa[2] = {ta ? k : m, ta ? m : k}, sb[2] = {tb ? n : k, tb ? k : n};
            size_t sc[2] = {m, n};
            TRY(upload(r->ctx, 2, sa, fa, &a));
            TRY(upload(r->ctx, 2, sb, fb, &b));
            TRY(upload(r->ctx, 2, sc, fc, &c));
            TRY(ndcl_gemm(r->ctx, ta, tb, alpha, a, b, beta, c));
            if ((rc = compare(r, "C", c, ref, m * n, &r->err)) != 0) goto done;
            ndcl_tensor_destroy(a);
            ndcl_tensor_destroy(b);
            ndcl_tensor_destroy(c);
            a = b = c = NULL;
        }
done:
    ndcl_tensor_destroy(a);
    ndcl_tensor_destroy(b);
    ndcl_tensor_destroy(c);
    free(fa), free(fb), free(fc), free(da), free(db), free(dc), free(ref);
    return rc;
}

/* patches: a 3x3 kernel with interleaved blocks, a 1x1 kernel and a grouped
 * dilated one, the three paths of the patch matrix (see ndcl_patches). */
static int check_patches(check_run *r, const void *arg)
{
    (void)arg;
    static const struct {
        size_t n, c, h, w;
        ndcl_patch_desc d;
    } cases[] = {
        {2, 8, 10, 10, {3, 3, 1, 1, 3, 1, 4}},
        {2, 8, 7, 9, {1, 1, 0, 1, 2, 1, 4}},
        {2, 6, 11, 10, {3, 3, 2, 2, 2, 2, 64}},
    };
    int rc = 0;
    r->err = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ndcl_patch_desc *d = &cases[i].d;
        size_t shape[4] = {cases[i].n, cases[i].c, cases[i].h, cases[i].w};
        size_t count = shape_count(4, shape), rows = 0, cols = 0;
        unsigned st = r->seed + (unsigned)i;
        float *fx = malloc(count * sizeof *fx);
        double *dx = malloc(count * sizeof *dx), *ref = NULL;
        ndcl_tensor *x = NULL, *P = NULL;
        NEED(fx && dx);
        fill(fx, dx, count, &st, -1, 1);
        int B = ref_block_conv((int)shape[1], d->block, d->groups);
        ref = ref_patches(dx, shape[0], shape[1], shape[2], shape[3], (size_t)d->kernel_h,
                          (size_t)d->kernel_w, (size_t)d->padding, (size_t)d->dilation,
                          (size_t)d->stride, (size_t)d->groups, (size_t)B, &rows, &cols);
        NEED(ref);
        TRY(upload(r->ctx, 4, shape, fx, &x));
        TRY(ndcl_patches(r->ctx, x, d, &P));
        if (ndcl_tensor_ndim(P) != 2 || ndcl_tensor_dim(P, 0) != rows ||
            ndcl_tensor_dim(P, 1) != cols) {
            rc = fail_msg(r, NDCL_ERR_NUMERICAL,
                          "case %zu: patch matrix is %zux%zu, the reference %zux%zu", i,
                          ndcl_tensor_dim(P, 0), ndcl_tensor_dim(P, 1), rows, cols);
            goto done;
        }
        rc = compare(r, "patches", P, ref, rows * cols, &r->err);
    done:
        ndcl_tensor_destroy(x);
        ndcl_tensor_destroy(P);
        free(fx), free(dx), free(ref);
        if (rc) return rc;
    }
    return 0;
}

/* covariance: centred with one group, uncentred with three (the channel
 * layer's form); data offset from zero so that centring matters. */
static int check_covariance(check_run *r, const void *arg)
{
    (void)arg;
    static const struct {
        size_t rows, groups, n;
        float eps;
        int centered;
    } cases[] = {{150, 1, 12, 1e-3f, 1}, {120, 3, 5, 1e-2f, 0}};
    int rc = 0;
    r->err = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const size_t M = cases[i].rows, G = cases[i].groups, n = cases[i].n;
        size_t shape[2] = {M, G * n};
        unsigned st = r->seed + (unsigned)i;
        float *fx = malloc(M * G * n * sizeof *fx);
        double *dx = malloc(M * G * n * sizeof *dx), *mean = malloc(G * n * sizeof *mean);
        double *cov = malloc(G * n * n * sizeof *cov);
        ndcl_tensor *X = NULL, *tm = NULL, *tc = NULL;
        NEED(fx && dx && mean && cov);
        fill(fx, dx, M * G * n, &st, -0.5, 1.5);
        ref_mean_cov(dx, M, G, n, cases[i].eps, cases[i].centered, mean, cov);
        TRY(upload(r->ctx, 2, shape, fx, &X));
        TRY(ndcl_covariance(r->ctx, X, (int)G, cases[i].eps, cases[i].centered, &tm, &tc));
        if ((rc = compare(r, "mean", tm, mean, G * n, &r->err)) == 0)
            rc = compare(r, "cov", tc, cov, G * n * n, &r->err);
    done:
        ndcl_tensor_destroy(X);
        ndcl_tensor_destroy(tm);
        ndcl_tensor_destroy(tc);
        free(fx), free(dx), free(mean), free(cov);
        if (rc) return rc;
    }
    return 0;
}

/* An SPD test matrix batch: the covariances of random data plus eps·I,
 * rounded to float (the device's input) and widened back. */
static int spd_batch(check_run *r, size_t batch, size_t n, unsigned *st, float *fa,
                     double *da)
{
    const size_t M = 4 * n;
    double *x = malloc(M * batch * n * sizeof *x), *mean = malloc(batch * n * sizeof *mean);
    if (!x || !mean) {
        free(x), free(mean);
        return fail_msg(r, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    for (size_t i = 0; i < M * batch * n; i++)
        x[i] = rand01(st) * 2 - 1;
    ref_mean_cov(x, M, batch, n, 1e-2, 1, mean, da);
    for (size_t i = 0; i < batch * n * n; i++) {
        fa[i] = (float)da[i];
        da[i] = fa[i];
    }
    free(x), free(mean);
    return 0;
}

/* isqrt: one matrix and a batch of two, 5 Newton-Schulz iterations. */
static int check_isqrt(check_run *r, const void *arg)
{
    (void)arg;
    static const struct {
        size_t batch, n;
    } cases[] = {{1, 16}, {2, 10}};
    int rc = 0;
    r->err = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const size_t G = cases[i].batch, n = cases[i].n, count = G * n * n;
        const int n_iter = 5;
        unsigned st = r->seed + (unsigned)i;
        float *fa = malloc(count * sizeof *fa);
        double *da = malloc(count * sizeof *da), *ref = malloc(count * sizeof *ref);
        ndcl_tensor *A = NULL, *D = NULL;
        NEED(fa && da && ref);
        if ((rc = spd_batch(r, G, n, &st, fa, da)) != 0) goto done;
        ref_isqrt(da, G, n, n_iter, ref);
        size_t shape[3] = {G, n, n};
        if (G == 1)
            TRY(upload(r->ctx, 2, shape + 1, fa, &A));
        else
            TRY(upload(r->ctx, 3, shape, fa, &A));
        TRY(ndcl_isqrt(r->ctx, A, n_iter, &D));
        rc = compare(r, "D", D, ref, count, &r->err);
    done:
        ndcl_tensor_destroy(A);
        ndcl_tensor_destroy(D);
        free(fa), free(da), free(ref);
        if (rc) return rc;
    }
    return 0;
}

/* whiten: mean and whitening matrix of a data matrix. */
static int check_whiten(check_run *r, const void *arg)
{
    (void)arg;
    const size_t M = 200, n = 12;
    const float eps = 1e-3f;
    const int n_iter = 5;
    int rc = 0;
    unsigned st = r->seed;
    float *fx = malloc(M * n * sizeof *fx);
    double *dx = malloc(M * n * sizeof *dx), *mean = malloc(n * sizeof *mean);
    double *cov = malloc(n * n * sizeof *cov), *D = malloc(n * n * sizeof *D);
    ndcl_tensor *X = NULL, *tm = NULL, *tD = NULL;
    NEED(fx && dx && mean && cov && D);
    fill(fx, dx, M * n, &st, -0.5, 1.5);
    ref_mean_cov(dx, M, 1, n, eps, 1, mean, cov);
    ref_isqrt(cov, 1, n, n_iter, D);
    size_t shape[2] = {M, n};
    TRY(upload(r->ctx, 2, shape, fx, &X));
    TRY(ndcl_whiten(r->ctx, X, eps, n_iter, &tm, &tD));
    r->err = 0;
    if ((rc = compare(r, "mean", tm, mean, n, &r->err)) == 0)
        rc = compare(r, "D", tD, D, n * n, &r->err);
done:
    ndcl_tensor_destroy(X);
    ndcl_tensor_destroy(tm);
    ndcl_tensor_destroy(tD);
    free(fx), free(dx), free(mean), free(cov), free(D);
    return rc;
}

/* A layer check: the kind, its descriptor, the input shape and the mode
 * compared. Both modes first run two training steps (so that the running
 * statistics are exercised); train compares their outputs, eval then
 * compares one evaluation forward. */
typedef struct layer_case {
    ndcl_layer_kind kind;
    ndcl_conv2d_desc conv;
    ndcl_linear_desc linear;
    ndcl_channel_desc channel;
    int ndim;
    size_t shape[4];
    ndcl_mode mode;
} layer_case;

/* Gives the layer (device and reference) the same random parameter. */
static int set_random_param(check_run *r, ndcl_layer *L, double *ref, size_t n,
                            const char *name, unsigned *st)
{
    float *f = malloc(n * sizeof *f);
    if (!f) return fail_msg(r, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    fill(f, ref, n, st, -0.5, 0.5);
    ndcl_status s = ndcl_layer_set_param(L, name, f, n);
    free(f);
    if (s != NDCL_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "ndcl_layer_set_param \"%s\"", name);
        return fail_call(r, what, s);
    }
    return 0;
}

/* The case's layer on the device and in the reference, with the same
 * random weight and bias. On failure *L and *R hold what was made (the
 * caller frees them). */
static int make_layers(check_run *r, const layer_case *lc, unsigned *st, ndcl_layer **L,
                       ref_layer **R)
{
    int rc = 0;
    switch (lc->kind) {
    case NDCL_LAYER_CONV2D:
        TRY(ndcl_conv2d_create(r->ctx, &lc->conv, L));
        *R = ref_layer_conv2d(&lc->conv);
        break;
    case NDCL_LAYER_LINEAR:
        TRY(ndcl_linear_create(r->ctx, &lc->linear, L));
        *R = ref_layer_linear(&lc->linear);
        break;
    default:
        TRY(ndcl_channel_create(r->ctx, &lc->channel, L));
        *R = ref_layer_channel(&lc->channel);
        break;
    }
    NEED(*R);
    if ((*R)->weight &&
        (rc = set_random_param(r, *L, (*R)->weight, (*R)->n_weight, "weight", st)))
        goto done;
    if ((*R)->bias) rc = set_random_param(r, *L, (*R)->bias, (*R)->n_bias, "bias", st);
done:
    return rc;
}

static int check_layer(check_run *r, const void *arg)
{
    const layer_case *lc = arg;
    int rc = 0;
    unsigned st = r->seed;
    ndcl_layer *L = NULL;
    ref_layer *R = NULL;
    ndcl_tensor *x = NULL, *y = NULL;
    float *fx = NULL;
    double *dx = NULL, *dy = NULL;
    size_t yshape[4] = {0};
    const size_t xcount = shape_count(lc->ndim, lc->shape);

    if ((rc = make_layers(r, lc, &st, &L, &R))) goto done;

    NEED(ref_layer_out_shape(R, lc->ndim, lc->shape, yshape) == 0);
    const size_t ycount = shape_count(lc->ndim, yshape);
    fx = malloc(xcount * sizeof *fx);
    dx = malloc(xcount * sizeof *dx);
    dy = malloc(ycount * sizeof *dy);
    NEED(fx && dx && dy);
    TRY(ndcl_tensor_create(r->ctx, lc->ndim, lc->shape, &x));

    r->err = 0;
    const int steps = lc->mode == NDCL_TRAIN ? 2 : 3;
    for (int step = 0; step < steps; step++) {
        const ndcl_mode mode = step < 2 ? NDCL_TRAIN : NDCL_EVAL;
        fill(fx, dx, xcount, &st, -0.5, 1.5);
        TRY(ndcl_tensor_write(x, fx, xcount));
        TRY(ndcl_layer_forward(L, mode, x, &y));
        NEED(ref_layer_forward(R, mode, dx, lc->ndim, lc->shape, dy) == 0);
        if (mode == lc->mode && (rc = compare(r, "y", y, dy, ycount, &r->err))) goto done;
    }
    /* A non-finite statistic is reported here, not by the forward. */
    TRY(ndcl_finish(r->ctx));
done:
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_layer_destroy(L);
    ref_layer_free(R);
    free(fx), free(dx), free(dy);
    return rc;
}

static ndcl_conv2d_desc conv_desc(int cin, int cout, int k, int padding, int groups,
                                  int block)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(cin, cout, k);
    d.padding = padding;
    d.groups = groups;
    d.block = block;
    return d;
}

/* Every layer check's case, built per call (no mutable static state:
 * separate contexts may run the self-test from different threads). */
typedef struct layer_cases {
    /* Shapes small enough for a CPU device yet with more sampled rows than
     * features, several blocks and (channel) leftover channels. */
    layer_case conv_train, conv_eval, conv_g2_train, conv_g2_eval, linear_train,
        linear_eval, channel_train, channel_eval;
    /* Small shapes: central differences cost two reference forwards per
     * input and parameter value. */
    layer_case conv_backward, linear_backward, channel_backward;
} layer_cases;

static void init_layer_cases(layer_cases *lc)
{
    layer_case c = {0};
    c.kind = NDCL_LAYER_CONV2D;
    c.conv = conv_desc(8, 6, 3, 1, 1, 4);
    c.ndim = 4;
    c.shape[0] = 4, c.shape[1] = 8, c.shape[2] = 12, c.shape[3] = 12;
    c.mode = NDCL_TRAIN;
    lc->conv_train = c;
    c.mode = NDCL_EVAL;
    lc->conv_eval = c;

    c.conv = conv_desc(8, 6, 3, 1, 2, 64);
    c.mode = NDCL_TRAIN;
    lc->conv_g2_train = c;
    c.mode = NDCL_EVAL;
    lc->conv_g2_eval = c;

    layer_case l = {0};
    l.kind = NDCL_LAYER_LINEAR;
    l.linear = ndcl_linear_desc_default(16, 5);
    l.linear.block = 8;
    l.ndim = 2;
    l.shape[0] = 64, l.shape[1] = 16;
    l.mode = NDCL_TRAIN;
    lc->linear_train = l;
    l.mode = NDCL_EVAL;
    lc->linear_eval = l;

    layer_case h = {0};
    h.kind = NDCL_LAYER_CHANNEL;
    h.channel = ndcl_channel_desc_default(3);
    h.ndim = 4;
    h.shape[0] = 4, h.shape[1] = 8, h.shape[2] = 6, h.shape[3] = 6;
    h.mode = NDCL_TRAIN;
    lc->channel_train = h;
    h.mode = NDCL_EVAL;
    lc->channel_eval = h;
}

#define TOL_LAYER 1e-4

/* A backward check: one training step of the case's layer (from its
 * initial state), then its backward pass on a random dy, against central
 * differences of the reference forward (dx, dweight, dbias). */
static int check_backward(check_run *r, const void *arg)
{
    const layer_case *lc = arg;
    int rc = 0;
    unsigned st = r->seed;
    ndcl_layer *L = NULL;
    ref_layer *R = NULL;
    ndcl_tensor *x = NULL, *y = NULL, *dy = NULL, *gx = NULL, *gw = NULL, *gb = NULL;
    float *fx = NULL, *fdy = NULL;
    double *dx = NULL, *ddy = NULL, *rx = NULL, *rw = NULL, *rb = NULL;
    size_t yshape[4] = {0};
    const size_t xcount = shape_count(lc->ndim, lc->shape);

    if ((rc = make_layers(r, lc, &st, &L, &R))) goto done;
    NEED(ref_layer_out_shape(R, lc->ndim, lc->shape, yshape) == 0);
    const size_t ycount = shape_count(lc->ndim, yshape);
    fx = malloc(xcount * sizeof *fx);
    dx = malloc(xcount * sizeof *dx);
    fdy = malloc(ycount * sizeof *fdy);
    ddy = malloc(ycount * sizeof *ddy);
    rx = malloc(xcount * sizeof *rx);
    rw = malloc((R->n_weight ? R->n_weight : 1) * sizeof *rw);
    rb = malloc((R->n_bias ? R->n_bias : 1) * sizeof *rb);
    NEED(fx && dx && fdy && ddy && rx && rw && rb);
    fill(fx, dx, xcount, &st, -0.5, 1.5);
    fill(fdy, ddy, ycount, &st, -1, 1);
    NEED(ref_layer_backward_fd(R, lc->mode, dx, lc->ndim, lc->shape, ddy, 1e-4, rx,
                               R->n_weight ? rw : NULL, R->n_bias ? rb : NULL) == 0);
    TRY(upload(r->ctx, lc->ndim, lc->shape, fx, &x));
    TRY(upload(r->ctx, lc->ndim, yshape, fdy, &dy));
    TRY(ndcl_layer_forward(L, lc->mode, x, &y));
    TRY(ndcl_layer_backward(L, dy, &gx, R->weight ? &gw : NULL, R->bias ? &gb : NULL));
    TRY(ndcl_finish(r->ctx));
    r->err = 0;
    rc = compare(r, "dx", gx, rx, xcount, &r->err);
    if (rc == 0 && R->weight) rc = compare(r, "dweight", gw, rw, R->n_weight, &r->err);
    if (rc == 0 && R->bias) rc = compare(r, "dbias", gb, rb, R->n_bias, &r->err);
done:
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(dy);
    ndcl_tensor_destroy(gx);
    ndcl_tensor_destroy(gw);
    ndcl_tensor_destroy(gb);
    ndcl_layer_destroy(L);
    ref_layer_free(R);
    free(fx), free(dx), free(fdy), free(ddy), free(rx), free(rw), free(rb);
    return rc;
}

static void init_backward_cases(layer_cases *lc)
{
    layer_case c = {0};
    c.kind = NDCL_LAYER_CONV2D;
    c.conv = conv_desc(8, 4, 3, 1, 1, 4);
    c.ndim = 4;
    c.shape[0] = 2, c.shape[1] = 8, c.shape[2] = 6, c.shape[3] = 6;
    c.mode = NDCL_TRAIN;
    lc->conv_backward = c;

    layer_case l = {0};
    l.kind = NDCL_LAYER_LINEAR;
    l.linear = ndcl_linear_desc_default(12, 5);
    l.linear.block = 4;
    l.ndim = 2;
    l.shape[0] = 16, l.shape[1] = 12;
    l.mode = NDCL_TRAIN;
    lc->linear_backward = l;

    layer_case h = {0};
    h.kind = NDCL_LAYER_CHANNEL;
    h.channel = ndcl_channel_desc_default(4);
    h.ndim = 4;
    h.shape[0] = 3, h.shape[1] = 10, h.shape[2] = 6, h.shape[3] = 6;
    h.mode = NDCL_TRAIN;
    lc->channel_backward = h;
}

#define TOL_BACKWARD 1e-3

/* The self-test, in order (as ndcl.h lists it). A new check is one line
 * here plus its function, and a line in ndcl.h. */
static size_t make_checks(const layer_cases *lc, check *out)
{
    const check all[] = {
        {"gemm", check_gemm, 1e-5, NULL},
        {"patches", check_patches, 1e-6, NULL},
        {"covariance", check_covariance, 1e-5, NULL},
        {"isqrt", check_isqrt, 1e-4, NULL},
        {"whiten", check_whiten, 1e-4, NULL},
        {"conv2d train", check_layer, TOL_LAYER, &lc->conv_train},
        {"conv2d eval", check_layer, TOL_LAYER, &lc->conv_eval},
        {"conv2d groups=2 train", check_layer, TOL_LAYER, &lc->conv_g2_train},
        {"conv2d groups=2 eval", check_layer, TOL_LAYER, &lc->conv_g2_eval},
        {"linear train", check_layer, TOL_LAYER, &lc->linear_train},
        {"linear eval", check_layer, TOL_LAYER, &lc->linear_eval},
        {"channel train", check_layer, TOL_LAYER, &lc->channel_train},
        {"channel eval", check_layer, TOL_LAYER, &lc->channel_eval},
        {"conv2d backward", check_backward, TOL_BACKWARD, &lc->conv_backward},
        {"linear backward", check_backward, TOL_BACKWARD, &lc->linear_backward},
        {"channel backward", check_backward, TOL_BACKWARD, &lc->channel_backward},
    };
    const size_t n = sizeof all / sizeof all[0];
    memcpy(out, all, sizeof all);
    return n;
}

/* ------------------------------------------------------------ the call */

ndcl_status ndcl_self_test(ndcl_context *ctx, ndcl_self_test_report *out,
                           ndcl_self_test_fn on_check, void *user)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    memset(out, 0, sizeof *out);
    ndcl_status s = ndcl_context_build(ctx, &out->build);
    if (s != NDCL_SUCCESS) return s; /* the build's message stays */

    layer_cases lc;
    memset(&lc, 0, sizeof lc);
    init_layer_cases(&lc);
    init_backward_cases(&lc);
    check checks[NDCL_SELF_TEST_MAX_CHECKS];
    const size_t n = make_checks(&lc, checks);

    ndcl_status first = NDCL_SUCCESS; /* of the first check that failed */
    const char *first_name = NULL, *first_msg = "";
    double first_err = 0, first_tol = 0;
    for (size_t i = 0; i < n; i++) {
        check_run r;
        memset(&r, 0, sizeof r);
        r.ctx = ctx;
        r.seed = 12345u + 7919u * (unsigned)i;
        r.err = NAN;
        const int rc = checks[i].fn(&r, checks[i].arg);
        ndcl_self_test_check *c = &out->checks[i];
        c->name = checks[i].name;
        c->tolerance = checks[i].tolerance;
        c->status = rc == 0 ? NDCL_SUCCESS : r.status;
        c->error = rc == 0 ? r.err : NAN;
        c->passed = rc == 0 && r.err <= checks[i].tolerance;
        if (rc != 0) snprintf(c->message, sizeof c->message, "%s", r.msg);
        out->count = i + 1;
        if (!c->passed) {
            out->failed++;
            if (!first_name || (first == NDCL_ERR_NUMERICAL && c->status != NDCL_SUCCESS)) {
                first = c->status != NDCL_SUCCESS ? c->status : NDCL_ERR_NUMERICAL;
                first_name = c->name;
                first_msg = c->message;
                first_err = c->error;
                first_tol = c->tolerance;
            }
        }
        if (on_check) on_check(c, user);
    }
    if (!first_name) {
        ndcl_clear_error(ctx);
        return NDCL_SUCCESS;
    }
    if (first == NDCL_ERR_NUMERICAL)
        return ndcl_fail(
            ctx, first,
            "self-test: %zu of %zu checks failed; \"%s\": error %.2e, tolerance %.0e",
            out->failed, n, first_name, first_err, first_tol);
    return ndcl_fail(ctx, first, "self-test: %zu of %zu checks failed; \"%s\": %s",
                     out->failed, n, first_name, first_msg);
}
