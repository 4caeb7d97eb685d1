/*
 * test_metrics.c — the metrics worker's pure logic: the labeled consumer rule over LMDB,
 * the row codec against hostile bytes, the horizon policy, windows, the champion vs
 * challenger pairing, pattern rules, groups that lose more often, the discovery
 * evidence kept per model and its section of the Closed Lost page, and HTML escaping.
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
#include <unistd.h>

#include "metrics/aggregate.h"
#include "metrics/evaluate.h"
#include "metrics/patterns.h"
#include "metrics/report.h"
#include "score.h"

#define DAY 86400000LL

static cl_labeled_example *ex_new(const char *opp, const char *sid, int64_t version, int won,
                                  int32_t close, int32_t snap_day, double score)
{
    cl_labeled_example *e = calloc(1, sizeof *e);
    cl_labeled_example_init(e);
    snprintf(e->snapshot.opportunity_id, sizeof e->snapshot.opportunity_id, "%s", opp);
    snprintf(e->outcome.opportunity_id, sizeof e->outcome.opportunity_id, "%s", opp);
    snprintf(e->snapshot.snapshot_id, sizeof e->snapshot.snapshot_id, "%s", sid);
    snprintf(e->snapshot.run_id, sizeof e->snapshot.run_id, "run");
    snprintf(e->snapshot.stage, sizeof e->snapshot.stage, "Proposal");
    e->snapshot.snapshot_time = (int64_t)snap_day * DAY;
    e->outcome.close_date = close;
    e->outcome.outcome = won ? CL_OUTCOME_WON : CL_OUTCOME_LOST;
    e->outcome.system_modstamp = version;
    e->outcome_version = version;
    e->days_before_close = close - snap_day;
    for (int k = 0; k < CL_NUM_BUILTINS; k++)
        e->snapshot.components[k] = score;
    e->snapshot.n_scores = 1;
    cl_score_entry *s = &e->snapshot.scores[0];
    snprintf(s->model, sizeof s->model, "%s", CL_SEED_MODEL);
    s->version = 1;
    s->score = score;
    s->band = score >= 70 ? CL_BAND_HIGH : score >= 40 ? CL_BAND_MEDIUM : CL_BAND_LOW;
    s->probability = score / 100;
    return e;
}

typedef struct {
    char dir[64];
    cl_store *store;
    cl_buf scratch;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cl-test-metrics-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    cl_store_config c;
    cl_store_config_defaults(&c);
    c.sync = CL_STORE_SYNC_NOSYNC;
    char err[CL_ERRLEN];
    assert_int_equal(cl_store_open(&f->store, f->dir, cl_aggregate_db_names, &c, err, sizeof err),
                     CL_OK);
    cl_buf_init(&f->scratch, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cl_store_close(f->store);
    cl_buf_free(&f->scratch);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static cl_aggregate_effect apply(fixture *f, cl_labeled_example *e)
{
    cl_store_txn *b;
    char err[CL_ERRLEN];
    assert_int_equal(cl_store_batch_begin(f->store, &b, err, sizeof err), CL_OK);
    cl_aggregate_effect eff;
    assert_int_equal(cl_aggregate_apply(b, e, NULL, &f->scratch, &eff, NULL, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    free(e);
    return eff;
}

static int count_row(const cl_metrics_row *r, void *ud)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static int rows(fixture *f)
{
    cl_store_txn *t;
    char err[CL_ERRLEN];
    int n = 0;
    assert_int_equal(cl_store_read_begin(f->store, &t, err, sizeof err), CL_OK);
    assert_int_equal(cl_aggregate_scan(t, count_row, &n, err, sizeof err), CL_OK);
    cl_store_read_end(t);
    return n;
}

static void test_consumer_rule(void **state)
{
    fixture *f = *state;
    assert_int_equal(apply(f, ex_new("006A", "s1", 100, 1, 200, 180, 80)), CL_AGG_ADDED);
    assert_int_equal(apply(f, ex_new("006A", "s2", 100, 1, 200, 190, 75)), CL_AGG_ADDED);
    assert_int_equal(apply(f, ex_new("006A", "s1", 100, 1, 200, 180, 80)), CL_AGG_DUPLICATE);
    assert_int_equal(apply(f, ex_new("006A", "s1", 100, 1, 200, 180, 81)), CL_AGG_UPDATED);
    assert_int_equal(rows(f), 2);
    /* Lower version: stale. Higher: replaces both rows. */
    assert_int_equal(apply(f, ex_new("006A", "s1", 99, 0, 200, 180, 80)), CL_AGG_STALE);
    assert_int_equal(apply(f, ex_new("006A", "s1", 101, 0, 200, 180, 80)), CL_AGG_SUPERSEDED);
    assert_int_equal(rows(f), 1);
    /* Retraction at the current version removes; a late duplicate cannot come back. */
    cl_labeled_example *r = ex_new("006A", "s1", 101, 0, 200, 180, 80);
    r->retracted = true;
    assert_int_equal(apply(f, r), CL_AGG_RETRACTED);
    assert_int_equal(rows(f), 0);
    assert_int_equal(apply(f, ex_new("006A", "s1", 101, 0, 200, 180, 80)), CL_AGG_STALE);
    assert_int_equal(apply(f, ex_new("006A", "s1", 102, 1, 200, 180, 80)), CL_AGG_SUPERSEDED);
    assert_int_equal(rows(f), 1);
    /* A tombstone retracts at the current version. */
    cl_store_txn *b;
    char err[CL_ERRLEN];
    cl_aggregate_effect eff;
    assert_int_equal(cl_store_batch_begin(f->store, &b, err, sizeof err), CL_OK);
    assert_int_equal(cl_aggregate_apply_tombstone(b, "006A", 4, &eff, NULL, err, sizeof err), CL_OK);
    assert_int_equal(eff, CL_AGG_RETRACTED);
    assert_int_equal(cl_aggregate_apply_tombstone(b, "006Z", 4, &eff, NULL, err, sizeof err), CL_OK);
    assert_int_equal(eff, CL_AGG_STALE);
    assert_int_equal(cl_aggregate_offset_put(b, 2, 42, err, sizeof err), CL_OK);
    int64_t next = 0;
    assert_int_equal(cl_aggregate_offset_get(b, 2, &next, err, sizeof err), CL_OK);
    assert_int_equal(next, 42);
    assert_int_equal(cl_aggregate_offset_get(b, 3, &next, err, sizeof err), CL_ENOTFOUND);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    assert_int_equal(rows(f), 0);
}

