/* isqrt.cl - the element-wise steps of the coupled Newton-Schulz inverse
 * square root; the products are GEMMs of the BLAS engines (src/blas/:
 * OpenBLAS on a host-memory CPU device, CLBlast elsewhere). Every matrix
 * norm stays on the device (norm[b]), so no iteration waits for the host.
 * Buffers are passed with element offsets so that iterates can live in a
 * saved area. */

/* norm[norm_off + b] = ||A[b]||_F, one work-group per matrix (local size a
 * power of two, acc holds one float per item). A norm that is not finite
 * and positive (NaN or Inf in A, or A = 0) would make every iterate
 * non-finite: it raises the context's flag. */
__kernel void ndcl_ns_norm(const int nn, __global const float *A,
                           __global float *norm, const int norm_off,
                           __global int *flag, __local float *acc)
{
    const int t = get_local_id(0), wg = get_local_size(0), b = get_group_id(1);
    __global const float *a = A + b * nn;
    float s = 0.0f;
    for (int i = t; i < nn; i += wg) s += a[i] * a[i];
    acc[t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int span = wg / 2; span > 0; span /= 2) {
        if (t < span) acc[t] += acc[t + span];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) {
        const float v = sqrt(acc[0]);
        norm[norm_off + b] = v;
        if (!(v > 0.0f) || isinf(v)) NDCL_RAISE(flag);
    }
}

/* The first iteration without its products (Z0 = I makes Z0*Y0 = Y0 and
 * T0*Z0 = T0 exactly): Y0 = A/a, T0 = (3I - Y0)/2 stored as Z1, and, when
 * z0_off >= 0 and t0_off >= 0, Z0 = I and T0 itself (saved for the
 * backward pass). */
__kernel void ndcl_ns_init(const int n, const int batch, __global const float *A,
                           __global const float *norm, const int norm_off,
                           __global float *Y, const int y_off, __global float *Z0,
                           const int z0_off, __global float *Z1, const int z1_off,
                           __global float *T0, const int t0_off)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int e = (b * n + i) * n + j;
    const float y = A[e] / norm[norm_off + b];
    const float t = 0.5f * ((i == j ? 3.0f : 0.0f) - y);
    Y[y_off + e] = y;
    Z1[z1_off + e] = t;
    if (z0_off >= 0) Z0[z0_off + e] = (i == j) ? 1.0f : 0.0f;
    if (t0_off >= 0) T0[t0_off + e] = t;
}

/* a[b, i, i] += value for each of batch n x n matrices at offset off. */
__kernel void ndcl_ns_diag_add(const int n, const int batch, const float value,
                               __global float *a, const int off)
{
    const int i = get_global_id(0), b = get_global_id(1);
    if (i < n && b < batch) a[off + (b * n + i) * n + i] += value;
}

/* D[b] = Z[b] / sqrt(norm[b]), in place. */
__kernel void ndcl_ns_final(const int n, const int batch, __global float *D,
                            __global const float *norm, const int norm_off)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (i >= n || j >= n || b >= batch) return;
    const int e = (b * n + i) * n + j;
    D[e] = D[e] / sqrt(norm[norm_off + b]);
}
