/*
 * outcomes.c — the outcomes worker loop: Salesforce -> OpportunityOutcome on Kafka, with
 * the pull position in LMDB advanced only behind Kafka acknowledgements. See outcomes.h.
 */
#include "outcomes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "avro.h"
#include "csv.h"
#include "error.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "outcome_mapping.h"
#include "prom.h"
#include "records.h"
#include "registry.h"
#include "salesforce_auth.h"
#include "salesforce_client.h"
#include "soql.h"
#include "store.h"
#include "util.h"

const cl_option cl_outcomes_options[] = {
    {"once", CL_OPT_BOOL, "false",
     "Pull once and exit (0 complete, 75 stopped early with state kept, 1 error)."},
    {"salesforce.login.url", CL_OPT_STRING, "https://login.salesforce.com",
     "OAuth token endpoint base: https://login.salesforce.com, https://test.salesforce.com or your "
     "My Domain URL."},
    {"salesforce.instance.url", CL_OPT_STRING, NULL,
     "API base URL; default: the instance_url the token endpoint returns."},
    {"salesforce.jwt.audience", CL_OPT_STRING, NULL,
     "JWT aud claim; default: salesforce.login.url."},
    {"salesforce.api.version", CL_OPT_STRING, "60.0", "REST API version (NN.N)."},
    {"salesforce.auth", CL_OPT_STRING, "jwt",
     "OAuth flow: jwt, client_credentials or refresh_token."},
    {"salesforce.client.id", CL_OPT_STRING, NULL, "Connected app consumer key."},
    {"salesforce.client.secret", CL_OPT_STRING, NULL,
     "Connected app consumer secret (client_credentials, optional for refresh_token).",
     CL_OPT_SECRET},
    {"salesforce.username", CL_OPT_STRING, NULL, "Integration user (JWT sub)."},
    {"salesforce.private.key.file", CL_OPT_STRING, NULL,
     "PEM RSA private key that signs JWT assertions (mode 0600)."},
    {"salesforce.refresh.token", CL_OPT_STRING, NULL,
     "Refresh token (salesforce.auth=refresh_token).", CL_OPT_SECRET},
    {"salesforce.ca.file", CL_OPT_STRING, NULL,
     "CA bundle for the Salesforce TLS connection; default: the system's."},
    {"salesforce.tls.verify", CL_OPT_BOOL, "true",
     "Verify the Salesforce TLS certificate and host name; false is insecure (tokens can be "
     "intercepted) and is logged as a warning at start."},
    {"salesforce.timeout.ms", CL_OPT_INT, "120000", "Upper bound on one HTTP request.", 0, 1000,
     3600000},
    {"salesforce.connect.timeout.ms", CL_OPT_INT, "10000", "Upper bound on connecting.", 0, 100,
     600000},
    {"salesforce.retry.max.attempts", CL_OPT_INT, "6",
     "Tries per request for 5xx, 429, timeouts and connection errors.", 0, 1, 100},
    {"salesforce.retry.backoff.ms", CL_OPT_INT, "500",
     "First backoff ceiling (doubles per retry, full jitter).", 0, 1, 600000},
    {"salesforce.retry.backoff.max.ms", CL_OPT_INT, "30000", "Backoff ceiling cap.", 0, 1, 3600000},
    {"outcomes.source", CL_OPT_STRING, "auto",
     "rest, bulk, auto (Bulk API 2.0 when a pull exceeds outcomes.bulk.threshold records) or csv."},
    {"outcomes.modstamp.field", CL_OPT_STRING, "SystemModstamp",
     "Version field for the incremental pull: SystemModstamp or LastModifiedDate."},
    {"outcomes.batch.size", CL_OPT_INT, "2000",
     "REST page size (Sforce-Query-Options batchSize) and records per acknowledged chunk.", 0, 200,
     2000},
    {"outcomes.lookback.ms", CL_OPT_INT, "600000",
     "Each pull re-reads this far behind the watermark (late-committed SystemModstamps); "
     "duplicates are dropped by (Id, SystemModstamp).",
     0, 0, 30LL * 86400000},
    {"outcomes.poll.interval.ms", CL_OPT_INT, "60000", "Time between pulls.", 0, 100, 86400000},
    {"outcomes.api.quota.share", CL_OPT_DOUBLE, "0.8",
     "Stop pulling once this share of the org's daily API requests is used (Sforce-Limit-Info).", 0,
     0.01, 1},
    {"outcomes.start", CL_OPT_STRING, NULL,
     "Initial watermark (ISO-8601 UTC) when there is no state; default: the beginning of time."},
    {"outcomes.where", CL_OPT_STRING, NULL,
     "Extra SOQL condition ANDed to the pull (e.g. RecordType.DeveloperName = 'Sales')."},
    {"outcomes.include.currency", CL_OPT_BOOL, "false",
     "Select CurrencyIsoCode (multi-currency orgs)."},
    {"outcomes.bulk.threshold", CL_OPT_INT, "50000",
     "With outcomes.source=auto, pulls larger than this use Bulk API 2.0.", 0, 0, 1000000000},
    {"outcomes.bulk.max.records", CL_OPT_INT, "50000",
     "Records per Bulk API results page (maxRecords).", 0, 1, 1000000},
    {"outcomes.bulk.poll.ms", CL_OPT_INT, "2000", "Interval between Bulk job state checks.", 0, 10,
     600000},
    {"outcomes.bulk.timeout.ms", CL_OPT_INT, "3600000",
     "Give up on a Bulk job (and fall back to REST) after this long.", 0, 1000, 86400000},
    {"outcomes.csv.file", CL_OPT_STRING, NULL,
     "Report export of closed opportunities (outcomes.source=csv)."},
    {"outcomes.csv.columns", CL_OPT_STRING, NULL,
     "Header mapping ApiName=Column,... for report exports (e.g. StageName=Stage,CloseDate=Close "
     "Date)."},
    {"outcomes.csv.us.dates", CL_OPT_BOOL, "false", "Report dates are M/D/YYYY."},
    {"outcomes.csv.max.bytes", CL_OPT_INT, "1073741824", "Largest CSV export read.", 0, 1,
     17179869184.0},
    {NULL},
};

enum { DB_META = 0, DB_SEEN = 1 };
static const char *const db_names[] = {"meta", "seen", NULL};
static const char KEY_WATERMARK[] = "watermark";
static const char KEY_POSITION[] = "position";

typedef enum { SOURCE_AUTO, SOURCE_REST, SOURCE_BULK, SOURCE_CSV } source_kind;

