/*
 * evaluate.c — evaluation set (horizon policy over the keyed state) and its figures.
 */
#include "evaluate.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cl_eval_attr_names[CL_EVAL_ATTRS] = {
    "stage", "segment", "owner", "region", "product", "lead_source", "type"};

void cl_eval_options_defaults(cl_eval_options *o)
{
    memset(o, 0, sizeof *o);
    o->horizon = CL_HORIZON_LATEST_BEFORE_HORIZON;
    o->horizon_days = 7;
    o->calibration_bins = 10;
    o->threshold_step = 5;
    o->months = 12;
    o->default_bands.high = 70;
    o->default_bands.medium = 40;
}

/* ---- string table ------------------------------------------------------------------ */

/* Interned strings: ids index `offs` into `arena`; a power-of-two open-addressing table
 * maps hashes to ids. Id 0 is the empty string (a null attribute). */
typedef struct {
    cl_buf arena;
    size_t *offs;
    size_t n, cap;
    uint32_t *slots; /* id + 1; 0 = empty */
    size_t nslots;
} strtab;

typedef struct {
    strtab st;
    cl_metrics_row *group; /* rows of the current opportunity */
    size_t ngroup, capgroup;
    uint32_t next_row;
    char *err;
    size_t errlen;
} build_ctx;

static const char *st_get(const strtab *t, uint32_t id)
{
    return id < t->n ? t->arena.data + t->offs[id] : "";
}

static int st_grow_slots(strtab *t)
{
    size_t ns = t->nslots ? t->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return CL_ENOMEM;
    for (size_t id = 0; id < t->n; id++) {
        const char *s = st_get(t, (uint32_t)id);
        size_t h = (size_t)cl_hash64(s, strlen(s), 0) & (ns - 1);
        while (slots[h])
            h = (h + 1) & (ns - 1);
        slots[h] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
    return CL_OK;
}

static int st_intern(strtab *t, const char *s, uint32_t *id)
{
    if (!s[0] && t->n > 0) {
        *id = 0;
        return CL_OK;
    }
    if ((t->n + 1) * 2 > t->nslots && st_grow_slots(t) != CL_OK)
        return CL_ENOMEM;
    size_t len = strlen(s);
    size_t h = (size_t)cl_hash64(s, len, 0) & (t->nslots - 1);
    while (t->slots[h]) {
        uint32_t cand = t->slots[h] - 1;
        if (strcmp(st_get(t, cand), s) == 0) {
            *id = cand;
            return CL_OK;
        }
        h = (h + 1) & (t->nslots - 1);
    }
    if (t->n >= UINT32_MAX - 1)
        return CL_ENOMEM;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 1024;
        size_t *no = realloc(t->offs, nc * sizeof *no);
        if (!no)
            return CL_ENOMEM;
        t->offs = no;
        t->cap = nc;
    }
    size_t off = t->arena.len;
    if (cl_buf_append(&t->arena, s, len + 1) != CL_OK)
        return CL_ENOMEM;
    t->offs[t->n] = off;
    t->slots[h] = (uint32_t)t->n + 1;
    *id = (uint32_t)t->n++;
    return CL_OK;
}

static void st_free(strtab *t)
{
    cl_buf_free(&t->arena);
    free(t->offs);
    free(t->slots);
}

/* ---- set construction -------------------------------------------------------------- */

const char *cl_eval_string(const cl_eval_set *s, uint32_t id)
{
    const build_ctx *c = s->internal;
    return st_get(&c->st, id);
}

static int version_cmp(const cl_eval_version *v, const char *model, int64_t version)
{
    int c = strcmp(v->model, model);
    if (c)
        return c;
    return v->version < version ? -1 : v->version > version;
}

