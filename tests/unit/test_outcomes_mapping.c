/* Unit tests for workers/outcomes/outcome_mapping: Salesforce JSON and CSV rows into
 * validated opportunities, and the publish/retract/skip decision with its dedupe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "csv.h"
#include "outcomes/outcome_mapping.h"
#include "outcomes/outcomes.h"

static json_t *record(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

static void test_json_closed_won(void **state)
{
    json_t *j = record("{\"attributes\":{\"type\":\"Opportunity\"},\"Id\":\"006xx000001AbcdAAA\","
                       "\"AccountId\":\"001xx000003DGb2AAG\",\"OwnerId\":null,"
                       "\"StageName\":\"Closed Won\",\"IsClosed\":true,\"IsWon\":true,"
                       "\"IsDeleted\":false,\"CloseDate\":\"2024-03-31\",\"Amount\":12500.5,"
                       "\"CreatedDate\":\"2024-01-01T23:30:00.000-0200\","
                       "\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\","
                       "\"LastModifiedDate\":\"2024-04-01T07:59:00.000+0000\","
                       "\"Type\":\"New Business\",\"LeadSource\":null}");
    cl_sf_opportunity o;
    char err[CL_ERRLEN];
    assert_int_equal(cl_sf_opportunity_from_json(j, "SystemModstamp", &o, err, sizeof err), CL_OK);
    assert_string_equal(o.id, "006xx000001AbcdAAA");
    assert_string_equal(o.account_id, "001xx000003DGb2AAG");
    assert_string_equal(o.owner_id, "");
    assert_true(o.is_closed && o.is_won && !o.is_deleted);
    assert_true(o.has_amount && o.amount == 12500.5);
    /* -0200: the UTC instant is 2024-01-02T01:30Z, so the created day is Jan 2. */
    assert_int_equal(o.created_ms, 1704159000000LL);
    assert_int_equal(o.modstamp_ms, 1711958400000LL);
    assert_int_equal(cl_outcome_days_to_close(&o), 89);
    assert_string_equal(o.type, "New Business");
    assert_string_equal(o.lead_source, "");
    /* LastModifiedDate as the version field. */
    assert_int_equal(cl_sf_opportunity_from_json(j, "LastModifiedDate", &o, err, sizeof err),
                     CL_OK);
    assert_int_equal(o.modstamp_ms, 1711958340000LL);
    json_decref(j);
}

static void test_json_rejects_hostile_fields(void **state)
{
    cl_sf_opportunity o;
    char err[CL_ERRLEN];
    const char *bad[] = {
        "{\"Id\":\"006'; "
        "DROP\",\"IsClosed\":true,\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\"}",
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":true,\"CloseDate\":\"2024-03-31\","
        "\"SystemModstamp\":\"yesterday\"}",
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":true,\"CloseDate\":\"2024-02-30\","
        "\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\"}",
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":true,\"CloseDate\":\"2024-03-31\","
        "\"Amount\":\"1e999\",\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\"}",
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":\"maybe\"}",
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":true,\"SystemModstamp\":"
        "\"2024-04-01T08:00:00.000+0000\"}", /* closed without CloseDate */
        "{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":false,\"IsWon\":true,"
        "\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\"}",
        "[1,2]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = record(bad[i]);
        err[0] = '\0';
        assert_int_not_equal(cl_sf_opportunity_from_json(j, NULL, &o, err, sizeof err), CL_OK);
        assert_true(strlen(err) > 0);
        json_decref(j);
    }
    json_t *j = record("{\"Id\":\"006xx000001AbcdAAA\",\"IsClosed\":true,\"CloseDate\":"
                       "\"2024-02-30\",\"SystemModstamp\":\"2024-04-01T08:00:00.000+0000\"}");
    cl_sf_opportunity_from_json(j, NULL, &o, err, sizeof err);
    assert_non_null(strstr(err, "006xx000001AbcdAAA"));
    assert_non_null(strstr(err, "CloseDate"));
    json_decref(j);
}

static void test_decide(void **state)
{
    cl_sf_opportunity o = {0};
    strcpy(o.id, "006xx000001AbcdAAA");
    o.is_closed = 1;
    o.is_won = 1;
    o.modstamp_ms = 1000;
    cl_outcome_seen seen = {CL_OUTCOME_SEEN_NONE, 0};
    assert_int_equal(cl_outcome_decide(&o, NULL), CL_OUTCOME_PUBLISH);
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_PUBLISH);
    /* Lookback overlap: same (Id, SystemModstamp) again is a duplicate, older too. */
    seen = (cl_outcome_seen){CL_OUTCOME_SEEN_OUTCOME, 1000};
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_SKIP_DUPLICATE);
    seen.modstamp_ms = 2000;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_SKIP_DUPLICATE);
    /* Changed after close: a new version. */
    seen.modstamp_ms = 500;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_PUBLISH);
    /* Re-opened after an outcome was published: retract. */
    o.is_closed = o.is_won = 0;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_RETRACT);
    /* Open and never published: nothing to say. */
    assert_int_equal(cl_outcome_decide(&o, NULL), CL_OUTCOME_SKIP_NOTHING_TO_SAY);
    /* Already retracted, still open with a newer stamp: nothing more to say. */
    seen.state = CL_OUTCOME_SEEN_RETRACTED;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_SKIP_NOTHING_TO_SAY);
    /* Closed again after the retraction: publish. */
    o.is_closed = 1;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_PUBLISH);
    /* Deleted. */
    o.is_deleted = 1;
    seen.state = CL_OUTCOME_SEEN_OUTCOME;
    assert_int_equal(cl_outcome_decide(&o, &seen), CL_OUTCOME_RETRACT);
    assert_int_equal(cl_outcome_decide(&o, NULL), CL_OUTCOME_SKIP_NOTHING_TO_SAY);
}

