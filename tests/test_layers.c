/* test_layers.c - the three layers' forward passes on the device against
 * the double-precision host reference: two training steps (batch
 * statistics, running updates, counters) then an evaluation step, over
 * groups, strides, dilation, 1x1 kernels, gcd blocks, no bias, freezing
 * and leftover channels; plus argument validation and outputs that follow
 * the batch. */
#include "harness.h"
#include "ndcl_cl.h"
#include "ref.h"

/* Every parameter name a layer of that kind has, in state_dict order. */
static const char *const conv_names[] = {"weight", "bias", "running_mean",
                                         "running_deconv"};
static const char *const channel_names[] = {"running_mean1", "running_deconv",
                                            "running_mean2", "running_var"};

static double *ref_slot(ref_layer *r, const char *name)
{
    if (!strcmp(name, "weight")) return r->weight;
    if (!strcmp(name, "bias")) return r->bias;
    if (!strcmp(name, "running_mean")) return r->running_mean;
    if (!strcmp(name, "running_deconv")) return r->running_deconv;
    if (!strcmp(name, "running_mean1")) return r->running_mean1;
    if (!strcmp(name, "running_mean2")) return r->running_mean2;
    if (!strcmp(name, "running_var")) return r->running_var;
    return NULL;
}

/* Gives the device layer and the reference the same random weight and bias. */
static void share_params(ndcl_layer *l, ref_layer *r, unsigned seed)
{
    const char *names[] = {"weight", "bias"};
    for (int k = 0; k < 2; k++) {
        size_t n = test_param_count(l, names[k]);
        if (!n) continue;
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, seed + (unsigned)k, -0.5f, 0.5f);
        TEST_OK(ndcl_layer_context(l), ndcl_layer_set_param(l, names[k], v, n));
        double *dst = ref_slot(r, names[k]);
        for (size_t i = 0; i < n; i++)
            dst[i] = v[i];
        free(v);
    }
}

/* Compares every buffer of the layer with the reference's. */
static void expect_params(const ndcl_layer *l, ref_layer *r, const char *const *names,
                          int nn, const char *when)
{
    for (int k = 0; k < nn; k++) {
        size_t n = test_param_count(l, names[k]);
        if (!n) continue;
        float *v = malloc(n * sizeof *v);
        TEST_OK(ndcl_layer_context(l), ndcl_layer_get_param(l, names[k], v, n));
        double e = test_rel_err_f(v, ref_slot(r, names[k]), n, 1e-3);
        ck_assert_msg(e < 1e-4, "%s: %s rel err %g", when, names[k], e);
        free(v);
    }
}

/* One forward on both, outputs compared relative to the output's scale. */
static void step(ndcl_layer *l, ref_layer *r, ndcl_mode mode, int ndim, const size_t *xs,
                 unsigned seed, const char *when)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= xs[i];
    float *x = malloc(n * sizeof *x);
    double *xd = malloc(n * sizeof *xd);
    test_fill_uniform(x, n, seed, -1.0f, 2.0f); /* non-zero mean on purpose */
    for (size_t i = 0; i < n; i++)
        xd[i] = x[i];
    size_t ys[NDCL_MAX_DIMS];
    ck_assert_int_eq(ref_layer_out_shape(r, ndim, xs, ys), 0);
    size_t ny = 1;
    for (int i = 0; i < ndim; i++)
        ny *= ys[i];
    double *yr = malloc(ny * sizeof *yr);
    ck_assert_int_eq(ref_layer_forward(r, mode, xd, ndim, xs, yr), 0);

    ndcl_tensor *tx = test_tensor_from(ctx, ndim, xs, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, tx, &ty));
    ck_assert_int_eq(ndcl_tensor_ndim(ty), ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_uint_eq(ndcl_tensor_dim(ty, i), ys[i]);
    float *y = test_tensor_to_host(ty);
    TEST_OK(ctx, ndcl_finish(ctx));
    double e = test_rel_err_f(y, yr, ny, 1e-3);
    ck_assert_msg(e < 1e-4, "%s: output rel err %g", when, e);
    free(y);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    free(x);
    free(xd);
    free(yr);
}

