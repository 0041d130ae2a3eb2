/* rank_agree.c - the ranks' start-up agreement (rank_agree.h): one
 * MPI_Allgather of every rank's readiness and settings. */
#include "rank_agree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(NDCL_RUN_MPI) || defined(NDCL_TRAIN_MPI)
#define RANK_AGREE_MPI 1
#include <mpi.h>
#endif

/* The next "key=value" of *p (up to ';'), into key and value. */
static bool next_pair(const char **p, char *key, size_t kn, char *val, size_t vn)
{
    const char *s = *p;
    if (!*s) return false;
    const char *end = strchr(s, ';');
    if (!end) end = s + strlen(s);
    const char *eq = memchr(s, '=', (size_t)(end - s));
    if (!eq) eq = end;
    snprintf(key, kn, "%.*s", (int)(eq - s), s);
    snprintf(val, vn, "%.*s", eq < end ? (int)(end - eq - 1) : 0, eq < end ? eq + 1 : "");
    *p = *end ? end + 1 : end;
    return true;
}

bool rank_settings_differ(const char *mine, int my_rank, const char *theirs, int their_rank,
                          char *out, size_t n)
{
    const char *a = mine, *b = theirs;
    char ka[128], va[512], kb[128], vb[512];
    for (;;) {
        bool ha = next_pair(&a, ka, sizeof ka, va, sizeof va);
        bool hb = next_pair(&b, kb, sizeof kb, vb, sizeof vb);
        if (!ha && !hb) return false;
        if (ha != hb || strcmp(ka, kb) != 0) {
            snprintf(out, n, "rank %d and rank %d run different builds or tools", my_rank,
                     their_rank);
            return true;
        }
        if (strcmp(va, vb) != 0) {
            snprintf(out, n,
                     "%s differs between the ranks: \"%s\" on rank %d, \"%s\" on rank %d",
                     ka, va, my_rank, vb, their_rank);
            return true;
        }
    }
}

#ifdef RANK_AGREE_MPI

typedef struct report {
    int status;
    char reason[RANK_REASON_MAX];
    char settings[RANK_SETTINGS_MAX];
} report;

int rank_agree(int rank, int size, int status, const char *reason, const char *settings,
               char *why, size_t n)
{
    report mine;
    memset(&mine, 0, sizeof mine);
    mine.status = status;
    snprintf(mine.reason, sizeof mine.reason, "%s", reason ? reason : "");
    snprintf(mine.settings, sizeof mine.settings, "%s", settings ? settings : "");
    report *all = calloc((size_t)size, sizeof *all);
    /* Every rank must take part even without memory: a rank that cannot
     * ends the job (the others would wait for it). */
    if (!all) {
        fprintf(stderr, "rank %d: out of memory at start-up; ending the job\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    int err = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine,
                            MPI_BYTE, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) {
        free(all);
        snprintf(why, n, "the start-up exchange between the ranks failed");
        return 1;
    }
    int job = 0;
    why[0] = 0;
    for (int k = 0; k < size; k++) {
        if (all[k].status != 0) {
            if (!why[0])
                snprintf(why, n, "rank %d failed: %s", k,
                         all[k].reason[0] ? all[k].reason : "(no reason given)");
            if (all[k].status > job) job = all[k].status;
        }
    }
    /* Settings compared only between ranks that are ready: a failed rank's
     * may be incomplete. */
    for (int k = 1; k < size && !why[0]; k++) {
        char d[RANK_REASON_MAX + 64];
        if (all[0].status == 0 && all[k].status == 0 &&
            rank_settings_differ(all[0].settings, 0, all[k].settings, k, d, sizeof d)) {
            snprintf(why, n, "%s", d);
            if (job < 2) job = 2;
        }
    }
    free(all);
    return job;
}

void rank_abort_all(int size, int status)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    fflush(stdout);
    fflush(stderr);
    if (init && !fin && size > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

#else

int rank_agree(int rank, int size, int status, const char *reason, const char *settings,
               char *why, size_t n)
{
    (void)rank;
    (void)size;
    (void)settings;
    snprintf(why, n, "%s", status && reason ? reason : "");
    return status;
}

void rank_abort_all(int size, int status)
{
    (void)size;
    (void)status;
}

#endif
