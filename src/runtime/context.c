/* context.c - platform and device discovery, device selection, contexts
 * created by ndcl or wrapped from the caller's OpenCL objects. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* One enumerated device with its indices. */
typedef struct found_device {
    cl_platform_id platform;
    cl_device_id device;
    int p, d;
    cl_device_type type;
    char name[128];
} found_device;

static void get_str(cl_device_id dev, cl_device_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(dev, what, size, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[size - 1] = '\0';
}

static void get_pstr(cl_platform_id p, cl_platform_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[size - 1] = '\0';
}

/* Enumerates every device of every platform. Zero platforms, including the
 * ICD loader's CL_PLATFORM_NOT_FOUND_KHR, is NDCL_ERR_NO_DEVICE. */
static ndcl_status enumerate(found_device *out, int *count)
{
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    *count = 0;
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && np == 0))
        return ndcl_fail(NULL, NDCL_ERR_NO_DEVICE,
                         "no OpenCL platform found (is an ICD installed? "
                         "see /etc/OpenCL/vendors or OCL_ICD_VENDORS)");
    if (err != CL_SUCCESS) return ndcl_fail_cl(NULL, "clGetPlatformIDs", err);
    if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) !=
            CL_SUCCESS)
            continue; /* a platform without devices is not an error */
        if (nd > MAX_DEVICES) nd = MAX_DEVICES;
        for (cl_uint d = 0; d < nd && *count < MAX_DEVICES; d++) {
            found_device *f = &out[(*count)++];
            f->platform = plats[p];
            f->device = devs[d];
            f->p = (int)p;
            f->d = (int)d;
            f->type = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof f->type, &f->type, NULL);
            get_str(devs[d], CL_DEVICE_NAME, f->name, sizeof f->name);
        }
    }
    if (*count == 0)
        return ndcl_fail(NULL, NDCL_ERR_NO_DEVICE, "OpenCL platforms found, but no device");
    return NDCL_SUCCESS;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0) return true;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return true;
    }
    return false;
}

static cl_device_type cl_type_of(ndcl_device_type t)
{
    switch (t) {
    case NDCL_DEVICE_GPU: return CL_DEVICE_TYPE_GPU;
    case NDCL_DEVICE_CPU: return CL_DEVICE_TYPE_CPU;
    case NDCL_DEVICE_ACCELERATOR: return CL_DEVICE_TYPE_ACCELERATOR;
    default: return CL_DEVICE_TYPE_ALL;
    }
}

/* Parses "P:D" (both decimal); returns false when spec is not of that form,
 * in which case it is a name substring. */
static bool parse_index_spec(const char *spec, int *p, int *d)
{
    char *end;
    if (!isdigit((unsigned char)spec[0])) return false;
    long a = strtol(spec, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1])) return false;
    long b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a > 1000 || b > 1000) return false;
    *p = (int)a;
    *d = (int)b;
    return true;
}

/* Finds the device matching a spec string; where names the source of the
 * spec in the message ("NDCL_DEVICE", "options.spec"). */
static ndcl_status match_spec(const found_device *devs, int n, const char *spec,
                              const char *where, int *pick)
{
    int p, d;
    if (spec[0] == '\0') return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "%s is empty", where);
    if (parse_index_spec(spec, &p, &d)) {
        for (int i = 0; i < n; i++)
            if (devs[i].p == p && devs[i].d == d) {
                *pick = i;
                return NDCL_SUCCESS;
            }
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "%s=\"%s\": no device %d:%d (%d device(s) found)", where, spec, p,
                         d, n);
    }
    for (int i = 0; i < n; i++)
        if (contains_nocase(devs[i].name, spec)) {
            *pick = i;
            return NDCL_SUCCESS;
        }
    return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "%s=\"%s\": no device name contains it",
                     where, spec);
}

