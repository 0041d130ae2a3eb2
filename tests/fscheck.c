/* fscheck.c - directory fingerprints for the reliability suites (see
 * fscheck.h). */
#include "fscheck.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

unsigned long long fs_checksum(const char *path)
{
    /* O_NONBLOCK: the directories under test hold FIFOs on purpose. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return 0;
    unsigned long long h = 0xcbf29ce484222325ULL;
    unsigned char buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++)
            h = (h ^ buf[i]) * 0x100000001b3ULL;
    close(fd);
    return h;
}

typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

static void add(lines *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        ck_assert_ptr_nonnull(l->v);
    }
    l->v[l->n++] = strdup(s);
}

static void walk(const char *root, const char *rel, lines *l)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char r[4096], p[8192], line[8192 + 256];
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(p, sizeof p, "%s/%s", root, r);
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISREG(st.st_mode)) {
            snprintf(line, sizeof line, "file %s size %lld links %lu sum %016llx", r,
                     (long long)st.st_size, (unsigned long)st.st_nlink, fs_checksum(p));
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(p, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            snprintf(line, sizeof line, "link %s -> %s", r, target);
        } else if (S_ISDIR(st.st_mode)) {
            snprintf(line, sizeof line, "dir %s", r);
        } else {
            snprintf(line, sizeof line, "%s %s",
                     S_ISFIFO(st.st_mode)  ? "fifo"
                     : S_ISCHR(st.st_mode) ? "chardev"
                                           : "other",
                     r);
        }
        add(l, line);
        if (S_ISDIR(st.st_mode)) walk(root, r, l);
    }
    closedir(d);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *fs_snapshot(const char *dir)
{
    lines l = {0};
    walk(dir, "", &l);
    qsort(l.v, l.n, sizeof *l.v, by_text);
    size_t total = 1;
    for (size_t i = 0; i < l.n; i++)
        total += strlen(l.v[i]) + 1;
    char *out = malloc(total);
    ck_assert_ptr_nonnull(out);
    out[0] = 0;
    for (size_t i = 0; i < l.n; i++) {
        strcat(out, l.v[i]);
        strcat(out, "\n");
        free(l.v[i]);
    }
    free(l.v);
    return out;
}

void fs_assert_unchanged(char *before, const char *dir, const char *what)
{
    char *after = fs_snapshot(dir);
    ck_assert_msg(!strcmp(before, after), "%s changed %s:\nbefore:\n%safter:\n%s", what,
                  dir, before, after);
    free(after);
    free(before);
}

void fs_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}
