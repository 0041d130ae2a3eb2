/* npy.c - NumPy .npy files (versions 1, 2 and 3) of little-endian float32
 * or float64 in C order, read into and written from host floats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/npy.h"
#include "formats/safetensors.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The header is a Python dict literal, not JSON: a small cursor parser for
 * the three keys numpy writes ('descr', 'fortran_order', 'shape'). */
typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool take(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool take_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

/* A quoted string without escapes (numpy never writes any). */
static bool take_string(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    out[n] = 0;
    return true;
}

static bool take_size(cursor *c, size_t *out)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
    size_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (!ndcl_mul_ok(v, 10, &v) || v + (size_t)(*c->p - '0') < v) return false;
        v += (size_t)(*c->p++ - '0');
    }
    if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs in old files */
    *out = v;
    return true;
}

#define NPY_PARSE_DIMS 32

typedef struct npy_header {
    char descr[32];
    int fortran;
    int ndim;
    size_t shape[NPY_PARSE_DIMS];
} npy_header;

static ndcl_status bad_header(const char *path, const char *what)
{
    return ndcl_fail(NULL, NDCL_ERR_FORMAT, "%s: malformed .npy header: %s", path, what);
}

/* The header is the repr of a Python dict ({'descr': ..., 'fortran_order':
 * ..., 'shape': (...), }); it is parsed by hand, accepting the three keys
 * in any order and nothing that would need a Python evaluator, so that a
 * crafted header cannot make the reader do more than scan it once. */
static ndcl_status parse_header(const char *path, const char *text, size_t len,
                                npy_header *h)
{
    cursor c = {text, text + len};
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!take(&c, '{')) return bad_header(path, "it does not start with '{'");
    while (!take(&c, '}')) {
        char key[32];
        if (!take_string(&c, key, sizeof key))
            return bad_header(path, "expected a quoted key");
        if (!take(&c, ':')) return bad_header(path, "expected ':' after a key");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (!take_string(&c, h->descr, sizeof h->descr))
                return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                                 "%s: dtype is not a simple type string (structured "
                                 "arrays are not supported)",
                                 path);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (take_word(&c, "True"))
                h->fortran = 1;
            else if (take_word(&c, "False"))
                h->fortran = 0;
            else
                return bad_header(path, "fortran_order is not True or False");
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!take(&c, '(')) return bad_header(path, "shape is not a tuple");
            h->ndim = 0;
            while (!take(&c, ')')) {
                if (h->ndim == NPY_PARSE_DIMS)
                    return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                                     "%s: shape has more than %d dimensions (at most %d "
                                     "are supported)",
                                     path, NPY_PARSE_DIMS, NDCL_MAX_DIMS);
                if (!take_size(&c, &h->shape[h->ndim]))
                    return bad_header(path, "shape holds something other than "
                                            "non-negative integers, or one overflows");
                h->ndim++;
                if (!take(&c, ',')) {
                    if (!take(&c, ')')) return bad_header(path, "unterminated shape tuple");
                    break;
                }
            }
            have_shape = true;
        } else {
            char msg[80];
            snprintf(msg, sizeof msg, "unexpected or repeated key '%s'", key);
            return bad_header(path, msg);
        }
        if (!take(&c, ',')) {
            if (!take(&c, '}')) return bad_header(path, "expected ',' or '}'");
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) return bad_header(path, "content after the dictionary");
    if (!have_descr || !have_fortran || !have_shape)
        return bad_header(path, !have_descr     ? "no 'descr' key"
                                : !have_fortran ? "no 'fortran_order' key"
                                                : "no 'shape' key");
    return NDCL_SUCCESS;
}

/* What a .npy header says: where the data starts, its element size and
 * count, the shape. */
typedef struct npy_head {
    npy_header h;
    size_t start, hlen, esize, count;
} npy_head;

/* Validates a file's magic, header and size from its first n bytes (b)
 * and its whole size: enough to refuse a file before its body is read. */
