/* test_run.c - ndcl-run as a user runs it: every golden case of tests/data
 * end to end (outputs, chained saved states, gradients) and the error paths.
 * The tool's path comes in NDCL_RUN, the golden data's in NDCL_TEST_DATA. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "toolrun.h"

#include "ndcl.h"

/* Agreement with the PyTorch data, relative to the reference's largest
 * magnitude: forward outputs and states as the layer suite asks, gradients
 * looser (they go through every Newton-Schulz iterate). */
#define TOL_FWD 1e-4
#define TOL_GRAD 1e-3

#define MAX_CASES 64
static char cases[MAX_CASES][64];
static int n_cases;
static const char *data_dir;
static char tmp_root[] = "/tmp/ndcl-run-test-XXXXXX";

/* ------------------------------------------------------------ running */

/* Runs "$NDCL_RUN ARGS" (ARGS printf-formatted, paths single-quoted by
 * the caller). */
static run_result run_tool(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tool_run("NDCL_RUN", NULL, args);
}

/* Runs the tool and requires success. */
static void run_ok(const char *what, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    run_result r = run_tool("%s", args);
    ck_assert_msg(r.status == 0, "%s: ndcl-run %s\nexit %d, stderr: %s", what, args,
                  r.status, r.err);
    run_free(&r);
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------ comparing */

/* max |a - b| / max |b| (absolute when b is all zeros); NaN is the worst. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double scale = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs((double)b[i]));
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= err)) err = e;
    }
    if (isnan(err)) return INFINITY;
    return scale > 0 ? err / scale : err;
}

static size_t count_of(int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

static void expect_same_shape(const char *what, int nd_a, const size_t *a, int nd_b,
                              const size_t *b)
{
    bool same = nd_a == nd_b;
    for (int d = 0; same && d < nd_a; d++)
        same = a[d] == b[d];
    ck_assert_msg(same,
                  "%s: shape mismatch (%d dims [%zu, %zu, ...] vs %d dims [%zu, %zu, ...])",
                  what, nd_a, nd_a > 0 ? a[0] : 0, nd_a > 1 ? a[1] : 0, nd_b,
                  nd_b > 0 ? b[0] : 0, nd_b > 1 ? b[1] : 0);
}

/* The .npy the tool wrote against the golden one; returns the error. */
static double expect_npy(const char *what, const char *got, const char *ref, double tol)
{
    float *a = NULL, *b = NULL;
    int na, nb;
    size_t sa[NDCL_MAX_DIMS], sb[NDCL_MAX_DIMS];
    ck_assert_msg(ndcl_npy_read(got, &a, &na, sa) == NDCL_SUCCESS, "%s: %s", what,
                  ndcl_context_last_error(NULL));
    ck_assert_msg(ndcl_npy_read(ref, &b, &nb, sb) == NDCL_SUCCESS, "%s: %s", what,
                  ndcl_context_last_error(NULL));
    expect_same_shape(what, na, sa, nb, sb);
    double e = rel_err(a, b, count_of(na, sa));
    ck_assert_msg(e <= tol, "%s: relative error %.3g > %.1g", what, e, tol);
    ndcl_free(a);
    ndcl_free(b);
    return e;
}

/* Reads one tensor; false when the file has no tensor of that name (any
 * other failure fails the test). */
static bool read_tensor(const char *path, const char *name, float **data, int *ndim,
                        size_t *shape)
{
    ndcl_status s = ndcl_safetensors_read_float(path, name, data, ndim, shape);
    if (s == NDCL_SUCCESS) return true;
    const char *e = ndcl_context_last_error(NULL);
    ck_assert_msg(s == NDCL_ERR_FORMAT && strstr(e, "no tensor"), "%s: %s", path, e);
    return false;
}

/* Every tensor a layer or gradient file can hold: those of the golden file
 * must be in the written one, match it, and nothing else may be there. */
static const char *const tensor_names[] = {
    "weight",        "bias",          "running_mean", "running_deconv",      "counter",
    "running_mean1", "running_mean2", "running_var",  "num_batches_tracked",
};

static bool is_counter(const char *name)
{
    return !strcmp(name, "counter") || !strcmp(name, "num_batches_tracked");
}

static double expect_tensors(const char *what, const char *got, const char *ref, double tol)
{
    double worst = 0;
    int found = 0;
    for (size_t i = 0; i < sizeof tensor_names / sizeof *tensor_names; i++) {
        const char *name = tensor_names[i];
        float *a = NULL, *b = NULL;
        int na = 0, nb = 0;
        size_t sa[NDCL_MAX_DIMS], sb[NDCL_MAX_DIMS];
        bool in_ref = read_tensor(ref, name, &b, &nb, sb);
        bool in_got = read_tensor(got, name, &a, &na, sa);
        ck_assert_msg(in_ref == in_got,
                      "%s: \"%s\" is %s the written file but %s the golden one", what, name,
                      in_got ? "in" : "not in", in_ref ? "in" : "not in");
        if (in_ref) {
            char w[256];
            snprintf(w, sizeof w, "%s: %s", what, name);
            expect_same_shape(w, na, sa, nb, sb);
            size_t n = count_of(na, sa);
            if (is_counter(name)) {
                ck_assert_msg(n == 1 && a[0] == b[0], "%s = %g, the golden file has %g", w,
                              (double)a[0], (double)b[0]);
            } else {
                double e = rel_err(a, b, n);
                ck_assert_msg(e <= tol, "%s: relative error %.3g > %.1g", w, e, tol);
                if (e > worst) worst = e;
            }
            found++;
        }
        ndcl_free(a);
        ndcl_free(b);
    }
    ck_assert_msg(found > 0, "%s: the golden file %s holds none of the known tensors", what,
                  ref);
    return worst;
}

/* ------------------------------------------------------------ fixtures */

/* A fresh directory for one test, under the suite's temporary root. */
static void work_dir(char *buf, size_t size, const char *test, const char *name)
{
    snprintf(buf, size, "%s/%s-%s", tmp_root, test, name);
    ck_assert_msg(mkdir(buf, 0700) == 0 || exists(buf), "mkdir %s", buf);
}

static void case_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", data_dir, name);
}

