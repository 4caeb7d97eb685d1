/*
 * score.c — score, band and calibrated probability of a snapshot under a WeightConfig,
 * learned components, the seed model and config validation (rules in score.h).
 */
#include "score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- seed --------------------------------------------------------------------------- */

void cl_weight_config_seed(cl_weight_config *c, int64_t created_at)
{
    static const double seed_weights[CL_NUM_BUILTINS] = {
        [CL_SPEED_TO_CLOSE] = 0.15,   [CL_LARGEST_DEAL] = 0.20, [CL_PRODUCT_MIX] = 0.15,
        [CL_UPSELL_INSTANCES] = 0.25, [CL_WIN_RATE] = 0.20,     [CL_RECENCY] = 0.05,
    };
    cl_weight_config_init(c);
    snprintf(c->model, sizeof c->model, "%s", CL_SEED_MODEL);
    c->version = 1;
    c->parent_version.present = false;
    c->status = CL_MODEL_CHAMPION;
    c->created_at = created_at;
    for (int i = 0; i < CL_NUM_BUILTINS; i++) {
        cl_weight *w = &c->weights.items[i];
        snprintf(w->component, sizeof w->component, "%s", cl_builtin_component_names[i]);
        w->weight = seed_weights[i];
    }
    c->weights.n = CL_NUM_BUILTINS;
    c->calibration.intercept = CL_SEED_INTERCEPT;
    c->calibration.slope = CL_SEED_SLOPE;
    c->bands.high = 70.0;
    c->bands.medium = 40.0;
    snprintf(c->reason, sizeof c->reason,
             "seed model: the initial champion (hand-set weights; neutral calibration "
             "intercept %g slope %g until the first refit)",
             CL_SEED_INTERCEPT, CL_SEED_SLOPE);
}

/* ---- validation --------------------------------------------------------------------- */

static bool finite_in(double v, double lo, double hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

static bool opt_in(cl_opt_double v, double lo, double hi)
{
    return !v.present || finite_in(v.value, lo, hi);
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int validate_weight_set(const cl_weight_config *c, const cl_weight_set *w, const char *where,
                               char *err, size_t errlen)
{
    if (w->n == 0 || w->n > CL_MAX_WEIGHTS)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.%s: %zu components, must be 1..%d",
                         where, w->n, CL_MAX_WEIGHTS);
    double sum = 0;
    for (size_t i = 0; i < w->n; i++) {
        const cl_weight *x = &w->items[i];
        if (!terminated(x->component, sizeof x->component) || x->component[0] == '\0')
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.%s[%zu]: component name empty or too long", where, i);
        if (!isfinite(x->weight) || x->weight < 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.%s[%s]: weight %g must be finite and >= 0", where,
                             x->component, x->weight);
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->items[j].component, x->component) == 0)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.%s: component '%s' appears twice", where,
                                 x->component);
        if (cl_builtin_component_index(x->component) < 0 &&
            cl_component_def_find(c, x->component) == NULL)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.%s[%s]: not a built-in component and not defined "
                             "in components",
                             where, x->component);
        sum += x->weight;
    }
    if (fabs(sum - 1.0) > CL_WEIGHT_SUM_TOLERANCE)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.%s: sum is %.9g, must be 1", where,
                         sum);
    return CL_OK;
}

