/* ndcl.h - the public API of libndcl: network deconvolution on any OpenCL
 * device. C99, no OpenCL types (interop lives in ndcl_cl.h). The README's
 * "Arithmetic" section states in full what the layers compute.
 *
 * Conventions, true of every function below unless its comment says else:
 *  - fallible calls return ndcl_status; outputs are the last parameters;
 *  - on failure nothing an argument points to is changed, and the detail
 *    (failing call and its OpenCL code, bad argument and its value, build
 *    log) is kept in ndcl_context_last_error(ctx);
 *  - ordering: every call enqueues its work in order on the context's one
 *    in-order queue, after everything enqueued there before it (the
 *    caller's own commands on a shared queue included), and returns
 *    without waiting for it;
 *  - blocking: only calls that move data between the device and host
 *    memory wait, and since the queue is in order they wait for everything
 *    enqueued before them: ndcl_tensor_write, ndcl_tensor_read,
 *    ndcl_layer_set_param, ndcl_layer_get_param, ndcl_layer_save and
 *    ndcl_layer_save_memory, ndcl_layer_load and ndcl_layer_load_memory,
 *    ndcl_layer_numerical_status, ndcl_finish, and ndcl_context_destroy;
 *    and ndcl_layer_forward and ndcl_layer_backward of a layer attached to
 *    a group (ndcl_layer_set_group), whose statistics go through the host
 *    to the allreduce. Besides, the first call on a context that needs a
 *    kernel compiles the context's program (or loads it from the cache) on
 *    the host; ndcl_context_build does it up front;
 *  - lifetime: every tensor and layer holds a reference to its context, as
 *    OpenCL objects hold their cl_context, so contexts, tensors and layers
 *    may be destroyed in any order (see ndcl_context_destroy);
 *  - threads: one context, with its tensors and layers, is used by one
 *    thread at a time (creating or destroying a tensor or layer is a call
 *    on its context: it changes the context's reference count, which is
 *    not atomic); separate contexts are independent and may be used from
 *    different threads at once (ndcl_cl.h says what other threads may do
 *    on a queue shared with ndcl);
 *  - destroy functions accept NULL.
 */
#ifndef NDCL_H
#define NDCL_H

#include <stddef.h>
#include <stdint.h>

/* The version of this header. Written here rather than generated, so that
 * the header compiles from the source tree (-I include) as installed; the
 * build checks it against the project's version. */
#define NDCL_VERSION_MAJOR 0
#define NDCL_VERSION_MINOR 1
#define NDCL_VERSION_PATCH 0
#define NDCL_VERSION_STRING "0.1.0"
#define NDCL_VERSION_NUMBER                                                                \
    (NDCL_VERSION_MAJOR * 10000 + NDCL_VERSION_MINOR * 100 + NDCL_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NDCL_BUILDING) && defined(__GNUC__)
#define NDCL_API __attribute__((visibility("default")))
#else
#define NDCL_API
#endif

/* ---------------------------------------------------------------- status */

/* Status codes. 0 is success; the library's own errors are negative and
 * below -1000 so they never collide with OpenCL's codes, which are carried
 * in the last-error message instead. */
typedef enum ndcl_status {
    NDCL_SUCCESS = 0,
    NDCL_ERR_INVALID_ARG = -1001,   /* an argument is NULL, out of range, or
                                       does not fit the others */
    NDCL_ERR_NO_DEVICE = -1002,     /* no OpenCL platform or no device matches */
    NDCL_ERR_OUT_OF_MEMORY = -1003, /* host or device allocation failed */
    NDCL_ERR_BUILD = -1004,         /* a kernel failed to compile (log in the
                                       last-error message) */
    NDCL_ERR_OPENCL = -1005,        /* any other OpenCL call failed */
    NDCL_ERR_BLAS = -1006,          /* the BLAS engine refused a product */
    NDCL_ERR_NUMERICAL = -1007,     /* NaN or Inf in statistics */
    NDCL_ERR_IO = -1008,            /* a file could not be read or written */
    NDCL_ERR_FORMAT = -1009,        /* a file's content is malformed */
    NDCL_ERR_UNSUPPORTED = -1010,   /* valid request, not implemented */
    NDCL_ERR_STATE = -1011,         /* call not allowed in the object's state
                                       (e.g. backward before a forward) */
    NDCL_ERR_GROUP = -1012          /* another rank of the layer's group failed
                                       the same call, or the group's allreduce
                                       failed (see ndcl_layer_set_group) */
} ndcl_status;

/* A static English description of a status ("invalid argument", ...).
 * Never NULL; unknown values give "unknown status". */
NDCL_API const char *ndcl_status_string(ndcl_status status);

/* Library version as "MAJOR.MINOR.PATCH" and as a number
 * (MAJOR*10000 + MINOR*100 + PATCH), to compare with NDCL_VERSION_NUMBER. */
NDCL_API const char *ndcl_version_string(void);
NDCL_API unsigned ndcl_version_number(void);

/* --------------------------------------------------------------- devices */

typedef struct ndcl_context ndcl_context;

typedef enum ndcl_device_type {
    NDCL_DEVICE_ANY = 0,
    NDCL_DEVICE_GPU = 1,
    NDCL_DEVICE_CPU = 2,
    NDCL_DEVICE_ACCELERATOR = 3
} ndcl_device_type;

/* What ndcl needs to know about one OpenCL device. Strings are truncated
 * to fit and always NUL-terminated. */