/* ------------------------------------------------------------ golden runs */

/* train on x1 from the initial layer, train on x2 from the state that run
 * saved, eval on x2 from the golden state_train2 (and, for conv_freeze, the
 * frozen third step from the second run's state): outputs and saved states
 * against PyTorch's. */
START_TEST(golden_forward)
{
    const char *name = cases[_i];
    char d[1024], t[1024], g[1200], w[1200];
    case_dir(d, sizeof d, name);
    work_dir(t, sizeof t, "fwd", name);
    double ey = 0, es = 0, e;

    run_ok(name,
           "'%s/layer.safetensors' --input '%s/x1.npy' --mode train "
           "--output '%s/y1.npy' --save-state '%s/s1.safetensors'",
           d, d, t, t);
    snprintf(w, sizeof w, "%s/y1.npy", t);
    snprintf(g, sizeof g, "%s/y_train1.npy", d);
    ey = fmax(ey, expect_npy("train1 output", w, g, TOL_FWD));
    snprintf(w, sizeof w, "%s/s1.safetensors", t);
    snprintf(g, sizeof g, "%s/state_train1.safetensors", d);
    es = fmax(es, expect_tensors("train1 state", w, g, TOL_FWD));

    run_ok(name,
           "'%s/s1.safetensors' --input '%s/x2.npy' --mode train "
           "--output '%s/y2.npy' --save-state '%s/s2.safetensors'",
           t, d, t, t);
    snprintf(w, sizeof w, "%s/y2.npy", t);
    snprintf(g, sizeof g, "%s/y_train2.npy", d);
    ey = fmax(ey, expect_npy("train2 output", w, g, TOL_FWD));
    snprintf(w, sizeof w, "%s/s2.safetensors", t);
    snprintf(g, sizeof g, "%s/state_train2.safetensors", d);
    es = fmax(es, expect_tensors("train2 state", w, g, TOL_FWD));

    /* Eval changes no state: the state it saves is the one it loaded. */
    run_ok(name,
           "'%s/state_train2.safetensors' --input '%s/x2.npy' --mode eval "
           "--output '%s/ye.npy' --save-state '%s/se.safetensors'",
           d, d, t, t);
    snprintf(w, sizeof w, "%s/ye.npy", t);
    snprintf(g, sizeof g, "%s/y_eval.npy", d);
    ey = fmax(ey, expect_npy("eval output", w, g, TOL_FWD));
    snprintf(w, sizeof w, "%s/se.safetensors", t);
    snprintf(g, sizeof g, "%s/state_train2.safetensors", d);
    e = expect_tensors("eval state", w, g, 0);
    ck_assert_msg(e == 0, "eval changed the state (relative change %g)", e);

    snprintf(g, sizeof g, "%s/x3.npy", d);
    if (exists(g)) {
        run_ok(name,
               "'%s/s2.safetensors' --input '%s/x3.npy' --mode train "
               "--output '%s/y3.npy' --save-state '%s/s3.safetensors'",
               t, d, t, t);
        snprintf(w, sizeof w, "%s/y3.npy", t);
        snprintf(g, sizeof g, "%s/y_train3.npy", d);
        ey = fmax(ey, expect_npy("train3 (frozen) output", w, g, TOL_FWD));
        snprintf(w, sizeof w, "%s/s3.safetensors", t);
        snprintf(g, sizeof g, "%s/state_train3.safetensors", d);
        es = fmax(es, expect_tensors("train3 (frozen) state", w, g, TOL_FWD));
    }
    printf("forward %-14s max rel. error: outputs %.2e, states %.2e\n", name, ey, es);
}
END_TEST

