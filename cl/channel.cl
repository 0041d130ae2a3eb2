/* channel.cl - the data movement of channel deconvolution: channels to
 * B whitened rows and back, the strided sample of those rows, and the
 * scalar normalisation of leftover channels; then the adjoints of the
 * sample and of the leftover normalisation. */

/* x1[r][q] = x[n][r*(c/B) + cl][s], q = (cl*N + n)*HW + s: the original's
 * x[:, :c].permute(1, 0, 2, 3).reshape(B, -1). */
__kernel void ndcl_ch_gather(const int N, const int C, const int HW, const int B,
                             const int c, __global const float *x, __global float *x1)
{
    int q = get_global_id(0), r = get_global_id(1);
    int per = c / B, L = per * N * HW;
    if (q >= L || r >= B) return;
    int s = q % HW, n = (q / HW) % N, cl = q / (HW * N);
    x1[(size_t)r * L + q] = x[((size_t)n * C + r * per + cl) * HW + s];
}

/* The inverse of ndcl_ch_gather, from out (B x L) into y's first c channels. */
__kernel void ndcl_ch_scatter(const int N, const int C, const int HW, const int B,
                              const int c, __global const float *out, __global float *y)
{
    int q = get_global_id(0), r = get_global_id(1);
    int per = c / B, L = per * N * HW;
    if (q >= L || r >= B) return;
    int s = q % HW, n = (q / HW) % N, cl = q / (HW * N);
    y[((size_t)n * C + r * per + cl) * HW + s] = out[(size_t)r * L + q];
}

/* xs[j][r] = x1[r][j*step]: the sample, transposed so that rows are
 * observations as the covariance routine expects. */
__kernel void ndcl_ch_sample(const int B, const int L, const int step,
                             __global const float *x1, __global float *xs)
{
    int r = get_global_id(0), j = get_global_id(1);
    int Ls = (L + step - 1) / step;
    if (r >= B || j >= Ls) return;
    xs[(size_t)j * B + r] = x1[(size_t)r * L + (size_t)j * step];
}

/* The chunk of sample j of a rank's share (group statistics): x1's
 * columns come in per chunks of L/per (one per channel of a row), each
 * continuing the global batch's sequence elsewhere; tab[k] is the first
 * sample of chunk k (tab[per] = the share's samples), tab[per + 1 + k] the
 * first sampled column within it. The last chunk whose first sample is at
 * most j (empty chunks are skipped over). */
