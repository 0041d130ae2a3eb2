/* test_numerics.c - the layers on degenerate data: a constant input (a
 * singular covariance that eps must keep invertible), NaN and Inf inputs
 * (reported by ndcl_finish and by each layer's own flag, running statistics
 * untouched) and magnitudes of 1e18 and 1e-18 (no NaN or Inf in the output
 * or the running buffers). */
#include <stdint.h>

#include "harness.h"
#include "ndcl_cl.h"

static const char *const running[] = {"running_mean", "running_deconv", "running_mean1",
                                      "running_mean2", "running_var"};
#define N_RUNNING (sizeof running / sizeof running[0])

/* The running buffers of l concatenated on the host (*n floats). */
static float *running_of(const ndcl_layer *l, size_t *n)
{
    float *all = NULL;
    *n = 0;
    for (size_t k = 0; k < N_RUNNING; k++) {
        int nd;
        size_t sh[NDCL_MAX_DIMS], c = 1;
        if (ndcl_layer_param_shape(l, running[k], &nd, sh) != NDCL_SUCCESS) continue;
        for (int i = 0; i < nd; i++)
            c *= sh[i];
        all = realloc(all, (*n + c) * sizeof *all);
        ck_assert_ptr_nonnull(all);
        TEST_OK(ndcl_layer_context(l), ndcl_layer_get_param(l, running[k], all + *n, c));
        *n += c;
    }
    return all;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* The three layer kinds and an input shape for each. */
typedef struct kase {
    const char *name;
    ndcl_layer *l;
    int ndim;
    size_t shape[4];
} kase;

static int make_cases(ndcl_context *ctx, kase *k)
{
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(4, 6, 3);
    cd.block = 2;
    cd.padding = 1;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &cd, &k[0].l));
    k[0] = (kase){"conv2d", k[0].l, 4, {2, 4, 7, 7}};
    ndcl_linear_desc ld = ndcl_linear_desc_default(8, 5);
    ld.block = 4;
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &k[1].l));
    k[1] = (kase){"linear", k[1].l, 2, {16, 8, 0, 0}};
    ndcl_channel_desc chd = ndcl_channel_desc_default(3);
    TEST_OK(ctx, ndcl_channel_create(ctx, &chd, &k[2].l));
    k[2] = (kase){"channel", k[2].l, 4, {2, 4, 6, 6}};
    for (int i = 0; i < 2; i++) { /* some weight so the output is not trivially 0 */
        int nd;
        size_t sh[NDCL_MAX_DIMS], c = 1;
        TEST_OK(ctx, ndcl_layer_param_shape(k[i].l, "weight", &nd, sh));
        for (int j = 0; j < nd; j++)
            c *= sh[j];
        float *w = malloc(c * sizeof *w);
        test_fill_uniform(w, c, 40 + (unsigned)i, -0.5f, 0.5f);
        TEST_OK(ctx, ndcl_layer_set_param(k[i].l, "weight", w, c));
        free(w);
    }
    return 3;
}

static size_t count_of(const kase *k)
{
    size_t c = 1;
    for (int i = 0; i < k->ndim; i++)
        c *= k->shape[i];
    return c;
}

/* One forward of l on x in mode; the output on the host. */
static float *forward(kase *k, ndcl_mode mode, const float *x, ndcl_status *finish,
                      size_t *ny)
{
    ndcl_context *ctx = ndcl_layer_context(k->l);
    ndcl_tensor *tx = test_tensor_from(ctx, k->ndim, k->shape, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(k->l, mode, tx, &ty));
    *finish = ndcl_finish(ctx);
    float *y = test_tensor_to_host(ty);
    *ny = ndcl_tensor_count(ty);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    return y;
}

