/* train.cl - the operations of ndcl-train's network that are not ndcl's
 * layers: batch gathering, ReLU with 2x2 max-pooling and its backward,
 * softmax cross-entropy, the loss mean, accuracy counting, SGD with
 * momentum and weight decay under a cosine schedule, and the parameter
 * initialisation. OpenCL C 1.2; every kernel bounds-checks its work items,
 * so any global size and work-group size the runtime picks is fine. */

/* One batch: x[b, p] = images[index[first + b], p] / 255, y[b] its label.
 * Work items: (pixels, n), so that the image's index is read once per row
 * of items, with no division by pixels per item. */
__kernel void tr_gather(__global const uchar *images, __global const uchar *labels,
                        __global const int *index, int first, int n, int pixels,
                        __global float *x, __global int *y)
{
    int p = get_global_id(0), b = get_global_id(1);
    if (p >= pixels || b >= n) return;
    int src = index[first + b];
    x[(size_t)b * (size_t)pixels + (size_t)p] =
        (float)images[(size_t)src * (size_t)pixels + (size_t)p] / 255.0f;
    if (p == 0) y[b] = labels[src];
}

uint tr_hash(uint x);

/* tr_gather with data augmentation, for training batches of side x side
 * images: each image mirrored left-right with probability 1/2 and moved
 * by (dx, dy), each uniform in -shift .. shift, the pixels moved in from
 * outside 0. The choice is a hash of (salt, base + b) alone: salt from the
 * run's seed, base the image's place in the run (step * batch + its place
 * in the batch), so any split of a batch over ranks draws the same.
 * Work items: (side, side, n): column, row, image. The draw is computed
 * before the bounds check, from the image's number alone, so that the
 * compiler can keep it out of the loop over an image's pixels (a
 * division after the check could not move: it might trap). */
__kernel void tr_gather_augment(__global const uchar *images, __global const uchar *labels,
                                __global const int *index, int first, int n, int side,
                                int shift, uint salt, uint base, __global float *x,
                                __global int *y)
{
    int c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    uint h = tr_hash(salt ^ tr_hash(base + (uint)b));
    uint span = (uint)(2 * shift + 1);
    int dx = (int)(h % span) - shift;
    h /= span;
    int dy = (int)(h % span) - shift;
    h /= span;
    if (c >= side || r >= side || b >= n) return;
    int sc = ((h & 1U) ? side - 1 - c : c) - dx, sr = r - dy;
    int src = index[first + b];
    bool in = sr >= 0 && sr < side && sc >= 0 && sc < side;
    size_t pixels = (size_t)side * (size_t)side;
    x[(size_t)b * pixels + (size_t)(r * side + c)] =
        in ? (float)images[(size_t)src * pixels + (size_t)(sr * side + sc)] / 255.0f : 0.0f;
    if (r == 0 && c == 0) y[b] = labels[src];
}

/* ReLU + 2x2 max-pooling of eight windows side by side, each lane one
 * window with inputs (v0 v1 / v2 v3): y = relu(max), computed as the max
 * then the ReLU (the same value); arg = which input the gradient flows to
 * (row-major, as PyTorch's max-pool picks it: the first maximum, or the
 * last NaN, which wins the window: PyTorch propagates NaN, so a diverging
 * run shows in the loss), or -1 when y is 0 from the ReLU (PyTorch's ReLU
 * passes no gradient at 0). Whole-vector selects, no branches: every lane
 * costs the same, whatever the data. v != v: NaN, without isnan's call. */
void tr_window8(float8 v0, float8 v1, float8 v2, float8 v3, float8 *y, char8 *arg)
{
    float8 m = v0;
    int8 a = (int8)0;
    int8 t = (v1 > m) | (v1 != v1);
    m = select(m, v1, t);
    a = select(a, (int8)1, t);
    t = (v2 > m) | (v2 != v2);
    m = select(m, v2, t);
    a = select(a, (int8)2, t);
    t = (v3 > m) | (v3 != v3);
    m = select(m, v3, t);
    a = select(a, (int8)3, t);
    int8 pass = (m > 0.0f) | (m != m);
    *y = select((float8)0.0f, m, pass);
    *arg = convert_char8(select((int8)-1, a, pass));
}

/* y = maxpool2x2(relu(x)) over planes of h x w (floor: an odd last row or
 * column is dropped, as PyTorch does), and arg, one char per output (see
 * tr_window8). Work items: (ceil((w/2) / 8), h/2, planes), each eight
 * neighbouring windows of one row pair from two 16-float loads. On a CPU
 * device (PoCL) that makes explicit 8-wide vector code: PoCL vectorises
 * only across the first dimension, whose extent here (w/2 = 14 or 7) is
 * below the vector width, and did not vectorise per-window code at all
 * (3-5 GB/s). The loads may run past the row into the next (those lanes
 * are computed, not stored); only the buffer's last items, whose loads
 * would leave it, load lane by lane. */
