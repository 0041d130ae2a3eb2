/* test_stats_every.c - amortised statistics (NDCL_LAYER_STATS_EVERY): a
 * conv2d or linear layer with K > 1 computes the batch's statistics on
 * exactly every K-th training step, and in between trains on the last
 * ones as an evaluation forward with those statistics as running
 * statistics would (output and gradients), leaving its running statistics
 * alone; K = 1 is the default arithmetic; bad values and kinds are refused. */
#include "harness.h"

/* One layer kind under test: its input shape and how to make a layer. */
typedef struct kind {
    const char *name;
    int ndim;
    size_t xshape[4];
    ndcl_layer *(*make)(float momentum);
} kind;

static ndcl_layer *with_weights(ndcl_layer *l)
{
    ndcl_context *ctx = test_ctx();
    const char *names[] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        size_t n = test_param_count(l, names[i]);
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, 11 + (unsigned)i, -0.5f, 0.5f);
        TEST_OK(ctx, ndcl_layer_set_param(l, names[i], v, n));
        free(v);
    }
    return l;
}

static ndcl_layer *make_conv(float momentum)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(3, 4, 3);
    d.padding = 1;
    d.block = 3;
    d.sampling_stride = 1;
    d.momentum = momentum;
    ndcl_layer *l = NULL;
    TEST_OK(test_ctx(), ndcl_conv2d_create(test_ctx(), &d, &l));
    return with_weights(l);
}

static ndcl_layer *make_linear(float momentum)
{
    ndcl_linear_desc d = ndcl_linear_desc_default(12, 5);
    d.block = 4;
    d.momentum = momentum;
    ndcl_layer *l = NULL;
    TEST_OK(test_ctx(), ndcl_linear_create(test_ctx(), &d, &l));
    return with_weights(l);
}

static const kind kinds[] = {{"conv2d", 4, {4, 3, 6, 6}, make_conv},
                             {"linear", 2, {8, 12, 0, 0}, make_linear}};

static size_t count_of(const kind *k)
{
    size_t n = 1;
    for (int i = 0; i < k->ndim; i++)
        n *= k->xshape[i];
    return n;
}

/* The layer's running statistics, concatenated, in a malloc'd array. */
static float *running(const ndcl_layer *l, size_t *n)
{
    size_t nm = test_param_count(l, "running_mean"),
           nd = test_param_count(l, "running_deconv");
    float *v = malloc((nm + nd) * sizeof *v);
    TEST_OK(test_ctx(), ndcl_layer_get_param(l, "running_mean", v, nm));
    TEST_OK(test_ctx(), ndcl_layer_get_param(l, "running_deconv", v + nm, nd));
    *n = nm + nd;
    return v;
}

/* Copies src's running statistics into dst. */
static void copy_running(ndcl_layer *dst, const ndcl_layer *src)
{
    const char *names[] = {"running_mean", "running_deconv"};
    for (int i = 0; i < 2; i++) {
        size_t n = test_param_count(src, names[i]);
        float *v = malloc(n * sizeof *v);
        TEST_OK(test_ctx(), ndcl_layer_get_param(src, names[i], v, n));
        TEST_OK(test_ctx(), ndcl_layer_set_param(dst, names[i], v, n));
        free(v);
    }
}

/* One forward of l on x in mode, then the backward of dy = y (any fixed
 * dy will do); the four results in host arrays (y, dx, dW, db). */
typedef struct step {
    float *y, *dx, *dw, *db;
    size_t ny, nx, nw, nb;
} step;

static step run_step(ndcl_layer *l, ndcl_mode mode, ndcl_tensor *x)
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *y = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, x, &y));
    TEST_OK(ctx, ndcl_layer_backward(l, y, &dx, &dw, &db));
    step s = {test_tensor_to_host(y),  test_tensor_to_host(dx), test_tensor_to_host(dw),
              test_tensor_to_host(db), ndcl_tensor_count(y),    ndcl_tensor_count(dx),
              ndcl_tensor_count(dw),   ndcl_tensor_count(db)};
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(dx);
    ndcl_tensor_destroy(dw);
    ndcl_tensor_destroy(db);
    return s;
}

