/* app.c - ndcl inside an application's own OpenCL program: the
 * application's context and in-order queue, its buffers (x and y two
 * sub-buffers of one allocation) as ndcl tensors, one evaluation and one
 * training step of a deconvolved linear layer with the application's own
 * loss-gradient kernel on the same queue, clFinish and its own blocking
 * reads as the only synchronisation, and ndcl torn down context first.
 * Every result is checked on the host; the exit status says whether all
 * held.
 *
 * Build against an installed ndcl (see the README for the prefix):
 *     cc app.c $(pkg-config --cflags --libs ndcl)
 */
#include <math.h> /* NAN only: no libm needed */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ndcl_cl.h>

#define N 32  /* batch */
#define F 16  /* in_features */
#define FO 4  /* out_features */
#define BLK 8 /* whitening block */

static int failures;

static void check(int ok, const char *what)
{
    printf("%-52s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) failures++;
}

/* Aborts the program on an OpenCL error: this is the application's code. */
static void cl_ok(cl_int err, const char *call)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "embed: %s failed (%d)\n", call, (int)err);
        exit(1);
    }
}

static void nd_ok(ndcl_context *ctx, ndcl_status s, const char *call)
{
    if (s != NDCL_SUCCESS) {
        fprintf(stderr, "embed: %s: %s: %s\n", call, ndcl_status_string(s),
                ndcl_context_last_error(ctx));
        exit(1);
    }
}

static float absf(float v)
{
    return v < 0 ? -v : v;
}

/* The application's own kernel: the gradient of ½‖y − t‖². */
static const char *source = "__kernel void loss_grad(__global const float *y,\n"
                            "                        __global const float *t,\n"
                            "                        __global float *dy, const int n)\n"
                            "{\n"
                            "    int i = get_global_id(0);\n"
                            "    if (i < n) dy[i] = y[i] - t[i];\n"
                            "}\n";

/* The device ndcl would choose (NDCL_DEVICE, else the first GPU, else the
 * first device), found by its indices. */
static cl_device_id pick_device(void)
{
    ndcl_device_info info[16];
    size_t n = 0;
    nd_ok(NULL, ndcl_devices_list(info, 16, &n), "ndcl_devices_list");
    int p = 0, d = 0;
    for (size_t i = 0; i < n && i < 16; i++)
        if (info[i].is_default) {
            p = info[i].platform_index;
            d = info[i].device_index;
        }
    cl_platform_id plats[16];
    cl_device_id devs[64];
    cl_uint np = 0, nd = 0;
    cl_ok(clGetPlatformIDs(16, plats, &np), "clGetPlatformIDs");
    cl_ok(clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 64, devs, &nd), "clGetDeviceIDs");
    return devs[d];
}

