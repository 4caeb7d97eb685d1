/*
 * weights.c — `closedloop weights show`, `closedloop promote`, `closedloop rollback`:
 * the operator's view of and hand on the compacted weights topic.
 *
 * All three read the topic to its end into the same state the refit worker keeps
 * (common/weights_state.h: champion, live challenger, last retired champion, highest
 * version, by the rules every reader of the topic applies), so what they show and what
 * they change agree with the workers.
 * promote and rollback publish exactly the records the worker would (CHAMPION, then
 * RETIRED, each under its role key) and exit 0 only when the broker acknowledged them.
 * A running refit worker picks the change up from the topic before its next cycle.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"
#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "registry.h"
#include "score.h"
#include "util.h"
#include "weights_log.h"

static const cl_option weights_options[] = {
    {"model", CL_OPT_STRING, CL_SEED_MODEL, "Model name (the key prefix on the weights topic)."},
    {"output", CL_OPT_STRING, "text", "weights show: text or json."},
    {"reason", CL_OPT_STRING, "", "promote / rollback: why, recorded in the records' reason."},
    {"timeout.ms", CL_OPT_INT, "30000", "Bound on reading the topic and on the publish.", 0, 1000,
     600000},
    {NULL},
};

typedef struct {
    cl_config *cfg;
    cl_avro_schemas *schemas;
    cl_registry *registry;
    cl_weights_state state;
    char topic[256];
    int timeout;
} weights_ctx;

static void ctx_free(weights_ctx *c)
{
    cl_weights_state_free(&c->state);
    cl_registry_free(c->registry);
    cl_avro_schemas_free(c->schemas);
    cl_config_free(c->cfg);
}

/* Loads the configuration and reads the topic. Returns a CLI exit status. */
static int ctx_load(weights_ctx *c, const char *program, const char *summary, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    const cl_option *const tables[] = {weights_options, cl_registry_options, NULL};
    int rc = cl_cli_load_config(program, summary, tables, argc, argv, &c->cfg);
    if (rc != CL_CLI_OK || !c->cfg) return rc == CL_CLI_OK ? -1 : rc; /* -1: help printed */
    char **args;
    if (cl_config_args(c->cfg, &args) > 0) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", program, args[0]);
        return CL_CLI_USAGE;
    }
    char err[CL_ERRLEN];
    const char *model = cl_config_str(c->cfg, "model");
    if (!model || !*model || strlen(model) > CL_NAME_MAX) {
        fprintf(stderr, "%s: --model must be 1..%d bytes\n", program, CL_NAME_MAX);
        return CL_CLI_USAGE;
    }
    cl_weights_state_init(&c->state, model);
    c->timeout = (int)cl_config_int(c->cfg, "timeout.ms");
    if (cl_strlcpy(c->topic, cl_config_topic(c->cfg, "weights"), sizeof c->topic) != CL_OK) {
        fprintf(stderr, "%s: topic name too long\n", program);
        return CL_CLI_USAGE;
    }
    rc = cl_avro_schemas_load(cl_config_str(c->cfg, "avro.schema.dir"), &c->schemas, err,
                              sizeof err);
    if (rc == CL_OK) rc = cl_registry_from_config(&c->registry, c->cfg, err, sizeof err);
    if (rc == CL_OK)
        rc = cl_weights_read_topic(c->cfg, c->schemas, c->registry, c->topic, &c->state, c->timeout,
                                   err, sizeof err);
    if (rc != CL_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        return CL_CLI_FAIL;
    }
    return CL_CLI_OK;
}