int cl_eval_find_version(const cl_eval_set *s, const char *model, int64_t version)
{
    size_t lo = 0, hi = s->nversions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = version_cmp(&s->versions[mid], model, version);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int version_get(cl_eval_set *s, const char *model, int64_t version, cl_eval_version **out)
{
    size_t lo = 0, hi = s->nversions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = version_cmp(&s->versions[mid], model, version);
        if (c == 0) {
            *out = &s->versions[mid];
            return CL_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (s->nversions >= CL_EVAL_MODELS_MAX)
        return CL_EFULL;
    cl_eval_version *nv = realloc(s->versions, (s->nversions + 1) * sizeof *nv);
    if (!nv)
        return CL_ENOMEM;
    s->versions = nv;
    memmove(&nv[lo + 1], &nv[lo], (s->nversions - lo) * sizeof *nv);
    cl_eval_version *v = &nv[lo];
    memset(v, 0, sizeof *v);
    cl_strlcpy(v->model, model, sizeof v->model);
    v->version = version;
    v->bands = s->opts.default_bands;
    for (size_t i = 0; i < s->opts.nmodels; i++) {
        const cl_eval_model *m = &s->opts.models[i];
        if (m->version == version && strcmp(m->model, model) == 0) {
            v->info = m;
            v->bands = m->bands;
        }
    }
    s->nversions++;
    *out = v;
    return CL_OK;
}

static int item_add(cl_eval_set *s, build_ctx *c, const cl_metrics_row *r, uint32_t row_index,
                    const cl_score_entry *e)
{
    cl_eval_version *v;
    int rc = version_get(s, e->model, e->version, &v);
    if (rc != CL_OK)
        return rc;
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        cl_eval_item *ni = realloc(v->items, nc * sizeof *ni);
        if (!ni)
            return CL_ENOMEM;
        v->items = ni;
        v->cap = nc;
    }
    cl_eval_item *it = &v->items[v->n];
    memset(it, 0, sizeof *it);
    const char *attrs[CL_EVAL_ATTRS] = {r->stage,   r->segment,     r->owner_id, r->region,
                                        r->product, r->lead_source, r->type};
    for (size_t i = 0; i < CL_EVAL_ATTRS && rc == CL_OK; i++)
        rc = st_intern(&c->st, attrs[i], &it->attr[i]);
    if (rc == CL_OK)
        rc = st_intern(&c->st, r->opportunity_id, &it->opportunity);
    if (rc == CL_OK)
        rc = st_intern(&c->st, r->snapshot_id, &it->snapshot);
    if (rc != CL_OK)
        return rc;
    it->row = row_index;
    it->close_date = r->close_date;
    it->days_before_close = r->days_before_close;
    it->won = r->won;
    it->band = (uint8_t)e->band;
    it->has_amount = r->amount.present;
    it->amount = r->amount.present ? r->amount.value : 0;
    it->score = e->score;
    it->probability = e->probability;
    memcpy(it->components, r->components, sizeof it->components);
    v->n++;
    if (r->close_date < s->min_close)
        s->min_close = r->close_date;
    if (r->close_date > s->max_close)
        s->max_close = r->close_date;
    return CL_OK;
}

static const cl_score_entry *entry_of(const cl_metrics_row *r, const char *model,
                                      int64_t version)
{
    for (size_t i = 0; i < r->n_scores; i++)
        if (r->scores[i].version == version && strcmp(r->scores[i].model, model) == 0)
            return &r->scores[i];
    return NULL;
}

/* a is preferred over b as the "latest" snapshot. */
static int later(const cl_metrics_row *a, const cl_metrics_row *b)
{
    if (a->snapshot_time != b->snapshot_time)
        return a->snapshot_time > b->snapshot_time;
    return strcmp(a->snapshot_id, b->snapshot_id) > 0;
}

/* Applies the horizon policy to the buffered rows of one opportunity. */
static int flush_group(cl_eval_set *s, build_ctx *c)
{
    if (c->ngroup == 0)
        return CL_OK;
    s->opportunities++;
    uint32_t base = c->next_row;
    c->next_row += (uint32_t)c->ngroup;
    const cl_eval_options *o = &s->opts;
    int any_eligible = 0;
    for (size_t i = 0; i < c->ngroup; i++)
        if (o->horizon != CL_HORIZON_LATEST_BEFORE_HORIZON ||
            c->group[i].days_before_close >= o->horizon_days)
            any_eligible = 1;
    if (!any_eligible) {
        s->excluded_by_horizon++;
        c->ngroup = 0;
        return CL_OK;
    }
    /* Each (model, version) seen in the group, once: handled at its first occurrence. */
    for (size_t i = 0; i < c->ngroup; i++) {
        for (size_t e = 0; e < c->group[i].n_scores; e++) {
            const cl_score_entry *se = &c->group[i].scores[e];
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++)
                seen = entry_of(&c->group[j], se->model, se->version) != NULL;
            for (size_t f = 0; f < e && !seen; f++)
                seen = c->group[i].scores[f].version == se->version &&
                       strcmp(c->group[i].scores[f].model, se->model) == 0;
            if (seen)
                continue;
            int best = -1;
            for (size_t j = i; j < c->ngroup; j++) {
                const cl_metrics_row *r = &c->group[j];
                const cl_score_entry *re = entry_of(r, se->model, se->version);
                if (!re)
                    continue;
                int rc = CL_OK;
                switch (o->horizon) {
                case CL_HORIZON_ALL_SNAPSHOTS:
                    rc = item_add(s, c, r, base + (uint32_t)j, re);
                    break;
                case CL_HORIZON_FIRST_SNAPSHOT:
                    if (best < 0 || later(&c->group[best], r))
                        best = (int)j;
                    break;
                default:
                    if (r->days_before_close >= o->horizon_days &&
                        (best < 0 || later(r, &c->group[best])))
                        best = (int)j;
                    break;
                }
                if (rc != CL_OK)
                    return rc;
            }
            if (best >= 0) {
                const cl_metrics_row *r = &c->group[best];
                int rc = item_add(s, c, r, base + (uint32_t)best,
                                  entry_of(r, se->model, se->version));
                if (rc != CL_OK)
                    return rc;
            }
        }
    }
    c->ngroup = 0;
    return CL_OK;
}

