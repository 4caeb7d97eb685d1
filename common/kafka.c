/*
 * kafka.c — librdkafka wrappers; see kafka.h for the contract.
 *
 * Invariants kept here:
 *  - a producer's counters satisfy sent == delivered + failed + in_flight, because the
 *    delivery callback runs exactly once for every record producev() accepted;
 *  - a consumer never commits an offset the worker did not store: auto commit and auto
 *    offset store are forced off, and the wrapper commits only on request, on revoke
 *    and on close;
 *  - the partition table (EOF flags) mirrors librdkafka's assignment: it is updated in
 *    the rebalance callback, which runs on the polling thread, so no lock is needed;
 *    only the lag report, written by the statistics callback and read by /metrics, is
 *    guarded by a mutex.
 */
#include "kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "prom.h"
#include "util.h"

extern char *program_invocation_short_name; /* glibc, declared under _GNU_SOURCE */

#define DEFAULT_STATS_INTERVAL_MS "5000"
#define LAG_HISTORY_MAX 128 /* distinct end offsets remembered per partition */
#define ADMIN_SLACK_MS 5000 /* wait for an admin result this much longer than its timeout */

/* ================================================================ configuration */

typedef struct {
    rd_kafka_conf_t *conf;
    cl_kafka_role role;
    char *err;
    size_t errlen;
} conf_ctx;

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *source,
                    char *err, size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "kafka property '%s' (from %s): %s", key, source,
                         why);
    return CL_OK;
}

/* Consumer settings the offset discipline depends on; see kafka.h. */
static const struct {
    const char *key, *value;
} forced_consumer[] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"enable.partition.eof", "true"},
};

static int apply_user_property(const char *key, const char *value, const char *source, void *ud)
{
    conf_ctx *ctx = ud;
    if (ctx->role == CL_KAFKA_CONSUMER) {
        for (size_t i = 0; i < sizeof forced_consumer / sizeof forced_consumer[0]; i++) {
            if (strcmp(key, forced_consumer[i].key) != 0) continue;
            int want = strcmp(forced_consumer[i].value, "true") == 0, got;
            if (cl_parse_bool(value, &got) != CL_OK || got != want)
                return cl_seterr(ctx->err, ctx->errlen, CL_EINVAL,
                                 "kafka.%s=%s (from %s) is not supported: closedloop stores "
                                 "and commits offsets itself after processing and needs "
                                 "%s=%s; remove the setting",
                                 key, value, source, key, forced_consumer[i].value);
        }
    }
    return conf_set(ctx->conf, key, value, source, ctx->err, ctx->errlen);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    /* syslog levels: 0..3 errors, 4 warning, 5..6 notice/info, 7 debug */
    cl_log_level l = level <= 3   ? CL_LOG_ERROR
                     : level == 4 ? CL_LOG_WARN
                     : level <= 6 ? CL_LOG_INFO
                                  : CL_LOG_DEBUG;
    cl_log(l, "librdkafka", "client=%s facility=%s message=\"%s\"", rd_kafka_name(rk), facility,
           buf);
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)code;
    /* Connection errors are retried by librdkafka; the all-brokers-down case is the one
     * an operator needs to see. */
    cl_log_level l = (e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                         ? CL_LOG_ERROR
                         : CL_LOG_WARN;
    cl_log(l, "kafka_error", "client=%s code=%s error=\"%s\"", rd_kafka_name(rk),
           rd_kafka_err2name(e), reason);
}

/* librdkafka before 2.6.1 sends the client nonce twice in the SCRAM client-final-message
 * (librdkafka#4895); brokers with the CVE-2024-56128 fix (Kafka 3.8.1+, every 4.x) answer
 * "invalid credentials" to the right password. Say so once, at start, so the operator
 * does not go hunting for a wrong password. */
#define SCRAM_FIXED_VERSION 0x020601ff

static void warn_scram_client(rd_kafka_conf_t *conf)
{
    static atomic_int warned;
    char mech[64];
    size_t len = sizeof mech;
    if (rd_kafka_version() >= SCRAM_FIXED_VERSION) return;
    if (rd_kafka_conf_get(conf, "sasl.mechanisms", mech, &len) != RD_KAFKA_CONF_OK) return;
    if (strncmp(mech, "SCRAM-", 6) != 0) return;
    if (atomic_exchange(&warned, 1)) return;
    cl_log(CL_LOG_WARN, "kafka_scram_librdkafka_too_old",
           "librdkafka=%s mechanism=%s message=\"librdkafka before 2.6.1 fails SCRAM "
           "authentication against Kafka 3.8.1+ and 4.x brokers with 'invalid credentials' "
           "(librdkafka#4895); link librdkafka 2.6.1 or newer\"",
           rd_kafka_version_str(), mech);
}

int cl_kafka_conf_new(const cl_config *cfg, cl_kafka_role role, const char *client_id,
                      rd_kafka_conf_t **out, char *err, size_t errlen)
{
    *out = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) return cl_seterr(err, errlen, CL_ENOMEM, "rd_kafka_conf_new failed");

    const char *brokers = cl_config_str(cfg, "brokers");
    const char *cid = client_id ? client_id : program_invocation_short_name;
    int rc = CL_OK;
    if (brokers && *brokers)
        rc = conf_set(conf, "bootstrap.servers", brokers, cl_config_source(cfg, "brokers"), err,
                      errlen);
    if (rc == CL_OK && cid && *cid) rc = conf_set(conf, "client.id", cid, "default", err, errlen);

    if (rc == CL_OK && role == CL_KAFKA_PRODUCER) {
        static const char *const defaults[][2] = {
            {"enable.idempotence", "true"},
            {"acks", "all"},
            {"partitioner", "murmur2_random"},
        };
        for (size_t i = 0; rc == CL_OK && i < sizeof defaults / sizeof defaults[0]; i++)
            rc = conf_set(conf, defaults[i][0], defaults[i][1], "default", err, errlen);
    } else if (rc == CL_OK && role == CL_KAFKA_CONSUMER) {
        rc = conf_set(conf, "auto.offset.reset", "earliest", "default", err, errlen);
        if (rc == CL_OK)
            rc = conf_set(conf, "statistics.interval.ms", DEFAULT_STATS_INTERVAL_MS, "default", err,
                          errlen);
    }

    if (rc == CL_OK) {
        conf_ctx ctx = {conf, role, err, errlen};
        rc = cl_config_foreach_prefix(cfg, "kafka.", apply_user_property, &ctx);
    }
    if (rc == CL_OK && role == CL_KAFKA_CONSUMER) {
        for (size_t i = 0; rc == CL_OK && i < sizeof forced_consumer / sizeof forced_consumer[0];
             i++)
            rc = conf_set(conf, forced_consumer[i].key, forced_consumer[i].value, "closedloop", err,
                          errlen);
    }
    if (rc == CL_OK) {
        char bs[8];
        size_t bslen = sizeof bs;
        if (rd_kafka_conf_get(conf, "bootstrap.servers", bs, &bslen) != RD_KAFKA_CONF_OK ||
            bslen <= 1)
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "no Kafka brokers configured: set brokers (--brokers host:port) or "
                           "kafka.bootstrap.servers");
    }
    if (rc != CL_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    warn_scram_client(conf);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    *out = conf;
    return CL_OK;
}

/* ================================================================ shutdown */

static volatile sig_atomic_t stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int cl_kafka_install_signal_handlers(char *err, size_t errlen)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return cl_seterr(err, errlen, CL_ERR, "sigaction: %s", strerror(errno));
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return cl_seterr(err, errlen, CL_ERR, "sigaction(SIGPIPE): %s", strerror(errno));
    return CL_OK;
}

int cl_stop_requested(void)
{
    return stop_flag != 0;
}
void cl_request_stop(void)
{
    stop_flag = 1;
}
void cl_stop_reset(void)
{
    stop_flag = 0;
}

/* ================================================================ messages */

static void message_fill(cl_message *m, rd_kafka_message_t *rkm)
{
    rd_kafka_timestamp_type_t tstype;
    m->topic = rd_kafka_topic_name(rkm->rkt);
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->timestamp_ms = rd_kafka_message_timestamp(rkm, &tstype);
    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) m->timestamp_ms = -1;
    m->key = rkm->key;
    m->key_len = rkm->key ? rkm->key_len : 0;
    m->value = rkm->payload;
    m->value_len = rkm->payload ? rkm->len : 0;
    m->rkmessage = rkm;
}

