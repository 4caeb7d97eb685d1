/*
 * plan.h — the validation pass of a run: every row of a run file read, checked and
 * scored before a single record is published.
 *
 * "Nothing half-published" starts here. A run is read twice: the plan reads every row
 * and decides, per row, GOOD or BAD (the reader's checks, input.h; plus what only the
 * run can know: an opportunity id seen twice in the run, a run_id that differs from the
 * run's, a row that cannot be scored under one of the active weight versions). Only
 * then does the publisher read the rows again and send the GOOD ones, in the same
 * order, recording each delivery report against the row — so at the end it can say
 * exactly which rows (by line) Kafka acknowledged and which it did not. With the
 * fail-run policy a plan with any BAD row publishes nothing at all.
 *
 * The plan keeps 8 bytes per row (line and state), not the rows themselves, so a
 * million-row run costs a few megabytes on top of the file.
 */
#ifndef CL_SNAPSHOT_PLAN_H
#define CL_SNAPSHOT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "input.h"
#include "records.h"

typedef enum {
    CL_ROW_BAD = 0, /* rejected by validation */
    CL_ROW_GOOD,    /* to be published */
    CL_ROW_SENT,    /* accepted by the producer, no delivery report yet */
    CL_ROW_ACKED,   /* acknowledged by Kafka */
    CL_ROW_FAILED,  /* not published: send refused, delivery failed or purged */
} cl_row_state;

typedef struct {
    uint32_t line; /* first line of the row in the file (saturates at UINT32_MAX) */
    uint8_t state; /* cl_row_state */
} cl_plan_row;

typedef struct {
    cl_plan_row *rows; /* every row in file order, good and bad */
    size_t n;
    size_t good, bad;
    char run_id[CL_ID_MAX + 1]; /* of the first good row; "" when there is none */
} cl_snapshot_plan;

/* Called for every BAD row with its line and a message naming file, line and column. */
typedef void (*cl_plan_bad_row_fn)(size_t line, const char *message, void *ud);

/*
 * Reads every row of data[0..len) and fills *plan. The active weight versions (in
 * scoring order, see weights.h) are applied to each row, so a row whose scoring fails
 * is BAD now rather than a surprise while publishing.
 * Returns CL_OK (whatever the number of bad rows), or CL_EINVAL / CL_ERR / CL_ENOMEM
 * when the file as a whole cannot be used (unreadable header, a quoting error): then
 * nothing of it may be published, and err says why.
 */
int cl_snapshot_plan_build(cl_snapshot_plan *plan, const cl_snapshot_input_spec *spec,
                           const char *name, const char *data, size_t len,
                           cl_snapshot_format format, const cl_weight_config *const *active,
                           size_t nactive, cl_plan_bad_row_fn on_bad, void *ud, char *err,
                           size_t errlen);
void cl_snapshot_plan_free(cl_snapshot_plan *plan);

/* Fills s->scores with one entry per active version, in order. */
int cl_snapshot_score_all(cl_snapshot *s, const cl_weight_config *const *active, size_t nactive,
                          char *err, size_t errlen);

#endif
