/* fold.cl - the weight fold's data movement: gather a weight into the
 * block basis, scatter it back, and the bias correction. */

/* Wb[(o*R + r)*nf + f] = W[o*K + r*rs + f*fs] for o < outputs, r < R. */
__kernel void ndcl_fold_gather(const int rows, const int R, const int nf, const int K,
                               const int rs, const int fs, __global const float *W,
                               __global float *Wb)
{
    /* One item per (f, o) moving its R elements: no division per element,
     * and the items of a row f write contiguous runs (2.5x faster than one
     * item per element on PoCL, ndcl-bench --suite fold). */
    const int f = get_global_id(0), o = get_global_id(1);
    if (f >= nf || o >= rows / R) return;
    __global const float *src = W + o * K + f * fs;
    __global float *dst = Wb + o * R * nf + f;
    for (int r = 0; r < R; r++) dst[r * nf] = src[r * rs];
}

/* The inverse of ndcl_fold_gather. */
__kernel void ndcl_fold_scatter(const int rows, const int R, const int nf, const int K,
                                const int rs, const int fs, __global const float *Wb,
                                __global float *W)
{
    const int f = get_global_id(0), o = get_global_id(1);
    if (f >= nf || o >= rows / R) return;
    __global float *dst = W + o * K + f * fs;
    __global const float *src = Wb + o * R * nf + f;
    for (int r = 0; r < R; r++) dst[r * rs] = src[r * nf];
}

/* b_out[o] = bias[o] (0 when has_bias is 0) - sum over r of v[o*R + r],
 * where v = W'·mean per block row. */
__kernel void ndcl_fold_bias(const int outputs, const int R, __global const float *v,
                             __global const float *bias, const int has_bias,
                             __global float *b_out)
{
    const int o = get_global_id(0);
    if (o >= outputs) return;
    float s = 0.0f;
    for (int r = 0; r < R; r++) s += v[o * R + r];
    b_out[o] = (has_bias ? bias[o] : 0.0f) - s;
}
