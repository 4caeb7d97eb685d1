/*
 * weights_consumer.c — a downstream C service following closedloop's weights topic.
 *
 * It deliberately uses nothing from closedloop's library: plain librdkafka and avro-c,
 * the topic name and the published schema (schemas/WeightConfig.avsc). It prints one
 * line per new CHAMPION, which is what a scorer outside closedloop would apply.
 *
 *   weights_consumer BROKERS TOPIC SCHEMA.avsc [FINGERPRINT_HEX] [EXIT_AFTER]
 *
 * FINGERPRINT_HEX (from `closedloop-avro fingerprint schemas/WeightConfig.avsc`, or "-")
 * makes it refuse single-object records written with any other schema. Confluent-framed
 * records (schema registry in use) are read with the same schema.
 */
#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

static int hexbytes(const char *hex, unsigned char out[8])
{
    if (strlen(hex) != 16) return -1;
    for (int i = 0; i < 8; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* Prints the record if it is a newer champion; returns 1 when printed. */
static int handle(avro_value_t *rec, char models[][128], long long *versions, int *nmodels)
{
    avro_value_t f, v;
    const char *model, *status_name;
    size_t len;
    int64_t version;
    int status;
    if (avro_value_get_by_name(rec, "status", &f, NULL) || avro_value_get_enum(&f, &status)) return 0;
    avro_schema_t es = avro_value_get_schema(&f);
    status_name = avro_schema_enum_get(es, status);
    if (!status_name || strcmp(status_name, "CHAMPION") != 0) return 0;
    if (avro_value_get_by_name(rec, "model", &f, NULL) || avro_value_get_string(&f, &model, &len)) return 0;
    if (avro_value_get_by_name(rec, "version", &f, NULL) || avro_value_get_long(&f, &version)) return 0;
    int i;
    for (i = 0; i < *nmodels; i++)
        if (strcmp(models[i], model) == 0) break;
    if (i < *nmodels && versions[i] >= version) return 0;
    if (i == *nmodels) {
        if (*nmodels == 64) return 0;
        snprintf(models[i], 128, "%s", model);
        (*nmodels)++;
    }
    versions[i] = version;
    printf("champion model=%s version=%lld", model, (long long)version);
    if (avro_value_get_by_name(rec, "weights", &f, NULL) == 0) {
        size_t n = 0;
        avro_value_get_size(&f, &n);
        /* map order is insertion order; print sorted by name for stable output */
        const char *names[64];
        double vals[64];
        size_t k = 0;
        for (size_t j = 0; j < n && k < 64; j++) {
            const char *key;
            double d;
            if (avro_value_get_by_index(&f, j, &v, &key) || avro_value_get_double(&v, &d)) continue;
            size_t pos = k++;
            while (pos > 0 && strcmp(names[pos - 1], key) > 0) {
                names[pos] = names[pos - 1];
                vals[pos] = vals[pos - 1];
                pos--;
            }
            names[pos] = key;
            vals[pos] = d;
        }
        for (size_t j = 0; j < k; j++) printf(" %s=%.4f", names[j], vals[j]);
    }
    printf("\n");
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s BROKERS TOPIC SCHEMA.avsc [FINGERPRINT_HEX|-] [EXIT_AFTER]\n", argv[0]);
        return 2;
    }
    unsigned char fingerprint[8];
    int check_fp = argc > 4 && strcmp(argv[4], "-") != 0;
    if (check_fp && hexbytes(argv[4], fingerprint)) {
        fprintf(stderr, "bad fingerprint '%s': expected 16 hex digits\n", argv[4]);
        return 2;
    }
    int exit_after = argc > 5 ? atoi(argv[5]) : 0;
    char *text = read_file(argv[3]);
    avro_schema_t schema;
    if (!text || avro_schema_from_json_length(text, strlen(text), &schema)) {
        fprintf(stderr, "cannot load schema %s: %s\n", argv[3], text ? avro_strerror() : "unreadable");
        return 1;
    }
    free(text);
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t rec;
    avro_generic_value_new(iface, &rec);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", "weights-consumer-example-c", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr)) {
        fprintf(stderr, "kafka config: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka: %s\n", errstr);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    /* No committed offsets: assign partition 0..N from the beginning each start, so
     * the compacted topic is replayed and the current champion is always known. */
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, argv[2], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        fprintf(stderr, "subscribe %s: %s\n", argv[2], rd_kafka_err2str(err));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    char models[64][128];
    long long versions[64];
    int nmodels = 0, printed = 0, status = 0;
    while (!stop && (!exit_after || printed < exit_after)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "kafka: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        const unsigned char *p = m->payload;
        size_t len = m->len, skip = 0;
        if (p && len >= 10 && p[0] == 0xC3 && p[1] == 0x01) {
            if (check_fp && memcmp(p + 2, fingerprint, 8) != 0) {
                fprintf(stderr, "skipping %s[%d]@%lld: written with another schema\n",
                        rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
                rd_kafka_message_destroy(m);
                continue;
            }
            skip = 10;
        } else if (p && len >= 5 && p[0] == 0x00) {
            skip = 5;
        } else {
            if (p) fprintf(stderr, "skipping %s[%d]@%lld: unknown framing\n", rd_kafka_topic_name(m->rkt),
                           (int)m->partition, (long long)m->offset);
            rd_kafka_message_destroy(m);
            continue;
        }
        avro_reader_t r = avro_reader_memory((const char *)p + skip, (int64_t)(len - skip));
        avro_value_reset(&rec);
        if (avro_value_read(r, &rec) == 0) printed += handle(&rec, models, versions, &nmodels);
        else fprintf(stderr, "skipping %s[%d]@%lld: %s\n", rd_kafka_topic_name(m->rkt), (int)m->partition,
                     (long long)m->offset, avro_strerror());
        avro_reader_free(r);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return status;
}
