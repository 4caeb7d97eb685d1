/*
 * Unit tests for common/retry: every delay within its bounds for each jitter, jitter
 * spreading over its whole range, the attempt limit, the deadline, Retry-After as a
 * capped floor, its parser, determinism under a seed, and the classification of HTTP
 * statuses and curl codes. Time is passed in, so nothing here sleeps for long.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "retry.h"

static void test_ceiling_doubles_to_the_cap_without_overflow(void **state)
{
    cl_retry_policy p = {.base_ms = 100, .max_ms = 1000};
    const int64_t want[] = {100, 100, 200, 400, 800, 1000, 1000};
    for (int attempt = 0; attempt <= 6; attempt++)
        assert_int_equal(cl_retry_ceiling_ms(&p, attempt), want[attempt]);
    assert_int_equal(cl_retry_ceiling_ms(&p, 1 << 30), 1000);

    cl_retry_policy huge = {.base_ms = INT64_MAX / 2 + 1, .max_ms = INT64_MAX};
    assert_int_equal(cl_retry_ceiling_ms(&huge, 2), INT64_MAX);
    assert_int_equal(cl_retry_ceiling_ms(&huge, 1 << 30), INT64_MAX);

    /* Defaults, and a cap below the base is raised to it. */
    cl_retry_policy zero = {0};
    assert_int_equal(cl_retry_ceiling_ms(&zero, 1), CL_RETRY_DEFAULT_BASE_MS);
    assert_int_equal(cl_retry_ceiling_ms(&zero, 60), CL_RETRY_DEFAULT_MAX_MS);
    cl_retry_policy inverted = {.base_ms = 500, .max_ms = 10};
    assert_int_equal(cl_retry_ceiling_ms(&inverted, 5), 500);
}

static void test_full_jitter_within_bounds_and_spread(void **state)
{
    cl_retry_policy p = {.max_attempts = 10, .base_ms = 50, .max_ms = 3000};
    uint64_t rng = 7;
    for (int attempt = 1; attempt <= 12; attempt++) {
        int64_t ceiling = cl_retry_ceiling_ms(&p, attempt);
        int64_t lo = INT64_MAX, hi = -1;
        for (int i = 0; i < 5000; i++) {
            int64_t ms = cl_retry_backoff_ms(&p, attempt, &rng);
            assert_true(ms >= 0 && ms <= ceiling);
            if (ms < lo) lo = ms;
            if (ms > hi) hi = ms;
        }
        /* Full jitter covers the whole range: both ends are reached closely. */
        assert_true(lo <= ceiling / 20);
        assert_true(hi >= ceiling - ceiling / 20);
    }
}

static void test_decorrelated_jitter_within_bounds(void **state)
{
    cl_retry_policy p = {.max_attempts = 50,
                         .base_ms = 100,
                         .max_ms = 20000,
                         .jitter = CL_RETRY_JITTER_DECORRELATED};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        cl_retry r;
        cl_retry_begin(&r, &p, seed, 0);
        int64_t prev = p.base_ms, delay;
        for (int i = 1; i < p.max_attempts; i++) {
            assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_OK);
            int64_t hi = prev * 3 < p.max_ms ? prev * 3 : p.max_ms;
            assert_true(delay >= p.base_ms);
            assert_true(delay <= hi);
            prev = delay;
        }
        assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_EAGAIN);
    }
    /* The stateless form stays within [base, max] too. */
    uint64_t rng = 3;
    for (int attempt = 1; attempt <= 20; attempt++) {
        int64_t ms = cl_retry_backoff_ms(&p, attempt, &rng);
        assert_true(ms >= p.base_ms && ms <= p.max_ms);
    }
}

static void test_no_jitter_is_the_ceiling(void **state)
{
    cl_retry_policy p = {
        .max_attempts = 6, .base_ms = 10, .max_ms = 100, .jitter = CL_RETRY_JITTER_NONE};
    cl_retry r;
    cl_retry_begin(&r, &p, 1, 0);
    const int64_t want[] = {10, 20, 40, 80, 100};
    int64_t delay;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_OK);
        assert_int_equal(delay, want[i]);
    }
    assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_EAGAIN);
    assert_int_equal(delay, 0);
}

static void test_attempt_limit(void **state)
{
    cl_retry_policy p = {.max_attempts = 4, .base_ms = 10, .max_ms = 100};
    cl_retry r;
    int64_t delay;
    cl_retry_begin(&r, &p, 99, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_OK);
    assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_EAGAIN);
    assert_int_equal(r.attempts, 4);

    /* max_attempts below 1 means one try and no retry. */
    cl_retry_policy once = {.max_attempts = 0};
    cl_retry_begin(&r, &once, 99, 0);
    assert_int_equal(cl_retry_next(&r, 0, -1, &delay), CL_EAGAIN);
}

