/* api.c - the public primitives of ndcl.h (patches, covariance,
 * isqrt, whiten): argument validation and the output convention around the
 * raw-buffer primitives of primitives.h, and ndcl_whiten_backward from
 * their adjoints in backward.h. */
#include <math.h>

#include "primitives/backward.h"
#include "primitives/launch.h"
#include "primitives/primitives.h"

/* An output argument: *out NULL -> a new tensor of the shape (created[0]
 * set so that a later failure destroys it), else *out must have the shape.
 * *out itself is only assigned by the caller once everything succeeded. */
static ndcl_status output(ndcl_context *ctx, ndcl_tensor **out, const char *arg, int ndim,
                          const size_t *shape, ndcl_tensor **t, bool *created)
{
    *created = false;
    if (*out) {
        NDCL_TRY(ndcl_tensor_check(ctx, *out, arg, ndim, shape));
        ndcl_tensor_touch(*out);
        *t = *out;
        return NDCL_SUCCESS;
    }
    NDCL_TRY(ndcl_tensor_create(ctx, ndim, shape, t));
    *created = true;
    return NDCL_SUCCESS;
}

static void drop(ndcl_tensor *t, bool created)
{
    if (created) ndcl_tensor_destroy(t);
}

/* Checks an input tensor: not NULL, of ctx, with ndim dimensions. */
static ndcl_status input(ndcl_context *ctx, const ndcl_tensor *t, const char *arg, int ndim)
{
    NDCL_CHECK_ARG(ctx, t != NULL, "%s is NULL", arg);
    NDCL_CHECK_ARG(ctx, t->ctx == ctx, "%s belongs to another context", arg);
    NDCL_CHECK_ARG(ctx, t->ndim == ndim, "%s has %d dimensions, expected %d", arg, t->ndim,
                   ndim);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_patches(ndcl_context *ctx, const ndcl_tensor *x,
                         const ndcl_patch_desc *desc, ndcl_tensor **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_TRY(input(ctx, x, "x", 4));
    NDCL_CHECK_ARG(ctx, desc != NULL, "desc is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    const ndcl_patch_desc *d = desc;
    NDCL_CHECK_ARG(ctx, d->kernel_h >= 1 && d->kernel_w >= 1,
                   "desc->kernel_h=%d, desc->kernel_w=%d (must be >= 1)", d->kernel_h,
                   d->kernel_w);
    NDCL_CHECK_ARG(ctx, d->padding >= 0, "desc->padding=%d (must be >= 0)", d->padding);
    NDCL_CHECK_ARG(ctx, d->dilation >= 1, "desc->dilation=%d (must be >= 1)", d->dilation);
    NDCL_CHECK_ARG(ctx, d->stride >= 1, "desc->stride=%d (must be >= 1)", d->stride);
    NDCL_CHECK_ARG(ctx, d->block >= 1, "desc->block=%d (must be >= 1)", d->block);
    const size_t C = x->shape[1];
    NDCL_CHECK_ARG(ctx, C <= INT_MAX, "x has %zu channels (at most %d)", C, INT_MAX);
    NDCL_CHECK_ARG(ctx, d->groups >= 1 && C % (size_t)d->groups == 0,
                   "desc->groups=%d does not divide the %zu channels of x", d->groups, C);
    ndcl_patch_geom g = {
        .n = x->shape[0],
        .c = C,
        .h = x->shape[2],
        .w = x->shape[3],
        .kh = (size_t)d->kernel_h,
        .kw = (size_t)d->kernel_w,
        .pad = (size_t)d->padding,
        .dil = (size_t)d->dilation,
        .stride = (size_t)d->stride,
        .groups = (size_t)d->groups,
        .block = (size_t)ndcl_block_clamp((int)C, d->block, d->groups),
    };
    NDCL_TRY(ndcl_patch_geom_init(ctx, &g));
    ndcl_tensor *t;
    bool created;
    NDCL_TRY(output(ctx, out, "*out", 2, (size_t[]){g.rows, g.cols}, &t, &created));
    ndcl_status s = ndcl_im2col_sampled(ctx, &g, x->mem, t->mem);
    if (s != NDCL_SUCCESS) {
        drop(t, created);
        return s;
    }
    *out = t;
    return NDCL_SUCCESS;
}

/* mean (may be NULL when centered is 0) and cov of X (rows x groups*n);
 * X itself is left as it was. */
static ndcl_status covariance(ndcl_context *ctx, const ndcl_tensor *X, size_t groups,
                              float eps, int centered, cl_mem mean, cl_mem cov)
{
    const size_t rows = X->shape[0], cols = X->shape[1], n = cols / groups;
    cl_mem Xc = NULL;
    ndcl_status s = NDCL_SUCCESS;
    if (mean) s = ndcl_col_mean(ctx, X->mem, rows, cols, mean);
    if (s == NDCL_SUCCESS && centered) {
        s = prims_buffer(ctx, X->count, &Xc);
        if (s == NDCL_SUCCESS) s = ndcl_buffer_copy(ctx, X->mem, 0, Xc, 0, X->count);
        if (s == NDCL_SUCCESS) s = ndcl_center(ctx, Xc, rows, cols, mean);
    }
    if (s == NDCL_SUCCESS)
        s = ndcl_cov(ctx, centered ? Xc : X->mem, rows, groups, n,
                     (float)(1.0 / (double)rows), eps, cov);
    prims_release(Xc);
    return s;
}

ndcl_status ndcl_covariance(ndcl_context *ctx, const ndcl_tensor *X, int groups, float eps,
                            int centered, ndcl_tensor **mean, ndcl_tensor **cov)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_TRY(input(ctx, X, "X", 2));
    const size_t cols = X->shape[1];
    NDCL_CHECK_ARG(ctx, groups >= 1 && cols % (size_t)groups == 0,
                   "groups=%d does not divide the %zu columns of X", groups, cols);
    NDCL_CHECK_ARG(ctx, eps > 0.0f && isfinite(eps), "eps=%g (must be > 0 and finite)",
                   (double)eps);
    NDCL_CHECK_ARG(ctx, cov != NULL, "cov is NULL");
    const size_t n = cols / (size_t)groups;
    ndcl_tensor *tm = NULL, *tc = NULL;
    bool mc = false, cc = false;
    ndcl_status s = NDCL_SUCCESS;
    if (mean) s = output(ctx, mean, "*mean", 1, (size_t[]){cols}, &tm, &mc);
    if (s == NDCL_SUCCESS) {
        if (groups == 1)
            s = output(ctx, cov, "*cov", 2, (size_t[]){n, n}, &tc, &cc);
        else
            s = output(ctx, cov, "*cov", 3, (size_t[]){(size_t)groups, n, n}, &tc, &cc);
    }
    /* Centring needs the mean even when the caller does not want it. */
    cl_mem mtmp = NULL;
    if (s == NDCL_SUCCESS && !tm && centered) s = prims_buffer(ctx, cols, &mtmp);
    if (s == NDCL_SUCCESS)
        s = covariance(ctx, X, (size_t)groups, eps, centered, tm ? tm->mem : mtmp, tc->mem);
    prims_release(mtmp);
    if (s != NDCL_SUCCESS) {
        drop(tm, mc);
        drop(tc, cc);
        return s;
    }
    if (mean) *mean = tm;
    *cov = tc;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_isqrt(ndcl_context *ctx, const ndcl_tensor *A, int n_iter, ndcl_tensor **D)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, A != NULL, "A is NULL");
    NDCL_CHECK_ARG(ctx, A->ctx == ctx, "A belongs to another context");
    NDCL_CHECK_ARG(
        ctx,
        (A->ndim == 2 || A->ndim == 3) && A->shape[A->ndim - 1] == A->shape[A->ndim - 2],
        "A must be [n, n] or [batch, n, n] (has %d dimensions, last two %zu x %zu)",
        A->ndim, A->ndim >= 2 ? A->shape[A->ndim - 2] : 0, A->shape[A->ndim - 1]);
    NDCL_CHECK_ARG(ctx, n_iter >= 1, "n_iter=%d (must be >= 1)", n_iter);
    NDCL_CHECK_ARG(ctx, D != NULL, "D is NULL");
    const size_t n = A->shape[A->ndim - 1], batch = A->ndim == 3 ? A->shape[0] : 1;
    ndcl_tensor *t;
    bool created;
    NDCL_TRY(output(ctx, D, "*D", A->ndim, A->shape, &t, &created));
    ndcl_status s = ndcl_isqrt_ns(ctx, A->mem, batch, n, n_iter, t->mem, NULL);
    if (s != NDCL_SUCCESS) {
        drop(t, created);
        return s;
    }
    *D = t;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_whiten(ndcl_context *ctx, const ndcl_tensor *X, float eps, int n_iter,
                        ndcl_tensor **mean, ndcl_tensor **D)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_TRY(input(ctx, X, "X", 2));
    NDCL_CHECK_ARG(ctx, eps > 0.0f && isfinite(eps), "eps=%g (must be > 0 and finite)",
                   (double)eps);
    NDCL_CHECK_ARG(ctx, n_iter >= 1, "n_iter=%d (must be >= 1)", n_iter);
    NDCL_CHECK_ARG(ctx, D != NULL, "D is NULL");
    const size_t n = X->shape[1];
    ndcl_tensor *tm = NULL, *td = NULL;
    bool mc = false, dc = false;
    ndcl_status s = NDCL_SUCCESS;
    if (mean) s = output(ctx, mean, "*mean", 1, (size_t[]){n}, &tm, &mc);
    if (s == NDCL_SUCCESS) s = output(ctx, D, "*D", 2, (size_t[]){n, n}, &td, &dc);
    cl_mem mtmp = NULL, cov = NULL;
    if (s == NDCL_SUCCESS && !tm) s = prims_buffer(ctx, n, &mtmp);
    if (s == NDCL_SUCCESS) s = prims_buffer(ctx, n * n, &cov);
    if (s == NDCL_SUCCESS) s = covariance(ctx, X, 1, eps, 1, tm ? tm->mem : mtmp, cov);
    if (s == NDCL_SUCCESS) s = ndcl_isqrt_ns(ctx, cov, 1, n, n_iter, td->mem, NULL);
    prims_release(mtmp);
    prims_release(cov);
    if (s != NDCL_SUCCESS) {
        drop(tm, mc);
        drop(td, dc);
        return s;
    }
    if (mean) *mean = tm;
    *D = td;
    return NDCL_SUCCESS;
}

