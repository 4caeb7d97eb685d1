/*
 * salesforce_auth.h — OAuth 2.0 for the Salesforce REST and Bulk APIs.
 *
 * Three server-to-server flows, chosen by salesforce.auth; the username-password flow is
 * deliberately absent (Salesforce is retiring it):
 *   jwt                 JWT bearer: an RS256-signed assertion {iss: client id, sub:
 *                       username, aud: login/test/My Domain URL, exp: now + 3 minutes}
 *                       traded for an access token. No secret crosses the wire.
 *   client_credentials  client id + secret at the org's My Domain token endpoint.
 *   refresh_token       a long-lived refresh token from an earlier web/device flow.
 *
 * This module builds the token request and parses the response; sending it belongs to
 * the client (salesforce_client.h), which also decides when to re-authenticate (once,
 * on 401 INVALID_SESSION_ID). Secrets live in heap copies that are wiped on free, and
 * every token or key is registered with the log's redaction before it can be logged.
 */
#ifndef CL_OUTCOMES_SALESFORCE_AUTH_H
#define CL_OUTCOMES_SALESFORCE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "util.h"

typedef enum {
    CL_SF_AUTH_JWT = 0,
    CL_SF_AUTH_CLIENT_CREDENTIALS,
    CL_SF_AUTH_REFRESH_TOKEN,
} cl_sf_auth_kind;

int cl_sf_auth_parse_kind(const char *s, cl_sf_auth_kind *out);
const char *cl_sf_auth_kind_name(cl_sf_auth_kind k);

/* Lifetime of a JWT assertion; Salesforce rejects exp more than 3 minutes ahead. */
#define CL_SF_JWT_LIFETIME_S 180
#define CL_SF_TOKEN_MAX 4096
#define CL_SF_URL_MAX 1024

typedef struct {
    cl_sf_auth_kind kind;
    const char *login_url; /* https://login.salesforce.com, test..., or My Domain */
    const char *audience;  /* JWT aud; NULL: login_url */
    const char *client_id;
    const char *client_secret;    /* client_credentials; optional for refresh_token */
    const char *username;         /* JWT sub */
    const char *private_key_file; /* JWT: PEM (PKCS#8 or PKCS#1) RSA private key */
    const char *refresh_token;
} cl_sf_auth_settings;

typedef struct {
    cl_sf_auth_kind kind;
    char token_url[CL_SF_URL_MAX]; /* <login_url>/services/oauth2/token */
    char audience[CL_SF_URL_MAX];
    char *client_id, *client_secret, *username, *refresh_token;
    EVP_PKEY *key;
} cl_sf_auth;

/* Validates the settings for the chosen flow (naming the missing config key) and loads
 * the private key. The key file must not be group/world readable. */
int cl_sf_auth_init(cl_sf_auth *a, const cl_sf_auth_settings *s, char *err, size_t errlen);
void cl_sf_auth_free(cl_sf_auth *a);

/* Appends a signed compact JWT (header.payload.signature, base64url) to out. */
int cl_sf_jwt_build(EVP_PKEY *key, const char *client_id, const char *username,
                    const char *audience, int64_t now_s, cl_buf *out, char *err, size_t errlen);

/* The application/x-www-form-urlencoded body of the token request. */
int cl_sf_auth_request_body(const cl_sf_auth *a, int64_t now_s, cl_buf *body, char *err,
                            size_t errlen);

typedef struct {
    char access_token[CL_SF_TOKEN_MAX];
    char instance_url[CL_SF_URL_MAX];    /* where the API lives for this org */
    char refresh_token[CL_SF_TOKEN_MAX]; /* rotated refresh token, "" if none */
} cl_sf_token;

/* Parses the token endpoint's answer. Non-2xx bodies are {"error","error_description"}
 * and become the message ("token endpoint: HTTP 400 invalid_grant: user hasn't approved
 * this consumer"); the token itself never appears in an error. */
int cl_sf_token_parse(long http_status, const char *body, size_t len, cl_sf_token *tok, char *err,
                      size_t errlen);

/* Tokens travel only over https; plain http is accepted for loopback hosts (the test
 * server) and nothing else. */
int cl_sf_url_allowed(const char *url);

/* base64url without padding (RFC 7515 §2). */
int cl_base64url_append(cl_buf *out, const unsigned char *data, size_t len);

#endif
