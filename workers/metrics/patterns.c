/*
 * patterns.c — pattern analysis of one version's evaluated deals (see patterns.h).
 */
#include "patterns.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"

static const double rule_thresholds[] = {20, 40, 60, 80};
#define NTHRESH (sizeof rule_thresholds / sizeof rule_thresholds[0])

void cl_pattern_options_defaults(cl_pattern_options *o)
{
    o->min_sample = 30;
    o->min_lift = 1.2;
    o->max_p_value = 0.05;
    o->max_rules = 15;
    o->max_cases = 50;
    o->max_weight_change = 0.10;
    o->max_groups = 3;
}

const int cl_pattern_lost_attrs[CL_PATTERN_LOST_ATTRS] = {
    CL_EVAL_OWNER, CL_EVAL_SEGMENT, CL_EVAL_LEAD_SOURCE, CL_EVAL_PRODUCT, CL_EVAL_STAGE};

double cl_pattern_two_proportion_p(int64_t hits_a, int64_t n_a, int64_t hits_b, int64_t n_b)
{
    if (n_a <= 0 || n_b <= 0)
        return 1;
    double pa = (double)hits_a / (double)n_a, pb = (double)hits_b / (double)n_b;
    double p = (double)(hits_a + hits_b) / (double)(n_a + n_b);
    double var = p * (1 - p) * (1.0 / (double)n_a + 1.0 / (double)n_b);
    if (!(var > 0))
        return pa == pb ? 1 : 0;
    return cl_normal_two_sided_p((pa - pb) / sqrt(var));
}

void cl_patterns_free(cl_patterns *p)
{
    if (!p)
        return;
    free(p->rules);
    free(p->high_losses);
    free(p->low_wins);
    free(p->lost_groups);
    p->rules = NULL;
    p->high_losses = p->low_wins = NULL;
    p->lost_groups = NULL;
    p->nrules = p->n_high_losses = p->n_low_wins = p->n_lost_groups = 0;
}

/* ---- rules ------------------------------------------------------------------------- */

typedef struct {
    cl_pattern_rule *items;
    size_t n, cap;
} rule_list;

static int rule_push(rule_list *l, const cl_pattern_rule *r)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        cl_pattern_rule *ni = realloc(l->items, nc * sizeof *ni);
        if (!ni)
            return CL_ENOMEM;
        l->items = ni;
        l->cap = nc;
    }
    l->items[l->n++] = *r;
    return CL_OK;
}

static int rule_cmp(const void *pa, const void *pb)
{
    const cl_pattern_rule *a = pa, *b = pb;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->lift != b->lift)
        return a->lift > b->lift ? -1 : 1;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return strcmp(a->condition, b->condition);
}

/* Fills and judges a candidate rule; *keep says whether it passes the bars. */
static void rule_make(const cl_patterns *p, const cl_pattern_options *o, cl_rule_kind kind,
                      const char *condition, int64_t n, int64_t hits, int64_t band_n,
                      int64_t band_hits, cl_pattern_rule *r, int *keep)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    snprintf(r->condition, sizeof r->condition, "%s", condition);
    r->n = n;
    r->hits = hits;
    r->base_rate = kind == CL_RULE_HIGH_LOST ? p->base_lost_rate : p->base_won_rate;
    r->rate = n > 0 ? (double)hits / (double)n : 0;
    r->lift = r->base_rate > 0 ? r->rate / r->base_rate : 0;
    r->support = p->n > 0 ? (double)n / (double)p->n : 0;
    r->p_value = cl_pattern_two_proportion_p(hits, n, band_hits - hits, band_n - n);
    *keep = n >= (int64_t)o->min_sample && r->base_rate > 0 && r->lift >= o->min_lift &&
            r->p_value < o->max_p_value;
    snprintf(r->text, sizeof r->text, "%s score %s %s: %s %.0f%% of the time, n = %lld, vs %.0f%% "
             "overall",
             kind == CL_RULE_HIGH_LOST ? "HIGH" : "LOW",
             strchr(condition, '=') && !strstr(condition, ">=") ? "and" : "but", condition,
             kind == CL_RULE_HIGH_LOST ? "lost" : "won", 100 * r->rate, (long long)n,
             100 * r->base_rate);
}

