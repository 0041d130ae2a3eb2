/* ndcl-train.c - trains a small CNN on Fashion-MNIST on one OpenCL device,
 * with ndcl's network deconvolution layers or without: the command line,
 * the data, the epoch loop with its progress, the JSON record, the saved
 * model and the plot. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "idx.h"
#include "net.h"
#include "outputs.h"
#include "rank_agree.h"
#include "ranks.h"

enum {
    EXIT_OK = TOOL_EXIT_OK,
    EXIT_FAILED = TOOL_EXIT_DEVICE,
    EXIT_USAGE = TOOL_EXIT_USAGE
};

/* What --save writes in its directory: an existing --save directory may
 * hold these and nothing else (it is replaced whole). */
static const char *const save_names[] = {"0.safetensors", "3.safetensors", "7.safetensors",
                                         "model.safetensors", NULL};

static const char *prog = "ndcl-train";
/* With --sync: this process's rank of the MPI job. */
static train_ranks ranks = {false, 0, 1};
/* The output files (outputs.h) and the index of each, -1 when not asked. */
static outputs outs;
static int out_json = -1, out_plot = -1, out_save = -1;

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
/* --augment's largest move, in pixels each way. */
#define AUGMENT_SHIFT 2

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: %s [--net nd|plain] [--epochs E] [--batch B] [--lr LR] [--seed S]\n"
        "       [--data DIR] [--limit N] [--test-limit N] [--device SPEC]\n"
        "       [--json FILE] [--save DIR] [--plot FILE.png] [--profile] [--quiet]\n"
        "       [--augment] [--sync] [--stats-every K] [--target-acc A]\n"
        "       [--eval-every N]\n"
        "       %s --help | --version\n"
        "\n"
        "Trains a small CNN on Fashion-MNIST on one OpenCL device and reports its\n"
        "test accuracy after every epoch:\n"
        "  conv 1->32 3x3 pad 1, ReLU, max-pool 2, conv 32->64 3x3 pad 1, ReLU,\n"
        "  max-pool 2, flatten, linear 3136->10, softmax cross-entropy.\n"
        "With --net nd the layers are ndcl's network deconvolution layers as the\n"
        "original trains them: FastDeconv(1, 32, 3, padding=1, freeze=True,\n"
        "n_iter=15), FastDeconv(32, 64, 3, padding=1), Delinear(3136, 10,\n"
        "block=64); with --net plain the same layers without deconvolution (a plain\n"
        "convolution and linear map). Everything runs on the device: ndcl's layers,\n"
        "and the tool's own kernels for the rest (ReLU, pooling, the loss, SGD,\n"
        "the initialisation); a step reads one number back, its loss.\n"
        "\n"
        "Training: PyTorch's default initialisation from --seed, SGD with momentum\n"
        "and weight decay (on every parameter), the learning rate annealed to 0 by a\n"
        "cosine over every step of the run, inputs scaled to [0, 1], each epoch a\n"
        "fresh permutation of the training images from the seeded generator, the\n"
        "last partial batch dropped. The same seed on the same device gives the\n"
        "same losses.\n"
        "\n"
        "  --net nd|plain      with or without deconvolution (default nd)\n"
        "  -e, --epochs E      epochs (default 1)\n"
        "  -b, --batch B       batch size (default 128)\n"
        "  --lr LR             initial learning rate (default 0.05)\n"
        "  --momentum M        SGD momentum (default 0.9)\n"
        "  --weight-decay WD   L2 weight decay (default 1e-4)\n"
        "  --seed S            initialisation and data order (default 1)\n"
        "  --data DIR          the IDX files train-images-idx3-ubyte.gz,\n"
        "                      train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,\n"
        "                      t10k-labels-idx1-ubyte.gz (gzip or not; default\n"
        "                      " DEFAULT_DATA ", Debian's\n"
        "                      dataset-fashion-mnist)\n"
        "  --limit N           train on the first N training images only\n"
        "  --test-limit N      evaluate on the first N test images only\n"
        "  -d, --device SPEC   the OpenCL device: \"P:D\" or a part of its name\n"
        "  --json FILE         write the run as JSON: \"settings\", \"device\",\n"
        "                      \"epochs\": [{epoch, train_loss (mean over the epoch),\n"
        "                      test_acc, seconds (the wall time of the epoch's\n"
        "                      training steps; evaluation excluded), losses (every\n"
        "                      step's)}], first_step_seconds (kernel builds\n"
        "                      included), and \"profile\" with --profile\n"
        "  --save DIR          write DIR/0.safetensors, DIR/3.safetensors and\n"
        "                      DIR/7.safetensors (the layers as layer files that\n"
        "                      ndcl-run loads) and DIR/model.safetensors (the\n"
        "                      evaluation weights with the deconvolution folded in:\n"
        "                      0.weight, 0.bias, 3.weight, 3.bias, 7.weight, 7.bias,\n"
        "                      the state_dict of the plain PyTorch network\n"
        "                      nn.Sequential(Conv2d(1, 32, 3, padding=1), ReLU(),\n"
        "                      MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU(),\n"
        "                      MaxPool2d(2), Flatten(), Linear(3136, 10)))\n"
        "  --plot FILE.png     draw the training loss and the test accuracy per\n"
        "                      epoch with gnuplot (Debian: gnuplot-nox)\n"
        "  --profile           wait for the device after every operation and report\n"
        "                      where a step's time goes (slows the run a little)\n"
        "  --augment           augment the training images: each mirrored left-right\n"
        "                      with probability 1/2 and moved by up to 2 pixels\n"
        "                      each way (zeros moved in), drawn from --seed and the\n"
        "                      image's place in the run (off by default, as in the\n"
        "                      PyTorch anchor)\n"
        "  --sync              one rank of a data-parallel job under mpirun -n K: each\n"
        "                      rank takes its contiguous slice of every batch\n"
        "                      (--batch must be a multiple of K), the layers'\n"
        "                      statistics are those of the whole batch and the\n"
        "                      gradients are summed across the ranks every step, so\n"
        "                      K ranks train as one process does with the whole\n"
        "                      batch; each rank evaluates a slice of the test set.\n"
        "                      Rank 0 prints and writes the outputs. A failure on\n"
        "                      one rank during training aborts the job (builds\n"
        "                      with Open MPI only)\n"
        "  --stats-every K     amortised statistics (--net nd; opt-in): the layers\n"
        "                      compute the batch's mean and whitening matrix on\n"
        "                      every K-th step only and train on those between\n"
        "                      (NDCL_LAYER_STATS_EVERY: no gradient through them\n"
        "                      on the steps between); default 1, every step, the\n"
        "                      original's arithmetic\n"
        "  --target-acc A      report when the test accuracy first reached A (in\n"
        "                      (0, 1]): the training time until then (evaluation\n"
        "                      excluded), the step and the epoch; in --json as\n"
        "                      \"target\"\n"
        "  --eval-every N      evaluate on the test images every N steps as well as\n"
        "                      after every epoch (in --json as \"evals\")\n"
        "  -q, --quiet         no progress output\n"
        "  -h, --help          this text\n"
        "  -V, --version       the ndcl version\n"
        "\n"
        "Progress goes to stderr: a bar with images/s and the time left on a\n"
        "terminal, a line every tenth of an epoch otherwise. Each epoch's result\n"
        "and the final test accuracy go to stdout.\n"
        "\n"
        "Environment: NDCL_DEVICE (the default device), NDCL_CACHE_DIR, NDCL_CACHE,\n"
        "NDCL_DEBUG, as for every ndcl tool.\n"
        "\n"
        "Outputs (--json, --plot, --save) are all written or none: each is\n"
        "checked before the data is read (a new name in a writable directory, an\n"
        "existing regular file with one link, for --save an existing directory\n"
        "holding only the files it writes; never a device, FIFO, symlink, hard\n"
        "link or an input, never two outputs on one name: exit 2 naming both),\n"
        "written into a staging directory beside the target once training has\n"
        "succeeded, and renamed into place together (--save's directory swapped in\n"
        "whole). A failed or interrupted run (SIGINT, SIGTERM, SIGHUP) leaves every\n"
        "target as it was and no temporary behind.\n"
        "\n"
        "Exit status (the same table in every ndcl tool):\n"
        "  0  success\n"
        "  1  a device or numerical failure: no usable OpenCL device, an OpenCL\n"
        "     error, a loss that is not finite (the step named), another rank's\n"
        "     failure of that kind\n"
        "  2  bad arguments or files: a usage error, a --device SPEC that is\n"
        "     malformed or matches no device, a missing or truncated data file, a\n"
        "     wrong magic number, image and label counts that differ, --batch\n"
        "     larger than the data, an output that cannot be written as asked,\n"
        "     ranks whose settings disagree\n"
        "Errors are reported on stderr, naming the file, option or rank concerned.\n",
        prog, prog);
}