static void test_row_codec_rejects_hostile_bytes(void **state)
{
    (void)state;
    cl_labeled_example *e = ex_new("006B", "s1", 5, 1, 100, 90, 55.5);
    cl_metrics_row r, back;
    char err[CL_ERRLEN];
    assert_int_equal(cl_metrics_row_from_example(e, NULL, &r, err, sizeof err), CL_OK);
    cl_buf b;
    cl_buf_init(&b, 0);
    assert_int_equal(cl_metrics_row_encode(&r, &b, err, sizeof err), CL_OK);
    assert_int_equal(cl_metrics_row_decode(b.data, b.len, &back, err, sizeof err), CL_OK);
    assert_memory_equal(&r.scores[0], &back.scores[0], sizeof r.scores[0]);
    assert_string_equal(back.opportunity_id, "006B");
    /* Every truncation fails cleanly; so does a trailing byte and a bad format. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(cl_metrics_row_decode(b.data, n, &back, err, sizeof err), CL_EINVAL);
    cl_buf_append(&b, "x", 1);
    assert_int_equal(cl_metrics_row_decode(b.data, b.len, &back, err, sizeof err), CL_EINVAL);
    b.data[0] = 9;
    assert_int_equal(cl_metrics_row_decode(b.data, b.len - 1, &back, err, sizeof err), CL_EINVAL);
    /* Flipping any byte never crashes, and what decodes stays in range. */
    b.data[0] = CL_METRICS_ROW_FORMAT;
    for (size_t i = 0; i + 1 < b.len; i++) {
        char saved = b.data[i];
        b.data[i] = (char)0xFF;
        if (cl_metrics_row_decode(b.data, b.len - 1, &back, err, sizeof err) == CL_OK)
            for (size_t k = 0; k < back.n_scores; k++)
                assert_true(back.scores[k].score >= 0 && back.scores[k].score <= 100);
        b.data[i] = saved;
    }
    cl_buf_free(&b);
    /* A snapshot after the close is refused (leakage). */
    e->days_before_close = -1;
    assert_int_equal(cl_metrics_row_from_example(e, NULL, &r, err, sizeof err), CL_EINVAL);
    free(e);
}

