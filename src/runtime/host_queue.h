/* host_queue.h - host work run in the order of a context's queue, on
 * buffers mapped into the host: what the host engines (OpenBLAS's products,
 * oneDNN's convolutions) share. */
#ifndef NDCL_HOST_QUEUE_H
#define NDCL_HOST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/runtime.h"

/* A byte range [lo, hi) of a buffer the host work reads, or also writes. */
typedef struct ndcl_host_region {
    cl_mem mem;
    size_t lo, hi;
    bool write;
} ndcl_host_region;

enum { NDCL_HOST_MAX_REGIONS = 8, NDCL_HOST_MAX_ARGS = 256 };

/* The host function: ptr[i] is region i's first byte, mapped; args is the
 * caller's block, copied at enqueue time. */
typedef void (*ndcl_host_fn)(void *const *ptr, void *args);

/* Enqueues on ctx's in-order queue, all at once and without blocking:
 * non-blocking maps of the regions (regions of one buffer share one
 * mapping of their union: mapping overlapping regions for writing is
 * undefined in OpenCL), a native kernel that calls fn with the mapped
 * addresses and a copy of args (at most NDCL_HOST_MAX_ARGS bytes), and the
 * unmaps. The maps complete after every command enqueued before them, so
 * fn reads what the kernels before it wrote; the kernels enqueued after
 * the unmaps see what fn wrote; the call returns at once. Each region must
 * be non-empty and inside its buffer (the callers check); at most
 * NDCL_HOST_MAX_REGIONS. */
ndcl_status ndcl_host_enqueue(ndcl_context *ctx, const ndcl_host_region *regions, int n,
                              ndcl_host_fn fn, const void *args, size_t args_size,
                              const char *what);

/* Whether ctx's device runs host work this way: a CPU device with
 * CL_DEVICE_HOST_UNIFIED_MEMORY (its buffers are the host's memory: a map
 * is no copy) that runs native kernels. */
bool ndcl_host_queue_fits(ndcl_context *ctx);

#endif
