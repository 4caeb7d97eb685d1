/*
 * bench_avro.c — Avro encode/decode throughput of the codec, against raw avro-c.
 *
 *     bench_avro [records] [schema_dir] [record_name]
 *     (defaults: 200000 records, the build's schemas/, OpportunitySnapshot)
 *
 * The record is synthetic but full: every union takes its non-null branch, arrays hold
 * 2 items and maps 3 entries, strings are id-sized, so its size is that of a snapshot
 * carrying every optional field. Figures, one line each:
 *
 *     avro.raw_write   record=... bytes=... records_per_s=...   avro-c avro_value_write (baseline)
 *     avro.encode      framing=single|confluent ...             cl_avro_codec_encode (framing
 * included) avro.raw_read    ...                                      avro-c avro_value_read
 * (baseline) avro.decode      framing=single|confluent ...             cl_avro_codec_decode (bounds
 * check included) avro.decode_resolved record=closedloop.test.Evolve ...    old writer -> new
 * reader with defaults
 *
 * Results are not committed from here: the lead's bench harness records them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro.h"
#include "util.h"

static int fill_synthetic(avro_value_t *v, int depth);

static int fill_synthetic(avro_value_t *v, int depth)
{
    avro_value_t child;
    avro_schema_t s = avro_value_get_schema(v);
    size_t i, n;
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return avro_value_set_null(v);
    case AVRO_BOOLEAN:
        return avro_value_set_boolean(v, 1);
    case AVRO_INT32:
        return avro_value_set_int(v, 19876);
    case AVRO_INT64:
        return avro_value_set_long(v, INT64_C(1741000000000));
    case AVRO_FLOAT:
        return avro_value_set_float(v, 57.25f);
    case AVRO_DOUBLE:
        return avro_value_set_double(v, 64.125);
    case AVRO_STRING:
        return avro_value_set_string(v, "0065g00000AbCdEfGH");
    case AVRO_BYTES:
        return avro_value_set_bytes(v, "0123456789abcdef", 16);
    case AVRO_FIXED: {
        char buf[256] = {0};
        int64_t size = avro_schema_fixed_size(s);
        return avro_value_set_fixed(v, buf, (size_t)(size < 256 ? size : 256));
    }
    case AVRO_ENUM:
        return avro_value_set_enum(v, 0);
    case AVRO_RECORD:
        if (avro_value_get_size(v, &n)) return -1;
        for (i = 0; i < n; i++)
            if (avro_value_get_by_index(v, i, &child, NULL) || fill_synthetic(&child, depth + 1))
                return -1;
        return 0;
    case AVRO_ARRAY:
        for (i = 0; depth < 6 && i < 2; i++)
            if (avro_value_append(v, &child, NULL) || fill_synthetic(&child, depth + 1)) return -1;
        return 0;
    case AVRO_MAP:
        for (i = 0; depth < 6 && i < 3; i++) {
            char key[16];
            snprintf(key, sizeof key, "key_%zu", i);
            if (avro_value_add(v, key, &child, NULL, NULL) || fill_synthetic(&child, depth + 1))
                return -1;
        }
        return 0;
    case AVRO_UNION: {
        size_t nb = avro_schema_union_size(s), pick = 0;
        for (i = 0; i < nb; i++)
            if (!is_avro_null(avro_schema_union_branch(s, (int)i))) {
                pick = i;
                break;
            }
        if (depth >= 6) /* recursive schemas: stop at a null branch if there is one */
            for (i = 0; i < nb; i++)
                if (is_avro_null(avro_schema_union_branch(s, (int)i))) pick = i;
        if (avro_value_set_branch(v, (int)pick, &child)) return -1;
        return fill_synthetic(&child, depth + 1);
    }
    default:
        return -1;
    }
}

static double rate(uint64_t n, int64_t ns)
{
    return ns > 0 ? (double)n * 1e9 / (double)ns : 0.0;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_avro: %s: %s\n", what, err);
    exit(1);
}

static void bench_codec(cl_avro_codec *c, const char *framing, uint64_t n)
{
    char err[CL_ERRLEN];
    const char *name = cl_avro_schema_name(cl_avro_codec_schema(c));
    avro_value_t *v = cl_avro_codec_value(c);
    if (fill_synthetic(v, 0) != 0) die("fill", avro_strerror());
    cl_buf out;
    cl_buf_init(&out, 0);
    int64_t t0 = cl_mono_ns();
    for (uint64_t i = 0; i < n; i++) {
        cl_buf_reset(&out);
        if (cl_avro_codec_encode(c, v, &out, err, sizeof err) != CL_OK) die("encode", err);
    }
    int64_t t1 = cl_mono_ns();
    printf("avro.encode record=%s framing=%s bytes=%zu records=%" PRIu64 " records_per_s=%.0f\n",
           name, framing, out.len, n, rate(n, t1 - t0));
    avro_value_t *got;
    t0 = cl_mono_ns();
    for (uint64_t i = 0; i < n; i++)
        if (cl_avro_codec_decode(c, out.data, out.len, &got, err, sizeof err) != CL_OK)
            die("decode", err);
    t1 = cl_mono_ns();
    printf("avro.decode record=%s framing=%s bytes=%zu records=%" PRIu64 " records_per_s=%.0f\n",
           name, framing, out.len, n, rate(n, t1 - t0));
    cl_buf_free(&out);
}

