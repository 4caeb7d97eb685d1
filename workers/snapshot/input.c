/*
 * input.c — scoring-run export rows (CSV / JSON Lines) -> cl_snapshot. See input.h.
 */
#include "input.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "util.h"

const char *const cl_snapshot_field_names[CL_SF_COUNT] = {
    "run_id",
    "snapshot_time",
    "opportunity_id",
    "account_id",
    "owner_id",
    "stage",
    "amount",
    "currency",
    "created_date",
    "expected_close_date",
    "days_in_stage",
    "segment",
    "region",
    "product",
    "lead_source",
    "type",
    "speed_to_close",
    "largest_deal",
    "product_mix",
    "upsell_instances",
    "win_rate",
    "recency",
    "opportunity_score",
    "account_score",
};

/* A JSON Lines line longer than this is rejected without being parsed. */
#define LINE_MAX_BYTES (1u << 20)
/* Room for the text of a JSON number (%.17g of a double, or an int64). */
#define NUMBER_TEXT 40

/* Cells of one row: the field's text (NULL: no such column/key; "": empty or null)
 * and the CSV column it came from (for messages). */
typedef struct {
    const char *v[CL_SF_COUNT];
    int col[CL_SF_COUNT];
    const char *attr[CL_MAX_ATTRIBUTES];
    int attr_col[CL_MAX_ATTRIBUTES];
    const char *feat[CL_MAX_FEATURES];
    int feat_col[CL_MAX_FEATURES];
} row_cells;

struct cl_snapshot_input {
    const cl_snapshot_input_spec *spec;
    char name[512];
    cl_snapshot_format format;
    const char *data;
    size_t len;
    /* CSV */
    cl_csv_reader csv;
    int csv_open;
    size_t ncols;
    char **header; /* column names, owned */
    int field_col[CL_SF_COUNT];
    int attr_col[CL_MAX_ATTRIBUTES];
    int feat_col[CL_MAX_FEATURES];
    cl_buf ignored;
    /* JSON Lines */
    size_t pos, line;
    json_t *json; /* the current line's object */
    char numbers[CL_SF_COUNT + CL_MAX_ATTRIBUTES + CL_MAX_FEATURES][NUMBER_TEXT];
};

/* ---- formats ------------------------------------------------------------------------ */

int cl_snapshot_format_parse(const char *s, cl_snapshot_format *out)
{
    if (!s || strcmp(s, "auto") == 0)
        *out = CL_SNAPSHOT_FORMAT_AUTO;
    else if (strcmp(s, "csv") == 0)
        *out = CL_SNAPSHOT_FORMAT_CSV;
    else if (strcmp(s, "jsonl") == 0)
        *out = CL_SNAPSHOT_FORMAT_JSONL;
    else
        return CL_EINVAL;
    return CL_OK;
}

