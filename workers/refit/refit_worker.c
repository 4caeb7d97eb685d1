/*
 * refit_worker.c — the Kafka loop around the training set, the refit and the trial.
 */
#include "refit_worker.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "prom.h"
#include "refit.h"
#include "registry.h"
#include "score.h"
#include "store.h"
#include "training_set.h"
#include "util.h"
#include "weights_log.h"

/* How long a cycle that is due may wait for the consumer to catch up (see the run loop). */
static const int64_t max_cycle_defer_ms = 300000;

const cl_option cl_refit_worker_options[] = {
    {"refit.model", CL_OPT_STRING, CL_SEED_MODEL,
     "Model name this worker refits (the key prefix on the weights topic)."},
    {"refit.min.new.outcomes", CL_OPT_INT, "100",
     "Run a refit (or judge the live challenger) after this many new outcomes.", 0, 1, 1e9},
    {"refit.schedule.hours", CL_OPT_DOUBLE, "24",
     "Also run a cycle this often when at least one new outcome arrived (0: off).", 0, 0, 1e6},
    {"refit.publish.seed", CL_OPT_BOOL, "true",
     "Publish the seed model as CHAMPION v1 when the weights topic has no champion."},
    {"refit.poll.max.records", CL_OPT_INT, "2000", "Records taken per poll of labeled.", 0, 1, 1e6},
    {"refit.publish.timeout.ms", CL_OPT_INT, "30000",
     "How long a cycle waits for the broker to acknowledge its weight records.", 0, 1000, 3.6e6},
    {"refit.exit.idle.ms", CL_OPT_INT, "0",
     "Exit after this long without input or work (0: never; batch runs and tests).", 0, 0, 1e9},
    {NULL},
};

struct cl_refit_worker {
    cl_config *cfg;
    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_training_set *ts;
    cl_avro_codec *labeled_codec;
    cl_avro_codec *weights_codec; /* encode (registry subject) */
    cl_avro_codec *follow_codec;  /* decode */
    cl_producer *producer;
    cl_consumer *consumer;
    cl_consumer *follower;
    cl_prom *prom;
    cl_http *http;
    int lag_collector;
    char t_labeled[256], t_weights[256], t_dlq[256];
    char model[CL_NAME_MAX + 1];
    cl_refit_options opts;
    cl_refit_option_storage opt_storage;
    cl_weights_state state;
    cl_weight_config *seed;
    cl_labeled_example *ex;
    int64_t min_new;
    int64_t schedule_ms;
    int publish_seed;
    size_t poll_max;
    int publish_timeout_ms;
    int64_t exit_idle_ms;
    int shutdown_ms;
    int64_t last_cycle_ms;
    int64_t retry_after_mono;
    int64_t last_activity_mono;
    int64_t behind_since_mono; /* first non-empty poll since the consumer was last caught up */
    struct {
        cl_prom_metric *records, *dlq, *fits, *trials, *published, *fit_seconds, *opps, *examples,
            *champion, *challenger, *auc, *pending, *last_processed;
    } m;
};

static void set_versions(cl_refit_worker *w)
{
    const cl_weight_config *ch = w->state.champion ? w->state.champion : w->seed;
    cl_prom_gauge_set(w->m.champion, NULL, (double)ch->version);
    cl_prom_gauge_set(w->m.challenger, NULL,
                      w->state.challenger ? (double)w->state.challenger->version : 0);
}

