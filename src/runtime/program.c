/* program.c - the embedded kernel sources become one cl_program per
 * context, cached on disk as a device binary; kernels are created once and
 * launched through one checked helper. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define BUILD_OPTIONS "-cl-std=CL1.2"
#define CACHE_MAGIC "NDCLBIN1"

uint64_t ndcl_hash(uint64_t h, const void *data, size_t size)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ cache path */

static bool cache_enabled(void)
{
    const char *v = getenv("NDCL_CACHE");
    return !(v && strcmp(v, "0") == 0);
}

/* mkdir -p; failures are left for the open that follows to notice. */
static void make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    mkdir(path, 0755);
}

static bool cache_dir(char *buf, size_t size)
{
    const char *d = getenv("NDCL_CACHE_DIR");
    int n;
    if (d && *d)
        n = snprintf(buf, size, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d)
        n = snprintf(buf, size, "%s/ndcl", d);
    else if ((d = getenv("HOME")) && *d)
        n = snprintf(buf, size, "%s/.cache/ndcl", d);
    else
        return false;
    return n > 0 && (size_t)n < size;
}

bool ndcl_cache_dir(char *buf, size_t size)
{
    return cache_enabled() && cache_dir(buf, size);
}

void ndcl_make_dirs(const char *path)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n > 0 && (size_t)n < sizeof buf) make_dirs(buf);
}

/* The key covers every input that changes the binary. */
static uint64_t cache_key(const ndcl_context *ctx, const char *src, size_t len,
                          const char *options)
{
    const ndcl_device_info *i = &ctx->info;
    const char *parts[] = {i->platform_name, i->platform_version, i->name,
                           i->driver_version, options};
    uint64_t h = NDCL_FNV_OFFSET;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        h = ndcl_hash(h, parts[k], strlen(parts[k]) + 1);
    return ndcl_hash(h, src, len);
}

/* Reads a cache entry; any mismatch (magic, key, size, checksum) means the
 * entry is not trusted. */
static unsigned char *cache_read(const char *path, uint64_t key, size_t *size)
{
    /* O_NONBLOCK: a FIFO in the cache directory must not block the open;
     * anything but a regular file is ignored (and later replaced). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ndcl_trace("cache entry %s is not a regular file: ignored", path);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return NULL;
    }
    char magic[8];
    uint64_t hdr[3];
    unsigned char *data = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CACHE_MAGIC, 8) != 0) goto bad;
    if (fread(hdr, sizeof hdr[0], 3, f) != 3 || hdr[0] != key) goto bad;
    if (hdr[1] == 0 || hdr[1] > ((uint64_t)1 << 31)) goto bad;
    /* The header's length against the file's before anything is allocated. */
    if ((uint64_t)st.st_size != 8 + sizeof hdr + hdr[1]) goto bad;
    data = malloc(hdr[1]);
    if (!data || fread(data, 1, hdr[1], f) != hdr[1]) goto bad;
    if (fgetc(f) != EOF) goto bad; /* trailing garbage */
    if (ndcl_hash(NDCL_FNV_OFFSET, data, hdr[1]) != hdr[2]) goto bad;
    fclose(f);
    *size = hdr[1];
    return data;
bad:
    free(data);
    fclose(f);
    ndcl_trace("cache entry %s is corrupt or stale: rebuilding", path);
    return NULL;
}

/* Writes the entry (magic, key, size, hash, binary) through the atomic
 * writer (files.c), so readers never see a partial entry and concurrent
 * writers end with one whole. A failure only costs a rebuild later. */
static void cache_write(const char *path, uint64_t key, const unsigned char *data,
                        size_t size)
{
    uint64_t hdr[3] = {key, size, ndcl_hash(NDCL_FNV_OFFSET, data, size)};
    const void *part[3] = {CACHE_MAGIC, hdr, data};
    const size_t len[3] = {8, sizeof hdr, size};
    bool no_temp;
    int err = ndcl_file_replace(path, part, len, 3, false, &no_temp);
    if (err)
        ndcl_trace("cache: write of %s failed (%s); continuing without", path,
                   strerror(err));
}

/* ------------------------------------------------------------ building */

