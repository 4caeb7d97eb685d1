/*
 * fuzz_snapshot_input.c — arbitrary bytes as a scoring-run export into the snapshot
 * worker's row reader (workers/snapshot/input.h, compiled instrumented by
 * fuzz/CMakeLists.txt): CSV with a header or JSON Lines, through the column mapping.
 *
 * Input layout: byte 0 picks the format (bit 0: CSV / JSON Lines, bit 1: auto-detect)
 * and the spec (bit 2: the default one with no mapping; otherwise a spec that renames
 * two columns, carries attribute and feature columns and restricts the stages), the
 * rest is the file.
 *
 * Invariants beyond "no crash, no leak": every row the reader accepts passes
 * cl_snapshot_validate (what it accepts must be publishable); a bad row or a stop
 * always carries a message; the reader ends (CL_ENOTFOUND or CL_ERR) and each row
 * reported has a line number that never decreases.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/input.h"

static cl_snapshot_input_spec specs[2];
static cl_snapshot row;

static void cleanup(void)
{
    cl_snapshot_input_spec_free(&specs[0]);
    cl_snapshot_input_spec_free(&specs[1]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[CL_ERRLEN];
    if (cl_snapshot_input_spec_init(&specs[0], NULL, NULL, NULL, NULL, err, sizeof err) != CL_OK ||
        cl_snapshot_input_spec_init(&specs[1], "opportunity_id=Opportunity Id,stage=StageName",
                                    "Channel,Partner", "Propensity,Engagement",
                                    "Prospecting,Qualification,Negotiation,Proposal", err,
                                    sizeof err) != CL_OK) {
        fprintf(stderr, "fuzz_snapshot_input: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    cl_snapshot_format format = sel & 2   ? CL_SNAPSHOT_FORMAT_AUTO
                                : sel & 1 ? CL_SNAPSHOT_FORMAT_JSONL
                                          : CL_SNAPSHOT_FORMAT_CSV;
    const cl_snapshot_input_spec *spec = &specs[sel & 4 ? 0 : 1];
    const char *name = sel & 8 ? "run.jsonl" : "run.csv";
    char err[CL_ERRLEN] = "";
    const char *ignored = NULL;
    cl_snapshot_input *in;
    int rc = cl_snapshot_input_open(&in, spec, name, (const char *)data + 1, size - 1, format,
                                    &ignored, err, sizeof err);
    if (rc != CL_OK) {
        if (!err[0]) abort();
        return 0;
    }
    size_t last_line = 0;
    for (;;) {
        size_t line = 0;
        err[0] = '\0';
        rc = cl_snapshot_input_next(in, &row, &line, err, sizeof err);
        if (rc == CL_ENOTFOUND) break;
        if (rc == CL_OK) {
            char verr[CL_ERRLEN];
            if (cl_snapshot_validate(&row, verr, sizeof verr) != CL_OK) {
                fprintf(stderr, "accepted row fails validation: %s\n", verr);
                abort();
            }
        } else if (!err[0]) {
            abort();
        }
        if (rc != CL_ENOTFOUND && line < last_line) abort();
        if (line > last_line) last_line = line;
        if (rc != CL_OK && rc != CL_EINVAL) break;
    }
    cl_snapshot_input_close(in);
    return 0;
}