/* One record of the chunk being published. */
typedef struct {
    char id[CL_SF_ID_MAX + 1];
    int64_t modstamp_ms;
    cl_outcome_seen_state new_state;
    int status; /* delivery result; 1 = pending */
} pending;

struct cl_outcomes {
    cl_config *cfg;
    source_kind source;
    int once;
    const char *modstamp_field;
    int batch_size;
    int64_t lookback_ms, poll_interval_ms, start_ms;
    int64_t bulk_threshold, bulk_max_records, bulk_poll_ms, bulk_timeout_ms;
    int include_currency;
    const char *where;
    char topic[512];

    cl_store *store;
    cl_producer *producer;
    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_avro_codec *codec;
    cl_sf_auth auth;
    int auth_ready;
    cl_sf_client *sf;
    cl_sf_client_stats last_stats;

    cl_prom *prom;
    cl_http *http;
    cl_prom_metric *m_records, *m_api_calls, *m_retries, *m_reauths, *m_quota_used, *m_quota_max,
        *m_watermark, *m_last_success, *m_pulls, *m_locator_restarts, *m_bulk_fallbacks,
        *m_delivery_failed;

    pending *chunk;
    size_t nchunk, capchunk;
    cl_buf value;
};

/* ---- position encoding ---------------------------------------------------------------- */

int cl_outcomes_position_encode(const cl_outcomes_position *p, cl_buf *out)
{
    json_t *j = json_pack("{s:I, s:I, s:s, s:s}", "before", (json_int_t)p->before_ms, "from",
                          (json_int_t)p->from_ms, "job", p->job_id, "locator", p->locator);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s) return CL_ENOMEM;
    cl_buf_reset(out);
    int rc = cl_buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

int cl_outcomes_position_decode(const void *data, size_t len, cl_outcomes_position *p, char *err,
                                size_t errlen)
{
    memset(p, 0, sizeof *p);
    json_t *j = json_loadb(data, len, 0, NULL);
    json_int_t before, from;
    const char *job, *loc;
    if (!j ||
        json_unpack(j, "{s:I, s:I, s:s, s:s}", "before", &before, "from", &from, "job", &job,
                    "locator", &loc) != 0 ||
        cl_strlcpy(p->job_id, job, sizeof p->job_id) != CL_OK ||
        cl_strlcpy(p->locator, loc, sizeof p->locator) != CL_OK || from > before) {
        json_decref(j);
        return cl_seterr(err, errlen, CL_EINVAL, "stored pull position is corrupt");
    }
    p->before_ms = before;
    p->from_ms = from;
    p->active = 1;
    json_decref(j);
    return CL_OK;
}

/* ---- state ---------------------------------------------------------------------------- */

static int64_t floor_second(int64_t ms)
{
    int64_t s = ms / 1000;
    if (ms % 1000 < 0) s--;
    return s * 1000;
}

static int load_i64(cl_outcomes *w, const char *key, int64_t *out, char *err, size_t errlen)
{
    cl_buf b;
    cl_buf_init(&b, 64);
    int rc = cl_store_get_copy(w->store, DB_META, key, strlen(key), &b, err, errlen);
    if (rc == CL_OK) {
        if (b.len != 8)
            rc = cl_seterr(err, errlen, CL_EINVAL, "stored %s has %zu bytes, not 8", key, b.len);
        else
            *out = (int64_t)cl_store_be_u64((const uint8_t *)b.data);
    }
    cl_buf_free(&b);
    return rc;
}

static int load_position(cl_outcomes *w, cl_outcomes_position *p, char *err, size_t errlen)
{
    cl_buf b;
    cl_buf_init(&b, 4096);
    memset(p, 0, sizeof *p);
    int rc =
        cl_store_get_copy(w->store, DB_META, KEY_POSITION, strlen(KEY_POSITION), &b, err, errlen);
    if (rc == CL_OK)
        rc = cl_outcomes_position_decode(b.data, b.len, p, err, errlen);
    else if (rc == CL_ENOTFOUND)
        rc = CL_OK;
    cl_buf_free(&b);
    return rc;
}

static int put_position(cl_store_txn *t, const cl_outcomes_position *p, char *err, size_t errlen)
{
    if (!p->active) {
        int rc = cl_store_del(t, DB_META, KEY_POSITION, strlen(KEY_POSITION), err, errlen);
        return rc == CL_ENOTFOUND ? CL_OK : rc;
    }
    cl_buf b;
    cl_buf_init(&b, 4096);
    int rc = cl_outcomes_position_encode(p, &b);
    if (rc == CL_OK)
        rc = cl_store_put(t, DB_META, KEY_POSITION, strlen(KEY_POSITION), b.data, b.len, err,
                          errlen);
    cl_buf_free(&b);
    return rc;
}

static int save_position(cl_outcomes *w, const cl_outcomes_position *p, const int64_t *watermark,
                         char *err, size_t errlen)
{
    cl_store_txn *t;
    int rc = cl_store_batch_begin(w->store, &t, err, errlen);
    if (rc != CL_OK) return rc;
    rc = put_position(t, p, err, errlen);
    if (rc == CL_OK && watermark) {
        uint8_t v[8];
        cl_store_u64_be(v, (uint64_t)*watermark);
        rc = cl_store_put(t, DB_META, KEY_WATERMARK, strlen(KEY_WATERMARK), v, 8, err, errlen);
    }
    if (rc != CL_OK) {
        cl_store_batch_abort(t);
        return rc;
    }
    return cl_store_batch_commit(t, err, errlen);
}

/* ---- publishing ----------------------------------------------------------------------- */

/* The opaque is the record's index + 1 in w->chunk, not a pointer: the array grows
 * (realloc) while earlier records of the chunk are still in flight. */
static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset, const char *reason, void *ud)
{
    cl_outcomes *w = ud;
    size_t i = (size_t)(uintptr_t)opaque;
    if (i == 0 || i > w->nchunk) return; /* a report for a chunk already given up on */
    pending *p = &w->chunk[i - 1];
    p->status = status;
    if (status != CL_OK)
        cl_log(CL_LOG_WARN, "delivery_failed", "topic=%s opportunity_id=%s error=\"%s\"", topic,
               p->id, reason ? reason : "");
}

static void count(cl_outcomes *w, const char *action)
{
    const char *lv[] = {action};
    cl_prom_counter_add(w->m_records, lv, 1);
}