const char *cl_snapshot_format_name(cl_snapshot_format f)
{
    switch (f) {
    case CL_SNAPSHOT_FORMAT_AUTO:
        return "auto";
    case CL_SNAPSHOT_FORMAT_CSV:
        return "csv";
    case CL_SNAPSHOT_FORMAT_JSONL:
        return "jsonl";
    }
    return "?";
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

cl_snapshot_format cl_snapshot_format_detect(const char *name, const char *data, size_t len)
{
    if (name &&
        (ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json")))
        return CL_SNAPSHOT_FORMAT_JSONL;
    if (name && ends_with(name, ".csv")) return CL_SNAPSHOT_FORMAT_CSV;
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return i < len && data[i] == '{' ? CL_SNAPSHOT_FORMAT_JSONL : CL_SNAPSHOT_FORMAT_CSV;
}

/* ---- spec --------------------------------------------------------------------------- */

void cl_snapshot_input_spec_free(cl_snapshot_input_spec *spec)
{
    for (size_t i = 0; i < CL_SF_COUNT; i++)
        free(spec->column[i]);
    for (size_t i = 0; i < spec->n_attributes; i++)
        free(spec->attributes[i]);
    for (size_t i = 0; i < spec->n_features; i++)
        free(spec->features[i]);
    for (size_t i = 0; i < spec->n_stages; i++)
        free(spec->stages[i]);
    memset(spec, 0, sizeof *spec);
}

static int field_index(const char *name, size_t len)
{
    for (int i = 0; i < CL_SF_COUNT; i++)
        if (strlen(cl_snapshot_field_names[i]) == len &&
            memcmp(cl_snapshot_field_names[i], name, len) == 0)
            return i;
    return -1;
}

/* Trimmed [start, end) of the next comma-separated item of *p; advances *p. */
static int next_item(const char **p, const char **start, size_t *len)
{
    const char *s = *p;
    if (!s || !*s) return 0;
    const char *comma = strchr(s, ',');
    const char *e = comma ? comma : s + strlen(s);
    *p = comma ? comma + 1 : e;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *start = s;
    *len = (size_t)(e - s);
    return 1;
}

static int parse_list(const char *option, const char *value, char **items, size_t *n, size_t max,
                      size_t item_max, char *err, size_t errlen)
{
    const char *p = value, *s;
    size_t len;
    while (next_item(&p, &s, &len)) {
        if (len == 0)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: empty entry in '%.200s'", option, value);
        if (len > item_max)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s: entry '%.40s...' is longer than %zu "
                             "bytes",
                             option, s, item_max);
        for (size_t i = 0; i < *n; i++)
            if (strlen(items[i]) == len && memcmp(items[i], s, len) == 0)
                return cl_seterr(err, errlen, CL_EINVAL, "%s: '%.*s' is listed twice", option,
                                 (int)len, s);
        if (*n >= max)
            return cl_seterr(err, errlen, CL_EINVAL, "%s: more than %zu entries", option, max);
        if (!(items[*n] = strndup(s, len)))
            return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        (*n)++;
    }
    return CL_OK;
}

int cl_snapshot_input_spec_init(cl_snapshot_input_spec *spec, const char *columns,
                                const char *attributes, const char *features, const char *stages,
                                char *err, size_t errlen)
{
    memset(spec, 0, sizeof *spec);
    int rc = CL_OK;
    const char *p = columns, *s;
    size_t len;
    while (rc == CL_OK && next_item(&p, &s, &len)) {
        const char *eq = memchr(s, '=', len);
        if (!eq || eq == s || eq == s + len - 1) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "snapshot.columns: '%.*s' is not field=Column",
                           (int)len, s);
            break;
        }
        size_t flen = (size_t)(eq - s);
        while (flen > 0 && (s[flen - 1] == ' ' || s[flen - 1] == '\t'))
            flen--;
        const char *c = eq + 1;
        size_t clen = len - (size_t)(c - s);
        while (clen > 0 && (*c == ' ' || *c == '\t')) {
            c++;
            clen--;
        }
        int f = field_index(s, flen);
        if (f < 0)
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "snapshot.columns: '%.*s' is not a snapshot field (run_id, "
                           "opportunity_id, speed_to_close, ...)",
                           (int)flen, s);
        else if (spec->column[f])
            rc = cl_seterr(err, errlen, CL_EINVAL, "snapshot.columns: field '%s' is mapped twice",
                           cl_snapshot_field_names[f]);
        else if (clen == 0 || clen > CL_SNAPSHOT_COLUMN_MAX)
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "snapshot.columns: column name of '%s' is empty or longer than %d "
                           "bytes",
                           cl_snapshot_field_names[f], CL_SNAPSHOT_COLUMN_MAX);
        else if (!(spec->column[f] = strndup(c, clen)))
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    for (int f = 0; rc == CL_OK && f < CL_SF_COUNT; f++)
        if (!spec->column[f] && !(spec->column[f] = strdup(cl_snapshot_field_names[f])))
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    if (rc == CL_OK)
        rc = parse_list("snapshot.attributes", attributes, spec->attributes, &spec->n_attributes,
                        CL_MAX_ATTRIBUTES, CL_NAME_MAX, err, errlen);
    if (rc == CL_OK)
        rc = parse_list("snapshot.features", features, spec->features, &spec->n_features,
                        CL_MAX_FEATURES, CL_NAME_MAX, err, errlen);
    if (rc == CL_OK)
        rc = parse_list("snapshot.stages", stages, spec->stages, &spec->n_stages,
                        CL_SNAPSHOT_LIST_MAX, CL_NAME_MAX, err, errlen);
    /* A column may feed one thing only, or a row would say two things about it. */
    for (size_t i = 0; rc == CL_OK && i < spec->n_attributes + spec->n_features; i++) {
        const char *a =
            i < spec->n_attributes ? spec->attributes[i] : spec->features[i - spec->n_attributes];
        for (int f = 0; rc == CL_OK && f < CL_SF_COUNT; f++)
            if (strcmp(a, spec->column[f]) == 0)
                rc = cl_seterr(err, errlen, CL_EINVAL,
                               "column '%s' is both the %s field and an extra attribute/feature", a,
                               cl_snapshot_field_names[f]);
        for (size_t j = 0; rc == CL_OK && j < spec->n_features && i < spec->n_attributes; j++)
            if (strcmp(a, spec->features[j]) == 0)
                rc = cl_seterr(err, errlen, CL_EINVAL,
                               "column '%s' is both in snapshot.attributes and snapshot.features",
                               a);
    }
    for (int f = 0; rc == CL_OK && f < CL_SF_COUNT; f++)
        for (int g = 0; rc == CL_OK && g < f; g++)
            if (strcmp(spec->column[f], spec->column[g]) == 0)
                rc = cl_seterr(
                    err, errlen, CL_EINVAL, "snapshot.columns: column '%s' feeds both %s and %s",
                    spec->column[f], cl_snapshot_field_names[g], cl_snapshot_field_names[f]);
    if (rc != CL_OK) cl_snapshot_input_spec_free(spec);
    return rc;
}

