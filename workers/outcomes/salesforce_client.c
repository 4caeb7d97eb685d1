/*
 * salesforce_client.c — REST query paging and Bulk API 2.0 jobs over libcurl, with
 * re-authentication, quota accounting and retries. See salesforce_client.h.
 */
#include "salesforce_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "error.h"
#include "log.h"
#include "soql.h"

/* Bounds on what Salesforce may send us. A REST page of 2000 Opportunity rows is a few
 * MB; Bulk result pages are bounded by maxRecords the caller chooses. */
#define RESPONSE_LIMIT (512u << 20)
#define HEADER_VALUE_MAX 128

/* ---- pure pieces --------------------------------------------------------------------- */

int cl_sf_parse_limit_info(const char *value, int64_t *used, int64_t *max)
{
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (strncmp(p, "api-usage=", 10) == 0) {
            p += 10;
            char num[2][24];
            for (int k = 0; k < 2; k++) {
                size_t n = 0;
                while (isdigit((unsigned char)*p) && n < sizeof num[k] - 1)
                    num[k][n++] = *p++;
                num[k][n] = '\0';
                if (k == 0) {
                    if (*p != '/') return CL_EINVAL;
                    p++;
                }
            }
            if (*p && *p != ',' && *p != ' ' && *p != '\r' && *p != '\n') return CL_EINVAL;
            int64_t u, m;
            if (cl_parse_int64(num[0], &u) != CL_OK || cl_parse_int64(num[1], &m) != CL_OK ||
                u < 0 || m <= 0)
                return CL_EINVAL;
            *used = u;
            *max = m;
            return CL_OK;
        }
        p = strchr(p, ',');
    }
    return CL_ENOTFOUND;
}

cl_sf_verdict cl_sf_classify(long http_status, const char *body, size_t len, char *error_code,
                             size_t codelen, char *message, size_t msglen)
{
    if (codelen) error_code[0] = '\0';
    if (msglen) message[0] = '\0';
    if (http_status >= 200 && http_status < 300) return CL_SF_VERDICT_OK;
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *e = root;
    if (json_is_array(root)) e = json_array_get(root, 0);
    if (json_is_object(e)) {
        const char *code = json_string_value(json_object_get(e, "errorCode"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!code) code = json_string_value(json_object_get(e, "error"));
        if (!msg) msg = json_string_value(json_object_get(e, "error_description"));
        if (code && codelen) cl_strlcpy(error_code, code, codelen);
        if (msg && msglen) cl_strlcpy(message, msg, msglen);
    }
    json_decref(root);
    if (codelen && strcmp(error_code, "INVALID_QUERY_LOCATOR") == 0) return CL_SF_VERDICT_LOCATOR;
    if (codelen && strcmp(error_code, "REQUEST_LIMIT_EXCEEDED") == 0) return CL_SF_VERDICT_LIMIT;
    if (http_status == 401) return CL_SF_VERDICT_REAUTH;
    if (cl_retry_http_status_transient(http_status)) return CL_SF_VERDICT_RETRY;
    return CL_SF_VERDICT_FATAL;
}

int cl_sf_next_url_valid(const char *path)
{
    if (strncmp(path, "/services/data/", 15) != 0) return 0;
    if (strlen(path) >= CL_SF_URL_MAX - 64 || strstr(path, "..")) return 0;
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.')) return 0;
    }
    return 1;
}

int cl_sf_page_parse(const char *body, size_t len, const char *what, cl_sf_page *page, char *err,
                     size_t errlen)
{
    memset(page, 0, sizeof *page);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: response is not valid JSON (line %d column %d: %s)", what, jerr.line,
                         jerr.column, jerr.text);
    json_t *records = json_object_get(root, "records");
    json_t *done = json_object_get(root, "done");
    json_t *total = json_object_get(root, "totalSize");
    if (!json_is_object(root) || !json_is_array(records) || !json_is_boolean(done) ||
        !json_is_integer(total)) {
        json_decref(root);
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: response lacks totalSize/done/records of the query shape", what);
    }
    page->root = root;
    page->records = records;
    page->done = json_is_true(done);
    page->total_size = (long)json_integer_value(total);
    if (!page->done) {
        const char *next = json_string_value(json_object_get(root, "nextRecordsUrl"));
        if (!next || !cl_sf_next_url_valid(next)) {
            cl_sf_page_free(page);
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s: done is false but nextRecordsUrl is missing or not a "
                             "/services/data/ path",
                             what);
        }
        cl_strlcpy(page->next_url, next, sizeof page->next_url);
    }
    return CL_OK;
}

