/* net.c - ndcl-train's network on the device: three ndcl layers joined by
 * the tool's own kernels, the training step (forward, loss, backward, SGD
 * in place on views of the layers' parameters), evaluation and saving. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "net.h"

const char *const net_op_names[OP_COUNT] = {
    "gather batch",    "conv1 forward",  "relu+pool1",      "conv2 forward",
    "relu+pool2",      "linear forward", "softmax xent",    "linear backward",
    "relu+pool2 back", "conv2 backward", "relu+pool1 back", "conv1 backward",
    "sgd (6 tensors)", "loss read",      "ranks' allreduce"};

const char *const net_param_names[NET_PARAMS] = {"0.weight", "0.bias",   "3.weight",
                                                 "3.bias",   "7.weight", "7.bias"};
const int net_layer_index[NET_LAYERS] = {0, 3, 7};

static const int C1 = 32, C2 = 64, FLAT = 64 * 7 * 7;

double net_op_bytes(net_op op, int n)
{
    const double f = sizeof(float), N = n, in = NET_PIXELS, p1 = 14 * 14, p2 = 7 * 7;
    switch (op) {
    /* uchar pixels, label and index in; float pixels, int label out. */
    case OP_GATHER: return N * (in * (1 + f) + 1 + 4 + 4 + 4);
    /* The plane in; the pooled plane and its argmax (one char) out; the
     * backward the reverse, every input pixel's gradient written. */
    case OP_POOL1_FWD:
    case OP_POOL1_BWD: return N * C1 * (in * f + p1 * (f + 1));
    case OP_POOL2_FWD:
    case OP_POOL2_BWD: return N * C2 * (p1 * f + p2 * (f + 1));
    /* Logits and labels in; the per-image loss and dlogits out; the loss
     * read again for the sum. */
    case OP_LOSS: return N * (NET_CLASSES * f * 2 + 4 + f * 2);
    /* Parameter, gradient and momentum in, parameter and momentum out. */
    case OP_SGD: {
        const double params =
            C1 * 9 + C1 + C2 * C1 * 9 + C2 + FLAT * NET_CLASSES + NET_CLASSES;
        return params * f * 5;
    }
    default: return 0;
    }
}

