/* test_sync.c - layers attached to a group (ndcl_layer_set_group) without
 * MPI: K threads, each a rank with its own context and copy of the layer,
 * whose allreduce adds their buffers in rank order. A training step of K
 * ranks on slices of a batch must give what one layer gives on the whole
 * batch: output, running statistics, counter, dx, and dweight, dbias summed
 * over the ranks. A rank that fails must not leave the others waiting. */
#include <pthread.h>
#include <stdbool.h>

#include "harness.h"

#define MAX_RANKS 4

/* ------------------------------------------------------------- the group */

/* K threads' allreduce: every rank copies its values into its slot, then
 * every rank adds the slots in rank order, so all get the same sums. */
typedef struct tgroup {
    int size;
    pthread_barrier_t bar;
    double *slot[MAX_RANKS];
    size_t count[MAX_RANKS], cap;
    size_t calls[MAX_RANKS], values[MAX_RANKS]; /* per rank, for the byte counts */
} tgroup;

typedef struct member {
    tgroup *g;
    int rank;
} member;

static ndcl_status tg_allreduce(void *user, double *data, size_t count)
{
    member *m = user;
    tgroup *g = m->g;
    pthread_barrier_wait(&g->bar);
    if (m->rank == 0 && count > g->cap) {
        for (int r = 0; r < g->size; r++) {
            free(g->slot[r]);
            g->slot[r] = malloc(count * sizeof(double));
        }
        g->cap = count;
    }
    pthread_barrier_wait(&g->bar);
    memcpy(g->slot[m->rank], data, count * sizeof(double));
    g->count[m->rank] = count;
    g->calls[m->rank]++;
    g->values[m->rank] += count;
    pthread_barrier_wait(&g->bar);
    ndcl_status s = NDCL_SUCCESS;
    for (int r = 0; r < g->size; r++)
        if (g->count[r] != count) s = NDCL_ERR_GROUP; /* ranks out of step */
    for (size_t i = 0; s == NDCL_SUCCESS && i < count; i++) {
        double sum = 0.0;
        for (int r = 0; r < g->size; r++)
            sum += g->slot[r][i];
        data[i] = sum;
    }
    pthread_barrier_wait(&g->bar);
    return s;
}

static void tg_init(tgroup *g, int size)
{
    memset(g, 0, sizeof *g);
    g->size = size;
    pthread_barrier_init(&g->bar, NULL, (unsigned)size);
}

static void tg_free(tgroup *g)
{
    for (int r = 0; r < g->size; r++)
        free(g->slot[r]);
    pthread_barrier_destroy(&g->bar);
}

/* One context per rank, created once (PoCL contexts are slow to make) and
 * destroyed before main returns. */
static ndcl_context *rank_ctxs[MAX_RANKS];

static ndcl_context *rank_ctx(int r)
{
    return rank_ctxs[r];
}

static void rank_ctxs_create(void)
{
    for (int r = 0; r < MAX_RANKS; r++)
        if (!rank_ctxs[r]) ck_assert_int_eq(ndcl_context_create(NULL, &rank_ctxs[r]), 0);
}

/* ------------------------------------------------------------- the cases */

typedef struct tcase {
    ndcl_layer_kind kind;
    ndcl_conv2d_desc conv;
    ndcl_linear_desc linear;
    ndcl_channel_desc channel;
    int ndim;
    size_t shape[4]; /* the global batch */
    int K;
    size_t n[MAX_RANKS]; /* samples per rank (0: an even split) */
    int64_t counter;
} tcase;

static size_t prod(int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* The case's layer on ctx, parameters from fixed seeds (so every rank
 * builds the same). */
