/* ndcl-query.c - which OpenCL devices can run network deconvolution, and do
 * they run it correctly (the library's self-test, ndcl_self_test, printed). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ndcl.h"

#include "exit_codes.h"

enum {
    EXIT_OK = TOOL_EXIT_OK,
    EXIT_FAILED = TOOL_EXIT_DEVICE,
    EXIT_USAGE = TOOL_EXIT_USAGE
};

static const char *prog = "ndcl-query";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [-l | --json] [--self-test] [--device SPEC]\n"
            "       %s --default-spec | --help | --version\n"
            "\n"
            "Lists the OpenCL devices ndcl can use and, with --self-test, checks that\n"
            "each runs network deconvolution correctly.\n"
            "\n"
            "  (no option)      one line per device: P:D, name, (type, vendor, driver),\n"
            "                   compute units, clock, global/local memory, max\n"
            "                   work-group size, fp16/fp64, the engine of its matrix\n"
            "                   products (BLAS openblas: the host's OpenBLAS, on CPU\n"
            "                   devices with host-unified memory; BLAS clblast:\n"
            "                   CLBlast); the algorithms of its convolution (conv\n"
            "                   gemm: im2col + GEMM, every device; dnnl, winograd:\n"
            "                   oneDNN's, on CPU devices with host-unified memory in\n"
            "                   builds with oneDNN); \"[default]\" marks the device\n"
            "                   ndcl_context_create(NULL) would choose\n"
            "  -l, --list       device names only, grouped by platform (as clinfo -l)\n"
            "  --json           the listing as JSON, every field of the device info\n"
            "                   (max_alloc_bytes included); with --self-test also the\n"
            "                   results, under each device's \"self_test\"\n"
            "  --self-test      on each listed device: create a context, build the\n"
            "                   kernels (time, and whether the binary cache served\n"
            "                   them), then run every check on small random problems\n"
            "                   against a double-precision host reference; prints\n"
            "                   PASS/FAIL, the relative error (max |device - reference|\n"
            "                   / max |reference|) and the tolerance of each check\n"
            "  --device SPEC    only the device SPEC selects: \"P:D\" (platform and\n"
            "                   device index) or a case-insensitive substring of its\n"
            "                   name; applies to the listing and the self-test\n"
            "  --default-spec   print the default device as \"P:D\" and exit\n"
            "  -h, --help       this text\n"
            "  -V, --version    the ndcl version\n"
            "\n"
            "Environment:\n"
            "  NDCL_DEVICE      the default device, as SPEC above (otherwise the first\n"
            "                   GPU, else the first device); --device overrides it\n"
            "  NDCL_CACHE_DIR   where compiled kernel binaries are cached (default\n"
            "                   $XDG_CACHE_HOME/ndcl or ~/.cache/ndcl)\n"
            "  NDCL_CACHE       0 disables the kernel binary cache\n"
            "  NDCL_BLAS        the engine of the matrix products, clblast or openblas\n"
            "                   (default: OpenBLAS where it serves the device, else\n"
            "                   CLBlast); NDCL_CPU_BLAS=0, its older name, means clblast\n"
            "  NDCL_DEBUG       nonzero: the library traces what it does on stderr\n"
            "  OCL_ICD_VENDORS  where the OpenCL ICD loader looks for platforms\n"
            "\n"
            "Exit status (the same table in every ndcl tool):\n"
            "  0  success\n"
            "  1  a device or numerical failure: no OpenCL platform or device, an\n"
            "     OpenCL error, a failed self-test\n"
            "  2  bad arguments: a usage error, a --device SPEC that is malformed or\n"
            "     matches no device, NDCL_DEVICE naming no device (--default-spec)\n"
            "Errors are reported on stderr, naming the option concerned.\n",
            prog, prog);
}

/* ------------------------------------------------------------ helpers */