static int validate_component(const cl_component_def *d, size_t idx, const cl_weight_config *c,
                              char *err, size_t errlen)
{
    if (!terminated(d->name, sizeof d->name) || d->name[0] == '\0')
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.components[%zu].name: empty or too long", idx);
    const char *n = d->name;
    if (cl_builtin_component_index(n) >= 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.components[%s]: name is a built-in component", n);
    for (size_t j = 0; j < idx; j++)
        if (strcmp(c->components[j].name, n) == 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.components: '%s' is defined twice", n);
    if (!terminated(d->source, sizeof d->source) || d->source[0] == '\0')
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.components[%s].source: empty or too long", n);
    switch (d->kind) {
    case CL_COMPONENT_FEATURE:
        break;
    case CL_COMPONENT_CATEGORY_WIN_RATE:
        if (!isfinite(d->smoothing) || d->smoothing < 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.components[%s].smoothing: %g must be >= 0", n,
                             d->smoothing);
        if (!finite_in(d->overall_rate, 0, 1))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.components[%s].overall_rate: %g is outside 0..1", n,
                             d->overall_rate);
        if (d->n_categories > CL_MAX_CATEGORIES)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.components[%s].categories: %zu entries, at most %d", n,
                             d->n_categories, CL_MAX_CATEGORIES);
        for (size_t i = 0; i < d->n_categories; i++) {
            const cl_category_rate *r = &d->categories[i];
            if (!terminated(r->category, sizeof r->category))
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.components[%s].categories[%zu]: too long", n, i);
            if (!finite_in(r->rate, 0, 1) || r->n < 0)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.components[%s].categories[%s]: rate %g must be "
                                 "0..1 and n %lld >= 0",
                                 n, r->category, r->rate, (long long)r->n);
            if (i > 0 && strcmp(d->categories[i - 1].category, r->category) >= 0)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.components[%s].categories: '%s' is duplicated or "
                                 "out of order (call cl_weight_config_sort_categories)",
                                 n, r->category);
        }
        break;
    case CL_COMPONENT_NUMERIC_PERCENTILE:
        if (d->n_breakpoints < CL_MIN_BREAKPOINTS || d->n_breakpoints > CL_MAX_BREAKPOINTS)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.components[%s].breakpoints: %zu values, must be %d..%d",
                             n, d->n_breakpoints, CL_MIN_BREAKPOINTS, CL_MAX_BREAKPOINTS);
        for (size_t i = 0; i < d->n_breakpoints; i++) {
            if (!isfinite(d->breakpoints[i]))
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.components[%s].breakpoints[%zu]: not finite", n, i);
            if (i > 0 && d->breakpoints[i] < d->breakpoints[i - 1])
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.components[%s].breakpoints[%zu]: %g is less than "
                                 "the previous %g (must be non-decreasing)",
                                 n, i, d->breakpoints[i], d->breakpoints[i - 1]);
        }
        break;
    default:
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.components[%s].kind: %d is not a kind", n, (int)d->kind);
    }
    if (!finite_in(d->missing_value, 0, 100))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.components[%s].missing_value: %g is outside 0..100", n,
                         d->missing_value);
    return CL_OK;
}