static ndcl_status make_layer(ndcl_context *ctx, const tcase *c, ndcl_layer **out)
{
    ndcl_layer *l = NULL;
    ndcl_status s = c->kind == NDCL_LAYER_CONV2D ? ndcl_conv2d_create(ctx, &c->conv, &l)
                    : c->kind == NDCL_LAYER_LINEAR
                        ? ndcl_linear_create(ctx, &c->linear, &l)
                        : ndcl_channel_create(ctx, &c->channel, &l);
    const char *names[2] = {"weight", "bias"};
    for (int i = 0; i < 2 && s == NDCL_SUCCESS; i++) {
        size_t n = test_param_count(l, names[i]);
        if (!n) continue;
        float *v = malloc(n * sizeof *v);
        test_fill_uniform(v, n, 11u + (unsigned)i, -0.5f, 0.5f);
        s = ndcl_layer_set_param(l, names[i], v, n);
        free(v);
    }
    if (s == NDCL_SUCCESS && c->kind != NDCL_LAYER_LINEAR)
        s = ndcl_layer_set_counter(l, c->counter);
    if (s != NDCL_SUCCESS) {
        ndcl_layer_destroy(l);
        return s;
    }
    *out = l;
    return NDCL_SUCCESS;
}

static const char *const running_names[4][4] = {
    [NDCL_LAYER_CONV2D] = {"running_mean", "running_deconv", NULL, NULL},
    [NDCL_LAYER_LINEAR] = {"running_mean", "running_deconv", NULL, NULL},
    [NDCL_LAYER_CHANNEL] = {"running_mean1", "running_deconv", "running_mean2",
                            "running_var"},
};

/* What one training step (forward and backward) gave on one rank. */
typedef struct result {
    ndcl_status fwd, bwd;
    char err[512];
    float *y, *dx, *dw, *db, *run[4];
    size_t ny, ndx, ndw, ndb, nrun[4];
    int64_t counter;
} result;

static void result_free(result *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
    for (int i = 0; i < 4; i++)
        free(r->run[i]);
}

/* A training step of the case's layer on x [n, ...] with dy; group NULL
 * alone. The layer is created on ctx and destroyed. */
static void step(ndcl_context *ctx, const tcase *c, const ndcl_group *group, size_t n,
                 const float *x, const float *dy, result *r)
{
    memset(r, 0, sizeof *r);
    ndcl_layer *l = NULL;
    ndcl_tensor *tx = NULL, *ty = NULL, *tdy = NULL, *tdx = NULL, *tdw = NULL, *tdb = NULL;
    size_t xs[4];
    memcpy(xs, c->shape, sizeof xs);
    xs[0] = n;
    ndcl_status s = make_layer(ctx, c, &l);
    if (s == NDCL_SUCCESS && group) s = ndcl_layer_set_group(l, group);
    if (s == NDCL_SUCCESS) s = ndcl_tensor_create(ctx, c->ndim, xs, &tx);
    if (s == NDCL_SUCCESS) s = ndcl_tensor_write(tx, x, prod(c->ndim, xs));
    r->fwd = s == NDCL_SUCCESS ? ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty) : s;
    if (r->fwd == NDCL_SUCCESS) {
        r->ny = ndcl_tensor_count(ty);
        size_t ys[4];
        for (int d = 0; d < ndcl_tensor_ndim(ty); d++)
            ys[d] = ndcl_tensor_dim(ty, d);
        s = ndcl_tensor_create(ctx, ndcl_tensor_ndim(ty), ys, &tdy);
        if (s == NDCL_SUCCESS) s = ndcl_tensor_write(tdy, dy, r->ny);
        bool params = c->kind != NDCL_LAYER_CHANNEL;
        r->bwd = s == NDCL_SUCCESS ? ndcl_layer_backward(l, tdy, &tdx, params ? &tdw : NULL,
                                                         params ? &tdb : NULL)
                                   : s;
        if (r->bwd == NDCL_SUCCESS) r->bwd = ndcl_finish(ctx);
        if (r->bwd == NDCL_SUCCESS) {
            r->y = test_tensor_to_host(ty);
            r->ndx = ndcl_tensor_count(tdx);
            r->dx = test_tensor_to_host(tdx);
            if (tdw) {
                r->ndw = ndcl_tensor_count(tdw);
                r->dw = test_tensor_to_host(tdw);
            }
            if (tdb) {
                r->ndb = ndcl_tensor_count(tdb);
                r->db = test_tensor_to_host(tdb);
            }
            for (int i = 0; i < 4 && running_names[c->kind][i]; i++) {
                r->nrun[i] = test_param_count(l, running_names[c->kind][i]);
                r->run[i] = malloc(r->nrun[i] * sizeof(float));
                ndcl_layer_get_param(l, running_names[c->kind][i], r->run[i], r->nrun[i]);
            }
            if (c->kind != NDCL_LAYER_LINEAR) ndcl_layer_get_counter(l, &r->counter);
        }
    }
    if (r->fwd != NDCL_SUCCESS || r->bwd != NDCL_SUCCESS)
        snprintf(r->err, sizeof r->err, "%s / %s: %s", ndcl_status_string(r->fwd),
                 ndcl_status_string(r->bwd), ndcl_context_last_error(ctx));
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(tdx);
    ndcl_tensor_destroy(tdw);
    ndcl_tensor_destroy(tdb);
    ndcl_layer_destroy(l);
}

