/*
 * records.h — the five closedloop records as C structs, and their conversion to and
 * from avro-c values of the schemas in schemas/ (one .avsc per record).
 *
 * Every record a worker handles crosses this module: a Kafka value is decoded (by the
 * avro module, into an avro_value_t of our reader schema) and then turned into one of
 * these structs by cl_<record>_from_avro(); a struct is published by filling a value
 * of the record's schema with cl_<record>_to_avro() and encoding it.
 *
 * Why fixed-capacity structs: records come from Kafka and Salesforce and are hostile.
 * Every string and every list has a documented bound (below); a decoded value that
 * exceeds one is rejected with CL_EINVAL and a message naming the field
 * ("OpportunitySnapshot.attributes: 17 entries, at most 16"), so a worker can send it
 * to the DLQ instead of growing without limit. Structs hold no pointers: they can be
 * copied with `=`, stored in LMDB as bytes of a known size, and freed by nobody.
 * cl_snapshot and cl_labeled_example are small enough for the stack (~12 KiB);
 * cl_model_metrics (~170 KiB) and cl_weight_config (~650 KiB, mostly category
 * tables) belong on the heap: `cl_weight_config *c = malloc(sizeof *c);`.
 *
 * Conventions shared by every struct:
 *   - Nullable strings (["null","string"] in the schema) are "" when null; an empty
 *     string on the wire also reads as null. Required strings must be non-empty.
 *   - Nullable numbers use cl_opt_double / cl_opt_int / cl_opt_long.
 *   - Timestamps are int64 ms since the Unix epoch (UTC); dates are int32 days since
 *     1970-01-01, exactly as Avro's timestamp-millis and date logical types.
 *   - Every double read from the wire must be finite; components and scores are 0..100,
 *     probabilities and rates 0..1.
 *   - Enums are converted by symbol name, not by index, so a reordered enum in a
 *     future schema cannot silently change a meaning.
 *
 * Conversions validate: *_to_avro() refuses to write a struct that breaks the rules
 * (so nothing invalid is ever published), *_from_avro() refuses a value that does.
 * The value passed to *_to_avro() must be a value of that record's schema (from
 * avro_generic_class_from_schema or the avro module); it is reset first. The value
 * passed to *_from_avro() must be a value of the record's current schema (after
 * writer -> reader resolution); fields are looked up by name.
 */
#ifndef CL_RECORDS_H
#define CL_RECORDS_H

/* avro-c's API piece by piece: `<avro.h>` would resolve to common/avro.h. */
#include <avro/basics.h>
#include <avro/errors.h>
#include <avro/schema.h>
#include <avro/value.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* ---- bounds (bytes exclude the terminating NUL) ------------------------------ */
#define CL_ID_MAX 128           /* snapshot_id, run_id, opportunity/account/owner id */
#define CL_NAME_MAX 128         /* stage, categorical values, model/component names */
#define CL_CURRENCY_MAX 16      /* ISO 4217 code (3 letters in practice) */
#define CL_REASON_MAX 1024      /* WeightConfig.reason */
#define CL_SNAPSHOT_ID_LEN 32   /* hex characters of a snapshot id */
#define CL_MAX_ATTRIBUTES 16    /* OpportunitySnapshot.attributes */
#define CL_MAX_FEATURES 16      /* OpportunitySnapshot.features */
#define CL_MAX_SCORES 8         /* OpportunitySnapshot.scores (versions applied) */
#define CL_MAX_WEIGHTS 16       /* components in one weight map */
#define CL_MAX_STAGE_WEIGHTS 16 /* stages with their own weights */
#define CL_MAX_COMPONENT_DEFS 8 /* learned component definitions */
#define CL_MAX_DISCOVERY 32     /* WeightConfig.discovery: candidate factors evaluated */
#define CL_MAX_CATEGORIES 512   /* rows of one category win-rate table */
#define CL_MAX_BREAKPOINTS 101  /* percentile breakpoints (0..100 %) */
#define CL_MIN_BREAKPOINTS 2
#define CL_MAX_FOLDS 16            /* validation folds */
#define CL_MAX_CALIBRATION_BINS 64 /* ModelMetrics.calibration_bins */
#define CL_MAX_THRESHOLD_POINTS 101
#define CL_MAX_GROUPS 256 /* ModelMetrics.by_stage / by_segment / by_owner */
#define CL_NUM_BANDS 3