int cl_weight_config_validate(const cl_weight_config *c, char *err, size_t errlen)
{
    int rc;
    if (!terminated(c->model, sizeof c->model) || c->model[0] == '\0')
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.model: empty or too long");
    if (c->version < 1)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.version: %lld, must be >= 1",
                         (long long)c->version);
    if (c->parent_version.present &&
        (c->parent_version.value < 1 || c->parent_version.value >= c->version))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.parent_version: %lld, must be 1..version-1 (%lld)",
                         (long long)c->parent_version.value, (long long)c->version - 1);
    if ((int)c->status < 0 || (int)c->status > CL_MODEL_RETIRED)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.status: %d is not a status",
                         (int)c->status);
    if (c->n_components > CL_MAX_COMPONENT_DEFS)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.components: %zu entries, at most %d",
                         c->n_components, CL_MAX_COMPONENT_DEFS);
    for (size_t i = 0; i < c->n_components; i++)
        if ((rc = validate_component(&c->components[i], i, c, err, errlen)) != CL_OK) return rc;
    if ((rc = validate_weight_set(c, &c->weights, "weights", err, errlen)) != CL_OK) return rc;
    if (c->n_stage_weights > CL_MAX_STAGE_WEIGHTS)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.stage_weights: %zu entries, at most %d", c->n_stage_weights,
                         CL_MAX_STAGE_WEIGHTS);
    for (size_t i = 0; i < c->n_stage_weights; i++) {
        const cl_stage_weights *s = &c->stage_weights[i];
        if (!terminated(s->stage, sizeof s->stage) || s->stage[0] == '\0')
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.stage_weights[%zu].stage: empty or too long", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->stage_weights[j].stage, s->stage) == 0)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "WeightConfig.stage_weights: stage '%s' appears twice", s->stage);
        char where[CL_NAME_MAX + 40];
        snprintf(where, sizeof where, "stage_weights[%s].weights", s->stage);
        if ((rc = validate_weight_set(c, &s->weights, where, err, errlen)) != CL_OK) return rc;
    }
    if (!isfinite(c->calibration.intercept) || !isfinite(c->calibration.slope) ||
        c->calibration.slope <= 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.calibration: intercept %g, slope %g; both must be finite "
                         "and slope > 0",
                         c->calibration.intercept, c->calibration.slope);
    if (!finite_in(c->bands.medium, 0, 100) || !finite_in(c->bands.high, 0, 100) ||
        c->bands.medium > c->bands.high)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "WeightConfig.bands: high %g, medium %g; need 0 <= medium <= high <= 100",
                         c->bands.high, c->bands.medium);
    if (c->has_training) {
        const cl_training_summary *t = &c->training;
        if (t->n_won < 0 || t->n_lost < 0 || t->window_start > t->window_end || !isfinite(t->l2) ||
            t->l2 < 0 || !isfinite(t->effective_n) || t->effective_n < 0 ||
            (t->half_life_days.present &&
             (!isfinite(t->half_life_days.value) || t->half_life_days.value <= 0)) ||
            !opt_in(t->max_weight_change, 0, 1))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.training: counts must be >= 0, window_start <= "
                             "window_end, l2 and effective_n >= 0, half_life_days > 0, "
                             "max_weight_change 0..1");
    }
    if (c->n_validation > CL_MAX_FOLDS)
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.validation: %zu folds, at most %d",
                         c->n_validation, CL_MAX_FOLDS);
    for (size_t i = 0; i < c->n_validation; i++) {
        const cl_validation_fold *f = &c->validation[i];
        if (f->n < 0 || f->test_start > f->test_end || !opt_in(f->auc, 0, 1) ||
            !opt_in(f->brier, 0, 1) || !opt_in(f->ece, 0, 1) ||
            !opt_in(f->precision_at_high, 0, 1) || !opt_in(f->champion_auc, 0, 1))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.validation[%zu]: n >= 0, test_start <= test_end and "
                             "statistics within 0..1 required",
                             i);
    }
    if (c->has_comparison) {
        const cl_champion_comparison *k = &c->comparison;
        if (!finite_in(k->delta_auc, -1, 1) || !finite_in(k->p_value, 0, 1) || k->n_paired < 0 ||
            !opt_in(k->delta_precision_at_high, -1, 1))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "WeightConfig.comparison: delta_auc %g (-1..1), p_value %g (0..1), "
                             "n_paired %lld (>= 0) out of range",
                             k->delta_auc, k->p_value, (long long)k->n_paired);
    }
    if (!terminated(c->reason, sizeof c->reason))
        return cl_seterr(err, errlen, CL_EINVAL, "WeightConfig.reason: longer than %d bytes",
                         CL_REASON_MAX);
    return CL_OK;
}

static int compare_category(const void *a, const void *b)
{
    return strcmp(((const cl_category_rate *)a)->category, ((const cl_category_rate *)b)->category);
}

void cl_weight_config_sort_categories(cl_weight_config *c)
{
    for (size_t i = 0; i < c->n_components && i < CL_MAX_COMPONENT_DEFS; i++) {
        cl_component_def *d = &c->components[i];
        if (d->n_categories > 1 && d->n_categories <= CL_MAX_CATEGORIES)
            qsort(d->categories, d->n_categories, sizeof d->categories[0], compare_category);
    }
}

/* ---- lookups ------------------------------------------------------------------------ */

const cl_weight_set *cl_weights_for_stage(const cl_weight_config *c, const char *stage)
{
    if (stage != NULL)
        for (size_t i = 0; i < c->n_stage_weights; i++)
            if (strcmp(c->stage_weights[i].stage, stage) == 0) return &c->stage_weights[i].weights;
    return &c->weights;
}

