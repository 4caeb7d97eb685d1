/*
 * training_set.c — the labeled consumer rule over LMDB, and flattening into rows.
 */
#include "training_set.h"
#include "score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct cl_training_set {
    cl_store *store;
    cl_avro_codec *codec; /* LabeledExample, single-object: the stored form */
    cl_buf buf;
    cl_labeled_example *scratch; /* heap: the struct is ~20 KiB */
};

/* Opportunity state, stored big-endian: version (8), retracted (1), count (4). */
typedef struct {
    int64_t version;
    uint8_t retracted;
    uint32_t count;
} opp_meta;

#define OPP_META_LEN 13

static void opp_meta_encode(const opp_meta *m, uint8_t out[OPP_META_LEN])
{
    cl_store_u64_be(out, (uint64_t)m->version);
    out[8] = m->retracted;
    cl_store_u32_be(out + 9, m->count);
}

static int opp_meta_decode(const void *v, size_t len, opp_meta *m)
{
    if (len != OPP_META_LEN) return CL_EINVAL;
    const uint8_t *p = v;
    m->version = (int64_t)cl_store_be_u64(p);
    m->retracted = p[8];
    m->count = cl_store_be_u32(p + 9);
    return CL_OK;
}

const char *cl_ts_effect_name(cl_ts_effect e)
{
    switch (e) {
    case CL_TS_NEW_OUTCOME:
        return "new_outcome";
    case CL_TS_UPSERT:
        return "upsert";
    case CL_TS_STALE:
        return "stale";
    case CL_TS_RETRACTED:
        return "retracted";
    case CL_TS_NOOP:
        return "noop";
    }
    return "?";
}

int cl_training_set_open(cl_training_set **out, const char *dir, const cl_store_config *sc,
                         const cl_avro_schemas *schemas, char *err, size_t errlen)
{
    *out = NULL;
    cl_training_set *ts = calloc(1, sizeof *ts);
    if (!ts || !(ts->scratch = malloc(sizeof *ts->scratch))) {
        free(ts);
        return cl_seterr(err, errlen, CL_ENOMEM, "training set: out of memory");
    }
    cl_buf_init(&ts->buf, 16u << 20);
    static const char *const dbs[] = {"examples", "opps", "meta", NULL};
    cl_avro_codec_opts co = {CL_AVRO_FRAMING_SINGLE_OBJECT, NULL, NULL, 0};
    int rc = cl_avro_codec_new(&ts->codec, schemas, "closedloop.LabeledExample", &co, err, errlen);
    if (rc == CL_OK) rc = cl_store_open(&ts->store, dir, dbs, sc, err, errlen);
    if (rc != CL_OK) {
        cl_training_set_close(ts);
        return rc;
    }
    *out = ts;
    return CL_OK;
}

void cl_training_set_close(cl_training_set *ts)
{
    if (!ts) return;
    cl_store_close(ts->store);
    cl_avro_codec_free(ts->codec);
    cl_buf_free(&ts->buf);
    free(ts->scratch);
    free(ts);
}

cl_store *cl_training_set_store(cl_training_set *ts)
{
    return ts->store;
}

static int opp_key(cl_store_key *k, const char *opp, char *err, size_t errlen)
{
    cl_store_key_init(k);
    cl_store_key_str(k, opp, strlen(opp));
    if (!k->ok || k->len == 2)
        return cl_seterr(err, errlen, CL_EINVAL, "labeled key '%.64s': empty or too long", opp);
    return CL_OK;
}

static int clear_examples(cl_store_txn *b, const cl_store_key *ok, char *err, size_t errlen)
{
    size_t deleted = 0;
    return cl_store_del_prefix(b, CL_TS_DB_EXAMPLES, ok->data, ok->len, &deleted, err, errlen);
}

static int put_meta(cl_store_txn *b, const cl_store_key *ok, const opp_meta *m, char *err,
                    size_t errlen)
{
    uint8_t v[OPP_META_LEN];
    opp_meta_encode(m, v);
    return cl_store_put(b, CL_TS_DB_OPPS, ok->data, ok->len, v, sizeof v, err, errlen);
}

