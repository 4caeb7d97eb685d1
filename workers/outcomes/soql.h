/*
 * soql.h — building the SOQL that pulls Opportunity changes, and the URLs that carry it.
 *
 * Salesforce extractors lose records at the watermark boundary and mis-handle time
 * zones; this module is where closedloop refuses to. Every datetime literal is written
 * in UTC with a 'Z' (SOQL has no implicit zone, and a "+00:00" literal sent unencoded
 * arrives as " 00:00" because '+' means space in a query string). Every string literal
 * is quoted and escaped per the SOQL reference (backslash, quotes, control characters),
 * so an opportunity id read back from our own state can never change a query's shape.
 * URL encoding keeps only RFC 3986 unreserved characters; everything else, '+'
 * included, is percent-encoded.
 *
 * The pull window is half-open, [from, before), ordered by (SystemModstamp, Id): the
 * upper bound is fixed when a pull starts so records modified during the pull are left
 * for the next one, and the order makes "the last acknowledged record" a position the
 * worker can restart from (SPEC §4.2).
 */
#ifndef CL_OUTCOMES_SOQL_H
#define CL_OUTCOMES_SOQL_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Longest SOQL statement we generate; Salesforce's limit is 100,000 characters. */
#define CL_SOQL_MAX_LEN 100000

/* Appends the string literal 'in' (quoted, escaped) to out. Rejects invalid UTF-8 and
 * NUL-free input longer than 4096 bytes with CL_EINVAL. */
int cl_soql_append_string_literal(cl_buf *out, const char *in, char *err, size_t errlen);

/* A SOQL datetime literal for ms since the epoch, truncated to the second, in UTC:
 * "2024-05-01T12:00:00Z". floor_to_second: ms values are truncated toward -inf. */
void cl_soql_format_datetime(int64_t ms, char out[32]);

/* Percent-encodes `in` (len bytes) for a URL query component. */
int cl_url_encode_append(cl_buf *out, const char *in, size_t len);

typedef struct {
    /* "SystemModstamp" (default) or "LastModifiedDate"; anything else is rejected. */
    const char *modstamp_field;
    int64_t from_ms;         /* inclusive lower bound: watermark - lookback, or resume point */
    int64_t before_ms;       /* exclusive upper bound: the pull's start time */
    int include_currency;    /* add CurrencyIsoCode (multi-currency orgs only) */
    const char *extra_where; /* optional operator-supplied condition, ANDed, may be NULL */
} cl_soql_pull;

/* The Opportunity fields every outcome needs, comma separated, in the order used by the
 * REST query and by Bulk API CSV results. */
const char *cl_soql_opportunity_fields(int include_currency);

/* Builds "SELECT ... FROM Opportunity WHERE <f> >= from AND <f> < before ORDER BY <f>, Id". */
int cl_soql_build_pull(const cl_soql_pull *pull, cl_buf *out, char *err, size_t errlen);

#endif