const cl_component_def *cl_component_def_find(const cl_weight_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_components && i < CL_MAX_COMPONENT_DEFS; i++)
        if (strcmp(c->components[i].name, name) == 0) return &c->components[i];
    return NULL;
}

/* ---- learned components ---------------------------------------------------------------- */

double cl_category_win_rate_value(const cl_component_def *d, const char *category)
{
    if (category != NULL && category[0] != '\0') {
        size_t lo = 0, hi = d->n_categories;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int cmp = strcmp(d->categories[mid].category, category);
            if (cmp == 0) return 100.0 * d->categories[mid].rate;
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return 100.0 * d->overall_rate;
}

double cl_numeric_percentile_value(const cl_component_def *d, cl_opt_double x)
{
    if (!x.present || !isfinite(x.value) || d->n_breakpoints < CL_MIN_BREAKPOINTS)
        return d->missing_value;
    const double *b = d->breakpoints;
    size_t k = d->n_breakpoints;
    double v = x.value, pct;
    /* less = #breakpoints < v, upto = #breakpoints <= v (binary searches on sorted b). */
    size_t lo = 0, hi = k;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t less = lo;
    hi = k;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t equal = lo - less;
    if (equal > 0) {
        pct = ((double)less + (double)(equal - 1) / 2.0) / (double)(k - 1);
    } else if (less == 0) {
        pct = 0.0;
    } else if (less == k) {
        pct = 1.0;
    } else {
        size_t j = less - 1; /* b[j] < v < b[j+1] */
        pct = ((double)j + (v - b[j]) / (b[j + 1] - b[j])) / (double)(k - 1);
    }
    double value = 100.0 * pct;
    if (value < 0) value = 0;
    if (value > 100) value = 100;
    return d->descending ? 100.0 - value : value;
}

const char *cl_snapshot_category(const cl_snapshot *s, const char *source)
{
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"stage", offsetof(cl_snapshot, stage)},
        {"segment", offsetof(cl_snapshot, segment)},
        {"region", offsetof(cl_snapshot, region)},
        {"product", offsetof(cl_snapshot, product)},
        {"lead_source", offsetof(cl_snapshot, lead_source)},
        {"type", offsetof(cl_snapshot, type)},
        {"owner_id", offsetof(cl_snapshot, owner_id)},
        {"account_id", offsetof(cl_snapshot, account_id)},
        {"currency", offsetof(cl_snapshot, currency)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(fields[i].name, source) == 0) return (const char *)s + fields[i].offset;
    const char *a = cl_snapshot_attribute(s, source);
    return a ? a : "";
}

cl_opt_double cl_snapshot_numeric(const cl_snapshot *s, const char *source)
{
    cl_opt_double r = {false, 0};
    int32_t day = cl_day_of_ms(s->snapshot_time);
    if (strcmp(source, "amount") == 0) return s->amount;
    if (strcmp(source, "opportunity_score") == 0) return s->opportunity_score;
    if (strcmp(source, "account_score") == 0) return s->account_score;
    if (strcmp(source, "days_in_stage") == 0) {
        r.present = s->days_in_stage.present;
        r.value = s->days_in_stage.value;
        return r;
    }
    if (strcmp(source, "days_open") == 0) {
        r.present = true;
        r.value = (double)day - (double)s->created_date;
        return r;
    }
    if (strcmp(source, "days_to_close") == 0) {
        r.present = true;
        r.value = (double)s->expected_close_date - (double)day;
        return r;
    }
    int b = cl_builtin_component_index(source);
    if (b >= 0) {
        r.present = true;
        r.value = s->components[b];
        return r;
    }
    r.present = cl_snapshot_feature(s, source, &r.value) == CL_OK;
    return r;
}

