/* group.h - batch statistics across the ranks of a group (ndcl_layer_set_group):
 * the collectives of one layer call with their failure flag, the header that
 * tells each rank where its slice of the global batch starts, and the moves
 * of partial sums between the device and the host buffer that is reduced. */
#ifndef NDCL_LAYERS_GROUP_H
#define NDCL_LAYERS_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl.h"
#include "runtime/runtime.h"

/* Values per rank in the header: failed, ndim, shape[0..3]. */
#define NDCL_SYNC_SLOT 6

/* The group state a layer keeps. */
typedef struct ndcl_sync {
    bool on;
    ndcl_context *ctx; /* the layer's: where the moves run, errors go */
    ndcl_group g;
    double *buf; /* one collective's values, allocated by set_group for the
                    largest, so that a collective never needs memory */
    size_t cap;
    float *fbuf; /* device reads and writes */
    size_t fcap;
    size_t bw_count; /* values of the backward's collective */
    /* The last grouped forward: this rank's first sample, the global
     * batch, and what its backward needs. */
    bool bw_due;       /* it used batch statistics in training: the backward
                          makes one collective */
    bool bw_active;    /* set by layer.c while such a backward runs */
    size_t first;      /* first sample of this rank's slice */
    size_t total;      /* samples in the global batch */
    size_t rows;       /* this rank's rows of the statistics' data matrix */
    size_t total_rows; /* the group's rows */
    size_t kept;       /* channel: the group's kept leftover values */
    ndcl_scratch xcm;  /* centred kinds: column means over the group of the
                          centred data matrix (the centring's gradient) */
    ndcl_scratch idx;  /* channel: the sample table of this rank's share */
} ndcl_sync;

/* The header collective of a grouped forward: local is this rank's status
 * so far, x its input (NULL when it failed before one was checked). On
 * success s->first and s->total hold this rank's slice; every rank
 * fails with the same status when a rank failed (NDCL_ERR_GROUP on the
 * others, its own on that rank) or the shapes differ beyond the batch
 * dimension (NDCL_ERR_INVALID_ARG). */
ndcl_status ndcl_sync_header(ndcl_sync *s, ndcl_status local, const ndcl_tensor *x);

/* Sums s->buf[0 .. count-1] across the group; buf[0] is the failure
 * flag, set here from local (a failed rank sends zeros). Returns local when
 * it failed, NDCL_ERR_GROUP when another rank did, the allreduce's own
 * status when it failed, else NDCL_SUCCESS with the sums in buf[1 ..]. */
ndcl_status ndcl_sync_sum(ndcl_sync *s, ndcl_status local, size_t count);

/* A collective of count values that only carries this rank's failure
 * (every value else 0); the status returned is failed. */
ndcl_status ndcl_sync_fail(ndcl_sync *s, ndcl_status failed, size_t count);

/* dst[i] = mem[off + i] for i < n, as doubles (n = 0: nothing). */
ndcl_status ndcl_sync_get(ndcl_sync *s, cl_mem mem, size_t off, size_t n, double *dst);

/* dst <- the upper triangles (row by row, i <= j) of batch n x n matrices
 * at mem: batch * n*(n+1)/2 values. */
ndcl_status ndcl_sync_get_tri(ndcl_sync *s, cl_mem mem, size_t batch, size_t n,
                              double *dst);

/* mem[off + i] = (float)(src[i] * scale) for i < n. */
ndcl_status ndcl_sync_put(ndcl_sync *s, const double *src, size_t n, double scale,
                          cl_mem mem, size_t off);

/* The inverse of ndcl_sync_get_tri: batch full symmetric n x n matrices
 * (float)(src * scale), plus eps on their diagonals, into mem. */
ndcl_status ndcl_sync_put_tri(ndcl_sync *s, const double *src, size_t batch, size_t n,
                              double scale, float eps, cl_mem mem);

/* The centred statistics of a data matrix X (rows x groups*nf, this rank's
 * share of the group's total_rows rows), as ndcl_col_mean, ndcl_center and
 * ndcl_cov compute them on one rank: mean (groups*nf) and cov (groups x nf x
 * nf, / total_rows + eps I) of the group's rows, X centred in place, and
 * s->xcm for the backward. Two collectives; local is the status of
 * the work before (a failed rank still takes part). */
ndcl_status ndcl_sync_centred_stats(ndcl_sync *s, ndcl_status local, cl_mem X, size_t rows,
                                    size_t groups, size_t nf, size_t total_rows, float eps,
                                    cl_mem mean, cl_mem cov);

/* One device buffer's first n floats in a collective; mem NULL sends n
 * zeros and receives nothing. */
typedef struct ndcl_sync_seg {
    cl_mem mem;
    size_t n;
} ndcl_sync_seg;

/* The backward's collective: the segments' values of this rank (the
 * gradients of the statistics, linear in its dy) summed over the group and
 * written back in place. 1 + the segments' n values in all. */
ndcl_status ndcl_sync_buffers(ndcl_sync *s, ndcl_status local, const ndcl_sync_seg *seg,
                              int nseg);

/* Frees the group state (detached). */
void ndcl_sync_release(ndcl_sync *s);

#endif
