/*
 * main.c — closedloop-refit: configuration in, worker run, exit status out.
 *
 *   closedloop-refit [--config FILE] [--key=value ...] [-X kafka.prop=value]
 */
#include <stdio.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "refit.h"
#include "refit_worker.h"
#include "registry.h"
#include "store.h"

static const char summary[] =
    "Keeps the labeled examples in LMDB, refits the score's weights after enough new "
    "outcomes (or on a schedule), validates them against the champion by rolling-origin "
    "cross-validation, publishes CHALLENGER or REJECTED WeightConfigs on the weights topic, "
    "and promotes a challenger that wins its A/B trial (DeLong on paired outcomes).";

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_refit_worker_options, cl_refit_options_table,
                                       cl_store_options, cl_registry_options, NULL};
    int exit_code;
    cl_config *cfg = cl_config_for_main(
        &(cl_program){"closedloop-refit", summary, tables, "127.0.0.1:9105", "state/refit"}, argc,
        argv, &exit_code);
    if (!cfg) return exit_code;
    char err[CL_ERRLEN];
    int rc;
    if (cl_kafka_install_signal_handlers(err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-refit: %s\n", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_refit_worker *w = NULL;
    rc = cl_refit_worker_new(cfg, &w, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "refit_start_failed", "error=\"%s\"", err);
        cl_config_free(cfg);
        return 1;
    }
    rc = cl_refit_worker_run(w, err, sizeof err);
    cl_refit_worker_free(w);
    cl_log(CL_LOG_INFO, "refit_stopped", "status=%s", cl_status_name(rc));
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : 1;
}