static ndcl_status build_log_fail(ndcl_context *ctx, cl_program prog, cl_int err)
{
    size_t size = 0;
    char log[NDCL_ERRMSG_SIZE - 128];
    log[0] = '\0';
    if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              &size) != CL_SUCCESS ||
        size >= sizeof log) {
        /* Too long to hold whole: keep its beginning, where errors start. */
        char *big = malloc(size + 1);
        if (big && clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, size, big,
                                         NULL) == CL_SUCCESS) {
            memcpy(log, big, sizeof log - 1);
        }
        free(big);
    }
    log[sizeof log - 1] = '\0';
    return ndcl_fail(ctx,
                     err == CL_BUILD_PROGRAM_FAILURE ? NDCL_ERR_BUILD : NDCL_ERR_OPENCL,
                     "clBuildProgram failed: %s (%d); build log:\n%s",
                     ndcl_cl_error_name(err), (int)err, log);
}

static cl_program from_binary(ndcl_context *ctx, const unsigned char *bin, size_t size)
{
    cl_int err, bin_status;
    cl_program p = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size, &bin,
                                             &bin_status, &err);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return NULL;
    }
    if (clBuildProgram(p, 1, &ctx->device, BUILD_OPTIONS, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static unsigned char *program_binary(ndcl_context *ctx, cl_program p, size_t *size)
{
    cl_uint ndev = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL) !=
            CL_SUCCESS ||
        ndev != 1)
        return NULL;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof *size, size, NULL) !=
            CL_SUCCESS ||
        *size == 0)
        return NULL;
    unsigned char *bin = malloc(*size);
    if (bin &&
        clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        bin = NULL;
    }
    (void)ctx;
    return bin;
}

ndcl_status ndcl_program_build_source(ndcl_context *ctx, const char *source, size_t length,
                                      const char *options, cl_program *out,
                                      ndcl_build_info *info)
{
    double t0 = now_ms();
    char opts[512];
    snprintf(opts, sizeof opts, "%s%s%s", BUILD_OPTIONS, options ? " " : "",
             options ? options : "");
    ndcl_build_info bi;
    memset(&bi, 0, sizeof bi);

    char dir[400];
    uint64_t key = cache_key(ctx, source, length, opts);
    bool use_cache = cache_enabled() && cache_dir(dir, sizeof dir);
    if (use_cache) {
        make_dirs(dir);
        snprintf(bi.cache_path, sizeof bi.cache_path, "%s/%016llx.bin", dir,
                 (unsigned long long)key);
        size_t size = 0;
        unsigned char *bin = cache_read(bi.cache_path, key, &size);
        cl_program p = bin ? from_binary(ctx, bin, size) : NULL;
        free(bin);
        if (p) {
            bi.built = bi.from_cache = 1;
            bi.build_ms = now_ms() - t0;
            ndcl_trace("program loaded from cache %s in %.1f ms", bi.cache_path,
                       bi.build_ms);
            *out = p;
            if (info) *info = bi;
            return NDCL_SUCCESS;
        }
    }

    cl_int err;
    cl_program p = clCreateProgramWithSource(ctx->context, 1, &source, &length, &err);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clCreateProgramWithSource", err);
    err = clBuildProgram(p, 1, &ctx->device, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        ndcl_status s = build_log_fail(ctx, p, err);
        clReleaseProgram(p);
        return s;
    }
    if (use_cache) {
        size_t size = 0;
        unsigned char *bin = program_binary(ctx, p, &size);
        if (bin) cache_write(bi.cache_path, key, bin, size);
        free(bin);
    }
    bi.built = 1;
    bi.build_ms = now_ms() - t0;
    ndcl_trace("program built from source in %.1f ms", bi.build_ms);
    *out = p;
    if (info) *info = bi;
    return NDCL_SUCCESS;
}

/* The library's source: every embedded file in order, or, when the
 * developer switch NDCL_KERNEL_DIR is set, the same files read from there. */