static void test_csv_report_export(void **state)
{
    const char *text = "\xEF\xBB\xBF\"Opportunity ID\",Stage,Close Date,Amount,Created Date\r\n"
                       "006xx000001AbcdAAA,Closed Won,3/31/2024,\"1,200.00\",1/2/2024\r\n"
                       "006xx000001AbceAAA,Closed Lost,4/1/2024,300,1/3/2024\r\n"
                       "006xx000001AbcfAAA,Negotiation,4/1/2024,,1/3/2024\r\n";
    cl_csv_reader r;
    cl_csv_reader_init(&r, text, strlen(text));
    char **f;
    size_t n;
    char err[CL_ERRLEN];
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    cl_sf_csv_mapping m;
    /* Without renames the labels do not match the API names. */
    assert_int_equal(cl_sf_csv_mapping_from_header(&m, f, n, NULL, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "outcomes.csv.columns"));
    assert_int_equal(cl_sf_csv_mapping_from_header(&m, f, n,
                                                   "Id=Opportunity ID,StageName=Stage,"
                                                   "CloseDate=Close Date,CreatedDate=Created Date",
                                                   err, sizeof err),
                     CL_OK);
    m.us_dates = 1;
    cl_sf_opportunity o;
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    /* "1,200.00" is not a plain number: the error names the field. */
    assert_int_equal(cl_sf_opportunity_from_csv(&m, f, n, NULL, &o, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "Amount"));
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    assert_int_equal(cl_sf_opportunity_from_csv(&m, f, n, NULL, &o, err, sizeof err), CL_OK);
    assert_true(o.is_closed && !o.is_won);
    assert_int_equal(o.modstamp_ms, (int64_t)o.close_date * 86400000); /* close date stands in */
    assert_int_equal(cl_outcome_days_to_close(&o), 89);
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    assert_int_equal(cl_sf_opportunity_from_csv(&m, f, n, NULL, &o, err, sizeof err), CL_OK);
    assert_false(o.is_closed);
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_ENOTFOUND);
    cl_csv_reader_free(&r);
}

static void test_csv_bulk_results(void **state)
{
    const char *text = "\"Id\",\"IsClosed\",\"IsWon\",\"IsDeleted\",\"StageName\",\"CloseDate\","
                       "\"SystemModstamp\"\n"
                       "006xx000001AbcdAAA,true,false,false,\"Closed, Lost\",2024-03-31,"
                       "2024-04-01T08:00:00.000Z\n";
    cl_csv_reader r;
    cl_csv_reader_init(&r, text, strlen(text));
    char **f;
    size_t n;
    char err[CL_ERRLEN];
    cl_sf_csv_mapping m;
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    assert_int_equal(cl_sf_csv_mapping_from_header(&m, f, n, "", err, sizeof err), CL_OK);
    assert_int_equal(cl_csv_next_row(&r, &f, &n, err, sizeof err), CL_OK);
    cl_sf_opportunity o;
    assert_int_equal(cl_sf_opportunity_from_csv(&m, f, n, "SystemModstamp", &o, err, sizeof err),
                     CL_OK);
    assert_string_equal(o.stage_name, "Closed, Lost");
    assert_true(o.is_closed && !o.is_won);
    assert_int_equal(o.modstamp_ms, 1711958400000LL);
    /* A short row is an error, not a shifted record. */
    char *short_row[] = {"006xx000001AbcdAAA", "true"};
    assert_int_equal(cl_sf_opportunity_from_csv(&m, short_row, 2, NULL, &o, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_sf_csv_mapping_from_header(&m, f, n, "Nope=x", err, sizeof err), CL_EINVAL);
    cl_csv_reader_free(&r);
}

static void test_position_round_trip_and_corruption(void **state)
{
    cl_outcomes_position p = {
        .active = 1, .before_ms = 1717200000000LL, .from_ms = 1717100000000LL};
    strcpy(p.job_id, "750xx000000001AAA");
    strcpy(p.locator, "MTAwMDA");
    cl_buf b;
    cl_buf_init(&b, 0);
    assert_int_equal(cl_outcomes_position_encode(&p, &b), CL_OK);
    cl_outcomes_position q;
    char err[CL_ERRLEN];
    assert_int_equal(cl_outcomes_position_decode(b.data, b.len, &q, err, sizeof err), CL_OK);
    assert_true(q.active && q.before_ms == p.before_ms && q.from_ms == p.from_ms);
    assert_string_equal(q.job_id, p.job_id);
    assert_string_equal(q.locator, p.locator);
    const char *bad[] = {"", "{", "{\"before\":1,\"from\":2,\"job\":\"\",\"locator\":\"\"}",
                         "{\"before\":\"x\",\"from\":0,\"job\":\"\",\"locator\":\"\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cl_outcomes_position_decode(bad[i], strlen(bad[i]), &q, err, sizeof err),
                         CL_EINVAL);
    cl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_closed_won),
        cmocka_unit_test(test_json_rejects_hostile_fields),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_csv_report_export),
        cmocka_unit_test(test_csv_bulk_results),
        cmocka_unit_test(test_position_round_trip_and_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