static int bump_pending(cl_store_txn *b, char *err, size_t errlen)
{
    uint64_t p = 0;
    int rc = cl_training_set_pending(b, &p, err, errlen);
    if (rc != CL_OK) return rc;
    uint8_t v[8];
    cl_store_u64_be(v, p + 1);
    return cl_store_put(b, CL_TS_DB_META, "pending", 7, v, 8, err, errlen);
}

int cl_training_set_apply(cl_training_set *ts, cl_store_txn *b, const char *opp,
                          const cl_labeled_example *ex, cl_ts_effect *effect, char *err,
                          size_t errlen)
{
    cl_store_key ok;
    int rc = opp_key(&ok, opp, err, errlen);
    if (rc != CL_OK) return rc;
    if (ex) {
        rc = cl_labeled_example_validate(ex, err, errlen);
        if (rc != CL_OK) return rc;
        if (strcmp(ex->snapshot.opportunity_id, opp) != 0 ||
            strcmp(ex->outcome.opportunity_id, opp) != 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "labeled key '%.64s' does not match the example's opportunity "
                             "'%.64s'",
                             opp, ex->snapshot.opportunity_id);
    }
    opp_meta m = {0};
    int have = 0;
    const void *v;
    size_t vlen;
    rc = cl_store_get(b, CL_TS_DB_OPPS, ok.data, ok.len, &v, &vlen, err, errlen);
    if (rc == CL_OK) {
        if (opp_meta_decode(v, vlen, &m) != CL_OK)
            return cl_seterr(err, errlen, CL_ECONFLICT,
                             "training set: corrupt state of opportunity '%.64s'", opp);
        have = 1;
    } else if (rc != CL_ENOTFOUND) {
        return rc;
    }

    if (!ex || ex->retracted) {
        if (ex && have && ex->outcome_version < m.version) {
            *effect = CL_TS_STALE;
            return CL_OK;
        }
        *effect = have && m.count > 0 ? CL_TS_RETRACTED : CL_TS_NOOP;
        if (have && m.count > 0 && (rc = clear_examples(b, &ok, err, errlen)) != CL_OK) return rc;
        if (ex) {
            m.version = ex->outcome_version;
            m.retracted = 1;
        } else if (!have) {
            return CL_OK; /* a tombstone for something never seen */
        }
        m.count = 0;
        return put_meta(b, &ok, &m, err, errlen);
    }

    int64_t ver = ex->outcome_version;
    if (have && (ver < m.version || (ver == m.version && m.retracted))) {
        *effect = CL_TS_STALE;
        return CL_OK;
    }
    int fresh = !have || ver > m.version;
    if (fresh) {
        if (have && m.count > 0 && (rc = clear_examples(b, &ok, err, errlen)) != CL_OK) return rc;
        m = (opp_meta){ver, 0, 0};
        if ((rc = bump_pending(b, err, errlen)) != CL_OK) return rc;
    }
    cl_store_key ek = ok;
    cl_store_key_str(&ek, ex->snapshot.snapshot_id, strlen(ex->snapshot.snapshot_id));
    if (!ek.ok)
        return cl_seterr(err, errlen, CL_EINVAL, "labeled %.64s: snapshot id too long", opp);
    rc = cl_store_get(b, CL_TS_DB_EXAMPLES, ek.data, ek.len, &v, &vlen, err, errlen);
    if (rc == CL_ENOTFOUND)
        m.count++;
    else if (rc != CL_OK)
        return rc;

    avro_value_t *av = cl_avro_codec_value(ts->codec);
    cl_buf_reset(&ts->buf);
    rc = cl_labeled_example_to_avro(ex, av, err, errlen);
    if (rc == CL_OK) rc = cl_avro_codec_encode(ts->codec, av, &ts->buf, err, errlen);
    if (rc == CL_OK)
        rc = cl_store_put(b, CL_TS_DB_EXAMPLES, ek.data, ek.len, ts->buf.data, ts->buf.len, err,
                          errlen);
    if (rc == CL_OK) rc = put_meta(b, &ok, &m, err, errlen);
    if (rc == CL_OK) *effect = fresh ? CL_TS_NEW_OUTCOME : CL_TS_UPSERT;
    return rc;
}