static int component_rules(const cl_eval_set *s, const cl_eval_version *v, const size_t *idx,
                           size_t n, cl_patterns *p, const cl_pattern_options *o, rule_list *l)
{
    for (int kind = 0; kind < 2; kind++) {
        int64_t band_n = kind == CL_RULE_HIGH_LOST ? p->n_high : p->n_low;
        int64_t band_hits = kind == CL_RULE_HIGH_LOST ? p->high_lost : p->low_won;
        for (int c = 0; c < CL_NUM_BUILTINS; c++) {
            cl_pattern_rule best;
            int have = 0;
            for (size_t t = 0; t < NTHRESH; t++) {
                int64_t cn = 0, hits = 0;
                for (size_t i = 0; i < n; i++) {
                    const cl_eval_item *it = &v->items[idx[i]];
                    if (kind == CL_RULE_HIGH_LOST) {
                        if (it->score >= v->bands.high && it->components[c] < rule_thresholds[t]) {
                            cn++;
                            hits += !it->won;
                        }
                    } else if (it->score < v->bands.medium &&
                               it->components[c] >= rule_thresholds[t]) {
                        cn++;
                        hits += it->won;
                    }
                }
                char cond[CL_PATTERN_TEXT_MAX];
                snprintf(cond, sizeof cond, "%s %s %.0f", cl_builtin_component_names[c],
                         kind == CL_RULE_HIGH_LOST ? "<" : ">=", rule_thresholds[t]);
                cl_pattern_rule r;
                int keep;
                rule_make(p, o, (cl_rule_kind)kind, cond, cn, hits, band_n, band_hits, &r, &keep);
                if (keep && (!have || r.lift > best.lift)) {
                    best = r;
                    have = 1;
                }
            }
            if (have && rule_push(l, &best) != CL_OK)
                return CL_ENOMEM;
        }
    }
    (void)s;
    return CL_OK;
}

typedef struct {
    uint32_t key;
    int64_t n, hits;
} cat_acc;

static int category_rules(const cl_eval_set *s, const cl_eval_version *v, const size_t *idx,
                          size_t n, cl_patterns *p, const cl_pattern_options *o, rule_list *l)
{
    cat_acc *acc = calloc(n ? n : 1, sizeof *acc);
    if (!acc)
        return CL_ENOMEM;
    int rc = CL_OK;
    for (int kind = 0; kind < 2 && rc == CL_OK; kind++) {
        int64_t band_n = kind == CL_RULE_HIGH_LOST ? p->n_high : p->n_low;
        int64_t band_hits = kind == CL_RULE_HIGH_LOST ? p->high_lost : p->low_won;
        for (int a = 0; a < CL_EVAL_ATTRS && rc == CL_OK; a++) {
            size_t ng = 0;
            for (size_t i = 0; i < n; i++) {
                const cl_eval_item *it = &v->items[idx[i]];
                int in_band = kind == CL_RULE_HIGH_LOST ? it->score >= v->bands.high
                                                        : it->score < v->bands.medium;
                if (!in_band || it->attr[a] == 0)
                    continue;
                /* Linear probe over the groups found so far: attribute cardinality inside
                 * a band is small next to the deals, and this stays allocation-free. */
                size_t g = 0;
                while (g < ng && acc[g].key != it->attr[a])
                    g++;
                if (g == ng) {
                    if (ng >= 4096)
                        continue; /* a near-unique attribute cannot reach min_sample anyway */
                    acc[ng++] = (cat_acc){it->attr[a], 0, 0};
                }
                acc[g].n++;
                acc[g].hits += kind == CL_RULE_HIGH_LOST ? !it->won : it->won;
            }
            for (size_t g = 0; g < ng && rc == CL_OK; g++) {
                char cond[CL_PATTERN_TEXT_MAX];
                snprintf(cond, sizeof cond, "%s = %.128s", cl_eval_attr_names[a],
                         cl_eval_string(s, acc[g].key));
                cl_pattern_rule r;
                int keep;
                rule_make(p, o, (cl_rule_kind)kind, cond, acc[g].n, acc[g].hits, band_n,
                          band_hits, &r, &keep);
                if (keep)
                    rc = rule_push(l, &r);
            }
        }
    }
    free(acc);
    return rc;
}

