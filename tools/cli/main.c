/*
 * main.c — `closedloop`, the operations CLI: a dispatch table of commands, each in its
 * own file (topics.c, lag.c, ...). See cli.h.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "log.h"

static const cl_cli_command commands[] = {
    {"topics", "topics create|describe [TOPIC...] [--partitions N] [--replication-factor N]",
     "Create the closedloop topics (idempotent) or show their partitions and configuration.",
     cl_cli_topics},
    {"lag", "lag [--group G] [--output text|json]",
     "Print committed offset, end offset and lag per consumer group, topic and partition.",
     cl_cli_lag},
    {"weights", "weights show [--model M] [--output text|json]",
     "Show champion, challenger, latest refit and retired weights of a model.", cl_cli_weights},
    {"promote", "promote [--model M] [--reason TEXT]",
     "Promote the live challenger to champion now (retires the champion).", cl_cli_promote},
    {"rollback", "rollback [--model M] [--reason TEXT]",
     "Reinstate the last retired champion's weights as a new champion version.", cl_cli_rollback},
    {"report", "report --metrics.report.dir=DIR [--state.dir=state/metrics]",
     "Render the Closed Won / Closed Lost reports from the metrics worker's state.",
     cl_cli_report},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: closedloop <command> [arguments] [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n      %s\n", commands[i].name, commands[i].summary,
                commands[i].usage);
    fprintf(out,
            "\nEvery command accepts the common options (--brokers, --topic.prefix, "
            "-X kafka.property=value, --config FILE); `closedloop <command> --help` lists them.\n");
}

int main(int argc, char **argv)
{
    cl_log_init("cli", CL_LOG_WARN, CL_LOG_LOGFMT);
    if (argc < 2) {
        usage(stderr);
        return CL_CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CL_CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("closedloop %s\n", CL_VERSION);
        return CL_CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "closedloop: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CL_CLI_USAGE;
}

int cl_cli_load_config(const char *program, const char *summary, const cl_option *const *tables,
                       int argc, char **argv, cl_config **out)
{
    *out = NULL;
    cl_config *cfg = cl_config_new(program, summary, tables);
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", program);
        return CL_CLI_FAIL;
    }
    char err[CL_ERRLEN];
    int rc = cl_config_load(cfg, argc, argv, err, sizeof err);
    if (rc == CL_ESTOP) {
        cl_config_free(cfg);
        return CL_CLI_OK;
    }
    if (rc != CL_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        cl_config_free(cfg);
        return CL_CLI_USAGE;
    }
    cl_log_level level = CL_LOG_WARN;
    cl_log_format format = CL_LOG_LOGFMT;
    const char *l = cl_config_str(cfg, "log.level");
    const char *f = cl_config_str(cfg, "log.format");
    /* The CLI is quiet by default: only warnings, unless asked. */
    if (l && strcmp(cl_config_source(cfg, "log.level"), "default") != 0 &&
        cl_log_parse_level(l, &level) != CL_OK) {
        fprintf(stderr, "%s: log.level '%s' is not debug|info|warn|error\n", program, l);
        cl_config_free(cfg);
        return CL_CLI_USAGE;
    }
    if (f && cl_log_parse_format(f, &format) != CL_OK) {
        fprintf(stderr, "%s: log.format '%s' is not logfmt|json\n", program, f);
        cl_config_free(cfg);
        return CL_CLI_USAGE;
    }
    cl_log_init("cli", level, format);
    *out = cfg;
    return CL_CLI_OK;
}
