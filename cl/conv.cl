/* conv.cl - the plain convolution's patch matrix: im2col of a batch laid
 * out K x (N*P), so that one GEMM computes every sample's output, and its
 * adjoint col2im for the backward pass. */

/* col[k][n*P + p] = x[n][c][oy*s - pad + i*d][ox*s - pad + j*d] or 0,
 * k = c*kh*kw + i*kw + j, p = oy*OW + ox. */
__kernel void ndcl_im2col_full(const int N, const int C, const int H, const int W,
                               const int KH, const int KW, const int stride,
                               const int pad, const int dil, const int OH, const int OW,
                               __global const float *x, __global float *col)
{
    int p = get_global_id(0), k = get_global_id(1), n = get_global_id(2);
    int P = OH * OW, K = C * KH * KW;
    if (p >= P || k >= K || n >= N) return;
    int c = k / (KH * KW), i = (k / KW) % KH, j = k % KW;
    int oy = p / OW, ox = p % OW;
    int iy = oy * stride - pad + i * dil, ix = ox * stride - pad + j * dil;
    float v = 0.0f;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
        v = x[(((size_t)n * C + c) * H + iy) * W + ix];
    col[(size_t)k * N * P + (size_t)n * P + p] = v;
}

/* dx[n][c][y][x] = Σ over the (k, p) whose im2col reads that pixel of
 * dcol[k][n*P + p]: a gather, so no atomics are needed. */
__kernel void ndcl_col2im_full(const int N, const int C, const int H, const int W,
                               const int KH, const int KW, const int stride,
                               const int pad, const int dil, const int OH, const int OW,
                               __global const float *dcol, __global float *dx)
{
    int xx = get_global_id(0), yy = get_global_id(1), nc = get_global_id(2);
    if (xx >= W || yy >= H || nc >= N * C) return;
    int n = nc / C, c = nc % C, P = OH * OW;
    float s = 0.0f;
    for (int i = 0; i < KH; i++) {
        int ty = yy + pad - i * dil;
        if (ty < 0 || ty % stride) continue;
        int oy = ty / stride;
        if (oy >= OH) continue;
        for (int j = 0; j < KW; j++) {
            int tx = xx + pad - j * dil;
            if (tx < 0 || tx % stride) continue;
            int ox = tx / stride;
            if (ox >= OW) continue;
            int k = (c * KH + i) * KW + j;
            s += dcol[(size_t)k * N * P + (size_t)n * P + oy * OW + ox];
        }
    }
    dx[(((size_t)n * C + c) * H + yy) * W + xx] = s;
}
