/* fastdeconv.c - the deconvolved 2-D convolution (FastDeconv): creation with the
 * original's block clamping, and the forward pass: sampled patches, mean,
 * covariance, Newton-Schulz, weight fold, one convolution, running
 * updates and the freeze counter, keeping what the backward pass
 * (fastdeconv_backward.c) needs. */
#include "layers/fastdeconv.h"

_Static_assert(NDCL_LAYER_COMMON_WORKSPACES + 3 + NDCL_FD_BW <= NDCL_MAX_WORKSPACES,
               "the layer registers more workspaces than a layer holds");

ndcl_conv2d_desc ndcl_conv2d_desc_default(int in_channels, int out_channels,
                                          int kernel_size)
{
    ndcl_conv2d_desc d = {0};
    d.in_channels = in_channels;
    d.out_channels = out_channels;
    d.kernel_h = d.kernel_w = kernel_size;
    d.stride = 1;
    d.padding = 0;
    d.dilation = 1;
    d.groups = 1;
    d.bias = 1;
    d.block = 64;
    d.sampling_stride = 3;
    d.eps = 1e-5f;
    d.n_iter = 5;
    d.momentum = 0.1f;
    d.freeze = 0;
    d.freeze_iter = 100;
    return d;
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y);

/* A training step uses the batch's statistics unless the layer is frozen
 * or reuses an earlier step's (NDCL_LAYER_STATS_EVERY). */
static bool frozen_now(const ndcl_layer *l)
{
    return ndcl_fd(l)->desc.freeze && l->counter > ndcl_fd(l)->desc.freeze_iter;
}

static bool batch_stats(const ndcl_layer *l, ndcl_mode mode)
{
    return mode == NDCL_TRAIN && !frozen_now(l) && !ndcl_layer_reuses_stats(l, mode);
}

/* The patch matrix's columns: nf, or C*kh*kw for a grouped convolution. */
static size_t stat_cols(const ndcl_layer *l)
{
    return ndcl_fd(l)->groups * ndcl_fd(l)->nf;
}

static void sync_counts(const ndcl_layer *l, size_t *fwd, size_t *bw)
{
    const size_t G = ndcl_fd(l)->groups, nf = ndcl_fd(l)->nf, cols = stat_cols(l);
    *fwd = 1 + G * nf * (nf + 1) / 2 + cols;
    *bw = 1 + G * nf * nf + cols;
}

static ndcl_status set_option(ndcl_layer *l, ndcl_layer_option option, int64_t value,
                              bool *handled)
{
    ndcl_fastdeconv *fd = ndcl_fd(l);
    switch (option) {
    case NDCL_LAYER_CONV_CHUNK:
        *handled = true;
        NDCL_CHECK_ARG(l->ctx, value >= 0 && value <= INT32_MAX,
                       "NDCL_LAYER_CONV_CHUNK=%lld (must be 0..2^31-1)", (long long)value);
        fd->chunk = (size_t)value;
        return NDCL_SUCCESS;
    case NDCL_LAYER_CONV_ALGO:
        *handled = true;
        NDCL_CHECK_ARG(l->ctx, ndcl_conv_algorithm_name((ndcl_conv_algorithm)value) != NULL,
                       "NDCL_LAYER_CONV_ALGO=%lld is not an ndcl_conv_algorithm",
                       (long long)value);
        fd->cws.force = (ndcl_conv_algorithm)value;
        return NDCL_SUCCESS;
    default: return NDCL_SUCCESS;
    }
}

static ndcl_status get_option(const ndcl_layer *l, ndcl_layer_option option, int64_t *value,
                              bool *handled)
{
    const ndcl_fastdeconv *fd = ndcl_fd(l);
    switch (option) {
    case NDCL_LAYER_CONV_CHUNK: *value = (int64_t)fd->chunk; break;
    case NDCL_LAYER_CONV_ALGO: *value = (int64_t)fd->cws.force; break;
    default: return NDCL_SUCCESS;
    }
    *handled = true;
    return NDCL_SUCCESS;
}

