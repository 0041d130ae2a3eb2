/* toolrun.h - running a built tool (ndcl-query, ndcl-bench, ndcl-run) as a
 * user does, for the suites that test the tools as programs. */
#ifndef NDCL_TEST_TOOLRUN_H
#define NDCL_TEST_TOOLRUN_H

/* What one run of the tool gave. */
typedef struct run_result {
    int status; /* exit code, or -1 when it did not exit normally */
    char *out;
    char *err;
} run_result;

/* Runs "ENV_PREFIX '$TOOL_VAR' ARGS" through the shell (env_prefix may be
 * NULL; paths in args single-quoted by the caller), stdout and stderr
 * captured apart: the tools put results on stdout, errors on stderr. The
 * test fails when the environment variable tool_var is not set. */
run_result tool_run(const char *tool_var, const char *env_prefix, const char *args);

/* The whole of a file the tool wrote, NUL-terminated (free it); the test
 * fails when it is missing. */
char *tool_output_file(const char *path);

/* Frees what tool_run captured. */
void run_free(run_result *r);

#endif
