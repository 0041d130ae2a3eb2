/* test_conv.c - the plain convolution cut into chunks of images: forward and
 * backward (dx, dW, db) against the double-precision host reference for
 * chunk sizes that do and do not divide the batch, the chunk plan's bounds,
 * and the conv layer's options (chunk, borrowed input) and workspace. */
#include <stdbool.h>

#include "harness.h"
#include "conv/conv_algo.h"
#include "ref.h"
#include "runtime/runtime.h"

#define TOL 1e-5

typedef struct conv_case {
    const char *name;
    size_t n, c, h, w, cout, kh, kw, stride, pad, dil, groups;
} conv_case;

/* Both forward paths (per-image products from P = 256 on, wide below),
 * groups, stride 2, dilation, 1x1, padding, a kernel without written-out
 * taps (5x3). */
static const conv_case cases[] = {
    {"3x3 per-image", 5, 3, 16, 16, 4, 3, 3, 1, 1, 1, 1},
    {"3x3 per-image groups 4", 3, 4, 16, 16, 8, 3, 3, 1, 1, 1, 4},
    {"3x3 stride 2 groups 2", 5, 4, 8, 8, 6, 3, 3, 2, 1, 1, 2},
    {"3x3 dilation 2 pad 2", 3, 4, 9, 7, 4, 3, 3, 1, 2, 2, 1},
    {"1x1 groups 3", 5, 6, 6, 6, 6, 1, 1, 1, 0, 1, 3},
    {"1x1 stride 2 per-image", 2, 4, 40, 40, 4, 1, 1, 2, 0, 1, 1},
    {"5x3 stride 2 pad 1", 4, 2, 17, 17, 3, 5, 3, 2, 1, 1, 1},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static ndcl_conv_geom geom_of(const conv_case *k, size_t chunk)
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
                        .groups = k->groups,
                        .chunk = chunk};
    TEST_OK(test_ctx(), ndcl_conv_geom_init(test_ctx(), &g));
    return g;
}

static double *to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static float *random_floats(size_t n, unsigned seed)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    test_fill_uniform(v, n, seed, -1.0f, 1.0f);
    return v;
}

static ndcl_tensor *vec(ndcl_context *ctx, size_t n, const float *data)
{
    return test_tensor_from(ctx, 1, (size_t[]){n}, data);
}

/* The inputs of one case and the device's results. */
typedef struct run {
    size_t nx, nw, ny;
    float *x, *w, *b, *dy;
    float *y, *dx, *dw, *db; /* device results, NULL when not computed */
} run;

static void run_init(run *r, const conv_case *k, const ndcl_conv_geom *g, unsigned seed)
{
    memset(r, 0, sizeof *r);
    r->nx = k->n * k->c * k->h * k->w;
    r->nw = k->cout * (k->c / k->groups) * k->kh * k->kw;
    r->ny = k->n * k->cout * g->P;
    r->x = random_floats(r->nx, seed);
    r->w = random_floats(r->nw, seed + 1);
    r->b = random_floats(k->cout, seed + 2);
    r->dy = random_floats(r->ny, seed + 3);
}

static void run_free(run *r)
{
    float *v[] = {r->x, r->w, r->b, r->dy, r->y, r->dx, r->dw, r->db};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        free(v[i]);
}

/* The device's forward (with_bias or not) and backward (want_dx, want_dw,
 * want_db) at the given chunk, into r. */