static ndcl_status parse_head(const char *path, const unsigned char *b, size_t n,
                              size_t size, npy_head *out)
{
    if (n < 10 || memcmp(b, magic, sizeof magic) != 0)
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: not a .npy file (bad magic; expected \\x93NUMPY)", path);
    unsigned major = b[6], minor = b[7];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12)
            return ndcl_fail(NULL, NDCL_ERR_FORMAT, "%s: truncated .npy header", path);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
               (size_t)((uint32_t)b[11] << 24);
        start = 12;
    } else {
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: .npy version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                         path, major, minor);
    }
    if (hlen > size - start)
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: truncated .npy header (%zu bytes announced, %zu present)",
                         path, hlen, size - start);
    if (hlen > n - start)
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: .npy header of %zu bytes (at most %zu are read as a header)",
                         path, hlen, n - start);
    npy_header h = {0};
    NDCL_TRY(parse_header(path, (const char *)b + start, hlen, &h));

    size_t esize;
    if (strcmp(h.descr, "<f4") == 0)
        esize = 4;
    else if (strcmp(h.descr, "<f8") == 0)
        esize = 8;
    else
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: dtype '%s' is not supported (only '<f4' and '<f8')", path,
                         h.descr);
    if (h.fortran)
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: Fortran-order arrays are not supported (save a C-order "
                         "array, e.g. np.ascontiguousarray)",
                         path);
    if (h.ndim > NDCL_MAX_DIMS)
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         "%s: %d dimensions (at most %d are supported)", path, h.ndim,
                         NDCL_MAX_DIMS);
    size_t count = 1, nbytes;
    for (int i = 0; i < h.ndim; i++)
        if (!ndcl_mul_ok(count, h.shape[i], &count))
            return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                             "%s: the shape's element count overflows", path);
    if (!ndcl_mul_ok(count, esize, &nbytes))
        return ndcl_fail(NULL, NDCL_ERR_FORMAT, "%s: the shape's byte size overflows",
                         path);
    size_t avail = size - start - hlen;
    if (avail != nbytes) {
        char st[160];
        ndcl_shape_text(h.shape, h.ndim, true, st, sizeof st);
        return ndcl_fail(NULL, NDCL_ERR_FORMAT,
                         avail < nbytes ? "%s: data truncated: shape %s of '%s' needs %zu "
                                          "bytes, %zu present"
                                        : "%s: shape %s of '%s' needs %zu bytes but %zu "
                                          "follow the header",
                         path, st, h.descr, nbytes, avail);
    }

    out->h = h;
    out->start = start;
    out->hlen = hlen;
    out->esize = esize;
    out->count = count;
    return NDCL_SUCCESS;
}

/* Validates a whole file in memory and converts its data to floats. */
ndcl_status ndcl_npy_parse(const char *path, const void *bytes, size_t size, float **data,
                           int *ndim, size_t shape[NDCL_MAX_DIMS])
{
    const unsigned char *b = bytes;
    npy_head hd;
    NDCL_TRY(parse_head(path, b, size, size, &hd));
    const npy_header h = hd.h;
    size_t start = hd.start, hlen = hd.hlen, esize = hd.esize, count = hd.count;
    float *out = malloc(count ? count * sizeof(float) : 1);
    if (!out)
        return ndcl_fail(NULL, NDCL_ERR_OUT_OF_MEMORY,
                         "%s: out of host memory (%zu floats)", path, count);
    const unsigned char *p = b + start + hlen;
    for (size_t i = 0; i < count; i++, p += esize) {
        /* Explicit little-endian assembly, independent of the host. */
        uint64_t u = 0;
        for (size_t k = esize; k-- > 0;)
            u = (u << 8) | p[k];
        if (esize == 4) {
            uint32_t u32 = (uint32_t)u;
            memcpy(&out[i], &u32, sizeof u32);
        } else {
            double d;
            memcpy(&d, &u, sizeof d);
            out[i] = (float)d;
        }
    }
    *data = out;
    *ndim = h.ndim;
    memcpy(shape, h.shape, sizeof(size_t) * (size_t)h.ndim);
    return NDCL_SUCCESS;
}

/* The most of a file read as its header (numpy itself writes a few
 * hundred bytes at most). */
#define NPY_HEAD ((size_t)1 << 20)

/* The check ndcl_read_file_checked runs on the first bytes: a file that is
 * no .npy, or whose header promises more data than the file holds, fails
 * before its body is read into memory (a hostile or truncated file costs
 * no more than its head). */
