/*
 * outcome_mapping.h — a Salesforce Opportunity (REST JSON record, Bulk API CSV row or
 * report-export CSV row) into what the outcomes topic should say about it.
 *
 * What "version" means for an outcome: the record's SystemModstamp. Salesforce bumps
 * it on every change, so (Id, SystemModstamp) names one state of one opportunity and is
 * the dedupe key that makes the lookback overlap harmless. For every record the worker
 * sees, cl_outcome_decide() compares it with what was last published for that Id:
 *
 *   closed (IsClosed), newer than anything published   -> PUBLISH a WON/LOST value
 *   deleted (IsDeleted), an outcome was published      -> RETRACT (tombstone)
 *   open again after an outcome was published          -> RETRACT (tombstone): the
 *       old label no longer holds; when it closes again a newer version is published
 *   same or older SystemModstamp than published         -> SKIP (duplicate)
 *   open or deleted and nothing was ever published      -> SKIP (nothing to say)
 *
 * Every field is validated: Ids are 15/18-character Salesforce ids, datetimes are
 * parsed as UTC from Salesforce's "2013-05-20T20:49:32.000+0000", amounts must be
 * finite, strings are bounded. A record that fails names the field and the value.
 */
#ifndef CL_OUTCOMES_OUTCOME_MAPPING_H
#define CL_OUTCOMES_OUTCOME_MAPPING_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CL_SF_ID_MAX 18
#define CL_SF_TEXT_MAX 255

typedef struct {
    char id[CL_SF_ID_MAX + 1];
    char account_id[CL_SF_ID_MAX + 1]; /* "" when null */
    char owner_id[CL_SF_ID_MAX + 1];   /* "" when null */
    char stage_name[CL_SF_TEXT_MAX * 4 + 1];
    char type[CL_SF_TEXT_MAX * 4 + 1];        /* "" when null */
    char lead_source[CL_SF_TEXT_MAX * 4 + 1]; /* "" when null */
    char currency[4];                         /* "" when the org is single-currency */
    int is_closed, is_won, is_deleted;
    int has_close_date;
    int32_t close_date; /* days since epoch */
    int has_amount;
    double amount;
    int has_created;
    int64_t created_ms;
    int64_t modstamp_ms; /* SystemModstamp, or the configured fallback field */
} cl_sf_opportunity;

/* `modstamp_field`: "SystemModstamp" or "LastModifiedDate". */
int cl_sf_opportunity_from_json(const json_t *record, const char *modstamp_field,
                                cl_sf_opportunity *out, char *err, size_t errlen);

/* Maps the columns of a CSV file to Opportunity fields. */
typedef enum {
    CL_SF_F_ID = 0,
    CL_SF_F_ACCOUNT_ID,
    CL_SF_F_OWNER_ID,
    CL_SF_F_STAGE_NAME,
    CL_SF_F_IS_CLOSED,
    CL_SF_F_IS_WON,
    CL_SF_F_IS_DELETED,
    CL_SF_F_CLOSE_DATE,
    CL_SF_F_AMOUNT,
    CL_SF_F_CREATED_DATE,
    CL_SF_F_SYSTEM_MODSTAMP,
    CL_SF_F_LAST_MODIFIED_DATE,
    CL_SF_F_TYPE,
    CL_SF_F_LEAD_SOURCE,
    CL_SF_F_CURRENCY,
    CL_SF_F_COUNT
} cl_sf_field;

typedef struct {
    int column[CL_SF_F_COUNT]; /* index in the row, -1 when absent */
    size_t ncolumns;
    int us_dates; /* report exports in US locale: M/D/YYYY */
} cl_sf_csv_mapping;

/* Builds the mapping from a header row. `renames` (may be NULL or "") is a
 * comma-separated list of ApiName=Column Header pairs for report exports whose
 * headers are labels ("StageName=Stage,Amount=Amount (converted)"). Id, StageName and
 * CloseDate are required; without IsClosed/IsWon the stage name decides ("Closed Won"
 * is won, any other stage starting with "Closed" is lost). */
int cl_sf_csv_mapping_from_header(cl_sf_csv_mapping *m, char **header, size_t n,
                                  const char *renames, char *err, size_t errlen);

/* Parses one row; errors say "column <header>: ...". When the row has no modstamp
 * column the last-modified date, then the close date at midnight UTC, stands in. */
int cl_sf_opportunity_from_csv(const cl_sf_csv_mapping *m, char **row, size_t n,
                               const char *modstamp_field, cl_sf_opportunity *out, char *err,
                               size_t errlen);

/* What was last published for an opportunity (kept in LMDB by the worker). */
typedef enum {
    CL_OUTCOME_SEEN_NONE = 0,
    CL_OUTCOME_SEEN_OUTCOME = 1,
    CL_OUTCOME_SEEN_RETRACTED = 2
} cl_outcome_seen_state;
typedef struct {
    cl_outcome_seen_state state;
    int64_t modstamp_ms;
} cl_outcome_seen;

typedef enum {
    CL_OUTCOME_SKIP_DUPLICATE = 0,
    CL_OUTCOME_SKIP_NOTHING_TO_SAY,
    CL_OUTCOME_PUBLISH,
    CL_OUTCOME_RETRACT,
} cl_outcome_action;
const char *cl_outcome_action_name(cl_outcome_action a);

cl_outcome_action cl_outcome_decide(const cl_sf_opportunity *opp, const cl_outcome_seen *seen);

/* close_date - day of CreatedDate (negative for back-dated closes); callers check
 * has_close_date and has_created first (returns 0 when either is unknown). */
int32_t cl_outcome_days_to_close(const cl_sf_opportunity *opp);

/* Salesforce id: 15 or 18 ASCII alphanumerics. */
int cl_sf_id_valid(const char *s);

#endif