void cl_sf_page_free(cl_sf_page *page)
{
    json_decref(page->root);
    memset(page, 0, sizeof *page);
}

/* ---- the client ---------------------------------------------------------------------- */

struct cl_sf_client {
    CURL *curl;
    cl_sf_auth *auth;
    cl_sf_token token;
    int have_token;
    char instance_override[CL_SF_URL_MAX];
    char api_version[16];
    long timeout_ms, connect_timeout_ms;
    cl_retry_policy retry;
    double quota_share;
    int batch_size;
    char ca_file[CL_SF_URL_MAX];
    int tls_verify_off;
    int (*stop_requested)(void);
    cl_sf_client_stats stats;
    /* per-response captures */
    char hdr_locator[HEADER_VALUE_MAX];
    int hdr_locator_seen;
    int64_t retry_after_ms; /* -1: the response had no (valid) Retry-After */
    int curl_code;          /* CURLcode of the last exchange */
};

static int check_version(const char *v)
{
    /* "60.0": digits '.' digits, short. */
    size_t n = strlen(v);
    if (n == 0 || n > 8) return 0;
    const char *dot = strchr(v, '.');
    if (!dot || dot == v || !dot[1]) return 0;
    for (const char *p = v; *p; p++)
        if (!isdigit((unsigned char)*p) && p != dot) return 0;
    return 1;
}

int cl_sf_client_new(cl_sf_client **out, const cl_sf_client_settings *s, cl_sf_auth *auth,
                     char *err, size_t errlen)
{
    *out = NULL;
    const char *version = s->api_version ? s->api_version : "60.0";
    if (!check_version(version))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.api.version '%.20s' is not of the form 60.0", version);
    if (s->quota_share <= 0 || s->quota_share > 1)
        return cl_seterr(err, errlen, CL_EINVAL, "outcomes.api.quota.share %g must be in (0, 1]",
                         s->quota_share);
    cl_sf_client *c = calloc(1, sizeof *c);
    if (!c) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return cl_seterr(err, errlen, CL_ERR, "curl_easy_init failed");
    }
    c->auth = auth;
    cl_strlcpy(c->api_version, version, sizeof c->api_version);
    if (s->instance_url && s->instance_url[0] &&
        cl_strlcpy(c->instance_override, s->instance_url, sizeof c->instance_override) != CL_OK) {
        cl_sf_client_free(c);
        return cl_seterr(err, errlen, CL_EINVAL, "salesforce.instance.url is too long");
    }
    if (c->instance_override[0] && !cl_sf_url_allowed(c->instance_override)) {
        cl_sf_client_free(c);
        return cl_seterr(err, errlen, CL_EINVAL, "salesforce.instance.url must be an https URL");
    }
    size_t n = strlen(c->instance_override);
    while (n > 0 && c->instance_override[n - 1] == '/')
        c->instance_override[--n] = '\0';
    if (s->ca_file && cl_strlcpy(c->ca_file, s->ca_file, sizeof c->ca_file) != CL_OK) {
        cl_sf_client_free(c);
        return cl_seterr(err, errlen, CL_EINVAL, "salesforce.ca.file is longer than %d bytes",
                         CL_SF_URL_MAX - 1);
    }
    c->tls_verify_off = s->tls_verify_off != 0;
    c->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : 120000;
    c->connect_timeout_ms = s->connect_timeout_ms > 0 ? s->connect_timeout_ms : 10000;
    c->retry = s->retry;
    c->quota_share = s->quota_share;
    c->batch_size = s->batch_size;
    c->stop_requested = s->stop_requested;
    c->stats.quota_used = c->stats.quota_max = -1;
    *out = c;
    return CL_OK;
}

void cl_sf_client_free(cl_sf_client *c)
{
    if (!c) return;
    if (c->curl) curl_easy_cleanup(c->curl);
    memset(&c->token, 0, sizeof c->token);
    free(c);
}

void cl_sf_client_stats_get(const cl_sf_client *c, cl_sf_client_stats *out)
{
    *out = c->stats;
}

