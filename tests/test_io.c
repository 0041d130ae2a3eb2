/* test_io.c - file formats: .npy and safetensors parsing and writing,
 * layer files (round trips, conversions, every rejection), the crash-safe
 * write, and the PyTorch golden files under tests/data. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "formats/safetensors.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

#define ERR_HAS(ctx, s)                                                                    \
    ck_assert_msg(strstr(ndcl_context_last_error(ctx), (s)) != NULL,                       \
                  "message \"%s\" lacks \"%s\"", ndcl_context_last_error(ctx), (s))

/* ------------------------------------------------------------ npy */

/* A .npy file of the given version with a header dict and raw data. */
static void make_npy(const char *path, int major, const char *dict, const void *data,
                     size_t n)
{
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = (pre + dl + 1 + 63) / 64 * 64 - pre;
    unsigned char *b = calloc(pre + hlen + n + 1, 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hlen - dl - 1);
    b[pre + hlen - 1] = '\n';
    if (n) memcpy(b + pre + hlen, data, n);
    write_bytes(path, b, pre + hlen + n);
    free(b);
}

START_TEST(npy_round_trip)
{
    const char *p = tmp_path("a.npy");
    float in[2 * 3 * 4 * 5], *out = NULL;
    size_t shape[4] = {2, 3, 4, 5}, got[4];
    int ndim = -1;
    test_fill_uniform(in, 120, 3, -2, 2);
    in[0] = -0.0f;
    in[1] = INFINITY;
    ck_assert_int_eq(ndcl_npy_write(p, in, 4, shape), NDCL_SUCCESS);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    ck_assert_mem_eq(b, "\x93NUMPY\x01\x00", 8);
    ck_assert_uint_eq((n - 120 * 4) % 64, 0); /* data aligned as numpy does */
    ck_assert_ptr_nonnull(strstr((char *)b + 10, "'shape': (2, 3, 4, 5)"));
    free(b);
    ck_assert_int_eq(ndcl_npy_read(p, &out, &ndim, got), NDCL_SUCCESS);
    ck_assert_int_eq(ndim, 4);
    ck_assert_mem_eq(got, shape, sizeof shape);
    ck_assert_mem_eq(out, in, sizeof in);
    ndcl_free(out);

    /* One dimension ("(7,)") and a scalar ("()"). */
    ck_assert_int_eq(ndcl_npy_write(p, in, 1, (size_t[]){7}), NDCL_SUCCESS);
    ck_assert_int_eq(ndcl_npy_read(p, &out, &ndim, got), NDCL_SUCCESS);
    ck_assert_int_eq(ndim, 1);
    ck_assert_uint_eq(got[0], 7);
    ck_assert_mem_eq(out, in, 7 * sizeof(float));
    ndcl_free(out);
    ck_assert_int_eq(ndcl_npy_write(p, in + 5, 0, NULL), NDCL_SUCCESS);
    ck_assert_int_eq(ndcl_npy_read(p, &out, &ndim, got), NDCL_SUCCESS);
    ck_assert_int_eq(ndim, 0);
    ck_assert(out[0] == in[5]);
    ndcl_free(out);
    ndcl_free(NULL);
}
END_TEST

START_TEST(npy_versions_and_f8)
{
    const char *p = tmp_path("b.npy");
    double d[6] = {1.5, -2.25, 1e-3, 3.0e38, 0.1, -7};
    float *out;
    int ndim;
    size_t shape[4];
    make_npy(p, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", d,
             sizeof d);
    ck_assert_int_eq(ndcl_npy_read(p, &out, &ndim, shape), NDCL_SUCCESS);
    ck_assert_int_eq(ndim, 2);
    ck_assert_uint_eq(shape[0], 2);
    ck_assert_uint_eq(shape[1], 3);
    for (int i = 0; i < 6; i++)
        ck_assert(out[i] == (float)d[i]);
    ndcl_free(out);

    float f[3] = {1, 2, 3};
    for (int v = 2; v <= 3; v++) {
        /* Versions 2 and 3: 4-byte header length; keys in any order, with
         * double quotes and without the trailing comma. */
        make_npy(p, v, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f4\"}", f,
                 sizeof f);
        ck_assert_int_eq(ndcl_npy_read(p, &out, &ndim, shape), NDCL_SUCCESS);
        ck_assert_int_eq(ndim, 1);
        ck_assert_mem_eq(out, f, sizeof f);
        ndcl_free(out);
    }
}
END_TEST

static void npy_rejects(const char *what, const char *expect)
{
    float *out = (float *)(uintptr_t)1;
    int ndim = -7;
    size_t shape[4];
    ndcl_status s = ndcl_npy_read(tmp_path("bad.npy"), &out, &ndim, shape);
    ck_assert_msg(s == NDCL_ERR_FORMAT, "%s: status %d", what, (int)s);
    ERR_HAS(NULL, expect);
    ck_assert_ptr_eq(out, (float *)(uintptr_t)1); /* outputs untouched */
    ck_assert_int_eq(ndim, -7);
}

/* The _ctx variants put their message where a caller holding a context
 * reads it, and clear an earlier one on success. */
START_TEST(npy_errors_on_context)
{
    ndcl_context *ctx = test_ctx();
    float *out = NULL;
    int ndim = 0;
    size_t shape[NDCL_MAX_DIMS];
    const char *missing = tmp_path("no/such/dir/x.npy");
    ck_assert_int_eq(ndcl_npy_read_ctx(ctx, missing, &out, &ndim, shape), NDCL_ERR_IO);
    ERR_HAS(ctx, missing);
    ck_assert_ptr_null(out);
    const char *p = tmp_path("ctx.npy");
    float f[8] = {0};
    make_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 4), }", f, 32);
    ck_assert_int_eq(ndcl_npy_read_ctx(ctx, p, &out, &ndim, shape), NDCL_ERR_FORMAT);
    ERR_HAS(ctx, "'<i4'");
    ERR_HAS(ctx, "ctx.npy");
    ck_assert_int_eq(ndcl_npy_write_ctx(ctx, missing, f, 1, (size_t[]){8}), NDCL_ERR_IO);
    ERR_HAS(ctx, missing);
    ck_assert_int_eq(ndcl_npy_write_ctx(ctx, p, NULL, 1, (size_t[]){8}),
                     NDCL_ERR_INVALID_ARG);
    ERR_HAS(ctx, "data is NULL");
    /* Success clears the context's message; NULL keeps the thread's slot. */
    ck_assert_int_eq(ndcl_npy_write_ctx(ctx, p, f, 2, (size_t[]){2, 4}), NDCL_SUCCESS);
    ck_assert_str_eq(ndcl_context_last_error(ctx), "");
    ck_assert_int_eq(ndcl_npy_read_ctx(ctx, p, &out, &ndim, shape), NDCL_SUCCESS);
    ck_assert_int_eq(ndim, 2);
    ndcl_free(out);
    ck_assert_int_eq(ndcl_npy_read_ctx(NULL, missing, &out, &ndim, shape), NDCL_ERR_IO);
    ERR_HAS(NULL, missing);
    ck_assert_str_eq(ndcl_context_last_error(ctx), "");
}
END_TEST

