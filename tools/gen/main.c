/*
 * main.c — closedloop-gen command line: options -> cl_gen_options, generate, write.
 * Everything else lives in gen.c so that tests drive the same code.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "gen/gen.h"
#include "log.h"
#include "util.h"

static const cl_option gen_options[] = {
    {"out", CL_OPT_STRING, "out", "Output directory (runs/, outcomes/, truth.json, ...).", 0, 0, 0},
    {"seed", CL_OPT_INT, "1", "PRNG seed; the same seed and options give byte-identical files.", 0,
     0, 9007199254740992.0},
    {"start-date", CL_OPT_STRING, "2024-01-01", "First day of the history (YYYY-MM-DD).", 0, 0, 0},
    {"months", CL_OPT_INT, "18", "Length of the history in months.", 0, 1, CL_GEN_MAX_MONTHS},
    {"opportunities", CL_OPT_INT, "20000", "Opportunities created over the history.", 0, 1,
     CL_GEN_MAX_OPPORTUNITIES},
    {"accounts", CL_OPT_INT, "0", "Accounts (0: opportunities / 5).", 0, 0,
     CL_GEN_MAX_OPPORTUNITIES},
    {"owners", CL_OPT_INT, "0", "Sales reps (0: opportunities / 250, at least 3).", 0, 0, 1000000},
    {"run-interval-days", CL_OPT_INT, "7", "Days between scoring runs (runs at 06:00Z).", 0, 1,
     365},
    {"format", CL_OPT_STRING, "csv", "Run file format: csv or jsonl.", 0, 0, 0},
    {"learned-factors", CL_OPT_BOOL, "false",
     "Add owner-skill and lead-source effects to the true model (signal beyond the six "
     "components).",
     0, 0, 0},
    {"reopen-rate", CL_OPT_DOUBLE, "0.02", "Share of closed opportunities later re-opened.", 0, 0,
     0.5},
    {"delete-rate", CL_OPT_DOUBLE, "0.01", "Share of closed opportunities later deleted.", 0, 0,
     0.5},
    {"currency", CL_OPT_STRING, "USD", "ISO 4217 currency of every amount.", 0, 0, 0},
    {"true-weights", CL_OPT_STRING, NULL,
     "True component weights, e.g. speed_to_close=0.3,largest_deal=0.05,product_mix=0.1,"
     "upsell_instances=0.1,win_rate=0.35,recency=0.1 (the default).",
     0, 0, 0},
    {"true-intercept", CL_OPT_DOUBLE, NULL,
     "Intercept a of the true model (unset: the documented default, ~30% win rate).", 0, -100, 100},
    {"true-slope", CL_OPT_DOUBLE, NULL,
     "Slope b of the true model per score point (unset: the documented default).", 0, 0.0001, 10},
    {"force", CL_OPT_BOOL, "false", "Replace a history already in --out.", 0, 0, 0},
    {NULL, 0, NULL, NULL, 0, 0, 0},
};

static int options_from_config(const cl_config *cfg, cl_gen_options *opt, char *err, size_t errlen)
{
    cl_gen_options_init(opt);
    opt->seed = (uint64_t)cl_config_int(cfg, "seed");
    const char *start = cl_config_str(cfg, "start-date");
    if (!start || cl_parse_date(start, &opt->start_day) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "start-date (%s): '%s' is not YYYY-MM-DD",
                         cl_config_source(cfg, "start-date"), start ? start : "");
    opt->months = (int)cl_config_int(cfg, "months");
    opt->opportunities = cl_config_int(cfg, "opportunities");
    opt->accounts = cl_config_int(cfg, "accounts");
    opt->owners = cl_config_int(cfg, "owners");
    opt->run_interval_days = (int)cl_config_int(cfg, "run-interval-days");
    const char *format = cl_config_str(cfg, "format");
    if (format && strcmp(format, "csv") == 0)
        opt->format = CL_GEN_FORMAT_CSV;
    else if (format && strcmp(format, "jsonl") == 0)
        opt->format = CL_GEN_FORMAT_JSONL;
    else
        return cl_seterr(err, errlen, CL_EINVAL, "format (%s): '%s' is not csv or jsonl",
                         cl_config_source(cfg, "format"), format ? format : "");
    opt->learned_factors = cl_config_bool(cfg, "learned-factors");
    opt->reopen_rate = cl_config_double(cfg, "reopen-rate");
    opt->delete_rate = cl_config_double(cfg, "delete-rate");
    const char *currency = cl_config_str(cfg, "currency");
    if (!currency || cl_strlcpy(opt->currency, currency, sizeof opt->currency) != CL_OK ||
        strlen(currency) != 3)
        return cl_seterr(err, errlen, CL_EINVAL, "currency (%s): '%s' is not a 3-letter code",
                         cl_config_source(cfg, "currency"), currency ? currency : "");
    const char *weights = cl_config_str(cfg, "true-weights");
    if (weights && cl_gen_parse_weights(weights, opt->true_weights, err, errlen) != CL_OK)
        return CL_EINVAL;
    if (cl_config_is_set(cfg, "true-intercept"))
        opt->intercept = cl_config_double(cfg, "true-intercept");
    if (cl_config_is_set(cfg, "true-slope")) opt->slope = cl_config_double(cfg, "true-slope");
    return CL_OK;
}

int main(int argc, char **argv)
{
    static const cl_option *const tables[] = {gen_options, NULL};
    char err[CL_ERRLEN];
    cl_log_init("gen", CL_LOG_INFO, CL_LOG_LOGFMT);
    cl_config *cfg = cl_config_new(
        "closedloop-gen",
        "Generate a synthetic, deterministic CRM history with a known true model: weekly "
        "scoring-run files (snapshot input), closed-opportunity exports and Salesforce "
        "Opportunity records, and truth.json with the weights the outcomes were drawn from. "
        "See docs/generator.md.",
        tables);
    if (!cfg) {
        fprintf(stderr, "closedloop-gen: out of memory\n");
        return 1;
    }
    int rc = cl_config_load(cfg, argc, argv, err, sizeof err);
    if (rc == CL_ESTOP) {
        cl_config_free(cfg);
        return 0;
    }
    if (rc != CL_OK) {
        fprintf(stderr, "closedloop-gen: %s (see --help)\n", err);
        cl_config_free(cfg);
        return 2;
    }
    cl_log_level level;
    cl_log_format format;
    if (cl_log_parse_level(cl_config_str(cfg, "log.level"), &level) == CL_OK)
        cl_log_set_level(level);
    if (cl_log_parse_format(cl_config_str(cfg, "log.format"), &format) == CL_OK)
        cl_log_init("gen", level, format);

    cl_gen_options opt;
    if (options_from_config(cfg, &opt, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-gen: %s\n", err);
        cl_config_free(cfg);
        return 2;
    }
    const char *out_dir = cl_config_str(cfg, "out");
    int force = cl_config_bool(cfg, "force");
    int64_t started = cl_mono_ms();
    cl_gen *gen = NULL;
    rc = cl_gen_create(&opt, &gen, err, sizeof err);
    if (rc == CL_OK) rc = cl_gen_write(gen, out_dir ? out_dir : "", force, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "generate_failed", "out=%s error=\"%s\"", out_dir ? out_dir : "", err);
        cl_gen_free(gen);
        cl_config_free(cfg);
        return rc == CL_EINVAL ? 2 : 1;
    }
    const cl_gen_counts *c = cl_gen_get_counts(gen);
    cl_log(CL_LOG_INFO, "history_written",
           "out=%s seed=%llu opportunities=%lld runs=%lld snapshots=%lld closed_won=%lld "
           "closed_lost=%lld reopened=%lld deleted=%lld open_at_end=%lld elapsed_ms=%lld",
           out_dir, (unsigned long long)opt.seed, (long long)c->opportunities, (long long)c->runs,
           (long long)c->snapshots, (long long)c->closed_won, (long long)c->closed_lost,
           (long long)c->reopened, (long long)c->deleted, (long long)c->open_at_end,
           (long long)(cl_mono_ms() - started));
    cl_gen_free(gen);
    cl_config_free(cfg);
    return 0;
}