/* ---- groups that lose more often ------------------------------------------------- */

typedef struct {
    uint32_t key;
    uint8_t lost;
} keyed_label;

static int keyed_label_cmp(const void *pa, const void *pb)
{
    const keyed_label *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

static int lost_group_cmp(const void *pa, const void *pb)
{
    const cl_pattern_lost_group *a = pa, *b = pb;
    if (a->lift != b->lift) return a->lift > b->lift ? -1 : 1;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    return (a->key > b->key) - (a->key < b->key);
}

/* Sorting (key, label) pairs groups the categories in O(n log n) whatever the
 * attribute's cardinality (owners can number in the thousands). */
static int lost_groups(const cl_eval_version *v, const size_t *idx, size_t n, cl_patterns *p,
                       const cl_pattern_options *o)
{
    keyed_label *kl = malloc((n ? n : 1) * sizeof *kl);
    cl_pattern_lost_group *cand = malloc((n ? n : 1) * sizeof *cand);
    size_t cap = CL_PATTERN_LOST_ATTRS * o->max_groups;
    p->lost_groups = calloc(cap ? cap : 1, sizeof *p->lost_groups);
    if (!kl || !cand || !p->lost_groups) {
        free(kl);
        free(cand);
        return CL_ENOMEM;
    }
    for (size_t a = 0; a < CL_PATTERN_LOST_ATTRS; a++) {
        int attr = cl_pattern_lost_attrs[a];
        size_t m = 0, nc = 0;
        for (size_t i = 0; i < n; i++) {
            const cl_eval_item *it = &v->items[idx[i]];
            if (it->attr[attr] != 0) kl[m++] = (keyed_label){it->attr[attr], (uint8_t)!it->won};
        }
        qsort(kl, m, sizeof *kl, keyed_label_cmp);
        for (size_t i = 0; i < m;) {
            size_t j = i;
            int64_t lost = 0;
            while (j < m && kl[j].key == kl[i].key)
                lost += kl[j++].lost;
            int64_t gn = (int64_t)(j - i);
            cl_pattern_lost_group g = {attr, kl[i].key, gn, lost, 0, 0, 0, 1};
            g.rate = (double)lost / (double)gn;
            g.lift = p->base_lost_rate > 0 ? g.rate / p->base_lost_rate : 0;
            g.support = (double)gn / (double)p->n;
            g.p_value = cl_pattern_two_proportion_p(lost, gn, p->lost - lost, p->n - gn);
            if (gn >= (int64_t)o->min_sample && p->base_lost_rate > 0 && g.lift >= o->min_lift &&
                g.p_value < o->max_p_value)
                cand[nc++] = g;
            i = j;
        }
        qsort(cand, nc, sizeof *cand, lost_group_cmp);
        for (size_t i = 0; i < nc && i < o->max_groups; i++)
            p->lost_groups[p->n_lost_groups++] = cand[i];
    }
    free(kl);
    free(cand);
    return CL_OK;
}

/* ---- cases ------------------------------------------------------------------------- */

static const cl_eval_version *g_case_version;

static int case_desc(const void *pa, const void *pb)
{
    const cl_pattern_case *a = pa, *b = pb;
    double sa = g_case_version->items[a->item].score, sb = g_case_version->items[b->item].score;
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return a->item < b->item ? -1 : a->item > b->item;
}

static int case_asc(const void *pa, const void *pb)
{
    const cl_pattern_case *a = pa, *b = pb;
    double sa = g_case_version->items[a->item].score, sb = g_case_version->items[b->item].score;
    if (sa != sb)
        return sa < sb ? -1 : 1;
    return a->item < b->item ? -1 : a->item > b->item;
}

static void case_fill(const cl_patterns *p, const cl_eval_item *it, cl_pattern_case *c)
{
    c->top_positive = c->top_negative = -1;
    double hi = 0, lo = 0;
    for (int k = 0; k < CL_NUM_BUILTINS; k++) {
        c->contributions[k] =
            p->components[k].weight * (it->components[k] - p->component_mean[k]);
        if (c->contributions[k] > hi) {
            hi = c->contributions[k];
            c->top_positive = k;
        }
        if (c->contributions[k] < lo) {
            lo = c->contributions[k];
            c->top_negative = k;
        }
    }
}

static int cases_of(const cl_eval_version *v, const size_t *idx, size_t n, const cl_patterns *p,
                    int want_won, size_t max, cl_pattern_case **out, size_t *nout)
{
    cl_pattern_case *cs = malloc((n ? n : 1) * sizeof *cs);
    if (!cs)
        return CL_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const cl_eval_item *it = &v->items[idx[i]];
        int in = want_won ? it->won && it->score < v->bands.medium
                          : !it->won && it->score >= v->bands.high;
        if (in) {
            memset(&cs[m], 0, sizeof cs[m]);
            cs[m].item = idx[i];
            m++;
        }
    }
    g_case_version = v;
    qsort(cs, m, sizeof *cs, want_won ? case_asc : case_desc);
    if (m > max)
        m = max;
    for (size_t i = 0; i < m; i++)
        case_fill(p, &v->items[cs[i].item], &cs[i]);
    *out = cs;
    *nout = m;
    return CL_OK;
}

