/* toolrun.c - runs a built tool through the shell and captures its output
 * (see toolrun.h). */
#include "toolrun.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    size_t cap = 4096, n = 0, k;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 2) {
            buf = realloc(buf, cap *= 2);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

run_result tool_run(const char *tool_var, const char *env_prefix, const char *args)
{
    const char *tool = getenv(tool_var);
    ck_assert_msg(tool && *tool, "%s (the path of the tool) is not set", tool_var);
    char out_path[] = "/tmp/ndcl-tool-out-XXXXXX", err_path[] = "/tmp/ndcl-tool-err-XXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path);
    ck_assert(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    size_t size = strlen(args) + strlen(tool) + (env_prefix ? strlen(env_prefix) : 0) + 128;
    char *cmd = malloc(size);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, size, "%s '%s' %s >'%s' 2>'%s'", env_prefix ? env_prefix : "", tool, args,
             out_path, err_path);
    int st = system(cmd);
    free(cmd);
    run_result r;
    r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    unlink(out_path);
    unlink(err_path);
    return r;
}

void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

char *tool_output_file(const char *path)
{
    ck_assert_msg(access(path, R_OK) == 0, "%s missing", path);
    return slurp(path);
}