/* The last message printed, without its prefix. */
static char last_msg[RANK_REASON_MAX];

static void msg(const char *fmt, ...)
{
    va_list ap;
    /* One write, so that the lines of several ranks do not interleave. */
    char line[4608];
    int at = ranks.size > 1 ? snprintf(line, 512, "%s: rank %d: ", prog, ranks.rank)
                            : snprintf(line, 512, "%s: ", prog);
    va_start(ap, fmt);
    vsnprintf(line + at, sizeof line - (size_t)at - 1, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    /* The reason this rank gives the others at start-up (rank_agree.h). */
    snprintf(last_msg, sizeof last_msg, "%s", line + at);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ options */

typedef struct options {
    const char *data, *device, *json, *save, *plot;
    bool nd, profile, quiet, sync, augment;
    long epochs, batch, limit, test_limit, stats_every, eval_every;
    double lr, momentum, weight_decay, target_acc;
    unsigned long seed;
} options;

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The options that take a value; each has a long name, some a short one. */
static const struct {
    const char *s, *l;
} valued[] = {{NULL, "--net"},        {"-e", "--epochs"},    {"-b", "--batch"},
              {NULL, "--lr"},         {NULL, "--momentum"},  {NULL, "--weight-decay"},
              {NULL, "--seed"},       {NULL, "--data"},      {NULL, "--limit"},
              {NULL, "--test-limit"}, {"-d", "--device"},    {NULL, "--json"},
              {NULL, "--save"},       {NULL, "--plot"},      {NULL, "--stats-every"},
              {NULL, "--target-acc"}, {NULL, "--eval-every"}};

/* The long name of argv[*i] if it is a valued option, with *v its value
 * ("--opt VALUE", "--opt=VALUE" or "-o VALUE"); NULL otherwise. *v is NULL
 * when the value is missing. */
static const char *valued_option(int argc, char **argv, int *i, const char **v)
{
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        size_t n = strlen(valued[k].l);
        if (!strncmp(a, valued[k].l, n) && a[n] == '=') {
            *v = a + n + 1;
            return valued[k].l;
        }
        if (!strcmp(a, valued[k].l) || (valued[k].s && !strcmp(a, valued[k].s))) {
            *v = *i + 1 < argc ? argv[++*i] : NULL;
            return valued[k].l;
        }
    }
    return NULL;
}

static int parse(int argc, char **argv, options *o, bool *done)
{
    *o = (options){.data = DEFAULT_DATA,
                   .nd = true,
                   .epochs = 1,
                   .batch = 128,
                   .lr = 0.05,
                   .momentum = 0.9,
                   .weight_decay = 1e-4,
                   .seed = 1,
                   .stats_every = 1};
    *done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL, *flag;
        bool ok = true;
        long l = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            *done = true;
            return EXIT_OK;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("%s %s\n", prog, ndcl_version_string());
            *done = true;
            return EXIT_OK;
        } else if (!strcmp(a, "--profile")) {
            o->profile = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = true;
        } else if (!strcmp(a, "--sync")) {
            o->sync = true;
        } else if (!strcmp(a, "--augment")) {
            o->augment = true;
        } else if ((flag = valued_option(argc, argv, &i, &v)) == NULL) {
            msg("%s: unknown %s (see --help)", a, a[0] == '-' ? "option" : "argument");
            return EXIT_USAGE;
        } else if (!v) {
            msg("%s needs a value (see --help)", flag);
            return EXIT_USAGE;
        } else if (!strcmp(flag, "--net")) {
            ok = !strcmp(v, "nd") || !strcmp(v, "plain");
            o->nd = !strcmp(v, "nd");
            if (!ok) msg("--net: \"%s\" (must be nd or plain)", v);
        } else if (!strcmp(flag, "--epochs")) {
            ok = parse_long(v, 1, 100000, &o->epochs);
            if (!ok) msg("--epochs: \"%s\" (must be an integer 1..100000)", v);
        } else if (!strcmp(flag, "--batch")) {
            ok = parse_long(v, 1, 100000, &o->batch);
            if (!ok) msg("--batch: \"%s\" (must be an integer 1..100000)", v);
        } else if (!strcmp(flag, "--lr")) {
            ok = parse_double(v, 0, 1e30, &o->lr) && o->lr > 0;
            if (!ok) msg("--lr: \"%s\" (must be a finite number > 0)", v);
        } else if (!strcmp(flag, "--momentum")) {
            ok = parse_double(v, 0, 1, &o->momentum);
            if (!ok) msg("--momentum: \"%s\" (must be in [0, 1])", v);
        } else if (!strcmp(flag, "--weight-decay")) {
            ok = parse_double(v, 0, 1, &o->weight_decay);
            if (!ok) msg("--weight-decay: \"%s\" (must be in [0, 1])", v);
        } else if (!strcmp(flag, "--seed")) {
            ok = parse_long(v, 0, 4294967295L, &l);
            o->seed = (unsigned long)l;
            if (!ok) msg("--seed: \"%s\" (must be an integer 0..4294967295)", v);
        } else if (!strcmp(flag, "--limit")) {
            ok = parse_long(v, 1, LONG_MAX, &o->limit);
            if (!ok) msg("--limit: \"%s\" (must be an integer >= 1)", v);
        } else if (!strcmp(flag, "--test-limit")) {
            ok = parse_long(v, 1, LONG_MAX, &o->test_limit);
            if (!ok) msg("--test-limit: \"%s\" (must be an integer >= 1)", v);
        } else if (!strcmp(flag, "--stats-every")) {
            ok = parse_long(v, 1, INT32_MAX, &o->stats_every);
            if (!ok) msg("--stats-every: \"%s\" (must be an integer 1..2147483647)", v);
        } else if (!strcmp(flag, "--target-acc")) {
            ok = parse_double(v, 0, 1, &o->target_acc) && o->target_acc > 0;
            if (!ok) msg("--target-acc: \"%s\" (must be a number in (0, 1])", v);
        } else if (!strcmp(flag, "--eval-every")) {
            ok = parse_long(v, 1, LONG_MAX, &o->eval_every);
            if (!ok) msg("--eval-every: \"%s\" (must be an integer >= 1)", v);
        } else if (!strcmp(flag, "--data")) {
            o->data = v;
        } else if (!strcmp(flag, "--device")) {
            o->device = v;
        } else if (!strcmp(flag, "--json")) {
            o->json = v;
        } else if (!strcmp(flag, "--save")) {
            o->save = v;
        } else if (!strcmp(flag, "--plot")) {
            o->plot = v;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (o->stats_every > 1 && !o->nd) {
        msg("--stats-every %ld: the plain network has no statistics (it applies to --net "
            "nd)",
            o->stats_every);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static bool gnuplot_available(void)
{
    FILE *p = popen("gnuplot --version 2>/dev/null", "r");
    if (!p) return false;
    char line[128];
    bool got = fgets(line, sizeof line, p) != NULL;
    return pclose(p) == 0 && got;
}

/* ------------------------------------------------------------ data */

/* DIR/base.gz, or DIR/base when only the uncompressed file is there. */
static void data_path(const char *dir, const char *base, char *out, size_t n)
{
    struct stat st;
    snprintf(out, n, "%s/%s", dir, base);
    if (stat(out, &st) == 0) return;
    snprintf(out, n, "%s/%s.gz", dir, base);
}

typedef struct dev_data {
    cl_mem images, labels, index;
    int count;
} dev_data;

/* Images and labels first .. first+count-1 of s. */
static int upload(tk *k, const idx_set *s, int first, int count, dev_data *d)
{
    cl_int err;
    size_t pix = s->rows * s->cols;
    d->count = count;
    d->images = clCreateBuffer(k->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               (size_t)count * pix, s->images + (size_t)first * pix, &err);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "uploading the images");
    d->labels = clCreateBuffer(k->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               (size_t)count, s->labels + first, &err);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "uploading the labels");
    /* The order of the images: the identity until an epoch shuffles it. */
    cl_int *id = malloc((size_t)count * sizeof *id);
    if (!id) return tr_fail(TR_DEVICE, "out of memory");
    for (int i = 0; i < count; i++)
        id[i] = i;
    d->index = clCreateBuffer(k->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              (size_t)count * sizeof *id, id, &err);
    free(id);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "uploading the order");
    return TR_OK;
}

