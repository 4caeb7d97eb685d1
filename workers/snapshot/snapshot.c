/*
 * snapshot.c — the snapshot worker: runs of scored opportunities -> Kafka, every good
 * row acknowledged or reported. See snapshot.h.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avro.h"
#include "http.h"
#include "input.h"
#include "kafka.h"
#include "log.h"
#include "plan.h"
#include "prom.h"
#include "records.h"
#include "registry.h"
#include "score.h"
#include "store.h"
#include "util.h"
#include "weights_follower.h"

const cl_option cl_snapshot_options[] = {
    {"follow", CL_OPT_BOOL, "false",
     "Keep running: scan the input directories for new run files every "
     "snapshot.poll.interval.ms and keep following the weights topic, until SIGTERM/SIGINT."},
    {"snapshot.input", CL_OPT_STRING, NULL,
     "Input when no arguments are given: a run file, a directory of run files, or - (stdin)."},
    {"snapshot.format", CL_OPT_STRING, "auto",
     "Run file format: csv, jsonl, or auto (by extension .csv/.jsonl/.ndjson/.json, else by "
     "content)."},
    {"snapshot.columns", CL_OPT_STRING, NULL,
     "Column names that differ from the field names: field=Column,... (e.g. "
     "opportunity_id=OpportunityId,stage=StageName)."},
    {"snapshot.attributes", CL_OPT_STRING, NULL,
     "Extra columns carried as string attributes (Column,Column,...)."},
    {"snapshot.features", CL_OPT_STRING, NULL,
     "Extra columns carried as numeric features (Column,Column,...)."},
    {"snapshot.stages", CL_OPT_STRING, NULL,
     "Allowed stage names (comma-separated); a row with another stage is rejected. Empty: any."},
    {"snapshot.bad.rows", CL_OPT_STRING, "skip",
     "Policy for invalid rows: skip (publish the good rows, report the bad) or fail (publish "
     "nothing from a run with any bad row)."},
    {"snapshot.models", CL_OPT_STRING, NULL,
     "Score only these models (comma-separated); empty: every model on the weights topic "
     "and the seed model."},
    {"snapshot.weights.wait.ms", CL_OPT_INT, "60000",
     "One-shot mode: how long to wait for the weights topic to exist and be read to its end "
     "before failing (follow mode waits until stopped).",
     0, 0, 86400000},
    {"snapshot.connect.timeout.ms", CL_OPT_INT, "10000",
     "How long the preflight check waits for the snapshots topic's metadata before a run "
     "fails with nothing published.",
     0, 100, 600000},
    {"snapshot.max.file.bytes", CL_OPT_INT, "4294967296",
     "Largest run file (or stdin) read; larger inputs are refused.", 0, 1, 1099511627776.0},
    {"snapshot.poll.interval.ms", CL_OPT_INT, "2000",
     "Follow mode: interval between directory scans.", 0, 10, 3600000},
    {"snapshot.settle.ms", CL_OPT_INT, "1000",
     "Follow mode: a file modified less than this long ago is left for the next scan (it "
     "may still be being written).",
     0, 0, 3600000},
    {"snapshot.log.rows.max", CL_OPT_INT, "100",
     "Rows per run logged individually when rejected or not published (all are listed in "
     "the run summary).",
     0, 0, 100000000},
    {NULL},
};

enum { DB_FILES = 0 };
static const char *const db_names[] = {"files", NULL};

typedef enum { POLICY_SKIP = 0, POLICY_FAIL } bad_row_policy;

typedef enum { INPUT_FILE = 0, INPUT_DIR, INPUT_STDIN } input_kind;

typedef struct {
    char *path;
    input_kind kind;
} input_spec;

/* The run being published: delivery reports land here (by row index). */
typedef struct {
    const char *name;
    cl_snapshot_plan plan;
    int64_t *sent_ns;
    size_t logged_failures;
    uint64_t acked, failed;
} run_state;

struct cl_snapshot_worker {
    cl_config *cfg;
    input_spec *inputs;
    size_t ninputs;
    int follow;
    bad_row_policy policy;
    cl_snapshot_format format;
    const char *models;
    int64_t weights_wait_ms, connect_timeout_ms, max_file_bytes, poll_interval_ms, settle_ms;
    size_t log_rows_max;
    char topic[512], dlq_topic[512];

    cl_snapshot_input_spec spec;
    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_avro_codec *codec;
    cl_producer *producer;
    cl_weights_follower *follower;
    cl_store *store;
    cl_prom *prom;
    cl_http *http;
    cl_prom_metric *m_rows, *m_runs, *m_latency, *m_last_run, *m_active;

    run_state *run;
    cl_buf value;
    cl_snapshot_counts totals;
};

/* ---- metrics ----------------------------------------------------------------------- */

