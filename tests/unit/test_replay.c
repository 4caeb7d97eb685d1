/*
 * test_replay.c — closedloop-replay: the six component formulas on a tiny hand-made
 * history (values worked by hand from docs/backtest.md), no leakage (changing any
 * outcome closed on or after a snapshot day never changes that snapshot's components,
 * while changing an earlier one does), column mapping and booleans, bad-row policies,
 * ids, the written layout, and a backtest on a generated history.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "replay/replay.h"
#include "util.h"

/* cmocka 1.1 has no double assertion; print both values on failure. */
#define assert_near(a, b, eps) assert_near_at((a), (b), (eps), __FILE__, __LINE__)
static void assert_near_at(double a, double b, double eps, const char *file, int line)
{
    if (!(fabs(a - b) <= eps)) {
        fprintf(stderr, "%s:%d: %.10g != %.10g\n", file, line, a, b);
        fail();
    }
}

static const char tiny_csv[] =
    "opportunity_id,account_name,segment,region,product,lead_source,owner,created_date,"
    "close_date,stage,amount,is_won,is_closed\n"
    "A1,Acme,SMB,EMEA,P1,Web,Ann,2024-01-01,2024-01-21,Closed Won,1000,True,True\n"
    "A2,Acme,SMB,EMEA,P2,Web,Ann,2024-01-05,2024-02-04,Closed Lost,500,False,True\n"
    "A3,Acme,SMB,EMEA,P2,Web,Bob,2024-02-10,2024-04-01,Closed Won,2000,True,True\n"
    "B1,Beta,MidMarket,NA,P1,,Bob,2024-01-02,2024-01-12,Closed Lost,300,False,True\n"
    "C1,Gamma,SMB,NA,P1,Web,Ann,2024-03-20,2024-06-30,Prospecting,100,False,False\n";

static cl_replay *load(const char *text, const cl_replay_options *opt)
{
    cl_replay_options o;
    if (!opt) cl_replay_options_init(&o);
    char err[CL_ERRLEN] = "";
    cl_replay *h = NULL;
    int rc =
        cl_replay_load_text(opt ? opt : &o, "test.csv", text, strlen(text), &h, err, sizeof err);
    if (rc != CL_OK) fprintf(stderr, "load failed: %s\n", err);
    assert_int_equal(rc, CL_OK);
    return h;
}

static int32_t day_of(const char *s)
{
    int32_t d = 0;
    assert_int_equal(cl_parse_date(s, &d), CL_OK);
    return d;
}

static size_t index_of(const cl_replay *h, const char *id)
{
    size_t i = 0;
    assert_int_equal(cl_replay_find(h, id, &i), CL_OK);
    return i;
}

/* A3 on 2024-03-01: Acme's past is A1 (won 01-21, cycle 20, 1000, P1) and A2 (lost
 * 02-04, cycle 30); the whole past is A1 won, A2 and B1 lost (g = 1/3). */
static void test_components_by_hand(void **state)
{
    (void)state;
    cl_replay *h = load(tiny_csv, NULL);
    double c[CL_REPLAY_COMPONENTS];
    cl_replay_components(h, index_of(h, "A3"), day_of("2024-03-01"), c);
    assert_near(c[0], 60.0, 1e-9);  /* age 20 vs median 25: 100·(1 − 20/50) */
    assert_near(c[1], 50.0, 1e-9);  /* 2000 vs largest won 1000 */
    assert_near(c[2], 25.0, 1e-9);  /* one product bought, cap 4 */
    assert_near(c[3], 33.33, 1e-9); /* 100·1/(1+2) */
    assert_near(c[4], 38.10, 1e-9); /* (1 + 5/3)/(2 + 5) */
    assert_near(c[5], 85.72, 1e-9); /* 40 days, half-life 180 */
    assert_near(cl_replay_seed_score(c), 42.99, 1e-9);

    /* Before any Acme outcome: neutral speed, nothing bought, global prior only. */
    cl_replay_components(h, index_of(h, "A2"), day_of("2024-01-10"), c);
    assert_near(c[0], 50.0, 1e-9);
    assert_near(c[1], 0.0, 1e-9);
    assert_near(c[2], 0.0, 1e-9);
    assert_near(c[3], 0.0, 1e-9);
    assert_near(c[4], 50.0, 1e-9); /* no outcome anywhere yet: 0.5 */
    assert_near(c[5], 0.0, 1e-9);

    /* An outcome closed ON the snapshot day is not known yet (runs are at 06:00Z). */
    double before[CL_REPLAY_COMPONENTS];
    cl_replay_components(h, index_of(h, "A2"), day_of("2024-01-21"), before);
    assert_near(before[3], 0.0, 1e-9);
    cl_replay_components(h, index_of(h, "A2"), day_of("2024-01-22"), c);
    assert_near(c[3], 33.33, 1e-9);
    cl_replay_free(h);
}

