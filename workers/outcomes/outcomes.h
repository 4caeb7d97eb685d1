/*
 * outcomes.h — the outcomes worker: pull closed Opportunities from Salesforce (REST
 * queryAll paging, Bulk API 2.0 for large backfills, or a CSV report export), publish
 * OpportunityOutcome records keyed by opportunity id to <prefix>outcomes, and remember
 * how far it got.
 *
 * The invariant between LMDB and Kafka: nothing in LMDB claims more than Kafka has
 * acknowledged. Records are published a chunk at a time (one REST page, or up to
 * outcomes.batch.size rows of a Bulk/CSV page); only after every record of the chunk has
 * its delivery report does one LMDB transaction record, for each acknowledged record,
 * (Id -> state, SystemModstamp) in the `seen` database, and the pull's position:
 *   - REST: `from`, the SystemModstamp (to the second) of the last acknowledged record.
 *     A restart, or an INVALID_QUERY_LOCATOR, re-queries [from, before) and the `seen`
 *     check drops what was already published.
 *   - Bulk: the job id and the Sforce-Locator of the next unread results page.
 * When a pull completes, the watermark becomes the pull's upper bound `before` (fixed
 * when the pull began) and the next pull reads [watermark - lookback, now). A kill -9
 * at any point therefore re-publishes at most the last unacknowledged chunk — same
 * (key, system_modstamp), so consumers that keep the latest version see no change —
 * and misses nothing.
 *
 * A deleted opportunity, or one re-opened after its outcome was published, becomes a
 * tombstone (null value) carrying headers closedloop.system_modstamp and
 * closedloop.retraction (deleted | reopened).
 *
 * Exit status of a one-shot run (cl_outcomes_run with --once): 0 complete; 75 stopped
 * early with state kept (quota share, REQUEST_LIMIT_EXCEEDED, retries exhausted,
 * signal); 1 error (the log says which request and why).
 */
#ifndef CL_OUTCOMES_OUTCOMES_H
#define CL_OUTCOMES_OUTCOMES_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define CL_OUTCOMES_EXIT_STOPPED 75

/* salesforce.*, outcomes.* and `once`. */
extern const cl_option cl_outcomes_options[];

typedef struct cl_outcomes cl_outcomes;

/* Validates configuration, opens state, producer, schemas, Salesforce auth and the
 * HTTP endpoint. cfg must outlive the worker. */
int cl_outcomes_open(cl_outcomes **out, cl_config *cfg, char *err, size_t errlen);

/* One pull (REST/Bulk/CSV as configured). CL_OK when complete; CL_ESTOP when stopped
 * early with state kept; other errors with the message in err. */
int cl_outcomes_pull(cl_outcomes *w, char *err, size_t errlen);

/* Pull every outcomes.poll.interval.ms until a stop is requested (or once). Returns the
 * process exit status. */
int cl_outcomes_run(cl_outcomes *w);

void cl_outcomes_close(cl_outcomes *w);

/* Persisted pull position (exposed for tests). */
typedef struct {
    int active;
    int64_t before_ms;
    int64_t from_ms;
    char job_id[32];
    char locator[128];
} cl_outcomes_position;

int cl_outcomes_position_encode(const cl_outcomes_position *p, cl_buf *out);
int cl_outcomes_position_decode(const void *data, size_t len, cl_outcomes_position *p, char *err,
                                size_t errlen);

#endif
