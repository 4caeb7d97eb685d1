/*
 * weights.h — which weight configurations are active: the current CHAMPION and any
 * CHALLENGER of each model, as the records of the compacted `weights` topic say.
 *
 * The book is pure state (no Kafka), fed one decoded and validated WeightConfig at a
 * time in topic order; weights_follower.h feeds it from the topic.
 *
 * Why these rules. How champion and challenger records survive compaction depends on
 * the key the refit worker writes them under (model, model+version, model+status...).
 * The book does not rely on any key design: it looks at every record it is given and
 * keeps, per model, the CHAMPION with the highest version and the CHALLENGER with the
 * highest version that has not since been ended. Compaction keeps the relative order
 * of the records it keeps, so "since" is "later in the topic" whatever the key:
 *   CHAMPION v    becomes the champion if v >= the current champion's version (equal:
 *                 the later record wins); an older one is stale and ignored. A
 *                 challenger with version <= v is dropped (promoted or superseded).
 *   CHALLENGER v  becomes the challenger if there is no champion at v or above and v >=
 *                 the current challenger's version; otherwise it is ignored.
 *   REJECTED v,   end the challenger v. The champion stays in force even if its own
 *   RETIRED v     version is retired without a successor: scoring never runs without
 *                 a champion (the record is reported, so the operator sees it).
 *   CANDIDATE     never active; ignored.
 * A model with no champion on the topic falls back to the seed for the seed model
 * (CL_SEED_MODEL, SPEC §3); other models without a champion score with their
 * challenger alone.
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

#define CL_WEIGHTS_MAX_MODELS 64

typedef struct {
    char model[CL_NAME_MAX + 1];
    cl_weight_config *champion;   /* heap; NULL: none seen */
    cl_weight_config *challenger; /* heap; NULL: none active */
} cl_weights_model;

typedef struct {
    cl_weights_model models[CL_WEIGHTS_MAX_MODELS]; /* sorted by model name */
    size_t n;
    cl_weight_config *seed; /* the seed champion, used while the seed model has none */
    uint64_t changes;       /* bumped whenever the active set changes */
} cl_weights_book;

/* What a record did to the book. */
typedef enum {
    CL_WEIGHTS_NEW_CHAMPION = 0,
    CL_WEIGHTS_NEW_CHALLENGER,
    CL_WEIGHTS_ENDED_CHALLENGER, /* REJECTED/RETIRED of the active challenger */
    CL_WEIGHTS_IGNORED,          /* stale, CANDIDATE, or an end of an inactive version */
} cl_weights_effect;

const char *cl_weights_effect_name(cl_weights_effect e);

/* created_at: the seed's creation time (ms). */
int cl_weights_book_init(cl_weights_book *b, int64_t created_at, char *err, size_t errlen);
void cl_weights_book_free(cl_weights_book *b);

/* Applies one record (already validated). *effect says what it did; why (may be NULL)
 * receives a short reason for the log ("v3 is older than champion v5"). CL_ENOMEM on
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
