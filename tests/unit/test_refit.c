/* Unit tests for workers/refit: the labeled consumer rule in LMDB, point-in-time
 * learned factors (with a planted leak), recovery of a known model through the whole
 * refit, CHALLENGER vs REJECTED vs refusal, discovery of a real factor and of nothing
 * on shuffled labels, and the A/B trial decisions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "avro.h"
#include "factors.h"
#include "refit.h"
#include "score.h"
#include "training_set.h"
#include "weights_log.h"

#define DAY_MS 86400000LL

static uint64_t rng_state;

static double uniform(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static const char *source_dir(void)
{
    const char *s = getenv("CL_SOURCE_DIR");
    return s ? s : ".";
}

/* One labeled example: opportunity `opp` (number), snapshot at `snap_day`, closed at
 * `close_day` with `won`, components c[6]. */
static void make_example(cl_labeled_example *e, int opp, int run, int32_t snap_day,
                         int32_t close_day, int won, const double *c, int64_t version)
{
    cl_labeled_example_init(e);
    cl_snapshot *s = &e->snapshot;
    snprintf(s->opportunity_id, sizeof s->opportunity_id, "006T%014d", opp);
    snprintf(s->run_id, sizeof s->run_id, "run-%d", run);
    cl_snapshot_id(s->run_id, s->opportunity_id, s->snapshot_id, NULL, 0);
    s->snapshot_time = (int64_t)snap_day * DAY_MS + 6 * 3600000LL;
    snprintf(s->stage, sizeof s->stage, "Prospecting");
    s->created_date = snap_day - 30;
    s->expected_close_date = close_day;
    for (int j = 0; j < CL_NUM_BUILTINS; j++)
        s->components[j] = c ? c[j] : 50.0;
    cl_outcome *o = &e->outcome;
    cl_strlcpy(o->opportunity_id, s->opportunity_id, sizeof o->opportunity_id);
    o->outcome = won ? CL_OUTCOME_WON : CL_OUTCOME_LOST;
    snprintf(o->stage_name, sizeof o->stage_name, "%s", won ? "Closed Won" : "Closed Lost");
    o->close_date = close_day;
    o->created_date = s->created_date;
    o->days_to_close = close_day - o->created_date;
    o->system_modstamp = version;
    o->ingested_at = version;
    e->outcome_version = version;
    e->days_before_close = close_day - snap_day;
    e->joined_at = version;
}

/* ---- training set: the consumer rule ---------------------------------------------- */

typedef struct {
    char dir[256];
    cl_avro_schemas *schemas;
    cl_training_set *ts;
} ts_fixture;

static int ts_setup(void **state)
{
    ts_fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cl_test_refit_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char path[512], err[CL_ERRLEN];
    snprintf(path, sizeof path, "%s/schemas", source_dir());
    assert_int_equal(cl_avro_schemas_load(path, &f->schemas, err, sizeof err), CL_OK);
    cl_store_config sc;
    cl_store_config_defaults(&sc);
    sc.sync = CL_STORE_SYNC_NOSYNC;
    assert_int_equal(cl_training_set_open(&f->ts, f->dir, &sc, f->schemas, err, sizeof err), CL_OK);
    *state = f;
    return 0;
}

static int ts_teardown(void **state)
{
    ts_fixture *f = *state;
    cl_training_set_close(f->ts);
    cl_avro_schemas_free(f->schemas);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static cl_ts_effect apply(ts_fixture *f, const char *opp, const cl_labeled_example *e)
{
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(cl_training_set_store(f->ts), &b, err, sizeof err),
                     CL_OK);
    cl_ts_effect eff = CL_TS_NOOP;
    int rc = cl_training_set_apply(f->ts, b, opp, e, &eff, err, sizeof err);
    if (rc != CL_OK) fail_msg("apply: %s", err);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    return eff;
}

static void counts(ts_fixture *f, uint64_t *opps, uint64_t *examples, uint64_t *pending)
{
    char err[CL_ERRLEN];
    cl_store_txn *t;
    assert_int_equal(cl_store_read_begin(cl_training_set_store(f->ts), &t, err, sizeof err), CL_OK);
    assert_int_equal(cl_training_set_counts(t, opps, examples, err, sizeof err), CL_OK);
    assert_int_equal(cl_training_set_pending(t, pending, err, sizeof err), CL_OK);
    cl_store_read_end(t);
}

