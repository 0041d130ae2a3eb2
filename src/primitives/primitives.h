/* primitives.h - the deconvolution primitives on raw device buffers, as the
 * layers use them (the public wrappers in ndcl.h validate tensors and call
 * these). Every buffer is float32, row-major, offsets in elements. */
#ifndef NDCL_PRIMITIVES_H
#define NDCL_PRIMITIVES_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl_cl.h"

/* ------------------------------------------------------------ block */

/* The effective block as the original (FastDeconv, Delinear) clamps it:
 * n (channels or features) when larger, gcd(block, n) when it does not
 * divide n, n/groups for a grouped convolution (groups 1 otherwise). */
static inline int ndcl_block_clamp(int n, int block, int groups)
{
    int b = block;
    if (b > n) {
        b = n;
    } else if (n % b != 0) {
        int a = b, r = n;
        while (r) {
            int t = a % r;
            a = r;
            r = t;
        }
        b = a;
    }
    if (groups > 1) b = n / groups;
    return b;
}

/* ------------------------------------------------------------ im2col */

/* Geometry of the sampled patch matrix of a deconvolved convolution (see
 * ndcl_patches in ndcl.h). */
typedef struct ndcl_patch_geom {
    size_t n, c, h, w;    /* input NCHW */
    size_t kh, kw;        /* kernel */
    size_t pad, dil;      /* padding and dilation of the layer */
    size_t stride;        /* sampling stride S = sampling_stride * stride */
    size_t groups, block; /* G and the effective block B */
    size_t offset;        /* 1x1: the index of x's first pixel in the (n, h, w)
                             order of the global batch x is a slice of (0 alone) */
    /* Derived by ndcl_patch_geom_init: */
    size_t oh, ow;    /* sampled positions per image (kernel > 1x1) */
    size_t positions; /* sampled rows before the block split */
    size_t start;     /* 1x1: x's first sampled pixel (the global order's
                         multiples of S² that fall in x) */
    size_t nf;        /* features per block: kh*kw*B */
    size_t rows;      /* rows of X: positions * C/B (G = 1), positions (G > 1) */
    size_t cols;      /* columns of X: nf (G = 1), C*kh*kw (G > 1) */
} ndcl_patch_geom;

/* Fills the derived fields; NDCL_ERR_INVALID_ARG when the kernel does not
 * fit the padded input. 1x1 kernels keep every S²-th pixel of the
 * (n, h, w) order, counted from the global batch's first pixel (offset),
 * and ignore padding; larger kernels sample each image on its own grid. */
ndcl_status ndcl_patch_geom_init(ndcl_context *ctx, ndcl_patch_geom *g);

/* *tap <- each patch column's channel-and-tap offset, row and column tap
 * (3 ints per column of every block row), a temporary the caller releases
 * with prims_release. */
ndcl_status ndcl_im2col_taps(ndcl_context *ctx, const ndcl_patch_geom *g, cl_mem *tap);

/* X (rows x cols) <- the sampled, block-regrouped patches of x. */
ndcl_status ndcl_im2col_sampled(ndcl_context *ctx, const ndcl_patch_geom *g, cl_mem x,
                                cl_mem X);

/* ------------------------------------------------------------ statistics */

/* mean (cols) <- column means of X (rows x cols). */
ndcl_status ndcl_col_mean(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols,
                          cl_mem mean);

/* sum (cols) <- column sums of X (rows x cols): a rank's share of the
 * statistics of a group (layers/group.c). */
ndcl_status ndcl_col_sum(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols, cl_mem sum);

/* X (rows x cols) -= mean, row-wise, in place. */
ndcl_status ndcl_center(ndcl_context *ctx, cl_mem X, size_t rows, size_t cols, cl_mem mean);

/* For each group g < groups, with X's row r holding groups chunks of n values:
 * cov[g] (n x n) <- X_gᵀ·X_g * scale + eps·I, full symmetric matrix
 * (SYRK on one triangle, then a kernel that mirrors it and adds eps). */
ndcl_status ndcl_cov(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups, size_t n,
                     float scale, float eps, cl_mem cov);

/* out[r] = alpha * Σ_{c < n} X[off + r*rs + c*cs] for r < rows: row sums
 * (rs = row length, cs = 1) or column sums (rs = 1, cs = row length) by a
 * reduction kernel, where a GEMM with a vector of ones would make CLBlast
 * pad the vector to a k x 128 temporary. */
ndcl_status ndcl_strided_sum(ndcl_context *ctx, cl_mem X, size_t off, size_t rows, size_t n,
                             size_t rs, size_t cs, float alpha, cl_mem out);

