/*
 * test_avro.c — the Avro codec: fingerprints, canonical form, schema sets, framing,
 * encode/decode round trips, evolution with defaults, and the errors hostile bytes get.
 * (Agreement with an independent implementation is in tests/interop/test_avro_fastavro.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "avro.h"

static char data_dir[4096];

static int setup_paths(void **state)
{
    const char *src = getenv("CL_SOURCE_DIR");
    snprintf(data_dir, sizeof data_dir, "%s/tests/data/avro", src ? src : ".");
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

static cl_avro_schemas *set_of(const char *text, const char *history_text)
{
    char err[CL_ERRLEN];
    cl_avro_schemas *set = cl_avro_schemas_new();
    assert_non_null(set);
    if (cl_avro_schemas_add_text(set, text, strlen(text), "inline", 1, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    if (history_text && cl_avro_schemas_add_text(set, history_text, strlen(history_text),
                                                 "inline-history", 0, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    return set;
}

static cl_avro_codec *codec_of(const cl_avro_schemas *set, const char *name,
                               const cl_avro_codec_opts *o)
{
    char err[CL_ERRLEN];
    cl_avro_codec *c;
    if (cl_avro_codec_new(&c, set, name, o, err, sizeof err) != CL_OK) fail_msg("%s", err);
    return c;
}

/* JSON text -> framed message appended to out. */
static void encode_json(cl_avro_codec *c, const char *json, cl_buf *out)
{
    char err[CL_ERRLEN];
    json_error_t jerr;
    json_t *j = json_loads(json, JSON_ALLOW_NUL, &jerr);
    if (!j) fail_msg("bad test JSON: %s", jerr.text);
    avro_value_t *v = cl_avro_codec_value(c);
    if (cl_avro_value_from_json(v, cl_avro_codec_schema(c), j, err, sizeof err) != CL_OK)
        fail_msg("from_json: %s", err);
    json_decref(j);
    if (cl_avro_codec_encode(c, v, out, err, sizeof err) != CL_OK) fail_msg("encode: %s", err);
}

/* Decodes and returns the compact JSON (caller frees), or NULL with err filled. */
static char *decode_json(cl_avro_codec *c, const void *data, size_t len, int *rc_out, char *err,
                         size_t errlen)
{
    avro_value_t *v;
    json_t *j;
    int rc = cl_avro_codec_decode(c, data, len, &v, err, errlen);
    if (rc_out) *rc_out = rc;
    if (rc != CL_OK) return NULL;
    if (cl_avro_value_to_json(v, cl_avro_codec_schema(c), &j, err, errlen) != CL_OK)
        fail_msg("to_json: %s", err);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void assert_json_equal(const char *got, const char *want)
{
    json_t *a = json_loads(got, JSON_ALLOW_NUL, NULL), *b = json_loads(want, JSON_ALLOW_NUL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b)) fail_msg("JSON differs:\n got: %s\nwant: %s", got, want);
    json_decref(a);
    json_decref(b);
}

/* ---- fingerprints and canonical form --------------------------------------------- */

static void test_fingerprint_reference_values(void **state)
{
    /* Avro spec: the empty input gives the algorithm's EMPTY constant. */
    assert_true(cl_avro_fingerprint64("", 0) == 0xc15d213aa4d7a795ULL);
    /* "int" (fastavro / Java SchemaNormalization agree: 8f5c393f1ad57572 little-endian) */
    assert_true(cl_avro_fingerprint64("\"int\"", 5) == 0x7275d51a3f395c8fULL);
}

