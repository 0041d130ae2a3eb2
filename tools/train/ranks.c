/* ranks.c - ndcl-train's --sync over MPI (ranks.h), or the failures of a
 * build without it. */
#include <stdio.h>
#include <stdlib.h>

#include "ranks.h"

#ifdef NDCL_TRAIN_MPI
#include "ndcl_mpi.h"

bool ranks_init(int *argc, char ***argv, train_ranks *r)
{
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "ndcl-train: --sync: MPI_Init failed\n");
        return false;
    }
    r->on = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &r->size);
    return true;
}

ndcl_status ranks_group(const train_ranks *r, ndcl_group *out)
{
    (void)r;
    return ndcl_mpi_group(MPI_COMM_WORLD, out);
}

void ranks_abort(const train_ranks *r, int status)
{
    if (r->on && r->size > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

void ranks_finalize(train_ranks *r)
{
    if (r->on) MPI_Finalize();
    r->on = false;
}

#else /* no MPI */

bool ranks_init(int *argc, char ***argv, train_ranks *r)
{
    (void)argc;
    (void)argv;
    (void)r;
    fprintf(stderr, "ndcl-train: --sync: this ndcl-train was built without MPI (configure "
                    "with -Dmpi=enabled and Open MPI installed)\n");
    return false;
}

ndcl_status ranks_group(const train_ranks *r, ndcl_group *out)
{
    (void)r;
    (void)out;
    return NDCL_ERR_UNSUPPORTED;
}

void ranks_abort(const train_ranks *r, int status)
{
    (void)r;
    (void)status;
}

void ranks_finalize(train_ranks *r)
{
    (void)r;
}

#endif
