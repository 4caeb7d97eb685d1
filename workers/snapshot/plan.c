/*
 * plan.c — a run's validation pass. See plan.h.
 */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"
#include "util.h"

/* Open-addressing set of opportunity ids: slots hold 1 + the offset of the id in an
 * arena of NUL-terminated strings (0 = empty), so the set is two allocations however
 * many rows a run has. */
typedef struct {
    uint64_t *slots;
    size_t cap, n;
    cl_buf arena;
} id_set;

static int id_set_init(id_set *s)
{
    s->cap = 1024;
    s->n = 0;
    s->slots = calloc(s->cap, sizeof *s->slots);
    cl_buf_init(&s->arena, 0);
    return s->slots ? CL_OK : CL_ENOMEM;
}

static void id_set_free(id_set *s)
{
    free(s->slots);
    cl_buf_free(&s->arena);
}

static int id_set_grow(id_set *s)
{
    size_t cap = s->cap * 2;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return CL_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i]) continue;
        const char *id = s->arena.data + (s->slots[i] - 1);
        size_t h = (size_t)cl_hash64(id, strlen(id), 0) & (cap - 1);
        while (slots[h])
            h = (h + 1) & (cap - 1);
        slots[h] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return CL_OK;
}

/* Adds id; CL_ECONFLICT if it was already there. */
static int id_set_add(id_set *s, const char *id)
{
    if ((s->n + 1) * 2 > s->cap && id_set_grow(s) != CL_OK) return CL_ENOMEM;
    size_t len = strlen(id);
    size_t h = (size_t)cl_hash64(id, len, 0) & (s->cap - 1);
    while (s->slots[h]) {
        if (strcmp(s->arena.data + (s->slots[h] - 1), id) == 0) return CL_ECONFLICT;
        h = (h + 1) & (s->cap - 1);
    }
    uint64_t off = s->arena.len;
    if (cl_buf_append(&s->arena, id, len + 1) != CL_OK) return CL_ENOMEM;
    s->slots[h] = off + 1;
    s->n++;
    return CL_OK;
}

int cl_snapshot_score_all(cl_snapshot *s, const cl_weight_config *const *active, size_t nactive,
                          char *err, size_t errlen)
{
    if (nactive > CL_MAX_SCORES)
        return cl_seterr(err, errlen, CL_EINVAL, "%zu active versions, a snapshot holds %d",
                         nactive, CL_MAX_SCORES);
    s->n_scores = 0;
    for (size_t i = 0; i < nactive; i++) {
        char e2[CL_ERRLEN];
        if (cl_score_entry_for(active[i], s, &s->scores[i], e2, sizeof e2) != CL_OK)
            return cl_seterr(err, errlen, CL_EINVAL, "cannot be scored under %s v%lld: %s",
                             active[i]->model, (long long)active[i]->version, e2);
        s->n_scores++;
    }
    return CL_OK;
}

static int push_row(cl_snapshot_plan *p, size_t *cap, size_t line, cl_row_state st)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        cl_plan_row *r = realloc(p->rows, nc * sizeof *r);
        if (!r) return CL_ENOMEM;
        p->rows = r;
        *cap = nc;
    }
    p->rows[p->n].line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
    p->rows[p->n].state = (uint8_t)st;
    p->n++;
    if (st == CL_ROW_GOOD)
        p->good++;
    else
        p->bad++;
    return CL_OK;
}

int cl_snapshot_plan_build(cl_snapshot_plan *plan, const cl_snapshot_input_spec *spec,
                           const char *name, const char *data, size_t len,
                           cl_snapshot_format format, const cl_weight_config *const *active,
                           size_t nactive, cl_plan_bad_row_fn on_bad, void *ud, char *err,
                           size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    cl_snapshot_input *in = NULL;
    const char *ignored = "";
    int rc = cl_snapshot_input_open(&in, spec, name, data, len, format, &ignored, err, errlen);
    if (rc != CL_OK) return rc;
    (void)ignored;
    id_set ids;
    if (id_set_init(&ids) != CL_OK) {
        cl_snapshot_input_close(in);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    cl_snapshot *s = malloc(sizeof *s);
    size_t cap = 0;
    if (!s) rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    while (rc == CL_OK) {
        char msg[CL_ERRLEN];
        size_t line;
        int r = cl_snapshot_input_next(in, s, &line, msg, sizeof msg);
        if (r == CL_ENOTFOUND) break;
        if (r == CL_OK) {
            char e2[CL_ERRLEN];
            if (plan->run_id[0] && strcmp(plan->run_id, s->run_id) != 0) {
                cl_seterr(msg, sizeof msg, CL_EINVAL,
                          "%s line %zu: run_id '%.64s' differs from the run's "
                          "'%.64s' (one file is one scoring run)",
                          name, line, s->run_id, plan->run_id);
                r = CL_EINVAL;
            } else if (cl_snapshot_score_all(s, active, nactive, e2, sizeof e2) != CL_OK) {
                cl_seterr(msg, sizeof msg, CL_EINVAL, "%s line %zu: %s", name, line, e2);
                r = CL_EINVAL;
            } else {
                int a = id_set_add(&ids, s->opportunity_id);
                if (a == CL_ENOMEM) {
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory (%s line %zu)", name,
                                   line);
                    break;
                }
                if (a == CL_ECONFLICT) {
                    cl_seterr(msg, sizeof msg, CL_EINVAL,
                              "%s line %zu: opportunity_id '%.64s' appears "
                              "twice in the run",
                              name, line, s->opportunity_id);
                    r = CL_EINVAL;
                }
            }
            if (r == CL_OK && !plan->run_id[0])
                cl_strlcpy(plan->run_id, s->run_id, sizeof plan->run_id);
        }
        if (r == CL_OK || r == CL_EINVAL) {
            if (push_row(plan, &cap, line, r == CL_OK ? CL_ROW_GOOD : CL_ROW_BAD) != CL_OK) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory (%s line %zu)", name, line);
                break;
            }
            if (r == CL_EINVAL && on_bad) on_bad(line, msg, ud);
            continue;
        }
        rc = cl_seterr(err, errlen, r, "%s", msg);
    }
    free(s);
    id_set_free(&ids);
    cl_snapshot_input_close(in);
    if (rc != CL_OK) cl_snapshot_plan_free(plan);
    return rc;
}

void cl_snapshot_plan_free(cl_snapshot_plan *plan)
{
    free(plan->rows);
    memset(plan, 0, sizeof *plan);
}
