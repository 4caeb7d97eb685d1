/*
 * prom.c — Prometheus registry and text exposition (format 0.0.4).
 *
 * Invariants, all under reg->lock:
 *   - a family's label_names never change after registration; every series of it has
 *     exactly nlabels owned label values;
 *   - a histogram series keeps per-bucket (non-cumulative) counts; the renderer makes
 *     them cumulative, so an observation touches one bucket and +Inf is `count`;
 *   - series lookup is a linear scan comparing a 64-bit hash of the label values first;
 *     families are small (bounded by max_series) and most have a handful of series.
 */
#include "prom.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEFAULT_MAX_SERIES 1000
#define DROPPED_NAME "closedloop_prom_series_dropped_total"

const double cl_prom_seconds_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,   0.5,   1,      2.5,   5,    10,    30};
const size_t cl_prom_seconds_buckets_len =
    sizeof cl_prom_seconds_buckets / sizeof cl_prom_seconds_buckets[0];

typedef struct {
    char **values; /* nlabels owned strings */
    uint64_t hash;
    double value;            /* counter / gauge */
    uint64_t *bucket_counts; /* histogram: nbuckets + 1 (last is +Inf only) */
    double sum;
    uint64_t count;
} series;

struct cl_prom_metric {
    cl_prom *reg;
    char *name, *help;
    cl_prom_type type;
    size_t nlabels;
    char *label_names[CL_PROM_LABELS_MAX];
    double *buckets;
    size_t nbuckets;
    series *series;
    size_t nseries, cap;
    size_t max_series;
    int drop_logged;
};

typedef struct {
    int id;
    cl_prom_collector fn;
    void *ud;
} collector;

struct cl_prom {
    pthread_mutex_t lock;            /* families and series */
    pthread_mutex_t collectors_lock; /* collectors; taken before lock, never after */
    cl_prom_metric **families;
    size_t nfamilies, cap;
    size_t max_series;
    cl_prom_metric *dropped;
    collector *collectors;
    size_t ncollectors, collectors_cap;
    int next_collector_id;
};

static const char *type_name(cl_prom_type t)
{
    switch (t) {
    case CL_PROM_COUNTER:
        return "counter";
    case CL_PROM_GAUGE:
        return "gauge";
    case CL_PROM_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static int valid_metric_name(const char *s)
{
    size_t n = strnlen(s, CL_PROM_NAME_MAX + 1);
    if (n == 0 || n > CL_PROM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
    }
    return 1;
}

static int valid_label_name(const char *s)
{
    size_t n = strnlen(s, CL_PROM_NAME_MAX + 1);
    if (n == 0 || n > CL_PROM_NAME_MAX) return 0;
    if (n >= 2 && s[0] == '_' && s[1] == '_') return 0; /* reserved for Prometheus */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
    }
    return 1;
}

static void series_free(series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->bucket_counts);
}

static void family_free(cl_prom_metric *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nseries; i++)
        series_free(&m->series[i], m->nlabels);
    free(m->series);
    for (size_t i = 0; i < m->nlabels; i++)
        free(m->label_names[i]);
    free(m->buckets);
    free(m->name);
    free(m->help);
    free(m);
}

static cl_prom_metric *find_family_locked(cl_prom *reg, const char *name)
{
    for (size_t i = 0; i < reg->nfamilies; i++)
        if (strcmp(reg->families[i]->name, name) == 0) return reg->families[i];
    return NULL;
}

static size_t count_labels(const char *const *names)
{
    size_t n = 0;
    while (names && names[n] && n <= CL_PROM_LABELS_MAX)
        n++;
    return n;
}

static int same_shape(const cl_prom_metric *m, cl_prom_type type, const char *const *labels,
                      size_t nlabels, const double *buckets, size_t nbuckets)
{
    if (m->type != type || m->nlabels != nlabels) return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(m->label_names[i], labels[i]) != 0) return 0;
    if (type == CL_PROM_HISTOGRAM) {
        if (m->nbuckets != nbuckets) return 0;
        for (size_t i = 0; i < nbuckets; i++)
            if (m->buckets[i] != buckets[i]) return 0;
    }
    return 1;
}