/* ---- recommendations --------------------------------------------------------------- */

static void recommend(cl_patterns *p, const cl_pattern_options *o)
{
    double strength[CL_NUM_BUILTINS], total = 0, wsum = 0;
    for (int k = 0; k < CL_NUM_BUILTINS; k++) {
        strength[k] = p->components[k].has_auc ? fmax(0, 2 * p->components[k].auc - 1) : 0;
        total += strength[k];
        wsum += p->components[k].weight;
    }
    if (!(total > 0) || !(wsum > 0))
        return;
    double sug[CL_NUM_BUILTINS], ssum = 0;
    for (int k = 0; k < CL_NUM_BUILTINS; k++) {
        double cur = p->components[k].weight;
        double target = wsum * strength[k] / total;
        double d = 0.5 * (target - cur);
        if (d > o->max_weight_change)
            d = o->max_weight_change;
        if (d < -o->max_weight_change)
            d = -o->max_weight_change;
        sug[k] = fmax(0, cur + d);
        ssum += sug[k];
    }
    for (int k = 0; k < CL_NUM_BUILTINS && ssum > 0; k++) {
        const cl_pattern_component *c = &p->components[k];
        double s = sug[k] * wsum / ssum;
        if (fabs(s - c->weight) < 0.02)
            continue;
        cl_pattern_recommendation *r = &p->recommendations[p->nrecommendations++];
        r->component = c->name;
        r->current = c->weight;
        r->suggested = s;
        char inside[CL_PATTERN_TEXT_MAX] = "";
        if (c->n_won_high > 0 && c->n_lost_high > 0)
            snprintf(inside, sizeof inside,
                     " Inside the HIGH band, lost deals averaged %.0f and won deals %.0f "
                     "(%lld lost, %lld won).",
                     c->mean_lost_high, c->mean_won_high, (long long)c->n_lost_high,
                     (long long)c->n_won_high);
        snprintf(r->evidence, sizeof r->evidence,
                 "%s %s from %.2f to %.2f: on its own it ranks a won deal above a lost one "
                 "%.0f%% of the time (AUC %.2f; 50%% is a coin flip; %lld deals).%s",
                 s > c->weight ? "Raise" : "Lower", c->name, c->weight, s, 100 * c->auc, c->auc,
                 (long long)p->n, inside);
    }
}

/* ---- analysis ---------------------------------------------------------------------- */

