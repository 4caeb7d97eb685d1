/*
 * test_kafka.c — the pure parts of common/kafka: librdkafka statistics -> consumer lag,
 * the lag-seconds estimate, configuration mapping (defaults, pass-through, forced
 * consumer settings), and the stop flag. The broker-facing parts are covered by
 * tests/integration/test_kafka.c.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "kafka.h"

/* Captured from a real consumer (group capture-g) on the local Kafka 4.1 broker after
 * producing 20 records to a 6-partition topic and committing 5 of them; broker and
 * partition objects trimmed to the fields a lag parser may look at. */
static const char captured_stats[] =
    "{\"name\":\"rdkafka#consumer-2\",\"client_id\":\"rdkafka\",\"type\":\"consumer\",\"ts\":"
    "783926737,\"time\""
    ":1795833848,\"age\":3002401,\"replyq\":0,\"msg_cnt\":0,\"msg_size\":0,\"msg_max\":0,\"msg_"
    "size_max\":0"
    ",\"simple_cnt\":0,\"metadata_cache_cnt\":1,\"brokers\":{\"127.0.0.1:9092/"
    "1\":{\"name\":\"127.0.0.1:90"
    "92/"
    "1\",\"nodeid\":1,\"state\":\"UP\"},\"GroupCoordinator\":{\"name\":\"GroupCoordinator\","
    "\"nodeid\":-1,\""
    "state\":\"UP\"}},\"topics\":{\"smoke1.snapshots\":{\"topic\":\"smoke1.snapshots\",\"age\":"
    "2900,\"metadat"
    "a_age\":2914,\"batchsize\":{\"min\":0,\"max\":0,\"avg\":0,\"sum\":0,\"stddev\":0,\"p50\":0,"
    "\"p75\":0,\"p90\":"
    "0,\"p95\":0,\"p99\":0,\"p99_99\":0,\"outofrange\":0,\"hdrsize\":14448,\"cnt\":0},\"batchcnt\":"
    "{\"min\":0,\""
    "max\":0,\"avg\":0,\"sum\":0,\"stddev\":0,\"p50\":0,\"p75\":0,\"p90\":0,\"p95\":0,\"p99\":0,"
    "\"p99_99\":0,\"outo"
    "frange\":0,\"hdrsize\":8304,\"cnt\":0},\"partitions\":{\"0\":{\"partition\":0,\"broker\":1,"
    "\"leader\":1,\""
    "desired\":true,\"fetchq_cnt\":0,\"fetch_state\":\"active\",\"query_offset\":-2,\"next_"
    "offset\":3,\"app"
    "_offset\":3,\"stored_offset\":3,\"committed_offset\":-1001,\"eof_offset\":3,\"lo_offset\":0,"
    "\"hi_off"
    "set\":3,\"ls_offset\":3,\"consumer_lag\":-1,\"consumer_lag_stored\":0,\"rxmsgs\":3,\"msgs\":3}"
    ",\"1\":{\""
    "partition\":1,\"broker\":1,\"leader\":1,\"desired\":true,\"fetchq_cnt\":0,\"fetch_state\":"
    "\"active\",\"q"
    "uery_offset\":-2,\"next_offset\":4,\"app_offset\":4,\"stored_offset\":4,\"committed_offset\":-"
    "1001,"
    "\"eof_offset\":4,\"lo_offset\":0,\"hi_offset\":4,\"ls_offset\":4,\"consumer_lag\":-1,"
    "\"consumer_lag_s"
    "tored\":0,\"rxmsgs\":4,\"msgs\":4},\"2\":{\"partition\":2,\"broker\":1,\"leader\":1,"
    "\"desired\":true,\"fet"
    "chq_cnt\":0,\"fetch_state\":\"active\",\"query_offset\":-2,\"next_offset\":4,\"app_offset\":4,"
    "\"stored"
    "_offset\":4,\"committed_offset\":-1001,\"eof_offset\":4,\"lo_offset\":0,\"hi_offset\":4,\"ls_"
    "offset\""
    ":4,\"consumer_lag\":-1,\"consumer_lag_stored\":0,\"rxmsgs\":4,\"msgs\":4},\"3\":{"
    "\"partition\":3,\"brok"
    "er\":1,\"leader\":1,\"desired\":true,\"fetchq_cnt\":0,\"fetch_state\":\"active\",\"query_"
    "offset\":-2,\"n"
    "ext_offset\":2,\"app_offset\":2,\"stored_offset\":2,\"committed_offset\":-1001,\"eof_offset\":"
    "2,\"lo"
    "_offset\":0,\"hi_offset\":2,\"ls_offset\":2,\"consumer_lag\":-1,\"consumer_lag_stored\":0,"
    "\"rxmsgs\":"
    "2,\"msgs\":2},\"4\":{\"partition\":4,\"broker\":1,\"leader\":1,\"desired\":true,\"fetchq_"
    "cnt\":0,\"fetch_"
    "state\":\"active\",\"query_offset\":-2,\"next_offset\":4,\"app_offset\":4,\"stored_offset\":4,"
    "\"commit"
    "ted_offset\":2,\"eof_offset\":4,\"lo_offset\":0,\"hi_offset\":4,\"ls_offset\":4,\"consumer_"
    "lag\":2,\"c"
    "onsumer_lag_stored\":0,\"rxmsgs\":4,\"msgs\":4},\"5\":{\"partition\":5,\"broker\":1,"
    "\"leader\":1,\"desir"
    "ed\":true,\"fetchq_cnt\":0,\"fetch_state\":\"active\",\"query_offset\":-2,\"next_offset\":3,"
    "\"app_offs"
    "et\":3,\"stored_offset\":3,\"committed_offset\":3,\"eof_offset\":3,\"lo_offset\":0,\"hi_"
    "offset\":3,\"l"
    "s_offset\":3,\"consumer_lag\":0,\"consumer_lag_stored\":0,\"rxmsgs\":3,\"msgs\":3},\"-1\":{"
    "\"partition"
    "\":-1,\"broker\":-1,\"leader\":-1,\"desired\":false,\"fetchq_cnt\":0,\"fetch_state\":\"none\","
    "\"query_of"
    "fset\":-1001,\"next_offset\":0,\"app_offset\":-1001,\"stored_offset\":-1001,\"committed_"
    "offset\":-1"
    "001,\"eof_offset\":-1001,\"lo_offset\":-1001,\"hi_offset\":-1001,\"ls_offset\":-1001,"
    "\"consumer_lag"
    "\":-1,\"consumer_lag_stored\":-1,\"rxmsgs\":0,\"msgs\":0}}}},\"cgrp\":{\"state\":\"up\","
    "\"stateage\":2942"
    ",\"join_state\":\"steady\",\"rebalance_age\":2900,\"rebalance_cnt\":1,\"rebalance_reason\":"
    "\"Metadata"
    " for subscribed topic(s) has "
    "changed\",\"assignment_size\":6},\"tx\":32,\"tx_bytes\":4037,\"rx\":31"
    ",\"rx_bytes\":5430,\"txmsgs\":0,\"txmsg_bytes\":0,\"rxmsgs\":20,\"rxmsg_bytes\":100}";

