/*
 * stats.c — metric and test implementations. See stats.h for the conventions.
 *
 * Sums run in long double where many terms of mixed sign or size meet (AUC
 * numerators, covariance accumulations), so results do not depend on the order the
 * caller happened to pass the examples in beyond the last few ulps.
 */
#include "stats.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- distributions ------------------------------------------------------------- */

double cl_normal_cdf(double x) { return 0.5 * erfc(-x / M_SQRT2); }

double cl_normal_sf(double x) { return 0.5 * erfc(x / M_SQRT2); }

double cl_normal_two_sided_p(double z)
{
    if (isnan(z))
        return 1.0;
    return erfc(fabs(z) / M_SQRT2);
}

/* Regularized lower incomplete gamma P(s, x) by its power series; converges fast for
 * x < s + 1, which is where the caller uses it. */
static double gamma_p_series(double s, double x)
{
    double term = 1.0 / s, sum = term;
    for (int i = 1; i < 10000; i++) {
        term *= x / (s + i);
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-17)
            break;
    }
    return sum * exp(-x + s * log(x) - lgamma(s));
}

/* Regularized upper incomplete gamma Q(s, x) by its continued fraction (modified
 * Lentz); converges fast for x >= s + 1 and keeps relative precision in the tail. */
static double gamma_q_fraction(double s, double x)
{
    const double tiny = 1e-300;
    double b = x + 1.0 - s, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - s);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-17)
            break;
    }
    return exp(-x + s * log(x) - lgamma(s)) * h;
}

double cl_chi2_sf(double x, double df)
{
    if (isnan(x) || !(df > 0))
        return NAN;
    if (x <= 0)
        return 1.0;
    if (isinf(x))
        return 0.0;
    /* The two cases tests use most have closed forms; take them exactly. */
    if (df == 1.0)
        return erfc(sqrt(x / 2.0));
    if (df == 2.0)
        return exp(-x / 2.0);
    double s = df / 2.0, hx = x / 2.0;
    if (hx < s + 1.0)
        return 1.0 - gamma_p_series(s, hx);
    return gamma_q_fraction(s, hx);
}

/* --- input checks -------------------------------------------------------------- */

/* Validates the common (values, labels, weights) triple and returns the weighted
 * number of won and lost examples. `unit` additionally requires values in [0, 1]. */
static int check_inputs(const char *what, const double *value, const uint8_t *won,
                        const double *weight, size_t n, int unit, double *won_total,
                        double *lost_total, char *err, size_t errlen)
{
    if (n == 0 || !value || !won)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: no examples", what);
    double w_won = 0, w_lost = 0;
    for (size_t i = 0; i < n; i++) {
        double v = value[i];
        if (!isfinite(v))
            return cl_seterr(err, errlen, CL_EINVAL, "%s: example %zu has a non-finite value",
                             what, i);
        if (unit && (v < 0.0 || v > 1.0))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s: example %zu has probability %.17g outside [0, 1]", what, i, v);
        if (won[i] > 1)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: example %zu has label %u (want 0 or 1)",
                             what, i, (unsigned)won[i]);
        double w = weight ? weight[i] : 1.0;
        if (!isfinite(w) || w < 0)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: example %zu has weight %g (want >= 0)",
                             what, i, w);
        if (won[i])
            w_won += w;
        else
            w_lost += w;
    }
    if (!(w_won + w_lost > 0))
        return cl_seterr(err, errlen, CL_EINVAL, "%s: all example weights are zero", what);
    if (won_total)
        *won_total = w_won;
    if (lost_total)
        *lost_total = w_lost;
    return CL_OK;
}

typedef struct {
    double score;
    size_t index;
} scored_index;

static int compare_scored(const void *pa, const void *pb)
{
    const scored_index *a = pa, *b = pb;
    if (a->score < b->score)
        return -1;
    if (a->score > b->score)
        return 1;
    /* Stable on index, so equal inputs give identical sums run after run. */
    return (a->index > b->index) - (a->index < b->index);
}

static scored_index *sorted_scores(const double *score, size_t n)
{
    if (n > SIZE_MAX / sizeof(scored_index))
        return NULL;
    scored_index *s = malloc(n * sizeof *s);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[i].score = score[i];
        s[i].index = i;
    }
    qsort(s, n, sizeof *s, compare_scored);
    return s;
}

/* --- discrimination ------------------------------------------------------------ */

