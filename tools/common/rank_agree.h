/* rank_agree.h - the start-up agreement of the ranks of an ndcl-run or
 * ndcl-train --sync job: one collective in which every rank reports its
 * readiness (its files read, its device up) and the settings that must be
 * the same on every rank, so that the job either starts on every rank or
 * stops on every rank, the failing rank and its reason named. */
#ifndef NDCL_TOOLS_RANK_AGREE_H
#define NDCL_TOOLS_RANK_AGREE_H

#include <stdbool.h>
#include <stddef.h>

enum { RANK_REASON_MAX = 512, RANK_SETTINGS_MAX = 1024 };

/* Compares two settings texts "key=value;key=value;..." (the same keys in
 * the same order); false when they agree, else true with the first
 * difference ("--seed 1 on rank 0, 2 on rank 3") in out. */
bool rank_settings_differ(const char *mine, int my_rank, const char *theirs, int their_rank,
                          char *out, size_t n);

/* The collective (MPI_COMM_WORLD; every rank calls it once, at the same
 * point): this rank's status (0 ready, else its exit status), the reason
 * when it is not ready, and its settings. Returns the job's status: 0 when
 * every rank is ready and agrees with rank 0, else the largest status (2
 * for a disagreement) on every rank, with why naming the first rank that
 * failed or disagrees and the reason. A build without MPI returns status. */
int rank_agree(int rank, int size, int status, const char *reason, const char *settings,
               char *why, size_t n);

/* Ends every rank of the job now with status, after this rank printed why
 * (MPI_Abort: no rank is left waiting in a collective). Returns only
 * without MPI or outside a job. */
void rank_abort_all(int size, int status);

#endif
