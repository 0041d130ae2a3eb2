/* test_interop.c - ndcl inside an application's own OpenCL program: the
 * application's commands on the shared queue are ordered with ndcl's by
 * enqueue order, also from another thread; two ndcl contexts share one
 * queue; a second queue is ordered by markers and barriers; only the
 * documented calls block (checked with the queue held by a user event);
 * ndcl_context_destroy waits for the application's work; sub-buffers wrap
 * as tensors. */
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "harness.h"
#include "ndcl_cl.h"

/* ------------------------------------------------------------ the caller */

typedef struct app {
    cl_device_id d;
    cl_context c;
    cl_command_queue q;
    cl_program prog;
    cl_kernel sub; /* c = a - b, the application's loss gradient */
} app;

static const char *app_source =
    "__kernel void app_sub(__global const float *a, __global const float *b,\n"
    "                      __global float *c, const int n)\n"
    "{\n"
    "    int i = get_global_id(0);\n"
    "    if (i < n) c[i] = a[i] - b[i];\n"
    "}\n";

static app app_open(void)
{
    app a;
    cl_int err;
    a.d = ndcl_context_cl_device(test_ctx());
    a.c = clCreateContext(NULL, 1, &a.d, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    a.q = clCreateCommandQueue(a.c, a.d, 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    a.prog = clCreateProgramWithSource(a.c, 1, &app_source, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clBuildProgram(a.prog, 1, &a.d, "", NULL, NULL), CL_SUCCESS);
    a.sub = clCreateKernel(a.prog, "app_sub", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    return a;
}

static void app_close(app *a)
{
    clReleaseKernel(a->sub);
    clReleaseProgram(a->prog);
    clReleaseCommandQueue(a->q);
    clReleaseContext(a->c);
}

static cl_mem app_buffer(const app *a, size_t n, const float *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(a->c, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    if (init)
        ck_assert_int_eq(clEnqueueWriteBuffer(a->q, m, CL_TRUE, 0, n * sizeof(float), init,
                                              0, NULL, NULL),
                         CL_SUCCESS);
    else {
        float zero = 0;
        ck_assert_int_eq(clEnqueueFillBuffer(a->q, m, &zero, sizeof zero, 0,
                                             n * sizeof(float), 0, NULL, NULL),
                         CL_SUCCESS);
        ck_assert_int_eq(clFinish(a->q), CL_SUCCESS);
    }
    return m;
}

/* c = a - b on the caller's queue, enqueued only. */
static void app_sub(const app *a, cl_command_queue q, cl_mem x, cl_mem y, cl_mem out, int n)
{
    ck_assert_int_eq(clSetKernelArg(a->sub, 0, sizeof x, &x), CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(a->sub, 1, sizeof y, &y), CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(a->sub, 2, sizeof out, &out), CL_SUCCESS);
    ck_assert_int_eq(clSetKernelArg(a->sub, 3, sizeof n, &n), CL_SUCCESS);
    size_t global = (size_t)n;
    ck_assert_int_eq(
        clEnqueueNDRangeKernel(q, a->sub, 1, NULL, &global, NULL, 0, NULL, NULL),
        CL_SUCCESS);
}

static ndcl_tensor *wrap(ndcl_context *ctx, cl_mem m, int ndim, const size_t *shape)
{
    ndcl_tensor *t = NULL;
    TEST_OK(ctx, ndcl_tensor_wrap(ctx, m, ndim, shape, &t));
    return t;
}

static void read_mem(cl_command_queue q, cl_mem m, float *dst, size_t n)
{
    ck_assert_int_eq(
        clEnqueueReadBuffer(q, m, CL_TRUE, 0, n * sizeof(float), dst, 0, NULL, NULL),
        CL_SUCCESS);
}

static void expect_close(const float *got, const float *want, size_t n, const char *what)
{
    double e = test_rel_err_ff(got, want, n, 1e-6);
    ck_assert_msg(e <= 1e-6, "%s: relative error %g", what, e);
}

/* A conv layer with fixed random weights and bias on ctx. */
#define N 2
#define C 4
#define HW 6
#define CO 3
#define NX (N * C * HW * HW)
#define NY (N * CO * HW * HW)
#define NW (CO * C * 9)
static const size_t xshape[4] = {N, C, HW, HW}, yshape[4] = {N, CO, HW, HW};

static ndcl_layer *conv_layer(ndcl_context *ctx)
{
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(C, CO, 3);
    d.padding = 1;
    d.block = 2;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    float w[NW], b[CO];
    test_fill_uniform(w, NW, 21, -0.5f, 0.5f);
    test_fill_uniform(b, CO, 22, -0.5f, 0.5f);
    TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, NW));
    TEST_OK(ctx, ndcl_layer_set_param(l, "bias", b, CO));
    return l;
}

/* ------------------------------------------------- one queue, in order */

START_TEST(callers_kernels_between_calls_are_ordered)
{
    app a = app_open();
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &ctx));
    float xs[NX], ts[NY];
    test_fill_uniform(xs, NX, 23, -1, 1);
    test_fill_uniform(ts, NY, 24, -1, 1);
    cl_mem xb = app_buffer(&a, NX, xs), tb = app_buffer(&a, NY, ts);
    cl_mem yb = app_buffer(&a, NY, NULL), dyb = app_buffer(&a, NY, NULL);
    ndcl_tensor *x = wrap(ctx, xb, 4, xshape), *y = wrap(ctx, yb, 4, yshape);
    ndcl_tensor *dy = wrap(ctx, dyb, 4, yshape);

    /* The application's path: no host synchronisation between its loss
     * kernel and ndcl's calls, and it overwrites x right after the forward
     * (the forward must have read it first, the backward keeps its own
     * copy). */
    ndcl_layer *l = conv_layer(ctx);
    ndcl_tensor *dx = NULL, *dw = NULL, *db = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    app_sub(&a, a.q, yb, tb, dyb, NY);
    float zero = 0;
    ck_assert_int_eq(clEnqueueFillBuffer(a.q, xb, &zero, sizeof zero, 0, NX * sizeof(float),
                                         0, NULL, NULL),
                     CL_SUCCESS);
    TEST_OK(ctx, ndcl_layer_backward(l, dy, &dx, &dw, &db));
    float y_app[NY], dx_app[NX], dw_app[NW];
    TEST_OK(ctx, ndcl_tensor_read(y, y_app, NY));
    TEST_OK(ctx, ndcl_tensor_read(dx, dx_app, NX));
    TEST_OK(ctx, ndcl_tensor_read(dw, dw_app, NW));
    ndcl_layer_destroy(l);

    /* The same step with the host in between every call. */
    l = conv_layer(ctx);
    TEST_OK(ctx, ndcl_tensor_write(x, xs, NX));
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    float y_host[NY], dy_host[NY], dx_host[NX], dw_host[NW];
    TEST_OK(ctx, ndcl_tensor_read(y, y_host, NY));
    for (int i = 0; i < NY; i++)
        dy_host[i] = y_host[i] - ts[i];
    TEST_OK(ctx, ndcl_tensor_write(dy, dy_host, NY));
    TEST_OK(ctx, ndcl_layer_backward(l, dy, &dx, &dw, &db));
    TEST_OK(ctx, ndcl_tensor_read(dx, dx_host, NX));
    TEST_OK(ctx, ndcl_tensor_read(dw, dw_host, NW));
    expect_close(y_app, y_host, NY, "y");
    expect_close(dx_app, dx_host, NX, "dx");
    expect_close(dw_app, dw_host, NW, "dweight");
    TEST_OK(ctx, ndcl_finish(ctx));

    ndcl_layer_destroy(l);
    ndcl_tensor *ts_[] = {x, y, dy, dx, dw, db};
    for (size_t i = 0; i < sizeof ts_ / sizeof ts_[0]; i++)
        ndcl_tensor_destroy(ts_[i]);
    ndcl_context_destroy(ctx);
    cl_mem ms[] = {xb, tb, yb, dyb};
    for (size_t i = 0; i < 4; i++)
        clReleaseMemObject(ms[i]);
    app_close(&a);
}
END_TEST

