/*
 * kafka.h — the one way closedloop talks to Kafka: librdkafka producers, consumers,
 * whole-topic readers, topic administration, the dead-letter queue, consumer lag and
 * graceful shutdown.
 *
 * Configuration. Every client is built from a cl_config: `brokers` becomes
 * bootstrap.servers and every `kafka.<property>` is passed to librdkafka unchanged (so
 * SASL/SSL need no code). closedloop's defaults come first and the user's kafka.* values
 * override them, except the three consumer settings the offset discipline below relies
 * on (enable.auto.commit=false, enable.auto.offset.store=false, enable.partition.eof=true),
 * which are forced and a differing user value is reported as an error. Producer
 * defaults: enable.idempotence=true, acks=all, partitioner=murmur2_random (the Java
 * client's partitioner, so topics written by Java/Python producers co-partition with
 * ours). Consumer defaults: auto.offset.reset=earliest (a new group reads the whole
 * topic), statistics.interval.ms=5000 (drives the lag figures). client.id defaults to
 * the program name.
 *
 * Threads. A cl_producer or cl_consumer belongs to one thread: delivery reports,
 * rebalance hooks and statistics are all served on the thread that calls
 * cl_producer_poll / cl_producer_flush / cl_consumer_poll. Only the counters and the lag
 * snapshot (cl_producer_counters, cl_consumer_lag) may be read from another thread
 * (the /metrics server).
 *
 * Producing. cl_producer_send never loses a record silently: each send carries an
 * opaque pointer, and the delivery callback is called exactly once per accepted record
 * with CL_OK (and the partition/offset the broker assigned) or the failure. Closing
 * with records still in flight purges them, and they too are reported as failed, so a
 * caller knows exactly which records the broker acknowledged (the snapshot worker's "a
 * run either publishes all its good rows or reports which were not", the outcomes
 * worker's "the watermark advances only after Kafka acknowledged every record").
 *
 * Consuming. Offsets are the worker's business: nothing is committed behind its back.
 * The pattern is poll -> process -> cl_consumer_store(msg) -> cl_consumer_commit()
 * every so often; the stored offsets are also committed synchronously when partitions
 * are revoked and on close. A worker that keeps its own offsets (the join worker keeps
 * them in LMDB, in the same transaction as its state) sets on_assign and fills in the
 * start offset of each assigned partition; the offsets it commits to Kafka then only
 * serve lag monitors (Burrow, kafka_exporter), not recovery.
 * With read_to_end, a consumer has no group: it assigns every partition of its topics
 * from the beginning and cl_consumer_at_end() says when all of them have been read up
 * to the end offsets they had when it started (e.g. "read the compacted weights topic,
 * then keep following it").
 *
 * Shutdown. cl_kafka_install_signal_handlers() makes SIGTERM/SIGINT set a flag that
 * loops test with cl_stop_requested(); the worker then finishes in-flight work, flushes
 * its producer, commits and closes, each within shutdown.timeout.ms.
 */
#ifndef CL_KAFKA_H
#define CL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

/* ---------------------------------------------------------------- configuration */

typedef enum { CL_KAFKA_PRODUCER = 0, CL_KAFKA_CONSUMER, CL_KAFKA_ADMIN } cl_kafka_role;

/* Build a librdkafka configuration for `role` from cfg (see the contract above).
 * client_id NULL: the program name. On error (invalid property or value) err names
 * the key and where it was set. The caller owns *out (rd_kafka_conf_destroy, or hand
 * it to rd_kafka_new). Installs a log callback that routes librdkafka's logs to
 * cl_log (event "librdkafka"). */
int cl_kafka_conf_new(const cl_config *cfg, cl_kafka_role role, const char *client_id,
                      rd_kafka_conf_t **out, char *err, size_t errlen);

/* ---------------------------------------------------------------- shutdown */

/* SIGTERM and SIGINT set the stop flag (async-signal-safe); SIGPIPE is ignored. */
int cl_kafka_install_signal_handlers(char *err, size_t errlen);
int cl_stop_requested(void);
/* Set the flag as a signal would (tests, fatal errors in other threads). */
void cl_request_stop(void);
/* Clear it (tests only). */
void cl_stop_reset(void);

/* ---------------------------------------------------------------- messages */

typedef struct {
    const char *name;
    const void *value; /* NULL: a header with a null value */
    size_t len;
} cl_kafka_header;

/* A consumed record. Pointers are valid until cl_message_release(). */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 when the record has none */
    const void *key;      /* NULL: null key */
    size_t key_len;
    const void *value; /* NULL: tombstone */
    size_t value_len;
    rd_kafka_message_t *rkmessage; /* owned */
} cl_message;

