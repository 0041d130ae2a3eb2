/* ref_layer.c - host reference of plain conv2d and of the three layers
 * (FastDeconv, Delinear, ChannelDeconv) with their running statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* It runs inside the library (ndcl_self_test) as well as in the tests, so
 * it never stops the process: a broken precondition or a failed allocation
 * makes the entry point return -1 with everything it allocated freed. */
static double *dalloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(double));
}

static void set_identity(double *a, size_t batch, size_t n)
{
    memset(a, 0, batch * n * n * sizeof *a);
    for (size_t g = 0; g < batch; g++)
        for (size_t i = 0; i < n; i++)
            a[(g * n + i) * n + i] = 1.0;
}

/* running <- (1-m)·running + m·value, in the order the original's
 * mul_(1-m) then add_(value·m) evaluates it. */
static void ema(double *running, const double *value, size_t n, double m)
{
    for (size_t i = 0; i < n; i++)
        running[i] = running[i] * (1.0 - m) + value[i] * m;
}

/* Output extent of one spatial axis; 0 when the dilated kernel does not fit
 * in the padded input (computed without unsigned wrap-around). */
static size_t conv_out_dim(size_t in, size_t k, size_t stride, size_t pad, size_t dil)
{
    size_t span = dil * (k - 1) + 1, padded = in + 2 * pad;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

void ref_conv2d(const double *x, size_t N, size_t C, size_t H, size_t W, const double *w,
                size_t Cout, size_t kh, size_t kw, const double *b, size_t stride,
                size_t pad, size_t dil, size_t groups, double *y)
{
    size_t Ho = conv_out_dim(H, kh, stride, pad, dil);
    size_t Wo = conv_out_dim(W, kw, stride, pad, dil);
    size_t cin_g = C / groups, cout_g = Cout / groups;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < Cout; o++) {
            size_t g = o / cout_g;
            for (size_t oy = 0; oy < Ho; oy++)
                for (size_t ox = 0; ox < Wo; ox++) {
                    double s = b ? b[o] : 0.0;
                    for (size_t ci = 0; ci < cin_g; ci++) {
                        size_t c = g * cin_g + ci;
                        for (size_t i = 0; i < kh; i++) {
                            /* Signed: the padding puts taps before row 0. */
                            long iy = (long)(oy * stride + i * dil) - (long)pad;
                            if (iy < 0 || iy >= (long)H) continue;
                            for (size_t j = 0; j < kw; j++) {
                                long ix = (long)(ox * stride + j * dil) - (long)pad;
                                if (ix < 0 || ix >= (long)W) continue;
                                s += x[((n * C + c) * H + (size_t)iy) * W + (size_t)ix] *
                                     w[((o * cin_g + ci) * kh + i) * kw + j];
                            }
                        }
                    }
                    y[((n * Cout + o) * Ho + oy) * Wo + ox] = s;
                }
        }
}

void ref_conv2d_backward(const double *x, size_t N, size_t C, size_t H, size_t W,
                         const double *w, size_t Cout, size_t kh, size_t kw, size_t stride,
                         size_t pad, size_t dil, size_t groups, const double *dy,
                         double *dx, double *dw, double *db)
{
    size_t Ho = conv_out_dim(H, kh, stride, pad, dil);
    size_t Wo = conv_out_dim(W, kw, stride, pad, dil);
    size_t cin_g = C / groups, cout_g = Cout / groups;
    if (dx) memset(dx, 0, N * C * H * W * sizeof *dx);
    if (dw) memset(dw, 0, Cout * cin_g * kh * kw * sizeof *dw);
    if (db) memset(db, 0, Cout * sizeof *db);
    /* Every product x·w of the forward sends dy back to both factors. */
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < Cout; o++) {
            size_t g = o / cout_g;
            for (size_t oy = 0; oy < Ho; oy++)
                for (size_t ox = 0; ox < Wo; ox++) {
                    double d = dy[((n * Cout + o) * Ho + oy) * Wo + ox];
                    if (db) db[o] += d;
                    for (size_t ci = 0; ci < cin_g; ci++) {
                        size_t c = g * cin_g + ci;
                        for (size_t i = 0; i < kh; i++) {
                            long iy = (long)(oy * stride + i * dil) - (long)pad;
                            if (iy < 0 || iy >= (long)H) continue;
                            for (size_t j = 0; j < kw; j++) {
                                long ix = (long)(ox * stride + j * dil) - (long)pad;
                                if (ix < 0 || ix >= (long)W) continue;
                                size_t xi = ((n * C + c) * H + (size_t)iy) * W + (size_t)ix;
                                size_t wi = ((o * cin_g + ci) * kh + i) * kw + j;
                                if (dx) dx[xi] += d * w[wi];
                                if (dw) dw[wi] += d * x[xi];
                            }
                        }
                    }
                }
        }
}