START_TEST(constant_input_stays_finite)
{
    ndcl_context *ctx = test_ctx();
    kase k[3];
    int n = make_cases(ctx, k);
    for (int i = 0; i < n; i++) {
        size_t c = count_of(&k[i]), ny, nr;
        float *x = malloc(c * sizeof *x);
        for (size_t j = 0; j < c; j++)
            x[j] = 0.75f;
        for (int step = 0; step < 2; step++) {
            ndcl_status fin;
            float *y = forward(&k[i], step ? NDCL_EVAL : NDCL_TRAIN, x, &fin, &ny);
            ck_assert_msg(fin == NDCL_SUCCESS, "%s: constant input flagged: %s", k[i].name,
                          ndcl_context_last_error(ctx));
            ck_assert_msg(all_finite(y, ny), "%s: non-finite output on a constant input",
                          k[i].name);
            free(y);
        }
        float *r = running_of(k[i].l, &nr);
        ck_assert_msg(all_finite(r, nr), "%s: non-finite running buffers", k[i].name);
        free(r);
        free(x);
        ndcl_layer_destroy(k[i].l);
    }
}
END_TEST

START_TEST(nan_and_inf_are_reported_and_not_kept)
{
    ndcl_context *ctx = test_ctx();
    kase k[3];
    int n = make_cases(ctx, k);
    const float poison[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < n; i++) {
        size_t c = count_of(&k[i]), ny, n0, n1;
        float *x = malloc(c * sizeof *x);
        test_fill_uniform(x, c, 7, -1, 1);
        ndcl_status fin;
        free(forward(&k[i], NDCL_TRAIN, x, &fin, &ny)); /* real statistics first */
        TEST_OK(ctx, fin);
        for (size_t p = 0; p < sizeof poison / sizeof poison[0]; p++) {
            float *before = running_of(k[i].l, &n0);
            x[c / 2] = poison[p];
            free(forward(&k[i], NDCL_TRAIN, x, &fin, &ny));
            ck_assert_msg(fin == NDCL_ERR_NUMERICAL, "%s, %g: finish -> %s", k[i].name,
                          (double)poison[p], ndcl_status_string(fin));
            ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), ""));
            TEST_OK(ctx, ndcl_finish(ctx)); /* reported once, then cleared */
            float *after = running_of(k[i].l, &n1);
            ck_assert_uint_eq(n0, n1);
            ck_assert_msg(memcmp(before, after, n0 * sizeof *before) == 0,
                          "%s, %g: running statistics changed", k[i].name,
                          (double)poison[p]);
            free(before);
            free(after);
        }
        /* A clean batch afterwards trains normally. */
        test_fill_uniform(x, c, 8, -1, 1);
        free(forward(&k[i], NDCL_TRAIN, x, &fin, &ny));
        TEST_OK(ctx, fin);
        free(x);
        ndcl_layer_destroy(k[i].l);
    }
}
END_TEST

/* One forward of k's layer on x with no ndcl_finish: the application
 * synchronises with clFinish on the queue, as one that never calls
 * ndcl_finish would. */
static void step_cl_finish(kase *k, ndcl_mode mode, const float *x)
{
    ndcl_context *ctx = ndcl_layer_context(k->l);
    ndcl_tensor *tx = test_tensor_from(ctx, k->ndim, k->shape, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(k->l, mode, tx, &ty));
    ck_assert_int_eq(clFinish(ndcl_context_cl_queue(ctx)), CL_SUCCESS);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
}

