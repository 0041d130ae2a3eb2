/* layer_file.c - layers to and from safetensors files (descriptor in the
 * metadata, state_dict tensors), and the context-free tensor file helpers. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

void ndcl_free(void *ptr)
{
    free(ptr);
}

/* Metadata numbers are text in the C locale whatever the application set
 * (a decimal comma would break strtod and printf both ways); uselocale is
 * per thread, so other threads are not affected. */
typedef struct c_locale {
    locale_t c, old;
} c_locale;

static void c_locale_enter(c_locale *l)
{
    l->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    l->old = l->c ? uselocale(l->c) : (locale_t)0;
}

static void c_locale_leave(c_locale *l)
{
    if (!l->c) return;
    uselocale(l->old);
    freelocale(l->c);
}

/* ------------------------------------------------------------ metadata */

static ndcl_status bad_value(ndcl_context *ctx, const char *key, const char *v,
                             const char *want)
{
    return ndcl_fail(ctx, NDCL_ERR_FORMAT, "metadata \"%s\" = \"%s\" is not %s", key, v,
                     want);
}

/* The value of key, or NULL when absent; a required key that is absent is
 * an error (*s set). */
static const char *meta_get(ndcl_context *ctx, const ndcl_st_file *f, const char *key,
                            bool required, const char *kind, ndcl_status *s)
{
    const char *v = ndcl_st_meta(f, key);
    if (!v && required)
        *s = ndcl_fail(ctx, NDCL_ERR_FORMAT,
                       "metadata \"%s\" is missing (a %s layer requires it)", key, kind);
    return v;
}

/* Parses one decimal int from [p, end) with surrounding spaces. */
static bool int_in(const char *p, const char *end, int *out)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    char buf[32];
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, p, n);
    buf[n] = 0;
    char *e;
    errno = 0;
    long v = strtol(buf, &e, 10);
    if (*e || errno || v < INT_MIN || v > INT_MAX) return false;
    *out = (int)v;
    return true;
}

/* "3", "3,3", "(3, 3)", "[3, 3]", "(3,)": one or two ints (b = a for one). */
static bool pair_in(const char *v, int *a, int *b)
{
    const char *p = v, *end = v + strlen(v);
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (end - p >= 2 && ((*p == '(' && end[-1] == ')') || (*p == '[' && end[-1] == ']'))) {
        p++;
        end--;
    }
    const char *comma = memchr(p, ',', (size_t)(end - p));
    if (!comma) return int_in(p, end, a) && (*b = *a, true);
    if (!int_in(p, comma, a)) return false;
    const char *rest = comma + 1;
    const char *q = rest;
    while (q < end && isspace((unsigned char)*q))
        q++;
    if (q == end) return (*b = *a, true); /* "(3,)" */
    if (memchr(rest, ',', (size_t)(end - rest))) return false;
    return int_in(rest, end, b);
}

static void meta_int(ndcl_context *ctx, const ndcl_st_file *f, const char *key, bool req,
                     const char *kind, int *out, ndcl_status *s)
{
    if (*s != NDCL_SUCCESS) return;
    const char *v = meta_get(ctx, f, key, req, kind, s);
    if (v && !int_in(v, v + strlen(v), out)) *s = bad_value(ctx, key, v, "an integer");
}

/* An int that PyTorch may have written as a per-axis pair: both axes must
 * agree, since ndcl layers have one value for both. */
static void meta_square(ndcl_context *ctx, const ndcl_st_file *f, const char *key,
                        const char *kind, int *out, ndcl_status *s)
{
    if (*s != NDCL_SUCCESS) return;
    const char *v = meta_get(ctx, f, key, false, kind, s);
    int a, b;
    if (!v) return;
    if (!pair_in(v, &a, &b))
        *s = bad_value(ctx, key, v, "an integer");
    else if (a != b)
        *s = bad_value(ctx, key, v, "the same for both axes (required)");
    else
        *out = a;
}

