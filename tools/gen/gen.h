/*
 * gen.h — closedloop-gen: a synthetic, deterministic CRM history with a known truth.
 *
 * The closed loop can only be tested end to end against data whose answer is known:
 * opportunities whose Closed Won / Closed Lost outcomes were drawn from a logistic
 * model with published TRUE component weights, so that a refit can be checked against
 * them. This module builds such a history in memory from a seed and writes the files
 * the pipeline consumes:
 *
 *   OUT/runs/run-YYYY-MM-DD.csv|jsonl   one scoring run per file (snapshot input format)
 *   OUT/outcomes/closed_opportunities.csv  Salesforce report export of closed deals
 *   OUT/outcomes/opportunities.jsonl   every Opportunity record version, as queryAll
 *                                      returns them (re-opened and deleted included)
 *   OUT/accounts.csv, OUT/users.csv     reference data (accounts, sales reps)
 *   OUT/truth.json                      true weights, intercept, slope, effects, counts
 *
 * The model (docs/generator.md explains it in full): each opportunity has a latent
 * quality shared in part with its account; its six component scores (0..100 integers)
 * are that quality plus independent variation, ageing terms and a slow calendar drift.
 * The outcome is won with probability
 *     P(won) = sigma(intercept + slope * sum_i true_weight_i * c_i)
 * where c_i are the components of the LAST scoring run taken while the opportunity was
 * open before its final close (or, for an opportunity that no run saw, the components
 * as of its creation day, which no file shows). With learned_factors on, an owner-skill
 * term and a lead-source term are added to the logit.
 *
 * Determinism: every random quantity is drawn from a stream keyed by (seed, entity,
 * index) or hashed from (seed, opportunity, run, component), never from shared
 * sequential state, so the same seed and options give byte-identical files on the
 * same platform, independently of write order. The PRNG is xoshiro256** seeded with
 * splitmix64 (never rand()).
 *
 * Memory is one fixed-size record per opportunity (~80 bytes) allocated up front;
 * writing performs no per-row allocation.
 */
#ifndef CL_TOOLS_GEN_H
#define CL_TOOLS_GEN_H

#include <stddef.h>
#include <stdint.h>

#define CL_GEN_COMPONENTS 6
#define CL_GEN_MAX_OPPORTUNITIES 10000000
#define CL_GEN_MAX_MONTHS 240

/* Order of the six components everywhere in this module (matches the CSV header). */
extern const char *const cl_gen_component_names[CL_GEN_COMPONENTS];
/* The seed model (initial champion), in hundredths: 15, 20, 15, 25, 20, 5. */
extern const int cl_gen_seed_weight_hundredths[CL_GEN_COMPONENTS];
/* Default true weights: 0.30, 0.05, 0.10, 0.10, 0.35, 0.10. */
extern const double cl_gen_default_true_weights[CL_GEN_COMPONENTS];
/* Default (intercept, slope) on the 0..100 score scale; they give a win rate near 30%. */
#define CL_GEN_DEFAULT_INTERCEPT (-6.8)
#define CL_GEN_DEFAULT_SLOPE 0.12

/* Stages, in pipeline order; the last two are the closed stages. */
enum {
    CL_GEN_PROSPECTING = 0,
    CL_GEN_QUALIFICATION,
    CL_GEN_NEEDS_ANALYSIS,
    CL_GEN_PROPOSAL,
    CL_GEN_NEGOTIATION,
    CL_GEN_CLOSED_WON,
    CL_GEN_CLOSED_LOST,
    CL_GEN_STAGE_COUNT
};
extern const char *const cl_gen_stage_names[CL_GEN_STAGE_COUNT];

typedef enum { CL_GEN_FORMAT_CSV = 0, CL_GEN_FORMAT_JSONL } cl_gen_format;

typedef struct {
    uint64_t seed;
    int32_t start_day;     /* days since 1970-01-01 of the first day of history */
    int months;            /* history length; ends on start + months (exclusive) */
    int64_t opportunities; /* created uniformly-with-growth over the history */
    int64_t accounts;      /* 0: opportunities / 5 (at least 1) */
    int64_t owners;        /* 0: opportunities / 250 (at least 3) */
    int run_interval_days; /* a scoring run every N days from start_day, 06:00Z */
    cl_gen_format format;  /* of the run files */
    int learned_factors;   /* add owner-skill and lead-source effects to the logit */
    double reopen_rate;    /* share of closed opportunities later re-opened */
    double delete_rate;    /* share of closed opportunities later deleted */
    char currency[4];      /* ISO 4217, three upper-case letters */
    double true_weights[CL_GEN_COMPONENTS]; /* >= 0, sum to 1 */
    double intercept, slope;                /* slope > 0 */
} cl_gen_options;

