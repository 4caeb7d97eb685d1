/*
 * soql.c — SOQL literals, the pull query, and URL encoding. See soql.h.
 */
#include "soql.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

#define LITERAL_MAX 4096

/* Length of the UTF-8 sequence starting at s (1..4), or 0 if it is not well formed. */
static size_t utf8_sequence_length(const unsigned char *s)
{
    if (s[0] < 0x80) return 1;
    size_t n;
    unsigned min;
    unsigned cp;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

int cl_soql_append_string_literal(cl_buf *out, const char *in, char *err, size_t errlen)
{
    size_t len = strnlen(in, LITERAL_MAX + 1);
    if (len > LITERAL_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "SOQL literal longer than %d bytes", LITERAL_MAX);
    if (cl_buf_append(out, "'", 1) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "SOQL statement too long");
    const unsigned char *p = (const unsigned char *)in;
    while (*p) {
        size_t n = utf8_sequence_length(p);
        if (n == 0)
            return cl_seterr(err, errlen, CL_EINVAL, "SOQL literal has invalid UTF-8 at byte %zu",
                             (size_t)(p - (const unsigned char *)in));
        const char *esc = NULL;
        char hex[8];
        switch (*p) {
        case '\'':
            esc = "\\'";
            break;
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (*p < 0x20) {
                /* SOQL has no escape for other control characters; \uXXXX is accepted. */
                snprintf(hex, sizeof hex, "\\u%04x", *p);
                esc = hex;
            }
        }
        int rc = esc ? cl_buf_append(out, esc, strlen(esc)) : cl_buf_append(out, p, n);
        if (rc != CL_OK) return cl_seterr(err, errlen, CL_ENOMEM, "SOQL statement too long");
        p += n;
    }
    if (cl_buf_append(out, "'", 1) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "SOQL statement too long");
    return CL_OK;
}

void cl_soql_format_datetime(int64_t ms, char out[32])
{
    int64_t s = ms / 1000;
    if (ms % 1000 < 0) s--;
    cl_format_timestamp(s * 1000, out); /* "YYYY-MM-DDThh:mm:ss.000Z" */
    char *dot = strchr(out, '.');
    if (dot) {
        dot[0] = 'Z';
        dot[1] = '\0';
    }
}

int cl_url_encode_append(cl_buf *out, const char *in, size_t len)
{
    static const char hexdig[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        int rc;
        if (unreserved) {
            rc = cl_buf_append(out, &in[i], 1);
        } else {
            char enc[3] = {'%', hexdig[c >> 4], hexdig[c & 15]};
            rc = cl_buf_append(out, enc, 3);
        }
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

const char *cl_soql_opportunity_fields(int include_currency)
{
    return include_currency
               ? "Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
                 "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource,CurrencyIsoCode"
               : "Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
                 "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource";
}

int cl_soql_build_pull(const cl_soql_pull *pull, cl_buf *out, char *err, size_t errlen)
{
    const char *field = pull->modstamp_field ? pull->modstamp_field : "SystemModstamp";
    if (strcmp(field, "SystemModstamp") != 0 && strcmp(field, "LastModifiedDate") != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "modstamp field '%.64s' must be SystemModstamp or LastModifiedDate",
                         field);
    if (pull->before_ms <= pull->from_ms)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "empty pull window: from %lld ms is not before %lld ms",
                         (long long)pull->from_ms, (long long)pull->before_ms);
    char from[32], before[32];
    cl_soql_format_datetime(pull->from_ms, from);
    /* SOQL literals have second precision. The worker keeps both bounds on second
     * boundaries (the next pull starts at this pull's `before`), so truncation here
     * never opens a gap between pulls. */
    cl_soql_format_datetime(pull->before_ms, before);
    int rc = cl_buf_printf(out, "SELECT %s FROM Opportunity WHERE %s >= %s AND %s < %s",
                           cl_soql_opportunity_fields(pull->include_currency), field, from, field,
                           before);
    if (rc == CL_OK && pull->extra_where && pull->extra_where[0])
        rc = cl_buf_printf(out, " AND (%s)", pull->extra_where);
    if (rc == CL_OK) rc = cl_buf_printf(out, " ORDER BY %s ASC, Id ASC", field);
    if (rc != CL_OK || out->len > CL_SOQL_MAX_LEN)
        return cl_seterr(err, errlen, CL_ENOMEM, "SOQL statement longer than %d characters",
                         CL_SOQL_MAX_LEN);
    return CL_OK;
}
