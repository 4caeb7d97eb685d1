/*
 * report.c — `closedloop report`: render the Closed Won / Closed Lost analysis reports
 * from the metrics worker's state, without a broker.
 *
 * It opens the metrics worker's LMDB state (state.dir, read and evaluated as it is; LMDB
 * allows this while the worker runs), evaluates every model version and window, writes
 * closed-won.html and closed-lost.html to metrics.report.dir and prints each
 * ModelMetrics as one JSON line. The figures are those the worker would publish next.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "metrics/metrics.h"
#include "registry.h"
#include "store.h"

int cl_cli_report(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_metrics_options, cl_store_options, cl_registry_options,
                                       NULL};
    cl_config *cfg;
    int rc = cl_cli_load_config(
        "closedloop report",
        "Render the Closed Won and Closed Lost analysis reports from the metrics worker's "
        "state (state.dir, default state/metrics) into metrics.report.dir, and print each "
        "ModelMetrics as a JSON line.",
        tables, argc, argv, &cfg);
    if (rc != CL_CLI_OK || !cfg) return rc;
    if (strcmp(cl_config_source(cfg, "state.dir"), "default") == 0)
        cl_config_set(cfg, "state.dir", "state/metrics", "default", NULL, 0);
    char err[CL_ERRLEN];
    rc = cl_metrics_offline(cfg, NULL, stdout, err, sizeof err);
    if (rc != CL_OK) fprintf(stderr, "closedloop report: %s\n", err);
    else
        fprintf(stderr, "closedloop report: wrote %s/closed-won.html and closed-lost.html\n",
                cl_config_str(cfg, "metrics.report.dir"));
    cl_config_free(cfg);
    return rc == CL_OK ? CL_CLI_OK : CL_CLI_FAIL;
}