typedef struct rank_job {
    const tcase *c;
    member m;
    ndcl_group group;
    size_t n;
    const float *x, *dy;
    result r;
} rank_job;

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    step(rank_ctx(j->m.rank), j->c, &j->group, j->n, j->x, j->dy, &j->r);
    return NULL;
}

/* The values one rank reduces in one training step (forward and
 * backward), as ndcl.h documents them; block is the layer's effective one. */
static size_t expected_values(const tcase *c, int block)
{
    size_t K = (size_t)c->K, B = (size_t)block, n = 6 * K;
    if (c->kind == NDCL_LAYER_CHANNEL) {
        bool left = c->shape[1] % B != 0;
        return n + (1 + B + B * (B + 1) / 2 + (left ? 1 : 0)) + (left ? 2 : 0) +
               (1 + B * B + B + 2);
    }
    size_t G = c->kind == NDCL_LAYER_CONV2D ? (size_t)c->conv.groups : 1;
    size_t nf = c->kind == NDCL_LAYER_CONV2D
                    ? (size_t)(c->conv.kernel_h * c->conv.kernel_w) * B
                    : B;
    size_t cols = G * nf;
    return n + (1 + cols) + (1 + G * nf * (nf + 1) / 2 + cols) + (1 + G * nf * nf + cols);
}

/* Runs the case on K threads (jobs[r] gets slice r) and alone on the whole
 * batch, and compares. */