static void test_stats_lag_from_captured_statistics(void **state)
{
    (void)state;
    cl_lag_report r;
    char err[CL_ERRLEN] = "";
    assert_int_equal(
        cl_kafka_parse_stats_lag(captured_stats, strlen(captured_stats), &r, err, sizeof err),
        CL_OK);
    /* Six assigned partitions; librdkafka's internal partition -1 is not one of them. */
    assert_int_equal(r.n, 6);
    for (size_t i = 0; i < r.n; i++) {
        assert_string_equal(r.parts[i].topic, "smoke1.snapshots");
        assert_int_equal(r.parts[i].partition, (int32_t)i); /* sorted */
        assert_true(r.parts[i].lag_seconds < 0);            /* needs history */
        assert_string_equal(r.parts[i].group, "");          /* filled in by the consumer */
    }
    /* Partition 4: committed 2 of 4. */
    assert_int_equal(r.parts[4].committed_offset, 2);
    assert_int_equal(r.parts[4].end_offset, 4);
    assert_int_equal(r.parts[4].lag, 2);
    /* Partition 5: all 3 committed. */
    assert_int_equal(r.parts[5].committed_offset, 3);
    assert_int_equal(r.parts[5].end_offset, 3);
    assert_int_equal(r.parts[5].lag, 0);
    /* Partition 0: nothing committed (-1001 in the JSON): lag unknown, not zero. */
    assert_int_equal(r.parts[0].committed_offset, -1);
    assert_int_equal(r.parts[0].end_offset, 3);
    assert_int_equal(r.parts[0].lag, -1);
    assert_int_equal(r.updated_ms, INT64_C(1795833848) * 1000);
    cl_lag_report_free(&r);
    assert_null(r.parts);
    assert_int_equal(r.n, 0);
}

