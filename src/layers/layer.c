/* layer.c - what every layer kind shares: creation and destruction with
 * the list of workspaces, the descriptor checks of every kind, parameters
 * by state_dict name, counters, options (the kind's own through its
 * table), the fold of W', b' through the kind's fold geometry, the
 * running-statistic update, and the public forward and backward, which
 * validate their arguments and call the kind through its table (layer.h)
 * without knowing it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

ndcl_status ndcl_check_common(ndcl_context *ctx, int block, float eps, int n_iter,
                              float momentum)
{
    NDCL_CHECK_ARG(ctx, block >= 1, "block=%d (must be >= 1)", block);
    NDCL_CHECK_ARG(ctx, eps > 0 && isfinite(eps), "eps=%g (must be > 0 and finite)",
                   (double)eps);
    NDCL_CHECK_ARG(ctx, n_iter >= 1 && n_iter <= 1000, "n_iter=%d (must be 1..1000)",
                   n_iter);
    NDCL_CHECK_ARG(ctx, momentum >= 0 && momentum <= 1, "momentum=%g (must be in [0, 1])",
                   (double)momentum);
    return NDCL_SUCCESS;
}

void ndcl_layer_add_workspace(ndcl_layer *l, ndcl_scratch *s, bool saved)
{
    /* The kinds register a fixed set at creation and assert at compile time
     * that it fits, so the guard never drops one. */
    if (l->n_ws < NDCL_MAX_WORKSPACES) l->ws[l->n_ws++] = (ndcl_workspace){s, saved};
}

ndcl_status ndcl_layer_alloc(ndcl_context *ctx, const ndcl_layer_ops *ops, size_t priv_size,
                             ndcl_layer **out)
{
    ndcl_layer *l = calloc(1, sizeof *l);
    if (!l) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "layer allocation");
    l->priv = calloc(1, priv_size ? priv_size : 1);
    if (!l->priv) {
        free(l);
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "layer allocation");
    }
    l->ctx = ctx;
    l->ops = ops;
    l->stats_every = 1;
    ndcl_layer_add_workspace(l, &l->w_fold, false);
    ndcl_layer_add_workspace(l, &l->b_fold, false);
    ndcl_layer_add_workspace(l, &l->mean, false);
    ndcl_layer_add_workspace(l, &l->cov, false);
    ndcl_layer_add_workspace(l, &l->deconv, false);
    ndcl_layer_add_workspace(l, &l->held_mean, false);
    ndcl_layer_add_workspace(l, &l->held_deconv, false);
    ndcl_layer_add_workspace(l, &l->ns_saved, true);
    ndcl_layer_add_workspace(l, &l->xsave, true);
    ndcl_layer_add_workspace(l, &l->wsave, true);
    cl_int err;
    cl_int zero = 0;
    l->bad = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                            sizeof zero, &zero, &err);
    if (err != CL_SUCCESS) {
        free(l->priv);
        free(l);
        return ndcl_fail_cl(ctx, "clCreateBuffer(layer flag)", err);
    }
    ndcl_context_retain(ctx);
    *out = l;
    return NDCL_SUCCESS;
}

void ndcl_layer_destroy(ndcl_layer *l)
{
    if (!l) return;
    for (int i = 0; i < l->n_params; i++) {
        if (l->params[i].mem) clReleaseMemObject(l->params[i].mem);
        ndcl_param_cell_release(l->params[i].cell);
    }
    for (int i = 0; i < l->n_ws; i++)
        ndcl_scratch_release(l->ws[i].s);
    ndcl_layer_release_saved(l);
    if (l->ops->release) l->ops->release(l);
    ndcl_sync_release(&l->sync);
    if (l->bad) clReleaseMemObject(l->bad);
    ndcl_context_release(l->ctx);
    free(l->priv);
    free(l);
}

ndcl_param *ndcl_layer_param(const ndcl_layer *l, const char *name)
{
    for (int i = 0; i < l->n_params; i++)
        if (strcmp(l->params[i].name, name) == 0) return (ndcl_param *)&l->params[i];
    return NULL;
}

