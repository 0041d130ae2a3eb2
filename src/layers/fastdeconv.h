/* fastdeconv.h - what the deconvolved convolution's forward (fastdeconv.c)
 * and backward (fastdeconv_backward.c) share: its geometries and its table of functions. */
#ifndef NDCL_LAYERS_FASTDECONV_H
#define NDCL_LAYERS_FASTDECONV_H

#include "layers/layer.h"
#include "primitives/conv2d.h"

/* The plain convolution's geometry of a conv2d layer for an input shape
 * (N, C, H, W); NDCL_ERR_INVALID_ARG when the kernel does not fit. */
ndcl_status ndcl_conv_layer_geom(const ndcl_layer *l, const size_t *xshape,
                                 ndcl_conv_geom *cg);

/* The sampled patch matrix's geometry of a conv2d layer for that
 * convolution. */
ndcl_status ndcl_conv_layer_patch_geom(const ndcl_layer *l, const ndcl_conv_geom *cg,
                                       ndcl_patch_geom *pg);

/* The fold geometry (the weight in the block basis) of a conv2d layer. */
ndcl_fold_geom ndcl_conv_fold_geom(const ndcl_layer *l);

/* The backward entry of the table (see ndcl_layer_ops). */
ndcl_status ndcl_conv_layer_backward(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor *dx,
                                     ndcl_tensor *dW, ndcl_tensor *db);

#endif