static void run_case(const tcase *c)
{
    const int K = c->K;
    size_t n[MAX_RANKS], N = c->shape[0], per = prod(c->ndim, c->shape) / N;
    for (int r = 0; r < K; r++)
        n[r] = c->n[0] ? c->n[r] : N / (size_t)K;
    float *x = malloc(N * per * sizeof *x);
    test_fill_uniform(x, N * per, 5u, -1.0f, 2.0f); /* a mean away from 0 */

    /* Alone on the whole batch, in the harness's context; dy from y's size. */
    result one;
    size_t ny_guess = 0;
    int block = 0;
    {
        /* An evaluation step only to learn y's size, for dy. */
        ndcl_context *ctx = test_ctx();
        ndcl_layer *l = NULL;
        ndcl_tensor *tx = NULL, *ty = NULL;
        TEST_OK(ctx, make_layer(ctx, c, &l));
        TEST_OK(ctx, ndcl_tensor_create(ctx, c->ndim, c->shape, &tx));
        TEST_OK(ctx, ndcl_tensor_write(tx, x, N * per));
        TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, tx, &ty));
        ny_guess = ndcl_tensor_count(ty);
        block = ndcl_layer_block(l);
        ndcl_tensor_destroy(tx);
        ndcl_tensor_destroy(ty);
        ndcl_layer_destroy(l);
    }
    float *dy = malloc(ny_guess * sizeof *dy);
    test_fill_uniform(dy, ny_guess, 6u, -1.0f, 1.0f);
    step(test_ctx(), c, NULL, N, x, dy, &one);
    ck_assert_msg(one.fwd == NDCL_SUCCESS && one.bwd == NDCL_SUCCESS, "alone: %s", one.err);

    rank_ctxs_create();
    tgroup g;
    tg_init(&g, K);
    rank_job jobs[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    size_t at = 0, yat = 0, yper = ny_guess / N;
    for (int r = 0; r < K; r++) {
        jobs[r] =
            (rank_job){.c = c, .m = {&g, r}, .n = n[r], .x = x + at * per, .dy = dy + yat};
        jobs[r].group = (ndcl_group){K, r, tg_allreduce, &jobs[r].m};
        at += n[r];
        yat += n[r] * yper;
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
    }
    ck_assert_uint_eq(at, N);
    for (int r = 0; r < K; r++)
        ck_assert_int_eq(pthread_join(th[r], NULL), 0);

    /* Gather and sum the ranks' results. */
    float *y = malloc(one.ny * sizeof *y), *dx = malloc(one.ndx * sizeof *dx);
    float *dw = calloc(one.ndw + 1, sizeof *dw), *db = calloc(one.ndb + 1, sizeof *db);
    size_t yo = 0, xo = 0;
    for (int r = 0; r < K; r++) {
        result *rr = &jobs[r].r;
        ck_assert_msg(rr->fwd == NDCL_SUCCESS && rr->bwd == NDCL_SUCCESS, "rank %d: %s", r,
                      rr->err);
        memcpy(y + yo, rr->y, rr->ny * sizeof *y);
        memcpy(dx + xo, rr->dx, rr->ndx * sizeof *dx);
        yo += rr->ny;
        xo += rr->ndx;
        for (size_t i = 0; i < one.ndw; i++)
            dw[i] += rr->dw[i];
        for (size_t i = 0; i < one.ndb; i++)
            db[i] += rr->db[i];
        ck_assert_int_eq(rr->counter, one.counter);
        for (int i = 0; i < 4 && rr->run[i]; i++) {
            double e = test_rel_err_ff(rr->run[i], one.run[i], one.nrun[i], 1e-6);
            ck_assert_msg(e <= 1e-5, "rank %d: %s differs from one rank's: %g", r,
                          running_names[c->kind][i], e);
        }
        /* The ranks' copies stay identical. */
        for (int i = 0; i < 4 && rr->run[i]; i++)
            ck_assert_msg(
                !memcmp(rr->run[i], jobs[0].r.run[i], one.nrun[i] * sizeof(float)),
                "rank %d: %s differs from rank 0's", r, running_names[c->kind][i]);
    }
    ck_assert_uint_eq(yo, one.ny);
    ck_assert_uint_eq(xo, one.ndx);
    double ey = test_rel_err_ff(y, one.y, one.ny, 1e-6);
    double ex = test_rel_err_ff(dx, one.dx, one.ndx, 1e-6);
    double ew = one.ndw ? test_rel_err_ff(dw, one.dw, one.ndw, 1e-6) : 0.0;
    double eb = one.ndb ? test_rel_err_ff(db, one.db, one.ndb, 1e-6) : 0.0;
    printf("  %d ranks: y %.2e  dx %.2e  dweight %.2e  dbias %.2e; per step and rank %zu "
           "collectives, %zu bytes\n",
           K, ey, ex, ew, eb, g.calls[0], g.values[0] * sizeof(double));
    ck_assert_msg(ey <= 1e-5, "y: %g", ey);
    ck_assert_msg(ex <= 1e-5, "dx: %g", ex);
    ck_assert_msg(ew <= 1e-5, "dweight: %g", ew);
    ck_assert_msg(eb <= 1e-5, "dbias: %g", eb);
    /* What travels is what ndcl.h says, the same on every rank, whatever
     * the batch. */
    for (int r = 0; r < K; r++)
        ck_assert_uint_eq(g.values[r], expected_values(c, block));
    for (int r = 0; r < K; r++)
        result_free(&jobs[r].r);
    result_free(&one);
    tg_free(&g);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(dw);
    free(db);
}

static tcase conv_case(int cin, int cout, int k, int block, int groups, int stride,
                       int padding, size_t n, size_t h, size_t w, int K)
{
    tcase c = {
        .kind = NDCL_LAYER_CONV2D, .ndim = 4, .shape = {n, (size_t)cin, h, w}, .K = K};
    c.conv = ndcl_conv2d_desc_default(cin, cout, k);
    c.conv.block = block;
    c.conv.groups = groups;
    c.conv.stride = stride;
    c.conv.padding = padding;
    return c;
}