static void test_deadline_is_respected(void **state)
{
    cl_retry_policy fixed = {.max_attempts = 100,
                             .base_ms = 400,
                             .max_ms = 10000,
                             .deadline_ms = 1000,
                             .jitter = CL_RETRY_JITTER_NONE};
    cl_retry r;
    int64_t delay;
    cl_retry_begin(&r, &fixed, 1, 5000);
    assert_int_equal(cl_retry_remaining_ms(&r, 5000), 1000);
    assert_int_equal(cl_retry_next(&r, 5000, -1, &delay), CL_OK);
    assert_int_equal(delay, 400);
    /* At 5450, 550 ms are left and the next delay is 800: give up, do not oversleep. */
    assert_int_equal(cl_retry_remaining_ms(&r, 5450), 550);
    assert_int_equal(cl_retry_next(&r, 5450, -1, &delay), CL_ETIMEOUT);
    assert_int_equal(delay, 0);
    assert_int_equal(cl_retry_remaining_ms(&r, 7000), 0);
    /* A clock before the start never extends the budget. */
    assert_int_equal(cl_retry_remaining_ms(&r, 0), 1000);

    /* With random delays and tries that take time, no retry ever starts late. */
    cl_retry_policy p = {.max_attempts = 1000, .base_ms = 50, .max_ms = 2000, .deadline_ms = 7000};
    for (uint64_t seed = 1; seed <= 300; seed++) {
        int64_t now = 100000, start = now;
        cl_retry_begin(&r, &p, seed, now);
        int rc;
        while ((rc = cl_retry_next(&r, now, -1, &delay)) == CL_OK) {
            now += delay;
            assert_true(now <= start + p.deadline_ms);
            now += 120; /* the try itself */
        }
        assert_int_equal(rc, CL_ETIMEOUT);
    }

    cl_retry_policy none = {.max_attempts = 3};
    cl_retry_begin(&r, &none, 1, 0);
    assert_true(cl_retry_remaining_ms(&r, INT64_MAX / 2) == INT64_MAX);
}

static void test_retry_after_is_a_capped_floor(void **state)
{
    cl_retry_policy p = {.max_attempts = 10, .base_ms = 100, .max_ms = 5000};
    cl_retry r;
    int64_t delay;
    for (uint64_t seed = 1; seed <= 100; seed++) {
        cl_retry_begin(&r, &p, seed, 0);
        /* First retry: backoff is at most 100, so the server's 2 s wins. */
        assert_int_equal(cl_retry_next(&r, 0, 2000, &delay), CL_OK);
        assert_int_equal(delay, 2000);
        /* A Retry-After of an hour is capped at max_ms (the default cap). */
        assert_int_equal(cl_retry_next(&r, 0, 3600 * 1000, &delay), CL_OK);
        assert_int_equal(delay, 5000);
        /* Retry-After 0 leaves the backoff as it is. */
        assert_int_equal(cl_retry_next(&r, 0, 0, &delay), CL_OK);
        assert_true(delay >= 0 && delay <= cl_retry_ceiling_ms(&p, 3));
    }
    cl_retry_policy capped = {
        .max_attempts = 3, .base_ms = 100, .max_ms = 5000, .retry_after_max_ms = 30000};
    cl_retry_begin(&r, &capped, 1, 0);
    assert_int_equal(cl_retry_next(&r, 0, 20000, &delay), CL_OK);
    assert_int_equal(delay, 20000);
    assert_int_equal(cl_retry_next(&r, 0, 90000, &delay), CL_OK);
    assert_int_equal(delay, 30000);

    /* The deadline still wins over a server that asks for more than is left. */
    cl_retry_policy deadline = {.max_attempts = 3, .base_ms = 10, .deadline_ms = 1000};
    cl_retry_begin(&r, &deadline, 1, 0);
    assert_int_equal(cl_retry_next(&r, 0, 5000, &delay), CL_ETIMEOUT);
}

static void test_deterministic_under_a_seed(void **state)
{
    cl_retry_policy p = {.max_attempts = 20, .base_ms = 10, .max_ms = 100000};
    cl_retry a, b, c;
    cl_retry_begin(&a, &p, 12345, 0);
    cl_retry_begin(&b, &p, 12345, 0);
    cl_retry_begin(&c, &p, 54321, 0);
    int differ = 0;
    for (int i = 1; i < p.max_attempts; i++) {
        int64_t da, db, dc;
        assert_int_equal(cl_retry_next(&a, 0, -1, &da), CL_OK);
        assert_int_equal(cl_retry_next(&b, 0, -1, &db), CL_OK);
        assert_int_equal(cl_retry_next(&c, 0, -1, &dc), CL_OK);
        assert_int_equal(da, db);
        differ += da != dc;
    }
    assert_true(differ > 10);

    uint64_t r1 = 42, r2 = 42;
    for (int attempt = 1; attempt < 10; attempt++)
        assert_int_equal(cl_retry_backoff_ms(&p, attempt, &r1),
                         cl_retry_backoff_ms(&p, attempt, &r2));
    /* A zero state is replaced, not stuck at zero. */
    uint64_t zero = 0;
    cl_retry_backoff_ms(&p, 1, &zero);
    assert_true(zero != 0);
}

