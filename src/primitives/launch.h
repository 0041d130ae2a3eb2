/* launch.h - helpers private to the primitive files (im2col.c, stats.c,
 * isqrt.c, fold.c, api.c, ...): temporary buffers and launches of the
 * element-wise kernels with a queried work-group shape. */
#ifndef NDCL_PRIMITIVES_LAUNCH_H
#define NDCL_PRIMITIVES_LAUNCH_H

#include <limits.h>

#include "blas/blas.h"
#include "runtime/runtime.h"

/* A device buffer of count floats for the duration of one call. */
static inline ndcl_status prims_buffer(ndcl_context *ctx, size_t count, cl_mem *out)
{
    size_t bytes = 0;
    if (!ndcl_mul_ok(count ? count : 1, sizeof(float), &bytes))
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "temporary of %zu floats overflows",
                         count);
    cl_int err;
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return ndcl_fail_cl(ctx, "clCreateBuffer(temporary)", err);
    }
    return NDCL_SUCCESS;
}

static inline void prims_release(cl_mem m)
{
    if (m) clReleaseMemObject(m);
}

/* True when every count is at most INT_MAX (the kernels index with int). */
static inline bool prims_fit_int(size_t a, size_t b, size_t c)
{
    return a <= INT_MAX && b <= INT_MAX && c <= INT_MAX;
}

/* The device's largest work-group extent per dimension: on some devices
 * the third (NVIDIA: 64) is smaller than the work-group size. */
static inline ndcl_status prims_item_sizes(ndcl_context *ctx, size_t out[3])
{
    size_t sizes[3] = {1, 1, 1};
    cl_int err = clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof sizes,
                                 sizes, NULL);
    if (err != CL_SUCCESS)
        return ndcl_fail_cl(ctx, "clGetDeviceInfo(CL_DEVICE_MAX_WORK_ITEM_SIZES)", err);
    for (int d = 0; d < 3; d++)
        out[d] = sizes[d] ? sizes[d] : 1;
    return NDCL_SUCCESS;
}

/* Launches an element-wise kernel over (x, y, z) items with an explicit
 * work-group shape: letting the runtime choose can give 1-item groups for
 * odd sizes on GPUs. x gets up to 32 items of the group (contiguous in
 * memory), y and z the rest; the kernel bounds-checks the rounding. */
static inline ndcl_status prims_launch3(ndcl_context *ctx, const char *name, size_t x,
                                        size_t y, size_t z, const ndcl_arg *args, int nargs)
{
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, name, 256, 0, &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    size_t local[3] = {1, 1, 1};
    size_t need[3] = {x ? x : 1, y ? y : 1, z ? z : 1};
    /* Give each dimension what it can use, x first, within wg in total. */
    size_t left = wg;
    for (int d = 0; d < 3; d++) {
        size_t cap = d == 0 ? 32 : left;
        if (cap > max_items[d]) cap = max_items[d];
        while (local[d] * 2 <= cap && local[d] * 2 <= left && local[d] < need[d])
            local[d] *= 2;
        left /= local[d];
    }
    const size_t global[3] = {need[0], need[1], need[2]};
    cl_uint dims = z > 1 ? 3 : (y > 1 ? 2 : 1);
    return ndcl_launch(ctx, name, dims, global, local, args, nargs);
}

/* Launches a memory-bound kernel over (x, y, z) items in work-groups as
 * large as the kernel allows (up to want items): on a CPU device (PoCL) a
 * work-group is one task whose items run as vectorised loops, so few large
 * groups keep the scheduling cost per element small. x, the dimension of
 * consecutive addresses, gets its whole extent when it fits. */
static inline ndcl_status prims_launch_wide(ndcl_context *ctx, const char *name,
                                            size_t want, size_t x, size_t y, size_t z,
                                            const ndcl_arg *args, int nargs)
{
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, name, want, 0, &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    const size_t need[3] = {x ? x : 1, y ? y : 1, z ? z : 1};
    size_t local[3] = {1, 1, 1}, left = wg;
    for (int d = 0; d < 3; d++) {
        size_t cap = left < max_items[d] ? left : max_items[d];
        if (need[d] <= cap) {
            local[d] = need[d];
        } else {
            while (local[d] * 2 <= cap)
                local[d] *= 2;
        }
        left /= local[d];
    }
    cl_uint dims = z > 1 ? 3 : (y > 1 ? 2 : 1);
    return ndcl_launch(ctx, name, dims, need, local, args, nargs);
}

#endif