/* The gradients of the first training step and of the evaluation step;
 * the evaluation step asks for dX and the parameters in separate runs, as
 * each may be given alone. */
START_TEST(golden_gradients)
{
    const char *name = cases[_i];
    char d[1024], t[1024], g[1200], w[1200];
    case_dir(d, sizeof d, name);
    work_dir(t, sizeof t, "grad", name);
    double ex = 0, ep = 0;

    run_ok(name,
           "'%s/layer.safetensors' --input '%s/x1.npy' --mode train "
           "--grad-output '%s/dy1.npy' --grad-input '%s/dx1.npy' "
           "--grad-params '%s/g1.safetensors'",
           d, d, d, t, t);
    snprintf(w, sizeof w, "%s/dx1.npy", t);
    snprintf(g, sizeof g, "%s/dx1.npy", d);
    ex = fmax(ex, expect_npy("train1 dx", w, g, TOL_GRAD));
    snprintf(w, sizeof w, "%s/g1.safetensors", t);
    snprintf(g, sizeof g, "%s/grads1.safetensors", d);
    bool has_params = exists(g);
    if (has_params) {
        ep = fmax(ep, expect_tensors("train1 parameter gradients", w, g, TOL_GRAD));
    } else {
        /* A channel layer: the documented empty gradient file. */
        float *p = NULL;
        int nd;
        size_t sh[NDCL_MAX_DIMS];
        ck_assert_msg(exists(w), "no --grad-params file written for a channel layer");
        ck_assert(!read_tensor(w, "weight", &p, &nd, sh));
        ck_assert(!read_tensor(w, "bias", &p, &nd, sh));
    }

    run_ok(name,
           "'%s/state_train2.safetensors' --input '%s/x2.npy' --mode eval "
           "--grad-output '%s/dy_eval.npy' --grad-input '%s/dx_eval.npy'",
           d, d, d, t);
    snprintf(w, sizeof w, "%s/dx_eval.npy", t);
    snprintf(g, sizeof g, "%s/dx_eval.npy", d);
    ex = fmax(ex, expect_npy("eval dx", w, g, TOL_GRAD));

    if (has_params) {
        run_ok(name,
               "'%s/state_train2.safetensors' --input '%s/x2.npy' --mode eval "
               "--grad-output '%s/dy_eval.npy' --grad-params '%s/g_eval.safetensors'",
               d, d, d, t);
        snprintf(w, sizeof w, "%s/g_eval.safetensors", t);
        snprintf(g, sizeof g, "%s/grads_eval.safetensors", d);
        ep = fmax(ep, expect_tensors("eval parameter gradients", w, g, TOL_GRAD));
    }
    printf("gradients %-14s max rel. error: dx %.2e, parameters %.2e\n", name, ex, ep);
}
END_TEST