static void meta_bool(ndcl_context *ctx, const ndcl_st_file *f, const char *key,
                      const char *kind, int *out, ndcl_status *s)
{
    if (*s != NDCL_SUCCESS) return;
    const char *v = meta_get(ctx, f, key, false, kind, s);
    if (!v) return;
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0"))
        *out = 0;
    else
        *s = bad_value(ctx, key, v, "a boolean (true/false/True/False/1/0)");
}

static void meta_float(ndcl_context *ctx, const ndcl_st_file *f, const char *key,
                       const char *kind, float *out, ndcl_status *s)
{
    if (*s != NDCL_SUCCESS) return;
    const char *v = meta_get(ctx, f, key, false, kind, s);
    if (!v) return;
    char *e;
    errno = 0;
    double d = strtod(v, &e);
    while (*e && isspace((unsigned char)*e))
        e++;
    /* Overflow (strtod's ERANGE with HUGE_VAL) and values a float cannot
     * hold (the conversion would be undefined) are not numbers we can use;
     * "inf" written as such is left to the layer's own validation. */
    if (e == v || *e || (errno == ERANGE && fabs(d) > 1) ||
        (isfinite(d) && fabs(d) > FLT_MAX))
        *s = bad_value(ctx, key, v, "a float32 number");
    else
        *out = (float)d;
}

/* The descriptor of the file's kind; kind set from the metadata. */
typedef struct layer_spec {
    ndcl_layer_kind kind;
    ndcl_conv2d_desc conv;
    ndcl_linear_desc linear;
    ndcl_channel_desc channel;
} layer_spec;

typedef struct meta_out meta_out; /* the metadata being written (saving) */

#define MAX_NAMES 6 /* parameter tensors of a layer */

/* What a layer file knows of each kind: its name in the metadata, how its
 * descriptor is read from and written to the metadata, its parameter
 * tensors and counter, and its constructor. One entry per kind; the rest
 * of this file goes through the table and names no kind. */
typedef struct file_kind {
    ndcl_layer_kind kind;
    const char *name;
    void (*read)(ndcl_context *ctx, const ndcl_st_file *f, layer_spec *sp, ndcl_status *s);
    ndcl_status (*describe)(const ndcl_layer *l, layer_spec *sp, meta_out *m);
    ndcl_status (*create)(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l);
    int (*params)(const layer_spec *sp, const char *names[MAX_NAMES]);
    const char *counter;   /* the counter tensor's name, or NULL */
    bool counter_required; /* a file without the counter is refused */
    bool has_bias;         /* the bias= metadata governs a "bias" tensor */
} file_kind;

/* The table (at the end of this file, after the functions it holds). */
static const file_kind *kind_named(const char *name);
static const file_kind *kind_of(ndcl_layer_kind k);

static void read_conv2d(ndcl_context *ctx, const ndcl_st_file *f, layer_spec *sp,
                        ndcl_status *s)
{
    const char *k = "conv2d";
    int in = 0, out = 0, kh = 0, kw = 0;
    meta_int(ctx, f, "in_channels", true, k, &in, s);
    meta_int(ctx, f, "out_channels", true, k, &out, s);
    const char *ks =
        *s == NDCL_SUCCESS ? meta_get(ctx, f, "kernel_size", true, k, s) : NULL;
    if (ks && !pair_in(ks, &kh, &kw))
        *s = bad_value(ctx, "kernel_size", ks, "an integer or a pair of integers");
    if (*s == NDCL_SUCCESS) {
        ndcl_conv2d_desc *d = &sp->conv;
        *d = ndcl_conv2d_desc_default(in, out, kh);
        d->kernel_h = kh;
        d->kernel_w = kw;
        meta_square(ctx, f, "stride", k, &d->stride, s);
        meta_square(ctx, f, "padding", k, &d->padding, s);
        meta_square(ctx, f, "dilation", k, &d->dilation, s);
        meta_int(ctx, f, "groups", false, k, &d->groups, s);
        meta_bool(ctx, f, "bias", k, &d->bias, s);
        meta_int(ctx, f, "block", false, k, &d->block, s);
        meta_int(ctx, f, "sampling_stride", false, k, &d->sampling_stride, s);
        meta_float(ctx, f, "eps", k, &d->eps, s);
        meta_int(ctx, f, "n_iter", false, k, &d->n_iter, s);
        meta_float(ctx, f, "momentum", k, &d->momentum, s);
        meta_bool(ctx, f, "freeze", k, &d->freeze, s);
        meta_int(ctx, f, "freeze_iter", false, k, &d->freeze_iter, s);
    }
}