int cl_patterns_analyse(const cl_eval_set *s, size_t vi, const cl_metrics_window *w,
                        const cl_pattern_options *o, cl_patterns *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (vi >= s->nversions)
        return cl_seterr(err, errlen, CL_EINVAL, "patterns: no version index %zu", vi);
    const cl_eval_version *v = &s->versions[vi];
    out->version = vi;
    out->window = *w;
    size_t *idx = malloc((v->n ? v->n : 1) * sizeof *idx);
    double *cv = malloc((v->n ? v->n : 1) * sizeof *cv);
    uint8_t *won = malloc(v->n ? v->n : 1);
    if (!idx || !cv || !won) {
        free(idx);
        free(cv);
        free(won);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < v->n; i++)
        if (cl_eval_in_window(&v->items[i], w))
            idx[n++] = i;
    int rc = CL_OK;
    if (n == 0) {
        rc = CL_ENOTFOUND;
        goto done;
    }

    /* Weights of the analysed version. */
    if (v->info) {
        out->weights = v->info->weights;
        out->weights_known = true;
    } else if (strcmp(v->model, CL_SEED_MODEL) == 0 && v->version == 1) {
        cl_weight_config *seed = malloc(sizeof *seed);
        if (!seed) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            goto done;
        }
        cl_weight_config_seed(seed, 0);
        out->weights = seed->weights;
        out->weights_known = true;
        free(seed);
    }

    double sum[CL_NUM_BUILTINS] = {0}, sum_won_high[CL_NUM_BUILTINS] = {0},
           sum_lost_high[CL_NUM_BUILTINS] = {0};
    for (size_t i = 0; i < n; i++) {
        const cl_eval_item *it = &v->items[idx[i]];
        out->n++;
        out->won += it->won;
        int high = it->score >= v->bands.high, low = it->score < v->bands.medium;
        out->n_high += high;
        out->high_lost += high && !it->won;
        out->n_low += low;
        out->low_won += low && it->won;
        for (int k = 0; k < CL_NUM_BUILTINS; k++) {
            sum[k] += it->components[k];
            if (high && it->won)
                sum_won_high[k] += it->components[k];
            if (high && !it->won)
                sum_lost_high[k] += it->components[k];
        }
    }
    out->lost = out->n - out->won;
    out->base_lost_rate = (double)out->lost / (double)out->n;
    out->base_won_rate = (double)out->won / (double)out->n;
    int64_t won_high = out->n_high - out->high_lost;
    for (int k = 0; k < CL_NUM_BUILTINS; k++) {
        cl_pattern_component *c = &out->components[k];
        c->name = cl_builtin_component_names[k];
        out->component_mean[k] = sum[k] / (double)out->n;
        if (out->weights_known && cl_weight_set_get(&out->weights, c->name, &c->weight) != CL_OK)
            c->weight = 0;
        c->n_won_high = won_high;
        c->n_lost_high = out->high_lost;
        if (won_high > 0)
            c->mean_won_high = sum_won_high[k] / (double)won_high;
        if (out->high_lost > 0)
            c->mean_lost_high = sum_lost_high[k] / (double)out->high_lost;
        c->misleading = won_high > 0 && out->high_lost > 0 && c->mean_lost_high >= c->mean_won_high;
        for (size_t i = 0; i < n; i++) {
            cv[i] = v->items[idx[i]].components[k];
            won[i] = v->items[idx[i]].won;
        }
        double auc;
        if (out->won > 0 && out->lost > 0 && cl_stats_auc(cv, won, NULL, n, &auc, NULL, 0) == CL_OK) {
            c->has_auc = true;
            c->auc = auc;
        }
    }

    rule_list rules = {0};
    rc = component_rules(s, v, idx, n, out, o, &rules);
    if (rc == CL_OK)
        rc = category_rules(s, v, idx, n, out, o, &rules);
    if (rc != CL_OK) {
        free(rules.items);
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto done;
    }
    if (rules.n > 1)
        qsort(rules.items, rules.n, sizeof *rules.items, rule_cmp);
    /* Keep max_rules of each kind (the list is sorted by kind first). */
    size_t kept = 0, per_kind[2] = {0, 0};
    for (size_t i = 0; i < rules.n; i++)
        if (per_kind[rules.items[i].kind]++ < o->max_rules)
            rules.items[kept++] = rules.items[i];
    out->rules = rules.items;
    out->nrules = kept;

    if (cases_of(v, idx, n, out, 0, o->max_cases, &out->high_losses, &out->n_high_losses) !=
            CL_OK ||
        cases_of(v, idx, n, out, 1, o->max_cases, &out->low_wins, &out->n_low_wins) != CL_OK) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto done;
    }
    if (lost_groups(v, idx, n, out, o) != CL_OK) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto done;
    }
    if (out->weights_known)
        recommend(out, o);
done:
    free(idx);
    free(cv);
    free(won);
    if (rc != CL_OK)
        cl_patterns_free(out);
    return rc;
}
