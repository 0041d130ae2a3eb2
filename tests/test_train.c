/* test_train.c - ndcl-train's own kernels (tools/train/train.cl) against a
 * double-precision host reference and their gradients against finite
 * differences; and the whole network's gradient (ndcl's layers joined by
 * those kernels) against finite differences of its loss, with and without
 * deconvolution. */
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "net.h"

static tk k;

static tk *kern(void)
{
    if (!k.prog) {
        int rc = tk_init(&k, test_ctx());
        ck_assert_msg(rc == TR_OK, "tk_init: %s", tr_error());
    }
    return &k;
}

static cl_mem buf_from(const void *data, size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(kern()->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                              (void *)data, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    return m;
}

static void buf_read(cl_mem m, void *out, size_t bytes)
{
    cl_int err = clEnqueueReadBuffer(kern()->q, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    ck_assert_int_eq(err, CL_SUCCESS);
}

static void buf_write(cl_mem m, const void *data, size_t bytes)
{
    cl_int err = clEnqueueWriteBuffer(kern()->q, m, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    ck_assert_int_eq(err, CL_SUCCESS);
}

#define OK(expr) ck_assert_msg((expr) == TR_OK, "%s: %s", #expr, tr_error())

/* Values far from each other and from 0 (|v| >= 0.05, pairwise >= 0.01
 * apart): a finite-difference step of 1e-3 changes no max and no ReLU. */
static void distinct_values(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(i + 5) * 0.01 * ((i % 2) ? 1 : -1));
    unsigned st = seed;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(test_rand01(&st) * (double)(i + 1));
        if (j > i) j = i;
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* ReLU then 2x2 max-pooling, as PyTorch: the first maximum of the ReLU'd
 * window; the gradient reaches it only when its input is > 0. */
static void relu_pool_ref(const float *x, int planes, int h, int w, double *y, int *arg)
{
    int oh = h / 2, ow = w / 2;
    for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double best = -1;
                int a = 0;
                for (int k2 = 0; k2 < 4; k2++) {
                    double v =
                        x[(size_t)p * h * w + (2 * oy + k2 / 2) * w + 2 * ox + k2 % 2];
                    v = v > 0 ? v : 0;
                    if (v > best) {
                        best = v;
                        a = k2;
                    }
                }
                size_t o = (size_t)p * oh * ow + oy * ow + ox;
                double raw = x[(size_t)p * h * w + (2 * oy + a / 2) * w + 2 * ox + a % 2];
                y[o] = best;
                arg[o] = raw > 0 ? a : -1;
            }
}

/* The kernels against relu_pool_ref at one shape: forward, and a backward
 * into a dx filled with NaN first, so that an element it does not write
 * fails. */
static void relu_pool_check(int planes, int h, int w, unsigned seed)
{
    const int oh = h / 2, ow = w / 2;
    size_t n = (size_t)planes * h * w, no = (size_t)planes * oh * ow;
    size_t nob = no ? no : 1; /* h or w of 1: no windows */
    float *x = malloc(n * sizeof *x), *y = calloc(nob, sizeof *y), *dx = malloc(n * 4);
    double *yr = malloc(nob * sizeof *yr);
    int *ar = malloc(nob * sizeof *ar);
    char *arg = calloc(nob, 1);
    test_fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i + 1 < n; i += 5)
        x[i] = x[i + 1]; /* ties */
    for (int i = 0; i < w && h >= 2; i++)
        x[i] = x[w + i] = -0.5f; /* the first windows all negative */
    relu_pool_ref(x, planes, h, w, yr, ar);
    cl_mem bx = buf_from(x, n * 4), by = buf_from(y, nob * 4), ba = buf_from(arg, nob);
    OK(tk_relu_pool(kern(), bx, planes, h, w, by, ba));
    buf_read(by, y, nob * 4);
    buf_read(ba, arg, nob);
    for (size_t i = 0; i < no; i++) {
        ck_assert_msg(y[i] == (float)yr[i], "%dx%dx%d: y[%zu] = %g, want %g", planes, h, w,
                      i, y[i], yr[i]);
        ck_assert_msg(arg[i] == ar[i], "%dx%dx%d: arg[%zu] = %d, want %d", planes, h, w, i,
                      arg[i], ar[i]);
    }
    /* Backward: dy routed to the recorded input, 0 elsewhere. */
    float *dy = malloc(nob * sizeof *dy);
    test_fill_uniform(dy, nob, seed + 1, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        dx[i] = NAN;
    cl_mem bdy = buf_from(dy, nob * 4), bdx = buf_from(dx, n * 4);
    OK(tk_relu_pool_backward(kern(), bdy, ba, planes, h, w, bdx));
    buf_read(bdx, dx, n * 4);
    for (int p = 0; p < planes; p++)
        for (int yy = 0; yy < h; yy++)
            for (int xx = 0; xx < w; xx++) {
                double want = 0;
                int oy = yy / 2, ox = xx / 2;
                if (oy < oh && ox < ow) {
                    size_t o = (size_t)p * oh * ow + oy * ow + ox;
                    if (ar[o] == (yy % 2) * 2 + xx % 2) want = dy[o];
                }
                size_t i = (size_t)p * h * w + yy * w + xx;
                ck_assert_msg(dx[i] == (float)want, "%dx%dx%d: dx[%zu] = %g, want %g",
                              planes, h, w, i, dx[i], want);
            }
    cl_mem m[] = {bx, by, ba, bdy, bdx};
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(m[i]);
    free(x);
    free(y);
    free(dx);
    free(yr);
    free(ar);
    free(arg);
    free(dy);
}

START_TEST(relu_pool_matches_reference)
{
    /* The network's planes (28 and 14: the rows' last windows short of
     * the kernels' eight); odd sizes (the last row and column dropped);
     * rows of more than one item (w/2 = 17, 18, 33) and of exactly eight
     * windows (w = 16, 32); one plane (batch 1, the buffer's end in the
     * middle of an item); planes too small for any window. Ties and
     * all-negative windows in each. */
    const int shapes[][3] = {{6, 7, 9},  {3, 28, 28}, {5, 14, 14}, {2, 5, 37}, {1, 3, 34},
                             {4, 2, 16}, {2, 6, 32},  {1, 9, 67},  {1, 2, 2},  {3, 1, 5},
                             {2, 4, 1},  {1, 1, 1},   {7, 3, 3},   {1, 28, 28}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        relu_pool_check(shapes[i][0], shapes[i][1], shapes[i][2], 11 + (unsigned)i);
}
END_TEST

/* sum(c ⊙ relu_pool(x)) on the device. */
static double weighted_pool(cl_mem bx, int planes, int h, int w, const float *c, cl_mem by,
                            cl_mem ba)
{
    size_t no = (size_t)planes * (h / 2) * (w / 2);
    float *y = malloc(no * sizeof *y);
    OK(tk_relu_pool(kern(), bx, planes, h, w, by, ba));
    buf_read(by, y, no * 4);
    double s = 0;
    for (size_t i = 0; i < no; i++)
        s += (double)c[i] * y[i];
    free(y);
    return s;
}

/* A NaN in a window wins it, as in PyTorch (a diverging run must show in
 * the loss): y is NaN and the gradient goes to the NaN's input, whichever
 * of the four it is and whatever the others hold. */
START_TEST(relu_pool_propagates_nan)
{
    const int planes = 4, h = 2, w = 2;
    float x[16], y[4];
    char arg[4];
    for (int p = 0; p < planes; p++)
        for (int k = 0; k < 4; k++)
            x[p * 4 + k] = k == p ? NAN : (p % 2 ? 5.0f : -1.0f);
    cl_mem bx = buf_from(x, sizeof x), by = buf_from(y, sizeof y), ba = buf_from(arg, 4);
    OK(tk_relu_pool(kern(), bx, planes, h, w, by, ba));
    buf_read(by, y, sizeof y);
    buf_read(ba, arg, 4);
    for (int p = 0; p < planes; p++) {
        ck_assert_msg(isnan(y[p]), "plane %d: y = %g, want NaN", p, y[p]);
        ck_assert_msg(arg[p] == p, "plane %d: arg %d, want %d", p, arg[p], p);
    }
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    clReleaseMemObject(ba);
    /* The same in rows of 17 windows (whole eight-window items and a
     * short one): window k holds a NaN at k % 4, and in every third also
     * a second NaN after it and a larger number before it; the last NaN
     * takes the gradient, as in PyTorch's max-pool (a NaN replaces the
     * running maximum whatever it is). */
    enum { H = 4, W = 34, OW = 17, NO = 2 * OW };
    float xw[H * W], yw[NO];
    char aw[NO];
    test_fill_uniform(xw, H * W, 71, -1.0f, 1.0f);
    for (int oy = 0; oy < 2; oy++)
        for (int k = 0; k < OW; k++) {
            int at = k % 4, idx[4];
            for (int j = 0; j < 4; j++)
                idx[j] = (2 * oy + j / 2) * W + 2 * k + j % 2;
            xw[idx[at]] = NAN;
            if (k % 3 == 0 && at < 3) xw[idx[at + 1]] = NAN;
            if (k % 3 == 0 && at > 0) xw[idx[at - 1]] = 5.0f;
        }
    bx = buf_from(xw, sizeof xw);
    by = buf_from(yw, sizeof yw);
    ba = buf_from(aw, sizeof aw);
    OK(tk_relu_pool(kern(), bx, 1, H, W, by, ba));
    buf_read(by, yw, sizeof yw);
    buf_read(ba, aw, sizeof aw);
    for (int o = 0; o < NO; o++) {
        int k = o % OW, want = k % 4 + (k % 3 == 0 && k % 4 < 3);
        ck_assert_msg(isnan(yw[o]), "window %d: y = %g, want NaN", o, yw[o]);
        ck_assert_msg(aw[o] == want, "window %d: arg %d, want %d", o, aw[o], want);
    }
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    clReleaseMemObject(ba);
}
END_TEST

START_TEST(relu_pool_gradient_by_finite_differences)
{
    const int planes = 3, h = 6, w = 6;
    size_t n = (size_t)planes * h * w, no = (size_t)planes * 9;
    float *x = malloc(n * 4), *c = malloc(no * 4), *dx = calloc(n, 4);
    distinct_values(x, n, 21);
    test_fill_uniform(c, no, 22, -1.0f, 1.0f);
    cl_mem bx = buf_from(x, n * 4), by = buf_from(c, no * 4), ba = buf_from(c, no);
    cl_mem bc = buf_from(c, no * 4), bdx = buf_from(dx, n * 4);
    weighted_pool(bx, planes, h, w, c, by, ba);
    OK(tk_relu_pool_backward(kern(), bc, ba, planes, h, w, bdx));
    buf_read(bdx, dx, n * 4);
    const float step = 1e-3f;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + step;
        buf_write(bx, x, n * 4);
        double up = weighted_pool(bx, planes, h, w, c, by, ba);
        x[i] = keep - step;
        buf_write(bx, x, n * 4);
        double down = weighted_pool(bx, planes, h, w, c, by, ba);
        x[i] = keep;
        double fd = (up - down) / (2.0 * step);
        ck_assert_msg(fabs(fd - dx[i]) < 1e-3, "dx[%zu] = %g, finite differences %g", i,
                      dx[i], fd);
    }
    cl_mem m[] = {bx, by, ba, bc, bdx};
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(m[i]);
    free(x);
    free(c);
    free(dx);
}
END_TEST

/* Softmax cross-entropy and the mean: loss per sample, the batch mean and
 * the gradient of the mean, in double on the host. */
static void xent_ref(const float *z, const int *lab, int n, int classes, double *loss,
                     double *mean, double *dz)
{
    *mean = 0;
    for (int b = 0; b < n; b++) {
        const float *r = z + (size_t)b * classes;
        double m = r[0], s = 0;
        for (int c = 1; c < classes; c++)
            m = fmax(m, r[c]);
        for (int c = 0; c < classes; c++)
            s += exp(r[c] - m);
        loss[b] = m + log(s) - r[lab[b]];
        *mean += loss[b] / n;
        for (int c = 0; c < classes; c++)
            dz[(size_t)b * classes + c] = (exp(r[c] - m) / s - (c == lab[b])) / n;
    }
}

START_TEST(softmax_xent_matches_reference_and_finite_differences)
{
    const int n = 37, classes = 10; /* n not a multiple of any work-group */
    size_t nz = (size_t)n * classes;
    float *z = malloc(nz * 4), *dz = calloc(nz, 4), *loss = calloc((size_t)n, 4), mean = 0;
    int *lab = malloc((size_t)n * sizeof *lab);
    double *lr = malloc((size_t)n * 8), *dzr = malloc(nz * 8), meanr;
    test_fill_uniform(z, nz, 31, -8.0f, 8.0f);
    z[5] = 60.0f; /* a large logit: exp must not overflow */
    for (int b = 0; b < n; b++)
        lab[b] = (b * 7) % classes;
    xent_ref(z, lab, n, classes, lr, &meanr, dzr);
    cl_mem bz = buf_from(z, nz * 4), bl = buf_from(lab, (size_t)n * 4);
    cl_mem bloss = buf_from(loss, (size_t)n * 4), bdz = buf_from(dz, nz * 4);
    cl_mem bmean = buf_from(&mean, 4);
    OK(tk_softmax_xent(kern(), bz, bl, n, classes, 1.0f / n, bloss, bdz));
    OK(tk_sum(kern(), bloss, n, 1.0f / n, bmean));
    buf_read(bloss, loss, (size_t)n * 4);
    buf_read(bdz, dz, nz * 4);
    buf_read(bmean, &mean, 4);
    for (int b = 0; b < n; b++)
        ck_assert_msg(fabs(loss[b] - lr[b]) <= 1e-5 * fmax(1, fabs(lr[b])),
                      "loss[%d] = %.8g, want %.8g", b, loss[b], lr[b]);
    ck_assert_msg(fabs(mean - meanr) < 1e-5 * fmax(1, meanr), "mean %g, want %g", mean,
                  meanr);
    ck_assert_msg(test_rel_err_f(dz, dzr, nz, 1e-6) < 1e-5, "dz rel err %g",
                  test_rel_err_f(dz, dzr, nz, 1e-6));
    /* The gradient against finite differences of the device's mean loss. */
    const float step = 1e-2f;
    for (size_t i = 0; i < nz; i += 7) {
        float keep = z[i], up, down;
        z[i] = keep + step;
        buf_write(bz, z, nz * 4);
        OK(tk_softmax_xent(kern(), bz, bl, n, classes, 1.0f / n, bloss, bdz));
        OK(tk_sum(kern(), bloss, n, 1.0f / n, bmean));
        buf_read(bmean, &up, 4);
        z[i] = keep - step;
        buf_write(bz, z, nz * 4);
        OK(tk_softmax_xent(kern(), bz, bl, n, classes, 1.0f / n, bloss, bdz));
        OK(tk_sum(kern(), bloss, n, 1.0f / n, bmean));
        buf_read(bmean, &down, 4);
        z[i] = keep;
        double fd = ((double)up - down) / (2.0 * step);
        ck_assert_msg(fabs(fd - dzr[i]) < 2e-4, "dz[%zu] = %g, finite differences %g", i,
                      dzr[i], fd);
    }
    cl_mem m[] = {bz, bl, bloss, bdz, bmean};
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(m[i]);
    free(z);
    free(dz);
    free(loss);
    free(lab);
    free(lr);
    free(dzr);
}
END_TEST

START_TEST(sum_matches_reference_and_repeats)
{
    const int n = 1000;
    float v[1000], a = 0, b = 0;
    double want = 0;
    test_fill_uniform(v, n, 41, -1.0f, 3.0f);
    for (int i = 0; i < n; i++)
        want += v[i];
    cl_mem bv = buf_from(v, sizeof v), out = buf_from(&a, 4);
    OK(tk_sum(kern(), bv, n, 0.5f, out));
    buf_read(out, &a, 4);
    OK(tk_sum(kern(), bv, n, 0.5f, out));
    buf_read(out, &b, 4);
    ck_assert_msg(fabs(a - 0.5 * want) < 1e-4 * fabs(want), "sum %g, want %g", a,
                  0.5 * want);
    ck_assert_msg(a == b, "two runs differ: %.9g %.9g", a, b);
    clReleaseMemObject(bv);
    clReleaseMemObject(out);
}
END_TEST

/* PyTorch's SGD (momentum, dampening 0, weight decay) with the cosine
 * learning rate, three steps, against the host in double; tensors of one
 * parameter, of 300 and of more than the widest work-group (4096) and no
 * multiple of it. */
START_TEST(sgd_matches_reference)
{
    const int total = 10, sizes[] = {300, 1, 4099};
    const float lr0 = 0.05f, mom = 0.9f, wd = 1e-4f;
    for (int c = 0; c < 3; c++) {
        const int n = sizes[c];
        size_t bytes = (size_t)n * sizeof(float);
        float *p = malloc(bytes), *g = calloc((size_t)n, 4), *buf = calloc((size_t)n, 4);
        double *pr = malloc((size_t)n * 8), *br = calloc((size_t)n, 8);
        test_fill_uniform(p, (size_t)n, 51, -1.0f, 1.0f);
        for (int i = 0; i < n; i++)
            pr[i] = p[i];
        cl_mem bp = buf_from(p, bytes), bg = buf_from(g, bytes), bb = buf_from(buf, bytes);
        int steps[3] = {0, 4, 9};
        for (int s = 0; s < 3; s++) {
            test_fill_uniform(g, (size_t)n, 52 + (unsigned)s, -1.0f, 1.0f);
            buf_write(bg, g, bytes);
            OK(tk_sgd(kern(), bp, bg, bb, n, lr0, mom, wd, steps[s], total));
            double lr = 0.5 * lr0 * (1 + cos(3.14159265358979323846 * steps[s] / total));
            for (int i = 0; i < n; i++) {
                double d = g[i] + (double)wd * pr[i];
                br[i] = mom * br[i] + d;
                pr[i] -= lr * br[i];
            }
        }
        buf_read(bp, p, bytes);
        buf_read(bb, buf, bytes);
        ck_assert_msg(test_rel_err_f(p, pr, (size_t)n, 1e-3) < 1e-6, "n %d: p rel err %g",
                      n, test_rel_err_f(p, pr, (size_t)n, 1e-3));
        ck_assert_msg(test_rel_err_f(buf, br, (size_t)n, 1e-3) < 1e-6,
                      "n %d: momentum rel err %g", n,
                      test_rel_err_f(buf, br, (size_t)n, 1e-3));
        clReleaseMemObject(bp);
        clReleaseMemObject(bg);
        clReleaseMemObject(bb);
        free(p);
        free(g);
        free(buf);
        free(pr);
        free(br);
    }
}
END_TEST

START_TEST(init_is_uniform_and_reproducible)
{
    const int n = 100000;
    const float bound = 1.0f / 3.0f;
    float *a = calloc(n, 4), *b = calloc(n, 4);
    cl_mem ba = buf_from(a, (size_t)n * 4), bb = buf_from(b, (size_t)n * 4);
    OK(tk_init_uniform(kern(), ba, n, bound, 7, 2));
    OK(tk_init_uniform(kern(), bb, n, bound, 7, 2));
    buf_read(ba, a, (size_t)n * 4);
    buf_read(bb, b, (size_t)n * 4);
    ck_assert_mem_eq(a, b, (size_t)n * 4);
    double mean = 0, var = 0;
    int bins[10] = {0};
    for (int i = 0; i < n; i++) {
        ck_assert_msg(a[i] >= -bound && a[i] < bound, "a[%d] = %g out of range", i, a[i]);
        mean += a[i] / n;
        var += (double)a[i] * a[i] / n;
        bins[(int)((a[i] + bound) / (2 * bound) * 10)]++;
    }
    /* Uniform: mean 0 and variance bound²/3 within a few standard errors,
     * every tenth of the range about a tenth of the values. */
    ck_assert_msg(fabs(mean) < 5 * bound / sqrt(3.0 * n), "mean %g", mean);
    ck_assert_msg(fabs(var - bound * bound / 3) < 0.02 * bound * bound / 3, "variance %g",
                  var);
    for (int i = 0; i < 10; i++)
        ck_assert_msg(abs(bins[i] - n / 10) < n / 100, "bin %d holds %d", i, bins[i]);
    /* Another stream or seed gives other values. */
    OK(tk_init_uniform(kern(), bb, n, bound, 7, 3));
    buf_read(bb, b, (size_t)n * 4);
    int same = 0;
    for (int i = 0; i < n; i++)
        same += a[i] == b[i];
    ck_assert_msg(same < n / 1000, "stream 3 repeats %d values of stream 2", same);
    OK(tk_init_uniform(kern(), bb, n, bound, 8, 2));
    buf_read(bb, b, (size_t)n * 4);
    same = 0;
    for (int i = 0; i < n; i++)
        same += a[i] == b[i];
    ck_assert_msg(same < n / 1000, "seed 8 repeats %d values of seed 7", same);
    clReleaseMemObject(ba);
    clReleaseMemObject(bb);
    free(a);
    free(b);
}
END_TEST

/* tr_gather_augment's draw, written again on the host. */
static uint32_t ref_hash(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

START_TEST(gather_augment)
{
    enum { COUNT = 9, SIDE = 5, PIX = SIDE * SIDE, N = 8, FIRST = 1, SHIFT = 2 };
    const uint32_t salt = 0x1234567U, base = 4000000000U; /* base + b wraps */
    unsigned char img[COUNT * PIX], lab[COUNT];
    int index[COUNT], y[N] = {0};
    float x[N * PIX];
    for (int i = 0; i < COUNT * PIX; i++)
        img[i] = (unsigned char)(1 + i * 29 % 255);
    for (int i = 0; i < COUNT; i++) {
        lab[i] = (unsigned char)(i % 10);
        index[i] = (i * 4 + 3) % COUNT;
    }
    cl_mem bi = buf_from(img, sizeof img), bl = buf_from(lab, sizeof lab);
    cl_mem bidx = buf_from(index, sizeof index), bx = buf_from(x, sizeof x),
           by = buf_from(y, sizeof y);
    OK(tk_gather_augment(kern(), bi, bl, bidx, FIRST, N, SIDE, SHIFT, salt, base, bx, by));
    buf_read(bx, x, sizeof x);
    buf_read(by, y, sizeof y);
    int flipped = 0, moved = 0;
    for (int b = 0; b < N; b++) {
        int src = index[FIRST + b];
        ck_assert_int_eq(y[b], lab[src]);
        uint32_t h = ref_hash(salt ^ ref_hash(base + (uint32_t)b)), span = 2 * SHIFT + 1;
        int dx = (int)(h % span) - SHIFT;
        h /= span;
        int dy = (int)(h % span) - SHIFT;
        h /= span;
        bool flip = h & 1U;
        flipped += flip;
        moved += dx != 0 || dy != 0;
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                int sc = (flip ? SIDE - 1 - c : c) - dx, sr = r - dy;
                float want = sr >= 0 && sr < SIDE && sc >= 0 && sc < SIDE
                                 ? img[src * PIX + sr * SIDE + sc] / 255.0f
                                 : 0.0f;
                ck_assert_msg(x[b * PIX + r * SIDE + c] == want,
                              "image %d (flip %d, move %d,%d) pixel %d,%d: %g, want %g", b,
                              flip, dx, dy, r, c, x[b * PIX + r * SIDE + c], want);
            }
    }
    /* The draw did mirror and move images: the comparison tested both. */
    ck_assert_int_gt(flipped, 0);
    ck_assert_int_lt(flipped, N);
    ck_assert_int_gt(moved, 0);
    cl_mem m[] = {bi, bl, bidx, bx, by};
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(m[i]);
}
END_TEST

START_TEST(gather_and_count_correct)
{
    const int count = 50, pixels = 6, n = 20, classes = 4;
    unsigned char img[300], lab[50];
    int index[50], y[20] = {0};
    float x[120] = {0}, logits[80];
    for (int i = 0; i < count * pixels; i++)
        img[i] = (unsigned char)(i * 37 % 256);
    for (int i = 0; i < count; i++) {
        lab[i] = (unsigned char)(i % classes);
        index[i] = (i * 13 + 5) % count;
    }
    cl_mem bi = buf_from(img, sizeof img), bl = buf_from(lab, sizeof lab);
    cl_mem bidx = buf_from(index, sizeof index), bx = buf_from(x, sizeof x),
           by = buf_from(y, sizeof y);
    OK(tk_gather(kern(), bi, bl, bidx, 10, n, pixels, bx, by));
    buf_read(bx, x, sizeof x);
    buf_read(by, y, sizeof y);
    for (int b = 0; b < n; b++) {
        int src = index[10 + b];
        ck_assert_int_eq(y[b], lab[src]);
        for (int p = 0; p < pixels; p++)
            ck_assert_float_eq_tol(x[b * pixels + p], img[src * pixels + p] / 255.0f,
                                   1e-7f);
    }
    /* A batch of one. */
    OK(tk_gather(kern(), bi, bl, bidx, 33, 1, pixels, bx, by));
    buf_read(bx, x, sizeof x);
    buf_read(by, y, sizeof y);
    ck_assert_int_eq(y[0], lab[index[33]]);
    for (int p = 0; p < pixels; p++)
        ck_assert_float_eq_tol(x[p], img[index[33] * pixels + p] / 255.0f, 1e-7f);
    ck_assert_float_eq_tol(x[pixels], img[index[11] * pixels] / 255.0f, 1e-7f); /* kept */
    OK(tk_gather(kern(), bi, bl, bidx, 10, n, pixels, bx, by));
    buf_read(by, y, sizeof y);
    /* Argmax with ties (the first maximum wins, as torch.argmax). */
    int want = 0;
    for (int b = 0; b < n; b++) {
        for (int c = 0; c < classes; c++)
            logits[b * classes + c] = (float)((b + c) % 3);
        int a = 0;
        for (int c = 1; c < classes; c++)
            if (logits[b * classes + c] > logits[b * classes + a]) a = c;
        want += a == y[b];
    }
    int got = 0;
    cl_mem bz = buf_from(logits, sizeof logits), bc = buf_from(&got, sizeof got);
    OK(tk_count_correct(kern(), bz, by, n, classes, bc));
    buf_read(bc, &got, sizeof got);
    ck_assert_int_eq(got, want);
    cl_mem m[] = {bi, bl, bidx, bx, by, bz, bc};
    for (int i = 0; i < 7; i++)
        clReleaseMemObject(m[i]);
}
END_TEST

/* The network's gradient, the library's layers and the tool's kernels
 * together, against central differences of its loss for the parameters
 * with the largest gradients of each tensor. */
static void network_gradient(bool deconv)
{
    ndcl_context *ctx = test_ctx();
    net_config cfg = {.nd = deconv, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f};
    train_net *net = NULL;
    int rc = net_create(ctx, &cfg, &net);
    ck_assert_msg(rc == TR_OK, "net_create: %s", tr_error());
    OK(net_init(net, 3));
    /* Smooth synthetic images: blobs whose position depends on the label. */
    const int n = 16;
    unsigned char *img = malloc((size_t)n * NET_PIXELS), lab[16];
    int index[16];
    unsigned st = 61;
    for (int b = 0; b < n; b++) {
        lab[b] = (unsigned char)(b % NET_CLASSES);
        index[b] = b;
        for (int y = 0; y < NET_SIDE; y++)
            for (int x = 0; x < NET_SIDE; x++) {
                double cy = 6 + 2 * lab[b], cx = 20 - lab[b];
                double v = 255 * exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / 30.0);
                img[(size_t)b * NET_PIXELS + y * NET_SIDE + x] =
                    (unsigned char)fmin(255, v + 40 * test_rand01(&st));
            }
    }
    cl_mem bi = buf_from(img, (size_t)n * NET_PIXELS), bl = buf_from(lab, sizeof lab);
    cl_mem bidx = buf_from(index, sizeof index);
    float loss0;
    OK(net_loss_and_grad(net, n, bi, bl, bidx, 0, true, &loss0));
    /* Small enough that few ReLU and max-pool kinks fall within ±h (the
     * gradients agree to about 1 % there), large enough that float32
     * rounding of the loss (2.4e-7 near 2.3) costs at most about 2e-4. */
    const double h = 1e-3;
    for (int t = 0; t < NET_PARAMS; t++) {
        size_t cnt = ndcl_tensor_count(net->param[t]);
        float *g = test_tensor_to_host(net->grad[t]),
              *p = test_tensor_to_host(net->param[t]);
        for (int pick = 0; pick < 2; pick++) {
            size_t best = 0;
            for (size_t i = 1; i < cnt; i++)
                if (fabsf(g[i]) > fabsf(g[best])) best = i;
            float keep = p[best], up, down;
            p[best] = keep + (float)h;
            TEST_OK(ctx, ndcl_tensor_write(net->param[t], p, cnt));
            OK(net_loss_and_grad(net, n, bi, bl, bidx, 0, false, &up));
            p[best] = keep - (float)h;
            TEST_OK(ctx, ndcl_tensor_write(net->param[t], p, cnt));
            OK(net_loss_and_grad(net, n, bi, bl, bidx, 0, false, &down));
            p[best] = keep;
            TEST_OK(ctx, ndcl_tensor_write(net->param[t], p, cnt));
            double fd = ((double)up - down) / (2 * h);
            ck_assert_msg(fabs(fd - g[best]) < 0.03 * fabs(g[best]) + 6e-4,
                          "%s %s[%zu]: gradient %g, finite differences %g (loss %g)",
                          deconv ? "nd" : "plain", net_param_names[t], best, g[best], fd,
                          loss0);
            g[best] = 0; /* the next largest */
        }
        free(g);
        free(p);
    }
    clReleaseMemObject(bi);
    clReleaseMemObject(bl);
    clReleaseMemObject(bidx);
    free(img);
    net_destroy(net);
}

START_TEST(plain_network_gradient_by_finite_differences)
{
    network_gradient(false);
}
END_TEST

START_TEST(nd_network_gradient_by_finite_differences)
{
    network_gradient(true);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TEST_ADD(s, relu_pool_matches_reference);
    TEST_ADD(s, relu_pool_propagates_nan);
    TEST_ADD(s, relu_pool_gradient_by_finite_differences);
    TEST_ADD(s, softmax_xent_matches_reference_and_finite_differences);
    TEST_ADD(s, sum_matches_reference_and_repeats);
    TEST_ADD(s, sgd_matches_reference);
    TEST_ADD(s, init_is_uniform_and_reproducible);
    TEST_ADD(s, gather_and_count_correct);
    TEST_ADD(s, gather_augment);
    TEST_ADD(s, plain_network_gradient_by_finite_differences);
    TEST_ADD(s, nd_network_gradient_by_finite_differences);
    int rc = test_run(s);
    tk_release(&k);
    return rc;
}
