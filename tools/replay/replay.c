/*
 * replay.c — CRM export -> snapshot runs + outcomes, and the offline backtest.
 * See replay.h for the contract and docs/backtest.md for the formulas.
 */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "csv.h"
#include "error.h"
#include "gen/gen.h"
#include "log.h"
#include "stats.h"
#include "util.h"

const char *const cl_replay_column_keys[CL_REPLAY_COL_COUNT] = {
    "id",     "account", "owner",  "product", "stage",  "created",     "close",
    "amount", "won",     "closed", "segment", "region", "lead_source", "type",
};

const char *const cl_replay_column_defaults[CL_REPLAY_COL_COUNT] = {
    "opportunity_id", "account_name", "owner",       "product", "stage",
    "created_date",   "close_date",   "amount",      "is_won",  "is_closed",
    "segment",        "region",       "lead_source", "",
};

const char *const cl_replay_component_names[CL_REPLAY_COMPONENTS] = {
    "speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate", "recency",
};

const double cl_replay_seed_weights[CL_REPLAY_COMPONENTS] = {0.15, 0.20, 0.15, 0.25, 0.20, 0.05};

const char *const cl_replay_factor_names[CL_REPLAY_FACTORS] = {
    "owner_win_rate",   "segment_win_rate",  "lead_source_win_rate",
    "product_win_rate", "amount_percentile",
};

/* Text columns kept per opportunity (the others are parsed into numbers). */
static const cl_replay_column text_columns[] = {
    CL_REPLAY_COL_ACCOUNT, CL_REPLAY_COL_OWNER,  CL_REPLAY_COL_PRODUCT,     CL_REPLAY_COL_STAGE,
    CL_REPLAY_COL_SEGMENT, CL_REPLAY_COL_REGION, CL_REPLAY_COL_LEAD_SOURCE, CL_REPLAY_COL_TYPE,
};
#define TEXT_COLUMNS (sizeof text_columns / sizeof text_columns[0])

/* Categories whose point-in-time win rates are the first four learned factors. */
static const cl_replay_column factor_columns[CL_REPLAY_FACTORS - 1] = {
    CL_REPLAY_COL_OWNER,
    CL_REPLAY_COL_SEGMENT,
    CL_REPLAY_COL_LEAD_SOURCE,
    CL_REPLAY_COL_PRODUCT,
};

/* Seeds of the id hash, one per kind, so an account and an owner with the same name
 * still get different ids. */
#define ID_SEED_OPPORTUNITY 0x6f70706f7274756eull
#define ID_SEED_ACCOUNT 0x6163636f756e7400ull
#define ID_SEED_OWNER 0x6f776e6572000000ull

/* ---- interned strings: index 0 is the empty string (null) ------------------------ */

typedef struct {
    char **items;
    size_t n, cap;
    uint32_t *slots; /* open addressing, 0 = empty, else index + 1 */
    size_t nslots;
} strtab;

static int strtab_init(strtab *t)
{
    memset(t, 0, sizeof *t);
    t->nslots = 1024;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    t->cap = 256;
    t->items = malloc(t->cap * sizeof *t->items);
    if (!t->slots || !t->items) return CL_ENOMEM;
    t->items[0] = strdup("");
    if (!t->items[0]) return CL_ENOMEM;
    t->n = 1;
    return CL_OK;
}

static void strtab_free(strtab *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->items[i]);
    free(t->items);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static size_t strtab_slot(const strtab *t, const char *s, size_t len)
{
    size_t mask = t->nslots - 1, i = (size_t)cl_hash64(s, len, 0) & mask;
    while (t->slots[i] && strcmp(t->items[t->slots[i] - 1], s) != 0)
        i = (i + 1) & mask;
    return i;
}

static int strtab_grow(strtab *t)
{
    size_t nslots = t->nslots * 2;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return CL_ENOMEM;
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    for (size_t k = 1; k < t->n; k++) {
        size_t i = strtab_slot(t, t->items[k], strlen(t->items[k]));
        t->slots[i] = (uint32_t)k + 1;
    }
    return CL_OK;
}

/* *created says whether s was new. */
static int strtab_intern(strtab *t, const char *s, uint32_t *idx, int *created)
{
    if (created) *created = 0;
    if (!s[0]) return *idx = 0, CL_OK;
    size_t len = strlen(s);
    size_t i = strtab_slot(t, s, len);
    if (t->slots[i]) return *idx = t->slots[i] - 1, CL_OK;
    if (t->n >= UINT32_MAX - 1) return CL_ENOMEM;
    if (t->n == t->cap) {
        char **items = realloc(t->items, t->cap * 2 * sizeof *items);
        if (!items) return CL_ENOMEM;
        t->items = items;
        t->cap *= 2;
    }
    char *copy = strdup(s);
    if (!copy) return CL_ENOMEM;
    t->items[t->n] = copy;
    t->slots[i] = (uint32_t)t->n + 1;
    *idx = (uint32_t)t->n++;
    if (created) *created = 1;
    if (t->n * 2 > t->nslots) return strtab_grow(t);
    return CL_OK;
}

static int strtab_find(const strtab *t, const char *s, uint32_t *idx)
{
    if (!s[0]) return CL_ENOTFOUND;
    size_t i = strtab_slot(t, s, strlen(s));
    if (!t->slots[i]) return CL_ENOTFOUND;
    *idx = t->slots[i] - 1;
    return CL_OK;
}

/* ---- the loaded history ------------------------------------------------------------ */

typedef struct {
    uint32_t source_id;                 /* in h->ids */
    uint32_t text[CL_REPLAY_COL_COUNT]; /* in h->text; 0 = null (text columns only) */
    int32_t created, close;
    uint8_t closed, won, has_amount;
    double amount;
    char id[19];
} opp_rec;

struct cl_replay {
    cl_replay_options opt;
    cl_replay_counts counts;
    char name[256];
    strtab text, ids;
    opp_rec *opps;
    size_t n, cap;
    /* Accounts: CSR lists of opportunity indexes per account (dense numbering). */
    uint32_t *account_of; /* text index -> dense account + 1 (0: not an account) */
    size_t naccounts;
    size_t *account_start; /* naccounts + 1 */
    uint32_t *account_opps;
    /* Outcomes known at the end, by close day: the global past win rate at any day is
     * a binary search away. */
    size_t nclosed;
    uint32_t *closed_order; /* opportunity indexes, ascending close day then index */
    int32_t *closed_day;
    uint32_t *won_prefix; /* won_prefix[k] = won among closed_order[0..k) */
    /* Derived ids of accounts and owners, by text index ("" when not one). */
    char (*account_ids)[19];
    char (*owner_ids)[19];
    /* Scratch for cl_replay_components. */
    double *scratch;
    uint32_t *stamp;
    uint32_t stamp_epoch;
};

void cl_replay_options_init(cl_replay_options *o)
{
    memset(o, 0, sizeof *o);
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++)
        o->columns[k] = cl_replay_column_defaults[k];
    o->bad_rows = CL_REPLAY_BAD_ROWS_FAIL;
    o->interval_days = 7;
    o->start_day = INT32_MIN;
    o->end_day = INT32_MIN;
    memcpy(o->currency, "USD", 4);
    o->win_rate_smoothing = 5.0;
    o->recency_half_life_days = 180.0;
    o->product_mix_cap = 4;
    o->max_input_bytes = (size_t)1 << 30;
}

void cl_replay_free(cl_replay *h)
{
    if (!h) return;
    strtab_free(&h->text);
    strtab_free(&h->ids);
    free(h->opps);
    free(h->account_of);
    free(h->account_start);
    free(h->account_opps);
    free(h->closed_order);
    free(h->closed_day);
    free(h->won_prefix);
    free(h->account_ids);
    free(h->owner_ids);
    free(h->scratch);
    free(h->stamp);
    free(h);
}

const cl_replay_counts *cl_replay_get_counts(const cl_replay *h)
{
    return &h->counts;
}
size_t cl_replay_size(const cl_replay *h)
{
    return h->n;
}

static int valid_salesforce_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 18 || !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'A' && s[n] <= 'Z') ||
                         (s[n] >= 'a' && s[n] <= 'z')))
            return 0;
    return n == 15 || n == 18;
}

/* A source value that already is a Salesforce id is kept; anything else gets a
 * deterministic 18-character id hashed from its text. */
static void derive_id(const char *prefix, uint64_t seed, const char *source, char out[19])
{
    if (valid_salesforce_id(source)) {
        cl_strlcpy(out, source, 19);
        return;
    }
    cl_gen_salesforce_id(prefix, cl_hash64(source, strlen(source), seed), out);
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF): the values
 * end up in JSON, which must be valid UTF-8. */
static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += len;
    }
    return 1;
}

/* A date column: YYYY-MM-DD, or an ISO-8601 timestamp (its UTC day). */
static int parse_day(const char *s, int32_t *day)
{
    if (cl_parse_date(s, day) == CL_OK) return CL_OK;
    int64_t ms;
    if (cl_parse_timestamp(s, &ms) != CL_OK) return CL_EINVAL;
    int64_t d = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    if (d < INT32_MIN / 2 || d > INT32_MAX / 2) return CL_EINVAL;
    *day = (int32_t)d;
    return CL_OK;
}

typedef struct {
    const char *name;
    size_t line;
    int map[CL_REPLAY_COL_COUNT]; /* header position, -1 absent */
    char *const *header;
} row_ctx;

static int bad_field(const row_ctx *c, cl_replay_column col, char *err, size_t errlen,
                     const char *what, const char *value)
{
    return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu, column %s: '%.60s' %s", c->name, c->line,
                     c->header[c->map[col]], value, what);
}