ndcl_status ndcl_layer_add_param(ndcl_layer *l, const char *name, int ndim,
                                 const size_t *shape, float value, size_t eye_n)
{
    ndcl_context *ctx = l->ctx;
    ndcl_param *p = &l->params[l->n_params];
    p->name = name;
    p->ndim = ndim;
    p->count = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        NDCL_CHECK_ARG(ctx, ndcl_mul_ok(p->count, shape[i], &p->count),
                       "%s: size overflows", name);
    }
    size_t bytes;
    NDCL_CHECK_ARG(ctx, ndcl_mul_ok(p->count, sizeof(float), &bytes), "%s: size overflows",
                   name);
    if (ctx->shapes_only) {
        /* A probe of the shapes (layer_file.c): nothing on the device, and
         * the shapes are checked before the device's limits. */
        p->mem = NULL;
        p->cell = NULL;
        l->n_params++;
        return NDCL_SUCCESS;
    }
    if (ctx->info.max_alloc_bytes && bytes > ctx->info.max_alloc_bytes)
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                         "%s of %zu bytes exceeds the device's largest allocation", name,
                         bytes);
    cl_int err;
    p->mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clCreateBuffer(parameter)", err);
    p->cell = ndcl_param_cell_new();
    if (!p->cell) {
        clReleaseMemObject(p->mem);
        p->mem = NULL;
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "%s: version cell", name);
    }
    l->n_params++;
    err = clEnqueueFillBuffer(ctx->queue, p->mem, &value, sizeof value, 0, bytes, 0, NULL,
                              NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueFillBuffer(parameter)", err);
    if (eye_n > 0) {
        NDCL_TRY(ndcl_eye_fill(ctx, p->mem, eye_n, p->count / (eye_n * eye_n), 1.0f));
    }
    return NDCL_SUCCESS;
}

ndcl_layer_kind ndcl_layer_kind_of(const ndcl_layer *l)
{
    return l ? l->ops->kind : (ndcl_layer_kind)0;
}
int ndcl_layer_block(const ndcl_layer *l)
{
    return l ? l->block : 0;
}
ndcl_context *ndcl_layer_context(const ndcl_layer *l)
{
    return l ? l->ctx : NULL;
}

/* Looks a parameter up for the public accessors, naming the valid ones. */
static ndcl_status find_param(const ndcl_layer *l, const char *name, ndcl_param **out)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, name != NULL, "name is NULL");
    *out = ndcl_layer_param(l, name);
    if (*out) return NDCL_SUCCESS;
    char names[256] = "";
    for (int i = 0; i < l->n_params; i++) {
        strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
        strncat(names, l->params[i].name, sizeof names - strlen(names) - 1);
    }
    return ndcl_fail(l->ctx, NDCL_ERR_INVALID_ARG,
                     "name=\"%s\": this layer's parameters are %s", name, names);
}

