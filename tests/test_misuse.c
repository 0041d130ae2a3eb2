/* test_misuse.c - the public API against misuse: NULL handles and outputs,
 * wrong shapes, tensors of another context, bad modes, zero, negative and
 * overflowing sizes. Every failure must return a status, name the argument
 * in the message, and leave the layer's parameters and counter as they
 * were; also device exhaustion (tensors, layers, workspaces). */
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "ndcl_cl.h"

/* The call fails with status st and the message (of ctx, or of the calling
 * thread when ctx is NULL) contains sub. */
#define FAILS(ctx, expr, st, sub)                                                          \
    do {                                                                                   \
        ndcl_status f_s_ = (expr);                                                         \
        const char *f_m_ = ndcl_context_last_error(ctx);                                   \
        if (!f_m_) f_m_ = "(null)";                                                        \
        ck_assert_msg(f_s_ == (st), "%s -> %s (expected %s): %s", #expr,                   \
                      ndcl_status_string(f_s_), ndcl_status_string(st), f_m_);             \
        ck_assert_msg(strstr(f_m_, (sub)) != NULL,                                         \
                      "%s: message \"%s\" does not name \"%s\"", #expr, f_m_, (sub));      \
    } while (0)
#define BAD(ctx, expr, sub) FAILS(ctx, expr, NDCL_ERR_INVALID_ARG, sub)

/* ------------------------------------------------------------ snapshots */

/* Every parameter and buffer of a layer, and its counter, on the host. */
typedef struct snapshot {
    int n;
    const char *names[6];
    float *data[6];
    size_t count[6];
    int64_t counter;
} snapshot;

static const char *const all_names[] = {"weight",         "bias",          "running_mean",
                                        "running_deconv", "running_mean1", "running_mean2",
                                        "running_var"};

static void snap_take(const ndcl_layer *l, snapshot *s)
{
    memset(s, 0, sizeof *s);
    ndcl_context *ctx = ndcl_layer_context(l);
    for (size_t k = 0; k < sizeof all_names / sizeof all_names[0]; k++) {
        int nd;
        size_t sh[NDCL_MAX_DIMS], n = 1;
        if (ndcl_layer_param_shape(l, all_names[k], &nd, sh) != NDCL_SUCCESS) continue;
        for (int i = 0; i < nd; i++)
            n *= sh[i];
        s->names[s->n] = all_names[k];
        s->count[s->n] = n;
        s->data[s->n] = malloc(n * sizeof(float));
        ck_assert_ptr_nonnull(s->data[s->n]);
        TEST_OK(ctx, ndcl_layer_get_param(l, all_names[k], s->data[s->n], n));
        s->n++;
    }
    s->counter = -1;
    if (ndcl_layer_kind_of(l) != NDCL_LAYER_LINEAR)
        TEST_OK(ctx, ndcl_layer_get_counter(l, &s->counter));
}

static void snap_free(snapshot *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->data[i]);
}

/* The layer holds exactly what the snapshot holds (bytes). */
static void snap_expect(const ndcl_layer *l, const snapshot *before, const char *what)
{
    snapshot now;
    ndcl_finish(ndcl_layer_context(l)); /* anything a failed call enqueued has run */
    snap_take(l, &now);
    ck_assert_int_eq(now.n, before->n);
    for (int i = 0; i < now.n; i++)
        ck_assert_msg(memcmp(now.data[i], before->data[i], now.count[i] * sizeof(float)) ==
                          0,
                      "%s changed %s", what, now.names[i]);
    ck_assert_msg(now.counter == before->counter, "%s changed the counter", what);
    snap_free(&now);
}

/* Sets every parameter of l to distinct random values and the counter. */
static void randomise(ndcl_layer *l, unsigned seed)
{
    snapshot s;
    snap_take(l, &s);
    for (int i = 0; i < s.n; i++) {
        test_fill_uniform(s.data[i], s.count[i], seed + (unsigned)i, -1, 1);
        TEST_OK(ndcl_layer_context(l),
                ndcl_layer_set_param(l, s.names[i], s.data[i], s.count[i]));
    }
    if (ndcl_layer_kind_of(l) != NDCL_LAYER_LINEAR)
        TEST_OK(ndcl_layer_context(l), ndcl_layer_set_counter(l, 7));
    snap_free(&s);
}

/* --------------------------------------------------------- context-free */

