/*
 * replay.h — closedloop-replay: turn a historical CRM export into the loop's inputs, and
 * backtest the score on it offline.
 *
 * closedloop-gen writes a synthetic history whose answer is known; this module gives
 * the loop a real one. It reads an export of opportunities (one row per opportunity,
 * final state: id, account, owner, product, created and close dates, amount, won/closed
 * flags — column names mapped by configuration, since every CRM export differs) and
 * writes the SAME file layout closedloop-gen writes, so one loop driver runs on either:
 *
 *   OUT/runs/run-YYYY-MM-DD.csv            weekly scoring runs (snapshot input format)
 *   OUT/outcomes/closed_opportunities.csv  Salesforce report export of the closed deals
 *   OUT/outcomes/opportunities.jsonl       the same as queryAll records (+ open at end)
 *   OUT/ids.csv                            source id/name -> Salesforce-style id
 *   OUT/replay.json                        options and counts (written last)
 *
 * The export has no scores, so the six account components are recomputed for every
 * open opportunity at every weekly snapshot day from THAT ACCOUNT'S HISTORY BEFORE THE
 * DAY ONLY: an outcome is known at day d when its close day is < d (snapshots are taken
 * at 06:00Z, record changes happen later in the day). No outcome closed on or after d
 * can reach a snapshot taken on d; tests/unit/test_replay.c proves it by changing future
 * outcomes. docs/backtest.md gives every formula.
 *
 * The backtest (cl_backtest_run) replays the history period by period (month or
 * quarter): weights are fitted (common/fit.h, anchored at the seed weights) on the
 * outcomes closed before the period, each opportunity represented by its latest
 * snapshot at least `horizon_days` before its close, and evaluated on the period's
 * closed opportunities against the seed weights. It also measures learned factors
 * (point-in-time win rates of owner, segment, lead source and product, and the amount
 * percentile, all from outcomes closed before the snapshot) with the refit's own
 * shuffled-label discovery rule.
 *
 * Ids: the outcomes worker accepts only 15/18-character Salesforce ids, so a source id
 * that is not one is replaced by a deterministic 18-character id ("006" opportunity,
 * "001" account, "005" owner) hashed from the source text; ids.csv maps them back.
 *
 * A loaded history is immutable except for an internal scratch buffer used by
 * cl_replay_components: a cl_replay is not safe to share between threads.
 */
#ifndef CL_TOOLS_REPLAY_H
#define CL_TOOLS_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fit.h"

#define CL_REPLAY_COMPONENTS 6
#define CL_REPLAY_FACTORS 5
#define CL_REPLAY_MAX_OPPORTUNITIES 10000000
/* A field longer than this (names, categories) is a bad row. */
#define CL_REPLAY_MAX_TEXT 128

/* The columns of the export that replay understands, in this order everywhere. */
typedef enum {
    CL_REPLAY_COL_ID = 0,
    CL_REPLAY_COL_ACCOUNT,
    CL_REPLAY_COL_OWNER,
    CL_REPLAY_COL_PRODUCT,
    CL_REPLAY_COL_STAGE,
    CL_REPLAY_COL_CREATED,
    CL_REPLAY_COL_CLOSE,
    CL_REPLAY_COL_AMOUNT,
    CL_REPLAY_COL_WON,
    CL_REPLAY_COL_CLOSED,
    CL_REPLAY_COL_SEGMENT,
    CL_REPLAY_COL_REGION,
    CL_REPLAY_COL_LEAD_SOURCE,
    CL_REPLAY_COL_TYPE,
    CL_REPLAY_COL_COUNT
} cl_replay_column;

/* Configuration suffixes ("id" -> replay.column.id) and the defaults, which match the
 * olga-lab1 opportunities export (docs/backtest.md). A NULL or empty name means the
 * export has no such column. id, account, created, close and won are required. */
extern const char *const cl_replay_column_keys[CL_REPLAY_COL_COUNT];
extern const char *const cl_replay_column_defaults[CL_REPLAY_COL_COUNT];

