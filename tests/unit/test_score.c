/*
 * test_score.c — score, band, probability, learned components and WeightConfig
 * validation. Expected numbers are worked out by hand in the comments, not taken from
 * the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "score.h"

#define EPS 1e-9

static void snapshot_fixture(cl_snapshot *s)
{
    cl_snapshot_init(s);
    snprintf(s->snapshot_id, sizeof s->snapshot_id, "id");
    snprintf(s->run_id, sizeof s->run_id, "run");
    snprintf(s->opportunity_id, sizeof s->opportunity_id, "006A");
    snprintf(s->stage, sizeof s->stage, "Proposal");
    s->snapshot_time = (int64_t)20150 * 86400000 + 6 * 3600000; /* day 20150, 06:00 */
    s->created_date = 20000;
    s->expected_close_date = 20180;
    double comps[CL_NUM_BUILTINS] = {80, 60, 40, 90, 70, 20};
    memcpy(s->components, comps, sizeof comps);
}

static cl_weight_config *seed(void)
{
    cl_weight_config *c = malloc(sizeof *c);
    assert_non_null(c);
    cl_weight_config_seed(c, 1700000000000);
    return c;
}

static void test_seed_model(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    assert_string_equal(c->model, "opportunity_score");
    assert_true(c->version == 1);
    assert_false(c->parent_version.present);
    assert_int_equal(c->status, CL_MODEL_CHAMPION);
    assert_true(c->created_at == 1700000000000);
    const struct {
        const char *name;
        double w;
    } want[] = {{"speed_to_close", 0.15},   {"largest_deal", 0.20}, {"product_mix", 0.15},
                {"upsell_instances", 0.25}, {"win_rate", 0.20},     {"recency", 0.05}};
    assert_int_equal(c->weights.n, 6);
    for (size_t i = 0; i < 6; i++) {
        double w;
        assert_int_equal(cl_weight_set_get(&c->weights, want[i].name, &w), CL_OK);
        assert_float_equal(w, want[i].w, EPS);
    }
    assert_float_equal(c->bands.high, 70, EPS);
    assert_float_equal(c->bands.medium, 40, EPS);
    assert_int_equal(c->n_components, 0);
    assert_int_equal(c->n_stage_weights, 0);
    assert_false(c->has_training);
    free(c);
}

static void test_seed_score(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    cl_snapshot s;
    snapshot_fixture(&s);
    cl_score_result r;
    /* 0.15*80 + 0.20*60 + 0.15*40 + 0.25*90 + 0.20*70 + 0.05*20
     * = 12 + 12 + 6 + 22.5 + 14 + 1 = 67.5 -> MEDIUM;
     * p = 1/(1+exp(-(-3 + 0.06*67.5))) = 1/(1+exp(-1.05)) = 0.740774899182154 */
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 67.5, EPS);
    assert_int_equal(r.band, CL_BAND_MEDIUM);
    assert_float_equal(r.probability, 0.740774899182154, 1e-12);

    cl_score_entry e;
    assert_int_equal(cl_score_entry_for(c, &s, &e, err, sizeof err), CL_OK);
    assert_string_equal(e.model, "opportunity_score");
    assert_true(e.version == 1);
    assert_float_equal(e.score, 67.5, EPS);
    assert_int_equal(e.band, CL_BAND_MEDIUM);

    /* All components 100 -> 100, HIGH; all 0 -> 0, LOW, p = 1/(1+e^3) = 0.0474258731775668 */
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        s.components[i] = 100;
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 100, EPS);
    assert_true(r.score <= 100);
    assert_int_equal(r.band, CL_BAND_HIGH);
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        s.components[i] = 0;
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 0, EPS);
    assert_int_equal(r.band, CL_BAND_LOW);
    assert_float_equal(r.probability, 0.04742587317756678, 1e-12);
    free(c);
}

