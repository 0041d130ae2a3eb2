/* test_bench.c - ndcl-bench as a user runs it: its JSON and CSV rows, the
 * layer rows' vs_conv and workspace, the training step next to the plain
 * conv's, the bandwidth suites, failures and usage errors. The tool's path
 * comes in NDCL_BENCH. */
#include <check.h>
#include <math.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "toolrun.h"

/* Runs "$NDCL_BENCH args" (results on stdout, progress and errors on
 * stderr). */
static run_result run_tool(const char *args)
{
    return tool_run("NDCL_BENCH", NULL, args);
}

static double positive(const cJSON *row, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    ck_assert_msg(cJSON_IsNumber(v), "key \"%s\" is missing or not a number", key);
    ck_assert_msg(v->valuedouble > 0, "%s = %g (must be > 0)", key, v->valuedouble);
    return v->valuedouble;
}

/* The small preset's two shapes, three suites each, every row complete. */
START_TEST(json_layers)
{
    run_result r =
        run_tool("--suite conv,layer-train,layer-eval --preset small --runs 2 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(root != NULL, "--json output does not parse: %.300s", r.out);
    ck_assert(cJSON_IsArray(root));
    ck_assert_int_eq(cJSON_GetArraySize(root), 6);
    int seen[3] = {0, 0, 0};
    const cJSON *row;
    cJSON_ArrayForEach(row, root)
    {
        static const char *const strs[] = {"suite", "shape", "device"};
        for (size_t i = 0; i < 3; i++)
            ck_assert_msg(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, strs[i])),
                          "key \"%s\" is missing or not a string", strs[i]);
        const char *suite = cJSON_GetObjectItemCaseSensitive(row, "suite")->valuestring;
        const cJSON *runs = cJSON_GetObjectItemCaseSensitive(row, "runs");
        ck_assert(cJSON_IsNumber(runs));
        ck_assert_int_eq(runs->valueint, 2);
        positive(row, "cold_ms");
        double mn = positive(row, "min_ms"), med = positive(row, "median_ms");
        ck_assert_msg(mn <= med, "min %g > median %g", mn, med);
        positive(row, "gflops");
        /* Present, and null: bytes moved are counted for the memory-bound
         * kernels only. */
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "gbs")));
        positive(row, "workspace_bytes");
        const cJSON *vs = cJSON_GetObjectItemCaseSensitive(row, "vs_conv");
        if (!strcmp(suite, "conv")) {
            ck_assert_ptr_null(vs);
            seen[0]++;
        } else {
            ck_assert_msg(!strcmp(suite, "layer-train") || !strcmp(suite, "layer-eval"),
                          "unexpected suite %s", suite);
            positive(row, "vs_conv");
            seen[!strcmp(suite, "layer-train") ? 1 : 2]++;
        }
    }
    ck_assert_int_eq(seen[0], 2);
    ck_assert_int_eq(seen[1], 2);
    ck_assert_int_eq(seen[2], 2);
    cJSON_Delete(root);
    run_free(&r);
}
END_TEST

/* CSV with the same columns; im2col is the row with a bandwidth. */
START_TEST(csv_im2col)
{
    run_result r = run_tool("--suite im2col --shape 2,8,8,8,8,3 --runs 1 --warmup 0 --csv");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    const char *head =
        "suite,shape,device,runs,cold_ms,min_ms,median_ms,gflops,gbs,vs_conv";
    ck_assert_msg(!strncmp(r.out, head, strlen(head)), "header: %.200s", r.out);
    const char *line = strchr(r.out, '\n');
    ck_assert_ptr_nonnull(line);
    ck_assert_msg(!strncmp(line + 1, "im2col,2x8x8x8->8 k3,", 21), "row: %s", line + 1);
    /* runs, cold, min, median, an empty gflops, then a positive gbs. */
    const char *p = line + 1;
    for (int i = 0; i < 3; i++)
        p = strchr(p, ',') + 1;
    double v[4];
    ck_assert_int_eq(sscanf(p, "%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3]), 4);
    ck_assert(v[0] == 1 && v[1] > 0 && v[2] > 0 && v[3] > 0);
    p = strstr(p, ",,");
    ck_assert_msg(p != NULL, "gflops should be empty: %s", line + 1);
    double gbs;
    ck_assert_int_eq(sscanf(p + 2, "%lf", &gbs), 1);
    ck_assert(gbs > 0);
    run_free(&r);
}
END_TEST

static const cJSON *row_of(const cJSON *root, const char *suite)
{
    const cJSON *row;
    cJSON_ArrayForEach(row, root)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, "suite");
        if (cJSON_IsString(v) && !strcmp(v->valuestring, suite)) return row;
    }
    ck_abort_msg("no %s row", suite);
    return NULL;
}