static int register_locked(cl_prom *reg, cl_prom_type type, const char *name, const char *help,
                           const char *const *labels, const double *buckets, size_t nbuckets,
                           cl_prom_metric **out, char *err, size_t errlen)
{
    if (!name || !valid_metric_name(name))
        return cl_seterr(err, errlen, CL_EINVAL, "metric name '%.64s' is not valid",
                         name ? name : "(null)");
    size_t nlabels = count_labels(labels);
    if (nlabels > CL_PROM_LABELS_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "metric %s: more than %d labels", name,
                         CL_PROM_LABELS_MAX);
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_label_name(labels[i]))
            return cl_seterr(err, errlen, CL_EINVAL, "metric %s: label name '%.64s' is not valid",
                             name, labels[i]);
        if (type == CL_PROM_HISTOGRAM && strcmp(labels[i], "le") == 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "metric %s: a histogram cannot have a label named 'le'", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return cl_seterr(err, errlen, CL_EINVAL, "metric %s: label '%s' given twice", name,
                                 labels[i]);
    }
    if (type == CL_PROM_HISTOGRAM) {
        if (nbuckets == 0 || nbuckets > CL_PROM_BUCKETS_MAX || !buckets)
            return cl_seterr(err, errlen, CL_EINVAL, "histogram %s: needs 1..%d buckets", name,
                             CL_PROM_BUCKETS_MAX);
        for (size_t i = 0; i < nbuckets; i++) {
            if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "histogram %s: buckets must be finite and strictly increasing",
                                 name);
        }
    }

    cl_prom_metric *existing = find_family_locked(reg, name);
    if (existing) {
        if (!same_shape(existing, type, labels, nlabels, buckets, nbuckets))
            return cl_seterr(err, errlen, CL_ECONFLICT,
                             "metric %s is already registered as a %s with other labels or "
                             "buckets",
                             name, type_name(existing->type));
        *out = existing;
        return CL_OK;
    }

    cl_prom_metric *m = calloc(1, sizeof *m);
    if (!m) return cl_seterr(err, errlen, CL_ENOMEM, "metric %s: out of memory", name);
    m->reg = reg;
    m->type = type;
    m->max_series = reg->max_series;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    int ok = m->name && m->help;
    for (size_t i = 0; ok && i < nlabels; i++) {
        m->label_names[i] = strdup(labels[i]);
        if (m->label_names[i])
            m->nlabels = i + 1;
        else
            ok = 0;
    }
    if (ok && type == CL_PROM_HISTOGRAM) {
        m->buckets = malloc(nbuckets * sizeof *m->buckets);
        if (m->buckets) {
            memcpy(m->buckets, buckets, nbuckets * sizeof *m->buckets);
            m->nbuckets = nbuckets;
        } else {
            ok = 0;
        }
    }
    if (ok && reg->nfamilies == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        cl_prom_metric **f = realloc(reg->families, cap * sizeof *f);
        if (f) {
            reg->families = f;
            reg->cap = cap;
        } else {
            ok = 0;
        }
    }
    if (!ok) {
        family_free(m);
        return cl_seterr(err, errlen, CL_ENOMEM, "metric %s: out of memory", name);
    }
    reg->families[reg->nfamilies++] = m;
    *out = m;
    return CL_OK;
}

static int do_register(cl_prom *reg, cl_prom_type type, const char *name, const char *help,
                       const char *const *labels, const double *buckets, size_t nbuckets,
                       cl_prom_metric **out, char *err, size_t errlen)
{
    pthread_mutex_lock(&reg->lock);
    int rc = register_locked(reg, type, name, help, labels, buckets, nbuckets, out, err, errlen);
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

cl_prom *cl_prom_new(void)
{
    cl_prom *reg = calloc(1, sizeof *reg);
    if (!reg) return NULL;
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->collectors_lock, NULL);
    reg->max_series = DEFAULT_MAX_SERIES;
    reg->next_collector_id = 1;
    if (do_register(reg, CL_PROM_COUNTER, DROPPED_NAME,
                    "Metric updates dropped because a family reached its series limit or a "
                    "label value was too long.",
                    (const char *[]){"metric", NULL}, NULL, 0, &reg->dropped, NULL, 0) != CL_OK) {
        cl_prom_free(reg);
        return NULL;
    }
    /* One series per family at most: bounded by the number of families. */
    reg->dropped->max_series = SIZE_MAX;
    return reg;
}

void cl_prom_free(cl_prom *reg)
{
    if (!reg) return;
    for (size_t i = 0; i < reg->nfamilies; i++)
        family_free(reg->families[i]);
    free(reg->families);
    free(reg->collectors);
    pthread_mutex_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->collectors_lock);
    free(reg);
}

