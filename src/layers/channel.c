/* channel.c - channel deconvolution (ChannelDeconv): the first c = ⌊C/B⌋·B
 * channels as B rows are whitened with an uncentred covariance of a strided
 * sample; leftover channels are normalised by one scalar mean and
 * variance. The original's quirks are kept (the covariance of the sample is
 * not centred, the first batch is copied into the running buffers, the
 * variance is unbiased). The forward keeps what channel_backward.c needs. */
#include "layers/channel.h"

ndcl_channel_desc ndcl_channel_desc_default(int block)
{
    ndcl_channel_desc d = {0};
    d.block = block;
    d.eps = 1e-2f;
    d.n_iter = 5;
    d.momentum = 0.1f;
    d.sampling_stride = 3;
    return d;
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y);

static const ndcl_layer_ops ops = {
    .kind = NDCL_LAYER_CHANNEL,
    .name = "channel",
    .has_counter = true,
    .forward = forward,
    .backward = ndcl_channel_layer_backward,
};

ndcl_status ndcl_channel_create(ndcl_context *ctx, const ndcl_channel_desc *d,
                                ndcl_layer **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, d != NULL, "desc is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    NDCL_TRY(ndcl_check_common(ctx, d->block, d->eps, d->n_iter, d->momentum));
    NDCL_CHECK_ARG(ctx, d->block <= 16384,
                   "block=%d: a %dx%d whitening matrix is too large", d->block, d->block,
                   d->block);
    NDCL_CHECK_ARG(ctx, d->sampling_stride >= 1 && d->sampling_stride <= 46340,
                   "sampling_stride=%d (must be 1..46340)", d->sampling_stride);
    ndcl_layer *l;
    NDCL_TRY(ndcl_layer_alloc(ctx, &ops, &l));
    l->channel = *d;
    l->block = d->block;
    l->nf = (size_t)d->block;
    size_t B = (size_t)d->block;
    ndcl_status s = ndcl_layer_add_param(l, "running_mean1", 2, (size_t[]){B, 1}, 0.0f, 0);
    if (s == NDCL_SUCCESS)
        s = ndcl_layer_add_param(l, "running_deconv", 2, (size_t[]){B, B}, 0.0f, B);
    if (s == NDCL_SUCCESS)
        s = ndcl_layer_add_param(l, "running_mean2", 2, (size_t[]){1, 1}, 0.0f, 0);
    if (s == NDCL_SUCCESS)
        s = ndcl_layer_add_param(l, "running_var", 2, (size_t[]){1, 1}, 1.0f, 0);
    if (s != NDCL_SUCCESS) {
        ndcl_layer_destroy(l);
        return s;
    }
    *out = l;
    return NDCL_SUCCESS;
}

void ndcl_ch_geom_init(const ndcl_layer *l, int ndim, const size_t *shape, ndcl_ch_geom *g)
{
    size_t H = ndim == 4 ? shape[2] : 1, W = ndim == 4 ? shape[3] : 1;
    g->N = (int)shape[0];
    g->C = (int)shape[1];
    g->HW = (int)(H * W);
    g->B = l->channel.block;
    g->c = g->C / g->B * g->B;
    g->L = (size_t)(g->c / g->B) * (size_t)g->N * (size_t)g->HW;
    size_t ss = (size_t)l->channel.sampling_stride;
    g->step = (ss > 1 && H >= ss && W >= ss) ? (int)(ss * ss) : 1;
    g->Ls = (g->L + (size_t)g->step - 1) / (size_t)g->step;
}

/* Normalises the leftover channels C - c by one scalar mean and unbiased
 * variance: of the batch (written to extra[0], extra[1]) or the running
 * buffers. */
