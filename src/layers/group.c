/* group.c - batch statistics across the ranks of a group: the collectives with their
 * failure flag, the shape header, the host moves of partial sums, and the centred
 * statistics of conv2d and linear layers (two reductions: the mean first, then the products
 * of the data centred on it, so that K ranks keep the single-rank float32 arithmetic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/group.h"
#include "primitives/primitives.h"

void ndcl_sync_release(ndcl_sync *s)
{
    free(s->buf);
    free(s->fbuf);
    ndcl_scratch_release(&s->xcm);
    ndcl_scratch_release(&s->idx);
    memset(s, 0, sizeof *s);
}

/* The allreduce itself; a failure of the hook is reported as such unless
 * this rank already failed (its own message is kept). */
static ndcl_status reduce(ndcl_sync *s, ndcl_status local, size_t count)
{
    ndcl_status st = s->g.allreduce(s->g.user, s->buf, count);
    if (local != NDCL_SUCCESS) return local;
    if (st != NDCL_SUCCESS)
        return ndcl_fail(s->ctx, st,
                         "rank %d of %d: the group's allreduce of %zu values failed: %s",
                         s->g.rank, s->g.size, count, ndcl_status_string(st));
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_sum(ndcl_sync *s, ndcl_status local, size_t count)
{
    if (local != NDCL_SUCCESS) memset(s->buf, 0, count * sizeof *s->buf);
    s->buf[0] = local != NDCL_SUCCESS ? 1.0 : 0.0;
    NDCL_TRY(reduce(s, local, count));
    if (s->buf[0] != 0.0)
        return ndcl_fail(s->ctx, NDCL_ERR_GROUP,
                         "rank %d of %d: %g other rank(s) of the group failed this call",
                         s->g.rank, s->g.size, s->buf[0]);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_fail(ndcl_sync *s, ndcl_status failed, size_t count)
{
    return ndcl_sync_sum(s, failed, count);
}

/* A header slot's shape (ndim, then the dimensions, as doubles) as text. */
static void shape_text(const double *slot, char *buf, size_t size)
{
    int nd = (int)slot[1];
    size_t shape[NDCL_MAX_DIMS];
    if (nd > NDCL_MAX_DIMS) nd = NDCL_MAX_DIMS;
    for (int d = 0; d < nd; d++)
        shape[d] = (size_t)slot[2 + d];
    ndcl_shape_text(shape, nd, false, buf, size);
}

ndcl_status ndcl_sync_header(ndcl_sync *s, ndcl_status local, const ndcl_tensor *x)
{
    const size_t K = (size_t)s->g.size, me = (size_t)s->g.rank;
    const size_t count = K * NDCL_SYNC_SLOT;
    memset(s->buf, 0, count * sizeof *s->buf);
    double *mine = s->buf + me * NDCL_SYNC_SLOT;
    if (local != NDCL_SUCCESS || !x) {
        mine[0] = 1.0;
    } else {
        mine[1] = x->ndim;
        for (int d = 0; d < x->ndim; d++)
            mine[2 + d] = (double)x->shape[d];
    }
    NDCL_TRY(reduce(s, local, count));
    if (local != NDCL_SUCCESS) return local;
    /* Every rank sees every slot, so every rank decides alike. */
    char failed[128] = "";
    size_t nfail = 0, n = 0;
    for (size_t r = 0; r < K; r++)
        if (s->buf[r * NDCL_SYNC_SLOT] != 0.0) {
            if (n < sizeof failed)
                n += (size_t)snprintf(failed + n, sizeof failed - n,
                                      nfail ? ", %zu" : "%zu", r);
            nfail++;
        }
    if (nfail)
        return ndcl_fail(s->ctx, NDCL_ERR_GROUP,
                         "rank %zu of %zu: rank(s) %s of the group failed this call "
                         "before the statistics",
                         me, K, failed);
    const double *s0 = s->buf;
    size_t first = 0, total = 0;
    for (size_t r = 0; r < K; r++) {
        const double *sr = s->buf + r * NDCL_SYNC_SLOT;
        bool same = sr[1] == s0[1];
        for (int d = 1; same && d < (int)s0[1]; d++)
            same = sr[2 + d] == s0[2 + d];
        if (!same) {
            char a[96], b[96];
            shape_text(s0, a, sizeof a);
            shape_text(sr, b, sizeof b);
            return ndcl_fail(s->ctx, NDCL_ERR_INVALID_ARG,
                             "rank %zu of %zu: the group's inputs differ in shape: rank 0 "
                             "has %s, rank %zu has %s (only the first dimension, the "
                             "batch, may differ)",
                             me, K, a, r, b);
        }
        if (r < me) first += (size_t)sr[2];
        total += (size_t)sr[2];
    }
    s->first = first;
    s->total = total;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ host moves */

static ndcl_status read_floats(ndcl_sync *s, cl_mem mem, size_t off, size_t n)
{
    if (n > s->fcap)
        return ndcl_fail(s->ctx, NDCL_ERR_INVALID_ARG,
                         "group read of %zu values (room %zu)", n, s->fcap);
    cl_int err = clEnqueueReadBuffer(s->ctx->queue, mem, CL_TRUE, off * sizeof(float),
                                     n * sizeof(float), s->fbuf, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ndcl_fail_cl(s->ctx, "clEnqueueReadBuffer(group sums)", err);
    return NDCL_SUCCESS;
}

static ndcl_status write_floats(ndcl_sync *s, cl_mem mem, size_t off, size_t n)
{
    cl_int err = clEnqueueWriteBuffer(s->ctx->queue, mem, CL_TRUE, off * sizeof(float),
                                      n * sizeof(float), s->fbuf, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ndcl_fail_cl(s->ctx, "clEnqueueWriteBuffer(group sums)", err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_get(ndcl_sync *s, cl_mem mem, size_t off, size_t n, double *dst)
{
    if (n == 0) return NDCL_SUCCESS;
    NDCL_TRY(read_floats(s, mem, off, n));
    for (size_t i = 0; i < n; i++)
        dst[i] = s->fbuf[i];
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_get_tri(ndcl_sync *s, cl_mem mem, size_t batch, size_t n, double *dst)
{
    NDCL_TRY(read_floats(s, mem, 0, batch * n * n));
    const float *m = s->fbuf;
    for (size_t b = 0; b < batch; b++, m += n * n)
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++)
                *dst++ = m[i * n + j];
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_put(ndcl_sync *s, const double *src, size_t n, double scale,
                          cl_mem mem, size_t off)
{
    if (n == 0) return NDCL_SUCCESS;
    if (n > s->fcap)
        return ndcl_fail(s->ctx, NDCL_ERR_INVALID_ARG,
                         "group write of %zu values (room %zu)", n, s->fcap);
    for (size_t i = 0; i < n; i++)
        s->fbuf[i] = (float)(src[i] * scale);
    return write_floats(s, mem, off, n);
}

ndcl_status ndcl_sync_put_tri(ndcl_sync *s, const double *src, size_t batch, size_t n,
                              double scale, float eps, cl_mem mem)
{
    if (batch * n * n > s->fcap)
        return ndcl_fail(s->ctx, NDCL_ERR_INVALID_ARG,
                         "group write of %zu matrices %zu x %zu", batch, n, n);
    float *m = s->fbuf;
    for (size_t b = 0; b < batch; b++, m += n * n)
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++) {
                /* As ndcl_cov: the scaled product in float, then eps added. */
                float v = (float)(*src++ * scale);
                m[i * n + j] = m[j * n + i] = i == j ? v + eps : v;
            }
    return write_floats(s, mem, 0, batch * n * n);
}

/* ------------------------------------------------------------ statistics */

ndcl_status ndcl_sync_centred_stats(ndcl_sync *s, ndcl_status local, cl_mem X, size_t rows,
                                    size_t groups, size_t nf, size_t total_rows, float eps,
                                    cl_mem mean, cl_mem cov)
{
    ndcl_context *ctx = s->ctx;
    const size_t cols = groups * nf, tri = nf * (nf + 1) / 2;
    const double inv = 1.0 / (double)total_rows;
    double *buf = s->buf;
    /* 1: the column sums, for the group's mean. A rank may hold no row
     * (a 1x1 conv's or channel layer's sample can miss a small slice). */
    ndcl_status st = local;
    if (st == NDCL_SUCCESS) st = ndcl_scratch_ensure(ctx, &s->xcm, cols);
    if (st == NDCL_SUCCESS && rows) st = ndcl_col_sum(ctx, X, rows, cols, s->xcm.mem);
    if (st == NDCL_SUCCESS) {
        memset(buf, 0, (1 + cols) * sizeof *buf);
        if (rows) st = ndcl_sync_get(s, s->xcm.mem, 0, cols, buf + 1);
    }
    NDCL_TRY(ndcl_sync_sum(s, st, 1 + cols));
    /* 2: the products of the columns centred on it, and their column sums
     * (zero but for rounding: the centring's gradient in the backward). */
    st = ndcl_sync_put(s, buf + 1, cols, inv, mean, 0);
    if (st == NDCL_SUCCESS && rows) st = ndcl_center(ctx, X, rows, cols, mean);
    if (st == NDCL_SUCCESS && rows)
        st = ndcl_cov(ctx, X, rows, groups, nf, 1.0f, 0.0f, cov);
    if (st == NDCL_SUCCESS && rows) st = ndcl_col_sum(ctx, X, rows, cols, s->xcm.mem);
    if (st == NDCL_SUCCESS) {
        memset(buf, 0, (1 + groups * tri + cols) * sizeof *buf);
        if (rows) st = ndcl_sync_get_tri(s, cov, groups, nf, buf + 1);
        if (st == NDCL_SUCCESS && rows)
            st = ndcl_sync_get(s, s->xcm.mem, 0, cols, buf + 1 + groups * tri);
    }
    NDCL_TRY(ndcl_sync_sum(s, st, 1 + groups * tri + cols));
    NDCL_TRY(ndcl_sync_put_tri(s, buf + 1, groups, nf, inv, eps, cov));
    NDCL_TRY(ndcl_sync_put(s, buf + 1 + groups * tri, cols, inv, s->xcm.mem, 0));
    s->rows = rows;
    s->total_rows = total_rows;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_sync_buffers(ndcl_sync *s, ndcl_status local, const ndcl_sync_seg *seg,
                              int nseg)
{
    double *buf = s->buf;
    size_t count = 1;
    for (int i = 0; i < nseg; i++)
        count += seg[i].n;
    ndcl_status st = local;
    if (st == NDCL_SUCCESS) {
        memset(buf, 0, count * sizeof *buf);
        size_t at = 1;
        for (int i = 0; i < nseg && st == NDCL_SUCCESS; at += seg[i].n, i++)
            if (seg[i].mem) st = ndcl_sync_get(s, seg[i].mem, 0, seg[i].n, buf + at);
    }
    NDCL_TRY(ndcl_sync_sum(s, st, count));
    size_t at = 1;
    for (int i = 0; i < nseg; at += seg[i].n, i++)
        if (seg[i].mem) NDCL_TRY(ndcl_sync_put(s, buf + at, seg[i].n, 1.0, seg[i].mem, 0));
    return NDCL_SUCCESS;
}
