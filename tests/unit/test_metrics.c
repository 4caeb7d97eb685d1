/*
 * test_metrics.c — the metrics worker's pure logic: the labeled consumer rule over LMDB,
 * the row codec against hostile bytes, the horizon policy, windows, the champion vs
 * challenger pairing, pattern rules and HTML escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consumer_rule, setup, teardown),
        cmocka_unit_test(test_row_codec_rejects_hostile_bytes),
        cmocka_unit_test(test_horizon_windows_and_pairing),
        cmocka_unit_test(test_patterns_rule_needs_sample_and_lift),
        cmocka_unit_test(test_html_escape_and_url),
        cmocka_unit_test(test_empty_state_renders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
