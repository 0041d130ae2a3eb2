/* test_context.c - device listing and selection (index, type, name,
 * NDCL_DEVICE), bad specs, and contexts over a caller's OpenCL objects. */
#define _GNU_SOURCE /* strcasestr */
#include "harness.h"
#include "ndcl_cl.h"

#include <ctype.h>

static ndcl_device_info devs[64];
static size_t ndev;

static void list_devices(void)
{
    ck_assert_int_eq(ndcl_devices_list(devs, 64, &ndev), NDCL_SUCCESS);
    ck_assert_uint_ge(ndev, 1);
}

START_TEST(lists_devices_with_one_default)
{
    list_devices();
    int defaults = 0;
    for (size_t i = 0; i < ndev && i < 64; i++) {
        ck_assert_str_ne(devs[i].name, "");
        ck_assert_uint_ge(devs[i].max_work_group_size, 1);
        ck_assert_uint_gt(devs[i].global_mem_bytes, 0);
        defaults += devs[i].is_default;
    }
    ck_assert_int_eq(defaults, 1);
    size_t count = 99;
    ck_assert_int_eq(ndcl_devices_list(NULL, 0, &count), NDCL_SUCCESS);
    ck_assert_uint_eq(count, ndev);
    ck_assert_int_eq(ndcl_devices_list(NULL, 0, NULL), NDCL_ERR_INVALID_ARG);
}
END_TEST

static void expect_device(const ndcl_context_options *o, const ndcl_device_info *want)
{
    ndcl_context *ctx = NULL;
    ndcl_status s = ndcl_context_create(o, &ctx);
    ck_assert_msg(s == NDCL_SUCCESS, "%s", ndcl_context_last_error(NULL));
    ndcl_device_info got;
    ck_assert_int_eq(ndcl_context_device(ctx, &got), NDCL_SUCCESS);
    ck_assert_str_eq(got.name, want->name);
    ck_assert_int_eq(got.platform_index, want->platform_index);
    ck_assert_int_eq(got.device_index, want->device_index);
    ndcl_context_destroy(ctx);
}

START_TEST(selects_by_index_type_and_name)
{
    list_devices();
    const ndcl_device_info *last = &devs[(ndev < 64 ? ndev : 64) - 1];
    ndcl_context_options o = ndcl_context_options_default();
    o.ignore_env = 1;
    o.platform_index = last->platform_index;
    o.device_index = last->device_index;
    expect_device(&o, last);

    o = ndcl_context_options_default();
    o.type = last->type;
    /* The first device of that type. */
    const ndcl_device_info *first_of_type = NULL;
    for (size_t i = 0; i < ndev && !first_of_type; i++)
        if (devs[i].type == last->type) first_of_type = &devs[i];
    expect_device(&o, first_of_type);

    /* A case-changed substring of the name. */
    char sub[8] = {0};
    for (int i = 0; i < 4 && last->name[i]; i++)
        sub[i] = (char)((i % 2) ? toupper((unsigned char)last->name[i])
                                : tolower((unsigned char)last->name[i]));
    o = ndcl_context_options_default();
    o.name = sub;
    const ndcl_device_info *first_named = NULL;
    for (size_t i = 0; i < ndev && !first_named; i++)
        if (strcasestr(devs[i].name, sub)) first_named = &devs[i];
    ck_assert_ptr_nonnull(first_named);
    expect_device(&o, first_named);
}
END_TEST

START_TEST(honours_ndcl_device)
{
    list_devices();
    const ndcl_device_info *d = &devs[0];
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", d->platform_index, d->device_index);
    setenv("NDCL_DEVICE", spec, 1);
    expect_device(NULL, d);
    setenv("NDCL_DEVICE", "nosuchdevice-xyz", 1);
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(NULL), "NDCL_DEVICE"));
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(NULL), "nosuchdevice-xyz"));
    /* An explicit option wins over the environment. */
    ndcl_context_options o = ndcl_context_options_default();
    o.spec = spec;
    expect_device(&o, d);
    unsetenv("NDCL_DEVICE");
}
END_TEST

