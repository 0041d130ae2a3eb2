/* linear.h - what the deconvolved linear layer's forward (linear.c) and
 * backward (linear_backward.c) share. */
#ifndef NDCL_LAYERS_LINEAR_H
#define NDCL_LAYERS_LINEAR_H

#include "layers/layer.h"

/* The fold geometry (the weight in the block basis) of a linear layer. */
ndcl_fold_geom ndcl_linear_fold_geom(const ndcl_layer *l);

/* The backward entry of the table (see ndcl_layer_ops). */
ndcl_status ndcl_linear_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                       ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db);

#endif
