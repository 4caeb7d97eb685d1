/*
 * snapshot.h — the closedloop-snapshot worker: scoring-run exports in, one
 * OpportunitySnapshot per scored open opportunity out on `<prefix>snapshots`, keyed by
 * opportunity id, scored under every active weight version (SPEC §4.1; docs/snapshot.md).
 *
 * Inputs: files, directories of run files, or "-" (stdin), given as arguments or with
 * snapshot.input. A file or stdin is one run, published every time it is given (a
 * snapshot_id depends only on run_id and opportunity id, so republishing a run changes
 * nothing downstream). A directory is a queue of runs: every regular, non-hidden file
 * with a known extension is one run, processed in name order, and recorded as done in
 * LMDB (state.dir) once it is finished, so a restart does not publish it again unless
 * the file changed (size or mtime). With --follow the worker keeps scanning its
 * directories and following the weights topic until SIGTERM/SIGINT.
 *
 * A run, and the invariant between the input and Kafka:
 *   1. plan: every row is read, validated and scored (plan.h); bad rows are reported
 *      with file, line and column. With snapshot.bad.rows=fail, any bad row ends the
 *      run here: nothing is published.
 *   2. preflight: the snapshots topic must be reachable (metadata within
 *      snapshot.connect.timeout.ms), so a broker that is down fails the run before any
 *      record is queued.
 *   3. publish: the good rows are sent in file order, each carrying its row index;
 *      every delivery report marks its row ACKED or FAILED.
 *   4. flush: the run waits for every report. A run is "published" only when every
 *      good row is ACKED; otherwise the summary lists the lines that were not.
 * Every run ends with one JSON line on stdout (input, run_id, counts, status, the
 * lines rejected and the lines not published) and the same counts in /metrics.
 * The weight versions a run is scored under are fixed when the run starts: every
 * snapshot of a run carries the same versions, so champion and challenger are
 * compared on the same opportunities. Weight updates apply from the next run.
 */
#ifndef CL_SNAPSHOT_SNAPSHOT_H
#define CL_SNAPSHOT_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

/* snapshot.* options and `follow` (main adds cl_store_options and cl_registry_options). */
extern const cl_option cl_snapshot_options[];

typedef struct {
    uint64_t read, published, rejected, failed;
} cl_snapshot_counts;

typedef struct cl_snapshot_worker cl_snapshot_worker;

/* Validates the configuration, loads schemas, opens the producer, the weights follower,
 * the HTTP endpoint and (for directory inputs) the LMDB store. cfg must outlive the
 * worker. Does not contact the broker yet. */
int cl_snapshot_worker_new(cl_config *cfg, cl_snapshot_worker **out, char *err, size_t errlen);

/* Reads the weights topic to its end, then processes every input (and, with --follow,
 * keeps going until a stop is requested). CL_OK when every run was published in full
 * (rows rejected under snapshot.bad.rows=skip do not count against it) or, in follow
 * mode, on an orderly stop; otherwise the first failure, with err saying which input. */
int cl_snapshot_worker_run(cl_snapshot_worker *w, char *err, size_t errlen);

/* Totals over every run so far. */
void cl_snapshot_worker_counts(const cl_snapshot_worker *w, cl_snapshot_counts *out);

void cl_snapshot_worker_free(cl_snapshot_worker *w);

#endif