ndcl_status ndcl_layer_param_shape(const ndcl_layer *l, const char *name, int *ndim,
                                   size_t shape[NDCL_MAX_DIMS])
{
    ndcl_param *p;
    NDCL_TRY(find_param(l, name, &p));
    NDCL_CHECK_ARG(l->ctx, ndim && shape, "ndim and shape must not be NULL");
    *ndim = p->ndim;
    memcpy(shape, p->shape, sizeof(size_t) * (size_t)p->ndim);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_set_param(ndcl_layer *l, const char *name, const float *data,
                                 size_t count)
{
    ndcl_param *p;
    NDCL_TRY(find_param(l, name, &p));
    NDCL_CHECK_ARG(l->ctx, data != NULL, "data is NULL");
    NDCL_CHECK_ARG(l->ctx, count == p->count, "count=%zu, %s holds %zu", count, name,
                   p->count);
    cl_int err = clEnqueueWriteBuffer(l->ctx->queue, p->mem, CL_TRUE, 0,
                                      count * sizeof(float), data, 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(l->ctx, "clEnqueueWriteBuffer", err);
    p->cell->version++;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_param_tensor(ndcl_layer *l, const char *name, ndcl_tensor **out)
{
    ndcl_param *p;
    NDCL_TRY(find_param(l, name, &p));
    NDCL_CHECK_ARG(l->ctx, out != NULL, "out is NULL");
    return ndcl_tensor_view(l->ctx, p->mem, p->ndim, p->shape, p->cell, out);
}

bool ndcl_layer_fold_current(const ndcl_layer *l)
{
    if (!l->fold_valid) return false;
    for (int i = 0; i < l->n_params; i++)
        if (l->fold_versions[i] != l->params[i].cell->version) return false;
    return true;
}

void ndcl_layer_fold_done(ndcl_layer *l)
{
    for (int i = 0; i < l->n_params; i++)
        l->fold_versions[i] = l->params[i].cell->version;
    l->fold_valid = true;
}

ndcl_status ndcl_layer_fold_into(ndcl_layer *l, cl_mem D, cl_mem mean)
{
    ndcl_context *ctx = l->ctx;
    ndcl_param *w = ndcl_layer_param(l, "weight"), *b = ndcl_layer_param(l, "bias");
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->w_fold, w->count));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->b_fold, w->shape[0]));
    ndcl_fold_geom g = l->ops->fold_geom(l);
    return ndcl_fold(ctx, &g, w->mem, b ? b->mem : NULL, D, mean, l->w_fold.mem,
                     l->b_fold.mem);
}

ndcl_status ndcl_layer_eval_fold(ndcl_layer *l)
{
    if (ndcl_layer_fold_current(l)) return NDCL_SUCCESS;
    ndcl_context *ctx = l->ctx;
    ndcl_param *rm = ndcl_layer_param(l, "running_mean");
    ndcl_param *rd = ndcl_layer_param(l, "running_deconv");
    NDCL_TRY(ndcl_layer_fold_into(l, rd->mem, rm->mem));
    /* The statistics W', b' are folded from, for the backward's
     * dW = (dW'r - db'⊗μ)·Dᵀ: copies (set_param may change the running
     * buffers), valid as long as the fold is. */
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->mean, rm->count));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->deconv, rd->count));
    NDCL_TRY(ndcl_buffer_copy(ctx, rm->mem, 0, l->mean.mem, 0, rm->count));
    NDCL_TRY(ndcl_buffer_copy(ctx, rd->mem, 0, l->deconv.mem, 0, rd->count));
    ndcl_layer_fold_done(l);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_folded(ndcl_layer *l, ndcl_tensor **weight, ndcl_tensor **bias)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_context *ctx = l->ctx;
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, l->ops->fold_geom != NULL, "a %s layer has no weights to fold",
                   l->ops->name);
    NDCL_CHECK_ARG(ctx, !(weight && bias && *weight && *weight == *bias),
                   "*weight and *bias must be distinct tensors");
    ndcl_param *w = ndcl_layer_param(l, "weight");
    size_t nout = w->shape[0];
    ndcl_tensor *tw = NULL, *tb = NULL;
    if (weight && *weight)
        NDCL_TRY(ndcl_tensor_check(ctx, *weight, "*weight", w->ndim, w->shape));
    if (bias && *bias) NDCL_TRY(ndcl_tensor_check(ctx, *bias, "*bias", 1, &nout));
    ndcl_status s = ndcl_layer_eval_fold(l);
    if (s == NDCL_SUCCESS && weight)
        s = *weight ? NDCL_SUCCESS : ndcl_tensor_create(ctx, w->ndim, w->shape, &tw);
    if (s == NDCL_SUCCESS && bias)
        s = *bias ? NDCL_SUCCESS : ndcl_tensor_create(ctx, 1, &nout, &tb);
    ndcl_tensor *dw = weight ? (*weight ? *weight : tw) : NULL;
    ndcl_tensor *db = bias ? (*bias ? *bias : tb) : NULL;
    if (s == NDCL_SUCCESS && dw) {
        ndcl_tensor_touch(dw);
        s = ndcl_buffer_copy(ctx, l->w_fold.mem, 0, dw->mem, 0, w->count);
    }
    if (s == NDCL_SUCCESS && db) {
        ndcl_tensor_touch(db);
        s = ndcl_buffer_copy(ctx, l->b_fold.mem, 0, db->mem, 0, nout);
    }
    if (s != NDCL_SUCCESS) {
        ndcl_tensor_destroy(tw);
        ndcl_tensor_destroy(tb);
        return s;
    }
    if (tw) *weight = tw;
    if (tb) *bias = tb;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_get_param(const ndcl_layer *l, const char *name, float *data,
                                 size_t count)
{
    ndcl_param *p;
    NDCL_TRY(find_param(l, name, &p));
    NDCL_CHECK_ARG(l->ctx, data != NULL, "data is NULL");
    NDCL_CHECK_ARG(l->ctx, count == p->count, "count=%zu, %s holds %zu", count, name,
                   p->count);
    cl_int err = clEnqueueReadBuffer(l->ctx->queue, p->mem, CL_TRUE, 0,
                                     count * sizeof(float), data, 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(l->ctx, "clEnqueueReadBuffer", err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_get_counter(const ndcl_layer *l, int64_t *out)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, out != NULL, "out is NULL");
    NDCL_CHECK_ARG(l->ctx, l->ops->has_counter, "a %s layer has no counter", l->ops->name);
    *out = l->counter;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_set_counter(ndcl_layer *l, int64_t value)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, l->ops->has_counter, "a %s layer has no counter", l->ops->name);
    NDCL_CHECK_ARG(l->ctx, value >= 0, "counter=%lld (must be >= 0)", (long long)value);
    l->counter = value;
    l->fold_valid = false; /* the freeze state may change with it */
    l->stats_phase = 0;
    return NDCL_SUCCESS;
}

