/* algo.c - the table of convolution algorithms, the choice per workspace
 * and geometry (forced, or measured once per device and geometry and
 * remembered in the find-db file), and the dispatch of each pass. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blas/blas.h"
#include "config.h"
#include "conv/conv_algo.h"

const ndcl_conv_algo *const ndcl_conv_algos[] = {
    &ndcl_conv_gemm,
#ifdef NDCL_DNNL
    &ndcl_conv_dnnl,
    &ndcl_conv_winograd,
#endif
};
const size_t ndcl_conv_algo_count = sizeof ndcl_conv_algos / sizeof ndcl_conv_algos[0];

static const char *const names[] = {"auto", "gemm", "dnnl", "winograd"};
#define N_NAMES (sizeof names / sizeof names[0])

/* The batch a measurement runs: enough images for every algorithm to reach
 * its rate, few enough that measuring costs a few of the real calls. */
#define MEASURE_N 32

/* The largest error auto accepts, relative to the largest output, of an
 * algorithm's outputs against im2col + GEMM's on the measurement's data:
 * the accuracy contract of ndcl.h (1e-3 for the loosest algorithm). */
#define AUTO_TOLERANCE 1e-3

/* The find-db's file name and line tag (its format's version). */
#define FIND_DB "conv-find.txt"
#define FIND_TAG "ndcl-conv-find-1"

const char *ndcl_conv_algorithm_name(ndcl_conv_algorithm a)
{
    return (unsigned)a < N_NAMES ? names[a] : NULL;
}

const ndcl_conv_algo *ndcl_conv_algo_find(ndcl_conv_algorithm id)
{
    for (size_t i = 0; i < ndcl_conv_algo_count; i++)
        if (ndcl_conv_algos[i]->id == id) return ndcl_conv_algos[i];
    return NULL;
}

static const ndcl_conv_algo *by_name(const char *name)
{
    for (size_t i = 0; i < ndcl_conv_algo_count; i++)
        if (!strcmp(ndcl_conv_algos[i]->name, name)) return ndcl_conv_algos[i];
    return NULL;
}

ndcl_status ndcl_conv_algorithm_available(ndcl_context *ctx, ndcl_conv_algorithm a,
                                          int *available)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, available != NULL, "available is NULL");
    NDCL_CHECK_ARG(ctx, (unsigned)a < N_NAMES, "algorithm=%d is not an ndcl_conv_algorithm",
                   (int)a);
    const ndcl_conv_algo *e = ndcl_conv_algo_find(a);
    *available = a == NDCL_CONV_AUTO || (e && e->available(ctx));
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ forcing */

/* The algorithm NDCL_CONV_ALGO names (AUTO when unset or empty). */
static ndcl_status env_force(ndcl_context *ctx, ndcl_conv_algorithm *out)
{
    const char *v = getenv("NDCL_CONV_ALGO");
    *out = NDCL_CONV_AUTO;
    if (!v || !*v) return NDCL_SUCCESS;
    for (size_t i = 0; i < N_NAMES; i++)
        if (!strcmp(v, names[i])) {
            *out = (ndcl_conv_algorithm)i;
            return NDCL_SUCCESS;
        }
    return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                     "NDCL_CONV_ALGO=%s is none of auto, gemm, dnnl, winograd", v);
}

static int describe(const ndcl_conv_geom *g, char *buf, size_t size)
{
    return snprintf(buf, size,
                    "the convolution of %zu x %zu x %zu x %zu by %zu %zux%zu filters "
                    "(stride %zu, padding %zu, dilation %zu, %zu groups)",
                    g->n, g->c, g->h, g->w, g->cout, g->kh, g->kw, g->stride, g->pad,
                    g->dil, g->groups);
}

