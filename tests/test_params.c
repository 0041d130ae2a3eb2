/* test_params.c - parameters on the device: views of a layer's parameters
 * (ndcl_layer_param_tensor) written by the caller's own OpenCL commands and
 * announced with ndcl_tensor_changed, or written by ndcl calls, give the
 * same evaluation and frozen forwards as a fresh layer given the values
 * with ndcl_layer_set_param; views outliving their layer; misuse; and the
 * exported evaluation weights (ndcl_layer_folded). */
#include "harness.h"

#include <stdbool.h>

#include "ndcl_cl.h"

static const char *const names[] = {"weight", "bias", "running_mean", "running_deconv"};

/* A conv layer with interleaved blocks (C/B = 2), so that the fold's
 * layout is exercised, or a linear layer with two rows per output. */
static ndcl_layer *make_conv(ndcl_context *ctx, int freeze)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 6, 3);
    d.padding = 1;
    d.block = 2;
    d.freeze = freeze;
    d.freeze_iter = 3;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    return l;
}

static ndcl_layer *make_linear(ndcl_context *ctx)
{
    ndcl_linear_desc d = ndcl_linear_desc_default(16, 5);
    d.block = 8;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_linear_create(ctx, &d, &l));
    return l;
}

static const size_t conv_x[4] = {3, 4, 6, 6};
static const size_t linear_x[2] = {7, 16};

static ndcl_tensor *input(ndcl_context *ctx, const ndcl_layer *l, unsigned seed)
{
    bool conv = ndcl_layer_kind_of(l) == NDCL_LAYER_CONV2D;
    int nd = conv ? 4 : 2;
    const size_t *shape = conv ? conv_x : linear_x;
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *x = malloc(n * sizeof *x);
    test_fill_uniform(x, n, seed, -1.0f, 2.0f);
    ndcl_tensor *t = test_tensor_from(ctx, nd, shape, x);
    free(x);
    return t;
}

/* Random weight and bias, then two training steps so that the running
 * statistics are not the identity. */
static void train_a_little(ndcl_layer *l, unsigned seed)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    for (int k = 0; k < 2; k++) {
        size_t n = test_param_count(l, names[k]);
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, seed + (unsigned)k, -0.5f, 0.5f);
        TEST_OK(ctx, ndcl_layer_set_param(l, names[k], v, n));
        free(v);
    }
    for (int i = 0; i < 2; i++) {
        ndcl_tensor *x = input(ctx, l, seed + 10 + (unsigned)i), *y = NULL;
        TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
        ndcl_tensor_destroy(x);
        ndcl_tensor_destroy(y);
    }
}

/* The forward's output on a fixed input, on the host. */
static float *forward(ndcl_layer *l, ndcl_mode mode, size_t *n)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    ndcl_tensor *x = input(ctx, l, 99), *y = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, x, &y));
    float *h = test_tensor_to_host(y);
    *n = ndcl_tensor_count(y);
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    return h;
}

/* A fresh layer of the same kind given l's parameters with set_param. */
static ndcl_layer *copy_by_set_param(ndcl_layer *l, int freeze)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    ndcl_layer *c = ndcl_layer_kind_of(l) == NDCL_LAYER_CONV2D ? make_conv(ctx, freeze)
                                                               : make_linear(ctx);
    for (int k = 0; k < 4; k++) {
        size_t n = test_param_count(l, names[k]);
        float *v = malloc(n * sizeof *v);
        TEST_OK(ctx, ndcl_layer_get_param(l, names[k], v, n));
        TEST_OK(ctx, ndcl_layer_set_param(c, names[k], v, n));
        free(v);
    }
    int64_t counter;
    if (ndcl_layer_kind_of(l) == NDCL_LAYER_CONV2D) {
        TEST_OK(ctx, ndcl_layer_get_counter(l, &counter));
        TEST_OK(ctx, ndcl_layer_set_counter(c, counter));
    }
    return c;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Writes new values into parameter `name` of l through the view's
 * cl_mem, as the caller's own kernel would, then says so (or not). */
