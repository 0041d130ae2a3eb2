/* dnnl.c - oneDNN's convolutions in the table: direct convolution on
 * blocked tensors and Winograd F(4x4, 3x3), on CPU devices whose memory is
 * the host's, run in queue order as host work (runtime/host_queue.h) on the
 * mapped NCHW buffers with the reorders to oneDNN's layouts at the
 * boundary. The one file that calls oneDNN. */
#include <dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv/conv_algo.h"
#include "runtime/host_queue.h"

/* Every call's blocked copies and scratchpad live in one arena shared by
 * every layer and context, used under its lock while a pass runs: they are
 * dead between passes, and the passes of one queue run one after another
 * (a network's layers would otherwise each hold copies of their tensors). */
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static char *arena;
static size_t arena_size;
static int arena_users; /* live states; the last one frees the arena */

/* One engine for the process (oneDNN's engines are thread-safe). */
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static void engine_init(void)
{
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

#define ALIGN 64
static size_t up(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* One tensor argument of a pass: the caller's NCHW buffer (mapped) and the
 * primitive's layout, with the reorder between them where they differ. */
typedef struct port {
    int arg;                  /* DNNL_ARG_* */
    int user;                 /* its region in the host work, or -1: an internal output */
    bool out;                 /* written by the pass */
    dnnl_memory_t umem;       /* the caller's layout (handle set per call) */
    dnnl_memory_t mem;        /* the primitive's (umem where they agree) */
    dnnl_primitive_t reorder; /* umem -> mem for an input, back for an output */
    size_t offset;            /* mem's place in the arena (when not umem) */
} port;

enum { MAX_PORTS = 4 };

typedef struct pass {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim; /* created on first use */
    port port[MAX_PORTS];
    int n_ports;
    dnnl_memory_t scratch;
    size_t scratch_offset, arena; /* the pass's need of the arena */
} pass;

typedef struct state {
    dnnl_alg_kind_t alg;
    ndcl_conv_geom g;
    bool bias;
    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_hint; /* a training forward: the backward's hint */
    pass pass[NDCL_CONV_PASSES];
    atomic_int failed; /* a pass failed inside the host work */
} state;

/* ------------------------------------------------------------ descriptors */

typedef struct descs {
    dnnl_memory_desc_t src, wei, bias, dst, any_src, any_wei, any_dst;
    dnnl_dims_t strides, dilates, pl, pr;
} descs;

static bool make_descs(const ndcl_conv_geom *g, descs *d, char *why, size_t why_size)
{
    const dnnl_dim_t G = (dnnl_dim_t)g->groups, O = (dnnl_dim_t)g->cout,
                     I = (dnnl_dim_t)g->c;
    const dnnl_dims_t src = {(dnnl_dim_t)g->n, I, (dnnl_dim_t)g->h, (dnnl_dim_t)g->w};
    const dnnl_dims_t dst = {(dnnl_dim_t)g->n, O, (dnnl_dim_t)g->oh, (dnnl_dim_t)g->ow};
    const dnnl_dims_t bias = {O};
    dnnl_dims_t wei = {O, I / G, (dnnl_dim_t)g->kh, (dnnl_dim_t)g->kw};
    int wnd = 4;
    dnnl_format_tag_t wtag = dnnl_oihw;
    if (G > 1) {
        const dnnl_dims_t gw = {G, O / G, I / G, (dnnl_dim_t)g->kh, (dnnl_dim_t)g->kw};
        memcpy(wei, gw, sizeof gw);
        wnd = 5;
        wtag = dnnl_goihw;
    }
    const dnnl_dim_t ext[2] = {(dnnl_dim_t)((g->kh - 1) * g->dil + 1),
                               (dnnl_dim_t)((g->kw - 1) * g->dil + 1)};
    const dnnl_dim_t in[2] = {(dnnl_dim_t)g->h, (dnnl_dim_t)g->w};
    const dnnl_dim_t out[2] = {(dnnl_dim_t)g->oh, (dnnl_dim_t)g->ow};
    for (int i = 0; i < 2; i++) {
        d->strides[i] = (dnnl_dim_t)g->stride;
        d->dilates[i] = (dnnl_dim_t)g->dil - 1;
        d->pl[i] = (dnnl_dim_t)g->pad;
        /* The right padding that gives the output size (less than the left
         * one where the stride leaves inputs unread). */
        d->pr[i] = (out[i] - 1) * (dnnl_dim_t)g->stride + ext[i] - in[i] - d->pl[i];
    }
    if (dnnl_memory_desc_init_by_tag(&d->src, 4, src, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&d->dst, 4, dst, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&d->bias, 1, bias, dnnl_f32, dnnl_x) ||
        dnnl_memory_desc_init_by_tag(&d->wei, wnd, wei, dnnl_f32, wtag) ||
        dnnl_memory_desc_init_by_tag(&d->any_src, 4, src, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&d->any_dst, 4, dst, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&d->any_wei, wnd, wei, dnnl_f32,
                                     dnnl_format_tag_any)) {
        snprintf(why, why_size, "oneDNN refuses the tensors' sizes");
        return false;
    }
    return true;
}

static dnnl_primitive_attr_t user_scratchpad(void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
        dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

/* The forward hint and the three passes' descriptors of alg for g; false
 * (with why) where oneDNN has no implementation. */
static bool make_pds(dnnl_alg_kind_t alg, const ndcl_conv_geom *g, bool bias,
                     dnnl_primitive_desc_t *hint,
                     dnnl_primitive_desc_t pd[NDCL_CONV_PASSES], char *why, size_t why_size)
{
    descs d;
    *hint = NULL;
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        pd[p] = NULL;
    pthread_once(&engine_once, engine_init);
    if (!engine) {
        snprintf(why, why_size, "oneDNN has no CPU engine");
        return false;
    }
    if (!make_descs(g, &d, why, why_size)) return false;
    dnnl_primitive_attr_t attr = user_scratchpad();
    if (!attr) {
        snprintf(why, why_size, "oneDNN refuses a user scratchpad");
        return false;
    }
    dnnl_convolution_desc_t fwd, bwd_data, bwd_weights;
    const char *step = "the forward";
    bool ok = dnnl_dilated_convolution_forward_desc_init(
                  &fwd, dnnl_forward_training, alg, &d.any_src, &d.any_wei, &d.bias,
                  &d.any_dst, d.strides, d.dilates, d.pl, d.pr) == dnnl_success &&
              dnnl_primitive_desc_create(hint, &fwd, NULL, engine, NULL) == dnnl_success;
    if (ok && !bias)
        ok = dnnl_dilated_convolution_forward_desc_init(
                 &fwd, dnnl_forward_training, alg, &d.any_src, &d.any_wei, NULL, &d.any_dst,
                 d.strides, d.dilates, d.pl, d.pr) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd[0], &fwd, attr, engine, NULL) == dnnl_success;
    if (ok) step = "the backward data";
    ok = ok &&
         dnnl_dilated_convolution_backward_data_desc_init(
             &bwd_data, alg, &d.any_src, &d.any_wei, &d.any_dst, d.strides, d.dilates, d.pl,
             d.pr) == dnnl_success &&
         dnnl_primitive_desc_create(&pd[1], &bwd_data, attr, engine, *hint) == dnnl_success;
    if (ok) step = "the backward weights";
    ok = ok &&
         dnnl_dilated_convolution_backward_weights_desc_init(
             &bwd_weights, alg, &d.any_src, &d.any_wei, &d.bias, &d.any_dst, d.strides,
             d.dilates, d.pl, d.pr) == dnnl_success &&
         dnnl_primitive_desc_create(&pd[2], &bwd_weights, attr, engine, *hint) ==
             dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        snprintf(why, why_size, "oneDNN has no %s implementation of %s",
                 alg == dnnl_convolution_winograd ? "Winograd" : "direct", step);
        for (int p = 0; p < NDCL_CONV_PASSES; p++)
            if (pd[p]) dnnl_primitive_desc_destroy(pd[p]), pd[p] = NULL;
        if (*hint) dnnl_primitive_desc_destroy(*hint), *hint = NULL;
    }
    return ok;
}

/* ------------------------------------------------------------ state */

static void pass_free(pass *p)
{
    for (int i = 0; i < p->n_ports; i++) {
        port *q = &p->port[i];
        if (q->reorder) dnnl_primitive_destroy(q->reorder);
        if (q->mem && q->mem != q->umem) dnnl_memory_destroy(q->mem);
        if (q->umem) dnnl_memory_destroy(q->umem);
    }
    if (p->scratch) dnnl_memory_destroy(p->scratch);
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    memset(p, 0, sizeof *p);
}

static void release(void *v)
{
    state *s = v;
    if (!s) return;
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        pass_free(&s->pass[p]);
    if (s->fwd_hint) dnnl_primitive_desc_destroy(s->fwd_hint);
    if (s->stream) dnnl_stream_destroy(s->stream);
    free(s);
    pthread_mutex_lock(&arena_lock);
    if (--arena_users == 0) {
        free(arena);
        arena = NULL;
        arena_size = 0;
    }
    pthread_mutex_unlock(&arena_lock);
}

/* A port of pass p: the caller's layout umd (user >= 0) against the
 * primitive's (queried by what). */
static bool add_port(pass *p, int arg, dnnl_query_t what, int index,
                     const dnnl_memory_desc_t *umd, int user, bool out)
{
    port *q = &p->port[p->n_ports++];
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(p->pd, what, index);
    q->arg = arg;
    q->user = user;
    q->out = out;
    if (!md) return false;
    if (user >= 0 &&
        dnnl_memory_create(&q->umem, umd, engine, DNNL_MEMORY_NONE) != dnnl_success)
        return false;
    if (user >= 0 && dnnl_memory_desc_equal(md, umd)) {
        q->mem = q->umem;
        return true;
    }
    if (dnnl_memory_create(&q->mem, md, engine, DNNL_MEMORY_NONE) != dnnl_success)
        return false;
    q->offset = p->arena;
    p->arena += up(dnnl_memory_desc_get_size(md));
    if (user < 0) return true;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = out ? md : umd, *to = out ? umd : md;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL) !=
        dnnl_success)
        return false;
    dnnl_status_t st = dnnl_primitive_create(&q->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return st == dnnl_success;
}