void cl_prom_set_max_series(cl_prom *reg, size_t max_series)
{
    pthread_mutex_lock(&reg->lock);
    reg->max_series = max_series ? max_series : 1;
    pthread_mutex_unlock(&reg->lock);
}

int cl_prom_counter(cl_prom *reg, const char *name, const char *help,
                    const char *const *label_names, cl_prom_metric **out, char *err, size_t errlen)
{
    return do_register(reg, CL_PROM_COUNTER, name, help, label_names, NULL, 0, out, err, errlen);
}

int cl_prom_gauge(cl_prom *reg, const char *name, const char *help, const char *const *label_names,
                  cl_prom_metric **out, char *err, size_t errlen)
{
    return do_register(reg, CL_PROM_GAUGE, name, help, label_names, NULL, 0, out, err, errlen);
}

int cl_prom_histogram(cl_prom *reg, const char *name, const char *help,
                      const char *const *label_names, const double *buckets, size_t nbuckets,
                      cl_prom_metric **out, char *err, size_t errlen)
{
    return do_register(reg, CL_PROM_HISTOGRAM, name, help, label_names, buckets, nbuckets, out, err,
                       errlen);
}

/* ---- series ---------------------------------------------------------------------------- */

static uint64_t hash_values(const cl_prom_metric *m, const char *const *values)
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *v = values[i] ? values[i] : "";
        /* Include the terminator so ("ab","c") and ("a","bc") differ. */
        h = cl_hash64(v, strlen(v) + 1, h);
    }
    return h;
}

static series *find_series_locked(cl_prom_metric *m, const char *const *values, uint64_t h,
                                  size_t *index)
{
    for (size_t i = 0; i < m->nseries; i++) {
        series *s = &m->series[i];
        if (s->hash != h) continue;
        size_t j = 0;
        while (j < m->nlabels && strcmp(s->values[j], values[j] ? values[j] : "") == 0)
            j++;
        if (j == m->nlabels) {
            if (index) *index = i;
            return s;
        }
    }
    return NULL;
}

static void count_drop_locked(cl_prom_metric *m, const char *why);

/* Find or create; NULL when a bound or memory forbids it (the drop is counted). */
static series *series_locked(cl_prom_metric *m, const char *const *values)
{
    if (m->nlabels > 0 && !values) {
        count_drop_locked(m, "label values missing");
        return NULL;
    }
    for (size_t i = 0; i < m->nlabels; i++) {
        if (values[i] &&
            strnlen(values[i], CL_PROM_LABEL_VALUE_MAX + 1) > CL_PROM_LABEL_VALUE_MAX) {
            count_drop_locked(m, "label value too long");
            return NULL;
        }
    }
    uint64_t h = hash_values(m, values);
    series *s = find_series_locked(m, values, h, NULL);
    if (s) return s;
    if (m->nseries >= m->max_series) {
        count_drop_locked(m, "series limit reached");
        return NULL;
    }
    if (m->nseries == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        series *grown = realloc(m->series, cap * sizeof *grown);
        if (!grown) {
            count_drop_locked(m, "out of memory");
            return NULL;
        }
        m->series = grown;
        m->cap = cap;
    }
    series fresh = {0};
    fresh.hash = h;
    fresh.values = calloc(m->nlabels ? m->nlabels : 1, sizeof *fresh.values);
    int ok = fresh.values != NULL;
    for (size_t i = 0; ok && i < m->nlabels; i++) {
        fresh.values[i] = strdup(values[i] ? values[i] : "");
        ok = fresh.values[i] != NULL;
    }
    if (ok && m->type == CL_PROM_HISTOGRAM) {
        fresh.bucket_counts = calloc(m->nbuckets + 1, sizeof *fresh.bucket_counts);
        ok = fresh.bucket_counts != NULL;
    }
    if (!ok) {
        series_free(&fresh, m->nlabels);
        count_drop_locked(m, "out of memory");
        return NULL;
    }
    m->series[m->nseries++] = fresh;
    return &m->series[m->nseries - 1];
}

static void count_drop_locked(cl_prom_metric *m, const char *why)
{
    cl_prom_metric *d = m->reg->dropped;
    if (!m->drop_logged) {
        m->drop_logged = 1;
        cl_log(CL_LOG_WARN, "metric_update_dropped", "metric=%s reason=\"%s\" max_series=%zu",
               m->name, why, m->max_series);
    }
    if (d && d != m) {
        series *s = series_locked(d, (const char *const[]){m->name});
        if (s) s->value += 1;
    }
}

