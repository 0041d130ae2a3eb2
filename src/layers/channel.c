/* channel.c - channel deconvolution (ChannelDeconv): the first c = ⌊C/B⌋·B
 * channels as B rows are whitened with an uncentred covariance of a strided
 * sample; leftover channels are normalised by one scalar mean and
 * variance. The original's quirks are kept (the covariance of the sample is
 * not centred, the first batch is copied into the running buffers, the
 * variance is unbiased). The forward keeps what channel_backward.c needs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/channel.h"

_Static_assert(NDCL_LAYER_COMMON_WORKSPACES + 4 <= NDCL_MAX_WORKSPACES,
               "the layer registers more workspaces than a layer holds");

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

/* The original copies the batch statistics into the running buffers
 * while num_batches_tracked is 0, in either mode. */
static bool batch_stats(const ndcl_layer *l, ndcl_mode mode)
{
    return mode == NDCL_TRAIN || l->counter == 0;
}

/* Forward: Σ of the sample, its uncentred products (training) and the
 * leftover values' sum; backward: dD, dmean and the leftover sums (sent
 * as zeros without leftover channels, whose presence depends on x). */
static void sync_counts(const ndcl_layer *l, size_t *fwd, size_t *bw)
{
    const size_t B = (size_t)l->block;
    *fwd = 1 + B + B * (B + 1) / 2 + 1;
    *bw = 1 + B * B + B + 2;
}

static const ndcl_layer_ops ops = {
    .kind = NDCL_LAYER_CHANNEL,
    .name = "channel",
    .has_counter = true,
    .forward = forward,
    .backward = ndcl_channel_layer_backward,
    .batch_stats = batch_stats,
    .sync_counts = sync_counts,
};

ndcl_status ndcl_layer_channel_desc(const ndcl_layer *l, ndcl_channel_desc *out)
{
    if (!l) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_clear_error(l->ctx);
    NDCL_CHECK_ARG(l->ctx, out != NULL, "out is NULL");
    NDCL_CHECK_ARG(l->ctx, l->ops == &ops, "layer is not a channel layer");
    *out = ndcl_ch(l)->desc;
    return NDCL_SUCCESS;
}

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
    NDCL_TRY(ndcl_layer_alloc(ctx, &ops, sizeof(ndcl_channel), &l));
    ndcl_channel *ch = ndcl_ch(l);
    ch->desc = *d;
    ndcl_layer_add_workspace(l, &ch->X, true);
    ndcl_layer_add_workspace(l, &ch->col, true);
    ndcl_layer_add_workspace(l, &ch->tmp, true);
    ndcl_layer_add_workspace(l, &ch->extra, false);
    for (int i = 0; i < NDCL_CH_BW; i++)
        ndcl_layer_add_workspace(l, &ch->bw[i], true);
    l->block = d->block;
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

/* Normalises the leftover channels C - c by one scalar mean and unbiased
 * variance: of the batch (written to extra[0], extra[1]) or the running
 * buffers. */
static ndcl_status leftover(ndcl_layer *l, const ndcl_ch_geom *g, cl_mem x, cl_mem y,
                            bool batch_stats, bool group)
{
    ndcl_context *ctx = l->ctx;
    cl_mem mean = ndcl_layer_param(l, "running_mean2")->mem;
    cl_mem var = ndcl_layer_param(l, "running_var")->mem;
    int mo = 0, vo = 0;
    if (batch_stats && group) {
        /* The group's, already in extra (group_stats). */
        mean = var = ndcl_ch(l)->extra.mem;
        vo = 1;
    } else if (batch_stats) {
        NDCL_TRY(ndcl_ch_left_stats(ctx, g, x, ndcl_ch(l)->extra.mem));
        mean = var = ndcl_ch(l)->extra.mem;
        vo = 1;
    }
    return ndcl_ch_left_apply(ctx, g, ndcl_ch(l)->desc.eps, mean, mo, var, vo, x, y);
}

