/*
 * registry.c — Confluent Schema Registry client (contract in registry.h).
 *
 * Each request uses its own curl easy handle, so the only shared state is the three
 * caches below, guarded by one mutex that is never held across network I/O. Two
 * threads missing the same id at once may both fetch it; the second insert is dropped.
 */
#include "registry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "log.h"
#include "retry.h"
#include "util.h"

#define MAX_RESPONSE_BYTES (8u << 20)
#define MAX_CACHED_IDS 65536
#define NEGATIVE_SLOTS 1024
#define MAX_REGISTERED 1024

const cl_option cl_registry_options[] = {
    {"schema.registry.url", CL_OPT_STRING, NULL,
     "Confluent-compatible schema registry URL; when set, records use the Confluent wire "
     "format, otherwise Avro single-object encoding",
     0, 0, 0},
    {"schema.registry.basic.auth.user.info", CL_OPT_STRING, NULL,
     "registry basic auth credentials as user:password", CL_OPT_SECRET, 0, 0},
    {"schema.registry.bearer.token", CL_OPT_STRING, NULL,
     "registry bearer token (used when no basic auth is configured)", CL_OPT_SECRET, 0, 0},
    {"schema.registry.timeout.ms", CL_OPT_INT, "10000", "per-request timeout in milliseconds", 0, 1,
     600000},
    {"schema.registry.retries", CL_OPT_INT, "3",
     "retries on connection errors, timeouts, HTTP 429 and 5xx", 0, 0, 100},
    {"schema.registry.ssl.verify", CL_OPT_BOOL, "true",
     "verify the registry's TLS certificate and host name; false is insecure and logged as a "
     "warning at start",
     0, 0, 0},
    {"schema.registry.ssl.ca.location", CL_OPT_STRING, NULL, "PEM CA bundle to verify the registry",
     0, 0, 0},
    {"schema.registry.ssl.certificate.location", CL_OPT_STRING, NULL,
     "PEM client certificate for mutual TLS", 0, 0, 0},
    {"schema.registry.ssl.key.location", CL_OPT_STRING, NULL,
     "PEM client private key for mutual TLS", 0, 0, 0},
    {"schema.registry.negative.cache.ms", CL_OPT_INT, "30000",
     "how long an unknown schema id is remembered as unknown", 0, 0, 86400000},
    {NULL, 0, NULL, NULL, 0, 0, 0},
};

typedef struct {
    int32_t id;
    char *text;
} id_entry;

typedef struct {
    int32_t id;
    int64_t expires_ms; /* monotonic */
} negative_entry;

typedef struct {
    char *subject;
    char *text;
    int32_t id;
} registered_entry;

struct cl_registry {
    char *url;         /* no trailing '/' */
    char *display_url; /* url without userinfo, for messages */
    char *basic_auth;
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    int64_t timeout_ms, connect_timeout_ms, negative_ms;
    cl_retry_policy retry;
    int tls_verify_off;
    char *ca, *cert, *key;