START_TEST(npy_rejections)
{
    const char *p = tmp_path("bad.npy");
    float f[8] = {0};
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", f, 7 * 4);
    npy_rejects("truncated", "truncated");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 4), }", f, 32);
    npy_rejects("fortran", "Fortran");
    make_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 4), }", f, 32);
    npy_rejects("dtype", "'<i4'");
    make_npy(p, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 4), }", f, 32);
    npy_rejects("big-endian", "'>f4'");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 2, 4), }",
             f, 32);
    npy_rejects("5 dims", "5 dimensions");
    make_npy(p, 1,
             "{'descr': '<f4', 'fortran_order': False, "
             "'shape': (4294967296, 4294967296, 4294967296), }",
             f, 32);
    npy_rejects("overflow", "overflow");
    make_npy(p, 1, "{'descr': '<f4', 'shape': (2, 4), }", f, 32);
    npy_rejects("missing key", "fortran_order");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), 'x': 1}", f,
             32);
    npy_rejects("extra key", "'x'");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", f, 32);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    b[0] = 'X';
    write_bytes(p, b, n);
    npy_rejects("magic", "magic");
    b[0] = 0x93;
    b[6] = 9;
    write_bytes(p, b, n);
    npy_rejects("version", "version 9");
    b[6] = 1;
    write_bytes(p, b, 40); /* cut inside the header */
    npy_rejects("cut header", "truncated");
    free(b);
    write_bytes(p, "", 0);
    npy_rejects("empty", "magic");

    float *out;
    int ndim;
    size_t shape[4];
    ck_assert_int_eq(ndcl_npy_read(tmp_path("missing.npy"), &out, &ndim, shape),
                     NDCL_ERR_IO);
    ERR_HAS(NULL, "missing.npy");
    ck_assert_int_eq(ndcl_npy_read(NULL, &out, &ndim, shape), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_npy_write(p, f, 5, (size_t[]){1, 1, 1, 1, 1}),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_npy_write(p, NULL, 1, (size_t[]){3}), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_npy_write(tmp_path("nodir/x.npy"), f, 1, (size_t[]){3}),
                     NDCL_ERR_IO);
    ERR_HAS(NULL, "nodir/x.npy");
}
END_TEST

/* ------------------------------------------------------------ safetensors */

/* A safetensors file from a header text and data; hlen_override replaces
 * the true header length when nonzero. */
static unsigned char *st_bytes(const char *json, const void *data, size_t n,
                               uint64_t hlen_override, size_t *size)
{
    size_t jl = strlen(json);
    unsigned char *b = malloc(8 + jl + n + 1);
    uint64_t h = hlen_override ? hlen_override : jl;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(h >> (8 * i));
    memcpy(b + 8, json, jl);
    if (n) memcpy(b + 8 + jl, data, n);
    *size = 8 + jl + n;
    return b;
}

/* Parses a crafted file and expects NDCL_ERR_FORMAT with expect in the message. */
static void st_rejects(const char *json, size_t ndata, uint64_t hlen, const char *expect)
{
    unsigned char data[256] = {0};
    size_t size;
    unsigned char *b = st_bytes(json, data, ndata, hlen, &size);
    ndcl_st_file f;
    memset(&f, 0x5a, sizeof f);
    ndcl_status s = ndcl_st_parse(NULL, b, size, &f);
    ck_assert_msg(s == NDCL_ERR_FORMAT, "%s: status %d", json, (int)s);
    ERR_HAS(NULL, expect);
    free(b);
}

