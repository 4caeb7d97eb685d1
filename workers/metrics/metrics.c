/*
 * metrics.c — the closedloop-metrics worker loop (see metrics.h).
 *
 * Threads: everything runs on the poll thread except the HTTP handlers, which only
 * copy the last rendered reports (under `reports_lock`) or raise the publish flag.
 */
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aggregate.h"
#include "avro.h"
#include "evaluate.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "patterns.h"
#include "prom.h"
#include "records.h"
#include "registry.h"
#include "report.h"
#include "score.h"
#include "store.h"
#include "util.h"

#define WINDOWS_MAX 64
#define FLUSH_TIMEOUT_MS 60000
#define OFFLINE_LINE_MAX (4u * 1024 * 1024)
/* Models whose factor-discovery evidence is kept for the reports (the worker reports on
 * one; a few more cost ~12 KiB each). */
#define DISCOVERY_MODELS 16

const cl_option cl_metrics_options[] = {
    {"metrics.horizon", CL_OPT_STRING, "LATEST_BEFORE_HORIZON",
     "Which snapshot judges an opportunity: LATEST_BEFORE_HORIZON, FIRST_SNAPSHOT or "
     "ALL_SNAPSHOTS."},
    {"metrics.horizon.days", CL_OPT_INT, "7",
     "LATEST_BEFORE_HORIZON: the snapshot must be at least this many days before the close.", 0,
     0, 3650},
    {"metrics.calibration.bins", CL_OPT_INT, "10", "Equal-width reliability bins (ECE).", 0, 1,
     CL_MAX_CALIBRATION_BINS},
    {"metrics.threshold.step", CL_OPT_DOUBLE, "5",
     "Precision/recall are reported at every multiple of this score step.", 0, 1, 100},
    {"metrics.months", CL_OPT_INT, "12", "Monthly windows published (most recent).", 0, 0, 120},
    {"metrics.publish.interval.ms", CL_OPT_INT, "60000",
     "Publish ModelMetrics and re-render the reports at most this often when the state "
     "changed.",
     0, 100, 86400000},
    {"metrics.report.dir", CL_OPT_STRING, "reports",
     "Directory the two HTML reports are written to (empty: do not write)."},
    {"metrics.salesforce.instance.url", CL_OPT_STRING, "",
     "https://<instance>.my.salesforce.com: opportunity ids in the reports link there."},
    {"metrics.model", CL_OPT_STRING, CL_SEED_MODEL, "Model the reports analyse."},
    {"metrics.patterns.min.sample", CL_OPT_INT, "30",
     "Smallest group of deals a failure pattern may speak about.", 0, 1, 1000000},
    {"metrics.patterns.min.lift", CL_OPT_DOUBLE, "1.2",
     "A pattern's rate must be at least this multiple of the overall rate.", 0, 1, 100},
    {"metrics.follow.weights", CL_OPT_BOOL, "true",
     "Follow the weights topic to learn each version's status, bands and weights."},
    {"metrics.poll.max.records", CL_OPT_INT, "1000", "Records taken per consumer poll.", 0, 1,
     100000},
    {"metrics.exit.idle.ms", CL_OPT_INT, "0",
     "Publish and exit once the input is read to its end and idle this long (0: run until "
     "signalled; tests and batch runs).",
     0, 0, 86400000},
    {NULL},
};

typedef struct {
    cl_prom_metric *records, *dlq, *published, *publish_seconds, *rows, *opportunities,
        *excluded, *figure, *last_publish;
} worker_metrics;

struct cl_metrics_worker {
    cl_config *cfg;
    int lag_collector; /* consumer lag on /metrics, refreshed at each scrape */
    char t_labeled[256], t_metrics[256], t_dlq[256], t_weights[256];
    size_t poll_max;
    int64_t interval_ms, exit_idle_ms;
    int shutdown_ms;
    cl_eval_options eval;
    cl_report_options report;
    const char *report_dir;

    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_avro_codec *labeled_codec, *metrics_codec, *weights_codec;
    cl_weight_config *seed, *wc;
    cl_labeled_example *example;
    cl_model_metrics *mm;
    cl_eval_model models[CL_EVAL_MODELS_MAX];
    size_t nmodels;
    cl_report_discovery *discovery; /* per model, DISCOVERY_MODELS */
    size_t ndiscovery;

    cl_store *store;
    cl_store_txn *txn;
    cl_consumer *consumer, *weights;
    cl_producer *producer;
    cl_prom *prom;
    cl_http *http;
    worker_metrics m;
    cl_buf scratch, enc;

    int dirty, published_once;
    atomic_int publish_requested;
    int64_t last_publish_mono, last_activity_mono;
    atomic_int delivery_failed;

    pthread_mutex_t reports_lock;
    cl_buf won_html, lost_html; /* last rendered, guarded by reports_lock */
};

/* ---- configuration ----------------------------------------------------------------- */

static int horizon_from(const char *s, cl_horizon_policy *out, char *err, size_t errlen)
{
    char up[64];
    size_t i = 0;
    for (; s[i] && i + 1 < sizeof up; i++)
        up[i] = (char)toupper((unsigned char)(s[i] == '-' ? '_' : s[i]));
    up[i] = '\0';
    if (cl_horizon_policy_parse(up, out) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "metrics.horizon '%.64s': expected LATEST_BEFORE_HORIZON, FIRST_SNAPSHOT "
                         "or ALL_SNAPSHOTS",
                         s);
    return CL_OK;
}

