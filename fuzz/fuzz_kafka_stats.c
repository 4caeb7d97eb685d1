/*
 * fuzz_kafka_stats.c — arbitrary bytes into cl_kafka_parse_stats_lag, which turns
 * librdkafka's statistics JSON into per-partition lag for /metrics. librdkafka writes
 * that JSON, but a broker controls the numbers and topic names in it, and a future
 * librdkafka may change its shape, so the parser must treat it as hostile.
 *
 * Invariants: on CL_OK every partition has a topic name and a partition id >= 0 (the
 * internal partition -1 is never reported); on failure the message is set; the report
 * is always freed (LeakSanitizer checks).
 */
#include <stdint.h>
#include <stdlib.h>

#include "kafka.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cl_lag_report r;
    char err[CL_ERRLEN] = "";
    int rc = cl_kafka_parse_stats_lag((const char *)data, size, &r, err, sizeof err);
    if (rc == CL_OK) {
        for (size_t i = 0; i < r.n; i++)
            if (r.parts[i].partition < 0) abort();
        cl_lag_report_free(&r);
    } else if (err[0] == '\0') {
        abort();
    }
    return 0;
}
