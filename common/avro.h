/*
 * avro.h — closedloop's one Avro codec: schemas, framing, encode, decode with
 * schema evolution.
 *
 * Every record on a closedloop topic is Avro binary inside one of two framings:
 *   - single-object encoding (no registry): C3 01 | 8-byte little-endian CRC-64-AVRO
 *     fingerprint of the writer schema's Parsing Canonical Form | datum;
 *   - Confluent wire format (schema.registry.url set): 00 | 4-byte big-endian registry
 *     schema id | datum.
 * Decoders accept both, whatever the producer was configured with.
 *
 * The module sits on avro-c 1.11 for the binary encoding and the value API, and adds
 * what avro-c lacks:
 *   - Parsing Canonical Form and the CRC-64-AVRO fingerprint (Avro spec, "Schema
 *     Fingerprints"), computed from the schema's original JSON text;
 *   - schema resolution that fills reader-only fields from their defaults. avro-c's
 *     resolver leaves them unset, but adding a field with a default is the normal way
 *     closedloop's schemas evolve. Resolution here is compiled once per writer schema
 *     into a plan (field mapping, enum symbol mapping, union branch choice, numeric
 *     promotion int->long->float->double, string<->bytes, defaults) and replayed per
 *     record;
 *   - a bounds-checking pass over every incoming datum before avro-c reads it, so
 *     hostile bytes cannot make avro-c allocate by an attacker-chosen length, loop on
 *     billions of zero-sized array items or recurse without bound. Errors name the
 *     field path and byte offset ("truncated datum: closedloop.X.amount at offset 41").
 *
 * Schemas come from a directory (config avro.schema.dir, default CL_DEFAULT_SCHEMA_DIR):
 * every DIR/ *.avsc is a current ("reader") schema, one per record full name; every
 * DIR/history/ *.avsc is an older version kept only so that data written with it
 * still decodes (matched by fingerprint). Each .avsc is self-contained (avro-c resolves
 * named types only inside one document). The original text of each file is kept,
 * because the registry must receive the defaults and logical types that avro-c drops
 * when it re-serializes a schema.
 *
 * Hot path: a cl_avro_codec owns one reusable avro-c value for encoding, one for
 * decoding, and per writer schema a cached class, value and resolution plan. No schema
 * is parsed and no class is created per record. A codec is not thread-safe; give each
 * thread its own (schema sets and registries may be shared).
 */
#ifndef CL_AVRO_H
#define CL_AVRO_H

#include <stddef.h>
#include <stdint.h>

/* avro-c's umbrella header is also called avro.h, and common/ is on the include path,
 * so `#include <avro.h>` anywhere in closedloop resolves to this file. Pull in the
 * avro-c API piece by piece instead; callers get all of it through this header. */
#include <avro/allocation.h>
#include <avro/basics.h>
#include <avro/errors.h>
#include <avro/generic.h>
#include <avro/io.h>
#include <avro/schema.h>
#include <avro/value.h>
#include <jansson.h>

#include "error.h"
#include "registry.h"
#include "util.h"

/* ---- Canonical form and fingerprint -------------------------------------------- */

/* Appends the Parsing Canonical Form of the schema JSON `text` to out. */
int cl_avro_canonical_form(const char *text, size_t len, cl_buf *out, char *err, size_t errlen);

/* CRC-64-AVRO (Rabin) fingerprint of `len` bytes; of a canonical form, it identifies
 * a schema in single-object encoding. */
uint64_t cl_avro_fingerprint64(const void *data, size_t len);

/* ---- Schemas ------------------------------------------------------------------- */

typedef struct cl_avro_schema cl_avro_schema;

/* Parses one schema document. origin names it in errors (a path, "registry id 7").
 * The top-level type must be a record. */
int cl_avro_schema_parse(const char *text, size_t len, const char *origin, cl_avro_schema **out,
                         char *err, size_t errlen);
void cl_avro_schema_free(cl_avro_schema *schema);

const char *cl_avro_schema_name(const cl_avro_schema *schema);      /* full name */
const char *cl_avro_schema_text(const cl_avro_schema *schema);      /* original text */
const char *cl_avro_schema_canonical(const cl_avro_schema *schema); /* canonical form */
uint64_t cl_avro_schema_fingerprint(const cl_avro_schema *schema);
const char *cl_avro_schema_origin(const cl_avro_schema *schema);
avro_schema_t cl_avro_schema_avro(const cl_avro_schema *schema); /* borrowed */

typedef struct cl_avro_schemas cl_avro_schemas;

/* Loads DIR/ *.avsc (current) and DIR/history/ *.avsc (older versions). Two current
 * files defining the same record, or a file that does not parse, fail the load naming
 * the file. */
int cl_avro_schemas_load(const char *dir, cl_avro_schemas **out, char *err, size_t errlen);
cl_avro_schemas *cl_avro_schemas_new(void);
/* Adds one schema file, as current or as history (writer-only). */
int cl_avro_schemas_add_file(cl_avro_schemas *set, const char *path, int current, char *err,
                             size_t errlen);