/* ------------------------------------------------------------ creation */

static ref_layer *layer_alloc(ndcl_layer_kind kind)
{
    ref_layer *l = calloc(1, sizeof *l);
    if (l) l->kind = kind;
    return l;
}

/* *p = n zeroed doubles; n = 0 leaves *p NULL (a parameter the layer does
 * not have). Returns 0 only when the allocation fails. */
static int param_alloc(double **p, size_t n)
{
    if (n == 0) return 1;
    *p = calloc(n, sizeof **p);
    return *p != NULL;
}

ref_layer *ref_layer_conv2d(const ndcl_conv2d_desc *d)
{
    if (!d || d->in_channels <= 0 || d->out_channels <= 0 || d->kernel_h <= 0 ||
        d->kernel_w <= 0 || d->stride <= 0 || d->padding < 0 || d->dilation <= 0 ||
        d->groups <= 0 || d->in_channels % d->groups || d->out_channels % d->groups ||
        d->block <= 0 || d->sampling_stride <= 0 || d->n_iter < 0)
        return NULL;
    ref_layer *l = layer_alloc(NDCL_LAYER_CONV2D);
    if (!l) return NULL;
    l->conv = *d;
    l->block = ref_block_conv(d->in_channels, d->block, d->groups);
    size_t C = (size_t)d->in_channels, Cout = (size_t)d->out_channels;
    size_t G = (size_t)d->groups, khw = (size_t)d->kernel_h * (size_t)d->kernel_w;
    size_t nf = khw * (size_t)l->block;
    l->n_weight = Cout * (C / G) * khw;
    l->n_bias = d->bias ? Cout : 0;
    /* With groups the original keeps one mean per group side by side
     * (C·kh·kw values) and one deconv matrix per group. */
    l->n_running_mean = G == 1 ? nf : C * khw;
    l->n_running_deconv = G == 1 ? nf * nf : G * nf * nf;
    if (!param_alloc(&l->weight, l->n_weight) || !param_alloc(&l->bias, l->n_bias) ||
        !param_alloc(&l->running_mean, l->n_running_mean) ||
        !param_alloc(&l->running_deconv, l->n_running_deconv)) {
        ref_layer_free(l);
        return NULL;
    }
    set_identity(l->running_deconv, G == 1 ? 1 : G, nf);
    return l;
}

ref_layer *ref_layer_linear(const ndcl_linear_desc *d)
{
    if (!d || d->in_features <= 0 || d->out_features <= 0 || d->block <= 0 || d->n_iter < 0)
        return NULL;
    ref_layer *l = layer_alloc(NDCL_LAYER_LINEAR);
    if (!l) return NULL;
    l->linear = *d;
    l->block = ref_block_linear(d->in_features, d->block);
    size_t B = (size_t)l->block;
    l->n_weight = (size_t)d->out_features * (size_t)d->in_features;
    l->n_bias = d->bias ? (size_t)d->out_features : 0;
    l->n_running_mean = B;
    l->n_running_deconv = B * B;
    if (!param_alloc(&l->weight, l->n_weight) || !param_alloc(&l->bias, l->n_bias) ||
        !param_alloc(&l->running_mean, l->n_running_mean) ||
        !param_alloc(&l->running_deconv, l->n_running_deconv)) {
        ref_layer_free(l);
        return NULL;
    }
    set_identity(l->running_deconv, 1, B);
    return l;
}

