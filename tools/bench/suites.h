/* suites.h - ndcl-bench's suites as one table: per suite its name, its
 * --help entry, the problems it applies to, its setup, the timed call and
 * its flops/bytes model, and how its row relates to the others. */
#ifndef NDCL_BENCH_SUITES_H
#define NDCL_BENCH_SUITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "bench.h"
#include "host_gemm.h"
#include "ndcl.h"
#include "shapes.h"

/* Newton-Schulz iterations of every layer benchmarked (the layers'
 * default), also used in the flop counts. */
#define N_ITER 5
/* Delinear's default block: the linear suite keeps it (clamped to F). */
#define LINEAR_BLOCK 512

/* The suites, in the table's (and the output's) order; the ids name the
 * rows others refer to. */
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

/* A row's vs_conv divides its median by its reference's: the plain conv
 * (S_CONV), its backward (S_CBACK), or their sum (REF_CONV_STEP). */
enum { REF_NONE = -1, REF_CONV_STEP = S_COUNT };

typedef struct suite {
    const char *name; /* as --suite and the rows spell it */
    /* --help: the name it is listed under ("" for an entry listed under the
     * previous one's) and its text, lines after the first indented there. */
    const char *help_name, *help;
    bool gemm_row;            /* runs on --gemm problems too (else shapes only) */
    ndcl_conv_algorithm algo; /* a plain-conv suite's algorithm (AUTO: the table's) */
    int reference;            /* vs_conv's reference, or REF_NONE */
    /* Allocates and fills what a call needs (false with the error set);
     * may set skip (no row: an algorithm that does not fit the shape). */
    bool (*setup)(bench *b);
    /* Useful flops and bytes moved per call (0: not counted) and the note. */
    void (*cost)(bench *b);
    /* Untimed work before each call (NULL: none). */
    ndcl_status (*prepare)(bench *b);
    /* Enqueues one timed call. */
    ndcl_status (*call)(bench *b);
    /* Adds to the note what the runs decided (NULL: nothing). */
    void (*decided)(bench *b);
    /* Bytes of workspace the row reports, or NAN (NULL: none). */
    double (*workspace)(const bench *b);
} suite;

extern const suite suites[S_COUNT];

/* The suite's name, "layer-step" for the derived row. */
const char *suite_name(suite_id s);

/* Whether the suite runs on the shape (a --gemm problem runs only the
 * gemm rows). */
bool suite_applies(suite_id s, const shape *sh);

/* Prints the suites' part of --help. */
void suites_help(FILE *f);

/* The error behind a failed setup or call: "suite shape: what: status:
 * detail", and its status (a shape the library refuses is the argument's
 * fault, anything else the device's). */
extern char error_msg[2048];
extern ndcl_status error_status;

/* Runs setup and cost; false with error_msg set. */
bool bench_setup(bench *b);
/* One timed call (prepare untimed before it); false with error_msg set. */
bool bench_time(bench *b, double *ms);
void bench_teardown(bench *b);

#endif