/* ----------------------------------------- two ndcl contexts, one queue */

typedef struct ctx_job {
    ndcl_context *ctx;
    cl_mem xb; /* shared by both contexts, read only */
    float y[3][NY];
    ndcl_status s;
    char err[256];
} ctx_job;

/* Two training steps and an evaluation on the job's context. */
static void *ctx_job_run(void *arg)
{
    ctx_job *j = arg;
    ndcl_tensor *x = NULL, *y = NULL;
    ndcl_layer *l = NULL;
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(C, CO, 3);
    d.padding = 1;
    d.block = 2;
    float w[NW];
    test_fill_uniform(w, NW, 21, -0.5f, 0.5f);
    j->s = ndcl_tensor_wrap(j->ctx, j->xb, 4, xshape, &x);
    if (j->s == NDCL_SUCCESS) j->s = ndcl_conv2d_create(j->ctx, &d, &l);
    if (j->s == NDCL_SUCCESS) j->s = ndcl_layer_set_param(l, "weight", w, NW);
    for (int step = 0; step < 3 && j->s == NDCL_SUCCESS; step++) {
        j->s = ndcl_layer_forward(l, step < 2 ? NDCL_TRAIN : NDCL_EVAL, x, &y);
        if (j->s == NDCL_SUCCESS) j->s = ndcl_tensor_read(y, j->y[step], NY);
    }
    if (j->s == NDCL_SUCCESS) j->s = ndcl_finish(j->ctx);
    if (j->s != NDCL_SUCCESS)
        snprintf(j->err, sizeof j->err, "%s: %s", ndcl_status_string(j->s),
                 ndcl_context_last_error(j->ctx));
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_layer_destroy(l);
    return NULL;
}