ref_layer *ref_layer_channel(const ndcl_channel_desc *d)
{
    if (!d || d->block <= 0 || d->sampling_stride <= 0 || d->n_iter < 0) return NULL;
    ref_layer *l = layer_alloc(NDCL_LAYER_CHANNEL);
    if (!l) return NULL;
    l->channel = *d;
    l->block = d->block; /* the original does not clamp it */
    size_t B = (size_t)l->block;
    l->n_running_mean = B; /* running_mean1 [B, 1] */
    l->n_running_deconv = B * B;
    if (!param_alloc(&l->running_mean1, B) || !param_alloc(&l->running_deconv, B * B) ||
        !param_alloc(&l->running_mean2, 1) || !param_alloc(&l->running_var, 1)) {
        ref_layer_free(l);
        return NULL;
    }
    set_identity(l->running_deconv, 1, B);
    l->running_var[0] = 1.0;
    return l;
}

void ref_layer_free(ref_layer *l)
{
    if (!l) return;
    free(l->weight);
    free(l->bias);
    free(l->running_mean);
    free(l->running_deconv);
    free(l->running_mean1);
    free(l->running_mean2);
    free(l->running_var);
    free(l);
}

int ref_layer_out_shape(const ref_layer *l, int ndim, const size_t *xshape, size_t *yshape)
{
    switch (l->kind) {
    case NDCL_LAYER_CONV2D: {
        const ndcl_conv2d_desc *d = &l->conv;
        if (ndim != 4) return -1;
        yshape[0] = xshape[0];
        yshape[1] = (size_t)d->out_channels;
        yshape[2] = conv_out_dim(xshape[2], (size_t)d->kernel_h, (size_t)d->stride,
                                 (size_t)d->padding, (size_t)d->dilation);
        yshape[3] = conv_out_dim(xshape[3], (size_t)d->kernel_w, (size_t)d->stride,
                                 (size_t)d->padding, (size_t)d->dilation);
        break;
    }
    case NDCL_LAYER_LINEAR:
        /* F.linear maps the last dimension and keeps the leading ones. */
        if (ndim < 1) return -1;
        for (int i = 0; i < ndim - 1; i++)
            yshape[i] = xshape[i];
        yshape[ndim - 1] = (size_t)l->linear.out_features;
        break;
    case NDCL_LAYER_CHANNEL:
        for (int i = 0; i < ndim; i++)
            yshape[i] = xshape[i];
        break;
    }
    return 0;
}

/* -------------------------------------------------------------- conv2d */