static void test_open_at(void **state)
{
    (void)state;
    cl_replay *h = load(tiny_csv, NULL);
    size_t a1 = index_of(h, "A1"), c1 = index_of(h, "C1");
    assert_int_equal(cl_replay_open_at(h, a1, day_of("2024-01-01")), 0); /* created that day */
    assert_int_equal(cl_replay_open_at(h, a1, day_of("2024-01-02")), 1);
    assert_int_equal(cl_replay_open_at(h, a1, day_of("2024-01-20")), 1);
    assert_int_equal(cl_replay_open_at(h, a1, day_of("2024-01-21")), 0); /* closes that day */
    /* The extraction date is the day after the last close (2024-04-02): C1 is open then,
     * and its planned close date never ends it. */
    const cl_replay_counts *k = cl_replay_get_counts(h);
    assert_int_equal(k->end_day, day_of("2024-04-02"));
    assert_int_equal(k->open, 1);
    assert_int_equal(cl_replay_open_at(h, c1, day_of("2024-04-01")), 1);
    assert_int_equal(cl_replay_open_at(h, c1, day_of("2024-04-02")), 0);
    assert_int_equal(cl_replay_run_day(h, 0), day_of("2024-01-01"));
    assert_int_equal(cl_replay_run_count(h), 14); /* 2024-01-01 + 7k < 2024-04-02 */
    cl_replay_free(h);
}

/* A deterministic history of many accounts as CSV text; `flip_from` >= 0 flips the
 * won flag (and moves the close 9 days later) of every closed deal closing on or after
 * that day; `flip_one` >= 0 flips deal number flip_one only. */
static char *history_text(int n, int32_t flip_from, int flip_one)
{
    cl_buf b;
    cl_buf_init(&b, 0);
    cl_buf_printf(&b, "opportunity_id,account_name,segment,region,product,lead_source,owner,"
                      "created_date,close_date,stage,amount,is_won,is_closed\n");
    uint64_t x = 42;
    int32_t base = day_of("2023-01-02");
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(x >> 33);
        int32_t created = base + (int32_t)(i * 500 / n);
        int32_t close = created + 5 + (int32_t)(r % 90);
        int won = (r >> 8) % 3 == 0;
        int closed = close < base + 520;
        if (closed && ((flip_from >= 0 && close >= flip_from) || i == flip_one)) {
            won = !won;
            if (i != flip_one) close += 9;
        }
        char cd[11], cl[11];
        cl_format_date(created, cd);
        cl_format_date(close, cl);
        cl_buf_printf(&b, "O%d,Account %u,Seg%u,R%u,Prod%u,Src%u,Rep%u,%s,%s,%s,%u,%s,%s\n", i,
                      (r >> 12) % 15, (r >> 12) % 3, (r >> 14) % 2, (r >> 16) % 5, (r >> 19) % 4,
                      (r >> 21) % 6, cd, cl, closed ? (won ? "Closed Won" : "Closed Lost") : "Open",
                      1000 + (r >> 4) % 50000, won && closed ? "True" : "False",
                      closed ? "True" : "False");
    }
    return b.data;
}