void cl_prom_counter_add(cl_prom_metric *m, const char *const *label_values, double v)
{
    if (!m || m->type != CL_PROM_COUNTER || !(v >= 0) || !isfinite(v)) return;
    pthread_mutex_lock(&m->reg->lock);
    series *s = series_locked(m, label_values);
    if (s) s->value += v;
    pthread_mutex_unlock(&m->reg->lock);
}

void cl_prom_gauge_set(cl_prom_metric *m, const char *const *label_values, double v)
{
    if (!m || m->type != CL_PROM_GAUGE) return;
    pthread_mutex_lock(&m->reg->lock);
    series *s = series_locked(m, label_values);
    if (s) s->value = v;
    pthread_mutex_unlock(&m->reg->lock);
}

void cl_prom_gauge_add(cl_prom_metric *m, const char *const *label_values, double v)
{
    if (!m || m->type != CL_PROM_GAUGE) return;
    pthread_mutex_lock(&m->reg->lock);
    series *s = series_locked(m, label_values);
    if (s) s->value += v;
    pthread_mutex_unlock(&m->reg->lock);
}

void cl_prom_observe(cl_prom_metric *m, const char *const *label_values, double v)
{
    if (!m || m->type != CL_PROM_HISTOGRAM || isnan(v)) return;
    pthread_mutex_lock(&m->reg->lock);
    series *s = series_locked(m, label_values);
    if (s) {
        size_t b = 0;
        while (b < m->nbuckets && v > m->buckets[b])
            b++; /* le: value <= bound */
        s->bucket_counts[b]++;
        s->sum += v;
        s->count++;
    }
    pthread_mutex_unlock(&m->reg->lock);
}

int cl_prom_remove(cl_prom_metric *m, const char *const *label_values)
{
    if (!m || (m->nlabels > 0 && !label_values)) return CL_EINVAL;
    pthread_mutex_lock(&m->reg->lock);
    size_t i;
    int rc = CL_ENOTFOUND;
    if (find_series_locked(m, label_values, hash_values(m, label_values), &i)) {
        series_free(&m->series[i], m->nlabels);
        memmove(&m->series[i], &m->series[i + 1], (m->nseries - i - 1) * sizeof *m->series);
        m->nseries--;
        rc = CL_OK;
    }
    pthread_mutex_unlock(&m->reg->lock);
    return rc;
}

static void clear_locked(cl_prom_metric *m)
{
    for (size_t i = 0; i < m->nseries; i++)
        series_free(&m->series[i], m->nlabels);
    m->nseries = 0;
}

void cl_prom_clear(cl_prom_metric *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->reg->lock);
    clear_locked(m);
    pthread_mutex_unlock(&m->reg->lock);
}

int cl_prom_value(cl_prom_metric *m, const char *const *label_values, double *out)
{
    if (!m || m->type == CL_PROM_HISTOGRAM || (m->nlabels > 0 && !label_values)) return CL_EINVAL;
    pthread_mutex_lock(&m->reg->lock);
    series *s = find_series_locked(m, label_values, hash_values(m, label_values), NULL);
    if (s) *out = s->value;
    pthread_mutex_unlock(&m->reg->lock);
    return s ? CL_OK : CL_ENOTFOUND;
}

/* ---- collectors ------------------------------------------------------------------------ */

int cl_prom_add_collector(cl_prom *reg, cl_prom_collector fn, void *ud)
{
    if (!reg || !fn) return CL_EINVAL;
    pthread_mutex_lock(&reg->collectors_lock);
    int id = CL_ENOMEM;
    if (reg->ncollectors == reg->collectors_cap) {
        size_t cap = reg->collectors_cap ? reg->collectors_cap * 2 : 4;
        collector *c = realloc(reg->collectors, cap * sizeof *c);
        if (c) {
            reg->collectors = c;
            reg->collectors_cap = cap;
        }
    }
    if (reg->ncollectors < reg->collectors_cap) {
        id = reg->next_collector_id++;
        reg->collectors[reg->ncollectors++] = (collector){id, fn, ud};
    }
    pthread_mutex_unlock(&reg->collectors_lock);
    return id;
}