static const char two_topics[] = "{\"type\":\"consumer\",\"time\":1,\"topics\":{"
                                 "\"zeta\":{\"topic\":\"zeta\",\"partitions\":{"
                                 "  "
                                 "\"1\":{\"partition\":1,\"fetch_state\":\"active\",\"committed_"
                                 "offset\":10,\"hi_offset\":15,\"consumer_lag\":5},"
                                 "  "
                                 "\"0\":{\"partition\":0,\"fetch_state\":\"active\",\"committed_"
                                 "offset\":7,\"hi_offset\":9,\"consumer_lag\":-1}}},"
                                 "\"alpha\":{\"topic\":\"alpha\",\"partitions\":{"
                                 "  "
                                 "\"2\":{\"partition\":2,\"fetch_state\":\"none\",\"committed_"
                                 "offset\":1,\"hi_offset\":2,\"consumer_lag\":1},"
                                 "  "
                                 "\"0\":{\"partition\":0,\"fetch_state\":\"offset-query\","
                                 "\"committed_offset\":\"3\",\"hi_offset\":4}}}}}";

static void test_stats_lag_sorts_skips_unassigned_and_computes_missing_lag(void **state)
{
    (void)state;
    cl_lag_report r;
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_parse_stats_lag(two_topics, strlen(two_topics), &r, err, sizeof err),
                     CL_OK);
    assert_int_equal(r.n, 3); /* alpha[2] is not assigned (fetch_state none) */
    assert_string_equal(r.parts[0].topic, "alpha");
    assert_int_equal(r.parts[0].partition, 0);
    assert_int_equal(r.parts[0].committed_offset, -1); /* a string is not an offset */
    assert_int_equal(r.parts[0].lag, -1);
    assert_string_equal(r.parts[1].topic, "zeta");
    assert_int_equal(r.parts[1].partition, 0);
    assert_int_equal(r.parts[1].lag, 2); /* consumer_lag -1 but both offsets known */
    assert_int_equal(r.parts[2].partition, 1);
    assert_int_equal(r.parts[2].lag, 5);
    cl_lag_report_free(&r);
}

static void test_stats_producer_has_no_consumer_partitions(void **state)
{
    (void)state;
    const char *js = "{\"type\":\"producer\",\"time\":5,\"topics\":{\"t\":{\"partitions\":{"
                     "\"0\":{\"partition\":0,\"fetch_state\":\"none\",\"hi_offset\":-1}}}}}";
    cl_lag_report r;
    assert_int_equal(cl_kafka_parse_stats_lag(js, strlen(js), &r, NULL, 0), CL_OK);
    assert_int_equal(r.n, 0);
    cl_lag_report_free(&r);
    const char *no_topics = "{\"type\":\"consumer\",\"time\":5}";
    assert_int_equal(cl_kafka_parse_stats_lag(no_topics, strlen(no_topics), &r, NULL, 0), CL_OK);
    assert_int_equal(r.n, 0);
    cl_lag_report_free(&r);
}

