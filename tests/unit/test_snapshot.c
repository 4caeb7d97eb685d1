/*
 * test_snapshot.c — the snapshot worker's pure logic: the export reader (input.h), the
 * champion/challenger book (weights.h) and a run's validation pass (plan.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "snapshot/input.h"
#include "snapshot/plan.h"
#include "snapshot/weights.h"
#include "score.h"
#include "util.h"

static const char HEADER[] =
    "run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
    "created_date,expected_close_date,days_in_stage,segment,region,product,lead_source,type,"
    "speed_to_close,largest_deal,product_mix,upsell_instances,win_rate,recency,"
    "opportunity_score,account_score\n";
static const char GOOD_ROW[] =
    "run-1,2025-03-03T06:00:00.000Z,006A,001A,005A,Proposal,1000.5,,2025-01-01,2025-06-30,12,"
    "Enterprise,EMEA,Widgets,,New Business,10,20,30,40,50,60,37.5,\n";

/* ---- reader --------------------------------------------------------------------------- */

typedef struct {
    cl_snapshot_input_spec spec;
    cl_snapshot_input *in;
    char *data;
} reader;

static void open_reader(reader *r, const char *text, const char *name, const char *columns,
                        const char *attributes, const char *features, const char *stages)
{
    char err[CL_ERRLEN];
    assert_int_equal(cl_snapshot_input_spec_init(&r->spec, columns, attributes, features, stages,
                                                 err, sizeof err),
                     CL_OK);
    r->data = strdup(text);
    int rc = cl_snapshot_input_open(&r->in, &r->spec, name, r->data, strlen(r->data),
                                    CL_SNAPSHOT_FORMAT_AUTO, NULL, err, sizeof err);
    if (rc != CL_OK) fail_msg("open: %s", err);
}

static void close_reader(reader *r)
{
    cl_snapshot_input_close(r->in);
    cl_snapshot_input_spec_free(&r->spec);
    free(r->data);
}

/* Reads the single data row of `row` under the standard header and returns the status
 * with the message in err. */
static int one_row(const char *row, const char *stages, cl_snapshot *s, char *err, size_t errlen)
{
    char text[4096];
    snprintf(text, sizeof text, "%s%s", HEADER, row);
    reader r;
    open_reader(&r, text, "run.csv", NULL, NULL, NULL, stages);
    size_t line;
    int rc = cl_snapshot_input_next(r.in, s, &line, err, errlen);
    assert_int_equal(line, 2);
    close_reader(&r);
    return rc;
}

static void test_csv_good_row(void **state)
{
    (void)state;
    cl_snapshot s;
    char err[CL_ERRLEN];
    assert_int_equal(one_row(GOOD_ROW, NULL, &s, err, sizeof err), CL_OK);
    assert_string_equal(s.run_id, "run-1");
    assert_string_equal(s.opportunity_id, "006A");
    assert_string_equal(s.stage, "Proposal");
    assert_string_equal(s.currency, "USD"); /* empty: the schema default */
    assert_string_equal(s.lead_source, ""); /* empty: null */
    assert_true(s.amount.present);
    assert_true(s.amount.value == 1000.5);
    assert_true(s.days_in_stage.present);
    assert_int_equal(s.days_in_stage.value, 12);
    assert_true(s.components[CL_SPEED_TO_CLOSE] == 10 && s.components[CL_RECENCY] == 60);
    assert_true(s.opportunity_score.present && s.opportunity_score.value == 37.5);
    assert_false(s.account_score.present);
    assert_int_equal(s.snapshot_time, 1740981600000LL);
    char id[CL_SNAPSHOT_ID_LEN + 1];
    assert_int_equal(cl_snapshot_id("run-1", "006A", id, err, sizeof err), CL_OK);
    assert_string_equal(s.snapshot_id, id);
    assert_int_equal(s.n_scores, 0);
}

