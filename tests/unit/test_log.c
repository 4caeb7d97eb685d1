/* Unit tests for common/log: logfmt and JSON lines, escaping, redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"

static char *capture_buf;
static size_t capture_len;
static FILE *capture;

static int setup(void **state)
{
    capture = open_memstream(&capture_buf, &capture_len);
    cl_log_set_stream(capture);
    return 0;
}

static int teardown(void **state)
{
    cl_log_set_stream(NULL);
    fclose(capture);
    free(capture_buf);
    capture_buf = NULL;
    return 0;
}

static const char *output(void)
{
    fflush(capture);
    return capture_buf;
}

static void test_logfmt_line(void **state)
{
    cl_log_init("join", CL_LOG_INFO, CL_LOG_LOGFMT);
    cl_log(CL_LOG_INFO, "batch_committed", "records=%d error=\"%s\"", 12, "disk \"full\"\nnow");
    const char *out = output();
    assert_non_null(strstr(out, " level=info worker=join event=batch_committed records=12 "));
    assert_non_null(strstr(out, "error=\"disk \\\"full\\\"\\nnow\"\n"));
    assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1); /* one line */
    assert_int_equal(strncmp(out, "ts=", 3), 0);
}

static void test_level_filter(void **state)
{
    cl_log_init("join", CL_LOG_WARN, CL_LOG_LOGFMT);
    cl_log(CL_LOG_INFO, "hidden", NULL);
    cl_log(CL_LOG_ERROR, "shown", NULL);
    const char *out = output();
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "event=shown"));
}

static void test_json_line(void **state)
{
    cl_log_init("refit", CL_LOG_DEBUG, CL_LOG_JSON);
    cl_log(CL_LOG_DEBUG, "fit_done", "n=%d reason=\"%s\"", 5, "a\tb");
    const char *out = output();
    assert_non_null(strstr(out, "\"level\":\"debug\",\"worker\":\"refit\",\"event\":\"fit_done\",\"n\":\"5\",\"reason\":\"a\\u0009b\"}\n"));
}

static void test_redaction_by_key_and_secret(void **state)
{
    cl_log_init("outcomes", CL_LOG_INFO, CL_LOG_LOGFMT);
    cl_log_add_secret("00Dxx!AQ4AQFakeSessionToken");
    cl_log(CL_LOG_INFO, "auth", "access_token=%s url=%s", "abc123",
           "https://x/?sid=00Dxx!AQ4AQFakeSessionToken");
    const char *out = output();
    assert_null(strstr(out, "abc123"));
    assert_null(strstr(out, "FakeSessionToken"));
    assert_non_null(strstr(out, "access_token=[redacted]"));
}

static void test_newest_secrets_kept(void **state)
{
    cl_log_init("outcomes", CL_LOG_INFO, CL_LOG_LOGFMT);
    char secret[32];
    for (int i = 0; i < 40; i++) {
        snprintf(secret, sizeof secret, "token-number-%02d", i);
        cl_log_add_secret(secret);
    }
    cl_log(CL_LOG_INFO, "rotated", "url=%s", "x?sid=token-number-39");
    assert_null(strstr(output(), "token-number-39"));
}

static void test_parse_names(void **state)
{
    cl_log_level l;
    cl_log_format f;
    assert_int_equal(cl_log_parse_level("warn", &l), 0);
    assert_int_equal(l, CL_LOG_WARN);
    assert_int_not_equal(cl_log_parse_level("loud", &l), 0);
    assert_int_equal(cl_log_parse_format("json", &f), 0);
    assert_int_equal(f, CL_LOG_JSON);
    assert_int_not_equal(cl_log_parse_format("xml", &f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_logfmt_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_by_key_and_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newest_secrets_kept, setup, teardown),
        cmocka_unit_test(test_parse_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