static ndcl_status forced(ndcl_context *ctx, const ndcl_conv_geom *g,
                          ndcl_conv_algorithm id, const char *by,
                          const ndcl_conv_algo **out)
{
    const ndcl_conv_algo *a = ndcl_conv_algo_find(id);
    char geom[256], why[256] = "";
    describe(g, geom, sizeof geom);
    if (!a)
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "convolution algorithm %s (forced by %s) is not built into this "
                         "library, so it cannot compute %s",
                         names[id], by, geom);
    if (!a->available(ctx))
        return ndcl_fail(
            ctx, NDCL_ERR_UNSUPPORTED,
            "convolution algorithm %s (forced by %s) does not serve device %s "
            "(a CPU device whose memory is the host's), so it cannot compute %s",
            a->name, by, ctx->info.name, geom);
    if (!a->fits(ctx, g, why, sizeof why))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "convolution algorithm %s (forced by %s) does not fit %s: %s",
                         a->name, by, geom, why);
    *out = a;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ find-db */

bool ndcl_conv_find_db_path(char *buf, size_t size)
{
    char dir[1024];
    if (!ndcl_cache_dir(dir, sizeof dir)) return false;
    int n = snprintf(buf, size, "%s/%s", dir, FIND_DB);
    return n > 0 && (size_t)n < size;
}

/* What makes a measurement this device's: the device and its driver, the
 * BLAS engine under gemm, the library's version and its algorithms. */
static uint64_t device_key(ndcl_context *ctx)
{
    const ndcl_device_info *i = &ctx->info;
    const ndcl_blas_engine *blas;
    const char *engine = ndcl_blas_engine_of(ctx, &blas) == NDCL_SUCCESS ? blas->name : "";
    const char *parts[] = {i->platform_name, i->platform_version,
                           i->name,          i->driver_version,
                           engine,           NDCL_VERSION_STRING};
    uint64_t h = NDCL_FNV_OFFSET;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        h = ndcl_hash(h, parts[k], strlen(parts[k]) + 1);
    for (size_t k = 0; k < ndcl_conv_algo_count; k++)
        h = ndcl_hash(h, ndcl_conv_algos[k]->name, strlen(ndcl_conv_algos[k]->name) + 1);
    return h;
}

/* The geometry's part of an entry's key. */
static void geom_key(const ndcl_conv_geom *g, char *buf, size_t size)
{
    snprintf(buf, size, "%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu", g->n, g->c, g->h,
             g->w, g->cout, g->kh, g->kw, g->stride, g->pad, g->dil, g->groups, g->chunk);
}

/* An entry: "TAG devkey geom fwd bwd_data bwd_weights checksum", the
 * checksum the hash of everything before it. */
static uint64_t line_sum(const char *text, size_t len)
{
    return ndcl_hash(NDCL_FNV_OFFSET, text, len);
}

/* The find-db opened for reading only when it is a regular file, without
 * blocking (a FIFO there must not hang the library); NULL otherwise. */
static FILE *open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) close(fd);
    return f;
}

/* The choices this process made or read, so that every layer of one
 * geometry takes the same algorithms even where the find-db cannot be
 * written or read (NDCL_CACHE=0, an unwritable directory): a run's
 * numbers do not depend on which layer measured first. */
#define MEMO_SIZE 256
static struct memo {
    uint64_t dev;
    char gk[160];
    const ndcl_conv_algo *pass[NDCL_CONV_PASSES];
} memo[MEMO_SIZE];
static size_t memo_n, memo_next;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static bool memo_lookup(uint64_t dev, const char *gk, const ndcl_conv_algo *out[])
{
    bool found = false;
    pthread_mutex_lock(&memo_lock);
    for (size_t i = 0; i < memo_n && !found; i++)
        if (memo[i].dev == dev && !strcmp(memo[i].gk, gk)) {
            memcpy(out, memo[i].pass, sizeof memo[i].pass);
            found = true;
        }
    pthread_mutex_unlock(&memo_lock);
    return found;
}

static void memo_store(uint64_t dev, const char *gk, const ndcl_conv_algo *const pass[])
{
    pthread_mutex_lock(&memo_lock);
    struct memo *m = &memo[memo_next];
    memo_next = (memo_next + 1) % MEMO_SIZE;
    if (memo_n < MEMO_SIZE) memo_n++;
    m->dev = dev;
    snprintf(m->gk, sizeof m->gk, "%s", gk);
    memcpy(m->pass, pass, sizeof m->pass);
    pthread_mutex_unlock(&memo_lock);
}