static void device_run(run *r, const conv_case *k, size_t chunk, bool with_bias,
                       bool want_dx, bool want_dw, bool want_db)
{
    ndcl_context *ctx = test_ctx();
    ndcl_conv_geom g = geom_of(k, chunk);
    ndcl_conv_plan fp, bp;
    TEST_OK(ctx, ndcl_conv_plan_make(ctx, &g, false, &fp));
    TEST_OK(ctx, ndcl_conv_plan_make(ctx, &g, true, &bp));
    if (chunk) {
        ck_assert_uint_eq(fp.chunk, chunk < k->n ? chunk : k->n);
        ck_assert_uint_eq(bp.chunk, fp.chunk);
    }
    ndcl_tensor *x = vec(ctx, r->nx, r->x), *w = vec(ctx, r->nw, r->w);
    ndcl_tensor *b = vec(ctx, k->cout, r->b), *dy = vec(ctx, r->ny, r->dy);
    ndcl_tensor *y = vec(ctx, r->ny, NULL), *dx = vec(ctx, r->nx, NULL);
    ndcl_tensor *dw = vec(ctx, r->nw, NULL), *db = vec(ctx, k->cout, NULL);
    /* Through the table's im2col + GEMM entry, which cuts the chunks. */
    ndcl_scratch col = {0}, tmp = {0};
    ndcl_conv_ws ws = {.col = &col, .tmp = &tmp, .force = NDCL_CONV_GEMM};
    TEST_OK(ctx, ndcl_conv_run_forward(
                     ctx, &g, &ws, ndcl_tensor_cl_mem(x), ndcl_tensor_cl_mem(w),
                     with_bias ? ndcl_tensor_cl_mem(b) : NULL, ndcl_tensor_cl_mem(y)));
    TEST_OK(ctx, ndcl_conv_run_backward(ctx, &g, &ws, ndcl_tensor_cl_mem(x),
                                        ndcl_tensor_cl_mem(w), ndcl_tensor_cl_mem(dy),
                                        want_dx ? ndcl_tensor_cl_mem(dx) : NULL,
                                        want_dw ? ndcl_tensor_cl_mem(dw) : NULL,
                                        want_db ? ndcl_tensor_cl_mem(db) : NULL));
    /* The chunk workspaces are the plans' (the forward's within the
     * backward's). */
    ck_assert_uint_ge(col.cap, bp.col);
    ck_assert_uint_ge(col.cap, fp.col);
    TEST_OK(ctx, ndcl_finish(ctx));
    r->y = test_tensor_to_host(y);
    r->dx = want_dx ? test_tensor_to_host(dx) : NULL;
    r->dw = want_dw ? test_tensor_to_host(dw) : NULL;
    r->db = want_db ? test_tensor_to_host(db) : NULL;
    ndcl_tensor *t[] = {x, w, b, dy, y, dx, dw, db};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ndcl_tensor_destroy(t[i]);
    ndcl_conv_ws_release(ctx, &ws);
    ndcl_scratch_release(&col);
    ndcl_scratch_release(&tmp);
}

/* The host reference of r's inputs. */
typedef struct ref_out {
    double *y, *dx, *dw, *db;
} ref_out;

static ref_out reference(const run *r, const conv_case *k, bool with_bias)
{
    double *x = to_double(r->x, r->nx), *w = to_double(r->w, r->nw);
    double *b = to_double(r->b, k->cout), *dy = to_double(r->dy, r->ny);
    ref_out o = {malloc(r->ny * sizeof(double)), malloc(r->nx * sizeof(double)),
                 malloc(r->nw * sizeof(double)), malloc(k->cout * sizeof(double))};
    ref_conv2d(x, k->n, k->c, k->h, k->w, w, k->cout, k->kh, k->kw, with_bias ? b : NULL,
               k->stride, k->pad, k->dil, k->groups, o.y);
    ref_conv2d_backward(x, k->n, k->c, k->h, k->w, w, k->cout, k->kh, k->kw, k->stride,
                        k->pad, k->dil, k->groups, dy, o.dx, o.dw, o.db);
    free(x), free(w), free(b), free(dy);
    return o;
}

static void ref_free(ref_out *o)
{
    free(o->y), free(o->dx), free(o->dw), free(o->db);
}

/* Forward and backward of every case at chunks that do (1, the whole
 * batch, automatic) and do not (2, 3) divide the batch, against the host
 * reference. */