__kernel void tr_relu_pool(__global const float *x, int planes, int h, int w,
                           __global float *y, __global char *arg)
{
    int i = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    int oh = h / 2, ow = w / 2;
    if (8 * i >= ow || oy >= oh || p >= planes) return;
    size_t row =
        (size_t)p * (size_t)h * (size_t)w + (size_t)(2 * oy) * (size_t)w + (size_t)(16 * i);
    __global const float *s = x + row;
    float16 t, u;
    if (row + (size_t)w + 16 <= (size_t)planes * (size_t)h * (size_t)w) {
        t = vload16(0, s);
        u = vload16(0, s + w);
    } else {
        float lt[16], lu[16];
        int n = 2 * (ow - 8 * i); /* this row's inputs, all in the buffer */
        for (int k = 0; k < 16; k++) {
            lt[k] = k < n ? s[k] : 0.0f;
            lu[k] = k < n ? s[w + k] : 0.0f;
        }
        t = vload16(0, lt);
        u = vload16(0, lu);
    }
    float8 m;
    char8 a;
    tr_window8(t.even, t.odd, u.even, u.odd, &m, &a);
    size_t o = ((size_t)p * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)(8 * i);
    int left = ow - 8 * i; /* windows of this row from o on */
    if (left >= 8) {
        vstore8(m, 0, y + o);
        vstore8(a, 0, arg + o);
        return;
    }
    /* The row's last 1-7 windows: in pieces of 4, 2, 1. */
    if (left >= 4) {
        vstore4(m.lo, 0, y + o);
        vstore4(a.lo, 0, arg + o);
        m.lo = m.hi;
        a.lo = a.hi;
        o += 4;
        left -= 4;
    }
    if (left >= 2) {
        vstore2(m.s01, 0, y + o);
        vstore2(a.s01, 0, arg + o);
        m.s01 = m.s23;
        a.s01 = a.s23;
        o += 2;
        left -= 2;
    }
    if (left == 1) {
        y[o] = m.s0;
        arg[o] = a.s0;
    }
}

/* dx of tr_relu_pool, each element written once (no zero fill): dy to the
 * recorded input of each window, 0 to the others and to an odd last row or
 * column that no window covers (the windows do not overlap, nothing
 * accumulates). Work items: (ceil(w / 16), ceil(h / 2), planes), each 16
 * columns of one row pair, from eight windows' dy and arg, with 16-float
 * stores (see tr_relu_pool for why). */
__kernel void tr_relu_pool_backward(__global const float *dy, __global const char *arg,
                                    int planes, int h, int w, __global float *dx)
{
    int i = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    int oh = h / 2, ow = w / 2;
    if (16 * i >= w || 2 * oy >= h || p >= planes) return;
    float8 g = (float8)0.0f;
    int8 a = (int8)-1;
    int left = ow - 8 * i; /* windows of this item: none in an odd last row */
    if (oy < oh && left > 0) {
        size_t o = ((size_t)p * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)(8 * i);
        if (o + 8 <= (size_t)planes * (size_t)oh * (size_t)ow) {
            g = vload8(0, dy + o);
            a = convert_int8(vload8(0, arg + o));
        } else {
            float lg[8];
            int la[8];
            for (int k = 0; k < 8; k++) {
                lg[k] = k < left ? dy[o + k] : 0.0f;
                la[k] = k < left ? arg[o + k] : -1;
            }
            g = vload8(0, lg);
            a = vload8(0, la);
        }
        /* Lanes past the row's last window: the next row's, or an odd
         * last column's, which gets 0. */
        g = select((float8)0.0f, g, (int8)(0, 1, 2, 3, 4, 5, 6, 7) < left);
    }
    float16 top, bot;
    top.even = select((float8)0.0f, g, a == 0);
    top.odd = select((float8)0.0f, g, a == 1);
    bot.even = select((float8)0.0f, g, a == 2);
    bot.odd = select((float8)0.0f, g, a == 3);
    __global float *d = dx + (size_t)p * (size_t)h * (size_t)w +
                        (size_t)(2 * oy) * (size_t)w + (size_t)(16 * i);
    bool two = 2 * oy + 1 < h; /* an odd last row has no second */
    int cols = w - 16 * i;
    if (cols >= 16) {
        vstore16(top, 0, d);
        if (two) vstore16(bot, 0, d + w);
        return;
    }
    /* The row's last 1-15 columns: in pieces of 8, 4, 2, 1. */
    if (cols >= 8) {
        vstore8(top.lo, 0, d);
        if (two) vstore8(bot.lo, 0, d + w);
        top.lo = top.hi;
        bot.lo = bot.hi;
        d += 8;
        cols -= 8;
    }
    if (cols >= 4) {
        vstore4(top.s0123, 0, d);
        if (two) vstore4(bot.s0123, 0, d + w);
        top.s0123 = top.s4567;
        bot.s0123 = bot.s4567;
        d += 4;
        cols -= 4;
    }
    if (cols >= 2) {
        vstore2(top.s01, 0, d);
        if (two) vstore2(bot.s01, 0, d + w);
        top.s01 = top.s23;
        bot.s01 = bot.s23;
        d += 2;
        cols -= 2;
    }
    if (cols == 1) {
        d[0] = top.s0;
        if (two) d[w] = bot.s0;
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

/* One step of PyTorch's SGD (dampening 0, no Nesterov) at learning rate
 * lr (the host evaluates the schedule once per step: a cos per item cost
 * PoCL 30 times the update itself): d = g + wd * p; buf = momentum * buf
 * + d; p -= lr * buf. buf starts at zero, which makes the first step
 * buf = d as in PyTorch. Work items: n. */
__kernel void tr_sgd(__global float *p, __global const float *g, __global float *buf, int n,
                     float lr, float momentum, float wd)
{
    int i = get_global_id(0);
    if (i >= n) return;
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
