/* fuzz_layer.c - libFuzzer target for layer files (ndcl_layer_load_memory:
 * safetensors, descriptor metadata, descriptor validation, tensor names and
 * shapes), on one real context: whatever loads must save and load back to
 * the same bytes; anything else must fail with a status and a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndcl.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ndcl_context *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A metadata-only file may ask for a layer of any size: a low device
     * memory limit (tools/fuzz.sh sets POCL_MEMORY_LIMIT) keeps those on
     * the library's out-of-memory path instead of the fuzzer's RSS limit. */
    ndcl_status s = ndcl_context_create(NULL, &ctx);
    if (s != NDCL_SUCCESS) {
        fprintf(stderr, "fuzz_layer: no context: %s\n", ndcl_context_last_error(NULL));
        abort();
    }
    ndcl_build_info info;
    if (ndcl_context_build(ctx, &info) != NDCL_SUCCESS) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ndcl_layer *l = NULL;
    ndcl_status s = ndcl_layer_load_memory(ctx, data, size, &l);
    if (s != NDCL_SUCCESS) {
        if (l != NULL || ndcl_context_last_error(ctx)[0] == 0) abort();
        if (s != NDCL_ERR_FORMAT && s != NDCL_ERR_OUT_OF_MEMORY && s != NDCL_ERR_OPENCL)
            abort(); /* content is never an argument error */
    } else {
        void *a = NULL, *b = NULL;
        size_t na, nb;
        if (ndcl_layer_save_memory(l, &a, &na) != NDCL_SUCCESS) abort();
        ndcl_layer *l2 = NULL;
        if (ndcl_layer_load_memory(ctx, a, na, &l2) != NDCL_SUCCESS) {
            fprintf(stderr, "reload: %s\n", ndcl_context_last_error(ctx));
            abort();
        }
        if (ndcl_layer_save_memory(l2, &b, &nb) != NDCL_SUCCESS) abort();
        if (na != nb || memcmp(a, b, na) != 0) abort();
        ndcl_free(a);
        ndcl_free(b);
        ndcl_layer_destroy(l2);
        ndcl_layer_destroy(l);
    }
    /* Nothing may still be running when libFuzzer calls exit(): PoCL
     * tears down its compiler under a kernel it is still compiling. */
    if (ndcl_finish(ctx) != NDCL_SUCCESS) abort();
    return 0;
}