int cl_avro_schemas_add_text(cl_avro_schemas *set, const char *text, size_t len, const char *origin,
                             int current, char *err, size_t errlen);
void cl_avro_schemas_free(cl_avro_schemas *set);

/* Current schema by full name ("closedloop.OpportunitySnapshot") or, when unambiguous,
 * by short name ("OpportunitySnapshot"). NULL if none. */
const cl_avro_schema *cl_avro_schemas_find(const cl_avro_schemas *set, const char *name);
/* Any loaded schema (current or history) with this fingerprint, or NULL. */
const cl_avro_schema *cl_avro_schemas_by_fingerprint(const cl_avro_schemas *set,
                                                     uint64_t fingerprint);
size_t cl_avro_schemas_count(const cl_avro_schemas *set);
/* i < count; *current tells whether it is a current schema. */
const cl_avro_schema *cl_avro_schemas_at(const cl_avro_schemas *set, size_t i, int *current);

/* ---- Framing ------------------------------------------------------------------- */

typedef enum {
    CL_AVRO_FRAMING_AUTO = 0,          /* encode: Confluent if a registry is given */
    CL_AVRO_FRAMING_SINGLE_OBJECT = 1, /* C3 01 + fingerprint */
    CL_AVRO_FRAMING_CONFLUENT = 2,     /* 00 + schema id */
} cl_avro_framing;

#define CL_AVRO_SINGLE_OBJECT_HEADER_LEN 10
#define CL_AVRO_CONFLUENT_HEADER_LEN 5

typedef struct {
    cl_avro_framing framing;
    uint64_t fingerprint; /* single-object */
    int32_t schema_id;    /* Confluent */
    const uint8_t *datum; /* points into the input */
    size_t datum_len;
} cl_avro_frame;

/* Splits a framed message; checks only the header. */
int cl_avro_frame_parse(const void *data, size_t len, cl_avro_frame *out, char *err, size_t errlen);

/* ---- Codec --------------------------------------------------------------------- */

typedef struct {
    cl_avro_framing framing; /* AUTO: Confluent when registry != NULL */
    cl_registry *registry;   /* borrowed; NULL: no registry (Confluent input then fails
                                unless schema_id below names the codec's own schema) */
    const char *subject;     /* registry subject for encoding, "<topic>-value" (not
                                needed by a codec that only decodes) */
    int32_t schema_id;       /* > 0: use this id for Confluent encoding instead of
                                registering (and map it to the reader schema on decode) */
} cl_avro_codec_opts;

typedef struct cl_avro_codec cl_avro_codec;

/* A codec for the record `record_name` (looked up with cl_avro_schemas_find; that
 * schema is the codec's writer schema when encoding and reader schema when decoding).
 * set and the registry must outlive the codec. opts may be NULL. */
int cl_avro_codec_new(cl_avro_codec **out, const cl_avro_schemas *set, const char *record_name,
                      const cl_avro_codec_opts *opts, char *err, size_t errlen);
void cl_avro_codec_free(cl_avro_codec *codec);
const cl_avro_schema *cl_avro_codec_schema(const cl_avro_codec *codec);

/* The codec's reusable value, reset, for the caller to fill before encode. */
avro_value_t *cl_avro_codec_value(cl_avro_codec *codec);

/* Serializes `value` (a value of the codec's schema, e.g. from cl_avro_codec_value)
 * and appends the framed bytes to out. With a registry, the first call registers the
 * schema (CL_EAGAIN/CL_ETIMEOUT if the registry is unreachable: retry later). */
int cl_avro_codec_encode(cl_avro_codec *codec, avro_value_t *value, cl_buf *out, char *err,
                         size_t errlen);

/* Decodes a framed message into the codec's reader value. *out points to a value
 * owned by the codec, valid until the next decode. Errors: CL_EINVAL for bytes that
 * can never decode (empty, bad magic byte, truncated, trailing bytes, unresolvable
 * writer schema — send to the DLQ), CL_ENOTFOUND for an unknown fingerprint or
 * schema id (DLQ as well), CL_EAGAIN/CL_ETIMEOUT/CL_EIO when the registry could not
 * be reached (retry; do not DLQ). */
int cl_avro_codec_decode(cl_avro_codec *codec, const void *data, size_t len, avro_value_t **out,
                         char *err, size_t errlen);

/* Writer schema of the last successful decode (NULL before). */
const cl_avro_schema *cl_avro_codec_last_writer(const cl_avro_codec *codec);

/* ---- JSON ---------------------------------------------------------------------- */

/* Fills `value` (a value of `schema`) from JSON in Avro's JSON encoding. Unions accept
 * both the tagged form {"string": "x"} and a bare value (first branch that accepts
 * it); a missing record field takes its default. Errors name the field path. */
int cl_avro_value_from_json(avro_value_t *value, const cl_avro_schema *schema, const json_t *json,
                            char *err, size_t errlen);

/* Avro JSON encoding of `value` (unions tagged with the branch's full name, bytes as
 * code points 0..255). *out is a new reference. */
int cl_avro_value_to_json(const avro_value_t *value, const cl_avro_schema *schema, json_t **out,
                          char *err, size_t errlen);

#endif
