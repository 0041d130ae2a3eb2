/* ndcl-run.c - one forward (and optionally backward) step of a layer file on
 * a .npy input: the command-line end of the PyTorch -> ndcl round trip. */
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ndcl.h"
#include "outputs.h"
#include "rank_agree.h"
#include "run_sync.h"

/* The backward pass is being written while this tool is: a weak reference
 * lets the tool link against a library without it (the run then reports
 * "backward not supported yet"); once libndcl exports the symbol the
 * dynamic linker binds it. Drop the declaration when the backward lands. */
#if defined(__GNUC__)
extern ndcl_status ndcl_layer_backward(ndcl_layer *layer, const ndcl_tensor *dy,
                                       ndcl_tensor **dx, ndcl_tensor **dweight,
                                       ndcl_tensor **dbias) __attribute__((weak));
#endif

enum {
    EXIT_OK = TOOL_EXIT_OK,
    EXIT_FAILED = TOOL_EXIT_DEVICE,
    EXIT_USAGE = TOOL_EXIT_USAGE
};

static const char *prog = "ndcl-run";
static int msg_rank = -1; /* with --sync, this process's rank in the job */
/* The last message, without its prefix: the reason this rank gives the
 * others at start-up (rank_agree.h). */
static char last_msg[RANK_REASON_MAX];

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: %s LAYER.safetensors --input X.npy [--output Y.npy]\n"
        "       [--mode train|eval] [--save-state OUT.safetensors] [--device SPEC]\n"
        "       [--grad-output DY.npy [--grad-input DX.npy] [--grad-params "
        "G.safetensors]]\n"
        "       [--sync]   (under mpirun -n K)\n"
        "       %s --help | --version\n"
        "\n"
        "Runs one forward step of an ndcl layer file on the array in X.npy, and\n"
        "optionally its backward pass. Layer files are written by --save-state\n"
        "and by the PyTorch exporter: ndcl-export-pytorch MODEL OUTDIR, installed\n"
        "beside ndcl-run (tools/pytorch/export_pytorch.py in the source tree).\n"
        "\n"
        "  LAYER.safetensors   the layer: conv2d (x [N, C, H, W]), linear (x [N, F])\n"
        "                      or channel (x [N, C, H, W] or [N, C])\n"
        "  -i, --input X.npy   the input: float32 or float64 .npy, C order\n"
        "  -o, --output Y.npy  write the output (float32 .npy)\n"
        "  -m, --mode MODE     train: batch statistics, running statistics and\n"
        "                      counters updated (as module.train() in PyTorch);\n"
        "                      eval: the running statistics (default)\n"
        "  -s, --save-state OUT.safetensors\n"
        "                      write the layer after the step (parameters, updated\n"
        "                      running statistics and counters) as a layer file that\n"
        "                      ndcl-run loads again: chaining runs chains training\n"
        "                      steps\n"
        "  -d, --device SPEC   the OpenCL device: \"P:D\" (platform and device index,\n"
        "                      see ndcl-query) or a case-insensitive substring of\n"
        "                      its name\n"
        "  --grad-output DY.npy\n"
        "                      run the backward pass of this step with DY = dL/dY\n"
        "                      (Y's shape); needs --grad-input and/or --grad-params\n"
        "  --grad-input DX.npy write dL/dX (X's shape, float32 .npy)\n"
        "  --grad-params G.safetensors\n"
        "                      write dL/dweight and dL/dbias as the float32 tensors\n"
        "                      \"weight\" and \"bias\" (no \"bias\" for a layer without\n"
        "                      one); a channel layer has no parameters, so G is a\n"
        "                      safetensors file with no tensors\n"
        "                      After a train step the gradients are those of the\n"
        "                      batch-statistics forward (through the whitening, as\n"
        "                      autograd computes them); after an eval step (or a\n"
        "                      frozen conv step) those of the fixed folded layer.\n"
        "  --sync              one rank of an MPI job (mpirun -n K ndcl-run --sync\n"
        "                      ...): every rank reads the same files and takes its\n"
        "                      contiguous slice of the batch (rank r samples\n"
        "                      r*N/K .. (r+1)*N/K-1; N not divisible by K is an\n"
        "                      error on every rank); the layer's batch statistics\n"
        "                      are the whole batch's (ndcl_mpi.h). Rank 0 writes\n"
        "                      the files: Y and DX gathered, the gradients of\n"
        "                      weight and bias summed over the ranks, the state:\n"
        "                      what one run on the whole batch writes. A failure\n"
        "                      on any rank stops every rank, each with the same\n"
        "                      exit status. Needs a build with MPI.\n"
        "  -h, --help          this text\n"
        "  -V, --version       the ndcl version\n"
        "\n"
        "Outputs are all written or none: each is checked before any work (a new\n"
        "name in a writable directory or an existing regular file with one link;\n"
        "never a device, FIFO, symlink, hard link or directory, never an input,\n"
        "never two outputs on one file: exit 2 naming both), written into a\n"
        "staging directory beside its target once the whole step has succeeded,\n"
        "and renamed over the targets only when every one is written. A failed or\n"
        "interrupted run (SIGINT, SIGTERM, SIGHUP) leaves every target as it was\n"
        "and no temporary behind. The same path may be given for the layer and\n"
        "--save-state (chained steps).\n"
        "\n"
        "Environment:\n"
        "  NDCL_DEVICE      the default device, as SPEC above (otherwise the first\n"
        "                   GPU, else the first device); --device overrides it\n"
        "  NDCL_CACHE_DIR   where compiled kernel binaries are cached (default\n"
        "                   $XDG_CACHE_HOME/ndcl or ~/.cache/ndcl)\n"
        "  NDCL_CACHE       0 disables the kernel binary cache\n"
        "  NDCL_DEBUG       nonzero: the library traces what it does on stderr\n"
        "  OCL_ICD_VENDORS  where the OpenCL ICD loader looks for platforms\n"
        "\n"
        "Exit status (the same table in every ndcl tool):\n"
        "  0  success\n"
        "  1  a device or numerical failure: no usable OpenCL device, an OpenCL\n"
        "     error or allocation failure, NaN or Inf in a training step's\n"
        "     statistics, a backward pass this build does not support, another\n"
        "     rank's failure of that kind\n"
        "  2  bad arguments or files: a usage error, a --device SPEC that is\n"
        "     malformed or matches no device, a file that cannot be read or\n"
        "     written, malformed content, an input or gradient whose shape does\n"
        "     not fit the layer (or whose geometry exceeds the kernels' int\n"
        "     indexing: the message names the value), ranks whose settings disagree\n"
        "Errors are reported on stderr, naming the file, option or rank concerned.\n",
        prog, prog);
}