static int nd(train_net *net, ndcl_status s, const char *what)
{
    return s == NDCL_SUCCESS ? TR_OK : tr_fail_ndcl(net->ctx, s, what);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* With the profile on, every operation ends with clFinish and its wall
 * time is added to its row; without, nothing waits. */
static double mark(train_net *net)
{
    if (!net->profile) return 0;
    clFinish(net->k.q);
    return now();
}
#define RUN(net, op, expr)                                                                 \
    do {                                                                                   \
        double run_t0_ = mark(net);                                                        \
        int run_rc_ = (expr);                                                              \
        if (run_rc_ != TR_OK) return run_rc_;                                              \
        if ((net)->profile) (net)->op_seconds[op] += mark(net) - run_t0_;                  \
    } while (0)

static cl_mem mem(const ndcl_tensor *t)
{
    return ndcl_tensor_cl_mem(t);
}

static int tensor(train_net *net, ndcl_tensor **t, int ndim, size_t d0, size_t d1,
                  size_t d2, size_t d3)
{
    size_t shape[4] = {d0, d1, d2, d3};
    return nd(net, ndcl_tensor_create(net->ctx, ndim, shape, t), "ndcl_tensor_create");
}

static void acts_release(net_acts *a)
{
    ndcl_tensor *t[] = {a->x,       a->y1,  a->p1,  a->y2,  a->p2, a->logits,
                        a->dlogits, a->dp2, a->dy2, a->dp1, a->dy1};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ndcl_tensor_destroy(t[i]);
    cl_mem m[] = {a->labels, a->arg1, a->arg2, a->losses};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (m[i]) clReleaseMemObject(m[i]);
    memset(a, 0, sizeof *a);
}

/* The tensors of batch size n (the layers create their outputs, y1, y2,
 * logits, dp2, dp1, on first use); backward ones only when training. */
static int acts_ensure(train_net *net, net_acts *a, int n, bool backward)
{
    if (a->n == n && (!backward || a->dlogits)) return TR_OK;
    acts_release(a);
    size_t N = (size_t)n;
    int rc = tensor(net, &a->x, 4, N, 1, NET_SIDE, NET_SIDE);
    if (!rc) rc = tensor(net, &a->p1, 4, N, (size_t)C1, 14, 14);
    if (!rc) rc = tensor(net, &a->p2, 2, N, (size_t)FLAT, 0, 0);
    if (!rc && backward) rc = tensor(net, &a->dlogits, 2, N, NET_CLASSES, 0, 0);
    if (!rc && backward) rc = tensor(net, &a->dy2, 4, N, (size_t)C2, 14, 14);
    if (!rc && backward) rc = tensor(net, &a->dy1, 4, N, (size_t)C1, NET_SIDE, NET_SIDE);
    if (!rc && !(a->labels = tk_buffer(&net->k, N * sizeof(cl_int), "labels")))
        rc = TR_DEVICE;
    if (!rc && !(a->arg1 = tk_buffer(&net->k, N * (size_t)C1 * 196, "pool1 arguments")))
        rc = TR_DEVICE;
    if (!rc && !(a->arg2 = tk_buffer(&net->k, N * (size_t)FLAT, "pool2 arguments")))
        rc = TR_DEVICE;
    if (!rc && !(a->losses = tk_buffer(&net->k, N * sizeof(float), "losses")))
        rc = TR_DEVICE;
    if (rc) {
        acts_release(a);
        return rc;
    }
    a->n = n;
    return TR_OK;
}

int net_create(ndcl_context *ctx, const net_config *cfg, train_net **out)
{
    train_net *net = calloc(1, sizeof *net);
    if (!net) return tr_fail(TR_DEVICE, "out of memory");
    net->ctx = ctx;
    net->cfg = *cfg;
    int rc = tk_init(&net->k, ctx);
    /* The original's layers: FastDeconv(1, 32, 3, padding=1, freeze=True,
     * n_iter=15), FastDeconv(32, 64, 3, padding=1), Delinear(3136, 10,
     * block=64); the plain network uses the same layers untrained. */
    ndcl_conv2d_desc d1 = ndcl_conv2d_desc_default(1, C1, 3), d2;
    d1.padding = 1;
    d1.freeze = 1;
    d1.n_iter = 15;
    d2 = ndcl_conv2d_desc_default(C1, C2, 3);
    d2.padding = 1;
    ndcl_linear_desc d3 = ndcl_linear_desc_default(FLAT, NET_CLASSES);
    d3.block = 64;
    if (!rc) rc = nd(net, ndcl_conv2d_create(ctx, &d1, &net->layer[0]), "conv1");
    if (!rc) rc = nd(net, ndcl_conv2d_create(ctx, &d2, &net->layer[1]), "conv2");
    if (!rc) rc = nd(net, ndcl_linear_create(ctx, &d3, &net->layer[2]), "linear");
    for (int i = 0; !rc && cfg->stats_every > 1 && i < NET_LAYERS; i++)
        rc = nd(
            net,
            ndcl_layer_set_option(net->layer[i], NDCL_LAYER_STATS_EVERY, cfg->stats_every),
            "NDCL_LAYER_STATS_EVERY");
    net->group = (ndcl_group){.size = 1, .rank = 0};
    if (cfg->group) {
        net->group = *cfg->group;
        net->cfg.group = &net->group;
        for (int i = 0; !rc && i < NET_LAYERS; i++)
            rc = nd(net, ndcl_layer_set_group(net->layer[i], &net->group),
                    "ndcl_layer_set_group");
    }
    for (int i = 0; !rc && i < NET_PARAMS; i++) {
        ndcl_layer *l = net->layer[i / 2];
        const char *name = i % 2 ? "bias" : "weight";
        rc = nd(net, ndcl_layer_param_tensor(l, name, &net->param[i]), net_param_names[i]);
        size_t bytes = ndcl_tensor_count(net->param[i]) * sizeof(float);
        float zero = 0;
        if (!rc && !(net->momentum[i] = tk_buffer(&net->k, bytes, "momentum")))
            rc = TR_DEVICE;
        if (!rc) {
            cl_int err = clEnqueueFillBuffer(net->k.q, net->momentum[i], &zero, sizeof zero,
                                             0, bytes, 0, NULL, NULL);
            if (err != CL_SUCCESS) rc = tr_fail_cl(err, "clEnqueueFillBuffer(momentum)");
        }
    }
    if (!rc && !(net->loss = tk_buffer(&net->k, sizeof(float), "loss"))) rc = TR_DEVICE;
    if (!rc && cfg->group) {
        net->exchange_count = 1;
        for (int i = 0; i < NET_PARAMS; i++)
            net->exchange_count += ndcl_tensor_count(net->param[i]);
        net->exchange = malloc(net->exchange_count * sizeof(double));
        net->exchange_f = malloc(net->exchange_count * sizeof(float));
        if (!net->exchange || !net->exchange_f) rc = tr_fail(TR_DEVICE, "out of memory");
    }
    if (!rc && !(net->correct = tk_buffer(&net->k, sizeof(cl_int), "count")))
        rc = TR_DEVICE;
    if (rc) {
        net_destroy(net);
        return rc;
    }
    *out = net;
    return TR_OK;
}

void net_destroy(train_net *net)
{
    if (!net) return;
    acts_release(&net->train);
    acts_release(&net->eval[0]);
    acts_release(&net->eval[1]);
    for (int i = 0; i < NET_PARAMS; i++) {
        ndcl_tensor_destroy(net->param[i]);
        ndcl_tensor_destroy(net->grad[i]);
        if (net->momentum[i]) clReleaseMemObject(net->momentum[i]);
    }
    for (int i = 0; i < NET_LAYERS; i++)
        ndcl_layer_destroy(net->layer[i]);
    if (net->loss) clReleaseMemObject(net->loss);
    if (net->correct) clReleaseMemObject(net->correct);
    free(net->exchange);
    free(net->exchange_f);
    tk_release(&net->k);
    free(net);
}

int net_init(train_net *net, uint32_t seed)
{
    for (int i = 0; i < NET_PARAMS; i++) {
        /* fan_in of the layer's weight: everything but the output dimension. */
        const ndcl_tensor *w = net->param[i & ~1];
        size_t fan_in = ndcl_tensor_count(w) / ndcl_tensor_dim(w, 0);
        float bound = (float)(1.0 / sqrt((double)fan_in));
        int rc = tk_init_uniform(&net->k, mem(net->param[i]),
                                 (int)ndcl_tensor_count(net->param[i]), bound, seed,
                                 (uint32_t)i);
        if (rc) return rc;
        /* Our kernel wrote the parameter behind the layer's back. */
        rc = nd(net, ndcl_tensor_changed(net->param[i]), "ndcl_tensor_changed");
        if (rc) return rc;
    }
    return TR_OK;
}

static int forward(train_net *net, net_acts *a, ndcl_mode mode)
{
    int n = a->n;
    RUN(net, OP_CONV1_FWD,
        nd(net, ndcl_layer_forward(net->layer[0], mode, a->x, &a->y1), "conv1 forward"));
    RUN(net, OP_POOL1_FWD,
        tk_relu_pool(&net->k, mem(a->y1), n * C1, NET_SIDE, NET_SIDE, mem(a->p1), a->arg1));
    RUN(net, OP_CONV2_FWD,
        nd(net, ndcl_layer_forward(net->layer[1], mode, a->p1, &a->y2), "conv2 forward"));
    RUN(net, OP_POOL2_FWD,
        tk_relu_pool(&net->k, mem(a->y2), n * C2, 14, 14, mem(a->p2), a->arg2));
    RUN(net, OP_LINEAR_FWD,
        nd(net, ndcl_layer_forward(net->layer[2], mode, a->p2, &a->logits),
           "linear forward"));
    return TR_OK;
}

/* The slice's share of the mean loss of the whole batch of `batch` images
 * into net->loss, its gradient into a->dlogits: summed over the ranks,
 * the batch's mean loss and its gradient. */
static int loss(train_net *net, net_acts *a, int batch)
{
    float scale = 1.0f / (float)batch;
    int rc = tk_softmax_xent(&net->k, mem(a->logits), a->labels, a->n, NET_CLASSES, scale,
                             a->losses, mem(a->dlogits));
    return rc ? rc : tk_sum(&net->k, a->losses, a->n, scale, net->loss);
}

static int loss_and_backward(train_net *net, net_acts *a, int batch, bool backward)
{
    int n = a->n;
    RUN(net, OP_LOSS, loss(net, a, batch));
    if (!backward) return TR_OK;
    ndcl_tensor **g = net->grad;
    RUN(net, OP_LINEAR_BWD,
        nd(net, ndcl_layer_backward(net->layer[2], a->dlogits, &a->dp2, &g[4], &g[5]),
           "linear backward"));
    RUN(net, OP_POOL2_BWD,
        tk_relu_pool_backward(&net->k, mem(a->dp2), a->arg2, n * C2, 14, 14, mem(a->dy2)));
    RUN(net, OP_CONV2_BWD,
        nd(net, ndcl_layer_backward(net->layer[1], a->dy2, &a->dp1, &g[2], &g[3]),
           "conv2 backward"));
    RUN(net, OP_POOL1_BWD,
        tk_relu_pool_backward(&net->k, mem(a->dp1), a->arg1, n * C1, NET_SIDE, NET_SIDE,
                              mem(a->dy1)));
    /* The input needs no gradient. */
    RUN(net, OP_CONV1_BWD,
        nd(net, ndcl_layer_backward(net->layer[0], a->dy1, NULL, &g[0], &g[1]),
           "conv1 backward"));
    return TR_OK;
}

static int read_loss(train_net *net, float *loss)
{
    cl_int err = clEnqueueReadBuffer(net->k.q, net->loss, CL_TRUE, 0, sizeof *loss, loss, 0,
                                     NULL, NULL);
    return err == CL_SUCCESS ? TR_OK : tr_fail_cl(err, "reading the loss");
}

/* Gather, forward (the plain network's layers never leave evaluation
 * mode), loss and, if asked, backward of this rank's slice of one
 * training batch of n images. */
static int pass(train_net *net, int n, cl_mem images, cl_mem labels, cl_mem index,
                int first, int step, bool backward)
{
    int K = net->group.size;
    if (n % K != 0)
        return tr_fail(TR_INPUT, "a batch of %d does not split evenly over %d ranks", n, K);
    int local = n / K;
    net_acts *a = &net->train;
    int rc = acts_ensure(net, a, local, true);
    if (rc) return rc;
    ndcl_mode mode = net->cfg.nd ? NDCL_TRAIN : NDCL_EVAL;
    const int at = first + net->group.rank * local;
    const net_config *c = &net->cfg;
    if (c->augment)
        RUN(net, OP_GATHER,
            tk_gather_augment(&net->k, images, labels, index, at, local, NET_SIDE,
                              c->augment_shift, c->augment_salt,
                              (uint32_t)step * (uint32_t)n + (uint32_t)(at - first),
                              mem(a->x), a->labels));
    else
        RUN(net, OP_GATHER,
            tk_gather(&net->k, images, labels, index, at, local, NET_PIXELS, mem(a->x),
                      a->labels));
    rc = forward(net, a, mode);
    if (!rc) rc = loss_and_backward(net, a, n, backward);
    return rc;
}

int net_allreduce(train_net *net, double *v, size_t n)
{
    if (!net->cfg.group) return TR_OK;
    ndcl_status s = net->group.allreduce(net->group.user, v, n);
    return s == NDCL_SUCCESS ? TR_OK : tr_fail(TR_DEVICE, "the ranks' allreduce failed");
}

/* With a group: every rank's loss and gradients summed across the ranks
 * (the loss and gradients of the whole batch), the gradients written
 * back for the update. Doubles, so that the sums of a few floats are exact
 * and equal on every rank, whatever order the allreduce adds them in. */
static int exchange(train_net *net, float *loss)
{
    size_t total = net->exchange_count, at = 1;
    float *f = net->exchange_f;
    cl_int err = clEnqueueReadBuffer(net->k.q, net->loss, CL_FALSE, 0, sizeof(float), f, 0,
                                     NULL, NULL);
    for (int i = 0; err == CL_SUCCESS && i < NET_PARAMS; i++) {
        size_t c = ndcl_tensor_count(net->grad[i]);
        err = clEnqueueReadBuffer(net->k.q, mem(net->grad[i]), CL_FALSE, 0,
                                  c * sizeof(float), f + at, 0, NULL, NULL);
        at += c;
    }
    if (err == CL_SUCCESS) err = clFinish(net->k.q);
    int rc = err == CL_SUCCESS ? TR_OK : tr_fail_cl(err, "reading the gradients");
    for (size_t i = 0; !rc && i < total; i++)
        net->exchange[i] = f[i];
    if (!rc) rc = net_allreduce(net, net->exchange, total);
    for (size_t i = 0; !rc && i < total; i++)
        f[i] = (float)net->exchange[i];
    at = 1;
    for (int i = 0; !rc && i < NET_PARAMS; i++) {
        size_t c = ndcl_tensor_count(net->grad[i]);
        err = clEnqueueWriteBuffer(net->k.q, mem(net->grad[i]), CL_TRUE, 0,
                                   c * sizeof(float), f + at, 0, NULL, NULL);
        if (err != CL_SUCCESS) rc = tr_fail_cl(err, "writing the summed gradients");
        at += c;
    }
    if (!rc) *loss = f[0];
    return rc;
}

int net_loss_and_grad(train_net *net, int n, cl_mem images, cl_mem labels, cl_mem index,
                      int first, bool backward, float *loss)
{
    int rc = pass(net, n, images, labels, index, first, 0, backward);
    if (!rc && !backward) {
        /* The forward kept what a backward needs; nothing will use it. */
        for (int i = 0; i < NET_LAYERS; i++)
            ndcl_layer_release_saved(net->layer[i]);
    }
    if (!rc) RUN(net, OP_READ, read_loss(net, loss));
    return rc;
}

int net_step(train_net *net, int n, cl_mem images, cl_mem labels, cl_mem index, int first,
             int step, int total, float *loss)
{
    int rc = pass(net, n, images, labels, index, first, step, true);
    if (rc) return rc;
    if (net->cfg.group) RUN(net, OP_EXCHANGE, exchange(net, loss));
    const net_config *c = &net->cfg;
    double t0 = mark(net);
    for (int i = 0; i < NET_PARAMS; i++) {
        rc = tk_sgd(&net->k, mem(net->param[i]), mem(net->grad[i]), net->momentum[i],
                    (int)ndcl_tensor_count(net->param[i]), c->lr, c->momentum,
                    c->weight_decay, step, total);
        /* The layer caches W', b' folded from the parameters (evaluation
         * and frozen forwards): tell it that our kernel changed them. */
        if (!rc) rc = nd(net, ndcl_tensor_changed(net->param[i]), "ndcl_tensor_changed");
        if (rc) return rc;
    }
    if (net->profile) net->op_seconds[OP_SGD] += mark(net) - t0;
    if (!net->cfg.group) RUN(net, OP_READ, read_loss(net, loss));
    return TR_OK;
}

static int evaluate(train_net *net, int count, int chunk, cl_mem images, cl_mem labels,
                    cl_mem index, long *correct);

int net_evaluate(train_net *net, int count, cl_mem images, cl_mem labels, cl_mem index,
                 long *correct)
{
    const int chunk = 500;
    /* The profile is of training steps. */
    bool profile = net->profile;
    net->profile = false;
    int rc = evaluate(net, count, chunk, images, labels, index, correct);
    net->profile = profile;
    return rc;
}

static int evaluate(train_net *net, int count, int chunk, cl_mem images, cl_mem labels,
                    cl_mem index, long *correct)
{
    cl_int zero = 0;
    cl_int err = clEnqueueFillBuffer(net->k.q, net->correct, &zero, sizeof zero, 0,
                                     sizeof zero, 0, NULL, NULL);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "clEnqueueFillBuffer(count)");
    for (int first = 0; first < count; first += chunk) {
        int n = count - first < chunk ? count - first : chunk;
        net_acts *a = &net->eval[n == chunk ? 0 : 1];
        int rc = acts_ensure(net, a, n, false);
        if (!rc)
            rc = tk_gather(&net->k, images, labels, index, first, n, NET_PIXELS, mem(a->x),
                           a->labels);
        if (!rc) rc = forward(net, a, NDCL_EVAL);
        if (!rc)
            rc = tk_count_correct(&net->k, mem(a->logits), a->labels, n, NET_CLASSES,
                                  net->correct);
        if (rc) return rc;
    }
    /* Nothing differentiates an evaluation: free what the forwards kept. */
    for (int i = 0; i < NET_LAYERS; i++)
        ndcl_layer_release_saved(net->layer[i]);
    cl_int got = 0;
    err = clEnqueueReadBuffer(net->k.q, net->correct, CL_TRUE, 0, sizeof got, &got, 0, NULL,
                              NULL);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "reading the count");
    *correct = got;
    return TR_OK;
}

