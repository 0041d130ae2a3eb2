/* isqrt.c - coupled Newton-Schulz inverse square root of a batch of
 * matrices (Y0 = A/‖A‖, Z0 = I, T = ½(3I - Z·Y), Y <- Y·T, Z <- T·Z,
 * D = Z/√‖A‖): batched GEMMs for the products, kernels for the rest, the
 * norms kept on the device. */
#include "primitives/primitives.h"
#include "primitives/launch.h"

size_t ndcl_isqrt_saved_size(size_t batch, size_t n, int n_iter)
{
    return batch + 3 * (size_t)(n_iter > 0 ? n_iter : 0) * batch * n * n;
}

/* Where a matrix iterate lives: buffer and element offset. */
typedef struct ns_loc {
    cl_mem mem;
    size_t off;
} ns_loc;

typedef struct ns_state {
    size_t batch, n, nn; /* nn = n*n, one matrix */
    int n_iter;
    cl_mem saved, tY, tZ, D, T;
} ns_state;

/* Y_k, Z_k and T_k of iteration k: in the saved area when there is one
 * (so that nothing is copied and the backward recomputes no product),
 * else Y and Z ping-ponging in temporaries and T in one; Z_n, the
 * unscaled result, is written straight into D. */
static size_t saved_off(const ns_state *s, int k, int which)
{
    return s->batch + (3 * (size_t)k + (size_t)which) * s->batch * s->nn;
}

static ns_loc loc_y(const ns_state *s, int k)
{
    if (s->saved) return (ns_loc){s->saved, saved_off(s, k, 0)};
    return (ns_loc){s->tY, (size_t)(k % 2) * s->batch * s->nn};
}

static ns_loc loc_z(const ns_state *s, int k)
{
    if (k == s->n_iter) return (ns_loc){s->D, 0};
    if (s->saved) return (ns_loc){s->saved, saved_off(s, k, 1)};
    return (ns_loc){s->tZ, (size_t)(k % 2) * s->batch * s->nn};
}

static ns_loc loc_t(const ns_state *s, int k)
{
    if (s->saved) return (ns_loc){s->saved, saved_off(s, k, 2)};
    return (ns_loc){s->T, 0};
}

/* c = alpha * a * b for every matrix of the batch. */
static ndcl_status bmm(ndcl_context *ctx, const ns_state *s, float alpha, ns_loc a,
                       ns_loc b, ns_loc c)
{
    return ndcl_blas_gemm_batched(ctx, false, false, s->n, s->n, s->n, alpha, a.mem, a.off,
                                  s->n, s->nn, b.mem, b.off, s->n, s->nn, 0.0f, c.mem,
                                  c.off, s->n, s->nn, s->batch);
}