/* ---- enums (order matches the schema symbols, but conversion is by name) ------- */
typedef enum { CL_BAND_HIGH = 0, CL_BAND_MEDIUM, CL_BAND_LOW } cl_band;
typedef enum { CL_OUTCOME_WON = 0, CL_OUTCOME_LOST } cl_outcome_kind;
typedef enum { CL_SOURCE_REST = 0, CL_SOURCE_BULK, CL_SOURCE_CSV } cl_outcome_source;
typedef enum {
    CL_MODEL_CANDIDATE = 0,
    CL_MODEL_CHALLENGER,
    CL_MODEL_CHAMPION,
    CL_MODEL_REJECTED,
    CL_MODEL_RETIRED,
} cl_model_status;
typedef enum { CL_WINDOW_CUMULATIVE = 0, CL_WINDOW_MONTHLY, CL_WINDOW_ROLLING_90D } cl_window_kind;
typedef enum {
    CL_HORIZON_LATEST_BEFORE_HORIZON = 0,
    CL_HORIZON_FIRST_SNAPSHOT,
    CL_HORIZON_ALL_SNAPSHOTS,
} cl_horizon_policy;
typedef enum {
    CL_COMPONENT_FEATURE = 0,
    CL_COMPONENT_CATEGORY_WIN_RATE,
    CL_COMPONENT_NUMERIC_PERCENTILE,
} cl_component_kind;

/* Symbol <-> enum. *_name() returns the schema symbol ("HIGH", "rest", ...) or "?" for
 * a value out of range; *_parse() accepts exactly the symbol and returns CL_EINVAL
 * otherwise. */
const char *cl_band_name(cl_band v);
int cl_band_parse(const char *s, cl_band *out);
const char *cl_outcome_kind_name(cl_outcome_kind v);
int cl_outcome_kind_parse(const char *s, cl_outcome_kind *out);
const char *cl_outcome_source_name(cl_outcome_source v);
int cl_outcome_source_parse(const char *s, cl_outcome_source *out);
const char *cl_model_status_name(cl_model_status v);
int cl_model_status_parse(const char *s, cl_model_status *out);
const char *cl_window_kind_name(cl_window_kind v);
int cl_window_kind_parse(const char *s, cl_window_kind *out);
const char *cl_horizon_policy_name(cl_horizon_policy v);
int cl_horizon_policy_parse(const char *s, cl_horizon_policy *out);
const char *cl_component_kind_name(cl_component_kind v);
int cl_component_kind_parse(const char *s, cl_component_kind *out);

/* The six component scores every snapshot carries (the seed model's inputs). */
typedef enum {
    CL_SPEED_TO_CLOSE = 0,
    CL_LARGEST_DEAL,
    CL_PRODUCT_MIX,
    CL_UPSELL_INSTANCES,
    CL_WIN_RATE,
    CL_RECENCY,
    CL_NUM_BUILTINS
} cl_builtin_component;
/* "speed_to_close", ... in cl_builtin_component order. */
extern const char *const cl_builtin_component_names[CL_NUM_BUILTINS];
/* Index of a built-in component name, or -1. */
int cl_builtin_component_index(const char *name);

typedef struct {
    bool present;
    double value;
} cl_opt_double;
typedef struct {
    bool present;
    int32_t value;
} cl_opt_int;
typedef struct {
    bool present;
    int64_t value;
} cl_opt_long;

/* ---- OpportunitySnapshot ------------------------------------------------------- */
typedef struct {
    char key[CL_NAME_MAX + 1];
    char value[CL_NAME_MAX + 1];
} cl_attribute;

typedef struct {
    char name[CL_NAME_MAX + 1];
    double value; /* finite */
} cl_feature;

typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;
    double score; /* 0..100 */
    cl_band band;
    double probability; /* 0..1 */
} cl_score_entry;

typedef struct {
    char snapshot_id[CL_ID_MAX + 1]; /* cl_snapshot_id(run_id, opportunity_id) */
    char run_id[CL_ID_MAX + 1];
    int64_t snapshot_time; /* ms */
    char opportunity_id[CL_ID_MAX + 1];
    char account_id[CL_ID_MAX + 1]; /* "" = null */
    char owner_id[CL_ID_MAX + 1];   /* "" = null */
    char stage[CL_NAME_MAX + 1];
    cl_opt_double amount; /* finite, any sign (credits exist) */
    char currency[CL_CURRENCY_MAX + 1];
    int32_t created_date;          /* days */
    int32_t expected_close_date;   /* days */
    cl_opt_int days_in_stage;      /* >= 0 */
    char segment[CL_NAME_MAX + 1]; /* categorical attributes, "" = null */
    char region[CL_NAME_MAX + 1];
    char product[CL_NAME_MAX + 1];
    char lead_source[CL_NAME_MAX + 1];
    char type[CL_NAME_MAX + 1];
    cl_attribute attributes[CL_MAX_ATTRIBUTES]; /* keys unique, non-empty */
    size_t n_attributes;
    double components[CL_NUM_BUILTINS];   /* 0..100, indexed by cl_builtin_component */
    cl_feature features[CL_MAX_FEATURES]; /* names unique, non-empty */
    size_t n_features;
    cl_opt_double opportunity_score; /* 0..100 */
    cl_opt_double account_score;     /* 0..100 */
    cl_score_entry scores[CL_MAX_SCORES];
    size_t n_scores;
} cl_snapshot;