static cl_metrics_row row_of(const char *opp, const char *sid, int won, int32_t close,
                             int32_t snap_day, double s1, double s2)
{
    cl_labeled_example *e = ex_new(opp, sid, 1, won, close, snap_day, s1);
    e->snapshot.n_scores = 2;
    e->snapshot.scores[1] = e->snapshot.scores[0];
    e->snapshot.scores[1].version = 2;
    e->snapshot.scores[1].score = s2;
    cl_metrics_row r;
    assert_int_equal(cl_metrics_row_from_example(e, NULL, &r, NULL, 0), CL_OK);
    free(e);
    return r;
}

static void test_horizon_windows_and_pairing(void **state)
{
    (void)state;
    int32_t jan31 = 20118, feb1 = 20120; /* 2025-01-31, 2025-02-02 */
    cl_metrics_row rows_[] = {
        row_of("006C", "a", 1, jan31, jan31 - 20, 80, 90), /* eligible, earlier */
        row_of("006C", "b", 1, jan31, jan31 - 8, 60, 95),  /* eligible, latest */
        row_of("006C", "c", 1, jan31, jan31 - 2, 10, 10),  /* inside the horizon */
        row_of("006D", "a", 0, feb1, feb1 - 3, 50, 20),    /* no eligible snapshot */
        row_of("006E", "a", 0, feb1, feb1 - 10, 30, 20),
        row_of("006F", "a", 0, feb1, feb1 - 10, 90, 30),
        row_of("006G", "a", 1, feb1, feb1 - 10, 20, 80),
    };
    cl_eval_options o;
    cl_eval_options_defaults(&o);
    cl_eval_set *s;
    char err[CL_ERRLEN];
    assert_int_equal(cl_eval_set_from_rows(rows_, 7, &o, &s, err, sizeof err), CL_OK);
    assert_int_equal(s->nversions, 2);
    assert_int_equal(s->opportunities, 5);
    assert_int_equal(s->excluded_by_horizon, 1);
    int v1 = cl_eval_find_version(s, CL_SEED_MODEL, 1);
    assert_true(v1 >= 0);
    assert_int_equal(s->versions[v1].n, 4);
    assert_true(s->versions[v1].items[0].score == 60); /* the latest eligible one */

    cl_metrics_window w[16];
    size_t nw = cl_eval_windows(s, w, 16);
    assert_int_equal(nw, 4); /* cumulative, Jan, Feb, rolling */
    assert_int_equal(w[1].kind, CL_WINDOW_MONTHLY);
    char lab[64];
    cl_eval_window_label(&w[1], lab, sizeof lab);
    assert_string_equal(lab, "2025-01");
    assert_int_equal(w[3].end - w[3].start, 90 * DAY);

    cl_model_metrics *m = malloc(sizeof *m);
    assert_int_equal(cl_eval_version_metrics(s, (size_t)v1, &w[0], 0, m, err, sizeof err), CL_OK);
    assert_int_equal(m->n, 4);
    assert_int_equal(m->won, 2);
    assert_int_equal(m->confusion.tp + m->confusion.fp, 1); /* only 006F scored >= 70 */
    assert_true(m->auc.present);
    assert_true(m->auc.value == 0.25); /* won {60,20} vs lost {30,90}: 1 of 4 pairs */
    assert_int_equal(cl_eval_version_metrics(s, (size_t)v1, &w[1], 0, m, err, sizeof err), CL_OK);
    assert_int_equal(m->n, 1);
    assert_false(m->auc.present); /* one class only */

    cl_eval_comparison c;
    int v2 = cl_eval_find_version(s, CL_SEED_MODEL, 2);
    assert_int_equal(cl_eval_compare(s, (size_t)v1, (size_t)v2, &w[0], &c, err, sizeof err), CL_OK);
    assert_int_equal(c.n_paired, 4);
    assert_int_equal(c.n_won, 2);
    assert_true(c.has_delong);
    assert_true(c.delong.auc_b == 1.0);
    cl_eval_top_k k;
    assert_int_equal(cl_eval_top_share(s, (size_t)v1, &w[0], 0.5, &k, err, sizeof err), CL_OK);
    assert_int_equal(k.k, 2);
    assert_int_equal(k.won_in_top, 1);
    free(m);
    cl_eval_set_free(s);

    o.horizon = CL_HORIZON_ALL_SNAPSHOTS;
    assert_int_equal(cl_eval_set_from_rows(rows_, 7, &o, &s, err, sizeof err), CL_OK);
    assert_int_equal(s->versions[0].n, 7);
    cl_eval_set_free(s);
    o.horizon = CL_HORIZON_FIRST_SNAPSHOT;
    assert_int_equal(cl_eval_set_from_rows(rows_, 7, &o, &s, err, sizeof err), CL_OK);
    assert_int_equal(s->versions[0].n, 5);
    assert_true(s->versions[0].items[0].score == 80);
    cl_eval_set_free(s);
}

