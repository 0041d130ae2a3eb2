/* test_outputs.c - the tools' outputs are written all at once or not at all
 * (suite reliability): ndcl-run and ndcl-train refuse, before any work, an
 * output that is an input, is named twice, or exists and is not a regular
 * file with one link (a device node, a FIFO, a symlink, a hard link, a
 * directory); a failure part-way (a full disk, a failed write) and
 * SIGTERM leave every file as it was and no temporary behind; --save's
 * directory is replaced whole. Every case compares a fingerprint of its
 * scratch directory (inputs included) before and after. The tools' paths
 * come in NDCL_RUN and NDCL_TRAIN, the golden data in NDCL_TEST_DATA, the
 * data set in NDCL_TRAIN_DATA (the ndcl-train cases are skipped without
 * it). */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fscheck.h"
#include "toolrun.h"

static char tmp_root[] = "/tmp/ndcl-outputs-XXXXXX";
static const char *data_dir, *train_data;

static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* A fresh scratch directory holding a copy of the conv_g1 case (layer, x,
 * dy): the inputs are inside what the fingerprint covers. */
static void scratch(char *dir, size_t n, const char *name)
{
    snprintf(dir, n, "%s/%s", tmp_root, name);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    sh("cp '%s/conv_g1/layer.safetensors' '%s/conv_g1/x1.npy' '%s/conv_g1/dy1.npy' '%s'",
       data_dir, data_dir, data_dir, dir);
}

