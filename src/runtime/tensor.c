/* tensor.c - float32 device tensors: created by ndcl or wrapped around a
 * caller's cl_mem, written from and read to the host, shape-checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

/* Validates a shape and computes its element count and byte size. */
static ndcl_status shape_count(ndcl_context *ctx, int ndim, const size_t *shape,
                               size_t *count)
{
    NDCL_CHECK_ARG(ctx, ndim >= 1 && ndim <= NDCL_MAX_DIMS, "ndim=%d (must be 1..%d)", ndim,
                   NDCL_MAX_DIMS);
    NDCL_CHECK_ARG(ctx, shape != NULL, "shape is NULL");
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        NDCL_CHECK_ARG(ctx, shape[i] >= 1, "shape[%d]=%zu (must be >= 1)", i, shape[i]);
        NDCL_CHECK_ARG(ctx, ndcl_mul_ok(n, shape[i], &n),
                       "shape[%d]=%zu: element count overflows size_t", i, shape[i]);
    }
    size_t bytes;
    NDCL_CHECK_ARG(ctx, ndcl_mul_ok(n, sizeof(float), &bytes),
                   "element count %zu overflows size_t in bytes", n);
    *count = n;
    return NDCL_SUCCESS;
}

static ndcl_status make(ndcl_context *ctx, cl_mem mem, bool wrapped, int ndim,
                        const size_t *shape, size_t count, ndcl_tensor **out)
{
    ndcl_tensor *t = calloc(1, sizeof *t);
    if (!t) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "tensor allocation");
    t->ctx = ctx;
    ndcl_context_retain(ctx);
    t->mem = mem;
    t->wrapped = wrapped;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->count = count;
    *out = t;
    return NDCL_SUCCESS;
}

/* A read-write device buffer of bytes, what (a tensor, a workspace) named
 * in the message when it exceeds the device's largest allocation, call in
 * OpenCL's failure. */
static ndcl_status float_buffer(ndcl_context *ctx, size_t bytes, const char *what,
                                const char *call, cl_mem *out)
{
    if (ctx->info.max_alloc_bytes && bytes > ctx->info.max_alloc_bytes)
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY,
                         "%s of %zu bytes exceeds the device's largest allocation "
                         "(%llu bytes)",
                         what, bytes, (unsigned long long)ctx->info.max_alloc_bytes);
    cl_int err;
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, call, err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_tensor_create(ndcl_context *ctx, int ndim, const size_t *shape,
                               ndcl_tensor **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    size_t count;
    NDCL_TRY(shape_count(ctx, ndim, shape, &count));
    cl_mem mem;
    NDCL_TRY(float_buffer(ctx, count * sizeof(float), "tensor", "clCreateBuffer", &mem));
    ndcl_status s = make(ctx, mem, false, ndim, shape, count, out);
    if (s != NDCL_SUCCESS)
        clReleaseMemObject(mem);
    else
        (*out)->cap = count;
    return s;
}

ndcl_status ndcl_tensor_new(ndcl_context *ctx, ndcl_tensor **out, size_t d0, size_t d1,
                            size_t d2, size_t d3)
{
    size_t shape[4] = {d0, d1, d2, d3};
    int ndim = 0;
    while (ndim < 4 && shape[ndim] != 0)
        ndim++;
    return ndcl_tensor_create(ctx, ndim, shape, out);
}

ndcl_status ndcl_tensor_wrap(ndcl_context *ctx, cl_mem buffer, int ndim,
                             const size_t *shape, ndcl_tensor **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    NDCL_CHECK_ARG(ctx, buffer != NULL, "buffer is NULL");
    size_t count;
    NDCL_TRY(shape_count(ctx, ndim, shape, &count));
    cl_context bc = NULL;
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof bc, &bc, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clGetMemObjectInfo(buffer)", err);
    NDCL_CHECK_ARG(ctx, bc == ctx->context,
                   "buffer belongs to another OpenCL context than ctx");
    err = clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clGetMemObjectInfo(buffer)", err);
    NDCL_CHECK_ARG(ctx, size >= count * sizeof(float),
                   "buffer holds %zu bytes, shape needs %zu", size, count * sizeof(float));
    NDCL_TRY(make(ctx, buffer, true, ndim, shape, count, out));
    clRetainMemObject(buffer);
    return NDCL_SUCCESS;
}