/* Copies at most cap-1 bytes of src, cutting at a UTF-8 boundary. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int to_outcome(const cl_sf_opportunity *o, cl_outcome_source source, cl_outcome *r,
                      char *err, size_t errlen)
{
    cl_outcome_init(r);
    cl_strlcpy(r->opportunity_id, o->id, sizeof r->opportunity_id);
    cl_strlcpy(r->account_id, o->account_id, sizeof r->account_id);
    cl_strlcpy(r->owner_id, o->owner_id, sizeof r->owner_id);
    r->outcome = o->is_won ? CL_OUTCOME_WON : CL_OUTCOME_LOST;
    /* StageName may be 255 characters; the record keeps CL_NAME_MAX bytes of it. */
    copy_utf8(r->stage_name, sizeof r->stage_name,
              o->stage_name[0] ? o->stage_name : (o->is_won ? "Closed Won" : "Closed Lost"));
    copy_utf8(r->type, sizeof r->type, o->type);
    copy_utf8(r->lead_source, sizeof r->lead_source, o->lead_source);
    r->close_date = o->close_date;
    r->final_value.present = o->has_amount;
    r->final_value.value = o->has_amount ? o->amount : 0;
    cl_strlcpy(r->currency, o->currency[0] ? o->currency : "USD", sizeof r->currency);
    if (o->has_created) {
        int64_t day = o->created_ms / 86400000;
        if (o->created_ms % 86400000 < 0) day--;
        r->created_date = (int32_t)day;
    } else {
        r->created_date = o->close_date; /* report exports without Created Date */
    }
    r->days_to_close = r->close_date - r->created_date;
    r->system_modstamp = o->modstamp_ms;
    r->source = source;
    r->ingested_at = cl_now_ms();
    return cl_outcome_validate(r, err, errlen);
}

static int chunk_push(cl_outcomes *w, const cl_sf_opportunity *o, cl_outcome_seen_state st)
{
    if (w->nchunk == w->capchunk) {
        size_t cap = w->capchunk ? w->capchunk * 2 : 256;
        pending *n = realloc(w->chunk, cap * sizeof *n);
        if (!n) return CL_ENOMEM;
        w->chunk = n;
        w->capchunk = cap;
    }
    pending *p = &w->chunk[w->nchunk++];
    cl_strlcpy(p->id, o->id, sizeof p->id);
    p->modstamp_ms = o->modstamp_ms;
    p->new_state = st;
    p->status = 1;
    return CL_OK;
}

static int read_seen(cl_store_txn *t, const char *id, cl_outcome_seen *seen, char *err,
                     size_t errlen)
{
    const void *v;
    size_t vlen;
    seen->state = CL_OUTCOME_SEEN_NONE;
    seen->modstamp_ms = 0;
    int rc = cl_store_get(t, DB_SEEN, id, strlen(id), &v, &vlen, err, errlen);
    if (rc == CL_ENOTFOUND) return CL_OK;
    if (rc != CL_OK) return rc;
    if (vlen != 9 || ((const uint8_t *)v)[0] > CL_OUTCOME_SEEN_RETRACTED)
        return cl_seterr(err, errlen, CL_EINVAL, "stored state of %s is corrupt", id);
    seen->state = (cl_outcome_seen_state)((const uint8_t *)v)[0];
    seen->modstamp_ms = (int64_t)cl_store_be_u64((const uint8_t *)v + 1);
    return CL_OK;
}

/* Decide and send one opportunity (the chunk is flushed and committed by the caller). */
static int publish_one(cl_outcomes *w, cl_store_txn *rtxn, const cl_sf_opportunity *o,
                       cl_outcome_source source, char *err, size_t errlen)
{
    cl_outcome_seen seen;
    int rc = read_seen(rtxn, o->id, &seen, err, errlen);
    if (rc != CL_OK) return rc;
    /* A second record with the same Id in one chunk (Bulk pages can hold a record
     * modified during the job twice) must see the first one's decision. */
    for (size_t i = w->nchunk; i-- > 0;) {
        if (strcmp(w->chunk[i].id, o->id) == 0) {
            seen.state = w->chunk[i].new_state;
            seen.modstamp_ms = w->chunk[i].modstamp_ms;
            break;
        }
    }
    cl_outcome_action a = cl_outcome_decide(o, &seen);
    count(w, cl_outcome_action_name(a));
    if (a == CL_OUTCOME_SKIP_DUPLICATE || a == CL_OUTCOME_SKIP_NOTHING_TO_SAY) return CL_OK;

    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)o->modstamp_ms);
    if (a == CL_OUTCOME_PUBLISH) {
        cl_outcome r;
        char rerr[CL_ERRLEN];
        if (to_outcome(o, source, &r, rerr, sizeof rerr) != CL_OK) {
            count(w, "invalid");
            cl_log(CL_LOG_ERROR, "record_invalid", "opportunity_id=%s error=\"%s\"", o->id, rerr);
            return CL_OK;
        }
        avro_value_t *v = cl_avro_codec_value(w->codec);
        cl_buf_reset(&w->value);
        if ((rc = cl_outcome_to_avro(&r, v, err, errlen)) != CL_OK ||
            (rc = cl_avro_codec_encode(w->codec, v, &w->value, err, errlen)) != CL_OK)
            return rc;
        if ((rc = chunk_push(w, o, CL_OUTCOME_SEEN_OUTCOME)) != CL_OK)
            return cl_seterr(err, errlen, rc, "out of memory");
        cl_kafka_header h[] = {{"closedloop.system_modstamp", ms, strlen(ms)}};
        rc = cl_producer_send(w->producer, w->topic, o->id, strlen(o->id), w->value.data,
                              w->value.len, h, 1, (void *)(uintptr_t)w->nchunk, 60000, err, errlen);
    } else {
        if ((rc = chunk_push(w, o, CL_OUTCOME_SEEN_RETRACTED)) != CL_OK)
            return cl_seterr(err, errlen, rc, "out of memory");
        const char *why = o->is_deleted ? "deleted" : "reopened";
        cl_kafka_header h[] = {{"closedloop.system_modstamp", ms, strlen(ms)},
                               {"closedloop.retraction", why, strlen(why)}};
        rc = cl_producer_send(w->producer, w->topic, o->id, strlen(o->id), NULL, 0, h, 2,
                              (void *)(uintptr_t)w->nchunk, 60000, err, errlen);
    }
    if (rc != CL_OK) w->nchunk--; /* never accepted: no delivery report will come */
    return rc;
}

/*
 * Waits for every delivery report of the chunk, then records the acknowledged records
 * and `pos` (and the watermark, when given) in one LMDB transaction. The position is
 * written only if every record was acknowledged; otherwise the acknowledged ones are
 * still remembered (so a retry does not publish them again) and CL_EAGAIN is returned.
 */
