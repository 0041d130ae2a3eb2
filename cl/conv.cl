/* conv.cl - the plain convolution a chunk of images at a time: im2col of
 * the chunk into a bounded workspace, its adjoint col2im, the moves between
 * the products' layouts and NCHW (with the bias), and the bias gradient.
 *
 * PoCL's CPU device runs a work-group as loops over its items and
 * vectorises the innermost, get_global_id(0): every kernel here puts
 * consecutive addresses along it (an output row, a pixel row) and keeps
 * what depends on the other ids out of the per-item arithmetic.
 *
 * A chunk holds images n0 .. n0+nc-1. Its patch matrix (K = C*kh*kw rows,
 * P = oh*ow positions per image) is addressed col[k*ks + n*ns + p]: the
 * per-image layout [n][k][p] (ks = P, ns = K*P) feeds one product per
 * image, the wide layout [k][n*P + p] (ks = nc*P, ns = P) one product for
 * the whole chunk. */

/* col[k*ks + n*ns + oy*OW + ox] = x[n0+n][c][oy*s - pad + i*d][ox*s - pad + j*d]
 * or 0 outside the image, k = c*KH*KW + i*KW + j. Items (ox, oy, n*K + k). */
__kernel void ndcl_im2col_chunk(const int C, const int H, const int W, const int KH,
                                const int KW, const int stride, const int pad,
                                const int dil, const int OH, const int OW, const int n0,
                                const int nc, const int ks, const int ns,
                                __global const float *x, __global float *col)
{
    const int ox = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    const int K = C * KH * KW;
    if (ox >= OW || oy >= OH || z >= nc * K) return;
    const int n = z / K, k = z - n * K;
    const int c = k / (KH * KW), r = k - c * (KH * KW), i = r / KW, j = r - i * KW;
    const int iy = oy * stride - pad + i * dil, ix = ox * stride - pad + j * dil;
    __global const float *xc = x + ((size_t)(n0 + n) * C + c) * H * W;
    float v = 0.0f;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = xc[iy * W + ix];
    col[(size_t)k * ks + (size_t)n * ns + oy * OW + ox] = v;
}

/* dx[n0+n][c][yy][xx] = Σ of dcol over the (k, p) whose im2col read that
 * pixel: a gather over the kernel taps, so no atomics are needed. Items
 * (xx, yy, n*C + c). Stride 1, the common case, is a branch of its own that
 * needs no division per item. */
__kernel void ndcl_col2im_chunk(const int C, const int H, const int W, const int KH,
                                const int KW, const int stride, const int pad,
                                const int dil, const int OH, const int OW, const int n0,
                                const int nc, const int ks, const int ns,
                                __global const float *dcol, __global float *dx)
{
    const int xx = get_global_id(0), yy = get_global_id(1), z = get_global_id(2);
    if (xx >= W || yy >= H || z >= nc * C) return;
    const int n = z / C, c = z - n * C;
    __global const float *dn = dcol + (size_t)n * ns;
    float s = 0.0f;
    for (int i = 0; i < KH; i++) {
        int oy = yy + pad - i * dil;
        if (stride != 1) {
            if (oy < 0 || oy % stride) continue;
            oy /= stride;
        }
        if (oy < 0 || oy >= OH) continue;
        for (int j = 0; j < KW; j++) {
            int ox = xx + pad - j * dil;
            if (stride != 1) {
                if (ox < 0 || ox % stride) continue;
                ox /= stride;
            }
            if (ox < 0 || ox >= OW) continue;
            const int k = (c * KH + i) * KW + j;
            s += dn[(size_t)k * ks + oy * OW + ox];
        }
    }
    dx[((size_t)(n0 + n) * C + c) * H * W + yy * W + xx] = s;
}

/* y[n0+n][o][p] = b[o] (0 without a bias, has_bias = 0): the start of the
 * per-image products, which add W·col to it. Items (p, o, n). */
__kernel void ndcl_conv_bias_fill(const int P, const int Cout, const int n0, const int nc,
                                  __global const float *b, const int has_bias,
                                  __global float *y)
{
    const int p = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
    if (p >= P || o >= Cout || n >= nc) return;
    y[((size_t)(n0 + n) * Cout + o) * P + p] = has_bias ? b[o] : 0.0f;
}

/* y[n0+n][o][p] = t[o][n*P + p] + b[o]: the chunk's wide product (Cout x
 * nc*P) moved to NCHW with the bias (has_bias = 0: none). Items (p, o, n). */
__kernel void ndcl_conv_rows_nchw(const int P, const int Cout, const int n0, const int nc,
                                  __global const float *t, __global const float *b,
                                  const int has_bias, __global float *y)
{
    const int p = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
    if (p >= P || o >= Cout || n >= nc) return;
    float v = t[((size_t)o * nc + n) * P + p];
    if (has_bias) v += b[o];
    y[((size_t)(n0 + n) * Cout + o) * P + p] = v;
}

/* t[o][n*P + p] = dy[n0+n][o][p]: the chunk of dy laid out as the wide
 * product's output (Cout x nc*P), the inverse move. Items (p, o, n). */
__kernel void ndcl_conv_nchw_rows(const int P, const int Cout, const int n0, const int nc,
                                  __global const float *dy, __global float *t)
{
    const int p = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
    if (p >= P || o >= Cout || n >= nc) return;
    t[((size_t)o * nc + n) * P + p] = dy[((size_t)(n0 + n) * Cout + o) * P + p];
}

/* db[o] = Σ_n Σ_p dy[n][o][p], one work-group per channel o (any local size
 * wg). Item t reads position p = t % P of images t / P, t / P + L, ... (L =
 * wg / P lanes of images) when P < wg, else positions t, t + wg, ... of
 * every image: consecutive items read consecutive floats either way. The
 * partial sums are added by item 0 in a fixed order (one barrier; the sum
 * is deterministic). */
__kernel void ndcl_conv_bias_grad(const int N, const int Cout, const int P,
                                  __global const float *dy, __global float *db,
                                  __local float *part)
{
    const int t = get_local_id(0), wg = get_local_size(0), o = get_group_id(1);
    float s = 0.0f;
    if (P < wg) {
        const int lanes = wg / P, p = t % P;
        for (int n = t / P; n < N && t < lanes * P; n += lanes)
            s += dy[((size_t)n * Cout + o) * P + p];
    } else {
        for (int n = 0; n < N; n++) {
            __global const float *row = dy + ((size_t)n * Cout + o) * P;
            for (int p = t; p < P; p += wg) s += row[p];
        }
    }
    part[t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (t == 0) {
        float total = 0.0f;
        for (int i = 0; i < wg; i++) total += part[i];
        db[o] = total;
    }
}