/* Parses one data row into *o (text columns interned into h). */
static int parse_row(cl_replay *h, const row_ctx *c, char **f, opp_rec *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    const int *m = c->map;
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++) {
        if (m[k] < 0) continue;
        const char *v = f[m[k]];
        if (strlen(v) > CL_REPLAY_MAX_TEXT)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "%s line %zu, column %s: value is longer than %d bytes", c->name,
                             c->line, c->header[m[k]], CL_REPLAY_MAX_TEXT);
        if (!valid_utf8(v))
            return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu, column %s: not valid UTF-8",
                             c->name, c->line, c->header[m[k]]);
    }
    const char *id = f[m[CL_REPLAY_COL_ID]];
    if (!id[0])
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu, column %s: empty opportunity id",
                         c->name, c->line, c->header[m[CL_REPLAY_COL_ID]]);
    if (!f[m[CL_REPLAY_COL_ACCOUNT]][0])
        return cl_seterr(err, errlen, CL_EINVAL, "%s line %zu, column %s: empty account", c->name,
                         c->line, c->header[m[CL_REPLAY_COL_ACCOUNT]]);
    if (parse_day(f[m[CL_REPLAY_COL_CREATED]], &o->created) != CL_OK)
        return bad_field(c, CL_REPLAY_COL_CREATED, err, errlen, "is not a date (YYYY-MM-DD)",
                         f[m[CL_REPLAY_COL_CREATED]]);
    if (parse_day(f[m[CL_REPLAY_COL_CLOSE]], &o->close) != CL_OK)
        return bad_field(c, CL_REPLAY_COL_CLOSE, err, errlen, "is not a date (YYYY-MM-DD)",
                         f[m[CL_REPLAY_COL_CLOSE]]);
    if (o->close < o->created)
        return bad_field(c, CL_REPLAY_COL_CLOSE, err, errlen, "is before the created date",
                         f[m[CL_REPLAY_COL_CLOSE]]);
    int won, closed = 1;
    if (cl_parse_bool(f[m[CL_REPLAY_COL_WON]], &won) != CL_OK)
        return bad_field(c, CL_REPLAY_COL_WON, err, errlen,
                         "is not a boolean (true/false, yes/no, 1/0)", f[m[CL_REPLAY_COL_WON]]);
    if (m[CL_REPLAY_COL_CLOSED] >= 0 && cl_parse_bool(f[m[CL_REPLAY_COL_CLOSED]], &closed) != CL_OK)
        return bad_field(c, CL_REPLAY_COL_CLOSED, err, errlen,
                         "is not a boolean (true/false, yes/no, 1/0)", f[m[CL_REPLAY_COL_CLOSED]]);
    if (won && !closed)
        return bad_field(c, CL_REPLAY_COL_WON, err, errlen,
                         "says won but the opportunity is not closed", f[m[CL_REPLAY_COL_WON]]);
    o->won = (uint8_t)won;
    o->closed = (uint8_t)closed;
    if (m[CL_REPLAY_COL_AMOUNT] >= 0 && f[m[CL_REPLAY_COL_AMOUNT]][0]) {
        const char *v = f[m[CL_REPLAY_COL_AMOUNT]];
        if (cl_parse_double(v, &o->amount) != CL_OK || o->amount < 0 || o->amount > 1e15)
            return bad_field(c, CL_REPLAY_COL_AMOUNT, err, errlen,
                             "is not an amount (a number from 0 to 1e15)", v);
        o->has_amount = 1;
    }
    for (size_t t = 0; t < TEXT_COLUMNS; t++) {
        cl_replay_column col = text_columns[t];
        if (m[col] < 0) continue;
        if (strtab_intern(&h->text, f[m[col]], &o->text[col], NULL) != CL_OK)
            return cl_seterr(err, errlen, CL_ENOMEM, "%s line %zu: out of memory", c->name,
                             c->line);
    }
    int created;
    if (strtab_intern(&h->ids, id, &o->source_id, &created) != CL_OK)
        return cl_seterr(err, errlen, CL_ENOMEM, "%s line %zu: out of memory", c->name, c->line);
    if (!created)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "%s line %zu, column %s: opportunity id '%.60s' appears twice (an "
                         "export must hold one row per opportunity)",
                         c->name, c->line, c->header[m[CL_REPLAY_COL_ID]], id);
    derive_id("006", ID_SEED_OPPORTUNITY, id, o->id);
    return CL_OK;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Two different sources mapped to one id would merge opportunities or accounts. The
 * hash makes this astronomically unlikely; it is still checked, not assumed. */
static int check_unique_ids(const char *kind, char **ids, size_t n, char *err, size_t errlen)
{
    qsort(ids, n, sizeof *ids, compare_strings);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            return cl_seterr(err, errlen, CL_ECONFLICT,
                             "two different %s values map to the id %s; rename one in the export",
                             kind, ids[i]);
    return CL_OK;
}

static const opp_rec *closed_sort_base;

static int compare_closed(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    const opp_rec *x = &closed_sort_base[a], *y = &closed_sort_base[b];
    if (x->close != y->close) return x->close < y->close ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* Builds accounts, the close-day index and derived ids once every row is in. */
static int index_history(cl_replay *h, char *err, size_t errlen)
{
    cl_replay_counts *c = &h->counts;
    int32_t first = INT32_MAX, last_close = INT32_MIN;
    for (size_t i = 0; i < h->n; i++) {
        if (h->opps[i].created < first) first = h->opps[i].created;
        if (h->opps[i].closed && h->opps[i].close > last_close) last_close = h->opps[i].close;
    }
    c->first_created = first;
    c->last_close = last_close;
    c->start_day = h->opt.start_day != INT32_MIN ? h->opt.start_day : first;
    if (h->opt.end_day != INT32_MIN)
        c->end_day = h->opt.end_day;
    else if (last_close != INT32_MIN)
        c->end_day = last_close + 1;
    else
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: no closed opportunity, so the extraction date is unknown; set "
                         "replay.end.date",
                         h->name);
    if (c->end_day <= c->start_day)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: the end date is not after the start date",
                         h->name);

    /* An outcome at or after the extraction date was not known then: such deals are
     * open at the end. */
    for (size_t i = 0; i < h->n; i++)
        if (h->opps[i].closed && h->opps[i].close >= c->end_day)
            h->opps[i].closed = 0, h->opps[i].won = 0;

    size_t ntext = h->text.n;
    h->account_of = calloc(ntext, sizeof *h->account_of);
    h->account_ids = calloc(ntext, sizeof *h->account_ids);
    h->owner_ids = calloc(ntext, sizeof *h->owner_ids);
    h->stamp = calloc(ntext, sizeof *h->stamp);
    if (!h->account_of || !h->account_ids || !h->owner_ids || !h->stamp) goto oom;
    for (size_t i = 0; i < h->n; i++) {
        uint32_t a = h->opps[i].text[CL_REPLAY_COL_ACCOUNT];
        if (!h->account_of[a]) h->account_of[a] = (uint32_t)++h->naccounts;
    }
    /* CSR lists: dense account d (1-based) owns account_opps[start[d], start[d+1]). */
    h->account_start = calloc(h->naccounts + 2, sizeof *h->account_start);
    h->account_opps = malloc((h->n ? h->n : 1) * sizeof *h->account_opps);
    if (!h->account_start || !h->account_opps) goto oom;
    for (size_t i = 0; i < h->n; i++)
        h->account_start[h->account_of[h->opps[i].text[CL_REPLAY_COL_ACCOUNT]]]++;
    size_t largest = 1;
    for (size_t a = 1; a <= h->naccounts; a++) {
        if (h->account_start[a] > largest) largest = h->account_start[a];
        h->account_start[a] += h->account_start[a - 1];
    }
    /* start[a] is now the end of list a; filling backwards moves it to its start and
     * keeps each list in input order. */
    for (size_t i = h->n; i-- > 0;) {
        size_t a = h->account_of[h->opps[i].text[CL_REPLAY_COL_ACCOUNT]];
        h->account_opps[--h->account_start[a]] = (uint32_t)i;
    }
    h->account_start[h->naccounts + 1] = h->n;
    h->scratch = malloc(largest * sizeof *h->scratch);
    if (!h->scratch) goto oom;

    h->closed_order = malloc((h->n ? h->n : 1) * sizeof *h->closed_order);
    h->closed_day = malloc((h->n ? h->n : 1) * sizeof *h->closed_day);
    h->won_prefix = malloc((h->n + 1) * sizeof *h->won_prefix);
    if (!h->closed_order || !h->closed_day || !h->won_prefix) goto oom;
    for (size_t i = 0; i < h->n; i++)
        if (h->opps[i].closed) h->closed_order[h->nclosed++] = (uint32_t)i;
    closed_sort_base = h->opps;
    qsort(h->closed_order, h->nclosed, sizeof *h->closed_order, compare_closed);
    h->won_prefix[0] = 0;
    for (size_t k = 0; k < h->nclosed; k++) {
        const opp_rec *o = &h->opps[h->closed_order[k]];
        h->closed_day[k] = o->close;
        h->won_prefix[k + 1] = h->won_prefix[k] + o->won;
        c->closed++;
        c->won += o->won;
    }
    c->open = h->n - c->closed;
    c->accounts = h->naccounts;

    /* Derived ids, checked for collisions per kind. */
    char **ids = malloc((h->n > ntext ? h->n : ntext) * sizeof *ids + sizeof *ids);
    if (!ids) goto oom;
    for (size_t i = 0; i < h->n; i++)
        ids[i] = h->opps[i].id;
    int rc = check_unique_ids("opportunity id", ids, h->n, err, errlen);
    size_t na = 0, no = 0;
    if (rc == CL_OK) {
        for (size_t i = 0; i < h->n; i++) {
            uint32_t a = h->opps[i].text[CL_REPLAY_COL_ACCOUNT];
            if (!h->account_ids[a][0]) {
                derive_id("001", ID_SEED_ACCOUNT, h->text.items[a], h->account_ids[a]);
                ids[na++] = h->account_ids[a];
            }
        }
        rc = check_unique_ids("account", ids, na, err, errlen);
    }
    if (rc == CL_OK) {
        for (size_t i = 0; i < h->n; i++) {
            uint32_t w = h->opps[i].text[CL_REPLAY_COL_OWNER];
            if (w && !h->owner_ids[w][0]) {
                derive_id("005", ID_SEED_OWNER, h->text.items[w], h->owner_ids[w]);
                ids[no++] = h->owner_ids[w];
            }
        }
        rc = check_unique_ids("owner", ids, no, err, errlen);
    }
    free(ids);
    c->owners = no;
    return rc;
