/*
 * test_records.c — the five records: schemas parse in avro-c and fastavro, structs
 * survive struct -> avro value -> binary -> value -> struct unchanged, hostile values
 * are rejected naming the field, and bytes written by avro-c are read by fastavro (an
 * independent Avro implementation) with the expected field values, and vice versa.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "avro.h" /* avro-c API and the project codec */
#include "records.h"
#include "score.h"
#include "stats.h" /* must coexist with records.h (metrics and refit include both) */
#include "fit.h"

static const char *const schema_names[] = {"OpportunitySnapshot", "OpportunityOutcome",
                                           "LabeledExample", "ModelMetrics", "WeightConfig"};
enum { SNAPSHOT = 0, OUTCOME, LABELED, METRICS, WEIGHTS, N_SCHEMAS };

typedef struct {
    avro_schema_t schema;
    avro_value_iface_t *cls;
} loaded_schema;

static loaded_schema schemas[N_SCHEMAS];

static const char *source_dir(void)
{
    const char *d = getenv("CL_SOURCE_DIR");
    if (d == NULL || d[0] == '\0')
        fail_msg("CL_SOURCE_DIR is not set: run this test through ctest");
    return d;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int load_schemas(void **state)
{
    (void)state;
    for (int i = 0; i < N_SCHEMAS; i++) {
        char path[1024];
        size_t len;
        snprintf(path, sizeof path, "%s/schemas/%s.avsc", source_dir(), schema_names[i]);
        char *json = read_file(path, &len);
        if (avro_schema_from_json_length(json, len, &schemas[i].schema) != 0)
            fail_msg("avro-c cannot parse %s: %s", path, avro_strerror());
        free(json);
        schemas[i].cls = avro_generic_class_from_schema(schemas[i].schema);
        if (schemas[i].cls == NULL)
            fail_msg("avro-c cannot build a value class for %s: %s", path, avro_strerror());
    }
    return 0;
}

static int free_schemas(void **state)
{
    (void)state;
    for (int i = 0; i < N_SCHEMAS; i++) {
        avro_value_iface_decref(schemas[i].cls);
        avro_schema_decref(schemas[i].schema);
    }
    return 0;
}

static void new_value(int which, avro_value_t *v)
{
    assert_int_equal(avro_generic_value_new(schemas[which].cls, v), 0);
}

/* value -> Avro binary -> fresh value of the same schema. */
static size_t encode(avro_value_t *v, char *buf, size_t cap)
{
    avro_writer_t w = avro_writer_memory(buf, (int64_t)cap);
    if (avro_value_write(w, v) != 0) fail_msg("avro_value_write: %s", avro_strerror());
    size_t n = (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    return n;
}

static void decode(int which, const char *buf, size_t len, avro_value_t *out)
{
    new_value(which, out);
    avro_reader_t r = avro_reader_memory(buf, (int64_t)len);
    if (avro_value_read(r, out) != 0) fail_msg("avro_value_read: %s", avro_strerror());
    avro_reader_free(r);
}

static char wire[1 << 20];

static void roundtrip_value(int which, avro_value_t *v, avro_value_t *out)
{
    size_t n = encode(v, wire, sizeof wire);
    assert_true(n > 0);
    decode(which, wire, n, out);
}

/* ---- fixtures --------------------------------------------------------------------- */

static void full_snapshot(cl_snapshot *s)
{
    char err[CL_ERRLEN];
    cl_snapshot_init(s);
    snprintf(s->run_id, sizeof s->run_id, "run-2025-03-03");
    snprintf(s->opportunity_id, sizeof s->opportunity_id, "0061U00000AbCdEFG");
    assert_int_equal(cl_snapshot_id(s->run_id, s->opportunity_id, s->snapshot_id, err, sizeof err),
                     CL_OK);
    s->snapshot_time = 1740981600000; /* 2025-03-03T06:00:00Z */
    snprintf(s->account_id, sizeof s->account_id, "0011U00000XyZ");
    snprintf(s->owner_id, sizeof s->owner_id, "0051U00000Own");
    snprintf(s->stage, sizeof s->stage, "Negotiation");
    s->amount = (cl_opt_double){true, 125000.5};
    snprintf(s->currency, sizeof s->currency, "EUR");
    s->created_date = 20000;
    s->expected_close_date = 20200;
    s->days_in_stage = (cl_opt_int){true, 12};
    snprintf(s->segment, sizeof s->segment, "Enterprise");
    snprintf(s->region, sizeof s->region, "EMEA");
    snprintf(s->product, sizeof s->product, "Platform");
    snprintf(s->lead_source, sizeof s->lead_source, "Web");
    snprintf(s->type, sizeof s->type, "New Business");
    snprintf(s->attributes[0].key, sizeof s->attributes[0].key, "industry");
    snprintf(s->attributes[0].value, sizeof s->attributes[0].value, "Retail");
    snprintf(s->attributes[1].key, sizeof s->attributes[1].key, "partner");
    snprintf(s->attributes[1].value, sizeof s->attributes[1].value, "Acme \xc3\xa9");
    s->n_attributes = 2;
    double comps[CL_NUM_BUILTINS] = {80, 60, 40, 90, 70, 20};
    memcpy(s->components, comps, sizeof comps);
    snprintf(s->features[0].name, sizeof s->features[0].name, "engagement");
    s->features[0].value = 55.25;
    s->n_features = 1;
    s->opportunity_score = (cl_opt_double){true, 71.0};
    s->account_score = (cl_opt_double){false, 0};
    snprintf(s->scores[0].model, sizeof s->scores[0].model, "opportunity_score");
    s->scores[0].version = 1;
    s->scores[0].score = 67.5;
    s->scores[0].band = CL_BAND_MEDIUM;
    s->scores[0].probability = 0.740774899182154;
    snprintf(s->scores[1].model, sizeof s->scores[1].model, "opportunity_score");
    s->scores[1].version = 2;
    s->scores[1].score = 72.0;
    s->scores[1].band = CL_BAND_HIGH;
    s->scores[1].probability = 0.8;
    s->n_scores = 2;
}

static void minimal_snapshot(cl_snapshot *s)
{
    char err[CL_ERRLEN];
    cl_snapshot_init(s);
    snprintf(s->run_id, sizeof s->run_id, "r1");
    snprintf(s->opportunity_id, sizeof s->opportunity_id, "006A");
    assert_int_equal(cl_snapshot_id(s->run_id, s->opportunity_id, s->snapshot_id, err, sizeof err),
                     CL_OK);
    snprintf(s->stage, sizeof s->stage, "Prospecting");
    s->snapshot_time = 0;
}

static void full_outcome(cl_outcome *o)
{
    cl_outcome_init(o);
    snprintf(o->opportunity_id, sizeof o->opportunity_id, "0061U00000AbCdEFG");
    snprintf(o->account_id, sizeof o->account_id, "0011U00000XyZ");
    snprintf(o->owner_id, sizeof o->owner_id, "0051U00000Own");
    o->outcome = CL_OUTCOME_LOST;
    snprintf(o->stage_name, sizeof o->stage_name, "Closed Lost");
    o->close_date = 20210; /* 2025-05-02 */
    o->final_value = (cl_opt_double){true, 99000};
    snprintf(o->currency, sizeof o->currency, "EUR");
    o->created_date = 20000;
    o->days_to_close = 210;
    o->system_modstamp = 1746450000000;
    o->source = CL_SOURCE_BULK;
    o->ingested_at = 1746450060000;
    snprintf(o->type, sizeof o->type, "New Business");
    o->lead_source[0] = '\0';
}

/* ---- field-by-field comparison ----------------------------------------------------- */

static void assert_opt_double_equal(cl_opt_double a, cl_opt_double b)
{
    assert_int_equal(a.present, b.present);
    if (a.present) assert_true(a.value == b.value);
}

static void assert_snapshot_equal(const cl_snapshot *a, const cl_snapshot *b)
{
    assert_string_equal(a->snapshot_id, b->snapshot_id);
    assert_string_equal(a->run_id, b->run_id);
    assert_true(a->snapshot_time == b->snapshot_time);
    assert_string_equal(a->opportunity_id, b->opportunity_id);
    assert_string_equal(a->account_id, b->account_id);
    assert_string_equal(a->owner_id, b->owner_id);
    assert_string_equal(a->stage, b->stage);
    assert_opt_double_equal(a->amount, b->amount);
    assert_string_equal(a->currency, b->currency);
    assert_int_equal(a->created_date, b->created_date);
    assert_int_equal(a->expected_close_date, b->expected_close_date);
    assert_int_equal(a->days_in_stage.present, b->days_in_stage.present);
    assert_int_equal(a->days_in_stage.value, b->days_in_stage.value);
    assert_string_equal(a->segment, b->segment);
    assert_string_equal(a->region, b->region);
    assert_string_equal(a->product, b->product);
    assert_string_equal(a->lead_source, b->lead_source);
    assert_string_equal(a->type, b->type);
    assert_int_equal(a->n_attributes, b->n_attributes);
    for (size_t i = 0; i < a->n_attributes; i++) {
        const char *v = cl_snapshot_attribute(b, a->attributes[i].key);
        assert_non_null(v);
        assert_string_equal(v, a->attributes[i].value);
    }
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        assert_true(a->components[i] == b->components[i]);
    assert_int_equal(a->n_features, b->n_features);
    for (size_t i = 0; i < a->n_features; i++) {
        double v;
        assert_int_equal(cl_snapshot_feature(b, a->features[i].name, &v), CL_OK);
        assert_true(v == a->features[i].value);
    }
    assert_opt_double_equal(a->opportunity_score, b->opportunity_score);
    assert_opt_double_equal(a->account_score, b->account_score);
    assert_int_equal(a->n_scores, b->n_scores);
    for (size_t i = 0; i < a->n_scores; i++) {
        assert_string_equal(a->scores[i].model, b->scores[i].model);
        assert_true(a->scores[i].version == b->scores[i].version);
        assert_true(a->scores[i].score == b->scores[i].score);
        assert_int_equal(a->scores[i].band, b->scores[i].band);
        assert_true(a->scores[i].probability == b->scores[i].probability);
    }
}

static void assert_outcome_equal(const cl_outcome *a, const cl_outcome *b)
{
    assert_string_equal(a->opportunity_id, b->opportunity_id);
    assert_string_equal(a->account_id, b->account_id);
    assert_string_equal(a->owner_id, b->owner_id);
    assert_int_equal(a->outcome, b->outcome);
    assert_string_equal(a->stage_name, b->stage_name);
    assert_int_equal(a->close_date, b->close_date);
    assert_opt_double_equal(a->final_value, b->final_value);
    assert_string_equal(a->currency, b->currency);
    assert_int_equal(a->created_date, b->created_date);
    assert_int_equal(a->days_to_close, b->days_to_close);
    assert_true(a->system_modstamp == b->system_modstamp);
    assert_int_equal(a->source, b->source);
    assert_true(a->ingested_at == b->ingested_at);
    assert_string_equal(a->type, b->type);
    assert_string_equal(a->lead_source, b->lead_source);
}

/* ---- snapshot -------------------------------------------------------------------------- */

static void test_snapshot_roundtrip_full(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot in, out;
    avro_value_t v, back;
    full_snapshot(&in);
    new_value(SNAPSHOT, &v);
    assert_int_equal(cl_snapshot_to_avro(&in, &v, err, sizeof err), CL_OK);
    roundtrip_value(SNAPSHOT, &v, &back);
    assert_int_equal(cl_snapshot_from_avro(&back, &out, err, sizeof err), CL_OK);
    assert_snapshot_equal(&in, &out);

    /* Filling the same value twice must not accumulate map / array entries. */
    assert_int_equal(cl_snapshot_to_avro(&in, &v, err, sizeof err), CL_OK);
    avro_value_t scores;
    size_t n = 0;
    assert_int_equal(avro_value_get_by_name(&v, "scores", &scores, NULL), 0);
    assert_int_equal(avro_value_get_size(&scores, &n), 0);
    assert_int_equal(n, 2);
    avro_value_decref(&v);
    avro_value_decref(&back);
}

static void test_snapshot_nulls_roundtrip(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot in, out;
    avro_value_t v, back, field, branch;
    minimal_snapshot(&in);
    new_value(SNAPSHOT, &v);
    assert_int_equal(cl_snapshot_to_avro(&in, &v, err, sizeof err), CL_OK);
    /* Empty nullable strings and absent numbers are written as the null branch. */
    const char *nullable[] = {
        "account_id", "owner_id",    "amount", "days_in_stage",     "segment",      "region",
        "product",    "lead_source", "type",   "opportunity_score", "account_score"};
    for (size_t i = 0; i < sizeof nullable / sizeof nullable[0]; i++) {
        assert_int_equal(avro_value_get_by_name(&v, nullable[i], &field, NULL), 0);
        assert_int_equal(avro_value_get_current_branch(&field, &branch), 0);
        assert_int_equal(avro_value_get_type(&branch), AVRO_NULL);
    }
    roundtrip_value(SNAPSHOT, &v, &back);
    assert_int_equal(cl_snapshot_from_avro(&back, &out, err, sizeof err), CL_OK);
    assert_snapshot_equal(&in, &out);
    assert_false(out.amount.present);
    assert_string_equal(out.currency, "USD");
    assert_int_equal(out.n_scores, 0);
    avro_value_decref(&v);
    avro_value_decref(&back);
}

static void test_snapshot_to_avro_rejects_invalid(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot s;
    avro_value_t v;
    new_value(SNAPSHOT, &v);

    full_snapshot(&s);
    s.components[CL_WIN_RATE] = 100.5;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "win_rate"));

    full_snapshot(&s);
    s.components[CL_RECENCY] = NAN;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "recency"));

    full_snapshot(&s);
    s.opportunity_id[0] = '\0';
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "opportunity_id"));

    full_snapshot(&s);
    s.scores[1].probability = 1.5;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "scores[1].probability"));

    full_snapshot(&s);
    s.n_attributes = CL_MAX_ATTRIBUTES + 1;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "attributes"));

    full_snapshot(&s);
    snprintf(s.attributes[1].key, sizeof s.attributes[1].key, "industry");
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "duplicate"));

    full_snapshot(&s);
    s.days_in_stage.value = -1;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "days_in_stage"));

    full_snapshot(&s);
    s.scores[0].band = (cl_band)7;
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "band"));
    avro_value_decref(&v);
}