static void test_canonical_form(void **state)
{
    const char *text =
        "{ \"type\": \"record\", \"namespace\": \"a.b\", \"name\": \"R\", \"doc\": \"x\","
        "  \"aliases\": [\"Old\"], \"fields\": ["
        "   {\"type\": {\"type\": \"int\", \"logicalType\": \"date\"}, \"name\": \"d\", "
        "    \"default\": 0, \"order\": \"descending\"},"
        "   {\"name\": \"e\", \"type\": {\"type\": \"enum\", \"name\": \"E\", \"namespace\": \"c\","
        "    \"symbols\": [\"X\", \"Y\"], \"default\": \"X\"}},"
        "   {\"name\": \"f\", \"type\": [\"null\", \"R\", \"c.E\"]},"
        "   {\"name\": \"g\", \"type\": {\"type\": \"map\", \"values\": {\"type\": \"array\","
        "    \"items\": {\"type\": \"fixed\", \"size\": 2, \"name\": \"F\"}}}}"
        "]}";
    const char *want =
        "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":["
        "{\"name\":\"d\",\"type\":\"int\"},"
        "{\"name\":\"e\",\"type\":{\"name\":\"c.E\",\"type\":\"enum\",\"symbols\":[\"X\",\"Y\"]}},"
        "{\"name\":\"f\",\"type\":[\"null\",\"a.b.R\",\"c.E\"]},"
        "{\"name\":\"g\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":"
        "{\"name\":\"a.b.F\",\"type\":\"fixed\",\"size\":2}}}}]}";
    char err[CL_ERRLEN];
    cl_buf out;
    cl_buf_init(&out, 0);
    assert_int_equal(cl_avro_canonical_form(text, strlen(text), &out, err, sizeof err), CL_OK);
    assert_string_equal(out.data, want);
    cl_buf_free(&out);
}

static void test_invalid_schemas_are_rejected_with_reason(void **state)
{
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"{\"type\": \"record\"", "invalid JSON"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"Nope\"}]}",
         "unknown type 'Nope'"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
         "{\"name\":\"a\",\"type\":\"int\"}]}",
         "field 'a' appears twice"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":[\"int\","
         "[\"null\"]]}]}",
         "a union may not contain a union"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":[\"int\","
         "\"int\"]}]}",
         "two branches of type int"},
        {"{\"type\":\"record\",\"name\":\"1R\",\"fields\":[]}", "valid \"name\""},
        {"{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"]}", "must be a record"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"e\",\"type\":{\"type\":"
         "\"enum\",\"name\":\"E\",\"symbols\":[\"A\"],\"default\":\"B\"}}]}",
         "not one of its symbols"},
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[],\"fields\":[]}", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[CL_ERRLEN] = "";
        cl_avro_schema *s = NULL;
        int rc = cl_avro_schema_parse(cases[i].text, strlen(cases[i].text), "case.avsc", &s, err,
                                      sizeof err);
        assert_int_equal(rc, CL_EINVAL);
        assert_null(s);
        if (!strstr(err, cases[i].reason) || !strstr(err, "case.avsc"))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].reason);
    }
}

static void test_deeply_nested_schema_is_rejected(void **state)
{
    cl_buf b;
    cl_buf_init(&b, 0);
    for (int i = 0; i < 200; i++)
        cl_buf_printf(&b, "{\"type\":\"array\",\"items\":");
    cl_buf_printf(&b, "\"int\"");
    for (int i = 0; i < 200; i++)
        cl_buf_printf(&b, "}");
    char err[CL_ERRLEN];
    cl_avro_schema *s;
    assert_int_equal(cl_avro_schema_parse(b.data, b.len, "deep", &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "nested deeper"));
    cl_buf_free(&b);
}

/* ---- schema sets ------------------------------------------------------------------- */

static void test_load_dir_with_history(void **state)
{
    char dir[4200], err[CL_ERRLEN];
    snprintf(dir, sizeof dir, "%s/evolve", data_dir);
    cl_avro_schemas *set;
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK) fail_msg("%s", err);
    assert_int_equal(cl_avro_schemas_count(set), 2);
    const cl_avro_schema *cur = cl_avro_schemas_find(set, "closedloop.test.Evolve");
    assert_non_null(cur);
    assert_ptr_equal(cl_avro_schemas_find(set, "Evolve"), cur);
    assert_null(cl_avro_schemas_find(set, "Nope"));
    assert_non_null(strstr(cl_avro_schema_origin(cur), "evolve/Evolve.avsc"));
    /* the original text is kept verbatim (defaults and docs included) */
    assert_non_null(strstr(cl_avro_schema_text(cur), "\"default\": \"n/a\""));
    int current = -1;
    const cl_avro_schema *old = NULL;
    for (size_t i = 0; i < cl_avro_schemas_count(set); i++) {
        const cl_avro_schema *s = cl_avro_schemas_at(set, i, &current);
        if (!current) old = s;
    }
    assert_non_null(old);
    assert_ptr_equal(cl_avro_schemas_by_fingerprint(set, cl_avro_schema_fingerprint(old)), old);
    assert_true(cl_avro_schema_fingerprint(old) != cl_avro_schema_fingerprint(cur));
    assert_non_null(cl_avro_schema_avro(cur));
    cl_avro_schemas_free(set);
}

