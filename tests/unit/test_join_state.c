/*
 * test_join_state.c — the join's per-opportunity state machine (workers/join/join_state.h):
 * waiting on either side, exclusion of post-close snapshots, re-emission on a newer
 * outcome version, retraction, replay idempotence, bounds, timers, binary form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "join_state.h"

#define DAY CL_JOIN_DAY_MS
/* 2025-03-03 and friends, as days since epoch and ms. */
#define D0 20150
#define T(day) ((int64_t)(day)*DAY + 6 * 3600 * 1000)

typedef struct {
    cl_join_policy policy;
    cl_join_state st;
    cl_join_emits em;
    char err[CL_ERRLEN];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    cl_join_policy_defaults(&f->policy);
    cl_join_state_init(&f->st, "006A000000abcde", 15);
    cl_join_emits_init(&f->em);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cl_join_state_free(&f->st);
    cl_join_emits_free(&f->em);
    free(f);
    return 0;
}

static void snap(fixture *f, int64_t offset, const char *id, int64_t t)
{
    char payload[64];
    int n = snprintf(payload, sizeof payload, "snap:%s", id);
    cl_join_emits_reset(&f->em);
    assert_int_equal(cl_join_apply_snapshot(&f->st, &f->policy, offset, id, t, payload, (size_t)n,
                                            &f->em, f->err, sizeof f->err),
                     CL_OK);
}

static void outcome(fixture *f, int64_t offset, int64_t version, int32_t close_date)
{
    char payload[64];
    int n = snprintf(payload, sizeof payload, "outcome:%lld", (long long)version);
    cl_join_emits_reset(&f->em);
    assert_int_equal(cl_join_apply_outcome(&f->st, &f->policy, offset, version, close_date, payload,
                                           (size_t)n, &f->em, f->err, sizeof f->err),
                     CL_OK);
}

static void tombstone(fixture *f, int64_t offset)
{
    cl_join_emits_reset(&f->em);
    assert_int_equal(
        cl_join_apply_tombstone(&f->st, &f->policy, offset, &f->em, f->err, sizeof f->err), CL_OK);
}

static const cl_join_emit *find_emit(const cl_join_emits *e, const char *id, int retracted)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->items[i].snapshot_id, id) == 0 && e->items[i].retracted == retracted)
            return &e->items[i];
    return NULL;
}

static void snapshot_then_outcome(void **state)
{
    fixture *f = *state;
    snap(f, 0, "s1", T(D0));
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.waiting, 1);
    snap(f, 1, "s2", T(D0 + 7));
    outcome(f, 0, 1000, D0 + 10);
    assert_int_equal(f->em.n, 2);
    const cl_join_emit *e = find_emit(&f->em, "s1", 0);
    assert_non_null(e);
    assert_int_equal(e->outcome_version, 1000);
    assert_int_equal(e->days_before_close, 10);
    assert_memory_equal(e->snapshot_payload, "snap:s1", 7);
    assert_memory_equal(e->outcome_payload, "outcome:1000", 12);
    assert_int_equal(find_emit(&f->em, "s2", 0)->days_before_close, 3);
}

static void outcome_then_snapshot(void **state)
{
    fixture *f = *state;
    outcome(f, 0, 1000, D0 + 10);
    assert_int_equal(f->em.n, 0);
    snap(f, 0, "s1", T(D0));
    assert_int_equal(f->em.n, 1);
    assert_int_equal(f->em.items[0].outcome_version, 1000);
    assert_int_equal(f->em.counts.joined, 1);
}

static void post_close_snapshot_excluded(void **state)
{
    fixture *f = *state;
    /* Taken on the close date: kept. The day after: excluded, whichever order. */
    snap(f, 0, "on_close", T(D0 + 10));
    snap(f, 1, "after_close", T(D0 + 11));
    outcome(f, 0, 1000, D0 + 10);
    assert_int_equal(f->em.n, 1);
    assert_string_equal(f->em.items[0].snapshot_id, "on_close");
    assert_int_equal(f->em.items[0].days_before_close, 0);
    assert_int_equal(f->em.counts.excluded, 1);
    snap(f, 2, "later", T(D0 + 20));
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.excluded, 1);
}

