/*
 * http.c — libmicrohttpd server for /metrics, /healthz and registered handlers.
 *
 * The daemon runs in MHD's internal polling thread; the worker thread only touches the
 * health flag and the handler table, both under h->lock. Handlers are looked up under
 * the lock and called without it, so a handler may take its own locks (the prom registry)
 * without ordering concerns. Every response body is copied into MHD (MUST_COPY), so no
 * buffer outlives the call that built it.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HANDLERS_MAX 32
#define REASON_MAX 256
#define BODY_LIMIT (64u << 20)
#define TEXT_PLAIN "text/plain; charset=utf-8"

typedef struct {
    char *prefix;
    size_t len;
    cl_http_handler fn;
    void *ud;
} handler;

struct cl_http {
    struct MHD_Daemon *daemon;
    cl_prom *registry;
    uint16_t port;
    pthread_mutex_t lock;
    int healthy;
    char reason[REASON_MAX];
    handler handlers[HANDLERS_MAX];
    size_t nhandlers;
    char last_error[CL_ERRLEN]; /* last message from MHD's logger (bind failures) */
};

int cl_http_parse_listen(const char *listen, struct sockaddr_storage *addr, socklen_t *addrlen,
                         char *err, size_t errlen)
{
    if (!listen || !*listen)
        return cl_seterr(err, errlen, CL_EINVAL, "http.listen is empty (want host:port)");
    size_t n = strnlen(listen, 128);
    if (n >= 128) return cl_seterr(err, errlen, CL_EINVAL, "http.listen is too long");
    char host[128];
    const char *port_str;
    int v6 = 0;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return cl_seterr(err, errlen, CL_EINVAL,
                             "http.listen '%s': an IPv6 address is written [addr]:port", listen);
        size_t hl = (size_t)(close - listen - 1);
        memcpy(host, listen + 1, hl);
        host[hl] = '\0';
        port_str = close + 2;
        v6 = 1;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || colon == listen)
            return cl_seterr(err, errlen, CL_EINVAL, "http.listen '%s': want host:port", listen);
        if (memchr(listen, ':', (size_t)(colon - listen)))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "http.listen '%s': write an IPv6 address as [addr]:port", listen);
        size_t hl = (size_t)(colon - listen);
        memcpy(host, listen, hl);
        host[hl] = '\0';
        port_str = colon + 1;
    }
    int64_t port;
    if (cl_parse_int64(port_str, &port) != CL_OK || port < 0 || port > 65535)
        return cl_seterr(err, errlen, CL_EINVAL, "http.listen '%s': port must be 0..65535", listen);
    memset(addr, 0, sizeof *addr);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "http.listen '%s': '%s' is not an IPv6 address", listen, host);
        *addrlen = sizeof *a;
        return CL_OK;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)addr;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "http.listen '%s': '%s' is not an IPv4 address, [IPv6] or localhost",
                         listen, host);
    *addrlen = sizeof *a;
    return CL_OK;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    cl_http *h = cls;
    char msg[CL_ERRLEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    pthread_mutex_lock(&h->lock);
    cl_strlcpy(h->last_error, msg, sizeof h->last_error);
    pthread_mutex_unlock(&h->lock);
    cl_log(CL_LOG_WARN, "http_server_error", "error=\"%s\"", msg);
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status,
                               const char *content_type, const char *body, size_t len, int no_store)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (no_store) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return respond(conn, status, TEXT_PLAIN, text, strlen(text), 1);
}

static enum MHD_Result serve_metrics(cl_http *h, struct MHD_Connection *conn)
{
    cl_buf body;
    cl_buf_init(&body, BODY_LIMIT);
    int rc = cl_prom_render(h->registry, &body);
    enum MHD_Result ret;
    if (rc == CL_OK) {
        ret = respond(conn, MHD_HTTP_OK, CL_PROM_CONTENT_TYPE, body.data ? body.data : "", body.len,
                      1);
    } else {
        cl_log(CL_LOG_ERROR, "metrics_render_failed", "error=%s", cl_status_name(rc));
        ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics rendering failed\n");
    }
    cl_buf_free(&body);
    return ret;
}

static enum MHD_Result serve_health(cl_http *h, struct MHD_Connection *conn)
{
    char body[REASON_MAX + 32];
    pthread_mutex_lock(&h->lock);
    int ok = h->healthy;
    if (!ok) snprintf(body, sizeof body, "unhealthy: %s\n", h->reason);
    pthread_mutex_unlock(&h->lock);
    if (ok) return respond_text(conn, MHD_HTTP_OK, "ok\n");
    return respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

/* "/reports" matches "/reports" and "/reports/..."; "/reports/" matches "/reports/...". */
static int prefix_matches(const handler *hd, const char *path)
{
    if (strncmp(path, hd->prefix, hd->len) != 0) return 0;
    return hd->prefix[hd->len - 1] == '/' || path[hd->len] == '\0' || path[hd->len] == '/';
}

static enum MHD_Result serve_handler(cl_http *h, struct MHD_Connection *conn, const char *path)
{
    handler found = {0};
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nhandlers; i++)
        if (prefix_matches(&h->handlers[i], path) && h->handlers[i].len > found.len)
            found = h->handlers[i];
    pthread_mutex_unlock(&h->lock);
    if (!found.fn) return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");