/* The running statistics' update, all on the device: bad (one int) <- 1
 * (and the context's flag raised) when a value of stat[off ..] is not
 * finite; running <- (1 - momentum)·running + momentum·stat[off ..], or
 * the copy stat[off ..] when copy, unless bad is set. */
ndcl_status ndcl_check_finite(ndcl_context *ctx, cl_mem stat, size_t off, size_t count,
                              cl_mem bad, cl_mem flag);
ndcl_status ndcl_momentum_update(ndcl_context *ctx, size_t count, float momentum, bool copy,
                                 cl_mem stat, size_t off, cl_mem running, cl_mem bad);

/* ------------------------------------------------------------ isqrt */

/* Elements of the buffer ndcl_isqrt_ns can save for the backward pass. */
size_t ndcl_isqrt_saved_size(size_t batch, size_t n, int n_iter);

/* D[b] <- coupled Newton-Schulz inverse square root of A[b] (batch of n x n),
 * Frobenius-norm scaled, n_iter iterations; all on the device. When saved is
 * not NULL it receives, in order: the batch norms a[b] (batch values), then
 * for k = 0..n_iter-1 the iterates Y_k and Z_k entering iteration k and
 * its factor T_k = (3I - Z_k·Y_k)/2 (each batch*n*n values), so that the
 * backward pass recomputes no product. A non-finite norm raises the
 * context's flag. */
ndcl_status ndcl_isqrt_ns(ndcl_context *ctx, cl_mem A, size_t batch, size_t n, int n_iter,
                          cl_mem D, cl_mem saved);

/* ------------------------------------------------------------ fold */

/* How a weight matrix is viewed in the block basis: output o's R rows of nf
 * values, element (o, r, f) at W[o*K + r*rs + f*fs]. Output o uses
 * D[o / (outputs/batch)] and mean[(o / (outputs/batch)) * nf ...]. */
typedef struct ndcl_fold_geom {
    size_t outputs; /* Cout or Fout */
    size_t K;       /* W's row length per output */
    size_t R;       /* block rows per output */
    size_t nf;      /* block width */
    size_t rs, fs;  /* strides of r and f within an output's row */
    size_t batch;   /* groups (1 unless grouped conv) */
} ndcl_fold_geom;

/* The move between the weights' layout and the block basis (kernel name
 * "ndcl_fold_gather" into the basis, "ndcl_fold_scatter" back), shared by
 * the fold and its adjoint. */
ndcl_status ndcl_fold_move(ndcl_context *ctx, const char *name, const ndcl_fold_geom *g,
                           cl_mem src, cl_mem dst);

/* W' = W·D in the block basis, scattered back to W's shape (outputs x K),
 * and b' = b - Σ_r (W'·μ)[o, r]. bias may be NULL (treated as 0); b_out may
 * be NULL (no bias correction wanted). */
ndcl_status ndcl_fold(ndcl_context *ctx, const ndcl_fold_geom *g, cl_mem W, cl_mem bias,
                      cl_mem D, cl_mem mean, cl_mem W_out, cl_mem b_out);

/* ------------------------------------------------------------ dense */

/* y (rows x Fo) <- x (rows x F) · Wᵀ (W: Fo x F) + b, b added to every row. */
ndcl_status ndcl_dense_forward(ndcl_context *ctx, size_t rows, size_t F, size_t Fo,
                               cl_mem x, cl_mem W, cl_mem b, cl_mem y);

/* The adjoint of ndcl_dense_forward without its bias: dW <- dyᵀ·x and
 * dx <- dy·W, each skipped when NULL (the bias's is a column sum of dy). */
ndcl_status ndcl_dense_backward(ndcl_context *ctx, size_t rows, size_t F, size_t Fo,
                                cl_mem dy, cl_mem x, cl_mem W, cl_mem dW, cl_mem dx);

/* ------------------------------------------------------------ memory */

/* dst[i] <- src[i] for i < count, by a kernel (not clEnqueueCopyBuffer):
 * the bandwidth reference of the other kernels. */
ndcl_status ndcl_copy_floats(ndcl_context *ctx, cl_mem src, cl_mem dst, size_t count);

/* Sets count floats of buf to value. */
ndcl_status ndcl_buffer_fill(ndcl_context *ctx, cl_mem buf, size_t count, float value);

/* a <- batch n x n matrices value·I. */
ndcl_status ndcl_eye_fill(ndcl_context *ctx, cl_mem a, size_t n, size_t batch, float value);

/* y <- alpha·x + beta·y over count floats. */
ndcl_status ndcl_axpby(ndcl_context *ctx, size_t count, float alpha, cl_mem x, float beta,
                       cl_mem y);

#endif