static void dev_data_release(dev_data *d)
{
    cl_mem m[] = {d->images, d->labels, d->index};
    for (int i = 0; i < 3; i++)
        if (m[i]) clReleaseMemObject(m[i]);
}

/* splitmix64: the data order's generator, seeded by --seed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n) without modulo bias (Lemire's method). */
static uint32_t below(uint64_t *state, uint32_t n)
{
    uint64_t m = (next_random(state) >> 32) * (uint64_t)n;
    if ((uint32_t)m < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while ((uint32_t)m < t)
            m = (next_random(state) >> 32) * (uint64_t)n;
    }
    return (uint32_t)(m >> 32);
}

/* A fresh Fisher-Yates permutation of the training images, uploaded. */
static int shuffle(tk *k, dev_data *d, uint64_t *state, cl_int *perm)
{
    for (int i = 0; i < d->count; i++)
        perm[i] = i;
    for (int i = d->count - 1; i > 0; i--) {
        int j = (int)below(state, (uint32_t)i + 1);
        cl_int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    cl_int err = clEnqueueWriteBuffer(k->q, d->index, CL_TRUE, 0,
                                      (size_t)d->count * sizeof *perm, perm, 0, NULL, NULL);
    return err == CL_SUCCESS ? TR_OK : tr_fail_cl(err, "uploading the order");
}

/* ------------------------------------------------------------ progress */

typedef struct epoch_rec {
    double train_loss, test_acc, seconds;
    float *losses;
} epoch_rec;

/* One evaluation on the test images: after `step` training steps
 * (counted over the run), `seconds` of training (evaluations excluded). */
typedef struct eval_rec {
    int step;
    double epoch, seconds, test_acc;
} eval_rec;

typedef struct eval_log {
    eval_rec *v;
    int n, cap;
    int reached; /* index of the first at or above --target-acc, or -1 */
} eval_log;

static int eval_log_add(eval_log *log, eval_rec r, double target)
{
    if (log->n == log->cap) {
        int cap = log->cap ? 2 * log->cap : 16;
        eval_rec *v = realloc(log->v, (size_t)cap * sizeof *v);
        if (!v) return tr_fail(TR_DEVICE, "out of memory");
        log->v = v;
        log->cap = cap;
    }
    if (log->reached < 0 && target > 0 && r.test_acc >= target) log->reached = log->n;
    log->v[log->n++] = r;
    return TR_OK;
}

typedef struct progress {
    bool tty, quiet;
    int epochs, steps, batch;
    double last;          /* when the bar was last drawn */
    double train_seconds; /* training time of the finished epochs */
} progress;

static void fmt_time(double s, char *out, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static void show_progress(progress *p, int epoch, int done, double epoch_seconds,
                          double loss_sum)
{
    if (p->quiet || done == 0) return;
    double t = now();
    bool tenth = (long)done * 10 / p->steps != (long)(done - 1) * 10 / p->steps;
    if (p->tty ? (t - p->last < 0.2 && done < p->steps) : !tenth) return;
    p->last = t;
    double per_step =
        (p->train_seconds + epoch_seconds) / ((double)(epoch - 1) * p->steps + done);
    double left = per_step * ((double)(p->epochs - epoch) * p->steps + (p->steps - done));
    double ips = (double)done * p->batch / (epoch_seconds > 0 ? epoch_seconds : 1e-9);
    char eta[32];
    fmt_time(left, eta, sizeof eta);
    if (p->tty) {
        char bar[31];
        int fill = (int)((long)done * 30 / p->steps);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\repoch %d/%d [%s] %d/%d  %.0f img/s  ETA %s  loss %.4f ", epoch,
                p->epochs, bar, done, p->steps, ips, eta, loss_sum / done);
        if (done == p->steps) fputs("\r\033[K", stderr);
    } else {
        fprintf(stderr, "epoch %d/%d  step %d/%d  loss %.4f  %.0f img/s  ETA %s\n", epoch,
                p->epochs, done, p->steps, loss_sum / done, ips, eta);
    }
    fflush(stderr);
}

/* ------------------------------------------------------------ outputs */

/* GB/s of a memory-bound operation over the run, 0 for the others. */
static double op_gbs(const train_net *net, int op, int steps, int local)
{
    double bytes = net_op_bytes((net_op)op, local) * steps, t = net->op_seconds[op];
    return bytes > 0 && t > 0 ? bytes / t / 1e9 : 0;
}

static int write_json(const options *o, const ndcl_device_info *dev, int ntrain, int ntest,
                      int steps, const epoch_rec *ep, int nep, const eval_log *evals,
                      double first_step, const train_net *net, const char *target,
                      const char *path)
{
    cJSON *root = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(root, "settings");
    cJSON_AddStringToObject(root, "tool", prog);
    cJSON_AddStringToObject(root, "ndcl_version", ndcl_version_string());
    cJSON_AddStringToObject(s, "net", o->nd ? "nd" : "plain");
    cJSON_AddNumberToObject(s, "epochs", (double)o->epochs);
    cJSON_AddNumberToObject(s, "batch", (double)o->batch);
    cJSON_AddNumberToObject(s, "lr", o->lr);
    cJSON_AddNumberToObject(s, "momentum", o->momentum);
    cJSON_AddNumberToObject(s, "weight_decay", o->weight_decay);
    cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    cJSON_AddStringToObject(s, "data", o->data);
    cJSON_AddNumberToObject(s, "train_images", ntrain);
    cJSON_AddNumberToObject(s, "test_images", ntest);
    cJSON_AddNumberToObject(s, "steps_per_epoch", steps);
    cJSON_AddNumberToObject(s, "ranks", ranks.size);
    cJSON_AddBoolToObject(s, "augment", o->augment);
    cJSON_AddNumberToObject(s, "stats_every", (double)o->stats_every);
    cJSON_AddNumberToObject(s, "eval_every", (double)o->eval_every);
    cJSON *d = cJSON_AddObjectToObject(root, "device");
    cJSON_AddStringToObject(d, "name", dev->name);
    cJSON_AddStringToObject(d, "platform", dev->platform_name);
    cJSON_AddStringToObject(d, "driver", dev->driver_version);
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", dev->platform_index, dev->device_index);
    cJSON_AddStringToObject(d, "spec", spec);
    cJSON *arr = cJSON_AddArrayToObject(root, "epochs");
    for (int e = 0; e < nep; e++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "epoch", e + 1);
        cJSON_AddNumberToObject(x, "train_loss", ep[e].train_loss);
        cJSON_AddNumberToObject(x, "test_acc", ep[e].test_acc);
        cJSON_AddNumberToObject(x, "seconds", ep[e].seconds);
        cJSON *l = cJSON_AddArrayToObject(x, "losses");
        for (int i = 0; i < steps; i++)
            cJSON_AddItemToArray(l, cJSON_CreateNumber(ep[e].losses[i]));
        cJSON_AddItemToArray(arr, x);
    }
    cJSON *ev = cJSON_AddArrayToObject(root, "evals");
    for (int i = 0; i < evals->n; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "step", evals->v[i].step);
        cJSON_AddNumberToObject(x, "epoch", evals->v[i].epoch);
        cJSON_AddNumberToObject(x, "seconds", evals->v[i].seconds);
        cJSON_AddNumberToObject(x, "test_acc", evals->v[i].test_acc);
        cJSON_AddItemToArray(ev, x);
    }
    if (o->target_acc > 0) {
        cJSON *t = cJSON_AddObjectToObject(root, "target");
        cJSON_AddNumberToObject(t, "test_acc", o->target_acc);
        if (evals->reached >= 0) {
            const eval_rec *r = &evals->v[evals->reached];
            cJSON_AddNumberToObject(t, "seconds", r->seconds);
            cJSON_AddNumberToObject(t, "step", r->step);
            cJSON_AddNumberToObject(t, "epoch", r->epoch);
            cJSON_AddNumberToObject(t, "reached_acc", r->test_acc);
        } else {
            cJSON_AddNullToObject(t, "seconds");
        }
    }
    cJSON_AddNumberToObject(root, "first_step_seconds", first_step);
    if (net->profile) {
        cJSON *p = cJSON_AddObjectToObject(root, "profile");
        cJSON_AddNumberToObject(p, "steps", (double)steps * nep);
        cJSON *ops = cJSON_AddObjectToObject(p, "seconds");
        for (int i = 0; i < OP_COUNT; i++)
            cJSON_AddNumberToObject(ops, net_op_names[i], net->op_seconds[i]);
        cJSON *gbs = cJSON_AddObjectToObject(p, "gbs");
        for (int i = 0; i < OP_COUNT; i++) {
            double g = op_gbs(net, i, steps * nep, (int)o->batch / ranks.size);
            if (g > 0) cJSON_AddNumberToObject(gbs, net_op_names[i], g);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return tr_fail(TR_DEVICE, "out of memory");
    /* path is the staging file (outputs.h), renamed over the target once
     * every output is written. */
    FILE *f = fopen(path, "w");
    int rc = TR_OK;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) >= 0 && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    int err = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok) rc = tr_fail(TR_INPUT, "--json %s: %s", target, strerror(err));
    free(text);
    return rc;
}