static int commit_chunk(cl_outcomes *w, const cl_outcomes_position *pos, const int64_t *watermark,
                        char *err, size_t errlen)
{
    int rc;
    int64_t deadline = cl_mono_ms() + cl_config_int(w->cfg, "shutdown.timeout.ms");
    /* Flushing has no deadline of its own while running (librdkafka's
     * message.timeout.ms bounds each record); after a stop request it gets
     * shutdown.timeout.ms, and unacknowledged records then simply stay unrecorded. */
    for (;;) {
        rc = cl_producer_flush(w->producer, 500, err, errlen);
        if (rc == CL_OK) break;
        if (rc != CL_ETIMEOUT) return rc;
        if (cl_stop_requested() && cl_mono_ms() > deadline)
            return cl_seterr(err, errlen, CL_ESTOP,
                             "stopped with records unacknowledged; they will be pulled again");
    }
    cl_store_txn *t;
    if ((rc = cl_store_batch_begin(w->store, &t, err, errlen)) != CL_OK) return rc;
    size_t failed = 0;
    for (size_t i = 0; i < w->nchunk && rc == CL_OK; i++) {
        pending *p = &w->chunk[i];
        if (p->status != CL_OK) {
            failed++;
            continue;
        }
        uint8_t v[9];
        v[0] = (uint8_t)p->new_state;
        cl_store_u64_be(v + 1, (uint64_t)p->modstamp_ms);
        rc = cl_store_put(t, DB_SEEN, p->id, strlen(p->id), v, sizeof v, err, errlen);
    }
    if (rc == CL_OK && failed == 0 && pos) rc = put_position(t, pos, err, errlen);
    if (rc == CL_OK && failed == 0 && watermark) {
        uint8_t v[8];
        cl_store_u64_be(v, (uint64_t)*watermark);
        rc = cl_store_put(t, DB_META, KEY_WATERMARK, strlen(KEY_WATERMARK), v, 8, err, errlen);
    }
    if (rc != CL_OK) {
        cl_store_batch_abort(t);
        return rc;
    }
    rc = cl_store_batch_commit(t, err, errlen);
    size_t n = w->nchunk;
    w->nchunk = 0;
    if (rc != CL_OK) return rc;
    if (failed) {
        cl_prom_counter_add(w->m_delivery_failed, NULL, (double)failed);
        return cl_seterr(err, errlen, CL_EAGAIN,
                         "%zu of %zu records were not acknowledged by Kafka (topic %s); the "
                         "position was kept and they will be pulled again",
                         failed, n, w->topic);
    }
    if (watermark) {
        cl_prom_gauge_set(w->m_watermark, NULL, (double)*watermark / 1000.0);
    }
    return CL_OK;
}

/* Publishes a JSON records array; returns the modstamp of the last record in *last. */
static int publish_json_records(cl_outcomes *w, json_t *records, cl_outcome_source source,
                                int64_t *last, char *err, size_t errlen)
{
    cl_store_txn *rtxn;
    int rc = cl_store_read_begin(w->store, &rtxn, err, errlen);
    if (rc != CL_OK) return rc;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        cl_sf_opportunity o;
        char rerr[CL_ERRLEN];
        if (cl_sf_opportunity_from_json(rec, w->modstamp_field, &o, rerr, sizeof rerr) != CL_OK) {
            /* One bad record cannot be published; it is counted and logged with its Id,
             * and the pull goes on (the page itself was well-formed). */
            count(w, "invalid");
            cl_log(CL_LOG_ERROR, "record_invalid", "source=%s index=%zu error=\"%s\"",
                   cl_outcome_source_name(source), i, rerr);
            continue;
        }
        if (o.modstamp_ms > *last) *last = o.modstamp_ms;
        if ((rc = publish_one(w, rtxn, &o, source, err, errlen)) != CL_OK) break;
    }
    cl_store_read_end(rtxn);
    return rc;
}

/* ---- REST ----------------------------------------------------------------------------- */

/* CL_EAGAIN with *switch_to_bulk set when auto mode finds the pull too large. */
static int pull_rest(cl_outcomes *w, cl_outcomes_position *pos, int allow_bulk, int *switch_to_bulk,
                     char *err, size_t errlen)
{
    int restarts = 0;
    int first = 1;
    *switch_to_bulk = 0;
    for (;;) {
        cl_buf soql;
        cl_buf_init(&soql, CL_SOQL_MAX_LEN + 1);
        cl_soql_pull q = {.modstamp_field = w->modstamp_field,
                          .from_ms = pos->from_ms,
                          .before_ms = pos->before_ms,
                          .include_currency = w->include_currency,
                          .extra_where = w->where};
        int rc = cl_soql_build_pull(&q, &soql, err, errlen);
        cl_sf_page page;
        if (rc == CL_OK) rc = cl_sf_query(w->sf, soql.data, 1, &page, err, errlen);
        cl_buf_free(&soql);
        if (rc != CL_OK) return rc;
        if (first && allow_bulk && page.total_size > w->bulk_threshold) {
            cl_log(CL_LOG_INFO, "pull_switch_to_bulk", "records=%ld threshold=%lld",
                   page.total_size, (long long)w->bulk_threshold);
            cl_sf_page_free(&page);
            *switch_to_bulk = 1;
            return CL_OK;
        }
        first = 0;
        for (;;) {
            int64_t last = pos->from_ms;
            rc = publish_json_records(w, page.records, CL_SOURCE_REST, &last, err, errlen);
            /* The next re-query may start at the last record's second: everything before
             * it in (SystemModstamp, Id) order has been acknowledged once this commits. */
            cl_outcomes_position next = *pos;
            if (floor_second(last) > next.from_ms) next.from_ms = floor_second(last);
            if (next.from_ms >= next.before_ms) next.from_ms = pos->from_ms;
            if (rc == CL_OK)
                rc = commit_chunk(w, &next, NULL, err, errlen);
            else
                commit_chunk(w, NULL, NULL, NULL, 0); /* remember what was acknowledged */
            if (rc != CL_OK) {
                cl_sf_page_free(&page);
                return rc;
            }
            *pos = next;
            if (page.done) {
                cl_sf_page_free(&page);
                return CL_OK;
            }
            char next_url[CL_SF_URL_MAX];
            cl_strlcpy(next_url, page.next_url, sizeof next_url);
            cl_sf_page_free(&page);
            rc = cl_sf_query_more(w->sf, next_url, &page, err, errlen);
            if (rc == CL_ECONFLICT && restarts < 5) {
                restarts++;
                cl_prom_counter_add(w->m_locator_restarts, NULL, 1);
                char when[32];
                cl_format_timestamp(pos->from_ms, when);
                cl_log(CL_LOG_WARN, "query_locator_invalid",
                       "restart_from=%s restarts=%d error=\"%s\"", when, restarts, err);
                break; /* re-query from the last acknowledged record */
            }
            if (rc != CL_OK) return rc;
        }
    }
}