/* ---- OpportunityOutcome -------------------------------------------------------- */
typedef struct {
    char opportunity_id[CL_ID_MAX + 1];
    char account_id[CL_ID_MAX + 1]; /* "" = null */
    char owner_id[CL_ID_MAX + 1];   /* "" = null */
    cl_outcome_kind outcome;
    char stage_name[CL_NAME_MAX + 1];
    int32_t close_date;        /* days */
    cl_opt_double final_value; /* finite */
    char currency[CL_CURRENCY_MAX + 1];
    int32_t created_date;    /* days */
    int32_t days_to_close;   /* close_date - created_date (may be negative) */
    int64_t system_modstamp; /* ms: the outcome's version */
    cl_outcome_source source;
    int64_t ingested_at;               /* ms */
    char type[CL_NAME_MAX + 1];        /* "" = null */
    char lead_source[CL_NAME_MAX + 1]; /* "" = null */
} cl_outcome;

/* ---- LabeledExample ------------------------------------------------------------ */
typedef struct {
    int32_t days_before_close; /* outcome.close_date - day(snapshot.snapshot_time), >= 0 */
    int64_t outcome_version;   /* == outcome.system_modstamp */
    bool retracted;
    int64_t joined_at; /* ms */
    cl_snapshot snapshot;
    cl_outcome outcome;
} cl_labeled_example;

/* ---- ModelMetrics -------------------------------------------------------------- */
typedef struct {
    int64_t start, end; /* ms, [start, end) over close dates, start <= end */
    cl_window_kind kind;
} cl_metrics_window;

typedef struct {
    double threshold;       /* 0..100 */
    int64_t tp, fp, tn, fn; /* >= 0 */
} cl_metrics_confusion;

typedef struct {
    double lower, upper;                         /* 0 <= lower <= upper <= 1 */
    int64_t n, won;                              /* 0 <= won <= n */
    cl_opt_double mean_predicted, observed_rate; /* 0..1 */
} cl_metrics_calibration_bin;

typedef struct {
    double threshold; /* 0..100 */
    int64_t predicted_positive;
    cl_opt_double precision, recall; /* 0..1 */
} cl_metrics_threshold_point;

typedef struct {
    cl_band band;
    int64_t n, won;
    cl_opt_double mean_probability;
} cl_metrics_band;

typedef struct {
    char key[CL_NAME_MAX + 1]; /* "" for the null group */
    int64_t n, won;
    cl_opt_double mean_score;     /* 0..100 */
    cl_opt_double auc, precision; /* 0..1 */
} cl_metrics_group;

typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;
    int64_t generated_at;
    cl_metrics_window window;
    cl_horizon_policy horizon;
    int32_t horizon_days; /* >= 0 */
    int64_t n, won, lost; /* n == won + lost */
    cl_metrics_confusion confusion;
    cl_opt_double precision, recall, f1, auc, brier, ece; /* 0..1 */
    cl_opt_double log_loss;                               /* >= 0 */
    cl_metrics_calibration_bin calibration_bins[CL_MAX_CALIBRATION_BINS];
    size_t n_calibration_bins;
    cl_metrics_threshold_point thresholds[CL_MAX_THRESHOLD_POINTS];
    size_t n_thresholds;
    cl_metrics_band by_band[CL_NUM_BANDS];
    size_t n_by_band;
    cl_metrics_group by_stage[CL_MAX_GROUPS];
    size_t n_by_stage;
    cl_metrics_group by_segment[CL_MAX_GROUPS];
    size_t n_by_segment;
    cl_metrics_group by_owner[CL_MAX_GROUPS];
    size_t n_by_owner;
} cl_model_metrics;

/* ---- WeightConfig -------------------------------------------------------------- */
typedef struct {
    char component[CL_NAME_MAX + 1];
    double weight; /* >= 0 */
} cl_weight;

/* A component -> weight map, kept in insertion order (written in that order). */
typedef struct {
    cl_weight items[CL_MAX_WEIGHTS];
    size_t n;
} cl_weight_set;

