/*
 * bench_kafka_raw.c — what librdkafka alone achieves on this broker and machine: the
 * baseline the worker benchmarks are divided by (SPEC §7: "join worker throughput
 * against the raw consume+produce rate of librdkafka on the same broker and message
 * sizes").
 *
 *     bench_kafka_raw [messages] [value_bytes] [partitions] [brokers]
 *     (defaults: 200000 messages, 512-byte values, 6 partitions, 127.0.0.1:9092 or
 *      $CLOSEDLOOP_BROKERS)
 *
 * Plain librdkafka calls, none of closedloop's wrappers, with the producer settings the
 * workers use (acks=all, idempotence, murmur2_random) so the ratio measures closedloop's
 * own cost. Two figures, one line each:
 *
 *     kafka_raw.produce messages=... value_bytes=... partitions=... msgs_per_s=... mb_per_s=...
 *         keyed produce of `messages` records until the last is acknowledged;
 *     kafka_raw.consume_produce messages=... value_bytes=... partitions=... msgs_per_s=...
 * mb_per_s=... a consumer group reads them back and re-produces each to a second topic (manual
 *         offset store, async commit every 10000, like a worker), until the last output
 *         record is acknowledged.
 *
 * The broker must be running (bash deploy/kafka/start.sh). Topics are created with a
 * unique prefix and deleted at the end. Results are not committed from here: the lead's
 * bench harness records them.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

static int64_t acked, failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err)
        failed++;
    else
        acked++;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *brokers, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *common[][2] = {{"bootstrap.servers", brokers}, {"client.id", "bench_kafka_raw"}};
    const char *producer[][2] = {
        {"acks", "all"}, {"enable.idempotence", "true"}, {"partitioner", "murmur2_random"}};
    const char *consumer[][2] = {{"group.id", group},
                                 {"auto.offset.reset", "earliest"},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"}};
    for (size_t i = 0; i < 2; i++)
        if (rd_kafka_conf_set(conf, common[i][0], common[i][1], err, sizeof err)) goto bad;
    if (type == RD_KAFKA_PRODUCER) {
        for (size_t i = 0; i < 3; i++)
            if (rd_kafka_conf_set(conf, producer[i][0], producer[i][1], err, sizeof err)) goto bad;
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    } else {
        for (size_t i = 0; i < 4; i++)
            if (rd_kafka_conf_set(conf, consumer[i][0], consumer[i][1], err, sizeof err)) goto bad;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (rk) return rk;
bad:
    fprintf(stderr, "bench_kafka_raw: %s\n", err);
    exit(1);
}

static void produce_one(rd_kafka_t *p, const char *topic, const void *key, size_t klen,
                        const void *value, size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_END);
        if (!e) return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "bench_kafka_raw: produce to %s: %s\n", topic, rd_kafka_err2str(e));
            exit(1);
        }
        rd_kafka_poll(p, 10);
    }
}

static void flush_all(rd_kafka_t *p)
{
    if (rd_kafka_flush(p, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "bench_kafka_raw: flush did not finish in 120 s\n");
        exit(1);
    }
}

static void report(const char *figure, int64_t n, size_t value_bytes, int partitions, double secs)
{
    printf("kafka_raw.%s messages=%" PRId64 " value_bytes=%zu partitions=%d msgs_per_s=%.0f "
           "mb_per_s=%.2f\n",
           figure, n, value_bytes, partitions, (double)n / secs,
           (double)n * (double)value_bytes / secs / 1e6);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int64_t n = 200000, vb = 512, parts = 6;
    const char *brokers = getenv("CLOSEDLOOP_BROKERS");
    if (!brokers || !*brokers) brokers = "127.0.0.1:9092";
    if ((argc > 1 && (cl_parse_int64(argv[1], &n) != CL_OK || n < 1 || n > 100000000)) ||
        (argc > 2 && (cl_parse_int64(argv[2], &vb) != CL_OK || vb < 1 || vb > 1000000)) ||
        (argc > 3 && (cl_parse_int64(argv[3], &parts) != CL_OK || parts < 1 || parts > 1000)) ||
        argc > 5) {
        fprintf(stderr, "usage: bench_kafka_raw [messages] [value_bytes] [partitions] [brokers]\n");
        return 2;
    }
    if (argc > 4) brokers = argv[4];
    cl_log_init("bench", CL_LOG_WARN, CL_LOG_LOGFMT);

    char prefix[64], in[96], out[96], group[96], err[CL_ERRLEN];
    snprintf(prefix, sizeof prefix, "bench-raw-%ld-%ld.", (long)getpid(),
             (long)(cl_now_ms() % 100000));
    snprintf(in, sizeof in, "%sin", prefix);
    snprintf(out, sizeof out, "%sout", prefix);
    snprintf(group, sizeof group, "%sgroup", prefix);
    cl_config *cfg = cl_config_new("bench_kafka_raw", "", NULL);
    if (!cfg || cl_config_set(cfg, "brokers", brokers, "argv", err, sizeof err) != CL_OK) {
        fprintf(stderr, "bench_kafka_raw: %s\n", cfg ? err : "out of memory");
        return 1;
    }
    cl_topic_spec specs[] = {{in, (int)parts, 1, NULL}, {out, (int)parts, 1, NULL}};
    if (cl_kafka_create_topics(cfg, specs, 2, NULL, 30000, err, sizeof err) != CL_OK) {
        fprintf(stderr, "bench_kafka_raw: %s (is the broker running? bash deploy/kafka/start.sh)\n",
                err);
        return 1;
    }

    unsigned char *value = malloc((size_t)vb);
    if (!value) return 1;
    for (int64_t i = 0; i < vb; i++)
        value[i] = (unsigned char)(i * 131 + 7);

    /* --- produce -------------------------------------------------------------- */
    rd_kafka_t *p = new_client(RD_KAFKA_PRODUCER, brokers, NULL);
    int64_t t0 = cl_mono_ns();
    for (int64_t i = 0; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "opp-%" PRId64, i);
        produce_one(p, in, key, (size_t)kl, value, (size_t)vb);
        if ((i & 1023) == 0) rd_kafka_poll(p, 0);
    }
    flush_all(p);
    double secs = (double)(cl_mono_ns() - t0) / 1e9;
    if (acked != n || failed) {
        fprintf(stderr,
                "bench_kafka_raw: %" PRId64 " acknowledged, %" PRId64 " failed of %" PRId64 "\n",
                acked, failed, n);
        return 1;
    }
    report("produce", n, (size_t)vb, (int)parts, secs);

    /* --- consume + produce ---------------------------------------------------- */
    acked = failed = 0;
    rd_kafka_t *c = new_client(RD_KAFKA_CONSUMER, brokers, group);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    int64_t consumed = 0, started = 0;
    int64_t deadline = cl_mono_ms() + 300000;
    while (consumed < n && cl_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "bench_kafka_raw: consume: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (!started) { /* the clock starts at the first record, not at the group join */
            started = 1;
            t0 = cl_mono_ns();
        }
        produce_one(p, out, m->key, m->key_len, m->payload, m->len);
        rd_kafka_topic_partition_list_t *o = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(o, rd_kafka_topic_name(m->rkt), m->partition)->offset =
            m->offset + 1;
        rd_kafka_offsets_store(c, o);
        rd_kafka_topic_partition_list_destroy(o);
        rd_kafka_message_destroy(m);
        if (++consumed % 10000 == 0) rd_kafka_commit(c, NULL, 1);
        if ((consumed & 1023) == 0) rd_kafka_poll(p, 0);
    }
    flush_all(p);
    secs = (double)(cl_mono_ns() - t0) / 1e9;
    rd_kafka_commit(c, NULL, 0);
    if (consumed != n || acked != n || failed) {
        fprintf(stderr,
                "bench_kafka_raw: consumed %" PRId64 ", acknowledged %" PRId64 ", failed %" PRId64
                " of %" PRId64 "\n",
                consumed, acked, failed, n);
        return 1;
    }
    report("consume_produce", n, (size_t)vb, (int)parts, secs);

    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    const char *names[] = {in, out};
    if (cl_kafka_delete_topics(cfg, names, 2, 30000, err, sizeof err) != CL_OK)
        fprintf(stderr, "bench_kafka_raw: cleanup: %s\n", err);
    cl_config_free(cfg);
    free(value);
    return 0;
}
