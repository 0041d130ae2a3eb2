/* test_mpi_train.c - ndcl-train --sync under mpirun (suite mpi): K ranks,
 * each on its slice of every batch, train as one process does with the
 * whole batch, with and without deconvolution and with augmented batches;
 * a batch that does not split over the ranks exits 2 on every rank, naming
 * it. K ranks add their partial sums in another order than one rank does,
 * so the runs agree to the rounding of those sums carried through a short
 * run, not bit for bit: see compare(). Paths come in NDCL_TRAIN,
 * NDCL_MPIRUN and NDCL_TRAIN_DATA. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "toolrun.h"

static char tmp_root[] = "/tmp/ndcl-mpi-train-XXXXXX";
static const char *data_dir;

/* The run's settings: 512 images in 8 steps of 64, 500 test images. */
#define TEST_IMAGES 500
#define STR_(x) #x
#define STR(x) STR_(x)
#define RUN_ARGS "--limit 512 --batch 64 --test-limit " STR(TEST_IMAGES) " -q"

static cJSON *read_json(const char *path)
{
    char *text = tool_output_file(path);
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s is not JSON", path);
    free(text);
    return j;
}

/* One rank (K = 1: without mpirun or --sync) or K ranks; the record. net
 * is the --net value, with more flags after it if need be. */
static cJSON *train(int K, const char *net)
{
    static int runs;
    char json[512], args[2048];
    snprintf(json, sizeof json, "%s/run-%d.json", tmp_root, ++runs);
    const char *tool = getenv("NDCL_TRAIN");
    ck_assert_ptr_nonnull(tool);
    run_result r;
    if (K == 1) {
        snprintf(args, sizeof args, "--net %s --data '%s' --json '%s' " RUN_ARGS, net,
                 data_dir, json);
        r = tool_run("NDCL_TRAIN", "timeout 300", args);
    } else {
        snprintf(args, sizeof args,
                 "-n %d --oversubscribe %s '%s' --sync --net %s --data '%s' --json "
                 "'%s' " RUN_ARGS,
                 K, geteuid() == 0 ? "--allow-run-as-root" : "", tool, net, data_dir, json);
        r = tool_run("NDCL_MPIRUN", "timeout 300", args);
    }
    ck_assert_msg(r.status == 0, "%d ranks, --net %s: exit %d\n%s", K, net, r.status,
                  r.err);
    run_free(&r);
    return read_json(json);
}

static const cJSON *epoch1(const cJSON *j)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "epochs"), 0);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

/* What K ranks may differ from one rank by, and why:
 * - the first step's loss: the same weights and images, the batch's
 *   statistics and the loss summed in another order: float rounding
 *   (first_tol, relative);
 * - the later losses: that rounding, carried through a few SGD steps and
 *   grown by the whitening of 64-image statistics (tol, relative: with
 *   deconvolution 1.2e-4 to 6.5e-4 were measured after 8 steps, 5e-3 is
 *   allowed; without, 1.1e-7 measured, 1e-4 allowed); a rank that took
 *   other images, another batch split or other moves is off from the
 *   first step on;
 * - the test accuracy: weights that differ by that rounding classify the
 *   same images, except those whose two best logits are closer than the
 *   difference; at most MAX_FLIPS of the 500 test images (one rank's
 *   mistake on a slice, or weights from another step, moves tens). */
#define MAX_FLIPS 5
static void compare(const char *net, int K, double first_tol, double tol)
{
    cJSON *one = train(1, net), *many = train(K, net);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(many, "settings");
    ck_assert_int_eq((int)num(s, "ranks"), K);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(epoch1(one), "losses");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(epoch1(many), "losses");
    ck_assert_int_eq(cJSON_GetArraySize(a), 8);
    ck_assert_int_eq(cJSON_GetArraySize(b), 8);
    for (int i = 0; i < 8; i++) {
        double x = cJSON_GetArrayItem(a, i)->valuedouble;
        double y = cJSON_GetArrayItem(b, i)->valuedouble;
        double rel = fabs(x - y) / fabs(x);
        ck_assert_msg(rel <= (i == 0 ? first_tol : tol),
                      "--net %s, %d ranks, step %d: loss %.7g, one rank %.7g (rel %.2g)",
                      net, K, i + 1, y, x, rel);
    }
    double acc1 = num(epoch1(one), "test_acc"), accK = num(epoch1(many), "test_acc");
    const double flips = fabs(accK - acc1) * TEST_IMAGES;
    ck_assert_msg(flips <= MAX_FLIPS + 0.5,
                  "--net %s: %d ranks reached test accuracy %.4f, one rank %.4f: %.0f of "
                  "%d test images apart (at most %d allowed)",
                  net, K, accK, acc1, flips, TEST_IMAGES, MAX_FLIPS);
    /* Above chance: the comparison is of a run that learnt. */
    ck_assert_msg(acc1 > 0.3, "--net %s: test accuracy %.4f", net, acc1);
    cJSON_Delete(one);
    cJSON_Delete(many);
}

