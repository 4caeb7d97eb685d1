/*
 * refit_worker.h — closedloop-refit's loop: consume `labeled` into the LMDB training
 * set, follow `weights`, and when enough new outcomes have arrived (or the schedule
 * says so) run one cycle: judge the live challenger's A/B trial, or refit when there
 * is none, and publish the resulting WeightConfig records.
 *
 * Invariants.
 *   - Input: each poll's records go into one LMDB batch (training set + the "pending"
 *     new-outcome counter); Kafka offsets are committed only after that batch
 *     committed. A crash replays records the batch may already hold, which the consumer
 *     rule makes harmless.
 *   - Output: a cycle's records are published and acknowledged before the pending
 *     counter is reset (in LMDB). A crash in between re-runs the cycle; the refit is
 *     deterministic (seeded), the version is minted from the topic (max seen + 1), and
 *     the state read back from `weights` at start includes what was acknowledged, so a
 *     re-run never publishes a second challenger next to the first (a live challenger
 *     turns the cycle into a trial evaluation).
 *   - One instance per model: the training set needs every partition of `labeled`.
 *     The consumer group exists for offsets and lag monitoring, not for scale-out.
 *   - A refit never runs while a challenger is live: a trial has to finish (promote or
 *     reject) before the next challenger may start, so the A/B window cannot be reset
 *     forever by a stream of new fits.
 */
#ifndef CL_REFIT_WORKER_H
#define CL_REFIT_WORKER_H

#include <stddef.h>

#include "config.h"
#include "error.h"

extern const cl_option cl_refit_worker_options[];

typedef struct cl_refit_worker cl_refit_worker;

int cl_refit_worker_new(cl_config *cfg, cl_refit_worker **out, char *err, size_t errlen);
/* Runs until cl_stop_requested() (or refit.exit.idle.ms of idleness). */
int cl_refit_worker_run(cl_refit_worker *w, char *err, size_t errlen);
void cl_refit_worker_free(cl_refit_worker *w);

#endif