/* Component order everywhere (matches the snapshot CSV header). */
extern const char *const cl_replay_component_names[CL_REPLAY_COMPONENTS];
extern const double cl_replay_seed_weights[CL_REPLAY_COMPONENTS];
extern const char *const cl_replay_factor_names[CL_REPLAY_FACTORS];

typedef enum { CL_REPLAY_BAD_ROWS_FAIL = 0, CL_REPLAY_BAD_ROWS_SKIP } cl_replay_bad_rows;

typedef struct {
    const char *columns[CL_REPLAY_COL_COUNT]; /* header names (not copied) */
    cl_replay_bad_rows bad_rows;
    int interval_days;             /* days between snapshot runs (7) */
    int32_t start_day;             /* first snapshot day; INT32_MIN: first created date */
    int32_t end_day;               /* extraction day (exclusive); INT32_MIN: day after the last
                                      close of a closed opportunity */
    char currency[4];              /* ISO 4217 code written with every amount */
    double win_rate_smoothing;     /* pseudo-outcomes at the global rate (5) */
    double recency_half_life_days; /* 180 */
    int product_mix_cap;           /* distinct products for a full product_mix score (4) */
    size_t max_input_bytes;        /* refuse larger exports (1 GiB) */
} cl_replay_options;

void cl_replay_options_init(cl_replay_options *o);

typedef struct {
    size_t rows;     /* data rows read */
    size_t loaded;   /* opportunities kept */
    size_t bad_rows; /* rejected (skip policy) */
    size_t closed, won, open;
    size_t accounts, owners;
    int32_t first_created, last_close, start_day, end_day;
    size_t runs, snapshots; /* filled by cl_replay_write */
} cl_replay_counts;

typedef struct cl_replay cl_replay;

/* Load an export. `name` is used in messages ("opportunities.csv line 12, column
 * close_date: ..."). Under the fail policy the first bad row fails the load; under skip
 * it is counted, logged (the first few) and left out. Fails on a missing required
 * column, duplicate ids, or an empty result. */
int cl_replay_load_text(const cl_replay_options *o, const char *name, const char *data, size_t len,
                        cl_replay **out, char *err, size_t errlen);
int cl_replay_load_file(const cl_replay_options *o, const char *path, cl_replay **out, char *err,
                        size_t errlen);
void cl_replay_free(cl_replay *h);
const cl_replay_counts *cl_replay_get_counts(const cl_replay *h);

size_t cl_replay_size(const cl_replay *h);
/* Index of the opportunity with this source id; CL_ENOTFOUND if none. */
int cl_replay_find(const cl_replay *h, const char *source_id, size_t *index);

typedef struct {
    const char *source_id, *id; /* id: the Salesforce-style id written to the files */
    const char *account, *owner, *product, *stage, *segment, *region, *lead_source, *type;
    int32_t created_day, close_day;
    int closed, won, has_amount;
    double amount;
} cl_replay_opportunity;

int cl_replay_opportunity_at(const cl_replay *h, size_t index, cl_replay_opportunity *out);

/* Snapshot days: start_day + k*interval_days < end_day. */
size_t cl_replay_run_count(const cl_replay *h);
int32_t cl_replay_run_day(const cl_replay *h, size_t run);
/* 1 when the opportunity is open at a snapshot taken on `day` (created < day < close,
 * or created < day for one still open at the end), 0 otherwise. */
int cl_replay_open_at(const cl_replay *h, size_t index, int32_t day);

/* The six components (0..100, rounded to 0.01) of the opportunity as of a snapshot on
 * `day`, from its account's outcomes closed before `day` (and the global win rate of
 * all outcomes closed before `day`). Deterministic. */
void cl_replay_components(cl_replay *h, size_t index, int32_t day,
                          double out[CL_REPLAY_COMPONENTS]);
/* Seed-model score of components, rounded to 0.01 (what the run files carry). */
double cl_replay_seed_score(const double c[CL_REPLAY_COMPONENTS]);

