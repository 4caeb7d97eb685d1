/*
 * store.c — LMDB environment, replayable write batches, reads, gauges, keys.
 *
 * Invariants:
 *   - while a batch is open and not failed, b->txn holds exactly the effect of the ops in
 *     b's replay log applied, in order, to the last committed state. Every write path
 *     records the op before applying it and removes the record if LMDB refused the op
 *     without touching the transaction, so the log can never lag behind the transaction;
 *   - a batch that failed has no LMDB transaction (it was aborted); it only remembers
 *     the status and message to repeat them;
 *   - the map is resized only with no transaction open in this process: the writer has
 *     aborted its own, and `readers` (open read transactions) is zero while `growing`
 *     keeps new ones from starting. A counter and a condition variable, not a rwlock,
 *     because a read transaction may legitimately end on another thread (MDB_NOTLS).
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define GROWTH_WAIT_MS 30000        /* how long growth waits for read transactions */
#define REPLAY_LOG_LIMIT (1u << 30) /* bytes of keys+values a batch may record */

const cl_option cl_store_options[] = {
    {"store.map.initial", CL_OPT_INT, "67108864",
     "Initial LMDB map size in bytes; the map doubles on demand up to store.map.max.", 0, 1048576,
     70368744177664.0},
    {"store.map.max", CL_OPT_INT, "17179869184",
     "Largest LMDB map size in bytes; past it writes fail with 'map full' (the worker stops "
     "without losing state).",
     0, 1048576, 70368744177664.0},
    {"store.sync", CL_OPT_STRING, "durable",
     "LMDB sync mode: durable (fsync every commit), nometasync (a system crash may lose the "
     "last commits), nosync (a system crash may corrupt the state; benchmarks only).",
     0, 0, 0},
    {"store.batch.max.ops", CL_OPT_INT, "1000",
     "Commit the LMDB write batch after this many puts/deletes.", 0, 1, 100000000},
    {"store.batch.max.ms", CL_OPT_INT, "200",
     "Commit the LMDB write batch at the latest this many milliseconds after it began.", 0, 0,
     3600000},
    {NULL},
};

typedef enum { OP_PUT = 0, OP_DEL, OP_DEL_PREFIX } op_kind;

typedef struct {
    uint8_t kind;
    unsigned db;
    size_t off; /* key at data + off, value right after it */
    size_t klen, vlen;
} op;

struct cl_store_txn {
    cl_store *s;
    MDB_txn *txn; /* NULL once failed or finished */
    int write;
    int failed; /* sticky cl_status of a failed batch, 0 otherwise */
    char failmsg[CL_ERRLEN];
    op *ops;
    size_t nops, cap;
    cl_buf log;          /* keys and values of ops */
    int64_t began_ms;    /* monotonic */
    uint64_t generation; /* bumped when the LMDB transaction is replaced by a replay */
    uint64_t writes;     /* bumped by every applied put/delete (scan re-seeks on change) */
};

struct cl_store {
    MDB_env *env;
    MDB_dbi dbi[CL_STORE_DBS_MAX];
    char *db_names[CL_STORE_DBS_MAX];
    unsigned ndbs;
    char *path;
    cl_store_config cfg;
    uint64_t page_size;
    uint64_t map_size;
    size_t max_key;
    int stale_cleared;
    cl_store_txn *batch;

    pthread_mutex_t lock; /* readers, growing, stats */
    pthread_cond_t cond;
    unsigned readers;
    int growing;
    cl_store_stats stats;

    cl_prom *prom;
    int collector_id;
    char *prom_name;
    cl_prom_metric *m_size, *m_used, *m_max, *m_entries, *m_growths, *m_commits;
    uint64_t exported_growths, exported_commits;
};

/* ---- configuration ----------------------------------------------------------------------- */

void cl_store_config_defaults(cl_store_config *c)
{
    c->map_initial = 64ull << 20;
    c->map_max = 16ull << 30;
    c->sync = CL_STORE_SYNC_DURABLE;
    c->batch_max_ops = 1000;
    c->batch_max_ms = 200;
    c->max_readers = 126;
}

int cl_store_parse_sync(const char *s, cl_store_sync *out)
{
    if (!s) return CL_EINVAL;
    if (strcmp(s, "durable") == 0)
        *out = CL_STORE_SYNC_DURABLE;
    else if (strcmp(s, "nometasync") == 0)
        *out = CL_STORE_SYNC_NOMETASYNC;
    else if (strcmp(s, "nosync") == 0)
        *out = CL_STORE_SYNC_NOSYNC;
    else
        return CL_EINVAL;
    return CL_OK;
}

const char *cl_store_sync_name(cl_store_sync s)
{
    switch (s) {
    case CL_STORE_SYNC_DURABLE:
        return "durable";
    case CL_STORE_SYNC_NOMETASYNC:
        return "nometasync";
    case CL_STORE_SYNC_NOSYNC:
        return "nosync";
    }
    return "?";
}