START_TEST(two_contexts_share_one_queue)
{
    app a = app_open();
    float xs[NX];
    test_fill_uniform(xs, NX, 25, -1, 1);
    cl_mem xb = app_buffer(&a, NX, xs);
    static ctx_job alone, job[2];
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &alone.ctx));
    alone.xb = xb;
    ctx_job_run(&alone);
    ck_assert_msg(alone.s == NDCL_SUCCESS, "alone: %s", alone.err);
    ndcl_context_destroy(alone.ctx);

    /* Both contexts over the same queue, from one thread, interleaved. */
    for (int i = 0; i < 2; i++) {
        TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &job[i].ctx));
        job[i].xb = xb;
    }
    ndcl_layer *l[2];
    ndcl_tensor *x[2], *y[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        l[i] = conv_layer(job[i].ctx);
        x[i] = wrap(job[i].ctx, xb, 4, xshape); /* one buffer, a tensor in each */
    }
    for (int step = 0; step < 2; step++)
        for (int i = 0; i < 2; i++)
            TEST_OK(job[i].ctx, ndcl_layer_forward(l[i], NDCL_TRAIN, x[i], &y[i]));
    float out[2][NY];
    for (int i = 0; i < 2; i++)
        TEST_OK(job[i].ctx, ndcl_tensor_read(y[i], out[i], NY));
    expect_close(out[1], out[0], NY, "the second context's step");
    /* A tensor of one context is refused by the other. */
    ck_assert_int_eq(ndcl_layer_forward(l[1], NDCL_TRAIN, x[0], &y[1]),
                     NDCL_ERR_INVALID_ARG);

    /* Each context reports only its own numerical flag. */
    float bad[NX];
    memcpy(bad, xs, sizeof bad);
    bad[NX / 2] = NAN;
    ndcl_tensor *xbad = test_tensor_from(job[1].ctx, 4, xshape, bad);
    TEST_OK(job[1].ctx, ndcl_layer_forward(l[1], NDCL_TRAIN, xbad, &y[1]));
    TEST_OK(job[0].ctx, ndcl_finish(job[0].ctx));
    ck_assert_int_eq(ndcl_finish(job[1].ctx), NDCL_ERR_NUMERICAL);
    ck_assert_int_eq(ndcl_layer_numerical_status(l[1]), NDCL_ERR_NUMERICAL);
    TEST_OK(job[0].ctx, ndcl_layer_numerical_status(l[0]));
    ndcl_tensor_destroy(xbad);
    for (int i = 0; i < 2; i++) {
        ndcl_layer_destroy(l[i]);
        ndcl_tensor_destroy(x[i]);
        ndcl_tensor_destroy(y[i]);
    }

    /* ... and from two threads, one context each. */
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, ctx_job_run, &job[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(job[i].s == NDCL_SUCCESS, "thread %d: %s", i, job[i].err);
        for (int step = 0; step < 3; step++)
            expect_close(job[i].y[step], alone.y[step], NY, "a thread's step");
        ndcl_context_destroy(job[i].ctx);
    }
    clReleaseMemObject(xb);
    app_close(&a);
}
END_TEST