static void count_rows(cl_snapshot_worker *w, const char *result, uint64_t n)
{
    if (n) cl_prom_counter_add(w->m_rows, (const char *[]){result}, (double)n);
}

static int register_metrics(cl_snapshot_worker *w, char *err, size_t errlen)
{
    static const char *const result[] = {"result", NULL};
    int rc;
    if ((rc = cl_prom_counter(w->prom, "closedloop_snapshot_rows_total",
                              "Input rows, by result: read, published (acknowledged by Kafka), "
                              "rejected (invalid), failed (valid but not acknowledged).",
                              result, &w->m_rows, err, errlen)) != CL_OK ||
        (rc = cl_prom_counter(w->prom, "closedloop_snapshot_runs_total",
                              "Runs (input files), by result: published, rejected, failed, "
                              "stopped.",
                              result, &w->m_runs, err, errlen)) != CL_OK ||
        (rc = cl_prom_histogram(w->prom, "closedloop_snapshot_publish_latency_seconds",
                                "Time from queueing a snapshot to its delivery report.", NULL,
                                cl_prom_seconds_buckets, cl_prom_seconds_buckets_len, &w->m_latency,
                                err, errlen)) != CL_OK ||
        (rc = cl_prom_gauge(w->prom, "closedloop_snapshot_last_run_timestamp_seconds",
                            "When the last run finished, by result (Unix seconds).", result,
                            &w->m_last_run, err, errlen)) != CL_OK ||
        (rc = cl_prom_gauge(w->prom, "closedloop_snapshot_run_versions",
                            "Weight versions applied to the last run (scores per snapshot).", NULL,
                            &w->m_active, err, errlen)) != CL_OK)
        return rc;
    return CL_OK;
}

/* ---- delivery ---------------------------------------------------------------------- */

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset, const char *reason, void *ud)
{
    cl_snapshot_worker *w = ud;
    if (!opaque) { /* a DLQ record of the weights follower */
        if (status != CL_OK)
            cl_log(CL_LOG_ERROR, "dlq_delivery_failed", "topic=%s error=\"%s\"", topic,
                   reason ? reason : "");
        return;
    }
    run_state *r = w->run;
    size_t k = (size_t)(uintptr_t)opaque - 1;
    if (!r || k >= r->plan.n || r->plan.rows[k].state != CL_ROW_SENT) {
        cl_log(CL_LOG_ERROR, "delivery_unexpected", "topic=%s row=%zu status=%s", topic, k,
               cl_status_name(status));
        return;
    }
    if (status == CL_OK) {
        r->plan.rows[k].state = CL_ROW_ACKED;
        r->acked++;
        cl_prom_observe(w->m_latency, NULL, (double)(cl_mono_ns() - r->sent_ns[k]) / 1e9);
    } else {
        r->plan.rows[k].state = CL_ROW_FAILED;
        r->failed++;
        if (r->logged_failures++ < w->log_rows_max)
            cl_log(CL_LOG_ERROR, "row_not_published",
                   "input=\"%s\" line=%" PRIu32 " topic=%s status=%s error=\"%s\"", r->name,
                   r->plan.rows[k].line, topic, cl_status_name(status), reason ? reason : "");
    }
    (void)partition;
    (void)offset;
}

/* ---- reading inputs ----------------------------------------------------------------- */

static int read_fd(int fd, const char *name, int64_t max, cl_buf *out, char *err, size_t errlen)
{
    cl_buf_init(out, (size_t)max + 1);
    char chunk[1 << 16];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return cl_seterr(err, errlen, CL_EIO, "%s: read: %s", name, strerror(errno));
        if (n == 0) break;
        if ((int64_t)(out->len + (size_t)n) > max || cl_buf_append(out, chunk, (size_t)n) != CL_OK)
            return cl_seterr(err, errlen, CL_ENOMEM,
                             "%s is larger than snapshot.max.file.bytes (%" PRId64 ")", name, max);
    }
    return CL_OK;
}

static int read_input(cl_snapshot_worker *w, const char *path, cl_buf *out, char *err,
                      size_t errlen)
{
    if (strcmp(path, "-") == 0)
        return read_fd(STDIN_FILENO, "stdin", w->max_file_bytes, out, err, errlen);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cl_buf_init(out, 1);
        return cl_seterr(err, errlen, errno == ENOENT ? CL_ENOTFOUND : CL_EIO, "%s: %s", path,
                         strerror(errno));
    }
    struct stat st;
    int rc = CL_OK;
    if (fstat(fd, &st) != 0)
        rc = cl_seterr(err, errlen, CL_EIO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s is not a regular file", path);
    else if (st.st_size > w->max_file_bytes)
        rc = cl_seterr(err, errlen, CL_ENOMEM,
                       "%s is %lld bytes, larger than snapshot.max.file.bytes (%" PRId64 ")", path,
                       (long long)st.st_size, w->max_file_bytes);
    if (rc != CL_OK) {
        cl_buf_init(out, 1);
        close(fd);
        return rc;
    }
    rc = read_fd(fd, path, w->max_file_bytes, out, err, errlen);
    close(fd);
    return rc;
}

