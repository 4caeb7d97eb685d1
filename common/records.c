/*
 * records.c — struct <-> avro_value_t for the five records (see records.h).
 *
 * Reading goes field by field through small checked accessors that name the field in
 * every error ("OpportunitySnapshot.scores[2].band: ..."). Writing mirrors it. Both
 * directions look fields up by name and enum symbols by name, so the code depends only
 * on field names, never on field order or symbol order in the .avsc files.
 */
#include "records.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"

#define PATH_MAX_LEN 192

/* ---- enums ---------------------------------------------------------------------- */

static const char *const band_names[] = {"HIGH", "MEDIUM", "LOW"};
static const char *const outcome_names[] = {"WON", "LOST"};
static const char *const source_names[] = {"rest", "bulk", "csv"};
static const char *const status_names[] = {"CANDIDATE", "CHALLENGER", "CHAMPION", "REJECTED",
                                           "RETIRED"};
static const char *const window_names[] = {"CUMULATIVE", "MONTHLY", "ROLLING_90D"};
static const char *const horizon_names[] = {"LATEST_BEFORE_HORIZON", "FIRST_SNAPSHOT",
                                            "ALL_SNAPSHOTS"};
static const char *const kind_names[] = {"FEATURE", "CATEGORY_WIN_RATE", "NUMERIC_PERCENTILE"};

/* Formats an error path or message fragment. Truncation only shortens a message, so it
 * is accepted; going through vsnprintf keeps the compiler from flagging each call. */
static void fmt(char *dst, size_t cap, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *dst, size_t cap, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vsnprintf(dst, cap, format, ap);
    va_end(ap);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *symbol_of(const char *const *names, size_t n, int v)
{
    return (v >= 0 && (size_t)v < n) ? names[v] : "?";
}

static int symbol_parse(const char *const *names, size_t n, const char *s, int *out)
{
    if (s == NULL) return CL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = (int)i;
            return CL_OK;
        }
    }
    return CL_EINVAL;
}

#define ENUM_FUNCS(type, prefix, table)                                                            \
    const char *prefix##_name(type v)                                                              \
    {                                                                                              \
        return symbol_of(table, COUNT(table), (int)v);                                             \
    }                                                                                              \
    int prefix##_parse(const char *s, type *out)                                                   \
    {                                                                                              \
        int v;                                                                                     \
        if (symbol_parse(table, COUNT(table), s, &v) != CL_OK) return CL_EINVAL;                   \
        *out = (type)v;                                                                            \
        return CL_OK;                                                                              \
    }

ENUM_FUNCS(cl_band, cl_band, band_names)
ENUM_FUNCS(cl_outcome_kind, cl_outcome_kind, outcome_names)
ENUM_FUNCS(cl_outcome_source, cl_outcome_source, source_names)
ENUM_FUNCS(cl_model_status, cl_model_status, status_names)
ENUM_FUNCS(cl_window_kind, cl_window_kind, window_names)
ENUM_FUNCS(cl_horizon_policy, cl_horizon_policy, horizon_names)
ENUM_FUNCS(cl_component_kind, cl_component_kind, kind_names)

const char *const cl_builtin_component_names[CL_NUM_BUILTINS] = {
    "speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate", "recency",
};

int cl_builtin_component_index(const char *name)
{
    if (name == NULL) return -1;
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        if (strcmp(cl_builtin_component_names[i], name) == 0) return i;
    return -1;
}

/* ---- init ----------------------------------------------------------------------- */

void cl_snapshot_init(cl_snapshot *s)
{
    memset(s, 0, sizeof *s);
    memcpy(s->currency, "USD", 4);
}

void cl_outcome_init(cl_outcome *o)
{
    memset(o, 0, sizeof *o);
    memcpy(o->currency, "USD", 4);
}

void cl_labeled_example_init(cl_labeled_example *e)
{
    memset(e, 0, sizeof *e);
    cl_snapshot_init(&e->snapshot);
    cl_outcome_init(&e->outcome);
}

void cl_model_metrics_init(cl_model_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->horizon = CL_HORIZON_LATEST_BEFORE_HORIZON;
    m->horizon_days = 7;
}

void cl_component_def_init(cl_component_def *d)
{
    memset(d, 0, sizeof *d);
    d->missing_value = 50.0;
}

void cl_weight_config_init(cl_weight_config *c)
{
    memset(c, 0, sizeof *c);
    c->bands.high = 70.0;
    c->bands.medium = 40.0;
    for (size_t i = 0; i < CL_MAX_COMPONENT_DEFS; i++)
        c->components[i].missing_value = 50.0;
}

/* ---- small helpers -------------------------------------------------------------- */

static bool in_range(double v, double lo, double hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

static bool opt_in_range(cl_opt_double v, double lo, double hi)
{
    return !v.present || in_range(v.value, lo, hi);
}

static size_t bounded_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    return nul ? (size_t)(nul - s) : cap;
}

/* A fixed-size string field is well formed when it is NUL-terminated inside its array. */
static int check_str(const char *path, const char *field, const char *s, size_t cap, bool required,
                     char *err, size_t errlen)
{
    size_t len = bounded_len(s, cap);
    if (len == cap)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not terminated within %zu bytes", path,
                         field, cap - 1);
    if (required && len == 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: required, is empty", path, field);
    return CL_OK;
}

#define CHECK_STR(path, s, field, required)                                                        \
    do {                                                                                           \
        int rc_ = check_str(path, #field, (s)->field, sizeof((s)->field), required, err, errlen);  \
        if (rc_ != CL_OK) return rc_;                                                              \
    } while (0)

#define CHECK(cond, path, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char msg_[CL_ERRLEN];                                                                  \
            fmt(msg_, sizeof msg_, __VA_ARGS__);                                                   \
            return cl_seterr(err, errlen, CL_EINVAL, "%s.%s", path, msg_);                         \
        }                                                                                          \
    } while (0)

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != CL_OK) return rc_;                                                              \
    } while (0)

/* ---- validation ----------------------------------------------------------------- */

int cl_snapshot_validate(const cl_snapshot *s, char *err, size_t errlen)
{
    const char *p = "OpportunitySnapshot";
    CHECK_STR(p, s, snapshot_id, true);
    CHECK_STR(p, s, run_id, true);
    CHECK_STR(p, s, opportunity_id, true);
    CHECK_STR(p, s, account_id, false);
    CHECK_STR(p, s, owner_id, false);
    CHECK_STR(p, s, stage, true);
    CHECK_STR(p, s, currency, true);
    CHECK_STR(p, s, segment, false);
    CHECK_STR(p, s, region, false);
    CHECK_STR(p, s, product, false);
    CHECK_STR(p, s, lead_source, false);
    CHECK_STR(p, s, type, false);
    CHECK(!s->amount.present || isfinite(s->amount.value), p, "amount: not a finite number");
    CHECK(!s->days_in_stage.present || s->days_in_stage.value >= 0, p,
          "days_in_stage: %d is negative", (int)s->days_in_stage.value);
    CHECK(s->n_attributes <= CL_MAX_ATTRIBUTES, p, "attributes: %zu entries, at most %d",
          s->n_attributes, CL_MAX_ATTRIBUTES);
    for (size_t i = 0; i < s->n_attributes; i++) {
        const cl_attribute *a = &s->attributes[i];
        CHECK(bounded_len(a->key, sizeof a->key) < sizeof a->key &&
                  bounded_len(a->value, sizeof a->value) < sizeof a->value,
              p, "attributes[%zu]: not terminated", i);
        CHECK(a->key[0] != '\0', p, "attributes[%zu]: empty key", i);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s->attributes[j].key, a->key) != 0, p, "attributes: duplicate key '%s'",
                  a->key);
    }
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        CHECK(in_range(s->components[i], 0, 100), p, "%s: %g is outside 0..100",
              cl_builtin_component_names[i], s->components[i]);
    CHECK(s->n_features <= CL_MAX_FEATURES, p, "features: %zu entries, at most %d", s->n_features,
          CL_MAX_FEATURES);
    for (size_t i = 0; i < s->n_features; i++) {
        const cl_feature *f = &s->features[i];
        CHECK(bounded_len(f->name, sizeof f->name) < sizeof f->name, p,
              "features[%zu]: name not terminated", i);
        CHECK(f->name[0] != '\0', p, "features[%zu]: empty name", i);
        CHECK(isfinite(f->value), p, "features[%s]: not a finite number", f->name);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s->features[j].name, f->name) != 0, p, "features: duplicate name '%s'",
                  f->name);
    }
    CHECK(opt_in_range(s->opportunity_score, 0, 100), p, "opportunity_score: %g is outside 0..100",
          s->opportunity_score.value);
    CHECK(opt_in_range(s->account_score, 0, 100), p, "account_score: %g is outside 0..100",
          s->account_score.value);
    CHECK(s->n_scores <= CL_MAX_SCORES, p, "scores: %zu entries, at most %d", s->n_scores,
          CL_MAX_SCORES);
    for (size_t i = 0; i < s->n_scores; i++) {
        const cl_score_entry *e = &s->scores[i];
        CHECK(bounded_len(e->model, sizeof e->model) < sizeof e->model && e->model[0], p,
              "scores[%zu].model: empty or not terminated", i);
        CHECK(in_range(e->score, 0, 100), p, "scores[%zu].score: %g is outside 0..100", i,
              e->score);
        CHECK((int)e->band >= 0 && (int)e->band < CL_NUM_BANDS, p,
              "scores[%zu].band: %d is not a band", i, (int)e->band);
        CHECK(in_range(e->probability, 0, 1), p, "scores[%zu].probability: %g is outside 0..1", i,
              e->probability);
    }
    return CL_OK;
}

int cl_outcome_validate(const cl_outcome *o, char *err, size_t errlen)
{
    const char *p = "OpportunityOutcome";
    CHECK_STR(p, o, opportunity_id, true);
    CHECK_STR(p, o, account_id, false);
    CHECK_STR(p, o, owner_id, false);
    CHECK_STR(p, o, stage_name, true);
    CHECK_STR(p, o, currency, true);
    CHECK_STR(p, o, type, false);
    CHECK_STR(p, o, lead_source, false);
    CHECK((int)o->outcome >= 0 && (int)o->outcome <= CL_OUTCOME_LOST, p,
          "outcome: %d is not WON or LOST", (int)o->outcome);
    CHECK((int)o->source >= 0 && (int)o->source <= CL_SOURCE_CSV, p,
          "source: %d is not rest, bulk or csv", (int)o->source);
    CHECK(!o->final_value.present || isfinite(o->final_value.value), p,
          "final_value: not a finite number");
    CHECK((int64_t)o->close_date - o->created_date == o->days_to_close, p,
          "days_to_close: %d, but close_date - created_date is %lld", (int)o->days_to_close,
          (long long)((int64_t)o->close_date - o->created_date));
    return CL_OK;
}

