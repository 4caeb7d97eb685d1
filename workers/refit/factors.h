/*
 * factors.h — learned components (issue 10): the columns a refit fits on and the
 * definitions a WeightConfig publishes for them.
 *
 * Two kinds, both on the scorer's 0..100 scale so that they sit beside the six
 * built-in components under the same simplex weights:
 *
 *   CATEGORY_WIN_RATE of a categorical attribute (owner_id, lead_source, segment,
 *   stage, ...). For fitting and validation each row gets the *point-in-time* rate:
 *   computed only from outcomes closed strictly before the day its snapshot was taken,
 *   smoothed toward the overall rate of those same outcomes,
 *       rate = (won_c + m·p) / (n_c + m),
 *   and p itself when the category has fewer than min_support earlier outcomes (or
 *   0.5 before any outcome exists). So a row never sees its own outcome or any later
 *   one: a category that identifies its opportunity (an id) carries no label into the
 *   fit. Each opportunity counts once, with the category of its latest snapshot. The
 *   published table is the same rule as of training time (every outcome in the set):
 *   categories with at least min_support outcomes, the CL_MAX_CATEGORIES most frequent.
 *
 *   NUMERIC_PERCENTILE of a numeric attribute (amount, days_open, ...): its percentile
 *   among the training rows (101 breakpoints, score.h's interpolation), a monotone
 *   transform that uses no labels. Its direction (descending when small values win)
 *   is decided only on rows closed before `direction_before` — the part of the data no
 *   validation fold ever tests on — so choosing it cannot flatter validation.
 *
 * Column values are computed with score.h's own primitives (cl_category_win_rate_value
 * is not used for point-in-time values, which have no frozen table, but the published
 * table is read back through it by every consumer).
 */
#ifndef CL_REFIT_FACTORS_H
#define CL_REFIT_FACTORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "records.h"
#include "training_set.h"

typedef struct {
    double smoothing;   /* m >= 0 (default 20) */
    size_t min_support; /* outcomes a category needs to get its own rate (default 10) */
} cl_factor_options;

void cl_factor_options_default(cl_factor_options *o);

/* Point-in-time win rate (times 100) of categorical source `j` of rows for every row
 * into col[0..rows->n), and the training-time table into def (name, kind, source,
 * smoothing, overall_rate, categories — not yet sorted: the config is sorted once,
 * before publishing). */
int cl_factor_category(const cl_training_rows *rows, size_t j, const char *name,
                       const cl_factor_options *o, double *col, cl_component_def *def, char *err,
                       size_t errlen);

/* Percentile (0..100) of numeric source `j` for every row into col. Breakpoints come
 * from the rows with use[i] != 0 (NULL: all). direction: +1 ascending, -1 descending,
 * 0 decide from rows closed before direction_before (ascending when undecidable).
 * CL_ENOTFOUND when fewer than two rows have a value (no transform exists). */
int cl_factor_percentile(const cl_training_rows *rows, size_t j, const char *name,
                         const uint8_t *use, int direction, int32_t direction_before, double *col,
                         cl_component_def *def, char *err, size_t errlen);

/* FEATURE: features[source] as is (0..100), missing_value when absent or out of range. */
void cl_factor_feature(const cl_training_rows *rows, size_t j, double missing_value, double *col);

/* True for sources that measure time since creation or until the expected close
 * (days_open, days_in_stage, days_to_close): their validation needs every weekly
 * snapshot (see docs/refit.md, "Selection bias"). */
int cl_factor_is_time_based(const char *source);

#endif
