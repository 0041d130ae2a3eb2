/* test_lifetime.c - contexts, tensors and layers destroyed in any order:
 * every tensor and layer keeps its context alive, calls on them keep
 * working after the caller destroyed the context, and the last release
 * frees it and hands back the caller's OpenCL objects. tools/ci-extra.sh
 * also runs this suite under valgrind memcheck. */
#include <stdbool.h>
#include <time.h>

#include "harness.h"
#include "ndcl_cl.h"

/* The caller's own OpenCL objects, on the device the harness chose. */
typedef struct cl_env {
    cl_device_id d;
    cl_context c;
    cl_command_queue q;
} cl_env;

static cl_env env_open(void)
{
    cl_env e;
    cl_int err;
    e.d = ndcl_context_cl_device(test_ctx());
    e.c = clCreateContext(NULL, 1, &e.d, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    e.q = clCreateCommandQueue(e.c, e.d, 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    return e;
}

static void env_close(cl_env *e)
{
    clReleaseCommandQueue(e->q);
    clReleaseContext(e->c);
}

static cl_uint ctx_refs(cl_context c)
{
    cl_uint n = 0;
    ck_assert_int_eq(clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof n, &n, NULL),
                     CL_SUCCESS);
    return n;
}

#define NB 5 /* batch */
#define F 6  /* in_features */
#define FO 4 /* out_features */

/* A linear layer with known weights and a training step's results. */
typedef struct world {
    ndcl_context *ctx;
    ndcl_layer *l;
    ndcl_tensor *x, *y; /* x created by ndcl, y wrapped around ybuf */
    cl_mem ybuf;
} world;

static float xs[NB * F], ws[FO * F], bs[FO];

static void world_make(const cl_env *e, world *w)
{
    test_fill_uniform(xs, NB * F, 1, -1, 1);
    test_fill_uniform(ws, FO * F, 2, -0.5f, 0.5f);
    test_fill_uniform(bs, FO, 3, -0.5f, 0.5f);
    memset(w, 0, sizeof *w);
    TEST_OK(NULL, ndcl_context_create_from_cl(e->c, e->d, e->q, &w->ctx));
    ndcl_linear_desc d = ndcl_linear_desc_default(F, FO);
    d.block = 3;
    TEST_OK(w->ctx, ndcl_linear_create(w->ctx, &d, &w->l));
    TEST_OK(w->ctx, ndcl_layer_set_param(w->l, "weight", ws, FO * F));
    TEST_OK(w->ctx, ndcl_layer_set_param(w->l, "bias", bs, FO));
    w->x = test_tensor_from(w->ctx, 2, (size_t[]){NB, F}, xs);
    cl_int err;
    w->ybuf = clCreateBuffer(e->c, CL_MEM_READ_WRITE, NB * FO * sizeof(float), NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    TEST_OK(w->ctx, ndcl_tensor_wrap(w->ctx, w->ybuf, 2, (size_t[]){NB, FO}, &w->y));
    /* The wrapped tensor holds the buffer: the caller's reference may go. */
    clReleaseMemObject(w->ybuf);
    TEST_OK(w->ctx, ndcl_layer_forward(w->l, NDCL_TRAIN, w->x, &w->y));
}

enum { O_CTX, O_LAYER, O_X, O_Y, N_OBJ };
static const char *const obj_name[] = {"context", "layer", "x", "y"};

/* One call of each kind on every object still alive, checked against the
 * results of the same calls made before anything was destroyed. */
static void exercise(world *w, const bool *alive, const float *y_ref, const float *ye_ref,
                     const float *rm_ref)
{
    float buf[NB * F];
    if (alive[O_LAYER]) {
        ndcl_context *lc = ndcl_layer_context(w->l);
        TEST_OK(lc, ndcl_layer_get_param(w->l, "running_mean", buf, 3));
        ck_assert_mem_eq(buf, rm_ref, 3 * sizeof(float));
        TEST_OK(lc, ndcl_layer_numerical_status(w->l));
        /* A new tensor on the layer's context, also when the caller's
         * handle is gone. */
        ndcl_tensor *x2 = test_tensor_from(lc, 2, (size_t[]){NB, F}, xs), *y2 = NULL;
        TEST_OK(lc, ndcl_layer_forward(w->l, NDCL_EVAL, x2, &y2));
        TEST_OK(lc, ndcl_tensor_read(y2, buf, NB * FO));
        ck_assert_float_eq_tol(test_rel_err_ff(buf, ye_ref, NB * FO, 1e-6), 0, 1e-6);
        TEST_OK(lc, ndcl_finish(lc));
        ndcl_tensor_destroy(x2);
        ndcl_tensor_destroy(y2);
    }
    if (alive[O_X]) {
        TEST_OK(ndcl_tensor_context(w->x), ndcl_tensor_read(w->x, buf, NB * F));
        ck_assert_mem_eq(buf, xs, sizeof xs);
    }
    if (alive[O_Y]) {
        TEST_OK(ndcl_tensor_context(w->y), ndcl_tensor_read(w->y, buf, NB * FO));
        ck_assert_float_eq_tol(test_rel_err_ff(buf, y_ref, NB * FO, 1e-6), 0, 1e-6);
    }
}

static void destroy(world *w, int obj)
{
    switch (obj) {
    case O_CTX: ndcl_context_destroy(w->ctx); break;
    case O_LAYER: ndcl_layer_destroy(w->l); break;
    case O_X: ndcl_tensor_destroy(w->x); break;
    default: ndcl_tensor_destroy(w->y); break;
    }
}

/* The context's reference count, once PoCL has let go of the events of
 * finished commands (it frees them in the background, later on a loaded
 * machine or under valgrind: up to 30 s, returning as soon as it is want). */
static cl_uint settled_refs(cl_context c, cl_uint want)
{
    cl_uint n = ctx_refs(c);
    for (int i = 0; i < 6000 && n != want; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        n = ctx_refs(c);
    }
    return n;
}

/* The context's reference count once it has stopped changing (unchanged
 * for 300 ms, or after 10 s): PoCL's events of finished commands hold
 * references until its worker frees them, later on a slower build or a
 * loaded machine. */
static cl_uint stable_refs(cl_context c)
{
    cl_uint n = ctx_refs(c);
    for (int i = 0, same = 0; i < 2000 && same < 60; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        cl_uint m = ctx_refs(c);
        same = m == n ? same + 1 : 0;
        n = m;
    }
    return n;
}

/* Every order of destroying the four objects that starts with first: six
 * of the 24, one test case per first object (CK_RUN_CASE runs one). */
static void orders_starting_with(int first)
{
    cl_env e = env_open();
    /* The reference results: one training step, before any destroy. */
    float y_ref[NB * FO], ye_ref[NB * FO], rm_ref[3];
    world w;
    world_make(&e, &w);
    TEST_OK(w.ctx, ndcl_tensor_read(w.y, y_ref, NB * FO));
    TEST_OK(w.ctx, ndcl_layer_get_param(w.l, "running_mean", rm_ref, 3));
    ndcl_tensor *ye = NULL;
    TEST_OK(w.ctx, ndcl_layer_forward(w.l, NDCL_EVAL, w.x, &ye));
    TEST_OK(w.ctx, ndcl_tensor_read(ye, ye_ref, NB * FO));
    ndcl_tensor_destroy(ye);
    ndcl_layer_destroy(w.l);
    ndcl_tensor_destroy(w.x);
    ndcl_tensor_destroy(w.y);
    ndcl_context_destroy(w.ctx);
    /* CLBlast's program cache now holds the context too, for good; the
     * events of the commands above may still hold it for a while. */
    ck_assert_int_eq(clFinish(e.q), CL_SUCCESS);
    cl_uint rc0 = stable_refs(e.c);

    int rest[N_OBJ - 1], nr = 0, orders = 0;
    for (int o = 0; o < N_OBJ; o++)
        if (o != first) rest[nr++] = o;
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                    {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int p = 0; p < 6; p++) {
        int perm[N_OBJ] = {first, rest[perms[p][0]], rest[perms[p][1]], rest[perms[p][2]]};
        world_make(&e, &w);
        bool alive[N_OBJ] = {true, true, true, true};
        exercise(&w, alive, y_ref, ye_ref, rm_ref);
        for (int k = 0; k < N_OBJ; k++) {
            destroy(&w, perm[k]);
            alive[perm[k]] = false;
            exercise(&w, alive, y_ref, ye_ref, rm_ref);
            /* The caller's cl_context is held until the last object goes. */
            if (k < N_OBJ - 1)
                ck_assert_msg(ctx_refs(e.c) > rc0,
                              "destroying %s, %s, %s, %s: released early",
                              obj_name[perm[0]], obj_name[perm[1]], obj_name[perm[2]],
                              obj_name[perm[3]]);
        }
        ck_assert_int_eq(clFinish(e.q), CL_SUCCESS);
        cl_uint rc = settled_refs(e.c, rc0);
        ck_assert_msg(rc == rc0, "destroying %s, %s, %s, %s left %u references (had %u)",
                      obj_name[perm[0]], obj_name[perm[1]], obj_name[perm[2]],
                      obj_name[perm[3]], rc, rc0);
        orders++;
    }
    ck_assert_int_eq(orders, 6);
    env_close(&e);
}

START_TEST(orders_context_first)
{
    orders_starting_with(O_CTX);
}
END_TEST

START_TEST(orders_layer_first)
{
    orders_starting_with(O_LAYER);
}
END_TEST

START_TEST(orders_x_first)
{
    orders_starting_with(O_X);
}
END_TEST

START_TEST(orders_y_first)
{
    orders_starting_with(O_Y);
}
END_TEST

/* The teardown of an error path: the context goes first, then a conv layer
 * in the middle of a training step is still read, differentiated and
 * saved, and its outputs read. */
START_TEST(context_destroyed_first)
{
    ndcl_context *ctx = NULL;
    TEST_OK(NULL, ndcl_context_create(NULL, &ctx));
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 3, 3);
    d.padding = 1;
    d.block = 2;
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &d, &l));
    float w[3 * 4 * 9], x[2 * 4 * 5 * 5];
    test_fill_uniform(w, 108, 4, -0.5f, 0.5f);
    test_fill_uniform(x, 200, 5, -1, 1);
    TEST_OK(ctx, ndcl_layer_set_param(l, "weight", w, 108));
    ndcl_tensor *tx = test_tensor_from(ctx, 4, (size_t[]){2, 4, 5, 5}, x), *ty = NULL;
    TEST_OK(ctx, ndcl_layer_forward(l, NDCL_TRAIN, tx, &ty));

    ndcl_context_destroy(ctx);

    /* The calls of the report that led here: get_param and the rest work
     * on the context the layer keeps alive. */
    ndcl_context *lc = ndcl_layer_context(l);
    ck_assert_ptr_eq(lc, ctx);
    float back[108];
    TEST_OK(lc, ndcl_layer_get_param(l, "weight", back, 108));
    ck_assert_mem_eq(back, w, sizeof w);
    ndcl_tensor *dx = NULL, *dw = NULL;
    TEST_OK(lc, ndcl_layer_backward(l, ty, &dx, &dw, NULL));
    float g[108];
    TEST_OK(lc, ndcl_tensor_read(dw, g, 108));
    double norm = 0;
    for (int i = 0; i < 108; i++)
        norm += (double)g[i] * g[i];
    ck_assert_msg(norm > 0 && isfinite(norm), "dweight after the context's destroy: %g",
                  norm);
    TEST_OK(lc, ndcl_layer_forward(l, NDCL_EVAL, tx, &ty));
    void *file = NULL;
    size_t size = 0;
    TEST_OK(lc, ndcl_layer_save_memory(l, &file, &size));
    ndcl_free(file);
    TEST_OK(lc, ndcl_finish(lc));
    ck_assert_str_eq(ndcl_context_last_error(lc), "");

    /* Objects gone in a mixed order; the last one frees the context. */
    ndcl_tensor_destroy(dw);
    ndcl_layer_destroy(l);
    TEST_OK(lc, ndcl_tensor_read(tx, x, 200));
    ndcl_tensor_destroy(tx);
    ndcl_tensor_destroy(dx);
    float y_eval[150];
    TEST_OK(lc, ndcl_tensor_read(ty, y_eval, 150));
    for (int i = 0; i < 150; i++)
        ck_assert(isfinite(y_eval[i]));
    ndcl_tensor_destroy(ty);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lifetime");
    TEST_ADD(s, orders_context_first);
    TEST_ADD(s, orders_layer_first);
    TEST_ADD(s, orders_x_first);
    TEST_ADD(s, orders_y_first);
    TEST_ADD(s, context_destroyed_first);
    return test_run(s);
}
