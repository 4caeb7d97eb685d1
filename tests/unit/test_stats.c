/* Unit tests for common/stats: hand-computed AUC, DeLong, McNemar, calibration and
 * distribution tails. Expected values are worked out in the comments. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "stats.h"

#define CLOSE(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static void test_auc_four_points(void **state)
{
    /* Lost {0.1, 0.4}, won {0.35, 0.8}: of the 4 won/lost pairs, 3 are ordered. */
    double score[] = {0.1, 0.4, 0.35, 0.8};
    uint8_t won[] = {0, 0, 1, 1};
    double auc;
    assert_int_equal(cl_stats_auc(score, won, NULL, 4, &auc, NULL, 0), CL_OK);
    CLOSE(auc, 0.75, 1e-15);
}

static void test_auc_ties_count_half(void **state)
{
    /* Won {1, 3}, lost {1, 2}: (1,1) tie = 0.5, (1,2) = 0, (3,1) = 1, (3,2) = 1 -> 2.5/4. */
    double score[] = {1, 1, 2, 3};
    uint8_t won[] = {0, 1, 0, 1};
    double auc;
    assert_int_equal(cl_stats_auc(score, won, NULL, 4, &auc, NULL, 0), CL_OK);
    CLOSE(auc, 0.625, 1e-15);
}

static void test_auc_weight_equals_duplicate(void **state)
{
    double score[] = {0.2, 0.5, 0.5, 0.9, 0.7};
    uint8_t won[] = {0, 1, 0, 1, 0};
    double weight[] = {1, 2, 1, 1, 1};
    double dup_score[] = {0.2, 0.5, 0.5, 0.9, 0.7, 0.5};
    uint8_t dup_won[] = {0, 1, 0, 1, 0, 1};
    double a, b;
    assert_int_equal(cl_stats_auc(score, won, weight, 5, &a, NULL, 0), CL_OK);
    assert_int_equal(cl_stats_auc(dup_score, dup_won, NULL, 6, &b, NULL, 0), CL_OK);
    CLOSE(a, b, 1e-15);
    /* Won {0.5, 0.5, 0.9} vs lost {0.2, 0.5, 0.7}: 0.5 beats 0.2 and ties 0.5 (1.5 each,
     * twice), 0.9 beats all (3) -> 6/9. */
    CLOSE(a, 6.0 / 9.0, 1e-15);
}

static void test_auc_refuses_degenerate_input(void **state)
{
    double score[] = {0.1, 0.2, NAN};
    uint8_t all_won[] = {1, 1, 1};
    uint8_t mixed[] = {0, 1, 1};
    double auc;
    char err[CL_ERRLEN];
    assert_int_equal(cl_stats_auc(score, all_won, NULL, 2, &auc, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "won and lost"));
    assert_int_equal(cl_stats_auc(score, mixed, NULL, 3, &auc, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "example 2"));
    uint8_t bad_label[] = {0, 2};
    assert_int_equal(cl_stats_auc(score, bad_label, NULL, 2, &auc, err, sizeof err), CL_EINVAL);
    double negative[] = {1, -1};
    assert_int_equal(cl_stats_auc(score, mixed, negative, 2, &auc, err, sizeof err), CL_EINVAL);
}