/* ---- one run ------------------------------------------------------------------------ */

typedef struct {
    cl_snapshot_worker *w;
    const char *name;
    size_t logged;
    json_t *rejected_lines;
} bad_ctx;

static void on_bad_row(size_t line, const char *message, void *ud)
{
    bad_ctx *b = ud;
    if (b->logged++ < b->w->log_rows_max)
        cl_log(CL_LOG_WARN, "row_rejected", "input=\"%s\" line=%zu error=\"%s\"", b->name, line,
               message);
    json_array_append_new(b->rejected_lines, json_integer((json_int_t)line));
}

/* Is the snapshots topic there and the broker reachable? Nothing has been sent yet. */
static int preflight(cl_snapshot_worker *w, char *err, size_t errlen)
{
    rd_kafka_t *rk = cl_producer_handle(w->producer);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, w->topic, NULL);
    if (!rkt)
        return cl_seterr(err, errlen, CL_ERR, "topic handle for %s: %s", w->topic,
                         rd_kafka_err2str(rd_kafka_last_error()));
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, (int)w->connect_timeout_ms);
    int rc = CL_OK;
    if (e) {
        rc = cl_seterr(err, errlen, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? CL_ETIMEOUT : CL_EIO,
                       "Kafka (brokers=%s) did not answer a metadata request for %s within "
                       "%" PRId64 " ms: %s; nothing was published",
                       cl_config_str(w->cfg, "brokers"), w->topic, w->connect_timeout_ms,
                       rd_kafka_err2str(e));
    } else if (md->topic_cnt < 1 || md->topics[0].err) {
        rd_kafka_resp_err_t te =
            md->topic_cnt < 1 ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART : md->topics[0].err;
        rc = cl_seterr(err, errlen, CL_ENOTFOUND,
                       "topic %s: %s (create it with `closedloop topics create`); nothing was "
                       "published",
                       w->topic, rd_kafka_err2str(te));
    } else if (md->topics[0].partition_cnt < 1) {
        rc = cl_seterr(err, errlen, CL_ENOTFOUND,
                       "topic %s has no partitions; nothing was "
                       "published",
                       w->topic);
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* Flushes until every sent row has a report. After a stop request the wait is bounded
 * by shutdown.timeout.ms; whatever is then still in flight is purged, and purged rows
 * are reported (CL_ESTOP) like any failed delivery. */
static void wait_for_reports(cl_snapshot_worker *w)
{
    int64_t stop_deadline = -1;
    for (;;) {
        cl_producer_counters c;
        cl_producer_counters_get(w->producer, &c);
        if (c.in_flight == 0) return;
        if (cl_stop_requested() && stop_deadline < 0)
            stop_deadline = cl_mono_ms() + cl_config_int(w->cfg, "shutdown.timeout.ms");
        if (stop_deadline >= 0 && cl_mono_ms() >= stop_deadline) {
            rd_kafka_t *rk = cl_producer_handle(w->producer);
            rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            for (int i = 0; i < 100; i++) {
                cl_producer_poll(w->producer, 100);
                cl_producer_counters_get(w->producer, &c);
                if (c.in_flight == 0) return;
            }
            cl_log(CL_LOG_ERROR, "flush_incomplete", "in_flight=%" PRIu64, c.in_flight);
            return;
        }
        char err[CL_ERRLEN];
        cl_producer_flush(w->producer, 500, err, sizeof err);
    }
}

/* Pass 2: send the plan's good rows in order. */
static int publish_rows(cl_snapshot_worker *w, run_state *r, const char *data, size_t len,
                        const cl_weight_config *const *active, size_t nactive, char *err,
                        size_t errlen)
{
    cl_snapshot_input *in = NULL;
    int rc =
        cl_snapshot_input_open(&in, &w->spec, r->name, data, len, w->format, NULL, err, errlen);
    if (rc != CL_OK) return rc;
    cl_snapshot *s = malloc(sizeof *s);
    if (!s) {
        cl_snapshot_input_close(in);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    for (size_t k = 0; k < r->plan.n; k++) {
        char e2[CL_ERRLEN];
        size_t line;
        int nr = cl_snapshot_input_next(in, s, &line, e2, sizeof e2);
        cl_plan_row *row = &r->plan.rows[k];
        if (row->state != CL_ROW_GOOD) continue;
        if (cl_stop_requested()) break; /* the rest stays GOOD: reported as not published */
        if (nr == CL_OK) nr = cl_snapshot_score_all(s, active, nactive, e2, sizeof e2);
        avro_value_t *v = cl_avro_codec_value(w->codec);
        cl_buf_reset(&w->value);
        if (nr == CL_OK && (nr = cl_snapshot_to_avro(s, v, e2, sizeof e2)) == CL_OK)
            nr = cl_avro_codec_encode(w->codec, v, &w->value, e2, sizeof e2);
        if (nr == CL_OK) {
            row->state = CL_ROW_SENT;
            r->sent_ns[k] = cl_mono_ns();
            do {
                nr = cl_producer_send(w->producer, w->topic, s->opportunity_id,
                                      strlen(s->opportunity_id), w->value.data, w->value.len, NULL,
                                      0, (void *)(uintptr_t)(k + 1), 1000, e2, sizeof e2);
            } while (nr == CL_EAGAIN && !cl_stop_requested());
            if (nr != CL_OK) row->state = CL_ROW_GOOD; /* never accepted: no report will come */
        }
        if (nr != CL_OK) {
            /* The row was valid in the plan; failing now (encoding, a full queue at stop,
             * a record the producer refuses) is a publishing failure of this row. */
            row->state = CL_ROW_FAILED;
            r->failed++;
            if (r->logged_failures++ < w->log_rows_max)
                cl_log(CL_LOG_ERROR, "row_not_published",
                       "input=\"%s\" line=%" PRIu32 " error=\"%s\"", r->name, row->line, e2);
        }
        if ((k & 1023) == 0) cl_producer_poll(w->producer, 0);
    }
    free(s);
    cl_snapshot_input_close(in);
    return CL_OK;
}

typedef enum {
    RUN_PUBLISHED = 0, /* every good row acknowledged */
    RUN_REJECTED,      /* the input is unusable or (policy fail) has bad rows: permanent */
    RUN_FAILED,        /* Kafka did not take every good row: retry later */
    RUN_STOPPED,       /* stop requested mid-run */
} run_result;

static const char *run_result_name(run_result r)
{
    static const char *const names[] = {"published", "rejected", "failed", "stopped"};
    return names[r];
}

static void print_summary(const char *name, const run_state *r, run_result result,
                          const cl_snapshot_counts *c, json_t *rejected_lines, const char *error)
{
    json_t *j = json_object();
    json_t *unpublished = json_array();
    for (size_t k = 0; k < r->plan.n; k++)
        if (r->plan.rows[k].state != CL_ROW_BAD && r->plan.rows[k].state != CL_ROW_ACKED &&
            result != RUN_REJECTED)
            json_array_append_new(unpublished, json_integer(r->plan.rows[k].line));
    json_object_set_new(j, "input", json_string(name));
    json_object_set_new(j, "run_id", json_string(r->plan.run_id));
    json_object_set_new(j, "status", json_string(run_result_name(result)));
    json_object_set_new(j, "read", json_integer((json_int_t)c->read));
    json_object_set_new(j, "published", json_integer((json_int_t)c->published));
    json_object_set_new(j, "rejected", json_integer((json_int_t)c->rejected));
    json_object_set_new(j, "failed", json_integer((json_int_t)c->failed));
    json_object_set_new(j, "rejected_lines", json_incref(rejected_lines));
    json_object_set_new(j, "unpublished_lines", unpublished);
    if (error && *error) json_object_set_new(j, "error", json_string(error));
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        fprintf(stdout, "%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(j);
}

/*
 * One run over data[0..len). *result says how it ended; the return value is CL_OK
 * only for RUN_PUBLISHED, with err naming the input otherwise.
 */
static int run_one(cl_snapshot_worker *w, const char *name, const char *data, size_t len,
                   run_result *result, char *err, size_t errlen)
{
    run_state r = {.name = name};
    cl_snapshot_counts c = {0};
    json_t *rejected_lines = json_array();
    bad_ctx bc = {w, name, 0, rejected_lines};
    const cl_weight_config *active[CL_MAX_SCORES];
    size_t nactive, dropped;
    cl_weights_book_active(cl_weights_follower_book(w->follower), w->models, active, CL_MAX_SCORES,
                           &nactive, &dropped);
    if (dropped)
        cl_log(CL_LOG_WARN, "weights_versions_dropped",
               "active=%zu applied=%d detail=\"a snapshot holds %d scores; restrict "
               "snapshot.models\"",
               nactive + dropped, CL_MAX_SCORES, CL_MAX_SCORES);
    cl_prom_gauge_set(w->m_active, NULL, (double)nactive);
    int64_t t0 = cl_mono_ms();
    int rc = CL_OK;
    *result = RUN_PUBLISHED;

    if (nactive == 0) {
        rc = cl_seterr(err, errlen, CL_EINVAL,
                       "%s: no weight version to score with (snapshot.models=%s matches no "
                       "model)",
                       name, w->models ? w->models : "");
        *result = RUN_REJECTED;
    }
    if (rc == CL_OK) {
        rc = cl_snapshot_plan_build(&r.plan, &w->spec, name, data, len, w->format, active, nactive,
                                    on_bad_row, &bc, err, errlen);
        if (rc != CL_OK) *result = rc == CL_ENOMEM ? RUN_FAILED : RUN_REJECTED;
    }
    c.read = r.plan.n;
    c.rejected = r.plan.bad;
    if (rc == CL_OK && r.plan.bad > 0 && w->policy == POLICY_FAIL) {
        uint32_t first_bad = 0;
        for (size_t k = 0; k < r.plan.n && !first_bad; k++)
            if (r.plan.rows[k].state == CL_ROW_BAD) first_bad = r.plan.rows[k].line;
        rc = cl_seterr(err, errlen, CL_EINVAL,
                       "%s: %zu of %zu rows are invalid (first on line %" PRIu32 "); "
                       "snapshot.bad.rows=fail: nothing was published",
                       name, r.plan.bad, r.plan.n, first_bad);
        *result = RUN_REJECTED;
    }
    if (rc == CL_OK && r.plan.good > 0) {
        rc = preflight(w, err, errlen);
        if (rc != CL_OK) *result = RUN_FAILED;
    }
    if (rc == CL_OK && r.plan.good > 0) {
        r.sent_ns = calloc(r.plan.n, sizeof *r.sent_ns);
        if (!r.sent_ns) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            *result = RUN_FAILED;
        }
    }
    if (rc == CL_OK && r.plan.good > 0) {
        w->run = &r;
        rc = publish_rows(w, &r, data, len, active, nactive, err, errlen);
        wait_for_reports(w);
        w->run = NULL;
        c.published = r.acked;
        c.failed = r.plan.good - r.acked;
        if (rc != CL_OK) {
            *result = RUN_FAILED;
        } else if (c.failed > 0) {
            *result = cl_stop_requested() ? RUN_STOPPED : RUN_FAILED;
            rc = cl_seterr(err, errlen, cl_stop_requested() ? CL_ESTOP : CL_EIO,
                           "%s: %" PRIu64 " of %zu good rows were not acknowledged by Kafka "
                           "(their lines are in the run summary); %" PRIu64 " were published",
                           name, c.failed, r.plan.good, c.published);
        }
    } else if (rc != CL_OK) {
        c.failed = r.plan.good;
    }

    count_rows(w, "read", c.read);
    count_rows(w, "published", c.published);
    count_rows(w, "rejected", c.rejected);
    count_rows(w, "failed", c.failed);
    cl_prom_counter_add(w->m_runs, (const char *[]){run_result_name(*result)}, 1);
    cl_prom_gauge_set(w->m_last_run, (const char *[]){run_result_name(*result)},
                      (double)cl_now_ms() / 1000.0);
    w->totals.read += c.read;
    w->totals.published += c.published;
    w->totals.rejected += c.rejected;
    w->totals.failed += c.failed;
    cl_log(rc == CL_OK ? CL_LOG_INFO : CL_LOG_ERROR, "run_finished",
           "input=\"%s\" run_id=%s status=%s read=%" PRIu64 " published=%" PRIu64
           " rejected=%" PRIu64 " failed=%" PRIu64 " versions=%zu duration_ms=%lld%s%s%s",
           name, r.plan.run_id[0] ? r.plan.run_id : "-", run_result_name(*result), c.read,
           c.published, c.rejected, c.failed, nactive, (long long)(cl_mono_ms() - t0),
           rc == CL_OK ? "" : " error=\"", rc == CL_OK ? "" : err, rc == CL_OK ? "" : "\"");
    print_summary(name, &r, *result, &c, rejected_lines, rc == CL_OK ? NULL : err);
    json_decref(rejected_lines);
    free(r.sent_ns);
    cl_snapshot_plan_free(&r.plan);
    return rc;
}

/* ---- the done-file record (directory inputs) ----------------------------------------- */

static void file_key(const char *path, cl_store_key *k)
{
    cl_store_key_init(k);
    size_t n = strlen(path);
    if (n + 2 <= CL_STORE_KEY_MAX) {
        cl_store_key_str(k, path, n);
    } else {
        /* Paths longer than an LMDB key: identified by hash and length. */
        char h[64];
        int m = snprintf(h, sizeof h, "#%016" PRIx64 ":%zu", cl_hash64(path, n, 0), n);
        cl_store_key_str(k, h, (size_t)m);
    }
}

static int file_done(cl_snapshot_worker *w, const char *path, const struct stat *st)
{
    cl_store_key k;
    file_key(path, &k);
    cl_buf b;
    cl_buf_init(&b, 4096);
    char err[CL_ERRLEN];
    int done = 0;
    if (cl_store_get_copy(w->store, DB_FILES, k.data, k.len, &b, err, sizeof err) == CL_OK) {
        json_t *j = json_loadb(b.data, b.len, 0, NULL);
        json_int_t size = -1, mtime = -1;
        if (j && json_unpack(j, "{s:I, s:I}", "size", &size, "mtime_ns", &mtime) == 0)
            done = size == (json_int_t)st->st_size &&
                   mtime == (json_int_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
        else
            cl_log(CL_LOG_WARN, "file_record_corrupt", "path=\"%s\"", path);
        json_decref(j);
    }
    cl_buf_free(&b);
    return done;
}

static int mark_done(cl_snapshot_worker *w, const char *path, const struct stat *st,
                     run_result result, const char *run_id, char *err, size_t errlen)
{
    json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:I}", "size", (json_int_t)st->st_size, "mtime_ns",
                          (json_int_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                          "status", run_result_name(result), "run_id", run_id, "finished_at",
                          (json_int_t)cl_now_ms());
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!s) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    cl_store_key k;
    file_key(path, &k);
    cl_store_txn *t;
    int rc = cl_store_batch_begin(w->store, &t, err, errlen);
    if (rc == CL_OK) {
        rc = cl_store_put(t, DB_FILES, k.data, k.len, s, strlen(s), err, errlen);
        if (rc == CL_OK)
            rc = cl_store_batch_commit(t, err, errlen);
        else
            cl_store_batch_abort(t);
    }
    free(s);
    return rc;
}

/* ---- inputs ------------------------------------------------------------------------- */

static int known_extension(const char *name)
{
    static const char *const ext[] = {".csv", ".jsonl", ".ndjson", ".json"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i]);
        if (n > m && strcmp(name + n - m, ext[i]) == 0) return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one file given directly (or stdin): always published. */
static int run_path(cl_snapshot_worker *w, const char *path, run_result *result, char *err,
                    size_t errlen)
{
    cl_buf data;
    int rc = read_input(w, path, &data, err, errlen);
    const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
    if (rc != CL_OK) {
        *result = RUN_REJECTED;
        cl_log(CL_LOG_ERROR, "input_unreadable", "input=\"%s\" error=\"%s\"", name, err);
        run_state r = {.name = name};
        cl_snapshot_counts c = {0};
        json_t *none = json_array();
        print_summary(name, &r, RUN_REJECTED, &c, none, err);
        json_decref(none);
        cl_prom_counter_add(w->m_runs, (const char *[]){"rejected"}, 1);
    } else {
        rc = run_one(w, name, data.data ? data.data : "", data.len, result, err, errlen);
    }
    cl_buf_free(&data);
    return rc;
}

/* One scan of a directory: every file not yet done. Returns the first failure (the
 * others are logged); rejected files are recorded as done so they are not retried. */
static int scan_dir(cl_snapshot_worker *w, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) return cl_seterr(err, errlen, CL_EIO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = CL_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* hidden: temporary files of writers that rename into place */
        if (w->format == CL_SNAPSHOT_FORMAT_AUTO && !known_extension(e->d_name)) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory listing %s", dir);
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == CL_OK) qsort(names, n, sizeof *names, cmp_str);
    int first = CL_OK;
    for (size_t i = 0; rc == CL_OK && i < n && !cl_stop_requested(); i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) continue;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (file_done(w, path, &st)) continue;
        if (w->follow && w->settle_ms > 0) {
            int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
            if (cl_now_ms() - mtime_ms < w->settle_ms)
                continue; /* maybe still being written; next scan */
        }
        run_result result;
        char e2[CL_ERRLEN];
        int r = run_path(w, path, &result, e2, sizeof e2);
        if (result == RUN_PUBLISHED || result == RUN_REJECTED) {
            /* Rejected inputs are permanent until the file changes: recorded too. */
            char e3[CL_ERRLEN];
            /* The run_id is in the summary; the record only needs size and mtime. */
            if (mark_done(w, path, &st, result, "", e3, sizeof e3) != CL_OK) {
                cl_log(CL_LOG_ERROR, "file_record_failed", "path=\"%s\" error=\"%s\"", path, e3);
                if (first == CL_OK) {
                    first = CL_EIO;
                    cl_seterr(err, errlen, CL_EIO, "%s", e3);
                }
            }
        }
        if (r != CL_OK && first == CL_OK) {
            first = r;
            cl_seterr(err, errlen, r, "%s", e2);
        }
        if (result == RUN_FAILED && w->follow)
            break; /* Kafka trouble: retry this file at the next scan, in order */
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc != CL_OK ? rc : first;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static int parse_settings(cl_snapshot_worker *w, char *err, size_t errlen)
{
    cl_config *cfg = w->cfg;
    const char *p = cl_config_str(cfg, "snapshot.bad.rows");
    if (strcmp(p, "skip") == 0)
        w->policy = POLICY_SKIP;
    else if (strcmp(p, "fail") == 0)
        w->policy = POLICY_FAIL;
    else
        return cl_seterr(err, errlen, CL_EINVAL,
                         "snapshot.bad.rows (%s): '%.32s' is not skip "
                         "or fail",
                         cl_config_source(cfg, "snapshot.bad.rows"), p);
    if (cl_snapshot_format_parse(cl_config_str(cfg, "snapshot.format"), &w->format) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "snapshot.format (%s): must be auto, csv or "
                         "jsonl",
                         cl_config_source(cfg, "snapshot.format"));
    w->follow = cl_config_bool(cfg, "follow");
    w->models = cl_config_str(cfg, "snapshot.models");
    w->weights_wait_ms = cl_config_int(cfg, "snapshot.weights.wait.ms");
    w->connect_timeout_ms = cl_config_int(cfg, "snapshot.connect.timeout.ms");
    w->max_file_bytes = cl_config_int(cfg, "snapshot.max.file.bytes");
    w->poll_interval_ms = cl_config_int(cfg, "snapshot.poll.interval.ms");
    w->settle_ms = cl_config_int(cfg, "snapshot.settle.ms");
    w->log_rows_max = (size_t)cl_config_int(cfg, "snapshot.log.rows.max");
    if (cl_strlcpy(w->topic, cl_config_topic(cfg, "snapshots"), sizeof w->topic) != CL_OK ||
        cl_strlcpy(w->dlq_topic, cl_config_topic(cfg, "dlq"), sizeof w->dlq_topic) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "topic.prefix is too long");

    char **args;
    int nargs = cl_config_args(cfg, &args);
    const char *single = cl_config_str(cfg, "snapshot.input");
    size_t n = nargs > 0 ? (size_t)nargs : (single ? 1 : 0);
    if (n == 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "no input: give run files, a directory of run files, or - (stdin) as "
                         "arguments, or set snapshot.input");
    if (!(w->inputs = calloc(n, sizeof *w->inputs)))
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int stdin_seen = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = nargs > 0 ? args[i] : single;
        if (!(w->inputs[i].path = strdup(a)))
            return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        w->ninputs++;
        struct stat st;
        if (strcmp(a, "-") == 0) {
            if (stdin_seen++) return cl_seterr(err, errlen, CL_EINVAL, "stdin (-) is given twice");
            w->inputs[i].kind = INPUT_STDIN;
        } else if (stat(a, &st) != 0) {
            return cl_seterr(err, errlen, CL_ENOTFOUND, "input %s: %s", a, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            w->inputs[i].kind = INPUT_DIR;
        } else {
            w->inputs[i].kind = INPUT_FILE;
        }
    }
    if (w->follow) {
        for (size_t i = 0; i < w->ninputs; i++)
            if (w->inputs[i].kind != INPUT_DIR)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "--follow needs directories of run files; %s is not one",
                                 w->inputs[i].path);
    }
    return CL_OK;
}