/* ---- cell conversion ------------------------------------------------------------------ */

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* "file line N column C (name)" or "file line N key \"name\"". */
static void where(const cl_snapshot_input *in, size_t line, int col, const char *name, char *out,
                  size_t outlen)
{
    if (in->format == CL_SNAPSHOT_FORMAT_CSV && col >= 0)
        snprintf(out, outlen, "%s line %zu column %d (%s)", in->name, line, col + 1, name);
    else
        snprintf(out, outlen, "%s line %zu key \"%s\"", in->name, line, name);
}

typedef struct {
    const cl_snapshot_input *in;
    size_t line;
    char *err;
    size_t errlen;
} row_ctx;

static int bad(const row_ctx *c, int col, const char *name, const char *value, const char *what)
{
    char at[768];
    where(c->in, c->line, col, name, at, sizeof at);
    if (value)
        return cl_seterr(c->err, c->errlen, CL_EINVAL, "%s: '%.64s%s' %s", at, value,
                         strlen(value) > 64 ? "..." : "", what);
    return cl_seterr(c->err, c->errlen, CL_EINVAL, "%s: %s", at, what);
}

static int get_string(const row_ctx *c, const row_cells *rc, int f, int required, char *dst,
                      size_t cap)
{
    const char *v = rc->v[f];
    const char *name = c->in->spec->column[f];
    if (!v || !*v) {
        if (required) return bad(c, rc->col[f], name, NULL, v ? "is empty" : "is missing");
        dst[0] = '\0';
        return CL_OK;
    }
    if (!utf8_valid(v)) return bad(c, rc->col[f], name, NULL, "is not valid UTF-8");
    if (cl_strlcpy(dst, v, cap) != CL_OK) {
        char what[64];
        snprintf(what, sizeof what, "is longer than %zu bytes", cap - 1);
        return bad(c, rc->col[f], name, v, what);
    }
    return CL_OK;
}

static int get_double(const row_ctx *c, int col, const char *name, const char *v, int required,
                      double lo, double hi, cl_opt_double *out)
{
    out->present = false;
    out->value = 0;
    if (!v || !*v) return required ? bad(c, col, name, NULL, v ? "is empty" : "is missing") : CL_OK;
    double d;
    if (cl_parse_double(v, &d) != CL_OK) return bad(c, col, name, v, "is not a number");
    if (lo < hi && (d < lo || d > hi)) {
        char what[64];
        snprintf(what, sizeof what, "is outside %g..%g", lo, hi);
        return bad(c, col, name, v, what);
    }
    out->present = true;
    out->value = d;
    return CL_OK;
}