static double num(const cJSON *row, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    ck_assert_msg(cJSON_IsNumber(v), "key \"%s\" is missing or not a number", key);
    return v->valuedouble;
}

/* The backward suite measures: one row, over the plain conv's backward
 * (measured though not listed), with the layer's workspace. */
START_TEST(backward_runs)
{
    run_result r =
        run_tool("--suite layer-backward --shape 2,8,8,8,8,3 --runs 1 --warmup 0 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(cJSON_IsArray(root), "output: %.300s", r.out);
    ck_assert_int_eq(cJSON_GetArraySize(root), 1);
    const cJSON *row = cJSON_GetArrayItem(root, 0);
    positive(row, "median_ms");
    positive(row, "vs_conv");
    positive(row, "workspace_bytes");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "gflops")));
    cJSON_Delete(root);
    run_free(&r);
}
END_TEST

/* A failing suite fails the run (exit 1, the suite and the reason on
 * stderr, no table), the backward's included: here the layer's forward
 * needs a covariance of 36864² features (a block of 4096 channels), more
 * than the device's largest allocation, where the plain conv runs. */
START_TEST(backward_failure_fails)
{
    run_result r = run_tool("--suite layer-backward --shape 1,4096,3,3,1,3,1,1,1,4096 "
                            "--runs 1 --warmup 0");
    ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strstr(r.err, "layer-backward") && strstr(r.err, "largest allocation"),
                  "stderr: %s", r.err);
    ck_assert_ptr_null(strstr(r.err, "skipped"));
    run_free(&r);
}
END_TEST

/* The training step: layer-step = layer-train + layer-backward, over the
 * plain conv's step, conv + conv-backward, all measured in one run. */
START_TEST(step_rows)
{
    run_result r = run_tool("--suite conv,conv-backward,layer-train,layer-backward "
                            "--shape 2,8,8,8,8,3 --runs 2 --warmup 0 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(cJSON_IsArray(root), "output: %.300s", r.out);
    ck_assert_int_eq(cJSON_GetArraySize(root), 5);
    const cJSON *conv = row_of(root, "conv"), *cb = row_of(root, "conv-backward");
    const cJSON *lt = row_of(root, "layer-train"), *lb = row_of(root, "layer-backward");
    const cJSON *st = row_of(root, "layer-step");
    double step = num(lt, "median_ms") + num(lb, "median_ms");
    ck_assert_msg(fabs(num(st, "median_ms") - step) <= 1e-5 * step, "step %g vs %g",
                  num(st, "median_ms"), step);
    double conv_step = num(conv, "median_ms") + num(cb, "median_ms");
    ck_assert_msg(fabs(num(st, "vs_conv") - step / conv_step) <= 1e-4 * step / conv_step,
                  "vs_conv %g, expected %g", num(st, "vs_conv"), step / conv_step);
    ck_assert_msg(
        fabs(num(cb, "vs_conv") - num(cb, "median_ms") / num(conv, "median_ms")) <=
            1e-4 * num(cb, "vs_conv"),
        "conv-backward vs_conv %g", num(cb, "vs_conv"));
    ck_assert_msg(fabs(num(lb, "vs_conv") - num(lb, "median_ms") / num(cb, "median_ms")) <=
                      1e-4 * num(lb, "vs_conv"),
                  "layer-backward vs_conv %g", num(lb, "vs_conv"));
    positive(cb, "gflops");
    positive(cb, "workspace_bytes");
    cJSON_Delete(root);
    run_free(&r);
}
END_TEST

/* A row per convolution algorithm the device has and fits; the conv and
 * conv-backward rows name what auto took. */
START_TEST(algorithm_rows)
{
    run_result r =
        run_tool("--suite conv,conv-backward,conv/gemm,conv/dnnl,conv/winograd,"
                 "conv-backward/gemm,conv-backward/dnnl --shape 2,16,8,8,16,3,1,1 "
                 "--runs 1 --warmup 0 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(root);
    const char *note =
        cJSON_GetObjectItemCaseSensitive(row_of(root, "conv"), "note")->valuestring;
    ck_assert_msg(strstr(note, "auto: "), "conv note: %s", note);
    note = cJSON_GetObjectItemCaseSensitive(row_of(root, "conv-backward"), "note")
               ->valuestring;
    ck_assert_msg(strstr(note, "auto: dx "), "conv-backward note: %s", note);
    positive(row_of(root, "conv/gemm"), "median_ms");
    positive(row_of(root, "conv-backward/gemm"), "median_ms");
#ifdef NDCL_DNNL
    positive(row_of(root, "conv/dnnl"), "median_ms");
    positive(row_of(root, "conv-backward/dnnl"), "median_ms");
#else
    /* Not built: no row, and the run still succeeds. */
    const cJSON *row;
    cJSON_ArrayForEach(row, root)
    {
        const char *suite = cJSON_GetObjectItemCaseSensitive(row, "suite")->valuestring;
        ck_assert_msg(!strstr(suite, "dnnl") && !strstr(suite, "winograd"), "row %s",
                      suite);
    }
#endif
    cJSON_Delete(root);
    run_free(&r);
}
END_TEST

/* The memory-bound suites report a bandwidth. */
START_TEST(bandwidth_rows)
{
    run_result r = run_tool("--suite copy,conv-im2col,col2im,layout,bias-grad "
                            "--shape 3,4,8,8,4,3 --runs 1 --warmup 0 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(cJSON_IsArray(root), "output: %.300s", r.out);
    ck_assert_int_eq(cJSON_GetArraySize(root), 5);
    const cJSON *row;
    cJSON_ArrayForEach(row, root)
    {
        positive(row, "gbs");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "gflops")));
        ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(row, "vs_conv"));
    }
    positive(row_of(root, "conv-im2col"), "workspace_bytes");
    ck_assert(cJSON_IsNull(
        cJSON_GetObjectItemCaseSensitive(row_of(root, "copy"), "workspace_bytes")));
    cJSON_Delete(root);
    run_free(&r);
}
END_TEST

