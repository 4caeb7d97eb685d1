/*
 * report.h — the two analysis reports of SPEC §4.4, as self-contained HTML.
 *
 * Closed Won analysis: how accurate the scores were — headline figures with their
 * sample sizes and a one-line explanation each, predicted vs actual wins per band, the
 * reliability diagram, score distributions of won vs lost deals, precision/recall by
 * threshold and at the top 10/20/30 %, quality per stage / segment / owner, the
 * figures over time per model version with the champion vs challenger test, and the
 * wins the model scored LOW.
 * Closed Lost analysis: the deals scored HIGH that were lost (with the components that
 * pushed each one up and down), the failure patterns as rules with support and lift,
 * the components that misled inside the HIGH band, concrete weight changes with
 * their evidence, and the factors the score misses: every candidate factor the latest
 * refit tested (WeightConfig.discovery: validated AUC and log-loss gains, whether they
 * beat shuffled labels, the deals behind them, whether that version adopted it) and
 * the owners, segments, lead sources, products and stages that lose more often.
 *
 * Why this shape: the readers are sales leaders, so the pages use plain words and show
 * every number next to how many deals it rests on; the files are mailed around and
 * opened offline, so charts are inline SVG and styles inline CSS — no script, no CDN,
 * no external request of any kind. Every string that came from outside (ids, owner
 * names, stages) is escaped for HTML, invalid UTF-8 and control characters are
 * replaced, and the markup is well-formed XML as well as HTML, which the tests check.
 * Opportunity ids link to <salesforce_url>/lightning/r/Opportunity/<id>/view when an
 * instance URL is configured (validated: http(s)://host[:port] only).
 */
#ifndef CL_METRICS_REPORT_H
#define CL_METRICS_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "evaluate.h"
#include "patterns.h"
#include "util.h"

/* The factor-discovery evidence of one model: from the config with the highest version
 * that carries any (a later status record of that version replaces it, so the
 * promotion of a challenger shows). Kept by the worker from the weights topic. */
typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;
    cl_model_status status;
    int64_t created_at;
    cl_candidate_evidence factors[CL_MAX_DISCOVERY];
    size_t n;
} cl_report_discovery;

/* Folds config c into table[0..*n) (capacity cap). Returns 1 when the table changed,
 * 0 when c carries no evidence or older evidence than the table's, or when the table is
 * full (the model is then not reported on). */
int cl_report_discovery_update(cl_report_discovery *table, size_t *n, size_t cap,
                               const cl_weight_config *c);

/* In plain words, what a candidate factor measures ("the owner's past win rate"). */
void cl_report_factor_words(const cl_candidate_evidence *e, char *out, size_t len);

typedef struct {
    const char *model;          /* model reported on (NULL: the seed model's name) */
    const char *salesforce_url; /* NULL or "": ids are not linked */
    int64_t generated_at;       /* ms; printed, and the only time-dependent content */
    cl_pattern_options patterns;
    const cl_report_discovery *discovery; /* per model; may be NULL */
    size_t ndiscovery;
} cl_report_options;

void cl_report_options_defaults(cl_report_options *o);

/* CL_OK for "" / NULL and for http(s)://host[:port][/]; CL_EINVAL otherwise. */
int cl_report_check_salesforce_url(const char *url, char *err, size_t errlen);

/* Appends text escaped for HTML element content and attribute values. */
int cl_html_escape(cl_buf *b, const char *s);

/* Renders both reports (appended to won and lost). An empty set renders pages that say
 * no outcome has been evaluated yet. */
int cl_report_render(const cl_eval_set *s, const cl_report_options *o, cl_buf *won,
                     cl_buf *lost, char *err, size_t errlen);

#endif
