/*
 * config.c — the one configuration loader (see config.h for sources and precedence).
 *
 * Every option known to the program has an entry holding its current string value,
 * the parsed number (checked once, when set) and where the value came from, so an
 * error or --print-config can always say "file /etc/x.conf line 7" or "env X".
 * `kafka.*` keys are created on the fly and checked against librdkafka's own
 * property table by setting them on a scratch rd_kafka_conf_t.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"

extern char **environ;

#define CONFIG_LINE_MAX 8192
#define CONFIG_FILE_MAX (4 << 20)
#define MAX_TABLES 16
#define MAX_TOPICS 32

#ifndef CL_DEFAULT_SCHEMA_DIR
#define CL_DEFAULT_SCHEMA_DIR "schemas"
#endif
#ifndef CL_VERSION
#define CL_VERSION "0"
#endif

const cl_option cl_common_options[] = {
    {"config", CL_OPT_STRING, NULL, "Configuration file of `key = value` lines (env CLOSEDLOOP_CONFIG)."},
    {"brokers", CL_OPT_STRING, "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...); kafka.bootstrap.servers wins if set."},
    {"topic.prefix", CL_OPT_STRING, "closedloop.", "Prefix of every topic name."},
    {"group.id", CL_OPT_STRING, NULL, "Consumer group id (default: closedloop-<worker>)."},
    {"log.level", CL_OPT_STRING, "info", "Log level: debug, info, warn, error."},
    {"log.format", CL_OPT_STRING, "logfmt", "Log line format: logfmt (key=value) or json."},
    {"http.listen", CL_OPT_STRING, "127.0.0.1:9100", "Address of the /metrics and /healthz endpoint (host:port; port 0 = any)."},
    {"state.dir", CL_OPT_STRING, "state", "Directory of the worker's durable state (LMDB)."},
    {"shutdown.timeout.ms", CL_OPT_INT, "10000", "Upper bound on a graceful shutdown (finish, flush, commit).", 0, 0, 600000},
    {"avro.schema.dir", CL_OPT_STRING, CL_DEFAULT_SCHEMA_DIR, "Directory of the Avro schemas (.avsc)."},
    {NULL},
};

typedef struct {
    const cl_option *opt; /* NULL for dynamic kafka.* keys */
    char *key;
    char *value;          /* NULL: unset */
    char source[192];
    int64_t i;
    double d;
} entry;

struct cl_config {
    char program[64];
    char worker[64];
    char summary[1024];
    const cl_option *tables[MAX_TABLES];
    size_t ntables;
    entry *entries;
    size_t nentries, cap;
    char **args;
    int nargs;
    struct {
        char name[64];
        char full[256];
    } topics[MAX_TOPICS];
    size_t ntopics;
};

static entry *find(const cl_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->nentries; i++)
        if (strcmp(cfg->entries[i].key, key) == 0) return &cfg->entries[i];
    return NULL;
}

static entry *add_entry(cl_config *cfg, const cl_option *opt, const char *key)
{
    if (cfg->nentries == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 64;
        entry *e = realloc(cfg->entries, cap * sizeof *e);
        if (!e) return NULL;
        cfg->entries = e;
        cfg->cap = cap;
    }
    entry *e = &cfg->entries[cfg->nentries];
    memset(e, 0, sizeof *e);
    e->opt = opt;
    e->key = strdup(key);
    if (!e->key) return NULL;
    cfg->nentries++;
    return e;
}

static const char *type_name(cl_option_type t)
{
    switch (t) {
    case CL_OPT_INT: return "integer";
    case CL_OPT_DOUBLE: return "number";
    case CL_OPT_BOOL: return "boolean";
    default: return "string";
    }
}

