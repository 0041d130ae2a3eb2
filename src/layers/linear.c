/* linear.c - the deconvolved linear layer (Delinear): the input viewed as
 * rows of B features is whitened, the whitening folded into W and b, then
 * one GEMM; the forward keeps what linear_backward.c needs. */
#include "layers/linear.h"

_Static_assert(NDCL_LAYER_COMMON_WORKSPACES + 1 + NDCL_LIN_BW <= NDCL_MAX_WORKSPACES,
               "the layer registers more workspaces than a layer holds");

ndcl_linear_desc ndcl_linear_desc_default(int in_features, int out_features)
{
    ndcl_linear_desc d = {0};
    d.in_features = in_features;
    d.out_features = out_features;
    d.bias = 1;
    d.block = 512;
    d.eps = 1e-5f;
    d.n_iter = 5;
    d.momentum = 0.1f;
    return d;
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y);

static bool batch_stats(const ndcl_layer *l, ndcl_mode mode)
{
    return mode == NDCL_TRAIN && !ndcl_layer_reuses_stats(l, mode);
}

static void sync_counts(const ndcl_layer *l, size_t *fwd, size_t *bw)
{
    const size_t B = (size_t)l->block;
    *fwd = 1 + B * (B + 1) / 2 + B;
    *bw = 1 + B * B + B;
}

static const ndcl_layer_ops ops = {
    .kind = NDCL_LAYER_LINEAR,
    .name = "linear",
    .has_counter = false,
    .stats_every = true,
    .forward = forward,
    .backward = ndcl_linear_layer_backward,
    .batch_stats = batch_stats,
    .sync_counts = sync_counts,
    .fold_geom = ndcl_linear_fold_geom,
};

ndcl_status ndcl_layer_linear_desc(const ndcl_layer *l, ndcl_linear_desc *out)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, out != NULL, "out is NULL");
    NDCL_CHECK_ARG(l->ctx, l->ops == &ops, "layer is not a linear layer");
    *out = ndcl_lin(l)->desc;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_linear_create(ndcl_context *ctx, const ndcl_linear_desc *d,
                               ndcl_layer **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, d != NULL, "desc is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    const int lim = 1 << 24;
    NDCL_CHECK_ARG(ctx, d->in_features >= 1 && d->in_features <= lim,
                   "in_features=%d (must be 1..%d)", d->in_features, lim);
    NDCL_CHECK_ARG(ctx, d->out_features >= 1 && d->out_features <= lim,
                   "out_features=%d (must be 1..%d)", d->out_features, lim);
    NDCL_TRY(ndcl_check_common(ctx, d->block, d->eps, d->n_iter, d->momentum));
    int F = d->in_features, B = ndcl_block_clamp(F, d->block, 1);
    NDCL_CHECK_ARG(ctx, B <= 16384, "block=%d: a %dx%d whitening matrix is too large", B, B,
                   B);
    ndcl_layer *l;
    NDCL_TRY(ndcl_layer_alloc(ctx, &ops, sizeof(ndcl_linear), &l));
    ndcl_linear *lin = ndcl_lin(l);
    lin->desc = *d;
    ndcl_layer_add_workspace(l, &lin->X, true);
    for (int i = 0; i < NDCL_LIN_BW; i++)
        ndcl_layer_add_workspace(l, &lin->bw[i], true);
    l->block = B;
    size_t Fo = (size_t)d->out_features, nb = (size_t)B;
    ndcl_status s =
        ndcl_layer_add_param(l, "weight", 2, (size_t[]){Fo, (size_t)F}, 0.0f, 0);
    if (s == NDCL_SUCCESS && d->bias)
        s = ndcl_layer_add_param(l, "bias", 1, (size_t[]){Fo}, 0.0f, 0);
    if (s == NDCL_SUCCESS) s = ndcl_layer_add_param(l, "running_mean", 1, &nb, 0.0f, 0);
    if (s == NDCL_SUCCESS)
        s = ndcl_layer_add_param(l, "running_deconv", 2, (size_t[]){nb, nb}, 0.0f, nb);
    if (s != NDCL_SUCCESS) {
        ndcl_layer_destroy(l);
        return s;
    }
    *out = l;
    return NDCL_SUCCESS;
}

/* W viewed as rows of B contiguous features, as x is for the statistics. */
ndcl_fold_geom ndcl_linear_fold_geom(const ndcl_layer *l)
{
    size_t F = (size_t)ndcl_lin(l)->desc.in_features, B = (size_t)l->block;
    ndcl_fold_geom g = {.outputs = (size_t)ndcl_lin(l)->desc.out_features,
                        .K = F,
                        .R = F / B,
                        .nf = B,
                        .rs = B,
                        .fs = 1,
                        .batch = 1};
    return g;
}

/* y (rows x Fout) = x·W'ᵀ + b'. */
static ndcl_status apply(ndcl_layer *l, cl_mem x, size_t rows, cl_mem y)
{
    ndcl_context *ctx = l->ctx;
    size_t F = (size_t)ndcl_lin(l)->desc.in_features,
           Fo = (size_t)ndcl_lin(l)->desc.out_features;
    return ndcl_dense_forward(ctx, rows, F, Fo, x, l->w_fold.mem, l->b_fold.mem, y);
}