/* ---- Bulk API 2.0 --------------------------------------------------------------------- */

static int wait_job(cl_outcomes *w, const char *job, char *err, size_t errlen)
{
    int64_t deadline = cl_mono_ms() + w->bulk_timeout_ms;
    for (;;) {
        cl_sf_job_state st;
        int rc = cl_sf_bulk_state(w->sf, job, &st, err, errlen);
        if (rc != CL_OK) return rc;
        if (st == CL_SF_JOB_COMPLETE) return CL_OK;
        if (st == CL_SF_JOB_FAILED || st == CL_SF_JOB_ABORTED)
            return CL_ERR; /* err holds the job's errorMessage */
        if (cl_mono_ms() > deadline)
            return cl_seterr(err, errlen, CL_ETIMEOUT, "bulk job %s not complete after %lld ms",
                             job, (long long)w->bulk_timeout_ms);
        for (int64_t slept = 0; slept < w->bulk_poll_ms; slept += 100) {
            if (cl_stop_requested())
                return cl_seterr(err, errlen, CL_ESTOP, "stopped while waiting for bulk job");
            cl_sleep_ms(100);
        }
    }
}

static int publish_csv_rows(cl_outcomes *w, const char *data, size_t len, cl_outcome_source source,
                            const char *origin, const char *renames, int us_dates,
                            const cl_outcomes_position *pos, char *err, size_t errlen)
{
    cl_csv_reader r;
    cl_csv_reader_init(&r, data, len);
    char **f;
    size_t n;
    cl_sf_csv_mapping m;
    int rc = cl_csv_next_row(&r, &f, &n, err, errlen);
    if (rc == CL_ENOTFOUND) {
        cl_csv_reader_free(&r);
        return CL_OK;
    }
    if (rc == CL_OK) rc = cl_sf_csv_mapping_from_header(&m, f, n, renames, err, errlen);
    if (rc != CL_OK) {
        char inner[CL_ERRLEN];
        cl_strlcpy(inner, err ? err : "", sizeof inner);
        cl_csv_reader_free(&r);
        return cl_seterr(err, errlen, rc, "%s: header: %s", origin, inner);
    }
    m.us_dates = us_dates;
    cl_store_txn *rtxn = NULL;
    size_t rows = 0, bad = 0;
    for (;;) {
        char rerr[CL_ERRLEN];
        rc = cl_csv_next_row(&r, &f, &n, rerr, sizeof rerr);
        if (rc == CL_ENOTFOUND) {
            rc = CL_OK;
            break;
        }
        if (rc != CL_OK) {
            /* The CSV structure itself is broken: nothing after this point can be trusted. */
            rc = cl_seterr(err, errlen, rc, "%s: %s", origin, rerr);
            break;
        }
        rows++;
        cl_sf_opportunity o;
        if (cl_sf_opportunity_from_csv(&m, f, n, w->modstamp_field, &o, rerr, sizeof rerr) !=
            CL_OK) {
            bad++;
            count(w, "invalid");
            cl_log(CL_LOG_ERROR, "record_invalid", "source=%s line=%zu error=\"%s\"", origin,
                   r.row_line, rerr);
            continue;
        }
        if (!rtxn && (rc = cl_store_read_begin(w->store, &rtxn, err, errlen)) != CL_OK) break;
        if ((rc = publish_one(w, rtxn, &o, source, err, errlen)) != CL_OK) break;
        if (w->nchunk >= (size_t)w->batch_size) {
            cl_store_read_end(rtxn);
            rtxn = NULL;
            /* Mid-page: remember the records, keep the position (the page is re-read
             * after a crash and the seen state drops what was published). */
            if ((rc = commit_chunk(w, pos, NULL, err, errlen)) != CL_OK) break;
        }
    }
    if (rtxn) cl_store_read_end(rtxn);
    cl_csv_reader_free(&r);
    if (rc != CL_OK && w->nchunk) commit_chunk(w, NULL, NULL, NULL, 0);
    if (rc == CL_OK)
        cl_log(CL_LOG_INFO, "csv_read", "source=%s rows=%zu invalid=%zu", origin, rows, bad);
    return rc;
}

/* CL_ERR from a failed job (the caller falls back to REST); position kept otherwise. */
static int pull_bulk(cl_outcomes *w, cl_outcomes_position *pos, int *job_failed, char *err,
                     size_t errlen)
{
    int rc;
    *job_failed = 0;
    if (!pos->job_id[0]) {
        cl_buf soql;
        cl_buf_init(&soql, CL_SOQL_MAX_LEN + 1);
        cl_soql_pull q = {.modstamp_field = w->modstamp_field,
                          .from_ms = pos->from_ms,
                          .before_ms = pos->before_ms,
                          .include_currency = w->include_currency,
                          .extra_where = w->where};
        rc = cl_soql_build_pull(&q, &soql, err, errlen);
        if (rc == CL_OK) rc = cl_sf_bulk_create(w->sf, soql.data, pos->job_id, err, errlen);
        cl_buf_free(&soql);
        if (rc != CL_OK) return rc;
        pos->locator[0] = '\0';
        if ((rc = save_position(w, pos, NULL, err, errlen)) != CL_OK) return rc;
        cl_log(CL_LOG_INFO, "bulk_job_created", "job=%s", pos->job_id);
    }
    rc = wait_job(w, pos->job_id, err, errlen);
    if (rc == CL_ERR || rc == CL_ETIMEOUT) {
        *job_failed = 1;
        return rc;
    }
    if (rc != CL_OK) return rc;
    cl_buf csv;
    cl_buf_init(&csv, 1u << 30);
    char origin[64];
    snprintf(origin, sizeof origin, "bulk job %s", pos->job_id);
    for (;;) {
        char next[128];
        rc = cl_sf_bulk_results(w->sf, pos->job_id, pos->locator, (long)w->bulk_max_records, &csv,
                                next, err, errlen);
        if (rc == CL_ERR) {
            *job_failed = 1; /* e.g. the job expired while we were down */
            break;
        }
        if (rc != CL_OK) break;
        rc = publish_csv_rows(w, csv.data ? csv.data : "", csv.len, CL_SOURCE_BULK, origin, NULL, 0,
                              pos, err, errlen);
        if (rc != CL_OK) break;
        cl_outcomes_position after = *pos;
        cl_strlcpy(after.locator, next, sizeof after.locator);
        if (!next[0]) after.locator[0] = '\0';
        if ((rc = commit_chunk(w, &after, NULL, err, errlen)) != CL_OK) break;
        *pos = after;
        if (!next[0]) break;
    }
    cl_buf_free(&csv);
    if (rc == CL_OK) {
        char derr[CL_ERRLEN];
        if (cl_sf_bulk_delete(w->sf, pos->job_id, derr, sizeof derr) != CL_OK)
            cl_log(CL_LOG_WARN, "bulk_job_delete_failed", "job=%s error=\"%s\"", pos->job_id, derr);
    }
    return rc;
}

