/* outputs.c - the tools' all-or-nothing output files (outputs.h). */
#define _GNU_SOURCE
#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ndcl.h"

void outputs_init(outputs *o)
{
    memset(o, 0, sizeof *o);
    o->in_may_be_out_in = o->in_may_be_out_out = -1;
}

void outputs_input(outputs *o, const char *flag, const char *path)
{
    if (o->n_in < OUTPUTS_MAX_INPUTS && path) {
        o->in[o->n_in].flag = flag;
        o->in[o->n_in].path = path;
        o->n_in++;
    }
}

int outputs_add(outputs *o, const char *flag, const char *path, bool dir)
{
    if (o->n_out >= OUTPUTS_MAX || !path) return -1;
    int i = o->n_out++;
    o->out[i].flag = flag;
    o->out[i].path = path;
    o->out[i].dir = dir;
    return i;
}

void outputs_allow_same(outputs *o, int in, int out)
{
    o->in_may_be_out_in = in;
    o->in_may_be_out_out = out;
}

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
           : S_ISLNK(m)  ? "a symbolic link"
                         : "not a regular file";
}

/* path with its directory resolved (realpath of the directory, then the
 * last name), in *out (malloc'd); 2 with err when the directory is not
 * there or not writable. */
static int resolve(const char *flag, const char *path, bool dir, char **out, char *err,
                   size_t es)
{
    size_t n = strlen(path);
    char *copy = malloc(n + 2);
    if (!copy) {
        snprintf(err, es, "out of memory");
        return TOOL_EXIT_USAGE;
    }
    memcpy(copy, path, n + 1);
    /* "DIR/" is DIR for a directory output; a file output cannot end so. */
    while (n > 1 && copy[n - 1] == '/') {
        if (!dir) {
            snprintf(err, es, "%s %s: names a directory, not a file", flag, path);
            free(copy);
            return TOOL_EXIT_USAGE;
        }
        copy[--n] = 0;
    }
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    const char *parent = slash ? (slash == copy ? "/" : copy) : ".";
    if (slash && slash != copy) *slash = 0;
    if (!strcmp(base, ".") || !strcmp(base, "..") || !*base) {
        snprintf(err, es, "%s %s: names a directory, not a new name in one", flag, path);
        free(copy);
        return TOOL_EXIT_USAGE;
    }
    char rp[PATH_MAX];
    if (!realpath(parent, rp)) {
        snprintf(err, es, "%s %s: cannot write in %s: %s", flag, path, parent,
                 strerror(errno));
        free(copy);
        return TOOL_EXIT_USAGE;
    }
    struct stat st;
    if (stat(rp, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, es, "%s %s: cannot write in %s: not a directory", flag, path, parent);
        free(copy);
        return TOOL_EXIT_USAGE;
    }
    if (access(rp, W_OK | X_OK) != 0) {
        snprintf(err, es, "%s %s: cannot write in %s: %s", flag, path, parent,
                 strerror(errno));
        free(copy);
        return TOOL_EXIT_USAGE;
    }
    size_t len = strlen(rp) + strlen(base) + 2;
    *out = malloc(len);
    if (*out) snprintf(*out, len, "%s%s%s", rp, strcmp(rp, "/") ? "/" : "", base);
    free(copy);
    if (!*out) {
        snprintf(err, es, "out of memory");
        return TOOL_EXIT_USAGE;
    }
    return TOOL_EXIT_OK;
}

static bool in_keep(const char *name, const char *const *keep)
{
    for (; keep && *keep; keep++)
        if (!strcmp(name, *keep)) return true;
    return false;
}

/* An existing directory output may be replaced only when it holds nothing
 * but what the tool itself writes there (regular files named in keep):
 * anything else would be lost with it. */
static int check_dir_contents(const char *flag, const char *path, const char *real,
                              const char *const *keep, char *err, size_t es)
{
    DIR *d = opendir(real);
    if (!d) {
        snprintf(err, es, "%s %s: %s", flag, path, strerror(errno));
        return TOOL_EXIT_USAGE;
    }
    int rc = TOOL_EXIT_OK;
    struct dirent *e;
    while (rc == TOOL_EXIT_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        bool reg = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISREG(st.st_mode) && st.st_nlink == 1;
        if (!in_keep(e->d_name, keep) || !reg) {
            snprintf(err, es,
                     "%s %s: the directory holds %s, which this tool does not write; "
                     "refusing to replace it (give a new or empty directory)",
                     flag, path, e->d_name);
            rc = TOOL_EXIT_USAGE;
        }
    }
    closedir(d);
    return rc;
}

