/* status.c - status strings, the last-error message, debug tracing and
 * the version queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

/* Calls that have no context (create, device list) keep their message per
 * thread, so that two threads creating contexts do not see each other's. */
static _Thread_local char thread_error[NDCL_ERRMSG_SIZE];

const char *ndcl_status_string(ndcl_status status)
{
    switch (status) {
    case NDCL_SUCCESS: return "success";
    case NDCL_ERR_INVALID_ARG: return "invalid argument";
    case NDCL_ERR_NO_DEVICE: return "no OpenCL device";
    case NDCL_ERR_OUT_OF_MEMORY: return "out of memory";
    case NDCL_ERR_BUILD: return "kernel build failed";
    case NDCL_ERR_OPENCL: return "OpenCL error";
    case NDCL_ERR_BLAS: return "BLAS error";
    case NDCL_ERR_NUMERICAL: return "non-finite value in statistics";
    case NDCL_ERR_IO: return "file input/output error";
    case NDCL_ERR_FORMAT: return "malformed file";
    case NDCL_ERR_UNSUPPORTED: return "not supported";
    case NDCL_ERR_STATE: return "not allowed in this state";
    case NDCL_ERR_GROUP: return "another rank of the group failed";
    }
    return "unknown status";
}

const char *ndcl_version_string(void)
{
    return NDCL_VERSION_STRING;
}

unsigned ndcl_version_number(void)
{
    return NDCL_VERSION_NUMBER;
}

static char *error_slot(ndcl_context *ctx)
{
    return ctx ? ctx->last_error : thread_error;
}

ndcl_status ndcl_fail(ndcl_context *ctx, ndcl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_slot(ctx), NDCL_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    ndcl_trace("error %d (%s): %s", (int)status, ndcl_status_string(status),
               error_slot(ctx));
    return status;
}

void ndcl_clear_error(ndcl_context *ctx)
{
    error_slot(ctx)[0] = '\0';
}

const char *ndcl_context_last_error(const ndcl_context *ctx)
{
    return ctx ? ctx->last_error : thread_error;
}

void ndcl_trace(const char *fmt, ...)
{
    static int enabled = -1; /* a benign race: every thread computes the same */
    if (enabled < 0) {
        const char *v = getenv("NDCL_DEBUG");
        enabled = v && *v && strcmp(v, "0") != 0;
    }
    if (!enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ndcl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *ndcl_cl_error_name(cl_int err)
{
    switch (err) {
        /* clang-format off */
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
    E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP)
    E(CL_IMAGE_FORMAT_MISMATCH) E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE)
    E(CL_LINK_PROGRAM_FAILURE) E(CL_DEVICE_PARTITION_FAILED)
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE)
    E(CL_INVALID_CONTEXT) E(CL_INVALID_QUEUE_PROPERTIES)
    E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    E(CL_INVALID_IMAGE_SIZE) E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY)
    E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL)
    E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION)
    E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
    E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT)
    E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_MIP_LEVEL)
    E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS)
    E(CL_INVALID_LINKER_OPTIONS) E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
            /* clang-format on */
            case -1001 : return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_UNKNOWN_ERROR";
}

ndcl_status ndcl_fail_cl(ndcl_context *ctx, const char *call, cl_int err)
{
    ndcl_status s = NDCL_ERR_OPENCL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
        err == CL_INVALID_BUFFER_SIZE)
        s = NDCL_ERR_OUT_OF_MEMORY;
    else if (err == CL_BUILD_PROGRAM_FAILURE)
        s = NDCL_ERR_BUILD;
    else if (err == CL_DEVICE_NOT_FOUND || err == -1001 /* no ICD platform */)
        s = NDCL_ERR_NO_DEVICE;
    return ndcl_fail(ctx, s, "%s failed: %s (%d)", call, ndcl_cl_error_name(err), (int)err);
}
