/* shapes.h - ndcl-bench's problems: convolution shapes (--shape), GEMM
 * sizes (--gemm) and the presets, parsed and named. */
#ifndef NDCL_BENCH_SHAPES_H
#define NDCL_BENCH_SHAPES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct shape {
    size_t n, c, h, w, cout, k, stride, pad, groups, block, ss;
    bool gemm_only; /* a --gemm problem: gm x gn x gk, no convolution */
    size_t gm, gn, gk;
    char text[160];
} shape;

typedef struct shape_list {
    shape *v;
    size_t n, cap;
} shape_list;

/* Appends a copy of s; false when out of memory. */
bool shape_push(shape_list *l, const shape *s);

/* "N,C,H,W,Cout,k[,stride,padding,groups,block,ss]" and "M,N,K"; false
 * with why set when the text is malformed or the shape invalid. */
bool parse_shape(const char *text, shape *s, char *why, size_t size);
bool parse_gemm(const char *text, shape *s, char *why, size_t size);

/* Appends a preset's shapes ("cifar-resnet18", "small"); false for an
 * unknown name or out of memory. */
bool add_preset(shape_list *l, const char *name);

#endif
