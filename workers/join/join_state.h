/*
 * join_state.h — the join of one opportunity, as a pure state machine.
 *
 * The join worker keeps, per opportunity, the snapshots it has seen (bounded by count
 * and age) and the latest version of its outcome. This module owns that state and
 * every decision about it; it does no I/O. Given the stored state and one incoming
 * record (a snapshot, an outcome, an outcome tombstone) or a timer, it changes the
 * state in place and lists the LabeledExamples to publish. The worker (join.c) decodes
 * records, loads/stores the state in LMDB, and turns emissions into Kafka records.
 *
 * The output contract (docs/labeled-contract.md): every emission is keyed by
 * opportunity id and carries the outcome version it was joined with. The emitted set
 * of an opportunity is a function of its state alone:
 *   outcome present      -> one example per kept snapshot taken on or before the close
 *                           date, at outcome_version = the outcome's system_modstamp;
 *   outcome retracted    -> retraction markers (retracted = true) at the retracted
 *                           version for the snapshots that were eligible under it;
 *   no outcome           -> nothing (the snapshots wait).
 * A consumer that keeps, per opportunity, only the highest outcome_version (and lets a
 * retraction at version v remove everything <= v) converges to exactly that set, so the
 * worker may re-emit the view of an opportunity at any time (cl_join_view) without
 * ever causing a double count. That is what makes output at-least-once safe.
 *
 * Idempotence. Each state remembers the highest Kafka offset it applied from each
 * input topic. A record at or below it was already applied (a replay after a restore
 * from the changelog, which may be ahead of the offsets it carries) and changes
 * nothing; the caller then re-emits the view instead, because the output of the
 * original application may not have been delivered. Outcomes are also versioned:
 * one whose system_modstamp is not newer than every version seen is stale and ignored,
 * so an ingester that replays old versions cannot roll an opportunity back.
 *
 * Order independence. The snapshots kept are the newest max_snapshots (by
 * snapshot_time, ties by id) younger than max_age relative to the newest one; the
 * exclusion of post-close snapshots is decided at emission, not at arrival. So the
 * state after a set of records does not depend on how the snapshots and outcomes
 * topics interleaved — except through timers, which fire on the partition watermark
 * (see cl_join_fire_timer), the same way in any interleaving of in-order inputs.
 *
 * Timers. An opportunity with snapshots but no outcome expires (its snapshots are
 * dropped and counted) once the watermark passes newest snapshot_time + open_expiry;
 * one with an outcome and no snapshot is counted as unscored once the watermark passes
 * its version + unscored_after, and the state is kept (a late snapshot still joins).
 * The worker keeps a timer index in LMDB keyed by cl_join_deadline().
 *
 * The binary form (cl_join_state_encode/decode) is what LMDB and the join-changelog
 * topic hold. It starts with a format byte so the layout can evolve; decode treats its
 * input as hostile (every length is bounded and checked).
 */
#ifndef CL_JOIN_STATE_H
#define CL_JOIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "util.h"

#define CL_JOIN_ID_MAX 128                 /* opportunity and snapshot ids, bytes */
#define CL_JOIN_PAYLOAD_MAX (256u * 1024u) /* one encoded snapshot or outcome */
#define CL_JOIN_SNAPSHOTS_HARD_MAX 1024    /* upper bound of join.snapshots.max */
#define CL_JOIN_NO_DEADLINE INT64_MAX
#define CL_JOIN_DAY_MS 86400000LL

typedef struct {
    uint32_t max_snapshots;    /* keep at most this many per opportunity (1..HARD_MAX) */
    int64_t max_age_ms;        /* drop snapshots older than newest - max_age */
    int64_t open_expiry_ms;    /* expire snapshots of still-open opportunities */
    int64_t unscored_after_ms; /* count an outcome with no snapshot as unscored */
} cl_join_policy;

/* 64 snapshots, 730 days, 365 days, 30 days. */
void cl_join_policy_defaults(cl_join_policy *p);

typedef struct {
    char id[CL_JOIN_ID_MAX + 1];
    int64_t time_ms; /* snapshot_time */
    uint8_t *payload;
    size_t payload_len;
} cl_join_snapshot;

typedef enum {
    CL_JOIN_TIMER_NONE = 0,
    CL_JOIN_TIMER_EXPIRE = 1,   /* open opportunity: drop its snapshots */
    CL_JOIN_TIMER_UNSCORED = 2, /* closed opportunity never scored: count it */
} cl_join_timer_kind;