/* A valid value, then one field made hostile through the avro API. */
static void valid_snapshot_value(avro_value_t *v)
{
    char err[CL_ERRLEN];
    cl_snapshot s;
    full_snapshot(&s);
    new_value(SNAPSHOT, v);
    assert_int_equal(cl_snapshot_to_avro(&s, v, err, sizeof err), CL_OK);
}

static void test_snapshot_from_avro_rejects_hostile(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot s;
    avro_value_t v, f, item;

    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "largest_deal", &f, NULL), 0);
    assert_int_equal(avro_value_set_double(&f, 150.0), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "largest_deal"));
    avro_value_decref(&v);

    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "speed_to_close", &f, NULL), 0);
    assert_int_equal(avro_value_set_double(&f, INFINITY), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "speed_to_close"));
    avro_value_decref(&v);

    /* An id one byte over the bound. */
    char longid[CL_ID_MAX + 2];
    memset(longid, 'x', CL_ID_MAX + 1);
    longid[CL_ID_MAX + 1] = '\0';
    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "opportunity_id", &f, NULL), 0);
    assert_int_equal(avro_value_set_string_len(&f, longid, sizeof longid), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "opportunity_id"));
    assert_non_null(strstr(err, "at most 128"));
    avro_value_decref(&v);

    /* Exactly at the bound is fine. */
    longid[CL_ID_MAX] = '\0';
    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "opportunity_id", &f, NULL), 0);
    assert_int_equal(avro_value_set_string_len(&f, longid, CL_ID_MAX + 1), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_OK);
    assert_int_equal(strlen(s.opportunity_id), CL_ID_MAX);
    avro_value_decref(&v);

    /* An embedded NUL would silently truncate an id. */
    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "stage", &f, NULL), 0);
    assert_int_equal(avro_value_set_string_len(&f, "Neg\0tiation", 12), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "stage"));
    avro_value_decref(&v);

    /* One attribute more than the bound. */
    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "attributes", &f, NULL), 0);
    for (int i = 0; i < CL_MAX_ATTRIBUTES; i++) {
        char key[32];
        snprintf(key, sizeof key, "extra%d", i);
        assert_int_equal(avro_value_add(&f, key, &item, NULL, NULL), 0);
        assert_int_equal(avro_value_set_string(&item, "v"), 0);
    }
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "attributes: 18 entries, at most 16"));
    avro_value_decref(&v);

    /* Too many scores. */
    valid_snapshot_value(&v);
    assert_int_equal(avro_value_get_by_name(&v, "scores", &f, NULL), 0);
    for (int i = 0; i < CL_MAX_SCORES; i++)
        assert_int_equal(avro_value_append(&f, &item, NULL), 0);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "scores"));
    avro_value_decref(&v);

    /* A value of another schema is not mistaken for a snapshot. */
    new_value(OUTCOME, &v);
    assert_int_equal(cl_snapshot_from_avro(&v, &s, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "OpportunitySnapshot"));
    avro_value_decref(&v);
}

