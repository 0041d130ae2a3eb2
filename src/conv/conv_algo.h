/* conv_algo.h - the algorithms of the plain convolution (forward, backward
 * data, backward weights) as a table, the way the BLAS engines are a table
 * of products, and the choice among them: forced per layer or by the
 * environment, or measured once per device and geometry and remembered
 * on disk (the find-db). Everything above this folder runs the plain
 * convolution through ndcl_conv_run_*. */
#ifndef NDCL_CONV_ALGO_H
#define NDCL_CONV_ALGO_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "primitives/conv2d.h"
#include "runtime/runtime.h"

enum { NDCL_CONV_FWD, NDCL_CONV_BWD_DATA, NDCL_CONV_BWD_WEIGHTS, NDCL_CONV_PASSES };

/* Slots of per-algorithm state in a workspace (oneDNN's direct and
 * Winograd primitives). */
enum { NDCL_CONV_STATE_SLOTS = 4 };

/* What one user of the plain convolution (a layer, ndcl-bench, a test)
 * keeps from call to call: the chunk workspaces of im2col + GEMM (the
 * owner's scratches), each algorithm's state for the last geometry
 * (oneDNN's primitives, reorders and scratchpad), the algorithm the owner
 * forces, and the choice made for the last geometry. Zero-initialise,
 * point col and tmp at scratches, release with ndcl_conv_ws_release. */
typedef struct ndcl_conv_ws {
    ndcl_scratch *col, *tmp;
    void *state[NDCL_CONV_STATE_SLOTS];
    ndcl_conv_algorithm force; /* NDCL_CONV_AUTO: NDCL_CONV_ALGO or the find-db */
    /* The choice for geom, valid while `chosen` (a new geometry or forced
     * algorithm chooses again). */
    bool chosen;
    ndcl_conv_geom geom;
    ndcl_conv_algorithm chosen_force;
    const struct ndcl_conv_algo *pass[NDCL_CONV_PASSES];
} ndcl_conv_ws;

/* One algorithm. Every entry computes the same functions with the
 * contracts of ndcl_conv_forward and ndcl_conv_backward (primitives/
 * conv2d.h), enqueued in the order of the context's queue without blocking
 * the caller, up to its rounding (the accuracy contract of ndcl.h). */
typedef struct ndcl_conv_algo {
    ndcl_conv_algorithm id;
    const char *name; /* as NDCL_CONV_ALGO, ndcl-query and ndcl-bench spell it */
    int slot;         /* its ws->state slot, or -1 */
    /* Whether it serves ctx's device at all. */
    bool (*available)(ndcl_context *ctx);
    /* Whether it computes every pass of g on ctx's device; when not, a
     * reason is written to why. */
    bool (*fits)(ndcl_context *ctx, const ndcl_conv_geom *g, char *why, size_t why_size);
    /* Bytes of workspace it holds for g beyond the tensors themselves. */
    ndcl_status (*workspace)(ndcl_context *ctx, const ndcl_conv_geom *g, size_t *bytes);
    /* y <- conv(x, w) + b (b may be NULL). */
    ndcl_status (*forward)(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                           cl_mem x, cl_mem w, cl_mem b, cl_mem y);
    /* dx <- the adjoint in x of dy. */
    ndcl_status (*backward_data)(ndcl_context *ctx, const ndcl_conv_geom *g,
                                 ndcl_conv_ws *ws, cl_mem w, cl_mem dy, cl_mem dx);
    /* dW <- the adjoint in w, db <- Σ dy (either may be NULL). */
    ndcl_status (*backward_weights)(ndcl_context *ctx, const ndcl_conv_geom *g,
                                    ndcl_conv_ws *ws, cl_mem x, cl_mem dy, cl_mem dW,
                                    cl_mem db);
    /* Optional: both backward passes at once, where that shares work. */
    ndcl_status (*backward)(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                            cl_mem x, cl_mem w, cl_mem dy, cl_mem dx, cl_mem dW, cl_mem db);
    /* Frees its state (NULL allowed); the queue has finished. */
    void (*release)(void *state);
} ndcl_conv_algo;

/* The table: im2col + GEMM first (every device, every geometry), then the
 * faster ones that were built, for the devices and geometries they fit. */
extern const ndcl_conv_algo *const ndcl_conv_algos[];
extern const size_t ndcl_conv_algo_count;

/* im2col + GEMM through the BLAS engine (gemm.c). */
extern const ndcl_conv_algo ndcl_conv_gemm;
#ifdef NDCL_DNNL
/* oneDNN on CPU devices whose memory is the host's (dnnl.c): direct
 * convolution on blocked tensors, and Winograd F(4x4, 3x3). */
extern const ndcl_conv_algo ndcl_conv_dnnl;
extern const ndcl_conv_algo ndcl_conv_winograd;
#endif

/* The entry of id, or NULL where it is not built. */
const ndcl_conv_algo *ndcl_conv_algo_find(ndcl_conv_algorithm id);

/* Resolves ws's algorithm of each pass for g (cached in ws for the same
 * geometry): the owner's forced one, else NDCL_CONV_ALGO's, else the
 * find-db's or a measurement's. A forced algorithm that is not built or
 * does not fit g is NDCL_ERR_UNSUPPORTED naming both. */
ndcl_status ndcl_conv_choose(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws);

/* The plain convolution's passes through ws's chosen algorithms. */
ndcl_status ndcl_conv_run_forward(ndcl_context *ctx, const ndcl_conv_geom *g,
                                  ndcl_conv_ws *ws, cl_mem x, cl_mem w, cl_mem b, cl_mem y);
/* dx, dW, db as ndcl_conv_backward (any may be NULL); dx and dW may come
 * from different algorithms. */
ndcl_status ndcl_conv_run_backward(ndcl_context *ctx, const ndcl_conv_geom *g,
                                   ndcl_conv_ws *ws, cl_mem x, cl_mem w, cl_mem dy,
                                   cl_mem dx, cl_mem dW, cl_mem db);

/* Waits for ctx's queue and frees each algorithm's state (not the
 * scratches, the owner's). */
void ndcl_conv_ws_release(ndcl_context *ctx, ndcl_conv_ws *ws);

/* Forgets the choices this process remembers beside the find-db (every
 * layer of one geometry takes the same algorithms within a process, even
 * where the find-db cannot be written); for tests of the find-db. */
void ndcl_conv_memo_clear(void);

/* The find-db file of ctx's device (for tests and ndcl-query): false when
 * there is no cache directory or the cache is off (NDCL_CACHE=0). */
bool ndcl_conv_find_db_path(char *buf, size_t size);

#endif
