/* test_nodevice.c - with no OpenCL platform installed (the ICD loader
 * pointed at an empty vendor directory) every entry point answers
 * NDCL_ERR_NO_DEVICE with a message, never a crash. */
#include <unistd.h>

#include "harness.h"

START_TEST(no_platform_is_a_clean_error)
{
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_ERR_NO_DEVICE);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(NULL), "no OpenCL platform"));
    size_t n = 7;
    ndcl_device_info info[2];
    ck_assert_int_eq(ndcl_devices_list(info, 2, &n), NDCL_ERR_NO_DEVICE);
    ck_assert_uint_eq(n, 0);
}
END_TEST

int main(void)
{
    /* Must happen before the ICD loader first initialises. */
    char dir[] = "/tmp/ndcl-novendors-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    setenv("OCL_ICD_VENDORS", dir, 1);
    Suite *s = suite_create("nodevice");
    TCase *tc = tcase_create("nodevice");
    tcase_add_test(tc, no_platform_is_a_clean_error);
    suite_add_tcase(s, tc);
    int rc = test_run(s);
    rmdir(dir);
    return rc;
}
