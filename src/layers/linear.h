/* linear.h - what the deconvolved linear layer's forward (linear.c) and
 * backward (linear_backward.c) share. */
#ifndef NDCL_LAYERS_LINEAR_H
#define NDCL_LAYERS_LINEAR_H

#include "layers/layer.h"

#define NDCL_LIN_BW 6 /* workspaces of one backward pass */

/* A linear layer's own state, behind l->priv. */
typedef struct ndcl_linear {
    ndcl_linear_desc desc;
    ndcl_scratch X; /* x as rows of B features, centred, for the backward */
    ndcl_scratch bw[NDCL_LIN_BW];
} ndcl_linear;

static inline ndcl_linear *ndcl_lin(const ndcl_layer *l)
{
    return (ndcl_linear *)l->priv;
}

/* The fold geometry (the weight in the block basis) of a linear layer. */
ndcl_fold_geom ndcl_linear_fold_geom(const ndcl_layer *l);

/* The backward entry of the table (see ndcl_layer_ops). */
ndcl_status ndcl_linear_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                       ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db);

#endif