void ndcl_conv_memo_clear(void)
{
    pthread_mutex_lock(&memo_lock);
    memo_n = memo_next = 0;
    pthread_mutex_unlock(&memo_lock);
}

/* The entry of (dev, geom) in the file, validated: its checksum, names
 * built, available and fitting g. False when absent or not trusted. */
static bool db_lookup(ndcl_context *ctx, const ndcl_conv_geom *g, uint64_t dev,
                      const char *gk, const ndcl_conv_algo *out[NDCL_CONV_PASSES])
{
    char path[1100], line[512];
    if (!ndcl_conv_find_db_path(path, sizeof path)) return false;
    FILE *f = open_regular(path);
    if (!f) return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char tag[32], geom[128], an[NDCL_CONV_PASSES][32];
        uint64_t key, sum;
        char *last = strrchr(line, ' ');
        if (!last || sscanf(last + 1, "%" SCNx64, &sum) != 1) continue;
        if (line_sum(line, (size_t)(last - line)) != sum) continue; /* corrupt */
        if (sscanf(line, "%31s %" SCNx64 " %127s %31s %31s %31s", tag, &key, geom, an[0],
                   an[1], an[2]) != 6 ||
            strcmp(tag, FIND_TAG) || key != dev || strcmp(geom, gk))
            continue;
        bool ok = true;
        for (int p = 0; p < NDCL_CONV_PASSES && ok; p++) {
            const ndcl_conv_algo *a = by_name(an[p]);
            char why[256];
            ok = a && a->available(ctx) && a->fits(ctx, g, why, sizeof why);
            out[p] = a;
        }
        if (ok)
            found = true;
        else
            ndcl_trace("find-db entry for %s names an algorithm that does not fit: "
                       "measuring again",
                       gk);
    }
    fclose(f);
    return found;
}

/* Writes the entry, replacing (dev, geom)'s and dropping corrupt lines,
 * through the atomic writer (runtime/files.c): readers never see a partial
 * file, and concurrent stores from contexts on other threads each leave a
 * whole one. Failures only lose the memory of the measurement. */
static void db_store(uint64_t dev, const char *gk,
                     const ndcl_conv_algo *c[NDCL_CONV_PASSES])
{
    char path[1100], line[512], head[256];
    if (!ndcl_conv_find_db_path(path, sizeof path)) return;
    snprintf(head, sizeof head, "%s %016" PRIx64 " %s ", FIND_TAG, dev, gk);
    char dir[1024];
    if (ndcl_cache_dir(dir, sizeof dir)) ndcl_make_dirs(dir);
    /* The new file in memory (at most 10001 lines of < 512 bytes). */
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out) return;
    FILE *in = open_regular(path);
    long kept = 0;
    while (in && kept < 10000 && fgets(line, sizeof line, in)) {
        char *last = strrchr(line, ' ');
        uint64_t sum;
        if (!last || sscanf(last + 1, "%" SCNx64, &sum) != 1 ||
            line_sum(line, (size_t)(last - line)) != sum || !strchr(line, '\n'))
            continue;
        if (!strncmp(line, head, strlen(head))) continue;
        fputs(line, out);
        kept++;
    }
    if (in) fclose(in);
    int n =
        snprintf(line, sizeof line, "%s%s %s %s", head, c[0]->name, c[1]->name, c[2]->name);
    fprintf(out, "%s %016" PRIx64 "\n", line, line_sum(line, (size_t)n));
    if (fclose(out) == 0) {
        const void *part[1] = {text};
        bool no_temp;
        (void)ndcl_file_replace(path, part, &size, 1, false, &no_temp);
    }
    free(text);
}

/* ------------------------------------------------------------ measuring */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Buffers of a measurement: x, w, b, y, dy, dx, dW, db. */
enum { BX, BW, BB, BY, BDY, BDX, BDW, BDB, N_BUFS };