static void write_behind(ndcl_layer *l, const char *name, unsigned seed, bool announce)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    ndcl_tensor *v = NULL;
    TEST_OK(ctx, ndcl_layer_param_tensor(l, name, &v));
    size_t n = ndcl_tensor_count(v);
    ck_assert_uint_eq(n, test_param_count(l, name));
    float *h = malloc(n * sizeof *h);
    test_fill_uniform(h, n, seed, -0.5f, 0.5f);
    if (!strcmp(name, "running_deconv")) /* keep it a plausible whitening */
        for (size_t i = 0; i < n; i++)
            h[i] = 0.1f * h[i] + ((i % ((size_t)sqrt((double)n) + 1)) == 0 ? 1.0f : 0.0f);
    cl_int err = clEnqueueWriteBuffer(ndcl_context_cl_queue(ctx), ndcl_tensor_cl_mem(v),
                                      CL_FALSE, 0, n * sizeof *h, h, 0, NULL, NULL);
    ck_assert_int_eq(err, CL_SUCCESS);
    clFinish(ndcl_context_cl_queue(ctx));
    if (announce) TEST_OK(ctx, ndcl_tensor_changed(v));
    free(h);
    ndcl_tensor_destroy(v);
}

/* Eval (or frozen training) forward after each parameter is rewritten
 * behind the layer's back and announced equals a fresh layer's. */
static void check_changed(ndcl_layer *l, ndcl_mode mode, int freeze)
{
    for (int k = 0; k < 4; k++) {
        size_t n0, n1, n2;
        float *before = forward(l, mode, &n0); /* caches the fold */
        write_behind(l, names[k], 500 + (unsigned)k, true);
        float *after = forward(l, mode, &n1);
        ndcl_layer *fresh = copy_by_set_param(l, freeze);
        float *want = forward(fresh, mode, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_msg(max_abs_diff(before, after, n0) > 1e-3,
                      "%s: the rewrite did not change the output", names[k]);
        double e = test_rel_err_ff(after, want, n1, 1e-3);
        ck_assert_msg(e < 1e-6, "%s: after ndcl_tensor_changed rel err %g vs set_param",
                      names[k], e);
        ndcl_layer_destroy(fresh);
        free(before);
        free(after);
        free(want);
    }
}

START_TEST(conv_eval_sees_changed_view)
{
    ndcl_layer *l = make_conv(test_ctx(), 0);
    train_a_little(l, 1);
    check_changed(l, NDCL_EVAL, 0);
    ndcl_layer_destroy(l);
}
END_TEST

START_TEST(linear_eval_sees_changed_view)
{
    ndcl_layer *l = make_linear(test_ctx());
    train_a_little(l, 2);
    check_changed(l, NDCL_EVAL, 0);
    ndcl_layer_destroy(l);
}
END_TEST

/* A frozen conv layer trains on its running statistics through the same
 * cached fold: an optimiser's update must reach it. */
START_TEST(frozen_training_sees_changed_view)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = make_conv(ctx, 1);
    train_a_little(l, 3);
    /* counter > freeze_iter 3: frozen for the next 25 steps (it wraps at
     * 10 * freeze_iter). */
    TEST_OK(ctx, ndcl_layer_set_counter(l, 4));
    check_changed(l, NDCL_TRAIN, 1);
    ndcl_layer_destroy(l);
}
END_TEST

/* The view aliases the layer's buffer both ways; writes by ndcl calls
 * through the view need no announcement. */