static void test_load_errors_name_the_file(void **state)
{
    char err[CL_ERRLEN];
    cl_avro_schemas *set;
    assert_int_equal(cl_avro_schemas_load("/nonexistent/schemas", &set, err, sizeof err), CL_EIO);
    assert_non_null(strstr(err, "/nonexistent/schemas"));

    char tmpl[] = "/tmp/cl_avro_test_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/A.avsc", tmpl);
    snprintf(b, sizeof b, "%s/B.avsc", tmpl);
    const char *rec = "{\"type\":\"record\",\"name\":\"x.Same\",\"fields\":[]}";
    FILE *f = fopen(a, "w");
    fputs(rec, f);
    fclose(f);
    f = fopen(b, "w");
    fputs(rec, f);
    fclose(f);
    assert_int_equal(cl_avro_schemas_load(tmpl, &set, err, sizeof err), CL_ECONFLICT);
    assert_non_null(strstr(err, "B.avsc"));
    assert_non_null(strstr(err, "x.Same"));
    f = fopen(b, "w");
    fputs("{not json", f);
    fclose(f);
    assert_int_equal(cl_avro_schemas_load(tmpl, &set, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "B.avsc"));
    unlink(a);
    unlink(b);
    rmdir(tmpl);
}

/* ---- round trips ------------------------------------------------------------------- */

static const char *ALL_TYPES =
    "{\"type\":\"record\",\"name\":\"All\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"n\",\"type\":\"null\"},{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"by\",\"type\":\"bytes\"},{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":3}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
    "{\"name\":\"u\",\"type\":[\"null\",\"string\",\"E\"]},"
    "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":\"In\",\"fields\":["
    "  {\"name\":\"x\",\"type\":\"int\"}]}}"
    "]}";

static const char *ALL_VALUE =
    "{\"n\":null,\"b\":true,\"i\":-2147483648,\"l\":9223372036854775807,\"f\":0.5,"
    "\"d\":-1e300,\"by\":\"\\u00ff\\u0000a\",\"s\":\"h\\u00e9llo\",\"e\":\"B\",\"fx\":\"abc\","
    "\"a\":[1,-2,3],\"m\":{\"k\":\"v\"},\"u\":{\"t.E\":\"A\"},\"r\":{\"x\":7}}";

static void test_round_trip_single_object(void **state)
{
    cl_avro_schemas *set = set_of(ALL_TYPES, NULL);
    cl_avro_codec *c = codec_of(set, "All", NULL);
    cl_buf out;
    cl_buf_init(&out, 0);
    encode_json(c, ALL_VALUE, &out);
    const uint8_t *p = (const uint8_t *)out.data;
    assert_int_equal(p[0], 0xC3);
    assert_int_equal(p[1], 0x01);
    uint64_t fp = 0;
    for (int i = 0; i < 8; i++)
        fp |= (uint64_t)p[2 + i] << (8 * i);
    assert_true(fp == cl_avro_schema_fingerprint(cl_avro_codec_schema(c)));
    char err[CL_ERRLEN];
    char *got = decode_json(c, out.data, out.len, NULL, err, sizeof err);
    if (!got) fail_msg("%s", err);
    assert_json_equal(got, ALL_VALUE);
    assert_ptr_equal(cl_avro_codec_last_writer(c), cl_avro_codec_schema(c));
    free(got);
    cl_buf_free(&out);
    cl_avro_codec_free(c);
    cl_avro_schemas_free(set);
}