static int meta_get_u64(cl_store_txn *t, const char *name, uint64_t *out, char *err, size_t errlen)
{
    const void *v;
    size_t vlen;
    int rc = cl_store_get(t, CL_TS_DB_META, name, strlen(name), &v, &vlen, err, errlen);
    if (rc != CL_OK) return rc;
    if (vlen != 8)
        return cl_seterr(err, errlen, CL_ECONFLICT, "training set: corrupt meta value '%s'", name);
    *out = cl_store_be_u64(v);
    return CL_OK;
}

int cl_training_set_pending(cl_store_txn *t, uint64_t *out, char *err, size_t errlen)
{
    *out = 0;
    int rc = meta_get_u64(t, "pending", out, err, errlen);
    return rc == CL_ENOTFOUND ? CL_OK : rc;
}

int cl_training_set_reset_pending(cl_store_txn *b, char *err, size_t errlen)
{
    uint8_t v[8];
    cl_store_u64_be(v, 0);
    return cl_store_put(b, CL_TS_DB_META, "pending", 7, v, 8, err, errlen);
}

int cl_training_set_meta_get_i64(cl_store_txn *t, const char *name, int64_t *out, char *err,
                                 size_t errlen)
{
    uint64_t u;
    int rc = meta_get_u64(t, name, &u, err, errlen);
    if (rc == CL_OK) *out = (int64_t)u;
    return rc;
}

int cl_training_set_meta_put_i64(cl_store_txn *b, const char *name, int64_t v, char *err,
                                 size_t errlen)
{
    uint8_t buf[8];
    cl_store_u64_be(buf, (uint64_t)v);
    return cl_store_put(b, CL_TS_DB_META, name, strlen(name), buf, 8, err, errlen);
}

typedef struct {
    uint64_t opps, examples;
} count_ctx;

static int count_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    count_ctx *c = ud;
    opp_meta m;
    if (opp_meta_decode(val, vlen, &m) != CL_OK) return CL_ECONFLICT;
    if (m.count > 0) {
        c->opps++;
        c->examples += m.count;
    }
    return 0;
}

int cl_training_set_counts(cl_store_txn *t, uint64_t *opps, uint64_t *examples, char *err,
                           size_t errlen)
{
    count_ctx c = {0, 0};
    int rc = cl_store_scan_prefix(t, CL_TS_DB_OPPS, NULL, 0, count_cb, &c, err, errlen);
    *opps = c.opps;
    *examples = c.examples;
    return rc;
}

/* ---- interning ------------------------------------------------------------------ */

struct cl_intern {
    char **strings;
    uint32_t n, cap;
    uint32_t *slots; /* id + 1, 0 = empty; power-of-two size */
    size_t nslots;
};

static cl_intern *intern_new(void)
{
    return calloc(1, sizeof(cl_intern));
}

static void intern_free(cl_intern *t)
{
    if (!t) return;
    for (uint32_t i = 0; i < t->n; i++)
        free(t->strings[i]);
    free(t->strings);
    free(t->slots);
    free(t);
}

const char *cl_intern_string(const cl_intern *t, uint32_t id)
{
    return t && id < t->n ? t->strings[id] : NULL;
}

uint32_t cl_intern_count(const cl_intern *t)
{
    return t ? t->n : 0;
}