static void step_free(step *s)
{
    free(s->y);
    free(s->dx);
    free(s->dw);
    free(s->db);
}

static void expect_same(const step *a, const step *b, double tol, const char *what, int t)
{
    ck_assert_uint_eq(a->ny, b->ny);
    double e[4] = {test_rel_err_ff(a->y, b->y, a->ny, 1e-6),
                   test_rel_err_ff(a->dx, b->dx, a->nx, 1e-6),
                   test_rel_err_ff(a->dw, b->dw, a->nw, 1e-6),
                   test_rel_err_ff(a->db, b->db, a->nb, 1e-6)};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(e[i] <= tol, "%s, step %d: %s differs by %g (relative)", what, t,
                      (const char *[]){"y", "dx", "dW", "db"}[i], e[i]);
}

static ndcl_tensor *batch(const kind *k, unsigned seed)
{
    size_t n = count_of(k);
    float *h = malloc(n * sizeof *h);
    test_fill_uniform(h, n, seed, -1.0f, 2.0f);
    ndcl_tensor *x = test_tensor_from(test_ctx(), k->ndim, k->xshape, h);
    free(h);
    return x;
}

/* K = 3 over seven steps: statistics on steps 0, 3 and 6; between them
 * the output and gradients of an evaluation forward whose running
 * statistics are the last statistics step's batch statistics (taken from
 * a twin with momentum 1, whose running statistics are its last batch's),
 * and running statistics unchanged. */
static void check_every_third(const kind *k)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *a = k->make(0.1f), *plain = k->make(0.1f), *twin = k->make(1.0f),
               *eval = k->make(0.1f);
    TEST_OK(ctx, ndcl_layer_set_option(a, NDCL_LAYER_STATS_EVERY, 3));
    int64_t v = 0;
    TEST_OK(ctx, ndcl_layer_get_option(a, NDCL_LAYER_STATS_EVERY, &v));
    ck_assert_int_eq(v, 3);
    for (int t = 0; t < 7; t++) {
        ndcl_tensor *x = batch(k, 100 + (unsigned)t);
        size_t n0, n1;
        float *before = running(a, &n0);
        step got = run_step(a, NDCL_TRAIN, x);
        float *after = running(a, &n1);
        if (t % 3 == 0) {
            /* A statistics step: the default arithmetic, running statistics
             * updated; plain (K = 1) follows the same statistics steps. */
            TEST_OK(ctx, ndcl_layer_set_param(plain, "running_mean", before,
                                              test_param_count(a, "running_mean")));
            TEST_OK(ctx, ndcl_layer_set_param(plain, "running_deconv",
                                              before + test_param_count(a, "running_mean"),
                                              test_param_count(a, "running_deconv")));
            step want = run_step(plain, NDCL_TRAIN, x);
            expect_same(&got, &want, 1e-6, k->name, t);
            float *p = running(plain, &n1);
            ck_assert_msg(test_rel_err_ff(after, p, n0, 1e-6) < 1e-6,
                          "%s, step %d: running statistics not updated as by K = 1",
                          k->name, t);
            free(p);
            ck_assert_msg(memcmp(before, after, n0 * sizeof *before) != 0,
                          "%s, step %d: a statistics step left the running statistics",
                          k->name, t);
            step_free(&want);
            /* The batch's statistics, for the steps that follow. */
            step s = run_step(twin, NDCL_TRAIN, x);
            step_free(&s);
            copy_running(eval, twin);
        } else {
            ck_assert_msg(memcmp(before, after, n0 * sizeof *before) == 0,
                          "%s, step %d: the running statistics changed between statistics "
                          "steps",
                          k->name, t);
            step want = run_step(eval, NDCL_EVAL, x);
            expect_same(&got, &want, 1e-5, k->name, t);
            step_free(&want);
        }
        if (!strcmp(k->name, "conv2d")) {
            int64_t c = 0;
            TEST_OK(ctx, ndcl_layer_get_counter(a, &c));
            ck_assert_int_eq(c, t + 1); /* every training step counts */
        }
        step_free(&got);
        free(before);
        free(after);
        ndcl_tensor_destroy(x);
    }
    ndcl_layer_destroy(a);
    ndcl_layer_destroy(plain);
    ndcl_layer_destroy(twin);
    ndcl_layer_destroy(eval);
}

