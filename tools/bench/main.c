/* main.c - ndcl-bench: kernel and layer benchmarks on one OpenCL device: what a
 * deconvolved layer costs next to the plain convolution it ends with. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "host_gemm.h"
#include "ndcl.h"
#include "ndcl_cl.h"

/* A tensor's device buffer, for the internal entry points of bench.h. */
#define MEM(t) ndcl_tensor_cl_mem(t)

/* Returns early with the status of a failed call. */
#define BENCH_TRY(expr)                                                                    \
    do {                                                                                   \
        ndcl_status bench_try_s_ = (expr);                                                 \
        if (bench_try_s_ != NDCL_SUCCESS) return bench_try_s_;                             \
    } while (0)

#include "exit_codes.h"

enum {
    EXIT_OK = TOOL_EXIT_OK,
    EXIT_FAILED = TOOL_EXIT_DEVICE,
    EXIT_USAGE = TOOL_EXIT_USAGE
};

static const char *prog = "ndcl-bench";

/* Newton-Schulz iterations of every layer benchmarked (the layers'
 * default), also used in the flop counts. */
#define N_ITER 5
/* Delinear's default block: the linear suite keeps it (clamped to F). */
#define LINEAR_BLOCK 512

/* ------------------------------------------------------------ suites */

typedef enum suite_id {
    S_GEMM,
    S_GEMM_HOST,
    S_COPY,
    S_IM2COL,
    S_CIM2COL,
    S_COL2IM,
    S_LAYOUT,
    S_BIASGRAD,
    S_COV,
    S_ISQRT,
    S_FOLD,
    S_CONV,
    S_CBACK,
    S_CONV_GEMM, /* the plain conv by one algorithm each: forward, then backward */
    S_CONV_DNNL,
    S_CONV_WINO,
    S_CBACK_GEMM,
    S_CBACK_DNNL,
    S_CBACK_WINO,
    S_LTRAIN,
    S_LEVAL,
    S_LBACK,
    S_LINEAR,
    S_CHANNEL,
    S_COUNT,
    S_LSTEP = S_COUNT /* derived row, not a suite of its own */
} suite_id;

static const char *const suite_names[S_COUNT + 1] = {"gemm",
                                                     "gemm-host",
                                                     "copy",
                                                     "im2col",
                                                     "conv-im2col",
                                                     "col2im",
                                                     "layout",
                                                     "bias-grad",
                                                     "cov",
                                                     "isqrt",
                                                     "fold",
                                                     "conv",
                                                     "conv-backward",
                                                     "conv/gemm",
                                                     "conv/dnnl",
                                                     "conv/winograd",
                                                     "conv-backward/gemm",
                                                     "conv-backward/dnnl",
                                                     "conv-backward/winograd",
                                                     "layer-train",
                                                     "layer-eval",
                                                     "layer-backward",
                                                     "linear",
                                                     "channel",
                                                     "layer-step"};

/* The algorithm a plain-conv suite forces (NDCL_CONV_AUTO: conv and
 * conv-backward, the table's choice). */
static ndcl_conv_algorithm algo_of(suite_id s)
{
    switch (s) {
    case S_CONV_GEMM:
    case S_CBACK_GEMM: return NDCL_CONV_GEMM;
    case S_CONV_DNNL:
    case S_CBACK_DNNL: return NDCL_CONV_DNNL;
    case S_CONV_WINO:
    case S_CBACK_WINO: return NDCL_CONV_WINOGRAD;
    default: return NDCL_CONV_AUTO;
    }
}

static bool is_conv_fwd(suite_id s)
{
    return s == S_CONV || s == S_CONV_GEMM || s == S_CONV_DNNL || s == S_CONV_WINO;
}

/* The suites a --gemm problem runs. */
static bool is_gemm_row(suite_id s)
{
    return s == S_GEMM || s == S_GEMM_HOST;
}

/* Rows that carry vs_conv: the conv layer's passes and the plain conv's
 * backward, each over its plain-convolution counterpart. */
static bool is_layer_row(suite_id s)
{
    return s == S_LTRAIN || s == S_LEVAL || s == S_LBACK || s == S_CBACK || s == S_LSTEP;
}

/* The plain-convolution suite a row's vs_conv divides by (S_COUNT: the
 * conv step, conv + conv-backward). */
static suite_id reference_of(suite_id s)
{
    switch (s) {
    case S_LBACK: return S_CBACK;
    case S_LSTEP: return S_COUNT;
    default: return S_CONV;
    }
}

/* Rows with a workspace: the conv's chunk buffers, the layers' holdings. */
static bool has_workspace(suite_id s)
{
    return s == S_CIM2COL || s == S_COL2IM || s == S_LAYOUT || s == S_CONV ||
           s == S_CBACK || s == S_LTRAIN || s == S_LEVAL || s == S_LBACK;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: %s [--suite LIST] [--preset NAME]... [--shape SPEC]... [--gemm M,N,K]...\n"
        "          [--runs R] [--warmup W] [--json | --csv] [--device SPEC] [--quiet]\n"
        "       %s --help | --version\n"
        "\n"
        "Times ndcl's kernels and layers on one OpenCL device, with the cost of\n"
        "network deconvolution next to the plain convolution it ends with.\n"
        "\n"
        "Suites (--suite a,b,...; default: all):\n"
        "  gemm            SGEMM by the context's BLAS engine at the convolution's\n"
        "                  GEMM sizes (M=Cout/G, N=N*Ho*Wo, K=(C/G)*k*k, G\n"
        "                  products), or at --gemm M,N,K: the device's practical\n"
        "                  ceiling; brings gemm-host along when the engine is the\n"
        "                  host BLAS (openblas)\n"
        "  gemm-host       the same products by the host BLAS's own cblas_sgemm on\n"
        "                  host memory (builds with the host BLAS engine): the gemm\n"
        "                  row's note gives ndcl's rate over it; beside another\n"
        "                  engine only on request, with 0.2 s after each call for\n"
        "                  OpenBLAS's workers to stop spinning\n"
        "  copy            a plain copy kernel of x's size: the device's memory\n"
        "                  bandwidth, next to which the kernels' GB/s are read\n"
        "  im2col          the sampled, block-regrouped patch matrix\n"
        "  conv-im2col     the convolution's patches of the whole batch, chunk by chunk\n"
        "                  into its bounded workspace\n"
        "  col2im          their adjoint: patch gradients back to dx, chunk by chunk\n"
        "  layout          dy (NCHW) moved to the products' row layout, chunk by chunk\n"
        "  bias-grad       the bias gradient: sums of the chunk rows of dy (as the\n"
        "                  backward reads them, after layout: in cache)\n"
        "  cov             column mean + centring + covariance of that matrix\n"
        "  isqrt           Newton-Schulz (%d iterations) on the nf x nf covariance,\n"
        "                  the G groups batched\n"
        "  fold            W' = W*D in the block basis and the bias correction\n"
        "  conv            the plain convolution as ndcl computes the layer's own,\n"
        "                  no deconvolution, by the algorithm auto takes (the note\n"
        "                  names it; NDCL_CONV_ALGO forces one)\n"
        "  conv-backward   its backward: dx, dW and db from dy (x and W given)\n"
        "  conv/ALGO, conv-backward/ALGO\n"
        "                  the same by one algorithm each, ALGO gemm (chunks of\n"
        "                  im2col + products), dnnl (oneDNN direct on blocked\n"
        "                  tensors) or winograd (oneDNN Winograd F(4x4,3x3)); no\n"
        "                  row where the algorithm is not built, does not serve the\n"
        "                  device or does not fit the shape\n"
        "  layer-train     the deconvolved conv layer (FastDeconv), training forward\n"
        "  layer-eval      the same layer, evaluation forward (folded weights cached)\n"
        "  layer-backward  its backward after a training forward (the forward is not\n"
        "                  timed): dx, dW, db\n"
        "  linear          Delinear training forward: x [N, C*H*W] -> [N, Cout],\n"
        "                  block %d (Delinear's default, clamped to C*H*W)\n"
        "  channel         ChannelDeconv training forward on x [N, C, H, W] with\n"
        "                  block = C (every channel whitened), the shape's ss\n"
        "\n"
        "Shapes:\n"
        "  --shape N,C,H,W,Cout,k[,stride,padding,groups,block,ss]\n"
        "                  a k x k convolution; defaults stride 1, padding k/2,\n"
        "                  groups 1, block 64, ss (sampling stride) 3; repeatable\n"
        "  --preset NAME   cifar-resnet18: the 3x3 layers of a CIFAR ResNet-18 at\n"
        "                    batch 128: 64x32x32->64, 128x16x16->128, 256x8x8->256,\n"
        "                    512x4x4->512, padding 1\n"
        "                  small: batch 8, 16x16x16->16 and 32x8x8->32 (for CI)\n"
        "  --gemm M,N,K    an extra GEMM problem for the gemm suite; repeatable\n"
        "  Without --shape, --preset or --gemm: --preset small.\n"
        "\n"
        "Timing: each benchmark is called once cold (its time includes the kernel\n"
        "builds that call triggers: ndcl's program once per process, unless the\n"
        "binary cache serves it, and CLBlast's kernels per routine), then --warmup\n"
        "W times (default 2), then --runs R times (default 10). Every call is timed\n"
        "with the CLOCK_MONOTONIC wall clock around enqueue + ndcl_finish (clFinish).\n"
        "The runs of one shape's suites are interleaved round-robin, so that load\n"
        "from other processes hits them alike and ratios stay fair. Inputs and\n"
        "weights are uniform random from a fixed seed.\n"
        "\n",
        prog, prog, N_ITER, LINEAR_BLOCK);
    /* Two calls: one string literal would pass the 4095 characters C11
     * compilers must support. */
    fprintf(
        f, "Columns: cold_ms, min_ms, median_ms; gflops = useful flops / median;\n"
           "gbs = bytes moved / median (copy: read + written; im2col, conv-im2col: values\n"
           "written plus input values read; col2im: patch values read plus dx written;\n"
           "layout: dy read plus rows written; bias-grad: rows read; null elsewhere);\n"
           "vs_conv = the row's median over its plain-convolution counterpart's median\n"
           "for the same shape in the same run (measured even when not listed):\n"
           "layer-train and layer-eval over conv, layer-backward over conv-backward,\n"
           "conv-backward over conv; workspace_bytes = the device memory the layer holds\n"
           "besides its parameters (ndcl_layer_workspace_bytes) after the runs, or the\n"
           "plain convolution's chunk buffers (null elsewhere). With layer-train and\n"
           "layer-backward both listed, a derived row layer-step gives the training\n"
           "step, the sum of their medians (and minima, cold times), with vs_conv over\n"
           "the plain conv's step, conv + conv-backward.\n"
           "Useful flops (a multiply-add is 2), nf = k*k*B:\n"
           "  conv, gemm     2*N*Ho*Wo*Cout*(C/G)*k*k\n"
           "  conv-backward  twice the conv's (dx and dW)\n"
           "  cov            G*M*nf*(nf+1) (one triangle, as SYRK; M sampled rows;\n"
           "                 mean and centring not counted)\n"
           "  isqrt          G*n_iter*3*2*nf^3 (the original's 3 products per\n"
           "                 iteration; ndcl skips 3 of them, so this is effective)\n"
           "  fold           2*Cout*R*nf^2 (R = C/B, or 1 for G > 1)\n"
           "  layer-train    conv + cov + isqrt + fold (im2col counts 0)\n"
           "  layer-eval     conv\n"
           "  layer-backward, layer-step  not counted (gflops null)\n"
           "  linear         2*N*F*Cout + M*B*(B+1) + 30*B^3 + 2*Cout*F*B (F = C*H*W,\n"
           "                 M = N*F/B)\n"
           "  channel        Ms*B*(B+1) + 30*B^3 + 2*B*B*L (L = N*H*W, Ms sampled)\n"
           "\n"
           "Output: an aligned table (header lines start with #); --json: an array of\n"
           "rows {suite, shape, device, blas (the BLAS engine), runs, cold_ms, min_ms,\n"
           "median_ms, gflops, gbs, workspace_bytes, note, and vs_conv on layer rows},\n"
           "null where meaningless; --csv: the same columns but blas. Progress goes to\n"
           "stderr (--quiet: none).\n"
           "\n"
           "  --device SPEC   \"P:D\" or a device-name substring (as NDCL_DEVICE)\n"
           "  -h, --help      this text\n"
           "  -V, --version   the ndcl version\n"
           "\n"
           "Environment: NDCL_DEVICE (default device), NDCL_CPU_BLAS=0 (CLBlast for the\n"
           "products also where the host BLAS engine would serve), NDCL_CACHE_DIR and\n"
           "NDCL_CACHE (kernel binary cache), NDCL_DEBUG (library trace on stderr).\n"
           "\n"
           "Exit status (the same table in every ndcl tool):\n"
           "  0  success\n"
           "  1  a device or numerical failure: no usable OpenCL device, an OpenCL\n"
           "     error or allocation failure, out of memory\n"
           "  2  bad arguments: a usage error, a --device SPEC that is malformed or\n"
           "     matches no device, a --shape or --gemm the library refuses (an\n"
           "     extent past its int indexing: the message names the value)\n"
           "Errors are reported on stderr, naming the option or shape concerned.\n");
}

