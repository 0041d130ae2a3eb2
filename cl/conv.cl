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
 * or 0 outside the image, k = c*KH*KW + i*KW + j. Items (ox, oy, k), each
 * copying its tap of every image of the chunk: the loop over images has a
 * fixed trip count and carries nothing, so PoCL runs the items innermost,
 * vectorised; the load is unconditional (from the image's first pixel
 * when outside) and the padding a select, as a masked load would not be
 * vectorised. */
__kernel void ndcl_im2col_chunk(const int C, const int H, const int W, const int KH,
                                const int KW, const int stride, const int pad,
                                const int dil, const int OH, const int OW, const int n0,
                                const int nc, const int ks, const int ns,
                                __global const float *x, __global float *col)
{
    const int ox = get_global_id(0), oy = get_global_id(1), k = get_global_id(2);
    if (ox >= OW || oy >= OH || k >= C * KH * KW) return;
    const int c = k / (KH * KW), r = k - c * (KH * KW), i = r / KW, j = r - i * KW;
    const int iy = oy * stride - pad + i * dil, ix = ox * stride - pad + j * dil;
    const bool in = iy >= 0 && iy < H && ix >= 0 && ix < W;
    const size_t image = (size_t)C * H * W;
    __global const float *src =
        x + ((size_t)n0 * C + c) * H * W + (in ? iy * W + ix : 0);
    __global float *dst = col + (size_t)k * ks + oy * OW + ox;
    for (int n = 0; n < nc; n++) {
        const float v = src[n * image];
        dst[(size_t)n * ns] = in ? v : 0.0f;
    }
}

/* Stride 1, the common case, VW outputs of a row per item with explicit
 * vectors (ox = VW*id0): a tap's input run is then one vload; PoCL's
 * implicit vectoriser turns the select of an address into gathers instead.
 * A run that reaches past the row's ends is loaded all the same from the
 * flattened image (the neighbouring row's values) and those lanes zeroed
 * by a select; only a run that leaves the image plane (its first or last
 * pixels) goes lane by lane. Items (ox/VW, oy, k), each over the chunk's
 * images as ndcl_im2col_chunk. */
#define NDCL_IM2COL_VEC(name, VW, vtype, itype, vload, vstore, lane)                      \
    __kernel void name(const int C, const int H, const int W, const int KH, const int KW,  \
                       const int stride, const int pad, const int dil, const int OH,       \
                       const int OW, const int n0, const int nc, const int ks,             \
                       const int ns, __global const float *x, __global float *col)         \
    {                                                                                      \
        const int ox = get_global_id(0) * VW, oy = get_global_id(1), k = get_global_id(2); \
        if (ox >= OW || oy >= OH || k >= C * KH * KW) return;                              \
        const int c = k / (KH * KW), r = k - c * (KH * KW), i = r / KW, j = r - i * KW;    \
        const int iy = oy - pad + i * dil, ix = ox - pad + j * dil;                        \
        const int lanes = min(VW, OW - ox), start = iy * W + ix;                           \
        const bool rin = iy >= 0 && iy < H;                                                \
        const bool run = rin && start >= 0 && start + VW <= H * W && lanes == VW;          \
        const itype lx = (itype)(ix) + lane;                                               \
        const itype keep = lx >= 0 && lx < W;                                              \
        const size_t image = (size_t)C * H * W;                                            \
        __global const float *src = x + ((size_t)n0 * C + c) * H * W;                      \
        __global float *dst = col + (size_t)k * ks + oy * OW + ox;                         \
        for (int n = 0; n < nc; n++) {                                                     \
            __global const float *plane = src + n * image;                                 \
            __global float *out = dst + (size_t)n * ns;                                    \
            if (run) {                                                                     \
                vstore(select((vtype)(0.0f), vload(0, plane + start), keep), 0, out);      \
                continue;                                                                  \
            }                                                                              \
            for (int l = 0; l < lanes; l++) {                                              \
                const bool in = rin && ix + l >= 0 && ix + l < W;                          \
                out[l] = in ? plane[iy * W + clamp(ix + l, 0, W - 1)] : 0.0f;              \
            }                                                                              \
        }                                                                                  \
    }

