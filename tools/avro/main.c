/*
 * closedloop-avro — closedloop's Avro codec on the command line.
 *
 * For operators (decode a record copied out of the DLQ, check which fingerprint a
 * schema has) and for the interop tests, which hold the codec against fastavro: the
 * same canonical forms and fingerprints, records that cross between the two
 * implementations in both framings, and old data read through newer schemas.
 *
 * Framed records on stdin/stdout are length-prefixed: a 4-byte big-endian length,
 * then that many bytes (the Kafka message value: framing header + Avro datum). This is
 * unambiguous for binary data and trivial to produce from any language.
 *
 * Exit status: 0 success, 1 a record or schema failed (message on stderr names the
 * record number), 2 usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "registry.h"
#include "util.h"

#define MAX_RECORD_BYTES (256u << 20)
#define MAX_LINE_BYTES (64u << 20)

static const cl_option tool_options[] = {
    {"schema-dir", CL_OPT_STRING, NULL,
     "Directory of .avsc files, with older versions in history/ (default: avro.schema.dir)."},
    {"schema-file", CL_OPT_STRING, NULL, "Use this one .avsc file instead of a directory."},
    {"writer-schema", CL_OPT_STRING, NULL,
     "Comma-separated older .avsc versions also accepted as writer schemas when decoding."},
    {"record", CL_OPT_STRING, NULL,
     "Record to encode/decode (full or short name); default: the only record of --schema-file."},
    {"framing", CL_OPT_STRING, "auto",
     "encode: single (C3 01 + fingerprint), confluent (00 + schema id) or auto (confluent when "
     "schema.registry.url is set)."},
    {"schema-id", CL_OPT_INT, "0",
     "Confluent schema id to write (and to map to the record's schema when decoding) without "
     "asking a registry.",
     0, 0, 2147483647.0},
    {"subject", CL_OPT_STRING, NULL, "Registry subject to register under (default TOPIC-value)."},
    {"topic", CL_OPT_STRING, NULL, "Full topic name; the subject is TOPIC-value."},
    {NULL},
};

static void usage(FILE *out)
{
    fputs("usage: closedloop-avro COMMAND [options]\n"
          "\n"
          "Commands:\n"
          "  canonical FILE.avsc   print the schema's Parsing Canonical Form\n"
          "  fingerprint FILE.avsc print its CRC-64-AVRO fingerprint as 16 hex digits, in the\n"
          "                        byte order of the single-object header (as fastavro prints it)\n"
          "  encode                JSON lines (Avro JSON encoding; bare union values accepted)\n"
          "                        on stdin -> framed records on stdout\n"
          "  decode                framed records on stdin -> JSON lines (Avro JSON encoding)\n"
          "\n"
          "Framed records are length-prefixed: a 4-byte big-endian length, then the message\n"
          "bytes (framing header + Avro binary). Decoding accepts both framings; a Confluent\n"
          "id is looked up in the registry (schema.registry.url) unless it is --schema-id.\n"
          "\n"
          "Examples:\n"
          "  closedloop-avro fingerprint schemas/OpportunitySnapshot.avsc\n"
          "  closedloop-avro encode --schema-dir schemas --record OpportunitySnapshot < in.jsonl > "
          "out.bin\n"
          "  closedloop-avro decode --schema-dir schemas --record OpportunitySnapshot < out.bin\n"
          "\n",
          out);
}

/* canonical / fingerprint: any schema document, not only records. */
static int cmd_schema(const char *cmd, const char *path)
{
    char err[CL_ERRLEN];
    cl_buf text, canon;
    cl_buf_init(&text, MAX_RECORD_BYTES);
    cl_buf_init(&canon, MAX_RECORD_BYTES);
    FILE *f = fopen(path, "rb");
    int status = 1;
    if (!f) {
        fprintf(stderr, "closedloop-avro %s: %s: cannot open\n", cmd, path);
        return 1;
    }
    char chunk[65536];
    size_t n;
    int rc = CL_OK;
    while (rc == CL_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = cl_buf_append(&text, chunk, n);
    fclose(f);
    if (rc != CL_OK)
        fprintf(stderr, "closedloop-avro %s: %s: too large\n", cmd, path);
    else if (cl_avro_canonical_form(text.data ? text.data : "", text.len, &canon, err,
                                    sizeof err) != CL_OK)
        fprintf(stderr, "closedloop-avro %s: %s: %s\n", cmd, path, err);
    else if (strcmp(cmd, "canonical") == 0)
        status = printf("%s\n", canon.data) < 0;
    else {
        uint64_t fp = cl_avro_fingerprint64(canon.data, canon.len);
        for (int i = 0; i < 8; i++)
            printf("%02x", (unsigned)((fp >> (8 * i)) & 0xff));
        status = printf("\n") < 0;
    }
    cl_buf_free(&text);
    cl_buf_free(&canon);
    return status;
}

/* Builds the schema set from --schema-file or --schema-dir, plus --writer-schema. */
static int load_schemas(cl_config *cfg, cl_avro_schemas **out, char *err, size_t errlen)
{
    const char *file = cl_config_str(cfg, "schema-file");
    const char *dir = cl_config_str(cfg, "schema-dir");
    int rc;
    if (!dir) dir = cl_config_str(cfg, "avro.schema.dir");
    if (file) {
        *out = cl_avro_schemas_new();
        if (!*out) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        rc = cl_avro_schemas_add_file(*out, file, 1, err, errlen);
    } else {
        rc = cl_avro_schemas_load(dir, out, err, errlen);
    }
    const char *writers = cl_config_str(cfg, "writer-schema");
    if (rc == CL_OK && writers) {
        char *list = strdup(writers), *save = NULL;
        if (!list) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        for (char *t = strtok_r(list, ",", &save); t && rc == CL_OK; t = strtok_r(NULL, ",", &save))
            rc = cl_avro_schemas_add_file(*out, t, 0, err, errlen);
        free(list);
    }
    return rc;
}

static int make_codec(cl_config *cfg, const cl_avro_schemas *set, cl_registry *reg,
                      cl_avro_codec **codec, char *err, size_t errlen)
{
    const char *record = cl_config_str(cfg, "record");
    const char *framing = cl_config_str(cfg, "framing");
    char subject[1024] = "";
    cl_avro_codec_opts o = {.registry = reg, .schema_id = (int32_t)cl_config_int(cfg, "schema-id")};
    if (strcmp(framing, "single") == 0)
        o.framing = CL_AVRO_FRAMING_SINGLE_OBJECT;
    else if (strcmp(framing, "confluent") == 0)
        o.framing = CL_AVRO_FRAMING_CONFLUENT;
    else if (strcmp(framing, "auto") != 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "--framing: '%s' is not one of single, confluent, auto", framing);
    if (cl_config_str(cfg, "subject"))
        snprintf(subject, sizeof subject, "%s", cl_config_str(cfg, "subject"));
    else if (cl_config_str(cfg, "topic"))
        snprintf(subject, sizeof subject, "%s-value", cl_config_str(cfg, "topic"));
    o.subject = subject[0] ? subject : NULL;
    if (!record) {
        int current = 0, n = 0;
        for (size_t i = 0; i < cl_avro_schemas_count(set); i++) {
            const cl_avro_schema *s = cl_avro_schemas_at(set, i, &current);
            if (current && n++ == 0) record = cl_avro_schema_name(s);
        }
        if (n != 1)
            return cl_seterr(err, errlen, CL_EINVAL, "--record is required (%d records loaded)", n);
    }
    return cl_avro_codec_new(codec, set, record, &o, err, errlen);
}

static int cmd_encode(cl_avro_codec *codec)
{
    char err[CL_ERRLEN];
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int status = 0;
    cl_buf out;
    cl_buf_init(&out, MAX_RECORD_BYTES);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        if ((size_t)n > MAX_LINE_BYTES) {
            fprintf(stderr, "closedloop-avro encode: stdin line %ld: longer than %u bytes\n",
                    lineno, MAX_LINE_BYTES);
            status = 1;
            break;
        }
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0) continue;
        json_error_t jerr;
        json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!j) {
            fprintf(stderr, "closedloop-avro encode: stdin line %ld column %d: %s\n", lineno,
                    jerr.column, jerr.text);
            status = 1;
            break;
        }
        avro_value_t *v = cl_avro_codec_value(codec);
        int rc = cl_avro_value_from_json(v, cl_avro_codec_schema(codec), j, err, sizeof err);
        json_decref(j);
        cl_buf_reset(&out);
        if (rc == CL_OK) rc = cl_avro_codec_encode(codec, v, &out, err, sizeof err);
        if (rc != CL_OK) {
            fprintf(stderr, "closedloop-avro encode: stdin line %ld: %s\n", lineno, err);
            status = 1;
            break;
        }
        uint8_t prefix[4] = {(uint8_t)(out.len >> 24), (uint8_t)(out.len >> 16),
                             (uint8_t)(out.len >> 8), (uint8_t)out.len};
        if (fwrite(prefix, 1, 4, stdout) != 4 || fwrite(out.data, 1, out.len, stdout) != out.len) {
            fprintf(stderr, "closedloop-avro encode: cannot write stdout\n");
            status = 1;
            break;
        }
    }
    free(line);
    cl_buf_free(&out);
    if (fflush(stdout) != 0) status = 1;
    return status;
}

