/* test_bounded_reads.c - no input is read without a bound (suite
 * reliability): .npy, safetensors and layer files are regular files only
 * (a FIFO is refused without blocking, /dev/zero without growing), their
 * magic and header are checked against the file's size before the body is
 * read (a sparse 4 GiB file with a bad header costs no memory: the cases run
 * under a 1 GiB address-space limit), a FIFO in the kernel cache is skipped
 * and replaced, and a layer file's tensor shapes are checked before the
 * layer is allocated (a 20000x20000 linear layer with a tiny weight, under
 * PoCL's 1 GiB memory limit). NDCL_TEST_DATA has the golden data, NDCL_RUN
 * the tool. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ndcl.h"
#include "formats/safetensors.h"

static char tmp_root[] = "/tmp/ndcl-bounded-XXXXXX";
static const char *data_dir;

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmp_root, name);
}

/* An address-space limit for the rest of this test (each test runs in its
 * own process): reading a 4 GiB file whole would fail, not swap. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void limit_memory(void)
{
#ifdef UNDER_ASAN
    /* AddressSanitizer's shadow memory needs terabytes of address space:
     * the limit is the plain build's (the checks stay). */
    return;
#else
    struct rlimit r = {(rlim_t)1 << 30, (rlim_t)1 << 30};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &r), 0);
#endif
}

/* A sparse file of 4 GiB starting with head (n bytes). */
static void sparse_file(const char *path, const void *head, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, head, n), (ssize_t)n);
    ck_assert_int_eq(ftruncate(fd, (off_t)1 << 32), 0);
    close(fd);
}

static void expect(ndcl_status got, ndcl_status want, const char *what, const char *w1,
                   const char *w2)
{
    const char *e = ndcl_context_last_error(NULL);
    ck_assert_msg(got == want, "%s: %s (want %s): %s", what, ndcl_status_string(got),
                  ndcl_status_string(want), e);
    ck_assert_msg(!w1 || strstr(e, w1), "%s: no \"%s\" in: %s", what, w1, e);
    ck_assert_msg(!w2 || strstr(e, w2), "%s: no \"%s\" in: %s", what, w2, e);
}

START_TEST(npy_not_regular)
{
    limit_memory();
    float *data = NULL;
    int nd;
    size_t shape[NDCL_MAX_DIMS];
    /* /dev/zero has no end: refused at once, never read until memory ends. */
    expect(ndcl_npy_read("/dev/zero", &data, &nd, shape), NDCL_ERR_IO, "/dev/zero",
           "/dev/zero", "character device");
    char p[512];
    path_in(p, sizeof p, "fifo.npy");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    /* No writer: an open without O_NONBLOCK would wait for ever. */
    expect(ndcl_npy_read(p, &data, &nd, shape), NDCL_ERR_IO, "a FIFO", "fifo.npy", "FIFO");
    expect(ndcl_npy_read(tmp_root, &data, &nd, shape), NDCL_ERR_IO, "a directory", tmp_root,
           "directory");
    ck_assert_ptr_null(data);
}
END_TEST

/* The header against the file's size before the body: a 4 GiB file
 * declaring 4 floats, or without the magic, is refused having read its
 * head only. */
