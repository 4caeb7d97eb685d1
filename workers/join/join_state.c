/*
 * join_state.c — see join_state.h for the contract.
 */
#include "join_state.h"

#include <stdlib.h>
#include <string.h>

#define STATE_FORMAT 1
#define FLAG_HAS_OUTCOME 0x01u
#define FLAG_RETRACTED 0x02u
#define FLAG_UNSCORED 0x04u

void cl_join_policy_defaults(cl_join_policy *p)
{
    p->max_snapshots = 64;
    p->max_age_ms = 730 * CL_JOIN_DAY_MS;
    p->open_expiry_ms = 365 * CL_JOIN_DAY_MS;
    p->unscored_after_ms = 30 * CL_JOIN_DAY_MS;
}

int32_t cl_join_day_of(int64_t ms)
{
    int64_t d = ms / CL_JOIN_DAY_MS;
    if (ms % CL_JOIN_DAY_MS != 0 && ms < 0) d--;
    if (d > INT32_MAX) return INT32_MAX;
    if (d < INT32_MIN) return INT32_MIN;
    return (int32_t)d;
}

/* ---- emission lists --------------------------------------------------------------- */

void cl_join_emits_init(cl_join_emits *e)
{
    memset(e, 0, sizeof *e);
}

void cl_join_emits_reset(cl_join_emits *e)
{
    for (size_t i = 0; i < e->nowned; i++)
        free(e->owned[i]);
    e->nowned = 0;
    e->n = 0;
    memset(&e->counts, 0, sizeof e->counts);
}

void cl_join_emits_free(cl_join_emits *e)
{
    cl_join_emits_reset(e);
    free(e->items);
    free(e->owned);
    memset(e, 0, sizeof *e);
}

static int emit(cl_join_emits *e, int retracted, int64_t version, int32_t close_date,
                const cl_join_snapshot *snap, const uint8_t *outcome, size_t outcome_len)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        cl_join_emit *items = realloc(e->items, cap * sizeof *items);
        if (!items) return CL_ENOMEM;
        e->items = items;
        e->cap = cap;
    }
    cl_join_emit *it = &e->items[e->n++];
    it->retracted = retracted;
    it->outcome_version = version;
    it->days_before_close = close_date - cl_join_day_of(snap->time_ms);
    it->snapshot_id = snap->id;
    it->snapshot_payload = snap->payload;
    it->snapshot_payload_len = snap->payload_len;
    it->outcome_payload = outcome;
    it->outcome_payload_len = outcome_len;
    if (retracted)
        e->counts.retracted++;
    else
        e->counts.joined++;
    return CL_OK;
}

/* Keeps `p` alive until the list is reset (the state is about to free it). */
static int own(cl_join_emits *e, uint8_t *p)
{
    if (!p) return CL_OK;
    if (e->nowned == e->capowned) {
        size_t cap = e->capowned ? e->capowned * 2 : 4;
        uint8_t **owned = realloc(e->owned, cap * sizeof *owned);
        if (!owned) return CL_ENOMEM;
        e->owned = owned;
        e->capowned = cap;
    }
    e->owned[e->nowned++] = p;
    return CL_OK;
}

/* ---- state ------------------------------------------------------------------------ */

void cl_join_state_init(cl_join_state *s, const char *opportunity_id, size_t id_len)
{
    memset(s, 0, sizeof *s);
    if (id_len > CL_JOIN_ID_MAX) id_len = CL_JOIN_ID_MAX;
    if (opportunity_id && id_len) memcpy(s->opportunity_id, opportunity_id, id_len);
    s->opportunity_id[id_len] = '\0';
    s->snapshot_offset = -1;
    s->outcome_offset = -1;
    s->version_floor = INT64_MIN;
}

void cl_join_state_free(cl_join_state *s)
{
    for (size_t i = 0; i < s->nsnapshots; i++)
        free(s->snapshots[i].payload);
    free(s->snapshots);
    free(s->outcome_payload);
    s->snapshots = NULL;
    s->nsnapshots = 0;
    s->outcome_payload = NULL;
    s->outcome_payload_len = 0;
}