/* The kinds an option of a kind's own applies to, for the message when
 * the layer's kind does not take it. */
static ndcl_status not_this_kind(const ndcl_layer *l, ndcl_layer_option option)
{
    switch (option) {
    case NDCL_LAYER_CONV_CHUNK:
        return ndcl_fail(l->ctx, NDCL_ERR_INVALID_ARG,
                         "NDCL_LAYER_CONV_CHUNK applies to conv2d layers, not %s",
                         l->ops->name);
    case NDCL_LAYER_CONV_ALGO:
        return ndcl_fail(l->ctx, NDCL_ERR_INVALID_ARG,
                         "NDCL_LAYER_CONV_ALGO applies to conv2d layers, not %s",
                         l->ops->name);
    default: break;
    }
    return ndcl_fail(l->ctx, NDCL_ERR_INVALID_ARG, "option=%d is not a layer option",
                     (int)option);
}

ndcl_status ndcl_layer_set_option(ndcl_layer *l, ndcl_layer_option option, int64_t value)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    bool handled = false;
    if (l->ops->set_option) {
        ndcl_status s = l->ops->set_option(l, option, value, &handled);
        if (handled) return s;
    }
    switch (option) {
    case NDCL_LAYER_BORROW_INPUT:
        NDCL_CHECK_ARG(l->ctx, value == 0 || value == 1,
                       "NDCL_LAYER_BORROW_INPUT=%lld (must be 0 or 1)", (long long)value);
        l->borrow_input = value != 0;
        return NDCL_SUCCESS;
    case NDCL_LAYER_STATS_EVERY:
        NDCL_CHECK_ARG(l->ctx, l->ops->stats_every,
                       "NDCL_LAYER_STATS_EVERY applies to conv2d and linear layers, not %s",
                       l->ops->name);
        NDCL_CHECK_ARG(l->ctx, value >= 1 && value <= INT32_MAX,
                       "NDCL_LAYER_STATS_EVERY=%lld (must be 1..2^31-1)", (long long)value);
        l->stats_every = value;
        l->stats_phase = 0;
        if (value == 1) {
            ndcl_scratch_release(&l->held_mean);
            ndcl_scratch_release(&l->held_deconv);
        }
        return NDCL_SUCCESS;
    default: break;
    }
    return not_this_kind(l, option);
}