static void run_conv(const ndcl_conv2d_desc *d, size_t N, size_t H, size_t W, int steps)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, d, &l));
    ref_layer *r = ref_layer_conv2d(d);
    ck_assert_int_eq(ndcl_layer_block(l), r->block);
    share_params(l, r, 7);
    expect_params(l, r, conv_names, 4, "initial");
    size_t xs[4] = {N, (size_t)d->in_channels, H, W};
    char when[64];
    for (int s = 0; s < steps; s++) {
        snprintf(when, sizeof when, "train step %d", s + 1);
        step(l, r, NDCL_TRAIN, 4, xs, 100 + (unsigned)s, when);
        expect_params(l, r, conv_names, 4, when);
        int64_t c;
        TEST_OK(ctx, ndcl_layer_get_counter(l, &c));
        ck_assert_int_eq(c, r->counter);
    }
    step(l, r, NDCL_EVAL, 4, xs, 200, "eval");
    step(l, r, NDCL_EVAL, 4, xs, 201, "eval (cached fold)");
    expect_params(l, r, conv_names, 4, "after eval");
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(conv_basic)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 6, 3);
    d.padding = 1;
    d.block = 4;
    run_conv(&d, 2, 9, 9, 2);
}
END_TEST

START_TEST(conv_groups)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 6, 3);
    d.padding = 1;
    d.groups = 2;
    run_conv(&d, 2, 9, 9, 2);
}
END_TEST

START_TEST(conv_1x1)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 5, 1);
    d.block = 4;
    run_conv(&d, 2, 7, 7, 2);
}
END_TEST

START_TEST(conv_stride_dilation)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 3, 3);
    d.stride = 2;
    d.dilation = 2;
    d.padding = 2;
    d.block = 4;
    run_conv(&d, 2, 11, 11, 2);
}
END_TEST

START_TEST(conv_gcd_block_and_small_c)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(6, 4, 3);
    d.block = 4; /* gcd(4, 6) = 2 */
    d.padding = 1;
    run_conv(&d, 2, 8, 8, 2);
    d = ndcl_conv2d_desc_default(3, 4, 3); /* C = 3 < block 64 */
    run_conv(&d, 2, 8, 8, 2);
}
END_TEST

START_TEST(conv_no_bias_and_freeze)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 4, 3);
    d.bias = 0;
    d.padding = 1;
    run_conv(&d, 2, 8, 8, 2);
    d = ndcl_conv2d_desc_default(4, 4, 3);
    d.freeze = 1;
    d.freeze_iter = 1; /* frozen from the third step on */
    run_conv(&d, 2, 8, 8, 4);
}
END_TEST

static void run_linear(const ndcl_linear_desc *d, size_t N)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_linear_create(ctx, d, &l));
    ref_layer *r = ref_layer_linear(d);
    ck_assert_int_eq(ndcl_layer_block(l), r->block);
    share_params(l, r, 9);
    size_t xs[2] = {N, (size_t)d->in_features};
    step(l, r, NDCL_TRAIN, 2, xs, 300, "train 1");
    expect_params(l, r, conv_names, 4, "train 1");
    step(l, r, NDCL_TRAIN, 2, xs, 301, "train 2");
    expect_params(l, r, conv_names, 4, "train 2");
    step(l, r, NDCL_EVAL, 2, xs, 302, "eval");
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(linear_layers)
{
    ndcl_linear_desc d = ndcl_linear_desc_default(12, 5);
    d.block = 4;
    run_linear(&d, 16);
    d = ndcl_linear_desc_default(10, 3);
    d.block = 4; /* gcd 2 */
    run_linear(&d, 16);
    d = ndcl_linear_desc_default(6, 4);
    d.bias = 0;
    run_linear(&d, 20);
}
END_TEST

static void run_channel(const ndcl_channel_desc *d, int ndim, const size_t *xs)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, d, &l));
    ref_layer *r = ref_layer_channel(d);
    step(l, r, NDCL_TRAIN, ndim, xs, 400, "train 1");
    expect_params(l, r, channel_names, 4, "train 1");
    step(l, r, NDCL_TRAIN, ndim, xs, 401, "train 2");
    expect_params(l, r, channel_names, 4, "train 2");
    step(l, r, NDCL_EVAL, ndim, xs, 402, "eval");
    int64_t c;
    TEST_OK(ctx, ndcl_layer_get_counter(l, &c));
    ck_assert_int_eq(c, 2);
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}

