/* test_exit_codes.c - one table of exit codes for every tool (suite
 * reliability): 0 success, 1 a device or numerical failure, 2 bad
 * arguments or files; the same cause gives the same code in ndcl-query,
 * ndcl-bench, ndcl-run and ndcl-train, and every --help shows the table.
 * The tools' paths come in NDCL_QUERY, NDCL_BENCH, NDCL_RUN and NDCL_TRAIN,
 * the golden data in NDCL_TEST_DATA, the data set in NDCL_TRAIN_DATA. */
#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "toolrun.h"

static const char *data_dir, *train_data;
static char tmp_root[] = "/tmp/ndcl-exit-XXXXXX";

enum { QUERY, BENCH, RUN, TRAIN, TOOLS };
static const char *const vars[TOOLS] = {"NDCL_QUERY", "NDCL_BENCH", "NDCL_RUN",
                                        "NDCL_TRAIN"};
static const char *const names[TOOLS] = {"ndcl-query", "ndcl-bench", "ndcl-run",
                                         "ndcl-train"};

/* The arguments each tool needs besides the one under test, so that the
 * run reaches the point tested (the device, for ndcl-run after its files;
 * ndcl-train after its data). */
static void base_args(int t, char *out, size_t n)
{
    if (t == BENCH)
        snprintf(out, n, "--suite gemm --gemm 8,8,8 --runs 1 --warmup 0 -q");
    else if (t == RUN)
        snprintf(out, n, "'%s/conv_g1/layer.safetensors' -i '%s/conv_g1/x1.npy'", data_dir,
                 data_dir);
    else if (t == TRAIN)
        snprintf(out, n, "--data '%s' --limit 64 --batch 64 --test-limit 64 -q",
                 train_data ? train_data : "/nonexistent");
    else
        out[0] = 0;
}

static run_result run(int t, const char *env, const char *fmt, ...)
{
    char args[2048], base[1024], all[3200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    base_args(t, base, sizeof base);
    snprintf(all, sizeof all, "%s %s", base, args);
    return tool_run(vars[t], env, all);
}

static void expect(int t, run_result *r, int status, const char *what, const char *word)
{
    ck_assert_msg(r->status == status, "%s, %s: exit %d, want %d\n%s%s", names[t], what,
                  r->status, status, r->out, r->err);
    ck_assert_msg(!word || strstr(r->err, word), "%s, %s: no \"%s\" in: %s", names[t], what,
                  word, r->err);
    run_free(r);
}

static bool skip(int t)
{
    return t == TRAIN && !train_data;
}

START_TEST(bad_device_is_2)
{
    for (int t = 0; t < TOOLS; t++) {
        if (skip(t)) continue;
        run_result r = run(t, NULL, "--device 99:99");
        expect(t, &r, 2, "--device 99:99 (no such device)", "99:99");
        r = run(t, NULL, "--device ''");
        expect(t, &r, 2, "--device '' (malformed)", "--device");
    }
}
END_TEST

/* No OpenCL platform at all (an empty vendors directory): the machine's
 * failure, 1 in every tool. */
START_TEST(no_platform_is_1)
{
    char dir[512], env[600];
    snprintf(dir, sizeof dir, "%s/vendors", tmp_root);
    mkdir(dir, 0700);
    snprintf(env, sizeof env, "OCL_ICD_VENDORS='%s'", dir);
    for (int t = 0; t < TOOLS; t++) {
        if (skip(t)) continue;
        run_result r = run(t, env, "");
        expect(t, &r, 1, "no OpenCL platform", NULL);
    }
}
END_TEST

START_TEST(usage_is_2)
{
    for (int t = 0; t < TOOLS; t++) {
        run_result r = tool_run(vars[t], NULL, "--no-such-option");
        expect(t, &r, 2, "an unknown option", "--no-such-option");
    }
    run_result r =
        tool_run(vars[RUN], NULL, "/nonexistent.safetensors -i /nonexistent.npy");
    expect(RUN, &r, 2, "a missing input", "/nonexistent.npy");
    r = tool_run(vars[TRAIN], NULL, "--data /nonexistent -q");
    expect(TRAIN, &r, 2, "a missing data set", "/nonexistent");
}
END_TEST

/* A geometry past the kernels' int indexing is the argument's (2), and
 * the message names the value that does not fit: the sampling stride
 * 3 x 1000000, not the small input or patch matrix. */
START_TEST(geometry_overflow_is_2)
{
    run_result r =
        tool_run(vars[BENCH], NULL,
                 "--suite gemm --shape 1,4,8,8,4,3,1000000 --runs 1 --warmup 0 -q");
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "sampling stride 3000000") && !strstr(r.err, "256 values"),
                  "%s", r.err);
    run_free(&r);
}
END_TEST

START_TEST(help_shows_the_table)
{
    for (int t = 0; t < TOOLS; t++) {
        run_result r = tool_run(vars[t], NULL, "--help");
        ck_assert_msg(r.status == 0, "%s --help: exit %d", names[t], r.status);
        const char *at = strstr(r.out, "Exit status (the same table in every ndcl tool):");
        ck_assert_msg(at, "%s --help has no exit-code table:\n%s", names[t], r.out);
        ck_assert_msg(strstr(at, "0  success") && strstr(at, "1  a device or numerical") &&
                          strstr(at, "2  bad arguments") && strstr(at, "matches no device"),
                      "%s --help: %s", names[t], at);
        run_free(&r);
    }
}
END_TEST

int main(void)
{
    data_dir = getenv("NDCL_TEST_DATA");
    train_data = getenv("NDCL_TRAIN_DATA");
    if (train_data && access(train_data, R_OK) != 0) train_data = NULL;
    if (!data_dir || !mkdtemp(tmp_root)) {
        fprintf(stderr, "NDCL_TEST_DATA not set or no temporary directory\n");
        return 1;
    }
    if (!train_data) fprintf(stderr, "no NDCL_TRAIN_DATA: ndcl-train's runs are skipped\n");
    Suite *s = suite_create("exit_codes");
    TCase *tc = tcase_create("tools");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bad_device_is_2);
    tcase_add_test(tc, no_platform_is_1);
    tcase_add_test(tc, usage_is_2);
    tcase_add_test(tc, geometry_overflow_is_2);
    tcase_add_test(tc, help_shows_the_table);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return failed ? 1 : 0;
}