static const char *instance_url(const cl_sf_client *c)
{
    return c->instance_override[0] ? c->instance_override : c->token.instance_url;
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return cl_buf_append((cl_buf *)ud, ptr, n) == CL_OK ? n : 0;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    cl_sf_client *c = ud;
    size_t n = size * nmemb;
    const char *colon = memchr(ptr, ':', n);
    if (!colon) return n;
    size_t namelen = (size_t)(colon - ptr);
    const char *v = colon + 1;
    size_t vlen = n - namelen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    char value[HEADER_VALUE_MAX];
    if (vlen >= sizeof value) return n; /* longer than any value we read: ignore it */
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    if (namelen == 17 && strncasecmp(ptr, "Sforce-Limit-Info", 17) == 0) {
        int64_t used, max;
        if (cl_sf_parse_limit_info(value, &used, &max) == CL_OK) {
            c->stats.quota_used = used;
            c->stats.quota_max = max;
        }
    } else if (namelen == 14 && strncasecmp(ptr, "Sforce-Locator", 14) == 0) {
        cl_strlcpy(c->hdr_locator, value, sizeof c->hdr_locator);
        c->hdr_locator_seen = 1;
    } else if (namelen == 11 && strncasecmp(ptr, "Retry-After", 11) == 0) {
        int64_t ms;
        if (cl_retry_parse_retry_after(value, cl_now_ms(), &ms) == CL_OK) c->retry_after_ms = ms;
    }
    return n;
}

/* What to do about a TLS verification failure, appended to its message. */
static const char *tls_hint(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return " (TLS verification failed: give the CA that signed the server's certificate "
               "with salesforce.ca.file, and use a host name the certificate lists)";
    default:
        return "";
    }
}

/* One HTTP exchange, no retries. Returns CL_OK with *status set, or a transport error
 * (CL_ETIMEOUT / CL_EIO) with the message in err. */
static int perform(cl_sf_client *c, const char *method, const char *url, struct curl_slist *headers,
                   const char *body, size_t bodylen, cl_buf *resp, long *status, char *err,
                   size_t errlen)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    cl_buf_reset(resp);
    c->hdr_locator[0] = '\0';
    c->hdr_locator_seen = 0;
    c->retry_after_ms = -1;
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* never carry the token elsewhere */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "closedloop-outcomes/" CL_VERSION);
    /* Set explicitly rather than left to libcurl's defaults: the only way to turn
     * verification off is salesforce.tls.verify=false, which the worker logs. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->tls_verify_off ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->tls_verify_off ? 0L : 2L);
    if (c->ca_file[0]) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)bodylen);
    } else if (strcmp(method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    c->stats.api_calls++;
    CURLcode rc = curl_easy_perform(h);
    c->curl_code = (int)rc;
    if (rc != CURLE_OK) {
        int st = rc == CURLE_OPERATION_TIMEDOUT ? CL_ETIMEOUT : CL_EIO;
        if (rc == CURLE_WRITE_ERROR && resp->len >= RESPONSE_LIMIT - 65536)
            return cl_seterr(err, errlen, CL_ENOMEM, "response larger than %u bytes",
                             RESPONSE_LIMIT);
        return cl_seterr(err, errlen, st, "%s%s", curl_err[0] ? curl_err : curl_easy_strerror(rc),
                         tls_hint(rc));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return CL_OK;
}

/* The path part of a URL for error messages (never the query string: it holds SOQL). */
static void describe(const char *method, const char *url, char *out, size_t outlen)
{
    const char *path = strstr(url, "://");
    path = path ? strchr(path + 3, '/') : url;
    if (!path) path = "/";
    size_t n = strcspn(path, "?");
    snprintf(out, outlen, "%s %.*s", method, (int)(n > 200 ? 200 : n), path);
}

/* After a failed try: asks the policy for another try and sleeps its delay (the
 * server's Retry-After of the last response, if any, is the floor). CL_OK: try again;
 * CL_EAGAIN / CL_ETIMEOUT: the tries or the deadline are used up; CL_ESTOP: a stop
 * was requested while waiting. */
