/* common.cl - helpers shared by every kernel file; embedded first. */

/* Tunables have defaults so that each file compiles on its own. */
#ifndef NDCL_WG
#define NDCL_WG 256
#endif

/* Raised (set to 1) by a kernel that meets a non-finite statistic; the
 * host reads it at the next synchronising call. */
#define NDCL_RAISE(flag) atomic_xchg((flag), 1)

/* q / d for 0 <= q < 2^31 and 1 <= d, exact, without an integer division
 * (which a CPU does not vectorise, and which PoCL does not hoist out of
 * its loop over work-items): a float estimate, refined once from the
 * remainder, then corrected by one (inv = 1/d). */
inline int ndcl_div(const int q, const int d, const float inv)
{
    int r = convert_int_rtz((float)q * inv);
    r += convert_int_rtn((float)(q - (long)r * d) * inv);
    const long rem = q - (long)r * d;
    return r + (rem >= d) - (rem < 0);
}

/* Where sampled position p of a patch matrix starts: image *n and the
 * corner (*y0, *x0) of its window, p being (n, oy, ox) of the oh x ow
 * sampled grid (corner oy*stride - pad, ox*stride - pad), or, where oh = 0
 * (the 1x1 path, no padding), pixel start + p*step of the (n, h, w) order.
 * Shared by the sampled patches and their adjoint. */
inline void ndcl_sample_corner(const int p, const int h, const int w, const int pad,
                               const int stride, const int oh, const int ow,
                               const int step, const int start, int *n, int *y0, int *x0)
{
    const int hw = h * w;
    if (oh == 0) {
        const int pix = start + p * step;
        *n = pix / hw;
        const int r = pix - *n * hw;
        *y0 = r / w;
        *x0 = r - *y0 * w;
    } else {
        const int ohw = oh * ow;
        *n = p / ohw;
        const int pr = p - *n * ohw, oy = pr / ow;
        *y0 = oy * stride - pad;
        *x0 = (pr - oy * ow) * stride - pad;
    }
}
