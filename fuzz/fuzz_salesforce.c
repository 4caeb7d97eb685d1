/*
 * fuzz_salesforce.c — what a Salesforce org (or anything impersonating one) sends the
 * outcomes worker, into the worker's parsers (workers/outcomes, compiled instrumented
 * by fuzz/CMakeLists.txt).
 *
 * Input layout: byte 0 picks the parser (selector % 5; the seeds use 'P'..'T'), the
 * rest is its input.
 *   'P' (0)  a REST query page: cl_sf_page_parse, then every record
 *           through cl_sf_opportunity_from_json (SystemModstamp and LastModifiedDate
 *           as the version field) and cl_outcome_decide
 *   'Q' (1)  an error response: bytes 1-2 pick the HTTP status (100 + n % 500), the
 *           rest is the body for cl_sf_classify
 *   'R' (2)  a response header value: Sforce-Limit-Info (cl_sf_parse_limit_info),
 *           Retry-After (cl_retry_parse_retry_after), nextRecordsUrl validation
 *   'S' (3)  a CSV export / Bulk API 2.0 result page; byte 1: bit 0 label renames,
 *           bit 1 US dates, bit 2 LastModifiedDate as version; then header and rows
 *   'T' (4)  a token endpoint answer; byte 1 odd: HTTP 200, else an error status
 *
 * Invariants beyond "no crash, no leak": an accepted record has a valid Salesforce id
 * and NUL-terminated strings within their buffers; an accepted page that is not done
 * has a next URL the validator accepts; quota numbers are non-negative with max > 0; a
 * Retry-After delay lies within [0, one year]; a failure always carries a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "outcomes/outcome_mapping.h"
#include "outcomes/salesforce_auth.h"
#include "outcomes/salesforce_client.h"
#include "retry.h"

#define ONE_YEAR_MS (366LL * 24 * 3600 * 1000)

static void check_opportunity(const cl_sf_opportunity *o)
{
    if (!cl_sf_id_valid(o->id)) abort();
    if (memchr(o->stage_name, '\0', sizeof o->stage_name) == NULL) abort();
    if (memchr(o->type, '\0', sizeof o->type) == NULL) abort();
    if (memchr(o->lead_source, '\0', sizeof o->lead_source) == NULL) abort();
    if (memchr(o->currency, '\0', sizeof o->currency) == NULL) abort();
    cl_outcome_seen seen = {CL_OUTCOME_SEEN_OUTCOME, o->modstamp_ms - 1};
    (void)cl_outcome_decide(o, &seen);
    if (o->has_close_date && o->has_created) (void)cl_outcome_days_to_close(o);
}

static void fuzz_page(const char *body, size_t len)
{
    cl_sf_page page;
    char err[CL_ERRLEN] = "";
    if (cl_sf_page_parse(body, len, "GET fuzz", &page, err, sizeof err) != CL_OK) {
        if (!err[0]) abort();
        return;
    }
    if (!page.done && !cl_sf_next_url_valid(page.next_url)) abort();
    size_t i;
    json_t *record;
    json_array_foreach(page.records, i, record)
    {
        const char *fields[] = {"SystemModstamp", "LastModifiedDate"};
        for (int f = 0; f < 2; f++) {
            cl_sf_opportunity o;
            err[0] = '\0';
            if (cl_sf_opportunity_from_json(record, fields[f], &o, err, sizeof err) == CL_OK)
                check_opportunity(&o);
            else if (!err[0])
                abort();
        }
    }
    cl_sf_page_free(&page);
}

static void fuzz_classify(const uint8_t *data, size_t size)
{
    if (size < 2) return;
    long status = 100 + (long)(((unsigned)data[0] << 8 | data[1]) % 500);
    char code[64], message[256];
    cl_sf_verdict v = cl_sf_classify(status, (const char *)data + 2, size - 2, code, sizeof code,
                                     message, sizeof message);
    if (v < CL_SF_VERDICT_OK || v > CL_SF_VERDICT_FATAL) abort();
    if (!memchr(code, '\0', sizeof code) || !memchr(message, '\0', sizeof message)) abort();
}

static void fuzz_headers(const char *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return;
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t used = -1, max = -1, ms = -1;
    if (cl_sf_parse_limit_info(text, &used, &max) == CL_OK && (used < 0 || max <= 0)) abort();
    if (cl_retry_parse_retry_after(text, 1700000000000LL, &ms) == CL_OK &&
        (ms < 0 || ms > ONE_YEAR_MS))
        abort();
    if (cl_sf_next_url_valid(text) &&
        (strncmp(text, "/services/data/", 15) != 0 || strstr(text, "..") || strchr(text, '?')))
        abort();
    free(text);
}

static void fuzz_csv(const uint8_t *data, size_t size)
{
    if (size < 1) return;
    const char *renames =
        data[0] & 1 ? "StageName=Stage,Amount=Amount (converted),Id=Opportunity ID" : NULL;
    cl_csv_reader r;
    cl_csv_reader_init(&r, (const char *)data + 1, size - 1);
    char err[CL_ERRLEN];
    char **fields;
    size_t n;
    cl_sf_csv_mapping m;
    if (cl_csv_next_row(&r, &fields, &n, err, sizeof err) == CL_OK &&
        cl_sf_csv_mapping_from_header(&m, fields, n, renames, err, sizeof err) == CL_OK) {
        m.us_dates = (data[0] >> 1) & 1;
        int rc;
        while ((rc = cl_csv_next_row(&r, &fields, &n, err, sizeof err)) == CL_OK) {
            cl_sf_opportunity o;
            const char *version = data[0] & 4 ? "LastModifiedDate" : "SystemModstamp";
            err[0] = '\0';
            if (cl_sf_opportunity_from_csv(&m, fields, n, version, &o, err, sizeof err) == CL_OK)
                check_opportunity(&o);
            else if (!err[0])
                abort();
        }
    }
    cl_csv_reader_free(&r);
}

static void fuzz_token(const uint8_t *data, size_t size)
{
    if (size < 1) return;
    long status = data[0] & 1 ? 200 : 400 + data[0] % 200;
    static cl_sf_token tok;
    char err[CL_ERRLEN] = "";
    if (cl_sf_token_parse(status, (const char *)data + 1, size - 1, &tok, err, sizeof err) ==
        CL_OK) {
        if (!memchr(tok.access_token, '\0', sizeof tok.access_token) || !tok.access_token[0] ||
            !memchr(tok.instance_url, '\0', sizeof tok.instance_url))
            abort();
    } else if (!err[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0:
        fuzz_page(rest, n);
        break;
    case 1:
        fuzz_classify(data + 1, n);
        break;
    case 2:
        fuzz_headers(rest, n);
        break;
    case 3:
        fuzz_csv(data + 1, n);
        break;
    default:
        fuzz_token(data + 1, n);
        break;
    }
    return 0;
}