/* Python's %: the result takes the divisor's sign. */
static int64_t py_mod(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

/* FastDeconv.forward: patches, whitening, running updates, fold,
 * convolution (README, "Arithmetic", conv2d). */
static int conv_forward(ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                        const size_t *xs, double *y)
{
    const ndcl_conv2d_desc *d = &l->conv;
    if (ndim != 4 || xs[1] != (size_t)d->in_channels) return -1;
    size_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
    size_t Cout = (size_t)d->out_channels, G = (size_t)d->groups;
    size_t kh = (size_t)d->kernel_h, kw = (size_t)d->kernel_w;
    size_t B = (size_t)l->block, nf = kh * kw * B, per = C / B;
    double m = (double)d->momentum;

    /* Decided from the counter before this step advances it. */
    int frozen = d->freeze && l->counter > (int64_t)d->freeze_iter;
    if (mode == NDCL_TRAIN) {
        int64_t period = (int64_t)d->freeze_iter * 10;
        /* The original divides by zero here; a zero period just counts. */
        l->counter = period ? py_mod(l->counter + 1, period) : l->counter + 1;
    }

    const double *mean = l->running_mean, *D = l->running_deconv;
    double *bmean = NULL, *bD = NULL;
    if (mode == NDCL_TRAIN && !frozen) {
        size_t rows = 0, cols = 0;
        size_t S = (size_t)d->sampling_stride * (size_t)d->stride;
        double *X = ref_patches(x, N, C, H, W, kh, kw, (size_t)d->padding,
                                (size_t)d->dilation, S, G, B, &rows, &cols);
        double *cov = dalloc(G * nf * nf);
        bmean = dalloc(l->n_running_mean);
        bD = dalloc(l->n_running_deconv);
        if (!X || !cov || !bmean || !bD || cols != (G == 1 ? nf : G * nf)) {
            free(X), free(cov), free(bmean), free(bD);
            return -1;
        }
        /* G = 1: one nf-vector mean and matrix shared by all C/B blocks;
         * G > 1: the row is G contiguous chunks, one statistic each. */
        ref_mean_cov(X, rows, G, nf, (double)d->eps, 1, bmean, cov);
        ref_isqrt(cov, G, nf, d->n_iter, bD);
        ema(l->running_mean, bmean, l->n_running_mean, m);
        ema(l->running_deconv, bD, l->n_running_deconv, m);
        free(X);
        free(cov);
        mean = bmean;
        D = bD;
    }

    /* Fold D and the mean into the weight and bias (step 7). */
    double *wf = dalloc(l->n_weight), *bf = dalloc(Cout), *row = dalloc(nf);
    if (!wf || !bf || !row) {
        free(wf), free(bf), free(row), free(bmean), free(bD);
        return -1;
    }
    size_t K = l->n_weight / Cout; /* weight values per output: (C/G)·kh·kw */
    for (size_t o = 0; o < Cout; o++) {
        double corr = 0.0;
        /* G = 1: the original's view(-1, nf, C/B).transpose(1, 2) makes
         * row (o, g) of W out of the interleaved values f·(C/B) + g.
         * G > 1: each output's K = nf values are one row of its group. */
        size_t nrows = G == 1 ? per : 1, stride = G == 1 ? per : 1;
        const double *Dg = G == 1 ? D : D + (o / (Cout / G)) * nf * nf;
        const double *mg = G == 1 ? mean : mean + (o / (Cout / G)) * nf;
        for (size_t g = 0; g < nrows; g++) {
            for (size_t f = 0; f < nf; f++)
                row[f] = l->weight[o * K + f * stride + g];
            for (size_t j = 0; j < nf; j++) {
                double s = 0.0;
                for (size_t f = 0; f < nf; f++)
                    s += row[f] * Dg[f * nf + j];
                wf[o * K + j * stride + g] = s;
                corr += s * mg[j];
            }
        }
        /* Without a bias the original crashes; the correction still applies. */
        bf[o] = (l->bias ? l->bias[o] : 0.0) - corr;
    }
    ref_conv2d(x, N, C, H, W, wf, Cout, kh, kw, bf, (size_t)d->stride, (size_t)d->padding,
               (size_t)d->dilation, G, y);
    free(wf);
    free(bf);
    free(row);
    free(bmean);
    free(bD);
    return 0;
}

/* -------------------------------------------------------------- linear */

/* Delinear.forward (README, "Arithmetic", linear). The input is any shape whose last
 * dimension is in_features: F.linear maps the last dimension, and
 * input.view(-1, B) cuts every row into F/B contiguous blocks. */
static int linear_forward(ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                          const size_t *xs, double *y)
{
    const ndcl_linear_desc *d = &l->linear;
    if (ndim < 1 || xs[ndim - 1] != (size_t)d->in_features) return -1;
    size_t N = 1;
    for (int i = 0; i < ndim - 1; i++)
        N *= xs[i];
    size_t F = (size_t)d->in_features, Fout = (size_t)d->out_features;
    size_t B = (size_t)l->block, per = F / B;

    const double *mean = l->running_mean, *D = l->running_deconv;
    double *bmean = NULL, *bD = NULL;
    if (mode == NDCL_TRAIN) {
        double *cov = dalloc(B * B);
        bmean = dalloc(B);
        bD = dalloc(B * B);
        if (!cov || !bmean || !bD) {
            free(cov), free(bmean), free(bD);
            return -1;
        }
        ref_mean_cov(x, N * per, 1, B, (double)d->eps, 1, bmean, cov);
        ref_isqrt(cov, 1, B, d->n_iter, bD);
        ema(l->running_mean, bmean, B, (double)d->momentum);
        ema(l->running_deconv, bD, B * B, (double)d->momentum);
        free(cov);
        mean = bmean;
        D = bD;
    }

    /* W' = W.view(-1, B)·D; b' = b − Σ over each output's F/B rows of W'·μ. */
    double *wf = dalloc(Fout * F), *bf = dalloc(Fout);
    if (!wf || !bf) {
        free(wf), free(bf), free(bmean), free(bD);
        return -1;
    }
    for (size_t o = 0; o < Fout; o++) {
        double corr = 0.0;
        for (size_t k = 0; k < per; k++) {
            const double *wr = l->weight + o * F + k * B;
            for (size_t j = 0; j < B; j++) {
                double s = 0.0;
                for (size_t f = 0; f < B; f++)
                    s += wr[f] * D[f * B + j];
                wf[o * F + k * B + j] = s;
                corr += s * mean[j];
            }
        }
        /* As the original: without a bias the correction applies from 0. */
        bf[o] = (l->bias ? l->bias[o] : 0.0) - corr;
    }
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < Fout; o++) {
            double s = bf[o];
            for (size_t i = 0; i < F; i++)
                s += x[n * F + i] * wf[o * F + i];
            y[n * Fout + o] = s;
        }
    free(wf);
    free(bf);
    free(bmean);
    free(bD);
    return 0;
}

