/*
 * main.c — closedloop-metrics: configuration in, worker run, exit status out.
 *
 *   closedloop-metrics [--config FILE] [--key=value ...] [-X kafka.prop=value]
 *   closedloop-metrics --offline=FILE   evaluate LabeledExamples from a JSON-lines file
 *                                       ("-": stdin), print ModelMetrics as JSON lines,
 *                                       write the reports, exit (no broker needed)
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "store.h"

static const cl_option main_options[] = {
    {"offline", CL_OPT_STRING, NULL,
     "Evaluate the LabeledExamples in this JSON-lines file (Avro JSON, one per line; - for "
     "stdin) into state.dir, print each ModelMetrics as a JSON line, write the reports and "
     "exit."},
    {NULL},
};

static const char summary[] =
    "Measures how good the opportunity scores were: consumes labeled examples, keeps them "
    "idempotently in LMDB under state.dir, publishes ModelMetrics per model version and "
    "window, and writes the Closed Won and Closed Lost analysis reports (served at "
    "/reports/ and written to metrics.report.dir).";

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_metrics_options, cl_store_options, cl_registry_options,
                                       main_options, NULL};
    int exit_code;
    cl_config *cfg = cl_config_for_main(
        &(cl_program){"closedloop-metrics", summary, tables, "127.0.0.1:9104", "state/metrics"},
        argc, argv, &exit_code);
    if (!cfg) return exit_code;
    char err[CL_ERRLEN];
    int rc;

    const char *offline = cl_config_str(cfg, "offline");
    if (offline && offline[0]) {
        rc = cl_metrics_offline(cfg, offline, stdout, err, sizeof err);
        if (rc != CL_OK) fprintf(stderr, "closedloop-metrics: %s\n", err);
        cl_config_free(cfg);
        return rc == CL_OK ? 0 : 1;
    }
    if (cl_kafka_install_signal_handlers(err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-metrics: %s\n", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_metrics_worker *w = NULL;
    rc = cl_metrics_worker_new(cfg, &w, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "metrics_start_failed", "error=\"%s\"", err);
        cl_config_free(cfg);
        return 1;
    }
    rc = cl_metrics_worker_run(w, err, sizeof err);
    cl_metrics_worker_free(w);
    cl_log(CL_LOG_INFO, "metrics_stopped", "status=%s", cl_status_name(rc));
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : 1;
}