/* The forward of ndcl_whiten with the Newton-Schulz iterates kept, then
 * its adjoint: Xc (rows x n) holds the centred data, saved the iterates. */
static ndcl_status whiten_backward(ndcl_context *ctx, const ndcl_tensor *X, float eps,
                                   int n_iter, cl_mem dmean, cl_mem dD, cl_mem dX,
                                   cl_mem *buf)
{
    const size_t rows = X->shape[0], n = X->shape[1];
    cl_mem mean, Xc, cov, D, saved, dcov;
    NDCL_TRY(prims_buffer(ctx, n, &buf[0]));
    mean = buf[0];
    NDCL_TRY(prims_buffer(ctx, X->count, &buf[1]));
    Xc = buf[1];
    NDCL_TRY(prims_buffer(ctx, n * n, &buf[2]));
    cov = buf[2];
    NDCL_TRY(prims_buffer(ctx, n * n, &buf[3]));
    D = buf[3];
    NDCL_TRY(prims_buffer(ctx, ndcl_isqrt_saved_size(1, n, n_iter), &buf[4]));
    saved = buf[4];
    NDCL_TRY(prims_buffer(ctx, n * n, &buf[5]));
    dcov = buf[5];
    NDCL_TRY(ndcl_col_mean(ctx, X->mem, rows, n, mean));
    NDCL_TRY(ndcl_buffer_copy(ctx, X->mem, 0, Xc, 0, X->count));
    NDCL_TRY(ndcl_center(ctx, Xc, rows, n, mean));
    NDCL_TRY(ndcl_cov(ctx, Xc, rows, 1, n, (float)(1.0 / (double)rows), eps, cov));
    NDCL_TRY(ndcl_isqrt_ns(ctx, cov, 1, n, n_iter, D, saved));
    NDCL_TRY(ndcl_isqrt_ns_backward(ctx, 1, n, n_iter, saved, D, dD, dcov));
    return ndcl_cov_backward(ctx, Xc, rows, 1, n, (float)(1.0 / (double)rows), true, dcov,
                             dmean, dX);
}