int cl_stats_auc(const double *score, const uint8_t *won, const double *weight, size_t n,
                 double *auc_out, char *err, size_t errlen)
{
    double w_won, w_lost;
    int rc = check_inputs("auc", score, won, weight, n, 0, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (!(w_won > 0) || !(w_lost > 0))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "auc: needs both won and lost examples (won weight %g, lost weight %g)",
                         w_won, w_lost);
    scored_index *s = sorted_scores(score, n);
    if (!s)
        return cl_seterr(err, errlen, CL_ENOMEM, "auc: cannot sort %zu scores", n);
    /* Walk tie groups upward: every won example beats the lost weight below its group
     * and ties half of the lost weight inside it. */
    long double numerator = 0, lost_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        long double group_won = 0, group_lost = 0;
        while (j < n && s[j].score == s[i].score) {
            double w = weight ? weight[s[j].index] : 1.0;
            if (won[s[j].index])
                group_won += w;
            else
                group_lost += w;
            j++;
        }
        numerator += group_won * (lost_below + 0.5L * group_lost);
        lost_below += group_lost;
        i = j;
    }
    free(s);
    *auc_out = (double)(numerator / ((long double)w_won * (long double)w_lost));
    return CL_OK;
}

#define CL_HIST_MAX_BINS 10000001u

int cl_score_hist_init(cl_score_hist *h, double lo, double hi, double resolution, char *err,
                       size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo) || !isfinite(resolution) ||
        !(resolution > 0))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "score histogram: need lo < hi and resolution > 0 (got %g, %g, %g)", lo,
                         hi, resolution);
    double bins = floor((hi - lo) / resolution + 0.5) + 1.0;
    if (bins > CL_HIST_MAX_BINS)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "score histogram: %.0f bins exceed the limit of %u", bins,
                         CL_HIST_MAX_BINS);
    h->lo = lo;
    h->resolution = resolution;
    h->nbins = (size_t)bins;
    h->won = calloc(h->nbins, sizeof *h->won);
    h->lost = calloc(h->nbins, sizeof *h->lost);
    if (!h->won || !h->lost) {
        cl_score_hist_free(h);
        return cl_seterr(err, errlen, CL_ENOMEM, "score histogram: cannot allocate %.0f bins",
                         bins);
    }
    return CL_OK;
}

void cl_score_hist_free(cl_score_hist *h)
{
    if (!h)
        return;
    free(h->won);
    free(h->lost);
    h->won = h->lost = NULL;
    h->nbins = 0;
}

static size_t hist_bin(const cl_score_hist *h, double score)
{
    double b = floor((score - h->lo) / h->resolution + 0.5);
    if (b < 0)
        return 0;
    if (b >= (double)(h->nbins - 1))
        return h->nbins - 1;
    return (size_t)b;
}

int cl_score_hist_add(cl_score_hist *h, double score, int won, int64_t count, char *err,
                      size_t errlen)
{
    if (!h->won)
        return cl_seterr(err, errlen, CL_EINVAL, "score histogram: not initialized");
    if (isnan(score))
        return cl_seterr(err, errlen, CL_EINVAL, "score histogram: NaN score");
    size_t b = hist_bin(h, score);
    int64_t *cell = won ? &h->won[b] : &h->lost[b];
    if ((count > 0 && *cell > INT64_MAX - count) || (count < 0 && *cell < INT64_MIN - count))
        return cl_seterr(err, errlen, CL_EINVAL, "score histogram: count overflow at bin %zu", b);
    *cell += count;
    return CL_OK;
}

/* Totals, refusing histograms a retraction drove negative. */
static int hist_totals(const cl_score_hist *h, long double *won, long double *lost, char *err,
                       size_t errlen)
{
    long double w = 0, l = 0;
    for (size_t b = 0; b < h->nbins; b++) {
        if (h->won[b] < 0 || h->lost[b] < 0)
            return cl_seterr(err, errlen, CL_ECONFLICT,
                             "score histogram: negative count at score %g (more retractions "
                             "than additions)",
                             h->lo + (double)b * h->resolution);
        w += h->won[b];
        l += h->lost[b];
    }
    *won = w;
    *lost = l;
    return CL_OK;
}

int cl_score_hist_auc(const cl_score_hist *h, double *auc_out, char *err, size_t errlen)
{
    if (!h->won)
        return cl_seterr(err, errlen, CL_EINVAL, "score histogram: not initialized");
    long double w_won, w_lost;
    int rc = hist_totals(h, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (!(w_won > 0) || !(w_lost > 0))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "auc: needs both won and lost examples (won %.0Lf, lost %.0Lf)", w_won,
                         w_lost);
    long double numerator = 0, lost_below = 0;
    for (size_t b = 0; b < h->nbins; b++) {
        numerator += (long double)h->won[b] * (lost_below + 0.5L * (long double)h->lost[b]);
        lost_below += h->lost[b];
    }
    *auc_out = (double)(numerator / (w_won * w_lost));
    return CL_OK;
}

