/* fastdeconv.h - what the deconvolved convolution's forward (fastdeconv.c)
 * and backward (fastdeconv_backward.c) share: its geometries and its table of functions. */
#ifndef NDCL_LAYERS_FASTDECONV_H
#define NDCL_LAYERS_FASTDECONV_H

#include "conv/conv_algo.h"
#include "layers/layer.h"
#include "primitives/conv2d.h"

#define NDCL_FD_BW 6 /* workspaces of one backward pass */

/* A conv2d layer's own state, behind l->priv. */
typedef struct ndcl_fastdeconv {
    ndcl_conv2d_desc desc;
    size_t nf;             /* features per block: kh*kw*B */
    size_t groups;         /* G */
    size_t chunk;          /* images per chunk of the convolution; 0: automatic
                              (NDCL_LAYER_CONV_CHUNK) */
    ndcl_scratch X;        /* the sampled patch matrix, centred, for the backward */
    ndcl_scratch col, tmp; /* the convolution's chunk workspaces (cws) */
    ndcl_scratch bw[NDCL_FD_BW];
    /* The plain convolution's algorithms: col and tmp its chunk
     * workspaces, the forced algorithm (NDCL_LAYER_CONV_ALGO) in it. */
    ndcl_conv_ws cws;
} ndcl_fastdeconv;

static inline ndcl_fastdeconv *ndcl_fd(const ndcl_layer *l)
{
    return (ndcl_fastdeconv *)l->priv;
}

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