/* Write every file under out_dir (created if missing). Refuses to overwrite an existing
 * replay (out_dir/replay.json) unless force, which first removes stale run files. Each
 * file is written under a hidden temporary name and renamed into place. */
int cl_replay_write(cl_replay *h, const char *out_dir, int force, char *err, size_t errlen);

/* ---- offline backtest ------------------------------------------------------------ */

typedef enum { CL_BACKTEST_MONTH = 0, CL_BACKTEST_QUARTER } cl_backtest_period;

typedef struct {
    cl_backtest_period period;
    int horizon_days;      /* example = latest snapshot at least this long before close (7) */
    double high_threshold; /* HIGH band (70) */
    double top_share;      /* also evaluate the top share of each period by score (0.3) */
    double l2_per_example; /* λ = this · training examples (1.0) */
    double max_change;     /* cap on |w - seed| per weight; 0: none */
    size_t min_train_won, min_train_lost; /* below: the period is not fitted (30 each) */
    int factors;                          /* also fit and measure the learned factors (1) */
    size_t folds;        /* rolling-origin folds for whole-history validation (5) */
    size_t permutations; /* shuffled-label repetitions of factor discovery (19) */
    uint64_t seed;       /* shuffles */
} cl_backtest_options;

void cl_backtest_options_init(cl_backtest_options *o);

typedef struct {
    double auc; /* NAN when the set lacks won or lost examples */
    double precision_high, recall_high;
    double precision_top, recall_top;
    double share_high; /* share of examples scored HIGH */
} cl_backtest_eval;

typedef enum {
    CL_BACKTEST_FITTED = 0,
    CL_BACKTEST_TOO_FEW,       /* training lacked min_train_won / min_train_lost */
    CL_BACKTEST_NO_SIGNAL,     /* no component ranks winners higher (fit: CL_ECONFLICT) */
    CL_BACKTEST_SOLVER_FAILED, /* cl_fit did not converge (CL_ERR); logged */
} cl_backtest_fit_state;

typedef struct {
    int32_t start_day, end_day; /* close days [start, end) */
    size_t n_train, train_won, n_test, test_won;
    cl_backtest_fit_state learned_state, factors_state;
    double learned_l2_factor, factors_l2_factor; /* λ multiplier the fit needed (1 = as set) */
    double weights[CL_REPLAY_COMPONENTS];        /* learned (seed when not fitted) */
    double factor_weights[CL_REPLAY_COMPONENTS + CL_REPLAY_FACTORS];
    cl_backtest_eval seed, learned, factors;
} cl_backtest_period_result;

typedef struct {
    size_t examples; /* closed opportunities with a snapshot at the horizon */
    size_t unscored; /* closed, but no snapshot at least horizon_days before close */
    size_t nperiods;
    cl_backtest_period_result *periods;
    /* All evaluated periods' test examples pooled, each scored by its period's model. */
    size_t pooled_n, pooled_won;
    cl_backtest_eval pooled_seed, pooled_learned, pooled_factors;
    /* AUC of each column alone over every example (components then factors). */
    double single_auc[CL_REPLAY_COMPONENTS + CL_REPLAY_FACTORS];
    /* Rolling-origin validation on the whole history (fit.h): seed weights held fixed
     * (calibration refitted per fold) vs learned six vs six + factors. */
    int cv_ran;
    cl_fold_metrics cv_seed, cv_learned, cv_factors;
    double cv_l2_factor[3];
    char cv_error[CL_ERRLEN];
    /* Factor discovery (fit.h) on the whole history. */
    int discovery_ran;
    cl_factor_evidence evidence[CL_REPLAY_FACTORS];
    double discovery_l2_factor;
    char discovery_error[CL_ERRLEN];
} cl_backtest_result;

int cl_backtest_run(cl_replay *h, const cl_backtest_options *o, cl_backtest_result *r, char *err,
                    size_t errlen);
void cl_backtest_result_free(cl_backtest_result *r);
/* Markdown tables (per period, pooled, single-column AUCs, validation, factors). */
void cl_backtest_print(const cl_backtest_result *r, const cl_backtest_options *o, FILE *out);

#endif