START_TEST(channel_layers)
{
    ndcl_channel_desc d = ndcl_channel_desc_default(4);
    run_channel(&d, 4, (size_t[]){3, 8, 6, 6});
    run_channel(&d, 4, (size_t[]){3, 10, 6, 6}); /* two leftover channels */
    d = ndcl_channel_desc_default(3);
    run_channel(&d, 2, (size_t[]){20, 6});
}
END_TEST

START_TEST(channel_eval_first_copies_batch_mean)
{
    /* The original copies batch statistics while num_batches_tracked is 0,
     * even in evaluation mode. */
    ndcl_channel_desc d = ndcl_channel_desc_default(4);
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_channel_create(ctx, &d, &l));
    ref_layer *r = ref_layer_channel(&d);
    step(l, r, NDCL_EVAL, 4, (size_t[]){2, 9, 5, 5}, 500, "eval first");
    expect_params(l, r, channel_names, 4, "eval first");
    ndcl_layer_destroy(l);
    ref_layer_free(r);
}
END_TEST

START_TEST(rejects_bad_descriptors)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(8, 6, 3);
    d.groups = 3;
    ck_assert_int_eq(ndcl_conv2d_create(ctx, &d, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "groups=3"));
    d = ndcl_conv2d_desc_default(8, 6, 3);
    d.eps = 0;
    ck_assert_int_eq(ndcl_conv2d_create(ctx, &d, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "eps="));
    d = ndcl_conv2d_desc_default(8, 6, 3);
    d.n_iter = 0;
    ck_assert_int_eq(ndcl_conv2d_create(ctx, &d, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "n_iter=0"));
    d = ndcl_conv2d_desc_default(8, 6, 3);
    d.block = 0;
    ck_assert_int_eq(ndcl_conv2d_create(ctx, &d, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "block=0"));
    d = ndcl_conv2d_desc_default(0, 6, 3);
    ck_assert_int_eq(ndcl_conv2d_create(ctx, &d, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "in_channels=0"));
    ck_assert_ptr_null(l);
    ndcl_linear_desc ld = ndcl_linear_desc_default(4, -1);
    ck_assert_int_eq(ndcl_linear_create(ctx, &ld, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "out_features=-1"));
    ndcl_channel_desc cd = ndcl_channel_desc_default(4);
    cd.momentum = 2;
    ck_assert_int_eq(ndcl_channel_create(ctx, &cd, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "momentum="));
    ck_assert_ptr_null(l);

    /* A kernel larger than the padded input; an input with other channels. */
    d = ndcl_conv2d_desc_default(4, 4, 5);
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    ndcl_tensor *x = test_tensor_from(ctx, 4, (size_t[]){1, 4, 3, 3}, NULL), *y = NULL;
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_TRAIN, x, &y), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "larger than the padded"));
    ck_assert_ptr_null(y);
    ndcl_tensor_destroy(x);
    x = test_tensor_from(ctx, 4, (size_t[]){1, 5, 8, 8}, NULL);
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_TRAIN, x, &y), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(y);
    int64_t c = -1;
    TEST_OK(ctx, ndcl_layer_get_counter(l, &c));
    ck_assert_int_eq(c, 0); /* a failed step does not count */
    ck_assert_int_eq(ndcl_layer_set_param(l, "nonsense", (float[]){0}, 1),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "running_deconv"));
    ck_assert_int_eq(ndcl_layer_set_param(l, "bias", (float[]){0}, 1),
                     NDCL_ERR_INVALID_ARG);
    ndcl_tensor_destroy(x);
    ndcl_layer_destroy(l);
    ndcl_layer_destroy(NULL);
}
END_TEST

/* An output ndcl created follows the batch, the same handle (a last
 * smaller batch, then a larger one again); a wrapped caller buffer of
 * another shape stays an error. */
static float *forward_host(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    ndcl_tensor *y = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, mode, x, &y));
    float *h = test_tensor_to_host(y);
    ndcl_tensor_destroy(y);
    return h;
}