int cl_message_header(const cl_message *m, const char *name, const void **value, size_t *len)
{
    rd_kafka_headers_t *hdrs;
    if (!m->rkmessage ||
        rd_kafka_message_headers(m->rkmessage, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CL_ENOTFOUND;
    const void *v;
    size_t n;
    if (rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CL_ENOTFOUND;
    *value = v;
    *len = v ? n : 0;
    return CL_OK;
}

size_t cl_message_header_count(const cl_message *m)
{
    rd_kafka_headers_t *hdrs;
    if (!m->rkmessage ||
        rd_kafka_message_headers(m->rkmessage, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return rd_kafka_header_cnt(hdrs);
}

int cl_message_header_at(const cl_message *m, size_t i, cl_kafka_header *out)
{
    rd_kafka_headers_t *hdrs;
    if (!m->rkmessage ||
        rd_kafka_message_headers(m->rkmessage, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CL_ENOTFOUND;
    const char *name;
    const void *v;
    size_t n;
    if (rd_kafka_header_get_all(hdrs, i, &name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CL_ENOTFOUND;
    out->name = name;
    out->value = v;
    out->len = v ? n : 0;
    return CL_OK;
}

void cl_message_release(cl_message *m)
{
    if (m && m->rkmessage) {
        rd_kafka_message_destroy(m->rkmessage);
        memset(m, 0, sizeof *m);
    }
}

void cl_messages_release(cl_message *ms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cl_message_release(&ms[i]);
}

/* ================================================================ producer */

struct cl_producer {
    rd_kafka_t *rk;
    cl_delivery_cb on_delivery;
    void *ud;
    _Atomic uint64_t sent, delivered, failed;
    int transactional;
};

static int delivery_status(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return CL_OK;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return CL_ETIMEOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return CL_ESTOP;
    default:
        return CL_ERR;
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    cl_producer *p = opaque;
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    int status = delivery_status(rkm->err);
    const char *reason = rkm->err ? rd_kafka_err2str(rkm->err) : NULL;
    if (status == CL_OK) {
        atomic_fetch_add(&p->delivered, 1);
    } else {
        atomic_fetch_add(&p->failed, 1);
        if (!p->on_delivery)
            cl_log(CL_LOG_WARN, "delivery_failed", "topic=%s partition=%" PRId32 " error=\"%s\"",
                   topic, rkm->partition, reason);
    }
    if (p->on_delivery)
        p->on_delivery(rkm->_private, status, topic, rkm->partition, rkm->offset, reason, p->ud);
}

int cl_producer_new(const cl_config *cfg, const cl_producer_opts *opts, cl_producer **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    cl_producer *p = calloc(1, sizeof *p);
    if (!p) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory creating a producer");
    rd_kafka_conf_t *conf;
    int rc = cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, opts ? opts->client_id : NULL, &conf, err,
                               errlen);
    if (rc != CL_OK) {
        free(p);
        return rc;
    }
    if (opts && opts->transactional_id) {
        rc = conf_set(conf, "transactional.id", opts->transactional_id, "producer options", err,
                      errlen);
        if (rc != CL_OK) {
            rd_kafka_conf_destroy(conf);
            free(p);
            return rc;
        }
        p->transactional = 1;
    }
    if (opts) {
        p->on_delivery = opts->on_delivery;
        p->ud = opts->ud;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, p);
    char why[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return cl_seterr(err, errlen, CL_EINVAL, "creating Kafka producer: %s", why);
    }
    if (p->transactional) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, 30000);
        if (e) {
            rc = cl_seterr(err, errlen, CL_ERR, "init_transactions (transactional.id %s): %s",
                           opts->transactional_id, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rd_kafka_destroy(p->rk);
            free(p);
            return rc;
        }
    }
    *out = p;
    return CL_OK;
}

int cl_producer_send(cl_producer *p, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len, const cl_kafka_header *headers,
                     size_t nheaders, void *msg_opaque, int queue_wait_ms, char *err, size_t errlen)
{
    return cl_producer_send_partition(p, topic, CL_KAFKA_PARTITION_ANY, key, key_len, value,
                                      value_len, headers, nheaders, msg_opaque, queue_wait_ms, err,
                                      errlen);
}

int cl_producer_send_partition(cl_producer *p, const char *topic, int32_t partition,
                               const void *key, size_t key_len, const void *value, size_t value_len,
                               const cl_kafka_header *headers, size_t nheaders, void *msg_opaque,
                               int queue_wait_ms, char *err, size_t errlen)
{
    rd_kafka_headers_t *hdrs = NULL;
    if (nheaders) {
        hdrs = rd_kafka_headers_new(nheaders);
        for (size_t i = 0; i < nheaders; i++) {
            if (!headers[i].name) {
                rd_kafka_headers_destroy(hdrs);
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "header %zu of a record for %s has no name", i, topic);
            }
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                headers[i].value ? (ssize_t)headers[i].len : 0);
        }
    }
    int64_t deadline = cl_mono_ms() + (queue_wait_ms > 0 ? queue_wait_ms : 0);
    rd_kafka_resp_err_t e;
    for (;;) {
        e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key ? key_len : 0),
            RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_fetch_add(&p->sent, 1); /* the record now owns hdrs */
            return CL_OK;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        int64_t left = deadline - cl_mono_ms();
        if (left <= 0) break;
        /* Serving delivery reports is what frees queue space. */
        rd_kafka_poll(p->rk, left < 100 ? (int)left : 100);
    }
    if (hdrs) rd_kafka_headers_destroy(hdrs);
    switch (e) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return cl_seterr(err, errlen, CL_EAGAIN,
                         "producer queue full for topic %s (queue.buffering.max.messages/kbytes); "
                         "the broker is not keeping up or unreachable",
                         topic);
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return cl_seterr(err, errlen, CL_EINVAL,
                         "record for topic %s is too large (%zu bytes value; message.max.bytes)",
                         topic, value_len);
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return cl_seterr(err, errlen, CL_EINVAL,
                         "topic %s does not exist (run `closedloop topics create`)", topic);
    default:
        return cl_seterr(err, errlen, CL_ERR, "producing to %s: %s", topic, rd_kafka_err2str(e));
    }
}

int cl_producer_poll(cl_producer *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int cl_producer_flush(cl_producer *p, int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, timeout_ms);
    if (e == RD_KAFKA_RESP_ERR__TIMED_OUT)
        return cl_seterr(err, errlen, CL_ETIMEOUT,
                         "%d record(s) still unacknowledged after %d ms flush",
                         rd_kafka_outq_len(p->rk), timeout_ms);
    if (e) return cl_seterr(err, errlen, CL_ERR, "flush: %s", rd_kafka_err2str(e));
    return CL_OK;
}

void cl_producer_counters_get(const cl_producer *p, cl_producer_counters *out)
{
    cl_producer *mp = (cl_producer *)p;
    out->delivered = atomic_load(&mp->delivered);
    out->failed = atomic_load(&mp->failed);
    out->sent = atomic_load(&mp->sent);
    uint64_t done = out->delivered + out->failed;
    out->in_flight = out->sent > done ? out->sent - done : 0;
}

int cl_producer_close(cl_producer *p, int timeout_ms, char *err, size_t errlen)
{
    if (!p) return CL_OK;
    int rc = cl_producer_flush(p, timeout_ms, err, errlen);
    if (rc == CL_ETIMEOUT) {
        int left = rd_kafka_outq_len(p->rk);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        /* Purged records get their (failed) delivery reports through the poll queue. */
        int64_t deadline = cl_mono_ms() + 2000;
        while (rd_kafka_outq_len(p->rk) > 0 && cl_mono_ms() < deadline)
            rd_kafka_poll(p->rk, 50);
        rd_kafka_poll(p->rk, 0);
        cl_log(CL_LOG_WARN, "producer_purged", "records=%d timeout_ms=%d", left, timeout_ms);
    }
    rd_kafka_destroy(p->rk);
    free(p);
    return rc;
}

rd_kafka_t *cl_producer_handle(cl_producer *p)
{
    return p->rk;
}

/* ================================================================ dead-letter queue */

int cl_kafka_dlq_send(cl_producer *p, const char *dlq_topic, const cl_message *src,
                      const char *worker, const char *error, void *msg_opaque, char *err,
                      size_t errlen)
{
    enum { OURS = 5 };
    size_t norig = cl_message_header_count(src);
    cl_kafka_header *h = calloc(norig + OURS, sizeof *h);
    if (!h) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory building DLQ headers");
    size_t n = 0;
    for (size_t i = 0; i < norig; i++)
        if (cl_message_header_at(src, i, &h[n]) == CL_OK) n++;
    char partition[16], offset[24];
    snprintf(partition, sizeof partition, "%" PRId32, src->partition);
    snprintf(offset, sizeof offset, "%" PRId64, src->offset);
    const char *topic = src->topic ? src->topic : "";
    const char *w = worker ? worker : "";
    /* Errors may quote hostile input; keep the header bounded. */
    const char *e = error ? error : "";
    size_t elen = strnlen(e, 1024);
    h[n++] = (cl_kafka_header){"source.topic", topic, strlen(topic)};
    h[n++] = (cl_kafka_header){"source.partition", partition, strlen(partition)};
    h[n++] = (cl_kafka_header){"source.offset", offset, strlen(offset)};
    h[n++] = (cl_kafka_header){"worker", w, strlen(w)};
    h[n++] = (cl_kafka_header){"error", e, elen};
    int rc = cl_producer_send(p, dlq_topic, src->key, src->key_len, src->value, src->value_len, h,
                              n, msg_opaque, 5000, err, errlen);
    free(h);
    return rc;
}

/* ================================================================ consumer */

typedef struct {
    char *topic;
    int32_t partition;
    int eof; /* end reached and nothing returned since */
} part_state;

typedef struct {
    char topic[256];
    int32_t partition;
    cl_lag_sample samples[LAG_HISTORY_MAX];
    size_t n;
} lag_history;

struct cl_consumer {
    rd_kafka_t *rk;
    cl_rebalance_hooks hooks;
    char group[256];
    int has_group;
    part_state *parts;
    size_t nparts, capparts;
    int assigned_once;
    int hook_failed;
    char hook_err[CL_ERRLEN];

    pthread_mutex_t lag_mu; /* guards lag and history, and the broker health below */
    cl_lag_report lag;
    lag_history *history;
    size_t nhistory;

    /* Broker health, from librdkafka's statistics (a broker in state UP) and error events
     * (all brokers down). Unknown until the first statistics: counted as reachable. */
    int brokers_down;
    char brokers_reason[256];
    /* A failed SASL authentication is a configuration error (wrong username or
     * password), not an outage: like the Java consumer, poll reports it. */
    int auth_failed;
    char auth_err[512];
};

static part_state *part_find(cl_consumer *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0)
            return &c->parts[i];
    return NULL;
}

static int part_add(cl_consumer *c, const char *topic, int32_t partition)
{
    if (part_find(c, topic, partition)) return CL_OK;
    if (c->nparts == c->capparts) {
        size_t cap = c->capparts ? c->capparts * 2 : 16;
        part_state *np = realloc(c->parts, cap * sizeof *np);
        if (!np) return CL_ENOMEM;
        c->parts = np;
        c->capparts = cap;
    }
    char *t = strdup(topic);
    if (!t) return CL_ENOMEM;
    c->parts[c->nparts++] = (part_state){t, partition, 0};
    return CL_OK;
}

static void part_remove(cl_consumer *c, const char *topic, int32_t partition)
{
    part_state *p = part_find(c, topic, partition);
    if (!p) return;
    free(p->topic);
    *p = c->parts[--c->nparts];
}

static void parts_clear(cl_consumer *c)
{
    for (size_t i = 0; i < c->nparts; i++)
        free(c->parts[i].topic);
    c->nparts = 0;
}

static cl_topic_partition *tp_from_list(const rd_kafka_topic_partition_list_t *l)
{
    cl_topic_partition *tp = calloc(l->cnt ? (size_t)l->cnt : 1, sizeof *tp);
    if (!tp) return NULL;
    for (int i = 0; i < l->cnt; i++)
        tp[i] = (cl_topic_partition){l->elems[i].topic, l->elems[i].partition,
                                     CL_KAFKA_OFFSET_COMMITTED};
    return tp;
}

static void commit_stored_sync(cl_consumer *c, const char *why)
{
    if (!c->has_group) return;
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        cl_log(CL_LOG_WARN, "commit_failed", "group=%s when=%s error=\"%s\"", c->group, why,
               rd_kafka_err2str(e));
}

static void on_assign(cl_consumer *c, rd_kafka_topic_partition_list_t *l, int cooperative)
{
    if (c->hooks.on_assign && l->cnt > 0) {
        cl_topic_partition *tp = tp_from_list(l);
        if (!tp) {
            c->hook_failed = 1;
            cl_strlcpy(c->hook_err, "out of memory in rebalance", sizeof c->hook_err);
        } else {
            char herr[CL_ERRLEN - 64] = ""; /* room for the prefix below */
            if (c->hooks.on_assign(c, tp, (size_t)l->cnt, c->hooks.ud, herr, sizeof herr) != 0) {
                c->hook_failed = 1;
                snprintf(c->hook_err, sizeof c->hook_err, "on_assign hook failed: %s", herr);
            } else {
                for (int i = 0; i < l->cnt; i++)
                    l->elems[i].offset = tp[i].offset;
            }
            free(tp);
        }
    }
    rd_kafka_error_t *ke = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative)
        ke = rd_kafka_incremental_assign(c->rk, l);
    else
        e = rd_kafka_assign(c->rk, l);
    if (ke || e) {
        c->hook_failed = 1;
        snprintf(c->hook_err, sizeof c->hook_err, "assign failed: %s",
                 ke ? rd_kafka_error_string(ke) : rd_kafka_err2str(e));
        if (ke) rd_kafka_error_destroy(ke);
        return;
    }
    c->assigned_once = 1;
    for (int i = 0; i < l->cnt; i++) {
        if (part_add(c, l->elems[i].topic, l->elems[i].partition) != CL_OK) {
            c->hook_failed = 1;
            cl_strlcpy(c->hook_err, "out of memory tracking the assignment", sizeof c->hook_err);
        }
        cl_log(CL_LOG_INFO, "partition_assigned",
               "group=%s topic=%s partition=%" PRId32 " offset=%" PRId64, c->group,
               l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
    }
}

static void on_revoke(cl_consumer *c, rd_kafka_topic_partition_list_t *l, int cooperative, int lost)
{
    if (c->hooks.on_revoke && l->cnt > 0) {
        cl_topic_partition *tp = tp_from_list(l);
        if (tp) {
            c->hooks.on_revoke(c, tp, (size_t)l->cnt, c->hooks.ud);
            free(tp);
        }
    }
    /* A lost assignment belongs to another member already; its commit would be fenced. */
    if (!lost) commit_stored_sync(c, "revoke");
    rd_kafka_error_t *ke = NULL;
    if (cooperative)
        ke = rd_kafka_incremental_unassign(c->rk, l);
    else
        rd_kafka_assign(c->rk, NULL);
    if (ke) {
        cl_log(CL_LOG_WARN, "unassign_failed", "group=%s error=\"%s\"", c->group,
               rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
    }
    for (int i = 0; i < l->cnt; i++) {
        part_remove(c, l->elems[i].topic, l->elems[i].partition);
        cl_log(CL_LOG_INFO, "partition_revoked", "group=%s topic=%s partition=%" PRId32 " lost=%d",
               c->group, l->elems[i].topic, l->elems[i].partition, lost);
    }
    if (!cooperative) parts_clear(c);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *l,
                         void *opaque)
{
    cl_consumer *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(c, l, cooperative);
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(c, l, cooperative, rd_kafka_assignment_lost(rk));
    } else {
        cl_log(CL_LOG_ERROR, "rebalance_failed", "group=%s error=\"%s\"", c->group,
               rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
        parts_clear(c);
    }
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    cl_consumer *c = opaque;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    cl_log(CL_LOG_WARN, "commit_failed", "group=%s partitions=%d error=\"%s\"", c->group,
           offsets ? offsets->cnt : 0, rd_kafka_err2str(e));
}

static lag_history *history_get(cl_consumer *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->nhistory; i++)
        if (c->history[i].partition == partition && strcmp(c->history[i].topic, topic) == 0)
            return &c->history[i];
    lag_history *nh = realloc(c->history, (c->nhistory + 1) * sizeof *nh);
    if (!nh) return NULL;
    c->history = nh;
    lag_history *h = &c->history[c->nhistory++];
    memset(h, 0, sizeof *h);
    cl_strlcpy(h->topic, topic, sizeof h->topic);
    h->partition = partition;
    return h;
}

static void history_record(lag_history *h, int64_t end_offset, int64_t now_ms)
{
    if (end_offset < 0) return;
    if (h->n > 0 && h->samples[h->n - 1].end_offset == end_offset) {
        h->samples[h->n - 1].last_seen_ms = now_ms;
        return;
    }
    if (h->n == LAG_HISTORY_MAX) {
        memmove(&h->samples[0], &h->samples[1], (LAG_HISTORY_MAX - 1) * sizeof h->samples[0]);
        h->n--;
    }
    h->samples[h->n++] = (cl_lag_sample){end_offset, now_ms, now_ms};
}

/* Reads the per-broker states of a statistics document: *up is 1 if any broker is UP;
 * desc lists the others as "host:port=STATE". Returns CL_ERR when there is no "brokers"
 * object to judge by. */
static int stats_broker_health(const char *json, size_t len, int *up, char *desc, size_t desclen)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    if (!json_is_object(brokers)) {
        json_decref(root);
        return CL_ERR;
    }
    *up = 0;
    size_t used = 0;
    desc[0] = '\0';
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        if (!state) continue;
        if (strcmp(state, "UP") == 0) *up = 1;
        /* Bootstrap entries (nodeid -1) idle in INIT once the cluster is known. */
        if (json_integer_value(json_object_get(b, "nodeid")) < 0) continue;
        if (used + 1 < desclen) {
            int w = snprintf(desc + used, desclen - used, "%s%s=%s", used ? " " : "", name, state);
            if (w > 0) used += (size_t)w < desclen - used ? (size_t)w : desclen - used - 1;
        }
    }
    json_decref(root);
    return CL_OK;
}

