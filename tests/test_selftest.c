/* test_selftest.c - ndcl_self_test called directly: every check of ndcl.h's
 * list, in order, passes on the test device, the callback sees each one,
 * the context stays usable, and bad arguments are refused. */
#include "harness.h"

/* The checks ndcl.h documents, in its order. */
static const char *const expected[] = {
    "gemm",
    "patches",
    "covariance",
    "isqrt",
    "whiten",
    "conv2d train",
    "conv2d eval",
    "conv2d groups=2 train",
    "conv2d groups=2 eval",
    "linear train",
    "linear eval",
    "channel train",
    "channel eval",
    "conv2d backward",
    "linear backward",
    "channel backward",
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

typedef struct seen {
    size_t calls;
    const ndcl_self_test_report *report;
    int in_order; /* each callback got the report's next check */
} seen;

static void on_check(const ndcl_self_test_check *c, void *user)
{
    seen *s = user;
    if (c != &s->report->checks[s->calls]) s->in_order = 0;
    s->calls++;
}

START_TEST(every_check_passes)
{
    ndcl_context *ctx = test_ctx();
    ndcl_self_test_report *rep = malloc(sizeof *rep);
    ck_assert_ptr_nonnull(rep);
    seen s = {0, rep, 1};
    TEST_OK(ctx, ndcl_self_test(ctx, rep, on_check, &s));
    ck_assert_int_eq(rep->build.built, 1);
    ck_assert_uint_eq(rep->count, N_EXPECTED);
    ck_assert_uint_eq(rep->failed, 0);
    ck_assert_uint_eq(s.calls, N_EXPECTED);
    ck_assert(s.in_order);
    for (size_t i = 0; i < rep->count; i++) {
        const ndcl_self_test_check *c = &rep->checks[i];
        ck_assert_ptr_nonnull(c->name);
        ck_assert_str_eq(c->name, expected[i]);
        ck_assert_msg(c->status == NDCL_SUCCESS && c->passed,
                      "check %s: %s, error %g, tolerance %g: %s", c->name,
                      ndcl_status_string(c->status), c->error, c->tolerance, c->message);
        ck_assert(isfinite(c->error));
        ck_assert(c->error >= 0 && c->error <= c->tolerance);
        ck_assert(c->tolerance > 0 && c->tolerance <= 1e-3);
        ck_assert_str_eq(c->message, "");
    }
    ck_assert_str_eq(ndcl_context_last_error(ctx), "");
    /* The context is still usable, and a second run (no callback) agrees. */
    ndcl_tensor *t = NULL;
    TEST_OK(ctx, ndcl_tensor_create(ctx, 1, (size_t[]){4}, &t));
    ndcl_tensor_destroy(t);
    ndcl_self_test_report *again = malloc(sizeof *again);
    ck_assert_ptr_nonnull(again);
    TEST_OK(ctx, ndcl_self_test(ctx, again, NULL, NULL));
    ck_assert_uint_eq(again->count, N_EXPECTED);
    for (size_t i = 0; i < again->count; i++)
        ck_assert(again->checks[i].error == rep->checks[i].error);
    free(again);
    free(rep);
}
END_TEST

START_TEST(bad_arguments)
{
    ndcl_self_test_report *rep = malloc(sizeof *rep);
    ck_assert_ptr_nonnull(rep);
    memset(rep, 0xab, sizeof *rep);
    ck_assert_int_eq(ndcl_self_test(NULL, rep, NULL, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(NULL), "ctx"));
    ndcl_context *ctx = test_ctx();
    ck_assert_int_eq(ndcl_self_test(ctx, NULL, NULL, NULL), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "out"));
    /* *out untouched on a refused call. */
    unsigned char *p = (unsigned char *)rep;
    for (size_t i = 0; i < sizeof *rep; i++)
        ck_assert_uint_eq(p[i], 0xab);
    free(rep);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("selftest");
    TEST_ADD(s, every_check_passes);
    TEST_ADD(s, bad_arguments);
    return test_run(s);
}