typedef struct bench {
    cl_mem mem[N_BUFS];
    size_t count[N_BUFS];
    float *ref[N_BUFS], *out; /* gemm's outputs; a candidate's */
} bench;

static ndcl_status bench_alloc(ndcl_context *ctx, const ndcl_conv_geom *g, bench *b)
{
    const size_t xs = g->n * g->c * g->h * g->w, ws = g->cout * (g->K / g->groups),
                 ys = g->n * g->cout * g->P;
    const size_t counts[N_BUFS] = {xs, ws, g->cout, ys, ys, xs, ws, g->cout};
    size_t most = 0;
    for (int i = 0; i < N_BUFS; i++) {
        cl_int err;
        b->count[i] = counts[i];
        if (counts[i] > most) most = counts[i];
        b->mem[i] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                   counts[i] * sizeof(float), NULL, &err);
        if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clCreateBuffer(measurement)", err);
    }
    b->out = malloc(most * sizeof(float));
    if (!b->out) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "measurement buffers");
    /* Inputs in [-1, 1) from a fixed sequence. */
    uint32_t s = 12345;
    const int inputs[] = {BX, BW, BB, BDY};
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        const int i = inputs[k];
        for (size_t j = 0; j < counts[i]; j++) {
            s = s * 1664525u + 1013904223u;
            b->out[j] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
        }
        cl_int err = clEnqueueWriteBuffer(ctx->queue, b->mem[i], CL_TRUE, 0,
                                          counts[i] * sizeof(float), b->out, 0, NULL, NULL);
        if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueWriteBuffer", err);
    }
    return NDCL_SUCCESS;
}

static void bench_free(bench *b)
{
    for (int i = 0; i < N_BUFS; i++) {
        if (b->mem[i]) clReleaseMemObject(b->mem[i]);
        free(b->ref[i]);
    }
    free(b->out);
}

static ndcl_status run_pass(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                            const ndcl_conv_algo *a, int pass, bench *b)
{
    cl_mem *m = b->mem;
    switch (pass) {
    case NDCL_CONV_FWD: return a->forward(ctx, g, ws, m[BX], m[BW], m[BB], m[BY]);
    case NDCL_CONV_BWD_DATA: return a->backward_data(ctx, g, ws, m[BW], m[BDY], m[BDX]);
    default: return a->backward_weights(ctx, g, ws, m[BX], m[BDY], m[BDW], m[BDB]);
    }
}

/* The pass's outputs compared with gemm's (kept the first time, when a is
 * gemm): the largest error relative to the largest output. */
static ndcl_status check_pass(ndcl_context *ctx, int pass, bench *b, bool reference,
                              double *err)
{
    static const int outs[NDCL_CONV_PASSES][2] = {{BY, -1}, {BDX, -1}, {BDW, BDB}};
    *err = 0;
    for (int k = 0; k < 2 && outs[pass][k] >= 0; k++) {
        const int i = outs[pass][k];
        cl_int e = clEnqueueReadBuffer(ctx->queue, b->mem[i], CL_TRUE, 0,
                                       b->count[i] * sizeof(float), b->out, 0, NULL, NULL);
        if (e != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueReadBuffer", e);
        if (reference) {
            b->ref[i] = malloc(b->count[i] * sizeof(float));
            if (!b->ref[i]) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "measurement");
            memcpy(b->ref[i], b->out, b->count[i] * sizeof(float));
            continue;
        }
        double top = 0, diff = 0;
        for (size_t j = 0; j < b->count[i]; j++) {
            double r = fabs(b->ref[i][j]), d = fabs((double)b->out[j] - b->ref[i][j]);
            if (r > top) top = r;
            if (!(d <= diff)) diff = d; /* NaN wins */
        }
        const double rel = top > 0 ? diff / top : diff;
        if (!(rel <= *err)) *err = rel;
    }
    return NDCL_SUCCESS;
}

/* Each pass's fastest candidate within the tolerance, gemm (cand[0]) the
 * reference and the fallback. */
