/* test_train_tool.c - ndcl-train as a user runs it: small runs on the first
 * few hundred Fashion-MNIST images learn (the loss falls, the accuracy is
 * well above chance) with and without deconvolution, repeat exactly with
 * the same seed, save layers that ndcl-run loads and a folded model that
 * computes what the layers compute, draw a plot; bad files and flags exit
 * with status 2 naming them, a diverging run with status 1 naming the step.
 * Paths come in NDCL_TRAIN, NDCL_RUN (the tools) and NDCL_TRAIN_DATA. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cjson/cJSON.h>

#include "ndcl.h"
#include "toolrun.h"

static const char *data_dir;
static char tmp_root[] = "/tmp/ndcl-train-test-XXXXXX";

static run_result train(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tool_run("NDCL_TRAIN", NULL, args);
}

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmp_root, name);
}

static cJSON *read_json(const char *path)
{
    char *text = tool_output_file(path);
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s is not JSON: %.200s", path, text);
    free(text);
    return j;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

/* A run that must succeed, its JSON record parsed. */
static cJSON *run_json(const char *json_name, const char *fmt, ...)
{
    char args[4096], json[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    tmp_path(json, sizeof json, json_name);
    run_result r = train("--data '%s' --json '%s' %s", data_dir, json, args);
    ck_assert_msg(r.status == 0, "ndcl-train %s: exit %d\n%s", args, r.status, r.err);
    cJSON *j = read_json(json);
    /* stdout's final line agrees with the record. */
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "epochs");
    double acc = num(cJSON_GetArrayItem(ep, cJSON_GetArraySize(ep) - 1), "test_acc");
    char want[64];
    snprintf(want, sizeof want, "test accuracy %.4f", acc);
    ck_assert_msg(strstr(r.out, want) != NULL, "stdout lacks \"%s\":\n%s", want, r.out);
    run_free(&r);
    return j;
}

static void check_learns(const char *net)
{
    char name[64];
    snprintf(name, sizeof name, "learn-%s.json", net);
    cJSON *j = run_json(
        name, "--net %s --limit 384 --batch 64 --epochs 2 --test-limit 500 -q", net);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "settings");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(s, "net")->valuestring, net);
    ck_assert_int_eq((int)num(s, "train_images"), 384);
    ck_assert_int_eq((int)num(s, "test_images"), 500);
    ck_assert_int_eq((int)num(s, "steps_per_epoch"), 6);
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "device"), "name")));
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "epochs");
    ck_assert_int_eq(cJSON_GetArraySize(ep), 2);
    double first[2], last[2];
    for (int e = 0; e < 2; e++) {
        const cJSON *x = cJSON_GetArrayItem(ep, e);
        ck_assert_int_eq((int)num(x, "epoch"), e + 1);
        ck_assert(num(x, "seconds") > 0);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(x, "losses");
        ck_assert_int_eq(cJSON_GetArraySize(l), 6);
        double sum = 0;
        for (int i = 0; i < 6; i++)
            sum += cJSON_GetArrayItem(l, i)->valuedouble;
        ck_assert_msg(fabs(sum / 6 - num(x, "train_loss")) < 1e-6,
                      "train_loss is not the mean");
        first[e] = cJSON_GetArrayItem(l, 0)->valuedouble;
        last[e] = cJSON_GetArrayItem(l, 5)->valuedouble;
    }
    double l1 = num(cJSON_GetArrayItem(ep, 0), "train_loss");
    double l2 = num(cJSON_GetArrayItem(ep, 1), "train_loss");
    double acc = num(cJSON_GetArrayItem(ep, 1), "test_acc");
    /* The first loss is about ln 10 (an untrained network guesses). */
    ck_assert_msg(fabs(first[0] - log(10.0)) < 0.3, "%s: first loss %g", net, first[0]);
    ck_assert_msg(l2 < l1 && last[1] < first[0] - 0.5,
                  "%s: the loss does not fall: epochs %g, %g; steps %g ... %g", net, l1, l2,
                  first[0], last[1]);
    /* Ten classes: chance is 0.1. */
    ck_assert_msg(acc > 0.4, "%s: test accuracy %g", net, acc);
    cJSON_Delete(j);
}

