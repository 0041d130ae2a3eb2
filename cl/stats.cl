/* stats.cl - column sums and means, centring, the finishing step of a
 * covariance (mirror SYRK's triangle, add eps on the diagonal), and strided
 * row or column sums. */

/* out[chunk*cols + col] = (sum of X[r, col] over the chunk's rows) / divisor.
 * Work-group (lx, ly): lx columns side by side (coalesced reads), ly lanes
 * striding over the chunk's rows, then a tree reduction over the lanes in
 * local memory (acc holds lx*ly floats; ly is a power of two). Group row
 * gy handles rows [gy*rows_per_chunk, (gy+1)*rows_per_chunk). */
__kernel void ndcl_col_sum(const int rows, const int cols, const int rows_per_chunk,
                           const float divisor, __global const float *X,
                           __global float *out, __local float *acc)
{
    const int lx = get_local_size(0), ly = get_local_size(1);
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int col = get_global_id(0), chunk = get_group_id(1);
    const int r0 = chunk * rows_per_chunk;
    const int r1 = min(rows, r0 + rows_per_chunk);
    float s = 0.0f;
    if (col < cols)
        for (int r = r0 + ty; r < r1; r += ly) s += X[r * cols + col];
    acc[ty * lx + tx] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int span = ly / 2; span > 0; span /= 2) {
        if (ty < span) acc[ty * lx + tx] += acc[(ty + span) * lx + tx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (ty == 0 && col < cols) out[chunk * cols + col] = acc[tx] / divisor;
}

/* X[r, c] -= mean[c] */
__kernel void ndcl_center(const int rows, const int cols, __global float *X,
                          __global const float *mean)
{
    const int c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows) X[r * cols + c] -= mean[c];
}

/* For each of batch n x n matrices whose upper triangle holds the result:
 * copy it to the lower triangle and add eps to the diagonal. Items below
 * the diagonal only read above it, so the update is race-free in place. */
__kernel void ndcl_cov_finish(const int n, const int batch, const float eps,
                              __global float *cov)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    __global float *m = cov + b * n * n;
    if (i > j)
        m[i * n + j] = m[j * n + i];
    else if (i == j)
        m[i * n + i] += eps;
}

/* out[r] = alpha * Σ_{c < n} X[off + r*rs + c*cs]: sums of rows (cs = 1) or
 * of columns (rs = 1), one work-group per sum (local size a power of two,
 * acc one float per item), in a fixed order (deterministic). */
__kernel void ndcl_strided_sum(const int n, __global const float *X, const int off,
                               const int rs, const int cs, const float alpha,
                               __global float *out, __local float *acc)
{
    const int t = get_local_id(0), wg = get_local_size(0), r = get_group_id(1);
    __global const float *x = X + off + (size_t)r * rs;
    float s = 0.0f;
    for (int c = t; c < n; c += wg) s += x[(size_t)c * cs];
    acc[t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int span = wg / 2; span > 0; span /= 2) {
        if (t < span) acc[t] += acc[t + span];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) out[r] = alpha * acc[0];
}