static ndcl_status measure(ndcl_context *ctx, const ndcl_conv_geom *g,
                           const ndcl_conv_algo **cand, int n_cand,
                           const ndcl_conv_algo *best[NDCL_CONV_PASSES])
{
    ndcl_conv_geom mg = *g;
    if (mg.n > MEASURE_N) mg.n = MEASURE_N;
    mg.chunk = 0;
    NDCL_TRY(ndcl_conv_geom_init(ctx, &mg));
    /* On a queue of its own, so that the measurement never waits for the
     * context's queue: an application may hold that one with its events
     * while it enqueues (the call then measures and returns). */
    cl_int qerr;
    cl_command_queue own = clCreateCommandQueue(ctx->context, ctx->device, 0, &qerr),
                     main_q;
    if (qerr != CL_SUCCESS)
        return ndcl_fail_cl(ctx, "clCreateCommandQueue(measurement)", qerr);
    main_q = ctx->queue;
    ctx->queue = own;
    ndcl_scratch col = {0}, tmp = {0};
    ndcl_conv_ws ws = {.col = &col, .tmp = &tmp};
    bench b = {0};
    double t_best[NDCL_CONV_PASSES];
    ndcl_status s = bench_alloc(ctx, &mg, &b);
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        best[p] = cand[0], t_best[p] = INFINITY;
    for (int c = 0; c < n_cand && s == NDCL_SUCCESS; c++)
        for (int p = 0; p < NDCL_CONV_PASSES && s == NDCL_SUCCESS; p++) {
            const ndcl_conv_algo *a = cand[c];
            double err = 0;
            /* The first run builds what the algorithm caches and gives the
             * outputs; the next are timed. */
            ndcl_status r = run_pass(ctx, &mg, &ws, a, p, &b);
            if (r == NDCL_SUCCESS) r = check_pass(ctx, p, &b, c == 0, &err);
            if (r != NDCL_SUCCESS) {
                if (c == 0) s = r; /* the reference must run */
                continue;
            }
            /* The faster of two timed runs: a shared machine's noise only
             * ever adds. */
            double t = INFINITY;
            for (int k = 0; k < 2 && r == NDCL_SUCCESS; k++) {
                clFinish(ctx->queue);
                const double t0 = now();
                r = run_pass(ctx, &mg, &ws, a, p, &b);
                clFinish(ctx->queue);
                if (now() - t0 < t) t = now() - t0;
            }
            ndcl_trace("conv %s pass %d: %.3f ms, error %.2e", a->name, p, t * 1e3, err);
            if (r == NDCL_SUCCESS && err <= AUTO_TOLERANCE && t < t_best[p])
                best[p] = a, t_best[p] = t;
        }
    ndcl_conv_ws_release(ctx, &ws);
    ndcl_scratch_release(&col);
    ndcl_scratch_release(&tmp);
    bench_free(&b);
    clFinish(own);
    ctx->queue = main_q;
    clReleaseCommandQueue(own);
    if (s == NDCL_SUCCESS) ndcl_clear_error(ctx);
    return s;
}

/* ------------------------------------------------------------ choosing */

static bool same_geom(const ndcl_conv_geom *a, const ndcl_conv_geom *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
           a->cout == b->cout && a->kh == b->kh && a->kw == b->kw &&
           a->stride == b->stride && a->pad == b->pad && a->dil == b->dil &&
           a->groups == b->groups && a->chunk == b->chunk;
}

