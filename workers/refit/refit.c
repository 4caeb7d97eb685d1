/*
 * refit.c — selection, columns, discovery, fit, validation, decision; the A/B trial.
 */
#include "refit.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"
#include "util.h"

#define DAY_MS 86400000LL

/* ---- options ------------------------------------------------------------------- */

void cl_refit_options_default(cl_refit_options *o)
{
    memset(o, 0, sizeof *o);
    o->horizon = CL_HORIZON_ALL_SNAPSHOTS;
    o->horizon_days = 7;
    o->min_won = 30;
    o->min_lost = 30;
    o->l2_per_example = 1.0;
    o->half_life_days = 365;
    o->max_weight_change = 0.10;
    o->stage_weights = 0;
    o->stage_min_won = 50;
    o->stage_min_lost = 50;
    o->stage_l2_per_example = 50.0;
    o->folds = 5;
    o->min_train_won = 20;
    o->min_train_lost = 20;
    o->min_auc_gain = 0.002;
    o->discover = 1;
    cl_factor_options_default(&o->factor);
    o->permutations = 19;
    o->seed = 1;
    o->window_days = 30;
    o->min_paired = 100;
    o->p_value = 0.05;
    o->max_trial_days = 90;
    o->promotion_horizon_days = 7;
}

const cl_option cl_refit_options_table[] = {
    {"refit.min.won", CL_OPT_INT, "30",
     "Refuse to fit (publish nothing) with fewer won opportunities than this.", 0, 1, 1e9},
    {"refit.min.lost", CL_OPT_INT, "30",
     "Refuse to fit (publish nothing) with fewer lost opportunities than this.", 0, 1, 1e9},
    {"refit.horizon", CL_OPT_STRING, "all-snapshots",
     "Which snapshots are examples: all-snapshots (each opportunity one vote), "
     "latest-before-horizon or first-snapshot."},
    {"refit.horizon.days", CL_OPT_INT, "7",
     "latest-before-horizon: the latest snapshot taken at least this many days before close.", 0, 0,
     3650},
    {"refit.l2", CL_OPT_DOUBLE, "1.0",
     "L2 strength toward the champion's weights, per example (lambda = this * n).", 0, 0, 1e9},
    {"refit.half.life.days", CL_OPT_DOUBLE, "365",
     "Recency weighting half-life in days over close dates (0: unweighted).", 0, 0, 1e6},
    {"refit.max.weight.change", CL_OPT_DOUBLE, "0.10",
     "Per-refit cap on |new weight - champion weight| (0: uncapped).", 0, 0, 1},
    {"refit.stage.weights", CL_OPT_BOOL, "false",
     "Fit stage-specific weights (shrunk toward the global ones) where a stage has enough "
     "outcomes."},
    {"refit.stage.min.won", CL_OPT_INT, "50", "Won outcomes a stage needs for its own weights.", 0,
     1, 1e9},
    {"refit.stage.min.lost", CL_OPT_INT, "50", "Lost outcomes a stage needs for its own weights.",
     0, 1, 1e9},
    {"refit.stage.l2", CL_OPT_DOUBLE, "50",
     "L2 strength of stage weights toward the global weights, per example.", 0, 0, 1e9},
    {"refit.folds", CL_OPT_INT, "5", "Rolling-origin validation folds (test windows).", 0, 1, 16},
    {"refit.min.train.won", CL_OPT_INT, "20",
     "Won examples a validation fold needs in its training part.", 0, 1, 1e9},
    {"refit.min.train.lost", CL_OPT_INT, "20",
     "Lost examples a validation fold needs in its training part.", 0, 1, 1e9},
    {"refit.min.auc.gain", CL_OPT_DOUBLE, "0.002",
     "Validated AUC gain over the champion a CHALLENGER needs (log loss must also improve "
     "and precision at HIGH may not drop).",
     0, 0, 1},
    {"refit.discover", CL_OPT_BOOL, "true",
     "Look for learned factors among the candidate attributes."},
    {"refit.factors.categorical", CL_OPT_STRING, "owner_id,lead_source,segment,region,product,type",
     "Comma-separated categorical attributes whose point-in-time win rate is a candidate "
     "factor."},
    {"refit.factors.numeric", CL_OPT_STRING, "amount,days_open",
     "Comma-separated numeric attributes whose percentile is a candidate factor."},
    {"refit.factor.smoothing", CL_OPT_DOUBLE, "20",
     "Prior strength m of category win rates: (won + m*p) / (n + m).", 0, 0, 1e6},
    {"refit.factor.min.support", CL_OPT_INT, "10",
     "Outcomes a category needs to get its own win rate (else the overall rate).", 0, 1, 1e9},
    {"refit.permutations", CL_OPT_INT, "19",
     "Shuffled-label repetitions a factor must beat (level 1/(permutations+1)).", 0, 1, 999},
    {"refit.seed", CL_OPT_INT, "1", "Seed of the label shuffles (reproducible refits).", 0, 0,
     9e15},
    {"refit.window.days", CL_OPT_INT, "30",
     "A/B trial: close dates of the paired outcomes must span this many days.", 0, 0, 3650},
    {"refit.min.paired", CL_OPT_INT, "100",
     "A/B trial: opportunities scored by both champion and challenger needed.", 0, 4, 1e9},
    {"refit.p.value", CL_OPT_DOUBLE, "0.05", "A/B trial: DeLong p-value needed to promote.", 0,
     1e-12, 0.5},
    {"refit.max.trial.days", CL_OPT_INT, "90",
     "A/B trial: reject a challenger that has not won after this many days of outcomes.", 0, 1,
     3650},
    {"refit.promotion.horizon.days", CL_OPT_INT, "7",
     "A/B trial: use each opportunity's latest snapshot taken at least this many days before "
     "close.",
     0, 0, 3650},
    {NULL},
};

static int split_list(char *text, const char **out, size_t max, size_t *n, const char *key,
                      char *err, size_t errlen)
{
    *n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(text, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            *--end = '\0';
        if (!*tok) continue;
        if (*n == max)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: more than %zu entries", key, max);
        if (strlen(tok) > 100)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: '%.40s...' is too long", key, tok);
        out[(*n)++] = tok;
    }
    return CL_OK;
}

