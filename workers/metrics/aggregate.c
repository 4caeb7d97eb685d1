/*
 * aggregate.c — the labeled consumer rule over LMDB, and the row codec.
 */
#include "aggregate.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"

const char *const cl_aggregate_db_names[] = {"opportunities", "rows", "offsets", NULL};

#define OPP_META_FORMAT 1
#define OPP_META_LEN 10 /* format, version (8), retracted */

static const char *const effect_names[CL_AGG_EFFECT_COUNT] = {
    "added", "updated", "duplicate", "superseded", "stale", "retracted"};

const char *cl_aggregate_effect_name(cl_aggregate_effect e)
{
    return (unsigned)e < CL_AGG_EFFECT_COUNT ? effect_names[e] : "?";
}

/* ---- row codec --------------------------------------------------------------------- */

static int put_u8(cl_buf *b, uint8_t v) { return cl_buf_append(b, &v, 1); }

static int put_u64(cl_buf *b, uint64_t v)
{
    uint8_t x[8];
    cl_store_u64_be(x, v);
    return cl_buf_append(b, x, 8);
}

static int put_f64(cl_buf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    return put_u64(b, v);
}

static int put_str(cl_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > 0xFFFF)
        return CL_EINVAL;
    uint8_t x[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    int rc = cl_buf_append(b, x, 2);
    return rc == CL_OK ? cl_buf_append(b, s, n) : rc;
}

int cl_metrics_row_encode(const cl_metrics_row *r, cl_buf *out, char *err, size_t errlen)
{
    int rc = put_u8(out, CL_METRICS_ROW_FORMAT);
    const char *strs1[] = {r->opportunity_id, r->snapshot_id};
    for (size_t i = 0; i < 2 && rc == CL_OK; i++)
        rc = put_str(out, strs1[i]);
    if (rc == CL_OK)
        rc = put_u64(out, (uint64_t)r->outcome_version);
    if (rc == CL_OK)
        rc = put_u64(out, (uint64_t)r->snapshot_time);
    if (rc == CL_OK)
        rc = put_u64(out, (uint64_t)(int64_t)r->close_date);
    if (rc == CL_OK)
        rc = put_u64(out, (uint64_t)(int64_t)r->days_before_close);
    if (rc == CL_OK)
        rc = put_u8(out, r->won ? 1 : 0);
    const char *strs2[] = {r->stage,   r->owner_id,    r->segment, r->region,
                           r->product, r->lead_source, r->type};
    for (size_t i = 0; i < 7 && rc == CL_OK; i++)
        rc = put_str(out, strs2[i]);
    if (rc == CL_OK)
        rc = put_u8(out, r->amount.present ? 1 : 0);
    if (rc == CL_OK)
        rc = put_f64(out, r->amount.present ? r->amount.value : 0.0);
    for (size_t i = 0; i < CL_NUM_BUILTINS && rc == CL_OK; i++)
        rc = put_f64(out, r->components[i]);
    if (rc == CL_OK)
        rc = put_u8(out, (uint8_t)r->n_scores);
    for (size_t i = 0; i < r->n_scores && rc == CL_OK; i++) {
        const cl_score_entry *s = &r->scores[i];
        rc = put_str(out, s->model);
        if (rc == CL_OK)
            rc = put_u64(out, (uint64_t)s->version);
        if (rc == CL_OK)
            rc = put_f64(out, s->score);
        if (rc == CL_OK)
            rc = put_u8(out, (uint8_t)s->band);
        if (rc == CL_OK)
            rc = put_f64(out, s->probability);
    }
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "metrics row of opportunity %.128s: cannot encode (%s)",
                         r->opportunity_id, cl_status_name(rc));
    return CL_OK;
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *field; /* the field being read, for the message */
} reader;

static int need(reader *r, size_t n)
{
    return r->len - r->pos >= n ? CL_OK : CL_EINVAL;
}

static int get_u8(reader *r, uint8_t *v)
{
    if (need(r, 1) != CL_OK)
        return CL_EINVAL;
    *v = r->p[r->pos++];
    return CL_OK;
}

