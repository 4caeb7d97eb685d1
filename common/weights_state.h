/*
 * weights_state.h — the compacted `<prefix>weights` topic: the keys its records are
 * written under and the rules that turn its records into the current CHAMPION and live
 * CHALLENGER of a model. Every reader of the topic that needs "what is in force" uses
 * these rules (the refit worker and the ops CLI through workers/refit/weights_log.h, the
 * snapshot worker through its book, workers/snapshot/weights.h), so what the scorer
 * applies, what refit trials and what `closedloop weights show` prints cannot disagree.
 * The module is pure state: decoding and Kafka belong to the callers.
 *
 * Keys. A compacted topic keeps only the latest record per key, so the key decides
 * what survives. One key per model ("key: model") would let a REJECTED record erase
 * the CHAMPION it was compared with. closedloop therefore writes each model's records
 * under three keys, one per role (cl_weights_key):
 *   "<model>"             CHAMPION records (promotion, rollback, the seed);
 *   "<model>/challenger"  CHALLENGER, REJECTED and CANDIDATE records: the latest refit
 *                         outcome and the challenger's end;
 *   "<model>/retired"     RETIRED records (the champion a promotion or rollback ended).
 * After compaction the three surviving records are the current champion, the latest
 * challenger-line record (a live CHALLENGER, or the REJECTED that ended it) and the
 * last retired champion (what `closedloop rollback` returns to). The highest version
 * ever minted is among them: every new version is first published as a challenger-line
 * record (refits) or as a CHAMPION (rollbacks), and a refit never runs while a
 * challenger is live, so the latest record of each key carries its highest version.
 *
 * State rules (cl_weights_state_apply). Readers do not depend on the key design: the
 * rules look at every record they are given, and status and version decide. Compaction
 * keeps the relative order of the records it keeps, so "since" is "later in the topic"
 * whatever the key. Per model, in topic order:
 *   CHAMPION v    becomes the champion if there is no champion on the topic or v >= its
 *                 version (equal: the later record wins); an older one is stale and
 *                 ignored. A challenger with version <= v ends (promoted or superseded).
 *   CHALLENGER v  becomes the challenger if no champion in force has a version >= v and
 *                 v >= the current challenger's version; otherwise it is ignored.
 *   REJECTED v,   end the challenger v. The champion stays in force even if its own
 *   RETIRED v     version is retired without a successor: scoring never runs without
 *                 a champion (the effect says so, so the operator sees it).
 *   CANDIDATE     never active.
 * "The champion in force" is the champion on the topic or, while the topic names none,
 * the state's fallback (the snapshot worker's seed for the seed model, SPEC §3): a
 * CHALLENGER must be newer than the fallback too, and a CHAMPION record always replaces
 * it. A state without a fallback (the refit worker's) accepts any first challenger.
 *
 * Beside the champion and challenger the state keeps what the writers need: the latest
 * RETIRED record (rollback target), the latest challenger-line record, and max_version,
 * the highest version of any record seen, so the next version minted is max + 1.
 * Applying a record either changes the state as above or, on CL_ENOMEM, not at all.
 */
#ifndef CL_WEIGHTS_STATE_H
#define CL_WEIGHTS_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "records.h"

#define CL_WEIGHTS_KEY_MAX (CL_NAME_MAX + 16)

/* The key a record is published under (see above). CL_EINVAL for an empty model name. */
int cl_weights_key(const cl_weight_config *c, char out[CL_WEIGHTS_KEY_MAX + 1], char *err,
                   size_t errlen);

/* One model's state as recovered from the topic. Configs are ~640 KiB each, hence the
 * heap copies, allocated on first use. */
typedef struct {
    char model[CL_NAME_MAX + 1];
    const cl_weight_config *fallback; /* borrowed; champion in force while the topic
                                         names none; NULL: none */
    cl_weight_config *champion;       /* heap; NULL: none on the topic */
    cl_weight_config *challenger;     /* heap; NULL: none live */
    cl_weight_config *retired;        /* heap; the latest RETIRED record, NULL: none */
    cl_weight_config *last;           /* heap; the latest challenger-line record */
    int64_t max_version;              /* 0: nothing seen */
    uint64_t records;                 /* records of this model applied */
} cl_weights_state;

/* What a record did to the champion/challenger in force. */
typedef enum {
    CL_WEIGHTS_NEW_CHAMPION = 0,
    CL_WEIGHTS_NEW_CHALLENGER,
    CL_WEIGHTS_ENDED_CHALLENGER, /* REJECTED/RETIRED of the live challenger */
    CL_WEIGHTS_IGNORED,          /* stale, CANDIDATE, an end of an inactive version, or a
                                    record of another model */
} cl_weights_effect;

const char *cl_weights_effect_name(cl_weights_effect e);

/* An empty state for `model` (truncated to CL_NAME_MAX), without a fallback. */
void cl_weights_state_init(cl_weights_state *s, const char *model);
void cl_weights_state_free(cl_weights_state *s);

/* The champion in force: the topic's, else the fallback (may be NULL). */
const cl_weight_config *cl_weights_state_champion(const cl_weights_state *s);

/* Applies one validated record by the rules above. *effect says what it did; why (may
 * be NULL) receives a short reason for the log ("v3 is older than champion v5"). A
 * record of another model is ignored and leaves the state untouched. CL_ENOMEM leaves
 * the state unchanged. */
int cl_weights_state_apply_effect(cl_weights_state *s, const cl_weight_config *c,
                                  cl_weights_effect *effect, char *why, size_t whylen, char *err,
                                  size_t errlen);

/* cl_weights_state_apply_effect for callers that only need to know whether the record
 * was this model's (*applied = 1) or another's (*applied = 0, state untouched). */
int cl_weights_state_apply(cl_weights_state *s, const cl_weight_config *c, int *applied, char *err,
                           size_t errlen);

#endif
