/* test_mpi.c - ndcl-run --sync under mpirun (suite mpi): K ranks on slices
 * of a batch write what one rank writes on the whole batch (output, state,
 * dx, weight and bias gradients, within 1e-5 relative), a batch that does
 * not split over the ranks fails on every rank, and a misbehaving rank
 * (tests/mpi_ranks.c) fails the others instead of leaving them waiting. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ndcl.h"
#include "toolrun.h"

static char tmp_root[] = "/tmp/ndcl-mpi-XXXXXX";
static const char *data_dir;

/* mpirun -n K, allowed to run as root and to put K ranks on fewer cores;
 * timeout keeps a hang from outliving the suite. */
static run_result mpirun(int K, const char *args)
{
    char buf[4400];
    snprintf(buf, sizeof buf, "-n %d --oversubscribe %s %s", K,
             geteuid() == 0 ? "--allow-run-as-root" : "", args);
    return tool_run("NDCL_MPIRUN", "timeout 300", buf);
}

static run_result ndcl_run(const char *args)
{
    return tool_run("NDCL_RUN", "timeout 300", args);
}

/* max |a - b| / max |b| over two files' arrays of the same shape. */
static double npy_rel(const char *a, const char *b)
{
    float *x = NULL, *y = NULL;
    int nx, ny;
    size_t sx[NDCL_MAX_DIMS], sy[NDCL_MAX_DIMS];
    ck_assert_msg(ndcl_npy_read(a, &x, &nx, sx) == NDCL_SUCCESS, "%s", a);
    ck_assert_msg(ndcl_npy_read(b, &y, &ny, sy) == NDCL_SUCCESS, "%s", b);
    ck_assert_int_eq(nx, ny);
    size_t n = 1;
    for (int d = 0; d < nx; d++) {
        ck_assert_uint_eq(sx[d], sy[d]);
        n *= sx[d];
    }
    double num = 0, den = 1e-6;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)x[i] - y[i]));
        den = fmax(den, fabs((double)y[i]));
    }
    ndcl_free(x);
    ndcl_free(y);
    return num / den;
}

/* The same for the tensor called name in two safetensors files; -1 when
 * neither has it. */
static double st_rel(const char *a, const char *b, const char *name)
{
    float *x = NULL, *y = NULL;
    int nx, ny;
    size_t sx[NDCL_MAX_DIMS], sy[NDCL_MAX_DIMS];
    ndcl_status s1 = ndcl_safetensors_read_float(a, name, &x, &nx, sx);
    ndcl_status s2 = ndcl_safetensors_read_float(b, name, &y, &ny, sy);
    ck_assert_int_eq(s1, s2);
    if (s1 != NDCL_SUCCESS) return -1;
    ck_assert_int_eq(nx, ny);
    size_t n = 1;
    for (int d = 0; d < nx; d++)
        n *= sx[d];
    double num = 0, den = 1e-6;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)x[i] - y[i]));
        den = fmax(den, fabs((double)y[i]));
    }
    ndcl_free(x);
    ndcl_free(y);
    return num / den;
}

/* x of N samples shaped as the case's x1.npy, values in [-1, 2). */
static void make_input(const char *from, const char *to, size_t N)
{
    float *x = NULL;
    int nd;
    size_t sh[NDCL_MAX_DIMS];
    ck_assert(ndcl_npy_read(from, &x, &nd, sh) == NDCL_SUCCESS);
    size_t per = 1;
    for (int d = 1; d < nd; d++)
        per *= sh[d];
    sh[0] = N;
    float *v = malloc(N * per * sizeof *v);
    unsigned st = 7;
    for (size_t i = 0; i < N * per; i++) {
        st = st * 1103515245u + 12345u;
        v[i] = (float)((st >> 8) & 0xffff) / 65536.0f * 3.0f - 1.0f;
    }
    ck_assert(ndcl_npy_write(to, v, nd, sh) == NDCL_SUCCESS);
    ndcl_free(x);
    free(v);
}

/* One training step of the case's layer on a batch of N: alone, then
 * mpirun -n K with --sync; every file rank 0 writes must match. */