START_TEST(bad_shapes)
{
    static const char *const bad[] = {
        "8,16,16,16,16",                /* too few values */
        "8,16,16,16,16,3,1,1,1,64,3,9", /* too many */
        "8,16,x,16,16,3",               /* not a number */
        "8,0,16,16,16,3",               /* zero */
        "8,16,2,2,16,7,1,0",            /* kernel larger than the padded input */
        "8,16,16,16,16,3,1,1,3",        /* groups do not divide C */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[128];
        snprintf(args, sizeof args, "--shape %s --suite conv --json", bad[i]);
        run_result r = run_tool(args);
        ck_assert_msg(r.status == 2, "\"%s\": exit %d", bad[i], r.status);
        ck_assert_str_eq(r.out, "");
        ck_assert_msg(strstr(r.err, "shape") && strstr(r.err, bad[i]),
                      "\"%s\": stderr does not name it: %s", bad[i], r.err);
        run_free(&r);
    }
}
END_TEST

/* The gemm suite brings the host BLAS's own rate along (builds with the
 * OpenBLAS engine) and its row names the ratio; rows name the engine. */
START_TEST(gemm_beside_host_blas)
{
    run_result r = tool_run("NDCL_BENCH", "env -u NDCL_CPU_BLAS -u NDCL_BLAS",
                            "--suite gemm --gemm 64,48,32 --runs 2 --warmup 0 --json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(root != NULL, "--json output does not parse: %.300s", r.out);
#ifdef NDCL_HOST_BLAS
    ck_assert_int_eq(cJSON_GetArraySize(root), 2);
    const char *engine = "openblas";
#else
    ck_assert_int_eq(cJSON_GetArraySize(root), 1);
    const char *engine = "clblast";
#endif
    const cJSON *row;
    int i = 0;
    cJSON_ArrayForEach(row, root)
    {
        const char *suite = cJSON_GetObjectItemCaseSensitive(row, "suite")->valuestring;
        const char *note = cJSON_GetObjectItemCaseSensitive(row, "note")->valuestring;
        const cJSON *blas = cJSON_GetObjectItemCaseSensitive(row, "blas");
        ck_assert(cJSON_IsString(blas));
        ck_assert_str_eq(blas->valuestring, engine);
        ck_assert_str_eq(suite, i == 0 ? "gemm" : "gemm-host");
        positive(row, "gflops");
#ifdef NDCL_HOST_BLAS
        if (i == 0) ck_assert_msg(strstr(note, "x host BLAS"), "gemm note: %s", note);
#else
        ck_assert_ptr_null(strstr(note, "host BLAS"));
#endif
        i++;
    }
    cJSON_Delete(root);
    run_free(&r);

    /* The header names the engine; NDCL_BLAS=clblast makes it CLBlast, whose
     * gemm rows come alone. */
    r = tool_run("NDCL_BENCH", "NDCL_BLAS=clblast",
                 "--suite gemm --gemm 64,48,32 --runs 1 --warmup 0");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "# BLAS engine: clblast"), "header: %.400s", r.out);
    ck_assert_msg(!strstr(r.out, "gemm-host"), "output: %.600s", r.out);
    run_free(&r);
