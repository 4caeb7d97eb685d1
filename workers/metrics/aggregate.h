/*
 * aggregate.h — the metrics worker's keyed state: what has been labeled, kept in LMDB so
 * that replays and duplicates never double count and retractions subtract.
 *
 * Input is the `labeled` topic (docs/labeled-contract.md). Its consumer rule, per
 * opportunity (the record key):
 *   - keep only examples at the highest outcome_version seen; an example at a lower
 *     version is stale and ignored;
 *   - an example at a higher version replaces every earlier example of the opportunity
 *     (the outcome changed: re-opened and closed again, won became lost...);
 *   - at an equal version, examples are upserted by snapshot_id;
 *   - retracted = true at version v >= the current one removes every example of the
 *     opportunity and remembers v as retracted, so a late duplicate of an example at v
 *     cannot bring it back; only a higher version can;
 *   - a Kafka tombstone (null value) retracts at the current version the same way.
 * The state after any sequence of records is therefore a function of the set of
 * records at the highest version, not of how often or in which order they arrived,
 * which is what "replaying the same input twice changes no figure" needs.
 *
 * Shape in LMDB (three databases, see cl_aggregate_db_names):
 *   opportunities  key str(opportunity_id)                -> version, retracted flag
 *   rows           key str(opportunity_id) str(snapshot_id) -> one cl_metrics_row
 *   offsets        key u32(partition)                     -> next offset of `labeled`
 * The rows of one opportunity are contiguous (the key starts with the opportunity id),
 * so the evaluator (evaluate.h) sees each opportunity's snapshots together and applies
 * the horizon policy there: the policy is a choice made at evaluation time, so
 * changing it needs no rebuild of the state. The worker writes the offsets in the same
 * batch as the rows they produced, so state and position never disagree after a crash.
 *
 * A row keeps only what evaluation and the reports need (ids, dates, label, the
 * categorical attributes, amount, the six components and every score entry); it is
 * written in a small versioned binary form and read back as hostile bytes.
 */
#ifndef CL_METRICS_AGGREGATE_H
#define CL_METRICS_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "records.h"
#include "store.h"
#include "util.h"

#define CL_METRICS_ROW_FORMAT 1

enum { CL_AGG_DB_OPPORTUNITIES = 0, CL_AGG_DB_ROWS, CL_AGG_DB_OFFSETS, CL_AGG_DB_COUNT };
/* NULL-terminated, in the order of the enum above (pass to cl_store_open). */
extern const char *const cl_aggregate_db_names[];

/* One labeled snapshot as the metrics worker keeps it. */
typedef struct {
    char opportunity_id[CL_ID_MAX + 1];
    char snapshot_id[CL_ID_MAX + 1];
    int64_t outcome_version; /* ms */
    int64_t snapshot_time;   /* ms */
    int32_t close_date;      /* days */
    int32_t days_before_close;
    uint8_t won;
    char stage[CL_NAME_MAX + 1]; /* stage at snapshot time */
    char owner_id[CL_ID_MAX + 1];
    char segment[CL_NAME_MAX + 1];
    char region[CL_NAME_MAX + 1];
    char product[CL_NAME_MAX + 1];
    char lead_source[CL_NAME_MAX + 1];
    char type[CL_NAME_MAX + 1];
    cl_opt_double amount;
    double components[CL_NUM_BUILTINS];
    cl_score_entry scores[CL_MAX_SCORES];
    size_t n_scores;
} cl_metrics_row;

/* Builds the row of an example. A snapshot that carries no score entry (exported by a
 * scorer that did not shadow-score) is scored here under `fallback` (normally the seed
 * model) so that it is still evaluated; fallback NULL leaves it without scores. */
int cl_metrics_row_from_example(const cl_labeled_example *e, const cl_weight_config *fallback,
                                cl_metrics_row *out, char *err, size_t errlen);
/* Appends the binary form to out. */
int cl_metrics_row_encode(const cl_metrics_row *r, cl_buf *out, char *err, size_t errlen);
/* Reads a row back; every length, number and enum is checked (CL_EINVAL names the field). */
int cl_metrics_row_decode(const void *data, size_t len, cl_metrics_row *out, char *err,
                          size_t errlen);

/* What one record did to the state. */
typedef enum {
    CL_AGG_ADDED = 0,   /* a new (opportunity, snapshot) at the current version */
    CL_AGG_UPDATED,     /* same identity and version, different content: upserted */
    CL_AGG_DUPLICATE,   /* byte-identical to what is stored: nothing written */
    CL_AGG_SUPERSEDED,  /* a higher version: the opportunity's earlier rows were dropped */
    CL_AGG_STALE,       /* a lower version (or equal to a retracted one): ignored */
    CL_AGG_RETRACTED,   /* a retraction or tombstone removed the opportunity's rows */
    CL_AGG_EFFECT_COUNT
} cl_aggregate_effect;

/* "added", "updated", ... (Prometheus label values). */
const char *cl_aggregate_effect_name(cl_aggregate_effect e);

/* Applies one decoded example (retracted or not) inside an open batch. `scratch` is a
 * buffer the caller reuses between calls. *removed counts the rows deleted (may be
 * NULL). */
int cl_aggregate_apply(cl_store_txn *b, const cl_labeled_example *e,
                       const cl_weight_config *fallback, cl_buf *scratch,
                       cl_aggregate_effect *effect, size_t *removed, char *err, size_t errlen);

/* Applies a Kafka tombstone for `opportunity_id` (the record key). */
int cl_aggregate_apply_tombstone(cl_store_txn *b, const char *opportunity_id, size_t len,
                                 cl_aggregate_effect *effect, size_t *removed, char *err,
                                 size_t errlen);

/* Offsets of the labeled topic kept with the state. */
int cl_aggregate_offset_get(cl_store_txn *t, int32_t partition, int64_t *next, char *err,
                            size_t errlen); /* CL_ENOTFOUND when never stored */
int cl_aggregate_offset_put(cl_store_txn *b, int32_t partition, int64_t next, char *err,
                            size_t errlen);

/* Calls cb for every row, grouped by opportunity (rows of one opportunity are
 * consecutive, in snapshot-id key order), inside a read transaction of the caller.
 * cb returns 0 to go on, non-zero to stop (negative: that status is returned). */
typedef int (*cl_aggregate_row_fn)(const cl_metrics_row *row, void *ud);
int cl_aggregate_scan(cl_store_txn *t, cl_aggregate_row_fn cb, void *ud, char *err,
                      size_t errlen);

#endif
