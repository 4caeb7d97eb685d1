/* Unit tests for common/prom: exposition text (format 0.0.4) compared byte for byte with
 * text written by hand from the format description, label escaping, registration rules,
 * cardinality bounds, collectors, consumer-lag families, concurrent updates. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "prom.h"

static char *render(cl_prom *reg, cl_buf *buf)
{
    cl_buf_init(buf, 0);
    assert_int_equal(cl_prom_render(reg, buf), CL_OK);
    return buf->data ? buf->data : "";
}

static void test_exposition_exact(void **state)
{
    cl_prom *reg = cl_prom_new();
    assert_non_null(reg);
    char err[CL_ERRLEN];
    cl_prom_metric *req, *temp, *lat;
    assert_int_equal(cl_prom_counter(reg, "demo_requests_total", "Requests handled.",
                                     (const char *[]){"code", "path", NULL}, &req, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_prom_gauge(reg, "demo_temperature", "Line one\nback\\slash", NULL, &temp,
                                   err, sizeof err),
                     CL_OK);
    const double buckets[] = {0.25, 0.5, 1};
    assert_int_equal(cl_prom_histogram(reg, "demo_latency_seconds", "Latency.",
                                       (const char *[]){"op", NULL}, buckets, 3, &lat, err,
                                       sizeof err),
                     CL_OK);
    /* Inserted out of order: the output is sorted. */
    cl_prom_counter_add(req, (const char *[]){"500", "/b\"x\\y\nz"}, 1);
    cl_prom_counter_add(req, (const char *[]){"200", "/a"}, 1);
    cl_prom_counter_add(req, (const char *[]){"200", "/a"}, 2);
    cl_prom_counter_add(req, (const char *[]){"200", "/a"}, -5); /* counters never go down */
    cl_prom_gauge_set(temp, NULL, 1);
    cl_prom_gauge_add(temp, NULL, -3.5);
    const double obs[] = {0.125, 0.25, 0.75, 3};
    for (size_t i = 0; i < 4; i++)
        cl_prom_observe(lat, (const char *[]){"get"}, obs[i]);

    const char *expected = "# HELP demo_latency_seconds Latency.\n"
                           "# TYPE demo_latency_seconds histogram\n"
                           "demo_latency_seconds_bucket{op=\"get\",le=\"0.25\"} 2\n"
                           "demo_latency_seconds_bucket{op=\"get\",le=\"0.5\"} 2\n"
                           "demo_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
                           "demo_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                           "demo_latency_seconds_sum{op=\"get\"} 4.125\n"
                           "demo_latency_seconds_count{op=\"get\"} 4\n"
                           "# HELP demo_requests_total Requests handled.\n"
                           "# TYPE demo_requests_total counter\n"
                           "demo_requests_total{code=\"200\",path=\"/a\"} 3\n"
                           "demo_requests_total{code=\"500\",path=\"/b\\\"x\\\\y\\nz\"} 1\n"
                           "# HELP demo_temperature Line one\\nback\\\\slash\n"
                           "# TYPE demo_temperature gauge\n"
                           "demo_temperature -2.5\n";
    cl_buf buf;
    assert_string_equal(render(reg, &buf), expected);
    cl_buf_free(&buf);
    cl_prom_free(reg);
}

static void test_special_values(void **state)
{
    cl_prom *reg = cl_prom_new();
    cl_prom_metric *g;
    assert_int_equal(cl_prom_gauge(reg, "v", "Values.", (const char *[]){"k", NULL}, &g, NULL, 0),
                     CL_OK);
    cl_prom_gauge_set(g, (const char *[]){"a"}, 0.1);
    cl_prom_gauge_set(g, (const char *[]){"b"}, INFINITY);
    cl_prom_gauge_set(g, (const char *[]){"c"}, -INFINITY);
    cl_prom_gauge_set(g, (const char *[]){"d"}, NAN);
    cl_prom_gauge_set(g, (const char *[]){"e"}, 1e21);
    cl_prom_gauge_set(g, (const char *[]){"f"}, 123456789012);
    cl_prom_gauge_set(g, (const char *[]){"g"}, 1.0 / 3);
    cl_buf buf;
    assert_string_equal(render(reg, &buf), "# HELP v Values.\n"
                                           "# TYPE v gauge\n"
                                           "v{k=\"a\"} 0.1\n"
                                           "v{k=\"b\"} +Inf\n"
                                           "v{k=\"c\"} -Inf\n"
                                           "v{k=\"d\"} NaN\n"
                                           "v{k=\"e\"} 1e+21\n"
                                           "v{k=\"f\"} 123456789012\n"
                                           "v{k=\"g\"} 0.3333333333333333\n");
    cl_buf_free(&buf);
    cl_prom_free(reg);
}