static int cmd_decode(cl_avro_codec *codec)
{
    char err[CL_ERRLEN];
    long record = 0;
    int status = 0;
    cl_buf in;
    cl_buf_init(&in, MAX_RECORD_BYTES);
    for (;;) {
        uint8_t prefix[4];
        size_t got = fread(prefix, 1, 4, stdin);
        if (got == 0) break;
        record++;
        if (got != 4) {
            fprintf(stderr, "closedloop-avro decode: record %ld: truncated length prefix\n",
                    record);
            status = 1;
            break;
        }
        uint32_t len = ((uint32_t)prefix[0] << 24) | ((uint32_t)prefix[1] << 16) |
                       ((uint32_t)prefix[2] << 8) | prefix[3];
        if (len > MAX_RECORD_BYTES) {
            fprintf(stderr, "closedloop-avro decode: record %ld: length %" PRIu32 " exceeds %u\n",
                    record, len, MAX_RECORD_BYTES);
            status = 1;
            break;
        }
        cl_buf_reset(&in);
        char chunk[65536];
        uint32_t left = len;
        while (left > 0) {
            size_t want = left < sizeof chunk ? left : sizeof chunk;
            size_t r = fread(chunk, 1, want, stdin);
            if (r == 0 || cl_buf_append(&in, chunk, r) != CL_OK) break;
            left -= (uint32_t)r;
        }
        if (left > 0) {
            fprintf(stderr,
                    "closedloop-avro decode: record %ld: truncated (%" PRIu32 " of %" PRIu32
                    " bytes)\n",
                    record, len - left, len);
            status = 1;
            break;
        }
        avro_value_t *v;
        json_t *j = NULL;
        int rc = cl_avro_codec_decode(codec, in.data, in.len, &v, err, sizeof err);
        if (rc == CL_OK)
            rc = cl_avro_value_to_json(v, cl_avro_codec_schema(codec), &j, err, sizeof err);
        if (rc != CL_OK) {
            fprintf(stderr, "closedloop-avro decode: record %ld: %s\n", record, err);
            status = 1;
            break;
        }
        char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(j);
        if (!text || printf("%s\n", text) < 0) {
            free(text);
            status = 1;
            break;
        }
        free(text);
    }
    cl_buf_free(&in);
    if (fflush(stdout) != 0) status = 1;
    return status;
}

