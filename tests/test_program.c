/* test_program.c - kernel programs: the on-disk binary cache (miss, hit,
 * corrupt entry rebuilt, disabled, unwritable directory) and build errors
 * reported with their log. */
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "runtime/runtime.h"

static char dir[256];

static ndcl_build_info build_fresh(void)
{
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_SUCCESS);
    ndcl_build_info bi;
    TEST_OK(ctx, ndcl_context_build(ctx, &bi));
    ck_assert_int_eq(bi.built, 1);
    /* A kernel from the built program runs. */
    float out[4] = {0};
    ndcl_tensor *t = NULL;
    TEST_OK(ctx, ndcl_tensor_create(ctx, 2, (size_t[]){2, 2}, &t));
    cl_mem m = ndcl_tensor_cl_mem(t);
    int n = 2, b = 1;
    float v = 3.0f;
    ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(b), NDCL_ARG(v), NDCL_ARG(m)};
    TEST_OK(ctx, ndcl_launch(ctx, "ndcl_eye", 3, (size_t[]){2, 2, 1}, NULL, args, 4));
    TEST_OK(ctx, ndcl_tensor_read(t, out, 4));
    ck_assert_float_eq(out[0], 3.0f);
    ck_assert_float_eq(out[1], 0.0f);
    ck_assert_float_eq(out[3], 3.0f);
    ndcl_tensor_destroy(t);
    ndcl_context_destroy(ctx);
    return bi;
}

START_TEST(cache_miss_then_hit_then_corrupt)
{
    ndcl_build_info first = build_fresh();
    ck_assert_int_eq(first.from_cache, 0);
    ck_assert_ptr_nonnull(strstr(first.cache_path, dir));
    ck_assert_int_eq(access(first.cache_path, R_OK), 0);

    ndcl_build_info second = build_fresh();
    ck_assert_int_eq(second.from_cache, 1);
    ck_assert_str_eq(second.cache_path, first.cache_path);

    /* Truncate the entry: it is rebuilt and rewritten whole. */
    struct stat st;
    ck_assert_int_eq(stat(first.cache_path, &st), 0);
    ck_assert_int_eq(truncate(first.cache_path, st.st_size / 2), 0);
    ndcl_build_info third = build_fresh();
    ck_assert_int_eq(third.from_cache, 0);
    struct stat st2;
    ck_assert_int_eq(stat(first.cache_path, &st2), 0);
    ck_assert_int_gt(st2.st_size, st.st_size / 2); /* rewritten, not left truncated */
    ck_assert_int_eq(build_fresh().from_cache, 1);

    /* Flip a byte in the payload: the checksum catches it. */
    FILE *f = fopen(first.cache_path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 40, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    ck_assert_int_eq(build_fresh().from_cache, 0);
    ck_assert_int_eq(build_fresh().from_cache, 1);
}
END_TEST

START_TEST(cache_disabled_or_unwritable)
{
    setenv("NDCL_CACHE", "0", 1);
    ndcl_build_info bi = build_fresh();
    ck_assert_int_eq(bi.from_cache, 0);
    ck_assert_str_eq(bi.cache_path, "");
    unsetenv("NDCL_CACHE");

    /* A cache directory that cannot be created only costs speed. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/file", dir);
    FILE *f = fopen(bad, "w");
    fclose(f);
    char sub[320];
    snprintf(sub, sizeof sub, "%s/below", bad);
    setenv("NDCL_CACHE_DIR", sub, 1);
    bi = build_fresh();
    ck_assert_int_eq(bi.from_cache, 0);
    bi = build_fresh();
    ck_assert_int_eq(bi.from_cache, 0);
    setenv("NDCL_CACHE_DIR", dir, 1);
}
END_TEST

START_TEST(build_error_reports_log)
{
    ndcl_context *ctx = test_ctx();
    const char *src =
        "__kernel void broken(__global float *x) { x[0] = undeclared_thing; }";
    cl_program p = NULL;
    ndcl_status s = ndcl_program_build_source(ctx, src, strlen(src), NULL, &p, NULL);
    ck_assert_int_eq(s, NDCL_ERR_BUILD);
    ck_assert_ptr_null(p);
    const char *msg = ndcl_context_last_error(ctx);
    ck_assert_ptr_nonnull(strstr(msg, "build log"));
    ck_assert_ptr_nonnull(strstr(msg, "undeclared_thing"));
}
END_TEST

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/ndcl-cache-test-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    setenv("NDCL_CACHE_DIR", dir, 1);
    Suite *s = suite_create("program");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, cache_miss_then_hit_then_corrupt);
    tcase_add_test(tc, cache_disabled_or_unwritable);
    tcase_add_test(tc, build_error_reports_log);
    suite_add_tcase(s, tc);
    int rc = test_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) rc = 1;
    return rc;
}