static void test_registration_rules(void **state)
{
    cl_prom *reg = cl_prom_new();
    char err[CL_ERRLEN];
    cl_prom_metric *a, *b;
    assert_int_equal(
        cl_prom_counter(reg, "x_total", "X.", (const char *[]){"t", NULL}, &a, err, sizeof err),
        CL_OK);
    /* Same shape again: the same family. */
    assert_int_equal(
        cl_prom_counter(reg, "x_total", "X.", (const char *[]){"t", NULL}, &b, err, sizeof err),
        CL_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(
        cl_prom_gauge(reg, "x_total", "X.", (const char *[]){"t", NULL}, &b, err, sizeof err),
        CL_ECONFLICT);
    assert_non_null(strstr(err, "x_total"));
    assert_int_equal(
        cl_prom_counter(reg, "x_total", "X.", (const char *[]){"u", NULL}, &b, err, sizeof err),
        CL_ECONFLICT);
    assert_int_equal(cl_prom_counter(reg, "9bad", "", NULL, &b, err, sizeof err), CL_EINVAL);
    assert_int_equal(cl_prom_counter(reg, "bad-name", "", NULL, &b, err, sizeof err), CL_EINVAL);
    assert_int_equal(cl_prom_counter(reg, "", "", NULL, &b, err, sizeof err), CL_EINVAL);
    assert_int_equal(cl_prom_counter(reg, "ok:name_1", "", NULL, &b, err, sizeof err), CL_OK);
    assert_int_equal(
        cl_prom_gauge(reg, "g1", "", (const char *[]){"__reserved", NULL}, &b, err, sizeof err),
        CL_EINVAL);
    assert_int_equal(
        cl_prom_gauge(reg, "g2", "", (const char *[]){"a", "a", NULL}, &b, err, sizeof err),
        CL_EINVAL);
    const double good[] = {1, 2}, bad[] = {2, 1}, inf[] = {1, INFINITY};
    assert_int_equal(cl_prom_histogram(reg, "h1", "", (const char *[]){"le", NULL}, good, 2, &b,
                                       err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_prom_histogram(reg, "h2", "", NULL, bad, 2, &b, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_prom_histogram(reg, "h3", "", NULL, inf, 2, &b, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_prom_histogram(reg, "h4", "", NULL, good, 0, &b, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_prom_histogram(reg, "h5", "", NULL, good, 2, &b, err, sizeof err), CL_OK);
    const double other[] = {1, 3};
    assert_int_equal(cl_prom_histogram(reg, "h5", "", NULL, other, 2, &b, err, sizeof err),
                     CL_ECONFLICT);
    cl_prom_free(reg);
}

static void test_series_bound_and_drop_counter(void **state)
{
    FILE *devnull = fopen("/dev/null", "w");
    cl_log_set_stream(devnull); /* the one-time drop warning */
    cl_prom *reg = cl_prom_new();
    cl_prom_set_max_series(reg, 2);
    cl_prom_metric *m, *dropped;
    assert_int_equal(
        cl_prom_counter(reg, "owners_total", "", (const char *[]){"owner", NULL}, &m, NULL, 0),
        CL_OK);
    cl_prom_counter_add(m, (const char *[]){"a"}, 1);
    cl_prom_counter_add(m, (const char *[]){"b"}, 1);
    cl_prom_counter_add(m, (const char *[]){"c"}, 1); /* over the bound */
    cl_prom_counter_add(m, (const char *[]){"d"}, 1);
    cl_prom_counter_add(m, (const char *[]){"a"}, 1); /* existing series still update */
    double v;
    assert_int_equal(cl_prom_value(m, (const char *[]){"a"}, &v), CL_OK);
    assert_true(v == 2);
    assert_int_equal(cl_prom_value(m, (const char *[]){"c"}, &v), CL_ENOTFOUND);
    /* The internal drop counter is a counter named like any other. */
    assert_int_equal(cl_prom_counter(reg, "closedloop_prom_series_dropped_total",
                                     "Metric updates dropped because a family reached its "
                                     "series limit or a label value was too long.",
                                     (const char *[]){"metric", NULL}, &dropped, NULL, 0),
                     CL_OK);
    assert_int_equal(cl_prom_value(dropped, (const char *[]){"owners_total"}, &v), CL_OK);
    assert_true(v == 2);

    /* Over-long label values are dropped, not truncated into a different series. */
    char long_value[CL_PROM_LABEL_VALUE_MAX + 2];
    memset(long_value, 'x', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    assert_int_equal(cl_prom_remove(m, (const char *[]){"b"}), CL_OK);
    cl_prom_counter_add(m, (const char *[]){long_value}, 1);
    assert_int_equal(cl_prom_value(dropped, (const char *[]){"owners_total"}, &v), CL_OK);
    assert_true(v == 3);
    assert_int_equal(cl_prom_remove(m, (const char *[]){"b"}), CL_ENOTFOUND);
    cl_prom_clear(m);
    assert_int_equal(cl_prom_value(m, (const char *[]){"a"}, &v), CL_ENOTFOUND);
    cl_prom_free(reg);
    cl_log_set_stream(NULL);
    fclose(devnull);
}

static int collector_calls;

static void collector(cl_prom *reg, void *ud)
{
    collector_calls++;
    cl_prom_gauge_set(ud, NULL, collector_calls * 10);
}

static void test_collectors(void **state)
{
    cl_prom *reg = cl_prom_new();
    cl_prom_metric *g;
    assert_int_equal(cl_prom_gauge(reg, "scraped", "Set at scrape time.", NULL, &g, NULL, 0),
                     CL_OK);
    collector_calls = 0;
    int id = cl_prom_add_collector(reg, collector, g);
    assert_true(id > 0);
    cl_buf buf;
    assert_string_equal(render(reg, &buf),
                        "# HELP scraped Set at scrape time.\n# TYPE scraped gauge\nscraped 10\n");
    cl_buf_free(&buf);
    cl_prom_remove_collector(reg, id);
    assert_string_equal(render(reg, &buf),
                        "# HELP scraped Set at scrape time.\n# TYPE scraped gauge\nscraped 10\n");
    cl_buf_free(&buf);
    assert_int_equal(collector_calls, 1);
    cl_prom_free(reg);
}

static void test_consumer_lag(void **state)
{
    cl_prom *reg = cl_prom_new();
    char err[CL_ERRLEN];
    cl_prom_partition_lag rows[] = {
        {"cl-join", "closedloop.snapshots", 0, 90, 100, 10, 2.5},
        {"cl-join", "closedloop.snapshots", 1, 50, 55, 5, -1}, /* seconds unknown */
        {"cl-join", "closedloop.outcomes", 0, -1, 7, -1, NAN}, /* nothing committed yet */
    };
    assert_int_equal(cl_prom_set_consumer_lag(reg, rows, 3, err, sizeof err), CL_OK);
    cl_buf buf;
    const char *expected =
        "# HELP kafka_consumergroup_current_offset Committed offset of the consumer group "
        "(next offset to read).\n"
        "# TYPE kafka_consumergroup_current_offset gauge\n"
        "kafka_consumergroup_current_offset{consumergroup=\"cl-join\",topic=\"closedloop."
        "snapshots\",partition=\"0\"} 90\n"
        "kafka_consumergroup_current_offset{consumergroup=\"cl-join\",topic=\"closedloop."
        "snapshots\",partition=\"1\"} 50\n"
        "# HELP kafka_consumergroup_lag Consumer group lag in messages: log end offset minus "
        "committed offset.\n"
        "# TYPE kafka_consumergroup_lag gauge\n"
        "kafka_consumergroup_lag{consumergroup=\"cl-join\",topic=\"closedloop.snapshots\","
        "partition=\"0\"} 10\n"
        "kafka_consumergroup_lag{consumergroup=\"cl-join\",topic=\"closedloop.snapshots\","
        "partition=\"1\"} 5\n"
        "# HELP kafka_consumergroup_lag_seconds Estimated consumer group lag in seconds: age of "
        "the oldest unconsumed record (kafka-lag-exporter's "
        "kafka_consumergroup_group_lag_seconds).\n"
        "# TYPE kafka_consumergroup_lag_seconds gauge\n"
        "kafka_consumergroup_lag_seconds{consumergroup=\"cl-join\",topic=\"closedloop."
        "snapshots\",partition=\"0\"} 2.5\n"
        "# HELP kafka_consumergroup_lag_sum Consumer group lag in messages, summed over the "
        "topic's partitions this instance owns.\n"
        "# TYPE kafka_consumergroup_lag_sum gauge\n"
        "kafka_consumergroup_lag_sum{consumergroup=\"cl-join\",topic=\"closedloop.snapshots\"} "
        "15\n"
        "# HELP kafka_topic_partition_current_offset Log end offset (high watermark) of the "
        "partition.\n"
        "# TYPE kafka_topic_partition_current_offset gauge\n"
        "kafka_topic_partition_current_offset{topic=\"closedloop.outcomes\",partition=\"0\"} 7\n"
        "kafka_topic_partition_current_offset{topic=\"closedloop.snapshots\",partition=\"0\"} "
        "100\n"
        "kafka_topic_partition_current_offset{topic=\"closedloop.snapshots\",partition=\"1\"} "
        "55\n";
    assert_string_equal(render(reg, &buf), expected);
    cl_buf_free(&buf);

    /* Partition 0 was revoked: its series go away, partition 1 is updated. */
    cl_prom_partition_lag now[] = {{"cl-join", "closedloop.snapshots", 1, 55, 60, 5, 1}};
    assert_int_equal(cl_prom_set_consumer_lag(reg, now, 1, err, sizeof err), CL_OK);
    render(reg, &buf);
    assert_null(strstr(buf.data, "partition=\"0\""));
    assert_non_null(strstr(buf.data, "kafka_consumergroup_lag{consumergroup=\"cl-join\",topic="
                                     "\"closedloop.snapshots\",partition=\"1\"} 5\n"));
    assert_non_null(strstr(buf.data,
                           "kafka_consumergroup_current_offset{consumergroup=\"cl-"
                           "join\",topic=\"closedloop.snapshots\",partition=\"1\"} 55\n"));
    cl_buf_free(&buf);

    /* A family of that name registered with another shape is a conflict, not a mix-up. */
    cl_prom *reg2 = cl_prom_new();
    cl_prom_metric *m;
    assert_int_equal(cl_prom_counter(reg2, "kafka_consumergroup_lag", "", NULL, &m, NULL, 0),
                     CL_OK);
    assert_int_equal(cl_prom_set_consumer_lag(reg2, now, 1, err, sizeof err), CL_ECONFLICT);
    cl_prom_free(reg2);
    cl_prom_free(reg);
}

typedef struct {
    cl_prom *reg;
    cl_prom_metric *counter, *hist;
} race;

static void *updater(void *arg)
{
    race *r = arg;
    for (int i = 0; i < 20000; i++) {
        cl_prom_counter_add(r->counter, (const char *[]){i % 2 ? "odd" : "even"}, 1);
        cl_prom_observe(r->hist, NULL, (double)(i % 4));
    }
    return NULL;
}

static void test_concurrent_updates_and_render(void **state)
{
    race r = {cl_prom_new()};
    assert_int_equal(cl_prom_counter(r.reg, "ops_total", "", (const char *[]){"kind", NULL},
                                     &r.counter, NULL, 0),
                     CL_OK);
    const double b[] = {1, 2};
    assert_int_equal(cl_prom_histogram(r.reg, "sizes", "", NULL, b, 2, &r.hist, NULL, 0), CL_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, updater, &r), 0);
    for (int i = 0; i < 20; i++) {
        cl_buf buf;
        render(r.reg, &buf);
        cl_buf_free(&buf);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    double v;
    assert_int_equal(cl_prom_value(r.counter, (const char *[]){"even"}, &v), CL_OK);
    assert_true(v == 20000);
    cl_buf buf;
    render(r.reg, &buf);
    /* 40000 observations of 0,1,2,3: 20000 <= 1, 30000 <= 2, sum 60000. */
    assert_non_null(strstr(buf.data, "sizes_bucket{le=\"1\"} 20000\n"
                                     "sizes_bucket{le=\"2\"} 30000\n"
                                     "sizes_bucket{le=\"+Inf\"} 40000\n"
                                     "sizes_sum 60000\n"
                                     "sizes_count 40000\n"));
    cl_buf_free(&buf);
    cl_prom_free(r.reg);
}

static void test_render_limit(void **state)
{
    cl_prom *reg = cl_prom_new();
    cl_prom_metric *g;
    assert_int_equal(cl_prom_gauge(reg, "big", "", (const char *[]){"k", NULL}, &g, NULL, 0),
                     CL_OK);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        cl_prom_gauge_set(g, (const char *[]){k}, i);
    }
    cl_buf small;
    cl_buf_init(&small, 256);
    assert_int_equal(cl_prom_render(reg, &small), CL_ENOMEM);
    cl_buf_free(&small);
    cl_prom_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_exact),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_series_bound_and_drop_counter),
        cmocka_unit_test(test_collectors),
        cmocka_unit_test(test_consumer_lag),
        cmocka_unit_test(test_concurrent_updates_and_render),
        cmocka_unit_test(test_render_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