/* Draws into tmp, the staging file of the target path. */
static int plot(const options *o, const epoch_rec *ep, int nep, int steps, const char *path,
                const char *tmp)
{
    FILE *p = popen("gnuplot", "w");
    if (!p) return tr_fail(TR_DEVICE, "--plot: cannot run gnuplot: %s", strerror(errno));
    /* The per-step losses averaged over windows of about a twentieth of an
     * epoch, the epoch means, and the test accuracy after each epoch. */
    int win = steps / 20 > 0 ? steps / 20 : 1;
    char what[64];
    if (win > 1)
        snprintf(what, sizeof what, "training loss (mean of %d steps)", win);
    else
        snprintf(what, sizeof what, "training loss per step");
    fprintf(p, "$loss << EOD\n");
    for (int e = 0; e < nep; e++)
        for (int i = 0; i + win <= steps; i += win) {
            double s = 0;
            for (int j = i; j < i + win; j++)
                s += ep[e].losses[j];
            fprintf(p, "%.6f %.6g\n", e + (i + 0.5 * win) / steps, s / win);
        }
    fprintf(p, "EOD\n$epoch << EOD\n");
    for (int e = 0; e < nep; e++)
        fprintf(p, "%d %.6g %.6g\n", e + 1, ep[e].train_loss, ep[e].test_acc);
    fprintf(p, "EOD\n");
    /* gnuplot cannot autoscale a range of one value (one epoch). */
    double lo = 1, hi = 0;
    for (int e = 0; e < nep; e++) {
        lo = fmin(lo, ep[e].test_acc);
        hi = fmax(hi, ep[e].test_acc);
    }
    double pad = fmax(0.01, 0.1 * (hi - lo));
    fprintf(p, "set y2range [%g:%g]\n", fmax(0, lo - pad), fmin(1, hi + pad));
    fprintf(
        p,
        "set terminal pngcairo size 900,560 noenhanced\n"
        "set output '%s'\n"
        "set title \"ndcl-train --net %s%s: Fashion-MNIST, batch %ld, lr %g, %ld "
        "epoch%s\"\n"
        "set xlabel 'epoch'\nset ylabel 'training loss'\nset y2label 'test accuracy'\n"
        "set xrange [0:%g]\nset ytics nomirror\nset y2tics\nset grid\n"
        "set key above horizontal\n"
        "plot $loss using 1:2 with lines lw 1.5 lc rgb '#1f77b4' title '%s', \\\n"
        "     $epoch using 1:2 with points pt 7 ps 1.2 lc rgb '#1f77b4' title 'epoch mean "
        "loss', \\\n"
        "     $epoch using 1:3 axes x1y2 with linespoints pt 5 lw 2 lc rgb '#d62728' title "
        "'test accuracy'\n",
        tmp, o->nd ? "nd" : "plain", o->augment ? " --augment" : "", o->batch, o->lr,
        o->epochs, o->epochs > 1 ? "s" : "", nep * 1.04, what);
    int st = pclose(p);
    if (st != 0)
        return tr_fail(TR_DEVICE, "--plot %s: gnuplot failed (status %d)", path, st);
    return TR_OK;
}

