/* test_tensor.c - device tensors: round trips, shape checks, reshape, and
 * the GEMM through CLBlast against a host product. */
#include <stdint.h>

#include "harness.h"

START_TEST(round_trip)
{
    ndcl_context *ctx = test_ctx();
    size_t shape[4] = {2, 3, 4, 5};
    float in[120], out[120];
    test_fill_uniform(in, 120, 1, -1, 1);
    ndcl_tensor *t = test_tensor_from(ctx, 4, shape, in);
    ck_assert_int_eq(ndcl_tensor_ndim(t), 4);
    ck_assert_uint_eq(ndcl_tensor_dim(t, 3), 5);
    ck_assert_uint_eq(ndcl_tensor_dim(t, 4), 0);
    ck_assert_uint_eq(ndcl_tensor_count(t), 120);
    TEST_OK(ctx, ndcl_tensor_read(t, out, 120));
    ck_assert_mem_eq(in, out, sizeof in);
    TEST_OK(ctx, ndcl_tensor_reshape(t, 2, (size_t[]){6, 20}));
    ck_assert_uint_eq(ndcl_tensor_dim(t, 1), 20);
    ck_assert_int_eq(ndcl_tensor_reshape(t, 2, (size_t[]){7, 20}), NDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(ndcl_tensor_dim(t, 0), 6); /* unchanged by the failure */
    ck_assert_int_eq(ndcl_tensor_read(t, out, 119), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "count=119"));
    ck_assert_int_eq(ndcl_tensor_write(t, NULL, 120), NDCL_ERR_INVALID_ARG);
    ndcl_tensor_destroy(t);
    ndcl_tensor_destroy(NULL);
}
END_TEST

START_TEST(rejects_bad_shapes)
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *t = NULL;
    ck_assert_int_eq(ndcl_tensor_create(ctx, 0, (size_t[]){1}, &t), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_tensor_create(ctx, 5, (size_t[]){1, 1, 1, 1, 1}, &t),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_tensor_create(ctx, 2, (size_t[]){3, 0}, &t),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "shape[1]=0"));
    ck_assert_int_eq(ndcl_tensor_create(ctx, 2, (size_t[]){SIZE_MAX / 2, 3}, &t),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "overflow"));
    ck_assert_int_eq(ndcl_tensor_create(ctx, 2, NULL, &t), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_tensor_create(NULL, 1, (size_t[]){1}, &t), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(t);
    /* Larger than the device can allocate: out of memory, context usable. */
    ck_assert_int_eq(ndcl_tensor_create(ctx, 2, (size_t[]){(size_t)1 << 40, 64}, &t),
                     NDCL_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(t);
    TEST_OK(ctx, ndcl_tensor_create(ctx, 1, (size_t[]){16}, &t));
    ndcl_tensor_destroy(t);
}
END_TEST

/* C = op(A) op(B) in double on the host. */
static void host_gemm(int ta, int tb, size_t m, size_t n, size_t k, const float *a,
                      const float *b, double *c)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t l = 0; l < k; l++)
                s += (double)(ta ? a[l * m + i] : a[i * k + l]) *
                     (double)(tb ? b[j * k + l] : b[l * n + j]);
            c[i * n + j] = s;
        }
}

START_TEST(gemm_matches_host)
{
    ndcl_context *ctx = test_ctx();
    const size_t m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float a[37 * 53], b[53 * 29], c[37 * 29];
            double ref[37 * 29];
            test_fill_uniform(a, m * k, 10 + ta, -1, 1);
            test_fill_uniform(b, k * n, 20 + tb, -1, 1);
            ndcl_tensor *ta_ =
                test_tensor_from(ctx, 2, ta ? (size_t[]){k, m} : (size_t[]){m, k}, a);
            ndcl_tensor *tb_ =
                test_tensor_from(ctx, 2, tb ? (size_t[]){n, k} : (size_t[]){k, n}, b);
            ndcl_tensor *tc = test_tensor_from(ctx, 2, (size_t[]){m, n}, NULL);
            TEST_OK(ctx, ndcl_gemm(ctx, ta, tb, 1.0f, ta_, tb_, 0.0f, tc));
            TEST_OK(ctx, ndcl_tensor_read(tc, c, m * n));
            host_gemm(ta, tb, m, n, k, a, b, ref);
            double e = test_rel_err_f(c, ref, m * n, 1e-6);
            ck_assert_msg(e < 1e-5, "ta=%d tb=%d rel err %g", ta, tb, e);
            /* Mismatched shapes are refused with the sizes named. */
            ck_assert_int_eq(ndcl_gemm(ctx, !ta, tb, 1.0f, ta_, tb_, 0.0f, tc),
                             NDCL_ERR_INVALID_ARG);
            ndcl_tensor_destroy(ta_);
            ndcl_tensor_destroy(tb_);
            ndcl_tensor_destroy(tc);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, rejects_bad_shapes);
    tcase_add_test(tc, gemm_matches_host);
    suite_add_tcase(s, tc);
    return test_run(s);
}