/* Replaces the n-th (0-based) comma-separated cell of GOOD_ROW. */
static void with_cell(int n, const char *value, char *out, size_t outlen)
{
    const char *p = GOOD_ROW;
    size_t o = 0;
    for (int i = 0; *p && *p != '\n'; i++) {
        const char *e = strpbrk(p, ",\n");
        if (i == n)
            o += (size_t)snprintf(out + o, outlen - o, "%s", value);
        else
            o += (size_t)snprintf(out + o, outlen - o, "%.*s", (int)(e - p), p);
        if (*e == ',') o += (size_t)snprintf(out + o, outlen - o, ",");
        p = *e == ',' ? e + 1 : e;
    }
    snprintf(out + o, outlen - o, "\n");
}

static void expect_bad(int cell, const char *value, const char *stages, const char *message)
{
    char row[2048], err[CL_ERRLEN];
    with_cell(cell, value, row, sizeof row);
    cl_snapshot s;
    int rc = one_row(row, stages, &s, err, sizeof err);
    if (rc != CL_EINVAL || !strstr(err, message))
        fail_msg("cell %d = '%s': status %d, message '%s', expected '%s'", cell, value, rc, err,
                 message);
}

static void test_csv_bad_rows_name_line_and_column(void **state)
{
    (void)state;
    expect_bad(2, "", NULL, "run.csv line 2 column 3 (opportunity_id): is empty");
    expect_bad(17, "abc", NULL, "run.csv line 2 column 18 (largest_deal): 'abc' is not a number");
    expect_bad(18, "100.01", NULL, "line 2 column 19 (product_mix): '100.01' is outside 0..100");
    expect_bad(16, "-1", NULL, "column 17 (speed_to_close): '-1' is outside 0..100");
    expect_bad(21, "nan", NULL, "column 22 (recency): 'nan' is not a number");
    expect_bad(16, "", NULL, "column 17 (speed_to_close): is empty");
    expect_bad(5, "Closed Won", "Prospecting,Proposal",
               "column 6 (stage): 'Closed Won' is not one of snapshot.stages");
    expect_bad(1, "yesterday", NULL, "column 2 (snapshot_time): 'yesterday' is not an ISO-8601");
    expect_bad(8, "2025-02-30", NULL, "column 9 (created_date): '2025-02-30' is not a date");
    expect_bad(10, "-3", NULL, "column 11 (days_in_stage): '-3' is outside 0..2147483647");
    expect_bad(10, "1.5", NULL, "column 11 (days_in_stage): '1.5' is not an integer");
    expect_bad(22, "101", NULL, "column 23 (opportunity_score): '101' is outside 0..100");
    expect_bad(11, "\xC3\x28", NULL, "column 12 (segment): is not valid UTF-8");
    char long_id[200];
    memset(long_id, 'x', 129);
    long_id[129] = '\0';
    expect_bad(2, long_id, NULL, "column 3 (opportunity_id): 'xxxx");
    expect_bad(2, long_id, NULL, "is longer than 128 bytes");
    /* A stage list that allows the stage accepts the row. */
    cl_snapshot s;
    char err[CL_ERRLEN];
    assert_int_equal(one_row(GOOD_ROW, "Prospecting, Proposal", &s, err, sizeof err), CL_OK);
}