/* ------------------------------------------------------------ shapes */

typedef struct shape {
    size_t n, c, h, w, cout, k, stride, pad, groups, block, ss;
    bool gemm_only; /* a --gemm problem: gm x gn x gk, no convolution */
    size_t gm, gn, gk;
    char text[160];
} shape;

typedef struct shape_list {
    shape *v;
    size_t n, cap;
} shape_list;

static bool shape_push(shape_list *l, const shape *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        shape *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *s;
    return true;
}

/* Reads up to max comma-separated integers >= min_value (each <= 2^24);
 * returns the count, or -1 with why set. */
static int parse_ints(const char *text, size_t *out, int max, const char *const *names,
                      char *why, size_t why_size)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        if (n == max) {
            snprintf(why, why_size, "more than %d values", max);
            return -1;
        }
        char *end;
        if (*p < '0' || *p > '9') {
            snprintf(why, why_size, "%s is not a non-negative integer", names[n]);
            return -1;
        }
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) {
            snprintf(why, why_size, "%s is not a non-negative integer", names[n]);
            return -1;
        }
        if (v > (1u << 24)) {
            snprintf(why, why_size, "%s=%llu is too large", names[n], v);
            return -1;
        }
        out[n++] = (size_t)v;
        if (*end == '\0') return n;
        p = end + 1;
    }
}

static void shape_text(shape *s)
{
    if (s->gemm_only) {
        snprintf(s->text, sizeof s->text, "%zux%zux%zu", s->gm, s->gn, s->gk);
        return;
    }
    int len = snprintf(s->text, sizeof s->text, "%zux%zux%zux%zu->%zu k%zu", s->n, s->c,
                       s->h, s->w, s->cout, s->k);
    /* Only what differs from the --shape defaults, to keep the table narrow. */
    const struct {
        const char *key;
        size_t v, def;
    } extra[] = {{"s", s->stride, 1},
                 {"p", s->pad, s->k / 2},
                 {"g", s->groups, 1},
                 {"b", s->block, 64},
                 {"ss", s->ss, 3}};
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
        if (extra[i].v != extra[i].def && len > 0 && (size_t)len < sizeof s->text)
            len += snprintf(s->text + len, sizeof s->text - (size_t)len, " %s%zu",
                            extra[i].key, extra[i].v);
}

/* Validates a convolution shape; why names the problem. */
static bool shape_check(const shape *s, char *why, size_t size)
{
    const struct {
        const char *name;
        size_t v;
    } pos[] = {{"N", s->n},           {"C", s->c},           {"H", s->h},
               {"W", s->w},           {"Cout", s->cout},     {"k", s->k},
               {"stride", s->stride}, {"groups", s->groups}, {"block", s->block},
               {"ss", s->ss}};
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        if (pos[i].v == 0) {
            snprintf(why, size, "%s is 0 (must be >= 1)", pos[i].name);
            return false;
        }
    if (s->k > s->h + 2 * s->pad || s->k > s->w + 2 * s->pad) {
        snprintf(why, size, "kernel %zux%zu is larger than the padded input %zux%zu", s->k,
                 s->k, s->h + 2 * s->pad, s->w + 2 * s->pad);
        return false;
    }
    if (s->c % s->groups || s->cout % s->groups) {
        bool c = s->c % s->groups != 0;
        snprintf(why, size, "groups=%zu does not divide %s=%zu", s->groups,
                 c ? "C" : "Cout", c ? s->c : s->cout);
        return false;
    }
    return true;
}

static bool parse_shape(const char *text, shape *s, char *why, size_t size)
{
    size_t v[11];
    static const char *const names[] = {"N",      "C",       "H",      "W",     "Cout", "k",
                                        "stride", "padding", "groups", "block", "ss"};
    int n = parse_ints(text, v, 11, names, why, size);
    if (n < 0) return false;
    if (n < 6) {
        snprintf(why, size,
                 "%d values; expected N,C,H,W,Cout,k[,stride,padding,groups,"
                 "block,ss] (6 to 11)",
                 n);
        return false;
    }
    memset(s, 0, sizeof *s);
    s->n = v[0];
    s->c = v[1];
    s->h = v[2];
    s->w = v[3];
    s->cout = v[4];
    s->k = v[5];
    s->stride = n > 6 ? v[6] : 1;
    s->pad = n > 7 ? v[7] : s->k / 2;
    s->groups = n > 8 ? v[8] : 1;
    s->block = n > 9 ? v[9] : 64;
    s->ss = n > 10 ? v[10] : 3;
    if (!shape_check(s, why, size)) return false;
    shape_text(s);
    return true;
}