/* -------------------------------------------- the application's threads */

typedef struct filler {
    cl_command_queue q;
    cl_mem m;
    int rounds, wrong;
} filler;

/* Fills its own buffer with the round's number, over and over, on the
 * shared queue, checking now and then with a blocking read. */
static void *filler_run(void *arg)
{
    filler *f = arg;
    for (int r = 1; r <= f->rounds; r++) {
        float v = (float)r, back = 0;
        if (clEnqueueFillBuffer(f->q, f->m, &v, sizeof v, 0, 64 * sizeof(float), 0, NULL,
                                NULL) != CL_SUCCESS)
            f->wrong++;
        if (r % 16 == 0 || r == f->rounds) {
            if (clEnqueueReadBuffer(f->q, f->m, CL_TRUE, 63 * sizeof(float), sizeof back,
                                    &back, 0, NULL, NULL) != CL_SUCCESS ||
                back != v)
                f->wrong++;
        }
    }
    return NULL;
}

START_TEST(another_thread_enqueues_on_the_queue)
{
    app a = app_open();
    float xs[NX];
    test_fill_uniform(xs, NX, 26, -1, 1);
    cl_mem xb = app_buffer(&a, NX, xs);
    static ctx_job alone, busy;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &alone.ctx));
    alone.xb = busy.xb = xb;
    ctx_job_run(&alone);
    ck_assert_msg(alone.s == NDCL_SUCCESS, "alone: %s", alone.err);
    busy.ctx = alone.ctx;

    filler f = {a.q, app_buffer(&a, 64, NULL), 400, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, filler_run, &f), 0);
    ctx_job_run(&busy);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(busy.s == NDCL_SUCCESS, "with the other thread: %s", busy.err);
    ck_assert_int_eq(f.wrong, 0);
    for (int step = 0; step < 3; step++)
        expect_close(busy.y[step], alone.y[step], NY, "a step beside the other thread");
    ndcl_context_destroy(alone.ctx);
    clReleaseMemObject(f.m);
    clReleaseMemObject(xb);
    app_close(&a);
}
END_TEST

/* ----------------------------------------------------- a second queue */

START_TEST(second_queue_ordered_by_events)
{
    app a = app_open();
    cl_int err;
    cl_command_queue q2 = clCreateCommandQueue(a.c, a.d, 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &ctx));
    ndcl_layer *l = conv_layer(ctx);
    float xs[NX], x2s[NX], y_ref[NY], y2_ref[NY], got[NY];
    test_fill_uniform(xs, NX, 27, -1, 1);
    test_fill_uniform(x2s, NX, 28, -1, 1);
    /* References, synchronised by the host. */
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xshape, xs), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, tx, &ty));
    TEST_OK(ctx, ndcl_tensor_read(ty, y_ref, NY));
    TEST_OK(ctx, ndcl_tensor_write(tx, x2s, NX));
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, tx, &ty));
    TEST_OK(ctx, ndcl_tensor_read(ty, y2_ref, NY));

    /* ndcl -> q2: ndcl's queue is held back by a user event, so only the
     * marker keeps q2's copy from reading y before the forward wrote it. */
    cl_mem xb = app_buffer(&a, NX, xs), yb = app_buffer(&a, NY, NULL);
    cl_mem zb = app_buffer(&a, NY, NULL);
    ndcl_tensor *x = wrap(ctx, xb, 4, xshape), *y = wrap(ctx, yb, 4, yshape);
    cl_event gate = clCreateUserEvent(a.c, &err), done;
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clEnqueueBarrierWithWaitList(a.q, 1, &gate, NULL), CL_SUCCESS);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
    ck_assert_int_eq(clEnqueueMarkerWithWaitList(a.q, 0, NULL, &done), CL_SUCCESS);
    ck_assert_int_eq(
        clEnqueueCopyBuffer(q2, yb, zb, 0, 0, NY * sizeof(float), 1, &done, NULL),
        CL_SUCCESS);
    ck_assert_int_eq(clFlush(q2), CL_SUCCESS);
    ck_assert_int_eq(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    read_mem(q2, zb, got, NY);
    expect_close(got, y_ref, NY, "q2's copy of ndcl's output");
    clReleaseEvent(gate);
    clReleaseEvent(done);

    /* q2 -> ndcl: q2's write is held back by a user event, so only the
     * barrier keeps the forward from reading x before it is written. */
    gate = clCreateUserEvent(a.c, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_event written;
    ck_assert_int_eq(clEnqueueWriteBuffer(q2, xb, CL_FALSE, 0, NX * sizeof(float), x2s, 1,
                                          &gate, &written),
                     CL_SUCCESS);
    ck_assert_int_eq(clFlush(q2), CL_SUCCESS);
    ck_assert_int_eq(clEnqueueBarrierWithWaitList(a.q, 1, &written, NULL), CL_SUCCESS);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_EVAL, x, &y));
    ck_assert_int_eq(clFlush(a.q), CL_SUCCESS);
    ck_assert_int_eq(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    TEST_OK(ctx, ndcl_tensor_read(y, got, NY));
    expect_close(got, y2_ref, NY, "ndcl's output of q2's input");
    clReleaseEvent(gate);
    clReleaseEvent(written);

    ndcl_tensor *all[] = {tx, ty, x, y};
    for (size_t i = 0; i < 4; i++)
        ndcl_tensor_destroy(all[i]);
    ndcl_layer_destroy(l);
    ndcl_context_destroy(ctx);
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    clReleaseMemObject(zb);
    clReleaseCommandQueue(q2);
    app_close(&a);
}
END_TEST

