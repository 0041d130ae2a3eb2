/* safetensors.c - the safetensors container: 8-byte little-endian header
 * length, a JSON header (cJSON), raw little-endian data; and the file I/O. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"

/* The reference implementation refuses headers over 100 MB; a length past
 * that is corruption, not a real header, and must not drive an allocation. */
#define ST_MAX_HEADER 100000000ull
/* Integers in the header are JSON numbers (doubles in cJSON): only values
 * a double holds exactly are trusted. */
#define ST_MAX_INT 9007199254740992.0 /* 2^53 */

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [NDCL_ST_F32] = {"F32", 4}, [NDCL_ST_F64] = {"F64", 8}, [NDCL_ST_F16] = {"F16", 2},
    [NDCL_ST_I64] = {"I64", 8}, [NDCL_ST_I32] = {"I32", 4},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *ndcl_st_dtype_name(ndcl_st_dtype dtype)
{
    return (size_t)dtype < N_DTYPES ? dtypes[dtype].name : "?";
}

ndcl_status ndcl_error_prefix(ndcl_context *ctx, ndcl_status status, const char *prefix)
{
    char *msg = strdup(ndcl_context_last_error(ctx));
    if (!msg) return status; /* keep the original message rather than none */
    ndcl_fail(ctx, status, "%s: %s", prefix, msg);
    free(msg);
    return status;
}

/* ------------------------------------------------------------ bytes */

