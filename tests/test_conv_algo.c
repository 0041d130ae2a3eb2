/* test_conv_algo.c - the table of convolution algorithms: every algorithm
 * built against the double-precision reference (3 input channels,
 * depthwise, groups, 1x1, stride 2, dilation, Winograd's shapes), dx and dW
 * from different algorithms, the layer option and NDCL_CONV_ALGO, forcing
 * an algorithm that does not fit, the find-db remembered and rebuilt from
 * corrupt or foreign entries, and queue order around a host convolution. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conv/conv_algo.h"
#include "harness.h"
#include "layers/fastdeconv.h"
#include "ref.h"
#include "runtime/runtime.h"

typedef struct conv_case {
    const char *name;
    size_t n, c, h, w, cout, kh, kw, stride, pad, dil, groups;
} conv_case;

static const conv_case cases[] = {
    {"3 input channels", 4, 3, 12, 12, 16, 3, 3, 1, 1, 1, 1},
    {"depthwise", 3, 8, 10, 10, 8, 3, 3, 1, 1, 1, 8},
    {"groups 2 stride 2", 3, 8, 9, 9, 8, 3, 3, 2, 1, 1, 2},
    {"1x1", 3, 16, 8, 8, 32, 1, 1, 1, 0, 1, 1},
    {"1x1 stride 2", 3, 16, 8, 8, 32, 1, 1, 2, 0, 1, 1},
    {"3x3 stride 2", 2, 16, 9, 9, 16, 3, 3, 2, 1, 1, 1},
    {"dilation 2", 2, 4, 9, 7, 4, 3, 3, 1, 2, 2, 1},
    {"16 channels 12x12", 4, 16, 12, 12, 16, 3, 3, 1, 1, 1, 1},
    {"32 channels 8x8", 3, 32, 8, 8, 32, 3, 3, 1, 1, 1, 1},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static const ndcl_conv_algorithm algos[] = {NDCL_CONV_GEMM, NDCL_CONV_DNNL,
                                            NDCL_CONV_WINOGRAD};
#define N_ALGOS (sizeof algos / sizeof algos[0])

static ndcl_conv_geom geom_of(const conv_case *k)
{
    ndcl_conv_geom g = {.n = k->n,
                        .c = k->c,
                        .h = k->h,
                        .w = k->w,
                        .cout = k->cout,
                        .kh = k->kh,
                        .kw = k->kw,
                        .stride = k->stride,
                        .pad = k->pad,
                        .dil = k->dil,
                        .groups = k->groups};
    TEST_OK(test_ctx(), ndcl_conv_geom_init(test_ctx(), &g));
    return g;
}

/* Whether the algorithm is built, serves the device and fits g. */
static bool runs(ndcl_conv_algorithm id, const ndcl_conv_geom *g)
{
    const ndcl_conv_algo *a = ndcl_conv_algo_find(id);
    char why[256];
    return a && a->available(test_ctx()) && a->fits(test_ctx(), g, why, sizeof why);
}

/* Whether oneDNN is built and serves this device. */
static bool dnnl_here(void)
{
    const ndcl_conv_algo *a = ndcl_conv_algo_find(NDCL_CONV_DNNL);
    return a && a->available(test_ctx());
}

static float *random_floats(size_t n, unsigned seed)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    test_fill_uniform(v, n, seed, -1.0f, 1.0f);
    return v;
}

static double *to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static ndcl_tensor *vec(size_t n, const float *data)
{
    return test_tensor_from(test_ctx(), 1, (size_t[]){n}, data);
}

/* One case's inputs, the reference's outputs, and device buffers. */
typedef struct fixture {
    const conv_case *k;
    ndcl_conv_geom g;
    size_t nx, nw, ny;
    float *x, *w, *b, *dy;
    double *ry, *rdx, *rdw, *rdb;
    ndcl_tensor *tx, *tw, *tb, *tdy, *ty, *tdx, *tdw, *tdb;
} fixture;