START_TEST(no_context_calls)
{
    ck_assert_str_eq(ndcl_status_string((ndcl_status)12345), "unknown status");
    ck_assert_ptr_nonnull(ndcl_context_last_error(NULL));
    BAD(NULL, ndcl_devices_list(NULL, 0, NULL), "count");
    size_t count = 99;
    BAD(NULL, ndcl_devices_list(NULL, 3, &count), "out");
    BAD(NULL, ndcl_context_create(NULL, NULL), "out");
    ndcl_context_options o = ndcl_context_options_default();
    o.spec = "";
    ndcl_context *c = NULL;
    BAD(NULL, ndcl_context_create(&o, &c), "empty");
    o.spec = NULL;
    o.type = (ndcl_device_type)42;
    BAD(NULL, ndcl_context_create(&o, &c), "options.type");
    ck_assert_ptr_null(c);
    BAD(NULL, ndcl_context_create_from_cl(NULL, NULL, NULL, &c), "");
    ck_assert_ptr_null(c);
    ndcl_context_destroy(NULL);
    ndcl_tensor_destroy(NULL);
    ndcl_layer_destroy(NULL);
    ndcl_free(NULL);
    ck_assert_ptr_null(ndcl_context_cl_context(NULL));
    ck_assert_ptr_null(ndcl_context_cl_queue(NULL));
    ck_assert_ptr_null(ndcl_tensor_cl_mem(NULL));

    /* Files without a context: NULL arguments, bad dims, overflow. */
    float *data = NULL;
    int ndim = -1;
    size_t shape[NDCL_MAX_DIMS];
    BAD(NULL, ndcl_npy_read(NULL, &data, &ndim, shape), "path");
    BAD(NULL, ndcl_npy_read("x.npy", NULL, &ndim, shape), "data");
    FAILS(NULL, ndcl_npy_read("/nonexistent/x.npy", &data, &ndim, shape), NDCL_ERR_IO,
          "/nonexistent/x.npy");
    ck_assert_ptr_null(data);
    ck_assert_int_eq(ndim, -1);
    float one = 1;
    BAD(NULL, ndcl_npy_write(NULL, &one, 1, (size_t[]){1}), "path");
    BAD(NULL, ndcl_npy_write("x.npy", &one, -1, (size_t[]){1}), "ndim=-1");
    BAD(NULL, ndcl_npy_write("x.npy", &one, 5, (size_t[]){1, 1, 1, 1, 1}), "ndim=5");
    BAD(NULL, ndcl_npy_write("x.npy", &one, 1, NULL), "shape");
    BAD(NULL, ndcl_npy_write("x.npy", NULL, 1, (size_t[]){1}), "data");
    BAD(NULL, ndcl_npy_write("x.npy", &one, 2, (size_t[]){SIZE_MAX / 2, 3}), "overflow");
    BAD(NULL, ndcl_npy_write("x.npy", &one, 1, (size_t[]){SIZE_MAX / 2}), "overflow");
    const char *names[] = {"a", "a"};
    const float *ptrs[] = {&one, &one};
    const int nds[] = {1, 1};
    const size_t shp[2][NDCL_MAX_DIMS] = {{1}, {1}};
    const size_t big[2][NDCL_MAX_DIMS] = {{SIZE_MAX / 2, 3}, {1}};
    const int nd2[] = {2, 1};
    BAD(NULL, ndcl_safetensors_write_floats(NULL, 1, names, ptrs, nds, shp), "path");
    BAD(NULL, ndcl_safetensors_write_floats("t.st", -1, names, ptrs, nds, shp), "n");
    BAD(NULL, ndcl_safetensors_write_floats("t.st", 1, NULL, ptrs, nds, shp), "names");
    BAD(NULL, ndcl_safetensors_write_floats("t.st", 2, names, ptrs, nds, shp), "a");
    const char *meta[] = {"__metadata__"};
    BAD(NULL, ndcl_safetensors_write_floats("t.st", 1, meta, ptrs, nds, shp),
        "__metadata__");
    BAD(NULL, ndcl_safetensors_write_floats("t.st", 1, names, ptrs, nd2, big), "overflow");
    BAD(NULL, ndcl_safetensors_read_float(NULL, "a", &data, &ndim, shape), "path");
    BAD(NULL, ndcl_safetensors_read_float("t.st", NULL, &data, &ndim, shape), "name");
    ck_assert_ptr_null(data);
}
END_TEST

/* ------------------------------------------------------ contexts, tensors */