static void test_histogram_matches_sorted_auc_and_retracts(void **state)
{
    cl_score_hist h;
    assert_int_equal(cl_score_hist_init(&h, 0, 100, 0.01, NULL, 0), CL_OK);
    assert_int_equal(h.nbins, 10001);
    enum { N = 500 };
    double score[N];
    uint8_t won[N];
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        score[i] = (double)((s >> 33) % 10001) / 100.0; /* on the 0.01 grid, with ties */
        won[i] = (uint8_t)(((s >> 20) % 100) < score[i]);
        assert_int_equal(cl_score_hist_add(&h, score[i], won[i], 1, NULL, 0), CL_OK);
    }
    double sorted_auc, hist_auc;
    assert_int_equal(cl_stats_auc(score, won, NULL, N, &sorted_auc, NULL, 0), CL_OK);
    assert_int_equal(cl_score_hist_auc(&h, &hist_auc, NULL, 0), CL_OK);
    CLOSE(hist_auc, sorted_auc, 1e-12);

    /* Adding then retracting an example leaves the AUC exactly as it was. */
    assert_int_equal(cl_score_hist_add(&h, 3.0, 1, 1, NULL, 0), CL_OK);
    double changed;
    assert_int_equal(cl_score_hist_auc(&h, &changed, NULL, 0), CL_OK);
    assert_true(changed != hist_auc);
    assert_int_equal(cl_score_hist_add(&h, 3.0, 1, -1, NULL, 0), CL_OK);
    double restored;
    assert_int_equal(cl_score_hist_auc(&h, &restored, NULL, 0), CL_OK);
    assert_true(restored == hist_auc);

    /* Confusion from the histogram equals confusion from the arrays. */
    cl_confusion a, b;
    assert_int_equal(cl_score_hist_confusion(&h, 70.0, &a, NULL, 0), CL_OK);
    assert_int_equal(cl_stats_confusion(score, won, NULL, N, 70.0, &b, NULL, 0), CL_OK);
    assert_true(a.tp == b.tp && a.fp == b.fp && a.tn == b.tn && a.fn == b.fn);

    /* Out-of-range scores clamp to the end bins; a retraction below zero is refused. */
    assert_int_equal(cl_score_hist_add(&h, 100.4, 1, 1, NULL, 0), CL_OK);
    assert_int_equal(h.won[10000] >= 1, 1);
    assert_int_equal(cl_score_hist_add(&h, NAN, 1, 1, NULL, 0), CL_EINVAL);
    assert_int_equal(cl_score_hist_add(&h, 55.55, 0, -1000, NULL, 0), CL_OK);
    char err[CL_ERRLEN];
    assert_int_equal(cl_score_hist_auc(&h, &changed, err, sizeof err), CL_ECONFLICT);
    assert_non_null(strstr(err, "negative"));
    cl_score_hist_free(&h);

    assert_int_equal(cl_score_hist_init(&h, 0, 100, 0, NULL, 0), CL_EINVAL);
    assert_int_equal(cl_score_hist_init(&h, 0, 100, 1e-9, NULL, 0), CL_EINVAL);
}

static void test_confusion_prf_and_thresholds(void **state)
{
    double score[] = {90, 75, 70, 65, 40, 80, 10};
    uint8_t won[] = {1, 0, 1, 1, 0, 1, 0};
    cl_confusion c;
    /* >= 70: 90 W, 75 L, 70 W, 80 W -> tp 3, fp 1; below: 65 W, 40 L, 10 L -> fn 1, tn 2. */
    assert_int_equal(cl_stats_confusion(score, won, NULL, 7, 70, &c, NULL, 0), CL_OK);
    assert_true(c.tp == 3 && c.fp == 1 && c.fn == 1 && c.tn == 2);
    cl_prf r = cl_stats_prf(&c);
    CLOSE(r.precision, 0.75, 1e-15);
    CLOSE(r.recall, 0.75, 1e-15);
    CLOSE(r.f1, 0.75, 1e-15);

    cl_confusion none = {0, 0, 5, 5};
    r = cl_stats_prf(&none);
    assert_true(r.precision == 0 && r.recall == 0 && r.f1 == 0);

    double thresholds[] = {100, 70, 0, 65.5, 40};
    cl_confusion by[5];
    assert_int_equal(
        cl_stats_confusion_by_threshold(score, won, NULL, 7, thresholds, 5, by, NULL, 0), CL_OK);
    for (int t = 0; t < 5; t++) {
        assert_int_equal(cl_stats_confusion(score, won, NULL, 7, thresholds[t], &c, NULL, 0),
                         CL_OK);
        assert_true(by[t].tp == c.tp && by[t].fp == c.fp && by[t].tn == c.tn &&
                    by[t].fn == c.fn);
    }
}