static void test_stats_rejects_what_is_not_statistics(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{",
        "[1,2,3]",
        "{\"topics\":{}}",                               /* no type */
        "{\"type\":\"consumer\",\"topics\":[]}",         /* topics not an object */
        "{\"type\":\"consumer\",\"type\":\"producer\"}", /* duplicate key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cl_lag_report r;
        char err[CL_ERRLEN] = "";
        assert_int_equal(cl_kafka_parse_stats_lag(bad[i], strlen(bad[i]), &r, err, sizeof err),
                         CL_EINVAL);
        assert_true(strlen(err) > 0);
        assert_null(r.parts);
    }
    /* A topic name longer than any Kafka topic can be. */
    char js[1024];
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    snprintf(js, sizeof js,
             "{\"type\":\"consumer\",\"topics\":{\"%s\":{\"partitions\":{\"0\":{\"partition\":0,"
             "\"fetch_state\":\"active\"}}}}}",
             longname);
    cl_lag_report r;
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_parse_stats_lag(js, strlen(js), &r, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "topic name"));
    /* Out-of-range partition numbers are ignored, not truncated into a real partition. */
    const char *huge = "{\"type\":\"consumer\",\"topics\":{\"t\":{\"partitions\":{\"x\":{"
                       "\"partition\":4294967296,\"fetch_state\":\"active\"}}}}}";
    assert_int_equal(cl_kafka_parse_stats_lag(huge, strlen(huge), &r, err, sizeof err), CL_OK);
    assert_int_equal(r.n, 0);
    cl_lag_report_free(&r);
}

static void test_lag_seconds_estimate(void **state)
{
    (void)state;
    /* End offset 100 seen from t=0 to t=60 s, then 101 first seen at t=65 s. */
    cl_lag_sample s[] = {
        {100, 0, 60000},
        {101, 65000, 65000},
        {200, 70000, 70000},
    };
    /* Nothing unconsumed. */
    assert_true(cl_kafka_estimate_lag_seconds(s, 3, 200, 80000) == 0);
    /* The record at 100 arrived between 60 s and 65 s: ~1/1 of the way -> 65 s; at 80 s
     * it is 15 s old. One idle hour before it must not inflate the estimate. */
    double age = cl_kafka_estimate_lag_seconds(s, 3, 100, 80000);
    assert_true(age >= 15.0 - 1e-9 && age <= 20.0);
    /* Record 150: between end 101 (last seen 65 s) and 200 (first seen 70 s), halfway. */
    age = cl_kafka_estimate_lag_seconds(s, 3, 150, 80000);
    assert_true(age > 12.0 && age < 13.0);
    /* Older than the history: the age of the oldest sample, a lower bound. */
    age = cl_kafka_estimate_lag_seconds(s, 3, 50, 80000);
    assert_true(age == 80.0);
    /* Unknown. */
    assert_true(cl_kafka_estimate_lag_seconds(s, 0, 10, 80000) < 0);
    assert_true(cl_kafka_estimate_lag_seconds(s, 3, -1, 80000) < 0);
}

/* ---------------------------------------------------------------- configuration */

static cl_config *new_config(void)
{
    cl_config *cfg = cl_config_new("closedloop-test", "unit test", NULL);
    assert_non_null(cfg);
    return cfg;
}

static void set(cl_config *cfg, const char *key, const char *value)
{
    char err[CL_ERRLEN] = "";
    if (cl_config_set(cfg, key, value, "test", err, sizeof err) != CL_OK) fail_msg("%s", err);
}

static void expect_prop(rd_kafka_conf_t *conf, const char *key, const char *want)
{
    char buf[256];
    size_t len = sizeof buf;
    if (rd_kafka_conf_get(conf, key, buf, &len) != RD_KAFKA_CONF_OK) {
        /* Topic-level properties live in the default topic configuration. */
        rd_kafka_topic_conf_t *tc = rd_kafka_conf_get_default_topic_conf(conf);
        assert_non_null(tc);
        len = sizeof buf;
        assert_int_equal(rd_kafka_topic_conf_get(tc, key, buf, &len), RD_KAFKA_CONF_OK);
    }
    assert_string_equal(buf, want);
}

