/* ndcl_mpi.h - binds a layer's group (ndcl_layer_set_group in ndcl.h) to
 * an MPI communicator: its ranks synchronise the layer's batch statistics
 * through MPI_Allreduce. Built and installed only when ndcl is configured
 * with MPI (meson option mpi); link with libndcl_mpi (pkg-config ndcl-mpi),
 * which links libndcl and the MPI library. libndcl itself has no MPI in it. */
#ifndef NDCL_MPI_H
#define NDCL_MPI_H

#include <mpi.h>

#include "ndcl.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NDCL_MPI_BUILDING) && defined(__GNUC__)
#define NDCL_MPI_API __attribute__((visibility("default")))
#else
#define NDCL_MPI_API
#endif

/* Fills *out with the group of comm: its size and this process's rank, and
 * an allreduce that sums in place with MPI_Allreduce (MPI_IN_PLACE,
 * MPI_DOUBLE, MPI_SUM) on comm. The communicator is used as it is, not
 * duplicated: ndcl's collectives interleave with the caller's own on it, in
 * the order every rank makes the calls. comm must stay valid while a layer
 * uses the group. An MPI error that comm's error handler returns (the
 * default handler aborts) fails the layer call with NDCL_ERR_GROUP.
 * Fails with NDCL_ERR_STATE when MPI is not initialised (or already
 * finalised) and NDCL_ERR_INVALID_ARG for MPI_COMM_NULL, out NULL or a
 * communicator MPI rejects. */
NDCL_MPI_API ndcl_status ndcl_mpi_group(MPI_Comm comm, ndcl_group *out);

/* ndcl_mpi_group, then ndcl_layer_set_group(layer, &group): the layer's
 * statistics are those of the batch of every rank of comm together. */
NDCL_MPI_API ndcl_status ndcl_mpi_attach(ndcl_layer *layer, MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif /* NDCL_MPI_H */
