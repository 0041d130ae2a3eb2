/* im2col.cl - sampled patch matrix of a deconvolved convolution with the
 * block regrouping done in the same pass, so X is written exactly once. */

/* The per-column part of the sampled patches, once per call: for element
 * f of block row g, patch column q = f*blocks + g = c*kh*kw + i*kw + j
 * reads channel c at the tap offset (i*dil, j*dil) from the position's
 * corner. tap[e] = c*h*w + i*dil*w + j*dil, tap[n + e] = i*dil, tap[2n + e]
 * = j*dil for e = g*cols + f, n = blocks*cols. */
__kernel void ndcl_im2col_taps(const int cols, const int blocks, const int h, const int w,
                               const int kh, const int kw, const int dil,
                               __global int *tap)
{
    const int f = get_global_id(0), g = get_global_id(1);
    if (f >= cols || g >= blocks) return;
    const int q = f * blocks + g, c = q / (kh * kw), t = q - c * (kh * kw);
    const int i = t / kw, j = t - i * kw, e = g * cols + f, n = blocks * cols;
    tap[e] = c * h * w + i * dil * w + j * dil;
    tap[n + e] = i * dil;
    tap[2 * n + e] = j * dil;
}

/* One work item per row r = p*blocks + g of X (items (g, p)): sampled
 * position p, block row g. The position is decoded once, (n, oy, ox) of
 * the oh x ow sampled grid with its corner (oy*stride - pad, ox*stride -
 * pad), or, where oh = 0 (the 1x1 path, no padding), pixel start + p*step
 * of the (n, h, w) order; then the row's cols values are written in order,
 * each column's channel and tap from ndcl_im2col_taps, the load
 * unconditional (the image's first pixel when outside) and the padding a
 * select. */
__kernel void ndcl_im2col_sampled(const int positions, const int cols,
                                       const int blocks, const int c_in, const int h,
                                       const int w, const int pad, const int stride,
                                       const int oh, const int ow, const int step,
                                       const int start, __global const int *tap,
                                       __global const float *x, __global float *X)
{
    const int g = get_global_id(0), p = get_global_id(1);
    if (g >= blocks || p >= positions) return;
    const int hw = h * w;
    int n, y0, x0;
    ndcl_sample_corner(p, h, w, pad, stride, oh, ow, step, start, &n, &y0, &x0);
    const int nt = blocks * cols;
    __global const int *t0 = tap + g * cols, *ty = t0 + nt, *tx = t0 + 2 * nt;
    __global const float *img = x + (size_t)n * c_in * hw;
    __global float *row = X + ((size_t)p * blocks + g) * cols;
    const int corner = y0 * w + x0;
    for (int f = 0; f < cols; f++) {
        const int iy = y0 + ty[f], ix = x0 + tx[f];
        const bool in = iy >= 0 && iy < h && ix >= 0 && ix < w;
        const float v = img[in ? t0[f] + corner : 0];
        row[f] = in ? v : 0.0f;
    }
}