static int backoff_sleep(cl_sf_client *c, cl_retry *retry, const char *event, const char *what,
                         const char *reason)
{
    int64_t ms;
    int rc = cl_retry_next(retry, cl_mono_ms(), c->retry_after_ms, &ms);
    if (rc != CL_OK) return rc;
    cl_log(CL_LOG_WARN, event, "request=\"%s\" reason=%s attempt=%d delay_ms=%lld", what, reason,
           retry->attempts, (long long)ms);
    return cl_retry_sleep(ms, c->stop_requested);
}

int cl_sf_client_authenticate(cl_sf_client *c, char *err, size_t errlen)
{
    cl_buf body, resp;
    cl_buf_init(&body, 65536);
    cl_buf_init(&resp, 1u << 20);
    int rc = cl_sf_auth_request_body(c->auth, cl_now_ms() / 1000, &body, err, errlen);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    cl_retry retry;
    cl_retry_begin(&retry, &c->retry, 0, cl_mono_ms());
    while (rc == CL_OK) {
        long status = 0;
        char terr[CL_ERRLEN];
        const char *reason = "transport";
        rc = perform(c, "POST", c->auth->token_url, hdrs, body.data, body.len, &resp, &status, terr,
                     sizeof terr);
        if (rc == CL_OK) {
            rc = cl_sf_token_parse(status, resp.data ? resp.data : "", resp.len, &c->token, err,
                                   errlen);
            if (rc == CL_OK) {
                c->have_token = 1;
                break;
            }
            reason = "http";
        } else if (rc != CL_ENOMEM && cl_retry_curl_transient(c->curl_code)) {
            rc = cl_seterr(err, errlen, CL_EAGAIN, "token endpoint %s: %s", c->auth->token_url,
                           terr);
        } else {
            rc = cl_seterr(err, errlen, rc == CL_ENOMEM ? CL_ENOMEM : CL_EIO,
                           "token endpoint %s: %s", c->auth->token_url, terr);
        }
        if (rc != CL_EAGAIN && rc != CL_ETIMEOUT) break;
        int b = backoff_sleep(c, &retry, "salesforce_auth_retry", "POST token", reason);
        if (b == CL_ESTOP) {
            rc = cl_seterr(err, errlen, CL_ESTOP, "stopped while retrying authentication");
            break;
        }
        if (b != CL_OK) break; /* out of tries: err holds the last failure */
        rc = CL_OK;
    }
    curl_slist_free_all(hdrs);
    if (body.data) memset(body.data, 0, body.len);
    cl_buf_free(&body);
    cl_buf_free(&resp);
    if (rc == CL_OK)
        cl_log(CL_LOG_INFO, "salesforce_authenticated", "flow=%s instance=%s",
               cl_sf_auth_kind_name(c->auth->kind), instance_url(c));
    return rc;
}

/*
 * The request loop: quota check, auth header, perform, classify, then retry /
 * re-authenticate / stop as salesforce_client.h describes. `path_or_url` is a path
 * (prefixed with the instance URL) so a re-authentication that changes instance_url
 * takes effect on the retry.
 */