/* Parses and bounds-checks `value` for e's type, then stores it. */
static int assign(entry *e, const char *value, const char *source, char *err, size_t errlen)
{
    int64_t i = 0;
    double d = 0;
    if (e->opt && value) {
        int b;
        switch (e->opt->type) {
        case CL_OPT_INT:
            if (cl_parse_int64(value, &i) != CL_OK)
                return cl_seterr(err, errlen, CL_EINVAL, "%s: key '%s': '%s' is not an integer",
                                 source, e->key, value);
            d = (double)i;
            break;
        case CL_OPT_DOUBLE:
            if (cl_parse_double(value, &d) != CL_OK)
                return cl_seterr(err, errlen, CL_EINVAL, "%s: key '%s': '%s' is not a number",
                                 source, e->key, value);
            break;
        case CL_OPT_BOOL:
            if (cl_parse_bool(value, &b) != CL_OK)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "%s: key '%s': '%s' is not a boolean (true/false)", source,
                                 e->key, value);
            i = b;
            break;
        default:
            break;
        }
        if ((e->opt->type == CL_OPT_INT || e->opt->type == CL_OPT_DOUBLE) &&
            e->opt->min < e->opt->max && (d < e->opt->min || d > e->opt->max))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s: key '%s': %s is outside the allowed range [%g, %g]", source,
                             e->key, value, e->opt->min, e->opt->max);
    }
    char *copy = NULL;
    if (value && !(copy = strdup(value))) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    free(e->value);
    e->value = copy;
    e->i = i;
    e->d = d;
    cl_strlcpy(e->source, source, sizeof e->source);
    if (e->opt && (e->opt->flags & CL_OPT_SECRET) && value) cl_log_add_secret(value);
    return CL_OK;
}

/* Validates a librdkafka property name/value on a scratch configuration. */
static int check_kafka_property(const char *prop, const char *value, const char *source,
                                char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rderr[256];
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, prop, value, rderr, sizeof rderr);
    rd_kafka_conf_destroy(conf);
    if (res == RD_KAFKA_CONF_OK) return CL_OK;
    return cl_seterr(err, errlen, CL_EINVAL, "%s: key 'kafka.%s': %s", source, prop, rderr);
}

static int is_secret_kafka_property(const char *prop)
{
    return strstr(prop, "password") || strstr(prop, "secret") || strstr(prop, "key.pem") ||
           strstr(prop, "token") || strstr(prop, "sasl.oauthbearer.config");
}

int cl_config_set(cl_config *cfg, const char *key, const char *value, const char *source,
                  char *err, size_t errlen)
{
    entry *e = find(cfg, key);
    if (!e) {
        if (strncmp(key, "kafka.", 6) != 0 || !key[6])
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s: unknown key '%s' (see --help for the list of options)", source,
                             key);
        int rc = check_kafka_property(key + 6, value, source, err, errlen);
        if (rc != CL_OK) return rc;
        if (!(e = add_entry(cfg, NULL, key))) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        if (is_secret_kafka_property(key + 6)) cl_log_add_secret(value);
    } else if (!e->opt) {
        int rc = check_kafka_property(key + 6, value, source, err, errlen);
        if (rc != CL_OK) return rc;
    }
    return assign(e, value, source, err, errlen);
}

cl_config *cl_config_new(const char *program, const char *summary, const cl_option *const *tables)
{
    cl_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cl_strlcpy(cfg->program, program, sizeof cfg->program);
    const char *w = strncmp(program, "closedloop-", 11) == 0 ? program + 11 : program;
    cl_strlcpy(cfg->worker, w, sizeof cfg->worker);
    cl_strlcpy(cfg->summary, summary ? summary : "", sizeof cfg->summary);
    cfg->tables[cfg->ntables++] = cl_common_options;
    for (size_t t = 0; tables && tables[t]; t++) {
        if (cfg->ntables == MAX_TABLES) abort();
        cfg->tables[cfg->ntables++] = tables[t];
    }
    for (size_t t = 0; t < cfg->ntables; t++) {
        for (const cl_option *o = cfg->tables[t]; o->key; o++) {
            if (find(cfg, o->key)) {
                fprintf(stderr, "config: option '%s' is defined twice (programming error)\n", o->key);
                abort();
            }
            entry *e = add_entry(cfg, o, o->key);
            if (!e) abort();
            char err[CL_ERRLEN];
            if (assign(e, o->default_value, "default", err, sizeof err) != CL_OK) {
                fprintf(stderr, "config: bad default: %s\n", err);
                abort();
            }
        }
    }
    return cfg;
}

void cl_config_free(cl_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->nentries; i++) {
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    free(cfg->args);
    free(cfg);
}