START_TEST(context_and_tensor_misuse)
{
    ndcl_context *ctx = test_ctx();
    ndcl_device_info info;
    BAD(NULL, ndcl_context_device(NULL, &info), "ctx");
    BAD(ctx, ndcl_context_device(ctx, NULL), "out");
    BAD(NULL, ndcl_finish(NULL), "ctx");
    BAD(NULL, ndcl_context_build(NULL, NULL), "ctx");

    ndcl_tensor *t = NULL;
    BAD(NULL, ndcl_tensor_create(NULL, 1, (size_t[]){4}, &t), "ctx");
    BAD(ctx, ndcl_tensor_create(ctx, 1, (size_t[]){4}, NULL), "out");
    BAD(ctx, ndcl_tensor_create(ctx, 0, (size_t[]){4}, &t), "ndim");
    BAD(ctx, ndcl_tensor_create(ctx, -3, (size_t[]){4}, &t), "ndim");
    BAD(ctx, ndcl_tensor_create(ctx, 1, NULL, &t), "shape");
    BAD(ctx, ndcl_tensor_create(ctx, 3, (size_t[]){2, 0, 2}, &t), "shape[1]=0");
    BAD(ctx, ndcl_tensor_create(ctx, 1, (size_t[]){(size_t)-1}, &t), "overflow");
    BAD(ctx,
        ndcl_tensor_create(ctx, 4, (size_t[]){1u << 20, 1u << 20, 1u << 20, 1u << 20}, &t),
        "overflow");
    ck_assert_ptr_null(t);

    float in[12], out[12];
    test_fill_uniform(in, 12, 3, -1, 1);
    t = test_tensor_from(ctx, 2, (size_t[]){3, 4}, in);
    BAD(NULL, ndcl_tensor_write(NULL, in, 12), "t");
    BAD(ctx, ndcl_tensor_write(t, NULL, 12), "src");
    BAD(ctx, ndcl_tensor_write(t, in, 13), "count=13");
    BAD(ctx, ndcl_tensor_write(t, in, 0), "count=0");
    BAD(NULL, ndcl_tensor_read(NULL, out, 12), "t");
    BAD(ctx, ndcl_tensor_read(t, NULL, 12), "dst");
    BAD(ctx, ndcl_tensor_read(t, out, SIZE_MAX), "count=");
    BAD(NULL, ndcl_tensor_reshape(NULL, 1, (size_t[]){12}), "t");
    BAD(ctx, ndcl_tensor_reshape(t, 0, (size_t[]){12}), "ndim");
    BAD(ctx, ndcl_tensor_reshape(t, 1, NULL), "shape");
    BAD(ctx, ndcl_tensor_reshape(t, 2, (size_t[]){SIZE_MAX / 2, 3}), "overflow");
    BAD(ctx, ndcl_tensor_reshape(t, 2, (size_t[]){12, 0}), "shape[1]=0");
    ck_assert_int_eq(ndcl_tensor_ndim(t), 2);
    ck_assert_uint_eq(ndcl_tensor_dim(t, 0), 3);
    ck_assert_uint_eq(ndcl_tensor_dim(t, -1), 0);
    ck_assert_uint_eq(ndcl_tensor_dim(t, NDCL_MAX_DIMS), 0);
    ck_assert_int_eq(ndcl_tensor_ndim(NULL), 0);
    ck_assert_uint_eq(ndcl_tensor_dim(NULL, 0), 0);
    ck_assert_uint_eq(ndcl_tensor_count(NULL), 0);
    ck_assert_ptr_null(ndcl_tensor_context(NULL));
    /* The data survived every failed call. */
    TEST_OK(ctx, ndcl_tensor_read(t, out, 12));
    ck_assert_mem_eq(in, out, sizeof in);

    /* Interop: NULL and foreign buffers. */
    ndcl_tensor *w = NULL;
    BAD(NULL, ndcl_tensor_wrap(NULL, ndcl_tensor_cl_mem(t), 1, (size_t[]){12}, &w), "ctx");
    BAD(ctx, ndcl_tensor_wrap(ctx, NULL, 1, (size_t[]){12}, &w), "buffer");
    BAD(ctx, ndcl_tensor_wrap(ctx, ndcl_tensor_cl_mem(t), 1, (size_t[]){13}, &w), "");
    ck_assert_ptr_null(w);

    /* GEMM: NULLs, shapes, ranks. */
    ndcl_tensor *a = test_tensor_from(ctx, 2, (size_t[]){3, 4}, in);
    ndcl_tensor *c = test_tensor_from(ctx, 2, (size_t[]){3, 3}, NULL);
    BAD(NULL, ndcl_gemm(NULL, 0, 1, 1, a, t, 0, c), "ctx");
    BAD(ctx, ndcl_gemm(ctx, 0, 1, 1, NULL, t, 0, c), "a");
    BAD(ctx, ndcl_gemm(ctx, 0, 1, 1, a, NULL, 0, c), "b");
    BAD(ctx, ndcl_gemm(ctx, 0, 1, 1, a, t, 0, NULL), "c");
    BAD(ctx, ndcl_gemm(ctx, 0, 0, 1, a, t, 0, c), "");
    BAD(ctx, ndcl_gemm(ctx, 0, 1, 1, a, t, 0, a), "");

    /* Primitives. */
    ndcl_tensor *x = test_tensor_from(ctx, 4, (size_t[]){2, 4, 5, 5}, NULL);
    ndcl_tensor *o = NULL;
    ndcl_patch_desc pd = {3, 3, 1, 1, 1, 1, 4};
    BAD(NULL, ndcl_patches(NULL, x, &pd, &o), "ctx");
    BAD(ctx, ndcl_patches(ctx, NULL, &pd, &o), "x");
    BAD(ctx, ndcl_patches(ctx, t, &pd, &o), "x");
    BAD(ctx, ndcl_patches(ctx, x, NULL, &o), "desc");
    BAD(ctx, ndcl_patches(ctx, x, &pd, NULL), "out");
    ndcl_patch_desc bad = pd;
    bad.kernel_h = 0;
    BAD(ctx, ndcl_patches(ctx, x, &bad, &o), "kernel_h");
    bad = pd;
    bad.padding = -1;
    BAD(ctx, ndcl_patches(ctx, x, &bad, &o), "padding");
    bad = pd;
    bad.stride = 0;
    BAD(ctx, ndcl_patches(ctx, x, &bad, &o), "stride");
    bad = pd;
    bad.groups = 3;
    BAD(ctx, ndcl_patches(ctx, x, &bad, &o), "groups");
    bad = pd;
    bad.kernel_h = bad.kernel_w = 1 << 30;
    ck_assert_int_ne(ndcl_patches(ctx, x, &bad, &o), NDCL_SUCCESS);
    bad = pd;
    bad.dilation = INT32_MAX;
    ck_assert_int_ne(ndcl_patches(ctx, x, &bad, &o), NDCL_SUCCESS);
    ck_assert_ptr_null(o);

    BAD(NULL, ndcl_covariance(NULL, a, 1, 1e-5f, 1, NULL, &o), "ctx");
    BAD(ctx, ndcl_covariance(ctx, NULL, 1, 1e-5f, 1, NULL, &o), "X");
    BAD(ctx, ndcl_covariance(ctx, x, 1, 1e-5f, 1, NULL, &o), "X");
    BAD(ctx, ndcl_covariance(ctx, a, 0, 1e-5f, 1, NULL, &o), "groups=0");
    BAD(ctx, ndcl_covariance(ctx, a, -2, 1e-5f, 1, NULL, &o), "groups=-2");
    BAD(ctx, ndcl_covariance(ctx, a, 3, 1e-5f, 1, NULL, &o), "groups=3");
    BAD(ctx, ndcl_covariance(ctx, a, 1, -1.0f, 1, NULL, &o), "eps");
    BAD(ctx, ndcl_covariance(ctx, a, 1, NAN, 1, NULL, &o), "eps");
    BAD(ctx, ndcl_covariance(ctx, a, 1, 1e-5f, 1, NULL, NULL), "cov");
    BAD(ctx, ndcl_covariance(ctx, a, 1, 1e-5f, 1, NULL, &c), "*cov"); /* 3x3, not 4x4 */
    ck_assert_ptr_null(o);

    BAD(NULL, ndcl_isqrt(NULL, c, 5, &o), "ctx");
    BAD(ctx, ndcl_isqrt(ctx, NULL, 5, &o), "A");
    BAD(ctx, ndcl_isqrt(ctx, a, 5, &o), "A must be");
    BAD(ctx, ndcl_isqrt(ctx, c, 0, &o), "n_iter=0");
    BAD(ctx, ndcl_isqrt(ctx, c, -1, &o), "n_iter=-1");
    BAD(ctx, ndcl_isqrt(ctx, c, 5, NULL), "D");
    BAD(ctx, ndcl_isqrt(ctx, c, 5, &a), "*D");
    ck_assert_ptr_null(o);

    ndcl_tensor *m = NULL;
    BAD(NULL, ndcl_whiten(NULL, a, 1e-5f, 5, &m, &o), "ctx");
    BAD(ctx, ndcl_whiten(ctx, NULL, 1e-5f, 5, &m, &o), "X");
    BAD(ctx, ndcl_whiten(ctx, a, 0.0f, 5, &m, &o), "eps");
    BAD(ctx, ndcl_whiten(ctx, a, 1e-5f, 0, &m, &o), "n_iter");
    BAD(ctx, ndcl_whiten(ctx, a, 1e-5f, 5, &m, NULL), "D");
    ck_assert_ptr_null(m);
    ck_assert_ptr_null(o);

    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(a);
    ndcl_tensor_destroy(c);
    ndcl_tensor_destroy(t);
}
END_TEST