/* --- confusion, precision, recall ---------------------------------------------- */

int cl_stats_confusion(const double *score, const uint8_t *won, const double *weight,
                       size_t n, double threshold, cl_confusion *out, char *err,
                       size_t errlen)
{
    int rc = check_inputs("confusion", score, won, weight, n, 0, NULL, NULL, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_confusion c = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        int predicted = score[i] >= threshold;
        if (predicted)
            *(won[i] ? &c.tp : &c.fp) += w;
        else
            *(won[i] ? &c.fn : &c.tn) += w;
    }
    *out = c;
    return CL_OK;
}

int cl_score_hist_confusion(const cl_score_hist *h, double threshold, cl_confusion *out,
                            char *err, size_t errlen)
{
    if (!h->won)
        return cl_seterr(err, errlen, CL_EINVAL, "score histogram: not initialized");
    long double w_won, w_lost;
    int rc = hist_totals(h, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_confusion c = {0, 0, 0, 0};
    for (size_t b = 0; b < h->nbins; b++) {
        double value = h->lo + (double)b * h->resolution;
        if (value >= threshold) {
            c.tp += (double)h->won[b];
            c.fp += (double)h->lost[b];
        } else {
            c.fn += (double)h->won[b];
            c.tn += (double)h->lost[b];
        }
    }
    *out = c;
    return CL_OK;
}

cl_prf cl_stats_prf(const cl_confusion *c)
{
    cl_prf r = {0, 0, 0};
    if (c->tp + c->fp > 0)
        r.precision = c->tp / (c->tp + c->fp);
    if (c->tp + c->fn > 0)
        r.recall = c->tp / (c->tp + c->fn);
    if (r.precision + r.recall > 0)
        r.f1 = 2.0 * r.precision * r.recall / (r.precision + r.recall);
    return r;
}

int cl_stats_confusion_by_threshold(const double *score, const uint8_t *won,
                                    const double *weight, size_t n, const double *thresholds,
                                    size_t nthresholds, cl_confusion *out, char *err,
                                    size_t errlen)
{
    double w_won, w_lost;
    int rc = check_inputs("confusion", score, won, weight, n, 0, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    scored_index *s = sorted_scores(score, n);
    double *won_below = malloc((n + 1) * sizeof *won_below);
    double *lost_below = malloc((n + 1) * sizeof *lost_below);
    if (!s || !won_below || !lost_below) {
        free(s);
        free(won_below);
        free(lost_below);
        return cl_seterr(err, errlen, CL_ENOMEM, "confusion: cannot sort %zu scores", n);
    }
    won_below[0] = lost_below[0] = 0;
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[s[i].index] : 1.0;
        won_below[i + 1] = won_below[i] + (won[s[i].index] ? w : 0.0);
        lost_below[i + 1] = lost_below[i] + (won[s[i].index] ? 0.0 : w);
    }
    for (size_t t = 0; t < nthresholds; t++) {
        /* First position whose score is >= the threshold. */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s[mid].score < thresholds[t])
                lo = mid + 1;
            else
                hi = mid;
        }
        out[t].fn = won_below[lo];
        out[t].tn = lost_below[lo];
        out[t].tp = won_below[n] - won_below[lo];
        out[t].fp = lost_below[n] - lost_below[lo];
    }
    free(s);
    free(won_below);
    free(lost_below);
    return CL_OK;
}

/* --- calibration --------------------------------------------------------------- */

int cl_stats_brier(const double *prob, const uint8_t *won, const double *weight, size_t n,
                   double *out, char *err, size_t errlen)
{
    double w_won, w_lost;
    int rc = check_inputs("brier", prob, won, weight, n, 1, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double d = prob[i] - (double)won[i];
        sum += (weight ? weight[i] : 1.0) * d * d;
    }
    *out = (double)(sum / ((long double)w_won + w_lost));
    return CL_OK;
}

