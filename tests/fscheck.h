/* fscheck.h - a fingerprint of everything under a directory (names, kinds,
 * sizes, contents, link targets, link counts), so that the reliability
 * suites can assert that a failed run changed no file and left no
 * temporary behind. */
#ifndef NDCL_TEST_FSCHECK_H
#define NDCL_TEST_FSCHECK_H

/* A text listing every entry under dir (recursively, sorted), one a line:
 * kind, relative name, size, link count, an FNV-1a checksum of a regular
 * file's contents or a symlink's target. Free it. */
char *fs_snapshot(const char *dir);

/* Fails the test, showing both listings, when before and the directory's
 * listing now differ; frees before. */
void fs_assert_unchanged(char *before, const char *dir, const char *what);

/* FNV-1a of a file's contents; 0 when it cannot be read. */
unsigned long long fs_checksum(const char *path);

/* Writes text to path (a fresh regular file). */
void fs_write(const char *path, const char *text);

#endif
