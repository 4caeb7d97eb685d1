/*
 * test_kafka_broker.c — common/kafka against a real Apache Kafka broker (deploy/kafka), which
 * the test starts itself (idempotent). Every run uses its own topic prefix and group ids,
 * so it can run beside other tests on the shared broker.
 *
 * What is checked: exact round trip of keys, values (binary, null, tombstones) and
 * headers; one delivery report per record; manual commits and resumption after them;
 * on_assign start offsets; read-to-end; DLQ headers; idempotent topic creation with
 * compaction visible in describe; group lag from outside and from the statistics;
 * a failed delivery is reported, not lost.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

#define N_RECORDS 200
#define TIMEOUT_MS 30000

static char prefix[64];
static char brokers[64];

static cl_config *config(void)
{
    cl_config *cfg = cl_config_new("closedloop-itest", "integration test", NULL);
    assert_non_null(cfg);
    char err[CL_ERRLEN];
    assert_int_equal(cl_config_set(cfg, "brokers", brokers, "test", err, sizeof err), CL_OK);
    assert_int_equal(cl_config_set(cfg, "topic.prefix", prefix, "test", err, sizeof err), CL_OK);
    assert_int_equal(
        cl_config_set(cfg, "kafka.statistics.interval.ms", "500", "test", err, sizeof err), CL_OK);
    return cfg;
}

static void create_topic(cl_config *cfg, const char *name, int partitions, int compact)
{
    static const char *const compacted[] = {"cleanup.policy", "compact", NULL};
    cl_topic_spec spec = {cl_config_topic(cfg, name), partitions, 1, compact ? compacted : NULL};
    char err[CL_ERRLEN];
    if (cl_kafka_create_topics(cfg, &spec, 1, NULL, TIMEOUT_MS, err, sizeof err) != CL_OK)
        fail_msg("create %s: %s", spec.name, err);
}

static int setup_broker(void **state)
{
    (void)state;
    const char *src = getenv("CL_SOURCE_DIR");
    if (!src) {
        fprintf(stderr, "CL_SOURCE_DIR is not set (run through ctest)\n");
        return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s/deploy/kafka/start.sh' >&2", src);
    if (system(cmd) != 0) {
        fprintf(stderr, "the local Kafka broker did not start (%s); see deploy/kafka/README.md\n",
                cmd);
        return -1;
    }
    const char *port = getenv("CLOSEDLOOP_KAFKA_PORT");
    snprintf(brokers, sizeof brokers, "127.0.0.1:%s", port && *port ? port : "9092");
    srand((unsigned)(cl_now_ms() ^ getpid()));
    snprintf(prefix, sizeof prefix, "itest-%d-%d.", (int)getpid(), rand() % 1000000);
    cl_log_init("itest", CL_LOG_WARN, CL_LOG_LOGFMT);
    return 0;
}

/* ---------------------------------------------------------------- topics */

static void test_create_topics_is_idempotent_and_compaction_is_visible(void **state)
{
    (void)state;
    cl_config *cfg = config();
    static const char *const compacted[] = {"cleanup.policy", "compact", NULL};
    cl_topic_spec specs[] = {
        {cl_config_topic(cfg, "snapshots"), 3, 1, NULL},
        {cl_config_topic(cfg, "weights"), 1, 1, compacted},
    };
    cl_topic_create_result res[2] = {-1, -1};
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_create_topics(cfg, specs, 2, res, TIMEOUT_MS, err, sizeof err),
                     CL_OK);
    assert_int_equal(res[0], CL_TOPIC_CREATED);
    assert_int_equal(res[1], CL_TOPIC_CREATED);
    assert_int_equal(cl_kafka_create_topics(cfg, specs, 2, res, TIMEOUT_MS, err, sizeof err),
                     CL_OK);
    assert_int_equal(res[0], CL_TOPIC_EXISTED);
    assert_int_equal(res[1], CL_TOPIC_EXISTED);

    const char *names[] = {specs[0].name, specs[1].name};
    cl_topic_info *infos;
    assert_int_equal(cl_kafka_describe_topics(cfg, names, 2, &infos, TIMEOUT_MS, err, sizeof err),
                     CL_OK);
    assert_string_equal(infos[0].name, specs[0].name);
    assert_int_equal(infos[0].partitions, 3);
    assert_int_equal(infos[0].replication_factor, 1);
    assert_string_equal(cl_topic_info_config(&infos[0], "cleanup.policy"), "delete");
    assert_int_equal(infos[1].partitions, 1);
    assert_string_equal(cl_topic_info_config(&infos[1], "cleanup.policy"), "compact");
    int found_nondefault = 0;
    for (size_t i = 0; i < infos[1].nconfigs; i++)
        if (strcmp(infos[1].configs[i].name, "cleanup.policy") == 0)
            found_nondefault = !infos[1].configs[i].is_default;
    assert_true(found_nondefault);
    cl_topic_infos_free(infos, 2);

    const char *missing[] = {cl_config_topic(cfg, "no-such-topic")};
    assert_int_equal(cl_kafka_describe_topics(cfg, missing, 1, &infos, TIMEOUT_MS, err, sizeof err),
                     CL_ENOTFOUND);
    assert_non_null(strstr(err, "no-such-topic"));
    cl_config_free(cfg);
}

