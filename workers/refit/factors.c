/*
 * factors.c — point-in-time category win rates and numeric percentiles.
 */
#include "factors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"
#include "stats.h"
#include "util.h"

void cl_factor_options_default(cl_factor_options *o)
{
    o->smoothing = 20.0;
    o->min_support = 10;
}

int cl_factor_is_time_based(const char *source)
{
    return strcmp(source, "days_open") == 0 || strcmp(source, "days_in_stage") == 0 ||
           strcmp(source, "days_to_close") == 0;
}

/* One outcome per opportunity: its close day, label and the category of its latest
 * snapshot. */
typedef struct {
    int32_t close_day;
    uint32_t cat;
    uint8_t won;
} opp_outcome;

static int cmp_outcome_day(const void *a, const void *b)
{
    const opp_outcome *x = a, *y = b;
    return (x->close_day > y->close_day) - (x->close_day < y->close_day);
}

typedef struct {
    int32_t day;
    size_t row;
} row_day;

static int cmp_row_day(const void *a, const void *b)
{
    const row_day *x = a, *y = b;
    if (x->day != y->day) return (x->day > y->day) - (x->day < y->day);
    return (x->row > y->row) - (x->row < y->row);
}

static double smoothed(int64_t won_c, int64_t n_c, double p, const cl_factor_options *o)
{
    if (n_c < (int64_t)o->min_support || n_c <= 0) return p;
    return ((double)won_c + o->smoothing * p) / ((double)n_c + o->smoothing);
}

typedef struct {
    uint32_t cat;
    int64_t n, won;
} cat_count;

static int cmp_count_desc(const void *a, const void *b)
{
    const cat_count *x = a, *y = b;
    if (x->n != y->n) return (x->n < y->n) - (x->n > y->n);
    return (x->cat > y->cat) - (x->cat < y->cat);
}

int cl_factor_category(const cl_training_rows *rows, size_t j, const char *name,
                       const cl_factor_options *o, double *col, cl_component_def *def, char *err,
                       size_t errlen)
{
    if (j >= rows->n_cat)
        return cl_seterr(err, errlen, CL_EINVAL, "category source %zu out of range", j);
    const uint32_t *cat = rows->cat[j];
    uint32_t ncat = cl_intern_count(rows->cat_values[j]);
    opp_outcome *opps = calloc(rows->n_opps ? rows->n_opps : 1, sizeof *opps);
    int64_t *latest = malloc((rows->n_opps ? rows->n_opps : 1) * sizeof *latest);
    row_day *order = malloc((rows->n ? rows->n : 1) * sizeof *order);
    int64_t *n_c = calloc((size_t)ncat + 1, sizeof *n_c);
    int64_t *won_c = calloc((size_t)ncat + 1, sizeof *won_c);
    cat_count *counts = calloc((size_t)ncat + 1, sizeof *counts);
    int rc = CL_OK;
    if (!opps || !latest || !order || !n_c || !won_c || !counts) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "factor %s: out of memory", name);
        goto done;
    }
    for (size_t k = 0; k < rows->n_opps; k++)
        latest[k] = INT64_MIN;
    for (size_t i = 0; i < rows->n; i++) {
        uint32_t k = rows->opp[i];
        if (rows->snapshot_time[i] >= latest[k]) {
            latest[k] = rows->snapshot_time[i];
            opps[k] = (opp_outcome){rows->close_day[i], cat[i], rows->won[i]};
        }
        order[i] = (row_day){rows->snap_day[i], i};
    }
    qsort(opps, rows->n_opps, sizeof *opps, cmp_outcome_day);
    qsort(order, rows->n, sizeof *order, cmp_row_day);

    /* Sweep: rows by snapshot day, outcomes by close day; an outcome counts for a row
     * only when it closed strictly before the row's snapshot day. */
    size_t p = 0;
    int64_t total = 0, total_won = 0;
    for (size_t q = 0; q < rows->n; q++) {
        while (p < rows->n_opps && opps[p].close_day < order[q].day) {
            total++;
            total_won += opps[p].won;
            if (opps[p].cat != CL_ROWS_NULL_CATEGORY) {
                n_c[opps[p].cat]++;
                won_c[opps[p].cat] += opps[p].won;
            }
            p++;
        }
        double prior = total > 0 ? (double)total_won / (double)total : 0.5;
        size_t i = order[q].row;
        double rate = cat[i] == CL_ROWS_NULL_CATEGORY
                          ? prior
                          : smoothed(won_c[cat[i]], n_c[cat[i]], prior, o);
        col[i] = 100.0 * rate;
    }

    /* The table as of training time: every outcome. */
    memset(n_c, 0, ((size_t)ncat + 1) * sizeof *n_c);
    memset(won_c, 0, ((size_t)ncat + 1) * sizeof *won_c);
    total = total_won = 0;
    for (size_t k = 0; k < rows->n_opps; k++) {
        total++;
        total_won += opps[k].won;
        if (opps[k].cat != CL_ROWS_NULL_CATEGORY) {
            n_c[opps[k].cat]++;
            won_c[opps[k].cat] += opps[k].won;
        }
    }
    double overall = total > 0 ? (double)total_won / (double)total : 0.5;
    size_t nc = 0;
    for (uint32_t c = 0; c < ncat; c++)
        if (n_c[c] >= (int64_t)o->min_support && n_c[c] > 0)
            counts[nc++] = (cat_count){c, n_c[c], won_c[c]};
    qsort(counts, nc, sizeof *counts, cmp_count_desc);
    if (nc > CL_MAX_CATEGORIES) nc = CL_MAX_CATEGORIES;

    cl_component_def_init(def);
    if (cl_strlcpy(def->name, name, sizeof def->name) != CL_OK ||
        cl_strlcpy(def->source, rows->cat_source[j], sizeof def->source) != CL_OK) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "factor name too long: '%.40s'", name);
        goto done;
    }
    def->kind = CL_COMPONENT_CATEGORY_WIN_RATE;
    def->smoothing = o->smoothing;
    def->overall_rate = overall;
    for (size_t c = 0; c < nc; c++) {
        cl_category_rate *cr = &def->categories[c];
        cl_strlcpy(cr->category, cl_intern_string(rows->cat_values[j], counts[c].cat),
                   sizeof cr->category);
        cr->rate = smoothed(counts[c].won, counts[c].n, overall, o);
        cr->n = counts[c].n;
    }
    def->n_categories = nc;
