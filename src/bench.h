/* bench.h - the library's internal entry points that ndcl-bench times one
 * by one (a kernel benchmark measures what the public API only composes):
 * the primitives on raw device buffers, the plain convolution and the
 * matrix products. Nothing else of the library's internals is reachable
 * from this header: buffers come from public tensors through
 * ndcl_tensor_cl_mem, errors are read with ndcl_context_last_error. These
 * functions are not part of the installed API and may change with it. */
#ifndef NDCL_BENCH_H
#define NDCL_BENCH_H

#include "blas/blas.h"
#include "conv/conv_algo.h"
#include "primitives/conv2d.h"
#include "primitives/primitives.h"

#endif