static int get_date(const row_ctx *c, const row_cells *rc, int f, int32_t *out)
{
    const char *v = rc->v[f];
    const char *name = c->in->spec->column[f];
    if (!v || !*v) return bad(c, rc->col[f], name, NULL, v ? "is empty" : "is missing");
    if (cl_parse_date(v, out) != CL_OK)
        return bad(c, rc->col[f], name, v, "is not a date (YYYY-MM-DD)");
    return CL_OK;
}

static int stage_allowed(const cl_snapshot_input_spec *spec, const char *stage)
{
    if (spec->n_stages == 0) return 1;
    for (size_t i = 0; i < spec->n_stages; i++)
        if (strcmp(spec->stages[i], stage) == 0) return 1;
    return 0;
}

static int fill(const row_ctx *c, const row_cells *rc, cl_snapshot *s)
{
    const cl_snapshot_input_spec *spec = c->in->spec;
    int r;
    cl_snapshot_init(s);
    if ((r = get_string(c, rc, CL_SF_RUN_ID, 1, s->run_id, sizeof s->run_id)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_OPPORTUNITY_ID, 1, s->opportunity_id,
                        sizeof s->opportunity_id)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_ACCOUNT_ID, 0, s->account_id, sizeof s->account_id)) !=
            CL_OK ||
        (r = get_string(c, rc, CL_SF_OWNER_ID, 0, s->owner_id, sizeof s->owner_id)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_STAGE, 1, s->stage, sizeof s->stage)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_SEGMENT, 0, s->segment, sizeof s->segment)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_REGION, 0, s->region, sizeof s->region)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_PRODUCT, 0, s->product, sizeof s->product)) != CL_OK ||
        (r = get_string(c, rc, CL_SF_LEAD_SOURCE, 0, s->lead_source, sizeof s->lead_source)) !=
            CL_OK ||
        (r = get_string(c, rc, CL_SF_TYPE, 0, s->type, sizeof s->type)) != CL_OK)
        return r;
    if (!stage_allowed(spec, s->stage))
        return bad(c, rc->col[CL_SF_STAGE], spec->column[CL_SF_STAGE], s->stage,
                   "is not one of snapshot.stages");
    char currency[CL_CURRENCY_MAX + 1];
    if ((r = get_string(c, rc, CL_SF_CURRENCY, 0, currency, sizeof currency)) != CL_OK) return r;
    if (currency[0])
        memcpy(s->currency, currency, sizeof currency); /* empty keeps the default (USD) */

    const char *tv = rc->v[CL_SF_SNAPSHOT_TIME];
    const char *tname = spec->column[CL_SF_SNAPSHOT_TIME];
    if (!tv || !*tv)
        return bad(c, rc->col[CL_SF_SNAPSHOT_TIME], tname, NULL, tv ? "is empty" : "is missing");
    if (cl_parse_timestamp(tv, &s->snapshot_time) != CL_OK)
        return bad(c, rc->col[CL_SF_SNAPSHOT_TIME], tname, tv,
                   "is not an ISO-8601 timestamp (2025-03-03T06:00:00.000Z)");
    if ((r = get_date(c, rc, CL_SF_CREATED_DATE, &s->created_date)) != CL_OK ||
        (r = get_date(c, rc, CL_SF_EXPECTED_CLOSE_DATE, &s->expected_close_date)) != CL_OK)
        return r;

    if ((r = get_double(c, rc->col[CL_SF_AMOUNT], spec->column[CL_SF_AMOUNT], rc->v[CL_SF_AMOUNT],
                        0, 0, 0, &s->amount)) != CL_OK)
        return r;
    const char *dv = rc->v[CL_SF_DAYS_IN_STAGE];
    if (dv && *dv) {
        int64_t d;
        if (cl_parse_int64(dv, &d) != CL_OK)
            return bad(c, rc->col[CL_SF_DAYS_IN_STAGE], spec->column[CL_SF_DAYS_IN_STAGE], dv,
                       "is not an integer");
        if (d < 0 || d > INT32_MAX)
            return bad(c, rc->col[CL_SF_DAYS_IN_STAGE], spec->column[CL_SF_DAYS_IN_STAGE], dv,
                       "is outside 0..2147483647");
        s->days_in_stage.present = true;
        s->days_in_stage.value = (int32_t)d;
    }
    for (int i = 0; i < CL_NUM_BUILTINS; i++) {
        int f = CL_SF_SPEED_TO_CLOSE + i;
        cl_opt_double v;
        if ((r = get_double(c, rc->col[f], spec->column[f], rc->v[f], 1, 0, 100, &v)) != CL_OK)
            return r;
        s->components[i] = v.value;
    }
    if ((r = get_double(c, rc->col[CL_SF_OPPORTUNITY_SCORE], spec->column[CL_SF_OPPORTUNITY_SCORE],
                        rc->v[CL_SF_OPPORTUNITY_SCORE], 0, 0, 100, &s->opportunity_score)) !=
            CL_OK ||
        (r = get_double(c, rc->col[CL_SF_ACCOUNT_SCORE], spec->column[CL_SF_ACCOUNT_SCORE],
                        rc->v[CL_SF_ACCOUNT_SCORE], 0, 0, 100, &s->account_score)) != CL_OK)
        return r;

    for (size_t i = 0; i < spec->n_attributes; i++) {
        const char *v = rc->attr[i];
        if (!v || !*v) continue; /* null attribute: absent from the map */
        if (!utf8_valid(v))
            return bad(c, rc->attr_col[i], spec->attributes[i], NULL, "is not valid UTF-8");
        cl_attribute *a = &s->attributes[s->n_attributes];
        if (cl_strlcpy(a->value, v, sizeof a->value) != CL_OK)
            return bad(c, rc->attr_col[i], spec->attributes[i], v, "is longer than 128 bytes");
        cl_strlcpy(a->key, spec->attributes[i], sizeof a->key);
        s->n_attributes++;
    }
    for (size_t i = 0; i < spec->n_features; i++) {
        cl_opt_double v;
        if ((r = get_double(c, rc->feat_col[i], spec->features[i], rc->feat[i], 0, 0, 0, &v)) !=
            CL_OK)
            return r;
        if (!v.present) continue;
        cl_feature *f = &s->features[s->n_features++];
        cl_strlcpy(f->name, spec->features[i], sizeof f->name);
        f->value = v.value;
    }

    char e2[CL_ERRLEN];
    if (cl_snapshot_id(s->run_id, s->opportunity_id, s->snapshot_id, e2, sizeof e2) != CL_OK)
        return bad(c, rc->col[CL_SF_OPPORTUNITY_ID], spec->column[CL_SF_OPPORTUNITY_ID], NULL, e2);
    if (cl_snapshot_validate(s, e2, sizeof e2) != CL_OK)
        return cl_seterr(c->err, c->errlen, CL_EINVAL, "%s line %zu: %s", c->in->name, c->line, e2);
    return CL_OK;
}