START_TEST(rejects_bad_specs)
{
    list_devices();
    const char *bad[] = {"9:9", "", "0:99", "no such device at all"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ndcl_context_options o = ndcl_context_options_default();
        o.spec = bad[i];
        o.ignore_env = 1;
        ndcl_context *ctx = (ndcl_context *)0x1;
        ndcl_status s = ndcl_context_create(&o, &ctx);
        ck_assert_msg(s == NDCL_ERR_INVALID_ARG, "spec \"%s\" gave %s", bad[i],
                      ndcl_status_string(s));
        ck_assert_ptr_eq(ctx, (ndcl_context *)0x1); /* untouched on failure */
        ck_assert_str_ne(ndcl_context_last_error(NULL), "");
    }
    ndcl_context_options o = ndcl_context_options_default();
    o.platform_index = 42;
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(&o, &ctx), NDCL_ERR_NO_DEVICE);
    o = ndcl_context_options_default();
    o.device_index = -7;
    ck_assert_int_eq(ndcl_context_create(&o, &ctx), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(NULL), "device_index=-7"));
    ck_assert_int_eq(ndcl_context_create(NULL, NULL), NDCL_ERR_INVALID_ARG);
}
END_TEST

static cl_uint refcount_ctx(cl_context c)
{
    cl_uint n = 0;
    clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof n, &n, NULL);
    return n;
}
static cl_uint refcount_q(cl_command_queue q)
{
    cl_uint n = 0;
    clGetCommandQueueInfo(q, CL_QUEUE_REFERENCE_COUNT, sizeof n, &n, NULL);
    return n;
}
static cl_uint refcount_mem(cl_mem m)
{
    cl_uint n = 0;
    clGetMemObjectInfo(m, CL_MEM_REFERENCE_COUNT, sizeof n, &n, NULL);
    return n;
}

START_TEST(wraps_callers_objects_without_owning_them)
{
    cl_platform_id p;
    cl_device_id d;
    ck_assert_int_eq(clGetPlatformIDs(1, &p, NULL), CL_SUCCESS);
    ck_assert_int_eq(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 1, &d, NULL), CL_SUCCESS);
    cl_int err;
    cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_command_queue q = clCreateCommandQueue(c, d, 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float host[6] = {1, 2, 3, 4, 5, 6};
    cl_mem buf = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof host,
                                host, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_uint rc0 = refcount_ctx(c), rq0 = refcount_q(q), rm0 = refcount_mem(buf);

    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create_from_cl(c, d, q, &ctx), NDCL_SUCCESS);
    /* PoCL's own events hold the queue for a while, so counts are compared
     * around each call rather than with the start. */
    ck_assert_uint_eq(refcount_q(q), rq0 + 1);
    ck_assert_ptr_eq(ndcl_context_cl_queue(ctx), q);
    ndcl_tensor *t = NULL;
    ck_assert_int_eq(ndcl_tensor_wrap(ctx, buf, 2, (size_t[]){2, 3}, &t), NDCL_SUCCESS);
    ck_assert_ptr_eq(ndcl_tensor_cl_mem(t), buf);
    ck_assert_uint_eq(refcount_mem(buf), rm0 + 1);
    float back[6];
    ck_assert_int_eq(ndcl_tensor_read(t, back, 6), NDCL_SUCCESS);
    ck_assert_mem_eq(back, host, sizeof host);
    /* Too large a shape for the buffer is refused, naming the sizes. */
    ndcl_tensor *big = NULL;
    ck_assert_int_eq(ndcl_tensor_wrap(ctx, buf, 2, (size_t[]){3, 3}, &big),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "24 bytes"));
    cl_uint rm1 = refcount_mem(buf);
    ndcl_tensor_destroy(t);
    ck_assert_uint_eq(refcount_mem(buf), rm1 - 1);
    cl_uint rc1 = refcount_ctx(c), rq1 = refcount_q(q);
    ndcl_context_destroy(ctx);
    ck_assert_uint_eq(refcount_ctx(c), rc0); /* ours and our buffers' */
    (void)rc1;
    ck_assert_uint_eq(refcount_q(q), rq1 - 1);
    /* Still usable by the caller. */
    ck_assert_int_eq(
        clEnqueueReadBuffer(q, buf, CL_TRUE, 0, sizeof back, back, 0, NULL, NULL),
        CL_SUCCESS);

    /* A queue of another context is refused. */
    cl_context c2 = clCreateContext(NULL, 1, &d, NULL, NULL, &err);
    ck_assert_int_eq(ndcl_context_create_from_cl(c2, d, q, &ctx), NDCL_ERR_INVALID_ARG);
    cl_uint rc2 = refcount_ctx(c);
    ck_assert_int_eq(ndcl_context_create_from_cl(NULL, d, q, &ctx), NDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(refcount_ctx(c), rc2);
    clReleaseContext(c2);
    clReleaseMemObject(buf);
    clReleaseCommandQueue(q);
    clReleaseContext(c);
}
END_TEST