static void test_round_trip_confluent_with_fixed_id(void **state)
{
    cl_avro_schemas *set = set_of(ALL_TYPES, NULL);
    cl_avro_codec_opts o = {.framing = CL_AVRO_FRAMING_CONFLUENT, .schema_id = 258};
    cl_avro_codec *c = codec_of(set, "t.All", &o);
    cl_buf out;
    cl_buf_init(&out, 0);
    encode_json(c, ALL_VALUE, &out);
    assert_memory_equal(out.data, "\x00\x00\x00\x01\x02", 5);
    char err[CL_ERRLEN];
    char *got = decode_json(c, out.data, out.len, NULL, err, sizeof err);
    if (!got) fail_msg("%s", err);
    assert_json_equal(got, ALL_VALUE);
    free(got);

    /* another id, no registry: unknown */
    out.data[4] = 3;
    int rc;
    assert_null(decode_json(c, out.data, out.len, &rc, err, sizeof err));
    assert_int_equal(rc, CL_ENOTFOUND);
    assert_non_null(strstr(err, "schema id 259 is unknown"));

    /* a single-object codec decodes Confluent input it knows, and vice versa */
    cl_avro_codec *single = codec_of(set, "All", NULL);
    cl_buf_reset(&out);
    encode_json(single, ALL_VALUE, &out);
    got = decode_json(c, out.data, out.len, NULL, err, sizeof err);
    if (!got) fail_msg("%s", err);
    free(got);
    cl_buf_free(&out);
    cl_avro_codec_free(single);
    cl_avro_codec_free(c);
    cl_avro_schemas_free(set);
}

static void test_reused_value_is_reset_between_records(void **state)
{
    cl_avro_schemas *set = set_of(ALL_TYPES, NULL);
    cl_avro_codec *c = codec_of(set, "All", NULL);
    const char *second = "{\"n\":null,\"b\":false,\"i\":1,\"l\":2,\"f\":1.0,\"d\":2.0,\"by\":\"\","
                         "\"s\":\"\",\"e\":\"A\","
                         "\"fx\":\"xyz\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":0}}";
    cl_buf one, two;
    cl_buf_init(&one, 0);
    cl_buf_init(&two, 0);
    encode_json(c, ALL_VALUE, &one);
    encode_json(c, second, &two);
    char err[CL_ERRLEN];
    for (int round = 0; round < 3; round++) {
        char *a = decode_json(c, one.data, one.len, NULL, err, sizeof err);
        char *b = decode_json(c, two.data, two.len, NULL, err, sizeof err);
        assert_non_null(a);
        assert_non_null(b);
        assert_json_equal(a, ALL_VALUE);
        assert_json_equal(b, second);
        free(a);
        free(b);
    }
    cl_buf_free(&one);
    cl_buf_free(&two);
    cl_avro_codec_free(c);
    cl_avro_schemas_free(set);
}

/* ---- evolution -------------------------------------------------------------------- */