oom:
    return cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory indexing the history", h->name);
}

/* Every opportunity of o's account (o included). */
static void account_list(const cl_replay *h, const opp_rec *o, const uint32_t **list, size_t *n)
{
    size_t d = h->account_of[o->text[CL_REPLAY_COL_ACCOUNT]];
    *list = h->account_opps + h->account_start[d];
    *n = h->account_start[d + 1] - h->account_start[d];
}

int cl_replay_load_text(const cl_replay_options *opt, const char *name, const char *data,
                        size_t len, cl_replay **out, char *err, size_t errlen)
{
    *out = NULL;
    if (opt->interval_days < 1 || opt->interval_days > 366)
        return cl_seterr(err, errlen, CL_EINVAL, "replay.interval.days must be 1..366");
    if (!(opt->win_rate_smoothing >= 0) || !(opt->recency_half_life_days > 0) ||
        opt->product_mix_cap < 1)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "replay options: smoothing >= 0, half-life > 0 and product-mix cap >= 1");
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++) {
        int required = k == CL_REPLAY_COL_ID || k == CL_REPLAY_COL_ACCOUNT ||
                       k == CL_REPLAY_COL_CREATED || k == CL_REPLAY_COL_CLOSE ||
                       k == CL_REPLAY_COL_WON;
        if (required && (!opt->columns[k] || !opt->columns[k][0]))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "replay.column.%s is required (the export's header name for it)",
                             cl_replay_column_keys[k]);
    }
    cl_replay *h = calloc(1, sizeof *h);
    if (!h) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    h->opt = *opt;
    cl_strlcpy(h->name, name, sizeof h->name);
    if (strtab_init(&h->text) != CL_OK || strtab_init(&h->ids) != CL_OK) {
        cl_replay_free(h);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }

    cl_csv_reader r;
    cl_csv_reader_init(&r, data, len);
    char **fields;
    size_t nfields, nheader = 0;
    char *header[CL_CSV_MAX_FIELDS];
    char rerr[CL_ERRLEN];
    int rc = cl_csv_next_row(&r, &fields, &nfields, rerr, sizeof rerr);
    if (rc == CL_ENOTFOUND) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: empty file (no header)", name);
        goto done;
    }
    if (rc != CL_OK) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: %s", name, rerr);
        goto done;
    }
    for (; nheader < nfields; nheader++) {
        header[nheader] = strdup(fields[nheader]);
        if (!header[nheader]) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
            goto done;
        }
    }
    row_ctx ctx = {.name = name, .header = header};
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++) {
        ctx.map[k] = -1;
        if (!opt->columns[k] || !opt->columns[k][0]) continue;
        for (size_t j = 0; j < nheader; j++)
            if (strcmp(header[j], opt->columns[k]) == 0) ctx.map[k] = (int)j;
        if (ctx.map[k] < 0) {
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "%s line 1: no column '%.60s' (replay.column.%s) in the header; map "
                           "it to the export's name, or set it to \"\" if the export has none%s",
                           name, opt->columns[k], cl_replay_column_keys[k],
                           k == CL_REPLAY_COL_ID || k == CL_REPLAY_COL_ACCOUNT ||
                                   k == CL_REPLAY_COL_CREATED || k == CL_REPLAY_COL_CLOSE ||
                                   k == CL_REPLAY_COL_WON
                               ? " (this one is required)"
                               : "");
            goto done;
        }
    }
    size_t logged = 0;
    for (;;) {
        rc = cl_csv_next_row(&r, &fields, &nfields, rerr, sizeof rerr);
        if (rc == CL_ENOTFOUND) break;
        if (rc != CL_OK) { /* the CSV framing itself is broken: nothing after it is safe */
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s: %s", name, rerr);
            goto done;
        }
        h->counts.rows++;
        ctx.line = r.row_line;
        opp_rec rec;
        int prc;
        if (nfields != nheader)
            prc = cl_seterr(rerr, sizeof rerr, CL_EINVAL,
                            "%s line %zu: %zu fields, the header has %zu", name, ctx.line, nfields,
                            nheader);
        else
            prc = parse_row(h, &ctx, fields, &rec, rerr, sizeof rerr);
        if (prc == CL_ENOMEM || (prc != CL_OK && opt->bad_rows == CL_REPLAY_BAD_ROWS_FAIL)) {
            rc = cl_seterr(err, errlen, prc, "%s", rerr);
            goto done;
        }
        if (prc != CL_OK) {
            h->counts.bad_rows++;
            if (logged++ < 20) cl_log(CL_LOG_WARN, "bad_row_skipped", "error=\"%s\"", rerr);
            continue;
        }
        if (h->n >= CL_REPLAY_MAX_OPPORTUNITIES) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "%s: more than %d opportunities", name,
                           CL_REPLAY_MAX_OPPORTUNITIES);
            goto done;
        }
        if (h->n == h->cap) {
            size_t cap = h->cap ? h->cap * 2 : 1024;
            opp_rec *opps = realloc(h->opps, cap * sizeof *opps);
            if (!opps) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory at %s line %zu", name,
                               ctx.line);
                goto done;
            }
            h->opps = opps;
            h->cap = cap;
        }
        h->opps[h->n++] = rec;
    }
    if (h->counts.bad_rows > 20)
        cl_log(CL_LOG_WARN, "bad_rows_skipped", "file=%s count=%zu", name, h->counts.bad_rows);
    if (h->n == 0) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: no usable opportunity rows", name);
        goto done;
    }
    h->counts.loaded = h->n;
    rc = index_history(h, err, errlen);
done:
    for (size_t j = 0; j < nheader; j++)
        free(header[j]);
    cl_csv_reader_free(&r);
    if (rc != CL_OK) {
        cl_replay_free(h);
        return rc;
    }
    *out = h;
    return CL_OK;
}

int cl_replay_load_file(const cl_replay_options *o, const char *path, cl_replay **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cl_seterr(err, errlen, CL_EIO, "cannot open %s: %s", path, strerror(errno));
    cl_buf b;
    cl_buf_init(&b, o->max_input_bytes);
    char chunk[65536];
    size_t got;
    int rc = CL_OK;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (cl_buf_append(&b, chunk, got) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "%s is larger than %zu bytes (replay.max.bytes)",
                           path, o->max_input_bytes);
            break;
        }
    if (rc == CL_OK && ferror(f))
        rc = cl_seterr(err, errlen, CL_EIO, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    if (rc == CL_OK)
        rc = cl_replay_load_text(o, path, b.data ? b.data : "", b.len, out, err, errlen);
    cl_buf_free(&b);
    return rc;
}

int cl_replay_find(const cl_replay *h, const char *source_id, size_t *index)
{
    uint32_t idx;
    if (strtab_find(&h->ids, source_id, &idx) != CL_OK) return CL_ENOTFOUND;
    /* ids are interned in load order, one per kept row, starting at 1 — but a skipped
     * bad row may have interned its id first, so search. */
    for (size_t i = 0; i < h->n; i++)
        if (h->opps[i].source_id == idx) return *index = i, CL_OK;
    return CL_ENOTFOUND;
}

int cl_replay_opportunity_at(const cl_replay *h, size_t index, cl_replay_opportunity *out)
{
    if (index >= h->n) return CL_ENOTFOUND;
    const opp_rec *o = &h->opps[index];
    out->source_id = h->ids.items[o->source_id];
    out->id = o->id;
    out->account = h->text.items[o->text[CL_REPLAY_COL_ACCOUNT]];
    out->owner = h->text.items[o->text[CL_REPLAY_COL_OWNER]];
    out->product = h->text.items[o->text[CL_REPLAY_COL_PRODUCT]];
    out->stage = h->text.items[o->text[CL_REPLAY_COL_STAGE]];
    out->segment = h->text.items[o->text[CL_REPLAY_COL_SEGMENT]];
    out->region = h->text.items[o->text[CL_REPLAY_COL_REGION]];
    out->lead_source = h->text.items[o->text[CL_REPLAY_COL_LEAD_SOURCE]];
    out->type = h->text.items[o->text[CL_REPLAY_COL_TYPE]];
    out->created_day = o->created;
    out->close_day = o->close;
    out->closed = o->closed;
    out->won = o->won;
    out->has_amount = o->has_amount;
    out->amount = o->amount;
    return CL_OK;
}

size_t cl_replay_run_count(const cl_replay *h)
{
    int64_t span = (int64_t)h->counts.end_day - h->counts.start_day;
    return span <= 0 ? 0 : (size_t)((span - 1) / h->opt.interval_days + 1);
}

int32_t cl_replay_run_day(const cl_replay *h, size_t run)
{
    return (int32_t)(h->counts.start_day + (int64_t)run * h->opt.interval_days);
}

int cl_replay_open_at(const cl_replay *h, size_t index, int32_t day)
{
    const opp_rec *o = &h->opps[index];
    if (day >= h->counts.end_day || o->created >= day) return 0;
    return o->closed ? day < o->close : 1;
}

/* ---- components ----------------------------------------------------------------------- */

static double round2(double v)
{
    return round(v * 100.0) / 100.0;
}

static double clamp100(double v)
{
    return v < 0 ? 0 : v > 100 ? 100 : v;
}

/* Global win rate of the outcomes closed before `day`; 0.5 when there is none. */
static double global_rate_before(const cl_replay *h, int32_t day, size_t *n_out)
{
    size_t lo = 0, hi = h->nclosed;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->closed_day[mid] < day)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (n_out) *n_out = lo;
    return lo ? (double)h->won_prefix[lo] / (double)lo : 0.5;
}