static void bench_raw(const cl_avro_schema *schema, uint64_t n)
{
    avro_value_iface_t *iface = avro_generic_class_from_schema(cl_avro_schema_avro(schema));
    avro_value_t v, r;
    size_t size;
    if (!iface || avro_generic_value_new(iface, &v) || avro_generic_value_new(iface, &r) ||
        fill_synthetic(&v, 0) || avro_value_sizeof(&v, &size))
        die("raw setup", avro_strerror());
    char *buf = malloc(size);
    avro_writer_t w = avro_writer_memory(buf, (int64_t)size);
    avro_reader_t rd = avro_reader_memory(buf, (int64_t)size);
    int64_t t0 = cl_mono_ns();
    for (uint64_t i = 0; i < n; i++) {
        avro_writer_reset(w);
        if (avro_value_write(w, &v)) die("raw write", avro_strerror());
    }
    int64_t t1 = cl_mono_ns();
    printf("avro.raw_write record=%s bytes=%zu records=%" PRIu64 " records_per_s=%.0f\n",
           cl_avro_schema_name(schema), size, n, rate(n, t1 - t0));
    t0 = cl_mono_ns();
    for (uint64_t i = 0; i < n; i++) {
        avro_reader_memory_set_source(rd, buf, (int64_t)size);
        avro_value_reset(&r);
        if (avro_value_read(rd, &r)) die("raw read", avro_strerror());
    }
    t1 = cl_mono_ns();
    printf("avro.raw_read record=%s bytes=%zu records=%" PRIu64 " records_per_s=%.0f\n",
           cl_avro_schema_name(schema), size, n, rate(n, t1 - t0));
    avro_reader_free(rd);
    avro_writer_free(w);
    free(buf);
    avro_value_decref(&v);
    avro_value_decref(&r);
    avro_value_iface_decref(iface);
}

/* Old writer -> new reader, with the test schemas (v1 in history/). */
static void bench_resolved(uint64_t n)
{
    char err[CL_ERRLEN], dir[4200], v1[4300];
    snprintf(dir, sizeof dir, "%s/../tests/data/avro/evolve", CL_DEFAULT_SCHEMA_DIR);
    snprintf(v1, sizeof v1, "%s/history/Evolve.v1.avsc", dir);
    cl_avro_schemas *set, *old = cl_avro_schemas_new();
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK ||
        cl_avro_schemas_add_file(old, v1, 1, err, sizeof err) != CL_OK)
        die("evolve schemas", err);
    cl_avro_codec *w, *r;
    if (cl_avro_codec_new(&w, old, "Evolve", NULL, err, sizeof err) != CL_OK ||
        cl_avro_codec_new(&r, set, "Evolve", NULL, err, sizeof err) != CL_OK)
        die("evolve codecs", err);
    avro_value_t *v = cl_avro_codec_value(w), *got;
    cl_buf out;
    cl_buf_init(&out, 0);
    if (fill_synthetic(v, 0) || cl_avro_codec_encode(w, v, &out, err, sizeof err) != CL_OK)
        die("evolve encode", err);
    int64_t t0 = cl_mono_ns();
    for (uint64_t i = 0; i < n; i++)
        if (cl_avro_codec_decode(r, out.data, out.len, &got, err, sizeof err) != CL_OK)
            die("evolve decode", err);
    int64_t t1 = cl_mono_ns();
    printf("avro.decode_resolved record=closedloop.test.Evolve bytes=%zu records=%" PRIu64
           " records_per_s=%.0f\n",
           out.len, n, rate(n, t1 - t0));
    cl_buf_free(&out);
    cl_avro_codec_free(w);
    cl_avro_codec_free(r);
    cl_avro_schemas_free(set);
    cl_avro_schemas_free(old);
}

int main(int argc, char **argv)
{
    char err[CL_ERRLEN];
    int64_t n = 200000;
    if (argc > 1 && (cl_parse_int64(argv[1], &n) != CL_OK || n <= 0)) {
        fprintf(stderr, "usage: bench_avro [records] [schema_dir] [record_name]\n");
        return 2;
    }
    const char *dir = argc > 2 ? argv[2] : CL_DEFAULT_SCHEMA_DIR;
    const char *record = argc > 3 ? argv[3] : "OpportunitySnapshot";
    cl_avro_schemas *set;
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK) die("schemas", err);
    const cl_avro_schema *schema = cl_avro_schemas_find(set, record);
    if (!schema) die(record, "no such record in the schema directory");
    bench_raw(schema, (uint64_t)n);
    cl_avro_codec *single, *confluent;
    cl_avro_codec_opts co = {.framing = CL_AVRO_FRAMING_CONFLUENT, .schema_id = 1};
    if (cl_avro_codec_new(&single, set, record, NULL, err, sizeof err) != CL_OK ||
        cl_avro_codec_new(&confluent, set, record, &co, err, sizeof err) != CL_OK)
        die("codec", err);
    bench_codec(single, "single", (uint64_t)n);
    bench_codec(confluent, "confluent", (uint64_t)n);
    bench_resolved((uint64_t)n);
    cl_avro_codec_free(single);
    cl_avro_codec_free(confluent);
    cl_avro_schemas_free(set);
    return 0;
}
