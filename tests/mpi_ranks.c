/* mpi_ranks.c - run under mpirun by the mpi suite: every rank attaches a
 * conv layer to MPI_COMM_WORLD (ndcl_mpi_attach) and one rank misbehaves
 * as the scenario in argv[1] says; each rank checks that it got the status
 * the group rules give (ndcl.h), so that nobody waits forever, and prints
 * it. Exit status 0 when every check passed on this rank.
 *   bad-input      rank 1's input has the wrong channel count: it gets
 *                  NDCL_ERR_INVALID_ARG, the others NDCL_ERR_GROUP
 *   shapes-differ  rank 1's images are larger: every rank gets
 *                  NDCL_ERR_INVALID_ARG
 *   bad-dy         rank 1's dy has the wrong shape: its backward gets
 *                  NDCL_ERR_INVALID_ARG, the others' NDCL_ERR_GROUP
 *   ok             every rank succeeds, forward and backward */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndcl_mpi.h"

static int check(int rank, const char *what, ndcl_status got, ndcl_status want,
                 ndcl_context *ctx)
{
    printf("rank %d: %s: %s%s%s\n", rank, what, ndcl_status_string(got), got ? ": " : "",
           got ? ndcl_context_last_error(ctx) : "");
    if (got == want) return 0;
    printf("rank %d: %s: expected %s\n", rank, what, ndcl_status_string(want));
    return 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *sc = argc > 1 ? argv[1] : "ok";
    int bad = rank == 1 && strcmp(sc, "ok") != 0;
    int fails = 0;

    ndcl_context *ctx = NULL;
    ndcl_layer *l = NULL;
    ndcl_tensor *x = NULL, *y = NULL, *dy = NULL, *dx = NULL;
    ndcl_conv2d_desc d = ndcl_conv2d_desc_default(4, 4, 3);
    d.block = 2;
    d.padding = 1;
    size_t xs[4] = {2, 4, 5, 5}, ys[4] = {2, 4, 5, 5};
    if (bad && !strcmp(sc, "bad-input")) xs[1] = 3;
    if (bad && !strcmp(sc, "shapes-differ")) xs[2] = 6;
    if (bad && !strcmp(sc, "bad-dy")) ys[3] = 4;
    float v[2 * 4 * 6 * 5];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        v[i] = (float)((i * 37 + (size_t)rank * 11) % 17) / 8.0f - 1.0f;
    if (ndcl_context_create(NULL, &ctx) != NDCL_SUCCESS ||
        ndcl_conv2d_create(ctx, &d, &l) || ndcl_mpi_attach(l, MPI_COMM_WORLD) ||
        ndcl_tensor_create(ctx, 4, xs, &x) ||
        ndcl_tensor_write(x, v, ndcl_tensor_count(x)) ||
        ndcl_tensor_create(ctx, 4, ys, &dy) ||
        ndcl_tensor_write(dy, v, ndcl_tensor_count(dy))) {
        printf("rank %d: set-up failed: %s\n", rank,
               ctx ? ndcl_context_last_error(ctx) : "no context");
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    ndcl_status s = ndcl_layer_forward(l, NDCL_TRAIN, x, &y);
    if (!strcmp(sc, "bad-input"))
        fails +=
            check(rank, "forward", s, bad ? NDCL_ERR_INVALID_ARG : NDCL_ERR_GROUP, ctx);
    else if (!strcmp(sc, "shapes-differ"))
        fails += check(rank, "forward", s, NDCL_ERR_INVALID_ARG, ctx);
    else
        fails += check(rank, "forward", s, NDCL_SUCCESS, ctx);
    if (s == NDCL_SUCCESS) {
        s = ndcl_layer_backward(l, dy, &dx, NULL, NULL);
        ndcl_status want = strcmp(sc, "bad-dy") ? NDCL_SUCCESS
                           : bad                ? NDCL_ERR_INVALID_ARG
                                                : NDCL_ERR_GROUP;
        fails += check(rank, "backward", s, want, ctx);
    }
    if (ndcl_finish(ctx) != NDCL_SUCCESS) fails++;
    ndcl_tensor_destroy(x);
    ndcl_tensor_destroy(y);
    ndcl_tensor_destroy(dy);
    ndcl_tensor_destroy(dx);
    ndcl_layer_destroy(l);
    ndcl_context_destroy(ctx);
    MPI_Finalize();
    (void)size;
    return fails ? 1 : 0;
}