static void consumer_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    cl_consumer *c = opaque;
    error_cb(rk, code, reason, opaque);
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)code;
    pthread_mutex_lock(&c->lag_mu);
    if (e == RD_KAFKA_RESP_ERR__AUTHENTICATION && !c->auth_failed) {
        c->auth_failed = 1;
        snprintf(c->auth_err, sizeof c->auth_err, "%s", reason ? reason : "authentication failed");
    } else if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        c->brokers_down = 1;
        snprintf(c->brokers_reason, sizeof c->brokers_reason, "all brokers down: %s",
                 reason ? reason : "");
    }
    pthread_mutex_unlock(&c->lag_mu);
}

int cl_consumer_broker_health(cl_consumer *c, char *reason, size_t reasonlen)
{
    pthread_mutex_lock(&c->lag_mu);
    int ok = !c->brokers_down && !c->auth_failed;
    if (!ok && reason && reasonlen)
        snprintf(reason, reasonlen, "Kafka broker unreachable (group %s): %s", c->group,
                 c->auth_failed ? c->auth_err : c->brokers_reason);
    pthread_mutex_unlock(&c->lag_mu);
    return ok;
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    cl_consumer *c = opaque;
    cl_lag_report r;
    char err[CL_ERRLEN];
    int up;
    char desc[200];
    if (stats_broker_health(json, len, &up, desc, sizeof desc) == CL_OK) {
        pthread_mutex_lock(&c->lag_mu);
        if (!up && !c->brokers_down)
            cl_log(CL_LOG_WARN, "kafka_brokers_down", "client=%s group=%s brokers=\"%s\"",
                   rd_kafka_name(rk), c->group, desc);
        else if (up && c->brokers_down)
            cl_log(CL_LOG_INFO, "kafka_brokers_up", "client=%s group=%s", rd_kafka_name(rk),
                   c->group);
        c->brokers_down = !up;
        if (!up)
            snprintf(c->brokers_reason, sizeof c->brokers_reason, "no broker connection (%s)",
                     desc[0] ? desc : "no broker known yet");
        pthread_mutex_unlock(&c->lag_mu);
    }
    if (cl_kafka_parse_stats_lag(json, len, &r, err, sizeof err) != CL_OK) {
        cl_log(CL_LOG_WARN, "stats_unparsable", "client=%s error=\"%s\"", rd_kafka_name(rk), err);
        return 0;
    }
    int64_t now = cl_now_ms();
    r.updated_ms = now;
    pthread_mutex_lock(&c->lag_mu);
    for (size_t i = 0; i < r.n; i++) {
        cl_partition_lag *pl = &r.parts[i];
        cl_strlcpy(pl->group, c->group, sizeof pl->group);
        lag_history *h = history_get(c, pl->topic, pl->partition);
        if (!h) continue;
        history_record(h, pl->end_offset, now);
        if (pl->lag == 0)
            pl->lag_seconds = 0;
        else if (pl->lag > 0)
            pl->lag_seconds =
                cl_kafka_estimate_lag_seconds(h->samples, h->n, pl->committed_offset, now);
    }
    cl_lag_report_free(&c->lag);
    c->lag = r;
    pthread_mutex_unlock(&c->lag_mu);
    return 0; /* librdkafka frees json */
}