int cl_store_config_from(cl_store_config *c, const cl_config *cfg, char *err, size_t errlen)
{
    cl_store_config_defaults(c);
    c->map_initial = (uint64_t)cl_config_int(cfg, "store.map.initial");
    c->map_max = (uint64_t)cl_config_int(cfg, "store.map.max");
    c->batch_max_ops = (uint64_t)cl_config_int(cfg, "store.batch.max.ops");
    c->batch_max_ms = cl_config_int(cfg, "store.batch.max.ms");
    const char *sync = cl_config_str(cfg, "store.sync");
    if (cl_store_parse_sync(sync, &c->sync) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "store.sync (%s): '%.64s' is not one of durable, nometasync, nosync",
                         cl_config_source(cfg, "store.sync"), sync ? sync : "");
    if (c->map_max < c->map_initial)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "store.map.max (%" PRIu64 ", %s) is smaller than store.map.initial "
                         "(%" PRIu64 ", %s)",
                         c->map_max, cl_config_source(cfg, "store.map.max"), c->map_initial,
                         cl_config_source(cfg, "store.map.initial"));
    return CL_OK;
}

/* "1.0 GiB" */
static void format_bytes(uint64_t n, char out[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%" PRIu64 " B", n);
    else
        snprintf(out, 32, "%.1f %s", v, units[u]);
}

static uint64_t round_up(uint64_t n, uint64_t to)
{
    return (n + to - 1) / to * to;
}

/* ---- open / close ------------------------------------------------------------------------ */

/* mkdir -p with 0700 for every directory it creates. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", dir);
    memcpy(p, dir, n + 1);
    int rc = CL_OK;
    for (size_t i = 1; i <= n && rc == CL_OK; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            rc = cl_seterr(err, errlen, CL_EIO, "store: cannot create directory %s: %s", p,
                           strerror(errno));
        p[i] = saved;
    }
    free(p);
    if (rc != CL_OK) return rc;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cl_seterr(err, errlen, CL_EIO, "store: %s is not a directory", dir);
    return CL_OK;
}

static int lmdb_status(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return CL_OK;
    case MDB_NOTFOUND:
        return CL_ENOTFOUND;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
        return CL_EFULL;
    case ENOMEM:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
        return CL_ENOMEM;
    case MDB_BAD_VALSIZE:
    case EINVAL:
        return CL_EINVAL;
    default:
        return CL_EIO;
    }
}

static void refresh_stats_locked(cl_store *s, MDB_txn *txn)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == MDB_SUCCESS) {
        s->stats.map_size = info.me_mapsize;
        s->stats.map_used = ((uint64_t)info.me_last_pgno + 1) * s->page_size;
    }
    if (txn) {
        for (unsigned i = 0; i < s->ndbs; i++) {
            MDB_stat st;
            if (mdb_stat(txn, s->dbi[i], &st) == MDB_SUCCESS) s->stats.entries[i] = st.ms_entries;
        }
    }
}

int cl_store_open(cl_store **out, const char *dir, const char *const *db_names,
                  const cl_store_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    cl_store_config defaults;
    if (!cfg) {
        cl_store_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (!dir || !*dir) return cl_seterr(err, errlen, CL_EINVAL, "store: empty directory path");
    unsigned ndbs = 0;
    while (db_names && db_names[ndbs]) {
        if (ndbs == CL_STORE_DBS_MAX)
            return cl_seterr(err, errlen, CL_EINVAL, "store %s: more than %d databases", dir,
                             CL_STORE_DBS_MAX);
        ndbs++;
    }
    if (ndbs == 0) return cl_seterr(err, errlen, CL_EINVAL, "store %s: no database names", dir);
    if (cfg->map_initial == 0 || cfg->map_max < cfg->map_initial)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "store %s: store.map.initial must be > 0 and <= store.map.max", dir);

    int rc = make_dirs(dir, err, errlen);
    if (rc != CL_OK) return rc;

    cl_store *s = calloc(1, sizeof *s);
    if (!s) return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", dir);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->cfg = *cfg;
    s->ndbs = ndbs;
    s->path = strdup(dir);
    long ps = sysconf(_SC_PAGESIZE);
    s->page_size = ps > 0 ? (uint64_t)ps : 4096;
    if (!s->path) {
        cl_store_close(s);
        return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", dir);
    }
    for (unsigned i = 0; i < ndbs; i++) {
        s->db_names[i] = strdup(db_names[i]);
        if (!s->db_names[i]) {
            cl_store_close(s);
            return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", dir);
        }
    }

    /* An existing file larger than the configured start keeps its size: LMDB would
     * otherwise use the size recorded in the file anyway, and we track the real value. */
    uint64_t map = round_up(cfg->map_initial, s->page_size);
    char data_path[4096];
    struct stat st;
    if ((size_t)snprintf(data_path, sizeof data_path, "%s/data.mdb", dir) < sizeof data_path &&
        stat(data_path, &st) == 0 && (uint64_t)st.st_size > map)
        map = round_up((uint64_t)st.st_size, s->page_size);
    if (map > cfg->map_max) {
        char have[32], max[32];
        format_bytes(map, have);
        format_bytes(cfg->map_max, max);
        cl_log(CL_LOG_WARN, "store_map_over_max",
               "path=%s size=\"%s\" max=\"%s\" hint=\"raise store.map.max\"", dir, have, max);
    }

    unsigned flags = MDB_NOTLS;
    if (cfg->sync == CL_STORE_SYNC_NOMETASYNC) flags |= MDB_NOMETASYNC;
    if (cfg->sync == CL_STORE_SYNC_NOSYNC) flags |= MDB_NOSYNC;
    int mrc = mdb_env_create(&s->env);
    if (mrc == MDB_SUCCESS) mrc = mdb_env_set_maxdbs(s->env, ndbs);
    if (mrc == MDB_SUCCESS && cfg->max_readers)
        mrc = mdb_env_set_maxreaders(s->env, cfg->max_readers);
    if (mrc == MDB_SUCCESS) mrc = mdb_env_set_mapsize(s->env, (size_t)map);
    if (mrc == MDB_SUCCESS) mrc = mdb_env_open(s->env, dir, flags, 0600);
    if (mrc != MDB_SUCCESS) {
        rc = cl_seterr(err, errlen, lmdb_status(mrc), "store %s: cannot open LMDB environment: %s",
                       dir, mdb_strerror(mrc));
        cl_store_close(s);
        return rc;
    }
    s->max_key = (size_t)mdb_env_get_maxkeysize(s->env);

    int dead = 0;
    mrc = mdb_reader_check(s->env, &dead);
    if (mrc != MDB_SUCCESS)
        cl_log(CL_LOG_WARN, "store_reader_check_failed", "path=%s error=\"%s\"", dir,
               mdb_strerror(mrc));
    s->stale_cleared = dead;
    cl_log(dead > 0 ? CL_LOG_WARN : CL_LOG_INFO, "store_reader_check",
           "path=%s stale_readers_cleared=%d", dir, dead);

    MDB_txn *txn = NULL;
    mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (unsigned i = 0; mrc == MDB_SUCCESS && i < ndbs; i++)
        mrc = mdb_dbi_open(txn, s->db_names[i], MDB_CREATE, &s->dbi[i]);
    if (mrc == MDB_SUCCESS) {
        refresh_stats_locked(s, txn);
        mrc = mdb_txn_commit(txn);
    } else if (txn) {
        mdb_txn_abort(txn);
    }
    if (mrc != MDB_SUCCESS) {
        rc = cl_seterr(err, errlen, lmdb_status(mrc), "store %s: cannot open databases: %s", dir,
                       mdb_strerror(mrc));
        cl_store_close(s);
        return rc;
    }
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    refresh_stats_locked(s, NULL);
    s->stats.map_max = cfg->map_max;
    s->stats.page_size = s->page_size;
    s->stats.ndbs = ndbs;

    char size[32];
    format_bytes(s->map_size, size);
    cl_log(CL_LOG_INFO, "store_opened", "path=%s dbs=%u map_size=\"%s\" sync=%s", dir, ndbs, size,
           cl_store_sync_name(cfg->sync));
    *out = s;
    return CL_OK;
}

