/*
 * fit.h — the refit solver: learn score weights (and their calibration) from outcomes.
 *
 * The published model is P(won) = σ(a + b·Σ wᵢ·cᵢ) with wᵢ ≥ 0, Σ wᵢ = 1, b > 0 and
 * components cᵢ on the scorer's own 0..100 scale, so the weights drop straight into the
 * existing score and (a, b) is the calibration from score to probability. Writing
 * βᵢ = b·wᵢ turns this into logistic regression with βᵢ ≥ 0 (then b = Σβᵢ, wᵢ = βᵢ/b):
 * a convex problem, which this module solves exactly (to a Newton-decrement
 * tolerance) with an active-set Newton method and a backtracking line search. The cap
 * on how far a weight may move from the champion's, |βᵢ/Σβ − w⁰ᵢ| ≤ cap, is linear in
 * β, so it is enforced exactly as further constraints of the same solver rather than
 * by a projection afterwards. docs/refit-math.md derives all of this.
 *
 * Objective (sum over examples, weights vᵢ ≥ 0):
 *     Σ vᵢ·[log(1 + e^ηᵢ) − yᵢ·ηᵢ] + (λ/2)·Σⱼ (βⱼ − β⁰ⱼ)²,   ηᵢ = a + Σⱼ βⱼ·xᵢⱼ
 * with the intercept a never penalized. In CL_FIT_UNCONSTRAINED mode β⁰ = 0 and there
 * are no sign constraints: that is exactly scikit-learn's
 * LogisticRegression(C = 1/λ) with sample_weight = v, which is how the solver is
 * cross-checked. In CL_FIT_SIMPLEX mode β⁰ = b⁰·w⁰ (the champion's weights at the
 * champion's slope on this data), so a large λ returns the champion with a refreshed
 * calibration and λ = 0 the maximum-likelihood weights.
 *
 * Data is column-major (component j of example i at x[j·n + i]) because every pass of
 * the solver streams one column at a time; a Newton step costs O(n·k²).
 *
 * The module also holds what refit needs around the solver: recency weights, the
 * effective sample size, stage-specific fits shrunk toward the global one,
 * rolling-origin cross-validation by close date, and factor discovery against a
 * shuffled-label baseline. All are pure functions of their inputs.
 */
#ifndef CL_FIT_H
#define CL_FIT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CL_FIT_MAX_COMPONENTS 64
#define CL_CV_MAX_FOLDS 100

typedef struct {
    size_t n;              /* examples */
    size_t k;              /* components, 1..CL_FIT_MAX_COMPONENTS */
    const double *x;       /* column-major n×k, finite */
    const uint8_t *won;    /* 1 = Closed Won, 0 = Closed Lost */
    const double *weight;  /* per-example weights >= 0, NULL = all 1 */
} cl_fit_data;

typedef enum { CL_FIT_SIMPLEX = 0, CL_FIT_UNCONSTRAINED = 1 } cl_fit_mode;

typedef struct {
    cl_fit_mode mode;
    double l2;                    /* λ >= 0, in the units of the objective above */
    /* Simplex mode only. The champion's weights (k entries, >= 0, summing to 1), the
     * anchor of the L2 penalty and the centre of the cap. NULL: anchor at 0, no cap. */
    const double *prior_weights;
    /* Anchor slope b⁰. 0: estimated by fitting σ(a + b·Σw⁰c) on the same data. */
    double prior_slope;
    /* |wᵢ − w⁰ᵢ| <= max_change for every i; 0 disables (needs prior_weights). */
    double max_change;
    /* Stop when the Newton decrement on the active face is below
     * tolerance·(1 + Σv) and every active constraint's multiplier is non-negative.
     * 0 selects 1e-20: Newton converges quadratically, so the last step costs one
     * iteration and takes the gradient to the rounding floor. */
    double tolerance;
    int max_iterations;           /* 0 selects 200 */
} cl_fit_options;

void cl_fit_options_default(cl_fit_options *o);

typedef struct {
    size_t k;
    double intercept;                        /* a */
    double slope;                            /* b = Σβ (simplex); 0 when unconstrained */
    double weights[CL_FIT_MAX_COMPONENTS];   /* w = β/b (simplex); 0 when unconstrained */
    double coef[CL_FIT_MAX_COMPONENTS];      /* β */
    int at_bound[CL_FIT_MAX_COMPONENTS];     /* -1 at the lower bound (0 or w⁰−cap), +1 at w⁰+cap */
    double anchor_slope;                     /* b⁰ used by the penalty (simplex) */
    double objective;                        /* value of the objective at the solution */
    double log_loss;                         /* weighted mean log loss on the training data */
    double newton_decrement;                 /* at the last iteration */
    /* max |∂F/∂θ + Aᵀμ| / ((1 + Σv)·max|x|) at the solution: the KKT stationarity
     * residual, relative to the gradient's scale. A fit is returned only when it is
     * below 1e-9, every active constraint's multiplier μ is >= 0 and every constraint
     * holds to 1e-9·Σ|β|. */
    double kkt_residual;
    int iterations;
    double weight_sum;                       /* Σv */
    double effective_n;                      /* (Σv)² / Σv² */
    size_t n_won, n_lost;                    /* examples with positive weight */
} cl_fit_result;

/* Fits the model. Fails (CL_EINVAL) on bad input or options, (CL_ECONFLICT) when no
 * component is positively associated with winning so weights do not exist (b = 0),
 * and (CL_ERR) when the solver does not converge; the result is then not usable. */
