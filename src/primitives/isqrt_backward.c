/* isqrt_backward.c - the adjoint of the unrolled coupled Newton-Schulz loop
 * (isqrt.c): reverse iterations of batched GEMMs over the iterates and
 * factors ndcl_isqrt_ns saved, then the Frobenius norm's path. */
#include "primitives/backward.h"
#include "primitives/launch.h"

typedef struct nsb {
    ndcl_context *ctx;
    size_t batch, n, nn;
    cl_mem saved;
} nsb;

/* Element offsets of Y_k, Z_k and T_k in the saved area (ndcl_isqrt_ns's
 * layout). */
static size_t off_y(const nsb *s, int k)
{
    return s->batch + 3 * (size_t)k * s->batch * s->nn;
}
static size_t off_z(const nsb *s, int k)
{
    return s->batch + (3 * (size_t)k + 1) * s->batch * s->nn;
}
static size_t off_t(const nsb *s, int k)
{
    return s->batch + (3 * (size_t)k + 2) * s->batch * s->nn;
}

/* c = alpha * op(a) * op(b) + beta * c for every matrix of the batch. */
static ndcl_status bmm(const nsb *s, bool ta, bool tb, float alpha, cl_mem a, size_t ao,
                       cl_mem b, size_t bo, float beta, cl_mem c, size_t co)
{
    return ndcl_blas_gemm_batched(s->ctx, ta, tb, s->n, s->n, s->n, alpha, a, ao, s->n,
                                  s->nn, b, bo, s->n, s->nn, beta, c, co, s->n, s->nn,
                                  s->batch);
}

/* out[out_off + b] = <a_b, c_b> for every matrix b. */
static ndcl_status dot(const nsb *s, cl_mem a, size_t ao, cl_mem c, size_t co, cl_mem out,
                       int out_off)
{
    ndcl_context *ctx = s->ctx;
    size_t wg, max_items[3] = {1, 1, 1};
    NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_bw_dot", 256, sizeof(float), &wg));
    NDCL_TRY(prims_item_sizes(ctx, max_items));
    while (wg > max_items[0])
        wg /= 2;
    const int nn = (int)s->nn, a_off = (int)ao, c_off = (int)co;
    const ndcl_arg args[] = {
        NDCL_ARG(nn),    NDCL_ARG(a),   NDCL_ARG(a_off),   NDCL_ARG(c),
        NDCL_ARG(c_off), NDCL_ARG(out), NDCL_ARG(out_off), NDCL_LOCAL(wg * sizeof(float))};
    const size_t global[2] = {wg, s->batch}, local[2] = {wg, 1};
    return ndcl_launch(ctx, "ndcl_bw_dot", 2, global, local, args, 8);
}

/* Forward, per matrix: a = ||A||_F, Y_0 = A/a, Z_0 = I, and for k < n_iter
 * T_k = (3I - Z_k Y_k)/2, Y_{k+1} = Y_k T_k, Z_{k+1} = T_k Z_k; D = Z_n/√a.
 * Reverse, with dY_n = 0 and dZ_n = dD/√a:
 *   dT_k = Y_kᵀ dY_{k+1} + dZ_{k+1} Z_kᵀ
 *   dY_k = dY_{k+1} T_kᵀ - ½ Z_kᵀ dT_k
 *   dZ_k = T_kᵀ dZ_{k+1} - ½ dT_k Y_kᵀ   (not needed for k = 0: Z_0 = I)
 * then dA = dY_0/a + da·A/a with da = -½<dD, D>/a - <dY_0, A>/a², where
 * A/a = Y_0. */