int cl_refit_options_from(cl_refit_options *o, const cl_config *cfg, cl_refit_option_storage *st,
                          char *err, size_t errlen)
{
    cl_refit_options_default(o);
    const char *h = cl_config_str(cfg, "refit.horizon");
    if (strcmp(h, "all-snapshots") == 0)
        o->horizon = CL_HORIZON_ALL_SNAPSHOTS;
    else if (strcmp(h, "latest-before-horizon") == 0)
        o->horizon = CL_HORIZON_LATEST_BEFORE_HORIZON;
    else if (strcmp(h, "first-snapshot") == 0)
        o->horizon = CL_HORIZON_FIRST_SNAPSHOT;
    else
        return cl_seterr(err, errlen, CL_EINVAL,
                         "refit.horizon (%s): '%s' is not all-snapshots, latest-before-horizon "
                         "or first-snapshot",
                         cl_config_source(cfg, "refit.horizon"), h);
    o->horizon_days = (int32_t)cl_config_int(cfg, "refit.horizon.days");
    o->min_won = (size_t)cl_config_int(cfg, "refit.min.won");
    o->min_lost = (size_t)cl_config_int(cfg, "refit.min.lost");
    o->l2_per_example = cl_config_double(cfg, "refit.l2");
    o->half_life_days = cl_config_double(cfg, "refit.half.life.days");
    o->max_weight_change = cl_config_double(cfg, "refit.max.weight.change");
    o->stage_weights = cl_config_bool(cfg, "refit.stage.weights");
    o->stage_min_won = (size_t)cl_config_int(cfg, "refit.stage.min.won");
    o->stage_min_lost = (size_t)cl_config_int(cfg, "refit.stage.min.lost");
    o->stage_l2_per_example = cl_config_double(cfg, "refit.stage.l2");
    o->folds = (size_t)cl_config_int(cfg, "refit.folds");
    o->min_train_won = (size_t)cl_config_int(cfg, "refit.min.train.won");
    o->min_train_lost = (size_t)cl_config_int(cfg, "refit.min.train.lost");
    o->min_auc_gain = cl_config_double(cfg, "refit.min.auc.gain");
    o->discover = cl_config_bool(cfg, "refit.discover");
    o->factor.smoothing = cl_config_double(cfg, "refit.factor.smoothing");
    o->factor.min_support = (size_t)cl_config_int(cfg, "refit.factor.min.support");
    o->permutations = (size_t)cl_config_int(cfg, "refit.permutations");
    o->seed = (uint64_t)cl_config_int(cfg, "refit.seed");
    o->window_days = (int32_t)cl_config_int(cfg, "refit.window.days");
    o->min_paired = (size_t)cl_config_int(cfg, "refit.min.paired");
    o->p_value = cl_config_double(cfg, "refit.p.value");
    o->max_trial_days = (int32_t)cl_config_int(cfg, "refit.max.trial.days");
    o->promotion_horizon_days = (int32_t)cl_config_int(cfg, "refit.promotion.horizon.days");
    const char *lists[2] = {cl_config_str(cfg, "refit.factors.categorical"),
                            cl_config_str(cfg, "refit.factors.numeric")};
    const char *keys[2] = {"refit.factors.categorical", "refit.factors.numeric"};
    for (int t = 0; t < 2; t++) {
        if (cl_strlcpy(st->text[t], lists[t] ? lists[t] : "", sizeof st->text[t]) != CL_OK)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: longer than %zu bytes", keys[t],
                             sizeof st->text[t] - 1);
        int rc = split_list(st->text[t], t == 0 ? o->category_candidates : o->numeric_candidates,
                            CL_REFIT_MAX_CANDIDATES,
                            t == 0 ? &o->n_category_candidates : &o->n_numeric_candidates, keys[t],
                            err, errlen);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

static int add_unique(const char **list, size_t *n, const char *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(list[i], s) == 0) return CL_OK;
    if (*n == CL_ROWS_MAX_SOURCES)
        return cl_seterr(err, errlen, CL_EINVAL, "more than %d attribute sources",
                         CL_ROWS_MAX_SOURCES);
    list[(*n)++] = s;
    return CL_OK;
}

int cl_refit_rows_spec(const cl_refit_options *o, const cl_weight_config *champion,
                       const cl_weight_config *challenger, cl_rows_spec *spec,
                       const char *cat[CL_ROWS_MAX_SOURCES], const char *num[CL_ROWS_MAX_SOURCES],
                       char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    size_t nc = 0, nn = 0;
    int rc = CL_OK;
    for (size_t i = 0; i < champion->n_components && rc == CL_OK; i++) {
        const cl_component_def *d = &champion->components[i];
        rc = d->kind == CL_COMPONENT_CATEGORY_WIN_RATE
                 ? add_unique(cat, &nc, d->source, err, errlen)
                 : add_unique(num, &nn, d->source, err, errlen);
    }
    if (o->discover) {
        for (size_t i = 0; i < o->n_category_candidates && rc == CL_OK; i++)
            rc = add_unique(cat, &nc, o->category_candidates[i], err, errlen);
        for (size_t i = 0; i < o->n_numeric_candidates && rc == CL_OK; i++)
            rc = add_unique(num, &nn, o->numeric_candidates[i], err, errlen);
    }
    if (rc != CL_OK) return rc;
    spec->cat_sources = cat;
    spec->n_cat = nc;
    spec->num_sources = num;
    spec->n_num = nn;
    cl_strlcpy(spec->tracked[0].model, champion->model, sizeof spec->tracked[0].model);
    spec->tracked[0].version = champion->version;
    spec->tracked[0].high = champion->bands.high;
    if (challenger) {
        cl_strlcpy(spec->tracked[1].model, challenger->model, sizeof spec->tracked[1].model);
        spec->tracked[1].version = challenger->version;
        spec->tracked[1].high = challenger->bands.high;
    }
    return CL_OK;
}

const char *cl_refit_outcome_name(cl_refit_outcome o)
{
    switch (o) {
    case CL_REFIT_REFUSED:
        return "refused";
    case CL_REFIT_NO_MODEL:
        return "no_model";
    case CL_REFIT_CHALLENGER:
        return "challenger";
    case CL_REFIT_REJECTED:
        return "rejected";
    }
    return "?";
}