static void print_profile(const train_net *net, int steps, int local)
{
    double total = 0;
    for (int i = 0; i < OP_COUNT; i++)
        total += net->op_seconds[i];
    fprintf(stderr,
            "profile over %d steps (each operation waited for; GB/s: bytes the "
            "tool's own kernels move / time):\n",
            steps);
    fprintf(stderr, "  %-18s %10s %10s %7s %8s\n", "operation", "total s", "ms/step",
            "share", "GB/s");
    for (int i = 0; i < OP_COUNT; i++) {
        char gbs[32] = "";
        double g = op_gbs(net, i, steps, local);
        if (g > 0) snprintf(gbs, sizeof gbs, "%8.2f", g);
        fprintf(stderr, "  %-18s %10.3f %10.2f %6.1f%% %8s\n", net_op_names[i],
                net->op_seconds[i], 1e3 * net->op_seconds[i] / steps,
                100 * net->op_seconds[i] / (total > 0 ? total : 1), gbs);
    }
    fprintf(stderr, "  %-18s %10.3f %10.2f\n", "all", total, 1e3 * total / steps);
}

/* ------------------------------------------------------------ main */

static int fail(int rc)
{
    msg("%s", tr_error());
    return rc;
}

static double best_acc(const eval_log *log)
{
    double best = 0;
    for (int i = 0; i < log->n; i++)
        if (log->v[i].test_acc > best) best = log->v[i].test_acc;
    return best;
}