/* Applies the selection rule of ndcl_context_options. */
static ndcl_status select_device(const found_device *devs, int n,
                                 const ndcl_context_options *o, int *pick)
{
    bool constrained = o->platform_index >= 0 || o->device_index >= 0 ||
                       o->type != NDCL_DEVICE_ANY || (o->name && o->name[0]);
    if (o->platform_index < -1 || o->device_index < -1)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "options: platform_index=%d device_index=%d (must be >= -1)",
                         o->platform_index, o->device_index);
    if ((int)o->type < 0 || (int)o->type > NDCL_DEVICE_ACCELERATOR)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "options.type=%d is not a device type",
                         (int)o->type);
    if (constrained) {
        for (int i = 0; i < n; i++) {
            if (o->platform_index >= 0 && devs[i].p != o->platform_index) continue;
            if (o->device_index >= 0 && devs[i].d != o->device_index) continue;
            if (o->type != NDCL_DEVICE_ANY && !(devs[i].type & cl_type_of(o->type)))
                continue;
            if (o->name && !contains_nocase(devs[i].name, o->name)) continue;
            *pick = i;
            return NDCL_SUCCESS;
        }
        return ndcl_fail(NULL, NDCL_ERR_NO_DEVICE,
                         "no device matches options (platform %d, device %d, type %d, "
                         "name \"%s\")",
                         o->platform_index, o->device_index, (int)o->type,
                         o->name ? o->name : "");
    }
    if (o->spec) return match_spec(devs, n, o->spec, "device spec", pick);
    const char *env = o->ignore_env ? NULL : getenv("NDCL_DEVICE");
    if (env) return match_spec(devs, n, env, "NDCL_DEVICE", pick);
    for (int i = 0; i < n; i++)
        if (devs[i].type & CL_DEVICE_TYPE_GPU) {
            *pick = i;
            return NDCL_SUCCESS;
        }
    *pick = 0;
    return NDCL_SUCCESS;
}

static bool has_extension(cl_device_id dev, const char *ext)
{
    size_t size = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS)
        return false;
    char *buf = malloc(size + 1);
    if (!buf) return false;
    bool found = false;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, size, buf, NULL) == CL_SUCCESS) {
        buf[size] = '\0';
        found = strstr(buf, ext) != NULL;
    }
    free(buf);
    return found;
}

/* Reads a size from the environment variable `name`: a decimal count with
 * an optional binary suffix K, M or G. *set is 0 when the variable is unset. */
static ndcl_status env_size(const char *name, uint64_t *value, int *set)
{
    *set = 0;
    const char *s = getenv(name);
    if (!s) return NDCL_SUCCESS;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (end != s && *end) {
        switch (*end) {
        case 'K':
        case 'k': shift = 10; break;
        case 'M':
        case 'm': shift = 20; break;
        case 'G':
        case 'g': shift = 30; break;
        default: shift = 64;
        }
        end++;
    }
    if (end == s || *end || errno || *s == '-' || shift == 64 || (v >> (63 - shift)) != 0)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "%s=\"%s\" is not a size (a count with an optional K, M or G)",
                         name, s);
    *value = (uint64_t)v << shift;
    *set = 1;
    return NDCL_SUCCESS;
}

/* What the sizing code reads of the device may be replaced from the
 * environment, so that one machine can run the suites as another would
 * size them: NDCL_DEVICE_CACHE_BYTES for the global memory cache (PoCL
 * reports the host's L3, which a virtual machine may give as anything) and
 * NDCL_DEVICE_COMPUTE_UNITS for the compute units. */
static ndcl_status device_overrides(ndcl_device_info *info)
{
    uint64_t v = 0;
    int set = 0;
    NDCL_TRY(env_size("NDCL_DEVICE_CACHE_BYTES", &v, &set));
    if (set) info->global_mem_cache_bytes = v;
    NDCL_TRY(env_size("NDCL_DEVICE_COMPUTE_UNITS", &v, &set));
    if (set) {
        if (v == 0 || v > 1u << 20)
            return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                             "NDCL_DEVICE_COMPUTE_UNITS=%s is not between 1 and %u",
                             getenv("NDCL_DEVICE_COMPUTE_UNITS"), 1u << 20);
        info->compute_units = (unsigned)v;
    }
    return NDCL_SUCCESS;
}

