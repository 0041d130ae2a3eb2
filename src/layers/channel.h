/* channel.h - what channel deconvolution's forward (channel.c) and backward
 * (channel_backward.c) share. */
#ifndef NDCL_LAYERS_CHANNEL_H
#define NDCL_LAYERS_CHANNEL_H

#include "layers/layer.h"
#include "primitives/channel.h"

#define NDCL_CH_BW 6 /* workspaces of one backward pass */

/* A channel layer's own state, behind l->priv. */
typedef struct ndcl_channel {
    ndcl_channel_desc desc;
    ndcl_scratch X;     /* the first c channels as B rows, centred */
    ndcl_scratch col;   /* the strided sample of those rows (Ls x B) */
    ndcl_scratch tmp;   /* the whitened rows; dout in the backward */
    ndcl_scratch extra; /* the leftover channels' mean and variance */
    ndcl_scratch bw[NDCL_CH_BW];
} ndcl_channel;

static inline ndcl_channel *ndcl_ch(const ndcl_layer *l)
{
    return (ndcl_channel *)l->priv;
}

/* The backward entry of the table (see ndcl_layer_ops); a channel layer
 * has no parameters, so dW and db are always NULL. */
ndcl_status ndcl_channel_layer_backward(ndcl_layer *l, const ndcl_tensor *dy,
                                        ndcl_tensor *dx, ndcl_tensor *dW, ndcl_tensor *db);

#endif
