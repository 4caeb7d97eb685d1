/*
 * error.c — status codes and the error-buffer convention (see error.h).
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int cl_seterr(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

const char *cl_status_name(int status)
{
    switch (status) {
    case CL_OK: return "OK";
    case CL_ERR: return "ERR";
    case CL_EINVAL: return "EINVAL";
    case CL_ENOMEM: return "ENOMEM";
    case CL_EIO: return "EIO";
    case CL_ETIMEOUT: return "ETIMEOUT";
    case CL_ENOTFOUND: return "ENOTFOUND";
    case CL_EAGAIN: return "EAGAIN";
    case CL_EFULL: return "EFULL";
    case CL_ECONFLICT: return "ECONFLICT";
    case CL_ESTOP: return "ESTOP";
    default: return "UNKNOWN";
    }
}