/* The checks, the output and the workspaces of a forward on x, and the
 * gather of its first c channels into the B rows of ndcl_ch(l)->X. */
static ndcl_status prepare(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y, ndcl_ch_geom *g)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_channel_desc *d = &ndcl_ch(l)->desc;
    NDCL_CHECK_ARG(ctx, x->ndim == 4 || x->ndim == 2,
                   "x must be [N, C, H, W] or [N, C] (has %d dims)", x->ndim);
    NDCL_CHECK_ARG(ctx, x->shape[1] >= (size_t)d->block,
                   "x has %zu channels, fewer than block=%d", x->shape[1], d->block);
    NDCL_CHECK_ARG(ctx, x->count <= INT32_MAX, "x has %zu elements (at most %d)", x->count,
                   INT32_MAX);
    ndcl_ch_geom_init(d->block, d->sampling_stride, x->ndim, x->shape, g);
    NDCL_TRY(ndcl_output(ctx, y, x->ndim, x->shape));
    size_t B = (size_t)g->B;
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->X, B * g->L));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->col, g->Ls * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->tmp, B * g->L));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->mean, B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->cov, B * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &l->deconv, B * B));
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->extra, 2));
    if (mode == NDCL_TRAIN) {
        NDCL_TRY(
            ndcl_scratch_ensure(ctx, &l->ns_saved, ndcl_isqrt_saved_size(1, B, d->n_iter)));
        /* The leftover channels' backward reads x (a copy: the caller may
         * change or destroy x before it, unless x is borrowed). */
        if (g->c < g->C) NDCL_TRY(ndcl_layer_keep_input(l, x));
    }
    return ndcl_ch_gather(ctx, g, x->mem, ndcl_ch(l)->X.mem);
}

/* A leftover moment of x (ndcl_ch_left_moment) into extra[0], read to *out. */
static ndcl_status left_moment(ndcl_layer *l, const ndcl_ch_geom *g, cl_mem x, float shift,
                               int square, double *out)
{
    NDCL_TRY(ndcl_ch_left_moment(l->ctx, g, x, shift, square, ndcl_ch(l)->extra.mem));
    return ndcl_sync_get(&l->sync, ndcl_ch(l)->extra.mem, 0, 1, out);
}

/* This rank's share of the group's sample (ndcl_ch_sample_share) into
 * l->col; l->sync.rows = its samples. The table maps each chunk of x1's
 * columns (channel k of every row: N*HW columns) to where it continues
 * the global batch's sequence. */
static ndcl_status share_sample(ndcl_layer *l, const ndcl_ch_geom *g)
{
    ndcl_context *ctx = l->ctx;
    ndcl_sync *s = &l->sync;
    const size_t per = (size_t)(g->c / g->B), Lc = (size_t)g->N * (size_t)g->HW;
    const size_t step = (size_t)g->step, HW = (size_t)g->HW;
    NDCL_TRY(ndcl_scratch_ensure(ctx, &s->idx, 2 * per + 1));
    int *tab = malloc((2 * per + 1) * sizeof *tab);
    if (!tab) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "sample table of %zu", per);
    size_t rows = 0;
    for (size_t k = 0; k < per; k++) {
        /* Chunk k starts at global column (k * total + first) * HW. */
        const size_t at = (k * s->total + s->first) * HW;
        const size_t lo = (at + step - 1) / step, hi = (at + Lc + step - 1) / step;
        tab[k] = (int)rows;
        tab[per + 1 + k] = (int)(lo * step - at);
        rows += hi - lo;
    }
    tab[per] = (int)rows;
    cl_int err = clEnqueueWriteBuffer(ctx->queue, s->idx.mem, CL_TRUE, 0,
                                      (2 * per + 1) * sizeof *tab, tab, 0, NULL, NULL);
    free(tab);
    if (err != CL_SUCCESS)
        return ndcl_fail_cl(ctx, "clEnqueueWriteBuffer(sample table)", err);
    s->rows = rows;
    const size_t B = (size_t)g->B;
    NDCL_TRY(ndcl_scratch_ensure(ctx, &ndcl_ch(l)->col, rows * B));
    if (!rows) return NDCL_SUCCESS;
    return ndcl_ch_sample_share(ctx, g, (int)per, s->idx.mem, rows, ndcl_ch(l)->X.mem,
                                ndcl_ch(l)->col.mem);
}

