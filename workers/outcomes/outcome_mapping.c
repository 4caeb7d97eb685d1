/*
 * outcome_mapping.c — Opportunity JSON/CSV -> validated struct -> publish decision.
 * See outcome_mapping.h.
 */
#include "outcome_mapping.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "util.h"

const char *cl_outcome_action_name(cl_outcome_action a)
{
    switch (a) {
    case CL_OUTCOME_SKIP_DUPLICATE:
        return "skip_duplicate";
    case CL_OUTCOME_SKIP_NOTHING_TO_SAY:
        return "skip_nothing_to_say";
    case CL_OUTCOME_PUBLISH:
        return "publish";
    case CL_OUTCOME_RETRACT:
        return "retract";
    }
    return "unknown";
}

int cl_sf_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= CL_SF_ID_MAX || !isalnum((unsigned char)s[n])) return 0;
    return n == 15 || n == 18;
}

static const char *const field_names[CL_SF_F_COUNT] = {
    "Id",       "AccountId",   "OwnerId",         "StageName",
    "IsClosed", "IsWon",       "IsDeleted",       "CloseDate",
    "Amount",   "CreatedDate", "SystemModstamp",  "LastModifiedDate",
    "Type",     "LeadSource",  "CurrencyIsoCode",
};

/* --- typed setters shared by the JSON and CSV paths --------------------------------
 * Each takes the textual value (NULL or "" meaning null) so both sources are validated
 * by the same code. */

static int set_id(char *dst, const char *field, const char *v, int required, char *err,
                  size_t errlen)
{
    if (!v || !v[0]) {
        if (required)
            return cl_seterr(err, errlen, CL_EINVAL, "field %s is missing or null", field);
        dst[0] = '\0';
        return CL_OK;
    }
    if (!cl_sf_id_valid(v))
        return cl_seterr(err, errlen, CL_EINVAL,
                         "field %s: '%.40s' is not a 15 or 18 character Salesforce id", field, v);
    cl_strlcpy(dst, v, CL_SF_ID_MAX + 1);
    return CL_OK;
}

static int set_text(char *dst, size_t cap, const char *field, const char *v, int required,
                    char *err, size_t errlen)
{
    if (!v || !v[0]) {
        if (required)
            return cl_seterr(err, errlen, CL_EINVAL, "field %s is missing or empty", field);
        dst[0] = '\0';
        return CL_OK;
    }
    if (cl_strlcpy(dst, v, cap) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "field %s: value longer than %zu bytes", field,
                         cap - 1);
    return CL_OK;
}

static int set_bool(int *dst, const char *field, const char *v, char *err, size_t errlen)
{
    if (!v || !v[0]) {
        *dst = 0;
        return CL_OK;
    }
    if (cl_parse_bool(v, dst) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "field %s: '%.40s' is not a boolean", field, v);
    return CL_OK;
}

/* M/D/YYYY (US report exports) -> days since epoch. */
static int parse_us_date(const char *v, int32_t *days)
{
    unsigned m, d, y;
    int consumed = 0;
    if (sscanf(v, "%2u/%2u/%4u%n", &m, &d, &y, &consumed) != 3 || v[consumed] != '\0')
        return CL_EINVAL;
    char iso[16];
    snprintf(iso, sizeof iso, "%04u-%02u-%02u", y, m, d);
    return cl_parse_date(iso, days);
}

static int set_date(int *has, int32_t *dst, const char *field, const char *v, int us, char *err,
                    size_t errlen)
{
    *has = 0;
    if (!v || !v[0]) return CL_OK;
    int rc = cl_parse_date(v, dst);
    if (rc != CL_OK && us) rc = parse_us_date(v, dst);
    if (rc != CL_OK) {
        /* Some exports write a datetime where a date is expected. */
        int64_t ms;
        if (cl_parse_timestamp(v, &ms) == CL_OK) {
            int64_t day = ms / 86400000;
            if (ms % 86400000 < 0) day--;
            *dst = (int32_t)day;
            rc = CL_OK;
        }
    }
    if (rc != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "field %s: '%.40s' is not a date", field, v);
    *has = 1;
    return CL_OK;
}

