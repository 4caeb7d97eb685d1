/*
 * score.h — the score of a snapshot under a WeightConfig: the one place where
 * "weights + snapshot -> score, band, probability" is defined.
 *
 * The snapshot worker (shadow scoring), the metrics worker (re-scoring), the refit
 * worker (fitting on the same scale) and any downstream consumer must agree to the
 * last bit, so every rule lives here and nowhere else:
 *
 *   weights     = the config's stage_weights entry whose stage equals snapshot.stage
 *                 exactly, else the config's weights;
 *   component   = a built-in (snapshot.components[...]) or a learned component computed
 *                 from the snapshot's attributes by its cl_component_def (below);
 *   score       = clamp(sum_i weight_i * component_i, 0, 100);
 *   band        = HIGH if score >= bands.high, MEDIUM if score >= bands.medium, else LOW;
 *   probability = 1 / (1 + exp(-(calibration.intercept + calibration.slope * score))).
 *
 * Learned components (cl_component_def), each 0..100:
 *   FEATURE            snapshot.features[source]; missing_value when absent. A value
 *                      outside 0..100 is an error (the export is wrong, not the model).
 *   CATEGORY_WIN_RATE  100 * categories[value].rate, where value is the snapshot's
 *                      categorical attribute `source` (stage, segment, region, product,
 *                      lead_source, type, owner_id, account_id, currency, else
 *                      attributes[source]); 100 * overall_rate when the value is null
 *                      or not in the table (an unseen category is treated as average).
 *   NUMERIC_PERCENTILE x = the snapshot's numeric attribute `source` (amount,
 *                      days_in_stage, days_open = snapshot day - created_date,
 *                      days_to_close = expected_close_date - snapshot day,
 *                      opportunity_score, account_score, a built-in component name,
 *                      else features[source]); with breakpoints b_0..b_{k-1} at
 *                      probabilities j/(k-1): 0 below b_0, 100 above b_{k-1}; when x
 *                      equals one or more breakpoints b_L..b_{L+E-1}, the mid rank
 *                      (L + (E-1)/2)/(k-1); otherwise linear interpolation between the
 *                      enclosing breakpoints. Times 100; 100 minus that if descending.
 *                      missing_value when x is null or absent.
 *
 * The seed model (cl_weight_config_seed) is SPEC §3's: speed_to_close 0.15,
 * largest_deal 0.20, product_mix 0.15, upsell_instances 0.25, win_rate 0.20,
 * recency 0.05; HIGH >= 70, MEDIUM >= 40. Its calibration is a neutral default chosen
 * here, intercept -3 and slope 0.06: a score of 50 maps to 0.5, 0 to 0.047, 100 to
 * 0.953 — monotone and symmetric, until the first refit estimates a real one.
 *
 * Validate a config once, when it arrives (cl_weight_config_from_avro does), not per
 * snapshot: the scoring functions assume a valid config.
 */
#ifndef CL_SCORE_H
#define CL_SCORE_H

#include <stddef.h>

#include "records.h"

#define CL_SEED_MODEL "opportunity_score"
#define CL_SEED_INTERCEPT (-3.0)
#define CL_SEED_SLOPE 0.06
/* Tolerance on "weights sum to 1". */
#define CL_WEIGHT_SUM_TOLERANCE 1e-6

typedef struct {
    double score; /* 0..100 */
    cl_band band;
    double probability; /* 0..1 */
} cl_score_result;

/* Fills the seed model: opportunity_score v1 CHAMPION, created_at as given. */
void cl_weight_config_seed(cl_weight_config *c, int64_t created_at);

/* Checks every rule a config must satisfy before it is scored with or published:
 * model non-empty; version >= 1; parent_version < version; weights (and each stage's)
 * non-empty, finite, >= 0, summing to 1 within CL_WEIGHT_SUM_TOLERANCE, names unique and
 * each a built-in or a defined component; stages unique and non-empty; calibration
 * finite with slope > 0; 0 <= medium <= high <= 100; component definitions well formed
 * (unique names that are not built-ins, non-empty source, rates 0..1, categories
 * strictly ascending, 2..101 non-decreasing breakpoints, missing_value 0..100);
 * validation/comparison statistics in range. The message names the offending field:
 * "WeightConfig.stage_weights[Negotiation].weights: sum is 0.9, must be 1". */
int cl_weight_config_validate(const cl_weight_config *c, char *err, size_t errlen);

/* Sorts every category table by category (strcmp order). Call after building tables
 * by hand; duplicates stay and are reported by cl_weight_config_validate. */
void cl_weight_config_sort_categories(cl_weight_config *c);

/* The weights that apply to a snapshot in `stage` (stage-specific when configured). */
const cl_weight_set *cl_weights_for_stage(const cl_weight_config *c, const char *stage);

/* Definition of a learned component by name, or NULL. */
const cl_component_def *cl_component_def_find(const cl_weight_config *c, const char *name);

/* Value 0..100 of one component (built-in or learned) for the snapshot.
 * CL_ENOTFOUND for a name that is neither; CL_EINVAL for a FEATURE out of 0..100. */
int cl_component_value(const cl_weight_config *c, const cl_snapshot *s, const char *name,
                       double *out, char *err, size_t errlen);

/* The component values a snapshot is scored on, aligned with the weight set that
 * applies to it (*weights_out): values[i] belongs to (*weights_out)->items[i]. This is
 * the refit's design matrix row, on exactly the scale the scorer uses. */
int cl_score_components(const cl_weight_config *c, const cl_snapshot *s,
                        const cl_weight_set **weights_out, double values[CL_MAX_WEIGHTS], char *err,
                        size_t errlen);

/* clamp(sum weight_i * values_i, 0, 100). */
double cl_score_linear(const cl_weight_set *w, const double *values);
cl_band cl_band_of(const cl_band_thresholds *b, double score);
/* Numerically stable logistic of intercept + slope * score. */
double cl_calibrated_probability(const cl_calibration *cal, double score);

/* The learned-component primitives (exposed for the refit worker, which builds them). */
double cl_category_win_rate_value(const cl_component_def *d, const char *category);
double cl_numeric_percentile_value(const cl_component_def *d, cl_opt_double x);

/* Score, band and probability of a snapshot under a (valid) config. */
int cl_score_snapshot(const cl_weight_config *c, const cl_snapshot *s, cl_score_result *out,
                      char *err, size_t errlen);

/* The same, as the cl_score_entry a snapshot carries (model and version filled). */
int cl_score_entry_for(const cl_weight_config *c, const cl_snapshot *s, cl_score_entry *out,
                       char *err, size_t errlen);


/* The snapshot's categorical attribute `source`, as CATEGORY_WIN_RATE components read
 * it: stage, segment, region, product, lead_source, type, owner_id, account_id,
 * currency, else attributes[source]; "" when null or absent. */
const char *cl_snapshot_category(const cl_snapshot *s, const char *source);
/* The snapshot's numeric attribute `source`, as NUMERIC_PERCENTILE components read it:
 * amount, days_in_stage, days_open, days_to_close, opportunity_score, account_score, a
 * built-in component, else features[source]; present = false when null or absent. */
cl_opt_double cl_snapshot_numeric(const cl_snapshot *s, const char *source);

#endif