int cl_stats_log_loss(const double *prob, const uint8_t *won, const double *weight, size_t n,
                      double *out, char *err, size_t errlen)
{
    double w_won, w_lost;
    int rc = check_inputs("log loss", prob, won, weight, n, 1, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double p = fmin(fmax(prob[i], DBL_EPSILON), 1.0 - DBL_EPSILON);
        double loss = won[i] ? -log(p) : -log1p(-p);
        sum += (weight ? weight[i] : 1.0) * loss;
    }
    *out = (double)(sum / ((long double)w_won + w_lost));
    return CL_OK;
}

int cl_stats_ece(const double *prob, const uint8_t *won, const double *weight, size_t n,
                 size_t nbins, double *ece_out, cl_calibration_bin *bins, char *err,
                 size_t errlen)
{
    if (nbins == 0 || nbins > 100000)
        return cl_seterr(err, errlen, CL_EINVAL, "ece: bin count %zu outside 1..100000", nbins);
    double w_won, w_lost;
    int rc = check_inputs("ece", prob, won, weight, n, 1, &w_won, &w_lost, err, errlen);
    if (rc != CL_OK)
        return rc;
    long double *sum_p = calloc(nbins, sizeof *sum_p);
    long double *sum_y = calloc(nbins, sizeof *sum_y);
    long double *sum_w = calloc(nbins, sizeof *sum_w);
    if (!sum_p || !sum_y || !sum_w) {
        free(sum_p);
        free(sum_y);
        free(sum_w);
        return cl_seterr(err, errlen, CL_ENOMEM, "ece: cannot allocate %zu bins", nbins);
    }
    for (size_t i = 0; i < n; i++) {
        double p = prob[i];
        /* floor(p·nbins) is off by one near an edge when the product rounds; settle it
         * against the edges themselves, inner edges going to the upper bin. */
        size_t b = (size_t)fmin(floor(p * (double)nbins), (double)(nbins - 1));
        while (b > 0 && p < (double)b / (double)nbins)
            b--;
        while (b + 1 < nbins && p >= (double)(b + 1) / (double)nbins)
            b++;
        double w = weight ? weight[i] : 1.0;
        sum_p[b] += w * p;
        sum_y[b] += w * won[i];
        sum_w[b] += w;
    }
    long double total = (long double)w_won + w_lost, ece = 0;
    for (size_t b = 0; b < nbins; b++) {
        double mean_p = 0, rate = 0;
        if (sum_w[b] > 0) {
            mean_p = (double)(sum_p[b] / sum_w[b]);
            rate = (double)(sum_y[b] / sum_w[b]);
            ece += sum_w[b] / total * fabs(mean_p - rate);
        }
        if (bins) {
            bins[b].lo = (double)b / (double)nbins;
            bins[b].hi = (double)(b + 1) / (double)nbins;
            bins[b].mean_predicted = mean_p;
            bins[b].observed_rate = rate;
            bins[b].count = (double)sum_w[b];
        }
    }
    free(sum_p);
    free(sum_y);
    free(sum_w);
    *ece_out = (double)ece;
    return CL_OK;
}

/* --- paired comparisons -------------------------------------------------------- */

static int compare_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Number of entries of the sorted array strictly below x and equal to x. */
static void count_below_equal(const double *sorted, size_t n, double x, size_t *below,
                              size_t *equal)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t first = lo;
    hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    *below = first;
    *equal = lo - first;
}

/* DeLong's structural components of one score: v10[i] for the i-th won example is the
 * share of lost examples it outranks (ties half), v01[j] for the j-th lost example the
 * share of won examples that outrank it. Both average to the AUC. */
static void structural_components(const double *score, const uint8_t *won, size_t n,
                                  double *won_sorted, double *lost_sorted, size_t m_won,
                                  size_t m_lost, double *v10, double *v01)
{
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        if (won[i])
            won_sorted[a++] = score[i];
        else
            lost_sorted[b++] = score[i];
    }
    qsort(won_sorted, m_won, sizeof(double), compare_double);
    qsort(lost_sorted, m_lost, sizeof(double), compare_double);
    a = b = 0;
    for (size_t i = 0; i < n; i++) {
        size_t below, equal;
        if (won[i]) {
            count_below_equal(lost_sorted, m_lost, score[i], &below, &equal);
            v10[a++] = ((double)below + 0.5 * (double)equal) / (double)m_lost;
        } else {
            count_below_equal(won_sorted, m_won, score[i], &below, &equal);
            size_t above = m_won - below - equal;
            v01[b++] = ((double)above + 0.5 * (double)equal) / (double)m_won;
        }
    }
}

static double mean_of(const double *v, size_t n)
{
    long double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return (double)(s / (long double)n);
}