START_TEST(nd_run_learns)
{
    check_learns("nd");
}
END_TEST

START_TEST(plain_run_learns)
{
    check_learns("plain");
}
END_TEST

static void losses_of(const cJSON *j, double *out, int n)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "epochs"), 0), "losses");
    ck_assert_int_eq(cJSON_GetArraySize(l), n);
    for (int i = 0; i < n; i++)
        out[i] = cJSON_GetArrayItem(l, i)->valuedouble;
}

/* Two runs with the same seed: the same losses, bit for bit. */
static void same_losses(const double *a, const double *b, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(a[i] == b[i], "step %d: %.17g then %.17g with the same seed", i + 1,
                      a[i], b[i]);
}

START_TEST(same_seed_same_losses)
{
    const char *args = "--limit 320 --batch 64 --test-limit 100 -q";
    cJSON *a = run_json("seed-a.json", "%s --seed 5", args);
    cJSON *b = run_json("seed-b.json", "%s --seed 5", args);
    cJSON *c = run_json("seed-c.json", "%s --seed 6", args);
    double la[5], lb[5], lc[5];
    losses_of(a, la, 5);
    losses_of(b, lb, 5);
    losses_of(c, lc, 5);
    same_losses(la, lb, 5);
    ck_assert_msg(memcmp(la, lc, sizeof la) != 0, "seeds 5 and 6 give the same losses");
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}
END_TEST

/* --augment changes the batches (other losses from the first step on,
 * the initial weights being the seed's), repeats with the same seed, and
 * still learns; the record says it was on. */
