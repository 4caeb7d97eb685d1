/*
 * test_gen.c — closedloop-gen's building blocks and the invariants of a generated
 * history: the PRNG against hand-computed reference values, Salesforce id checksums,
 * option validation, "snapshots only while open", the outcome drawn on the last
 * snapshot's components, counts, and byte-identical files for the same seed.
 */
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
#include "gen/gen.h"
#include "util.h"

static void test_splitmix64_reference(void **state)
{
    (void)state;
    uint64_t s = 0;
    /* First output of splitmix64 from state 0 (Vigna's reference implementation). */
    assert_true(cl_gen_splitmix64(&s) == 0xE220A8397B1DCDAFull);
    assert_true(s == 0x9E3779B97F4A7C15ull);
}

static void test_xoshiro_reference(void **state)
{
    (void)state;
    /* From state {1, 2, 3, 4}, worked by hand from the algorithm:
     * rotl(2*5, 7)*9 = 11520; then s1 = 0 gives 0; then s1 = 262149 gives
     * rotl(1310745, 7)*9 = 1509978240. */
    cl_gen_rng rng = {{1, 2, 3, 4}};
    assert_true(cl_gen_rng_next(&rng) == 11520u);
    assert_true(cl_gen_rng_next(&rng) == 0u);
    assert_true(cl_gen_rng_next(&rng) == 1509978240u);

    cl_gen_rng a, b, c;
    cl_gen_rng_seed(&a, 42);
    cl_gen_rng_seed(&b, 42);
    cl_gen_rng_seed(&c, 43);
    int differs = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = cl_gen_rng_next(&a);
        assert_true(x == cl_gen_rng_next(&b));
        differs |= x != cl_gen_rng_next(&c);
        double u = cl_gen_rng_uniform(&a);
        (void)cl_gen_rng_uniform(&b);
        (void)cl_gen_rng_uniform(&c);
        assert_true(u >= 0.0 && u < 1.0);
    }
    assert_true(differs);
}

static void test_salesforce_ids(void **state)
{
    (void)state;
    char id[19];
    cl_gen_salesforce_id("006", 0, id);
    assert_string_equal(id, "006000000000000AAA");
    /* 'A' in the last position sets bit 4 of the third chunk: 16 -> 'Q'. */
    cl_gen_salesforce_id("006", 10, id);
    assert_string_equal(id, "00600000000000AAAQ");
    /* Lower-case letters set no bit. */
    cl_gen_salesforce_id("001", 61, id);
    assert_string_equal(id, "00100000000000zAAA");
    cl_gen_salesforce_id("005", 62, id);
    assert_string_equal(id, "005000000000010AAA");
    /* Last chunk "0T2PG": upper-case at positions 1, 3, 4 -> 2 + 8 + 16 = 26 -> '0'.
     * T2PG in base 62 is 29*62^3 + 2*62^2 + 25*62 + 16. */
    cl_gen_salesforce_id("006", 29ull * 238328 + 2 * 3844 + 25 * 62 + 16, id);
    assert_string_equal(id, "00600000000T2PGAA0");
    /* Ids sort like the numbers they encode (digits are in ASCII order). */
    char lo[19], hi[19];
    cl_gen_salesforce_id("006", 123456789, lo);
    cl_gen_salesforce_id("006", 123456790, hi);
    assert_true(memcmp(lo, hi, 15) < 0);
}

static void test_parse_weights(void **state)
{
    (void)state;
    double w[CL_GEN_COMPONENTS];
    char err[CL_ERRLEN];
    assert_int_equal(cl_gen_parse_weights("speed_to_close=0.3,largest_deal=0.05,product_mix=0.1,"
                                          "upsell_instances=0.1,win_rate=0.35,recency=0.1",
                                          w, err, sizeof err),
                     CL_OK);
    assert_true(w[0] == 0.3 && w[4] == 0.35);
    assert_int_equal(cl_gen_parse_weights("speed_to_close=1", w, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "largest_deal' is missing"));
    assert_int_equal(cl_gen_parse_weights("speed=1", w, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "unknown component 'speed'"));
    assert_int_equal(
        cl_gen_parse_weights("speed_to_close=0.5,speed_to_close=0.5", w, err, sizeof err),
        CL_EINVAL);
    assert_non_null(strstr(err, "given twice"));
    assert_int_equal(cl_gen_parse_weights("speed_to_close=-0.1,largest_deal=0.05,product_mix=0.1,"
                                          "upsell_instances=0.1,win_rate=0.35,recency=0.5",
                                          w, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(
        cl_gen_parse_weights("speed_to_close=0.3x,largest_deal=0.05", w, err, sizeof err),
        CL_EINVAL);
    assert_int_equal(cl_gen_parse_weights("speed_to_close=0.2,largest_deal=0.05,product_mix=0.1,"
                                          "upsell_instances=0.1,win_rate=0.35,recency=0.1",
                                          w, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "sum to"));
    assert_int_equal(cl_gen_parse_weights("speed_to_close=1,", w, err, sizeof err), CL_EINVAL);
    assert_int_equal(cl_gen_parse_weights("", w, err, sizeof err), CL_EINVAL);
}

static void test_rejects_bad_options(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_gen *g = NULL;
    cl_gen_options o;

    cl_gen_options_init(&o);
    o.months = 0;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);
    assert_null(g);
    assert_non_null(strstr(err, "months 0"));

    cl_gen_options_init(&o);
    o.opportunities = 0;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);

    cl_gen_options_init(&o);
    memcpy(o.currency, "us$", 4);
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "currency"));

    cl_gen_options_init(&o);
    o.true_weights[0] += 0.1;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);

    cl_gen_options_init(&o);
    o.slope = 0.0;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);

    cl_gen_options_init(&o);
    o.reopen_rate = 0.9;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);

    cl_gen_options_init(&o);
    o.run_interval_days = 0;
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_EINVAL);
}