ndcl_param_cell *ndcl_param_cell_new(void)
{
    ndcl_param_cell *c = calloc(1, sizeof *c);
    if (c) c->refs = 1;
    return c;
}

void ndcl_param_cell_release(ndcl_param_cell *c)
{
    if (c && --c->refs == 0) free(c);
}

ndcl_status ndcl_tensor_view(ndcl_context *ctx, cl_mem mem, int ndim, const size_t *shape,
                             ndcl_param_cell *cell, ndcl_tensor **out)
{
    size_t count;
    NDCL_TRY(shape_count(ctx, ndim, shape, &count));
    NDCL_TRY(make(ctx, mem, true, ndim, shape, count, out));
    clRetainMemObject(mem);
    (*out)->param = cell;
    cell->refs++;
    return NDCL_SUCCESS;
}

void ndcl_tensor_touch(const ndcl_tensor *t)
{
    if (t && t->param) t->param->version++;
}

ndcl_status ndcl_tensor_changed(ndcl_tensor *t)
{
    if (!t) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "t is NULL");
    ndcl_clear_error(t->ctx);
    /* A tensor merely wrapped around a parameter's cl_mem would leave the
     * fold stale without a word: only views can say that it changed. */
    NDCL_CHECK_ARG(t->ctx, t->param != NULL,
                   "t is not a view of a layer parameter (ndcl_layer_param_tensor)");
    t->param->version++;
    return NDCL_SUCCESS;
}

void ndcl_tensor_destroy(ndcl_tensor *t)
{
    if (!t) return;
    if (t->mem) clReleaseMemObject(t->mem);
    ndcl_context_release(t->ctx);
    ndcl_param_cell_release(t->param);
    free(t);
}

