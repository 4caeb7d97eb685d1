/*
 * csv.h — the one RFC 4180 reader of closedloop: scoring-run exports read by the
 * snapshot worker, and Salesforce CSV (Bulk API 2.0 query results and
 * report exports of closed opportunities) read by the outcomes worker.
 *
 * Both come from outside, so the reader is strict and bounded: quoted fields may hold
 * separators, quotes ("" escapes) and line breaks; a quote inside an unquoted field,
 * text after a closing quote, or an unterminated quote is an error naming the line;
 * fields and rows are capped (CL_CSV_MAX_FIELD bytes, CL_CSV_MAX_FIELDS columns). A
 * UTF-8 byte-order mark (Excel and Salesforce report exports write one) is skipped.
 * The reader works over a buffer the caller owns: Bulk results arrive one page per
 * HTTP response and report exports are read whole (bounded by the caller).
 */
#ifndef CL_CSV_H
#define CL_CSV_H

#include <stddef.h>

#include "util.h"

#define CL_CSV_MAX_FIELD (1u << 20)
#define CL_CSV_MAX_FIELDS 512

typedef struct {
    const char *data;
    size_t len, pos;
    size_t line;      /* 1-based line of the next unread byte */
    size_t row_line;  /* line on which the last returned row started */
    cl_buf store;     /* the current row's fields, NUL-separated */
    size_t offsets[CL_CSV_MAX_FIELDS];
    char *fields[CL_CSV_MAX_FIELDS];
} cl_csv_reader;

void cl_csv_reader_init(cl_csv_reader *r, const char *data, size_t len);
void cl_csv_reader_free(cl_csv_reader *r);

/* Reads the next row. Returns CL_OK and sets *fields / *nfields (valid until the next
 * call), CL_ENOTFOUND at the end of the data, or CL_EINVAL with "line N: ..." in err.
 * Blank lines are skipped. */
int cl_csv_next_row(cl_csv_reader *r, char ***fields, size_t *nfields, char *err, size_t errlen);

#endif