/* -------------------------------------------------- what blocks, what not */

/* Completes the user event after a delay unless told first; records
 * whether it had to. */
typedef struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cl_event gate;
    double seconds;
    bool released, fired;
} watchdog;

static void *watchdog_run(void *arg)
{
    watchdog *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)w->seconds;
    until.tv_nsec += (long)((w->seconds - (double)(time_t)w->seconds) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->released)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) break;
    if (!w->released) {
        w->fired = true;
        w->released = true;
        clSetUserEventStatus(w->gate, CL_COMPLETE);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void watchdog_start(watchdog *w, pthread_t *th, cl_event gate, double seconds)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->gate = gate;
    w->seconds = seconds;
    w->released = w->fired = false;
    ck_assert_int_eq(pthread_create(th, NULL, watchdog_run, w), 0);
}

/* Releases the gate (if the watchdog did not) and returns whether the
 * watchdog had to. */
static bool watchdog_stop(watchdog *w, pthread_t th)
{
    pthread_mutex_lock(&w->mu);
    if (!w->released) {
        w->released = true;
        clSetUserEventStatus(w->gate, CL_COMPLETE);
    }
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return w->fired;
}

/* Every call ndcl.h does not list as blocking, once. */
typedef struct work {
    ndcl_layer *conv, *lin, *ch;
    ndcl_tensor *x, *y, *dx, *dw, *X, *mean, *cov, *D, *dX, *P, *c, *xl, *yl, *yc;
} work;

static void enqueue_work(ndcl_context *ctx, work *k, ndcl_tensor *x)
{
    ndcl_conv2d_desc cd = ndcl_conv2d_desc_default(C, CO, 3);
    cd.padding = 1;
    cd.block = 2;
    ndcl_linear_desc ld = ndcl_linear_desc_default(NX / N, 5);
    ld.block = 8;
    ndcl_channel_desc chd = ndcl_channel_desc_default(3);
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &cd, &k->conv));
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &k->lin));
    TEST_OK(ctx, ndcl_channel_create(ctx, &chd, &k->ch));
    TEST_OK(ctx, ndcl_tensor_create(ctx, 2, (size_t[]){12, 8}, &k->X));
    TEST_OK(ctx, ndcl_layer_forward(k->conv, NDCL_TRAIN, x, &k->y));
    TEST_OK(ctx, ndcl_layer_backward(k->conv, k->y, &k->dx, &k->dw, NULL));
    TEST_OK(ctx, ndcl_layer_forward(k->conv, NDCL_EVAL, x, &k->y));
    TEST_OK(ctx, ndcl_layer_set_counter(k->conv, 0));
    TEST_OK(ctx, ndcl_layer_forward(k->ch, NDCL_TRAIN, x, &k->yc));
    TEST_OK(ctx, ndcl_layer_forward(k->ch, NDCL_EVAL, x, &k->yc));
    TEST_OK(ctx,
            ndcl_tensor_wrap(ctx, ndcl_tensor_cl_mem(x), 2, (size_t[]){N, NX / N}, &k->xl));
    TEST_OK(ctx, ndcl_layer_forward(k->lin, NDCL_TRAIN, k->xl, &k->yl));
    ndcl_patch_desc pd = {3, 3, 1, 1, 3, 1, 2};
    TEST_OK(ctx, ndcl_patches(ctx, x, &pd, &k->P));
    TEST_OK(ctx, ndcl_tensor_reshape(k->xl, 2, (size_t[]){NX / 8, 8}));
    TEST_OK(ctx, ndcl_covariance(ctx, k->xl, 1, 1e-3f, 1, &k->mean, &k->cov));
    TEST_OK(ctx, ndcl_isqrt(ctx, k->cov, 4, &k->D));
    TEST_OK(ctx, ndcl_whiten(ctx, k->xl, 1e-3f, 4, &k->mean, &k->D));
    TEST_OK(ctx, ndcl_whiten_backward(ctx, k->xl, 1e-3f, 4, k->mean, k->D, &k->dX));
    TEST_OK(ctx, ndcl_tensor_create(ctx, 2, (size_t[]){8, 8}, &k->c));
    TEST_OK(ctx, ndcl_gemm(ctx, 1, 0, 1.0f, k->xl, k->xl, 0.0f, k->c));
}