void cl_prom_remove_collector(cl_prom *reg, int id)
{
    if (!reg) return;
    pthread_mutex_lock(&reg->collectors_lock);
    for (size_t i = 0; i < reg->ncollectors; i++) {
        if (reg->collectors[i].id == id) {
            memmove(&reg->collectors[i], &reg->collectors[i + 1],
                    (reg->ncollectors - i - 1) * sizeof *reg->collectors);
            reg->ncollectors--;
            break;
        }
    }
    pthread_mutex_unlock(&reg->collectors_lock);
}

/* ---- rendering ------------------------------------------------------------------------- */

/* Shortest decimal that strtod reads back to exactly v. */
static void format_double(double v, char out[40])
{
    if (isnan(v)) {
        snprintf(out, 40, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, 40, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v) return;
    }
}

static int append_escaped(cl_buf *out, const char *s, int quote)
{
    int rc = CL_OK;
    const char *run = s;
    for (const char *p = s; *p && rc == CL_OK; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (*p == '"' && quote)
            rep = "\\\"";
        if (!rep) continue;
        rc = cl_buf_append(out, run, (size_t)(p - run));
        if (rc == CL_OK) rc = cl_buf_append(out, rep, strlen(rep));
        run = p + 1;
    }
    if (rc == CL_OK) rc = cl_buf_append(out, run, strlen(run));
    return rc;
}

/* name{l1="v1",...[,le="x"]} value\n */
static int render_sample(cl_buf *out, const cl_prom_metric *m, const char *suffix, const series *s,
                         const char *le, double value)
{
    int rc = cl_buf_printf(out, "%s%s", m->name, suffix);
    if (rc == CL_OK && (m->nlabels > 0 || le)) {
        rc = cl_buf_append(out, "{", 1);
        for (size_t i = 0; rc == CL_OK && i < m->nlabels; i++) {
            rc = cl_buf_printf(out, "%s%s=\"", i ? "," : "", m->label_names[i]);
            if (rc == CL_OK) rc = append_escaped(out, s->values[i], 1);
            if (rc == CL_OK) rc = cl_buf_append(out, "\"", 1);
        }
        if (rc == CL_OK && le) rc = cl_buf_printf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le);
        if (rc == CL_OK) rc = cl_buf_append(out, "}", 1);
    }
    char num[40];
    format_double(value, num);
    if (rc == CL_OK) rc = cl_buf_printf(out, " %s\n", num);
    return rc;
}

static int compare_series(const void *a, const void *b, void *nlabels)
{
    const series *x = *(const series *const *)a, *y = *(const series *const *)b;
    for (size_t i = 0; i < *(const size_t *)nlabels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c) return c;
    }
    return 0;
}

static int compare_families(const void *a, const void *b)
{
    return strcmp((*(cl_prom_metric *const *)a)->name, (*(cl_prom_metric *const *)b)->name);
}

static int render_family(cl_buf *out, const cl_prom_metric *m, const series **sorted)
{
    if (m->nseries == 0) return CL_OK; /* a family without samples says nothing */
    int rc = cl_buf_printf(out, "# HELP %s ", m->name);
    if (rc == CL_OK) rc = append_escaped(out, m->help, 0);
    if (rc == CL_OK) rc = cl_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_name(m->type));
    for (size_t i = 0; i < m->nseries; i++)
        sorted[i] = &m->series[i];
    size_t nlabels = m->nlabels;
    qsort_r(sorted, m->nseries, sizeof *sorted, compare_series, &nlabels);
    for (size_t i = 0; rc == CL_OK && i < m->nseries; i++) {
        const series *s = sorted[i];
        if (m->type != CL_PROM_HISTOGRAM) {
            rc = render_sample(out, m, "", s, NULL, s->value);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; rc == CL_OK && b < m->nbuckets; b++) {
            char le[40];
            format_double(m->buckets[b], le);
            cumulative += s->bucket_counts[b];
            rc = render_sample(out, m, "_bucket", s, le, (double)cumulative);
        }
        if (rc == CL_OK) rc = render_sample(out, m, "_bucket", s, "+Inf", (double)s->count);
        if (rc == CL_OK) rc = render_sample(out, m, "_sum", s, NULL, s->sum);
        if (rc == CL_OK) rc = render_sample(out, m, "_count", s, NULL, (double)s->count);
    }
    return rc;
}