static void test_snapshot_id(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    char id[CL_SNAPSHOT_ID_LEN + 1], id2[CL_SNAPSHOT_ID_LEN + 1];
    /* Expected values from Python: hashlib.sha256(b"run\0opp").hexdigest()[:32]. */
    assert_int_equal(cl_snapshot_id("run-2025-03-03", "0061U00000AbCdEFG", id, err, sizeof err),
                     CL_OK);
    assert_string_equal(id, "86853e059cfec020b6e061fe63593264");
    assert_int_equal(cl_snapshot_id("ab", "c", id, err, sizeof err), CL_OK);
    assert_string_equal(id, "6c032e631d39a14d85aff7e319546af7");
    assert_int_equal(cl_snapshot_id("a", "bc", id2, err, sizeof err), CL_OK);
    assert_string_equal(id2, "40bb547d936bbd31318ee37ac8799e7e");
    assert_int_equal(cl_snapshot_id("", "x", id, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "run_id"));
    char longid[CL_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(cl_snapshot_id("r", longid, id, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "opportunity_id"));
}

/* ---- outcome --------------------------------------------------------------------------- */

static void test_outcome_roundtrip_and_rules(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_outcome in, out;
    avro_value_t v, back, f;
    full_outcome(&in);
    new_value(OUTCOME, &v);
    assert_int_equal(cl_outcome_to_avro(&in, &v, err, sizeof err), CL_OK);
    roundtrip_value(OUTCOME, &v, &back);
    assert_int_equal(cl_outcome_from_avro(&back, &out, err, sizeof err), CL_OK);
    assert_outcome_equal(&in, &out);
    assert_string_equal(out.lead_source, "");

    /* Enum symbols are mapped by name. */
    assert_int_equal(avro_value_get_by_name(&v, "source", &f, NULL), 0);
    assert_int_equal(
        avro_value_set_enum(&f, avro_schema_enum_get_by_name(avro_value_get_schema(&f), "csv")), 0);
    assert_int_equal(cl_outcome_from_avro(&v, &out, err, sizeof err), CL_OK);
    assert_int_equal(out.source, CL_SOURCE_CSV);
    /* An index outside the symbol table is rejected. */
    assert_int_equal(avro_value_set_enum(&f, 9), 0);
    assert_int_equal(cl_outcome_from_avro(&v, &out, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "source"));

    full_outcome(&in);
    in.days_to_close = 5;
    assert_int_equal(cl_outcome_to_avro(&in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "days_to_close"));
    full_outcome(&in);
    in.stage_name[0] = '\0';
    assert_int_equal(cl_outcome_to_avro(&in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "stage_name"));
    avro_value_decref(&v);
    avro_value_decref(&back);

    assert_string_equal(cl_outcome_kind_name(CL_OUTCOME_WON), "WON");
    cl_outcome_source src;
    assert_int_equal(cl_outcome_source_parse("rest", &src), CL_OK);
    assert_int_equal(src, CL_SOURCE_REST);
    assert_int_equal(cl_outcome_source_parse("REST", &src), CL_EINVAL);
}

/* ---- labeled example ------------------------------------------------------------------- */

static void test_labeled_from_and_roundtrip(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot s;
    cl_outcome o;
    cl_labeled_example *e = malloc(sizeof *e), *out = malloc(sizeof *out);
    assert_non_null(e);
    assert_non_null(out);
    full_snapshot(&s); /* 2025-03-03 = day 20150 */
    full_outcome(&o);  /* closes day 20210 */
    assert_int_equal(cl_day_of_ms(s.snapshot_time), 20150);
    assert_int_equal(cl_labeled_from(&s, &o, 1746450100000, e, err, sizeof err), CL_OK);
    assert_int_equal(e->days_before_close, 60);
    assert_true(e->outcome_version == 1746450000000);
    assert_false(e->retracted);
    assert_true(e->joined_at == 1746450100000);

    avro_value_t v, back;
    new_value(LABELED, &v);
    assert_int_equal(cl_labeled_example_to_avro(e, &v, err, sizeof err), CL_OK);
    roundtrip_value(LABELED, &v, &back);
    assert_int_equal(cl_labeled_example_from_avro(&back, out, err, sizeof err), CL_OK);
    assert_snapshot_equal(&e->snapshot, &out->snapshot);
    assert_outcome_equal(&e->outcome, &out->outcome);
    assert_int_equal(out->days_before_close, 60);
    assert_true(out->outcome_version == e->outcome_version);
    assert_false(out->retracted);

    /* A retraction marker carries the retracted example. */
    e->retracted = true;
    assert_int_equal(cl_labeled_example_to_avro(e, &v, err, sizeof err), CL_OK);
    avro_value_decref(&back);
    roundtrip_value(LABELED, &v, &back);
    assert_int_equal(cl_labeled_example_from_avro(&back, out, err, sizeof err), CL_OK);
    assert_true(out->retracted);

    /* Inconsistent examples are refused. */
    e->retracted = false;
    e->days_before_close = 59;
    assert_int_equal(cl_labeled_example_to_avro(e, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "days_before_close"));
    e->days_before_close = 60;
    e->outcome_version++;
    assert_int_equal(cl_labeled_example_to_avro(e, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "outcome_version"));

    /* Snapshot after the close date: leakage. */
    s.snapshot_time = (int64_t)20211 * 86400000;
    assert_int_equal(cl_labeled_from(&s, &o, 0, e, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "after the close date"));
    /* Same day as the close is allowed (0 days before). */
    s.snapshot_time = (int64_t)20210 * 86400000 + 3600000;
    assert_int_equal(cl_labeled_from(&s, &o, 0, e, err, sizeof err), CL_OK);
    assert_int_equal(e->days_before_close, 0);
    /* Different opportunities. */
    snprintf(o.opportunity_id, sizeof o.opportunity_id, "006OTHER");
    assert_int_equal(cl_labeled_from(&s, &o, 0, e, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "006OTHER"));

    avro_value_decref(&v);
    avro_value_decref(&back);
    free(e);
    free(out);
}

static void test_day_of_ms(void **state)
{
    (void)state;
    assert_int_equal(cl_day_of_ms(0), 0);
    assert_int_equal(cl_day_of_ms(86399999), 0);
    assert_int_equal(cl_day_of_ms(86400000), 1);
    assert_int_equal(cl_day_of_ms(-1), -1);
    assert_int_equal(cl_day_of_ms(-86400000), -1);
    assert_int_equal(cl_day_of_ms(-86400001), -2);
}

/* ---- model metrics ---------------------------------------------------------------------- */

static void fill_metrics(cl_model_metrics *m)
{
    cl_model_metrics_init(m);
    snprintf(m->model, sizeof m->model, "opportunity_score");
    m->version = 3;
    m->generated_at = 1746450000000;
    m->window = (cl_metrics_window){1735689600000, 1743465600000, CL_WINDOW_ROLLING_90D};
    m->horizon = CL_HORIZON_FIRST_SNAPSHOT;
    m->horizon_days = 14;
    m->n = 100;
    m->won = 40;
    m->lost = 60;
    m->confusion = (cl_metrics_confusion){70, 25, 10, 50, 15};
    m->precision = (cl_opt_double){true, 25.0 / 35.0};
    m->recall = (cl_opt_double){true, 25.0 / 40.0};
    m->f1 = (cl_opt_double){true, 2.0 / 3.0};
    m->auc = (cl_opt_double){true, 0.75};
    m->brier = (cl_opt_double){true, 0.2};
    m->log_loss = (cl_opt_double){true, 0.61};
    m->ece = (cl_opt_double){false, 0};
    m->calibration_bins[0] =
        (cl_metrics_calibration_bin){0, 0.5, 60, 15, {true, 0.3}, {true, 0.25}};
    m->calibration_bins[1] =
        (cl_metrics_calibration_bin){0.5, 1, 40, 25, {true, 0.7}, {true, 0.625}};
    m->calibration_bins[2] = (cl_metrics_calibration_bin){1, 1, 0, 0, {false, 0}, {false, 0}};
    m->n_calibration_bins = 3;
    m->thresholds[0] = (cl_metrics_threshold_point){50, 60, {true, 0.5}, {true, 0.75}};
    m->n_thresholds = 1;
    m->by_band[0] = (cl_metrics_band){CL_BAND_HIGH, 35, 25, {true, 0.8}};
    m->by_band[1] = (cl_metrics_band){CL_BAND_LOW, 65, 15, {false, 0}};
    m->n_by_band = 2;
    snprintf(m->by_stage[0].key, sizeof m->by_stage[0].key, "Negotiation");
    m->by_stage[0].n = 10;
    m->by_stage[0].won = 4;
    m->by_stage[0].mean_score = (cl_opt_double){true, 61.5};
    m->n_by_stage = 1;
    m->by_owner[0].key[0] = '\0'; /* the null group */
    m->by_owner[0].n = 3;
    m->n_by_owner = 1;
}

static void test_metrics_roundtrip_and_rules(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_model_metrics *in = malloc(sizeof *in), *out = malloc(sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    avro_value_t v, back;
    fill_metrics(in);
    new_value(METRICS, &v);
    assert_int_equal(cl_model_metrics_to_avro(in, &v, err, sizeof err), CL_OK);
    roundtrip_value(METRICS, &v, &back);
    assert_int_equal(cl_model_metrics_from_avro(&back, out, err, sizeof err), CL_OK);
    assert_string_equal(out->model, "opportunity_score");
    assert_true(out->version == 3);
    assert_true(out->window.start == in->window.start && out->window.end == in->window.end);
    assert_int_equal(out->window.kind, CL_WINDOW_ROLLING_90D);
    assert_int_equal(out->horizon, CL_HORIZON_FIRST_SNAPSHOT);
    assert_int_equal(out->horizon_days, 14);
    assert_true(out->n == 100 && out->won == 40 && out->lost == 60);
    assert_true(out->confusion.tp == 25 && out->confusion.fp == 10 && out->confusion.tn == 50 &&
                out->confusion.fn == 15);
    assert_opt_double_equal(out->precision, in->precision);
    assert_opt_double_equal(out->f1, in->f1);
    assert_opt_double_equal(out->ece, in->ece);
    assert_int_equal(out->n_calibration_bins, 3);
    assert_opt_double_equal(out->calibration_bins[1].observed_rate, (cl_opt_double){true, 0.625});
    assert_false(out->calibration_bins[2].mean_predicted.present);
    assert_int_equal(out->n_thresholds, 1);
    assert_int_equal(out->n_by_band, 2);
    assert_int_equal(out->by_band[1].band, CL_BAND_LOW);
    assert_int_equal(out->n_by_stage, 1);
    assert_string_equal(out->by_stage[0].key, "Negotiation");
    assert_opt_double_equal(out->by_stage[0].mean_score, (cl_opt_double){true, 61.5});
    assert_int_equal(out->n_by_segment, 0);
    assert_int_equal(out->n_by_owner, 1);
    assert_string_equal(out->by_owner[0].key, "");

    fill_metrics(in);
    in->lost = 59;
    assert_int_equal(cl_model_metrics_to_avro(in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "won"));
    fill_metrics(in);
    in->confusion.tp = 26;
    assert_int_equal(cl_model_metrics_to_avro(in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "confusion"));
    fill_metrics(in);
    in->auc.value = 1.2;
    assert_int_equal(cl_model_metrics_to_avro(in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "auc"));
    fill_metrics(in);
    in->by_band[1].band = CL_BAND_HIGH;
    assert_int_equal(cl_model_metrics_to_avro(in, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "twice"));

    avro_value_decref(&v);
    avro_value_decref(&back);
    free(in);
    free(out);
}

/* ---- weight config ----------------------------------------------------------------------- */

static void set_evidence(cl_candidate_evidence *e, const char *name, cl_component_kind kind,
                         const char *source, double dauc, double dll, double sauc, double sll,
                         bool beats, int64_t n_with_value, int64_t n_categories)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->source, sizeof e->source, "%s", source);
    e->kind = kind;
    e->delta_auc = (cl_opt_double){true, dauc};
    e->delta_log_loss = (cl_opt_double){true, dll};
    e->shuffled_max_delta_auc = (cl_opt_double){true, sauc};
    e->shuffled_max_delta_log_loss = (cl_opt_double){true, sll};
    e->permutations = 19;
    e->beats_shuffled = beats;
    e->n_examples = 1000;
    e->n_with_value = n_with_value;
    e->n_categories = n_categories;
}

