/*
 * retry.c — backoff schedule, retry decisions and failure classification (contract
 * in retry.h).
 */
#include "retry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "util.h"

#define RNG_FALLBACK 0x9E3779B97F4A7C15ull
#define ONE_YEAR_MS (366LL * 24 * 3600 * 1000)
#define SLEEP_SLICE_MS 100

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s ? *s : RNG_FALLBACK;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* splitmix64: turns a weak seed (a clock reading, a small test constant) into a
 * well-mixed, non-zero xorshift state. */
static uint64_t mix_seed(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : RNG_FALLBACK;
}

/* Uniform in [lo, hi] (lo <= hi). The modulo bias is at most (hi - lo) / 2^64. */
static int64_t uniform(uint64_t *rng, int64_t lo, int64_t hi)
{
    if (hi <= lo) return lo;
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(xorshift64(rng) % span);
}

static cl_retry_policy normalised(const cl_retry_policy *p)
{
    cl_retry_policy n = *p;
    if (n.max_attempts < 1) n.max_attempts = 1;
    if (n.base_ms <= 0) n.base_ms = CL_RETRY_DEFAULT_BASE_MS;
    if (n.max_ms <= 0) n.max_ms = CL_RETRY_DEFAULT_MAX_MS;
    if (n.max_ms < n.base_ms) n.max_ms = n.base_ms;
    if (n.deadline_ms < 0) n.deadline_ms = 0;
    if (n.retry_after_max_ms <= 0) n.retry_after_max_ms = n.max_ms;
    if (n.jitter != CL_RETRY_JITTER_DECORRELATED && n.jitter != CL_RETRY_JITTER_NONE)
        n.jitter = CL_RETRY_JITTER_FULL;
    return n;
}

int64_t cl_retry_ceiling_ms(const cl_retry_policy *p, int attempt)
{
    cl_retry_policy n = normalised(p);
    int64_t ceiling = n.base_ms;
    /* Doubling stops at the cap, so this runs at most ~63 times and cannot overflow. */
    for (int i = 1; i < attempt && ceiling < n.max_ms; i++)
        ceiling = ceiling > n.max_ms / 2 ? n.max_ms : ceiling * 2;
    return ceiling < n.max_ms ? ceiling : n.max_ms;
}

/* The delay under n's jitter; prev is the previous delay (decorrelated only). */
static int64_t delay_for(const cl_retry_policy *n, int attempt, int64_t prev, uint64_t *rng)
{
    switch (n->jitter) {
    case CL_RETRY_JITTER_NONE:
        return cl_retry_ceiling_ms(n, attempt);
    case CL_RETRY_JITTER_DECORRELATED: {
        if (prev < n->base_ms) prev = n->base_ms;
        int64_t hi = prev > n->max_ms / 3 ? n->max_ms : prev * 3;
        return uniform(rng, n->base_ms, hi);
    }
    case CL_RETRY_JITTER_FULL:
    default:
        return uniform(rng, 0, cl_retry_ceiling_ms(n, attempt));
    }
}

int64_t cl_retry_backoff_ms(const cl_retry_policy *p, int attempt, uint64_t *rng)
{
    cl_retry_policy n = normalised(p);
    if (attempt < 1) attempt = 1;
    int64_t prev = attempt > 1 ? cl_retry_ceiling_ms(&n, attempt - 1) : n.base_ms;
    return delay_for(&n, attempt, prev, rng);
}

void cl_retry_begin(cl_retry *r, const cl_retry_policy *p, uint64_t seed, int64_t now_ms)
{
    memset(r, 0, sizeof *r);
    r->policy = normalised(p);
    if (seed == 0) seed = (uint64_t)cl_mono_ns() ^ ((uint64_t)(uintptr_t)r << 16);
    r->rng = mix_seed(seed);
    r->started_ms = now_ms;
}

int cl_retry_next(cl_retry *r, int64_t now_ms, int64_t retry_after_ms, int64_t *delay_ms)
{
    *delay_ms = 0;
    r->attempts++;
    if (r->attempts >= r->policy.max_attempts) return CL_EAGAIN;
    int64_t delay = delay_for(&r->policy, r->attempts, r->prev_delay_ms, &r->rng);
    if (retry_after_ms >= 0) {
        int64_t hint = retry_after_ms < r->policy.retry_after_max_ms ? retry_after_ms
                                                                     : r->policy.retry_after_max_ms;
        if (hint > delay) delay = hint;
    }
    if (r->policy.deadline_ms > 0 && delay > cl_retry_remaining_ms(r, now_ms)) return CL_ETIMEOUT;
    r->prev_delay_ms = delay;
    *delay_ms = delay;
    return CL_OK;
}