ndcl_status ndcl_layer_get_option(const ndcl_layer *l, ndcl_layer_option option,
                                  int64_t *value)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    NDCL_CHECK_ARG(l->ctx, value != NULL, "value is NULL");
    bool handled = false;
    if (l->ops->get_option) {
        ndcl_status s = l->ops->get_option(l, option, value, &handled);
        if (handled) return s;
    }
    switch (option) {
    case NDCL_LAYER_BORROW_INPUT: *value = l->borrow_input; return NDCL_SUCCESS;
    case NDCL_LAYER_STATS_EVERY: *value = l->stats_every; return NDCL_SUCCESS;
    default: break;
    }
    return not_this_kind(l, option);
}

ndcl_status ndcl_layer_workspace_bytes(const ndcl_layer *l, size_t *bytes)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    NDCL_CHECK_ARG(l->ctx, bytes != NULL, "bytes is NULL");
    size_t floats = 0;
    for (int i = 0; i < l->n_ws; i++)
        floats += l->ws[i].s->mem ? l->ws[i].s->cap : 0;
    *bytes = floats * sizeof(float);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_update_running(ndcl_layer *l, float momentum, const ndcl_update *u,
                                      int nu)
{
    ndcl_context *ctx = l->ctx;
    cl_int zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, l->bad, &zero, sizeof zero, 0, sizeof zero,
                                     0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueFillBuffer(flag)", err);
    /* Every statistic is checked before any running buffer changes. */
    for (int i = 0; i < nu; i++)
        NDCL_TRY(
            ndcl_check_finite(ctx, u[i].stat, u[i].stat_off, u[i].n, l->bad, ctx->flag));
    for (int i = 0; i < nu; i++)
        NDCL_TRY(ndcl_momentum_update(ctx, u[i].n, momentum, u[i].copy, u[i].stat,
                                      u[i].stat_off, u[i].running, l->bad));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_output(ndcl_context *ctx, ndcl_tensor **y, int ndim, const size_t *shape)
{
    NDCL_CHECK_ARG(ctx, y != NULL, "y is NULL");
    if (*y) {
        NDCL_TRY(ndcl_tensor_fit(ctx, *y, "*y", ndim, shape));
        ndcl_tensor_touch(*y);
        return NDCL_SUCCESS;
    }
    return ndcl_tensor_create(ctx, ndim, shape, y);
}

static ndcl_status forward_args(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                                ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, mode == NDCL_TRAIN || mode == NDCL_EVAL,
                   "mode=%d (must be NDCL_TRAIN or NDCL_EVAL)", (int)mode);
    NDCL_CHECK_ARG(ctx, x != NULL, "x is NULL");
    NDCL_CHECK_ARG(ctx, x->ctx == ctx, "x belongs to another context");
    NDCL_CHECK_ARG(ctx, y != NULL, "y is NULL");
    NDCL_CHECK_ARG(ctx, *y != x,
                   "*y must not be x (the output cannot overwrite the input)");
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                               ndcl_tensor **y)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    /* In a group, a step on batch statistics makes collectives, and its
     * training backward one more: a rank whose arguments are bad still
     * takes part in the first, with its failure flag (group.h). */
    const bool group = ndcl_sync_forward_active(l, mode);
    if (l->sync.on) l->sync.bw_due = group && mode == NDCL_TRAIN;
    ndcl_status s = forward_args(l, mode, x, y);
    if (s != NDCL_SUCCESS) {
        if (group) {
            l->saved.valid = false;
            ndcl_sync_header(&l->sync, s, NULL);
        }
        return s;
    }
    /* A tensor created here is handed out only on success. */
    ndcl_tensor *out = *y;
    s = l->ops->forward(l, mode, x, &out);
    if (s != NDCL_SUCCESS) {
        if (out != *y) ndcl_tensor_destroy(out);
        return s;
    }
    *y = out;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ groups */