int cl_labeled_example_validate(const cl_labeled_example *e, char *err, size_t errlen)
{
    const char *p = "LabeledExample";
    int rc = cl_snapshot_validate(&e->snapshot, err, errlen);
    if (rc != CL_OK) return rc;
    if ((rc = cl_outcome_validate(&e->outcome, err, errlen)) != CL_OK) return rc;
    CHECK(strcmp(e->snapshot.opportunity_id, e->outcome.opportunity_id) == 0, p,
          "outcome.opportunity_id: '%s' differs from snapshot.opportunity_id '%s'",
          e->outcome.opportunity_id, e->snapshot.opportunity_id);
    CHECK(e->outcome_version == e->outcome.system_modstamp, p,
          "outcome_version: %lld differs from outcome.system_modstamp %lld",
          (long long)e->outcome_version, (long long)e->outcome.system_modstamp);
    int64_t d = cl_days_before_close(&e->snapshot, &e->outcome);
    CHECK(d == e->days_before_close, p,
          "days_before_close: %d, but the close date is %lld days after the snapshot",
          (int)e->days_before_close, (long long)d);
    CHECK(e->days_before_close >= 0, p,
          "days_before_close: %d, the snapshot was taken after the close date",
          (int)e->days_before_close);
    return CL_OK;
}

static int check_groups(const char *p, const char *field, const cl_metrics_group *g, size_t n,
                        char *err, size_t errlen)
{
    CHECK(n <= CL_MAX_GROUPS, p, "%s: %zu entries, at most %d", field, n, CL_MAX_GROUPS);
    for (size_t i = 0; i < n; i++) {
        CHECK(bounded_len(g[i].key, sizeof g[i].key) < sizeof g[i].key, p,
              "%s[%zu].key: not terminated", field, i);
        CHECK(g[i].n >= 0 && g[i].won >= 0 && g[i].won <= g[i].n, p,
              "%s[%s]: counts n=%lld won=%lld are inconsistent", field, g[i].key, (long long)g[i].n,
              (long long)g[i].won);
        CHECK(opt_in_range(g[i].mean_score, 0, 100) && opt_in_range(g[i].auc, 0, 1) &&
                  opt_in_range(g[i].precision, 0, 1),
              p, "%s[%s]: a rate is out of range", field, g[i].key);
    }
    return CL_OK;
}

int cl_model_metrics_validate(const cl_model_metrics *m, char *err, size_t errlen)
{
    const char *p = "ModelMetrics";
    CHECK_STR(p, m, model, true);
    CHECK(m->window.start <= m->window.end, p, "window: start %lld is after end %lld",
          (long long)m->window.start, (long long)m->window.end);
    CHECK((int)m->window.kind >= 0 && (int)m->window.kind <= CL_WINDOW_ROLLING_90D, p,
          "window.kind: %d is not a window kind", (int)m->window.kind);
    CHECK((int)m->horizon >= 0 && (int)m->horizon <= CL_HORIZON_ALL_SNAPSHOTS, p,
          "horizon: %d is not a horizon policy", (int)m->horizon);
    CHECK(m->horizon_days >= 0, p, "horizon_days: %d is negative", (int)m->horizon_days);
    CHECK(m->won >= 0 && m->lost >= 0 && m->n == m->won + m->lost, p,
          "n: %lld is not won %lld + lost %lld", (long long)m->n, (long long)m->won,
          (long long)m->lost);
    const cl_metrics_confusion *c = &m->confusion;
    CHECK(in_range(c->threshold, 0, 100), p, "confusion.threshold: %g is outside 0..100",
          c->threshold);
    CHECK(c->tp >= 0 && c->fp >= 0 && c->tn >= 0 && c->fn >= 0 && c->tp + c->fn == m->won &&
              c->fp + c->tn == m->lost,
          p, "confusion: tp=%lld fp=%lld tn=%lld fn=%lld disagree with won/lost", (long long)c->tp,
          (long long)c->fp, (long long)c->tn, (long long)c->fn);
    CHECK(opt_in_range(m->precision, 0, 1), p, "precision: out of 0..1");
    CHECK(opt_in_range(m->recall, 0, 1), p, "recall: out of 0..1");
    CHECK(opt_in_range(m->f1, 0, 1), p, "f1: out of 0..1");
    CHECK(opt_in_range(m->auc, 0, 1), p, "auc: out of 0..1");
    CHECK(opt_in_range(m->brier, 0, 1), p, "brier: out of 0..1");
    CHECK(opt_in_range(m->ece, 0, 1), p, "ece: out of 0..1");
    CHECK(opt_in_range(m->log_loss, 0, INFINITY) &&
              (!m->log_loss.present || isfinite(m->log_loss.value)),
          p, "log_loss: must be finite and >= 0");
    CHECK(m->n_calibration_bins <= CL_MAX_CALIBRATION_BINS, p,
          "calibration_bins: %zu entries, at most %d", m->n_calibration_bins,
          CL_MAX_CALIBRATION_BINS);
    for (size_t i = 0; i < m->n_calibration_bins; i++) {
        const cl_metrics_calibration_bin *b = &m->calibration_bins[i];
        CHECK(in_range(b->lower, 0, 1) && in_range(b->upper, 0, 1) && b->lower <= b->upper, p,
              "calibration_bins[%zu]: bounds [%g, %g] are not within 0..1", i, b->lower, b->upper);
        CHECK(b->n >= 0 && b->won >= 0 && b->won <= b->n, p,
              "calibration_bins[%zu]: counts n=%lld won=%lld are inconsistent", i, (long long)b->n,
              (long long)b->won);
        CHECK(opt_in_range(b->mean_predicted, 0, 1) && opt_in_range(b->observed_rate, 0, 1), p,
              "calibration_bins[%zu]: a rate is out of 0..1", i);
    }
    CHECK(m->n_thresholds <= CL_MAX_THRESHOLD_POINTS, p, "thresholds: %zu entries, at most %d",
          m->n_thresholds, CL_MAX_THRESHOLD_POINTS);
    for (size_t i = 0; i < m->n_thresholds; i++) {
        const cl_metrics_threshold_point *t = &m->thresholds[i];
        CHECK(in_range(t->threshold, 0, 100) && t->predicted_positive >= 0 &&
                  opt_in_range(t->precision, 0, 1) && opt_in_range(t->recall, 0, 1),
              p, "thresholds[%zu]: a value is out of range", i);
    }
    CHECK(m->n_by_band <= CL_NUM_BANDS, p, "by_band: %zu entries, at most %d", m->n_by_band,
          CL_NUM_BANDS);
    for (size_t i = 0; i < m->n_by_band; i++) {
        const cl_metrics_band *b = &m->by_band[i];
        CHECK((int)b->band >= 0 && (int)b->band < CL_NUM_BANDS, p,
              "by_band[%zu].band: %d is not a band", i, (int)b->band);
        CHECK(b->n >= 0 && b->won >= 0 && b->won <= b->n && opt_in_range(b->mean_probability, 0, 1),
              p, "by_band[%s]: a value is out of range", cl_band_name(b->band));
        for (size_t j = 0; j < i; j++)
            CHECK(m->by_band[j].band != b->band, p, "by_band: band %s appears twice",
                  cl_band_name(b->band));
    }
    TRY(check_groups(p, "by_stage", m->by_stage, m->n_by_stage, err, errlen));
    TRY(check_groups(p, "by_segment", m->by_segment, m->n_by_segment, err, errlen));
    TRY(check_groups(p, "by_owner", m->by_owner, m->n_by_owner, err, errlen));
    return CL_OK;
}

int cl_weight_config_discovery_validate(const cl_weight_config *c, char *err, size_t errlen)
{
    const char *p = "WeightConfig";
    CHECK(c->n_discovery <= CL_MAX_DISCOVERY, p, "discovery: %zu entries, at most %d",
          c->n_discovery, CL_MAX_DISCOVERY);
    for (size_t i = 0; i < c->n_discovery; i++) {
        const cl_candidate_evidence *e = &c->discovery[i];
        char ip[64];
        fmt(ip, sizeof ip, "WeightConfig.discovery[%zu]", i);
        CHECK_STR(ip, e, name, true);
        CHECK_STR(ip, e, source, true);
        CHECK((int)e->kind >= 0 && (int)e->kind <= CL_COMPONENT_NUMERIC_PERCENTILE, ip,
              "kind: %d is not a component kind", (int)e->kind);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(c->discovery[j].name, e->name) != 0, p,
                  "discovery: candidate '%s' appears twice", e->name);
        CHECK(opt_in_range(e->delta_auc, -1, 1) && opt_in_range(e->shuffled_max_delta_auc, -1, 1),
              ip, "delta_auc %g, shuffled_max_delta_auc %g: AUC gains lie within -1..1",
              e->delta_auc.value, e->shuffled_max_delta_auc.value);
        CHECK(opt_in_range(e->delta_log_loss, -INFINITY, INFINITY) &&
                  opt_in_range(e->shuffled_max_delta_log_loss, -INFINITY, INFINITY),
              ip, "log-loss gains must be finite");
        CHECK(e->permutations >= 0, ip, "permutations: %d is negative", (int)e->permutations);
        CHECK(e->n_examples >= 0 && e->n_with_value >= 0 && e->n_with_value <= e->n_examples &&
                  e->n_categories >= 0,
              ip,
              "counts: n_examples %lld, n_with_value %lld, n_categories %lld; need 0 <= "
              "n_with_value <= n_examples and n_categories >= 0",
              (long long)e->n_examples, (long long)e->n_with_value, (long long)e->n_categories);
        CHECK(!e->beats_shuffled ||
                  (e->delta_auc.present && e->delta_log_loss.present &&
                   e->shuffled_max_delta_auc.present && e->shuffled_max_delta_log_loss.present),
              ip, "beats_shuffled without the gains it compares");
        if (e->adopted) {
            CHECK(e->beats_shuffled, ip,
                  "adopted: '%s' is adopted but did not beat shuffled labels", e->name);
            bool defined = false;
            for (size_t k = 0; k < c->n_components && !defined; k++)
                defined = strcmp(c->components[k].name, e->name) == 0;
            CHECK(defined, ip, "adopted: '%s' is not among the config's components", e->name);
        }
    }
    return CL_OK;
}

/* ---- reading avro values ---------------------------------------------------------- */

static int get_field(const avro_value_t *rec, const char *path, const char *name, avro_value_t *out,
                     char *err, size_t errlen)
{
    if (avro_value_get_type(rec) != AVRO_RECORD)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: value is not a record", path);
    if (avro_value_get_by_name(rec, name, out, NULL) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: value has no field '%s' (not a value of the closedloop schema)", path,
                         name);
    return CL_OK;
}

/* For a ["null", T] field: *present = false on null, else *inner = the T value. A field
 * that is not a union is taken as present (tolerates a non-nullable variant). */