static int get_u64(reader *r, uint64_t *v)
{
    if (need(r, 8) != CL_OK)
        return CL_EINVAL;
    *v = cl_store_be_u64(r->p + r->pos);
    r->pos += 8;
    return CL_OK;
}

static int get_f64(reader *r, double *d)
{
    uint64_t v;
    if (get_u64(r, &v) != CL_OK)
        return CL_EINVAL;
    memcpy(d, &v, sizeof v);
    return isfinite(*d) ? CL_OK : CL_EINVAL;
}

static int get_str(reader *r, char *out, size_t cap)
{
    if (need(r, 2) != CL_OK)
        return CL_EINVAL;
    size_t n = ((size_t)r->p[r->pos] << 8) | r->p[r->pos + 1];
    r->pos += 2;
    if (n >= cap || need(r, n) != CL_OK || memchr(r->p + r->pos, 0, n))
        return CL_EINVAL;
    memcpy(out, r->p + r->pos, n);
    out[n] = '\0';
    r->pos += n;
    return CL_OK;
}

#define READ(call, name)                                                                   \
    do {                                                                                   \
        r.field = (name);                                                                  \
        if ((call) != CL_OK)                                                               \
            goto bad;                                                                      \
    } while (0)

int cl_metrics_row_decode(const void *data, size_t len, cl_metrics_row *out, char *err,
                          size_t errlen)
{
    reader r = {data, len, 0, "format"};
    memset(out, 0, sizeof *out);
    uint8_t fmt, u8;
    uint64_t u64;
    READ(get_u8(&r, &fmt), "format");
    if (fmt != CL_METRICS_ROW_FORMAT)
        return cl_seterr(err, errlen, CL_EINVAL, "metrics row: unknown format %u (expected %u)",
                         fmt, CL_METRICS_ROW_FORMAT);
    READ(get_str(&r, out->opportunity_id, sizeof out->opportunity_id), "opportunity_id");
    READ(get_str(&r, out->snapshot_id, sizeof out->snapshot_id), "snapshot_id");
    READ(get_u64(&r, &u64), "outcome_version");
    out->outcome_version = (int64_t)u64;
    READ(get_u64(&r, &u64), "snapshot_time");
    out->snapshot_time = (int64_t)u64;
    READ(get_u64(&r, &u64), "close_date");
    if ((int64_t)u64 < INT32_MIN || (int64_t)u64 > INT32_MAX)
        goto bad;
    out->close_date = (int32_t)(int64_t)u64;
    READ(get_u64(&r, &u64), "days_before_close");
    if ((int64_t)u64 < 0 || (int64_t)u64 > INT32_MAX)
        goto bad;
    out->days_before_close = (int32_t)(int64_t)u64;
    READ(get_u8(&r, &u8), "won");
    if (u8 > 1)
        goto bad;
    out->won = u8;
    READ(get_str(&r, out->stage, sizeof out->stage), "stage");
    READ(get_str(&r, out->owner_id, sizeof out->owner_id), "owner_id");
    READ(get_str(&r, out->segment, sizeof out->segment), "segment");
    READ(get_str(&r, out->region, sizeof out->region), "region");
    READ(get_str(&r, out->product, sizeof out->product), "product");
    READ(get_str(&r, out->lead_source, sizeof out->lead_source), "lead_source");
    READ(get_str(&r, out->type, sizeof out->type), "type");
    READ(get_u8(&r, &u8), "amount");
    if (u8 > 1)
        goto bad;
    out->amount.present = u8 == 1;
    READ(get_f64(&r, &out->amount.value), "amount");
    for (size_t i = 0; i < CL_NUM_BUILTINS; i++) {
        READ(get_f64(&r, &out->components[i]), cl_builtin_component_names[i]);
        if (out->components[i] < 0 || out->components[i] > 100)
            goto bad;
    }
    READ(get_u8(&r, &u8), "scores");
    if (u8 > CL_MAX_SCORES)
        goto bad;
    out->n_scores = u8;
    for (size_t i = 0; i < out->n_scores; i++) {
        cl_score_entry *s = &out->scores[i];
        READ(get_str(&r, s->model, sizeof s->model), "scores.model");
        if (!s->model[0])
            goto bad;
        READ(get_u64(&r, &u64), "scores.version");
        s->version = (int64_t)u64;
        READ(get_f64(&r, &s->score), "scores.score");
        READ(get_u8(&r, &u8), "scores.band");
        if (u8 >= CL_NUM_BANDS)
            goto bad;
        s->band = (cl_band)u8;
        READ(get_f64(&r, &s->probability), "scores.probability");
        if (s->score < 0 || s->score > 100 || s->probability < 0 || s->probability > 1)
            goto bad;
    }
    r.field = "end";
    if (r.pos != r.len)
        goto bad;
    if (!out->opportunity_id[0] || !out->snapshot_id[0])
        goto bad;
    return CL_OK;
bad:
    return cl_seterr(err, errlen, CL_EINVAL,
                     "metrics row (%zu bytes): bad or truncated field %s at byte %zu", len,
                     r.field, r.pos);
}