typedef struct {
    char stage[CL_NAME_MAX + 1];
    cl_weight_set weights;
} cl_stage_weights;

typedef struct {
    double intercept, slope; /* P(won) = sigma(intercept + slope * score), slope > 0 */
} cl_calibration;

typedef struct {
    double high, medium; /* 0 <= medium <= high <= 100 */
} cl_band_thresholds;

typedef struct {
    char category[CL_NAME_MAX + 1];
    double rate; /* 0..1 */
    int64_t n;   /* >= 0 */
} cl_category_rate;

typedef struct {
    char name[CL_NAME_MAX + 1];
    cl_component_kind kind;
    char source[CL_NAME_MAX + 1];
    double smoothing;    /* CATEGORY_WIN_RATE, >= 0 */
    double overall_rate; /* CATEGORY_WIN_RATE, 0..1 */
    /* CATEGORY_WIN_RATE: strictly ascending by strcmp (cl_weight_config_sort_categories
     * establishes it; lookups binary-search). */
    cl_category_rate categories[CL_MAX_CATEGORIES];
    size_t n_categories;
    double breakpoints[CL_MAX_BREAKPOINTS]; /* NUMERIC_PERCENTILE, non-decreasing */
    size_t n_breakpoints;
    bool descending;      /* NUMERIC_PERCENTILE */
    double missing_value; /* FEATURE, NUMERIC_PERCENTILE: 0..100 */
} cl_component_def;

typedef struct {
    int64_t window_start, window_end; /* ms */
    int64_t n_won, n_lost;
    cl_opt_double half_life_days;    /* > 0 */
    double l2;                       /* >= 0 */
    double effective_n;              /* >= 0 */
    cl_opt_double max_weight_change; /* >= 0 */
} cl_training_summary;

typedef struct {
    int32_t fold;
    int64_t test_start, test_end; /* ms */
    int64_t n;
    cl_opt_double auc, brier, ece, precision_at_high, champion_auc; /* 0..1 */
} cl_validation_fold;

typedef struct {
    int64_t champion_version;
    double delta_auc; /* -1..1 */
    double p_value;   /* 0..1 */
    int64_t n_paired;
    cl_opt_double delta_precision_at_high; /* -1..1 */
} cl_champion_comparison;

/* What factor discovery found for one candidate (WeightConfig.discovery): evidence for
 * reports, never read by scoring. */
typedef struct {
    char name[CL_NAME_MAX + 1]; /* unique within the config */
    cl_component_kind kind;
    char source[CL_NAME_MAX + 1];
    /* Null when discovery could not evaluate the candidate. Gains are "with minus
     * without" for AUC and "without minus with" for log loss: positive is better. */
    cl_opt_double delta_auc, shuffled_max_delta_auc;           /* -1..1 */
    cl_opt_double delta_log_loss, shuffled_max_delta_log_loss; /* finite */
    int32_t permutations;                                      /* >= 0 */
    /* beats_shuffled requires all four gains present; adopted requires beats_shuffled
     * and a component named `name`. */
    bool beats_shuffled, adopted;
    int64_t n_examples;   /* >= 0 */
    int64_t n_with_value; /* 0..n_examples */
    int64_t n_categories; /* >= 0 */
} cl_candidate_evidence;

typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version;            /* >= 1 */
    cl_opt_long parent_version; /* < version */
    cl_model_status status;
    int64_t created_at; /* ms */
    cl_weight_set weights;
    cl_stage_weights stage_weights[CL_MAX_STAGE_WEIGHTS];
    size_t n_stage_weights;
    cl_calibration calibration;
    cl_band_thresholds bands;
    cl_component_def components[CL_MAX_COMPONENT_DEFS];
    size_t n_components;
    bool has_training;
    cl_training_summary training;
    cl_validation_fold validation[CL_MAX_FOLDS];
    size_t n_validation;
    bool has_comparison;
    cl_champion_comparison comparison;
    char reason[CL_REASON_MAX + 1];
    cl_candidate_evidence discovery[CL_MAX_DISCOVERY];
    size_t n_discovery;
} cl_weight_config;

/* ---- initialisation ------------------------------------------------------------ */
/* Zero the struct and apply the schema defaults (currency "USD", bands 70/40,
 * horizon 7 days, component missing_value 50). */
void cl_snapshot_init(cl_snapshot *s);
void cl_outcome_init(cl_outcome *o);
void cl_labeled_example_init(cl_labeled_example *e);
void cl_model_metrics_init(cl_model_metrics *m);
void cl_weight_config_init(cl_weight_config *c);
void cl_component_def_init(cl_component_def *d);