static void test_consumer_rule(void **state)
{
    ts_fixture *f = *state;
    cl_labeled_example *e = malloc(sizeof *e);
    uint64_t opps, ex, pending;
    const char *opp = "006T00000000000001";

    make_example(e, 1, 1, 20000, 20030, 1, NULL, 1000);
    assert_int_equal(apply(f, opp, e), CL_TS_NEW_OUTCOME);
    assert_int_equal(apply(f, opp, e), CL_TS_UPSERT); /* duplicate: no double count */
    make_example(e, 1, 2, 20007, 20030, 1, NULL, 1000);
    assert_int_equal(apply(f, opp, e), CL_TS_UPSERT);
    counts(f, &opps, &ex, &pending);
    assert_int_equal(opps, 1);
    assert_int_equal(ex, 2);
    assert_int_equal(pending, 1);

    /* A higher version (re-opened, closed again) replaces both examples. */
    make_example(e, 1, 2, 20007, 20060, 0, NULL, 2000);
    assert_int_equal(apply(f, opp, e), CL_TS_NEW_OUTCOME);
    counts(f, &opps, &ex, &pending);
    assert_int_equal(ex, 1);
    assert_int_equal(pending, 2);

    /* A lower version is stale. */
    make_example(e, 1, 1, 20000, 20030, 1, NULL, 1000);
    assert_int_equal(apply(f, opp, e), CL_TS_STALE);

    /* A retraction at the current version removes everything and blocks stragglers. */
    make_example(e, 1, 2, 20007, 20060, 0, NULL, 2000);
    e->retracted = true;
    assert_int_equal(apply(f, opp, e), CL_TS_RETRACTED);
    e->retracted = false;
    assert_int_equal(apply(f, opp, e), CL_TS_STALE);
    counts(f, &opps, &ex, &pending);
    assert_int_equal(opps, 0);
    assert_int_equal(ex, 0);

    /* A newer version after a retraction is a new outcome; a tombstone removes it. */
    make_example(e, 1, 3, 20070, 20090, 1, NULL, 3000);
    assert_int_equal(apply(f, opp, e), CL_TS_NEW_OUTCOME);
    assert_int_equal(apply(f, opp, NULL), CL_TS_RETRACTED);
    assert_int_equal(apply(f, opp, NULL), CL_TS_NOOP);
    assert_int_equal(apply(f, "006T99999999999999", NULL), CL_TS_NOOP);
    counts(f, &opps, &ex, &pending);
    assert_int_equal(ex, 0);
    assert_int_equal(pending, 3);

    /* A record whose example belongs to another opportunity is refused (DLQ). */
    make_example(e, 2, 1, 20000, 20030, 1, NULL, 1000);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(cl_training_set_store(f->ts), &b, err, sizeof err),
                     CL_OK);
    cl_ts_effect eff;
    assert_int_equal(cl_training_set_apply(f->ts, b, opp, e, &eff, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(cl_training_set_reset_pending(b, err, sizeof err), CL_OK);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    counts(f, &opps, &ex, &pending);
    assert_int_equal(pending, 0);
    free(e);
}

static void test_rows_load(void **state)
{
    ts_fixture *f = *state;
    cl_labeled_example *e = malloc(sizeof *e);
    double c[6] = {10, 20, 30, 40, 50, 60};
    for (int o = 0; o < 3; o++)
        for (int r = 0; r < 2; r++) {
            make_example(e, o, r, 20000 + 7 * r, 20030, o == 1, c, 1000);
            snprintf(e->snapshot.owner_id, sizeof e->snapshot.owner_id, "owner-%d", o % 2);
            e->snapshot.amount = (cl_opt_double){true, 1000.0 * o};
            e->snapshot.n_scores = 1;
            cl_score_entry *se = &e->snapshot.scores[0];
            snprintf(se->model, sizeof se->model, "%s", CL_SEED_MODEL);
            se->version = 1;
            se->score = 42 + o;
            se->band = CL_BAND_MEDIUM;
            char opp[CL_ID_MAX + 1];
            cl_strlcpy(opp, e->snapshot.opportunity_id, sizeof opp);
            apply(f, opp, e);
        }
    const char *cats[] = {"owner_id"}, *nums[] = {"amount", "days_open"};
    cl_rows_spec spec = {cats, 1, nums, 2, {{CL_SEED_MODEL, 1, 70}, {"", 0, 70}}};
    cl_training_rows rows;
    size_t skipped = 99;
    char err[CL_ERRLEN];
    assert_int_equal(cl_training_rows_load(f->ts, &spec, &rows, &skipped, err, sizeof err), CL_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(rows.n, 6);
    assert_int_equal(rows.n_opps, 3);
    assert_int_equal(cl_intern_count(rows.cat_values[0]), 2);
    for (size_t i = 0; i < rows.n; i++) {
        assert_true(rows.opp[i] == i / 2); /* contiguous per opportunity */
        assert_true(rows.has_score[0][i]);
        assert_false(rows.has_score[1][i]);
        assert_true(rows.score[0][i] == 42 + rows.opp[i]);
        assert_true(rows.num[0][i] == 1000.0 * rows.opp[i]);
        assert_true(rows.num[1][i] == 30 || rows.num[1][i] == 30); /* snapshot day - created */
        assert_true(rows.components[3][i] == 40);
    }
    cl_training_rows_free(&rows);
    free(e);
}

/* ---- synthetic data ------------------------------------------------------------- */

static const double SEED_W[6] = {0.15, 0.20, 0.15, 0.25, 0.20, 0.05};

typedef struct {
    const double *w;     /* true weights of the six components */
    double a, b;         /* true calibration */
    double owner_effect; /* logit added for owners 0..9 (linear in owner skill) */
    int shuffle;         /* permute labels after drawing */
    int n_opps;
    int snapshots; /* per opportunity */
} truth;

/* Opportunities closing over two years, `snapshots` weekly snapshots each with the
 * same components, labels from the true model. */
static void draw_rows(cl_training_rows *rows, const truth *t, uint64_t seed,
                      const cl_rows_spec *spec)
{
    rng_state = seed;
    char err[CL_ERRLEN];
    assert_int_equal(cl_training_rows_init(rows, spec, err, sizeof err), CL_OK);
    cl_labeled_example *e = malloc(sizeof *e);
    uint8_t *labels = malloc((size_t)t->n_opps);
    for (int o = 0; o < t->n_opps; o++) {
        double c[6], score = 0;
        for (int j = 0; j < 6; j++) {
            c[j] = 100.0 * uniform();
            score += t->w[j] * c[j];
        }
        int owner = (int)(uniform() * 40);
        double eta = t->a + t->b * score + (owner < 10 ? t->owner_effect * (owner - 4.5) / 4.5 : 0);
        labels[o] = uniform() < 1.0 / (1.0 + exp(-eta));
    }
    if (t->shuffle)
        for (int o = t->n_opps - 1; o > 0; o--) {
            int j = (int)(uniform() * (o + 1));
            uint8_t tmp = labels[o];
            labels[o] = labels[j];
            labels[j] = tmp;
        }
    rng_state = seed;
    for (int o = 0; o < t->n_opps; o++) {
        double c[6];
        for (int j = 0; j < 6; j++)
            c[j] = 100.0 * uniform();
        int owner = (int)(uniform() * 40);
        (void)uniform();
        int32_t close = 19000 + (int32_t)(730.0 * o / t->n_opps);
        for (int s = 0; s < t->snapshots; s++) {
            make_example(e, o, s, close - 7 * (t->snapshots - s), close, labels[o], c, 1000);
            snprintf(e->snapshot.owner_id, sizeof e->snapshot.owner_id, "owner-%02d", owner);
            /* Every opportunity has a unique account: an id-like category. */
            snprintf(e->snapshot.account_id, sizeof e->snapshot.account_id, "001A%014d", o);
            assert_int_equal(cl_training_rows_append(rows, e, err, sizeof err), CL_OK);
        }
    }
    free(labels);
    free(e);
}

static void options_for_test(cl_refit_options *o)
{
    cl_refit_options_default(o);
    o->discover = 0;
    o->max_weight_change = 0;
    o->half_life_days = 0;
    o->l2_per_example = 1e-6;
    o->permutations = 9;
}

static const cl_rows_spec *spec_owner_account(void)
{
    static const char *cats[] = {"owner_id", "account_id"};
    static cl_rows_spec spec;
    spec.cat_sources = cats;
    spec.n_cat = 2;
    spec.num_sources = NULL;
    spec.n_num = 0;
    return &spec;
}

static void test_known_model_recovery(void **state)
{
    (void)state;
    static const double W[6] = {0.30, 0.05, 0.10, 0.35, 0.05, 0.15};
    truth t = {W, -6.0, 0.12, 0, 0, 10000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 42, spec_owner_account());
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_int_equal(res.outcome, CL_REFIT_CHALLENGER);
    assert_non_null(res.config);
    double sum = 0;
    for (int j = 0; j < 6; j++) {
        double w;
        assert_int_equal(cl_weight_set_get(&res.config->weights, cl_builtin_component_names[j], &w),
                         CL_OK);
        if (fabs(w - W[j]) > 0.02)
            fail_msg("%s: fitted %.4f, true %.4f", cl_builtin_component_names[j], w, W[j]);
        sum += w;
    }
    assert_true(fabs(sum - 1.0) <= 1e-9);
    /* Stated tolerance for the calibration at n = 10,000: b within 8%, the logit at the
     * mean score (50) within 0.1, and a within 0.5 (a and b are estimated with strongly
     * correlated errors: a's standard error is about 50 times b's). */
    const cl_calibration *cal = &res.config->calibration;
    assert_true(fabs(cal->slope - t.b) <= 0.08 * t.b);
    assert_true(fabs((cal->intercept + 50 * cal->slope) - (t.a + 50 * t.b)) <= 0.1);
    assert_true(fabs(cal->intercept - t.a) <= 0.5);
    assert_int_equal(res.config->status, CL_MODEL_CHALLENGER);
    assert_int_equal(res.config->version, 2);
    assert_int_equal(res.config->parent_version.value, 1);
    assert_true(res.config->has_training);
    assert_true(res.config->n_validation > 0);
    assert_true(res.challenger_cv.auc > res.champion_cv.auc);
    assert_non_null(strstr(res.config->reason, "beat champion v1"));
    assert_int_equal(cl_weight_config_validate(res.config, err, sizeof err), CL_OK);
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

static void test_champion_right_is_rejected(void **state)
{
    (void)state;
    truth t = {SEED_W, -3.0, 0.06, 0, 0, 6000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 7, spec_owner_account());
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    o.max_weight_change = 0.10;
    o.l2_per_example = 1.0;
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_int_equal(res.outcome, CL_REFIT_REJECTED);
    assert_int_equal(res.config->status, CL_MODEL_REJECTED);
    assert_non_null(strstr(res.reason, "did not beat champion v1"));
    assert_non_null(strstr(res.reason, "[fails]"));
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

static void test_refuses_below_minimum(void **state)
{
    (void)state;
    truth t = {SEED_W, -3.0, 0.06, 0, 0, 50, 2};
    cl_training_rows rows;
    draw_rows(&rows, &t, 3, spec_owner_account());
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_int_equal(res.outcome, CL_REFIT_REFUSED);
    assert_null(res.config);
    assert_non_null(strstr(res.reason, "refusing to fit"));
    assert_int_equal(res.n_opps, 50);
    assert_int_equal(res.n_examples, 100); /* all snapshots, one vote per opportunity */
    cl_training_rows_free(&rows);
    free(champ);
}

static void test_no_weights_exist(void **state)
{
    (void)state;
    /* Every component ranks winners lower: b = 0 at the optimum, nothing published. */
    static const double W[6] = {1, 0, 0, 0, 0, 0};
    truth t = {W, 3.0, -0.06, 0, 0, 3000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 11, spec_owner_account());
    for (size_t i = 0; i < rows.n; i++)
        for (int j = 1; j < 6; j++)
            rows.components[j][i] = rows.components[0][i];
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_int_equal(res.outcome, CL_REFIT_NO_MODEL);
    assert_null(res.config);
    assert_non_null(strstr(res.reason, "nothing published"));
    cl_training_rows_free(&rows);
    free(champ);
}

/* Two stages with different true weights: each gets its own weights, closer to its truth
 * than the global ones, and scoring picks them by stage. */
static void test_stage_weights(void **state)
{
    (void)state;
    static const double W[2][6] = {{0.40, 0.05, 0.05, 0.40, 0.05, 0.05},
                                   {0.05, 0.40, 0.40, 0.05, 0.05, 0.05}};
    static const char *const STAGES[2] = {"Proposal", "Negotiation"};
    cl_training_rows rows;
    cl_rows_spec spec = {NULL, 0, NULL, 0, {{"", 0, 70}, {"", 0, 70}}};
    char err[CL_ERRLEN];
    assert_int_equal(cl_training_rows_init(&rows, &spec, err, sizeof err), CL_OK);
    cl_labeled_example *e = malloc(sizeof *e);
    rng_state = 77;
    int n = 12000;
    for (int o = 0; o < n; o++) {
        int st = o % 2;
        double c[6], score = 0;
        for (int j = 0; j < 6; j++) {
            c[j] = 100.0 * uniform();
            score += W[st][j] * c[j];
        }
        int won = uniform() < 1.0 / (1.0 + exp(-(-6.0 + 0.12 * score)));
        int32_t close = 19000 + (int32_t)(730.0 * o / n);
        make_example(e, o, 0, close - 14, close, won, c, 1000);
        snprintf(e->snapshot.stage, sizeof e->snapshot.stage, "%s", STAGES[st]);
        assert_int_equal(cl_training_rows_append(&rows, e, err, sizeof err), CL_OK);
    }
    free(e);
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    o.stage_weights = 1;
    o.stage_l2_per_example = 0.01;
    cl_refit_result res;
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_non_null(res.config);
    assert_int_equal(res.config->n_stage_weights, 2);
    for (size_t s = 0; s < 2; s++) {
        const cl_stage_weights *sw = &res.config->stage_weights[s];
        int st = strcmp(sw->stage, STAGES[0]) == 0 ? 0 : 1;
        assert_string_equal(sw->stage, STAGES[st]);
        assert_ptr_equal(cl_weights_for_stage(res.config, STAGES[st]), &sw->weights);
        double d_stage = 0, d_global = 0, sum = 0;
        for (int j = 0; j < 6; j++) {
            d_stage += fabs(sw->weights.items[j].weight - W[st][j]);
            d_global += fabs(res.config->weights.items[j].weight - W[st][j]);
            sum += sw->weights.items[j].weight;
        }
        assert_true(fabs(sum - 1) <= 1e-9);
        if (!(d_stage < 0.12 && d_stage < d_global / 2))
            fail_msg("stage %s: L1 distance %.3f to its truth, global %.3f", sw->stage, d_stage,
                     d_global);
    }
    assert_ptr_equal(cl_weights_for_stage(res.config, "Closed"), &res.config->weights);
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

/* ---- learned factors ------------------------------------------------------------ */

/* The planted leak: account_id is unique per opportunity, so a rate computed with the
 * row's own outcome would predict it perfectly. Point-in-time, every row must get the
 * prior (no earlier outcome of its account), and the value must equal a brute-force
 * computation from outcomes closed strictly before the snapshot day. */
static void test_point_in_time_rates_do_not_leak(void **state)
{
    (void)state;
    truth t = {SEED_W, -3.0, 0.06, 1.5, 0, 800, 3};
    cl_training_rows rows;
    draw_rows(&rows, &t, 5, spec_owner_account());
    cl_factor_options fo;
    cl_factor_options_default(&fo);
    fo.min_support = 3;
    double *col = malloc(rows.n * sizeof *col);
    cl_component_def *def = malloc(sizeof *def);
    char err[CL_ERRLEN];
    for (size_t src = 0; src < 2; src++) {
        assert_int_equal(cl_factor_category(&rows, src, "x", &fo, col, def, err, sizeof err),
                         CL_OK);
        for (size_t i = 0; i < rows.n; i++) {
            int64_t n = 0, won = 0, nc = 0, wc = 0;
            for (size_t o = 0; o < rows.n_opps; o++) {
                size_t last = 0; /* the opportunity's latest row */
                for (size_t r = 0; r < rows.n; r++)
                    if (rows.opp[r] == o) last = r;
                if (rows.close_day[last] >= rows.snap_day[i]) continue;
                n++;
                won += rows.won[last];
                if (rows.cat[src][last] == rows.cat[src][i]) {
                    nc++;
                    wc += rows.won[last];
                }
            }
            double p = n ? (double)won / n : 0.5;
            double expect = nc >= 3 ? (wc + fo.smoothing * p) / (nc + fo.smoothing) : p;
            if (fabs(col[i] - 100 * expect) > 1e-9)
                fail_msg("source %zu row %zu: %.12f, brute force %.12f", src, i, col[i],
                         100 * expect);
            if (src == 1 && fabs(col[i] - 100 * p) > 1e-9)
                fail_msg("account (unique) row %zu is not the prior: leak", i);
        }
        if (src == 1)
            assert_int_equal(def->n_categories, 0); /* nobody reaches min support */
        else
            assert_true(def->n_categories == 40);
        assert_int_equal(def->kind, CL_COMPONENT_CATEGORY_WIN_RATE);
    }
    free(col);
    free(def);
    cl_training_rows_free(&rows);
}

/* The published evidence: one entry per evaluated candidate, in res->factors order,
 * with the same numbers, and `adopted` exactly for the candidates that became
 * components with a weight. */
static void assert_discovery_published(const cl_refit_result *res, const cl_refit_options *o)
{
    const cl_weight_config *c = res->config;
    assert_non_null(c);
    assert_int_equal(c->n_discovery, res->n_factors);
    for (size_t f = 0; f < res->n_factors; f++) {
        const cl_refit_factor_report *fr = &res->factors[f];
        const cl_candidate_evidence *e = &c->discovery[f];
        assert_string_equal(e->name, fr->name);
        assert_string_equal(e->source, fr->source);
        assert_int_equal(e->kind, fr->kind);
        assert_true(fr->evaluated);
        assert_true(e->delta_auc.present && e->delta_auc.value == fr->gain_auc);
        assert_true(e->delta_log_loss.present && e->delta_log_loss.value == fr->gain_log_loss);
        assert_true(e->shuffled_max_delta_auc.present &&
                    e->shuffled_max_delta_auc.value == fr->null_gain_auc);
        assert_true(e->shuffled_max_delta_log_loss.present &&
                    e->shuffled_max_delta_log_loss.value == fr->null_gain_log_loss);
        assert_int_equal(e->permutations, (int32_t)o->permutations);
        assert_int_equal(e->beats_shuffled, fr->beats_shuffled != 0);
        assert_int_equal(e->beats_shuffled,
                         e->delta_auc.value > 0 && e->delta_log_loss.value > 0 &&
                             e->delta_auc.value > e->shuffled_max_delta_auc.value &&
                             e->delta_log_loss.value > e->shuffled_max_delta_log_loss.value);
        assert_true(e->n_examples == (int64_t)res->n_examples);
        assert_true(e->n_with_value == e->n_examples); /* every row has owner and account */
        double w;
        int is_component = cl_component_def_find(c, e->name) != NULL &&
                           cl_weight_set_get(&c->weights, e->name, &w) == CL_OK;
        assert_int_equal(e->adopted, is_component);
        assert_int_equal(e->adopted, fr->adopted != 0);
    }
    char err[CL_ERRLEN];
    assert_int_equal(cl_weight_config_discovery_validate(c, err, sizeof err), CL_OK);
}

static void test_discovery_finds_owner_not_account(void **state)
{
    (void)state;
    truth t = {SEED_W, -3.0, 0.06, 2.5, 0, 4000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 9, spec_owner_account());
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    o.discover = 1;
    o.max_weight_change = 0.3;
    o.category_candidates[0] = "owner_id";
    o.category_candidates[1] = "account_id";
    o.n_category_candidates = 2;
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    assert_int_equal(res.n_factors, 2);
    assert_string_equal(res.factors[0].name, "owner_id_win_rate");
    assert_true(res.factors[0].adopted);
    assert_false(res.factors[1].adopted);
    assert_int_equal(res.outcome, CL_REFIT_CHALLENGER);
    assert_int_equal(res.config->n_components, 1);
    const cl_component_def *d = cl_component_def_find(res.config, "owner_id_win_rate");
    assert_non_null(d);
    assert_int_equal(d->n_categories, 40);
    double w;
    assert_int_equal(cl_weight_set_get(&res.config->weights, "owner_id_win_rate", &w), CL_OK);
    assert_true(w > 0.05);
    assert_non_null(strstr(res.reason, "owner_id_win_rate"));
    assert_string_equal(res.config->reason, res.reason); /* the reason text is unchanged */

    /* Both candidates' evidence is published, the rejected one too. */
    assert_discovery_published(&res, &o);
    const cl_candidate_evidence *owner = &res.config->discovery[0],
                                *acct = &res.config->discovery[1];
    assert_string_equal(owner->name, "owner_id_win_rate");
    assert_true(owner->adopted && owner->beats_shuffled);
    assert_true(owner->delta_auc.value > owner->shuffled_max_delta_auc.value);
    assert_true(owner->n_categories == 40);
    assert_string_equal(acct->name, "account_id_win_rate");
    assert_string_equal(acct->source, "account_id");
    assert_false(acct->adopted);
    assert_true(acct->n_categories == 0); /* unique per opportunity: no category has support */
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

static void test_shuffled_labels_adopt_nothing(void **state)
{
    (void)state;
    truth t = {SEED_W, -3.0, 0.06, 2.5, 1, 3000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 13, spec_owner_account());
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    options_for_test(&o);
    o.discover = 1;
    o.category_candidates[0] = "owner_id";
    o.category_candidates[1] = "account_id";
    o.n_category_candidates = 2;
    cl_refit_result res;
    char err[CL_ERRLEN];
    assert_int_equal(cl_refit_run(&rows, champ, &o, 2, 1000, &res, err, sizeof err), CL_OK);
    for (size_t f = 0; f < res.n_factors; f++)
        assert_false(res.factors[f].adopted);
    assert_true(res.outcome != CL_REFIT_CHALLENGER);
    /* A rejected config still tells what was tried and why nothing was taken. */
    assert_int_equal(res.outcome, CL_REFIT_REJECTED);
    assert_int_equal(res.n_factors, 2);
    assert_discovery_published(&res, &o);
    for (size_t f = 0; f < res.config->n_discovery; f++)
        assert_false(res.config->discovery[f].adopted);
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

/* A champion that already uses learned components: its components are rebuilt from the
 * training set (fresh category table), a percentile whose attribute has no values any
 * more keeps the champion's breakpoints, and the rows spec asks for every source. */
static void test_refit_from_learned_champion(void **state)
{
    (void)state;
    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    champ->version = 3;
    cl_component_def *d = &champ->components[0];
    cl_component_def_init(d);
    snprintf(d->name, sizeof d->name, "owner_id_win_rate");
    d->kind = CL_COMPONENT_CATEGORY_WIN_RATE;
    snprintf(d->source, sizeof d->source, "owner_id");
    d->smoothing = 20;
    d->overall_rate = 0.5;
    d->n_categories = 1;
    snprintf(d->categories[0].category, sizeof d->categories[0].category, "owner-stale");
    d->categories[0].rate = 0.9;
    d->categories[0].n = 100;
    d = &champ->components[1];
    cl_component_def_init(d);
    snprintf(d->name, sizeof d->name, "amount_pct");
    d->kind = CL_COMPONENT_NUMERIC_PERCENTILE;
    snprintf(d->source, sizeof d->source, "amount");
    d->n_breakpoints = 2;
    d->breakpoints[0] = 0;
    d->breakpoints[1] = 1000;
    champ->n_components = 2;
    champ->weights.items[0].weight -= 0.10; /* speed_to_close 0.05 */
    char err[CL_ERRLEN];
    assert_int_equal(cl_weight_set_put(&champ->weights, "owner_id_win_rate", 0.05, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_weight_set_put(&champ->weights, "amount_pct", 0.05, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_weight_config_validate(champ, err, sizeof err), CL_OK);

    cl_refit_options o;
    options_for_test(&o);
    const char *cat[CL_ROWS_MAX_SOURCES], *num[CL_ROWS_MAX_SOURCES];
    cl_rows_spec spec;
    assert_int_equal(cl_refit_rows_spec(&o, champ, NULL, &spec, cat, num, err, sizeof err), CL_OK);
    assert_int_equal(spec.n_cat, 1);
    assert_string_equal(spec.cat_sources[0], "owner_id");
    assert_int_equal(spec.n_num, 1);
    assert_string_equal(spec.num_sources[0], "amount");
    assert_int_equal(spec.tracked[0].version, 3);

    truth t = {SEED_W, -3.0, 0.06, 2.0, 0, 4000, 1};
    cl_training_rows rows;
    draw_rows(&rows, &t, 21, &spec); /* no amounts: the percentile cannot be re-estimated */
    cl_refit_result res;
    assert_int_equal(cl_refit_run(&rows, champ, &o, 4, 1000, &res, err, sizeof err), CL_OK);
    assert_non_null(res.config);
    assert_int_equal(res.config->parent_version.value, 3);
    assert_int_equal(res.config->n_components, 2);
    const cl_component_def *owner = cl_component_def_find(res.config, "owner_id_win_rate");
    assert_non_null(owner);
    assert_int_equal(owner->n_categories, 40); /* rebuilt: the stale entry is gone */
    const cl_component_def *amount = cl_component_def_find(res.config, "amount_pct");
    assert_non_null(amount);
    assert_int_equal(amount->n_breakpoints, 2);
    assert_true(amount->breakpoints[1] == 1000);
    double w;
    assert_int_equal(cl_weight_set_get(&res.config->weights, "owner_id_win_rate", &w), CL_OK);
    assert_true(w > 0.05); /* the owner effect is real */
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    free(champ);
}

/* ---- the A/B trial ---------------------------------------------------------------- */

/* n opportunities closing over `days`; the champion's score is noise + signal s_a,
 * the challenger's noise + signal s_b. */
static void draw_trial(cl_training_rows *rows, int n, int days, double s_a, double s_b,
                       uint64_t seed)
{
    rng_state = seed;
    cl_rows_spec spec = {NULL, 0, NULL, 0, {{CL_SEED_MODEL, 1, 70}, {CL_SEED_MODEL, 2, 70}}};
    char err[CL_ERRLEN];
    assert_int_equal(cl_training_rows_init(rows, &spec, err, sizeof err), CL_OK);
    cl_labeled_example *e = malloc(sizeof *e);
    for (int o = 0; o < n; o++) {
        int won = uniform() < 0.4;
        int32_t close = 20000 + (int32_t)((double)days * o / n);
        make_example(e, o, 0, close - 14, close, won, NULL, 1000);
        double sa = 100 * uniform() * (1 - s_a) + 100 * s_a * won;
        double sb = 100 * uniform() * (1 - s_b) + 100 * s_b * won;
        e->snapshot.n_scores = 2;
        cl_score_entry *x = e->snapshot.scores;
        snprintf(x[0].model, sizeof x[0].model, CL_SEED_MODEL);
        x[0].version = 1;
        x[0].score = sa;
        x[0].band = sa >= 70 ? CL_BAND_HIGH : CL_BAND_LOW;
        x[1] = x[0];
        x[1].version = 2;
        x[1].score = sb;
        x[1].band = sb >= 70 ? CL_BAND_HIGH : CL_BAND_LOW;
        assert_int_equal(cl_training_rows_append(rows, e, err, sizeof err), CL_OK);
    }
    free(e);
}

static void test_trial_decisions(void **state)
{
    (void)state;
    cl_refit_options o;
    cl_refit_options_default(&o);
    cl_training_rows rows;
    cl_trial_result tr;
    char err[CL_ERRLEN];

    /* Better challenger, window reached: promote. */
    draw_trial(&rows, 400, 40, 0.1, 0.5, 1);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_PROMOTE);
    assert_int_equal(tr.n_paired, 400);
    assert_true(tr.delong.delta > 0 && tr.delong.p_value < 0.05);
    assert_true(tr.precision_challenger >= tr.precision_champion);
    assert_non_null(strstr(tr.reason, "promoted"));
    cl_training_rows_free(&rows);

    /* Better AUC but the challenger calls half of everything HIGH: a significant precision
     * drop blocks the promotion (wait inside the maximum trial, then reject). */
    draw_trial(&rows, 400, 40, 0.1, 0.5, 1);
    for (size_t i = 0; i < rows.n; i++) {
        rows.high[0][i] = rows.won[i] && i % 3 == 0;
        rows.high[1][i] = i % 2 == 0;
    }
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_WAIT);
    assert_true(tr.precision_drop_p < 0.05);
    assert_non_null(strstr(tr.reason, "without a precision drop"));
    o.max_trial_days = 30;
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_REJECT);
    assert_non_null(strstr(tr.reason, "precision at HIGH dropped"));
    o.max_trial_days = 90;
    cl_training_rows_free(&rows);

    /* Same, but only 20 days of outcomes: wait. */
    draw_trial(&rows, 400, 20, 0.1, 0.5, 1);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_WAIT);
    cl_training_rows_free(&rows);

    /* Too few paired outcomes: wait, whatever the window. */
    draw_trial(&rows, 60, 60, 0.1, 0.5, 1);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_WAIT);
    assert_non_null(strstr(tr.reason, "100 needed"));
    cl_training_rows_free(&rows);

    /* Significantly worse: reject, even before the window. */
    draw_trial(&rows, 400, 10, 0.5, 0.05, 2);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_REJECT);
    assert_non_null(strstr(tr.reason, "significantly worse"));
    cl_training_rows_free(&rows);

    /* Equal models: wait inside the maximum trial, reject after it. */
    draw_trial(&rows, 400, 60, 0.3, 0.3, 3);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_WAIT);
    cl_training_rows_free(&rows);
    draw_trial(&rows, 400, 120, 0.3, 0.3, 3);
    assert_int_equal(cl_refit_evaluate_trial(&rows, &o, &tr, err, sizeof err), CL_OK);
    assert_int_equal(tr.decision, CL_TRIAL_REJECT);
    assert_non_null(strstr(tr.reason, "not significantly better"));
    cl_training_rows_free(&rows);
}

/* ---- the weights topic: transitions ------------------------------------------------- */

static void config_at(cl_weight_config *c, int64_t version, cl_model_status status)
{
    cl_weight_config_seed(c, 1000 * version);
    c->version = version;
    c->status = status;
    if (version > 1) c->parent_version = (cl_opt_long){true, version - 1};
    /* Distinguishable weights per version. */
    c->weights.items[0].weight = 0.15 + 0.01 * (double)version;
    c->weights.items[5].weight = 0.05 - 0.01 * (double)version;
}

static void test_weights_transitions(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = malloc(sizeof *c);
    cl_weight_config *out[2] = {malloc(sizeof *c), malloc(sizeof *c)};
    cl_weights_state s;
    cl_weights_state_init(&s, CL_SEED_MODEL);
    int applied;

    config_at(c, 1, CL_MODEL_CHAMPION);
    assert_int_equal(cl_weights_state_apply(&s, c, &applied, err, sizeof err), CL_OK);
    assert_true(applied);

    /* Nothing to promote or roll back yet. */
    size_t n;
    assert_int_equal(cl_weights_promotion(&s, NULL, "x", 5, out, &n, err, sizeof err),
                     CL_ENOTFOUND);
    assert_int_equal(cl_weights_rollback(&s, "x", 5, out, err, sizeof err), CL_ENOTFOUND);

    /* A live challenger. (Keys and the state rules: test_weights.c.) */
    config_at(c, 2, CL_MODEL_CHALLENGER);
    cl_weights_state_apply(&s, c, &applied, err, sizeof err);
    assert_non_null(s.challenger);
    assert_int_equal(s.challenger->version, 2);

    /* Promotion: CHAMPION v2 (same weights, comparison) then RETIRED v1. */
    cl_champion_comparison cmp = {1, 0.05, 0.001, 300, {true, 0.02}};
    assert_int_equal(cl_weights_promotion(&s, &cmp, "won the trial", 7, out, &n, err, sizeof err),
                     CL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0]->status, CL_MODEL_CHAMPION);
    assert_int_equal(out[0]->version, 2);
    assert_true(out[0]->has_comparison);
    assert_true(out[0]->weights.items[0].weight == s.challenger->weights.items[0].weight);
    assert_int_equal(out[1]->status, CL_MODEL_RETIRED);
    assert_int_equal(out[1]->version, 1);
    assert_non_null(strstr(out[1]->reason, "superseded by v2"));
    for (int i = 0; i < 2; i++)
        cl_weights_state_apply(&s, out[i], &applied, err, sizeof err);
    assert_int_equal(s.champion->version, 2);
    assert_null(s.challenger);
    assert_int_equal(s.retired->version, 1);

    /* A refit outcome: REJECTED v3 keeps the champion. */
    config_at(c, 3, CL_MODEL_REJECTED);
    cl_weights_state_apply(&s, c, &applied, err, sizeof err);
    assert_int_equal(s.champion->version, 2);
    assert_int_equal(s.max_version, 3);

    /* Rollback: a new version v4 with v1's weights, and RETIRED v2. */
    assert_int_equal(cl_weights_rollback(&s, "incident", 9, out, err, sizeof err), CL_OK);
    assert_int_equal(out[0]->version, 4);
    assert_int_equal(out[0]->status, CL_MODEL_CHAMPION);
    assert_int_equal(out[0]->parent_version.value, 2);
    assert_true(out[0]->weights.items[0].weight == s.retired->weights.items[0].weight);
    assert_non_null(strstr(out[0]->reason, "rollback to the weights of v1"));
    assert_int_equal(out[1]->version, 2);
    assert_int_equal(out[1]->status, CL_MODEL_RETIRED);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cl_weight_config_validate(out[i], err, sizeof err), CL_OK);
        cl_weights_state_apply(&s, out[i], &applied, err, sizeof err);
    }
    assert_int_equal(s.champion->version, 4);
    assert_int_equal(s.retired->version, 2);

    /* Rejection of a live challenger ends it. */
    config_at(c, 5, CL_MODEL_CHALLENGER);
    cl_weights_state_apply(&s, c, &applied, err, sizeof err);
    assert_int_equal(s.challenger->version, 5);
    assert_int_equal(cl_weights_rejection(&s, &cmp, "worse", 11, out[0], err, sizeof err), CL_OK);
    assert_int_equal(out[0]->status, CL_MODEL_REJECTED);
    cl_weights_state_apply(&s, out[0], &applied, err, sizeof err);
    assert_null(s.challenger);
    assert_int_equal(s.max_version, 5);

    cl_weights_state_free(&s);
    free(c);
    free(out[0]);
    free(out[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consumer_rule, ts_setup, ts_teardown),
        cmocka_unit_test_setup_teardown(test_rows_load, ts_setup, ts_teardown),
        cmocka_unit_test(test_known_model_recovery),
        cmocka_unit_test(test_champion_right_is_rejected),
        cmocka_unit_test(test_refuses_below_minimum),
        cmocka_unit_test(test_no_weights_exist),
        cmocka_unit_test(test_stage_weights),
        cmocka_unit_test(test_point_in_time_rates_do_not_leak),
        cmocka_unit_test(test_discovery_finds_owner_not_account),
        cmocka_unit_test(test_shuffled_labels_adopt_nothing),
        cmocka_unit_test(test_refit_from_learned_champion),
        cmocka_unit_test(test_trial_decisions),
        cmocka_unit_test(test_weights_transitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