/* The test accuracy now, every rank's slice counted. */
static int test_accuracy(train_net *net, dev_data *dte, int ntest, double *acc)
{
    long correct = 0;
    int rc = net_evaluate(net, dte->count, dte->images, dte->labels, dte->index, &correct);
    double all_correct = (double)correct;
    if (!rc) rc = net_allreduce(net, &all_correct, 1);
    if (!rc) *acc = all_correct / ntest;
    return rc;
}

static int train(const options *o, idx_set *trs, idx_set *tes, ndcl_context *ctx)
{
    int ntrain = (int)trs->count, ntest = (int)tes->count;
    int steps = ntrain / (int)o->batch, total = steps * (int)o->epochs;
    /* Rank 0 speaks and writes; every rank evaluates its slice of the tests. */
    bool lead = ranks.rank == 0, quiet = o->quiet || !lead;
    int test_first = (int)((long)ntest * ranks.rank / ranks.size);
    int test_count = (int)((long)ntest * (ranks.rank + 1) / ranks.size) - test_first;
    ndcl_group group;
    net_config cfg = {.nd = o->nd,
                      .lr = (float)o->lr,
                      .momentum = (float)o->momentum,
                      .weight_decay = (float)o->weight_decay,
                      .augment = o->augment,
                      .augment_shift = AUGMENT_SHIFT,
                      .augment_salt = (uint32_t)o->seed * 0x9e3779b9U ^ 0x85ebca6bU,
                      .stats_every = (int)o->stats_every};
    eval_log evals = {.reached = -1};
    train_net *net = NULL;
    dev_data dtr = {0}, dte = {0};
    epoch_rec *ep = calloc((size_t)o->epochs, sizeof *ep);
    cl_int *perm = malloc((size_t)ntrain * sizeof *perm);
    int rc = ep && perm ? TR_OK : tr_fail(TR_DEVICE, "out of memory");
    if (!rc && o->sync) {
        ndcl_status s = ranks_group(&ranks, &group);
        if (s != NDCL_SUCCESS)
            rc = tr_fail_ndcl(ctx, s, "--sync: the MPI group");
        else
            cfg.group = &group;
    }
    if (!rc) rc = net_create(ctx, &cfg, &net);
    if (!rc) net->profile = o->profile;
    if (!rc) rc = upload(&net->k, trs, 0, ntrain, &dtr);
    if (!rc) rc = upload(&net->k, tes, test_first, test_count, &dte);
    if (!rc) rc = net_init(net, (uint32_t)o->seed);
    ndcl_device_info dev = {0};
    ndcl_context_device(ctx, &dev);
    if (!rc && !quiet) {
        fprintf(stderr,
                "%s: --net %s on %s: %d training images (%d steps of %ld per epoch), "
                "%d test images\n",
                prog, o->nd ? "nd" : "plain", dev.name, ntrain, steps, o->batch, ntest);
        if (ranks.size > 1)
            fprintf(stderr, "%s: %d ranks, %ld images of each batch per rank\n", prog,
                    ranks.size, o->batch / ranks.size);
    }

    progress pg = {
        isatty(STDERR_FILENO) != 0, quiet, (int)o->epochs, steps, (int)o->batch, 0, 0};
    uint64_t state = (uint64_t)o->seed;
    double first_step = 0;
    int nep = 0;
    for (int e = 0; !rc && e < o->epochs; e++) {
        ep[e].losses = malloc((size_t)steps * sizeof(float));
        if (!ep[e].losses) rc = tr_fail(TR_DEVICE, "out of memory");
        if (!rc) rc = shuffle(&net->k, &dtr, &state, perm);
        double t0 = now(), loss_sum = 0;
        for (int s = 0; !rc && s < steps; s++) {
            float loss = 0;
            int step = e * steps + s;
            rc = net_step(net, (int)o->batch, dtr.images, dtr.labels, dtr.index,
                          s * (int)o->batch, step, total, &loss);
            if (step == 0) first_step = now() - t0;
            if (!rc && !isfinite(loss)) {
                if (pg.tty && !quiet) fputs("\n", stderr);
                rc = tr_fail(TR_DEVICE,
                             "step %d (epoch %d, batch %d of %d): the loss is %g; the "
                             "training diverged (try a smaller --lr)",
                             step + 1, e + 1, s + 1, steps, (double)loss);
            }
            if (rc) break;
            ep[e].losses[s] = loss;
            loss_sum += loss;
            show_progress(&pg, e + 1, s + 1, now() - t0, loss_sum);
            /* Between the epochs' own evaluations, on --eval-every; the
             * epoch's clock stops meanwhile (the step's loss was read, so
             * the queue holds no training work). */
            if (o->eval_every && (step + 1) % o->eval_every == 0 && s + 1 < steps) {
                double te = now(), acc = 0;
                eval_rec r = {step + 1, e + (double)(s + 1) / steps,
                              pg.train_seconds + (te - t0), 0};
                rc = test_accuracy(net, &dte, ntest, &acc);
                r.test_acc = acc;
                if (!rc) rc = eval_log_add(&evals, r, o->target_acc);
                t0 += now() - te;
            }
        }
        if (rc) break;
        ep[e].seconds = now() - t0;
        pg.train_seconds += ep[e].seconds;
        ep[e].train_loss = loss_sum / steps;
        /* Non-finite batch statistics usually show in the loss; when they do
         * not (an overflowing covariance whose fold stays finite), the
         * library's flag tells, once per epoch: reading it every step would
         * be a second read to the host per step. */
        ndcl_status s = ndcl_finish(ctx);
        if (s == NDCL_ERR_NUMERICAL) {
            rc = tr_fail(TR_DEVICE,
                         "epoch %d (steps %d-%d): a training forward met non-finite batch "
                         "statistics (the loss stayed finite); the training diverged (try "
                         "a smaller --lr)",
                         e + 1, e * steps + 1, (e + 1) * steps);
            break;
        }
        if (s != NDCL_SUCCESS) {
            rc = tr_fail_ndcl(ctx, s, "after the epoch's steps");
            break;
        }
        rc = test_accuracy(net, &dte, ntest, &ep[e].test_acc);
        if (!rc)
            rc = eval_log_add(
                &evals,
                (eval_rec){(e + 1) * steps, e + 1.0, pg.train_seconds, ep[e].test_acc},
                o->target_acc);
        if (rc) break;
        nep = e + 1;
        if (lead)
            printf(
                "epoch %d/%ld  train_loss %.4f  test_acc %.4f  %.1f s  (%.0f img/s, %.1f "
                "ms/step)\n",
                e + 1, o->epochs, ep[e].train_loss, ep[e].test_acc, ep[e].seconds,
                steps * o->batch / ep[e].seconds, 1e3 * ep[e].seconds / steps);
        fflush(stdout);
    }
    if (!rc && lead) {
        double all = pg.train_seconds;
        printf("test accuracy %.4f  (--net %s, %ld epoch%s, %.1f s of training)\n",
               ep[nep - 1].test_acc, o->nd ? "nd" : "plain", o->epochs,
               o->epochs > 1 ? "s" : "", all);
        if (o->target_acc > 0 && evals.reached >= 0) {
            const eval_rec *r = &evals.v[evals.reached];
            printf("target test accuracy %.4f reached at step %d (epoch %.2f) after %.1f s "
                   "of training (test accuracy %.4f)\n",
                   o->target_acc, r->step, r->epoch, r->seconds, r->test_acc);
        } else if (o->target_acc > 0) {
            printf("target test accuracy %.4f not reached (best %.4f)\n", o->target_acc,
                   best_acc(&evals));
        }
        if (o->profile) print_profile(net, steps * nep, (int)o->batch / ranks.size);
    }
    /* Every output into its staging place, then all renamed at once. */
    char err[1024];
    if (!rc && lead && outs.n_out && outputs_begin(&outs, err, sizeof err))
        rc = tr_fail(TR_INPUT, "%s", err);
    if (!rc && lead && o->save) rc = net_save(net, outputs_tmp(&outs, out_save));
    if (!rc && lead && o->json)
        rc = write_json(o, &dev, ntrain, ntest, steps, ep, nep, &evals, first_step, net,
                        o->json, outputs_tmp(&outs, out_json));
    if (!rc && lead && o->plot)
        rc = plot(o, ep, nep, steps, o->plot, outputs_tmp(&outs, out_plot));
    if (!rc && lead && outs.n_out && outputs_commit(&outs, save_names, err, sizeof err))
        rc = tr_fail(TR_INPUT, "%s", err);
    outputs_discard(&outs);
    if (rc) {
        fail(rc);
        /* The others may be waiting in a collective for this rank. */
        ranks_abort(&ranks, rc == TR_INPUT ? EXIT_USAGE : EXIT_FAILED);
    }
    for (int e = 0; ep && e < o->epochs; e++)
        free(ep[e].losses);
    free(ep);
    free(evals.v);
    free(perm);
    dev_data_release(&dtr);
    dev_data_release(&dte);
    net_destroy(net);
    return rc;
}