/* --mode left out is eval. */
START_TEST(default_mode_is_eval)
{
    char d[1024], t[1024], g[1200], w[1200];
    case_dir(d, sizeof d, "conv_g1");
    work_dir(t, sizeof t, "default", "mode");
    run_ok("default mode", "'%s/state_train2.safetensors' -i '%s/x2.npy' -o '%s/y.npy'", d,
           d, t);
    snprintf(w, sizeof w, "%s/y.npy", t);
    snprintf(g, sizeof g, "%s/y_eval.npy", d);
    expect_npy("default-mode output", w, g, TOL_FWD);
    /* The "--name=value" form too. */
    run_ok("--opt=value",
           "'%s/state_train2.safetensors' --input='%s/x2.npy' --mode=eval "
           "--output='%s/y2.npy'",
           d, d, t);
    snprintf(w, sizeof w, "%s/y2.npy", t);
    expect_npy("--opt=value output", w, g, TOL_FWD);
}
END_TEST

/* ------------------------------------------------------------ errors */

/* A failed run: the exit status, nothing on stdout, and a one-line message
 * on stderr that holds every one of the given words (file names, ...). */
static void expect_failure(const run_result *r, int status, const char *what, ...)
{
    ck_assert_msg(r->status == status, "%s: exit %d (expected %d), stderr: %s", what,
                  r->status, status, r->err);
    ck_assert_msg(r->out[0] == '\0', "%s: stdout not empty: %s", what, r->out);
    size_t n = strlen(r->err);
    ck_assert_msg(n > 0 && strchr(r->err, '\n') == r->err + n - 1,
                  "%s: stderr is not one line: \"%s\"", what, r->err);
    va_list ap;
    va_start(ap, what);
    const char *word;
    while ((word = va_arg(ap, const char *)) != NULL)
        ck_assert_msg(strstr(r->err, word), "%s: stderr does not mention \"%s\": %s", what,
                      word, r->err);
    va_end(ap);
}

START_TEST(help)
{
    run_result r = run_tool("--help");
    ck_assert_int_eq(r.status, 0);
    static const char *const words[] = {
        "--input",        "--output",      "--mode",     "train",
        "eval",           "--save-state",  "--device",   "--grad-output",
        "--grad-input",   "--grad-params", "channel",    "NDCL_DEVICE",
        "NDCL_CACHE_DIR", "NDCL_CACHE",    "NDCL_DEBUG", "Exit status",
    };
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        ck_assert_msg(strstr(r.out, words[i]), "--help does not mention %s", words[i]);
    /* The exporter that writes layer files, by its installed name. */
    ck_assert_ptr_nonnull(strstr(r.out, "ndcl-export-pytorch"));
    ck_assert_str_eq(r.err, "");
    run_free(&r);

    r = run_tool("--version");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, ndcl_version_string()));
    run_free(&r);
}
END_TEST