static int add_row(const cl_metrics_row *row, void *ud)
{
    cl_eval_set *s = ud;
    build_ctx *c = s->internal;
    s->rows++;
    if (c->ngroup > 0 && strcmp(c->group[0].opportunity_id, row->opportunity_id) != 0) {
        int rc = flush_group(s, c);
        if (rc != CL_OK)
            return cl_seterr(c->err, c->errlen, rc, "evaluation: %s while adding opportunity "
                             "%.128s", cl_status_name(rc), row->opportunity_id);
    }
    if (c->ngroup >= CL_EVAL_ROWS_PER_OPPORTUNITY_MAX) {
        s->rows_dropped++;
        return 0;
    }
    if (c->ngroup == c->capgroup) {
        size_t nc = c->capgroup ? c->capgroup * 2 : 16;
        cl_metrics_row *ng = realloc(c->group, nc * sizeof *ng);
        if (!ng)
            return cl_seterr(c->err, c->errlen, CL_ENOMEM, "out of memory");
        c->group = ng;
        c->capgroup = nc;
    }
    c->group[c->ngroup++] = *row;
    return 0;
}

static int set_new(const cl_eval_options *o, cl_eval_set **out, char *err, size_t errlen)
{
    if (o->calibration_bins < 1 || o->calibration_bins > CL_MAX_CALIBRATION_BINS ||
        !(o->threshold_step >= 1 && o->threshold_step <= 100) || o->horizon_days < 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "evaluation options: bins %zu (1..%d), threshold step %g (1..100), "
                         "horizon days %d (>= 0)",
                         o->calibration_bins, CL_MAX_CALIBRATION_BINS, o->threshold_step,
                         (int)o->horizon_days);
    cl_eval_set *s = calloc(1, sizeof *s);
    build_ctx *c = calloc(1, sizeof *c);
    if (!s || !c) {
        free(s);
        free(c);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    s->opts = *o;
    s->internal = c;
    s->min_close = INT32_MAX;
    s->max_close = INT32_MIN;
    cl_buf_init(&c->st.arena, 0);
    c->err = err;
    c->errlen = errlen;
    uint32_t id;
    if (st_intern(&c->st, "", &id) != CL_OK) {
        cl_eval_set_free(s);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    *out = s;
    return CL_OK;
}

static int set_finish(cl_eval_set *s, int rc, cl_eval_set **out)
{
    build_ctx *c = s->internal;
    if (rc == CL_OK) {
        rc = flush_group(s, c);
        if (rc != CL_OK)
            cl_seterr(c->err, c->errlen, rc, "evaluation: %s", cl_status_name(rc));
    }
    free(c->group);
    c->group = NULL;
    c->ngroup = c->capgroup = 0;
    c->err = NULL;
    c->errlen = 0;
    if (rc != CL_OK) {
        cl_eval_set_free(s);
        return rc;
    }
    *out = s;
    return CL_OK;
}

int cl_eval_set_build(cl_store_txn *t, const cl_eval_options *o, cl_eval_set **out, char *err,
                      size_t errlen)
{
    cl_eval_set *s;
    int rc = set_new(o, &s, err, errlen);
    if (rc != CL_OK)
        return rc;
    rc = cl_aggregate_scan(t, add_row, s, err, errlen);
    return set_finish(s, rc, out);
}

int cl_eval_set_from_rows(const cl_metrics_row *rows, size_t n, const cl_eval_options *o,
                          cl_eval_set **out, char *err, size_t errlen)
{
    cl_eval_set *s;
    int rc = set_new(o, &s, err, errlen);
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        int r = add_row(&rows[i], s);
        if (r != 0)
            rc = r < 0 ? r : CL_OK;
    }
    return set_finish(s, rc, out);
}

void cl_eval_set_free(cl_eval_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nversions; i++)
        free(s->versions[i].items);
    free(s->versions);
    build_ctx *c = s->internal;
    if (c) {
        st_free(&c->st);
        free(c->group);
        free(c);
    }
    free(s);
}