/* The ports, scratchpad and primitive of pass p (on first use); user
 * regions are numbered in the order of the ports. */
static bool pass_ready(state *s, int which, const descs *d)
{
    pass *p = &s->pass[which];
    if (p->prim) return true;
    bool ok = true;
    int u = 0;
    switch (which) {
    case NDCL_CONV_FWD:
        ok = add_port(p, DNNL_ARG_SRC, dnnl_query_src_md, 0, &d->src, u++, false) &&
             add_port(p, DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, &d->wei, u++, false) &&
             (!s->bias ||
              add_port(p, DNNL_ARG_BIAS, dnnl_query_weights_md, 1, &d->bias, u++, false)) &&
             add_port(p, DNNL_ARG_DST, dnnl_query_dst_md, 0, &d->dst, u++, true);
        break;
    case NDCL_CONV_BWD_DATA:
        ok = add_port(p, DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, &d->wei, u++, false) &&
             add_port(p, DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, &d->dst, u++,
                      false) &&
             add_port(p, DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, &d->src, u++, true);
        break;
    default:
        /* The bias gradient's port is internal when db is not wanted; the
         * job then maps three regions and the port stays in the arena. */
        ok = add_port(p, DNNL_ARG_SRC, dnnl_query_src_md, 0, &d->src, u++, false) &&
             add_port(p, DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, &d->dst, u++,
                      false) &&
             add_port(p, DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, &d->wei, u++,
                      true) &&
             add_port(p, DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, &d->bias, u++,
                      true);
        break;
    }
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    ok = ok && smd &&
         dnnl_memory_create(&p->scratch, smd, engine, DNNL_MEMORY_NONE) == dnnl_success;
    if (ok) {
        p->scratch_offset = p->arena;
        p->arena += up(dnnl_memory_desc_get_size(smd));
        ok = dnnl_primitive_create(&p->prim, p->pd) == dnnl_success;
    }
    if (!ok) {
        /* Keep the descriptor: a later call may try again. */
        dnnl_primitive_desc_t pd = p->pd;
        p->pd = NULL;
        pass_free(p);
        p->pd = pd;
    }
    return ok;
}

