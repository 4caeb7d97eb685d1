/* Unit tests for workers/outcomes/salesforce_auth and the pure parts of
 * salesforce_client: the RS256 JWT (verified here with OpenSSL against a key pair the
 * test generates), token responses, Sforce-Limit-Info, error classification, backoff,
 * nextRecordsUrl validation and query page parsing. */
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

#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "outcomes/salesforce_auth.h"
#include "outcomes/salesforce_client.h"

static char key_path[256];

static int write_key(const char *path, mode_t mode)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    if (!key) return -1;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(key);
    return chmod(path, mode);
}

static int setup(void **state)
{
    snprintf(key_path, sizeof key_path, "/tmp/cl_outcomes_key_%d.pem", (int)getpid());
    return write_key(key_path, 0600);
}

static int teardown(void **state)
{
    unlink(key_path);
    return 0;
}

static size_t b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    char tmp[4096];
    assert_true(len + 4 < sizeof tmp);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        tmp[n++] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        tmp[n++] = '=';
    tmp[n] = '\0';
    int m = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)n);
    assert_true(m >= 0 && (size_t)m <= cap);
    size_t pad = 0;
    while (n > 0 && tmp[n - 1] == '=')
        n--, pad++;
    return (size_t)m - pad;
}

static void test_jwt_bearer_assertion_verifies(void **state)
{
    cl_sf_auth a;
    char err[CL_ERRLEN];
    cl_sf_auth_settings s = {.kind = CL_SF_AUTH_JWT,
                             .login_url = "https://test.salesforce.com/",
                             .client_id = "3MVG9client",
                             .username = "integration@example.com",
                             .private_key_file = key_path};
    assert_int_equal(cl_sf_auth_init(&a, &s, err, sizeof err), CL_OK);
    assert_string_equal(a.token_url, "https://test.salesforce.com/services/oauth2/token");
    assert_string_equal(a.audience, "https://test.salesforce.com");

    cl_buf body;
    cl_buf_init(&body, 0);
    int64_t now = 1700000000;
    assert_int_equal(cl_sf_auth_request_body(&a, now, &body, err, sizeof err), CL_OK);
    const char *prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                         "&assertion=";
    assert_memory_equal(body.data, prefix, strlen(prefix));
    const char *jwt = body.data + strlen(prefix);
    const char *dot1 = strchr(jwt, '.');
    assert_non_null(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);

    unsigned char buf[2048];
    size_t n = b64url_decode(jwt, (size_t)(dot1 - jwt), buf, sizeof buf);
    buf[n] = '\0';
    assert_string_equal((char *)buf, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof buf);
    json_t *claims = json_loadb((char *)buf, n, 0, NULL);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")), "3MVG9client");
    assert_string_equal(json_string_value(json_object_get(claims, "sub")),
                        "integration@example.com");
    assert_string_equal(json_string_value(json_object_get(claims, "aud")),
                        "https://test.salesforce.com");
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), now + 180);
    json_decref(claims);

    /* Verify the RS256 signature with the public half. */
    unsigned char sig[1024];
    size_t siglen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof sig);
    assert_int_equal(siglen, 256);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, a.key), 1);
    assert_int_equal(
        EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jwt, (size_t)(dot2 - jwt)), 1);
    /* A flipped payload byte must not verify. */
    char tampered[4096];
    memcpy(tampered, jwt, (size_t)(dot2 - jwt));
    tampered[(dot1 - jwt) + 3] ^= 1;
    EVP_MD_CTX_reset(ctx);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, a.key), 1);
    assert_int_not_equal(
        EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)tampered, (size_t)(dot2 - jwt)),
        1);
    EVP_MD_CTX_free(ctx);
    cl_buf_free(&body);
    cl_sf_auth_free(&a);
}