/* ------------------------------------------------------------ messages */

/* One line on stderr, written at once: the ranks of a --sync job share it. */
static void msg(const char *fmt, ...)
{
    char line[2048];
    int n = msg_rank >= 0 ? snprintf(line, sizeof line, "%s: rank %d: ", prog, msg_rank)
                          : snprintf(line, sizeof line, "%s: ", prog);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line) {
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        snprintf(last_msg, sizeof last_msg, "%s", line + n);
    }
    va_end(ap);
    size_t len = strlen(line);
    if (len + 1 < sizeof line) line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

/* "ndcl-run: PATH: DETAIL", without repeating the path when the library's
 * message already starts with it (the npy and safetensors readers do). */
static void file_msg(const char *path, const char *detail)
{
    size_t n = strlen(path);
    if (!detail || !*detail) detail = "failed";
    if (!strncmp(detail, path, n) && detail[n] == ':')
        msg("%s", detail);
    else
        msg("%s: %s", path, detail);
}

/* Library statuses that mean the user's arguments or files are at fault;
 * everything else is the device's or the numbers'. */
static int exit_code(ndcl_status s)
{
    switch (s) {
    case NDCL_ERR_INVALID_ARG:
    case NDCL_ERR_IO:
    case NDCL_ERR_FORMAT: return EXIT_USAGE;
    default: return EXIT_FAILED;
    }
}

/* ------------------------------------------------------------ arguments */

typedef struct options {
    const char *layer, *input, *output, *save_state, *device;
    const char *grad_output, *grad_input, *grad_params;
    ndcl_mode mode;
    bool sync;
} options;

/* The value of option a: the next argument, or the text after "=" in
 * "--name=value". Returns NULL (message printed) when there is none. */
