/*
 * weights_follower.c — the weights topic -> champion/challenger book. See
 * weights_follower.h.
 */
#include "weights_follower.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "records.h"
#include "score.h"
#include "util.h"

#define MAX_PARTITIONS 64
#define POLL_BATCH 64

struct cl_weights_follower {
    cl_weights_follower_opts o;
    char topic[512], dlq_topic[512], lag_group[256];
    cl_consumer *consumer;
    cl_avro_codec *codec;
    cl_weights_book book;
    cl_weight_config *scratch; /* 640 KiB: decoded here, copied into the book */
    cl_prom_metric *m_records, *m_version;
    int collector;
    /* Next offset to read per partition, for the lag figures (scraped from the HTTP
     * thread; -1: nothing read yet). */
    _Atomic int64_t next[MAX_PARTITIONS];
    int announced_seed;
};

static void count(cl_weights_follower *f, const char *result)
{
    if (f->m_records) cl_prom_counter_add(f->m_records, (const char *[]){result}, 1);
}

/* The version gauges mirror the active set: cleared and rebuilt after each change. */
static void export_versions(cl_weights_follower *f)
{
    if (!f->m_version) return;
    cl_prom_clear(f->m_version);
    const cl_weight_config *act[2 * CL_WEIGHTS_MAX_MODELS + 1];
    size_t n, dropped;
    cl_weights_book_active(&f->book, NULL, act, sizeof act / sizeof act[0], &n, &dropped);
    for (size_t i = 0; i < n; i++) {
        const char *status = act[i]->status == CL_MODEL_CHALLENGER ? "CHALLENGER" : "CHAMPION";
        cl_prom_gauge_set(f->m_version, (const char *[]){act[i]->model, status},
                          (double)act[i]->version);
    }
}