int cl_config_set_default(cl_config *cfg, const char *key, const char *value)
{
    entry *e = find(cfg, key);
    if (!e) return CL_ENOTFOUND;
    if (strcmp(e->source, "default") != 0) return CL_OK;
    return assign(e, value, "default", NULL, 0);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

int cl_config_load_text(cl_config *cfg, const char *name, const char *text, size_t len,
                        char *err, size_t errlen)
{
    size_t lineno = 0, pos = 0;
    char buf[CONFIG_LINE_MAX];
    while (pos < len) {
        lineno++;
        size_t start = pos;
        while (pos < len && text[pos] != '\n') pos++;
        size_t n = pos - start;
        if (pos < len) pos++;
        if (n >= sizeof buf)
            return cl_seterr(err, errlen, CL_EINVAL, "config file %s line %zu: line longer than %d bytes",
                             name, lineno, CONFIG_LINE_MAX - 1);
        memcpy(buf, text + start, n);
        buf[n] = '\0';
        if (memchr(buf, '\0', n))
            return cl_seterr(err, errlen, CL_EINVAL, "config file %s line %zu: NUL byte", name, lineno);
        char *line = trim(buf);
        if (!*line || *line == '#') continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "config file %s line %zu: expected 'key = value', got '%.80s'", name,
                             lineno, line);
        *eq = '\0';
        char *key = trim(line), *value = trim(eq + 1);
        if (!*key)
            return cl_seterr(err, errlen, CL_EINVAL, "config file %s line %zu: empty key", name, lineno);
        size_t vn = strlen(value);
        if (vn >= 2 && value[0] == '"' && value[vn - 1] == '"') {
            value[vn - 1] = '\0';
            value++;
        } else if (vn >= 1 && value[0] == '"') {
            return cl_seterr(err, errlen, CL_EINVAL,
                             "config file %s line %zu: unterminated quoted value for '%s'", name,
                             lineno, key);
        }
        char source[192];
        snprintf(source, sizeof source, "config file %s line %zu", name, lineno);
        int rc = cl_config_set(cfg, key, value, source, err, errlen);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

int cl_config_load_file(cl_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cl_seterr(err, errlen, CL_EIO, "config file %s: cannot open: %s", path, strerror(errno));
    cl_buf b;
    cl_buf_init(&b, CONFIG_FILE_MAX);
    char chunk[8192];
    size_t n;
    int rc = CL_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (cl_buf_append(&b, chunk, n) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "config file %s: larger than %d bytes", path,
                           CONFIG_FILE_MAX);
            break;
        }
    }
    if (rc == CL_OK && ferror(f))
        rc = cl_seterr(err, errlen, CL_EIO, "config file %s: read error: %s", path, strerror(errno));
    fclose(f);
    if (rc == CL_OK) rc = cl_config_load_text(cfg, path, b.data ? b.data : "", b.len, err, errlen);
    cl_buf_free(&b);
    return rc;
}

/* CLOSEDLOOP_ + key upper-cased, '.' and '-' -> '_'. */
static void env_name(const char *key, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "CLOSEDLOOP_");
    for (const char *k = key; *k && n + 1 < size; k++)
        out[n++] = (*k == '.' || *k == '-') ? '_' : (char)toupper((unsigned char)*k);
    out[n] = '\0';
}

/* Variables of the project's scripts (deploy/kafka, tests), not worker options: they
 * share the CLOSEDLOOP_ prefix and are neither applied nor warned about. */
static int is_script_variable(const char *name)
{
    static const char *const vars[] = {
        "CLOSEDLOOP_KAFKA_PORT",  "CLOSEDLOOP_KAFKA_CONTROLLER_PORT", "CLOSEDLOOP_KAFKA_DIR",
        "CLOSEDLOOP_KAFKA_CACHE", "CLOSEDLOOP_KAFKA_HEAP",            "CLOSEDLOOP_KAFKA_START_TIMEOUT",
        "CLOSEDLOOP_KAFKA_STOP_TIMEOUT", "CLOSEDLOOP_KAFKA_SASL_SSL_PORT",
        "CLOSEDLOOP_KAFKA_SSL_KEYSTORE", "CLOSEDLOOP_KAFKA_SSL_KEYSTORE_PASSWORD_FILE",
        "CLOSEDLOOP_KAFKA_SSL_CA", "CLOSEDLOOP_KAFKA_SCRAM_USER", "CLOSEDLOOP_KAFKA_SCRAM_PASSWORD_FILE",
    };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (strcmp(name, vars[i]) == 0) return 1;
    return 0;
}