static run_result run_in(const char *dir, const char *env, const char *fmt, ...)
{
    char args[4096], pre[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(pre, sizeof pre, "cd '%s' && %s", dir, env ? env : "");
    return tool_run("NDCL_RUN", pre, args);
}

/* The run fails with status, its message holds every one of the words, and
 * the directory is as it was. */
static void refused(const char *dir, char *before, run_result *r, int status,
                    const char *what, const char *w1, const char *w2)
{
    ck_assert_msg(r->status == status, "%s: exit %d, want %d\n%s", what, r->status, status,
                  r->err);
    ck_assert_msg(!w1 || strstr(r->err, w1), "%s: no \"%s\" in: %s", what, w1, r->err);
    ck_assert_msg(!w2 || strstr(r->err, w2), "%s: no \"%s\" in: %s", what, w2, r->err);
    run_free(r);
    fs_assert_unchanged(before, dir, what);
}

#define BASE "layer.safetensors -i x1.npy "

START_TEST(output_names_an_input)
{
    char d[512];
    scratch(d, sizeof d, "input");
    /* The case: a failing train step that would have replaced x. */
    char *before = fs_snapshot(d);
    run_result r = run_in(d, NULL, BASE "-o x1.npy -m train -s /nonexistent/s.safetensors");
    refused(d, before, &r, 2, "-o the input", "--output x1.npy", "--input x1.npy");
    before = fs_snapshot(d);
    r = run_in(d, NULL, BASE "-o layer.safetensors");
    refused(d, before, &r, 2, "-o the layer", "--output layer.safetensors", "layer file");
    before = fs_snapshot(d);
    r = run_in(d, NULL, BASE "-m train --grad-output dy1.npy --grad-input dy1.npy");
    refused(d, before, &r, 2, "--grad-input the dy", "--grad-input dy1.npy",
            "--grad-output");
    /* Through another name for the same file (a symlinked directory). */
    char alias[600];
    snprintf(alias, sizeof alias, "%s/alias", d);
    ck_assert_int_eq(symlink(d, alias), 0);
    before = fs_snapshot(d);
    r = run_in(d, NULL, BASE "-o alias/x1.npy");
    refused(d, before, &r, 2, "-o the input by another path", "--output alias/x1.npy",
            "--input x1.npy");
}
END_TEST

START_TEST(output_named_twice)
{
    char d[512];
    scratch(d, sizeof d, "twice");
    char *before = fs_snapshot(d);
    run_result r =
        run_in(d, NULL, BASE "-o a.npy -m train --grad-output dy1.npy --grad-input a.npy");
    refused(d, before, &r, 2, "two outputs on a.npy", "--output a.npy",
            "--grad-input a.npy");
    before = fs_snapshot(d);
    r = run_in(d, NULL, BASE "-o ./b.npy -s b.npy");
    refused(d, before, &r, 2, "two outputs on b.npy", "--output ./b.npy",
            "--save-state b.npy");
}
END_TEST

/* Outputs that are not regular files are refused, not replaced: the node,
 * link or directory is still there afterwards, unchanged. */
START_TEST(output_not_a_regular_file)
{
    char d[512], p[600];
    scratch(d, sizeof d, "kinds");
    fs_write(strcat(strcpy(p, d), "/target.npy"), "the symlink's target\n");
    snprintf(p, sizeof p, "%s/link.npy", d);
    ck_assert_int_eq(symlink("target.npy", p), 0);
    snprintf(p, sizeof p, "%s/dangling.npy", d);
    ck_assert_int_eq(symlink("nowhere.npy", p), 0);
    snprintf(p, sizeof p, "%s/fifo.npy", d);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    snprintf(p, sizeof p, "%s/dir.npy", d);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    char q[600];
    fs_write(strcat(strcpy(p, d), "/one.npy"), "hard-linked\n");
    snprintf(q, sizeof q, "%s/two.npy", d);
    ck_assert_int_eq(link(p, q), 0);

    static const struct {
        const char *name, *word;
    } cases[] = {{"link.npy", "symbolic link"}, {"dangling.npy", "symbolic link"},
                 {"fifo.npy", "FIFO"},          {"dir.npy", "directory"},
                 {"one.npy", "hard links"},     {"dir.npy/", "directory"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *before = fs_snapshot(d);
        run_result r = run_in(d, NULL, BASE "-o %s", cases[i].name);
        refused(d, before, &r, 2, cases[i].name, cases[i].name, cases[i].word);
        before = fs_snapshot(d);
        r = run_in(d, NULL, BASE "-m train -s %s", cases[i].name);
        refused(d, before, &r, 2, cases[i].name, "--save-state", cases[i].word);
    }

    /* A character device: our own node where we may make one (root), so
     * that a regression replaces a scratch file, never the system's
     * /dev/null. */
    snprintf(p, sizeof p, "%s/null.npy", d);
    if (mknod(p, S_IFCHR | 0600, makedev(1, 3)) == 0) {
        char *before = fs_snapshot(d);
        run_result r = run_in(d, NULL, BASE "-o null.npy");
        refused(d, before, &r, 2, "a character device", "null.npy", "character device");
    } else {
        fprintf(stderr,
                "output_not_a_regular_file: mknod: %s; the character-device case is "
                "skipped\n",
                strerror(errno));
    }
}
END_TEST

/* A run that fails after some outputs were written (a full disk for the
 * last one) leaves every target as it was: y.npy keeps its old contents.
 * On a small tmpfs where the test may mount one, else through the
 * library's short-write hook. */
START_TEST(failure_part_way_changes_nothing)
{
    char d[512], fs[600];
    scratch(d, sizeof d, "partway");
    fs_write(strcat(strcpy(fs, d), "/y.npy"), "the previous y\n");
    fs_write(strcat(strcpy(fs, d), "/s.safetensors"), "the previous state\n");
    snprintf(fs, sizeof fs, "%s/full", d);
    ck_assert_int_eq(mkdir(fs, 0700), 0);
    if (mount("ndcl-test", fs, "tmpfs", 0, "size=64k") == 0) {
        /* The previous state, then the rest filled: the staging directory
         * fits (a tmpfs directory takes no blocks), the new state does not. */
        char old_state[700];
        snprintf(old_state, sizeof old_state, "%s/s.safetensors", fs);
        fs_write(old_state, "the previous state on the full disk\n");
        sh("dd if=/dev/zero of='%s/fill' bs=1k count=128 2>/dev/null; true", fs);
        char *before = fs_snapshot(d);
        run_result r = run_in(d, NULL,
                              BASE "-m train -o y.npy -s full/s.safetensors --grad-output "
                                   "dy1.npy --grad-input dx.npy");
        ck_assert_msg(r.status == 2, "full disk: exit %d\n%s", r.status, r.err);
        ck_assert_msg(strstr(r.err, "full/s.safetensors") &&
                          strstr(r.err, "No space left on device"),
                      "full disk: %s", r.err);
        run_free(&r);
        fs_assert_unchanged(before, d, "a run that filled the disk");
        ck_assert_int_eq(umount(fs), 0);
    } else {
        fprintf(stderr,
                "failure_part_way_changes_nothing: mount -t tmpfs: %s; the full-disk "
                "case is skipped (the short-write case runs)\n",
                strerror(errno));
    }
    char *before = fs_snapshot(d);
    run_result r =
        run_in(d, "NDCL_TEST_SHORT_WRITE=1", BASE "-m train -o y.npy -s s.safetensors");
    ck_assert_msg(r.status == 2 && strstr(r.err, "y.npy") && strstr(r.err, "simulated"),
                  "short write: exit %d\n%s", r.status, r.err);
    run_free(&r);
    fs_assert_unchanged(before, d, "a run whose write failed");

    /* And the same run without the failure replaces both. */
    char y[600];
    snprintf(y, sizeof y, "%s/y.npy", d);
    unsigned long long old_y = fs_checksum(y);
    r = run_in(d, NULL, BASE "-m train -o y.npy -s s.safetensors");
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    run_free(&r);
    ck_assert(fs_checksum(y) != old_y);
    char *now = fs_snapshot(d);
    ck_assert_msg(!strstr(now, ".ndcl-stage"), "staging left behind:\n%s", now);
    free(now);
}
END_TEST

/* SIGTERM with every output staged (the tool pausing there on request):
 * the handler removes the staging directory, the targets stay. */
START_TEST(sigterm_leaves_nothing)
{
    char d[512], y[600];
    scratch(d, sizeof d, "sigterm");
    fs_write(strcat(strcpy(y, d), "/y.npy"), "the previous y\n");
    char *before = fs_snapshot(d);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        ck_assert_int_eq(chdir(d), 0);
        setenv("NDCL_TEST_STALL_COMMIT", "60", 1);
        freopen("/dev/null", "w", stderr);
        execl(getenv("NDCL_RUN"), "ndcl-run", "layer.safetensors", "-i", "x1.npy", "-m",
              "train", "-o", "y.npy", "-s", "s.safetensors", (char *)NULL);
        _exit(127);
    }
    /* Wait for the staged files: a .ndcl-stage-* directory holding two. */
    bool staged = false;
    for (int i = 0; i < 1200 && !staged; i++) {
        char *now = fs_snapshot(d);
        char *at = strstr(now, "dir .ndcl-stage-");
        staged = at && strstr(at, "-y.npy ") && strstr(at, "-s.safetensors ");
        free(now);
        if (!staged) usleep(50000);
    }
    ck_assert_msg(staged, "the run never staged its outputs");
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %#x", st);
    fs_assert_unchanged(before, d, "SIGTERM while staged");
}
END_TEST

/* ------------------------------------------------------------ ndcl-train */

#define TRAIN_ARGS "--limit 128 --batch 64 --test-limit 64 -q"

static run_result train_in(const char *dir, const char *env, const char *fmt, ...)
{
    char args[4096], all[4400], pre[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(all, sizeof all, "--data '%s' " TRAIN_ARGS " %s", train_data, args);
    snprintf(pre, sizeof pre, "cd '%s' && %s", dir, env ? env : "");
    return tool_run("NDCL_TRAIN", pre, all);
}

/* Refused before the data is read or a step taken: no epoch line. */
START_TEST(train_outputs_checked_first)
{
    if (!train_data) return;
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/train", tmp_root);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    fs_write(strcat(strcpy(p, d), "/file"), "a file\n");
    snprintf(p, sizeof p, "%s/dir", d);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/foreign", d);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    fs_write(strcat(strcpy(p, d), "/foreign/notes.txt"), "not ndcl's\n");
    snprintf(p, sizeof p, "%s/link.json", d);
    ck_assert_int_eq(symlink("file", p), 0);
    snprintf(p, sizeof p, "%s/fifo.png", d);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    static const struct {
        const char *args, *w1, *w2;
    } cases[] = {
        {"--json dir", "--json dir", "directory"},
        {"--save file", "--save file", "not a directory"},
        {"--save foreign", "--save foreign", "notes.txt"},
        {"--json link.json", "--json link.json", "symbolic link"},
        {"--json fifo.png", "--json fifo.png", "FIFO"},
        {"--json r.json --save r.json", "--json r.json", "--save r.json"},
        {"--save out --json out/r.json", "--json out/r.json", "out"},
        {"--json no-such-dir/r.json", "--json no-such-dir/r.json", "No such file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *before = fs_snapshot(d);
        run_result r = train_in(d, NULL, "%s", cases[i].args);
        ck_assert_msg(r.status == 2, "%s: exit %d\n%s", cases[i].args, r.status, r.err);
        ck_assert_msg(strstr(r.err, cases[i].w1) && strstr(r.err, cases[i].w2), "%s: %s",
                      cases[i].args, r.err);
        ck_assert_msg(!strstr(r.out, "epoch"), "%s trained first: %s", cases[i].args,
                      r.out);
        run_free(&r);
        fs_assert_unchanged(before, d, cases[i].args);
    }
}
END_TEST

/* --save into a directory holding an earlier run's files: swapped in whole
 * on success; on a failed write, the earlier files and --json stay as they
 * were and nothing else appears. */
START_TEST(train_save_all_or_nothing)
{
    if (!train_data) return;
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/save", tmp_root);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    run_result r = train_in(d, NULL, "--save model --json r.json");
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    run_free(&r);
    snprintf(p, sizeof p, "%s/model/0.safetensors", d);
    unsigned long long first = fs_checksum(p);

    char *before = fs_snapshot(d);
    r = train_in(d, "NDCL_TEST_SHORT_WRITE=1", "--seed 2 --save model --json r.json");
    ck_assert_msg(r.status == 2 && strstr(r.err, "simulated"), "exit %d\n%s", r.status,
                  r.err);
    run_free(&r);
    fs_assert_unchanged(before, d, "a --save whose write failed");

    r = train_in(d, NULL, "--seed 2 --save model --json r.json");
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    run_free(&r);
    ck_assert_msg(fs_checksum(p) != first, "--seed 2 saved the same first layer");
    char *now = fs_snapshot(d);
    ck_assert_msg(!strstr(now, ".ndcl-stage"), "staging left behind:\n%s", now);
    ck_assert_msg(strstr(now, "file model/model.safetensors") &&
                      strstr(now, "file model/7.safetensors"),
                  "%s", now);
    free(now);
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
    if (!train_data)
        fprintf(stderr, "no NDCL_TRAIN_DATA: the ndcl-train cases are skipped\n");
    Suite *s = suite_create("outputs");
    TCase *tc = tcase_create("tools");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, output_names_an_input);
    tcase_add_test(tc, output_named_twice);
    tcase_add_test(tc, output_not_a_regular_file);
    tcase_add_test(tc, failure_part_way_changes_nothing);
    tcase_add_test(tc, sigterm_leaves_nothing);
    tcase_add_test(tc, train_outputs_checked_first);
    tcase_add_test(tc, train_save_all_or_nothing);
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
