/*
 * salesforce_auth.c — OAuth token requests (JWT bearer with RS256, client credentials,
 * refresh token) and token responses. See salesforce_auth.h.
 */
#include "salesforce_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "error.h"
#include "log.h"
#include "soql.h"

int cl_sf_auth_parse_kind(const char *s, cl_sf_auth_kind *out)
{
    if (!s) return CL_EINVAL;
    if (strcmp(s, "jwt") == 0)
        *out = CL_SF_AUTH_JWT;
    else if (strcmp(s, "client_credentials") == 0)
        *out = CL_SF_AUTH_CLIENT_CREDENTIALS;
    else if (strcmp(s, "refresh_token") == 0)
        *out = CL_SF_AUTH_REFRESH_TOKEN;
    else
        return CL_EINVAL;
    return CL_OK;
}

const char *cl_sf_auth_kind_name(cl_sf_auth_kind k)
{
    switch (k) {
    case CL_SF_AUTH_JWT:
        return "jwt";
    case CL_SF_AUTH_CLIENT_CREDENTIALS:
        return "client_credentials";
    case CL_SF_AUTH_REFRESH_TOKEN:
        return "refresh_token";
    }
    return "unknown";
}

static void wipe_free(char *s)
{
    if (!s) return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static int dup_setting(char **dst, const char *v, const char *key, int required, int secret,
                       char *err, size_t errlen)
{
    *dst = NULL;
    if (!v || !v[0]) {
        if (required)
            return cl_seterr(err, errlen, CL_EINVAL, "%s is required for this auth flow", key);
        return CL_OK;
    }
    if (strlen(v) >= CL_SF_TOKEN_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "%s is longer than %d bytes", key,
                         CL_SF_TOKEN_MAX - 1);
    *dst = strdup(v);
    if (!*dst) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory copying %s", key);
    if (secret) cl_log_add_secret(v);
    return CL_OK;
}

static int load_private_key(cl_sf_auth *a, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cl_seterr(err, errlen, CL_EIO, "salesforce.private.key.file %s: cannot stat", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.private.key.file %s is readable by group or others "
                         "(mode %03o); chmod 600 it",
                         path, (unsigned)(st.st_mode & 0777));
    FILE *f = fopen(path, "r");
    if (!f)
        return cl_seterr(err, errlen, CL_EIO, "salesforce.private.key.file %s: cannot open", path);
    a->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!a->key) {
        ERR_clear_error();
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.private.key.file %s: not an unencrypted PEM private key",
                         path);
    }
    if (EVP_PKEY_get_base_id(a->key) != EVP_PKEY_RSA)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.private.key.file %s: not an RSA key (RS256 needs RSA)", path);
    return CL_OK;
}

int cl_sf_url_allowed(const char *url)
{
    if (strncmp(url, "https://", 8) == 0) return url[8] != '\0' && url[8] != '/';
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        size_t n = strlen(loopback[i]);
        if (strncmp(url, loopback[i], n) == 0 && (url[n] == '\0' || url[n] == ':' || url[n] == '/'))
            return 1;
    }
    return 0;
}