static void fixture_init(fixture *f, const conv_case *k, unsigned seed)
{
    memset(f, 0, sizeof *f);
    f->k = k;
    f->g = geom_of(k);
    f->nx = k->n * k->c * k->h * k->w;
    f->nw = k->cout * (k->c / k->groups) * k->kh * k->kw;
    f->ny = k->n * k->cout * f->g.P;
    f->x = random_floats(f->nx, seed);
    f->w = random_floats(f->nw, seed + 1);
    f->b = random_floats(k->cout, seed + 2);
    f->dy = random_floats(f->ny, seed + 3);
    double *x = to_double(f->x, f->nx), *w = to_double(f->w, f->nw);
    double *b = to_double(f->b, k->cout), *dy = to_double(f->dy, f->ny);
    f->ry = malloc(f->ny * sizeof(double));
    f->rdx = malloc(f->nx * sizeof(double));
    f->rdw = malloc(f->nw * sizeof(double));
    f->rdb = malloc(k->cout * sizeof(double));
    ref_conv2d(x, k->n, k->c, k->h, k->w, w, k->cout, k->kh, k->kw, b, k->stride, k->pad,
               k->dil, k->groups, f->ry);
    ref_conv2d_backward(x, k->n, k->c, k->h, k->w, w, k->cout, k->kh, k->kw, k->stride,
                        k->pad, k->dil, k->groups, dy, f->rdx, f->rdw, f->rdb);
    free(x), free(w), free(b), free(dy);
    f->tx = vec(f->nx, f->x);
    f->tw = vec(f->nw, f->w);
    f->tb = vec(k->cout, f->b);
    f->tdy = vec(f->ny, f->dy);
    f->ty = vec(f->ny, NULL);
    f->tdx = vec(f->nx, NULL);
    f->tdw = vec(f->nw, NULL);
    f->tdb = vec(k->cout, NULL);
}

static void fixture_free(fixture *f)
{
    free(f->x), free(f->w), free(f->b), free(f->dy);
    free(f->ry), free(f->rdx), free(f->rdw), free(f->rdb);
    ndcl_tensor *t[] = {f->tx, f->tw, f->tb, f->tdy, f->ty, f->tdx, f->tdw, f->tdb};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ndcl_tensor_destroy(t[i]);
}

#define MEM(t) ndcl_tensor_cl_mem(t)

/* The largest of the four outputs' errors against the reference. */
static double errors(const fixture *f, double e[4])
{
    float *y = test_tensor_to_host(f->ty), *dx = test_tensor_to_host(f->tdx);
    float *dw = test_tensor_to_host(f->tdw), *db = test_tensor_to_host(f->tdb);
    e[0] = test_rel_err_f(y, f->ry, f->ny, 1e-6);
    e[1] = test_rel_err_f(dx, f->rdx, f->nx, 1e-6);
    e[2] = test_rel_err_f(dw, f->rdw, f->nw, 1e-6);
    e[3] = test_rel_err_f(db, f->rdb, f->k->cout, 1e-6);
    free(y), free(dx), free(dw), free(db);
    double m = 0;
    for (int i = 0; i < 4; i++)
        if (!(e[i] <= m)) m = e[i];
    return m;
}

/* The accuracy contract of ndcl.h: gemm and dnnl below 1e-4 relative to
 * the largest output, winograd below 1e-3 (here far inside both). */
static double tolerance(ndcl_conv_algorithm id)
{
    return id == NDCL_CONV_WINOGRAD ? 1e-4 : 1e-5;
}