static void test_no_leakage(void **state)
{
    (void)state;
    cl_replay_options o;
    cl_replay_options_init(&o);
    /* Keep the grid and the extraction date fixed across the variants. */
    o.start_day = day_of("2023-01-02");
    o.end_day = day_of("2024-06-01");
    char *orig_text = history_text(400, -1, -1);
    cl_replay *orig = load(orig_text, &o);
    size_t n = cl_replay_size(orig);
    int changed_by_past = 0;
    for (size_t run = 5; run < cl_replay_run_count(orig); run += 9) {
        int32_t day = cl_replay_run_day(orig, run);
        char *future_text = history_text(400, day, -1);
        cl_replay *future = load(future_text, &o);
        assert_int_equal(cl_replay_size(future), n);
        for (size_t i = 0; i < n; i++) {
            if (!cl_replay_open_at(orig, i, day)) continue;
            double a[CL_REPLAY_COMPONENTS], b[CL_REPLAY_COMPONENTS];
            cl_replay_components(orig, i, day, a);
            cl_replay_components(future, i, day, b);
            assert_memory_equal(a, b, sizeof a);
        }
        cl_replay_free(future);
        free(future_text);
    }
    /* Positive control: flipping one outcome closed before some snapshot does move
     * components of its account at that snapshot, so the test above can fail. */
    for (int victim = 0; victim < 60 && !changed_by_past; victim++) {
        cl_replay_opportunity v;
        assert_int_equal(cl_replay_opportunity_at(orig, (size_t)victim, &v), CL_OK);
        if (!v.closed) continue;
        char *past_text = history_text(400, -1, victim);
        cl_replay *past = load(past_text, &o);
        for (size_t i = 0; i < n && !changed_by_past; i++) {
            int32_t day = v.close_day + 1 + (int32_t)(i % 7);
            if (!cl_replay_open_at(orig, i, day)) continue;
            double a[CL_REPLAY_COMPONENTS], b[CL_REPLAY_COMPONENTS];
            cl_replay_components(orig, i, day, a);
            cl_replay_components(past, i, day, b);
            changed_by_past = memcmp(a, b, sizeof a) != 0;
        }
        cl_replay_free(past);
        free(past_text);
    }
    assert_true(changed_by_past);
    cl_replay_free(orig);
    free(orig_text);
}

static void test_column_mapping_and_booleans(void **state)
{
    (void)state;
    const char *text = "Deal,Customer,Opened,Closed On,Result,Done\n"
                       "d1,X,2024-01-01,2024-01-10,yes,1\n"
                       "d2,X,2024-01-02,2024-01-11,No,yes\n"
                       "d3,Y,2024-01-03T10:00:00Z,2024-01-20,0,TRUE\n"
                       "d4,Y,2024-01-04,2024-03-01,false,0\n";
    cl_replay_options o;
    cl_replay_options_init(&o);
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++)
        o.columns[k] = "";
    o.columns[CL_REPLAY_COL_ID] = "Deal";
    o.columns[CL_REPLAY_COL_ACCOUNT] = "Customer";
    o.columns[CL_REPLAY_COL_CREATED] = "Opened";
    o.columns[CL_REPLAY_COL_CLOSE] = "Closed On";
    o.columns[CL_REPLAY_COL_WON] = "Result";
    o.columns[CL_REPLAY_COL_CLOSED] = "Done";
    cl_replay *h = load(text, &o);
    const cl_replay_counts *c = cl_replay_get_counts(h);
    assert_int_equal(c->loaded, 4);
    assert_int_equal(c->won, 1);
    assert_int_equal(c->closed, 3);
    assert_int_equal(c->accounts, 2);
    cl_replay_opportunity v;
    assert_int_equal(cl_replay_opportunity_at(h, index_of(h, "d3"), &v), CL_OK);
    assert_int_equal(v.created_day, day_of("2024-01-03"));
    assert_string_equal(v.owner, "");
    assert_int_equal(v.has_amount, 0);
    cl_replay_free(h);

    /* A mapped column missing from the header names the key to fix. */
    o.columns[CL_REPLAY_COL_OWNER] = "Rep";
    char err[CL_ERRLEN];
    cl_replay *bad = NULL;
    assert_int_equal(
        cl_replay_load_text(&o, "deals.csv", text, strlen(text), &bad, err, sizeof err), CL_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(err, "replay.column.owner"));
    assert_non_null(strstr(err, "'Rep'"));
}