static bool same(const ndcl_conv_geom *a, const ndcl_conv_geom *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
           a->cout == b->cout && a->kh == b->kh && a->kw == b->kw &&
           a->stride == b->stride && a->pad == b->pad && a->dil == b->dil &&
           a->groups == b->groups;
}

/* ws's state for alg, g and bias: kept while they stay, rebuilt (after the
 * queue has finished with the old one) when they change. */
static ndcl_status get_state(ndcl_context *ctx, ndcl_conv_ws *ws, int slot,
                             dnnl_alg_kind_t alg, const ndcl_conv_geom *g, bool bias,
                             state **out)
{
    state *s = ws->state[slot];
    if (s && atomic_load(&s->failed))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "an earlier oneDNN convolution of this layer failed while it ran");
    if (s && s->alg == alg && s->bias == bias && same(&s->g, g)) {
        *out = s;
        return NDCL_SUCCESS;
    }
    if (s) {
        clFinish(ctx->queue);
        release(s);
        ws->state[slot] = NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "oneDNN state");
    pthread_mutex_lock(&arena_lock);
    arena_users++;
    pthread_mutex_unlock(&arena_lock);
    s->alg = alg;
    s->g = *g;
    s->bias = bias;
    dnnl_primitive_desc_t pd[NDCL_CONV_PASSES];
    char why[256];
    if (!make_pds(alg, g, bias, &s->fwd_hint, pd, why, sizeof why)) {
        release(s);
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED, "oneDNN: %s", why);
    }
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        s->pass[p].pd = pd[p];
    if (dnnl_stream_create(&s->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        release(s);
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED, "oneDNN refuses a stream");
    }
    ws->state[slot] = s;
    *out = s;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ running */