static cl_gen *small_history(uint64_t seed)
{
    cl_gen_options o;
    cl_gen_options_init(&o);
    o.seed = seed;
    o.opportunities = 4000;
    o.months = 9;
    o.reopen_rate = 0.05;
    o.delete_rate = 0.05;
    cl_gen *g = NULL;
    char err[CL_ERRLEN];
    assert_int_equal(cl_gen_create(&o, &g, err, sizeof err), CL_OK);
    return g;
}

static void test_history_invariants(void **state)
{
    (void)state;
    cl_gen *g = small_history(99);
    const cl_gen_counts *c = cl_gen_get_counts(g);
    int32_t end = cl_gen_end_day(g);
    int runs = cl_gen_run_count(g);
    assert_int_equal(runs, c->runs);
    assert_true(cl_gen_run_day(g, runs - 1) < end && cl_gen_run_day(g, runs) >= end);

    int64_t snapshots = 0, won = 0, lost = 0, deleted = 0, open_at_end = 0, reopened = 0;
    for (int64_t i = 0; i < c->opportunities; i++) {
        cl_gen_opportunity_info info;
        assert_int_equal(cl_gen_opportunity(g, i, &info), CL_OK);
        assert_true(info.created_day < info.first_close_day);
        assert_true(info.first_close_day <= info.close_day);
        if (info.reopen_day >= 0) {
            assert_true(info.first_close_day < info.reopen_day && info.reopen_day < info.close_day);
            if (info.reopen_day < end) reopened++;
        }
        if (info.delete_day >= 0) assert_true(info.delete_day > info.close_day);
        int last_seen = -1;
        for (int k = 0; k < runs; k++) {
            cl_gen_snapshot s;
            int open = cl_gen_snapshot_at(g, i, k, &s);
            int32_t day = cl_gen_run_day(g, k);
            int in_gap =
                info.reopen_day >= 0 && day >= info.first_close_day && day <= info.reopen_day;
            int expect_open = day > info.created_day && day < info.close_day && !in_gap;
            assert_int_equal(open, expect_open);
            if (!open) continue;
            snapshots++;
            last_seen = k;
            assert_true(s.stage >= 0 && s.stage < CL_GEN_CLOSED_WON);
            assert_true(s.days_in_stage >= 0 && s.days_in_stage <= day - info.created_day);
            assert_true(s.expected_close_day > day);
            int32_t score = 0;
            for (int j = 0; j < CL_GEN_COMPONENTS; j++) {
                assert_true(s.components[j] <= 100);
                score += cl_gen_seed_weight_hundredths[j] * s.components[j];
            }
            assert_int_equal(score, s.opportunity_score_hundredths);
        }
        /* The outcome was drawn on the last snapshot before the final close (a run past
         * the end of the history, for deals that close after it, is never written). */
        if (info.last_run < runs) assert_int_equal(info.last_run, last_seen);
        if (info.last_run >= 0 && info.last_run < runs) {
            cl_gen_snapshot s;
            assert_int_equal(cl_gen_snapshot_at(g, i, info.last_run, &s), 1);
            assert_memory_equal(s.components, info.components, CL_GEN_COMPONENTS);
        }
        assert_true(info.win_probability > 0.0 && info.win_probability < 1.0);
        if (info.close_day >= end)
            open_at_end++;
        else if (info.delete_day >= 0 && info.delete_day < end)
            deleted++;
        else if (info.won)
            won++;
        else
            lost++;
    }
    assert_int_equal(snapshots, c->snapshots);
    assert_int_equal(won, c->closed_won);
    assert_int_equal(lost, c->closed_lost);
    assert_int_equal(deleted, c->deleted);
    assert_int_equal(open_at_end, c->open_at_end);
    assert_int_equal(reopened, c->reopened);
    assert_true(reopened > 0 && deleted > 0 && open_at_end > 0);
    /* The default true model is tuned to a realistic win rate (~30%). */
    double rate = (double)won / (double)(won + lost);
    assert_true(rate > 0.2 && rate < 0.4);
    cl_gen_free(g);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cl_buf b;
    cl_buf_init(&b, 0);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (cl_buf_append(&b, chunk, n) != CL_OK) break;
    fclose(f);
    *len = b.len;
    if (!b.data) return calloc(1, 1);
    return b.data;
}