static void test_patterns_rule_needs_sample_and_lift(void **state)
{
    (void)state;
    /* 200 deals: HIGH with win_rate < 40 lose 80%; others lose 30%. */
    size_t n = 200;
    cl_metrics_row *rs = calloc(n, sizeof *rs);
    for (size_t i = 0; i < n; i++) {
        char opp[32];
        snprintf(opp, sizeof opp, "006P%05zu", i);
        int high = i < 100;
        int weak = i < 50;
        int won = weak ? (i % 5 == 0) : (i % 10 < 7);
        cl_labeled_example *e = ex_new(opp, "s", 1, won, 20100, 20080, high ? 80 : 50);
        e->snapshot.components[CL_WIN_RATE] = weak ? 20 : 70;
        assert_int_equal(cl_metrics_row_from_example(e, NULL, &rs[i], NULL, 0), CL_OK);
        free(e);
    }
    cl_eval_options o;
    cl_eval_options_defaults(&o);
    cl_eval_set *s;
    char err[CL_ERRLEN];
    assert_int_equal(cl_eval_set_from_rows(rs, n, &o, &s, err, sizeof err), CL_OK);
    cl_metrics_window w[8];
    assert_true(cl_eval_windows(s, w, 8) >= 1);
    cl_pattern_options po;
    cl_pattern_options_defaults(&po);
    cl_patterns p;
    assert_int_equal(cl_patterns_analyse(s, 0, &w[0], &po, &p, err, sizeof err), CL_OK);
    int found = 0;
    for (size_t i = 0; i < p.nrules; i++)
        if (strstr(p.rules[i].text, "HIGH score but win_rate < 40: lost 80% of the time, n = 50")) {
            found = 1;
            assert_true(p.rules[i].lift > 1.2 && p.rules[i].p_value < 0.05);
        }
    assert_true(found);
    assert_int_equal(p.n_high_losses, po.max_cases); /* 40 + 15 lost in HIGH, capped */
    assert_int_equal(p.high_lost, 55);
    assert_true(p.weights_known); /* the seed */
    cl_patterns_free(&p);
    /* With min_sample above the subgroup, the rule disappears. */
    po.min_sample = 51;
    assert_int_equal(cl_patterns_analyse(s, 0, &w[0], &po, &p, err, sizeof err), CL_OK);
    for (size_t i = 0; i < p.nrules; i++)
        assert_null(strstr(p.rules[i].condition, "win_rate < 40"));
    cl_patterns_free(&p);
    cl_eval_set_free(s);
    free(rs);
}

static void test_html_escape_and_url(void **state)
{
    (void)state;
    cl_buf b;
    cl_buf_init(&b, 0);
    assert_int_equal(cl_html_escape(&b, "<a href='x'>&\"\x01\xff\xc3\xa9"), CL_OK);
    assert_string_equal(b.data, "&lt;a href=&#39;x&#39;&gt;&amp;&quot; \xEF\xBF\xBD\xc3\xa9");
    cl_buf_free(&b);
    assert_int_equal(cl_report_check_salesforce_url("https://acme.my.salesforce.com", NULL, 0), CL_OK);
    assert_int_equal(cl_report_check_salesforce_url("http://127.0.0.1:8443/", NULL, 0), CL_OK);
    assert_int_equal(cl_report_check_salesforce_url("", NULL, 0), CL_OK);
    assert_int_equal(cl_report_check_salesforce_url("javascript:alert(1)", NULL, 0), CL_EINVAL);
    assert_int_equal(cl_report_check_salesforce_url("https://a.com/\"><x", NULL, 0), CL_EINVAL);
    assert_int_equal(cl_report_check_salesforce_url("https://a.com/path", NULL, 0), CL_EINVAL);
}

