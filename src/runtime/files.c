/* files.c - the one atomic file writer of the library (the program cache,
 * safetensors, .npy and layer files): the bytes go to a temporary name in
 * the target's directory, are flushed to disk, and the temporary is
 * renamed over the target, so a reader sees the old file or the new one
 * and an interrupted or failed write never replaces a good file. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/runtime.h"

static bool write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

int ndcl_file_replace(const char *path, const void *const *part, const size_t *len,
                      int nparts, bool short_write, bool *no_temp)
{
    static atomic_uint serial;
    *no_temp = false;
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp) return ENOMEM;

    /* Same directory as the target, so rename(2) stays on one file system
     * and is atomic; O_EXCL so a concurrent writer's file is never reused
     * (the serial number makes names unique across threads, the pid across
     * processes). Mode 0666 lets the umask decide, as for any new file. */
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        snprintf(tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(),
                 atomic_fetch_add(&serial, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int err = errno;
        free(tmp);
        *no_temp = true;
        return err;
    }

    /* Replacing a file keeps its permissions (best effort: a new file's
     * umask-based mode is a fine fallback). */
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode))
        (void)fchmod(fd, old.st_mode & 07777);

    bool ok = true;
    if (short_write) {
        /* The test hook's full disk: half of the first part, then ENOSPC. */
        (void)write_all(fd, part[0], len[0] / 2);
        ok = false;
        errno = ENOSPC;
    } else {
        for (int i = 0; ok && i < nparts; i++)
            ok = write_all(fd, part[i], len[i]);
        ok = ok && fsync(fd) == 0;
    }
    int err = ok ? 0 : errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) unlink(tmp);
    free(tmp);
    return ok ? 0 : err;
}
