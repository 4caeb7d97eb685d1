/*
 * stats.h — how good a score is: discrimination, calibration and paired comparisons.
 *
 * Every metric the metrics worker publishes and every test the refit worker uses to
 * decide a promotion comes from here, so that "AUC" means one thing in the whole
 * system. Inputs are plain arrays: a score or probability per example, a 0/1 label
 * (1 = Closed Won) and optional non-negative example weights (NULL = every example
 * counts once). Weights exist because refit and the factor-discovery rule weight
 * examples (recency, one opportunity = one vote across its weekly snapshots).
 *
 * Conventions, chosen to match scikit-learn so the interop tests can compare bit for
 * bit where the definitions agree:
 *   - AUC is the Mann-Whitney probability P(score_won > score_lost) with ties counted
 *     half. Arrays are sorted (O(n log n)), so it is exact for any score. The
 *     histogram form (cl_score_hist) keeps integer counts per score bin so that the
 *     metrics worker can add and *subtract* (retractions) without drift; it is exact
 *     when every score is a multiple of the bin resolution (the scorer rounds scores
 *     to 0.01, and 0..100 at 0.01 is 10,001 bins), otherwise scores sharing a bin
 *     count as ties.
 *   - Log loss clips probabilities to [ε, 1 - ε] with ε = DBL_EPSILON (scikit-learn
 *     >= 1.5 does the same for float64 input).
 *   - ECE uses equal-width probability bins; a probability exactly on an inner edge
 *     belongs to the upper bin (numpy.searchsorted(side="right"), as
 *     sklearn.calibration.calibration_curve does).
 *   - Undefined ratios (precision with no predicted positives, ...) are 0, like
 *     scikit-learn's zero_division=0, so no NaN ever reaches a published record.
 *   - p-values use erfc, never 1 - cdf, so small p-values keep their digits.
 *
 * Functions that can meet degenerate input (no won or no lost example, mismatched
 * sizes, negative weights, NaN scores) return CL_EINVAL with a message; pure numeric
 * helpers return values.
 */
#ifndef CL_STATS_H
#define CL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* --- distributions ------------------------------------------------------------- */

/* Standard normal CDF Φ(x) and upper tail 1 - Φ(x), both accurate in the tails. */
double cl_normal_cdf(double x);
double cl_normal_sf(double x);
/* Two-sided p-value of a standard normal statistic: P(|Z| >= |z|). */
double cl_normal_two_sided_p(double z);
/* Upper tail of the chi-square distribution with `df` degrees of freedom, P(X >= x),
 * via the regularized upper incomplete gamma function. df > 0. */
double cl_chi2_sf(double x, double df);

/* --- discrimination ------------------------------------------------------------ */

/* AUC of `score` for the 0/1 labels `won` (weights optional). Fails when there is no
 * won or no lost example (with positive weight), or on a NaN score. */
int cl_stats_auc(const double *score, const uint8_t *won, const double *weight, size_t n,
                 double *auc_out, char *err, size_t errlen);

/* Integer won/lost counts per score bin. Bin b covers scores that round to
 * lo + b*resolution. Counts are signed so retractions subtract exactly; a negative
 * count after a subtraction is a caller bug and makes the summaries fail. */
typedef struct {
    double lo, resolution;
    size_t nbins;
    int64_t *won;
    int64_t *lost;
} cl_score_hist;

/* lo < hi, resolution > 0, at most 10,000,001 bins. */
int cl_score_hist_init(cl_score_hist *h, double lo, double hi, double resolution, char *err,
                       size_t errlen);
void cl_score_hist_free(cl_score_hist *h);
/* Adds `count` (may be negative) at `score`; scores outside [lo, hi] are clamped to
 * the end bins (a score of 100.4 is still "very high"), NaN is refused. */
int cl_score_hist_add(cl_score_hist *h, double score, int won, int64_t count, char *err,
                      size_t errlen);
