/* output.c - ndcl-bench's rows printed: the aligned table, JSON (which
 * tools/pytorch/bench_torch.py parses) and CSV. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "output.h"

bool row_push(row_list *l, const row *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        row *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *r;
    return true;
}

/* Six significant digits: enough for timings, and stable JSON. */
static double sig6(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.6g", v);
    return strtod(buf, NULL);
}

static void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, sig6(v));
    else
        cJSON_AddNullToObject(o, key);
}

bool print_json(const row_list *rows, const char *device, const char *blas, size_t budget)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return false;
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            cJSON_Delete(arr);
            return false;
        }
        cJSON_AddStringToObject(o, "suite", r->suite);
        cJSON_AddStringToObject(o, "shape", r->shape);
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddStringToObject(o, "blas", blas);
        cJSON_AddNumberToObject(o, "runs", r->runs);
        json_num(o, "cold_ms", r->cold_ms);
        json_num(o, "min_ms", r->min_ms);
        json_num(o, "median_ms", r->median_ms);
        json_num(o, "gflops", r->gflops);
        json_num(o, "gbs", r->gbs);
        json_num(o, "workspace_bytes", r->workspace);
        json_num(o, "conv_budget_bytes", (double)budget);
        if (r->has_vs_conv) json_num(o, "vs_conv", r->vs_conv);
        cJSON_AddStringToObject(o, "note", r->note);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    if (!text) return false;
    puts(text);
    free(text);
    return true;
}

static void csv_str(const char *s, bool last)
{
    if (strpbrk(s, ",\"\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"') putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

static void csv_num(double v)
{
    if (isfinite(v)) printf("%.6g", v);
    putchar(',');
}

void print_csv(const row_list *rows, const char *device)
{
    puts("suite,shape,device,runs,cold_ms,min_ms,median_ms,gflops,gbs,vs_conv,workspace_"
         "bytes,"
         "note");
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        csv_str(r->suite, false);
        csv_str(r->shape, false);
        csv_str(device, false);
        printf("%d,", r->runs);
        csv_num(r->cold_ms);
        csv_num(r->min_ms);
        csv_num(r->median_ms);
        csv_num(r->gflops);
        csv_num(r->gbs);
        csv_num(r->has_vs_conv ? r->vs_conv : NAN);
        csv_num(r->workspace);
        csv_str(r->note, true);
    }
}

static void fmt_num(char *buf, size_t size, double v, const char *fmt)
{
    if (isfinite(v))
        snprintf(buf, size, fmt, v);
    else
        snprintf(buf, size, "-");
}

void print_table(const row_list *rows)
{
    enum { NC = 11 };
    static const char *const head[NC] = {"suite",   "shape",     "runs",   "cold ms",
                                         "min ms",  "median ms", "GFLOPS", "GB/s",
                                         "vs conv", "ws MB",     "note"};
    /* Left-aligned text columns, right-aligned numbers. */
    static const bool left[NC] = {true,  true,  false, false, false, false,
                                  false, false, false, false, true};
    size_t width[NC];
    for (int c = 0; c < NC; c++)
        width[c] = strlen(head[c]);
    char(*cells)[NC][160] = calloc(rows->n ? rows->n : 1, sizeof *cells);
    if (!cells) return;
    for (size_t i = 0; i < rows->n; i++) {
        const row *r = &rows->v[i];
        char(*c)[160] = cells[i];
        snprintf(c[0], 160, "%s", r->suite);
        snprintf(c[1], 160, "%s", r->shape);
        snprintf(c[2], 160, "%d", r->runs);
        fmt_num(c[3], 160, r->cold_ms, "%.3f");
        fmt_num(c[4], 160, r->min_ms, "%.3f");
        fmt_num(c[5], 160, r->median_ms, "%.3f");
        fmt_num(c[6], 160, r->gflops, "%.2f");
        fmt_num(c[7], 160, r->gbs, "%.2f");
        fmt_num(c[8], 160, r->has_vs_conv ? r->vs_conv : NAN, "%.2fx");
        fmt_num(c[9], 160, r->workspace / 1048576.0, "%.1f");
        snprintf(c[10], 160, "%s", r->note);
        for (int k = 0; k < NC; k++)
            if (strlen(c[k]) > width[k]) width[k] = strlen(c[k]);
    }
    for (size_t i = 0; i <= rows->n; i++) {
        /* Row 0 is the heading; the note, last, is not padded. */
        for (int k = 0; k < NC; k++) {
            const char *text = i == 0 ? head[k] : cells[i - 1][k];
            if (k == NC - 1)
                printf("%s\n", text);
            else
                printf(left[k] ? "%-*s  " : "%*s  ", (int)width[k], text);
        }
    }
    free(cells);
}