START_TEST(usage_errors)
{
    char d[1024];
    case_dir(d, sizeof d, "conv_g1");

    run_result r = run_tool("");
    expect_failure(&r, 2, "no arguments", "layer", NULL);
    run_free(&r);

    r = run_tool("--input '%s/x1.npy' --mode train", d);
    expect_failure(&r, 2, "no layer", "layer", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --mode train", d);
    expect_failure(&r, 2, "no input", "--input", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --mode bogus", d, d);
    expect_failure(&r, 2, "--mode bogus", "bogus", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --mode", d, d);
    expect_failure(&r, 2, "--mode without value", "--mode", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --no-such-option", d, d);
    expect_failure(&r, 2, "unknown option", "--no-such-option", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' '%s/layer.safetensors' --input '%s/x1.npy'", d, d,
                 d);
    expect_failure(&r, 2, "two layers", "layer", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --grad-input /tmp/never.npy",
                 d, d);
    expect_failure(&r, 2, "--grad-input alone", "--grad-output", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --grad-params /tmp/never.st",
                 d, d);
    expect_failure(&r, 2, "--grad-params alone", "--grad-output", NULL);
    run_free(&r);

    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --grad-output '%s/dy1.npy'", d,
                 d, d);
    expect_failure(&r, 2, "--grad-output alone", "--grad-input", NULL);
    run_free(&r);
}
END_TEST

/* Copies the first size bytes (all of them when size is 0) of src to dst. */
static void copy_prefix(const char *src, const char *dst, long size)
{
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    ck_assert(f && g);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size > 0 && size < n) n = size;
    char *buf = malloc((size_t)n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    ck_assert_int_eq(fwrite(buf, 1, (size_t)n, g), (size_t)n);
    free(buf);
    fclose(f);
    fclose(g);
}

static long file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (long)st.st_size;
}

START_TEST(file_errors)
{
    char d[1024], lin[1024], t[1024], p[1200], q[1200], y[1200];
    case_dir(d, sizeof d, "conv_g1");
    case_dir(lin, sizeof lin, "linear");
    work_dir(t, sizeof t, "errors", "files");
    snprintf(y, sizeof y, "%s/y.npy", t);

    snprintf(p, sizeof p, "%s/no-such-layer.safetensors", t);
    run_result r = run_tool("'%s' --input '%s/x1.npy' --output '%s'", p, d, y);
    expect_failure(&r, 2, "missing layer file", p, NULL);
    run_free(&r);

    snprintf(p, sizeof p, "%s/no-such-input.npy", t);
    r = run_tool("'%s/layer.safetensors' --input '%s' --output '%s'", d, p, y);
    expect_failure(&r, 2, "missing input", p, NULL);
    run_free(&r);

    /* Cut in the data, then in the header. */
    snprintf(q, sizeof q, "%s/x1.npy", d);
    snprintf(p, sizeof p, "%s/truncated.npy", t);
    copy_prefix(q, p, file_size(q) - 10);
    r = run_tool("'%s/layer.safetensors' --input '%s' --output '%s'", d, p, y);
    expect_failure(&r, 2, "truncated data", p, "truncated", NULL);
    run_free(&r);
    copy_prefix(q, p, 40);
    r = run_tool("'%s/layer.safetensors' --input '%s' --output '%s'", d, p, y);
    expect_failure(&r, 2, "truncated header", p, "truncated", NULL);
    run_free(&r);

    /* A layer file that is not one, and a truncated one. */
    r = run_tool("'%s/x1.npy' --input '%s/x1.npy' --output '%s'", d, d, y);
    expect_failure(&r, 2, "a .npy as the layer", "x1.npy", NULL);
    run_free(&r);
    snprintf(q, sizeof q, "%s/layer.safetensors", d);
    snprintf(p, sizeof p, "%s/truncated.safetensors", t);
    copy_prefix(q, p, file_size(q) - 16);
    r = run_tool("'%s' --input '%s/x1.npy' --output '%s'", p, d, y);
    expect_failure(&r, 2, "truncated layer", p, NULL);
    run_free(&r);

    /* Inputs that do not fit a conv2d(8 -> 6) layer: 2-D, and 4 channels. */
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --mode train --output '%s'", d,
                 lin, y);
    expect_failure(&r, 2, "2-D input to a conv", "linear/x1.npy", NULL);
    run_free(&r);
    char s2d2[1024];
    case_dir(s2d2, sizeof s2d2, "conv_s2d2");
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --output '%s'", d, s2d2, y);
    expect_failure(&r, 2, "wrong channel count", "conv_s2d2/x1.npy", NULL);
    run_free(&r);

    /* A gradient of the wrong shape. */
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --mode train --output '%s' "
                 "--grad-output '%s/dy1.npy' --grad-input '%s/dx.npy'",
                 d, d, y, lin, t);
    expect_failure(&r, 2, "wrong dy shape", "linear/dy1.npy", NULL);
    run_free(&r);

    /* Outputs that cannot be written. */
    snprintf(p, sizeof p, "%s/no-such-dir/y.npy", t);
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --output '%s'", d, d, p);
    expect_failure(&r, 2, "unwritable output", p, NULL);
    run_free(&r);
    snprintf(p, sizeof p, "%s/no-such-dir/s.safetensors", t);
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --save-state '%s'", d, d, p);
    expect_failure(&r, 2, "unwritable state", p, NULL);
    run_free(&r);

    ck_assert_msg(!exists(y), "a failed run wrote %s", y);
}
END_TEST

/* A NaN in a training batch poisons the statistics: ndcl_finish reports
 * it, the run fails with status 1 and writes nothing. */
