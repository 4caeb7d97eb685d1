/*
 * log.c — structured one-line logging (see log.h).
 *
 * A line is assembled in a stack buffer: the caller's logfmt fields are first
 * formatted, then tokenized into key/value pairs so that the same event can be
 * written as logfmt or JSON, redacted by key, and masked for registered secrets.
 * The final line is emitted with one write(2) so concurrent threads never interleave.
 */
#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

#define LOG_LINE_MAX 8192
#define LOG_FIELDS_MAX 4096
#define LOG_SECRETS_MAX 32

static struct {
    char worker[64];
    cl_log_level level;
    cl_log_format format;
    FILE *stream;
    pthread_mutex_t lock;
    char *secrets[LOG_SECRETS_MAX];
    size_t nsecrets;
} g_log = {.worker = "closedloop", .level = CL_LOG_INFO, .lock = PTHREAD_MUTEX_INITIALIZER};

static const char *level_names[] = {"debug", "info", "warn", "error"};

void cl_log_init(const char *worker, cl_log_level level, cl_log_format format)
{
    cl_strlcpy(g_log.worker, worker ? worker : "closedloop", sizeof g_log.worker);
    g_log.level = level;
    g_log.format = format;
}

void cl_log_set_level(cl_log_level level)
{
    g_log.level = level;
}

int cl_log_parse_level(const char *s, cl_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, level_names[i]) == 0) return *out = (cl_log_level)i, CL_OK;
    if (s && strcmp(s, "warning") == 0) return *out = CL_LOG_WARN, CL_OK;
    return CL_EINVAL;
}

int cl_log_parse_format(const char *s, cl_log_format *out)
{
    if (s && (strcmp(s, "logfmt") == 0 || strcmp(s, "kv") == 0)) return *out = CL_LOG_LOGFMT, CL_OK;
    if (s && strcmp(s, "json") == 0) return *out = CL_LOG_JSON, CL_OK;
    return CL_EINVAL;
}

void cl_log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.stream = stream;
    pthread_mutex_unlock(&g_log.lock);
}

void cl_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4) return;
    pthread_mutex_lock(&g_log.lock);
    for (size_t i = 0; i < g_log.nsecrets; i++)
        if (strcmp(g_log.secrets[i], secret) == 0) goto out;
    char *copy = strdup(secret);
    if (!copy) goto out;
    if (g_log.nsecrets == LOG_SECRETS_MAX) {
        /* Full (e.g. many re-issued tokens): forget the oldest, which expired long ago. */
        free(g_log.secrets[0]);
        memmove(g_log.secrets, g_log.secrets + 1, (LOG_SECRETS_MAX - 1) * sizeof *g_log.secrets);
        g_log.nsecrets--;
    }
    g_log.secrets[g_log.nsecrets++] = copy;
out:
    pthread_mutex_unlock(&g_log.lock);
}

int cl_log_enabled(cl_log_level level)
{
    return level >= g_log.level;
}

static int is_secret_key(const char *key, size_t len)
{
    static const char *words[] = {"token", "secret", "password", "private_key",
                                  "authorization", "assertion", "passwd"};
    char lower[128];
    if (len >= sizeof lower) len = sizeof lower - 1;
    for (size_t i = 0; i < len; i++) lower[i] = (char)tolower((unsigned char)key[i]);
    lower[len] = '\0';
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strstr(lower, words[i])) return 1;
    return 0;
}

typedef struct {
    char buf[LOG_LINE_MAX];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof l->buf - 2) n = sizeof l->buf - 2 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Writes a value, escaped for the output format. `quote`: logfmt quoting needed. */
