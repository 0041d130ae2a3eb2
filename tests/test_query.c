/* test_query.c - ndcl-query as a user runs it: the listing, its JSON, the
 * self-test on PoCL and the error paths. The tool's path comes in NDCL_QUERY. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "toolrun.h"

/* Runs "env_prefix $NDCL_QUERY args". */
static run_result run_tool(const char *env_prefix, const char *args)
{
    return tool_run("NDCL_QUERY", env_prefix, args);
}

static bool is_pocl(const cJSON *platform)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(platform, "name");
    return cJSON_IsString(name) && strstr(name->valuestring, "Portable Computing Language");
}

static void expect_keys(const cJSON *obj, const char *const *keys, size_t n,
                        cJSON_bool (*is)(const cJSON *))
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, keys[i]);
        ck_assert_msg(v != NULL, "key \"%s\" is missing", keys[i]);
        ck_assert_msg(is(v), "key \"%s\" has the wrong type", keys[i]);
    }
}

/* The JSON listing; returns the PoCL device's "P:D" in spec (or "" when
 * there is no PoCL platform, which this suite treats as a failure). */
static void check_listing_json(const char *json, char *spec, size_t size)
{
    static const char *const plat_str[] = {"name", "vendor", "version"};
    static const char *const dev_str[] = {
        "name", "type", "vendor", "driver_version", "opencl_c_version", "blas"};
    static const char *const dev_num[] = {"index",
                                          "compute_units",
                                          "max_clock_mhz",
                                          "global_mem_bytes",
                                          "local_mem_bytes",
                                          "max_alloc_bytes",
                                          "max_work_group_size",
                                          "global_mem_cache_bytes"};
    static const char *const dev_bool[] = {"fp16", "fp64", "default"};
    cJSON *root = cJSON_Parse(json);
    ck_assert_msg(root != NULL, "--json output does not parse: %.200s", json);
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "ndcl_version")));
    const cJSON *plats = cJSON_GetObjectItemCaseSensitive(root, "platforms");
    ck_assert(cJSON_IsArray(plats));
    ck_assert_int_ge(cJSON_GetArraySize(plats), 1);
    int defaults = 0;
    spec[0] = '\0';
    const cJSON *p;
    cJSON_ArrayForEach(p, plats)
    {
        expect_keys(p, plat_str, 3, cJSON_IsString);
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "index")));
        const cJSON *devs = cJSON_GetObjectItemCaseSensitive(p, "devices");
        ck_assert(cJSON_IsArray(devs));
        const cJSON *d;
        cJSON_ArrayForEach(d, devs)
        {
            expect_keys(d, dev_str, sizeof dev_str / sizeof *dev_str, cJSON_IsString);
            expect_keys(d, dev_num, sizeof dev_num / sizeof *dev_num, cJSON_IsNumber);
            expect_keys(d, dev_bool, sizeof dev_bool / sizeof *dev_bool, cJSON_IsBool);
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "default"))) defaults++;
            double ma = cJSON_GetObjectItemCaseSensitive(d, "max_alloc_bytes")->valuedouble;
            ck_assert(
                ma > 0 &&
                ma <= cJSON_GetObjectItemCaseSensitive(d, "global_mem_bytes")->valuedouble);
            if (is_pocl(p) && !spec[0])
                snprintf(spec, size, "%d:%d",
                         cJSON_GetObjectItemCaseSensitive(p, "index")->valueint,
                         cJSON_GetObjectItemCaseSensitive(d, "index")->valueint);
        }
    }
    ck_assert_msg(spec[0], "no PoCL device in the listing");
    ck_assert_int_eq(defaults, 1);
    cJSON_Delete(root);
}

