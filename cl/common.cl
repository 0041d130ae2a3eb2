/* common.cl - helpers shared by every kernel file; embedded first. */

/* Tunables have defaults so that each file compiles on its own. */
#ifndef NDCL_WG
#define NDCL_WG 256
#endif

/* Raised (set to 1) by a kernel that meets a non-finite statistic; the
 * host reads it at the next synchronising call. */
#define NDCL_RAISE(flag) atomic_xchg((flag), 1)

/* q / d for 0 <= q < 2^31 and 1 <= d, exact, without an integer division
 * (which a CPU does not vectorise, and which PoCL does not hoist out of
 * its loop over work-items): a float estimate, refined once from the
 * remainder, then corrected by one (inv = 1/d). */
inline int ndcl_div(const int q, const int d, const float inv)
{
    int r = convert_int_rtz((float)q * inv);
    r += convert_int_rtn((float)(q - (long)r * d) * inv);
    const long rem = q - (long)r * d;
    return r + (rem >= d) - (rem < 0);
}
