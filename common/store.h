/*
 * store.h — durable key/value state in LMDB, written in batches that cannot lose ops.
 *
 * A store is one LMDB environment in its own directory (created 0700, files 0600) with
 * a fixed set of named databases chosen at open; callers address them by index in the
 * order given (an enum in the worker reads well). The join worker keeps its per-partition
 * state and the Kafka offsets that produced it in the same write transaction, which is
 * what makes its state exactly-once: after a crash LMDB holds either both or neither.
 *
 * Writes go through a batch (one LMDB write transaction). The caller opens a batch,
 * puts/deletes/gets inside it, asks cl_store_batch_should_commit() after each record
 * (size trigger store.batch.max.ops, time trigger store.batch.max.ms) and commits.
 * Every put and delete is also recorded in memory. When LMDB reports MDB_MAP_FULL, at a
 * put or at commit, the store aborts the transaction, doubles the map (up to
 * store.map.max), opens a new transaction and re-applies the recorded ops, then carries
 * on — the caller sees nothing but a slower call. Because the replay reproduces the same
 * writes on the same base state, reads done earlier in the batch stay valid decisions.
 * Only when the map is at its maximum, or the disk is full (ENOSPC/EFBIG at commit), does
 * a call fail, with CL_EFULL; the transaction is then aborted and nothing of the batch is
 * applied, so the caller can stop without having half-written anything (its Kafka offsets
 * are in the same batch and were not advanced either).
 *
 * Threads: batches and their gets belong to one thread (the poll thread). Read
 * transactions (cl_store_read_begin) may be used from any thread; growing the map waits
 * until none is open (LMDB's rule for mdb_env_set_mapsize), so keep them short and never
 * hold one on the thread that is writing. Gauges (cl_store_stats, cl_store_export_prom)
 * read values cached at the last commit and are safe from any thread.
 *
 * Sync modes (store.sync):
 *   durable     fsync data and meta page at every commit (default): a commit that
 *               returned is on disk.
 *   nometasync  fsync data but not the meta page: a system crash (not a process crash)
 *               may roll back the last commits, never corrupt the database.
 *   nosync      no fsync at all: a system crash may roll back recent commits and, if
 *               the file system reorders writes, corrupt the database. A process crash
 *               loses nothing. For benchmarks and disposable state only.
 *
 * Keys: LMDB orders keys bytewise. cl_store_key builds composite keys from integers
 * (big-endian, so numeric order is byte order; signed values with the sign bit flipped)
 * and strings (a 2-byte big-endian length, then the bytes). Each component is
 * self-delimiting, so no separator byte can collide with data and a key built from the
 * first components is an exact prefix for range scans ("partition" or "partition,
 * opportunity id"). Strings order by length first, then bytes: keys group correctly,
 * but string components do not sort alphabetically.
 */
#ifndef CL_STORE_H
#define CL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "prom.h"
#include "util.h"

#define CL_STORE_DBS_MAX 32
#define CL_STORE_KEY_MAX 511 /* LMDB's default maximum key size */

typedef enum {
    CL_STORE_SYNC_DURABLE = 0,
    CL_STORE_SYNC_NOMETASYNC,
    CL_STORE_SYNC_NOSYNC,
} cl_store_sync;

typedef struct {
    uint64_t map_initial; /* bytes; the map starts here (or at the file size) */
    uint64_t map_max;     /* bytes; growth stops here with CL_EFULL */
    cl_store_sync sync;
    uint64_t batch_max_ops; /* should_commit after this many puts/deletes */
    int64_t batch_max_ms;   /* should_commit this long after the batch began */
    unsigned max_readers;   /* concurrent read transactions (LMDB default 126) */
} cl_store_config;

/* store.map.initial, store.map.max, store.sync, store.batch.max.ops, store.batch.max.ms.
 * Add it to a worker's table list to get these options. */
extern const cl_option cl_store_options[];

/* 64 MiB initial, 16 GiB max, durable, 1000 ops, 200 ms, 126 readers. */
void cl_store_config_defaults(cl_store_config *c);
/* Read the store.* options from a loaded config. */
int cl_store_config_from(cl_store_config *c, const cl_config *cfg, char *err, size_t errlen);
int cl_store_parse_sync(const char *s, cl_store_sync *out);
const char *cl_store_sync_name(cl_store_sync s);

typedef struct cl_store cl_store;
/* A transaction: either a read transaction or a write batch. */
typedef struct cl_store_txn cl_store_txn;

/*
 * Open (creating when missing) the environment in directory `dir` with the named
 * databases `db_names` (NULL-terminated, at most CL_STORE_DBS_MAX). Runs
 * mdb_reader_check and logs how many stale reader slots (from crashed processes) it
 * cleared. One process may open a given directory only once (an LMDB rule).
 */
int cl_store_open(cl_store **out, const char *dir, const char *const *db_names,
                  const cl_store_config *cfg, char *err, size_t errlen);
/* Aborts an open batch (its ops are lost: commit first). NULL is fine. */
void cl_store_close(cl_store *s);

const char *cl_store_path(const cl_store *s);
/* Stale reader slots cleared by mdb_reader_check at open. */
int cl_store_stale_readers_cleared(const cl_store *s);

/* ---- batches ----------------------------------------------------------------------- */

/* At most one batch is open per store. */
int cl_store_batch_begin(cl_store *s, cl_store_txn **out, char *err, size_t errlen);
/* Values are copied (into LMDB and into the replay log). Empty keys are CL_EINVAL. */
int cl_store_put(cl_store_txn *b, unsigned db, const void *key, size_t klen, const void *val,
                 size_t vlen, char *err, size_t errlen);