static int set_datetime(int *has, int64_t *dst, const char *field, const char *v, int us, char *err,
                        size_t errlen)
{
    *has = 0;
    if (!v || !v[0]) return CL_OK;
    if (cl_parse_timestamp(v, dst) != CL_OK) {
        int32_t days;
        if (us && parse_us_date(v, &days) == CL_OK) {
            *dst = (int64_t)days * 86400000;
        } else {
            return cl_seterr(err, errlen, CL_EINVAL, "field %s: '%.40s' is not a datetime", field,
                             v);
        }
    }
    *has = 1;
    return CL_OK;
}

static int set_amount(cl_sf_opportunity *o, const char *v, char *err, size_t errlen)
{
    o->has_amount = 0;
    if (!v || !v[0]) return CL_OK;
    if (cl_parse_double(v, &o->amount) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "field Amount: '%.40s' is not a finite number", v);
    o->has_amount = 1;
    return CL_OK;
}

/* Fills `o` from the textual values vals[CL_SF_F_*] (NULL = absent/null). */
static int fill(cl_sf_opportunity *o, const char *const *vals, const char *modstamp_field, int us,
                char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    int rc;
    if ((rc = set_id(o->id, "Id", vals[CL_SF_F_ID], 1, err, errlen)) != CL_OK ||
        (rc = set_id(o->account_id, "AccountId", vals[CL_SF_F_ACCOUNT_ID], 0, err, errlen)) ||
        (rc = set_id(o->owner_id, "OwnerId", vals[CL_SF_F_OWNER_ID], 0, err, errlen)) ||
        (rc = set_text(o->stage_name, sizeof o->stage_name, "StageName", vals[CL_SF_F_STAGE_NAME],
                       0, err, errlen)) ||
        (rc = set_text(o->type, sizeof o->type, "Type", vals[CL_SF_F_TYPE], 0, err, errlen)) ||
        (rc = set_text(o->lead_source, sizeof o->lead_source, "LeadSource",
                       vals[CL_SF_F_LEAD_SOURCE], 0, err, errlen)) ||
        (rc = set_text(o->currency, sizeof o->currency, "CurrencyIsoCode", vals[CL_SF_F_CURRENCY],
                       0, err, errlen)) ||
        (rc = set_bool(&o->is_closed, "IsClosed", vals[CL_SF_F_IS_CLOSED], err, errlen)) ||
        (rc = set_bool(&o->is_won, "IsWon", vals[CL_SF_F_IS_WON], err, errlen)) ||
        (rc = set_bool(&o->is_deleted, "IsDeleted", vals[CL_SF_F_IS_DELETED], err, errlen)) ||
        (rc = set_date(&o->has_close_date, &o->close_date, "CloseDate", vals[CL_SF_F_CLOSE_DATE],
                       us, err, errlen)) ||
        (rc = set_amount(o, vals[CL_SF_F_AMOUNT], err, errlen)) ||
        (rc = set_datetime(&o->has_created, &o->created_ms, "CreatedDate",
                           vals[CL_SF_F_CREATED_DATE], us, err, errlen)))
        return rc;

    cl_sf_field mf = (modstamp_field && strcmp(modstamp_field, "LastModifiedDate") == 0)
                         ? CL_SF_F_LAST_MODIFIED_DATE
                         : CL_SF_F_SYSTEM_MODSTAMP;
    int has_mod = 0;
    if ((rc = set_datetime(&has_mod, &o->modstamp_ms, field_names[mf], vals[mf], us, err,
                           errlen)) != CL_OK)
        return rc;
    if (!has_mod)
        return cl_seterr(err, errlen, CL_EINVAL, "field %s is missing or null", field_names[mf]);
    if (o->is_closed && !o->is_deleted && !o->has_close_date)
        return cl_seterr(err, errlen, CL_EINVAL, "closed opportunity %s has no CloseDate", o->id);
    if (o->is_won && !o->is_closed)
        return cl_seterr(err, errlen, CL_EINVAL, "opportunity %s has IsWon without IsClosed",
                         o->id);
    return CL_OK;
}