static ndcl_status leftover(ndcl_layer *l, const ndcl_ch_geom *g, cl_mem x, cl_mem y,
                            bool batch_stats)
{
    ndcl_context *ctx = l->ctx;
    cl_mem mean = ndcl_layer_param(l, "running_mean2")->mem;
    cl_mem var = ndcl_layer_param(l, "running_var")->mem;
    int mo = 0, vo = 0;
    if (batch_stats) {
        size_t wg;
        NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ch_left_stats", 256, sizeof(float), &wg));
        ndcl_arg args[] = {NDCL_ARG(g->N),         NDCL_ARG(g->C),
                           NDCL_ARG(g->HW),        NDCL_ARG(g->c),
                           NDCL_ARG(g->step),      NDCL_ARG(x),
                           NDCL_ARG(l->extra.mem), NDCL_LOCAL(wg * sizeof(float))};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_left_stats", 1, &wg, &wg, args, 8));
        mean = var = l->extra.mem;
        vo = 1;
    }
    size_t n = (size_t)g->N * (size_t)(g->C - g->c) * (size_t)g->HW;
    float eps = l->channel.eps;
    ndcl_arg args[] = {NDCL_ARG(g->N), NDCL_ARG(g->C), NDCL_ARG(g->HW), NDCL_ARG(g->c),
                       NDCL_ARG(eps),  NDCL_ARG(mean), NDCL_ARG(mo),    NDCL_ARG(var),
                       NDCL_ARG(vo),   NDCL_ARG(x),    NDCL_ARG(y)};
    return ndcl_launch(ctx, "ndcl_ch_left_apply", 1, &n, NULL, args, 11);
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_channel_desc *d = &l->channel;
    l->saved.valid = false; /* whatever happens, the last forward is this one */
    NDCL_CHECK_ARG(ctx, x->ndim == 4 || x->ndim == 2,
                   "x must be [N, C, H, W] or [N, C] (has %d dims)", x->ndim);
    NDCL_CHECK_ARG(ctx, x->shape[1] >= (size_t)d->block,
                   "x has %zu channels, fewer than block=%d", x->shape[1], d->block);
    NDCL_CHECK_ARG(ctx, x->count <= INT32_MAX, "x has %zu elements (at most %d)", x->count,
                   INT32_MAX);
    ndcl_ch_geom g;
    ndcl_ch_geom_init(l, x->ndim, x->shape, &g);
    NDCL_TRY(ndcl_output(ctx, y, x->ndim, x->shape));

    size_t B = (size_t)g.B;
    bool train = mode == NDCL_TRAIN;
    /* The original copies the batch statistics into the running buffers
     * while num_batches_tracked is 0, in either mode. */
    bool first = l->counter == 0;
    bool batch_stats = train || first;
    ndcl_param *rm1 = ndcl_layer_param(l, "running_mean1");
    ndcl_param *rd = ndcl_layer_param(l, "running_deconv");
    ndcl_param *rm2 = ndcl_layer_param(l, "running_mean2");
    ndcl_param *rv = ndcl_layer_param(l, "running_var");

    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->X, B * g.L));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->col, g.Ls * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->tmp, B * g.L));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->mean, B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->cov, B * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->deconv, B * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->extra, 2));
    bool left = g.c < g.C;
    if (train) {
        NDCL_TRY(
            ndcl_scratch_ensure(ctx, &l->ns_saved, ndcl_isqrt_saved_size(1, B, d->n_iter)));
        /* The leftover channels' backward reads x (a copy: the caller may
         * change or destroy x before it). */
        if (left) {
            NDCL_TRY(ndcl_scratch_ensure(ctx, &l->xsave, x->count));
            NDCL_TRY(ndcl_buffer_copy(ctx, x->mem, 0, l->xsave.mem, 0, x->count));
        }
    }

    size_t gl[2] = {g.L, B};
    ndcl_arg ga[] = {NDCL_ARG(g.N), NDCL_ARG(g.C),    NDCL_ARG(g.HW),    NDCL_ARG(g.B),
                     NDCL_ARG(g.c), NDCL_ARG(x->mem), NDCL_ARG(l->X.mem)};
    NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_gather", 2, gl, NULL, ga, 7));
    cl_mem mean = rm1->mem, D = rd->mem;
    if (batch_stats) {
        int L = (int)g.L;
        size_t gs[2] = {B, g.Ls};
        ndcl_arg sa[] = {NDCL_ARG(g.B), NDCL_ARG(L), NDCL_ARG(g.step), NDCL_ARG(l->X.mem),
                         NDCL_ARG(l->col.mem)};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_sample", 2, gs, NULL, sa, 5));
        NDCL_TRY(ndcl_col_mean(ctx, l->col.mem, g.Ls, B, l->mean.mem));
        mean = l->mean.mem;
    }
    if (train) {
        /* Uncentred: the original takes the sample before centring. */
        NDCL_TRY(
            ndcl_cov(ctx, l->col.mem, g.Ls, 1, B, 1.0f / (float)g.Ls, d->eps, l->cov.mem));
        NDCL_TRY(ndcl_isqrt_ns(ctx, l->cov.mem, 1, B, d->n_iter, l->deconv.mem,
                               l->ns_saved.mem));
        D = l->deconv.mem;
    } else {
        /* Evaluation: the backward's dx1 = Dᵀ·dout uses D as it is now. */
        NDCL_TRY(ndcl_buffer_copy(ctx, rd->mem, 0, l->deconv.mem, 0, B * B));
        /* Its leftover scale comes from the variance used here: the batch's
         * (in extra[1]) on the first batch, else the running one. */
        if (left && !batch_stats)
            NDCL_TRY(ndcl_buffer_copy(ctx, rv->mem, 0, l->extra.mem, 1, 1));
    }
    int L = (int)g.L;
    ndcl_arg ca[] = {NDCL_ARG(g.B), NDCL_ARG(L), NDCL_ARG(mean), NDCL_ARG(l->X.mem)};
    NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_center_rows", 2, gl, NULL, ca, 4));
    NDCL_TRY(ndcl_blas_gemm(ctx, false, false, B, g.L, B, 1.0f, D, 0, B, l->X.mem, 0, g.L,
                            0.0f, l->tmp.mem, 0, g.L));
    ndcl_arg sc[] = {NDCL_ARG(g.N), NDCL_ARG(g.C),        NDCL_ARG(g.HW),     NDCL_ARG(g.B),
                     NDCL_ARG(g.c), NDCL_ARG(l->tmp.mem), NDCL_ARG((*y)->mem)};
    NDCL_TRY(ndcl_launch(ctx, "ndcl_ch_scatter", 2, gl, NULL, sc, 7));
    if (left) NDCL_TRY(leftover(l, &g, x->mem, (*y)->mem, batch_stats));

    /* Running updates last: a failure above leaves the layer unchanged. */
    if (batch_stats) {
        ndcl_update u[4];
        int nu = 0;
        u[nu++] = (ndcl_update){l->mean.mem, rm1->mem, B, first, 0};
        /* running_deconv takes the first-batch copy too, in training only
         * (the original has no batch deconv in evaluation mode). */
        if (train) u[nu++] = (ndcl_update){l->deconv.mem, rd->mem, B * B, first, 0};
        if (left) {
            u[nu++] = (ndcl_update){l->extra.mem, rm2->mem, 1, first, 0};
            u[nu++] = (ndcl_update){l->extra.mem, rv->mem, 1, first, 1};
        }
        /* In evaluation mode only the first-batch copy happens (momentum 0). */
        NDCL_TRY(ndcl_layer_update_running(l, train ? d->momentum : 0.0f, u, nu));
    }
    if (train) l->counter++;
    ndcl_layer_save_record(l, mode, train, false, x, *y);
    return NDCL_SUCCESS;
}
