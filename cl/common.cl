/* common.cl - helpers shared by every kernel file; embedded first. */

/* Tunables have defaults so that each file compiles on its own. */
#ifndef NDCL_WG
#define NDCL_WG 256
#endif

/* Raised (set to 1) by a kernel that meets a non-finite statistic; the
 * host reads it at the next synchronising call. */
#define NDCL_RAISE(flag) atomic_xchg((flag), 1)
