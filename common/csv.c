/*
 * csv.c — strict, bounded RFC 4180 reader. See csv.h.
 */
#include "csv.h"

#include <string.h>

#include "error.h"

void cl_csv_reader_init(cl_csv_reader *r, const char *data, size_t len)
{
    memset(r, 0, sizeof *r);
    r->data = data;
    r->len = len;
    r->line = 1;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        r->pos = 3;
    cl_buf_init(&r->store, CL_CSV_MAX_FIELDS * (size_t)CL_CSV_MAX_FIELD);
}

void cl_csv_reader_free(cl_csv_reader *r)
{
    cl_buf_free(&r->store);
}

static int end_field(cl_csv_reader *r, size_t *nfields, size_t field_start, char *err,
                     size_t errlen)
{
    if (r->store.len - field_start > CL_CSV_MAX_FIELD)
        return cl_seterr(err, errlen, CL_EINVAL, "line %zu: field %zu longer than %u bytes",
                         r->row_line, *nfields + 1, CL_CSV_MAX_FIELD);
    if (*nfields >= CL_CSV_MAX_FIELDS)
        return cl_seterr(err, errlen, CL_EINVAL, "line %zu: more than %d columns", r->row_line,
                         CL_CSV_MAX_FIELDS);
    if (cl_buf_append(&r->store, "", 1) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "line %zu: row too large", r->row_line);
    r->offsets[(*nfields)++] = field_start;
    return CL_OK;
}

int cl_csv_next_row(cl_csv_reader *r, char ***fields, size_t *nfields, char *err, size_t errlen)
{
    /* Skip blank lines between rows. */
    while (r->pos < r->len && (r->data[r->pos] == '\n' || r->data[r->pos] == '\r')) {
        if (r->data[r->pos] == '\n')
            r->line++;
        r->pos++;
    }
    if (r->pos >= r->len)
        return CL_ENOTFOUND;

    cl_buf_reset(&r->store);
    size_t n = 0;
    r->row_line = r->line;
    for (;;) {
        size_t field_start = r->store.len;
        int rc;
        if (r->pos < r->len && r->data[r->pos] == '"') {
            r->pos++;
            for (;;) {
                if (r->pos >= r->len)
                    return cl_seterr(err, errlen, CL_EINVAL,
                                     "line %zu: quoted field %zu is not terminated", r->row_line,
                                     n + 1);
                char c = r->data[r->pos];
                if (c == '"') {
                    if (r->pos + 1 < r->len && r->data[r->pos + 1] == '"') {
                        rc = cl_buf_append(&r->store, "\"", 1);
                        r->pos += 2;
                    } else {
                        r->pos++;
                        break;
                    }
                } else {
                    /* Copy the run up to the next quote in one append. */
                    const char *q = memchr(r->data + r->pos, '"', r->len - r->pos);
                    size_t run = q ? (size_t)(q - (r->data + r->pos)) : r->len - r->pos;
                    for (size_t i = 0; i < run; i++)
                        if (r->data[r->pos + i] == '\n')
                            r->line++;
                    rc = cl_buf_append(&r->store, r->data + r->pos, run);
                    r->pos += run;
                }
                if (rc != CL_OK || r->store.len - field_start > CL_CSV_MAX_FIELD)
                    return cl_seterr(err, errlen, CL_EINVAL,
                                     "line %zu: field %zu longer than %u bytes", r->row_line,
                                     n + 1, CL_CSV_MAX_FIELD);
            }
            if (r->pos < r->len && r->data[r->pos] != ',' && r->data[r->pos] != '\n' &&
                r->data[r->pos] != '\r')
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "line %zu: text after the closing quote of field %zu",
                                 r->row_line, n + 1);
        } else {
            size_t start = r->pos;
            while (r->pos < r->len && r->data[r->pos] != ',' && r->data[r->pos] != '\n' &&
                   r->data[r->pos] != '\r') {
                if (r->data[r->pos] == '"')
                    return cl_seterr(err, errlen, CL_EINVAL,
                                     "line %zu: quote inside unquoted field %zu", r->row_line,
                                     n + 1);
                r->pos++;
            }
            if (r->pos - start > CL_CSV_MAX_FIELD)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "line %zu: field %zu longer than %u bytes", r->row_line, n + 1,
                                 CL_CSV_MAX_FIELD);
            if (cl_buf_append(&r->store, r->data + start, r->pos - start) != CL_OK)
                return cl_seterr(err, errlen, CL_ENOMEM, "line %zu: row too large", r->row_line);
        }
        if ((rc = end_field(r, &n, field_start, err, errlen)) != CL_OK)
            return rc;
        if (r->pos < r->len && r->data[r->pos] == ',') {
            r->pos++;
            continue;
        }
        /* End of row: CRLF, LF, lone CR, or end of data. */
        if (r->pos < r->len && r->data[r->pos] == '\r')
            r->pos++;
        if (r->pos < r->len && r->data[r->pos] == '\n') {
            r->pos++;
            r->line++;
        }
        break;
    }
    for (size_t i = 0; i < n; i++)
        r->fields[i] = r->store.data + r->offsets[i];
    *fields = r->fields;
    *nfields = n;
    return CL_OK;
}