START_TEST(augment_repeats_and_learns)
{
    const char *args = "--limit 320 --batch 64 --test-limit 500 -q";
    cJSON *a = run_json("aug-a.json", "%s --augment", args);
    cJSON *b = run_json("aug-b.json", "%s --augment", args);
    cJSON *c = run_json("aug-c.json", "%s", args);
    double la[5], lb[5], lc[5];
    losses_of(a, la, 5);
    losses_of(b, lb, 5);
    losses_of(c, lc, 5);
    same_losses(la, lb, 5);
    ck_assert_msg(la[0] != lc[0], "the first augmented batch's loss is the plain batch's");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(a, "settings");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "augment")));
    s = cJSON_GetObjectItemCaseSensitive(c, "settings");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "augment")));
    const cJSON *ep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(a, "epochs"), 0);
    ck_assert_msg(num(ep, "test_acc") > 0.3, "augmented run: test accuracy %.4f",
                  num(ep, "test_acc"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}
END_TEST

/* ------------------------------------------------------------ saving */

static void write_npy(const char *path, const float *x, int ndim, const size_t *shape)
{
    ck_assert_msg(ndcl_npy_write(path, x, ndim, shape) == NDCL_SUCCESS, "%s: %s", path,
                  ndcl_context_last_error(NULL));
}

static float *read_npy(const char *path, int ndim, const size_t *shape)
{
    float *y = NULL;
    int nd;
    size_t s[NDCL_MAX_DIMS];
    ck_assert_msg(ndcl_npy_read(path, &y, &nd, s) == NDCL_SUCCESS, "%s: %s", path,
                  ndcl_context_last_error(NULL));
    ck_assert_int_eq(nd, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_uint_eq(s[i], shape[i]);
    return y;
}

static float *model_tensor(const char *path, const char *name, int ndim,
                           const size_t *shape)
{
    float *d = NULL;
    int nd;
    size_t s[NDCL_MAX_DIMS];
    ck_assert_msg(ndcl_safetensors_read_float(path, name, &d, &nd, s) == NDCL_SUCCESS,
                  "%s: %s", path, ndcl_context_last_error(NULL));
    ck_assert_int_eq(nd, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_uint_eq(s[i], shape[i]);
    return d;
}

/* The saved layers run in ndcl-run, and the folded model's weights give
 * the layers' evaluation outputs: conv1 and the linear layer recomputed on
 * the host from model.safetensors. */
START_TEST(saved_layers_reload_in_ndcl_run)
{
    char dir[512], x1[512], y1[512], x7[512], y7[512], model[600];
    tmp_path(dir, sizeof dir, "saved");
    run_result r =
        train("--data '%s' --limit 256 --batch 64 --test-limit 100 -q --save '%s'",
              data_dir, dir);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    run_free(&r);
    snprintf(model, sizeof model, "%s/model.safetensors", dir);

    const size_t xs1[4] = {2, 1, 28, 28}, ys1[4] = {2, 32, 28, 28};
    float x[2 * 784];
    for (int i = 0; i < 2 * 784; i++)
        x[i] = (float)((i * 7919) % 256) / 255.0f;
    tmp_path(x1, sizeof x1, "x1.npy");
    tmp_path(y1, sizeof y1, "y1.npy");
    write_npy(x1, x, 4, xs1);
    char args[2048];
    snprintf(args, sizeof args, "'%s/0.safetensors' --input '%s' --output '%s'", dir, x1,
             y1);
    r = tool_run("NDCL_RUN", NULL, args);
    ck_assert_msg(r.status == 0, "ndcl-run %s: exit %d\n%s", args, r.status, r.err);
    run_free(&r);
    float *y = read_npy(y1, 4, ys1);
    float *w = model_tensor(model, "0.weight", 4, (size_t[]){32, 1, 3, 3});
    float *b = model_tensor(model, "0.bias", 1, (size_t[]){32});
    double err = 0, scale = 0;
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 32; o++)
            for (int i = 0; i < 28; i++)
                for (int j = 0; j < 28; j++) {
                    double s = b[o];
                    for (int di = 0; di < 3; di++)
                        for (int dj = 0; dj < 3; dj++) {
                            int yy = i + di - 1, xx = j + dj - 1;
                            if (yy >= 0 && yy < 28 && xx >= 0 && xx < 28)
                                s += (double)w[o * 9 + di * 3 + dj] *
                                     x[n * 784 + yy * 28 + xx];
                        }
                    double got = y[((n * 32 + o) * 28 + i) * 28 + j];
                    err = fmax(err, fabs(got - s));
                    scale = fmax(scale, fabs(s));
                }
    ck_assert_msg(err < 1e-5 * scale, "conv1 from model.safetensors: error %g of %g", err,
                  scale);
    free(y);
    free(w);
    free(b);

    /* The linear layer on [2, 3136]. */
    const size_t xs7[2] = {2, 3136}, ys7[2] = {2, 10};
    float *h = malloc(2 * 3136 * sizeof *h);
    for (int i = 0; i < 2 * 3136; i++)
        h[i] = (float)((i * 104729) % 1000) / 500.0f;
    tmp_path(x7, sizeof x7, "x7.npy");
    tmp_path(y7, sizeof y7, "y7.npy");
    write_npy(x7, h, 2, xs7);
    snprintf(args, sizeof args, "'%s/7.safetensors' --input '%s' --output '%s'", dir, x7,
             y7);
    r = tool_run("NDCL_RUN", NULL, args);
    ck_assert_msg(r.status == 0, "ndcl-run %s: exit %d\n%s", args, r.status, r.err);
    run_free(&r);
    y = read_npy(y7, 2, ys7);
    w = model_tensor(model, "7.weight", 2, (size_t[]){10, 3136});
    b = model_tensor(model, "7.bias", 1, (size_t[]){10});
    err = scale = 0;
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 10; o++) {
            double s = b[o];
            for (int i = 0; i < 3136; i++)
                s += (double)w[o * 3136 + i] * h[n * 3136 + i];
            err = fmax(err, fabs(y[n * 10 + o] - s));
            scale = fmax(scale, fabs(s));
        }
    ck_assert_msg(err < 1e-4 * scale, "linear from model.safetensors: error %g of %g", err,
                  scale);
    free(y);
    free(w);
    free(b);
    free(h);
    free(model_tensor(model, "3.weight", 4, (size_t[]){64, 32, 3, 3}));
    free(model_tensor(model, "3.bias", 1, (size_t[]){64}));
    snprintf(args, sizeof args, "'%s/3.safetensors' --input '%s'", dir, x1);
    r = tool_run("NDCL_RUN", NULL, args);
    /* conv2 takes 32 channels: the file loads, the input is refused. */
    ck_assert_msg(r.status == 2 && strstr(r.err, "x must be [N, 32, H, W]"), "exit %d: %s",
                  r.status, r.err);
    run_free(&r);
}
END_TEST

START_TEST(plot_draws_a_png)
{
    char png[512];
    tmp_path(png, sizeof png, "curve.png");
    bool gnuplot = system("gnuplot --version >/dev/null 2>&1") == 0;
    run_result r =
        train("--data '%s' --limit 256 --batch 64 --test-limit 100 --epochs 2 -q "
              "--plot '%s'",
              data_dir, png);
    if (!gnuplot) {
        fprintf(stderr, "gnuplot is not installed: checking the refusal only\n");
        ck_assert_msg(r.status == 2 && strstr(r.err, "--plot"), "exit %d: %s", r.status,
                      r.err);
    } else {
        ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
        FILE *f = fopen(png, "rb");
        ck_assert_msg(f != NULL, "no %s", png);
        unsigned char magic[8] = {0};
        ck_assert_uint_eq(fread(magic, 1, 8, f), 8);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        ck_assert_msg(!memcmp(magic, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", png);
        ck_assert_msg(size > 5000, "%s holds only %ld bytes", png, size);
    }
    run_free(&r);
}
END_TEST

/* ------------------------------------------------------------ bad input */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file: magic, dimensions, then `bytes` data bytes (which may be
 * fewer than the dimensions promise), gzip-compressed or not. */
static void write_idx(const char *path, uint32_t magic, int ndim, const uint32_t *dims,
                      size_t bytes, unsigned fill_mod, bool gz)
{
    size_t n = 4 + 4 * (size_t)ndim + bytes;
    unsigned char *b = malloc(n);
    put_be32(b, magic);
    for (int i = 0; i < ndim; i++)
        put_be32(b + 4 + 4 * i, dims[i]);
    for (size_t i = 0; i < bytes; i++)
        b[4 + 4 * ndim + i] = (unsigned char)(i % fill_mod);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, b, (unsigned)n), (int)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(b, 1, n, f), n);
        fclose(f);
    }
    free(b);
}

