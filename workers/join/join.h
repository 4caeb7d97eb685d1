/*
 * join.h — the closedloop-join worker: snapshots + outcomes in, LabeledExamples out,
 * state in LMDB (SPEC §4.3; docs/join.md explains the design, docs/labeled-contract.md
 * the output contract).
 *
 * One consumer group reads `<prefix>snapshots` and `<prefix>outcomes`, co-partitioned
 * by opportunity id, so partition P of both topics is one unit of state ("task" in
 * Kafka Streams terms). Per record, the worker loads the opportunity's state from
 * LMDB, applies the pure state machine (join_state.h), stores the result, writes it to
 * the compacted `<prefix>join-changelog` (partition P, key = opportunity id) and
 * publishes the emitted LabeledExamples to `<prefix>labeled`.
 *
 * The invariant that makes state exactly-once: a batch of records is one LMDB write
 * transaction holding both the state changes and, per partition, the next offsets of
 * both input topics. Before the transaction commits, every record the batch produced
 * (labeled, changelog, DLQ) has been acknowledged by Kafka; if any was not, the batch
 * is aborted and the partitions rewound to the offsets in LMDB. So after any crash
 * LMDB holds a state and the offsets that produced it, and the output of that state
 * was delivered (at least once). On start and on every assignment the consumer seeks
 * to the LMDB offsets; Kafka's committed offsets (written after each LMDB commit) only
 * serve lag monitors — and tell a newly assigned partition whether another instance
 * advanced it since this one last had it.
 *
 * Restore. When the group's committed offsets of partition P are ahead of the local
 * ones (another instance owned it), or there is no local state for P but the group has
 * offsets, P's local state is wiped and rebuilt from join-changelog partition P while
 * P's input partitions are paused; the poll loop keeps polling meanwhile (so
 * max.poll.interval.ms is never at risk) and restores a bounded number of changelog
 * records per iteration. The changelog holds, besides one record per opportunity, a
 * partition record (key CL_JOIN_META_KEY) written at the end of each batch with the
 * input offsets and watermarks; records applied after it are recognised by their
 * per-opportunity offsets (join_state.h) and not applied twice.
 */
#ifndef CL_JOIN_H
#define CL_JOIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "error.h"

/* Key of the per-partition record in join-changelog: cannot be a Salesforce id. */
#define CL_JOIN_META_KEY "__closedloop.join.partition__"

/* join.* options (plus cl_store_options and cl_registry_options, added by main). */
extern const cl_option cl_join_options[];

typedef struct cl_join_worker cl_join_worker;

/* Opens the store, codecs, Kafka clients and the HTTP server. */
int cl_join_worker_new(cl_config *cfg, cl_join_worker **out, char *err, size_t errlen);
/* Runs until cl_stop_requested() (or, with join.exit.idle.ms > 0, until every assigned
 * partition has been read to its end and stayed idle that long: tests and benchmarks).
 * Returns CL_OK on an orderly stop. */
int cl_join_worker_run(cl_join_worker *w, char *err, size_t errlen);
void cl_join_worker_free(cl_join_worker *w);

/* Writes a canonical text dump of the LMDB state in state.dir (partition records,
 * opportunity states with payload hashes, timers) to out. The worker must not be
 * running on that directory. Used by tests to compare two runs. */
int cl_join_dump_state(const cl_config *cfg, FILE *out, char *err, size_t errlen);

#endif