int cl_metrics_row_from_example(const cl_labeled_example *e, const cl_weight_config *fallback,
                                cl_metrics_row *out, char *err, size_t errlen)
{
    const cl_snapshot *s = &e->snapshot;
    const cl_outcome *o = &e->outcome;
    memset(out, 0, sizeof *out);
    if (strcmp(s->opportunity_id, o->opportunity_id) != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "labeled example: snapshot opportunity %.128s != outcome opportunity "
                         "%.128s",
                         s->opportunity_id, o->opportunity_id);
    if (e->days_before_close < 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "labeled example %.128s/%.128s: snapshot taken %d days after the close",
                         s->opportunity_id, s->snapshot_id, -e->days_before_close);
    /* The structs share the bounds, so these copies cannot truncate. */
    memcpy(out->opportunity_id, s->opportunity_id, sizeof out->opportunity_id);
    memcpy(out->snapshot_id, s->snapshot_id, sizeof out->snapshot_id);
    out->outcome_version = e->outcome_version;
    out->snapshot_time = s->snapshot_time;
    out->close_date = o->close_date;
    out->days_before_close = e->days_before_close;
    out->won = o->outcome == CL_OUTCOME_WON;
    memcpy(out->stage, s->stage, sizeof out->stage);
    memcpy(out->owner_id, s->owner_id, sizeof out->owner_id);
    memcpy(out->segment, s->segment, sizeof out->segment);
    memcpy(out->region, s->region, sizeof out->region);
    memcpy(out->product, s->product, sizeof out->product);
    memcpy(out->lead_source, s->lead_source, sizeof out->lead_source);
    memcpy(out->type, s->type, sizeof out->type);
    out->amount = s->amount;
    memcpy(out->components, s->components, sizeof out->components);
    for (size_t i = 0; i < CL_NUM_BUILTINS; i++)
        if (!isfinite(out->components[i]) || out->components[i] < 0 || out->components[i] > 100)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "labeled example %.128s/%.128s: component %s out of 0..100",
                             s->opportunity_id, s->snapshot_id, cl_builtin_component_names[i]);
    out->n_scores = s->n_scores < CL_MAX_SCORES ? s->n_scores : CL_MAX_SCORES;
    memcpy(out->scores, s->scores, out->n_scores * sizeof out->scores[0]);
    if (out->n_scores == 0 && fallback) {
        int rc = cl_score_entry_for(fallback, s, &out->scores[0], err, errlen);
        if (rc != CL_OK)
            return rc;
        out->n_scores = 1;
    }
    return CL_OK;
}

/* ---- the consumer rule ------------------------------------------------------------- */

typedef struct {
    int64_t version;
    int retracted;
} opp_meta;

static void key_opp(cl_store_key *k, const char *opp, size_t len)
{
    cl_store_key_init(k);
    cl_store_key_str(k, opp, len);
}