/* Every algorithm that fits, forward and backward, against the reference. */
START_TEST(every_algorithm_matches_reference)
{
    ndcl_context *ctx = test_ctx();
    int ran[N_ALGOS] = {0};
    for (size_t c = 0; c < N_CASES; c++) {
        fixture f;
        fixture_init(&f, &cases[c], 300 + (unsigned)c);
        for (size_t a = 0; a < N_ALGOS; a++) {
            if (!runs(algos[a], &f.g)) continue;
            ndcl_scratch col = {0}, tmp = {0};
            ndcl_conv_ws ws = {.col = &col, .tmp = &tmp, .force = algos[a]};
            ndcl_tensor *t[] = {f.ty, f.tdx, f.tdw, f.tdb};
            for (size_t i = 0; i < 4; i++)
                TEST_OK(ctx, ndcl_tensor_fill(t[i], 1e30f)); /* every element written */
            TEST_OK(ctx, ndcl_conv_run_forward(ctx, &f.g, &ws, MEM(f.tx), MEM(f.tw),
                                               MEM(f.tb), MEM(f.ty)));
            TEST_OK(ctx,
                    ndcl_conv_run_backward(ctx, &f.g, &ws, MEM(f.tx), MEM(f.tw), MEM(f.tdy),
                                           MEM(f.tdx), MEM(f.tdw), MEM(f.tdb)));
            for (int p = 0; p < NDCL_CONV_PASSES; p++)
                ck_assert_int_eq(ws.pass[p]->id, algos[a]);
            double e[4], m = errors(&f, e);
            if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "%-20s %-8s y %.1e dx %.1e dW %.1e db %.1e\n",
                        cases[c].name, ndcl_conv_algorithm_name(algos[a]), e[0], e[1], e[2],
                        e[3]);
            ck_assert_msg(m < tolerance(algos[a]), "%s by %s: y %g dx %g dW %g db %g",
                          cases[c].name, ndcl_conv_algorithm_name(algos[a]), e[0], e[1],
                          e[2], e[3]);
            ndcl_conv_ws_release(ctx, &ws);
            ndcl_scratch_release(&col);
            ndcl_scratch_release(&tmp);
            ran[a]++;
        }
        fixture_free(&f);
    }
    ck_assert_int_eq(ran[0], (int)N_CASES);
    /* oneDNN's direct convolution takes every geometry of the library. */
    if (dnnl_here()) ck_assert_int_eq(ran[1], (int)N_CASES);
}
END_TEST

/* dx and dW from different algorithms, db from dW's; and each output
 * alone. */
START_TEST(mixed_passes)
{
    if (!dnnl_here()) return;
    ndcl_context *ctx = test_ctx();
    fixture f;
    fixture_init(&f, &cases[7], 400);
    const ndcl_conv_algo *gemm = ndcl_conv_algo_find(NDCL_CONV_GEMM),
                         *dnnl = ndcl_conv_algo_find(NDCL_CONV_DNNL);
    const ndcl_conv_algo *mixes[2][3] = {{gemm, dnnl, gemm}, {dnnl, gemm, dnnl}};
    unsetenv("NDCL_CONV_ALGO");
    for (int m = 0; m < 2; m++) {
        ndcl_scratch col = {0}, tmp = {0};
        ndcl_conv_ws ws = {.col = &col, .tmp = &tmp};
        /* The choice as auto would have left it. */
        ws.chosen = true;
        ws.geom = f.g;
        ws.chosen_force = NDCL_CONV_AUTO;
        memcpy(ws.pass, mixes[m], sizeof ws.pass);
        TEST_OK(ctx, ndcl_conv_run_forward(ctx, &f.g, &ws, MEM(f.tx), MEM(f.tw), MEM(f.tb),
                                           MEM(f.ty)));
        TEST_OK(ctx,
                ndcl_conv_run_backward(ctx, &f.g, &ws, MEM(f.tx), MEM(f.tw), MEM(f.tdy),
                                       MEM(f.tdx), MEM(f.tdw), MEM(f.tdb)));
        double e[4];
        ck_assert_msg(errors(&f, e) < 1e-5, "mix %d: y %g dx %g dW %g db %g", m, e[0], e[1],
                      e[2], e[3]);
        /* Each output alone. */
        TEST_OK(ctx, ndcl_tensor_fill(f.tdx, 7.0f));
        TEST_OK(ctx, ndcl_tensor_fill(f.tdw, 7.0f));
        TEST_OK(ctx, ndcl_conv_run_backward(ctx, &f.g, &ws, MEM(f.tx), MEM(f.tw),
                                            MEM(f.tdy), NULL, NULL, MEM(f.tdb)));
        TEST_OK(ctx, ndcl_conv_run_backward(ctx, &f.g, &ws, NULL, MEM(f.tw), MEM(f.tdy),
                                            MEM(f.tdx), NULL, NULL));
        float *dw = test_tensor_to_host(f.tdw);
        for (size_t i = 0; i < f.nw; i++)
            ck_assert_float_eq(dw[i], 7.0f);
        free(dw);
        errors(&f, e);
        ck_assert_msg(e[1] < 1e-5 && e[3] < 1e-5, "mix %d alone: dx %g db %g", m, e[1],
                      e[3]);
        ndcl_conv_ws_release(ctx, &ws);
        ndcl_scratch_release(&col);
        ndcl_scratch_release(&tmp);
    }
    fixture_free(&f);
}
END_TEST