static void unexport_prom(cl_store *s);

void cl_store_close(cl_store *s)
{
    if (!s) return;
    if (s->batch) cl_store_batch_abort(s->batch);
    unexport_prom(s);
    if (s->env) mdb_env_close(s->env);
    for (unsigned i = 0; i < s->ndbs; i++)
        free(s->db_names[i]);
    free(s->path);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *cl_store_path(const cl_store *s)
{
    return s->path;
}

int cl_store_stale_readers_cleared(const cl_store *s)
{
    return s->stale_cleared;
}

const char *cl_store_db_name(const cl_store *s, unsigned db)
{
    return db < s->ndbs ? s->db_names[db] : NULL;
}

/* ---- transactions and growth ------------------------------------------------------------- */

/* Another process grew the map (MDB_MAP_RESIZED): adopt its size; needs no open txn. */
static int adopt_resized_map(cl_store *s);

static int begin_txn(cl_store *s, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = adopt_resized_map(s);
        if (rc == MDB_SUCCESS) rc = mdb_txn_begin(s->env, NULL, flags, txn);
    }
    return rc;
}

/* Wait until no read transaction is open and keep new ones out; returns 0 or ETIMEDOUT. */
static int exclusive_begin(cl_store *s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += GROWTH_WAIT_MS / 1000;
    pthread_mutex_lock(&s->lock);
    while (s->growing)
        pthread_cond_wait(&s->cond, &s->lock);
    s->growing = 1;
    int rc = 0;
    while (s->readers > 0 && rc == 0)
        rc = pthread_cond_timedwait(&s->cond, &s->lock, &deadline);
    if (s->readers > 0) {
        s->growing = 0;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return ETIMEDOUT;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void exclusive_end(cl_store *s)
{
    pthread_mutex_lock(&s->lock);
    s->growing = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int adopt_resized_map(cl_store *s)
{
    if (exclusive_begin(s) != 0) return MDB_MAP_RESIZED;
    int rc = mdb_env_set_mapsize(s->env, 0);
    MDB_envinfo info;
    if (rc == MDB_SUCCESS && mdb_env_info(s->env, &info) == MDB_SUCCESS)
        s->map_size = info.me_mapsize;
    exclusive_end(s);
    return rc;
}

static int fail_batch(cl_store_txn *b, int status, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail_batch(cl_store_txn *b, int status, char *err, size_t errlen, const char *fmt, ...)
{
    if (b->txn) {
        mdb_txn_abort(b->txn);
        b->txn = NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->failmsg, sizeof b->failmsg, fmt, ap);
    va_end(ap);
    b->failed = status;
    return cl_seterr(err, errlen, status, "%s", b->failmsg);
}

static int batch_failed(const cl_store_txn *b, char *err, size_t errlen)
{
    return cl_seterr(err, errlen, b->failed, "%s (batch already aborted)", b->failmsg);
}

/* Double the map, up to the maximum. The caller has no transaction open. */
static int grow_map(cl_store *s, char *err, size_t errlen, const char **why)
{
    uint64_t max = round_up(s->cfg.map_max, s->page_size);
    if (max < s->map_size) max = s->map_size;
    if (s->map_size >= max) {
        *why = "max";
        return CL_EFULL;
    }
    uint64_t next = s->map_size * 2;
    if (next > max || next < s->map_size) next = max;
    if (exclusive_begin(s) != 0) {
        *why = "readers";
        return cl_seterr(err, errlen, CL_ERR,
                         "store %s: map growth waited %d s for read transactions to end "
                         "(a read transaction is held across writes?)",
                         s->path, GROWTH_WAIT_MS / 1000);
    }
    int rc = mdb_env_set_mapsize(s->env, (size_t)next);
    exclusive_end(s);
    if (rc != MDB_SUCCESS) {
        *why = "lmdb";
        return cl_seterr(err, errlen, lmdb_status(rc), "store %s: cannot grow the map: %s", s->path,
                         mdb_strerror(rc));
    }
    char from[32], to[32];
    format_bytes(s->map_size, from);
    format_bytes(next, to);
    cl_log(CL_LOG_INFO, "store_map_grown", "path=%s from=\"%s\" to=\"%s\"", s->path, from, to);
    s->map_size = next;
    pthread_mutex_lock(&s->lock);
    s->stats.map_size = next;
    s->stats.growths++;
    pthread_mutex_unlock(&s->lock);
    return CL_OK;
}

static int has_prefix(const MDB_val *k, const void *prefix, size_t plen)
{
    return plen == 0 || (k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0);
}

static int apply_del_prefix(cl_store_txn *b, unsigned db, const void *prefix, size_t plen,
                            size_t *deleted)
{
    size_t n = 0;
    if (plen == 0) {
        MDB_stat st;
        int rc = mdb_stat(b->txn, b->s->dbi[db], &st);
        if (rc == MDB_SUCCESS) rc = mdb_drop(b->txn, b->s->dbi[db], 0);
        if (rc == MDB_SUCCESS && deleted) *deleted = st.ms_entries;
        return rc;
    }
    MDB_cursor *c;
    int rc = mdb_cursor_open(b->txn, b->s->dbi[db], &c);
    if (rc != MDB_SUCCESS) return rc;
    MDB_val k = {plen, (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && has_prefix(&k, prefix, plen)) {
        rc = mdb_cursor_del(c, 0);
        if (rc != MDB_SUCCESS) break;
        n++;
        /* After a cursor delete LMDB leaves the cursor on the following item; MDB_NEXT
         * returns it (the C_DEL flag) rather than skipping it. */
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
    if (deleted) *deleted = n;
    return rc;
}

static int apply_op(cl_store_txn *b, const op *o, size_t *deleted)
{
    const uint8_t *key = (const uint8_t *)b->log.data + o->off;
    MDB_val k = {o->klen, (void *)key};
    switch (o->kind) {
    case OP_PUT: {
        MDB_val v = {o->vlen, (void *)(key + o->klen)};
        return mdb_put(b->txn, b->s->dbi[o->db], &k, &v, 0);
    }
    case OP_DEL:
        return mdb_del(b->txn, b->s->dbi[o->db], &k, NULL);
    default:
        return apply_del_prefix(b, o->db, key, o->klen, deleted);
    }
}

static int map_full(cl_store_txn *b, char *err, size_t errlen)
{
    cl_store *s = b->s;
    char max[32];
    format_bytes(s->cfg.map_max, max);
    return fail_batch(b, CL_EFULL, err, errlen,
                      "LMDB map full at %s (store.map.max) in %s: raise store.map.max or free "
                      "disk; the batch of %zu ops was not applied",
                      max, s->path, b->nops);
}

/*
 * The transaction hit MDB_MAP_FULL (and is unusable) or is already gone (a failed commit
 * frees it): grow and re-apply the whole log in a fresh transaction, as often as needed.
 */
static int grow_and_replay(cl_store_txn *b, char *err, size_t errlen)
{
    cl_store *s = b->s;
    for (;;) {
        if (b->txn) {
            mdb_txn_abort(b->txn);
            b->txn = NULL;
        }
        b->generation++;
        const char *why = NULL;
        char gerr[CL_ERRLEN];
        int rc = grow_map(s, gerr, sizeof gerr, &why);
        if (rc != CL_OK) {
            if (why && strcmp(why, "max") == 0) return map_full(b, err, errlen);
            return fail_batch(b, rc, err, errlen, "%s; the batch was not applied", gerr);
        }
        int mrc = begin_txn(s, 0, &b->txn);
        if (mrc != MDB_SUCCESS) {
            b->txn = NULL;
            return fail_batch(b, lmdb_status(mrc), err, errlen,
                              "store %s: cannot begin a write transaction: %s", s->path,
                              mdb_strerror(mrc));
        }
        for (size_t i = 0; i < b->nops && mrc == MDB_SUCCESS; i++) {
            mrc = apply_op(b, &b->ops[i], NULL);
            if (mrc == MDB_NOTFOUND) mrc = MDB_SUCCESS;
        }
        if (mrc == MDB_MAP_FULL) continue;
        if (mrc != MDB_SUCCESS)
            return fail_batch(b, lmdb_status(mrc), err, errlen,
                              "store %s: replaying the batch after map growth failed: %s", s->path,
                              mdb_strerror(mrc));
        cl_log(CL_LOG_DEBUG, "store_batch_replayed", "path=%s ops=%zu", s->path, b->nops);
        return CL_OK;
    }
}

int cl_store_batch_begin(cl_store *s, cl_store_txn **out, char *err, size_t errlen)
{
    *out = NULL;
    if (s->batch)
        return cl_seterr(err, errlen, CL_EINVAL, "store %s: a batch is already open", s->path);
    cl_store_txn *b = calloc(1, sizeof *b);
    if (!b) return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", s->path);
    b->s = s;
    b->write = 1;
    cl_buf_init(&b->log, REPLAY_LOG_LIMIT);
    int mrc = begin_txn(s, 0, &b->txn);
    if (mrc != MDB_SUCCESS) {
        free(b);
        return cl_seterr(err, errlen, lmdb_status(mrc),
                         "store %s: cannot begin a write transaction: %s", s->path,
                         mdb_strerror(mrc));
    }
    b->began_ms = cl_mono_ms();
    s->batch = b;
    *out = b;
    return CL_OK;
}

static void batch_free(cl_store_txn *b)
{
    if (b->txn) mdb_txn_abort(b->txn);
    if (b->s->batch == b) b->s->batch = NULL;
    cl_buf_free(&b->log);
    free(b->ops);
    free(b);
}

void cl_store_batch_abort(cl_store_txn *b)
{
    if (b) batch_free(b);
}

static int check_args(cl_store_txn *t, unsigned db, size_t klen, int need_key, char *err,
                      size_t errlen)
{
    if (db >= t->s->ndbs)
        return cl_seterr(err, errlen, CL_EINVAL, "store %s: no database #%u (have %u)", t->s->path,
                         db, t->s->ndbs);
    if ((need_key && klen == 0) || klen > t->s->max_key)
        return cl_seterr(err, errlen, CL_EINVAL, "store %s/%s: key of %zu bytes (must be 1..%zu)",
                         t->s->path, t->s->db_names[db], klen, t->s->max_key);
    return CL_OK;
}

/* Append an op to the log; CL_ENOMEM leaves the log unchanged. */
static int record(cl_store_txn *b, op_kind kind, unsigned db, const void *key, size_t klen,
                  const void *val, size_t vlen, char *err, size_t errlen)
{
    if (b->nops == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        op *ops = realloc(b->ops, cap * sizeof *ops);
        if (!ops)
            return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory for the batch log",
                             b->s->path);
        b->ops = ops;
        b->cap = cap;
    }
    size_t off = b->log.len;
    int rc = cl_buf_append(&b->log, key, klen);
    if (rc == CL_OK && vlen) rc = cl_buf_append(&b->log, val, vlen);
    if (rc != CL_OK) {
        b->log.len = off;
        return cl_seterr(err, errlen, CL_ENOMEM,
                         "store %s: batch log over %u MiB: lower store.batch.max.ops", b->s->path,
                         REPLAY_LOG_LIMIT >> 20);
    }
    b->ops[b->nops++] = (op){(uint8_t)kind, db, off, klen, vlen};
    return CL_OK;
}

static void unrecord(cl_store_txn *b)
{
    b->nops--;
    b->log.len = b->ops[b->nops].off;
}

/* Apply the op just recorded; handles growth; on a refusal that left the transaction
 * intact (not found, bad size) the record is dropped again. */
static int apply_last(cl_store_txn *b, size_t *deleted, char *err, size_t errlen)
{
    const op *o = &b->ops[b->nops - 1];
    int mrc = apply_op(b, o, deleted);
    b->writes++;
    if (mrc == MDB_SUCCESS) return CL_OK;
    if (mrc == MDB_MAP_FULL) return grow_and_replay(b, err, errlen);
    const char *dbname = b->s->db_names[o->db];
    if (mrc == MDB_NOTFOUND) {
        unrecord(b);
        return CL_ENOTFOUND;
    }
    if (mrc == MDB_BAD_VALSIZE) {
        unrecord(b);
        return cl_seterr(err, errlen, CL_EINVAL, "store %s/%s: key or value size rejected by LMDB",
                         b->s->path, dbname);
    }
    if (mrc == MDB_TXN_FULL)
        return fail_batch(b, CL_ENOMEM, err, errlen,
                          "store %s/%s: batch too large for one LMDB transaction (%zu ops): lower "
                          "store.batch.max.ops",
                          b->s->path, dbname, b->nops);
    return fail_batch(b, lmdb_status(mrc), err, errlen, "store %s/%s: write failed: %s", b->s->path,
                      dbname, mdb_strerror(mrc));
}

int cl_store_put(cl_store_txn *b, unsigned db, const void *key, size_t klen, const void *val,
                 size_t vlen, char *err, size_t errlen)
{
    if (!b->write) return cl_seterr(err, errlen, CL_EINVAL, "store: put in a read transaction");
    if (b->failed) return batch_failed(b, err, errlen);
    int rc = check_args(b, db, klen, 1, err, errlen);
    if (rc == CL_OK && vlen > UINT32_MAX)
        rc = cl_seterr(err, errlen, CL_EINVAL, "store %s: value of %zu bytes is too large",
                       b->s->path, vlen);
    if (rc == CL_OK) rc = record(b, OP_PUT, db, key, klen, val, vlen, err, errlen);
    if (rc == CL_OK) rc = apply_last(b, NULL, err, errlen);
    return rc;
}

int cl_store_del(cl_store_txn *b, unsigned db, const void *key, size_t klen, char *err,
                 size_t errlen)
{
    if (!b->write) return cl_seterr(err, errlen, CL_EINVAL, "store: delete in a read transaction");
    if (b->failed) return batch_failed(b, err, errlen);
    int rc = check_args(b, db, klen, 1, err, errlen);
    if (rc == CL_OK) rc = record(b, OP_DEL, db, key, klen, NULL, 0, err, errlen);
    if (rc == CL_OK) rc = apply_last(b, NULL, err, errlen);
    return rc;
}

int cl_store_del_prefix(cl_store_txn *b, unsigned db, const void *prefix, size_t plen,
                        size_t *deleted, char *err, size_t errlen)
{
    if (deleted) *deleted = 0;
    if (!b->write) return cl_seterr(err, errlen, CL_EINVAL, "store: delete in a read transaction");
    if (b->failed) return batch_failed(b, err, errlen);
    int rc = check_args(b, db, plen, 0, err, errlen);
    if (rc == CL_OK) rc = record(b, OP_DEL_PREFIX, db, prefix, plen, NULL, 0, err, errlen);
    if (rc == CL_OK) rc = apply_last(b, deleted, err, errlen);
    return rc;
}

uint64_t cl_store_batch_ops(const cl_store_txn *b)
{
    return b->nops;
}

int cl_store_batch_should_commit(const cl_store_txn *b)
{
    if (b->nops == 0) return 0;
    if (b->nops >= b->s->cfg.batch_max_ops) return 1;
    return cl_mono_ms() - b->began_ms >= b->s->cfg.batch_max_ms;
}

/*
 * LMDB turns a short write into EIO ("short write, filesystem full?"), and a write that
 * crosses the end of a full disk or RLIMIT_FSIZE is exactly that, so an I/O error at
 * commit is classified by looking: too little free space (or file size limit) for the
 * batch means "disk full", which the operator fixes differently from a failing disk.
 */
static int looks_like_disk_full(cl_store_txn *b, char *why, size_t whylen)
{
    uint64_t need = 2 * (uint64_t)b->log.len + (1u << 20);
    struct statvfs v;
    if (statvfs(b->s->path, &v) == 0) {
        uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
        if (avail < need) {
            char have[32];
            format_bytes(avail, have);
            snprintf(why, whylen, "%s free on the file system", have);
            return 1;
        }
    }
    struct rlimit rl;
    char data[4096];
    struct stat st;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (size_t)snprintf(data, sizeof data, "%s/data.mdb", b->s->path) < sizeof data &&
        stat(data, &st) == 0 && (uint64_t)st.st_size + need > (uint64_t)rl.rlim_cur) {
        snprintf(why, whylen, "file size limit (RLIMIT_FSIZE) of %" PRIu64 " bytes reached",
                 (uint64_t)rl.rlim_cur);
        return 1;
    }
    return 0;
}

int cl_store_batch_commit(cl_store_txn *b, char *err, size_t errlen)
{
    cl_store *s = b->s;
    if (b->failed) {
        int rc = batch_failed(b, err, errlen);
        batch_free(b);
        return rc;
    }
    uint64_t entries[CL_STORE_DBS_MAX];
    for (;;) {
        for (unsigned i = 0; i < s->ndbs; i++) {
            MDB_stat st;
            entries[i] = mdb_stat(b->txn, s->dbi[i], &st) == MDB_SUCCESS ? st.ms_entries : 0;
        }
        int mrc = mdb_txn_commit(b->txn);
        b->txn = NULL; /* freed by LMDB whatever the outcome */
        if (mrc == MDB_SUCCESS) break;
        int rc;
        char why[128] = "";
        if (mrc == MDB_MAP_FULL) {
            rc = grow_and_replay(b, err, errlen);
            if (rc == CL_OK) continue;
        } else if (mrc == ENOSPC || mrc == EFBIG || mrc == EDQUOT ||
                   (mrc == EIO && looks_like_disk_full(b, why, sizeof why))) {
            rc = fail_batch(b, CL_EFULL, err, errlen,
                            "store %s: disk full while committing (%s%s%s): free disk space; "
                            "the batch of %zu ops was not applied",
                            s->path, mdb_strerror(mrc), why[0] ? ", " : "", why, b->nops);
        } else {
            rc = fail_batch(b, lmdb_status(mrc), err, errlen,
                            "store %s: commit failed: %s; the batch of %zu ops was not applied",
                            s->path, mdb_strerror(mrc), b->nops);
        }
        batch_free(b);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    memcpy(s->stats.entries, entries, s->ndbs * sizeof entries[0]);
    s->stats.commits++;
    refresh_stats_locked(s, NULL);
    pthread_mutex_unlock(&s->lock);
    batch_free(b);
    return CL_OK;
}

/* ---- reads ------------------------------------------------------------------------------- */

int cl_store_read_begin(cl_store *s, cl_store_txn **out, char *err, size_t errlen)
{
    *out = NULL;
    cl_store_txn *t = calloc(1, sizeof *t);
    if (!t) return cl_seterr(err, errlen, CL_ENOMEM, "store %s: out of memory", s->path);
    t->s = s;
    pthread_mutex_lock(&s->lock);
    while (s->growing)
        pthread_cond_wait(&s->cond, &s->lock);
    s->readers++;
    pthread_mutex_unlock(&s->lock);
    int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
    if (mrc == MDB_MAP_RESIZED) {
        pthread_mutex_lock(&s->lock);
        s->readers--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        free(t);
        mrc = adopt_resized_map(s);
        if (mrc == MDB_SUCCESS) return cl_store_read_begin(s, out, err, errlen);
    }
    if (mrc != MDB_SUCCESS) {
        cl_store_read_end(t);
        return cl_seterr(err, errlen, lmdb_status(mrc),
                         "store %s: cannot begin a read transaction: %s", s->path,
                         mdb_strerror(mrc));
    }
    *out = t;
    return CL_OK;
}

void cl_store_read_end(cl_store_txn *t)
{
    if (!t) return;
    cl_store *s = t->s;
    if (t->txn) mdb_txn_abort(t->txn);
    free(t);
    pthread_mutex_lock(&s->lock);
    s->readers--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int cl_store_get(cl_store_txn *t, unsigned db, const void *key, size_t klen, const void **val,
                 size_t *vlen, char *err, size_t errlen)
{
    if (t->failed) return batch_failed(t, err, errlen);
    int rc = check_args(t, db, klen, 1, err, errlen);
    if (rc != CL_OK) return rc;
    MDB_val k = {klen, (void *)key}, v;
    int mrc = mdb_get(t->txn, t->s->dbi[db], &k, &v);
    if (mrc == MDB_NOTFOUND) return CL_ENOTFOUND;
    if (mrc != MDB_SUCCESS)
        return cl_seterr(err, errlen, lmdb_status(mrc), "store %s/%s: read failed: %s", t->s->path,
                         t->s->db_names[db], mdb_strerror(mrc));
    *val = v.mv_data;
    *vlen = v.mv_size;
    return CL_OK;
}

int cl_store_get_copy(cl_store *s, unsigned db, const void *key, size_t klen, cl_buf *out,
                      char *err, size_t errlen)
{
    cl_store_txn *t;
    int rc = cl_store_read_begin(s, &t, err, errlen);
    if (rc != CL_OK) return rc;
    const void *v;
    size_t vlen;
    rc = cl_store_get(t, db, key, klen, &v, &vlen, err, errlen);
    if (rc == CL_OK) {
        cl_buf_reset(out);
        rc = cl_buf_append(out, v, vlen);
        if (rc != CL_OK)
            rc = cl_seterr(err, errlen, rc, "store %s/%s: value of %zu bytes exceeds the buffer",
                           s->path, s->db_names[db], vlen);
    }
    cl_store_read_end(t);
    return rc;
}

int cl_store_scan_prefix(cl_store_txn *t, unsigned db, const void *prefix, size_t plen,
                         cl_store_scan_fn cb, void *ud, char *err, size_t errlen)
{
    if (t->failed) return batch_failed(t, err, errlen);
    int rc = check_args(t, db, plen, 0, err, errlen);
    if (rc != CL_OK) return rc;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, t->s->dbi[db], &c);
    if (mrc != MDB_SUCCESS)
        return cl_seterr(err, errlen, lmdb_status(mrc), "store %s/%s: cursor: %s", t->s->path,
                         t->s->db_names[db], mdb_strerror(mrc));
    uint64_t generation = t->generation;
    MDB_val k = {plen, (void *)prefix}, v;
    mrc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    uint8_t current[CL_STORE_KEY_MAX];
    while (mrc == MDB_SUCCESS && has_prefix(&k, prefix, plen)) {
        size_t clen = k.mv_size <= sizeof current ? k.mv_size : sizeof current;
        memcpy(current, k.mv_data, clen);
        uint64_t writes = t->writes;
        int r = cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, ud);
        if (t->failed) return r < 0 ? r : batch_failed(t, err, errlen); /* cursor went with txn */
        if (r != 0) {
            if (t->generation == generation) mdb_cursor_close(c);
            return r > 0 ? CL_OK : r;
        }
        if (t->writes == writes && t->generation == generation) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            continue;
        }
        /* The callback wrote: reposition after the key we were on, which may be gone. A
         * replay replaced the transaction, and its cursors went with the old one. */
        if (t->generation != generation) {
            generation = t->generation;
            mrc = mdb_cursor_open(t->txn, t->s->dbi[db], &c);
            if (mrc != MDB_SUCCESS) break;
        }
        k = (MDB_val){clen, current};
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (mrc == MDB_SUCCESS && k.mv_size == clen && memcmp(k.mv_data, current, clen) == 0)
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND) {
        if (t->generation == generation) mdb_cursor_close(c);
        return cl_seterr(err, errlen, lmdb_status(mrc), "store %s/%s: scan failed: %s", t->s->path,
                         t->s->db_names[db], mdb_strerror(mrc));
    }
    mdb_cursor_close(c);
    return CL_OK;
}

/* ---- gauges ------------------------------------------------------------------------------ */

void cl_store_stats_get(cl_store *s, cl_store_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

static void collect(cl_prom *reg, void *ud)
{
    cl_store *s = ud;
    cl_store_stats st;
    cl_store_stats_get(s, &st);
    const char *const l[] = {s->prom_name};
    cl_prom_gauge_set(s->m_size, l, (double)st.map_size);
    cl_prom_gauge_set(s->m_used, l, (double)st.map_used);
    cl_prom_gauge_set(s->m_max, l, (double)st.map_max);
    for (unsigned i = 0; i < st.ndbs; i++)
        cl_prom_gauge_set(s->m_entries, (const char *const[]){s->prom_name, s->db_names[i]},
                          (double)st.entries[i]);
    cl_prom_counter_add(s->m_growths, l, (double)(st.growths - s->exported_growths));
    cl_prom_counter_add(s->m_commits, l, (double)(st.commits - s->exported_commits));
    s->exported_growths = st.growths;
    s->exported_commits = st.commits;
}

int cl_store_export_prom(cl_store *s, cl_prom *reg, const char *name, char *err, size_t errlen)
{
    if (s->prom) return cl_seterr(err, errlen, CL_EINVAL, "store %s: already exported", s->path);
    static const char *const st[] = {"store", NULL};
    static const char *const stdb[] = {"store", "db", NULL};
    int rc = cl_prom_gauge(reg, "closedloop_lmdb_map_size_bytes",
                           "Current LMDB map size (grows by doubling up to store.map.max).", st,
                           &s->m_size, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(reg, "closedloop_lmdb_map_used_bytes",
                           "LMDB map in use: (last page number + 1) * page size.", st, &s->m_used,
                           err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(reg, "closedloop_lmdb_map_max_bytes",
                           "Largest LMDB map size allowed (store.map.max).", st, &s->m_max, err,
                           errlen);
    if (rc == CL_OK)
        rc = cl_prom_gauge(reg, "closedloop_lmdb_entries",
                           "Entries per LMDB database as of the last commit.", stdb, &s->m_entries,
                           err, errlen);
    if (rc == CL_OK)
        rc =
            cl_prom_counter(reg, "closedloop_lmdb_map_growths_total",
                            "LMDB map growths after MDB_MAP_FULL.", st, &s->m_growths, err, errlen);
    if (rc == CL_OK)
        rc = cl_prom_counter(reg, "closedloop_lmdb_commits_total", "Committed LMDB write batches.",
                             st, &s->m_commits, err, errlen);
    if (rc != CL_OK) return rc;
    s->prom_name = strdup(name ? name : "");
    if (!s->prom_name) return cl_seterr(err, errlen, CL_ENOMEM, "store: out of memory");
    s->exported_growths = s->exported_commits = 0;
    int id = cl_prom_add_collector(reg, collect, s);
    if (id < 0) {
        free(s->prom_name);
        s->prom_name = NULL;
        return cl_seterr(err, errlen, id, "store %s: cannot add the metrics collector", s->path);
    }
    s->prom = reg;
    s->collector_id = id;
    return CL_OK;
}

static void unexport_prom(cl_store *s)
{
    if (!s->prom) return;
    cl_prom_remove_collector(s->prom, s->collector_id);
    const char *const l[] = {s->prom_name};
    cl_prom_remove(s->m_size, l);
    cl_prom_remove(s->m_used, l);
    cl_prom_remove(s->m_max, l);
    for (unsigned i = 0; i < s->ndbs; i++)
        cl_prom_remove(s->m_entries, (const char *const[]){s->prom_name, s->db_names[i]});
    free(s->prom_name);
    s->prom = NULL;
}

/* ---- keys -------------------------------------------------------------------------------- */

void cl_store_u32_be(uint8_t out[4], uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

void cl_store_u64_be(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint32_t cl_store_be_u32(const uint8_t in[4])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

uint64_t cl_store_be_u64(const uint8_t in[8])
{
    return (uint64_t)cl_store_be_u32(in) << 32 | cl_store_be_u32(in + 4);
}

void cl_store_key_init(cl_store_key *k)
{
    k->len = 0;
    k->ok = 1;
}

static uint8_t *key_room(cl_store_key *k, size_t n)
{
    if (!k->ok || n > sizeof k->data - k->len) {
        k->ok = 0;
        return NULL;
    }
    uint8_t *p = k->data + k->len;
    k->len += n;
    return p;
}

void cl_store_key_u32(cl_store_key *k, uint32_t v)
{
    uint8_t *p = key_room(k, 4);
    if (p) cl_store_u32_be(p, v);
}

void cl_store_key_u64(cl_store_key *k, uint64_t v)
{
    uint8_t *p = key_room(k, 8);
    if (p) cl_store_u64_be(p, v);
}

void cl_store_key_i64(cl_store_key *k, int64_t v)
{
    cl_store_key_u64(k, (uint64_t)v ^ (UINT64_C(1) << 63));
}

void cl_store_key_str(cl_store_key *k, const char *s, size_t len)
{
    if (len > 0xffff) {
        k->ok = 0;
        return;
    }
    uint8_t *p = key_room(k, 2 + len);
    if (!p) return;
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    if (len) memcpy(p + 2, s, len);
}

void cl_store_key_reader_init(cl_store_key_reader *r, const void *key, size_t len)
{
    r->data = key;
    r->len = len;
    r->pos = 0;
}

int cl_store_key_next_u32(cl_store_key_reader *r, uint32_t *out)
{
    if (r->len - r->pos < 4) return CL_EINVAL;
    *out = cl_store_be_u32(r->data + r->pos);
    r->pos += 4;
    return CL_OK;
}

int cl_store_key_next_u64(cl_store_key_reader *r, uint64_t *out)
{
    if (r->len - r->pos < 8) return CL_EINVAL;
    *out = cl_store_be_u64(r->data + r->pos);
    r->pos += 8;
    return CL_OK;
}

int cl_store_key_next_i64(cl_store_key_reader *r, int64_t *out)
{
    uint64_t u;
    if (cl_store_key_next_u64(r, &u) != CL_OK) return CL_EINVAL;
    *out = (int64_t)(u ^ (UINT64_C(1) << 63));
    return CL_OK;
}

int cl_store_key_next_str(cl_store_key_reader *r, const char **s, size_t *len)
{
    if (r->len - r->pos < 2) return CL_EINVAL;
    size_t n = (size_t)r->data[r->pos] << 8 | r->data[r->pos + 1];
    if (r->len - r->pos - 2 < n) return CL_EINVAL;
    *s = (const char *)r->data + r->pos + 2;
    *len = n;
    r->pos += 2 + n;
    return CL_OK;
}

int cl_store_key_done(const cl_store_key_reader *r)
{
    return r->pos == r->len;
}
