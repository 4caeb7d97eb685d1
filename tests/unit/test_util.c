/* Unit tests for common/util: checked parsing, dates, timestamps, bounded buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util.h"

static void test_parse_int64(void **state)
{
    int64_t v;
    assert_int_equal(cl_parse_int64("42", &v), CL_OK);
    assert_int_equal(v, 42);
    assert_int_equal(cl_parse_int64(" -7 ", &v), CL_OK);
    assert_int_equal(v, -7);
    assert_int_equal(cl_parse_int64("", &v), CL_EINVAL);
    assert_int_equal(cl_parse_int64("12abc", &v), CL_EINVAL);
    assert_int_equal(cl_parse_int64("99999999999999999999", &v), CL_EINVAL);
    assert_int_equal(cl_parse_int64(NULL, &v), CL_EINVAL);
}

static void test_parse_double(void **state)
{
    double d;
    assert_int_equal(cl_parse_double("0.25", &d), CL_OK);
    assert_true(d == 0.25);
    assert_int_equal(cl_parse_double("1e3", &d), CL_OK);
    assert_true(d == 1000.0);
    assert_int_equal(cl_parse_double("nan", &d), CL_EINVAL);
    assert_int_equal(cl_parse_double("inf", &d), CL_EINVAL);
    assert_int_equal(cl_parse_double("1e999", &d), CL_EINVAL);
    assert_int_equal(cl_parse_double("3,5", &d), CL_EINVAL);
}

static void test_parse_bool(void **state)
{
    int b;
    assert_int_equal(cl_parse_bool("YES", &b), CL_OK);
    assert_int_equal(b, 1);
    assert_int_equal(cl_parse_bool("off", &b), CL_OK);
    assert_int_equal(b, 0);
    assert_int_equal(cl_parse_bool("maybe", &b), CL_EINVAL);
}

static void test_dates(void **state)
{
    int32_t d;
    char out[11];
    assert_int_equal(cl_parse_date("1970-01-01", &d), CL_OK);
    assert_int_equal(d, 0);
    assert_int_equal(cl_parse_date("2000-03-01", &d), CL_OK);
    assert_int_equal(d, 11017); /* 30 years incl. 7 leap days + Jan 31 + Feb 29 */
    cl_format_date(d, out);
    assert_string_equal(out, "2000-03-01");
    assert_int_equal(cl_parse_date("1969-12-31", &d), CL_OK);
    assert_int_equal(d, -1);
    assert_int_equal(cl_parse_date("2023-02-29", &d), CL_EINVAL);
    assert_int_equal(cl_parse_date("2024-02-29", &d), CL_OK);
    assert_int_equal(cl_parse_date("2024-13-01", &d), CL_EINVAL);
    assert_int_equal(cl_parse_date("2024-1-01", &d), CL_EINVAL);
    assert_int_equal(cl_parse_date("2024-01-01x", &d), CL_EINVAL);
}

static void test_timestamps(void **state)
{
    int64_t ms;
    char out[32];
    /* Salesforce's own format, +0000 without a colon. 2013-05-20 = day 15845. */
    assert_int_equal(cl_parse_timestamp("2013-05-20T20:49:32.000+0000", &ms), CL_OK);
    assert_true(ms == (15845LL * 86400 + 20 * 3600 + 49 * 60 + 32) * 1000);
    cl_format_timestamp(ms, out);
    assert_string_equal(out, "2013-05-20T20:49:32.000Z");
    int64_t ms2;
    assert_int_equal(cl_parse_timestamp("2013-05-20T22:49:32.000+02:00", &ms2), CL_OK);
    assert_true(ms == ms2);
    assert_int_equal(cl_parse_timestamp("2013-05-20T20:49:32.5Z", &ms2), CL_OK);
    assert_true(ms2 == ms + 500);
    assert_int_equal(cl_parse_timestamp("2013-05-20", &ms2), CL_OK);
    assert_true(ms2 == 15845LL * 86400000);
    assert_int_equal(cl_parse_timestamp("2013-05-20T25:00:00Z", &ms2), CL_EINVAL);
    assert_int_equal(cl_parse_timestamp("2013-05-20T20:49:32.000+0000junk", &ms2), CL_EINVAL);
    cl_format_timestamp(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
}

static void test_buf_limit(void **state)
{
    cl_buf b;
    cl_buf_init(&b, 10);
    assert_int_equal(cl_buf_append(&b, "hello", 5), CL_OK);
    assert_int_equal(cl_buf_printf(&b, "%d", 1234), CL_OK);
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(cl_buf_append(&b, "xy", 2), CL_ENOMEM);
    assert_int_equal(b.len, 9); /* nothing half-appended */
    cl_buf_reset(&b);
    assert_int_equal(b.len, 0);
    cl_buf_free(&b);
}

static void test_strlcpy(void **state)
{
    char small[4];
    assert_int_equal(cl_strlcpy(small, "abc", sizeof small), CL_OK);
    assert_int_equal(cl_strlcpy(small, "abcd", sizeof small), CL_EINVAL);
    assert_string_equal(small, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int64), cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_parse_bool),  cmocka_unit_test(test_dates),
        cmocka_unit_test(test_timestamps),  cmocka_unit_test(test_buf_limit),
        cmocka_unit_test(test_strlcpy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
