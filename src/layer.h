/* layer.h - the layer handle shared by conv.c, linear.c and channel.c:
 * descriptor, parameters on the device, the cached folded weights of
 * evaluation mode and the workspaces of the forward pass. */
#ifndef NDCL_LAYER_H
#define NDCL_LAYER_H

#include "conv2d.h"
#include "internal.h"
#include "prims.h"

/* One parameter or buffer, by its state_dict name. */
typedef struct ndcl_param {
    const char *name;
    cl_mem mem;
    int ndim;
    size_t shape[NDCL_MAX_DIMS];
    size_t count;
} ndcl_param;

#define NDCL_MAX_PARAMS 6

struct ndcl_layer {
    ndcl_context *ctx;
    ndcl_layer_kind kind;
    ndcl_conv2d_desc conv;
    ndcl_linear_desc linear;
    ndcl_channel_desc channel;
    int block;  /* effective block B */
    size_t nf;  /* features per block (conv: kh*kw*B; linear, channel: B) */
    size_t groups;

    ndcl_param params[NDCL_MAX_PARAMS];
    int n_params;
    int64_t counter;

    /* Folded W', b' of evaluation mode, valid until a parameter changes. */
    ndcl_scratch w_fold, b_fold;
    bool fold_valid;

    /* Statistics of the last training forward and workspaces. */
    ndcl_scratch mean, cov, deconv, X, col, tmp, ns_saved, extra;
    cl_mem bad; /* one int: this step's statistics are not finite */
};

/* The parameter called name, or NULL. */
ndcl_param *ndcl_layer_param(const ndcl_layer *l, const char *name);

/* Allocates and registers a parameter filled with value (identity when
 * eye_n > 0: batch = count / eye_n² identity matrices). */
ndcl_status ndcl_layer_add_param(ndcl_layer *l, const char *name, int ndim,
                                 const size_t *shape, float value, size_t eye_n);

/* Common creation and per-kind forward passes. */
ndcl_status ndcl_layer_alloc(ndcl_context *ctx, ndcl_layer_kind kind, ndcl_layer **out);
ndcl_status ndcl_conv_layer_forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                                    ndcl_tensor **y);
ndcl_status ndcl_linear_layer_forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                                      ndcl_tensor **y);
ndcl_status ndcl_channel_layer_forward(ndcl_layer *l, ndcl_mode mode,
                                       const ndcl_tensor *x, ndcl_tensor **y);

/* Resets bad, checks every stat buffer for non-finite values (raising the
 * context flag), and applies the momentum updates, all on the device:
 * a non-finite step leaves every running buffer unchanged. copy selects the
 * first-batch copy of ChannelDeconv. */
typedef struct ndcl_update {
    cl_mem stat, running;
    size_t n;
    bool copy;
    size_t stat_off; /* element offset of the statistic in stat */
} ndcl_update;
ndcl_status ndcl_layer_update_running(ndcl_layer *l, float momentum, const ndcl_update *u,
                                      int nu);

/* Greatest common divisor, for the original's block clamping. */
static inline int ndcl_gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Descriptor checks shared by the kinds (block, eps, n_iter, momentum). */
ndcl_status ndcl_check_common(ndcl_context *ctx, int block, float eps, int n_iter,
                              float momentum);

/* The output tensor: *y created with the shape, or checked against it. */
ndcl_status ndcl_output(ndcl_context *ctx, ndcl_tensor **y, int ndim, const size_t *shape);

#endif