    cl_http_response resp = {.status = MHD_HTTP_OK, .content_type = TEXT_PLAIN};
    cl_buf_init(&resp.body, BODY_LIMIT);
    char err[CL_ERRLEN] = "";
    int rc = found.fn(path, &resp, found.ud, err, sizeof err);
    enum MHD_Result ret;
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "http_handler_failed", "path=\"%.200s\" status=%s error=\"%s\"", path,
               cl_status_name(rc), err);
        ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
    } else {
        unsigned status = resp.status >= 100 && resp.status <= 599 ? (unsigned)resp.status : 500;
        ret = respond(conn, status, resp.content_type ? resp.content_type : TEXT_PLAIN,
                      resp.body.data ? resp.body.data : "", resp.body.len, 0);
    }
    cl_buf_free(&resp.body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    cl_http *h = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    int head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    /* Answer on the first call, before any body is read: no route takes a body, and
     * MHD closes the connection instead of reading an unread one. */
    *upload_data_size = 0;
    if (!get && !head)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *chunked = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if ((length && strcmp(length, "0") != 0) || chunked)
        return respond_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request bodies are not accepted\n");
    if (!url || url[0] != '/') return respond_text(conn, MHD_HTTP_BAD_REQUEST, "bad request\n");
    if (strcmp(url, "/metrics") == 0 && h->registry) return serve_metrics(h, conn);
    if (strcmp(url, "/healthz") == 0) return serve_health(h, conn);
    return serve_handler(h, conn, url);
}

int cl_http_start(cl_http **out, const cl_http_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int rc = cl_http_parse_listen(cfg->listen, &addr, &addrlen, err, errlen);
    if (rc != CL_OK) return rc;
    cl_http *h = calloc(1, sizeof *h);
    if (!h) return cl_seterr(err, errlen, CL_ENOMEM, "http: out of memory");
    pthread_mutex_init(&h->lock, NULL);
    h->registry = cfg->registry;
    h->healthy = 1;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned max_conn = cfg->max_connections ? cfg->max_connections : 64;
    unsigned timeout = cfg->timeout_s ? cfg->timeout_s : 15;
    size_t mem = cfg->max_request_bytes ? cfg->max_request_bytes : 32 * 1024;
    h->daemon = MHD_start_daemon(
        flags,
        ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                         : ((struct sockaddr_in *)&addr)->sin_port),
        NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, max_conn,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_END);
    if (!h->daemon) {
        rc = cl_seterr(err, errlen, CL_EIO, "http.listen %s: cannot start the server: %s",
                       cfg->listen, h->last_error[0] ? h->last_error : "bind failed");
        pthread_mutex_destroy(&h->lock);
        free(h);
        return rc;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : 0;
    cl_log(CL_LOG_INFO, "http_listening", "listen=%s port=%u", cfg->listen, (unsigned)h->port);
    *out = h;
    return CL_OK;
}

void cl_http_stop(cl_http *h)
{
    if (!h) return;
    if (h->daemon) MHD_stop_daemon(h->daemon);
    for (size_t i = 0; i < h->nhandlers; i++)
        free(h->handlers[i].prefix);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

uint16_t cl_http_port(const cl_http *h)
{
    return h->port;
}

void cl_http_set_health(cl_http *h, int ok, const char *reason)
{
    pthread_mutex_lock(&h->lock);
    int changed = h->healthy != (ok != 0);
    h->healthy = ok != 0;
    if (ok)
        h->reason[0] = '\0';
    else
        snprintf(h->reason, sizeof h->reason, "%s", reason && *reason ? reason : "unhealthy");
    pthread_mutex_unlock(&h->lock);
    if (changed)
        cl_log(ok ? CL_LOG_INFO : CL_LOG_WARN, "health_changed", "healthy=%s reason=\"%s\"",
               ok ? "true" : "false", ok ? "" : (reason ? reason : ""));
}

int cl_http_add_handler(cl_http *h, const char *prefix, cl_http_handler fn, void *ud, char *err,
                        size_t errlen)
{
    if (!prefix || prefix[0] != '/' || !fn)
        return cl_seterr(err, errlen, CL_EINVAL, "http handler prefix '%.64s' must start with '/'",
                         prefix ? prefix : "(null)");
    if (strcmp(prefix, "/metrics") == 0 || strcmp(prefix, "/healthz") == 0)
        return cl_seterr(err, errlen, CL_ECONFLICT, "http handler prefix %s is built in", prefix);
    char *copy = strdup(prefix);
    if (!copy) return cl_seterr(err, errlen, CL_ENOMEM, "http: out of memory");
    pthread_mutex_lock(&h->lock);
    int rc = CL_OK;
    for (size_t i = 0; i < h->nhandlers && rc == CL_OK; i++)
        if (strcmp(h->handlers[i].prefix, prefix) == 0)
            rc = cl_seterr(err, errlen, CL_ECONFLICT, "http handler prefix %s already registered",
                           prefix);
    if (rc == CL_OK && h->nhandlers == HANDLERS_MAX)
        rc = cl_seterr(err, errlen, CL_ENOMEM, "http: more than %d handlers", HANDLERS_MAX);
    if (rc == CL_OK) h->handlers[h->nhandlers++] = (handler){copy, strlen(copy), fn, ud};
    pthread_mutex_unlock(&h->lock);
    if (rc != CL_OK) free(copy);
    return rc;
}
