/* im2col.cl - sampled patch matrix of a deconvolved convolution with the
 * block regrouping done in the same pass, so X is written exactly once. */

/* One work item per (channel c, sampled position p), looping over the
 * kernel window: the position is decomposed once instead of per element
 * (4x faster than one item per element on PoCL). Patch column
 * q = c*kh*kw + i*kw + j goes to X[(p*blocks + q % blocks)*cols + q / blocks]:
 * with blocks = C/B (G = 1) that is block row g = q % (C/B), column f, the
 * interleaved regrouping; with blocks = 1 (G > 1) the row is kept whole.
 * oh = 0 selects the 1x1 path: position p is pixel start + p*step of the
 * (n, h, w) order (padding and dilation do not apply). */
__kernel void ndcl_im2col_sampled(const int positions, const int cols, const int blocks,
                                  const int c_in, const int h, const int w,
                                  const int kh, const int kw, const int pad,
                                  const int dil, const int stride, const int oh,
                                  const int ow, const int step, const int start,
                                  __global const float *x, __global float *X)
{
    const int c = get_global_id(0), p = get_global_id(1);
    if (c >= c_in || p >= positions) return;
    const int q0 = c * kh * kw;
    int f = q0 / blocks, g = q0 - f * blocks;
    if (oh == 0) {
        const int pix = start + p * step, hw = h * w;
        const int n = pix / hw;
        X[(p * blocks + g) * cols + f] = x[(n * c_in + c) * hw + (pix - n * hw)];
        return;
    }
    const int n = p / (oh * ow), pr = p - n * (oh * ow);
    const int oy = pr / ow, ox = pr - oy * ow;
    __global const float *xc = x + (n * c_in + c) * h * w;
    for (int i = 0; i < kh; i++) {
        const int iy = oy * stride - pad + i * dil;
        const bool row_in = iy >= 0 && iy < h;
        for (int j = 0; j < kw; j++) {
            const int ix = ox * stride - pad + j * dil;
            X[(p * blocks + g) * cols + f] =
                (row_in && ix >= 0 && ix < w) ? xc[iy * w + ix] : 0.0f;
            if (++g == blocks) {
                g = 0;
                f++;
            }
        }
    }
}