static void test_bad_rows(void **state)
{
    (void)state;
    const char *text = "opportunity_id,account_name,created_date,close_date,is_won\n"
                       "a,X,2024-01-01,2024-01-10,true\n"
                       "b,X,2024-01-02,2024-13-11,false\n"
                       "c,X,2024-01-05,2024-01-03,false\n"
                       "d,X,2024-01-05,2024-01-20,maybe\n"
                       "e,,2024-01-05,2024-01-20,true\n"
                       "a,Y,2024-01-05,2024-01-20,true\n"
                       "f,Y,2024-01-05,2024-01-20\n"
                       "g,Y,2024-01-05,2024-01-25,false\n";
    cl_replay_options o;
    cl_replay_options_init(&o);
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++)
        if (k != CL_REPLAY_COL_ID && k != CL_REPLAY_COL_ACCOUNT && k != CL_REPLAY_COL_CREATED &&
            k != CL_REPLAY_COL_CLOSE && k != CL_REPLAY_COL_WON)
            o.columns[k] = "";
    char err[CL_ERRLEN];
    cl_replay *h = NULL;
    assert_int_equal(cl_replay_load_text(&o, "x.csv", text, strlen(text), &h, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "x.csv line 3, column close_date"));
    assert_non_null(strstr(err, "2024-13-11"));

    o.bad_rows = CL_REPLAY_BAD_ROWS_SKIP;
    assert_int_equal(cl_replay_load_text(&o, "x.csv", text, strlen(text), &h, err, sizeof err),
                     CL_OK);
    const cl_replay_counts *c = cl_replay_get_counts(h);
    assert_int_equal(c->rows, 8);
    assert_int_equal(c->loaded, 2);   /* a and g */
    assert_int_equal(c->bad_rows, 6); /* date, order, boolean, account, duplicate, width */
    size_t i;
    assert_int_equal(cl_replay_find(h, "g", &i), CL_OK);
    assert_int_equal(cl_replay_find(h, "d", &i), CL_ENOTFOUND);
    cl_replay_free(h);

    /* Won but not closed is contradictory. */
    const char *contra = "opportunity_id,account_name,created_date,close_date,is_won,is_closed\n"
                         "a,X,2024-01-01,2024-01-10,true,false\n";
    o.bad_rows = CL_REPLAY_BAD_ROWS_FAIL;
    o.columns[CL_REPLAY_COL_CLOSED] = "is_closed";
    assert_int_equal(cl_replay_load_text(&o, "y.csv", contra, strlen(contra), &h, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "y.csv line 2, column is_won"));
}

static void test_ids(void **state)
{
    (void)state;
    const char *text = "opportunity_id,account_name,owner,created_date,close_date,is_won\n"
                       "0065g00000AbCdEfGH,001000000000001AAA,005000000000001,2024-01-01,"
                       "2024-01-10,true\n"
                       "OPP-1,Acme,Ann,2024-01-02,2024-01-11,false\n";
    cl_replay_options o;
    cl_replay_options_init(&o);
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++)
        if (k != CL_REPLAY_COL_ID && k != CL_REPLAY_COL_ACCOUNT && k != CL_REPLAY_COL_CREATED &&
            k != CL_REPLAY_COL_CLOSE && k != CL_REPLAY_COL_WON && k != CL_REPLAY_COL_OWNER)
            o.columns[k] = "";
    cl_replay *h = load(text, &o);
    cl_replay_opportunity v;
    assert_int_equal(cl_replay_opportunity_at(h, index_of(h, "0065g00000AbCdEfGH"), &v), CL_OK);
    assert_string_equal(v.id, "0065g00000AbCdEfGH"); /* already a Salesforce id: kept */
    assert_int_equal(cl_replay_opportunity_at(h, index_of(h, "OPP-1"), &v), CL_OK);
    assert_int_equal(strlen(v.id), 18);
    assert_memory_equal(v.id, "006", 3);
    char first[19];
    cl_strlcpy(first, v.id, sizeof first);
    cl_replay_free(h);
    h = load(text, &o); /* deterministic */
    assert_int_equal(cl_replay_opportunity_at(h, index_of(h, "OPP-1"), &v), CL_OK);
    assert_string_equal(v.id, first);
    cl_replay_free(h);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    cl_buf b;
    cl_buf_init(&b, 0);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(cl_buf_append(&b, chunk, got), CL_OK);
    fclose(f);
    return b.data ? b.data : calloc(1, 1);
}