static void read_linear(ndcl_context *ctx, const ndcl_st_file *f, layer_spec *sp,
                        ndcl_status *s)
{
    const char *k = "linear";
    int in = 0, out = 0;
    meta_int(ctx, f, "in_features", true, k, &in, s);
    meta_int(ctx, f, "out_features", true, k, &out, s);
    if (*s == NDCL_SUCCESS) {
        ndcl_linear_desc *d = &sp->linear;
        *d = ndcl_linear_desc_default(in, out);
        meta_bool(ctx, f, "bias", k, &d->bias, s);
        meta_int(ctx, f, "block", false, k, &d->block, s);
        meta_float(ctx, f, "eps", k, &d->eps, s);
        meta_int(ctx, f, "n_iter", false, k, &d->n_iter, s);
        meta_float(ctx, f, "momentum", k, &d->momentum, s);
    }
}

static void read_channel(ndcl_context *ctx, const ndcl_st_file *f, layer_spec *sp,
                         ndcl_status *s)
{
    const char *k = "channel";
    int block = 0;
    meta_int(ctx, f, "block", true, k, &block, s);
    if (*s == NDCL_SUCCESS) {
        ndcl_channel_desc *d = &sp->channel;
        *d = ndcl_channel_desc_default(block);
        meta_float(ctx, f, "eps", k, &d->eps, s);
        meta_int(ctx, f, "n_iter", false, k, &d->n_iter, s);
        meta_float(ctx, f, "momentum", k, &d->momentum, s);
        meta_int(ctx, f, "sampling_stride", false, k, &d->sampling_stride, s);
    }
}

/* Every metadata value of safetensors is a string: numbers are parsed here
 * in the C locale (above), so that a file gives the same layer whatever the
 * application's locale and a value that is no number names its key; the
 * ranges are left to the layer's own checks (ndcl_*_create). */
static ndcl_status read_spec(ndcl_context *ctx, const ndcl_st_file *f, layer_spec *sp)
{
    ndcl_status s = NDCL_SUCCESS;
    const char *kind = ndcl_st_meta(f, "kind");
    if (!kind)
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "metadata \"kind\" is missing (not an ndcl layer file?)");
    const file_kind *fk = kind_named(kind);
    if (!fk) return bad_value(ctx, "kind", kind, "conv2d, linear or channel");
    c_locale loc;
    c_locale_enter(&loc);
    fk->read(ctx, f, sp, &s);
    sp->kind = fk->kind;
    c_locale_leave(&loc);
    return s;
}

/* ------------------------------------------------------------ tensors */

/* The parameter names of a deconvolved layer (conv2d, linear). */
static int weight_params(bool bias, const char *names[MAX_NAMES])
{
    int n = 0;
    names[n++] = "weight";
    if (bias) names[n++] = "bias";
    names[n++] = "running_mean";
    names[n++] = "running_deconv";
    return n;
}

static int conv2d_params(const layer_spec *sp, const char *names[MAX_NAMES])
{
    return weight_params(sp->conv.bias, names);
}

static int linear_params(const layer_spec *sp, const char *names[MAX_NAMES])
{
    return weight_params(sp->linear.bias, names);
}