/* The last header named `name` (Kafka headers may repeat). CL_ENOTFOUND if absent. */
int cl_message_header(const cl_message *m, const char *name, const void **value, size_t *len);
/* Number of headers and the i-th one (for copying them, e.g. into the DLQ). */
size_t cl_message_header_count(const cl_message *m);
int cl_message_header_at(const cl_message *m, size_t i, cl_kafka_header *out);
void cl_message_release(cl_message *m);
void cl_messages_release(cl_message *ms, size_t n);

/* ---------------------------------------------------------------- producer */

/* One call per accepted record, on the thread that polls/flushes/closes.
 * status: CL_OK (acknowledged by all in-sync replicas under acks=all, partition and
 * offset set) or an error (CL_ETIMEOUT: message.timeout.ms expired; CL_ESTOP: purged
 * on close; CL_ERR otherwise), with librdkafka's reason in `reason`. */
typedef void (*cl_delivery_cb)(void *msg_opaque, int status, const char *topic, int32_t partition,
                               int64_t offset, const char *reason, void *ud);

typedef struct {
    const char *client_id;      /* NULL: program name */
    cl_delivery_cb on_delivery; /* NULL: only counted (and failures logged) */
    void *ud;
    const char *transactional_id; /* non-NULL: transactional producer (init done) */
} cl_producer_opts;

typedef struct {
    uint64_t sent;      /* accepted by cl_producer_send */
    uint64_t delivered; /* acknowledged */
    uint64_t failed;    /* delivery failed or purged */
    uint64_t in_flight; /* sent - delivered - failed */
} cl_producer_counters;

typedef struct cl_producer cl_producer;

int cl_producer_new(const cl_config *cfg, const cl_producer_opts *opts, cl_producer **out,
                    char *err, size_t errlen);

/* Queue one record. key/value NULL mean null (value NULL = tombstone); bytes and
 * headers are copied. When the local queue is full, serves delivery reports and retries
 * for up to queue_wait_ms (0: fail at once with CL_EAGAIN). CL_EINVAL for an unknown
 * topic or a record larger than message.max.bytes. A record that returns an error here
 * gets no delivery callback. */
int cl_producer_send(cl_producer *p, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len, const cl_kafka_header *headers,
                     size_t nheaders, void *msg_opaque, int queue_wait_ms, char *err,
                     size_t errlen);

/* The same, to an explicit partition (CL_KAFKA_PARTITION_ANY: the partitioner decides).
 * For topics that mirror another topic's partitioning, such as join-changelog. */
#define CL_KAFKA_PARTITION_ANY (-1)
int cl_producer_send_partition(cl_producer *p, const char *topic, int32_t partition,
                               const void *key, size_t key_len, const void *value,
                               size_t value_len, const cl_kafka_header *headers, size_t nheaders,
                               void *msg_opaque, int queue_wait_ms, char *err, size_t errlen);

/* Serve delivery reports; returns how many events were served. */
int cl_producer_poll(cl_producer *p, int timeout_ms);

/* Wait until every record sent so far has its delivery report. CL_ETIMEOUT (with the
 * number still in flight in err) if timeout_ms passed; nothing is lost, the records
 * stay in flight. */
int cl_producer_flush(cl_producer *p, int timeout_ms, char *err, size_t errlen);

void cl_producer_counters_get(const cl_producer *p, cl_producer_counters *out);

/* Flush for up to timeout_ms, purge what is left (their callbacks report CL_ESTOP),
 * destroy. Returns CL_OK if everything was acknowledged, CL_ETIMEOUT if records had to
 * be purged. p is freed either way. NULL is a no-op. */
int cl_producer_close(cl_producer *p, int timeout_ms, char *err, size_t errlen);

/* Escape hatch (transactions API, rd_kafka_* calls not wrapped here). */
rd_kafka_t *cl_producer_handle(cl_producer *p);

/* ---------------------------------------------------------------- dead-letter queue */

/* Publish a record that could not be processed to dlq_topic (`<prefix>dlq`): the
 * original key and value bytes unchanged, the original headers, then the headers
 * source.topic, source.partition, source.offset (decimal text), worker and error.
 * Delivery is reported like any send (msg_opaque). */
int cl_kafka_dlq_send(cl_producer *p, const char *dlq_topic, const cl_message *src,
                      const char *worker, const char *error, void *msg_opaque, char *err,
                      size_t errlen);

/* ---------------------------------------------------------------- consumer */

/* Offset sentinels for cl_topic_partition.offset. */
#define CL_KAFKA_OFFSET_COMMITTED RD_KAFKA_OFFSET_INVALID /* committed, else auto.offset.reset */
#define CL_KAFKA_OFFSET_BEGINNING RD_KAFKA_OFFSET_BEGINNING
#define CL_KAFKA_OFFSET_END RD_KAFKA_OFFSET_END

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset; /* start offset (on_assign) or next offset to read (commit) */
} cl_topic_partition;

typedef struct cl_consumer cl_consumer;

