/* kernels.c - builds ndcl-train's own kernels (train.cl) for the device of
 * an ndcl context and enqueues them on its queue, through ndcl_cl.h, as
 * an application embedding ndcl would; and the tool's error message. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static char error_text[8192];

int tr_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    return code;
}

const char *tr_error(void)
{
    return error_text;
}

int tr_fail_ndcl(ndcl_context *ctx, ndcl_status s, const char *what)
{
    /* Statuses that mean the caller's input is at fault. */
    int code = (s == NDCL_ERR_IO || s == NDCL_ERR_FORMAT) ? TR_INPUT : TR_DEVICE;
    return tr_fail(code, "%s: %s (%s)", what, ndcl_status_string(s),
                   ndcl_context_last_error(ctx));
}

int tr_fail_cl(cl_int err, const char *what)
{
    return tr_fail(TR_DEVICE, "%s: OpenCL error %d", what, (int)err);
}

static const char *const kernel_names[K_COUNT] = {
    "tr_gather",       "tr_relu_pool",    "tr_relu_pool_backward",
    "tr_softmax_xent", "tr_sum",          "tr_count_correct",
    "tr_sgd",          "tr_init_uniform", "tr_gather_augment"};

int tk_init(tk *t, ndcl_context *ctx)
{
    memset(t, 0, sizeof *t);
    t->nctx = ctx;
    t->ctx = ndcl_context_cl_context(ctx);
    t->q = ndcl_context_cl_queue(ctx);
    cl_device_id dev = ndcl_context_cl_device(ctx);
    const char *src[8];
    size_t len[8];
    cl_uint n = (cl_uint)train_cl_source_count;
    for (cl_uint i = 0; i < n && i < 8; i++) {
        src[i] = (const char *)train_cl_sources[i].data;
        len[i] = train_cl_sources[i].size;
    }
    cl_int err;
    t->prog = clCreateProgramWithSource(t->ctx, n, src, len, &err);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "clCreateProgramWithSource(train.cl)");
    err = clBuildProgram(t->prog, 1, &dev, "-cl-std=CL1.2", NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t size = 0;
        clGetProgramBuildInfo(t->prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
        char *log = malloc(size + 1);
        if (log) {
            clGetProgramBuildInfo(t->prog, dev, CL_PROGRAM_BUILD_LOG, size, log, NULL);
            log[size] = 0;
        }
        tr_fail(TR_DEVICE, "building train.cl: OpenCL error %d\n%s", (int)err,
                log ? log : "");
        free(log);
        return TR_DEVICE;
    }
    for (int i = 0; i < K_COUNT; i++) {
        t->k[i] = clCreateKernel(t->prog, kernel_names[i], &err);
        if (err != CL_SUCCESS) return tr_fail_cl(err, kernel_names[i]);
    }
    /* Work-groups: a power of two the kernel supports on this device (its
     * registers and local memory bound it, as may POCL_MAX_WORK_GROUP_SIZE);
     * tr_sum's tree needs a power of two, the element-wise kernels round
     * their item count up to a multiple and bounds-check. */
    for (int i = 0; i < K_COUNT; i++) {
        size_t kwg = 1;
        err = clGetKernelWorkGroupInfo(t->k[i], dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg,
                                       &kwg, NULL);
        if (err != CL_SUCCESS) return tr_fail_cl(err, "CL_KERNEL_WORK_GROUP_SIZE");
        size_t cap = i == K_SUM ? 256 : 64;
        t->wg[i] = 1;
        while (t->wg[i] * 2 <= kwg && t->wg[i] * 2 <= cap)
            t->wg[i] *= 2;
        t->wg_wide[i] = kwg < TK_WIDE_WG ? kwg : TK_WIDE_WG;
        if (!t->wg_wide[i]) t->wg_wide[i] = 1;
    }
    err = clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof t->item_sizes,
                          t->item_sizes, NULL);
    if (err != CL_SUCCESS) return tr_fail_cl(err, "CL_DEVICE_MAX_WORK_ITEM_SIZES");
    for (int d = 0; d < 3; d++)
        if (!t->item_sizes[d]) t->item_sizes[d] = 1;
    return TR_OK;
}

void tk_release(tk *t)
{
    for (int i = 0; i < K_COUNT; i++)
        if (t->k[i]) clReleaseKernel(t->k[i]);
    if (t->prog) clReleaseProgram(t->prog);
    memset(t, 0, sizeof *t);
}

cl_mem tk_buffer(tk *t, size_t bytes, const char *what)
{
    cl_int err;
    cl_mem m = clCreateBuffer(t->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
    if (err != CL_SUCCESS) {
        tr_fail_cl(err, what);
        return NULL;
    }
    return m;
}

/* Arguments as (size, pointer) pairs; NULL pointer with a size: local memory. */
typedef struct karg {
    size_t size;
    const void *value;
} karg;
#define A(v) ((karg){sizeof(v), &(v)})

static int launch(tk *t, tk_id id, size_t items, const karg *args, int nargs)
{
    size_t local = t->wg[id], global = (items + local - 1) / local * local;
    cl_kernel k = t->k[id];
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) return tr_fail_cl(err, kernel_names[id]);
    }
    if (items == 0) return TR_OK;
    cl_int err = clEnqueueNDRangeKernel(t->q, k, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return tr_fail_cl(err, kernel_names[id]);
    return TR_OK;
}