START_TEST(npy_header_first)
{
    limit_memory();
    static const char hdr[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': "
                              "False, 'shape': (4,), }";
    char head[128];
    memset(head, ' ', sizeof head);
    memcpy(head, hdr, sizeof hdr - 1);
    head[127] = '\n';
    char p[512];
    path_in(p, sizeof p, "huge.npy");
    sparse_file(p, head, sizeof head);
    float *data = NULL;
    int nd;
    size_t shape[NDCL_MAX_DIMS];
    expect(ndcl_npy_read(p, &data, &nd, shape), NDCL_ERR_FORMAT, "4 GiB after 4 floats",
           "huge.npy", "needs 16 bytes");
    path_in(p, sizeof p, "nomagic.npy");
    sparse_file(p, "not numpy", 9);
    expect(ndcl_npy_read(p, &data, &nd, shape), NDCL_ERR_FORMAT, "no magic", "nomagic.npy",
           "bad magic");
    ck_assert_ptr_null(data);
}
END_TEST

START_TEST(safetensors_header_first)
{
    limit_memory();
    char p[512];
    /* A header length within the file but not a JSON object. */
    unsigned char head[24] = {16, 0, 0, 0, 0, 0, 0, 0};
    memcpy(head + 8, "[not an object!]", 16);
    path_in(p, sizeof p, "huge.safetensors");
    sparse_file(p, head, sizeof head);
    ndcl_st_file f;
    expect(ndcl_st_read(NULL, p, &f), NDCL_ERR_FORMAT, "4 GiB safetensors",
           "huge.safetensors", "not a JSON object");
    /* A header length beyond the file. */
    unsigned char big[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    path_in(p, sizeof p, "long.safetensors");
    sparse_file(p, big, sizeof big);
    expect(ndcl_st_read(NULL, p, &f), NDCL_ERR_FORMAT, "header past the end",
           "long.safetensors", "larger than the file");
    path_in(p, sizeof p, "fifo.safetensors");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    expect(ndcl_st_read(NULL, p, &f), NDCL_ERR_IO, "a FIFO", "fifo.safetensors", "FIFO");
}
END_TEST

START_TEST(layer_not_regular)
{
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_SUCCESS);
    char p[512];
    path_in(p, sizeof p, "fifo-layer.safetensors");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ndcl_layer *l = NULL;
    ndcl_status s = ndcl_layer_load(ctx, p, &l);
    ck_assert_msg(s == NDCL_ERR_IO && strstr(ndcl_context_last_error(ctx), "FIFO"),
                  "%s: %s", ndcl_status_string(s), ndcl_context_last_error(ctx));
    s = ndcl_layer_load(ctx, "/dev/zero", &l);
    ck_assert_msg(s == NDCL_ERR_IO &&
                      strstr(ndcl_context_last_error(ctx), "character device"),
                  "%s: %s", ndcl_status_string(s), ndcl_context_last_error(ctx));
    ck_assert_ptr_null(l);
    ndcl_context_destroy(ctx);
}
END_TEST

/* tests/data/linear/layer.safetensors with its metadata declaring a
 * 20000x20000 layer: 812 bytes whose weight is 5x12. */
static void big_linear(const char *out)
{
    char in[512];
    snprintf(in, sizeof in, "%s/linear/layer.safetensors", data_dir);
    FILE *f = fopen(in, "rb");
    ck_assert_ptr_nonnull(f);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    ck_assert(hlen + 8 <= n);
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, hlen);
    ck_assert_ptr_nonnull(h);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    cJSON_ReplaceItemInObjectCaseSensitive(meta, "in_features",
                                           cJSON_CreateString("20000"));
    cJSON_ReplaceItemInObjectCaseSensitive(meta, "out_features",
                                           cJSON_CreateString("20000"));
    char *text = cJSON_PrintUnformatted(h);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(padded >> (8 * i));
    f = fopen(out, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(len, 1, 8, f);
    fwrite(text, 1, tl, f);
    for (size_t i = tl; i < padded; i++)
        fputc(' ', f);
    fwrite(buf + 8 + hlen, 1, n - 8 - hlen, f);
    ck_assert_int_eq(fclose(f), 0);
    free(text);
    cJSON_Delete(h);
}

/* With PoCL's memory limited to 1 GiB the layer's 1.6 GB weight cannot be
 * allocated: a loader that allocates before it compares shapes reports
 * that; one that compares first reports the weight's shape. */
START_TEST(shapes_before_allocation)
{
    setenv("POCL_MEMORY_LIMIT", "1", 1);
    char p[512];
    path_in(p, sizeof p, "big-linear.safetensors");
    big_linear(p);
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_SUCCESS);
    ndcl_device_info info;
    ck_assert_int_eq(ndcl_context_device(ctx, &info), NDCL_SUCCESS);
    ck_assert_msg(info.max_alloc_bytes < 1600000000ull,
                  "POCL_MEMORY_LIMIT had no effect (largest allocation %llu)",
                  (unsigned long long)info.max_alloc_bytes);
    ndcl_layer *l = NULL;
    ndcl_status s = ndcl_layer_load(ctx, p, &l);
    const char *e = ndcl_context_last_error(ctx);
    ck_assert_msg(s == NDCL_ERR_FORMAT && strstr(e, "\"weight\"") &&
                      strstr(e, "[20000, 20000]"),
                  "%s: %s", ndcl_status_string(s), e);
    ck_assert_ptr_null(l);
    ndcl_context_destroy(ctx);
}
END_TEST