static int compare_doubles(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* Components plus the account's past median cycle (0 when it has no closed deal). */
static void compute_components(cl_replay *h, size_t index, int32_t day, double out[6],
                               double *median_cycle)
{
    const opp_rec *o = &h->opps[index];
    const uint32_t *list;
    size_t n;
    account_list(h, o, &list, &n);
    size_t closed = 0, won = 0, products = 0;
    double largest_won = -1.0;
    int32_t last_won = INT32_MIN;
    if (++h->stamp_epoch == 0) { /* wrapped: clear so old stamps cannot match */
        memset(h->stamp, 0, h->text.n * sizeof *h->stamp);
        h->stamp_epoch = 1;
    }
    for (size_t k = 0; k < n; k++) {
        const opp_rec *p = &h->opps[list[k]];
        /* The outcome is known at a 06:00Z snapshot only if it closed on an earlier day. */
        if (list[k] == index || !p->closed || p->close >= day) continue;
        h->scratch[closed++] = (double)(p->close - p->created);
        if (!p->won) continue;
        won++;
        if (p->has_amount && p->amount > largest_won) largest_won = p->amount;
        if (p->close > last_won) last_won = p->close;
        uint32_t prod = p->text[CL_REPLAY_COL_PRODUCT];
        if (prod && h->stamp[prod] != h->stamp_epoch) {
            h->stamp[prod] = h->stamp_epoch;
            products++;
        }
    }
    double median = 0;
    if (closed) {
        qsort(h->scratch, closed, sizeof *h->scratch, compare_doubles);
        median = closed % 2 ? h->scratch[closed / 2]
                            : (h->scratch[closed / 2 - 1] + h->scratch[closed / 2]) / 2.0;
    }
    *median_cycle = median;

    double age = (double)day - (double)o->created;
    /* speed_to_close: 100 at creation, 50 at the account's usual cycle, 0 at twice it. */
    double m = median < 1 ? 1 : median;
    out[0] = closed ? clamp100(100.0 * (1.0 - age / (2.0 * m))) : 50.0;
    /* largest_deal: within the size the account has already bought = 100; a deal k times
     * its largest past purchase = 100/k. No purchase yet = 0; unknown amount = 50. */
    if (!won || largest_won < 0)
        out[1] = 0.0;
    else if (!o->has_amount)
        out[1] = 50.0;
    else if (o->amount <= largest_won)
        out[1] = 100.0;
    else
        out[1] = clamp100(100.0 * largest_won / o->amount);
    /* product_mix: distinct products bought, saturating at the cap. */
    int cap = h->opt.product_mix_cap;
    out[2] = 100.0 * (double)(products < (size_t)cap ? products : (size_t)cap) / (double)cap;
    /* upsell_instances: past wins, 100·n/(n+2) (1 -> 33, 2 -> 50, 6 -> 75). */
    out[3] = 100.0 * (double)won / ((double)won + 2.0);
    /* win_rate: the account's past rate shrunk toward the global past rate. */
    double g = global_rate_before(h, day, NULL), s = h->opt.win_rate_smoothing;
    out[4] = closed + s > 0 ? 100.0 * ((double)won + s * g) / ((double)closed + s) : 100.0 * g;
    /* recency: halves every half-life since the last win; never won = 0. */
    out[5] =
        won ? clamp100(100.0 * pow(0.5, (double)(day - last_won) / h->opt.recency_half_life_days))
            : 0.0;
    for (int i = 0; i < 6; i++)
        out[i] = round2(clamp100(out[i]));
}

void cl_replay_components(cl_replay *h, size_t index, int32_t day, double out[CL_REPLAY_COMPONENTS])
{
    double median;
    compute_components(h, index, day, out, &median);
}

double cl_replay_seed_score(const double c[CL_REPLAY_COMPONENTS])
{
    double s = 0;
    for (int i = 0; i < CL_REPLAY_COMPONENTS; i++)
        s += cl_replay_seed_weights[i] * c[i];
    return round2(clamp100(s));
}

/* ---- writing the loop's input files ------------------------------------------------ */

typedef struct {
    FILE *f;
    char path[4096], tmp_path[4096];
} out_file;

static int out_open(out_file *o, const char *dir, const char *name, char *err, size_t errlen)
{
    if (snprintf(o->path, sizeof o->path, "%s/%s", dir, name) >= (int)sizeof o->path ||
        snprintf(o->tmp_path, sizeof o->tmp_path, "%s/.%s.tmp", dir, name) >=
            (int)sizeof o->tmp_path)
        return cl_seterr(err, errlen, CL_EINVAL, "path too long: %s/%s", dir, name);
    o->f = fopen(o->tmp_path, "wb");
    if (!o->f)
        return cl_seterr(err, errlen, CL_EIO, "cannot create %s: %s", o->tmp_path, strerror(errno));
    return CL_OK;
}

static int out_close(out_file *o, char *err, size_t errlen)
{
    int failed = ferror(o->f);
    if (fclose(o->f) != 0) failed = 1;
    o->f = NULL;
    if (failed) {
        unlink(o->tmp_path);
        return cl_seterr(err, errlen, CL_EIO, "cannot write %s (disk full?)", o->tmp_path);
    }
    if (rename(o->tmp_path, o->path) != 0) {
        int e = errno;
        unlink(o->tmp_path);
        return cl_seterr(err, errlen, CL_EIO, "cannot rename %s to %s: %s", o->tmp_path, o->path,
                         strerror(e));
    }
    return CL_OK;
}

static void out_abort(out_file *o)
{
    if (!o->f) return;
    fclose(o->f);
    o->f = NULL;
    unlink(o->tmp_path);
}

/* RFC 4180: quote when the value holds a separator, quote or line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_string_or_null(FILE *f, const char *s)
{
    if (s[0])
        write_json_string(f, s);
    else
        fputs("null", f);
}

/* Up to two decimals without trailing zeros ("57.5", "100", "33.33"). */
static void number2(FILE *f, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f", v);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf) - 1;
        while (end > dot && *end == '0')
            *end-- = '\0';
        if (end == dot) *end = '\0';
    }
    if (strcmp(buf, "-0") == 0) snprintf(buf, sizeof buf, "0");
    fputs(buf, f);
}

static void date_out(FILE *f, int32_t day)
{
    char d[11];
    cl_format_date(day, d);
    fputs(d, f);
}

/* Salesforce datetime of a day at an hour: "2013-05-20T18:00:00.000+0000". */
static void sf_datetime(FILE *f, int32_t day, int hour)
{
    date_out(f, day);
    fprintf(f, "T%02d:00:00.000+0000", hour);
}

/* The export has dates only. Records are created at 12:00Z and closed at 18:00Z; runs
 * are at 06:00Z, so a run on day d sees exactly the changes of days before d. */
#define CREATED_HOUR 12
#define CLOSED_HOUR 18

static const char *text_of(const cl_replay *h, const opp_rec *o, cl_replay_column c)
{
    return h->text.items[o->text[c]];
}

/* The stage a snapshot shows: the export holds only each deal's final stage, which must
 * not leak into earlier snapshots, so every open snapshot shows one neutral stage. */
#define SNAPSHOT_STAGE "Open"

static int write_run(cl_replay *h, const char *dir, size_t run, size_t *rows, char *err,
                     size_t errlen)
{
    int32_t day = cl_replay_run_day(h, run);
    char date[11], name[64];
    cl_format_date(day, date);
    snprintf(name, sizeof name, "run-%s.csv", date);
    out_file o;
    int rc = out_open(&o, dir, name, err, errlen);
    if (rc != CL_OK) return rc;
    FILE *f = o.f;
    fputs("run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
          "created_date,expected_close_date,days_in_stage,segment,region,product,lead_source,"
          "type,speed_to_close,largest_deal,product_mix,upsell_instances,win_rate,recency,"
          "opportunity_score,account_score\n",
          f);
    for (size_t i = 0; i < h->n; i++) {
        if (!cl_replay_open_at(h, i, day)) continue;
        const opp_rec *op = &h->opps[i];
        double c[6], median;
        compute_components(h, i, day, c, &median);
        fprintf(f, "run-%s,%sT06:00:00.000Z,%s,%s,%s,%s,", date, date, op->id,
                h->account_ids[op->text[CL_REPLAY_COL_ACCOUNT]],
                h->owner_ids[op->text[CL_REPLAY_COL_OWNER]], SNAPSHOT_STAGE);
        if (op->has_amount) fprintf(f, "%.2f", op->amount);
        fprintf(f, ",%s,", h->opt.currency);
        date_out(f, op->created);
        fputc(',', f);
        {
            /* Planned close: creation + the account's usual cycle (a quarter for an
             * account with no closed deal yet: the field is required downstream); once
             * passed, pushed to two weeks out, as reps do. */
            int32_t expected = op->created + (int32_t)lround(median > 0 ? median : 90.0);
            date_out(f, expected > day ? expected : day + 14);
        }
        fprintf(f, ",%d,", (int)(day - op->created));
        csv_field(f, text_of(h, op, CL_REPLAY_COL_SEGMENT));
        fputc(',', f);
        csv_field(f, text_of(h, op, CL_REPLAY_COL_REGION));
        fputc(',', f);
        csv_field(f, text_of(h, op, CL_REPLAY_COL_PRODUCT));
        fputc(',', f);
        csv_field(f, text_of(h, op, CL_REPLAY_COL_LEAD_SOURCE));
        fputc(',', f);
        csv_field(f, text_of(h, op, CL_REPLAY_COL_TYPE));
        for (int k = 0; k < 6; k++) {
            fputc(',', f);
            number2(f, c[k]);
        }
        fputc(',', f);
        number2(f, cl_replay_seed_score(c));
        fputs(",\n", f); /* account_score: the export has none */
        (*rows)++;
    }
    return out_close(&o, err, errlen);
}

typedef struct {
    int64_t modstamp; /* hours since the epoch */
    uint32_t index;
} version_key;

static const opp_rec *version_sort_base;

static int compare_versions(const void *pa, const void *pb)
{
    const version_key *a = pa, *b = pb;
    if (a->modstamp != b->modstamp) return a->modstamp < b->modstamp ? -1 : 1;
    int c = strcmp(version_sort_base[a->index].id, version_sort_base[b->index].id);
    return c ? c : (a->index < b->index ? -1 : a->index > b->index);
}