const char *cl_trial_decision_name(cl_trial_decision d)
{
    switch (d) {
    case CL_TRIAL_WAIT:
        return "wait";
    case CL_TRIAL_PROMOTE:
        return "promote";
    case CL_TRIAL_REJECT:
        return "reject";
    }
    return "?";
}

void cl_refit_result_free(cl_refit_result *r)
{
    free(r->config);
    r->config = NULL;
}

/* ---- selection ------------------------------------------------------------------ */

int cl_refit_select(const cl_training_rows *rows, cl_horizon_policy policy, int32_t horizon_days,
                    uint8_t *use, double *base_weight, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < rows->n) {
        size_t end = i;
        while (end < rows->n && rows->opp[end] == rows->opp[i])
            end++;
        size_t pick = SIZE_MAX;
        for (size_t r = i; r < end; r++) {
            use[r] = 0;
            base_weight[r] = 0;
            if (policy == CL_HORIZON_LATEST_BEFORE_HORIZON) {
                if (rows->days_before_close[r] >= horizon_days &&
                    (pick == SIZE_MAX || rows->snapshot_time[r] > rows->snapshot_time[pick]))
                    pick = r;
            } else if (policy == CL_HORIZON_FIRST_SNAPSHOT) {
                if (pick == SIZE_MAX || rows->snapshot_time[r] < rows->snapshot_time[pick])
                    pick = r;
            }
        }
        if (policy == CL_HORIZON_ALL_SNAPSHOTS) {
            for (size_t r = i; r < end; r++) {
                use[r] = 1;
                base_weight[r] = 1.0 / (double)(end - i);
            }
        } else if (pick != SIZE_MAX) {
            use[pick] = 1;
            base_weight[pick] = 1.0;
        }
        i = end;
    }
    (void)err;
    (void)errlen;
    return CL_OK;
}

/* Did precision at HIGH drop from model a (tp_a won among n_a HIGH) to model b? Only a
 * significant drop counts (one-sided two-proportion z-test at alpha): a few dozen
 * HIGH-scored outcomes make a raw difference mostly noise. A model b that scores nobody
 * HIGH while a did, with some wins, has dropped. Counts may be weighted (then the test
 * is approximate). *p_out: the one-sided p-value (1 when b is not lower). */
static int precision_dropped(double tp_a, double n_a, double tp_b, double n_b, double alpha,
                             double *p_out)
{
    *p_out = 1;
    if (n_b <= 0) return n_a > 0 && tp_a > 0;
    if (n_a <= 0 || tp_b / n_b >= tp_a / n_a) return 0;
    double pooled = (tp_a + tp_b) / (n_a + n_b);
    double se = sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b));
    double z = se > 0 ? (tp_a / n_a - tp_b / n_b) / se : INFINITY;
    *p_out = cl_normal_sf(z);
    return *p_out < alpha;
}

/* ---- the refit ----------------------------------------------------------------- */

typedef struct {
    char name[CL_NAME_MAX + 1];
    const double *col; /* full rows length */
    double *owned;     /* col when computed here */
    int learned;
    cl_component_def def;
    double prior;
    int candidate;
    int time_based;
} column;

static void reasonf(cl_refit_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reasonf(cl_refit_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
}

static size_t find_source(const char (*sources)[CL_NAME_MAX + 1], size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(sources[i], s) == 0) return i;
    return SIZE_MAX;
}

typedef struct {
    size_t n;    /* selected rows */
    size_t *idx; /* row index of each selected example */
    double *x;   /* column-major k x n */
    uint8_t *won;
    double *base;   /* base weights */
    double *weight; /* base x recency */
    int32_t *close;
    uint32_t *stage;
} design;

static void design_free(design *d)
{
    free(d->idx);
    free(d->x);
    free(d->won);
    free(d->base);
    free(d->weight);
    free(d->close);
    free(d->stage);
}

static int design_fill(design *d, column *cols, const size_t *which, size_t k)
{
    free(d->x);
    d->x = malloc((k ? k : 1) * (d->n ? d->n : 1) * sizeof *d->x);
    if (!d->x) return CL_ENOMEM;
    for (size_t j = 0; j < k; j++) {
        const double *c = cols[which[j]].col;
        double *dst = d->x + j * d->n;
        for (size_t i = 0; i < d->n; i++)
            dst[i] = c[d->idx[i]];
    }
    return CL_OK;
}

static int finite_result(const cl_fit_result *r)
{
    if (!isfinite(r->intercept) || !isfinite(r->slope) || r->slope <= 0) return 0;
    for (size_t j = 0; j < r->k; j++)
        if (!isfinite(r->weights[j]) || r->weights[j] < 0) return 0;
    return 1;
}

/* Weights into a set, renormalized so the sum is 1 within 1e-9 (else a bug). */
static int put_weights(cl_weight_set *ws, column *cols, const size_t *which, size_t k,
                       const double *w, char *err, size_t errlen)
{
    double sum = 0;
    for (size_t j = 0; j < k; j++)
        sum += w[j];
    if (!(sum > 0) || !isfinite(sum))
        return cl_seterr(err, errlen, CL_ERR, "weights sum to %g", sum);
    double check = 0;
    ws->n = 0;
    for (size_t j = 0; j < k; j++) {
        double v = w[j] / sum;
        if (!isfinite(v) || v < 0)
            return cl_seterr(err, errlen, CL_ERR, "weight of %s is %g", cols[which[j]].name, v);
        check += v;
        int rc = cl_weight_set_put(ws, cols[which[j]].name, v, err, errlen);
        if (rc != CL_OK) return rc;
    }
    if (fabs(check - 1.0) > 1e-9)
        return cl_seterr(err, errlen, CL_ERR, "weights sum to %.17g after normalization", check);
    return CL_OK;
}

typedef struct {
    uint32_t stage;
    size_t n;
} stage_count;

static int cmp_stage_count(const void *a, const void *b)
{
    const stage_count *x = a, *y = b;
    if (x->n != y->n) return (x->n < y->n) - (x->n > y->n);
    return (x->stage > y->stage) - (x->stage < y->stage);
}

static int cmp_gain_desc(const void *a, const void *b)
{
    const cl_refit_factor_report *const *x = a, *const *y = b;
    return ((*x)->gain_auc < (*y)->gain_auc) - ((*x)->gain_auc > (*y)->gain_auc);
}