START_TEST(json_listing)
{
    run_result r = run_tool(NULL, "--json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char spec[32];
    check_listing_json(r.out, spec, sizeof spec);
    /* Self-test results only with --self-test. */
    ck_assert_ptr_null(strstr(r.out, "\"self_test\""));
    run_free(&r);
}
END_TEST

/* The engine of each device's products: the host's OpenBLAS on PoCL in a
 * build with it, CLBlast with NDCL_BLAS=clblast (JSON and text alike). */
static const char *pocl_engine(const char *json)
{
    static char name[32];
    name[0] = '\0';
    cJSON *root = cJSON_Parse(json);
    ck_assert_ptr_nonnull(root);
    const cJSON *p, *d;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "platforms"))
    {
        if (!is_pocl(p)) continue;
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(p, "devices"))
        {
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(d, "blas");
            ck_assert(cJSON_IsString(b));
            snprintf(name, sizeof name, "%s", b->valuestring);
        }
    }
    cJSON_Delete(root);
    return name;
}

/* The convolution algorithms of each device: gemm everywhere, oneDNN's on
 * PoCL in a build with it. */
START_TEST(conv_algorithms_listed)
{
    run_result r = run_tool("env -u NDCL_CPU_BLAS -u NDCL_BLAS", "--json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(root);
    const cJSON *p, *d;
    int devices = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "platforms"))
    {
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(p, "devices"))
        {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "conv_algorithms");
            ck_assert(cJSON_IsArray(a));
            ck_assert(cJSON_GetArraySize(a) >= 1);
            ck_assert_str_eq(cJSON_GetArrayItem(a, 0)->valuestring, "gemm");
#ifdef NDCL_DNNL
            if (is_pocl(p)) {
                ck_assert(cJSON_GetArraySize(a) >= 2);
                ck_assert_str_eq(cJSON_GetArrayItem(a, 1)->valuestring, "dnnl");
            }
#else
            ck_assert_int_eq(cJSON_GetArraySize(a), 1);
#endif
            devices++;
        }
    }
    ck_assert_int_gt(devices, 0);
    cJSON_Delete(root);
    run_free(&r);
    r = run_tool("env -u NDCL_CPU_BLAS -u NDCL_BLAS", "");
    ck_assert_msg(r.status == 0 && strstr(r.out, ", conv gemm"), "listing: %s", r.out);
    run_free(&r);
}
END_TEST

START_TEST(blas_engine_listed)
{
#ifdef NDCL_HOST_BLAS
    const char *expect = "openblas";
#else
    const char *expect = "clblast";
#endif
    run_result r = run_tool("env -u NDCL_CPU_BLAS -u NDCL_BLAS", "--json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(pocl_engine(r.out), expect);
    run_free(&r);
    r = run_tool("NDCL_BLAS=clblast", "--json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(pocl_engine(r.out), "clblast");
    run_free(&r);
    r = run_tool("env -u NDCL_CPU_BLAS -u NDCL_BLAS", "");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char text[32];
    snprintf(text, sizeof text, "BLAS %s", expect);
    ck_assert_msg(strstr(r.out, text), "no \"%s\" in: %s", text, r.out);
    run_free(&r);
}
END_TEST

START_TEST(text_listings)
{
    run_result r = run_tool(NULL, "-l");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "Device #"));
    run_free(&r);

    r = run_tool(NULL, "");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    const char *first = strstr(r.out, "[default]");
    ck_assert_msg(first != NULL, "no default marked: %s", r.out);
    ck_assert_ptr_null(strstr(first + 1, "[default]"));
    run_free(&r);

    r = run_tool(NULL, "--default-spec");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    int p, d;
    ck_assert_int_eq(sscanf(r.out, "%d:%d", &p, &d), 2);
    run_free(&r);
}
END_TEST

START_TEST(help_and_usage)
{
    run_result r = run_tool(NULL, "--help");
    ck_assert_int_eq(r.status, 0);
    static const char *const words[] = {"--self-test", "--json",         "--device",
                                        "NDCL_DEVICE", "NDCL_CACHE_DIR", "NDCL_CACHE",
                                        "NDCL_DEBUG"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        ck_assert_msg(strstr(r.out, words[i]), "--help does not mention %s", words[i]);
    run_free(&r);

    r = run_tool(NULL, "--no-such-option");
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.out, "");
    ck_assert_ptr_nonnull(strstr(r.err, "--no-such-option"));
    run_free(&r);

    r = run_tool(NULL, "--device");
    ck_assert_int_eq(r.status, 2);
    run_free(&r);
}
END_TEST