static void fill_weight_config(cl_weight_config *c)
{
    char err[CL_ERRLEN];
    cl_weight_config_init(c);
    snprintf(c->model, sizeof c->model, "opportunity_score");
    c->version = 4;
    c->parent_version = (cl_opt_long){true, 2};
    c->status = CL_MODEL_CHALLENGER;
    c->created_at = 1746450000000;
    assert_int_equal(cl_weight_set_put(&c->weights, "win_rate", 0.5, err, sizeof err), CL_OK);
    assert_int_equal(cl_weight_set_put(&c->weights, "segment_win_rate", 0.3, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_weight_set_put(&c->weights, "amount_pct", 0.2, err, sizeof err), CL_OK);
    cl_stage_weights *sw = &c->stage_weights[0];
    snprintf(sw->stage, sizeof sw->stage, "Negotiation");
    assert_int_equal(cl_weight_set_put(&sw->weights, "recency", 1.0, err, sizeof err), CL_OK);
    c->n_stage_weights = 1;
    c->calibration = (cl_calibration){-2.5, 0.05};
    c->bands = (cl_band_thresholds){75, 45};

    cl_component_def *d = &c->components[0];
    cl_component_def_init(d);
    snprintf(d->name, sizeof d->name, "segment_win_rate");
    d->kind = CL_COMPONENT_CATEGORY_WIN_RATE;
    snprintf(d->source, sizeof d->source, "segment");
    d->smoothing = 20;
    d->overall_rate = 0.3;
    /* Deliberately out of order: the wire order carries no meaning. */
    d->categories[0] = (cl_category_rate){"SMB", 0.2, 300};
    d->categories[1] = (cl_category_rate){"Enterprise", 0.45, 120};
    d->categories[2] = (cl_category_rate){"Mid-Market", 0.33, 200};
    d->n_categories = 3;
    d = &c->components[1];
    cl_component_def_init(d);
    snprintf(d->name, sizeof d->name, "amount_pct");
    d->kind = CL_COMPONENT_NUMERIC_PERCENTILE;
    snprintf(d->source, sizeof d->source, "amount");
    double bp[] = {1000, 5000, 20000, 80000, 500000};
    memcpy(d->breakpoints, bp, sizeof bp);
    d->n_breakpoints = 5;
    d->descending = true;
    d->missing_value = 42;
    c->n_components = 2;

    c->has_training = true;
    c->training = (cl_training_summary){1700000000000, 1746000000000, 400,   600,
                                        {true, 180},   0.01,          812.5, {true, 0.1}};
    c->validation[0] =
        (cl_validation_fold){0,           1740000000000, 1742000000000, 200,         {true, 0.71},
                             {true, 0.2}, {false, 0},    {true, 0.6},   {true, 0.66}};
    c->n_validation = 1;
    c->has_comparison = true;
    c->comparison = (cl_champion_comparison){2, 0.05, 0.01, 640, {true, 0.02}};
    snprintf(c->reason, sizeof c->reason, "beat champion v2 on 4 of 4 folds");

    /* Discovery evidence: the two adopted components, one candidate that lost to shuffled
     * labels, one that could not be evaluated. */
    set_evidence(&c->discovery[0], "segment_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "segment",
                 0.031, 0.004, 0.012, 0.0011, true, 940, 3);
    c->discovery[0].adopted = true;
    set_evidence(&c->discovery[1], "amount_pct", CL_COMPONENT_NUMERIC_PERCENTILE, "amount", 0.02,
                 0.01, 0.015, 0.002, true, 1000, 0);
    c->discovery[1].adopted = true;
    set_evidence(&c->discovery[2], "owner_id_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "owner_id",
                 0.004, -0.0002, 0.009, 0.0015, false, 1000, 12);
    cl_candidate_evidence *e = &c->discovery[3];
    set_evidence(e, "lead_source_win_rate", CL_COMPONENT_CATEGORY_WIN_RATE, "lead_source", 0, 0, 0,
                 0, false, 0, 0);
    e->delta_auc.present = e->delta_log_loss.present = false;
    e->shuffled_max_delta_auc.present = e->shuffled_max_delta_log_loss.present = false;
    e->permutations = 0;
    c->n_discovery = 4;
}

static void test_weight_config_roundtrip(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *in = malloc(sizeof *in), *out = malloc(sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    avro_value_t v, back;
    fill_weight_config(in);
    cl_weight_config_sort_categories(in);
    new_value(WEIGHTS, &v);
    assert_int_equal(cl_weight_config_to_avro(in, &v, err, sizeof err), CL_OK);
    roundtrip_value(WEIGHTS, &v, &back);
    assert_int_equal(cl_weight_config_from_avro(&back, out, err, sizeof err), CL_OK);
    assert_string_equal(out->model, "opportunity_score");
    assert_true(out->version == 4);
    assert_true(out->parent_version.present && out->parent_version.value == 2);
    assert_int_equal(out->status, CL_MODEL_CHALLENGER);
    assert_true(out->created_at == 1746450000000);
    double w;
    assert_int_equal(out->weights.n, 3);
    assert_int_equal(cl_weight_set_get(&out->weights, "win_rate", &w), CL_OK);
    assert_true(w == 0.5);
    assert_int_equal(cl_weight_set_get(&out->weights, "amount_pct", &w), CL_OK);
    assert_true(w == 0.2);
    assert_int_equal(cl_weight_set_get(&out->weights, "largest_deal", &w), CL_ENOTFOUND);
    assert_int_equal(out->n_stage_weights, 1);
    assert_string_equal(out->stage_weights[0].stage, "Negotiation");
    assert_int_equal(cl_weight_set_get(&out->stage_weights[0].weights, "recency", &w), CL_OK);
    assert_true(w == 1.0);
    assert_true(out->calibration.intercept == -2.5 && out->calibration.slope == 0.05);
    assert_true(out->bands.high == 75 && out->bands.medium == 45);
    assert_int_equal(out->n_components, 2);
    const cl_component_def *d = &out->components[0];
    assert_string_equal(d->name, "segment_win_rate");
    assert_int_equal(d->kind, CL_COMPONENT_CATEGORY_WIN_RATE);
    assert_true(d->smoothing == 20 && d->overall_rate == 0.3);
    assert_int_equal(d->n_categories, 3);
    assert_string_equal(d->categories[0].category, "Enterprise");
    assert_string_equal(d->categories[1].category, "Mid-Market");
    assert_string_equal(d->categories[2].category, "SMB");
    assert_true(d->categories[2].rate == 0.2 && d->categories[2].n == 300);
    d = &out->components[1];
    assert_int_equal(d->kind, CL_COMPONENT_NUMERIC_PERCENTILE);
    assert_int_equal(d->n_breakpoints, 5);
    assert_true(d->breakpoints[4] == 500000);
    assert_true(d->descending);
    assert_true(d->missing_value == 42);
    assert_true(out->has_training);
    assert_true(out->training.n_won == 400 && out->training.n_lost == 600);
    assert_opt_double_equal(out->training.half_life_days, (cl_opt_double){true, 180});
    assert_true(out->training.effective_n == 812.5);
    assert_int_equal(out->n_validation, 1);
    assert_opt_double_equal(out->validation[0].auc, (cl_opt_double){true, 0.71});
    assert_false(out->validation[0].ece.present);
    assert_true(out->has_comparison);
    assert_true(out->comparison.p_value == 0.01 && out->comparison.n_paired == 640);
    assert_string_equal(out->reason, "beat champion v2 on 4 of 4 folds");
    assert_int_equal(out->n_discovery, 4);
    for (size_t i = 0; i < 4; i++) {
        const cl_candidate_evidence *a = &in->discovery[i], *b = &out->discovery[i];
        assert_string_equal(b->name, a->name);
        assert_string_equal(b->source, a->source);
        assert_int_equal(b->kind, a->kind);
        assert_opt_double_equal(b->delta_auc, a->delta_auc);
        assert_opt_double_equal(b->delta_log_loss, a->delta_log_loss);
        assert_opt_double_equal(b->shuffled_max_delta_auc, a->shuffled_max_delta_auc);
        assert_opt_double_equal(b->shuffled_max_delta_log_loss, a->shuffled_max_delta_log_loss);
        assert_int_equal(b->permutations, a->permutations);
        assert_int_equal(b->beats_shuffled, a->beats_shuffled);
        assert_int_equal(b->adopted, a->adopted);
        assert_true(b->n_examples == a->n_examples && b->n_with_value == a->n_with_value &&
                    b->n_categories == a->n_categories);
    }
    assert_true(out->discovery[0].adopted && !out->discovery[2].adopted);
    assert_false(out->discovery[3].delta_auc.present);

    /* The seed model round-trips with null training / comparison. */
    cl_weight_config_seed(in, 1700000000000);
    assert_int_equal(cl_weight_config_to_avro(in, &v, err, sizeof err), CL_OK);
    avro_value_decref(&back);
    roundtrip_value(WEIGHTS, &v, &back);
    assert_int_equal(cl_weight_config_from_avro(&back, out, err, sizeof err), CL_OK);
    assert_false(out->has_training);
    assert_false(out->has_comparison);
    assert_false(out->parent_version.present);
    assert_int_equal(out->weights.n, 6);
    assert_int_equal(cl_weight_set_get(&out->weights, "upsell_instances", &w), CL_OK);
    assert_true(w == 0.25);
    assert_int_equal(out->n_discovery, 0);

    avro_value_decref(&v);
    avro_value_decref(&back);
    free(in);
    free(out);
}

static void test_weight_config_from_avro_validates(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_weight_config *c = malloc(sizeof *c);
    assert_non_null(c);
    avro_value_t v, f, item;

    /* A config whose weights no longer sum to 1 is refused on receipt. */
    cl_weight_config_seed(c, 0);
    new_value(WEIGHTS, &v);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "weights", &f, NULL), 0);
    assert_int_equal(avro_value_add(&f, "win_rate", &item, NULL, NULL), 0);
    assert_int_equal(avro_value_set_double(&item, 0.5), 0);
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "sum"));

    /* An unknown status symbol cannot come from our schema, but a bad index can. */
    cl_weight_config_seed(c, 0);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "status", &f, NULL), 0);
    assert_int_equal(avro_value_set_enum(&f, 5), 0);
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "status"));

    /* Too many weights. */
    cl_weight_config_seed(c, 0);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "weights", &f, NULL), 0);
    for (int i = 0; i < CL_MAX_WEIGHTS; i++) {
        char key[32];
        snprintf(key, sizeof key, "w%d", i);
        assert_int_equal(avro_value_add(&f, key, &item, NULL, NULL), 0);
        assert_int_equal(avro_value_set_double(&item, 0), 0);
    }
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "WeightConfig.weights: 22 entries, at most 16"));

    /* Duplicate categories arriving on the wire. */
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "components", &f, NULL), 0);
    avro_value_t comp, cats, cat, x;
    assert_int_equal(avro_value_get_by_index(&f, 0, &comp, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&comp, "categories", &cats, NULL), 0);
    assert_int_equal(avro_value_append(&cats, &cat, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&cat, "category", &x, NULL), 0);
    assert_int_equal(avro_value_set_string(&x, "SMB"), 0);
    assert_int_equal(avro_value_get_by_name(&cat, "rate", &x, NULL), 0);
    assert_int_equal(avro_value_set_double(&x, 0.9), 0);
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "SMB"));
    assert_non_null(strstr(err, "duplicated"));

    /* Discovery evidence that contradicts the config is never published... */
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    c->discovery[2].adopted = true; /* beat nothing, and is no component */
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "WeightConfig.discovery[2]"));
    c->discovery[2].beats_shuffled = true;
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "'owner_id_win_rate' is not among the config's components"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    c->discovery[3].beats_shuffled = true; /* without the gains it compares */
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "beats_shuffled"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    c->discovery[1].n_with_value = 1001;
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "n_with_value"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    c->discovery[1].delta_auc.value = 1.5;
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "delta_auc"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    snprintf(c->discovery[3].name, sizeof c->discovery[3].name, "amount_pct");
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "'amount_pct' appears twice"));

    /* ... nor accepted on receipt: too many entries, a negative count, a non-finite gain. */
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "discovery", &f, NULL), 0);
    for (int i = 4; i <= CL_MAX_DISCOVERY; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(avro_value_append(&f, &item, NULL), 0);
        assert_int_equal(avro_value_get_by_name(&item, "name", &x, NULL), 0);
        assert_int_equal(avro_value_set_string(&x, name), 0);
        assert_int_equal(avro_value_get_by_name(&item, "source", &x, NULL), 0);
        assert_int_equal(avro_value_set_string(&x, name), 0);
    }
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "WeightConfig.discovery: 33 entries, at most 32"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "discovery", &f, NULL), 0);
    assert_int_equal(avro_value_get_by_index(&f, 1, &item, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&item, "n_examples", &x, NULL), 0);
    assert_int_equal(avro_value_set_long(&x, -5), 0);
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "discovery[1].n_examples"));
    fill_weight_config(c);
    cl_weight_config_sort_categories(c);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    assert_int_equal(avro_value_get_by_name(&v, "discovery", &f, NULL), 0);
    assert_int_equal(avro_value_get_by_index(&f, 0, &item, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&item, "delta_log_loss", &x, NULL), 0);
    avro_value_t branch;
    assert_int_equal(avro_value_set_branch(&x, 1, &branch), 0);
    assert_int_equal(avro_value_set_double(&branch, NAN), 0);
    assert_int_equal(cl_weight_config_from_avro(&v, c, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "discovery[0].delta_log_loss"));

    avro_value_decref(&v);
    free(c);
}