static int metrics_init(cl_refit_worker *w, char *err, size_t errlen)
{
    struct {
        const char *name, *help;
        const char *const *labels;
        cl_prom_metric **m;
        int gauge;
    } defs[] = {
        {"closedloop_refit_records_total",
         "Labeled records consumed, by effect on the training set.",
         (const char *[]){"effect", NULL}, &w->m.records, 0},
        {"closedloop_refit_dlq_total", "Labeled records sent to the dead-letter queue.", NULL,
         &w->m.dlq, 0},
        {"closedloop_refit_fits_total",
         "Refits run, by outcome (challenger, rejected, refused, no_model).",
         (const char *[]){"outcome", NULL}, &w->m.fits, 0},
        {"closedloop_refit_trials_total",
         "Evaluations of the live challenger's A/B trial, by decision.",
         (const char *[]){"decision", NULL}, &w->m.trials, 0},
        {"closedloop_refit_published_total", "WeightConfig records published, by status.",
         (const char *[]){"status", NULL}, &w->m.published, 0},
        {"closedloop_refit_last_fit_duration_seconds", "Duration of the last refit cycle.", NULL,
         &w->m.fit_seconds, 1},
        {"closedloop_refit_training_opportunities", "Opportunities in the training set.", NULL,
         &w->m.opps, 1},
        {"closedloop_refit_training_examples", "Labeled examples in the training set.", NULL,
         &w->m.examples, 1},
        {"closedloop_refit_champion_version", "Version of the current CHAMPION.", NULL,
         &w->m.champion, 1},
        {"closedloop_refit_challenger_version", "Version of the live CHALLENGER (0: none).", NULL,
         &w->m.challenger, 1},
        {"closedloop_refit_last_validation_auc",
         "Mean rolling-origin validation AUC of the last refit and of the champion on the same "
         "folds.",
         (const char *[]){"model", NULL}, &w->m.auc, 1},
        {"closedloop_refit_pending_outcomes", "New outcomes since the last cycle.", NULL,
         &w->m.pending, 1},
        {"closedloop_refit_last_processed_timestamp_seconds",
         "Kafka timestamp of the last labeled record processed.", NULL, &w->m.last_processed, 1},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        int rc = defs[i].gauge ? cl_prom_gauge(w->prom, defs[i].name, defs[i].help, defs[i].labels,
                                               defs[i].m, err, errlen)
                               : cl_prom_counter(w->prom, defs[i].name, defs[i].help,
                                                 defs[i].labels, defs[i].m, err, errlen);
        if (rc != CL_OK) return rc;
    }
    cl_prom_counter_add(w->m.dlq, NULL, 0);
    return CL_OK;
}

static void collect(cl_prom *reg, void *ud)
{
    cl_refit_worker *w = ud;
    cl_consumer_export_lag(w->consumer, reg);
}

static int topic_copy(cl_refit_worker *w, const char *name, char out[256], char *err, size_t errlen)
{
    if (cl_strlcpy(out, cl_config_topic(w->cfg, name), 256) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "topic name for '%s' is too long", name);
    return CL_OK;
}