/* The checks, the output and the copy of x the backward needs. */
static ndcl_status prepare(ndcl_layer *l, const ndcl_tensor *x, ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_linear_desc *d = &ndcl_lin(l)->desc;
    size_t F = (size_t)d->in_features, B = (size_t)l->block;
    NDCL_CHECK_ARG(ctx, x->ndim >= 2 && x->shape[x->ndim - 1] == F,
                   "x must be [..., %d] (last dim is %zu)", d->in_features,
                   x->shape[x->ndim - 1]);
    size_t yshape[NDCL_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        yshape[i] = x->shape[i];
    yshape[x->ndim - 1] = (size_t)d->out_features;
    NDCL_TRY(ndcl_output(ctx, y, x->ndim, yshape));
    /* The backward needs x itself (dW' = dyᵀ·x): a copy, since the caller
     * may change or destroy x before it, unless x is borrowed. */
    NDCL_TRY(ndcl_layer_keep_input(l, x));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->mean, B));
    return ndcl_scratch_ensure(ctx, &l->deconv, B * B);
}

/* x viewed as M rows of B copied to l->X, and the workspaces of the
 * statistics. */
static ndcl_status features(ndcl_layer *l, const ndcl_tensor *x)
{
    ndcl_context *ctx = l->ctx;
    size_t B = (size_t)l->block;
    ndcl_param *w = ndcl_layer_param(l, "weight");
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_lin(l)->X, x->count));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->cov, B * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->ns_saved,
                                 ndcl_isqrt_saved_size(1, B, ndcl_lin(l)->desc.n_iter)));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->wsave, w->count));
    /* The backward needs W as it is now (dD = Wrᵀ·dW'r). */
    NDCL_TRY(ndcl_buffer_copy(ctx, w->mem, 0, l->wsave.mem, 0, w->count));
    return ndcl_buffer_copy(ctx, x->mem, 0, ndcl_lin(l)->X.mem, 0, x->count);
    return NDCL_SUCCESS;
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_linear_desc *d = &ndcl_lin(l)->desc;
    l->saved.valid = false; /* whatever happens, the last forward is this one */
    size_t F = (size_t)d->in_features, B = (size_t)l->block;
    bool group = ndcl_sync_forward_active(l, mode);
    ndcl_status s = prepare(l, x, y);
    /* In a group every rank reports before the first collective. */
    if (group) s = ndcl_sync_header(&l->sync, s, x);
    NDCL_TRY(s);
    size_t rows = x->count / F;
    ndcl_param *rm = ndcl_layer_param(l, "running_mean");
    ndcl_param *rd = ndcl_layer_param(l, "running_deconv");

    const bool reuse = ndcl_layer_reuses_stats(l, mode);
    if (mode == NDCL_TRAIN && !reuse) {
        /* First: the batch statistics replace the fold's in l->mean and
         * l->deconv, whatever happens below. */
        l->fold_valid = false;
        size_t M = x->count / B; /* rows of B features */
        if (group) {
            /* The global batch's rows: its samples times this one's rows each. */
            size_t total_rows = l->sync.total * (x->count / x->shape[0]) / B;
            s = features(l, x); /* before ndcl_lin(l)->X.mem is read: it may grow */
            NDCL_TRY(ndcl_sync_centred_stats(&l->sync, s, ndcl_lin(l)->X.mem, M, 1, B,
                                             total_rows, d->eps, l->mean.mem, l->cov.mem));
        } else {
            NDCL_TRY(features(l, x));
            NDCL_TRY(ndcl_col_mean(ctx, ndcl_lin(l)->X.mem, M, B, l->mean.mem));
            NDCL_TRY(ndcl_center(ctx, ndcl_lin(l)->X.mem, M, B, l->mean.mem));
            NDCL_TRY(ndcl_cov(ctx, ndcl_lin(l)->X.mem, M, 1, B, 1.0f / (float)M, d->eps,
                              l->cov.mem));
        }
        NDCL_TRY(ndcl_isqrt_ns(ctx, l->cov.mem, 1, B, d->n_iter, l->deconv.mem,
                               l->ns_saved.mem));
        NDCL_TRY(ndcl_layer_fold_into(l, l->deconv.mem, l->mean.mem));
        NDCL_TRY(apply(l, x->mem, rows, (*y)->mem));
        ndcl_update u[2] = {{l->mean.mem, rm->mem, B, false, 0},
                            {l->deconv.mem, rd->mem, B * B, false, 0}};
        NDCL_TRY(ndcl_layer_update_running(l, d->momentum, u, 2));
        NDCL_TRY(ndcl_layer_hold_stats(l));
    } else if (reuse) {
        /* The held statistics where the fold's adjoint reads them. */
        l->fold_valid = false;
        NDCL_TRY(ndcl_layer_use_held_stats(l));
        NDCL_TRY(ndcl_layer_fold_into(l, l->deconv.mem, l->mean.mem));
        NDCL_TRY(apply(l, x->mem, rows, (*y)->mem));
    } else {
        NDCL_TRY(ndcl_layer_eval_fold(l));
        NDCL_TRY(apply(l, x->mem, rows, (*y)->mem));
    }
    ndcl_layer_stats_step_done(l, mode);
    ndcl_layer_save_record(l, mode, mode == NDCL_TRAIN && !reuse, reuse, x, *y);
    return NDCL_SUCCESS;
}