static ndcl_status run(ndcl_context *ctx, const ns_state *s, cl_mem A, cl_mem norm,
                       int norm_off)
{
    const int n = (int)s->n, batch = (int)s->batch, nn = (int)s->nn;

    /* a = ||A||_F per matrix. */
    {
        size_t wg, max_items[3] = {1, 1, 1};
        NDCL_TRY(ndcl_kernel_wg_size(ctx, "ndcl_ns_norm", 256, sizeof(float), &wg));
        NDCL_TRY(prims_item_sizes(ctx, max_items));
        while (wg > max_items[0])
            wg /= 2;
        const ndcl_arg args[] = {NDCL_ARG(nn),        NDCL_ARG(A),
                                 NDCL_ARG(norm),      NDCL_ARG(norm_off),
                                 NDCL_ARG(ctx->flag), NDCL_LOCAL(wg * sizeof(float))};
        const size_t global[2] = {wg, s->batch}, local[2] = {wg, 1};
        NDCL_TRY(ndcl_launch(ctx, "ndcl_ns_norm", 2, global, local, args, 6));
    }
    /* Iteration 0 without products: Y0 = A/a, Z1 = T0 = (3I - Y0)/2, Z0 = I
     * (Z0 and T0 only when saved). */
    {
        ns_loc y0 = loc_y(s, 0), z1 = loc_z(s, 1);
        ns_loc z0 = s->saved ? loc_z(s, 0) : (ns_loc){z1.mem, 0};
        ns_loc t0 = s->saved ? loc_t(s, 0) : (ns_loc){z1.mem, 0};
        const int y_off = (int)y0.off, z1_off = (int)z1.off;
        const int z0_off = s->saved ? (int)z0.off : -1;
        const int t0_off = s->saved ? (int)t0.off : -1;
        const ndcl_arg args[] = {NDCL_ARG(n),      NDCL_ARG(batch),    NDCL_ARG(A),
                                 NDCL_ARG(norm),   NDCL_ARG(norm_off), NDCL_ARG(y0.mem),
                                 NDCL_ARG(y_off),  NDCL_ARG(z0.mem),   NDCL_ARG(z0_off),
                                 NDCL_ARG(z1.mem), NDCL_ARG(z1_off),   NDCL_ARG(t0.mem),
                                 NDCL_ARG(t0_off)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_ns_init", s->n, s->n, s->batch, args, 13));
        if (s->n_iter > 1) NDCL_TRY(bmm(ctx, s, 1.0f, y0, z1, loc_y(s, 1)));
    }
    for (int k = 1; k < s->n_iter; k++) {
        /* T = (3I - Z·Y)/2 as -Z·Y/2 (exact scaling) plus 1.5 on the diagonal. */
        const ns_loc t = loc_t(s, k);
        NDCL_TRY(bmm(ctx, s, -0.5f, loc_z(s, k), loc_y(s, k), t));
        const float three_halves = 1.5f;
        const int t_off = (int)t.off;
        const ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(batch), NDCL_ARG(three_halves),
                                 NDCL_ARG(t.mem), NDCL_ARG(t_off)};
        NDCL_TRY(prims_launch3(ctx, "ndcl_ns_diag_add", s->n, s->batch, 1, args, 5));
        /* The last Y is never used: its product is skipped. */
        if (k + 1 < s->n_iter) NDCL_TRY(bmm(ctx, s, 1.0f, loc_y(s, k), t, loc_y(s, k + 1)));
        NDCL_TRY(bmm(ctx, s, 1.0f, t, loc_z(s, k), loc_z(s, k + 1)));
    }
    /* D = Z_n / sqrt(a). */
    const ndcl_arg args[] = {NDCL_ARG(n), NDCL_ARG(batch), NDCL_ARG(s->D), NDCL_ARG(norm),
                             NDCL_ARG(norm_off)};
    return prims_launch3(ctx, "ndcl_ns_final", s->n, s->n, s->batch, args, 5);
}

ndcl_status ndcl_isqrt_ns(ndcl_context *ctx, cl_mem A, size_t batch, size_t n, int n_iter,
                          cl_mem D, cl_mem saved)
{
    if (batch == 0 || n == 0 || n_iter < 1)
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG,
                         "isqrt of %zu matrices %zu x %zu with n_iter=%d", batch, n, n,
                         n_iter);
    ns_state s = {batch, n, n * n, n_iter, saved, NULL, NULL, D, NULL};
    size_t total, iterates = 0;
    if (!ndcl_mul_ok(n, n, &s.nn) || !ndcl_mul_ok(s.nn, batch, &total) ||
        !ndcl_mul_ok(total, 2 * (size_t)n_iter, &iterates) ||
        !prims_fit_int(2 * total, saved ? iterates / 2 * 3 + batch : 0, n))
        return ndcl_fail(ctx, NDCL_ERR_UNSUPPORTED,
                         "isqrt of %zu matrices %zu x %zu: more than 2^31-1 elements",
                         batch, n, n);
    cl_mem norm = NULL;
    ndcl_status st = NDCL_SUCCESS;
    if (!saved) st = prims_buffer(ctx, total, &s.T);
    if (st == NDCL_SUCCESS && !saved) st = prims_buffer(ctx, batch, &norm);
    if (st == NDCL_SUCCESS && !saved) st = prims_buffer(ctx, 2 * total, &s.tY);
    if (st == NDCL_SUCCESS && !saved) st = prims_buffer(ctx, 2 * total, &s.tZ);
    if (st == NDCL_SUCCESS) st = run(ctx, &s, A, saved ? saved : norm, 0);
    prims_release(s.T);
    prims_release(norm);
    prims_release(s.tY);
    prims_release(s.tZ);
    return st;
}