int64_t cl_retry_remaining_ms(const cl_retry *r, int64_t now_ms)
{
    if (r->policy.deadline_ms <= 0) return INT64_MAX;
    int64_t elapsed = now_ms - r->started_ms;
    if (elapsed < 0) elapsed = 0; /* a caller mixing clocks; never extend the budget */
    return elapsed >= r->policy.deadline_ms ? 0 : r->policy.deadline_ms - elapsed;
}

int cl_retry_sleep(int64_t ms, int (*stop)(void))
{
    int64_t until = cl_mono_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        if (stop && stop()) return CL_ESTOP;
        int64_t left = until - cl_mono_ms();
        if (left <= 0) return CL_OK;
        cl_sleep_ms(left > SLEEP_SLICE_MS ? SLEEP_SLICE_MS : left);
    }
}

/* ---- Retry-After ------------------------------------------------------------------ */

static int parse_digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return CL_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return CL_OK;
}

static int name_index(const char *s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (memcmp(s, names[i], 3) == 0) return i;
    return -1;
}

/* IMF-fixdate, exactly: "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes). */
static int parse_imf_fixdate(const char *s, size_t n, int64_t *ms_out)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (n != 29 || name_index(s, days, 7) < 0 || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' ||
        s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
        memcmp(s + 25, " GMT", 4) != 0)
        return CL_EINVAL;
    int month = name_index(s + 8, months, 12);
    int64_t day, year, hh, mm, ss;
    if (month < 0 || parse_digits(s + 5, 2, &day) != CL_OK ||
        parse_digits(s + 12, 4, &year) != CL_OK || parse_digits(s + 17, 2, &hh) != CL_OK ||
        parse_digits(s + 20, 2, &mm) != CL_OK || parse_digits(s + 23, 2, &ss) != CL_OK || hh > 23 ||
        mm > 59 || ss > 60)
        return CL_EINVAL;
    char date[40]; /* sized for any int, so the compiler can prove no truncation */
    snprintf(date, sizeof date, "%04d-%02d-%02d", (int)year, month + 1, (int)day);
    int32_t epoch_days;
    if (cl_parse_date(date, &epoch_days) != CL_OK) return CL_EINVAL; /* e.g. 31 Feb */
    *ms_out = ((int64_t)epoch_days * 86400 + hh * 3600 + mm * 60 + ss) * 1000;
    return CL_OK;
}

int cl_retry_parse_retry_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms)
{
    if (!value) return CL_EINVAL;
    const char *s = value;
    size_t n = strlen(s);
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n == 0) return CL_EINVAL;
    if (isdigit((unsigned char)s[0])) {
        /* delta-seconds; more than 12 digits is beyond any clamp, so stop counting. */
        int64_t seconds;
        if (n > 12) {
            for (size_t i = 0; i < n; i++)
                if (!isdigit((unsigned char)s[i])) return CL_EINVAL;
            *delay_ms = ONE_YEAR_MS;
            return CL_OK;
        }
        if (parse_digits(s, n, &seconds) != CL_OK) return CL_EINVAL;
        *delay_ms = seconds * 1000 > ONE_YEAR_MS ? ONE_YEAR_MS : seconds * 1000;
        return CL_OK;
    }
    int64_t at_ms;
    if (parse_imf_fixdate(s, n, &at_ms) != CL_OK) return CL_EINVAL;
    int64_t d = at_ms - now_wall_ms;
    *delay_ms = d <= 0 ? 0 : d > ONE_YEAR_MS ? ONE_YEAR_MS : d;
    return CL_OK;
}

/* ---- classification --------------------------------------------------------------- */

int cl_retry_http_status_transient(long status)
{
    if (status == 408 || status == 425 || status == 429) return 1;
    return status >= 500 && status <= 599 && status != 501;
}

int cl_retry_curl_transient(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}