START_TEST(matches_reference)
{
    const size_t chunks[] = {0, 1, 2, 3};
    for (size_t c = 0; c < N_CASES; c++) {
        const conv_case *k = &cases[c];
        for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
            const bool with_bias = i % 2 == 0;
            ndcl_conv_geom g = geom_of(k, chunks[i]);
            run r;
            run_init(&r, k, &g, 100 + (unsigned)c);
            device_run(&r, k, chunks[i], with_bias, true, true, true);
            ref_out o = reference(&r, k, with_bias);
            double ey = test_rel_err_f(r.y, o.y, r.ny, 1e-6);
            double ex = test_rel_err_f(r.dx, o.dx, r.nx, 1e-6);
            double ew = test_rel_err_f(r.dw, o.dw, r.nw, 1e-6);
            double eb = test_rel_err_f(r.db, o.db, k->cout, 1e-6);
            if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "%-24s chunk %zu: y %.1e dx %.1e dW %.1e db %.1e\n",
                        k->name, chunks[i], ey, ex, ew, eb);
            ck_assert_msg(ey < TOL && ex < TOL && ew < TOL && eb < TOL,
                          "%s, chunk %zu: y %g dx %g dW %g db %g", k->name, chunks[i], ey,
                          ex, ew, eb);
            ref_free(&o);
            run_free(&r);
        }
    }
}
END_TEST

/* Small cases for Oclgrind, one per kernel path (per-image and wide
 * forward; col2im 3x3, 1x1 and looped; stride, dilation, groups), at a
 * chunk that does not divide the batch. */
START_TEST(small_paths)
{
    static const conv_case small[] = {
        {"per-image 3x3", 3, 2, 16, 16, 2, 3, 3, 1, 1, 1, 1},
        {"1x1 groups 2", 3, 2, 5, 5, 2, 1, 1, 1, 0, 1, 2},
        {"5x3 stride 2", 3, 2, 7, 7, 2, 5, 3, 2, 1, 1, 1},
        {"3x3 stride 2 dil 2 groups 2", 3, 4, 6, 6, 4, 3, 3, 2, 1, 2, 2},
    };
    for (size_t c = 0; c < sizeof small / sizeof small[0]; c++) {
        const conv_case *k = &small[c];
        ndcl_conv_geom g = geom_of(k, 2);
        run r;
        run_init(&r, k, &g, 60 + (unsigned)c);
        device_run(&r, k, 2, true, true, true, true);
        ref_out o = reference(&r, k, true);
        double e = test_rel_err_f(r.y, o.y, r.ny, 1e-6);
        e = fmax(e, test_rel_err_f(r.dx, o.dx, r.nx, 1e-6));
        e = fmax(e, test_rel_err_f(r.dw, o.dw, r.nw, 1e-6));
        e = fmax(e, test_rel_err_f(r.db, o.db, k->cout, 1e-6));
        ck_assert_msg(e < TOL, "%s: rel err %g", k->name, e);
        ref_free(&o);
        run_free(&r);
    }
}
END_TEST

/* The backward's outputs are independent: each alone equals its value in
 * the full call (no output is read or needed by another). */
START_TEST(backward_outputs_alone)
{
    const conv_case *k = &cases[2];
    ndcl_conv_geom g = geom_of(k, 2);
    run all, dx_only, dw_only, db_only;
    run_init(&all, k, &g, 7);
    device_run(&all, k, 2, true, true, true, true);
    run *part[] = {&dx_only, &dw_only, &db_only};
    for (int i = 0; i < 3; i++) {
        run_init(part[i], k, &g, 7);
        device_run(part[i], k, 2, true, i == 0, i == 1, i == 2);
    }
    ck_assert(test_rel_err_ff(dx_only.dx, all.dx, all.nx, 1e-30) == 0);
    ck_assert(test_rel_err_ff(dw_only.dw, all.dw, all.nw, 1e-30) == 0);
    ck_assert(test_rel_err_ff(db_only.db, all.db, k->cout, 1e-30) == 0);
    run_free(&all);
    for (int i = 0; i < 3; i++)
        run_free(part[i]);
}
END_TEST

/* Chunks of 2 and 3 of a batch of 7 give the whole batch's numbers up to
 * the order of dW's sum over the chunks. */