static void lag_collector(cl_prom *reg, void *ud)
{
    cl_weights_follower *f = ud;
    if (!f->consumer) return;
    rd_kafka_t *rk = cl_consumer_handle(f->consumer);
    cl_prom_partition_lag rows[MAX_PARTITIONS];
    size_t n = 0;
    for (int32_t p = 0; p < MAX_PARTITIONS; p++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(rk, f->topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        if (hi < 0) continue;
        int64_t next = atomic_load(&f->next[p]);
        /* Nothing read yet: the reader starts at the log start offset. */
        int64_t pos = next >= 0 ? next : (lo >= 0 ? lo : -1);
        rows[n] = (cl_prom_partition_lag){.group = f->lag_group,
                                          .topic = f->topic,
                                          .partition = p,
                                          .committed_offset = pos,
                                          .end_offset = hi,
                                          .lag = pos >= 0 ? (hi > pos ? hi - pos : 0) : -1,
                                          .lag_seconds = -1};
        n++;
    }
    char err[CL_ERRLEN];
    if (cl_prom_set_consumer_lag(reg, rows, n, err, sizeof err) != CL_OK)
        cl_log(CL_LOG_WARN, "lag_export_failed", "error=\"%s\"", err);
}

int cl_weights_follower_new(cl_weights_follower **out, const cl_weights_follower_opts *opts,
                            char *err, size_t errlen)
{
    *out = NULL;
    cl_weights_follower *f = calloc(1, sizeof *f);
    if (!f) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    f->o = *opts;
    for (int i = 0; i < MAX_PARTITIONS; i++)
        atomic_init(&f->next[i], -1);
    int rc = CL_OK;
    if (cl_strlcpy(f->topic, opts->topic, sizeof f->topic) != CL_OK ||
        cl_strlcpy(f->dlq_topic, opts->dlq_topic, sizeof f->dlq_topic) != CL_OK ||
        cl_strlcpy(f->lag_group, opts->lag_group ? opts->lag_group : "closedloop-snapshot",
                   sizeof f->lag_group) != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL, "weights topic or dlq topic name is too long");
    if (rc == CL_OK) rc = cl_weights_book_init(&f->book, cl_now_ms(), err, errlen);
    if (rc == CL_OK && !(f->scratch = malloc(sizeof *f->scratch)))
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    if (rc == CL_OK) {
        char subject[600];
        snprintf(subject, sizeof subject, "%s-value", f->topic);
        cl_avro_codec_opts co = {.registry = opts->registry, .subject = subject};
        rc = cl_avro_codec_new(&f->codec, opts->schemas, "closedloop.WeightConfig", &co, err,
                               errlen);
    }
    if (rc == CL_OK && opts->prom) {
        rc = cl_prom_counter(opts->prom, "closedloop_snapshot_weights_records_total",
                             "Records read from the weights topic, by what was done with them.",
                             (const char *[]){"result", NULL}, &f->m_records, err, errlen);
        if (rc == CL_OK)
            rc = cl_prom_gauge(opts->prom, "closedloop_snapshot_weights_version",
                               "Weight-config version the scorer applies, per model and status.",
                               (const char *[]){"model", "status", NULL}, &f->m_version, err,
                               errlen);
        if (rc == CL_OK) {
            f->collector = cl_prom_add_collector(opts->prom, lag_collector, f);
            if (f->collector < 0)
                rc = cl_seterr(err, errlen, f->collector, "registering the lag collector");
        }
    }
    if (rc != CL_OK) {
        cl_weights_follower_free(f);
        return rc;
    }
    export_versions(f);
    *out = f;
    return CL_OK;
}

void cl_weights_follower_free(cl_weights_follower *f)
{
    if (!f) return;
    if (f->collector > 0) cl_prom_remove_collector(f->o.prom, f->collector);
    if (f->consumer) {
        char err[CL_ERRLEN];
        cl_consumer_close(f->consumer, 5000, err, sizeof err);
    }
    cl_avro_codec_free(f->codec);
    cl_weights_book_free(&f->book);
    free(f->scratch);
    free(f);
}

const cl_weights_book *cl_weights_follower_book(const cl_weights_follower *f)
{
    return &f->book;
}

static void to_dlq(cl_weights_follower *f, const cl_message *m, const char *error)
{
    char where[640];
    snprintf(where, sizeof where, "%s [%" PRId32 "] offset %" PRId64, m->topic, m->partition,
             m->offset);
    cl_log(CL_LOG_ERROR, "weights_record_rejected",
           "source=\"%s\" error=\"%s\" action=dlq weights_in_force=unchanged", where, error);
    count(f, "dlq");
    char err[CL_ERRLEN];
    if (!f->o.dlq_producer || cl_kafka_dlq_send(f->o.dlq_producer, f->dlq_topic, m, "snapshot",
                                                error, NULL, err, sizeof err) != CL_OK)
        cl_log(CL_LOG_ERROR, "dlq_send_failed", "source=\"%s\" dlq=%s error=\"%s\"", where,
               f->dlq_topic, f->o.dlq_producer ? err : "no producer");
}

/* One record. CL_EAGAIN: the registry is unreachable; the caller rewinds to it. */
static int handle(cl_weights_follower *f, const cl_message *m, char *err, size_t errlen)
{
    if (m->partition >= 0 && m->partition < MAX_PARTITIONS)
        atomic_store(&f->next[m->partition], m->offset + 1);
    if (!m->value) {
        /* A tombstone deletes a key, and which versions a key stood for is the refit
         * worker's key design: versions end by REJECTED/RETIRED records, not here. */
        count(f, "tombstone");
        cl_log(CL_LOG_INFO, "weights_tombstone_ignored",
               "topic=%s partition=%" PRId32 " offset=%" PRId64, m->topic, m->partition, m->offset);
        return CL_OK;
    }
    avro_value_t *v;
    char e2[CL_ERRLEN];
    int rc = cl_avro_codec_decode(f->codec, m->value, m->value_len, &v, e2, sizeof e2);
    if (rc == CL_EAGAIN || rc == CL_ETIMEOUT || rc == CL_EIO)
        return cl_seterr(err, errlen, CL_EAGAIN, "%s [%" PRId32 "] offset %" PRId64 ": %s",
                         m->topic, m->partition, m->offset, e2);
    if (rc != CL_OK) {
        to_dlq(f, m, e2);
        return CL_OK;
    }
    if (cl_weight_config_from_avro(v, f->scratch, e2, sizeof e2) != CL_OK) {
        to_dlq(f, m, e2);
        return CL_OK;
    }
    cl_weights_effect effect;
    char why[256];
    rc = cl_weights_book_apply(&f->book, f->scratch, &effect, why, sizeof why, e2, sizeof e2);
    if (rc != CL_OK) {
        to_dlq(f, m, e2);
        return CL_OK;
    }
    count(f, effect == CL_WEIGHTS_IGNORED ? "ignored" : "applied");
    cl_log(effect == CL_WEIGHTS_IGNORED ? CL_LOG_INFO : CL_LOG_INFO, "weights_record",
           "model=%s version=%lld status=%s effect=%s offset=%" PRId64 " detail=\"%s\"",
           f->scratch->model, (long long)f->scratch->version,
           cl_model_status_name(f->scratch->status), cl_weights_effect_name(effect), m->offset,
           why);
    if (effect != CL_WEIGHTS_IGNORED) export_versions(f);
    return CL_OK;
}

int cl_weights_follower_poll(cl_weights_follower *f, int timeout_ms, char *err, size_t errlen)
{
    if (!f->consumer) return cl_seterr(err, errlen, CL_ERR, "weights follower not started");
    cl_message msgs[POLL_BATCH];
    size_t n;
    int rc = cl_consumer_poll(f->consumer, msgs, POLL_BATCH, &n, timeout_ms, err, errlen);
    if (rc != CL_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        char e2[CL_ERRLEN];
        if (handle(f, &msgs[i], e2, sizeof e2) == CL_EAGAIN) {
            cl_log(CL_LOG_WARN, "weights_decode_retry", "error=\"%s\"", e2);
            char e3[CL_ERRLEN];
            if (cl_consumer_seek(f->consumer, msgs[i].topic, msgs[i].partition, msgs[i].offset,
                                 5000, e3, sizeof e3) != CL_OK)
                cl_log(CL_LOG_ERROR, "weights_seek_failed", "error=\"%s\"", e3);
            /* Records after it in this batch are re-read after the rewind. */
            break;
        }
    }
    cl_messages_release(msgs, n);
    return CL_OK;
}

int cl_weights_follower_start(cl_weights_follower *f, int64_t deadline_ms, char *err, size_t errlen)
{
    const char *const topics[] = {f->topic};
    char last[CL_ERRLEN] = "";
    int waited_log = 0;
    while (!f->consumer) {
        if (cl_stop_requested())
            return cl_seterr(err, errlen, CL_ESTOP, "stopped while waiting for %s", f->topic);
        cl_consumer_opts co = {.topics = topics, .ntopics = 1, .read_to_end = 1};
        char e2[CL_ERRLEN];
        int rc = cl_consumer_new(f->o.cfg, &co, &f->consumer, e2, sizeof e2);
        if (rc == CL_OK) break;
        if (rc != CL_ENOTFOUND && rc != CL_EIO && rc != CL_ETIMEOUT)
            return cl_seterr(err, errlen, rc, "reading %s: %s", f->topic, e2);
        if (!waited_log || strcmp(last, e2) != 0)
            cl_log(CL_LOG_WARN, "weights_waiting", "topic=%s reason=\"%s\"", f->topic, e2);
        waited_log = 1;
        cl_strlcpy(last, e2, sizeof last);
        if (deadline_ms >= 0 && cl_mono_ms() >= deadline_ms)
            return cl_seterr(err, errlen, CL_ETIMEOUT,
                             "gave up waiting for the weights topic %s: %s", f->topic, e2);
        for (int i = 0; i < 10 && !cl_stop_requested(); i++)
            cl_sleep_ms(100);
    }
    while (!cl_consumer_at_end(f->consumer)) {
        if (cl_stop_requested())
            return cl_seterr(err, errlen, CL_ESTOP, "stopped while reading %s", f->topic);
        if (deadline_ms >= 0 && cl_mono_ms() >= deadline_ms)
            return cl_seterr(err, errlen, CL_ETIMEOUT,
                             "gave up reading the weights topic %s to its end (is the broker "
                             "reachable?)",
                             f->topic);
        int rc = cl_weights_follower_poll(f, 200, err, errlen);
        if (rc != CL_OK) return rc;
    }
    const cl_weight_config *act[CL_MAX_SCORES];
    size_t n, dropped;
    cl_weights_book_active(&f->book, NULL, act, CL_MAX_SCORES, &n, &dropped);
    if (f->book.n == 0 && !f->announced_seed) {
        f->announced_seed = 1;
        cl_log(CL_LOG_INFO, "weights_seed_in_force",
               "topic=%s detail=\"no weight config on the topic; the seed model %s v1 is the "
               "champion\"",
               f->topic, CL_SEED_MODEL);
    }
    for (size_t i = 0; i < n; i++)
        cl_log(CL_LOG_INFO, "weights_in_force", "model=%s version=%lld status=%s", act[i]->model,
               (long long)act[i]->version,
               act[i]->status == CL_MODEL_CHALLENGER ? "CHALLENGER" : "CHAMPION");
    return CL_OK;
}