static ndcl_layer *conv_layer(int c, int cout, int stride)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(c, cout, 3);
    d.padding = 1;
    d.stride = stride;
    d.block = 16;
    ndcl_layer *l;
    TEST_OK(test_ctx(), ndcl_conv2d_create(test_ctx(), &d, &l));
    size_t n = (size_t)cout * (size_t)c * 9;
    float *w = random_floats(n, 77);
    TEST_OK(test_ctx(), ndcl_layer_set_param(l, "weight", w, n));
    free(w);
    return l;
}

/* One training step of a layer: y and dx, dW, db on the host. */
static void layer_step(ndcl_layer *l, const ndcl_tensor *x, const ndcl_tensor *dy,
                       float *out[4])
{
    ndcl_context *ctx = test_ctx();
    ndcl_tensor *y = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    TEST_OK(ctx, ndcl_layer_backward(l, dy, &dx, &dw, &db));
    out[0] = test_tensor_to_host(y);
    out[1] = test_tensor_to_host(dx);
    out[2] = test_tensor_to_host(dw);
    out[3] = test_tensor_to_host(db);
    ndcl_tensor_destroy(y), ndcl_tensor_destroy(dx), ndcl_tensor_destroy(dw),
        ndcl_tensor_destroy(db);
}

/* The deconvolved layer by each algorithm (the option) gives gemm's
 * training step within the contract; the option reads back; NDCL_CONV_ALGO
 * forces when the option is auto and loses to it otherwise. */