static void test_csv_structure(void **state)
{
    (void)state;
    char err[CL_ERRLEN];
    cl_snapshot_input_spec spec;
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, NULL, NULL, NULL, err, sizeof err),
                     CL_OK);
    cl_snapshot_input *in;
    /* A required column missing from the header fails the file. */
    const char *no_recency = "run_id,snapshot_time,opportunity_id,stage,created_date,"
                             "expected_close_date,speed_to_close,largest_deal,product_mix,"
                             "upsell_instances,win_rate\n";
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "a.csv", no_recency, strlen(no_recency),
                                            CL_SNAPSHOT_FORMAT_CSV, NULL, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "a.csv line 1: required column 'recency'"));
    /* A column named twice. */
    char dup[2048];
    snprintf(dup, sizeof dup, "%.*s,stage\n", (int)strlen(HEADER) - 1, HEADER);
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "a.csv", dup, strlen(dup),
                                            CL_SNAPSHOT_FORMAT_CSV, NULL, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "column 25: column 'stage' appears twice"));
    /* Empty input, NUL bytes. */
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "e.csv", "", 0, CL_SNAPSHOT_FORMAT_CSV,
                                            NULL, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "n.csv", "a\0b", 3, CL_SNAPSHOT_FORMAT_CSV,
                                            NULL, err, sizeof err),
                     CL_EINVAL);
    assert_non_null(strstr(err, "NUL byte at offset 1"));

    /* Wrong number of cells is a bad row; a quoting error ends the file; blank lines and
     * a BOM are fine; quoted cells may hold commas. */
    char text[8192];
    snprintf(text, sizeof text,
             "\xEF\xBB\xBF%s%s\n1,2,3\n%s"
             "run-1,2025-03-03T06:00:00Z,\"006,Q\",,,Proposal,,,2025-01-01,2025-06-30,,,,,,,"
             "1,2,3,4,5,6,,\n"
             "run-1,x\"y,006Z\n",
             HEADER, GOOD_ROW, GOOD_ROW);
    const char *ignored;
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "b.csv", text, strlen(text),
                                            CL_SNAPSHOT_FORMAT_AUTO, &ignored, err, sizeof err),
                     CL_OK);
    assert_string_equal(ignored, "");
    cl_snapshot s;
    size_t line;
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_int_equal(line, 2);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_int_equal(line, 4);
    assert_non_null(strstr(err, "b.csv line 4: 3 columns, the header has 24"));
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_int_equal(line, 5);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_string_equal(s.opportunity_id, "006,Q");
    assert_false(s.amount.present);
    assert_false(s.days_in_stage.present);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_ERR);
    assert_non_null(strstr(err, "b.csv line 7"));
    cl_snapshot_input_close(in);
    cl_snapshot_input_spec_free(&spec);
}

static void test_column_mapping_attributes_features(void **state)
{
    (void)state;
    const char *text =
        "Run,When,OppId,Stage,Created,Close,S,L,P,U,W,R,Channel,Propensity,Unused\n"
        "r9,2025-03-03,006M,Negotiation,2025-01-01,2025-04-01,1,2,3,4,5,6,Partner,77.5,zzz\n"
        "r9,2025-03-03,006N,Negotiation,2025-01-01,2025-04-01,1,2,3,4,5,6,,,zzz\n"
        "r9,2025-03-03,006O,Negotiation,2025-01-01,2025-04-01,1,2,3,4,5,6,,high,zzz\n";
    char err[CL_ERRLEN];
    cl_snapshot_input_spec spec;
    assert_int_equal(
        cl_snapshot_input_spec_init(&spec,
                                    "run_id=Run, snapshot_time=When,opportunity_id=OppId,"
                                    "stage=Stage,created_date=Created,expected_close_date=Close,"
                                    "speed_to_close=S,largest_deal=L,product_mix=P,"
                                    "upsell_instances=U,win_rate=W,recency=R",
                                    "Channel", "Propensity", NULL, err, sizeof err),
        CL_OK);
    cl_snapshot_input *in;
    const char *ignored;
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "m.csv", text, strlen(text),
                                            CL_SNAPSHOT_FORMAT_CSV, &ignored, err, sizeof err),
                     CL_OK);
    assert_string_equal(ignored, "Unused");
    cl_snapshot s;
    size_t line;
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_string_equal(s.run_id, "r9");
    assert_int_equal(s.n_attributes, 1);
    assert_string_equal(s.attributes[0].key, "Channel");
    assert_string_equal(s.attributes[0].value, "Partner");
    assert_int_equal(s.n_features, 1);
    assert_string_equal(s.features[0].name, "Propensity");
    assert_true(s.features[0].value == 77.5);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_int_equal(s.n_attributes, 0);
    assert_int_equal(s.n_features, 0);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "m.csv line 4 column 14 (Propensity): 'high' is not a number"));
    cl_snapshot_input_close(in);
    cl_snapshot_input_spec_free(&spec);

    /* Spec errors name the option. */
    assert_int_equal(
        cl_snapshot_input_spec_init(&spec, "nosuch=X", NULL, NULL, NULL, err, sizeof err),
        CL_EINVAL);
    assert_non_null(strstr(err, "'nosuch' is not a snapshot field"));
    assert_int_equal(cl_snapshot_input_spec_init(&spec, "stage", NULL, NULL, NULL, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(
        cl_snapshot_input_spec_init(&spec, "stage=A,stage=B", NULL, NULL, NULL, err, sizeof err),
        CL_EINVAL);
    assert_int_equal(
        cl_snapshot_input_spec_init(&spec, "stage=type", NULL, NULL, NULL, err, sizeof err),
        CL_EINVAL);
    assert_non_null(strstr(err, "feeds both"));
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, "stage", NULL, NULL, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, "A", "A", NULL, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, NULL, NULL, "a,,b", err, sizeof err),
                     CL_EINVAL);
}