static int64_t modstamp_hours(const opp_rec *o)
{
    return o->closed ? (int64_t)o->close * 24 + CLOSED_HOUR
                     : (int64_t)o->created * 24 + CREATED_HOUR;
}

/* The stage name of an opportunity's record version at the end of the history. */
static const char *final_stage(const cl_replay *h, const opp_rec *o)
{
    if (o->closed) return o->won ? "Closed Won" : "Closed Lost";
    const char *s = text_of(h, o, CL_REPLAY_COL_STAGE);
    return s[0] && strncmp(s, "Closed", 6) != 0 ? s : SNAPSHOT_STAGE;
}

static void write_sf_amount_json(FILE *f, const opp_rec *o)
{
    if (o->has_amount)
        fprintf(f, "%.2f", o->amount);
    else
        fputs("null", f);
}

static int write_outcomes(cl_replay *h, const char *dir, char *err, size_t errlen)
{
    version_key *keys = malloc((h->n ? h->n : 1) * sizeof *keys);
    if (!keys) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for outcomes");
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->opps[i].created >= h->counts.end_day) continue; /* after the extraction */
        keys[n++] = (version_key){modstamp_hours(&h->opps[i]), (uint32_t)i};
    }
    version_sort_base = h->opps;
    qsort(keys, n, sizeof *keys, compare_versions);

    out_file o;
    int rc = out_open(&o, dir, "closed_opportunities.csv", err, errlen);
    if (rc != CL_OK) goto done;
    fputs("Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,CreatedDate,"
          "SystemModstamp,LastModifiedDate,Type,LeadSource,CurrencyIsoCode\n",
          o.f);
    /* Closed versions sort by close day then Id: the report's order. */
    for (size_t k = 0; k < n; k++) {
        const opp_rec *op = &h->opps[keys[k].index];
        if (!op->closed) continue;
        fprintf(o.f, "%s,%s,%s,%s,true,%s,false,", op->id,
                h->account_ids[op->text[CL_REPLAY_COL_ACCOUNT]],
                h->owner_ids[op->text[CL_REPLAY_COL_OWNER]], final_stage(h, op),
                op->won ? "true" : "false");
        date_out(o.f, op->close);
        fputc(',', o.f);
        if (op->has_amount) fprintf(o.f, "%.2f", op->amount);
        fputc(',', o.f);
        sf_datetime(o.f, op->created, CREATED_HOUR);
        fputc(',', o.f);
        sf_datetime(o.f, op->close, CLOSED_HOUR);
        fputc(',', o.f);
        sf_datetime(o.f, op->close, CLOSED_HOUR);
        fputc(',', o.f);
        csv_field(o.f, text_of(h, op, CL_REPLAY_COL_TYPE));
        fputc(',', o.f);
        csv_field(o.f, text_of(h, op, CL_REPLAY_COL_LEAD_SOURCE));
        fprintf(o.f, ",%s\n", h->opt.currency);
    }
    rc = out_close(&o, err, errlen);
    if (rc != CL_OK) goto done;

    rc = out_open(&o, dir, "opportunities.jsonl", err, errlen);
    if (rc != CL_OK) goto done;
    for (size_t k = 0; k < n; k++) {
        const opp_rec *op = &h->opps[keys[k].index];
        int32_t mday = (int32_t)(keys[k].modstamp / 24);
        int mhour = (int)(keys[k].modstamp % 24);
        fprintf(o.f,
                "{\"attributes\":{\"type\":\"Opportunity\",\"url\":\"/services/data/v60.0/"
                "sobjects/Opportunity/%s\"},\"Id\":\"%s\",\"AccountId\":\"%s\",\"OwnerId\":",
                op->id, op->id, h->account_ids[op->text[CL_REPLAY_COL_ACCOUNT]]);
        json_string_or_null(o.f, h->owner_ids[op->text[CL_REPLAY_COL_OWNER]]);
        fputs(",\"StageName\":", o.f);
        write_json_string(o.f, final_stage(h, op));
        fprintf(o.f, ",\"IsClosed\":%s,\"IsWon\":%s,\"IsDeleted\":false,\"CloseDate\":\"",
                op->closed ? "true" : "false", op->won ? "true" : "false");
        date_out(o.f, op->close);
        fputs("\",\"Amount\":", o.f);
        write_sf_amount_json(o.f, op);
        fputs(",\"CreatedDate\":\"", o.f);
        sf_datetime(o.f, op->created, CREATED_HOUR);
        fputs("\",\"SystemModstamp\":\"", o.f);
        sf_datetime(o.f, mday, mhour);
        fputs("\",\"LastModifiedDate\":\"", o.f);
        sf_datetime(o.f, mday, mhour);
        fputs("\",\"Type\":", o.f);
        json_string_or_null(o.f, text_of(h, op, CL_REPLAY_COL_TYPE));
        fputs(",\"LeadSource\":", o.f);
        json_string_or_null(o.f, text_of(h, op, CL_REPLAY_COL_LEAD_SOURCE));
        fputs(",\"CurrencyIsoCode\":", o.f);
        write_json_string(o.f, h->opt.currency);
        fputs("}\n", o.f);
    }
    rc = out_close(&o, err, errlen);
done:
    if (rc != CL_OK) out_abort(&o);
    free(keys);
    return rc;
}

static int write_ids(cl_replay *h, const char *dir, char *err, size_t errlen)
{
    out_file o;
    int rc = out_open(&o, dir, "ids.csv", err, errlen);
    if (rc != CL_OK) return rc;
    fputs("kind,source,id\n", o.f);
    for (size_t i = 0; i < h->n; i++) {
        fputs("opportunity,", o.f);
        csv_field(o.f, h->ids.items[h->opps[i].source_id]);
        fprintf(o.f, ",%s\n", h->opps[i].id);
    }
    for (size_t t = 1; t < h->text.n; t++)
        if (h->account_ids[t][0]) {
            fputs("account,", o.f);
            csv_field(o.f, h->text.items[t]);
            fprintf(o.f, ",%s\n", h->account_ids[t]);
        }
    for (size_t t = 1; t < h->text.n; t++)
        if (h->owner_ids[t][0]) {
            fputs("owner,", o.f);
            csv_field(o.f, h->text.items[t]);
            fprintf(o.f, ",%s\n", h->owner_ids[t]);
        }
    return out_close(&o, err, errlen);
}

static int write_summary(cl_replay *h, const char *dir, char *err, size_t errlen)
{
    const cl_replay_counts *c = &h->counts;
    char start[11], end[11];
    cl_format_date(c->start_day, start);
    cl_format_date(c->end_day, end);
    json_t *columns = json_object();
    for (int k = 0; k < CL_REPLAY_COL_COUNT; k++)
        json_object_set_new(columns, cl_replay_column_keys[k],
                            h->opt.columns[k] && h->opt.columns[k][0]
                                ? json_string(h->opt.columns[k])
                                : json_null());
    json_t *weights = json_object();
    for (int k = 0; k < CL_REPLAY_COMPONENTS; k++)
        json_object_set_new(weights, cl_replay_component_names[k],
                            json_real(cl_replay_seed_weights[k]));
    json_t *root = json_pack(
        "{s:s, s:s, s:o, s:{s:s, s:s, s:i, s:s, s:f, s:f, s:i, s:s}, s:o, s:{s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
        "generator", "closedloop-replay", "input", h->name, "columns", columns, "options",
        "start_date", start, "end_date", end, "interval_days", h->opt.interval_days, "currency",
        h->opt.currency, "win_rate_smoothing", h->opt.win_rate_smoothing, "recency_half_life_days",
        h->opt.recency_half_life_days, "product_mix_cap", h->opt.product_mix_cap, "snapshot_stage",
        SNAPSHOT_STAGE, "seed_weights", weights, "counts", "rows", (json_int_t)c->rows,
        "opportunities", (json_int_t)c->loaded, "bad_rows", (json_int_t)c->bad_rows, "closed_won",
        (json_int_t)c->won, "closed_lost", (json_int_t)(c->closed - c->won), "open_at_end",
        (json_int_t)c->open, "accounts", (json_int_t)c->accounts, "owners", (json_int_t)c->owners,
        "runs", (json_int_t)c->runs, "snapshots", (json_int_t)c->snapshots);
    if (!root) return cl_seterr(err, errlen, CL_ENOMEM, "cannot build replay.json");
    out_file o;
    int rc = out_open(&o, dir, "replay.json", err, errlen);
    if (rc == CL_OK) {
        if (json_dumpf(root, o.f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) !=
            0) {
            out_abort(&o);
            rc = cl_seterr(err, errlen, CL_EIO, "cannot write %s/replay.json", dir);
        } else {
            fputc('\n', o.f);
            rc = out_close(&o, err, errlen);
        }
    }
    json_decref(root);
    return rc;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return CL_OK;
        return cl_seterr(err, errlen, CL_EIO, "%s exists and is not a directory", path);
    }
    return cl_seterr(err, errlen, CL_EIO, "cannot create directory %s: %s", path, strerror(errno));
}

/* --force: remove the run files of an earlier replay so no stale run survives. */
static int remove_runs(const char *runs, char *err, size_t errlen)
{
    DIR *d = opendir(runs);
    if (!d) return CL_OK;
    struct dirent *e;
    int rc = CL_OK;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "run-", 4) != 0 || len < 8 ||
            (strcmp(e->d_name + len - 4, ".csv") != 0 &&
             strcmp(e->d_name + len - 6, ".jsonl") != 0))
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", runs, e->d_name) >= (int)sizeof path ||
            unlink(path) != 0) {
            rc = cl_seterr(err, errlen, CL_EIO, "cannot remove stale run file %s/%s", runs,
                           e->d_name);
            break;
        }
    }
    closedir(d);
    return rc;
}