START_TEST(conv_3x3_groups1)
{
    tcase c = conv_case(4, 6, 3, 2, 1, 1, 1, 4, 7, 7, 2);
    run_case(&c);
    c.K = 4;
    run_case(&c);
}
END_TEST

START_TEST(conv_3x3_groups2_stride2)
{
    tcase c = conv_case(4, 6, 3, 64, 2, 2, 1, 4, 8, 8, 2);
    run_case(&c);
    c.K = 4;
    run_case(&c);
}
END_TEST

/* 1x1: every 9th pixel of the global (n, h, w) order; 25 pixels per image
 * do not line up with 9, so a rank's first sample is mid-sequence. */
START_TEST(conv_1x1)
{
    tcase c = conv_case(6, 4, 1, 3, 1, 1, 0, 4, 5, 5, 2);
    run_case(&c);
    c.K = 4;
    run_case(&c);
    /* Uneven slices, one of them too small to hold a sampled pixel of a
     * 1x1 conv with sampling stride 3 over a 2x2 image (every 9th of 4). */
    tcase u = conv_case(6, 4, 1, 3, 1, 1, 0, 7, 2, 2, 3);
    u.n[0] = 3;
    u.n[1] = 2;
    u.n[2] = 2;
    run_case(&u);
}
END_TEST

START_TEST(conv_1x1_groups3)
{
    tcase c = conv_case(6, 6, 1, 2, 3, 1, 0, 4, 5, 5, 4);
    run_case(&c);
}
END_TEST

START_TEST(linear_layer)
{
    tcase c = {.kind = NDCL_LAYER_LINEAR, .ndim = 2, .shape = {8, 12}, .K = 2};
    c.linear = ndcl_linear_desc_default(12, 5);
    c.linear.block = 4;
    run_case(&c);
    c.K = 4;
    run_case(&c);
    tcase u = c; /* uneven */
    u.K = 3;
    u.n[0] = 2;
    u.n[1] = 5;
    u.n[2] = 1;
    run_case(&u);
}
END_TEST

START_TEST(channel_leftover)
{
    /* C = 5, B = 2: four channels whitened in two rows, one leftover; 5x5
     * images are sampled every 9th column of the global sequence, and 25
     * does not line up with 9: a rank's chunks start mid-sequence. */
    tcase c = {.kind = NDCL_LAYER_CHANNEL, .ndim = 4, .shape = {4, 5, 5, 5}, .K = 2};
    c.channel = ndcl_channel_desc_default(2);
    c.counter = 3; /* momentum updates */
    run_case(&c);
    c.K = 4;
    run_case(&c);
    c.counter = 0; /* the first batch's copy */
    run_case(&c);
}
END_TEST

START_TEST(channel_2d)
{
    tcase c = {.kind = NDCL_LAYER_CHANNEL, .ndim = 2, .shape = {8, 6}, .K = 2};
    c.channel = ndcl_channel_desc_default(3);
    c.counter = 1;
    run_case(&c);
    c.K = 4;
    run_case(&c);
}
END_TEST

/* A group of one runs the whole protocol on one thread (one context in use
 * at a time): what tools/oclgrind-check.sh runs, Oclgrind's runtime not
 * being safe for contexts used from two threads at once. */
START_TEST(group_of_one)
{
    tcase c = conv_case(6, 4, 1, 3, 1, 1, 0, 2, 5, 5, 1);
    run_case(&c);
    c = conv_case(4, 6, 3, 64, 2, 2, 1, 2, 6, 6, 1);
    run_case(&c);
    c = (tcase){.kind = NDCL_LAYER_LINEAR, .ndim = 2, .shape = {4, 12}, .K = 1};
    c.linear = ndcl_linear_desc_default(12, 5);
    c.linear.block = 4;
    run_case(&c);
    c = (tcase){.kind = NDCL_LAYER_CHANNEL, .ndim = 4, .shape = {2, 5, 4, 4}, .K = 1};
    c.channel = ndcl_channel_desc_default(2);
    c.counter = 1;
    run_case(&c);
}
END_TEST

/* ------------------------------------------------------------- failures */