static void test_old_data_through_new_schema_gets_defaults(void **state)
{
    char dir[4200], v1[4300], err[CL_ERRLEN];
    snprintf(dir, sizeof dir, "%s/evolve", data_dir);
    snprintf(v1, sizeof v1, "%s/evolve/history/Evolve.v1.avsc", data_dir);
    cl_avro_schemas *set, *old_set = cl_avro_schemas_new();
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK ||
        cl_avro_schemas_add_file(old_set, v1, 1, err, sizeof err) != CL_OK)
        fail_msg("%s", err);
    cl_avro_codec *writer = codec_of(old_set, "Evolve", NULL);
    cl_avro_codec *reader = codec_of(set, "Evolve", NULL);
    const char *v1_record =
        "{\"id\":\"o1\",\"count\":3,\"ratio\":0.5,\"amount\":12,\"payload\":\"pay\","
        "\"blob\":\"bl\",\"color\":\"PURPLE\",\"maybe\":{\"int\":4},\"either\":{\"long\":5},"
        "\"tags\":[\"t\"],\"scores\":{\"s\":2},\"removed\":\"gone\",\"nested\":{\"a\":1},"
        "\"inners\":[{\"a\":2}],\"ts\":1700000000000,\"day\":19000,\"old_name\":\"renamed\"}";
    const char *want =
        "{\"id\":\"o1\",\"count\":3,\"ratio\":0.5,\"amount\":12.0,\"payload\":\"pay\","
        "\"blob\":\"bl\",\"color\":\"RED\",\"maybe\":{\"long\":4},\"either\":{\"double\":5.0},"
        "\"tags\":[\"t\"],\"scores\":{\"s\":2.0},\"nested\":{\"a\":1,\"b\":\"b-default\"},"
        "\"inners\":[{\"a\":2,\"b\":\"b-default\"}],\"ts\":1700000000000,\"day\":19000,"
        "\"new_name\":\"renamed\",\"note\":\"n/a\",\"opt\":null,\"opt_first\":{\"string\":"
        "\"first-branch\"},\"level\":\"MID\",\"list\":[1,2,3],\"attrs\":{\"x\":1.5,\"y\":2.0},"
        "\"extra\":{\"x\":7,\"y\":null,\"z\":[{\"a\":1,\"b\":\"b-default\"}]},\"flag\":true,"
        "\"bin\":\"\\u00ff\\u0001A\",\"fx\":\"ab\",\"weight\":1.0,\"small\":0.25,"
        "\"big\":9007199254740993}";
    cl_buf out;
    cl_buf_init(&out, 0);
    encode_json(writer, v1_record, &out);
    for (int round = 0; round < 2; round++) { /* the second decode uses the cached plan */
        char *got = decode_json(reader, out.data, out.len, NULL, err, sizeof err);
        if (!got) fail_msg("%s", err);
        assert_json_equal(got, want);
        free(got);
    }
    assert_true(cl_avro_schema_fingerprint(cl_avro_codec_last_writer(reader)) ==
                cl_avro_schema_fingerprint(cl_avro_codec_schema(writer)));
    cl_buf_free(&out);
    cl_avro_codec_free(writer);
    cl_avro_codec_free(reader);
    cl_avro_schemas_free(set);
    cl_avro_schemas_free(old_set);
}

static void test_enum_symbol_without_reader_default_fails_naming_it(void **state)
{
    const char *w = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"e\",\"type\":"
                    "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\",\"C\"]}}]}";
    const char *r = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"e\",\"type\":"
                    "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}}]}";
    cl_avro_schemas *wset = set_of(w, NULL), *rset = set_of(r, w);
    cl_avro_codec *wc = codec_of(wset, "R", NULL), *rc = codec_of(rset, "R", NULL);
    cl_buf out;
    cl_buf_init(&out, 0);
    encode_json(wc, "{\"e\":\"B\"}", &out);
    char err[CL_ERRLEN];
    char *got = decode_json(rc, out.data, out.len, NULL, err, sizeof err);
    assert_non_null(got);
    assert_json_equal(got, "{\"e\":\"B\"}");
    free(got);
    cl_buf_reset(&out);
    encode_json(wc, "{\"e\":\"C\"}", &out);
    int status;
    assert_null(decode_json(rc, out.data, out.len, &status, err, sizeof err));
    assert_int_equal(status, CL_EINVAL);
    assert_non_null(strstr(err, "symbol 'C'"));
    assert_non_null(strstr(err, "e:"));
    cl_buf_free(&out);
    cl_avro_codec_free(wc);
    cl_avro_codec_free(rc);
    cl_avro_schemas_free(wset);
    cl_avro_schemas_free(rset);
}