static void test_jsonl(void **state)
{
    (void)state;
    const char *text =
        "{\"run_id\":\"r1\",\"snapshot_time\":\"2025-03-03T06:00:00.000Z\",\"opportunity_id\":"
        "\"006J\",\"account_id\":null,\"stage\":\"Proposal\",\"amount\":12.25,"
        "\"created_date\":\"2025-01-01\",\"expected_close_date\":\"2025-02-01\","
        "\"days_in_stage\":3,\"speed_to_close\":1,\"largest_deal\":2.5,\"product_mix\":3,"
        "\"upsell_instances\":4,\"win_rate\":5,\"recency\":6,\"extra\":[1]}\n"
        "\n"
        "not json\n"
        "[1,2]\n"
        "{\"run_id\":\"r1\",\"opportunity_id\":\"006K\",\"stage\":true}\n"
        "{\"run_id\":\"r1\",\"opportunity_id\":\"006L\"}\n"
        "{\"a\":1,\"a\":2}\n";
    char err[CL_ERRLEN];
    cl_snapshot_input_spec spec;
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, NULL, NULL, NULL, err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_snapshot_format_detect("x.jsonl", "", 0), CL_SNAPSHOT_FORMAT_JSONL);
    assert_int_equal(cl_snapshot_format_detect("-", " {", 2), CL_SNAPSHOT_FORMAT_JSONL);
    assert_int_equal(cl_snapshot_format_detect("-", "run_id", 6), CL_SNAPSHOT_FORMAT_CSV);
    cl_snapshot_input *in;
    assert_int_equal(cl_snapshot_input_open(&in, &spec, "j.jsonl", text, strlen(text),
                                            CL_SNAPSHOT_FORMAT_AUTO, NULL, err, sizeof err),
                     CL_OK);
    cl_snapshot s;
    size_t line;
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_OK);
    assert_int_equal(line, 1);
    assert_string_equal(s.opportunity_id, "006J");
    assert_true(s.components[CL_LARGEST_DEAL] == 2.5);
    assert_true(s.amount.present && s.amount.value == 12.25);
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_int_equal(line, 3);
    assert_non_null(strstr(err, "j.jsonl line 3 column"));
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "j.jsonl line 4: not a JSON object"));
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_non_null(
        strstr(err, "j.jsonl line 5 key \"stage\": must be a string, a number or null"));
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "j.jsonl line 6 key \"stage\": is missing"));
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_EINVAL);
    assert_int_equal(line, 7); /* duplicate keys are refused */
    assert_int_equal(cl_snapshot_input_next(in, &s, &line, err, sizeof err), CL_ENOTFOUND);
    cl_snapshot_input_close(in);
    cl_snapshot_input_spec_free(&spec);
}

/* ---- weights book -------------------------------------------------------------------- */

static cl_weight_config *config(const char *model, int64_t version, cl_model_status status)
{
    cl_weight_config *c = malloc(sizeof *c);
    cl_weight_config_seed(c, 0);
    snprintf(c->model, sizeof c->model, "%s", model);
    c->version = version;
    c->status = status;
    return c;
}

static cl_weights_effect apply(cl_weights_book *b, const char *model, int64_t version,
                               cl_model_status status)
{
    cl_weight_config *c = config(model, version, status);
    cl_weights_effect e;
    char why[256], err[CL_ERRLEN];
    assert_int_equal(cl_weights_book_apply(b, c, &e, why, sizeof why, err, sizeof err), CL_OK);
    free(c);
    return e;
}