static int options_from(cl_metrics_worker *w, const cl_config *cfg, char *err, size_t errlen)
{
    cl_eval_options_defaults(&w->eval);
    int rc = horizon_from(cl_config_str(cfg, "metrics.horizon"), &w->eval.horizon, err, errlen);
    if (rc != CL_OK)
        return rc;
    w->eval.horizon_days = (int32_t)cl_config_int(cfg, "metrics.horizon.days");
    w->eval.calibration_bins = (size_t)cl_config_int(cfg, "metrics.calibration.bins");
    w->eval.threshold_step = cl_config_double(cfg, "metrics.threshold.step");
    w->eval.months = (size_t)cl_config_int(cfg, "metrics.months");
    w->eval.models = w->models;
    cl_report_options_defaults(&w->report);
    w->report.model = cl_config_str(cfg, "metrics.model");
    w->report.salesforce_url = cl_config_str(cfg, "metrics.salesforce.instance.url");
    w->report.patterns.min_sample = (size_t)cl_config_int(cfg, "metrics.patterns.min.sample");
    w->report.patterns.min_lift = cl_config_double(cfg, "metrics.patterns.min.lift");
    if (!w->report.model || !w->report.model[0])
        return cl_seterr(err, errlen, CL_EINVAL, "metrics.model must not be empty");
    rc = cl_report_check_salesforce_url(w->report.salesforce_url, err, errlen);
    if (rc != CL_OK)
        return rc;
    w->report_dir = cl_config_str(cfg, "metrics.report.dir");
    w->poll_max = (size_t)cl_config_int(cfg, "metrics.poll.max.records");
    w->interval_ms = cl_config_int(cfg, "metrics.publish.interval.ms");
    w->exit_idle_ms = cl_config_int(cfg, "metrics.exit.idle.ms");
    w->shutdown_ms = (int)cl_config_int(cfg, "shutdown.timeout.ms");
    return CL_OK;
}

/* ---- known model versions ---------------------------------------------------------- */

static void models_put(cl_metrics_worker *w, const cl_weight_config *c)
{
    size_t i = 0;
    while (i < w->nmodels &&
           !(w->models[i].version == c->version && strcmp(w->models[i].model, c->model) == 0))
        i++;
    if (i == w->nmodels) {
        if (w->nmodels == CL_EVAL_MODELS_MAX) {
            /* Full: forget the oldest retired or rejected version. */
            size_t victim = SIZE_MAX;
            for (size_t j = 0; j < w->nmodels; j++)
                if ((w->models[j].status == CL_MODEL_RETIRED ||
                     w->models[j].status == CL_MODEL_REJECTED) &&
                    (victim == SIZE_MAX || w->models[j].created_at < w->models[victim].created_at))
                    victim = j;
            if (victim == SIZE_MAX) {
                cl_log(CL_LOG_WARN, "weights_table_full", "model=%s version=%" PRId64, c->model,
                       c->version);
                return;
            }
            i = victim;
        } else {
            w->nmodels++;
        }
    }
    cl_eval_model *m = &w->models[i];
    memset(m, 0, sizeof *m);
    cl_strlcpy(m->model, c->model, sizeof m->model);
    m->version = c->version;
    m->status = c->status;
    m->bands = c->bands;
    m->weights = c->weights;
    m->created_at = c->created_at;
    w->eval.nmodels = w->nmodels;
    w->dirty = 1;
}

static int follow_weights(cl_metrics_worker *w)
{
    if (!w->weights)
        return CL_OK;
    cl_message msgs[64];
    size_t n = 0;
    char err[CL_ERRLEN];
    if (cl_consumer_poll(w->weights, msgs, 64, &n, 0, err, sizeof err) != CL_OK) {
        cl_log(CL_LOG_WARN, "weights_poll_failed", "error=\"%s\"", err);
        return CL_OK;
    }
    for (size_t i = 0; i < n; i++) {
        cl_message *m = &msgs[i];
        if (!m->value)
            continue; /* a compacted-away model: its figures stay until re-published */
        avro_value_t *v;
        int rc = cl_avro_codec_decode(w->weights_codec, m->value, m->value_len, &v, err,
                                      sizeof err);
        if (rc == CL_OK)
            rc = cl_weight_config_from_avro(v, w->wc, err, sizeof err);
        if (rc != CL_OK) {
            cl_log(CL_LOG_WARN, "weights_record_skipped",
                   "topic=%s partition=%" PRId32 " offset=%" PRId64 " error=\"%s\"", m->topic,
                   m->partition, m->offset, err);
            continue;
        }
        models_put(w, w->wc);
        if (cl_report_discovery_update(w->discovery, &w->ndiscovery, DISCOVERY_MODELS, w->wc)) {
            w->report.discovery = w->discovery;
            w->report.ndiscovery = w->ndiscovery;
            w->dirty = 1;
        }
        cl_log(CL_LOG_INFO, "weights_seen", "model=%s version=%" PRId64 " status=%s",
               w->wc->model, w->wc->version, cl_model_status_name(w->wc->status));
    }
    cl_messages_release(msgs, n);
    return CL_OK;
}