_Static_assert(CL_REFIT_MAX_CANDIDATES <= CL_MAX_DISCOVERY,
               "every candidate's evidence must fit in WeightConfig.discovery");

/* The published form of a candidate's evidence. A gain that is not finite (a fold
 * without both outcomes can make one) is published as not evaluated rather than
 * invented. */
static void discovery_entry(const cl_refit_factor_report *fr, size_t n_examples,
                            size_t permutations, cl_candidate_evidence *e)
{
    memset(e, 0, sizeof *e);
    cl_strlcpy(e->name, fr->name, sizeof e->name);
    cl_strlcpy(e->source, fr->source, sizeof e->source);
    e->kind = fr->kind;
    int ok = fr->evaluated && isfinite(fr->gain_auc) && isfinite(fr->gain_log_loss) &&
             isfinite(fr->null_gain_auc) && isfinite(fr->null_gain_log_loss);
    if (ok) {
        e->delta_auc = (cl_opt_double){true, fmin(1, fmax(-1, fr->gain_auc))};
        e->delta_log_loss = (cl_opt_double){true, fr->gain_log_loss};
        e->shuffled_max_delta_auc = (cl_opt_double){true, fmin(1, fmax(-1, fr->null_gain_auc))};
        e->shuffled_max_delta_log_loss = (cl_opt_double){true, fr->null_gain_log_loss};
        e->beats_shuffled = fr->beats_shuffled != 0;
        e->adopted = fr->adopted != 0;
    }
    e->permutations = permutations > INT32_MAX ? INT32_MAX : (int32_t)permutations;
    e->n_examples = (int64_t)n_examples;
    e->n_with_value = (int64_t)fr->n_with_value;
    e->n_categories = (int64_t)fr->n_categories;
}