int cl_join_state_is_empty(const cl_join_state *s)
{
    return s->nsnapshots == 0 && !s->has_outcome;
}

static int eligible(const cl_join_state *s, const cl_join_snapshot *snap)
{
    return cl_join_day_of(snap->time_ms) <= s->close_date;
}

/* Emits the view of the outcome currently stored, counting exclusions. */
static int emit_all(const cl_join_state *s, int retracted, cl_join_emits *out, int count_excluded)
{
    for (size_t i = 0; i < s->nsnapshots; i++) {
        const cl_join_snapshot *snap = &s->snapshots[i];
        if (!eligible(s, snap)) {
            if (count_excluded) out->counts.excluded++;
            continue;
        }
        int rc = emit(out, retracted, s->outcome_version, s->close_date, snap, s->outcome_payload,
                      s->outcome_payload_len);
        if (rc != CL_OK) return rc;
    }
    return CL_OK;
}

int cl_join_view(const cl_join_state *s, cl_join_emits *out, char *err, size_t errlen)
{
    if (!s->has_outcome) return CL_OK;
    int rc = emit_all(s, s->outcome_retracted, out, 0);
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "join view of opportunity %s: out of memory",
                         s->opportunity_id);
    return CL_OK;
}

static int snapshot_cmp(int64_t t1, const char *id1, int64_t t2, const char *id2)
{
    if (t1 != t2) return t1 < t2 ? -1 : 1;
    return strcmp(id1, id2);
}

static void drop_snapshot(cl_join_state *s, size_t i)
{
    free(s->snapshots[i].payload);
    memmove(&s->snapshots[i], &s->snapshots[i + 1],
            (s->nsnapshots - i - 1) * sizeof s->snapshots[0]);
    s->nsnapshots--;
}

/* Applies the count and age bounds; returns how many snapshots were dropped. */
static size_t enforce_bounds(cl_join_state *s, const cl_join_policy *p)
{
    size_t dropped = 0;
    while (s->nsnapshots > p->max_snapshots) {
        drop_snapshot(s, 0);
        dropped++;
    }
    if (s->nsnapshots > 0 && p->max_age_ms > 0) {
        int64_t newest = s->snapshots[s->nsnapshots - 1].time_ms;
        while (s->nsnapshots > 0 && s->snapshots[0].time_ms < newest - p->max_age_ms) {
            drop_snapshot(s, 0);
            dropped++;
        }
    }
    return dropped;
}

static int check_policy(const cl_join_policy *p, char *err, size_t errlen)
{
    if (p->max_snapshots < 1 || p->max_snapshots > CL_JOIN_SNAPSHOTS_HARD_MAX)
        return cl_seterr(err, errlen, CL_EINVAL, "join.snapshots.max %u is outside 1..%u",
                         p->max_snapshots, CL_JOIN_SNAPSHOTS_HARD_MAX);
    return CL_OK;
}