static void release(ndcl_layer *l)
{
    ndcl_conv_ws_release(l->ctx, &ndcl_fd(l)->cws);
}

static const ndcl_layer_ops ops = {
    .kind = NDCL_LAYER_CONV2D,
    .name = "conv2d",
    .has_counter = true,
    .stats_every = true,
    .set_option = set_option,
    .get_option = get_option,
    .release = release,
    .forward = forward,
    .backward = ndcl_conv_layer_backward,
    .batch_stats = batch_stats,
    .sync_counts = sync_counts,
    .fold_geom = ndcl_conv_fold_geom,
};

ndcl_status ndcl_layer_conv2d_desc(const ndcl_layer *l, ndcl_conv2d_desc *out)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, out != NULL, "out is NULL");
    NDCL_CHECK_ARG(l->ctx, l->ops == &ops, "layer is not a conv layer");
    *out = ndcl_fd(l)->desc;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv2d_create(ndcl_context *ctx, const ndcl_conv2d_desc *d,
                               ndcl_layer **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, d != NULL, "desc is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    const int lim = 1 << 20;
    NDCL_CHECK_ARG(ctx, d->in_channels >= 1 && d->in_channels <= lim,
                   "in_channels=%d (must be 1..%d)", d->in_channels, lim);
    NDCL_CHECK_ARG(ctx, d->out_channels >= 1 && d->out_channels <= lim,
                   "out_channels=%d (must be 1..%d)", d->out_channels, lim);
    NDCL_CHECK_ARG(ctx, d->kernel_h >= 1 && d->kernel_h <= 1024,
                   "kernel_h=%d (must be 1..1024)", d->kernel_h);
    NDCL_CHECK_ARG(ctx, d->kernel_w >= 1 && d->kernel_w <= 1024,
                   "kernel_w=%d (must be 1..1024)", d->kernel_w);
    NDCL_CHECK_ARG(ctx, d->stride >= 1, "stride=%d (must be >= 1)", d->stride);
    NDCL_CHECK_ARG(ctx, d->padding >= 0, "padding=%d (must be >= 0)", d->padding);
    NDCL_CHECK_ARG(ctx, d->dilation >= 1, "dilation=%d (must be >= 1)", d->dilation);
    NDCL_CHECK_ARG(ctx, d->groups >= 1, "groups=%d (must be >= 1)", d->groups);
    NDCL_CHECK_ARG(ctx, d->in_channels % d->groups == 0,
                   "groups=%d does not divide in_channels=%d", d->groups, d->in_channels);
    NDCL_CHECK_ARG(ctx, d->out_channels % d->groups == 0,
                   "groups=%d does not divide out_channels=%d", d->groups, d->out_channels);
    NDCL_CHECK_ARG(ctx, d->sampling_stride >= 1, "sampling_stride=%d (must be >= 1)",
                   d->sampling_stride);
    NDCL_CHECK_ARG(ctx, d->freeze_iter >= 1, "freeze_iter=%d (must be >= 1)",
                   d->freeze_iter);
    NDCL_TRY(ndcl_check_common(ctx, d->block, d->eps, d->n_iter, d->momentum));

    int C = d->in_channels, B = ndcl_block_clamp(C, d->block, d->groups);
    size_t kk = (size_t)d->kernel_h * (size_t)d->kernel_w, nf = kk * (size_t)B, t;
    NDCL_CHECK_ARG(ctx,
                   ndcl_mul_ok(nf, nf, &t) && ndcl_mul_ok(t, (size_t)d->groups, &t) &&
                       t <= ((size_t)1 << 31),
                   "kernel %dx%d with block %d gives %zu features: too many", d->kernel_h,
                   d->kernel_w, B, nf);

    ndcl_layer *l;
    NDCL_TRY(ndcl_layer_alloc(ctx, &ops, sizeof(ndcl_fastdeconv), &l));
    ndcl_fastdeconv *fd = ndcl_fd(l);
    fd->desc = *d;
    fd->cws.col = &fd->col;
    fd->cws.tmp = &fd->tmp;
    ndcl_layer_add_workspace(l, &fd->X, true);
    ndcl_layer_add_workspace(l, &fd->col, true);
    ndcl_layer_add_workspace(l, &fd->tmp, true);
    for (int i = 0; i < NDCL_FD_BW; i++)
        ndcl_layer_add_workspace(l, &fd->bw[i], true);
    l->block = B;
    ndcl_fd(l)->nf = nf;
    ndcl_fd(l)->groups = (size_t)d->groups;
    size_t G = ndcl_fd(l)->groups, Cout = (size_t)d->out_channels;
    size_t wshape[4] = {Cout, (size_t)C / G, (size_t)d->kernel_h, (size_t)d->kernel_w};
    size_t mshape[1] = {G == 1 ? nf : (size_t)C * kk};
    size_t dshape[3] = {G, nf, nf};
    ndcl_status s = ndcl_layer_add_param(l, "weight", 4, wshape, 0.0f, 0);
    if (s == NDCL_SUCCESS && d->bias)
        s = ndcl_layer_add_param(l, "bias", 1, (size_t[]){Cout}, 0.0f, 0);
    if (s == NDCL_SUCCESS) s = ndcl_layer_add_param(l, "running_mean", 1, mshape, 0.0f, 0);
    if (s == NDCL_SUCCESS)
        s = G == 1 ? ndcl_layer_add_param(l, "running_deconv", 2, dshape + 1, 0.0f, nf)
                   : ndcl_layer_add_param(l, "running_deconv", 3, dshape, 0.0f, nf);
    if (s != NDCL_SUCCESS) {
        ndcl_layer_destroy(l);
        return s;
    }
    *out = l;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_conv_layer_geom(const ndcl_layer *l, const size_t *xshape,
                                 ndcl_conv_geom *cg)
{
    const ndcl_conv2d_desc *d = &ndcl_fd(l)->desc;
    *cg = (ndcl_conv_geom){.n = xshape[0],
                           .c = xshape[1],
                           .h = xshape[2],
                           .w = xshape[3],
                           .cout = (size_t)d->out_channels,
                           .kh = (size_t)d->kernel_h,
                           .kw = (size_t)d->kernel_w,
                           .stride = (size_t)d->stride,
                           .pad = (size_t)d->padding,
                           .dil = (size_t)d->dilation,
                           .groups = ndcl_fd(l)->groups,
                           .chunk = ndcl_fd(l)->chunk};
    return ndcl_conv_geom_init(l->ctx, cg);
}

ndcl_status ndcl_conv_layer_patch_geom(const ndcl_layer *l, const ndcl_conv_geom *cg,
                                       ndcl_patch_geom *pg)
{
    /* The statistics sample patches at the sampling stride times the conv's. */
    *pg = (ndcl_patch_geom){.n = cg->n,
                            .c = cg->c,
                            .h = cg->h,
                            .w = cg->w,
                            .kh = cg->kh,
                            .kw = cg->kw,
                            .pad = cg->pad,
                            .dil = cg->dil,
                            .stride = (size_t)ndcl_fd(l)->desc.sampling_stride * cg->stride,
                            .groups = ndcl_fd(l)->groups,
                            .block = (size_t)l->block,
                            /* In a group, the 1x1 sample continues the global
                             * batch's sequence of pixels. */
                            .offset = l->sync.on ? l->sync.first * cg->h * cg->w : 0};
    return ndcl_patch_geom_init(l->ctx, pg);
}

/* The fold geometry of this layer: each output's weights as C/B rows of nf
 * interleaved as the patch matrix (G = 1), or one row of nf (G > 1). */
ndcl_fold_geom ndcl_conv_fold_geom(const ndcl_layer *l)
{
    const ndcl_conv2d_desc *d = &ndcl_fd(l)->desc;
    size_t C = (size_t)d->in_channels, kk = (size_t)d->kernel_h * (size_t)d->kernel_w;
    ndcl_fold_geom g = {0};
    g.outputs = (size_t)d->out_channels;
    g.K = C / ndcl_fd(l)->groups * kk;
    g.nf = ndcl_fd(l)->nf;
    g.batch = ndcl_fd(l)->groups;
    if (ndcl_fd(l)->groups == 1) {
        /* Row (o, r) element f is W[o, f*(C/B) + r]: interleaved blocks. */
        g.R = C / (size_t)l->block;
        g.rs = 1;
        g.fs = g.R;
    } else {
        g.R = 1;
        g.rs = 0;
        g.fs = 1;
    }
    return g;
}

/* The checks and workspaces of a forward on x, before any statistic, and
 * the input kept for the backward (which recomputes the patches from it). */
static ndcl_status prepare(ndcl_layer *l, const ndcl_tensor *x, ndcl_tensor **y,
                           ndcl_conv_geom *cg)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_conv2d_desc *d = &ndcl_fd(l)->desc;
    NDCL_CHECK_ARG(ctx, x->ndim == 4 && x->shape[1] == (size_t)d->in_channels,
                   "x must be [N, %d, H, W] (has %d dims, dim 1 = %zu)", d->in_channels,
                   x->ndim, x->ndim > 1 ? x->shape[1] : 0);
    NDCL_TRY(ndcl_conv_layer_geom(l, x->shape, cg));
    size_t yshape[4] = {cg->n, cg->cout, cg->oh, cg->ow};
    NDCL_TRY(ndcl_output(ctx, y, 4, yshape));
    /* The convolution's algorithms, before any statistic: a forced one
     * that does not fit fails here. */
    NDCL_TRY(ndcl_conv_choose(ctx, cg, &ndcl_fd(l)->cws));
    return ndcl_layer_keep_input(l, x);
}