int cl_replay_write(cl_replay *h, const char *out_dir, int force, char *err, size_t errlen)
{
    char runs[4096], outcomes[4096], summary[4096];
    if (snprintf(runs, sizeof runs, "%s/runs", out_dir) >= (int)sizeof runs ||
        snprintf(outcomes, sizeof outcomes, "%s/outcomes", out_dir) >= (int)sizeof outcomes ||
        snprintf(summary, sizeof summary, "%s/replay.json", out_dir) >= (int)sizeof summary)
        return cl_seterr(err, errlen, CL_EINVAL, "output path too long: %s", out_dir);
    if (access(summary, F_OK) == 0 && !force)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "%s already holds a replay (replay.json); use --force to replace it",
                         out_dir);
    int rc = make_dir(out_dir, err, errlen);
    if (rc == CL_OK) rc = make_dir(runs, err, errlen);
    if (rc == CL_OK) rc = make_dir(outcomes, err, errlen);
    if (rc == CL_OK && force) {
        unlink(summary);
        rc = remove_runs(runs, err, errlen);
    }
    h->counts.runs = 0;
    h->counts.snapshots = 0;
    size_t nruns = cl_replay_run_count(h);
    for (size_t r = 0; rc == CL_OK && r < nruns; r++) {
        rc = write_run(h, runs, r, &h->counts.snapshots, err, errlen);
        if (rc == CL_OK) h->counts.runs++;
    }
    if (rc == CL_OK) rc = write_outcomes(h, outcomes, err, errlen);
    if (rc == CL_OK) rc = write_ids(h, out_dir, err, errlen);
    if (rc == CL_OK) rc = write_summary(h, out_dir, err, errlen);
    return rc;
}

/* ---- offline backtest ------------------------------------------------------------------ */

#define BT_COLUMNS (CL_REPLAY_COMPONENTS + CL_REPLAY_FACTORS)

void cl_backtest_options_init(cl_backtest_options *o)
{
    memset(o, 0, sizeof *o);
    o->period = CL_BACKTEST_QUARTER;
    o->horizon_days = 7;
    o->high_threshold = 70.0;
    o->top_share = 0.3;
    o->l2_per_example = 1.0;
    o->max_change = 0.0;
    o->min_train_won = 30;
    o->min_train_lost = 30;
    o->factors = 1;
    o->folds = 5;
    o->permutations = 19;
    o->seed = 1;
}

void cl_backtest_result_free(cl_backtest_result *r)
{
    free(r->periods);
    memset(r, 0, sizeof *r);
}

/* Examples: one per closed opportunity that a run saw at least horizon_days before its
 * close, in ascending close day; x is column-major n × BT_COLUMNS (six components, then
 * the factors), every value as of that opportunity's snapshot day. */
typedef struct {
    size_t n;
    uint32_t *opp;
    int32_t *snap_day, *close_day;
    uint8_t *won;
    double *x;
} examples;

static void examples_free(examples *e)
{
    free(e->opp);
    free(e->snap_day);
    free(e->close_day);
    free(e->won);
    free(e->x);
}

/* Fenwick tree over amount ranks: how many past closed amounts lie below a value. */
typedef struct {
    size_t n;
    uint32_t *t;
} fenwick;

static void fenwick_add(fenwick *f, size_t rank)
{
    for (; rank <= f->n; rank += rank & (~rank + 1))
        f->t[rank]++;
}

static uint64_t fenwick_sum(const fenwick *f, size_t rank)
{
    uint64_t s = 0;
    for (; rank > 0; rank -= rank & (~rank + 1))
        s += f->t[rank];
    return s;
}