/* ------------------------------------------------------------- creation */

START_TEST(create_rejects_bad_descriptors)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(4, 6, 3);
    BAD(NULL, ndcl_conv2d_create(NULL, &cd, &l), "ctx");
    BAD(ctx, ndcl_conv2d_create(ctx, NULL, &l), "desc");
    BAD(ctx, ndcl_conv2d_create(ctx, &cd, NULL), "out");
#define CONV_BAD(field, value, sub)                                                        \
    do {                                                                                   \
        ndcl_conv2d_desc d_ = cd;                                                          \
        d_.field = value;                                                                  \
        BAD(ctx, ndcl_conv2d_create(ctx, &d_, &l), sub);                                   \
        ck_assert_ptr_null(l);                                                             \
    } while (0)
    CONV_BAD(in_channels, 0, "in_channels=0");
    CONV_BAD(in_channels, -4, "in_channels=-4");
    CONV_BAD(in_channels, INT32_MAX, "in_channels");
    CONV_BAD(out_channels, 0, "out_channels=0");
    CONV_BAD(out_channels, INT32_MIN, "out_channels");
    CONV_BAD(kernel_h, 0, "kernel_h=0");
    CONV_BAD(kernel_w, -1, "kernel_w=-1");
    CONV_BAD(stride, 0, "stride=0");
    CONV_BAD(padding, -1, "padding=-1");
    CONV_BAD(dilation, 0, "dilation=0");
    CONV_BAD(groups, 0, "groups=0");
    CONV_BAD(groups, 3, "groups=3");
    CONV_BAD(block, 0, "block=0");
    CONV_BAD(block, -64, "block=-64");
    CONV_BAD(sampling_stride, 0, "sampling_stride=0");
    CONV_BAD(eps, 0.0f, "eps");
    CONV_BAD(eps, -1e-5f, "eps");
    CONV_BAD(eps, INFINITY, "eps");
    CONV_BAD(eps, NAN, "eps");
    CONV_BAD(n_iter, 0, "n_iter=0");
    CONV_BAD(n_iter, -5, "n_iter=-5");
    CONV_BAD(momentum, -0.1f, "momentum");
    CONV_BAD(momentum, 1.5f, "momentum");
    CONV_BAD(momentum, NAN, "momentum");
    CONV_BAD(freeze_iter, 0, "freeze_iter=0");
    /* kh*kw*block features whose square overflows or is absurd. */
    {
        ndcl_conv2d_desc d = ndcl_conv2d_desc_default(1 << 20, 8, 1024);
        d.kernel_w = 1024;
        d.block = 1 << 20;
        BAD(ctx, ndcl_conv2d_create(ctx, &d, &l), "features");
        ck_assert_ptr_null(l);
    }

    ndcl_linear_desc ld = ndcl_linear_desc_default(8, 4);
    BAD(NULL, ndcl_linear_create(NULL, &ld, &l), "ctx");
    BAD(ctx, ndcl_linear_create(ctx, NULL, &l), "desc");
    BAD(ctx, ndcl_linear_create(ctx, &ld, NULL), "out");
#define LIN_BAD(field, value, sub)                                                         \
    do {                                                                                   \
        ndcl_linear_desc d_ = ld;                                                          \
        d_.field = value;                                                                  \
        BAD(ctx, ndcl_linear_create(ctx, &d_, &l), sub);                                   \
        ck_assert_ptr_null(l);                                                             \
    } while (0)
    LIN_BAD(in_features, 0, "in_features=0");
    LIN_BAD(in_features, -8, "in_features=-8");
    LIN_BAD(out_features, 0, "out_features=0");
    LIN_BAD(out_features, INT32_MAX, "out_features");
    LIN_BAD(block, 0, "block=0");
    LIN_BAD(eps, -1.0f, "eps");
    LIN_BAD(n_iter, 1001, "n_iter=1001");
    LIN_BAD(momentum, 2.0f, "momentum");
    {
        ndcl_linear_desc d = ndcl_linear_desc_default(1 << 24, 4);
        d.block = 1 << 24;
        BAD(ctx, ndcl_linear_create(ctx, &d, &l), "block");
        ck_assert_ptr_null(l);
    }

    ndcl_channel_desc chd = ndcl_channel_desc_default(4);
    BAD(NULL, ndcl_channel_create(NULL, &chd, &l), "ctx");
    BAD(ctx, ndcl_channel_create(ctx, NULL, &l), "desc");
    BAD(ctx, ndcl_channel_create(ctx, &chd, NULL), "out");