START_TEST(chunked_equals_unchunked)
{
    const conv_case base = {"7 images", 7, 4, 12, 12, 5, 3, 3, 1, 1, 1, 1};
    ndcl_conv_geom g = geom_of(&base, 7);
    run whole;
    run_init(&whole, &base, &g, 21);
    device_run(&whole, &base, 7, true, true, true, true);
    for (size_t chunk = 2; chunk <= 3; chunk++) {
        run r;
        run_init(&r, &base, &g, 21);
        device_run(&r, &base, chunk, true, true, true, true);
        /* y and dx are computed image by image: the same arithmetic. */
        ck_assert(test_rel_err_ff(r.y, whole.y, r.ny, 1e-30) < 1e-6);
        ck_assert(test_rel_err_ff(r.dx, whole.dx, r.nx, 1e-30) < 1e-6);
        ck_assert(test_rel_err_ff(r.dw, whole.dw, r.nw, 1e-30) < 1e-5);
        ck_assert(test_rel_err_ff(r.db, whole.db, base.cout, 1e-30) < 1e-5);
        run_free(&r);
    }
    run_free(&whole);
}
END_TEST

/* The automatic chunk, with the budget the test sets through the device's
 * reported cache (0 bytes, 1, 32 and 480 MiB, 64 GiB: what PoCL may read
 * off a real or a virtual machine): the budget stays within its documented
 * bounds; the chunk is what the budget holds (or the thinnest product the
 * plan allows), evened out over the batch but never above it, so it does
 * not grow with the batch; the workspaces fit the budget. */
START_TEST(plan_follows_budget)
{
    ndcl_context *ctx = test_ctx();
    const conv_case big = {"resnet 1", 128, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1};
    const uint64_t saved = ctx->info.global_mem_cache_bytes;
    const ndcl_device_type saved_type = ctx->info.type;
    const uint64_t caches[] = {0, (uint64_t)1 << 20, (uint64_t)32 << 20,
                               (uint64_t)480 << 20, (uint64_t)64 << 30};
    ctx->info.type = NDCL_DEVICE_CPU;
    for (size_t i = 0; i < sizeof caches / sizeof caches[0]; i++) {
        ctx->info.global_mem_cache_bytes = caches[i];
        const size_t budget = ndcl_conv_budget(ctx);
        ck_assert_uint_ge(budget, NDCL_CONV_CPU_BUDGET_MIN);
        ck_assert_uint_le(budget, NDCL_CONV_CPU_BUDGET_MAX);
        if (caches[i] / 2 >= NDCL_CONV_CPU_BUDGET_MIN &&
            caches[i] / 2 <= NDCL_CONV_CPU_BUDGET_MAX)
            ck_assert_uint_eq(budget, caches[i] / 2);
        ndcl_conv_geom g = geom_of(&big, 0);
        /* Floats per image of the backward's workspaces, and the thinnest
         * chunk the plan keeps (1024 product columns). */
        const size_t per = g.K * g.P + g.cout * g.P, thin = (1024 + g.P - 1) / g.P;
        size_t holds = budget / sizeof(float) / per;
        if (holds < thin) holds = thin;
        size_t chunks[3];
        const size_t batches[3] = {128, 1024, 7};
        for (size_t b = 0; b < 3; b++) {
            g.n = batches[b];
            TEST_OK(ctx, ndcl_conv_geom_init(ctx, &g));
            ndcl_conv_plan p;
            TEST_OK(ctx, ndcl_conv_plan_make(ctx, &g, true, &p));
            chunks[b] = p.chunk;
            const size_t want = holds < g.n ? holds : g.n;
            ck_assert_msg(p.chunk <= want && 2 * p.chunk >= want,
                          "cache %llu: batch %zu: chunk %zu, the budget holds %zu",
                          (unsigned long long)caches[i], g.n, p.chunk, holds);
            /* The chunks are even: none much smaller than the rest. */
            const size_t count = (g.n + p.chunk - 1) / p.chunk;
            ck_assert_uint_lt(count * p.chunk - g.n, count);
            ck_assert_uint_eq(p.col, p.chunk * g.K * g.P);
            ck_assert_uint_eq(p.tmp, p.chunk * g.cout * g.P);
            const size_t bytes = sizeof(float) * (p.col + p.tmp);
            ck_assert_msg(bytes <= budget || p.chunk <= thin,
                          "cache %llu: batch %zu: workspace %zu bytes over the budget %zu",
                          (unsigned long long)caches[i], g.n, bytes, budget);
        }
        /* Not growing with the batch: 8 times the images, no larger chunk
         * than the budget holds either way. */
        ck_assert_uint_le(chunks[1], holds);
        ck_assert_uint_le(chunks[0], holds);
    }
    ctx->info.global_mem_cache_bytes = saved;
    ctx->info.type = saved_type;
}
END_TEST