/* Sample variance of (x - y), i.e. S_aa + S_bb - 2 S_ab of DeLong's covariance. */
static double variance_of_difference(const double *x, double mx, const double *y, double my,
                                     size_t n)
{
    long double s = 0;
    for (size_t i = 0; i < n; i++) {
        long double d = ((long double)x[i] - mx) - ((long double)y[i] - my);
        s += d * d;
    }
    return (double)(s / (long double)(n - 1));
}

int cl_stats_delong(const double *score_a, const double *score_b, const uint8_t *won,
                    size_t n, cl_delong_result *out, char *err, size_t errlen)
{
    double w_won, w_lost;
    int rc = check_inputs("delong (score a)", score_a, won, NULL, n, 0, &w_won, &w_lost, err,
                          errlen);
    if (rc == CL_OK)
        rc = check_inputs("delong (score b)", score_b, won, NULL, n, 0, NULL, NULL, err, errlen);
    if (rc != CL_OK)
        return rc;
    size_t m_won = (size_t)w_won, m_lost = (size_t)w_lost;
    if (m_won < 2 || m_lost < 2)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "delong: needs at least 2 won and 2 lost paired examples (have %zu won, "
                         "%zu lost)",
                         m_won, m_lost);
    double *buf = malloc(4 * n * sizeof *buf);
    double *v10 = malloc(2 * m_won * sizeof *v10);
    double *v01 = malloc(2 * m_lost * sizeof *v01);
    if (!buf || !v10 || !v01) {
        free(buf);
        free(v10);
        free(v01);
        return cl_seterr(err, errlen, CL_ENOMEM, "delong: cannot allocate for %zu examples", n);
    }
    structural_components(score_a, won, n, buf, buf + m_won, m_won, m_lost, v10, v01);
    structural_components(score_b, won, n, buf + n, buf + n + m_won, m_won, m_lost, v10 + m_won,
                          v01 + m_lost);
    double auc_a = mean_of(v10, m_won), auc_b = mean_of(v10 + m_won, m_won);
    double auc_a01 = mean_of(v01, m_lost), auc_b01 = mean_of(v01 + m_lost, m_lost);
    double var = variance_of_difference(v10 + m_won, auc_b, v10, auc_a, m_won) / (double)m_won +
                 variance_of_difference(v01 + m_lost, auc_b01, v01, auc_a01, m_lost) /
                     (double)m_lost;
    free(buf);
    free(v10);
    free(v01);

    cl_delong_result r;
    r.auc_a = auc_a;
    r.auc_b = auc_b;
    r.delta = auc_b - auc_a;
    r.variance = var;
    r.n_won = m_won;
    r.n_lost = m_lost;
    /* Identical (or rank-identical) scores make every component difference zero: the
     * test has nothing to say, which is p = 1, not a division by zero. */
    if (!(var > 1e-300)) {
        r.variance = 0;
        if (r.delta == 0) {
            r.z = 0;
            r.p_value = 1;
        } else {
            r.z = r.delta > 0 ? INFINITY : -INFINITY;
            r.p_value = 0;
        }
    } else {
        r.z = r.delta / sqrt(var);
        r.p_value = cl_normal_two_sided_p(r.z);
    }
    *out = r;
    return CL_OK;
}

cl_mcnemar_result cl_stats_mcnemar(uint64_t only_a_right, uint64_t only_b_right)
{
    cl_mcnemar_result r;
    r.only_a_right = only_a_right;
    r.only_b_right = only_b_right;
    double b = (double)only_a_right, c = (double)only_b_right, discordant = b + c;
    if (discordant == 0) {
        r.statistic = 0;
        r.p_value = 1;
        r.exact = 1;
        return r;
    }
    double excess = fmax(fabs(b - c) - 1.0, 0.0);
    r.statistic = excess * excess / discordant;
    if (discordant < 25) {
        /* Two-sided exact binomial(discordant, 1/2): twice the smaller tail. The terms
         * are exact integers in double for discordant < 25. */
        unsigned nd = (unsigned)discordant, k = (unsigned)fmin(b, c);
        double coefficient = 1, tail = 0;
        for (unsigned i = 0; i <= k; i++) {
            tail += coefficient;
            coefficient = coefficient * (double)(nd - i) / (double)(i + 1);
        }
        r.p_value = fmin(1.0, 2.0 * tail / ldexp(1.0, (int)nd));
        r.exact = 1;
    } else {
        r.p_value = cl_chi2_sf(r.statistic, 1.0);
        r.exact = 0;
    }
    return r;
}