/* Explicit byte assembly: correct whatever the host's byte order. */
static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void store_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void store_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int64_t u64_to_i64(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* float16 tensors (PyTorch's half) are widened on load. ldexpf builds the
 * value from mantissa and exponent, so subnormals come out exact, which a
 * shift of the bits into a float's fields would have to special-case. */
static float half_to_float(unsigned h)
{
    unsigned exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24); /* zero and subnormals */
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return (h & 0x8000) ? -v : v;
}

static double element(const ndcl_st_tensor *t, size_t i, int64_t *as_int)
{
    const unsigned char *p = t->data + i * dtypes[t->dtype].size;
    switch (t->dtype) {
    case NDCL_ST_F32: {
        uint32_t u = load_le32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    case NDCL_ST_F64: {
        uint64_t u = load_le64(p);
        double d;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    case NDCL_ST_F16: return half_to_float((unsigned)p[0] | (unsigned)p[1] << 8);
    case NDCL_ST_I64: *as_int = u64_to_i64(load_le64(p)); return (double)*as_int;
    case NDCL_ST_I32: {
        uint32_t u = load_le32(p);
        *as_int = u <= INT32_MAX ? (int64_t)u : (int64_t)u - 4294967296LL;
        return (double)*as_int;
    }
    }
    return 0;
}

void ndcl_st_to_float(const ndcl_st_tensor *t, float *out)
{
    int64_t unused;
    for (size_t i = 0; i < t->count; i++)
        out[i] = (float)element(t, i, &unused);
}

ndcl_status ndcl_st_to_int64(ndcl_context *ctx, const ndcl_st_tensor *t, int64_t *out)
{
    for (size_t i = 0; i < t->count; i++) {
        int64_t v = 0;
        double d = element(t, i, &v);
        if (t->dtype == NDCL_ST_I64 || t->dtype == NDCL_ST_I32) {
            out[i] = v;
            continue;
        }
        if (!(d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"%s\": element %zu is %g, not an integer", t->name, i,
                             d);
        out[i] = (int64_t)d;
    }
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ parsing */

void ndcl_st_free(ndcl_st_file *f)
{
    if (!f) return;
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->strings);
    free(f->owned_buf);
    memset(f, 0, sizeof *f);
}

const ndcl_st_tensor *ndcl_st_find(const ndcl_st_file *f, const char *name)
{
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *ndcl_st_meta(const ndcl_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_size(const cJSON *j, size_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT && d == floor(d))) return false;
    if (d > (double)SIZE_MAX) return false;
    *out = (size_t)d;
    return true;
}

/* Copies s into the string block at *pos. */
static char *keep(char *block, size_t *pos, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = block + *pos;
    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

/* Validates one tensor entry of the header into t (name set by the caller). */
static ndcl_status parse_entry(ndcl_context *ctx, const cJSON *e, size_t data_size,
                               const unsigned char *data, ndcl_st_tensor *t)
{
    const char *n = t->name;
    if (!cJSON_IsObject(e))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": entry is not a JSON object",
                         n);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!dt) return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": missing \"dtype\"", n);
    if (!cJSON_IsString(dt))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": \"dtype\" is not a string",
                         n);
    size_t k = 0;
    while (k < N_DTYPES && strcmp(dt->valuestring, dtypes[k].name) != 0)
        k++;
    if (k == N_DTYPES)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": dtype \"%s\" is not supported "
                         "(F32, F64, F16, I64 and I32 are)",
                         n, dt->valuestring);
    t->dtype = (ndcl_st_dtype)k;

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!sh) return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": missing \"shape\"", n);
    if (!cJSON_IsArray(sh))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": \"shape\" is not an array",
                         n);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > NDCL_ST_MAX_DIMS)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": %d dimensions (at most %d are supported)", n, ndim,
                         NDCL_ST_MAX_DIMS);
    t->ndim = ndim;
    size_t count = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        if (!json_size(d, &t->shape[i])) {
            char *txt = cJSON_PrintUnformatted(d);
            ndcl_status s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                                      "tensor \"%s\": shape[%d] = %s is not a "
                                      "non-negative integer below 2^53",
                                      n, i, txt ? txt : "?");
            cJSON_free(txt);
            return s;
        }
        if (!ndcl_mul_ok(count, t->shape[i], &count))
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"%s\": the element count of its shape overflows", n);
        i++;
    }
    t->count = count;
    size_t nbytes;
    if (!ndcl_mul_ok(count, dtypes[k].size, &nbytes))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": the byte size of its shape overflows", n);

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!off)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\": missing \"data_offsets\"",
                         n);
    size_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_size(cJSON_GetArrayItem(off, 0), &begin) ||
        !json_size(cJSON_GetArrayItem(off, 1), &end))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": \"data_offsets\" is not an array of two "
                         "non-negative integers",
                         n);
    if (begin > end)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": data_offsets [%zu, %zu] end before they begin", n,
                         begin, end);
    if (end > data_size)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": data_offsets [%zu, %zu] run past the end of the "
                         "data (%zu bytes; file truncated?)",
                         n, begin, end, data_size);
    if (end - begin != nbytes) {
        char buf[200];
        ndcl_shape_text(t->shape, ndim, false, buf, sizeof buf);
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\": data_offsets [%zu, %zu] hold %zu bytes but shape "
                         "%s of %s needs %zu",
                         n, begin, end, end - begin, buf, dtypes[k].name, nbytes);
    }
    t->data = data + begin;
    t->nbytes = nbytes;
    return NDCL_SUCCESS;
}