    pthread_mutex_t mu;
    id_entry *ids;
    size_t nids, capids;
    negative_entry negative[NEGATIVE_SLOTS];
    size_t next_negative;
    registered_entry registered[MAX_REGISTERED];
    size_t nregistered;
    cl_registry_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s || !*s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

void cl_registry_free(cl_registry *reg)
{
    if (!reg) return;
    for (size_t i = 0; i < reg->nids; i++)
        free(reg->ids[i].text);
    free(reg->ids);
    for (size_t i = 0; i < reg->nregistered; i++) {
        free(reg->registered[i].subject);
        free(reg->registered[i].text);
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg->url);
    free(reg->display_url);
    free(reg->basic_auth);
    free(reg->auth_header);
    free(reg->ca);
    free(reg->cert);
    free(reg->key);
    free(reg);
}

int cl_registry_new(cl_registry **out, const cl_registry_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->url || !*o->url)
        return cl_seterr(err, errlen, CL_EINVAL, "schema.registry.url is empty");
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "schema.registry.url must start with http:// or https://");
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK)
        return cl_seterr(err, errlen, CL_ERR, "libcurl initialisation failed: %s",
                         curl_easy_strerror(curl_init_result));
    cl_registry *r = calloc(1, sizeof *r);
    if (!r) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    int oom = 0;
    r->url = dup_or_null(o->url, &oom);
    size_t ul = r->url ? strlen(r->url) : 0;
    while (ul > 0 && r->url[ul - 1] == '/')
        r->url[--ul] = '\0';
    r->basic_auth = dup_or_null(o->basic_auth, &oom);
    r->ca = dup_or_null(o->ca_location, &oom);
    r->cert = dup_or_null(o->cert_location, &oom);
    r->key = dup_or_null(o->key_location, &oom);
    if (!r->basic_auth && o->bearer_token && *o->bearer_token) {
        size_t n = strlen(o->bearer_token) + 32;
        if ((r->auth_header = malloc(n)) != NULL)
            snprintf(r->auth_header, n, "Authorization: Bearer %s", o->bearer_token);
        else
            oom = 1;
    }
    /* Display URL: drop "user:pass@" so credentials in the URL never reach a message. */
    if (r->url) {
        const char *scheme_end = strstr(r->url, "://") + 3;
        const char *at = strchr(scheme_end, '@');
        const char *slash = strchr(scheme_end, '/');
        cl_buf b;
        cl_buf_init(&b, 0);
        if (at && (!slash || at < slash)) {
            if (cl_buf_append(&b, r->url, (size_t)(scheme_end - r->url)) != CL_OK ||
                cl_buf_printf(&b, "%s", at + 1) != CL_OK)
                oom = 1;
        } else if (cl_buf_printf(&b, "%s", r->url) != CL_OK) {
            oom = 1;
        }
        r->display_url = b.data;
    }
    if (oom || !r->url || !r->display_url) {
        cl_registry_free(r);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    if (r->basic_auth) cl_log_add_secret(r->basic_auth);
    if (o->bearer_token && *o->bearer_token) cl_log_add_secret(o->bearer_token);
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    r->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
                            : r->timeout_ms < 5000    ? r->timeout_ms
                                                      : 5000;
    r->retry = (cl_retry_policy){
        .max_attempts = 1 + (o->retries > 0 ? o->retries : 0),
        .base_ms = o->backoff_initial_ms > 0 ? o->backoff_initial_ms : 100,
        .max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 5000,
        .jitter = CL_RETRY_JITTER_FULL,
    };
    r->negative_ms = o->negative_cache_ms > 0 ? o->negative_cache_ms : 30000;
    r->tls_verify_off = o->tls_verify_off != 0;
    /* Once per client, at creation: every request after this is unverified. */
    if (r->tls_verify_off)
        cl_log(CL_LOG_WARN, "tls_verification_disabled",
               "setting=schema.registry.ssl.verify value=false source=\"%s\" url=%s "
               "detail=\"the registry's certificate and host name are NOT verified; anyone on "
               "the path can read the registry credentials and substitute schemas\"",
               o->tls_verify_source ? o->tls_verify_source : "cl_registry_opts", r->display_url);
    *out = r;
    return CL_OK;
}

int cl_registry_from_config(cl_registry **out, const cl_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    const char *url = cl_config_str(cfg, "schema.registry.url");
    if (!url || !*url) return CL_OK;
    cl_registry_opts o = {
        .url = url,
        .basic_auth = cl_config_str(cfg, "schema.registry.basic.auth.user.info"),
        .bearer_token = cl_config_str(cfg, "schema.registry.bearer.token"),
        .timeout_ms = cl_config_int(cfg, "schema.registry.timeout.ms"),
        .retries = (int)cl_config_int(cfg, "schema.registry.retries"),
        .ca_location = cl_config_str(cfg, "schema.registry.ssl.ca.location"),
        .cert_location = cl_config_str(cfg, "schema.registry.ssl.certificate.location"),
        .key_location = cl_config_str(cfg, "schema.registry.ssl.key.location"),
        .negative_cache_ms = cl_config_int(cfg, "schema.registry.negative.cache.ms"),
        .tls_verify_off = !cl_config_bool(cfg, "schema.registry.ssl.verify"),
        .tls_verify_source = cl_config_source(cfg, "schema.registry.ssl.verify"),
    };
    return cl_registry_new(out, &o, err, errlen);
}

void cl_registry_get_stats(cl_registry *reg, cl_registry_stats *out)
{
    pthread_mutex_lock(&reg->mu);
    *out = reg->stats;
    pthread_mutex_unlock(&reg->mu);
}

/* ---- HTTP ----------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    cl_buf *b = ud;
    size_t n = size * nmemb;
    return cl_buf_append(b, data, n) == CL_OK ? n : 0; /* 0 aborts: response too large */
}