static bool parse_gemm(const char *text, shape *s, char *why, size_t size)
{
    size_t v[3];
    static const char *const names[] = {"M", "N", "K"};
    int n = parse_ints(text, v, 3, names, why, size);
    if (n < 0) return false;
    if (n != 3) {
        snprintf(why, size, "%d values; expected M,N,K", n);
        return false;
    }
    if (!v[0] || !v[1] || !v[2]) {
        snprintf(why, size, "a dimension is 0");
        return false;
    }
    memset(s, 0, sizeof *s);
    s->gemm_only = true;
    s->gm = v[0];
    s->gn = v[1];
    s->gk = v[2];
    shape_text(s);
    return true;
}

/* Presets as --shape strings. */
static const struct preset {
    const char *name;
    const char *shapes[5];
} presets[] = {
    {"cifar-resnet18",
     {"128,64,32,32,64,3,1,1", "128,128,16,16,128,3,1,1", "128,256,8,8,256,3,1,1",
      "128,512,4,4,512,3,1,1", NULL}},
    {"small", {"8,16,16,16,16,3,1,1", "8,32,8,8,32,3,1,1", NULL}},
};

static bool add_preset(shape_list *l, const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, name)) continue;
        for (const char *const *p = presets[i].shapes; *p; p++) {
            shape s;
            char why[128];
            if (!parse_shape(*p, &s, why, sizeof why) || !shape_push(l, &s)) return false;
        }
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ helpers */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* xorshift32, so that every run sees the same inputs. */
static float rand_sym(unsigned *state)
{
    unsigned x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (float)((x >> 8) / 16777216.0 * 2.0 - 1.0);
}

static bool quiet, progress_tty;

/* One progress line on stderr: rewritten in place on a terminal, plain
 * lines otherwise (logs). */