int cl_join_apply_snapshot(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                           const char *snapshot_id, int64_t snapshot_time_ms, const void *payload,
                           size_t len, cl_join_emits *out, char *err, size_t errlen)
{
    int rc = check_policy(p, err, errlen);
    if (rc != CL_OK) return rc;
    size_t idlen = snapshot_id ? strlen(snapshot_id) : 0;
    if (idlen == 0 || idlen > CL_JOIN_ID_MAX)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "snapshot of opportunity %s: snapshot_id is empty or longer than %d "
                         "bytes",
                         s->opportunity_id, CL_JOIN_ID_MAX);
    if (len == 0 || len > CL_JOIN_PAYLOAD_MAX)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "snapshot %s of opportunity %s: payload of %zu bytes is outside "
                         "1..%u",
                         snapshot_id, s->opportunity_id, len, CL_JOIN_PAYLOAD_MAX);
    if (offset >= 0 && offset <= s->snapshot_offset) {
        out->counts.duplicates++;
        return cl_join_view(s, out, err, errlen);
    }

    /* Same id already kept: a re-published run. Same bytes change nothing; new bytes
     * (a corrected run) replace the old ones and re-emit. */
    size_t i;
    for (i = 0; i < s->nsnapshots; i++)
        if (strcmp(s->snapshots[i].id, snapshot_id) == 0) break;
    if (i < s->nsnapshots && s->snapshots[i].time_ms == snapshot_time_ms &&
        s->snapshots[i].payload_len == len && memcmp(s->snapshots[i].payload, payload, len) == 0) {
        if (offset >= 0) s->snapshot_offset = offset;
        out->counts.duplicates++;
        out->counts.changed = 1;
        return CL_OK;
    }

    uint8_t *copy = malloc(len);
    if (!copy) return cl_seterr(err, errlen, CL_ENOMEM, "snapshot %s: out of memory", snapshot_id);
    memcpy(copy, payload, len);
    if (i < s->nsnapshots) {
        drop_snapshot(s, i);
        out->counts.duplicates++;
    } else if (s->nsnapshots == SIZE_MAX / sizeof s->snapshots[0] - 1) {
        free(copy);
        return cl_seterr(err, errlen, CL_ENOMEM, "snapshot %s: too many", snapshot_id);
    }
    cl_join_snapshot *grown = realloc(s->snapshots, (s->nsnapshots + 1) * sizeof *grown);
    if (!grown) {
        free(copy);
        return cl_seterr(err, errlen, CL_ENOMEM, "snapshot %s: out of memory", snapshot_id);
    }
    s->snapshots = grown;
    size_t pos = s->nsnapshots;
    while (pos > 0 && snapshot_cmp(s->snapshots[pos - 1].time_ms, s->snapshots[pos - 1].id,
                                   snapshot_time_ms, snapshot_id) > 0)
        pos--;
    memmove(&s->snapshots[pos + 1], &s->snapshots[pos], (s->nsnapshots - pos) * sizeof *grown);
    cl_join_snapshot *snap = &s->snapshots[pos];
    memset(snap, 0, sizeof *snap);
    memcpy(snap->id, snapshot_id, idlen);
    snap->id[idlen] = '\0';
    snap->time_ms = snapshot_time_ms;
    snap->payload = copy;
    snap->payload_len = len;
    s->nsnapshots++;
    if (offset >= 0) s->snapshot_offset = offset;
    s->unscored = 0;
    out->counts.changed = 1;

    /* The bound may drop the newcomer itself (older than everything kept). */
    char id[CL_JOIN_ID_MAX + 1];
    memcpy(id, snapshot_id, idlen + 1);
    out->counts.evicted += enforce_bounds(s, p);
    for (i = 0; i < s->nsnapshots; i++)
        if (strcmp(s->snapshots[i].id, id) == 0) break;
    if (i == s->nsnapshots) return CL_OK;
    snap = &s->snapshots[i];

    if (!s->has_outcome || s->outcome_retracted) {
        out->counts.waiting++;
        return CL_OK;
    }
    if (!eligible(s, snap)) {
        out->counts.excluded++;
        return CL_OK;
    }
    rc = emit(out, 0, s->outcome_version, s->close_date, snap, s->outcome_payload,
              s->outcome_payload_len);
    if (rc != CL_OK) return cl_seterr(err, errlen, rc, "snapshot %s: out of memory", snapshot_id);
    return CL_OK;
}