int main(void)
{
    cl_int err;
    cl_device_id dev = pick_device();
    cl_context context = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cl_ok(err, "clCreateContext");
    cl_command_queue queue = clCreateCommandQueue(context, dev, 0, &err);
    cl_ok(err, "clCreateCommandQueue");
    cl_program prog = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    cl_ok(err, "clCreateProgramWithSource");
    cl_ok(clBuildProgram(prog, 1, &dev, "", NULL, NULL), "clBuildProgram");
    cl_kernel loss_grad = clCreateKernel(prog, "loss_grad", &err);
    cl_ok(err, "clCreateKernel");

    /* One allocation for x and y; y starts at the device's alignment. */
    cl_uint align_bits = 0;
    cl_ok(clGetDeviceInfo(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                          &align_bits, NULL),
          "clGetDeviceInfo");
    size_t align = align_bits / 8, xbytes = N * F * sizeof(float);
    size_t ybytes = N * FO * sizeof(float), yoff = (xbytes + align - 1) / align * align;
    cl_mem io = clCreateBuffer(context, CL_MEM_READ_WRITE, yoff + ybytes, NULL, &err);
    cl_ok(err, "clCreateBuffer");
    cl_buffer_region rx = {0, xbytes}, ry = {yoff, ybytes};
    cl_mem xbuf = clCreateSubBuffer(io, 0, CL_BUFFER_CREATE_TYPE_REGION, &rx, &err);
    cl_ok(err, "clCreateSubBuffer(x)");
    cl_mem ybuf = clCreateSubBuffer(io, 0, CL_BUFFER_CREATE_TYPE_REGION, &ry, &err);
    cl_ok(err, "clCreateSubBuffer(y)");
    cl_mem tbuf = clCreateBuffer(context, CL_MEM_READ_ONLY, ybytes, NULL, &err);
    cl_ok(err, "clCreateBuffer(t)");
    cl_mem dybuf = clCreateBuffer(context, CL_MEM_READ_WRITE, ybytes, NULL, &err);
    cl_ok(err, "clCreateBuffer(dy)");

    static float x[N * F], t[N * FO], w[FO * F], b[FO], y[N * FO], dy[N * FO], db[FO];
    unsigned s = 12345;
    for (int i = 0; i < N * F; i++)
        x[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < N * FO; i++)
        t[i] = (float)(i % 7) / 7.0f;
    for (int i = 0; i < FO * F; i++)
        w[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < FO; i++)
        b[i] = 0.1f * (float)i;
    cl_ok(clEnqueueWriteBuffer(queue, xbuf, CL_FALSE, 0, xbytes, x, 0, NULL, NULL),
          "clEnqueueWriteBuffer(x)");
    cl_ok(clEnqueueWriteBuffer(queue, tbuf, CL_FALSE, 0, ybytes, t, 0, NULL, NULL),
          "clEnqueueWriteBuffer(t)");

    /* ndcl on the application's objects. */
    ndcl_context *ctx = NULL;
    nd_ok(NULL, ndcl_context_create_from_cl(context, dev, queue, &ctx),
          "ndcl_context_create_from_cl");
    ndcl_linear_desc d = ndcl_linear_desc_default(F, FO);
    d.block = BLK;
    ndcl_layer *layer = NULL;
    nd_ok(ctx, ndcl_linear_create(ctx, &d, &layer), "ndcl_linear_create");
    nd_ok(ctx, ndcl_layer_set_param(layer, "weight", w, FO * F), "set weight");
    nd_ok(ctx, ndcl_layer_set_param(layer, "bias", b, FO), "set bias");
    ndcl_tensor *tx = NULL, *ty = NULL, *tdy = NULL, *dw = NULL, *tdb = NULL;
    nd_ok(ctx, ndcl_tensor_wrap(ctx, xbuf, 2, (size_t[]){N, F}, &tx), "wrap x");
    nd_ok(ctx, ndcl_tensor_wrap(ctx, ybuf, 2, (size_t[]){N, FO}, &ty), "wrap y");
    nd_ok(ctx, ndcl_tensor_wrap(ctx, dybuf, 2, (size_t[]){N, FO}, &tdy), "wrap dy");

    /* Evaluation before any training: running statistics are the identity
     * whitening, so y = x·Wᵀ + b, read by the application itself. */
    nd_ok(ctx, ndcl_layer_forward(layer, NDCL_EVAL, tx, &ty), "eval forward");
    cl_ok(clEnqueueReadBuffer(queue, io, CL_TRUE, yoff, ybytes, y, 0, NULL, NULL),
          "clEnqueueReadBuffer(y)");
    float worst = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < FO; o++) {
            float ref = b[o];
            for (int f = 0; f < F; f++)
                ref += x[n * F + f] * w[o * F + f];
            float e = absf(y[n * FO + o] - ref);
            worst = e > worst ? e : worst;
        }
    check(worst < 1e-4f, "evaluation output = x·Wᵀ + b (sub-buffer y)");

    /* A training step: forward, the application's loss kernel, backward,
     * all enqueued on the one queue with no synchronisation in between. */
    nd_ok(ctx, ndcl_layer_forward(layer, NDCL_TRAIN, tx, &ty), "train forward");
    int count = N * FO;
    size_t global = (size_t)count;
    cl_ok(clSetKernelArg(loss_grad, 0, sizeof ybuf, &ybuf), "clSetKernelArg");
    cl_ok(clSetKernelArg(loss_grad, 1, sizeof tbuf, &tbuf), "clSetKernelArg");
    cl_ok(clSetKernelArg(loss_grad, 2, sizeof dybuf, &dybuf), "clSetKernelArg");
    cl_ok(clSetKernelArg(loss_grad, 3, sizeof count, &count), "clSetKernelArg");
    cl_ok(clEnqueueNDRangeKernel(queue, loss_grad, 1, NULL, &global, NULL, 0, NULL, NULL),
          "clEnqueueNDRangeKernel");
    nd_ok(ctx, ndcl_layer_backward(layer, tdy, NULL, &dw, &tdb), "backward");
    cl_ok(clFinish(queue), "clFinish");
    cl_ok(clEnqueueReadBuffer(queue, dybuf, CL_TRUE, 0, ybytes, dy, 0, NULL, NULL),
          "clEnqueueReadBuffer(dy)");
    cl_ok(clEnqueueReadBuffer(queue, ndcl_tensor_cl_mem(tdb), CL_TRUE, 0, sizeof db, db, 0,
                              NULL, NULL),
          "clEnqueueReadBuffer(dbias)");
    /* b enters y only through b' = b − W'·μ, so dL/db = Σ_n dy[n]. */
    worst = 0;
    for (int o = 0; o < FO; o++) {
        float ref = 0;
        for (int n = 0; n < N; n++)
            ref += dy[n * FO + o];
        float e = absf(db[o] - ref);
        worst = e > worst ? e : worst;
    }
    check(worst < 1e-3f, "dbias = column sums of the application's dy");
    check(ndcl_layer_numerical_status(layer) == NDCL_SUCCESS, "training step finite");

    /* NaN in the input: seen without ndcl_finish, running statistics kept. */
    float rm_before[BLK], rm_after[BLK], nan_value = NAN;
    nd_ok(ctx, ndcl_layer_get_param(layer, "running_mean", rm_before, BLK), "get");
    cl_ok(clEnqueueWriteBuffer(queue, xbuf, CL_TRUE, 3 * sizeof(float), sizeof nan_value,
                               &nan_value, 0, NULL, NULL),
          "clEnqueueWriteBuffer(NaN)");
    nd_ok(ctx, ndcl_layer_forward(layer, NDCL_TRAIN, tx, &ty), "NaN forward");
    cl_ok(clFinish(queue), "clFinish");
    check(ndcl_layer_numerical_status(layer) == NDCL_ERR_NUMERICAL,
          "NaN statistics reported by the layer");
    nd_ok(ctx, ndcl_layer_get_param(layer, "running_mean", rm_after, BLK), "get");
    check(memcmp(rm_before, rm_after, sizeof rm_before) == 0, "running_mean kept");

    /* Teardown as an error path might do it: the context first. */
    ndcl_context_destroy(ctx);
    float wback[FO * F];
    check(ndcl_layer_get_param(layer, "weight", wback, FO * F) == NDCL_SUCCESS &&
              memcmp(wback, w, sizeof w) == 0,
          "layer usable after ndcl_context_destroy");
    ndcl_layer_destroy(layer);
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(ty);
    ndcl_tensor_destroy(tdy);
    ndcl_tensor_destroy(dw);
    ndcl_tensor_destroy(tdb); /* the last reference: ndcl lets go of queue and context */

    cl_mem mems[] = {xbuf, ybuf, io, tbuf, dybuf};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clReleaseMemObject(mems[i]);
    clReleaseKernel(loss_grad);
    clReleaseProgram(prog);
    clReleaseCommandQueue(queue);
    clReleaseContext(context);
    printf("embed: ndcl %s, %s\n", ndcl_version_string(), failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