ndcl_status ndcl_layer_set_group(ndcl_layer *l, const ndcl_group *group)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_context *ctx = l->ctx;
    ndcl_clear_error(ctx);
    ndcl_sync next = {0};
    next.ctx = ctx;
    if (group) {
        NDCL_CHECK_ARG(ctx, group->size >= 1, "group size=%d (must be >= 1)", group->size);
        NDCL_CHECK_ARG(ctx, group->rank >= 0 && group->rank < group->size,
                       "group rank=%d (must be 0..%d)", group->rank, group->size - 1);
        NDCL_CHECK_ARG(ctx, group->allreduce != NULL, "group allreduce is NULL");
        NDCL_CHECK_ARG(ctx, (size_t)group->size <= SIZE_MAX / 8 / NDCL_SYNC_SLOT,
                       "group size=%d: too many ranks", group->size);
        size_t fwd, bw;
        l->ops->sync_counts(l, &fwd, &bw);
        size_t head = (size_t)group->size * NDCL_SYNC_SLOT;
        next.cap = head > fwd ? head : fwd;
        if (bw > next.cap) next.cap = bw;
        /* Reads of whole matrices (nf x nf per group) are at most bw. */
        next.fcap = fwd + bw;
        next.buf = malloc(next.cap * sizeof *next.buf);
        next.fbuf = malloc(next.fcap * sizeof *next.fbuf);
        if (!next.buf || !next.fbuf) {
            free(next.buf);
            free(next.fbuf);
            return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                             "group buffers of %zu and %zu values", next.cap, next.fcap);
        }
        next.on = true;
        next.g = *group;
        next.bw_count = bw;
    }
    ndcl_sync_release(&l->sync);
    l->sync = next;
    ndcl_layer_release_saved(l);
    return NDCL_SUCCESS;
}

bool ndcl_sync_forward_active(const ndcl_layer *l, ndcl_mode mode)
{
    return l->sync.on && (mode == NDCL_TRAIN || mode == NDCL_EVAL) &&
           l->ops->batch_stats(l, mode);
}

bool ndcl_layer_reuses_stats(const ndcl_layer *l, ndcl_mode mode)
{
    return mode == NDCL_TRAIN && l->stats_every > 1 && l->stats_phase > 0;
}

/* The statistics' sizes: those of the running buffers they update. */
static void stat_counts(const ndcl_layer *l, size_t *mean, size_t *deconv)
{
    *mean = ndcl_layer_param(l, "running_mean")->count;
    *deconv = ndcl_layer_param(l, "running_deconv")->count;
}

ndcl_status ndcl_layer_hold_stats(ndcl_layer *l)
{
    if (l->stats_every <= 1) return NDCL_SUCCESS;
    size_t nm, nd;
    stat_counts(l, &nm, &nd);
    NDCL_TRY(ndcl_scratch_ensure(l->ctx, &l->held_mean, nm));
    NDCL_TRY(ndcl_scratch_ensure(l->ctx, &l->held_deconv, nd));
    NDCL_TRY(ndcl_buffer_copy(l->ctx, l->mean.mem, 0, l->held_mean.mem, 0, nm));
    return ndcl_buffer_copy(l->ctx, l->deconv.mem, 0, l->held_deconv.mem, 0, nd);
}

ndcl_status ndcl_layer_use_held_stats(ndcl_layer *l)
{
    size_t nm, nd;
    stat_counts(l, &nm, &nd);
    NDCL_TRY(ndcl_scratch_ensure(l->ctx, &l->mean, nm));
    NDCL_TRY(ndcl_scratch_ensure(l->ctx, &l->deconv, nd));
    NDCL_TRY(ndcl_buffer_copy(l->ctx, l->held_mean.mem, 0, l->mean.mem, 0, nm));
    return ndcl_buffer_copy(l->ctx, l->held_deconv.mem, 0, l->deconv.mem, 0, nd);
}