static void test_parse_retry_after(void **state)
{
    int64_t ms;
    assert_int_equal(cl_retry_parse_retry_after("120", 0, &ms), CL_OK);
    assert_int_equal(ms, 120000);
    assert_int_equal(cl_retry_parse_retry_after(" 5\r\n", 0, &ms), CL_OK);
    assert_int_equal(ms, 5000);
    assert_int_equal(cl_retry_parse_retry_after("0", 0, &ms), CL_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(cl_retry_parse_retry_after("99999999999999999999999", 0, &ms), CL_OK);
    assert_int_equal(ms, 366LL * 24 * 3600 * 1000);
    assert_int_equal(cl_retry_parse_retry_after("999999999999", 0, &ms), CL_OK);
    assert_int_equal(ms, 366LL * 24 * 3600 * 1000);

    const char *bad[] = {"",
                         "  ",
                         "-1",
                         "1.5",
                         "12s",
                         "abc",
                         "1 2",
                         "+3",
                         "Sunday, 06-Nov-94 08:49:37 GMT",
                         "Sun Nov  6 08:49:37 1994",
                         "Sun, 06 nov 1994 08:49:37 GMT",
                         "Sun, 31 Feb 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 24:49:37 GMT",
                         "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Xyz, 06 Nov 1994 08:49:37 GMT",
                         "Sun, 6 Nov 1994 08:49:37 GMT"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = -7;
        assert_int_equal(cl_retry_parse_retry_after(bad[i], 0, &ms), CL_EINVAL);
        assert_int_equal(ms, -7);
    }
    assert_int_equal(cl_retry_parse_retry_after(NULL, 0, &ms), CL_EINVAL);

    /* Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch. */
    const int64_t at = 784111777LL * 1000;
    assert_int_equal(cl_retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at - 10000, &ms),
                     CL_OK);
    assert_int_equal(ms, 10000);
    assert_int_equal(cl_retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + 1, &ms),
                     CL_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(cl_retry_parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 0, &ms), CL_OK);
    assert_int_equal(ms, 366LL * 24 * 3600 * 1000); /* decades away: clamped */
}

static void test_http_status_classification(void **state)
{
    const long transient[] = {408, 425, 429, 500, 502, 503, 504, 507, 599};
    const long permanent[] = {0,   -1,  100, 200, 204, 301, 304, 400, 401,
                              403, 404, 409, 413, 422, 431, 501, 600, 999};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        assert_true(cl_retry_http_status_transient(transient[i]));
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
        assert_false(cl_retry_http_status_transient(permanent[i]));
}

static void test_curl_classification(void **state)
{
    const int transient[] = {
        CURLE_OPERATION_TIMEDOUT,    CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST,
        CURLE_COULDNT_RESOLVE_PROXY, CURLE_SEND_ERROR,      CURLE_RECV_ERROR,
        CURLE_GOT_NOTHING,           CURLE_PARTIAL_FILE,    CURLE_HTTP2,
        CURLE_HTTP2_STREAM};
    const int permanent[] = {CURLE_OK,
                             CURLE_URL_MALFORMAT,
                             CURLE_UNSUPPORTED_PROTOCOL,
                             CURLE_PEER_FAILED_VERIFICATION,
                             CURLE_SSL_CERTPROBLEM,
                             CURLE_SSL_CACERT_BADFILE,
                             CURLE_WRITE_ERROR,
                             CURLE_ABORTED_BY_CALLBACK,
                             CURLE_LOGIN_DENIED,
                             CURLE_TOO_MANY_REDIRECTS,
                             -1,
                             100000};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        assert_true(cl_retry_curl_transient(transient[i]));
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
        assert_false(cl_retry_curl_transient(permanent[i]));
}

static int stop_calls;
static int stop_on_second_call(void)
{
    return ++stop_calls >= 2;
}

static void test_sleep_stops_on_request(void **state)
{
    assert_int_equal(cl_retry_sleep(0, NULL), CL_OK);
    assert_int_equal(cl_retry_sleep(-5, NULL), CL_OK);
    assert_int_equal(cl_retry_sleep(1, NULL), CL_OK);
    /* An hour's sleep ends at the second check of stop(), one 100 ms slice in. */
    stop_calls = 0;
    assert_int_equal(cl_retry_sleep(3600 * 1000, stop_on_second_call), CL_ESTOP);
    assert_int_equal(stop_calls, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceiling_doubles_to_the_cap_without_overflow),
        cmocka_unit_test(test_full_jitter_within_bounds_and_spread),
        cmocka_unit_test(test_decorrelated_jitter_within_bounds),
        cmocka_unit_test(test_no_jitter_is_the_ceiling),
        cmocka_unit_test(test_attempt_limit),
        cmocka_unit_test(test_deadline_is_respected),
        cmocka_unit_test(test_retry_after_is_a_capped_floor),
        cmocka_unit_test(test_deterministic_under_a_seed),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test(test_http_status_classification),
        cmocka_unit_test(test_curl_classification),
        cmocka_unit_test(test_sleep_stops_on_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
