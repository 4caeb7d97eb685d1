/*
 * util.h — small helpers every module needs: clocks, checked number parsing,
 * a bounded growable byte buffer, date conversions.
 *
 * Parsing functions never accept trailing garbage, empty strings, NaN/Inf (unless
 * stated) or out-of-range values; they return CL_OK or CL_EINVAL.
 */
#ifndef CL_UTIL_H
#define CL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Wall clock, milliseconds since the Unix epoch (UTC). */
int64_t cl_now_ms(void);
/* Monotonic clock in milliseconds / nanoseconds (for durations and timeouts). */
int64_t cl_mono_ms(void);
int64_t cl_mono_ns(void);
void cl_sleep_ms(int64_t ms);

int cl_parse_int64(const char *s, int64_t *out);
int cl_parse_double(const char *s, double *out); /* finite values only */
int cl_parse_bool(const char *s, int *out);      /* true/false/yes/no/on/off/1/0 */

/* Days since 1970-01-01 <-> "YYYY-MM-DD" (Avro `date`). */
int cl_parse_date(const char *s, int32_t *days_out);
void cl_format_date(int32_t days, char out[11]);
/* ISO-8601 UTC timestamps: accepts "2013-05-20T20:49:32.000+0000", "...Z",
 * "...+02:00", and a bare date (midnight UTC). Returns ms since epoch. */
int cl_parse_timestamp(const char *s, int64_t *ms_out);
/* "2013-05-20T20:49:32.000Z" */
void cl_format_timestamp(int64_t ms, char out[32]);

/* Growable byte buffer with a hard size limit (like curl's dynbuf). */
typedef struct {
    char *data;
    size_t len, cap, limit;  /* limit 0: 1 GiB */
} cl_buf;
void cl_buf_init(cl_buf *b, size_t limit);
int cl_buf_append(cl_buf *b, const void *data, size_t len); /* CL_ENOMEM past limit */
int cl_buf_printf(cl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cl_buf_reset(cl_buf *b);
void cl_buf_free(cl_buf *b);
/* data is always NUL-terminated after an append (not counted in len). */

/* Bounded copy: always NUL-terminates, returns CL_EINVAL if truncated. */
int cl_strlcpy(char *dst, const char *src, size_t size);

/* FNV-1a 64-bit hash (deterministic ids). */
uint64_t cl_hash64(const void *data, size_t len, uint64_t seed);

#endif
