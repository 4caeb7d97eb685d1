/*
 * log.h — one line per event, key=value (logfmt) or JSON, with levels and redaction.
 *
 * Every call names an event (a short snake_case word that an operator can grep for)
 * and optional fields written as logfmt pairs:
 *
 *     cl_log(CL_LOG_INFO, "run_published", "file=%s rows=%zu rejected=%zu", f, n, bad);
 *
 * logfmt output:  ts=2026-11-28T02:31:46.123Z level=info worker=snapshot event=run_published file=a.csv rows=10 rejected=0
 * json output:    {"ts":"...","level":"info","worker":"snapshot","event":"run_published","file":"a.csv","rows":"10","rejected":"0"}
 *
 * Field values containing spaces must be quoted in the format ("error=\"%s\"");
 * cl_log escapes quotes and newlines inside them so one event stays one line.
 *
 * Secrets never reach the output: values of fields whose key contains "token",
 * "secret", "password", "private_key", "authorization" or "assertion" are replaced by
 * "[redacted]", and any string registered with cl_log_add_secret() is masked wherever
 * it appears in a line. The config module registers the values of secret options.
 *
 * Thread-safe: each line is written with a single write(2) to the log stream (stderr).
 */
#ifndef CL_LOG_H
#define CL_LOG_H

#include <stdio.h>

typedef enum { CL_LOG_DEBUG = 0, CL_LOG_INFO, CL_LOG_WARN, CL_LOG_ERROR } cl_log_level;
typedef enum { CL_LOG_LOGFMT = 0, CL_LOG_JSON } cl_log_format;

/* worker: the component name printed in every line (e.g. "join"). */
void cl_log_init(const char *worker, cl_log_level level, cl_log_format format);
void cl_log_set_level(cl_log_level level);
/* Parse "debug|info|warn|error" / "logfmt|json"; return 0 or CL_EINVAL. */
int cl_log_parse_level(const char *s, cl_log_level *out);
int cl_log_parse_format(const char *s, cl_log_format *out);
/* Redirect output (tests); NULL restores stderr. */
void cl_log_set_stream(FILE *stream);
/* Mask every occurrence of `secret` (copied; strings shorter than 4 chars are ignored).
 * The newest 32 secrets are kept; registering more forgets the oldest. */
void cl_log_add_secret(const char *secret);
int cl_log_enabled(cl_log_level level);

void cl_log(cl_log_level level, const char *event, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