static void test_auth_settings_are_checked(void **state)
{
    cl_sf_auth a;
    char err[CL_ERRLEN];
    cl_sf_auth_settings s = {.kind = CL_SF_AUTH_CLIENT_CREDENTIALS,
                             .login_url = "https://acme.my.salesforce.com",
                             .client_id = "3MVG9client"};
    assert_int_equal(cl_sf_auth_init(&a, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "salesforce.client.secret"));
    s.client_secret = "s3cr3t+/=";
    assert_int_equal(cl_sf_auth_init(&a, &s, err, sizeof err), CL_OK);
    cl_buf body;
    cl_buf_init(&body, 0);
    assert_int_equal(cl_sf_auth_request_body(&a, 0, &body, err, sizeof err), CL_OK);
    assert_string_equal(body.data, "grant_type=client_credentials&client_id=3MVG9client"
                                   "&client_secret=s3cr3t%2B%2F%3D");
    cl_buf_free(&body);
    cl_sf_auth_free(&a);

    s.kind = CL_SF_AUTH_REFRESH_TOKEN;
    s.client_secret = NULL;
    assert_int_equal(cl_sf_auth_init(&a, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "salesforce.refresh.token"));

    /* A private key readable by others is refused. */
    char loose[300];
    snprintf(loose, sizeof loose, "%s.loose", key_path);
    assert_int_equal(write_key(loose, 0644), 0);
    cl_sf_auth_settings j = {.kind = CL_SF_AUTH_JWT,
                             .login_url = "https://login.salesforce.com",
                             .client_id = "c",
                             .username = "u",
                             .private_key_file = loose};
    assert_int_equal(cl_sf_auth_init(&a, &j, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(loose);
    j.private_key_file = "/nonexistent/key.pem";
    assert_int_equal(cl_sf_auth_init(&a, &j, err, sizeof err), CL_EIO);
    s.login_url = "ftp://x";
    assert_int_equal(cl_sf_auth_init(&a, &s, err, sizeof err), CL_EINVAL);
}

static void test_urls_must_be_https_unless_loopback(void **state)
{
    assert_true(cl_sf_url_allowed("https://login.salesforce.com"));
    assert_true(cl_sf_url_allowed("https://acme.my.salesforce.com/"));
    assert_true(cl_sf_url_allowed("http://127.0.0.1:8080"));
    assert_true(cl_sf_url_allowed("http://localhost"));
    assert_false(cl_sf_url_allowed("http://login.salesforce.com"));
    assert_false(cl_sf_url_allowed("http://127.0.0.1.evil.example"));
    assert_false(cl_sf_url_allowed("http://localhost.evil.example/"));
    assert_false(cl_sf_url_allowed("https://"));
    assert_false(cl_sf_url_allowed("file:///etc/passwd"));
}

static void test_token_responses(void **state)
{
    cl_sf_token t;
    char err[CL_ERRLEN];
    const char *ok = "{\"access_token\":\"00Dxx!AQ.secret\",\"instance_url\":"
                     "\"https://acme.my.salesforce.com\",\"token_type\":\"Bearer\"}";
    assert_int_equal(cl_sf_token_parse(200, ok, strlen(ok), &t, err, sizeof err), CL_OK);
    assert_string_equal(t.access_token, "00Dxx!AQ.secret");
    assert_string_equal(t.instance_url, "https://acme.my.salesforce.com");
    const char *bad = "{\"error\":\"invalid_grant\",\"error_description\":\"user hasn't "
                      "approved this consumer\"}";
    assert_int_equal(cl_sf_token_parse(400, bad, strlen(bad), &t, err, sizeof err), CL_ERR);
    assert_non_null(strstr(err, "HTTP 400 invalid_grant: user hasn't approved"));
    assert_int_equal(cl_sf_token_parse(503, "<html>", 6, &t, err, sizeof err), CL_EAGAIN);
    assert_int_equal(cl_sf_token_parse(200, "{\"access_", 9, &t, err, sizeof err), CL_EAGAIN);
    const char *plain = "{\"access_token\":\"00Dxx!AQ.secret\",\"instance_url\":"
                        "\"http://acme.my.salesforce.com\"}";
    assert_int_equal(cl_sf_token_parse(200, plain, strlen(plain), &t, err, sizeof err), CL_EINVAL);
    const char *noinst = "{\"access_token\":\"00Dxx!AQ.secret\"}";
    assert_int_equal(cl_sf_token_parse(200, noinst, strlen(noinst), &t, err, sizeof err),
                     CL_EINVAL);
    assert_null(strstr(err, "00Dxx!AQ.secret"));
}

static void test_limit_info(void **state)
{
    int64_t used = 0, max = 0;
    assert_int_equal(cl_sf_parse_limit_info("api-usage=25/15000", &used, &max), CL_OK);
    assert_int_equal(used, 25);
    assert_int_equal(max, 15000);
    assert_int_equal(
        cl_sf_parse_limit_info("per-app-api-usage=1/100(appName=x), api-usage=7/50", &used, &max),
        CL_OK);
    assert_int_equal(used, 7);
    assert_int_equal(max, 50);
    assert_int_equal(cl_sf_parse_limit_info("api-usage=7", &used, &max), CL_EINVAL);
    assert_int_equal(cl_sf_parse_limit_info("api-usage=7/0", &used, &max), CL_EINVAL);
    assert_int_equal(cl_sf_parse_limit_info("api-usage=99999999999999999999999/5", &used, &max),
                     CL_EINVAL);
    assert_int_equal(cl_sf_parse_limit_info("other=1", &used, &max), CL_ENOTFOUND);
}

static void test_classify(void **state)
{
    char code[64], msg[256];
    const char *expired = "[{\"message\":\"Session expired or invalid\",\"errorCode\":"
                          "\"INVALID_SESSION_ID\"}]";
    assert_int_equal(
        cl_sf_classify(401, expired, strlen(expired), code, sizeof code, msg, sizeof msg),
        CL_SF_VERDICT_REAUTH);
    assert_string_equal(code, "INVALID_SESSION_ID");
    const char *limit = "[{\"message\":\"TotalRequests Limit exceeded.\",\"errorCode\":"
                        "\"REQUEST_LIMIT_EXCEEDED\"}]";
    assert_int_equal(cl_sf_classify(403, limit, strlen(limit), code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_LIMIT);
    const char *loc = "[{\"message\":\"invalid query locator\",\"errorCode\":"
                      "\"INVALID_QUERY_LOCATOR\"}]";
    assert_int_equal(cl_sf_classify(400, loc, strlen(loc), code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_LOCATOR);
    assert_int_equal(cl_sf_classify(503, "", 0, code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_RETRY);
    assert_int_equal(cl_sf_classify(429, "busy", 4, code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_RETRY);
    const char *mq = "[{\"message\":\"unexpected token\",\"errorCode\":\"MALFORMED_QUERY\"}]";
    assert_int_equal(cl_sf_classify(400, mq, strlen(mq), code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_FATAL);
    assert_string_equal(msg, "unexpected token");
    assert_int_equal(cl_sf_classify(200, "{}", 2, code, sizeof code, msg, sizeof msg),
                     CL_SF_VERDICT_OK);
}

static void test_backoff_is_bounded_full_jitter(void **state)
{
    cl_retry_policy p = {.max_attempts = 5, .base_ms = 100, .max_ms = 1000};
    uint64_t rng = 42;
    int64_t max_seen[12] = {0};
    for (int attempt = 1; attempt <= 10; attempt++) {
        int64_t ceiling = 100LL << (attempt - 1);
        if (ceiling > 1000) ceiling = 1000;
        for (int i = 0; i < 2000; i++) {
            int64_t ms = cl_retry_backoff_ms(&p, attempt, &rng);
            assert_true(ms >= 0 && ms <= ceiling);
            if (ms > max_seen[attempt]) max_seen[attempt] = ms;
        }
        /* Jitter spreads over the whole range: the maximum gets near the ceiling. */
        assert_true(max_seen[attempt] > ceiling * 9 / 10);
    }
}

static void test_next_url_validation(void **state)
{
    assert_true(cl_sf_next_url_valid("/services/data/v60.0/query/01gD0000002HU6KIAW-2000"));
    assert_false(cl_sf_next_url_valid("https://evil.example/services/data/v60.0/query/x-1"));
    assert_false(cl_sf_next_url_valid("//evil.example/services/data/x"));
    assert_false(cl_sf_next_url_valid("/services/data/../../oauth2/x"));
    assert_false(cl_sf_next_url_valid("/services/data/v60.0/query/x?y=1"));
    assert_false(cl_sf_next_url_valid("/services/data/v60.0/query/x y"));
}

static void test_page_parse(void **state)
{
    cl_sf_page p;
    char err[CL_ERRLEN];
    const char *page = "{\"totalSize\":3,\"done\":false,\"nextRecordsUrl\":"
                       "\"/services/data/v60.0/query/01gxx-2\",\"records\":[{},{}]}";
    assert_int_equal(cl_sf_page_parse(page, strlen(page), "GET q", &p, err, sizeof err), CL_OK);
    assert_false(p.done);
    assert_int_equal(p.total_size, 3);
    assert_int_equal(json_array_size(p.records), 2);
    assert_string_equal(p.next_url, "/services/data/v60.0/query/01gxx-2");
    cl_sf_page_free(&p);
    /* Truncated body: an error naming the request, never an empty page. */
    assert_int_equal(
        cl_sf_page_parse(page, 40, "GET /services/data/v60.0/query/01gxx-2", &p, err, sizeof err),
        CL_EINVAL);
    assert_non_null(strstr(err, "GET /services/data/v60.0/query/01gxx-2: response is not valid"));
    const char *no_next = "{\"totalSize\":3,\"done\":false,\"records\":[]}";
    assert_int_equal(cl_sf_page_parse(no_next, strlen(no_next), "GET q", &p, err, sizeof err),
                     CL_EINVAL);
    const char *off_host = "{\"totalSize\":3,\"done\":false,\"records\":[],\"nextRecordsUrl\":"
                           "\"https://evil.example/x\"}";
    assert_int_equal(cl_sf_page_parse(off_host, strlen(off_host), "GET q", &p, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_sf_page_parse("[]", 2, "GET q", &p, err, sizeof err), CL_EINVAL);
    const char *last = "{\"totalSize\":0,\"done\":true,\"records\":[]}";
    assert_int_equal(cl_sf_page_parse(last, strlen(last), "GET q", &p, err, sizeof err), CL_OK);
    assert_true(p.done);
    assert_string_equal(p.next_url, "");
    cl_sf_page_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_bearer_assertion_verifies),
        cmocka_unit_test(test_auth_settings_are_checked),
        cmocka_unit_test(test_urls_must_be_https_unless_loopback),
        cmocka_unit_test(test_token_responses),
        cmocka_unit_test(test_limit_info),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_backoff_is_bounded_full_jitter),
        cmocka_unit_test(test_next_url_validation),
        cmocka_unit_test(test_page_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