static int request(cl_sf_client *c, const char *method, const char *path, const char *ctype,
                   const char *accept, const char *body, size_t bodylen, int query_options,
                   cl_buf *resp, long *status_out, char *err, size_t errlen)
{
    int reauthed = 0;
    int rc;
    if (!c->have_token && (rc = cl_sf_client_authenticate(c, err, errlen)) != CL_OK) return rc;
    cl_retry retry;
    cl_retry_begin(&retry, &c->retry, 0, cl_mono_ms());
    for (;;) {
        if (c->stop_requested && c->stop_requested())
            return cl_seterr(err, errlen, CL_ESTOP, "stopped by signal");
        if (c->stats.quota_max > 0 &&
            (double)c->stats.quota_used >= c->quota_share * (double)c->stats.quota_max)
            return cl_seterr(err, errlen, CL_ESTOP,
                             "API quota share reached: %lld of %lld daily calls used, "
                             "outcomes.api.quota.share is %.2f; pulling again at the next "
                             "interval",
                             (long long)c->stats.quota_used, (long long)c->stats.quota_max,
                             c->quota_share);
        char what[256];
        const char *base = instance_url(c);
        /* path may carry a long query string (the SOQL); build it in a heap buffer. */
        cl_buf ubuf;
        cl_buf_init(&ubuf, CL_SOQL_MAX_LEN * 3 + CL_SF_URL_MAX);
        if (cl_buf_printf(&ubuf, "%s%s", base, path) != CL_OK) {
            cl_buf_free(&ubuf);
            return cl_seterr(err, errlen, CL_EINVAL, "request URL too long");
        }
        describe(method, ubuf.data, what, sizeof what);

        struct curl_slist *hdrs = NULL;
        char line[CL_SF_TOKEN_MAX + 64];
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token.access_token);
        hdrs = curl_slist_append(hdrs, line);
        memset(line, 0, sizeof line);
        snprintf(line, sizeof line, "Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, line);
        if (ctype) {
            snprintf(line, sizeof line, "Content-Type: %s", ctype);
            hdrs = curl_slist_append(hdrs, line);
        }
        if (query_options && c->batch_size > 0) {
            snprintf(line, sizeof line, "Sforce-Query-Options: batchSize=%d", c->batch_size);
            hdrs = curl_slist_append(hdrs, line);
        }
        long status = 0;
        char terr[CL_ERRLEN];
        rc = perform(c, method, ubuf.data, hdrs, body, bodylen, resp, &status, terr, sizeof terr);
        /* curl copied the header lines; wipe the list's copy of the token. */
        for (struct curl_slist *l = hdrs; l; l = l->next)
            if (strncmp(l->data, "Authorization:", 14) == 0) memset(l->data, 0, strlen(l->data));
        curl_slist_free_all(hdrs);
        cl_buf_free(&ubuf);

        const char *reason = NULL;
        if (rc == CL_ENOMEM) return cl_seterr(err, errlen, CL_ENOMEM, "%s: %s", what, terr);
        if (rc != CL_OK && !cl_retry_curl_transient(c->curl_code))
            return cl_seterr(err, errlen, CL_EIO, "%s: %s", what, terr);
        if (rc != CL_OK) {
            reason = rc == CL_ETIMEOUT ? "timeout" : "connection";
            if (rc == CL_ETIMEOUT)
                c->stats.retries_timeout++;
            else
                c->stats.retries_connection++;
            cl_seterr(err, errlen, CL_EAGAIN, "%s: %s", what, terr);
        } else {
            char code[64], msg[256];
            cl_sf_verdict v =
                cl_sf_classify(status, resp->data, resp->len, code, sizeof code, msg, sizeof msg);
            switch (v) {
            case CL_SF_VERDICT_OK:
                *status_out = status;
                return CL_OK;
            case CL_SF_VERDICT_REAUTH:
                if (reauthed)
                    return cl_seterr(err, errlen, CL_ERR,
                                     "%s: HTTP 401 %s again right after re-authenticating: %s",
                                     what, code[0] ? code : "", msg);
                cl_log(CL_LOG_INFO, "salesforce_session_expired", "request=\"%s\" code=%s", what,
                       code[0] ? code : "none");
                reauthed = 1;
                c->stats.reauths++;
                if ((rc = cl_sf_client_authenticate(c, err, errlen)) != CL_OK) return rc;
                continue; /* a re-authentication is not a failed try */
            case CL_SF_VERDICT_LIMIT:
                return cl_seterr(err, errlen, CL_ESTOP,
                                 "%s: HTTP %ld REQUEST_LIMIT_EXCEEDED: %s; state kept, pulling "
                                 "again at the next interval",
                                 what, status, msg);
            case CL_SF_VERDICT_LOCATOR:
                return cl_seterr(err, errlen, CL_ECONFLICT,
                                 "%s: HTTP %ld INVALID_QUERY_LOCATOR: %s", what, status, msg);
            case CL_SF_VERDICT_FATAL:
                return cl_seterr(err, errlen, CL_ERR, "%s: HTTP %ld %s: %s", what, status,
                                 code[0] ? code : "(no errorCode)", msg);
            case CL_SF_VERDICT_RETRY:
                /* 425 Too Early counts with 429 (both mean "not now"), 408 with the
                 * timeouts. */
                if (status == 429 || status == 425) {
                    reason = "http_429";
                    c->stats.retries_http_429++;
                } else if (status == 408) {
                    reason = "timeout";
                    c->stats.retries_timeout++;
                } else {
                    reason = "http_5xx";
                    c->stats.retries_http_5xx++;
                }
                cl_seterr(err, errlen, CL_EAGAIN, "%s: HTTP %ld %s: %s", what, status,
                          code[0] ? code : "(no errorCode)", msg);
                break;
            }
        }
        int b = backoff_sleep(c, &retry, "salesforce_retry", what, reason);
        if (b == CL_ESTOP) return cl_seterr(err, errlen, CL_ESTOP, "stopped while backing off");
        if (b != CL_OK) {
            char inner[CL_ERRLEN];
            cl_strlcpy(inner, err ? err : "", sizeof inner);
            return cl_seterr(err, errlen, CL_EAGAIN, "%s (gave up after %d attempts%s)", inner,
                             retry.attempts, b == CL_ETIMEOUT ? ", deadline reached" : "");
        }
    }
}

