/*
 * weights.h — which weight configurations are active: the current CHAMPION and any
 * CHALLENGER of each model, as the records of the compacted `weights` topic say.
 *
 * The book is pure state (no Kafka), fed one decoded and validated WeightConfig at a
 * time in topic order; weights_follower.h feeds it from the topic. It is a set of
 * per-model states (common/weights_state.h), so the champion/challenger rules are
 * exactly those every other reader of the topic applies, independent of the key
 * design. What the book adds:
 *   - the seed. A model with no champion on the topic falls back to the seed for the
 *     seed model (CL_SEED_MODEL, SPEC §3): the seed model's state has the seed as its
 *     fallback, so a CHALLENGER of that model must be newer than the seed (v1) and any
 *     CHAMPION record replaces it. Other models without a champion score with their
 *     challenger alone.
 *   - a model enters the book with its first record that changes what is in force; at
 *     most CL_WEIGHTS_MAX_MODELS models (CL_EFULL beyond, the book unchanged).
 *   - a change counter, bumped whenever the active set changes, and the effect and
 *     reason of each record for the log.
 *
 * Active versions are listed in a fixed order — models by name, champion before
 * challenger — and at most CL_MAX_SCORES of them (the bound of a snapshot's scores),
 * so every snapshot of a run carries its scores in the same order.
 */
#ifndef CL_SNAPSHOT_WEIGHTS_H
#define CL_SNAPSHOT_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "records.h"
#include "weights_state.h"

#define CL_WEIGHTS_MAX_MODELS 64

typedef struct {
    cl_weights_state models[CL_WEIGHTS_MAX_MODELS]; /* sorted by model name */
    size_t n;
    cl_weight_config *seed; /* the seed champion, the seed model's fallback */
    uint64_t changes;       /* bumped whenever the active set changes */
} cl_weights_book;

/* created_at: the seed's creation time (ms). */
int cl_weights_book_init(cl_weights_book *b, int64_t created_at, char *err, size_t errlen);
void cl_weights_book_free(cl_weights_book *b);

/* Applies one record (already validated) to its model's state
 * (cl_weights_state_apply_effect: *effect and why as there). CL_ENOMEM on
 * allocation failure, CL_EFULL when a new model would exceed CL_WEIGHTS_MAX_MODELS (the
 * book is unchanged in both cases). */
int cl_weights_book_apply(cl_weights_book *b, const cl_weight_config *c, cl_weights_effect *effect,
                          char *why, size_t whylen, char *err, size_t errlen);

/* The champion/challenger in force for a model (seed fallback included), or NULL. */
const cl_weight_config *cl_weights_book_champion(const cl_weights_book *b, const char *model);
const cl_weight_config *cl_weights_book_challenger(const cl_weights_book *b, const char *model);

/* Active versions in scoring order into out[0..*n), at most max; *dropped counts active
 * versions that did not fit. `only` (may be NULL or empty) restricts to a comma-separated
 * list of model names. The pointers stay valid until the next apply. */
void cl_weights_book_active(const cl_weights_book *b, const char *only,
                            const cl_weight_config **out, size_t max, size_t *n, size_t *dropped);

#endif