/* ------------------------------------------------------------- channel */

/* ChannelDeconv.forward (README, "Arithmetic", channel), line by line. */
static int channel_forward(ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                           const size_t *xs, double *y)
{
    const ndcl_channel_desc *d = &l->channel;
    if (ndim != 2 && ndim != 4) return -1;
    size_t N = xs[0], C = xs[1];
    size_t H = ndim == 4 ? xs[2] : 1, W = ndim == 4 ? xs[3] : 1, HW = H * W;
    size_t B = (size_t)l->block, per = C / B, c = per * B;
    size_t ss = (size_t)d->sampling_stride;
    /* x[:, ::ss²] only when the image is at least ss wide and high. */
    size_t sub = (ss > 1 && H >= ss && W >= ss) ? ss * ss : 1;
    double m = (double)d->momentum, eps = (double)d->eps;
    int train = mode == NDCL_TRAIN;

    /* c = 0 (B > C): the original whitens an empty matrix and fills
     * running_mean1/running_deconv with NaN; here that part is skipped and
     * those buffers are left as they are. */
    if (c > 0) {
        /* x1 = x[:, :c].permute(1, 0, 2, 3).reshape(B, -1): row r, column
         * (k·N + n)·HW + p holds channel r·(c/B) + k of sample n, pixel p. */
        size_t cols = per * N * HW;
        size_t ns = (cols + sub - 1) / sub;
        double *x1 = dalloc(B * cols), *xs1 = dalloc(ns * B), *mean1 = dalloc(B);
        double *cov = dalloc(B * B), *bD = train ? dalloc(B * B) : NULL;
        if (!x1 || !xs1 || !mean1 || !cov || (train && !bD)) {
            free(x1), free(xs1), free(mean1), free(cov), free(bD);
            return -1;
        }
        for (size_t r = 0; r < B; r++)
            for (size_t k = 0; k < per; k++)
                for (size_t n = 0; n < N; n++)
                    for (size_t p = 0; p < HW; p++)
                        x1[r * cols + (k * N + n) * HW + p] =
                            x[(n * C + r * per + k) * HW + p];
        /* x1_s as a (samples x B) matrix, the layout ref_mean_cov takes. */
        for (size_t j = 0; j < ns; j++)
            for (size_t r = 0; r < B; r++)
                xs1[j * B + r] = x1[r * cols + j * sub];
        /* Uncentred: the original's covariance uses x1_s before centring. */
        ref_mean_cov(xs1, ns, 1, B, eps, 0, mean1, cov);

        /* The first-batch copy happens in eval mode too. */
        if (l->counter == 0) memcpy(l->running_mean1, mean1, B * sizeof *mean1);
        const double *mu = mean1;
        if (train)
            ema(l->running_mean1, mean1, B, m);
        else
            mu = l->running_mean1;

        const double *D = l->running_deconv;
        if (train) {
            ref_isqrt(cov, 1, B, d->n_iter, bD);
            /* The original copies the first batch's deconv too (in training,
             * the only mode where it has one). */
            if (l->counter == 0) memcpy(l->running_deconv, bD, B * B * sizeof *bD);
            ema(l->running_deconv, bD, B * B, m);
            D = bD;
        }
        /* y rows = D·(x1 − μ1), written back through the same permutation. */
        for (size_t r = 0; r < B; r++)
            for (size_t k = 0; k < per; k++)
                for (size_t n = 0; n < N; n++)
                    for (size_t p = 0; p < HW; p++) {
                        size_t col = (k * N + n) * HW + p;
                        double s = 0.0;
                        for (size_t q = 0; q < B; q++)
                            s += D[r * B + q] * (x1[q * cols + col] - mu[q]);
                        y[(n * C + r * per + k) * HW + p] = s;
                    }
        free(x1);
        free(xs1);
        free(mean1);
        free(cov);
        free(bD);
    }

    if (c != C) {
        /* x[:, c:].reshape(N, -1): each sample's (C − c)·H·W values in
         * (c, h, w) order; keep every sub-th of each row. */
        size_t rest = (C - c) * HW, kept = (rest + sub - 1) / sub, total = N * kept;
        double sum = 0.0;
        for (size_t n = 0; n < N; n++)
            for (size_t t = 0; t < rest; t += sub)
                sum += x[n * C * HW + c * HW + t];
        double mean2 = sum / (double)total, ssq = 0.0;
        for (size_t n = 0; n < N; n++)
            for (size_t t = 0; t < rest; t += sub) {
                double v = x[n * C * HW + c * HW + t] - mean2;
                ssq += v * v;
            }
        /* Unbiased, as torch's var(); one kept value gives NaN as there. */
        double var = ssq / ((double)total - 1.0);
        if (l->counter == 0) {
            l->running_mean2[0] = mean2;
            l->running_var[0] = var;
        }
        if (train) {
            ema(l->running_mean2, &mean2, 1, m);
            ema(l->running_var, &var, 1, m);
        } else {
            mean2 = l->running_mean2[0];
            var = l->running_var[0];
        }
        double scale = sqrt(var + eps);
        for (size_t n = 0; n < N; n++)
            for (size_t t = 0; t < rest; t++) {
                size_t i = n * C * HW + c * HW + t;
                y[i] = (x[i] - mean2) / scale;
            }
    }
    if (train) l->counter++;
    return 0;
}