static int assign_whole_topics_once(cl_consumer *c, const char *const *topics, size_t ntopics,
                                    char *err, size_t errlen);

/* A topic created a moment ago may not be in every broker's metadata yet: a missing
 * topic is looked up again for a few seconds before it is reported as missing. */
static int assign_whole_topics(cl_consumer *c, const char *const *topics, size_t ntopics, char *err,
                               size_t errlen)
{
    int64_t deadline = cl_mono_ms() + 5000;
    for (;;) {
        int rc = assign_whole_topics_once(c, topics, ntopics, err, errlen);
        if (rc != CL_ENOTFOUND || cl_mono_ms() >= deadline) return rc;
        cl_sleep_ms(250);
    }
}

static int assign_whole_topics_once(cl_consumer *c, const char *const *topics, size_t ntopics,
                                    char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 1, NULL, &md, 10000);
    if (e)
        return cl_seterr(err, errlen, CL_EIO, "fetching metadata for %s: %s", topics[0],
                         rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    int rc = CL_OK;
    for (size_t t = 0; t < ntopics && rc == CL_OK; t++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topics[t]) == 0) mt = &md->topics[i];
        if (!mt || mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            rc = cl_seterr(err, errlen, CL_ENOTFOUND,
                           "topic %s does not exist (run `closedloop topics create`)", topics[t]);
        } else if (mt->err) {
            rc = cl_seterr(err, errlen, CL_EIO, "metadata for topic %s: %s", topics[t],
                           rd_kafka_err2str(mt->err));
        } else {
            for (int p = 0; p < mt->partition_cnt; p++)
                rd_kafka_topic_partition_list_add(l, topics[t], mt->partitions[p].id)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (rc == CL_OK) {
        e = rd_kafka_assign(c->rk, l);
        if (e) rc = cl_seterr(err, errlen, CL_ERR, "assign %s: %s", topics[0], rd_kafka_err2str(e));
    }
    for (int i = 0; rc == CL_OK && i < l->cnt; i++)
        if (part_add(c, l->elems[i].topic, l->elems[i].partition) != CL_OK)
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory tracking partitions");
    if (rc == CL_OK) c->assigned_once = 1;
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int cl_consumer_new(const cl_config *cfg, const cl_consumer_opts *opts, cl_consumer **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (!opts || !opts->topics || opts->ntopics == 0)
        return cl_seterr(err, errlen, CL_EINVAL, "a consumer needs at least one topic");
    for (size_t i = 0; i < opts->ntopics; i++)
        if (!opts->topics[i] || !*opts->topics[i])
            return cl_seterr(err, errlen, CL_EINVAL, "consumer topic %zu is empty", i);
    cl_consumer *c = calloc(1, sizeof *c);
    if (!c) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory creating a consumer");
    pthread_mutex_init(&c->lag_mu, NULL);
    c->hooks = opts->hooks;

    rd_kafka_conf_t *conf;
    int rc = cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, opts->client_id, &conf, err, errlen);
    if (rc != CL_OK) goto fail;
    if (!opts->read_to_end) {
        const char *g = opts->group_id ? opts->group_id : cl_config_str(cfg, "group.id");
        char dflt[256];
        if (!g || !*g) {
            const char *prog = program_invocation_short_name;
            if (strncmp(prog, "closedloop-", 11) == 0) prog += 11;
            snprintf(dflt, sizeof dflt, "closedloop-%s", prog);
            g = dflt;
        }
        if (cl_strlcpy(c->group, g, sizeof c->group) != CL_OK) {
            rd_kafka_conf_destroy(conf);
            rc = cl_seterr(err, errlen, CL_EINVAL, "group.id is longer than %zu bytes",
                           sizeof c->group - 1);
            goto fail;
        }
        rc = conf_set(conf, "group.id", c->group, cl_config_source(cfg, "group.id"), err, errlen);
        if (rc != CL_OK) {
            rd_kafka_conf_destroy(conf);
            goto fail;
        }
        c->has_group = 1;
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    } else {
        /* librdkafka (2.0) refuses assign() without a group.id, although assign() never
         * joins the group. A unique, never-committed id keeps readers from sharing
         * anything; has_group stays 0, so nothing is ever committed under it. */
        static atomic_uint readers;
        snprintf(c->group, sizeof c->group, "closedloop-reader-%.64s-%ld-%u",
                 program_invocation_short_name, (long)getpid(), atomic_fetch_add(&readers, 1));
        rc = conf_set(conf, "group.id", c->group, "reader", err, errlen);
        if (rc != CL_OK) {
            rd_kafka_conf_destroy(conf);
            goto fail;
        }
    }
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
    rd_kafka_conf_set_opaque(conf, c);

    char why[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        rc = cl_seterr(err, errlen, CL_EINVAL, "creating Kafka consumer: %s", why);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);

    if (opts->read_to_end) {
        rc = assign_whole_topics(c, opts->topics, opts->ntopics, err, errlen);
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)opts->ntopics);
        for (size_t i = 0; i < opts->ntopics; i++)
            rd_kafka_topic_partition_list_add(l, opts->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e)
            rc = cl_seterr(err, errlen, CL_ERR, "subscribe to %s (group %s): %s", opts->topics[0],
                           c->group, rd_kafka_err2str(e));
    }
    if (rc != CL_OK) {
        rd_kafka_destroy(c->rk);
        goto fail;
    }
    *out = c;
    return CL_OK;
