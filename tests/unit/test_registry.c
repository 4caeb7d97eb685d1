/*
 * test_registry.c — the schema registry client against tests/fakes/schema_registry.py,
 * started by each test on a random loopback port: register, fetch by id, caches,
 * negative caching, retries on 503, permanent 404, auth (basic and bearer), timeouts,
 * connection errors, and a codec that registers and resolves through it.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "avro.h"
#include "config.h"
#include "registry.h"

typedef struct {
    pid_t pid;
    char url[64];
} fake_registry;

static void fake_start(fake_registry *f, const char *flag, const char *value)
{
    const char *src = getenv("CL_SOURCE_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/fakes/schema_registry.py", src ? src : ".");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (flag)
            execlp("python3", "python3", script, "--port", "0", flag, value, (char *)NULL);
        else
            execlp("python3", "python3", script, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[64] = "";
    int port = 0;
    if (!fgets(line, sizeof line, in) || sscanf(line, "PORT %d", &port) != 1 || port <= 0)
        fail_msg("fake schema registry (%s) did not start: python3 missing or script failed; "
                 "got '%s'",
                 script, line);
    fclose(in);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", port);
}

static void fake_stop(fake_registry *f)
{
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
}

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    return s * n;
}

/* POST a control request to the fake (fault injection). */
static void fake_control(fake_registry *f, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->url, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long code = 0;
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    assert_int_equal(code, 200);
    curl_easy_cleanup(c);
}

static cl_registry *client(const char *url, int retries, int64_t timeout_ms, const char *basic,
                           const char *bearer)
{
    char err[CL_ERRLEN];
    cl_registry_opts o = {.url = url,
                          .retries = retries,
                          .timeout_ms = timeout_ms,
                          .backoff_initial_ms = 10,
                          .backoff_max_ms = 40,
                          .basic_auth = basic,
                          .bearer_token = bearer,
                          .negative_cache_ms = 60000};
    cl_registry *r;
    if (cl_registry_new(&r, &o, err, sizeof err) != CL_OK) fail_msg("%s", err);
    return r;
}

static const char *SCHEMA = "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"t\",\"doc\":\"d\","
                            "\"fields\":[{\"name\":\"a\",\"type\":\"int\",\"default\":3}]}";

static void test_register_and_fetch_with_cache(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    cl_registry *r = client(f.url, 0, 5000, NULL, NULL);
    char err[CL_ERRLEN];
    int32_t id = 0, id2 = 0;
    if (cl_registry_register(r, "closedloop.x-value", SCHEMA, &id, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    assert_true(id > 0);
    assert_int_equal(cl_registry_register(r, "closedloop.x-value", SCHEMA, &id2, err, sizeof err),
                     CL_OK);
    assert_int_equal(id, id2);
    cl_registry_stats st;
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 1); /* the second register was served from the cache */

    const char *text = NULL;
    if (cl_registry_schema_by_id(r, id, &text, err, sizeof err) != CL_OK) fail_msg("%s", err);
    assert_string_equal(text, SCHEMA); /* the original text, doc and default included */
    const char *again = NULL;
    assert_int_equal(cl_registry_schema_by_id(r, id, &again, err, sizeof err), CL_OK);
    assert_ptr_equal(again, text);
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.cache_hits, 1);
    cl_registry_free(r);
    fake_stop(&f);
}

static void test_unknown_id_is_cached_negatively(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    char err[CL_ERRLEN];
    const char *text;
    cl_registry_opts o = {.url = f.url, .negative_cache_ms = 100};
    cl_registry *r;
    assert_int_equal(cl_registry_new(&r, &o, err, sizeof err), CL_OK);
    assert_int_equal(cl_registry_schema_by_id(r, 999, &text, err, sizeof err), CL_ENOTFOUND);
    assert_non_null(strstr(err, "schema id 999 is not in the schema registry"));
    assert_int_equal(cl_registry_schema_by_id(r, 999, &text, err, sizeof err), CL_ENOTFOUND);
    cl_registry_stats st;
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.negative_hits, 1);
    /* once the entry expires the registry is asked again (the id may exist by now) */
    usleep(250 * 1000);
    int32_t id;
    assert_int_equal(cl_registry_register(r, "s-value", SCHEMA, &id, err, sizeof err), CL_OK);
    assert_int_equal(cl_registry_schema_by_id(r, 999, &text, err, sizeof err), CL_ENOTFOUND);
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 3);
    cl_registry_free(r);
    fake_stop(&f);
}