int cl_fit(const cl_fit_data *d, const cl_fit_options *o, cl_fit_result *r, char *err,
           size_t errlen);

/* Per example: score (Σwc for simplex, Σβc when unconstrained) and probability
 * σ(a + Σβc). Either output may be NULL. */
void cl_fit_predict(const cl_fit_data *d, const cl_fit_result *r, double *score,
                    double *probability);

/* Recency weights: out[i] = base[i] · 0.5^(age/half_life), age = max(0, reference_day −
 * close_day[i]) in days. base may be NULL (1). half_life_days > 0. */
int cl_fit_recency_weights(const int32_t *close_day, const double *base, size_t n,
                           int32_t reference_day, double half_life_days, double *out,
                           char *err, size_t errlen);
/* (Σw)² / Σw²; n when w is NULL, 0 when all weights are 0. */
double cl_fit_effective_n(const double *w, size_t n);

/* Stage-specific fits: for each stage s (stage[i] < nstages) with at least min_won won
 * and min_lost lost examples, a simplex fit on that stage's examples anchored at the
 * global fit (prior = global weights, prior slope = global slope, λ = stage_l2, cap
 * from o->max_change around the global weights). fitted[s] says which stages got their
 * own weights; the others get a copy of `global`. */
int cl_fit_stages(const cl_fit_data *d, const uint32_t *stage, size_t nstages,
                  const cl_fit_options *o, const cl_fit_result *global, double stage_l2,
                  size_t min_won, size_t min_lost, cl_fit_result *out, int *fitted, char *err,
                  size_t errlen);

/* --- rolling-origin cross-validation -------------------------------------------- */

typedef struct {
    size_t folds;            /* test windows, 1..CL_CV_MAX_FOLDS; default 5 */
    size_t min_train_won;    /* a fold needs this many won and lost in training (default 20) */
    size_t min_train_lost;
    double half_life_days;   /* recency weighting relative to each fold's test start; 0 off */
    double high_threshold;   /* score >= this is HIGH (default 70) */
    size_t ece_bins;         /* default 10 */
} cl_cv_options;

void cl_cv_options_default(cl_cv_options *o);

/* Test window [test_start, test_end) in close days. The training part of the fold is
 * every example with close_day < test_start: a fold never trains on an outcome closed
 * on or after the day its test window starts. */
typedef struct {
    int32_t test_start, test_end;
} cl_cv_window;

/* Splits the close-date range into folds+1 blocks of about equal example counts, cut
 * only between distinct days (ties never straddle a boundary); block 0 only trains.
 * Writes up to `folds` windows, fewer when the dates are too concentrated. */
int cl_cv_windows(const int32_t *close_day, size_t n, size_t folds, cl_cv_window *out,
                  size_t *nout, char *err, size_t errlen);

typedef struct {
    cl_cv_window window;
    size_t n_train, n_test;
    double auc, brier, log_loss, ece;
    double precision_high;   /* precision of score >= high_threshold; 0 if none */
    double n_high;           /* (weighted) test examples scored HIGH */
    int evaluated;           /* 0 when the fold lacked training or test outcomes */
} cl_fold_metrics;

/* Evaluates by rolling origin: per window, fit on the training part, predict the test
 * part. With fixed_weights (k entries) the score's weights are held fixed and only its
 * calibration (a, b) is fitted per fold — how the champion is measured on the same
 * folds. Test metrics use d->weight (not the recency weights). out has room for
 * cv->folds entries; *nout receives the number of windows. */
int cl_fit_cross_validate(const cl_fit_data *d, const int32_t *close_day,
                          const cl_cv_options *cv, const cl_fit_options *fit,
                          const double *fixed_weights, cl_fold_metrics *out, size_t *nout,
                          char *err, size_t errlen);

/* Mean of the evaluated folds' metrics (window fields zero, evaluated = count). */
cl_fold_metrics cl_fit_cv_mean(const cl_fold_metrics *folds, size_t nfolds);

/* --- factor discovery ------------------------------------------------------------ */

typedef struct {
    size_t permutations;     /* shuffled-label repetitions (default 19) */
    uint64_t seed;           /* for the shuffles, so a refit is reproducible */
} cl_discovery_options;

typedef struct {
    size_t column;           /* the candidate's column in the design matrix */
    double gain_auc;         /* mean validated AUC with − without */
    double gain_log_loss;    /* mean validated log loss without − with (positive = better) */
    double null_gain_auc;    /* largest gain_auc seen with shuffled labels */
    double null_gain_log_loss;
    int adopt;               /* both gains positive and above their shuffled-label maxima */
} cl_factor_evidence;

/* The first k_base columns of d are the model's components, the rest candidates. Each
 * candidate is judged on its own: rolling-origin validation of base + candidate against
 * base alone, and the same comparison repeated on `permutations` label shuffles. A
 * candidate is adopted only when its real gains beat every shuffled gain (a permutation
 * test at level 1/(permutations+1)). Fits use `fit` in its mode and λ, without prior or
 * cap (the candidate has no champion weight). out has k − k_base entries. */
int cl_fit_discover_factors(const cl_fit_data *d, size_t k_base, const int32_t *close_day,
                            const cl_cv_options *cv, const cl_fit_options *fit,
                            const cl_discovery_options *disc, cl_factor_evidence *out,
                            char *err, size_t errlen);

#endif
