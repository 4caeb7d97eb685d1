/*
 * cli.h — the commands of the `closedloop` operations CLI.
 *
 * `closedloop <command> [arguments] [options]`: main.c looks the command up in its
 * dispatch table and calls its function with argv shifted so that argv[0] is
 * "closedloop <command>". Each command loads its own configuration (common options
 * plus its own table) with cl_config_load, so `--brokers`, `-X kafka.prop=value`,
 * `--config FILE` and CLOSEDLOOP_* variables work the same in every command.
 *
 * A command returns the process exit status: 0 success, 1 failure (the message has
 * been printed to stderr), 2 usage error.
 */
#ifndef CL_CLI_H
#define CL_CLI_H

#include "config.h"

typedef int (*cl_cli_command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    const char *usage;   /* "topics create|describe [--partitions N] ..." */
    const char *summary; /* one sentence */
    cl_cli_command_fn run;
} cl_cli_command;

enum { CL_CLI_OK = 0, CL_CLI_FAIL = 1, CL_CLI_USAGE = 2 };

int cl_cli_topics(int argc, char **argv);
int cl_cli_lag(int argc, char **argv);
int cl_cli_weights(int argc, char **argv);  /* weights.c: weights show */
int cl_cli_promote(int argc, char **argv);  /* weights.c */
int cl_cli_rollback(int argc, char **argv); /* weights.c */
int cl_cli_report(int argc, char **argv);   /* report.c: reports from the metrics state */

/* Shared by commands: create the config for `program`, load argv, set up logging to
 * stderr at log.level. Returns CL_CLI_OK with *out set, or an exit status (help
 * printed: 0 with *out NULL; bad flags: 2). */
int cl_cli_load_config(const char *program, const char *summary, const cl_option *const *tables,
                       int argc, char **argv, cl_config **out);

#endif
