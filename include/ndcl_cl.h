/* ndcl_cl.h - interop with a caller's OpenCL objects: run ndcl on your own
 * cl_context, device and queue, and use your own cl_mem buffers as tensors.
 * Nothing handed in is owned by ndcl: it is retained while in use and
 * released when ndcl is done with it, never freed beyond that.
 *
 * Sharing a queue. ndcl enqueues all its work on the context's queue, in
 * call order, and never waits for it except in the blocking calls listed
 * in ndcl.h. On a shared in-order queue, the caller's own commands
 * (kernels, copies, markers) and ndcl's are therefore ordered by the order
 * in which they are enqueued: a kernel of yours enqueued between two ndcl
 * calls runs after the first call's work and before the second's, with no
 * clFinish in between (e.g. a loss kernel between ndcl_layer_forward and
 * ndcl_layer_backward). ndcl's blocking calls, ndcl_finish and
 * ndcl_context_destroy wait for your commands enqueued before them too.
 *
 * Other threads. OpenCL's enqueue calls are thread-safe (OpenCL 1.2,
 * section A.2: every API call except clSetKernelArg on one cl_kernel), so
 * another thread may enqueue its own work on the shared queue while ndcl
 * calls run. Its commands may then land between the commands of one ndcl
 * call. ndcl requires only that they neither write a buffer that ndcl
 * reads nor read one that ndcl writes while those calls run (a tensor's
 * buffer, a wrapped buffer, a layer's parameters); order such accesses
 * from the thread that makes the ndcl calls, or after synchronising with
 * it. ndcl's own calls on one context stay one thread at a time.
 *
 * Two ndcl contexts over one queue (ndcl_context_create_from_cl twice) are
 * independent contexts that happen to share the queue: each has its own
 * kernels, flags, last error and objects (a tensor of one cannot be passed
 * to the other, though both may wrap the same cl_mem), their work is
 * ordered by enqueue order like any other work on the queue, and they may
 * be used from two threads, one each. ndcl_finish on either waits for the
 * whole queue but reports only its own numerical flag.
 *
 * A second queue of yours. ndcl hands out no events; order with OpenCL's:
 *  - before your queue reads what ndcl wrote, enqueue a marker on ndcl's
 *    queue after the ndcl calls, clEnqueueMarkerWithWaitList(q, 0, NULL,
 *    &ev) (it completes when everything before it on the in-order queue
 *    has), and put ev in the wait list of your command;
 *  - before ndcl reads what your queue wrote, enqueue
 *    clEnqueueBarrierWithWaitList(q, 1, &your_event, NULL) on ndcl's queue
 *    before the ndcl calls: what they enqueue waits for your_event.
 * A clFinish of the writing queue (or ndcl_finish for ndcl's) before
 * enqueueing on the other does the same with the host waiting. Across
 * contexts, only the host can order: finish, then enqueue. */
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
 * three objects are retained, and released again when the context is
 * released (after ndcl_context_destroy and the destruction of its last
 * tensor and layer); the caller may release its own references at any
 * time. */
NDCL_API ndcl_status ndcl_context_create_from_cl(cl_context context, cl_device_id device,
                                                 cl_command_queue queue,
                                                 ndcl_context **out);

/* The context's OpenCL objects (not retained for the caller). */
NDCL_API cl_context ndcl_context_cl_context(const ndcl_context *ctx);
NDCL_API cl_device_id ndcl_context_cl_device(const ndcl_context *ctx);
NDCL_API cl_command_queue ndcl_context_cl_queue(const ndcl_context *ctx);

/* Wraps a caller's buffer (a sub-buffer too) as a tensor of the given
 * shape, starting at the buffer's first byte. The buffer must belong to
 * ctx's OpenCL context and hold at least the tensor's bytes. It is
 * retained, and released by ndcl_tensor_destroy; the tensor holds a
 * reference to ctx as any tensor does. Writes through either side are
 * seen by the other in queue order (see "Sharing a queue" above). */
NDCL_API ndcl_status ndcl_tensor_wrap(ndcl_context *ctx, cl_mem buffer, int ndim,
                                      const size_t *shape, ndcl_tensor **out);

/* The tensor's buffer (not retained for the caller). */
NDCL_API cl_mem ndcl_tensor_cl_mem(const ndcl_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* NDCL_CL_H */
