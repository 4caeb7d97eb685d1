/*
 * error.h — how closedloop reports failure.
 *
 * Errors are values. A function that can fail returns a cl_status (0 on success,
 * a negative CL_E* code otherwise) and, when the caller passes a buffer, writes one
 * human-readable sentence into it that names the input (file:line, topic/partition/
 * offset, HTTP status and Salesforce errorCode, config key and source) and, where it
 * helps, what to do. Only main() decides to exit.
 *
 *     char err[CL_ERRLEN];
 *     if (cl_store_open(&store, path, &opts, err, sizeof err) != CL_OK)
 *         cl_log(CL_LOG_ERROR, "store_open_failed", "path=%s error=\"%s\"", path, err);
 *
 * cl_seterr() accepts a NULL buffer, so callers that do not care may pass NULL, 0.
 */
#ifndef CL_ERROR_H
#define CL_ERROR_H

#include <stddef.h>

#define CL_ERRLEN 512

typedef enum {
    CL_OK = 0,
    CL_ERR = -1,        /* generic failure; the message says what */
    CL_EINVAL = -2,     /* bad input: parse error, value out of range */
    CL_ENOMEM = -3,     /* allocation failed or a bound was exceeded */
    CL_EIO = -4,        /* file system or network I/O failed */
    CL_ETIMEOUT = -5,   /* a deadline passed */
    CL_ENOTFOUND = -6,  /* key, schema id, file ... does not exist */
    CL_EAGAIN = -7,     /* transient: retry later (backoff) */
    CL_EFULL = -8,      /* storage full (LMDB map / disk) */
    CL_ECONFLICT = -9,  /* state disagrees with input (e.g. fingerprint mismatch) */
    CL_ESTOP = -10,     /* stopped on request (signal, quota); not a fault */
} cl_status;

/* Formats into err (if err != NULL && errlen > 0), always NUL-terminated, and
 * returns `status` so that `return cl_seterr(err, n, CL_EINVAL, "...")` reads well. */
int cl_seterr(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Name of a status code, e.g. "EINVAL". */
const char *cl_status_name(int status);

#endif