static void put_value(line *l, const char *v, size_t n)
{
    if (g_log.format == CL_LOG_JSON) {
        put(l, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)v[i];
            char esc[8];
            if (c == '"' || c == '\\') {
                esc[0] = '\\', esc[1] = (char)c;
                put(l, esc, 2);
            } else if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(l, esc, 6);
            } else {
                put(l, (const char *)&v[i], 1);
            }
        }
        put(l, "\"", 1);
        return;
    }
    int needs_quote = n == 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] == ' ' || v[i] == '=' || v[i] == '"' || (unsigned char)v[i] < 0x20) needs_quote = 1;
    if (!needs_quote) return put(l, v, n);
    put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c < 0x20) {
            put(l, " ", 1);
        } else {
            put(l, (const char *)&v[i], 1);
        }
    }
    put(l, "\"", 1);
}

static void put_field(line *l, const char *k, size_t kn, const char *v, size_t vn)
{
    if (g_log.format == CL_LOG_JSON) {
        put(l, ",", 1);
        put_value(l, k, kn);
        put(l, ":", 1);
    } else {
        put(l, " ", 1);
        put(l, k, kn);
        put(l, "=", 1);
    }
    if (is_secret_key(k, kn)) put_value(l, "[redacted]", 10);
    else put_value(l, v, vn);
}

/* Tokenizes logfmt `k=v k2="v 2"` into fields; a bare word becomes msg=word. */
static void put_fields(line *l, const char *f)
{
    char unq[LOG_FIELDS_MAX];
    while (*f) {
        while (*f == ' ') f++;
        if (!*f) break;
        const char *k = f;
        while (*f && *f != '=' && *f != ' ') f++;
        size_t kn = (size_t)(f - k);
        if (*f != '=') {
            put_field(l, "msg", 3, k, kn);
            continue;
        }
        f++;
        size_t un = 0;
        if (*f == '"') {
            f++;
            /* The closing quote is the one followed by a space or the end, so a
             * value formatted with %s may itself contain quotes. */
            while (*f && !(*f == '"' && (f[1] == ' ' || f[1] == '\0'))) {
                if (un < sizeof unq - 1) unq[un++] = *f;
                f++;
            }
            if (*f == '"') f++;
        } else {
            while (*f && *f != ' ') {
                if (un < sizeof unq - 1) unq[un++] = *f;
                f++;
            }
        }
        put_field(l, k, kn, unq, un);
    }
}

static void mask_secrets(line *l)
{
    for (size_t s = 0; s < g_log.nsecrets; s++) {
        const char *secret = g_log.secrets[s];
        size_t n = strlen(secret);
        char *p = l->buf;
        while ((p = memmem(p, l->len - (size_t)(p - l->buf), secret, n)) != NULL)
            memset(p, '*', n), p += n;
    }
}

void cl_log(cl_log_level level, const char *event, const char *fields_fmt, ...)
{
    if (level < g_log.level) return;
    char fields[LOG_FIELDS_MAX] = "";
    if (fields_fmt && *fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        vsnprintf(fields, sizeof fields, fields_fmt, ap);
        va_end(ap);
    }
    char ts[32];
    cl_format_timestamp(cl_now_ms(), ts);
    line l = {.len = 0};
    if (g_log.format == CL_LOG_JSON) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        puts_(&l, "\"");
        put_field(&l, "worker", 6, g_log.worker, strlen(g_log.worker));
        put_field(&l, "event", 5, event, strlen(event));
        put_fields(&l, fields);
        put(&l, "}", 1);
    } else {
        puts_(&l, "ts=");
        puts_(&l, ts);
        puts_(&l, " level=");
        puts_(&l, level_names[level]);
        put_field(&l, "worker", 6, g_log.worker, strlen(g_log.worker));
        put_field(&l, "event", 5, event, strlen(event));
        put_fields(&l, fields);
    }
    pthread_mutex_lock(&g_log.lock);
    mask_secrets(&l);
    l.buf[l.len++] = '\n';
    if (g_log.stream) {
        fwrite(l.buf, 1, l.len, g_log.stream);
        fflush(g_log.stream);
    } else {
        ssize_t off = 0;
        while ((size_t)off < l.len) {
            ssize_t w = write(STDERR_FILENO, l.buf + off, l.len - (size_t)off);
            if (w <= 0) break;
            off += w;
        }
    }
    pthread_mutex_unlock(&g_log.lock);
}