/* The same through ndcl-run: exit 2 naming the weight, and the process
 * never grew near the 1.6 GB the declared weight takes. */
START_TEST(shapes_before_allocation_tool)
{
    char p[512], e[512];
    path_in(p, sizeof p, "big-linear-tool.safetensors");
    big_linear(p);
    path_in(e, sizeof e, "big-linear.err");
    char x[512];
    snprintf(x, sizeof x, "%s/linear/x1.npy", data_dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen(e, "w", stderr)) _exit(126);
        execl(getenv("NDCL_RUN"), "ndcl-run", p, "-i", x, (char *)NULL);
        _exit(127);
    }
    int st;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
    FILE *f = fopen(e, "r");
    char msg[2048] = "";
    if (f) {
        size_t n = fread(msg, 1, sizeof msg - 1, f);
        msg[n] = 0;
        fclose(f);
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x: %s", st, msg);
    ck_assert_msg(strstr(msg, "\"weight\"") && strstr(msg, "[20000, 20000]"), "%s", msg);
#ifndef UNDER_ASAN /* whose shadow memory and quarantine swell the RSS */
    ck_assert_msg(ru.ru_maxrss < 1000 * 1024, "ndcl-run peaked at %ld KB", ru.ru_maxrss);
#endif
}
END_TEST

/* The name of the one cache entry in dir (an entry is HASH.bin). */
static void cache_entry(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    out[0] = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".bin"))
            snprintf(out, n, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    ck_assert_msg(out[0], "no cache entry in %s", dir);
}

static ndcl_build_info build_once(void)
{
    ndcl_context *ctx = NULL;
    ck_assert_int_eq(ndcl_context_create(NULL, &ctx), NDCL_SUCCESS);
    ndcl_build_info bi;
    ck_assert_int_eq(ndcl_context_build(ctx, &bi), NDCL_SUCCESS);
    ndcl_context_destroy(ctx);
    return bi;
}

/* A FIFO where the kernel cache's entry belongs: the next context opens it
 * without blocking, ignores it, builds, and puts a regular entry in its
 * place. */
START_TEST(cache_fifo)
{
    char dir[512], entry[1024];
    path_in(dir, sizeof dir, "cache");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    setenv("NDCL_CACHE_DIR", dir, 1);
    unsetenv("NDCL_CACHE");
    build_once();
    cache_entry(dir, entry, sizeof entry);
    ck_assert_int_eq(unlink(entry), 0);
    ck_assert_int_eq(mkfifo(entry, 0600), 0);
    ndcl_build_info bi = build_once();
    ck_assert_int_eq(bi.from_cache, 0);
    struct stat st;
    ck_assert_int_eq(lstat(entry, &st), 0);
    ck_assert_msg(S_ISREG(st.st_mode), "the FIFO was not replaced by an entry");
    bi = build_once();
    ck_assert_int_eq(bi.from_cache, 1);
}
END_TEST

int main(void)
{
    data_dir = getenv("NDCL_TEST_DATA");
    if (!data_dir || !mkdtemp(tmp_root)) {
        fprintf(stderr, "NDCL_TEST_DATA not set or no temporary directory\n");
        return 1;
    }
    Suite *s = suite_create("bounded_reads");
    TCase *tc = tcase_create("files");
    /* A read that blocks (a FIFO opened without O_NONBLOCK) fails here. */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, npy_not_regular);
    tcase_add_test(tc, npy_header_first);
    tcase_add_test(tc, safetensors_header_first);
    tcase_add_test(tc, layer_not_regular);
    tcase_add_test(tc, shapes_before_allocation);
    tcase_add_test(tc, shapes_before_allocation_tool);
    tcase_add_test(tc, cache_fifo);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return failed ? 1 : 0;
}