static void test_enum_names(void **state)
{
    (void)state;
    cl_band b;
    cl_model_status st;
    cl_window_kind wk;
    cl_horizon_policy h;
    cl_component_kind k;
    assert_string_equal(cl_band_name(CL_BAND_MEDIUM), "MEDIUM");
    assert_string_equal(cl_band_name((cl_band)9), "?");
    assert_int_equal(cl_band_parse("LOW", &b), CL_OK);
    assert_int_equal(b, CL_BAND_LOW);
    assert_int_equal(cl_band_parse("low", &b), CL_EINVAL);
    assert_int_equal(cl_model_status_parse("RETIRED", &st), CL_OK);
    assert_int_equal(st, CL_MODEL_RETIRED);
    assert_int_equal(cl_window_kind_parse("ROLLING_90D", &wk), CL_OK);
    assert_int_equal(wk, CL_WINDOW_ROLLING_90D);
    assert_int_equal(cl_horizon_policy_parse("ALL_SNAPSHOTS", &h), CL_OK);
    assert_int_equal(h, CL_HORIZON_ALL_SNAPSHOTS);
    assert_int_equal(cl_component_kind_parse("NUMERIC_PERCENTILE", &k), CL_OK);
    assert_int_equal(k, CL_COMPONENT_NUMERIC_PERCENTILE);
    assert_int_equal(cl_builtin_component_index("upsell_instances"), CL_UPSELL_INSTANCES);
    assert_int_equal(cl_builtin_component_index("nope"), -1);
}