static size_t amount_rank(const double *vals, size_t nv, double x)
{
    size_t lo = 0, hi = nv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vals[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo + 1; /* 1-based; x is always present */
}

static const int32_t *snap_sort_days;

static int compare_by_snap(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    if (snap_sort_days[a] != snap_sort_days[b])
        return snap_sort_days[a] < snap_sort_days[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* The learned factors of every example, each from the outcomes closed before its own
 * snapshot day only: examples are visited in snapshot order while outcomes are added in
 * close order, so at each visit the counters hold exactly the past. */
static int compute_factors(const cl_replay *h, examples *e, char *err, size_t errlen)
{
    size_t ntext = h->text.n, n = e->n, nv = 0;
    uint32_t *counts = calloc(2 * (CL_REPLAY_FACTORS - 1) * ntext, sizeof *counts);
    double *vals = malloc((h->nclosed ? h->nclosed : 1) * sizeof *vals);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    fenwick fw = {0, NULL};
    int rc = CL_OK;
    if (!counts || !vals || !order) goto oom;
    for (size_t k = 0; k < h->nclosed; k++)
        if (h->opps[h->closed_order[k]].has_amount) vals[nv++] = h->opps[h->closed_order[k]].amount;
    qsort(vals, nv, sizeof *vals, compare_doubles);
    size_t u = 0;
    for (size_t k = 0; k < nv; k++)
        if (u == 0 || vals[k] != vals[u - 1]) vals[u++] = vals[k];
    nv = u;
    fw.n = nv;
    fw.t = calloc(nv + 1, sizeof *fw.t);
    if (!fw.t) goto oom;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    snap_sort_days = e->snap_day;
    qsort(order, n, sizeof *order, compare_by_snap);

    size_t next = 0, total = 0, total_won = 0, total_amounts = 0;
    double s = h->opt.win_rate_smoothing;
    for (size_t q = 0; q < n; q++) {
        size_t i = order[q];
        int32_t day = e->snap_day[i];
        for (; next < h->nclosed && h->closed_day[next] < day; next++) {
            const opp_rec *p = &h->opps[h->closed_order[next]];
            total++;
            total_won += p->won;
            for (int f = 0; f < CL_REPLAY_FACTORS - 1; f++) {
                uint32_t c = p->text[factor_columns[f]];
                counts[(2 * f) * ntext + c]++;
                counts[(2 * f + 1) * ntext + c] += p->won;
            }
            if (p->has_amount) {
                fenwick_add(&fw, amount_rank(vals, nv, p->amount));
                total_amounts++;
            }
        }
        const opp_rec *o = &h->opps[e->opp[i]];
        double g = total ? (double)total_won / (double)total : 0.5;
        for (int f = 0; f < CL_REPLAY_FACTORS - 1; f++) {
            uint32_t c = o->text[factor_columns[f]];
            double seen = c ? counts[(2 * f) * ntext + c] : 0,
                   wins = c ? counts[(2 * f + 1) * ntext + c] : 0;
            double rate = seen + s > 0 ? (wins + s * g) / (seen + s) : g;
            e->x[(CL_REPLAY_COMPONENTS + f) * n + i] = round2(100.0 * rate);
        }
        double pct = 50.0;
        if (o->has_amount && total_amounts) {
            size_t r = amount_rank(vals, nv, o->amount);
            double below = (double)fenwick_sum(&fw, r - 1);
            double equal = (double)fenwick_sum(&fw, r) - below;
            pct = 100.0 * (below + 0.5 * equal) / (double)total_amounts;
        }
        e->x[(BT_COLUMNS - 1) * n + i] = round2(pct);
    }
    goto done;
oom:
    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory computing learned factors");
done:
    free(counts);
    free(vals);
    free(order);
    free(fw.t);
    return rc;
}

static int build_examples(cl_replay *h, const cl_backtest_options *o, examples *e, size_t *unscored,
                          char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    size_t cap = h->nclosed ? h->nclosed : 1;
    e->opp = malloc(cap * sizeof *e->opp);
    e->snap_day = malloc(cap * sizeof *e->snap_day);
    e->close_day = malloc(cap * sizeof *e->close_day);
    e->won = malloc(cap * sizeof *e->won);
    if (!e->opp || !e->snap_day || !e->close_day || !e->won)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for examples");
    int32_t start = h->counts.start_day, interval = h->opt.interval_days;
    *unscored = 0;
    /* closed_order is ascending close day, so examples are too. */
    for (size_t k = 0; k < h->nclosed; k++) {
        uint32_t i = h->closed_order[k];
        const opp_rec *p = &h->opps[i];
        int64_t latest = (int64_t)p->close - o->horizon_days;
        int32_t day = 0;
        int ok = latest >= start;
        if (ok) {
            day = (int32_t)(start + (latest - start) / interval * interval);
            ok = cl_replay_open_at(h, i, day);
        }
        if (!ok) {
            (*unscored)++;
            continue;
        }
        e->opp[e->n] = i;
        e->snap_day[e->n] = day;
        e->close_day[e->n] = p->close;
        e->won[e->n] = p->won;
        e->n++;
    }
    if (e->n == 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: no closed opportunity has a snapshot %d days before its close",
                         h->name, o->horizon_days);
    e->x = malloc(e->n * BT_COLUMNS * sizeof *e->x);
    if (!e->x) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for examples");
    for (size_t i = 0; i < e->n; i++) {
        double c[CL_REPLAY_COMPONENTS];
        cl_replay_components(h, e->opp[i], e->snap_day[i], c);
        for (int j = 0; j < CL_REPLAY_COMPONENTS; j++)
            e->x[(size_t)j * e->n + i] = c[j];
    }
    return compute_factors(h, e, err, errlen);
}

static void ymd(int32_t day, int *y, int *m)
{
    char d[11];
    cl_format_date(day, d);
    *y = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    *m = (d[5] - '0') * 10 + (d[6] - '0');
}

static int32_t first_of_month(int y, int m)
{
    char buf[32];
    int32_t day = 0;
    snprintf(buf, sizeof buf, "%04d-%02d-01", y, m);
    cl_parse_date(buf, &day);
    return day;
}

static int32_t period_start(cl_backtest_period p, int32_t day)
{
    int y, m;
    ymd(day, &y, &m);
    if (p == CL_BACKTEST_QUARTER) m = (m - 1) / 3 * 3 + 1;
    return first_of_month(y, m);
}

static int32_t period_next(cl_backtest_period p, int32_t start)
{
    int y, m;
    ymd(start, &y, &m);
    m += p == CL_BACKTEST_QUARTER ? 3 : 1;
    if (m > 12) m -= 12, y++;
    return first_of_month(y, m);
}

static void period_label(cl_backtest_period p, int32_t start, char *out, size_t len)
{
    int y, m;
    ymd(start, &y, &m);
    if (p == CL_BACKTEST_QUARTER)
        snprintf(out, len, "%04d-Q%d", y, (m - 1) / 3 + 1);
    else
        snprintf(out, len, "%04d-%02d", y, m);
}

/* Fits the first k columns of rows [0, n) (a prefix of the close-ordered examples).
 * A column constant over the training rows carries no information about the outcome
 * (it only shifts the intercept), so it is left out with weight 0 and the prior is
 * renormalized over the rest. cl_fit is called once at the configured λ: a CL_ERR
 * from it is a genuine non-convergence, recorded as such and logged. */
static int fit_prefix(const examples *e, size_t n, size_t k, const double *prior,
                      const cl_backtest_options *o, double *scratch, double *weights,
                      cl_backtest_fit_state *state, double *l2_factor, char *err, size_t errlen)
{
    *l2_factor = 1.0; /* λ is always used as set (field kept for replay.h) */
    size_t used[BT_COLUMNS], nu = 0;
    double sub_prior[BT_COLUMNS], prior_sum = 0;
    for (size_t j = 0; j < k; j++) {
        const double *col = e->x + j * e->n;
        int varies = 0;
        for (size_t i = 1; i < n && !varies; i++)
            varies = col[i] != col[0];
        weights[j] = 0;
        if (!varies) continue;
        memcpy(scratch + nu * n, col, n * sizeof *scratch);
        if (prior) prior_sum += sub_prior[nu] = prior[j];
        used[nu++] = j;
    }
    *state = CL_BACKTEST_NO_SIGNAL;
    if (nu == 0 || (prior && prior_sum <= 0)) return CL_OK;
    for (size_t j = 0; prior && j < nu; j++)
        sub_prior[j] /= prior_sum;
    cl_fit_data d = {.n = n, .k = nu, .x = scratch, .won = e->won, .weight = NULL};
    cl_fit_options fo;
    cl_fit_options_default(&fo);
    fo.mode = CL_FIT_SIMPLEX;
    fo.l2 = o->l2_per_example * (double)n;
    fo.prior_weights = prior ? sub_prior : NULL;
    fo.max_change = prior ? o->max_change : 0.0;
    cl_fit_result r;
    int rc = cl_fit(&d, &fo, &r, err, errlen);
    if (rc == CL_ECONFLICT) return CL_OK;
    if (rc == CL_ERR) {
        cl_log(CL_LOG_WARN, "backtest_fit_failed", "n=%zu k=%zu l2=%g error=\"%s\"", n, nu, fo.l2,
               err);
        *state = CL_BACKTEST_SOLVER_FAILED;
        return CL_OK;
    }
    if (rc != CL_OK) return rc;
    *state = CL_BACKTEST_FITTED;
    for (size_t j = 0; j < nu; j++)
        weights[used[j]] = r.weights[j];
    return CL_OK;
}

static void evaluate(const double *score, const uint8_t *won, size_t n,
                     const cl_backtest_options *o, double *scratch, cl_backtest_eval *out)
{
    memset(out, 0, sizeof *out);
    out->auc = NAN;
    if (n == 0) return;
    double auc;
    if (cl_stats_auc(score, won, NULL, n, &auc, NULL, 0) == CL_OK) out->auc = auc;
    cl_confusion c;
    if (cl_stats_confusion(score, won, NULL, n, o->high_threshold, &c, NULL, 0) == CL_OK) {
        cl_prf p = cl_stats_prf(&c);
        out->precision_high = p.precision;
        out->recall_high = p.recall;
        out->share_high = (c.tp + c.fp) / (double)n;
    }
    /* Top share: predicted won = score >= the score of the ceil(share·n)-th best
     * example (ties at the cut are all in, so the share may be exceeded). */
    memcpy(scratch, score, n * sizeof *scratch);
    qsort(scratch, n, sizeof *scratch, compare_doubles);
    size_t m = (size_t)ceil(o->top_share * (double)n);
    if (m < 1) m = 1;
    if (m > n) m = n;
    if (cl_stats_confusion(score, won, NULL, n, scratch[n - m], &c, NULL, 0) == CL_OK) {
        cl_prf p = cl_stats_prf(&c);
        out->precision_top = p.precision;
        out->recall_top = p.recall;
    }
}

static double weighted_sum(const examples *e, size_t i, const double *w, size_t k)
{
    double s = 0;
    for (size_t j = 0; j < k; j++)
        s += w[j] * e->x[j * e->n + i];
    return s;
}

static int cross_validate_once(const cl_fit_data *d, const examples *e, const cl_cv_options *cv,
                               const cl_fit_options *fo, const double *fixed,
                               cl_fold_metrics *mean, double *factor, char *msg, size_t msglen)
{
    cl_fold_metrics folds[CL_CV_MAX_FOLDS];
    size_t nf = 0;
    *factor = 1.0; /* λ as set (field kept for replay.h) */
    int rc = cl_fit_cross_validate(d, e->close_day, cv, fo, fixed, folds, &nf, msg, msglen);
    if (rc == CL_OK) *mean = cl_fit_cv_mean(folds, nf);
    return rc;
}

static void whole_history_validation(const examples *e, const cl_backtest_options *o,
                                     cl_backtest_result *r)
{
    cl_cv_options cv;
    cl_cv_options_default(&cv);
    cv.folds = o->folds;
    cv.min_train_won = o->min_train_won;
    cv.min_train_lost = o->min_train_lost;
    cv.high_threshold = o->high_threshold;
    cl_fit_options fo;
    cl_fit_options_default(&fo);
    fo.mode = CL_FIT_SIMPLEX;
    fo.l2 = o->l2_per_example * (double)e->n;
    fo.prior_weights = cl_replay_seed_weights;
    fo.max_change = o->max_change;
    cl_fit_data six = {.n = e->n, .k = CL_REPLAY_COMPONENTS, .x = e->x, .won = e->won};
    cl_fit_data all = six;
    all.k = BT_COLUMNS;
    char msg[CL_ERRLEN];
    int rc = cross_validate_once(&six, e, &cv, &fo, cl_replay_seed_weights, &r->cv_seed,
                                   &r->cv_l2_factor[0], msg, sizeof msg);
    if (rc == CL_OK)
        rc = cross_validate_once(&six, e, &cv, &fo, NULL, &r->cv_learned, &r->cv_l2_factor[1],
                                   msg, sizeof msg);
    fo.prior_weights = NULL;
    fo.max_change = 0;
    if (rc == CL_OK && o->factors)
        rc = cross_validate_once(&all, e, &cv, &fo, NULL, &r->cv_factors, &r->cv_l2_factor[2],
                                   msg, sizeof msg);
    r->cv_ran = rc == CL_OK;
    if (rc != CL_OK) snprintf(r->cv_error, sizeof r->cv_error, "%s", msg);

    if (!o->factors) return;
    cl_discovery_options disc = {.permutations = o->permutations, .seed = o->seed};
    r->discovery_l2_factor = 1.0;
    rc = cl_fit_discover_factors(&all, CL_REPLAY_COMPONENTS, e->close_day, &cv, &fo, &disc,
                                 r->evidence, msg, sizeof msg);
    r->discovery_ran = rc == CL_OK;
    if (rc != CL_OK) snprintf(r->discovery_error, sizeof r->discovery_error, "%s", msg);
}

int cl_backtest_run(cl_replay *h, const cl_backtest_options *o, cl_backtest_result *r, char *err,
                    size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (o->horizon_days < 0 || !(o->top_share > 0 && o->top_share <= 1) ||
        !(o->l2_per_example >= 0) || !(o->max_change >= 0 && o->max_change <= 1) || o->folds < 1 ||
        o->folds > CL_CV_MAX_FOLDS)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "backtest options: horizon >= 0, 0 < top share <= 1, l2 >= 0, "
                         "0 <= max change <= 1, 1 <= folds <= %d",
                         CL_CV_MAX_FOLDS);
    examples e;
    int rc = build_examples(h, o, &e, &r->unscored, err, errlen);
    double *scratch = NULL, *scores = NULL, *pooled = NULL;
    uint8_t *pooled_won = NULL;
    if (rc != CL_OK) goto done;
    size_t n = e.n;
    r->examples = n;
    scratch = malloc(n * BT_COLUMNS * sizeof *scratch);
    scores = malloc(3 * n * sizeof *scores);
    pooled = malloc(3 * n * sizeof *pooled);
    pooled_won = malloc(n * sizeof *pooled_won);
    size_t max_periods = 4096;
    r->periods = calloc(max_periods, sizeof *r->periods);
    if (!scratch || !scores || !pooled || !pooled_won || !r->periods) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory for the backtest");
        goto done;
    }
    size_t k_all = o->factors ? BT_COLUMNS : CL_REPLAY_COMPONENTS;
    size_t train_end = 0;
    for (int32_t ps = period_start(o->period, e.close_day[0]); train_end < n;
         ps = period_next(o->period, ps)) {
        int32_t pe = period_next(o->period, ps);
        while (train_end < n && e.close_day[train_end] < ps)
            train_end++;
        size_t test_end = train_end;
        while (test_end < n && e.close_day[test_end] < pe)
            test_end++;
        if (test_end == train_end) continue;
        if (r->nperiods == max_periods) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "more than %zu backtest periods", max_periods);
            goto done;
        }
        cl_backtest_period_result *p = &r->periods[r->nperiods++];
        p->start_day = ps;
        p->end_day = pe;
        p->n_train = train_end;
        p->n_test = test_end - train_end;
        for (size_t i = 0; i < train_end; i++)
            p->train_won += e.won[i];
        for (size_t i = train_end; i < test_end; i++)
            p->test_won += e.won[i];
        memcpy(p->weights, cl_replay_seed_weights, sizeof p->weights);
        p->learned_state = p->factors_state = CL_BACKTEST_TOO_FEW;
        if (p->train_won >= o->min_train_won && p->n_train - p->train_won >= o->min_train_lost) {
            char msg[CL_ERRLEN];
            char label[32];
            period_label(o->period, ps, label, sizeof label);
            rc = fit_prefix(&e, train_end, CL_REPLAY_COMPONENTS, cl_replay_seed_weights, o, scratch,
                            p->weights, &p->learned_state, &p->learned_l2_factor, msg, sizeof msg);
            if (rc == CL_OK && o->factors)
                rc = fit_prefix(&e, train_end, BT_COLUMNS, NULL, o, scratch, p->factor_weights,
                                &p->factors_state, &p->factors_l2_factor, msg, sizeof msg);
            if (rc != CL_OK) {
                rc = cl_seterr(err, errlen, rc, "backtest period %s: %s", label, msg);
                goto done;
            }
            if (p->learned_state != CL_BACKTEST_FITTED)
                memcpy(p->weights, cl_replay_seed_weights, sizeof p->weights);
        }
        size_t nt = p->n_test;
        double *s_seed = scores, *s_learned = scores + nt, *s_factors = scores + 2 * nt;
        for (size_t i = 0; i < nt; i++) {
            size_t row = train_end + i;
            double c[CL_REPLAY_COMPONENTS];
            for (int j = 0; j < CL_REPLAY_COMPONENTS; j++)
                c[j] = e.x[(size_t)j * n + row];
            s_seed[i] = cl_replay_seed_score(c);
            s_learned[i] = weighted_sum(&e, row, p->weights, CL_REPLAY_COMPONENTS);
            s_factors[i] = p->factors_state == CL_BACKTEST_FITTED
                               ? weighted_sum(&e, row, p->factor_weights, k_all)
                               : s_learned[i];
        }
        const uint8_t *won = e.won + train_end;
        evaluate(s_seed, won, nt, o, scratch, &p->seed);
        evaluate(s_learned, won, nt, o, scratch, &p->learned);
        evaluate(s_factors, won, nt, o, scratch, &p->factors);
        if (p->learned_state == CL_BACKTEST_FITTED &&
            (!o->factors || p->factors_state == CL_BACKTEST_FITTED)) {
            for (size_t i = 0; i < nt; i++) {
                pooled[r->pooled_n] = s_seed[i];
                pooled[n + r->pooled_n] = s_learned[i];
                pooled[2 * n + r->pooled_n] = s_factors[i];
                pooled_won[r->pooled_n] = won[i];
                r->pooled_won += won[i];
                r->pooled_n++;
            }
        }
    }
    evaluate(pooled, pooled_won, r->pooled_n, o, scratch, &r->pooled_seed);
    evaluate(pooled + n, pooled_won, r->pooled_n, o, scratch, &r->pooled_learned);
    evaluate(pooled + 2 * n, pooled_won, r->pooled_n, o, scratch, &r->pooled_factors);
    for (size_t j = 0; j < k_all; j++) {
        double auc;
        r->single_auc[j] =
            cl_stats_auc(e.x + j * n, e.won, NULL, n, &auc, NULL, 0) == CL_OK ? auc : NAN;
    }
    for (size_t j = k_all; j < BT_COLUMNS; j++)
        r->single_auc[j] = NAN;
    whole_history_validation(&e, o, r);