int cl_join_apply_outcome(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                          int64_t version, int32_t close_date, const void *payload, size_t len,
                          cl_join_emits *out, char *err, size_t errlen)
{
    int rc = check_policy(p, err, errlen);
    if (rc != CL_OK) return rc;
    if (len == 0 || len > CL_JOIN_PAYLOAD_MAX)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "outcome of opportunity %s: payload of %zu bytes is outside 1..%u",
                         s->opportunity_id, len, CL_JOIN_PAYLOAD_MAX);
    if (offset >= 0 && offset <= s->outcome_offset) {
        out->counts.duplicates++;
        return cl_join_view(s, out, err, errlen);
    }
    if (version <= s->version_floor) {
        /* Stale or duplicate version: only the offset moves. */
        if (offset >= 0) s->outcome_offset = offset;
        if (s->has_outcome && version == s->outcome_version)
            out->counts.duplicates++;
        else
            out->counts.stale++;
        out->counts.changed = 1;
        return CL_OK;
    }

    uint8_t *copy = malloc(len);
    if (!copy)
        return cl_seterr(err, errlen, CL_ENOMEM, "outcome of %s: out of memory", s->opportunity_id);
    memcpy(copy, payload, len);

    /* The examples of the version being replaced are retracted explicitly, so a
     * consumer is right even when the new version has nothing to emit. */
    if (s->has_outcome && !s->outcome_retracted) {
        rc = emit_all(s, 1, out, 0);
        if (rc == CL_OK) rc = own(out, s->outcome_payload);
        if (rc != CL_OK) {
            free(copy);
            return cl_seterr(err, errlen, rc, "outcome of %s: out of memory", s->opportunity_id);
        }
    } else {
        free(s->outcome_payload);
    }
    s->outcome_payload = copy;
    s->outcome_payload_len = len;
    s->has_outcome = 1;
    s->outcome_retracted = 0;
    s->outcome_version = version;
    s->version_floor = version;
    s->close_date = close_date;
    if (offset >= 0) s->outcome_offset = offset;
    out->counts.changed = 1;
    rc = emit_all(s, 0, out, 1);
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "outcome of %s: out of memory", s->opportunity_id);
    return CL_OK;
}

int cl_join_apply_tombstone(cl_join_state *s, const cl_join_policy *p, int64_t offset,
                            cl_join_emits *out, char *err, size_t errlen)
{
    (void)p;
    if (offset >= 0 && offset <= s->outcome_offset) {
        out->counts.duplicates++;
        return cl_join_view(s, out, err, errlen);
    }
    if (offset >= 0) s->outcome_offset = offset;
    out->counts.changed = 1;
    if (!s->has_outcome || s->outcome_retracted) {
        out->counts.duplicates++;
        return CL_OK;
    }
    s->outcome_retracted = 1;
    int rc = emit_all(s, 1, out, 0);
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "tombstone of %s: out of memory", s->opportunity_id);
    return CL_OK;
}

int64_t cl_join_deadline(const cl_join_state *s, const cl_join_policy *p, cl_join_timer_kind *kind)
{
    cl_join_timer_kind k = CL_JOIN_TIMER_NONE;
    int64_t at = CL_JOIN_NO_DEADLINE;
    int open = !s->has_outcome || s->outcome_retracted;
    if (s->nsnapshots > 0 && open && p->open_expiry_ms > 0) {
        int64_t newest = s->snapshots[s->nsnapshots - 1].time_ms;
        k = CL_JOIN_TIMER_EXPIRE;
        at = newest > INT64_MAX - p->open_expiry_ms ? CL_JOIN_NO_DEADLINE - 1
                                                    : newest + p->open_expiry_ms;
    } else if (s->nsnapshots == 0 && !open && !s->unscored && p->unscored_after_ms > 0) {
        k = CL_JOIN_TIMER_UNSCORED;
        at = s->outcome_version > INT64_MAX - p->unscored_after_ms
                 ? CL_JOIN_NO_DEADLINE - 1
                 : s->outcome_version + p->unscored_after_ms;
    }
    if (kind) *kind = k;
    return at;
}

int cl_join_fire_timer(cl_join_state *s, const cl_join_policy *p, int64_t watermark,
                       cl_join_emits *out, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    cl_join_timer_kind kind;
    int64_t at = cl_join_deadline(s, p, &kind);
    if (kind == CL_JOIN_TIMER_NONE || watermark < at) return CL_OK;
    if (kind == CL_JOIN_TIMER_EXPIRE) {
        out->counts.expired += s->nsnapshots;
        while (s->nsnapshots > 0)
            drop_snapshot(s, s->nsnapshots - 1);
    } else {
        s->unscored = 1;
        out->counts.unscored++;
    }
    out->counts.changed = 1;
    return CL_OK;
}