typedef struct ndcl_device_info {
    int platform_index;
    int device_index;
    char platform_name[128];
    char platform_vendor[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    char driver_version[128];
    char opencl_c_version[128];
    ndcl_device_type type;
    unsigned compute_units;
    unsigned max_clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    int fp16;       /* cl_khr_fp16 */
    int fp64;       /* cl_khr_fp64 */
    int is_default; /* the device ndcl_context_create(NULL) would choose */
    /* CL_DEVICE_GLOBAL_MEM_CACHE_SIZE (a CPU runtime reports the host's
     * last-level cache). NDCL_DEVICE_CACHE_BYTES and NDCL_DEVICE_COMPUTE_UNITS
     * (a count with an optional K, M or G) replace this and compute_units,
     * which ndcl reads to size its work, so that one machine can size work
     * as another would; a malformed value fails with NDCL_ERR_INVALID_ARG. */
    uint64_t global_mem_cache_bytes;
} ndcl_device_info;

/* Lists every device of every platform into out[0 .. cap-1] and stores the
 * total number in *count (which may exceed cap; out may be NULL when cap is
 * 0). is_default marks the device the default rule picks (NDCL_DEVICE
 * honoured). No platform at all gives NDCL_ERR_NO_DEVICE with *count = 0.
 * The message is in ndcl_context_last_error(NULL). */
NDCL_API ndcl_status ndcl_devices_list(ndcl_device_info *out, size_t cap, size_t *count);

/* How to choose a device. Fields left at their defaults do not constrain.
 * Precedence: platform/device indices, then type and name, then spec, then
 * the NDCL_DEVICE environment variable, then the first GPU, then the first
 * device. */
typedef struct ndcl_context_options {
    int platform_index;    /* -1: any */
    int device_index;      /* -1: any (index within the platform) */
    ndcl_device_type type; /* NDCL_DEVICE_ANY: any */
    const char *name;      /* case-insensitive substring, or NULL */
    const char *spec;      /* "P:D" or a name substring, as NDCL_DEVICE;
                              NULL: none */
    int ignore_env;        /* nonzero: do not read NDCL_DEVICE */
} ndcl_context_options;

/* Options that constrain nothing. */
NDCL_API ndcl_context_options ndcl_context_options_default(void);

/* Creates a context (OpenCL context and in-order queue) on the chosen
 * device. options may be NULL (defaults). Fails with NDCL_ERR_NO_DEVICE
 * when there is no platform or nothing matches, NDCL_ERR_INVALID_ARG when a
 * spec is malformed; the message is in ndcl_context_last_error(NULL). */
NDCL_API ndcl_status ndcl_context_create(const ndcl_context_options *options,
                                         ndcl_context **out);

/* Waits for everything enqueued on the context's queue (clFinish: the
 * caller's own commands on a shared queue too), then drops the caller's
 * reference to the context. Each tensor and layer holds one more, so the
 * context is released (kernels, program, its queue and OpenCL context, or
 * the caller's, which are released again) when the last of them is
 * destroyed, in whatever order that happens. Until then, calls on those
 * tensors and layers keep working, on the context they were made on, and
 * ndcl_tensor_context / ndcl_layer_context still return it for calls that
 * take a context (ndcl_finish, creating more objects); the pointer the
 * caller held must not be destroyed a second time. Call it once per
 * created context, and before the process exits (not from an atexit
 * handler): a CPU runtime such as PoCL may still be compiling an enqueued
 * kernel in a worker thread, and exit() tears down its compiler's state
 * under it. */
NDCL_API void ndcl_context_destroy(ndcl_context *ctx);

/* The detail of the failure of the last call on ctx (a call on one of its
 * tensors or layers, or one taking ctx), or "" when that call succeeded:
 * every call that returns ndcl_status and reaches the context clears it
 * when it starts. With ctx NULL: the calling thread's last failure in a
 * call without a context (create, device list, file helpers, a NULL
 * handle), cleared likewise by those calls. The string is valid until the
 * next call on ctx. */
NDCL_API const char *ndcl_context_last_error(const ndcl_context *ctx);

/* The context's device. */
NDCL_API ndcl_status ndcl_context_device(const ndcl_context *ctx, ndcl_device_info *out);

/* Waits until everything enqueued on the context's queue has finished,
 * then reports the context's numerical flag: NDCL_ERR_NUMERICAL when any
 * training forward of any of its layers (or ndcl_isqrt) met a non-finite
 * statistic since the last ndcl_finish; the flag is then cleared. Each
 * layer also keeps its own flag of its last training step:
 * ndcl_layer_numerical_status reads it without touching this one. */
NDCL_API ndcl_status ndcl_finish(ndcl_context *ctx);

/* How the context's kernels were obtained. */
typedef struct ndcl_build_info {
    int built;            /* 1 once the kernels are ready */
    int from_cache;       /* 1 if the on-disk binary cache served them */
    double build_ms;      /* wall time to obtain the program */
    char cache_path[512]; /* cache file used, or "" when caching is off */
} ndcl_build_info;

/* Builds (or loads from the cache) every ndcl kernel now instead of on
 * first use, and reports how. Build errors give NDCL_ERR_BUILD with the
 * build log in the last-error message. */
NDCL_API ndcl_status ndcl_context_build(ndcl_context *ctx, ndcl_build_info *out);

/* The engine of the context's matrix products (GEMM, batched GEMM, SYRK),
 * as a static string, never NULL ("" for a NULL ctx):
 *  "openblas"  the host's OpenBLAS through CBLAS on mapped buffers, as
 *              native kernels in the order of the context's queue (calls
 *              return without waiting, as with CLBlast): on a CPU device
 *              whose memory is the host's (CL_DEVICE_HOST_UNIFIED_MEMORY,
 *              e.g. PoCL) and that runs native kernels, in builds with the
 *              host_blas meson feature (found by default);
 *  "clblast"   CLBlast's OpenCL kernels: every other device.
 * The environment variable NDCL_BLAS names one of them instead
 * (NDCL_CPU_BLAS=0, its older name, stands for NDCL_BLAS=clblast). The
 * engine is chosen when the context first needs it (its first product or
 * this call; the variables are read then) and kept for its lifetime.
 * Returns "" for NULL, and when NDCL_BLAS names no engine of this build
 * or one that does not serve the device: the context's products then fail
 * with NDCL_ERR_INVALID_ARG or NDCL_ERR_UNSUPPORTED and a message naming
 * the variable. */
NDCL_API const char *ndcl_context_blas_engine(const ndcl_context *ctx);

/* Algorithms of the plain convolution every conv2d layer ends with (its
 * forward, backward-data and backward-weights passes):
 *  NDCL_CONV_AUTO      the default: per device and geometry, the fastest
 *                      algorithm that fits and keeps the accuracy contract
 *                      below, measured once (the passes chosen apart: dx
 *                      and dW may come from different algorithms) and
 *                      remembered in the find-db file conv-find.txt of the
 *                      kernel cache directory (NDCL_CACHE_DIR; a corrupt
 *                      or foreign entry is measured again, never trusted;
 *                      NDCL_CACHE=0 measures in every process; the
 *                      measurement runs on a queue of its own, so it never
 *                      waits for the context's queue). Where only im2col +
 *                      GEMM fits nothing is measured.
 *  NDCL_CONV_GEMM      "gemm": im2col + GEMM by the context's BLAS engine,
 *                      a chunk of images at a time; every device, every
 *                      geometry.
 *  NDCL_CONV_DNNL      "dnnl": oneDNN's direct convolution on blocked
 *                      tensors (reordered from and to NCHW at each call),
 *                      run in the queue's order as host work on CPU
 *                      devices whose memory is the host's (PoCL), in
 *                      builds with the dnnl meson feature.
 *  NDCL_CONV_WINOGRAD  "winograd": oneDNN's Winograd F(4x4, 3x3), where
 *                      oneDNN has it (3x3, stride 1, no dilation, one
 *                      group, channels a multiple of 16, AVX-512).
 * The environment variable NDCL_CONV_ALGO (gemm, dnnl, winograd, auto)
 * forces one for every layer; the layer option NDCL_LAYER_CONV_ALGO
 * forces one per layer and wins over the variable. A forced algorithm that
 * is not built, does not serve the device or does not fit the geometry
 * fails the pass with NDCL_ERR_UNSUPPORTED naming both.
 * Accuracy contract: every algorithm computes the same function in float
 * with its own order of sums; against the double-precision reference the
 * largest error of an output, relative to the largest output, stays below
 * 1e-4 for gemm and dnnl and below 1e-3 for winograd (measured at the
 * cifar-resnet18 shapes: README, Performance); auto takes an algorithm only
 * when its outputs agree with gemm's within that bound on its measurement
 * data. */
typedef enum ndcl_conv_algorithm {
    NDCL_CONV_AUTO = 0,
    NDCL_CONV_GEMM = 1,
    NDCL_CONV_DNNL = 2,
    NDCL_CONV_WINOGRAD = 3
} ndcl_conv_algorithm;

/* The name of an algorithm ("auto", "gemm", "dnnl", "winograd"), or NULL
 * for a value that is none. */
NDCL_API const char *ndcl_conv_algorithm_name(ndcl_conv_algorithm algorithm);

/* *available <- 1 when the algorithm is built and serves ctx's device
 * (whether it fits a geometry is decided per geometry), else 0; auto and
 * gemm are always available. An unknown value is NDCL_ERR_INVALID_ARG. */
NDCL_API ndcl_status ndcl_conv_algorithm_available(ndcl_context *ctx,
                                                   ndcl_conv_algorithm algorithm,
                                                   int *available);

/* --------------------------------------------------------------- tensors */

/* A float32 device tensor of up to NDCL_MAX_DIMS dimensions, C order. */
typedef struct ndcl_tensor ndcl_tensor;
#define NDCL_MAX_DIMS 4

/* Allocates an uninitialised tensor. Every dimension must be >= 1 and the
 * element count must not overflow. The tensor holds a reference to ctx. */
NDCL_API ndcl_status ndcl_tensor_create(ndcl_context *ctx, int ndim, const size_t *shape,
                                        ndcl_tensor **out);

/* Releases the tensor (its buffer, or its reference to a wrapped one) and
 * its reference to the context, releasing the context too when this was
 * the last reference (see ndcl_context_destroy). */
NDCL_API void ndcl_tensor_destroy(ndcl_tensor *t);

/* Copies count floats from host memory; count must equal the element
 * count. Blocking. */
NDCL_API ndcl_status ndcl_tensor_write(ndcl_tensor *t, const float *src, size_t count);

/* Copies the tensor to host memory; count must equal the element count.
 * Blocking (waits for the work that produces the tensor). */
NDCL_API ndcl_status ndcl_tensor_read(const ndcl_tensor *t, float *dst, size_t count);

/* Shape queries; they never fail (0 for a NULL tensor or a bad index). */
NDCL_API int ndcl_tensor_ndim(const ndcl_tensor *t);
NDCL_API size_t ndcl_tensor_dim(const ndcl_tensor *t, int i);
NDCL_API size_t ndcl_tensor_count(const ndcl_tensor *t);
NDCL_API ndcl_context *ndcl_tensor_context(const ndcl_tensor *t);

/* Changes the shape without moving data; the element count must stay the
 * same. */
NDCL_API ndcl_status ndcl_tensor_reshape(ndcl_tensor *t, int ndim, const size_t *shape);

/* --------------------------------------------------------------- matrices */

/* C = alpha * op(A) * op(B) + beta * C for 2-D tensors in row-major order
 * (op = transpose when the flag is nonzero), by the context's BLAS engine
 * (ndcl_context_blas_engine). Shapes are checked. */
NDCL_API ndcl_status ndcl_gemm(ndcl_context *ctx, int trans_a, int trans_b, float alpha,
                               const ndcl_tensor *a, const ndcl_tensor *b, float beta,
                               ndcl_tensor *c);

/* ------------------------------------------------------------ primitives
 *
 * Output tensors are passed as ndcl_tensor **out: when *out is NULL a new
 * tensor is created (the caller destroys it); otherwise *out must already
 * have the result's shape and is overwritten. */

/* Patch sampling of a deconvolved convolution: im2col of x with stride
 * S = stride (the layer's sampling_stride times its convolution stride),
 * the layer's padding and dilation: one row per sampled position (n, oy,
 * ox), column c*kh*kw + i*kw + j = x[n, c, oy*S - padding + i*dilation,
 * ox*S - padding + j*dilation] (0 outside); a 1x1 kernel takes every S²-th
 * pixel in (n, h, w) order instead (row = its C values), padding ignored.
 * For groups = 1 each row of C*kh*kw values is then split into C/B rows of
 * nf = kh*kw*B (B the clamped block) by interleaving: row r of a position
 * takes its columns f*(C/B) + r, f = 0 .. nf-1, as the original's
 * view(-1, nf, C/B).transpose(1, 2) does. */
typedef struct ndcl_patch_desc {
    int kernel_h, kernel_w;
    int padding, dilation;
    int stride; /* the sampling stride S (sampling_stride * conv stride) */
    int groups;
    int block; /* requested block; clamped as the layer clamps it */
} ndcl_patch_desc;

/* x [N, C, H, W] -> the sampled patch matrix [rows, cols]: for groups = 1,
 * rows = positions * C/B and cols = kh*kw*B (blocks interleaved); for
 * groups > 1, rows = positions and cols = C*kh*kw. */
NDCL_API ndcl_status ndcl_patches(ndcl_context *ctx, const ndcl_tensor *x,
                                  const ndcl_patch_desc *desc, ndcl_tensor **out);

/* X [M, groups*n] -> mean [groups*n] and cov [n, n] (groups = 1) or
 * [groups, n, n]: cov_g = Xc_gᵀ·Xc_g / M + eps·I, where Xc = X - mean when
 * centered is nonzero and X itself (mean still returned) when it is zero.
 * mean may be NULL when not wanted. X is not modified. */
NDCL_API ndcl_status ndcl_covariance(ndcl_context *ctx, const ndcl_tensor *X, int groups,
                                     float eps, int centered, ndcl_tensor **mean,
                                     ndcl_tensor **cov);

/* A [n, n] or [G, n, n] symmetric positive definite -> D ≈ A^-1/2 by
 * n_iter coupled Newton-Schulz iterations with Frobenius-norm scaling. */
NDCL_API ndcl_status ndcl_isqrt(ndcl_context *ctx, const ndcl_tensor *A, int n_iter,
                                ndcl_tensor **D);

/* The whitening of any data matrix X [M, n] (rows are samples): its mean
 * [n] and D = (Xcᵀ·Xc / M + eps·I)^-1/2 [n, n], so that (X - mean)·D has
 * (approximately) identity covariance. */
NDCL_API ndcl_status ndcl_whiten(ndcl_context *ctx, const ndcl_tensor *X, float eps,
                                 int n_iter, ndcl_tensor **mean, ndcl_tensor **D);

/* The adjoint of ndcl_whiten: given the gradients of a loss with respect
 * to its outputs, dmean [n] (NULL: zero) and dD [n, n], *dX [M, n]
 * receives the gradient with respect to X, through the mean, the
 * covariance and every Newton-Schulz iteration, as automatic
 * differentiation of ndcl_whiten's arithmetic computes it: the chain rule
 * applied to each of its steps in reverse, with nothing assumed symmetric
 * (the iterates are not exactly symmetric in float32, so neither are
 * their gradients). The forward is recomputed from X, eps and
 * n_iter, which must be those of the ndcl_whiten call. *dX follows the
 * output convention and must not be X, dmean or dD. */
NDCL_API ndcl_status ndcl_whiten_backward(ndcl_context *ctx, const ndcl_tensor *X,
                                          float eps, int n_iter, const ndcl_tensor *dmean,
                                          const ndcl_tensor *dD, ndcl_tensor **dX);

/* ---------------------------------------------------------------- layers
 *
 * What a forward computes, in short (the README's "Arithmetic" section has
 * every step). B is the effective block (ndcl_layer_block): the block
 * given, or C when it exceeds the C input channels (features), or
 * gcd(block, C) when it does not divide C; for a grouped conv2d, C/groups.
 * Whitening a data matrix X [M, n] means its column mean mu [n] and
 * D = (Xcᵀ·Xc / M + eps·I)^-1/2 [n, n], Xc = X - mu, by n_iter
 * Newton-Schulz iterations (ndcl_whiten).
 *  conv2d: training (not frozen) whitens the sampled patch matrix of x
 *    (ndcl_patches; n = nf = kh*kw*B, or each group's nf columns when
 *    groups > 1); evaluation and frozen steps take mu = running_mean,
 *    D = running_deconv. The weight, viewed as rows of nf (the patch
 *    matrix's interleaving), becomes W'_row = W_row·D and the bias
 *    b'[o] = b[o] - sum of W'_row·mu over output o's rows (b = 0 without a
 *    bias); y = the plain convolution of x with W', b'. A step is frozen
 *    when freeze is set and the counter exceeds freeze_iter; each training
 *    step adds 1 to the counter, modulo 10*freeze_iter.
 *  linear: x viewed as rows of B features is whitened (n = B); W' and b'
 *    as for conv2d with the weight viewed as rows of B; y = x·W'ᵀ + b'.
 *  channel: the first c = (C/B)*B channels, as B rows, are whitened with
 *    an uncentred covariance (every sampling_stride²-th value) and
 *    y = D·(x - mu); the C - c leftover channels are normalised by one
 *    mean and unbiased variance: y = (x - mean2) / sqrt(var + eps).
 *  Training steps update running = (1 - momentum)·running + momentum·stat
 *  for each statistic (a channel layer's first step copies them first). */

typedef struct ndcl_layer ndcl_layer;

typedef enum ndcl_layer_kind {
    NDCL_LAYER_CONV2D = 1, /* FastDeconv */
    NDCL_LAYER_LINEAR = 2, /* Delinear */
    NDCL_LAYER_CHANNEL = 3 /* ChannelDeconv */
} ndcl_layer_kind;

typedef enum ndcl_mode {
    NDCL_TRAIN = 0, /* batch statistics, running updates */
    NDCL_EVAL = 1   /* running statistics */
} ndcl_mode;

/* A deconvolved 2-D convolution. Defaults (ndcl_conv2d_desc_default):
 * stride 1, padding 0, dilation 1, groups 1, bias 1, block 64,
 * sampling_stride 3, eps 1e-5, n_iter 5, momentum 0.1, freeze 0,
 * freeze_iter 100. */
typedef struct ndcl_conv2d_desc {
    int in_channels, out_channels;
    int kernel_h, kernel_w;
    int stride, padding, dilation, groups;
    int bias;
    int block;
    int sampling_stride;
    float eps;
    int n_iter;
    float momentum;
    int freeze;
    int freeze_iter;
} ndcl_conv2d_desc;
NDCL_API ndcl_conv2d_desc ndcl_conv2d_desc_default(int in_channels, int out_channels,
                                                   int kernel_size);

/* A deconvolved linear layer. Defaults: bias 1, block 512, eps 1e-5,
 * n_iter 5, momentum 0.1. */
typedef struct ndcl_linear_desc {
    int in_features, out_features;
    int bias;
    int block;
    float eps;
    int n_iter;
    float momentum;
} ndcl_linear_desc;
NDCL_API ndcl_linear_desc ndcl_linear_desc_default(int in_features, int out_features);

/* Channel deconvolution. Defaults: eps 1e-2, n_iter 5, momentum 0.1,
 * sampling_stride 3. */
typedef struct ndcl_channel_desc {
    int block;
    float eps;
    int n_iter;
    float momentum;
    int sampling_stride;
} ndcl_channel_desc;
NDCL_API ndcl_channel_desc ndcl_channel_desc_default(int block);

/* Create a layer with parameters as the original initialises them: weight
 * and bias zero (set them with ndcl_layer_set_param), running means zero,
 * running_deconv identity, running_var one, counters zero. The block is
 * clamped as the original clamps it (see ndcl_layer_block). Every field is
 * validated: NDCL_ERR_INVALID_ARG names the first bad one. The layer holds
 * a reference to ctx. */
NDCL_API ndcl_status ndcl_conv2d_create(ndcl_context *ctx, const ndcl_conv2d_desc *desc,
                                        ndcl_layer **out);
NDCL_API ndcl_status ndcl_linear_create(ndcl_context *ctx, const ndcl_linear_desc *desc,
                                        ndcl_layer **out);
NDCL_API ndcl_status ndcl_channel_create(ndcl_context *ctx, const ndcl_channel_desc *desc,
                                         ndcl_layer **out);

/* Releases the layer and everything it keeps (including saved forward
 * state), and its reference to the context (see ndcl_context_destroy). */
NDCL_API void ndcl_layer_destroy(ndcl_layer *layer);

/* The layer's kind, effective block size and context (0/NULL for NULL). */
NDCL_API ndcl_layer_kind ndcl_layer_kind_of(const ndcl_layer *layer);
NDCL_API int ndcl_layer_block(const ndcl_layer *layer);
NDCL_API ndcl_context *ndcl_layer_context(const ndcl_layer *layer);

/* The creation descriptor, with the block as given (not clamped). Each
 * fails with NDCL_ERR_INVALID_ARG for a layer of another kind. */
NDCL_API ndcl_status ndcl_layer_conv2d_desc(const ndcl_layer *layer, ndcl_conv2d_desc *out);
NDCL_API ndcl_status ndcl_layer_linear_desc(const ndcl_layer *layer, ndcl_linear_desc *out);
NDCL_API ndcl_status ndcl_layer_channel_desc(const ndcl_layer *layer,
                                             ndcl_channel_desc *out);

/* Parameters and buffers by their PyTorch state_dict names and shapes
 * (nf = kh*kw*B, G = groups):
 *  conv2d: "weight" [Cout, C/G, kh, kw], "bias" [Cout] (when the layer has
 *          one), "running_mean" [nf] (G = 1) or [C*kh*kw] (G > 1),
 *          "running_deconv" [nf, nf] (G = 1) or [G, nf, nf];
 *  linear: "weight" [Fout, F], "bias" [Fout], "running_mean" [B],
 *          "running_deconv" [B, B];
 *  channel: "running_mean1" [B, 1], "running_deconv" [B, B],
 *           "running_mean2" [1, 1], "running_var" [1, 1].
 * ndcl_layer_param_shape gives the shape; set and get copy count floats
 * (the element count exactly) from or to host memory and block: they wait
 * for everything enqueued on the queue before them (so a get sees every
 * forward enqueued before it, and a set may overwrite a buffer only once
 * the work reading it is done). Setting any of them invalidates the cached
 * evaluation weights. An unknown name is NDCL_ERR_INVALID_ARG. */
NDCL_API ndcl_status ndcl_layer_param_shape(const ndcl_layer *layer, const char *name,
                                            int *ndim, size_t shape[NDCL_MAX_DIMS]);
NDCL_API ndcl_status ndcl_layer_set_param(ndcl_layer *layer, const char *name,
                                          const float *data, size_t count);
NDCL_API ndcl_status ndcl_layer_get_param(const ndcl_layer *layer, const char *name,
                                          float *data, size_t count);

/* A borrowed view of the parameter or buffer called name (the names
 * above): a tensor of the parameter's shape over the layer's own buffer,
 * no copy, for any ndcl call and for the caller's own kernels
 * (ndcl_tensor_cl_mem), e.g. an optimiser that updates the weights on the
 * device in place. *out is a new tensor on success.
 *
 * Lifetime: destroy the view with ndcl_tensor_destroy; the parameter stays.
 * The view retains the buffer, so it stays valid even after the layer is
 * destroyed (it then aliases nothing the library uses). A layer may have
 * any number of views; reshaping a view changes the view only.
 *
 * Changes: the layer caches its evaluation fold W', b' (used by NDCL_EVAL
 * forwards and by frozen training forwards) and refolds when a parameter
 * changed since. It sees ndcl_layer_set_param, and writes by ndcl calls
 * that take the view as an output (ndcl_tensor_write, ndcl_gemm's c, a
 * primitive's *out, a layer's *y, *dx, *dweight, *dbias,
 * ndcl_layer_folded). It cannot see anything else that writes the buffer
 * — the caller's own kernels, clEnqueueCopyBuffer, a tensor of its own
 * wrapped around the same cl_mem: after enqueueing such a write, call
 * ndcl_tensor_changed(view) before the layer's next forward, or that
 * forward computes with the stale fold. A training forward's running
 * updates write running_mean and running_deconv (seen by the views: same
 * buffer). */
NDCL_API ndcl_status ndcl_layer_param_tensor(ndcl_layer *layer, const char *name,
                                             ndcl_tensor **out);

/* Tells the layer that owns the view t that its contents changed (through
 * writes ndcl cannot see: see ndcl_layer_param_tensor), so that its next
 * forward refolds W', b'. Enqueues nothing; the refold reads the buffer
 * after the work enqueued before it, on the same queue. After the layer
 * is destroyed it succeeds and does nothing. A tensor that is not such a
 * view (NULL, created, or wrapped around a parameter's cl_mem) is
 * NDCL_ERR_INVALID_ARG: the layer could not be told. */
NDCL_API ndcl_status ndcl_tensor_changed(ndcl_tensor *t);

/* The evaluation weights of a conv2d or linear layer: W' and b', the
 * running statistics folded into weight and bias, exactly what an
 * NDCL_EVAL forward computes with (that forward is the plain convolution
 * or linear map with W', b'), for export to a network without
 * deconvolution. *weight gets the weight's shape and *bias [out_channels]
 * or [out_features] (also for a layer without a bias: the mean correction,
 * from b = 0); either may be NULL when not wanted. Outputs follow the
 * convention of the primitives. Updates the layer's cached fold. A channel
 * layer is NDCL_ERR_INVALID_ARG. */
NDCL_API ndcl_status ndcl_layer_folded(ndcl_layer *layer, ndcl_tensor **weight,
                                       ndcl_tensor **bias);

/* The step counter: the freeze counter of a conv2d layer, or
 * num_batches_tracked of a channel layer (linear layers have none:
 * NDCL_ERR_INVALID_ARG). */
NDCL_API ndcl_status ndcl_layer_get_counter(const ndcl_layer *layer, int64_t *out);
NDCL_API ndcl_status ndcl_layer_set_counter(ndcl_layer *layer, int64_t value);

/* One forward step on x: conv2d x [N, C, H, W] -> [N, Cout, Ho, Wo];
 * linear x [N, F] -> [N, Fout]; channel x [N, C, H, W] or [N, C] -> same
 * shape. *y follows the output convention of the primitives, except that
 * a *y that ndcl created (an earlier call's output, or
 * ndcl_tensor_create) takes this call's shape when it has another one, so
 * that one output serves every batch, a last smaller one included: the
 * same handle, its buffer replaced only when it must grow (its cl_mem, from
 * ndcl_tensor_cl_mem, may then change); a wrapped caller buffer
 * (ndcl_tensor_wrap) of another shape stays NDCL_ERR_INVALID_ARG. In NDCL_TRAIN
 * mode the batch statistics are used and the running buffers and counters
 * are updated; a non-finite statistic leaves the running buffers as they
 * were and raises two flags on the device, reported later without a host
 * round trip here: the layer's own (ndcl_layer_numerical_status) and the
 * context's (the next ndcl_finish). In NDCL_EVAL mode the folded weights
 * are computed once and reused until a parameter changes. */
NDCL_API ndcl_status ndcl_layer_forward(ndcl_layer *layer, ndcl_mode mode,
                                        const ndcl_tensor *x, ndcl_tensor **y);

/* The backward pass of the layer's last forward, given dy (the gradient
 * of the loss with respect to that forward's output, same shape):
 *  - after an NDCL_TRAIN forward that used batch statistics: the exact
 *    derivative of the forward as automatic differentiation computes it,
 *    through the fold, the mean, the covariance and every Newton-Schulz
 *    iteration (the chain rule through each step in reverse, nothing
 *    assumed symmetric), so that it matches PyTorch's autograd of the
 *    original modules;
 *  - after an NDCL_EVAL or frozen forward: the plain convolution / linear
 *    backward with W', b' fixed, mapped back through the fold with mu and
 *    D fixed: per row of nf, dW_row = (dW'_row - db'[o]·muᵀ)·Dᵀ, and
 *    db = db'; a channel layer's dx = Dᵀ·dy on the whitened channels and
 *    dy / sqrt(var + eps) on the leftover ones.
 * dx receives dL/dx (x's shape); dweight and dbias receive dL/dweight and
 * dL/dbias (the parameters' shapes) for conv2d and linear layers; any of
 * the three may be NULL when not wanted (channel layers have no
 * parameters: pass NULL; for a layer without a bias, dbias is ignored and
 * *dbias left as it is). Outputs follow the convention of the primitives,
 * with ndcl_layer_forward's exception: an output ndcl created is resized.
 * The forward keeps what this needs (the input, the sampled patch matrix,
 * the Newton-Schulz iterates, the statistics) until the next forward, this
 * call's success, ndcl_layer_release_saved or ndcl_layer_destroy; a second
 * backward without a new forward is NDCL_ERR_STATE, and so is a backward
 * before any forward. By default what is kept is the layer's own copy of
 * the input: the forward's input tensor may be changed or destroyed in
 * between (NDCL_LAYER_BORROW_INPUT trades that for memory). The
 * convolution's patches are recomputed from the input a chunk of images at
 * a time, never kept whole. */
NDCL_API ndcl_status ndcl_layer_backward(ndcl_layer *layer, const ndcl_tensor *dy,
                                         ndcl_tensor **dx, ndcl_tensor **dweight,
                                         ndcl_tensor **dbias);

/* Frees what the last training forward kept for the backward pass. */
NDCL_API void ndcl_layer_release_saved(ndcl_layer *layer);

/* Layer options, set with ndcl_layer_set_option (each takes effect at the
 * next forward or backward):
 *  NDCL_LAYER_BORROW_INPUT  0 (default): the forward copies its input for
 *      the backward pass, so the caller may change or destroy x in
 *      between. 1: the caller promises that x's contents stay unchanged
 *      until the backward (or the next forward, ndcl_layer_release_saved,
 *      ndcl_layer_destroy); the layer keeps a reference to x's buffer
 *      instead of a copy (the buffer stays alive even if the tensor is
 *      destroyed), saving x's size in memory and the copy's time. Breaking
 *      the promise gives wrong gradients, not an error.
 *  NDCL_LAYER_CONV_CHUNK    conv2d only: images per chunk of the
 *      convolution (its patch matrix is built, used and discarded a chunk
 *      at a time). 0 (default): sized to the device (half the global memory
 *      cache of a CPU device, 128 MiB elsewhere). A larger value needs more
 *      workspace, a smaller one more, smaller products; the results are the
 *      same up to rounding. At most 2^31-1; clamped to the batch.
 *  NDCL_LAYER_CONV_ALGO     conv2d only: the algorithm of the plain
 *      convolution, an ndcl_conv_algorithm. NDCL_CONV_AUTO (default):
 *      NDCL_CONV_ALGO's when that is set, else the measured fastest. Any
 *      other value forces that algorithm, whatever NDCL_CONV_ALGO says; a
 *      pass it does not fit fails with NDCL_ERR_UNSUPPORTED.
 *  NDCL_LAYER_STATS_EVERY   conv2d and linear: amortised statistics, opt-in.
 *      1 (default): every training forward computes the batch's mean and
 *      whitening matrix D, the original's arithmetic. K > 1: only every
 *      K-th training forward does (the first after setting the option or
 *      the counter, and every K-th after it); the K-1 in
 *      between train on the statistics of the last one that did, as a
 *      frozen step does on the running statistics: y is the convolution
 *      with W·D and the folded bias, the running statistics are not
 *      updated, and the backward's gradient does not pass through D or the
 *      mean (dW = dW'·Dᵀ, dx through W·D alone). The statistics steps are
 *      exact training steps. A frozen conv2d layer stays frozen. Costs two
 *      copies of the statistics (nf² floats per group). At most 2^31-1. */
typedef enum ndcl_layer_option {
    NDCL_LAYER_BORROW_INPUT = 1,
    NDCL_LAYER_CONV_CHUNK = 2,
    NDCL_LAYER_CONV_ALGO = 3,
    NDCL_LAYER_STATS_EVERY = 4
} ndcl_layer_option;

/* Sets or reads an option. An unknown option, an option the layer's kind
 * does not have or a value out of range is NDCL_ERR_INVALID_ARG. */
NDCL_API ndcl_status ndcl_layer_set_option(ndcl_layer *layer, ndcl_layer_option option,
                                           int64_t value);
NDCL_API ndcl_status ndcl_layer_get_option(const ndcl_layer *layer,
                                           ndcl_layer_option option, int64_t *value);

/* *bytes <- the device memory the layer holds now besides its parameters
 * and running buffers: what the last forward kept for the backward (the
 * input's copy, the sampled patches, the Newton-Schulz iterates, the
 * statistics), the cached folded weights, and the workspaces it reuses
 * from call to call (the convolution's chunk buffers, the backward's).
 * Calls also allocate short-lived temporaries, released before they
 * return, that this does not count; a borrowed input is the caller's and
 * not counted either. */
NDCL_API ndcl_status ndcl_layer_workspace_bytes(const ndcl_layer *layer, size_t *bytes);

/* Whether the layer's last forward that computed batch statistics (a
 * training step that was not frozen, or a channel layer's step while
 * num_batches_tracked is 0) met a non-finite one: NDCL_ERR_NUMERICAL if it
 * did (its running buffers then kept their values), NDCL_SUCCESS if it did
 * not or there was none. Reads the layer's flag from the device, so it
 * blocks until the work enqueued before it is done: it fits an application
 * that synchronises with clFinish or its own blocking reads and never
 * calls ndcl_finish. The flag is reset by the layer's next such step, not
 * by this call, and is apart from the context's flag: this call neither
 * reads nor clears that one, and ndcl_finish does not clear this one. */
NDCL_API ndcl_status ndcl_layer_numerical_status(const ndcl_layer *layer);

/* ------------------------------------------------------------ groups
 *
 * Data-parallel training: K ranks (processes, devices, machines) each hold
 * a copy of the layer and take a contiguous slice of every batch, rank 0
 * the first samples. With a group attached, the layer's batch statistics
 * are those of the whole global batch, so K ranks with batches of b give
 * the outputs, running statistics, counters and input gradients one rank
 * gives with the concatenated batch of K*b (and weight and bias gradients
 * that add up to its own: see below).
 *
 * The layer reaches the other ranks only through allreduce, which the
 * caller provides (include/ndcl_mpi.h binds it to an MPI communicator).
 * A training forward that uses batch statistics makes, in this order:
 *  1. a header of 6*size values: each rank's input shape in its own slot
 *     (every rank checks that the others' shapes agree with its own and
 *     learns where its slice starts in the global batch, which the sampled
 *     statistics of 1x1 conv2d and channel layers need);
 *  2. the local column sums of the sampled patches or features (channel:
 *     with the uncentred products and the leftover channels' sum);
 *  3. conv2d, linear: the products of the columns centred on the global
 *     mean, one triangle per group, and their column sums; channel with
 *     leftover channels: their squared deviations from the global mean.
 * Counts (doubles) per layer and step, independent of the batch (nf
 * features per block, G groups; cols = G*nf, conv2d and linear; B the
 * channel block; each count after the header includes the failure flag):
 *  conv2d, linear forward   6*size, 1 + cols, 1 + G*nf*(nf+1)/2 + cols
 *  conv2d, linear backward  1 + G*nf*nf + cols (the gradients of D and mu)
 *  channel forward          6*size, 1 + B + B*(B+1)/2 (training only) + 1
 *                           (leftover channels only), then 2 (leftover only)
 *  channel backward         1 + B*B + B + 2
 * The backward pass reduces the gradients of the whitening matrix and of
 * the mean once (they are linear in the local dy), then continues locally.
 * Values are double: every rank's partial sums of float32 data are added
 * exactly enough that K ranks keep the single-rank float32 arithmetic, and
 * the counts and flags in the same buffers stay exact.
 *
 * Rules: every rank of the group calls forward and backward on its copy
 * of the layer in the same order with the same mode (the same collectives
 * in the same order), and the layer copies start equal (parameters,
 * running buffers, counters). An evaluation-mode forward (except a channel
 * layer's first, which takes the batch's statistics), a frozen conv2d
 * step and a backward after either make no collective.
 *
 * Failures: a rank whose call fails before or between collectives (bad
 * arguments, an input shape that differs from the others', a device
 * failure) still takes part in the next collective with its failure flag
 * set, and returns its own status; the other ranks return NDCL_ERR_GROUP
 * from that collective, and no rank makes another collective in that
 * call: every rank returns, nobody is left waiting. Inputs of different
 * shapes fail on every rank with NDCL_ERR_INVALID_ARG. A failure after the
 * last collective of a call (a device error in the fold or the output) is
 * the failing rank's alone: the others have completed the call; if that
 * rank goes on to the backward pass, its failure reaches the others there.
 * A non-finite statistic on any rank makes the global statistics
 * non-finite on every rank: every ndcl_finish reports NDCL_ERR_NUMERICAL.
 * An allreduce that returns a status other than NDCL_SUCCESS fails the
 * call with that status (the layer cannot know what the others saw: treat
 * it as fatal for the group, e.g. MPI_Abort).
 *
 * Gradients: the backward pass gives each rank dx of its own slice
 * exactly, and dweight and dbias of its own slice's loss terms: their sum
 * over the ranks is the one-rank gradient. Data-parallel training
 * all-reduces (sums or averages) the parameter gradients itself, as it
 * does for any other layer. */
typedef struct ndcl_group {
    int size; /* ranks in the group, >= 1 */
    int rank; /* this rank, 0 .. size-1 */
    /* Sums data[0 .. count-1] element-wise across the group, in place: on
     * return every rank holds the same sums. Called from inside
     * ndcl_layer_forward and ndcl_layer_backward on the calling thread. */
    ndcl_status (*allreduce)(void *user, double *data, size_t count);
    void *user; /* passed to allreduce */
} ndcl_group;

/* Attaches the layer to a group (copied; user must stay valid while it is
 * attached), or detaches it when group is NULL (the layer alone, as
 * created). size 1 is allowed (the protocol with one rank). Fails with
 * NDCL_ERR_INVALID_ARG for size < 1, rank outside 0 .. size-1 or a NULL
 * allreduce. Attaching discards what the last forward kept for the
 * backward pass. */
NDCL_API ndcl_status ndcl_layer_set_group(ndcl_layer *layer, const ndcl_group *group);

/* ----------------------------------------------------------------- files
 *
 * Layer files are safetensors (an 8-byte little-endian header length, a
 * JSON header, raw little-endian data). Their "__metadata__" holds
 * "kind" ("conv2d", "linear" or "channel") and the descriptor's fields by
 * the names of the original constructors' arguments, as strings:
 *  conv2d: in_channels, out_channels, kernel_size ("3", or "3,3", "(3, 3)",
 *          "[3, 3]" for kernel_h, kernel_w), stride, padding, dilation,
 *          groups, bias, block, sampling_stride, eps, n_iter, momentum,
 *          freeze, freeze_iter;
 *  linear: in_features, out_features, bias, block, eps, n_iter, momentum;
 *  channel: block, eps, n_iter, momentum, sampling_stride.
 * Integers are decimal, floats anything strtod reads, booleans
 * true/false/True/False/1/0; a key that is missing takes the default of
 * ndcl_*_desc_default, except in_channels, out_channels, kernel_size,
 * in_features, out_features and the channel block, which are required.
 * Other metadata keys are ignored. The tensors are the layer's parameters
 * by their state_dict names (see ndcl_layer_param_shape), plus the step
 * counter: "counter" (conv2d, optional, default 0) or
 * "num_batches_tracked" (channel, required), an integer of shape [] or
 * [1]. Tensors may be F32, F64, F16, I64 or I32 (converted); a shape may
 * differ from the layer's only by dimensions of size 1 (e.g. a channel
 * layer's running_mean2 stored as [] or [1]).
 * "bias" is required exactly when the descriptor has bias; any tensor the
 * layer does not have is rejected.
 *
 * Every writer goes through a temporary file in the target's directory
 * that is renamed over the target once complete, so a failed or
 * interrupted write never replaces an existing file. */

/* Creates a layer on ctx from a layer file. Malformed content (bad JSON,
 * an unsupported dtype, offsets that overlap or run past the end, a bad
 * metadata value, a missing, extra or misshapen tensor) is
 * NDCL_ERR_FORMAT with a message naming the file, the tensor or key and
 * the problem; a file that cannot be read is NDCL_ERR_IO. On failure no
 * layer is created. */
NDCL_API ndcl_status ndcl_layer_load(ndcl_context *ctx, const char *path, ndcl_layer **out);

/* As ndcl_layer_load, from a whole file held in memory (size bytes). */
NDCL_API ndcl_status ndcl_layer_load_memory(ndcl_context *ctx, const void *data,
                                            size_t size, ndcl_layer **out);

/* Writes the layer's descriptor (the block as given at creation, floats
 * in the shortest form, at most 9 significant digits, that reads back as
 * the same float), parameters (F32) and counter (I64 of shape
 * []: "counter" for conv2d, "num_batches_tracked" for channel, none for
 * linear) to path. Reads the parameters from the device (blocking). */
NDCL_API ndcl_status ndcl_layer_save(const ndcl_layer *layer, const char *path);

/* As ndcl_layer_save, into a new buffer of *size bytes that the caller
 * releases with ndcl_free. */
NDCL_API ndcl_status ndcl_layer_save_memory(const ndcl_layer *layer, void **data,
                                            size_t *size);

/* Releases memory the library allocated for the caller (file buffers,
 * arrays read from files). Accepts NULL. */
NDCL_API void ndcl_free(void *ptr);

/* Reads a NumPy .npy file (format version 1, 2 or 3) holding a C-order
 * array of '<f4' or '<f8' (converted to float) with at most NDCL_MAX_DIMS
 * dimensions: *data is a new array (release with ndcl_free), *ndim and
 * shape[0 .. *ndim-1] its shape (*ndim is 0 for a scalar). Other dtypes,
 * Fortran order, a bad magic string, a truncated file and too many
 * dimensions are NDCL_ERR_FORMAT, a file that cannot be read
 * NDCL_ERR_IO. The message (naming the file) is in
 * ndcl_context_last_error(ctx): pass the context whose messages the
 * caller reads, or NULL for the calling thread's context-less slot
 * (ndcl_context_last_error(NULL)). ctx is used for nothing else. */
NDCL_API ndcl_status ndcl_npy_read_ctx(ndcl_context *ctx, const char *path, float **data,
                                       int *ndim, size_t shape[NDCL_MAX_DIMS]);

/* Writes a C-order '<f4' array of ndim (0 to NDCL_MAX_DIMS) dimensions as
 * a version 1.0 .npy file (atomically: a failed write leaves no partial
 * file). Messages as ndcl_npy_read_ctx: on ctx, or for NULL on the
 * thread's slot. */
NDCL_API ndcl_status ndcl_npy_write_ctx(ndcl_context *ctx, const char *path,
                                        const float *data, int ndim, const size_t *shape);

/* ndcl_npy_read_ctx and ndcl_npy_write_ctx with ctx NULL: the message in
 * ndcl_context_last_error(NULL). */
NDCL_API ndcl_status ndcl_npy_read(const char *path, float **data, int *ndim,
                                   size_t shape[NDCL_MAX_DIMS]);
NDCL_API ndcl_status ndcl_npy_write(const char *path, const float *data, int ndim,
                                    const size_t *shape);

/* Writes n float32 tensors to a safetensors file (no metadata): tensor i
 * is called names[i] (distinct, not "__metadata__") and holds data[i] with
 * ndims[i] (0 to NDCL_MAX_DIMS) dimensions shapes[i]. For tools writing
 * gradient files. Messages in ndcl_context_last_error(NULL). */
NDCL_API ndcl_status ndcl_safetensors_write_floats(const char *path, int n,
                                                   const char *const *names,
                                                   const float *const *data,
                                                   const int *ndims,
                                                   const size_t (*shapes)[NDCL_MAX_DIMS]);

/* Reads the tensor called name from a safetensors file, converted to
 * float: *data is a new array (release with ndcl_free), *ndim and
 * shape[0 .. *ndim-1] its shape. A missing name or a tensor of more than
 * NDCL_MAX_DIMS dimensions is NDCL_ERR_FORMAT. Messages in
 * ndcl_context_last_error(NULL). */
NDCL_API ndcl_status ndcl_safetensors_read_float(const char *path, const char *name,
                                                 float **data, int *ndim,
                                                 size_t shape[NDCL_MAX_DIMS]);

/* ------------------------------------------------------------- self-test */

/* Whether a device computes what ndcl promises: each check runs one public
 * call (or a layer's steps) on small random problems, on the device and in
 * a double-precision host reference of the original PyTorch arithmetic
 * (the README's "Arithmetic"), on identical float inputs, and compares
 * them by relative error: max |device - reference| / max |reference|.
 * The checks, in order, with their tolerances:
 *   "gemm"                    ndcl_gemm, every transpose, alpha, beta  1e-5
 *   "patches"                 ndcl_patches: 3x3 interleaved, 1x1,
 *                             grouped and dilated                      1e-6
 *   "covariance"              ndcl_covariance, centred and not         1e-5
 *   "isqrt"                   ndcl_isqrt, one matrix and a batch       1e-4
 *   "whiten"                  ndcl_whiten                              1e-4
 *   "conv2d train", "conv2d eval", "conv2d groups=2 train",
 *   "conv2d groups=2 eval", "linear train", "linear eval",
 *   "channel train", "channel eval"
 *                             two training forwards of the layer, then
 *                             (eval) one evaluation forward            1e-4
 *   "conv2d backward", "linear backward", "channel backward"
 *                             ndcl_layer_backward against central
 *                             differences of the reference             1e-3
 * Inputs come from a fixed seed per check, so a failure reproduces. */
#define NDCL_SELF_TEST_MAX_CHECKS 32

/* One check's result. */
typedef struct ndcl_self_test_check {
    const char *name;   /* as listed above: a static string */
    int passed;         /* 1: it ran and error <= tolerance */
    ndcl_status status; /* NDCL_SUCCESS when it ran to a comparison, else the
                           status of the call that failed */
    double error;       /* the relative error; NaN when it did not run to a
                           comparison, +Inf when the device gave NaN */
    double tolerance;
    char message[1024]; /* when status is not NDCL_SUCCESS: the failing call,
                           its status and the context's last error, or what
                           did not match (a tensor's element count); else "" */
} ndcl_self_test_check;

/* What ndcl_self_test found. */
typedef struct ndcl_self_test_report {
    ndcl_build_info build; /* how the kernels were obtained (ndcl_context_build) */
    size_t count;          /* the checks run, checks[0 .. count-1], in order */
    size_t failed;         /* how many of them did not pass */
    ndcl_self_test_check checks[NDCL_SELF_TEST_MAX_CHECKS];
} ndcl_self_test_report;

/* Called after each check with its result and the caller's user pointer
 * (to show progress; the check is also in the report). */
typedef void (*ndcl_self_test_fn)(const ndcl_self_test_check *check, void *user);

/* Runs the self-test on ctx's device: builds the kernels
 * (ndcl_context_build), then runs every check above in order, calling
 * on_check (may be NULL) after each. Prints nothing. The checks create and
 * destroy their own tensors and layers on ctx and wait for its queue;
 * ctx stays usable afterwards (the choices of NDCL_CONV_AUTO it measured
 * stay in the find-db as after any layer's use).
 * Returns NDCL_SUCCESS when every check passed; NDCL_ERR_NUMERICAL when
 * every check ran to a comparison but one's error exceeded its tolerance;
 * else the status of the first check that could not (a failed call: out of
 * memory, an OpenCL error; NDCL_ERR_NUMERICAL for an output of the wrong
 * size), the later checks still run; or the build's status
 * (NDCL_ERR_BUILD, ...) when the kernels could not be built, with
 * out->count 0. In each of those cases *out holds the results (an
 * exception to the convention above) and the last-error message names the
 * first failing check, or is the build's. ctx or out
 * NULL is NDCL_ERR_INVALID_ARG, *out untouched. The host reference
 * allocates a few hundred KiB of host memory and aborts the process when
 * that fails. */
NDCL_API ndcl_status ndcl_self_test(ndcl_context *ctx, ndcl_self_test_report *out,
                                    ndcl_self_test_fn on_check, void *user);

#ifdef __cplusplus
}
#endif
#endif /* NDCL_H */