typedef struct fail_job {
    member m;
    ndcl_group group;
    int bad; /* 1: wrong channel count; 2: another H; 3: x NULL; 4: bad dy */
    ndcl_status fwd, bwd;
    char err[512];
} fail_job;

static void *fail_main(void *arg)
{
    fail_job *j = arg;
    ndcl_context *ctx = rank_ctx(j->m.rank);
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 4, 3);
    d.block = 2;
    d.padding = 1;
    ndcl_layer *l = NULL;
    ndcl_tensor *x = NULL, *y = NULL, *dy = NULL, *dx = NULL;
    j->fwd = j->bwd = NDCL_ERR_STATE;
    size_t shape[4] = {2, j->bad == 1 ? 3u : 4u, j->bad == 2 ? 6u : 5u, 5};
    float v[2 * 4 * 6 * 5];
    test_fill_uniform(v, 2 * 4 * 6 * 5, 3u, -1.0f, 1.0f);
    if (ndcl_conv2d_create(ctx, &d, &l) != NDCL_SUCCESS ||
        ndcl_layer_set_group(l, &j->group) != NDCL_SUCCESS ||
        ndcl_tensor_create(ctx, 4, shape, &x) != NDCL_SUCCESS ||
        ndcl_tensor_write(x, v, ndcl_tensor_count(x)) != NDCL_SUCCESS)
        goto out;
    j->fwd = ndcl_layer_forward(l, NDCL_TRAIN, j->bad == 3 ? NULL : x, &y);
    snprintf(j->err, sizeof j->err, "%s", ndcl_context_last_error(ctx));
    if (j->fwd != NDCL_SUCCESS) goto out;
    size_t ys[4] = {2, 4, 5, j->bad == 4 ? 4u : 5u};
    if (ndcl_tensor_create(ctx, 4, ys, &dy) != NDCL_SUCCESS ||
        ndcl_tensor_write(dy, v, ndcl_tensor_count(dy)) != NDCL_SUCCESS)
        goto out;
    j->bwd = ndcl_layer_backward(l, dy, &dx, NULL, NULL);
    snprintf(j->err, sizeof j->err, "%s", ndcl_context_last_error(ctx));
out:
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(dy);
    ndcl_tensor_destroy(dx);
    ndcl_layer_destroy(l);
    return NULL;
}

/* Two ranks, rank 1 bad as given; returns the jobs' statuses. */
static void run_fail(int bad, fail_job jobs[2])
{
    rank_ctxs_create();
    tgroup g;
    tg_init(&g, 2);
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        jobs[r] = (fail_job){.m = {&g, r}, .bad = r == 1 ? bad : 0};
        jobs[r].group = (ndcl_group){2, r, tg_allreduce, &jobs[r].m};
        ck_assert_int_eq(pthread_create(&th[r], NULL, fail_main, &jobs[r]), 0);
    }
    for (int r = 0; r < 2; r++)
        ck_assert_int_eq(pthread_join(th[r], NULL), 0);
    tg_free(&g);
}

/* A rank whose input is bad fails with its own status; the other returns
 * NDCL_ERR_GROUP from the same collective instead of waiting. */
START_TEST(bad_rank_input)
{
    fail_job j[2];
    run_fail(1, j);
    ck_assert_int_eq(j[1].fwd, NDCL_ERR_INVALID_ARG);
    ck_assert_msg(j[0].fwd == NDCL_ERR_GROUP, "rank 0: %s: %s",
                  ndcl_status_string(j[0].fwd), j[0].err);
    ck_assert_msg(strstr(j[0].err, "rank(s) 1"), "rank 0's message: %s", j[0].err);
    run_fail(3, j); /* x NULL: caught before the layer's kind */
    ck_assert_int_eq(j[1].fwd, NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(j[0].fwd, NDCL_ERR_GROUP);
}
END_TEST

/* Inputs that differ beyond the batch dimension fail on every rank. */
START_TEST(ranks_shapes_differ)
{
    fail_job j[2];
    run_fail(2, j);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(j[r].fwd == NDCL_ERR_INVALID_ARG, "rank %d: %s: %s", r,
                      ndcl_status_string(j[r].fwd), j[r].err);
        ck_assert_msg(strstr(j[r].err, "differ in shape"), "rank %d: %s", r, j[r].err);
    }
}
END_TEST