static void test_brier_log_loss(void **state)
{
    double prob[] = {0.1, 0.9, 0.8, 0.3};
    uint8_t won[] = {0, 1, 1, 0};
    double v;
    /* (0.01 + 0.01 + 0.04 + 0.09) / 4 */
    assert_int_equal(cl_stats_brier(prob, won, NULL, 4, &v, NULL, 0), CL_OK);
    CLOSE(v, 0.0375, 1e-15);
    /* -(ln 0.9 + ln 0.9 + ln 0.8 + ln 0.7) / 4 */
    assert_int_equal(cl_stats_log_loss(prob, won, NULL, 4, &v, NULL, 0), CL_OK);
    CLOSE(v, 0.19763488164214868, 1e-15);
    /* A confident wrong answer is clipped, not infinite. */
    double certain[] = {0.0, 1.0};
    uint8_t wrong[] = {1, 0};
    assert_int_equal(cl_stats_log_loss(certain, wrong, NULL, 2, &v, NULL, 0), CL_OK);
    assert_true(isfinite(v) && v > 30);
    double outside[] = {1.5, 0.5};
    assert_int_equal(cl_stats_brier(outside, wrong, NULL, 2, &v, NULL, 0), CL_EINVAL);
}

static void test_ece_and_bins(void **state)
{
    /* Two bins. Lower: p {0.1, 0.15}, won {0, 1}: mean 0.125, rate 0.5. Upper: p {0.5,
     * 0.8, 0.85}, all won: mean 0.7166.., rate 1 (0.5 sits on the inner edge -> upper).
     * ECE = 2/5·0.375 + 3/5·(1 − 2.15/3) = 0.15 + 0.17. */
    double prob[] = {0.1, 0.15, 0.5, 0.8, 0.85};
    uint8_t won[] = {0, 1, 1, 1, 1};
    cl_calibration_bin bins[2];
    double ece;
    assert_int_equal(cl_stats_ece(prob, won, NULL, 5, 2, &ece, bins, NULL, 0), CL_OK);
    CLOSE(ece, 0.32, 1e-15);
    CLOSE(bins[0].mean_predicted, 0.125, 1e-15);
    CLOSE(bins[0].observed_rate, 0.5, 1e-15);
    CLOSE(bins[0].count, 2, 0);
    CLOSE(bins[1].count, 3, 0);
    CLOSE(bins[1].lo, 0.5, 0);
    CLOSE(bins[1].hi, 1.0, 0);
    assert_int_equal(cl_stats_ece(prob, won, NULL, 5, 0, &ece, NULL, NULL, 0), CL_EINVAL);
}

static void test_delong_by_hand(void **state)
{
    /* A: won {0.9, 0.6}, lost {0.7, 0.2}. V10 = {1, 0.5}, V01 = {0.5, 1}, AUC 0.75.
     * B: won {0.8, 0.3}, lost {0.5, 0.4}. V10 = {1, 0},   V01 = {0.5, 0.5}, AUC 0.5.
     * Differences B − A: V10 {0, −0.5}, V01 {0, −0.5}; each has sample variance 0.125,
     * so Var(Δ) = 0.125/2 + 0.125/2 = 0.125, z = −0.25/√0.125 = −1/√2,
     * p = erfc(1/2). */
    double a[] = {0.9, 0.6, 0.7, 0.2};
    double b[] = {0.8, 0.3, 0.5, 0.4};
    uint8_t won[] = {1, 1, 0, 0};
    cl_delong_result r;
    assert_int_equal(cl_stats_delong(a, b, won, 4, &r, NULL, 0), CL_OK);
    CLOSE(r.auc_a, 0.75, 1e-15);
    CLOSE(r.auc_b, 0.5, 1e-15);
    CLOSE(r.delta, -0.25, 1e-15);
    CLOSE(r.variance, 0.125, 1e-15);
    CLOSE(r.z, -M_SQRT1_2, 1e-14);
    CLOSE(r.p_value, 0.4795001221869535, 1e-14);
    assert_int_equal(r.n_won, 2);
    assert_int_equal(r.n_lost, 2);

    /* Identical scores: no evidence either way. */
    assert_int_equal(cl_stats_delong(a, a, won, 4, &r, NULL, 0), CL_OK);
    assert_true(r.delta == 0 && r.z == 0 && r.p_value == 1);

    uint8_t one_won[] = {1, 0, 0, 0};
    char err[CL_ERRLEN];
    assert_int_equal(cl_stats_delong(a, b, one_won, 4, &r, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "at least 2"));
}

