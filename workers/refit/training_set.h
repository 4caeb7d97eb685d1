/*
 * training_set.h — the refit worker's training set: every live labeled example, kept
 * in LMDB under the labeled consumer rule, and its loading into flat in-memory rows.
 *
 * The rule (docs/labeled-contract.md) is what makes replays and duplicates harmless:
 * key = opportunity_id; per opportunity only examples of the highest outcome_version
 * are live; a record with a lower version is stale; a higher version replaces every
 * earlier example of that opportunity; an equal version upserts by snapshot_id; a
 * record with retracted = true at a version >= the current one removes every example
 * (and blocks equal-version stragglers); a Kafka tombstone (null value) removes every
 * example whatever its version. Applying the same record twice changes nothing, so the
 * worker may commit its Kafka offsets after its LMDB batch (at-least-once input,
 * exactly-once effect).
 *
 * LMDB layout (one environment in state.dir):
 *   examples  (opportunity_id, snapshot_id) -> LabeledExample, Avro single-object bytes
 *             (compact, and readable by a future schema thanks to the fingerprint);
 *   opps      opportunity_id -> {outcome_version, retracted, live example count};
 *   meta      "pending" -> new outcomes since the last refit (u64, big-endian), and
 *             small worker state (see refit_worker.c).
 * A "new outcome" is an opportunity whose outcome version rose (first close, re-open
 * and close again): that is what the refit trigger counts. The counter is updated in
 * the same batch as the examples, so it can never disagree with them.
 *
 * Loading (cl_training_rows_load) flattens the set into one row per snapshot with
 * what fitting needs: components, close and snapshot days, the label, the opportunity
 * it belongs to, the categorical and numeric attributes learned factors are built from
 * (interned), and the shadow scores of up to two tracked model versions (champion and
 * challenger, for the A/B comparison). Rows of one opportunity are contiguous.
 */
#ifndef CL_REFIT_TRAINING_SET_H
#define CL_REFIT_TRAINING_SET_H

#include <stddef.h>
#include <stdint.h>

#include "avro.h"
#include "error.h"
#include "records.h"
#include "store.h"

enum { CL_TS_DB_EXAMPLES = 0, CL_TS_DB_OPPS, CL_TS_DB_META, CL_TS_NDBS };

typedef struct cl_training_set cl_training_set;

/* Opens (creating) the LMDB environment in dir. schemas must outlive the set. */
int cl_training_set_open(cl_training_set **out, const char *dir, const cl_store_config *sc,
                         const cl_avro_schemas *schemas, char *err, size_t errlen);
void cl_training_set_close(cl_training_set *ts);
cl_store *cl_training_set_store(cl_training_set *ts);

typedef enum {
    CL_TS_NEW_OUTCOME = 0, /* first example of a higher outcome version (counted) */
    CL_TS_UPSERT,          /* example added or replaced at the current version */
    CL_TS_STALE,           /* lower version, or equal to a retracted version: ignored */
    CL_TS_RETRACTED,       /* examples removed */
    CL_TS_NOOP,            /* retraction of an opportunity with nothing live */
} cl_ts_effect;

const char *cl_ts_effect_name(cl_ts_effect e);

/* Applies one labeled record inside batch b. ex == NULL is a Kafka tombstone for the
 * opportunity `opp` (the record key). A non-NULL ex must be valid and belong to opp
 * (CL_EINVAL otherwise: the caller sends it to the DLQ). */
int cl_training_set_apply(cl_training_set *ts, cl_store_txn *b, const char *opp,
                          const cl_labeled_example *ex, cl_ts_effect *effect, char *err,
                          size_t errlen);

/* New outcomes since the last reset (read in a batch or a read transaction). */
int cl_training_set_pending(cl_store_txn *t, uint64_t *out, char *err, size_t errlen);
int cl_training_set_reset_pending(cl_store_txn *b, char *err, size_t errlen);

/* Small named values in the meta database (worker state). CL_ENOTFOUND when unset. */
int cl_training_set_meta_get_i64(cl_store_txn *t, const char *name, int64_t *out, char *err,
                                 size_t errlen);
int cl_training_set_meta_put_i64(cl_store_txn *b, const char *name, int64_t v, char *err,
                                 size_t errlen);

/* Live opportunities and examples (read in a transaction). */
int cl_training_set_counts(cl_store_txn *t, uint64_t *opps, uint64_t *examples, char *err,
                           size_t errlen);

/* ---- rows ---------------------------------------------------------------------- */

#define CL_ROWS_MAX_SOURCES 16 /* categorical / numeric attribute sources */
#define CL_ROWS_NULL_CATEGORY UINT32_MAX

/* Interned strings: id -> string, string -> id. */
typedef struct cl_intern cl_intern;
const char *cl_intern_string(const cl_intern *t, uint32_t id);
uint32_t cl_intern_count(const cl_intern *t);

/* A model version whose shadow scores the loader picks out of each snapshot. */
typedef struct {
    char model[CL_NAME_MAX + 1];
    int64_t version; /* <= 0: not tracked */
    double high;     /* band threshold used to call a score HIGH (from that config) */
} cl_tracked_version;

typedef struct {
    size_t n;               /* rows (snapshots) */
    size_t n_opps;          /* opportunities */
    int64_t *snapshot_time; /* ms */
    int32_t *snap_day, *close_day, *days_before_close;
    uint8_t *won;
    uint32_t *opp;                       /* 0..n_opps-1, rows of one opportunity are contiguous */
    double *components[CL_NUM_BUILTINS]; /* one column per built-in, 0..100 */
    uint32_t *stage;                     /* interned in stages */
    cl_intern *stages;
    size_t n_cat;
    char cat_source[CL_ROWS_MAX_SOURCES][CL_NAME_MAX + 1];
    uint32_t *cat[CL_ROWS_MAX_SOURCES]; /* per source, CL_ROWS_NULL_CATEGORY for null */
    cl_intern *cat_values[CL_ROWS_MAX_SOURCES];
    size_t n_num;
    char num_source[CL_ROWS_MAX_SOURCES][CL_NAME_MAX + 1];
    double *num[CL_ROWS_MAX_SOURCES]; /* per source, NAN for null/absent */
    /* Shadow scores of the tracked versions (0 champion, 1 challenger). */
    cl_tracked_version tracked[2];
    double *score[2];
    uint8_t *has_score[2];
    uint8_t *high[2]; /* band HIGH in that snapshot's score entry */
    size_t cap;       /* allocated rows */
    char last_opp[CL_ID_MAX + 1];
} cl_training_rows;

typedef struct {
    const char *const *cat_sources; /* names, see cl_snapshot_category() in score.h */
    size_t n_cat;
    const char *const *num_sources; /* names, see cl_snapshot_numeric() in score.h */
    size_t n_num;
    cl_tracked_version tracked[2];
} cl_rows_spec;

/* Reads every live example (in a read transaction of the set's store) into rows.
 * Examples that no longer decode are skipped and counted in *skipped (may be NULL). */
int cl_training_rows_load(cl_training_set *ts, const cl_rows_spec *spec, cl_training_rows *out,
                          size_t *skipped, char *err, size_t errlen);

/* Build rows by hand (tests, the bench): appends one example. Rows of one
 * opportunity must be appended contiguously. */
int cl_training_rows_init(cl_training_rows *r, const cl_rows_spec *spec, char *err, size_t errlen);
int cl_training_rows_append(cl_training_rows *r, const cl_labeled_example *ex, char *err,
                            size_t errlen);
void cl_training_rows_free(cl_training_rows *r);



#endif
