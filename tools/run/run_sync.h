/* run_sync.h - ndcl-run's --sync: the ranks of an MPI job (mpirun -n K)
 * each take a slice of the batch; these calls are MPI's when ndcl-run is
 * built with it (NDCL_RUN_MPI), and fail as "not built" otherwise. */
#ifndef NDCL_RUN_SYNC_H
#define NDCL_RUN_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "ndcl.h"

typedef struct run_sync {
    bool on; /* MPI initialised by run_sync_init */
    int rank, size;
} run_sync;

/* Whether this ndcl-run was built with MPI. */
bool run_sync_built(void);

/* MPI_Init and the world's rank and size; false (message on stderr) on
 * failure. */
bool run_sync_init(int *argc, char ***argv, run_sync *s);

/* Every rank's exit status so far, the largest (a collective: every rank
 * calls it at the same points). */
int run_sync_agree(const run_sync *s, int rc);

/* Whether every rank passed the same n values (a collective; every rank
 * gets the same answer). False on an MPI error. */
bool run_sync_equal(const run_sync *s, const unsigned long long *v, int n);

/* Attaches the layer to the world (ndcl_mpi_attach). */
ndcl_status run_sync_attach(const run_sync *s, ndcl_layer *layer);

/* Rank 0 receives every rank's n floats in rank order into all (size*n);
 * the others pass all NULL. False on an MPI error. */
bool run_sync_gather(const run_sync *s, const float *part, size_t n, float *all);

/* Rank 0 receives the element-wise sum of every rank's n floats into sum;
 * the others pass sum NULL. False on an MPI error. */
bool run_sync_sum(const run_sync *s, const float *part, size_t n, float *sum);

/* MPI_Finalize when run_sync_init succeeded. */
void run_sync_finalize(run_sync *s);

#endif