int cl_sf_opportunity_from_json(const json_t *record, const char *modstamp_field,
                                cl_sf_opportunity *out, char *err, size_t errlen)
{
    if (!json_is_object(record))
        return cl_seterr(err, errlen, CL_EINVAL, "record is not a JSON object");
    const char *vals[CL_SF_F_COUNT] = {0};
    char numbuf[64];
    for (int f = 0; f < CL_SF_F_COUNT; f++) {
        const json_t *v = json_object_get(record, field_names[f]);
        if (!v || json_is_null(v)) continue;
        if (json_is_string(v)) {
            vals[f] = json_string_value(v);
        } else if (json_is_boolean(v)) {
            vals[f] = json_is_true(v) ? "true" : "false";
        } else if (json_is_number(v) && f == CL_SF_F_AMOUNT) {
            snprintf(numbuf, sizeof numbuf, "%.17g", json_number_value(v));
            vals[f] = numbuf;
        } else {
            return cl_seterr(err, errlen, CL_EINVAL, "field %s has an unexpected JSON type",
                             field_names[f]);
        }
        if (strlen(vals[f]) == 0 && f == CL_SF_F_ID) vals[f] = NULL;
    }
    /* A record without IsClosed means the query did not select it: that is a bug in
     * the query, not a fact about the opportunity, so refuse rather than guess. */
    if (!json_is_boolean(json_object_get(record, "IsClosed")))
        return cl_seterr(err, errlen, CL_EINVAL, "field IsClosed is missing or not a boolean");
    int rc = fill(out, vals, modstamp_field, 0, err, errlen);
    if (rc != CL_OK && vals[CL_SF_F_ID] && cl_sf_id_valid(vals[CL_SF_F_ID])) {
        char inner[CL_ERRLEN];
        cl_strlcpy(inner, err ? err : "", sizeof inner);
        cl_seterr(err, errlen, rc, "opportunity %s: %s", vals[CL_SF_F_ID], inner);
    }
    return rc;
}

int cl_sf_csv_mapping_from_header(cl_sf_csv_mapping *m, char **header, size_t n,
                                  const char *renames, char *err, size_t errlen)
{
    const char *want[CL_SF_F_COUNT];
    char renames_copy[2048];
    for (int f = 0; f < CL_SF_F_COUNT; f++)
        want[f] = field_names[f];
    if (renames && renames[0]) {
        if (cl_strlcpy(renames_copy, renames, sizeof renames_copy) != CL_OK)
            return cl_seterr(err, errlen, CL_EINVAL, "CSV column mapping longer than %zu bytes",
                             sizeof renames_copy - 1);
        char *save = NULL;
        for (char *pair = strtok_r(renames_copy, ",", &save); pair;
             pair = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(pair, '=');
            if (!eq || eq == pair || !eq[1])
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "CSV column mapping '%.80s' is not ApiName=Column", pair);
            *eq = '\0';
            int found = 0;
            for (int f = 0; f < CL_SF_F_COUNT; f++) {
                if (strcmp(pair, field_names[f]) == 0) {
                    want[f] = eq + 1;
                    found = 1;
                }
            }
            if (!found)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "CSV column mapping names unknown field '%.40s' (known: Id, "
                                 "AccountId, OwnerId, StageName, IsClosed, IsWon, IsDeleted, "
                                 "CloseDate, Amount, CreatedDate, SystemModstamp, "
                                 "LastModifiedDate, Type, LeadSource, CurrencyIsoCode)",
                                 pair);
        }
    }
    m->ncolumns = n;
    for (int f = 0; f < CL_SF_F_COUNT; f++) {
        m->column[f] = -1;
        for (size_t c = 0; c < n; c++) {
            if (strcmp(header[c], want[f]) == 0) {
                if (m->column[f] != -1)
                    return cl_seterr(err, errlen, CL_EINVAL,
                                     "CSV header names column '%.80s' twice", want[f]);
                m->column[f] = (int)c;
            }
        }
    }
    static const cl_sf_field required[] = {CL_SF_F_ID, CL_SF_F_STAGE_NAME, CL_SF_F_CLOSE_DATE};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (m->column[required[i]] < 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "CSV header has no column '%.80s' for %s (map it with "
                             "outcomes.csv.columns=%s=<header>)",
                             want[required[i]], field_names[required[i]], field_names[required[i]]);
    return CL_OK;
}

