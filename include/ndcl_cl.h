/* ndcl_cl.h - interop with a caller's OpenCL objects: run ndcl on your own
 * cl_context, device and queue, and use your own cl_mem buffers as tensors.
 * Nothing handed in is owned by ndcl: it is retained while in use and
 * released on destroy, never freed beyond that. */
#ifndef NDCL_CL_H
#define NDCL_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "ndcl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an ndcl context over the caller's context, device and queue.
 * The queue must belong to the context and device and be in-order. The
 * three objects are retained and released again by ndcl_context_destroy. */
NDCL_API ndcl_status ndcl_context_create_from_cl(cl_context context, cl_device_id device,
                                                 cl_command_queue queue,
                                                 ndcl_context **out);

/* The context's OpenCL objects (not retained for the caller). */
NDCL_API cl_context ndcl_context_cl_context(const ndcl_context *ctx);
NDCL_API cl_device_id ndcl_context_cl_device(const ndcl_context *ctx);
NDCL_API cl_command_queue ndcl_context_cl_queue(const ndcl_context *ctx);

/* Wraps a caller's buffer as a tensor of the given shape. The buffer must
 * belong to ctx's OpenCL context and hold at least the tensor's bytes. It
 * is retained, and released by ndcl_tensor_destroy. */
NDCL_API ndcl_status ndcl_tensor_wrap(ndcl_context *ctx, cl_mem buffer, int ndim,
                                      const size_t *shape, ndcl_tensor **out);

/* The tensor's buffer (not retained for the caller). */
NDCL_API cl_mem ndcl_tensor_cl_mem(const ndcl_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* NDCL_CL_H */