#define CH_BAD(field, value, sub)                                                          \
    do {                                                                                   \
        ndcl_channel_desc d_ = chd;                                                        \
        d_.field = value;                                                                  \
        BAD(ctx, ndcl_channel_create(ctx, &d_, &l), sub);                                  \
        ck_assert_ptr_null(l);                                                             \
    } while (0)
    CH_BAD(block, 0, "block=0");
    CH_BAD(block, -1, "block=-1");
    CH_BAD(block, 1 << 20, "block");
    CH_BAD(eps, 0.0f, "eps");
    CH_BAD(n_iter, 0, "n_iter=0");
    CH_BAD(momentum, -1.0f, "momentum");
    CH_BAD(sampling_stride, 0, "sampling_stride=0");
    CH_BAD(sampling_stride, INT32_MAX, "sampling_stride");
}
END_TEST

/* -------------------------------------------------------------- layers */

/* Every failing call on a layer leaves its parameters and counter alone. */
static void layer_misuse(ndcl_layer *l, ndcl_tensor *x_ok, ndcl_tensor *x_bad,
                         ndcl_tensor *x_foreign, ndcl_tensor *y_bad)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    randomise(l, 11);
    snapshot s;
    snap_take(l, &s);
    ndcl_tensor *y = NULL;

    BAD(NULL, ndcl_layer_forward(NULL, NDCL_TRAIN, x_ok, &y), "layer");
    BAD(ctx, ndcl_layer_forward(l, (ndcl_mode)7, x_ok, &y), "mode=7");
    BAD(ctx, ndcl_layer_forward(l, (ndcl_mode)-1, x_ok, &y), "mode=-1");
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, NULL, &y), "x");
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x_ok, NULL), "y");
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x_bad, &y), "x");
    BAD(ctx, ndcl_layer_forward(l, NDCL_EVAL, x_bad, &y), "x");
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x_foreign, &y), "another context");
    ndcl_tensor *same = x_ok;
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x_ok, &same), "*y");
    ndcl_tensor *yb = y_bad;
    BAD(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x_ok, &yb), "*y");
    BAD(ctx, ndcl_layer_forward(l, NDCL_EVAL, x_ok, &yb), "*y");
    ck_assert_ptr_eq(yb, y_bad);
    ck_assert_ptr_null(y);
    snap_expect(l, &s, "a failed forward");

    /* Parameters: unknown names, wrong counts, NULL data. */
    float buf[4] = {0};
    int nd;
    size_t sh[NDCL_MAX_DIMS];
    BAD(NULL, ndcl_layer_param_shape(NULL, "weight", &nd, sh), "layer");
    BAD(ctx, ndcl_layer_param_shape(l, NULL, &nd, sh), "name");
    BAD(ctx, ndcl_layer_param_shape(l, "nope", &nd, sh), "nope");
    BAD(ctx, ndcl_layer_param_shape(l, s.names[0], NULL, sh), "ndim");
    BAD(ctx, ndcl_layer_param_shape(l, s.names[0], &nd, NULL), "shape");
    for (int i = 0; i < s.n; i++) {
        BAD(ctx, ndcl_layer_set_param(l, s.names[i], buf, s.count[i] + 1), "count=");
        BAD(ctx, ndcl_layer_set_param(l, s.names[i], buf, 0), "count=0");
        BAD(ctx, ndcl_layer_set_param(l, s.names[i], buf, SIZE_MAX), "count=");
        BAD(ctx, ndcl_layer_set_param(l, s.names[i], NULL, s.count[i]), "data");
        BAD(ctx, ndcl_layer_get_param(l, s.names[i], NULL, s.count[i]), "data");
        BAD(ctx, ndcl_layer_get_param(l, s.names[i], buf, s.count[i] + 1), "count=");
    }
    BAD(NULL, ndcl_layer_set_param(NULL, "weight", buf, 1), "layer");
    BAD(ctx, ndcl_layer_set_param(l, "", buf, 1), "name=\"\"");
    BAD(ctx, ndcl_layer_set_param(l, "running_var2", buf, 1), "running_var2");
    BAD(NULL, ndcl_layer_get_param(NULL, "weight", buf, 1), "layer");
    int64_t cnt = -9;
    BAD(NULL, ndcl_layer_get_counter(NULL, &cnt), "layer");
    BAD(ctx, ndcl_layer_get_counter(l, NULL), "out");
    BAD(NULL, ndcl_layer_set_counter(NULL, 1), "layer");
    if (ndcl_layer_kind_of(l) == NDCL_LAYER_LINEAR) {
        BAD(ctx, ndcl_layer_get_counter(l, &cnt), "linear");
        BAD(ctx, ndcl_layer_set_counter(l, 1), "linear");
        ck_assert_int_eq(cnt, -9);
    } else {
        BAD(ctx, ndcl_layer_set_counter(l, -1), "counter=-1");
        BAD(ctx, ndcl_layer_set_counter(l, INT64_MIN), "counter=");
    }

    /* Descriptors of the wrong kind, NULL outputs. */
    ndcl_conv2d_desc cd;
    ndcl_linear_desc ld;
    ndcl_channel_desc chd;
    BAD(NULL, ndcl_layer_conv2d_desc(NULL, &cd), "layer");
    ndcl_layer_kind k = ndcl_layer_kind_of(l);
    if (k != NDCL_LAYER_CONV2D) BAD(ctx, ndcl_layer_conv2d_desc(l, &cd), "not a conv");
    if (k != NDCL_LAYER_LINEAR) BAD(ctx, ndcl_layer_linear_desc(l, &ld), "not a linear");
    if (k != NDCL_LAYER_CHANNEL)
        BAD(ctx, ndcl_layer_channel_desc(l, &chd), "not a channel");
    BAD(ctx, ndcl_layer_conv2d_desc(l, NULL), "out");
    ck_assert_int_eq(ndcl_layer_kind_of(NULL), 0);
    ck_assert_int_eq(ndcl_layer_block(NULL), 0);
    ck_assert_ptr_null(ndcl_layer_context(NULL));

    /* Files. */
    ndcl_layer *l2 = NULL;
    void *mem = NULL;
    size_t size = 0;
    BAD(NULL, ndcl_layer_save(NULL, "x.safetensors"), "layer");
    BAD(ctx, ndcl_layer_save(l, NULL), "path");
    FAILS(ctx, ndcl_layer_save(l, "/nonexistent-dir/x.safetensors"), NDCL_ERR_IO,
          "/nonexistent-dir");
    BAD(NULL, ndcl_layer_save_memory(NULL, &mem, &size), "layer");
    BAD(ctx, ndcl_layer_save_memory(l, NULL, &size), "data");
    BAD(ctx, ndcl_layer_save_memory(l, &mem, NULL), "size");
    ck_assert_ptr_null(mem);
    BAD(NULL, ndcl_layer_load(NULL, "x", &l2), "ctx");
    BAD(ctx, ndcl_layer_load(ctx, NULL, &l2), "path");
    BAD(ctx, ndcl_layer_load(ctx, "x", NULL), "out");
    FAILS(ctx, ndcl_layer_load(ctx, "/nonexistent-dir/x.safetensors", &l2), NDCL_ERR_IO,
          "/nonexistent-dir");
    BAD(ctx, ndcl_layer_load_memory(ctx, NULL, 10, &l2), "data");
    FAILS(ctx, ndcl_layer_load_memory(ctx, "garbage", 7, &l2), NDCL_ERR_FORMAT, "");
    ck_assert_ptr_null(l2);
    snap_expect(l, &s, "a failed accessor");

    /* After all that the layer still works, from the same state. */
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x_ok, &y));
    TEST_OK(ctx, ndcl_finish(ctx));
    ndcl_tensor_destroy(y);
    snap_free(&s);
}