static void progress(const char *fmt, ...)
{
    if (quiet) return;
    va_list ap;
    va_start(ap, fmt);
    if (progress_tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    if (!progress_tty) fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

static void progress_done(void)
{
    if (!quiet && progress_tty) fputs("\r\033[K", stderr);
}

/* ------------------------------------------------------------ benchmarks */

/* One benchmark: a suite on a shape, what it owns on the device and what
 * was measured. */
typedef struct bench {
    suite_id suite;
    const shape *sh;
    bool shown; /* false: a conv measured only for the layers' vs_conv */
    ndcl_context *ctx;

    ndcl_conv_geom cg;
    ndcl_conv_plan plan; /* the chunks, as the conv layer plans them */
    ndcl_patch_geom pg;
    ndcl_fold_geom fg;

    host_gemm *host; /* gemm-host's operands */

    /* Inputs and workspaces, destroyed with the benchmark. */
    ndcl_tensor *x, *X, *mean, *cov, *D, *W, *bias, *Wout, *bout, *y, *col, *tmp, *a, *b,
        *c, *dy, *dx, *dw, *db;
    ndcl_layer *layer;
    /* The plain conv suites' table workspace and its chunk buffers; skip: an
     * algorithm suite whose algorithm does not fit (no row). */
    ndcl_conv_ws cws;
    ndcl_scratch cws_col, cws_tmp;
    bool skip;

    double flops, bytes; /* per call; 0: not counted */
    char note[96];

    double cold_ms;
    double *times;
} bench;

static char error_msg[2048];
/* The status behind error_msg: a shape the library refuses is the
 * argument's fault (exit 2), anything else the device's (exit 1). */
static ndcl_status error_status;

/* Records "what: status: detail" for the caller to print. */
static bool failed(bench *b, const char *what, ndcl_status s)
{
    error_status = s;
    const char *e = ndcl_context_last_error(b->ctx);
    snprintf(error_msg, sizeof error_msg, "%s %s: %s: %s%s%s", suite_names[b->suite],
             b->sh->text, what, ndcl_status_string(s), *e ? ": " : "", e);
    return false;
}

#define TRY(b, expr)                                                                       \
    do {                                                                                   \
        ndcl_status try_s_ = (expr);                                                       \
        if (try_s_ != NDCL_SUCCESS) return failed((b), #expr, try_s_);                     \
    } while (0)

/* A tensor of uniform values in [-scale, scale) (scale 0: uninitialised). */
static ndcl_status tensor(ndcl_context *ctx, int ndim, const size_t *dims, float scale,
                          unsigned seed, ndcl_tensor **out)
{
    ndcl_tensor *t = NULL;
    BENCH_TRY(ndcl_tensor_create(ctx, ndim, dims, &t));
    if (scale != 0) {
        size_t n = ndcl_tensor_count(t);
        float *h = malloc(n * sizeof *h);
        if (!h) {
            ndcl_tensor_destroy(t);
            return NDCL_ERR_OUT_OF_MEMORY; /* of the host: reported as the status */
        }
        for (size_t i = 0; i < n; i++)
            h[i] = scale * rand_sym(&seed);
        ndcl_status s = ndcl_tensor_write(t, h, n);
        free(h);
        if (s != NDCL_SUCCESS) {
            ndcl_tensor_destroy(t);
            return s;
        }
    }
    *out = t;
    return NDCL_SUCCESS;
}

static ndcl_status tensor1(ndcl_context *ctx, size_t d0, float scale, unsigned seed,
                           ndcl_tensor **out)
{
    return tensor(ctx, 1, (size_t[]){d0}, scale, seed, out);
}

/* The layer's effective block: C when larger, gcd(block, C) when it does
 * not divide C, C/groups when grouped. */
static size_t eff_block(const shape *s)
{
    size_t B = s->block, C = s->c;
    if (B > C) {
        B = C;
    } else if (C % B) {
        size_t a = B, c = C;
        while (c) {
            size_t t = a % c;
            a = c;
            c = t;
        }
        B = a;
    }
    if (s->groups > 1) B = C / s->groups;
    return B;
}

/* Convolution, patch and fold geometry of a shape, as conv.c derives them. */
static bool geometry(bench *b)
{
    const shape *s = b->sh;
    b->cg = (ndcl_conv_geom){.n = s->n,
                             .c = s->c,
                             .h = s->h,
                             .w = s->w,
                             .cout = s->cout,
                             .kh = s->k,
                             .kw = s->k,
                             .stride = s->stride,
                             .pad = s->pad,
                             .dil = 1,
                             .groups = s->groups};
    TRY(b, ndcl_conv_geom_init(b->ctx, &b->cg));
    size_t B = eff_block(s);
    b->pg = (ndcl_patch_geom){.n = s->n,
                              .c = s->c,
                              .h = s->h,
                              .w = s->w,
                              .kh = s->k,
                              .kw = s->k,
                              .pad = s->pad,
                              .dil = 1,
                              .stride = s->ss * s->stride,
                              .groups = s->groups,
                              .block = B};
    TRY(b, ndcl_patch_geom_init(b->ctx, &b->pg));
    ndcl_fold_geom *f = &b->fg;
    *f = (ndcl_fold_geom){0};
    f->outputs = s->cout;
    f->K = s->c / s->groups * s->k * s->k;
    f->nf = b->pg.nf;
    f->batch = s->groups;
    if (s->groups == 1) {
        f->R = s->c / B; /* interleaved blocks: (o, r) element f at W[o, f*R + r] */
        f->rs = 1;
        f->fs = f->R;
    } else {
        f->R = 1;
        f->rs = 0;
        f->fs = 1;
    }
    return true;
}

/* Useful flops (see --help). */
static double conv_flops(const shape *s, const ndcl_conv_geom *g)
{
    return 2.0 * (double)s->n * (double)g->P * (double)s->cout *
           (double)(s->c / s->groups) * (double)(s->k * s->k);
}

static double cov_flops(const shape *s, const ndcl_patch_geom *p)
{
    return (double)s->groups * (double)p->rows * (double)p->nf * (double)(p->nf + 1);
}

static double ns_flops(double groups, double nf)
{
    return groups * N_ITER * 3.0 * 2.0 * nf * nf * nf;
}

static double fold_flops(const ndcl_fold_geom *f)
{
    return 2.0 * (double)f->outputs * (double)f->R * (double)f->nf * (double)f->nf;
}

/* The (output, tap) pairs of one dimension that land inside the input
 * (size), not in the padding. */
static double taps_inside(size_t outputs, size_t k, size_t stride, size_t dil, size_t pad,
                          size_t size)
{
    double n = 0;
    for (size_t o = 0; o < outputs; o++)
        for (size_t i = 0; i < k; i++) {
            long long at = (long long)(o * stride + i * dil) - (long long)pad;
            n += at >= 0 && at < (long long)size;
        }
    return n;
}

/* Input values the sampled im2col reads (padding is written, not read). */
static double im2col_reads(const ndcl_patch_geom *g)
{
    if (g->kh * g->kw == 1) return (double)g->positions * (double)g->c;
    return (double)g->n * (double)g->c *
           taps_inside(g->oh, g->kh, g->stride, g->dil, g->pad, g->h) *
           taps_inside(g->ow, g->kw, g->stride, g->dil, g->pad, g->w);
}

/* Input values the convolution's im2col reads over the batch (each in-bounds
 * tap once), which col2im's gather reads back as patch values. */
static double conv_reads(const ndcl_conv_geom *g)
{
    return (double)g->n * (double)g->c *
           taps_inside(g->oh, g->kh, g->stride, g->dil, g->pad, g->h) *
           taps_inside(g->ow, g->kw, g->stride, g->dil, g->pad, g->w);
}

static ndcl_status input_x(bench *b, unsigned seed)
{
    const shape *s = b->sh;
    return tensor(b->ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 1.0f, seed, &b->x);
}

/* The patch matrix of random x, and (as wanted) its centred statistics and
 * whitening matrix, as the layer computes them: realistic inputs for the
 * cov, isqrt and fold suites. */
static bool stats_chain(bench *b, bool want_cov, bool want_D)
{
    ndcl_context *ctx = b->ctx;
    const ndcl_patch_geom *p = &b->pg;
    size_t G = b->sh->groups, nf = p->nf;
    TRY(b, input_x(b, 11));
    TRY(b, tensor(ctx, 2, (size_t[]){p->rows, p->cols}, 0, 0, &b->X));
    TRY(b, tensor1(ctx, p->cols, 0, 0, &b->mean));
    TRY(b, ndcl_im2col_sampled(ctx, p, MEM(b->x), MEM(b->X)));
    if (!want_cov) return true;
    TRY(b, tensor(ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->cov));
    TRY(b, ndcl_col_mean(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    TRY(b, ndcl_center(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
    TRY(b, ndcl_cov(ctx, MEM(b->X), p->rows, G, nf, 1.0f / (float)p->rows, 1e-5f,
                    MEM(b->cov)));
    TRY(b, tensor(ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->D));
    if (want_D) TRY(b, ndcl_isqrt_ns(ctx, MEM(b->cov), G, nf, N_ITER, MEM(b->D), NULL));
    TRY(b, ndcl_finish(ctx));
    return true;
}

static void weight_shape(const shape *s, size_t out[4])
{
    out[0] = s->cout;
    out[1] = s->c / s->groups;
    out[2] = out[3] = s->k;
}

/* Random weight and bias of fan-in scale for a parameter set. */
static bool random_params(bench *b, ndcl_layer *l, const char *const *names, int n)
{
    static const unsigned seeds[] = {21, 22, 23};
    for (int i = 0; i < n; i++) {
        int nd;
        size_t shp[NDCL_MAX_DIMS], count = 1;
        TRY(b, ndcl_layer_param_shape(l, names[i], &nd, shp));
        for (int d = 0; d < nd; d++)
            count *= shp[d];
        float *h = malloc(count * sizeof *h);
        if (!h) return failed(b, "malloc", NDCL_ERR_OUT_OF_MEMORY);
        /* Weight rows hold the fan-in: shp[0] outputs. */
        float scale = i == 0 ? 1.0f / sqrtf((float)(count / shp[0])) : 0.1f;
        unsigned seed = seeds[i % 3];
        for (size_t k = 0; k < count; k++)
            h[k] = scale * rand_sym(&seed);
        ndcl_status s = ndcl_layer_set_param(l, names[i], h, count);
        free(h);
        TRY(b, s);
    }
    return true;
}

static bool conv_layer(bench *b)
{
    const shape *s = b->sh;
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default((int)s->c, (int)s->cout, (int)s->k);
    d.stride = (int)s->stride;
    d.padding = (int)s->pad;
    d.groups = (int)s->groups;
    d.block = (int)s->block;
    d.sampling_stride = (int)s->ss;
    d.n_iter = N_ITER;
    TRY(b, ndcl_conv2d_create(b->ctx, &d, &b->layer));
    static const char *const names[] = {"weight", "bias"};
    if (!random_params(b, b->layer, names, 2)) return false;
    TRY(b, input_x(b, 31));
    return true;
}

/* Allocates and fills what the benchmark needs; sets flops, bytes, note. */
static bool bench_setup(bench *b)
{
    ndcl_context *ctx = b->ctx;
    const shape *s = b->sh;
    if (b->suite == S_GEMM_HOST) {
        /* The gemm suite's products, on host memory. */
        size_t G = 1, M = s->gm, N = s->gn, K = s->gk;
        if (!s->gemm_only) {
            if (!geometry(b)) return false;
            G = s->groups;
            M = b->cg.cout / G;
            N = b->cg.n * b->cg.P;
            K = b->cg.K / G;
        }
        b->host = host_gemm_create(G, M, N, K);
        if (!b->host) return failed(b, "host operands", NDCL_ERR_OUT_OF_MEMORY);
        b->flops = 2.0 * (double)G * (double)M * (double)N * (double)K;
        snprintf(b->note, sizeof b->note, "cblas_sgemm on host memory");
        return true;
    }
    if (s->gemm_only) {
        size_t M = s->gm, N = s->gn, K = s->gk;
        TRY(b, tensor(ctx, 2, (size_t[]){M, K}, 1.0f, 1, &b->a));
        TRY(b, tensor(ctx, 2, (size_t[]){K, N}, 1.0f, 2, &b->b));
        TRY(b, tensor(ctx, 2, (size_t[]){M, N}, 0, 0, &b->c));
        b->flops = 2.0 * (double)M * (double)N * (double)K;
        snprintf(b->note, sizeof b->note, "M=%zu N=%zu K=%zu", M, N, K);
        return true;
    }
    if (!geometry(b)) return false;
    const ndcl_conv_geom *cg = &b->cg;
    const ndcl_patch_geom *pg = &b->pg;
    size_t G = s->groups, nf = pg->nf, NP = cg->n * cg->P, wshape[4];
    size_t yshape[4] = {cg->n, cg->cout, cg->oh, cg->ow};
    double xcount = (double)(cg->n * cg->c * cg->h * cg->w), ycount = (double)NP * cg->cout;
    weight_shape(s, wshape);
    TRY(b, ndcl_conv_plan_make(ctx, cg, true, &b->plan));
    const ndcl_conv_plan *pl = &b->plan;
    switch (b->suite) {
    case S_GEMM: {
        size_t M = cg->cout / G, K = cg->K / G;
        TRY(b, tensor(ctx, 2, (size_t[]){cg->cout, K}, 1.0f, 1, &b->a));
        TRY(b, tensor(ctx, 2, (size_t[]){cg->K, NP}, 1.0f, 2, &b->b));
        TRY(b, tensor(ctx, 2, (size_t[]){cg->cout, NP}, 0, 0, &b->c));
        b->flops = conv_flops(s, cg);
        if (G > 1)
            snprintf(b->note, sizeof b->note, "%zu x M=%zu N=%zu K=%zu", G, M, NP, K);
        else
            snprintf(b->note, sizeof b->note, "M=%zu N=%zu K=%zu", M, NP, K);
        return true;
    }
    case S_COPY:
        TRY(b, input_x(b, 11));
        TRY(b, tensor(ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->c));
        b->bytes = 8.0 * xcount;
        snprintf(b->note, sizeof b->note, "%.0f floats", xcount);
        return true;
    case S_CIM2COL:
        TRY(b, input_x(b, 11));
        TRY(b, tensor1(ctx, pl->col, 0, 0, &b->col));
        b->bytes = 4.0 * ((double)cg->K * (double)NP + conv_reads(cg));
        snprintf(b->note, sizeof b->note, "%zu x %zu*%zu, %zu images a chunk", cg->K,
                 pl->chunk, cg->P, pl->chunk);
        return true;
    case S_COL2IM:
        TRY(b, tensor1(ctx, pl->col, 1.0f, 12, &b->col));
        TRY(b, tensor(ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->dx));
        b->bytes = 4.0 * (conv_reads(cg) + xcount);
        snprintf(b->note, sizeof b->note, "%zu images a chunk", pl->chunk);
        return true;
    case S_LAYOUT:
        TRY(b, tensor(ctx, 4, yshape, 1.0f, 13, &b->dy));
        TRY(b, tensor1(ctx, pl->tmp, 0, 0, &b->tmp));
        b->bytes = 8.0 * ycount;
        snprintf(b->note, sizeof b->note, "NCHW -> %zu x %zu*%zu rows", cg->cout, pl->chunk,
                 cg->P);
        return true;
    case S_BIASGRAD:
        TRY(b, tensor1(ctx, pl->tmp, 1.0f, 14, &b->tmp));
        TRY(b, tensor1(ctx, s->cout, 0, 0, &b->db));
        b->bytes = 4.0 * ycount;
        snprintf(b->note, sizeof b->note, "%zu sums of %zu", cg->cout, NP);
        return true;
    case S_IM2COL:
        TRY(b, input_x(b, 11));
        TRY(b, tensor(ctx, 2, (size_t[]){pg->rows, pg->cols}, 0, 0, &b->X));
        b->bytes = 4.0 * ((double)pg->rows * (double)pg->cols + im2col_reads(pg));
        snprintf(b->note, sizeof b->note, "X %zux%zu", pg->rows, pg->cols);
        return true;
    case S_COV:
        if (!stats_chain(b, false, false)) return false;
        TRY(b, tensor(ctx, 3, (size_t[]){G, nf, nf}, 0, 0, &b->cov));
        b->flops = cov_flops(s, pg);
        snprintf(b->note, sizeof b->note, "M=%zu nf=%zu G=%zu", pg->rows, nf, G);
        return true;
    case S_ISQRT:
        if (!stats_chain(b, true, false)) return false;
        b->flops = ns_flops((double)G, (double)nf);
        snprintf(b->note, sizeof b->note, "G=%zu nf=%zu n_iter=%d", G, nf, N_ITER);
        return true;
    case S_FOLD:
        if (!stats_chain(b, true, true)) return false;
        TRY(b, tensor(ctx, 4, wshape, 0.05f, 41, &b->W));
        TRY(b, tensor1(ctx, s->cout, 0.1f, 42, &b->bias));
        TRY(b, tensor(ctx, 4, wshape, 0, 0, &b->Wout));
        TRY(b, tensor1(ctx, s->cout, 0, 0, &b->bout));
        b->flops = fold_flops(&b->fg);
        snprintf(b->note, sizeof b->note, "%zu x %zu rows of nf=%zu", s->cout, b->fg.R, nf);
        return true;
    case S_CONV:
    case S_CBACK:
    case S_CONV_GEMM:
    case S_CONV_DNNL:
    case S_CONV_WINO:
    case S_CBACK_GEMM:
    case S_CBACK_DNNL:
    case S_CBACK_WINO: {
        /* Through the table, as the conv layer runs it. */
        const ndcl_conv_algorithm id = algo_of(b->suite);
        b->cws = (ndcl_conv_ws){.col = &b->cws_col, .tmp = &b->cws_tmp, .force = id};
        if (id != NDCL_CONV_AUTO) {
            const ndcl_conv_algo *a = ndcl_conv_algo_find(id);
            char why[256];
            if (!a || !a->available(ctx) || !a->fits(ctx, cg, why, sizeof why)) {
                b->skip = true;
                return true;
            }
        }
        TRY(b, input_x(b, 31));
        TRY(b, tensor(ctx, 4, wshape, 0.05f, 41, &b->W));
        if (is_conv_fwd(b->suite)) {
            TRY(b, tensor1(ctx, s->cout, 0.1f, 42, &b->bias));
            TRY(b, tensor(ctx, 4, yshape, 0, 0, &b->y));
            b->flops = conv_flops(s, cg);
            snprintf(b->note, sizeof b->note, "%zu chunks of %zu images%s",
                     (cg->n + pl->chunk - 1) / pl->chunk, pl->chunk,
                     pl->per_image ? ", per-image products" : "");
        } else {
            TRY(b, tensor(ctx, 4, yshape, 0.01f, 51, &b->dy));
            TRY(b, tensor(ctx, 4, (size_t[]){s->n, s->c, s->h, s->w}, 0, 0, &b->dx));
            TRY(b, tensor(ctx, 4, wshape, 0, 0, &b->dw));
            TRY(b, tensor1(ctx, s->cout, 0, 0, &b->db));
            b->flops = 2.0 * conv_flops(s, cg);
            snprintf(b->note, sizeof b->note, "dx, dW, db; %zu chunks of %zu images",
                     (cg->n + pl->chunk - 1) / pl->chunk, pl->chunk);
        }
        if (id != NDCL_CONV_AUTO && id != NDCL_CONV_GEMM)
            snprintf(b->note, sizeof b->note, "%s",
                     is_conv_fwd(b->suite) ? "" : "dx, dW, db");
        return true;
    }
    case S_LTRAIN:
        if (!conv_layer(b)) return false;
        b->flops = conv_flops(s, cg) + cov_flops(s, pg) + ns_flops((double)G, (double)nf) +
                   fold_flops(&b->fg);
        snprintf(b->note, sizeof b->note, "B=%d nf=%zu M=%zu", ndcl_layer_block(b->layer),
                 nf, pg->rows);
        return true;
    case S_LEVAL:
        if (!conv_layer(b)) return false;
        b->flops = conv_flops(s, cg);
        snprintf(b->note, sizeof b->note, "folded weights cached");
        return true;
    case S_LBACK:
        if (!conv_layer(b)) return false;
        TRY(b, tensor(ctx, 4, yshape, 0.01f, 51, &b->dy));
        snprintf(b->note, sizeof b->note, "forward untimed; dx, dW, db");
        return true;
    case S_LINEAR: {
        size_t F = s->c * s->h * s->w;
        if (F > (1u << 24)) return failed(b, "C*H*W too large", NDCL_ERR_INVALID_ARG);
        ndcl_linear_desc d = ndcl_linear_desc_default((int)F, (int)s->cout);
        d.block = LINEAR_BLOCK;
        d.n_iter = N_ITER;
        TRY(b, ndcl_linear_create(ctx, &d, &b->layer));
        static const char *const names[] = {"weight", "bias"};
        if (!random_params(b, b->layer, names, 2)) return false;
        TRY(b, tensor(ctx, 2, (size_t[]){s->n, F}, 1.0f, 61, &b->x));
        double B = ndcl_layer_block(b->layer), Fd = (double)F, M = (double)s->n * Fd / B;
        b->flops = 2.0 * (double)s->n * Fd * (double)s->cout + M * B * (B + 1) +
                   ns_flops(1, B) + 2.0 * (double)s->cout * Fd * B;
        snprintf(b->note, sizeof b->note, "x %zux%zu -> %zu, B=%.0f", s->n, F, s->cout, B);
        return true;
    }
    case S_CHANNEL: {
        ndcl_channel_desc d = ndcl_channel_desc_default((int)s->c);
        d.sampling_stride = (int)s->ss;
        d.n_iter = N_ITER;
        TRY(b, ndcl_channel_create(ctx, &d, &b->layer));
        TRY(b, input_x(b, 71));
        double B = (double)s->c, L = (double)(s->n * s->h * s->w);
        size_t step = (s->ss > 1 && s->h >= s->ss && s->w >= s->ss) ? s->ss * s->ss : 1;
        double Ms = ceil(L / (double)step);
        b->flops = Ms * B * (B + 1) + ns_flops(1, B) + 2.0 * B * B * L;
        snprintf(b->note, sizeof b->note, "B=%zu L=%.0f sampled %.0f", s->c, L, Ms);
        return true;
    }
    default: return failed(b, "unknown suite", NDCL_ERR_INVALID_ARG);
    }
}

static void bench_teardown(bench *b)
{
    host_gemm_destroy(b->host);
    b->host = NULL;
    ndcl_layer_destroy(b->layer);
    ndcl_conv_ws_release(b->ctx, &b->cws);
    ndcl_scratch_release(&b->cws_col);
    ndcl_scratch_release(&b->cws_tmp);
    ndcl_tensor *ts[] = {b->x,    b->X,    b->mean, b->cov, b->D,   b->W, b->bias,
                         b->Wout, b->bout, b->y,    b->col, b->tmp, b->a, b->b,
                         b->c,    b->dy,   b->dx,   b->dw,  b->db};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        ndcl_tensor_destroy(ts[i]);
    b->layer = NULL;
    b->x = b->X = b->mean = b->cov = b->D = b->W = b->bias = b->Wout = b->bout = NULL;
    b->y = b->col = b->tmp = b->a = b->b = b->c = b->dy = b->dx = b->dw = b->db = NULL;
}

/* Untimed work before each call: the backward needs a fresh forward. */
static ndcl_status bench_prepare(bench *b)
{
    if (b->suite != S_LBACK) return NDCL_SUCCESS;
    BENCH_TRY(ndcl_layer_forward(b->layer, NDCL_TRAIN, b->x, &b->y));
    return ndcl_finish(b->ctx);
}

/* Enqueues one call of the benchmark. */
static ndcl_status bench_call(bench *b)
{
    ndcl_context *ctx = b->ctx;
    const ndcl_patch_geom *p = &b->pg;
    size_t G = b->sh->groups;
    if (b->suite == S_GEMM_HOST) {
        host_gemm_run(b->host);
        return NDCL_SUCCESS;
    }
    if (b->sh->gemm_only) return ndcl_gemm(ctx, 0, 0, 1.0f, b->a, b->b, 0.0f, b->c);
    switch (b->suite) {
    case S_GEMM: {
        /* The conv's products: one per group on the block-diagonal weight. */
        const ndcl_conv_geom *g = &b->cg;
        size_t NP = g->n * g->P, Kg = g->K / G, Cg = g->cout / G;
        for (size_t q = 0; q < G; q++)
            BENCH_TRY(ndcl_blas_gemm(ctx, false, false, Cg, NP, Kg, 1.0f, MEM(b->a),
                                     q * Cg * Kg, Kg, MEM(b->b), q * Kg * NP, NP, 0.0f,
                                     MEM(b->c), q * Cg * NP, NP));
        return NDCL_SUCCESS;
    }
    case S_COPY:
        return ndcl_copy_floats(ctx, MEM(b->x), MEM(b->c), ndcl_tensor_count(b->x));
    case S_CIM2COL:
    case S_COL2IM:
    case S_LAYOUT: {
        /* Over the batch a chunk at a time, in the wide layout the backward uses. */
        const ndcl_conv_geom *g = &b->cg;
        for (size_t n0 = 0; n0 < g->n; n0 += b->plan.chunk) {
            size_t nc = g->n - n0 < b->plan.chunk ? g->n - n0 : b->plan.chunk;
            if (b->suite == S_CIM2COL)
                BENCH_TRY(ndcl_conv_im2col(ctx, g, MEM(b->x), n0, nc, nc * g->P, g->P,
                                           MEM(b->col)));
            else if (b->suite == S_COL2IM)
                BENCH_TRY(ndcl_conv_col2im(ctx, g, MEM(b->col), n0, nc, nc * g->P, g->P,
                                           MEM(b->dx)));
            else
                BENCH_TRY(ndcl_conv_to_rows(ctx, g, MEM(b->dy), n0, nc, MEM(b->tmp)));
        }
        return NDCL_SUCCESS;
    }
    case S_BIASGRAD:
        /* The backward's row sums over the chunk rows (in cache there). */
        for (size_t n0 = 0; n0 < b->cg.n; n0 += b->plan.chunk) {
            size_t nc = b->cg.n - n0 < b->plan.chunk ? b->cg.n - n0 : b->plan.chunk;
            BENCH_TRY(ndcl_conv_row_sums(ctx, &b->cg, MEM(b->tmp), nc, n0 > 0, MEM(b->db)));
        }
        return NDCL_SUCCESS;
    case S_IM2COL: return ndcl_im2col_sampled(ctx, p, MEM(b->x), MEM(b->X));
    case S_COV:
        BENCH_TRY(ndcl_col_mean(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
        BENCH_TRY(ndcl_center(ctx, MEM(b->X), p->rows, p->cols, MEM(b->mean)));
        return ndcl_cov(ctx, MEM(b->X), p->rows, G, p->nf, 1.0f / (float)p->rows, 1e-5f,
                        MEM(b->cov));
    case S_ISQRT: return ndcl_isqrt_ns(ctx, MEM(b->cov), G, p->nf, N_ITER, MEM(b->D), NULL);
    case S_FOLD:
        return ndcl_fold(ctx, &b->fg, MEM(b->W), MEM(b->bias), MEM(b->D), MEM(b->mean),
                         MEM(b->Wout), MEM(b->bout));
    case S_CONV:
    case S_CONV_GEMM:
    case S_CONV_DNNL:
    case S_CONV_WINO:
        return ndcl_conv_run_forward(ctx, &b->cg, &b->cws, MEM(b->x), MEM(b->W),
                                     MEM(b->bias), MEM(b->y));
    case S_CBACK:
    case S_CBACK_GEMM:
    case S_CBACK_DNNL:
    case S_CBACK_WINO:
        return ndcl_conv_run_backward(ctx, &b->cg, &b->cws, MEM(b->x), MEM(b->W),
                                      MEM(b->dy), MEM(b->dx), MEM(b->dw), MEM(b->db));
    case S_LTRAIN:
    case S_LINEAR:
    case S_CHANNEL: return ndcl_layer_forward(b->layer, NDCL_TRAIN, b->x, &b->y);
    case S_LEVAL: return ndcl_layer_forward(b->layer, NDCL_EVAL, b->x, &b->y);
    case S_LBACK: return ndcl_layer_backward(b->layer, b->dy, &b->dx, &b->dw, &b->db);
    default: return NDCL_ERR_INVALID_ARG;
    }
}

/* One timed call; false with error_msg set on failure. */
static bool bench_time(bench *b, double *ms)
{
    if (b->skip) {
        if (ms) *ms = 0;
        return true;
    }
    ndcl_status s = bench_prepare(b);
    if (s != NDCL_SUCCESS) return failed(b, "forward before the backward", s);
    double t0 = now_ms();
    s = bench_call(b);
    if (s == NDCL_SUCCESS) s = ndcl_finish(b->ctx);
    double t1 = now_ms();
    if (s != NDCL_SUCCESS) return failed(b, "call", s);
    if (ms) *ms = t1 - t0;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------ results */

typedef struct row {
    suite_id suite;
    char shape[160];
    int runs;
    double cold_ms, min_ms, median_ms, gflops, gbs, vs_conv, workspace; /* NAN: null */
    char note[96];
} row;

typedef struct row_list {
    row *v;
    size_t n, cap;
} row_list;

static bool row_push(row_list *l, const row *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        row *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *r;
    return true;
}

/* Six significant digits: enough for timings, and stable JSON. */
static double sig6(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.6g", v);
    return strtod(buf, NULL);
}

static void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, sig6(v));
    else
        cJSON_AddNullToObject(o, key);
}

static bool print_json(const row_list *rows, const char *device, const char *blas,
                       size_t budget)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return false;
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            cJSON_Delete(arr);
            return false;
        }
        cJSON_AddStringToObject(o, "suite", suite_names[r->suite]);
        cJSON_AddStringToObject(o, "shape", r->shape);
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddStringToObject(o, "blas", blas);
        cJSON_AddNumberToObject(o, "runs", r->runs);
        json_num(o, "cold_ms", r->cold_ms);
        json_num(o, "min_ms", r->min_ms);
        json_num(o, "median_ms", r->median_ms);
        json_num(o, "gflops", r->gflops);
        json_num(o, "gbs", r->gbs);
        json_num(o, "workspace_bytes", r->workspace);
        json_num(o, "conv_budget_bytes", (double)budget);
        if (is_layer_row(r->suite)) json_num(o, "vs_conv", r->vs_conv);
        cJSON_AddStringToObject(o, "note", r->note);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    if (!text) return false;
    puts(text);
    free(text);
    return true;
}

static void csv_str(const char *s, bool last)
{
    if (strpbrk(s, ",\"\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"') putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

static void csv_num(double v)
{
    if (isfinite(v)) printf("%.6g", v);
    putchar(',');
}

static void print_csv(const row_list *rows, const char *device)
{
    puts("suite,shape,device,runs,cold_ms,min_ms,median_ms,gflops,gbs,vs_conv,workspace_"
         "bytes,"
         "note");
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        csv_str(suite_names[r->suite], false);
        csv_str(r->shape, false);
        csv_str(device, false);
        printf("%d,", r->runs);
        csv_num(r->cold_ms);
        csv_num(r->min_ms);
        csv_num(r->median_ms);
        csv_num(r->gflops);
        csv_num(r->gbs);
        csv_num(is_layer_row(r->suite) ? r->vs_conv : NAN);
        csv_num(r->workspace);
        csv_str(r->note, true);
    }
}

static void fmt_num(char *buf, size_t size, double v, const char *fmt)
{
    if (isfinite(v))
        snprintf(buf, size, fmt, v);
    else
        snprintf(buf, size, "-");
}

static void print_table(const row_list *rows)
{
    enum { NC = 11 };
    static const char *const head[NC] = {"suite",   "shape",     "runs",   "cold ms",
                                         "min ms",  "median ms", "GFLOPS", "GB/s",
                                         "vs conv", "ws MB",     "note"};
    /* Left-aligned text columns, right-aligned numbers. */
    static const bool left[NC] = {true,  true,  false, false, false, false,
                                  false, false, false, false, true};
    size_t width[NC];
    for (int c = 0; c < NC; c++)
        width[c] = strlen(head[c]);
    char(*cells)[NC][160] = calloc(rows->n ? rows->n : 1, sizeof *cells);
    if (!cells) return;
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        char(*c)[160] = cells[i];
        snprintf(c[0], 160, "%s", suite_names[r->suite]);
        snprintf(c[1], 160, "%s", r->shape);
        snprintf(c[2], 160, "%d", r->runs);
        fmt_num(c[3], 160, r->cold_ms, "%.3f");
        fmt_num(c[4], 160, r->min_ms, "%.3f");
        fmt_num(c[5], 160, r->median_ms, "%.3f");
        fmt_num(c[6], 160, r->gflops, "%.2f");
        fmt_num(c[7], 160, r->gbs, "%.2f");
        fmt_num(c[8], 160, is_layer_row(r->suite) ? r->vs_conv : NAN, "%.2fx");
        fmt_num(c[9], 160, r->workspace / 1048576.0, "%.1f");
        snprintf(c[10], 160, "%s", r->note);
        for (int k = 0; k < NC; k++)
            if (strlen(c[k]) > width[k]) width[k] = strlen(c[k]);
    }
    for (size_t i = 0; i <= rows->n; i++) {
        /* Row 0 is the heading; the note, last, is not padded. */
        for (int k = 0; k < NC; k++) {
            const char *text = i == 0 ? head[k] : cells[i - 1][k];
            if (k == NC - 1)
                printf("%s\n", text);
            else
                printf(left[k] ? "%-*s  " : "%*s  ", (int)width[k], text);
        }
    }
    free(cells);
}

/* ------------------------------------------------------------ one shape */

typedef struct options {
    bool want[S_COUNT];
    int runs, warmup;
} options;

static int step_no, step_total;
static bool host_engine; /* the context's products run in the host BLAS */

/* Times one call; after the host BLAS's own product beside a device
 * engine, waits until OpenBLAS's workers have stopped spinning. */
static bool bench_time_one(bench *b, double *ms)
{
    bool ok = bench_time(b, ms);
    if (ok && b->suite == S_GEMM_HOST && !host_engine)
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    return ok;
}

/* Measures every wanted suite on one shape and appends the rows. Returns
 * false with error_msg set on any failure. */
static bool run_shape(ndcl_context *ctx, const shape *s, const options *o, row_list *rows)
{
    bench benches[S_COUNT + 2];
    int nb = 0;
    bool want[S_COUNT] = {false}, shown[S_COUNT] = {false};
    for (int k = 0; k < S_COUNT; k++)
        if (o->want[k] && (!s->gemm_only || is_gemm_row((suite_id)k)))
            want[k] = shown[k] = true;
    /* The rows' references are measured even when not listed. */
    const bool step = want[S_LTRAIN] && want[S_LBACK];
    if (want[S_LTRAIN] || want[S_LEVAL] || want[S_LBACK] || want[S_CBACK])
        want[S_CONV] = true;
    if (want[S_LBACK]) want[S_CBACK] = true;
    for (int k = 0; k < S_COUNT; k++)
        if (want[k])
            benches[nb++] =
                (bench){.suite = (suite_id)k, .sh = s, .shown = shown[k], .ctx = ctx};
    if (nb == 0) return true;

    bool ok = true;
    for (int i = 0; i < nb && ok; i++) {
        bench *b = &benches[i];
        b->times = calloc((size_t)o->runs, sizeof *b->times);
        if (!b->times) {
            snprintf(error_msg, sizeof error_msg, "out of host memory");
            ok = false;
            break;
        }
        if (b->shown) step_no++;
        progress("[%d/%d] %s %s: setup and cold call", step_no, step_total,
                 suite_names[b->suite], s->text);
        /* The cold time is the call's alone (not the backward's forward). */
        ok = bench_setup(b) && bench_time(b, &b->cold_ms);
    }
    for (int w = 0; w < o->warmup && ok; w++) {
        progress("[%d/%d] %s: warmup %d/%d", step_no, step_total, s->text, w + 1,
                 o->warmup);
        for (int i = 0; i < nb && ok; i++)
            ok = bench_time_one(&benches[i], NULL);
    }
    for (int r = 0; r < o->runs && ok; r++) {
        progress("[%d/%d] %s: run %d/%d", step_no, step_total, s->text, r + 1, o->runs);
        for (int i = 0; i < nb && ok; i++)
            ok = bench_time_one(&benches[i], &benches[i].times[r]);
    }

    if (ok) {
        row all[S_COUNT + 1];
        bool have[S_COUNT + 1] = {false};
        for (int i = 0; i < nb; i++) {
            bench *b = &benches[i];
            if (b->skip) continue;
            if ((b->suite == S_CONV || b->suite == S_CBACK) && b->cws.chosen) {
                /* Which algorithms auto took. */
                const ndcl_conv_algo *const *c = b->cws.pass;
                size_t len = strlen(b->note);
                if (b->suite == S_CONV)
                    snprintf(b->note + len, sizeof b->note - len, "%sauto: %s",
                             len ? "; " : "", c[NDCL_CONV_FWD]->name);
                else
                    snprintf(b->note + len, sizeof b->note - len, "%sauto: dx %s, dW %s",
                             len ? "; " : "", c[NDCL_CONV_BWD_DATA]->name,
                             c[NDCL_CONV_BWD_WEIGHTS]->name);
            }
            double mn = b->times[0];
            for (int r = 1; r < o->runs; r++)
                mn = fmin(mn, b->times[r]);
            double med = median(b->times, o->runs);
            row rr = {.suite = b->suite,
                      .runs = o->runs,
                      .cold_ms = b->cold_ms,
                      .min_ms = mn,
                      .median_ms = med,
                      .vs_conv = NAN,
                      .workspace = NAN};
            snprintf(rr.shape, sizeof rr.shape, "%s", s->text);
            snprintf(rr.note, sizeof rr.note, "%s", b->note);
            rr.gflops = b->flops > 0 && med > 0 ? b->flops / (med * 1e6) : NAN;
            rr.gbs = b->bytes > 0 && med > 0 ? b->bytes / (med * 1e6) : NAN;
            if (b->layer && has_workspace(b->suite)) {
                size_t bytes;
                if (ndcl_layer_workspace_bytes(b->layer, &bytes) == NDCL_SUCCESS)
                    rr.workspace = (double)bytes;
            } else if (has_workspace(b->suite)) {
                size_t floats = b->suite == S_CIM2COL || b->suite == S_COL2IM ? b->plan.col
                                : b->suite == S_LAYOUT                        ? b->plan.tmp
                                : b->suite == S_CONV && b->plan.per_image
                                    ? b->plan.col
                                    : b->plan.col + b->plan.tmp;
                rr.workspace = 4.0 * (double)floats;
            }
            all[b->suite] = rr;
            have[b->suite] = b->shown;
        }
        if (step) {
            /* The training step next to the plain conv's step. */
            const row *t = &all[S_LTRAIN], *bw = &all[S_LBACK];
            row st = {.suite = S_LSTEP,
                      .runs = o->runs,
                      .cold_ms = t->cold_ms + bw->cold_ms,
                      .min_ms = t->min_ms + bw->min_ms,
                      .median_ms = t->median_ms + bw->median_ms,
                      .gflops = NAN,
                      .gbs = NAN,
                      .vs_conv = NAN,
                      .workspace = NAN};
            snprintf(st.shape, sizeof st.shape, "%s", s->text);
            snprintf(st.note, sizeof st.note,
                     "layer-train + layer-backward; conv step %.3f ms",
                     all[S_CONV].median_ms + all[S_CBACK].median_ms);
            all[S_LSTEP] = st;
            have[S_LSTEP] = true;
        }
        /* ndcl's products over the host BLAS's own, in the gemm row. */
        if (have[S_GEMM] && have[S_GEMM_HOST] && all[S_GEMM].median_ms > 0) {
            row *g = &all[S_GEMM];
            size_t len = strlen(g->note);
            snprintf(g->note + len, sizeof g->note - len, "; %.2fx host BLAS",
                     all[S_GEMM_HOST].median_ms / g->median_ms);
        }
        for (int k = 0; k <= S_COUNT; k++) {
            if (!have[k]) continue;
            row *r = &all[k];
            if (is_layer_row((suite_id)k)) {
                suite_id ref = reference_of((suite_id)k);
                double den = ref == S_COUNT ? all[S_CONV].median_ms + all[S_CBACK].median_ms
                                            : all[ref].median_ms;
                if (den > 0) r->vs_conv = r->median_ms / den;
            }
            if (!row_push(rows, r)) {
                snprintf(error_msg, sizeof error_msg, "out of host memory");
                ok = false;
                break;
            }
        }
    }
    for (int i = 0; i < nb; i++) {
        bench_teardown(&benches[i]);
        free(benches[i].times);
    }
    return ok;
}

/* ------------------------------------------------------------ main */

/* The value of "--opt VALUE" or "--opt=VALUE"; NULL when missing. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n)) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != '\0') return NULL;
    if (*i + 1 >= argc) return "";
    return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return !strncmp(a, name, n) && (a[n] == '\0' || a[n] == '=');
}

static bool parse_count(const char *v, int min, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < min || x > 1000000) return false;
    *out = (int)x;
    return true;
}

static bool parse_suites(const char *v, bool want[S_COUNT])
{
    memset(want, 0, S_COUNT * sizeof *want);
    const char *p = v;
    while (*p) {
        size_t len = strcspn(p, ",");
        bool found = false;
        if (len == 3 && !strncmp(p, "all", 3)) {
            for (int k = 0; k < S_COUNT; k++)
                want[k] = true;
            found = true;
        }
        for (int k = 0; k < S_COUNT && !found; k++)
            if (strlen(suite_names[k]) == len && !strncmp(p, suite_names[k], len))
                want[k] = found = true;
        if (!found) {
            fprintf(stderr, "%s: unknown suite \"%.*s\" (suites:", prog, (int)len, p);
            for (int k = 0; k < S_COUNT; k++)
                fprintf(stderr, " %s", suite_names[k]);
            fprintf(stderr, ", all)\n");
            return false;
        }
        p += len;
        if (*p == ',') p++;
    }
    for (int k = 0; k < S_COUNT; k++)
        if (want[k]) return true;
    fprintf(stderr, "%s: --suite lists no suite\n", prog);
    return false;
}

int main(int argc, char **argv)
{
    options o = {.runs = 10, .warmup = 2};
    for (int k = 0; k < S_COUNT; k++)
        o.want[k] = true;
    bool json = false, csv = false, suites_given = false;
    const char *spec = NULL;
    shape_list shapes = {0};
    int rc = EXIT_USAGE;
    char why[256];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(shapes.v);
            return EXIT_OK;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("ndcl-bench (ndcl) %s\n", ndcl_version_string());
            free(shapes.v);
            return EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--csv")) {
            csv = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = true;
        } else if (is_opt(a, "--shape")) {
            v = opt_value(argc, argv, &i, "--shape");
            shape s;
            if (!*v) {
                fprintf(stderr,
                        "%s: --shape needs N,C,H,W,Cout,k[,stride,padding,groups,"
                        "block,ss]\n",
                        prog);
                goto out;
            }
            if (!parse_shape(v, &s, why, sizeof why)) {
                fprintf(stderr, "%s: bad shape \"%s\": %s\n", prog, v, why);
                goto out;
            }
            if (!shape_push(&shapes, &s)) goto oom;
        } else if (is_opt(a, "--gemm")) {
            v = opt_value(argc, argv, &i, "--gemm");
            shape s;
            if (!parse_gemm(v, &s, why, sizeof why)) {
                fprintf(stderr, "%s: bad GEMM size \"%s\": %s\n", prog, v, why);
                goto out;
            }
            if (!shape_push(&shapes, &s)) goto oom;
        } else if (is_opt(a, "--preset")) {
            v = opt_value(argc, argv, &i, "--preset");
            if (!add_preset(&shapes, v)) {
                fprintf(stderr,
                        "%s: unknown preset \"%s\" (presets: cifar-resnet18, small)\n",
                        prog, v);
                goto out;
            }
        } else if (is_opt(a, "--suite")) {
            v = opt_value(argc, argv, &i, "--suite");
            if (!parse_suites(v, o.want)) goto out;
            suites_given = true;
        } else if (is_opt(a, "--runs")) {
            v = opt_value(argc, argv, &i, "--runs");
            if (!parse_count(v, 1, &o.runs)) {
                fprintf(stderr, "%s: --runs \"%s\": expected an integer >= 1\n", prog, v);
                goto out;
            }
        } else if (is_opt(a, "--warmup")) {
            v = opt_value(argc, argv, &i, "--warmup");
            if (!parse_count(v, 0, &o.warmup)) {
                fprintf(stderr, "%s: --warmup \"%s\": expected an integer >= 0\n", prog, v);
                goto out;
            }
        } else if (is_opt(a, "--device") || !strcmp(a, "-d")) {
            v = !strcmp(a, "-d") ? (i + 1 < argc ? argv[++i] : "")
                                 : opt_value(argc, argv, &i, "--device");
            if (!*v) {
                fprintf(stderr, "%s: --device needs a device spec (\"P:D\" or a name)\n",
                        prog);
                goto out;
            }
            spec = v;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\" (see --help)\n", prog, a);
            goto out;
        }
    }
    if (json && csv) {
        fprintf(stderr, "%s: --json and --csv do not combine\n", prog);
        goto out;
    }
    if (shapes.n == 0 && !add_preset(&shapes, "small")) goto oom;
    /* The host BLAS's own rate goes with every gemm row it can. */
    if (!host_gemm_available()) {
        if (suites_given && o.want[S_GEMM_HOST]) {
            fprintf(stderr,
                    "%s: gemm-host needs a build with the host BLAS engine "
                    "(meson -Dhost_blas=enabled)\n",
                    prog);
            goto out;
        }
        o.want[S_GEMM_HOST] = false;
    }

    rc = EXIT_FAILED;
    progress_tty = isatty(2);
    ndcl_context_options co = ndcl_context_options_default();
    co.spec = spec;
    ndcl_context *ctx = NULL;
    ndcl_status cs = ndcl_context_create(&co, &ctx);
    if (cs != NDCL_SUCCESS) {
        if (spec)
            fprintf(stderr, "%s: --device \"%s\": %s\n", prog, spec,
                    ndcl_context_last_error(NULL));
        else
            fprintf(stderr, "%s: no usable OpenCL device: %s\n", prog,
                    ndcl_context_last_error(NULL));
        rc = tool_device_exit(cs, spec != NULL);
        goto out;
    }
    ndcl_device_info dev;
    if (ndcl_context_device(ctx, &dev) != NDCL_SUCCESS) {
        fprintf(stderr, "%s: %s\n", prog, ndcl_context_last_error(ctx));
        ndcl_context_destroy(ctx);
        goto out;
    }
    /* The host BLAS's own rate goes with the gemm rows of the host engine.
     * Beside another engine only on request, and then with a pause after
     * each of its calls: OpenBLAS's idle workers spin for about 0.1 s after
     * a product and would slow the device's kernels timed next. */
    host_engine = !strcmp(ndcl_context_blas_engine(ctx), "openblas");
    if (host_engine && o.want[S_GEMM]) o.want[S_GEMM_HOST] = true;

    step_total = 0;
    for (size_t i = 0; i < shapes.n; i++)
        for (int k = 0; k < S_COUNT; k++)
            if (o.want[k] && (!shapes.v[i].gemm_only || is_gemm_row((suite_id)k)))
                step_total++;

    row_list rows = {0};
    bool ok = true;
    double t_start = now_ms();
    for (size_t i = 0; i < shapes.n && ok; i++)
        ok = run_shape(ctx, &shapes.v[i], &o, &rows);
    double total_s = (now_ms() - t_start) / 1e3;
    progress_done();
    if (!ok) fprintf(stderr, "%s: %s\n", prog, error_msg);

    if (ok) {
        ndcl_build_info bi;
        bool have_build = ndcl_context_build(ctx, &bi) == NDCL_SUCCESS;
        if (json) {
            ok = print_json(&rows, dev.name, ndcl_context_blas_engine(ctx),
                            ndcl_conv_budget(ctx));
        } else if (csv) {
            print_csv(&rows, dev.name);
        } else {
            printf("# ndcl-bench %s on %s (%s, driver %s), %u compute units\n",
                   ndcl_version_string(), dev.name, dev.platform_name, dev.driver_version,
                   dev.compute_units);
            char host[256];
            host_gemm_describe(host, sizeof host);
            printf("# BLAS engine: %s%s%s\n", ndcl_context_blas_engine(ctx),
                   host[0] ? "; host BLAS: " : "", host);
            if (dev.type == NDCL_DEVICE_CPU)
                printf("# convolution chunks: workspace budget %.1f MiB (half the %.1f MiB "
                       "global memory cache %s, within [%zu, %zu] MiB)\n",
                       ndcl_conv_budget(ctx) / 1048576.0,
                       dev.global_mem_cache_bytes / 1048576.0,
                       getenv("NDCL_DEVICE_CACHE_BYTES") ? "set by NDCL_DEVICE_CACHE_BYTES"
                                                         : "the device reports",
                       NDCL_CONV_CPU_BUDGET_MIN >> 20, NDCL_CONV_CPU_BUDGET_MAX >> 20);
            else
                printf("# convolution chunks: workspace budget %.1f MiB (fixed off CPU "
                       "devices)\n",
                       ndcl_conv_budget(ctx) / 1048576.0);
            printf("# timer: CLOCK_MONOTONIC wall clock around enqueue + ndcl_finish "
                   "(clFinish); %d warmup, %d timed runs, interleaved per shape\n",
                   o.warmup, o.runs);
            if (have_build)
                printf("# ndcl kernels: %s in %.0f ms; cold = first call, with the kernel "
                       "builds it triggers\n",
                       bi.from_cache ? "loaded from the binary cache" : "built",
                       bi.build_ms);
            printf("# GFLOPS: useful flops / median; GB/s: bytes moved / median; vs conv: "
                   "median / plain conv counterpart's; ws MB: workspace (see --help); "
                   "%.1f s in all\n",
                   total_s);
            print_table(&rows);
        }
        if (!ok) fprintf(stderr, "%s: out of memory\n", prog);
    }
    free(rows.v);
    ndcl_context_destroy(ctx);
    /* A --shape whose geometry the library refuses (an extent past the
     * kernels' int indexing, a block that does not divide) is a bad
     * argument, as it would be in ndcl-run. */
    rc = ok ? EXIT_OK
         : error_status == NDCL_ERR_INVALID_ARG || error_status == NDCL_ERR_UNSUPPORTED
             ? EXIT_USAGE
             : EXIT_FAILED;
    goto out;
oom:
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = EXIT_FAILED;
out:
    free(shapes.v);
    return rc;
}