/* Orders tensors by their place in the data block. */
static int by_offset(const void *a, const void *b)
{
    const ndcl_st_tensor *x = *(ndcl_st_tensor *const *)a, *y = *(ndcl_st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* The data block must be covered exactly once: no overlap (two tensors
 * sharing bytes), no hole and no trailing bytes (as the reference
 * implementation requires, so a file cannot smuggle other content). */
static ndcl_status check_layout(ndcl_context *ctx, ndcl_st_tensor *ts, int n,
                                const unsigned char *data, size_t data_size)
{
    if (n == 0) {
        if (data_size)
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "%zu bytes of data follow a header that lists no tensor",
                             data_size);
        return NDCL_SUCCESS;
    }
    ndcl_st_tensor **order = malloc(sizeof *order * (size_t)n);
    if (!order) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int i = 0; i < n; i++)
        order[i] = &ts[i];
    qsort(order, (size_t)n, sizeof *order, by_offset);
    ndcl_status s = NDCL_SUCCESS;
    size_t expect = 0;
    for (int i = 0; i < n && s == NDCL_SUCCESS; i++) {
        size_t begin = (size_t)(order[i]->data - data);
        if (begin < expect)
            s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                          "tensor \"%s\": data_offsets [%zu, %zu] overlap tensor \"%s\"",
                          order[i]->name, begin, begin + order[i]->nbytes,
                          order[i - 1]->name);
        else if (begin > expect)
            s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                          "tensor \"%s\": data_offsets [%zu, %zu] leave a hole of %zu "
                          "bytes before it",
                          order[i]->name, begin, begin + order[i]->nbytes, begin - expect);
        expect = begin + order[i]->nbytes;
    }
    if (s == NDCL_SUCCESS && expect != data_size)
        s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                      "%zu bytes of data after the last tensor are not covered by any "
                      "tensor",
                      data_size - expect);
    free(order);
    return s;
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