/* A data directory of 20 training and 10 test images, valid unless the
 * caller spoils one file afterwards. */
static void make_data(const char *dir)
{
    char p[600];
    mkdir(dir, 0777);
    uint32_t tr[3] = {20, 28, 28}, te[3] = {10, 28, 28}, ltr = 20, lte = 10;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_idx(p, 0x803, 3, tr, 20 * 784, 251, true);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx(p, 0x801, 1, &ltr, 20, 10, true);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    write_idx(p, 0x803, 3, te, 10 * 784, 251, true);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    write_idx(p, 0x801, 1, &lte, 10, 10, true);
}

/* --stats-every 1 is the default arithmetic: the same losses, bit for bit.
 * --stats-every 4 computes statistics on steps 1, 5, 9: its first step is
 * the default's, the later ones train otherwise, and it learns. */
START_TEST(stats_every)
{
    const char *args = "--limit 640 --batch 64 --test-limit 200 -q";
    cJSON *a = run_json("se-default.json", "%s", args);
    cJSON *b = run_json("se-1.json", "%s --stats-every 1", args);
    cJSON *c = run_json("se-4.json", "%s --stats-every 4", args);
    double la[10], lb[10], lc[10];
    losses_of(a, la, 10);
    losses_of(b, lb, 10);
    losses_of(c, lc, 10);
    same_losses(la, lb, 10);
    ck_assert_msg(lc[0] == la[0], "--stats-every 4: first step %.9g, default %.9g", lc[0],
                  la[0]);
    ck_assert_msg(memcmp(la + 1, lc + 1, 9 * sizeof *la) != 0,
                  "--stats-every 4 trains exactly as every step does");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "settings");
    ck_assert_int_eq((int)num(s, "stats_every"), 4);
    const cJSON *ep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "epochs"), 0);
    ck_assert_msg(num(ep, "test_acc") > 0.3, "--stats-every 4: test accuracy %.4f",
                  num(ep, "test_acc"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}
END_TEST

/* --eval-every and --target-acc: an evaluation every N steps and after
 * every epoch, in order, with the training time (evaluation excluded)
 * growing; the target is the first evaluation that reached it, named on
 * stdout; one that no evaluation reached is null. */
START_TEST(target_accuracy)
{
    const char *args = "--limit 640 --batch 64 --test-limit 200 --epochs 2 --eval-every 4";
    cJSON *j = run_json("target.json", "%s --target-acc 0.5", args);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "evals");
    /* Steps 4, 8, 10 (end of epoch 1), 12, 16, 20 (end of epoch 2). */
    const int want[] = {4, 8, 10, 12, 16, 20};
    ck_assert_int_eq(cJSON_GetArraySize(ev), 6);
    double last = 0;
    int first = -1;
    for (int i = 0; i < 6; i++) {
        const cJSON *e = cJSON_GetArrayItem(ev, i);
        ck_assert_int_eq((int)num(e, "step"), want[i]);
        ck_assert_msg(fabs(num(e, "epoch") - want[i] / 10.0) < 1e-9, "eval %d: epoch %g", i,
                      num(e, "epoch"));
        ck_assert_msg(num(e, "seconds") > last, "eval %d: seconds %g after %g", i,
                      num(e, "seconds"), last);
        last = num(e, "seconds");
        if (first < 0 && num(e, "test_acc") >= 0.5) first = i;
    }
    /* The epochs' evaluations are the epochs' records. */
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "epochs");
    for (int e = 0; e < 2; e++) {
        const cJSON *x = cJSON_GetArrayItem(eps, e), *y = cJSON_GetArrayItem(ev, 2 + 3 * e);
        ck_assert(num(x, "test_acc") == num(y, "test_acc"));
    }
    ck_assert_msg(first >= 0, "no evaluation reached 0.5: the run did not learn");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "target");
    const cJSON *hit = cJSON_GetArrayItem(ev, first);
    ck_assert(num(t, "test_acc") == 0.5);
    ck_assert(num(t, "seconds") == num(hit, "seconds"));
    ck_assert_int_eq((int)num(t, "step"), (int)num(hit, "step"));
    ck_assert(num(t, "reached_acc") == num(hit, "test_acc"));
    cJSON_Delete(j);

    char json[512];
    tmp_path(json, sizeof json, "target-none.json");
    run_result r = train("--data '%s' --json '%s' %s --target-acc 1", data_dir, json, args);
    ck_assert_msg(r.status == 0, "exit %d\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "target test accuracy 1.0000 not reached"), "%s", r.out);
    run_free(&r);
    j = read_json(json);
    t = cJSON_GetObjectItemCaseSensitive(j, "target");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(t, "seconds")));
    cJSON_Delete(j);
}
END_TEST