/* ---- interop with fastavro --------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The Python side: parses every schema with fastavro, checks the schema conventions
 * (docs, logical types, that LabeledExample embeds the standalone definitions
 * unchanged), decodes the bytes avro-c wrote, and writes a record for avro-c to read. */
static const char *const interop_py =
    "import json, sys, io, fastavro\n"
    "d, out = sys.argv[1], sys.argv[2]\n"
    "names = "
    "['OpportunitySnapshot','OpportunityOutcome','LabeledExample','ModelMetrics','WeightConfig']\n"
    "raw = {n: json.load(open(f'{d}/schemas/{n}.avsc')) for n in names}\n"
    "parsed = {n: fastavro.parse_schema(raw[n]) for n in names}\n"
    "def walk(t, path):\n"
    "    if isinstance(t, list):\n"
    "        for b in t: walk(b, path)\n"
    "    elif isinstance(t, dict):\n"
    "        if t.get('type') == 'record':\n"
    "            assert t.get('doc'), f'{path}: record without doc'\n"
    "            for f in t['fields']:\n"
    "                assert f.get('doc'), f\"{path}.{f['name']}: field without doc\"\n"
    "                ft = f['type']\n"
    "                if isinstance(ft, list) and ft[0] == 'null':\n"
    "                    assert 'default' in f and f['default'] is None, f\"{path}.{f['name']}: "
    "nullable without null default\"\n"
    "                if f['name'] in "
    "('snapshot_time','system_modstamp','ingested_at','created_at','generated_at','joined_at','"
    "outcome_version'):\n"
    "                    assert ft == {'type':'long','logicalType':'timestamp-millis'}, "
    "f\"{path}.{f['name']}: not timestamp-millis\"\n"
    "                if f['name'].endswith('_date'):\n"
    "                    assert ft == {'type':'int','logicalType':'date'}, f\"{path}.{f['name']}: "
    "not a date\"\n"
    "                walk(ft, path + '.' + f['name'])\n"
    "        elif t.get('type') in ('array','map'):\n"
    "            walk(t.get('items', t.get('values')), path)\n"
    "        elif t.get('type') == 'enum':\n"
    "            assert t.get('doc'), f'{path}: enum without doc'\n"
    "for n in names:\n"
    "    assert raw[n]['namespace'] == 'closedloop', n\n"
    "    walk(raw[n], n)\n"
    "lab = {f['name']: f['type'] for f in raw['LabeledExample']['fields']}\n"
    "for field, n in (('snapshot','OpportunitySnapshot'), ('outcome','OpportunityOutcome')):\n"
    "    want = dict(raw[n]); del want['namespace']\n"
    "    assert lab[field] == want, f'LabeledExample.{field} differs from {n}.avsc'\n"
    "rec = fastavro.schemaless_reader(open(f'{out}/snapshot.bin','rb'), "
    "parsed['OpportunitySnapshot'])\n"
    "exp = dict(snapshot_id='86853e059cfec020b6e061fe63593264', run_id='run-2025-03-03', "
    "opportunity_id='0061U00000AbCdEFG',\n"
    "           account_id='0011U00000XyZ', stage='Negotiation', amount=125000.5, currency='EUR', "
    "days_in_stage=12,\n"
    "           segment='Enterprise', type='New Business', speed_to_close=80.0, recency=20.0, "
    "opportunity_score=71.0,\n"
    "           account_score=None, attributes={'industry':'Retail','partner':'Acme \\u00e9'}, "
    "features={'engagement':55.25})\n"
    "for k, v in exp.items():\n"
    "    assert rec[k] == v, f'{k}: {rec[k]!r} != {v!r}'\n"
    "assert rec['snapshot_time'].isoformat() == '2025-03-03T06:00:00+00:00', rec['snapshot_time']\n"
    "assert rec['created_date'].isoformat() == '2024-10-04', rec['created_date']\n"
    "assert [(s['version'], s['band'], s['score']) for s in rec['scores']] == "
    "[(1,'MEDIUM',67.5),(2,'HIGH',72.0)], rec['scores']\n"
    "wc = fastavro.schemaless_reader(open(f'{out}/weights.bin','rb'), parsed['WeightConfig'])\n"
    "assert wc['model'] == 'opportunity_score' and wc['version'] == 1 and wc['status'] == "
    "'CHAMPION', wc\n"
    "assert wc['weights'] == "
    "{'speed_to_close':0.15,'largest_deal':0.2,'product_mix':0.15,'upsell_instances':0.25,'win_"
    "rate':0.2,'recency':0.05}, wc['weights']\n"
    "assert wc['training'] is None and wc['bands'] == {'high':70.0,'medium':40.0}, wc\n"
    "o = dict(opportunity_id='006PY', account_id=None, owner_id='005X', outcome='WON', "
    "stage_name='Closed Won',\n"
    "         close_date=20100, final_value=None, currency='USD', created_date=20000, "
    "days_to_close=100,\n"
    "         system_modstamp=1736000000123, source='rest', ingested_at=1736000001000, type=None, "
    "lead_source='Partner')\n"
    "buf = io.BytesIO(); fastavro.schemaless_writer(buf, parsed['OpportunityOutcome'], o)\n"
    "open(f'{out}/outcome.bin','wb').write(buf.getvalue())\n";