int cl_snapshot_worker_new(cl_config *cfg, cl_snapshot_worker **out, char *err, size_t errlen)
{
    *out = NULL;
    cl_snapshot_worker *w = calloc(1, sizeof *w);
    if (!w) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    w->cfg = cfg;
    cl_buf_init(&w->value, 1u << 20);
    int rc = parse_settings(w, err, errlen);
    if (rc == CL_OK)
        rc = cl_snapshot_input_spec_init(&w->spec, cl_config_str(cfg, "snapshot.columns"),
                                         cl_config_str(cfg, "snapshot.attributes"),
                                         cl_config_str(cfg, "snapshot.features"),
                                         cl_config_str(cfg, "snapshot.stages"), err, errlen);
    int needs_store = 0;
    for (size_t i = 0; i < w->ninputs; i++)
        needs_store |= w->inputs[i].kind == INPUT_DIR;
    if (rc == CL_OK && needs_store) {
        cl_store_config sc;
        rc = cl_store_config_from(&sc, cfg, err, errlen);
        if (rc == CL_OK)
            rc = cl_store_open(&w->store, cl_config_str(cfg, "state.dir"), db_names, &sc, err,
                               errlen);
    }
    if (rc == CL_OK)
        rc = cl_avro_schemas_load(cl_config_str(cfg, "avro.schema.dir"), &w->schemas, err, errlen);
    if (rc == CL_OK) rc = cl_registry_from_config(&w->registry, cfg, err, errlen);
    if (rc == CL_OK) {
        char subject[600];
        snprintf(subject, sizeof subject, "%s-value", w->topic);
        cl_avro_codec_opts co = {.registry = w->registry, .subject = subject};
        rc = cl_avro_codec_new(&w->codec, w->schemas, "closedloop.OpportunitySnapshot", &co, err,
                               errlen);
    }
    if (rc == CL_OK) {
        cl_producer_opts po = {.on_delivery = on_delivery, .ud = w};
        rc = cl_producer_new(cfg, &po, &w->producer, err, errlen);
    }
    if (rc == CL_OK) {
        w->prom = cl_prom_new();
        rc = w->prom ? register_metrics(w, err, errlen)
                     : cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    if (rc == CL_OK && w->store)
        rc = cl_store_export_prom(w->store, w->prom, "snapshot", err, errlen);
    if (rc == CL_OK) {
        const char *group = cl_config_str(cfg, "group.id");
        cl_weights_follower_opts fo = {.cfg = cfg,
                                       .topic = cl_config_topic(cfg, "weights"),
                                       .dlq_topic = w->dlq_topic,
                                       .lag_group = group ? group : "closedloop-snapshot",
                                       .dlq_producer = w->producer,
                                       .schemas = w->schemas,
                                       .registry = w->registry,
                                       .prom = w->prom};
        rc = cl_weights_follower_new(&w->follower, &fo, err, errlen);
    }
    if (rc == CL_OK) {
        cl_http_config hc = {.listen = cl_config_str(cfg, "http.listen"), .registry = w->prom};
        rc = cl_http_start(&w->http, &hc, err, errlen);
    }
    if (rc != CL_OK) {
        cl_snapshot_worker_free(w);
        return rc;
    }
    cl_http_set_health(w->http, 0, "starting: reading the weights topic");
    *out = w;
    return CL_OK;
}

int cl_snapshot_worker_run(cl_snapshot_worker *w, char *err, size_t errlen)
{
    int64_t deadline = w->follow ? -1 : cl_mono_ms() + w->weights_wait_ms;
    int rc = cl_weights_follower_start(w->follower, deadline, err, errlen);
    if (rc != CL_OK) {
        cl_http_set_health(w->http, 0, err);
        if (rc == CL_ESTOP && w->follow) return CL_OK;
        return rc;
    }
    cl_http_set_health(w->http, 1, NULL);
    int first = CL_OK;
    char e2[CL_ERRLEN];
    do {
        int rcp = cl_weights_follower_poll(w->follower, 0, e2, sizeof e2);
        if (rcp != CL_OK) {
            cl_seterr(err, errlen, rcp, "weights topic: %s", e2);
            return rcp;
        }
        for (size_t i = 0; i < w->ninputs && !cl_stop_requested(); i++) {
            int r;
            run_result result = RUN_PUBLISHED;
            if (w->inputs[i].kind == INPUT_DIR)
                r = scan_dir(w, w->inputs[i].path, e2, sizeof e2);
            else
                r = run_path(w, w->inputs[i].path, &result, e2, sizeof e2);
            if (r != CL_OK) {
                cl_http_set_health(w->http, 0, e2);
                if (first == CL_OK) {
                    first = r;
                    cl_seterr(err, errlen, r, "%s", e2);
                }
            } else if (w->follow) {
                cl_http_set_health(w->http, 1, NULL);
            }
        }
        if (!w->follow) break;
        /* Between scans: follow the weights topic. */
        int64_t until = cl_mono_ms() + w->poll_interval_ms;
        while (!cl_stop_requested() && cl_mono_ms() < until) {
            rc = cl_weights_follower_poll(w->follower, 100, e2, sizeof e2);
            if (rc != CL_OK) return cl_seterr(err, errlen, rc, "weights topic: %s", e2);
            cl_producer_poll(w->producer, 0);
        }
    } while (!cl_stop_requested());
    if (w->follow)
        return CL_OK; /* failed runs are retried at the next start; stopping is orderly */
    return first;
}

void cl_snapshot_worker_counts(const cl_snapshot_worker *w, cl_snapshot_counts *out)
{
    *out = w->totals;
}

void cl_snapshot_worker_free(cl_snapshot_worker *w)
{
    if (!w) return;
    cl_http_stop(w->http);
    cl_weights_follower_free(w->follower);
    if (w->producer) {
        char err[CL_ERRLEN];
        if (cl_producer_close(w->producer, (int)cl_config_int(w->cfg, "shutdown.timeout.ms"), err,
                              sizeof err) != CL_OK)
            cl_log(CL_LOG_WARN, "producer_close", "error=\"%s\"", err);
    }
    cl_avro_codec_free(w->codec);
    cl_registry_free(w->registry);
    cl_avro_schemas_free(w->schemas);
    cl_store_close(w->store);
    cl_prom_free(w->prom);
    cl_snapshot_input_spec_free(&w->spec);
    for (size_t i = 0; i < w->ninputs; i++)
        free(w->inputs[i].path);
    free(w->inputs);
    cl_buf_free(&w->value);
    free(w);
}