/* ---- windows ----------------------------------------------------------------------- */

/* Howard Hinnant's civil-from-days / days-from-civil (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int64_t cl_eval_month_of_day(int32_t day)
{
    int64_t y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    return y * 12 + (int64_t)(m - 1);
}

int32_t cl_eval_day_of_month(int64_t month)
{
    int64_t y = month >= 0 ? month / 12 : -((-month + 11) / 12);
    unsigned m = (unsigned)(month - y * 12) + 1;
    return (int32_t)days_from_civil(y, m, 1);
}

size_t cl_eval_windows(const cl_eval_set *s, cl_metrics_window *out, size_t max)
{
    size_t n = 0;
    if (s->min_close > s->max_close || max == 0)
        return 0;
    int64_t end = ((int64_t)s->max_close + 1) * CL_EVAL_DAY_MS;
    out[n++] = (cl_metrics_window){(int64_t)s->min_close * CL_EVAL_DAY_MS, end,
                                   CL_WINDOW_CUMULATIVE};
    int64_t last = cl_eval_month_of_day(s->max_close);
    int64_t first = cl_eval_month_of_day(s->min_close);
    if (s->opts.months > 0 && last - first + 1 > (int64_t)s->opts.months)
        first = last - (int64_t)s->opts.months + 1;
    for (int64_t m = first; s->opts.months > 0 && m <= last && n + 1 < max; m++) {
        /* Only months with data: a month without closed deals says nothing. */
        cl_metrics_window w = {(int64_t)cl_eval_day_of_month(m) * CL_EVAL_DAY_MS,
                               (int64_t)cl_eval_day_of_month(m + 1) * CL_EVAL_DAY_MS,
                               CL_WINDOW_MONTHLY};
        int has = 0;
        for (size_t v = 0; v < s->nversions && !has; v++)
            for (size_t i = 0; i < s->versions[v].n && !has; i++)
                has = cl_eval_in_window(&s->versions[v].items[i], &w);
        if (has)
            out[n++] = w;
    }
    if (n < max)
        out[n++] = (cl_metrics_window){end - 90 * CL_EVAL_DAY_MS, end, CL_WINDOW_ROLLING_90D};
    return n;
}

