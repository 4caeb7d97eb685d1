/*
 * refit.h — one refit: from the training rows and the current champion to a
 * CHALLENGER or a REJECTED WeightConfig (or to nothing, with the reason), and the
 * champion/challenger A/B decision. Pure functions of their inputs: no Kafka, no LMDB.
 *
 * A refit, in order (docs/refit.md tells why each step is there):
 *   1. selection: which snapshots of each opportunity are examples (the horizon policy;
 *      default every weekly snapshot, each opportunity one vote);
 *   2. refusal: fewer won or lost opportunities than the configured minimum -> no fit,
 *      nothing published, the reason says how many there are and how many are needed;
 *   3. columns: the six built-ins, the champion's learned components rebuilt from the
 *      training set (point-in-time, factors.h), and candidate factors;
 *   4. discovery (optional): each candidate judged by rolling-origin validation against
 *      the same procedure on shuffled labels (common/fit.h); adopted ones join. The
 *      evidence for every candidate, adopted or not, goes into the config's
 *      `discovery` list (and res->factors) for the reports;
 *   5. fit: σ(a + b·Σwc) with L2 toward the champion's weights, recency half-life and
 *      the per-refit cap (common/fit.h). CL_ECONFLICT (no weights exist) and
 *      non-convergence publish nothing;
 *   6. stage-specific weights where a stage has enough outcomes, shrunk to the global;
 *   7. validation: rolling-origin cross-validation of the refitted procedure and of the
 *      champion's fixed weights (calibration refitted per fold) on the same windows;
 *      CHALLENGER only if AUC improves by at least min_auc_gain, log loss improves and
 *      precision at HIGH (pooled over the folds) has not dropped significantly (the test
 *      the trial uses, below); otherwise REJECTED with the numbers in `reason`;
 *   8. guard rails: every number finite, weights summing to 1 within 1e-9, the config
 *      valid under score.h's rules, or nothing is published.
 *
 * The A/B decision (cl_refit_evaluate_trial) uses the shadow scores each snapshot
 * carries for the champion and the challenger: per opportunity, the latest snapshot
 * taken at least promotion_horizon_days before its close that carries both scores.
 * When those paired outcomes span window_days of close dates and number at least
 * min_paired, the challenger is promoted if DeLong's paired test says its AUC is
 * higher with p < p_value and its precision at HIGH has not dropped significantly (a
 * one-sided two-proportion test at p_value: a raw comparison over a few dozen HIGH-scored
 * outcomes would be decided by noise); it is rejected when
 * it is significantly worse at any point after min_paired, or when the trial has run
 * max_trial_days without a verdict.
 */
#ifndef CL_REFIT_REFIT_H
#define CL_REFIT_REFIT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "factors.h"
#include "fit.h"
#include "records.h"
#include "stats.h"
#include "training_set.h"

#define CL_REFIT_MAX_CANDIDATES 16

typedef struct {
    /* selection */
    cl_horizon_policy horizon;
    int32_t horizon_days;
    /* refusal */
    size_t min_won, min_lost;
    /* fit */
    double l2_per_example;    /* λ = l2_per_example · n */
    double half_life_days;    /* 0: no recency weighting */
    double max_weight_change; /* 0: uncapped */
    int stage_weights;
    size_t stage_min_won, stage_min_lost;
    double stage_l2_per_example;
    /* validation */
    size_t folds;
    size_t min_train_won, min_train_lost;
    double min_auc_gain;
    /* discovery */
    int discover;
    const char *category_candidates[CL_REFIT_MAX_CANDIDATES];
    size_t n_category_candidates;
    const char *numeric_candidates[CL_REFIT_MAX_CANDIDATES];
    size_t n_numeric_candidates;
    cl_factor_options factor;
    size_t permutations;
    uint64_t seed;
    /* promotion */
    int32_t window_days;
    size_t min_paired;
    double p_value;
    int32_t max_trial_days;
    int32_t promotion_horizon_days;
} cl_refit_options;

void cl_refit_options_default(cl_refit_options *o);

/* The refit.* configuration keys, and reading them (string lists are split on commas
 * into `storage`, which must outlive o). */
