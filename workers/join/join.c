/*
 * join.c — the closedloop-join worker loop; see join.h for the contract and
 * docs/join.md for the design.
 *
 * LMDB layout (databases of the store in state.dir):
 *   state       (u32 partition, str opportunity_id) -> join_state binary form
 *   timers      (u32 partition, i64 deadline, str opportunity_id) -> kind (1 byte)
 *   partitions  (u32 partition) -> partition record: next offset of snapshots and of
 *               outcomes, their watermarks (max data time seen)
 * A partition record exists only for a partition whose state is complete: a restore
 * deletes it first and writes it last.
 */
#include "join.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"
#include "http.h"
#include "join_state.h"
#include "kafka.h"
#include "log.h"
#include "prom.h"
#include "records.h"
#include "registry.h"
#include "store.h"
#include "util.h"

enum { DB_STATE = 0, DB_TIMERS, DB_PARTITIONS };
static const char *const db_names[] = {"state", "timers", "partitions", NULL};

enum { T_SNAPSHOTS = 0, T_OUTCOMES = 1 };

#define PARTITIONS_MAX 65536
#define META_FORMAT 1
#define META_LEN 33
#define TIMERS_PER_PASS 20000
#define FLUSH_TIMEOUT_MS 60000

const cl_option cl_join_options[] = {
    {"join.snapshots.max", CL_OPT_INT, "64",
     "Snapshots kept per opportunity (the newest by snapshot_time).", 0, 1,
     CL_JOIN_SNAPSHOTS_HARD_MAX},
    {"join.snapshots.max.age.days", CL_OPT_INT, "730",
     "Drop snapshots this many days older than the opportunity's newest (0: no limit).", 0, 0,
     100000},
    {"join.open.expiry.days", CL_OPT_INT, "365",
     "Expire (drop and count) the snapshots of an opportunity still open this many days "
     "after its newest snapshot, by the partition watermark (0: never).",
     0, 0, 100000},
    {"join.unscored.after.days", CL_OPT_INT, "30",
     "Count an outcome as unscored when no snapshot joined it this many days after its "
     "version, by the partition watermark (0: never).",
     0, 0, 100000},
    {"join.poll.max.records", CL_OPT_INT, "1000", "Records taken per consumer poll.", 0, 1, 100000},
    {"join.restore.records.per.poll", CL_OPT_INT, "5000",
     "Changelog records restored between two polls of the group consumer.", 0, 1, 1000000},
    {"join.exit.idle.ms", CL_OPT_INT, "0",
     "Exit once every assigned partition is at its end and idle this long (0: run until "
     "signalled; tests and benchmarks).",
     0, 0, 86400000},
    {NULL},
};

typedef struct {
    int64_t next[2]; /* next offset per input topic; -1: from the beginning */
    int64_t wm[2];   /* max data time seen per input topic; INT64_MIN: none */
} part_meta;

typedef struct {
    int assigned[2];
    int restoring;
    int paused;
    int have_meta;
    part_meta meta;
    part_meta committed;        /* meta as of the last LMDB commit (rewind target) */
    int dirty;                  /* meta changed in the open batch */
    int timers_pending;         /* due timers left over by the last pass */
    int restore_commit_pending; /* restored; its partition record is not committed yet */
    /* restore */
    int64_t restore_end;
    int64_t restore_pos;
    int restore_meta_seen;
    part_meta restore_meta;
    uint64_t restored;
    int64_t last_record_mono;
} join_partition;

struct cl_join_worker {
    cl_config *cfg;
    cl_join_policy policy;
    char t_in[2][256], t_labeled[256], t_dlq[256], t_changelog[256];
    const char *group;
    size_t poll_max;
    int64_t restore_per_poll;
    int64_t exit_idle_ms;
    int shutdown_ms;

    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_avro_codec *in_codec[2];    /* decode inputs (either framing) */
    cl_avro_codec *store_codec[2]; /* single-object payloads kept in the state */
    cl_avro_codec *labeled_codec;

    cl_store *store;
    cl_store_txn *txn;
    cl_consumer *consumer;
    cl_producer *producer;
    rd_kafka_t *restorer; /* group-less consumer reading join-changelog */
    cl_prom *prom;
    cl_http *http;

    join_partition *parts;
    size_t nparts;
    int restoring_count;

    uint64_t delivery_failures;
    uint64_t failures_at_batch_start;
    char last_delivery_error[256];

    cl_join_emits emits;
    cl_buf buf, buf2;
    cl_snapshot *snap;
    cl_outcome *outcome;
    cl_labeled_example *example;
    int64_t last_activity_mono;
    int64_t last_idle_commit_mono; /* last re-commit of stored offsets while idle */
    int fatal;
    char fatal_err[CL_ERRLEN];
    int broker_healthy; /* last value given to /healthz */

    struct {
        cl_prom_metric *in, *out, *joined, *retracted, *excluded, *expired, *unscored, *waiting,
            *duplicates, *stale, *evicted, *dlq, *commit_seconds, *restore_remaining, *restored,
            *restoring, *last_processed, *waiting_opps, *batches_aborted;
    } m;
    int lag_collector;
};

/* ---- small helpers ---------------------------------------------------------------- */

static join_partition *part_get(cl_join_worker *w, int32_t p)
{
    if (p < 0 || p >= PARTITIONS_MAX) return NULL;
    if ((size_t)p >= w->nparts) {
        size_t n = (size_t)p + 1;
        join_partition *np = realloc(w->parts, n * sizeof *np);
        if (!np) return NULL;
        memset(np + w->nparts, 0, (n - w->nparts) * sizeof *np);
        w->parts = np;
        w->nparts = n;
    }
    return &w->parts[p];
}

static void meta_init(part_meta *m)
{
    m->next[0] = m->next[1] = -1;
    m->wm[0] = m->wm[1] = INT64_MIN;
}

static void meta_encode(const part_meta *m, uint8_t out[META_LEN])
{
    out[0] = META_FORMAT;
    int64_t v[4] = {m->next[0], m->next[1], m->wm[0], m->wm[1]};
    for (int i = 0; i < 4; i++)
        cl_store_u64_be(out + 1 + 8 * i, (uint64_t)v[i]);
}

static int meta_decode(const void *data, size_t len, part_meta *m)
{
    const uint8_t *p = data;
    if (len != META_LEN || p[0] != META_FORMAT) return CL_EINVAL;
    m->next[0] = (int64_t)cl_store_be_u64(p + 1);
    m->next[1] = (int64_t)cl_store_be_u64(p + 9);
    m->wm[0] = (int64_t)cl_store_be_u64(p + 17);
    m->wm[1] = (int64_t)cl_store_be_u64(p + 25);
    if (m->next[0] < -1 || m->next[1] < -1) return CL_EINVAL;
    return CL_OK;
}

static void key_part(cl_store_key *k, uint32_t p)
{
    cl_store_key_init(k);
    cl_store_key_u32(k, p);
}

static void key_state(cl_store_key *k, uint32_t p, const char *opp, size_t len)
{
    key_part(k, p);
    cl_store_key_str(k, opp, len);
}

static void key_timer(cl_store_key *k, uint32_t p, int64_t at, const char *opp)
{
    key_part(k, p);
    cl_store_key_i64(k, at);
    cl_store_key_str(k, opp, strlen(opp));
}

static void count(cl_prom_metric *m, double v)
{
    if (v > 0) cl_prom_counter_add(m, NULL, v);
}

static void add_counts(cl_join_worker *w, const cl_join_counts *c)
{
    count(w->m.joined, (double)c->joined);
    count(w->m.retracted, (double)c->retracted);
    count(w->m.excluded, (double)c->excluded);
    count(w->m.expired, (double)c->expired);
    count(w->m.unscored, (double)c->unscored);
    count(w->m.waiting, (double)c->waiting);
    count(w->m.duplicates, (double)c->duplicates);
    count(w->m.stale, (double)c->stale);
    count(w->m.evicted, (double)c->evicted);
}

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset, const char *reason, void *ud)
{
    (void)opaque;
    (void)offset;
    cl_join_worker *w = ud;
    if (status == CL_OK) return;
    w->delivery_failures++;
    snprintf(w->last_delivery_error, sizeof w->last_delivery_error, "%s [%" PRId32 "]: %s",
             topic ? topic : "?", partition, reason ? reason : cl_status_name(status));
}

