/* backward.cl - the element-wise and reduction steps of the primitives'
 * adjoints (the chain rule through the forward's steps in reverse: the
 * Newton-Schulz iteration, the covariance, the fold, the sampled patches);
 * the products go through the BLAS engines (src/blas/). The channel layer's
 * adjoints are in channel.cl beside their forwards. Every kernel is a
 * gather (one item writes one element), so no atomics are needed and the
 * results are deterministic. */

/* out[out_off + b] = sum over i < nn of a[a_off + b*nn + i] * c[c_off + b*nn + i]:
 * the Frobenius inner product of matrix b of two batches, one work-group
 * per matrix (local size a power of two, acc one float per item). */
__kernel void ndcl_bw_dot(const int nn, __global const float *a, const int a_off,
                          __global const float *c, const int c_off, __global float *out,
                          const int out_off, __local float *acc)
{
    const int t = get_local_id(0), wg = get_local_size(0), b = get_group_id(1);
    __global const float *x = a + a_off + b * nn;
    __global const float *y = c + c_off + b * nn;
    float s = 0.0f;
    for (int i = t; i < nn; i += wg) s += x[i] * y[i];
    acc[t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int span = wg / 2; span > 0; span /= 2) {
        if (t < span) acc[t] += acc[t + span];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) out[out_off + b] = acc[0];
}

/* dZ[b] = dD[b] / sqrt(norm[b]): the gradient of the last Newton-Schulz
 * iterate, from D = Z_n / sqrt(a). */
__kernel void ndcl_bw_ns_start(const int n, const int batch, __global const float *dD,
                               __global const float *norm, __global float *dZ)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int e = (b * n + i) * n + j;
    dZ[e] = dD[e] / sqrt(norm[b]);
}

/* The tangent's start (isqrt_backward.c): E = (dD + dDᵀ) / (2 sqrt(a)),
 * the symmetric part of the last iterate's gradient (D = Z_n / sqrt(a)),
 * into dY (its first batch) and dT_0 = dZ_1 = -E/2 into dZ's second batch
 * (batch * n * n on). */
__kernel void ndcl_bw_ns_tangent_start(const int n, const int batch,
                                       __global const float *dD,
                                       __global const float *norm, __global float *dY,
                                       __global float *dZ)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int e = (b * n + i) * n + j, t = (b * n + j) * n + i;
    const float v = 0.5f * (dD[e] + dD[t]) / sqrt(norm[b]);
    dY[e] = v;
    dZ[batch * n * n + e] = -0.5f * v;
}

/* dA = dY0 / a + da * Y0 (dY0 at dy0_off, Y0 at y0_off of saved) with
 * da = -(s1/2 + s2) / a, where s1[b] = <dD, D> (D = Z_n a^-1/2) and
 * s2[b] = <dY0, Y0> (Y0 = A / a), both at s: s1 in s[0 .. batch), s2 in
 * s[batch .. 2 batch). Y0 stands for A / a, since a = ||A||_F gives
 * dA += da * A / a. */
__kernel void ndcl_bw_ns_final(const int n, const int batch, __global const float *dY0,
                               const int dy0_off, __global const float *saved,
                               const int y0_off, __global const float *s,
                               __global float *dA)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int e = (b * n + i) * n + j;
    const float a = saved[b]; /* the norms lead the saved area */
    const float da = -(0.5f * s[b] + s[batch + b]) / a;
    dA[e] = dY0[dy0_off + e] / a + da * saved[y0_off + e];
}

/* S[b] = (G[b] + G[b]ᵀ) * scale for batch n x n matrices (out of place):
 * the gradient of a product XᵀX reaches X through both factors. */
__kernel void ndcl_bw_sym(const int n, const int batch, const float scale,
                          __global const float *G, __global float *S)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int base = b * n * n;
    S[base + i * n + j] = (G[base + i * n + j] + G[base + j * n + i]) * scale;
}

/* dWb[row][f] -= db[row / R] * mean[(row / m) * nf + f]: the bias
 * correction b' = b - Σ_r (W'·μ)[o, r] seen from W' (m block rows per
 * whitening matrix, R per output). */
__kernel void ndcl_bw_fold_bias(const int rows, const int R, const int m, const int nf,
                                __global const float *db, __global const float *mean,
                                __global float *dWb)
{
    /* One item per (f, o) over its R block rows (m is a multiple of R, so
     * they share one whitening matrix): no division per element. */
    const int f = get_global_id(0), o = get_global_id(1);
    if (f >= nf || o >= rows / R) return;
    const float v = db[o] * mean[(o * R / m) * nf + f];
    __global float *d = dWb + (size_t)o * R * nf + f;
    for (int r = 0; r < R; r++) d[(size_t)r * nf] -= v;
}

