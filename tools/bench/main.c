/* main.c - ndcl-bench's command line: options and --help, every wanted
 * suite of suites.c timed on each shape, interleaved, and the rows printed
 * by output.c. Kernel and layer benchmarks on one OpenCL device: what a
 * deconvolved layer costs next to the plain convolution it ends with. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exit_codes.h"
#include "host_gemm.h"
#include "ndcl.h"
#include "output.h"
#include "shapes.h"
#include "suites.h"

enum {
    EXIT_OK = TOOL_EXIT_OK,
    EXIT_FAILED = TOOL_EXIT_DEVICE,
    EXIT_USAGE = TOOL_EXIT_USAGE
};

static const char *prog = "ndcl-bench";

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
        "Suites (--suite a,b,...; default: all):\n",
        prog, prog);
    suites_help(f);
    fprintf(f,
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
            "\n");
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
           "Environment: NDCL_DEVICE (default device), NDCL_BLAS=clblast|openblas (the\n"
           "products' engine; NDCL_CPU_BLAS=0 is its older name for clblast),\n"
           "NDCL_CACHE_DIR and NDCL_CACHE (kernel binary cache), NDCL_DEBUG (library\n"
           "trace on stderr).\n"
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

/* ------------------------------------------------------------ helpers */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
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
        if (o->want[k] && suite_applies((suite_id)k, s)) want[k] = shown[k] = true;
    /* The rows' references are measured even when not listed (a reference
     * comes before the rows that refer to it, and may have its own). */
    const bool step = want[S_LTRAIN] && want[S_LBACK];
    for (int k = S_COUNT - 1; k >= 0; k--)
        if (want[k] && suites[k].reference != REF_NONE) want[suites[k].reference] = true;
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
                 suite_name(b->suite), s->text);
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
            const suite *su = &suites[b->suite];
            if (su->decided) su->decided(b);
            double mn = b->times[0];
            for (int r = 1; r < o->runs; r++)
                mn = fmin(mn, b->times[r]);
            double med = median(b->times, o->runs);
            row rr = {.suite = su->name,
                      .has_vs_conv = su->reference != REF_NONE,
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
            if (su->workspace) rr.workspace = su->workspace(b);
            all[b->suite] = rr;
            have[b->suite] = b->shown;
        }
        if (step) {
            /* The training step next to the plain conv's step. */
            const row *t = &all[S_LTRAIN], *bw = &all[S_LBACK];
            row st = {.suite = suite_name(S_LSTEP),
                      .has_vs_conv = true,
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
            const int ref = k == S_LSTEP ? REF_CONV_STEP : suites[k].reference;
            if (ref != REF_NONE) {
                double den = ref == REF_CONV_STEP
                                 ? all[S_CONV].median_ms + all[S_CBACK].median_ms
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
            if (strlen(suites[k].name) == len && !strncmp(p, suites[k].name, len))
                want[k] = found = true;
        if (!found) {
            fprintf(stderr, "%s: unknown suite \"%.*s\" (suites:", prog, (int)len, p);
            for (int k = 0; k < S_COUNT; k++)
                fprintf(stderr, " %s", suites[k].name);
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
                    "%s: gemm-host needs a build with the OpenBLAS engine "
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
    /* The host BLAS's own rate goes with the gemm rows of the OpenBLAS engine.
     * Beside another engine only on request, and then with a pause after
     * each of its calls: OpenBLAS's idle workers spin for about 0.1 s after
     * a product and would slow the device's kernels timed next. */
    host_engine = !strcmp(ndcl_context_blas_engine(ctx), "openblas");
    if (host_engine && o.want[S_GEMM]) o.want[S_GEMM_HOST] = true;

    step_total = 0;
    for (size_t i = 0; i < shapes.n; i++)
        for (int k = 0; k < S_COUNT; k++)
            if (o.want[k] && suite_applies((suite_id)k, &shapes.v[i])) step_total++;

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