fail:
    pthread_mutex_destroy(&c->lag_mu);
    free(c);
    return rc;
}

static int consumer_error(cl_consumer *c, const rd_kafka_message_t *rkm, char *err, size_t errlen)
{
    const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "-";
    switch (rkm->err) {
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "topic %s does not exist (run `closedloop topics create`): %s", topic,
                         rd_kafka_message_errstr(rkm));
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        return cl_seterr(err, errlen, CL_ERR, "not authorized (topic %s, group %s): %s", topic,
                         c->group, rd_kafka_message_errstr(rkm));
    default:
        break;
    }
    char fatal[512];
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(c->rk, fatal, sizeof fatal);
    if (fe)
        return cl_seterr(err, errlen, CL_ERR, "fatal consumer error (group %s): %s: %s", c->group,
                         rd_kafka_err2name(fe), fatal);
    cl_log(CL_LOG_WARN, "consume_error", "group=%s topic=%s partition=%" PRId32 " error=\"%s\"",
           c->group, topic, rkm->partition, rd_kafka_message_errstr(rkm));
    return CL_OK;
}

int cl_consumer_poll(cl_consumer *c, cl_message *out, size_t max, size_t *n, int timeout_ms,
                     char *err, size_t errlen)
{
    *n = 0;
    int64_t deadline = cl_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rc = CL_OK;
    while (*n < max) {
        if (c->hook_failed) {
            rc = cl_seterr(err, errlen, CL_ERR, "group %s: %s", c->group, c->hook_err);
            break;
        }
        pthread_mutex_lock(&c->lag_mu);
        int auth_failed = c->auth_failed;
        if (auth_failed)
            cl_seterr(err, errlen, CL_ERR,
                      "Kafka authentication failed (group %s): %s; check kafka.sasl.username, "
                      "kafka.sasl.password, kafka.sasl.mechanisms and kafka.ssl.ca.location",
                      c->group, c->auth_err);
        pthread_mutex_unlock(&c->lag_mu);
        if (auth_failed) {
            rc = CL_ERR;
            break;
        }
        int64_t left = deadline - cl_mono_ms();
        int wait = (*n == 0 && left > 0) ? (int)left : 0;
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, wait);
        if (!rkm) {
            if (*n > 0 || wait == 0) break;
            continue;
        }
        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            part_state *ps = part_find(c, rd_kafka_topic_name(rkm->rkt), rkm->partition);
            if (ps) ps->eof = 1;
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (rkm->err) {
            rc = consumer_error(c, rkm, err, errlen);
            rd_kafka_message_destroy(rkm);
            if (rc != CL_OK) break;
            continue;
        }
        part_state *ps = part_find(c, rd_kafka_topic_name(rkm->rkt), rkm->partition);
        if (ps) ps->eof = 0;
        message_fill(&out[(*n)++], rkm);
    }
    if (rc != CL_OK) {
        cl_messages_release(out, *n);
        *n = 0;
    }
    return rc;
}

int cl_consumer_store_offsets(cl_consumer *c, const cl_topic_partition *parts, size_t n, char *err,
                              size_t errlen)
{
    if (!c->has_group || n == 0) return CL_OK;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, parts[i].topic, parts[i].partition)->offset =
            parts[i].offset;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    int rc = CL_OK;
    if (e) {
        /* Per-partition errors: the partition is no longer assigned (revoked since it
         * was polled); its new owner will reprocess from the last commit. */
        for (int i = 0; i < l->cnt; i++) {
            if (!l->elems[i].err) continue;
            rc = cl_seterr(err, errlen, CL_ECONFLICT,
                           "cannot store offset %" PRId64 " for %s [%" PRId32 "]: %s",
                           l->elems[i].offset, l->elems[i].topic, l->elems[i].partition,
                           rd_kafka_err2str(l->elems[i].err));
            break;
        }
        if (rc == CL_OK)
            rc = cl_seterr(err, errlen, CL_ERR, "storing offsets: %s", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int cl_consumer_store(cl_consumer *c, const cl_message *m, char *err, size_t errlen)
{
    cl_topic_partition tp = {m->topic, m->partition, m->offset + 1};
    return cl_consumer_store_offsets(c, &tp, 1, err, errlen);
}

int cl_consumer_commit(cl_consumer *c, int async, char *err, size_t errlen)
{
    if (!c->has_group) return CL_OK;
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, async);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET) return CL_OK;
    return cl_seterr(err, errlen, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? CL_ETIMEOUT : CL_ERR,
                     "committing offsets of group %s: %s", c->group, rd_kafka_err2str(e));
}