START_TEST(outputs_follow_the_batch)
{
    ndcl_context *ctx = test_ctx();
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(3, 4, 3);
    d.padding = 1;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    size_t n16 = 16 * 3 * 6 * 6;
    float *xh = malloc(n16 * sizeof *xh);
    test_fill_uniform(xh, n16, 5, -1.0f, 2.0f);
    ndcl_tensor *x16 = test_tensor_from(ctx, 4, (size_t[]){16, 3, 6, 6}, xh);
    ndcl_tensor *x8 = test_tensor_from(ctx, 4, (size_t[]){8, 3, 6, 6}, xh);
    ndcl_tensor *t0 = NULL; /* one training step: running statistics not the identity */
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x16, &t0));
    ndcl_tensor_destroy(t0);
    float *want16 = forward_host(l, NDCL_EVAL, x16);
    float *want8 = forward_host(l, NDCL_EVAL, x8);

    ndcl_tensor *y = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x16, &y));
    ndcl_tensor *handle = y;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x8, &y)); /* the last, smaller batch */
    ck_assert_ptr_eq(y, handle);
    ck_assert_uint_eq(ndcl_tensor_dim(y, 0), 8);
    ck_assert_uint_eq(ndcl_tensor_count(y), 8 * 4 * 6 * 6);
    float *got = test_tensor_to_host(y);
    ck_assert_double_lt(test_rel_err_ff(got, want8, 8 * 4 * 6 * 6, 1e-3), 1e-6);
    free(got);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x16, &y)); /* and a full one again */
    ck_assert_ptr_eq(y, handle);
    ck_assert_uint_eq(ndcl_tensor_dim(y, 0), 16);
    got = test_tensor_to_host(y);
    ck_assert_double_lt(test_rel_err_ff(got, want16, 16 * 4 * 6 * 6, 1e-3), 1e-6);
    free(got);

    /* The backward's dx, created for 16 images, serves a step on 8. */
    ndcl_tensor *dx = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x16, &y));
    TEST_OK(ctx, ndcl_layer_backward(l, y, &dx, NULL, NULL));
    ndcl_tensor *dx_handle = dx;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x8, &y));
    TEST_OK(ctx, ndcl_layer_backward(l, y, &dx, NULL, NULL));
    ck_assert_ptr_eq(dx, dx_handle);
    ck_assert_uint_eq(ndcl_tensor_dim(dx, 0), 8);
    ck_assert_uint_eq(ndcl_tensor_dim(dx, 1), 3);

    /* A caller's buffer is never resized: the error names both shapes. */
    cl_int err;
    cl_mem buf = clCreateBuffer(ndcl_context_cl_context(ctx), CL_MEM_READ_WRITE,
                                16 * 4 * 6 * 6 * sizeof(float), NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ndcl_tensor *wrapped = NULL;
    TEST_OK(ctx, ndcl_tensor_wrap(ctx, buf, 4, (size_t[]){16, 4, 6, 6}, &wrapped));
    ndcl_tensor *w = wrapped;
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_EVAL, x8, &w), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "*y has shape [16,4,6,6]"));
    ck_assert_ptr_eq(w, wrapped);
    ck_assert_uint_eq(ndcl_tensor_dim(wrapped, 0), 16);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x16, &w));

    ndcl_tensor_destroy(wrapped);
    clReleaseMemObject(buf);
    ndcl_tensor_destroy(dx);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(x8);
    ndcl_tensor_destroy(x16);
    free(want8);
    free(want16);
    free(xh);
    ndcl_layer_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layers");
    TEST_ADD(s, conv_basic);
    TEST_ADD(s, conv_groups);
    TEST_ADD(s, conv_1x1);
    TEST_ADD(s, conv_stride_dilation);
    TEST_ADD(s, conv_gcd_block_and_small_c);
    TEST_ADD(s, conv_no_bias_and_freeze);
    TEST_ADD(s, linear_layers);
    TEST_ADD(s, channel_layers);
    TEST_ADD(s, channel_eval_first_copies_batch_mean);
    TEST_ADD(s, rejects_bad_descriptors);
    TEST_ADD(s, outputs_follow_the_batch);
    return test_run(s);
}