START_TEST(ndcl_writes_through_view_are_seen)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = make_linear(ctx);
    train_a_little(l, 4);
    size_t n0;
    free(forward(l, NDCL_EVAL, &n0));

    ndcl_tensor *w = NULL;
    TEST_OK(ctx, ndcl_layer_param_tensor(l, "weight", &w));
    ck_assert_int_eq(ndcl_tensor_ndim(w), 2);
    ck_assert_uint_eq(ndcl_tensor_dim(w, 0), 5);
    ck_assert_uint_eq(ndcl_tensor_dim(w, 1), 16);
    /* Reads through the view are the layer's values. */
    float *via_view = test_tensor_to_host(w), got[80];
    TEST_OK(ctx, ndcl_layer_get_param(l, "weight", got, 80));
    ck_assert_mem_eq(via_view, got, sizeof got);
    free(via_view);

    /* ndcl_tensor_write: seen. */
    float h[80];
    test_fill_uniform(h, 80, 77, -0.5f, 0.5f);
    TEST_OK(ctx, ndcl_tensor_write(w, h, 80));
    size_t n1, n2;
    float *after = forward(l, NDCL_EVAL, &n1);
    ndcl_layer *fresh = copy_by_set_param(l, 0);
    float *want = forward(fresh, NDCL_EVAL, &n2);
    ck_assert_msg(test_rel_err_ff(after, want, n1, 1e-3) < 1e-6, "tensor_write not seen");
    free(after);
    free(want);
    ndcl_layer_destroy(fresh);

    /* ndcl_gemm with the view as C: W = 0.5 * I(5x5)·W. */
    size_t eye_shape[2] = {5, 5};
    float eye[25] = {0};
    for (int i = 0; i < 5; i++)
        eye[i * 5 + i] = 1.0f;
    ndcl_tensor *e = test_tensor_from(ctx, 2, eye_shape, eye);
    ndcl_tensor *wcopy = test_tensor_from(ctx, 2, (size_t[]){5, 16}, h);
    TEST_OK(ctx, ndcl_gemm(ctx, 0, 0, 0.5f, e, wcopy, 0.0f, w));
    after = forward(l, NDCL_EVAL, &n1);
    fresh = copy_by_set_param(l, 0);
    want = forward(fresh, NDCL_EVAL, &n2);
    ck_assert_msg(test_rel_err_ff(after, want, n1, 1e-3) < 1e-6, "gemm into view not seen");
    TEST_OK(ctx, ndcl_layer_get_param(l, "weight", got, 80));
    for (int i = 0; i < 80; i++)
        ck_assert_float_eq_tol(got[i], 0.5f * h[i], 1e-6f);
    free(after);
    free(want);
    ndcl_layer_destroy(fresh);
    ndcl_tensor_destroy(e);
    ndcl_tensor_destroy(wcopy);
    ndcl_tensor_destroy(w);
    ndcl_layer_destroy(l);
}
END_TEST

START_TEST(view_outlives_layer)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = make_conv(ctx, 0);
    float w[6 * 4 * 9];
    test_fill_uniform(w, 216, 5, -1.0f, 1.0f);
    TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 216));
    ndcl_tensor *v = NULL, *v2 = NULL;
    TEST_OK(ctx, ndcl_layer_param_tensor(l, "weight", &v));
    TEST_OK(ctx, ndcl_layer_param_tensor(l, "weight", &v2));
    ndcl_tensor_destroy(v2);
    ndcl_layer_destroy(l);
    TEST_OK(ctx, ndcl_tensor_changed(v));
    float *h = test_tensor_to_host(v);
    ck_assert_mem_eq(h, w, sizeof w);
    free(h);
    ndcl_tensor_destroy(v);
}
END_TEST