/* --profile: every operation's time in the record, and GB/s for the
 * tool's own memory-bound kernels (the batch gather, ReLU + pooling and
 * their backward, the loss, SGD) and for nothing else. */
START_TEST(profile_reports_bandwidth)
{
    cJSON *j =
        run_json("profile.json", "--limit 256 --batch 64 --test-limit 100 -q --profile");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "profile");
    ck_assert_ptr_nonnull(p);
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(p, "seconds"),
                *gbs = cJSON_GetObjectItemCaseSensitive(p, "gbs");
    ck_assert_int_eq(cJSON_GetArraySize(sec), 15);
    static const char *const bound[] = {
        "gather batch",    "relu+pool1",      "relu+pool2",     "softmax xent",
        "relu+pool2 back", "relu+pool1 back", "sgd (6 tensors)"};
    ck_assert_int_eq(cJSON_GetArraySize(gbs), 7);
    for (size_t i = 0; i < 7; i++)
        ck_assert_msg(num(gbs, bound[i]) > 0, "no GB/s for %s", bound[i]);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(gbs, "conv2 forward"));
    cJSON_Delete(j);
}
END_TEST

/* Exit status 2 with every one of the words in the message. */
static void expect_usage(const char *args, const char *w1, const char *w2)
{
    run_result r = train("%s", args);
    ck_assert_msg(r.status == 2, "ndcl-train %s: exit %d, want 2\n%s", args, r.status,
                  r.err);
    ck_assert_msg(strstr(r.err, w1) && (!w2 || strstr(r.err, w2)),
                  "ndcl-train %s: the message does not name \"%s\"%s%s:\n%s", args, w1,
                  w2 ? " and " : "", w2 ? w2 : "", r.err);
    run_free(&r);
}