int main(int argc, char **argv)
{
    char err[CL_ERRLEN];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            const cl_option *const tables[] = {tool_options, cl_registry_options, NULL};
            cl_config *cfg = cl_config_new("closedloop-avro", "", tables);
            usage(stdout);
            if (cfg) cl_config_print_help(cfg, stdout);
            cl_config_free(cfg);
            return 0;
        }
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "canonical") == 0 || strcmp(cmd, "fingerprint") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: closedloop-avro %s FILE.avsc\n", cmd);
            return 2;
        }
        return cmd_schema(cmd, argv[2]);
    }
    if (strcmp(cmd, "encode") != 0 && strcmp(cmd, "decode") != 0) {
        fprintf(stderr, "closedloop-avro: unknown command '%s' (see --help)\n", cmd);
        return 2;
    }
    const cl_option *const tables[] = {tool_options, cl_registry_options, NULL};
    cl_config *cfg = cl_config_new("closedloop-avro", "Avro codec tool", tables);
    if (!cfg) {
        fprintf(stderr, "closedloop-avro: out of memory\n");
        return 1;
    }
    int rc = cl_config_load(cfg, argc - 1, argv + 1, err, sizeof err);
    if (rc == CL_ESTOP) {
        cl_config_free(cfg);
        return 0;
    }
    char **args;
    if (rc == CL_OK && cl_config_args(cfg, &args) > 0)
        rc = cl_seterr(err, sizeof err, CL_EINVAL, "unexpected argument '%s'", args[0]);
    if (rc != CL_OK) {
        fprintf(stderr, "closedloop-avro %s: %s\n", cmd, err);
        cl_config_free(cfg);
        return 2;
    }
    cl_avro_schemas *set = NULL;
    cl_registry *reg = NULL;
    cl_avro_codec *codec = NULL;
    int status = 1;
    if (load_schemas(cfg, &set, err, sizeof err) == CL_OK &&
        cl_registry_from_config(&reg, cfg, err, sizeof err) == CL_OK &&
        make_codec(cfg, set, reg, &codec, err, sizeof err) == CL_OK)
        status = strcmp(cmd, "encode") == 0 ? cmd_encode(codec) : cmd_decode(codec);
    else
        fprintf(stderr, "closedloop-avro %s: %s\n", cmd, err);
    cl_avro_codec_free(codec);
    cl_registry_free(reg);
    cl_avro_schemas_free(set);
    cl_config_free(cfg);
    return status;
}
