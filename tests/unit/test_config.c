/* Unit tests for common/config: precedence, errors naming key/source/line, kafka passthrough. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "log.h"

static const cl_option test_options[] = {
    {"join.batch.size", CL_OPT_INT, "500", "Records per LMDB transaction.", 0, 1, 100000},
    {"join.ratio", CL_OPT_DOUBLE, "0.5", "A ratio.", 0, 0, 1},
    {"join.enabled", CL_OPT_BOOL, "false", "A switch."},
    {"salesforce.client.secret", CL_OPT_STRING, NULL, "Secret.", CL_OPT_SECRET},
    {NULL},
};

static cl_config *make(void)
{
    static const cl_option *const tables[] = {test_options, NULL};
    return cl_config_new("closedloop-join", "Test program.", tables);
}

static char *write_file(const char *text)
{
    static char path[] = "/tmp/cl-test-config-XXXXXX";
    strcpy(path, "/tmp/cl-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void **state)
{
    cl_config *cfg = make();
    char err[CL_ERRLEN];
    char *argv[] = {"closedloop-join", NULL};
    assert_int_equal(cl_config_load(cfg, 1, argv, err, sizeof err), CL_OK);
    assert_int_equal(cl_config_int(cfg, "join.batch.size"), 500);
    assert_true(cl_config_double(cfg, "join.ratio") == 0.5);
    assert_int_equal(cl_config_bool(cfg, "join.enabled"), 0);
    assert_string_equal(cl_config_str(cfg, "brokers"), "127.0.0.1:9092");
    assert_string_equal(cl_config_source(cfg, "brokers"), "default");
    assert_string_equal(cl_config_topic(cfg, "labeled"), "closedloop.labeled");
    cl_config_free(cfg);
}

static void test_precedence_file_env_flag(void **state)
{
    char *path = write_file("# comment\n\njoin.batch.size = 10\njoin.ratio=0.25\n"
                            "topic.prefix = \"acme.\"\nkafka.acks = all\n");
    setenv("CLOSEDLOOP_JOIN_BATCH_SIZE", "20", 1);
    setenv("CLOSEDLOOP_KAFKA_LINGER_MS", "7", 1);
    cl_config *cfg = make();
    char err[CL_ERRLEN];
    char *argv[] = {"closedloop-join", "--config", path, "--join.batch.size=30", "--join.enabled",
                    "-X", "compression.codec=lz4", "input.csv", NULL};
    assert_int_equal(cl_config_load(cfg, 8, argv, err, sizeof err), CL_OK);
    unsetenv("CLOSEDLOOP_JOIN_BATCH_SIZE");
    unsetenv("CLOSEDLOOP_KAFKA_LINGER_MS");
    assert_int_equal(cl_config_int(cfg, "join.batch.size"), 30); /* flag wins */
    assert_string_equal(cl_config_source(cfg, "join.batch.size"), "flag --join.batch.size");
    assert_true(cl_config_double(cfg, "join.ratio") == 0.25);     /* file */
    assert_string_equal(cl_config_topic(cfg, "weights"), "acme.weights");
    assert_int_equal(cl_config_bool(cfg, "join.enabled"), 1);
    assert_string_equal(cl_config_str(cfg, "kafka.linger.ms"), "7");
    assert_string_equal(cl_config_str(cfg, "kafka.compression.codec"), "lz4");
    assert_string_equal(cl_config_str(cfg, "kafka.acks"), "all");
    char **args;
    assert_int_equal(cl_config_args(cfg, &args), 1);
    assert_string_equal(args[0], "input.csv");
    unlink(path);
    cl_config_free(cfg);
}

static void test_unknown_key_names_file_and_line(void **state)
{
    char *path = write_file("join.batch.size = 10\n\njoin.bach.size = 3\n");
    cl_config *cfg = make();
    char err[CL_ERRLEN];
    assert_int_equal(cl_config_load_file(cfg, path, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "join.bach.size"));
    unlink(path);
    cl_config_free(cfg);
}

static void test_bad_values(void **state)
{
    cl_config *cfg = make();
    char err[CL_ERRLEN];
    char *argv1[] = {"closedloop-join", "--join.batch.size=abc", NULL};
    assert_int_equal(cl_config_load(cfg, 2, argv1, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "flag --join.batch.size"));
    assert_non_null(strstr(err, "not an integer"));
    char *argv2[] = {"closedloop-join", "--join.ratio=1.5", NULL};
    assert_int_equal(cl_config_load(cfg, 2, argv2, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "outside the allowed range"));
    char *argv3[] = {"closedloop-join", "-X", "no.such.property=1", NULL};
    assert_int_equal(cl_config_load(cfg, 3, argv3, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "kafka.no.such.property"));
    char *argv4[] = {"closedloop-join", "--log.level=loud", NULL};
    assert_int_equal(cl_config_load(cfg, 2, argv4, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "log.level"));
    assert_int_equal(cl_config_load_text(cfg, "t", "novalue\n", 8, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "line 1"));
    assert_int_equal(cl_config_load_text(cfg, "t", "a = \"open\n", 10, err, sizeof err), CL_EINVAL);
    cl_config_free(cfg);
}

static void test_secret_never_printed(void **state)
{
    cl_config *cfg = make();
    char err[CL_ERRLEN];
    assert_int_equal(cl_config_set(cfg, "salesforce.client.secret", "s3cr3t-value", "test", err,
                                   sizeof err),
                     CL_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cl_config_print(cfg, f);
    cl_log_set_stream(f);
    cl_log(CL_LOG_ERROR, "oops", "detail=\"%s\"", "leaked s3cr3t-value here");
    cl_log_set_stream(NULL);
    fclose(f);
    assert_null(strstr(buf, "s3cr3t-value"));
    assert_non_null(strstr(buf, "salesforce.client.secret = [redacted]"));
    free(buf);
    cl_config_free(cfg);
}

static void test_help_generated_from_table(void **state)
{
    cl_config *cfg = make();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cl_config_print_help(cfg, f);
    fclose(f);
    assert_non_null(strstr(buf, "--join.batch.size=<integer>"));
    assert_non_null(strstr(buf, "env CLOSEDLOOP_JOIN_BATCH_SIZE; default 500; range [1, 100000]"));
    assert_non_null(strstr(buf, "--brokers=<string>"));
    free(buf);
    cl_config_free(cfg);
}

extern char **environ;

/* The test run exports CLOSEDLOOP_BROKERS and friends for the integration tests; these
 * tests define their own environment, so start from none. */
static void clear_closedloop_env(void)
{
    for (;;) {
        char **ep = environ;
        while (*ep && strncmp(*ep, "CLOSEDLOOP_", 11) != 0) ep++;
        if (!*ep) return;
        char name[256];
        const char *eq = strchr(*ep, '=');
        size_t n = eq ? (size_t)(eq - *ep) : strlen(*ep);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, *ep, n);
        name[n] = '\0';
        unsetenv(name);
    }
}

int main(void)
{
    clear_closedloop_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence_file_env_flag),
        cmocka_unit_test(test_unknown_key_names_file_and_line),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_secret_never_printed),
        cmocka_unit_test(test_help_generated_from_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