START_TEST(misuse)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = make_conv(ctx, 0);
    ndcl_tensor *sentinel = (ndcl_tensor *)&sentinel, *v = sentinel;
    ck_assert_int_eq(ndcl_layer_param_tensor(NULL, "weight", &v), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_param_tensor(l, NULL, &v), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_param_tensor(l, "weights", &v), NDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(ndcl_context_last_error(ctx), "running_deconv") != NULL,
                  "message does not list the names: %s", ndcl_context_last_error(ctx));
    ck_assert_ptr_eq(v, sentinel);
    ck_assert_int_eq(ndcl_layer_param_tensor(l, "weight", NULL), NDCL_ERR_INVALID_ARG);

    ck_assert_int_eq(ndcl_tensor_changed(NULL), NDCL_ERR_INVALID_ARG);
    ndcl_tensor *plain = NULL;
    TEST_OK(ctx, ndcl_tensor_create(ctx, 1, (size_t[]){6}, &plain));
    ck_assert_int_eq(ndcl_tensor_changed(plain), NDCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(ndcl_context_last_error(ctx), "ndcl_layer_param_tensor") != NULL,
                  "%s", ndcl_context_last_error(ctx));
    /* A tensor wrapped around the parameter's buffer cannot tell the layer. */
    TEST_OK(ctx, ndcl_layer_param_tensor(l, "bias", &v));
    ndcl_tensor *wrapped = NULL;
    TEST_OK(ctx, ndcl_tensor_wrap(ctx, ndcl_tensor_cl_mem(v), 1, (size_t[]){6}, &wrapped));
    ck_assert_int_eq(ndcl_tensor_changed(wrapped), NDCL_ERR_INVALID_ARG);
    TEST_OK(ctx, ndcl_tensor_changed(v));

    /* A channel layer has views but nothing to fold. */
    ndcl_channel_desc cd = ndcl_channel_desc_default(2);
    ndcl_layer *ch = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, &cd, &ch));
    ndcl_tensor *rv = NULL, *fw = NULL;
    TEST_OK(ctx, ndcl_layer_param_tensor(ch, "running_var", &rv));
    ck_assert_int_eq(ndcl_layer_folded(ch, &fw, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(fw);
    ck_assert_int_eq(ndcl_layer_folded(NULL, &fw, NULL), NDCL_ERR_INVALID_ARG);
    /* A wrongly shaped output is refused and left alone. */
    ck_assert_int_eq(ndcl_layer_folded(l, &plain, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_folded(l, NULL, &wrapped), NDCL_SUCCESS);

    ndcl_tensor_destroy(rv);
    ndcl_tensor_destroy(wrapped);
    ndcl_tensor_destroy(plain);
    ndcl_tensor_destroy(v);
    ndcl_layer_destroy(ch);
    ndcl_layer_destroy(l);
}
END_TEST

/* W', b' from ndcl_layer_folded in a fresh layer with identity statistics
 * (a plain convolution or linear map) give the evaluation forward. */
static void check_folded(ndcl_layer *l, int freeze)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    train_a_little(l, 6);
    ndcl_tensor *w = NULL, *b = NULL;
    TEST_OK(ctx, ndcl_layer_folded(l, &w, &b));
    ndcl_layer *plain = ndcl_layer_kind_of(l) == NDCL_LAYER_CONV2D ? make_conv(ctx, freeze)
                                                                   : make_linear(ctx);
    float *hw = test_tensor_to_host(w), *hb = test_tensor_to_host(b);
    TEST_OK(ctx, ndcl_layer_set_param(plain, "weight", hw, ndcl_tensor_count(w)));
    TEST_OK(ctx, ndcl_layer_set_param(plain, "bias", hb, ndcl_tensor_count(b)));
    size_t n1, n2;
    float *want = forward(l, NDCL_EVAL, &n1), *got = forward(plain, NDCL_EVAL, &n2);
    ck_assert_uint_eq(n1, n2);
    double e = test_rel_err_ff(got, want, n1, 1e-3);
    ck_assert_msg(e < 1e-5, "folded weights in a plain layer: rel err %g", e);
    /* Into existing tensors too, the same values. */
    float *hw1 = malloc(ndcl_tensor_count(w) * sizeof *hw1);
    TEST_OK(ctx, ndcl_tensor_write(w, hw1 ? memset(hw1, 0, ndcl_tensor_count(w) * 4) : NULL,
                                   ndcl_tensor_count(w)));
    TEST_OK(ctx, ndcl_layer_folded(l, &w, NULL));
    free(hw1);
    hw1 = test_tensor_to_host(w);
    ck_assert_mem_eq(hw1, hw, ndcl_tensor_count(w) * sizeof *hw);
    free(hw1);
    free(hw);
    free(hb);
    free(want);
    free(got);
    ndcl_tensor_destroy(w);
    ndcl_tensor_destroy(b);
    ndcl_layer_destroy(plain);
}

START_TEST(folded_conv)
{
    ndcl_layer *l = make_conv(test_ctx(), 0);
    check_folded(l, 0);
    ndcl_layer_destroy(l);
}
END_TEST

START_TEST(folded_linear)
{
    ndcl_layer *l = make_linear(test_ctx());
    check_folded(l, 0);
    ndcl_layer_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("params");
    TEST_ADD(s, conv_eval_sees_changed_view);
    TEST_ADD(s, linear_eval_sees_changed_view);
    TEST_ADD(s, frozen_training_sees_changed_view);
    TEST_ADD(s, ndcl_writes_through_view_are_seen);
    TEST_ADD(s, view_outlives_layer);
    TEST_ADD(s, misuse);
    TEST_ADD(s, folded_conv);
    TEST_ADD(s, folded_linear);
    return test_run(s);
}