int cl_prom_render(cl_prom *reg, cl_buf *out)
{
    pthread_mutex_lock(&reg->collectors_lock);
    for (size_t i = 0; i < reg->ncollectors; i++)
        reg->collectors[i].fn(reg, reg->collectors[i].ud);
    pthread_mutex_unlock(&reg->collectors_lock);

    pthread_mutex_lock(&reg->lock);
    size_t max_series = 1;
    for (size_t i = 0; i < reg->nfamilies; i++)
        if (reg->families[i]->nseries > max_series) max_series = reg->families[i]->nseries;
    cl_prom_metric **families = malloc(reg->nfamilies * sizeof *families + 1);
    const series **sorted = malloc(max_series * sizeof *sorted);
    int rc = CL_ENOMEM;
    if (families && sorted) {
        memcpy(families, reg->families, reg->nfamilies * sizeof *families);
        qsort(families, reg->nfamilies, sizeof *families, compare_families);
        rc = CL_OK;
        for (size_t i = 0; rc == CL_OK && i < reg->nfamilies; i++)
            rc = render_family(out, families[i], sorted);
    }
    pthread_mutex_unlock(&reg->lock);
    free(families);
    free(sorted);
    return rc;
}

/* ---- consumer lag ---------------------------------------------------------------------- */

int cl_prom_set_consumer_lag(cl_prom *reg, const cl_prom_partition_lag *rows, size_t n, char *err,
                             size_t errlen)
{
    static const char *const gtp[] = {"consumergroup", "topic", "partition", NULL};
    static const char *const gt[] = {"consumergroup", "topic", NULL};
    static const char *const tp[] = {"topic", "partition", NULL};
    cl_prom_metric *lag, *lag_sum, *current, *end, *seconds;

    pthread_mutex_lock(&reg->lock);
    int rc = register_locked(reg, CL_PROM_GAUGE, "kafka_consumergroup_lag",
                             "Consumer group lag in messages: log end offset minus committed "
                             "offset.",
                             gtp, NULL, 0, &lag, err, errlen);
    if (rc == CL_OK)
        rc = register_locked(reg, CL_PROM_GAUGE, "kafka_consumergroup_lag_sum",
                             "Consumer group lag in messages, summed over the topic's "
                             "partitions this instance owns.",
                             gt, NULL, 0, &lag_sum, err, errlen);
    if (rc == CL_OK)
        rc = register_locked(reg, CL_PROM_GAUGE, "kafka_consumergroup_current_offset",
                             "Committed offset of the consumer group (next offset to read).", gtp,
                             NULL, 0, &current, err, errlen);
    if (rc == CL_OK)
        rc = register_locked(reg, CL_PROM_GAUGE, "kafka_topic_partition_current_offset",
                             "Log end offset (high watermark) of the partition.", tp, NULL, 0, &end,
                             err, errlen);
    if (rc == CL_OK)
        rc = register_locked(reg, CL_PROM_GAUGE, "kafka_consumergroup_lag_seconds",
                             "Estimated consumer group lag in seconds: age of the oldest "
                             "unconsumed record (kafka-lag-exporter's "
                             "kafka_consumergroup_group_lag_seconds).",
                             gtp, NULL, 0, &seconds, err, errlen);
    if (rc != CL_OK) {
        pthread_mutex_unlock(&reg->lock);
        return rc;
    }
    clear_locked(lag);
    clear_locked(lag_sum);
    clear_locked(current);
    clear_locked(end);
    clear_locked(seconds);
    for (size_t i = 0; i < n; i++) {
        const cl_prom_partition_lag *r = &rows[i];
        if (!r->group || !r->topic || r->partition < 0) continue;
        char part[16];
        snprintf(part, sizeof part, "%d", (int)r->partition);
        const char *const vgtp[] = {r->group, r->topic, part};
        const char *const vgt[] = {r->group, r->topic};
        const char *const vtp[] = {r->topic, part};
        series *s;
        if (r->lag >= 0 && (s = series_locked(lag, vgtp))) s->value = (double)r->lag;
        if (r->lag >= 0 && (s = series_locked(lag_sum, vgt))) s->value += (double)r->lag;
        if (r->committed_offset >= 0 && (s = series_locked(current, vgtp)))
            s->value = (double)r->committed_offset;
        if (r->end_offset >= 0 && (s = series_locked(end, vtp))) s->value = (double)r->end_offset;
        if (r->lag_seconds >= 0 && isfinite(r->lag_seconds) && (s = series_locked(seconds, vgtp)))
            s->value = r->lag_seconds;
    }
    pthread_mutex_unlock(&reg->lock);
    return CL_OK;
}
