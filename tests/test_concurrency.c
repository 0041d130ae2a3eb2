/* test_concurrency.c - separate contexts used from two threads at once give
 * the same results as the same work run alone, and two processes building
 * into one fresh kernel cache leave an entry a third context loads. */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* ------------------------------------------------------------- threads */

typedef struct job {
    ndcl_context *ctx; /* NULL: the job creates and destroys its own */
    unsigned seed;
    float y[3][2 * 6 * 6 * 6]; /* two training steps and one evaluation */
    float running[64];
    int ok;
    char err[256];
} job;

/* Creates a conv layer, runs train, train, eval; keeps the outputs and
 * running_mean. Everything it creates it destroys (the context too). */
static void *run_job(void *arg)
{
    job *j = arg;
    ndcl_context *ctx = NULL;
    ndcl_layer *l = NULL;
    ndcl_tensor *x = NULL, *y = NULL;
    ndcl_status s = ndcl_context_create(NULL, &ctx);
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 6, 3);
    d.block = 2;
    d.padding = 1;
    float w[6 * 4 * 3 * 3], xs[2 * 4 * 6 * 6];
    test_fill_uniform(w, 216, j->seed, -0.5f, 0.5f);
    if (s == NDCL_SUCCESS) s = ndcl_conv2d_create(ctx, &d, &l);
    if (s == NDCL_SUCCESS) s = ndcl_layer_set_param(l, "weight", w, 216);
    if (s == NDCL_SUCCESS) s = ndcl_tensor_create(ctx, 4, (size_t[]){2, 4, 6, 6}, &x);
    for (int step = 0; step < 3 && s == NDCL_SUCCESS; step++) {
        test_fill_uniform(xs, 288, j->seed * 10 + (unsigned)step, -1, 1);
        s = ndcl_tensor_write(x, xs, 288);
        if (s == NDCL_SUCCESS)
            s = ndcl_layer_forward(l, step < 2 ? NDCL_TRAIN : NDCL_EVAL, x, &y);
        if (s == NDCL_SUCCESS) s = ndcl_tensor_read(y, j->y[step], 2 * 6 * 6 * 6);
    }
    if (s == NDCL_SUCCESS) s = ndcl_layer_get_param(l, "running_mean", j->running, 18);
    if (s == NDCL_SUCCESS) s = ndcl_finish(ctx);
    j->ok = s == NDCL_SUCCESS;
    if (!j->ok)
        snprintf(j->err, sizeof j->err, "%s: %s", ndcl_status_string(s),
                 ctx ? ndcl_context_last_error(ctx) : ndcl_context_last_error(NULL));
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_layer_destroy(l);
    ndcl_context_destroy(ctx);
    return NULL;
}

START_TEST(two_contexts_two_threads)
{
    static job alone[2], together[2];
    for (int i = 0; i < 2; i++) {
        alone[i].seed = together[i].seed = 100 + (unsigned)i;
        run_job(&alone[i]);
        ck_assert_msg(alone[i].ok, "alone %d: %s", i, alone[i].err);
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, run_job, &together[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(together[i].ok, "thread %d: %s", i, together[i].err);
        for (int step = 0; step < 3; step++) {
            double e = test_rel_err_ff(together[i].y[step], alone[i].y[step], 432, 1e-6);
            ck_assert_msg(e <= 1e-6, "thread %d step %d differs from the run alone: %g", i,
                          step, e);
        }
        ck_assert(test_rel_err_ff(together[i].running, alone[i].running, 18, 1e-6) <= 1e-6);
    }
}
END_TEST

/* ---------------------------------------------------------- the cache */

/* This program, run again as a builder (argv[0]: /proc/self/exe would be
 * valgrind's own binary under valgrind). */
static const char *self_path;

/* Child mode: build the kernels into NDCL_CACHE_DIR and exit 0 on success. */
static int child_build(void)
{
    ndcl_context *ctx;
    if (ndcl_context_create(NULL, &ctx) != NDCL_SUCCESS) return 2;
    ndcl_build_info bi;
    ndcl_status s = ndcl_context_build(ctx, &bi);
    if (s != NDCL_SUCCESS) fprintf(stderr, "child: %s\n", ndcl_context_last_error(ctx));
    ndcl_context_destroy(ctx); /* before returning: PoCL must be idle at exit */
    return s == NDCL_SUCCESS ? 0 : 1;
}

START_TEST(cache_written_by_two_processes)
{
    char dir[] = "/tmp/ndcl-cache-race-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *old = getenv("NDCL_CACHE_DIR") ? strdup(getenv("NDCL_CACHE_DIR")) : NULL;
    setenv("NDCL_CACHE_DIR", dir, 1);
    /* Fresh processes (fork + exec) rather than forks of this one, which
     * has OpenCL runtime threads already. */
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            execl(self_path, self_path, "--build-cache", (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < 2; i++) {
        int st;
        ck_assert_int_eq(waitpid(pid[i], &st, 0), pid[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "builder %d failed (%d)", i,
                      st);
    }
    ndcl_context *ctx;
    TEST_OK(NULL, ndcl_context_create(NULL, &ctx));
    ndcl_build_info bi;
    TEST_OK(ctx, ndcl_context_build(ctx, &bi));
    ck_assert_msg(bi.from_cache == 1, "a third context rebuilt instead of loading %s",
                  bi.cache_path);
    ndcl_context_destroy(ctx);
    /* No temporary file was left behind; remove the entry and the directory. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls %s | grep -c tmp) -eq 0 && rm -rf %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    if (old)
        setenv("NDCL_CACHE_DIR", old, 1);
    else
        unsetenv("NDCL_CACHE_DIR");
    free(old);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--build-cache") == 0) return child_build();
    self_path = argv[0];
    /* Two cases so CI can run CK_RUN_CASE=threads alone under helgrind. */
    Suite *s = suite_create("concurrency");
    TCase *cache = tcase_create("cache");
    tcase_set_timeout(cache, 900);
    tcase_add_test(cache, cache_written_by_two_processes);
    suite_add_tcase(s, cache);
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, two_contexts_two_threads);
    suite_add_tcase(s, tc);
    return test_run(s);
}
