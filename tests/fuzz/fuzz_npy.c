/* fuzz_npy.c - libFuzzer target for the .npy parser behind ndcl_npy_read
 * (ndcl_npy_parse, on the bytes in memory): any input must parse or fail
 * with a status, and what parses must be consistent with its size. */
#include <stdlib.h>

#include "formats/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float *out = NULL;
    int ndim = -1;
    size_t shape[NDCL_MAX_DIMS];
    ndcl_status s = ndcl_npy_parse("fuzz.npy", data, size, &out, &ndim, shape);
    if (s != NDCL_SUCCESS) {
        /* Failures leave the outputs alone and always explain themselves. */
        if (out != NULL || ndim != -1) abort();
        if (ndcl_context_last_error(NULL)[0] == 0) abort();
        return 0;
    }
    if (ndim < 0 || ndim > NDCL_MAX_DIMS) abort();
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= shape[i];
    /* The data follows the header: at least 4 bytes per element. */
    if (count > size / 4) abort();
    volatile float sink = 0;
    for (size_t i = 0; i < count; i++)
        sink += out[i]; /* reads every element */
    (void)sink;
    ndcl_free(out);
    return 0;
}
