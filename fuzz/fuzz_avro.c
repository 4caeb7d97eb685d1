/*
 * fuzz_avro.c — arbitrary bytes into the Avro decoder, in both framings, and into the
 * schema parser (schemas arrive from the registry, so their text is hostile too).
 *
 * Input layout: byte 0 picks the target, the rest is the message.
 *   selector % (ncodecs + 1) == ncodecs : the rest is schema JSON (parse + canonical form)
 *   otherwise                           : the rest is a Kafka message value for codec i
 * Codecs: the evolving test record (v2 reader, v1 in history, so resolution with defaults
 * runs), a recursive record, and every record in schemas/. Confluent ids 1..n map to the
 * codecs' own schemas, so both framings reach the datum decoder without a registry.
 *
 * Invariants checked beyond "no crash": a decoded value converts to JSON and re-encodes,
 * and the re-encoded message decodes again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"

#define MAX_CODECS 16

static cl_avro_schemas *sets[MAX_CODECS];
static cl_avro_codec *codecs[MAX_CODECS];
static int ncodecs;
static cl_buf reencoded;

static const char *RECURSIVE =
    "{\"type\":\"record\",\"name\":\"L\",\"namespace\":\"f\",\"fields\":["
    "{\"name\":\"v\",\"type\":\"long\"},{\"name\":\"next\",\"type\":[\"null\",\"L\"]},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"bytes\",\"float\"]}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"X\",\"size\":3}}]}";

static void add_codec(cl_avro_schemas *set, const char *name)
{
    char err[CL_ERRLEN];
    if (ncodecs >= MAX_CODECS) return;
    cl_avro_codec_opts o = {.schema_id = ncodecs + 1, .framing = CL_AVRO_FRAMING_SINGLE_OBJECT};
    if (cl_avro_codec_new(&codecs[ncodecs], set, name, &o, err, sizeof err) != CL_OK) {
        fprintf(stderr, "fuzz_avro: %s\n", err);
        abort();
    }
    ncodecs++;
}

/* avro-c's generic values keep their storage behind pointers LeakSanitizer cannot
 * follow, so state that lives for the whole run is freed explicitly at exit (this
 * handler runs before LSan's own, which was registered earlier). */
static void cleanup(void)
{
    for (int i = 0; i < ncodecs; i++)
        cl_avro_codec_free(codecs[i]);
    for (int i = 0; i < MAX_CODECS; i++)
        cl_avro_schemas_free(sets[i]);
    cl_buf_free(&reencoded);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CL_ERRLEN], dir[4096];
    int nsets = 0;
    snprintf(dir, sizeof dir, "%s/tests/data/avro/evolve", CL_FUZZ_SOURCE_DIR);
    if (cl_avro_schemas_load(dir, &sets[nsets], err, sizeof err) != CL_OK) {
        fprintf(stderr, "fuzz_avro: %s\n", err);
        abort();
    }
    add_codec(sets[nsets++], "Evolve");
    sets[nsets] = cl_avro_schemas_new();
    if (!sets[nsets] || cl_avro_schemas_add_text(sets[nsets], RECURSIVE, strlen(RECURSIVE),
                                                 "recursive", 1, err, sizeof err) != CL_OK)
        abort();
    add_codec(sets[nsets++], "f.L");
    snprintf(dir, sizeof dir, "%s/schemas", CL_FUZZ_SOURCE_DIR);
    if (cl_avro_schemas_load(dir, &sets[nsets], err, sizeof err) == CL_OK) {
        for (size_t i = 0; i < cl_avro_schemas_count(sets[nsets]); i++) {
            int current;
            const cl_avro_schema *s = cl_avro_schemas_at(sets[nsets], i, &current);
            if (current) add_codec(sets[nsets], cl_avro_schema_name(s));
        }
        nsets++;
    }
    cl_buf_init(&reencoded, 0);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CL_ERRLEN];
    if (size == 0) return 0;
    int target = data[0] % (ncodecs + 1);
    data++;
    size--;
    if (target == ncodecs) {
        cl_avro_schema *s;
        if (cl_avro_schema_parse((const char *)data, size, "fuzz", &s, err, sizeof err) == CL_OK)
            cl_avro_schema_free(s);
        return 0;
    }
    cl_avro_codec *c = codecs[target];
    avro_value_t *v;
    if (cl_avro_codec_decode(c, data, size, &v, err, sizeof err) != CL_OK) return 0;
    json_t *j;
    if (cl_avro_value_to_json(v, cl_avro_codec_schema(c), &j, err, sizeof err) == CL_OK)
        json_decref(j); /* may fail only on strings that are not UTF-8 */
    cl_buf_reset(&reencoded);
    if (cl_avro_codec_encode(c, v, &reencoded, err, sizeof err) != CL_OK) {
        fprintf(stderr, "fuzz_avro: decoded value does not re-encode: %s\n", err);
        abort();
    }
    if (cl_avro_codec_decode(c, reencoded.data, reencoded.len, &v, err, sizeof err) != CL_OK) {
        fprintf(stderr, "fuzz_avro: re-encoded value does not decode: %s\n", err);
        abort();
    }
    return 0;
}