int cl_score_hist_auc(const cl_score_hist *h, double *auc_out, char *err, size_t errlen);

/* --- confusion, precision, recall ---------------------------------------------- */

/* At a threshold, "predicted won" means score >= threshold (the HIGH band rule). */
typedef struct {
    double tp, fp, tn, fn; /* weighted counts */
} cl_confusion;

typedef struct {
    double precision, recall, f1; /* 0 where undefined */
} cl_prf;

int cl_stats_confusion(const double *score, const uint8_t *won, const double *weight,
                       size_t n, double threshold, cl_confusion *out, char *err,
                       size_t errlen);
/* Confusion at `threshold` from a histogram (bins whose value is >= threshold). */
int cl_score_hist_confusion(const cl_score_hist *h, double threshold, cl_confusion *out,
                            char *err, size_t errlen);
cl_prf cl_stats_prf(const cl_confusion *c);
/* Confusion at each of `nthresholds` thresholds (any order) in O((n + t) log n). */
int cl_stats_confusion_by_threshold(const double *score, const uint8_t *won,
                                    const double *weight, size_t n, const double *thresholds,
                                    size_t nthresholds, cl_confusion *out, char *err,
                                    size_t errlen);

/* --- calibration --------------------------------------------------------------- */

/* Mean squared error of the probabilities against the labels. */
int cl_stats_brier(const double *prob, const uint8_t *won, const double *weight, size_t n,
                   double *out, char *err, size_t errlen);
/* Mean negative log-likelihood, probabilities clipped to [ε, 1 - ε], ε = DBL_EPSILON. */
int cl_stats_log_loss(const double *prob, const uint8_t *won, const double *weight, size_t n,
                      double *out, char *err, size_t errlen);

typedef struct {
    double lo, hi;           /* bin edges in probability */
    double mean_predicted;   /* 0 when the bin is empty */
    double observed_rate;    /* share won; 0 when the bin is empty */
    double count;            /* weighted number of examples */
} cl_calibration_bin;

/* Expected calibration error over `nbins` equal-width bins:
 * Σ_b (count_b / total) · |mean_predicted_b - observed_rate_b|.
 * `bins` (nbins entries) may be NULL when only the number is wanted. */
int cl_stats_ece(const double *prob, const uint8_t *won, const double *weight, size_t n,
                 size_t nbins, double *ece_out, cl_calibration_bin *bins, char *err,
                 size_t errlen);

/* --- paired comparisons -------------------------------------------------------- */

typedef struct {
    double auc_a, auc_b;
    double delta;      /* auc_b - auc_a: positive means B discriminates better */
    double variance;   /* of delta, from DeLong's structural components */
    double z;          /* delta / sqrt(variance); ±INFINITY when variance is 0 and delta is not */
    double p_value;    /* two-sided */
    size_t n_won, n_lost;
} cl_delong_result;

/* DeLong, DeLong & Clarke-Pearson (1988) test for two correlated AUCs measured on the
 * same examples (unweighted: each paired example counts once). Needs at least two won
 * and two lost examples so that the covariances exist. */
int cl_stats_delong(const double *score_a, const double *score_b, const uint8_t *won,
                    size_t n, cl_delong_result *out, char *err, size_t errlen);

typedef struct {
    uint64_t only_a_right; /* b in the usual 2x2 notation */
    uint64_t only_b_right; /* c */
    double statistic;      /* chi-square with continuity correction (also when exact) */
    double p_value;        /* two-sided */
    int exact;             /* 1 when the exact binomial test was used */
} cl_mcnemar_result;

/* McNemar's test on the discordant counts. With fewer than 25 discordant pairs the
 * exact two-sided binomial test is used (the chi-square approximation is poor there),
 * otherwise chi-square with 1 df and Edwards' continuity correction. */
cl_mcnemar_result cl_stats_mcnemar(uint64_t only_a_right, uint64_t only_b_right);

#endif