static void work_free(work *k)
{
    ndcl_layer_destroy(k->conv);
    ndcl_layer_destroy(k->lin);
    ndcl_layer_destroy(k->ch);
    ndcl_tensor *ts[] = {k->y,  k->dx, k->dw, k->X,  k->mean, k->cov, k->D,
                         k->dX, k->P,  k->c,  k->xl, k->yl,   k->yc};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        ndcl_tensor_destroy(ts[i]);
    memset(k, 0, sizeof *k);
}

START_TEST(only_documented_calls_block)
{
    app a = app_open();
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &ctx));
    float xs[NX];
    test_fill_uniform(xs, NX, 29, -1, 1);
    ndcl_tensor *x = test_tensor_from(ctx, 4, xshape, xs);
    /* Once unhindered: kernels (ndcl's and CLBlast's) compiled, and the
     * results to compare with. */
    work k = {0};
    enqueue_work(ctx, &k, x);
    float want_c[64], want_y[NY], got[NY];
    TEST_OK(ctx, ndcl_tensor_read(k.c, want_c, 64));
    TEST_OK(ctx, ndcl_tensor_read(k.y, want_y, NY));
    work_free(&k);

    /* The queue held by the application's event: none of these calls may
     * wait for it. */
    cl_int err;
    cl_event gate = clCreateUserEvent(a.c, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clEnqueueBarrierWithWaitList(a.q, 1, &gate, NULL), CL_SUCCESS);
    watchdog w;
    pthread_t th;
    watchdog_start(&w, &th, gate, 60.0);
    enqueue_work(ctx, &k, x);
    bool waited = watchdog_stop(&w, th);
    ck_assert_msg(!waited, "a call not documented as blocking waited for the queue");
    TEST_OK(ctx, ndcl_tensor_read(k.c, got, 64));
    expect_close(got, want_c, 64, "gemm after the gate");
    TEST_OK(ctx, ndcl_tensor_read(k.y, got, NY));
    expect_close(got, want_y, NY, "conv eval after the gate");
    TEST_OK(ctx, ndcl_finish(ctx));
    work_free(&k);
    clReleaseEvent(gate);

    /* A blocking call does wait: ndcl_tensor_read returns only once the
     * watchdog released the queue. */
    gate = clCreateUserEvent(a.c, &err);
    ck_assert_int_eq(clEnqueueBarrierWithWaitList(a.q, 1, &gate, NULL), CL_SUCCESS);
    watchdog_start(&w, &th, gate, 0.3);
    TEST_OK(ctx, ndcl_tensor_read(x, xs, NX));
    ck_assert_msg(watchdog_stop(&w, th), "ndcl_tensor_read returned before the queue ran");
    clReleaseEvent(gate);

    ndcl_tensor_destroy(x);
    ndcl_context_destroy(ctx);
    app_close(&a);
}
END_TEST

