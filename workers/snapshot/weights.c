/*
 * weights.c — the champion/challenger book: per-model weights states, the seed, the
 * order of active versions. See weights.h.
 */
#include "weights.h"

#include <stdlib.h>
#include <string.h>

#include "score.h"

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
    for (size_t i = 0; i < b->n; i++)
        cl_weights_state_free(&b->models[i]);
    free(b->seed);
    memset(b, 0, sizeof *b);
}

static cl_weights_state *find(const cl_weights_book *b, const char *model)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->models[i].model, model) == 0) return (cl_weights_state *)&b->models[i];
    return NULL;
}

const cl_weight_config *cl_weights_book_champion(const cl_weights_book *b, const char *model)
{
    const cl_weights_state *m = find(b, model);
    if (m) return cl_weights_state_champion(m);
    return strcmp(model, CL_SEED_MODEL) == 0 ? b->seed : NULL;
}

const cl_weight_config *cl_weights_book_challenger(const cl_weights_book *b, const char *model)
{
    const cl_weights_state *m = find(b, model);
    return m ? m->challenger : NULL;
}

int cl_weights_book_apply(cl_weights_book *b, const cl_weight_config *c, cl_weights_effect *effect,
                          char *why, size_t whylen, char *err, size_t errlen)
{
    cl_weights_state *m = find(b, c->model);
    if (m) {
        int rc = cl_weights_state_apply_effect(m, c, effect, why, whylen, err, errlen);
        if (rc == CL_OK && *effect != CL_WEIGHTS_IGNORED) b->changes++;
        return rc;
    }
    /* A model the book does not hold yet: decide on a fresh state, and take it in only
     * when the record put something in force, so records that change nothing never use
     * up one of the CL_WEIGHTS_MAX_MODELS places. */
    cl_weights_state fresh;
    cl_weights_state_init(&fresh, c->model);
    if (strcmp(c->model, CL_SEED_MODEL) == 0) fresh.fallback = b->seed;
    int rc = cl_weights_state_apply_effect(&fresh, c, effect, why, whylen, err, errlen);
    if (rc != CL_OK || *effect == CL_WEIGHTS_IGNORED) {
        cl_weights_state_free(&fresh);
        return rc;
    }
    if (b->n >= CL_WEIGHTS_MAX_MODELS) {
        cl_weights_state_free(&fresh);
        *effect = CL_WEIGHTS_IGNORED;
        if (why && whylen) why[0] = '\0';
        return cl_seterr(err, errlen, CL_EFULL, "weights for model '%.64s': more than %d models",
                         c->model, CL_WEIGHTS_MAX_MODELS);
    }
    size_t at = 0;
    while (at < b->n && strcmp(b->models[at].model, c->model) < 0)
        at++;
    memmove(&b->models[at + 1], &b->models[at], (b->n - at) * sizeof b->models[0]);
    b->models[at] = fresh;
    b->n++;
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
        const cl_weights_state *m = &b->models[i];
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
