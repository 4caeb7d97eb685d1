/*
 * util.c — clocks, checked parsing, bounded buffers, dates (see util.h).
 *
 * Dates are converted with the proleptic Gregorian "days from civil" algorithm
 * (H. Hinnant) so no time zone or libc locale state is involved: every timestamp
 * closedloop handles is UTC.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int64_t cl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cl_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t cl_mono_ms(void)
{
    return cl_mono_ns() / 1000000;
}

void cl_sleep_ms(int64_t ms)
{
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int cl_parse_int64(const char *s, int64_t *out)
{
    if (!s) return CL_EINVAL;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return CL_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || end == s) return CL_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    if (*end) return CL_EINVAL;
    *out = v;
    return CL_OK;
}

int cl_parse_double(const char *s, double *out)
{
    if (!s) return CL_EINVAL;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return CL_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v)) return CL_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    if (*end) return CL_EINVAL;
    *out = v;
    return CL_OK;
}

int cl_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    if (!s) return CL_EINVAL;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, CL_OK;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, CL_OK;
    }
    return CL_EINVAL;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t yy = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static int days_in_month(int y, unsigned m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return CL_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return CL_OK;
}

static int parse_ymd(const char **p, int64_t *days)
{
    int y, m, d;
    if (digits(p, 4, &y) || **p != '-') return CL_EINVAL;
    (*p)++;
    if (digits(p, 2, &m) || **p != '-') return CL_EINVAL;
    (*p)++;
    if (digits(p, 2, &d)) return CL_EINVAL;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, (unsigned)m)) return CL_EINVAL;
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return CL_OK;
}

int cl_parse_date(const char *s, int32_t *days_out)
{
    if (!s) return CL_EINVAL;
    const char *p = s;
    int64_t days;
    if (parse_ymd(&p, &days) || *p) return CL_EINVAL;
    *days_out = (int32_t)days;
    return CL_OK;
}

void cl_format_date(int32_t days, char out[11])
{
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    unsigned yy = (unsigned)(y < 0 ? 0 : y % 10000);
    const unsigned v[3] = {yy, m, d};
    const int width[3] = {4, 2, 2};
    char *p = out;
    for (int i = 0; i < 3; i++) {
        if (i) *p++ = '-';
        for (int k = width[i] - 1; k >= 0; k--) {
            unsigned x = v[i];
            for (int j = 0; j < k; j++) x /= 10;
            *p++ = (char)('0' + x % 10);
        }
    }
    *p = '\0';
}

int cl_parse_timestamp(const char *s, int64_t *ms_out)
{
    if (!s) return CL_EINVAL;
    const char *p = s;
    int64_t days;
    if (parse_ymd(&p, &days)) return CL_EINVAL;
    int64_t ms = days * 86400000LL;
    if (*p == '\0') return *ms_out = ms, CL_OK;
    if (*p != 'T' && *p != ' ') return CL_EINVAL;
    p++;
    int hh, mm, ss = 0, frac = 0;
    if (digits(&p, 2, &hh) || *p != ':') return CL_EINVAL;
    p++;
    if (digits(&p, 2, &mm)) return CL_EINVAL;
    if (*p == ':') {
        p++;
        if (digits(&p, 2, &ss)) return CL_EINVAL;
        if (*p == '.') {
            p++;
            int n = 0;
            int scale = 100;
            while (isdigit((unsigned char)*p)) {
                if (n < 3) frac += (*p - '0') * scale, scale /= 10;
                n++, p++;
            }
            if (n == 0 || n > 9) return CL_EINVAL;
        }
    }
    if (hh > 23 || mm > 59 || ss > 60) return CL_EINVAL;
    ms += ((int64_t)hh * 3600 + mm * 60 + ss) * 1000 + frac;
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om;
        p++;
        if (digits(&p, 2, &oh)) return CL_EINVAL;
        if (*p == ':') p++;
        if (digits(&p, 2, &om)) return CL_EINVAL;
        if (oh > 23 || om > 59) return CL_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else if (*p) {
        return CL_EINVAL;
    }
    if (*p) return CL_EINVAL;
    *ms_out = ms - offset_min * 60000;
    return CL_OK;
}

void cl_format_timestamp(int64_t ms, char out[32])
{
    int64_t days = ms >= 0 ? ms / 86400000LL : -((-ms + 86399999LL) / 86400000LL);
    int64_t rem = ms - days * 86400000LL;
    cl_format_date((int32_t)days, out);
    snprintf(out + 10, 22, "T%02u:%02u:%02u.%03uZ", (unsigned)(rem / 3600000 % 24),
             (unsigned)(rem / 60000 % 60), (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
}

void cl_buf_init(cl_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit ? limit : ((size_t)1 << 30);
}

static int buf_reserve(cl_buf *b, size_t extra)
{
    if (extra > b->limit || b->len + extra > b->limit) return CL_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return CL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    if (cap > b->limit + 1) cap = b->limit + 1;
    char *p = realloc(b->data, cap);
    if (!p) return CL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return CL_OK;
}

int cl_buf_append(cl_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) != CL_OK) return CL_ENOMEM;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return CL_OK;
}

int cl_buf_printf(cl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return CL_EINVAL;
    if ((size_t)n < sizeof small) return cl_buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) != CL_OK) return CL_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CL_OK;
}

void cl_buf_reset(cl_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void cl_buf_free(cl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int cl_strlcpy(char *dst, const char *src, size_t size)
{
    if (size == 0) return CL_EINVAL;
    size_t n = strlen(src);
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return CL_EINVAL;
    }
    memcpy(dst, src, n + 1);
    return CL_OK;
}

uint64_t cl_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