/* Sends with the wrapper's delivery reports; waits for queue space while the broker
 * drains it (the batch is flushed before commit anyway). */
static int send_record(cl_join_worker *w, const char *topic, const char *key, size_t klen,
                       const void *val, size_t vlen, char *err, size_t errlen)
{
    int rc = cl_producer_send(w->producer, topic, key, klen, val, vlen, NULL, 0, NULL, 30000, err,
                              errlen);
    if (rc == CL_OK) cl_prom_counter_add(w->m.out, (const char *[]){topic}, 1);
    return rc;
}

/* The changelog is written to the partition of the state it mirrors, whatever the key
 * hashes to, so a restore of partition P reads changelog partition P only. */
static int send_changelog(cl_join_worker *w, int32_t partition, const char *key, size_t klen,
                          const void *val, size_t vlen, char *err, size_t errlen)
{
    int rc = cl_producer_send_partition(w->producer, w->t_changelog, partition, key, klen, val,
                                        val ? vlen : 0, NULL, 0, NULL, 30000, err, errlen);
    if (rc == CL_OK) cl_prom_counter_add(w->m.out, (const char *[]){w->t_changelog}, 1);
    return rc;
}

/* ---- batches ---------------------------------------------------------------------- */

static int batch_open(cl_join_worker *w, char *err, size_t errlen)
{
    if (w->txn) return CL_OK;
    w->failures_at_batch_start = w->delivery_failures;
    return cl_store_batch_begin(w->store, &w->txn, err, errlen);
}

/* Rewinds every partition to what LMDB holds after an aborted batch. */
static void batch_rewind(cl_join_worker *w)
{
    for (size_t i = 0; i < w->nparts; i++) {
        join_partition *p = &w->parts[i];
        if (!p->dirty) continue;
        p->meta = p->committed;
        p->dirty = 0;
        for (int t = 0; t < 2; t++) {
            if (!p->assigned[t] || p->restoring) continue;
            int64_t off = p->meta.next[t] >= 0 ? p->meta.next[t] : CL_KAFKA_OFFSET_BEGINNING;
            char err[CL_ERRLEN];
            if (cl_consumer_seek(w->consumer, w->t_in[t], (int32_t)i, off, 5000, err, sizeof err) !=
                CL_OK)
                cl_log(CL_LOG_WARN, "rewind_failed", "topic=%s partition=%zu error=\"%s\"",
                       w->t_in[t], i, err);
        }
    }
}

static void batch_abort(cl_join_worker *w, const char *why)
{
    if (!w->txn) return;
    cl_store_batch_abort(w->txn);
    w->txn = NULL;
    cl_prom_counter_add(w->m.batches_aborted, NULL, 1);
    cl_log(CL_LOG_WARN, "batch_aborted", "reason=\"%s\"", why);
    /* A restored partition whose final slice is lost has no consistent state to rewind
     * to; stopping is safe: without a partition record it is restored again at start. */
    for (size_t i = 0; i < w->nparts; i++)
        if (w->parts[i].restore_commit_pending && !w->fatal) {
            w->fatal = 1;
            snprintf(w->fatal_err, sizeof w->fatal_err,
                     "the batch completing the restore of partition %zu was aborted (%s)", i, why);
        }
    batch_rewind(w);
}

static int fire_timers(cl_join_worker *w, uint32_t pnum, join_partition *p, char *err,
                       size_t errlen);

/*
 * Ends the open batch: due timers, partition records (LMDB and changelog), flush every
 * produced record, and only then the LMDB commit; then the Kafka offsets for lag
 * monitors. A failed flush aborts the batch and rewinds (nothing is lost: the records
 * are processed again, and their output is deterministic).
 */