static void test_invalid_default_is_reported_at_resolution(void **state)
{
    const char *w =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
    const char *r =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
        "{\"name\":\"b\",\"type\":\"int\",\"default\":\"not a number\"}]}";
    cl_avro_schemas *wset = set_of(w, NULL), *rset = set_of(r, w);
    cl_avro_codec *wc = codec_of(wset, "R", NULL), *rc = codec_of(rset, "R", NULL);
    cl_buf out;
    cl_buf_init(&out, 0);
    encode_json(wc, "{\"a\":1}", &out);
    char err[CL_ERRLEN];
    int status;
    assert_null(decode_json(rc, out.data, out.len, &status, err, sizeof err));
    assert_int_equal(status, CL_EINVAL);
    assert_non_null(strstr(err, "R.b: invalid default"));
    cl_buf_free(&out);
    cl_avro_codec_free(wc);
    cl_avro_codec_free(rc);
    cl_avro_schemas_free(wset);
    cl_avro_schemas_free(rset);
}

/* ---- hostile input ----------------------------------------------------------------- */

static const char *LIST =
    "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"
    "{\"name\":\"next\",\"type\":[\"null\",\"L\"]},"
    "{\"name\":\"nulls\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
    "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"]}}]}";

static void expect_decode_error(cl_avro_codec *c, const uint8_t *datum, size_t len,
                                const char *reason)
{
    uint8_t msg[4096];
    uint64_t fp = cl_avro_schema_fingerprint(cl_avro_codec_schema(c));
    msg[0] = 0xC3;
    msg[1] = 0x01;
    for (int i = 0; i < 8; i++)
        msg[2 + i] = (uint8_t)(fp >> (8 * i));
    assert_true(len + 10 <= sizeof msg);
    memcpy(msg + 10, datum, len);
    char err[CL_ERRLEN];
    int rc;
    assert_null(decode_json(c, msg, len + 10, &rc, err, sizeof err));
    assert_int_equal(rc, CL_EINVAL);
    if (!strstr(err, reason)) fail_msg("'%s' does not say '%s'", err, reason);
}

static void test_hostile_datums(void **state)
{
    cl_avro_schemas *set = set_of(LIST, NULL);
    cl_avro_codec *c = codec_of(set, "L", NULL);
    /* v=1, next=null, nulls=[], s="", i=0, e=A */
    const uint8_t good[] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x00};
    char err[CL_ERRLEN];
    uint8_t msg[64] = {0xC3, 0x01};
    uint64_t fp = cl_avro_schema_fingerprint(cl_avro_codec_schema(c));
    for (int i = 0; i < 8; i++)
        msg[2 + i] = (uint8_t)(fp >> (8 * i));
    memcpy(msg + 10, good, sizeof good);
    char *ok = decode_json(c, msg, 10 + sizeof good, NULL, err, sizeof err);
    if (!ok) fail_msg("%s", err);
    free(ok);

    expect_decode_error(c, good, sizeof good - 1, "truncated datum");
    const uint8_t trailing[] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    expect_decode_error(c, trailing, sizeof trailing, "trailing bytes");
    /* string length 2^40 with 0 bytes behind it: never allocated */
    const uint8_t huge_string[] = {0x02, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
    expect_decode_error(c, huge_string, sizeof huge_string, "truncated datum (string of");
    /* array of 2^62 nulls (zero bytes each) */
    const uint8_t many_nulls[] = {0x02, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x00};
    expect_decode_error(c, many_nulls, sizeof many_nulls, "too many array/map items");
    const uint8_t bad_union[] = {0x02, 0x04, 0x00, 0x00, 0x00, 0x00};
    expect_decode_error(c, bad_union, sizeof bad_union, "union branch index out of range");
    const uint8_t bad_enum[] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
    expect_decode_error(c, bad_enum, sizeof bad_enum, "enum index out of range");
    const uint8_t big_int[] = {0x02, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00};
    expect_decode_error(c, big_int, sizeof big_int, "int out of 32-bit range");
    const uint8_t long_varint[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x01};
    expect_decode_error(c, long_varint, sizeof long_varint, "varint");
    /* a list nested 1000 deep */
    uint8_t deep[3000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        deep[n++] = 0x02; /* v */
        deep[n++] = 0x02; /* next: branch L */
    }
    expect_decode_error(c, deep, n, "nested too deeply");

    /* framing errors */
    int rc;
    assert_null(decode_json(c, "", 0, &rc, err, sizeof err));
    assert_non_null(strstr(err, "empty message"));
    assert_null(decode_json(c, "\x7b", 1, &rc, err, sizeof err));
    assert_non_null(strstr(err, "bad magic byte 0x7b"));
    assert_null(decode_json(c, "\xc3\x02", 2, &rc, err, sizeof err));
    assert_non_null(strstr(err, "second byte"));
    assert_null(decode_json(c, "\x00\x00\x01", 3, &rc, err, sizeof err));
    assert_non_null(strstr(err, "truncated Confluent header"));
    msg[2] ^= 0xff;
    assert_null(decode_json(c, msg, 10 + sizeof good, &rc, err, sizeof err));
    assert_int_equal(rc, CL_ENOTFOUND);
    assert_non_null(strstr(err, "unknown writer schema fingerprint"));
    cl_avro_codec_free(c);
    cl_avro_schemas_free(set);
}