START_TEST(layer_option)
{
    ndcl_context *ctx = test_ctx();
    const size_t xs[4] = {4, 16, 12, 12}, nx = 4 * 16 * 144;
    float *hx = random_floats(nx, 5), *hdy = random_floats(nx, 6);
    ndcl_tensor *x = test_tensor_from(ctx, 4, xs, hx),
                *dy = test_tensor_from(ctx, 4, xs, hdy);
    const size_t counts[4] = {nx, nx, 16 * 16 * 9, 16};
    float *ref[4];
    unsetenv("NDCL_CONV_ALGO");
    ndcl_layer *l = conv_layer(16, 16, 1);
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_GEMM));
    layer_step(l, x, dy, ref);
    ndcl_layer_destroy(l);
    ndcl_conv_geom g = {.n = 4,
                        .c = 16,
                        .h = 12,
                        .w = 12,
                        .cout = 16,
                        .kh = 3,
                        .kw = 3,
                        .stride = 1,
                        .pad = 1,
                        .dil = 1,
                        .groups = 1};
    TEST_OK(ctx, ndcl_conv_geom_init(ctx, &g));
    for (size_t a = 1; a < N_ALGOS; a++) {
        if (!runs(algos[a], &g)) continue;
        l = conv_layer(16, 16, 1);
        TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, algos[a]));
        int64_t v = -1;
        TEST_OK(ctx, ndcl_layer_get_option(l, NDCL_LAYER_CONV_ALGO, &v));
        ck_assert_int_eq(v, algos[a]);
        float *out[4];
        layer_step(l, x, dy, out);
        ck_assert_int_eq(ndcl_fd(l)->cws.pass[NDCL_CONV_FWD]->id, algos[a]);
        for (int i = 0; i < 4; i++) {
            double e = test_rel_err_ff(out[i], ref[i], counts[i], 1e-6);
            ck_assert_msg(e < 10 * tolerance(algos[a]), "layer by %s, output %d: %g",
                          ndcl_conv_algorithm_name(algos[a]), i, e);
            free(out[i]);
        }
        ndcl_layer_destroy(l);
    }
    /* NDCL_CONV_ALGO forces where the option is auto; the option wins. */
    l = conv_layer(16, 16, 1);
    setenv("NDCL_CONV_ALGO", "gemm", 1);
    ndcl_tensor *y = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
    ck_assert_int_eq(ndcl_fd(l)->cws.pass[NDCL_CONV_FWD]->id, NDCL_CONV_GEMM);
    if (dnnl_here()) {
        setenv("NDCL_CONV_ALGO", "dnnl", 1);
        TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
        ck_assert_int_eq(ndcl_fd(l)->cws.pass[NDCL_CONV_BWD_DATA]->id, NDCL_CONV_DNNL);
        TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_GEMM));
        TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
        ck_assert_int_eq(ndcl_fd(l)->cws.pass[NDCL_CONV_FWD]->id, NDCL_CONV_GEMM);
    }
    setenv("NDCL_CONV_ALGO", "fastest", 1);
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_AUTO));
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_EVAL, x, &y), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "NDCL_CONV_ALGO=fastest"));
    unsetenv("NDCL_CONV_ALGO");
    /* Bad values and kinds. */
    ck_assert_int_eq(ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, 99),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, -1),
                     NDCL_ERR_INVALID_ARG);
    ndcl_linear_desc ld = ndcl_linear_desc_default(4, 4);
    ndcl_layer *lin;
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &lin));
    ck_assert_int_eq(ndcl_layer_set_option(lin, NDCL_LAYER_CONV_ALGO, NDCL_CONV_GEMM),
                     NDCL_ERR_INVALID_ARG);
    ndcl_layer_destroy(lin);
    ndcl_tensor_destroy(y);
    ndcl_layer_destroy(l);
    for (int i = 0; i < 4; i++)
        free(ref[i]);
    ndcl_tensor_destroy(x), ndcl_tensor_destroy(dy);
    free(hx), free(hdy);
}
END_TEST

/* Forcing an algorithm that does not fit (or is not built, or does not
 * serve the device) fails the forward with a status naming both. */
START_TEST(forced_unfit_fails)
{
    ndcl_context *ctx = test_ctx();
    unsetenv("NDCL_CONV_ALGO");
    ndcl_layer *l = conv_layer(16, 16, 2);
    const size_t xs[4] = {2, 16, 9, 9};
    ndcl_tensor *x = test_tensor_from(ctx, 4, xs, NULL), *y = NULL;
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_WINOGRAD));
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_TRAIN, x, &y), NDCL_ERR_UNSUPPORTED);
    const char *e = ndcl_context_last_error(ctx);
    ck_assert_msg(strstr(e, "winograd") && strstr(e, "stride 2") &&
                      strstr(e, "NDCL_LAYER_CONV_ALGO"),
                  "message: %s", e);
    /* The same through the environment. */
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_AUTO));
    setenv("NDCL_CONV_ALGO", "winograd", 1);
    ck_assert_int_eq(ndcl_layer_forward(l, NDCL_TRAIN, x, &y), NDCL_ERR_UNSUPPORTED);
    e = ndcl_context_last_error(ctx);
    ck_assert_msg(strstr(e, "winograd") && strstr(e, "stride 2") &&
                      strstr(e, "NDCL_CONV_ALGO"),
                  "message: %s", e);
    unsetenv("NDCL_CONV_ALGO");
    /* Without oneDNN here, dnnl is refused for every geometry. */
    int avail = -1;
    TEST_OK(ctx, ndcl_conv_algorithm_available(ctx, NDCL_CONV_DNNL, &avail));
    if (!avail) {
        TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_ALGO, NDCL_CONV_DNNL));
        ck_assert_int_eq(ndcl_layer_forward(l, NDCL_TRAIN, x, &y), NDCL_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(ndcl_context_last_error(ctx), "dnnl"));
    }
    TEST_OK(ctx, ndcl_conv_algorithm_available(ctx, NDCL_CONV_GEMM, &avail));
    ck_assert_int_eq(avail, 1);
    ck_assert_int_eq(ndcl_conv_algorithm_available(ctx, 7, &avail), NDCL_ERR_INVALID_ARG);
    ck_assert_str_eq(ndcl_conv_algorithm_name(NDCL_CONV_WINOGRAD), "winograd");
    ck_assert_ptr_null(ndcl_conv_algorithm_name(9));
    ndcl_tensor_destroy(x);
    ndcl_layer_destroy(l);
}
END_TEST