typedef struct job {
    state *s;
    int pass;
} job;

/* The host work: the inputs reordered into the arena, the primitive, the
 * outputs reordered back, on the stream, waited for. */
static void execute(void *const *ptr, void *args)
{
    const job *j = args;
    state *s = j->s;
    pass *p = &s->pass[j->pass];
    bool ok = true;
    pthread_mutex_lock(&arena_lock);
    if (arena_size < p->arena) {
        free(arena);
        arena = NULL;
        arena_size = 0;
        if (posix_memalign((void **)&arena, ALIGN, p->arena) == 0) arena_size = p->arena;
    }
    ok = arena_size >= p->arena;
    dnnl_exec_arg_t a[MAX_PORTS + 1];
    int n = 0;
    for (int i = 0; ok && i < p->n_ports; i++) {
        port *q = &p->port[i];
        if (q->user >= 0)
            ok = dnnl_memory_set_data_handle(q->umem, ptr[q->user]) == dnnl_success;
        if (ok && q->mem != q->umem)
            ok = dnnl_memory_set_data_handle(q->mem, arena + q->offset) == dnnl_success;
        if (ok && q->reorder && !q->out) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, q->umem}, {DNNL_ARG_TO, q->mem}};
            ok = dnnl_primitive_execute(q->reorder, s->stream, 2, r) == dnnl_success;
        }
        a[n++] = (dnnl_exec_arg_t){q->arg, q->mem};
    }
    if (ok)
        ok = dnnl_memory_set_data_handle(p->scratch, arena + p->scratch_offset) ==
             dnnl_success;
    a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    if (ok) ok = dnnl_primitive_execute(p->prim, s->stream, n, a) == dnnl_success;
    for (int i = 0; ok && i < p->n_ports; i++) {
        port *q = &p->port[i];
        if (q->reorder && q->out) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, q->mem}, {DNNL_ARG_TO, q->umem}};
            ok = dnnl_primitive_execute(q->reorder, s->stream, 2, r) == dnnl_success;
        }
    }
    if (dnnl_stream_wait(s->stream) != dnnl_success) ok = false;
    pthread_mutex_unlock(&arena_lock);
    if (!ok) atomic_store(&s->failed, 1);
}