static int load_env(cl_config *cfg, char *err, size_t errlen)
{
    for (char **ep = environ; ep && *ep; ep++) {
        const char *kv = *ep;
        if (strncmp(kv, "CLOSEDLOOP_", 11) != 0) continue;
        const char *eq = strchr(kv, '=');
        if (!eq) continue;
        char name[256];
        size_t nn = (size_t)(eq - kv);
        if (nn >= sizeof name) continue;
        memcpy(name, kv, nn);
        name[nn] = '\0';
        const char *value = eq + 1;
        if (strcmp(name, "CLOSEDLOOP_CONFIG") == 0 || is_script_variable(name)) continue;
        char source[192];
        snprintf(source, sizeof source, "env %.180s", name);
        entry *match = NULL;
        for (size_t i = 0; i < cfg->nentries && !match; i++) {
            if (!cfg->entries[i].opt) continue;
            char en[256];
            env_name(cfg->entries[i].key, en, sizeof en);
            if (strcmp(en, name) == 0) match = &cfg->entries[i];
        }
        if (match) {
            int rc = assign(match, value, source, err, errlen);
            if (rc != CL_OK) return rc;
            continue;
        }
        if (strncmp(name, "CLOSEDLOOP_KAFKA_", 17) == 0 && name[17]) {
            char key[256] = "kafka.";
            size_t n = 6;
            for (const char *p = name + 17; *p && n + 1 < sizeof key; p++)
                key[n++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            key[n] = '\0';
            char kerr[CL_ERRLEN];
            if (cl_config_set(cfg, key, value, source, kerr, sizeof kerr) == CL_OK) continue;
            cl_log(CL_LOG_WARN, "config_env_ignored", "variable=%s error=\"%s\"", name, kerr);
            continue;
        }
        cl_log(CL_LOG_WARN, "config_env_ignored", "variable=%s reason=\"no such option\"", name);
    }
    return CL_OK;
}

static int add_arg(cl_config *cfg, char *arg)
{
    char **a = realloc(cfg->args, (size_t)(cfg->nargs + 2) * sizeof *a);
    if (!a) return CL_ENOMEM;
    cfg->args = a;
    a[cfg->nargs++] = arg;
    a[cfg->nargs] = NULL;
    return CL_OK;
}

static int load_flags(cl_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_args || a[0] != '-' || a[1] == '\0') {
            if (add_arg(cfg, a) != CL_OK) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (strcmp(a, "-X") == 0 || strncmp(a, "-X", 2) == 0) {
            const char *kv = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq)
                return cl_seterr(err, errlen, CL_EINVAL, "flag -X: expected -X property=value");
            char key[512];
            snprintf(key, sizeof key, "kafka.%.*s", (int)(eq - kv), kv);
            int rc = cl_config_set(cfg, key, eq + 1, "flag -X", err, errlen);
            if (rc != CL_OK) return rc;
            continue;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            i++; /* handled by cl_config_load before the file was read */
            continue;
        }
        if (strcmp(a, "--print-config") == 0) continue;
        if (a[1] != '-')
            return cl_seterr(err, errlen, CL_EINVAL, "unknown flag '%s' (see --help)", a);
        char key[512];
        const char *eq = strchr(a + 2, '=');
        const char *value;
        size_t kn = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (kn >= sizeof key) return cl_seterr(err, errlen, CL_EINVAL, "flag too long: %.64s...", a);
        memcpy(key, a + 2, kn);
        key[kn] = '\0';
        entry *e = find(cfg, key);
        char source[192];
        snprintf(source, sizeof source, "flag --%.180s", key);
        if (eq) {
            value = eq + 1;
        } else if (e && e->opt && e->opt->type == CL_OPT_BOOL) {
            int b;
            if (i + 1 < argc && cl_parse_bool(argv[i + 1], &b) == CL_OK) value = argv[++i];
            else value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return cl_seterr(err, errlen, CL_EINVAL, "flag --%s: missing value", key);
        }
        int rc = cl_config_set(cfg, key, value, source, err, errlen);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

int cl_config_load(cl_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *file = getenv("CLOSEDLOOP_CONFIG");
    int print_config = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cl_config_print_help(cfg, stdout);
            return CL_ESTOP;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", cfg->program, CL_VERSION);
            return CL_ESTOP;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            print_config = 1;
            continue;
        }
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0)) {
            if (i + 1 >= argc) return cl_seterr(err, errlen, CL_EINVAL, "flag --config: missing file");
            file = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    int rc;
    if (file && *file) {
        if ((rc = cl_config_load_file(cfg, file, err, errlen)) != CL_OK) return rc;
        entry *e = find(cfg, "config");
        if (e) assign(e, file, "flag --config", NULL, 0);
    }
    if ((rc = load_env(cfg, err, errlen)) != CL_OK) return rc;
    rc = load_flags(cfg, argc, argv, err, errlen);
    if (rc != CL_OK) return rc;
    for (size_t i = 0; i < cfg->nentries; i++) {
        const entry *e = &cfg->entries[i];
        if (e->opt && (e->opt->flags & CL_OPT_REQUIRED) && !e->value)
            return cl_seterr(err, errlen, CL_EINVAL, "required option '%s' is not set (flag --%s)",
                             e->key, e->key);
    }
    cl_log_level level;
    cl_log_format format;
    if (cl_log_parse_level(cl_config_str(cfg, "log.level"), &level) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: key 'log.level': '%s' is not one of debug, info, warn, error",
                         cl_config_source(cfg, "log.level"), cl_config_str(cfg, "log.level"));
    if (cl_log_parse_format(cl_config_str(cfg, "log.format"), &format) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: key 'log.format': '%s' is not logfmt or json",
                         cl_config_source(cfg, "log.format"), cl_config_str(cfg, "log.format"));
    cl_log_init(cfg->worker, level, format);
    if (print_config) {
        cl_config_print(cfg, stdout);
        return CL_ESTOP;
    }
    return CL_OK;
}