ndcl_status ndcl_st_parse(ndcl_context *ctx, const void *buf, size_t size,
                          ndcl_st_file *out)
{
    NDCL_CHECK_ARG(ctx, buf != NULL || size == 0, "data is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    const unsigned char *bytes = buf;
    if (size < 8)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "%zu bytes: too short for the 8-byte header length", size);
    uint64_t hlen = load_le64(bytes);
    if (hlen > size - 8)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "header length %llu is larger than the file (%zu bytes; "
                         "truncated or not a safetensors file)",
                         (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "header length %llu is absurd (limit %llu)",
                         (unsigned long long)hlen, ST_MAX_HEADER);
    const char *hdr = (const char *)bytes + 8;
    const unsigned char *data = bytes + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "header is not valid JSON (error near byte %zu of %llu)", at,
                         (unsigned long long)hlen);
    }
    for (const char *p = end; p < hdr + hlen; p++)
        if (!is_json_space(*p)) {
            cJSON_Delete(root);
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "header has content after its JSON object (byte %zu)",
                             (size_t)(p - hdr));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ndcl_fail(ctx, NDCL_ERR_FORMAT, "header is JSON but not an object");
    }

    /* Count entries and the bytes their strings need, then validate. */
    int n_tensors = 0, n_meta = 0;
    size_t strbytes = 0;
    const cJSON *meta = NULL, *e;
    ndcl_status s = NDCL_SUCCESS;
    cJSON_ArrayForEach(e, root)
    {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) {
                s = ndcl_fail(ctx, NDCL_ERR_FORMAT, "header has two \"__metadata__\"");
                break;
            }
            meta = e;
            if (!cJSON_IsObject(e)) {
                s = ndcl_fail(ctx, NDCL_ERR_FORMAT, "\"__metadata__\" is not an object");
                break;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, e)
            {
                if (!cJSON_IsString(m)) {
                    s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                                  "\"__metadata__\" key \"%s\": value is not a string",
                                  m->string);
                    break;
                }
                n_meta++;
                strbytes += strlen(m->string) + strlen(m->valuestring) + 2;
            }
            if (s != NDCL_SUCCESS) break;
        } else {
            n_tensors++;
            strbytes += strlen(e->string) + 1;
        }
    }

    ndcl_st_file f = {0};
    if (s == NDCL_SUCCESS) {
        f.tensors = calloc((size_t)n_tensors + 1, sizeof *f.tensors);
        f.meta_keys = calloc((size_t)n_meta + 1, sizeof *f.meta_keys);
        f.meta_values = calloc((size_t)n_meta + 1, sizeof *f.meta_values);
        f.strings = malloc(strbytes + 1);
        if (!f.tensors || !f.meta_keys || !f.meta_values || !f.strings)
            s = ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    size_t pos = 0;
    if (s == NDCL_SUCCESS && meta) {
        const cJSON *m;
        cJSON_ArrayForEach(m, meta)
        {
            for (int j = 0; j < f.n_meta; j++)
                if (strcmp(f.meta_keys[j], m->string) == 0) {
                    s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                                  "\"__metadata__\" has key \"%s\" twice", m->string);
                    break;
                }
            if (s != NDCL_SUCCESS) break;
            f.meta_keys[f.n_meta] = keep(f.strings, &pos, m->string);
            f.meta_values[f.n_meta] = keep(f.strings, &pos, m->valuestring);
            f.n_meta++;
        }
    }
    if (s == NDCL_SUCCESS) {
        cJSON_ArrayForEach(e, root)
        {
            if (e == meta) continue;
            if (ndcl_st_find(&f, e->string)) {
                s = ndcl_fail(ctx, NDCL_ERR_FORMAT, "tensor \"%s\" appears twice",
                              e->string);
                break;
            }
            ndcl_st_tensor *t = &f.tensors[f.n_tensors];
            t->name = keep(f.strings, &pos, e->string);
            s = parse_entry(ctx, e, data_size, data, t);
            if (s != NDCL_SUCCESS) break;
            f.n_tensors++;
        }
    }
    cJSON_Delete(root);
    if (s == NDCL_SUCCESS) s = check_layout(ctx, f.tensors, f.n_tensors, data, data_size);
    if (s != NDCL_SUCCESS) {
        ndcl_st_free(&f);
        return s;
    }
    *out = f;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_st_read(ndcl_context *ctx, const char *path, ndcl_st_file *out)
{
    NDCL_CHECK_ARG(ctx, path != NULL, "path is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    unsigned char *buf;
    size_t size;
    NDCL_TRY(
        ndcl_read_file_checked(ctx, path, NDCL_ST_HEAD, ndcl_st_head_check, &buf, &size));
    ndcl_status s = ndcl_st_parse(ctx, buf, size, out);
    if (s != NDCL_SUCCESS) {
        free(buf);
        return ndcl_error_prefix(ctx, s, path);
    }
    out->owned_buf = buf;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ writing */

ndcl_status ndcl_st_serialize(ndcl_context *ctx, const ndcl_st_out *ts, int n,
                              const char *const *meta_keys, const char *const *meta_values,
                              int n_meta, unsigned char **data, size_t *size)
{
    NDCL_CHECK_ARG(ctx, n >= 0 && (ts || n == 0), "n=%d tensors with tensors=%p", n,
                   (const void *)ts);
    NDCL_CHECK_ARG(ctx, n_meta >= 0 && ((meta_keys && meta_values) || n_meta == 0),
                   "n_meta=%d with NULL keys or values", n_meta);
    NDCL_CHECK_ARG(ctx, data && size, "data and size must not be NULL");

    /* Validate names and shapes and size the data block first. */
    size_t data_size = 0;
    for (int i = 0; i < n; i++) {
        const ndcl_st_out *t = &ts[i];
        NDCL_CHECK_ARG(ctx, t->name && *t->name && strcmp(t->name, "__metadata__") != 0,
                       "tensor %d: name is NULL, empty or \"__metadata__\"", i);
        for (int j = 0; j < i; j++)
            NDCL_CHECK_ARG(ctx, strcmp(ts[j].name, t->name) != 0,
                           "tensor name \"%s\" is given twice", t->name);
        NDCL_CHECK_ARG(ctx, t->dtype == NDCL_ST_F32 || t->dtype == NDCL_ST_I64,
                       "tensor \"%s\": only F32 and I64 are written", t->name);
        NDCL_CHECK_ARG(ctx, t->ndim >= 0 && t->ndim <= NDCL_ST_MAX_DIMS,
                       "tensor \"%s\": ndim=%d", t->name, t->ndim);
        size_t count = 1, nbytes;
        for (int d = 0; d < t->ndim; d++)
            NDCL_CHECK_ARG(ctx,
                           ndcl_mul_ok(count, t->shape[d], &count) &&
                               (double)t->shape[d] <= ST_MAX_INT,
                           "tensor \"%s\": shape overflows", t->name);
        NDCL_CHECK_ARG(ctx, count == 0 || t->data, "tensor \"%s\": data is NULL", t->name);
        NDCL_CHECK_ARG(ctx,
                       ndcl_mul_ok(count, dtypes[t->dtype].size, &nbytes) &&
                           data_size + nbytes >= data_size &&
                           (double)(data_size + nbytes) <= ST_MAX_INT,
                       "tensor \"%s\": data size overflows", t->name);
        data_size += nbytes;
    }
    for (int i = 0; i < n_meta; i++) {
        NDCL_CHECK_ARG(ctx, meta_keys[i] && meta_values[i],
                       "metadata %d: key or value is NULL", i);
        for (int j = 0; j < i; j++)
            NDCL_CHECK_ARG(ctx, strcmp(meta_keys[j], meta_keys[i]) != 0,
                           "metadata key \"%s\" is given twice", meta_keys[i]);
    }

    /* The header, built with cJSON so every name is escaped correctly. */
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < n_meta; i++)
            ok = cJSON_AddStringToObject(m, meta_keys[i], meta_values[i]) != NULL;
    }
    size_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const ndcl_st_out *t = &ts[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *dt = e ? cJSON_AddStringToObject(e, "dtype", dtypes[t->dtype].name) : NULL;
        cJSON *sh = dt ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *off = sh ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = off != NULL;
        size_t count = 1;
        for (int d = 0; ok && d < t->ndim; d++) {
            cJSON *num = cJSON_CreateNumber((double)t->shape[d]);
            ok = num && cJSON_AddItemToArray(sh, num);
            if (!ok) cJSON_Delete(num);
            count *= t->shape[d];
        }
        size_t next = offset + count * dtypes[t->dtype].size;
        for (int k = 0; ok && k < 2; k++) {
            cJSON *num = cJSON_CreateNumber((double)(k ? next : offset));
            ok = num && cJSON_AddItemToArray(off, num);
            if (!ok) cJSON_Delete(num);
        }
        offset = next;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory (header)");

    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) / 8 * 8;
    size_t total = 8 + hlen + data_size;
    if (total < data_size) {
        cJSON_free(json);
        return ndcl_fail(ctx, NDCL_ERR_INVALID_ARG, "file size overflows");
    }
    unsigned char *buf = malloc(total ? total : 1);
    if (!buf) {
        cJSON_free(json);
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory (%zu bytes)",
                         total);
    }
    store_le64(buf, (uint64_t)hlen);
    memcpy(buf + 8, json, jlen);
    memset(buf + 8 + jlen, ' ', hlen - jlen);
    cJSON_free(json);

    unsigned char *p = buf + 8 + hlen;
    for (int i = 0; i < n; i++) {
        const ndcl_st_out *t = &ts[i];
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++)
            count *= t->shape[d];
        for (size_t j = 0; j < count; j++) {
            if (t->dtype == NDCL_ST_F32) {
                uint32_t u;
                memcpy(&u, (const float *)t->data + j, sizeof u);
                store_le32(p, u);
                p += 4;
            } else {
                store_le64(p, (uint64_t)((const int64_t *)t->data)[j]);
                p += 8;
            }
        }
    }
    *data = buf;
    *size = total;
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ files */

