/* train.cl - the operations of ndcl-train's network that are not ndcl's
 * layers: batch gathering, ReLU with 2x2 max-pooling and its backward,
 * softmax cross-entropy, the loss mean, accuracy counting, SGD with
 * momentum and weight decay under a cosine schedule, and the parameter
 * initialisation. OpenCL C 1.2; every kernel bounds-checks its work items,
 * so any global size and work-group size the runtime picks is fine. */

/* One batch: x[b, p] = images[index[first + b], p] / 255, y[b] its label.
 * Work items: n * pixels. */
__kernel void tr_gather(__global const uchar *images, __global const uchar *labels,
                        __global const int *index, int first, int n, int pixels,
                        __global float *x, __global int *y)
{
    int i = get_global_id(0);
    if (i >= n * pixels) return;
    int b = i / pixels, p = i - b * pixels;
    int src = index[first + b];
    x[i] = (float)images[(size_t)src * (size_t)pixels + (size_t)p] / 255.0f;
    if (p == 0) y[b] = labels[src];
}

uint tr_hash(uint x);

/* tr_gather with data augmentation, for training batches of side x side
 * images: each image mirrored left-right with probability 1/2 and moved
 * by (dx, dy), each uniform in -shift .. shift, the pixels moved in from
 * outside 0. The choice is a hash of (salt, base + b) alone: salt from the
 * run's seed, base the image's place in the run (step * batch + its place
 * in the batch), so any split of a batch over ranks draws the same.
 * Work items: n * side * side. */
__kernel void tr_gather_augment(__global const uchar *images, __global const uchar *labels,
                                __global const int *index, int first, int n, int side,
                                int shift, uint salt, uint base, __global float *x,
                                __global int *y)
{
    int pixels = side * side;
    int i = get_global_id(0);
    if (i >= n * pixels) return;
    int b = i / pixels, p = i - b * pixels;
    int r = p / side, c = p - r * side;
    uint h = tr_hash(salt ^ tr_hash(base + (uint)b));
    uint span = (uint)(2 * shift + 1);
    int dx = (int)(h % span) - shift;
    h /= span;
    int dy = (int)(h % span) - shift;
    h /= span;
    int sc = ((h & 1U) ? side - 1 - c : c) - dx, sr = r - dy;
    int src = index[first + b];
    bool in = sr >= 0 && sr < side && sc >= 0 && sc < side;
    x[i] = in ? (float)images[(size_t)src * (size_t)pixels + (size_t)(sr * side + sc)] / 255.0f
              : 0.0f;
    if (p == 0) y[b] = labels[src];
}

/* y = maxpool2x2(relu(x)) over planes of h x w (floor: an odd last row or
 * column is dropped, as PyTorch does), computed as relu(maxpool(x)), which
 * is the same value. arg records which of the window's four inputs the
 * gradient flows to (row-major, the first maximum as PyTorch picks it), or
 * -1 when the output is 0 from the ReLU (PyTorch's ReLU passes no gradient
 * at 0). NaN propagates, as in PyTorch, so a diverging run shows in the
 * loss. Work items: (w/2, h/2, planes), the first fastest so that
 * neighbouring items read neighbouring inputs. */