static void test_empty_state_renders(void **state)
{
    (void)state;
    cl_eval_options o;
    cl_eval_options_defaults(&o);
    cl_eval_set *s;
    assert_int_equal(cl_eval_set_from_rows(NULL, 0, &o, &s, NULL, 0), CL_OK);
    cl_report_options ro;
    cl_report_options_defaults(&ro);
    cl_buf won, lost;
    cl_buf_init(&won, 0);
    cl_buf_init(&lost, 0);
    assert_int_equal(cl_report_render(s, &ro, &won, &lost, NULL, 0), CL_OK);
    assert_non_null(strstr(won.data, "No Closed Won or Closed Lost outcome"));
    assert_non_null(strstr(lost.data, "Closed Lost analysis"));
    cl_buf_free(&won);
    cl_buf_free(&lost);
    cl_eval_set_free(s);
}

/* ---- factors the score misses ------------------------------------------------------- */

static void evidence(cl_candidate_evidence *e, const char *name, cl_component_kind kind,
                     const char *source, double dauc, double dll, double sauc, double sll,
                     bool beats, bool adopted)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->source, sizeof e->source, "%s", source);
    e->kind = kind;
    e->delta_auc = (cl_opt_double){true, dauc};
    e->delta_log_loss = (cl_opt_double){true, dll};
    e->shuffled_max_delta_auc = (cl_opt_double){true, sauc};
    e->shuffled_max_delta_log_loss = (cl_opt_double){true, sll};
    e->permutations = 19;
    e->beats_shuffled = beats;
    e->adopted = adopted;
    e->n_examples = 1000;
    e->n_with_value = 1000;
    e->n_categories = kind == CL_COMPONENT_CATEGORY_WIN_RATE ? 12 : 0;
}

static void test_discovery_table_keeps_latest_evidence(void **state)
{
    (void)state;
    cl_report_discovery table[2];
    size_t n = 0;
    cl_weight_config *c = malloc(sizeof *c);
    cl_weight_config_seed(c, 0);
    /* The seed carries no evidence: nothing to keep. */
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 0);
    assert_int_equal(n, 0);

    c->version = 5;
    c->status = CL_MODEL_CHALLENGER;
    evidence(&c->discovery[0], "owner_id_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "owner_id",
             0.03, 0.004, 0.01, 0.001, true, true);
    c->n_discovery = 1;
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 1);
    assert_int_equal(n, 1);
    assert_true(table[0].version == 5 && table[0].status == CL_MODEL_CHALLENGER);
    /* The promotion of the same version replaces it; a late CHALLENGER record of it does
     * not undo the promotion (records of different keys arrive in either order). */
    c->status = CL_MODEL_CHAMPION;
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 1);
    assert_int_equal(table[0].status, CL_MODEL_CHAMPION);
    c->status = CL_MODEL_CHALLENGER;
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 0);
    assert_int_equal(table[0].status, CL_MODEL_CHAMPION);
    /* An older version never replaces a newer one; a newer one does. */
    c->version = 4;
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 0);
    c->version = 6;
    c->status = CL_MODEL_REJECTED;
    c->discovery[0].adopted = false;
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 1);
    assert_true(table[0].version == 6 && !table[0].factors[0].adopted && n == 1);
    /* Another model gets its own entry; a full table refuses a third. */
    snprintf(c->model, sizeof c->model, "other");
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 1);
    snprintf(c->model, sizeof c->model, "third");
    assert_int_equal(cl_report_discovery_update(table, &n, 2, c), 0);
    assert_int_equal(n, 2);
    assert_string_equal(table[0].model, CL_SEED_MODEL);

    char words[256];
    cl_report_factor_words(&c->discovery[0], words, sizeof words);
    assert_string_equal(words, "the owner's past win rate");
    cl_candidate_evidence e;
    evidence(&e, "x", CL_COMPONENT_NUMERIC_PERCENTILE, "amount", 0, 0, 0, 0, false, false);
    cl_report_factor_words(&e, words, sizeof words);
    assert_string_equal(words, "deal size, ranked against past deals");
    evidence(&e, "x", CL_COMPONENT_CATEGORY_WIN_RATE, "partner", 0, 0, 0, 0, false, false);
    cl_report_factor_words(&e, words, sizeof words);
    assert_string_equal(words, "the past win rate of the deal's 'partner'");
    free(c);
}

