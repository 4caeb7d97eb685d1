/*
 * config.h — one configuration loader for every closedloop program.
 *
 * A program describes its options in tables of cl_option (key, type, default, help).
 * Values come from, lowest precedence first:
 *   1. the table's default (or cl_config_set_default(), for per-worker defaults);
 *   2. a config file (`--config FILE` or CLOSEDLOOP_CONFIG): `key = value` lines,
 *      `#` comments, blank lines ignored, values may be "double quoted";
 *   3. environment variables: CLOSEDLOOP_ + the key upper-cased with '.' and '-'
 *      turned into '_' (log.level -> CLOSEDLOOP_LOG_LEVEL). For librdkafka
 *      properties, CLOSEDLOOP_KAFKA_SASL_MECHANISM -> kafka.sasl.mechanism;
 *   4. command-line flags: `--key=value`, `--key value`, `--flag` for booleans,
 *      and `-X prop=value` (kcat style) for `kafka.prop=value`.
 * Flags win.
 *
 * Any key `kafka.<property>` is passed to librdkafka unchanged (kafka.security.protocol,
 * kafka.sasl.*, kafka.ssl.* ...); cl_config_load() validates them against librdkafka
 * so a misspelt property fails at start, naming the key and where it came from.
 *
 * Errors name the key, the source and the line: "config file /etc/cl.conf line 7:
 * unknown key 'join.bach.size'", "flag --join.batch.size: 'abc' is not an integer".
 * An unknown CLOSEDLOOP_* environment variable only produces a warning, because the
 * environment is shared with other tools; the variables of deploy/kafka's scripts
 * (CLOSEDLOOP_KAFKA_PORT, _CONTROLLER_PORT, _DIR, _CACHE, _HEAP, _START_TIMEOUT,
 * _STOP_TIMEOUT, _SASL_SSL_PORT, _SSL_KEYSTORE, _SSL_KEYSTORE_PASSWORD_FILE, _SSL_CA,
 * _SCRAM_USER, _SCRAM_PASSWORD_FILE) are skipped silently.
 *
 * Options flagged CL_OPT_SECRET are registered with the log module's redaction and are
 * shown as "[redacted]" by --print-config. --help is generated from the tables.
 */
#ifndef CL_CONFIG_H
#define CL_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    CL_OPT_STRING = 0,
    CL_OPT_INT,      /* int64, optional [min, max] */
    CL_OPT_DOUBLE,   /* double, optional [min, max] */
    CL_OPT_BOOL,     /* true/false/yes/no/on/off/1/0 */
} cl_option_type;

enum {
    CL_OPT_SECRET = 1u << 0,   /* never logged or printed */
    CL_OPT_REQUIRED = 1u << 1, /* load fails if unset */
};

typedef struct {
    const char *key;           /* "join.batch.size"; NULL key ends a table */
    cl_option_type type;
    const char *default_value; /* NULL: unset */
    const char *help;          /* one sentence */
    unsigned flags;
    double min, max;           /* numeric bounds, checked when min < max */
} cl_option;

/* Options every program has: config, brokers, topic.prefix, group.id, log.level,
 * log.format, http.listen, state.dir, shutdown.timeout.ms, avro.schema.dir.
 * Modules with options of their own export a table (cl_registry_options,
 * cl_store_options, ...) that a program passes to cl_config_new(). A key defined in
 * two tables is a programming error (abort). */
extern const cl_option cl_common_options[];

typedef struct cl_config cl_config;

/* program: e.g. "closedloop-join"; summary: one paragraph for --help.
 * tables: NULL-terminated list of option tables (cl_common_options is always added). */
cl_config *cl_config_new(const char *program, const char *summary, const cl_option *const *tables);
void cl_config_free(cl_config *cfg);

/* Override a table default before loading (e.g. http.listen per worker). */
int cl_config_set_default(cl_config *cfg, const char *key, const char *value);

/* Load file, environment and flags. Returns CL_OK, CL_ESTOP when --help or --version
 * was printed (main exits 0), or CL_EINVAL with the message in err.
 * Positional (non-flag) arguments are collected; see cl_config_args(). */
int cl_config_load(cl_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Set one value as if from `source` ("test", "flag", ...); validates type/bounds. */
int cl_config_set(cl_config *cfg, const char *key, const char *value, const char *source,
                  char *err, size_t errlen);
/* Load just a file (used by cl_config_load; exposed for tests and fuzzing). */
int cl_config_load_file(cl_config *cfg, const char *path, char *err, size_t errlen);
/* Parse config text as if read from `name` (fuzz target entry point). */
int cl_config_load_text(cl_config *cfg, const char *name, const char *text, size_t len,
                        char *err, size_t errlen);

/* Getters. Asking for a key that is not in any table is a programming error (abort). */
const char *cl_config_str(const cl_config *cfg, const char *key);  /* NULL when unset */
int64_t cl_config_int(const cl_config *cfg, const char *key);
double cl_config_double(const cl_config *cfg, const char *key);
int cl_config_bool(const cl_config *cfg, const char *key);
int cl_config_is_set(const cl_config *cfg, const char *key);
/* "default", "file /path line 3", "env CLOSEDLOOP_X", "flag --x" */
const char *cl_config_source(const cl_config *cfg, const char *key);

/* "closedloop-join" / "join" as given to cl_config_new(). */
const char *cl_config_program(const cl_config *cfg);
const char *cl_config_worker(const cl_config *cfg);

/* Positional arguments (e.g. input files). */
int cl_config_args(const cl_config *cfg, char ***argv_out);

/* Every key with the given prefix (e.g. "kafka."), in insertion order; callback gets
 * the key without the prefix. Stops and returns the first non-zero callback result. */
int cl_config_foreach_prefix(const cl_config *cfg, const char *prefix,
                             int (*cb)(const char *key, const char *value, const char *source,
                                       void *ud),
                             void *ud);

/* Convenience for common options. */
/* Full topic name: topic.prefix + name ("closedloop." + "snapshots"). Returns a
 * pointer to an internal buffer owned by cfg, valid until cl_config_free. */
const char *cl_config_topic(cl_config *cfg, const char *name);

/* The start of every program's main(), in one place: creates the configuration with
 * the program's tables, applies its defaults (http.listen, state.dir; group.id becomes
 * "closedloop-<worker>"), loads file, environment and flags, and initializes logging.
 * Returns the configuration, or NULL with *exit_code set: 0 after --help, --version or
 * --print-config; 2 for bad configuration (the message naming key and source is
 * printed to stderr); 1 when out of memory. */
typedef struct {
    const char *program;              /* "closedloop-join" */
    const char *summary;              /* paragraph for --help */
    const cl_option *const *tables;   /* NULL-terminated, as for cl_config_new */
    const char *http_listen;          /* default http.listen, e.g. "127.0.0.1:9103" */
    const char *state_dir;            /* default state.dir, e.g. "state/join" */
} cl_program;
cl_config *cl_config_for_main(const cl_program *program, int argc, char **argv, int *exit_code);

void cl_config_print_help(const cl_config *cfg, FILE *out);
/* Every effective value with its source, secrets redacted. */
void cl_config_print(const cl_config *cfg, FILE *out);

#endif