static void fmt_bytes(uint64_t b, char *buf, size_t size)
{
    const double k = 1024.0;
    if (b >= (uint64_t)1 << 30)
        snprintf(buf, size, "%.1f GiB", (double)b / (k * k * k));
    else if (b >= (uint64_t)1 << 20)
        snprintf(buf, size, "%.1f MiB", (double)b / (k * k));
    else if (b >= 1024)
        snprintf(buf, size, "%.0f KiB", (double)b / k);
    else
        snprintf(buf, size, "%llu B", (unsigned long long)b);
}

static const char *type_name(ndcl_device_type t, bool json)
{
    switch (t) {
    case NDCL_DEVICE_GPU: return json ? "gpu" : "GPU";
    case NDCL_DEVICE_CPU: return json ? "cpu" : "CPU";
    case NDCL_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

/* ------------------------------------------------------------ output */

/* The engine of a context's matrix products on d (NDCL_BLAS
 * honoured), from a context made and destroyed for the question; "unknown"
 * when none can be made. The names are static strings of the library. */
static const char *blas_engine(const ndcl_device_info *d)
{
    ndcl_context_options o = ndcl_context_options_default();
    o.platform_index = d->platform_index;
    o.device_index = d->device_index;
    ndcl_context *ctx = NULL;
    if (ndcl_context_create(&o, &ctx) != NDCL_SUCCESS) return "unknown";
    const char *name = ndcl_context_blas_engine(ctx);
    ndcl_context_destroy(ctx);
    return name;
}

/* The convolution algorithms d has (ndcl_conv_algorithm_available), comma
 * separated into buf; "unknown" when no context can be made. */
static const char *conv_algorithms(const ndcl_device_info *d, char *buf, size_t size)
{
    ndcl_context_options o = ndcl_context_options_default();
    o.platform_index = d->platform_index;
    o.device_index = d->device_index;
    ndcl_context *ctx = NULL;
    snprintf(buf, size, "unknown");
    if (ndcl_context_create(&o, &ctx) != NDCL_SUCCESS) return buf;
    size_t len = 0;
    buf[0] = '\0';
    for (int a = NDCL_CONV_GEMM; ndcl_conv_algorithm_name((ndcl_conv_algorithm)a); a++) {
        int ok = 0;
        if (ndcl_conv_algorithm_available(ctx, (ndcl_conv_algorithm)a, &ok) !=
                NDCL_SUCCESS ||
            !ok)
            continue;
        int n = snprintf(buf + len, size - len, "%s%s", len ? "," : "",
                         ndcl_conv_algorithm_name((ndcl_conv_algorithm)a));
        if (n > 0 && (size_t)n < size - len) len += (size_t)n;
    }
    ndcl_context_destroy(ctx);
    return buf;
}

static void print_device(const ndcl_device_info *d)
{
    char algos[128];
    char gmem[32], lmem[32], cache[32];
    fmt_bytes(d->global_mem_bytes, gmem, sizeof gmem);
    fmt_bytes(d->local_mem_bytes, lmem, sizeof lmem);
    fmt_bytes(d->global_mem_cache_bytes, cache, sizeof cache);
    printf("%d:%d  %s  (%s, %s, %s)  %u CU, %u MHz, %s global, %s cache, %s local, "
           "max work-group %zu, fp16 %s, fp64 %s, BLAS %s, conv %s%s\n",
           d->platform_index, d->device_index, d->name, type_name(d->type, false),
           d->vendor, d->driver_version, d->compute_units, d->max_clock_mhz, gmem, cache,
           lmem, d->max_work_group_size, d->fp16 ? "yes" : "no", d->fp64 ? "yes" : "no",
           blas_engine(d), conv_algorithms(d, algos, sizeof algos),
           d->is_default ? "  [default]" : "");
}

/* As clinfo -l: platform headers, device names beneath. */
static void print_names(const ndcl_device_info *devs, size_t n)
{
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        if (devs[i].platform_index != last) {
            printf("Platform #%d: %s\n", devs[i].platform_index, devs[i].platform_name);
            last = devs[i].platform_index;
        }
        printf(" `-- Device #%d: %s%s\n", devs[i].device_index, devs[i].name,
               devs[i].is_default ? "  [default]" : "");
    }
}

static cJSON *device_json(const ndcl_device_info *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", d->device_index);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "type", type_name(d->type, true));
    cJSON_AddStringToObject(o, "vendor", d->vendor);
    cJSON_AddStringToObject(o, "driver_version", d->driver_version);
    cJSON_AddStringToObject(o, "opencl_c_version", d->opencl_c_version);
    cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
    cJSON_AddNumberToObject(o, "max_clock_mhz", d->max_clock_mhz);
    /* doubles hold byte counts exactly up to 2^53. */
    cJSON_AddNumberToObject(o, "global_mem_bytes", (double)d->global_mem_bytes);
    cJSON_AddNumberToObject(o, "global_mem_cache_bytes", (double)d->global_mem_cache_bytes);
    cJSON_AddNumberToObject(o, "local_mem_bytes", (double)d->local_mem_bytes);
    cJSON_AddNumberToObject(o, "max_alloc_bytes", (double)d->max_alloc_bytes);
    cJSON_AddNumberToObject(o, "max_work_group_size", (double)d->max_work_group_size);
    cJSON_AddBoolToObject(o, "fp16", d->fp16);
    cJSON_AddBoolToObject(o, "fp64", d->fp64);
    cJSON_AddBoolToObject(o, "default", d->is_default);
    cJSON_AddStringToObject(o, "blas", blas_engine(d));
    /* The convolution algorithms, as an array of names. */
    char algos[128];
    conv_algorithms(d, algos, sizeof algos);
    cJSON *list = cJSON_AddArrayToObject(o, "conv_algorithms");
    for (char *t = strtok(algos, ","); t; t = strtok(NULL, ","))
        cJSON_AddItemToArray(list, cJSON_CreateString(t));
    return o;
}

/* A number, or null where JSON has no representation (NaN, Inf). */
static void add_number(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

/* ------------------------------------------------------------ self-test */

/* One check's line, as it finishes. */
static void print_check(const ndcl_self_test_check *c, void *user)
{
    (void)user;
    if (c->status == NDCL_SUCCESS)
        printf("    %s  %-22s error %.2e  tolerance %.0e\n", c->passed ? "PASS" : "FAIL",
               c->name, c->error, c->tolerance);
    else
        printf("    FAIL  %-22s %s\n", c->name, c->message);
    fflush(stdout);
}

/* Runs the self-test on ctx (taken over and destroyed here), printing as it
 * goes unless json is given, where the results are added instead. Returns
 * whether everything passed. */
static bool self_test(ndcl_context *ctx, cJSON *json)
{
    cJSON *checks_json = NULL;
    if (json) json = cJSON_AddObjectToObject(json, "self_test");

    /* The build first, on its own line, before the checks take their time. */
    ndcl_build_info bi;
    memset(&bi, 0, sizeof bi);
    ndcl_status s = ndcl_context_build(ctx, &bi);
    ndcl_self_test_report *rep = NULL;
    if (s == NDCL_SUCCESS) {
        if (json) {
            cJSON_AddNumberToObject(json, "build_ms", bi.build_ms);
            cJSON_AddBoolToObject(json, "from_cache", bi.from_cache);
            cJSON_AddStringToObject(json, "cache_path", bi.cache_path);
            checks_json = cJSON_AddArrayToObject(json, "checks");
        } else {
            printf("    build: %.0f ms, %s%s%s\n", bi.build_ms,
                   bi.from_cache ? "from the binary cache " : "compiled",
                   bi.cache_path[0] ? (bi.from_cache ? "" : ", cached to ")
                                    : " (cache off)",
                   bi.cache_path);
            fflush(stdout);
        }
        rep = malloc(sizeof *rep);
        if (!rep) {
            fprintf(stderr, "%s: out of memory\n", prog);
            ndcl_context_destroy(ctx);
            return false;
        }
        s = ndcl_self_test(ctx, rep, json ? NULL : print_check, NULL);
    }
    if (s != NDCL_SUCCESS && (!rep || rep->count == 0)) {
        const char *e = ndcl_context_last_error(ctx);
        if (json) {
            cJSON_AddStringToObject(json, "error", e);
            cJSON_AddBoolToObject(json, "pass", 0);
        } else {
            printf("    build FAILED: %s: %s\n", ndcl_status_string(s), e);
        }
        free(rep);
        ndcl_context_destroy(ctx);
        return false;
    }

    for (size_t i = 0; json && i < rep->count; i++) {
        const ndcl_self_test_check *c = &rep->checks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c->name);
        cJSON_AddBoolToObject(o, "pass", c->passed);
        add_number(o, "error", c->error);
        cJSON_AddNumberToObject(o, "tolerance", c->tolerance);
        if (c->status != NDCL_SUCCESS) cJSON_AddStringToObject(o, "message", c->message);
        cJSON_AddItemToArray(checks_json, o);
    }
    const size_t failed = rep->failed, count = rep->count;
    if (json)
        cJSON_AddBoolToObject(json, "pass", failed == 0);
    else if (failed)
        printf("    %zu of %zu checks FAILED\n", failed, count);
    else
        printf("    all %zu checks passed\n", count);
    free(rep);
    ndcl_context_destroy(ctx);
    return failed == 0;
}

/* A context on device d, or the error printed (text) / recorded (json). */
static ndcl_context *open_device(const ndcl_device_info *d, cJSON *json)
{
    ndcl_context_options o = ndcl_context_options_default();
    o.platform_index = d->platform_index;
    o.device_index = d->device_index;
    ndcl_context *ctx = NULL;
    ndcl_status s = ndcl_context_create(&o, &ctx);
    if (s == NDCL_SUCCESS) return ctx;
    const char *e = ndcl_context_last_error(NULL);
    if (json) {
        cJSON *st = cJSON_AddObjectToObject(json, "self_test");
        cJSON_AddStringToObject(st, "error", e);
        cJSON_AddBoolToObject(st, "pass", 0);
    } else {
        printf("    context FAILED: %s: %s\n", ndcl_status_string(s), e);
    }
    return NULL;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    bool names = false, json = false, test = false, default_spec = false;
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-l") || !strcmp(a, "--list")) {
            names = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--self-test")) {
            test = true;
        } else if (!strcmp(a, "--default-spec")) {
            default_spec = true;
        } else if (!strcmp(a, "--device") || !strcmp(a, "-d")) {
            if (++i >= argc) {
                fprintf(stderr, "%s: %s needs a device spec (\"P:D\" or a name)\n", prog,
                        a);
                return EXIT_USAGE;
            }
            spec = argv[i];
        } else if (!strncmp(a, "--device=", 9)) {
            spec = a + 9;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("ndcl-query (ndcl) %s\n", ndcl_version_string());
            return EXIT_OK;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\" (see --help)\n", prog, a);
            return EXIT_USAGE;
        }
    }
    if ((names && (json || test)) || (default_spec && (names || json || test || spec))) {
        fprintf(stderr,
                "%s: -l, --default-spec and --json/--self-test do not combine "
                "(see --help)\n",
                prog);
        return EXIT_USAGE;
    }

    size_t n = 0;
    if (ndcl_devices_list(NULL, 0, &n) != NDCL_SUCCESS || n == 0) {
        const char *e = ndcl_context_last_error(NULL);
        fprintf(stderr, "%s: %s\n", prog, *e ? e : "no OpenCL device found");
        return EXIT_FAILED;
    }
    ndcl_device_info *devs = calloc(n, sizeof *devs);
    if (!devs) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_FAILED;
    }
    size_t n2 = 0;
    if (ndcl_devices_list(devs, n, &n2) != NDCL_SUCCESS) {
        fprintf(stderr, "%s: %s\n", prog, ndcl_context_last_error(NULL));
        free(devs);
        return EXIT_FAILED;
    }
    if (n2 < n) n = n2; /* a device went away between the two calls */

    if (default_spec) {
        for (size_t i = 0; i < n; i++)
            if (devs[i].is_default) {
                printf("%d:%d\n", devs[i].platform_index, devs[i].device_index);
                free(devs);
                return EXIT_OK;
            }
        fprintf(stderr, "%s: no default device (is NDCL_DEVICE=\"%s\" valid?)\n", prog,
                getenv("NDCL_DEVICE") ? getenv("NDCL_DEVICE") : "");
        free(devs);
        /* Devices exist: the setting that names none is at fault. */
        return EXIT_USAGE;
    }

    /* The library resolves the spec, so that it means here exactly what it
     * means to ndcl_context_create; the context is kept for the self-test. */
    ndcl_context *spec_ctx = NULL;
    size_t first = 0, end = n;
    if (spec) {
        ndcl_context_options o = ndcl_context_options_default();
        o.spec = spec;
        ndcl_device_info sel;
        ndcl_status cs = ndcl_context_create(&o, &spec_ctx);
        if (cs != NDCL_SUCCESS) {
            fprintf(stderr, "%s: --device \"%s\": %s\n", prog, spec,
                    ndcl_context_last_error(NULL));
            free(devs);
            return tool_device_exit(cs, true);
        }
        if (ndcl_context_device(spec_ctx, &sel) != NDCL_SUCCESS) {
            fprintf(stderr, "%s: %s\n", prog, ndcl_context_last_error(spec_ctx));
            ndcl_context_destroy(spec_ctx);
            free(devs);
            return EXIT_FAILED;
        }
        for (first = 0; first < n; first++)
            if (devs[first].platform_index == sel.platform_index &&
                devs[first].device_index == sel.device_index)
                break;
        if (first == n) {
            fprintf(stderr, "%s: device %d:%d is not in the device list\n", prog,
                    sel.platform_index, sel.device_index);
            ndcl_context_destroy(spec_ctx);
            free(devs);
            return EXIT_FAILED;
        }
        end = first + 1;
        if (!test) {
            ndcl_context_destroy(spec_ctx);
            spec_ctx = NULL;
        }
    }

    bool ok = true;
    if (names) {
        print_names(devs + first, end - first);
    } else if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "ndcl_version", ndcl_version_string());
        cJSON *plats = cJSON_AddArrayToObject(root, "platforms");
        cJSON *devices = NULL;
        int last = -1;
        for (size_t i = first; i < end; i++) {
            const ndcl_device_info *d = &devs[i];
            if (d->platform_index != last) {
                cJSON *p = cJSON_CreateObject();
                cJSON_AddNumberToObject(p, "index", d->platform_index);
                cJSON_AddStringToObject(p, "name", d->platform_name);
                cJSON_AddStringToObject(p, "vendor", d->platform_vendor);
                cJSON_AddStringToObject(p, "version", d->platform_version);
                devices = cJSON_AddArrayToObject(p, "devices");
                cJSON_AddItemToArray(plats, p);
                last = d->platform_index;
            }
            cJSON *dj = device_json(d);
            cJSON_AddItemToArray(devices, dj);
            if (test) {
                ndcl_context *ctx = spec_ctx ? spec_ctx : open_device(d, dj);
                ok = (ctx && self_test(ctx, dj)) && ok;
            }
        }
        char *text = cJSON_Print(root);
        if (text) {
            puts(text);
            free(text);
        } else {
            fprintf(stderr, "%s: out of memory\n", prog);
            ok = false;
        }
        cJSON_Delete(root);
    } else {
        for (size_t i = first; i < end; i++) {
            print_device(&devs[i]);
            fflush(stdout);
            if (test) {
                ndcl_context *ctx = spec_ctx ? spec_ctx : open_device(&devs[i], NULL);
                ok = (ctx && self_test(ctx, NULL)) && ok;
            }
        }
    }
    free(devs);
    return ok ? EXIT_OK : EXIT_FAILED;
}
