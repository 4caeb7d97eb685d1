/* Unit tests for workers/outcomes/soql: literal escaping, datetime literals, URL
 * encoding ('+' must become %2B) and the pull query's shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "outcomes/soql.h"

static void test_string_literal_escapes(void **state)
{
    cl_buf b;
    cl_buf_init(&b, 0);
    char err[CL_ERRLEN];
    assert_int_equal(cl_soql_append_string_literal(&b, "O'Brien \"x\" \\ \n\t", err, sizeof err),
                     CL_OK);
    assert_string_equal(b.data, "'O\\'Brien \\\"x\\\" \\\\ \\n\\t'");
    cl_buf_reset(&b);
    /* An injection attempt stays inside the literal. */
    assert_int_equal(cl_soql_append_string_literal(&b, "x' OR Id != '", err, sizeof err), CL_OK);
    assert_string_equal(b.data, "'x\\' OR Id != \\''");
    cl_buf_reset(&b);
    assert_int_equal(cl_soql_append_string_literal(&b, "caf\xc3\xa9 \x01", err, sizeof err), CL_OK);
    assert_string_equal(b.data, "'caf\xc3\xa9 \\u0001'");
    cl_buf_reset(&b);
    assert_int_equal(cl_soql_append_string_literal(&b, "bad \xc3", err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "UTF-8"));
    assert_int_equal(cl_soql_append_string_literal(&b, "\xc0\xaf", err, sizeof err), CL_EINVAL);
    cl_buf_free(&b);
}

static void test_datetime_literal_is_utc_z(void **state)
{
    char out[32];
    cl_soql_format_datetime(1369082972000LL, out); /* 2013-05-20T20:49:32Z */
    assert_string_equal(out, "2013-05-20T20:49:32Z");
    cl_soql_format_datetime(1369082972999LL, out); /* milliseconds are truncated */
    assert_string_equal(out, "2013-05-20T20:49:32Z");
    cl_soql_format_datetime(-1, out); /* floor, not toward zero */
    assert_string_equal(out, "1969-12-31T23:59:59Z");
}

static void test_url_encoding(void **state)
{
    cl_buf b;
    cl_buf_init(&b, 0);
    const char *in = "a+b c/d=e&f~g.h_i-j'\xc3\xa9";
    assert_int_equal(cl_url_encode_append(&b, in, strlen(in)), CL_OK);
    assert_string_equal(b.data, "a%2Bb%20c%2Fd%3De%26f~g.h_i-j%27%C3%A9");
    cl_buf_free(&b);
}

static void test_pull_query(void **state)
{
    cl_buf b;
    cl_buf_init(&b, 0);
    char err[CL_ERRLEN];
    cl_soql_pull p = {
        .modstamp_field = NULL, .from_ms = 1700000000000LL, .before_ms = 1700003600000LL};
    assert_int_equal(cl_soql_build_pull(&p, &b, err, sizeof err), CL_OK);
    assert_string_equal(
        b.data, "SELECT Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
                "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource FROM Opportunity "
                "WHERE SystemModstamp >= 2023-11-14T22:13:20Z AND SystemModstamp < "
                "2023-11-14T23:13:20Z ORDER BY SystemModstamp ASC, Id ASC");
    cl_buf_reset(&b);
    p.modstamp_field = "LastModifiedDate";
    p.include_currency = 1;
    p.extra_where = "RecordType.Name = 'Sales'";
    assert_int_equal(cl_soql_build_pull(&p, &b, err, sizeof err), CL_OK);
    assert_non_null(strstr(b.data, ",CurrencyIsoCode FROM"));
    assert_non_null(strstr(b.data, "LastModifiedDate >= 2023-11-14T22:13:20Z AND "
                                   "LastModifiedDate < 2023-11-14T23:13:20Z AND "
                                   "(RecordType.Name = 'Sales') ORDER BY LastModifiedDate ASC"));
    cl_buf_reset(&b);
    p.modstamp_field = "CreatedDate; DELETE";
    assert_int_equal(cl_soql_build_pull(&p, &b, err, sizeof err), CL_EINVAL);
    p.modstamp_field = NULL;
    p.before_ms = p.from_ms;
    assert_int_equal(cl_soql_build_pull(&p, &b, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "empty pull window"));
    cl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_literal_escapes),
        cmocka_unit_test(test_datetime_literal_is_utc_z),
        cmocka_unit_test(test_url_encoding),
        cmocka_unit_test(test_pull_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