int cl_sf_opportunity_from_csv(const cl_sf_csv_mapping *m, char **row, size_t n,
                               const char *modstamp_field, cl_sf_opportunity *out, char *err,
                               size_t errlen)
{
    if (n != m->ncolumns)
        return cl_seterr(err, errlen, CL_EINVAL, "row has %zu columns, header has %zu", n,
                         m->ncolumns);
    const char *vals[CL_SF_F_COUNT] = {0};
    for (int f = 0; f < CL_SF_F_COUNT; f++)
        if (m->column[f] >= 0) vals[f] = row[m->column[f]];

    /* Report exports often lack the flags; the standard stage names carry them. */
    const char *stage = vals[CL_SF_F_STAGE_NAME] ? vals[CL_SF_F_STAGE_NAME] : "";
    if (m->column[CL_SF_F_IS_CLOSED] < 0)
        vals[CL_SF_F_IS_CLOSED] = strncasecmp(stage, "Closed", 6) == 0 ? "true" : "false";
    if (m->column[CL_SF_F_IS_WON] < 0)
        vals[CL_SF_F_IS_WON] = strcasecmp(stage, "Closed Won") == 0 ? "true" : "false";
    /* Without a modstamp column, fall back to LastModifiedDate, then to CloseDate: a
     * report has one row per opportunity, so the close date is a usable version. */
    cl_sf_field mf = (modstamp_field && strcmp(modstamp_field, "LastModifiedDate") == 0)
                         ? CL_SF_F_LAST_MODIFIED_DATE
                         : CL_SF_F_SYSTEM_MODSTAMP;
    if (!vals[mf] || !vals[mf][0]) {
        if (vals[CL_SF_F_LAST_MODIFIED_DATE] && vals[CL_SF_F_LAST_MODIFIED_DATE][0])
            vals[mf] = vals[CL_SF_F_LAST_MODIFIED_DATE];
        else
            vals[mf] = vals[CL_SF_F_CLOSE_DATE];
    }
    return fill(out, vals, modstamp_field, m->us_dates, err, errlen);
}

cl_outcome_action cl_outcome_decide(const cl_sf_opportunity *opp, const cl_outcome_seen *seen)
{
    cl_outcome_seen none = {CL_OUTCOME_SEEN_NONE, 0};
    if (!seen) seen = &none;
    if (seen->state != CL_OUTCOME_SEEN_NONE && opp->modstamp_ms <= seen->modstamp_ms)
        return CL_OUTCOME_SKIP_DUPLICATE;
    if (opp->is_deleted || !opp->is_closed) {
        /* Only an outcome that is still standing needs retracting. */
        return seen->state == CL_OUTCOME_SEEN_OUTCOME ? CL_OUTCOME_RETRACT
                                                      : CL_OUTCOME_SKIP_NOTHING_TO_SAY;
    }
    return CL_OUTCOME_PUBLISH;
}

int32_t cl_outcome_days_to_close(const cl_sf_opportunity *opp)
{
    if (!opp->has_close_date || !opp->has_created) return 0;
    int64_t created_day = opp->created_ms / 86400000;
    if (opp->created_ms % 86400000 < 0) created_day--;
    /* Negative when Salesforce holds a back-dated CloseDate; kept as the data says. */
    return (int32_t)((int64_t)opp->close_date - created_day);
}