/* ---- CSV ------------------------------------------------------------------------------ */

static int find_column(const cl_snapshot_input *in, const char *name)
{
    for (size_t i = 0; i < in->ncols; i++)
        if (strcmp(in->header[i], name) == 0) return (int)i;
    return -1;
}

static int csv_open(cl_snapshot_input *in, const char **ignored, char *err, size_t errlen)
{
    cl_csv_reader_init(&in->csv, in->data, in->len);
    in->csv_open = 1;
    char **fields;
    size_t n;
    char e2[CL_ERRLEN];
    int rc = cl_csv_next_row(&in->csv, &fields, &n, e2, sizeof e2);
    if (rc == CL_ENOTFOUND)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: empty file (no header line)", in->name);
    if (rc != CL_OK) return cl_seterr(err, errlen, CL_EINVAL, "%s %s", in->name, e2);
    if (!(in->header = calloc(n, sizeof *in->header)))
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    in->ncols = n;
    for (size_t i = 0; i < n; i++) {
        if (!utf8_valid(fields[i]))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s line %zu column %zu: header is not "
                             "valid UTF-8",
                             in->name, in->csv.row_line, i + 1);
        if (!(in->header[i] = strdup(fields[i])))
            return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        for (size_t j = 0; j < i; j++)
            if (strcmp(in->header[j], fields[i]) == 0)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "%s line %zu column %zu: column '%.64s' appears twice in the "
                                 "header (also column %zu)",
                                 in->name, in->csv.row_line, i + 1, fields[i], j + 1);
    }
    const cl_snapshot_input_spec *spec = in->spec;
    for (int f = 0; f < CL_SF_COUNT; f++) {
        in->field_col[f] = find_column(in, spec->column[f]);
        int required = f == CL_SF_RUN_ID || f == CL_SF_SNAPSHOT_TIME || f == CL_SF_OPPORTUNITY_ID ||
                       f == CL_SF_STAGE || f == CL_SF_CREATED_DATE ||
                       f == CL_SF_EXPECTED_CLOSE_DATE ||
                       (f >= CL_SF_SPEED_TO_CLOSE && f <= CL_SF_RECENCY);
        if (required && in->field_col[f] < 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s line %zu: required column '%.64s' (field %s) is not in the "
                             "header; map it with snapshot.columns=%s=<column>",
                             in->name, in->csv.row_line, spec->column[f],
                             cl_snapshot_field_names[f], cl_snapshot_field_names[f]);
    }
    for (size_t i = 0; i < spec->n_attributes; i++)
        in->attr_col[i] = find_column(in, spec->attributes[i]);
    for (size_t i = 0; i < spec->n_features; i++)
        in->feat_col[i] = find_column(in, spec->features[i]);
    cl_buf_init(&in->ignored, 1u << 20);
    for (size_t i = 0; i < in->ncols; i++) {
        int used = 0;
        for (int f = 0; f < CL_SF_COUNT && !used; f++)
            used = in->field_col[f] == (int)i;
        for (size_t a = 0; a < spec->n_attributes && !used; a++)
            used = in->attr_col[a] == (int)i;
        for (size_t a = 0; a < spec->n_features && !used; a++)
            used = in->feat_col[a] == (int)i;
        if (!used &&
            cl_buf_printf(&in->ignored, "%s%s", in->ignored.len ? "," : "", in->header[i]) != CL_OK)
            return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    if (ignored) *ignored = in->ignored.data ? in->ignored.data : "";
    return CL_OK;
}