static int channel_params(const layer_spec *sp, const char *names[MAX_NAMES])
{
    (void)sp;
    int n = 0;
    names[n++] = "running_mean1";
    names[n++] = "running_deconv";
    names[n++] = "running_mean2";
    names[n++] = "running_var";
    return n;
}

static int param_names(const layer_spec *sp, const char *names[MAX_NAMES],
                       const char **counter);

/* Equal once dimensions of size 1 are dropped from both: files from PyTorch
 * may hold [] for [1, 1] and the like. */
static bool same_squeezed(const size_t *a, int na, const size_t *b, int nb)
{
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1)
            i++;
        while (j < nb && b[j] == 1)
            j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return false;
    }
}

/* Every tensor of the file must be one the layer has, and every parameter
 * must be present: checked before anything is allocated on the device. */
static ndcl_status check_names(ndcl_context *ctx, const ndcl_st_file *f,
                               const layer_spec *sp)
{
    const char *names[MAX_NAMES], *counter;
    int n = param_names(sp, names, &counter);
    const file_kind *fk = kind_of(sp->kind);
    const char *kind = fk->name;
    for (int i = 0; i < n; i++)
        if (!ndcl_st_find(f, names[i]))
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"%s\" is missing (a %s layer%s needs it)", names[i],
                             kind, strcmp(names[i], "bias") == 0 ? " with bias=true" : "");
    if (fk->counter_required && !ndcl_st_find(f, counter))
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\" is missing (a %s layer needs it: it decides "
                         "whether the next training batch overwrites the running "
                         "statistics)",
                         counter, kind);
    for (int t = 0; t < f->n_tensors; t++) {
        const char *tn = f->tensors[t].name;
        bool known = counter && strcmp(tn, counter) == 0;
        for (int i = 0; !known && i < n; i++)
            known = strcmp(tn, names[i]) == 0;
        if (known) continue;
        if (strcmp(tn, "bias") == 0 && fk->has_bias)
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"bias\" is present but the metadata says bias=false");
        char list[160] = "";
        for (int i = 0; i < n; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, names[i], sizeof list - strlen(list) - 1);
        }
        if (counter) {
            strncat(list, ", ", sizeof list - strlen(list) - 1);
            strncat(list, counter, sizeof list - strlen(list) - 1);
        }
        return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                         "tensor \"%s\" is not part of a %s layer (expected %s)", tn, kind,
                         list);
    }
    return NDCL_SUCCESS;
}

/* Validation failures of the layer API caused by the file's content are
 * the file's fault: reported as NDCL_ERR_FORMAT. */
static ndcl_status as_format(ndcl_context *ctx, ndcl_status s, const char *what)
{
    if (s != NDCL_ERR_INVALID_ARG) return s;
    return ndcl_error_prefix(ctx, NDCL_ERR_FORMAT, what);
}

static ndcl_status create_conv2d(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l)
{
    return ndcl_conv2d_create(ctx, &sp->conv, l);
}

static ndcl_status create_linear(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l)
{
    return ndcl_linear_create(ctx, &sp->linear, l);
}

static ndcl_status create_channel(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l)
{
    return ndcl_channel_create(ctx, &sp->channel, l);
}

static ndcl_status create_layer(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l);

/* Every parameter tensor of the file against the shape the layer l gives
 * it (l may be a shapes-only probe). */
static ndcl_status check_shapes(ndcl_context *ctx, const ndcl_st_file *f,
                                const layer_spec *sp, const ndcl_layer *l)
{
    const char *names[MAX_NAMES], *counter;
    int n = param_names(sp, names, &counter);
    for (int i = 0; i < n; i++) {
        const ndcl_st_tensor *t = ndcl_st_find(f, names[i]);
        int ndim;
        size_t shape[NDCL_MAX_DIMS];
        NDCL_TRY(ndcl_layer_param_shape(l, names[i], &ndim, shape));
        if (!same_squeezed(t->shape, t->ndim, shape, ndim)) {
            char have[200], want[200];
            ndcl_shape_text(t->shape, t->ndim, false, have, sizeof have);
            ndcl_shape_text(shape, ndim, false, want, sizeof want);
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"%s\" has shape %s but the layer expects %s", t->name,
                             have, want);
        }
    }
    return NDCL_SUCCESS;
}