static int run(const options *o);

int main(int argc, char **argv)
{
    options o;
    bool done;
    int rc = parse(argc, argv, &o, &done);
    if (rc != EXIT_OK || done) return rc;
    if (o.sync && !ranks_init(&argc, &argv, &ranks)) return EXIT_USAGE;
    rc = run(&o);
    ranks_finalize(&ranks);
    return rc;
}

/* The settings every rank of a --sync job must share, as rank_agree
 * compares them. */
static void settings_text(const options *o, const idx_set *trs, const idx_set *tes,
                          char *out, size_t n)
{
    /* Not the outputs, the device, --profile or --target-acc: only rank 0
     * writes and reports, and each rank may have its own device and timing.
     * --eval-every must agree: every rank joins each evaluation's sum. */
    snprintf(out, n,
             "version=%s;--net=%s;--epochs=%ld;--batch=%ld;--lr=%.17g;--momentum=%.17g;"
             "--weight-decay=%.17g;--seed=%lu;--limit (training images)=%zu;--test-limit "
             "(test images)=%zu;--augment=%s;--stats-every=%ld;--eval-every=%ld",
             ndcl_version_string(), o->nd ? "nd" : "plain", o->epochs, o->batch, o->lr,
             o->momentum, o->weight_decay, o->seed, trs->count, tes->count,
             o->augment ? "on" : "off", o->stats_every, o->eval_every);
}