static ndcl_host_region whole(cl_mem mem, size_t floats, bool write)
{
    return (ndcl_host_region){mem, 0, floats * sizeof(float), write};
}

static ndcl_status run(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                       int slot, dnnl_alg_kind_t alg, int which, bool bias,
                       const ndcl_host_region *r, int n_regions)
{
    state *s;
    NDCL_TRY(get_state(ctx, ws, slot, alg, g, bias, &s));
    descs d;
    char why[128];
    if (!make_descs(g, &d, why, sizeof why) || !pass_ready(s, which, &d))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "oneDNN could not create the convolution's primitives");
    const job j = {s, which};
    return ndcl_host_enqueue(ctx, r, n_regions, execute, &j, sizeof j, "oneDNN");
}

static size_t xs(const ndcl_conv_geom *g)
{
    return g->n * g->c * g->h * g->w;
}
static size_t ys(const ndcl_conv_geom *g)
{
    return g->n * g->cout * g->P;
}
static size_t wsz(const ndcl_conv_geom *g)
{
    return g->cout * (g->K / g->groups);
}

#define ENTRY(fname, alg, slot_)                                                           \
    static ndcl_status fname##_forward(ndcl_context *ctx, const ndcl_conv_geom *g,         \
                                       ndcl_conv_ws *ws, cl_mem x, cl_mem w, cl_mem b,     \
                                       cl_mem y)                                           \
    {                                                                                      \
        ndcl_host_region r[4] = {whole(x, xs(g), false), whole(w, wsz(g), false)};         \
        int n = 2;                                                                         \
        if (b) r[n++] = whole(b, g->cout, false);                                          \
        r[n++] = whole(y, ys(g), true);                                                    \
        return run(ctx, g, ws, slot_, alg, NDCL_CONV_FWD, b != NULL, r, n);                \
    }                                                                                      \
    static ndcl_status fname##_backward_data(ndcl_context *ctx, const ndcl_conv_geom *g,   \
                                             ndcl_conv_ws *ws, cl_mem w, cl_mem dy,        \
                                             cl_mem dx)                                    \
    {                                                                                      \
        const ndcl_host_region r[3] = {whole(w, wsz(g), false), whole(dy, ys(g), false),   \
                                       whole(dx, xs(g), true)};                            \
        return run(ctx, g, ws, slot_, alg, NDCL_CONV_BWD_DATA, true, r, 3);                \
    }                                                                                      \
    static ndcl_status fname##_backward_weights(ndcl_context *ctx,                         \
                                                const ndcl_conv_geom *g, ndcl_conv_ws *ws, \
                                                cl_mem x, cl_mem dy, cl_mem dW, cl_mem db) \
    {                                                                                      \
        return backward_weights(ctx, g, ws, slot_, alg, x, dy, dW, db);                    \
    }                                                                                      \
    static bool fname##_fits(ndcl_context *ctx, const ndcl_conv_geom *g, char *why,        \
                             size_t why_size)                                              \
    {                                                                                      \
        return fits(ctx, g, alg, why, why_size);                                           \
    }

/* dW and db, into a temporary where one of them is not wanted (oneDNN
 * computes both at once). */
