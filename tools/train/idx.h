/* idx.h - reads the IDX files of MNIST-style data sets (gzip-compressed or
 * not): unsigned-byte images [count, rows, cols] and labels [count]. */
#ifndef TRAIN_IDX_H
#define TRAIN_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct idx_set {
    uint8_t *images; /* count * rows * cols, row-major */
    uint8_t *labels; /* count */
    size_t count, rows, cols;
} idx_set;

/* Reads images_path (magic 0x00000803) and labels_path (magic 0x00000801).
 * A missing or unreadable file, a wrong magic number, a truncated file,
 * an image and a label count that differ, and a label >= classes are
 * TR_INPUT with the file named in tr_error(). */
int idx_load(const char *images_path, const char *labels_path, int classes, idx_set *out);
void idx_free(idx_set *s);

#endif