/* CL_OK when the key existed, CL_ENOTFOUND when it did not (not a failure). */
int cl_store_del(cl_store_txn *b, unsigned db, const void *key, size_t klen, char *err,
                 size_t errlen);
/* Delete every key starting with prefix (all keys when plen == 0); *deleted counts them. */
int cl_store_del_prefix(cl_store_txn *b, unsigned db, const void *prefix, size_t plen,
                        size_t *deleted, char *err, size_t errlen);
/* Puts and deletes recorded since begin. */
uint64_t cl_store_batch_ops(const cl_store_txn *b);
/* True when the batch reached store.batch.max.ops or is older than store.batch.max.ms.
 * An empty batch never asks to be committed. */
int cl_store_batch_should_commit(const cl_store_txn *b);
/*
 * Commit and free the batch, whatever the result. On failure nothing of the batch is
 * applied: CL_EFULL (map at store.map.max, or disk full), CL_EIO, CL_ERR.
 * Any failing call on a batch (CL_EFULL, CL_EIO...) leaves it aborted: later calls return
 * the same error and the caller must still call commit or abort to free it.
 */
int cl_store_batch_commit(cl_store_txn *b, char *err, size_t errlen);
void cl_store_batch_abort(cl_store_txn *b);

/* ---- reads ------------------------------------------------------------------------- */

int cl_store_read_begin(cl_store *s, cl_store_txn **out, char *err, size_t errlen);
void cl_store_read_end(cl_store_txn *t);

/*
 * Look a key up in a read transaction or a batch (which sees its own writes).
 * *val points into the map: valid until the transaction ends or, in a batch, until the
 * next put/delete. CL_ENOTFOUND when absent.
 */
int cl_store_get(cl_store_txn *t, unsigned db, const void *key, size_t klen, const void **val,
                 size_t *vlen, char *err, size_t errlen);
/* One-shot read in its own read transaction, copying the value into out (reset first). */
int cl_store_get_copy(cl_store *s, unsigned db, const void *key, size_t klen, cl_buf *out,
                      char *err, size_t errlen);

/*
 * Call cb for every key starting with prefix (every key when plen == 0), in key order.
 * cb returns 0 to go on, > 0 to stop (scan returns CL_OK), < 0 to fail (scan returns that
 * status). In a batch, cb may put and delete — including the current key — and the scan
 * continues after the current key as if the cursor had never moved. key/val are valid
 * only during the callback.
 */
typedef int (*cl_store_scan_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                                void *ud);
int cl_store_scan_prefix(cl_store_txn *t, unsigned db, const void *prefix, size_t plen,
                         cl_store_scan_fn cb, void *ud, char *err, size_t errlen);

/* ---- gauges ------------------------------------------------------------------------ */

typedef struct {
    uint64_t map_size; /* current map size, bytes */
    uint64_t map_used; /* (last page number + 1) * page size */
    uint64_t map_max;  /* store.map.max */
    uint64_t page_size;
    uint64_t growths; /* map growths since open */
    uint64_t commits; /* committed batches since open */
    unsigned ndbs;
    uint64_t entries[CL_STORE_DBS_MAX]; /* entries per database, as of the last commit */
} cl_store_stats;

void cl_store_stats_get(cl_store *s, cl_store_stats *out);
const char *cl_store_db_name(const cl_store *s, unsigned db);

/*
 * Export the gauges into reg at every scrape, with label store="<name>" (e.g. "join"):
 *   closedloop_lmdb_map_size_bytes, closedloop_lmdb_map_used_bytes,
 *   closedloop_lmdb_map_max_bytes, closedloop_lmdb_entries{store,db},
 *   closedloop_lmdb_map_growths_total, closedloop_lmdb_commits_total.
 * The collector is removed by cl_store_close.
 */
int cl_store_export_prom(cl_store *s, cl_prom *reg, const char *name, char *err, size_t errlen);

/* ---- keys -------------------------------------------------------------------------- */

void cl_store_u32_be(uint8_t out[4], uint32_t v);
void cl_store_u64_be(uint8_t out[8], uint64_t v);
uint32_t cl_store_be_u32(const uint8_t in[4]);
uint64_t cl_store_be_u64(const uint8_t in[8]);

/* A composite key under construction. Errors are sticky: build, then check ok once. */
typedef struct {
    uint8_t data[CL_STORE_KEY_MAX];
    size_t len;
    int ok; /* 0 once a component did not fit */
} cl_store_key;

void cl_store_key_init(cl_store_key *k);
void cl_store_key_u32(cl_store_key *k, uint32_t v);
void cl_store_key_u64(cl_store_key *k, uint64_t v);
void cl_store_key_i64(cl_store_key *k, int64_t v); /* sign bit flipped: -1 < 0 < 1 */
void cl_store_key_str(cl_store_key *k, const char *s, size_t len); /* len <= 65535 */

/* Reading a composite key back, component by component; CL_EINVAL when malformed. */
typedef struct {
    const uint8_t *data;
    size_t len, pos;
} cl_store_key_reader;

void cl_store_key_reader_init(cl_store_key_reader *r, const void *key, size_t len);
int cl_store_key_next_u32(cl_store_key_reader *r, uint32_t *out);
int cl_store_key_next_u64(cl_store_key_reader *r, uint64_t *out);
int cl_store_key_next_i64(cl_store_key_reader *r, int64_t *out);
/* *s points into the key (not NUL-terminated). */
int cl_store_key_next_str(cl_store_key_reader *r, const char **s, size_t *len);
/* True when every byte has been read. */
int cl_store_key_done(const cl_store_key_reader *r);

#endif