static void test_mcnemar(void **state)
{
    /* b = 3, c = 10: 13 discordant (< 25) -> exact. P(X <= 3 | 13, 1/2) =
     * (1 + 13 + 78 + 286) / 8192, two-sided doubles it. */
    cl_mcnemar_result r = cl_stats_mcnemar(3, 10);
    assert_int_equal(r.exact, 1);
    CLOSE(r.p_value, 2.0 * 378.0 / 8192.0, 1e-15);
    /* Symmetric and capped at 1 when balanced. */
    CLOSE(cl_stats_mcnemar(10, 3).p_value, r.p_value, 0);
    CLOSE(cl_stats_mcnemar(5, 5).p_value, 1.0, 0);
    CLOSE(cl_stats_mcnemar(0, 0).p_value, 1.0, 0);
    /* b = 30, c = 12: chi2 = (|30 − 12| − 1)² / 42 = 289/42, p = erfc(√(289/84)). */
    r = cl_stats_mcnemar(30, 12);
    assert_int_equal(r.exact, 0);
    CLOSE(r.statistic, 289.0 / 42.0, 1e-14);
    CLOSE(r.p_value, 0.008711912962379598, 1e-15);
}

static void test_distributions(void **state)
{
    CLOSE(cl_normal_cdf(1.959963984540054), 0.975, 1e-15);
    CLOSE(cl_normal_cdf(0), 0.5, 0);
    /* The upper tail keeps relative precision far out (1 − cdf would give 0 or noise). */
    assert_true(fabs(cl_normal_sf(8) / 6.220960574271819e-16 - 1) < 1e-12);
    CLOSE(cl_normal_two_sided_p(1.959963984540054), 0.05, 1e-15);
    CLOSE(cl_chi2_sf(3.841458820694124, 1), 0.05, 1e-14);
    CLOSE(cl_chi2_sf(5.991464547107979, 2), 0.05, 1e-14);
    CLOSE(cl_chi2_sf(7.814727903251178, 3), 0.05, 1e-13);     /* continued fraction */
    CLOSE(cl_chi2_sf(18.307038053275146, 10), 0.05, 1e-13);   /* continued fraction */
    /* df = 4, x = 1: Q(2, 1/2) = e^(−1/2)·(1 + 1/2), via the series. */
    CLOSE(cl_chi2_sf(1.0, 4), exp(-0.5) * 1.5, 1e-14);
    CLOSE(cl_chi2_sf(0, 3), 1.0, 0);
    assert_true(isnan(cl_chi2_sf(1, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_four_points),
        cmocka_unit_test(test_auc_ties_count_half),
        cmocka_unit_test(test_auc_weight_equals_duplicate),
        cmocka_unit_test(test_auc_refuses_degenerate_input),
        cmocka_unit_test(test_histogram_matches_sorted_auc_and_retracts),
        cmocka_unit_test(test_confusion_prf_and_thresholds),
        cmocka_unit_test(test_brier_log_loss),
        cmocka_unit_test(test_ece_and_bins),
        cmocka_unit_test(test_delong_by_hand),
        cmocka_unit_test(test_mcnemar),
        cmocka_unit_test(test_distributions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