static void test_503_is_retried_then_succeeds(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    cl_registry *r = client(f.url, 3, 5000, NULL, NULL);
    char err[CL_ERRLEN];
    int32_t id;
    fake_control(&f, "/_control/fail", "{\"status\": 503, \"count\": 2}");
    if (cl_registry_register(r, "s-value", SCHEMA, &id, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    cl_registry_stats st;
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retries, 2);

    fake_control(&f, "/_control/fail", "{\"status\": 429, \"count\": 1}");
    const char *text;
    assert_int_equal(cl_registry_schema_by_id(r, id, &text, err, sizeof err), CL_OK);
    cl_registry_free(r);
    fake_stop(&f);
}

static void test_503_beyond_retries_is_transient_error(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    cl_registry *r = client(f.url, 1, 5000, NULL, NULL);
    char err[CL_ERRLEN];
    const char *text;
    fake_control(&f, "/_control/fail", "{\"status\": 503, \"count\": 5}");
    assert_int_equal(cl_registry_schema_by_id(r, 1, &text, err, sizeof err), CL_EAGAIN);
    assert_non_null(strstr(err, "HTTP 503"));
    assert_non_null(strstr(err, "error_code 50301"));
    assert_non_null(strstr(err, "after 2 attempts"));
    cl_registry_free(r);
    fake_stop(&f);
}

static void test_basic_auth(void **state)
{
    fake_registry f;
    fake_start(&f, "--basic-auth", "svc:s3cr3t-pw");
    char err[CL_ERRLEN];
    int32_t id;
    cl_registry *anon = client(f.url, 2, 5000, NULL, NULL);
    assert_int_equal(cl_registry_register(anon, "s-value", SCHEMA, &id, err, sizeof err), CL_EIO);
    assert_non_null(strstr(err, "HTTP 401"));
    assert_non_null(strstr(err, "schema.registry.basic.auth.user.info"));
    cl_registry_stats st;
    cl_registry_get_stats(anon, &st);
    assert_int_equal(st.requests, 1); /* 401 is not retried */
    cl_registry *wrong = client(f.url, 0, 5000, "svc:wrong-password", NULL);
    assert_int_equal(cl_registry_register(wrong, "s-value", SCHEMA, &id, err, sizeof err), CL_EIO);
    assert_null(strstr(err, "wrong-password"));
    cl_registry *ok = client(f.url, 0, 5000, "svc:s3cr3t-pw", NULL);
    if (cl_registry_register(ok, "s-value", SCHEMA, &id, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    cl_registry_free(anon);
    cl_registry_free(wrong);
    cl_registry_free(ok);
    fake_stop(&f);
}

static void test_bearer_token(void **state)
{
    fake_registry f;
    fake_start(&f, "--bearer-token", "tok-123456");
    char err[CL_ERRLEN];
    int32_t id;
    cl_registry *bad = client(f.url, 0, 5000, NULL, "nope-0000");
    assert_int_equal(cl_registry_register(bad, "s-value", SCHEMA, &id, err, sizeof err), CL_EIO);
    assert_null(strstr(err, "nope-0000"));
    cl_registry *ok = client(f.url, 0, 5000, NULL, "tok-123456");
    if (cl_registry_register(ok, "s-value", SCHEMA, &id, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    cl_registry_free(bad);
    cl_registry_free(ok);
    fake_stop(&f);
}

static void test_timeout_and_connection_refused(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    char err[CL_ERRLEN], url[64];
    const char *text;
    cl_registry *r = client(f.url, 0, 200, NULL, NULL);
    fake_control(&f, "/_control/delay", "{\"ms\": 1500, \"count\": 1}");
    assert_int_equal(cl_registry_schema_by_id(r, 1, &text, err, sizeof err), CL_ETIMEOUT);
    assert_non_null(strstr(err, "retry later"));
    cl_registry_free(r);
    snprintf(url, sizeof url, "%s", f.url);
    fake_stop(&f);
    /* nothing listens there any more */
    r = client(url, 2, 1000, NULL, NULL);
    assert_int_equal(cl_registry_schema_by_id(r, 1, &text, err, sizeof err), CL_EAGAIN);
    assert_non_null(strstr(err, "after 3 attempts"));
    cl_registry_stats st;
    cl_registry_get_stats(r, &st);
    assert_int_equal(st.requests, 3);
    cl_registry_free(r);
}

static void test_options_and_url_validation(void **state)
{
    char err[CL_ERRLEN];
    cl_registry *r;
    cl_registry_opts o = {.url = "ftp://example"};
    assert_int_equal(cl_registry_new(&r, &o, err, sizeof err), CL_EINVAL);
    const cl_option *const tables[] = {cl_registry_options, NULL};
    cl_config *cfg = cl_config_new("test-registry", "test", tables);
    assert_non_null(cfg);
    r = (cl_registry *)1;
    assert_int_equal(cl_registry_from_config(&r, cfg, err, sizeof err), CL_OK);
    assert_null(r); /* no URL: no registry, single-object framing */
    assert_int_equal(cl_config_set(cfg, "schema.registry.url", "http://u:hunter22@127.0.0.1:1/",
                                   "test", err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_config_set(cfg, "schema.registry.retries", "0", "test", err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_registry_from_config(&r, cfg, err, sizeof err), CL_OK);
    assert_non_null(r);
    const char *text;
    assert_int_equal(cl_registry_schema_by_id(r, 5, &text, err, sizeof err), CL_EAGAIN);
    assert_null(strstr(err, "hunter22")); /* userinfo never reaches a message */
    assert_non_null(strstr(err, "http://127.0.0.1:1/schemas/ids/5"));
    cl_registry_free(r);
    cl_config_free(cfg);
}

static void test_codec_registers_and_resolves_through_registry(void **state)
{
    fake_registry f;
    fake_start(&f, NULL, NULL);
    char err[CL_ERRLEN];
    cl_registry *r = client(f.url, 1, 5000, NULL, NULL);
    const char *v2 = "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"t\",\"fields\":["
                     "{\"name\":\"a\",\"type\":\"int\",\"default\":3},"
                     "{\"name\":\"b\",\"type\":\"string\",\"default\":\"bee\"}]}";
    cl_avro_schemas *old = cl_avro_schemas_new(), *cur = cl_avro_schemas_new();
    assert_int_equal(
        cl_avro_schemas_add_text(old, SCHEMA, strlen(SCHEMA), "v1", 1, err, sizeof err), CL_OK);
    assert_int_equal(cl_avro_schemas_add_text(cur, v2, strlen(v2), "v2", 1, err, sizeof err),
                     CL_OK);
    cl_avro_codec_opts o = {.registry = r, .subject = "closedloop.t-value"};
    cl_avro_codec *producer, *consumer;
    assert_int_equal(cl_avro_codec_new(&producer, old, "t.R", &o, err, sizeof err), CL_OK);
    assert_int_equal(cl_avro_codec_new(&consumer, cur, "t.R", &(cl_avro_codec_opts){.registry = r},
                                       err, sizeof err),
                     CL_OK);
    avro_value_t *v = cl_avro_codec_value(producer), field;
    assert_int_equal(avro_value_get_by_name(v, "a", &field, NULL), 0);
    assert_int_equal(avro_value_set_int(&field, 41), 0);
    cl_buf out;
    cl_buf_init(&out, 0);
    if (cl_avro_codec_encode(producer, v, &out, err, sizeof err) != CL_OK) fail_msg("%s", err);
    assert_int_equal((uint8_t)out.data[0], 0);
    int32_t id =
        (int32_t)(((uint32_t)(uint8_t)out.data[1] << 24) | ((uint32_t)(uint8_t)out.data[2] << 16) |
                  ((uint32_t)(uint8_t)out.data[3] << 8) | (uint8_t)out.data[4]);
    const char *text;
    assert_int_equal(cl_registry_schema_by_id(r, id, &text, err, sizeof err), CL_OK);
    assert_string_equal(text, SCHEMA);

    avro_value_t *got;
    if (cl_avro_codec_decode(consumer, out.data, out.len, &got, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    int32_t a;
    const char *b;
    size_t blen;
    assert_int_equal(avro_value_get_by_name(got, "a", &field, NULL), 0);
    assert_int_equal(avro_value_get_int(&field, &a), 0);
    assert_int_equal(a, 41);
    assert_int_equal(avro_value_get_by_name(got, "b", &field, NULL), 0);
    assert_int_equal(avro_value_get_string(&field, &b, &blen), 0);
    assert_string_equal(b, "bee");

    /* an id the registry does not know: CL_ENOTFOUND (the record goes to the DLQ) */
    out.data[4] = 0x7f;
    assert_int_equal(cl_avro_codec_decode(consumer, out.data, out.len, &got, err, sizeof err),
                     CL_ENOTFOUND);
    cl_buf_free(&out);
    cl_avro_codec_free(producer);
    cl_avro_codec_free(consumer);
    cl_avro_schemas_free(old);
    cl_avro_schemas_free(cur);
    cl_registry_free(r);
    fake_stop(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_fetch_with_cache),
        cmocka_unit_test(test_unknown_id_is_cached_negatively),
        cmocka_unit_test(test_503_is_retried_then_succeeds),
        cmocka_unit_test(test_503_beyond_retries_is_transient_error),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_bearer_token),
        cmocka_unit_test(test_timeout_and_connection_refused),
        cmocka_unit_test(test_options_and_url_validation),
        cmocka_unit_test(test_codec_registers_and_resolves_through_registry),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