static void duplicate_snapshot_and_outcome(void **state)
{
    fixture *f = *state;
    snap(f, 0, "s1", T(D0));
    outcome(f, 0, 1000, D0 + 10);
    assert_int_equal(f->em.n, 1);
    /* The same run re-published (new offset, same bytes): nothing new to say. */
    snap(f, 5, "s1", T(D0));
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.duplicates, 1);
    assert_int_equal(f->st.nsnapshots, 1);
    /* The same outcome version re-published. */
    outcome(f, 3, 1000, D0 + 10);
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.duplicates, 1);
    /* An older version arriving late is stale. */
    outcome(f, 4, 900, D0 + 3);
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.stale, 1);
    assert_int_equal(f->st.outcome_version, 1000);
    assert_int_equal(f->st.close_date, D0 + 10);
}

static void replay_below_offset_reemits_view(void **state)
{
    fixture *f = *state;
    snap(f, 7, "s1", T(D0));
    outcome(f, 3, 1000, D0 + 10);
    tombstone(f, 4);
    outcome(f, 5, 2000, D0 + 12);
    /* A restore from the changelog replays the tombstone (offset 4): it must not retract
     * version 2000, and the view is re-emitted in case the original output was lost. */
    tombstone(f, 4);
    assert_int_equal(f->st.outcome_retracted, 0);
    assert_int_equal(f->em.n, 1);
    assert_int_equal(f->em.items[0].retracted, 0);
    assert_int_equal(f->em.items[0].outcome_version, 2000);
    snap(f, 7, "s1", T(D0));
    assert_int_equal(f->em.n, 1);
    assert_int_equal(f->em.counts.duplicates, 1);
}

static void newer_version_retracts_then_reemits(void **state)
{
    fixture *f = *state;
    snap(f, 0, "s1", T(D0));
    snap(f, 1, "s2", T(D0 + 7));
    outcome(f, 0, 1000, D0 + 10);
    /* Edited after close: the close date moved earlier, so s2 no longer qualifies. */
    outcome(f, 1, 2000, D0 + 5);
    assert_int_equal(f->em.counts.retracted, 2);
    assert_int_equal(f->em.counts.joined, 1);
    const cl_join_emit *r = find_emit(&f->em, "s2", 1);
    assert_non_null(r);
    assert_int_equal(r->outcome_version, 1000);
    /* The retraction carries the content of the retracted example (old outcome). */
    assert_memory_equal(r->outcome_payload, "outcome:1000", 12);
    const cl_join_emit *e = find_emit(&f->em, "s1", 0);
    assert_non_null(e);
    assert_int_equal(e->outcome_version, 2000);
    assert_memory_equal(e->outcome_payload, "outcome:2000", 12);
    assert_null(find_emit(&f->em, "s2", 0));
}

static void tombstone_retracts_and_reopen_rejoins(void **state)
{
    fixture *f = *state;
    snap(f, 0, "s1", T(D0));
    outcome(f, 0, 1000, D0 + 10);
    tombstone(f, 1);
    assert_int_equal(f->em.n, 1);
    assert_int_equal(f->em.items[0].retracted, 1);
    assert_int_equal(f->em.items[0].outcome_version, 1000);
    assert_int_equal(f->st.outcome_retracted, 1);
    /* Re-opened: a new scoring run sees it, it waits; then it closes again. */
    snap(f, 1, "s2", T(D0 + 30));
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.waiting, 1);
    outcome(f, 2, 5000, D0 + 40);
    assert_int_equal(f->em.counts.joined, 2);
    assert_int_equal(f->em.counts.retracted, 0);
    assert_int_equal(find_emit(&f->em, "s2", 0)->outcome_version, 5000);
    /* A second tombstone for nothing (already retracted) is harmless. */
    tombstone(f, 3);
    tombstone(f, 4);
    assert_int_equal(f->em.n, 0);
}

static void tombstone_without_outcome(void **state)
{
    fixture *f = *state;
    tombstone(f, 0);
    assert_int_equal(f->em.n, 0);
    assert_true(cl_join_state_is_empty(&f->st));
}

static void count_bound_keeps_newest(void **state)
{
    fixture *f = *state;
    f->policy.max_snapshots = 3;
    snap(f, 0, "a", T(D0 + 1));
    snap(f, 1, "b", T(D0 + 2));
    snap(f, 2, "c", T(D0 + 3));
    snap(f, 3, "d", T(D0 + 4));
    assert_int_equal(f->em.counts.evicted, 1);
    assert_int_equal(f->st.nsnapshots, 3);
    assert_string_equal(f->st.snapshots[0].id, "b");
    /* An older one than everything kept is dropped on arrival and not emitted. */
    outcome(f, 0, 1000, D0 + 30);
    snap(f, 4, "old", T(D0));
    assert_int_equal(f->em.n, 0);
    assert_int_equal(f->em.counts.evicted, 1);
    assert_string_equal(f->st.snapshots[0].id, "b");
}