static ndcl_status fill_info(cl_platform_id p, cl_device_id d, int pi, int di,
                             ndcl_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->platform_index = pi;
    info->device_index = di;
    get_pstr(p, CL_PLATFORM_NAME, info->platform_name, sizeof info->platform_name);
    get_pstr(p, CL_PLATFORM_VENDOR, info->platform_vendor, sizeof info->platform_vendor);
    get_pstr(p, CL_PLATFORM_VERSION, info->platform_version, sizeof info->platform_version);
    get_str(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    get_str(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    get_str(d, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    get_str(d, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version,
            sizeof info->opencl_c_version);
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    info->type = (t & CL_DEVICE_TYPE_GPU)           ? NDCL_DEVICE_GPU
                 : (t & CL_DEVICE_TYPE_CPU)         ? NDCL_DEVICE_CPU
                 : (t & CL_DEVICE_TYPE_ACCELERATOR) ? NDCL_DEVICE_ACCELERATOR
                                                    : NDCL_DEVICE_ANY;
    cl_uint u = 0;
    cl_ulong ul = 0;
    size_t sz = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL) == CL_SUCCESS)
        info->compute_units = u;
    u = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL) == CL_SUCCESS)
        info->max_clock_mhz = u;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        info->global_mem_bytes = ul;
    ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ul, &ul, NULL) == CL_SUCCESS)
        info->local_mem_bytes = ul;
    ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ul, &ul, NULL) ==
        CL_SUCCESS)
        info->max_alloc_bytes = ul;
    if (clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof sz, &sz, NULL) ==
        CL_SUCCESS)
        info->max_work_group_size = sz;
    ul = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof ul, &ul, NULL) ==
        CL_SUCCESS)
        info->global_mem_cache_bytes = ul;
    info->fp16 = has_extension(d, "cl_khr_fp16");
    info->fp64 = has_extension(d, "cl_khr_fp64");
    return device_overrides(info);
}

ndcl_context_options ndcl_context_options_default(void)
{
    ndcl_context_options o;
    memset(&o, 0, sizeof o);
    o.platform_index = -1;
    o.device_index = -1;
    o.type = NDCL_DEVICE_ANY;
    return o;
}

ndcl_status ndcl_devices_list(ndcl_device_info *out, size_t cap, size_t *count)
{
    ndcl_clear_error(NULL);
    if (!count) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "count is NULL");
    if (!out && cap > 0)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "out is NULL but cap=%zu", cap);
    *count = 0;
    found_device devs[MAX_DEVICES];
    int n = 0;
    NDCL_TRY(enumerate(devs, &n));
    /* The default pick honours NDCL_DEVICE; a bad variable marks none. */
    ndcl_context_options o = ndcl_context_options_default();
    int pick = -1;
    if (select_device(devs, n, &o, &pick) != NDCL_SUCCESS) pick = -1;
    for (int i = 0; i < n && (size_t)i < cap; i++) {
        NDCL_TRY(
            fill_info(devs[i].platform, devs[i].device, devs[i].p, devs[i].d, &out[i]));
        out[i].is_default = (i == pick);
    }
    *count = (size_t)n;
    ndcl_clear_error(NULL);
    return NDCL_SUCCESS;
}

/* Allocates the struct and the device-side flag common to both ways of
 * creating a context; takes over the retained OpenCL objects. */
static ndcl_status finish_create(cl_platform_id p, cl_device_id d, cl_context c,
                                 cl_command_queue q, int pi, int di, ndcl_context **out)
{
    ndcl_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        clReleaseCommandQueue(q);
        clReleaseContext(c);
        return ndcl_fail(NULL, NDCL_ERR_OUT_OF_MEMORY, "context allocation failed");
    }
    ctx->refs = 1;
    ctx->platform = p;
    ctx->device = d;
    ctx->context = c;
    ctx->queue = q;
    ndcl_status s = fill_info(p, d, pi, di, &ctx->info);
    if (s != NDCL_SUCCESS) {
        ndcl_context_destroy(ctx);
        return s;
    }
    cl_int err;
    cl_int zero = 0;
    ctx->flag = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof zero,
                               &zero, &err);
    if (err != CL_SUCCESS) {
        s = ndcl_fail_cl(NULL, "clCreateBuffer(flag)", err);
        ndcl_context_destroy(ctx);
        return s;
    }
    ndcl_trace("context on %d:%d %s (%s)", pi, di, ctx->info.name, ctx->info.platform_name);
    *out = ctx;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_context_create(const ndcl_context_options *options, ndcl_context **out)
{
    ndcl_clear_error(NULL);
    if (!out) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "out is NULL");
    ndcl_context_options o = options ? *options : ndcl_context_options_default();
    found_device devs[MAX_DEVICES];
    int n = 0, pick = 0;
    NDCL_TRY(enumerate(devs, &n));
    NDCL_TRY(select_device(devs, n, &o, &pick));
    const found_device *f = &devs[pick];

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)f->platform, 0};
    cl_context c = clCreateContext(props, 1, &f->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) return ndcl_fail_cl(NULL, "clCreateContext", err);
    cl_command_queue q = clCreateCommandQueue(c, f->device, 0, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(c);
        return ndcl_fail_cl(NULL, "clCreateCommandQueue", err);
    }
    return finish_create(f->platform, f->device, c, q, f->p, f->d, out);
}

