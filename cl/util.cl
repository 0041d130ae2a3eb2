/* util.cl - small element-wise kernels the host code composes: scaling,
 * identity, axpby, finiteness checks, a plain copy. */

/* y[i] = alpha * x[i] + beta * y[i] */
__kernel void ndcl_axpby(const int n, const float alpha, __global const float *x,
                         const float beta, __global float *y)
{
    int i = get_global_id(0);
    if (i < n) y[i] = alpha * x[i] + beta * y[i];
}

/* batch of n x n identities scaled by value. */
__kernel void ndcl_eye(const int n, const int batch, const float value,
                       __global float *a)
{
    int i = get_global_id(0), j = get_global_id(1), b = get_global_id(2);
    if (i < n && j < n && b < batch) a[(b * n + i) * n + j] = (i == j) ? value : 0.0f;
}

/* bad[0] |= any element of x[0..n) is not finite; also raises the
 * context's flag so that the next ndcl_finish reports it. */
__kernel void ndcl_check_finite(const int n, __global const float *x, const int off,
                                __global int *bad, __global int *flag)
{
    int i = get_global_id(0);
    if (i < n && !isfinite(x[off + i])) {
        atomic_xchg(bad, 1);
        NDCL_RAISE(flag);
    }
}

/* running = (1-m)·running + m·stat, unless bad[0] is set: a non-finite
 * batch must not poison the running statistics. With copy set, running =
 * stat (the first-batch copy of ChannelDeconv) before the update. */
__kernel void ndcl_momentum(const int n, const float m, const int copy,
                            __global const float *stat, const int soff,
                            __global float *running, __global const int *bad)
{
    int i = get_global_id(0);
    if (i >= n || bad[0]) return;
    float v = stat[soff + i];
    float r = copy ? v : running[i];
    running[i] = (1.0f - m) * r + m * v;
}

/* y[i] = x[i]: a plain copy, the device's memory bandwidth for ndcl-bench
 * (bytes moved = 2 * 4 * n). */
__kernel void ndcl_copy(const int n, __global const float *x, __global float *y)
{
    const int i = get_global_id(0);
    if (i < n) y[i] = x[i];
}

/* y[r][j] += b[j] for rows x cols (the linear layer's bias). */
__kernel void ndcl_add_row_bias(const int rows, const int cols, __global const float *b,
                                __global float *y)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j < cols && r < rows) y[(size_t)r * cols + j] += b[j];
}
