/*
 * retry.h — the one retry policy of closedloop: how long to wait before trying a
 * network call again, when to give up, and which failures are worth a retry at all.
 * The schema registry client and the Salesforce client use it; anything else that
 * talks to a server should too, so that operators tune one set of knobs.
 *
 * Shape. A cl_retry_policy says how many tries a call gets, the exponential backoff
 * (base_ms doubling per retry, capped at max_ms), the jitter, an overall deadline,
 * and how far a server's Retry-After is trusted. A cl_retry is one call's progress
 * under a policy: after each failed try the caller asks cl_retry_next() whether to try
 * again and how long to wait first. Time is passed in (monotonic milliseconds) and the
 * random source is a seeded xorshift state, so a test drives the schedule
 * deterministically without sleeping; production passes cl_mono_ms() and seed 0.
 *
 * Jitter. Default is "full jitter": the delay before retry n is uniform in
 * [0, min(max_ms, base_ms * 2^(n-1))]. Marc Brooker's simulation in the AWS
 * architecture blog ("Exponential Backoff And Jitter", 2015) shows that when many
 * clients retry against one overloaded server, full and decorrelated jitter both cut
 * the total work and the completion time far below plain exponential backoff, full
 * jitter doing the least work. It is also stateless, so every delay's bounds are
 * exact and easy to state (and to test). "Decorrelated jitter"
 * (delay = min(max_ms, uniform(base_ms, 3 * previous delay))) is offered for callers
 * that would rather never retry immediately — it never waits less than base_ms — at
 * the price of depending on the previous delay. NONE (the bare ceiling) is for tests
 * and tools, never for a fleet of workers.
 *
 * Server hints. A Retry-After the server sent (429, 503) is a floor, not a
 * suggestion: the delay is max(backoff, Retry-After), but Retry-After is capped at
 * retry_after_max_ms, so a misbehaving proxy that says "come back tomorrow" cannot
 * park a worker; it then retries at the cap and, if still refused, runs out of tries.
 *
 * Deadline. With deadline_ms set, cl_retry_next() refuses (CL_ETIMEOUT) a retry that
 * would start after started + deadline_ms, instead of sleeping past it; callers
 * should also bound each try's own timeout by cl_retry_remaining_ms().
 *
 * What to retry. cl_retry_http_status_transient() and cl_retry_curl_transient() give
 * the common answer (408, 425, 429 and 5xx except 501; timeouts, refused/reset
 * connections, DNS failures). Only idempotent requests, or requests the server
 * deduplicates, may be retried — that judgement stays with the caller.
 */
#ifndef CL_RETRY_H
#define CL_RETRY_H

#include <stdint.h>

#include "error.h"

typedef enum {
    CL_RETRY_JITTER_FULL = 0,     /* uniform in [0, ceiling] (the default) */
    CL_RETRY_JITTER_DECORRELATED, /* uniform in [base, min(max, 3 * previous)] */
    CL_RETRY_JITTER_NONE,         /* the ceiling itself: deterministic, tests only */
} cl_retry_jitter;

#define CL_RETRY_DEFAULT_BASE_MS 100
#define CL_RETRY_DEFAULT_MAX_MS 10000

typedef struct {
    int max_attempts;           /* total tries including the first; < 1: 1 (no retry) */
    int64_t base_ms;            /* first backoff ceiling; <= 0: CL_RETRY_DEFAULT_BASE_MS */
    int64_t max_ms;             /* ceiling cap; <= 0: CL_RETRY_DEFAULT_MAX_MS; < base: base */
    int64_t deadline_ms;        /* whole call budget from cl_retry_begin; <= 0: none */
    cl_retry_jitter jitter;     /* 0: full jitter */
    int64_t retry_after_max_ms; /* cap on a server's Retry-After; <= 0: max_ms */
} cl_retry_policy;

/* The backoff ceiling before retry number `attempt` (1-based, < 1 counts as 1):
 * min(max_ms, base_ms * 2^(attempt-1)), computed without overflow for any attempt. */
int64_t cl_retry_ceiling_ms(const cl_retry_policy *p, int attempt);

/* The delay before retry number `attempt` under p->jitter, drawing from *rng (a
 * xorshift64 state; 0 is replaced by a fixed non-zero constant). Stateless: for
 * DECORRELATED the previous delay is taken to be the ceiling of attempt - 1 (base_ms
 * for the first retry); cl_retry_next() uses the delay it really chose. Always within
 * [0, max_ms]; for DECORRELATED within [base_ms, max_ms]. */
int64_t cl_retry_backoff_ms(const cl_retry_policy *p, int attempt, uint64_t *rng);

/* One call's progress under a policy. Plain data: copy it, put it on the stack. */
typedef struct {
    cl_retry_policy policy; /* normalised copy (defaults applied) */
    uint64_t rng;
    int attempts;          /* tries that failed and were reported to cl_retry_next */
    int64_t prev_delay_ms; /* last delay chosen (decorrelated jitter) */
    int64_t started_ms;    /* monotonic time of cl_retry_begin */
} cl_retry;

/* Starts a call at monotonic time now_ms. seed != 0 makes the delays reproducible;
 * seed 0 draws one from the clock and the address of r (distinct per call and per
 * process, so workers restarted together do not retry in lockstep). */
void cl_retry_begin(cl_retry *r, const cl_retry_policy *p, uint64_t seed, int64_t now_ms);

/*
 * After a failed try, at monotonic time now_ms: may the caller try again, and after
 * how long? retry_after_ms is the server's Retry-After in milliseconds, or < 0 when it
 * sent none (see cl_retry_parse_retry_after).
 *   CL_OK        wait *delay_ms, then try again;
 *   CL_EAGAIN    max_attempts tries have been made: give up;
 *   CL_ETIMEOUT  the retry would start after the deadline: give up.
 * *delay_ms is 0 when the answer is not CL_OK.
 */
int cl_retry_next(cl_retry *r, int64_t now_ms, int64_t retry_after_ms, int64_t *delay_ms);

/* Milliseconds left before the deadline at now_ms (0 once passed), or INT64_MAX when
 * the policy has none. A try's own timeout should not exceed it. */
int64_t cl_retry_remaining_ms(const cl_retry *r, int64_t now_ms);

/* Sleeps ms milliseconds in slices of at most 100 ms, returning CL_ESTOP as soon as
 * stop() (may be NULL) returns non-zero, CL_OK otherwise. */
int cl_retry_sleep(int64_t ms, int (*stop)(void));

/* A Retry-After header value -> milliseconds to wait (RFC 9110 §10.2.3): delta-seconds
 * ("120") or an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", compared with the wall
 * clock now_wall_ms; a date in the past is 0). Surrounding blanks are allowed. Values
 * beyond a year are clamped to a year (the policy's cap applies later anyway).
 * CL_EINVAL for anything else, including the obsolete RFC 850 and asctime forms. */
int cl_retry_parse_retry_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms);

/* Worth retrying: 408, 425, 429, and 500..599 except 501 (Not Implemented will not
 * change). Everything else — success, redirects, other 4xx — is not. */
int cl_retry_http_status_transient(long status);

/* Worth retrying: a libcurl CURLcode for a timeout, DNS failure (host or proxy), a
 * refused or failed connection, a send/receive failure, an empty reply or a transfer
 * cut short (HTTP/2 stream errors included). TLS verification failures, bad URLs,
 * our own write-callback aborts (size limits) and the like are not: retrying cannot
 * fix them. Takes an int so this header does not pull in curl.h. */
int cl_retry_curl_transient(int curl_code);

#endif