int cl_consumer_seek(cl_consumer *c, const char *topic, int32_t partition, int64_t offset,
                     int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_error_t *ke = rd_kafka_seek_partitions(c->rk, l, timeout_ms);
    int rc = CL_OK;
    if (ke) {
        rc = cl_seterr(err, errlen, CL_ERR, "seek %s [%" PRId32 "] to %" PRId64 ": %s", topic,
                       partition, offset, rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
    } else if (l->elems[0].err) {
        rc = cl_seterr(err, errlen, CL_ERR, "seek %s [%" PRId32 "] to %" PRId64 ": %s", topic,
                       partition, offset, rd_kafka_err2str(l->elems[0].err));
    }
    if (rc == CL_OK) {
        part_state *ps = part_find(c, topic, partition);
        if (ps) ps->eof = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int cl_consumer_committed(cl_consumer *c, cl_topic_partition **out, size_t *n, int timeout_ms,
                          char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_resp_err_t e = rd_kafka_assignment(c->rk, &l);
    if (e) return cl_seterr(err, errlen, CL_ERR, "assignment: %s", rd_kafka_err2str(e));
    int rc = CL_OK;
    if (l->cnt > 0 && c->has_group) {
        e = rd_kafka_committed(c->rk, l, timeout_ms);
        if (e)
            rc = cl_seterr(err, errlen, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? CL_ETIMEOUT : CL_ERR,
                           "committed offsets of group %s: %s", c->group, rd_kafka_err2str(e));
    }
    if (rc == CL_OK && l->cnt > 0) {
        /* One block: the array, then the topic names it points into. */
        size_t names = 0;
        for (int i = 0; i < l->cnt; i++)
            names += strlen(l->elems[i].topic) + 1;
        cl_topic_partition *tp = malloc((size_t)l->cnt * sizeof *tp + names);
        if (!tp) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        } else {
            char *s = (char *)(tp + l->cnt);
            for (int i = 0; i < l->cnt; i++) {
                size_t len = strlen(l->elems[i].topic) + 1;
                memcpy(s, l->elems[i].topic, len);
                tp[i] = (cl_topic_partition){s, l->elems[i].partition,
                                             c->has_group ? l->elems[i].offset
                                                          : CL_KAFKA_OFFSET_COMMITTED};
                s += len;
            }
            *out = tp;
            *n = (size_t)l->cnt;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int cl_consumer_at_end(cl_consumer *c)
{
    if (!c->assigned_once || c->nparts == 0) return 0;
    for (size_t i = 0; i < c->nparts; i++)
        if (!c->parts[i].eof) return 0;
    return 1;
}

size_t cl_consumer_assignment_count(cl_consumer *c)
{
    return c->nparts;
}

int cl_consumer_close(cl_consumer *c, int timeout_ms, char *err, size_t errlen)
{
    if (!c) return CL_OK;
    int rc = CL_OK;
    if (c->has_group) {
        /* Commit what was stored first, so a slow leave cannot lose it; the revoke hook
         * during close commits anything the hook itself stores. */
        rc = cl_consumer_commit(c, 0, err, errlen);
    }
    /* Close in the background and serve its queue ourselves, so that the revoke hook
     * (and its commit) runs here and the whole close is bounded by timeout_ms. */
    int timed_out = 0;
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *ke = rd_kafka_consumer_close_queue(c->rk, q);
    if (ke) {
        if (rc == CL_OK)
            rc = cl_seterr(err, errlen, CL_ERR, "closing consumer (group %s): %s", c->group,
                           rd_kafka_error_string(ke));
        rd_kafka_error_destroy(ke);
    } else {
        int64_t deadline = cl_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        while (!rd_kafka_consumer_closed(c->rk)) {
            if (cl_mono_ms() >= deadline) {
                timed_out = 1;
                break;
            }
            /* Events, not callbacks: librdkafka 2.0's queue_poll_callback asserts on
             * the close operation. Rebalance events go to the same handler as during
             * polling, so on_revoke runs and the stored offsets are committed. */
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
            if (!ev) continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                rebalance_cb(c->rk, rd_kafka_event_error(ev),
                             rd_kafka_event_topic_partition_list(ev), c);
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    if (timed_out) {
        cl_log(CL_LOG_WARN, "consumer_close_timeout", "group=%s timeout_ms=%d", c->group,
               timeout_ms);
        if (rc == CL_OK)
            rc = cl_seterr(err, errlen, CL_ETIMEOUT,
                           "consumer (group %s) did not leave the group within %d ms; the "
                           "broker will expire it after session.timeout.ms",
                           c->group, timeout_ms);
        rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    } else {
        rd_kafka_destroy(c->rk);
    }
    parts_clear(c);
    free(c->parts);
    cl_lag_report_free(&c->lag);
    free(c->history);
    pthread_mutex_destroy(&c->lag_mu);
    free(c);
    return rc;
}

rd_kafka_t *cl_consumer_handle(cl_consumer *c)
{
    return c->rk;
}

/* ================================================================ lag */

static int64_t json_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return -1;
    json_int_t i = json_integer_value(v);
    return i < 0 ? -1 : (int64_t)i;
}

static int lag_cmp(const void *a, const void *b)
{
    const cl_partition_lag *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c) return c;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

int cl_kafka_parse_stats_lag(const char *json, size_t len, cl_lag_report *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cl_seterr(err, errlen, CL_EINVAL, "statistics JSON line %d column %d: %s", je.line,
                         je.column, je.text);
    int rc = CL_OK;
    json_t *type = json_object_get(root, "type");
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_object(root) || !json_is_string(type)) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "not librdkafka statistics: no \"type\" string");
        goto done;
    }
    if (topics && !json_is_object(topics)) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "statistics: \"topics\" is not an object");
        goto done;
    }
    size_t cap = 0;
    const char *tname;
    json_t *tobj;
    json_object_foreach(topics, tname, tobj)
    {
        json_t *parts = json_object_get(tobj, "partitions");
        if (!json_is_object(parts)) continue;
        const char *pkey;
        json_t *pobj;
        json_object_foreach(parts, pkey, pobj)
        {
            if (!json_is_object(pobj)) continue;
            json_t *pid = json_object_get(pobj, "partition");
            if (!json_is_integer(pid)) continue;
            json_int_t partition = json_integer_value(pid);
            /* -1 is librdkafka's internal "unassigned" partition. */
            if (partition < 0 || partition > INT32_MAX) continue;
            json_t *fs = json_object_get(pobj, "fetch_state");
            if (!json_is_string(fs) || strcmp(json_string_value(fs), "none") == 0) continue;
            if (strlen(tname) >= sizeof out->parts[0].topic) {
                rc = cl_seterr(err, errlen, CL_EINVAL,
                               "statistics: topic name longer than %zu bytes",
                               sizeof out->parts[0].topic - 1);
                goto done;
            }
            if (out->n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                cl_partition_lag *np = realloc(out->parts, ncap * sizeof *np);
                if (!np) {
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory parsing statistics");
                    goto done;
                }
                out->parts = np;
                cap = ncap;
            }
            cl_partition_lag *pl = &out->parts[out->n++];
            memset(pl, 0, sizeof *pl);
            cl_strlcpy(pl->topic, tname, sizeof pl->topic);
            pl->partition = (int32_t)partition;
            pl->committed_offset = json_int(pobj, "committed_offset");
            pl->end_offset = json_int(pobj, "hi_offset");
            /* librdkafka's consumer_lag already uses the last stable offset under
             * read_committed; fall back to computing it. */
            int64_t lag = json_int(pobj, "consumer_lag");
            if (lag < 0 && pl->committed_offset >= 0 && pl->end_offset >= 0)
                lag = pl->end_offset > pl->committed_offset ? pl->end_offset - pl->committed_offset
                                                            : 0;
            if (pl->committed_offset < 0) lag = -1; /* nothing committed: unknown, not zero */
            pl->lag = lag;
            pl->lag_seconds = -1;
        }
    }
    json_t *t = json_object_get(root, "time");
    if (json_is_integer(t) && json_integer_value(t) > 0)
        out->updated_ms = (int64_t)json_integer_value(t) * 1000;
    if (out->n > 1) qsort(out->parts, out->n, sizeof out->parts[0], lag_cmp);
done:
    json_decref(root);
    if (rc != CL_OK) cl_lag_report_free(out);
    return rc;
}

void cl_lag_report_free(cl_lag_report *r)
{
    if (!r) return;
    free(r->parts);
    memset(r, 0, sizeof *r);
}

double cl_kafka_estimate_lag_seconds(const cl_lag_sample *s, size_t n, int64_t committed,
                                     int64_t now_ms)
{
    if (committed < 0 || n == 0) return -1;
    if (s[n - 1].end_offset <= committed) return 0;
    /* First sample whose end passed `committed`: the record at `committed` was appended
     * after the previous sample was last seen and by the time this one was first seen. */
    size_t i = 0;
    while (i < n && s[i].end_offset <= committed)
        i++;
    if (i == 0) return (double)(now_ms - s[0].first_seen_ms) / 1000.0;
    const cl_lag_sample *a = &s[i - 1], *b = &s[i];
    double frac = (double)(committed - a->end_offset + 1) / (double)(b->end_offset - a->end_offset);
    if (frac > 1) frac = 1;
    double appended = (double)a->last_seen_ms + frac * (double)(b->first_seen_ms - a->last_seen_ms);
    double age = ((double)now_ms - appended) / 1000.0;
    return age < 0 ? 0 : age;
}

int cl_consumer_lag(cl_consumer *c, cl_lag_report *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->lag_mu);
    int rc = CL_OK;
    if (c->lag.n > 0) {
        out->parts = malloc(c->lag.n * sizeof *out->parts);
        if (!out->parts) {
            rc = CL_ENOMEM;
        } else {
            memcpy(out->parts, c->lag.parts, c->lag.n * sizeof *out->parts);
            out->n = c->lag.n;
        }
    }
    out->updated_ms = c->lag.updated_ms;
    pthread_mutex_unlock(&c->lag_mu);
    return rc;
}

