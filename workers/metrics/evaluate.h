/*
 * evaluate.h — how good were the scores: the evaluation set and every figure computed
 * from it (SPEC §4.4).
 *
 * An evaluation starts from the keyed state (aggregate.h) and builds, in memory, one
 * list of evaluated items per model version: for every opportunity with a known
 * outcome, the snapshot(s) the horizon policy picks among those that carry a score of
 * that version —
 *   LATEST_BEFORE_HORIZON  the latest snapshot taken at least horizon_days before the
 *                          close (the default, 7 days): what is measured is a forecast,
 *                          not a score computed while the deal was being decided;
 *                          opportunities with no such snapshot are left out (counted);
 *   FIRST_SNAPSHOT         the opportunity's first snapshot;
 *   ALL_SNAPSHOTS          every snapshot (an opportunity weighs as many times as it
 *                          was scored).
 * Each item carries the score entry of that version (score, band, probability), the
 * label, the close date, the categorical attributes (interned) and the six components.
 * Everything else is a pure function of that set, so two evaluations of the same state
 * give the same figures, whatever order the records arrived in or how often.
 *
 * Windows are over close dates: cumulative (everything), monthly (calendar months of
 * the close date, UTC, the most recent `months` that have data) and rolling 90 days.
 * The rolling window ends at the day after the latest close date in the state — data
 * time, not wall-clock time, so a replay computes the same window.
 *
 * Per version and window (cl_eval_version_metrics): confusion matrix at the version's
 * HIGH threshold (score >= HIGH means "predicted to win"), precision, recall, F1, exact
 * AUC from a 0.01-resolution score histogram (the scorer rounds to 0.01, so counting
 * bins is exact), Brier score and log loss of the calibrated probability, ECE with its
 * equal-width reliability bins, precision/recall at thresholds 0..100, per band (the
 * band the snapshot carried) and per stage / segment / owner (the largest
 * CL_MAX_GROUPS groups by size). All statistics come from common/stats.h.
 * Champion vs challenger (cl_eval_compare) pairs the two versions' items that come
 * from the same snapshot, then runs DeLong's test on the paired AUCs and McNemar's
 * test on "right at HIGH" (predicted won == won).
 */
#ifndef CL_METRICS_EVALUATE_H
#define CL_METRICS_EVALUATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aggregate.h"
#include "error.h"
#include "records.h"
#include "stats.h"
#include "store.h"

#define CL_EVAL_DAY_MS 86400000LL
/* Rows of one opportunity considered by an evaluation; more are dropped (counted). */
#define CL_EVAL_ROWS_PER_OPPORTUNITY_MAX 4096
#define CL_EVAL_MODELS_MAX 64

/* Interned categorical attributes of an item. */
enum {
    CL_EVAL_STAGE = 0,
    CL_EVAL_SEGMENT,
    CL_EVAL_OWNER,
    CL_EVAL_REGION,
    CL_EVAL_PRODUCT,
    CL_EVAL_LEAD_SOURCE,
    CL_EVAL_TYPE,
    CL_EVAL_ATTRS
};
/* "stage", "segment", "owner", ... */
extern const char *const cl_eval_attr_names[CL_EVAL_ATTRS];

/* What the worker knows of a model version from the weights topic. */
typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;
    cl_model_status status;
    cl_band_thresholds bands;
    cl_weight_set weights;
    int64_t created_at;
} cl_eval_model;

typedef struct {
    cl_horizon_policy horizon;
    int32_t horizon_days;    /* LATEST_BEFORE_HORIZON: minimum days before close */
    size_t calibration_bins; /* 1..CL_MAX_CALIBRATION_BINS */
    double threshold_step;   /* precision/recall every this many score points (1..100) */
    size_t months;           /* monthly windows kept (most recent) */
    cl_band_thresholds default_bands; /* versions whose config is unknown */
    const cl_eval_model *models; /* known configs (may be NULL) */
    size_t nmodels;
} cl_eval_options;

/* 7-day horizon, 10 bins, step 5, 12 months, bands 70/40, no known models. */
void cl_eval_options_defaults(cl_eval_options *o);