/* dmean[g*nf + f] = -Σ over the m block rows of batch g of db[row / R] *
 * Wb[row][f]: the same correction seen from μ. One item per (f, g), looping
 * over the rows in order (deterministic). */
__kernel void ndcl_bw_fold_mean(const int batch, const int m, const int R, const int nf,
                                __global const float *db, __global const float *Wb,
                                __global float *dmean)
{
    const int f = get_global_id(0), g = get_global_id(1);
    if (f >= nf || g >= batch) return;
    float s = 0.0f;
    for (int o = g * m / R; o < (g + 1) * m / R; o++) {
        const float d = db[o];
        for (int r = o * R; r < (o + 1) * R; r++) s += d * Wb[(size_t)r * nf + f];
    }
    dmean[g * nf + f] = -s;
}

/* dx[n][c][y][x] += the sum of dX over every element of the sampled patch
 * matrix that ndcl_im2col_sampled copied from that pixel: its adjoint, as
 * a gather over the kernel taps (no atomics). Arguments as the forward's;
 * oh = 0 selects the 1x1 path (pixel start + p*step of the (n, h, w)
 * order). */
__kernel void ndcl_im2col_sampled_adj(const int n_img, const int cols, const int blocks,
                                      const int c_in, const int h, const int w,
                                      const int kh, const int kw, const int pad,
                                      const int dil, const int stride, const int oh,
                                      const int ow, const int step, const int start,
                                      __global const float *dX, __global float *dx)
{
    const int xx = get_global_id(0), yy = get_global_id(1), nc = get_global_id(2);
    if (xx >= w || yy >= h || nc >= n_img * c_in) return;
    const int n = nc / c_in, c = nc - n * c_in;
    float s = 0.0f;
    if (oh == 0) {
        const int pix = (n * h + yy) * w + xx - start;
        if (pix >= 0 && pix % step == 0) {
            const int p = pix / step, f = c / blocks, g = c - f * blocks;
            s = dX[(size_t)(p * blocks + g) * cols + f];
        }
    } else {
        for (int i = 0; i < kh; i++) {
            const int ty = yy + pad - i * dil;
            if (ty < 0 || ty % stride) continue;
            const int oy = ty / stride;
            if (oy >= oh) continue;
            for (int j = 0; j < kw; j++) {
                const int tx = xx + pad - j * dil;
                if (tx < 0 || tx % stride) continue;
                const int ox = tx / stride;
                if (ox >= ow) continue;
                const int p = (n * oh + oy) * ow + ox, q = (c * kh + i) * kw + j;
                const int f = q / blocks, g = q - f * blocks;
                s += dX[(size_t)(p * blocks + g) * cols + f];
            }
        }
    }
    dx[(((size_t)n * c_in + c) * h + yy) * w + xx] += s;
}

/* The adjoint of ndcl_im2col_sampled where no two elements of the
 * patch matrix copied the same pixel (the 1x1 path, or a sampling stride
 * at least the kernel's extent, as FastDeconv's default 3 for 3x3): one
 * item per row of dX adds each value to its pixel, with no race and no
 * search over the taps. Arguments as the forward's. */
__kernel void ndcl_im2col_sampled_scatter(const int positions, const int cols,
                                           const int blocks, const int c_in, const int h,
                                           const int w, const int pad, const int stride,
                                           const int oh, const int ow, const int step,
                                           const int start, __global const int *tap,
                                           __global const float *dX, __global float *dx)
{
    const int g = get_global_id(0), p = get_global_id(1);
    if (g >= blocks || p >= positions) return;
    const int hw = h * w;
    int n, y0, x0;
    ndcl_sample_corner(p, h, w, pad, stride, oh, ow, step, start, &n, &y0, &x0);
    const int nt = blocks * cols;
    __global const int *t0 = tap + g * cols, *ty = t0 + nt, *tx = t0 + 2 * nt;
    __global float *img = dx + (size_t)n * c_in * hw;
    __global const float *row = dX + ((size_t)p * blocks + g) * cols;
    const int corner = y0 * w + x0;
    for (int f = 0; f < cols; f++) {
        const int iy = y0 + ty[f], ix = x0 + tx[f];
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) img[t0[f] + corner] += row[f];
    }
}
