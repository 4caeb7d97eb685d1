/*
 * main.c — closedloop-replay command line: options -> cl_replay_options /
 * cl_backtest_options, load, then write the loop's inputs or print the backtest.
 * Everything else lives in replay.c so that tests drive the same code.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "replay/replay.h"
#include "util.h"

static const cl_option replay_options[] = {
    {"input", CL_OPT_STRING, NULL,
     "CRM export (CSV with a header); also the first argument after the command.", 0, 0, 0},
    {"out", CL_OPT_STRING, "replay",
     "Output directory of `write` (runs/, outcomes/, ids.csv, replay.json).", 0, 0, 0},
    {"force", CL_OPT_BOOL, "false", "Replace a replay already in --out.", 0, 0, 0},
    {"replay.column.id", CL_OPT_STRING, "opportunity_id",
     "Header of the opportunity id column (required).", 0, 0, 0},
    {"replay.column.account", CL_OPT_STRING, "account_name",
     "Header of the account column (required).", 0, 0, 0},
    {"replay.column.owner", CL_OPT_STRING, "owner", "Header of the owner column (\"\": none).", 0,
     0, 0},
    {"replay.column.product", CL_OPT_STRING, "product",
     "Header of the product column (\"\": none).", 0, 0, 0},
    {"replay.column.stage", CL_OPT_STRING, "stage",
     "Header of the (final) stage column (\"\": none).", 0, 0, 0},
    {"replay.column.created", CL_OPT_STRING, "created_date",
     "Header of the created (or engaged) date column (required).", 0, 0, 0},
    {"replay.column.close", CL_OPT_STRING, "close_date",
     "Header of the close date column (required; expected close for open deals).", 0, 0, 0},
    {"replay.column.amount", CL_OPT_STRING, "amount", "Header of the amount column (\"\": none).",
     0, 0, 0},
    {"replay.column.won", CL_OPT_STRING, "is_won",
     "Header of the won flag column (required; true/false, yes/no, 1/0).", 0, 0, 0},
    {"replay.column.closed", CL_OPT_STRING, "is_closed",
     "Header of the closed flag column (\"\": every row is closed).", 0, 0, 0},
    {"replay.column.segment", CL_OPT_STRING, "segment",
     "Header of the segment column (\"\": none).", 0, 0, 0},
    {"replay.column.region", CL_OPT_STRING, "region", "Header of the region column (\"\": none).",
     0, 0, 0},
    {"replay.column.lead_source", CL_OPT_STRING, "lead_source",
     "Header of the lead source column (\"\": none).", 0, 0, 0},
    {"replay.column.type", CL_OPT_STRING, "", "Header of the opportunity type column (\"\": none).",
     0, 0, 0},
    {"replay.bad.rows", CL_OPT_STRING, "fail",
     "A bad row fails the replay (fail) or is counted and left out (skip).", 0, 0, 0},
    {"replay.interval.days", CL_OPT_INT, "7", "Days between snapshot runs.", 0, 1, 366},
    {"replay.start.date", CL_OPT_STRING, NULL,
     "First snapshot day (default: the first created date).", 0, 0, 0},
    {"replay.end.date", CL_OPT_STRING, NULL,
     "Extraction date, exclusive (default: the day after the last close).", 0, 0, 0},
    {"replay.currency", CL_OPT_STRING, "USD", "ISO 4217 currency written with every amount.", 0, 0,
     0},
    {"replay.win_rate.smoothing", CL_OPT_DOUBLE, "5",
     "Pseudo-outcomes at the global past rate added to every win rate.", 0, 0, 1e6},
    {"replay.recency.half_life.days", CL_OPT_DOUBLE, "180",
     "Half-life of the recency component, in days.", 0, 0.001, 1e6},
    {"replay.product_mix.cap", CL_OPT_INT, "4",
     "Distinct products bought for a full product_mix score.", 0, 1, 1000},
    {"replay.max.bytes", CL_OPT_INT, "1073741824", "Largest export read.", 0, 1, 68719476736.0},
    {"backtest.period", CL_OPT_STRING, "quarter", "Backtest period: month or quarter.", 0, 0, 0},
    {"backtest.horizon.days", CL_OPT_INT, "7",
     "Evaluate each deal on its latest snapshot at least this many days before close.", 0, 0, 3650},
    {"backtest.high.threshold", CL_OPT_DOUBLE, "70", "Score at or above which a deal is HIGH.", 0,
     0, 100},
    {"backtest.top.share", CL_OPT_DOUBLE, "0.3",
     "Also evaluate the top share of each period by score.", 0, 0.001, 1},
    {"backtest.l2", CL_OPT_DOUBLE, "1", "L2 strength per training example (lambda = this x n).", 0,
     0, 1e9},
    {"backtest.max.change", CL_OPT_DOUBLE, "0",
     "Cap on how far a learned weight may move from the seed's (0: none).", 0, 0, 1},
    {"backtest.min.won", CL_OPT_INT, "30", "Won outcomes needed before a period is fitted.", 0, 1,
     1e9},
    {"backtest.min.lost", CL_OPT_INT, "30", "Lost outcomes needed before a period is fitted.", 0, 1,
     1e9},
    {"backtest.factors", CL_OPT_BOOL, "true", "Also fit and measure the learned factors.", 0, 0, 0},
    {"backtest.folds", CL_OPT_INT, "5", "Rolling-origin folds of the whole-history validation.", 0,
     1, CL_CV_MAX_FOLDS},
    {"backtest.permutations", CL_OPT_INT, "19", "Shuffled-label repetitions of factor discovery.",
     0, 1, 999},
    {"backtest.seed", CL_OPT_INT, "1", "Seed of the label shuffles.", 0, 0, 9007199254740992.0},
    {NULL, 0, NULL, NULL, 0, 0, 0},
};

static int parse_date_option(const cl_config *cfg, const char *key, int32_t *day, char *err,
                             size_t errlen)
{
    const char *v = cl_config_str(cfg, key);
    if (!v || !v[0]) return CL_OK;
    if (cl_parse_date(v, day) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "%s (%s): '%s' is not YYYY-MM-DD", key,
                         cl_config_source(cfg, key), v);
    return CL_OK;
}

static int options_from_config(const cl_config *cfg, cl_replay_options *ro, cl_backtest_options *bo,
                               char *err, size_t errlen)
{
    cl_replay_options_init(ro);
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++) {
        char key[64];
        snprintf(key, sizeof key, "replay.column.%s", cl_replay_column_keys[k]);
        ro->columns[k] = cl_config_str(cfg, key);
    }
    const char *bad = cl_config_str(cfg, "replay.bad.rows");
    if (bad && strcmp(bad, "fail") == 0)
        ro->bad_rows = CL_REPLAY_BAD_ROWS_FAIL;
    else if (bad && strcmp(bad, "skip") == 0)
        ro->bad_rows = CL_REPLAY_BAD_ROWS_SKIP;
    else
        return cl_seterr(err, errlen, CL_EINVAL, "replay.bad.rows (%s): '%s' is not fail or skip",
                         cl_config_source(cfg, "replay.bad.rows"), bad ? bad : "");
    ro->interval_days = (int)cl_config_int(cfg, "replay.interval.days");
    if (parse_date_option(cfg, "replay.start.date", &ro->start_day, err, errlen) != CL_OK ||
        parse_date_option(cfg, "replay.end.date", &ro->end_day, err, errlen) != CL_OK)
        return CL_EINVAL;
    const char *cur = cl_config_str(cfg, "replay.currency");
    if (!cur || strlen(cur) != 3 || cur[0] < 'A' || cur[0] > 'Z' || cur[1] < 'A' || cur[1] > 'Z' ||
        cur[2] < 'A' || cur[2] > 'Z')
        return cl_seterr(err, errlen, CL_EINVAL,
                         "replay.currency (%s): '%s' is not a 3-letter ISO 4217 code",
                         cl_config_source(cfg, "replay.currency"), cur ? cur : "");
    memcpy(ro->currency, cur, 4);
    ro->win_rate_smoothing = cl_config_double(cfg, "replay.win_rate.smoothing");
    ro->recency_half_life_days = cl_config_double(cfg, "replay.recency.half_life.days");
    ro->product_mix_cap = (int)cl_config_int(cfg, "replay.product_mix.cap");
    ro->max_input_bytes = (size_t)cl_config_int(cfg, "replay.max.bytes");

    cl_backtest_options_init(bo);
    const char *period = cl_config_str(cfg, "backtest.period");
    if (period && strcmp(period, "month") == 0)
        bo->period = CL_BACKTEST_MONTH;
    else if (period && strcmp(period, "quarter") == 0)
        bo->period = CL_BACKTEST_QUARTER;
    else
        return cl_seterr(err, errlen, CL_EINVAL,
                         "backtest.period (%s): '%s' is not month or quarter",
                         cl_config_source(cfg, "backtest.period"), period ? period : "");
    bo->horizon_days = (int)cl_config_int(cfg, "backtest.horizon.days");
    bo->high_threshold = cl_config_double(cfg, "backtest.high.threshold");
    bo->top_share = cl_config_double(cfg, "backtest.top.share");
    bo->l2_per_example = cl_config_double(cfg, "backtest.l2");
    bo->max_change = cl_config_double(cfg, "backtest.max.change");
    bo->min_train_won = (size_t)cl_config_int(cfg, "backtest.min.won");
    bo->min_train_lost = (size_t)cl_config_int(cfg, "backtest.min.lost");
    bo->factors = cl_config_bool(cfg, "backtest.factors");
    bo->folds = (size_t)cl_config_int(cfg, "backtest.folds");
    bo->permutations = (size_t)cl_config_int(cfg, "backtest.permutations");
    bo->seed = (uint64_t)cl_config_int(cfg, "backtest.seed");
    return CL_OK;
}

int main(int argc, char **argv)
{
    static const cl_option *const tables[] = {replay_options, NULL};
    char err[CL_ERRLEN];
    cl_log_init("replay", CL_LOG_INFO, CL_LOG_LOGFMT);
    cl_config *cfg = cl_config_new(
        "closedloop-replay",
        "Replay a historical CRM export of opportunities through the loop. Commands:\n"
        "  write INPUT --out DIR   weekly scoring-run files with the six components computed\n"
        "                          from each account's history before each snapshot, and the\n"
        "                          outcomes (Salesforce export + queryAll records), in the\n"
        "                          layout closedloop-gen writes\n"
        "  backtest INPUT          period-by-period refit on past outcomes, evaluated on the\n"
        "                          next period: seed vs learned weights vs learned factors\n"
        "See docs/backtest.md.",
        tables);
    if (!cfg) {
        fprintf(stderr, "closedloop-replay: out of memory\n");
        return 1;
    }
    int rc = cl_config_load(cfg, argc, argv, err, sizeof err);
    if (rc == CL_ESTOP) {
        cl_config_free(cfg);
        return 0;
    }
    if (rc != CL_OK) {
        fprintf(stderr, "closedloop-replay: %s (see --help)\n", err);
        cl_config_free(cfg);
        return 2;
    }
    cl_log_level level = CL_LOG_INFO;
    cl_log_format format;
    if (cl_log_parse_level(cl_config_str(cfg, "log.level"), &level) == CL_OK)
        cl_log_set_level(level);
    if (cl_log_parse_format(cl_config_str(cfg, "log.format"), &format) == CL_OK)
        cl_log_init("replay", level, format);

    char **args;
    int nargs = cl_config_args(cfg, &args);
    const char *command = nargs > 0 ? args[0] : NULL;
    const char *input = cl_config_str(cfg, "input");
    if (nargs > 1) input = args[1];
    if (!command || (strcmp(command, "write") != 0 && strcmp(command, "backtest") != 0) ||
        nargs > 2 || !input || !input[0]) {
        fprintf(stderr,
                "usage: closedloop-replay write|backtest INPUT.csv [options] (see --help)\n");
        cl_config_free(cfg);
        return 2;
    }
    cl_replay_options ro;
    cl_backtest_options bo;
    if (options_from_config(cfg, &ro, &bo, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-replay: %s\n", err);
        cl_config_free(cfg);
        return 2;
    }
    int64_t started = cl_mono_ms();
    cl_replay *h = NULL;
    rc = cl_replay_load_file(&ro, input, &h, err, sizeof err);
    if (rc != CL_OK) {
        cl_log(CL_LOG_ERROR, "load_failed", "input=%s error=\"%s\"", input, err);
        cl_config_free(cfg);
        return rc == CL_EINVAL || rc == CL_ECONFLICT ? 2 : 1;
    }
    const cl_replay_counts *c = cl_replay_get_counts(h);
    char first[11], end[11];
    cl_format_date(c->start_day, first);
    cl_format_date(c->end_day, end);
    cl_log(CL_LOG_INFO, "export_loaded",
           "input=%s rows=%zu opportunities=%zu bad_rows=%zu closed_won=%zu closed_lost=%zu "
           "open=%zu accounts=%zu owners=%zu start=%s end=%s",
           input, c->rows, c->loaded, c->bad_rows, c->won, c->closed - c->won, c->open, c->accounts,
           c->owners, first, end);
    if (strcmp(command, "write") == 0) {
        const char *out = cl_config_str(cfg, "out");
        rc = cl_replay_write(h, out ? out : "", cl_config_bool(cfg, "force"), err, sizeof err);
        if (rc != CL_OK)
            cl_log(CL_LOG_ERROR, "write_failed", "out=%s error=\"%s\"", out ? out : "", err);
        else
            cl_log(CL_LOG_INFO, "replay_written", "out=%s runs=%zu snapshots=%zu elapsed_ms=%lld",
                   out, c->runs, c->snapshots, (long long)(cl_mono_ms() - started));
    } else {
        cl_backtest_result r;
        rc = cl_backtest_run(h, &bo, &r, err, sizeof err);
        if (rc != CL_OK) {
            cl_log(CL_LOG_ERROR, "backtest_failed", "input=%s error=\"%s\"", input, err);
        } else {
            cl_backtest_print(&r, &bo, stdout);
            if (fflush(stdout) != 0 || ferror(stdout)) rc = CL_EIO;
            cl_log(CL_LOG_INFO, "backtest_done", "examples=%zu periods=%zu elapsed_ms=%lld",
                   r.examples, r.nperiods, (long long)(cl_mono_ms() - started));
            cl_backtest_result_free(&r);
        }
    }
    cl_replay_free(h);
    cl_config_free(cfg);
    return rc == CL_OK ? 0 : rc == CL_EINVAL || rc == CL_ECONFLICT ? 2 : 1;
}