static int batch_finish(cl_join_worker *w, char *err, size_t errlen)
{
    if (!w->txn) return CL_OK;
    int rc = CL_OK;
    for (size_t i = 0; i < w->nparts && rc == CL_OK; i++) {
        join_partition *p = &w->parts[i];
        if ((p->dirty || p->timers_pending) && !p->restoring && p->have_meta)
            rc = fire_timers(w, (uint32_t)i, p, err, errlen);
    }
    for (size_t i = 0; i < w->nparts && rc == CL_OK; i++) {
        join_partition *p = &w->parts[i];
        if (!p->dirty) continue;
        uint8_t mb[META_LEN];
        meta_encode(&p->meta, mb);
        cl_store_key k;
        key_part(&k, (uint32_t)i);
        rc = cl_store_put(w->txn, DB_PARTITIONS, k.data, k.len, mb, sizeof mb, err, errlen);
        if (rc == CL_OK)
            rc = send_changelog(w, (int32_t)i, CL_JOIN_META_KEY, strlen(CL_JOIN_META_KEY), mb,
                                sizeof mb, err, errlen);
    }
    if (rc != CL_OK) {
        char why[CL_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        batch_abort(w, why);
        return rc;
    }
    int64_t t0 = cl_mono_ns();
    int64_t deadline = cl_mono_ms() + FLUSH_TIMEOUT_MS;
    for (;;) {
        rc = cl_producer_flush(w->producer, 1000, err, errlen);
        if (rc != CL_ETIMEOUT || cl_mono_ms() > deadline) break;
    }
    if (rc == CL_OK && w->delivery_failures != w->failures_at_batch_start)
        rc = cl_seterr(err, errlen, CL_EAGAIN,
                       "%" PRIu64 " record(s) of the batch were not "
                       "delivered (last: %s)",
                       w->delivery_failures - w->failures_at_batch_start, w->last_delivery_error);
    if (rc != CL_OK) {
        char why[CL_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        batch_abort(w, why);
        return CL_EAGAIN;
    }
    rc = cl_store_batch_commit(w->txn, err, errlen);
    w->txn = NULL;
    if (rc != CL_OK) {
        batch_rewind(w);
        return rc;
    }
    cl_prom_observe(w->m.commit_seconds, NULL, (double)(cl_mono_ns() - t0) / 1e9);

    cl_topic_partition tps[64];
    size_t n = 0;
    for (size_t i = 0; i < w->nparts; i++) {
        join_partition *p = &w->parts[i];
        if (!p->dirty) continue;
        p->dirty = 0;
        p->restore_commit_pending = 0;
        p->committed = p->meta;
        for (int t = 0; t < 2; t++) {
            if (!p->assigned[t] || p->meta.next[t] < 0) continue;
            tps[n++] = (cl_topic_partition){w->t_in[t], (int32_t)i, p->meta.next[t]};
            if (n == sizeof tps / sizeof tps[0]) {
                cl_consumer_store_offsets(w->consumer, tps, n, NULL, 0);
                n = 0;
            }
        }
    }
    if (n) cl_consumer_store_offsets(w->consumer, tps, n, NULL, 0);
    char cerr[CL_ERRLEN];
    if (cl_consumer_commit(w->consumer, 1, cerr, sizeof cerr) != CL_OK)
        cl_log(CL_LOG_WARN, "offset_commit_failed", "error=\"%s\"", cerr);
    return CL_OK;
}

/* ---- state load/save -------------------------------------------------------------- */

/* Loads the state of (p, opp) into *st (initialised empty when absent). */
static int state_load(cl_join_worker *w, uint32_t p, const char *opp, size_t len, cl_join_state *st,
                      char *err, size_t errlen)
{
    cl_store_key k;
    key_state(&k, p, opp, len);
    if (!k.ok) return cl_seterr(err, errlen, CL_EINVAL, "opportunity id too long for a key");
    const void *v;
    size_t vlen;
    int rc = cl_store_get(w->txn, DB_STATE, k.data, k.len, &v, &vlen, err, errlen);
    if (rc == CL_ENOTFOUND) {
        cl_join_state_init(st, opp, len);
        return CL_OK;
    }
    if (rc != CL_OK) return rc;
    rc = cl_join_state_decode(v, vlen, st, err, errlen);
    if (rc != CL_OK)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "LMDB state of opportunity %.*s in partition %" PRIu32
                         " does not decode (%s); delete %s to rebuild it from the changelog",
                         (int)len, opp, p, err, cl_store_path(w->store));
    return CL_OK;
}

/* Stores st (or deletes it when empty), keeps the timer index in step, mirrors the
 * change to the changelog. old_deadline: the deadline whose timer key exists. */
static int state_save(cl_join_worker *w, uint32_t p, const cl_join_state *st, int64_t old_deadline,
                      int to_changelog, char *err, size_t errlen)
{
    size_t idlen = strlen(st->opportunity_id);
    cl_join_timer_kind kind;
    int64_t at = cl_join_deadline(st, &w->policy, &kind);
    if (cl_join_state_is_empty(st)) at = CL_JOIN_NO_DEADLINE;
    cl_store_key k;
    int rc = CL_OK;
    if (old_deadline != at && old_deadline != CL_JOIN_NO_DEADLINE) {
        key_timer(&k, p, old_deadline, st->opportunity_id);
        rc = cl_store_del(w->txn, DB_TIMERS, k.data, k.len, err, errlen);
        if (rc == CL_ENOTFOUND) rc = CL_OK;
    }
    if (rc == CL_OK && old_deadline != at && at != CL_JOIN_NO_DEADLINE) {
        uint8_t kb = (uint8_t)kind;
        key_timer(&k, p, at, st->opportunity_id);
        rc = cl_store_put(w->txn, DB_TIMERS, k.data, k.len, &kb, 1, err, errlen);
    }
    if (rc != CL_OK) return rc;
    key_state(&k, p, st->opportunity_id, idlen);
    if (cl_join_state_is_empty(st)) {
        rc = cl_store_del(w->txn, DB_STATE, k.data, k.len, err, errlen);
        if (rc == CL_ENOTFOUND) rc = CL_OK;
        if (rc == CL_OK && to_changelog)
            rc = send_changelog(w, (int32_t)p, st->opportunity_id, idlen, NULL, 0, err, errlen);
        return rc;
    }
    cl_buf_reset(&w->buf);
    rc = cl_join_state_encode(st, &w->buf, err, errlen);
    if (rc == CL_OK)
        rc = cl_store_put(w->txn, DB_STATE, k.data, k.len, w->buf.data, w->buf.len, err, errlen);
    if (rc == CL_OK && to_changelog)
        rc = send_changelog(w, (int32_t)p, st->opportunity_id, idlen, w->buf.data, w->buf.len, err,
                            errlen);
    return rc;
}

/* ---- emissions -> LabeledExample records ------------------------------------------ */

static int decode_payload(cl_join_worker *w, int t, const uint8_t *data, size_t len, char *err,
                          size_t errlen)
{
    avro_value_t *v;
    int rc = cl_avro_codec_decode(w->store_codec[t], data, len, &v, err, errlen);
    if (rc != CL_OK) return rc;
    return t == T_SNAPSHOTS ? cl_snapshot_from_avro(v, w->snap, err, errlen)
                            : cl_outcome_from_avro(v, w->outcome, err, errlen);
}

static int publish_emits(cl_join_worker *w, const char *opp, const cl_join_emits *e, char *err,
                         size_t errlen)
{
    const uint8_t *outcome_decoded = NULL;
    for (size_t i = 0; i < e->n; i++) {
        const cl_join_emit *it = &e->items[i];
        int rc = CL_OK;
        if (it->outcome_payload != outcome_decoded) {
            rc = decode_payload(w, T_OUTCOMES, it->outcome_payload, it->outcome_payload_len, err,
                                errlen);
            outcome_decoded = rc == CL_OK ? it->outcome_payload : NULL;
        }
        if (rc == CL_OK)
            rc = decode_payload(w, T_SNAPSHOTS, it->snapshot_payload, it->snapshot_payload_len, err,
                                errlen);
        if (rc != CL_OK)
            return cl_seterr(err, errlen, CL_ECONFLICT,
                             "stored payload of opportunity %s does not decode: %s", opp, err);
        cl_labeled_example_init(w->example);
        w->example->snapshot = *w->snap;
        w->example->outcome = *w->outcome;
        w->example->days_before_close = it->days_before_close;
        w->example->outcome_version = it->outcome_version;
        w->example->retracted = it->retracted != 0;
        w->example->joined_at = cl_now_ms();
        avro_value_t *v = cl_avro_codec_value(w->labeled_codec);
        rc = cl_labeled_example_to_avro(w->example, v, err, errlen);
        cl_buf_reset(&w->buf2);
        if (rc == CL_OK) rc = cl_avro_codec_encode(w->labeled_codec, v, &w->buf2, err, errlen);
        if (rc == CL_OK)
            rc = send_record(w, w->t_labeled, opp, strlen(opp), w->buf2.data, w->buf2.len, err,
                             errlen);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

/* ---- records ---------------------------------------------------------------------- */

static int to_dlq(cl_join_worker *w, const cl_message *m, const char *reason, const char *detail,
                  char *err, size_t errlen)
{
    cl_log(CL_LOG_WARN, "record_to_dlq",
           "topic=%s partition=%" PRId32 " offset=%" PRId64 " reason=%s error=\"%s\"", m->topic,
           m->partition, m->offset, reason, detail);
    cl_prom_counter_add(w->m.dlq, (const char *[]){reason}, 1);
    int rc = cl_kafka_dlq_send(w->producer, w->t_dlq, m, "join", detail, NULL, err, errlen);
    if (rc == CL_OK) cl_prom_counter_add(w->m.out, (const char *[]){w->t_dlq}, 1);
    return rc;
}

/* Decodes an input value into the struct and re-encodes it as a single-object payload
 * in w->buf2. CL_EAGAIN: the registry is unreachable (retry); other errors: poison. */
static int normalize(cl_join_worker *w, int t, const cl_message *m, char *err, size_t errlen)
{
    avro_value_t *v;
    int rc = cl_avro_codec_decode(w->in_codec[t], m->value, m->value_len, &v, err, errlen);
    if (rc == CL_EAGAIN || rc == CL_ETIMEOUT || rc == CL_EIO) return CL_EAGAIN;
    if (rc != CL_OK) return CL_EINVAL;
    if (t == T_SNAPSHOTS) {
        rc = cl_snapshot_from_avro(v, w->snap, err, errlen);
    } else {
        rc = cl_outcome_from_avro(v, w->outcome, err, errlen);
    }
    if (rc != CL_OK) return CL_EINVAL;
    const char *id = t == T_SNAPSHOTS ? w->snap->opportunity_id : w->outcome->opportunity_id;
    if (strlen(id) != m->key_len || memcmp(id, m->key, m->key_len) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "opportunity_id '%s' in the value differs from the record key", id);
    avro_value_t *out = cl_avro_codec_value(w->store_codec[t]);
    rc = t == T_SNAPSHOTS ? cl_snapshot_to_avro(w->snap, out, err, errlen)
                          : cl_outcome_to_avro(w->outcome, out, err, errlen);
    cl_buf_reset(&w->buf2);
    if (rc == CL_OK) rc = cl_avro_codec_encode(w->store_codec[t], out, &w->buf2, err, errlen);
    return rc == CL_OK ? CL_OK : CL_EINVAL;
}

static int key_ok(const cl_message *m)
{
    return m->key && m->key_len > 0 && m->key_len <= CL_JOIN_ID_MAX &&
           memchr(m->key, '\0', m->key_len) == NULL;
}

/* Processes one input record inside the open batch. CL_EAGAIN: could not be processed
 * now (registry down); the caller rewinds its partition. */
static int process(cl_join_worker *w, int t, join_partition *p, const cl_message *m, char *err,
                   size_t errlen)
{
    int rc = batch_open(w, err, errlen);
    if (rc != CL_OK) return rc;
    cl_prom_counter_add(w->m.in, (const char *[]){m->topic}, 1);
    char derr[CL_ERRLEN] = "";
    int poison = 0;
    const char *reason = NULL;
    int64_t data_time = INT64_MIN;

    if (!key_ok(m)) {
        poison = 1;
        reason = "bad_key";
        snprintf(derr, sizeof derr,
                 "record key is missing, empty, longer than %d bytes or "
                 "contains NUL",
                 CL_JOIN_ID_MAX);
    } else if (m->value == NULL && t == T_SNAPSHOTS) {
        poison = 1;
        reason = "null_value";
        snprintf(derr, sizeof derr, "null value on the snapshots topic");
    } else if (m->value != NULL) {
        rc = normalize(w, t, m, derr, sizeof derr);
        if (rc == CL_EAGAIN)
            return cl_seterr(err, errlen, CL_EAGAIN, "%s [%" PRId32 "] offset %" PRId64 ": %s",
                             m->topic, m->partition, m->offset, derr);
        if (rc != CL_OK) {
            poison = 1;
            reason = "undecodable";
        }
    }
    if (poison) {
        rc = to_dlq(w, m, reason, derr, err, errlen);
        if (rc != CL_OK) return rc;
    } else {
        cl_join_state st;
        rc = state_load(w, (uint32_t)m->partition, m->key, m->key_len, &st, err, errlen);
        if (rc != CL_OK) return rc;
        int64_t old_deadline = cl_join_deadline(&st, &w->policy, NULL);
        cl_join_emits_reset(&w->emits);
        if (t == T_SNAPSHOTS) {
            data_time = w->snap->snapshot_time;
            rc = cl_join_apply_snapshot(&st, &w->policy, m->offset, w->snap->snapshot_id,
                                        w->snap->snapshot_time, w->buf2.data, w->buf2.len,
                                        &w->emits, err, errlen);
        } else if (m->value) {
            data_time = w->outcome->system_modstamp;
            rc = cl_join_apply_outcome(&st, &w->policy, m->offset, w->outcome->system_modstamp,
                                       w->outcome->close_date, w->buf2.data, w->buf2.len, &w->emits,
                                       err, errlen);
        } else {
            rc = cl_join_apply_tombstone(&st, &w->policy, m->offset, &w->emits, err, errlen);
        }
        if (rc == CL_OK && w->emits.counts.changed)
            rc = state_save(w, (uint32_t)m->partition, &st, old_deadline, 1, err, errlen);
        if (rc == CL_OK) rc = publish_emits(w, st.opportunity_id, &w->emits, err, errlen);
        if (rc == CL_OK) add_counts(w, &w->emits.counts);
        cl_join_state_free(&st);
        if (rc != CL_OK) return rc;
    }
    p->meta.next[t] = m->offset + 1;
    if (data_time != INT64_MIN && data_time > p->meta.wm[t]) p->meta.wm[t] = data_time;
    p->have_meta = 1;
    p->dirty = 1;
    if (m->timestamp_ms > 0)
        cl_prom_gauge_set(w->m.last_processed, NULL, (double)m->timestamp_ms / 1000.0);
    return CL_OK;
}

/* ---- timers ----------------------------------------------------------------------- */

typedef struct {
    int64_t watermark;
    char (*ids)[CL_JOIN_ID_MAX + 1];
    int64_t *at;
    size_t n, cap;
} due_list;

static int collect_due(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    (void)val;
    (void)vlen;
    due_list *d = ud;
    cl_store_key_reader r;
    uint32_t p;
    int64_t at;
    const char *id;
    size_t idlen;
    cl_store_key_reader_init(&r, key, klen);
    if (cl_store_key_next_u32(&r, &p) != CL_OK || cl_store_key_next_i64(&r, &at) != CL_OK ||
        cl_store_key_next_str(&r, &id, &idlen) != CL_OK || idlen == 0 || idlen > CL_JOIN_ID_MAX)
        return CL_ECONFLICT;
    if (at > d->watermark || d->n == d->cap) return 1;
    memcpy(d->ids[d->n], id, idlen);
    d->ids[d->n][idlen] = '\0';
    d->at[d->n] = at;
    d->n++;
    return 0;
}

/*
 * Fires the timers of partition p that are due at its watermark: the smaller of the
 * two inputs' watermarks, so a timer fires only once both topics have moved past it
 * (an outcome about to arrive on a lagging topic is not pre-empted).
 */
static int fire_timers(cl_join_worker *w, uint32_t pnum, join_partition *p, char *err,
                       size_t errlen)
{
    p->timers_pending = 0;
    if (p->meta.wm[0] == INT64_MIN || p->meta.wm[1] == INT64_MIN) return CL_OK;
    due_list d = {p->meta.wm[0] < p->meta.wm[1] ? p->meta.wm[0] : p->meta.wm[1], NULL, NULL, 0,
                  TIMERS_PER_PASS};
    d.ids = malloc(d.cap * sizeof *d.ids);
    d.at = malloc(d.cap * sizeof *d.at);
    if (!d.ids || !d.at) {
        free(d.ids);
        free(d.at);
        return cl_seterr(err, errlen, CL_ENOMEM, "timers: out of memory");
    }
    cl_store_key k;
    key_part(&k, pnum);
    int rc = cl_store_scan_prefix(w->txn, DB_TIMERS, k.data, k.len, collect_due, &d, err, errlen);
    if (rc == CL_OK && d.n == d.cap) p->timers_pending = 1;
    for (size_t i = 0; rc == CL_OK && i < d.n; i++) {
        key_timer(&k, pnum, d.at[i], d.ids[i]);
        rc = cl_store_del(w->txn, DB_TIMERS, k.data, k.len, err, errlen);
        if (rc == CL_ENOTFOUND) rc = CL_OK;
        cl_join_state st;
        size_t idlen = strlen(d.ids[i]);
        if (rc == CL_OK) rc = state_load(w, pnum, d.ids[i], idlen, &st, err, errlen);
        if (rc != CL_OK) break;
        /* A key whose deadline no longer matches the state (policy changed) is only
         * removed; the state's own timer key is kept in step by state_save. */
        int64_t deadline = cl_join_deadline(&st, &w->policy, NULL);
        int64_t old = deadline == d.at[i] ? CL_JOIN_NO_DEADLINE : deadline;
        cl_join_emits_reset(&w->emits);
        rc = cl_join_fire_timer(&st, &w->policy, d.watermark, &w->emits, err, errlen);
        if (rc == CL_OK && (w->emits.counts.changed || old != deadline || deadline == d.at[i]))
            rc = state_save(w, pnum, &st, old, 1, err, errlen);
        if (rc == CL_OK) add_counts(w, &w->emits.counts);
        cl_join_state_free(&st);
    }
    free(d.ids);
    free(d.at);
    if (rc == CL_OK && d.n > 0) p->dirty = 1;
    return rc;
}

/* ---- restore from the changelog --------------------------------------------------- */

static int restore_assign(cl_join_worker *w, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < w->nparts; i++)
        if (w->parts[i].restoring)
            rd_kafka_topic_partition_list_add(l, w->t_changelog, (int32_t)i)->offset =
                w->parts[i].restore_pos;
    rd_kafka_resp_err_t e = rd_kafka_assign(w->restorer, l->cnt ? l : NULL);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return cl_seterr(err, errlen, CL_ERR, "assigning %s to the restore consumer: %s",
                         w->t_changelog, rd_kafka_err2str(e));
    return CL_OK;
}

static void restore_done(cl_join_worker *w, uint32_t pnum, join_partition *p)
{
    p->restoring = 0;
    w->restoring_count--;
    p->meta = p->restore_meta_seen ? p->restore_meta : p->meta;
    if (!p->restore_meta_seen) meta_init(&p->meta);
    p->have_meta = 1;
    p->dirty = 1; /* the partition record is written with the next commit */
    p->committed = p->meta;
    p->restore_commit_pending = 1;
    for (int t = 0; t < 2; t++) {
        if (!p->assigned[t]) continue;
        int64_t off = p->meta.next[t] >= 0 ? p->meta.next[t] : CL_KAFKA_OFFSET_BEGINNING;
        char err[CL_ERRLEN];
        if (cl_consumer_seek(w->consumer, w->t_in[t], (int32_t)pnum, off, 5000, err, sizeof err) !=
            CL_OK)
            cl_log(CL_LOG_WARN, "seek_failed", "topic=%s partition=%" PRIu32 " error=\"%s\"",
                   w->t_in[t], pnum, err);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, w->t_in[t], (int32_t)pnum);
        rd_kafka_resume_partitions(cl_consumer_handle(w->consumer), l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    p->paused = 0;
    char lbl[24];
    snprintf(lbl, sizeof lbl, "%" PRIu32, pnum);
    cl_prom_gauge_set(w->m.restore_remaining, (const char *[]){lbl}, 0);
    cl_log(CL_LOG_INFO, "restore_done",
           "partition=%" PRIu32 " records=%" PRIu64 " next_snapshots=%" PRId64
           " next_outcomes=%" PRId64,
           pnum, p->restored, p->meta.next[0], p->meta.next[1]);
}

static int restore_apply(cl_join_worker *w, uint32_t pnum, join_partition *p,
                         const rd_kafka_message_t *rm, char *err, size_t errlen)
{
    p->restore_pos = rm->offset + 1;
    p->restored++;
    cl_prom_counter_add(w->m.restored, NULL, 1);
    if (!rm->key || rm->key_len == 0 || rm->key_len > CL_JOIN_ID_MAX + 64) {
        cl_log(CL_LOG_WARN, "changelog_record_skipped",
               "partition=%" PRIu32 " offset=%" PRId64 " reason=bad_key", pnum, rm->offset);
        return CL_OK;
    }
    if (rm->key_len == strlen(CL_JOIN_META_KEY) &&
        memcmp(rm->key, CL_JOIN_META_KEY, rm->key_len) == 0) {
        part_meta m;
        if (rm->payload && meta_decode(rm->payload, rm->len, &m) == CL_OK) {
            p->restore_meta = m;
            p->restore_meta_seen = 1;
        }
        return CL_OK;
    }
    if (rm->key_len > CL_JOIN_ID_MAX) return CL_OK;
    cl_join_state old;
    int rc = state_load(w, pnum, rm->key, rm->key_len, &old, err, errlen);
    if (rc != CL_OK) return rc;
    int64_t old_deadline = cl_join_state_is_empty(&old) ? CL_JOIN_NO_DEADLINE
                                                        : cl_join_deadline(&old, &w->policy, NULL);
    cl_join_state_free(&old);
    cl_join_state st;
    if (rm->payload == NULL) {
        cl_join_state_init(&st, rm->key, rm->key_len);
    } else if (cl_join_state_decode(rm->payload, rm->len, &st, err, errlen) != CL_OK ||
               strlen(st.opportunity_id) != rm->key_len ||
               memcmp(st.opportunity_id, rm->key, rm->key_len) != 0) {
        cl_log(CL_LOG_WARN, "changelog_record_skipped",
               "partition=%" PRIu32 " offset=%" PRId64 " reason=undecodable", pnum, rm->offset);
        return CL_OK;
    }
    rc = state_save(w, pnum, &st, old_deadline, 0, err, errlen);
    cl_join_state_free(&st);
    return rc;
}

/* Starts restoring partition pnum: wipes its local state in the open batch. */
static int restore_begin(cl_join_worker *w, uint32_t pnum, join_partition *p, char *err,
                         size_t errlen)
{
    int rc = batch_open(w, err, errlen);
    cl_store_key k;
    key_part(&k, pnum);
    size_t deleted = 0, d2 = 0;
    if (rc == CL_OK)
        rc = cl_store_del_prefix(w->txn, DB_STATE, k.data, k.len, &deleted, err, errlen);
    if (rc == CL_OK) rc = cl_store_del_prefix(w->txn, DB_TIMERS, k.data, k.len, &d2, err, errlen);
    if (rc == CL_OK) {
        rc = cl_store_del(w->txn, DB_PARTITIONS, k.data, k.len, err, errlen);
        if (rc == CL_ENOTFOUND) rc = CL_OK;
    }
    if (rc != CL_OK) return rc;
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(w->restorer, w->t_changelog,
                                                             (int32_t)pnum, &lo, &hi, 10000);
    if (e)
        return cl_seterr(err, errlen, CL_EAGAIN, "watermarks of %s [%" PRIu32 "]: %s",
                         w->t_changelog, pnum, rd_kafka_err2str(e));
    p->restoring = 1;
    w->restoring_count++;
    p->restore_end = hi;
    p->restore_pos = lo;
    p->restore_meta_seen = 0;
    p->restored = 0;
    p->have_meta = 0;
    meta_init(&p->meta);
    p->committed = p->meta;
    p->dirty = 0;
    cl_log(CL_LOG_INFO, "restore_started",
           "partition=%" PRIu32 " changelog_records=%" PRId64 " local_keys_dropped=%zu", pnum,
           hi - lo, deleted);
    if (hi <= lo) {
        restore_done(w, pnum, p);
        return CL_OK;
    }
    return restore_assign(w, err, errlen);
}

/* One slice of restore work: at most join.restore.records.per.poll records. */
static int restore_step(cl_join_worker *w, char *err, size_t errlen)
{
    /* Restore slices run in batches of their own, committed at the end of the slice. */
    int rc = batch_finish(w, err, errlen);
    if (rc == CL_EAGAIN) rc = CL_OK;
    if (rc == CL_OK) rc = batch_open(w, err, errlen);
    if (rc != CL_OK) return rc;
    int64_t budget = w->restore_per_poll;
    int64_t until = cl_mono_ms() + 200;
    while (budget-- > 0 && w->restoring_count > 0 && cl_mono_ms() < until) {
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(w->restorer, 50);
        if (!rm) continue;
        if (rm->err) {
            if (rm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                cl_log(CL_LOG_WARN, "restore_consumer_error", "error=\"%s\"",
                       rd_kafka_message_errstr(rm));
            rd_kafka_message_destroy(rm);
            continue;
        }
        join_partition *p = rm->partition >= 0 && (size_t)rm->partition < w->nparts
                                ? &w->parts[rm->partition]
                                : NULL;
        if (p && p->restoring && rm->offset < p->restore_end)
            rc = restore_apply(w, (uint32_t)rm->partition, p, rm, err, errlen);
        rd_kafka_message_destroy(rm);
        if (rc != CL_OK) return rc;
    }
    int reassign = 0;
    for (size_t i = 0; i < w->nparts; i++) {
        join_partition *p = &w->parts[i];
        if (!p->restoring) continue;
        char lbl[24];
        snprintf(lbl, sizeof lbl, "%zu", i);
        cl_prom_gauge_set(w->m.restore_remaining, (const char *[]){lbl},
                          (double)(p->restore_end - p->restore_pos));
        if (p->restore_pos >= p->restore_end) {
            restore_done(w, (uint32_t)i, p);
            reassign = 1;
        }
    }
    cl_prom_gauge_set(w->m.restoring, NULL, (double)w->restoring_count);
    if (reassign && (rc = restore_assign(w, err, errlen)) != CL_OK) return rc;
    rc = batch_finish(w, err, errlen);
    return rc == CL_EAGAIN ? CL_OK : rc;
}

/* ---- rebalance -------------------------------------------------------------------- */

static int topic_index(cl_join_worker *w, const char *topic)
{
    for (int t = 0; t < 2; t++)
        if (strcmp(topic, w->t_in[t]) == 0) return t;
    return -1;
}

/* Loads the partition record of pnum from LMDB into p (have_meta 0 when absent). */
static int load_meta(cl_join_worker *w, uint32_t pnum, join_partition *p, char *err, size_t errlen)
{
    cl_store_key k;
    key_part(&k, pnum);
    cl_buf b;
    cl_buf_init(&b, 4096);
    int rc = cl_store_get_copy(w->store, DB_PARTITIONS, k.data, k.len, &b, err, errlen);
    meta_init(&p->meta);
    p->have_meta = 0;
    if (rc == CL_OK) {
        if (meta_decode(b.data, b.len, &p->meta) == CL_OK)
            p->have_meta = 1;
        else
            cl_log(CL_LOG_WARN, "partition_record_invalid", "partition=%" PRIu32, pnum);
    }
    cl_buf_free(&b);
    p->committed = p->meta;
    return rc == CL_ENOTFOUND ? CL_OK : rc;
}

static int on_assign(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                     size_t errlen)
{
    cl_join_worker *w = ud;
    char ferr[CL_ERRLEN];
    if (batch_finish(w, ferr, sizeof ferr) != CL_OK)
        cl_log(CL_LOG_WARN, "batch_finish_failed", "when=assign error=\"%s\"", ferr);

    /* The group's committed offsets say whether someone else advanced a partition. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, parts[i].topic, parts[i].partition);
    rd_kafka_resp_err_t e = rd_kafka_committed(cl_consumer_handle(c), l, 10000);
    if (e) {
        rd_kafka_topic_partition_list_destroy(l);
        return cl_seterr(err, errlen, CL_ERR, "reading committed offsets: %s", rd_kafka_err2str(e));
    }
    int rc = CL_OK;
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        int t = topic_index(w, parts[i].topic);
        join_partition *p = part_get(w, parts[i].partition);
        if (t < 0 || !p) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "unexpected assignment %s [%" PRId32 "]",
                           parts[i].topic, parts[i].partition);
            break;
        }
        int first = !p->assigned[0] && !p->assigned[1];
        p->assigned[t] = 1;
        if (first && !p->restoring) {
            rc = load_meta(w, (uint32_t)parts[i].partition, p, err, errlen);
            if (rc != CL_OK) break;
            int need = 0;
            for (int j = 0; j < l->cnt; j++) {
                if (l->elems[j].partition != parts[i].partition) continue;
                int tj = topic_index(w, l->elems[j].topic);
                int64_t committed = l->elems[j].offset;
                if (tj < 0 || committed < 0) continue;
                if (!p->have_meta || committed > p->meta.next[tj]) need = 1;
            }
            if (need) {
                rc = restore_begin(w, (uint32_t)parts[i].partition, p, err, errlen);
                if (rc != CL_OK) break;
            }
        }
        if (p->restoring) {
            p->paused = 0; /* paused right after the assignment takes effect */
        } else {
            int64_t off =
                p->have_meta && p->meta.next[t] >= 0 ? p->meta.next[t] : CL_KAFKA_OFFSET_BEGINNING;
            parts[i].offset = off;
        }
        cl_log(CL_LOG_INFO, "join_partition_assigned",
               "topic=%s partition=%" PRId32 " restore=%d start=%" PRId64, parts[i].topic,
               parts[i].partition, p->restoring, parts[i].offset);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static void on_revoke(cl_consumer *c, const cl_topic_partition *parts, size_t n, void *ud)
{
    (void)c;
    cl_join_worker *w = ud;
    char err[CL_ERRLEN];
    if (batch_finish(w, err, sizeof err) != CL_OK)
        cl_log(CL_LOG_WARN, "batch_finish_failed", "when=revoke error=\"%s\"", err);
    int restore_changed = 0;
    for (size_t i = 0; i < n; i++) {
        int t = topic_index(w, parts[i].topic);
        join_partition *p = part_get(w, parts[i].partition);
        if (t < 0 || !p) continue;
        p->assigned[t] = 0;
        if (!p->assigned[0] && !p->assigned[1]) {
            if (p->restoring) {
                /* The partial restore stays without a partition record: a later
                 * assignment restores again. */
                p->restoring = 0;
                w->restoring_count--;
                restore_changed = 1;
            }
            p->paused = 0;
            p->dirty = 0;
            /* State is kept warm; the partition record tells a later assignment
             * whether it is still current. */
        }
    }
    if (restore_changed && w->txn) {
        /* The wipe of an abandoned restore is committed like any batch. */
        if (batch_finish(w, err, sizeof err) != CL_OK)
            cl_log(CL_LOG_WARN, "batch_finish_failed", "when=revoke error=\"%s\"", err);
    }
    if (restore_changed) restore_assign(w, err, sizeof err);
}

/* Pauses partitions that must not be consumed while they restore. */
static void pause_restoring(cl_join_worker *w)
{
    for (size_t i = 0; i < w->nparts; i++) {
        join_partition *p = &w->parts[i];
        if (!p->restoring || p->paused) continue;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
        for (int t = 0; t < 2; t++)
            if (p->assigned[t]) rd_kafka_topic_partition_list_add(l, w->t_in[t], (int32_t)i);
        rd_kafka_pause_partitions(cl_consumer_handle(w->consumer), l);
        rd_kafka_topic_partition_list_destroy(l);
        p->paused = 1;
    }
}

/* ---- metrics ---------------------------------------------------------------------- */

static void collect(cl_prom *reg, void *ud)
{
    cl_join_worker *w = ud;
    cl_consumer_export_lag(w->consumer, reg);
    cl_store_stats st;
    cl_store_stats_get(w->store, &st);
    cl_prom_gauge_set(w->m.waiting_opps, NULL, (double)st.entries[DB_TIMERS]);
}

static int metrics_init(cl_join_worker *w, char *err, size_t errlen)
{
    const char *const topic[] = {"topic", NULL};
    const char *const reason[] = {"reason", NULL};
    const char *const part[] = {"partition", NULL};
    struct {
        cl_prom_metric **m;
        const char *name, *help;
        const char *const *labels;
        int gauge;
    } defs[] = {
        {&w->m.in, "closedloop_join_records_in_total", "Records consumed, per input topic.", topic,
         0},
        {&w->m.out, "closedloop_join_records_out_total", "Records produced, per output topic.",
         topic, 0},
        {&w->m.joined, "closedloop_join_joined_total", "LabeledExamples emitted.", NULL, 0},
        {&w->m.retracted, "closedloop_join_retracted_total", "Retraction markers emitted.", NULL,
         0},
        {&w->m.excluded, "closedloop_join_excluded_total",
         "Snapshots not emitted because they were taken after the close date.", NULL, 0},
        {&w->m.expired, "closedloop_join_expired_total",
         "Snapshots dropped because their opportunity stayed open past join.open.expiry.days.",
         NULL, 0},
        {&w->m.unscored, "closedloop_join_unscored_total",
         "Outcomes with no snapshot join.unscored.after.days after their version.", NULL, 0},
        {&w->m.waiting, "closedloop_join_waiting_total",
         "Snapshots stored while their opportunity had no outcome.", NULL, 0},
        {&w->m.duplicates, "closedloop_join_duplicates_total",
         "Records already applied (re-published or replayed).", NULL, 0},
        {&w->m.stale, "closedloop_join_stale_outcomes_total",
         "Outcome versions not newer than one already seen.", NULL, 0},
        {&w->m.evicted, "closedloop_join_evicted_total",
         "Snapshots dropped by the per-opportunity count/age bound.", NULL, 0},
        {&w->m.dlq, "closedloop_join_dlq_total",
         "Records sent to the dead-letter topic, per reason.", reason, 0},
        {&w->m.restored, "closedloop_join_restore_records_total",
         "Changelog records applied by restores.", NULL, 0},
        {&w->m.batches_aborted, "closedloop_join_batches_aborted_total",
         "Batches aborted and replayed (output not acknowledged).", NULL, 0},
        {&w->m.restore_remaining, "closedloop_join_restore_remaining_records",
         "Changelog records left to restore, per partition.", part, 1},
        {&w->m.restoring, "closedloop_join_restoring_partitions",
         "Partitions being restored from the changelog.", NULL, 1},
        {&w->m.last_processed, "closedloop_join_last_processed_timestamp_seconds",
         "Kafka timestamp of the last record processed.", NULL, 1},
        {&w->m.waiting_opps, "closedloop_join_waiting_opportunities",
         "Opportunities waiting for their other side (snapshots without outcome or outcome without "
         "snapshot), as of the last commit.",
         NULL, 1},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        int rc = defs[i].gauge ? cl_prom_gauge(w->prom, defs[i].name, defs[i].help, defs[i].labels,
                                               defs[i].m, err, errlen)
                               : cl_prom_counter(w->prom, defs[i].name, defs[i].help,
                                                 defs[i].labels, defs[i].m, err, errlen);
        if (rc != CL_OK) return rc;
    }
    int rc = cl_prom_histogram(w->prom, "closedloop_join_batch_commit_seconds",
                               "Time from the end of a batch to its LMDB commit (flush included).",
                               NULL, cl_prom_seconds_buckets, cl_prom_seconds_buckets_len,
                               &w->m.commit_seconds, err, errlen);
    if (rc != CL_OK) return rc;
    rc = cl_store_export_prom(w->store, w->prom, "join", err, errlen);
    if (rc != CL_OK) return rc;
    w->lag_collector = cl_prom_add_collector(w->prom, collect, w);
    return w->lag_collector > 0 ? CL_OK : cl_seterr(err, errlen, CL_ENOMEM, "collector");
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int topic_copy(cl_join_worker *w, const char *name, char out[256], char *err, size_t errlen)
{
    if (cl_strlcpy(out, cl_config_topic(w->cfg, name), 256) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "topic name for %s is longer than 255 bytes",
                         name);
    return CL_OK;
}

int cl_join_worker_new(cl_config *cfg, cl_join_worker **out, char *err, size_t errlen)
{
    cl_join_worker *w = calloc(1, sizeof *w);
    if (!w) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    w->cfg = cfg;
    cl_join_emits_init(&w->emits);
    cl_buf_init(&w->buf, 64u * 1024 * 1024);
    cl_buf_init(&w->buf2, 64u * 1024 * 1024);
    w->snap = malloc(sizeof *w->snap);
    w->outcome = malloc(sizeof *w->outcome);
    w->example = malloc(sizeof *w->example);
    int rc = w->snap && w->outcome && w->example ? CL_OK : CL_ENOMEM;
    if (rc != CL_OK) {
        cl_seterr(err, errlen, rc, "out of memory");
        goto fail;
    }
    cl_join_policy_defaults(&w->policy);
    w->policy.max_snapshots = (uint32_t)cl_config_int(cfg, "join.snapshots.max");
    w->policy.max_age_ms = cl_config_int(cfg, "join.snapshots.max.age.days") * CL_JOIN_DAY_MS;
    w->policy.open_expiry_ms = cl_config_int(cfg, "join.open.expiry.days") * CL_JOIN_DAY_MS;
    w->policy.unscored_after_ms = cl_config_int(cfg, "join.unscored.after.days") * CL_JOIN_DAY_MS;
    w->poll_max = (size_t)cl_config_int(cfg, "join.poll.max.records");
    w->restore_per_poll = cl_config_int(cfg, "join.restore.records.per.poll");
    w->exit_idle_ms = cl_config_int(cfg, "join.exit.idle.ms");
    w->shutdown_ms = (int)cl_config_int(cfg, "shutdown.timeout.ms");

    if ((rc = topic_copy(w, "snapshots", w->t_in[0], err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "outcomes", w->t_in[1], err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "labeled", w->t_labeled, err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "dlq", w->t_dlq, err, errlen)) != CL_OK ||
        (rc = topic_copy(w, "join-changelog", w->t_changelog, err, errlen)) != CL_OK)
        goto fail;

    rc = cl_avro_schemas_load(cl_config_str(cfg, "avro.schema.dir"), &w->schemas, err, errlen);
    if (rc == CL_OK) rc = cl_registry_from_config(&w->registry, cfg, err, errlen);
    if (rc != CL_OK) goto fail;
    static const char *const records[] = {"closedloop.OpportunitySnapshot",
                                          "closedloop.OpportunityOutcome"};
    for (int t = 0; t < 2 && rc == CL_OK; t++) {
        cl_avro_codec_opts in = {CL_AVRO_FRAMING_AUTO, w->registry, NULL, 0};
        cl_avro_codec_opts st = {CL_AVRO_FRAMING_SINGLE_OBJECT, NULL, NULL, 0};
        rc = cl_avro_codec_new(&w->in_codec[t], w->schemas, records[t], &in, err, errlen);
        if (rc == CL_OK)
            rc = cl_avro_codec_new(&w->store_codec[t], w->schemas, records[t], &st, err, errlen);
    }
    char subject[300];
    snprintf(subject, sizeof subject, "%s-value", w->t_labeled);
    cl_avro_codec_opts lo = {CL_AVRO_FRAMING_AUTO, w->registry, subject, 0};
    if (rc == CL_OK)
        rc = cl_avro_codec_new(&w->labeled_codec, w->schemas, "closedloop.LabeledExample", &lo, err,
                               errlen);
    if (rc != CL_OK) goto fail;

    cl_store_config sc;
    rc = cl_store_config_from(&sc, cfg, err, errlen);
    if (rc == CL_OK)
        rc = cl_store_open(&w->store, cl_config_str(cfg, "state.dir"), db_names, &sc, err, errlen);
    if (rc != CL_OK) goto fail;

    w->prom = cl_prom_new();
    if (!w->prom) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = metrics_init(w, err, errlen)) != CL_OK) goto fail;

    cl_producer_opts po = {NULL, on_delivery, w, NULL};
    rc = cl_producer_new(cfg, &po, &w->producer, err, errlen);
    if (rc != CL_OK) goto fail;
    const char *topics[2] = {w->t_in[0], w->t_in[1]};
    cl_consumer_opts co = {0};
    co.topics = topics;
    co.ntopics = 2;
    co.hooks.on_assign = on_assign;
    co.hooks.on_revoke = on_revoke;
    co.hooks.ud = w;
    rc = cl_consumer_new(cfg, &co, &w->consumer, err, errlen);
    if (rc != CL_OK) goto fail;
    w->group = cl_config_str(cfg, "group.id");

    /* The restore consumer: no group, no commits, assigned partition by partition. */
    rd_kafka_conf_t *rconf;
    rc = cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, "closedloop-join-restore", &rconf, err, errlen);
    if (rc != CL_OK) goto fail;
    /* librdkafka's assign() needs a group id; this one is never joined (no subscribe)
     * and never committed to. */
    char estr[512], rgroup[300];
    snprintf(rgroup, sizeof rgroup, "%s.restore", w->group ? w->group : "closedloop-join");
    rd_kafka_conf_set(rconf, "group.id", rgroup, estr, sizeof estr);
    rd_kafka_conf_set(rconf, "group.instance.id", NULL, estr, sizeof estr);
    rd_kafka_conf_set(rconf, "enable.auto.commit", "false", estr, sizeof estr);
    rd_kafka_conf_set(rconf, "enable.partition.eof", "false", estr, sizeof estr);
    rd_kafka_conf_set(rconf, "statistics.interval.ms", "0", estr, sizeof estr);
    w->restorer = rd_kafka_new(RD_KAFKA_CONSUMER, rconf, estr, sizeof estr);
    if (!w->restorer) {
        rd_kafka_conf_destroy(rconf);
        rc = cl_seterr(err, errlen, CL_ERR, "restore consumer: %s", estr);
        goto fail;
    }

    cl_http_config hc = {cl_config_str(cfg, "http.listen"), w->prom, 0, 0, 0};
    rc = cl_http_start(&w->http, &hc, err, errlen);
    if (rc != CL_OK) goto fail;
    cl_http_set_health(w->http, 1, NULL);
    w->broker_healthy = 1;
    cl_log(CL_LOG_INFO, "join_started",
           "snapshots=%s outcomes=%s labeled=%s changelog=%s state_dir=%s http_port=%u", w->t_in[0],
           w->t_in[1], w->t_labeled, w->t_changelog, cl_store_path(w->store),
           (unsigned)cl_http_port(w->http));
    *out = w;
    return CL_OK;
fail:
    cl_join_worker_free(w);
    return rc;
}

static int all_idle(cl_join_worker *w)
{
    return w->restoring_count == 0 && cl_consumer_assignment_count(w->consumer) > 0 &&
           cl_consumer_at_end(w->consumer) && !w->txn;
}

int cl_join_worker_run(cl_join_worker *w, char *err, size_t errlen)
{
    cl_message *msgs = calloc(w->poll_max, sizeof *msgs);
    if (!msgs) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    int rc = CL_OK;
    w->last_activity_mono = cl_mono_ms();
    while (!cl_stop_requested()) {
        if (w->fatal) {
            rc = cl_seterr(err, errlen, CL_ERR, "%s", w->fatal_err);
            break;
        }
        if (w->restoring_count > 0) {
            rc = restore_step(w, err, errlen);
            if (rc != CL_OK) break;
        }
        size_t n = 0;
        rc = cl_consumer_poll(w->consumer, msgs, w->poll_max, &n, w->restoring_count > 0 ? 0 : 100,
                              err, errlen);
        if (rc != CL_OK) break;
        /* While no broker answers the worker keeps polling (librdkafka reconnects);
         * /healthz says why it makes no progress. */
        char why[300];
        int healthy = cl_consumer_broker_health(w->consumer, why, sizeof why);
        if (healthy != w->broker_healthy) {
            cl_http_set_health(w->http, healthy, healthy ? NULL : why);
            w->broker_healthy = healthy;
        }
        pause_restoring(w);
        /* A partition that failed (registry unreachable) is skipped for the rest of
         * this poll; it was rewound to the failing record. */
        int32_t skip_partition = -1;
        const char *skip_topic = NULL;
        for (size_t i = 0; i < n && rc == CL_OK; i++) {
            cl_message *m = &msgs[i];
            int t = topic_index(w, m->topic);
            join_partition *p = t >= 0 ? part_get(w, m->partition) : NULL;
            if (!p || !p->assigned[t] || p->restoring) continue;
            if (skip_topic && m->partition == skip_partition && strcmp(skip_topic, m->topic) == 0)
                continue;
            if (p->meta.next[t] >= 0 && m->offset < p->meta.next[t])
                continue; /* fetched before a seek took effect */
            rc = process(w, t, p, m, err, errlen);
            if (rc == CL_EAGAIN) {
                cl_log(CL_LOG_WARN, "record_retry", "error=\"%s\"", err);
                batch_finish(w, err, errlen);
                cl_consumer_seek(w->consumer, m->topic, m->partition, m->offset, 5000, NULL, 0);
                skip_partition = m->partition;
                skip_topic = m->topic;
                cl_sleep_ms(500);
                rc = CL_OK;
            }
            if (rc == CL_OK && w->txn && cl_store_batch_should_commit(w->txn)) {
                rc = batch_finish(w, err, errlen);
                if (rc == CL_EAGAIN) {
                    rc = CL_OK;
                    break; /* rewound: the rest of this poll is re-read */
                }
            }
        }
        cl_messages_release(msgs, n);
        if (rc != CL_OK) break;
        if (n > 0) w->last_activity_mono = cl_mono_ms();
        if (w->txn && (n == 0 || cl_store_batch_should_commit(w->txn))) {
            rc = batch_finish(w, err, errlen);
            if (rc == CL_EAGAIN) rc = CL_OK;
            if (rc != CL_OK) break;
        }
        /* Kafka-side offsets serve lag monitors (LMDB holds the truth) and are committed
         * asynchronously at the end of each batch; a commit sent while the coordinator was
         * away (broker restart) is lost without a retry, and with no new input there was
         * no later batch to repair it: lag stayed > 0 forever (chaos test). While idle,
         * commit again what was stored; librdkafka leaves out partitions whose stored
         * offset is already committed, so this sends nothing in the steady state. */
        if (n == 0 && !w->txn && cl_mono_ms() - w->last_idle_commit_mono >= 5000) {
            w->last_idle_commit_mono = cl_mono_ms();
            char cerr[CL_ERRLEN];
            if (cl_consumer_commit(w->consumer, 1, cerr, sizeof cerr) != CL_OK)
                cl_log(CL_LOG_WARN, "offset_commit_failed", "error=\"%s\"", cerr);
        }
        /* Timers left over by a capped pass run on their own when input is idle. */
        for (size_t i = 0; i < w->nparts && rc == CL_OK; i++) {
            if (w->parts[i].timers_pending && !w->parts[i].restoring) {
                rc = batch_open(w, err, errlen);
                if (rc == CL_OK) rc = fire_timers(w, (uint32_t)i, &w->parts[i], err, errlen);
                if (rc == CL_OK) rc = batch_finish(w, err, errlen);
                if (rc == CL_EAGAIN) rc = CL_OK;
            }
        }
        if (rc != CL_OK) break;
        if (w->exit_idle_ms > 0 && all_idle(w) &&
            cl_mono_ms() - w->last_activity_mono >= w->exit_idle_ms) {
            cl_log(CL_LOG_INFO, "join_idle_exit", "idle_ms=%" PRId64, w->exit_idle_ms);
            break;
        }
    }
    free(msgs);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "join_failed", "error=\"%s\"", err);
        if (w->http) cl_http_set_health(w->http, 0, err);
        batch_abort(w, "worker failed");
        return rc;
    }
    char ferr[CL_ERRLEN];
    rc = batch_finish(w, ferr, sizeof ferr);
    if (rc != CL_OK) {
        cl_log(CL_LOG_WARN, "final_batch_not_committed", "error=\"%s\"", ferr);
        return cl_seterr(err, errlen, rc, "final batch: %s", ferr);
    }
    return CL_OK;
}

