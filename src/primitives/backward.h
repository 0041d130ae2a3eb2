/* backward.h - the adjoints of the deconvolution primitives (the chain rule
 * through each step in reverse, as automatic differentiation computes it),
 * on raw device buffers as primitives.h has the forwards; shared by the three
 * layers' backward passes and the public ndcl_whiten_backward. */
#ifndef NDCL_BACKWARD_H
#define NDCL_BACKWARD_H

#include "primitives/primitives.h"

/* dA (batch x n x n) <- the gradient with respect to A of the coupled
 * Newton-Schulz D = isqrt(A) that ndcl_isqrt_ns computed with this saved
 * area (norms, then Y_k, Z_k), given dD: the exact derivative of the
 * unrolled loop, with the Frobenius norm's path, as automatic
 * differentiation computes it. Nothing is assumed symmetric. saved, D and
 * dD are only read; dA must not alias them. */
ndcl_status ndcl_isqrt_ns_backward(ndcl_context *ctx, size_t batch, size_t n, int n_iter,
                                   cl_mem saved, cl_mem D, cl_mem dD, cl_mem dA);

/* The adjoint of ndcl_col_mean + ndcl_center + ndcl_cov: with X (rows x
 * groups*n) the data the covariance was formed from (centred when centered
 * is true, as the forward left it; raw when false), cov_g = X_gᵀX_g * scale
 * + eps I and the mean taken of the uncentred data, dX (rows x groups*n)
 * <- X_g (dcov_g + dcov_gᵀ) scale, minus its column means when centered
 * (the centring's own gradient), plus dmean / rows on every row (dmean, the
 * gradient of the mean, may be NULL). X and dcov are only read. */
ndcl_status ndcl_cov_backward(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups,
                              size_t n, float scale, bool centered, cl_mem dcov,
                              cl_mem dmean, cl_mem dX);

/* ndcl_cov_backward for a rank's share of a group's data matrix (layers/
 * group.c): X holds this rank's rows (rows of the group's total_rows),
 * centred on the group's mean when xc_mean is not NULL, which then holds
 * the group's column means of that centred X (so that the centring's
 * gradient is the group's, not this share's); scale is the covariance's
 * (1 / total_rows) and dmean spreads over total_rows. */
ndcl_status ndcl_cov_backward_share(ndcl_context *ctx, cl_mem X, size_t rows, size_t groups,
                                    size_t n, float scale, size_t total_rows,
                                    cl_mem xc_mean, cl_mem dcov, cl_mem dmean, cl_mem dX);

/* The adjoint of ndcl_fold (W' = W·D in the block basis, b' = b - Σ_r W'·μ),
 * given dWp (the gradient of W', W's shape) and db (of b', outputs):
 *  dW (W's shape) <- (dW'r - db ⊗ μ)·Dᵀ scattered back (NULL: not wanted);
 *  dD (batch x nf x nf) <- Wrᵀ·(dW'r - db ⊗ μ)  (NULL: not wanted; needs W);
 *  dmean (batch*nf) <- -Σ_rows db[o]·W'r  (NULL: not wanted; needs Wp).
 * The gradient of b is db itself. Inputs are only read. */
ndcl_status ndcl_fold_backward(ndcl_context *ctx, const ndcl_fold_geom *g, cl_mem W,
                               cl_mem Wp, cl_mem D, cl_mem mean, cl_mem dWp, cl_mem db,
                               cl_mem dW, cl_mem dD, cl_mem dmean);

/* dx += the adjoint of ndcl_im2col_sampled: every element of dX (rows x
 * cols) added to the input pixel it was copied from (padding dropped). */
ndcl_status ndcl_im2col_sampled_backward(ndcl_context *ctx, const ndcl_patch_geom *g,
                                         cl_mem dX, cl_mem dx);

#endif