void ndcl_layer_stats_step_done(ndcl_layer *l, ndcl_mode mode)
{
    if (mode == NDCL_TRAIN) l->stats_phase = (l->stats_phase + 1) % l->stats_every;
}

void ndcl_layer_save_record(ndcl_layer *l, ndcl_mode mode, bool stats, bool frozen,
                            const ndcl_tensor *x, const ndcl_tensor *y)
{
    ndcl_saved *r = &l->saved;
    r->mode = mode;
    r->stats = stats;
    r->frozen = frozen;
    r->xdim = x->ndim;
    r->ydim = y->ndim;
    memcpy(r->xshape, x->shape, sizeof r->xshape);
    memcpy(r->yshape, y->shape, sizeof r->yshape);
    r->valid = true;
}

ndcl_status ndcl_layer_keep_input(ndcl_layer *l, const ndcl_tensor *x)
{
    if (l->x_borrowed) {
        clReleaseMemObject(l->x_borrowed);
        l->x_borrowed = NULL;
    }
    if (l->borrow_input) {
        /* Retained: the caller may destroy the tensor, not change it. */
        cl_int err = clRetainMemObject(x->mem);
        if (err != CL_SUCCESS) return ndcl_fail_cl(l->ctx, "clRetainMemObject(x)", err);
        l->x_borrowed = x->mem;
        ndcl_scratch_release(&l->xsave);
        return NDCL_SUCCESS;
    }
    NDCL_TRY(ndcl_scratch_ensure(l->ctx, &l->xsave, x->count));
    return ndcl_buffer_copy(l->ctx, x->mem, 0, l->xsave.mem, 0, x->count);
}

cl_mem ndcl_layer_kept_input(const ndcl_layer *l)
{
    return l->x_borrowed ? l->x_borrowed : l->xsave.mem;
}

void ndcl_layer_release_saved(ndcl_layer *l)
{
    if (!l) return;
    l->saved.valid = false;
    if (l->x_borrowed) {
        clReleaseMemObject(l->x_borrowed);
        l->x_borrowed = NULL;
    }
    /* The large buffers only: the forward allocates them again on demand.
     * The evaluation fold cache (w_fold, b_fold) is not backward state. */
    for (int i = 0; i < l->n_ws; i++)
        if (l->ws[i].saved) ndcl_scratch_release(l->ws[i].s);
}

/* An output of the backward pass: *out NULL -> created (and *made set, so
 * that a later failure destroys it), else checked against the shape and
 * against the tensors the call reads. */
static ndcl_status bw_output(ndcl_context *ctx, ndcl_tensor **out, const char *arg,
                             int ndim, const size_t *shape, const ndcl_tensor *dy,
                             ndcl_tensor **t, bool *made)
{
    *made = false;
    *t = NULL;
    if (!out) return NDCL_SUCCESS;
    if (*out) {
        NDCL_CHECK_ARG(ctx, *out != dy, "%s must not be dy", arg);
        NDCL_TRY(ndcl_tensor_fit(ctx, *out, arg, ndim, shape));
        ndcl_tensor_touch(*out);
        *t = *out;
        return NDCL_SUCCESS;
    }
    NDCL_TRY(ndcl_tensor_create(ctx, ndim, shape, t));
    *made = true;
    return NDCL_SUCCESS;
}

static ndcl_status backward(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor **dx,
                            ndcl_tensor **dweight, ndcl_tensor **dbias);