typedef struct {
    /* After the group assigned `parts`, before any of their records is returned.
     * Each parts[i].offset is CL_KAFKA_OFFSET_COMMITTED; set it to an explicit offset to
     * start there (e.g. the offset stored with the state in LMDB). A non-zero return is
     * treated as fatal: cl_consumer_poll returns CL_ERR with the hook's message. */
    int (*on_assign)(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                     size_t errlen);
    /* Before `parts` are taken away (rebalance or close): the last moment to finish
     * their in-flight work and cl_consumer_store() it; the wrapper then commits the
     * stored offsets synchronously. */
    void (*on_revoke)(cl_consumer *c, const cl_topic_partition *parts, size_t n, void *ud);
    void *ud;
} cl_rebalance_hooks;

typedef struct {
    const char *group_id;      /* NULL: the config's group.id (required unless read_to_end) */
    const char *client_id;     /* NULL: program name */
    const char *const *topics; /* full names (cl_config_topic) */
    size_t ntopics;
    int read_to_end; /* no group: assign all partitions of `topics` from the start */
    cl_rebalance_hooks hooks;
} cl_consumer_opts;

int cl_consumer_new(const cl_config *cfg, const cl_consumer_opts *opts, cl_consumer **out,
                    char *err, size_t errlen);

/* Wait up to timeout_ms for the first record, then take what is already fetched, up
 * to max records, into out[0..*n). *n == 0 on timeout. Transient broker errors are
 * logged and retried by librdkafka; CL_ERR only for fatal errors (and a failed
 * on_assign hook). End-of-partition events are absorbed (see cl_consumer_at_end). */
int cl_consumer_poll(cl_consumer *c, cl_message *out, size_t max, size_t *n, int timeout_ms,
                     char *err, size_t errlen);

/* 1 while some broker is reachable; 0 when librdkafka's statistics (every
 * statistics.interval.ms, 5 s by default) show no broker UP, after an all-brokers-down
 * event, or after an authentication failure, with the reason ("Kafka broker unreachable
 * (group g): ...") in reason. Workers feed it to /healthz. An authentication failure
 * (wrong SASL username or password) also makes cl_consumer_poll return CL_ERR:
 * it is a configuration error that retrying does not fix. */
int cl_consumer_broker_health(cl_consumer *c, char *reason, size_t reasonlen);

/* Mark m as processed: its offset + 1 becomes the partition's offset to commit. */
int cl_consumer_store(cl_consumer *c, const cl_message *m, char *err, size_t errlen);
/* Mark explicit next-offsets as processed. */
int cl_consumer_store_offsets(cl_consumer *c, const cl_topic_partition *parts, size_t n, char *err,
                              size_t errlen);
/* Commit the stored offsets (sync: wait for the broker; async: fire and forget, failures
 * are logged). Nothing stored since the last commit is not an error. */
int cl_consumer_commit(cl_consumer *c, int async, char *err, size_t errlen);

/* Move the read position of an assigned partition. */
int cl_consumer_seek(cl_consumer *c, const char *topic, int32_t partition, int64_t offset,
                     int timeout_ms, char *err, size_t errlen);

/* Committed offsets of the group for the currently assigned partitions (offset -1001 =
 * none). Caller frees *out with free(); topic pointers stay valid until the next
 * rebalance. */
int cl_consumer_committed(cl_consumer *c, cl_topic_partition **out, size_t *n, int timeout_ms,
                          char *err, size_t errlen);

/* 1 when every assigned partition has been read up to its end (end-of-partition
 * reached and nothing newer returned since); 0 otherwise, and 0 before the first
 * assignment. For read_to_end consumers, "end" is the end at assignment time or later. */
int cl_consumer_at_end(cl_consumer *c);

/* Number of partitions currently assigned. */
size_t cl_consumer_assignment_count(cl_consumer *c);

/* Commit the stored offsets, then leave the group (on_revoke hooks run here, followed by
 * a sync commit) and destroy, all within timeout_ms: CL_ETIMEOUT if leaving took longer
 * (the broker then expires the member after session.timeout.ms). c is freed either way.
 * NULL is a no-op. */
int cl_consumer_close(cl_consumer *c, int timeout_ms, char *err, size_t errlen);

rd_kafka_t *cl_consumer_handle(cl_consumer *c);

/* ---------------------------------------------------------------- lag */

/* Lag of one partition; the field meanings match cl_prom_partition_lag (prom.h).
 * Unknown numbers are -1 (lag_seconds: < 0). */
typedef struct {
    char group[256];
    char topic[256];
    int32_t partition;
    int64_t committed_offset; /* next offset the group will read */
    int64_t end_offset;       /* high watermark (log end offset) */
    int64_t lag;              /* end_offset - committed_offset */
    double lag_seconds;       /* estimated age of the oldest unconsumed record */
} cl_partition_lag;