typedef struct {
    char opportunity_id[CL_JOIN_ID_MAX + 1];
    int64_t snapshot_offset; /* highest snapshots-topic offset applied; -1 none */
    int64_t outcome_offset;  /* highest outcomes-topic offset applied; -1 none */

    int has_outcome;         /* an outcome version is stored (possibly retracted) */
    int outcome_retracted;   /* a tombstone retracted it */
    int64_t outcome_version; /* system_modstamp of the stored outcome */
    int64_t version_floor;   /* highest outcome version ever seen (stale filter) */
    int32_t close_date;      /* days since epoch */
    uint8_t *outcome_payload;
    size_t outcome_payload_len;

    int unscored; /* the unscored timer fired and no snapshot came since */

    size_t nsnapshots; /* sorted by (time_ms, id) ascending */
    cl_join_snapshot *snapshots;
} cl_join_state;

/* What a step asks the worker to publish. Payload pointers borrow from the state or
 * from the emission list's own copies; valid until the list is reset or freed. */
typedef struct {
    int retracted;
    int64_t outcome_version;
    int32_t days_before_close;
    const char *snapshot_id;
    const uint8_t *snapshot_payload;
    size_t snapshot_payload_len;
    const uint8_t *outcome_payload;
    size_t outcome_payload_len;
} cl_join_emit;

typedef struct {
    uint64_t joined;     /* examples emitted */
    uint64_t retracted;  /* retraction markers emitted */
    uint64_t excluded;   /* snapshots taken after the close date, not emitted */
    uint64_t waiting;    /* snapshots stored with no outcome to join */
    uint64_t duplicates; /* records already applied (offset or same content) */
    uint64_t stale;      /* outcome versions not newer than the floor */
    uint64_t evicted;    /* snapshots dropped by the count/age bound */
    uint64_t expired;    /* snapshots dropped because the opportunity stayed open */
    uint64_t unscored;   /* outcomes that never met a snapshot */
    uint64_t changed;    /* 1 when the step changed the state */
} cl_join_counts;

typedef struct {
    cl_join_emit *items;
    size_t n, cap;
    /* Copies of payloads of snapshots evicted or outcomes replaced in this step. */
    uint8_t **owned;
    size_t nowned, capowned;
    cl_join_counts counts;
} cl_join_emits;

void cl_join_emits_init(cl_join_emits *e);
void cl_join_emits_reset(cl_join_emits *e); /* keeps capacity */
void cl_join_emits_free(cl_join_emits *e);

void cl_join_state_init(cl_join_state *s, const char *opportunity_id, size_t id_len);
void cl_join_state_free(cl_join_state *s);
/* True when nothing is left worth storing (the caller deletes the key). */
int cl_join_state_is_empty(const cl_join_state *s);

/* The day (days since epoch, UTC) of a timestamp, rounding toward -infinity. */
int32_t cl_join_day_of(int64_t ms);

/* Steps. `offset` is the record's offset in its input topic partition. Payloads are
 * copied. They fail only on bad arguments or memory (state unchanged then). */
int cl_join_apply_snapshot(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                           const char *snapshot_id, int64_t snapshot_time_ms, const void *payload,
                           size_t len, cl_join_emits *out, char *err, size_t errlen);
int cl_join_apply_outcome(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                          int64_t version, int32_t close_date, const void *payload, size_t len,
                          cl_join_emits *out, char *err, size_t errlen);
int cl_join_apply_tombstone(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                            cl_join_emits *out, char *err, size_t errlen);

/* Appends the current view (see top) to out. */
int cl_join_view(const cl_join_state *s, cl_join_emits *out, char *err, size_t errlen);

/* When the state's timer is due and which kind; CL_JOIN_NO_DEADLINE when none. */
int64_t cl_join_deadline(const cl_join_state *s, const cl_join_policy *p, cl_join_timer_kind *kind);
/* Fire the timer if watermark >= deadline (otherwise nothing). */
int cl_join_fire_timer(cl_join_state *s, const cl_join_policy *p, int64_t watermark,
                       cl_join_emits *out, char *err, size_t errlen);

/* Binary form for LMDB and the changelog. decode replaces *s (init or freed first). */
int cl_join_state_encode(const cl_join_state *s, cl_buf *out, char *err, size_t errlen);
int cl_join_state_decode(const void *data, size_t len, cl_join_state *s, char *err, size_t errlen);

#endif
