/* header_alone.c - compiled by the header suite with the source tree's
 * include/ as the only ndcl include directory: the public headers need
 * nothing that the build generates. */
#include <ndcl.h>
#include <ndcl_cl.h>

_Static_assert(NDCL_VERSION_NUMBER == NDCL_VERSION_MAJOR * 10000 +
                                          NDCL_VERSION_MINOR * 100 + NDCL_VERSION_PATCH,
               "version number");

int header_alone(void);
int header_alone(void)
{
    return ndcl_version_number() == NDCL_VERSION_NUMBER;
}