/* A bad dy on one rank fails the other's backward too. */
START_TEST(bad_rank_backward)
{
    fail_job j[2];
    run_fail(4, j);
    ck_assert_int_eq(j[0].fwd, NDCL_SUCCESS);
    ck_assert_int_eq(j[1].fwd, NDCL_SUCCESS);
    ck_assert_int_eq(j[1].bwd, NDCL_ERR_INVALID_ARG);
    ck_assert_msg(j[0].bwd == NDCL_ERR_GROUP, "rank 0: %s: %s",
                  ndcl_status_string(j[0].bwd), j[0].err);
}
END_TEST

/* Only steps on batch statistics make collectives: a training forward
 * three, its backward one; an evaluation forward and the backward after it
 * none. */
START_TEST(collectives_per_call)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    ndcl_linear_desc d = ndcl_linear_desc_default(4, 2);
    TEST_OK(ctx, ndcl_linear_create(ctx, &d, &l));
    tgroup g;
    tg_init(&g, 1);
    member m = {&g, 0};
    ndcl_group grp = {1, 0, tg_allreduce, &m};
    TEST_OK(ctx, ndcl_layer_set_group(l, &grp));
    float v[3 * 4];
    test_fill_uniform(v, 12, 9u, -1.0f, 1.0f);
    ndcl_tensor *x = test_tensor_from(ctx, 2, (size_t[]){3, 4}, v), *y = NULL, *dx = NULL;
    ndcl_tensor *dy = test_tensor_from(ctx, 2, (size_t[]){3, 2}, v);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    ck_assert_uint_eq(g.calls[0], 3);
    TEST_OK(ctx, ndcl_layer_backward(l, dy, &dx, NULL, NULL));
    ck_assert_uint_eq(g.calls[0], 4);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
    TEST_OK(ctx, ndcl_layer_backward(l, dy, &dx, NULL, NULL));
    ck_assert_uint_eq(g.calls[0], 7);
    TEST_OK(ctx, ndcl_finish(ctx));
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(dy);
    ndcl_tensor_destroy(dx);
    ndcl_layer_destroy(l);
    tg_free(&g);
}
END_TEST

START_TEST(set_group_checks)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = NULL;
    ndcl_linear_desc d = ndcl_linear_desc_default(4, 2);
    TEST_OK(ctx, ndcl_linear_create(ctx, &d, &l));
    member m = {NULL, 0};
    ndcl_group g = {2, 2, tg_allreduce, &m};
    ck_assert_int_eq(ndcl_layer_set_group(l, &g), NDCL_ERR_INVALID_ARG);
    g.rank = -1;
    ck_assert_int_eq(ndcl_layer_set_group(l, &g), NDCL_ERR_INVALID_ARG);
    g = (ndcl_group){0, 0, tg_allreduce, &m};
    ck_assert_int_eq(ndcl_layer_set_group(l, &g), NDCL_ERR_INVALID_ARG);
    g = (ndcl_group){1, 0, NULL, &m};
    ck_assert_int_eq(ndcl_layer_set_group(l, &g), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_set_group(NULL, NULL), NDCL_ERR_INVALID_ARG);
    TEST_OK(ctx, ndcl_layer_set_group(l, NULL));
    ndcl_layer_destroy(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync");
    TEST_ADD(s, conv_3x3_groups1);
    TEST_ADD(s, conv_3x3_groups2_stride2);
    TEST_ADD(s, conv_1x1);
    TEST_ADD(s, conv_1x1_groups3);
    TEST_ADD(s, linear_layer);
    TEST_ADD(s, channel_leftover);
    TEST_ADD(s, channel_2d);
    TEST_ADD(s, group_of_one);
    TEST_ADD(s, bad_rank_input);
    TEST_ADD(s, ranks_shapes_differ);
    TEST_ADD(s, bad_rank_backward);
    TEST_ADD(s, collectives_per_call);
    TEST_ADD(s, set_group_checks);
    int rc = test_run(s);
    for (int r = 0; r < MAX_RANKS; r++)
        ndcl_context_destroy(rank_ctxs[r]);
    return rc;
}