static int query_request(cl_sf_client *c, const char *path, const char *what, cl_sf_page *page,
                         char *err, size_t errlen)
{
    cl_buf resp;
    cl_buf_init(&resp, RESPONSE_LIMIT);
    long status;
    int rc =
        request(c, "GET", path, NULL, "application/json", NULL, 0, 1, &resp, &status, err, errlen);
    if (rc == CL_OK)
        rc = cl_sf_page_parse(resp.data ? resp.data : "", resp.len, what, page, err, errlen);
    cl_buf_free(&resp);
    return rc;
}

int cl_sf_query(cl_sf_client *c, const char *soql, int all, cl_sf_page *page, char *err,
                size_t errlen)
{
    memset(page, 0, sizeof *page);
    cl_buf path;
    cl_buf_init(&path, CL_SOQL_MAX_LEN * 3 + 128);
    int rc = cl_buf_printf(&path, "/services/data/v%s/%s?q=", c->api_version,
                           all ? "queryAll" : "query");
    if (rc == CL_OK) rc = cl_url_encode_append(&path, soql, strlen(soql));
    if (rc != CL_OK) {
        cl_buf_free(&path);
        return cl_seterr(err, errlen, CL_EINVAL, "SOQL too long for a URL");
    }
    char what[64];
    snprintf(what, sizeof what, "GET /services/data/v%s/%s", c->api_version,
             all ? "queryAll" : "query");
    rc = query_request(c, path.data, what, page, err, errlen);
    cl_buf_free(&path);
    return rc;
}

int cl_sf_query_more(cl_sf_client *c, const char *next_url, cl_sf_page *page, char *err,
                     size_t errlen)
{
    memset(page, 0, sizeof *page);
    if (!cl_sf_next_url_valid(next_url))
        return cl_seterr(err, errlen, CL_EINVAL, "nextRecordsUrl '%.100s' is not a data path",
                         next_url);
    char what[CL_SF_URL_MAX + 8];
    snprintf(what, sizeof what, "GET %s", next_url);
    return query_request(c, next_url, what, page, err, errlen);
}

static int valid_job_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 15 || n > 18) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i])) return 0;
    return 1;
}

int cl_sf_bulk_create(cl_sf_client *c, const char *soql, char job_id[32], char *err, size_t errlen)
{
    json_t *req = json_pack("{s:s, s:s, s:s, s:s}", "operation", "queryAll", "query", soql,
                            "contentType", "CSV", "lineEnding", "LF");
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) return cl_seterr(err, errlen, CL_EINVAL, "bulk job request could not be encoded");
    char path[128];
    snprintf(path, sizeof path, "/services/data/v%s/jobs/query", c->api_version);
    cl_buf resp;
    cl_buf_init(&resp, 1u << 20);
    long status;
    int rc = request(c, "POST", path, "application/json", "application/json", body, strlen(body), 0,
                     &resp, &status, err, errlen);
    free(body);
    if (rc == CL_OK) {
        json_t *root = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
        const char *id = json_string_value(json_object_get(root, "id"));
        if (!id || !valid_job_id(id))
            rc = cl_seterr(err, errlen, CL_EINVAL, "POST %s: response has no valid job id", path);
        else
            cl_strlcpy(job_id, id, 32);
        json_decref(root);
    }
    cl_buf_free(&resp);
    return rc;
}