static void test_bands_and_probability(void **state)
{
    (void)state;
    cl_band_thresholds b = {70, 40};
    assert_int_equal(cl_band_of(&b, 70.0), CL_BAND_HIGH);
    assert_int_equal(cl_band_of(&b, 69.999), CL_BAND_MEDIUM);
    assert_int_equal(cl_band_of(&b, 40.0), CL_BAND_MEDIUM);
    assert_int_equal(cl_band_of(&b, 39.999), CL_BAND_LOW);
    assert_int_equal(cl_band_of(&b, 0), CL_BAND_LOW);
    assert_int_equal(cl_band_of(&b, 100), CL_BAND_HIGH);

    cl_calibration cal = {CL_SEED_INTERCEPT, CL_SEED_SLOPE};
    assert_float_equal(cl_calibrated_probability(&cal, 50), 0.5, 1e-15);
    /* symmetric around 50: p(50+d) = 1 - p(50-d) */
    assert_float_equal(cl_calibrated_probability(&cal, 80), 1 - cl_calibrated_probability(&cal, 20),
                       1e-15);
    /* No overflow to NaN at extreme arguments. */
    cl_calibration steep = {1000, 1};
    double p = cl_calibrated_probability(&steep, 100);
    assert_true(isfinite(p) && p == 1.0);
    steep.intercept = -2000;
    p = cl_calibrated_probability(&steep, 100);
    assert_true(isfinite(p) && p >= 0 && p < 1e-300);
}

static void test_clamp(void **state)
{
    (void)state;
    /* Weights summing to 1 + 1e-7 (within tolerance) on all-100 components must not
     * produce a score above 100. */
    cl_weight_set w = {.n = 2};
    snprintf(w.items[0].component, sizeof w.items[0].component, "win_rate");
    w.items[0].weight = 0.5 + 1e-7;
    snprintf(w.items[1].component, sizeof w.items[1].component, "recency");
    w.items[1].weight = 0.5;
    double v[2] = {100, 100};
    assert_true(cl_score_linear(&w, v) == 100.0);
    double z[2] = {0, 0};
    assert_true(cl_score_linear(&w, z) == 0.0);
}

static void test_stage_weights(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    cl_stage_weights *sw = &c->stage_weights[0];
    snprintf(sw->stage, sizeof sw->stage, "Negotiation");
    assert_int_equal(cl_weight_set_put(&sw->weights, "win_rate", 0.6, err, sizeof err), CL_OK);
    assert_int_equal(cl_weight_set_put(&sw->weights, "recency", 0.4, err, sizeof err), CL_OK);
    c->n_stage_weights = 1;
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);

    cl_snapshot s;
    snapshot_fixture(&s);
    cl_score_result r;
    /* Other stages keep the default weights: 67.5. */
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 67.5, EPS);
    /* Negotiation: 0.6*70 + 0.4*20 = 50 -> MEDIUM, p = sigma(-3 + 3) = 0.5 */
    snprintf(s.stage, sizeof s.stage, "Negotiation");
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 50, EPS);
    assert_int_equal(r.band, CL_BAND_MEDIUM);
    assert_float_equal(r.probability, 0.5, 1e-15);

    const cl_weight_set *ws;
    double values[CL_MAX_WEIGHTS];
    assert_int_equal(cl_score_components(c, &s, &ws, values, err, sizeof err), CL_OK);
    assert_ptr_equal(ws, &c->stage_weights[0].weights);
    assert_float_equal(values[0], 70, EPS); /* win_rate */
    assert_float_equal(values[1], 20, EPS); /* recency */
    /* Stage match is exact (case-sensitive). */
    snprintf(s.stage, sizeof s.stage, "negotiation");
    assert_ptr_equal(cl_weights_for_stage(c, s.stage), &c->weights);
    free(c);
}

static cl_component_def *add_component(cl_weight_config *c, const char *name,
                                       cl_component_kind kind, const char *source)
{
    cl_component_def *d = &c->components[c->n_components++];
    cl_component_def_init(d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->source, sizeof d->source, "%s", source);
    d->kind = kind;
    return d;
}

static void only_weights(cl_weight_config *c, const char *a, double wa, const char *b, double wb)
{
    char err[CL_ERRLEN];
    c->weights.n = 0;
    assert_int_equal(cl_weight_set_put(&c->weights, a, wa, err, sizeof err), CL_OK);
    assert_int_equal(cl_weight_set_put(&c->weights, b, wb, err, sizeof err), CL_OK);
}