static void test_fastavro_interop(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    char dir[] = "/tmp/cl_test_records_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];

    cl_snapshot s;
    avro_value_t v;
    full_snapshot(&s);
    new_value(SNAPSHOT, &v);
    assert_int_equal(cl_snapshot_to_avro(&s, &v, err, sizeof err), CL_OK);
    size_t n = encode(&v, wire, sizeof wire);
    snprintf(path, sizeof path, "%s/snapshot.bin", dir);
    write_file(path, wire, n);
    avro_value_decref(&v);

    cl_weight_config *c = malloc(sizeof *c);
    assert_non_null(c);
    cl_weight_config_seed(c, 1700000000000);
    new_value(WEIGHTS, &v);
    assert_int_equal(cl_weight_config_to_avro(c, &v, err, sizeof err), CL_OK);
    n = encode(&v, wire, sizeof wire);
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    write_file(path, wire, n);
    avro_value_decref(&v);
    free(c);

    snprintf(path, sizeof path, "%s/interop.py", dir);
    write_file(path, interop_py, strlen(interop_py));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 %s '%s' '%s' 2>&1", path, source_dir(), dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char output[8192];
    size_t got = fread(output, 1, sizeof output - 1, p);
    output[got] = '\0';
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("fastavro interop check failed (needs python3 with fastavro):\n%s", output);

    /* Read what fastavro wrote. */
    snprintf(path, sizeof path, "%s/outcome.bin", dir);
    size_t len;
    char *bytes = read_file(path, &len);
    avro_value_t back;
    decode(OUTCOME, bytes, len, &back);
    cl_outcome o;
    assert_int_equal(cl_outcome_from_avro(&back, &o, err, sizeof err), CL_OK);
    assert_string_equal(o.opportunity_id, "006PY");
    assert_string_equal(o.account_id, "");
    assert_string_equal(o.owner_id, "005X");
    assert_int_equal(o.outcome, CL_OUTCOME_WON);
    assert_int_equal(o.close_date, 20100);
    assert_false(o.final_value.present);
    assert_int_equal(o.days_to_close, 100);
    assert_true(o.system_modstamp == 1736000000123);
    assert_int_equal(o.source, CL_SOURCE_REST);
    assert_string_equal(o.lead_source, "Partner");
    assert_string_equal(o.type, "");
    avro_value_decref(&back);
    free(bytes);

    const char *files[] = {"snapshot.bin", "weights.bin", "outcome.bin", "interop.py"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- through the project's codec (common/avro.h) -------------------------------------- */

/* The first OpportunitySnapshot layout a producer might still write: no extras maps, no
 * shadow scores, no source scores. Reading it with the current schema must yield
 * defaults that records.c accepts. */
static const char *const old_snapshot_schema =
    "{\"type\":\"record\",\"name\":\"OpportunitySnapshot\",\"namespace\":\"closedloop\","
    "\"fields\":["
    "{\"name\":\"snapshot_id\",\"type\":\"string\"},"
    "{\"name\":\"run_id\",\"type\":\"string\"},"
    "{\"name\":\"snapshot_time\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}}"
    ","
    "{\"name\":\"opportunity_id\",\"type\":\"string\"},"
    "{\"name\":\"stage\",\"type\":\"string\"},"
    "{\"name\":\"created_date\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
    "{\"name\":\"expected_close_date\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
    "{\"name\":\"speed_to_close\",\"type\":\"double\"},"
    "{\"name\":\"largest_deal\",\"type\":\"double\"},"
    "{\"name\":\"product_mix\",\"type\":\"double\"},"
    "{\"name\":\"upsell_instances\",\"type\":\"double\"},"
    "{\"name\":\"win_rate\",\"type\":\"double\"},"
    "{\"name\":\"recency\",\"type\":\"double\"}]}";

static void set_named(avro_value_t *rec, const char *name, int kind, const void *v)
{
    avro_value_t f;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    switch (kind) {
    case 's':
        assert_int_equal(avro_value_set_string(&f, (const char *)v), 0);
        break;
    case 'l':
        assert_int_equal(avro_value_set_long(&f, *(const int64_t *)v), 0);
        break;
    case 'i':
        assert_int_equal(avro_value_set_int(&f, *(const int32_t *)v), 0);
        break;
    default:
        assert_int_equal(avro_value_set_double(&f, *(const double *)v), 0);
    }
}

static void test_codec_roundtrip_and_evolution(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/schemas", source_dir());
    cl_avro_schemas *set = NULL;
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK)
        fail_msg("cl_avro_schemas_load(%s): %s", dir, err);
    assert_int_equal(cl_avro_schemas_add_text(set, old_snapshot_schema, strlen(old_snapshot_schema),
                                              "old-snapshot", 0, err, sizeof err),
                     CL_OK);

    /* Every record: struct -> codec value -> framed bytes -> decoded value -> struct. */
    cl_avro_codec *codec[N_SCHEMAS];
    for (int i = 0; i < N_SCHEMAS; i++) {
        cl_avro_codec_opts opts = {.framing = CL_AVRO_FRAMING_SINGLE_OBJECT};
        if (cl_avro_codec_new(&codec[i], set, schema_names[i], &opts, err, sizeof err) != CL_OK)
            fail_msg("codec for %s: %s", schema_names[i], err);
    }
    cl_snapshot s, s2;
    cl_outcome o;
    cl_labeled_example *e = malloc(sizeof *e), *e2 = malloc(sizeof *e2);
    cl_model_metrics *m = malloc(sizeof *m), *m2 = malloc(sizeof *m2);
    cl_weight_config *w = malloc(sizeof *w), *w2 = malloc(sizeof *w2);
    assert_true(e && e2 && m && m2 && w && w2);
    full_snapshot(&s);
    full_outcome(&o);
    assert_int_equal(cl_labeled_from(&s, &o, 1746450100000, e, err, sizeof err), CL_OK);
    fill_metrics(m);
    fill_weight_config(w);
    cl_weight_config_sort_categories(w);

    cl_buf buf;
    avro_value_t *value;
    for (int i = 0; i < N_SCHEMAS; i++) {
        avro_value_t *in = cl_avro_codec_value(codec[i]);
        int rc = i == SNAPSHOT  ? cl_snapshot_to_avro(&s, in, err, sizeof err)
                 : i == OUTCOME ? cl_outcome_to_avro(&o, in, err, sizeof err)
                 : i == LABELED ? cl_labeled_example_to_avro(e, in, err, sizeof err)
                 : i == METRICS ? cl_model_metrics_to_avro(m, in, err, sizeof err)
                                : cl_weight_config_to_avro(w, in, err, sizeof err);
        assert_int_equal(rc, CL_OK);
        cl_buf_init(&buf, 0);
        if (cl_avro_codec_encode(codec[i], in, &buf, err, sizeof err) != CL_OK)
            fail_msg("encode %s: %s", schema_names[i], err);
        assert_int_equal((unsigned char)buf.data[0], 0xC3);
        if (cl_avro_codec_decode(codec[i], buf.data, buf.len, &value, err, sizeof err) != CL_OK)
            fail_msg("decode %s: %s", schema_names[i], err);
        cl_buf_free(&buf);
        switch (i) {
        case SNAPSHOT:
            assert_int_equal(cl_snapshot_from_avro(value, &s2, err, sizeof err), CL_OK);
            assert_snapshot_equal(&s, &s2);
            break;
        case OUTCOME: {
            cl_outcome o2;
            assert_int_equal(cl_outcome_from_avro(value, &o2, err, sizeof err), CL_OK);
            assert_outcome_equal(&o, &o2);
            break;
        }
        case LABELED:
            assert_int_equal(cl_labeled_example_from_avro(value, e2, err, sizeof err), CL_OK);
            assert_snapshot_equal(&e->snapshot, &e2->snapshot);
            assert_outcome_equal(&e->outcome, &e2->outcome);
            assert_int_equal(e2->days_before_close, e->days_before_close);
            break;
        case METRICS:
            assert_int_equal(cl_model_metrics_from_avro(value, m2, err, sizeof err), CL_OK);
            assert_true(m2->n == m->n && m2->confusion.tp == m->confusion.tp);
            assert_int_equal(m2->n_calibration_bins, m->n_calibration_bins);
            break;
        default:
            assert_int_equal(cl_weight_config_from_avro(value, w2, err, sizeof err), CL_OK);
            assert_true(w2->version == w->version);
            assert_int_equal(w2->components[0].n_categories, 3);
            break;
        }
    }

    /* Bytes written with the old snapshot schema decode into the current one with
     * defaults (account_id null, currency USD, empty maps, no scores). */
    const cl_avro_schema *old = NULL;
    for (size_t i = 0; i < cl_avro_schemas_count(set); i++) {
        int current;
        const cl_avro_schema *x = cl_avro_schemas_at(set, i, &current);
        if (!current && strcmp(cl_avro_schema_origin(x), "old-snapshot") == 0) old = x;
    }
    assert_non_null(old);
    avro_value_iface_t *cls = avro_generic_class_from_schema(cl_avro_schema_avro(old));
    assert_non_null(cls);
    avro_value_t ov;
    assert_int_equal(avro_generic_value_new(cls, &ov), 0);
    int64_t t = 1740981600000;
    int32_t d1 = 20000, d2 = 20200;
    double c = 50;
    set_named(&ov, "snapshot_id", 's', "0123456789abcdef0123456789abcdef");
    set_named(&ov, "run_id", 's', "old-run");
    set_named(&ov, "snapshot_time", 'l', &t);
    set_named(&ov, "opportunity_id", 's', "006OLD");
    set_named(&ov, "stage", 's', "Qualification");
    set_named(&ov, "created_date", 'i', &d1);
    set_named(&ov, "expected_close_date", 'i', &d2);
    for (int i = 0; i < CL_NUM_BUILTINS; i++)
        set_named(&ov, cl_builtin_component_names[i], 'd', &c);
    unsigned char framed[4096] = {0xC3, 0x01};
    uint64_t fp = cl_avro_schema_fingerprint(old);
    for (int i = 0; i < 8; i++)
        framed[2 + i] = (unsigned char)(fp >> (8 * i));
    size_t n = encode(&ov, (char *)framed + 10, sizeof framed - 10);
    avro_value_decref(&ov);
    avro_value_iface_decref(cls);
    if (cl_avro_codec_decode(codec[SNAPSHOT], framed, n + 10, &value, err, sizeof err) != CL_OK)
        fail_msg("decode old snapshot: %s", err);
    assert_int_equal(cl_snapshot_from_avro(value, &s2, err, sizeof err), CL_OK);
    assert_string_equal(s2.opportunity_id, "006OLD");
    assert_string_equal(s2.account_id, "");
    assert_string_equal(s2.currency, "USD");
    assert_false(s2.amount.present);
    assert_false(s2.days_in_stage.present);
    assert_int_equal(s2.n_attributes, 0);
    assert_int_equal(s2.n_features, 0);
    assert_int_equal(s2.n_scores, 0);
    assert_true(s2.components[CL_WIN_RATE] == 50);

    for (int i = 0; i < N_SCHEMAS; i++)
        cl_avro_codec_free(codec[i]);
    cl_avro_schemas_free(set);
    free(e);
    free(e2);
    free(m);
    free(m2);
    free(w);
    free(w2);
}

/* A WeightConfig written before `discovery` existed (schemas/history/WeightConfig.v1.avsc,
 * the layout already on compacted weights topics) is found by its fingerprint and
 * decodes through the current schema with an empty discovery list and every other field
 * intact. */
static void test_weight_config_before_discovery_decodes(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/schemas", source_dir());
    cl_avro_schemas *set = NULL;
    if (cl_avro_schemas_load(dir, &set, err, sizeof err) != CL_OK)
        fail_msg("cl_avro_schemas_load(%s): %s", dir, err);
    const cl_avro_schema *cur = cl_avro_schemas_find(set, "closedloop.WeightConfig"), *old = NULL;
    assert_non_null(cur);
    for (size_t i = 0; i < cl_avro_schemas_count(set); i++) {
        int current;
        const cl_avro_schema *x = cl_avro_schemas_at(set, i, &current);
        if (!current && strcmp(cl_avro_schema_name(x), "closedloop.WeightConfig") == 0 &&
            strstr(cl_avro_schema_origin(x), "WeightConfig.v1.avsc"))
            old = x;
    }
    if (!old) fail_msg("schemas/history/WeightConfig.v1.avsc is not loaded");
    /* The fingerprint of every WeightConfig published before the change (on the wire, and
     * as `closedloop-avro fingerprint` prints it: 71 e1 f7 24 ad 32 e0 02). */
    assert_true(cl_avro_schema_fingerprint(old) == 0x02e032ad24f7e171ULL);
    assert_true(cl_avro_schema_fingerprint(cur) != cl_avro_schema_fingerprint(old));
    assert_null(strstr(cl_avro_schema_text(old), "discovery"));

    cl_avro_codec *codec;
    cl_avro_codec_opts opts = {.framing = CL_AVRO_FRAMING_SINGLE_OBJECT};
    if (cl_avro_codec_new(&codec, set, "WeightConfig", &opts, err, sizeof err) != CL_OK)
        fail_msg("codec: %s", err);
    cl_weight_config *w = malloc(sizeof *w), *back = malloc(sizeof *back);
    assert_true(w && back);
    fill_weight_config(w);
    cl_weight_config_sort_categories(w);

    /* The same record in the old layout: through Avro JSON, minus the new field. */
    avro_value_t *nv = cl_avro_codec_value(codec);
    assert_int_equal(cl_weight_config_to_avro(w, nv, err, sizeof err), CL_OK);
    json_t *j = NULL;
    if (cl_avro_value_to_json(nv, cur, &j, err, sizeof err) != CL_OK) fail_msg("to json: %s", err);
    assert_int_equal(json_object_del(j, "discovery"), 0);
    avro_value_iface_t *cls = avro_generic_class_from_schema(cl_avro_schema_avro(old));
    assert_non_null(cls);
    avro_value_t ov;
    assert_int_equal(avro_generic_value_new(cls, &ov), 0);
    if (cl_avro_value_from_json(&ov, old, j, err, sizeof err) != CL_OK)
        fail_msg("old value from json: %s", err);
    json_decref(j);
    static unsigned char framed[1 << 16] = {0xC3, 0x01};
    uint64_t fp = cl_avro_schema_fingerprint(old);
    for (int i = 0; i < 8; i++)
        framed[2 + i] = (unsigned char)(fp >> (8 * i));
    size_t n = encode(&ov, (char *)framed + 10, sizeof framed - 10);
    avro_value_decref(&ov);
    avro_value_iface_decref(cls);

    avro_value_t *value;
    if (cl_avro_codec_decode(codec, framed, n + 10, &value, err, sizeof err) != CL_OK)
        fail_msg("decode old WeightConfig: %s", err);
    assert_ptr_equal(cl_avro_codec_last_writer(codec), old);
    assert_int_equal(cl_weight_config_from_avro(value, back, err, sizeof err), CL_OK);
    assert_int_equal(back->n_discovery, 0);
    assert_string_equal(back->model, w->model);
    assert_true(back->version == w->version && back->status == w->status);
    assert_int_equal(back->weights.n, w->weights.n);
    assert_int_equal(back->n_components, 2);
    assert_int_equal(back->components[0].n_categories, 3);
    assert_true(back->components[1].descending);
    assert_true(back->has_training && back->training.n_lost == 600);
    assert_string_equal(back->reason, w->reason);

    cl_avro_codec_free(codec);
    cl_avro_schemas_free(set);
    free(w);
    free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_roundtrip_full),
        cmocka_unit_test(test_snapshot_nulls_roundtrip),
        cmocka_unit_test(test_snapshot_to_avro_rejects_invalid),
        cmocka_unit_test(test_snapshot_from_avro_rejects_hostile),
        cmocka_unit_test(test_snapshot_id),
        cmocka_unit_test(test_outcome_roundtrip_and_rules),
        cmocka_unit_test(test_labeled_from_and_roundtrip),
        cmocka_unit_test(test_day_of_ms),
        cmocka_unit_test(test_metrics_roundtrip_and_rules),
        cmocka_unit_test(test_weight_config_roundtrip),
        cmocka_unit_test(test_weight_config_from_avro_validates),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_fastavro_interop),
        cmocka_unit_test(test_codec_roundtrip_and_evolution),
        cmocka_unit_test(test_weight_config_before_discovery_decodes),
    };
    return cmocka_run_group_tests(tests, load_schemas, free_schemas);
}