static const entry *get(const cl_config *cfg, const char *key, int want_type)
{
    const entry *e = find(cfg, key);
    if (!e || (want_type >= 0 && (!e->opt || (int)e->opt->type != want_type))) {
        fprintf(stderr, "config: option '%s' %s (programming error)\n", key,
                e ? "has another type" : "is not defined");
        abort();
    }
    return e;
}

const char *cl_config_str(const cl_config *cfg, const char *key)
{
    const entry *e = find(cfg, key);
    if (!e) {
        if (strncmp(key, "kafka.", 6) == 0) return NULL;
        get(cfg, key, -1);
    }
    return e->value;
}

int64_t cl_config_int(const cl_config *cfg, const char *key)
{
    return get(cfg, key, CL_OPT_INT)->i;
}

double cl_config_double(const cl_config *cfg, const char *key)
{
    const entry *e = find(cfg, key);
    if (e && e->opt && e->opt->type == CL_OPT_INT) return (double)e->i;
    return get(cfg, key, CL_OPT_DOUBLE)->d;
}

int cl_config_bool(const cl_config *cfg, const char *key)
{
    return (int)get(cfg, key, CL_OPT_BOOL)->i;
}

int cl_config_is_set(const cl_config *cfg, const char *key)
{
    const entry *e = find(cfg, key);
    return e && e->value != NULL;
}

const char *cl_config_program(const cl_config *cfg)
{
    return cfg->program;
}

const char *cl_config_worker(const cl_config *cfg)
{
    return cfg->worker;
}

const char *cl_config_source(const cl_config *cfg, const char *key)
{
    const entry *e = find(cfg, key);
    return e ? e->source : "unset";
}

int cl_config_args(const cl_config *cfg, char ***argv_out)
{
    static char *none[] = {NULL};
    *argv_out = cfg->args ? cfg->args : none;
    return cfg->nargs;
}