done:
    free(opps);
    free(latest);
    free(order);
    free(n_c);
    free(won_c);
    free(counts);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cl_factor_percentile(const cl_training_rows *rows, size_t j, const char *name,
                         const uint8_t *use, int direction, int32_t direction_before, double *col,
                         cl_component_def *def, char *err, size_t errlen)
{
    if (j >= rows->n_num)
        return cl_seterr(err, errlen, CL_EINVAL, "numeric source %zu out of range", j);
    const double *x = rows->num[j];
    double *vals = malloc((rows->n ? rows->n : 1) * sizeof *vals);
    if (!vals) return cl_seterr(err, errlen, CL_ENOMEM, "factor %s: out of memory", name);
    size_t m = 0;
    for (size_t i = 0; i < rows->n; i++)
        if ((!use || use[i]) && isfinite(x[i])) vals[m++] = x[i];
    if (m < 2) {
        free(vals);
        return cl_seterr(err, errlen, CL_ENOTFOUND, "factor %s: fewer than two values of '%s'",
                         name, rows->num_source[j]);
    }
    qsort(vals, m, sizeof *vals, cmp_double);
    cl_component_def_init(def);
    if (cl_strlcpy(def->name, name, sizeof def->name) != CL_OK ||
        cl_strlcpy(def->source, rows->num_source[j], sizeof def->source) != CL_OK) {
        free(vals);
        return cl_seterr(err, errlen, CL_EINVAL, "factor name too long: '%.40s'", name);
    }
    def->kind = CL_COMPONENT_NUMERIC_PERCENTILE;
    size_t k = CL_MAX_BREAKPOINTS;
    for (size_t b = 0; b < k; b++) {
        /* numpy's default (linear) quantile at b/(k-1). */
        double pos = (double)b / (double)(k - 1) * (double)(m - 1);
        size_t lo = (size_t)floor(pos);
        size_t hi = lo + 1 < m ? lo + 1 : lo;
        double f = pos - (double)lo;
        double q = vals[lo] + f * (vals[hi] - vals[lo]);
        if (b > 0 && q < def->breakpoints[b - 1])
            q = def->breakpoints[b - 1]; /* rounding must not break monotonicity */
        def->breakpoints[b] = q;
    }
    def->n_breakpoints = k;
    free(vals);

    if (direction == 0) {
        /* Decide on the rows no validation fold tests: closed before direction_before. */
        size_t nd = 0;
        double *sc = malloc((rows->n ? rows->n : 1) * sizeof *sc);
        uint8_t *wl = malloc(rows->n ? rows->n : 1);
        if (!sc || !wl) {
            free(sc);
            free(wl);
            return cl_seterr(err, errlen, CL_ENOMEM, "factor %s: out of memory", name);
        }
        for (size_t i = 0; i < rows->n; i++)
            if ((!use || use[i]) && isfinite(x[i]) && rows->close_day[i] < direction_before) {
                sc[nd] = x[i];
                wl[nd++] = rows->won[i];
            }
        double auc = 0.5;
        if (nd > 0 && cl_stats_auc(sc, wl, NULL, nd, &auc, NULL, 0) != CL_OK) auc = 0.5;
        direction = auc < 0.5 ? -1 : 1;
        free(sc);
        free(wl);
    }
    def->descending = direction < 0;
    for (size_t i = 0; i < rows->n; i++) {
        cl_opt_double v = {isfinite(x[i]), isfinite(x[i]) ? x[i] : 0};
        col[i] = cl_numeric_percentile_value(def, v);
    }
    return CL_OK;
}

void cl_factor_feature(const cl_training_rows *rows, size_t j, double missing_value, double *col)
{
    const double *x = rows->num[j];
    for (size_t i = 0; i < rows->n; i++)
        col[i] = isfinite(x[i]) && x[i] >= 0 && x[i] <= 100 ? x[i] : missing_value;
}