/* ---- binary form -------------------------------------------------------------------
 * format u8 | flags u8 | id (u16 len + bytes) | snapshot_offset i64 | outcome_offset i64
 * | version_floor i64 | [outcome: version i64 | close_date i32 | payload (u32 + bytes)]
 * | nsnapshots u16 | per snapshot: id (u16 + bytes) | time i64 | payload (u32 + bytes)
 * Integers little-endian.
 */

static int put_u(cl_buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    return cl_buf_append(b, tmp, (size_t)bytes);
}

static int put_bytes16(cl_buf *b, const char *s)
{
    size_t n = strlen(s);
    int rc = put_u(b, n, 2);
    return rc != CL_OK ? rc : cl_buf_append(b, s, n);
}

static int put_bytes32(cl_buf *b, const uint8_t *p, size_t n)
{
    int rc = put_u(b, n, 4);
    return rc != CL_OK || n == 0 ? rc : cl_buf_append(b, p, n);
}

int cl_join_state_encode(const cl_join_state *s, cl_buf *out, char *err, size_t errlen)
{
    unsigned flags = (s->has_outcome ? FLAG_HAS_OUTCOME : 0) |
                     (s->outcome_retracted ? FLAG_RETRACTED : 0) |
                     (s->unscored ? FLAG_UNSCORED : 0);
    int rc = put_u(out, STATE_FORMAT, 1);
    if (rc == CL_OK) rc = put_u(out, flags, 1);
    if (rc == CL_OK) rc = put_bytes16(out, s->opportunity_id);
    if (rc == CL_OK) rc = put_u(out, (uint64_t)s->snapshot_offset, 8);
    if (rc == CL_OK) rc = put_u(out, (uint64_t)s->outcome_offset, 8);
    if (rc == CL_OK) rc = put_u(out, (uint64_t)s->version_floor, 8);
    if (rc == CL_OK && s->has_outcome) {
        rc = put_u(out, (uint64_t)s->outcome_version, 8);
        if (rc == CL_OK) rc = put_u(out, (uint32_t)s->close_date, 4);
        if (rc == CL_OK) rc = put_bytes32(out, s->outcome_payload, s->outcome_payload_len);
    }
    if (rc == CL_OK) rc = put_u(out, s->nsnapshots, 2);
    for (size_t i = 0; rc == CL_OK && i < s->nsnapshots; i++) {
        rc = put_bytes16(out, s->snapshots[i].id);
        if (rc == CL_OK) rc = put_u(out, (uint64_t)s->snapshots[i].time_ms, 8);
        if (rc == CL_OK)
            rc = put_bytes32(out, s->snapshots[i].payload, s->snapshots[i].payload_len);
    }
    if (rc != CL_OK)
        return cl_seterr(err, errlen, rc, "join state of %s: encoded form too large",
                         s->opportunity_id);
    return CL_OK;
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} reader;

static int get_u(reader *r, int bytes, uint64_t *v)
{
    if (r->len - r->pos < (size_t)bytes) return CL_EINVAL;
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)r->p[r->pos + (size_t)i] << (8 * i);
    r->pos += (size_t)bytes;
    *v = x;
    return CL_OK;
}

static int get_id(reader *r, char out[CL_JOIN_ID_MAX + 1])
{
    uint64_t n;
    if (get_u(r, 2, &n) != CL_OK || n > CL_JOIN_ID_MAX || r->len - r->pos < n) return CL_EINVAL;
    memcpy(out, r->p + r->pos, (size_t)n);
    out[n] = '\0';
    if (memchr(out, '\0', (size_t)n)) return CL_EINVAL;
    r->pos += (size_t)n;
    return CL_OK;
}

