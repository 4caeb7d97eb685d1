/* Unit tests for workers/outcomes/soql: literal escaping (hostile strings stay one
 * literal that denotes exactly the input), datetime literals, URL encoding ('+' must
 * become %2B) and the pull query's shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* Walks a SOQL string literal the way Salesforce's lexer does (a backslash escapes the
 * next character) and returns the offset of the first unescaped closing quote, or -1.
 * A safe literal closes exactly at its last byte: nothing after it is SOQL. */
static long literal_close(const char *lit)
{
    if (lit[0] != '\'') return -1;
    for (long i = 1; lit[i]; i++) {
        if (lit[i] == '\\') {
            if (!lit[i + 1]) return -1;
            i++;
        } else if (lit[i] == '\'') {
            return i;
        }
    }
    return -1;
}

/* The value a literal denotes, decoding the escapes the module writes. */
static void literal_value(const char *lit, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 1; lit[i] && lit[i + 1] && o + 1 < outlen; i++) {
        char c = lit[i];
        if (c == '\\') {
            c = lit[++i];
            switch (c) {
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                unsigned v = 0;
                assert_int_equal(sscanf(lit + i + 1, "%4x", &v), 1);
                c = (char)v;
                i += 4;
                break;
            }
            default:
                break; /* \' \" \\ stand for themselves */
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
}

static void test_hostile_literals_stay_literals(void **state)
{
    static const char *const hostile[] = {
        "x' OR Name != '",
        "x\\' OR Name != \\'", /* pre-escaped quote: the backslash is escaped too */
        "\\",                  /* a lone trailing backslash must not eat the quote */
        "\\\\'",               /* backslashes then a quote */
        "'; DELETE FROM Opportunity --",
        "0065g00000ABCDE' OR Id != null OR Id = '",
        "a\nb\r\nc\td\b\f", /* control characters that end lines in logs */
        "\x01\x02\x1f\x7f",
        "100%_done%", /* LIKE wildcards: literal in '=' comparisons */
        "\"double\" 'single' `back`",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\xa5", /* 2-, 3- and 4-byte UTF-8 */
        "\xe2\x80\xae' OR '1'='1", /* RIGHT-TO-LEFT OVERRIDE then an injection */
        "",
    };
    cl_buf b;
    cl_buf_init(&b, 0);
    char err[CL_ERRLEN], value[256];
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        cl_buf_reset(&b);
        assert_int_equal(cl_soql_append_string_literal(&b, hostile[i], err, sizeof err), CL_OK);
        /* One literal, closed at its last byte; no raw control character inside. */
        assert_int_equal(literal_close(b.data), (long)b.len - 1);
        for (size_t j = 0; j < b.len; j++)
            assert_true((unsigned char)b.data[j] >= 0x20);
        /* And it denotes exactly the input. */
        literal_value(b.data, value, sizeof value);
        assert_string_equal(value, hostile[i]);
    }
    cl_buf_reset(&b);
    assert_int_equal(cl_soql_append_string_literal(&b, "100%_done", err, sizeof err), CL_OK);
    assert_string_equal(b.data, "'100%_done'");
    cl_buf_reset(&b);
    assert_int_equal(cl_soql_append_string_literal(&b, "\\", err, sizeof err), CL_OK);
    assert_string_equal(b.data, "'\\\\'");
    cl_buf_free(&b);
}

static void test_malformed_utf8_and_length_are_rejected(void **state)
{
    static const char *const bad[] = {
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80",
        "\x80",         /* continuation byte alone */
        "ok' \xe2\x80", /* truncated sequence at the end */
        "\xff' OR '",
    };
    cl_buf b;
    cl_buf_init(&b, 0);
    char err[CL_ERRLEN];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(cl_soql_append_string_literal(&b, bad[i], err, sizeof err), CL_EINVAL);
        assert_non_null(strstr(err, "UTF-8"));
    }
    char big[4098];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(cl_soql_append_string_literal(&b, big, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "longer than 4096"));
    big[4096] = '\0';
    cl_buf_reset(&b);
    assert_int_equal(cl_soql_append_string_literal(&b, big, err, sizeof err), CL_OK);
    assert_int_equal(b.len, 4098);
    cl_buf_free(&b);
}

static void test_url_encoding_of_hostile_query(void **state)
{
    /* Whatever a query holds, the encoded form has only unreserved characters and
     * %XX, so nothing can end the q= parameter or add another. */
    const char *q = "SELECT Id FROM Opportunity WHERE Id = 'x\\' OR Name != \\'' AND "
                    "Amount > 1e+3 #frag&q=other%00\r\n\xc3\xa9";
    cl_buf b;
    cl_buf_init(&b, 0);
    assert_int_equal(cl_url_encode_append(&b, q, strlen(q)), CL_OK);
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c == '%') {
            assert_true(i + 2 < b.len);
            assert_true(strchr("0123456789ABCDEF", b.data[i + 1]) && b.data[i + 1]);
            assert_true(strchr("0123456789ABCDEF", b.data[i + 2]) && b.data[i + 2]);
            i += 2;
        } else {
            assert_true((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || strchr("-._~", c));
        }
    }
    assert_non_null(strstr(b.data, "1e%2B3"));
    assert_non_null(strstr(b.data, "%23frag%26q%3Dother%2500%0D%0A%C3%A9"));
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
        cmocka_unit_test(test_hostile_literals_stay_literals),
        cmocka_unit_test(test_malformed_utf8_and_length_are_rejected),
        cmocka_unit_test(test_url_encoding_of_hostile_query),
        cmocka_unit_test(test_datetime_literal_is_utc_z),
        cmocka_unit_test(test_url_encoding),
        cmocka_unit_test(test_pull_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