void cl_join_worker_free(cl_join_worker *w)
{
    if (!w) return;
    char err[CL_ERRLEN];
    if (w->consumer) {
        /* on_revoke finishes any batch and commits offsets. */
        cl_consumer_close(w->consumer, w->shutdown_ms, err, sizeof err);
        w->consumer = NULL;
    }
    if (w->txn) batch_abort(w, "shutdown");
    if (w->restorer) {
        rd_kafka_consumer_close(w->restorer);
        rd_kafka_destroy(w->restorer);
    }
    if (w->producer) cl_producer_close(w->producer, w->shutdown_ms, err, sizeof err);
    cl_http_stop(w->http);
    if (w->prom && w->lag_collector > 0) cl_prom_remove_collector(w->prom, w->lag_collector);
    cl_store_close(w->store);
    cl_prom_free(w->prom);
    for (int t = 0; t < 2; t++) {
        cl_avro_codec_free(w->in_codec[t]);
        cl_avro_codec_free(w->store_codec[t]);
    }
    cl_avro_codec_free(w->labeled_codec);
    cl_registry_free(w->registry);
    cl_avro_schemas_free(w->schemas);
    cl_join_emits_free(&w->emits);
    cl_buf_free(&w->buf);
    cl_buf_free(&w->buf2);
    free(w->snap);
    free(w->outcome);
    free(w->example);
    free(w->parts);
    free(w);
}