/* A tensor wrapped around a buffer of its own: the caller's, so never
 * resized by a forward (a created one would take the output's shape). */
static ndcl_tensor *caller_tensor(ndcl_context *ctx, int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    cl_int err;
    cl_mem m = clCreateBuffer(ndcl_context_cl_context(ctx), CL_MEM_READ_WRITE,
                              n * sizeof(float), NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ndcl_tensor *t = NULL;
    TEST_OK(ctx, ndcl_tensor_wrap(ctx, m, ndim, shape, &t));
    clReleaseMemObject(m); /* the tensor holds its own reference */
    return t;
}

START_TEST(layer_misuse_all_kinds)
{
    ndcl_context *ctx = test_ctx();
    ndcl_context *other = NULL;
    TEST_OK(NULL, ndcl_context_create(NULL, &other));
    float xs[2 * 4 * 6 * 6];
    test_fill_uniform(xs, sizeof xs / sizeof xs[0], 5, -1, 1);

    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(4, 6, 3);
    cd.block = 2;
    ndcl_layer *conv;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &cd, &conv));
    ndcl_tensor *x = test_tensor_from(ctx, 4, (size_t[]){2, 4, 6, 6}, xs);
    ndcl_tensor *x3 = test_tensor_from(ctx, 4, (size_t[]){2, 3, 6, 6}, xs);
    ndcl_tensor *xf = test_tensor_from(other, 4, (size_t[]){2, 4, 6, 6}, xs);
    ndcl_tensor *yb = caller_tensor(ctx, 4, (size_t[]){2, 6, 6, 6});
    layer_misuse(conv, x, x3, xf, yb);
    /* Input smaller than the kernel: no output positions. */
    ndcl_tensor *tiny = test_tensor_from(ctx, 4, (size_t[]){1, 4, 2, 2}, xs);
    ndcl_tensor *y = NULL;
    ck_assert_int_eq(ndcl_layer_forward(conv, NDCL_TRAIN, tiny, &y), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(y);
    ndcl_tensor_destroy(tiny);
    ndcl_tensor_destroy(x3);
    ndcl_tensor_destroy(xf);
    ndcl_tensor_destroy(yb);
    ndcl_layer_destroy(conv);

    ndcl_linear_desc ld = ndcl_linear_desc_default(8, 5);
    ld.block = 4;
    ndcl_layer *lin;
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &lin));
    ndcl_tensor *xl = test_tensor_from(ctx, 2, (size_t[]){9, 8}, xs);
    ndcl_tensor *xl7 = test_tensor_from(ctx, 2, (size_t[]){9, 7}, xs);
    ndcl_tensor *xlf = test_tensor_from(other, 2, (size_t[]){9, 8}, xs);
    ndcl_tensor *ylb = caller_tensor(ctx, 2, (size_t[]){9, 4});
    layer_misuse(lin, xl, xl7, xlf, ylb);
    ndcl_layer_destroy(lin);

    ndcl_channel_desc chd = ndcl_channel_desc_default(3);
    ndcl_layer *ch;
    TEST_OK(ctx, ndcl_channel_create(ctx, &chd, &ch));
    ndcl_tensor *x2 = test_tensor_from(ctx, 4, (size_t[]){2, 2, 6, 6}, xs); /* C < block */
    ndcl_tensor *y4 = caller_tensor(ctx, 4, (size_t[]){2, 4, 6, 5});
    layer_misuse(ch, x, x2, xf = test_tensor_from(other, 4, (size_t[]){2, 4, 6, 6}, xs),
                 y4);
    ndcl_tensor *x3d = test_tensor_from(ctx, 3, (size_t[]){2, 4, 36}, xs);
    BAD(ctx, ndcl_layer_forward(ch, NDCL_TRAIN, x3d, &y), "x");
    ndcl_tensor_destroy(x3d);
    ndcl_tensor_destroy(x2);
    ndcl_tensor_destroy(y4);
    ndcl_tensor_destroy(xf);
    ndcl_layer_destroy(ch);

    /* A layer used with the other context's tensors, and the other way round. */
    ndcl_tensor_destroy(xl);
    ndcl_tensor_destroy(xl7);
    ndcl_tensor_destroy(xlf);
    ndcl_tensor_destroy(ylb);
    ndcl_tensor_destroy(x);
    ndcl_context_destroy(other);
}
END_TEST