START_TEST(numerical_failure)
{
    char d[1024], t[1024], p[1200], q[1200], y[1200], s[1200];
    case_dir(d, sizeof d, "conv_g1");
    work_dir(t, sizeof t, "errors", "nan");
    float *x = NULL;
    int nd;
    size_t sh[NDCL_MAX_DIMS];
    snprintf(q, sizeof q, "%s/x1.npy", d);
    ck_assert(ndcl_npy_read(q, &x, &nd, sh) == NDCL_SUCCESS);
    x[5] = NAN;
    snprintf(p, sizeof p, "%s/x_nan.npy", t);
    ck_assert(ndcl_npy_write(p, x, nd, sh) == NDCL_SUCCESS);
    ndcl_free(x);
    snprintf(y, sizeof y, "%s/y.npy", t);
    snprintf(s, sizeof s, "%s/s.safetensors", t);
    run_result r =
        run_tool("'%s/layer.safetensors' --input '%s' --mode train --output '%s' "
                 "--save-state '%s'",
                 d, p, y, s);
    expect_failure(&r, 1, "NaN in training", "NaN", NULL);
    run_free(&r);
    ck_assert_msg(!exists(y) && !exists(s), "a failed training step wrote its outputs");
}
END_TEST

START_TEST(device_errors)
{
    char d[1024];
    case_dir(d, sizeof d, "conv_g1");
    /* A spec that selects nothing is a bad argument... */
    run_result r =
        run_tool("'%s/layer.safetensors' --input '%s/x1.npy' --device 99:99", d, d);
    expect_failure(&r, 2, "no such device", "99:99", NULL);
    run_free(&r);

    /* ...no OpenCL platform at all is the machine's failure. */
    char dir[] = "/tmp/ndcl-run-novendors-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *old = getenv("OCL_ICD_VENDORS");
    char *saved = old ? strdup(old) : NULL;
    setenv("OCL_ICD_VENDORS", dir, 1);
    r = run_tool("'%s/layer.safetensors' --input '%s/x1.npy'", d, d);
    if (saved)
        setenv("OCL_ICD_VENDORS", saved, 1);
    else
        unsetenv("OCL_ICD_VENDORS");
    free(saved);
    rmdir(dir);
    expect_failure(&r, 1, "no platform", "no OpenCL platform", NULL);
    run_free(&r);
}
END_TEST

/* ------------------------------------------------------------ main */

static int by_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Every directory of the data directory that holds a layer.safetensors. */
static void find_cases(void)
{
    DIR *dir = opendir(data_dir);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && n_cases < MAX_CASES) {
        char p[2048];
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof cases[0]) continue;
        snprintf(p, sizeof p, "%s/%s/layer.safetensors", data_dir, e->d_name);
        if (exists(p)) snprintf(cases[n_cases++], sizeof cases[0], "%s", e->d_name);
    }
    closedir(dir);
    qsort(cases, (size_t)n_cases, sizeof cases[0], by_name);
}

static void remove_tree(const char *path)
{
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            remove_tree(p);
        }
        closedir(dir);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(void)
{
    data_dir = getenv("NDCL_TEST_DATA");
    if (!data_dir || !*data_dir) {
        fprintf(stderr, "NDCL_TEST_DATA (the golden data directory) is not set\n");
        return EXIT_FAILURE;
    }
    find_cases();
    if (n_cases == 0) {
        fprintf(stderr, "no case directory (with layer.safetensors) in %s\n", data_dir);
        return EXIT_FAILURE;
    }
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }

    Suite *s = suite_create("run");
    TCase *fwd = tcase_create("forward");
    tcase_set_timeout(fwd, 300);
    tcase_add_loop_test(fwd, golden_forward, 0, n_cases);
    tcase_add_test(fwd, default_mode_is_eval);
    suite_add_tcase(s, fwd);
    TCase *grad = tcase_create("gradients");
    tcase_set_timeout(grad, 300);
    tcase_add_loop_test(grad, golden_gradients, 0, n_cases);
    suite_add_tcase(s, grad);
    TCase *err = tcase_create("errors");
    tcase_set_timeout(err, 300);
    tcase_add_test(err, help);
    tcase_add_test(err, usage_errors);
    tcase_add_test(err, file_errors);
    tcase_add_test(err, numerical_failure);
    tcase_add_test(err, device_errors);
    suite_add_tcase(s, err);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(tmp_root);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
