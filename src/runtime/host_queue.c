/* host_queue.c - host functions run in queue order between non-blocking
 * maps and unmaps of the buffers they touch (native kernels). */
#include "runtime/host_queue.h"

#include <stdio.h>
#include <string.h>

/* On PoCL the mapping is the buffer's own memory (no copy; a 300 MB buffer
 * maps in tens of microseconds) and the native kernel runs on one of
 * PoCL's worker threads, from which the host library spreads its work over
 * its own threads. The addresses travel in the native kernel's argument
 * block, not through its mem_list: PoCL 3.1 writes mem_list's addresses
 * into the wrong slots when it holds more than one buffer (it sorts its
 * copy of the list). */

typedef struct mapping {
    cl_mem mem;
    size_t lo, hi;
    bool write;
    char *base;
} mapping;

/* The block the native kernel receives (the runtime copies it). */
typedef struct block {
    ndcl_host_fn fn;
    int n;
    void *ptr[NDCL_HOST_MAX_REGIONS];
    _Alignas(16) unsigned char args[NDCL_HOST_MAX_ARGS];
} block;

static void trampoline(void *data)
{
    block *b = data;
    b->fn(b->ptr, b->args);
}

static void unmap_enqueued(ndcl_context *ctx, mapping *m, int n)
{
    for (int i = 0; i < n; i++)
        if (m[i].base)
            clEnqueueUnmapMemObject(ctx->queue, m[i].mem, m[i].base, 0, NULL, NULL);
}

ndcl_status ndcl_host_enqueue(ndcl_context *ctx, const ndcl_host_region *regions, int n,
                              ndcl_host_fn fn, const void *args, size_t args_size,
                              const char *what)
{
    NDCL_CHECK_ARG(ctx,
                   n >= 0 && n <= NDCL_HOST_MAX_REGIONS && args_size <= NDCL_HOST_MAX_ARGS,
                   "host work %s: %d regions, %zu bytes of arguments", what, n, args_size);
    mapping map[NDCL_HOST_MAX_REGIONS];
    int n_maps = 0;
    for (int i = 0; i < n; i++) {
        const ndcl_host_region *r = &regions[i];
        int j = 0;
        while (j < n_maps && map[j].mem != r->mem)
            j++;
        if (j == n_maps) {
            map[n_maps++] = (mapping){r->mem, r->lo, r->hi, r->write, NULL};
            continue;
        }
        if (r->lo < map[j].lo) map[j].lo = r->lo;
        if (r->hi > map[j].hi) map[j].hi = r->hi;
        map[j].write = map[j].write || r->write;
    }
    /* Non-blocking: the addresses are known now and valid from when the
     * maps complete, in queue order. */
    for (int j = 0; j < n_maps; j++) {
        cl_int err;
        cl_map_flags flags = CL_MAP_READ | (map[j].write ? CL_MAP_WRITE : 0);
        map[j].base = clEnqueueMapBuffer(ctx->queue, map[j].mem, CL_FALSE, flags, map[j].lo,
                                         map[j].hi - map[j].lo, 0, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            map[j].base = NULL;
            unmap_enqueued(ctx, map, j);
            return ndcl_fail_cl(ctx, "clEnqueueMapBuffer", err);
        }
    }
    block b;
    memset(&b, 0, sizeof b);
    b.fn = fn;
    b.n = n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n_maps; j++)
            if (map[j].mem == regions[i].mem)
                b.ptr[i] = map[j].base + (regions[i].lo - map[j].lo);
    if (args_size) memcpy(b.args, args, args_size);
    cl_int err = clEnqueueNativeKernel(ctx->queue, trampoline, &b, sizeof b, 0, NULL, NULL,
                                       0, NULL, NULL);
    ndcl_status s = NDCL_SUCCESS;
    if (err != CL_SUCCESS) {
        char call[96];
        snprintf(call, sizeof call, "clEnqueueNativeKernel(%s)", what);
        s = ndcl_fail_cl(ctx, call, err);
    }
    for (int j = 0; j < n_maps; j++) {
        cl_int e =
            clEnqueueUnmapMemObject(ctx->queue, map[j].mem, map[j].base, 0, NULL, NULL);
        if (e != CL_SUCCESS && s == NDCL_SUCCESS)
            s = ndcl_fail_cl(ctx, "clEnqueueUnmapMemObject", e);
    }
    return s;
}

bool ndcl_host_queue_fits(ndcl_context *ctx)
{
    cl_bool unified = CL_FALSE;
    cl_device_exec_capabilities caps = 0;
    if (ctx->info.type != NDCL_DEVICE_CPU) return false;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified,
                        &unified, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(ctx->device, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof caps, &caps,
                        NULL) != CL_SUCCESS)
        return false;
    return unified == CL_TRUE && (caps & CL_EXEC_NATIVE_KERNEL);
}