int cl_sf_bulk_state(cl_sf_client *c, const char *job_id, cl_sf_job_state *state, char *err,
                     size_t errlen)
{
    if (!valid_job_id(job_id))
        return cl_seterr(err, errlen, CL_EINVAL, "bulk job id '%.32s' is not valid", job_id);
    char path[128];
    snprintf(path, sizeof path, "/services/data/v%s/jobs/query/%s", c->api_version, job_id);
    cl_buf resp;
    cl_buf_init(&resp, 1u << 20);
    long status;
    int rc =
        request(c, "GET", path, NULL, "application/json", NULL, 0, 0, &resp, &status, err, errlen);
    if (rc == CL_OK) {
        json_t *root = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
        const char *s = json_string_value(json_object_get(root, "state"));
        if (!s) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "GET %s: response has no job state", path);
        } else if (strcmp(s, "UploadComplete") == 0) {
            *state = CL_SF_JOB_UPLOAD_COMPLETE;
        } else if (strcmp(s, "InProgress") == 0) {
            *state = CL_SF_JOB_IN_PROGRESS;
        } else if (strcmp(s, "JobComplete") == 0) {
            *state = CL_SF_JOB_COMPLETE;
        } else if (strcmp(s, "Failed") == 0 || strcmp(s, "Aborted") == 0) {
            *state = s[0] == 'F' ? CL_SF_JOB_FAILED : CL_SF_JOB_ABORTED;
            const char *m = json_string_value(json_object_get(root, "errorMessage"));
            cl_seterr(err, errlen, CL_ERR, "bulk job %s %s: %.200s", job_id, s,
                      m ? m : "(no errorMessage)");
        } else {
            rc = cl_seterr(err, errlen, CL_EINVAL, "GET %s: unknown job state '%.32s'", path, s);
        }
        json_decref(root);
    }
    cl_buf_free(&resp);
    return rc;
}

int cl_sf_bulk_results(cl_sf_client *c, const char *job_id, const char *locator, long max_records,
                       cl_buf *csv, char next_locator[128], char *err, size_t errlen)
{
    if (!valid_job_id(job_id))
        return cl_seterr(err, errlen, CL_EINVAL, "bulk job id '%.32s' is not valid", job_id);
    char path[512];
    int w = snprintf(path, sizeof path, "/services/data/v%s/jobs/query/%s/results?maxRecords=%ld",
                     c->api_version, job_id, max_records);
    if (locator && locator[0]) {
        cl_buf enc;
        cl_buf_init(&enc, 512);
        if (strlen(locator) > 100 ||
            cl_url_encode_append(&enc, locator, strlen(locator)) != CL_OK) {
            cl_buf_free(&enc);
            return cl_seterr(err, errlen, CL_EINVAL, "bulk locator '%.100s' is too long", locator);
        }
        snprintf(path + w, sizeof path - (size_t)w, "&locator=%s", enc.data);
        cl_buf_free(&enc);
    }
    cl_buf_reset(csv);
    long status;
    int rc = request(c, "GET", path, NULL, "text/csv", NULL, 0, 0, csv, &status, err, errlen);
    if (rc != CL_OK) return rc;
    if (!c->hdr_locator_seen)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "GET bulk results of job %s: response has no Sforce-Locator header",
                         job_id);
    if (strcmp(c->hdr_locator, "null") == 0) {
        next_locator[0] = '\0';
    } else {
        for (const char *p = c->hdr_locator; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '=')
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "bulk job %s: Sforce-Locator '%.64s' has unexpected characters",
                                 job_id, c->hdr_locator);
        if (!c->hdr_locator[0])
            return cl_seterr(err, errlen, CL_EINVAL, "bulk job %s: empty Sforce-Locator", job_id);
        cl_strlcpy(next_locator, c->hdr_locator, 128);
    }
    return CL_OK;
}

int cl_sf_bulk_delete(cl_sf_client *c, const char *job_id, char *err, size_t errlen)
{
    if (!valid_job_id(job_id))
        return cl_seterr(err, errlen, CL_EINVAL, "bulk job id '%.32s' is not valid", job_id);
    char path[128];
    snprintf(path, sizeof path, "/services/data/v%s/jobs/query/%s", c->api_version, job_id);
    cl_buf resp;
    cl_buf_init(&resp, 1u << 20);
    long status;
    int rc = request(c, "DELETE", path, NULL, "application/json", NULL, 0, 0, &resp, &status, err,
                     errlen);
    cl_buf_free(&resp);
    return rc;
}