START_TEST(st_parse_and_convert)
{
    /* Every accepted dtype, converted. */
    unsigned char data[64];
    size_t k = 0;
    float f32 = -1.25f;
    uint32_t u32;
    memcpy(&u32, &f32, 4);
    for (int i = 0; i < 4; i++)
        data[k++] = (unsigned char)(u32 >> (8 * i));
    double f64 = 3.5e-3;
    uint64_t u64;
    memcpy(&u64, &f64, 8);
    for (int i = 0; i < 8; i++)
        data[k++] = (unsigned char)(u64 >> (8 * i));
    const uint16_t halves[4] = {0x3c00 /* 1 */, 0xc100 /* -2.5 */, 0x0001 /* 2^-24 */,
                                0x7c00 /* inf */};
    for (int i = 0; i < 4; i++) {
        data[k++] = (unsigned char)(halves[i] & 0xff);
        data[k++] = (unsigned char)(halves[i] >> 8);
    }
    int64_t i64 = -5000000000LL;
    for (int i = 0; i < 8; i++)
        data[k++] = (unsigned char)((uint64_t)i64 >> (8 * i));
    int32_t i32 = -7;
    for (int i = 0; i < 4; i++)
        data[k++] = (unsigned char)((uint32_t)i32 >> (8 * i));
    ck_assert_uint_eq(k, 32);
    const char *json =
        "{\"__metadata__\":{\"a\":\"x\",\"b\":\"\\u00e9\"},"
        "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[4,12]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[12,20]},"
        "\"l\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[20,28]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[28,32]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[32,32]}}  ";
    size_t size;
    unsigned char *b = st_bytes(json, data, 32, 0, &size);
    ndcl_st_file f;
    ck_assert_int_eq(ndcl_st_parse(NULL, b, size, &f), NDCL_SUCCESS);
    ck_assert_int_eq(f.n_tensors, 6);
    ck_assert_str_eq(ndcl_st_meta(&f, "a"), "x");
    ck_assert_str_eq(ndcl_st_meta(&f, "b"), "\xc3\xa9");
    ck_assert_ptr_null(ndcl_st_meta(&f, "c"));
    float out[4];
    int64_t iv;
    ndcl_st_to_float(ndcl_st_find(&f, "f"), out);
    ck_assert(out[0] == -1.25f);
    ndcl_st_to_float(ndcl_st_find(&f, "d"), out);
    ck_assert(out[0] == (float)3.5e-3);
    ndcl_st_to_float(ndcl_st_find(&f, "h"), out);
    ck_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == ldexpf(1, -24) &&
              isinf(out[3]));
    ck_assert_int_eq(ndcl_st_to_int64(NULL, ndcl_st_find(&f, "l"), &iv), NDCL_SUCCESS);
    ck_assert(iv == -5000000000LL);
    ndcl_st_to_float(ndcl_st_find(&f, "l"), out);
    ck_assert(out[0] == -5e9f);
    ck_assert_int_eq(ndcl_st_to_int64(NULL, ndcl_st_find(&f, "i"), &iv), NDCL_SUCCESS);
    ck_assert(iv == -7);
    ck_assert_int_eq(ndcl_st_to_int64(NULL, ndcl_st_find(&f, "f"), &iv), NDCL_ERR_FORMAT);
    ck_assert_uint_eq(ndcl_st_find(&f, "z")->count, 0);
    ndcl_st_free(&f);
    free(b);

    /* Serialise: header padded with spaces to 8 bytes, data contiguous. */
    float w[3] = {1, 2, 3};
    int64_t c = 42;
    ndcl_st_out ts[2] = {
        {.name = "w", .dtype = NDCL_ST_F32, .ndim = 1, .shape = {3}, .data = w},
        {.name = "c\"q", .dtype = NDCL_ST_I64, .ndim = 0, .data = &c}};
    const char *keys[1] = {"k"}, *vals[1] = {"v"};
    unsigned char *out_b;
    size_t out_n;
    ck_assert_int_eq(ndcl_st_serialize(NULL, ts, 2, keys, vals, 1, &out_b, &out_n),
                     NDCL_SUCCESS);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | out_b[i];
    ck_assert_uint_eq(hl % 8, 0);
    ck_assert_uint_eq(out_n, 8 + hl + 12 + 8);
    ck_assert(out_b[8 + hl - 1] == ' ' || out_b[8 + hl - 1] == '}');
    ck_assert_int_eq(ndcl_st_parse(NULL, out_b, out_n, &f), NDCL_SUCCESS);
    ck_assert_str_eq(ndcl_st_meta(&f, "k"), "v");
    ndcl_st_to_float(ndcl_st_find(&f, "w"), out);
    ck_assert_mem_eq(out, w, sizeof w);
    ck_assert_int_eq(ndcl_st_to_int64(NULL, ndcl_st_find(&f, "c\"q"), &iv), NDCL_SUCCESS);
    ck_assert(iv == 42);
    ck_assert_ptr_eq(ndcl_st_find(&f, "w")->data, out_b + 8 + hl);
    ndcl_st_free(&f);
    free(out_b);
    ts[1].name = "w";
    ck_assert_int_eq(ndcl_st_serialize(NULL, ts, 2, NULL, NULL, 0, &out_b, &out_n),
                     NDCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(st_rejections)
{
#define ENTRY(name, dt, shape, b, e)                                                       \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e  \
    "]}"
    st_rejects("{" ENTRY("w", "BF16", "[2]", 0, 4) "}", 4, 0, "\"BF16\"");
    ERR_HAS(NULL, "tensor \"w\"");
    st_rejects("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}",
               12, 0, "overlap");
    st_rejects("{" ENTRY("a", "F32", "[4]", 0, 16) "}", 12, 0, "past the end");
    st_rejects("{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8, 0, "needs 12");
    st_rejects("{" ENTRY("a", "F32", "[2]", 4, 12) "}", 12, 0, "hole");
    st_rejects("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 12, 0, "not covered");
    st_rejects("{" ENTRY("a", "F32", "[2]", 8, 0) "}", 8, 0, "end before");
    st_rejects("{" ENTRY("a", "F32", "[-2]", 0, 8) "}", 8, 0, "shape[0]");
    st_rejects("{" ENTRY("a", "F32", "[2.5]", 0, 8) "}", 8, 0, "shape[0]");
    st_rejects("{" ENTRY("a", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}", 8, 0,
               "overflow");
    st_rejects("{" ENTRY("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, 0,
               "9 dimensions");
    st_rejects("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "missing \"dtype\"");
    st_rejects("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, 0,
               "missing \"shape\"");
    st_rejects("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0,
               "missing \"data_offsets\"");
    st_rejects("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, 0,
               "data_offsets");
    st_rejects("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
               "not a string");
    st_rejects("{\"a\":3}", 0, 0, "not a JSON object");
    st_rejects("[1,2,3]", 0, 0, "not an object");
    st_rejects("{\"a\":", 0, 0, "not valid JSON");
    st_rejects("{} x", 0, 0, "after its JSON");
    st_rejects("{\"__metadata__\":{\"k\":1}}", 0, 0, "not a string");
    st_rejects("{\"__metadata__\":[]}", 0, 0, "__metadata__");
    st_rejects("{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}", 8,
               0, "twice");
    st_rejects("{}", 0, 1000, "larger than the file");
    st_rejects("{}", 0, UINT64_MAX, "larger than the file");
    st_rejects("{}", 4, 0, "no tensor");
    ndcl_st_file f;
    ck_assert_int_eq(ndcl_st_parse(NULL, "\x02\0\0\0", 4, &f), NDCL_ERR_FORMAT);
    ERR_HAS(NULL, "too short");
    /* An absurd header length inside a file that is large enough. */
    size_t big = 100000000 + 64;
    unsigned char *b = calloc(big, 1);
    b[0] = 0x01; /* 100000001 = 0x05F5E101 */
    b[1] = 0xe1;
    b[2] = 0xf5;
    b[3] = 0x05;
    ck_assert_int_eq(ndcl_st_parse(NULL, b, big, &f), NDCL_ERR_FORMAT);
    ERR_HAS(NULL, "absurd");
    free(b);
#undef ENTRY
}
END_TEST

START_TEST(st_float_files)
{
    const char *p = tmp_path("grads.safetensors");
    float w[6] = {1, 2, 3, 4, 5, 6}, bias[2] = {-1, -2}, s = 9;
    const char *names[3] = {"weight", "bias", "scalar"};
    const float *data[3] = {w, bias, &s};
    int ndims[3] = {4, 1, 0};
    size_t shapes[3][NDCL_MAX_DIMS] = {{1, 2, 3, 1}, {2}, {0}};
    ck_assert_int_eq(ndcl_safetensors_write_floats(p, 3, names, data, ndims,
                                                   (const size_t(*)[NDCL_MAX_DIMS])shapes),
                     NDCL_SUCCESS);
    float *out;
    int nd;
    size_t sh[4];
    ck_assert_int_eq(ndcl_safetensors_read_float(p, "weight", &out, &nd, sh), NDCL_SUCCESS);
    ck_assert_int_eq(nd, 4);
    ck_assert_uint_eq(sh[1], 2);
    ck_assert_uint_eq(sh[2], 3);
    ck_assert_mem_eq(out, w, sizeof w);
    ndcl_free(out);
    ck_assert_int_eq(ndcl_safetensors_read_float(p, "scalar", &out, &nd, sh), NDCL_SUCCESS);
    ck_assert_int_eq(nd, 0);
    ck_assert(out[0] == 9);
    ndcl_free(out);
    ck_assert_int_eq(ndcl_safetensors_read_float(p, "nope", &out, &nd, sh),
                     NDCL_ERR_FORMAT);
    ERR_HAS(NULL, "\"nope\"");
    ERR_HAS(NULL, "weight, bias, scalar");
    ndims[0] = 5;
    ck_assert_int_eq(ndcl_safetensors_write_floats(p, 3, names, data, ndims,
                                                   (const size_t(*)[NDCL_MAX_DIMS])shapes),
                     NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(
        ndcl_safetensors_read_float(tmp_path("none.safetensors"), "w", &out, &nd, sh),
        NDCL_ERR_IO);
}
END_TEST

/* ------------------------------------------------------------ layers */

/* Fills every parameter with distinct random values (running_deconv too,
 * so that a swapped or transposed tensor would show). */
static void randomize(ndcl_layer *l, unsigned seed)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    const char *names[] = {"weight",         "bias",          "running_mean",
                           "running_deconv", "running_mean1", "running_mean2",
                           "running_var"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int nd;
        size_t sh[4], n = 1;
        if (ndcl_layer_param_shape(l, names[i], &nd, sh) != NDCL_SUCCESS) continue;
        for (int d = 0; d < nd; d++)
            n *= sh[d];
        float *v = malloc(n * sizeof(float));
        test_fill_uniform(v, n, seed + (unsigned)i, -1, 1);
        TEST_OK(ctx, ndcl_layer_set_param(l, names[i], v, n));
        free(v);
    }
}

/* Asserts two layers have the same kind, descriptor, parameters and counter. */
static void assert_same_layer(const ndcl_layer *a, const ndcl_layer *b)
{
    ndcl_context *ctx = ndcl_layer_context(a);
    ck_assert_int_eq(ndcl_layer_kind_of(a), ndcl_layer_kind_of(b));
    ck_assert_int_eq(ndcl_layer_block(a), ndcl_layer_block(b));
    if (ndcl_layer_kind_of(a) == NDCL_LAYER_CONV2D) {
        ndcl_conv2d_desc x, y;
        TEST_OK(ctx, ndcl_layer_conv2d_desc(a, &x));
        TEST_OK(ctx, ndcl_layer_conv2d_desc(b, &y));
        ck_assert_mem_eq(&x, &y, sizeof x);
    } else if (ndcl_layer_kind_of(a) == NDCL_LAYER_LINEAR) {
        ndcl_linear_desc x, y;
        TEST_OK(ctx, ndcl_layer_linear_desc(a, &x));
        TEST_OK(ctx, ndcl_layer_linear_desc(b, &y));
        ck_assert_mem_eq(&x, &y, sizeof x);
    } else {
        ndcl_channel_desc x, y;
        TEST_OK(ctx, ndcl_layer_channel_desc(a, &x));
        TEST_OK(ctx, ndcl_layer_channel_desc(b, &y));
        ck_assert_mem_eq(&x, &y, sizeof x);
    }
    const char *names[] = {"weight",         "bias",          "running_mean",
                           "running_deconv", "running_mean1", "running_mean2",
                           "running_var"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int na, nb;
        size_t sa[4], sb[4], n = 1;
        ndcl_status s = ndcl_layer_param_shape(a, names[i], &na, sa);
        ck_assert_int_eq(s, ndcl_layer_param_shape(b, names[i], &nb, sb));
        if (s != NDCL_SUCCESS) continue;
        ck_assert_int_eq(na, nb);
        ck_assert_mem_eq(sa, sb, sizeof(size_t) * (size_t)na);
        for (int d = 0; d < na; d++)
            n *= sa[d];
        float *va = malloc(n * sizeof(float)), *vb = malloc(n * sizeof(float));
        TEST_OK(ctx, ndcl_layer_get_param(a, names[i], va, n));
        TEST_OK(ctx, ndcl_layer_get_param(b, names[i], vb, n));
        ck_assert_msg(memcmp(va, vb, n * sizeof(float)) == 0, "%s differs", names[i]);
        free(va);
        free(vb);
    }
    if (ndcl_layer_kind_of(a) != NDCL_LAYER_LINEAR) {
        int64_t ca, cb;
        TEST_OK(ctx, ndcl_layer_get_counter(a, &ca));
        TEST_OK(ctx, ndcl_layer_get_counter(b, &cb));
        ck_assert(ca == cb);
    }
}

/* save_memory -> load_memory -> save_memory gives an equal layer and the
 * same bytes; and the same through a file. */
static void round_trip(ndcl_layer *l, const char *file)
{
    ndcl_context *ctx = ndcl_layer_context(l);
    void *b1, *b2;
    size_t n1, n2;
    ndcl_layer *m = NULL, *k = NULL;
    TEST_OK(ctx, ndcl_layer_save_memory(l, &b1, &n1));
    TEST_OK(ctx, ndcl_layer_load_memory(ctx, b1, n1, &m));
    assert_same_layer(l, m);
    TEST_OK(ctx, ndcl_layer_save_memory(m, &b2, &n2));
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(b1, b2, n1);
    const char *p = tmp_path(file);
    TEST_OK(ctx, ndcl_layer_save(m, p));
    TEST_OK(ctx, ndcl_layer_load(ctx, p, &k));
    assert_same_layer(l, k);
    size_t n3;
    unsigned char *b3 = read_bytes(p, &n3);
    ck_assert_uint_eq(n3, n1);
    ck_assert_mem_eq(b3, b1, n1);
    free(b3);
    ndcl_free(b1);
    ndcl_free(b2);
    ndcl_layer_destroy(m);
    ndcl_layer_destroy(k);
}

START_TEST(layer_round_trips)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l;

    ndcl_conv2d_desc c = ndcl_conv2d_desc_default(8, 6, 3);
    c.padding = 1;
    c.block = 4;
    c.eps = 1e-3f;
    c.momentum = 0.2f;
    c.freeze = 1;
    c.freeze_iter = 7;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &c, &l));
    randomize(l, 10);
    TEST_OK(ctx, ndcl_layer_set_counter(l, 13));
    round_trip(l, "conv_g1.safetensors");
    ndcl_layer_destroy(l);

    c = ndcl_conv2d_desc_default(8, 6, 3);
    c.groups = 2;
    c.bias = 0;
    c.stride = 2;
    c.dilation = 2;
    c.sampling_stride = 1;
    c.n_iter = 9;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &c, &l));
    randomize(l, 20);
    round_trip(l, "conv_g2.safetensors");
    ndcl_layer_destroy(l);

    /* groups 1 without bias, groups 2 with, a non-square kernel ("3,1"). */
    c = ndcl_conv2d_desc_default(4, 4, 3);
    c.kernel_w = 1;
    c.bias = 0;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &c, &l));
    randomize(l, 25);
    round_trip(l, "conv_g1_nobias.safetensors");
    ndcl_layer_destroy(l);
    c = ndcl_conv2d_desc_default(6, 4, 1);
    c.groups = 2;
    TEST_OK(ctx, ndcl_conv2d_create(ctx, &c, &l));
    randomize(l, 27);
    TEST_OK(ctx, ndcl_layer_set_counter(l, 1));
    round_trip(l, "conv_g2_bias.safetensors");
    ndcl_layer_destroy(l);

    ndcl_linear_desc li = ndcl_linear_desc_default(12, 5);
    li.block = 8; /* clamped to gcd 4; saved as given */
    TEST_OK(ctx, ndcl_linear_create(ctx, &li, &l));
    randomize(l, 30);
    round_trip(l, "linear.safetensors");
    ndcl_layer_destroy(l);
    li.bias = 0;
    TEST_OK(ctx, ndcl_linear_create(ctx, &li, &l));
    randomize(l, 35);
    round_trip(l, "linear_nobias.safetensors");
    ndcl_layer_destroy(l);

    ndcl_channel_desc ch = ndcl_channel_desc_default(3);
    ch.eps = 0.05f;
    TEST_OK(ctx, ndcl_channel_create(ctx, &ch, &l));
    randomize(l, 40);
    TEST_OK(ctx, ndcl_layer_set_counter(l, 5));
    round_trip(l, "channel.safetensors");

    /* The descriptor really is in the metadata, floats to 9 digits. */
    void *b;
    size_t n;
    ndcl_st_file f;
    TEST_OK(ctx, ndcl_layer_save_memory(l, &b, &n));
    ck_assert_int_eq(ndcl_st_parse(NULL, b, n, &f), NDCL_SUCCESS);
    ck_assert_str_eq(ndcl_st_meta(&f, "kind"), "channel");
    ck_assert_str_eq(ndcl_st_meta(&f, "block"), "3");
    ck_assert_str_eq(ndcl_st_meta(&f, "eps"), "0.05"); /* shortest exact form */
    ck_assert_str_eq(ndcl_st_meta(&f, "momentum"), "0.1");
    const ndcl_st_tensor *t = ndcl_st_find(&f, "num_batches_tracked");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, NDCL_ST_I64);
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(ndcl_st_find(&f, "running_var")->dtype, NDCL_ST_F32);
    ndcl_st_free(&f);
    ndcl_free(b);
    ndcl_layer_destroy(l);
}
END_TEST