int cl_eval_in_window(const cl_eval_item *it, const cl_metrics_window *w)
{
    int64_t t = (int64_t)it->close_date * CL_EVAL_DAY_MS;
    return t >= w->start && t < w->end;
}

void cl_eval_window_label(const cl_metrics_window *w, char *out, size_t len)
{
    char a[11], b[11];
    cl_format_date((int32_t)(w->start / CL_EVAL_DAY_MS), a);
    cl_format_date((int32_t)(w->end / CL_EVAL_DAY_MS) - 1, b);
    switch (w->kind) {
    case CL_WINDOW_MONTHLY:
        snprintf(out, len, "%.7s", a);
        break;
    case CL_WINDOW_ROLLING_90D:
        snprintf(out, len, "90 days to %s", b);
        break;
    default:
        snprintf(out, len, "%s to %s", a, b);
        break;
    }
}

/* ---- figures ----------------------------------------------------------------------- */

typedef struct {
    double *score, *prob;
    uint8_t *won;
    size_t *idx;
    size_t n;
} window_arrays;

static void arrays_free(window_arrays *a)
{
    free(a->score);
    free(a->prob);
    free(a->won);
    free(a->idx);
}

static int arrays_of(const cl_eval_version *v, const cl_metrics_window *w, window_arrays *a)
{
    memset(a, 0, sizeof *a);
    size_t cap = v->n ? v->n : 1;
    a->score = malloc(cap * sizeof *a->score);
    a->prob = malloc(cap * sizeof *a->prob);
    a->won = malloc(cap);
    a->idx = malloc(cap * sizeof *a->idx);
    if (!a->score || !a->prob || !a->won || !a->idx) {
        arrays_free(a);
        return CL_ENOMEM;
    }
    for (size_t i = 0; i < v->n; i++) {
        const cl_eval_item *it = &v->items[i];
        if (w && !cl_eval_in_window(it, w))
            continue;
        a->score[a->n] = it->score;
        a->prob[a->n] = it->probability;
        a->won[a->n] = it->won;
        a->idx[a->n] = i;
        a->n++;
    }
    return CL_OK;
}

static cl_opt_double opt(double v) { return (cl_opt_double){true, v}; }

typedef struct {
    uint32_t key;
    int64_t n, won, tp, fp;
    double score_sum;
} group_acc;

static int group_cmp_n(const void *pa, const void *pb)
{
    const group_acc *a = pa, *b = pb;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return a->key < b->key ? -1 : a->key > b->key;
}

/* Per-group figures for one attribute; keeps the CL_MAX_GROUPS largest groups. */
static int groups_of(const cl_eval_set *s, const cl_eval_version *v, const window_arrays *a,
                     int attr, cl_metrics_group *out, size_t *nout, char *err, size_t errlen)
{
    const build_ctx *c = s->internal;
    size_t nkeys = c->st.n;
    /* Sparse accumulation: map string id -> slot through a dense array of the ids used. */
    int32_t *slot = malloc(nkeys * sizeof *slot);
    group_acc *acc = calloc(a->n ? a->n : 1, sizeof *acc);
    if (!slot || !acc) {
        free(slot);
        free(acc);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nkeys; i++)
        slot[i] = -1;
    size_t ng = 0;
    for (size_t i = 0; i < a->n; i++) {
        const cl_eval_item *it = &v->items[a->idx[i]];
        uint32_t k = it->attr[attr];
        if (slot[k] < 0) {
            slot[k] = (int32_t)ng;
            acc[ng].key = k;
            ng++;
        }
        group_acc *g = &acc[slot[k]];
        g->n++;
        g->won += it->won;
        g->score_sum += it->score;
        if (it->score >= v->bands.high) {
            if (it->won)
                g->tp++;
            else
                g->fp++;
        }
    }
    qsort(acc, ng, sizeof *acc, group_cmp_n);
    if (ng > CL_MAX_GROUPS)
        ng = CL_MAX_GROUPS;
    int rc = CL_OK;
    double *gs = malloc((a->n ? a->n : 1) * sizeof *gs);
    uint8_t *gw = malloc(a->n ? a->n : 1);
    if (!gs || !gw)
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    for (size_t g = 0; g < ng && rc == CL_OK; g++) {
        cl_metrics_group *o = &out[g];
        memset(o, 0, sizeof *o);
        cl_strlcpy(o->key, st_get(&c->st, acc[g].key), sizeof o->key);
        o->n = acc[g].n;
        o->won = acc[g].won;
        o->mean_score = opt(acc[g].score_sum / (double)acc[g].n);
        if (acc[g].tp + acc[g].fp > 0)
            o->precision = opt((double)acc[g].tp / (double)(acc[g].tp + acc[g].fp));
        if (acc[g].won > 0 && acc[g].won < acc[g].n) {
            size_t m = 0;
            for (size_t i = 0; i < a->n; i++) {
                const cl_eval_item *it = &v->items[a->idx[i]];
                if (it->attr[attr] == acc[g].key) {
                    gs[m] = it->score;
                    gw[m] = it->won;
                    m++;
                }
            }
            double auc;
            if (cl_stats_auc(gs, gw, NULL, m, &auc, NULL, 0) == CL_OK)
                o->auc = opt(auc);
        }
    }
    free(gs);
    free(gw);
    free(slot);
    free(acc);
    *nout = rc == CL_OK ? ng : 0;
    return rc;
}