static ndcl_status load_params(ndcl_context *ctx, const ndcl_st_file *f,
                               const layer_spec *sp, ndcl_layer *l)
{
    const char *names[MAX_NAMES], *counter;
    int n = param_names(sp, names, &counter);
    NDCL_TRY(check_shapes(ctx, f, sp, l));
    for (int i = 0; i < n; i++) {
        const ndcl_st_tensor *t = ndcl_st_find(f, names[i]);
        float *buf = malloc(t->count * sizeof(float) + 1);
        if (!buf) return ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
        ndcl_st_to_float(t, buf);
        ndcl_status s = ndcl_layer_set_param(l, names[i], buf, t->count);
        free(buf);
        NDCL_TRY(as_format(ctx, s, t->name));
    }
    const ndcl_st_tensor *t = counter ? ndcl_st_find(f, counter) : NULL;
    if (t) {
        if (t->count != 1) {
            char have[200];
            ndcl_shape_text(t->shape, t->ndim, false, have, sizeof have);
            return ndcl_fail(ctx, NDCL_ERR_FORMAT,
                             "tensor \"%s\" has shape %s but must hold one integer "
                             "(shape [] or [1])",
                             t->name, have);
        }
        int64_t v;
        NDCL_TRY(ndcl_st_to_int64(ctx, t, &v));
        NDCL_TRY(as_format(ctx, ndcl_layer_set_counter(l, v), t->name));
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_load_memory(ndcl_context *ctx, const void *data, size_t size,
                                   ndcl_layer **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, data != NULL, "data is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    ndcl_st_file f;
    NDCL_TRY(ndcl_st_parse(ctx, data, size, &f));
    layer_spec sp = {0};
    ndcl_layer *l = NULL;
    ndcl_status s = read_spec(ctx, &f, &sp);
    if (s == NDCL_SUCCESS) s = check_names(ctx, &f, &sp);
    /* First a layer with shapes and no device memory: the file's tensors
     * are checked against it before the metadata alone can make ndcl
     * allocate (a small file declaring a 20000x20000 layer). */
    if (s == NDCL_SUCCESS) {
        ctx->shapes_only = true;
        s = create_layer(ctx, &sp, &l);
        ctx->shapes_only = false;
        s = as_format(ctx, s, "the metadata describes an invalid layer");
        if (s == NDCL_SUCCESS) s = check_shapes(ctx, &f, &sp, l);
        ndcl_layer_destroy(l);
        l = NULL;
    }
    if (s == NDCL_SUCCESS) {
        s = create_layer(ctx, &sp, &l);
        s = as_format(ctx, s, "the metadata describes an invalid layer");
    }
    if (s == NDCL_SUCCESS) s = load_params(ctx, &f, &sp, l);
    ndcl_st_free(&f);
    if (s != NDCL_SUCCESS) {
        ndcl_layer_destroy(l);
        return s;
    }
    *out = l;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_load(ndcl_context *ctx, const char *path, ndcl_layer **out)
{
    if (!ctx) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ctx is NULL");
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, path != NULL, "path is NULL");
    NDCL_CHECK_ARG(ctx, out != NULL, "out is NULL");
    unsigned char *buf;
    size_t size;
    NDCL_TRY(
        ndcl_read_file_checked(ctx, path, NDCL_ST_HEAD, ndcl_st_head_check, &buf, &size));
    ndcl_status s = ndcl_layer_load_memory(ctx, buf, size, out);
    free(buf);
    if (s != NDCL_SUCCESS) return ndcl_error_prefix(ctx, s, path);
    return NDCL_SUCCESS;
}

/* ------------------------------------------------------------ saving */

#define MAX_META 16

typedef struct meta_out {
    const char *keys[MAX_META];
    const char *values[MAX_META];
    char text[MAX_META][48];
    int n;
} meta_out;

static void put(meta_out *m, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void put(meta_out *m, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->text[m->n], sizeof m->text[m->n], fmt, ap);
    va_end(ap);
    m->keys[m->n] = key;
    m->values[m->n] = m->text[m->n];
    m->n++;
}

static const char *tf(int b)
{
    return b ? "true" : "false";
}

/* The shortest of %.6g .. %.9g that reads back as the same float: "1e-05"
 * rather than "9.99999975e-06", so Python sees the value the user meant;
 * %.9g always round-trips a float, so exactness never depends on it. */
static void put_float(meta_out *m, const char *key, float v)
{
    char buf[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (prec == 9 || strtof(buf, NULL) == v) break;
    }
    put(m, key, "%s", buf);
}

static ndcl_status describe_conv2d(const ndcl_layer *l, layer_spec *sp, meta_out *m)
{
    ndcl_status s = ndcl_layer_conv2d_desc(l, &sp->conv);
    const ndcl_conv2d_desc *d = &sp->conv;
    put(m, "in_channels", "%d", d->in_channels);
    put(m, "out_channels", "%d", d->out_channels);
    if (d->kernel_h == d->kernel_w)
        put(m, "kernel_size", "%d", d->kernel_h);
    else
        put(m, "kernel_size", "%d,%d", d->kernel_h, d->kernel_w);
    put(m, "stride", "%d", d->stride);
    put(m, "padding", "%d", d->padding);
    put(m, "dilation", "%d", d->dilation);
    put(m, "groups", "%d", d->groups);
    put(m, "bias", "%s", tf(d->bias));
    put(m, "block", "%d", d->block);
    put(m, "sampling_stride", "%d", d->sampling_stride);
    put_float(m, "eps", d->eps);
    put(m, "n_iter", "%d", d->n_iter);
    put_float(m, "momentum", d->momentum);
    put(m, "freeze", "%s", tf(d->freeze));
    put(m, "freeze_iter", "%d", d->freeze_iter);
    return s;
}

static ndcl_status describe_linear(const ndcl_layer *l, layer_spec *sp, meta_out *m)
{
    ndcl_status s = ndcl_layer_linear_desc(l, &sp->linear);
    const ndcl_linear_desc *d = &sp->linear;
    put(m, "in_features", "%d", d->in_features);
    put(m, "out_features", "%d", d->out_features);
    put(m, "bias", "%s", tf(d->bias));
    put(m, "block", "%d", d->block);
    put_float(m, "eps", d->eps);
    put(m, "n_iter", "%d", d->n_iter);
    put_float(m, "momentum", d->momentum);
    return s;
}

static ndcl_status describe_channel(const ndcl_layer *l, layer_spec *sp, meta_out *m)
{
    ndcl_status s = ndcl_layer_channel_desc(l, &sp->channel);
    const ndcl_channel_desc *d = &sp->channel;
    put(m, "block", "%d", d->block);
    put_float(m, "eps", d->eps);
    put(m, "n_iter", "%d", d->n_iter);
    put_float(m, "momentum", d->momentum);
    put(m, "sampling_stride", "%d", d->sampling_stride);
    return s;
}

static ndcl_status describe(const ndcl_layer *l, layer_spec *sp, meta_out *m)
{
    sp->kind = ndcl_layer_kind_of(l);
    const file_kind *fk = kind_of(sp->kind);
    if (!fk)
        return ndcl_fail(ndcl_layer_context(l), NDCL_ERR_INVALID_ARG,
                         "layer kind %d has no layer file form", (int)sp->kind);
    c_locale loc;
    c_locale_enter(&loc); /* floats must be written with a '.' */
    put(m, "kind", "%s", fk->name);
    ndcl_status s = fk->describe(l, sp, m);
    c_locale_leave(&loc);
    return s;
}

ndcl_status ndcl_layer_save_memory(const ndcl_layer *layer, void **data, size_t *size)
{
    if (!layer) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_context *ctx = ndcl_layer_context(layer);
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, data && size, "data and size must not be NULL");

    layer_spec sp = {0};
    meta_out m = {0};
    NDCL_TRY(describe(layer, &sp, &m));
    const char *names[MAX_NAMES], *counter;
    int n = param_names(&sp, names, &counter);

    ndcl_st_out ts[MAX_NAMES + 1];
    float *bufs[MAX_NAMES] = {0};
    int64_t count_value = 0;
    ndcl_status s = NDCL_SUCCESS;
    for (int i = 0; i < n && s == NDCL_SUCCESS; i++) {
        ndcl_st_out *t = &ts[i];
        memset(t, 0, sizeof *t);
        t->name = names[i];
        t->dtype = NDCL_ST_F32;
        size_t shape[NDCL_MAX_DIMS], count = 1;
        s = ndcl_layer_param_shape(layer, names[i], &t->ndim, shape);
        if (s != NDCL_SUCCESS) break;
        for (int d = 0; d < t->ndim; d++) {
            t->shape[d] = shape[d];
            count *= shape[d];
        }
        bufs[i] = malloc(count * sizeof(float) + 1);
        if (!bufs[i])
            s = ndcl_fail(ctx, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
        else
            s = ndcl_layer_get_param(layer, names[i], bufs[i], count);
        t->data = bufs[i];
    }
    int nt = n;
    if (s == NDCL_SUCCESS && counter) {
        s = ndcl_layer_get_counter(layer, &count_value);
        ts[nt] = (ndcl_st_out){
            .name = counter, .dtype = NDCL_ST_I64, .ndim = 0, .data = &count_value};
        nt++;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    if (s == NDCL_SUCCESS)
        s = ndcl_st_serialize(ctx, ts, nt, m.keys, m.values, m.n, &buf, &len);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    if (s != NDCL_SUCCESS) return s;
    *data = buf;
    *size = len;
    return NDCL_SUCCESS;
}

ndcl_status ndcl_layer_save(const ndcl_layer *layer, const char *path)
{
    if (!layer) return ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "layer is NULL");
    ndcl_context *ctx = ndcl_layer_context(layer);
    ndcl_clear_error(ctx);
    NDCL_CHECK_ARG(ctx, path && *path, "path is NULL or empty");
    void *buf;
    size_t len;
    NDCL_TRY(ndcl_layer_save_memory(layer, &buf, &len));
    ndcl_status s = ndcl_write_file_atomic(ctx, path, buf, len);
    free(buf);
    return s;
}

/* ------------------------------------------------------------ tensor files */

ndcl_status ndcl_safetensors_write_floats(const char *path, int n, const char *const *names,
                                          const float *const *data, const int *ndims,
                                          const size_t (*shapes)[NDCL_MAX_DIMS])
{
    ndcl_clear_error(NULL);
    NDCL_CHECK_ARG(NULL, path && *path, "path is NULL or empty");
    NDCL_CHECK_ARG(NULL, n >= 0, "n=%d", n);
    NDCL_CHECK_ARG(NULL, n == 0 || (names && data && ndims && shapes),
                   "names, data, ndims and shapes must not be NULL");
    ndcl_st_out *ts = calloc((size_t)n + 1, sizeof *ts);
    if (!ts) return ndcl_fail(NULL, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    ndcl_status s = NDCL_SUCCESS;
    for (int i = 0; i < n && s == NDCL_SUCCESS; i++) {
        if (ndims[i] < 0 || ndims[i] > NDCL_MAX_DIMS) {
            s = ndcl_fail(NULL, NDCL_ERR_INVALID_ARG, "ndims[%d]=%d (0 to %d)", i, ndims[i],
                          NDCL_MAX_DIMS);
            break;
        }
        ts[i].name = names[i];
        ts[i].dtype = NDCL_ST_F32;
        ts[i].ndim = ndims[i];
        for (int d = 0; d < ndims[i]; d++)
            ts[i].shape[d] = shapes[i][d];
        ts[i].data = data[i];
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    if (s == NDCL_SUCCESS) s = ndcl_st_serialize(NULL, ts, n, NULL, NULL, 0, &buf, &len);
    free(ts);
    if (s == NDCL_SUCCESS) s = ndcl_write_file_atomic(NULL, path, buf, len);
    free(buf);
    return s;
}

ndcl_status ndcl_safetensors_read_float(const char *path, const char *name, float **data,
                                        int *ndim, size_t shape[NDCL_MAX_DIMS])
{
    ndcl_clear_error(NULL);
    NDCL_CHECK_ARG(NULL, path && name, "path and name must not be NULL");
    NDCL_CHECK_ARG(NULL, data && ndim && shape, "data, ndim and shape must not be NULL");
    ndcl_st_file f;
    NDCL_TRY(ndcl_st_read(NULL, path, &f));
    const ndcl_st_tensor *t = ndcl_st_find(&f, name);
    ndcl_status s = NDCL_SUCCESS;
    float *buf = NULL;
    if (!t) {
        char list[512] = "";
        for (int i = 0; i < f.n_tensors; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, f.tensors[i].name, sizeof list - strlen(list) - 1);
        }
        s = ndcl_fail(NULL, NDCL_ERR_FORMAT, "%s: no tensor \"%s\" (the file has: %s)",
                      path, name, f.n_tensors ? list : "none");
    } else if (t->ndim > NDCL_MAX_DIMS) {
        s = ndcl_fail(NULL, NDCL_ERR_FORMAT,
                      "%s: tensor \"%s\" has %d dimensions (at most %d are supported)",
                      path, name, t->ndim, NDCL_MAX_DIMS);
    } else if (!(buf = malloc(t->count * sizeof(float) + 1))) {
        s = ndcl_fail(NULL, NDCL_ERR_OUT_OF_MEMORY, "out of host memory");
    } else {
        ndcl_st_to_float(t, buf);
        *data = buf;
        *ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            shape[d] = t->shape[d];
    }
    ndcl_st_free(&f);
    return s;
}

/* ------------------------------------------------------------ kinds */

static const file_kind kinds[] = {
    {NDCL_LAYER_CONV2D, "conv2d", read_conv2d, describe_conv2d, create_conv2d,
     conv2d_params, "counter", false, true},
    {NDCL_LAYER_LINEAR, "linear", read_linear, describe_linear, create_linear,
     linear_params, NULL, false, true},
    /* ChannelDeconv's num_batches_tracked decides whether the next
     * training batch overwrites the running statistics: required. */
    {NDCL_LAYER_CHANNEL, "channel", read_channel, describe_channel, create_channel,
     channel_params, "num_batches_tracked", true, false},
};

static const file_kind *kind_named(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, name) == 0) return &kinds[i];
    return NULL;
}

static const file_kind *kind_of(ndcl_layer_kind k)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].kind == k) return &kinds[i];
    return NULL;
}

static int param_names(const layer_spec *sp, const char *names[MAX_NAMES],
                       const char **counter)
{
    const file_kind *fk = kind_of(sp->kind);
    *counter = fk->counter;
    return fk->params(sp, names);
}

static ndcl_status create_layer(ndcl_context *ctx, const layer_spec *sp, ndcl_layer **l)
{
    return kind_of(sp->kind)->create(ctx, sp, l);
}