int outputs_check(outputs *o, const char *const *keep, char *err, size_t es)
{
    for (int i = 0; i < o->n_out; i++) {
        const char *flag = o->out[i].flag, *path = o->out[i].path;
        int rc = resolve(flag, path, o->out[i].dir, &o->out[i].real, err, es);
        if (rc) return rc;
        struct stat st;
        if (lstat(o->out[i].real, &st) != 0) {
            if (errno == ENOENT) continue; /* a new name */
            snprintf(err, es, "%s %s: %s", flag, path, strerror(errno));
            return TOOL_EXIT_USAGE;
        }
        if (o->out[i].dir) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(err, es, "%s %s: exists and is %s, not a directory", flag, path,
                         S_ISREG(st.st_mode) ? "a regular file" : kind_of(st.st_mode));
                return TOOL_EXIT_USAGE;
            }
            rc = check_dir_contents(flag, path, o->out[i].real, keep, err, es);
            if (rc) return rc;
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, es,
                     "%s %s: exists and is %s; outputs are written as new regular files, "
                     "which would replace it (give a regular file or a new name)",
                     flag, path, kind_of(st.st_mode));
            return TOOL_EXIT_USAGE;
        }
        if (st.st_nlink > 1) {
            snprintf(err, es,
                     "%s %s: has %lu hard links; writing a new file would separate it "
                     "from the others (give a new name)",
                     flag, path, (unsigned long)st.st_nlink);
            return TOOL_EXIT_USAGE;
        }
        for (int j = 0; j < o->n_in; j++) {
            struct stat in;
            if (stat(o->in[j].path, &in) != 0) continue; /* its reader reports it */
            if (in.st_dev != st.st_dev || in.st_ino != st.st_ino) continue;
            if (j == o->in_may_be_out_in && i == o->in_may_be_out_out) continue;
            snprintf(err, es,
                     "%s %s and %s %s are the same file: an output may not replace an "
                     "input",
                     flag, path, o->in[j].flag, o->in[j].path);
            return TOOL_EXIT_USAGE;
        }
    }
    /* Twice the same target, or a file inside a directory output. */
    for (int i = 0; i < o->n_out; i++)
        for (int j = 0; j < i; j++) {
            const char *a = o->out[j].real, *b = o->out[i].real;
            size_t la = strlen(a), lb = strlen(b);
            bool same = !strcmp(a, b);
            bool inside =
                (o->out[j].dir && lb > la && !strncmp(a, b, la) && b[la] == '/') ||
                (o->out[i].dir && la > lb && !strncmp(a, b, lb) && a[lb] == '/');
            if (same || inside) {
                snprintf(err, es, "%s %s and %s %s %s", o->out[j].flag, o->out[j].path,
                         o->out[i].flag, o->out[i].path,
                         same ? "name the same file" : "overlap (one is inside the other)");
                return TOOL_EXIT_USAGE;
            }
        }
    return TOOL_EXIT_OK;
}

/* ------------------------------------------------------------ staging */

/* The staging directories the signal handler removes: a fixed array of
 * fixed strings, so that the handler reads nothing that is being
 * allocated. */
static char *volatile staged[OUTPUTS_MAX];
static volatile sig_atomic_t n_staged;

/* Removes dir and what it holds, two levels deep (a staged --save
 * directory inside a staging directory), with async-signal-safe calls
 * only: getdents64 in place of readdir, which allocates. */