/* The plan within the device's largest allocation: a smaller one gives
 * smaller chunks, down to refusing an image too large for one allocation
 * with a message; a forced chunk is clamped to the batch. */
START_TEST(plan_is_bounded)
{
    ndcl_context *ctx = test_ctx();
    const conv_case big = {"resnet 1", 1024, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1};
    ndcl_conv_geom g = geom_of(&big, 0);
    TEST_OK(ctx, ndcl_conv_geom_init(ctx, &g));
    ndcl_conv_plan pfw;
    TEST_OK(ctx, ndcl_conv_plan_make(ctx, &g, false, &pfw));
    ck_assert(pfw.per_image && pfw.tmp == 0);

    const uint64_t saved = ctx->info.max_alloc_bytes;
    ctx->info.max_alloc_bytes = 3 * g.K * g.P * sizeof(float);
    ndcl_conv_plan small;
    ndcl_status s = ndcl_conv_plan_make(ctx, &g, true, &small);
    ck_assert_int_eq(s, NDCL_SUCCESS);
    ck_assert_uint_le(small.chunk, 3);
    ck_assert_uint_le(small.col * sizeof(float), ctx->info.max_alloc_bytes);
    ctx->info.max_alloc_bytes = g.K * g.P * sizeof(float) - 4;
    ndcl_conv_plan none = {.chunk = 99};
    s = ndcl_conv_plan_make(ctx, &g, true, &none);
    ctx->info.max_alloc_bytes = saved;
    ck_assert_int_eq(s, NDCL_ERR_OUT_OF_MEMORY);
    ck_assert_uint_eq(none.chunk, 99); /* unchanged on failure */
    ck_assert_msg(strstr(ndcl_context_last_error(ctx), "largest allocation"), "%s",
                  ndcl_context_last_error(ctx));

    /* A forced chunk is clamped to the batch. */
    g.chunk = 5000;
    TEST_OK(ctx, ndcl_conv_plan_make(ctx, &g, true, &small));
    ck_assert_uint_eq(small.chunk, g.n);
}
END_TEST

/* ------------------------------------------------------------ the layer */

static ndcl_layer *conv_layer(ndcl_context *ctx, int c, int cout)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(c, cout, 3);
    d.padding = 1;
    d.block = 2;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    const char *names[] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        size_t n = test_param_count(l, names[i]);
        float *v = random_floats(n, 300 + (unsigned)i);
        TEST_OK(ctx, ndcl_layer_set_param(l, names[i], v, n));
        free(v);
    }
    return l;
}

/* One training step's outputs. */
typedef struct step {
    float *y, *dx, *dw, *db;
} step;

static void step_free(step *s)
{
    free(s->y), free(s->dx), free(s->dw), free(s->db);
}

/* A training forward on x, then (after overwrite: x's tensor rewritten with
 * other values, or destroyed when destroy) the backward of dy. */
static step layer_step(ndcl_layer *l, const size_t *xs, const float *x, const float *dy,
                       bool overwrite, bool destroy)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    size_t nx = xs[0] * xs[1] * xs[2] * xs[3];
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xs, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    if (overwrite) {
        float *other = random_floats(nx, 999);
        TEST_OK(ctx, ndcl_tensor_write(tx, other, nx));
        free(other);
    }
    if (destroy) {
        ndcl_tensor_destroy(tx);
        tx = NULL;
    }
    size_t ys[4] = {ndcl_tensor_dim(ty, 0), ndcl_tensor_dim(ty, 1), ndcl_tensor_dim(ty, 2),
                    ndcl_tensor_dim(ty, 3)};
    ndcl_tensor *tdy = test_tensor_from(ctx, 4, ys, dy), *dx = NULL, *dw = NULL, *db = NULL;
    TEST_OK(ctx, ndcl_layer_backward(l, tdy, &dx, &dw, &db));
    TEST_OK(ctx, ndcl_finish(ctx));
    step s = {test_tensor_to_host(ty), test_tensor_to_host(dx), test_tensor_to_host(dw),
              test_tensor_to_host(db)};
    ndcl_tensor *t[] = {tx, ty, tdy, dx, dw, db};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ndcl_tensor_destroy(t[i]);
    return s;
}