static void test_category_win_rate(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    cl_component_def *d = add_component(c, "segment_wr", CL_COMPONENT_CATEGORY_WIN_RATE, "segment");
    d->overall_rate = 0.25;
    d->smoothing = 10;
    d->categories[0] = (cl_category_rate){"SMB", 0.1, 50};
    d->categories[1] = (cl_category_rate){"Enterprise", 0.6, 40};
    d->categories[2] = (cl_category_rate){"Mid-Market", 0.3, 70};
    d->n_categories = 3;
    only_weights(c, "win_rate", 0.5, "segment_wr", 0.5);
    /* Unsorted tables are refused until sorted. */
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "out of order"));
    cl_weight_config_sort_categories(c);
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);

    cl_snapshot s;
    snapshot_fixture(&s);
    cl_score_result r;
    double v;
    /* Enterprise: 0.5*70 + 0.5*60 = 65 */
    snprintf(s.segment, sizeof s.segment, "Enterprise");
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 60, EPS);
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 65, EPS);
    snprintf(s.segment, sizeof s.segment, "SMB");
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 10, EPS);
    snprintf(s.segment, sizeof s.segment, "Mid-Market");
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 30, EPS);
    /* Unseen category and null fall back to the overall rate: 0.5*70 + 0.5*25 = 47.5 */
    snprintf(s.segment, sizeof s.segment, "Public Sector");
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 47.5, EPS);
    s.segment[0] = '\0';
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 47.5, EPS);
    /* Match is exact. */
    snprintf(s.segment, sizeof s.segment, "enterprise");
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 25, EPS);

    /* A source that is not a built-in field is read from the attributes map. */
    snprintf(d->source, sizeof d->source, "industry");
    snprintf(s.attributes[0].key, sizeof s.attributes[0].key, "industry");
    snprintf(s.attributes[0].value, sizeof s.attributes[0].value, "SMB");
    s.n_attributes = 1;
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 10, EPS);
    s.n_attributes = 0;
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 25, EPS);

    /* Owner id as the source. */
    snprintf(d->source, sizeof d->source, "owner_id");
    snprintf(s.owner_id, sizeof s.owner_id, "SMB");
    assert_int_equal(cl_component_value(c, &s, "segment_wr", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 10, EPS);
    free(c);
}

static void test_category_table_large(void **state)
{
    (void)state;
    /* Binary search over a full table: every category found, neighbours not. */
    cl_component_def *d = malloc(sizeof *d);
    assert_non_null(d);
    cl_component_def_init(d);
    d->kind = CL_COMPONENT_CATEGORY_WIN_RATE;
    d->overall_rate = 0.5;
    for (int i = 0; i < CL_MAX_CATEGORIES; i++) {
        snprintf(d->categories[i].category, sizeof d->categories[i].category, "c%04d", i * 2);
        d->categories[i].rate = (double)i / CL_MAX_CATEGORIES;
    }
    d->n_categories = CL_MAX_CATEGORIES;
    for (int i = 0; i < CL_MAX_CATEGORIES; i++) {
        char key[16];
        snprintf(key, sizeof key, "c%04d", i * 2);
        assert_float_equal(cl_category_win_rate_value(d, key), 100.0 * i / CL_MAX_CATEGORIES, EPS);
        snprintf(key, sizeof key, "c%04d", i * 2 + 1);
        assert_float_equal(cl_category_win_rate_value(d, key), 50, EPS);
    }
    free(d);
}

static void test_numeric_percentile(void **state)
{
    (void)state;
    cl_component_def d;
    cl_component_def_init(&d);
    d.kind = CL_COMPONENT_NUMERIC_PERCENTILE;
    double bp[] = {0, 10, 20, 30, 40}; /* probabilities 0, .25, .5, .75, 1 */
    memcpy(d.breakpoints, bp, sizeof bp);
    d.n_breakpoints = 5;
    d.missing_value = 33;
    cl_opt_double x = {true, 0};
    x.value = 15; /* between 10 and 20: (1 + 0.5)/4 = 37.5% */
    assert_float_equal(cl_numeric_percentile_value(&d, x), 37.5, EPS);
    x.value = 20; /* exactly the median */
    assert_float_equal(cl_numeric_percentile_value(&d, x), 50, EPS);
    x.value = 37.5; /* (3 + 0.75)/4 = 93.75% */
    assert_float_equal(cl_numeric_percentile_value(&d, x), 93.75, EPS);
    x.value = -5;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 0, EPS);
    x.value = 0;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 0, EPS);
    x.value = 40;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 100, EPS);
    x.value = 1e12;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 100, EPS);
    d.descending = true;
    x.value = 15;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 62.5, EPS);
    d.descending = false;
    assert_float_equal(cl_numeric_percentile_value(&d, (cl_opt_double){false, 0}), 33, EPS);

    /* Ties: many zeros (e.g. days_in_stage). 0 is breakpoints 0..2 -> mid rank 1 -> 25%.
     * 5 lies between b2 = 0 and b3 = 10: (2 + 0.5)/4 = 62.5%. */
    double ties[] = {0, 0, 0, 10, 20};
    memcpy(d.breakpoints, ties, sizeof ties);
    x.value = 0;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 25, EPS);
    x.value = 5;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 62.5, EPS);
    /* All breakpoints equal: the value itself is the median. */
    double flat[] = {7, 7};
    memcpy(d.breakpoints, flat, sizeof flat);
    d.n_breakpoints = 2;
    x.value = 7;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 50, EPS);
    x.value = 6;
    assert_float_equal(cl_numeric_percentile_value(&d, x), 0, EPS);
}