START_TEST(bad_data_files_exit_2)
{
    char dir[512], p[600], q[600], args[2048];
    /* The synthetic set itself is fine: one step of 16, 10 test images. */
    tmp_path(dir, sizeof dir, "good");
    make_data(dir);
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    run_result r = train("%s", args);
    ck_assert_msg(r.status == 0, "synthetic data: exit %d\n%s", r.status, r.err);
    run_free(&r);

    snprintf(args, sizeof args, "--data '%s/none' -q", dir);
    snprintf(p, sizeof p, "%s/none/train-images-idx3-ubyte.gz", dir);
    expect_usage(args, p, "No such file");

    /* Truncated gzip data and truncated plain data. */
    tmp_path(dir, sizeof dir, "trunc");
    make_data(dir);
    uint32_t tr[3] = {20, 28, 28}, lab = 20;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_idx(p, 0x803, 3, tr, 19 * 784 + 5, 251, true);
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, "truncated");
    tmp_path(dir, sizeof dir, "trunc2");
    make_data(dir);
    snprintf(q, sizeof q, "%s/train-images-idx3-ubyte.gz", dir);
    remove(q);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    write_idx(p, 0x803, 3, tr, 784, 251, false);
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, "truncated");
    /* A gzip stream cut short. */
    tmp_path(dir, sizeof dir, "trunc3");
    make_data(dir);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    {
        char *whole = NULL;
        FILE *f = fopen(p, "rb");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        whole = malloc((size_t)n);
        ck_assert_uint_eq(fread(whole, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        f = fopen(p, "wb");
        ck_assert_uint_eq(fwrite(whole, 1, (size_t)n - 12, f), (size_t)n - 12);
        fclose(f);
        free(whole);
    }
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, NULL);

    /* A labels file where the images should be: the wrong magic number. */
    tmp_path(dir, sizeof dir, "magic");
    make_data(dir);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    write_idx(p, 0x801, 3, tr, 20 * 784, 251, true);
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, "magic number");

    /* 20 images, 19 labels: both files named. */
    tmp_path(dir, sizeof dir, "count");
    make_data(dir);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    lab = 19;
    write_idx(p, 0x801, 1, &lab, 19, 10, true);
    snprintf(q, sizeof q, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, q);

    /* A label that is not a class. */
    tmp_path(dir, sizeof dir, "label");
    make_data(dir);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    lab = 20;
    write_idx(p, 0x801, 1, &lab, 20, 13, true); /* 10, 11, 12 among them */
    snprintf(args, sizeof args, "--data '%s' --batch 16 -q", dir);
    expect_usage(args, p, "label");

    /* --batch larger than the data, --limit beyond it. */
    tmp_path(dir, sizeof dir, "good");
    snprintf(args, sizeof args, "--data '%s' --batch 21 -q", dir);
    expect_usage(args, "--batch", "20");
    snprintf(args, sizeof args, "--data '%s' --batch 8 --limit 4 -q", dir);
    expect_usage(args, "--batch", NULL);
    snprintf(args, sizeof args, "--data '%s' --limit 21 -q", dir);
    expect_usage(args, "--limit", NULL);
}
END_TEST