/* ---- one pull ------------------------------------------------------------------------- */

static void export_client_stats(cl_outcomes *w)
{
    if (!w->sf) return;
    cl_sf_client_stats s;
    cl_sf_client_stats_get(w->sf, &s);
    cl_prom_counter_add(w->m_api_calls, NULL, (double)(s.api_calls - w->last_stats.api_calls));
    cl_prom_counter_add(w->m_reauths, NULL, (double)(s.reauths - w->last_stats.reauths));
    const char *r5[] = {"http_5xx"}, *r4[] = {"http_429"}, *rt[] = {"timeout"},
               *rc[] = {"connection"};
    cl_prom_counter_add(w->m_retries, r5,
                        (double)(s.retries_http_5xx - w->last_stats.retries_http_5xx));
    cl_prom_counter_add(w->m_retries, r4,
                        (double)(s.retries_http_429 - w->last_stats.retries_http_429));
    cl_prom_counter_add(w->m_retries, rt,
                        (double)(s.retries_timeout - w->last_stats.retries_timeout));
    cl_prom_counter_add(w->m_retries, rc,
                        (double)(s.retries_connection - w->last_stats.retries_connection));
    if (s.quota_max > 0) {
        cl_prom_gauge_set(w->m_quota_used, NULL, (double)s.quota_used);
        cl_prom_gauge_set(w->m_quota_max, NULL, (double)s.quota_max);
    }
    w->last_stats = s;
}

static int pull_csv(cl_outcomes *w, char *err, size_t errlen)
{
    const char *path = cl_config_str(w->cfg, "outcomes.csv.file");
    FILE *f = fopen(path, "rb");
    if (!f)
        return cl_seterr(err, errlen, CL_EIO, "outcomes.csv.file %s: %s", path, strerror(errno));
    cl_buf data;
    cl_buf_init(&data, (size_t)cl_config_int(w->cfg, "outcomes.csv.max.bytes"));
    char chunk[65536];
    size_t n;
    int rc = CL_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((rc = cl_buf_append(&data, chunk, n)) != CL_OK) break;
    int ioerr = ferror(f);
    fclose(f);
    if (rc != CL_OK || ioerr) {
        cl_buf_free(&data);
        return cl_seterr(err, errlen, rc != CL_OK ? CL_ENOMEM : CL_EIO, "outcomes.csv.file %s: %s",
                         path, rc != CL_OK ? "larger than outcomes.csv.max.bytes" : "read error");
    }
    rc = publish_csv_rows(w, data.data ? data.data : "", data.len, CL_SOURCE_CSV, path,
                          cl_config_str(w->cfg, "outcomes.csv.columns"),
                          cl_config_bool(w->cfg, "outcomes.csv.us.dates"), NULL, err, errlen);
    if (rc == CL_OK) rc = commit_chunk(w, NULL, NULL, err, errlen);
    cl_buf_free(&data);
    return rc;
}

