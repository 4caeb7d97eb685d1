/*
 * input.h — rows of a scoring-run export (CSV with a header, or JSON Lines) turned into
 * cl_snapshot records, one row at a time, with errors that name file, line and column.
 *
 * The export comes from another system (the Open Pipeline Account Score) and is hostile
 * like everything from outside: every cell is length-checked, UTF-8 checked, and parsed
 * with the checked converters of util.h. A row that breaks a rule is rejected with a
 * message such as
 *     runs/run-2025-03-03.csv line 12 column 17 (speed_to_close): '104' is outside 0..100
 * and the reader carries on with the next row, so a run can report every bad row at once.
 * A problem that makes the rest of the file unreadable (a missing or doubled column in
 * the CSV header, a CSV quoting error) stops the file instead. In JSON Lines every line
 * stands alone, so a line that is not a JSON object is just a bad row.
 *
 * Column mapping. Each record field is read from the column of the same name unless
 * the mapping (snapshot.columns, "field=Column,field=Column") says otherwise, so
 * exports with their own header names need no preprocessing. Columns listed in
 * snapshot.attributes become entries of the record's `attributes` map (strings), those
 * in snapshot.features entries of its `features` map (finite numbers); every other
 * unknown column is ignored (the caller is told which, once per file).
 *
 * What the reader checks per row: required cells present (run_id, snapshot_time,
 * opportunity_id, stage, created_date, expected_close_date, the six components), ids
 * and names within the record bounds, numbers finite, components and source scores
 * within 0..100, days_in_stage a non-negative integer, dates YYYY-MM-DD, snapshot_time
 * ISO-8601, and the stage one of snapshot.stages when that list is configured. What it
 * cannot check alone — duplicate opportunity ids and one run_id per run — is the run's
 * business (snapshot.h). snapshot_id is filled with cl_snapshot_id(run_id, opportunity
 * id); `scores` is left empty for the scorer.
 *
 * The reader works over a buffer the caller owns (a whole run file is read into memory,
 * bounded by snapshot.max.file.bytes), because the run reads it twice: once to validate
 * every row before anything is published, once to publish.
 */
#ifndef CL_SNAPSHOT_INPUT_H
#define CL_SNAPSHOT_INPUT_H

#include <stddef.h>

#include "error.h"
#include "records.h"

typedef enum {
    CL_SNAPSHOT_FORMAT_AUTO = 0, /* by file extension, else by the first byte ('{') */
    CL_SNAPSHOT_FORMAT_CSV,
    CL_SNAPSHOT_FORMAT_JSONL,
} cl_snapshot_format;

int cl_snapshot_format_parse(const char *s, cl_snapshot_format *out);
const char *cl_snapshot_format_name(cl_snapshot_format f);
/* AUTO resolved: ".jsonl"/".ndjson"/".json" -> JSONL, ".csv" -> CSV, else by content. */
cl_snapshot_format cl_snapshot_format_detect(const char *name, const char *data, size_t len);

/* The record fields an export row can carry, in the agreed header order. */
typedef enum {
    CL_SF_RUN_ID = 0,
    CL_SF_SNAPSHOT_TIME,
    CL_SF_OPPORTUNITY_ID,
    CL_SF_ACCOUNT_ID,
    CL_SF_OWNER_ID,
    CL_SF_STAGE,
    CL_SF_AMOUNT,
    CL_SF_CURRENCY,
    CL_SF_CREATED_DATE,
    CL_SF_EXPECTED_CLOSE_DATE,
    CL_SF_DAYS_IN_STAGE,
    CL_SF_SEGMENT,
    CL_SF_REGION,
    CL_SF_PRODUCT,
    CL_SF_LEAD_SOURCE,
    CL_SF_TYPE,
    CL_SF_SPEED_TO_CLOSE,
    CL_SF_LARGEST_DEAL,
    CL_SF_PRODUCT_MIX,
    CL_SF_UPSELL_INSTANCES,
    CL_SF_WIN_RATE,
    CL_SF_RECENCY,
    CL_SF_OPPORTUNITY_SCORE,
    CL_SF_ACCOUNT_SCORE,
    CL_SF_COUNT
} cl_snapshot_field;

/* "run_id", ... in cl_snapshot_field order. */
extern const char *const cl_snapshot_field_names[CL_SF_COUNT];

#define CL_SNAPSHOT_LIST_MAX 64    /* entries of snapshot.stages */
#define CL_SNAPSHOT_COLUMN_MAX 256 /* bytes of a column name */

/* How rows are read. Strings are owned (copied) by the spec. */
typedef struct {
    char *column[CL_SF_COUNT];           /* column name of each field */
    char *attributes[CL_MAX_ATTRIBUTES]; /* columns carried as attributes */
    size_t n_attributes;
    char *features[CL_MAX_FEATURES]; /* columns carried as features */
    size_t n_features;
    char *stages[CL_SNAPSHOT_LIST_MAX]; /* allowed stages; none: any */
    size_t n_stages;
} cl_snapshot_input_spec;

/* Builds a spec from the option values (each may be NULL or ""):
 *   columns     "field=Column,..." (field names of cl_snapshot_field_names)
 *   attributes  "Column,Column,..."
 *   features    "Column,Column,..."
 *   stages      "Prospecting,Qualification,..."
 * Errors name the option and the entry. On error the spec is freed. */
int cl_snapshot_input_spec_init(cl_snapshot_input_spec *spec, const char *columns,
                                const char *attributes, const char *features, const char *stages,
                                char *err, size_t errlen);
void cl_snapshot_input_spec_free(cl_snapshot_input_spec *spec);

typedef struct cl_snapshot_input cl_snapshot_input;

/* Opens a reader over data[0..len) (which must outlive it). name names the input in
 * every message (a path, "stdin"). For CSV the header is read and checked here: a
 * missing required column or a column named twice is CL_EINVAL. *ignored (may be NULL)
 * receives a comma-separated list of the columns that are neither mapped, attributes
 * nor features (CSV only; "" when none), valid until close. */
int cl_snapshot_input_open(cl_snapshot_input **out, const cl_snapshot_input_spec *spec,
                           const char *name, const char *data, size_t len,
                           cl_snapshot_format format, const char **ignored, char *err,
                           size_t errlen);

/*
 * Reads the next row into *out and its first line into *line.
 *   CL_OK        a valid row;
 *   CL_ENOTFOUND no more rows;
 *   CL_EINVAL    this row is bad (err names file, line and column); call again for
 *                the next one;
 *   CL_ERR       the rest of the input cannot be read (a CSV quoting error): stop.
 */
int cl_snapshot_input_next(cl_snapshot_input *in, cl_snapshot *out, size_t *line, char *err,
                           size_t errlen);

void cl_snapshot_input_close(cl_snapshot_input *in);

#endif