static void test_numeric_sources(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    cl_component_def *d = add_component(c, "age", CL_COMPONENT_NUMERIC_PERCENTILE, "days_open");
    double bp[] = {0, 100, 200};
    memcpy(d->breakpoints, bp, sizeof bp);
    d->n_breakpoints = 3;
    d->missing_value = 50;
    only_weights(c, "win_rate", 0.5, "age", 0.5);
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);

    cl_snapshot s;
    snapshot_fixture(&s);
    double v;
    /* days_open = 20150 - 20000 = 150 -> (1 + 0.5)/2 = 75% */
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 75, EPS);
    /* days_to_close = 20180 - 20150 = 30 -> (0 + 0.3)/2 = 15% */
    snprintf(d->source, sizeof d->source, "days_to_close");
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 15, EPS);
    /* amount: null -> missing_value; 50 -> 25% */
    snprintf(d->source, sizeof d->source, "amount");
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 50, EPS);
    s.amount = (cl_opt_double){true, 50};
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 25, EPS);
    /* days_in_stage: 180 -> (1 + 0.8)/2 = 90% */
    snprintf(d->source, sizeof d->source, "days_in_stage");
    s.days_in_stage = (cl_opt_int){true, 180};
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 90, EPS);
    /* a features entry: 20 -> 10% */
    snprintf(d->source, sizeof d->source, "touches");
    snprintf(s.features[0].name, sizeof s.features[0].name, "touches");
    s.features[0].value = 20;
    s.n_features = 1;
    assert_int_equal(cl_component_value(c, &s, "age", &v, err, sizeof err), CL_OK);
    assert_float_equal(v, 10, EPS);
    /* score = 0.5*70 + 0.5*10 = 40 -> MEDIUM (boundary) */
    cl_score_result r;
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 40, EPS);
    assert_int_equal(r.band, CL_BAND_MEDIUM);
    free(c);
}

static void test_feature_component(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();
    cl_component_def *d = add_component(c, "engagement", CL_COMPONENT_FEATURE, "engagement_score");
    d->missing_value = 10;
    only_weights(c, "win_rate", 0.75, "engagement", 0.25);
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    cl_snapshot s;
    snapshot_fixture(&s);
    cl_score_result r;
    /* Absent feature: 0.75*70 + 0.25*10 = 55 */
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 55, EPS);
    /* Present: 0.75*70 + 0.25*90 = 75 -> HIGH */
    snprintf(s.features[0].name, sizeof s.features[0].name, "engagement_score");
    s.features[0].value = 90;
    s.n_features = 1;
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_OK);
    assert_float_equal(r.score, 75, EPS);
    assert_int_equal(r.band, CL_BAND_HIGH);
    /* Out of 0..100 is an error naming the feature. */
    s.features[0].value = 120;
    assert_int_equal(cl_score_snapshot(c, &s, &r, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "engagement_score"));
    /* A weight on an undefined component cannot be scored. */
    double v;
    assert_int_equal(cl_component_value(c, &s, "nope", &v, err, sizeof err), CL_ENOTFOUND);
    assert_non_null(strstr(err, "nope"));
    free(c);
}

/* Each mutation of a valid config must be refused with a message naming the field. */
static void expect_invalid(cl_weight_config *c, const char *needle)
{
    char err[CL_ERRLEN];
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_EINVAL);
    if (strstr(err, needle) == NULL) fail_msg("expected '%s' in: %s", needle, err);
}