/* A raw tensor for hand-made layer files. */
typedef struct raw {
    const char *name, *dtype, *shape;
    const void *bytes;
    size_t n;
} raw;

/* A layer file with the given metadata members (JSON text) and tensors. */
static unsigned char *layer_bytes(const char *meta, const raw *ts, int n, size_t *size)
{
    char json[4096];
    size_t used = (size_t)snprintf(json, sizeof json, "{\"__metadata__\":{%s}", meta),
           off = 0;
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(json + used, sizeof json - used,
                                 ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,"
                                 "\"data_offsets\":[%zu,%zu]}",
                                 ts[i].name, ts[i].dtype, ts[i].shape, off, off + ts[i].n);
        off += ts[i].n;
    }
    snprintf(json + used, sizeof json - used, "}");
    unsigned char *data = malloc(off + 1);
    off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(data + off, ts[i].bytes, ts[i].n);
        off += ts[i].n;
    }
    unsigned char *b = st_bytes(json, data, off, 0, size);
    free(data);
    return b;
}

static void le_f64(unsigned char *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static void le_f32(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

#define LIN_META                                                                           \
    "\"kind\":\"linear\",\"in_features\":\"4\",\"out_features\":\"2\",\"block\":\"4\""

START_TEST(layer_conversions)
{
    ndcl_context *ctx = test_ctx();
    /* A linear layer whose tensors use every dtype. */
    unsigned char w[8 * 8], bias[2 * 2], mean[4 * 4], dec[16 * 8];
    for (int i = 0; i < 8; i++)
        le_f64(w + 8 * i, 0.25 * i - 1);
    bias[0] = 0x00, bias[1] = 0x3c; /* 1.0 */
    bias[2] = 0x00, bias[3] = 0xc0; /* -2.0 */
    for (int i = 0; i < 4; i++) {
        uint32_t v = (uint32_t)(i - 2);
        for (int k = 0; k < 4; k++)
            mean[4 * i + k] = (unsigned char)(v >> (8 * k));
    }
    for (int i = 0; i < 16; i++) {
        uint64_t v = (uint64_t)(int64_t)(i % 5 == 0 ? 1 : 0);
        for (int k = 0; k < 8; k++)
            dec[8 * i + k] = (unsigned char)(v >> (8 * k));
    }
    raw ts[4] = {{"weight", "F64", "[2,4]", w, sizeof w},
                 {"bias", "F16", "[2]", bias, sizeof bias},
                 {"running_mean", "I32", "[4,1]", mean, sizeof mean}, /* extra 1-dim */
                 {"running_deconv", "I64", "[1,4,4]", dec, sizeof dec}};
    size_t n;
    unsigned char *b = layer_bytes(LIN_META ",\"bias\":\"True\",\"eps\":\"1e-3\","
                                            "\"n_iter\":\" 6 \",\"format\":\"pt\"",
                                   ts, 4, &n);
    ndcl_layer *l = NULL;
    TEST_OK(ctx, ndcl_layer_load_memory(ctx, b, n, &l));
    free(b);
    float v[16];
    TEST_OK(ctx, ndcl_layer_get_param(l, "weight", v, 8));
    for (int i = 0; i < 8; i++)
        ck_assert(v[i] == 0.25f * (float)i - 1);
    TEST_OK(ctx, ndcl_layer_get_param(l, "bias", v, 2));
    ck_assert(v[0] == 1 && v[1] == -2);
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_mean", v, 4));
    for (int i = 0; i < 4; i++)
        ck_assert(v[i] == (float)(i - 2));
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_deconv", v, 16));
    for (int i = 0; i < 16; i++)
        ck_assert(v[i] == (i % 5 == 0 ? 1.0f : 0.0f));
    ndcl_linear_desc d;
    TEST_OK(ctx, ndcl_layer_linear_desc(l, &d));
    ck_assert(d.eps == 1e-3f);
    ck_assert_int_eq(d.n_iter, 6);
    ck_assert(d.momentum == 0.1f); /* default */
    ck_assert_int_eq(d.bias, 1);
    ndcl_layer_destroy(l);

    /* Channel: running_mean1 [B] for [B, 1], running_var [] for [1, 1],
     * the counter as I64 [1]; conv: kernel "(3, 1)"-style pairs and an I32
     * counter of shape []. */
    unsigned char m1[12], dd[36], m2[4], var[4], nb[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 3; i++)
        le_f32(m1 + 4 * i, (float)i);
    for (int i = 0; i < 9; i++)
        le_f32(dd + 4 * i, i % 4 == 0 ? 1.0f : 0.0f);
    le_f32(m2, 0.5f);
    le_f32(var, 2.0f);
    raw cts[5] = {{"running_mean1", "F32", "[3]", m1, 12},
                  {"running_deconv", "F32", "[3,3]", dd, 36},
                  {"running_mean2", "F32", "[1]", m2, 4},
                  {"running_var", "F32", "[]", var, 4},
                  {"num_batches_tracked", "I64", "[1]", nb, 8}};
    b = layer_bytes("\"kind\":\"channel\",\"block\":\"3\"", cts, 5, &n);
    TEST_OK(ctx, ndcl_layer_load_memory(ctx, b, n, &l));
    free(b);
    int64_t cnt;
    TEST_OK(ctx, ndcl_layer_get_counter(l, &cnt));
    ck_assert(cnt == 3);
    TEST_OK(ctx, ndcl_layer_get_param(l, "running_var", v, 1));
    ck_assert(v[0] == 2.0f);
    ndcl_channel_desc cd;
    TEST_OK(ctx, ndcl_layer_channel_desc(l, &cd));
    ck_assert(cd.eps == 1e-2f && cd.sampling_stride == 3);
    ndcl_layer_destroy(l);

    static float cw[2 * 1 * 3 * 3], crm[9], crd[81];
    for (int i = 0; i < 9; i++)
        crd[10 * i] = 1;
    unsigned char c32[4] = {9, 0, 0, 0};
    raw vts[4] = {{"weight", "F32", "[2,1,3,3]", cw, sizeof cw},
                  {"running_mean", "F32", "[9]", crm, sizeof crm},
                  {"running_deconv", "F32", "[9,9]", crd, sizeof crd},
                  {"counter", "I32", "[]", c32, 4}};
    const char *kernels[] = {"[3, 3]", "(3, 3)", "3,3", " 3 "};
    for (int k = 0; k < 4; k++) {
        char meta[512];
        snprintf(meta, sizeof meta,
                 "\"kind\":\"conv2d\",\"in_channels\":\"1\",\"out_channels\":\"2\","
                 "\"kernel_size\":\"%s\",\"bias\":\"0\",\"stride\":\"(2, 2)\","
                 "\"freeze\":\"True\",\"momentum\":\"0x1p-3\"",
                 kernels[k]);
        b = layer_bytes(meta, vts, 4, &n);
        TEST_OK(ctx, ndcl_layer_load_memory(ctx, b, n, &l));
        free(b);
        ndcl_conv2d_desc cv;
        TEST_OK(ctx, ndcl_layer_conv2d_desc(l, &cv));
        ck_assert_int_eq(cv.kernel_h, 3);
        ck_assert_int_eq(cv.kernel_w, 3);
        ck_assert_int_eq(cv.stride, 2);
        ck_assert_int_eq(cv.bias, 0);
        ck_assert_int_eq(cv.freeze, 1);
        ck_assert(cv.momentum == 0.125f);
        ck_assert_int_eq(cv.block, 64);
        TEST_OK(ctx, ndcl_layer_get_counter(l, &cnt));
        ck_assert(cnt == 9);
        ndcl_layer_destroy(l);
    }
}
END_TEST

/* Expects loading to fail with status and a message containing expect. */
static void load_rejects(const void *b, size_t n, ndcl_status want, const char *expect)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l = (ndcl_layer *)(uintptr_t)1;
    ndcl_status s = ndcl_layer_load_memory(ctx, b, n, &l);
    ck_assert_msg(s == want, "status %d (%s), want %d; message: %s", (int)s,
                  ndcl_status_string(s), (int)want, ndcl_context_last_error(ctx));
    ck_assert_ptr_eq(l, (ndcl_layer *)(uintptr_t)1);
    ERR_HAS(ctx, expect);
}

START_TEST(layer_rejections)
{
    ndcl_context *ctx = test_ctx();
    unsigned char w[32] = {0}, bias[8] = {0}, mean[16] = {0}, dec[64] = {0};
    raw ts[4] = {{"weight", "F32", "[2,4]", w, 32},
                 {"bias", "F32", "[2]", bias, 8},
                 {"running_mean", "F32", "[4]", mean, 16},
                 {"running_deconv", "F32", "[4,4]", dec, 64}};
    size_t n;
    unsigned char *b = layer_bytes(LIN_META, ts, 4, &n);
    ndcl_layer *l;
    TEST_OK(ctx, ndcl_layer_load_memory(ctx, b, n, &l)); /* the baseline is fine */
    ndcl_layer_destroy(l);
    free(b);

#define REJECT(meta, tsv, nt, status, msg)                                                 \
    do {                                                                                   \
        unsigned char *b_ = layer_bytes(meta, tsv, nt, &n);                                \
        load_rejects(b_, n, status, msg);                                                  \
        free(b_);                                                                          \
    } while (0)

    raw t2[5];
    memcpy(t2, ts, sizeof ts);
    t2[0].dtype = "BF16";
    t2[0].shape = "[2,8]";
    REJECT(LIN_META, t2, 4, NDCL_ERR_FORMAT, "dtype \"BF16\"");
    memcpy(t2, ts, sizeof ts);
    t2[3].shape = "[2,2]";
    t2[3].n = 16;
    REJECT(LIN_META, t2, 4, NDCL_ERR_FORMAT, "tensor \"running_deconv\" has shape [2, 2]");
    ERR_HAS(ctx, "expects [4, 4]");
    memcpy(t2, ts, sizeof ts);
    t2[0].shape = "[4,2]"; /* right count, wrong shape */
    REJECT(LIN_META, t2, 4, NDCL_ERR_FORMAT, "\"weight\" has shape [4, 2]");
    REJECT(LIN_META, ts, 3, NDCL_ERR_FORMAT, "\"running_deconv\" is missing");
    REJECT(LIN_META ",\"bias\":\"false\"", ts, 4, NDCL_ERR_FORMAT, "bias=false");
    memcpy(t2, ts, sizeof ts);
    t2[4] = (raw){"extra", "F32", "[1]", w, 4};
    REJECT(LIN_META, t2, 5, NDCL_ERR_FORMAT, "\"extra\" is not part of a linear layer");
    t2[4] = (raw){"counter", "I64", "[1]", w, 8};
    REJECT(LIN_META, t2, 5, NDCL_ERR_FORMAT, "\"counter\"");
    REJECT(LIN_META ",\"eps\":\"abc\"", ts, 4, NDCL_ERR_FORMAT, "\"eps\" = \"abc\"");
    REJECT(LIN_META ",\"eps\":\"1e400\"", ts, 4, NDCL_ERR_FORMAT, "\"eps\" = \"1e400\"");
    REJECT(LIN_META ",\"bias\":\"maybe\"", ts, 4, NDCL_ERR_FORMAT, "\"bias\" = \"maybe\"");
    REJECT(LIN_META ",\"n_iter\":\"5x\"", ts, 4, NDCL_ERR_FORMAT, "\"n_iter\" = \"5x\"");
    REJECT(LIN_META ",\"n_iter\":\"99999999999\"", ts, 4, NDCL_ERR_FORMAT, "n_iter");
    REJECT(LIN_META ",\"eps\":\"-1\"", ts, 4, NDCL_ERR_FORMAT, "eps=-1");
    REJECT("\"kind\":\"linear\",\"out_features\":\"2\"", ts, 4, NDCL_ERR_FORMAT,
           "\"in_features\" is missing");
    REJECT("\"in_features\":\"4\"", ts, 4, NDCL_ERR_FORMAT, "\"kind\" is missing");
    REJECT("\"kind\":\"conv3d\"", ts, 4, NDCL_ERR_FORMAT, "\"kind\" = \"conv3d\"");
    REJECT("\"kind\":\"conv2d\",\"in_channels\":\"4\",\"out_channels\":\"2\","
           "\"kernel_size\":\"3,3,3\"",
           ts, 4, NDCL_ERR_FORMAT, "kernel_size");
    REJECT("\"kind\":\"conv2d\",\"in_channels\":\"4\",\"out_channels\":\"2\","
           "\"kernel_size\":\"1\",\"padding\":\"(1, 2)\"",
           ts, 4, NDCL_ERR_FORMAT, "both axes");
    /* A channel file must say how many batches it has seen. */
    unsigned char one[4];
    le_f32(one, 1);
    raw cts[4] = {{"running_mean1", "F32", "[1,1]", one, 4},
                  {"running_deconv", "F32", "[1,1]", one, 4},
                  {"running_mean2", "F32", "[1,1]", one, 4},
                  {"running_var", "F32", "[1,1]", one, 4}};
    REJECT("\"kind\":\"channel\",\"block\":\"1\"", cts, 4, NDCL_ERR_FORMAT,
           "\"num_batches_tracked\" is missing");
    /* Counters: one integer, not negative. */
    raw cts2[5];
    memcpy(cts2, cts, sizeof cts);
    unsigned char neg[8];
    for (int i = 0; i < 8; i++)
        neg[i] = 0xff;
    cts2[4] = (raw){"num_batches_tracked", "I64", "[1]", neg, 8};
    REJECT("\"kind\":\"channel\",\"block\":\"1\"", cts2, 5, NDCL_ERR_FORMAT,
           "num_batches_tracked");
    unsigned char two[16] = {0};
    cts2[4] = (raw){"num_batches_tracked", "I64", "[2]", two, 16};
    REJECT("\"kind\":\"channel\",\"block\":\"1\"", cts2, 5, NDCL_ERR_FORMAT, "one integer");
    cts2[4] = (raw){"num_batches_tracked", "F32", "[]", "\0\0\xc0\x3f", 4}; /* 1.5 */
    REJECT("\"kind\":\"channel\",\"block\":\"1\"", cts2, 5, NDCL_ERR_FORMAT,
           "not an integer");
#undef REJECT

    /* Container damage on a real saved file. */
    ndcl_linear_desc ld = ndcl_linear_desc_default(4, 2);
    TEST_OK(ctx, ndcl_linear_create(ctx, &ld, &l));
    void *good;
    size_t gn;
    TEST_OK(ctx, ndcl_layer_save_memory(l, &good, &gn));
    ndcl_layer_destroy(l);
    load_rejects(good, gn - 1, NDCL_ERR_FORMAT, "past the end");     /* truncated */
    load_rejects(good, 20, NDCL_ERR_FORMAT, "larger than the file"); /* cut in header */
    load_rejects(good, 5, NDCL_ERR_FORMAT, "too short");
    unsigned char *bad = malloc(gn);
    memcpy(bad, good, gn);
    bad[7] = 0x40; /* header length 2^62 */
    load_rejects(bad, gn, NDCL_ERR_FORMAT, "larger than the file");
    memcpy(bad, good, gn);
    char *off = strstr((char *)bad + 8, "\"data_offsets\":[32,40]");
    ck_assert_ptr_nonnull(off); /* bias follows weight: make them overlap */
    memcpy(off, "\"data_offsets\":[28,36]", 22);
    load_rejects(bad, gn, NDCL_ERR_FORMAT, "overlap tensor \"weight\"");
    memcpy(bad, good, gn);
    char *dt = strstr((char *)bad + 8, "\"F32\"");
    memcpy(dt, "\"U8\" ", 5);
    load_rejects(bad, gn, NDCL_ERR_FORMAT, "dtype \"U8\" is not supported");
    free(bad);

    /* From a file: the path is named; a missing file is an I/O error. */
    const char *p = tmp_path("trunc.safetensors");
    write_bytes(p, good, gn - 3);
    ck_assert_int_eq(ndcl_layer_load(ctx, p, &l), NDCL_ERR_FORMAT);
    ERR_HAS(ctx, "trunc.safetensors: ");
    ck_assert_int_eq(ndcl_layer_load(ctx, tmp_path("nothing.safetensors"), &l),
                     NDCL_ERR_IO);
    ERR_HAS(ctx, "nothing.safetensors");
    ck_assert_int_eq(ndcl_layer_load(NULL, p, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_load_memory(ctx, NULL, 0, &l), NDCL_ERR_INVALID_ARG);
    ck_assert_int_eq(ndcl_layer_save(NULL, p), NDCL_ERR_INVALID_ARG);
    ndcl_free(good);
}
END_TEST

START_TEST(save_is_atomic)
{
    ndcl_context *ctx = test_ctx();
    ndcl_layer *l;
    ndcl_linear_desc d = ndcl_linear_desc_default(6, 3);
    TEST_OK(ctx, ndcl_linear_create(ctx, &d, &l));
    randomize(l, 50);

    /* A directory that does not exist: an I/O error, nothing created. */
    ck_assert_int_eq(ndcl_layer_save(l, tmp_path("absent/l.safetensors")), NDCL_ERR_IO);
    ERR_HAS(ctx, "absent/l.safetensors");
    struct stat st;
    ck_assert_int_ne(stat(tmp_path("absent"), &st), 0);

    /* A failed write (the short-write test hook) leaves the previous file
     * byte-identical and no temporary file behind. */
    char sub[512];
    snprintf(sub, sizeof sub, "%s", tmp_path("atomic"));
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    char p[600];
    snprintf(p, sizeof p, "%s/l.safetensors", sub);
    TEST_OK(ctx, ndcl_layer_save(l, p));
    size_t n0;
    unsigned char *before = read_bytes(p, &n0);
    randomize(l, 51);
    setenv("NDCL_TEST_SHORT_WRITE", "1", 1);
    ck_assert_int_eq(ndcl_layer_save(l, p), NDCL_ERR_IO);
    ERR_HAS(ctx, "NDCL_TEST_SHORT_WRITE");
    ck_assert_int_eq(ndcl_npy_write(p, (float[]){1}, 1, (size_t[]){1}), NDCL_ERR_IO);
    unsetenv("NDCL_TEST_SHORT_WRITE");
    size_t n1;
    unsigned char *after = read_bytes(p, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_mem_eq(before, after, n0);
    ck_assert_int_eq(count_entries(sub), 1);
    free(after);

    /* And a successful save replaces it, keeping its permissions. */
    ck_assert_int_eq(chmod(p, 0640), 0);
    TEST_OK(ctx, ndcl_layer_save(l, p));
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    after = read_bytes(p, &n1);
    ck_assert(n0 != n1 || memcmp(before, after, n0) != 0);
    ck_assert_int_eq(count_entries(sub), 1);
    free(before);
    free(after);
    ndcl_layer_destroy(l);
}
END_TEST

/* ------------------------------------------------------------ golden data */

START_TEST(golden_files_load)
{
    const char *dir = getenv("NDCL_TEST_DATA");
    char pat[1024];
    if (!dir) {
        fprintf(stderr, "NDCL_TEST_DATA not set: golden files skipped\n");
        return;
    }
    snprintf(pat, sizeof pat, "%s/conv_g1/layer.safetensors", dir);
    if (access(pat, R_OK) != 0) {
        fprintf(stderr, "%s absent: golden files skipped\n", pat);
        return;
    }
    ndcl_context *ctx = test_ctx();
    int layers = 0, npys = 0, grads = 0;
    const char *pats[] = {"%s/*/layer.safetensors", "%s/*/state_train*.safetensors"};
    for (int k = 0; k < 2; k++) {
        glob_t g;
        snprintf(pat, sizeof pat, pats[k], dir);
        ck_assert_int_eq(glob(pat, 0, NULL, &g), 0);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            ndcl_layer *l = NULL;
            TEST_OK(ctx, ndcl_layer_load(ctx, g.gl_pathv[i], &l));
            /* Saving and loading again keeps everything. */
            void *b;
            size_t n;
            ndcl_layer *m = NULL;
            TEST_OK(ctx, ndcl_layer_save_memory(l, &b, &n));
            TEST_OK(ctx, ndcl_layer_load_memory(ctx, b, n, &m));
            assert_same_layer(l, m);
            ndcl_free(b);
            ndcl_layer_destroy(m);
            ndcl_layer_destroy(l);
            layers++;
        }
        globfree(&g);
    }
    glob_t g;
    snprintf(pat, sizeof pat, "%s/*/*.npy", dir);
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            float *x;
            int nd;
            size_t sh[4];
            ck_assert_msg(ndcl_npy_read(g.gl_pathv[i], &x, &nd, sh) == NDCL_SUCCESS, "%s",
                          ndcl_context_last_error(NULL));
            ndcl_free(x);
            npys++;
        }
        globfree(&g);
    }
    snprintf(pat, sizeof pat, "%s/*/grads*.safetensors", dir);
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            float *x;
            int nd;
            size_t sh[4];
            ck_assert_msg(ndcl_safetensors_read_float(g.gl_pathv[i], "weight", &x, &nd,
                                                      sh) == NDCL_SUCCESS,
                          "%s", ndcl_context_last_error(NULL));
            ndcl_free(x);
            grads++;
        }
        globfree(&g);
    }
    ck_assert_int_gt(layers, 0);
    fprintf(stderr, "golden: %d layer files, %d npy files, %d gradient files\n", layers,
            npys, grads);
}
END_TEST

/* Removes the scratch directory and what the tests left in it. */
static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
    }
    remove(path);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ndcl_io_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("io");
    TCase *files = tcase_create("formats");
    tcase_add_test(files, npy_round_trip);
    tcase_add_test(files, npy_versions_and_f8);
    tcase_add_test(files, npy_rejections);
    tcase_add_test(files, npy_errors_on_context);
    tcase_add_test(files, st_parse_and_convert);
    tcase_add_test(files, st_rejections);
    tcase_add_test(files, st_float_files);
    suite_add_tcase(s, files);
    TCase *layers = tcase_create("layers");
    tcase_set_timeout(layers, 300);
    tcase_add_test(layers, layer_round_trips);
    tcase_add_test(layers, layer_conversions);
    tcase_add_test(layers, layer_rejections);
    tcase_add_test(layers, save_is_atomic);
    tcase_add_test(layers, golden_files_load);
    suite_add_tcase(s, layers);
    int rc = test_run(s);
    rm_tree(tmpdir);
    return rc;
}
