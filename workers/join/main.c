/*
 * main.c — closedloop-join: configuration in, worker run, exit status out.
 *
 *   closedloop-join [--config FILE] [--key=value ...] [-X kafka.prop=value]
 *   closedloop-join --dump-state     print the LMDB state (worker stopped) and exit
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "join.h"
#include "kafka.h"
#include "log.h"
#include "registry.h"
#include "store.h"

static const cl_option main_options[] = {
    {"dump-state", CL_OPT_BOOL, "false",
     "Print a canonical dump of the LMDB state in state.dir and exit (the worker must not be "
     "running on it)."},
    {NULL},
};

static const char summary[] =
    "Joins score snapshots with Closed Won / Closed Lost outcomes and publishes one "
    "LabeledExample per snapshot taken on or before the close date. State lives in LMDB "
    "under state.dir with the input offsets that produced it; join-changelog mirrors it "
    "for scale-out.";

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_join_options, cl_store_options, cl_registry_options,
                                       main_options, NULL};
    int exit_code;
    cl_config *cfg = cl_config_for_main(
        &(cl_program){"closedloop-join", summary, tables, "127.0.0.1:9103", "state/join"}, argc,
        argv, &exit_code);
    if (!cfg) return exit_code;
    char err[CL_ERRLEN];
    int rc;

    if (cl_config_bool(cfg, "dump-state")) {
        rc = cl_join_dump_state(cfg, stdout, err, sizeof err);
        if (rc != CL_OK) fprintf(stderr, "closedloop-join: %s\n", err);
        cl_config_free(cfg);
        return rc == CL_OK ? 0 : 1;
    }
    if (cl_kafka_install_signal_handlers(err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-join: %s\n", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_join_worker *w = NULL;
    rc = cl_join_worker_new(cfg, &w, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "join_start_failed", "error=\"%s\"", err);
        cl_config_free(cfg);
        return 1;
    }
    rc = cl_join_worker_run(w, err, sizeof err);
    cl_join_worker_free(w);
    cl_log(CL_LOG_INFO, "join_stopped", "status=%s", cl_status_name(rc));
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : 1;
}
