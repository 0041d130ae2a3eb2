/* test_bench.c - ndcl-bench as a user runs it: its JSON and CSV rows, the
 * layer rows' vs_conv, and the usage errors. The tool's path comes in NDCL_BENCH. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
        /* Present, and null: bytes moved are only counted for im2col. */
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "gbs")));
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

/* The backward suite either measures or skips with a note, never fails. */
START_TEST(backward_runs_or_skips)
{
    run_result r =
        run_tool("--suite layer-backward --shape 2,8,8,8,8,3 --runs 1 --warmup 0 "
                 "--json");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    cJSON *root = cJSON_Parse(r.out);
    ck_assert_msg(cJSON_IsArray(root), "output: %.300s", r.out);
    if (cJSON_GetArraySize(root) == 0) {
        ck_assert_msg(strstr(r.err, "layer-backward") && strstr(r.err, "skipped"),
                      "no row and no note: %s", r.err);
    } else {
        ck_assert_int_eq(cJSON_GetArraySize(root), 1);
        positive(cJSON_GetArrayItem(root, 0), "median_ms");
        positive(cJSON_GetArrayItem(root, 0), "vs_conv");
    }
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
 * host BLAS engine) and its row names the ratio; rows name the engine. */
START_TEST(gemm_beside_host_blas)
{
    run_result r = tool_run("NDCL_BENCH", "env -u NDCL_CPU_BLAS",
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

    /* The header names the engine; NDCL_CPU_BLAS=0 makes it CLBlast, whose
     * gemm rows come alone. */
    r = tool_run("NDCL_BENCH", "NDCL_CPU_BLAS=0",
                 "--suite gemm --gemm 64,48,32 --runs 1 --warmup 0");
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "# BLAS engine: clblast"), "header: %.400s", r.out);
    ck_assert_msg(!strstr(r.out, "gemm-host"), "output: %.600s", r.out);
    run_free(&r);
#ifndef NDCL_HOST_BLAS
    r = run_tool("--suite gemm-host");
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "host BLAS"));
    run_free(&r);
#endif
}
END_TEST

START_TEST(help_and_usage)
{
    run_result r = run_tool("--help");
    ck_assert_int_eq(r.status, 0);
    static const char *const words[] = {
        "--shape",     "--preset",        "cifar-resnet18", "small",     "--suite",
        "layer-train", "--json",          "--csv",          "--runs",    "--warmup",
        "--device",    "CLOCK_MONOTONIC", "vs_conv",        "gemm-host", "NDCL_CPU_BLAS"};
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
    tcase_add_test(runs, backward_runs_or_skips);
    suite_add_tcase(s, runs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