typedef struct {
    uint32_t opportunity;  /* string id (cl_eval_string) of the opportunity id */
    uint32_t snapshot;     /* string id of the snapshot id */
    uint32_t row;          /* index of the snapshot row in scan order (pairs versions) */
    int32_t close_date;    /* days */
    int32_t days_before_close;
    uint8_t won;
    uint8_t band;          /* cl_band carried by the snapshot */
    uint8_t has_amount;
    uint32_t attr[CL_EVAL_ATTRS]; /* string ids; 0 is "" (null) */
    double amount;
    double score, probability;
    double components[CL_NUM_BUILTINS];
} cl_eval_item;

typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;
    const cl_eval_model *info; /* NULL: not seen on the weights topic */
    cl_band_thresholds bands;  /* from info, else the defaults */
    cl_eval_item *items;
    size_t n, cap;
} cl_eval_version;

typedef struct cl_eval_set cl_eval_set;

struct cl_eval_set {
    cl_eval_options opts;
    cl_eval_version *versions; /* sorted by model, then version */
    size_t nversions;
    uint64_t rows;                 /* rows in the state */
    uint64_t opportunities;        /* opportunities with at least one row */
    uint64_t excluded_by_horizon;  /* opportunities with no snapshot early enough */
    uint64_t rows_dropped;         /* past CL_EVAL_ROWS_PER_OPPORTUNITY_MAX */
    int32_t min_close, max_close;  /* over evaluated items; min > max when empty */
    void *internal;                /* string table and scratch */
};

/* Builds the set from the state inside `t` (a read transaction). */
int cl_eval_set_build(cl_store_txn *t, const cl_eval_options *o, cl_eval_set **out, char *err,
                      size_t errlen);
/* The same from rows in memory (tests, benchmarks); rows must be grouped by opportunity. */
int cl_eval_set_from_rows(const cl_metrics_row *rows, size_t n, const cl_eval_options *o,
                          cl_eval_set **out, char *err, size_t errlen);
void cl_eval_set_free(cl_eval_set *s);

/* Interned string by id ("" for 0). */
const char *cl_eval_string(const cl_eval_set *s, uint32_t id);
/* Index of (model, version) or -1. */
int cl_eval_find_version(const cl_eval_set *s, const char *model, int64_t version);

/* Windows for the set: cumulative, then monthly (oldest first), then rolling 90 days.
 * Returns how many were written (at most max). */
size_t cl_eval_windows(const cl_eval_set *s, cl_metrics_window *out, size_t max);
int cl_eval_in_window(const cl_eval_item *it, const cl_metrics_window *w);
/* "2025-03" / "cumulative" / "rolling 90 days to 2025-06-30" */
void cl_eval_window_label(const cl_metrics_window *w, char *out, size_t len);

/* Every figure of version vi in window w. CL_ENOTFOUND when the window holds no item. */
int cl_eval_version_metrics(const cl_eval_set *s, size_t vi, const cl_metrics_window *w,
                            int64_t generated_at, cl_model_metrics *out, char *err,
                            size_t errlen);

/* Precision and recall among the top `share` (0..1] of items by score (ties broken by
 * snapshot order, so the cut is deterministic). */
typedef struct {
    double share;
    int64_t k, won_in_top, won_total;
    double precision, recall;
} cl_eval_top_k;
int cl_eval_top_share(const cl_eval_set *s, size_t vi, const cl_metrics_window *w, double share,
                      cl_eval_top_k *out, char *err, size_t errlen);

typedef struct {
    size_t a, b; /* version indexes: a = champion, b = challenger */
    size_t n_paired, n_won, n_lost;
    bool has_delong;
    cl_delong_result delong;
    cl_mcnemar_result mcnemar;
    double precision_high_a, precision_high_b; /* on the paired items */
    int64_t high_a, high_b;                    /* predicted won at each version's HIGH */
} cl_eval_comparison;

/* CL_ENOTFOUND when no item is paired. DeLong needs two won and two lost pairs;
 * has_delong is false otherwise. */
int cl_eval_compare(const cl_eval_set *s, size_t a, size_t b, const cl_metrics_window *w,
                    cl_eval_comparison *out, char *err, size_t errlen);

/* The version the analysis is about for `model`: the CHAMPION when known, else the
 * version with the most items (ties: the lower version). -1 when the model has none. */
int cl_eval_primary_version(const cl_eval_set *s, const char *model);

/* Civil month of a day count: year*12 + (month-1). */
int64_t cl_eval_month_of_day(int32_t day);
/* First day of a month index as days since the epoch. */
int32_t cl_eval_day_of_month(int64_t month);

#endif
