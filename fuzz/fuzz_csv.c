/*
 * fuzz_csv.c — arbitrary bytes into the one CSV reader (common/csv.h), which reads
 * scoring-run exports, Bulk API 2.0 result pages and Salesforce report exports.
 *
 * Invariants checked beyond "no crash, no leak": every row the reader returns has
 * 1..CL_CSV_MAX_FIELDS fields, each at most CL_CSV_MAX_FIELD bytes; the line counter
 * never runs backwards; an error message names a line; and the reader makes progress
 * (each call consumes input or ends), so a hostile file cannot spin it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cl_csv_reader r;
    cl_csv_reader_init(&r, (const char *)data, size);
    char err[CL_ERRLEN];
    size_t last_line = 0, last_pos = 0;
    for (;;) {
        char **fields;
        size_t n;
        err[0] = '\0';
        int rc = cl_csv_next_row(&r, &fields, &n, err, sizeof err);
        if (rc == CL_ENOTFOUND) break;
        if (rc != CL_OK) {
            if ((rc != CL_EINVAL && rc != CL_ENOMEM) || strncmp(err, "line ", 5) != 0) abort();
            break;
        }
        if (n == 0 || n > CL_CSV_MAX_FIELDS) abort();
        for (size_t i = 0; i < n; i++)
            if (!fields[i] || strlen(fields[i]) > CL_CSV_MAX_FIELD) abort();
        if (r.row_line < last_line || r.line < r.row_line) abort();
        if (r.pos <= last_pos || r.pos > size) abort();
        last_line = r.row_line;
        last_pos = r.pos;
    }
    cl_csv_reader_free(&r);
    return 0;
}