int cl_eval_version_metrics(const cl_eval_set *s, size_t vi, const cl_metrics_window *w,
                            int64_t generated_at, cl_model_metrics *out, char *err,
                            size_t errlen)
{
    if (vi >= s->nversions)
        return cl_seterr(err, errlen, CL_EINVAL, "evaluation: no version index %zu", vi);
    const cl_eval_version *v = &s->versions[vi];
    window_arrays a;
    if (arrays_of(v, w, &a) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    if (a.n == 0) {
        arrays_free(&a);
        return CL_ENOTFOUND;
    }
    cl_model_metrics_init(out);
    cl_strlcpy(out->model, v->model, sizeof out->model);
    out->version = v->version;
    out->generated_at = generated_at;
    out->window = *w;
    out->horizon = s->opts.horizon;
    out->horizon_days = s->opts.horizon_days;
    out->n = (int64_t)a.n;
    for (size_t i = 0; i < a.n; i++)
        out->won += a.won[i];
    out->lost = out->n - out->won;

    int rc;
    cl_confusion cm;
    if ((rc = cl_stats_confusion(a.score, a.won, NULL, a.n, v->bands.high, &cm, err, errlen)) !=
        CL_OK)
        goto done;
    out->confusion.threshold = v->bands.high;
    out->confusion.tp = llround(cm.tp);
    out->confusion.fp = llround(cm.fp);
    out->confusion.tn = llround(cm.tn);
    out->confusion.fn = llround(cm.fn);
    cl_prf prf = cl_stats_prf(&cm);
    out->precision = opt(prf.precision);
    out->recall = opt(prf.recall);
    out->f1 = opt(prf.f1);

    /* Exact AUC from integer counts per 0.01 score bin. */
    cl_score_hist h;
    if ((rc = cl_score_hist_init(&h, 0, 100, 0.01, err, errlen)) != CL_OK)
        goto done;
    for (size_t i = 0; i < a.n && rc == CL_OK; i++)
        rc = cl_score_hist_add(&h, a.score[i], a.won[i], 1, err, errlen);
    double auc;
    if (rc == CL_OK && out->won > 0 && out->lost > 0 &&
        cl_score_hist_auc(&h, &auc, NULL, 0) == CL_OK)
        out->auc = opt(auc);
    cl_score_hist_free(&h);
    if (rc != CL_OK)
        goto done;

    double brier, ll, ece;
    if ((rc = cl_stats_brier(a.prob, a.won, NULL, a.n, &brier, err, errlen)) != CL_OK ||
        (rc = cl_stats_log_loss(a.prob, a.won, NULL, a.n, &ll, err, errlen)) != CL_OK)
        goto done;
    out->brier = opt(brier);
    out->log_loss = opt(ll);
    cl_calibration_bin bins[CL_MAX_CALIBRATION_BINS];
    size_t nb = s->opts.calibration_bins;
    if ((rc = cl_stats_ece(a.prob, a.won, NULL, a.n, nb, &ece, bins, err, errlen)) != CL_OK)
        goto done;
    out->ece = opt(ece);
    out->n_calibration_bins = nb;
    for (size_t b = 0; b < nb; b++) {
        cl_metrics_calibration_bin *o = &out->calibration_bins[b];
        o->lower = bins[b].lo;
        o->upper = bins[b].hi;
        o->n = llround(bins[b].count);
        o->won = llround(bins[b].observed_rate * bins[b].count);
        if (o->n > 0) {
            o->mean_predicted = opt(bins[b].mean_predicted);
            o->observed_rate = opt(bins[b].observed_rate);
        }
    }

    double thr[CL_MAX_THRESHOLD_POINTS];
    size_t nt = 0;
    for (double t = 0; t <= 100 + 1e-9 && nt < CL_MAX_THRESHOLD_POINTS; t += s->opts.threshold_step)
        thr[nt++] = t;
    cl_confusion cms[CL_MAX_THRESHOLD_POINTS];
    if ((rc = cl_stats_confusion_by_threshold(a.score, a.won, NULL, a.n, thr, nt, cms, err,
                                              errlen)) != CL_OK)
        goto done;
    out->n_thresholds = nt;
    for (size_t t = 0; t < nt; t++) {
        cl_metrics_threshold_point *p = &out->thresholds[t];
        p->threshold = thr[t];
        p->predicted_positive = llround(cms[t].tp + cms[t].fp);
        if (p->predicted_positive > 0)
            p->precision = opt(cms[t].tp / (cms[t].tp + cms[t].fp));
        if (out->won > 0)
            p->recall = opt(cms[t].tp / (double)out->won);
    }

    out->n_by_band = CL_NUM_BANDS;
    double psum[CL_NUM_BANDS] = {0};
    for (int b = 0; b < CL_NUM_BANDS; b++)
        out->by_band[b].band = (cl_band)b;
    for (size_t i = 0; i < a.n; i++) {
        const cl_eval_item *it = &v->items[a.idx[i]];
        out->by_band[it->band].n++;
        out->by_band[it->band].won += it->won;
        psum[it->band] += it->probability;
    }
    for (int b = 0; b < CL_NUM_BANDS; b++)
        if (out->by_band[b].n > 0)
            out->by_band[b].mean_probability = opt(psum[b] / (double)out->by_band[b].n);

    if ((rc = groups_of(s, v, &a, CL_EVAL_STAGE, out->by_stage, &out->n_by_stage, err, errlen)) !=
            CL_OK ||
        (rc = groups_of(s, v, &a, CL_EVAL_SEGMENT, out->by_segment, &out->n_by_segment, err,
                        errlen)) != CL_OK ||
        (rc = groups_of(s, v, &a, CL_EVAL_OWNER, out->by_owner, &out->n_by_owner, err, errlen)) !=
            CL_OK)
        goto done;
    rc = cl_model_metrics_validate(out, err, errlen);
done:
    arrays_free(&a);
    return rc;
}

/* ---- top share --------------------------------------------------------------------- */

static const double *g_sort_scores;

static int by_score_desc(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    double sa = g_sort_scores[a], sb = g_sort_scores[b];
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return a < b ? -1 : a > b;
}

int cl_eval_top_share(const cl_eval_set *s, size_t vi, const cl_metrics_window *w, double share,
                      cl_eval_top_k *out, char *err, size_t errlen)
{
    if (vi >= s->nversions || !(share > 0 && share <= 1))
        return cl_seterr(err, errlen, CL_EINVAL, "top share: version %zu, share %g", vi, share);
    const cl_eval_version *v = &s->versions[vi];
    window_arrays a;
    if (arrays_of(v, w, &a) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    memset(out, 0, sizeof *out);
    out->share = share;
    if (a.n == 0) {
        arrays_free(&a);
        return CL_ENOTFOUND;
    }
    size_t *order = malloc(a.n * sizeof *order);
    if (!order) {
        arrays_free(&a);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < a.n; i++)
        order[i] = i;
    /* Single-threaded worker: a file-scope pointer for qsort is safe here. */
    g_sort_scores = a.score;
    qsort(order, a.n, sizeof *order, by_score_desc);
    size_t k = (size_t)ceil(share * (double)a.n - 1e-9);
    if (k == 0)
        k = 1;
    for (size_t i = 0; i < a.n; i++) {
        out->won_total += a.won[i];
        if (i < k)
            out->won_in_top += a.won[order[i]];
    }
    out->k = (int64_t)k;
    out->precision = (double)out->won_in_top / (double)k;
    out->recall = out->won_total ? (double)out->won_in_top / (double)out->won_total : 0;
    free(order);
    arrays_free(&a);
    return CL_OK;
}

/* ---- champion vs challenger -------------------------------------------------------- */

int cl_eval_compare(const cl_eval_set *s, size_t a, size_t b, const cl_metrics_window *w,
                    cl_eval_comparison *out, char *err, size_t errlen)
{
    if (a >= s->nversions || b >= s->nversions || a == b)
        return cl_seterr(err, errlen, CL_EINVAL, "compare: bad versions %zu, %zu", a, b);
    memset(out, 0, sizeof *out);
    out->a = a;
    out->b = b;
    const cl_eval_version *va = &s->versions[a], *vb = &s->versions[b];
    size_t cap = va->n < vb->n ? va->n : vb->n;
    double *sa = malloc((cap ? cap : 1) * sizeof *sa);
    double *sb = malloc((cap ? cap : 1) * sizeof *sb);
    uint8_t *won = malloc(cap ? cap : 1);
    if (!sa || !sb || !won) {
        free(sa);
        free(sb);
        free(won);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    /* Items are in scan order (row ascending) in both versions: merge on the row. */
    size_t i = 0, j = 0, n = 0;
    uint64_t only_a = 0, only_b = 0;
    int64_t tpa = 0, tpb = 0;
    while (i < va->n && j < vb->n) {
        const cl_eval_item *x = &va->items[i], *y = &vb->items[j];
        if (x->row < y->row) {
            i++;
            continue;
        }
        if (y->row < x->row) {
            j++;
            continue;
        }
        i++;
        j++;
        if (w && !cl_eval_in_window(x, w))
            continue;
        sa[n] = x->score;
        sb[n] = y->score;
        won[n] = x->won;
        int pa = x->score >= va->bands.high, pb = y->score >= vb->bands.high;
        int ra = pa == x->won, rb = pb == x->won;
        only_a += ra && !rb;
        only_b += rb && !ra;
        out->high_a += pa;
        out->high_b += pb;
        tpa += pa && x->won;
        tpb += pb && x->won;
        out->n_won += x->won;
        n++;
    }
    out->n_paired = n;
    out->n_lost = n - out->n_won;
    int rc = CL_OK;
    if (n == 0) {
        rc = CL_ENOTFOUND;
    } else {
        out->mcnemar = cl_stats_mcnemar(only_a, only_b);
        out->precision_high_a = out->high_a ? (double)tpa / (double)out->high_a : 0;
        out->precision_high_b = out->high_b ? (double)tpb / (double)out->high_b : 0;
        if (out->n_won >= 2 && out->n_lost >= 2 &&
            cl_stats_delong(sa, sb, won, n, &out->delong, NULL, 0) == CL_OK)
            out->has_delong = true;
    }
    free(sa);
    free(sb);
    free(won);
    return rc;
}

int cl_eval_primary_version(const cl_eval_set *s, const char *model)
{
    int best = -1;
    for (size_t i = 0; i < s->nversions; i++) {
        const cl_eval_version *v = &s->versions[i];
        if (strcmp(v->model, model) != 0)
            continue;
        if (v->info && v->info->status == CL_MODEL_CHAMPION)
            return (int)i;
        if (best < 0 || v->n > s->versions[best].n)
            best = (int)i;
    }
    return best;
}