static int csv_next(cl_snapshot_input *in, cl_snapshot *out, size_t *line, char *err, size_t errlen)
{
    char **fields;
    size_t n;
    char e2[CL_ERRLEN];
    int rc = cl_csv_next_row(&in->csv, &fields, &n, e2, sizeof e2);
    *line = in->csv.row_line;
    if (rc == CL_ENOTFOUND) return rc;
    if (rc != CL_OK)
        return cl_seterr(err, errlen, CL_ERR, "%s %s; the rest of the file cannot be read",
                         in->name, e2);
    if (n != in->ncols)
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu: %zu columns, the header has %zu",
                         in->name, *line, n, in->ncols);
    row_cells rc_;
    for (int f = 0; f < CL_SF_COUNT; f++) {
        rc_.col[f] = in->field_col[f];
        rc_.v[f] = in->field_col[f] >= 0 ? fields[in->field_col[f]] : NULL;
    }
    for (size_t i = 0; i < in->spec->n_attributes; i++) {
        rc_.attr_col[i] = in->attr_col[i];
        rc_.attr[i] = in->attr_col[i] >= 0 ? fields[in->attr_col[i]] : NULL;
    }
    for (size_t i = 0; i < in->spec->n_features; i++) {
        rc_.feat_col[i] = in->feat_col[i];
        rc_.feat[i] = in->feat_col[i] >= 0 ? fields[in->feat_col[i]] : NULL;
    }
    row_ctx c = {in, *line, err, errlen};
    return fill(&c, &rc_, out);
}

/* ---- JSON Lines ------------------------------------------------------------------------- */

/* The text of one JSON value as a cell: strings as they are, numbers as text, null as
 * "" (empty = null, as in the CSV form), absent as NULL. Booleans, arrays and objects
 * are not cells. */
