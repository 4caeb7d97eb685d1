/*
 * topics.c — `closedloop topics create|describe`.
 *
 * The catalogue below is the one place that says which topics closedloop uses and how
 * they are laid out (SPEC §2). Partition counts matter beyond throughput: `snapshots`,
 * `outcomes` and `join-changelog` must have the same count, because the join worker
 * co-partitions them by opportunity id and restores partition p's state from changelog
 * partition p. `weights` has one partition so that a reader sees every model's versions
 * in publication order. Creation is idempotent: an existing topic is left as it is,
 * but one whose cleanup policy contradicts the catalogue (a non-compacted `weights`)
 * is reported as an error, since the system would silently lose configurations.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka.h"
#include "util.h"

static const cl_option topics_options[] = {
    {"partitions", CL_OPT_INT, "6",
     "Partitions of every topic except weights (always 1); snapshots, outcomes and "
     "join-changelog must agree.",
     0, 1, 10000},
    {"replication-factor", CL_OPT_INT, "1", "Replication factor of every topic.", 0, 1, 32},
    {"admin.timeout.ms", CL_OPT_INT, "30000", "Bound on each admin request.", 0, 1000, 600000},
    {"output", CL_OPT_STRING, "text", "Output format of describe: text or json."},
    {NULL},
};

static const char *const compacted[] = {"cleanup.policy", "compact", NULL};
/* Dead letters are kept for a month: someone has to look at them. */
static const char *const dead_letters[] = {"retention.ms", "2592000000", NULL};

static const struct {
    const char *name;
    int single_partition;
    const char *const *configs;
} catalogue[] = {
    {"snapshots", 0, NULL},
    {"outcomes", 0, NULL},
    {"labeled", 0, NULL},
    {"metrics", 0, NULL},
    {"weights", 1, compacted},
    {"dlq", 0, dead_letters},
    {"join-changelog", 0, compacted},
};
#define NTOPICS (sizeof catalogue / sizeof catalogue[0])

static int must_be_compacted(const char *suffix)
{
    for (size_t i = 0; i < NTOPICS; i++)
        if (strcmp(catalogue[i].name, suffix) == 0) return catalogue[i].configs == compacted;
    return 0;
}

