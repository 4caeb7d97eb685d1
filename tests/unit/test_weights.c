/* Unit tests for common/weights_state: the keys of the weights topic, the
 * champion/challenger rules record by record (with and without a fallback champion),
 * the bookkeeping writers rely on (retired, last, max_version), and the key design's
 * promise that the records compaction keeps rebuild the same state as the full log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "score.h"
#include "weights_state.h"

static cl_weight_config *config(const char *model, int64_t version, cl_model_status status)
{
    cl_weight_config *c = malloc(sizeof *c);
    assert_non_null(c);
    cl_weight_config_seed(c, 1000 * version);
    snprintf(c->model, sizeof c->model, "%s", model);
    c->version = version;
    c->status = status;
    /* Distinguishable weights per version and status. */
    c->weights.items[0].weight = 0.15 + 0.01 * (double)version + 0.001 * (double)status;
    return c;
}

/* Applies (model, version, status) and returns the effect; the reason lands in why. */
static cl_weights_effect step(cl_weights_state *s, const char *model, int64_t version,
                              cl_model_status status, char *why, size_t whylen)
{
    cl_weight_config *c = config(model, version, status);
    cl_weights_effect e;
    char err[CL_ERRLEN];
    assert_int_equal(cl_weights_state_apply_effect(s, c, &e, why, whylen, err, sizeof err), CL_OK);
    free(c);
    return e;
}

static cl_weights_effect apply(cl_weights_state *s, int64_t version, cl_model_status status)
{
    char why[256];
    return step(s, s->model, version, status, why, sizeof why);
}

static int64_t version_of(const cl_weight_config *c)
{
    return c ? c->version : 0;
}