START_TEST(nd_two_ranks)
{
    compare("nd", 2, 1e-6, 5e-3);
}
END_TEST

START_TEST(nd_four_ranks)
{
    compare("nd", 4, 1e-6, 5e-3);
}
END_TEST

/* Augmented batches: every rank draws its images' moves as one rank does. */
START_TEST(nd_augmented_two_ranks)
{
    compare("nd --augment", 2, 1e-6, 5e-3);
}
END_TEST

/* Amortised statistics and evaluations between the epochs: every rank's
 * layers take their statistics on the same steps, and every rank joins
 * the same evaluations. */
START_TEST(nd_stats_every_two_ranks)
{
    compare("nd --stats-every 3 --eval-every 3", 2, 1e-6, 5e-3);
}
END_TEST

START_TEST(plain_two_ranks)
{
    compare("plain", 2, 1e-6, 1e-4);
}
END_TEST

START_TEST(batch_does_not_split)
{
    char args[2048];
    const char *tool = getenv("NDCL_TRAIN");
    ck_assert_ptr_nonnull(tool);
    snprintf(args, sizeof args, "-n 3 --oversubscribe %s '%s' --sync --data '%s' " RUN_ARGS,
             geteuid() == 0 ? "--allow-run-as-root" : "", tool, data_dir);
    run_result r = tool_run("NDCL_MPIRUN", "timeout 300", args);
    ck_assert_msg(r.status == 2, "status %d: %s", r.status, r.err);
    for (int k = 0; k < 3; k++) {
        char want[128];
        snprintf(want, sizeof want,
                 "rank %d: --sync: --batch 64 does not split evenly over 3 ranks", k);
        ck_assert_msg(strstr(r.err, want), "no message from rank %d:\n%s", k, r.err);
    }
    run_free(&r);
}
END_TEST

/* Two ranks, rank 1 with more arguments (MPMD: mpirun -n 1 A : -n 1 B);
 * the job's result. env1 goes before rank 1's tool (a command such as
 * "env X=1"), extra0 after rank 0's arguments. */
static run_result two_ranks(const char *extra0, const char *env1, const char *extra1)
{
    char args[4096];
    const char *tool = getenv("NDCL_TRAIN");
    ck_assert_ptr_nonnull(tool);
    snprintf(args, sizeof args,
             "--oversubscribe %s -n 1 '%s' --sync --data '%s' " RUN_ARGS
             " %s : -n 1 %s '%s' --sync --data '%s' " RUN_ARGS " %s",
             geteuid() == 0 ? "--allow-run-as-root" : "", tool, data_dir, extra0, env1,
             tool, data_dir, extra1);
    /* A job that hangs fails here at the timeout (status 124). */
    return tool_run("NDCL_MPIRUN", "timeout 120", args);
}

static void refused(run_result *r, const char *w1, const char *w2)
{
    ck_assert_msg(r->status == 2, "status %d: %s", r->status, r->err);
    ck_assert_msg(strstr(r->err, w1) && strstr(r->err, w2), "no \"%s\" and \"%s\" in: %s",
                  w1, w2, r->err);
    run_free(r);
}

/* Settings that must agree: the job stops at start-up on every rank,
 * rank 0 naming the setting and both values; nothing is written. */
START_TEST(ranks_disagree)
{
    char save[600], extra[700];
    snprintf(save, sizeof save, "%s/disagree-save", tmp_root);
    snprintf(extra, sizeof extra, "--save '%s'", save);
    run_result r = two_ranks(extra, "", "--seed 2");
    refused(&r, "rank 0: --sync: not starting: --seed differs between the ranks",
            "\"2\" on rank 1");
    r = two_ranks(extra, "", "--net plain");
    refused(&r, "--net differs", "\"plain\" on rank 1");
    r = two_ranks(extra, "", "--limit 256");
    refused(&r, "--limit (training images) differs", "\"256\" on rank 1");
    r = two_ranks(extra, "", "--batch 32");
    refused(&r, "--batch differs", "\"32\" on rank 1");
    ck_assert_msg(access(save, F_OK) != 0, "a refused job created %s", save);
}
END_TEST