/* ================================================================ administration */

typedef struct {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
} admin;

static int admin_open(const cl_config *cfg, admin *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    rd_kafka_conf_t *conf;
    int rc = cl_kafka_conf_new(cfg, CL_KAFKA_ADMIN, NULL, &conf, err, errlen);
    if (rc != CL_OK) return rc;
    char why[512];
    a->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!a->rk) {
        rd_kafka_conf_destroy(conf);
        return cl_seterr(err, errlen, CL_EINVAL, "creating Kafka admin client: %s", why);
    }
    a->q = rd_kafka_queue_new(a->rk);
    return CL_OK;
}

static void admin_close(admin *a)
{
    if (a->q) rd_kafka_queue_destroy(a->q);
    if (a->rk) rd_kafka_destroy(a->rk);
}

static rd_kafka_AdminOptions_t *admin_options(admin *a, rd_kafka_admin_op_t op, int timeout_ms)
{
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, op);
    char why[256];
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, why, sizeof why);
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_DELETETOPICS)
        rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, why, sizeof why);
    return o;
}

/* Wait for the admin result of type `want`; NULL with err set on timeout or failure. */
static rd_kafka_event_t *admin_wait(admin *a, rd_kafka_event_type_t want, int timeout_ms,
                                    const char *what, char *err, size_t errlen, int *rc)
{
    int64_t deadline = cl_mono_ms() + timeout_ms + ADMIN_SLACK_MS;
    for (;;) {
        int64_t left = deadline - cl_mono_ms();
        if (left <= 0) {
            *rc = cl_seterr(err, errlen, CL_ETIMEOUT, "%s: no answer from the brokers within %d ms",
                            what, timeout_ms);
            return NULL;
        }
        rd_kafka_event_t *ev = rd_kafka_queue_poll(a->q, (int)left);
        if (!ev) continue;
        if (rd_kafka_event_type(ev) != want) {
            rd_kafka_event_destroy(ev);
            continue;
        }
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (e) {
            *rc = cl_seterr(err, errlen, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? CL_ETIMEOUT : CL_ERR,
                            "%s: %s", what, rd_kafka_event_error_string(ev));
            rd_kafka_event_destroy(ev);
            return NULL;
        }
        *rc = CL_OK;
        return ev;
    }
}

int cl_kafka_create_topics(const cl_config *cfg, const cl_topic_spec *specs, size_t n,
                           cl_topic_create_result *results, int timeout_ms, char *err,
                           size_t errlen)
{
    if (n == 0) return CL_OK;
    admin a;
    int rc = admin_open(cfg, &a, err, errlen);
    if (rc != CL_OK) return rc;
    rd_kafka_NewTopic_t **nt = calloc(n, sizeof *nt);
    if (!nt) {
        admin_close(&a);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    char why[512];
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        nt[i] = rd_kafka_NewTopic_new(specs[i].name, specs[i].partitions,
                                      specs[i].replication_factor, why, sizeof why);
        if (!nt[i]) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "topic %s: %s", specs[i].name, why);
            break;
        }
        for (const char *const *kv = specs[i].configs; kv && kv[0] && rc == CL_OK; kv += 2) {
            if (!kv[1]) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "topic %s: config %s has no value",
                               specs[i].name, kv[0]);
            } else if (rd_kafka_NewTopic_set_config(nt[i], kv[0], kv[1])) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "topic %s: bad config %s=%s", specs[i].name,
                               kv[0], kv[1]);
            }
        }
    }
    if (rc == CL_OK) {
        rd_kafka_AdminOptions_t *o = admin_options(&a, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms);
        rd_kafka_CreateTopics(a.rk, nt, n, o, a.q);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_event_t *ev = admin_wait(&a, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms,
                                          "create topics", err, errlen, &rc);
        if (ev) {
            size_t cnt;
            const rd_kafka_topic_result_t **tr =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
            for (size_t i = 0; i < cnt && rc == CL_OK; i++) {
                const char *name = rd_kafka_topic_result_name(tr[i]);
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
                size_t idx = 0;
                while (idx < n && strcmp(specs[idx].name, name) != 0)
                    idx++;
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR ||
                    e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                    if (results && idx < n) results[idx] = e ? CL_TOPIC_EXISTED : CL_TOPIC_CREATED;
                } else {
                    const char *msg = rd_kafka_topic_result_error_string(tr[i]);
                    rc = cl_seterr(err, errlen, CL_ERR, "creating topic %s: %s: %s", name,
                                   rd_kafka_err2name(e), msg ? msg : rd_kafka_err2str(e));
                }
            }
            rd_kafka_event_destroy(ev);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    admin_close(&a);
    return rc;
}

