/* copy.c - buffer moves: a plain copy by a kernel (the device's memory
 * bandwidth, which ndcl-bench sets beside the bandwidth of the patch and
 * layout kernels), fills (a value, identity matrices) and y = αx + βy. */
#include "primitives/primitives.h"
#include "primitives/launch.h"

ndcl_status ndcl_copy_floats(ndcl_context *ctx, cl_mem src, cl_mem dst, size_t count)
{
    if (count == 0) return NDCL_SUCCESS;
    if (count > INT_MAX)
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED, "copy of %zu floats: more than 2^31-1",
                         count);
    const int n = (int)count;
    const ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(src), NDCL_ARG(dst)};
    return prims_launch_wide(ctx, "ndcl_copy", 4096, count, 1, 1, args, 3);
}

ndcl_status ndcl_buffer_fill(ndcl_context *ctx, cl_mem buf, size_t count, float value)
{
    if (count == 0) return NDCL_SUCCESS;
    cl_int err = clEnqueueFillBuffer(ctx->queue, buf, &value, sizeof value, 0,
                                     count * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueFillBuffer", err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_eye_fill(ndcl_context *ctx, cl_mem a, size_t n, size_t batch, float value)
{
    int ni = (int)n, bi = (int)batch;
    ndcl_arg args[] = {NDCL_ARG(ni), NDCL_ARG(bi), NDCL_ARG(value), NDCL_ARG(a)};
    size_t global[3] = {n, n, batch};
    return ndcl_launch(ctx, "ndcl_eye", 3, global, NULL, args, 4);
}

ndcl_status ndcl_axpby(ndcl_context *ctx, size_t count, float alpha, cl_mem x, float beta,
                       cl_mem y)
{
    const int n = (int)count;
    const ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(alpha), NDCL_ARG(x), NDCL_ARG(beta),
                             NDCL_ARG(y)};
    return ndcl_launch(ctx, "ndcl_axpby", 1, &count, NULL, args, 5);
}