/* Sets (value) or unsets (NULL) an environment variable. */
static void set_env(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* NDCL_DEVICE_CACHE_BYTES and NDCL_DEVICE_COMPUTE_UNITS replace what the
 * device reports in the context's and the listing's info; a malformed
 * value fails context creation and the listing, naming the variable. */
START_TEST(device_overrides)
{
    char *cache = getenv("NDCL_DEVICE_CACHE_BYTES"),
         *units = getenv("NDCL_DEVICE_COMPUTE_UNITS");
    cache = cache ? strdup(cache) : NULL;
    units = units ? strdup(units) : NULL;
    set_env("NDCL_DEVICE_CACHE_BYTES", "3M");
    set_env("NDCL_DEVICE_COMPUTE_UNITS", "7");
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create(NULL, &ctx));
    ndcl_device_info info;
    TEST_OK(ctx, ndcl_context_device(ctx, &info));
    ck_assert_uint_eq(info.global_mem_cache_bytes, (uint64_t)3 << 20);
    ck_assert_uint_eq(info.compute_units, 7);
    ndcl_context_destroy(ctx);
    list_devices();
    ck_assert_uint_eq(devs[0].global_mem_cache_bytes, (uint64_t)3 << 20);
    set_env("NDCL_DEVICE_CACHE_BYTES", "2g");
    TEST_OK(NULL, ndcl_context_create(NULL, &ctx));
    TEST_OK(ctx, ndcl_context_device(ctx, &info));
    ck_assert_uint_eq(info.global_mem_cache_bytes, (uint64_t)2 << 30);
    ndcl_context_destroy(ctx);

    static const struct {
        const char *name, *value;
    } bad[] = {
        {"NDCL_DEVICE_CACHE_BYTES", "lots"}, {"NDCL_DEVICE_CACHE_BYTES", "12Q"},
        {"NDCL_DEVICE_CACHE_BYTES", "-1"},   {"NDCL_DEVICE_CACHE_BYTES", ""},
        {"NDCL_DEVICE_CACHE_BYTES", "1MB"},  {"NDCL_DEVICE_CACHE_BYTES", "99999999999G"},
        {"NDCL_DEVICE_COMPUTE_UNITS", "0"},  {"NDCL_DEVICE_COMPUTE_UNITS", "two"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_env("NDCL_DEVICE_CACHE_BYTES", NULL);
        set_env("NDCL_DEVICE_COMPUTE_UNITS", NULL);
        set_env(bad[i].name, bad[i].value);
        ctx = NULL;
        ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_ERR_INVALID_ARG);
        ck_assert_ptr_null(ctx);
        ck_assert_msg(strstr(ndcl_context_last_error(NULL), bad[i].name), "%s=%s: %s",
                      bad[i].name, bad[i].value, ndcl_context_last_error(NULL));
        size_t n = 0;
        ck_assert_int_eq(ndcl_devices_list(devs, 64, &n), NDCL_ERR_INVALID_ARG);
    }
    set_env("NDCL_DEVICE_CACHE_BYTES", cache);
    set_env("NDCL_DEVICE_COMPUTE_UNITS", units);
    free(cache);
    free(units);
}
END_TEST

START_TEST(status_strings_are_distinct)
{
    ndcl_status all[] = {NDCL_SUCCESS,           NDCL_ERR_INVALID_ARG, NDCL_ERR_NO_DEVICE,
                         NDCL_ERR_OUT_OF_MEMORY, NDCL_ERR_BUILD,       NDCL_ERR_OPENCL,
                         NDCL_ERR_BLAS,          NDCL_ERR_NUMERICAL,   NDCL_ERR_IO,
                         NDCL_ERR_FORMAT,        NDCL_ERR_UNSUPPORTED, NDCL_ERR_STATE,
                         NDCL_ERR_GROUP};
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            ck_assert_str_ne(ndcl_status_string(all[i]), ndcl_status_string(all[j]));
    ck_assert_str_eq(ndcl_status_string((ndcl_status)12345), "unknown status");
    ck_assert_uint_eq(ndcl_version_number(), NDCL_VERSION_NUMBER);
    ck_assert_str_eq(ndcl_version_string(), NDCL_VERSION_STRING);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("selection");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lists_devices_with_one_default);
    tcase_add_test(tc, selects_by_index_type_and_name);
    tcase_add_test(tc, honours_ndcl_device);
    tcase_add_test(tc, rejects_bad_specs);
    tcase_add_test(tc, status_strings_are_distinct);
    tcase_add_test(tc, device_overrides);
    suite_add_tcase(s, tc);
    TCase *wrap = tcase_create("interop");
    tcase_set_timeout(wrap, 120);
    tcase_add_test(wrap, wraps_callers_objects_without_owning_them);
    suite_add_tcase(s, wrap);
    return test_run(s);
}