START_TEST(layer_flag_without_finish)
{
    ndcl_context *ctx = test_ctx();
    kase k[3];
    int n = make_cases(ctx, k);
    float *x[3];
    for (int i = 0; i < n; i++) {
        size_t c = count_of(&k[i]);
        x[i] = malloc(c * sizeof *x[i]);
        test_fill_uniform(x[i], c, 11 + (unsigned)i, -1, 1);
        /* None trained yet: nothing to report. */
        TEST_OK(ctx, ndcl_layer_numerical_status(k[i].l));
        step_cl_finish(&k[i], NDCL_TRAIN, x[i]);
        TEST_OK(ctx, ndcl_layer_numerical_status(k[i].l));
    }
    TEST_OK(ctx, ndcl_finish(ctx));
    for (int i = 0; i < n; i++) {
        size_t c = count_of(&k[i]);
        x[i][c / 2] = NAN; /* a position every kind samples */
        step_cl_finish(&k[i], NDCL_TRAIN, x[i]);
        ck_assert_int_eq(ndcl_layer_numerical_status(k[i].l), NDCL_ERR_NUMERICAL);
        ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), k[i].name));
        /* Only this layer's step met the NaN. */
        for (int j = i + 1; j < n; j++)
            TEST_OK(ctx, ndcl_layer_numerical_status(k[j].l));
        /* An evaluation step computes no statistics: the flag stays. */
        x[i][c / 2] = 0.5f;
        step_cl_finish(&k[i], NDCL_EVAL, x[i]);
        ck_assert_int_eq(ndcl_layer_numerical_status(k[i].l), NDCL_ERR_NUMERICAL);
    }
    /* The layer queries left the context's flag to ndcl_finish, once ... */
    ck_assert_int_eq(ndcl_finish(ctx), NDCL_ERR_NUMERICAL);
    TEST_OK(ctx, ndcl_finish(ctx));
    for (int i = 0; i < n; i++) {
        /* ... and ndcl_finish left the layers' own flags. */
        ck_assert_int_eq(ndcl_layer_numerical_status(k[i].l), NDCL_ERR_NUMERICAL);
        /* The next clean training step resets the layer's flag. */
        step_cl_finish(&k[i], NDCL_TRAIN, x[i]);
        TEST_OK(ctx, ndcl_layer_numerical_status(k[i].l));
        free(x[i]);
        ndcl_layer_destroy(k[i].l);
    }
    TEST_OK(ctx, ndcl_finish(ctx));
    ck_assert_int_eq(ndcl_layer_numerical_status(NULL), NDCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(extreme_magnitudes)
{
    ndcl_context *ctx = test_ctx();
    const float scales[] = {1e18f, 1e-18f};
    for (size_t sidx = 0; sidx < 2; sidx++) {
        kase k[3];
        int n = make_cases(ctx, k);
        for (int i = 0; i < n; i++) {
            size_t c = count_of(&k[i]), ny, nr;
            float *x = malloc(c * sizeof *x);
            test_fill_uniform(x, c, 9, -1, 1);
            for (size_t j = 0; j < c; j++)
                x[j] *= scales[sidx];
            for (int step = 0; step < 2; step++) {
                ndcl_status fin;
                float *y = forward(&k[i], step ? NDCL_EVAL : NDCL_TRAIN, x, &fin, &ny);
                /* At 1e18 the covariance (~1e36 per product, summed over
                 * the rows) overflows float32: that is reported as
                 * NDCL_ERR_NUMERICAL and the step is not kept. At 1e-18
                 * eps dominates. Either way nothing non-finite is output. */
                ck_assert_msg((fin == NDCL_SUCCESS ||
                               (fin == NDCL_ERR_NUMERICAL && scales[sidx] > 1)) &&
                                  all_finite(y, ny),
                              "%s at scale %g (%s): finish %s, output %s", k[i].name,
                              (double)scales[sidx], step ? "eval" : "train",
                              ndcl_status_string(fin),
                              all_finite(y, ny) ? "finite" : "NOT finite");
                if (fin != NDCL_SUCCESS)
                    fprintf(stderr, "note: %s at scale %g (%s): %s\n", k[i].name,
                            (double)scales[sidx], step ? "eval" : "train",
                            ndcl_status_string(fin));
                free(y);
            }
            float *r = running_of(k[i].l, &nr);
            ck_assert_msg(all_finite(r, nr), "%s at scale %g: non-finite running buffers",
                          k[i].name, (double)scales[sidx]);
            free(r);
            free(x);
            ndcl_layer_destroy(k[i].l);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("numerics");
    TCase *tc = tcase_create("numerics");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, constant_input_stays_finite);
    tcase_add_test(tc, nan_and_inf_are_reported_and_not_kept);
    tcase_add_test(tc, layer_flag_without_finish);
    tcase_add_test(tc, extreme_magnitudes);
    suite_add_tcase(s, tc);
    return test_run(s);
}
