/* ndcl_mpi.c - the MPI binding of layer groups (include/ndcl_mpi.h): the
 * group's allreduce is MPI_Allreduce on the communicator. A library of its
 * own, so that libndcl does not depend on MPI. */
#include <limits.h>
#include <stdint.h>

#include "ndcl_mpi.h"

/* The communicator travels in the group's user pointer as its Fortran
 * handle (an integer in every MPI), so nothing is allocated. */
static MPI_Comm comm_of(void *user)
{
    return MPI_Comm_f2c((MPI_Fint)(intptr_t)user);
}

static ndcl_status allreduce(void *user, double *data, size_t count)
{
    MPI_Comm comm = comm_of(user);
    /* MPI counts are int: larger buffers go in pieces, on every rank alike. */
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        if (MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
            return NDCL_ERR_GROUP;
        data += n;
        count -= (size_t)n;
    }
    return NDCL_SUCCESS;
}

ndcl_status ndcl_mpi_group(MPI_Comm comm, ndcl_group *out)
{
    if (!out || comm == MPI_COMM_NULL) return NDCL_ERR_INVALID_ARG;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) return NDCL_ERR_STATE;
    int size, rank;
    if (MPI_Comm_size(comm, &size) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &rank) != MPI_SUCCESS)
        return NDCL_ERR_INVALID_ARG;
    out->size = size;
    out->rank = rank;
    out->allreduce = allreduce;
    out->user = (void *)(intptr_t)MPI_Comm_c2f(comm);
    return NDCL_SUCCESS;
}

ndcl_status ndcl_mpi_attach(ndcl_layer *layer, MPI_Comm comm)
{
    ndcl_group g;
    ndcl_status s = ndcl_mpi_group(comm, &g);
    if (s != NDCL_SUCCESS) return s;
    return ndcl_layer_set_group(layer, &g);
}