#ifndef NDCL_HOST_BLAS
    r = run_tool("--suite gemm-host");
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "OpenBLAS engine"));
    run_free(&r);
#endif
}
END_TEST

/* The convolution's workspace budget is printed, and it follows the device's
 * reported cache (NDCL_DEVICE_CACHE_BYTES stands in for it) within its
 * bounds on a CPU device: half of 6 MiB is 3, half of a virtual machine's
 * 480 MiB is clamped to 16, no cache at all gives the 1 MiB floor. */
START_TEST(budget_printed)
{
    static const struct {
        const char *cache;
        double mib;
    } cases[] = {{"6M", 3}, {"480M", 16}, {"0", 1}};
    double seen[3];
    bool cpu = true;
    for (size_t i = 0; i < 3; i++) {
        char env[128];
        snprintf(env, sizeof env, "env NDCL_DEVICE_CACHE_BYTES=%s", cases[i].cache);
        run_result r = tool_run("NDCL_BENCH", env, "--suite conv --preset small --runs 1");
        ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
        const char *line = strstr(r.out, "# convolution chunks: workspace budget ");
        ck_assert_msg(line != NULL, "no budget line:\n%s", r.out);
        ck_assert_int_eq(
            sscanf(line, "# convolution chunks: workspace budget %lf", &seen[i]), 1);
        cpu = strstr(line, "fixed off CPU devices") == NULL;
        if (cpu) {
            ck_assert_msg(fabs(seen[i] - cases[i].mib) < 0.05,
                          "cache %s: budget %g MiB, want %g", cases[i].cache, seen[i],
                          cases[i].mib);
            ck_assert_msg(strstr(line, "set by NDCL_DEVICE_CACHE_BYTES"), "%s", line);
        }
        run_free(&r);
    }
    if (!cpu) ck_assert(seen[0] == seen[1] && seen[1] == seen[2]);

    /* A malformed value is refused, naming the variable. */
    run_result r = tool_run("NDCL_BENCH", "env NDCL_DEVICE_CACHE_BYTES=lots",
                            "--suite conv --preset small --runs 1");
    ck_assert_msg(r.status != 0 && strstr(r.err, "NDCL_DEVICE_CACHE_BYTES"), "exit %d: %s",
                  r.status, r.err);
    run_free(&r);
}
END_TEST

START_TEST(help_and_usage)
{
    run_result r = run_tool("--help");
    ck_assert_int_eq(r.status, 0);
    static const char *const words[] = {
        "--shape",       "--preset",        "cifar-resnet18",  "small",     "--suite",
        "layer-train",   "--json",          "--csv",           "--runs",    "--warmup",
        "--device",      "CLOCK_MONOTONIC", "vs_conv",         "gemm-host", "NDCL_BLAS",
        "conv-backward", "layer-step",      "workspace_bytes", "copy",      "col2im",
        "conv/ALGO",     "NDCL_CONV_ALGO"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        ck_assert_msg(strstr(r.out, words[i]), "--help does not mention %s", words[i]);
    run_free(&r);

    static const char *const usage[] = {"--no-such-option", "--suite nonsense",
                                        "--preset nonsense", "--runs 0", "--json --csv"};
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        r = run_tool(usage[i]);
        ck_assert_msg(r.status == 2, "\"%s\": exit %d", usage[i], r.status);
        ck_assert_str_eq(r.out, "");
        ck_assert(r.err[0] != '\0');
        run_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("usage");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, help_and_usage);
    tcase_add_test(tc, bad_shapes);
    suite_add_tcase(s, tc);
    /* Runs that build kernels: slow on PoCL when the binary cache is cold. */
    TCase *runs = tcase_create("runs");
    tcase_set_timeout(runs, 580);
    tcase_add_test(runs, json_layers);
    tcase_add_test(runs, csv_im2col);
    tcase_add_test(runs, gemm_beside_host_blas);
    tcase_add_test(runs, backward_runs);
    tcase_add_test(runs, backward_failure_fails);
    tcase_add_test(runs, step_rows);
    tcase_add_test(runs, bandwidth_rows);
    tcase_add_test(runs, budget_printed);
    tcase_add_test(runs, algorithm_rows);
    suite_add_tcase(s, runs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