/* ------------------------------------------------------------ find-db */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A line of the find-db with its checksum. */
static void entry(char *out, size_t size, const char *body)
{
    snprintf(out, size, "%s %016llx\n", body,
             (unsigned long long)ndcl_hash(NDCL_FNV_OFFSET, body, strlen(body)));
}

/* Every line's checksum holds. */
static bool all_valid(const char *text)
{
    char line[512];
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\n");
        ck_assert_uint_lt(len, sizeof line);
        memcpy(line, p, len);
        line[len] = '\0';
        char *last = strrchr(line, ' ');
        if (!last) return false;
        unsigned long long sum = strtoull(last + 1, NULL, 16);
        if (ndcl_hash(NDCL_FNV_OFFSET, line, (size_t)(last - line)) != sum) return false;
        p += len + (p[len] == '\n');
    }
    return true;
}

/* A fresh workspace's auto choice for g, in a process that remembers
 * nothing but the find-db (remember: keep this process's earlier choices). */
static void choose_in(const ndcl_conv_geom *g, const ndcl_conv_algo *out[3], bool remember)
{
    if (!remember) ndcl_conv_memo_clear();
    ndcl_scratch col = {0}, tmp = {0};
    ndcl_conv_ws ws = {.col = &col, .tmp = &tmp};
    TEST_OK(test_ctx(), ndcl_conv_choose(test_ctx(), g, &ws));
    memcpy(out, ws.pass, sizeof ws.pass);
    ndcl_conv_ws_release(test_ctx(), &ws);
}

static void choose(const ndcl_conv_geom *g, const ndcl_conv_algo *out[3])
{
    choose_in(g, out, false);
}

