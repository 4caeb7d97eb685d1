/*
 * weights_state.c — keys and champion/challenger rules of the weights topic. See
 * weights_state.h.
 */
#include "weights_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int cl_weights_key(const cl_weight_config *c, char out[CL_WEIGHTS_KEY_MAX + 1], char *err,
                   size_t errlen)
{
    const char *suffix = "";
    switch (c->status) {
    case CL_MODEL_CHAMPION:
        suffix = "";
        break;
    case CL_MODEL_RETIRED:
        suffix = "/retired";
        break;
    case CL_MODEL_CHALLENGER:
    case CL_MODEL_REJECTED:
    case CL_MODEL_CANDIDATE:
        suffix = "/challenger";
        break;
    }
    int n = snprintf(out, CL_WEIGHTS_KEY_MAX + 1, "%s%s", c->model, suffix);
    if (n < 0 || n > CL_WEIGHTS_KEY_MAX || !c->model[0])
        return cl_seterr(err, errlen, CL_EINVAL, "weights key for model '%.40s': bad model name",
                         c->model);
    return CL_OK;
}

const char *cl_weights_effect_name(cl_weights_effect e)
{
    switch (e) {
    case CL_WEIGHTS_NEW_CHAMPION:
        return "new_champion";
    case CL_WEIGHTS_NEW_CHALLENGER:
        return "new_challenger";
    case CL_WEIGHTS_ENDED_CHALLENGER:
        return "ended_challenger";
    case CL_WEIGHTS_IGNORED:
        return "ignored";
    }
    return "?";
}

void cl_weights_state_init(cl_weights_state *s, const char *model)
{
    memset(s, 0, sizeof *s);
    cl_strlcpy(s->model, model, sizeof s->model);
}

void cl_weights_state_free(cl_weights_state *s)
{
    free(s->champion);
    free(s->challenger);
    free(s->retired);
    free(s->last);
    s->champion = s->challenger = s->retired = s->last = NULL;
}

const cl_weight_config *cl_weights_state_champion(const cl_weights_state *s)
{
    return s->champion ? s->champion : s->fallback;
}

int cl_weights_state_apply_effect(cl_weights_state *s, const cl_weight_config *c,
                                  cl_weights_effect *effect, char *why, size_t whylen, char *err,
                                  size_t errlen)
{
    *effect = CL_WEIGHTS_IGNORED;
    char scratch[8];
    if (!why) {
        why = scratch;
        whylen = sizeof scratch;
    }
    snprintf(why, whylen, "%s", "");
    long long v = (long long)c->version;
    if (strcmp(c->model, s->model) != 0) {
        snprintf(why, whylen, "a record of model '%.64s', not '%.64s'", c->model, s->model);
        return CL_OK;
    }

    /* Decide, then allocate, then change: CL_ENOMEM must leave the state as it was. */
    const cl_weight_config *champion = cl_weights_state_champion(s);
    cl_weight_config **record_slot = NULL; /* bookkeeping copy: last or retired */
    cl_weight_config **active_slot = NULL; /* champion or challenger slot that takes c */
    int end_challenger = 0;
    switch (c->status) {
    case CL_MODEL_CHAMPION:
        /* Only the topic's champion can make a CHAMPION stale, never the fallback. */
        if (s->champion && c->version < s->champion->version) {
            snprintf(why, whylen, "v%lld is older than champion v%lld", v,
                     (long long)s->champion->version);
            break;
        }
        active_slot = &s->champion;
        end_challenger = s->challenger && s->challenger->version <= c->version;
        if (end_challenger)
            snprintf(why, whylen, "champion v%lld replaces challenger v%lld", v,
                     (long long)s->challenger->version);
        else
            snprintf(why, whylen, "champion v%lld", v);
        break;
    case CL_MODEL_CHALLENGER:
        record_slot = &s->last;
        if (champion && c->version <= champion->version) {
            snprintf(why, whylen, "v%lld is not newer than champion v%lld", v,
                     (long long)champion->version);
        } else if (s->challenger && c->version < s->challenger->version) {
            snprintf(why, whylen, "v%lld is older than challenger v%lld", v,
                     (long long)s->challenger->version);
        } else {
            active_slot = &s->challenger;
            snprintf(why, whylen, "challenger v%lld", v);
        }
        break;
    case CL_MODEL_REJECTED:
    case CL_MODEL_RETIRED:
        record_slot = c->status == CL_MODEL_RETIRED ? &s->retired : &s->last;
        if (s->challenger && s->challenger->version == c->version) {
            end_challenger = 1;
            snprintf(why, whylen, "challenger v%lld is %s", v, cl_model_status_name(c->status));
        } else if (champion && champion->version == c->version) {
            snprintf(why, whylen,
                     "champion v%lld is %s without a successor; it stays in force until a "
                     "new CHAMPION record arrives",
                     v, cl_model_status_name(c->status));
        } else {
            snprintf(why, whylen, "v%lld is not active", v);
        }
        break;
    case CL_MODEL_CANDIDATE:
        record_slot = &s->last;
        snprintf(why, whylen, "v%lld is a CANDIDATE (never active)", v);
        break;
    default:
        snprintf(why, whylen, "v%lld has an unknown status", v);
        break;
    }

    cl_weight_config *fresh_record = NULL, *fresh_active = NULL;
    if ((record_slot && !*record_slot && !(fresh_record = malloc(sizeof *fresh_record))) ||
        (active_slot && !*active_slot && !(fresh_active = malloc(sizeof *fresh_active)))) {
        free(fresh_record);
        return cl_seterr(err, errlen, CL_ENOMEM, "weights for model %s v%lld: out of memory",
                         c->model, v);
    }
    if (fresh_record) *record_slot = fresh_record;
    if (fresh_active) *active_slot = fresh_active;

    s->records++;
    if (c->version > s->max_version) s->max_version = c->version;
    if (record_slot) **record_slot = *c;
    if (end_challenger) {
        free(s->challenger);
        s->challenger = NULL;
    }
    if (active_slot) **active_slot = *c;
    if (active_slot == &s->champion)
        *effect = CL_WEIGHTS_NEW_CHAMPION;
    else if (active_slot == &s->challenger)
        *effect = CL_WEIGHTS_NEW_CHALLENGER;
    else if (end_challenger)
        *effect = CL_WEIGHTS_ENDED_CHALLENGER;
    return CL_OK;
}

int cl_weights_state_apply(cl_weights_state *s, const cl_weight_config *c, int *applied, char *err,
                           size_t errlen)
{
    *applied = strcmp(c->model, s->model) == 0;
    if (!*applied) return CL_OK;
    cl_weights_effect effect;
    return cl_weights_state_apply_effect(s, c, &effect, NULL, 0, err, errlen);
}