static void test_keys(void **state)
{
    (void)state;
    char key[CL_WEIGHTS_KEY_MAX + 1], err[CL_ERRLEN];
    const struct {
        cl_model_status status;
        const char *key;
    } cases[] = {
        {CL_MODEL_CHAMPION, "opportunity_score"},
        {CL_MODEL_CHALLENGER, "opportunity_score/challenger"},
        {CL_MODEL_REJECTED, "opportunity_score/challenger"},
        {CL_MODEL_CANDIDATE, "opportunity_score/challenger"},
        {CL_MODEL_RETIRED, "opportunity_score/retired"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cl_weight_config *c = config(CL_SEED_MODEL, 2, cases[i].status);
        assert_int_equal(cl_weights_key(c, key, err, sizeof err), CL_OK);
        assert_string_equal(key, cases[i].key);
        free(c);
    }
    /* The longest model name still fits with the longest suffix. */
    cl_weight_config *c = config("", 1, CL_MODEL_RETIRED);
    memset(c->model, 'm', CL_NAME_MAX);
    c->model[CL_NAME_MAX] = '\0';
    assert_int_equal(cl_weights_key(c, key, err, sizeof err), CL_OK);
    assert_int_equal(strlen(key), CL_NAME_MAX + strlen("/retired"));
    c->model[0] = '\0';
    assert_int_equal(cl_weights_key(c, key, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "bad model name"));
    free(c);
}

static void test_rules_without_fallback(void **state)
{
    (void)state;
    cl_weights_state s;
    cl_weights_state_init(&s, "m");
    char why[256];
    assert_null(cl_weights_state_champion(&s));

    /* CANDIDATE is never active, but is the latest challenger-line record. */
    assert_int_equal(apply(&s, 1, CL_MODEL_CANDIDATE), CL_WEIGHTS_IGNORED);
    assert_null(s.challenger);
    assert_int_equal(version_of(s.last), 1);
    /* Without a champion or fallback a first challenger is live whatever its version. */
    assert_int_equal(apply(&s, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(version_of(s.challenger), 1);
    /* An older challenger is ignored; the same version again wins (the later record). */
    assert_int_equal(step(&s, "m", 0, CL_MODEL_CHALLENGER, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_string_equal(why, "v0 is older than challenger v1");
    assert_int_equal(version_of(s.last), 0); /* still the latest challenger-line record */
    assert_int_equal(apply(&s, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    /* A newer challenger replaces the live one. */
    assert_int_equal(apply(&s, 2, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(version_of(s.challenger), 2);
    /* The end of a version that is not live changes nothing. */
    assert_int_equal(step(&s, "m", 1, CL_MODEL_REJECTED, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_string_equal(why, "v1 is not active");
    assert_int_equal(version_of(s.challenger), 2);
    /* A CHAMPION below the challenger keeps it live... */
    assert_int_equal(step(&s, "m", 1, CL_MODEL_CHAMPION, why, sizeof why), CL_WEIGHTS_NEW_CHAMPION);
    assert_string_equal(why, "champion v1");
    assert_int_equal(version_of(s.champion), 1);
    assert_int_equal(version_of(s.challenger), 2);
    /* ...and the REJECTED of the live challenger ends it. */
    assert_int_equal(step(&s, "m", 2, CL_MODEL_REJECTED, why, sizeof why),
                     CL_WEIGHTS_ENDED_CHALLENGER);
    assert_string_equal(why, "challenger v2 is REJECTED");
    assert_null(s.challenger);
    assert_int_equal(version_of(s.last), 2);
    /* A challenger not newer than the champion is ignored. */
    assert_int_equal(step(&s, "m", 1, CL_MODEL_CHALLENGER, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_string_equal(why, "v1 is not newer than champion v1");
    /* Promotion: CHAMPION v3 ends challenger v3 (same version) and replaces champion v1. */
    assert_int_equal(apply(&s, 3, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(step(&s, "m", 3, CL_MODEL_CHAMPION, why, sizeof why), CL_WEIGHTS_NEW_CHAMPION);
    assert_string_equal(why, "champion v3 replaces challenger v3");
    assert_null(s.challenger);
    assert_int_equal(apply(&s, 1, CL_MODEL_RETIRED), CL_WEIGHTS_IGNORED);
    assert_int_equal(version_of(s.retired), 1);
    /* A stale CHAMPION (an old record replayed) is ignored. */
    assert_int_equal(step(&s, "m", 1, CL_MODEL_CHAMPION, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_string_equal(why, "v1 is older than champion v3");
    assert_int_equal(version_of(s.champion), 3);
    /* The champion retired without a successor stays in force. */
    assert_int_equal(step(&s, "m", 3, CL_MODEL_RETIRED, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_non_null(strstr(why, "champion v3 is RETIRED without a successor"));
    assert_int_equal(version_of(s.champion), 3);
    assert_int_equal(version_of(s.retired), 3);
    /* A newer champion supersedes an older live challenger. */
    assert_int_equal(apply(&s, 5, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    assert_int_equal(apply(&s, 6, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    assert_null(s.challenger);
    /* The same champion version again: the later record wins (its content is kept). */
    cl_weight_config *c = config("m", 6, CL_MODEL_CHAMPION);
    c->weights.items[0].weight = 0.42;
    cl_weights_effect e;
    char err[CL_ERRLEN];
    assert_int_equal(cl_weights_state_apply_effect(&s, c, &e, NULL, 0, err, sizeof err), CL_OK);
    assert_int_equal(e, CL_WEIGHTS_NEW_CHAMPION);
    assert_true(s.champion->weights.items[0].weight == 0.42);
    free(c);

    assert_int_equal(s.max_version, 6);
    assert_int_equal(s.records, 17);
    cl_weights_state_free(&s);
}

static void test_other_models_are_not_applied(void **state)
{
    (void)state;
    cl_weights_state s;
    cl_weights_state_init(&s, CL_SEED_MODEL);
    assert_int_equal(apply(&s, 2, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    char why[256], err[CL_ERRLEN];
    assert_int_equal(step(&s, "other", 9, CL_MODEL_CHAMPION, why, sizeof why), CL_WEIGHTS_IGNORED);
    assert_non_null(strstr(why, "model 'other'"));
    cl_weight_config *c = config("other", 9, CL_MODEL_CHALLENGER);
    int applied = 1;
    assert_int_equal(cl_weights_state_apply(&s, c, &applied, err, sizeof err), CL_OK);
    assert_false(applied);
    snprintf(c->model, sizeof c->model, "%s", CL_SEED_MODEL);
    assert_int_equal(cl_weights_state_apply(&s, c, &applied, err, sizeof err), CL_OK);
    assert_true(applied);
    assert_int_equal(version_of(s.challenger), 9);
    /* Only this model's records count. */
    assert_int_equal(s.records, 2);
    assert_int_equal(s.max_version, 9);
    free(c);
    cl_weights_state_free(&s);
}

static void test_fallback_champion(void **state)
{
    (void)state;
    cl_weight_config *seed = config(CL_SEED_MODEL, 1, CL_MODEL_CHAMPION);
    cl_weights_state s;
    cl_weights_state_init(&s, CL_SEED_MODEL);
    s.fallback = seed;
    char why[256];
    assert_ptr_equal(cl_weights_state_champion(&s), seed);
    /* A challenger must be newer than the fallback... */
    assert_int_equal(step(&s, CL_SEED_MODEL, 1, CL_MODEL_CHALLENGER, why, sizeof why),
                     CL_WEIGHTS_IGNORED);
    assert_string_equal(why, "v1 is not newer than champion v1");
    assert_null(s.challenger);
    assert_int_equal(version_of(s.last), 1);
    /* ...its retirement is reported as the champion's, and it stays in force... */
    assert_int_equal(step(&s, CL_SEED_MODEL, 1, CL_MODEL_RETIRED, why, sizeof why),
                     CL_WEIGHTS_IGNORED);
    assert_non_null(strstr(why, "champion v1 is RETIRED without a successor"));
    assert_ptr_equal(cl_weights_state_champion(&s), seed);
    assert_int_equal(apply(&s, 2, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    /* ...but it never makes a CHAMPION record stale: any version replaces it. */
    assert_int_equal(apply(&s, 0, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    assert_int_equal(version_of(cl_weights_state_champion(&s)), 0);
    assert_int_equal(version_of(s.challenger), 2);
    /* With a topic champion the fallback no longer counts. */
    assert_int_equal(apply(&s, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_IGNORED); /* v1 < v2 */
    assert_int_equal(apply(&s, 2, CL_MODEL_CHAMPION), CL_WEIGHTS_NEW_CHAMPION);
    assert_null(s.challenger);
    cl_weights_state_free(&s);

    /* The same first challenger without a fallback is live. */
    cl_weights_state_init(&s, CL_SEED_MODEL);
    assert_int_equal(apply(&s, 1, CL_MODEL_CHALLENGER), CL_WEIGHTS_NEW_CHALLENGER);
    cl_weights_state_free(&s);
    free(seed);
}

/* ---- compaction: the latest record per key rebuilds the same state ------------------ */

typedef struct {
    int64_t version;
    cl_model_status status;
} record;

static void expect_same_after_compaction(const record *log, size_t n)
{
    char err[CL_ERRLEN], key[CL_WEIGHTS_KEY_MAX + 1], other[CL_WEIGHTS_KEY_MAX + 1];
    cl_weights_state full, compacted;
    cl_weights_state_init(&full, "m");
    cl_weights_state_init(&compacted, "m");
    for (size_t i = 0; i < n; i++) {
        cl_weight_config *c = config("m", log[i].version, log[i].status);
        int applied;
        assert_int_equal(cl_weights_state_apply(&full, c, &applied, err, sizeof err), CL_OK);
        /* Compaction keeps record i only if no later record has its key, and keeps
         * the survivors in their order. */
        assert_int_equal(cl_weights_key(c, key, err, sizeof err), CL_OK);
        int survives = 1;
        for (size_t j = i + 1; j < n && survives; j++) {
            cl_weight_config *d = config("m", log[j].version, log[j].status);
            assert_int_equal(cl_weights_key(d, other, err, sizeof err), CL_OK);
            survives = strcmp(key, other) != 0;
            free(d);
        }
        if (survives)
            assert_int_equal(cl_weights_state_apply(&compacted, c, &applied, err, sizeof err),
                             CL_OK);
        free(c);
    }
    assert_int_equal(version_of(compacted.champion), version_of(full.champion));
    assert_int_equal(version_of(compacted.challenger), version_of(full.challenger));
    assert_int_equal(version_of(compacted.retired), version_of(full.retired));
    assert_int_equal(compacted.max_version, full.max_version);
    if (full.champion)
        assert_true(compacted.champion->weights.items[0].weight ==
                    full.champion->weights.items[0].weight);
    cl_weights_state_free(&full);
    cl_weights_state_free(&compacted);
}

static void test_compaction_keeps_the_state(void **state)
{
    (void)state;
    /* Seed, a rejected refit, a promoted refit, a rollback (new version 5 with v1's
     * weights), then a live challenger. */
    const record history[] = {
        {1, CL_MODEL_CHAMPION},   {2, CL_MODEL_CHALLENGER}, {2, CL_MODEL_REJECTED},
        {3, CL_MODEL_CHALLENGER}, {3, CL_MODEL_CHAMPION},   {1, CL_MODEL_RETIRED},
        {4, CL_MODEL_CANDIDATE},  {5, CL_MODEL_CHAMPION},   {3, CL_MODEL_RETIRED},
        {6, CL_MODEL_CHALLENGER},
    };
    for (size_t n = 1; n <= sizeof history / sizeof history[0]; n++)
        expect_same_after_compaction(history, n);
    /* A REJECTED after a promotion must not erase the champion it was compared with. */
    const record rejected_last[] = {
        {1, CL_MODEL_CHAMPION}, {2, CL_MODEL_CHALLENGER}, {2, CL_MODEL_CHAMPION},
        {1, CL_MODEL_RETIRED},  {3, CL_MODEL_CHALLENGER}, {3, CL_MODEL_REJECTED},
    };
    expect_same_after_compaction(rejected_last, sizeof rejected_last / sizeof rejected_last[0]);
}

static void test_effect_names(void **state)
{
    (void)state;
    assert_string_equal(cl_weights_effect_name(CL_WEIGHTS_NEW_CHAMPION), "new_champion");
    assert_string_equal(cl_weights_effect_name(CL_WEIGHTS_NEW_CHALLENGER), "new_challenger");
    assert_string_equal(cl_weights_effect_name(CL_WEIGHTS_ENDED_CHALLENGER), "ended_challenger");
    assert_string_equal(cl_weights_effect_name(CL_WEIGHTS_IGNORED), "ignored");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_rules_without_fallback),
        cmocka_unit_test(test_other_models_are_not_applied),
        cmocka_unit_test(test_fallback_champion),
        cmocka_unit_test(test_compaction_keeps_the_state),
        cmocka_unit_test(test_effect_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
