/* net.h - ndcl-train's network on the device: conv 1->32 3x3 (pad 1),
 * ReLU, max-pool 2, conv 32->64 3x3 (pad 1), ReLU, max-pool 2, flatten,
 * linear 3136->10, softmax cross-entropy, SGD. The three layers are ndcl
 * layers (FastDeconv, FastDeconv, Delinear); the rest are the tool's own
 * kernels (kernels.h). With deconvolution the layers train on batch
 * statistics; without, every forward is the evaluation forward of layers
 * whose running statistics stay zero mean and identity whitening, which
 * is exactly the plain convolution and linear map. */
#ifndef TRAIN_NET_H
#define TRAIN_NET_H

#include <stdbool.h>

#include "kernels.h"

#define NET_SIDE 28
#define NET_PIXELS (NET_SIDE * NET_SIDE)
#define NET_CLASSES 10
#define NET_LAYERS 3
#define NET_PARAMS 6

typedef struct net_config {
    bool nd; /* network deconvolution, or the plain network */
    float lr, momentum, weight_decay;
    /* Data-parallel training, or NULL for one process. Each rank of the
     * group takes its contiguous slice of every batch (rank 0 the first);
     * the layers synchronise their statistics through the group
     * (ndcl_layer_set_group) and each step sums the parameter gradients
     * and the loss across the ranks with the group's allreduce before the
     * update, so K ranks train as one process with the whole batch. */
    const ndcl_group *group;
    /* Training batches augmented (tr_gather_augment: mirrored left-right
     * with probability 1/2 and moved by up to augment_shift pixels each
     * way), drawn from augment_salt and the image's place in the run;
     * evaluation never is. */
    bool augment;
    int augment_shift;
    uint32_t augment_salt;
    /* NDCL_LAYER_STATS_EVERY of the three layers (1: every step). */
    int stats_every;
} net_config;

/* Operations timed apart by the profile (net_profile). */
typedef enum net_op {
    OP_GATHER,
    OP_CONV1_FWD,
    OP_POOL1_FWD,
    OP_CONV2_FWD,
    OP_POOL2_FWD,
    OP_LINEAR_FWD,
    OP_LOSS,
    OP_LINEAR_BWD,
    OP_POOL2_BWD,
    OP_CONV2_BWD,
    OP_POOL1_BWD,
    OP_CONV1_BWD,
    OP_SGD,
    OP_READ,
    OP_EXCHANGE,
    OP_COUNT
} net_op;
extern const char *const net_op_names[OP_COUNT];

/* Bytes one training step's operation op moves to and from memory for
 * this rank's n images (each buffer read or written once), for the tool's
 * own memory-bound kernels; 0 for the layers and the host work, whose
 * cost is arithmetic or latency. */
double net_op_bytes(net_op op, int n);

/* The tensors of one batch size. */
typedef struct net_acts {
    int n;
    ndcl_tensor *x, *y1, *p1, *y2, *p2, *logits;  /* forward */
    ndcl_tensor *dlogits, *dp2, *dy2, *dp1, *dy1; /* backward */
    cl_mem labels, arg1, arg2, losses;
} net_acts;

typedef struct train_net {
    tk k;
    ndcl_context *ctx;
    net_config cfg;
    ndcl_layer *layer[NET_LAYERS];
    ndcl_tensor *param[NET_PARAMS]; /* views: conv1 w, b, conv2 w, b, linear w, b */
    ndcl_tensor *grad[NET_PARAMS];  /* the backward's outputs, read by tr_sgd */
    cl_mem momentum[NET_PARAMS];
    cl_mem loss, correct;
    net_acts train, eval[2];
    ndcl_group group;  /* size 1 without a group */
    double *exchange;  /* with a group: the loss and the gradients, summed */
    float *exchange_f; /* the same values in float, as the device holds them */
    size_t exchange_count;
    bool profile;
    double op_seconds[OP_COUNT]; /* with profile: wall time per operation */
} train_net;

/* The state_dict names of the parameters in the plain PyTorch network
 * nn.Sequential(Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten,
 * Linear): "0.weight", "0.bias", "3.weight", "3.bias", "7.weight",
 * "7.bias"; and the module index of each layer (0, 3, 7). */
extern const char *const net_param_names[NET_PARAMS];
extern const int net_layer_index[NET_LAYERS];

/* Creates the network on ctx: layers, views, optimiser state (zero), the
 * tool's kernels. The parameters are zero until net_init. */
int net_create(ndcl_context *ctx, const net_config *cfg, train_net **out);
void net_destroy(train_net *net);

/* PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)) on the
 * device, from seed. */
int net_init(train_net *net, uint32_t seed);

/* One training step on the batch index[first .. first+n-1] of the images
 * and labels on the device: forward, loss, backward, SGD at step `step`
 * (0-based) of `total` (the cosine schedule). *loss receives the batch's
 * mean loss: the step's only read to the host (with a group, the
 * gradients go through the host too, to be summed across the ranks; n
 * must then be a multiple of the group's size). */
int net_step(train_net *net, int n, cl_mem images, cl_mem labels, cl_mem index, int first,
             int step, int total, float *loss);

/* The loss and its gradient of one batch without the update: the forward
 * (training mode), the loss, and the backward, leaving the gradients in
 * net->grad. For tests (finite differences). */
int net_loss_and_grad(train_net *net, int n, cl_mem images, cl_mem labels, cl_mem index,
                      int first, bool backward, float *loss);

/* The number of correctly classified images among index[0 .. count-1], in
 * evaluation mode (this rank's: no collective). */
int net_evaluate(train_net *net, int count, cl_mem images, cl_mem labels, cl_mem index,
                 long *correct);

/* Sums v[0 .. n-1] across the group's ranks in place (nothing without a
 * group). */
int net_allreduce(train_net *net, double *v, size_t n);

/* Writes each layer as a layer file DIR/<index>.safetensors (loadable by
 * ndcl-run) and the folded evaluation weights as DIR/model.safetensors
 * (the plain PyTorch network's state_dict). */
int net_save(train_net *net, const char *dir);

#endif