START_TEST(conv_every_third_step)
{
    check_every_third(&kinds[0]);
}
END_TEST

START_TEST(linear_every_third_step)
{
    check_every_third(&kinds[1]);
}
END_TEST

/* K = 1, set explicitly, is the default arithmetic: the same numbers, bit
 * for bit, over a few steps. */
START_TEST(every_step_is_default)
{
    for (size_t i = 0; i < 2; i++) {
        const kind *k = &kinds[i];
        ndcl_layer *a = k->make(0.1f), *b = k->make(0.1f);
        TEST_OK(test_ctx(), ndcl_layer_set_option(a, NDCL_LAYER_STATS_EVERY, 1));
        for (int t = 0; t < 3; t++) {
            ndcl_tensor *x = batch(k, 7 + (unsigned)t);
            step s = run_step(a, NDCL_TRAIN, x), r = run_step(b, NDCL_TRAIN, x);
            ck_assert(memcmp(s.y, r.y, s.ny * sizeof *s.y) == 0);
            ck_assert(memcmp(s.dw, r.dw, s.nw * sizeof *s.dw) == 0);
            step_free(&s);
            step_free(&r);
            ndcl_tensor_destroy(x);
        }
        ndcl_layer_destroy(a);
        ndcl_layer_destroy(b);
    }
}
END_TEST

/* Setting the option or the counter restarts the cycle: the next training
 * step computes statistics. */
START_TEST(cycle_restarts)
{
    ndcl_context *ctx = test_ctx();
    const kind *k = &kinds[0];
    ndcl_layer *a = k->make(0.1f);
    TEST_OK(ctx, ndcl_layer_set_option(a, NDCL_LAYER_STATS_EVERY, 4));
    for (int t = 0; t < 3; t++) {
        ndcl_tensor *x = batch(k, 40 + (unsigned)t);
        size_t n;
        float *before = running(a, &n);
        if (t == 1) TEST_OK(ctx, ndcl_layer_set_counter(a, 0));
        if (t == 2) TEST_OK(ctx, ndcl_layer_set_option(a, NDCL_LAYER_STATS_EVERY, 4));
        step s = run_step(a, NDCL_TRAIN, x);
        float *after = running(a, &n);
        ck_assert_msg(memcmp(before, after, n * sizeof *before) != 0,
                      "step %d after a restart did not compute statistics", t);
        step_free(&s);
        free(before);
        free(after);
        ndcl_tensor_destroy(x);
    }
    ndcl_layer_destroy(a);
}
END_TEST

START_TEST(bad_values)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = make_linear(0.1f);
    const int64_t bad[] = {0, -1, (int64_t)1 << 40};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(ndcl_layer_set_option(l, NDCL_LAYER_STATS_EVERY, bad[i]),
                         NDCL_ERR_INVALID_ARG);
        ck_assert_msg(strstr(ndcl_context_last_error(ctx), "NDCL_LAYER_STATS_EVERY"), "%s",
                      ndcl_context_last_error(ctx));
    }
    int64_t v = 0;
    TEST_OK(ctx, ndcl_layer_get_option(l, NDCL_LAYER_STATS_EVERY, &v));
    ck_assert_int_eq(v, 1); /* unchanged by the refusals */
    ndcl_layer_destroy(l);

    ndcl_channel_desc cd = ndcl_channel_desc_default(4);
    ndcl_layer *c = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, &cd, &c));
    ck_assert_int_eq(ndcl_layer_set_option(c, NDCL_LAYER_STATS_EVERY, 2),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(ndcl_context_last_error(ctx), "channel"), "%s",
                  ndcl_context_last_error(ctx));
    ndcl_layer_destroy(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stats_every");
    TEST_ADD(s, conv_every_third_step);
    TEST_ADD(s, linear_every_third_step);
    TEST_ADD(s, every_step_is_default);
    TEST_ADD(s, cycle_restarts);
    TEST_ADD(s, bad_values);
    return test_run(s);
}