static void compare_case(const char *name, int K, size_t N)
{
    char dir[512], layer[600], x[600], dy[600], a[4096];
    snprintf(dir, sizeof dir, "%s/%s-%d", tmp_root, name, K);
    snprintf(a, sizeof a, "mkdir -p '%s'", dir);
    ck_assert_int_eq(system(a), 0);
    snprintf(layer, sizeof layer, "%s/%s/layer.safetensors", data_dir, name);
    snprintf(x, sizeof x, "%s/x.npy", dir);
    snprintf(dy, sizeof dy, "%s/dy.npy", dir);
    char x1[600];
    snprintf(x1, sizeof x1, "%s/%s/x1.npy", data_dir, name);
    make_input(x1, x, N);

    /* dy = y of the step (the gradient of ½Σy²). */
    snprintf(a, sizeof a, "'%s' -i '%s' -m train -o '%s'", layer, x, dy);
    run_result r = ndcl_run(a);
    ck_assert_msg(r.status == 0, "%s: %s", name, r.err);
    run_free(&r);

    const char *tag[2] = {"one", "sync"};
    for (int t = 0; t < 2; t++) {
        snprintf(a, sizeof a,
                 "%s'%s' -i '%s' -m train -o '%s/y_%s.npy' -s '%s/s_%s.safetensors' "
                 "--grad-output '%s' --grad-input '%s/dx_%s.npy' "
                 "--grad-params '%s/g_%s.safetensors'",
                 t ? "--sync " : "", layer, x, dir, tag[t], dir, tag[t], dy, dir, tag[t],
                 dir, tag[t]);
        if (t == 0) {
            r = ndcl_run(a);
        } else {
            char b[4200];
            const char *tool = getenv("NDCL_RUN");
            ck_assert_ptr_nonnull(tool);
            snprintf(b, sizeof b, "'%s' %s", tool, a);
            r = mpirun(K, b);
        }
        ck_assert_msg(r.status == 0, "%s %s (%d ranks): status %d: %s", name, tag[t], K,
                      r.status, r.err);
        run_free(&r);
    }
    char p1[700], p2[700];
    const char *arrays[2] = {"y", "dx"};
    double worst = 0;
    for (int i = 0; i < 2; i++) {
        snprintf(p1, sizeof p1, "%s/%s_sync.npy", dir, arrays[i]);
        snprintf(p2, sizeof p2, "%s/%s_one.npy", dir, arrays[i]);
        double e = npy_rel(p1, p2);
        ck_assert_msg(e <= 1e-5, "%s, %d ranks: %s differs by %g", name, K, arrays[i], e);
        worst = fmax(worst, e);
    }
    const char *grads[2] = {"weight", "bias"};
    snprintf(p1, sizeof p1, "%s/g_sync.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/g_one.safetensors", dir);
    for (int i = 0; i < 2; i++) {
        double e = st_rel(p1, p2, grads[i]);
        ck_assert_msg(e <= 1e-5, "%s, %d ranks: d%s differs by %g", name, K, grads[i], e);
        worst = fmax(worst, e);
    }
    const char *state[6] = {"running_mean",  "running_deconv", "running_mean1",
                            "running_mean2", "running_var",    "counter"};
    snprintf(p1, sizeof p1, "%s/s_sync.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/s_one.safetensors", dir);
    int found = 0;
    for (int i = 0; i < 6; i++) {
        double e = st_rel(p1, p2, state[i]);
        if (e < 0) continue;
        found++;
        ck_assert_msg(e <= 1e-5, "%s, %d ranks: %s differs by %g", name, K, state[i], e);
        worst = fmax(worst, e);
    }
    ck_assert_int_eq(st_rel(p1, p2, "num_batches_tracked") < 0 ? 0 : 1,
                     strstr(name, "channel") ? 1 : 0);
    ck_assert_int_ge(found, 2);
    printf("  %-13s %d ranks: largest relative difference %.2e\n", name, K, worst);
}

START_TEST(conv_3x3)
{
    compare_case("conv_g1", 2, 4);
    compare_case("conv_g1", 4, 4);
}
END_TEST

START_TEST(conv_groups2)
{
    compare_case("conv_g2", 2, 4);
}
END_TEST

START_TEST(conv_stride2)
{
    compare_case("conv_s2d2", 2, 4);
}
END_TEST

START_TEST(conv_1x1)
{
    compare_case("conv_1x1", 4, 4);
}
END_TEST

START_TEST(linear_layer)
{
    compare_case("linear", 4, 8);
}
END_TEST

START_TEST(channel_leftover)
{
    compare_case("channel_left", 2, 4);
    compare_case("channel_left", 4, 4);
}
END_TEST

/* N = 3 over 2 ranks: exit status 2 and a message from every rank. */
START_TEST(uneven_batch)
{
    char a[2048];
    const char *tool = getenv("NDCL_RUN");
    ck_assert_ptr_nonnull(tool);
    snprintf(a, sizeof a,
             "'%s' --sync '%s/conv_1x1/layer.safetensors' -i '%s/conv_1x1/x1.npy'", tool,
             data_dir, data_dir);
    run_result r = mpirun(2, a);
    ck_assert_msg(r.status == 2, "status %d: %s", r.status, r.err);
    for (int k = 0; k < 2; k++) {
        char want[128];
        snprintf(want, sizeof want, "rank %d: --sync: ", k);
        const char *at = strstr(r.err, want);
        ck_assert_msg(at && strstr(at, "does not split evenly over 2 ranks"),
                      "no message from rank %d: %s", k, r.err);
    }
    run_free(&r);
}
END_TEST