static void test_write_layout(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_replay_XXXXXX";
    assert_non_null(mkdtemp(dir));
    cl_replay *h = load(tiny_csv, NULL);
    char err[CL_ERRLEN];
    assert_int_equal(cl_replay_write(h, dir, 0, err, sizeof err), CL_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/runs/run-2024-03-04.csv", dir);
    char *run = read_file(path);
    static const char header[] =
        "run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,"
        "currency,created_date,expected_close_date,days_in_stage,segment,region,"
        "product,lead_source,type,speed_to_close,largest_deal,product_mix,"
        "upsell_instances,win_rate,recency,opportunity_score,account_score\n";
    assert_true(strncmp(run, header, sizeof header - 1) == 0);
    /* Only A3 is open on 2024-03-04 (C1 is created on 03-20). On that day: age 23 ->
     * speed 100·(1 − 23/50) = 54; expected close = created + median cycle 25. */
    assert_non_null(strstr(run, "run-2024-03-04,2024-03-04T06:00:00.000Z,"));
    assert_non_null(strstr(run, ",Open,2000.00,USD,2024-02-10,2024-03-06,23,SMB,EMEA,P2,Web,,54,"
                                "50,25,33.33,38.1,"));
    int lines = 0;
    for (const char *p = run; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    free(run);

    snprintf(path, sizeof path, "%s/outcomes/closed_opportunities.csv", dir);
    char *closed = read_file(path);
    lines = 0;
    for (const char *p = closed; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1 + 4);
    assert_non_null(strstr(closed, ",Closed Won,true,true,false,2024-04-01,2000.00,"
                                   "2024-02-10T12:00:00.000+0000,2024-04-01T18:00:00.000+0000,"));
    free(closed);
    snprintf(path, sizeof path, "%s/outcomes/opportunities.jsonl", dir);
    char *jsonl = read_file(path);
    assert_non_null(strstr(jsonl, "\"StageName\":\"Prospecting\",\"IsClosed\":false"));
    assert_non_null(strstr(jsonl, "\"LeadSource\":null"));
    free(jsonl);

    /* A second write needs --force. */
    assert_int_equal(cl_replay_write(h, dir, 0, err, sizeof err), CL_ECONFLICT);
    assert_non_null(strstr(err, "--force"));
    assert_int_equal(cl_replay_write(h, dir, 1, err, sizeof err), CL_OK);
    cl_replay_free(h);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_backtest_runs(void **state)
{
    (void)state;
    char *text = history_text(1500, -1, -1);
    cl_replay *h = load(text, NULL);
    cl_backtest_options o;
    cl_backtest_options_init(&o);
    o.period = CL_BACKTEST_MONTH;
    o.permutations = 3;
    o.min_train_won = o.min_train_lost = 20;
    cl_backtest_result r;
    char err[CL_ERRLEN];
    assert_int_equal(cl_backtest_run(h, &o, &r, err, sizeof err), CL_OK);
    assert_true(r.examples > 1000);
    assert_true(r.nperiods >= 12);
    size_t tested = 0, fitted = 0;
    for (size_t i = 0; i < r.nperiods; i++) {
        const cl_backtest_period_result *p = &r.periods[i];
        tested += p->n_test;
        /* Training never reaches into the period it is tested on. */
        if (i > 0) assert_int_equal(p->n_train, r.periods[i - 1].n_train + r.periods[i - 1].n_test);
        if (!isnan(p->seed.auc)) assert_true(p->seed.auc >= 0 && p->seed.auc <= 1);
        if (!isnan(p->learned.auc)) assert_true(p->learned.auc >= 0 && p->learned.auc <= 1);
        fitted += p->learned_state == CL_BACKTEST_FITTED;
        double sum = 0;
        for (int j = 0; j < CL_REPLAY_COMPONENTS; j++)
            sum += p->weights[j];
        assert_near(sum, 1.0, 1e-6);
    }
    assert_int_equal(tested, r.examples);
    assert_true(fitted > 0 || r.periods[r.nperiods - 1].learned_state == CL_BACKTEST_NO_SIGNAL);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    cl_backtest_print(&r, &o, f);
    fclose(f);
    assert_non_null(strstr(out, "| period | train (won) | test (won) | AUC seed |"));
    assert_non_null(strstr(out, "learned factors add value: "));
    free(out);
    cl_backtest_result_free(&r);
    cl_replay_free(h);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_components_by_hand),
        cmocka_unit_test(test_open_at),
        cmocka_unit_test(test_no_leakage),
        cmocka_unit_test(test_column_mapping_and_booleans),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_write_layout),
        cmocka_unit_test(test_backtest_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