static int get_payload(reader *r, uint8_t **out, size_t *outlen)
{
    uint64_t n;
    if (get_u(r, 4, &n) != CL_OK || n == 0 || n > CL_JOIN_PAYLOAD_MAX || r->len - r->pos < n)
        return CL_EINVAL;
    uint8_t *p = malloc((size_t)n);
    if (!p) return CL_ENOMEM;
    memcpy(p, r->p + r->pos, (size_t)n);
    r->pos += (size_t)n;
    *out = p;
    *outlen = (size_t)n;
    return CL_OK;
}

int cl_join_state_decode(const void *data, size_t len, cl_join_state *s, char *err, size_t errlen)
{
    reader r = {data, len, 0};
    cl_join_state st;
    cl_join_state_init(&st, NULL, 0);
    uint64_t v, flags;
    int rc = CL_EINVAL;
    const char *what = "format byte";
    if (get_u(&r, 1, &v) != CL_OK || v != STATE_FORMAT) goto fail;
    what = "flags";
    if (get_u(&r, 1, &flags) != CL_OK || (flags & ~(uint64_t)7) != 0) goto fail;
    what = "opportunity id";
    if (get_id(&r, st.opportunity_id) != CL_OK || st.opportunity_id[0] == '\0') goto fail;
    what = "offsets";
    if (get_u(&r, 8, &v) != CL_OK) goto fail;
    st.snapshot_offset = (int64_t)v;
    if (get_u(&r, 8, &v) != CL_OK) goto fail;
    st.outcome_offset = (int64_t)v;
    if (get_u(&r, 8, &v) != CL_OK) goto fail;
    st.version_floor = (int64_t)v;
    st.has_outcome = (flags & FLAG_HAS_OUTCOME) != 0;
    st.outcome_retracted = (flags & FLAG_RETRACTED) != 0;
    st.unscored = (flags & FLAG_UNSCORED) != 0;
    if (st.outcome_retracted && !st.has_outcome) goto fail;
    if (st.has_outcome) {
        what = "outcome";
        if (get_u(&r, 8, &v) != CL_OK) goto fail;
        st.outcome_version = (int64_t)v;
        if (get_u(&r, 4, &v) != CL_OK) goto fail;
        st.close_date = (int32_t)(uint32_t)v;
        rc = get_payload(&r, &st.outcome_payload, &st.outcome_payload_len);
        if (rc != CL_OK) goto fail;
        rc = CL_EINVAL;
    }
    what = "snapshot count";
    if (get_u(&r, 2, &v) != CL_OK || v > CL_JOIN_SNAPSHOTS_HARD_MAX) goto fail;
    if (v > 0) {
        st.snapshots = calloc((size_t)v, sizeof *st.snapshots);
        if (!st.snapshots) {
            rc = CL_ENOMEM;
            goto fail;
        }
    }
    size_t n = (size_t)v;
    for (size_t i = 0; i < n; i++) {
        cl_join_snapshot *snap = &st.snapshots[i];
        what = "snapshot";
        if (get_id(&r, snap->id) != CL_OK || snap->id[0] == '\0') goto fail;
        if (get_u(&r, 8, &v) != CL_OK) goto fail;
        snap->time_ms = (int64_t)v;
        rc = get_payload(&r, &snap->payload, &snap->payload_len);
        if (rc != CL_OK) goto fail;
        rc = CL_EINVAL;
        st.nsnapshots = i + 1;
        if (i > 0 && snapshot_cmp(st.snapshots[i - 1].time_ms, st.snapshots[i - 1].id,
                                  snap->time_ms, snap->id) >= 0) {
            what = "snapshot order";
            goto fail;
        }
    }
    what = "trailing bytes";
    if (r.pos != r.len) goto fail;
    *s = st;
    return CL_OK;
fail:
    cl_join_state_free(&st);
    return cl_seterr(err, errlen, rc == CL_ENOMEM ? CL_ENOMEM : CL_EINVAL,
                     "join state: bad %s at byte %zu of %zu", what, r.pos, len);
}