int cl_sf_auth_init(cl_sf_auth *a, const cl_sf_auth_settings *s, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->kind = s->kind;
    if (!s->login_url || !cl_sf_url_allowed(s->login_url))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "salesforce.login.url '%.100s' must be an https URL (e.g. "
                         "https://login.salesforce.com or your My Domain)",
                         s->login_url ? s->login_url : "");
    size_t n = strlen(s->login_url);
    while (n > 0 && s->login_url[n - 1] == '/')
        n--;
    int w = snprintf(a->token_url, sizeof a->token_url, "%.*s/services/oauth2/token", (int)n,
                     s->login_url);
    if (w < 0 || (size_t)w >= sizeof a->token_url)
        return cl_seterr(err, errlen, CL_EINVAL, "salesforce.login.url is too long");
    const char *aud = s->audience && s->audience[0] ? s->audience : s->login_url;
    if (cl_strlcpy(a->audience, aud, sizeof a->audience) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "JWT audience is too long");
    n = strlen(a->audience);
    while (n > 0 && a->audience[n - 1] == '/')
        a->audience[--n] = '\0';

    int rc;
    int jwt = s->kind == CL_SF_AUTH_JWT, cc = s->kind == CL_SF_AUTH_CLIENT_CREDENTIALS,
        rt = s->kind == CL_SF_AUTH_REFRESH_TOKEN;
    if ((rc = dup_setting(&a->client_id, s->client_id, "salesforce.client.id", 1, 0, err,
                          errlen)) != CL_OK ||
        (rc = dup_setting(&a->client_secret, s->client_secret, "salesforce.client.secret", cc, 1,
                          err, errlen)) != CL_OK ||
        (rc = dup_setting(&a->username, s->username, "salesforce.username", jwt, 0, err, errlen)) !=
            CL_OK ||
        (rc = dup_setting(&a->refresh_token, rt ? s->refresh_token : NULL,
                          "salesforce.refresh.token", rt, 1, err, errlen)) != CL_OK) {
        cl_sf_auth_free(a);
        return rc;
    }
    if (jwt) {
        if (!s->private_key_file || !s->private_key_file[0]) {
            cl_sf_auth_free(a);
            return cl_seterr(err, errlen, CL_EINVAL,
                             "salesforce.private.key.file is required for salesforce.auth=jwt");
        }
        if ((rc = load_private_key(a, s->private_key_file, err, errlen)) != CL_OK) {
            cl_sf_auth_free(a);
            return rc;
        }
    }
    return CL_OK;
}

void cl_sf_auth_free(cl_sf_auth *a)
{
    free(a->client_id);
    wipe_free(a->client_secret);
    free(a->username);
    wipe_free(a->refresh_token);
    EVP_PKEY_free(a->key);
    memset(a, 0, sizeof *a);
}

int cl_base64url_append(cl_buf *out, const unsigned char *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        size_t rem = len - i;
        if (rem > 1) v |= (uint32_t)data[i + 1] << 8;
        if (rem > 2) v |= data[i + 2];
        char q[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63],
                     alphabet[v & 63]};
        size_t emit = rem >= 3 ? 4 : rem + 1;
        if (cl_buf_append(out, q, emit) != CL_OK) return CL_ENOMEM;
    }
    return CL_OK;
}

int cl_sf_jwt_build(EVP_PKEY *key, const char *client_id, const char *username,
                    const char *audience, int64_t now_s, cl_buf *out, char *err, size_t errlen)
{
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I}", "iss", client_id, "sub", username, "aud",
                               audience, "exp", (json_int_t)(now_s + CL_SF_JWT_LIFETIME_S));
    if (!claims) return cl_seterr(err, errlen, CL_EINVAL, "JWT claims are not valid UTF-8");
    char *payload = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!payload) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory building JWT");

    size_t start = out->len;
    int rc = cl_base64url_append(out, (const unsigned char *)header, sizeof header - 1);
    if (rc == CL_OK) rc = cl_buf_append(out, ".", 1);
    if (rc == CL_OK) rc = cl_base64url_append(out, (const unsigned char *)payload, strlen(payload));
    free(payload);
    if (rc != CL_OK) return cl_seterr(err, errlen, CL_ENOMEM, "JWT too large");

    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)out->data + start,
                            out->len - start) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        unsigned long e = ERR_get_error();
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        ERR_clear_error();
        return cl_seterr(err, errlen, CL_ERR, "signing the JWT with RS256 failed: %s", buf);
    }
    if (cl_buf_append(out, ".", 1) != CL_OK || cl_base64url_append(out, sig, siglen) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "JWT too large");
    return CL_OK;
}

static int form_field(cl_buf *b, const char *name, const char *value)
{
    if (b->len > 0 && cl_buf_append(b, "&", 1) != CL_OK) return CL_ENOMEM;
    if (cl_buf_printf(b, "%s=", name) != CL_OK) return CL_ENOMEM;
    return cl_url_encode_append(b, value, strlen(value));
}

