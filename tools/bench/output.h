/* output.h - ndcl-bench's results: one row per suite and shape, printed as
 * the aligned table, --json or --csv. */
#ifndef NDCL_BENCH_OUTPUT_H
#define NDCL_BENCH_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct row {
    const char *suite; /* the suite's name (a static string) */
    bool has_vs_conv;  /* a layer row: vs_conv is printed (null when NAN) */
    char shape[160];
    int runs;
    double cold_ms, min_ms, median_ms, gflops, gbs, vs_conv, workspace; /* NAN: null */
    char note[96];
} row;

typedef struct row_list {
    row *v;
    size_t n, cap;
} row_list;

/* Appends a copy of r; false when out of memory. */
bool row_push(row_list *l, const row *r);

/* The rows as a JSON array on stdout; false when out of memory. */
bool print_json(const row_list *rows, const char *device, const char *blas, size_t budget);
void print_csv(const row_list *rows, const char *device);
void print_table(const row_list *rows);

#endif
