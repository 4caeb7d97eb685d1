/*
 * weights.c — the champion/challenger book. See weights.h.
 */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"
#include "util.h"

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

int cl_weights_book_init(cl_weights_book *b, int64_t created_at, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->seed = malloc(sizeof *b->seed);
    if (!b->seed) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for the seed weights");
    cl_weight_config_seed(b->seed, created_at);
    return CL_OK;
}

void cl_weights_book_free(cl_weights_book *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->models[i].champion);
        free(b->models[i].challenger);
    }
    free(b->seed);
    memset(b, 0, sizeof *b);
}

static cl_weights_model *find(const cl_weights_book *b, const char *model)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->models[i].model, model) == 0) return (cl_weights_model *)&b->models[i];
    return NULL;
}

const cl_weight_config *cl_weights_book_champion(const cl_weights_book *b, const char *model)
{
    const cl_weights_model *m = find(b, model);
    if (m && m->champion) return m->champion;
    return strcmp(model, CL_SEED_MODEL) == 0 ? b->seed : NULL;
}

const cl_weight_config *cl_weights_book_challenger(const cl_weights_book *b, const char *model)
{
    const cl_weights_model *m = find(b, model);
    return m ? m->challenger : NULL;
}

/* Replaces *slot with a copy of c. */
static int put(cl_weight_config **slot, const cl_weight_config *c, char *err, size_t errlen)
{
    if (!*slot && !(*slot = malloc(sizeof **slot)))
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for weights %s v%lld", c->model,
                         (long long)c->version);
    memcpy(*slot, c, sizeof *c);
    return CL_OK;
}

int cl_weights_book_apply(cl_weights_book *b, const cl_weight_config *c, cl_weights_effect *effect,
                          char *why, size_t whylen, char *err, size_t errlen)
{
    *effect = CL_WEIGHTS_IGNORED;
    char scratch[8];
    if (!why) {
        why = scratch;
        whylen = sizeof scratch;
    }
    snprintf(why, whylen, "%s", "");
    long long v = (long long)c->version;
    if (c->status == CL_MODEL_CANDIDATE) {
        snprintf(why, whylen, "v%lld is a CANDIDATE (never active)", v);
        return CL_OK;
    }
    cl_weights_model *m = find(b, c->model);
    const cl_weight_config *champion = cl_weights_book_champion(b, c->model);
    const cl_weight_config *challenger = m ? m->challenger : NULL;

    if (c->status == CL_MODEL_REJECTED || c->status == CL_MODEL_RETIRED) {
        if (challenger && challenger->version == c->version) {
            free(m->challenger);
            m->challenger = NULL;
            *effect = CL_WEIGHTS_ENDED_CHALLENGER;
            b->changes++;
            snprintf(why, whylen, "challenger v%lld is %s", v, cl_model_status_name(c->status));
        } else if (champion && champion->version == c->version) {
            snprintf(why, whylen,
                     "champion v%lld is %s without a successor; it stays in force until a "
                     "new CHAMPION record arrives",
                     v, cl_model_status_name(c->status));
        } else {
            snprintf(why, whylen, "v%lld is not active", v);
        }
        return CL_OK;
    }
    if (c->status == CL_MODEL_CHAMPION) {
        if (champion && champion != b->seed && c->version < champion->version) {
            snprintf(why, whylen, "v%lld is older than champion v%lld", v,
                     (long long)champion->version);
            return CL_OK;
        }
    } else if (c->status == CL_MODEL_CHALLENGER) {
        if (champion && c->version <= champion->version) {
            snprintf(why, whylen, "v%lld is not newer than champion v%lld", v,
                     (long long)champion->version);
            return CL_OK;
        }
        if (challenger && c->version < challenger->version) {
            snprintf(why, whylen, "v%lld is older than challenger v%lld", v,
                     (long long)challenger->version);
            return CL_OK;
        }
    } else {
        snprintf(why, whylen, "v%lld has an unknown status", v);
        return CL_OK;
    }

    if (!m) {
        if (b->n >= CL_WEIGHTS_MAX_MODELS)
            return cl_seterr(err, errlen, CL_EFULL,
                             "weights for model '%.64s': more than %d models", c->model,
                             CL_WEIGHTS_MAX_MODELS);
        size_t at = 0;
        while (at < b->n && strcmp(b->models[at].model, c->model) < 0)
            at++;
        memmove(&b->models[at + 1], &b->models[at], (b->n - at) * sizeof b->models[0]);
        m = &b->models[at];
        memset(m, 0, sizeof *m);
        cl_strlcpy(m->model, c->model, sizeof m->model);
        b->n++;
    }
    int rc;
    if (c->status == CL_MODEL_CHAMPION) {
        if ((rc = put(&m->champion, c, err, errlen)) != CL_OK) return rc;
        m->champion->status = CL_MODEL_CHAMPION;
        *effect = CL_WEIGHTS_NEW_CHAMPION;
        if (m->challenger && m->challenger->version <= c->version) {
            snprintf(why, whylen, "champion v%lld replaces challenger v%lld", v,
                     (long long)m->challenger->version);
            free(m->challenger);
            m->challenger = NULL;
        } else {
            snprintf(why, whylen, "champion v%lld", v);
        }
    } else {
        if ((rc = put(&m->challenger, c, err, errlen)) != CL_OK) return rc;
        *effect = CL_WEIGHTS_NEW_CHALLENGER;
        snprintf(why, whylen, "challenger v%lld", v);
    }
    b->changes++;
    return CL_OK;
}

static int listed(const char *only, const char *model)
{
    if (!only || !*only) return 1;
    size_t n = strlen(model);
    const char *p = only;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((size_t)(t - p) == n && memcmp(p, model, n) == 0) return 1;
        p = e;
    }
    return 0;
}

void cl_weights_book_active(const cl_weights_book *b, const char *only,
                            const cl_weight_config **out, size_t max, size_t *n, size_t *dropped)
{
    *n = 0;
    *dropped = 0;
    const cl_weight_config *list[2 * CL_WEIGHTS_MAX_MODELS + 1];
    size_t k = 0;
    int seed_done = find(b, CL_SEED_MODEL) != NULL;
    for (size_t i = 0; i <= b->n; i++) {
        /* The seed model takes its place in name order when the topic never named it. */
        if (!seed_done && (i == b->n || strcmp(CL_SEED_MODEL, b->models[i].model) < 0)) {
            seed_done = 1;
            if (listed(only, CL_SEED_MODEL)) list[k++] = b->seed;
        }
        if (i == b->n) break;
        const cl_weights_model *m = &b->models[i];
        if (!listed(only, m->model)) continue;
        const cl_weight_config *ch = cl_weights_book_champion(b, m->model);
        if (ch) list[k++] = ch;
        if (m->challenger) list[k++] = m->challenger;
    }
    for (size_t i = 0; i < k; i++) {
        if (*n < max)
            out[(*n)++] = list[i];
        else
            (*dropped)++;
    }
}