static char *library_source(ndcl_context *ctx, size_t *len)
{
    const char *dir = getenv("NDCL_KERNEL_DIR");
    size_t cap = 1;
    for (size_t i = 0; i < ndcl_embedded_source_count; i++)
        cap += ndcl_embedded_sources[i].size + 2;
    if (dir) cap += (size_t)1 << 22; /* room for edited sources */
    char *src = malloc(cap);
    if (!src) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < ndcl_embedded_source_count; i++) {
        const ndcl_embedded_source *e = &ndcl_embedded_sources[i];
        if (dir) {
            char path[600];
            snprintf(path, sizeof path, "%s/%s", dir, e->name);
            FILE *f = fopen(path, "rb");
            if (f) {
                n += fread(src + n, 1, cap - n - 2, f);
                fclose(f);
                src[n++] = '\n';
                continue;
            }
            ndcl_trace("NDCL_KERNEL_DIR: %s missing, using the embedded copy", path);
        }
        if (n + e->size + 2 > cap) break;
        memcpy(src + n, e->data, e->size);
        n += e->size;
        src[n++] = '\n';
    }
    src[n] = '\0';
    *len = n;
    (void)ctx;
    return src;
}

ndcl_status ndcl_program_ensure(ndcl_context *ctx)
{
    if (ctx->program) return NDCL_SUCCESS;
    size_t len = 0;
    char *src = library_source(ctx, &len);
    if (!src) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "kernel source allocation");
    ndcl_status s =
        ndcl_program_build_source(ctx, src, len, NULL, &ctx->program, &ctx->build);
    free(src);
    return s;
}

ndcl_status ndcl_context_build(ndcl_context *ctx, ndcl_build_info *out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_TRY(ndcl_program_ensure(ctx));
    if (out) *out = ctx->build;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_kernel_get(ndcl_context *ctx, const char *name, cl_kernel *out)
{
    for (int i = 0; i < ctx->n_kernels; i++)
        if (strcmp(ctx->kernels[i].name, name) == 0) {
            *out = ctx->kernels[i].kernel;
            return NDCL_SUCCESS;
        }
    NDCL_TRY(ndcl_program_ensure(ctx));
    if (ctx->n_kernels == NDCL_MAX_KERNELS)
        return ndcl_fail(ctx, NDCL_ERR_OPENCL, "too many kernels (raise NDCL_MAX_KERNELS)");
    cl_int err;
    cl_kernel k = clCreateKernel(ctx->program, name, &err);
    if (err != CL_SUCCESS) {
        char call[128];
        snprintf(call, sizeof call, "clCreateKernel(%s)", name);
        return ndcl_fail_cl(ctx, call, err);
    }
    /* name points into the caller's string literal, which outlives ctx. */
    ctx->kernels[ctx->n_kernels++] = (ndcl_kernel_slot){name, k};
    *out = k;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_kernel_wg_size(ndcl_context *ctx, const char *name, size_t want,
                                size_t bytes_per_item, size_t *out)
{
    cl_kernel k;
    NDCL_TRY(ndcl_kernel_get(ctx, name, &k));
    size_t max = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof max, &max, NULL);
    if (err != CL_SUCCESS) return ndcl_fail_cl(ctx, "clGetKernelWorkGroupInfo", err);
    if (ctx->info.max_work_group_size && ctx->info.max_work_group_size < max)
        max = ctx->info.max_work_group_size;
    size_t wg = 1;
    while (
        wg * 2 <= want && wg * 2 <= max &&
        (bytes_per_item == 0 || wg * 2 * bytes_per_item <= ctx->info.local_mem_bytes / 2))
        wg *= 2;
    *out = wg;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_launch(ndcl_context *ctx, const char *name, cl_uint dims,
                        const size_t *global, const size_t *local, const ndcl_arg *args,
                        int nargs)
{
    cl_kernel k;
    NDCL_TRY(ndcl_kernel_get(ctx, name, &k));
    for (int i = 0; i < nargs; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return ndcl_fail(ctx, NDCL_ERR_OPENCL, "clSetKernelArg(%s, %d) failed: %s (%d)",
                             name, i, ndcl_cl_error_name(err), (int)err);
    }
    size_t g[3];
    for (cl_uint d = 0; d < dims; d++) {
        g[d] = global[d] ? global[d] : 1;
        if (local) g[d] = (g[d] + local[d] - 1) / local[d] * local[d];
    }
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, g, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char call[128];
        snprintf(call, sizeof call, "clEnqueueNDRangeKernel(%s)", name);
        return ndcl_fail_cl(ctx, call, err);
    }
    return NDCL_SUCCESS;
}
