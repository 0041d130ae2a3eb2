/* runtime.h - the runtime every part of the library stands on and the public
 * header hides: the context and tensor structs, error helpers, programs and
 * kernel launches, scratch buffers. */
#ifndef NDCL_RUNTIME_H
#define NDCL_RUNTIME_H

#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ndcl.h"
#include "ndcl_cl.h"

#define NDCL_ERRMSG_SIZE 8192
#define NDCL_MAX_KERNELS 64

typedef struct ndcl_kernel_slot {
    const char *name;
    cl_kernel kernel;
} ndcl_kernel_slot;

struct ndcl_context {
    /* References: the caller's (dropped by ndcl_context_destroy) and one
     * per live tensor and layer, so that they may outlive the caller's.
     * Changed only by calls on the context's own objects, which one thread
     * at a time makes: a plain count. */
    int refs;
    bool own_device_ref; /* a caller's device, retained (create_from_cl) */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    ndcl_device_info info;

    /* Kernels: one program built from every embedded source, on first use. */
    cl_program program;
    ndcl_build_info build;
    ndcl_kernel_slot kernels[NDCL_MAX_KERNELS];
    int n_kernels;

    /* The engine of the context's matrix products (blas/blas.h), chosen
     * on first use. */
    const struct ndcl_blas_engine *blas;

    /* Device-side flag raised by kernels that met a non-finite statistic;
     * read and cleared by ndcl_finish and by calls that read to the host. */
    cl_mem flag;

    /* Set by the layer-file loader around a layer's creation: the layer's
     * parameters get their shapes and no device memory, so that a file's
     * tensors are checked against them before anything is allocated. */
    bool shapes_only;

    char last_error[NDCL_ERRMSG_SIZE];
};

/* The version of one layer parameter's contents, shared by the layer and
 * the views of it (ndcl_layer_param_tensor) and counted, so that a view
 * may outlive its layer. The layer refolds W', b' when a version differs
 * from the one it folded from. Not atomic: a context's objects are used by
 * one thread at a time. */
typedef struct ndcl_param_cell {
    uint64_t version;
    int refs;
} ndcl_param_cell;

/* A new cell (refs 1) or NULL; release drops one reference. */
ndcl_param_cell *ndcl_param_cell_new(void);
void ndcl_param_cell_release(ndcl_param_cell *c);

struct ndcl_tensor {
    ndcl_context *ctx;
    cl_mem mem;
    int ndim;
    size_t shape[NDCL_MAX_DIMS];
    size_t count;
    size_t cap; /* floats in mem when ndcl created it (>= count), else 0 */
    bool wrapped;
    ndcl_param_cell *param; /* a view of a layer parameter, else NULL */
};

/* Takes and drops a reference to ctx; the last drop waits for the queue
 * and releases everything the context holds. */
void ndcl_context_retain(ndcl_context *ctx);
void ndcl_context_release(ndcl_context *ctx);

/* ------------------------------------------------------------- errors */

/* Records a message on ctx (or on the thread's context-less slot when ctx
 * is NULL) and returns status, so that failures read
 * `return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG, "...", ...);`. */