/* ------------------------------------------------------- the last error */

/* A failure leaves its message on ctx ... */
#define STALE(ctx)                                                                         \
    do {                                                                                   \
        ndcl_tensor *st_t_ = NULL;                                                         \
        ck_assert_int_eq(ndcl_tensor_create((ctx), 0, (size_t[]){1}, &st_t_),              \
                         NDCL_ERR_INVALID_ARG);                                            \
        ck_assert_str_ne(ndcl_context_last_error(ctx), "");                                \
    } while (0)
/* ... until the next fallible call that reaches ctx succeeds. */
#define CLEARS(ctx, expr)                                                                  \
    do {                                                                                   \
        STALE(ctx);                                                                        \
        TEST_OK((ctx), (expr));                                                            \
        ck_assert_msg(ndcl_context_last_error(ctx)[0] == '\0', "%s left \"%s\"", #expr,    \
                      ndcl_context_last_error(ctx));                                       \
    } while (0)

START_TEST(last_error_cleared_by_success)
{
    ndcl_context *ctx = test_ctx();
    ndcl_device_info info;
    CLEARS(ctx, ndcl_context_device(ctx, &info));
    CLEARS(ctx, ndcl_context_build(ctx, NULL));
    CLEARS(ctx, ndcl_finish(ctx));

    float v[16];
    test_fill_uniform(v, 16, 5, -1, 1);
    ndcl_tensor *a = NULL, *b = NULL, *c = NULL, *w = NULL, *mean = NULL, *cov = NULL,
                *D = NULL, *dX = NULL, *P = NULL;
    CLEARS(ctx, ndcl_tensor_create(ctx, 2, (size_t[]){4, 4}, &a));
    CLEARS(ctx, ndcl_tensor_write(a, v, 16));
    CLEARS(ctx, ndcl_tensor_read(a, v, 16));
    CLEARS(ctx, ndcl_tensor_reshape(a, 2, (size_t[]){4, 4}));
    CLEARS(ctx, ndcl_tensor_wrap(ctx, ndcl_tensor_cl_mem(a), 2, (size_t[]){4, 4}, &w));
    b = test_tensor_from(ctx, 2, (size_t[]){4, 4}, v);
    c = test_tensor_from(ctx, 2, (size_t[]){4, 4}, v);
    CLEARS(ctx, ndcl_gemm(ctx, 0, 1, 1.0f, a, b, 0.0f, c));
    CLEARS(ctx, ndcl_covariance(ctx, a, 1, 1e-2f, 1, &mean, &cov));
    CLEARS(ctx, ndcl_isqrt(ctx, cov, 3, &D));
    CLEARS(ctx, ndcl_whiten(ctx, a, 1e-2f, 3, &mean, &D));
    CLEARS(ctx, ndcl_whiten_backward(ctx, a, 1e-2f, 3, NULL, D, &dX));
    ndcl_tensor *x4 = test_tensor_from(ctx, 4, (size_t[]){1, 1, 4, 4}, v);
    ndcl_patch_desc pd = {3, 3, 1, 1, 1, 1, 1};
    CLEARS(ctx, ndcl_patches(ctx, x4, &pd, &P));

    ndcl_layer *conv = NULL, *lin = NULL, *ch = NULL, *loaded = NULL;
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(1, 2, 3);
    cd.padding = 1;
    ndcl_linear_desc ld = ndcl_linear_desc_default(4, 3);
    ndcl_channel_desc chd = ndcl_channel_desc_default(1);
    CLEARS(ctx, ndcl_conv2d_create(ctx, &cd, &conv));
    CLEARS(ctx, ndcl_linear_create(ctx, &ld, &lin));
    CLEARS(ctx, ndcl_channel_create(ctx, &chd, &ch));
    CLEARS(ctx, ndcl_layer_conv2d_desc(conv, &cd));
    CLEARS(ctx, ndcl_layer_linear_desc(lin, &ld));
    CLEARS(ctx, ndcl_layer_channel_desc(ch, &chd));
    int nd;
    size_t sh[NDCL_MAX_DIMS];
    int64_t counter;
    CLEARS(ctx, ndcl_layer_param_shape(conv, "weight", &nd, sh));
    CLEARS(ctx, ndcl_layer_set_param(lin, "weight", v, 12));
    CLEARS(ctx, ndcl_layer_get_param(lin, "weight", v, 12));
    CLEARS(ctx, ndcl_layer_get_counter(conv, &counter));
    CLEARS(ctx, ndcl_layer_set_counter(conv, 0));
    ndcl_tensor *y = NULL, *dx = NULL;
    CLEARS(ctx, ndcl_layer_forward(conv, NDCL_TRAIN, x4, &y));
    CLEARS(ctx, ndcl_layer_backward(conv, y, &dx, NULL, NULL));
    CLEARS(ctx, ndcl_layer_numerical_status(conv));
    CLEARS(ctx, ndcl_layer_set_group(conv, NULL));
    void *file = NULL;
    size_t size = 0;
    CLEARS(ctx, ndcl_layer_save_memory(lin, &file, &size));
    CLEARS(ctx, ndcl_layer_load_memory(ctx, file, size, &loaded));
    ndcl_layer_destroy(loaded);
    loaded = NULL;
    char path[] = "/tmp/ndcl-last-error-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    CLEARS(ctx, ndcl_layer_save(lin, path));
    CLEARS(ctx, ndcl_layer_load(ctx, path, &loaded));
    remove(path);
    ndcl_free(file);

    /* Calls without a context clear the calling thread's message alike. */
    BAD(NULL, ndcl_context_device(NULL, &info), "ctx");
    size_t count = 0;
    TEST_OK(NULL, ndcl_devices_list(NULL, 0, &count));
    ck_assert_str_eq(ndcl_context_last_error(NULL), "");

    ndcl_layer *ls[] = {conv, lin, ch, loaded};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        ndcl_layer_destroy(ls[i]);
    ndcl_tensor *ts[] = {a, b, c, w, mean, cov, D, dX, P, x4, y, dx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        ndcl_tensor_destroy(ts[i]);
}
END_TEST

/* ----------------------------------------------------------- exhaustion */

START_TEST(exhaustion)
{
    ndcl_context *ctx = test_ctx();
    ndcl_device_info info;
    TEST_OK(ctx, ndcl_context_device(ctx, &info));
    ndcl_layer *l = NULL;
    ndcl_tensor *t = NULL;

    /* A tensor just above the largest allocation. */
    size_t n = (size_t)(info.max_alloc_bytes / sizeof(float)) + 1;
    FAILS(ctx, ndcl_tensor_create(ctx, 1, &n, &t), NDCL_ERR_OUT_OF_MEMORY, "");
    ck_assert_ptr_null(t);

    /* A conv layer whose weight (1M x 1M x 1 x 1) exceeds it, block 1 so the
     * whitening itself stays small: the first parameter fails cleanly. */
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(1 << 20, 1 << 20, 1);
    cd.block = 1;
    FAILS(ctx, ndcl_conv2d_create(ctx, &cd, &l), NDCL_ERR_OUT_OF_MEMORY, "weight");
    ck_assert_ptr_null(l);
    /* ... and one whose running_deconv (nf² floats) does, after the weight
     * was allocated: that one is released again. */
    cd = ndcl_conv2d_desc_default(1 << 12, 1, 5);
    cd.block = 1 << 12; /* nf = 25 * 4096, nf² ≈ 1e10 floats */
    ck_assert_int_ne(ndcl_conv2d_create(ctx, &cd, &l), NDCL_SUCCESS);
    ck_assert_ptr_null(l);
    ndcl_linear_desc ld = ndcl_linear_desc_default(1 << 24, 1 << 24);
    ld.block = 1;
    FAILS(ctx, ndcl_linear_create(ctx, &ld, &l), NDCL_ERR_OUT_OF_MEMORY, "weight");
    ck_assert_ptr_null(l);

    /* A forward whose workspace is too large: a 3x3 conv sampling every
     * position (sampling_stride 1) over an input of a quarter of the
     * largest allocation needs a patch matrix of 9/4 of it, which no buffer
     * can hold. The forward must say so before it computes anything (the
     * input is never written, so it costs address space, not memory). */
    cd = ndcl_conv2d_desc_default(4, 4, 3);
    cd.padding = 1;
    cd.sampling_stride = 1;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &cd, &l));
    randomise(l, 3);
    snapshot s;
    snap_take(l, &s);
    size_t hw = (size_t)(info.max_alloc_bytes / sizeof(float) / 4 / 4); /* per plane */
    size_t side = 1;
    while ((side + 1) * (side + 1) <= hw)
        side++;
    ndcl_tensor *x = NULL, *y = NULL;
    TEST_OK(ctx, ndcl_tensor_create(ctx, 4, (size_t[]){1, 4, side, side}, &x));
    ndcl_status st = ndcl_layer_forward(l, NDCL_TRAIN, x, &y);
    /* Beyond the largest allocation, or beyond the kernels' int indexing
     * (NDCL_ERR_UNSUPPORTED): either way a status. */
    ck_assert_msg(st == NDCL_ERR_OUT_OF_MEMORY || st == NDCL_ERR_UNSUPPORTED,
                  "huge forward -> %s: %s", ndcl_status_string(st),
                  ndcl_context_last_error(ctx));
    ndcl_finish(ctx);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(x);
    y = NULL;
    snap_expect(l, &s, "a forward whose workspace does not fit");
    snap_free(&s);

    /* The context is usable right after: a small forward works. */
    float xs[1 * 4 * 3 * 3];
    test_fill_uniform(xs, 36, 9, -1, 1);
    x = test_tensor_from(ctx, 4, (size_t[]){1, 4, 3, 3}, xs);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    TEST_OK(ctx, ndcl_finish(ctx));
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(x);
    ndcl_layer_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("misuse");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, no_context_calls);
    tcase_add_test(tc, context_and_tensor_misuse);
    tcase_add_test(tc, create_rejects_bad_descriptors);
    tcase_add_test(tc, layer_misuse_all_kinds);
    tcase_add_test(tc, last_error_cleared_by_success);
    tcase_add_test(tc, exhaustion);
    suite_add_tcase(s, tc);
    return test_run(s);
}