static int unwrap_nullable(avro_value_t *v, const char *path, const char *name, bool *present,
                           avro_value_t *inner, char *err, size_t errlen)
{
    if (avro_value_get_type(v) != AVRO_UNION) {
        *present = true;
        *inner = *v;
        return CL_OK;
    }
    if (avro_value_get_current_branch(v, inner) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: union has no branch selected", path, name);
    *present = avro_value_get_type(inner) != AVRO_NULL;
    return CL_OK;
}

static int read_string(avro_value_t *v, const char *path, const char *name, char *dst, size_t cap,
                       char *err, size_t errlen)
{
    const char *str = NULL;
    size_t size = 0;
    if (avro_value_get_type(v) != AVRO_STRING || avro_value_get_string(v, &str, &size) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a string", path, name);
    /* avro-c sizes include the terminating NUL. */
    size_t len = (str == NULL || size == 0) ? 0 : size - 1;
    if (len > 0 && memchr(str, '\0', len) != NULL)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: contains a NUL byte", path, name);
    if (len >= cap)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: %zu bytes, at most %zu", path, name, len,
                         cap - 1);
    if (len > 0) memcpy(dst, str, len);
    dst[len] = '\0';
    return CL_OK;
}

static int get_str(const avro_value_t *rec, const char *path, const char *name, char *dst,
                   size_t cap, bool required, char *err, size_t errlen)
{
    avro_value_t v;
    TRY(get_field(rec, path, name, &v, err, errlen));
    TRY(read_string(&v, path, name, dst, cap, err, errlen));
    if (required && dst[0] == '\0')
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: required, is empty", path, name);
    return CL_OK;
}

static int get_opt_str(const avro_value_t *rec, const char *path, const char *name, char *dst,
                       size_t cap, char *err, size_t errlen)
{
    avro_value_t v, inner;
    bool present;
    TRY(get_field(rec, path, name, &v, err, errlen));
    TRY(unwrap_nullable(&v, path, name, &present, &inner, err, errlen));
    dst[0] = '\0';
    return present ? read_string(&inner, path, name, dst, cap, err, errlen) : CL_OK;
}

static int read_double(avro_value_t *v, const char *path, const char *name, double *out, char *err,
                       size_t errlen)
{
    double d;
    if (avro_value_get_type(v) != AVRO_DOUBLE || avro_value_get_double(v, &d) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a double", path, name);
    if (!isfinite(d))
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a finite number", path, name);
    *out = d;
    return CL_OK;
}

static int get_double(const avro_value_t *rec, const char *path, const char *name, double *out,
                      char *err, size_t errlen)
{
    avro_value_t v;
    TRY(get_field(rec, path, name, &v, err, errlen));
    return read_double(&v, path, name, out, err, errlen);
}

static int get_opt_double(const avro_value_t *rec, const char *path, const char *name,
                          cl_opt_double *out, char *err, size_t errlen)
{
    avro_value_t v, inner;
    bool present;
    TRY(get_field(rec, path, name, &v, err, errlen));
    TRY(unwrap_nullable(&v, path, name, &present, &inner, err, errlen));
    out->present = present;
    out->value = 0;
    return present ? read_double(&inner, path, name, &out->value, err, errlen) : CL_OK;
}

static int read_int(avro_value_t *v, const char *path, const char *name, int32_t *out, char *err,
                    size_t errlen)
{
    if (avro_value_get_type(v) != AVRO_INT32 || avro_value_get_int(v, out) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not an int", path, name);
    return CL_OK;
}

static int get_int(const avro_value_t *rec, const char *path, const char *name, int32_t *out,
                   char *err, size_t errlen)
{
    avro_value_t v;
    TRY(get_field(rec, path, name, &v, err, errlen));
    return read_int(&v, path, name, out, err, errlen);
}

static int get_opt_int(const avro_value_t *rec, const char *path, const char *name, cl_opt_int *out,
                       char *err, size_t errlen)
{
    avro_value_t v, inner;
    bool present;
    TRY(get_field(rec, path, name, &v, err, errlen));
    TRY(unwrap_nullable(&v, path, name, &present, &inner, err, errlen));
    out->present = present;
    out->value = 0;
    return present ? read_int(&inner, path, name, &out->value, err, errlen) : CL_OK;
}

static int read_long(avro_value_t *v, const char *path, const char *name, int64_t *out, char *err,
                     size_t errlen)
{
    if (avro_value_get_type(v) != AVRO_INT64 || avro_value_get_long(v, out) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a long", path, name);
    return CL_OK;
}

static int get_long(const avro_value_t *rec, const char *path, const char *name, int64_t *out,
                    char *err, size_t errlen)
{
    avro_value_t v;
    TRY(get_field(rec, path, name, &v, err, errlen));
    return read_long(&v, path, name, out, err, errlen);
}

static int get_count(const avro_value_t *rec, const char *path, const char *name, int64_t *out,
                     char *err, size_t errlen)
{
    TRY(get_long(rec, path, name, out, err, errlen));
    if (*out < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: count %lld is negative", path, name,
                         (long long)*out);
    return CL_OK;
}

static int get_opt_long(const avro_value_t *rec, const char *path, const char *name,
                        cl_opt_long *out, char *err, size_t errlen)
{
    avro_value_t v, inner;
    bool present;
    TRY(get_field(rec, path, name, &v, err, errlen));
    TRY(unwrap_nullable(&v, path, name, &present, &inner, err, errlen));
    out->present = present;
    out->value = 0;
    return present ? read_long(&inner, path, name, &out->value, err, errlen) : CL_OK;
}

static int get_bool(const avro_value_t *rec, const char *path, const char *name, bool *out,
                    char *err, size_t errlen)
{
    avro_value_t v;
    int b;
    TRY(get_field(rec, path, name, &v, err, errlen));
    if (avro_value_get_type(&v) != AVRO_BOOLEAN || avro_value_get_boolean(&v, &b) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a boolean", path, name);
    *out = b != 0;
    return CL_OK;
}

/* Reads an enum field as its symbol and maps the symbol through `names`. */
static int get_enum(const avro_value_t *rec, const char *path, const char *name,
                    const char *const *names, size_t n_names, int *out, char *err, size_t errlen)
{
    avro_value_t v;
    int idx;
    TRY(get_field(rec, path, name, &v, err, errlen));
    if (avro_value_get_type(&v) != AVRO_ENUM || avro_value_get_enum(&v, &idx) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not an enum", path, name);
    /* avro-c neither range-checks an enum index read from the wire nor in
     * avro_schema_enum_get (it returns an uninitialised pointer): check it here. */
    avro_schema_t schema = avro_value_get_schema(&v);
    const char *symbol = NULL;
    if (schema != NULL && idx >= 0 && idx < avro_schema_enum_number_of_symbols(schema))
        symbol = avro_schema_enum_get(schema, idx);
    if (symbol == NULL || symbol_parse(names, n_names, symbol, out) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: unknown symbol '%s'", path, name,
                         symbol ? symbol : "(index out of range)");
    return CL_OK;
}

#define GET_ENUM(rec, path, name, table, dst)                                                      \
    do {                                                                                           \
        int e_;                                                                                    \
        TRY(get_enum(rec, path, name, table, COUNT(table), &e_, err, errlen));                     \
        *(dst) = e_;                                                                               \
    } while (0)

/* Opens an array or map field and checks its size against a bound. */
static int get_container(const avro_value_t *rec, const char *path, const char *name,
                         avro_type_t type, size_t max, avro_value_t *out, size_t *n, char *err,
                         size_t errlen)
{
    TRY(get_field(rec, path, name, out, err, errlen));
    if (avro_value_get_type(out) != type || avro_value_get_size(out, n) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: not a%s", path, name,
                         type == AVRO_ARRAY ? "n array" : " map");
    if (*n > max)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: %zu entries, at most %zu", path, name, *n,
                         max);
    return CL_OK;
}

static int get_item(avro_value_t *container, size_t i, const char *path, const char *name,
                    avro_value_t *item, const char **key, char *err, size_t errlen)
{
    if (avro_value_get_by_index(container, i, item, key) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s[%zu]: cannot be read", path, name, i);
    return CL_OK;
}

static int copy_key(const char *key, const char *path, const char *name, char *dst, size_t cap,
                    char *err, size_t errlen)
{
    if (key == NULL || key[0] == '\0')
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: empty key", path, name);
    size_t len = strnlen(key, cap);
    if (len >= cap)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: key longer than %zu bytes", path, name,
                         cap - 1);
    memcpy(dst, key, len + 1);
    return CL_OK;
}

/* ---- writing avro values ---------------------------------------------------------- */

static int put_field(avro_value_t *rec, const char *path, const char *name, avro_value_t *out,
                     char *err, size_t errlen)
{
    if (avro_value_get_by_name(rec, name, out, NULL) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: target value has no field '%s' (wrong schema?)", path, name);
    return CL_OK;
}

static int write_failed(const char *path, const char *name, char *err, size_t errlen)
{
    return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: cannot set value: %s", path, name,
                     avro_strerror());
}

/* Selects the branch of a union whose type is `want` (AVRO_NULL for null). */
static int select_branch(avro_value_t *v, avro_type_t want, const char *path, const char *name,
                         avro_value_t *branch, char *err, size_t errlen)
{
    if (avro_value_get_type(v) != AVRO_UNION) {
        if (want == AVRO_NULL)
            return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: field is not nullable", path, name);
        *branch = *v;
        return CL_OK;
    }
    avro_schema_t schema = avro_value_get_schema(v);
    size_t n = avro_schema_union_size(schema);
    for (size_t i = 0; i < n; i++) {
        avro_schema_t b = avro_schema_union_branch(schema, (int)i);
        if (b != NULL && avro_typeof(b) == want) {
            if (avro_value_set_branch(v, (int)i, branch) != 0)
                return write_failed(path, name, err, errlen);
            return CL_OK;
        }
    }
    return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: union has no branch of the needed type", path,
                     name);
}

static int set_null(avro_value_t *v, const char *path, const char *name, char *err, size_t errlen)
{
    avro_value_t branch;
    TRY(select_branch(v, AVRO_NULL, path, name, &branch, err, errlen));
    return avro_value_set_null(&branch) == 0 ? CL_OK : write_failed(path, name, err, errlen);
}

static int put_str(avro_value_t *rec, const char *path, const char *name, const char *s, char *err,
                   size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    return avro_value_set_string_len(&v, s, strlen(s) + 1) == 0
               ? CL_OK
               : write_failed(path, name, err, errlen);
}

static int put_opt_str(avro_value_t *rec, const char *path, const char *name, const char *s,
                       char *err, size_t errlen)
{
    avro_value_t v, branch;
    TRY(put_field(rec, path, name, &v, err, errlen));
    if (s[0] == '\0') return set_null(&v, path, name, err, errlen);
    TRY(select_branch(&v, AVRO_STRING, path, name, &branch, err, errlen));
    return avro_value_set_string_len(&branch, s, strlen(s) + 1) == 0
               ? CL_OK
               : write_failed(path, name, err, errlen);
}

static int put_double(avro_value_t *rec, const char *path, const char *name, double d, char *err,
                      size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    return avro_value_set_double(&v, d) == 0 ? CL_OK : write_failed(path, name, err, errlen);
}

static int put_opt_double(avro_value_t *rec, const char *path, const char *name, cl_opt_double d,
                          char *err, size_t errlen)
{
    avro_value_t v, branch;
    TRY(put_field(rec, path, name, &v, err, errlen));
    if (!d.present) return set_null(&v, path, name, err, errlen);
    TRY(select_branch(&v, AVRO_DOUBLE, path, name, &branch, err, errlen));
    return avro_value_set_double(&branch, d.value) == 0 ? CL_OK
                                                        : write_failed(path, name, err, errlen);
}

static int put_int(avro_value_t *rec, const char *path, const char *name, int32_t i, char *err,
                   size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    return avro_value_set_int(&v, i) == 0 ? CL_OK : write_failed(path, name, err, errlen);
}

static int put_opt_int(avro_value_t *rec, const char *path, const char *name, cl_opt_int i,
                       char *err, size_t errlen)
{
    avro_value_t v, branch;
    TRY(put_field(rec, path, name, &v, err, errlen));
    if (!i.present) return set_null(&v, path, name, err, errlen);
    TRY(select_branch(&v, AVRO_INT32, path, name, &branch, err, errlen));
    return avro_value_set_int(&branch, i.value) == 0 ? CL_OK
                                                     : write_failed(path, name, err, errlen);
}

static int put_long(avro_value_t *rec, const char *path, const char *name, int64_t l, char *err,
                    size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    return avro_value_set_long(&v, l) == 0 ? CL_OK : write_failed(path, name, err, errlen);
}

static int put_opt_long(avro_value_t *rec, const char *path, const char *name, cl_opt_long l,
                        char *err, size_t errlen)
{
    avro_value_t v, branch;
    TRY(put_field(rec, path, name, &v, err, errlen));
    if (!l.present) return set_null(&v, path, name, err, errlen);
    TRY(select_branch(&v, AVRO_INT64, path, name, &branch, err, errlen));
    return avro_value_set_long(&branch, l.value) == 0 ? CL_OK
                                                      : write_failed(path, name, err, errlen);
}

static int put_bool(avro_value_t *rec, const char *path, const char *name, bool b, char *err,
                    size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    return avro_value_set_boolean(&v, b ? 1 : 0) == 0 ? CL_OK
                                                      : write_failed(path, name, err, errlen);
}

static int put_enum(avro_value_t *rec, const char *path, const char *name, const char *symbol,
                    char *err, size_t errlen)
{
    avro_value_t v;
    TRY(put_field(rec, path, name, &v, err, errlen));
    avro_schema_t schema = avro_value_get_schema(&v);
    int idx = schema ? avro_schema_enum_get_by_name(schema, symbol) : -1;
    if (idx < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s.%s: schema has no symbol '%s'", path, name,
                         symbol);
    return avro_value_set_enum(&v, idx) == 0 ? CL_OK : write_failed(path, name, err, errlen);
}

static int open_container(avro_value_t *rec, const char *path, const char *name, avro_value_t *out,
                          char *err, size_t errlen)
{
    return put_field(rec, path, name, out, err, errlen);
}

static int append_item(avro_value_t *array, const char *path, const char *name, avro_value_t *item,
                       char *err, size_t errlen)
{
    return avro_value_append(array, item, NULL) == 0 ? CL_OK
                                                     : write_failed(path, name, err, errlen);
}

static int add_entry(avro_value_t *map, const char *path, const char *name, const char *key,
                     avro_value_t *item, char *err, size_t errlen)
{
    return avro_value_add(map, key, item, NULL, NULL) == 0 ? CL_OK
                                                           : write_failed(path, name, err, errlen);
}

static int reset_value(avro_value_t *v, const char *path, char *err, size_t errlen)
{
    if (avro_value_get_type(v) != AVRO_RECORD)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: target value is not a record", path);
    if (avro_value_reset(v) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: cannot reset value: %s", path,
                         avro_strerror());
    return CL_OK;
}

/* ---- OpportunitySnapshot ------------------------------------------------------------ */

#define SZ(s, f) (sizeof((s)->f))

static int snapshot_write(const cl_snapshot *s, avro_value_t *v, const char *p, char *err,
                          size_t errlen)
{
    avro_value_t c, item;
    TRY(put_str(v, p, "snapshot_id", s->snapshot_id, err, errlen));
    TRY(put_str(v, p, "run_id", s->run_id, err, errlen));
    TRY(put_long(v, p, "snapshot_time", s->snapshot_time, err, errlen));
    TRY(put_str(v, p, "opportunity_id", s->opportunity_id, err, errlen));
    TRY(put_opt_str(v, p, "account_id", s->account_id, err, errlen));
    TRY(put_opt_str(v, p, "owner_id", s->owner_id, err, errlen));
    TRY(put_str(v, p, "stage", s->stage, err, errlen));
    TRY(put_opt_double(v, p, "amount", s->amount, err, errlen));
    TRY(put_str(v, p, "currency", s->currency, err, errlen));
    TRY(put_int(v, p, "created_date", s->created_date, err, errlen));
    TRY(put_int(v, p, "expected_close_date", s->expected_close_date, err, errlen));
    TRY(put_opt_int(v, p, "days_in_stage", s->days_in_stage, err, errlen));
    TRY(put_opt_str(v, p, "segment", s->segment, err, errlen));
    TRY(put_opt_str(v, p, "region", s->region, err, errlen));
    TRY(put_opt_str(v, p, "product", s->product, err, errlen));
    TRY(put_opt_str(v, p, "lead_source", s->lead_source, err, errlen));
    TRY(put_opt_str(v, p, "type", s->type, err, errlen));
    TRY(open_container(v, p, "attributes", &c, err, errlen));
    for (size_t i = 0; i < s->n_attributes; i++) {
        const cl_attribute *a = &s->attributes[i];
        TRY(add_entry(&c, p, "attributes", a->key, &item, err, errlen));
        if (avro_value_set_string_len(&item, a->value, strlen(a->value) + 1) != 0)
            return write_failed(p, "attributes", err, errlen);
    }
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        TRY(put_double(v, p, cl_builtin_component_names[i], s->components[i], err, errlen));
    TRY(open_container(v, p, "features", &c, err, errlen));
    for (size_t i = 0; i < s->n_features; i++) {
        TRY(add_entry(&c, p, "features", s->features[i].name, &item, err, errlen));
        if (avro_value_set_double(&item, s->features[i].value) != 0)
            return write_failed(p, "features", err, errlen);
    }
    TRY(put_opt_double(v, p, "opportunity_score", s->opportunity_score, err, errlen));
    TRY(put_opt_double(v, p, "account_score", s->account_score, err, errlen));
    TRY(open_container(v, p, "scores", &c, err, errlen));
    for (size_t i = 0; i < s->n_scores; i++) {
        const cl_score_entry *e = &s->scores[i];
        const char *ip = "OpportunitySnapshot.scores[]";
        TRY(append_item(&c, p, "scores", &item, err, errlen));
        TRY(put_str(&item, ip, "model", e->model, err, errlen));
        TRY(put_long(&item, ip, "version", e->version, err, errlen));
        TRY(put_double(&item, ip, "score", e->score, err, errlen));
        TRY(put_enum(&item, ip, "band", cl_band_name(e->band), err, errlen));
        TRY(put_double(&item, ip, "probability", e->probability, err, errlen));
    }
    return CL_OK;
}

static int snapshot_read(const avro_value_t *v, cl_snapshot *s, const char *p, char *err,
                         size_t errlen)
{
    avro_value_t c, item;
    size_t n;
    const char *key;
    char ip[PATH_MAX_LEN];

    cl_snapshot_init(s);
    TRY(get_str(v, p, "snapshot_id", s->snapshot_id, SZ(s, snapshot_id), true, err, errlen));
    TRY(get_str(v, p, "run_id", s->run_id, SZ(s, run_id), true, err, errlen));
    TRY(get_long(v, p, "snapshot_time", &s->snapshot_time, err, errlen));
    TRY(get_str(v, p, "opportunity_id", s->opportunity_id, SZ(s, opportunity_id), true, err,
                errlen));
    TRY(get_opt_str(v, p, "account_id", s->account_id, SZ(s, account_id), err, errlen));
    TRY(get_opt_str(v, p, "owner_id", s->owner_id, SZ(s, owner_id), err, errlen));
    TRY(get_str(v, p, "stage", s->stage, SZ(s, stage), true, err, errlen));
    TRY(get_opt_double(v, p, "amount", &s->amount, err, errlen));
    TRY(get_str(v, p, "currency", s->currency, SZ(s, currency), true, err, errlen));
    TRY(get_int(v, p, "created_date", &s->created_date, err, errlen));
    TRY(get_int(v, p, "expected_close_date", &s->expected_close_date, err, errlen));
    TRY(get_opt_int(v, p, "days_in_stage", &s->days_in_stage, err, errlen));
    TRY(get_opt_str(v, p, "segment", s->segment, SZ(s, segment), err, errlen));
    TRY(get_opt_str(v, p, "region", s->region, SZ(s, region), err, errlen));
    TRY(get_opt_str(v, p, "product", s->product, SZ(s, product), err, errlen));
    TRY(get_opt_str(v, p, "lead_source", s->lead_source, SZ(s, lead_source), err, errlen));
    TRY(get_opt_str(v, p, "type", s->type, SZ(s, type), err, errlen));

    TRY(get_container(v, p, "attributes", AVRO_MAP, CL_MAX_ATTRIBUTES, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_attribute *a = &s->attributes[i];
        TRY(get_item(&c, i, p, "attributes", &item, &key, err, errlen));
        TRY(copy_key(key, p, "attributes", a->key, sizeof a->key, err, errlen));
        fmt(ip, sizeof ip, "attributes[%s]", a->key);
        TRY(read_string(&item, p, ip, a->value, sizeof a->value, err, errlen));
    }
    s->n_attributes = n;

    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        TRY(get_double(v, p, cl_builtin_component_names[i], &s->components[i], err, errlen));

    TRY(get_container(v, p, "features", AVRO_MAP, CL_MAX_FEATURES, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_feature *f = &s->features[i];
        TRY(get_item(&c, i, p, "features", &item, &key, err, errlen));
        TRY(copy_key(key, p, "features", f->name, sizeof f->name, err, errlen));
        fmt(ip, sizeof ip, "features[%s]", f->name);
        TRY(read_double(&item, p, ip, &f->value, err, errlen));
    }
    s->n_features = n;

    TRY(get_opt_double(v, p, "opportunity_score", &s->opportunity_score, err, errlen));
    TRY(get_opt_double(v, p, "account_score", &s->account_score, err, errlen));

    TRY(get_container(v, p, "scores", AVRO_ARRAY, CL_MAX_SCORES, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_score_entry *e = &s->scores[i];
        fmt(ip, sizeof ip, "%s.scores[%zu]", p, i);
        TRY(get_item(&c, i, p, "scores", &item, NULL, err, errlen));
        TRY(get_str(&item, ip, "model", e->model, sizeof e->model, true, err, errlen));
        TRY(get_long(&item, ip, "version", &e->version, err, errlen));
        TRY(get_double(&item, ip, "score", &e->score, err, errlen));
        GET_ENUM(&item, ip, "band", band_names, &e->band);
        TRY(get_double(&item, ip, "probability", &e->probability, err, errlen));
    }
    s->n_scores = n;
    return CL_OK;
}

int cl_snapshot_to_avro(const cl_snapshot *s, avro_value_t *value, char *err, size_t errlen)
{
    TRY(cl_snapshot_validate(s, err, errlen));
    TRY(reset_value(value, "OpportunitySnapshot", err, errlen));
    return snapshot_write(s, value, "OpportunitySnapshot", err, errlen);
}

int cl_snapshot_from_avro(const avro_value_t *value, cl_snapshot *s, char *err, size_t errlen)
{
    TRY(snapshot_read(value, s, "OpportunitySnapshot", err, errlen));
    return cl_snapshot_validate(s, err, errlen);
}

/* ---- OpportunityOutcome ------------------------------------------------------------- */

static int outcome_write(const cl_outcome *o, avro_value_t *v, const char *p, char *err,
                         size_t errlen)
{
    TRY(put_str(v, p, "opportunity_id", o->opportunity_id, err, errlen));
    TRY(put_opt_str(v, p, "account_id", o->account_id, err, errlen));
    TRY(put_opt_str(v, p, "owner_id", o->owner_id, err, errlen));
    TRY(put_enum(v, p, "outcome", cl_outcome_kind_name(o->outcome), err, errlen));
    TRY(put_str(v, p, "stage_name", o->stage_name, err, errlen));
    TRY(put_int(v, p, "close_date", o->close_date, err, errlen));
    TRY(put_opt_double(v, p, "final_value", o->final_value, err, errlen));
    TRY(put_str(v, p, "currency", o->currency, err, errlen));
    TRY(put_int(v, p, "created_date", o->created_date, err, errlen));
    TRY(put_int(v, p, "days_to_close", o->days_to_close, err, errlen));
    TRY(put_long(v, p, "system_modstamp", o->system_modstamp, err, errlen));
    TRY(put_enum(v, p, "source", cl_outcome_source_name(o->source), err, errlen));
    TRY(put_long(v, p, "ingested_at", o->ingested_at, err, errlen));
    TRY(put_opt_str(v, p, "type", o->type, err, errlen));
    TRY(put_opt_str(v, p, "lead_source", o->lead_source, err, errlen));
    return CL_OK;
}

static int outcome_read(const avro_value_t *v, cl_outcome *o, const char *p, char *err,
                        size_t errlen)
{
    cl_outcome_init(o);
    TRY(get_str(v, p, "opportunity_id", o->opportunity_id, SZ(o, opportunity_id), true, err,
                errlen));
    TRY(get_opt_str(v, p, "account_id", o->account_id, SZ(o, account_id), err, errlen));
    TRY(get_opt_str(v, p, "owner_id", o->owner_id, SZ(o, owner_id), err, errlen));
    GET_ENUM(v, p, "outcome", outcome_names, &o->outcome);
    TRY(get_str(v, p, "stage_name", o->stage_name, SZ(o, stage_name), true, err, errlen));
    TRY(get_int(v, p, "close_date", &o->close_date, err, errlen));
    TRY(get_opt_double(v, p, "final_value", &o->final_value, err, errlen));
    TRY(get_str(v, p, "currency", o->currency, SZ(o, currency), true, err, errlen));
    TRY(get_int(v, p, "created_date", &o->created_date, err, errlen));
    TRY(get_int(v, p, "days_to_close", &o->days_to_close, err, errlen));
    TRY(get_long(v, p, "system_modstamp", &o->system_modstamp, err, errlen));
    GET_ENUM(v, p, "source", source_names, &o->source);
    TRY(get_long(v, p, "ingested_at", &o->ingested_at, err, errlen));
    TRY(get_opt_str(v, p, "type", o->type, SZ(o, type), err, errlen));
    TRY(get_opt_str(v, p, "lead_source", o->lead_source, SZ(o, lead_source), err, errlen));
    return CL_OK;
}

int cl_outcome_to_avro(const cl_outcome *o, avro_value_t *value, char *err, size_t errlen)
{
    TRY(cl_outcome_validate(o, err, errlen));
    TRY(reset_value(value, "OpportunityOutcome", err, errlen));
    return outcome_write(o, value, "OpportunityOutcome", err, errlen);
}

int cl_outcome_from_avro(const avro_value_t *value, cl_outcome *o, char *err, size_t errlen)
{
    TRY(outcome_read(value, o, "OpportunityOutcome", err, errlen));
    return cl_outcome_validate(o, err, errlen);
}

/* ---- LabeledExample ----------------------------------------------------------------- */

int cl_labeled_example_to_avro(const cl_labeled_example *e, avro_value_t *value, char *err,
                               size_t errlen)
{
    const char *p = "LabeledExample";
    avro_value_t sub;
    TRY(cl_labeled_example_validate(e, err, errlen));
    TRY(reset_value(value, p, err, errlen));
    TRY(put_int(value, p, "days_before_close", e->days_before_close, err, errlen));
    TRY(put_long(value, p, "outcome_version", e->outcome_version, err, errlen));
    TRY(put_bool(value, p, "retracted", e->retracted, err, errlen));
    TRY(put_long(value, p, "joined_at", e->joined_at, err, errlen));
    TRY(put_field(value, p, "snapshot", &sub, err, errlen));
    TRY(snapshot_write(&e->snapshot, &sub, "LabeledExample.snapshot", err, errlen));
    TRY(put_field(value, p, "outcome", &sub, err, errlen));
    return outcome_write(&e->outcome, &sub, "LabeledExample.outcome", err, errlen);
}

int cl_labeled_example_from_avro(const avro_value_t *value, cl_labeled_example *e, char *err,
                                 size_t errlen)
{
    const char *p = "LabeledExample";
    avro_value_t sub;
    cl_labeled_example_init(e);
    TRY(get_int(value, p, "days_before_close", &e->days_before_close, err, errlen));
    TRY(get_long(value, p, "outcome_version", &e->outcome_version, err, errlen));
    TRY(get_bool(value, p, "retracted", &e->retracted, err, errlen));
    TRY(get_long(value, p, "joined_at", &e->joined_at, err, errlen));
    TRY(get_field(value, p, "snapshot", &sub, err, errlen));
    TRY(snapshot_read(&sub, &e->snapshot, "LabeledExample.snapshot", err, errlen));
    TRY(get_field(value, p, "outcome", &sub, err, errlen));
    TRY(outcome_read(&sub, &e->outcome, "LabeledExample.outcome", err, errlen));
    return cl_labeled_example_validate(e, err, errlen);
}

/* ---- ModelMetrics ------------------------------------------------------------------- */

static int groups_write(avro_value_t *v, const char *p, const char *name, const cl_metrics_group *g,
                        size_t n, char *err, size_t errlen)
{
    avro_value_t c, item;
    const char *ip = "ModelMetrics.group";
    TRY(open_container(v, p, name, &c, err, errlen));
    for (size_t i = 0; i < n; i++) {
        TRY(append_item(&c, p, name, &item, err, errlen));
        TRY(put_str(&item, ip, "key", g[i].key, err, errlen));
        TRY(put_long(&item, ip, "n", g[i].n, err, errlen));
        TRY(put_long(&item, ip, "won", g[i].won, err, errlen));
        TRY(put_opt_double(&item, ip, "mean_score", g[i].mean_score, err, errlen));
        TRY(put_opt_double(&item, ip, "auc", g[i].auc, err, errlen));
        TRY(put_opt_double(&item, ip, "precision", g[i].precision, err, errlen));
    }
    return CL_OK;
}

static int groups_read(const avro_value_t *v, const char *p, const char *name, cl_metrics_group *g,
                       size_t *n_out, char *err, size_t errlen)
{
    avro_value_t c, item;
    size_t n;
    char ip[PATH_MAX_LEN];
    TRY(get_container(v, p, name, AVRO_ARRAY, CL_MAX_GROUPS, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        fmt(ip, sizeof ip, "%s.%s[%zu]", p, name, i);
        TRY(get_item(&c, i, p, name, &item, NULL, err, errlen));
        TRY(get_str(&item, ip, "key", g[i].key, sizeof g[i].key, false, err, errlen));
        TRY(get_count(&item, ip, "n", &g[i].n, err, errlen));
        TRY(get_count(&item, ip, "won", &g[i].won, err, errlen));
        TRY(get_opt_double(&item, ip, "mean_score", &g[i].mean_score, err, errlen));
        TRY(get_opt_double(&item, ip, "auc", &g[i].auc, err, errlen));
        TRY(get_opt_double(&item, ip, "precision", &g[i].precision, err, errlen));
    }
    *n_out = n;
    return CL_OK;
}

int cl_model_metrics_to_avro(const cl_model_metrics *m, avro_value_t *value, char *err,
                             size_t errlen)
{
    const char *p = "ModelMetrics";
    avro_value_t sub, c, item;
    TRY(cl_model_metrics_validate(m, err, errlen));
    TRY(reset_value(value, p, err, errlen));
    TRY(put_str(value, p, "model", m->model, err, errlen));
    TRY(put_long(value, p, "version", m->version, err, errlen));
    TRY(put_long(value, p, "generated_at", m->generated_at, err, errlen));
    TRY(put_field(value, p, "window", &sub, err, errlen));
    TRY(put_long(&sub, "ModelMetrics.window", "start", m->window.start, err, errlen));
    TRY(put_long(&sub, "ModelMetrics.window", "end", m->window.end, err, errlen));
    TRY(put_enum(&sub, "ModelMetrics.window", "kind", cl_window_kind_name(m->window.kind), err,
                 errlen));
    TRY(put_enum(value, p, "horizon", cl_horizon_policy_name(m->horizon), err, errlen));
    TRY(put_int(value, p, "horizon_days", m->horizon_days, err, errlen));
    TRY(put_long(value, p, "n", m->n, err, errlen));
    TRY(put_long(value, p, "won", m->won, err, errlen));
    TRY(put_long(value, p, "lost", m->lost, err, errlen));
    TRY(put_field(value, p, "confusion", &sub, err, errlen));
    {
        const char *cp = "ModelMetrics.confusion";
        TRY(put_double(&sub, cp, "threshold", m->confusion.threshold, err, errlen));
        TRY(put_long(&sub, cp, "tp", m->confusion.tp, err, errlen));
        TRY(put_long(&sub, cp, "fp", m->confusion.fp, err, errlen));
        TRY(put_long(&sub, cp, "tn", m->confusion.tn, err, errlen));
        TRY(put_long(&sub, cp, "fn", m->confusion.fn, err, errlen));
    }
    TRY(put_opt_double(value, p, "precision", m->precision, err, errlen));
    TRY(put_opt_double(value, p, "recall", m->recall, err, errlen));
    TRY(put_opt_double(value, p, "f1", m->f1, err, errlen));
    TRY(put_opt_double(value, p, "auc", m->auc, err, errlen));
    TRY(put_opt_double(value, p, "brier", m->brier, err, errlen));
    TRY(put_opt_double(value, p, "log_loss", m->log_loss, err, errlen));
    TRY(put_opt_double(value, p, "ece", m->ece, err, errlen));

    TRY(open_container(value, p, "calibration_bins", &c, err, errlen));
    for (size_t i = 0; i < m->n_calibration_bins; i++) {
        const cl_metrics_calibration_bin *b = &m->calibration_bins[i];
        const char *ip = "ModelMetrics.calibration_bins[]";
        TRY(append_item(&c, p, "calibration_bins", &item, err, errlen));
        TRY(put_double(&item, ip, "lower", b->lower, err, errlen));
        TRY(put_double(&item, ip, "upper", b->upper, err, errlen));
        TRY(put_long(&item, ip, "n", b->n, err, errlen));
        TRY(put_long(&item, ip, "won", b->won, err, errlen));
        TRY(put_opt_double(&item, ip, "mean_predicted", b->mean_predicted, err, errlen));
        TRY(put_opt_double(&item, ip, "observed_rate", b->observed_rate, err, errlen));
    }
    TRY(open_container(value, p, "thresholds", &c, err, errlen));
    for (size_t i = 0; i < m->n_thresholds; i++) {
        const cl_metrics_threshold_point *t = &m->thresholds[i];
        const char *ip = "ModelMetrics.thresholds[]";
        TRY(append_item(&c, p, "thresholds", &item, err, errlen));
        TRY(put_double(&item, ip, "threshold", t->threshold, err, errlen));
        TRY(put_long(&item, ip, "predicted_positive", t->predicted_positive, err, errlen));
        TRY(put_opt_double(&item, ip, "precision", t->precision, err, errlen));
        TRY(put_opt_double(&item, ip, "recall", t->recall, err, errlen));
    }
    TRY(open_container(value, p, "by_band", &c, err, errlen));
    for (size_t i = 0; i < m->n_by_band; i++) {
        const cl_metrics_band *b = &m->by_band[i];
        const char *ip = "ModelMetrics.by_band[]";
        TRY(append_item(&c, p, "by_band", &item, err, errlen));
        TRY(put_enum(&item, ip, "band", cl_band_name(b->band), err, errlen));
        TRY(put_long(&item, ip, "n", b->n, err, errlen));
        TRY(put_long(&item, ip, "won", b->won, err, errlen));
        TRY(put_opt_double(&item, ip, "mean_probability", b->mean_probability, err, errlen));
    }
    TRY(groups_write(value, p, "by_stage", m->by_stage, m->n_by_stage, err, errlen));
    TRY(groups_write(value, p, "by_segment", m->by_segment, m->n_by_segment, err, errlen));
    return groups_write(value, p, "by_owner", m->by_owner, m->n_by_owner, err, errlen);
}

int cl_model_metrics_from_avro(const avro_value_t *value, cl_model_metrics *m, char *err,
                               size_t errlen)
{
    const char *p = "ModelMetrics";
    avro_value_t sub, c, item;
    size_t n;
    char ip[PATH_MAX_LEN];
    cl_model_metrics_init(m);
    TRY(get_str(value, p, "model", m->model, sizeof m->model, true, err, errlen));
    TRY(get_long(value, p, "version", &m->version, err, errlen));
    TRY(get_long(value, p, "generated_at", &m->generated_at, err, errlen));
    TRY(get_field(value, p, "window", &sub, err, errlen));
    TRY(get_long(&sub, "ModelMetrics.window", "start", &m->window.start, err, errlen));
    TRY(get_long(&sub, "ModelMetrics.window", "end", &m->window.end, err, errlen));
    GET_ENUM(&sub, "ModelMetrics.window", "kind", window_names, &m->window.kind);
    GET_ENUM(value, p, "horizon", horizon_names, &m->horizon);
    TRY(get_int(value, p, "horizon_days", &m->horizon_days, err, errlen));
    TRY(get_count(value, p, "n", &m->n, err, errlen));
    TRY(get_count(value, p, "won", &m->won, err, errlen));
    TRY(get_count(value, p, "lost", &m->lost, err, errlen));
    TRY(get_field(value, p, "confusion", &sub, err, errlen));
    {
        const char *cp = "ModelMetrics.confusion";
        TRY(get_double(&sub, cp, "threshold", &m->confusion.threshold, err, errlen));
        TRY(get_count(&sub, cp, "tp", &m->confusion.tp, err, errlen));
        TRY(get_count(&sub, cp, "fp", &m->confusion.fp, err, errlen));
        TRY(get_count(&sub, cp, "tn", &m->confusion.tn, err, errlen));
        TRY(get_count(&sub, cp, "fn", &m->confusion.fn, err, errlen));
    }
    TRY(get_opt_double(value, p, "precision", &m->precision, err, errlen));
    TRY(get_opt_double(value, p, "recall", &m->recall, err, errlen));
    TRY(get_opt_double(value, p, "f1", &m->f1, err, errlen));
    TRY(get_opt_double(value, p, "auc", &m->auc, err, errlen));
    TRY(get_opt_double(value, p, "brier", &m->brier, err, errlen));
    TRY(get_opt_double(value, p, "log_loss", &m->log_loss, err, errlen));
    TRY(get_opt_double(value, p, "ece", &m->ece, err, errlen));

    TRY(get_container(value, p, "calibration_bins", AVRO_ARRAY, CL_MAX_CALIBRATION_BINS, &c, &n,
                      err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_metrics_calibration_bin *b = &m->calibration_bins[i];
        fmt(ip, sizeof ip, "%s.calibration_bins[%zu]", p, i);
        TRY(get_item(&c, i, p, "calibration_bins", &item, NULL, err, errlen));
        TRY(get_double(&item, ip, "lower", &b->lower, err, errlen));
        TRY(get_double(&item, ip, "upper", &b->upper, err, errlen));
        TRY(get_count(&item, ip, "n", &b->n, err, errlen));
        TRY(get_count(&item, ip, "won", &b->won, err, errlen));
        TRY(get_opt_double(&item, ip, "mean_predicted", &b->mean_predicted, err, errlen));
        TRY(get_opt_double(&item, ip, "observed_rate", &b->observed_rate, err, errlen));
    }
    m->n_calibration_bins = n;
    TRY(get_container(value, p, "thresholds", AVRO_ARRAY, CL_MAX_THRESHOLD_POINTS, &c, &n, err,
                      errlen));
    for (size_t i = 0; i < n; i++) {
        cl_metrics_threshold_point *t = &m->thresholds[i];
        fmt(ip, sizeof ip, "%s.thresholds[%zu]", p, i);
        TRY(get_item(&c, i, p, "thresholds", &item, NULL, err, errlen));
        TRY(get_double(&item, ip, "threshold", &t->threshold, err, errlen));
        TRY(get_count(&item, ip, "predicted_positive", &t->predicted_positive, err, errlen));
        TRY(get_opt_double(&item, ip, "precision", &t->precision, err, errlen));
        TRY(get_opt_double(&item, ip, "recall", &t->recall, err, errlen));
    }
    m->n_thresholds = n;
    TRY(get_container(value, p, "by_band", AVRO_ARRAY, CL_NUM_BANDS, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_metrics_band *b = &m->by_band[i];
        fmt(ip, sizeof ip, "%s.by_band[%zu]", p, i);
        TRY(get_item(&c, i, p, "by_band", &item, NULL, err, errlen));
        GET_ENUM(&item, ip, "band", band_names, &b->band);
        TRY(get_count(&item, ip, "n", &b->n, err, errlen));
        TRY(get_count(&item, ip, "won", &b->won, err, errlen));
        TRY(get_opt_double(&item, ip, "mean_probability", &b->mean_probability, err, errlen));
    }
    m->n_by_band = n;
    TRY(groups_read(value, p, "by_stage", m->by_stage, &m->n_by_stage, err, errlen));
    TRY(groups_read(value, p, "by_segment", m->by_segment, &m->n_by_segment, err, errlen));
    TRY(groups_read(value, p, "by_owner", m->by_owner, &m->n_by_owner, err, errlen));
    return cl_model_metrics_validate(m, err, errlen);
}

/* ---- WeightConfig ------------------------------------------------------------------- */

static int weights_write(avro_value_t *rec, const char *p, const char *name, const cl_weight_set *w,
                         char *err, size_t errlen)
{
    avro_value_t c, item;
    TRY(open_container(rec, p, name, &c, err, errlen));
    for (size_t i = 0; i < w->n; i++) {
        TRY(add_entry(&c, p, name, w->items[i].component, &item, err, errlen));
        if (avro_value_set_double(&item, w->items[i].weight) != 0)
            return write_failed(p, name, err, errlen);
    }
    return CL_OK;
}

static int weights_read(const avro_value_t *rec, const char *p, const char *name, cl_weight_set *w,
                        char *err, size_t errlen)
{
    avro_value_t c, item;
    size_t n;
    const char *key;
    char ip[PATH_MAX_LEN];
    TRY(get_container(rec, p, name, AVRO_MAP, CL_MAX_WEIGHTS, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_weight *x = &w->items[i];
        TRY(get_item(&c, i, p, name, &item, &key, err, errlen));
        TRY(copy_key(key, p, name, x->component, sizeof x->component, err, errlen));
        fmt(ip, sizeof ip, "%s[%s]", name, x->component);
        TRY(read_double(&item, p, ip, &x->weight, err, errlen));
    }
    w->n = n;
    return CL_OK;
}

static int component_write(const cl_component_def *d, avro_value_t *v, char *err, size_t errlen)
{
    const char *p = "WeightConfig.components[]";
    avro_value_t c, item;
    TRY(put_str(v, p, "name", d->name, err, errlen));
    TRY(put_enum(v, p, "kind", cl_component_kind_name(d->kind), err, errlen));
    TRY(put_str(v, p, "source", d->source, err, errlen));
    TRY(put_double(v, p, "smoothing", d->smoothing, err, errlen));
    TRY(put_double(v, p, "overall_rate", d->overall_rate, err, errlen));
    TRY(open_container(v, p, "categories", &c, err, errlen));
    for (size_t i = 0; i < d->n_categories; i++) {
        const char *ip = "WeightConfig.components[].categories[]";
        TRY(append_item(&c, p, "categories", &item, err, errlen));
        TRY(put_str(&item, ip, "category", d->categories[i].category, err, errlen));
        TRY(put_double(&item, ip, "rate", d->categories[i].rate, err, errlen));
        TRY(put_long(&item, ip, "n", d->categories[i].n, err, errlen));
    }
    TRY(open_container(v, p, "breakpoints", &c, err, errlen));
    for (size_t i = 0; i < d->n_breakpoints; i++) {
        TRY(append_item(&c, p, "breakpoints", &item, err, errlen));
        if (avro_value_set_double(&item, d->breakpoints[i]) != 0)
            return write_failed(p, "breakpoints", err, errlen);
    }
    TRY(put_bool(v, p, "descending", d->descending, err, errlen));
    return put_double(v, p, "missing_value", d->missing_value, err, errlen);
}

static int component_read(const avro_value_t *v, const char *p, cl_component_def *d, char *err,
                          size_t errlen)
{
    avro_value_t c, item;
    size_t n;
    char ip[PATH_MAX_LEN];
    cl_component_def_init(d);
    TRY(get_str(v, p, "name", d->name, sizeof d->name, true, err, errlen));
    GET_ENUM(v, p, "kind", kind_names, &d->kind);
    TRY(get_str(v, p, "source", d->source, sizeof d->source, true, err, errlen));
    TRY(get_double(v, p, "smoothing", &d->smoothing, err, errlen));
    TRY(get_double(v, p, "overall_rate", &d->overall_rate, err, errlen));
    TRY(get_container(v, p, "categories", AVRO_ARRAY, CL_MAX_CATEGORIES, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_category_rate *r = &d->categories[i];
        fmt(ip, sizeof ip, "%s.categories[%zu]", p, i);
        TRY(get_item(&c, i, p, "categories", &item, NULL, err, errlen));
        TRY(get_str(&item, ip, "category", r->category, sizeof r->category, false, err, errlen));
        TRY(get_double(&item, ip, "rate", &r->rate, err, errlen));
        TRY(get_count(&item, ip, "n", &r->n, err, errlen));
    }
    d->n_categories = n;
    TRY(get_container(v, p, "breakpoints", AVRO_ARRAY, CL_MAX_BREAKPOINTS, &c, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        fmt(ip, sizeof ip, "breakpoints[%zu]", i);
        TRY(get_item(&c, i, p, "breakpoints", &item, NULL, err, errlen));
        TRY(read_double(&item, p, ip, &d->breakpoints[i], err, errlen));
    }
    d->n_breakpoints = n;
    TRY(get_bool(v, p, "descending", &d->descending, err, errlen));
    return get_double(v, p, "missing_value", &d->missing_value, err, errlen);
}

int cl_weight_config_to_avro(const cl_weight_config *c, avro_value_t *value, char *err,
                             size_t errlen)
{
    const char *p = "WeightConfig";
    avro_value_t sub, arr, item, branch;
    TRY(cl_weight_config_validate(c, err, errlen));
    TRY(cl_weight_config_discovery_validate(c, err, errlen));
    TRY(reset_value(value, p, err, errlen));
    TRY(put_str(value, p, "model", c->model, err, errlen));
    TRY(put_long(value, p, "version", c->version, err, errlen));
    TRY(put_opt_long(value, p, "parent_version", c->parent_version, err, errlen));
    TRY(put_enum(value, p, "status", cl_model_status_name(c->status), err, errlen));
    TRY(put_long(value, p, "created_at", c->created_at, err, errlen));
    TRY(weights_write(value, p, "weights", &c->weights, err, errlen));
    TRY(open_container(value, p, "stage_weights", &arr, err, errlen));
    for (size_t i = 0; i < c->n_stage_weights; i++) {
        const char *ip = "WeightConfig.stage_weights[]";
        TRY(append_item(&arr, p, "stage_weights", &item, err, errlen));
        TRY(put_str(&item, ip, "stage", c->stage_weights[i].stage, err, errlen));
        TRY(weights_write(&item, ip, "weights", &c->stage_weights[i].weights, err, errlen));
    }
    TRY(put_field(value, p, "calibration", &sub, err, errlen));
    TRY(put_double(&sub, "WeightConfig.calibration", "intercept", c->calibration.intercept, err,
                   errlen));
    TRY(put_double(&sub, "WeightConfig.calibration", "slope", c->calibration.slope, err, errlen));
    TRY(put_field(value, p, "bands", &sub, err, errlen));
    TRY(put_double(&sub, "WeightConfig.bands", "high", c->bands.high, err, errlen));
    TRY(put_double(&sub, "WeightConfig.bands", "medium", c->bands.medium, err, errlen));
    TRY(open_container(value, p, "components", &arr, err, errlen));
    for (size_t i = 0; i < c->n_components; i++) {
        TRY(append_item(&arr, p, "components", &item, err, errlen));
        TRY(component_write(&c->components[i], &item, err, errlen));
    }

    TRY(put_field(value, p, "training", &sub, err, errlen));
    if (!c->has_training) {
        TRY(set_null(&sub, p, "training", err, errlen));
    } else {
        const char *tp = "WeightConfig.training";
        const cl_training_summary *t = &c->training;
        TRY(select_branch(&sub, AVRO_RECORD, p, "training", &branch, err, errlen));
        TRY(put_long(&branch, tp, "window_start", t->window_start, err, errlen));
        TRY(put_long(&branch, tp, "window_end", t->window_end, err, errlen));
        TRY(put_long(&branch, tp, "n_won", t->n_won, err, errlen));
        TRY(put_long(&branch, tp, "n_lost", t->n_lost, err, errlen));
        TRY(put_opt_double(&branch, tp, "half_life_days", t->half_life_days, err, errlen));
        TRY(put_double(&branch, tp, "l2", t->l2, err, errlen));
        TRY(put_double(&branch, tp, "effective_n", t->effective_n, err, errlen));
        TRY(put_opt_double(&branch, tp, "max_weight_change", t->max_weight_change, err, errlen));
    }

    TRY(open_container(value, p, "validation", &arr, err, errlen));
    for (size_t i = 0; i < c->n_validation; i++) {
        const cl_validation_fold *f = &c->validation[i];
        const char *ip = "WeightConfig.validation[]";
        TRY(append_item(&arr, p, "validation", &item, err, errlen));
        TRY(put_int(&item, ip, "fold", f->fold, err, errlen));
        TRY(put_long(&item, ip, "test_start", f->test_start, err, errlen));
        TRY(put_long(&item, ip, "test_end", f->test_end, err, errlen));
        TRY(put_long(&item, ip, "n", f->n, err, errlen));
        TRY(put_opt_double(&item, ip, "auc", f->auc, err, errlen));
        TRY(put_opt_double(&item, ip, "brier", f->brier, err, errlen));
        TRY(put_opt_double(&item, ip, "ece", f->ece, err, errlen));
        TRY(put_opt_double(&item, ip, "precision_at_high", f->precision_at_high, err, errlen));
        TRY(put_opt_double(&item, ip, "champion_auc", f->champion_auc, err, errlen));
    }

    TRY(put_field(value, p, "comparison", &sub, err, errlen));
    if (!c->has_comparison) {
        TRY(set_null(&sub, p, "comparison", err, errlen));
    } else {
        const char *cp = "WeightConfig.comparison";
        const cl_champion_comparison *k = &c->comparison;
        TRY(select_branch(&sub, AVRO_RECORD, p, "comparison", &branch, err, errlen));
        TRY(put_long(&branch, cp, "champion_version", k->champion_version, err, errlen));
        TRY(put_double(&branch, cp, "delta_auc", k->delta_auc, err, errlen));
        TRY(put_double(&branch, cp, "p_value", k->p_value, err, errlen));
        TRY(put_long(&branch, cp, "n_paired", k->n_paired, err, errlen));
        TRY(put_opt_double(&branch, cp, "delta_precision_at_high", k->delta_precision_at_high, err,
                           errlen));
    }
    TRY(put_str(value, p, "reason", c->reason, err, errlen));

    TRY(open_container(value, p, "discovery", &arr, err, errlen));
    for (size_t i = 0; i < c->n_discovery; i++) {
        const cl_candidate_evidence *e = &c->discovery[i];
        const char *ip = "WeightConfig.discovery[]";
        TRY(append_item(&arr, p, "discovery", &item, err, errlen));
        TRY(put_str(&item, ip, "name", e->name, err, errlen));
        TRY(put_enum(&item, ip, "kind", cl_component_kind_name(e->kind), err, errlen));
        TRY(put_str(&item, ip, "source", e->source, err, errlen));
        TRY(put_opt_double(&item, ip, "delta_auc", e->delta_auc, err, errlen));
        TRY(put_opt_double(&item, ip, "delta_log_loss", e->delta_log_loss, err, errlen));
        TRY(put_opt_double(&item, ip, "shuffled_max_delta_auc", e->shuffled_max_delta_auc, err,
                           errlen));
        TRY(put_opt_double(&item, ip, "shuffled_max_delta_log_loss", e->shuffled_max_delta_log_loss,
                           err, errlen));
        TRY(put_int(&item, ip, "permutations", e->permutations, err, errlen));
        TRY(put_bool(&item, ip, "beats_shuffled", e->beats_shuffled, err, errlen));
        TRY(put_bool(&item, ip, "adopted", e->adopted, err, errlen));
        TRY(put_long(&item, ip, "n_examples", e->n_examples, err, errlen));
        TRY(put_long(&item, ip, "n_with_value", e->n_with_value, err, errlen));
        TRY(put_long(&item, ip, "n_categories", e->n_categories, err, errlen));
    }
    return CL_OK;
}

int cl_weight_config_from_avro(const avro_value_t *value, cl_weight_config *c, char *err,
                               size_t errlen)
{
    const char *p = "WeightConfig";
    avro_value_t sub, arr, item, branch;
    size_t n;
    char ip[PATH_MAX_LEN];
    bool present;

    cl_weight_config_init(c);
    TRY(get_str(value, p, "model", c->model, sizeof c->model, true, err, errlen));
    TRY(get_long(value, p, "version", &c->version, err, errlen));
    TRY(get_opt_long(value, p, "parent_version", &c->parent_version, err, errlen));
    GET_ENUM(value, p, "status", status_names, &c->status);
    TRY(get_long(value, p, "created_at", &c->created_at, err, errlen));
    TRY(weights_read(value, p, "weights", &c->weights, err, errlen));
    TRY(get_container(value, p, "stage_weights", AVRO_ARRAY, CL_MAX_STAGE_WEIGHTS, &arr, &n, err,
                      errlen));
    for (size_t i = 0; i < n; i++) {
        cl_stage_weights *s = &c->stage_weights[i];
        fmt(ip, sizeof ip, "%s.stage_weights[%zu]", p, i);
        TRY(get_item(&arr, i, p, "stage_weights", &item, NULL, err, errlen));
        TRY(get_str(&item, ip, "stage", s->stage, sizeof s->stage, true, err, errlen));
        TRY(weights_read(&item, ip, "weights", &s->weights, err, errlen));
    }
    c->n_stage_weights = n;
    TRY(get_field(value, p, "calibration", &sub, err, errlen));
    TRY(get_double(&sub, "WeightConfig.calibration", "intercept", &c->calibration.intercept, err,
                   errlen));
    TRY(get_double(&sub, "WeightConfig.calibration", "slope", &c->calibration.slope, err, errlen));
    TRY(get_field(value, p, "bands", &sub, err, errlen));
    TRY(get_double(&sub, "WeightConfig.bands", "high", &c->bands.high, err, errlen));
    TRY(get_double(&sub, "WeightConfig.bands", "medium", &c->bands.medium, err, errlen));
    TRY(get_container(value, p, "components", AVRO_ARRAY, CL_MAX_COMPONENT_DEFS, &arr, &n, err,
                      errlen));
    for (size_t i = 0; i < n; i++) {
        fmt(ip, sizeof ip, "%s.components[%zu]", p, i);
        TRY(get_item(&arr, i, p, "components", &item, NULL, err, errlen));
        TRY(component_read(&item, ip, &c->components[i], err, errlen));
    }
    c->n_components = n;

    TRY(get_field(value, p, "training", &sub, err, errlen));
    TRY(unwrap_nullable(&sub, p, "training", &present, &branch, err, errlen));
    c->has_training = present;
    if (present) {
        const char *tp = "WeightConfig.training";
        cl_training_summary *t = &c->training;
        TRY(get_long(&branch, tp, "window_start", &t->window_start, err, errlen));
        TRY(get_long(&branch, tp, "window_end", &t->window_end, err, errlen));
        TRY(get_count(&branch, tp, "n_won", &t->n_won, err, errlen));
        TRY(get_count(&branch, tp, "n_lost", &t->n_lost, err, errlen));
        TRY(get_opt_double(&branch, tp, "half_life_days", &t->half_life_days, err, errlen));
        TRY(get_double(&branch, tp, "l2", &t->l2, err, errlen));
        TRY(get_double(&branch, tp, "effective_n", &t->effective_n, err, errlen));
        TRY(get_opt_double(&branch, tp, "max_weight_change", &t->max_weight_change, err, errlen));
    }

    TRY(get_container(value, p, "validation", AVRO_ARRAY, CL_MAX_FOLDS, &arr, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_validation_fold *f = &c->validation[i];
        fmt(ip, sizeof ip, "%s.validation[%zu]", p, i);
        TRY(get_item(&arr, i, p, "validation", &item, NULL, err, errlen));
        TRY(get_int(&item, ip, "fold", &f->fold, err, errlen));
        TRY(get_long(&item, ip, "test_start", &f->test_start, err, errlen));
        TRY(get_long(&item, ip, "test_end", &f->test_end, err, errlen));
        TRY(get_count(&item, ip, "n", &f->n, err, errlen));
        TRY(get_opt_double(&item, ip, "auc", &f->auc, err, errlen));
        TRY(get_opt_double(&item, ip, "brier", &f->brier, err, errlen));
        TRY(get_opt_double(&item, ip, "ece", &f->ece, err, errlen));
        TRY(get_opt_double(&item, ip, "precision_at_high", &f->precision_at_high, err, errlen));
        TRY(get_opt_double(&item, ip, "champion_auc", &f->champion_auc, err, errlen));
    }
    c->n_validation = n;

    TRY(get_field(value, p, "comparison", &sub, err, errlen));
    TRY(unwrap_nullable(&sub, p, "comparison", &present, &branch, err, errlen));
    c->has_comparison = present;
    if (present) {
        const char *cp = "WeightConfig.comparison";
        cl_champion_comparison *k = &c->comparison;
        TRY(get_long(&branch, cp, "champion_version", &k->champion_version, err, errlen));
        TRY(get_double(&branch, cp, "delta_auc", &k->delta_auc, err, errlen));
        TRY(get_double(&branch, cp, "p_value", &k->p_value, err, errlen));
        TRY(get_count(&branch, cp, "n_paired", &k->n_paired, err, errlen));
        TRY(get_opt_double(&branch, cp, "delta_precision_at_high", &k->delta_precision_at_high, err,
                           errlen));
    }
    TRY(get_str(value, p, "reason", c->reason, sizeof c->reason, false, err, errlen));

    TRY(get_container(value, p, "discovery", AVRO_ARRAY, CL_MAX_DISCOVERY, &arr, &n, err, errlen));
    for (size_t i = 0; i < n; i++) {
        cl_candidate_evidence *e = &c->discovery[i];
        fmt(ip, sizeof ip, "%s.discovery[%zu]", p, i);
        TRY(get_item(&arr, i, p, "discovery", &item, NULL, err, errlen));
        TRY(get_str(&item, ip, "name", e->name, sizeof e->name, true, err, errlen));
        GET_ENUM(&item, ip, "kind", kind_names, &e->kind);
        TRY(get_str(&item, ip, "source", e->source, sizeof e->source, true, err, errlen));
        TRY(get_opt_double(&item, ip, "delta_auc", &e->delta_auc, err, errlen));
        TRY(get_opt_double(&item, ip, "delta_log_loss", &e->delta_log_loss, err, errlen));
        TRY(get_opt_double(&item, ip, "shuffled_max_delta_auc", &e->shuffled_max_delta_auc, err,
                           errlen));
        TRY(get_opt_double(&item, ip, "shuffled_max_delta_log_loss",
                           &e->shuffled_max_delta_log_loss, err, errlen));
        TRY(get_int(&item, ip, "permutations", &e->permutations, err, errlen));
        TRY(get_bool(&item, ip, "beats_shuffled", &e->beats_shuffled, err, errlen));
        TRY(get_bool(&item, ip, "adopted", &e->adopted, err, errlen));
        TRY(get_count(&item, ip, "n_examples", &e->n_examples, err, errlen));
        TRY(get_count(&item, ip, "n_with_value", &e->n_with_value, err, errlen));
        TRY(get_count(&item, ip, "n_categories", &e->n_categories, err, errlen));
    }
    c->n_discovery = n;
    cl_weight_config_sort_categories(c);
    TRY(cl_weight_config_validate(c, err, errlen));
    return cl_weight_config_discovery_validate(c, err, errlen);
}

/* ---- helpers -------------------------------------------------------------------------- */

int cl_snapshot_id(const char *run_id, const char *opportunity_id, char out[CL_SNAPSHOT_ID_LEN + 1],
                   char *err, size_t errlen)
{
    out[0] = '\0';
    if (run_id == NULL || opportunity_id == NULL)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "snapshot id: run_id and opportunity_id are required");
    size_t rl = strnlen(run_id, CL_ID_MAX + 1), ol = strnlen(opportunity_id, CL_ID_MAX + 1);
    if (rl == 0 || rl > CL_ID_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "snapshot id: run_id must be 1..%d bytes",
                         CL_ID_MAX);
    if (ol == 0 || ol > CL_ID_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "snapshot id: opportunity_id must be 1..%d bytes",
                         CL_ID_MAX);
    unsigned char input[2 * CL_ID_MAX + 1];
    memcpy(input, run_id, rl);
    input[rl] = 0;
    memcpy(input + rl + 1, opportunity_id, ol);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(input, rl + 1 + ol, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen < 16)
        return cl_seterr(err, errlen, CL_ERR, "snapshot id: SHA-256 failed (OpenSSL)");
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < CL_SNAPSHOT_ID_LEN / 2; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[CL_SNAPSHOT_ID_LEN] = '\0';
    return CL_OK;
}

int32_t cl_day_of_ms(int64_t ms)
{
    const int64_t day = 86400000;
    int64_t q = ms / day;
    if (ms % day != 0 && ms < 0) q--;
    return (int32_t)q;
}

int64_t cl_days_before_close(const cl_snapshot *s, const cl_outcome *o)
{
    return (int64_t)o->close_date - cl_day_of_ms(s->snapshot_time);
}

int cl_labeled_from(const cl_snapshot *s, const cl_outcome *o, int64_t joined_at,
                    cl_labeled_example *out, char *err, size_t errlen)
{
    if (strcmp(s->opportunity_id, o->opportunity_id) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "labeled example: snapshot is for opportunity '%s', outcome for '%s'",
                         s->opportunity_id, o->opportunity_id);
    int64_t d = cl_days_before_close(s, o);
    if (d < 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "labeled example: snapshot %s of opportunity %s was taken %lld days "
                         "after the close date (leakage; the join must exclude it)",
                         s->snapshot_id, s->opportunity_id, (long long)-d);
    if (d > INT32_MAX)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "labeled example: days_before_close %lld does not fit an int",
                         (long long)d);
    cl_labeled_example_init(out);
    out->snapshot = *s;
    out->outcome = *o;
    out->days_before_close = (int32_t)d;
    out->outcome_version = o->system_modstamp;
    out->retracted = false;
    out->joined_at = joined_at;
    return CL_OK;
}

const char *cl_snapshot_attribute(const cl_snapshot *s, const char *key)
{
    for (size_t i = 0; i < s->n_attributes && i < CL_MAX_ATTRIBUTES; i++)
        if (strcmp(s->attributes[i].key, key) == 0) return s->attributes[i].value;
    return NULL;
}

int cl_snapshot_feature(const cl_snapshot *s, const char *name, double *out)
{
    for (size_t i = 0; i < s->n_features && i < CL_MAX_FEATURES; i++) {
        if (strcmp(s->features[i].name, name) == 0) {
            *out = s->features[i].value;
            return CL_OK;
        }
    }
    return CL_ENOTFOUND;
}

int cl_weight_set_get(const cl_weight_set *w, const char *component, double *out)
{
    for (size_t i = 0; i < w->n && i < CL_MAX_WEIGHTS; i++) {
        if (strcmp(w->items[i].component, component) == 0) {
            *out = w->items[i].weight;
            return CL_OK;
        }
    }
    return CL_ENOTFOUND;
}

int cl_weight_set_put(cl_weight_set *w, const char *component, double weight, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < w->n && i < CL_MAX_WEIGHTS; i++) {
        if (strcmp(w->items[i].component, component) == 0) {
            w->items[i].weight = weight;
            return CL_OK;
        }
    }
    if (w->n >= CL_MAX_WEIGHTS)
        return cl_seterr(err, errlen, CL_EINVAL, "weights: already %d components, cannot add '%s'",
                         CL_MAX_WEIGHTS, component);
    cl_weight *x = &w->items[w->n];
    size_t len = strnlen(component, sizeof x->component);
    if (len == 0 || len >= sizeof x->component)
        return cl_seterr(err, errlen, CL_EINVAL, "weights: component name must be 1..%d bytes",
                         CL_NAME_MAX);
    memcpy(x->component, component, len + 1);
    x->weight = weight;
    w->n++;
    return CL_OK;
}