/* Launches a memory-bound kernel over need[0..2] items in work-groups as
 * large as the kernel allows on the device (at most TK_WIDE_WG items),
 * each dimension taking its whole extent when that fits, else the largest
 * power of two that does: on a CPU device (PoCL) a work-group is one task,
 * so few large groups keep the scheduling cost per element small, and on a
 * GPU any group the kernel allows is fine for streaming. The global size is
 * rounded up to the groups; the kernels bounds-check every dimension. */
static int launch_wide(tk *t, tk_id id, const size_t need[3], const karg *args, int nargs)
{
    cl_kernel k = t->k[id];
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) return tr_fail_cl(err, kernel_names[id]);
    }
    if (!need[0] || !need[1] || !need[2]) return TR_OK;
    size_t local[3], global[3], left = t->wg_wide[id];
    for (int d = 0; d < 3; d++) {
        size_t cap = left < t->item_sizes[d] ? left : t->item_sizes[d];
        if (need[d] <= cap) {
            local[d] = need[d];
        } else {
            local[d] = 1;
            while (local[d] * 2 <= cap)
                local[d] *= 2;
        }
        left /= local[d];
        global[d] = (need[d] + local[d] - 1) / local[d] * local[d];
    }
    cl_int err = clEnqueueNDRangeKernel(t->q, k, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? TR_OK : tr_fail_cl(err, kernel_names[id]);
}

int tk_gather(tk *t, cl_mem images, cl_mem labels, cl_mem index, int first, int n,
              int pixels, cl_mem x, cl_mem y)
{
    karg a[] = {A(images), A(labels), A(index), A(first), A(n), A(pixels), A(x), A(y)};
    size_t need[3] = {(size_t)pixels, (size_t)n, 1};
    return launch_wide(t, K_GATHER, need, a, 8);
}

int tk_gather_augment(tk *t, cl_mem images, cl_mem labels, cl_mem index, int first, int n,
                      int side, int shift, uint32_t salt, uint32_t base, cl_mem x, cl_mem y)
{
    cl_uint s = salt, b = base;
    karg a[] = {A(images), A(labels), A(index), A(first), A(n), A(side),
                A(shift),  A(s),      A(b),     A(x),     A(y)};
    size_t need[3] = {(size_t)side, (size_t)side, (size_t)n};
    return launch_wide(t, K_GATHER_AUG, need, a, 11);
}

int tk_relu_pool(tk *t, cl_mem x, int planes, int h, int w, cl_mem y, cl_mem arg)
{
    karg a[] = {A(x), A(planes), A(h), A(w), A(y), A(arg)};
    /* Eight windows of a row pair per item (train.cl). */
    size_t need[3] = {(size_t)(w / 2 + 7) / 8, (size_t)(h / 2), (size_t)planes};
    return launch_wide(t, K_RELU_POOL, need, a, 6);
}

int tk_relu_pool_backward(tk *t, cl_mem dy, cl_mem arg, int planes, int h, int w, cl_mem dx)
{
    karg a[] = {A(dy), A(arg), A(planes), A(h), A(w), A(dx)};
    /* 16 columns of a row pair per item, every input covered (all 0 where
     * no window is, h or w below 2 included). */
    size_t need[3] = {(size_t)(w + 15) / 16, (size_t)(h + 1) / 2, (size_t)planes};
    return launch_wide(t, K_RELU_POOL_BW, need, a, 6);
}

int tk_softmax_xent(tk *t, cl_mem logits, cl_mem labels, int n, int classes, float scale,
                    cl_mem loss, cl_mem dlogits)
{
    karg a[] = {A(logits), A(labels), A(n), A(classes), A(scale), A(loss), A(dlogits)};
    return launch(t, K_SOFTMAX_XENT, (size_t)n, a, 7);
}

int tk_sum(tk *t, cl_mem v, int n, float scale, cl_mem out)
{
    karg a[] = {A(v), A(n), A(scale), A(out), {t->wg[K_SUM] * sizeof(float), NULL}};
    return launch(t, K_SUM, t->wg[K_SUM], a, 5);
}

int tk_count_correct(tk *t, cl_mem logits, cl_mem labels, int n, int classes,
                     cl_mem correct)
{
    karg a[] = {A(logits), A(labels), A(n), A(classes), A(correct)};
    return launch(t, K_COUNT_CORRECT, (size_t)n, a, 5);
}

int tk_sgd(tk *t, cl_mem p, cl_mem g, cl_mem buf, int n, float lr0, float momentum,
           float wd, int step, int total)
{
    /* The cosine schedule (CosineAnnealingLR to 0), in double. */
    float lr = (float)(0.5 * lr0 * (1.0 + cos(3.14159265358979323846 * step / total)));
    karg a[] = {A(p), A(g), A(buf), A(n), A(lr), A(momentum), A(wd)};
    size_t need[3] = {(size_t)n, 1, 1};
    return launch_wide(t, K_SGD, need, a, 7);
}

int tk_init_uniform(tk *t, cl_mem p, int n, float bound, uint32_t seed, uint32_t stream)
{
    cl_uint s = seed, st = stream;
    karg a[] = {A(p), A(n), A(bound), A(s), A(st)};
    size_t need[3] = {(size_t)n, 1, 1};
    return launch_wide(t, K_INIT, need, a, 5);
}