/* Captures a Retry-After (seconds or HTTP-date) so a throttling proxy in front of the
 * registry is obeyed; ud points to the caller's int64_t, -1 when absent. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    if (n > 12 && n < 96 && strncasecmp(data, "Retry-After:", 12) == 0) {
        char value[96];
        memcpy(value, data + 12, n - 12);
        value[n - 12] = '\0';
        int64_t ms;
        if (cl_retry_parse_retry_after(value, cl_now_ms(), &ms) == CL_OK) *(int64_t *)ud = ms;
    }
    return n;
}

/* The registry's error body is {"error_code": 40403, "message": "..."}. */
static void describe_error_body(const cl_buf *body, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *j = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    if (!j) return;
    json_t *code = json_object_get(j, "error_code");
    const char *msg = json_string_value(json_object_get(j, "message"));
    snprintf(out, outlen, " (error_code %" JSON_INTEGER_FORMAT ": %.200s)",
             json_is_integer(code) ? json_integer_value(code) : (json_int_t)0, msg ? msg : "");
    json_decref(j);
}

/* What to do about a TLS verification failure, appended to its message. */
static const char *tls_hint(int curl_code)
{
    switch (curl_code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return " (TLS verification of the registry failed: give the CA that signed its "
               "certificate with schema.registry.ssl.ca.location, and use a host name the "
               "certificate lists)";
    default:
        return "";
    }
}

/* One request with retries. On return CL_OK, *status is the final HTTP status (which
 * may be a permanent 4xx; the caller interprets it) and body holds the response. */
static int http_call(cl_registry *reg, const char *method, const char *path, const char *payload,
                     long *status, cl_buf *body, char *err, size_t errlen)
{
    char url[2048], display[2048];
    if (snprintf(url, sizeof url, "%s%s", reg->url, path) >= (int)sizeof url)
        return cl_seterr(err, errlen, CL_EINVAL, "schema registry URL too long");
    snprintf(display, sizeof display, "%s%s", reg->display_url, path);
    struct curl_slist *headers = NULL, *h;
    h = curl_slist_append(headers, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/json");
    if (h) headers = h;
    if (payload && (h = curl_slist_append(headers, "Content-Type: "
                                                   "application/vnd.schemaregistry.v1+json")))
        headers = h;
    if (reg->auth_header && (h = curl_slist_append(headers, reg->auth_header))) headers = h;

    int rc = CL_EAGAIN;
    char last[CL_ERRLEN] = "";
    cl_retry retry;
    cl_retry_begin(&retry, &reg->retry, 0, cl_mono_ms());
    int64_t retry_after_ms = -1;
    for (int attempt = 0;; attempt++) {
        if (attempt > 0) {
            int64_t delay;
            if (cl_retry_next(&retry, cl_mono_ms(), retry_after_ms, &delay) != CL_OK) break;
            cl_sleep_ms(delay);
            pthread_mutex_lock(&reg->mu);
            reg->stats.retries++;
            pthread_mutex_unlock(&reg->mu);
        }
        pthread_mutex_lock(&reg->mu);
        reg->stats.requests++;
        pthread_mutex_unlock(&reg->mu);
        CURL *curl = curl_easy_init();
        if (!curl) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "curl_easy_init failed");
            break;
        }
        cl_buf_reset(body);
        char curl_err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        if (payload) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
        }
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
        retry_after_ms = -1;
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &retry_after_ms);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)reg->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)reg->connect_timeout_ms);
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, reg->tls_verify_off ? 0L : 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, reg->tls_verify_off ? 0L : 2L);
        if (reg->ca) curl_easy_setopt(curl, CURLOPT_CAINFO, reg->ca);
        if (reg->cert) curl_easy_setopt(curl, CURLOPT_SSLCERT, reg->cert);
        if (reg->key) curl_easy_setopt(curl, CURLOPT_SSLKEY, reg->key);
        if (reg->basic_auth) {
            curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(curl, CURLOPT_USERPWD, reg->basic_auth);
        }
        CURLcode cr = curl_easy_perform(curl);
        long code = 0;
        if (cr == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(curl);

        if (cr == CURLE_WRITE_ERROR) {
            rc = cl_seterr(err, errlen, CL_EIO,
                           "schema registry %s %s: response larger than %u bytes", method, display,
                           MAX_RESPONSE_BYTES);
            break;
        }
        if (cr != CURLE_OK) {
            snprintf(last, sizeof last, "%s", curl_err[0] ? curl_err : curl_easy_strerror(cr));
            rc = cr == CURLE_OPERATION_TIMEDOUT ? CL_ETIMEOUT : CL_EAGAIN;
            if (!cl_retry_curl_transient((int)cr)) {
                rc = cl_seterr(err, errlen, CL_EIO, "schema registry %s %s: %s%s", method, display,
                               last, tls_hint((int)cr));
                break;
            }
            continue;
        }
        if (cl_retry_http_status_transient(code)) {
            char detail[300];
            describe_error_body(body, detail, sizeof detail);
            snprintf(last, sizeof last, "HTTP %ld%s", code, detail);
            rc = CL_EAGAIN;
            continue;
        }
        *status = code;
        rc = CL_OK;
        break;
    }
    curl_slist_free_all(headers);
    if (rc == CL_EAGAIN || rc == CL_ETIMEOUT)
        cl_seterr(err, errlen, rc, "schema registry %s %s: %s after %d attempt%s; retry later",
                  method, display, last, retry.attempts, retry.attempts == 1 ? "" : "s");
    return rc;
}

