/* npy.h - the .npy parser behind ndcl_npy_read, on bytes already in memory
 * (internal: the fuzz target reaches it without a file). */
#ifndef NDCL_NPY_H
#define NDCL_NPY_H

#include "runtime/runtime.h"

/* Validates a whole .npy file of size bytes and converts its data to a new
 * float array, as ndcl_npy_read does; path only names the file in
 * messages (ndcl_context_last_error(NULL)). Outputs untouched on failure. */
ndcl_status ndcl_npy_parse(const char *path, const void *bytes, size_t size, float **data,
                           int *ndim, size_t shape[NDCL_MAX_DIMS]);

#endif /* NDCL_NPY_H */
