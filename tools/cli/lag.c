/*
 * lag.c — `closedloop lag [--group G]`: consumer lag as an outside observer (Burrow,
 * kafka_exporter) sees it, from the offsets each group committed to Kafka and each
 * partition's high watermark. The workers' /metrics show the same figures from the
 * inside; this command works when a worker is down, which is when it is needed.
 *
 * Exit status 0 whenever the cluster answered, lagging or not: it is a report, not an
 * alert. A group without committed offsets is reported as such.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"

static const cl_option lag_options[] = {
    {"group", CL_OPT_STRING, NULL,
     "Consumer group to report (default: group.id if set, e.g. from a worker's config file; "
     "otherwise every group)."},
    {"admin.timeout.ms", CL_OPT_INT, "30000", "Bound on each admin request.", 0, 1000, 600000},
    {"output", CL_OPT_STRING, "text", "Output format: text or json."},
    {NULL},
};

static void print_number(int64_t v)
{
    if (v < 0)
        printf(" %12s", "-");
    else
        printf(" %12" PRId64, v);
}

int cl_cli_lag(int argc, char **argv)
{
    const cl_option *const tables[] = {lag_options, NULL};
    cl_config *cfg;
    int rc = cl_cli_load_config(
        "closedloop lag",
        "Print, per consumer group, topic and partition, the committed offset, the log end "
        "offset and the lag, for the group given by --group (or group.id) or for every group.",
        tables, argc, argv, &cfg);
    if (rc != CL_CLI_OK || !cfg) return rc;

    const char *output = cl_config_str(cfg, "output");
    int json = output && strcmp(output, "json") == 0;
    int timeout = (int)cl_config_int(cfg, "admin.timeout.ms");
    char **args;
    if (cl_config_args(cfg, &args) > 0) {
        fprintf(stderr, "closedloop lag: unexpected argument '%s' (use --group G)\n", args[0]);
        cl_config_free(cfg);
        return CL_CLI_USAGE;
    }
    if (output && !json && strcmp(output, "text") != 0) {
        fprintf(stderr, "closedloop lag: --output must be text or json, not '%s'\n", output);
        cl_config_free(cfg);
        return CL_CLI_USAGE;
    }

    char err[CL_ERRLEN];
    char **groups = NULL;
    size_t ngroups = 0;
    const char *one = cl_config_str(cfg, "group");
    if (!one || !*one) one = cl_config_str(cfg, "group.id");
    char *single[1];
    if (one && *one) {
        single[0] = (char *)one;
        groups = single;
        ngroups = 1;
    } else if (cl_kafka_list_groups(cfg, &groups, &ngroups, timeout, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop lag: %s\n", err);
        cl_config_free(cfg);
        return CL_CLI_FAIL;
    }

    rc = CL_CLI_OK;
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-32s %-32s %9s %12s %12s %12s\n", "GROUP", "TOPIC", "PARTITION", "COMMITTED",
               "END", "LAG");
    for (size_t g = 0; g < ngroups; g++) {
        cl_lag_report r;
        int st = cl_kafka_group_lag(cfg, groups[g], &r, timeout, err, sizeof err);
        if (st == CL_ENOTFOUND) {
            if (!json) printf("%-32s (no committed offsets)\n", groups[g]);
            continue;
        }
        if (st != CL_OK) {
            fprintf(stderr, "closedloop lag: %s\n", err);
            rc = CL_CLI_FAIL;
            break;
        }
        int64_t total = 0;
        int total_known = 1;
        for (size_t i = 0; i < r.n; i++) {
            const cl_partition_lag *p = &r.parts[i];
            if (p->lag >= 0)
                total += p->lag;
            else
                total_known = 0;
            if (json) {
                json_array_append_new(
                    arr, json_pack("{s:s, s:s, s:i, s:I, s:I, s:I}", "group", p->group, "topic",
                                   p->topic, "partition", (int)p->partition, "committed_offset",
                                   (json_int_t)p->committed_offset, "end_offset",
                                   (json_int_t)p->end_offset, "lag", (json_int_t)p->lag));
                continue;
            }
            printf("%-32s %-32s %9" PRId32, p->group, p->topic, p->partition);
            print_number(p->committed_offset);
            print_number(p->end_offset);
            print_number(p->lag);
            printf("\n");
        }
        if (!json)
            printf("%-32s %-32s %9s %12s %12s %12" PRId64 "%s\n", groups[g], "(total)", "", "", "",
                   total, total_known ? "" : "+");
        cl_lag_report_free(&r);
    }
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) {
            puts(s);
            free(s);
        }
        json_decref(arr);
    }
    if (groups != single) cl_kafka_strings_free(groups, ngroups);
    cl_config_free(cfg);
    return rc;
}