START_TEST(context_destroy_waits_for_callers_work)
{
    app a = app_open();
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &ctx));
    cl_mem m = app_buffer(&a, 16, NULL);
    cl_int err;
    cl_event gate = clCreateUserEvent(a.c, &err), filled;
    ck_assert_int_eq(err, CL_SUCCESS);
    float seven = 7;
    ck_assert_int_eq(clEnqueueFillBuffer(a.q, m, &seven, sizeof seven, 0,
                                         16 * sizeof(float), 1, &gate, &filled),
                     CL_SUCCESS);
    watchdog w;
    pthread_t th;
    watchdog_start(&w, &th, gate, 0.3);
    ndcl_context_destroy(ctx);
    cl_int st = CL_QUEUED;
    ck_assert_int_eq(
        clGetEventInfo(filled, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL),
        CL_SUCCESS);
    ck_assert_msg(st == CL_COMPLETE,
                  "ndcl_context_destroy returned before the caller's fill");
    ck_assert(watchdog_stop(&w, th));
    clReleaseEvent(gate);
    clReleaseEvent(filled);
    clReleaseMemObject(m);
    app_close(&a);
}
END_TEST

/* ------------------------------------------------------------ sub-buffers */

START_TEST(sub_buffers_wrap_as_tensors)
{
    app a = app_open();
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create_from_cl(a.c, a.d, a.q, &ctx));
    cl_uint align_bits = 0;
    ck_assert_int_eq(clGetDeviceInfo(a.d, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                                     &align_bits, NULL),
                     CL_SUCCESS);
    size_t align = align_bits / 8, xbytes = NX * sizeof(float);
    size_t yoff = (xbytes + align - 1) / align * align;
    float xs[NX], want[NY], got[NY];
    test_fill_uniform(xs, NX, 30, -1, 1);
    ndcl_layer *l = conv_layer(ctx);
    ndcl_tensor *tx = test_tensor_from(ctx, 4, xshape, xs), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));
    TEST_OK(ctx, ndcl_tensor_read(ty, want, NY));

    /* One allocation of the application's: x at its start, y further on. */
    cl_mem big = app_buffer(&a, yoff / sizeof(float) + NY, NULL);
    cl_int err;
    cl_buffer_region rx = {0, xbytes}, ry = {yoff, NY * sizeof(float)};
    cl_mem sx = clCreateSubBuffer(big, 0, CL_BUFFER_CREATE_TYPE_REGION, &rx, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_mem sy = clCreateSubBuffer(big, 0, CL_BUFFER_CREATE_TYPE_REGION, &ry, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ndcl_tensor *x = wrap(ctx, sx, 4, xshape), *y = wrap(ctx, sy, 4, yshape);
    TEST_OK(ctx, ndcl_tensor_write(x, xs, NX));
    ndcl_layer_destroy(l);
    l = conv_layer(ctx);
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, x, &y));
    TEST_OK(ctx, ndcl_tensor_read(y, got, NY));
    expect_close(got, want, NY, "forward on sub-buffers");
    /* The output landed at its offset in the parent allocation. */
    ck_assert_int_eq(clEnqueueReadBuffer(a.q, big, CL_TRUE, yoff, NY * sizeof(float), got,
                                         0, NULL, NULL),
                     CL_SUCCESS);
    expect_close(got, want, NY, "the parent buffer");
    /* A shape larger than the sub-buffer is refused. */
    ndcl_tensor *too = NULL;
    ck_assert_int_eq(ndcl_tensor_wrap(ctx, sy, 4, xshape, &too), NDCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(too);

    ndcl_layer_destroy(l);
    ndcl_tensor *ts[] = {tx, ty, x, y};
    for (size_t i = 0; i < 4; i++)
        ndcl_tensor_destroy(ts[i]);
    ndcl_context_destroy(ctx);
    clReleaseMemObject(sx);
    clReleaseMemObject(sy);
    clReleaseMemObject(big);
    app_close(&a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop");
    TEST_ADD(s, callers_kernels_between_calls_are_ordered);
    TEST_ADD(s, two_contexts_share_one_queue);
    TEST_ADD(s, another_thread_enqueues_on_the_queue);
    TEST_ADD(s, second_queue_ordered_by_events);
    TEST_ADD(s, only_documented_calls_block);
    TEST_ADD(s, context_destroy_waits_for_callers_work);
    TEST_ADD(s, sub_buffers_wrap_as_tensors);
    return test_run(s);
}
