/* ref.h - a plain double-precision host implementation of the original
 * PyTorch arithmetic (the README's "Arithmetic" section), written for
 * clarity, not speed. The Check suites and ndcl_self_test (self_test.c) compare
 * the device against it. All arrays are row-major doubles; sizes as in
 * that section (B the effective block, nf = kh*kw*B). */
#ifndef NDCL_REF_H
#define NDCL_REF_H

#include <stddef.h>
#include <stdint.h>

#include "ndcl.h"

/* Effective block sizes, clamped as the original clamps them. */
int ref_block_conv(int in_channels, int block, int groups);
int ref_block_linear(int in_features, int block);

/* The sampled, block-regrouped patch matrix (conv2d steps 1-2).
 * S is the effective sampling stride (sampling_stride * stride), B the
 * effective block. Returns a malloc'd rows x cols matrix; rows and cols are
 * as ndcl_patches documents them. */
double *ref_patches(const double *x, size_t N, size_t C, size_t H, size_t W, size_t kh,
                    size_t kw, size_t pad, size_t dil, size_t S, size_t groups, size_t B,
                    size_t *rows, size_t *cols);

/* X rows x (groups*n): mean (groups*n) and cov (groups x n x n) =
 * Xc_gᵀXc_g / rows + eps I (Xc = X - mean when centered, else X). */
void ref_mean_cov(const double *X, size_t rows, size_t groups, size_t n, double eps,
                  int centered, double *mean, double *cov);

/* Coupled Newton-Schulz inverse square root of each of batch n x n
 * matrices: Y0 = A/a, Z0 = I (a the Frobenius norm), n_iter times
 * T = (3I - Z·Y)/2, Y = Y·T, Z = T·Z; D = Z/sqrt(a). */
void ref_isqrt(const double *A, size_t batch, size_t n, int n_iter, double *D);

/* Plain conv2d (cross-correlation) with bias b (may be NULL). y must hold
 * N x Cout x Ho x Wo. */
void ref_conv2d(const double *x, size_t N, size_t C, size_t H, size_t W, const double *w,
                size_t Cout, size_t kh, size_t kw, const double *b, size_t stride,
                size_t pad, size_t dil, size_t groups, double *y);

/* The adjoint of ref_conv2d given dy (N x Cout x Ho x Wo), exact sums: dx
 * (x's shape), dw (w's shape, Cout x C/groups x kh x kw) and db (Cout),
 * each NULL when not wanted. */
void ref_conv2d_backward(const double *x, size_t N, size_t C, size_t H, size_t W,
                         const double *w, size_t Cout, size_t kh, size_t kw, size_t stride,
                         size_t pad, size_t dil, size_t groups, const double *dy,
                         double *dx, double *dw, double *db);

/* A whole layer with its parameters and buffers, as the original module
 * holds them (state_dict shapes as ndcl_layer_param_shape gives them,
 * flattened). Parameters
 * the kind does not have are NULL. */
typedef struct ref_layer {
    ndcl_layer_kind kind;
    ndcl_conv2d_desc conv;
    ndcl_linear_desc linear;
    ndcl_channel_desc channel;
    int block; /* effective */
    size_t n_weight, n_bias, n_running_mean, n_running_deconv;
    double *weight, *bias;
    double *running_mean, *running_deconv;               /* conv, linear */
    double *running_mean1, *running_mean2, *running_var; /* channel (+ deconv) */
    int64_t counter; /* conv freeze counter; channel num_batches_tracked */
} ref_layer;

/* New layers initialised as the original initialises buffers (means 0,
 * deconv identity, var 1, counter 0); weight and bias zero. */
ref_layer *ref_layer_conv2d(const ndcl_conv2d_desc *d);
ref_layer *ref_layer_linear(const ndcl_linear_desc *d);
ref_layer *ref_layer_channel(const ndcl_channel_desc *d);
void ref_layer_free(ref_layer *l);

/* The output shape for an input shape (ndim 2 or 4). The layer functions
 * below return 0, or -1 (l's state then unspecified) when the input's shape does
 * not suit the layer or a host allocation failed: they also run inside the
 * library (ndcl_self_test), so they never stop the process. */
int ref_layer_out_shape(const ref_layer *l, int ndim, const size_t *xshape, size_t *yshape);

/* One forward step exactly as the original module computes it, updating
 * running buffers and counters in train mode. y holds the output. */
int ref_layer_forward(ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                      const size_t *xshape, double *y);

/* Central-difference gradients of L = Σ y·dy for one forward step of l in
 * mode on x, with step h: dx (x's count), dweight, dbias (each NULL when
 * not wanted or the layer lacks that parameter). Every evaluation starts
 * from l's state as it is, which stays unchanged. Where the forward is
 * smooth this is what automatic differentiation (and ndcl_layer_backward)
 * computes, except a channel layer in eval mode with counter 0, whose
 * copied batch mean autograd treats as a constant. 2 forwards per value. */
int ref_layer_backward_fd(const ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                          const size_t *xshape, const double *dy, double h, double *dx,
                          double *dweight, double *dbias);

#endif