static void age_bound(void **state)
{
    fixture *f = *state;
    f->policy.max_age_ms = 10 * DAY;
    snap(f, 0, "a", T(D0));
    snap(f, 1, "b", T(D0 + 5));
    snap(f, 2, "c", T(D0 + 11));
    assert_int_equal(f->st.nsnapshots, 2);
    assert_string_equal(f->st.snapshots[0].id, "b");
}

/* The state after a set of records must not depend on how the two topics interleaved. */
static void order_independent(void **state)
{
    fixture *f = *state;
    f->policy.max_snapshots = 2;
    cl_buf a, b;
    cl_buf_init(&a, 0);
    cl_buf_init(&b, 0);
    snap(f, 0, "x", T(D0));
    snap(f, 1, "y", T(D0 + 1));
    snap(f, 2, "z", T(D0 + 20));
    outcome(f, 0, 1000, D0 + 10);
    outcome(f, 1, 2000, D0 + 15);
    assert_int_equal(cl_join_state_encode(&f->st, &a, f->err, sizeof f->err), CL_OK);

    cl_join_state_free(&f->st);
    cl_join_state_init(&f->st, "006A000000abcde", 15);
    outcome(f, 0, 1000, D0 + 10);
    snap(f, 0, "x", T(D0));
    outcome(f, 1, 2000, D0 + 15);
    snap(f, 1, "y", T(D0 + 1));
    snap(f, 2, "z", T(D0 + 20));
    assert_int_equal(cl_join_state_encode(&f->st, &b, f->err, sizeof f->err), CL_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    cl_buf_free(&a);
    cl_buf_free(&b);
}

static void timers(void **state)
{
    fixture *f = *state;
    f->policy.open_expiry_ms = 100 * DAY;
    f->policy.unscored_after_ms = 30 * DAY;
    cl_join_timer_kind kind;
    assert_true(cl_join_deadline(&f->st, &f->policy, &kind) == CL_JOIN_NO_DEADLINE);
    snap(f, 0, "a", T(D0));
    int64_t at = cl_join_deadline(&f->st, &f->policy, &kind);
    assert_int_equal(kind, CL_JOIN_TIMER_EXPIRE);
    assert_true(at == T(D0) + 100 * DAY);
    cl_join_emits_reset(&f->em);
    assert_int_equal(cl_join_fire_timer(&f->st, &f->policy, at - 1, &f->em, NULL, 0), CL_OK);
    assert_int_equal(f->st.nsnapshots, 1);
    assert_int_equal(cl_join_fire_timer(&f->st, &f->policy, at, &f->em, NULL, 0), CL_OK);
    assert_int_equal(f->em.counts.expired, 1);
    assert_true(cl_join_state_is_empty(&f->st));

    outcome(f, 0, T(D0 + 200), D0 + 200);
    at = cl_join_deadline(&f->st, &f->policy, &kind);
    assert_int_equal(kind, CL_JOIN_TIMER_UNSCORED);
    assert_true(at == T(D0 + 200) + 30 * DAY);
    cl_join_emits_reset(&f->em);
    assert_int_equal(cl_join_fire_timer(&f->st, &f->policy, at, &f->em, NULL, 0), CL_OK);
    assert_int_equal(f->em.counts.unscored, 1);
    assert_int_equal(f->st.unscored, 1);
    assert_true(cl_join_deadline(&f->st, &f->policy, &kind) == CL_JOIN_NO_DEADLINE);
    /* A late snapshot still joins, and the opportunity is no longer unscored. */
    snap(f, 1, "late", T(D0 + 150));
    assert_int_equal(f->em.counts.joined, 1);
    assert_int_equal(f->st.unscored, 0);
    assert_true(cl_join_deadline(&f->st, &f->policy, &kind) == CL_JOIN_NO_DEADLINE);
}

static void encode_decode_roundtrip(void **state)
{
    fixture *f = *state;
    snap(f, 3, "s1", T(D0));
    f->policy.max_age_ms = 0; /* no age bound: keep a pre-1970 time */
    snap(f, 4, "s2", -5 * DAY);
    outcome(f, 9, 123456789, D0 + 10);
    tombstone(f, 10);
    cl_buf a, b;
    cl_buf_init(&a, 0);
    cl_buf_init(&b, 0);
    assert_int_equal(cl_join_state_encode(&f->st, &a, f->err, sizeof f->err), CL_OK);
    cl_join_state d;
    cl_join_state_init(&d, NULL, 0);
    assert_int_equal(cl_join_state_decode(a.data, a.len, &d, f->err, sizeof f->err), CL_OK);
    assert_string_equal(d.opportunity_id, "006A000000abcde");
    assert_int_equal(d.snapshot_offset, 4);
    assert_int_equal(d.outcome_offset, 10);
    assert_int_equal(d.outcome_retracted, 1);
    assert_int_equal(d.outcome_version, 123456789);
    assert_int_equal(d.nsnapshots, 2);
    assert_string_equal(d.snapshots[0].id, "s2");
    assert_true(d.snapshots[0].time_ms == -5 * DAY);
    assert_int_equal(cl_join_state_encode(&d, &b, f->err, sizeof f->err), CL_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    /* Every truncation and every single-byte corruption is rejected or decodes to a
     * state that re-encodes; none may crash (ASan checks the reads). */
    for (size_t n = 0; n < a.len; n++) {
        cl_join_state t;
        assert_int_equal(cl_join_state_decode(a.data, n, &t, f->err, sizeof f->err), CL_EINVAL);
    }
    for (size_t i = 0; i < a.len; i++) {
        char *copy = malloc(a.len);
        memcpy(copy, a.data, a.len);
        copy[i] ^= 0x5a;
        cl_join_state t;
        if (cl_join_state_decode(copy, a.len, &t, f->err, sizeof f->err) == CL_OK)
            cl_join_state_free(&t);
        free(copy);
    }
    /* Trailing garbage. */
    assert_int_equal(cl_buf_append(&a, "x", 1), CL_OK);
    cl_join_state t;
    assert_int_equal(cl_join_state_decode(a.data, a.len, &t, f->err, sizeof f->err), CL_EINVAL);
    assert_non_null(strstr(f->err, "trailing"));
    cl_join_state_free(&d);
    cl_buf_free(&a);
    cl_buf_free(&b);
}

static void rejects_bad_input(void **state)
{
    fixture *f = *state;
    char big[CL_JOIN_ID_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(cl_join_apply_snapshot(&f->st, &f->policy, 0, big, 0, "x", 1, &f->em, f->err,
                                            sizeof f->err),
                     CL_EINVAL);
    assert_int_equal(
        cl_join_apply_snapshot(&f->st, &f->policy, 0, "", 0, "x", 1, &f->em, f->err, sizeof f->err),
        CL_EINVAL);
    assert_int_equal(cl_join_apply_snapshot(&f->st, &f->policy, 0, "a", 0, "x", 0, &f->em, f->err,
                                            sizeof f->err),
                     CL_EINVAL);
    assert_int_equal(
        cl_join_apply_outcome(&f->st, &f->policy, 0, 1, 1, "x", 0, &f->em, f->err, sizeof f->err),
        CL_EINVAL);
    f->policy.max_snapshots = 0;
    assert_int_equal(cl_join_apply_snapshot(&f->st, &f->policy, 0, "a", 0, "x", 1, &f->em, f->err,
                                            sizeof f->err),
                     CL_EINVAL);
    assert_true(cl_join_state_is_empty(&f->st));
}

static void day_of_negative(void **state)
{
    (void)state;
    assert_int_equal(cl_join_day_of(0), 0);
    assert_int_equal(cl_join_day_of(DAY - 1), 0);
    assert_int_equal(cl_join_day_of(-1), -1);
    assert_int_equal(cl_join_day_of(-DAY), -1);
    assert_int_equal(cl_join_day_of(-DAY - 1), -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(snapshot_then_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(outcome_then_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(post_close_snapshot_excluded, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_snapshot_and_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(replay_below_offset_reemits_view, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_version_retracts_then_reemits, setup, teardown),
        cmocka_unit_test_setup_teardown(tombstone_retracts_and_reopen_rejoins, setup, teardown),
        cmocka_unit_test_setup_teardown(tombstone_without_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(count_bound_keeps_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(age_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(order_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(timers, setup, teardown),
        cmocka_unit_test_setup_teardown(encode_decode_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(rejects_bad_input, setup, teardown),
        cmocka_unit_test(day_of_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
