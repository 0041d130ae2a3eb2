/* fuzz_safetensors.c - libFuzzer target for the safetensors parser
 * (ndcl_st_parse): any byte string must parse or fail with a status, and
 * whatever parses must convert and re-serialise into a file that parses. */
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ndcl_st_file f;
    if (ndcl_st_parse(NULL, data, size, &f) != NDCL_SUCCESS) return 0;

    /* Every tensor lies inside the input: converting it reads all of it
     * (ASan catches a read past the end of the fuzzer's exact-size copy). */
    ndcl_st_out *outs = calloc((size_t)f.n_tensors + 1, sizeof *outs);
    float **floats = calloc((size_t)f.n_tensors + 1, sizeof *floats);
    if (!outs || !floats) abort();
    for (int i = 0; i < f.n_tensors; i++) {
        const ndcl_st_tensor *t = &f.tensors[i];
        if (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size)
            abort();
        if (ndcl_st_find(&f, t->name) == NULL) abort();
        floats[i] = malloc(t->count * sizeof(float) + 1);
        if (!floats[i]) abort();
        ndcl_st_to_float(t, floats[i]);
        if (t->count == 1) {
            int64_t v;
            (void)ndcl_st_to_int64(NULL, t, &v);
        }
        outs[i].name = t->name;
        outs[i].dtype = NDCL_ST_F32;
        outs[i].ndim = t->ndim;
        memcpy(outs[i].shape, t->shape, sizeof t->shape);
        outs[i].data = floats[i];
    }
    for (int i = 0; i < f.n_meta; i++)
        if (ndcl_st_meta(&f, f.meta_keys[i]) == NULL) abort();

    /* What parsed serialises (when its names are acceptable to the writer)
     * into bytes that parse back to the same tensors. */
    unsigned char *buf;
    size_t bsize;
    if (ndcl_st_serialize(NULL, outs, f.n_tensors, (const char *const *)f.meta_keys,
                          (const char *const *)f.meta_values, f.n_meta, &buf,
                          &bsize) == NDCL_SUCCESS) {
        ndcl_st_file g;
        if (ndcl_st_parse(NULL, buf, bsize, &g) != NDCL_SUCCESS) abort();
        if (g.n_tensors != f.n_tensors || g.n_meta != f.n_meta) abort();
        for (int i = 0; i < g.n_tensors; i++) {
            const ndcl_st_tensor *t = ndcl_st_find(&g, f.tensors[i].name);
            if (!t || t->count != f.tensors[i].count || t->ndim != f.tensors[i].ndim)
                abort();
            if (t->count && memcmp(t->data, floats[i], t->count * sizeof(float)) != 0)
                abort();
        }
        ndcl_st_free(&g);
        free(buf);
    }
    for (int i = 0; i < f.n_tensors; i++)
        free(floats[i]);
    free(floats);
    free(outs);
    ndcl_st_free(&f);
    return 0;
}