ndcl_status ndcl_fail(ndcl_context *ctx, ndcl_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Maps an OpenCL error code to a status and records "call: CL_NAME (code)". */
ndcl_status ndcl_fail_cl(ndcl_context *ctx, const char *call, cl_int err);

/* The symbolic name of an OpenCL error code ("CL_INVALID_VALUE"). */
const char *ndcl_cl_error_name(cl_int err);

/* Clears the last error (called at the start of public entry points whose
 * success should leave no stale message). */
void ndcl_clear_error(ndcl_context *ctx);

/* Writes to stderr when NDCL_DEBUG is set; the only output the library
 * ever produces, and only on request. */
void ndcl_trace(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Evaluate an expression returning ndcl_status and return early on error. */
#define NDCL_TRY(expr)                                                                     \
    do {                                                                                   \
        ndcl_status ndcl_try_s_ = (expr);                                                  \
        if (ndcl_try_s_ != NDCL_SUCCESS) return ndcl_try_s_;                               \
    } while (0)

/* Argument check that names the argument in the message. */
#define NDCL_CHECK_ARG(ctx, cond, ...)                                                     \
    do {                                                                                   \
        if (!(cond)) return ndcl_fail((ctx), NDCL_ERR_INVALID_ARG, __VA_ARGS__);           \
    } while (0)

/* ------------------------------------------------------------- programs */

/* Embedded kernel sources, generated at build time from the cl directory. */
typedef struct ndcl_embedded_source {
    const char *name;
    const unsigned char *data;
    size_t size;
} ndcl_embedded_source;
extern const ndcl_embedded_source ndcl_embedded_sources[];
extern const size_t ndcl_embedded_source_count;

/* Builds (or loads from the cache) the library's program on ctx. */
ndcl_status ndcl_program_ensure(ndcl_context *ctx);

/* Builds an arbitrary source with the library's options and cache; used for
 * the library's own program and by tests. On failure the build log is in
 * the last-error message. */
ndcl_status ndcl_program_build_source(ndcl_context *ctx, const char *source, size_t length,
                                      const char *options, cl_program *out,
                                      ndcl_build_info *info);

/* The named kernel of the library's program, created once per context. */
ndcl_status ndcl_kernel_get(ndcl_context *ctx, const char *name, cl_kernel *out);

/* The directory of the kernel cache (NDCL_CACHE_DIR, else
 * $XDG_CACHE_HOME/ndcl, else ~/.cache/ndcl) into buf; false when the cache
 * is off (NDCL_CACHE=0) or there is none. */
bool ndcl_cache_dir(char *buf, size_t size);

/* mkdir -p path (failures left for the open that follows to notice). */
void ndcl_make_dirs(const char *path);

/* The 64-bit FNV-1a hash, continued from h (start with NDCL_FNV_OFFSET). */
#define NDCL_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t ndcl_hash(uint64_t h, const void *data, size_t size);

/* ------------------------------------------------------------- launches */

/* Kernel arguments as a list, so that every clSetKernelArg result is
 * checked in one place. */
typedef struct ndcl_arg {
    size_t size;
    const void *value; /* NULL with size > 0: local memory of that size */
} ndcl_arg;
#define NDCL_ARG(v) ((ndcl_arg){sizeof(v), &(v)})
#define NDCL_LOCAL(bytes) ((ndcl_arg){(bytes), NULL})

/* Sets the arguments and enqueues the named kernel over global work items
 * (rounded up to a multiple of local when local is given; the kernel must
 * bounds-check). local NULL lets the runtime choose. */
ndcl_status ndcl_launch(ndcl_context *ctx, const char *name, cl_uint dims,
                        const size_t *global, const size_t *local, const ndcl_arg *args,
                        int nargs);

/* The largest power-of-two work-group size <= want that the named kernel
 * supports on ctx's device (CL_KERNEL_WORK_GROUP_SIZE) and whose local
 * memory need (bytes_per_item each) fits the device. */
ndcl_status ndcl_kernel_wg_size(ndcl_context *ctx, const char *name, size_t want,
                                size_t bytes_per_item, size_t *out);

/* buf <- shape as messages write it: "[2, 3]" (tuple false) or as Python
 * writes a tuple, "(2, 3)", "(2,)", "()" (true, the .npy header's form);
 * cut at cap. */
void ndcl_shape_text(const size_t *shape, int ndim, bool tuple, char *buf, size_t cap);

/* ------------------------------------------------------------- files */

/* Replaces path with the concatenation of the nparts parts (files.c):
 * written to a temporary file beside it, fsync'ed and renamed over it, so
 * that a failed or interrupted write leaves the old file. 0 on success,
 * else the errno of the failure (the temporary removed; *no_temp set when
 * none could be created). short_write: half of part 0, then ENOSPC, for
 * the NDCL_TEST_SHORT_WRITE hook of the formats. */
int ndcl_file_replace(const char *path, const void *const *part, const size_t *len,
                      int nparts, bool short_write, bool *no_temp);

/* ------------------------------------------------------------- tensors */

/* Creates a tensor with a shape given as arguments (dims of 0 end it). */
ndcl_status ndcl_tensor_new(ndcl_context *ctx, ndcl_tensor **out, size_t d0, size_t d1,
                            size_t d2, size_t d3);

/* Checks that t belongs to ctx and has exactly the given shape; names the
 * argument in the message. */
/* An output tensor the caller passed (arg names it): one that ndcl created
 * in ctx takes the shape, its buffer replaced only when it must grow (a
 * last, smaller batch keeps it), so that callers may reuse one output for
 * every batch; a wrapped buffer or a parameter view must already have the
 * shape (ndcl_tensor_check). */
ndcl_status ndcl_tensor_fit(ndcl_context *ctx, ndcl_tensor *t, const char *arg, int ndim,
                            const size_t *shape);
ndcl_status ndcl_tensor_check(ndcl_context *ctx, const ndcl_tensor *t, const char *arg,
                              int ndim, const size_t *shape);

/* A view of a layer parameter's buffer (retained) sharing its cell. */
ndcl_status ndcl_tensor_view(ndcl_context *ctx, cl_mem mem, int ndim, const size_t *shape,
                             ndcl_param_cell *cell, ndcl_tensor **out);

/* Records that an ndcl call writes t: when t is a view of a layer
 * parameter, the layer's fold becomes stale. Every public call that writes
 * into a tensor the caller passed in calls it. */
void ndcl_tensor_touch(const ndcl_tensor *t);

/* Sets every element to value. */
ndcl_status ndcl_tensor_fill(ndcl_tensor *t, float value);

/* Copies count floats between buffers at the given element offsets. */
ndcl_status ndcl_buffer_copy(ndcl_context *ctx, cl_mem src, size_t src_off, cl_mem dst,
                             size_t dst_off, size_t count);

/* A device buffer that grows on demand and is reused across calls, so a
 * layer's steady state allocates nothing. */
typedef struct ndcl_scratch {
    cl_mem mem;
    size_t cap; /* floats */
} ndcl_scratch;

/* Makes s hold at least count floats (contents not preserved on growth). */
ndcl_status ndcl_scratch_ensure(ndcl_context *ctx, ndcl_scratch *s, size_t count);
void ndcl_scratch_release(ndcl_scratch *s);

/* Multiplies two size_t values; false on overflow. */
static inline bool ndcl_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

#endif /* NDCL_RUNTIME_H */