int cl_kafka_delete_topics(const cl_config *cfg, const char *const *names, size_t n, int timeout_ms,
                           char *err, size_t errlen)
{
    if (n == 0) return CL_OK;
    admin a;
    int rc = admin_open(cfg, &a, err, errlen);
    if (rc != CL_OK) return rc;
    rd_kafka_DeleteTopic_t **dt = calloc(n, sizeof *dt);
    if (!dt) {
        admin_close(&a);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        dt[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_AdminOptions_t *o = admin_options(&a, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout_ms);
    rd_kafka_DeleteTopics(a.rk, dt, n, o, a.q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = admin_wait(&a, RD_KAFKA_EVENT_DELETETOPICS_RESULT, timeout_ms,
                                      "delete topics", err, errlen, &rc);
    if (ev) {
        size_t cnt;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
        for (size_t i = 0; i < cnt && rc == CL_OK; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                rc = cl_seterr(err, errlen, CL_ERR, "deleting topic %s: %s",
                               rd_kafka_topic_result_name(tr[i]), rd_kafka_err2str(e));
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_DeleteTopic_destroy_array(dt, n);
    free(dt);
    admin_close(&a);
    return rc;
}

void cl_topic_infos_free(cl_topic_info *infos, size_t n)
{
    if (!infos) return;
    for (size_t i = 0; i < n; i++) {
        free(infos[i].name);
        for (size_t j = 0; j < infos[i].nconfigs; j++) {
            free(infos[i].configs[j].name);
            free(infos[i].configs[j].value);
        }
        free(infos[i].configs);
    }
    free(infos);
}

const char *cl_topic_info_config(const cl_topic_info *t, const char *name)
{
    for (size_t i = 0; i < t->nconfigs; i++)
        if (strcmp(t->configs[i].name, name) == 0) return t->configs[i].value;
    return NULL;
}

static int describe_configs(admin *a, const char *const *names, size_t n, cl_topic_info *infos,
                            int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_ConfigResource_t **res = calloc(n, sizeof *res);
    if (!res) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, names[i]);
    rd_kafka_AdminOptions_t *o = admin_options(a, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms);
    rd_kafka_DescribeConfigs(a->rk, res, n, o, a->q);
    rd_kafka_AdminOptions_destroy(o);
    int rc;
    rd_kafka_event_t *ev = admin_wait(a, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, timeout_ms,
                                      "describe topic configs", err, errlen, &rc);
    if (ev) {
        size_t cnt;
        const rd_kafka_ConfigResource_t **rr = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &cnt);
        for (size_t r = 0; r < cnt && rc == CL_OK; r++) {
            const char *rname = rd_kafka_ConfigResource_name(rr[r]);
            if (rd_kafka_ConfigResource_error(rr[r])) {
                rc = cl_seterr(err, errlen, CL_ERR, "configs of topic %s: %s", rname,
                               rd_kafka_ConfigResource_error_string(rr[r]));
                break;
            }
            cl_topic_info *t = NULL;
            for (size_t i = 0; i < n; i++)
                if (strcmp(infos[i].name, rname) == 0) t = &infos[i];
            if (!t) continue;
            size_t ne;
            const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rr[r], &ne);
            t->configs = calloc(ne ? ne : 1, sizeof *t->configs);
            if (!t->configs) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
                break;
            }
            for (size_t j = 0; j < ne; j++) {
                const char *v = rd_kafka_ConfigEntry_value(ce[j]);
                cl_topic_config_entry *e = &t->configs[t->nconfigs];
                e->name = strdup(rd_kafka_ConfigEntry_name(ce[j]));
                e->value = v ? strdup(v) : NULL;
                e->is_default = rd_kafka_ConfigEntry_source(ce[j]) !=
                                RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG;
                t->nconfigs++;
                if (!e->name || (v && !e->value)) {
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
                    break;
                }
            }
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_ConfigResource_destroy_array(res, n);
    free(res);
    return rc;
}

int cl_kafka_describe_topics(const cl_config *cfg, const char *const *names, size_t n,
                             cl_topic_info **out, int timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (n == 0) return CL_OK;
    admin a;
    int rc = admin_open(cfg, &a, err, errlen);
    if (rc != CL_OK) return rc;
    cl_topic_info *infos = calloc(n, sizeof *infos);
    const struct rd_kafka_metadata *md = NULL;
    if (!infos) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto done;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(a.rk, 1, NULL, &md, timeout_ms);
    if (e) {
        rc = cl_seterr(err, errlen, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? CL_ETIMEOUT : CL_EIO,
                       "fetching cluster metadata: %s", rd_kafka_err2str(e));
        goto done;
    }
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        for (int j = 0; j < md->topic_cnt; j++)
            if (strcmp(md->topics[j].topic, names[i]) == 0) mt = &md->topics[j];
        if (!mt || mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            rc = cl_seterr(err, errlen, CL_ENOTFOUND, "topic %s does not exist", names[i]);
            break;
        }
        infos[i].name = strdup(names[i]);
        if (!infos[i].name) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            break;
        }
        infos[i].partitions = mt->partition_cnt;
        infos[i].replication_factor = mt->partition_cnt > 0 ? mt->partitions[0].replica_cnt : 0;
    }
    if (rc == CL_OK) rc = describe_configs(&a, names, n, infos, timeout_ms, err, errlen);
done:
    if (md) rd_kafka_metadata_destroy(md);
    admin_close(&a);
    if (rc != CL_OK) {
        cl_topic_infos_free(infos, n);
        return rc;
    }
    *out = infos;
    return CL_OK;
}

void cl_kafka_strings_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cl_kafka_list_groups(const cl_config *cfg, char ***out, size_t *n, int timeout_ms, char *err,
                         size_t errlen)
{
    *out = NULL;
    *n = 0;
    admin a;
    int rc = admin_open(cfg, &a, err, errlen);
    if (rc != CL_OK) return rc;
    rd_kafka_AdminOptions_t *o =
        admin_options(&a, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout_ms);
    rd_kafka_ListConsumerGroups(a.rk, o, a.q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = admin_wait(&a, RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT, timeout_ms,
                                      "list consumer groups", err, errlen, &rc);
    if (ev) {
        const rd_kafka_ListConsumerGroups_result_t *res =
            rd_kafka_event_ListConsumerGroups_result(ev);
        size_t cnt, nerr;
        const rd_kafka_ConsumerGroupListing_t **gl =
            rd_kafka_ListConsumerGroups_result_valid(res, &cnt);
        const rd_kafka_error_t **errs = rd_kafka_ListConsumerGroups_result_errors(res, &nerr);
        /* A partial list would make a lag report silently miss groups. */
        char **v = nerr ? NULL : calloc(cnt ? cnt : 1, sizeof *v);
        if (nerr) {
            rc = cl_seterr(err, errlen, CL_EIO, "listing consumer groups: %s",
                           rd_kafka_error_string(errs[0]));
        } else if (!v) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < cnt; i++) {
                v[i] = strdup(rd_kafka_ConsumerGroupListing_group_id(gl[i]));
                if (!v[i]) {
                    cl_kafka_strings_free(v, i);
                    v = NULL;
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
                    break;
                }
            }
            if (v) {
                qsort(v, cnt, sizeof *v, str_cmp);
                *out = v;
                *n = cnt;
            }
        }
        rd_kafka_event_destroy(ev);
    }
    admin_close(&a);
    return rc;
}

int cl_kafka_group_lag(const cl_config *cfg, const char *group, cl_lag_report *out, int timeout_ms,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strlen(group) >= sizeof out->parts[0].group)
        return cl_seterr(err, errlen, CL_EINVAL, "group id longer than %zu bytes",
                         sizeof out->parts[0].group - 1);
    admin a;
    int rc = admin_open(cfg, &a, err, errlen);
    if (rc != CL_OK) return rc;
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
    rd_kafka_AdminOptions_t *o =
        admin_options(&a, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout_ms);
    rd_kafka_ListConsumerGroupOffsets(a.rk, &req, 1, o, a.q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    char what[300];
    snprintf(what, sizeof what, "offsets of group %s", group);
    rd_kafka_event_t *ev = admin_wait(&a, RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT,
                                      timeout_ms, what, err, errlen, &rc);
    if (ev) {
        size_t cnt;
        const rd_kafka_group_result_t **gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(ev), &cnt);
        const rd_kafka_error_t *ge = cnt ? rd_kafka_group_result_error(gr[0]) : NULL;
        const rd_kafka_topic_partition_list_t *l =
            cnt ? rd_kafka_group_result_partitions(gr[0]) : NULL;
        if (ge) {
            rc = cl_seterr(err, errlen, CL_ERR, "offsets of group %s: %s", group,
                           rd_kafka_error_string(ge));
        } else if (!l || l->cnt == 0) {
            rc = cl_seterr(err, errlen, CL_ENOTFOUND, "group %s has no committed offsets", group);
        } else {
            out->parts = calloc((size_t)l->cnt, sizeof *out->parts);
            if (!out->parts) rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            for (int i = 0; out->parts && i < l->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &l->elems[i];
                cl_partition_lag *pl = &out->parts[out->n];
                if (cl_strlcpy(pl->topic, tp->topic, sizeof pl->topic) != CL_OK) continue;
                cl_strlcpy(pl->group, group, sizeof pl->group);
                pl->partition = tp->partition;
                pl->committed_offset = tp->offset >= 0 ? tp->offset : -1;
                int64_t lo, hi;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
                    a.rk, tp->topic, tp->partition, &lo, &hi, timeout_ms);
                pl->end_offset = e ? -1 : hi;
                if (e)
                    cl_log(CL_LOG_WARN, "watermarks_failed",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", tp->topic, tp->partition,
                           rd_kafka_err2str(e));
                pl->lag = (pl->committed_offset >= 0 && pl->end_offset >= 0)
                              ? (pl->end_offset > pl->committed_offset
                                     ? pl->end_offset - pl->committed_offset
                                     : 0)
                              : -1;
                pl->lag_seconds = -1;
                out->n++;
            }
            if (out->n > 1) qsort(out->parts, out->n, sizeof out->parts[0], lag_cmp);
            out->updated_ms = cl_now_ms();
        }
        rd_kafka_event_destroy(ev);
    }
    admin_close(&a);
    if (rc != CL_OK) cl_lag_report_free(out);
    return rc;
}

void cl_consumer_export_lag(cl_consumer *c, cl_prom *reg)
{
    cl_lag_report r = {0};
    if (!c || cl_consumer_lag(c, &r) != CL_OK) return;
    cl_prom_partition_lag *rows = calloc(r.n ? r.n : 1, sizeof *rows);
    if (rows) {
        for (size_t i = 0; i < r.n; i++)
            rows[i] = (cl_prom_partition_lag){r.parts[i].group,      r.parts[i].topic,
                                              r.parts[i].partition,  r.parts[i].committed_offset,
                                              r.parts[i].end_offset, r.parts[i].lag,
                                              r.parts[i].lag_seconds};
        cl_prom_set_consumer_lag(reg, rows, r.n, NULL, 0);
        free(rows);
    }
    cl_lag_report_free(&r);
}