static void print_config(const char *role, const cl_weight_config *w)
{
    if (!w) {
        printf("%-10s none\n", role);
        return;
    }
    char ts[32];
    cl_format_timestamp(w->created_at, ts);
    printf("%-10s v%" PRId64 " %s", role, w->version, cl_model_status_name(w->status));
    if (w->parent_version.present) printf(" (parent v%" PRId64 ")", w->parent_version.value);
    printf(" created %s\n", ts);
    printf("  weights:");
    for (size_t i = 0; i < w->weights.n; i++)
        printf(" %s=%.4f", w->weights.items[i].component, w->weights.items[i].weight);
    printf("\n  calibration: intercept=%.6g slope=%.6g; bands HIGH>=%g MEDIUM>=%g\n",
           w->calibration.intercept, w->calibration.slope, w->bands.high, w->bands.medium);
    for (size_t i = 0; i < w->n_stage_weights; i++)
        printf("  stage %s: %zu weights\n", w->stage_weights[i].stage,
               w->stage_weights[i].weights.n);
    for (size_t i = 0; i < w->n_components; i++)
        printf("  component %s: %s of %s (%zu categories, %zu breakpoints)\n",
               w->components[i].name, cl_component_kind_name(w->components[i].kind),
               w->components[i].source, w->components[i].n_categories,
               w->components[i].n_breakpoints);
    if (w->has_comparison)
        printf("  comparison: vs v%" PRId64 " delta AUC %+.4f p=%.3g n=%" PRId64 "\n",
               w->comparison.champion_version, w->comparison.delta_auc, w->comparison.p_value,
               w->comparison.n_paired);
    if (w->reason[0]) printf("  reason: %s\n", w->reason);
}

static int json_config(json_t *root, const char *role, const cl_weight_config *w,
                       const cl_avro_schemas *schemas, char *err, size_t errlen)
{
    if (!w) return json_object_set_new(root, role, json_null()) == 0 ? CL_OK : CL_ENOMEM;
    const cl_avro_schema *schema = cl_avro_schemas_find(schemas, "closedloop.WeightConfig");
    if (!schema) return cl_seterr(err, errlen, CL_ENOTFOUND, "no WeightConfig schema");
    avro_value_iface_t *iface = avro_generic_class_from_schema(cl_avro_schema_avro(schema));
    avro_value_t v;
    if (!iface || avro_generic_value_new(iface, &v) != 0) {
        if (iface) avro_value_iface_decref(iface);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    json_t *j = NULL;
    int rc = cl_weight_config_to_avro(w, &v, err, errlen);
    if (rc == CL_OK) rc = cl_avro_value_to_json(&v, schema, &j, err, errlen);
    if (rc == CL_OK && json_object_set_new(root, role, j) != 0) rc = CL_ENOMEM;
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    return rc;
}

static int cmd_show(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "show") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            printf("Usage: closedloop weights show [--model M] [--output text|json]\n");
            return CL_CLI_OK;
        }
        fprintf(stderr, "Usage: closedloop weights show [--model M] [--output text|json]\n");
        return CL_CLI_USAGE;
    }
    weights_ctx c;
    int rc = ctx_load(&c, "closedloop weights show",
                      "Show the current CHAMPION, the live CHALLENGER, the latest refit outcome "
                      "and the last RETIRED champion of a model, as the weights topic says.",
                      argc - 1, argv + 1);
    if (rc != CL_CLI_OK) {
        ctx_free(&c);
        return rc < 0 ? CL_CLI_OK : rc;
    }
    const char *output = cl_config_str(c.cfg, "output");
    cl_weights_state *s = &c.state;
    if (strcmp(output, "json") == 0) {
        json_t *root = json_object();
        char err[CL_ERRLEN] = "out of memory";
        int jrc = root ? CL_OK : CL_ENOMEM;
        if (jrc == CL_OK)
            jrc =
                json_object_set_new(root, "model", json_string(s->model)) == 0 ? CL_OK : CL_ENOMEM;
        if (jrc == CL_OK)
            jrc = json_object_set_new(root, "max_version", json_integer(s->max_version)) == 0
                      ? CL_OK
                      : CL_ENOMEM;
        const char *roles[] = {"champion", "challenger", "latest_refit", "retired"};
        const cl_weight_config *cfgs[] = {s->champion, s->challenger, s->last, s->retired};
        for (int i = 0; i < 4 && jrc == CL_OK; i++)
            jrc = json_config(root, roles[i], cfgs[i], c.schemas, err, sizeof err);
        if (jrc != CL_OK) {
            fprintf(stderr, "closedloop weights show: %s\n", err);
            json_decref(root);
            ctx_free(&c);
            return CL_CLI_FAIL;
        }
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (text) printf("%s\n", text);
        free(text);
        json_decref(root);
    } else if (strcmp(output, "text") == 0) {
        printf("model %s on %s: %" PRIu64 " records, highest version %" PRId64 "\n", s->model,
               c.topic, s->records, s->max_version);
        print_config("champion", s->champion);
        print_config("challenger", s->challenger);
        print_config("latest", s->last);
        print_config("retired", s->retired);
    } else {
        fprintf(stderr, "closedloop weights show: --output must be text or json, not '%s'\n",
                output);
        ctx_free(&c);
        return CL_CLI_USAGE;
    }
    ctx_free(&c);
    return CL_CLI_OK;
}