static void active_versions(const cl_weights_book *b, const char *only, char *out, size_t outlen)
{
    const cl_weight_config *act[CL_MAX_SCORES];
    size_t n, dropped;
    cl_weights_book_active(b, only, act, CL_MAX_SCORES, &n, &dropped);
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, outlen - o, "%s%s:%lld:%s", i ? " " : "", act[i]->model,
                              (long long)act[i]->version,
                              act[i]->status == CL_MODEL_CHALLENGER ? "challenger" : "champion");
    if (dropped) snprintf(out + o, outlen - o, " +%zu", dropped);
}

static void expect_active(const cl_weights_book *b, const char *only, const char *expected)
{
    char got[1024];
    active_versions(b, only, got, sizeof got);
    assert_string_equal(got, expected);
}

/* The rules themselves are tested in test_weights.c; here, what the book adds: the seed
 * as the seed model's fallback champion, the change counter, and which records make a
 * model enter the book. */
static void test_book_seed_and_lifecycle(void **state)
{
    (void)state;
    cl_weights_book b;
    char err[CL_ERRLEN];
    assert_int_equal(cl_weights_book_init(&b, 0, err, sizeof err), CL_OK);
    const char *M = CL_SEED_MODEL;
    expect_active(&b, NULL, "opportunity_score:1:champion"); /* nothing on the topic: seed */
    /* Records that put nothing in force neither count as changes nor enter the book. */
    assert_int_equal(apply(&b, M, 1, CL_MODEL_CANDIDATE), CL_WEIGHTS_IGNORED);
    assert_int_equal(apply(&b, M, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_IGNORED); /* not > seed */
    assert_int_equal(apply(&b, M, 1, CL_MODEL_RETIRED), CL_WEIGHTS_IGNORED);    /* seed stays */
    assert_int_equal(apply(&b, "other", 4, CL_MODEL_REJECTED), CL_WEIGHTS_IGNORED);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.changes, 0);
    expect_active(&b, NULL, "opportunity_score:1:champion");
    /* A challenger above the seed scores beside it, until it ends. */
    assert_int_equal(apply(&b, M, 2, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(b.n, 1);
    expect_active(&b, NULL, "opportunity_score:1:champion opportunity_score:2:challenger");
    assert_int_equal(apply(&b, M, 2, CL_MODEL_REJECTED), CL_WEIGHTS_ENDED_CHALLENGER);
    expect_active(&b, NULL, "opportunity_score:1:champion");
    /* The seed model's entry keeps the seed as its champion until a CHAMPION record. */
    assert_int_equal(apply(&b, M, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_IGNORED);
    assert_int_equal(apply(&b, M, 3, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    /* Promotion: CHAMPION v3 replaces the seed and ends challenger v3. */
    assert_int_equal(apply(&b, M, 3, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    expect_active(&b, NULL, "opportunity_score:3:champion");
    assert_int_equal(apply(&b, M, 1, CL_MODEL_RETIRED), CL_WEIGHTS_IGNORED);
    assert_int_equal(apply(&b, M, 1, CL_MODEL_CHAMPION), CL_WEIGHTS_IGNORED); /* stale replay */
    /* A champion retired without successor stays in force. */
    assert_int_equal(apply(&b, M, 3, CL_MODEL_RETIRED), CL_WEIGHTS_IGNORED);
    expect_active(&b, NULL, "opportunity_score:3:champion");
    assert_int_equal(b.changes, 4);
    cl_weights_book_free(&b);

    /* A CHAMPION below the seed's version still replaces the seed. */
    assert_int_equal(cl_weights_book_init(&b, 0, err, sizeof err), CL_OK);
    assert_int_equal(apply(&b, M, 0, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    expect_active(&b, NULL, "opportunity_score:0:champion");
    assert_int_equal(b.changes, 1);
    cl_weights_book_free(&b);
}

static void test_book_models_order_and_bounds(void **state)
{
    (void)state;
    cl_weights_book b;
    char err[CL_ERRLEN];
    assert_int_equal(cl_weights_book_init(&b, 0, err, sizeof err), CL_OK);
    assert_int_equal(apply(&b, "zeta", 4, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(apply(&b, "alpha", 2, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    assert_int_equal(apply(&b, "alpha", 3, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    /* Models by name, champion before challenger; the seed model in its place; a model
     * with only a challenger scores with it alone. */
    expect_active(&b, NULL,
                  "alpha:2:champion alpha:3:challenger opportunity_score:1:champion "
                  "zeta:4:challenger");
    expect_active(&b, "zeta, alpha", "alpha:2:champion alpha:3:challenger zeta:4:challenger");
    expect_active(&b, "nosuch", "");
    assert_null(cl_weights_book_champion(&b, "zeta"));
    assert_non_null(cl_weights_book_champion(&b, CL_SEED_MODEL));
    for (int i = 0; i < 6; i++) {
        char m[16];
        snprintf(m, sizeof m, "m%d", i);
        apply(&b, m, 1, CL_MODEL_CHAMPION);
    }
    char got[1024];
    active_versions(&b, NULL, got, sizeof got);
    assert_non_null(strstr(got, " +")); /* 10 active versions, 8 fit */
    /* Past CL_WEIGHTS_MAX_MODELS a new model is refused, the book unchanged. */
    for (int i = 6; b.n < CL_WEIGHTS_MAX_MODELS; i++) {
        char m[16];
        snprintf(m, sizeof m, "m%d", i);
        apply(&b, m, 1, CL_MODEL_CHAMPION);
    }
    cl_weight_config *c = config("one-too-many", 1, CL_MODEL_CHAMPION);
    cl_weights_effect e;
    assert_int_equal(cl_weights_book_apply(&b, c, &e, NULL, 0, err, sizeof err), CL_EFULL);
    assert_int_equal(b.n, CL_WEIGHTS_MAX_MODELS);
    free(c);
    cl_weights_book_free(&b);
}

/* ---- plan ----------------------------------------------------------------------------- */

typedef struct {
    size_t lines[16];
    char messages[16][CL_ERRLEN];
    size_t n;
} bad_rows;

static void on_bad(size_t line, const char *message, void *ud)
{
    bad_rows *b = ud;
    if (b->n < 16) {
        b->lines[b->n] = line;
        snprintf(b->messages[b->n], CL_ERRLEN, "%s", message);
        b->n++;
    }
}

static void test_plan_run_level_checks(void **state)
{
    (void)state;
    char text[8192];
    char row2[1024], row3[1024], row4[1024];
    with_cell(2, "006B", row2, sizeof row2);
    with_cell(0, "run-2", row3, sizeof row3);
    with_cell(2, "006C", row4, sizeof row4);
    snprintf(text, sizeof text, "%s%s%s%s%s%s", HEADER, GOOD_ROW, row2, GOOD_ROW, row3, row4);
    char err[CL_ERRLEN];
    cl_snapshot_input_spec spec;
    assert_int_equal(cl_snapshot_input_spec_init(&spec, NULL, NULL, NULL, NULL, err, sizeof err),
                     CL_OK);
    cl_weights_book b;
    assert_int_equal(cl_weights_book_init(&b, 0, err, sizeof err), CL_OK);
    cl_weight_config *ch = config(CL_SEED_MODEL, 2, CL_MODEL_CHALLENGER);
    ch->weights.items[0].weight = 0.35; /* speed_to_close */
    ch->weights.items[3].weight = 0.05; /* upsell_instances */
    cl_weights_effect e;
    assert_int_equal(cl_weights_book_apply(&b, ch, &e, NULL, 0, err, sizeof err), CL_OK);
    const cl_weight_config *act[CL_MAX_SCORES];
    size_t n, dropped;
    cl_weights_book_active(&b, NULL, act, CL_MAX_SCORES, &n, &dropped);
    assert_int_equal(n, 2);

    bad_rows bad = {0};
    cl_snapshot_plan plan;
    assert_int_equal(cl_snapshot_plan_build(&plan, &spec, "p.csv", text, strlen(text),
                                            CL_SNAPSHOT_FORMAT_CSV, act, n, on_bad, &bad, err,
                                            sizeof err),
                     CL_OK);
    assert_int_equal(plan.n, 5);
    assert_int_equal(plan.good, 3);
    assert_int_equal(plan.bad, 2);
    assert_string_equal(plan.run_id, "run-1");
    assert_int_equal(plan.rows[0].state, CL_ROW_GOOD);
    assert_int_equal(plan.rows[1].state, CL_ROW_GOOD);
    assert_int_equal(plan.rows[2].state, CL_ROW_BAD);
    assert_int_equal(plan.rows[3].state, CL_ROW_BAD);
    assert_int_equal(plan.rows[4].state, CL_ROW_GOOD);
    assert_int_equal(plan.rows[4].line, 6);
    assert_int_equal(bad.n, 2);
    assert_int_equal(bad.lines[0], 4);
    assert_non_null(strstr(bad.messages[0], "p.csv line 4: opportunity_id '006A' appears twice"));
    assert_int_equal(bad.lines[1], 5);
    assert_non_null(strstr(bad.messages[1], "run_id 'run-2' differs from the run's 'run-1'"));
    cl_snapshot_plan_free(&plan);

    /* Scoring under both versions: champion (seed) first, then the challenger. */
    cl_snapshot s;
    assert_int_equal(one_row(GOOD_ROW, NULL, &s, err, sizeof err), CL_OK);
    assert_int_equal(cl_snapshot_score_all(&s, act, n, err, sizeof err), CL_OK);
    assert_int_equal(s.n_scores, 2);
    /* 0.15*10 + 0.2*20 + 0.15*30 + 0.25*40 + 0.2*50 + 0.05*60 = 33 */
    assert_true(s.scores[0].version == 1 && s.scores[0].score > 32.999999 &&
                s.scores[0].score < 33.000001);
    assert_int_equal(s.scores[0].band, CL_BAND_LOW);
    /* 0.35*10 + 0.2*20 + 0.15*30 + 0.05*40 + 0.2*50 + 0.05*60 = 27 */
    assert_true(s.scores[1].version == 2 && s.scores[1].score > 26.999999 &&
                s.scores[1].score < 27.000001);

    /* A file-level error publishes nothing: the plan fails. */
    const char *broken = "run_id,opportunity_id\n";
    assert_int_equal(cl_snapshot_plan_build(&plan, &spec, "q.csv", broken, strlen(broken),
                                            CL_SNAPSHOT_FORMAT_CSV, act, n, on_bad, &bad, err,
                                            sizeof err),
                     CL_EINVAL);
    assert_null(plan.rows);

    /* Many rows: the id set grows and still finds every duplicate. */
    cl_buf big;
    cl_buf_init(&big, 0);
    cl_buf_printf(&big, "%s", HEADER);
    for (int i = 0; i < 5000; i++) {
        char id[32], r[1024];
        snprintf(id, sizeof id, "006%05d", i % 4000);
        with_cell(2, id, r, sizeof r);
        cl_buf_printf(&big, "%s", r);
    }
    bad.n = 0;
    assert_int_equal(cl_snapshot_plan_build(&plan, &spec, "big.csv", big.data, big.len,
                                            CL_SNAPSHOT_FORMAT_CSV, act, n, NULL, NULL, err,
                                            sizeof err),
                     CL_OK);
    assert_int_equal(plan.good, 4000);
    assert_int_equal(plan.bad, 1000);
    assert_int_equal(plan.rows[4000].state, CL_ROW_BAD);
    cl_snapshot_plan_free(&plan);
    cl_buf_free(&big);

    free(ch);
    cl_weights_book_free(&b);
    cl_snapshot_input_spec_free(&spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_good_row),
        cmocka_unit_test(test_csv_bad_rows_name_line_and_column),
        cmocka_unit_test(test_csv_structure),
        cmocka_unit_test(test_column_mapping_attributes_features),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_book_seed_and_lifecycle),
        cmocka_unit_test(test_book_models_order_and_bounds),
        cmocka_unit_test(test_plan_run_level_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