NDCL_IM2COL_VEC(ndcl_im2col_chunk_v8, 8, float8, int8, vload8, vstore8,
                (int8)(0, 1, 2, 3, 4, 5, 6, 7))
NDCL_IM2COL_VEC(ndcl_im2col_chunk_v4, 4, float4, int4, vload4, vstore4, (int4)(0, 1, 2, 3))

/* col2im at stride 1 with VW outputs of a row per item (xx = VW*id0): each
 * tap adds a run of its patch row, one vload, the lanes past the row's
 * ends zeroed by a select; a run that leaves the patch plane goes lane by
 * lane. Items (xx/VW, yy, n*C + c). */
#define NDCL_COL2IM_VEC(name, VW, vtype, itype, vload, vstore, lane)                      \
    __kernel void name(const int C, const int H, const int W, const int KH, const int KW,  \
                       const int stride, const int pad, const int dil, const int OH,       \
                       const int OW, const int n0, const int nc, const int ks,             \
                       const int ns, __global const float *dcol, __global float *dx)       \
    {                                                                                      \
        const int xx = get_global_id(0) * VW, yy = get_global_id(1), z = get_global_id(2); \
        if (xx >= W || yy >= H || z >= nc * C) return;                                     \
        const int n = z / C, c = z - n * C, lanes = min(VW, W - xx);                       \
        __global const float *dn = dcol + (size_t)n * ns + (size_t)(c * KH * KW) * ks;     \
        vtype s = (vtype)(0.0f);                                                           \
        for (int i = 0; i < KH; i++) {                                                     \
            const int oy = yy + pad - i * dil;                                             \
            if (oy < 0 || oy >= OH) continue;                                              \
            for (int j = 0; j < KW; j++) {                                                 \
                const int ox = xx + pad - j * dil, start = oy * OW + ox;                   \
                __global const float *plane = dn + (size_t)(i * KW + j) * ks;              \
                if (start >= 0 && start + VW <= OH * OW) {                                 \
                    const itype lx = (itype)(ox) + lane;                                   \
                    s += select((vtype)(0.0f), vload(0, plane + start), lx >= 0 && lx < OW); \
                } else {                                                                   \
                    float t[VW];                                                           \
                    for (int l = 0; l < VW; l++)                                           \
                        t[l] = ox + l >= 0 && ox + l < OW                                  \
                                   ? plane[oy * OW + clamp(ox + l, 0, OW - 1)]             \
                                   : 0.0f;                                                 \
                    s += vload(0, t);                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        __global float *out = dx + ((size_t)(n0 + n) * C + c) * H * W + yy * W + xx;       \
        if (lanes == VW) {                                                                 \
            vstore(s, 0, out);                                                             \
        } else {                                                                           \
            float t[VW];                                                                   \
            vstore(s, 0, t);                                                               \
            for (int l = 0; l < lanes; l++) out[l] = t[l];                                 \
        }                                                                                  \
    }

NDCL_COL2IM_VEC(ndcl_col2im_chunk_v8, 8, float8, int8, vload8, vstore8,
                (int8)(0, 1, 2, 3, 4, 5, 6, 7))
NDCL_COL2IM_VEC(ndcl_col2im_chunk_v4, 4, float4, int4, vload4, vstore4, (int4)(0, 1, 2, 3))

/* The output position a tap of input row (or column) t reaches: q with
 * q*stride == t + pad - i*dil, or ok = 0. Division by a vector is
 * scalarised on CPUs, so the quotient comes from a float product and two
 * exact integer corrections (inv = 1/stride). */
#define NDCL_TAP_POS(v, tap, lim, q, ok)                                                   \
    const int q##_t = (v) + pad - (tap) * dil;                                             \
    int q = convert_int_rtn((float)q##_t * inv);                                           \
    q += (q + 1) * stride <= q##_t;                                                        \
    q -= q * stride > q##_t;                                                               \
    const bool ok = q##_t >= 0 && q * stride == q##_t && q < (lim);

/* One tap (i, j) of the col2im gather: the patch value that tap copied from
 * pixel (yy, xx), or 0. The address is selected, never the load. */
#define NDCL_COL2IM_TAP(i, j, KW)                                                          \
    {                                                                                      \
        NDCL_TAP_POS(yy, i, OH, oy, yin)                                                   \
        NDCL_TAP_POS(xx, j, OW, ox, xin)                                                   \
        const bool in = yin && xin;                                                        \
        const float v = dn[(size_t)((i) * (KW) + (j)) * ks + (in ? oy * OW + ox : 0)];     \
        s += in ? v : 0.0f;                                                                \
    }

/* dx[n0+n][c][yy][xx] = Σ of dcol over the (k, p) whose im2col read that
 * pixel: a gather over the kernel taps (no atomics), items (xx, yy, n*C +
 * c). PoCL vectorises across items only straight-line code (a loop that
 * carries a sum keeps them scalar), so the common kernel sizes have the
 * taps written out: ndcl_col2im_chunk_3x3 and _1x1; ndcl_col2im_chunk loops
 * over any size. */
#define NDCL_COL2IM_KERNEL(name, KH_, KW_, TAPS)                                           \
    __kernel void name(const int C, const int H, const int W, const int KH, const int KW,  \
                       const int stride, const int pad, const int dil, const int OH,       \
                       const int OW, const int n0, const int nc, const int ks,             \
                       const int ns, __global const float *dcol, __global float *dx)       \
    {                                                                                      \
        const int xx = get_global_id(0), yy = get_global_id(1), z = get_global_id(2);     \
        if (xx >= W || yy >= H || z >= nc * C) return;                                     \
        const int n = ndcl_div(z, C, 1.0f / (float)C), c = z - n * C;                      \
        const float inv = 1.0f / (float)stride;                                            \
        __global const float *dn = dcol + (size_t)n * ns + (size_t)(c * (KH_) * (KW_)) * ks; \
        float s = 0.0f;                                                                    \
        TAPS                                                                               \
        dx[((size_t)(n0 + n) * C + c) * H * W + yy * W + xx] = s;                         \
    }

NDCL_COL2IM_KERNEL(ndcl_col2im_chunk_3x3, 3, 3,
                   NDCL_COL2IM_TAP(0, 0, 3) NDCL_COL2IM_TAP(0, 1, 3) NDCL_COL2IM_TAP(0, 2, 3)
                   NDCL_COL2IM_TAP(1, 0, 3) NDCL_COL2IM_TAP(1, 1, 3) NDCL_COL2IM_TAP(1, 2, 3)
                   NDCL_COL2IM_TAP(2, 0, 3) NDCL_COL2IM_TAP(2, 1, 3) NDCL_COL2IM_TAP(2, 2, 3))
NDCL_COL2IM_KERNEL(ndcl_col2im_chunk_1x1, 1, 1, NDCL_COL2IM_TAP(0, 0, 1))
NDCL_COL2IM_KERNEL(ndcl_col2im_chunk, KH, KW,
                   for (int i = 0; i < KH; i++) for (int j = 0; j < KW; j++)
                       NDCL_COL2IM_TAP(i, j, KW))

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

/* db[o] = Σ_j t[o][j] for j < len (+ db[o] when accumulate): the bias
 * gradient from the chunks of dy laid out as rows (ndcl_conv_nchw_rows),
 * one work-group per row, read while the row is still in cache. Items
 * stride over the row (consecutive items, consecutive floats); item 0 adds
 * the partial sums in a fixed order (one barrier; deterministic). */
__kernel void ndcl_conv_row_sums(const int len, __global const float *t, const int accumulate,
                                 __global float *db, __local float *part)
{
    const int i = get_local_id(0), wg = get_local_size(0), o = get_group_id(1);
    __global const float *row = t + (size_t)o * len;
    float s = 0.0f;
    for (int j = i; j < len; j += wg) s += row[j];
    part[i] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (i == 0) {
        float total = accumulate ? db[o] : 0.0f;
        for (int k = 0; k < wg; k++) total += part[k];
        db[o] = total;
    }
}
