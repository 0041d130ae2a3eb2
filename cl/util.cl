/* util.cl - small element-wise kernels the host code composes: scaling,
 * identity, axpby, finiteness checks. */

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
