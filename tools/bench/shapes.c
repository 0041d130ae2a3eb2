/* shapes.c - ndcl-bench's problems: --shape and --gemm parsed and
 * validated, their names in the table, the presets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shapes.h"

bool shape_push(shape_list *l, const shape *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        shape *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *s;
    return true;
}

/* Reads up to max comma-separated integers >= min_value (each <= 2^24);
 * returns the count, or -1 with why set. */
static int parse_ints(const char *text, size_t *out, int max, const char *const *names,
                      char *why, size_t why_size)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        if (n == max) {
            snprintf(why, why_size, "more than %d values", max);
            return -1;
        }
        char *end;
        if (*p < '0' || *p > '9') {
            snprintf(why, why_size, "%s is not a non-negative integer", names[n]);
            return -1;
        }
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) {
            snprintf(why, why_size, "%s is not a non-negative integer", names[n]);
            return -1;
        }
        if (v > (1u << 24)) {
            snprintf(why, why_size, "%s=%llu is too large", names[n], v);
            return -1;
        }
        out[n++] = (size_t)v;
        if (*end == '\0') return n;
        p = end + 1;
    }
}

static void shape_text(shape *s)
{
    if (s->gemm_only) {
        snprintf(s->text, sizeof s->text, "%zux%zux%zu", s->gm, s->gn, s->gk);
        return;
    }
    int len = snprintf(s->text, sizeof s->text, "%zux%zux%zux%zu->%zu k%zu", s->n, s->c,
                       s->h, s->w, s->cout, s->k);
    /* Only what differs from the --shape defaults, to keep the table narrow. */
    const struct {
        const char *key;
        size_t v, def;
    } extra[] = {{"s", s->stride, 1},
                 {"p", s->pad, s->k / 2},
                 {"g", s->groups, 1},
                 {"b", s->block, 64},
                 {"ss", s->ss, 3}};
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
        if (extra[i].v != extra[i].def && len > 0 && (size_t)len < sizeof s->text)
            len += snprintf(s->text + len, sizeof s->text - (size_t)len, " %s%zu",
                            extra[i].key, extra[i].v);
}

/* Validates a convolution shape; why names the problem. */
static bool shape_check(const shape *s, char *why, size_t size)
{
    const struct {
        const char *name;
        size_t v;
    } pos[] = {{"N", s->n},           {"C", s->c},           {"H", s->h},
               {"W", s->w},           {"Cout", s->cout},     {"k", s->k},
               {"stride", s->stride}, {"groups", s->groups}, {"block", s->block},
               {"ss", s->ss}};
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        if (pos[i].v == 0) {
            snprintf(why, size, "%s is 0 (must be >= 1)", pos[i].name);
            return false;
        }
    if (s->k > s->h + 2 * s->pad || s->k > s->w + 2 * s->pad) {
        snprintf(why, size, "kernel %zux%zu is larger than the padded input %zux%zu", s->k,
                 s->k, s->h + 2 * s->pad, s->w + 2 * s->pad);
        return false;
    }
    if (s->c % s->groups || s->cout % s->groups) {
        bool c = s->c % s->groups != 0;
        snprintf(why, size, "groups=%zu does not divide %s=%zu", s->groups,
                 c ? "C" : "Cout", c ? s->c : s->cout);
        return false;
    }
    return true;
}

bool parse_shape(const char *text, shape *s, char *why, size_t size)
{
    size_t v[11];
    static const char *const names[] = {"N",      "C",       "H",      "W",     "Cout", "k",
                                        "stride", "padding", "groups", "block", "ss"};
    int n = parse_ints(text, v, 11, names, why, size);
    if (n < 0) return false;
    if (n < 6) {
        snprintf(why, size,
                 "%d values; expected N,C,H,W,Cout,k[,stride,padding,groups,"
                 "block,ss] (6 to 11)",
                 n);
        return false;
    }
    memset(s, 0, sizeof *s);
    s->n = v[0];
    s->c = v[1];
    s->h = v[2];
    s->w = v[3];
    s->cout = v[4];
    s->k = v[5];
    s->stride = n > 6 ? v[6] : 1;
    s->pad = n > 7 ? v[7] : s->k / 2;
    s->groups = n > 8 ? v[8] : 1;
    s->block = n > 9 ? v[9] : 64;
    s->ss = n > 10 ? v[10] : 3;
    if (!shape_check(s, why, size)) return false;
    shape_text(s);
    return true;
}

bool parse_gemm(const char *text, shape *s, char *why, size_t size)
{
    size_t v[3];
    static const char *const names[] = {"M", "N", "K"};
    int n = parse_ints(text, v, 3, names, why, size);
    if (n < 0) return false;
    if (n != 3) {
        snprintf(why, size, "%d values; expected M,N,K", n);
        return false;
    }
    if (!v[0] || !v[1] || !v[2]) {
        snprintf(why, size, "a dimension is 0");
        return false;
    }
    memset(s, 0, sizeof *s);
    s->gemm_only = true;
    s->gm = v[0];
    s->gn = v[1];
    s->gk = v[2];
    shape_text(s);
    return true;
}

/* Presets as --shape strings. */
static const struct preset {
    const char *name;
    const char *shapes[5];
} presets[] = {
    {"cifar-resnet18",
     {"128,64,32,32,64,3,1,1", "128,128,16,16,128,3,1,1", "128,256,8,8,256,3,1,1",
      "128,512,4,4,512,3,1,1", NULL}},
    {"small", {"8,16,16,16,16,3,1,1", "8,32,8,8,32,3,1,1", NULL}},
};

bool add_preset(shape_list *l, const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, name)) continue;
        for (const char *const *p = presets[i].shapes; *p; p++) {
            shape s;
            char why[128];
            if (!parse_shape(*p, &s, why, sizeof why) || !shape_push(l, &s)) return false;
        }
        return true;
    }
    return false;
}