int cl_refit_run(const cl_training_rows *rows, const cl_weight_config *champion,
                 const cl_refit_options *o, int64_t version, int64_t now_ms, cl_refit_result *res,
                 char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    res->outcome = CL_REFIT_NO_MODEL;
    int rc = CL_OK;
    size_t m = rows->n;
    uint8_t *use = malloc(m ? m : 1);
    double *base_all = malloc((m ? m : 1) * sizeof *base_all);
    column *cols =
        calloc(CL_NUM_BUILTINS + CL_MAX_COMPONENT_DEFS + CL_REFIT_MAX_CANDIDATES * 2, sizeof *cols);
    design d = {0};
    cl_fold_metrics *fc = calloc(CL_MAX_FOLDS, sizeof *fc), *fh = calloc(CL_MAX_FOLDS, sizeof *fh);
    cl_fit_result *fit = calloc(1, sizeof *fit);
    cl_fit_result *stage_fits = NULL;
    int *stage_fitted = NULL;
    size_t ncols = 0;
    if (!use || !base_all || !cols || !fc || !fh || !fit) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
        goto done;
    }

    /* 1. selection */
    cl_refit_select(rows, o->horizon, o->horizon_days, use, base_all, err, errlen);
    for (size_t i = 0; i < m; i++)
        d.n += use[i];
    d.idx = malloc((d.n ? d.n : 1) * sizeof *d.idx);
    d.won = malloc(d.n ? d.n : 1);
    d.base = malloc((d.n ? d.n : 1) * sizeof *d.base);
    d.weight = malloc((d.n ? d.n : 1) * sizeof *d.weight);
    d.close = malloc((d.n ? d.n : 1) * sizeof *d.close);
    d.stage = malloc((d.n ? d.n : 1) * sizeof *d.stage);
    if (!d.idx || !d.won || !d.base || !d.weight || !d.close || !d.stage) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
        goto done;
    }
    {
        size_t q = 0;
        uint32_t last_opp = UINT32_MAX;
        for (size_t i = 0; i < m; i++) {
            if (!use[i]) continue;
            d.idx[q] = i;
            d.won[q] = rows->won[i];
            d.base[q] = base_all[i];
            d.close[q] = rows->close_day[i];
            d.stage[q] = rows->stage[i];
            if (rows->opp[i] != last_opp) {
                last_opp = rows->opp[i];
                res->n_opps++;
                if (rows->won[i])
                    res->n_won++;
                else
                    res->n_lost++;
            }
            q++;
        }
    }
    res->n_examples = d.n;

    /* 2. refusal */
    if (res->n_won < o->min_won || res->n_lost < o->min_lost) {
        res->outcome = CL_REFIT_REFUSED;
        reasonf(res,
                "refusing to fit: %zu won and %zu lost opportunities in the training set, "
                "refit.min.won=%zu and refit.min.lost=%zu are needed",
                res->n_won, res->n_lost, o->min_won, o->min_lost);
        goto done;
    }

    /* 3. columns: built-ins, the champion's learned components (rebuilt), candidates */
    size_t folds = o->folds > CL_MAX_FOLDS ? CL_MAX_FOLDS : o->folds;
    cl_cv_window windows[CL_MAX_FOLDS];
    size_t nwin = 0;
    rc = cl_cv_windows(d.close, d.n, folds, windows, &nwin, err, errlen);
    if (rc != CL_OK) goto done;
    int32_t direction_before = nwin > 0 ? windows[0].test_start : INT32_MAX;

    for (int j = 0; j < CL_NUM_BUILTINS; j++) {
        column *c = &cols[ncols++];
        cl_strlcpy(c->name, cl_builtin_component_names[j], sizeof c->name);
        c->col = rows->components[j];
        double w = 0;
        c->prior = cl_weight_set_get(&champion->weights, c->name, &w) == CL_OK ? w : 0;
    }
    for (size_t i = 0; i < champion->n_components; i++) {
        const cl_component_def *cd = &champion->components[i];
        column *c = &cols[ncols];
        c->owned = malloc((m ? m : 1) * sizeof *c->owned);
        if (!c->owned) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
            goto done;
        }
        c->col = c->owned;
        c->learned = 1;
        cl_strlcpy(c->name, cd->name, sizeof c->name);
        size_t src;
        if (cd->kind == CL_COMPONENT_CATEGORY_WIN_RATE) {
            src = find_source(rows->cat_source, rows->n_cat, cd->source);
            cl_factor_options fo = o->factor;
            fo.smoothing = cd->smoothing;
            rc = src == SIZE_MAX
                     ? CL_ENOTFOUND
                     : cl_factor_category(rows, src, cd->name, &fo, c->owned, &c->def, err, errlen);
        } else {
            src = find_source(rows->num_source, rows->n_num, cd->source);
            if (src != SIZE_MAX && cd->kind == CL_COMPONENT_FEATURE) {
                cl_factor_feature(rows, src, cd->missing_value, c->owned);
                c->def = *cd;
                rc = CL_OK;
            } else {
                rc = src == SIZE_MAX
                         ? CL_ENOTFOUND
                         : cl_factor_percentile(rows, src, cd->name, use, cd->descending ? -1 : 1,
                                                0, c->owned, &c->def, err, errlen);
                if (rc == CL_ENOTFOUND && src != SIZE_MAX) {
                    /* Too few values to re-estimate the breakpoints: keep the champion's
                     * (a percentile uses no labels, so the frozen table leaks nothing). */
                    c->def = *cd;
                    for (size_t r = 0; r < m; r++) {
                        double x = rows->num[src][r];
                        c->owned[r] = cl_numeric_percentile_value(
                            cd, (cl_opt_double){isfinite(x), isfinite(x) ? x : 0});
                    }
                    rc = CL_OK;
                }
            }
        }
        if (rc != CL_OK) {
            /* The rows spec carries every source of the champion's components, so this
             * is a caller error, not a data problem. */
            free(c->owned);
            c->owned = NULL;
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "champion v%" PRId64 " component '%s' (source '%s') cannot be rebuilt "
                           "from the training set",
                           champion->version, cd->name, cd->source);
            goto done;
        }
        double w = 0;
        c->prior = cl_weight_set_get(&champion->weights, c->name, &w) == CL_OK ? w : 0;
        ncols++;
    }
    size_t k_base = ncols;
    size_t n_defs_left = CL_MAX_COMPONENT_DEFS - champion->n_components;
    if (o->discover && n_defs_left > 0) {
        for (size_t i = 0; i < o->n_category_candidates + o->n_numeric_candidates; i++) {
            int is_cat = i < o->n_category_candidates;
            const char *source = is_cat ? o->category_candidates[i]
                                        : o->numeric_candidates[i - o->n_category_candidates];
            int taken = 0;
            for (size_t c2 = CL_NUM_BUILTINS; c2 < ncols; c2++)
                if (strcmp(cols[c2].def.source, source) == 0 &&
                    (cols[c2].def.kind == CL_COMPONENT_CATEGORY_WIN_RATE) == is_cat)
                    taken = 1;
            if (taken || res->n_factors == CL_REFIT_MAX_CANDIDATES) continue;
            if (!is_cat && cl_factor_is_time_based(source) &&
                o->horizon != CL_HORIZON_ALL_SNAPSHOTS)
                continue; /* selection bias: see docs/refit.md */
            column *c = &cols[ncols];
            memset(c, 0, sizeof *c);
            c->owned = malloc((m ? m : 1) * sizeof *c->owned);
            if (!c->owned) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
                goto done;
            }
            c->col = c->owned;
            c->learned = c->candidate = 1;
            snprintf(c->name, sizeof c->name, "%.100s%s", source, is_cat ? "_win_rate" : "_pct");
            char ferr[CL_ERRLEN];
            int frc;
            if (is_cat) {
                size_t src = find_source(rows->cat_source, rows->n_cat, source);
                frc = src == SIZE_MAX ? CL_ENOTFOUND
                                      : cl_factor_category(rows, src, c->name, &o->factor, c->owned,
                                                           &c->def, ferr, sizeof ferr);
            } else {
                size_t src = find_source(rows->num_source, rows->n_num, source);
                frc = src == SIZE_MAX
                          ? CL_ENOTFOUND
                          : cl_factor_percentile(rows, src, c->name, use, 0, direction_before,
                                                 c->owned, &c->def, ferr, sizeof ferr);
            }
            if (frc == CL_ENOMEM) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "%s", ferr);
                goto done;
            }
            if (frc != CL_OK) {
                free(c->owned);
                c->owned = NULL;
                continue; /* no data for this attribute */
            }
            cl_refit_factor_report *fr = &res->factors[res->n_factors++];
            memset(fr, 0, sizeof *fr);
            cl_strlcpy(fr->name, c->name, sizeof fr->name);
            cl_strlcpy(fr->source, source, sizeof fr->source);
            fr->kind = c->def.kind;
            if (is_cat) {
                const uint32_t *cat = rows->cat[find_source(rows->cat_source, rows->n_cat, source)];
                for (size_t q = 0; q < d.n; q++)
                    fr->n_with_value += cat[d.idx[q]] != CL_ROWS_NULL_CATEGORY;
                fr->n_categories = c->def.n_categories;
            } else {
                const double *num = rows->num[find_source(rows->num_source, rows->n_num, source)];
                for (size_t q = 0; q < d.n; q++)
                    fr->n_with_value += isfinite(num[d.idx[q]]) != 0;
            }
            ncols++;
        }
    }

    double lambda = o->l2_per_example * (double)d.n;
    cl_cv_options cv;
    cl_cv_options_default(&cv);
    cv.folds = folds;
    cv.min_train_won = o->min_train_won;
    cv.min_train_lost = o->min_train_lost;
    cv.half_life_days = o->half_life_days;
    cv.high_threshold = champion->bands.high;

    /* 4. discovery */
    size_t which[CL_NUM_BUILTINS + CL_MAX_COMPONENT_DEFS + CL_REFIT_MAX_CANDIDATES * 2];
    for (size_t j = 0; j < ncols; j++)
        which[j] = j;
    size_t k = k_base;
    if (ncols > k_base) {
        if ((rc = design_fill(&d, cols, which, ncols)) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
            goto done;
        }
        cl_fit_data dd = {d.n, ncols, d.x, d.won, d.base};
        cl_fit_options fd;
        cl_fit_options_default(&fd);
        fd.mode = CL_FIT_SIMPLEX;
        fd.l2 = lambda;
        cl_discovery_options disc = {o->permutations, o->seed};
        cl_factor_evidence ev[CL_REFIT_MAX_CANDIDATES];
        char derr[CL_ERRLEN];
        int drc =
            cl_fit_discover_factors(&dd, k_base, d.close, &cv, &fd, &disc, ev, derr, sizeof derr);
        if (drc == CL_ENOMEM) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "factor discovery: %s", derr);
            goto done;
        }
        cl_refit_factor_report *adopted[CL_REFIT_MAX_CANDIDATES];
        size_t nad = 0;
        for (size_t c = 0; c < res->n_factors; c++) {
            cl_refit_factor_report *fr = &res->factors[c];
            if (drc != CL_OK) continue;
            fr->evaluated = 1;
            fr->gain_auc = ev[c].gain_auc;
            fr->gain_log_loss = ev[c].gain_log_loss;
            fr->null_gain_auc = ev[c].null_gain_auc;
            fr->null_gain_log_loss = ev[c].null_gain_log_loss;
            fr->beats_shuffled = ev[c].adopt != 0;
            if (ev[c].adopt) adopted[nad++] = fr;
        }
        qsort(adopted, nad, sizeof *adopted, cmp_gain_desc);
        if (nad > n_defs_left) nad = n_defs_left;
        for (size_t a = 0; a < nad; a++) {
            adopted[a]->adopted = 1;
            which[k++] = k_base + (size_t)(adopted[a] - res->factors);
        }
    }

    /* 5. fit */
    double prior[CL_FIT_MAX_COMPONENTS];
    for (size_t j = 0; j < k; j++)
        prior[j] = cols[which[j]].prior;
    if ((rc = design_fill(&d, cols, which, k)) != CL_OK) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
        goto done;
    }
    if (o->half_life_days > 0) {
        int32_t ref = d.n ? d.close[0] : 0;
        for (size_t i = 0; i < d.n; i++)
            if (d.close[i] > ref) ref = d.close[i];
        rc = cl_fit_recency_weights(d.close, d.base, d.n, ref, o->half_life_days, d.weight, err,
                                    errlen);
        if (rc != CL_OK) goto done;
    } else {
        memcpy(d.weight, d.base, d.n * sizeof *d.weight);
    }
    cl_fit_data fdata = {d.n, k, d.x, d.won, d.weight};
    cl_fit_options fo;
    cl_fit_options_default(&fo);
    fo.mode = CL_FIT_SIMPLEX;
    fo.l2 = lambda;
    fo.prior_weights = prior;
    fo.max_change = o->max_weight_change;
    char ferr[CL_ERRLEN];
    int frc = cl_fit(&fdata, &fo, fit, ferr, sizeof ferr);
    if (frc == CL_ECONFLICT) {
        reasonf(res,
                "no weights exist: no component ranks won above lost opportunities on %zu "
                "examples (%zu won, %zu lost); nothing published (%s)",
                d.n, res->n_won, res->n_lost, ferr);
        goto done;
    }
    if (frc != CL_OK) {
        reasonf(res, "fit failed (%s): %s; nothing published", cl_status_name(frc), ferr);
        goto done;
    }
    if (!finite_result(fit)) {
        reasonf(res,
                "guard rail: the fit returned a non-finite or non-positive parameter "
                "(slope %g); nothing published",
                fit->slope);
        goto done;
    }

    /* 6. stage-specific weights */
    size_t nstages = cl_intern_count(rows->stages);
    stage_count sc[CL_MAX_STAGE_WEIGHTS];
    size_t nsc = 0;
    if (o->stage_weights && nstages > 1) {
        stage_fits = calloc(nstages, sizeof *stage_fits);
        stage_fitted = calloc(nstages, sizeof *stage_fitted);
        if (!stage_fits || !stage_fitted) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
            goto done;
        }
        cl_fit_options so = fo;
        so.prior_weights = NULL;
        int src2 = cl_fit_stages(&fdata, d.stage, nstages, &so, fit,
                                 o->stage_l2_per_example * (double)d.n, o->stage_min_won,
                                 o->stage_min_lost, stage_fits, stage_fitted, ferr, sizeof ferr);
        if (src2 == CL_OK) {
            stage_count *all = calloc(nstages, sizeof *all);
            if (!all) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
                goto done;
            }
            for (uint32_t s = 0; s < nstages; s++)
                all[s].stage = s;
            for (size_t i = 0; i < d.n; i++)
                all[d.stage[i]].n++;
            qsort(all, nstages, sizeof *all, cmp_stage_count);
            for (size_t s = 0; s < nstages && nsc < CL_MAX_STAGE_WEIGHTS; s++)
                if (stage_fitted[all[s].stage] && finite_result(&stage_fits[all[s].stage]) &&
                    cl_intern_string(rows->stages, all[s].stage)[0] != '\0')
                    sc[nsc++] = all[s];
            free(all);
        }
    }

    /* 7. validation: the refit procedure and the champion's weights, same windows */
    cl_fit_data vdata = {d.n, k, d.x, d.won, d.base};
    size_t nfc = 0, nfh = 0;
    frc = cl_fit_cross_validate(&vdata, d.close, &cv, &fo, NULL, fc, &nfc, ferr, sizeof ferr);
    if (frc == CL_OK)
        frc = cl_fit_cross_validate(&vdata, d.close, &cv, &fo, prior, fh, &nfh, ferr, sizeof ferr);
    if (frc != CL_OK) {
        reasonf(res, "validation failed (%s): %s; nothing published", cl_status_name(frc), ferr);
        goto done;
    }
    cl_fold_metrics both_c[CL_MAX_FOLDS], both_h[CL_MAX_FOLDS];
    size_t nb = 0;
    for (size_t f = 0; f < nfc && f < nfh; f++)
        if (fc[f].evaluated && fh[f].evaluated) {
            both_c[nb] = fc[f];
            both_h[nb++] = fh[f];
        }
    res->folds_evaluated = nb;
    if (nb == 0) {
        reasonf(res,
                "cannot validate: none of %zu rolling-origin folds had %zu won and %zu lost "
                "examples to train on and both outcomes to test on; nothing published",
                nfc, o->min_train_won, o->min_train_lost);
        goto done;
    }
    res->challenger_cv = cl_fit_cv_mean(both_c, nb);
    res->champion_cv = cl_fit_cv_mean(both_h, nb);
    /* Precision at HIGH pooled over the folds (a fold where a model scores nobody HIGH
     * adds nothing, instead of a 0 that a mean would count). */
    double tpC = 0, nC = 0, tpH = 0, nH = 0;
    for (size_t f = 0; f < nb; f++) {
        tpC += both_c[f].precision_high * both_c[f].n_high;
        nC += both_c[f].n_high;
        tpH += both_h[f].precision_high * both_h[f].n_high;
        nH += both_h[f].n_high;
    }
    res->challenger_cv.precision_high = nC > 0 ? tpC / nC : 0;
    res->challenger_cv.n_high = nC;
    res->champion_cv.precision_high = nH > 0 ? tpH / nH : 0;
    res->champion_cv.n_high = nH;
    const cl_fold_metrics *C = &res->challenger_cv, *H = &res->champion_cv;
    int better_auc = C->auc >= H->auc + o->min_auc_gain;
    int better_ll = C->log_loss < H->log_loss;
    double drop_p = 1;
    int prec_ok = !precision_dropped(tpH, nH, tpC, nC, o->p_value, &drop_p);
    int accept = better_auc && better_ll && prec_ok;

    char adopted_text[512] = "";
    size_t at = 0;
    for (size_t j = k_base; j < k && at < sizeof adopted_text; j++)
        at += (size_t)snprintf(adopted_text + at, sizeof adopted_text - at, "%s%s", at ? ", " : "",
                               cols[which[j]].name);
    if (accept)
        reasonf(res,
                "beat champion v%" PRId64 " on %zu rolling-origin folds: AUC %.4f vs %.4f, "
                "log loss %.4f vs %.4f, precision at HIGH %.3f (n %.0f) vs %.3f (n %.0f); %zu "
                "examples (%zu won, %zu lost opportunities)%s%s",
                champion->version, nb, C->auc, H->auc, C->log_loss, H->log_loss, C->precision_high,
                nC, H->precision_high, nH, d.n, res->n_won, res->n_lost,
                at ? "; learned factors adopted: " : "", adopted_text);
    else
        reasonf(res,
                "did not beat champion v%" PRId64 " on %zu rolling-origin folds: AUC %.4f vs "
                "%.4f (needs +%.4f)%s, log loss %.4f vs %.4f%s, precision at HIGH %.3f (n %.0f) "
                "vs %.3f (n %.0f)%s; %zu examples (%zu won, %zu lost opportunities)",
                champion->version, nb, C->auc, H->auc, o->min_auc_gain,
                better_auc ? "" : " [fails]", C->log_loss, H->log_loss, better_ll ? "" : " [fails]",
                C->precision_high, nC, H->precision_high, nH, prec_ok ? "" : " [fails]", d.n,
                res->n_won, res->n_lost);

    /* 8. the config, under the guard rails */
    cl_weight_config *c = malloc(sizeof *c);
    if (!c) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "refit: out of memory");
        goto done;
    }
    cl_weight_config_init(c);
    cl_strlcpy(c->model, champion->model, sizeof c->model);
    c->version = version;
    c->parent_version = (cl_opt_long){true, champion->version};
    c->status = accept ? CL_MODEL_CHALLENGER : CL_MODEL_REJECTED;
    c->created_at = now_ms;
    c->calibration = (cl_calibration){fit->intercept, fit->slope};
    c->bands = champion->bands;
    char gerr[CL_ERRLEN];
    int grc = put_weights(&c->weights, cols, which, k, fit->weights, gerr, sizeof gerr);
    for (size_t s = 0; s < nsc && grc == CL_OK; s++) {
        cl_stage_weights *sw = &c->stage_weights[c->n_stage_weights++];
        cl_strlcpy(sw->stage, cl_intern_string(rows->stages, sc[s].stage), sizeof sw->stage);
        grc = put_weights(&sw->weights, cols, which, k, stage_fits[sc[s].stage].weights, gerr,
                          sizeof gerr);
    }
    for (size_t j = CL_NUM_BUILTINS; j < k && grc == CL_OK; j++)
        c->components[c->n_components++] = cols[which[j]].def;
    c->has_training = true;
    int32_t lo = d.close[0], hi = d.close[0];
    for (size_t i = 0; i < d.n; i++) {
        if (d.close[i] < lo) lo = d.close[i];
        if (d.close[i] > hi) hi = d.close[i];
    }
    c->training.window_start = (int64_t)lo * DAY_MS;
    c->training.window_end = ((int64_t)hi + 1) * DAY_MS;
    for (size_t i = 0; i < d.n; i++) {
        if (d.won[i])
            c->training.n_won++;
        else
            c->training.n_lost++;
    }
    c->training.half_life_days = (cl_opt_double){o->half_life_days > 0, o->half_life_days};
    c->training.l2 = lambda;
    c->training.effective_n = isfinite(fit->effective_n) ? fit->effective_n : 0;
    c->training.max_weight_change = (cl_opt_double){o->max_weight_change > 0, o->max_weight_change};
    for (size_t f = 0; f < nfc && c->n_validation < CL_MAX_FOLDS; f++) {
        cl_validation_fold *vf = &c->validation[c->n_validation++];
        vf->fold = (int32_t)f;
        vf->test_start = (int64_t)fc[f].window.test_start * DAY_MS;
        vf->test_end = (int64_t)fc[f].window.test_end * DAY_MS;
        vf->n = (int64_t)fc[f].n_test;
        if (fc[f].evaluated) {
            vf->auc = (cl_opt_double){isfinite(fc[f].auc), fc[f].auc};
            vf->brier = (cl_opt_double){isfinite(fc[f].brier), fc[f].brier};
            vf->ece = (cl_opt_double){isfinite(fc[f].ece), fc[f].ece};
            vf->precision_at_high =
                (cl_opt_double){isfinite(fc[f].precision_high), fc[f].precision_high};
        }
        if (f < nfh && fh[f].evaluated)
            vf->champion_auc = (cl_opt_double){isfinite(fh[f].auc), fh[f].auc};
    }
    cl_strlcpy(c->reason, res->reason, sizeof c->reason);
    for (size_t f = 0; f < res->n_factors && c->n_discovery < CL_MAX_DISCOVERY; f++)
        discovery_entry(&res->factors[f], d.n, o->permutations, &c->discovery[c->n_discovery++]);
    cl_weight_config_sort_categories(c);
    if (grc == CL_OK) grc = cl_weight_config_validate(c, gerr, sizeof gerr);
    if (grc == CL_OK) grc = cl_weight_config_discovery_validate(c, gerr, sizeof gerr);
    if (grc != CL_OK) {
        free(c);
        reasonf(res, "guard rail: the refitted config is invalid (%s); nothing published", gerr);
        goto done;
    }
    res->config = c;
    res->outcome = accept ? CL_REFIT_CHALLENGER : CL_REFIT_REJECTED;

