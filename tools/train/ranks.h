/* ranks.h - ndcl-train's --sync: the ranks of an MPI job (mpirun -n K)
 * train one network data-parallel; MPI's calls when the tool is built with
 * it (NDCL_TRAIN_MPI), "not built" failures otherwise. */
#ifndef TRAIN_RANKS_H
#define TRAIN_RANKS_H

#include <stdbool.h>

#include "ndcl.h"

typedef struct train_ranks {
    bool on; /* MPI initialised by ranks_init */
    int rank, size;
} train_ranks;

/* MPI_Init and the world's rank and size; false (message on stderr) on
 * failure or in a build without MPI. */
bool ranks_init(int *argc, char ***argv, train_ranks *r);

/* The world as an ndcl group (ndcl_mpi_group): the layers' statistics and
 * the tool's gradient sums go through it. */
ndcl_status ranks_group(const train_ranks *r, ndcl_group *out);

/* Ends the whole job with status: a rank that fails in the middle of
 * training must not leave the others waiting in a collective. */
void ranks_abort(const train_ranks *r, int status);

/* MPI_Finalize when ranks_init succeeded. */
void ranks_finalize(train_ranks *r);

#endif