/* ---------------------------------------------------------------- round trip */

typedef struct {
    int acked[N_RECORDS + 8];
    int failed[N_RECORDS + 8];
    int calls;
} deliveries;

static void on_delivery(void *opaque, int status, const char *topic, int32_t partition,
                        int64_t offset, const char *reason, void *ud)
{
    deliveries *d = ud;
    intptr_t i = (intptr_t)opaque;
    d->calls++;
    if (status == CL_OK) {
        assert_true(partition >= 0);
        assert_true(offset >= 0);
        d->acked[i]++;
    } else {
        assert_non_null(reason);
        d->failed[i]++;
    }
}

/* Record i: key "opp-<i>" (record 0 has a null key), value with binary bytes
 * (record 1 is a tombstone), headers idx=<i> and a binary one. */
static void record(int i, char *key, size_t *key_len, unsigned char *value, size_t *value_len)
{
    *key_len = (size_t)snprintf(key, 32, "opp-%d", i);
    *value_len = (size_t)(16 + i % 50);
    for (size_t j = 0; j < *value_len; j++)
        value[j] = (unsigned char)((i * 31 + (int)j) & 0xff);
    value[0] = 0; /* embedded NUL */
}

static void check_record(const cl_message *m, int *seen)
{
    const void *hv;
    size_t hl;
    assert_int_equal(cl_message_header(m, "idx", &hv, &hl), CL_OK);
    char idx[16] = "";
    assert_true(hl < sizeof idx);
    memcpy(idx, hv, hl);
    int64_t i;
    assert_int_equal(cl_parse_int64(idx, &i), CL_OK);
    assert_true(i >= 0 && i < N_RECORDS);
    seen[i]++;
    char key[32];
    unsigned char value[128];
    size_t kl, vl;
    record((int)i, key, &kl, value, &vl);
    if (i == 0) {
        assert_null(m->key);
    } else {
        assert_int_equal(m->key_len, kl);
        assert_memory_equal(m->key, key, kl);
    }
    if (i == 1) {
        assert_null(m->value);
        assert_int_equal(m->value_len, 0);
    } else {
        assert_int_equal(m->value_len, vl);
        assert_memory_equal(m->value, value, vl);
    }
    assert_int_equal(cl_message_header(m, "bin", &hv, &hl), CL_OK);
    assert_int_equal(hl, 3);
    assert_memory_equal(hv, "\x00\x01\xff", 3);
    assert_int_equal(cl_message_header(m, "absent", &hv, &hl), CL_ENOTFOUND);
    assert_true(m->timestamp_ms > 0);
}

typedef struct {
    int assigned, revoked;
} hook_counts;

static int count_assign(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                        size_t errlen)
{
    ((hook_counts *)ud)->assigned += (int)n;
    return 0;
}

static void count_revoke(cl_consumer *c, const cl_topic_partition *parts, size_t n, void *ud)
{
    ((hook_counts *)ud)->revoked += (int)n;
}