static const char *opt_value(int argc, char **argv, int *i, const char *eq)
{
    if (eq) return eq + 1;
    if (*i + 1 >= argc) {
        msg("%s needs a value (see --help)", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* Returns -1 when the arguments are fine, else the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct {
        const char *s, *l;
        size_t off;
    } value_opts[] = {
        {"-i", "--input", offsetof(options, input)},
        {"-o", "--output", offsetof(options, output)},
        {"-s", "--save-state", offsetof(options, save_state)},
        {"-d", "--device", offsetof(options, device)},
        {NULL, "--grad-output", offsetof(options, grad_output)},
        {NULL, "--grad-input", offsetof(options, grad_input)},
        {NULL, "--grad-params", offsetof(options, grad_params)},
    };
    memset(o, 0, sizeof *o);
    o->mode = NDCL_EVAL;
    bool only_files = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_files || a[0] != '-' || !a[1]) {
            if (o->layer) {
                msg("more than one layer file (\"%s\" and \"%s\"; see --help)", o->layer,
                    a);
                return EXIT_USAGE;
            }
            o->layer = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_files = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--sync")) {
            o->sync = true;
            continue;
        }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("ndcl-run (ndcl) %s\n", ndcl_version_string());
            return EXIT_OK;
        }
        /* "--name=value" is split here so that every option takes both forms. */
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        bool known = false;
        for (size_t k = 0; k < sizeof value_opts / sizeof *value_opts && !known; k++) {
            bool is_short = value_opts[k].s && !eq && !strcmp(a, value_opts[k].s);
            bool is_long =
                strlen(value_opts[k].l) == len && !strncmp(a, value_opts[k].l, len);
            if (!is_short && !is_long) continue;
            known = true;
            const char *v = opt_value(argc, argv, &i, eq);
            if (!v) return EXIT_USAGE;
            if (!*v) {
                msg("%s needs a non-empty value", value_opts[k].l);
                return EXIT_USAGE;
            }
            *(const char **)((char *)o + value_opts[k].off) = v;
        }
        if (known) continue;
        if (!strcmp(a, "-m") || (len == 6 && !strncmp(a, "--mode", 6))) {
            const char *v = opt_value(argc, argv, &i, eq);
            if (!v) return EXIT_USAGE;
            if (!strcmp(v, "train")) {
                o->mode = NDCL_TRAIN;
            } else if (!strcmp(v, "eval")) {
                o->mode = NDCL_EVAL;
            } else {
                msg("--mode \"%s\": must be train or eval", v);
                return EXIT_USAGE;
            }
            continue;
        }
        msg("unknown option \"%s\" (see --help)", a);
        return EXIT_USAGE;
    }
    if (!o->layer) {
        msg("no layer file given (usage: %s LAYER.safetensors --input X.npy ...; see "
            "--help)",
            prog);
        return EXIT_USAGE;
    }
    if (!o->input) {
        msg("no input given (--input X.npy; see --help)");
        return EXIT_USAGE;
    }
    if ((o->grad_input || o->grad_params) && !o->grad_output) {
        msg("%s needs --grad-output DY.npy (the gradient the backward pass starts from)",
            o->grad_input ? "--grad-input" : "--grad-params");
        return EXIT_USAGE;
    }
    if (o->grad_output && !o->grad_input && !o->grad_params) {
        msg("--grad-output needs --grad-input and/or --grad-params (where to write the "
            "gradients)");
        return EXIT_USAGE;
    }
    return -1;
}

/* ------------------------------------------------------------ helpers */

static void shape_str(int ndim, const size_t *shape, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ", %zu" : "%zu", shape[d]);
    if (n < size) snprintf(buf + n, size - n, ndim == 1 ? ",)" : ")");
}

/* An array read from a .npy file. */
typedef struct host_array {
    float *data;
    int ndim;
    size_t shape[NDCL_MAX_DIMS];
} host_array;

static int read_npy(const char *path, host_array *a)
{
    ndcl_status s = ndcl_npy_read(path, &a->data, &a->ndim, a->shape);
    if (s != NDCL_SUCCESS) {
        file_msg(path, ndcl_context_last_error(NULL));
        return exit_code(s);
    }
    if (a->ndim == 0) {
        file_msg(path, "holds a scalar; the layer needs an array ([N, ...])");
        return EXIT_USAGE;
    }
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] == 0) {
            file_msg(path, "holds an empty array");
            return EXIT_USAGE;
        }
    return EXIT_OK;
}