/* The group's statistics (local: this rank's status so far): the mean of
 * the sample into l->mean, its uncentred covariance into l->cov
 * (training), the leftover channels' mean and unbiased variance into
 * extra[0], extra[1]. One collective, and a second for the variance when
 * there are leftover channels. */
static ndcl_status group_stats(ndcl_layer *l, ndcl_status local, const ndcl_ch_geom *g,
                               bool train, cl_mem x)
{
    ndcl_context *ctx = l->ctx;
    ndcl_sync *s = &l->sync;
    const size_t B = (size_t)g->B, tri = train ? B * (B + 1) / 2 : 0;
    const bool left = g->c < g->C;
    const size_t Lr = (size_t)(g->C - g->c) * (size_t)g->HW, step = (size_t)g->step;
    const size_t total_L = (size_t)(g->c / g->B) * s->total * (size_t)g->HW;
    const size_t total_rows = (total_L + step - 1) / step;
    const size_t kept = s->total * ((Lr + step - 1) / step);
    const size_t n1 = 1 + B + tri + (left ? 1 : 0);
    double *buf = s->buf;
    ndcl_status st = local;
    if (st == NDCL_SUCCESS) st = share_sample(l, g);
    if (st == NDCL_SUCCESS) {
        memset(buf, 0, n1 * sizeof *buf);
        if (s->rows) {
            st = ndcl_col_sum(ctx, ndcl_ch(l)->col.mem, s->rows, B, l->mean.mem);
            if (st == NDCL_SUCCESS)
                st = ndcl_sync_get(&l->sync, l->mean.mem, 0, B, buf + 1);
            /* Uncentred: the original takes the sample before centring. */
            if (st == NDCL_SUCCESS && train)
                st = ndcl_cov(ctx, ndcl_ch(l)->col.mem, s->rows, 1, B, 1.0f, 0.0f,
                              l->cov.mem);
            if (st == NDCL_SUCCESS && train)
                st = ndcl_sync_get_tri(&l->sync, l->cov.mem, 1, B, buf + 1 + B);
        }
        if (st == NDCL_SUCCESS && left) st = left_moment(l, g, x, 0.0f, 0, buf + n1 - 1);
    }
    NDCL_TRY(ndcl_sync_sum(&l->sync, st, n1));
    const double inv = 1.0 / (double)total_rows;
    NDCL_TRY(ndcl_sync_put(&l->sync, buf + 1, B, inv, l->mean.mem, 0));
    if (train)
        NDCL_TRY(ndcl_sync_put_tri(&l->sync, buf + 1 + B, 1, B, inv, ndcl_ch(l)->desc.eps,
                                   l->cov.mem));
    s->total_rows = total_rows;
    s->kept = kept;
    if (!left) return NDCL_SUCCESS;
    /* The variance about the group's mean, as the one-rank kernel's second
     * pass. */
    double stats[2] = {(double)(float)(buf[n1 - 1] / (double)kept), 0.0};
    st = left_moment(l, g, x, (float)stats[0], 1, buf + 1);
    NDCL_TRY(ndcl_sync_sum(&l->sync, st, 2));
    stats[1] = kept > 1 ? buf[1] / (double)(kept - 1) : NAN;
    return ndcl_sync_put(&l->sync, stats, 2, 1.0, ndcl_ch(l)->extra.mem, 0);
}

