/*
 * weights_follower.h — reads the compacted `weights` topic to its end at start, then
 * keeps following it, feeding every WeightConfig into a champion/challenger book
 * (weights.h).
 *
 * The follower is a whole-topic reader (no consumer group, nothing committed): every
 * start replays the topic from the beginning, which is what a compacted topic is for.
 * It waits for the topic to exist (a fresh deployment may start the scorer before the
 * topic-init job), up to a deadline the caller chooses. An empty topic leaves the seed
 * model as the champion, and the follower says so in the log.
 *
 * A record that cannot be decoded or fails WeightConfig validation is sent to the DLQ
 * with its original bytes and headers (cl_kafka_dlq_send) and changes nothing: the
 * weights in force stay in force. A record that cannot be decoded only because the
 * schema registry is unreachable is not the record's fault: the partition is rewound
 * to it and it is read again at the next poll.
 *
 * Threads: the follower belongs to the thread that polls it (it shares that thread's
 * producer for the DLQ). Its metrics are safe to scrape from the HTTP thread:
 *   closedloop_snapshot_weights_records_total{result}   applied|ignored|tombstone|dlq
 *   closedloop_snapshot_weights_version{model,status}    version in use (CHAMPION /
 *                                                         CHALLENGER), seed included
 *   kafka_consumergroup_lag{consumergroup,topic,partition} and the other lag families of
 *   cl_prom_set_consumer_lag, for the reader (consumergroup = the worker's group.id):
 *   the position of the follower against the log end offset.
 */
#ifndef CL_SNAPSHOT_WEIGHTS_FOLLOWER_H
#define CL_SNAPSHOT_WEIGHTS_FOLLOWER_H

#include <stddef.h>
#include <stdint.h>

#include "avro.h"
#include "config.h"
#include "kafka.h"
#include "prom.h"
#include "weights.h"

typedef struct {
    const cl_config *cfg;
    const char *topic;              /* full name of the weights topic */
    const char *dlq_topic;          /* full name of the dlq topic */
    const char *lag_group;          /* consumergroup label of the lag series */
    cl_producer *dlq_producer;      /* borrowed; sends with msg_opaque NULL */
    const cl_avro_schemas *schemas; /* borrowed */
    cl_registry *registry;          /* borrowed; may be NULL */
    cl_prom *prom;                  /* borrowed; may be NULL */
} cl_weights_follower_opts;

typedef struct cl_weights_follower cl_weights_follower;

int cl_weights_follower_new(cl_weights_follower **out, const cl_weights_follower_opts *opts,
                            char *err, size_t errlen);
void cl_weights_follower_free(cl_weights_follower *f);

/* Connects (waiting for the topic to exist) and reads the topic to its end. deadline_ms
 * is a cl_mono_ms() time; < 0 waits until a stop is requested. CL_OK, CL_ETIMEOUT (the
 * message names what was being waited for: the broker, the topic, the end), CL_ESTOP,
 * or CL_ERR for a fatal consumer error. */
int cl_weights_follower_start(cl_weights_follower *f, int64_t deadline_ms, char *err,
                              size_t errlen);

/* Applies what arrived since the last call, waiting up to timeout_ms for the first
 * record. CL_OK, or CL_ERR for a fatal consumer error. */
int cl_weights_follower_poll(cl_weights_follower *f, int timeout_ms, char *err, size_t errlen);

const cl_weights_book *cl_weights_follower_book(const cl_weights_follower *f);

#endif