static int meta_get(cl_store_txn *b, const cl_store_key *k, opp_meta *m, char *err,
                    size_t errlen)
{
    const void *v;
    size_t vlen;
    int rc = cl_store_get(b, CL_AGG_DB_OPPORTUNITIES, k->data, k->len, &v, &vlen, err, errlen);
    if (rc != CL_OK)
        return rc;
    const uint8_t *p = v;
    if (vlen != OPP_META_LEN || p[0] != OPP_META_FORMAT || p[9] > 1)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "metrics state: opportunity record of %zu bytes is corrupt", vlen);
    m->version = (int64_t)cl_store_be_u64(p + 1);
    m->retracted = p[9];
    return CL_OK;
}

static int meta_put(cl_store_txn *b, const cl_store_key *k, const opp_meta *m, char *err,
                    size_t errlen)
{
    uint8_t v[OPP_META_LEN];
    v[0] = OPP_META_FORMAT;
    cl_store_u64_be(v + 1, (uint64_t)m->version);
    v[9] = m->retracted ? 1 : 0;
    return cl_store_put(b, CL_AGG_DB_OPPORTUNITIES, k->data, k->len, v, sizeof v, err, errlen);
}

static int drop_rows(cl_store_txn *b, const cl_store_key *prefix, size_t *removed, char *err,
                     size_t errlen)
{
    size_t n = 0;
    int rc = cl_store_del_prefix(b, CL_AGG_DB_ROWS, prefix->data, prefix->len, &n, err, errlen);
    if (removed)
        *removed += n;
    return rc;
}

int cl_aggregate_apply(cl_store_txn *b, const cl_labeled_example *e,
                       const cl_weight_config *fallback, cl_buf *scratch,
                       cl_aggregate_effect *effect, size_t *removed, char *err, size_t errlen)
{
    const char *opp = e->snapshot.opportunity_id;
    size_t olen = strlen(opp);
    if (removed)
        *removed = 0;
    if (olen == 0)
        return cl_seterr(err, errlen, CL_EINVAL, "labeled example without an opportunity id");
    cl_store_key k;
    key_opp(&k, opp, olen);
    if (!k.ok)
        return cl_seterr(err, errlen, CL_EINVAL, "opportunity id too long for a key");
    opp_meta m;
    int rc = meta_get(b, &k, &m, err, errlen);
    int have = rc == CL_OK;
    if (rc != CL_OK && rc != CL_ENOTFOUND)
        return rc;
    int64_t v = e->outcome_version;

    if (e->retracted) {
        if (have && v < m.version) {
            *effect = CL_AGG_STALE;
            return CL_OK;
        }
        if ((rc = drop_rows(b, &k, removed, err, errlen)) != CL_OK)
            return rc;
        opp_meta nm = {v, 1};
        if ((rc = meta_put(b, &k, &nm, err, errlen)) != CL_OK)
            return rc;
        *effect = CL_AGG_RETRACTED;
        return CL_OK;
    }
    if (have && (v < m.version || (v == m.version && m.retracted))) {
        *effect = CL_AGG_STALE;
        return CL_OK;
    }
    cl_metrics_row row;
    if ((rc = cl_metrics_row_from_example(e, fallback, &row, err, errlen)) != CL_OK)
        return rc;
    cl_buf_reset(scratch);
    if ((rc = cl_metrics_row_encode(&row, scratch, err, errlen)) != CL_OK)
        return rc;

    cl_aggregate_effect eff = CL_AGG_ADDED;
    if (!have || v > m.version) {
        if (have) {
            if ((rc = drop_rows(b, &k, removed, err, errlen)) != CL_OK)
                return rc;
            eff = CL_AGG_SUPERSEDED;
        }
        opp_meta nm = {v, 0};
        if ((rc = meta_put(b, &k, &nm, err, errlen)) != CL_OK)
            return rc;
    }
    cl_store_key rk = k;
    cl_store_key_str(&rk, row.snapshot_id, strlen(row.snapshot_id));
    if (!rk.ok)
        return cl_seterr(err, errlen, CL_EINVAL, "opportunity %.128s: key too long", opp);
    if (eff == CL_AGG_ADDED) {
        const void *old;
        size_t oldlen;
        rc = cl_store_get(b, CL_AGG_DB_ROWS, rk.data, rk.len, &old, &oldlen, err, errlen);
        if (rc == CL_OK) {
            if (oldlen == scratch->len && memcmp(old, scratch->data, oldlen) == 0) {
                *effect = CL_AGG_DUPLICATE;
                return CL_OK;
            }
            eff = CL_AGG_UPDATED;
        } else if (rc != CL_ENOTFOUND) {
            return rc;
        }
    }
    rc = cl_store_put(b, CL_AGG_DB_ROWS, rk.data, rk.len, scratch->data, scratch->len, err,
                      errlen);
    if (rc == CL_OK)
        *effect = eff;
    return rc;
}

