/*
 * prom.h — Prometheus metrics: counters, gauges and histograms rendered in the text
 * exposition format 0.0.4.
 *
 * A registry (cl_prom) holds metric families. A family has a name, a help sentence, a
 * type and a fixed list of label names; each distinct tuple of label values is a series.
 * Workers update series from their poll thread while the HTTP server renders the registry
 * from libmicrohttpd's thread, so every operation is thread-safe: one mutex per registry
 * guards the whole family/series structure, which keeps a histogram's buckets, _sum and
 * _count consistent in a scrape and costs an uncontended lock per update.
 *
 * Label values often come from outside (topics, stages, owners), so the number of series
 * per family is bounded (cl_prom_set_max_series, default 1000) and a label value is at
 * most CL_PROM_LABEL_VALUE_MAX bytes. An update that would exceed a bound is dropped and
 * counted in closedloop_prom_series_dropped_total{metric}; the first drop per family is
 * logged once. Dropping is the only safe answer to unbounded cardinality: a scrape that
 * grows without limit takes down the monitoring, not just this worker.
 *
 * Values that are expensive or belong to another module (LMDB map usage, consumer lag)
 * are refreshed at scrape time by collectors (cl_prom_add_collector): cl_prom_render
 * runs every collector, then renders. A collector may set gauges and clear families; it
 * must not add or remove collectors.
 *
 * Rendering is deterministic: families sorted by name, series by their label values, so
 * tests can compare exact text. Floats are printed in the shortest form that reads back
 * to the same double; infinities as +Inf/-Inf and NaN as NaN, as the format requires.
 *
 *     cl_prom_metric *rows;
 *     cl_prom_counter(reg, "closedloop_rows_total", "Rows read from input files.",
 *                     (const char *[]){"result", NULL}, &rows, err, sizeof err);
 *     cl_prom_counter_add(rows, (const char *[]){"ok"}, 1);
 *
 * Consumer lag follows the names of kafka_exporter (danielqsj) and kafka-lag-exporter so
 * existing dashboards and alerts work: see cl_prom_set_consumer_lag.
 */
#ifndef CL_PROM_H
#define CL_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "util.h"

#define CL_PROM_NAME_MAX 200         /* metric and label names */
#define CL_PROM_LABEL_VALUE_MAX 1024 /* bytes per label value */
#define CL_PROM_LABELS_MAX 8         /* label names per family */
#define CL_PROM_BUCKETS_MAX 64       /* histogram buckets (excluding +Inf) */

typedef struct cl_prom cl_prom;
typedef struct cl_prom_metric cl_prom_metric; /* a family; owned by the registry */

typedef enum { CL_PROM_COUNTER = 0, CL_PROM_GAUGE, CL_PROM_HISTOGRAM } cl_prom_type;

cl_prom *cl_prom_new(void);
/* Frees the registry and every family; handles obtained from it become invalid. */
void cl_prom_free(cl_prom *reg);

/* Maximum series per family for families registered from now on (default 1000). */
void cl_prom_set_max_series(cl_prom *reg, size_t max_series);

/*
 * Register a family. label_names is a NULL-terminated array (NULL for no labels).
 * Registering a name again with the same type, labels (and buckets) returns the
 * existing family, so modules may register lazily; a different shape is CL_ECONFLICT.
 * Invalid names (metric: [a-zA-Z_:][a-zA-Z0-9_:]*, label: [a-zA-Z_][a-zA-Z0-9_]*,
 * not starting with "__", "le" not allowed on histograms) are CL_EINVAL.
 * Histogram buckets are upper bounds, strictly increasing and finite; +Inf is implied.
 */
int cl_prom_counter(cl_prom *reg, const char *name, const char *help,
                    const char *const *label_names, cl_prom_metric **out, char *err, size_t errlen);
int cl_prom_gauge(cl_prom *reg, const char *name, const char *help, const char *const *label_names,
                  cl_prom_metric **out, char *err, size_t errlen);
int cl_prom_histogram(cl_prom *reg, const char *name, const char *help,
                      const char *const *label_names, const double *buckets, size_t nbuckets,
                      cl_prom_metric **out, char *err, size_t errlen);

/* Buckets for durations in seconds: 0.0005 .. 30 (client_golang's defaults widened). */
extern const double cl_prom_seconds_buckets[];
extern const size_t cl_prom_seconds_buckets_len;

/*
 * Updates. label_values has exactly as many entries as the family has label names
 * (NULL for an unlabeled family); the series is created on first use. A counter only
 * goes up: a negative or non-finite increment is ignored. These never fail loudly: a
 * metric update must not take down the worker; dropped updates are counted (see top).
 */
void cl_prom_counter_add(cl_prom_metric *m, const char *const *label_values, double v);
void cl_prom_gauge_set(cl_prom_metric *m, const char *const *label_values, double v);
void cl_prom_gauge_add(cl_prom_metric *m, const char *const *label_values, double v);
void cl_prom_observe(cl_prom_metric *m, const char *const *label_values, double v);

/* Remove one series (CL_ENOTFOUND if absent) or every series of a family, e.g. the lag
 * of partitions this instance no longer owns. */
int cl_prom_remove(cl_prom_metric *m, const char *const *label_values);
void cl_prom_clear(cl_prom_metric *m);

/* Read a counter or gauge value (tests, health decisions). CL_ENOTFOUND if no series. */
int cl_prom_value(cl_prom_metric *m, const char *const *label_values, double *out);

/* Collectors: run at the start of every cl_prom_render. Returns an id > 0 for
 * cl_prom_remove_collector, or a negative cl_status. Removal waits for a running
 * collector to finish, so after it returns `ud` may be freed. */
typedef void (*cl_prom_collector)(cl_prom *reg, void *ud);
int cl_prom_add_collector(cl_prom *reg, cl_prom_collector fn, void *ud);
void cl_prom_remove_collector(cl_prom *reg, int id);

/* Append the exposition text (format 0.0.4) to out. CL_ENOMEM past out's limit. */
int cl_prom_render(cl_prom *reg, cl_buf *out);

/* Content-Type of the rendered text. */
#define CL_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Consumer lag of one partition as one worker sees it. Unknown numbers are negative
 * (lag_seconds: negative or NaN) and their series are not exported, because a made-up
 * zero would silence a lag alert.
 */
typedef struct {
    const char *group; /* consumer group id */
    const char *topic;
    int32_t partition;
    int64_t committed_offset; /* next offset the group will read; -1 unknown */
    int64_t end_offset;       /* high watermark (log end offset); -1 unknown */
    int64_t lag;              /* end_offset - committed_offset, >= 0; -1 unknown */
    double lag_seconds;       /* age of the oldest unconsumed record; < 0 or NaN unknown */
} cl_prom_partition_lag;

/*
 * Replace the lag series with `rows` (atomically with respect to scrapes, so a
 * partition revoked since the last call disappears). Families, with labels
 * {consumergroup, topic, partition} as kafka_exporter writes them:
 *   kafka_consumergroup_lag              gauge, messages
 *   kafka_consumergroup_lag_sum          gauge, messages, per group and topic
 *   kafka_consumergroup_current_offset   gauge, the committed offset
 *   kafka_topic_partition_current_offset gauge, the log end offset {topic, partition}
 *   kafka_consumergroup_lag_seconds      gauge, seconds; kafka-lag-exporter calls it
 *                                        kafka_consumergroup_group_lag_seconds
 */
int cl_prom_set_consumer_lag(cl_prom *reg, const cl_prom_partition_lag *rows, size_t n, char *err,
                             size_t errlen);

#endif
