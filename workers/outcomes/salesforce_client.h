/*
 * salesforce_client.h — the REST and Bulk API 2.0 calls the outcomes worker makes, over
 * one libcurl easy handle, with the fault handling that Salesforce extractors are known
 * to get wrong.
 *
 * Every request goes through one loop that decides, from the transport result, the
 * HTTP status and Salesforce's errorCode, what happens next (cl_sf_classify):
 *   2xx                               done
 *   401 (INVALID_SESSION_ID)          re-authenticate once, then retry the same request
 *   403 REQUEST_LIMIT_EXCEEDED        stop (CL_ESTOP): keep state, try at the next poll
 *   INVALID_QUERY_LOCATOR             CL_ECONFLICT: the caller restarts the query from
 *                                     its last acknowledged record
 *   408, 425, 429, 5xx (not 501),     retry with exponential backoff and full jitter
 *   timeouts, resets, DNS failures    (common/retry.h), up to retry.max.attempts, then
 *                                     CL_EAGAIN; other transport errors (TLS
 *                                     verification, bad URL) fail at once, naming the URL
 *   anything else                     CL_ERR with "GET <path>: HTTP 400 MALFORMED_QUERY: ..."
 * Sforce-Limit-Info ("api-usage=25/15000") is read from every response; before each
 * request the client refuses (CL_ESTOP) once the configured share of the daily quota
 * is used, so the worker never starves the org's other integrations.
 *
 * Hostile input: bodies are bounded, JSON is parsed strictly (a truncated or malformed
 * page is CL_EINVAL naming the request, never a skipped page), and nextRecordsUrl must
 * be a path under /services/data/ on the instance we authenticated against: a page can
 * never send our token to another host.
 */
#ifndef CL_OUTCOMES_SALESFORCE_CLIENT_H
#define CL_OUTCOMES_SALESFORCE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "retry.h"
#include "salesforce_auth.h"
#include "util.h"

/* ---- pure pieces (unit-tested without a network) ------------------------------------ */

/* Retries follow the one closedloop policy (common/retry.h): cl_retry_policy and
 * cl_retry_backoff_ms come from there. A Retry-After the server sends is honoured up
 * to the policy's cap. */

/* "api-usage=25/15000" (possibly among other comma-separated items) -> used, max. */
int cl_sf_parse_limit_info(const char *value, int64_t *used, int64_t *max);

typedef enum {
    CL_SF_VERDICT_OK = 0,
    CL_SF_VERDICT_RETRY,   /* cl_retry_http_status_transient: 408, 425, 429, 5xx but 501 */
    CL_SF_VERDICT_REAUTH,  /* 401 */
    CL_SF_VERDICT_LIMIT,   /* REQUEST_LIMIT_EXCEEDED */
    CL_SF_VERDICT_LOCATOR, /* INVALID_QUERY_LOCATOR */
    CL_SF_VERDICT_FATAL,
} cl_sf_verdict;

/* Classifies a response; fills error_code/message from Salesforce's error shapes
 * ([{"message","errorCode"}] or {"error","error_description"}) when present. */
cl_sf_verdict cl_sf_classify(long http_status, const char *body, size_t len, char *error_code,
                             size_t codelen, char *message, size_t msglen);

/* Accepts "/services/data/vNN.N/query/01g...-2000" only (no scheme, host, "..", spaces
 * or control characters). */
int cl_sf_next_url_valid(const char *path);

typedef struct {
    json_t *root;    /* owned */
    json_t *records; /* borrowed from root: array of record objects */
    int done;
    long total_size;
    char next_url[CL_SF_URL_MAX]; /* "" when done */
} cl_sf_page;

/* Parses a query response body; "what" names the request in errors. */
int cl_sf_page_parse(const char *body, size_t len, const char *what, cl_sf_page *page, char *err,
                     size_t errlen);
void cl_sf_page_free(cl_sf_page *page);

/* ---- the client --------------------------------------------------------------------- */

typedef struct {
    const char *instance_url; /* NULL/"": use the token's instance_url */
    const char *api_version;  /* "60.0" */
    long timeout_ms;          /* whole request */
    long connect_timeout_ms;
    cl_retry_policy retry;
    double quota_share;  /* 0 < share <= 1: stop when used >= share * max */
    int batch_size;      /* Sforce-Query-Options batchSize (200..2000) */
    const char *ca_file; /* optional CA bundle (tests use a private CA) */
    /* Nonzero turns TLS peer and host verification off (salesforce.tls.verify=false; the
     * caller logs that once). Negative on purpose: zeroed settings keep verification on. */
    int tls_verify_off;
    int (*stop_requested)(void); /* e.g. cl_stop_requested: abandon backoff sleeps */
} cl_sf_client_settings;

typedef struct {
    uint64_t api_calls;
    uint64_t retries_http_5xx, retries_http_429, retries_timeout, retries_connection;
    uint64_t reauths;
    int64_t quota_used, quota_max; /* from Sforce-Limit-Info, -1 until seen */
} cl_sf_client_stats;

typedef struct cl_sf_client cl_sf_client;

/* `auth` is borrowed and must outlive the client. */
int cl_sf_client_new(cl_sf_client **out, const cl_sf_client_settings *s, cl_sf_auth *auth,
                     char *err, size_t errlen);
void cl_sf_client_free(cl_sf_client *c);
void cl_sf_client_stats_get(const cl_sf_client *c, cl_sf_client_stats *out);

/* Authenticates now (the first API call does it implicitly). */
int cl_sf_client_authenticate(cl_sf_client *c, char *err, size_t errlen);

/* GET /services/data/vNN.N/queryAll?q=... (or /query when all == 0). */
int cl_sf_query(cl_sf_client *c, const char *soql, int all, cl_sf_page *page, char *err,
                size_t errlen);
/* GET <instance><next_url>. */
int cl_sf_query_more(cl_sf_client *c, const char *next_url, cl_sf_page *page, char *err,
                     size_t errlen);

/* Bulk API 2.0 query jobs. */
typedef enum {
    CL_SF_JOB_UPLOAD_COMPLETE = 0,
    CL_SF_JOB_IN_PROGRESS,
    CL_SF_JOB_COMPLETE,
    CL_SF_JOB_FAILED,
    CL_SF_JOB_ABORTED,
} cl_sf_job_state;

/* POST jobs/query {"operation":"queryAll","query":soql}; job_id gets the new id. */
int cl_sf_bulk_create(cl_sf_client *c, const char *soql, char job_id[32], char *err, size_t errlen);
/* GET jobs/query/<id>; on Failed, err holds the job's errorMessage. */
int cl_sf_bulk_state(cl_sf_client *c, const char *job_id, cl_sf_job_state *state, char *err,
                     size_t errlen);
/* GET jobs/query/<id>/results?maxRecords=N[&locator=L]: CSV into csv (reset first);
 * next_locator gets Sforce-Locator ("" when it is the string "null": no more pages). */
int cl_sf_bulk_results(cl_sf_client *c, const char *job_id, const char *locator, long max_records,
                       cl_buf *csv, char next_locator[128], char *err, size_t errlen);
/* DELETE jobs/query/<id>; failures are only logged by the caller. */
int cl_sf_bulk_delete(cl_sf_client *c, const char *job_id, char *err, size_t errlen);

#endif