static ndcl_status choose_auto(ndcl_context *ctx, const ndcl_conv_geom *g,
                               const ndcl_conv_algo *out[NDCL_CONV_PASSES])
{
    const ndcl_conv_algo *cand[8];
    int n = 0;
    for (size_t i = 0; i < ndcl_conv_algo_count && n < 8; i++) {
        const ndcl_conv_algo *a = ndcl_conv_algos[i];
        char why[256];
        if (a->available(ctx) && a->fits(ctx, g, why, sizeof why)) cand[n++] = a;
    }
    if (n == 0) cand[n++] = &ndcl_conv_gemm; /* it always fits */
    for (int p = 0; p < NDCL_CONV_PASSES; p++)
        out[p] = cand[0];
    if (n == 1) return NDCL_SUCCESS; /* nothing to measure */
    const uint64_t dev = device_key(ctx);
    char gk[160];
    geom_key(g, gk, sizeof gk);
    if (memo_lookup(dev, gk, out)) return NDCL_SUCCESS;
    if (db_lookup(ctx, g, dev, gk, out)) {
        memo_store(dev, gk, out);
        return NDCL_SUCCESS;
    }
    NDCL_TRY(measure(ctx, g, cand, n, out));
    ndcl_trace("conv %s: auto took %s / %s / %s", gk, out[0]->name, out[1]->name,
               out[2]->name);
    memo_store(dev, gk, out);
    db_store(dev, gk, out);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_choose(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws)
{
    ndcl_conv_algorithm force = ws->force;
    const char *by = "NDCL_LAYER_CONV_ALGO";
    if (force == NDCL_CONV_AUTO) {
        NDCL_TRY(env_force(ctx, &force));
        by = "NDCL_CONV_ALGO";
    }
    if (ws->chosen && ws->chosen_force == force && same_geom(&ws->geom, g))
        return NDCL_SUCCESS;
    ws->chosen = false;
    const ndcl_conv_algo *pass[NDCL_CONV_PASSES];
    if (force != NDCL_CONV_AUTO) {
        NDCL_TRY(forced(ctx, g, force, by, &pass[0]));
        pass[1] = pass[2] = pass[0];
    } else {
        NDCL_TRY(choose_auto(ctx, g, pass));
    }
    memcpy(ws->pass, pass, sizeof pass);
    ws->geom = *g;
    ws->chosen_force = force;
    ws->chosen = true;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_run_forward(ndcl_context *ctx, const ndcl_conv_geom *g,
                                  ndcl_conv_ws *ws, cl_mem x, cl_mem w, cl_mem b, cl_mem y)
{
    NDCL_TRY(ndcl_conv_choose(ctx, g, ws));
    return ws->pass[NDCL_CONV_FWD]->forward(ctx, g, ws, x, w, b, y);
}

ndcl_status ndcl_conv_run_backward(ndcl_context *ctx, const ndcl_conv_geom *g,
                                   ndcl_conv_ws *ws, cl_mem x, cl_mem w, cl_mem dy,
                                   cl_mem dx, cl_mem dW, cl_mem db)
{
    if (!dx && !dW && !db) return NDCL_SUCCESS;
    NDCL_TRY(ndcl_conv_choose(ctx, g, ws));
    const ndcl_conv_algo *bd = ws->pass[NDCL_CONV_BWD_DATA],
                         *bw = ws->pass[NDCL_CONV_BWD_WEIGHTS];
    /* One algorithm for both: its combined pass shares the move of dy. */
    if (dx && (dW || db) && bd == bw && bd->backward)
        return bd->backward(ctx, g, ws, x, w, dy, dx, dW, db);
    if (dW || db) NDCL_TRY(bw->backward_weights(ctx, g, ws, x, dy, dW, db));
    if (dx) NDCL_TRY(bd->backward_data(ctx, g, ws, w, dy, dx));
    return NDCL_SUCCESS;
}

void ndcl_conv_ws_release(ndcl_context *ctx, ndcl_conv_ws *ws)
{
    bool any = false;
    for (int i = 0; i < NDCL_CONV_STATE_SLOTS; i++)
        any = any || ws->state[i];
    /* Host work still queued may use the states. */
    if (any && ctx) clFinish(ctx->queue);
    for (size_t k = 0; k < ndcl_conv_algo_count; k++) {
        const ndcl_conv_algo *a = ndcl_conv_algos[k];
        if (a->slot >= 0 && ws->state[a->slot]) {
            a->release(ws->state[a->slot]);
            ws->state[a->slot] = NULL;
        }
    }
    ws->chosen = false;
}