static void remove_tree(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        char buf[4096];
        for (;;) {
            long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                /* struct linux_dirent64: ino (8), off (8), reclen (2), type
                 * (1), name. */
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                unsigned char type = (unsigned char)buf[off + 18];
                const char *entry = buf + off + 19;
                off += reclen;
                if (!strcmp(entry, ".") || !strcmp(entry, "..")) continue;
                /* unlink fails on a directory (EISDIR), whatever d_type
                 * the file system reports. */
                if (unlinkat(fd, entry, type == DT_DIR ? AT_REMOVEDIR : 0) != 0 &&
                    depth > 0)
                    remove_tree(fd, entry, depth - 1);
            }
        }
        close(fd);
    }
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void on_signal(int sig)
{
    for (int i = 0; i < n_staged; i++)
        if (staged[i]) remove_tree(AT_FDCWD, staged[i], 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void arm(bool on)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        /* A signal the caller ignores (nohup) stays ignored. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

/* The directory of a resolved target (a copy). */
static char *dir_of(const char *real)
{
    char *d = strdup(real);
    if (!d) return NULL;
    char *slash = strrchr(d, '/');
    if (slash == d)
        d[1] = 0;
    else if (slash)
        *slash = 0;
    return d;
}

int outputs_begin(outputs *o, char *err, size_t es)
{
    for (int i = 0; i < o->n_out; i++) {
        char *dir = dir_of(o->out[i].real);
        if (!dir) {
            snprintf(err, es, "out of memory");
            return TOOL_EXIT_USAGE;
        }
        int k;
        size_t dl = strlen(dir);
        for (k = 0; k < o->n_stage; k++)
            if (!strncmp(o->stage[k], dir, dl) && o->stage[k][dl] == '/' &&
                !strchr(o->stage[k] + dl + 1, '/'))
                break;
        if (k == o->n_stage) {
            size_t len = dl + 32;
            char *s = malloc(len);
            if (s)
                snprintf(s, len, "%s%s.ndcl-stage-XXXXXX", dir,
                         strcmp(dir, "/") ? "/" : "");
            if (!s || !mkdtemp(s)) {
                snprintf(err, es, "%s %s: cannot create a staging directory in %s: %s",
                         o->out[i].flag, o->out[i].path, dir,
                         s ? strerror(errno) : "out of memory");
                free(s);
                free(dir);
                return TOOL_EXIT_USAGE;
            }
            o->stage[o->n_stage++] = s;
            /* Published after it is whole: the handler may run any time. */
            if (n_staged < OUTPUTS_MAX) {
                staged[n_staged] = s;
                n_staged = n_staged + 1;
                if (n_staged == 1) arm(true);
            }
        }
        free(dir);
        const char *base = strrchr(o->out[i].real, '/') + 1;
        size_t len = strlen(o->stage[k]) + strlen(base) + 16;
        o->out[i].tmp = malloc(len);
        if (!o->out[i].tmp) {
            snprintf(err, es, "out of memory");
            return TOOL_EXIT_USAGE;
        }
        snprintf(o->out[i].tmp, len, "%s/%d-%s", o->stage[k], i, base);
    }
    return TOOL_EXIT_OK;
}

const char *outputs_tmp(const outputs *o, int i)
{
    return i >= 0 && i < o->n_out ? o->out[i].tmp : NULL;
}

int outputs_commit(outputs *o, const char *const *keep, char *err, size_t es)
{
    int rc = TOOL_EXIT_OK;
    /* Test hook: a pause with everything staged, so that a test can signal
     * the tool at the one moment its temporaries exist. */
    const char *stall = getenv("NDCL_TEST_STALL_COMMIT");
    if (stall && *stall) {
        fprintf(stderr, "staged; pausing %d s before renaming (NDCL_TEST_STALL_COMMIT)\n",
                atoi(stall));
        sleep((unsigned)atoi(stall));
    }
    for (int i = 0; i < o->n_out && !rc; i++) {
        const char *tmp = o->out[i].tmp, *real = o->out[i].real;
        struct stat st;
        bool exists = lstat(real, &st) == 0;
        /* What was checked at the start may have changed since. */
        if (exists && (o->out[i].dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
            snprintf(err, es, "%s %s: is now %s; not replaced", o->out[i].flag,
                     o->out[i].path, kind_of(st.st_mode));
            rc = TOOL_EXIT_USAGE;
            break;
        }
        if (o->out[i].dir && exists) {
            /* The new directory takes the old one's place in one step; the
             * old one, now at the staging name, loses only the tool's own
             * files, then goes. */
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, real, RENAME_EXCHANGE) != 0) {
                snprintf(err, es, "%s %s: %s", o->out[i].flag, o->out[i].path,
                         strerror(errno));
                rc = TOOL_EXIT_USAGE;
                break;
            }
            for (const char *const *k = keep; k && *k; k++) {
                char p[PATH_MAX];
                snprintf(p, sizeof p, "%s/%s", tmp, *k);
                unlink(p);
            }
            rmdir(tmp);
        } else if (rename(tmp, real) != 0) {
            snprintf(err, es, "%s %s: %s", o->out[i].flag, o->out[i].path, strerror(errno));
            rc = TOOL_EXIT_USAGE;
        }
    }
    outputs_discard(o);
    return rc;
}

void outputs_discard(outputs *o)
{
    for (int k = 0; k < o->n_stage; k++) {
        remove_tree(AT_FDCWD, o->stage[k], 2);
        /* Unpublished before it is freed. */
        for (int j = 0; j < n_staged; j++)
            if (staged[j] == o->stage[k]) staged[j] = NULL;
        free(o->stage[k]);
        o->stage[k] = NULL;
    }
    o->n_stage = 0;
    for (int i = 0; i < o->n_out; i++) {
        free(o->out[i].tmp);
        free(o->out[i].real);
        o->out[i].tmp = o->out[i].real = NULL;
    }
}
