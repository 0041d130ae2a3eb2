/* idx.c - IDX file reading through zlib (gzread reads plain files too):
 * the header's magic number and dimensions are checked before the data,
 * which must be all there. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "idx.h"
#include "kernels.h"

/* Reads exactly n bytes; a short read is a truncated file. */
static int read_all(gzFile f, const char *path, void *buf, size_t n, const char *what)
{
    size_t got = 0;
    while (got < n) {
        unsigned chunk = (n - got) > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, chunk);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            return tr_fail(TR_INPUT, "%s: %s", path, zerr == Z_ERRNO ? strerror(errno) : m);
        }
        if (r == 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            return tr_fail(TR_INPUT, "%s: truncated: %s ends after %zu of %zu bytes%s%s",
                           path, what, got, n, zerr != Z_OK ? ": " : "",
                           zerr != Z_OK ? m : "");
        }
        got += (size_t)r;
    }
    return TR_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One IDX file of unsigned bytes with ndim dimensions: dims and data. */
static int read_idx(const char *path, int ndim, uint32_t *dims, uint8_t **data)
{
    /* Regular files only, opened without blocking: a FIFO or a device
     * (/dev/zero) has no end to bound the read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return tr_fail(TR_INPUT, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tr_fail(
            TR_INPUT, "%s: not a regular file (ndcl-train reads regular files only)", path);
    }
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return tr_fail(TR_INPUT, "%s: cannot open", path);
    }
    unsigned char head[16];
    uint32_t want = 0x800u | (uint32_t)ndim;
    int rc = read_all(f, path, head, 4 + 4 * (size_t)ndim, "the header");
    if (rc == TR_OK && be32(head) != want)
        rc = tr_fail(TR_INPUT,
                     "%s: magic number 0x%08x, expected 0x%08x (IDX unsigned bytes, %d "
                     "dimension%s)",
                     path, be32(head), want, ndim, ndim > 1 ? "s" : "");
    size_t n = 1;
    for (int i = 0; rc == TR_OK && i < ndim; i++) {
        dims[i] = be32(head + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (1u << 28) || n > ((size_t)1 << 34) / dims[i])
            rc = tr_fail(TR_INPUT, "%s: dimension %d is %u", path, i, dims[i]);
        else
            n *= dims[i];
    }
    uint8_t *buf = NULL;
    if (rc == TR_OK) {
        buf = malloc(n);
        if (!buf) rc = tr_fail(TR_DEVICE, "%s: out of memory for %zu bytes", path, n);
    }
    if (rc == TR_OK) rc = read_all(f, path, buf, n, "the data");
    gzclose(f);
    if (rc != TR_OK) {
        free(buf);
        return rc;
    }
    *data = buf;
    return TR_OK;
}

int idx_load(const char *images_path, const char *labels_path, int classes, idx_set *out)
{
    uint32_t di[3], dl[1];
    uint8_t *images = NULL, *labels = NULL;
    int rc = read_idx(images_path, 3, di, &images);
    if (rc == TR_OK) rc = read_idx(labels_path, 1, dl, &labels);
    if (rc == TR_OK && di[0] != dl[0])
        rc = tr_fail(TR_INPUT, "%s holds %u images but %s holds %u labels", images_path,
                     di[0], labels_path, dl[0]);
    for (uint32_t i = 0; rc == TR_OK && i < dl[0]; i++)
        if (labels[i] >= classes)
            rc = tr_fail(TR_INPUT, "%s: label %u of item %u is not a class 0..%d",
                         labels_path, labels[i], i, classes - 1);
    if (rc != TR_OK) {
        free(images);
        free(labels);
        return rc;
    }
    *out = (idx_set){images, labels, di[0], di[1], di[2]};
    return TR_OK;
}

void idx_free(idx_set *s)
{
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}