static int files_equal(const char *a, const char *b)
{
    size_t la = 0, lb = 0;
    char *da = read_file(a, &la), *db = read_file(b, &lb);
    int equal = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return equal;
}

static size_t count_lines(const char *path)
{
    size_t len = 0, lines = 0;
    char *d = read_file(path, &len);
    assert_non_null(d);
    for (size_t i = 0; i < len; i++)
        lines += d[i] == '\n';
    free(d);
    return lines;
}

static void write_history(uint64_t seed, const char *dir, int force, int expect)
{
    cl_gen *g = small_history(seed);
    char err[CL_ERRLEN] = "";
    int rc = cl_gen_write(g, dir, force, err, sizeof err);
    if (rc != expect) fail_msg("cl_gen_write(%s) = %d, expected %d: %s", dir, rc, expect, err);
    cl_gen_free(g);
}

static void test_files_are_deterministic(void **state)
{
    (void)state;
    char base[] = "/tmp/test_gen_XXXXXX";
    assert_non_null(mkdtemp(base));
    char a[256], b[256], c[256], pa[512], pb[512];
    snprintf(a, sizeof a, "%s/a", base);
    snprintf(b, sizeof b, "%s/b", base);
    snprintf(c, sizeof c, "%s/c", base);
    write_history(5, a, 0, CL_OK);
    write_history(5, b, 0, CL_OK);
    write_history(6, c, 0, CL_OK);

    static const char *const files[] = {"truth.json",
                                        "accounts.csv",
                                        "users.csv",
                                        "outcomes/closed_opportunities.csv",
                                        "outcomes/opportunities.jsonl",
                                        "runs/run-2024-01-01.csv",
                                        "runs/run-2024-06-03.csv",
                                        "runs/run-2024-09-30.csv"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        if (!files_equal(pa, pb)) fail_msg("%s differs between two runs of one seed", files[i]);
        snprintf(pb, sizeof pb, "%s/%s", c, files[i]);
        if (i > 0 && i < 5 && files_equal(pa, pb)) fail_msg("%s ignores the seed", files[i]);
    }

    /* Line counts match the counts. */
    cl_gen *g = small_history(5);
    const cl_gen_counts *counts = cl_gen_get_counts(g);
    size_t rows = 0;
    for (int k = 0; k < cl_gen_run_count(g); k++) {
        int32_t day = cl_gen_run_day(g, k);
        char date[11];
        cl_format_date(day, date);
        snprintf(pa, sizeof pa, "%s/runs/run-%s.csv", a, date);
        rows += count_lines(pa) - 1; /* header */
    }
    assert_int_equal(rows, counts->snapshots);
    snprintf(pa, sizeof pa, "%s/outcomes/closed_opportunities.csv", a);
    assert_int_equal(count_lines(pa) - 1, counts->closed_won + counts->closed_lost);
    snprintf(pa, sizeof pa, "%s/outcomes/opportunities.jsonl", a);
    assert_int_equal(count_lines(pa), counts->record_versions);
    cl_gen_free(g);

    /* An existing history is not overwritten without force; with force it is. */
    write_history(6, a, 0, CL_ECONFLICT);
    write_history(6, a, 1, CL_OK);
    snprintf(pa, sizeof pa, "%s/truth.json", a);
    snprintf(pb, sizeof pb, "%s/truth.json", c);
    assert_true(files_equal(pa, pb));

    /* An output path that cannot be created is an I/O error naming it. */
    cl_gen *h = small_history(5);
    char err[CL_ERRLEN];
    snprintf(pa, sizeof pa, "%s/truth.json/sub", a);
    assert_int_equal(cl_gen_write(h, pa, 0, err, sizeof err), CL_EIO);
    assert_non_null(strstr(err, "truth.json/sub"));
    cl_gen_free(h);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix64_reference),    cmocka_unit_test(test_xoshiro_reference),
        cmocka_unit_test(test_salesforce_ids),          cmocka_unit_test(test_parse_weights),
        cmocka_unit_test(test_rejects_bad_options),     cmocka_unit_test(test_history_invariants),
        cmocka_unit_test(test_files_are_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
