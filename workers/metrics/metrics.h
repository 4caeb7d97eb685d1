/*
 * metrics.h — the closedloop-metrics worker: labeled examples in, ModelMetrics and the
 * Closed Won / Closed Lost reports out (SPEC §4.4; docs/metrics.md).
 *
 * One consumer group reads `<prefix>labeled`. Each record is applied to the keyed state
 * (aggregate.h) inside an LMDB batch that also holds the partition's next offset, so the
 * state and the position never disagree after a crash; on assignment the consumer seeks
 * to the offsets in LMDB (Kafka's committed offsets, written after each LMDB commit,
 * serve lag monitors). Applying a record twice changes nothing, so even a replay from
 * offset 0 leaves every figure as it was. Undecodable records go to `<prefix>dlq`.
 *
 * A second, group-less consumer follows the compacted `<prefix>weights` topic to learn
 * each version's status (CHAMPION, CHALLENGER...), band thresholds and weights.
 *
 * Publishing: when the state changed, every metrics.publish.interval.ms, and on demand
 * (GET /publish on the worker's HTTP address), the worker evaluates the state
 * (evaluate.h) and publishes one ModelMetrics per model version per window to
 * `<prefix>metrics` (key: model name), then renders both reports, writes them to
 * metrics.report.dir (atomically: temp file + rename) and serves them at
 * /reports/closed-won.html and /reports/closed-lost.html.
 *
 * Offline mode (cl_metrics_offline): the same state, evaluation and reports from a
 * file of LabeledExamples in Avro JSON, printing the ModelMetrics as JSON lines — the
 * interoperability tests compare those figures with scikit-learn.
 */
#ifndef CL_METRICS_WORKER_H
#define CL_METRICS_WORKER_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "error.h"

/* metrics.* options (main adds cl_store_options and cl_registry_options). */
extern const cl_option cl_metrics_options[];

typedef struct cl_metrics_worker cl_metrics_worker;

int cl_metrics_worker_new(cl_config *cfg, cl_metrics_worker **out, char *err, size_t errlen);
/* Runs until cl_stop_requested() (or, with metrics.exit.idle.ms > 0, until the input has
 * been read to its end and stayed idle that long; it publishes once more first). */
int cl_metrics_worker_run(cl_metrics_worker *w, char *err, size_t errlen);
void cl_metrics_worker_free(cl_metrics_worker *w);

/* Applies the LabeledExamples of `path` (one Avro-JSON object per line; "-" = stdin) to
 * the state in state.dir, evaluates, writes the reports to metrics.report.dir (when
 * set) and prints each ModelMetrics as one JSON line to out. path NULL: no input, the
 * state is evaluated and rendered as it is (`closedloop report`). */
int cl_metrics_offline(cl_config *cfg, const char *path, FILE *out, char *err, size_t errlen);

#endif