/* 300 deals: owner-A (60 deals) loses 80%, owner-B (20 deals) loses all of them but is
 * below the minimum sample, the other owners lose 30%; the first 150 deals are in a
 * segment whose name must be escaped. */
static cl_eval_set *lost_groups_set(void)
{
    size_t n = 300;
    cl_metrics_row *rs = calloc(n, sizeof *rs);
    for (size_t i = 0; i < n; i++) {
        char opp[32];
        snprintf(opp, sizeof opp, "006G%05zu", i);
        int lost = i < 60 ? i % 5 != 0 : i < 80 ? 1 : i % 10 < 3;
        cl_labeled_example *e = ex_new(opp, "s", 1, !lost, 20100, 20080, 50);
        const char *owner = i < 60       ? "owner-A"
                            : i < 80     ? "owner-B"
                            : i % 4 == 0 ? "owner-C"
                            : i % 4 == 1 ? "owner-D"
                            : i % 4 == 2 ? "owner-E"
                                         : "owner-F";
        snprintf(e->snapshot.owner_id, sizeof e->snapshot.owner_id, "%s", owner);
        snprintf(e->snapshot.segment, sizeof e->snapshot.segment, "%s",
                 i < 150 ? "<Ent&erprise>" : "SMB");
        assert_int_equal(cl_metrics_row_from_example(e, NULL, &rs[i], NULL, 0), CL_OK);
        free(e);
    }
    cl_eval_options o;
    cl_eval_options_defaults(&o);
    cl_eval_set *s;
    char err[CL_ERRLEN];
    assert_int_equal(cl_eval_set_from_rows(rs, n, &o, &s, err, sizeof err), CL_OK);
    free(rs);
    return s;
}

static void test_groups_that_lose_more_often(void **state)
{
    (void)state;
    cl_eval_set *s = lost_groups_set();
    cl_metrics_window w[8];
    assert_true(cl_eval_windows(s, w, 8) >= 1);
    cl_pattern_options po;
    cl_pattern_options_defaults(&po);
    cl_patterns p;
    char err[CL_ERRLEN];
    assert_int_equal(cl_patterns_analyse(s, 0, &w[0], &po, &p, err, sizeof err), CL_OK);
    /* lost: 48 (A) + 20 (B) + 66 of the other 220 = 134 of 300 */
    assert_int_equal(p.lost, 134);
    int owner_a = 0, segment = 0;
    for (size_t i = 0; i < p.n_lost_groups; i++) {
        const cl_pattern_lost_group *g = &p.lost_groups[i];
        const char *key = cl_eval_string(s, g->key);
        assert_true(g->n >= (int64_t)po.min_sample && g->lift >= po.min_lift &&
                    g->p_value < po.max_p_value);
        assert_true(strcmp(key, "owner-B") != 0); /* 20 deals: below the minimum sample */
        if (g->attr == CL_EVAL_OWNER && strcmp(key, "owner-A") == 0) {
            owner_a = 1;
            assert_true(g->n == 60 && g->lost == 48);
            assert_true(fabs(g->lift - 0.8 / (134.0 / 300)) < 1e-12);
            assert_true(fabs(g->support - 0.2) < 1e-12);
        }
        if (g->attr == CL_EVAL_SEGMENT) {
            segment = 1;
            assert_string_equal(key, "<Ent&erprise>");
        }
    }
    assert_true(owner_a && segment);
    cl_patterns_free(&p);
    /* A minimum sample above owner-A's size leaves it out. */
    po.min_sample = 61;
    assert_int_equal(cl_patterns_analyse(s, 0, &w[0], &po, &p, err, sizeof err), CL_OK);
    for (size_t i = 0; i < p.n_lost_groups; i++)
        assert_true(p.lost_groups[i].attr != CL_EVAL_OWNER);
    cl_patterns_free(&p);
    cl_eval_set_free(s);
}

