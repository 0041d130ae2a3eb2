/* copy.c - a plain copy by a kernel: the device's memory bandwidth, which
 * ndcl-bench sets beside the bandwidth of the patch and layout kernels. */
#include "primitives/prims.h"
#include "primitives/prims_util.h"

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