static ndcl_status run(const nsb *s, int n_iter, cl_mem D, cl_mem dD, cl_mem dA, cl_mem dT,
                       cl_mem dY, cl_mem dZ, cl_mem sums)
{
    ndcl_context *ctx = s->ctx;
    const size_t bnn = s->batch * s->nn; /* one batch of matrices */
    const int n = (int)s->n, batch = (int)s->batch;
    /* s1 = <dD, D> before anything else reads dD. */
    NDCL_TRY(dot(s, dD, 0, D, 0, sums, 0));
    {
        const ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(batch), NDCL_ARG(dD),
                                 NDCL_ARG(s->saved), NDCL_ARG(dZ)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_bw_ns_start", s->n, s->n, s->batch, args, 5));
    }
    /* dY and dZ ping-pong between two halves: cur holds step k+1. */
    int cur = 0;
    for (int k = n_iter - 1; k >= 0; k--) {
        const size_t yk = off_y(s, k), zk = off_z(s, k), tk = off_t(s, k);
        const size_t c = (size_t)cur * bnn, nx = (size_t)(1 - cur) * bnn;
        const bool have_dy = k < n_iter - 1; /* dY_n = 0: Y_n feeds nothing */
        cl_mem T = s->saved; /* T_k = 1.5 I - ½ Z_k Y_k, as the forward kept it */
        /* dT = dZ_{k+1} Z_kᵀ (+ Y_kᵀ dY_{k+1}). */
        NDCL_TRY(bmm(s, false, true, 1.0f, dZ, c, s->saved, zk, 0.0f, dT, 0));
        if (have_dy) NDCL_TRY(bmm(s, true, false, 1.0f, s->saved, yk, dY, c, 1.0f, dT, 0));
        /* dY_k = -½ Z_kᵀ dT (+ dY_{k+1} T_kᵀ). */
        NDCL_TRY(bmm(s, true, false, -0.5f, s->saved, zk, dT, 0, 0.0f, dY, nx));
        if (have_dy) NDCL_TRY(bmm(s, false, true, 1.0f, dY, c, T, tk, 1.0f, dY, nx));
        if (k > 0) {
            /* dZ_k = T_kᵀ dZ_{k+1} - ½ dT Y_kᵀ. */
            NDCL_TRY(bmm(s, true, false, 1.0f, T, tk, dZ, c, 0.0f, dZ, nx));
            NDCL_TRY(bmm(s, false, true, -0.5f, dT, 0, s->saved, yk, 1.0f, dZ, nx));
        }
        cur = 1 - cur;
    }
    /* dY_0 is in half cur; s2 = <dY_0, Y_0>. */
    const size_t dy0 = (size_t)cur * bnn, y0 = off_y(s, 0);
    NDCL_TRY(dot(s, dY, dy0, s->saved, y0, sums, batch));
    const int y0_off = (int)y0, dy0_off = (int)dy0;
    const ndcl_arg args[] = {NDCL_ARG(n),       NDCL_ARG(batch),    NDCL_ARG(dY),
                             NDCL_ARG(dy0_off), NDCL_ARG(s->saved), NDCL_ARG(y0_off),
                             NDCL_ARG(sums),    NDCL_ARG(dA)};
    return prims_launch3(ctx, "ndcl_bw_ns_final", s->n, s->n, s->batch, args, 8);
}

ndcl_status ndcl_isqrt_ns_backward(ndcl_context *ctx, size_t batch, size_t n, int n_iter,
                                   cl_mem saved, cl_mem D, cl_mem dD, cl_mem dA)
{
    if (batch == 0 || n == 0 || n_iter < 1)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "isqrt backward of %zu matrices %zu x %zu with n_iter=%d", batch,
                         n, n, n_iter);
    size_t nn, total;
    if (!ndcl_mul_ok(n, n, &nn) || !ndcl_mul_ok(nn, batch, &total) ||
        ndcl_isqrt_saved_size(batch, n, n_iter) > INT_MAX ||
        !prims_fit_int(2 * total, n, batch))
        return ndcl_fail(
            ctx, NDCL_ERR_UNSUPPORTED,
            "isqrt backward of %zu matrices %zu x %zu: more than 2^31-1 elements", batch, n,
            n);
    nsb s = {ctx, batch, n, nn, saved};
    cl_mem dT = NULL, dY = NULL, dZ = NULL, sums = NULL;
    ndcl_status st = prims_buffer(ctx, total, &dT);
    if (st == NDCL_SUCCESS) st = prims_buffer(ctx, 2 * total, &dY);
    if (st == NDCL_SUCCESS) st = prims_buffer(ctx, 2 * total, &dZ);
    if (st == NDCL_SUCCESS) st = prims_buffer(ctx, 2 * batch, &sums);
    if (st == NDCL_SUCCESS) st = run(&s, n_iter, D, dD, dA, dT, dY, dZ, sums);
    prims_release(dT);
    prims_release(dY);
    prims_release(dZ);
    prims_release(sums);
    return st;
}
