/* channel.h - the primitives of channel deconvolution on raw device
 * buffers: its geometry, the moves between the channels of x and the B
 * rows that are whitened, the strided sample of those rows, the leftover
 * channels' scalar normalisation, and their adjoints (kernels in
 * cl/channel.cl). The layer (layers/channel.c) strings them together. */
#ifndef NDCL_PRIMITIVES_CHANNEL_H
#define NDCL_PRIMITIVES_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl_cl.h"

/* Sizes of one channel-layer step on an input of that shape. */
typedef struct ndcl_ch_geom {
    int N, C, HW, B, c;
    size_t L;  /* columns of the B whitened rows */
    int step;  /* sampling step (ss² or 1) */
    size_t Ls; /* sampled columns */
} ndcl_ch_geom;

/* The geometry of block B and sampling stride ss on x of that shape
 * ([N, C, H, W] or [N, C]): c = ⌊C/B⌋·B channels whitened as B rows. */
void ndcl_ch_geom_init(int block, int sampling_stride, int ndim, const size_t *shape,
                       ndcl_ch_geom *g);

/* x1 (B x L) <- x's first c channels as B rows. */
ndcl_status ndcl_ch_gather(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x, cl_mem x1);

/* y's first c channels <- out (B x L), the inverse move of ndcl_ch_gather. */
ndcl_status ndcl_ch_scatter(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem out, cl_mem y);

/* xs (Ls x B) <- every step-th column of x1. */
ndcl_status ndcl_ch_sample(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x1, cl_mem xs);

/* xs (rows x B) <- a rank's share of a group's sample of x1, by the table
 * tab (layers/channel.c builds it: per chunks of x1's columns). */
ndcl_status ndcl_ch_sample_share(ndcl_context *ctx, const ndcl_ch_geom *g, int per,
                                 cl_mem tab, size_t rows, cl_mem x1, cl_mem xs);

/* x1 (B x L) -= mean (B), row by row, in place. */
ndcl_status ndcl_ch_center_rows(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem mean,
                                cl_mem x1);

/* out (B x L) <- D (B x B) · x1c (B x L): the whitening product. */
ndcl_status ndcl_ch_whiten(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem D, cl_mem x1c,
                           cl_mem out);

/* The adjoint of ndcl_ch_whiten: dx1c <- Dᵀ·dout, and dD <- dout·x1cᵀ
 * unless dD is NULL. */
ndcl_status ndcl_ch_whiten_backward(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem D,
                                    cl_mem x1c, cl_mem dout, cl_mem dx1c, cl_mem dD);

/* out[0], out[1] <- the mean and unbiased variance of the leftover
 * channels' kept values (every step-th of a sample's). */
ndcl_status ndcl_ch_left_stats(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x,
                               cl_mem out);

/* out[0] <- Σ (v - shift) (square = 0) or Σ (v - shift)² (square = 1) over
 * the leftover channels' kept values v: a rank's share of a group's. */
ndcl_status ndcl_ch_left_moment(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem x,
                                float shift, int square, cl_mem out);

/* y's leftover channels <- (x - mean[mo]) / sqrt(var[vo] + eps). */
ndcl_status ndcl_ch_left_apply(ndcl_context *ctx, const ndcl_ch_geom *g, float eps,
                               cl_mem mean, int mo, cl_mem var, int vo, cl_mem x, cl_mem y);

/* dx1 += the adjoint of ndcl_ch_sample of dxs (Ls x B). */
ndcl_status ndcl_ch_sample_backward(ndcl_context *ctx, const ndcl_ch_geom *g, cl_mem dxs,
                                    cl_mem dx1);

/* dx1 += the adjoint of ndcl_ch_sample_share of dxs (rows x B). */
ndcl_status ndcl_ch_sample_share_backward(ndcl_context *ctx, const ndcl_ch_geom *g, int per,
                                          cl_mem tab, size_t rows, cl_mem dxs, cl_mem dx1);

/* sums[0] <- Σ dy, sums[1] <- Σ dy·(x - stats[0]) over the leftover
 * channels. */
ndcl_status ndcl_ch_left_backward_sums(ndcl_context *ctx, const ndcl_ch_geom *g,
                                       cl_mem stats, cl_mem x, cl_mem dy, cl_mem sums);

/* dx's leftover channels <- the adjoint of ndcl_ch_left_apply with mean and
 * variance at stats[0], stats[1]: through them too when train (kept values
 * counted kept; sums from ndcl_ch_left_backward_sums). */
ndcl_status ndcl_ch_left_backward(ndcl_context *ctx, const ndcl_ch_geom *g, float kept,
                                  float eps, bool train, cl_mem stats, cl_mem sums,
                                  cl_mem x, cl_mem dy, cl_mem dx);

#endif
