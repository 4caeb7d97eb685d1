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

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_refit_worker_options, cl_refit_options_table,
                                       cl_store_options, cl_registry_options, NULL};
    cl_config *cfg = cl_config_new(
        "closedloop-refit",
        "Keeps the labeled examples in LMDB, refits the score's weights after enough new "
        "outcomes (or on a schedule), validates them against the champion by rolling-origin "
        "cross-validation, publishes CHALLENGER or REJECTED WeightConfigs on the weights topic, "
        "and promotes a challenger that wins its A/B trial (DeLong on paired outcomes).",
        tables);
    if (!cfg) {
        fprintf(stderr, "closedloop-refit: out of memory\n");
        return 1;
    }
    cl_config_set_default(cfg, "http.listen", "127.0.0.1:9105");
    cl_config_set_default(cfg, "group.id", "closedloop-refit");
    cl_config_set_default(cfg, "state.dir", "state/refit");
    char err[CL_ERRLEN];
    int rc = cl_config_load(cfg, argc, argv, err, sizeof err);
    if (rc == CL_ESTOP) {
        cl_config_free(cfg);
        return 0;
    }
    if (rc != CL_OK) {
        fprintf(stderr, "closedloop-refit: %s\n", err);
        cl_config_free(cfg);
        return 2;
    }
    cl_log_level level = CL_LOG_INFO;
    cl_log_format format = CL_LOG_LOGFMT;
    cl_log_parse_level(cl_config_str(cfg, "log.level"), &level);
    cl_log_parse_format(cl_config_str(cfg, "log.format"), &format);
    cl_log_init("refit", level, format);
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