/* Reads exactly n bytes at the file's current offset. */
static ndcl_status read_exact(ndcl_context *ctx, const char *path, int fd, unsigned char *p,
                              size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return ndcl_fail(ctx, NDCL_ERR_IO, "%s: read failed: %s", path,
                             strerror(errno));
        if (r == 0)
            return ndcl_fail(ctx, NDCL_ERR_IO, "%s: the file shrank while it was read",
                             path);
        p += r;
        n -= (size_t)r;
    }
    return NDCL_SUCCESS;
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

ndcl_status ndcl_read_file_checked(ndcl_context *ctx, const char *path, size_t head_max,
                                   ndcl_head_check check, unsigned char **data,
                                   size_t *size)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
     * refused with every other kind of file that has no size. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ndcl_fail(ctx, NDCL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ndcl_fail(ctx, NDCL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ndcl_fail(ctx, NDCL_ERR_IO,
                         "%s: is %s; ndcl reads regular files only (its size bounds the "
                         "read)",
                         path, file_kind(st.st_mode));
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size >= SIZE_MAX / 2) {
        close(fd);
        return ndcl_fail(ctx, NDCL_ERR_IO, "%s: size %jd is out of range", path,
                         (intmax_t)st.st_size);
    }
    size_t total = (size_t)st.st_size;
    /* The head first, into a buffer of its own size: a wrong magic or a
     * header that does not match the file's size is refused before the
     * body is read or its memory taken. */
    size_t head = total < head_max ? total : head_max;
    unsigned char *buf = malloc(head + 1);
    ndcl_status s = NDCL_SUCCESS;
    if (!buf) s = ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    if (s == NDCL_SUCCESS) s = read_exact(ctx, path, fd, buf, head);
    if (s == NDCL_SUCCESS && check) s = check(ctx, path, buf, head, total);
    if (s == NDCL_SUCCESS && total > head) {
        unsigned char *all = realloc(buf, total + 1);
        if (!all)
            s = ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "%s: out of host memory (%zu bytes)",
                          path, total + 1);
        else
            buf = all;
    }
    if (s == NDCL_SUCCESS) s = read_exact(ctx, path, fd, buf + head, total - head);
    close(fd);
    if (s != NDCL_SUCCESS) {
        free(buf);
        return s;
    }
    buf[total] = 0;
    *data = buf;
    *size = total;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_read_file(ndcl_context *ctx, const char *path, unsigned char **data,
                           size_t *size)
{
    return ndcl_read_file_checked(ctx, path, 0, NULL, data, size);
}