static void test_producer_conf_defaults_and_passthrough(void **state)
{
    (void)state;
    cl_config *cfg = new_config();
    set(cfg, "brokers", "broker-a:9092,broker-b:9092");
    set(cfg, "kafka.linger.ms", "7");
    set(cfg, "kafka.compression.type", "zstd");
    rd_kafka_conf_t *conf;
    char err[CL_ERRLEN];
    assert_int_equal(
        cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, "snapshot-test", &conf, err, sizeof err), CL_OK);
    expect_prop(conf, "bootstrap.servers", "broker-a:9092,broker-b:9092");
    expect_prop(conf, "client.id", "snapshot-test");
    expect_prop(conf, "enable.idempotence", "true");
    expect_prop(conf, "partitioner", "murmur2_random");
    expect_prop(conf, "linger.ms", "7");
    expect_prop(conf, "compression.type", "zstd");
    rd_kafka_conf_destroy(conf);
    cl_config_free(cfg);
}

static void test_user_properties_override_defaults(void **state)
{
    (void)state;
    cl_config *cfg = new_config();
    set(cfg, "kafka.partitioner", "consistent_random");
    set(cfg, "kafka.bootstrap.servers", "override:9093");
    set(cfg, "kafka.statistics.interval.ms", "1000");
    rd_kafka_conf_t *conf;
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, NULL, &conf, err, sizeof err),
                     CL_OK);
    expect_prop(conf, "partitioner", "consistent_random");
    expect_prop(conf, "bootstrap.servers", "override:9093");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, NULL, &conf, err, sizeof err),
                     CL_OK);
    expect_prop(conf, "statistics.interval.ms", "1000");
    rd_kafka_conf_destroy(conf);
    cl_config_free(cfg);
}

static void test_consumer_conf_forces_manual_offsets(void **state)
{
    (void)state;
    cl_config *cfg = new_config();
    rd_kafka_conf_t *conf;
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, NULL, &conf, err, sizeof err),
                     CL_OK);
    expect_prop(conf, "bootstrap.servers", "127.0.0.1:9092"); /* the common default */
    expect_prop(conf, "enable.auto.commit", "false");
    expect_prop(conf, "enable.auto.offset.store", "false");
    expect_prop(conf, "enable.partition.eof", "true");
    expect_prop(conf, "auto.offset.reset", "smallest"); /* librdkafka spells earliest so */
    expect_prop(conf, "statistics.interval.ms", "5000");
    rd_kafka_conf_destroy(conf);

    /* Agreeing with the forced value is fine; contradicting it is an error naming it. */
    set(cfg, "kafka.enable.auto.offset.store", "false");
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, NULL, &conf, err, sizeof err),
                     CL_OK);
    rd_kafka_conf_destroy(conf);
    set(cfg, "kafka.enable.auto.commit", "true");
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_CONSUMER, NULL, &conf, err, sizeof err),
                     CL_EINVAL);
    assert_null(conf);
    assert_non_null(strstr(err, "enable.auto.commit"));
    /* The same config still builds a producer (the setting only matters to consumers). */
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, NULL, &conf, err, sizeof err),
                     CL_OK);
    rd_kafka_conf_destroy(conf);
    cl_config_free(cfg);
}

static void test_conf_errors_name_the_property(void **state)
{
    (void)state;
    cl_config *cfg = new_config();
    set(cfg, "brokers", "");
    rd_kafka_conf_t *conf;
    char err[CL_ERRLEN];
    assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, NULL, &conf, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "brokers"));
    cl_config_free(cfg);

    cfg = new_config();
    char e2[CL_ERRLEN] = "";
    /* The config loader may already reject a bad value; if not, the mapping must. */
    if (cl_config_set(cfg, "kafka.linger.ms", "not-a-number", "test", e2, sizeof e2) == CL_OK) {
        assert_int_equal(cl_kafka_conf_new(cfg, CL_KAFKA_PRODUCER, NULL, &conf, err, sizeof err),
                         CL_EINVAL);
        assert_non_null(strstr(err, "linger.ms"));
    } else {
        assert_non_null(strstr(e2, "linger.ms"));
    }
    cl_config_free(cfg);
}

static void test_stop_flag_follows_signals(void **state)
{
    (void)state;
    cl_stop_reset();
    assert_int_equal(cl_kafka_install_signal_handlers(NULL, 0), CL_OK);
    assert_false(cl_stop_requested());
    raise(SIGTERM);
    assert_true(cl_stop_requested());
    cl_stop_reset();
    raise(SIGINT);
    assert_true(cl_stop_requested());
    cl_stop_reset();
    raise(SIGPIPE); /* ignored, not fatal */
    assert_false(cl_stop_requested());
    cl_request_stop();
    assert_true(cl_stop_requested());
    cl_stop_reset();
}

