/*
 * fuzz_config.c — arbitrary text into cl_config_load_text, the parser behind
 * `--config FILE` (config files are written by hand, templated by deploy tooling and
 * mounted from secrets, so their bytes are not to be trusted).
 *
 * One fresh cl_config per input, over the common options plus a table with one option
 * of every type and flag (string, bounded int, bounded double, bool, secret), so that
 * typed conversion, bounds, quoting, comments, kafka.* pass-through and secret
 * registration all run. After a successful load every value is read back through the
 * typed getters and the whole configuration is printed (secrets redacted) to
 * /dev/null; the invariants are the getters' own (an int within its bounds, a bool
 * 0/1) and that an error always carries a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"

static const cl_option fuzz_options[] = {
    {"fuzz.name", CL_OPT_STRING, "closedloop", "a string", 0, 0, 0},
    {"fuzz.count", CL_OPT_INT, "10", "a bounded integer", 0, -1000, 1000},
    {"fuzz.any.int", CL_OPT_INT, NULL, "an unbounded integer", 0, 0, 0},
    {"fuzz.share", CL_OPT_DOUBLE, "0.5", "a bounded double", 0, 0, 1},
    {"fuzz.enabled", CL_OPT_BOOL, "false", "a boolean", 0, 0, 0},
    {"fuzz.password", CL_OPT_STRING, NULL, "a secret", CL_OPT_SECRET, 0, 0},
    {NULL, 0, NULL, NULL, 0, 0, 0},
};
static const cl_option *const tables[] = {fuzz_options, NULL};
static FILE *devnull;

static int visit(const char *key, const char *value, const char *source, void *ud)
{
    (void)ud;
    if (!key || !value || !source) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    cl_config *cfg = cl_config_new("closedloop-fuzz", "Fuzzing the config parser.", tables);
    if (!cfg) return 0;
    char err[CL_ERRLEN] = "";
    int rc = cl_config_load_text(cfg, "fuzz.conf", (const char *)data, size, err, sizeof err);
    if (rc == CL_OK) {
        int64_t count = cl_config_int(cfg, "fuzz.count");
        if (count < -1000 || count > 1000) abort();
        double share = cl_config_double(cfg, "fuzz.share");
        if (!(share >= 0 && share <= 1)) abort();
        int enabled = cl_config_bool(cfg, "fuzz.enabled");
        if (enabled != 0 && enabled != 1) abort();
        (void)cl_config_int(cfg, "fuzz.any.int");
        const char *keys[] = {"fuzz.name", "fuzz.password", "brokers", "http.listen", "log.level"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const char *v = cl_config_str(cfg, keys[i]);
            if (v) (void)strlen(v);
            if (!cl_config_source(cfg, keys[i])) abort();
        }
        (void)cl_config_topic(cfg, "snapshots");
        cl_config_foreach_prefix(cfg, "kafka.", visit, NULL);
        cl_config_print(cfg, devnull);
    } else if (err[0] == '\0') {
        abort();
    }
    cl_config_free(cfg);
    return 0;
}