static double step_diff(const step *a, const step *b, size_t nx, size_t ny, size_t nw,
                        size_t nb)
{
    double e = test_rel_err_ff(a->y, b->y, ny, 1e-30);
    e = fmax(e, test_rel_err_ff(a->dx, b->dx, nx, 1e-30));
    e = fmax(e, test_rel_err_ff(a->dw, b->dw, nw, 1e-30));
    return fmax(e, test_rel_err_ff(a->db, b->db, nb, 1e-30));
}

/* The layer's chunk option changes the cut, not the numbers (the
 * statistics' path included); the default copies x, so overwriting or
 * destroying x before the backward changes nothing; a borrowed x gives the
 * same gradients when left alone, survives the tensor's destruction, and
 * (as documented) follows the caller's overwrite. */
START_TEST(layer_chunk_and_borrow)
{
    ndcl_context *ctx = test_ctx();
    const size_t xs[4] = {5, 4, 16, 16}, nx = 5 * 4 * 16 * 16, ny = 5 * 6 * 16 * 16;
    const size_t nw = 6 * 4 * 9, nb = 6;
    float *x = random_floats(nx, 41), *dy = random_floats(ny, 42);
    /* Two layers with equal parameters, so that each step starts alike. */
    step ref, s;
    {
        ndcl_layer *l = conv_layer(ctx, 4, 6);
        ref = layer_step(l, xs, x, dy, false, false);
        ndcl_layer_destroy(l);
    }
    const struct {
        int64_t chunk, borrow;
        bool overwrite, destroy;
        bool same; /* the gradients equal the reference's */
    } v[] = {
        {2, 0, false, false, true}, {3, 0, true, false, true}, {0, 0, false, true, true},
        {2, 1, false, false, true}, {0, 1, false, true, true}, {2, 1, true, false, false},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ndcl_layer *l = conv_layer(ctx, 4, 6);
        TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_CONV_CHUNK, v[i].chunk));
        TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_BORROW_INPUT, v[i].borrow));
        int64_t got;
        TEST_OK(ctx, ndcl_layer_get_option(l, NDCL_LAYER_CONV_CHUNK, &got));
        ck_assert_int_eq(got, v[i].chunk);
        TEST_OK(ctx, ndcl_layer_get_option(l, NDCL_LAYER_BORROW_INPUT, &got));
        ck_assert_int_eq(got, v[i].borrow);
        s = layer_step(l, xs, x, dy, v[i].overwrite, v[i].destroy);
        double e = step_diff(&s, &ref, nx, ny, nw, nb);
        if (v[i].same)
            ck_assert_msg(e < 1e-5, "variant %zu: rel diff %g", i, e);
        else
            ck_assert_msg(e > 1e-3,
                          "variant %zu: a borrowed, overwritten x left the "
                          "gradients unchanged (%g): it was copied",
                          i, e);
        step_free(&s);
        ndcl_layer_destroy(l);
    }
    step_free(&ref);
    free(x), free(dy);
}
END_TEST

/* The workspace: what a forward keeps and reuses, less x's copy when x is
 * borrowed, less the saved state after ndcl_layer_release_saved; the
 * convolution's share does not grow with the batch. */