/* One rank failing before training (its data missing or truncated, no
 * such device): every rank stops with status 2, the failing rank and its
 * reason named. */
START_TEST(rank_fails_before_training)
{
    char dir[600], cmd[2048];
    snprintf(dir, sizeof dir, "%s/truncated", tmp_root);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for f in train-labels-idx1-ubyte t10k-images-idx3-ubyte "
             "t10k-labels-idx1-ubyte; do ln -s '%s'/$f.gz .; done && head -c 100000 "
             "'%s/train-images-idx3-ubyte.gz' > train-images-idx3-ubyte.gz",
             dir, data_dir, data_dir);
    ck_assert_int_eq(system(cmd), 0);
    char extra[700];
    snprintf(extra, sizeof extra, "--data '%s'", dir);
    run_result r = two_ranks("", "", extra);
    refused(&r, "rank 0: --sync: not starting: rank 1 failed", "truncated");
    r = two_ranks("", "", "--data /nonexistent");
    refused(&r, "rank 1 failed: /nonexistent", "No such file");
    r = two_ranks("", "", "--device 99:99");
    refused(&r, "rank 1 failed: --device \"99:99\"", "no device");
}
END_TEST

/* A rank that fails during the run ends the job within seconds: rank 0's
 * writing of --save fails after training (the library's short-write hook,
 * on rank 0 only) while rank 1 has finished; rank 0 names itself and the
 * reason, and the job ends (MPI_Abort) with nothing written. */
START_TEST(rank_fails_during_run)
{
    char save[600], extra[700], args[4096];
    snprintf(save, sizeof save, "%s/during-save", tmp_root);
    snprintf(extra, sizeof extra, "--save '%s'", save);
    const char *tool = getenv("NDCL_TRAIN");
    ck_assert_ptr_nonnull(tool);
    snprintf(args, sizeof args,
             "--oversubscribe %s -n 1 env NDCL_TEST_SHORT_WRITE=1 '%s' --sync --data "
             "'%s' " RUN_ARGS " %s : -n 1 '%s' --sync --data '%s' " RUN_ARGS,
             geteuid() == 0 ? "--allow-run-as-root" : "", tool, data_dir, extra, tool,
             data_dir);
    run_result r = tool_run("NDCL_MPIRUN", "timeout 120", args);
    ck_assert_msg(r.status != 0 && r.status != 124, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "rank 0: ") && strstr(r.err, "simulated"), "%s", r.err);
    run_free(&r);
    ck_assert_msg(access(save, F_OK) != 0, "a failed job created %s", save);
    /* A rank killed in the middle of training: the job ends too. */
    snprintf(args, sizeof args,
             "--oversubscribe %s -n 1 '%s' --sync --data '%s' " RUN_ARGS
             " --epochs 100 %s : -n 1 sh -c \"'%s' --sync --data '%s' " RUN_ARGS
             " --epochs 100 & p=\\$!; sleep 8; kill -TERM \\$p; wait \\$p\"",
             geteuid() == 0 ? "--allow-run-as-root" : "", tool, data_dir, extra, tool,
             data_dir);
    r = tool_run("NDCL_MPIRUN", "timeout 120", args);
    ck_assert_msg(r.status != 0 && r.status != 124, "status %d: %s", r.status, r.err);
    run_free(&r);
    ck_assert_msg(access(save, F_OK) != 0, "a killed job created %s", save);
}
END_TEST

int main(void)
{
    data_dir = getenv("NDCL_TRAIN_DATA");
    if (!data_dir || !mkdtemp(tmp_root)) {
        fprintf(stderr, "NDCL_TRAIN_DATA not set or no temporary directory\n");
        return 1;
    }
    Suite *s = suite_create("mpi_train");
    TCase *tc = tcase_create("mpirun");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, nd_two_ranks);
    tcase_add_test(tc, nd_four_ranks);
    tcase_add_test(tc, nd_augmented_two_ranks);
    tcase_add_test(tc, nd_stats_every_two_ranks);
    tcase_add_test(tc, plain_two_ranks);
    tcase_add_test(tc, batch_does_not_split);
    tcase_add_test(tc, ranks_disagree);
    tcase_add_test(tc, rank_fails_before_training);
    tcase_add_test(tc, rank_fails_during_run);
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