int cl_config_foreach_prefix(const cl_config *cfg, const char *prefix,
                             int (*cb)(const char *key, const char *value, const char *source,
                                       void *ud),
                             void *ud)
{
    size_t pn = strlen(prefix);
    for (size_t i = 0; i < cfg->nentries; i++) {
        const entry *e = &cfg->entries[i];
        if (!e->value || strncmp(e->key, prefix, pn) != 0) continue;
        int rc = cb(e->key + pn, e->value, e->source, ud);
        if (rc) return rc;
    }
    return 0;
}

const char *cl_config_topic(cl_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ntopics; i++)
        if (strcmp(cfg->topics[i].name, name) == 0) return cfg->topics[i].full;
    if (cfg->ntopics == MAX_TOPICS) abort();
    const char *prefix = cl_config_str(cfg, "topic.prefix");
    size_t i = cfg->ntopics++;
    cl_strlcpy(cfg->topics[i].name, name, sizeof cfg->topics[i].name);
    snprintf(cfg->topics[i].full, sizeof cfg->topics[i].full, "%s%s", prefix ? prefix : "", name);
    return cfg->topics[i].full;
}

cl_config *cl_config_for_main(const cl_program *program, int argc, char **argv, int *exit_code)
{
    cl_config *cfg = cl_config_new(program->program, program->summary, program->tables);
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", program->program);
        *exit_code = 1;
        return NULL;
    }
    char group[128];
    snprintf(group, sizeof group, "closedloop-%s", cfg->worker);
    cl_config_set_default(cfg, "group.id", group);
    if (program->http_listen) cl_config_set_default(cfg, "http.listen", program->http_listen);
    if (program->state_dir) cl_config_set_default(cfg, "state.dir", program->state_dir);
    char err[CL_ERRLEN];
    int rc = cl_config_load(cfg, argc, argv, err, sizeof err);
    if (rc == CL_OK) return cfg;
    if (rc != CL_ESTOP) fprintf(stderr, "%s: %s\n", program->program, err);
    *exit_code = rc == CL_ESTOP ? 0 : rc == CL_ENOMEM ? 1 : 2;
    cl_config_free(cfg);
    return NULL;
}

void cl_config_print_help(const cl_config *cfg, FILE *out)
{
    fprintf(out, "Usage: %s [options]\n\n", cfg->program);
    if (cfg->summary[0]) fprintf(out, "%s\n\n", cfg->summary);
    fprintf(out, "Options (flag --key=value, env CLOSEDLOOP_KEY, or `key = value` in --config FILE;"
                 " flags win):\n");
    for (size_t t = 0; t < cfg->ntables; t++) {
        for (const cl_option *o = cfg->tables[t]; o->key; o++) {
            char env[256];
            env_name(o->key, env, sizeof env);
            fprintf(out, "  --%s=<%s>\n      %s\n      env %s", o->key, type_name(o->type), o->help, env);
            const entry *e = find(cfg, o->key);
            const char *def = e && strcmp(e->source, "default") == 0 ? e->value : o->default_value;
            if (o->flags & CL_OPT_SECRET) fprintf(out, "; secret, never logged");
            else if (def) fprintf(out, "; default %s", def);
            if (o->min < o->max) fprintf(out, "; range [%g, %g]", o->min, o->max);
            if (o->flags & CL_OPT_REQUIRED) fprintf(out, "; required");
            fputc('\n', out);
        }
    }
    fprintf(out,
            "  -X <property>=<value>, --kafka.<property>=<value>\n"
            "      Any librdkafka property, passed through (e.g. -X security.protocol=SASL_SSL);\n"
            "      env CLOSEDLOOP_KAFKA_<PROPERTY> with '.' written as '_'.\n"
            "  --config FILE, -c FILE   Read options from FILE first.\n"
            "  --print-config           Print every effective value and its source, then exit.\n"
            "  --help, --version\n");
}

void cl_config_print(const cl_config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->nentries; i++) {
        const entry *e = &cfg->entries[i];
        int secret = (e->opt && (e->opt->flags & CL_OPT_SECRET)) ||
                     (!e->opt && is_secret_kafka_property(e->key + 6));
        fprintf(out, "%s = %s  # %s\n", e->key,
                !e->value ? "(unset)" : secret ? "[redacted]" : e->value, e->source);
    }
}