static void test_round_trip_commit_and_resume(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "roundtrip", 3, 0);
    const char *topic = cl_config_topic(cfg, "roundtrip");
    char err[CL_ERRLEN];

    deliveries *d = calloc(1, sizeof *d);
    assert_non_null(d);
    cl_producer *p;
    cl_producer_opts popts = {.on_delivery = on_delivery, .ud = d};
    assert_int_equal(cl_producer_new(cfg, &popts, &p, err, sizeof err), CL_OK);
    for (int i = 0; i < N_RECORDS; i++) {
        char key[32], idx[16];
        unsigned char value[128];
        size_t kl, vl;
        record(i, key, &kl, value, &vl);
        snprintf(idx, sizeof idx, "%d", i);
        cl_kafka_header h[] = {{"idx", idx, strlen(idx)}, {"bin", "\x00\x01\xff", 3}};
        assert_int_equal(cl_producer_send(p, topic, i == 0 ? NULL : key, kl, i == 1 ? NULL : value,
                                          vl, h, 2, (void *)(intptr_t)i, 1000, err, sizeof err),
                         CL_OK);
    }
    assert_int_equal(cl_producer_flush(p, TIMEOUT_MS, err, sizeof err), CL_OK);
    assert_int_equal(d->calls, N_RECORDS);
    for (int i = 0; i < N_RECORDS; i++) {
        assert_int_equal(d->acked[i], 1);
        assert_int_equal(d->failed[i], 0);
    }
    cl_producer_counters c;
    cl_producer_counters_get(p, &c);
    assert_int_equal(c.sent, N_RECORDS);
    assert_int_equal(c.delivered, N_RECORDS);
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.in_flight, 0);
    assert_int_equal(cl_producer_close(p, 5000, err, sizeof err), CL_OK);
    assert_int_equal(d->calls, N_RECORDS); /* no extra reports on close */
    free(d);

    /* First consumer: read everything, then mark as processed only the first 3/5 of
     * each partition (explicit next-offsets) and commit. */
    char group[96];
    snprintf(group, sizeof group, "%sgroup", prefix);
    hook_counts hooks = {0, 0};
    cl_consumer_opts copts = {.group_id = group,
                              .topics = &topic,
                              .ntopics = 1,
                              .hooks = {count_assign, count_revoke, &hooks}};
    cl_consumer *con;
    assert_int_equal(cl_consumer_new(cfg, &copts, &con, err, sizeof err), CL_OK);
    int seen[N_RECORDS] = {0}, after_cut[N_RECORDS] = {0}, index_at[3][N_RECORDS];
    int64_t count[3] = {0, 0, 0};
    int got = 0;
    int64_t deadline = cl_mono_ms() + 60000;
    cl_message batch[64];
    while (got < N_RECORDS && cl_mono_ms() < deadline) {
        size_t n;
        assert_int_equal(cl_consumer_poll(con, batch, 64, &n, 500, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n; i++) {
            check_record(&batch[i], seen);
            assert_true(batch[i].partition >= 0 && batch[i].partition < 3);
            assert_int_equal(batch[i].offset, count[batch[i].partition]); /* in order, no gaps */
            const void *hv;
            size_t hl;
            char idx[16] = "";
            cl_message_header(&batch[i], "idx", &hv, &hl);
            memcpy(idx, hv, hl);
            index_at[batch[i].partition][count[batch[i].partition]++] = atoi(idx);
            got++;
        }
        cl_messages_release(batch, n);
    }
    assert_int_equal(got, N_RECORDS);
    for (int i = 0; i < N_RECORDS; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(hooks.assigned, 3);
    cl_topic_partition cut[3];
    int64_t expect_lag = 0;
    for (int part = 0; part < 3; part++) {
        cut[part] = (cl_topic_partition){topic, part, count[part] * 3 / 5};
        for (int64_t o = cut[part].offset; o < count[part]; o++)
            after_cut[index_at[part][o]] = 1;
        expect_lag += count[part] - cut[part].offset;
    }
    assert_int_equal(cl_consumer_store_offsets(con, cut, 3, err, sizeof err), CL_OK);
    assert_int_equal(cl_consumer_commit(con, 0, err, sizeof err), CL_OK);

    /* The commit is visible from outside, as lag monitors see it. */
    cl_lag_report lag;
    assert_int_equal(cl_kafka_group_lag(cfg, group, &lag, TIMEOUT_MS, err, sizeof err), CL_OK);
    assert_int_equal(lag.n, 3);
    int64_t total = 0;
    for (size_t i = 0; i < lag.n; i++) {
        assert_string_equal(lag.parts[i].group, group);
        assert_string_equal(lag.parts[i].topic, topic);
        assert_int_equal(lag.parts[i].partition, (int32_t)i);
        assert_true(lag.parts[i].lag >= 0);
        total += lag.parts[i].lag;
    }
    assert_int_equal(total, expect_lag);
    cl_lag_report_free(&lag);

    /* The consumer's own statistics report the same lag. */
    deadline = cl_mono_ms() + 20000;
    int64_t stats_total = -1;
    while (cl_mono_ms() < deadline) {
        size_t n;
        assert_int_equal(cl_consumer_poll(con, batch, 64, &n, 200, err, sizeof err), CL_OK);
        assert_int_equal(n, 0);
        assert_int_equal(cl_consumer_lag(con, &lag), CL_OK);
        int64_t sum = 0;
        int known = lag.n == 3;
        for (size_t i = 0; i < lag.n; i++) {
            if (lag.parts[i].lag < 0) known = 0;
            sum += lag.parts[i].lag;
        }
        if (known && sum == expect_lag) {
            stats_total = sum;
            assert_string_equal(lag.parts[0].group, group);
            for (size_t i = 0; i < lag.n; i++)
                if (lag.parts[i].lag > 0) assert_true(lag.parts[i].lag_seconds >= 0);
        }
        cl_lag_report_free(&lag);
        if (stats_total >= 0) break;
    }
    assert_int_equal(stats_total, expect_lag);
    /* End-of-partition arrives with the next empty fetch (up to fetch.wait.max.ms). */
    deadline = cl_mono_ms() + 10000;
    while (!cl_consumer_at_end(con) && cl_mono_ms() < deadline) {
        size_t n;
        assert_int_equal(cl_consumer_poll(con, batch, 64, &n, 200, err, sizeof err), CL_OK);
        assert_int_equal(n, 0);
    }
    assert_true(cl_consumer_at_end(con));

    char **groups;
    size_t ngroups;
    assert_int_equal(cl_kafka_list_groups(cfg, &groups, &ngroups, TIMEOUT_MS, err, sizeof err),
                     CL_OK);
    int listed = 0;
    for (size_t i = 0; i < ngroups; i++)
        listed |= strcmp(groups[i], group) == 0;
    cl_kafka_strings_free(groups, ngroups);
    assert_true(listed);

    assert_int_equal(cl_consumer_close(con, 10000, err, sizeof err), CL_OK);
    assert_int_equal(hooks.revoked, 3);

    /* Second consumer in the same group resumes after the committed offsets: it gets
     * exactly the records that were not stored, once each. */
    assert_int_equal(cl_consumer_new(cfg, &copts, &con, err, sizeof err), CL_OK);
    memset(seen, 0, sizeof seen);
    got = 0;
    deadline = cl_mono_ms() + 60000;
    while (!(got >= expect_lag && cl_consumer_at_end(con)) && cl_mono_ms() < deadline) {
        size_t n;
        assert_int_equal(cl_consumer_poll(con, batch, 64, &n, 500, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n; i++) {
            check_record(&batch[i], seen);
            assert_int_equal(cl_consumer_store(con, &batch[i], err, sizeof err), CL_OK);
            got++;
        }
        cl_messages_release(batch, n);
    }
    assert_int_equal(got, expect_lag);
    for (int i = 0; i < N_RECORDS; i++)
        assert_int_equal(seen[i], after_cut[i]);
    /* Close commits what was stored: nothing is left for a third consumer. */
    assert_int_equal(cl_consumer_close(con, 10000, err, sizeof err), CL_OK);
    assert_int_equal(cl_kafka_group_lag(cfg, group, &lag, TIMEOUT_MS, err, sizeof err), CL_OK);
    for (size_t i = 0; i < lag.n; i++)
        assert_int_equal(lag.parts[i].lag, 0);
    cl_lag_report_free(&lag);
    cl_config_free(cfg);
}

/* ---------------------------------------------------------------- start offsets, read to end */

/* n records "<label><i>" with key "k". */
static void produce_simple(cl_config *cfg, const char *topic, int n, const char *label)
{
    char err[CL_ERRLEN];
    cl_producer *p;
    cl_producer_opts popts = {0};
    assert_int_equal(cl_producer_new(cfg, &popts, &p, err, sizeof err), CL_OK);
    for (int i = 0; i < n; i++) {
        char v[64];
        int len = snprintf(v, sizeof v, "%s%d", label, i);
        assert_int_equal(cl_producer_send(p, topic, "k", 1, v, (size_t)len, NULL, 0, NULL, 1000,
                                          err, sizeof err),
                         CL_OK);
    }
    assert_int_equal(cl_producer_close(p, TIMEOUT_MS, err, sizeof err), CL_OK);
}

static int start_at_seven(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        parts[i].offset = 7;
    return 0;
}

static void test_on_assign_sets_start_offsets(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "seek", 1, 0);
    const char *topic = cl_config_topic(cfg, "seek");
    produce_simple(cfg, topic, 10, "v");
    char group[96], err[CL_ERRLEN];
    snprintf(group, sizeof group, "%sseek", prefix);
    cl_consumer_opts copts = {
        .group_id = group, .topics = &topic, .ntopics = 1, .hooks = {start_at_seven, NULL, NULL}};
    cl_consumer *con;
    assert_int_equal(cl_consumer_new(cfg, &copts, &con, err, sizeof err), CL_OK);
    int64_t offsets[16];
    int got = 0;
    int64_t deadline = cl_mono_ms() + 30000;
    while (!cl_consumer_at_end(con) && cl_mono_ms() < deadline) {
        cl_message m[8];
        size_t n;
        assert_int_equal(cl_consumer_poll(con, m, 8, &n, 500, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n && got < 16; i++)
            offsets[got++] = m[i].offset;
        cl_messages_release(m, n);
    }
    assert_int_equal(got, 3);
    assert_int_equal(offsets[0], 7);
    assert_int_equal(offsets[1], 8);
    assert_int_equal(offsets[2], 9);
    assert_int_equal(cl_consumer_close(con, 10000, err, sizeof err), CL_OK);
    cl_config_free(cfg);
}

static int failing_assign(cl_consumer *c, cl_topic_partition *parts, size_t n, void *ud, char *err,
                          size_t errlen)
{
    snprintf(err, errlen, "state store unavailable");
    return -1;
}

static void test_failed_on_assign_stops_consumption(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "assignfail", 1, 0);
    const char *topic = cl_config_topic(cfg, "assignfail");
    produce_simple(cfg, topic, 3, "v");
    char group[96], err[CL_ERRLEN] = "";
    snprintf(group, sizeof group, "%sassignfail", prefix);
    cl_consumer_opts copts = {
        .group_id = group, .topics = &topic, .ntopics = 1, .hooks = {failing_assign, NULL, NULL}};
    cl_consumer *con;
    assert_int_equal(cl_consumer_new(cfg, &copts, &con, err, sizeof err), CL_OK);
    int rc = CL_OK;
    int64_t deadline = cl_mono_ms() + 30000;
    while (rc == CL_OK && cl_mono_ms() < deadline) {
        cl_message m[8];
        size_t n;
        rc = cl_consumer_poll(con, m, 8, &n, 500, err, sizeof err);
        assert_int_equal(n, 0); /* nothing may be processed without restored state */
    }
    assert_int_equal(rc, CL_ERR);
    assert_non_null(strstr(err, "state store unavailable"));
    cl_consumer_close(con, 10000, err, sizeof err);
    cl_config_free(cfg);
}

static void test_read_to_end_of_compacted_topic(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "weights-rte", 1, 1);
    create_topic(cfg, "empty-rte", 2, 0);
    const char *topic = cl_config_topic(cfg, "weights-rte");
    const char *empty = cl_config_topic(cfg, "empty-rte");
    produce_simple(cfg, topic, 5, "version-");
    char err[CL_ERRLEN];
    const char *topics[] = {topic, empty};
    cl_consumer_opts copts = {.topics = topics, .ntopics = 2, .read_to_end = 1};
    cl_consumer *r;
    if (cl_consumer_new(cfg, &copts, &r, err, sizeof err) != CL_OK) fail_msg("%s", err);
    assert_int_equal(cl_consumer_assignment_count(r), 3);
    int got = 0;
    char last[64] = "";
    int64_t deadline = cl_mono_ms() + 30000;
    while (!cl_consumer_at_end(r) && cl_mono_ms() < deadline) {
        cl_message m[8];
        size_t n;
        assert_int_equal(cl_consumer_poll(r, m, 8, &n, 500, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n; i++) {
            got++;
            snprintf(last, sizeof last, "%.*s", (int)m[i].value_len, (const char *)m[i].value);
        }
        cl_messages_release(m, n);
    }
    assert_true(cl_consumer_at_end(r));
    assert_int_equal(got, 5);
    assert_string_equal(last, "version-4");
    /* Following: a new record clears "at end" until it has been read. */
    produce_simple(cfg, topic, 1, "version-5-");
    deadline = cl_mono_ms() + 30000;
    got = 0;
    while (got == 0 && cl_mono_ms() < deadline) {
        cl_message m[8];
        size_t n;
        assert_int_equal(cl_consumer_poll(r, m, 8, &n, 500, err, sizeof err), CL_OK);
        got += (int)n;
        if (n) assert_false(cl_consumer_at_end(r));
        cl_messages_release(m, n);
    }
    assert_int_equal(got, 1);
    /* Commits are meaningless without a group and are accepted as no-ops. */
    assert_int_equal(cl_consumer_commit(r, 0, err, sizeof err), CL_OK);
    assert_int_equal(cl_consumer_close(r, 10000, err, sizeof err), CL_OK);

    const char *missing = cl_config_topic(cfg, "missing-rte");
    copts = (cl_consumer_opts){.topics = &missing, .ntopics = 1, .read_to_end = 1};
    assert_int_equal(cl_consumer_new(cfg, &copts, &r, err, sizeof err), CL_ENOTFOUND);
    assert_non_null(strstr(err, "missing-rte"));
    cl_config_free(cfg);
}

/* ---------------------------------------------------------------- DLQ */

static void test_dlq_carries_source_coordinates(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "dlq-src", 1, 0);
    create_topic(cfg, "dlq", 1, 0);
    const char *src_topic = cl_config_topic(cfg, "dlq-src");
    const char *dlq = cl_config_topic(cfg, "dlq");
    char err[CL_ERRLEN];
    cl_producer *p;
    cl_producer_opts popts = {0};
    assert_int_equal(cl_producer_new(cfg, &popts, &p, err, sizeof err), CL_OK);
    static const unsigned char garbage[] = {0xC3, 0x01, 0xde, 0xad, 0x00, 0xff};
    cl_kafka_header h[] = {{"trace", "abc", 3}};
    assert_int_equal(
        cl_producer_send(p, src_topic, "opp-9", 5, "ok", 2, NULL, 0, NULL, 1000, err, sizeof err),
        CL_OK);
    assert_int_equal(cl_producer_send(p, src_topic, "opp-7", 5, garbage, sizeof garbage, h, 1, NULL,
                                      1000, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_producer_flush(p, TIMEOUT_MS, err, sizeof err), CL_OK);

    cl_consumer_opts copts = {.topics = &src_topic, .ntopics = 1, .read_to_end = 1};
    cl_consumer *r;
    assert_int_equal(cl_consumer_new(cfg, &copts, &r, err, sizeof err), CL_OK);
    cl_message bad = {0};
    int64_t deadline = cl_mono_ms() + 30000;
    while (!bad.rkmessage && cl_mono_ms() < deadline) {
        cl_message m[4];
        size_t n;
        assert_int_equal(cl_consumer_poll(r, m, 4, &n, 500, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n; i++) {
            if (m[i].offset == 1 && !bad.rkmessage) {
                bad = m[i];
                m[i].rkmessage = NULL; /* keep it */
            }
        }
        for (size_t i = 0; i < n; i++)
            if (m[i].rkmessage) cl_message_release(&m[i]);
    }
    assert_non_null(bad.rkmessage);
    assert_int_equal(
        cl_kafka_dlq_send(p, dlq, &bad, "join", "avro: bad magic byte 0xC3", NULL, err, sizeof err),
        CL_OK);
    cl_message_release(&bad);
    assert_int_equal(cl_producer_close(p, TIMEOUT_MS, err, sizeof err), CL_OK);
    assert_int_equal(cl_consumer_close(r, 10000, err, sizeof err), CL_OK);

    copts = (cl_consumer_opts){.topics = &dlq, .ntopics = 1, .read_to_end = 1};
    assert_int_equal(cl_consumer_new(cfg, &copts, &r, err, sizeof err), CL_OK);
    cl_message m[4];
    size_t n = 0;
    deadline = cl_mono_ms() + 30000;
    while (n == 0 && cl_mono_ms() < deadline)
        assert_int_equal(cl_consumer_poll(r, m, 4, &n, 500, err, sizeof err), CL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].key_len, 5);
    assert_memory_equal(m[0].key, "opp-7", 5);
    assert_int_equal(m[0].value_len, sizeof garbage);
    assert_memory_equal(m[0].value, garbage, sizeof garbage);
    static const struct {
        const char *name, *value;
    } want[] = {{"trace", "abc"},
                {"source.partition", "0"},
                {"source.offset", "1"},
                {"worker", "join"},
                {"error", "avro: bad magic byte 0xC3"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const void *v;
        size_t l;
        assert_int_equal(cl_message_header(&m[0], want[i].name, &v, &l), CL_OK);
        assert_int_equal(l, strlen(want[i].value));
        assert_memory_equal(v, want[i].value, l);
    }
    const void *v;
    size_t l;
    assert_int_equal(cl_message_header(&m[0], "source.topic", &v, &l), CL_OK);
    assert_int_equal(l, strlen(src_topic));
    assert_memory_equal(v, src_topic, l);
    cl_messages_release(m, n);
    assert_int_equal(cl_consumer_close(r, 10000, err, sizeof err), CL_OK);
    cl_config_free(cfg);
}

/* ---------------------------------------------------------------- rebalance */

static void test_revoke_commits_stored_offsets(void **state)
{
    (void)state;
    cl_config *cfg = config();
    create_topic(cfg, "rebalance", 4, 0);
    const char *topic = cl_config_topic(cfg, "rebalance");
    produce_simple(cfg, topic, 40, "r");
    char group[96], err[CL_ERRLEN];
    snprintf(group, sizeof group, "%srebalance", prefix);
    hook_counts ha = {0, 0}, hb = {0, 0};
    cl_consumer_opts oa = {.group_id = group,
                           .topics = &topic,
                           .ntopics = 1,
                           .hooks = {count_assign, count_revoke, &ha}};
    cl_consumer_opts ob = oa;
    ob.hooks.ud = &hb;
    cl_consumer *a, *b;
    assert_int_equal(cl_consumer_new(cfg, &oa, &a, err, sizeof err), CL_OK);
    /* A alone: all four partitions, every record processed and stored, nothing committed
     * explicitly. */
    int got = 0;
    int64_t deadline = cl_mono_ms() + 30000;
    while (!(got == 40 && cl_consumer_at_end(a)) && cl_mono_ms() < deadline) {
        cl_message m[16];
        size_t n;
        assert_int_equal(cl_consumer_poll(a, m, 16, &n, 200, err, sizeof err), CL_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(cl_consumer_store(a, &m[i], err, sizeof err), CL_OK);
        got += (int)n;
        cl_messages_release(m, n);
    }
    assert_int_equal(got, 40);
    assert_int_equal(cl_consumer_assignment_count(a), 4);

    /* B joins: A's partitions are revoked, and the wrapper commits A's stored offsets
     * before letting them go, so B has nothing to reprocess. */
    assert_int_equal(cl_consumer_new(cfg, &ob, &b, err, sizeof err), CL_OK);
    int b_records = 0;
    deadline = cl_mono_ms() + 60000;
    while (cl_mono_ms() < deadline) {
        cl_message m[16];
        size_t n;
        assert_int_equal(cl_consumer_poll(a, m, 16, &n, 100, err, sizeof err), CL_OK);
        assert_int_equal(n, 0);
        assert_int_equal(cl_consumer_poll(b, m, 16, &n, 100, err, sizeof err), CL_OK);
        b_records += (int)n;
        cl_messages_release(m, n);
        if (cl_consumer_assignment_count(a) > 0 && cl_consumer_assignment_count(b) > 0 &&
            cl_consumer_assignment_count(a) + cl_consumer_assignment_count(b) == 4 &&
            cl_consumer_at_end(b))
            break;
    }
    assert_true(ha.revoked >= 4);
    assert_int_equal(cl_consumer_assignment_count(a) + cl_consumer_assignment_count(b), 4);
    assert_true(cl_consumer_assignment_count(b) > 0);
    assert_int_equal(b_records, 0);
    cl_lag_report lag;
    assert_int_equal(cl_kafka_group_lag(cfg, group, &lag, TIMEOUT_MS, err, sizeof err), CL_OK);
    /* produce_simple keys every record "k": one partition holds all 40. */
    assert_int_equal(lag.n, 1);
    int64_t committed = 0;
    for (size_t i = 0; i < lag.n; i++) {
        assert_int_equal(lag.parts[i].lag, 0);
        committed += lag.parts[i].committed_offset;
    }
    assert_int_equal(committed, 40);
    cl_lag_report_free(&lag);
    assert_int_equal(cl_consumer_close(b, 10000, err, sizeof err), CL_OK);
    assert_int_equal(cl_consumer_close(a, 10000, err, sizeof err), CL_OK);
    cl_config_free(cfg);
}

/* ---------------------------------------------------------------- failures are reported */

static void test_failed_delivery_is_reported_not_lost(void **state)
{
    (void)state;
    cl_config *cfg = config();
    char err[CL_ERRLEN];
    /* The broker does not auto-create topics: a record for a missing topic can never be
     * delivered and must come back as a failure within message.timeout.ms. */
    assert_int_equal(
        cl_config_set(cfg, "kafka.message.timeout.ms", "3000", "test", err, sizeof err), CL_OK);
    deliveries *d = calloc(1, sizeof *d);
    assert_non_null(d);
    cl_producer *p;
    cl_producer_opts popts = {.on_delivery = on_delivery, .ud = d};
    assert_int_equal(cl_producer_new(cfg, &popts, &p, err, sizeof err), CL_OK);
    const char *missing = cl_config_topic(cfg, "never-created");
    int rc = cl_producer_send(p, missing, "k", 1, "v", 1, NULL, 0, (void *)(intptr_t)3, 1000, err,
                              sizeof err);
    if (rc == CL_OK) {
        int frc = cl_producer_flush(p, 20000, err, sizeof err);
        assert_int_equal(frc, CL_OK); /* flushed = every record has its report */
        assert_int_equal(d->calls, 1);
        assert_int_equal(d->failed[3], 1);
        assert_int_equal(d->acked[3], 0);
        cl_producer_counters c;
        cl_producer_counters_get(p, &c);
        assert_int_equal(c.sent, 1);
        assert_int_equal(c.failed, 1);
        assert_int_equal(c.delivered, 0);
    } else {
        /* Rejected up front: then there must be no callback, and the error names the topic. */
        assert_int_equal(rc, CL_EINVAL);
        assert_non_null(strstr(err, "never-created"));
        assert_int_equal(d->calls, 0);
    }
    assert_int_equal(cl_producer_close(p, 5000, err, sizeof err), CL_OK);
    free(d);
    cl_config_free(cfg);
}

static int teardown_topics(void **state)
{
    (void)state;
    cl_config *cfg = config();
    const char *suffixes[] = {"snapshots",   "weights",   "roundtrip", "seek", "assignfail",
                              "weights-rte", "empty-rte", "dlq-src",   "dlq",  "rebalance"};
    const char *names[sizeof suffixes / sizeof suffixes[0]];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        names[i] = cl_config_topic(cfg, suffixes[i]);
    char err[CL_ERRLEN];
    int rc = cl_kafka_delete_topics(cfg, names, sizeof names / sizeof names[0], TIMEOUT_MS, err,
                                    sizeof err);
    if (rc != CL_OK) fprintf(stderr, "cleanup: %s\n", err);
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_topics_is_idempotent_and_compaction_is_visible),
        cmocka_unit_test(test_round_trip_commit_and_resume),
        cmocka_unit_test(test_on_assign_sets_start_offsets),
        cmocka_unit_test(test_failed_on_assign_stops_consumption),
        cmocka_unit_test(test_read_to_end_of_compacted_topic),
        cmocka_unit_test(test_dlq_carries_source_coordinates),
        cmocka_unit_test(test_revoke_commits_stored_offsets),
        cmocka_unit_test(test_failed_delivery_is_reported_not_lost),
    };
    return cmocka_run_group_tests(tests, setup_broker, teardown_topics);
}