static void test_validation(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = seed();

    c->weights.items[0].weight = 0.05; /* sum 0.9 */
    expect_invalid(c, "sum is 0.9");
    cl_weight_config_seed(c, 0);
    c->weights.items[0].weight = 0.15 + 2e-6;
    expect_invalid(c, "sum");
    cl_weight_config_seed(c, 0);
    c->weights.items[0].weight = 0.15 + 5e-7; /* within tolerance */
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);

    cl_weight_config_seed(c, 0);
    c->weights.items[0].weight = -0.05;
    c->weights.items[1].weight = 0.40;
    expect_invalid(c, "speed_to_close");
    cl_weight_config_seed(c, 0);
    c->weights.items[2].weight = NAN;
    expect_invalid(c, "product_mix");
    cl_weight_config_seed(c, 0);
    snprintf(c->weights.items[5].component, CL_NAME_MAX, "mystery");
    expect_invalid(c, "mystery");
    cl_weight_config_seed(c, 0);
    snprintf(c->weights.items[5].component, CL_NAME_MAX, "win_rate");
    expect_invalid(c, "twice");
    cl_weight_config_seed(c, 0);
    c->weights.n = 0;
    expect_invalid(c, "WeightConfig.weights");

    cl_weight_config_seed(c, 0);
    c->calibration.slope = 0;
    expect_invalid(c, "slope");
    cl_weight_config_seed(c, 0);
    c->calibration.intercept = INFINITY;
    expect_invalid(c, "calibration");
    cl_weight_config_seed(c, 0);
    c->bands.medium = 75;
    expect_invalid(c, "medium <= high");
    cl_weight_config_seed(c, 0);
    c->bands.high = 101;
    expect_invalid(c, "bands");

    cl_weight_config_seed(c, 0);
    c->version = 0;
    expect_invalid(c, "version");
    cl_weight_config_seed(c, 0);
    c->version = 3;
    c->parent_version = (cl_opt_long){true, 3};
    expect_invalid(c, "parent_version");
    cl_weight_config_seed(c, 0);
    c->model[0] = '\0';
    expect_invalid(c, "model");

    /* Stage weights follow the same rules and name the stage. */
    cl_weight_config_seed(c, 0);
    snprintf(c->stage_weights[0].stage, CL_NAME_MAX, "Negotiation");
    assert_int_equal(
        cl_weight_set_put(&c->stage_weights[0].weights, "win_rate", 0.9, err, sizeof err), CL_OK);
    c->n_stage_weights = 1;
    expect_invalid(c, "stage_weights[Negotiation].weights: sum is 0.9");
    c->stage_weights[0].weights.items[0].weight = 1;
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    c->stage_weights[1] = c->stage_weights[0];
    c->n_stage_weights = 2;
    expect_invalid(c, "appears twice");

    /* Component definitions. */
    cl_weight_config_seed(c, 0);
    cl_component_def *d = add_component(c, "win_rate", CL_COMPONENT_FEATURE, "x");
    expect_invalid(c, "built-in");
    snprintf(d->name, sizeof d->name, "f");
    d->source[0] = '\0';
    expect_invalid(c, "source");
    snprintf(d->source, sizeof d->source, "x");
    d->missing_value = 150;
    expect_invalid(c, "missing_value");
    d->missing_value = 50;
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    d->kind = CL_COMPONENT_NUMERIC_PERCENTILE;
    d->n_breakpoints = 1;
    d->breakpoints[0] = 1;
    expect_invalid(c, "breakpoints");
    d->n_breakpoints = 3;
    d->breakpoints[1] = 5;
    d->breakpoints[2] = 4;
    expect_invalid(c, "non-decreasing");
    d->breakpoints[2] = 5;
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    d->kind = CL_COMPONENT_CATEGORY_WIN_RATE;
    d->overall_rate = 1.5;
    expect_invalid(c, "overall_rate");
    d->overall_rate = 0.5;
    d->categories[0] = (cl_category_rate){"a", 0.5, 3};
    d->categories[1] = (cl_category_rate){"a", 0.6, 3};
    d->n_categories = 2;
    expect_invalid(c, "duplicated");
    snprintf(d->categories[1].category, CL_NAME_MAX, "b");
    d->categories[1].rate = -0.1;
    expect_invalid(c, "rate");
    d->categories[1].rate = 0.1;
    assert_int_equal(cl_weight_config_validate(c, err, sizeof err), CL_OK);
    add_component(c, "f", CL_COMPONENT_FEATURE, "y");
    expect_invalid(c, "defined twice");

    /* Statistics out of range. */
    cl_weight_config_seed(c, 0);
    c->has_comparison = true;
    c->comparison = (cl_champion_comparison){1, 0.02, 1.5, 10, {false, 0}};
    expect_invalid(c, "p_value");
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_model),
        cmocka_unit_test(test_seed_score),
        cmocka_unit_test(test_bands_and_probability),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_stage_weights),
        cmocka_unit_test(test_category_win_rate),
        cmocka_unit_test(test_category_table_large),
        cmocka_unit_test(test_numeric_percentile),
        cmocka_unit_test(test_numeric_sources),
        cmocka_unit_test(test_feature_component),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