START_TEST(find_db)
{
    if (!dnnl_here()) return; /* only gemm: nothing measured, nothing stored */
    char dir[] = "/tmp/ndcl-find-XXXXXX", path[1100];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *old = getenv("NDCL_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("NDCL_CACHE_DIR", dir, 1);
    unsetenv("NDCL_CONV_ALGO");
    ck_assert(ndcl_conv_find_db_path(path, sizeof path));
    ndcl_conv_geom a = geom_of(&cases[7]), b = geom_of(&cases[5]);
    const ndcl_conv_algo *c[3];

    /* Measured once, stored as one valid line. */
    choose(&a, c);
    char *text = slurp(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(all_valid(text) && strchr(text, '\n') == text + strlen(text) - 1,
                  "find-db: %s", text);
    /* Remembered: an entry rewritten (validly) to other algorithms is what
     * the next workspace takes, without measuring. */
    char body[512], line[600], devkey[32], geom[160];
    ck_assert_int_eq(sscanf(text, "%*s %31s %159s", devkey, geom), 2);
    const char *other = c[0]->id == NDCL_CONV_GEMM ? "dnnl" : "gemm";
    snprintf(body, sizeof body, "ndcl-conv-find-1 %s %s %s %s %s", devkey, geom, other,
             other, other);
    entry(line, sizeof line, body);
    spit(path, line);
    /* Within the process that chose, its own choice stands: every layer of
     * one geometry computes alike. */
    const ndcl_conv_algo *mine[3];
    memcpy(mine, c, sizeof mine);
    choose_in(&a, c, true);
    for (int p = 0; p < 3; p++)
        ck_assert_ptr_eq(c[p], mine[p]);
    choose(&a, c);
    for (int p = 0; p < 3; p++)
        ck_assert_str_eq(c[p]->name, other);
    free(text);
    text = slurp(path);
    ck_assert_str_eq(text, line); /* not rewritten */
    free(text);

    /* Corrupt: a name changed without its checksum, and garbage lines:
     * measured again, the file rewritten whole and valid. */
    char corrupt[700];
    snprintf(corrupt, sizeof corrupt, "garbage\n%s", line);
    char *name = strstr(corrupt, other);
    ck_assert_ptr_nonnull(name);
    memcpy(name, "wino", 4); /* "gemm" / "dnnl" -> "wino" */
    spit(path, corrupt);
    choose(&a, c);
    text = slurp(path);
    ck_assert_msg(all_valid(text) && !strstr(text, "garbage") && !strstr(text, "wino "),
                  "find-db: %s", text);
    free(text);

    /* Foreign: valid lines naming an algorithm that does not fit b or does
     * not exist: never taken, replaced by a measurement. */
    const char *bad[] = {"winograd", "bogus"};
    char gb[160];
    snprintf(gb, sizeof gb, "%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu", b.n, b.c,
             b.h, b.w, b.cout, b.kh, b.kw, b.stride, b.pad, b.dil, b.groups, b.chunk);
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "ndcl-conv-find-1 %s %s %s %s %s", devkey, gb, bad[i],
                 bad[i], bad[i]);
        entry(line, sizeof line, body);
        spit(path, line);
        choose(&b, c);
        for (int p = 0; p < 3; p++)
            ck_assert_msg(c[p]->id != NDCL_CONV_WINOGRAD, "took %s", c[p]->name);
        text = slurp(path);
        ck_assert_msg(all_valid(text) && !strstr(text, bad[i]), "find-db: %s", text);
        free(text);
    }
    remove(path);
    rmdir(dir);
    if (saved)
        setenv("NDCL_CACHE_DIR", saved, 1);
    else
        unsetenv("NDCL_CACHE_DIR");
    free(saved);
}
END_TEST

/* ------------------------------------------------------------ queue order */

static const char *const app_src =
    "__kernel void app_copy(__global const float *a, __global float *b)\n"
    "{ size_t i = get_global_id(0); b[i] = a[i]; }\n";

/* An application's kernel before a oneDNN convolution writes its input,
 * one after it reads its output, all enqueued while the queue is held by a
 * user event: the calls return at once and the data flow in queue order. */
