/* harness.c - the shared context, runner and numerical helpers of the test
 * suites (see harness.h). */
#include "harness.h"

static ndcl_context *shared;

/* Runs before main returns, never from atexit: PoCL may still be compiling
 * an enqueued kernel in a worker thread, and exit() destroys LLVM's
 * function-local statics under it (a crash inside clang). Destroying the
 * context drains the queue first. */
static void destroy_shared(void)
{
    ndcl_context_destroy(shared);
    shared = NULL;
}

ndcl_context *test_ctx(void)
{
    if (!shared) {
        ndcl_status s = ndcl_context_create(NULL, &shared);
        ck_assert_msg(s == NDCL_SUCCESS, "context: %s: %s", ndcl_status_string(s),
                      ndcl_context_last_error(NULL));
    }
    return shared;
}

int test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    if (!getenv("CK_FORK")) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    destroy_shared();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

double test_rand01(unsigned *state)
{
    /* xorshift32: reproducible across platforms, unlike rand(). */
    unsigned x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (x >> 8) / 16777216.0;
}

void test_fill_uniform(float *x, size_t n, unsigned seed, float lo, float hi)
{
    unsigned st = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)test_rand01(&st);
}

double test_rel_err_f(const float *a, const double *b, size_t n, double floor)
{
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= err)) err = d; /* NaN propagates as the worst error */
    }
    return err / scale;
}

double test_rel_err_ff(const float *a, const float *b, size_t n, double floor)
{
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= err)) err = d;
    }
    return err / scale;
}

ndcl_tensor *test_tensor_from(ndcl_context *ctx, int ndim, const size_t *shape,
                              const float *data)
{
    ndcl_tensor *t = NULL;
    TEST_OK(ctx, ndcl_tensor_create(ctx, ndim, shape, &t));
    if (data) TEST_OK(ctx, ndcl_tensor_write(t, data, ndcl_tensor_count(t)));
    return t;
}

float *test_tensor_to_host(const ndcl_tensor *t)
{
    size_t n = ndcl_tensor_count(t);
    float *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    TEST_OK(ndcl_tensor_context(t), ndcl_tensor_read(t, h, n));
    return h;
}

size_t test_param_count(const ndcl_layer *l, const char *name)
{
    int nd;
    size_t sh[NDCL_MAX_DIMS], n = 1;
    if (ndcl_layer_param_shape(l, name, &nd, sh) != NDCL_SUCCESS) return 0;
    for (int i = 0; i < nd; i++)
        n *= sh[i];
    return n;
}
