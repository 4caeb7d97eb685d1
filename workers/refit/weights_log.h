/*
 * weights_log.h — the compacted `<prefix>weights` topic as the refit worker (and the
 * ops CLI) write and read it: record keys, version numbering, and the state a reader
 * recovers from the topic.
 *
 * Keys. A compacted topic keeps only the latest record per key, so the key decides
 * what survives. One key per model ("key: model") would let a REJECTED record erase
 * the CHAMPION it was compared with. closedloop therefore writes each model's records
 * under three keys, one per role:
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
 * Readers must still not depend on the key (the snapshot worker's book does not):
 * status and version decide.
 *
 * State rules (cl_weights_state_apply), the same as workers/snapshot/weights.h:
 *   CHAMPION v    becomes the champion if v >= the current champion's version; a
 *                 challenger with version <= v ends (promoted or superseded);
 *   CHALLENGER v  becomes the challenger if no champion has a version >= v and v >= the
 *                 current challenger's version;
 *   REJECTED v / RETIRED v end the challenger v; the champion stays in force even when
 *                 its own version is retired (scoring never runs without a champion);
 *   CANDIDATE     never active.
 * max_version tracks every version seen, so the next one minted is max + 1.
 *
 * Transitions (cl_weights_promotion / cl_weights_rollback) build the records to
 * publish, in order, each validated: promotion = CHAMPION (the challenger's version,
 * same weights, with the A/B comparison) then RETIRED (the old champion); rollback =
 * CHAMPION (a new version with the last retired champion's weights) then RETIRED (the
 * champion being rolled back). A promoted challenger keeps its version: the version
 * names the weights, so metrics and shadow scores recorded under it stay attached.
 */
#ifndef CL_REFIT_WEIGHTS_LOG_H
#define CL_REFIT_WEIGHTS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "avro.h"
#include "config.h"
#include "error.h"
#include "kafka.h"
#include "records.h"

#define CL_WEIGHTS_KEY_MAX (CL_NAME_MAX + 16)

/* The key a record is published under (see above). */
int cl_weights_key(const cl_weight_config *c, char out[CL_WEIGHTS_KEY_MAX + 1], char *err,
                   size_t errlen);

/* One model's state as recovered from the topic. */
typedef struct {
    char model[CL_NAME_MAX + 1];
    cl_weight_config *champion;   /* heap; NULL: none on the topic */
    cl_weight_config *challenger; /* heap; NULL: none live */
    cl_weight_config *retired;    /* heap; the latest RETIRED record, NULL: none */
    cl_weight_config *last;       /* heap; the latest challenger-line record */
    int64_t max_version;          /* 0: nothing seen */
    uint64_t records;             /* records applied */
} cl_weights_state;

void cl_weights_state_init(cl_weights_state *s, const char *model);
void cl_weights_state_free(cl_weights_state *s);

/* Applies one validated record. Records of other models are ignored (*applied = 0). */
int cl_weights_state_apply(cl_weights_state *s, const cl_weight_config *c, int *applied, char *err,
                           size_t errlen);

/* Records for promoting the live challenger: out[0] CHAMPION, out[1] RETIRED (when
 * there is a champion). comparison may be NULL (manual promotion). *n receives 1 or
 * 2. Each out[i] must point to a caller-allocated config. */
int cl_weights_promotion(const cl_weights_state *s, const cl_champion_comparison *comparison,
                         const char *reason, int64_t now_ms, cl_weight_config *const out[2],
                         size_t *n, char *err, size_t errlen);

/* Records for ending the live challenger as REJECTED with the reason (and comparison). */
int cl_weights_rejection(const cl_weights_state *s, const cl_champion_comparison *comparison,
                         const char *reason, int64_t now_ms, cl_weight_config *out, char *err,
                         size_t errlen);

/* Records for a rollback to the last retired champion: out[0] CHAMPION at
 * max_version + 1 (its weights, parent = the current champion), out[1] RETIRED (the
 * current champion). CL_ENOTFOUND when nothing was retired. */
int cl_weights_rollback(const cl_weights_state *s, const char *reason, int64_t now_ms,
                        cl_weight_config *const out[2], char *err, size_t errlen);

/* ---- Kafka ---------------------------------------------------------------------- */

/* Reads the weights topic from the beginning to its current end into s (records that
 * do not decode or validate are logged and skipped: they were never valid configs).
 * timeout_ms bounds the whole read. */
int cl_weights_read_topic(const cl_config *cfg, const cl_avro_schemas *schemas,
                          cl_registry *registry, const char *topic, cl_weights_state *s,
                          int timeout_ms, char *err, size_t errlen);

/* Decodes one weights record (value bytes) with codec into c, validated. */
int cl_weights_decode(cl_avro_codec *codec, const void *value, size_t len, cl_weight_config *c,
                      char *err, size_t errlen);

/* The delivery callback a producer used with cl_weights_publish must be created with
 * (cl_producer_opts.on_delivery): it records each acknowledgement or failure in the
 * publish call's msg_opaque. */
void cl_weights_on_delivery(void *msg_opaque, int status, const char *topic, int32_t partition,
                            int64_t offset, const char *reason, void *ud);

/* Encodes and publishes the configs in order under their keys, then waits (flush) until
 * the broker acknowledged all of them. CL_OK only when every record was acknowledged. */
int cl_weights_publish(cl_producer *p, cl_avro_codec *codec, const char *topic,
                       cl_weight_config *const *configs, size_t n, int timeout_ms, char *err,
                       size_t errlen);

#endif