static void test_json_errors_name_the_path(void **state)
{
    cl_avro_schemas *set = set_of(ALL_TYPES, NULL);
    const cl_avro_schema *s = cl_avro_schemas_find(set, "All");
    cl_avro_codec *c = codec_of(set, "All", NULL);
    static const struct {
        const char *json, *reason;
    } cases[] = {
        {"{\"n\":null}", "b: missing"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\",\"e\":"
         "\"A\","
         "\"fx\":\"abc\",\"a\":[1,\"x\"],\"m\":{},\"u\":null,\"r\":{\"x\":1}}",
         "a[1]: expected an integer"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\",\"e\":"
         "\"Z\","
         "\"fx\":\"abc\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":1}}",
         "e: expected a symbol of enum t.E"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\",\"e\":"
         "\"A\","
         "\"fx\":\"ab\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":1}}",
         "fx: fixed t.F needs 3 bytes"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\",\"e\":"
         "\"A\","
         "\"fx\":\"abc\",\"a\":[],\"m\":{},\"u\":5,\"r\":{\"x\":1}}",
         "u: value matches no branch"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\",\"e\":"
         "\"A\","
         "\"fx\":\"abc\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":1,\"y\":2}}",
         "r.y: no such field"},
        {"{\"n\":null,\"b\":true,\"i\":4294967296,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\",\"s\":\"\","
         "\"e\":\"A\",\"fx\":\"abc\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":1}}",
         "i: expected a 32-bit integer"},
        {"{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":1,\"d\":1,\"by\":\"\\u0100\",\"s\":\"\","
         "\"e\":\"A\",\"fx\":\"abc\",\"a\":[],\"m\":{},\"u\":null,\"r\":{\"x\":1}}",
         "by: bytes must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[CL_ERRLEN] = "";
        json_t *j = json_loads(cases[i].json, 0, NULL);
        assert_non_null(j);
        int rc = cl_avro_value_from_json(cl_avro_codec_value(c), s, j, err, sizeof err);
        json_decref(j);
        assert_int_equal(rc, CL_EINVAL);
        if (!strstr(err, cases[i].reason))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].reason);
    }
    cl_avro_codec_free(c);
    cl_avro_schemas_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint_reference_values),
        cmocka_unit_test(test_canonical_form),
        cmocka_unit_test(test_invalid_schemas_are_rejected_with_reason),
        cmocka_unit_test(test_deeply_nested_schema_is_rejected),
        cmocka_unit_test(test_load_dir_with_history),
        cmocka_unit_test(test_load_errors_name_the_file),
        cmocka_unit_test(test_round_trip_single_object),
        cmocka_unit_test(test_round_trip_confluent_with_fixed_id),
        cmocka_unit_test(test_reused_value_is_reset_between_records),
        cmocka_unit_test(test_old_data_through_new_schema_gets_defaults),
        cmocka_unit_test(test_enum_symbol_without_reader_default_fails_naming_it),
        cmocka_unit_test(test_invalid_default_is_reported_at_resolution),
        cmocka_unit_test(test_hostile_datums),
        cmocka_unit_test(test_json_errors_name_the_path),
    };
    return cmocka_run_group_tests(tests, setup_paths, NULL);
}
