/* safetensors.h - the safetensors container (parse, convert, serialise) and
 * the crash-safe file writer shared by the file formats (internal). */
#ifndef NDCL_SAFETENSORS_H
#define NDCL_SAFETENSORS_H

#include "runtime/runtime.h"

/* More dimensions than ndcl tensors have, so that a file holding a larger
 * tensor still parses and the caller can say which tensor is unusable. */
#define NDCL_ST_MAX_DIMS 8

/* The element types ndcl reads; F32 and I64 are also the ones it writes. */
typedef enum ndcl_st_dtype {
    NDCL_ST_F32,
    NDCL_ST_F64,
    NDCL_ST_F16,
    NDCL_ST_I64,
    NDCL_ST_I32
} ndcl_st_dtype;

/* One tensor of a parsed file; data points into the file's bytes. */
typedef struct ndcl_st_tensor {
    const char *name;
    ndcl_st_dtype dtype;
    int ndim;
    size_t shape[NDCL_ST_MAX_DIMS];
    size_t count;
    const unsigned char *data;
    size_t nbytes;
} ndcl_st_tensor;

/* A parsed file. Strings and the tensor table are owned; the tensor data
 * points into the buffer given to ndcl_st_parse, or into owned_buf when the
 * file was read by ndcl_st_read. */
typedef struct ndcl_st_file {
    ndcl_st_tensor *tensors;
    int n_tensors;
    char **meta_keys, **meta_values;
    int n_meta;
    char *strings; /* one block holding every name, key and value */
    unsigned char *owned_buf;
} ndcl_st_file;

/* Parses and validates a whole file held in memory (size bytes). The
 * buffer must outlive *out. Errors: NDCL_ERR_FORMAT naming the tensor and
 * the problem, NDCL_ERR_OUT_OF_MEMORY. *out is untouched on failure. */
ndcl_status ndcl_st_parse(ndcl_context *ctx, const void *data, size_t size,
                          ndcl_st_file *out);

/* Reads path into memory and parses it; NDCL_ERR_IO when it cannot be read. */
ndcl_status ndcl_st_read(ndcl_context *ctx, const char *path, ndcl_st_file *out);

/* Releases what a successful parse or read allocated; accepts a zeroed file. */
void ndcl_st_free(ndcl_st_file *f);

/* The tensor called name, or NULL. */
const ndcl_st_tensor *ndcl_st_find(const ndcl_st_file *f, const char *name);

/* The metadata value of key, or NULL. */
const char *ndcl_st_meta(const ndcl_st_file *f, const char *key);

/* "F32", "I64", ... */
const char *ndcl_st_dtype_name(ndcl_st_dtype dtype);

/* Converts every element of t to float (out holds t->count floats). */
void ndcl_st_to_float(const ndcl_st_tensor *t, float *out);

/* Converts every element of t to int64; floating values must be integral
 * and in range (NDCL_ERR_FORMAT naming the tensor otherwise). */
ndcl_status ndcl_st_to_int64(ndcl_context *ctx, const ndcl_st_tensor *t, int64_t *out);

/* A tensor to write: F32 data as floats, I64 data as int64_t, host order. */
typedef struct ndcl_st_out {
    const char *name;
    ndcl_st_dtype dtype; /* NDCL_ST_F32 or NDCL_ST_I64 */
    int ndim;            /* 0 .. NDCL_ST_MAX_DIMS */
    size_t shape[NDCL_ST_MAX_DIMS];
    const void *data;
} ndcl_st_out;

/* Serialises the tensors (contiguous, in the given order) and metadata
 * (n_meta key/value pairs, NULL when none) into a malloc'd buffer. The
 * header is padded with spaces to a multiple of 8 bytes. Names must be
 * distinct, non-empty and not "__metadata__" (NDCL_ERR_INVALID_ARG). */
ndcl_status ndcl_st_serialize(ndcl_context *ctx, const ndcl_st_out *tensors, int n,
                              const char *const *meta_keys, const char *const *meta_values,
                              int n_meta, unsigned char **data, size_t *size);

/* Writes size bytes to path through a temporary file in the same directory
 * that is fsync'ed and then renamed over path, so an interrupted or failed
 * write never replaces a good file. NDCL_ERR_IO with the path and the
 * system's reason on failure; the temporary file is removed.
 *
 * Test hook: when the environment variable NDCL_TEST_SHORT_WRITE is set
 * (non-empty), only half the bytes are written and the write then fails as
 * a full disk would, so tests can check that the target is left alone. */
ndcl_status ndcl_write_file_atomic(ndcl_context *ctx, const char *path, const void *data,
                                   size_t size);

/* Reads a whole regular file into a malloc'd buffer (one extra NUL byte
 * after the end, not counted in *size). Anything else (a FIFO, a device, a
 * directory) is refused without blocking: the file's size bounds the read.
 * NDCL_ERR_IO on failure. */
ndcl_status ndcl_read_file(ndcl_context *ctx, const char *path, unsigned char **data,
                           size_t *size);

/* Checks a file's first n bytes (n = min(its size, the head asked for))
 * knowing its whole size, before the rest is read. */
typedef ndcl_status (*ndcl_head_check)(ndcl_context *ctx, const char *path,
                                       const unsigned char *head, size_t n, size_t total);

/* ndcl_read_file, with check called on the file's first head_max bytes
 * before the body is read: a wrong magic or a header that does not match
 * the file's size costs no more than the head. */
ndcl_status ndcl_read_file_checked(ndcl_context *ctx, const char *path, size_t head_max,
                                   ndcl_head_check check, unsigned char **data,
                                   size_t *size);

/* How much of a safetensors file ndcl_st_head_check looks at. */
#define NDCL_ST_HEAD 4096

/* A safetensors file's head: the header length within the file and the
 * limit, the header a JSON object (NDCL_ERR_FORMAT naming path). */
ndcl_status ndcl_st_head_check(ndcl_context *ctx, const char *path,
                               const unsigned char *head, size_t n, size_t total);

/* Prepends "prefix: " to ctx's last error and returns status, so a parse
 * error read from a file names the file. */
ndcl_status ndcl_error_prefix(ndcl_context *ctx, ndcl_status status, const char *prefix);

#endif /* NDCL_SAFETENSORS_H */