int cl_component_value(const cl_weight_config *c, const cl_snapshot *s, const char *name,
                       double *out, char *err, size_t errlen)
{
    int b = cl_builtin_component_index(name);
    if (b >= 0) {
        *out = s->components[b];
        return CL_OK;
    }
    const cl_component_def *d = cl_component_def_find(c, name);
    if (d == NULL)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "%s v%lld: component '%s' is neither built in nor defined", c->model,
                         (long long)c->version, name);
    switch (d->kind) {
    case CL_COMPONENT_FEATURE: {
        double v;
        if (cl_snapshot_feature(s, d->source, &v) != CL_OK) {
            *out = d->missing_value;
            return CL_OK;
        }
        if (!finite_in(v, 0, 100))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "snapshot %s: feature '%s' is %g, component '%s' needs 0..100",
                             s->opportunity_id, d->source, v, d->name);
        *out = v;
        return CL_OK;
    }
    case CL_COMPONENT_CATEGORY_WIN_RATE:
        *out = cl_category_win_rate_value(d, cl_snapshot_category(s, d->source));
        return CL_OK;
    case CL_COMPONENT_NUMERIC_PERCENTILE:
        *out = cl_numeric_percentile_value(d, cl_snapshot_numeric(s, d->source));
        return CL_OK;
    }
    return cl_seterr(err, errlen, CL_EINVAL, "component '%s': unknown kind %d", d->name,
                     (int)d->kind);
}

/* ---- scoring ---------------------------------------------------------------------------- */

int cl_score_components(const cl_weight_config *c, const cl_snapshot *s,
                        const cl_weight_set **weights_out, double values[CL_MAX_WEIGHTS], char *err,
                        size_t errlen)
{
    const cl_weight_set *w = cl_weights_for_stage(c, s->stage);
    if (w->n > CL_MAX_WEIGHTS)
        return cl_seterr(err, errlen, CL_EINVAL, "%s v%lld: %zu weights, at most %d", c->model,
                         (long long)c->version, w->n, CL_MAX_WEIGHTS);
    for (size_t i = 0; i < w->n; i++) {
        int rc = cl_component_value(c, s, w->items[i].component, &values[i], err, errlen);
        if (rc != CL_OK) return rc;
    }
    *weights_out = w;
    return CL_OK;
}

double cl_score_linear(const cl_weight_set *w, const double *values)
{
    double sum = 0;
    for (size_t i = 0; i < w->n; i++)
        sum += w->items[i].weight * values[i];
    /* Weights sum to 1 only within CL_WEIGHT_SUM_TOLERANCE: clamp the rounding. */
    if (!(sum > 0)) return 0;
    return sum > 100 ? 100 : sum;
}

cl_band cl_band_of(const cl_band_thresholds *b, double score)
{
    if (score >= b->high) return CL_BAND_HIGH;
    if (score >= b->medium) return CL_BAND_MEDIUM;
    return CL_BAND_LOW;
}

double cl_calibrated_probability(const cl_calibration *cal, double score)
{
    double z = cal->intercept + cal->slope * score;
    /* exp() of a large positive argument overflows; use the form whose exponent is <= 0. */
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

int cl_score_snapshot(const cl_weight_config *c, const cl_snapshot *s, cl_score_result *out,
                      char *err, size_t errlen)
{
    const cl_weight_set *w;
    double values[CL_MAX_WEIGHTS];
    int rc = cl_score_components(c, s, &w, values, err, errlen);
    if (rc != CL_OK) return rc;
    out->score = cl_score_linear(w, values);
    out->band = cl_band_of(&c->bands, out->score);
    out->probability = cl_calibrated_probability(&c->calibration, out->score);
    return CL_OK;
}

int cl_score_entry_for(const cl_weight_config *c, const cl_snapshot *s, cl_score_entry *out,
                       char *err, size_t errlen)
{
    cl_score_result r;
    int rc = cl_score_snapshot(c, s, &r, err, errlen);
    if (rc != CL_OK) return rc;
    memset(out, 0, sizeof *out);
    memcpy(out->model, c->model, sizeof out->model);
    out->model[sizeof out->model - 1] = '\0';
    out->version = c->version;
    out->score = r.score;
    out->band = r.band;
    out->probability = r.probability;
    return CL_OK;
}