START_TEST(layer_workspace)
{
    ndcl_context *ctx = test_ctx();
    size_t before, copy, borrow, released;
    ndcl_layer *l = conv_layer(ctx, 4, 6);
    TEST_OK(ctx, ndcl_layer_workspace_bytes(l, &before));
    const size_t xs[4] = {6, 4, 16, 16}, nx = 6 * 4 * 16 * 16;
    float *x = random_floats(nx, 5);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xs, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    TEST_OK(ctx, ndcl_layer_workspace_bytes(l, &copy));
    ck_assert_uint_gt(copy, before + nx * sizeof(float));
    TEST_OK(ctx, ndcl_layer_set_option(l, NDCL_LAYER_BORROW_INPUT, 1));
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    TEST_OK(ctx, ndcl_layer_workspace_bytes(l, &borrow));
    ck_assert_uint_eq(copy - borrow, nx * sizeof(float));
    ndcl_layer_release_saved(l);
    TEST_OK(ctx, ndcl_layer_workspace_bytes(l, &released));
    ck_assert_uint_lt(released, borrow);
    TEST_OK(ctx, ndcl_finish(ctx));
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    free(x);
    ndcl_layer_destroy(l);
}
END_TEST

/* Bad options and arguments: a clear status, nothing changed. */
START_TEST(bad_options)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *conv = conv_layer(ctx, 4, 6), *lin = NULL;
    ndcl_linear_desc ld = ndcl_linear_desc_default(8, 4);
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &lin));
    TEST_OK(ctx, ndcl_layer_set_option(conv, NDCL_LAYER_CONV_CHUNK, 3));
    const struct {
        ndcl_layer *l;
        ndcl_layer_option opt;
        int64_t value;
        const char *says;
    } bad[] = {
        {conv, NDCL_LAYER_CONV_CHUNK, -1, "NDCL_LAYER_CONV_CHUNK=-1"},
        {conv, NDCL_LAYER_CONV_CHUNK, (int64_t)1 << 40, "must be 0..2^31-1"},
        {conv, NDCL_LAYER_BORROW_INPUT, 2, "NDCL_LAYER_BORROW_INPUT=2"},
        {conv, (ndcl_layer_option)77, 1, "option=77"},
        {lin, NDCL_LAYER_CONV_CHUNK, 1, "conv2d layers, not linear"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ndcl_status s = ndcl_layer_set_option(bad[i].l, bad[i].opt, bad[i].value);
        ck_assert_int_eq(s, NDCL_ERR_INVALID_ARG);
        ck_assert_msg(strstr(ndcl_context_last_error(ctx), bad[i].says), "case %zu: %s", i,
                      ndcl_context_last_error(ctx));
    }
    int64_t v = -5;
    TEST_OK(ctx, ndcl_layer_get_option(conv, NDCL_LAYER_CONV_CHUNK, &v));
    ck_assert_int_eq(v, 3);
    TEST_OK(ctx, ndcl_layer_get_option(conv, NDCL_LAYER_BORROW_INPUT, &v));
    ck_assert_int_eq(v, 0);
    v = -5;
    ck_assert_int_eq(ndcl_layer_get_option(lin, NDCL_LAYER_CONV_CHUNK, &v),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(ndcl_layer_get_option(conv, NDCL_LAYER_CONV_CHUNK, NULL),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_set_option(NULL, NDCL_LAYER_CONV_CHUNK, 1),
                     NDCL_ERR_INVALID_ARG);
    size_t bytes = 17;
    ck_assert_int_eq(ndcl_layer_workspace_bytes(NULL, &bytes), NDCL_ERR_INVALID_ARG);
    ck_assert_uint_eq(bytes, 17);
    ck_assert_int_eq(ndcl_layer_workspace_bytes(conv, NULL), NDCL_ERR_INVALID_ARG);
    ndcl_layer_destroy(conv);
    ndcl_layer_destroy(lin);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TEST_ADD(s, matches_reference);
    TEST_ADD(s, small_paths);
    TEST_ADD(s, backward_outputs_alone);
    TEST_ADD(s, chunked_equals_unchunked);
    TEST_ADD(s, plan_follows_budget);
    TEST_ADD(s, plan_is_bounded);
    TEST_ADD(s, layer_chunk_and_borrow);
    TEST_ADD(s, layer_workspace);
    TEST_ADD(s, bad_options);
    return test_run(s);
}