int cl_refit_worker_new(cl_config *cfg, cl_refit_worker **out, char *err, size_t errlen)
{
    *out = NULL;
    cl_refit_worker *w = calloc(1, sizeof *w);
    if (!w) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    w->cfg = cfg;
    w->seed = malloc(sizeof *w->seed);
    w->ex = malloc(sizeof *w->ex);
    int rc = CL_OK;
    if (!w->seed || !w->ex) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = cl_refit_options_from(&w->opts, cfg, &w->opt_storage, err, errlen)) != CL_OK)
        goto fail;
    if (cl_strlcpy(w->model, cl_config_str(cfg, "refit.model"), sizeof w->model) != CL_OK ||
        !w->model[0]) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "refit.model: empty or longer than %d bytes",
                       CL_NAME_MAX);
        goto fail;
    }
    cl_weight_config_seed(w->seed, cl_now_ms());
    cl_strlcpy(w->seed->model, w->model, sizeof w->seed->model);
    cl_weights_state_init(&w->state, w->model);
    w->min_new = cl_config_int(cfg, "refit.min.new.outcomes");
    w->schedule_ms = (int64_t)(cl_config_double(cfg, "refit.schedule.hours") * 3600000.0);
    w->publish_seed = cl_config_bool(cfg, "refit.publish.seed");
    w->poll_max = (size_t)cl_config_int(cfg, "refit.poll.max.records");
    w->publish_timeout_ms = (int)cl_config_int(cfg, "refit.publish.timeout.ms");
    w->exit_idle_ms = cl_config_int(cfg, "refit.exit.idle.ms");
    w->shutdown_ms = (int)cl_config_int(cfg, "shutdown.timeout.ms");

    if ((rc = topic_copy(w, "labeled", w->t_labeled, err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "weights", w->t_weights, err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "dlq", w->t_dlq, err, errlen)) != CL_OK)
        goto fail;
    rc = cl_avro_schemas_load(cl_config_str(cfg, "avro.schema.dir"), &w->schemas, err, errlen);
    if (rc == CL_OK) rc = cl_registry_from_config(&w->registry, cfg, err, errlen);
    if (rc != CL_OK) goto fail;
    cl_avro_codec_opts in = {CL_AVRO_FRAMING_AUTO, w->registry, NULL, 0};
    char subject[300];
    snprintf(subject, sizeof subject, "%s-value", w->t_weights);
    cl_avro_codec_opts wo = {CL_AVRO_FRAMING_AUTO, w->registry, subject, 0};
    rc = cl_avro_codec_new(&w->labeled_codec, w->schemas, "closedloop.LabeledExample", &in, err,
                           errlen);
    if (rc == CL_OK)
        rc = cl_avro_codec_new(&w->weights_codec, w->schemas, "closedloop.WeightConfig", &wo, err,
                               errlen);
    if (rc == CL_OK)
        rc = cl_avro_codec_new(&w->follow_codec, w->schemas, "closedloop.WeightConfig", &in, err,
                               errlen);
    if (rc != CL_OK) goto fail;

    cl_store_config sc;
    rc = cl_store_config_from(&sc, cfg, err, errlen);
    if (rc == CL_OK)
        rc = cl_training_set_open(&w->ts, cl_config_str(cfg, "state.dir"), &sc, w->schemas, err,
                                  errlen);
    if (rc != CL_OK) goto fail;

    w->prom = cl_prom_new();
    if (!w->prom) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = metrics_init(w, err, errlen)) != CL_OK ||
        (rc = cl_store_export_prom(cl_training_set_store(w->ts), w->prom, "refit", err, errlen)) !=
            CL_OK)
        goto fail;
    w->lag_collector = cl_prom_add_collector(w->prom, collect, w);

    cl_producer_opts po = {NULL, cl_weights_on_delivery, w, NULL};
    if ((rc = cl_producer_new(cfg, &po, &w->producer, err, errlen)) != CL_OK) goto fail;
    const char *topics[1] = {w->t_labeled};
    cl_consumer_opts co = {0};
    co.topics = topics;
    co.ntopics = 1;
    if ((rc = cl_consumer_new(cfg, &co, &w->consumer, err, errlen)) != CL_OK) goto fail;
    const char *wtopics[1] = {w->t_weights};
    cl_consumer_opts fo = {0};
    fo.topics = wtopics;
    fo.ntopics = 1;
    fo.read_to_end = 1;
    fo.client_id = "closedloop-refit-weights";
    if ((rc = cl_consumer_new(cfg, &fo, &w->follower, err, errlen)) != CL_OK) goto fail;

    cl_http_config hc = {cl_config_str(cfg, "http.listen"), w->prom, 0, 0, 0};
    if ((rc = cl_http_start(&w->http, &hc, err, errlen)) != CL_OK) goto fail;
    cl_http_set_health(w->http, 0, "starting: reading the weights topic");
    set_versions(w);
    cl_log(CL_LOG_INFO, "refit_started",
           "model=%s labeled=%s weights=%s state_dir=%s http_port=%u min_new_outcomes=%" PRId64,
           w->model, w->t_labeled, w->t_weights, cl_config_str(cfg, "state.dir"),
           (unsigned)cl_http_port(w->http), w->min_new);
    *out = w;
    return CL_OK;
fail:
    cl_refit_worker_free(w);
    return rc;
}

void cl_refit_worker_free(cl_refit_worker *w)
{
    if (!w) return;
    char err[CL_ERRLEN];
    if (w->consumer) cl_consumer_close(w->consumer, w->shutdown_ms, err, sizeof err);
    if (w->follower) cl_consumer_close(w->follower, w->shutdown_ms, err, sizeof err);
    if (w->producer) cl_producer_close(w->producer, w->shutdown_ms, err, sizeof err);
    cl_http_stop(w->http);
    if (w->prom && w->lag_collector > 0) cl_prom_remove_collector(w->prom, w->lag_collector);
    cl_training_set_close(w->ts);
    cl_prom_free(w->prom);
    cl_avro_codec_free(w->labeled_codec);
    cl_avro_codec_free(w->weights_codec);
    cl_avro_codec_free(w->follow_codec);
    cl_registry_free(w->registry);
    cl_avro_schemas_free(w->schemas);
    cl_weights_state_free(&w->state);
    free(w->seed);
    free(w->ex);
    free(w);
}

/* ---- weights ---------------------------------------------------------------------- */