/* Everything after the command line. With --sync every rank gets as far as
 * its device (or its first failure) and then meets the others once
 * (rank_agree): the job starts only when every rank is ready and all share
 * the settings, and otherwise stops on every rank, naming the rank. */
static int run(const options *o)
{
    int rc = EXIT_OK;
    idx_set trs = {0}, tes = {0};
    ndcl_context *ctx = NULL;
    if (o->sync && o->batch % ranks.size != 0) {
        msg("--sync: --batch %ld does not split evenly over %d ranks", o->batch,
            ranks.size);
        rc = EXIT_USAGE;
    }
    if (!rc && o->plot && !gnuplot_available()) {
        msg("--plot %s: gnuplot is not installed (Debian: apt-get install gnuplot-nox)",
            o->plot);
        rc = EXIT_USAGE;
    }

    /* The data before the device, so that a bad file costs no start-up. */
    char ti[4096], tl[4096], vi[4096], vl[4096];
    data_path(o->data, "train-images-idx3-ubyte", ti, sizeof ti);
    data_path(o->data, "train-labels-idx1-ubyte", tl, sizeof tl);
    data_path(o->data, "t10k-images-idx3-ubyte", vi, sizeof vi);
    data_path(o->data, "t10k-labels-idx1-ubyte", vl, sizeof vl);

    /* The outputs are checked before hours of training, not after; nothing
     * is created until the training has succeeded. Rank 0 writes them. */
    outputs_init(&outs);
    outputs_input(&outs, "--data", ti);
    outputs_input(&outs, "--data", tl);
    outputs_input(&outs, "--data", vi);
    outputs_input(&outs, "--data", vl);
    out_json = outputs_add(&outs, "--json", o->json, false);
    out_plot = outputs_add(&outs, "--plot", o->plot, false);
    out_save = outputs_add(&outs, "--save", o->save, true);
    char err[1024];
    if (!rc && ranks.rank == 0 && outputs_check(&outs, save_names, err, sizeof err)) {
        msg("%s", err);
        rc = EXIT_USAGE;
    }

    int trc = TR_OK;
    if (!rc) trc = idx_load(ti, tl, NET_CLASSES, &trs);
    if (!rc && !trc) trc = idx_load(vi, vl, NET_CLASSES, &tes);
    if (!rc && !trc && (trs.rows != NET_SIDE || trs.cols != NET_SIDE))
        trc = tr_fail(TR_INPUT, "%s: images of %zux%zu, the network takes %dx%d", ti,
                      trs.rows, trs.cols, NET_SIDE, NET_SIDE);
    if (!rc && !trc && (tes.rows != NET_SIDE || tes.cols != NET_SIDE))
        trc = tr_fail(TR_INPUT, "%s: images of %zux%zu, the network takes %dx%d", vi,
                      tes.rows, tes.cols, NET_SIDE, NET_SIDE);
    if (!rc && !trc && o->limit && (size_t)o->limit > trs.count)
        trc =
            tr_fail(TR_INPUT, "--limit %ld: %s holds %zu images", o->limit, ti, trs.count);
    if (!rc && !trc && o->test_limit && (size_t)o->test_limit > tes.count)
        trc = tr_fail(TR_INPUT, "--test-limit %ld: %s holds %zu images", o->test_limit, vi,
                      tes.count);
    if (!rc && !trc) {
        if (o->limit) trs.count = (size_t)o->limit;
        if (o->test_limit) tes.count = (size_t)o->test_limit;
        if (trs.count > INT_MAX / NET_PIXELS || tes.count > INT_MAX / NET_PIXELS)
            trc = tr_fail(TR_INPUT, "%s: too many images", ti);
    }
    if (!rc && !trc && (size_t)o->batch > trs.count)
        trc = tr_fail(TR_INPUT, "--batch %ld is larger than the %zu training images",
                      o->batch, trs.count);
    if (trc) {
        fail(trc);
        rc = trc == TR_INPUT ? EXIT_USAGE : EXIT_FAILED;
    }

    if (!rc) {
        ndcl_context_options co = ndcl_context_options_default();
        co.spec = o->device;
        ndcl_status s = ndcl_context_create(&co, &ctx);
        if (s != NDCL_SUCCESS) {
            const char *e = ndcl_context_last_error(NULL);
            if (o->device)
                msg("--device \"%s\": %s", o->device, *e ? e : ndcl_status_string(s));
            else
                msg("no usable OpenCL device: %s", *e ? e : ndcl_status_string(s));
            rc = tool_device_exit(s, o->device != NULL);
        }
    }

    if (o->sync) {
        char settings[RANK_SETTINGS_MAX], why[RANK_REASON_MAX + 128];
        settings_text(o, &trs, &tes, settings, sizeof settings);
        int job = rank_agree(ranks.rank, ranks.size, rc, rc ? last_msg : "", settings, why,
                             sizeof why);
        /* The failing rank said why itself; rank 0 names it for the job. */
        if (job && !rc && ranks.rank == 0) msg("--sync: not starting: %s", why);
        rc = job;
    }
    if (!rc) {
        rc = train(o, &trs, &tes, ctx);
        rc = rc == TR_OK ? EXIT_OK : rc == TR_INPUT ? EXIT_USAGE : EXIT_FAILED;
    }
    idx_free(&trs);
    idx_free(&tes);
    outputs_discard(&outs);
    ndcl_context_destroy(ctx);
    return rc;
}