/* The sampled patches of x into l->X, and the workspaces of the batch
 * statistics; pg receives this input's patch geometry. */
static ndcl_status patches(ndcl_layer *l, const ndcl_tensor *x, const ndcl_conv_geom *cg,
                           ndcl_patch_geom *pg)
{
    ndcl_context *ctx = l->ctx;
    size_t G = ndcl_fd(l)->groups, nf = ndcl_fd(l)->nf;
    NDCL_TRY(ndcl_conv_layer_patch_geom(l, cg, pg));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_fd(l)->X, pg->rows * pg->cols));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->mean, pg->cols));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->cov, G * nf * nf));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->deconv, G * nf * nf));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->ns_saved,
                                 ndcl_isqrt_saved_size(G, nf, ndcl_fd(l)->desc.n_iter)));
    ndcl_param *w = ndcl_layer_param(l, "weight");
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->wsave, w->count));
    /* The backward needs W as it is now (dD = Wrᵀ·dW'r). */
    NDCL_TRY(ndcl_buffer_copy(ctx, w->mem, 0, l->wsave.mem, 0, w->count));
    return ndcl_im2col_sampled(ctx, pg, x->mem, ndcl_fd(l)->X.mem);
}

/* The group's rows of the patch matrix: this geometry for the global
 * batch. */