extern const cl_option cl_refit_options_table[];
typedef struct {
    char text[2][1024];
} cl_refit_option_storage;
int cl_refit_options_from(cl_refit_options *o, const cl_config *cfg,
                          cl_refit_option_storage *storage, char *err, size_t errlen);

/* The attribute sources the rows must carry for a refit from this champion:
 * candidates plus the sources of the champion's learned components. */
int cl_refit_rows_spec(const cl_refit_options *o, const cl_weight_config *champion,
                       const cl_weight_config *challenger, cl_rows_spec *spec,
                       const char *cat_storage[CL_ROWS_MAX_SOURCES],
                       const char *num_storage[CL_ROWS_MAX_SOURCES], char *err, size_t errlen);

typedef enum {
    CL_REFIT_REFUSED = 0, /* not enough won/lost outcomes: publish nothing */
    CL_REFIT_NO_MODEL,    /* no weights exist, no convergence, or nothing to validate on */
    CL_REFIT_CHALLENGER,
    CL_REFIT_REJECTED,
} cl_refit_outcome;

const char *cl_refit_outcome_name(cl_refit_outcome o);

/* One candidate factor of step 4, as published in the config's `discovery` list. */
typedef struct {
    char name[CL_NAME_MAX + 1];
    char source[CL_NAME_MAX + 1];
    cl_component_kind kind;
    int evaluated; /* discovery ran; the gains below are 0 otherwise */
    double gain_auc, gain_log_loss, null_gain_auc, null_gain_log_loss;
    int beats_shuffled; /* both gains above their shuffled-label maxima */
    int adopted;        /* beats_shuffled and within the component limit: in the config */
    size_t n_with_value; /* selected examples whose attribute is not null */
    size_t n_categories; /* CATEGORY_WIN_RATE: categories with a rate of their own */
} cl_refit_factor_report;

typedef struct {
    cl_refit_outcome outcome;
    char reason[CL_REASON_MAX + 1];
    cl_weight_config *config; /* heap; set for CHALLENGER and REJECTED */
    size_t n_examples, n_opps;
    size_t n_won, n_lost; /* opportunities */
    /* Means over the folds evaluated by both; precision_high is pooled over those folds
     * (won among HIGH / HIGH) and n_high is the total. */
    cl_fold_metrics challenger_cv, champion_cv;
    size_t folds_evaluated;
    cl_refit_factor_report factors[CL_REFIT_MAX_CANDIDATES];
    size_t n_factors;
} cl_refit_result;

void cl_refit_result_free(cl_refit_result *r);

/* Runs steps 1-8. version: the version the new config gets (next monotonic);
 * now_ms: its created_at. Returns CL_OK with res->outcome set, or an error for a
 * failure of the machinery itself (memory, invalid options). */
int cl_refit_run(const cl_training_rows *rows, const cl_weight_config *champion,
                 const cl_refit_options *o, int64_t version, int64_t now_ms, cl_refit_result *res,
                 char *err, size_t errlen);

/* Which rows are examples under the horizon policy, and their base weights
 * (1/snapshots of the opportunity for ALL_SNAPSHOTS, else 1). */
int cl_refit_select(const cl_training_rows *rows, cl_horizon_policy policy, int32_t horizon_days,
                    uint8_t *use, double *base_weight, char *err, size_t errlen);

/* ---- A/B trial ------------------------------------------------------------------ */

typedef enum { CL_TRIAL_WAIT = 0, CL_TRIAL_PROMOTE, CL_TRIAL_REJECT } cl_trial_decision;

const char *cl_trial_decision_name(cl_trial_decision d);

typedef struct {
    cl_trial_decision decision;
    size_t n_paired, n_won, n_lost;
    int32_t span_days;
    int have_delong;
    cl_delong_result delong;                         /* a = champion, b = challenger */
    double precision_champion, precision_challenger; /* at HIGH, 0 when none */
    double precision_drop_p; /* one-sided p of "challenger's precision is lower"; 1 if not */
    char reason[CL_REASON_MAX + 1];
} cl_trial_result;

/* rows->tracked[0] must be the champion, tracked[1] the challenger. */
int cl_refit_evaluate_trial(const cl_training_rows *rows, const cl_refit_options *o,
                            cl_trial_result *out, char *err, size_t errlen);

#endif
