/* channel.h - what channel deconvolution's forward (channel.c) and backward
 * (channel_backward.c) share. */
#ifndef NDCL_LAYERS_CHANNEL_H
#define NDCL_LAYERS_CHANNEL_H

#include "layers/layer.h"

/* Sizes of one channel-layer step on an input of that shape. */
typedef struct ndcl_ch_geom {
    int N, C, HW, B, c;
    size_t L;  /* columns of the B whitened rows */
    int step;  /* sampling step (ss² or 1) */
    size_t Ls; /* sampled columns */
} ndcl_ch_geom;
void ndcl_ch_geom_init(const ndcl_layer *l, int ndim, const size_t *shape, ndcl_ch_geom *g);

/* The backward entry of the table (see ndcl_layer_ops); a channel layer
 * has no parameters, so dW and db are always NULL. */
ndcl_status ndcl_channel_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                        ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db);

#endif