/* ---- state dump ------------------------------------------------------------------- */

typedef struct {
    FILE *out;
    int db;
} dump_ctx;

static int dump_one(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    dump_ctx *d = ud;
    cl_store_key_reader r;
    cl_store_key_reader_init(&r, key, klen);
    uint32_t p;
    if (cl_store_key_next_u32(&r, &p) != CL_OK) return CL_EINVAL;
    if (d->db == DB_PARTITIONS) {
        part_meta m;
        if (meta_decode(val, vlen, &m) != CL_OK) return CL_EINVAL;
        fprintf(d->out,
                "partition %" PRIu32 " next_snapshots=%" PRId64 " next_outcomes=%" PRId64
                " wm_snapshots=%" PRId64 " wm_outcomes=%" PRId64 "\n",
                p, m.next[0], m.next[1], m.wm[0], m.wm[1]);
    } else if (d->db == DB_TIMERS) {
        int64_t at;
        const char *id;
        size_t idlen;
        if (cl_store_key_next_i64(&r, &at) != CL_OK ||
            cl_store_key_next_str(&r, &id, &idlen) != CL_OK)
            return CL_EINVAL;
        fprintf(d->out, "timer %" PRIu32 " %" PRId64 " %.*s kind=%u\n", p, at, (int)idlen, id,
                vlen ? ((const uint8_t *)val)[0] : 0u);
    } else {
        cl_join_state st;
        if (cl_join_state_decode(val, vlen, &st, NULL, 0) != CL_OK) return CL_EINVAL;
        fprintf(d->out,
                "state %" PRIu32 " %s snap_off=%" PRId64 " out_off=%" PRId64
                " outcome=%d retracted=%d version=%" PRId64 " close=%" PRId32 " unscored=%d"
                " outcome_hash=%016" PRIx64 " snapshots=",
                p, st.opportunity_id, st.snapshot_offset, st.outcome_offset, st.has_outcome,
                st.outcome_retracted, st.has_outcome ? st.outcome_version : 0,
                st.has_outcome ? st.close_date : 0, st.unscored,
                st.has_outcome ? cl_hash64(st.outcome_payload, st.outcome_payload_len, 0) : 0);
        for (size_t i = 0; i < st.nsnapshots; i++)
            fprintf(d->out, "%s%s@%" PRId64 "#%016" PRIx64, i ? "," : "", st.snapshots[i].id,
                    st.snapshots[i].time_ms,
                    cl_hash64(st.snapshots[i].payload, st.snapshots[i].payload_len, 0));
        fputc('\n', d->out);
        cl_join_state_free(&st);
    }
    return 0;
}

int cl_join_dump_state(const cl_config *cfg, FILE *out, char *err, size_t errlen)
{
    cl_store_config sc;
    int rc = cl_store_config_from(&sc, cfg, err, errlen);
    cl_store *s = NULL;
    if (rc == CL_OK)
        rc = cl_store_open(&s, cl_config_str(cfg, "state.dir"), db_names, &sc, err, errlen);
    if (rc != CL_OK) return rc;
    cl_store_txn *t;
    rc = cl_store_read_begin(s, &t, err, errlen);
    for (int db = DB_PARTITIONS; rc == CL_OK && db >= DB_STATE; db--) {
        dump_ctx d = {out, db};
        rc = cl_store_scan_prefix(t, (unsigned)db, NULL, 0, dump_one, &d, err, errlen);
    }
    if (t) cl_store_read_end(t);
    cl_store_close(s);
    return rc;
}
