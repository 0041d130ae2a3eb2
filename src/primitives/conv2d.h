/* conv2d.h - the plain convolution (im2col + CLBlast GEMM) that every
 * deconvolved conv layer ends with, and its geometry. */
#ifndef NDCL_CONV2D_H
#define NDCL_CONV2D_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl_cl.h"

typedef struct ndcl_conv_geom {
    size_t n, c, h, w, cout, kh, kw, stride, pad, dil, groups;
    /* Derived by ndcl_conv_geom_init: */
    size_t oh, ow, K, P; /* K = C*kh*kw, P = oh*ow */
} ndcl_conv_geom;

/* Fills the derived fields; NDCL_ERR_INVALID_ARG when the kernel does not
 * fit the padded input or sizes overflow. */
ndcl_status ndcl_conv_geom_init(ndcl_context *ctx, ndcl_conv_geom *g);

/* col (K x N*P) <- im2col of x. */
ndcl_status ndcl_conv_im2col(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                             cl_mem col);

/* y (N, Cout, oh, ow) <- conv2d(x, w, b); b may be NULL. Workspaces: col
 * holds K*N*P floats (left holding x's im2col, which the backward reuses),
 * tmp Cout*N*P floats. */
ndcl_status ndcl_conv_forward(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                              cl_mem w, cl_mem b, cl_mem y, cl_mem col, cl_mem tmp);

/* The parameter side of the convolution's adjoint, given dy (N, Cout, oh,
 * ow): dYt (Cout x N*P) <- dy re-laid as the forward's GEMM output; db
 * (Cout) <- its row sums; dW (Cout x K/G, the weight's layout) <-
 * dYt·colᵀ per group, col as ndcl_conv_forward left it (NULL: not
 * wanted). */
ndcl_status ndcl_conv_backward_params(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem dy,
                                      cl_mem col, cl_mem dYt, cl_mem db, cl_mem dW);

/* The input side: dx (N, C, H, W) <- col2im(Wᵀ·dYt) per group; dcol is a
 * workspace of K*N*P floats. */
ndcl_status ndcl_conv_backward_data(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem w,
                                    cl_mem dYt, cl_mem dx, cl_mem dcol);

#endif