/* ---------------------------------------------------------------- producer without a broker */

typedef struct {
    int calls, status;
    void *opaque;
} one_report;

static void record_report(void *opaque, int status, const char *topic, int32_t partition,
                          int64_t offset, const char *reason, void *ud)
{
    one_report *r = ud;
    r->calls++;
    r->status = status;
    r->opaque = opaque;
    assert_string_equal(topic, "closedloop.snapshots");
    assert_non_null(reason);
}

static void test_unacknowledged_records_are_reported_on_close(void **state)
{
    (void)state;
    /* Nothing listens on port 1: the record can only stay queued. Closing must not lose
     * it silently: its callback reports CL_ESTOP and close says CL_ETIMEOUT. */
    cl_config *cfg = new_config();
    set(cfg, "brokers", "127.0.0.1:1");
    set(cfg, "kafka.log_level", "0");
    one_report rep = {0, 0, NULL};
    cl_producer_opts opts = {.on_delivery = record_report, .ud = &rep};
    cl_producer *p;
    char err[CL_ERRLEN];
    assert_int_equal(cl_producer_new(cfg, &opts, &p, err, sizeof err), CL_OK);
    static int marker;
    assert_int_equal(cl_producer_send(p, "closedloop.snapshots", "k", 1, "v", 1, NULL, 0, &marker,
                                      0, err, sizeof err),
                     CL_OK);
    cl_producer_counters c;
    cl_producer_counters_get(p, &c);
    assert_int_equal(c.sent, 1);
    assert_int_equal(c.in_flight, 1);
    assert_int_equal(cl_producer_flush(p, 200, err, sizeof err), CL_ETIMEOUT);
    assert_non_null(strstr(err, "unacknowledged"));
    assert_int_equal(rep.calls, 0);
    assert_int_equal(cl_producer_close(p, 200, err, sizeof err), CL_ETIMEOUT);
    assert_int_equal(rep.calls, 1);
    assert_int_equal(rep.status, CL_ESTOP);
    assert_ptr_equal(rep.opaque, &marker);
    cl_config_free(cfg);
}

static void test_send_rejects_nameless_header(void **state)
{
    (void)state;
    cl_config *cfg = new_config();
    set(cfg, "brokers", "127.0.0.1:1");
    set(cfg, "kafka.log_level", "0");
    cl_producer *p;
    cl_producer_opts opts = {0};
    char err[CL_ERRLEN];
    assert_int_equal(cl_producer_new(cfg, &opts, &p, err, sizeof err), CL_OK);
    cl_kafka_header h[] = {{NULL, "x", 1}};
    assert_int_equal(cl_producer_send(p, "t", NULL, 0, "v", 1, h, 1, NULL, 0, err, sizeof err),
                     CL_EINVAL);
    cl_producer_counters c;
    cl_producer_counters_get(p, &c);
    assert_int_equal(c.sent, 0);
    assert_int_equal(cl_producer_close(p, 100, err, sizeof err), CL_OK);
    cl_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_lag_from_captured_statistics),
        cmocka_unit_test(test_stats_lag_sorts_skips_unassigned_and_computes_missing_lag),
        cmocka_unit_test(test_stats_producer_has_no_consumer_partitions),
        cmocka_unit_test(test_stats_rejects_what_is_not_statistics),
        cmocka_unit_test(test_lag_seconds_estimate),
        cmocka_unit_test(test_producer_conf_defaults_and_passthrough),
        cmocka_unit_test(test_user_properties_override_defaults),
        cmocka_unit_test(test_consumer_conf_forces_manual_offsets),
        cmocka_unit_test(test_conf_errors_name_the_property),
        cmocka_unit_test(test_stop_flag_follows_signals),
        cmocka_unit_test(test_unacknowledged_records_are_reported_on_close),
        cmocka_unit_test(test_send_rejects_nameless_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
