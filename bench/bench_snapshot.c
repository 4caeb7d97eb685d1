/*
 * bench_snapshot.c — the baseline of the snapshot producer benchmark: plain librdkafka
 * producing exactly the records closedloop-snapshot published (same keys, same Avro
 * bytes, same broker), so the ratio measures what reading, validating, scoring and
 * encoding a run costs on top of Kafka itself.
 *
 *     bench_snapshot SOURCE_TOPIC DEST_TOPIC [brokers]
 *
 * Reads every record of SOURCE_TOPIC (the topic the worker wrote) into memory, then
 * produces them all to DEST_TOPIC with the producer settings the workers use (acks=all,
 * enable.idempotence, murmur2_random) and waits for the last delivery report. Prints
 *
 *     snapshot.raw_produce messages=N bytes=B msgs_per_s=X mb_per_s=Y failed=F
 *
 * bench/bench_snapshot.sh runs the worker and this baseline in the same run.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

typedef struct {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
} record;

static int64_t acked, failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
    else
        acked++;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int ok =
        rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err) == RD_KAFKA_CONF_OK;
    if (type == RD_KAFKA_PRODUCER) {
        ok = ok && rd_kafka_conf_set(c, "acks", "all", err, sizeof err) == RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof err) ==
                 RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(c, "partitioner", "murmur2_random", err, sizeof err) ==
                 RD_KAFKA_CONF_OK;
        rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    } else {
        char group[64];
        snprintf(group, sizeof group, "bench-snapshot-%ld", (long)getpid());
        ok = ok && rd_kafka_conf_set(c, "group.id", group, err, sizeof err) == RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof err) ==
                 RD_KAFKA_CONF_OK;
    }
    if (!ok) {
        fprintf(stderr, "bench_snapshot: %s\n", err);
        exit(1);
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "bench_snapshot: %s\n", err);
        exit(1);
    }
    return rk;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_snapshot SOURCE_TOPIC DEST_TOPIC [brokers]\n");
        return 2;
    }
    const char *src = argv[1], *dst = argv[2];
    const char *brokers = argc > 3 ? argv[3] : "127.0.0.1:9092";

    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, brokers);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, src, NULL);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(c, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "bench_snapshot: no metadata for %s\n", src);
        return 1;
    }
    int nparts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, src, md->topics[0].partitions[p].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);

    record *recs = NULL;
    size_t n = 0, cap = 0, bytes = 0;
    int eofs = 0;
    while (eofs < nparts) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else if (m->err) {
            fprintf(stderr, "bench_snapshot: consume: %s\n", rd_kafka_message_errstr(m));
        } else {
            if (n == cap) {
                cap = cap ? cap * 2 : 65536;
                recs = realloc(recs, cap * sizeof *recs);
                if (!recs) return 1;
            }
            record *r = &recs[n++];
            r->key_len = m->key_len;
            r->value_len = m->len;
            r->key = malloc(m->key_len + 1);
            r->value = malloc(m->len + 1);
            if (!r->key || !r->value) return 1;
            memcpy(r->key, m->key, m->key_len);
            memcpy(r->value, m->payload, m->len);
            bytes += m->key_len + m->len;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);

    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, brokers);
    int64_t t0 = cl_mono_ns();
    for (size_t i = 0; i < n; i++) {
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(dst), RD_KAFKA_V_KEY(recs[i].key, recs[i].key_len),
                RD_KAFKA_V_VALUE(recs[i].value, recs[i].value_len), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 10);
                continue;
            }
            if (e) {
                fprintf(stderr, "bench_snapshot: produce: %s\n", rd_kafka_err2str(e));
                failed++;
            }
            break;
        }
        rd_kafka_poll(p, 0);
    }
    while (acked + failed < (int64_t)n)
        rd_kafka_poll(p, 100);
    double secs = (double)(cl_mono_ns() - t0) / 1e9;
    rd_kafka_destroy(p);
    printf("snapshot.raw_produce messages=%zu bytes=%zu msgs_per_s=%.0f mb_per_s=%.2f "
           "failed=%" PRId64 "\n",
           n, bytes, secs > 0 ? (double)n / secs : 0, secs > 0 ? (double)bytes / secs / 1e6 : 0,
           failed);
    for (size_t i = 0; i < n; i++) {
        free(recs[i].key);
        free(recs[i].value);
    }
    free(recs);
    return failed ? 1 : 0;
}