static int json_cell(const row_ctx *c, const char *key, char *num, const char **out)
{
    json_t *v = json_object_get(c->in->json, key);
    *out = NULL;
    if (!v) return CL_OK;
    switch (json_typeof(v)) {
    case JSON_NULL:
        *out = "";
        return CL_OK;
    case JSON_STRING:
        *out = json_string_value(v);
        return CL_OK;
    case JSON_INTEGER:
        snprintf(num, NUMBER_TEXT, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = num;
        return CL_OK;
    case JSON_REAL:
        snprintf(num, NUMBER_TEXT, "%.17g", json_real_value(v));
        *out = num;
        return CL_OK;
    default:
        return bad(c, -1, key, NULL, "must be a string, a number or null");
    }
}

static int jsonl_next(cl_snapshot_input *in, cl_snapshot *out, size_t *line, char *err,
                      size_t errlen)
{
    const char *s, *nl;
    size_t len;
    for (;;) {
        if (in->pos >= in->len) return CL_ENOTFOUND;
        s = in->data + in->pos;
        nl = memchr(s, '\n', in->len - in->pos);
        len = nl ? (size_t)(nl - s) : in->len - in->pos;
        *line = in->line;
        in->pos += len + (nl ? 1 : 0);
        in->line++;
        size_t i = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i < len) break; /* blank lines are skipped, like the CSV reader does */
    }
    if (len > LINE_MAX_BYTES)
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu: line longer than %u bytes", in->name,
                         *line, LINE_MAX_BYTES);
    json_decref(in->json);
    json_error_t je;
    in->json = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    if (!in->json)
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu column %d: not valid JSON: %s",
                         in->name, *line, je.column, je.text);
    if (!json_is_object(in->json))
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu: not a JSON object", in->name, *line);
    row_ctx c = {in, *line, err, errlen};
    row_cells rc_;
    size_t k = 0;
    int rc;
    for (int f = 0; f < CL_SF_COUNT; f++, k++) {
        rc_.col[f] = -1;
        if ((rc = json_cell(&c, in->spec->column[f], in->numbers[k], &rc_.v[f])) != CL_OK)
            return rc;
    }
    for (size_t i = 0; i < in->spec->n_attributes; i++, k++) {
        rc_.attr_col[i] = -1;
        if ((rc = json_cell(&c, in->spec->attributes[i], in->numbers[k], &rc_.attr[i])) != CL_OK)
            return rc;
    }
    for (size_t i = 0; i < in->spec->n_features; i++, k++) {
        rc_.feat_col[i] = -1;
        if ((rc = json_cell(&c, in->spec->features[i], in->numbers[k], &rc_.feat[i])) != CL_OK)
            return rc;
    }
    return fill(&c, &rc_, out);
}

/* ---- reader ----------------------------------------------------------------------------- */

int cl_snapshot_input_open(cl_snapshot_input **out, const cl_snapshot_input_spec *spec,
                           const char *name, const char *data, size_t len,
                           cl_snapshot_format format, const char **ignored, char *err,
                           size_t errlen)
{
    *out = NULL;
    if (ignored) *ignored = "";
    cl_snapshot_input *in = calloc(1, sizeof *in);
    if (!in) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory opening %s", name);
    in->spec = spec;
    snprintf(in->name, sizeof in->name, "%s", name);
    in->data = data;
    in->len = len;
    in->line = 1;
    in->format =
        format == CL_SNAPSHOT_FORMAT_AUTO ? cl_snapshot_format_detect(name, data, len) : format;
    int rc = CL_OK;
    const char *nul = memchr(data, '\0', len);
    if (nul)
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: NUL byte at offset %zu (not a text export)",
                       name, (size_t)(nul - data));
    else if (in->format == CL_SNAPSHOT_FORMAT_CSV)
        rc = csv_open(in, ignored, err, errlen);
    else if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        in->pos = 3;
    if (rc != CL_OK) {
        cl_snapshot_input_close(in);
        return rc;
    }
    *out = in;
    return CL_OK;
}

int cl_snapshot_input_next(cl_snapshot_input *in, cl_snapshot *out, size_t *line, char *err,
                           size_t errlen)
{
    *line = 0;
    return in->format == CL_SNAPSHOT_FORMAT_CSV ? csv_next(in, out, line, err, errlen)
                                                : jsonl_next(in, out, line, err, errlen);
}

void cl_snapshot_input_close(cl_snapshot_input *in)
{
    if (!in) return;
    if (in->csv_open) cl_csv_reader_free(&in->csv);
    for (size_t i = 0; in->header && i < in->ncols; i++)
        free(in->header[i]);
    free(in->header);
    cl_buf_free(&in->ignored);
    json_decref(in->json);
    free(in);
}
