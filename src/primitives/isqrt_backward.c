/* isqrt_backward.c - the gradient through the unrolled coupled Newton-Schulz
 * loop (isqrt.c) over the iterates and factors ndcl_isqrt_ns saved: the
 * loop's tangent as symmetric sums of products for short loops, reverse
 * mode for long ones, then the Frobenius norm's path. */
#include "primitives/backward.h"
#include "primitives/launch.h"

/* The tangent form (run_tangent) is as accurate as reverse mode up to here
 * and does 15 instead of 26 product-equivalents at 5 iterations. Past it,
 * its symmetric projections feed a mode of the loop's linearisation that
 * grows once the large eigenvalues have converged: measured in float32
 * against a float64 reverse-mode reference (condition 1e4 to 1e7, n 16 to
 * 576, and a 576-wide patch covariance), the relative error equals reverse
 * mode's through 13 iterations, is 4x at 15 and diverges by 20. Longer
 * loops take reverse mode. */
enum { NS_TANGENT_MAX_ITER = 10 };

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

/* c = alpha * (a1·b1 + a2·b2) for every matrix of the batch (a2, b2 may
 * be NULL), a symmetric sum by construction (see run). */
static ndcl_status sym(const nsb *s, float alpha, cl_mem a1, size_t a1o, cl_mem b1,
                       size_t b1o, cl_mem a2, size_t a2o, cl_mem b2, size_t b2o, cl_mem c,
                       size_t co)
{
    return ndcl_blas_gemm_sym(s->ctx, s->n, s->batch, alpha, a1, a1o, b1, b1o, a2, a2o, b2,
                              b2o, c, co);
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

/* The Frobenius norm's path, once G (at g_off of g) holds the gradient
 * with respect to Y_0 and sums[0 .. batch) holds s1 = <dD, D>: s2 = <G, Y_0>,
 * then dA = G/a + da·A/a with da = -(s1/2 + s2)/a (A/a = Y_0). */
static ndcl_status norm_path(const nsb *s, cl_mem g, size_t g_off, cl_mem dA, cl_mem sums)
{
    const int n = (int)s->n, batch = (int)s->batch;
    const size_t y0 = off_y(s, 0);
    NDCL_TRY(dot(s, g, g_off, s->saved, y0, sums, batch));
    const int y0_off = (int)y0, g_o = (int)g_off;
    const ndcl_arg args[] = {NDCL_ARG(n),    NDCL_ARG(batch),    NDCL_ARG(g),
                             NDCL_ARG(g_o),  NDCL_ARG(s->saved), NDCL_ARG(y0_off),
                             NDCL_ARG(sums), NDCL_ARG(dA)};
    return prims_launch3(s->ctx, "ndcl_bw_ns_final", s->n, s->n, s->batch, args, 8);
}

/* Forward, per matrix: a = ||A||_F, Y_0 = A/a, Z_0 = I, and for k < n_iter
 * T_k = (3I - Z_k Y_k)/2, Y_{k+1} = Y_k T_k, Z_{k+1} = T_k Z_k; D = Z_n/√a.
 *
 * Z_n = f(Y_0) for a polynomial f (every iterate is one), and for a
 * symmetric Y_0 the adjoint of f's derivative is the derivative itself:
 * <G, L(Y,E)> = <L(Y,G), E>. So the gradient that reverse mode would
 * propagate back through the loop (6 products an iteration) is the
 * loop's forward tangent in the direction G = dD/√a (3 sums of two
 * products). Only its symmetric part is kept, by taking the direction
 * E = sym(G): A is symmetric and its gradient reaches the covariance's
 * inputs only through dA + dAᵀ (cov_backward), and L(Y, sym G) =
 * sym L(Y, G). Every tangent is then the derivative of a symmetric
 * iterate along a symmetric path, hence symmetric, and each sum below is
 * one triangle's work on the OpenBLAS engine. With dY_0 = E, dZ_0 = 0:
 *   dT_k     = -½ (dZ_k Y_k + Z_k dY_k)     (k = 0: -½ E)
 *   dY_{k+1} = dY_k T_k + Y_k dT_k           (not needed for k = n-1)
 *   dZ_{k+1} = dT_k Z_k + T_k dZ_k           (k = 0: dT_0)
 * and R = dZ_n stands for dY_0 of reverse mode: dA = R/a + da·A/a with
 * da = -½<dD, D>/a - <R, A>/a², where A/a = Y_0. */
static ndcl_status run_tangent(const nsb *s, int n_iter, cl_mem dD, cl_mem dA, cl_mem dT,
                               cl_mem dY, cl_mem dZ, cl_mem sums)
{
    ndcl_context *ctx = s->ctx;
    const size_t bnn = s->batch * s->nn; /* one batch of matrices */
    const int n = (int)s->n, batch = (int)s->batch;
    {
        /* dY_0 = E into dY's half 0, dT_0 = dZ_1 = -E/2 into dZ's half 1. */
        const ndcl_arg args[] = {NDCL_ARG(n),        NDCL_ARG(batch), NDCL_ARG(dD),
                                 NDCL_ARG(s->saved), NDCL_ARG(dY),    NDCL_ARG(dZ)};
        NDCL_TRY(
            prims_launch3(ctx, "ndcl_bw_ns_tangent_start", s->n, s->n, s->batch, args, 6));
    }
    if (n_iter > 1) /* dY_1 = dY_0 T_0 + Y_0 dT_0 */
        NDCL_TRY(sym(s, 1.0f, dY, 0, s->saved, off_t(s, 0), s->saved, off_y(s, 0), dZ, bnn,
                     dY, bnn));
    /* dY and dZ ping-pong between two halves: cur holds step k. */
    int cur = 1;
    for (int k = 1; k < n_iter; k++) {
        const size_t yk = off_y(s, k), zk = off_z(s, k), tk = off_t(s, k);
        const size_t c = (size_t)cur * bnn, nx = (size_t)(1 - cur) * bnn;
        NDCL_TRY(sym(s, -0.5f, dZ, c, s->saved, yk, s->saved, zk, dY, c, dT, 0));
        if (k + 1 < n_iter)
            NDCL_TRY(sym(s, 1.0f, dY, c, s->saved, tk, s->saved, yk, dT, 0, dY, nx));
        NDCL_TRY(sym(s, 1.0f, dT, 0, s->saved, zk, s->saved, tk, dZ, c, dZ, nx));
        cur = 1 - cur;
    }
    /* R = dZ_n is in dZ's half cur. */
    return norm_path(s, dZ, (size_t)cur * bnn, dA, sums);
}

/* Reverse mode, for loops longer than NS_TANGENT_MAX_ITER: with dY_n = 0
 * and dZ_n = dD/√a,
 *   dT_k = Y_kᵀ dY_{k+1} + dZ_{k+1} Z_kᵀ
 *   dY_k = dY_{k+1} T_kᵀ - ½ Z_kᵀ dT_k
 *   dZ_k = T_kᵀ dZ_{k+1} - ½ dT_k Y_kᵀ   (not needed for k = 0: Z_0 = I)
 * then dA = dY_0/a + da·A/a with da = -½<dD, D>/a - <dY_0, A>/a², where
 * A/a = Y_0. */
static ndcl_status run_reverse(const nsb *s, int n_iter, cl_mem dD, cl_mem dA, cl_mem dT,
                               cl_mem dY, cl_mem dZ, cl_mem sums)
{
    ndcl_context *ctx = s->ctx;
    const size_t bnn = s->batch * s->nn; /* one batch of matrices */
    const int n = (int)s->n, batch = (int)s->batch;
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
    /* dY_0 is in half cur. */
    return norm_path(s, dY, (size_t)cur * bnn, dA, sums);
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
    /* s1 = <dD, D> before anything else reads dD. */
    if (st == NDCL_SUCCESS) st = dot(&s, dD, 0, D, 0, sums, 0);
    if (st == NDCL_SUCCESS)
        st = n_iter <= NS_TANGENT_MAX_ITER
                 ? run_tangent(&s, n_iter, dD, dA, dT, dY, dZ, sums)
                 : run_reverse(&s, n_iter, dD, dA, dT, dY, dZ, sums);
    prims_release(dT);
    prims_release(dY);
    prims_release(dZ);
    prims_release(sums);
    return st;
}