/* A misbehaving rank (tests/mpi_ranks.c checks each rank's status). */
static void ranks(const char *scenario, int K)
{
    char a[1024];
    const char *exe = getenv("NDCL_MPI_RANKS");
    ck_assert_ptr_nonnull(exe);
    snprintf(a, sizeof a, "'%s' %s", exe, scenario);
    run_result r = mpirun(K, a);
    ck_assert_msg(r.status == 0, "%s, %d ranks: status %d\n%s%s", scenario, K, r.status,
                  r.out, r.err);
    for (int k = 0; k < K; k++) {
        char want[64];
        snprintf(want, sizeof want, "rank %d: forward", k);
        ck_assert_msg(strstr(r.out, want), "%s: rank %d did not report:\n%s", scenario, k,
                      r.out);
    }
    run_free(&r);
}

/* Ranks whose settings disagree, or one rank failing before the step,
 * stop every rank at start-up with status 2, rank 0 naming the setting or
 * the rank and its reason; nothing is written. Rank 1 runs ARGS1 (MPMD:
 * mpirun -n 1 A : -n 1 B). */
static void two_ranks_refused(const char *args0, const char *args1, const char *w1,
                              const char *w2)
{
    char a[4096], out[600];
    const char *tool = getenv("NDCL_RUN");
    ck_assert_ptr_nonnull(tool);
    snprintf(out, sizeof out, "%s/y-refused.npy", tmp_root);
    snprintf(a, sizeof a,
             "'%s' --sync '%s/conv_g1/layer.safetensors' -o '%s' %s : -n 1 '%s' --sync "
             "'%s/conv_g1/layer.safetensors' -o '%s' %s",
             tool, data_dir, out, args0, tool, data_dir, out, args1);
    run_result r = mpirun(1, a);
    ck_assert_msg(r.status == 2, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, w1) && strstr(r.err, w2), "no \"%s\" and \"%s\" in: %s", w1,
                  w2, r.err);
    run_free(&r);
    ck_assert_msg(access(out, F_OK) != 0, "a refused job wrote %s", out);
}

START_TEST(ranks_disagree)
{
    char x1[600], x2[600], dy[1800], dx[1900];
    snprintf(x1, sizeof x1, "-i '%s/conv_g1/x1.npy'", data_dir);
    snprintf(x2, sizeof x2, "-i '%s/conv_g1/x2.npy'", data_dir);
    snprintf(dy, sizeof dy,
             "%s --grad-output '%s/conv_g1/dy1.npy' --grad-input '%s/dx.npy'", x1, data_dir,
             tmp_root);
    snprintf(dx, sizeof dx, "%s -m train", dy);
    char a[700], b[700];
    snprintf(a, sizeof a, "%.600s -m train", x1);
    snprintf(b, sizeof b, "%.600s -m eval", x1);
    two_ranks_refused(a, b, "rank 0: --sync: stopping: --mode differs between the ranks",
                      "\"eval\" on rank 1");
    two_ranks_refused(dx, a, "--grad-output differs between the ranks", "on rank 1");
    two_ranks_refused(x1, x2, "--input contents differs between the ranks", "on rank 1");
}
END_TEST

START_TEST(rank_fails_at_start)
{
    char x1[600], b[1400], fifo[600];
    snprintf(x1, sizeof x1, "-i '%s/conv_g1/x1.npy'", data_dir);
    snprintf(b, sizeof b, "%s --device 99:99", x1);
    two_ranks_refused(x1, b, "rank 1: --device \"99:99\"",
                      "rank 0: --sync: stopping: rank 1 failed");
    /* A FIFO for rank 1's input: refused without blocking (no writer). */
    snprintf(fifo, sizeof fifo, "%s/fifo.npy", tmp_root);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    snprintf(b, sizeof b, "-i '%s'", fifo);
    two_ranks_refused(x1, b, "rank 1 failed", "FIFO");
}
END_TEST

START_TEST(bad_rank)
{
    ranks("bad-input", 2);
    ranks("shapes-differ", 2);
    ranks("bad-dy", 4);
}
END_TEST

int main(void)
{
    data_dir = getenv("NDCL_TEST_DATA");
    if (!data_dir || !mkdtemp(tmp_root)) {
        fprintf(stderr, "NDCL_TEST_DATA not set or no temporary directory\n");
        return 1;
    }
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpirun");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, conv_3x3);
    tcase_add_test(tc, conv_groups2);
    tcase_add_test(tc, conv_stride2);
    tcase_add_test(tc, conv_1x1);
    tcase_add_test(tc, linear_layer);
    tcase_add_test(tc, channel_leftover);
    tcase_add_test(tc, uneven_batch);
    tcase_add_test(tc, bad_rank);
    tcase_add_test(tc, ranks_disagree);
    tcase_add_test(tc, rank_fails_at_start);
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