/* Applies what the follower has; with wait_ms > 0, until it is at the topic's end. */
static int follow_weights(cl_refit_worker *w, int wait_ms, char *err, size_t errlen)
{
    int64_t deadline = cl_mono_ms() + wait_ms;
    cl_weight_config *c = malloc(sizeof *c);
    if (!c) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int rc = CL_OK;
    cl_message msgs[32];
    for (;;) {
        size_t n = 0;
        rc = cl_consumer_poll(w->follower, msgs, 32, &n, wait_ms > 0 ? 100 : 0, err, errlen);
        for (size_t i = 0; i < n && rc == CL_OK; i++) {
            char derr[CL_ERRLEN];
            if (!msgs[i].value) continue;
            if (cl_weights_decode(w->follow_codec, msgs[i].value, msgs[i].value_len, c, derr,
                                  sizeof derr) != CL_OK) {
                cl_log(CL_LOG_WARN, "weights_record_skipped",
                       "topic=%s partition=%d offset=%" PRId64 " error=\"%s\"", msgs[i].topic,
                       (int)msgs[i].partition, msgs[i].offset, derr);
                continue;
            }
            int applied;
            rc = cl_weights_state_apply(&w->state, c, &applied, err, errlen);
            if (rc == CL_OK && applied)
                cl_log(CL_LOG_INFO, "weights_record", "model=%s version=%" PRId64 " status=%s",
                       c->model, c->version, cl_model_status_name(c->status));
        }
        cl_messages_release(msgs, n);
        if (rc != CL_OK || wait_ms <= 0) break;
        if (cl_consumer_at_end(w->follower) && n == 0) break;
        if (cl_mono_ms() > deadline) {
            rc = cl_seterr(err, errlen, CL_ETIMEOUT,
                           "topic %s: not read to its end within %d ms (broker up? topic "
                           "created?)",
                           w->t_weights, wait_ms);
            break;
        }
        if (cl_stop_requested()) {
            rc = CL_ESTOP;
            break;
        }
    }
    free(c);
    set_versions(w);
    return rc;
}

static int publish(cl_refit_worker *w, cl_weight_config *const *configs, size_t n, char *err,
                   size_t errlen)
{
    int rc = cl_weights_publish(w->producer, w->weights_codec, w->t_weights, configs, n,
                                w->publish_timeout_ms, err, errlen);
    if (rc != CL_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        int applied;
        cl_prom_counter_add(w->m.published,
                            (const char *[]){cl_model_status_name(configs[i]->status)}, 1);
        cl_log(CL_LOG_INFO, "weights_published",
               "model=%s version=%" PRId64 " status=%s reason=\"%s\"", configs[i]->model,
               configs[i]->version, cl_model_status_name(configs[i]->status), configs[i]->reason);
        rc = cl_weights_state_apply(&w->state, configs[i], &applied, err, errlen);
        if (rc != CL_OK) return rc;
    }
    set_versions(w);
    return CL_OK;
}

static int ensure_champion(cl_refit_worker *w, char *err, size_t errlen)
{
    if (w->state.champion || !w->publish_seed) return CL_OK;
    cl_weight_config *seed = malloc(sizeof *seed);
    if (!seed) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    *seed = *w->seed;
    seed->created_at = cl_now_ms();
    /* v1 unless a record already uses it: a seed above a live challenger's version would
     * end that challenger without a verdict. */
    const cl_weight_config *known[3] = {w->state.challenger, w->state.last, w->state.retired};
    for (int i = 0; i < 3; i++)
        if (known[i] && known[i]->version == seed->version)
            seed->version = w->state.max_version + 1;
    snprintf(seed->reason, sizeof seed->reason,
             "seed model (SPEC section 3): the weights topic had no champion for %s", w->model);
    int rc = publish(w, &seed, 1, err, errlen);
    free(seed);
    return rc;
}

/* ---- input ------------------------------------------------------------------------ */

static int dlq(cl_refit_worker *w, const cl_message *m, const char *why, char *err, size_t errlen)
{
    cl_log(CL_LOG_WARN, "labeled_record_dlq",
           "topic=%s partition=%d offset=%" PRId64 " error=\"%s\"", m->topic, (int)m->partition,
           m->offset, why);
    cl_prom_counter_add(w->m.dlq, NULL, 1);
    return cl_kafka_dlq_send(w->producer, w->t_dlq, m, "refit", why, NULL, err, errlen);
}