ndcl_status ndcl_st_head_check(ndcl_context *ctx, const char *path,
                               const unsigned char *head, size_t n, size_t total)
{
    if (n < 8 || total < 8)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "%s: %zu bytes: too short for the 8-byte header length", path,
                         total);
    uint64_t hlen = load_le64(head);
    if (hlen > total - 8)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "%s: header length %llu is larger than the file (%zu bytes; "
                         "truncated or not a safetensors file)",
                         path, (unsigned long long)hlen, total);
    if (hlen > ST_MAX_HEADER)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "%s: header length %llu is absurd (limit %llu)", path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    size_t i = 8;
    while (i < n && i < 8 + hlen && is_json_space((char)head[i]))
        i++;
    if (i < n && i < 8 + hlen && head[i] != '{')
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "%s: header is not a JSON object (byte 0x%02x at %zu; not a "
                         "safetensors file)",
                         path, head[i], i);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_write_file_atomic(ndcl_context *ctx, const char *path, const void *data,
                                   size_t size)
{
    NDCL_CHECK_ARG(ctx, path && *path, "path is NULL or empty");
    NDCL_CHECK_ARG(ctx, data || size == 0, "data is NULL");
    const char *hook = getenv("NDCL_TEST_SHORT_WRITE");
    const bool simulated = hook && *hook;
    bool no_temp;
    int err = ndcl_file_replace(path, &data, &size, 1, simulated, &no_temp);
    if (err == 0) return NDCL_SUCCESS;
    if (err == ENOMEM && !no_temp)
        return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    if (no_temp)
        return ndcl_fail(ctx, NDCL_ERR_IO,
                         "%s: cannot create a temporary file "
                         "next to it: %s",
                         path, strerror(err));
    return ndcl_fail(ctx, NDCL_ERR_IO, "%s: write failed: %s%s (the file is unchanged)",
                     path, strerror(err),
                     simulated ? " (simulated by NDCL_TEST_SHORT_WRITE)" : "");
}