typedef struct {
    cl_partition_lag *parts;
    size_t n;
    int64_t updated_ms; /* wall clock of the statistics it came from; 0: none yet */
} cl_lag_report;

/* Pure: librdkafka statistics JSON (a consumer's stats_cb payload) -> lag of every
 * partition the consumer has assigned (fetch_state other than "none"), sorted by topic
 * then partition. lag_seconds is left at -1 (it needs history; see cl_consumer_lag).
 * CL_EINVAL if the JSON is not librdkafka statistics. out must be freed with
 * cl_lag_report_free. */
int cl_kafka_parse_stats_lag(const char *json, size_t len, cl_lag_report *out, char *err,
                             size_t errlen);
void cl_lag_report_free(cl_lag_report *r);

/* History of one partition's log end offset: each sample is one distinct end offset,
 * first and last seen at the given wall-clock times (oldest sample first). */
typedef struct {
    int64_t end_offset;
    int64_t first_seen_ms;
    int64_t last_seen_ms;
} cl_lag_sample;

/* Pure: estimated age in seconds of the record at `committed` (the oldest unconsumed
 * one) at now_ms. That record was appended after the end offset was last seen at or
 * below `committed` and before it was first seen above; the estimate interpolates
 * linearly in between. 0 when nothing is unconsumed; when the record predates the
 * history, the age of the oldest sample (a lower bound); -1 when unknown. */
double cl_kafka_estimate_lag_seconds(const cl_lag_sample *samples, size_t n, int64_t committed,
                                     int64_t now_ms);

/* A copy of the consumer's latest lag figures (from the last statistics event),
 * with lag_seconds estimated like kafka-lag-exporter does: from the recorded history of
 * (end offset, time) samples, the time at which the log end passed the committed
 * offset. Thread-safe. */
int cl_consumer_lag(cl_consumer *c, cl_lag_report *out);

/* Sets the consumer's lag series on a Prometheus registry (kafka_consumergroup_lag and
 * the other kafka_exporter names, prom.h). Meant for a collector registered with
 * cl_prom_add_collector, so the figures are fresh at every scrape; safe from the HTTP
 * thread. A consumer with no statistics yet leaves the series as they are. */
struct cl_prom;
void cl_consumer_export_lag(cl_consumer *c, struct cl_prom *reg);

/* ---------------------------------------------------------------- administration */

typedef struct {
    const char *name;
    int partitions;
    int replication_factor;
    const char *const *configs; /* name, value, name, value, ..., NULL */
} cl_topic_spec;

typedef enum { CL_TOPIC_CREATED = 0, CL_TOPIC_EXISTED = 1 } cl_topic_create_result;

/* Create topics; a topic that already exists is fine (results[i] = CL_TOPIC_EXISTED,
 * its settings are left alone). results may be NULL. Errors name the topic. */
int cl_kafka_create_topics(const cl_config *cfg, const cl_topic_spec *specs, size_t n,
                           cl_topic_create_result *results, int timeout_ms, char *err,
                           size_t errlen);

/* Delete topics (tests); a topic that does not exist is fine. */
int cl_kafka_delete_topics(const cl_config *cfg, const char *const *names, size_t n, int timeout_ms,
                           char *err, size_t errlen);

typedef struct {
    char *name;
    char *value;    /* NULL: null/sensitive */
    int is_default; /* 1: the broker's or Kafka's default, not set on the topic */
} cl_topic_config_entry;

typedef struct {
    char *name;
    int partitions;
    int replication_factor;
    cl_topic_config_entry *configs;
    size_t nconfigs;
} cl_topic_info;

/* Partitions, replication factor and configuration of each named topic. CL_ENOTFOUND
 * naming the first topic that does not exist. Free with cl_topic_infos_free. */
int cl_kafka_describe_topics(const cl_config *cfg, const char *const *names, size_t n,
                             cl_topic_info **out, int timeout_ms, char *err, size_t errlen);
void cl_topic_infos_free(cl_topic_info *infos, size_t n);
/* Value of one config entry of a described topic, NULL if absent. */
const char *cl_topic_info_config(const cl_topic_info *t, const char *name);

/* Names of all consumer groups known to the cluster, sorted. Free with
 * cl_kafka_strings_free. */
int cl_kafka_list_groups(const cl_config *cfg, char ***out, size_t *n, int timeout_ms, char *err,
                         size_t errlen);
void cl_kafka_strings_free(char **v, size_t n);

/* A group's committed offsets with each partition's high watermark and lag, as lag
 * monitors compute it from outside (lag_seconds -1). CL_ENOTFOUND if the group has no
 * committed offsets. */
int cl_kafka_group_lag(const cl_config *cfg, const char *group, cl_lag_report *out, int timeout_ms,
                       char *err, size_t errlen);

#endif
