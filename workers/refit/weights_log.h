/*
 * weights_log.h — the compacted `<prefix>weights` topic as the refit worker (and the
 * ops CLI) write and read it: the records of each transition, reading the topic into a
 * model's state, and publishing records under their keys.
 *
 * The key design and the rules that turn the topic's records into a champion, a live
 * challenger, the last retired champion and the highest version are common to every
 * reader and live in common/weights_state.h (cl_weights_key, cl_weights_state). The
 * refit worker's state has no fallback: its seed stands in for a missing champion only
 * in the worker's own decisions (refit_worker.c), so a first CHALLENGER is live
 * whatever its version.
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
#include "weights_state.h"

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