int cl_sf_auth_request_body(const cl_sf_auth *a, int64_t now_s, cl_buf *body, char *err,
                            size_t errlen)
{
    int rc = CL_OK;
    switch (a->kind) {
    case CL_SF_AUTH_JWT: {
        cl_buf jwt;
        cl_buf_init(&jwt, 16384);
        rc = cl_sf_jwt_build(a->key, a->client_id, a->username, a->audience, now_s, &jwt, err,
                             errlen);
        if (rc == CL_OK) {
            /* Not registered for masking: it lives 3 minutes, is sent once, and the
             * log's secret table is small; it only ever sits in this buffer. */
            rc = form_field(body, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
            if (rc == CL_OK) rc = form_field(body, "assertion", jwt.data);
            if (rc != CL_OK) rc = cl_seterr(err, errlen, CL_ENOMEM, "token request too large");
        }
        if (jwt.data) memset(jwt.data, 0, jwt.len);
        cl_buf_free(&jwt);
        return rc;
    }
    case CL_SF_AUTH_CLIENT_CREDENTIALS:
        rc = form_field(body, "grant_type", "client_credentials");
        if (rc == CL_OK) rc = form_field(body, "client_id", a->client_id);
        if (rc == CL_OK) rc = form_field(body, "client_secret", a->client_secret);
        break;
    case CL_SF_AUTH_REFRESH_TOKEN:
        rc = form_field(body, "grant_type", "refresh_token");
        if (rc == CL_OK) rc = form_field(body, "client_id", a->client_id);
        if (rc == CL_OK && a->client_secret)
            rc = form_field(body, "client_secret", a->client_secret);
        if (rc == CL_OK) rc = form_field(body, "refresh_token", a->refresh_token);
        break;
    }
    if (rc != CL_OK) return cl_seterr(err, errlen, CL_ENOMEM, "token request too large");
    return CL_OK;
}

int cl_sf_token_parse(long http_status, const char *body, size_t len, cl_sf_token *tok, char *err,
                      size_t errlen)
{
    memset(tok, 0, sizeof *tok);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (http_status < 200 || http_status >= 300) {
        const char *e = NULL, *d = NULL;
        if (root && json_is_object(root)) {
            e = json_string_value(json_object_get(root, "error"));
            d = json_string_value(json_object_get(root, "error_description"));
        }
        int rc = (http_status >= 500 || http_status == 429) ? CL_EAGAIN : CL_ERR;
        cl_seterr(err, errlen, rc, "token endpoint: HTTP %ld %.80s: %.200s", http_status,
                  e ? e : "(no error code)", d ? d : "(no description)");
        json_decref(root);
        return rc;
    }
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cl_seterr(err, errlen, CL_EAGAIN,
                         "token endpoint: HTTP %ld with a body that is not a JSON object "
                         "(%.100s)",
                         http_status, root ? "wrong type" : jerr.text);
    }
    const char *at = json_string_value(json_object_get(root, "access_token"));
    const char *iu = json_string_value(json_object_get(root, "instance_url"));
    const char *rt = json_string_value(json_object_get(root, "refresh_token"));
    int rc = CL_OK;
    if (!at || !at[0] || cl_strlcpy(tok->access_token, at, sizeof tok->access_token) != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL,
                       "token endpoint: response has no usable access_token");
    else if (!iu || !cl_sf_url_allowed(iu) ||
             cl_strlcpy(tok->instance_url, iu, sizeof tok->instance_url) != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL,
                       "token endpoint: response has no usable instance_url");
    else if (rt && cl_strlcpy(tok->refresh_token, rt, sizeof tok->refresh_token) != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL, "token endpoint: refresh_token too long");
    if (rc == CL_OK) {
        cl_log_add_secret(tok->access_token);
        if (tok->refresh_token[0]) cl_log_add_secret(tok->refresh_token);
    } else {
        memset(tok, 0, sizeof *tok);
    }
    json_decref(root);
    return rc;
}
