/* Unit tests for common/http: a real server on an ephemeral loopback port, fetched with
 * libcurl: /metrics (body and Content-Type), /healthz flipping to 503 with the reason,
 * 404, 405 with Allow, HEAD, refused request bodies, oversized headers, prefix handlers,
 * handler errors, IPv6, a taken port, and listen-address parsing. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http.h"
#include "log.h"
#include "prom.h"

typedef struct {
    long status;
    char content_type[128];
    char allow[64];
    cl_buf body;
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    return cl_buf_append(&r->body, p, size * n) == CL_OK ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t len = size * n;
    if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0) {
        size_t v = len - 7;
        while (v > 0 && (p[7 + v - 1] == '\r' || p[7 + v - 1] == '\n'))
            v--;
        if (v >= sizeof r->allow) v = sizeof r->allow - 1;
        memcpy(r->allow, p + 7, v);
        r->allow[v] = '\0';
    }
    return len;
}

/* method NULL: GET. */
static void fetch(const char *url, const char *method, const char *body, struct curl_slist *headers,
                  reply *r)
{
    memset(r, 0, sizeof *r);
    cl_buf_init(&r->body, 0);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (method && strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) fail_msg("fetch %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) snprintf(r->content_type, sizeof r->content_type, "%s", ct);
    curl_easy_cleanup(c);
}

static const char *text(reply *r)
{
    return r->body.data ? r->body.data : "";
}

typedef struct {
    cl_prom *reg;
    cl_prom_metric *counter;
    cl_http *http;
    char base[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->reg = cl_prom_new();
    assert_int_equal(cl_prom_counter(f->reg, "demo_records_total", "Records.",
                                     (const char *[]){"result", NULL}, &f->counter, NULL, 0),
                     CL_OK);
    cl_prom_counter_add(f->counter, (const char *[]){"ok"}, 7);
    cl_http_config cfg = {.listen = "127.0.0.1:0", .registry = f->reg};
    char err[CL_ERRLEN];
    if (cl_http_start(&f->http, &cfg, err, sizeof err) != CL_OK) fail_msg("start: %s", err);
    assert_true(cl_http_port(f->http) > 0);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", (unsigned)cl_http_port(f->http));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cl_http_stop(f->http);
    cl_prom_free(f->reg);
    free(f);
    return 0;
}

static void url(char *out, size_t n, const fixture *f, const char *path)
{
    snprintf(out, n, "%s%s", f->base, path);
}

static void test_metrics(void **state)
{
    fixture *f = *state;
    char u[128];
    url(u, sizeof u, f, "/metrics");
    reply r;
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_string_equal(text(&r), "# HELP demo_records_total Records.\n"
                                  "# TYPE demo_records_total counter\n"
                                  "demo_records_total{result=\"ok\"} 7\n");
    cl_buf_free(&r.body);

    /* Values are read at scrape time. */
    cl_prom_counter_add(f->counter, (const char *[]){"ok"}, 1);
    fetch(u, NULL, NULL, NULL, &r);
    assert_non_null(strstr(text(&r), "demo_records_total{result=\"ok\"} 8\n"));
    cl_buf_free(&r.body);

    fetch(u, "HEAD", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    cl_buf_free(&r.body);
}

static void test_health(void **state)
{
    fixture *f = *state;
    char u[128];
    url(u, sizeof u, f, "/healthz");
    reply r;
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(text(&r), "ok\n");
    cl_buf_free(&r.body);

    FILE *devnull = fopen("/dev/null", "w");
    cl_log_set_stream(devnull);
    cl_http_set_health(f->http, 0, "broker unreachable: 127.0.0.1:9092");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(text(&r), "unhealthy: broker unreachable: 127.0.0.1:9092\n");
    cl_buf_free(&r.body);

    cl_http_set_health(f->http, 1, NULL);
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cl_buf_free(&r.body);
    cl_log_set_stream(NULL);
    fclose(devnull);
}

static void test_not_found_and_methods(void **state)
{
    fixture *f = *state;
    char u[128];
    reply r;
    url(u, sizeof u, f, "/nope");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    cl_buf_free(&r.body);

    url(u, sizeof u, f, "/metrics");
    fetch(u, "POST", "x=1", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    cl_buf_free(&r.body);
    fetch(u, "DELETE", NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    cl_buf_free(&r.body);

    /* A GET that carries a body is refused rather than read. */
    fetch(u, "GET", "payload", NULL, &r);
    assert_int_equal(r.status, 413);
    cl_buf_free(&r.body);

    /* Headers past the per-connection memory limit never reach a handler. */
    size_t big = 64 * 1024;
    char *hdr = malloc(big + 16);
    memcpy(hdr, "X-Big: ", 7);
    memset(hdr + 7, 'a', big);
    hdr[7 + big] = '\0';
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    fetch(u, NULL, NULL, h, &r);
    assert_true(r.status == 431 || r.status == 413);
    curl_slist_free_all(h);
    free(hdr);
    cl_buf_free(&r.body);
}

static int report_handler(const char *path, cl_http_response *resp, void *ud, char *err,
                          size_t errlen)
{
    if (strstr(path, "broken")) return cl_seterr(err, errlen, CL_EIO, "cannot read %s", path);
    resp->content_type = "text/html; charset=utf-8";
    if (strcmp(path, "/reports/missing.html") == 0) resp->status = 404;
    return cl_buf_printf(&resp->body, "<html>%s %s</html>", (const char *)ud, path);
}

static int exact_handler(const char *path, cl_http_response *resp, void *ud, char *err,
                         size_t errlen)
{
    return cl_buf_printf(&resp->body, "deeper %s", path);
}

static void test_handlers(void **state)
{
    fixture *f = *state;
    char err[CL_ERRLEN];
    assert_int_equal(cl_http_add_handler(f->http, "/reports", report_handler, "R", err, sizeof err),
                     CL_OK);
    assert_int_equal(
        cl_http_add_handler(f->http, "/reports/lost", exact_handler, NULL, err, sizeof err), CL_OK);
    assert_int_equal(
        cl_http_add_handler(f->http, "/reports", report_handler, NULL, err, sizeof err),
        CL_ECONFLICT);
    assert_int_equal(
        cl_http_add_handler(f->http, "/metrics", report_handler, NULL, err, sizeof err),
        CL_ECONFLICT);
    assert_int_equal(cl_http_add_handler(f->http, "reports", report_handler, NULL, err, sizeof err),
                     CL_EINVAL);

    char u[128];
    reply r;
    url(u, sizeof u, f, "/reports/won.html?x=1");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/html; charset=utf-8");
    assert_string_equal(text(&r), "<html>R /reports/won.html</html>");
    cl_buf_free(&r.body);

    url(u, sizeof u, f, "/reports");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cl_buf_free(&r.body);

    /* Longest prefix wins; a prefix matches whole path segments only. */
    url(u, sizeof u, f, "/reports/lost/index.html");
    fetch(u, NULL, NULL, NULL, &r);
    assert_string_equal(text(&r), "deeper /reports/lost/index.html");
    cl_buf_free(&r.body);
    url(u, sizeof u, f, "/reportsx");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    cl_buf_free(&r.body);

    url(u, sizeof u, f, "/reports/missing.html");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    cl_buf_free(&r.body);

    FILE *devnull = fopen("/dev/null", "w");
    cl_log_set_stream(devnull);
    url(u, sizeof u, f, "/reports/broken");
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 500);
    assert_null(strstr(text(&r), "cannot read")); /* internals stay in the log */
    cl_buf_free(&r.body);
    cl_log_set_stream(NULL);
    fclose(devnull);
}

static void test_port_taken_and_ipv6(void **state)
{
    fixture *f = *state;
    char listen[64], err[CL_ERRLEN];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)cl_http_port(f->http));
    cl_http_config cfg = {.listen = listen};
    cl_http *second = NULL;
    FILE *devnull = fopen("/dev/null", "w");
    cl_log_set_stream(devnull);
    assert_int_equal(cl_http_start(&second, &cfg, err, sizeof err), CL_EIO);
    cl_log_set_stream(NULL);
    fclose(devnull);
    assert_null(second);
    assert_non_null(strstr(err, listen));

    cl_http_config v6 = {.listen = "[::1]:0"};
    cl_http *h6;
    if (cl_http_start(&h6, &v6, err, sizeof err) != CL_OK) fail_msg("ipv6: %s", err);
    char u[64];
    snprintf(u, sizeof u, "http://[::1]:%u/healthz", (unsigned)cl_http_port(h6));
    reply r;
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cl_buf_free(&r.body);
    /* Without a registry there is no /metrics. */
    snprintf(u, sizeof u, "http://[::1]:%u/metrics", (unsigned)cl_http_port(h6));
    fetch(u, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    cl_buf_free(&r.body);
    cl_http_stop(h6);
}

static void test_parse_listen(void **state)
{
    struct sockaddr_storage a;
    socklen_t len;
    char err[CL_ERRLEN];
    assert_int_equal(cl_http_parse_listen("127.0.0.1:9464", &a, &len, err, sizeof err), CL_OK);
    assert_int_equal(a.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&a)->sin_port), 9464);
    assert_int_equal(cl_http_parse_listen("0.0.0.0:0", &a, &len, err, sizeof err), CL_OK);
    assert_int_equal(cl_http_parse_listen("localhost:80", &a, &len, err, sizeof err), CL_OK);
    assert_int_equal(ntohl(((struct sockaddr_in *)&a)->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(cl_http_parse_listen("[::]:9464", &a, &len, err, sizeof err), CL_OK);
    assert_int_equal(a.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(cl_http_parse_listen("[fe80::1]:1", &a, &len, err, sizeof err), CL_OK);

    const char *bad[] = {"",
                         "9464",
                         ":9464",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "::1:9464",
                         "[::1]9464",
                         "[::1:9464",
                         "example.com:80",
                         "300.1.1.1:80",
                         "[127.0.0.1]:80",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        if (cl_http_parse_listen(bad[i], &a, &len, err, sizeof err) != CL_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    }
    assert_int_equal(cl_http_parse_listen(NULL, &a, &len, err, sizeof err), CL_EINVAL);
    char long_addr[300];
    memset(long_addr, '1', sizeof long_addr - 1);
    long_addr[sizeof long_addr - 1] = '\0';
    assert_int_equal(cl_http_parse_listen(long_addr, &a, &len, err, sizeof err), CL_EINVAL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cl_log_init("test", CL_LOG_WARN, CL_LOG_LOGFMT);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_metrics),
        T(test_health),
        T(test_not_found_and_methods),
        T(test_handlers),
        T(test_port_taken_and_ipv6),
        cmocka_unit_test(test_parse_listen),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
