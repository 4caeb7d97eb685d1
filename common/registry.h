/*
 * registry.h — a Confluent Schema Registry client over libcurl.
 *
 * closedloop speaks the registry's REST API only for the two things the wire format
 * needs: registering a writer schema under a subject (POST /subjects/<subject>/versions,
 * idempotent on the registry side: the same text returns the same id) and fetching a
 * writer schema by the 4-byte id found in a Confluent-framed message
 * (GET /schemas/ids/<id>). Everything else (compatibility checks, subject listing) is
 * the platform team's business and is left to their tooling.
 *
 * Why it is shaped so:
 *  - The registry sits on the decode hot path of every worker, so ids are cached
 *    forever once fetched (an id's schema is immutable in the registry) and unknown ids
 *    are cached negatively for schema.registry.negative.cache.ms, so a stream of
 *    garbage ids cannot turn into a stream of HTTP requests.
 *  - Transient failures (connection errors, timeouts, HTTP 408, 425, 429 and 5xx except
 *    501 — common/retry.h decides) are retried with exponential backoff and full jitter,
 *    honouring Retry-After, up to schema.registry.retries times, each attempt bounded by
 *    schema.registry.timeout.ms. Permanent ones (other 4xx) are not.
 *  - Credentials (basic auth user info, bearer token, client key) are never logged
 *    and never appear in error messages; URLs in messages are printed without userinfo.
 *  - TLS verification (peer certificate and host name) is on unless turned off by the
 *    explicit schema.registry.ssl.verify=false, which cl_registry_new() logs as a WARN
 *    naming the setting and where it came from: an insecure registry connection must be
 *    a visible decision, never a silent default. A private CA is given with
 *    schema.registry.ssl.ca.location, a client certificate with ...certificate/key.
 *
 * Thread-safety: a cl_registry may be shared by threads; the caches are guarded by a
 * mutex and each request uses its own curl easy handle. Strings returned by
 * cl_registry_schema_by_id() live as long as the registry.
 */
#ifndef CL_REGISTRY_H
#define CL_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

/* schema.registry.* keys, for programs that build their own option tables. */
extern const cl_option cl_registry_options[];

typedef struct cl_registry cl_registry;

typedef struct {
    const char *url;            /* "http://host:8081" (a trailing '/' is fine) */
    const char *basic_auth;     /* "user:password" or NULL */
    const char *bearer_token;   /* or NULL; basic_auth wins when both are set */
    int64_t timeout_ms;         /* per attempt, whole request; 0: 10000 */
    int64_t connect_timeout_ms; /* 0: min(timeout_ms, 5000) */
    int retries;                /* extra attempts on transient errors; <0: 0 */
    int64_t backoff_initial_ms; /* 0: 100 */
    int64_t backoff_max_ms;     /* 0: 5000 */
    const char *ca_location;    /* PEM CA bundle or NULL (system default) */
    const char *cert_location;  /* client certificate (PEM) or NULL */
    const char *key_location;   /* client private key (PEM) or NULL */
    int64_t negative_cache_ms;  /* how long an unknown id stays unknown; 0: 30000 */
    /* Nonzero turns TLS peer and host verification off (schema.registry.ssl.verify=false).
     * Negative on purpose: zero-initialised options keep verification on. */
    int tls_verify_off;
    const char *tls_verify_source; /* where that setting came from, for the WARN line */
} cl_registry_opts;

/* Creates a client; does not contact the registry. */
int cl_registry_new(cl_registry **out, const cl_registry_opts *opts, char *err, size_t errlen);

/* From the schema.registry.* keys of cfg. *out is NULL (and CL_OK returned) when
 * schema.registry.url is unset: the caller then uses single-object framing. */
int cl_registry_from_config(cl_registry **out, const cl_config *cfg, char *err, size_t errlen);

void cl_registry_free(cl_registry *reg);

/* Registers schema_text (the original .avsc text) under subject, e.g.
 * "closedloop.snapshots-value", and returns its global id. Cached per
 * (subject, text), so calling it once per producer start is cheap. */
int cl_registry_register(cl_registry *reg, const char *subject, const char *schema_text,
                         int32_t *id_out, char *err, size_t errlen);

/* The schema text registered under id. CL_ENOTFOUND when the registry does not know
 * it (also while the negative cache entry lives); CL_EAGAIN / CL_ETIMEOUT / CL_EIO
 * when the registry could not be reached after the retries. *text_out stays valid
 * until cl_registry_free(). */
int cl_registry_schema_by_id(cl_registry *reg, int32_t id, const char **text_out, char *err,
                             size_t errlen);

/* Counters for /metrics and tests. */
typedef struct {
    uint64_t requests;      /* HTTP attempts made */
    uint64_t retries;       /* attempts that were retries */
    uint64_t cache_hits;    /* id lookups served from the positive cache */
    uint64_t negative_hits; /* id lookups served from the negative cache */
} cl_registry_stats;
void cl_registry_get_stats(cl_registry *reg, cl_registry_stats *out);

#endif
