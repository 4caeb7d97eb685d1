/*
 * patterns.h — where the model went wrong, in the seed's words: high-scored losses,
 * low-scored wins, components that misled, rules with their support and lift, and
 * per-deal top positive and negative contributions.
 *
 * Everything is computed from one version's evaluated items in one window (normally the
 * champion, cumulative window; see evaluate.h), so the analysis always names the score
 * a sales team actually saw.
 *
 * Definitions, written so a sales leader can check them by hand:
 *   - high-scored loss: a Closed Lost deal whose score was in the HIGH band (score >=
 *     the version's HIGH threshold); low-scored win: a Closed Won deal in the LOW band
 *     (score < MEDIUM).
 *   - misleading component: inside the HIGH band, the component's mean over lost deals
 *     is at least its mean over won deals — it pushed losing deals up as much as
 *     winning ones. Reported for every component with the two means, the counts, and
 *     the component's own AUC over all deals (0.5 = no better than a coin flip).
 *   - rule: "HIGH score but <component> < t: lost 62% of the time, n = 57, vs 31%
 *     overall" (and "LOW score but <component> >= t: won ...", and the same with a
 *     category: stage, segment, owner, region, product, lead source, type). A rule is
 *     kept only when its subgroup has at least min_sample deals, its rate is at least
 *     min_lift times the overall rate, and a two-proportion z-test against the rest of
 *     the band gives p < max_p_value — small samples and noise are not patterns. For
 *     each component and direction only the threshold with the highest lift is kept.
 *     support = subgroup size / all evaluated deals; lift = subgroup rate / overall rate.
 *   - contribution of a component to a deal's score: weight × (component value − its
 *     mean over the evaluated deals), in score points; positive pushed the score above
 *     an average deal's. Only the six built-in components (a learned component needs
 *     attributes the metrics state does not keep).
 *   - group that loses more often: over all evaluated deals (any score), a category of
 *     owner, segment, lead source, product or stage whose lost rate is at least
 *     min_lift times the overall lost rate, with at least min_sample deals and p <
 *     max_p_value against the rest of the deals (the same bars as a rule). The largest
 *     lifts, at most max_groups per attribute. They point at factors the score misses:
 *     a group that loses this much more is not something the score already knows.
 *   - recommendation: for each built-in component, a target weight proportional to how
 *     well the component alone separates won from lost (max(0, 2·AUC − 1)), blended
 *     half-way with the current weight, each move capped at max_weight_change and the
 *     result renormalised to sum to 1. Changes smaller than 0.02 are not shown. These
 *     are directions with their evidence; the refit worker fits and validates weights.
 */
#ifndef CL_METRICS_PATTERNS_H
#define CL_METRICS_PATTERNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evaluate.h"

#define CL_PATTERN_TEXT_MAX 400

typedef struct {
    size_t min_sample;       /* smallest subgroup a rule may speak about (default 30) */
    double min_lift;         /* default 1.2 */
    double max_p_value;      /* default 0.05 */
    size_t max_rules;        /* per kind (default 15) */
    size_t max_cases;        /* listed high-scored losses / low-scored wins (default 50) */
    double max_weight_change;/* per recommendation (default 0.10) */
    size_t max_groups;       /* groups that lose more often, per attribute (default 3) */
} cl_pattern_options;

void cl_pattern_options_defaults(cl_pattern_options *o);

typedef enum { CL_RULE_HIGH_LOST = 0, CL_RULE_LOW_WON } cl_rule_kind;

typedef struct {
    cl_rule_kind kind;
    char text[CL_PATTERN_TEXT_MAX]; /* plain words; caller escapes for HTML */
    char condition[CL_PATTERN_TEXT_MAX]; /* "win_rate < 40", "stage = Prospecting" */
    int64_t n, hits;                /* subgroup size; lost (HIGH_LOST) or won (LOW_WON) */
    double rate, base_rate;         /* hits / n; overall lost or won rate */
    double lift, support, p_value;
} cl_pattern_rule;

typedef struct {
    const char *name;   /* built-in component name */
    double weight;      /* in the analysed version (0 when unknown) */
    int64_t n_won_high, n_lost_high;
    double mean_won_high, mean_lost_high; /* valid when the counts are > 0 */
    bool has_auc;
    double auc;         /* the component alone, all evaluated deals */
    bool misleading;
} cl_pattern_component;

typedef struct {
    size_t item;        /* index into the version's items */
    double contributions[CL_NUM_BUILTINS];
    int top_positive, top_negative; /* component index, -1 when none */
} cl_pattern_case;

/* The attributes searched for groups that lose more often, in display order. */
#define CL_PATTERN_LOST_ATTRS 5
extern const int cl_pattern_lost_attrs[CL_PATTERN_LOST_ATTRS]; /* CL_EVAL_OWNER, ... */

typedef struct {
    int attr;     /* CL_EVAL_* */
    uint32_t key; /* cl_eval_string id of the category */
    int64_t n, lost;
    double rate, lift, support, p_value; /* rate = lost / n; lift = rate / overall */
} cl_pattern_lost_group;

typedef struct {
    const char *component;
    double current, suggested;
    char evidence[CL_PATTERN_TEXT_MAX * 2];
} cl_pattern_recommendation;

typedef struct {
    size_t version;                 /* analysed version index */
    cl_metrics_window window;
    bool weights_known;             /* from the weights topic (or the seed) */
    cl_weight_set weights;
    int64_t n, won, lost, n_high, high_lost, n_low, low_won;
    double base_lost_rate, base_won_rate;
    double component_mean[CL_NUM_BUILTINS];
    cl_pattern_component components[CL_NUM_BUILTINS];
    cl_pattern_rule *rules;
    size_t nrules;
    cl_pattern_case *high_losses; /* highest score first */
    size_t n_high_losses;
    cl_pattern_case *low_wins;    /* lowest score first */
    size_t n_low_wins;
    cl_pattern_recommendation recommendations[CL_NUM_BUILTINS];
    size_t nrecommendations;
    /* Grouped by attribute in cl_pattern_lost_attrs order, largest lift first within. */
    cl_pattern_lost_group *lost_groups;
    size_t n_lost_groups;
} cl_patterns;

/* Analyses version vi in window w. `weights` may be NULL (then the version's weights
 * from its known config, else the seed's when it is the seed model, else unknown:
 * contributions and recommendations are left out). CL_ENOTFOUND: no item in w. */
int cl_patterns_analyse(const cl_eval_set *s, size_t vi, const cl_metrics_window *w,
                        const cl_pattern_options *o, cl_patterns *out, char *err,
                        size_t errlen);
void cl_patterns_free(cl_patterns *p);

/* Two-sided p-value of the two-proportion z-test (pooled variance). 1 when undefined. */
double cl_pattern_two_proportion_p(int64_t hits_a, int64_t n_a, int64_t hits_b, int64_t n_b);

#endif