static ndcl_status head_check(ndcl_context *ctx, const char *path,
                              const unsigned char *head, size_t n, size_t total)
{
    (void)ctx;
    npy_head hd;
    return parse_head(path, head, n, total, &hd);
}

ndcl_status ndcl_npy_read(const char *path, float **data, int *ndim,
                          size_t shape[NDCL_MAX_DIMS])
{
    ndcl_clear_error(NULL);
    NDCL_CHECK_ARG(NULL, path != NULL, "path is NULL");
    NDCL_CHECK_ARG(NULL, data && ndim && shape, "data, ndim and shape must not be NULL");
    unsigned char *buf;
    size_t size;
    NDCL_TRY(ndcl_read_file_checked(NULL, path, NPY_HEAD, head_check, &buf, &size));
    ndcl_status s = ndcl_npy_parse(path, buf, size, data, ndim, shape);
    free(buf);
    return s;
}

ndcl_status ndcl_npy_write(const char *path, const float *data, int ndim,
                           const size_t *shape)
{
    ndcl_clear_error(NULL);
    NDCL_CHECK_ARG(NULL, path && *path, "path is NULL or empty");
    NDCL_CHECK_ARG(NULL, ndim >= 0 && ndim <= NDCL_MAX_DIMS, "ndim=%d (0 to %d)", ndim,
                   NDCL_MAX_DIMS);
    NDCL_CHECK_ARG(NULL, shape || ndim == 0, "shape is NULL");
    size_t count = 1, nbytes;
    for (int i = 0; i < ndim; i++)
        NDCL_CHECK_ARG(NULL, ndcl_mul_ok(count, shape[i], &count),
                       "the element count of the shape overflows");
    NDCL_CHECK_ARG(NULL, ndcl_mul_ok(count, 4, &nbytes) && nbytes < SIZE_MAX - 4096,
                   "the byte size of the shape overflows");
    NDCL_CHECK_ARG(NULL, data || count == 0, "data is NULL");

    /* numpy's own layout: version 1.0, header padded with spaces and ended
     * by '\n' so that the data starts at a multiple of 64 bytes. */
    char st[160], text[256];
    ndcl_shape_text(shape, ndim, true, st, sizeof st);
    int tl = snprintf(text, sizeof text,
                      "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': %s, }",
                      st);
    size_t hlen = ((size_t)tl + 1 + 10 + 63) / 64 * 64 - 10;
    size_t total = 10 + hlen + nbytes;
    unsigned char *buf = malloc(total);
    if (!buf)
        return ndcl_fail(NULL, NDCL_ERR_OUT_OF_MEMORY, "out of host memory (%zu bytes)",
                         total);
    memcpy(buf, magic, sizeof magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, text, (size_t)tl);
    memset(buf + 10 + tl, ' ', hlen - (size_t)tl - 1);
    buf[10 + hlen - 1] = '\n';
    unsigned char *p = buf + 10 + hlen;
    for (size_t i = 0; i < count; i++, p += 4) {
        uint32_t u;
        memcpy(&u, &data[i], sizeof u);
        for (int k = 0; k < 4; k++)
            p[k] = (unsigned char)(u >> (8 * k));
    }
    ndcl_status s = ndcl_write_file_atomic(NULL, path, buf, total);
    free(buf);
    return s;
}

/* The context-less functions above record their message on the thread's
 * slot; a caller that reads its context's messages finds it there too. */
static ndcl_status on_context(ndcl_context *ctx, ndcl_status s)
{
    if (s != NDCL_SUCCESS && ctx)
        return ndcl_fail(ctx, s, "%s", ndcl_context_last_error(NULL));
    return s;
}

ndcl_status ndcl_npy_read_ctx(ndcl_context *ctx, const char *path, float **data, int *ndim,
                              size_t shape[NDCL_MAX_DIMS])
{
    if (ctx) ndcl_clear_error(ctx);
    return on_context(ctx, ndcl_npy_read(path, data, ndim, shape));
}

ndcl_status ndcl_npy_write_ctx(ndcl_context *ctx, const char *path, const float *data,
                               int ndim, const size_t *shape)
{
    if (ctx) ndcl_clear_error(ctx);
    return on_context(ctx, ndcl_npy_write(path, data, ndim, shape));
}
