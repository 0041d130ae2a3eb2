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

/* One work item per element (f, r) of X, items (f, g, p), so that
 * consecutive items write consecutive floats of a row (PoCL vectorises
 * across them). Row r = p*blocks + g is sampled position p, block row g;
 * the column's channel and tap come from ndcl_im2col_taps, so that an item
 * does no division of its own (a CPU does not vectorise them). Position p
 * is (n, oy, ox) of the oh x ow sampled grid, its corner (oy*stride - pad,
 * ox*stride - pad); oh = 0 selects the 1x1 path, where p is pixel
 * start + p*step of the (n, h, w) order (no padding). The load is unconditional (the
 * image's first pixel when outside) and the padding a select. */
__kernel void ndcl_im2col_sampled(const int positions, const int cols, const int blocks,
                                  const int c_in, const int h, const int w, const int pad,
                                  const int stride, const int oh, const int ow,
                                  const int step, const int start,
                                  __global const int *tap,
                                  __global const float *x, __global float *X)
{
    const int f = get_global_id(0), g = get_global_id(1), p = get_global_id(2);
    if (f >= cols || g >= blocks || p >= positions) return;
    /* Both decodings of p, the kernel size selecting: 1x1 (oh = 0) or kh x
     * kw, without a branch or an integer division (either would be done
     * item by item). */
    const int hw = h * w, ohw = max(oh * ow, 1), ow1 = max(ow, 1);
    const bool one = oh == 0;
    const int pix = one ? start + p * step : 0, n1 = ndcl_div(pix, hw, 1.0f / (float)hw);
    const int r1 = pix - n1 * hw, y1 = ndcl_div(r1, w, 1.0f / (float)w);
    const int n3 = ndcl_div(p, ohw, 1.0f / (float)ohw), pr = p - n3 * ohw;
    const int oy = ndcl_div(pr, ow1, 1.0f / (float)ow1);
    const int n = one ? n1 : n3, y0 = one ? y1 : oy * stride - pad;
    const int x0 = one ? r1 - y1 * w : (pr - oy * ow1) * stride - pad;
    const int e = g * cols + f, nt = blocks * cols;
    const int iy = y0 + tap[nt + e], ix = x0 + tap[2 * nt + e];
    const bool in = iy >= 0 && iy < h && ix >= 0 && ix < w;
    const float v = x[(size_t)n * c_in * h * w + (in ? tap[e] + y0 * w + x0 : 0)];
    X[((size_t)p * blocks + g) * cols + f] = in ? v : 0.0f;
}