/* One record into batch b. CL_EAGAIN: retry this record later (registry unreachable). */
static int process(cl_refit_worker *w, cl_store_txn *b, const cl_message *m, char *err,
                   size_t errlen)
{
    char key[CL_ID_MAX + 1];
    char derr[CL_ERRLEN];
    if (!m->key || m->key_len == 0 || m->key_len > CL_ID_MAX || memchr(m->key, 0, m->key_len))
        return dlq(w, m, "record key is not an opportunity id (null, empty, too long or binary)",
                   err, errlen);
    memcpy(key, m->key, m->key_len);
    key[m->key_len] = '\0';
    const cl_labeled_example *ex = NULL;
    if (m->value) {
        avro_value_t *v;
        int rc =
            cl_avro_codec_decode(w->labeled_codec, m->value, m->value_len, &v, derr, sizeof derr);
        if (rc == CL_EAGAIN || rc == CL_ETIMEOUT || rc == CL_EIO)
            return cl_seterr(err, errlen, CL_EAGAIN, "%s", derr);
        if (rc == CL_OK) rc = cl_labeled_example_from_avro(v, w->ex, derr, sizeof derr);
        if (rc != CL_OK) return dlq(w, m, derr, err, errlen);
        ex = w->ex;
    }
    cl_ts_effect effect;
    int rc = cl_training_set_apply(w->ts, b, key, ex, &effect, derr, sizeof derr);
    if (rc == CL_EINVAL) return dlq(w, m, derr, err, errlen);
    if (rc != CL_OK) return cl_seterr(err, errlen, rc, "training set: %s", derr);
    cl_prom_counter_add(w->m.records, (const char *[]){cl_ts_effect_name(effect)}, 1);
    if (m->timestamp_ms >= 0)
        cl_prom_gauge_set(w->m.last_processed, NULL, (double)m->timestamp_ms / 1000.0);
    return CL_OK;
}

static int consume(cl_refit_worker *w, cl_message *msgs, size_t *got, char *err, size_t errlen)
{
    size_t n = 0;
    int rc = cl_consumer_poll(w->consumer, msgs, w->poll_max, &n, 500, err, errlen);
    *got = n;
    if (rc != CL_OK || n == 0) return rc;
    cl_store_txn *b;
    rc = cl_store_batch_begin(cl_training_set_store(w->ts), &b, err, errlen);
    if (rc != CL_OK) {
        cl_messages_release(msgs, n);
        return rc;
    }
    size_t done = 0;
    int retry = 0;
    for (; done < n && rc == CL_OK; done++) {
        rc = process(w, b, &msgs[done], err, errlen);
        if (rc == CL_EAGAIN) {
            retry = 1;
            break;
        }
    }
    if (rc != CL_OK && !retry) {
        cl_store_batch_abort(b);
        cl_messages_release(msgs, n);
        return rc;
    }
    char cerr[CL_ERRLEN];
    int crc = cl_store_batch_commit(b, cerr, sizeof cerr);
    if (crc != CL_OK) {
        cl_messages_release(msgs, n);
        return cl_seterr(err, errlen, crc, "training set commit: %s", cerr);
    }
    /* Offsets only after the state that came from them is durable. On a retry, the
     * failing partition is rewound; records after it in this poll are read again. */
    for (size_t i = 0; i < done; i++)
        cl_consumer_store(w->consumer, &msgs[i], NULL, 0);
    if (retry) {
        cl_log(CL_LOG_WARN, "labeled_record_retry", "error=\"%s\"", err);
        /* Rewind every partition to its first record not processed in this poll. */
        for (size_t i = done; i < n; i++) {
            int first = 1;
            for (size_t j = done; j < i && first; j++)
                first = msgs[j].partition != msgs[i].partition;
            if (first)
                cl_consumer_seek(w->consumer, msgs[i].topic, msgs[i].partition, msgs[i].offset,
                                 5000, NULL, 0);
        }
        cl_sleep_ms(500);
    }
    cl_consumer_commit(w->consumer, 1, NULL, 0);
    cl_messages_release(msgs, n);
    return CL_OK;
}

/* ---- the cycle -------------------------------------------------------------------- */

/* The pending counter (one LMDB get) and the examples gauge (LMDB's entry count as of
 * the last commit). The number of opportunities needs a scan, so it is refreshed only
 * at start and when a cycle loads the rows. */