/* Defaults: seed 1, 2024-01-01, 18 months, 20000 opportunities, weekly runs, CSV,
 * no learned factors, reopen 2%, delete 1%, USD, default true model. */
void cl_gen_options_init(cl_gen_options *opt);

/* Parse "speed_to_close=0.3,largest_deal=0.05,..." (all six, each >= 0, summing to 1
 * within 1e-6) into weights[]. err names the offending item. */
int cl_gen_parse_weights(const char *text, double weights[CL_GEN_COMPONENTS], char *err,
                         size_t errlen);

typedef struct {
    int64_t accounts, owners, opportunities;
    int64_t runs;            /* scoring runs in the history */
    int64_t snapshots;       /* rows over all run files */
    int64_t closed_won;      /* final state Closed Won before the end, not deleted */
    int64_t closed_lost;     /* final state Closed Lost before the end, not deleted */
    int64_t deleted;         /* deleted before the end (tombstones) */
    int64_t reopened;        /* re-opened before the end */
    int64_t open_at_end;     /* not closed (or re-opened and not closed again) at the end */
    int64_t unscored;        /* closed, not deleted, and never seen by a scoring run */
    int64_t record_versions; /* lines of outcomes/opportunities.jsonl */
} cl_gen_counts;

typedef struct cl_gen cl_gen;

/* Validate options and build the whole history in memory. */
int cl_gen_create(const cl_gen_options *opt, cl_gen **out, char *err, size_t errlen);
void cl_gen_free(cl_gen *g);
const cl_gen_counts *cl_gen_get_counts(const cl_gen *g);

/* Write every file under out_dir (created if missing). Refuses to overwrite an existing
 * history (out_dir/truth.json present) unless force, in which case stale run files are
 * removed first. Each file is written to a hidden temporary name and renamed into place,
 * so a directory watcher never sees a half-written run; truth.json is written last. */
int cl_gen_write(cl_gen *g, const char *out_dir, int force, char *err, size_t errlen);

/* ---- read access to the generated history (tests, documentation) ---- */

int32_t cl_gen_end_day(const cl_gen *g); /* first day after the history */
int cl_gen_run_count(const cl_gen *g);
int32_t cl_gen_run_day(const cl_gen *g, int run);

typedef struct {
    int32_t created_day;
    int32_t first_close_day; /* == close_day unless re-opened */
    int32_t reopen_day;      /* -1: never re-opened */
    int32_t close_day;       /* final close (may lie beyond the end: still open then) */
    int32_t delete_day;      /* -1: never deleted */
    int won;                 /* final outcome (drawn even when it lies beyond the end) */
    int last_run;            /* run whose components decided the outcome; -1: none */
    uint8_t components[CL_GEN_COMPONENTS]; /* the components the outcome was drawn on */
    double win_probability;                /* P(won) under the true model */
} cl_gen_opportunity_info;

int cl_gen_opportunity(const cl_gen *g, int64_t index, cl_gen_opportunity_info *out);

typedef struct {
    int32_t run_day;
    int stage;
    int32_t days_in_stage;
    int32_t expected_close_day;
    uint8_t components[CL_GEN_COMPONENTS];
    int32_t opportunity_score_hundredths; /* seed-model weighted sum, x100, exact */
} cl_gen_snapshot;

/* 1 and fills out when the opportunity is open at the run (and so has a row in that
 * run's file), 0 when it is not. */
int cl_gen_snapshot_at(const cl_gen *g, int64_t index, int run, cl_gen_snapshot *out);

/* ---- building blocks, exposed for unit tests ---- */

typedef struct {
    uint64_t s[4];
} cl_gen_rng;

uint64_t cl_gen_splitmix64(uint64_t *state);
void cl_gen_rng_seed(cl_gen_rng *rng, uint64_t seed);
uint64_t cl_gen_rng_next(cl_gen_rng *rng);
double cl_gen_rng_uniform(cl_gen_rng *rng); /* [0, 1) with 53 random bits */

/* An 18-character Salesforce id: 3-char key prefix ("006"), 12 base-62 characters
 * encoding `number`, and the 3-character case-safety checksum. out must hold 19. */
void cl_gen_salesforce_id(const char *prefix, uint64_t number, char out[19]);

#endif