/* A device tensor holding the array read from path. */
static int upload(ndcl_context *ctx, const char *path, const host_array *a,
                  ndcl_tensor **out)
{
    ndcl_tensor *t = NULL;
    size_t count = 1;
    for (int d = 0; d < a->ndim; d++)
        count *= a->shape[d];
    ndcl_status s = ndcl_tensor_create(ctx, a->ndim, a->shape, &t);
    if (s == NDCL_SUCCESS) s = ndcl_tensor_write(t, a->data, count);
    if (s != NDCL_SUCCESS) {
        file_msg(path, ndcl_context_last_error(ctx));
        ndcl_tensor_destroy(t);
        return exit_code(s);
    }
    *out = t;
    return EXIT_OK;
}

/* A tensor's contents and shape on the host, for writing. */
typedef struct host_tensor {
    float *data;
    int ndim;
    size_t shape[NDCL_MAX_DIMS];
} host_tensor;

static int download(ndcl_context *ctx, const ndcl_tensor *t, host_tensor *h)
{
    size_t count = ndcl_tensor_count(t);
    h->ndim = ndcl_tensor_ndim(t);
    for (int d = 0; d < h->ndim; d++)
        h->shape[d] = ndcl_tensor_dim(t, d);
    h->data = malloc(count * sizeof *h->data);
    if (!h->data) {
        msg("out of host memory (%zu floats)", count);
        return EXIT_FAILED;
    }
    ndcl_status s = ndcl_tensor_read(t, h->data, count);
    if (s != NDCL_SUCCESS) {
        msg("reading a result from the device: %s: %s", ndcl_status_string(s),
            ndcl_context_last_error(ctx));
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

static size_t array_count(const host_array *a)
{
    size_t n = 1;
    for (int d = 0; d < a->ndim; d++)
        n *= a->shape[d];
    return n;
}

static size_t host_count(const host_tensor *h)
{
    if (!h->data) return 0;
    size_t n = 1;
    for (int d = 0; d < h->ndim; d++)
        n *= h->shape[d];
    return n;
}

/* The outputs of a run, as registered with the output set (outputs.h):
 * the index of each, -1 when not asked for. */
typedef struct run_outputs {
    outputs set;
    int y, dx, grads, state;
} run_outputs;

/* Registers the files and checks the outputs before any work (exit 2 with
 * a message naming them when one cannot be written as asked). */
static int check_outputs(const options *o, run_outputs *ro)
{
    outputs_init(&ro->set);
    outputs_input(&ro->set, "the layer file", o->layer);
    outputs_input(&ro->set, "--input", o->input);
    outputs_input(&ro->set, "--grad-output", o->grad_output);
    ro->y = outputs_add(&ro->set, "--output", o->output, false);
    ro->dx = outputs_add(&ro->set, "--grad-input", o->grad_input, false);
    ro->grads = outputs_add(&ro->set, "--grad-params", o->grad_params, false);
    ro->state = outputs_add(&ro->set, "--save-state", o->save_state, false);
    /* A layer replaced by its own next state chains training steps. */
    outputs_allow_same(&ro->set, 0, ro->state);
    char err[1024];
    int rc = outputs_check(&ro->set, NULL, err, sizeof err);
    if (rc) msg("%s", err);
    return rc;
}

static int write_npy(const char *target, const char *path, const host_tensor *h)
{
    ndcl_status s = ndcl_npy_write(path, h->data, h->ndim, h->shape);
    if (s != NDCL_SUCCESS) {
        msg("%s: %s", target, ndcl_context_last_error(NULL));
        return exit_code(s);
    }
    return EXIT_OK;
}

/* Writes every file asked for into the staging directory, once the whole
 * step has succeeded, and renames them over their targets only when all
 * are written: a failure leaves every target as it was. */
static int write_all(const options *o, run_outputs *ro, ndcl_context *ctx,
                     const ndcl_layer *layer, bool has_dw, bool has_db,
                     const host_tensor *hy, const host_tensor *hdx, const host_tensor *hdw,
                     const host_tensor *hdb)
{
    char err[1024];
    int rc = outputs_begin(&ro->set, err, sizeof err);
    if (rc) {
        msg("%s", err);
        return rc;
    }
    const outputs *set = &ro->set;
    if (o->output && (rc = write_npy(o->output, outputs_tmp(set, ro->y), hy)) != EXIT_OK)
        return rc;
    if (o->grad_input &&
        (rc = write_npy(o->grad_input, outputs_tmp(set, ro->dx), hdx)) != EXIT_OK)
        return rc;
    if (o->grad_params) {
        const char *names[2] = {"weight", "bias"};
        const float *data[2] = {hdw->data, hdb->data};
        int ndims[2] = {hdw->ndim, hdb->ndim};
        size_t shapes[2][NDCL_MAX_DIMS];
        memcpy(shapes[0], hdw->shape, sizeof shapes[0]);
        memcpy(shapes[1], hdb->shape, sizeof shapes[1]);
        int n = !has_dw ? 0 : has_db ? 2 : 1;
        ndcl_status s =
            ndcl_safetensors_write_floats(outputs_tmp(set, ro->grads), n, names, data,
                                          ndims, (const size_t(*)[NDCL_MAX_DIMS])shapes);
        if (s != NDCL_SUCCESS) {
            msg("%s: %s", o->grad_params, ndcl_context_last_error(NULL));
            return exit_code(s);
        }
    }
    if (o->save_state) {
        ndcl_status s = ndcl_layer_save(layer, outputs_tmp(set, ro->state));
        if (s != NDCL_SUCCESS) {
            msg("%s: %s", o->save_state, ndcl_context_last_error(ctx));
            return exit_code(s);
        }
    }
    /* Nothing numerical is enqueued after the check above; this last wait
     * only makes sure every read and write has completed. */
    ndcl_status s = ndcl_finish(ctx);
    if (s != NDCL_SUCCESS) {
        msg("%s: %s", ndcl_status_string(s), ndcl_context_last_error(ctx));
        return EXIT_FAILED;
    }
    rc = outputs_commit(&ro->set, NULL, err, sizeof err);
    if (rc) msg("%s", err);
    return rc;
}

/* In a --sync run, every rank's status so far, the largest: each rank
 * calls it at the same points, so that a rank that failed alone stops the
 * others instead of leaving them waiting in a collective. */
static int agree(const run_sync *sy, int rc)
{
    if (!sy->on) return rc;
    int all = run_sync_agree(sy, rc);
    if (all != EXIT_OK && rc == EXIT_OK) msg("stopping: another rank failed");
    return all;
}

/* FNV-1a over bytes, continuing h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* The layer file's contents, hashed (regular files only, opened without
 * blocking: the loader reports anything else); 0 when unreadable. */
static uint64_t file_hash(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    uint64_t h = 0xcbf29ce484222325ULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    unsigned char buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        h = fnv(h, buf, (size_t)r);
    close(fd);
    return r < 0 ? 0 : h;
}

static void array_text(const char *name, const host_array *a, char *out, size_t n)
{
    char sh[96] = "none";
    uint64_t h = 0;
    if (a->data) {
        shape_str(a->ndim, a->shape, sh, sizeof sh);
        size_t count = 1;
        for (int d = 0; d < a->ndim; d++)
            count *= a->shape[d];
        h = fnv(0xcbf29ce484222325ULL, a->data, count * sizeof *a->data);
    }
    snprintf(out, n, "%s shape=%s;%s contents=%016llx", name, sh, name,
             (unsigned long long)h);
}

/* The settings every rank of a --sync job must share: the step, the files'
 * contents and shapes, which gradients are asked for. */
static void settings_text(const options *o, uint64_t layer_hash, const host_array *x,
                          const host_array *dy, char *out, size_t n)
{
    char xs[160], ds[160];
    array_text("--input", x, xs, sizeof xs);
    array_text("--grad-output", dy, ds, sizeof ds);
    snprintf(
        out, n,
        "version=%s;--mode=%s;the layer file's contents=%016llx;%s;--grad-output=%s;%s;"
        "--grad-input=%s;--grad-params=%s",
        ndcl_version_string(), o->mode == NDCL_TRAIN ? "train" : "eval",
        (unsigned long long)layer_hash, xs, o->grad_output ? "given" : "not given", ds,
        o->grad_input ? "given" : "not given", o->grad_params ? "given" : "not given");
}

/* The start-up agreement (rank_agree.h) at one of the points every rank
 * reaches: a rank that failed, or settings that differ, stop every rank;
 * the failing rank said why itself, rank 0 names it for the job. */
static int start_agree(const run_sync *sy, int rc, const char *settings)
{
    if (!sy->on) return rc;
    char why[RANK_REASON_MAX + 128];
    int job =
        rank_agree(sy->rank, sy->size, rc, rc ? last_msg : "", settings, why, sizeof why);
    if (job != EXIT_OK && rc == EXIT_OK && sy->rank == 0) msg("--sync: stopping: %s", why);
    return job;
}

/* The step itself (main's body); with sy->on each rank runs its slice. */
static int run(const options *o, const run_sync *sy)
{
    run_outputs ro;
    /* Every output is checked before anything is read or started. */
    int rc = check_outputs(o, &ro);
    host_array x = {0}, dy = {0};
    host_tensor hy = {0}, hdx = {0}, hdw = {0}, hdb = {0};
    float *all_y = NULL, *all_dx = NULL, *sum_dw = NULL, *sum_db = NULL;
    ndcl_context *ctx = NULL;
    ndcl_layer *layer = NULL;
    ndcl_tensor *tx = NULL, *ty = NULL, *tdy = NULL, *tdx = NULL, *tdw = NULL, *tdb = NULL;
    ndcl_status s;
    const int K = sy->on ? sy->size : 1, me = sy->on ? sy->rank : 0;
    host_array xs = {0}, dys = {0}; /* this rank's slices (views) */

    /* The input files are read before a device is touched, so that a bad
     * file is reported at once and never costs a kernel build. */
    if (rc == EXIT_OK) rc = read_npy(o->input, &x);
    if (rc == EXIT_OK && o->grad_output) rc = read_npy(o->grad_output, &dy);
    if (rc == EXIT_OK && sy->on && x.shape[0] % (size_t)K != 0) {
        msg("--sync: %s holds a batch of %zu samples, which does not split evenly over %d "
            "ranks",
            o->input, x.shape[0], K);
        rc = EXIT_USAGE;
    }
    char settings[RANK_SETTINGS_MAX] = "";
    if (sy->on) settings_text(o, file_hash(o->layer), &x, &dy, settings, sizeof settings);
    if ((rc = start_agree(sy, rc, settings)) != EXIT_OK) goto done;
    /* Rank r takes samples [r*N/K, (r+1)*N/K). */
    xs = x;
    xs.shape[0] = x.shape[0] / (size_t)K;
    xs.data = x.data + (size_t)me * array_count(&xs);

    ndcl_context_options co = ndcl_context_options_default();
    co.spec = o->device;
    s = ndcl_context_create(&co, &ctx);
    if (s != NDCL_SUCCESS) {
        const char *e = ndcl_context_last_error(NULL);
        if (o->device)
            msg("--device \"%s\": %s", o->device, *e ? e : ndcl_status_string(s));
        else
            msg("no usable OpenCL device: %s", *e ? e : ndcl_status_string(s));
        rc = tool_device_exit(s, o->device != NULL);
    }
    if (rc == EXIT_OK) {
        s = ndcl_layer_load(ctx, o->layer, &layer);
        /* x stays as uploaded until the backward: the layer need not copy it. */
        if (s == NDCL_SUCCESS) s = ndcl_layer_set_option(layer, NDCL_LAYER_BORROW_INPUT, 1);
        if (s != NDCL_SUCCESS) {
            file_msg(o->layer, ndcl_context_last_error(ctx));
            rc = exit_code(s);
        }
    }
    if (rc == EXIT_OK && sy->on) {
        s = run_sync_attach(sy, layer);
        if (s != NDCL_SUCCESS) {
            msg("--sync: attaching the layer to the MPI job: %s", ndcl_status_string(s));
            rc = EXIT_FAILED;
        }
    }
    /* Every rank's device up and layer loaded, or none starts. */
    if ((rc = start_agree(sy, rc, settings)) != EXIT_OK) goto done;
    ndcl_layer_kind kind = ndcl_layer_kind_of(layer);

    /* The forward: in a group its failures reach every rank (ndcl.h). */
    rc = upload(ctx, o->input, &xs, &tx);
    /* A rank whose upload failed still calls the layer (tx NULL), which
     * then fails the others' collectives instead of leaving them waiting. */
    if (rc == EXIT_OK || sy->on) {
        s = ndcl_layer_forward(layer, o->mode, tx, &ty);
        if (s != NDCL_SUCCESS && rc == EXIT_OK) {
            char sh[96];
            shape_str(x.ndim, x.shape, sh, sizeof sh);
            /* The layer itself was validated by the loader: a rejected call is
             * the input's shape. */
            if (s == NDCL_ERR_INVALID_ARG)
                msg("%s: an input of shape %s does not fit the layer %s: %s", o->input, sh,
                    o->layer, ndcl_context_last_error(ctx));
            else
                msg("forward of %s on %s: %s: %s", o->layer, o->input,
                    ndcl_status_string(s), ndcl_context_last_error(ctx));
            /* A geometry past the kernels' int indexing is the files'. */
            rc = s == NDCL_ERR_UNSUPPORTED ? EXIT_USAGE : exit_code(s);
        }
    }
    if ((rc = agree(sy, rc)) != EXIT_OK) goto done;

    if (o->grad_output) {
        /* dy must have the whole batch's output shape. */
        int yd = ndcl_tensor_ndim(ty);
        size_t ys[NDCL_MAX_DIMS] = {0};
        for (int d = 0; d < yd; d++)
            ys[d] = ndcl_tensor_dim(ty, d);
        ys[0] *= (size_t)K;
        bool same = yd == dy.ndim;
        for (int d = 0; same && d < yd; d++)
            same = ys[d] == dy.shape[d];
        if (!same) {
            char a[96], b[96];
            shape_str(dy.ndim, dy.shape, a, sizeof a);
            shape_str(yd, ys, b, sizeof b);
            msg("%s: shape %s, but the layer's output is %s", o->grad_output, a, b);
            rc = EXIT_USAGE;
        }
        dys = dy;
        dys.shape[0] = dy.shape[0] / (size_t)K;
        dys.data = dy.data + (size_t)me * array_count(&dys);
        if (rc == EXIT_OK) rc = upload(ctx, o->grad_output, &dys, &tdy);
        /* Only the gradients asked for are computed; a layer without bias
         * (or without parameters) gets NULL where it has nothing. */
        bool has_bias = false;
        if (kind == NDCL_LAYER_CONV2D) {
            ndcl_conv2d_desc d;
            has_bias = ndcl_layer_conv2d_desc(layer, &d) == NDCL_SUCCESS && d.bias;
        } else if (kind == NDCL_LAYER_LINEAR) {
            ndcl_linear_desc d;
            has_bias = ndcl_layer_linear_desc(layer, &d) == NDCL_SUCCESS && d.bias;
        }
        bool params = o->grad_params && kind != NDCL_LAYER_CHANNEL;
        if (rc == EXIT_OK && !ndcl_layer_backward) {
            msg("backward not supported yet: this libndcl has no ndcl_layer_backward");
            rc = EXIT_FAILED;
        }
        /* As for the forward: with --sync a rank whose dy failed still calls. */
        if (rc == EXIT_OK || (sy->on && ndcl_layer_backward)) {
            s = ndcl_layer_backward(layer, tdy, o->grad_input ? &tdx : NULL,
                                    params ? &tdw : NULL, params && has_bias ? &tdb : NULL);
            const char *e = ndcl_context_last_error(ctx);
            if (rc != EXIT_OK) {
                /* reported above */
            } else if (s == NDCL_ERR_UNSUPPORTED) {
                msg("backward not supported yet for %s (%s mode)%s%s", o->layer,
                    o->mode == NDCL_TRAIN ? "train" : "eval", *e ? ": " : "", e);
                rc = EXIT_FAILED;
            } else if (s != NDCL_SUCCESS) {
                msg("backward of %s with %s: %s: %s", o->layer, o->grad_output,
                    ndcl_status_string(s), e);
                rc = s == NDCL_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_FAILED;
            }
        }
        if ((rc = agree(sy, rc)) != EXIT_OK) goto done;
    }

    /* The numerical flag of a training step is only known once the queue
     * is drained; checking before any write keeps a failed step from
     * leaving files behind. */
    s = ndcl_finish(ctx);
    if (s != NDCL_SUCCESS) {
        if (s == NDCL_ERR_NUMERICAL)
            msg("%s on %s: NaN or Inf in the batch statistics (running statistics not "
                "updated); no file written",
                o->layer, o->input);
        else
            msg("%s: %s", ndcl_status_string(s), ndcl_context_last_error(ctx));
        rc = EXIT_FAILED;
    }
    if (rc == EXIT_OK) rc = download(ctx, ty, &hy);
    if (rc == EXIT_OK && tdx) rc = download(ctx, tdx, &hdx);
    if (rc == EXIT_OK && tdw) rc = download(ctx, tdw, &hdw);
    if (rc == EXIT_OK && tdb) rc = download(ctx, tdb, &hdb);
    if ((rc = agree(sy, rc)) != EXIT_OK) goto done;

    /* With --sync, rank 0 writes: the slices of y and dx gathered in rank
     * order, and dweight and dbias summed over the ranks (each rank's are
     * its own slice's share). */
    if (sy->on) {
        size_t ny = host_count(&hy), nx = host_count(&hdx);
        size_t nw = host_count(&hdw), nb = host_count(&hdb);
        bool root = me == 0;
        if (root) {
            all_y = malloc(ny * (size_t)K * sizeof *all_y);
            all_dx = malloc((nx ? nx : 1) * (size_t)K * sizeof *all_dx);
            sum_dw = malloc((nw ? nw : 1) * sizeof *sum_dw);
            sum_db = malloc((nb ? nb : 1) * sizeof *sum_db);
            if (!all_y || !all_dx || !sum_dw || !sum_db) {
                msg("out of host memory gathering the results");
                rc = EXIT_FAILED;
            }
        }
        if ((rc = agree(sy, rc)) != EXIT_OK) goto done;
        /* Every rank's share the same size, or the gathered y would hold
         * what one rank never wrote. */
        unsigned long long sizes[] = {ny, nx, nw, nb, (unsigned long long)hy.ndim};
        if (!run_sync_equal(sy, sizes, 5)) {
            if (root)
                msg("--sync: the ranks' results differ in shape (y of %zu values on rank "
                    "0); "
                    "nothing gathered or written",
                    ny);
            rc = EXIT_USAGE;
            goto done;
        }
        bool ok = run_sync_gather(sy, hy.data, ny, all_y);
        if (tdx) ok = run_sync_gather(sy, hdx.data, nx, all_dx) && ok;
        if (tdw) ok = run_sync_sum(sy, hdw.data, nw, sum_dw) && ok;
        if (tdb) ok = run_sync_sum(sy, hdb.data, nb, sum_db) && ok;
        if (!ok) {
            msg("--sync: gathering the results failed");
            rc = EXIT_FAILED;
        }
        if ((rc = agree(sy, rc)) != EXIT_OK) goto done;
        if (root) {
            hy.shape[0] *= (size_t)K;
            hdx.shape[0] *= (size_t)K;
            free(hy.data);
            free(hdx.data);
            free(hdw.data);
            free(hdb.data);
            hy.data = all_y;
            hdx.data = all_dx;
            hdw.data = sum_dw;
            hdb.data = sum_db;
            all_y = all_dx = sum_dw = sum_db = NULL;
        }
    }
    if (me == 0)
        rc = write_all(o, &ro, ctx, layer, tdw != NULL, tdb != NULL, &hy, &hdx, &hdw, &hdb);
    rc = agree(sy, rc);

done:
    /* Whatever was staged and not committed goes; the targets stay. */
    outputs_discard(&ro.set);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    ndcl_layer_destroy(layer);
    /* Before returning, never from exit handlers: PoCL may still be
     * compiling in a worker thread (see ndcl_context_destroy). */
    ndcl_context_destroy(ctx);
    ndcl_free(x.data);
    ndcl_free(dy.data);
    free(hy.data);
    free(hdx.data);
    free(hdw.data);
    free(hdb.data);
    free(all_y);
    free(all_dx);
    free(sum_dw);
    free(sum_db);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    run_sync sy = {0};
    if (o.sync) {
        if (!run_sync_init(&argc, &argv, &sy))
            return run_sync_built() ? EXIT_FAILED : EXIT_USAGE;
        msg_rank = sy.rank;
    }
    rc = run(&o, &sy);
    run_sync_finalize(&sy);
    return rc;
}