static int update_counts(cl_refit_worker *w, uint64_t *pending, char *err, size_t errlen)
{
    cl_store_txn *t;
    int rc = cl_store_read_begin(cl_training_set_store(w->ts), &t, err, errlen);
    if (rc != CL_OK) return rc;
    rc = cl_training_set_pending(t, pending, err, errlen);
    int64_t last = 0;
    if (rc == CL_OK && cl_training_set_meta_get_i64(t, "last_cycle_ms", &last, NULL, 0) == CL_OK)
        w->last_cycle_ms = last;
    cl_store_read_end(t);
    cl_store_stats st;
    cl_store_stats_get(cl_training_set_store(w->ts), &st);
    cl_prom_gauge_set(w->m.pending, NULL, (double)*pending);
    cl_prom_gauge_set(w->m.examples, NULL, (double)st.entries[CL_TS_DB_EXAMPLES]);
    return rc;
}

static int count_opportunities(cl_refit_worker *w, char *err, size_t errlen)
{
    cl_store_txn *t;
    int rc = cl_store_read_begin(cl_training_set_store(w->ts), &t, err, errlen);
    if (rc != CL_OK) return rc;
    uint64_t opps = 0, examples = 0;
    rc = cl_training_set_counts(t, &opps, &examples, err, errlen);
    cl_store_read_end(t);
    if (rc == CL_OK) {
        cl_prom_gauge_set(w->m.opps, NULL, (double)opps);
        cl_prom_gauge_set(w->m.examples, NULL, (double)examples);
    }
    return rc;
}

static int cycle_done(cl_refit_worker *w, char *err, size_t errlen)
{
    cl_store_txn *b;
    int rc = cl_store_batch_begin(cl_training_set_store(w->ts), &b, err, errlen);
    if (rc != CL_OK) return rc;
    w->last_cycle_ms = cl_now_ms();
    rc = cl_training_set_reset_pending(b, err, errlen);
    if (rc == CL_OK)
        rc = cl_training_set_meta_put_i64(b, "last_cycle_ms", w->last_cycle_ms, err, errlen);
    if (rc != CL_OK) {
        cl_store_batch_abort(b);
        return rc;
    }
    return cl_store_batch_commit(b, err, errlen);
}