int ref_layer_forward(ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                      const size_t *xshape, double *y)
{
    switch (l->kind) {
    case NDCL_LAYER_CONV2D: return conv_forward(l, mode, x, ndim, xshape, y);
    case NDCL_LAYER_LINEAR: return linear_forward(l, mode, x, ndim, xshape, y);
    case NDCL_LAYER_CHANNEL: return channel_forward(l, mode, x, ndim, xshape, y);
    }
    return -1;
}

/* ------------------------------------------------------- finite differences */

/* A deep copy of l (parameters, buffers, counter). */
static ref_layer *layer_clone(const ref_layer *l)
{
    ref_layer *c = layer_alloc(l->kind);
    if (!c) return NULL;
    *c = *l;
    double **slots[] = {&c->weight,         &c->bias,          &c->running_mean,
                        &c->running_deconv, &c->running_mean1, &c->running_mean2,
                        &c->running_var};
    const double *src[] = {l->weight,         l->bias,          l->running_mean,
                           l->running_deconv, l->running_mean1, l->running_mean2,
                           l->running_var};
    size_t n[] = {
        l->n_weight, l->n_bias, l->n_running_mean, l->n_running_deconv, l->n_running_mean,
        1,           1};
    const size_t nslots = sizeof slots / sizeof slots[0];
    for (size_t i = 0; i < nslots; i++)
        *slots[i] = NULL;
    for (size_t i = 0; i < nslots; i++) {
        if (!src[i]) continue;
        if (!(*slots[i] = dalloc(n[i]))) {
            ref_layer_free(c);
            return NULL;
        }
        memcpy(*slots[i], src[i], n[i] * sizeof(double));
    }
    return c;
}

