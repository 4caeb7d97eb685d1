/*
 * http.h — the small HTTP server every worker runs: /metrics, /healthz and a few
 * worker-specific pages (the metrics worker's HTML reports).
 *
 * It is libmicrohttpd in its internal polling thread: one thread serves every
 * connection, event-driven, so a slow client never blocks another one; handlers run on
 * that thread and must be quick and thread-safe with respect to the worker (the prom
 * registry and the health flag are). The server is for operators and Prometheus on a
 * trusted network, not the internet, but it still treats requests as hostile: only GET
 * and HEAD (405 otherwise, with Allow), request headers bounded by a per-connection
 * memory limit (431/413 from libmicrohttpd), request bodies refused, a connection limit
 * and an idle timeout per connection, no directory or file access of its own.
 *
 * Routes, in order: GET /metrics renders the registry (Content-Type text/plain;
 * version=0.0.4); GET /healthz answers 200 "ok" or 503 with the reason the worker gave
 * (cl_http_set_health — e.g. "broker unreachable: ..."); then handlers registered with
 * cl_http_add_handler by longest matching path prefix; then 404.
 *
 * http.listen is "host:port" with an IPv4 literal, "[IPv6 literal]:port" or
 * "localhost:port"; port 0 binds an ephemeral port (cl_http_port tells which). The
 * default is 127.0.0.1 on the worker's port, so nothing is exposed by accident; use
 * 0.0.0.0 or [::] in a container.
 */
#ifndef CL_HTTP_H
#define CL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "error.h"
#include "prom.h"
#include "util.h"

typedef struct cl_http cl_http;

typedef struct {
    const char *listen;       /* "127.0.0.1:9464"; required */
    cl_prom *registry;        /* served at /metrics; NULL: /metrics is 404 */
    unsigned max_connections; /* 0: 64 */
    unsigned timeout_s;       /* idle seconds before a connection is closed; 0: 15 */
    size_t max_request_bytes; /* per-connection memory for headers; 0: 32 KiB */
} cl_http_config;

/* A handler's answer. body is a cl_buf the server created (limit 64 MiB). content_type
 * must point to static storage or to memory that outlives the request. */
typedef struct {
    int status;               /* default 200 */
    const char *content_type; /* default "text/plain; charset=utf-8" */
    cl_buf body;
} cl_http_response;

/* path: the decoded request path (query string removed), starting with the prefix.
 * Return CL_OK with resp filled, or an error: the server answers 500 and logs err. */
typedef int (*cl_http_handler)(const char *path, cl_http_response *resp, void *ud, char *err,
                               size_t errlen);

/* Start serving. Binds before returning, so a taken port is an error here. */
int cl_http_start(cl_http **out, const cl_http_config *cfg, char *err, size_t errlen);
/* Stop accepting, close connections, join the thread, free. NULL is fine. */
void cl_http_stop(cl_http *h);

/* The bound port (the ephemeral one when listen asked for port 0). */
uint16_t cl_http_port(const cl_http *h);

/* ok != 0: healthy. reason is copied (at most 255 bytes) and shown on 503. */
void cl_http_set_health(cl_http *h, int ok, const char *reason);

/* Serve every path starting with prefix (must start with '/'; at most 32 handlers).
 * May be called while serving. */
int cl_http_add_handler(cl_http *h, const char *prefix, cl_http_handler fn, void *ud, char *err,
                        size_t errlen);

/* Parse a listen address (exposed for config validation and tests). */
int cl_http_parse_listen(const char *listen, struct sockaddr_storage *addr, socklen_t *addrlen,
                         char *err, size_t errlen);

#endif
