/* run_sync.c - ndcl-run's --sync over MPI (run_sync.h), or the stubs of a
 * build without it. */
#include <stdio.h>

#include "run_sync.h"

#ifdef NDCL_RUN_MPI
#include <limits.h>

#include "ndcl_mpi.h"

bool run_sync_built(void)
{
    return true;
}

bool run_sync_init(int *argc, char ***argv, run_sync *s)
{
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "ndcl-run: --sync: MPI_Init failed\n");
        return false;
    }
    s->on = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &s->size);
    return true;
}

int run_sync_agree(const run_sync *s, int rc)
{
    int all = rc;
    if (MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return rc ? rc : 1;
    (void)s;
    return all;
}

ndcl_status run_sync_attach(const run_sync *s, ndcl_layer *layer)
{
    (void)s;
    return ndcl_mpi_attach(layer, MPI_COMM_WORLD);
}

bool run_sync_equal(const run_sync *s, const unsigned long long *v, int n)
{
    (void)s;
    unsigned long long lo[8], hi[8];
    if (n > 8) return false;
    if (MPI_Allreduce(v, lo, n, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD) !=
            MPI_SUCCESS ||
        MPI_Allreduce(v, hi, n, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
        return false;
    for (int i = 0; i < n; i++)
        if (lo[i] != hi[i]) return false;
    return true;
}

bool run_sync_gather(const run_sync *s, const float *part, size_t n, float *all)
{
    (void)s;
    if (n > INT_MAX) return false;
    return MPI_Gather(part, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD) ==
           MPI_SUCCESS;
}

bool run_sync_sum(const run_sync *s, const float *part, size_t n, float *sum)
{
    (void)s;
    if (n > INT_MAX) return false; /* n is every rank's: all return alike */
    return MPI_Reduce(part, sum, (int)n, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD) ==
           MPI_SUCCESS;
}

void run_sync_finalize(run_sync *s)
{
    if (s->on) MPI_Finalize();
    s->on = false;
}

#else /* no MPI */

bool run_sync_built(void)
{
    return false;
}

bool run_sync_init(int *argc, char ***argv, run_sync *s)
{
    (void)argc;
    (void)argv;
    (void)s;
    fprintf(stderr, "ndcl-run: --sync: this ndcl-run was built without MPI (configure with "
                    "-Dmpi=enabled and Open MPI installed)\n");
    return false;
}

int run_sync_agree(const run_sync *s, int rc)
{
    (void)s;
    return rc;
}

ndcl_status run_sync_attach(const run_sync *s, ndcl_layer *layer)
{
    (void)s;
    (void)layer;
    return NDCL_ERR_UNSUPPORTED;
}

bool run_sync_equal(const run_sync *s, const unsigned long long *v, int n)
{
    (void)s;
    (void)v;
    (void)n;
    return true;
}

bool run_sync_gather(const run_sync *s, const float *part, size_t n, float *all)
{
    (void)s;
    (void)part;
    (void)n;
    (void)all;
    return false;
}

bool run_sync_sum(const run_sync *s, const float *part, size_t n, float *sum)
{
    (void)s;
    (void)part;
    (void)n;
    (void)sum;
    return false;
}

void run_sync_finalize(run_sync *s)
{
    (void)s;
}

#endif
