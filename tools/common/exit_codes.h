/* exit_codes.h - the one table of exit codes every ndcl tool follows, so
 * that the same cause gives the same code in ndcl-query, ndcl-bench,
 * ndcl-run and ndcl-train. */
#ifndef NDCL_TOOLS_EXIT_CODES_H
#define NDCL_TOOLS_EXIT_CODES_H

#include <stdbool.h>

#include "ndcl.h"

enum {
    TOOL_EXIT_OK = 0,     /* success */
    TOOL_EXIT_DEVICE = 1, /* no usable device, an OpenCL, numerical or self-test failure */
    TOOL_EXIT_USAGE = 2   /* bad arguments or files (named in the message) */
};

/* The exit code of a failed ndcl_context_create: a --device SPEC (or
 * NDCL_DEVICE) that is malformed or matches no device is the argument's
 * fault; no usable device without one, or an OpenCL failure, the
 * machine's. */
static inline int tool_device_exit(ndcl_status status, bool spec_given)
{
    if (status == NDCL_ERR_INVALID_ARG) return TOOL_EXIT_USAGE;
    if (status == NDCL_ERR_NO_DEVICE && spec_given) return TOOL_EXIT_USAGE;
    return TOOL_EXIT_DEVICE;
}

#endif