static int intern_rehash(cl_intern *t, size_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return CL_ENOMEM;
    for (uint32_t id = 0; id < t->n; id++) {
        size_t h = (size_t)cl_hash64(t->strings[id], strlen(t->strings[id]), 0) & (nslots - 1);
        while (slots[h])
            h = (h + 1) & (nslots - 1);
        slots[h] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return CL_OK;
}

static int intern_id(cl_intern *t, const char *s, uint32_t *id)
{
    if (t->nslots == 0 || (size_t)(t->n + 1) * 2 > t->nslots) {
        if (intern_rehash(t, t->nslots ? t->nslots * 2 : 64) != CL_OK) return CL_ENOMEM;
    }
    size_t len = strlen(s);
    size_t h = (size_t)cl_hash64(s, len, 0) & (t->nslots - 1);
    while (t->slots[h]) {
        uint32_t cand = t->slots[h] - 1;
        if (strcmp(t->strings[cand], s) == 0) {
            *id = cand;
            return CL_OK;
        }
        h = (h + 1) & (t->nslots - 1);
    }
    if (t->n == t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 64;
        char **ns = realloc(t->strings, ncap * sizeof *ns);
        if (!ns) return CL_ENOMEM;
        t->strings = ns;
        t->cap = ncap;
    }
    char *copy = strdup(s);
    if (!copy) return CL_ENOMEM;
    t->strings[t->n] = copy;
    t->slots[h] = t->n + 1;
    *id = t->n++;
    return CL_OK;
}

/* ---- rows ---------------------------------------------------------------------- */

int cl_training_rows_init(cl_training_rows *r, const cl_rows_spec *spec, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (spec->n_cat > CL_ROWS_MAX_SOURCES || spec->n_num > CL_ROWS_MAX_SOURCES)
        return cl_seterr(err, errlen, CL_EINVAL, "at most %d categorical and %d numeric sources",
                         CL_ROWS_MAX_SOURCES, CL_ROWS_MAX_SOURCES);
    r->n_cat = spec->n_cat;
    r->n_num = spec->n_num;
    for (size_t j = 0; j < spec->n_cat; j++)
        if (cl_strlcpy(r->cat_source[j], spec->cat_sources[j], sizeof r->cat_source[j]) != CL_OK)
            return cl_seterr(err, errlen, CL_EINVAL, "source name too long: '%.40s'",
                             spec->cat_sources[j]);
    for (size_t j = 0; j < spec->n_num; j++)
        if (cl_strlcpy(r->num_source[j], spec->num_sources[j], sizeof r->num_source[j]) != CL_OK)
            return cl_seterr(err, errlen, CL_EINVAL, "source name too long: '%.40s'",
                             spec->num_sources[j]);
    r->tracked[0] = spec->tracked[0];
    r->tracked[1] = spec->tracked[1];
    r->stages = intern_new();
    int ok = r->stages != NULL;
    for (size_t j = 0; j < r->n_cat && ok; j++)
        ok = (r->cat_values[j] = intern_new()) != NULL;
    if (!ok) {
        cl_training_rows_free(r);
        return cl_seterr(err, errlen, CL_ENOMEM, "rows: out of memory");
    }
    return CL_OK;
}

void cl_training_rows_free(cl_training_rows *r)
{
    free(r->snapshot_time);
    free(r->snap_day);
    free(r->close_day);
    free(r->days_before_close);
    free(r->won);
    free(r->opp);
    free(r->stage);
    for (int j = 0; j < CL_NUM_BUILTINS; j++)
        free(r->components[j]);
    for (size_t j = 0; j < CL_ROWS_MAX_SOURCES; j++) {
        free(r->cat[j]);
        free(r->num[j]);
        intern_free(r->cat_values[j]);
    }
    for (int t = 0; t < 2; t++) {
        free(r->score[t]);
        free(r->has_score[t]);
        free(r->high[t]);
    }
    intern_free(r->stages);
    memset(r, 0, sizeof *r);
}

#define GROW(field, cap)                                                                           \
    do {                                                                                           \
        void *p_ = realloc((field), (cap) * sizeof *(field));                                      \
        if (!p_) return CL_ENOMEM;                                                                 \
        (field) = p_;                                                                              \
    } while (0)

static int rows_grow(cl_training_rows *r)
{
    size_t cap = r->cap ? r->cap * 2 : 1024;
    GROW(r->snapshot_time, cap);
    GROW(r->snap_day, cap);
    GROW(r->close_day, cap);
    GROW(r->days_before_close, cap);
    GROW(r->won, cap);
    GROW(r->opp, cap);
    GROW(r->stage, cap);
    for (int j = 0; j < CL_NUM_BUILTINS; j++)
        GROW(r->components[j], cap);
    for (size_t j = 0; j < r->n_cat; j++)
        GROW(r->cat[j], cap);
    for (size_t j = 0; j < r->n_num; j++)
        GROW(r->num[j], cap);
    for (int t = 0; t < 2; t++) {
        GROW(r->score[t], cap);
        GROW(r->has_score[t], cap);
        GROW(r->high[t], cap);
    }
    r->cap = cap;
    return CL_OK;
}

int cl_training_rows_append(cl_training_rows *r, const cl_labeled_example *ex, char *err,
                            size_t errlen)
{
    if (r->n == r->cap && rows_grow(r) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "rows: out of memory at %zu rows", r->n);
    const cl_snapshot *s = &ex->snapshot;
    size_t i = r->n;
    if (r->n == 0 || strcmp(r->last_opp, s->opportunity_id) != 0) {
        r->n_opps++;
        cl_strlcpy(r->last_opp, s->opportunity_id, sizeof r->last_opp);
    }
    r->opp[i] = (uint32_t)(r->n_opps - 1);
    r->snapshot_time[i] = s->snapshot_time;
    r->snap_day[i] = cl_day_of_ms(s->snapshot_time);
    r->close_day[i] = ex->outcome.close_date;
    r->days_before_close[i] = ex->days_before_close;
    r->won[i] = ex->outcome.outcome == CL_OUTCOME_WON;
    for (int j = 0; j < CL_NUM_BUILTINS; j++)
        r->components[j][i] = s->components[j];
    if (intern_id(r->stages, s->stage, &r->stage[i]) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "rows: out of memory");
    for (size_t j = 0; j < r->n_cat; j++) {
        const char *c = cl_snapshot_category(s, r->cat_source[j]);
        if (!c || !*c) {
            r->cat[j][i] = CL_ROWS_NULL_CATEGORY;
        } else if (intern_id(r->cat_values[j], c, &r->cat[j][i]) != CL_OK) {
            return cl_seterr(err, errlen, CL_ENOMEM, "rows: out of memory");
        }
    }
    for (size_t j = 0; j < r->n_num; j++) {
        cl_opt_double x = cl_snapshot_numeric(s, r->num_source[j]);
        r->num[j][i] = x.present && isfinite(x.value) ? x.value : NAN;
    }
    for (int t = 0; t < 2; t++) {
        r->has_score[t][i] = 0;
        r->score[t][i] = 0;
        r->high[t][i] = 0;
        if (r->tracked[t].version <= 0) continue;
        for (size_t e = 0; e < s->n_scores; e++) {
            const cl_score_entry *se = &s->scores[e];
            if (se->version == r->tracked[t].version &&
                strcmp(se->model, r->tracked[t].model) == 0) {
                r->has_score[t][i] = 1;
                r->score[t][i] = se->score;
                r->high[t][i] = se->band == CL_BAND_HIGH;
                break;
            }
        }
    }
    r->n++;
    return CL_OK;
}

typedef struct {
    cl_training_set *ts;
    cl_training_rows *rows;
    size_t skipped;
    int rc;
    char *err;
    size_t errlen;
} load_ctx;

static int load_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    load_ctx *c = ud;
    avro_value_t *v;
    char derr[CL_ERRLEN];
    if (cl_avro_codec_decode(c->ts->codec, val, vlen, &v, derr, sizeof derr) != CL_OK ||
        cl_labeled_example_from_avro(v, c->ts->scratch, derr, sizeof derr) != CL_OK) {
        c->skipped++;
        return 0;
    }
    c->rc = cl_training_rows_append(c->rows, c->ts->scratch, c->err, c->errlen);
    return c->rc == CL_OK ? 0 : c->rc;
}

int cl_training_rows_load(cl_training_set *ts, const cl_rows_spec *spec, cl_training_rows *out,
                          size_t *skipped, char *err, size_t errlen)
{
    int rc = cl_training_rows_init(out, spec, err, errlen);
    if (rc != CL_OK) return rc;
    cl_store_txn *t;
    rc = cl_store_read_begin(ts->store, &t, err, errlen);
    if (rc != CL_OK) {
        cl_training_rows_free(out);
        return rc;
    }
    load_ctx c = {ts, out, 0, CL_OK, err, errlen};
    rc = cl_store_scan_prefix(t, CL_TS_DB_EXAMPLES, NULL, 0, load_cb, &c, err, errlen);
    cl_store_read_end(t);
    if (c.rc != CL_OK) rc = c.rc;
    if (rc != CL_OK) {
        cl_training_rows_free(out);
        return rc;
    }
    if (skipped) *skipped = c.skipped;
    return CL_OK;
}