int cl_cli_weights(int argc, char **argv)
{
    return cmd_show(argc, argv);
}

static int publish_records(weights_ctx *c, const char *program, cl_weight_config *const *recs,
                           size_t n)
{
    char err[CL_ERRLEN];
    cl_producer *p = NULL;
    cl_avro_codec *codec = NULL;
    char subject[300];
    snprintf(subject, sizeof subject, "%s-value", c->topic);
    cl_avro_codec_opts co = {CL_AVRO_FRAMING_AUTO, c->registry, subject, 0};
    cl_producer_opts po = {"closedloop-cli", cl_weights_on_delivery, NULL, NULL};
    int rc = cl_avro_codec_new(&codec, c->schemas, "closedloop.WeightConfig", &co, err, sizeof err);
    if (rc == CL_OK) rc = cl_producer_new(c->cfg, &po, &p, err, sizeof err);
    if (rc == CL_OK)
        rc = cl_weights_publish(p, codec, c->topic, recs, n, c->timeout, err, sizeof err);
    char cerr[CL_ERRLEN];
    if (p) cl_producer_close(p, c->timeout, cerr, sizeof cerr);
    cl_avro_codec_free(codec);
    if (rc != CL_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        return CL_CLI_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        printf("published %s v%" PRId64 " %s: %s\n", recs[i]->model, recs[i]->version,
               cl_model_status_name(recs[i]->status), recs[i]->reason);
    return CL_CLI_OK;
}

static int transition(int argc, char **argv, int rollback)
{
    const char *program = rollback ? "closedloop rollback" : "closedloop promote";
    weights_ctx c;
    int rc = ctx_load(&c, program,
                      rollback ? "Make the last RETIRED champion's weights the CHAMPION again "
                                 "(as a new version) and retire the current champion."
                               : "Promote the live CHALLENGER to CHAMPION now, without waiting "
                                 "for its A/B trial, and retire the current champion.",
                      argc, argv);
    if (rc != CL_CLI_OK) {
        ctx_free(&c);
        return rc < 0 ? CL_CLI_OK : rc;
    }
    cl_weight_config *out[2] = {malloc(sizeof(cl_weight_config)), malloc(sizeof(cl_weight_config))};
    char err[CL_ERRLEN] = "out of memory";
    size_t n = 2;
    const char *given = cl_config_str(c.cfg, "reason");
    char reason[CL_REASON_MAX + 1];
    if (rollback)
        snprintf(reason, sizeof reason, "by an operator%s%.900s", given && *given ? ": " : "",
                 given ? given : "");
    else
        snprintf(reason, sizeof reason, "manual promotion by an operator%s%.900s",
                 given && *given ? ": " : "", given ? given : "");
    int trc = CL_ENOMEM;
    if (out[0] && out[1]) {
        trc = rollback ? cl_weights_rollback(&c.state, reason, cl_now_ms(), out, err, sizeof err)
                       : cl_weights_promotion(&c.state, NULL, reason, cl_now_ms(), out, &n, err,
                                              sizeof err);
    }
    if (trc != CL_OK) {
        fprintf(stderr, "%s: %s\n", program, err);
        rc = CL_CLI_FAIL;
    } else {
        rc = publish_records(&c, program, out, n);
    }
    free(out[0]);
    free(out[1]);
    ctx_free(&c);
    return rc;
}

int cl_cli_promote(int argc, char **argv)
{
    return transition(argc, argv, 0);
}
int cl_cli_rollback(int argc, char **argv)
{
    return transition(argc, argv, 1);
}