static void test_lost_report_lists_missed_factors(void **state)
{
    (void)state;
    cl_eval_set *s = lost_groups_set();
    cl_report_discovery *d = calloc(1, sizeof *d);
    snprintf(d->model, sizeof d->model, "%s", CL_SEED_MODEL);
    d->version = 7;
    d->status = CL_MODEL_CHALLENGER;
    d->created_at = 1746450000000;
    evidence(&d->factors[0], "owner_id_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "owner_id", 0.031,
             0.0042, 0.012, 0.0011, true, true);
    evidence(&d->factors[1], "lead_source_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "lead_source",
             0.002, -0.0001, 0.009, 0.0015, false, false);
    evidence(&d->factors[2], "x<script>alert(1)</script>", CL_COMPONENT_CATEGORY_WIN_RATE, "a&b\"c",
             0, 0, 0, 0, false, false);
    d->factors[2].delta_auc.present = d->factors[2].delta_log_loss.present = false;
    d->factors[2].n_with_value = 940;
    d->n = 3;
    cl_report_options ro;
    cl_report_options_defaults(&ro);
    ro.discovery = d;
    ro.ndiscovery = 1;
    cl_buf won, lost;
    cl_buf_init(&won, 0);
    cl_buf_init(&lost, 0);
    char err[CL_ERRLEN];
    assert_int_equal(cl_report_render(s, &ro, &won, &lost, err, sizeof err), CL_OK);
    const char *h = lost.data;
    assert_non_null(strstr(h, "<h2>Factors the score misses</h2>"));
    assert_non_null(strstr(h, "Tested by the refit that produced version 7 (now challenger)"));
    assert_non_null(strstr(h, "repeated 19 times"));
    const char *row = strstr(h, "<code>owner_id_win_rate</code>");
    assert_non_null(row);
    assert_non_null(strstr(row, "the owner&#39;s past win rate"));
    assert_non_null(strstr(row, "+0.031"));
    assert_non_null(strstr(row, "+0.0042"));
    assert_non_null(strstr(row, "+0.012 / +0.0011"));
    assert_non_null(strstr(row, "n = 1,000; 12 groups with enough history"));
    assert_non_null(strstr(row, "adopted by challenger v7"));
    row = strstr(h, "<code>lead_source_win_rate</code>");
    assert_non_null(row);
    assert_non_null(strstr(row, "not adopted (gain within noise)"));
    /* Hostile strings from the weights topic are escaped, never markup. */
    assert_null(strstr(h, "<script"));
    row = strstr(h, "<code>x&lt;script&gt;alert(1)&lt;/script&gt;</code>");
    assert_non_null(row);
    assert_non_null(strstr(row, "a&amp;b&quot;c"));
    assert_non_null(strstr(row, "n = 1,000 (940 with a value)"));
    assert_non_null(strstr(row, "not evaluated"));
    /* The groups, from the evaluated deals themselves. */
    row = strstr(h, "<h3>Groups that lose more often</h3>");
    assert_non_null(row);
    assert_non_null(strstr(row, "<tr><td>Owner</td><td>owner-A</td><td class=\"n\">60</td>"
                                "<td class=\"n\">48</td><td class=\"n\">80%</td>"));
    assert_non_null(strstr(row, "<td>Segment</td><td>&lt;Ent&amp;erprise&gt;</td>"));
    assert_null(strstr(row, "owner-B"));
    assert_null(strstr(h, "<Ent&"));

    /* Another model's evidence is not this model's. */
    snprintf(d->model, sizeof d->model, "other_model");
    cl_buf_reset(&won);
    cl_buf_reset(&lost);
    assert_int_equal(cl_report_render(s, &ro, &won, &lost, err, sizeof err), CL_OK);
    assert_non_null(strstr(lost.data, "No refit of this model has tested candidate factors yet"));
    assert_null(strstr(lost.data, "owner_id_win_rate"));
    cl_buf_free(&won);
    cl_buf_free(&lost);
    free(d);
    cl_eval_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consumer_rule, setup, teardown),
        cmocka_unit_test(test_row_codec_rejects_hostile_bytes),
        cmocka_unit_test(test_horizon_windows_and_pairing),
        cmocka_unit_test(test_patterns_rule_needs_sample_and_lift),
        cmocka_unit_test(test_html_escape_and_url),
        cmocka_unit_test(test_empty_state_renders),
        cmocka_unit_test(test_discovery_table_keeps_latest_evidence),
        cmocka_unit_test(test_groups_that_lose_more_often),
        cmocka_unit_test(test_lost_report_lists_missed_factors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
