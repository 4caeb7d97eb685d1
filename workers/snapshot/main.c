/*
 * main.c — closedloop-snapshot: configuration in, worker run, exit status out.
 *
 *   closedloop-snapshot [options] RUN_FILE...        publish each run, then exit
 *   closedloop-snapshot [options] DIR                publish every run file not yet done
 *   closedloop-snapshot [options] --follow DIR...    keep publishing new run files
 *   closedloop-snapshot [options] -                  publish the run read from stdin
 *
 * Exit status: 0 every run published in full (rows rejected under
 * snapshot.bad.rows=skip aside) or an orderly stop in follow mode; 1 a run was
 * rejected or not fully acknowledged, or the worker failed; 2 bad configuration.
 */
#include <stdio.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "registry.h"
#include "snapshot.h"
#include "store.h"

static const char summary[] =
    "Publishes one OpportunitySnapshot per scored open opportunity of a scoring run (CSV "
    "with a header, or JSON Lines; files, directories of run files, or - for stdin) to "
    "<prefix>snapshots, keyed by opportunity id, with the score under every active weight "
    "version (the CHAMPION and any CHALLENGER read from <prefix>weights). Each run ends "
    "with a JSON summary line on stdout.";

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_snapshot_options, cl_store_options, cl_registry_options,
                                       NULL};
    int exit_code;
    cl_config *cfg = cl_config_for_main(
        &(cl_program){"closedloop-snapshot", summary, tables, "127.0.0.1:9101", "state/snapshot"},
        argc, argv, &exit_code);
    if (!cfg) return exit_code;
    char err[CL_ERRLEN];
    int rc;

    if (cl_kafka_install_signal_handlers(err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-snapshot: %s\n", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_snapshot_worker *w = NULL;
    rc = cl_snapshot_worker_new(cfg, &w, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "snapshot_start_failed", "error=\"%s\"", err);
        fprintf(stderr, "closedloop-snapshot: %s\n", err);
        cl_config_free(cfg);
        return rc == CL_EINVAL || rc == CL_ENOTFOUND ? 2 : 1;
    }
    rc = cl_snapshot_worker_run(w, err, sizeof err);
    cl_snapshot_counts c;
    cl_snapshot_worker_counts(w, &c);
    cl_snapshot_worker_free(w);
    if (rc != CL_OK) fprintf(stderr, "closedloop-snapshot: %s\n", err);
    cl_log(rc == CL_OK ? CL_LOG_INFO : CL_LOG_ERROR, "snapshot_stopped",
           "status=%s read=%llu published=%llu rejected=%llu failed=%llu", cl_status_name(rc),
           (unsigned long long)c.read, (unsigned long long)c.published,
           (unsigned long long)c.rejected, (unsigned long long)c.failed);
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : 1;
}