/* ---- validation (the rules listed next to each field above) -------------------- */
int cl_snapshot_validate(const cl_snapshot *s, char *err, size_t errlen);
int cl_outcome_validate(const cl_outcome *o, char *err, size_t errlen);
int cl_labeled_example_validate(const cl_labeled_example *e, char *err, size_t errlen);
int cl_model_metrics_validate(const cl_model_metrics *m, char *err, size_t errlen);
/* WeightConfig validation lives in score.h (cl_weight_config_validate): its rules are
 * about scoring (weights sum to 1, thresholds ordered, slope > 0, tables sorted). The
 * discovery evidence, which scoring never reads, is checked here (the rules beside
 * cl_candidate_evidence); both conversions apply both. */
int cl_weight_config_discovery_validate(const cl_weight_config *c, char *err, size_t errlen);

/* ---- conversions ---------------------------------------------------------------- */
int cl_snapshot_to_avro(const cl_snapshot *s, avro_value_t *value, char *err, size_t errlen);
int cl_snapshot_from_avro(const avro_value_t *value, cl_snapshot *s, char *err, size_t errlen);
int cl_outcome_to_avro(const cl_outcome *o, avro_value_t *value, char *err, size_t errlen);
int cl_outcome_from_avro(const avro_value_t *value, cl_outcome *o, char *err, size_t errlen);
int cl_labeled_example_to_avro(const cl_labeled_example *e, avro_value_t *value, char *err,
                               size_t errlen);
int cl_labeled_example_from_avro(const avro_value_t *value, cl_labeled_example *e, char *err,
                                 size_t errlen);
int cl_model_metrics_to_avro(const cl_model_metrics *m, avro_value_t *value, char *err,
                             size_t errlen);
int cl_model_metrics_from_avro(const avro_value_t *value, cl_model_metrics *m, char *err,
                               size_t errlen);
/* to_avro requires cl_weight_config_validate() and cl_weight_config_discovery_validate()
 * to pass. from_avro sorts the category tables (wire order carries no meaning) and then
 * validates, so a decoded config is ready for scoring. A record written before
 * `discovery` existed decodes with n_discovery = 0. */
int cl_weight_config_to_avro(const cl_weight_config *c, avro_value_t *value, char *err,
                             size_t errlen);
int cl_weight_config_from_avro(const avro_value_t *value, cl_weight_config *c, char *err,
                               size_t errlen);

/* ---- helpers -------------------------------------------------------------------- */
/* Deterministic snapshot id: lowercase hex of the first 16 bytes of
 * SHA-256(run_id || 0x00 || opportunity_id). The NUL separator keeps ("ab","c") and
 * ("a","bc") apart; SHA-256 makes the id reproducible in any language
 * (Python: hashlib.sha256(f"{run}\0{opp}".encode()).hexdigest()[:32]).
 * CL_EINVAL when either input is empty or longer than CL_ID_MAX. */
int cl_snapshot_id(const char *run_id, const char *opportunity_id, char out[CL_SNAPSHOT_ID_LEN + 1],
                   char *err, size_t errlen);

/* Day (days since epoch, floor) of a ms timestamp; correct for negative times. */
int32_t cl_day_of_ms(int64_t ms);

/* outcome->close_date - cl_day_of_ms(snapshot->snapshot_time). Negative means the
 * snapshot was taken after the close (the join must exclude it: leakage). */
int64_t cl_days_before_close(const cl_snapshot *s, const cl_outcome *o);

/* Builds the LabeledExample for (snapshot, outcome): copies both, sets
 * days_before_close, outcome_version = outcome->system_modstamp, retracted = false,
 * joined_at. CL_EINVAL when the opportunity ids differ or the snapshot was taken after
 * the close date. `out` may not alias the inputs. */
int cl_labeled_from(const cl_snapshot *s, const cl_outcome *o, int64_t joined_at,
                    cl_labeled_example *out, char *err, size_t errlen);

/* Map-like access to a snapshot's extras: the value for `key`, or NULL / CL_ENOTFOUND. */
const char *cl_snapshot_attribute(const cl_snapshot *s, const char *key);
int cl_snapshot_feature(const cl_snapshot *s, const char *name, double *out);

/* Weight of `component` in the set, or CL_ENOTFOUND. */
int cl_weight_set_get(const cl_weight_set *w, const char *component, double *out);
/* Sets (adds or replaces) a weight. CL_EINVAL for a too-long name or a full set. */
int cl_weight_set_put(cl_weight_set *w, const char *component, double weight, char *err,
                      size_t errlen);

#endif