/* ---- state ------------------------------------------------------------------------- */

static int batch_open(cl_metrics_worker *w, char *err, size_t errlen)
{
    if (w->txn)
        return CL_OK;
    return cl_store_batch_begin(w->store, &w->txn, err, errlen);
}

/* Commits the batch, then tells Kafka (for lag monitors) where LMDB now stands. */
static int batch_finish(cl_metrics_worker *w, char *err, size_t errlen)
{
    if (!w->txn)
        return CL_OK;
    cl_store_txn *t = w->txn;
    w->txn = NULL;
    int rc = cl_store_batch_commit(t, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (w->consumer) {
        char cerr[CL_ERRLEN];
        if (cl_consumer_commit(w->consumer, 1, cerr, sizeof cerr) != CL_OK)
            cl_log(CL_LOG_WARN, "offset_commit_failed", "error=\"%s\"", cerr);
    }
    return CL_OK;
}

static void count_effect(cl_metrics_worker *w, cl_aggregate_effect e)
{
    cl_prom_counter_add(w->m.records, (const char *[]){cl_aggregate_effect_name(e)}, 1);
    if (e != CL_AGG_DUPLICATE && e != CL_AGG_STALE)
        w->dirty = 1;
}

static int to_dlq(cl_metrics_worker *w, const cl_message *m, const char *reason,
                  const char *detail, char *err, size_t errlen)
{
    cl_log(CL_LOG_WARN, "record_to_dlq",
           "topic=%s partition=%" PRId32 " offset=%" PRId64 " reason=%s error=\"%s\"", m->topic,
           m->partition, m->offset, reason, detail);
    cl_prom_counter_add(w->m.dlq, (const char *[]){reason}, 1);
    return cl_kafka_dlq_send(w->producer, w->t_dlq, m, "metrics", detail, NULL, err, errlen);
}

static int process(cl_metrics_worker *w, const cl_message *m, char *err, size_t errlen)
{
    int rc = batch_open(w, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_aggregate_effect e;
    char derr[CL_ERRLEN];
    if (!m->value) {
        if (!m->key || m->key_len == 0 || m->key_len > CL_ID_MAX ||
            memchr(m->key, 0, m->key_len)) {
            rc = to_dlq(w, m, "bad_key", "tombstone without a usable opportunity id key", err,
                        errlen);
        } else {
            rc = cl_aggregate_apply_tombstone(w->txn, m->key, m->key_len, &e, NULL, err, errlen);
            if (rc == CL_OK)
                count_effect(w, e);
        }
    } else {
        avro_value_t *v;
        int drc = cl_avro_codec_decode(w->labeled_codec, m->value, m->value_len, &v, derr,
                                       sizeof derr);
        if (drc == CL_EAGAIN || drc == CL_ETIMEOUT || drc == CL_EIO)
            return cl_seterr(err, errlen, CL_EAGAIN, "%s", derr);
        if (drc == CL_OK)
            drc = cl_labeled_example_from_avro(v, w->example, derr, sizeof derr);
        if (drc == CL_OK && m->key &&
            (m->key_len != strlen(w->example->snapshot.opportunity_id) ||
             memcmp(m->key, w->example->snapshot.opportunity_id, m->key_len) != 0)) {
            snprintf(derr, sizeof derr, "record key is not the opportunity id %.128s",
                     w->example->snapshot.opportunity_id);
            drc = CL_EINVAL;
        }
        if (drc == CL_OK) {
            drc = cl_aggregate_apply(w->txn, w->example, w->seed, &w->scratch, &e, NULL, derr,
                                     sizeof derr);
            if (drc == CL_OK)
                count_effect(w, e);
            else if (drc != CL_EINVAL)
                return cl_seterr(err, errlen, drc, "%s", derr);
        }
        rc = drc == CL_OK ? CL_OK : to_dlq(w, m, "undecodable", derr, err, errlen);
    }
    if (rc != CL_OK)
        return rc;
    rc = cl_aggregate_offset_put(w->txn, m->partition, m->offset + 1, err, errlen);
    if (rc == CL_OK)
        rc = cl_consumer_store(w->consumer, m, err, errlen);
    return rc;
}

static int on_assign(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                     size_t errlen)
{
    cl_metrics_worker *w = ud;
    (void)c;
    cl_store_txn *t;
    int rc = cl_store_read_begin(w->store, &t, err, errlen);
    if (rc != CL_OK)
        return rc;
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        int64_t next;
        rc = cl_aggregate_offset_get(t, parts[i].partition, &next, err, errlen);
        if (rc == CL_OK) {
            parts[i].offset = next;
            cl_log(CL_LOG_INFO, "partition_resumed", "topic=%s partition=%" PRId32
                   " offset=%" PRId64, parts[i].topic, parts[i].partition, next);
        } else if (rc == CL_ENOTFOUND) {
            rc = CL_OK; /* never seen: the group's committed offset, else the beginning */
        }
    }
    cl_store_read_end(t);
    return rc;
}

static void on_revoke(cl_consumer *c, const cl_topic_partition *parts, size_t n, void *ud)
{
    cl_metrics_worker *w = ud;
    char err[CL_ERRLEN];
    (void)c;
    (void)parts;
    (void)n;
    if (batch_finish(w, err, sizeof err) != CL_OK)
        cl_log(CL_LOG_ERROR, "batch_commit_failed", "when=revoke error=\"%s\"", err);
}

/* ---- publishing -------------------------------------------------------------------- */

static int write_file_atomic(const char *dir, const char *name, const cl_buf *b, char *err,
                             size_t errlen)
{
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return cl_seterr(err, errlen, CL_EINVAL, "report path under %.200s is too long", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return cl_seterr(err, errlen, CL_EIO, "cannot write %s: %s", tmp, strerror(errno));
    size_t wr = b->len ? fwrite(b->data, 1, b->len, f) : 0;
    int ok = wr == b->len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cl_seterr(err, errlen, CL_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return CL_OK;
}

static int write_reports(const char *dir, const cl_buf *won, const cl_buf *lost, char *err,
                         size_t errlen)
{
    if (!dir || !dir[0])
        return CL_OK;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return cl_seterr(err, errlen, CL_EIO, "metrics.report.dir %s: %s", dir, strerror(errno));
    int rc = write_file_atomic(dir, "closed-won.html", won, err, errlen);
    if (rc == CL_OK)
        rc = write_file_atomic(dir, "closed-lost.html", lost, err, errlen);
    return rc;
}

typedef int (*metrics_sink)(void *ud, const cl_model_metrics *m, char *err, size_t errlen);

/* Evaluates the state and hands every ModelMetrics to sink; renders the reports. */
static int evaluate_all(cl_store *store, const cl_eval_options *eo, const cl_report_options *ro,
                        cl_model_metrics *mm, metrics_sink sink, void *ud, cl_buf *won,
                        cl_buf *lost, cl_eval_set **set_out, size_t *published, char *err,
                        size_t errlen)
{
    cl_store_txn *t;
    int rc = cl_store_read_begin(store, &t, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_eval_set *s = NULL;
    rc = cl_eval_set_build(t, eo, &s, err, errlen);
    cl_store_read_end(t);
    if (rc != CL_OK)
        return rc;
    cl_metrics_window wins[WINDOWS_MAX];
    size_t nwin = cl_eval_windows(s, wins, WINDOWS_MAX);
    int64_t now = ro->generated_at;
    *published = 0;
    for (size_t vi = 0; vi < s->nversions && rc == CL_OK; vi++) {
        for (size_t k = 0; k < nwin && rc == CL_OK; k++) {
            rc = cl_eval_version_metrics(s, vi, &wins[k], now, mm, err, errlen);
            if (rc == CL_ENOTFOUND) {
                rc = CL_OK;
                continue;
            }
            if (rc == CL_OK)
                rc = sink(ud, mm, err, errlen);
            if (rc == CL_OK)
                (*published)++;
        }
    }
    if (rc == CL_OK)
        rc = cl_report_render(s, ro, won, lost, err, errlen);
    if (rc == CL_OK && set_out)
        *set_out = s;
    else
        cl_eval_set_free(s);
    return rc;
}

static int publish_sink(void *ud, const cl_model_metrics *m, char *err, size_t errlen)
{
    cl_metrics_worker *w = ud;
    avro_value_t *v = cl_avro_codec_value(w->metrics_codec);
    int rc = cl_model_metrics_to_avro(m, v, err, errlen);
    cl_buf_reset(&w->enc);
    if (rc == CL_OK)
        rc = cl_avro_codec_encode(w->metrics_codec, v, &w->enc, err, errlen);
    if (rc == CL_OK)
        rc = cl_producer_send(w->producer, w->t_metrics, m->model, strlen(m->model), w->enc.data,
                              w->enc.len, NULL, 0, NULL, 10000, err, errlen);
    if (rc == CL_OK && m->window.kind == CL_WINDOW_CUMULATIVE) {
        char ver[32];
        snprintf(ver, sizeof ver, "%" PRId64, m->version);
        struct {
            const char *name;
            cl_opt_double v;
        } figs[] = {{"auc", m->auc},     {"precision", m->precision}, {"recall", m->recall},
                    {"brier", m->brier}, {"ece", m->ece},             {"log_loss", m->log_loss},
                    {"n", {true, (double)m->n}}};
        for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++)
            if (figs[i].v.present)
                cl_prom_gauge_set(w->m.figure, (const char *[]){m->model, ver, figs[i].name},
                                  figs[i].v.value);
    }
    return rc;
}

static int publish(cl_metrics_worker *w, const char *why, char *err, size_t errlen)
{
    int rc = batch_finish(w, err, errlen);
    if (rc != CL_OK)
        return rc;
    int64_t t0 = cl_mono_ns();
    w->report.generated_at = cl_now_ms();
    cl_buf won, lost;
    cl_buf_init(&won, 64u * 1024 * 1024);
    cl_buf_init(&lost, 64u * 1024 * 1024);
    cl_eval_set *s = NULL;
    size_t n = 0;
    atomic_store(&w->delivery_failed, 0);
    rc = evaluate_all(w->store, &w->eval, &w->report, w->mm, publish_sink, w, &won, &lost, &s, &n,
                      err, errlen);
    if (rc == CL_OK)
        rc = cl_producer_flush(w->producer, FLUSH_TIMEOUT_MS, err, errlen);
    if (rc == CL_OK && atomic_load(&w->delivery_failed))
        rc = cl_seterr(err, errlen, CL_EAGAIN, "some ModelMetrics records were not acknowledged");
    if (rc == CL_OK) {
        char werr[CL_ERRLEN];
        if (write_reports(w->report_dir, &won, &lost, werr, sizeof werr) != CL_OK)
            cl_log(CL_LOG_ERROR, "report_write_failed", "error=\"%s\"", werr);
        pthread_mutex_lock(&w->reports_lock);
        cl_buf tmp = w->won_html;
        w->won_html = won;
        won = tmp;
        tmp = w->lost_html;
        w->lost_html = lost;
        lost = tmp;
        pthread_mutex_unlock(&w->reports_lock);
        cl_prom_gauge_set(w->m.rows, NULL, (double)s->rows);
        cl_prom_gauge_set(w->m.opportunities, NULL, (double)s->opportunities);
        cl_prom_gauge_set(w->m.excluded, NULL, (double)s->excluded_by_horizon);
        cl_prom_counter_add(w->m.published, NULL, (double)n);
        cl_prom_gauge_set(w->m.last_publish, NULL, (double)w->report.generated_at / 1000.0);
        double secs = (double)(cl_mono_ns() - t0) / 1e9;
        cl_prom_observe(w->m.publish_seconds, NULL, secs);
        cl_log(CL_LOG_INFO, "metrics_published",
               "why=%s records=%zu versions=%zu opportunities=%" PRIu64 " rows=%" PRIu64
               " excluded_by_horizon=%" PRIu64 " seconds=%.3f",
               why, n, s->nversions, s->opportunities, s->rows, s->excluded_by_horizon, secs);
        w->dirty = 0;
        w->published_once = 1;
    }
    w->last_publish_mono = cl_mono_ms();
    cl_eval_set_free(s);
    cl_buf_free(&won);
    cl_buf_free(&lost);
    return rc;
}

/* ---- HTTP -------------------------------------------------------------------------- */

static int serve_report(const char *path, cl_http_response *resp, void *ud, char *err,
                        size_t errlen)
{
    cl_metrics_worker *w = ud;
    const cl_buf *src = NULL;
    if (strcmp(path, "/reports/closed-won.html") == 0)
        src = &w->won_html;
    else if (strcmp(path, "/reports/closed-lost.html") == 0)
        src = &w->lost_html;
    if (strcmp(path, "/reports") == 0 || strcmp(path, "/reports/") == 0) {
        resp->content_type = "text/html; charset=utf-8";
        return cl_buf_printf(&resp->body,
                             "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/>"
                             "<title>closedloop reports</title></head><body><ul>"
                             "<li><a href=\"closed-won.html\">Closed Won analysis</a></li>"
                             "<li><a href=\"closed-lost.html\">Closed Lost analysis</a></li>"
                             "</ul></body></html>\n");
    }
    if (!src) {
        resp->status = 404;
        return cl_buf_printf(&resp->body, "not found\n");
    }
    pthread_mutex_lock(&w->reports_lock);
    int rc = CL_OK;
    if (src->len == 0) {
        resp->status = 503;
        rc = cl_buf_printf(&resp->body, "the reports have not been rendered yet\n");
    } else {
        resp->content_type = "text/html; charset=utf-8";
        rc = cl_buf_append(&resp->body, src->data, src->len);
    }
    pthread_mutex_unlock(&w->reports_lock);
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "report larger than the response limit");
    return CL_OK;
}

static int serve_publish(const char *path, cl_http_response *resp, void *ud, char *err,
                         size_t errlen)
{
    cl_metrics_worker *w = ud;
    (void)path;
    atomic_store(&w->publish_requested, 1);
    resp->status = 202;
    return cl_buf_printf(&resp->body, "publish scheduled\n");
}

/* ---- lifecycle --------------------------------------------------------------------- */

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset, const char *reason, void *ud)
{
    cl_metrics_worker *w = ud;
    (void)opaque;
    (void)partition;
    (void)offset;
    if (status != CL_OK) {
        atomic_store(&w->delivery_failed, 1);
        cl_log(CL_LOG_ERROR, "delivery_failed", "topic=%s error=\"%s\"", topic, reason);
    }
}

static int metrics_init(cl_metrics_worker *w, char *err, size_t errlen)
{
    int rc = cl_prom_counter(w->prom, "closedloop_metrics_records_total",
                             "Labeled records applied, by what they did to the state.",
                             (const char *[]){"effect", NULL}, &w->m.records, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_counter(w->prom, "closedloop_dlq_records_total",
                             "Records sent to the dead-letter topic, by reason.",
                             (const char *[]){"reason", NULL}, &w->m.dlq, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_counter(w->prom, "closedloop_metrics_published_total",
                             "ModelMetrics records published.", NULL, &w->m.published, err,
                             errlen);
    if (rc == CL_OK)
        rc = cl_prom_histogram(w->prom, "closedloop_metrics_publish_seconds",
                               "Time to evaluate, publish and render once.", NULL,
                               cl_prom_seconds_buckets, cl_prom_seconds_buckets_len,
                               &w->m.publish_seconds, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(w->prom, "closedloop_metrics_rows", "Labeled snapshots in the state.",
                           NULL, &w->m.rows, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(w->prom, "closedloop_metrics_opportunities",
                           "Opportunities with a labeled snapshot in the state.", NULL,
                           &w->m.opportunities, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(w->prom, "closedloop_metrics_excluded_by_horizon",
                           "Opportunities without a snapshot early enough for the horizon.",
                           NULL, &w->m.excluded, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(w->prom, "closedloop_model_figure",
                           "Cumulative figures per model version (auc, precision, recall, "
                           "brier, ece, log_loss, n).",
                           (const char *[]){"model", "version", "figure", NULL}, &w->m.figure,
                           err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(w->prom, "closedloop_metrics_last_publish_timestamp_seconds",
                           "When the figures were last published.", NULL, &w->m.last_publish,
                           err, errlen);
    return rc;
}

static int topic_copy(cl_config *cfg, const char *name, char out[256], char *err, size_t errlen)
{
    if (cl_strlcpy(out, cl_config_topic(cfg, name), 256) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "topic name for %s is longer than 255 bytes",
                         name);
    return CL_OK;
}

/* Parts shared by the worker and the offline mode. */
static int common_new(cl_config *cfg, cl_metrics_worker *w, char *err, size_t errlen)
{
    w->cfg = cfg;
    pthread_mutex_init(&w->reports_lock, NULL);
    cl_buf_init(&w->scratch, 1u << 20);
    cl_buf_init(&w->enc, 16u << 20);
    cl_buf_init(&w->won_html, 64u << 20);
    cl_buf_init(&w->lost_html, 64u << 20);
    w->seed = malloc(sizeof *w->seed);
    w->wc = malloc(sizeof *w->wc);
    w->example = malloc(sizeof *w->example);
    w->mm = malloc(sizeof *w->mm);
    w->discovery = calloc(DISCOVERY_MODELS, sizeof *w->discovery);
    if (!w->seed || !w->wc || !w->example || !w->mm || !w->discovery)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    cl_weight_config_seed(w->seed, 0);
    models_put(w, w->seed);
    /* The seed's status is only an assumption until the weights topic says otherwise. */
    w->models[0].status = CL_MODEL_CHAMPION;
    int rc = options_from(w, cfg, err, errlen);
    if (rc == CL_OK)
        rc = topic_copy(cfg, "labeled", w->t_labeled, err, errlen);
    if (rc == CL_OK)
        rc = topic_copy(cfg, "metrics", w->t_metrics, err, errlen);
    if (rc == CL_OK)
        rc = topic_copy(cfg, "dlq", w->t_dlq, err, errlen);
    if (rc == CL_OK)
        rc = topic_copy(cfg, "weights", w->t_weights, err, errlen);
    if (rc == CL_OK)
        rc = cl_avro_schemas_load(cl_config_str(cfg, "avro.schema.dir"), &w->schemas, err,
                                  errlen);
    if (rc == CL_OK)
        rc = cl_registry_from_config(&w->registry, cfg, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_avro_codec_opts in = {CL_AVRO_FRAMING_AUTO, w->registry, NULL, 0};
    char subject[300];
    snprintf(subject, sizeof subject, "%s-value", w->t_metrics);
    cl_avro_codec_opts mo = {CL_AVRO_FRAMING_AUTO, w->registry, subject, 0};
    rc = cl_avro_codec_new(&w->labeled_codec, w->schemas, "closedloop.LabeledExample", &in, err,
                           errlen);
    if (rc == CL_OK)
        rc = cl_avro_codec_new(&w->weights_codec, w->schemas, "closedloop.WeightConfig", &in, err,
                               errlen);
    if (rc == CL_OK)
        rc = cl_avro_codec_new(&w->metrics_codec, w->schemas, "closedloop.ModelMetrics", &mo, err,
                               errlen);
    if (rc != CL_OK)
        return rc;
    cl_store_config sc;
    rc = cl_store_config_from(&sc, cfg, err, errlen);
    if (rc == CL_OK)
        rc = cl_store_open(&w->store, cl_config_str(cfg, "state.dir"), cl_aggregate_db_names, &sc,
                           err, errlen);
    return rc;
}

static void collect_lag(cl_prom *reg, void *ud)
{
    cl_metrics_worker *w = ud;
    cl_consumer_export_lag(w->consumer, reg);
}

int cl_metrics_worker_new(cl_config *cfg, cl_metrics_worker **out, char *err, size_t errlen)
{
    cl_metrics_worker *w = calloc(1, sizeof *w);
    if (!w)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int rc = common_new(cfg, w, err, errlen);
    if (rc != CL_OK)
        goto fail;
    w->prom = cl_prom_new();
    if (!w->prom) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = metrics_init(w, err, errlen)) != CL_OK ||
        (rc = cl_store_export_prom(w->store, w->prom, "metrics", err, errlen)) != CL_OK)
        goto fail;
    cl_producer_opts po = {NULL, on_delivery, w, NULL};
    if ((rc = cl_producer_new(cfg, &po, &w->producer, err, errlen)) != CL_OK)
        goto fail;
    const char *topics[1] = {w->t_labeled};
    cl_consumer_opts co = {0};
    co.topics = topics;
    co.ntopics = 1;
    co.hooks.on_assign = on_assign;
    co.hooks.on_revoke = on_revoke;
    co.hooks.ud = w;
    if ((rc = cl_consumer_new(cfg, &co, &w->consumer, err, errlen)) != CL_OK)
        goto fail;
    w->lag_collector = cl_prom_add_collector(w->prom, collect_lag, w);
    if (w->lag_collector <= 0) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "cannot register the consumer lag collector");
        goto fail;
    }
    if (cl_config_bool(cfg, "metrics.follow.weights")) {
        const char *wt[1] = {w->t_weights};
        cl_consumer_opts wo = {0};
        wo.topics = wt;
        wo.ntopics = 1;
        wo.read_to_end = 1;
        wo.client_id = "closedloop-metrics-weights";
        if ((rc = cl_consumer_new(cfg, &wo, &w->weights, err, errlen)) != CL_OK)
            goto fail;
    }
    cl_http_config hc = {cl_config_str(cfg, "http.listen"), w->prom, 0, 0, 0};
    if ((rc = cl_http_start(&w->http, &hc, err, errlen)) != CL_OK ||
        (rc = cl_http_add_handler(w->http, "/reports", serve_report, w, err, errlen)) != CL_OK ||
        (rc = cl_http_add_handler(w->http, "/publish", serve_publish, w, err, errlen)) != CL_OK)
        goto fail;
    cl_http_set_health(w->http, 1, NULL);
    cl_log(CL_LOG_INFO, "metrics_started",
           "labeled=%s metrics=%s weights=%s state_dir=%s report_dir=%s horizon=%s "
           "horizon_days=%d http_port=%u",
           w->t_labeled, w->t_metrics, w->t_weights, cl_store_path(w->store), w->report_dir,
           cl_horizon_policy_name(w->eval.horizon), (int)w->eval.horizon_days,
           (unsigned)cl_http_port(w->http));
    *out = w;
    return CL_OK;
fail:
    cl_metrics_worker_free(w);
    return rc;
}

static int input_idle(cl_metrics_worker *w)
{
    return cl_consumer_assignment_count(w->consumer) > 0 && cl_consumer_at_end(w->consumer) &&
           (!w->weights || cl_consumer_at_end(w->weights));
}

int cl_metrics_worker_run(cl_metrics_worker *w, char *err, size_t errlen)
{
    cl_message *msgs = calloc(w->poll_max, sizeof *msgs);
    if (!msgs)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int rc = CL_OK;
    w->last_activity_mono = w->last_publish_mono = cl_mono_ms();
    while (!cl_stop_requested() && rc == CL_OK) {
        size_t n = 0;
        rc = cl_consumer_poll(w->consumer, msgs, w->poll_max, &n, 100, err, errlen);
        if (rc != CL_OK)
            break;
        for (size_t i = 0; i < n && rc == CL_OK; i++) {
            rc = process(w, &msgs[i], err, errlen);
            if (rc == CL_EAGAIN) {
                /* Registry unreachable: keep what is done, re-read from this record. */
                cl_log(CL_LOG_WARN, "record_retry", "error=\"%s\"", err);
                rc = batch_finish(w, err, errlen);
                if (rc == CL_OK)
                    cl_consumer_seek(w->consumer, msgs[i].topic, msgs[i].partition,
                                     msgs[i].offset, 5000, NULL, 0);
                cl_sleep_ms(500);
                break;
            }
            if (rc == CL_OK && cl_store_batch_should_commit(w->txn))
                rc = batch_finish(w, err, errlen);
        }
        cl_messages_release(msgs, n);
        if (rc != CL_OK)
            break;
        if (n > 0)
            w->last_activity_mono = cl_mono_ms();
        else if ((rc = batch_finish(w, err, errlen)) != CL_OK)
            break;
        follow_weights(w);
        int64_t now = cl_mono_ms();
        int idle_exit = w->exit_idle_ms > 0 && input_idle(w) &&
                        now - w->last_activity_mono >= w->exit_idle_ms;
        if (atomic_exchange(&w->publish_requested, 0) ||
            (w->dirty && now - w->last_publish_mono >= w->interval_ms) ||
            (idle_exit && (w->dirty || !w->published_once))) {
            rc = publish(w, idle_exit ? "final" : "interval", err, errlen);
            if (rc == CL_EAGAIN) {
                cl_log(CL_LOG_WARN, "publish_retry", "error=\"%s\"", err);
                rc = CL_OK;
                continue;
            }
        }
        if (idle_exit && rc == CL_OK) {
            cl_log(CL_LOG_INFO, "metrics_idle_exit", "idle_ms=%" PRId64, w->exit_idle_ms);
            break;
        }
    }
    free(msgs);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "metrics_failed", "error=\"%s\"", err);
        if (w->http)
            cl_http_set_health(w->http, 0, err);
        if (w->txn) {
            cl_store_batch_abort(w->txn);
            w->txn = NULL;
        }
        return rc;
    }
    return batch_finish(w, err, errlen);
}

void cl_metrics_worker_free(cl_metrics_worker *w)
{
    if (!w)
        return;
    char err[CL_ERRLEN];
    if (w->prom && w->lag_collector > 0)
        cl_prom_remove_collector(w->prom, w->lag_collector);
    if (w->consumer)
        cl_consumer_close(w->consumer, w->shutdown_ms, err, sizeof err);
    if (w->txn)
        cl_store_batch_abort(w->txn);
    if (w->weights)
        cl_consumer_close(w->weights, w->shutdown_ms, err, sizeof err);
    if (w->producer)
        cl_producer_close(w->producer, w->shutdown_ms, err, sizeof err);
    cl_http_stop(w->http);
    cl_store_close(w->store);
    cl_prom_free(w->prom);
    cl_avro_codec_free(w->labeled_codec);
    cl_avro_codec_free(w->weights_codec);
    cl_avro_codec_free(w->metrics_codec);
    cl_registry_free(w->registry);
    cl_avro_schemas_free(w->schemas);
    cl_buf_free(&w->scratch);
    cl_buf_free(&w->enc);
    cl_buf_free(&w->won_html);
    cl_buf_free(&w->lost_html);
    pthread_mutex_destroy(&w->reports_lock);
    free(w->seed);
    free(w->wc);
    free(w->discovery);
    free(w->example);
    free(w->mm);
    free(w);
}

/* ---- offline ----------------------------------------------------------------------- */

typedef struct {
    cl_metrics_worker *w;
    FILE *out;
} offline_sink_ctx;

static int offline_sink(void *ud, const cl_model_metrics *m, char *err, size_t errlen)
{
    offline_sink_ctx *c = ud;
    avro_value_t *v = cl_avro_codec_value(c->w->metrics_codec);
    int rc = cl_model_metrics_to_avro(m, v, err, errlen);
    json_t *j = NULL;
    if (rc == CL_OK)
        rc = cl_avro_value_to_json(v, cl_avro_codec_schema(c->w->metrics_codec), &j, err, errlen);
    if (rc != CL_OK)
        return rc;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!s)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    fprintf(c->out, "%s\n", s);
    free(s);
    return CL_OK;
}

int cl_metrics_offline(cl_config *cfg, const char *path, FILE *out, char *err, size_t errlen)
{
    cl_metrics_worker *w = calloc(1, sizeof *w);
    if (!w)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int rc = common_new(cfg, w, err, errlen);
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    if (rc != CL_OK)
        goto done;
    if (!path) /* no input: evaluate and render the state as it is */
        goto evaluate;
    in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        rc = cl_seterr(err, errlen, CL_EIO, "cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    const cl_avro_schema *schema = cl_avro_codec_schema(w->labeled_codec);
    uint64_t effects[CL_AGG_EFFECT_COUNT] = {0};
    ssize_t len;
    while (rc == CL_OK && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if ((size_t)len > OFFLINE_LINE_MAX) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s line %zu: longer than %u bytes", path,
                           lineno, OFFLINE_LINE_MAX);
            break;
        }
        size_t k = 0;
        while (k < (size_t)len && isspace((unsigned char)line[k]))
            k++;
        if (k == (size_t)len)
            continue;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, 0, &je);
        if (!j) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s line %zu column %d: %s", path, lineno,
                           je.column, je.text);
            break;
        }
        avro_value_t *v = cl_avro_codec_value(w->labeled_codec);
        char derr[CL_ERRLEN];
        rc = cl_avro_value_from_json(v, schema, j, derr, sizeof derr);
        json_decref(j);
        if (rc == CL_OK)
            rc = cl_labeled_example_from_avro(v, w->example, derr, sizeof derr);
        if (rc == CL_OK)
            rc = batch_open(w, derr, sizeof derr);
        cl_aggregate_effect e;
        if (rc == CL_OK)
            rc = cl_aggregate_apply(w->txn, w->example, w->seed, &w->scratch, &e, NULL, derr,
                                    sizeof derr);
        if (rc != CL_OK) {
            cl_seterr(err, errlen, rc, "%s line %zu: %s", path, lineno, derr);
            break;
        }
        effects[e]++;
        if (cl_store_batch_should_commit(w->txn))
            rc = batch_finish(w, err, errlen);
    }
    if (rc == CL_OK && ferror(in))
        rc = cl_seterr(err, errlen, CL_EIO, "reading %s failed", path);
    if (rc == CL_OK)
        rc = batch_finish(w, err, errlen);
    if (rc != CL_OK)
        goto done;
    cl_log(CL_LOG_INFO, "offline_applied",
           "file=%s lines=%zu added=%" PRIu64 " updated=%" PRIu64 " duplicate=%" PRIu64
           " superseded=%" PRIu64 " stale=%" PRIu64 " retracted=%" PRIu64,
           path, lineno, effects[CL_AGG_ADDED], effects[CL_AGG_UPDATED],
           effects[CL_AGG_DUPLICATE], effects[CL_AGG_SUPERSEDED], effects[CL_AGG_STALE],
           effects[CL_AGG_RETRACTED]);
evaluate:
    w->report.generated_at = cl_now_ms();
    cl_buf won, lost;
    cl_buf_init(&won, 64u << 20);
    cl_buf_init(&lost, 64u << 20);
    offline_sink_ctx sc = {w, out};
    size_t n = 0;
    rc = evaluate_all(w->store, &w->eval, &w->report, w->mm, offline_sink, &sc, &won, &lost, NULL,
                      &n, err, errlen);
    if (rc == CL_OK)
        rc = write_reports(w->report_dir, &won, &lost, err, errlen);
    cl_buf_free(&won);
    cl_buf_free(&lost);
done:
    if (in && in != stdin)
        fclose(in);
    free(line);
    if (w->txn) {
        cl_store_batch_abort(w->txn);
        w->txn = NULL;
    }
    cl_metrics_worker_free(w);
    return rc;
}