static ndcl_status forward(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y)
{
    ndcl_context *ctx = l->ctx;
    const ndcl_channel_desc *d = &ndcl_ch(l)->desc;
    l->saved.valid = false; /* whatever happens, the last forward is this one */
    bool group = ndcl_sync_forward_active(l, mode);
    ndcl_ch_geom g;
    ndcl_status s = prepare(l, mode, x, y, &g);
    /* In a group every rank reports before the first collective. */
    if (group) s = ndcl_sync_header(&l->sync, s, x);
    NDCL_TRY(s);

    size_t B = (size_t)g.B;
    bool train = mode == NDCL_TRAIN;
    bool first = l->counter == 0;
    bool batch_stats = train || first;
    ndcl_param *rm1 = ndcl_layer_param(l, "running_mean1");
    ndcl_param *rd = ndcl_layer_param(l, "running_deconv");
    ndcl_param *rm2 = ndcl_layer_param(l, "running_mean2");
    ndcl_param *rv = ndcl_layer_param(l, "running_var");
    bool left = g.c < g.C;
    cl_mem mean = rm1->mem, D = rd->mem;
    if (group) {
        NDCL_TRY(group_stats(l, NDCL_SUCCESS, &g, train, x->mem));
        mean = l->mean.mem;
    } else if (batch_stats) {
        NDCL_TRY(ndcl_ch_sample(ctx, &g, ndcl_ch(l)->X.mem, ndcl_ch(l)->col.mem));
        NDCL_TRY(ndcl_col_mean(ctx, ndcl_ch(l)->col.mem, g.Ls, B, l->mean.mem));
        mean = l->mean.mem;
    }
    if (train) {
        /* Uncentred: the original takes the sample before centring. */
        if (!group)
            NDCL_TRY(ndcl_cov(ctx, ndcl_ch(l)->col.mem, g.Ls, 1, B, 1.0f / (float)g.Ls,
                              d->eps, l->cov.mem));
        NDCL_TRY(ndcl_isqrt_ns(ctx, l->cov.mem, 1, B, d->n_iter, l->deconv.mem,
                               l->ns_saved.mem));
        D = l->deconv.mem;
    } else {
        /* Evaluation: the backward's dx1 = Dᵀ·dout uses D as it is now. */
        NDCL_TRY(ndcl_buffer_copy(ctx, rd->mem, 0, l->deconv.mem, 0, B * B));
        /* Its leftover scale comes from the variance used here: the batch's
         * (in extra[1]) on the first batch, else the running one. */
        if (left && !batch_stats)
            NDCL_TRY(ndcl_buffer_copy(ctx, rv->mem, 0, ndcl_ch(l)->extra.mem, 1, 1));
    }
    NDCL_TRY(ndcl_ch_center_rows(ctx, &g, mean, ndcl_ch(l)->X.mem));
    NDCL_TRY(ndcl_ch_whiten(ctx, &g, D, ndcl_ch(l)->X.mem, ndcl_ch(l)->tmp.mem));
    NDCL_TRY(ndcl_ch_scatter(ctx, &g, ndcl_ch(l)->tmp.mem, (*y)->mem));
    if (left) NDCL_TRY(leftover(l, &g, x->mem, (*y)->mem, batch_stats, group));

    /* Running updates last: a failure above leaves the layer unchanged. */
    if (batch_stats) {
        ndcl_update u[4];
        int nu = 0;
        u[nu++] = (ndcl_update){l->mean.mem, rm1->mem, B, first, 0};
        /* running_deconv takes the first-batch copy too, in training only
         * (the original has no batch deconv in evaluation mode). */
        if (train) u[nu++] = (ndcl_update){l->deconv.mem, rd->mem, B * B, first, 0};
        if (left) {
            u[nu++] = (ndcl_update){ndcl_ch(l)->extra.mem, rm2->mem, 1, first, 0};
            u[nu++] = (ndcl_update){ndcl_ch(l)->extra.mem, rv->mem, 1, first, 1};
        }
        /* In evaluation mode only the first-batch copy happens (momentum 0). */
        NDCL_TRY(ndcl_layer_update_running(l, train ? d->momentum : 0.0f, u, nu));
    }
    if (train) l->counter++;
    ndcl_layer_save_record(l, mode, train, false, x, *y);
    return NDCL_SUCCESS;
}