ndcl_status ndcl_tensor_write(ndcl_tensor *t, const float *src, size_t count)
{
    if (!t) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "t is NULL");
    ndcl_clear_error(t->ctx);
    NDCL_CHECK_ARG(t->ctx, src != NULL, "src is NULL");
    NDCL_CHECK_ARG(t->ctx, count == t->count, "count=%zu, tensor holds %zu", count,
                   t->count);
    cl_int err = clEnqueueWriteBuffer(t->ctx->queue, t->mem, CL_TRUE, 0,
                                      count * sizeof(float), src, 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(t->ctx, "clEnqueueWriteBuffer", err);
    ndcl_tensor_touch(t);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_tensor_read(const ndcl_tensor *t, float *dst, size_t count)
{
    if (!t) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "t is NULL");
    ndcl_clear_error(t->ctx);
    NDCL_CHECK_ARG(t->ctx, dst != NULL, "dst is NULL");
    NDCL_CHECK_ARG(t->ctx, count == t->count, "count=%zu, tensor holds %zu", count,
                   t->count);
    cl_int err = clEnqueueReadBuffer(t->ctx->queue, t->mem, CL_TRUE, 0,
                                     count * sizeof(float), dst, 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(t->ctx, "clEnqueueReadBuffer", err);
    return NDCL_SUCCESS;
}

int ndcl_tensor_ndim(const ndcl_tensor *t)
{
    return t ? t->ndim : 0;
}

size_t ndcl_tensor_dim(const ndcl_tensor *t, int i)
{
    return (t && i >= 0 && i < t->ndim) ? t->shape[i] : 0;
}

size_t ndcl_tensor_count(const ndcl_tensor *t)
{
    return t ? t->count : 0;
}

ndcl_context *ndcl_tensor_context(const ndcl_tensor *t)
{
    return t ? t->ctx : NULL;
}

cl_mem ndcl_tensor_cl_mem(const ndcl_tensor *t)
{
    return t ? t->mem : NULL;
}

ndcl_status ndcl_tensor_reshape(ndcl_tensor *t, int ndim, const size_t *shape)
{
    if (!t) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "t is NULL");
    ndcl_clear_error(t->ctx);
    size_t count;
    NDCL_TRY(shape_count(t->ctx, ndim, shape, &count));
    NDCL_CHECK_ARG(t->ctx, count == t->count, "reshape to %zu elements, tensor holds %zu",
                   count, t->count);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_tensor_check(ndcl_context *ctx, const ndcl_tensor *t, const char *arg,
                              int ndim, const size_t *shape)
{
    NDCL_CHECK_ARG(ctx, t != NULL, "%s is NULL", arg);
    NDCL_CHECK_ARG(ctx, t->ctx == ctx, "%s belongs to another context", arg);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[96] = "", have[96] = "";
        size_t w = 0, h = 0;
        for (int i = 0; i < ndim && w < sizeof want; i++)
            w += (size_t)snprintf(want + w, sizeof want - w, i ? ",%zu" : "%zu", shape[i]);
        for (int i = 0; i < t->ndim && h < sizeof have; i++)
            h += (size_t)snprintf(have + h, sizeof have - h, i ? ",%zu" : "%zu",
                                  t->shape[i]);
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG, "%s has shape [%s], expected [%s]", arg,
                         have, want);
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_tensor_fit(ndcl_context *ctx, ndcl_tensor *t, const char *arg, int ndim,
                            const size_t *shape)
{
    NDCL_CHECK_ARG(ctx, t != NULL, "%s is NULL", arg);
    if (t->wrapped || t->param || t->ctx != ctx || t->cap == 0)
        return ndcl_tensor_check(ctx, t, arg, ndim, shape);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (same) return NDCL_SUCCESS;
    size_t count;
    NDCL_TRY(shape_count(ctx, ndim, shape, &count));
    if (count > t->cap) {
        cl_mem m;
        NDCL_TRY(float_buffer(ctx, count * sizeof(float), arg, "clCreateBuffer", &m));
        /* Commands still queued on the old buffer hold their own reference. */
        clReleaseMemObject(t->mem);
        t->mem = m;
        t->cap = count;
    }
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->count = count;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_tensor_fill(ndcl_tensor *t, float value)
{
    cl_int err = clEnqueueFillBuffer(t->ctx->queue, t->mem, &value, sizeof value, 0,
                                     t->count * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(t->ctx, "clEnqueueFillBuffer", err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_buffer_copy(ndcl_context *ctx, cl_mem src, size_t src_off, cl_mem dst,
                             size_t dst_off, size_t count)
{
    if (count == 0) return NDCL_SUCCESS;
    cl_int err =
        clEnqueueCopyBuffer(ctx->queue, src, dst, src_off * sizeof(float),
                            dst_off * sizeof(float), count * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueCopyBuffer", err);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_scratch_ensure(ndcl_context *ctx, ndcl_scratch *s, size_t count)
{
    if (count == 0) count = 1;
    if (s->mem && s->cap >= count) return NDCL_SUCCESS;
    size_t bytes;
    if (!ndcl_mul_ok(count, sizeof(float), &bytes))
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "workspace of %zu floats overflows",
                         count);
    cl_mem m;
    NDCL_TRY(float_buffer(ctx, bytes, "workspace", "clCreateBuffer(workspace)", &m));
    ndcl_scratch_release(s);
    s->mem = m;
    s->cap = count;
    return NDCL_SUCCESS;
}

void ndcl_scratch_release(ndcl_scratch *s)
{
    if (s->mem) clReleaseMemObject(s->mem);
    s->mem = NULL;
    s->cap = 0;
}

void ndcl_shape_text(const size_t *shape, int ndim, bool tuple, char *buf, size_t cap)
{
    size_t used = (size_t)snprintf(buf, cap, tuple ? "(" : "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%zu%s", i ? ", " : "", shape[i],
                                 tuple && ndim == 1 ? "," : "");
    if (used < cap) snprintf(buf + used, cap - used, tuple ? ")" : "]");
}