static ndcl_status backward_weights(ndcl_context *ctx, const ndcl_conv_geom *g,
                                    ndcl_conv_ws *ws, int slot, dnnl_alg_kind_t alg,
                                    cl_mem x, cl_mem dy, cl_mem dW, cl_mem db)
{
    cl_mem tw = NULL, tb = NULL;
    cl_int err = CL_SUCCESS;
    if (!dW)
        tw = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, wsz(g) * sizeof(float), NULL,
                            &err);
    if (err == CL_SUCCESS && !db)
        tb = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, g->cout * sizeof(float), NULL,
                            &err);
    ndcl_status s =
        err == CL_SUCCESS ? NDCL_SUCCESS : ndcl_fail_cl(ctx, "clCreateBuffer", err);
    if (s == NDCL_SUCCESS) {
        const ndcl_host_region r[4] = {whole(x, xs(g), false), whole(dy, ys(g), false),
                                       whole(dW ? dW : tw, wsz(g), true),
                                       whole(db ? db : tb, g->cout, true)};
        s = run(ctx, g, ws, slot, alg, NDCL_CONV_BWD_WEIGHTS, true, r, 4);
    }
    /* Released buffers live on until the queue is done with them. */
    if (tw) clReleaseMemObject(tw);
    if (tb) clReleaseMemObject(tb);
    return s;
}

static bool available(ndcl_context *ctx)
{
    return ndcl_host_queue_fits(ctx);
}

static bool fits(ndcl_context *ctx, const ndcl_conv_geom *g, dnnl_alg_kind_t alg, char *why,
                 size_t why_size)
{
    if (!available(ctx)) {
        snprintf(why, why_size, "the device's memory is not the host's");
        return false;
    }
    if (alg == dnnl_convolution_winograd &&
        (g->kh != 3 || g->kw != 3 || g->stride != 1 || g->dil != 1 || g->groups != 1)) {
        snprintf(why, why_size,
                 "Winograd F(4x4, 3x3) needs a 3x3 kernel, stride 1, no "
                 "dilation and one group");
        return false;
    }
    dnnl_primitive_desc_t hint, pd[NDCL_CONV_PASSES];
    if (!make_pds(alg, g, true, &hint, pd, why, why_size)) return false;
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        dnnl_primitive_desc_destroy(pd[p]);
    dnnl_primitive_desc_destroy(hint);
    return true;
}

/* The arena a geometry's largest pass needs (blocked copies, scratchpad). */
static ndcl_status workspace_of(ndcl_context *ctx, const ndcl_conv_geom *g,
                                dnnl_alg_kind_t alg, size_t *bytes)
{
    ndcl_conv_ws ws = {0};
    state *s;
    descs d;
    char why[128];
    *bytes = 0;
    NDCL_TRY(get_state(ctx, &ws, 0, alg, g, true, &s));
    make_descs(g, &d, why, sizeof why);
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        if (pass_ready(s, p, &d) && s->pass[p].arena > *bytes) *bytes = s->pass[p].arena;
    release(s);
    return NDCL_SUCCESS;
}

static ndcl_status direct_workspace(ndcl_context *ctx, const ndcl_conv_geom *g,
                                    size_t *bytes)
{
    return workspace_of(ctx, g, dnnl_convolution_direct, bytes);
}
static ndcl_status wino_workspace(ndcl_context *ctx, const ndcl_conv_geom *g, size_t *bytes)
{
    return workspace_of(ctx, g, dnnl_convolution_winograd, bytes);
}

ENTRY(direct, dnnl_convolution_direct, 0)
ENTRY(wino, dnnl_convolution_winograd, 1)

const ndcl_conv_algo ndcl_conv_dnnl = {
    .id = NDCL_CONV_DNNL,
    .name = "dnnl",
    .slot = 0,
    .available = available,
    .fits = direct_fits,
    .workspace = direct_workspace,
    .forward = direct_forward,
    .backward_data = direct_backward_data,
    .backward_weights = direct_backward_weights,
    .release = release,
};

const ndcl_conv_algo ndcl_conv_winograd = {
    .id = NDCL_CONV_WINOGRAD,
    .name = "winograd",
    .slot = 1,
    .available = available,
    .fits = wino_fits,
    .workspace = wino_workspace,
    .forward = wino_forward,
    .backward_data = wino_backward_data,
    .backward_weights = wino_backward_weights,
    .release = release,
};
