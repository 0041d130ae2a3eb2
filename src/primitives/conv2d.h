/* conv2d.h - the plain convolution that every deconvolved conv layer ends
 * with, computed a chunk of images at a time (im2col into a bounded
 * workspace + matrix products), its adjoint, and its geometry. */
#ifndef NDCL_CONV2D_H
#define NDCL_CONV2D_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl_cl.h"

typedef struct ndcl_conv_geom {
    size_t n, c, h, w, cout, kh, kw, stride, pad, dil, groups;
    size_t chunk; /* images per chunk: 0 sizes it to the device (ndcl_conv_plan) */
    /* Derived by ndcl_conv_geom_init: */
    size_t oh, ow, K, P; /* K = C*kh*kw, P = oh*ow */
} ndcl_conv_geom;

/* Fills the derived fields; NDCL_ERR_INVALID_ARG when the kernel does not
 * fit the padded input or sizes overflow. */
ndcl_status ndcl_conv_geom_init(ndcl_context *ctx, ndcl_conv_geom *g);

/* How a convolution is cut into chunks and the workspaces it needs. */
typedef struct ndcl_conv_plan {
    size_t chunk;   /* images per chunk (the last one may hold fewer) */
    bool per_image; /* forward: one product per image written straight into
                       NCHW y; else one wide product per chunk into tmp,
                       then moved to NCHW */
    size_t col;     /* floats of the patch workspace: chunk*K*P */
    size_t tmp;     /* floats of the row workspace: chunk*Cout*P (the wide
                       forward and the backward; 0 for a per-image forward
                       alone) */
} ndcl_conv_plan;

/* The bytes a convolution's chunk workspaces aim at. On a CPU device, half
 * its global memory cache (the last-level cache: the product reads the
 * patches back while they are still there), clamped to
 * [NDCL_CONV_CPU_BUDGET_MIN, NDCL_CONV_CPU_BUDGET_MAX]: the figure is what
 * the runtime reports (PoCL: the host's L3, which a virtual machine may give
 * as 480 MiB or as nothing) and a workspace larger than the caches gains
 * nothing from being sized to them, so the bound is what a 32 MiB L3 gives,
 * the size README's benchmarks were measured at. Elsewhere
 * NDCL_CONV_DEVICE_BUDGET: large enough that each product is big, small
 * next to a GPU's memory. */
#define NDCL_CONV_CPU_BUDGET_MIN ((size_t)1 << 20)
#define NDCL_CONV_CPU_BUDGET_MAX ((size_t)16 << 20)
#define NDCL_CONV_DEVICE_BUDGET ((size_t)128 << 20)
size_t ndcl_conv_budget(const ndcl_context *ctx);

/* The plan for g on ctx's device: chunks whose workspaces fit
 * ndcl_conv_budget (so that the patches are read back from cache on a CPU
 * device), but wide enough for the
 * products (1024 columns at least), and each buffer the device's
 * largest allocation (NDCL_ERR_OUT_OF_MEMORY when one image does not fit),
 * evened out over the batch; g->chunk > 0 forces the chunk (clamped to N
 * and to the allocation). backward selects the workspaces of the backward
 * too. *p is written only on success. */
ndcl_status ndcl_conv_plan_make(ndcl_context *ctx, const ndcl_conv_geom *g, bool backward,
                                ndcl_conv_plan *p);

/* col <- the patch matrix of images n0 .. n0+nc-1 of x, element (n, k, p)
 * at col[k*ks + n*ns + p] (per-image layout: ks = P, ns = K*P; wide:
 * ks = nc*P, ns = P). */
ndcl_status ndcl_conv_im2col(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem x,
                             size_t n0, size_t nc, size_t ks, size_t ns, cl_mem col);

/* dx images n0 .. n0+nc-1 <- col2im of dcol (laid out as ndcl_conv_im2col
 * lays col): the adjoint of ndcl_conv_im2col. */
ndcl_status ndcl_conv_col2im(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem dcol,
                             size_t n0, size_t nc, size_t ks, size_t ns, cl_mem dx);

/* t (Cout x nc*P) <- images n0 .. n0+nc-1 of y (N, Cout, P) re-laid (the
 * backward's move of dy). */
ndcl_status ndcl_conv_to_rows(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem y,
                              size_t n0, size_t nc, cl_mem t);

/* Images n0 .. n0+nc-1 of y <- t (Cout x nc*P) + b in NCHW (b may be NULL). */
ndcl_status ndcl_conv_from_rows(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem t,
                                cl_mem b, size_t n0, size_t nc, cl_mem y);

/* db (Cout) <- the row sums of t (Cout x nc*P, a chunk of dy laid out by
 * ndcl_conv_to_rows), added to db when accumulate. */
ndcl_status ndcl_conv_row_sums(ndcl_context *ctx, const ndcl_conv_geom *g, cl_mem t,
                               size_t nc, bool accumulate, cl_mem db);

/* y (N, Cout, oh, ow) <- conv2d(x, w, b); b may be NULL. col and tmp hold
 * the plan's col and tmp floats (tmp unused, may be NULL, for a per-image
 * plan). */
ndcl_status ndcl_conv_forward(ndcl_context *ctx, const ndcl_conv_geom *g,
                              const ndcl_conv_plan *p, cl_mem x, cl_mem w, cl_mem b,
                              cl_mem y, cl_mem col, cl_mem tmp);

/* The adjoint, given dy (N, Cout, oh, ow) and the forward's x and w:
 * db (Cout) <- Σ dy; dW (w's layout, Cout x K/G) <- Σ_n dy_n·col_nᵀ per
 * group; both accumulated over the chunks, the patches recomputed from x
 * chunk by chunk; dx (x's shape) <- col2im(Wᵀ·dy_n). Any of dx, dW, db may
 * be NULL (not wanted); x is only read when dW is wanted. col and tmp hold
 * the backward plan's floats. */
ndcl_status ndcl_conv_backward(ndcl_context *ctx, const ndcl_conv_geom *g,
                               const ndcl_conv_plan *p, cl_mem x, cl_mem w, cl_mem dy,
                               cl_mem dx, cl_mem dW, cl_mem db, cl_mem col, cl_mem tmp);

#endif
