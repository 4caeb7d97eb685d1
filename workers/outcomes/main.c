/*
 * closedloop-outcomes — pulls Closed Won / Closed Lost outcomes from Salesforce into
 * Kafka. Everything but configuration loading and the exit status lives in outcomes.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "outcomes.h"
#include "registry.h"
#include "store.h"

static const char summary[] =
    "Pulls closed Opportunities from Salesforce (REST queryAll paging, Bulk API 2.0 "
    "backfills, or a CSV report export) and publishes OpportunityOutcome records keyed by "
    "opportunity id to <topic.prefix>outcomes: WON/LOST for closed ones, a new version when "
    "one changes, a tombstone when one is deleted or re-opened. The watermark advances only "
    "after Kafka acknowledged every record before it and is kept in LMDB under state.dir.";

int main(int argc, char **argv)
{
    const cl_option *const tables[] = {cl_outcomes_options, cl_store_options, cl_registry_options,
                                       NULL};
    int exit_code;
    cl_config *cfg = cl_config_for_main(
        &(cl_program){"closedloop-outcomes", summary, tables, "127.0.0.1:9102", "state/outcomes"},
        argc, argv, &exit_code);
    if (!cfg) return exit_code;
    char err[CL_ERRLEN];
    if (cl_kafka_install_signal_handlers(err, sizeof err) != CL_OK) {
        cl_log(CL_LOG_ERROR, "startup_failed", "error=\"%s\"", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_outcomes *w;
    if (cl_outcomes_open(&w, cfg, err, sizeof err) != CL_OK) {
        cl_log(CL_LOG_ERROR, "startup_failed", "error=\"%s\"", err);
        cl_config_free(cfg);
        return 1;
    }
    cl_log(CL_LOG_INFO, "started", "source=%s topic=%s", cl_config_str(cfg, "outcomes.source"),
           cl_config_topic(cfg, "outcomes"));
    int status = cl_outcomes_run(w);
    cl_outcomes_close(w);
    cl_log(CL_LOG_INFO, "stopped", "exit_status=%d", status);
    cl_config_free(cfg);
    return status;
}