ndcl_status ndcl_whiten_backward(ndcl_context *ctx, const ndcl_tensor *X, float eps,
                                 int n_iter, const ndcl_tensor *dmean,
                                 const ndcl_tensor *dD, ndcl_tensor **dX)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, X != NULL, "X is NULL");
    NDCL_CHECK_ARG(ctx, X->ctx == ctx, "X belongs to another context");
    NDCL_CHECK_ARG(ctx, X->ndim == 2, "X has %d dimensions, expected 2", X->ndim);
    NDCL_CHECK_ARG(ctx, eps > 0.0f && isfinite(eps), "eps=%g (must be > 0 and finite)",
                   (double)eps);
    NDCL_CHECK_ARG(ctx, n_iter >= 1 && n_iter <= 1000, "n_iter=%d (must be 1..1000)",
                   n_iter);
    const size_t n = X->shape[1];
    NDCL_TRY(ndcl_tensor_check(ctx, dD, "dD", 2, (size_t[]){n, n}));
    if (dmean) NDCL_TRY(ndcl_tensor_check(ctx, dmean, "dmean", 1, (size_t[]){n}));
    NDCL_CHECK_ARG(ctx, dX != NULL, "dX is NULL");
    ndcl_tensor *t = *dX;
    if (t) {
        NDCL_TRY(ndcl_tensor_check(ctx, t, "*dX", 2, X->shape));
        NDCL_CHECK_ARG(
            ctx, t != X && t != dD && t != dmean,
            "*dX must not be X, dmean or dD (they are read after it is written)");
        ndcl_tensor_touch(t);
    } else {
        NDCL_TRY(ndcl_tensor_create(ctx, 2, X->shape, &t));
    }
    cl_mem buf[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    ndcl_status s = whiten_backward(ctx, X, eps, n_iter, dmean ? dmean->mem : NULL, dD->mem,
                                    t->mem, buf);
    for (int i = 0; i < 6; i++)
        prims_release(buf[i]);
    if (s != NDCL_SUCCESS) {
        if (t != *dX) ndcl_tensor_destroy(t);
        return s;
    }
    *dX = t;
    return NDCL_SUCCESS;
}