int cl_outcomes_pull(cl_outcomes *w, char *err, size_t errlen)
{
    int rc;
    if (w->source == SOURCE_CSV) return pull_csv(w, err, errlen);

    cl_outcomes_position pos;
    if ((rc = load_position(w, &pos, err, errlen)) != CL_OK) return rc;
    if (pos.active) {
        char from[32], before[32];
        cl_format_timestamp(pos.from_ms, from);
        cl_format_timestamp(pos.before_ms, before);
        cl_log(CL_LOG_INFO, "pull_resume", "from=%s before=%s job=%s", from, before,
               pos.job_id[0] ? pos.job_id : "none");
    } else {
        int64_t watermark = w->start_ms;
        int have = load_i64(w, KEY_WATERMARK, &watermark, err, errlen);
        if (have != CL_OK && have != CL_ENOTFOUND) return have;
        pos.active = 1;
        pos.before_ms = floor_second(cl_now_ms());
        pos.from_ms = have == CL_OK ? floor_second(watermark - w->lookback_ms) : watermark;
        if (pos.from_ms < 0) pos.from_ms = 0;
        if (pos.from_ms >= pos.before_ms) return CL_OK; /* nothing can have changed yet */
        /* Fix the upper bound now, so a restart finishes this pull rather than a wider one. */
        if ((rc = save_position(w, &pos, NULL, err, errlen)) != CL_OK) return rc;
    }

    int use_bulk = w->source == SOURCE_BULK || pos.job_id[0];
    if (!use_bulk) {
        int switch_to_bulk = 0;
        rc = pull_rest(w, &pos, w->source == SOURCE_AUTO, &switch_to_bulk, err, errlen);
        if (rc != CL_OK) return rc;
        use_bulk = switch_to_bulk;
    }
    if (use_bulk) {
        int job_failed = 0;
        rc = pull_bulk(w, &pos, &job_failed, err, errlen);
        if (rc != CL_OK && job_failed) {
            cl_prom_counter_add(w->m_bulk_fallbacks, NULL, 1);
            cl_log(CL_LOG_WARN, "bulk_fallback_to_rest", "job=%s error=\"%s\"", pos.job_id,
                   err ? err : "");
            pos.job_id[0] = pos.locator[0] = '\0';
            if ((rc = save_position(w, &pos, NULL, err, errlen)) != CL_OK) return rc;
            int ignored;
            rc = pull_rest(w, &pos, 0, &ignored, err, errlen);
        }
        if (rc != CL_OK) return rc;
    }
    /* Complete: the watermark becomes this pull's upper bound. */
    int64_t watermark = pos.before_ms;
    cl_outcomes_position done = {0};
    if ((rc = save_position(w, &done, &watermark, err, errlen)) != CL_OK) return rc;
    cl_prom_gauge_set(w->m_watermark, NULL, (double)watermark / 1000.0);
    char when[32];
    cl_format_timestamp(watermark, when);
    cl_log(CL_LOG_INFO, "pull_complete", "watermark=%s", when);
    return CL_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int register_metrics(cl_outcomes *w, char *err, size_t errlen)
{
    static const char *const action[] = {"action", NULL};
    static const char *const reason[] = {"reason", NULL};
    static const char *const result[] = {"result", NULL};
    int rc;
#define REG(kind, var, name, help, labels)                                                         \
    if ((rc = cl_prom_##kind(w->prom, name, help, labels, &w->var, err, errlen)) != CL_OK)         \
        return rc;
    REG(counter, m_records, "closedloop_outcomes_records_total",
        "Salesforce records seen, by what was done with them.", action)
    REG(counter, m_api_calls, "closedloop_outcomes_api_calls_total",
        "HTTP requests made to Salesforce (API and token endpoint).", NULL)
    REG(counter, m_retries, "closedloop_outcomes_retries_total",
        "Salesforce requests retried, by reason.", reason)
    REG(counter, m_reauths, "closedloop_outcomes_reauthentications_total",
        "Re-authentications after 401 INVALID_SESSION_ID.", NULL)
    REG(gauge, m_quota_used, "closedloop_outcomes_api_quota_used",
        "Daily API requests used (Sforce-Limit-Info).", NULL)
    REG(gauge, m_quota_max, "closedloop_outcomes_api_quota_max",
        "Daily API request limit (Sforce-Limit-Info).", NULL)
    REG(gauge, m_watermark, "closedloop_outcomes_watermark_timestamp_seconds",
        "Upper bound of the last completed pull (Unix seconds).", NULL)
    REG(gauge, m_last_success, "closedloop_outcomes_last_success_timestamp_seconds",
        "When the last pull completed (Unix seconds).", NULL)
    REG(counter, m_pulls, "closedloop_outcomes_pulls_total", "Pulls, by result.", result)
    REG(counter, m_locator_restarts, "closedloop_outcomes_query_locator_restarts_total",
        "Queries restarted after INVALID_QUERY_LOCATOR.", NULL)
    REG(counter, m_bulk_fallbacks, "closedloop_outcomes_bulk_fallbacks_total",
        "Bulk API jobs that failed and were replaced by a REST pull.", NULL)
    REG(counter, m_delivery_failed, "closedloop_outcomes_delivery_failed_total",
        "Records Kafka did not acknowledge (they are pulled again).", NULL)
#undef REG
    return CL_OK;
}

static int parse_settings(cl_outcomes *w, char *err, size_t errlen)
{
    cl_config *cfg = w->cfg;
    const char *src = cl_config_str(cfg, "outcomes.source");
    if (strcmp(src, "auto") == 0)
        w->source = SOURCE_AUTO;
    else if (strcmp(src, "rest") == 0)
        w->source = SOURCE_REST;
    else if (strcmp(src, "bulk") == 0)
        w->source = SOURCE_BULK;
    else if (strcmp(src, "csv") == 0)
        w->source = SOURCE_CSV;
    else
        return cl_seterr(err, errlen, CL_EINVAL,
                         "outcomes.source (%s): '%.32s' is not rest, bulk, auto or csv",
                         cl_config_source(cfg, "outcomes.source"), src);
    if (w->source == SOURCE_CSV && !cl_config_str(cfg, "outcomes.csv.file"))
        return cl_seterr(err, errlen, CL_EINVAL, "outcomes.source=csv needs outcomes.csv.file");
    w->modstamp_field = cl_config_str(cfg, "outcomes.modstamp.field");
    if (strcmp(w->modstamp_field, "SystemModstamp") != 0 &&
        strcmp(w->modstamp_field, "LastModifiedDate") != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "outcomes.modstamp.field (%s): must be SystemModstamp or "
                         "LastModifiedDate",
                         cl_config_source(cfg, "outcomes.modstamp.field"));
    w->once = cl_config_bool(cfg, "once");
    w->batch_size = (int)cl_config_int(cfg, "outcomes.batch.size");
    w->lookback_ms = cl_config_int(cfg, "outcomes.lookback.ms");
    w->poll_interval_ms = cl_config_int(cfg, "outcomes.poll.interval.ms");
    w->bulk_threshold = cl_config_int(cfg, "outcomes.bulk.threshold");
    w->bulk_max_records = cl_config_int(cfg, "outcomes.bulk.max.records");
    w->bulk_poll_ms = cl_config_int(cfg, "outcomes.bulk.poll.ms");
    w->bulk_timeout_ms = cl_config_int(cfg, "outcomes.bulk.timeout.ms");
    w->include_currency = cl_config_bool(cfg, "outcomes.include.currency");
    w->where = cl_config_str(cfg, "outcomes.where");
    const char *start = cl_config_str(cfg, "outcomes.start");
    w->start_ms = 0;
    if (start && cl_parse_timestamp(start, &w->start_ms) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "outcomes.start (%s): '%.40s' is not an ISO-8601 timestamp",
                         cl_config_source(cfg, "outcomes.start"), start);
    if (w->start_ms < 0) w->start_ms = 0;
    const char *topic = cl_config_topic(cfg, "outcomes");
    if (cl_strlcpy(w->topic, topic, sizeof w->topic) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "topic name %s is too long", topic);
    return CL_OK;
}

static int open_salesforce(cl_outcomes *w, char *err, size_t errlen)
{
    cl_config *cfg = w->cfg;
    cl_sf_auth_settings as = {
        .login_url = cl_config_str(cfg, "salesforce.login.url"),
        .audience = cl_config_str(cfg, "salesforce.jwt.audience"),
        .client_id = cl_config_str(cfg, "salesforce.client.id"),
        .client_secret = cl_config_str(cfg, "salesforce.client.secret"),
        .username = cl_config_str(cfg, "salesforce.username"),
        .private_key_file = cl_config_str(cfg, "salesforce.private.key.file"),
        .refresh_token = cl_config_str(cfg, "salesforce.refresh.token"),
    };
    if (cl_sf_auth_parse_kind(cl_config_str(cfg, "salesforce.auth"), &as.kind) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.auth (%s): must be jwt, client_credentials or "
                         "refresh_token (the username-password flow is not supported)",
                         cl_config_source(cfg, "salesforce.auth"));
    int rc = cl_sf_auth_init(&w->auth, &as, err, errlen);
    if (rc != CL_OK) return rc;
    w->auth_ready = 1;
    cl_sf_client_settings cs = {
        .instance_url = cl_config_str(cfg, "salesforce.instance.url"),
        .api_version = cl_config_str(cfg, "salesforce.api.version"),
        .timeout_ms = (long)cl_config_int(cfg, "salesforce.timeout.ms"),
        .connect_timeout_ms = (long)cl_config_int(cfg, "salesforce.connect.timeout.ms"),
        .retry = {.max_attempts = (int)cl_config_int(cfg, "salesforce.retry.max.attempts"),
                  .base_ms = cl_config_int(cfg, "salesforce.retry.backoff.ms"),
                  .max_ms = cl_config_int(cfg, "salesforce.retry.backoff.max.ms")},
        .quota_share = cl_config_double(cfg, "outcomes.api.quota.share"),
        .batch_size = w->batch_size,
        .ca_file = cl_config_str(cfg, "salesforce.ca.file"),
        .tls_verify_off = !cl_config_bool(cfg, "salesforce.tls.verify"),
        .stop_requested = cl_stop_requested,
    };
    /* Once at start, not per request: the decision is the operator's, made once. */
    if (cs.tls_verify_off)
        cl_log(CL_LOG_WARN, "tls_verification_disabled",
               "setting=salesforce.tls.verify value=false source=\"%s\" login_url=%s "
               "detail=\"Salesforce certificates and host names are NOT verified; anyone on the "
               "path can take the OAuth tokens\"",
               cl_config_source(cfg, "salesforce.tls.verify"), as.login_url);
    return cl_sf_client_new(&w->sf, &cs, &w->auth, err, errlen);
}

int cl_outcomes_open(cl_outcomes **out, cl_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    cl_outcomes *w = calloc(1, sizeof *w);
    if (!w) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    w->cfg = cfg;
    cl_buf_init(&w->value, 1u << 20);
    int rc = parse_settings(w, err, errlen);
    cl_store_config sc;
    if (rc == CL_OK) rc = cl_store_config_from(&sc, cfg, err, errlen);
    if (rc == CL_OK)
        rc = cl_store_open(&w->store, cl_config_str(cfg, "state.dir"), db_names, &sc, err, errlen);
    if (rc == CL_OK)
        rc = cl_avro_schemas_load(cl_config_str(cfg, "avro.schema.dir"), &w->schemas, err, errlen);
    if (rc == CL_OK) rc = cl_registry_from_config(&w->registry, cfg, err, errlen);
    if (rc == CL_OK) {
        char subject[600];
        snprintf(subject, sizeof subject, "%s-value", w->topic);
        cl_avro_codec_opts co = {.registry = w->registry, .subject = subject};
        rc = cl_avro_codec_new(&w->codec, w->schemas, "closedloop.OpportunityOutcome", &co, err,
                               errlen);
    }
    if (rc == CL_OK) {
        cl_producer_opts po = {.on_delivery = on_delivery, .ud = w};
        rc = cl_producer_new(cfg, &po, &w->producer, err, errlen);
    }
    if (rc == CL_OK && w->source != SOURCE_CSV) rc = open_salesforce(w, err, errlen);
    if (rc == CL_OK) {
        w->prom = cl_prom_new();
        rc = w->prom ? register_metrics(w, err, errlen)
                     : cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    if (rc == CL_OK) rc = cl_store_export_prom(w->store, w->prom, "outcomes", err, errlen);
    if (rc == CL_OK) {
        cl_http_config hc = {.listen = cl_config_str(cfg, "http.listen"), .registry = w->prom};
        rc = cl_http_start(&w->http, &hc, err, errlen);
    }
    if (rc != CL_OK) {
        cl_outcomes_close(w);
        return rc;
    }
    int64_t wm;
    char e2[CL_ERRLEN];
    if (load_i64(w, KEY_WATERMARK, &wm, e2, sizeof e2) == CL_OK)
        cl_prom_gauge_set(w->m_watermark, NULL, (double)wm / 1000.0);
    *out = w;
    return CL_OK;
}

int cl_outcomes_run(cl_outcomes *w)
{
    int exit_status = 0;
    while (!cl_stop_requested()) {
        char err[CL_ERRLEN] = "";
        int64_t t0 = cl_mono_ms();
        int rc = cl_outcomes_pull(w, err, sizeof err);
        export_client_stats(w);
        const char *result[1];
        if (rc == CL_OK) {
            result[0] = "complete";
            cl_prom_gauge_set(w->m_last_success, NULL, (double)cl_now_ms() / 1000.0);
            cl_http_set_health(w->http, 1, NULL);
            exit_status = 0;
        } else if (rc == CL_ESTOP || rc == CL_EAGAIN || rc == CL_ETIMEOUT) {
            /* Quota, REQUEST_LIMIT_EXCEEDED, exhausted retries, signal: state is kept and
             * the next interval carries on from it. */
            result[0] = "stopped";
            cl_log(CL_LOG_WARN, "pull_stopped", "error=\"%s\"", err);
            exit_status = CL_OUTCOMES_EXIT_STOPPED;
        } else {
            result[0] = "failed";
            cl_log(CL_LOG_ERROR, "pull_failed", "status=%s error=\"%s\"", cl_status_name(rc), err);
            cl_http_set_health(w->http, 0, err);
            exit_status = 1;
        }
        cl_prom_counter_add(w->m_pulls, result, 1);
        cl_log(CL_LOG_INFO, "pull_finished", "result=%s duration_ms=%lld", result[0],
               (long long)(cl_mono_ms() - t0));
        if (w->once) break;
        for (int64_t slept = 0; slept < w->poll_interval_ms && !cl_stop_requested(); slept += 100)
            cl_sleep_ms(100);
    }
    if (!w->once && cl_stop_requested()) exit_status = 0;
    return exit_status;
}

void cl_outcomes_close(cl_outcomes *w)
{
    if (!w) return;
    cl_http_stop(w->http);
    if (w->producer) {
        char err[CL_ERRLEN];
        if (cl_producer_close(w->producer, (int)cl_config_int(w->cfg, "shutdown.timeout.ms"), err,
                              sizeof err) != CL_OK)
            cl_log(CL_LOG_WARN, "producer_close", "error=\"%s\"", err);
    }
    cl_sf_client_free(w->sf);
    if (w->auth_ready) cl_sf_auth_free(&w->auth);
    cl_avro_codec_free(w->codec);
    cl_registry_free(w->registry);
    cl_avro_schemas_free(w->schemas);
    cl_store_close(w->store);
    cl_prom_free(w->prom);
    free(w->chunk);
    cl_buf_free(&w->value);
    free(w);
}