static ndcl_status group_rows(const ndcl_layer *l, const ndcl_conv_geom *cg, size_t *rows)
{
    ndcl_conv_geom g = *cg;
    g.n = l->sync.total;
    ndcl_patch_geom pg;
    NDCL_TRY(ndcl_conv_layer_patch_geom(l, &g, &pg));
    /* That geometry's offset is this rank's; the count is the global one. */
    pg.offset = 0;
    NDCL_TRY(ndcl_patch_geom_init(l->ctx, &pg));
    *rows = pg.rows;
    return NDCL_SUCCESS;
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_conv2d_desc *d = &ndcl_fd(l)->desc;
    l->saved.valid = false; /* whatever happens, the last forward is this one */
    bool train = mode == NDCL_TRAIN;
    bool frozen = frozen_now(l);
    bool reuse = train && !frozen && ndcl_layer_reuses_stats(l, mode);
    bool group = ndcl_sync_forward_active(l, mode);
    ndcl_conv_geom cg;
    ndcl_status s = prepare(l, x, y, &cg);
    /* In a group every rank reports before the first collective. */
    if (group) s = ndcl_sync_header(&l->sync, s, x);
    NDCL_TRY(s);
    ndcl_param *rm = ndcl_layer_param(l, "running_mean");
    ndcl_param *rd = ndcl_layer_param(l, "running_deconv");

    if (train && !frozen && !reuse) {
        /* First: the batch statistics replace the fold's in l->mean and
         * l->deconv, whatever happens below. */
        l->fold_valid = false;
        ndcl_patch_geom pg = {0};
        size_t G = ndcl_fd(l)->groups, nf = ndcl_fd(l)->nf;
        if (group) {
            size_t rows = 0;
            s = group_rows(l, &cg, &rows);
            if (s == NDCL_SUCCESS) s = patches(l, x, &cg, &pg);
            NDCL_TRY(ndcl_sync_centred_stats(&l->sync, s, ndcl_fd(l)->X.mem, pg.rows, G, nf,
                                             rows, d->eps, l->mean.mem, l->cov.mem));
        } else {
            NDCL_TRY(patches(l, x, &cg, &pg));
            NDCL_TRY(ndcl_col_mean(ctx, ndcl_fd(l)->X.mem, pg.rows, pg.cols, l->mean.mem));
            NDCL_TRY(ndcl_center(ctx, ndcl_fd(l)->X.mem, pg.rows, pg.cols, l->mean.mem));
            NDCL_TRY(ndcl_cov(ctx, ndcl_fd(l)->X.mem, pg.rows, G, nf, 1.0f / (float)pg.rows,
                              d->eps, l->cov.mem));
        }
        NDCL_TRY(ndcl_isqrt_ns(ctx, l->cov.mem, G, nf, d->n_iter, l->deconv.mem,
                               l->ns_saved.mem));
        NDCL_TRY(ndcl_layer_fold_into(l, l->deconv.mem, l->mean.mem));
        NDCL_TRY(ndcl_conv_run_forward(ctx, &cg, &ndcl_fd(l)->cws, x->mem, l->w_fold.mem,
                                       l->b_fold.mem, (*y)->mem));
        /* Last, so that a failure above leaves the running buffers as they were. */
        ndcl_update u[2] = {{l->mean.mem, rm->mem, rm->count, false, 0},
                            {l->deconv.mem, rd->mem, rd->count, false, 0}};
        NDCL_TRY(ndcl_layer_update_running(l, d->momentum, u, 2));
        NDCL_TRY(ndcl_layer_hold_stats(l));
    } else if (reuse) {
        /* The held statistics in l->mean and l->deconv, where the fold's
         * adjoint reads them; the evaluation fold is folded anew after. */
        l->fold_valid = false;
        NDCL_TRY(ndcl_layer_use_held_stats(l));
        NDCL_TRY(ndcl_layer_fold_into(l, l->deconv.mem, l->mean.mem));
        NDCL_TRY(ndcl_conv_run_forward(ctx, &cg, &ndcl_fd(l)->cws, x->mem, l->w_fold.mem,
                                       l->b_fold.mem, (*y)->mem));
    } else {
        NDCL_TRY(ndcl_layer_eval_fold(l));
        NDCL_TRY(ndcl_conv_run_forward(ctx, &cg, &ndcl_fd(l)->cws, x->mem, l->w_fold.mem,
                                       l->b_fold.mem, (*y)->mem));
    }
    if (train) l->counter = (l->counter + 1) % ((int64_t)d->freeze_iter * 10);
    if (!frozen) ndcl_layer_stats_step_done(l, mode);
    ndcl_layer_save_record(l, mode, train && !frozen && !reuse, (frozen || reuse) && train,
                           x, *y);
    return NDCL_SUCCESS;
}