static int run_trial(cl_refit_worker *w, const cl_training_rows *rows, char *err, size_t errlen)
{
    cl_trial_result tr;
    int rc = cl_refit_evaluate_trial(rows, &w->opts, &tr, err, errlen);
    if (rc != CL_OK) return rc;
    int64_t age_days = (cl_now_ms() - w->state.challenger->created_at) / 86400000LL;
    if (tr.decision == CL_TRIAL_WAIT && age_days >= w->opts.max_trial_days) {
        /* The trial measures time on close dates, which only advance with paired outcomes;
         * without them (no shadow scores: is the snapshot worker following the weights
         * topic?) it would block every refit forever. Wall-clock age ends it too. */
        tr.decision = CL_TRIAL_REJECT;
        char why[CL_REASON_MAX + 1];
        snprintf(why, sizeof why,
                 "trial expired after %" PRId64 " days (refit.max.trial.days=%d) without a "
                 "verdict; check that snapshots carry shadow scores of v%" PRId64 ": %.700s",
                 age_days, (int)w->opts.max_trial_days, w->state.challenger->version, tr.reason);
        cl_strlcpy(tr.reason, why, sizeof tr.reason);
    }
    cl_prom_counter_add(w->m.trials, (const char *[]){cl_trial_decision_name(tr.decision)}, 1);
    cl_log(CL_LOG_INFO, "trial_evaluated",
           "model=%s challenger=%" PRId64 " decision=%s paired=%zu reason=\"%s\"", w->model,
           w->state.challenger->version, cl_trial_decision_name(tr.decision), tr.n_paired,
           tr.reason);
    if (tr.decision == CL_TRIAL_WAIT) return CL_OK;
    cl_champion_comparison cmp = {0};
    const cl_weight_config *champ = w->state.champion ? w->state.champion : w->seed;
    cmp.champion_version = champ->version;
    cmp.delta_auc = tr.have_delong ? tr.delong.delta : 0;
    cmp.p_value = tr.have_delong && isfinite(tr.delong.p_value) ? tr.delong.p_value : 1;
    cmp.n_paired = (int64_t)tr.n_paired;
    cmp.delta_precision_at_high =
        (cl_opt_double){true, tr.precision_challenger - tr.precision_champion};
    cl_weight_config *out[2] = {malloc(sizeof(cl_weight_config)), malloc(sizeof(cl_weight_config))};
    if (!out[0] || !out[1]) {
        free(out[0]);
        free(out[1]);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    size_t n = 0;
    if (tr.decision == CL_TRIAL_PROMOTE) {
        rc = cl_weights_promotion(&w->state, &cmp, tr.reason, cl_now_ms(), out, &n, err, errlen);
    } else {
        rc = cl_weights_rejection(&w->state, &cmp, tr.reason, cl_now_ms(), out[0], err, errlen);
        n = 1;
    }
    if (rc == CL_OK) rc = publish(w, out, n, err, errlen);
    free(out[0]);
    free(out[1]);
    return rc;
}

static int run_refit(cl_refit_worker *w, const cl_training_rows *rows,
                     const cl_weight_config *champ, char *err, size_t errlen)
{
    int64_t version =
        (w->state.max_version > champ->version ? w->state.max_version : champ->version) + 1;
    cl_refit_result res;
    int rc = cl_refit_run(rows, champ, &w->opts, version, cl_now_ms(), &res, err, errlen);
    if (rc != CL_OK) return rc;
    cl_prom_counter_add(w->m.fits, (const char *[]){cl_refit_outcome_name(res.outcome)}, 1);
    if (res.folds_evaluated > 0) {
        cl_prom_gauge_set(w->m.auc, (const char *[]){"refit"}, res.challenger_cv.auc);
        cl_prom_gauge_set(w->m.auc, (const char *[]){"champion"}, res.champion_cv.auc);
    }
    for (size_t f = 0; f < res.n_factors; f++)
        cl_log(CL_LOG_INFO, "factor_evidence",
               "factor=%s gain_auc=%.5f null_gain_auc=%.5f gain_log_loss=%.6f "
               "null_gain_log_loss=%.6f adopted=%d",
               res.factors[f].name, res.factors[f].gain_auc, res.factors[f].null_gain_auc,
               res.factors[f].gain_log_loss, res.factors[f].null_gain_log_loss,
               res.factors[f].adopted);
    cl_log(res.config ? CL_LOG_INFO : CL_LOG_WARN, "refit_result",
           "model=%s outcome=%s examples=%zu opportunities=%zu won=%zu lost=%zu reason=\"%s\"",
           w->model, cl_refit_outcome_name(res.outcome), res.n_examples, res.n_opps, res.n_won,
           res.n_lost, res.reason);
    if (res.config) rc = publish(w, &res.config, 1, err, errlen);
    cl_refit_result_free(&res);
    return rc;
}

static int cycle(cl_refit_worker *w, char *err, size_t errlen)
{
    int64_t t0 = cl_mono_ns();
    /* Decide on the latest state of the topic (an operator may have promoted). */
    int rc = follow_weights(w, 10000, err, errlen);
    if (rc != CL_OK) return rc;
    const cl_weight_config *champ = w->state.champion ? w->state.champion : w->seed;
    const char *cat[CL_ROWS_MAX_SOURCES], *num[CL_ROWS_MAX_SOURCES];
    cl_rows_spec spec;
    rc = cl_refit_rows_spec(&w->opts, champ, w->state.challenger, &spec, cat, num, err, errlen);
    if (rc != CL_OK) return rc;
    cl_training_rows rows;
    size_t skipped = 0;
    rc = cl_training_rows_load(w->ts, &spec, &rows, &skipped, err, errlen);
    if (rc != CL_OK) return rc;
    if (skipped) cl_log(CL_LOG_WARN, "training_examples_skipped", "count=%zu", skipped);
    cl_prom_gauge_set(w->m.opps, NULL, (double)rows.n_opps);
    cl_prom_gauge_set(w->m.examples, NULL, (double)rows.n);
    rc = w->state.challenger ? run_trial(w, &rows, err, errlen)
                             : run_refit(w, &rows, champ, err, errlen);
    cl_training_rows_free(&rows);
    cl_prom_gauge_set(w->m.fit_seconds, NULL, (double)(cl_mono_ns() - t0) / 1e9);
    if (rc != CL_OK) return rc;
    return cycle_done(w, err, errlen);
}

static int maybe_cycle(cl_refit_worker *w, int *ran, char *err, size_t errlen)
{
    *ran = 0;
    uint64_t pending = 0;
    int rc = update_counts(w, &pending, err, errlen);
    if (rc != CL_OK) return rc;
    if (pending == 0 || cl_mono_ms() < w->retry_after_mono) return CL_OK;
    int due = (int64_t)pending >= w->min_new ||
              (w->schedule_ms > 0 && cl_now_ms() - w->last_cycle_ms >= w->schedule_ms);
    if (!due) return CL_OK;
    *ran = 1;
    cl_log(CL_LOG_INFO, "refit_cycle", "model=%s new_outcomes=%" PRIu64, w->model, pending);
    char cerr[CL_ERRLEN];
    rc = cycle(w, cerr, sizeof cerr);
    if (rc == CL_ENOMEM || rc == CL_EFULL || rc == CL_ESTOP)
        return cl_seterr(err, errlen, rc, "refit cycle: %s", cerr);
    if (rc != CL_OK) {
        /* Publishing or reading the topic failed: nothing was reset, try again later. */
        cl_log(CL_LOG_ERROR, "refit_cycle_failed", "model=%s error=\"%s\" retry_in_s=30", w->model,
               cerr);
        cl_http_set_health(w->http, 0, cerr);
        w->retry_after_mono = cl_mono_ms() + 30000;
        return CL_OK;
    }
    cl_http_set_health(w->http, 1, NULL);
    return update_counts(w, &pending, err, errlen);
}

int cl_refit_worker_run(cl_refit_worker *w, char *err, size_t errlen)
{
    int rc = follow_weights(w, 30000, err, errlen);
    if (rc == CL_OK) rc = ensure_champion(w, err, errlen);
    if (rc == CL_OK) rc = count_opportunities(w, err, errlen);
    if (rc == CL_ESTOP) return CL_OK;
    if (rc != CL_OK) return rc;
    cl_http_set_health(w->http, 1, NULL);
    cl_message *msgs = calloc(w->poll_max, sizeof *msgs);
    if (!msgs) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    w->last_activity_mono = cl_mono_ms();
    while (!cl_stop_requested()) {
        size_t n = 0;
        rc = consume(w, msgs, &n, err, errlen);
        if (rc == CL_OK) rc = follow_weights(w, 0, err, errlen);
        /* A cycle is decided only once the consumer has caught up with `labeled` (every
         * assigned partition read to its end), not in the middle of a backlog: an empty
         * poll is not enough (a fetch slower than the poll's wait returns nothing with a
         * backlog on the broker). Otherwise the training set of a
         * cycle would end wherever a poll batch happened to end, so a restart behind a
         * backlog fitted (and published a challenger that blocks every later refit) on a
         * prefix of what was already on the topic, and two replays of the same input
         * published different weights. A stream that never drains still cycles after
         * max_cycle_defer_ms. */
        int caught_up = n == 0 && cl_consumer_at_end(w->consumer);
        if (!caught_up && w->behind_since_mono == 0) w->behind_since_mono = cl_mono_ms();
        if (caught_up) w->behind_since_mono = 0;
        int ran = 0;
        if (rc == CL_OK &&
            (caught_up || cl_mono_ms() - w->behind_since_mono >= max_cycle_defer_ms))
            rc = maybe_cycle(w, &ran, err, errlen);
        if (rc != CL_OK) break;
        if (n > 0 || ran) w->last_activity_mono = cl_mono_ms();
        /* Idle means caught up and nothing to do: time spent waiting for the group to
         * assign partitions (a rebalance after a crashed member can take a session
         * timeout) is not idleness, or a one-shot run would exit without its cycle. */
        if (w->exit_idle_ms > 0 && caught_up &&
            cl_mono_ms() - w->last_activity_mono >= w->exit_idle_ms) {
            cl_log(CL_LOG_INFO, "refit_idle_exit", "idle_ms=%" PRId64, w->exit_idle_ms);
            break;
        }
        cl_producer_poll(w->producer, 0);
    }
    free(msgs);
    if (rc == CL_ESTOP) rc = CL_OK;
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "refit_failed", "error=\"%s\"", err);
        cl_http_set_health(w->http, 0, err);
    }
    return rc;
}