done:
    for (size_t j = 0; cols && j < ncols; j++)
        free(cols[j].owned);
    free(cols);
    free(use);
    free(base_all);
    design_free(&d);
    free(fc);
    free(fh);
    free(fit);
    free(stage_fits);
    free(stage_fitted);
    return rc;
}

/* ---- the A/B trial -------------------------------------------------------------- */

int cl_refit_evaluate_trial(const cl_training_rows *rows, const cl_refit_options *o,
                            cl_trial_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->decision = CL_TRIAL_WAIT;
    out->precision_drop_p = 1;
    size_t cap = rows->n_opps ? rows->n_opps : 1;
    double *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    uint8_t *won = malloc(cap), *ha = malloc(cap), *hb = malloc(cap);
    if (!a || !b || !won || !ha || !hb) {
        free(a), free(b), free(won), free(ha), free(hb);
        return cl_seterr(err, errlen, CL_ENOMEM, "trial: out of memory");
    }
    size_t n = 0;
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    size_t i = 0;
    while (i < rows->n) {
        size_t end = i, pick = SIZE_MAX;
        while (end < rows->n && rows->opp[end] == rows->opp[i])
            end++;
        for (size_t r = i; r < end; r++)
            if (rows->has_score[0][r] && rows->has_score[1][r] &&
                rows->days_before_close[r] >= o->promotion_horizon_days &&
                (pick == SIZE_MAX || rows->snapshot_time[r] > rows->snapshot_time[pick]))
                pick = r;
        if (pick != SIZE_MAX) {
            a[n] = rows->score[0][pick];
            b[n] = rows->score[1][pick];
            ha[n] = rows->high[0][pick];
            hb[n] = rows->high[1][pick];
            won[n] = rows->won[pick];
            if (won[n])
                out->n_won++;
            else
                out->n_lost++;
            if (rows->close_day[pick] < lo) lo = rows->close_day[pick];
            if (rows->close_day[pick] > hi) hi = rows->close_day[pick];
            n++;
        }
        i = end;
    }
    out->n_paired = n;
    out->span_days = n ? hi - lo : 0;
    double tp[2] = {0, 0}, pp[2] = {0, 0};
    for (size_t j = 0; j < n; j++) {
        pp[0] += ha[j];
        tp[0] += ha[j] && won[j];
        pp[1] += hb[j];
        tp[1] += hb[j] && won[j];
    }
    out->precision_champion = pp[0] > 0 ? tp[0] / pp[0] : 0;
    out->precision_challenger = pp[1] > 0 ? tp[1] / pp[1] : 0;
    const char *cm = rows->tracked[0].model;
    int64_t cv = rows->tracked[0].version, hv = rows->tracked[1].version;
    if (n < o->min_paired || out->n_won < 2 || out->n_lost < 2) {
        snprintf(out->reason, sizeof out->reason,
                 "trial of %s v%" PRId64 " against v%" PRId64 ": %zu paired outcomes (%zu won, "
                 "%zu lost), %zu needed",
                 cm, hv, cv, n, out->n_won, out->n_lost, o->min_paired);
        goto done;
    }
    char derr[CL_ERRLEN];
    if (cl_stats_delong(a, b, won, n, &out->delong, derr, sizeof derr) != CL_OK) {
        snprintf(out->reason, sizeof out->reason, "trial of %s v%" PRId64 ": DeLong test: %s", cm,
                 hv, derr);
        goto done;
    }
    out->have_delong = 1;
    const cl_delong_result *D = &out->delong;
    /* "Precision at HIGH did not drop": a few dozen HIGH-scored outcomes make the raw
     * difference mostly noise, so a drop counts when it is significant (one-sided
     * two-proportion z-test at p_value), or when the challenger scores nobody HIGH
     * while the champion did. */
    int prec_ok =
        !precision_dropped(tp[0], pp[0], tp[1], pp[1], o->p_value, &out->precision_drop_p);
    char numbers[600];
    snprintf(numbers, sizeof numbers,
             "AUC %.4f vs champion v%" PRId64 " %.4f (delta %+.4f, DeLong p = %.3g), precision "
             "at HIGH %.3f vs %.3f, %zu paired outcomes (%zu won, %zu lost) over %d days",
             D->auc_b, cv, D->auc_a, D->delta, D->p_value, out->precision_challenger,
             out->precision_champion, n, out->n_won, out->n_lost, (int)out->span_days);
    if (D->delta < 0 && D->p_value < o->p_value) {
        out->decision = CL_TRIAL_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "challenger v%" PRId64 " is significantly worse: %s", hv, numbers);
    } else if (out->span_days < o->window_days) {
        snprintf(out->reason, sizeof out->reason,
                 "trial of v%" PRId64 " continues (window %d days not reached): %s", hv,
                 (int)o->window_days, numbers);
    } else if (D->delta > 0 && D->p_value < o->p_value && prec_ok) {
        out->decision = CL_TRIAL_PROMOTE;
        snprintf(out->reason, sizeof out->reason, "promoted after the A/B window: %s", numbers);
    } else if (out->span_days >= o->max_trial_days) {
        out->decision = CL_TRIAL_REJECT;
        snprintf(out->reason, sizeof out->reason,
                 "challenger v%" PRId64 " not significantly better after %d days%s: %s", hv,
                 (int)o->max_trial_days, prec_ok ? "" : " (precision at HIGH dropped)", numbers);
    } else {
        snprintf(out->reason, sizeof out->reason,
                 "trial of v%" PRId64 " continues (not yet %s): %s", hv,
                 prec_ok ? "significant" : "without a precision drop", numbers);
    }
done:
    free(a), free(b), free(won), free(ha), free(hb);
    return CL_OK;
}