static int create(cl_config *cfg)
{
    int timeout = (int)cl_config_int(cfg, "admin.timeout.ms");
    int partitions = (int)cl_config_int(cfg, "partitions");
    int rf = (int)cl_config_int(cfg, "replication-factor");
    cl_topic_spec specs[NTOPICS];
    const char *names[NTOPICS];
    for (size_t i = 0; i < NTOPICS; i++) {
        names[i] = cl_config_topic(cfg, catalogue[i].name);
        specs[i] = (cl_topic_spec){names[i], catalogue[i].single_partition ? 1 : partitions, rf,
                                   catalogue[i].configs};
    }
    cl_topic_create_result results[NTOPICS];
    char err[CL_ERRLEN];
    if (cl_kafka_create_topics(cfg, specs, NTOPICS, results, timeout, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop topics create: %s\n", err);
        return CL_CLI_FAIL;
    }
    cl_topic_info *infos;
    /* CreateTopics returns before every broker's metadata cache knows the new topics, so
     * a describe right after can say "does not exist": retry briefly before failing. */
    int rc = CL_ERR;
    for (int attempt = 0; attempt < 20; attempt++) {
        rc = cl_kafka_describe_topics(cfg, names, NTOPICS, &infos, timeout, err, sizeof err);
        if (rc == CL_OK) break;
        cl_sleep_ms(250);
    }
    if (rc != CL_OK) {
        fprintf(stderr, "closedloop topics create: created, but describing them failed: %s\n", err);
        return CL_CLI_FAIL;
    }
    int status = CL_CLI_OK;
    for (size_t i = 0; i < NTOPICS; i++) {
        const char *policy = cl_topic_info_config(&infos[i], "cleanup.policy");
        printf("%-8s %s partitions=%d replication-factor=%d cleanup.policy=%s\n",
               results[i] == CL_TOPIC_CREATED ? "created" : "exists", names[i], infos[i].partitions,
               infos[i].replication_factor, policy ? policy : "?");
        if (catalogue[i].configs == compacted && (!policy || !strstr(policy, "compact"))) {
            fprintf(stderr,
                    "closedloop topics create: %s exists with cleanup.policy=%s but must be "
                    "compacted; fix it with kafka-configs --alter --add-config "
                    "cleanup.policy=compact\n",
                    names[i], policy ? policy : "?");
            status = CL_CLI_FAIL;
        }
        if (results[i] == CL_TOPIC_EXISTED && infos[i].partitions != specs[i].partitions)
            fprintf(stderr,
                    "closedloop topics create: warning: %s exists with %d partitions, not %d\n",
                    names[i], infos[i].partitions, specs[i].partitions);
    }
    /* The join worker relies on co-partitioning (see the comment at the top). */
    int p_snap = infos[0].partitions, p_out = infos[1].partitions,
        p_chg = infos[NTOPICS - 1].partitions;
    if (p_snap != p_out || p_snap != p_chg) {
        fprintf(stderr,
                "closedloop topics create: %s, %s and %s have %d, %d and %d partitions; the join "
                "worker needs them equal\n",
                names[0], names[1], names[NTOPICS - 1], p_snap, p_out, p_chg);
        status = CL_CLI_FAIL;
    }
    cl_topic_infos_free(infos, NTOPICS);
    return status;
}

static int describe(cl_config *cfg, char **args, int nargs)
{
    int timeout = (int)cl_config_int(cfg, "admin.timeout.ms");
    const char *output = cl_config_str(cfg, "output");
    int json = output && strcmp(output, "json") == 0;
    if (output && !json && strcmp(output, "text") != 0) {
        fprintf(stderr, "closedloop topics describe: --output must be text or json, not '%s'\n",
                output);
        return CL_CLI_USAGE;
    }
    const char *defaults[NTOPICS];
    const char *const *names;
    size_t n;
    if (nargs > 0) {
        names = (const char *const *)args;
        n = (size_t)nargs;
    } else {
        for (size_t i = 0; i < NTOPICS; i++)
            defaults[i] = cl_config_topic(cfg, catalogue[i].name);
        names = defaults;
        n = NTOPICS;
    }
    cl_topic_info *infos;
    char err[CL_ERRLEN];
    if (cl_kafka_describe_topics(cfg, names, n, &infos, timeout, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop topics describe: %s\n", err);
        return CL_CLI_FAIL;
    }
    json_t *arr = json ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        const cl_topic_info *t = &infos[i];
        const char *policy = cl_topic_info_config(t, "cleanup.policy");
        if (json) {
            json_t *configs = json_object();
            for (size_t j = 0; j < t->nconfigs; j++)
                if (!t->configs[j].is_default)
                    json_object_set_new(configs, t->configs[j].name,
                                        t->configs[j].value ? json_string(t->configs[j].value)
                                                            : json_null());
            json_array_append_new(arr, json_pack("{s:s, s:i, s:i, s:s?, s:o}", "topic", t->name,
                                                 "partitions", t->partitions, "replication_factor",
                                                 t->replication_factor, "cleanup_policy", policy,
                                                 "configs", configs));
            continue;
        }
        printf("%s partitions=%d replication-factor=%d cleanup.policy=%s\n", t->name, t->partitions,
               t->replication_factor, policy ? policy : "?");
        for (size_t j = 0; j < t->nconfigs; j++)
            if (!t->configs[j].is_default && strcmp(t->configs[j].name, "cleanup.policy") != 0)
                printf("    %s=%s\n", t->configs[j].name,
                       t->configs[j].value ? t->configs[j].value : "(sensitive)");
    }
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) {
            puts(s);
            free(s);
        }
        json_decref(arr);
    }
    /* A topic named on the command line that should be compacted but is not. */
    int status = CL_CLI_OK;
    const char *prefix = cl_config_str(cfg, "topic.prefix");
    size_t pl = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *suffix =
            strncmp(infos[i].name, prefix ? prefix : "", pl) == 0 ? infos[i].name + pl : "";
        const char *policy = cl_topic_info_config(&infos[i], "cleanup.policy");
        if (must_be_compacted(suffix) && (!policy || !strstr(policy, "compact"))) {
            fprintf(stderr,
                    "closedloop topics describe: %s must be compacted but has cleanup.policy=%s\n",
                    infos[i].name, policy ? policy : "?");
            status = CL_CLI_FAIL;
        }
    }
    cl_topic_infos_free(infos, n);
    return status;
}

int cl_cli_topics(int argc, char **argv)
{
    const cl_option *const tables[] = {topics_options, NULL};
    cl_config *cfg;
    int rc = cl_cli_load_config(
        "closedloop topics",
        "closedloop topics create: create the seven closedloop topics with the configured "
        "prefix (idempotent; weights and join-changelog compacted, weights with one "
        "partition). closedloop topics describe [TOPIC...]: partitions, replication and "
        "non-default configuration of the closedloop topics or of the named ones.",
        tables, argc, argv, &cfg);
    if (rc != CL_CLI_OK || !cfg) return rc;
    char **args;
    int nargs = cl_config_args(cfg, &args);
    if (nargs < 1) {
        fprintf(stderr, "closedloop topics: expected `create` or `describe` (see --help)\n");
        rc = CL_CLI_USAGE;
    } else if (strcmp(args[0], "create") == 0) {
        if (nargs > 1) {
            fprintf(stderr,
                    "closedloop topics create: takes no topic names (it creates the catalogue)\n");
            rc = CL_CLI_USAGE;
        } else {
            rc = create(cfg);
        }
    } else if (strcmp(args[0], "describe") == 0) {
        rc = describe(cfg, args + 1, nargs - 1);
    } else {
        fprintf(stderr, "closedloop topics: unknown subcommand '%s' (create|describe)\n", args[0]);
        rc = CL_CLI_USAGE;
    }
    cl_config_free(cfg);
    return rc;
}
