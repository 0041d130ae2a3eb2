/* harness.h - what every Check suite shares: one context per test binary
 * (PoCL builds kernels slowly, so it is created once and reused), seeded
 * random data, and comparisons relative to the data's scale. */
#ifndef NDCL_TEST_HARNESS_H
#define NDCL_TEST_HARNESS_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndcl.h"

/* The binary's shared context, created on first use (NDCL_DEVICE honoured)
 * and destroyed at exit. A test that cannot get one fails. */
ndcl_context *test_ctx(void);

/* Runs the suite without forking unless CK_FORK says otherwise (forking
 * after an OpenCL runtime has started threads is not safe), and returns
 * the process exit status. */
int test_run(Suite *s);

/* Deterministic uniform values in [lo, hi). */
void test_fill_uniform(float *x, size_t n, unsigned seed, float lo, float hi);
double test_rand01(unsigned *state);

/* max |a - b| / max(max |b|, floor): the residual relative to the scale of
 * the reference b. */
double test_rel_err_f(const float *a, const double *b, size_t n, double floor);
double test_rel_err_ff(const float *a, const float *b, size_t n, double floor);

/* Adds fn as a test case of its own, named after it, so that
 * CK_RUN_CASE=fn runs it alone. */
#define TEST_ADD(s, fn)                                                                    \
    do {                                                                                   \
        TCase *test_tc_ = tcase_create(#fn);                                               \
        tcase_set_timeout(test_tc_, 900);                                                  \
        tcase_add_test(test_tc_, fn);                                                      \
        suite_add_tcase((s), test_tc_);                                                    \
    } while (0)

/* Asserts a call succeeded, printing the context's last error if not. */
#define TEST_OK(ctx, expr)                                                                 \
    do {                                                                                   \
        ndcl_status test_s_ = (expr);                                                      \
        ck_assert_msg(test_s_ == NDCL_SUCCESS, "%s -> %s: %s", #expr,                      \
                      ndcl_status_string(test_s_), ndcl_context_last_error(ctx));          \
    } while (0)

/* The element count of a layer's parameter, 0 when it has none of that
 * name (e.g. "bias" on a layer without one). */
size_t test_param_count(const ndcl_layer *l, const char *name);

/* A device tensor of the given shape filled from host data. */
ndcl_tensor *test_tensor_from(ndcl_context *ctx, int ndim, const size_t *shape,
                              const float *data);
/* The tensor's contents in a new malloc'd array. */
float *test_tensor_to_host(const ndcl_tensor *t);

#endif