/* The indices of a device, for its info; -1 when it is not enumerable. */
static void indices_of(cl_device_id dev, int *pi, int *di)
{
    found_device devs[MAX_DEVICES];
    int n = 0;
    *pi = *di = -1;
    if (enumerate(devs, &n) != NDCL_SUCCESS) {
        ndcl_clear_error(NULL);
        return;
    }
    for (int i = 0; i < n; i++)
        if (devs[i].device == dev) {
            *pi = devs[i].p;
            *di = devs[i].d;
        }
}

ndcl_status ndcl_context_create_from_cl(cl_context context, cl_device_id device,
                                        cl_command_queue queue, ndcl_context **out)
{
    ndcl_clear_error(NULL);
    if (!out) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "out is NULL");
    if (!context || !device || !queue)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "context=%p device=%p queue=%p: none may be NULL", (void *)context,
                         (void *)device, (void *)queue);
    cl_context qc = NULL;
    cl_device_id qd = NULL;
    cl_command_queue_properties qp = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qc, &qc, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(NULL, "clGetCommandQueueInfo(queue)", err);
    clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qd, &qd, NULL);
    clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
    if (qc != context || qd != device)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "queue does not belong to the given context and device");
    if (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG,
                         "queue is out-of-order; ndcl needs an in-order queue");
    cl_platform_id p = NULL;
    err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof p, &p, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(NULL, "clGetDeviceInfo(device)", err);
    int pi, di;
    indices_of(device, &pi, &di);
    /* Retain only after every check, so a failure leaves counts unchanged.
     * The device too: a caller's sub-device lives by its count. */
    clRetainContext(context);
    clRetainCommandQueue(queue);
    cl_int rerr = clRetainDevice(device);
    ndcl_status s = finish_create(p, device, context, queue, pi, di, out);
    if (s == NDCL_SUCCESS)
        (*out)->own_device_ref = rerr == CL_SUCCESS;
    else if (rerr == CL_SUCCESS)
        clReleaseDevice(device);
    return s;
}

void ndcl_context_retain(ndcl_context *ctx)
{
    ctx->refs++;
}

void ndcl_context_release(ndcl_context *ctx)
{
    if (!ctx || --ctx->refs > 0) return;
    if (ctx->queue) clFinish(ctx->queue);
    for (int i = 0; i < ctx->n_kernels; i++)
        clReleaseKernel(ctx->kernels[i].kernel);
    if (ctx->program) clReleaseProgram(ctx->program);
    if (ctx->flag) clReleaseMemObject(ctx->flag);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->context) clReleaseContext(ctx->context);
    if (ctx->own_device_ref) clReleaseDevice(ctx->device);
    free(ctx);
}

void ndcl_context_destroy(ndcl_context *ctx)
{
    if (!ctx) return;
    /* Drained here even when tensors or layers keep the context alive, so
     * that the caller may release what it shares with the queue. */
    if (ctx->queue) clFinish(ctx->queue);
    ndcl_context_release(ctx);
}

ndcl_status ndcl_context_device(const ndcl_context *ctx, ndcl_device_info *out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error((ndcl_context *)ctx);
    if (!out) return ndcl_fail((ndcl_context *)ctx, NDCL_ERR_INVALID_ARG, "out is NULL");
    *out = ctx->info;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_finish(ndcl_context *ctx)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    cl_int flag = 0;
    cl_int err = clEnqueueReadBuffer(ctx->queue, ctx->flag, CL_TRUE, 0, sizeof flag, &flag,
                                     0, NULL, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueReadBuffer(flag)", err);
    if (flag != 0) {
        cl_int zero = 0;
        err = clEnqueueWriteBuffer(ctx->queue, ctx->flag, CL_TRUE, 0, sizeof zero, &zero, 0,
                                   NULL, NULL);
        if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clEnqueueWriteBuffer(flag)", err);
        return ndcl_fail(ctx, NDCL_ERR_NUMERICAL,
                         "a training forward met a non-finite statistic; the running "
                         "statistics kept their previous values");
    }
    return NDCL_SUCCESS;
}

cl_context ndcl_context_cl_context(const ndcl_context *ctx)
{
    return ctx ? ctx->context : NULL;
}
cl_device_id ndcl_context_cl_device(const ndcl_context *ctx)
{
    return ctx ? ctx->device : NULL;
}
cl_command_queue ndcl_context_cl_queue(const ndcl_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}
