/* gemm.c - the portable entry of the convolution table: im2col + GEMM a
 * chunk of images at a time (primitives/conv2d.c) through the context's
 * BLAS engine, on every device and geometry. */
#include "conv/conv_algo.h"

static bool available(ndcl_context *ctx)
{
    (void)ctx;
    return true;
}

static bool fits(ndcl_context *ctx, const ndcl_conv_geom *g, char *why, size_t why_size)
{
    (void)ctx, (void)g, (void)why, (void)why_size;
    return true;
}

/* The backward's plan for every pass, as the layer always cut them: both
 * passes cut the batch alike and share the chunk workspaces. */
static ndcl_status plan(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                        bool backward, ndcl_conv_plan *p)
{
    NDCL_TRY(ndcl_conv_plan_make(ctx, g, true, p));
    NDCL_TRY(ndcl_scratch_ensure(ctx, ws->col, p->col));
    if (backward || !p->per_image) NDCL_TRY(ndcl_scratch_ensure(ctx, ws->tmp, p->tmp));
    return NDCL_SUCCESS;
}

static ndcl_status workspace(ndcl_context *ctx, const ndcl_conv_geom *g, size_t *bytes)
{
    ndcl_conv_plan p;
    NDCL_TRY(ndcl_conv_plan_make(ctx, g, true, &p));
    *bytes = (p.col + p.tmp) * sizeof(float);
    return NDCL_SUCCESS;
}

static ndcl_status forward(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                           cl_mem x, cl_mem w, cl_mem b, cl_mem y)
{
    ndcl_conv_plan p;
    NDCL_TRY(plan(ctx, g, ws, false, &p));
    return ndcl_conv_forward(ctx, g, &p, x, w, b, y, ws->col->mem, ws->tmp->mem);
}

static ndcl_status backward(ndcl_context *ctx, const ndcl_conv_geom *g, ndcl_conv_ws *ws,
                            cl_mem x, cl_mem w, cl_mem dy, cl_mem dx, cl_mem dW, cl_mem db)
{
    ndcl_conv_plan p;
    NDCL_TRY(plan(ctx, g, ws, true, &p));
    return ndcl_conv_backward(ctx, g, &p, x, w, dy, dx, dW, db, ws->col->mem, ws->tmp->mem);
}

static ndcl_status backward_data(ndcl_context *ctx, const ndcl_conv_geom *g,
                                 ndcl_conv_ws *ws, cl_mem w, cl_mem dy, cl_mem dx)
{
    return backward(ctx, g, ws, NULL, w, dy, dx, NULL, NULL);
}

static ndcl_status backward_weights(ndcl_context *ctx, const ndcl_conv_geom *g,
                                    ndcl_conv_ws *ws, cl_mem x, cl_mem dy, cl_mem dW,
                                    cl_mem db)
{
    /* w is only read for dx. */
    return backward(ctx, g, ws, x, NULL, dy, NULL, dW, db);
}

const ndcl_conv_algo ndcl_conv_gemm = {
    .id = NDCL_CONV_GEMM,
    .name = "gemm",
    .slot = -1,
    .available = available,
    .fits = fits,
    .workspace = workspace,
    .forward = forward,
    .backward_data = backward_data,
    .backward_weights = backward_weights,
    .backward = backward,
};