inline int ndcl_ch_share_chunk(const int per, const int j, __global const int *tab)
{
    int lo = 0, hi = per - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (tab[mid] <= j)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* xs[j][r] = x1[r][column of sample j], j < tab[per]: ndcl_ch_sample for a
 * rank's share, whose sampled columns are those whose index in the global
 * batch's sequence is a multiple of step. */
__kernel void ndcl_ch_sample_share(const int B, const int L, const int per, const int step,
                                   __global const int *tab, __global const float *x1,
                                   __global float *xs)
{
    const int r = get_global_id(0), j = get_global_id(1);
    if (r >= B || j >= tab[per]) return;
    const int k = ndcl_ch_share_chunk(per, j, tab);
    const size_t q = (size_t)k * (L / per) + tab[per + 1 + k] + (size_t)(j - tab[k]) * step;
    xs[(size_t)j * B + r] = x1[(size_t)r * L + q];
}

/* x1[r][q] -= mean[r]. */
__kernel void ndcl_ch_center_rows(const int B, const int L, __global const float *mean,
                                  __global float *x1)
{
    int q = get_global_id(0), r = get_global_id(1);
    if (q < L && r < B) x1[(size_t)r * L + q] -= mean[r];
}

/* The i-th kept value of the leftover channels: each sample's (C-c)*HW
 * values in (c, h, w) order, every step-th one. */
inline float ndcl_ch_left_value(const int N, const int C, const int HW, const int c,
                                const int step, const int i, __global const float *x)
{
    int Lr = (C - c) * HW, per = (Lr + step - 1) / step;
    int n = i / per, k = (i % per) * step;
    return x[((size_t)n * C + c) * HW + k];
}

/* One work-group: mean and unbiased variance of the kept leftover values
 * (two passes, for accuracy), into out[0] and out[1]. */
__kernel void ndcl_ch_left_stats(const int N, const int C, const int HW, const int c,
                                 const int step, __global const float *x,
                                 __global float *out, __local float *part)
{
    int lid = get_local_id(0), wg = get_local_size(0);
    int Lr = (C - c) * HW, total = N * ((Lr + step - 1) / step);
    float s = 0.0f;
    for (int i = lid; i < total; i += wg) s += ndcl_ch_left_value(N, C, HW, c, step, i, x);
    part[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = wg / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float mean = part[0] / (float)total;
    barrier(CLK_LOCAL_MEM_FENCE);
    float q = 0.0f;
    for (int i = lid; i < total; i += wg) {
        float d = ndcl_ch_left_value(N, C, HW, c, step, i, x) - mean;
        q += d * d;
    }
    part[lid] = q;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = wg / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        out[0] = mean;
        out[1] = total > 1 ? part[0] / (float)(total - 1) : NAN;
    }
}

/* One work-group: out[0] = the sum of the kept leftover values (square =
 * 0) or of their squared deviations from shift (square = 1): a rank's
 * share of the group's mean and variance. */
__kernel void ndcl_ch_left_moment(const int N, const int C, const int HW, const int c,
                                  const int step, const float shift, const int square,
                                  __global const float *x, __global float *out,
                                  __local float *part)
{
    int lid = get_local_id(0), wg = get_local_size(0);
    int Lr = (C - c) * HW, total = N * ((Lr + step - 1) / step);
    float s = 0.0f;
    for (int i = lid; i < total; i += wg) {
        float v = ndcl_ch_left_value(N, C, HW, c, step, i, x);
        s += square ? (v - shift) * (v - shift) : v;
    }
    part[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = wg / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[0] = part[0];
}

/* y = (x - mean) / sqrt(var + eps) on the leftover channels. */
__kernel void ndcl_ch_left_apply(const int N, const int C, const int HW, const int c,
                                 const float eps, __global const float *mean,
                                 const int mo, __global const float *var, const int vo,
                                 __global const float *x, __global float *y)
{
    int i = get_global_id(0);
    int Lr = (C - c) * HW;
    if (i >= N * Lr) return;
    int n = i / Lr, k = i % Lr;
    size_t at = ((size_t)n * C + c) * HW + k;
    y[at] = (x[at] - mean[mo]) / sqrt(var[vo] + eps);
}

/* dx1[r][j*step] += dxs[j][r]: the adjoint of ndcl_ch_sample. */
__kernel void ndcl_ch_sample_adj(const int B, const int L, const int step,
                                 __global const float *dxs, __global float *dx1)
{
    const int r = get_global_id(0), j = get_global_id(1);
    const int Ls = (L + step - 1) / step;
    if (r >= B || j >= Ls) return;
    dx1[(size_t)r * L + (size_t)j * step] += dxs[(size_t)j * B + r];
}

/* dx1[r][column of sample j] += dxs[j][r]: the adjoint of
 * ndcl_ch_sample_share (distinct samples, distinct columns). */
__kernel void ndcl_ch_sample_share_adj(const int B, const int L, const int per,
                                       const int step, __global const int *tab,
                                       __global const float *dxs, __global float *dx1)
{
    const int r = get_global_id(0), j = get_global_id(1);
    if (r >= B || j >= tab[per]) return;
    const int k = ndcl_ch_share_chunk(per, j, tab);
    const size_t q = (size_t)k * (L / per) + tab[per + 1 + k] + (size_t)(j - tab[k]) * step;
    dx1[(size_t)r * L + q] += dxs[(size_t)j * B + r];
}

/* One work-group over every leftover value: sums[0] = Σ dy, sums[1] =
 * Σ dy * (x - mean), mean at stats[0]; a tree in local memory as in
 * ndcl_ch_left_stats (local size a power of two). */
__kernel void ndcl_ch_left_bw_sums(const int N, const int C, const int HW, const int c,
                                   __global const float *stats, __global const float *x,
                                   __global const float *dy, __global float *sums,
                                   __local float *part)
{
    const int lid = get_local_id(0), wg = get_local_size(0);
    const int Lr = (C - c) * HW, total = N * Lr;
    const float mean = stats[0];
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = lid; i < total; i += wg) {
        const int n = i / Lr, k = i - n * Lr;
        const size_t at = ((size_t)n * C + c) * HW + k;
        s1 += dy[at];
        s2 += dy[at] * (x[at] - mean);
    }
    part[lid] = s1;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = wg / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) sums[0] = part[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    part[lid] = s2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = wg / 2; h > 0; h /= 2) {
        if (lid < h) part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) sums[1] = part[0];
}

/* dx of the leftover channels, y = (x - m) / sqrt(v + eps) with m, v at
 * stats[0], stats[1]. In training (train = 1) m and v are the kept
 * values' mean and unbiased variance, so every kept value (each step-th of
 * a sample's (C-c)*HW values) also receives dm / K + dv * 2 (x - m) / (K - 1),
 * dm = -Σdy / s, dv = -Σdy (x - m) / (2 s³), s = sqrt(v + eps), K the
 * number of kept values (the group's, in a group: kept); sums from
 * ndcl_ch_left_bw_sums. */
__kernel void ndcl_ch_left_bw(const int N, const int C, const int HW, const int c,
                              const int step, const float kept, const float eps,
                              const int train,
                              __global const float *stats, __global const float *sums,
                              __global const float *x, __global const float *dy,
                              __global float *dx)
{
    const int i = get_global_id(0);
    const int Lr = (C - c) * HW;
    if (i >= N * Lr) return;
    const int n = i / Lr, k = i - n * Lr;
    const size_t at = ((size_t)n * C + c) * HW + k;
    const float s = sqrt(stats[1] + eps);
    float g = dy[at] / s;
    if (train && k % step == 0) {
        const float K = kept;
        const float dm = -sums[0] / s, dv = -0.5f * sums[1] / (s * s * s);
        g += dm / K + dv * 2.0f * (x[at] - stats[0]) / (K - 1.0f);
    }
    dx[at] = g;
}