int cl_aggregate_apply_tombstone(cl_store_txn *b, const char *opportunity_id, size_t len,
                                 cl_aggregate_effect *effect, size_t *removed, char *err,
                                 size_t errlen)
{
    if (removed)
        *removed = 0;
    if (len == 0 || len > CL_ID_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "tombstone with a key of %zu bytes", len);
    cl_store_key k;
    key_opp(&k, opportunity_id, len);
    opp_meta m;
    int rc = meta_get(b, &k, &m, err, errlen);
    if (rc == CL_ENOTFOUND) {
        /* Nothing counted: remember nothing either, a later example at any version may
         * still arrive legitimately. */
        *effect = CL_AGG_STALE;
        return CL_OK;
    }
    if (rc != CL_OK)
        return rc;
    if ((rc = drop_rows(b, &k, removed, err, errlen)) != CL_OK)
        return rc;
    m.retracted = 1;
    if ((rc = meta_put(b, &k, &m, err, errlen)) != CL_OK)
        return rc;
    *effect = CL_AGG_RETRACTED;
    return CL_OK;
}

/* ---- offsets ----------------------------------------------------------------------- */

int cl_aggregate_offset_get(cl_store_txn *t, int32_t partition, int64_t *next, char *err,
                            size_t errlen)
{
    uint8_t k[4];
    cl_store_u32_be(k, (uint32_t)partition);
    const void *v;
    size_t vlen;
    int rc = cl_store_get(t, CL_AGG_DB_OFFSETS, k, sizeof k, &v, &vlen, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (vlen != 8)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "metrics state: offset of partition %" PRId32 " is corrupt", partition);
    *next = (int64_t)cl_store_be_u64(v);
    return CL_OK;
}

int cl_aggregate_offset_put(cl_store_txn *b, int32_t partition, int64_t next, char *err,
                            size_t errlen)
{
    uint8_t k[4], v[8];
    cl_store_u32_be(k, (uint32_t)partition);
    cl_store_u64_be(v, (uint64_t)next);
    return cl_store_put(b, CL_AGG_DB_OFFSETS, k, sizeof k, v, sizeof v, err, errlen);
}

/* ---- scan -------------------------------------------------------------------------- */

typedef struct {
    cl_aggregate_row_fn cb;
    void *ud;
    cl_metrics_row row;
    char *err;
    size_t errlen;
} scan_ctx;

static int scan_one(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    scan_ctx *c = ud;
    int rc = cl_metrics_row_decode(val, vlen, &c->row, c->err, c->errlen);
    if (rc != CL_OK)
        return rc;
    (void)key;
    (void)klen;
    return c->cb(&c->row, c->ud);
}

int cl_aggregate_scan(cl_store_txn *t, cl_aggregate_row_fn cb, void *ud, char *err,
                      size_t errlen)
{
    scan_ctx *c = malloc(sizeof *c);
    if (!c)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    c->cb = cb;
    c->ud = ud;
    c->err = err;
    c->errlen = errlen;
    int rc = cl_store_scan_prefix(t, CL_AGG_DB_ROWS, NULL, 0, scan_one, c, err, errlen);
    free(c);
    return rc;
}