__kernel void tr_relu_pool(__global const float *x, int planes, int h, int w,
                           __global float *y, __global char *arg)
{
    int ox = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    int oh = h / 2, ow = w / 2;
    if (ox >= ow || oy >= oh || p >= planes) return;
    __global const float *s = x + (size_t)p * (size_t)(h * w) + (size_t)(2 * oy * w + 2 * ox);
    /* Written out (no private array, no loop) so that the compiler keeps
     * everything in registers and vectorises across work items. */
    float v1 = s[1], v2 = s[w], v3 = s[w + 1], m = s[0];
    int a = 0;
    /* v != v: NaN, without isnan's call (which keeps PoCL from vectorising
     * across work items). */
    bool t = v1 > m || v1 != v1;
    m = t ? v1 : m;
    a = t ? 1 : a;
    t = v2 > m || v2 != v2;
    m = t ? v2 : m;
    a = t ? 2 : a;
    t = v3 > m || v3 != v3;
    m = t ? v3 : m;
    a = t ? 3 : a;
    bool pass = m > 0.0f || m != m;
    size_t o = ((size_t)p * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox;
    y[o] = pass ? m : 0.0f;
    arg[o] = (char)(pass ? a : -1);
}

/* dx of tr_relu_pool: each window's item writes its four inputs, dy to the
 * recorded one and 0 to the others (the windows do not overlap, so nothing
 * accumulates), and 0 to an odd last row or column that no window covers.
 * Work items: (w/2, h/2, planes); h and w at least 2. */
__kernel void tr_relu_pool_backward(__global const float *dy, __global const char *arg,
                                    int planes, int h, int w, __global float *dx)
{
    int ox = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    int oh = h / 2, ow = w / 2;
    if (ox >= ow || oy >= oh || p >= planes) return;
    size_t o = ((size_t)p * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox;
    int a = arg[o];
    float g = dy[o];
    __global float *d = dx + (size_t)p * (size_t)(h * w) + (size_t)(2 * oy * w + 2 * ox);
    d[0] = a == 0 ? g : 0.0f;
    d[1] = a == 1 ? g : 0.0f;
    d[w] = a == 2 ? g : 0.0f;
    d[w + 1] = a == 3 ? g : 0.0f;
    bool last_col = (w & 1) && ox == ow - 1, last_row = (h & 1) && oy == oh - 1;
    if (last_col) d[2] = d[w + 2] = 0.0f;
    if (last_row) {
        d[2 * w] = d[2 * w + 1] = 0.0f;
        if (last_col) d[2 * w + 2] = 0.0f;
    }
}

/* Per sample: loss[b] = logsumexp(z) - z[label] and the gradient of the
 * batch mean, dz = (softmax(z) - onehot(label)) * scale (scale = 1/n).
 * Work items: n. */
__kernel void tr_softmax_xent(__global const float *logits, __global const int *labels,
                              int n, int classes, float scale, __global float *loss,
                              __global float *dlogits)
{
    int b = get_global_id(0);
    if (b >= n) return;
    __global const float *z = logits + (size_t)b * (size_t)classes;
    float m = z[0];
    for (int c = 1; c < classes; c++)
        m = fmax(m, z[c]);
    float s = 0.0f;
    for (int c = 0; c < classes; c++)
        s += exp(z[c] - m);
    int label = labels[b];
    loss[b] = m + log(s) - z[label];
    __global float *d = dlogits + (size_t)b * (size_t)classes;
    for (int c = 0; c < classes; c++)
        d[c] = (exp(z[c] - m) / s - (c == label ? 1.0f : 0.0f)) * scale;
}

/* out[0] = scale * sum(v[0 .. n-1]) in one work-group of a power-of-two
 * size, in a fixed order: the same inputs give the same bits. */
__kernel void tr_sum(__global const float *v, int n, float scale, __global float *out,
                     __local float *tmp)
{
    int l = get_local_id(0), L = get_local_size(0);
    float s = 0.0f;
    for (int i = l; i < n; i += L)
        s += v[i];
    tmp[l] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = L / 2; k > 0; k /= 2) {
        if (l < k) tmp[l] += tmp[l + k];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) out[0] = tmp[0] * scale;
}

/* correct[0] += the number of samples whose first largest logit is their
 * label (PyTorch's argmax). Work items: n. */
__kernel void tr_count_correct(__global const float *logits, __global const int *labels,
                               int n, int classes, __global int *correct)
{
    int b = get_global_id(0);
    if (b >= n) return;
    __global const float *z = logits + (size_t)b * (size_t)classes;
    int a = 0;
    for (int c = 1; c < classes; c++)
        if (z[c] > z[a]) a = c;
    if (a == labels[b]) atomic_inc(correct);
}

/* One step of PyTorch's SGD (dampening 0, no Nesterov) at step `step` of
 * `total`, with the cosine schedule lr = lr0 * (1 + cos(pi * step / total)) / 2
 * (CosineAnnealingLR to 0): d = g + wd * p; buf = momentum * buf + d;
 * p -= lr * buf. buf starts at zero, which makes the first step
 * buf = d as in PyTorch. Work items: n. */
__kernel void tr_sgd(__global float *p, __global const float *g, __global float *buf, int n,
                     float lr0, float momentum, float wd, int step, int total)
{
    int i = get_global_id(0);
    if (i >= n) return;
    float lr = 0.5f * lr0 * (1.0f + cos(M_PI_F * (float)step / (float)total));
    float d = g[i] + wd * p[i];
    float v = momentum * buf[i] + d;
    buf[i] = v;
    p[i] = p[i] - lr * v;
}

/* A 32-bit integer hash with good avalanche (Wellons' lowbias32). */
uint tr_hash(uint x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* p[i] uniform in [-bound, bound), a function of (seed, stream, i) alone:
 * PyTorch's default initialisation of Conv2d and Linear weights and biases
 * (kaiming_uniform with a = sqrt(5) gives bound = 1/sqrt(fan_in)), from a
 * counter-based generator, so the values do not depend on the work-group
 * size or the device. Work items: n. */
__kernel void tr_init_uniform(__global float *p, int n, float bound, uint seed, uint stream)
{
    int i = get_global_id(0);
    if (i >= n) return;
    uint h = tr_hash(tr_hash(tr_hash(seed) ^ (stream * 0x9e3779b9U)) + (uint)i);
    h = tr_hash(h ^ 0x6a09e667U);
    float u = (float)(h >> 8) * (1.0f / 16777216.0f);
    p[i] = (2.0f * u - 1.0f) * bound;
}