/* Puts l's running buffers and counter back into c (a forward changed them). */
static void restore_state(ref_layer *c, const ref_layer *l)
{
    double *dst[] = {c->running_mean, c->running_deconv, c->running_mean1, c->running_mean2,
                     c->running_var};
    const double *src[] = {l->running_mean, l->running_deconv, l->running_mean1,
                           l->running_mean2, l->running_var};
    size_t n[] = {l->n_running_mean, l->n_running_deconv, l->n_running_mean, 1, 1};
    for (size_t i = 0; i < sizeof dst / sizeof dst[0]; i++)
        if (src[i]) memcpy(dst[i], src[i], n[i] * sizeof(double));
    c->counter = l->counter;
}

typedef struct fd_ctx {
    ref_layer *c;
    const ref_layer *l;
    ndcl_mode mode;
    const double *x, *dy;
    int ndim;
    const size_t *xs;
    double *y;
    size_t ny;
    int failed; /* a forward returned -1 */
} fd_ctx;

static double fd_loss(fd_ctx *f)
{
    restore_state(f->c, f->l);
    if (ref_layer_forward(f->c, f->mode, f->x, f->ndim, f->xs, f->y)) f->failed = 1;
    double s = 0.0;
    for (size_t i = 0; i < f->ny; i++)
        s += f->y[i] * f->dy[i];
    return s;
}

/* g[i] = (L(v_i + h) - L(v_i - h)) / 2h over the n values v, in place. */
static void fd_over(fd_ctx *f, double *v, size_t n, double h, double *g)
{
    for (size_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + h;
        double up = fd_loss(f);
        v[i] = keep - h;
        double down = fd_loss(f);
        v[i] = keep;
        g[i] = (up - down) / (2.0 * h);
    }
}

int ref_layer_backward_fd(const ref_layer *l, ndcl_mode mode, const double *x, int ndim,
                          const size_t *xshape, const double *dy, double h, double *dx,
                          double *dweight, double *dbias)
{
    size_t nx = 1, ny = 1, ys[NDCL_MAX_DIMS];
    if (ndim < 1 || ndim > NDCL_MAX_DIMS || ref_layer_out_shape(l, ndim, xshape, ys))
        return -1;
    for (int i = 0; i < ndim; i++)
        nx *= xshape[i];
    for (int i = 0; i < ndim; i++)
        ny *= ys[i];
    double *xc = dalloc(nx), *y = dalloc(ny);
    fd_ctx f = {layer_clone(l), l, mode, xc, dy, ndim, xshape, y, ny, 0};
    if (xc && y && f.c) {
        memcpy(xc, x, nx * sizeof *xc);
        if (dx) fd_over(&f, xc, nx, h, dx);
        if (dweight && f.c->weight) fd_over(&f, f.c->weight, l->n_weight, h, dweight);
        if (dbias && f.c->bias) fd_over(&f, f.c->bias, l->n_bias, h, dbias);
    } else {
        f.failed = 1;
    }
    ref_layer_free(f.c);
    free(xc);
    free(y);
    return f.failed ? -1 : 0;
}
