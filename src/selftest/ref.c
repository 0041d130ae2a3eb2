/* ref.c - host reference of the primitives: block clamping, patch sampling,
 * mean and covariance, Newton-Schulz inverse square root. */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int gcd_int(int a, int b)
{
    while (b != 0) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* As FastDeconv.__init__: clamp to C, else gcd when B does not divide C;
 * grouped convolutions whiten each group's channels. */
int ref_block_conv(int in_channels, int block, int groups)
{
    int b = block;
    if (b > in_channels)
        b = in_channels;
    else if (in_channels % b != 0)
        b = gcd_int(b, in_channels);
    if (groups > 1) b = in_channels / groups;
    return b;
}

/* As Delinear.__init__. */
int ref_block_linear(int in_features, int block)
{
    if (block > in_features) return in_features;
    if (in_features % block != 0) return gcd_int(block, in_features);
    return block;
}

double *ref_patches(const double *x, size_t N, size_t C, size_t H, size_t W, size_t kh,
                    size_t kw, size_t pad, size_t dil, size_t S, size_t groups, size_t B,
                    size_t *rows, size_t *cols)
{
    const size_t kk = kh * kw, width = C * kk;
    size_t positions;
    double *P; /* step 1: positions x (C*kh*kw) unregrouped patches */
    if (kk > 1) {
        /* unfold(x, kernel, dilation, padding, stride=S) */
        const long span_h = (long)(dil * (kh - 1) + 1), span_w = (long)(dil * (kw - 1) + 1);
        const long ph = (long)(H + 2 * pad), pw = (long)(W + 2 * pad);
        if (span_h > ph || span_w > pw) return NULL;
        const size_t oh = (size_t)(ph - span_h) / S + 1, ow = (size_t)(pw - span_w) / S + 1;
        positions = N * oh * ow;
        P = malloc(positions * width * sizeof *P);
        if (!P) return NULL;
        for (size_t n = 0; n < N; n++)
            for (size_t oy = 0; oy < oh; oy++)
                for (size_t ox = 0; ox < ow; ox++) {
                    double *row = P + ((n * oh + oy) * ow + ox) * width;
                    for (size_t c = 0; c < C; c++)
                        for (size_t i = 0; i < kh; i++)
                            for (size_t j = 0; j < kw; j++) {
                                long iy = (long)(oy * S + i * dil) - (long)pad;
                                long ix = (long)(ox * S + j * dil) - (long)pad;
                                double v = 0;
                                if (iy >= 0 && iy < (long)H && ix >= 0 && ix < (long)W)
                                    v = x[((n * C + c) * H + (size_t)iy) * W + (size_t)ix];
                                row[c * kk + i * kw + j] = v;
                            }
                }
    } else {
        /* x.permute(0, 2, 3, 1).view(-1, C)[::S*S] */
        const size_t pixels = N * H * W, step = S * S;
        positions = (pixels + step - 1) / step;
        P = malloc(positions * width * sizeof *P);
        if (!P) return NULL;
        for (size_t p = 0; p < positions; p++) {
            size_t pix = p * step, n = pix / (H * W), yx = pix % (H * W);
            for (size_t c = 0; c < C; c++)
                P[p * width + c] = x[(n * C + c) * H * W + yx];
        }
    }
    if (groups > 1) {
        /* step 2, G > 1: rows stay whole (each holds G contiguous chunks). */
        *rows = positions;
        *cols = width;
        return P;
    }
    /* step 2, G = 1: view(-1, nf, C/B).transpose(1, 2): block g of a row holds
     * the columns f*(C/B) + g. */
    const size_t R = C / B, nf = kk * B;
    double *X = malloc(positions * width * sizeof *X);
    if (!X) {
        free(P);
        return NULL;
    }
    for (size_t p = 0; p < positions; p++)
        for (size_t g = 0; g < R; g++)
            for (size_t f = 0; f < nf; f++)
                X[(p * R + g) * nf + f] = P[p * width + f * R + g];
    free(P);
    *rows = positions * R;
    *cols = nf;
    return X;
}

void ref_mean_cov(const double *X, size_t rows, size_t groups, size_t n, double eps,
                  int centered, double *mean, double *cov)
{
    const size_t cols = groups * n;
    for (size_t c = 0; c < cols; c++) {
        double s = 0;
        for (size_t r = 0; r < rows; r++)
            s += X[r * cols + c];
        mean[c] = s / (double)rows;
    }
    for (size_t g = 0; g < groups; g++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                const size_t ci = g * n + i, cj = g * n + j;
                const double mi = centered ? mean[ci] : 0, mj = centered ? mean[cj] : 0;
                double s = 0;
                for (size_t r = 0; r < rows; r++)
                    s += (X[r * cols + ci] - mi) * (X[r * cols + cj] - mj);
                cov[(g * n + i) * n + j] = s / (double)rows + (i == j ? eps : 0);
            }
}

/* c = a * b for n x n matrices (c must not alias a or b). */
static void matmul(const double *a, const double *b, size_t n, double *c)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += a[i * n + k] * b[k * n + j];
            c[i * n + j] = s;
        }
}

void ref_isqrt(const double *A, size_t batch, size_t n, int n_iter, double *D)
{
    const size_t nn = n * n;
    double *Y = malloc(nn * sizeof *Y), *Z = malloc(nn * sizeof *Z);
    double *T = malloc(nn * sizeof *T), *P = malloc(nn * sizeof *P);
    if (!Y || !Z || !T || !P) {
        for (size_t i = 0; i < batch * nn; i++)
            D[i] = NAN;
        free(Y), free(Z), free(T), free(P);
        return;
    }
    for (size_t b = 0; b < batch; b++) {
        const double *a = A + b * nn;
        double norm = 0;
        for (size_t i = 0; i < nn; i++)
            norm += a[i] * a[i];
        norm = sqrt(norm);
        for (size_t i = 0; i < nn; i++) {
            Y[i] = a[i] / norm;
            Z[i] = (i / n == i % n) ? 1 : 0;
        }
        for (int it = 0; it < n_iter; it++) {
            matmul(Z, Y, n, P); /* T = (3I - Z Y) / 2 */
            for (size_t i = 0; i < nn; i++)
                T[i] = 0.5 * ((i / n == i % n ? 3 : 0) - P[i]);
            matmul(Y, T, n, P); /* Y = Y T */
            memcpy(Y, P, nn * sizeof *Y);
            matmul(T, Z, n, P); /* Z = T Z */
            memcpy(Z, P, nn * sizeof *Z);
        }
        for (size_t i = 0; i < nn; i++)
            D[b * nn + i] = Z[i] / sqrt(norm);
    }
    free(Y), free(Z), free(T), free(P);
}