START_TEST(bad_device)
{
    run_result r = run_tool(NULL, "--device 99:99");
    ck_assert_int_ne(r.status, 0);
    ck_assert_int_ne(r.status, -1);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strstr(r.err, "99:99"), "stderr: \"%s\"", r.err);
    ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "not one line: %s",
                  r.err);
    run_free(&r);

    r = run_tool(NULL, "--self-test --device no-such-device-name");
    ck_assert_int_ne(r.status, 0);
    ck_assert_int_ne(r.status, -1);
    ck_assert(r.err[0] != '\0');
    run_free(&r);
}
END_TEST

START_TEST(no_platform)
{
    char dir[] = "/tmp/ndcl-query-novendors-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char env[128];
    snprintf(env, sizeof env, "OCL_ICD_VENDORS='%s'", dir);
    static const char *const modes[] = {"", "-l", "--json", "--self-test"};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        run_result r = run_tool(env, modes[i]);
        ck_assert_msg(r.status > 0, "\"%s\": exit %d", modes[i], r.status);
        ck_assert_msg(strstr(r.err, "no OpenCL platform"), "\"%s\": stderr \"%s\"",
                      modes[i], r.err);
        run_free(&r);
    }
    rmdir(dir);
}
END_TEST

/* The whole self-test on PoCL, once as JSON (every check named, passing, with
 * its error and tolerance) and once as text (the second run may be served by
 * the binary cache the first one filled). */
START_TEST(self_test_pocl)
{
    run_result r = run_tool(NULL, "--json");
    ck_assert_int_eq(r.status, 0);
    char spec[32], args[96];
    check_listing_json(r.out, spec, sizeof spec);
    run_free(&r);

    snprintf(args, sizeof args, "--json --self-test --device %s", spec);
    r = run_tool(NULL, args);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(root != NULL, "output does not parse (exit %d): %s", r.status, r.err);
    const cJSON *plats = cJSON_GetObjectItemCaseSensitive(root, "platforms");
    ck_assert_int_eq(cJSON_GetArraySize(plats), 1);
    const cJSON *devs =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(plats, 0), "devices");
    ck_assert_int_eq(cJSON_GetArraySize(devs), 1);
    const cJSON *st =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(devs, 0), "self_test");
    ck_assert(cJSON_IsObject(st));
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(st, "error");
    ck_assert_msg(err == NULL, "self-test error: %s",
                  cJSON_IsString(err) ? err->valuestring : "?");
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(st, "build_ms")));
    ck_assert(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(st, "from_cache")));
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(st, "checks");
    ck_assert(cJSON_IsArray(checks));
    ck_assert_int_ge(cJSON_GetArraySize(checks), 13);
    const cJSON *c;
    cJSON_ArrayForEach(c, checks)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c, "message");
        ck_assert(cJSON_IsString(name));
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "tolerance")));
        ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "pass")),
                      "check %s failed: error %g, %s", name->valuestring,
                      cJSON_GetObjectItemCaseSensitive(c, "error")->valuedouble,
                      cJSON_IsString(msg) ? msg->valuestring : "");
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "error")));
    }
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "pass")));
    ck_assert_int_eq(r.status, 0);
    cJSON_Delete(root);
    run_free(&r);

    snprintf(args, sizeof args, "--self-test --device %s", spec);
    r = run_tool(NULL, args);
    ck_assert_msg(r.status == 0, "exit %d:\n%s%s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "PASS"));
    ck_assert_ptr_null(strstr(r.out, "FAIL"));
    run_free(&r);
}
END_TEST

int main(void)
{
    /* The default device must be the rule's, not whatever the caller set. */
    unsetenv("NDCL_DEVICE");
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("listing");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, json_listing);
    tcase_add_test(tc, blas_engine_listed);
    tcase_add_test(tc, conv_algorithms_listed);
    tcase_add_test(tc, text_listings);
    tcase_add_test(tc, help_and_usage);
    tcase_add_test(tc, bad_device);
    tcase_add_test(tc, no_platform);
    suite_add_tcase(s, tc);
    TCase *st = tcase_create("self-test");
    tcase_set_timeout(st, 580);
    tcase_add_test(st, self_test_pocl);
    suite_add_tcase(s, st);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