static int permanent_http_error(long status, const char *what, const cl_buf *body,
                                const char *display, char *err, size_t errlen)
{
    char detail[300];
    describe_error_body(body, detail, sizeof detail);
    if (status == 401 || status == 403)
        return cl_seterr(err, errlen, CL_EIO,
                         "schema registry %s %s: HTTP %ld%s: check "
                         "schema.registry.basic.auth.user.info / schema.registry.bearer.token",
                         what, display, status, detail);
    return cl_seterr(err, errlen, status == 409 ? CL_ECONFLICT : CL_EIO,
                     "schema registry %s %s: HTTP %ld%s", what, display, status, detail);
}

/* ---- Register ------------------------------------------------------------------- */

static int append_path_escaped(cl_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int unreserved = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                         (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
                         *p == '~';
        char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int rc = unreserved ? cl_buf_append(b, p, 1) : cl_buf_append(b, enc, 3);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

int cl_registry_register(cl_registry *reg, const char *subject, const char *schema_text,
                         int32_t *id_out, char *err, size_t errlen)
{
    if (!subject || !*subject || strlen(subject) > 1024)
        return cl_seterr(err, errlen, CL_EINVAL, "schema registry: invalid subject");
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nregistered; i++) {
        if (strcmp(reg->registered[i].subject, subject) == 0 &&
            strcmp(reg->registered[i].text, schema_text) == 0) {
            *id_out = reg->registered[i].id;
            pthread_mutex_unlock(&reg->mu);
            return CL_OK;
        }
    }
    pthread_mutex_unlock(&reg->mu);

    cl_buf path, body;
    cl_buf_init(&path, 4096);
    cl_buf_init(&body, MAX_RESPONSE_BYTES);
    json_t *req = json_pack("{s:s}", "schema", schema_text);
    char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int rc;
    long status = 0;
    if (!payload)
        rc = cl_seterr(err, errlen, CL_EINVAL,
                       "schema registry: subject %s: schema text is not valid UTF-8", subject);
    else if (cl_buf_append(&path, "/subjects/", 10) != CL_OK ||
             append_path_escaped(&path, subject) != CL_OK ||
             cl_buf_append(&path, "/versions", 9) != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL, "schema registry: subject too long");
    else
        rc = http_call(reg, "POST", path.data, payload, &status, &body, err, errlen);
    if (rc == CL_OK && (status < 200 || status > 299)) {
        char display[2048];
        snprintf(display, sizeof display, "%s%s", reg->display_url, path.data);
        rc = permanent_http_error(status, "POST", &body, display, err, errlen);
        if (status == 422) rc = CL_EINVAL;
    } else if (rc == CL_OK) {
        json_t *j = json_loadb(body.data, body.len, 0, NULL);
        json_t *id = json_object_get(j, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX) {
            rc = cl_seterr(err, errlen, CL_EIO,
                           "schema registry POST %s%s: response has no valid \"id\"",
                           reg->display_url, path.data);
        } else {
            *id_out = (int32_t)json_integer_value(id);
            pthread_mutex_lock(&reg->mu);
            if (reg->nregistered < MAX_REGISTERED) {
                registered_entry *e = &reg->registered[reg->nregistered];
                e->subject = strdup(subject);
                e->text = strdup(schema_text);
                e->id = *id_out;
                if (e->subject && e->text) {
                    reg->nregistered++;
                } else {
                    free(e->subject);
                    free(e->text);
                }
            }
            pthread_mutex_unlock(&reg->mu);
        }
        json_decref(j);
    }
    free(payload);
    cl_buf_free(&path);
    cl_buf_free(&body);
    return rc;
}

/* ---- Fetch by id ---------------------------------------------------------------- */

/* Looks id up in both caches; returns 1 (found, *text set), -1 (negatively cached), 0. */
static int cache_lookup(cl_registry *reg, int32_t id, const char **text)
{
    int found = 0;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nids; i++) {
        if (reg->ids[i].id == id) {
            *text = reg->ids[i].text;
            reg->stats.cache_hits++;
            found = 1;
            break;
        }
    }
    if (!found) {
        int64_t now = cl_mono_ms();
        for (size_t i = 0; i < NEGATIVE_SLOTS; i++) {
            if (reg->negative[i].expires_ms > now && reg->negative[i].id == id) {
                reg->stats.negative_hits++;
                found = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return found;
}

int cl_registry_schema_by_id(cl_registry *reg, int32_t id, const char **text_out, char *err,
                             size_t errlen)
{
    *text_out = NULL;
    int cached = cache_lookup(reg, id, text_out);
    if (cached == 1) return CL_OK;
    if (cached == -1)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "schema id %" PRId32 " is not in the schema registry %s (cached answer)",
                         id, reg->display_url);

    char path[64];
    snprintf(path, sizeof path, "/schemas/ids/%" PRId32, id);
    cl_buf body;
    cl_buf_init(&body, MAX_RESPONSE_BYTES);
    long status = 0;
    int rc = http_call(reg, "GET", path, NULL, &status, &body, err, errlen);
    if (rc == CL_OK && status == 404) {
        pthread_mutex_lock(&reg->mu);
        negative_entry *e = &reg->negative[reg->next_negative++ % NEGATIVE_SLOTS];
        e->id = id;
        e->expires_ms = cl_mono_ms() + reg->negative_ms;
        pthread_mutex_unlock(&reg->mu);
        rc = cl_seterr(err, errlen, CL_ENOTFOUND,
                       "schema id %" PRId32 " is not in the schema registry %s", id,
                       reg->display_url);
    } else if (rc == CL_OK && (status < 200 || status > 299)) {
        char display[2048];
        snprintf(display, sizeof display, "%s%s", reg->display_url, path);
        rc = permanent_http_error(status, "GET", &body, display, err, errlen);
    } else if (rc == CL_OK) {
        json_t *j = json_loadb(body.data, body.len, 0, NULL);
        const char *schema = json_string_value(json_object_get(j, "schema"));
        const char *type = json_string_value(json_object_get(j, "schemaType"));
        if (!schema) {
            rc = cl_seterr(err, errlen, CL_EIO,
                           "schema registry GET %s%s: response has no \"schema\" string",
                           reg->display_url, path);
        } else if (type && strcmp(type, "AVRO") != 0) {
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "schema id %" PRId32 " is a %.32s schema, not Avro", id, type);
        } else {
            char *copy = strdup(schema);
            pthread_mutex_lock(&reg->mu);
            const char *existing = NULL;
            for (size_t i = 0; i < reg->nids; i++)
                if (reg->ids[i].id == id) existing = reg->ids[i].text;
            if (existing) {
                *text_out = existing;
            } else if (copy && reg->nids < MAX_CACHED_IDS) {
                if (reg->nids == reg->capids) {
                    size_t cap = reg->capids ? reg->capids * 2 : 16;
                    id_entry *v = realloc(reg->ids, cap * sizeof *v);
                    if (v) {
                        reg->ids = v;
                        reg->capids = cap;
                    }
                }
                if (reg->nids < reg->capids) {
                    reg->ids[reg->nids].id = id;
                    reg->ids[reg->nids].text = copy;
                    reg->nids++;
                    *text_out = copy;
                    copy = NULL;
                }
            }
            pthread_mutex_unlock(&reg->mu);
            free(copy);
            if (!*text_out)
                rc = cl_seterr(err, errlen, CL_ENOMEM, "schema id %" PRId32 ": cache full", id);
        }
        json_decref(j);
    }
    cl_buf_free(&body);
    return rc;
}