int net_save(train_net *net, const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return tr_fail(TR_INPUT, "%s: %s", dir, strerror(errno));
    char path[4096];
    for (int i = 0; i < NET_LAYERS; i++) {
        snprintf(path, sizeof path, "%s/%d.safetensors", dir, net_layer_index[i]);
        ndcl_status s = ndcl_layer_save(net->layer[i], path);
        if (s != NDCL_SUCCESS) {
            tr_fail_ndcl(net->ctx, s, path);
            return TR_INPUT;
        }
    }
    /* The folded evaluation weights, as the plain network's state_dict. */
    float *data[NET_PARAMS] = {0};
    int ndims[NET_PARAMS];
    size_t shapes[NET_PARAMS][NDCL_MAX_DIMS];
    int rc = TR_OK;
    for (int l = 0; !rc && l < NET_LAYERS; l++) {
        ndcl_tensor *t[2] = {NULL, NULL};
        rc = nd(net, ndcl_layer_folded(net->layer[l], &t[0], &t[1]), "ndcl_layer_folded");
        for (int j = 0; !rc && j < 2; j++) {
            int i = 2 * l + j;
            size_t n = ndcl_tensor_count(t[j]);
            ndims[i] = ndcl_tensor_ndim(t[j]);
            for (int d = 0; d < ndims[i]; d++)
                shapes[i][d] = ndcl_tensor_dim(t[j], d);
            data[i] = malloc(n * sizeof(float));
            if (!data[i])
                rc = tr_fail(TR_DEVICE, "out of memory");
            else
                rc = nd(net, ndcl_tensor_read(t[j], data[i], n), "reading W', b'");
        }
        ndcl_tensor_destroy(t[0]);
        ndcl_tensor_destroy(t[1]);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ndcl_status s = ndcl_safetensors_write_floats(
            path, NET_PARAMS, net_param_names, (const float *const *)data, ndims,
            (const size_t(*)[NDCL_MAX_DIMS])shapes);
        if (s != NDCL_SUCCESS)
            rc = tr_fail(TR_INPUT, "%s: %s", path, ndcl_context_last_error(NULL));
    }
    for (int i = 0; i < NET_PARAMS; i++)
        free(data[i]);
    return rc;
}