START_TEST(bad_flags_exit_2)
{
    char args[1024];
    expect_usage("--net deep", "--net", "deep");
    expect_usage("--epochs 0", "--epochs", NULL);
    expect_usage("--epochs=two", "--epochs", "two");
    expect_usage("-e", "--epochs", "value");
    expect_usage("--batch 0", "--batch", NULL);
    expect_usage("--lr -0.1", "--lr", NULL);
    expect_usage("--lr nan", "--lr", NULL);
    expect_usage("--momentum 2", "--momentum", NULL);
    expect_usage("--seed -1", "--seed", NULL);
    expect_usage("--limit 0", "--limit", NULL);
    expect_usage("--test-limit x", "--test-limit", NULL);
    expect_usage("--stats-every 0", "--stats-every", NULL);
    expect_usage("--stats-every -2", "--stats-every", NULL);
    expect_usage("--net plain --stats-every 2", "--stats-every", "--net nd");
    expect_usage("--target-acc 0", "--target-acc", NULL);
    expect_usage("--target-acc 1.5", "--target-acc", NULL);
    expect_usage("--target-acc nan", "--target-acc", NULL);
    expect_usage("--eval-every 0", "--eval-every", NULL);
    expect_usage("--bogus", "--bogus", NULL);
    expect_usage("extra", "extra", NULL);
    expect_usage("--json /nonexistent-dir/r.json", "--json", "/nonexistent-dir");
    expect_usage("--plot /nonexistent-dir/p.png", "--plot", NULL);
    snprintf(args, sizeof args, "--data '%s' --test-limit 20000 -q", data_dir);
    expect_usage(args, "--test-limit", NULL);
    run_result r = train("--help");
    ck_assert_msg(r.status == 0 && strstr(r.out, "--net nd|plain") &&
                      strstr(r.out, "--plot"),
                  "--help: exit %d", r.status);
    run_free(&r);
    r = train("--version");
    ck_assert_msg(r.status == 0 && strstr(r.out, ndcl_version_string()), "--version");
    run_free(&r);
}
END_TEST

START_TEST(diverging_run_exits_1_naming_the_step)
{
    run_result r =
        train("--data '%s' --net plain --lr 1e6 --limit 640 --test-limit 100", data_dir);
    ck_assert_msg(r.status == 1, "exit %d, want 1\n%s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "step ") && strstr(r.err, "the loss is"), "%s", r.err);
    run_free(&r);
    /* With deconvolution the statistics may overflow before the loss does;
     * either way the run fails. */
    r = train("--data '%s' --net nd --lr 1e6 --limit 640 --test-limit 100 -q", data_dir);
    ck_assert_msg(r.status == 1 && strstr(r.err, "step"), "exit %d, want 1\n%s", r.status,
                  r.err);
    run_free(&r);
}
END_TEST

int main(void)
{
    data_dir = getenv("NDCL_TRAIN_DATA");
    if (!data_dir || !*data_dir) {
        fprintf(stderr, "NDCL_TRAIN_DATA (the Fashion-MNIST directory) is not set\n");
        return 1;
    }
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("train-tool");
    /* One case per test, so that CK_RUN_CASE runs one alone. */
#define ADD(fn)                                                                            \
    do {                                                                                   \
        TCase *tc = tcase_create(#fn);                                                     \
        tcase_set_timeout(tc, 900);                                                        \
        tcase_add_test(tc, fn);                                                            \
        suite_add_tcase(s, tc);                                                            \
    } while (0)
    ADD(nd_run_learns);
    ADD(plain_run_learns);
    ADD(same_seed_same_losses);
    ADD(augment_repeats_and_learns);
    ADD(saved_layers_reload_in_ndcl_run);
    ADD(plot_draws_a_png);
    ADD(bad_data_files_exit_2);
    ADD(bad_flags_exit_2);
    ADD(stats_every);
    ADD(target_accuracy);
    ADD(profile_reports_bandwidth);
    ADD(diverging_run_exits_1_naming_the_step);
    SRunner *sr = srunner_create(s);
    if (!getenv("CK_FORK")) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return failed ? 1 : 0;
}