done:
    free(scratch);
    free(scores);
    free(pooled);
    free(pooled_won);
    examples_free(&e);
    if (rc != CL_OK) cl_backtest_result_free(r);
    return rc;
}

/* ---- printing ----------------------------------------------------------------------- */

static void print_num(FILE *f, double v, int digits)
{
    if (isnan(v))
        fputs("–", f);
    else
        fprintf(f, "%.*f", digits, v);
}

static void print_pr(FILE *f, double p, double r)
{
    fprintf(f, "%.2f / %.2f", p, r);
}

static const char *state_note(cl_backtest_fit_state s)
{
    switch (s) {
    case CL_BACKTEST_FITTED:
        return "";
    case CL_BACKTEST_TOO_FEW:
        return " (too few outcomes: seed)";
    case CL_BACKTEST_NO_SIGNAL:
        return " (no signal: seed)";
    case CL_BACKTEST_SOLVER_FAILED:
        return " (solver failed: seed)";
    }
    return "";
}

void cl_backtest_print(const cl_backtest_result *r, const cl_backtest_options *o, FILE *f)
{
    int top = (int)lround(o->top_share * 100);
    fprintf(f,
            "examples: %zu closed opportunities with a snapshot >= %d days before close "
            "(%zu without one)\n\n",
            r->examples, o->horizon_days, r->unscored);
    fprintf(f,
            "| period | train (won) | test (won) | AUC seed | AUC learned | AUC +factors | "
            "P/R@HIGH seed | P/R@HIGH learned | P/R@top%d%% seed | P/R@top%d%% learned | "
            "P/R@top%d%% +factors | learned weights (stc/ld/pm/ui/wr/rec) |\n",
            top, top, top);
    fputs("|---|---|---|---|---|---|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < r->nperiods; i++) {
        const cl_backtest_period_result *p = &r->periods[i];
        char label[32];
        period_label(o->period, p->start_day, label, sizeof label);
        fprintf(f, "| %s | %zu (%zu) | %zu (%zu) | ", label, p->n_train, p->train_won, p->n_test,
                p->test_won);
        print_num(f, p->seed.auc, 3);
        fputs(" | ", f);
        print_num(f, p->learned.auc, 3);
        fputs(" | ", f);
        if (o->factors && p->factors_state == CL_BACKTEST_FITTED)
            print_num(f, p->factors.auc, 3);
        else
            fputs("–", f);
        fputs(" | ", f);
        print_pr(f, p->seed.precision_high, p->seed.recall_high);
        fputs(" | ", f);
        print_pr(f, p->learned.precision_high, p->learned.recall_high);
        fputs(" | ", f);
        print_pr(f, p->seed.precision_top, p->seed.recall_top);
        fputs(" | ", f);
        print_pr(f, p->learned.precision_top, p->learned.recall_top);
        fputs(" | ", f);
        if (o->factors && p->factors_state == CL_BACKTEST_FITTED)
            print_pr(f, p->factors.precision_top, p->factors.recall_top);
        else
            fputs("–", f);
        fputs(" | ", f);
        for (int j = 0; j < CL_REPLAY_COMPONENTS; j++)
            fprintf(f, "%s%.2f", j ? "/" : "", p->weights[j]);
        fprintf(f, "%s", state_note(p->learned_state));
        fputs(" |\n", f);
    }

    fprintf(f, "\npooled over the periods where every model was fitted: n = %zu (won %zu)\n\n",
            r->pooled_n, r->pooled_won);
    fprintf(f,
            "| model | AUC | precision@HIGH | recall@HIGH | share HIGH | precision@top%d%% | "
            "recall@top%d%% |\n|---|---|---|---|---|---|---|\n",
            top, top);
    const struct {
        const char *name;
        const cl_backtest_eval *ev;
    } rows[] = {{"seed weights", &r->pooled_seed},
                {"learned weights (six components)", &r->pooled_learned},
                {"learned, six + factors", &r->pooled_factors}};
    for (size_t i = 0; i < (o->factors ? 3u : 2u); i++) {
        fprintf(f, "| %s | ", rows[i].name);
        print_num(f, rows[i].ev->auc, 3);
        fprintf(f, " | %.3f | %.3f | %.3f | %.3f | %.3f |\n", rows[i].ev->precision_high,
                rows[i].ev->recall_high, rows[i].ev->share_high, rows[i].ev->precision_top,
                rows[i].ev->recall_top);
    }

    fputs("\nAUC of each column alone (all examples; 0.5 = no signal):\n\n| column | AUC |\n"
          "|---|---|\n",
          f);
    for (int j = 0; j < BT_COLUMNS; j++) {
        if (j >= CL_REPLAY_COMPONENTS && !o->factors) break;
        fprintf(f, "| %s | ",
                j < CL_REPLAY_COMPONENTS ? cl_replay_component_names[j]
                                         : cl_replay_factor_names[j - CL_REPLAY_COMPONENTS]);
        print_num(f, r->single_auc[j], 3);
        fputs(" |\n", f);
    }

    fprintf(f,
            "\nrolling-origin validation on the whole history (%zu folds, mean of the "
            "evaluated folds):\n\n",
            o->folds);
    if (!r->cv_ran) {
        fprintf(f, "not available: %s\n", r->cv_error);
    } else {
        fputs("| model | folds | AUC | Brier | log loss | precision@HIGH |\n"
              "|---|---|---|---|---|---|\n",
              f);
        const struct {
            const char *name;
            const cl_fold_metrics *m;
        } cv[] = {{"seed weights (calibration refitted)", &r->cv_seed},
                  {"learned weights (six components)", &r->cv_learned},
                  {"learned, six + factors", &r->cv_factors}};
        for (size_t i = 0; i < (o->factors ? 3u : 2u); i++)
            fprintf(f, "| %s | %d | %.3f | %.4f | %.4f | %.3f |\n", cv[i].name, cv[i].m->evaluated,
                    cv[i].m->auc, cv[i].m->brier, cv[i].m->log_loss, cv[i].m->precision_high);
    }

    if (!o->factors) return;
    fprintf(f,
            "\nlearned factors (refit's discovery rule: validated gain over the six "
            "components vs the largest gain with shuffled labels, %zu shuffles):\n\n",
            o->permutations);
    if (!r->discovery_ran) {
        fprintf(f, "not available: %s\n", r->discovery_error);
        return;
    }
    fputs(
        "| factor | ΔAUC | shuffled max ΔAUC | Δlog loss | shuffled max Δlog loss | adds value |\n"
        "|---|---|---|---|---|---|\n",
        f);
    int any = 0;
    for (int j = 0; j < CL_REPLAY_FACTORS; j++) {
        const cl_factor_evidence *ev = &r->evidence[j];
        fprintf(f, "| %s | %+.4f | %+.4f | %+.5f | %+.5f | %s |\n", cl_replay_factor_names[j],
                ev->gain_auc, ev->null_gain_auc, ev->gain_log_loss, ev->null_gain_log_loss,
                ev->adopt ? "yes" : "no");
        any |= ev->adopt;
    }
    fprintf(f, "\nlearned factors add value: %s\n", any ? "yes" : "no");
}