ndcl_status ndcl_layer_backward(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor **dx,
                                ndcl_tensor **dweight, ndcl_tensor **dbias)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    /* After a grouped training step the backward makes one collective,
     * whatever happens on this rank (group.h): the kind makes it once the
     * arguments are checked, else the failure is sent here. */
    const bool due = l->sync.on && l->sync.bw_due;
    l->sync.bw_due = false;
    l->sync.bw_active = due;
    ndcl_status s = backward(l, dy, dx, dweight, dbias);
    if (due && !l->sync.bw_active) return s; /* the kind made the collective */
    l->sync.bw_active = false;
    if (due) ndcl_sync_fail(&l->sync, s, l->sync.bw_count);
    return s;
}

static ndcl_status backward(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor **dx,
                            ndcl_tensor **dweight, ndcl_tensor **dbias)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_saved *r = &l->saved;
    if (!r->valid)
        return ndcl_fail(
            ctx, NDCL_ERR_STATE,
            "backward without a forward to differentiate: none since the layer "
            "was created, the last backward or ndcl_layer_release_saved (or the "
            "last forward failed)");
    NDCL_CHECK_ARG(ctx, dy != NULL, "dy is NULL");
    NDCL_CHECK_ARG(ctx, dy->ctx == ctx, "dy belongs to another context");
    NDCL_TRY(ndcl_tensor_check(ctx, dy, "dy", r->ydim, r->yshape));
    ndcl_param *w = ndcl_layer_param(l, "weight"), *b = ndcl_layer_param(l, "bias");
    NDCL_CHECK_ARG(ctx, w || !dweight, "dweight must be NULL: a %s layer has no parameters",
                   l->ops->name);
    NDCL_CHECK_ARG(ctx, w || !dbias, "dbias must be NULL: a %s layer has no parameters",
                   l->ops->name);
    /* A layer without a bias has no bias gradient: *dbias is left alone. */
    if (!b) dbias = NULL;
    NDCL_CHECK_ARG(
        ctx,
        !(dx && *dx && ((dweight && *dx == *dweight) || (dbias && *dx == *dbias))) &&
            !(dweight && *dweight && dbias && *dweight == *dbias),
        "*dx, *dweight and *dbias must be distinct tensors");
    ndcl_tensor *tx = NULL, *tw = NULL, *tb = NULL;
    bool mx = false, mw = false, mb = false;
    ndcl_status s = bw_output(ctx, dx, "*dx", r->xdim, r->xshape, dy, &tx, &mx);
    if (s == NDCL_SUCCESS && w)
        s = bw_output(ctx, dweight, "*dweight", w->ndim, w->shape, dy, &tw, &mw);
    if (s == NDCL_SUCCESS && b)
        s = bw_output(ctx, dbias, "*dbias", b->ndim, b->shape, dy, &tb, &mb);
    if (s == NDCL_SUCCESS) {
        s = l->ops->backward(l, dy, tx, tw, tb);
        l->sync.bw_active = false; /* it made the collective, if one was due */
    }
    if (s != NDCL_SUCCESS) {
        if (mx) ndcl_tensor_destroy(tx);
        if (mw) ndcl_tensor_destroy(tw);
        if (mb) ndcl_tensor_destroy(tb);
        return s;
    }
    /* Differentiated once: a second backward needs a new forward. */
    l->saved.valid = false;
    if (dx) *dx = tx;
    if (dweight) *dweight = tw;
    if (dbias) *dbias = tb;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_numerical_status(const ndcl_layer *l)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_context *ctx = l->ctx;
    ndcl_clear_error(ctx);
    /* The layer's own flag, reset by each training step that computes
     * statistics: reading it leaves the context's flag to ndcl_finish. */
    cl_int bad = 0;
    cl_int err = clEnqueueReadBuffer(ctx->queue, l->bad, CL_TRUE, 0, sizeof bad, &bad, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueReadBuffer(layer flag)", err);
    if (bad != 0)
        return ndcl_fail(ctx, NDCL_ERR_NUMERICAL,
                         "the %s layer's last training step met a non-finite statistic; "
                         "its running statistics kept their previous values",
                         l->ops->name);
    return NDCL_SUCCESS;
}