START_TEST(queue_order)
{
    if (!dnnl_here()) return;
    ndcl_context *ctx = test_ctx();
    unsetenv("NDCL_CONV_ALGO");
    fixture f, f2;
    fixture_init(&f, &cases[7], 500);
    fixture_init(&f2, &cases[8], 600); /* before the queue is held */
    cl_program prog;
    ndcl_build_info info;
    TEST_OK(ctx,
            ndcl_program_build_source(ctx, app_src, strlen(app_src), "", &prog, &info));
    cl_int err;
    cl_kernel k = clCreateKernel(prog, "app_copy", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    /* x and dy reach the convolution only through the kernel before it. */
    ndcl_tensor *x = vec(f.nx, NULL), *dy = vec(f.ny, NULL), *yout = vec(f.ny, NULL),
                *dxout = vec(f.nx, NULL);
    TEST_OK(ctx, ndcl_tensor_fill(x, 0.0f));
    TEST_OK(ctx, ndcl_finish(ctx));
    cl_event gate = clCreateUserEvent(ctx->context, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clEnqueueBarrierWithWaitList(ctx->queue, 1, &gate, NULL), CL_SUCCESS);
    cl_mem m;
    const struct {
        ndcl_tensor *from, *to;
        size_t n;
    } before[2] = {{f.tx, x, f.nx}, {f.tdy, dy, f.ny}};
    for (int i = 0; i < 2; i++) {
        m = MEM(before[i].from);
        clSetKernelArg(k, 0, sizeof m, &m);
        m = MEM(before[i].to);
        clSetKernelArg(k, 1, sizeof m, &m);
        ck_assert_int_eq(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &before[i].n, NULL,
                                                0, NULL, NULL),
                         CL_SUCCESS);
    }
    ndcl_scratch col = {0}, tmp = {0};
    ndcl_conv_ws ws = {.col = &col, .tmp = &tmp, .force = NDCL_CONV_DNNL};
    TEST_OK(ctx,
            ndcl_conv_run_forward(ctx, &f.g, &ws, MEM(x), MEM(f.tw), MEM(f.tb), MEM(f.ty)));
    /* auto meeting a geometry it has not measured (an empty find-db)
     * measures on a queue of its own and returns: it does not wait for
     * the held queue. */
    char dir[] = "/tmp/ndcl-find-XXXXXX", path[1100];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *old = getenv("NDCL_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("NDCL_CACHE_DIR", dir, 1);
    ndcl_scratch col2 = {0}, tmp2 = {0};
    ndcl_conv_ws ws2 = {.col = &col2, .tmp = &tmp2};
    TEST_OK(ctx, ndcl_conv_run_forward(ctx, &f2.g, &ws2, MEM(f2.tx), MEM(f2.tw), MEM(f2.tb),
                                       MEM(f2.ty)));
    ck_assert(ndcl_conv_find_db_path(path, sizeof path));
    ck_assert_int_eq(access(path, F_OK), 0);
    remove(path);
    rmdir(dir);
    if (saved)
        setenv("NDCL_CACHE_DIR", saved, 1);
    else
        unsetenv("NDCL_CACHE_DIR");
    free(saved);
    TEST_OK(ctx, ndcl_conv_run_backward(ctx, &f.g, &ws, MEM(x), MEM(f.tw), MEM(dy),
                                        MEM(f.tdx), MEM(f.tdw), MEM(f.tdb)));
    const struct {
        ndcl_tensor *from, *to;
        size_t n;
    } after[2] = {{f.ty, yout, f.ny}, {f.tdx, dxout, f.nx}};
    for (int i = 0; i < 2; i++) {
        m = MEM(after[i].from);
        clSetKernelArg(k, 0, sizeof m, &m);
        m = MEM(after[i].to);
        clSetKernelArg(k, 1, sizeof m, &m);
        ck_assert_int_eq(clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &after[i].n, NULL,
                                                0, NULL, NULL),
                         CL_SUCCESS);
    }
    /* Everything is still held: nothing has run. */
    cl_int st;
    ck_assert_int_eq(
        clGetEventInfo(gate, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL),
        CL_SUCCESS);
    ck_assert_int_ne(st, CL_COMPLETE);
    ck_assert_int_eq(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    TEST_OK(ctx, ndcl_finish(ctx));
    float *y = test_tensor_to_host(yout), *dx = test_tensor_to_host(dxout);
    double ey = test_rel_err_f(y, f.ry, f.ny, 1e-6),
           ex = test_rel_err_f(dx, f.rdx, f.nx, 1e-6);
    ck_assert_msg(ey < 1e-5 && ex < 1e-5, "y %g dx %g", ey, ex);
    free(y), free(dx);
    y = test_tensor_to_host(f2.ty);
    ey = test_rel_err_f(y, f2.ry, f2.ny, 1e-6);
    ck_assert_msg(ey < 1e-4, "auto's y %g", ey);
    free(y);
    ndcl_conv_ws_release(ctx, &ws2);
    ndcl_scratch_release(&col2);
    ndcl_scratch_release(&tmp2);
    fixture_free(&f2);
    clReleaseEvent(gate);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    ndcl_conv_ws_release(ctx, &ws);
    ndcl_scratch_release(&col);
    ndcl_scratch_release(&tmp);
    ndcl_tensor_destroy(x), ndcl_tensor_destroy(dy), ndcl_tensor_destroy(yout),
        ndcl_tensor_destroy(dxout);
    fixture_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_algo");
    TEST_ADD(s, every_algorithm_matches_reference);
    TEST_ADD(s, mixed_passes);
    TEST_ADD(s, layer_option);
    TEST_ADD(s, forced_unfit_fails);
    TEST_ADD(s, find_db);
    TEST_ADD(s, queue_order);
    return test_run(s);
}
