/* Unit tests for common/store: batches and their triggers, persistence across reopen, map
 * growth with replay under a tiny map (no op lost), CL_EFULL at the maximum and on a full
 * disk with nothing half-applied, mdb_reader_check of a crashed reader, prefix scans
 * (also while the callback writes and the map grows), file modes, keys, options, gauges. */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "store.h"

enum { DB_STATE = 0, DB_OFFSETS = 1 };
static const char *const dbs[] = {"state", "offsets", NULL};

static char root[64];
static char dir[128];
static FILE *devnull;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/cl-test-store-XXXXXX");
    assert_non_null(mkdtemp(root));
    /* Two levels that do not exist yet: open must create them (mkdir -p). */
    snprintf(dir, sizeof dir, "%s/state/join", root);
    return 0;
}

static int teardown(void **state)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static cl_store_config small_config(uint64_t initial, uint64_t max)
{
    cl_store_config c;
    cl_store_config_defaults(&c);
    c.map_initial = initial;
    c.map_max = max;
    c.sync = CL_STORE_SYNC_NOSYNC; /* unit tests: fsync buys nothing here */
    return c;
}

static cl_store *open_store(const cl_store_config *c)
{
    char err[CL_ERRLEN];
    cl_store *s = NULL;
    int rc = cl_store_open(&s, dir, dbs, c, err, sizeof err);
    if (rc != CL_OK) fail_msg("cl_store_open: %s", err);
    return s;
}

static void make_key(uint8_t key[12], uint32_t part, uint64_t i)
{
    cl_store_u32_be(key, part);
    cl_store_u64_be(key + 4, i);
}

static void make_value(char *v, size_t len, uint64_t i)
{
    for (size_t j = 0; j < len; j++)
        v[j] = (char)('a' + (i * 7 + j) % 26);
}

static void put_many(cl_store_txn *b, uint32_t part, uint64_t from, uint64_t to, size_t vlen)
{
    char err[CL_ERRLEN];
    char v[1024];
    for (uint64_t i = from; i < to; i++) {
        uint8_t key[12];
        make_key(key, part, i);
        make_value(v, vlen, i);
        int rc = cl_store_put(b, DB_STATE, key, sizeof key, v, vlen, err, sizeof err);
        if (rc != CL_OK) fail_msg("put %llu: %s", (unsigned long long)i, err);
    }
}

/* Every key in [from, to) present with its value, in a fresh read transaction. */
static void expect_present(cl_store *s, uint32_t part, uint64_t from, uint64_t to, size_t vlen)
{
    char err[CL_ERRLEN];
    cl_store_txn *t;
    assert_int_equal(cl_store_read_begin(s, &t, err, sizeof err), CL_OK);
    char want[1024];
    for (uint64_t i = from; i < to; i++) {
        uint8_t key[12];
        make_key(key, part, i);
        const void *v;
        size_t len;
        int rc = cl_store_get(t, DB_STATE, key, sizeof key, &v, &len, err, sizeof err);
        if (rc != CL_OK)
            fail_msg("key %llu missing: %s", (unsigned long long)i, cl_status_name(rc));
        make_value(want, vlen, i);
        assert_int_equal(len, vlen);
        assert_memory_equal(v, want, vlen);
    }
    cl_store_read_end(t);
}

static size_t count_prefix(cl_store *s, const void *prefix, size_t plen);

static void test_batch_commit_and_reopen(void **state)
{
    cl_store_config c = small_config(1 << 20, 64 << 20);
    c.batch_max_ops = 10;
    c.batch_max_ms = 3600000;
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b, *other;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    assert_int_equal(cl_store_batch_begin(s, &other, err, sizeof err), CL_EINVAL);
    assert_false(cl_store_batch_should_commit(b)); /* empty never asks */
    put_many(b, 1, 0, 9, 100);
    assert_false(cl_store_batch_should_commit(b));
    put_many(b, 1, 9, 10, 100);
    assert_true(cl_store_batch_should_commit(b)); /* size trigger */
    assert_int_equal(cl_store_batch_ops(b), 10);

    /* The batch sees its own writes; deletes report whether the key existed. */
    uint8_t key[12];
    make_key(key, 1, 3);
    const void *v;
    size_t len;
    assert_int_equal(cl_store_get(b, DB_STATE, key, sizeof key, &v, &len, err, sizeof err), CL_OK);
    assert_int_equal(cl_store_del(b, DB_STATE, key, sizeof key, err, sizeof err), CL_OK);
    assert_int_equal(cl_store_del(b, DB_STATE, key, sizeof key, err, sizeof err), CL_ENOTFOUND);
    assert_int_equal(cl_store_get(b, DB_STATE, key, sizeof key, &v, &len, err, sizeof err),
                     CL_ENOTFOUND);
    /* Offsets in the same transaction as the state, as the join worker does. */
    uint8_t off[8];
    cl_store_u64_be(off, 4242);
    assert_int_equal(cl_store_put(b, DB_OFFSETS, "p0", 2, off, sizeof off, err, sizeof err), CL_OK);
    /* Bad input is refused without hurting the batch. */
    assert_int_equal(cl_store_put(b, DB_STATE, "", 0, "x", 1, err, sizeof err), CL_EINVAL);
    assert_int_equal(cl_store_put(b, 7, "k", 1, "x", 1, err, sizeof err), CL_EINVAL);
    char huge_key[CL_STORE_KEY_MAX + 1] = {0};
    assert_int_equal(cl_store_put(b, DB_STATE, huge_key, sizeof huge_key, "x", 1, err, sizeof err),
                     CL_EINVAL);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    /* Uncommitted work is dropped by abort. */
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 2, 0, 5, 100);
    cl_store_batch_abort(b);
    cl_store_close(s);

    s = open_store(&c);
    expect_present(s, 1, 0, 3, 100);
    expect_present(s, 1, 4, 10, 100);
    make_key(key, 1, 3);
    cl_buf out;
    cl_buf_init(&out, 0);
    assert_int_equal(cl_store_get_copy(s, DB_STATE, key, sizeof key, &out, err, sizeof err),
                     CL_ENOTFOUND);
    assert_int_equal(cl_store_get_copy(s, DB_OFFSETS, "p0", 2, &out, err, sizeof err), CL_OK);
    assert_int_equal(out.len, 8);
    assert_int_equal(cl_store_be_u64((const uint8_t *)out.data), 4242);
    cl_buf_free(&out);
    uint8_t part2[4];
    cl_store_u32_be(part2, 2);
    assert_int_equal(count_prefix(s, part2, 4), 0);

    cl_store_stats st;
    cl_store_stats_get(s, &st);
    assert_int_equal(st.entries[DB_STATE], 9);
    assert_int_equal(st.entries[DB_OFFSETS], 1);
    cl_store_close(s);
}

static void test_time_trigger(void **state)
{
    cl_store_config c = small_config(1 << 20, 64 << 20);
    c.batch_max_ops = 1000000;
    c.batch_max_ms = 0; /* any non-empty batch is due */
    cl_store *s = open_store(&c);
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, NULL, 0), CL_OK);
    assert_false(cl_store_batch_should_commit(b));
    put_many(b, 0, 0, 1, 10);
    assert_true(cl_store_batch_should_commit(b));
    assert_int_equal(cl_store_batch_commit(b, NULL, 0), CL_OK);
    cl_store_close(s);
}

static void test_map_growth_replays_every_op(void **state)
{
    /* 1 MiB map; ~20k values of 300 bytes need about 7 MiB: several growths, each one
     * replaying the whole batch, including a delete and a prefix delete. */
    cl_store_config c = small_config(1 << 20, 256 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 9, 0, 100, 300);
    size_t deleted = 0;
    uint8_t p9[4];
    cl_store_u32_be(p9, 9);
    assert_int_equal(cl_store_del_prefix(b, DB_STATE, p9, 4, &deleted, err, sizeof err), CL_OK);
    assert_int_equal(deleted, 100);
    put_many(b, 1, 0, 20000, 300);
    uint8_t key[12];
    make_key(key, 1, 17);
    assert_int_equal(cl_store_del(b, DB_STATE, key, sizeof key, err, sizeof err), CL_OK);
    /* Reads inside the batch after growth see the whole batch. */
    const void *v;
    size_t len;
    make_key(key, 1, 19999);
    assert_int_equal(cl_store_get(b, DB_STATE, key, sizeof key, &v, &len, err, sizeof err), CL_OK);
    assert_int_equal(len, 300);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    cl_store_stats st;
    cl_store_stats_get(s, &st);
    assert_true(st.growths >= 2);
    assert_true(st.map_size > (1 << 20));
    assert_true(st.map_used <= st.map_size);
    assert_int_equal(st.entries[DB_STATE], 19999);
    cl_store_close(s);

    s = open_store(&c);
    expect_present(s, 1, 0, 17, 300);
    expect_present(s, 1, 18, 20000, 300);
    assert_int_equal(count_prefix(s, p9, 4), 0);
    cl_store_close(s);
}

static void test_full_at_max_applies_nothing(void **state)
{
    cl_store_config c = small_config(1 << 20, 2 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 1, 0, 100, 300);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    uint8_t off[8];
    cl_store_u64_be(off, 99);
    assert_int_equal(cl_store_put(b, DB_OFFSETS, "p0", 2, off, 8, err, sizeof err), CL_OK);
    char v[300];
    int rc = CL_OK;
    uint64_t i;
    for (i = 0; i < 100000 && rc == CL_OK; i++) {
        uint8_t key[12];
        make_key(key, 2, i);
        make_value(v, sizeof v, i);
        rc = cl_store_put(b, DB_STATE, key, sizeof key, v, sizeof v, err, sizeof err);
    }
    assert_int_equal(rc, CL_EFULL);
    assert_non_null(strstr(err, "LMDB map full at 2.0 MiB (store.map.max) in "));
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "raise store.map.max or free disk"));
    /* The batch stays failed; commit reports it and frees it. */
    assert_int_equal(cl_store_put(b, DB_STATE, "k", 1, "v", 1, err, sizeof err), CL_EFULL);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_EFULL);
    cl_store_close(s);

    s = open_store(&c);
    expect_present(s, 1, 0, 100, 300);
    uint8_t p2[4];
    cl_store_u32_be(p2, 2);
    assert_int_equal(count_prefix(s, p2, 4), 0);
    cl_buf out;
    cl_buf_init(&out, 0);
    assert_int_equal(cl_store_get_copy(s, DB_OFFSETS, "p0", 2, &out, err, sizeof err),
                     CL_ENOTFOUND);
    cl_buf_free(&out);
    /* And the store still works. */
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 3, 0, 10, 300);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    cl_store_close(s);
}

static void test_disk_full_at_commit_applies_nothing(void **state)
{
    /* A file size limit makes the data file's writes fail with EFBIG exactly as a full
     * disk fails with ENOSPC: in the middle of a commit. */
    cl_store_config c = small_config(64 << 20, 64 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 1, 0, 50, 300);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    char data[256];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = (rlim_t)st.st_size + 64 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 2, 0, 5000, 300); /* ~1.5 MiB: cannot fit under the limit */
    int rc = cl_store_batch_commit(b, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, CL_EFULL);
    assert_non_null(strstr(err, "disk full"));
    assert_non_null(strstr(err, "not applied"));

    /* The process carries on: the old state is intact and new batches commit. */
    uint8_t p2[4];
    cl_store_u32_be(p2, 2);
    assert_int_equal(count_prefix(s, p2, 4), 0);
    expect_present(s, 1, 0, 50, 300);
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 3, 0, 10, 300);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    cl_store_close(s);
    s = open_store(&c);
    assert_int_equal(count_prefix(s, p2, 4), 0);
    expect_present(s, 1, 0, 50, 300);
    expect_present(s, 3, 0, 10, 300);
    cl_store_close(s);
}

static void test_reader_check_clears_crashed_reader(void **state)
{
    /* LMDB resets the reader table when the first process opens the environment, so a
     * stale slot only survives while another process keeps it open: a holder child
     * keeps it open, a crasher child dies inside a read transaction, then we open. */
    cl_store_config c = small_config(1 << 20, 64 << 20);
    cl_store *s = open_store(&c);
    assert_int_equal(cl_store_stale_readers_cleared(s), 0);
    cl_store_close(s);

    int ready[2], release[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    pid_t holder = fork();
    assert_true(holder >= 0);
    if (holder == 0) {
        cl_store *hs = NULL;
        close(ready[0]);
        close(release[1]);
        if (cl_store_open(&hs, dir, dbs, &c, NULL, 0) != CL_OK) _exit(2);
        char x = 'r';
        if (write(ready[1], &x, 1) != 1) _exit(3);
        while (read(release[0], &x, 1) > 0) {
        }
        cl_store_close(hs);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);

    pid_t crasher = fork();
    assert_true(crasher >= 0);
    if (crasher == 0) {
        cl_store *cs = NULL;
        cl_store_txn *t;
        if (cl_store_open(&cs, dir, dbs, &c, NULL, 0) != CL_OK) _exit(2);
        if (cl_store_read_begin(cs, &t, NULL, 0) != CL_OK) _exit(3);
        _exit(0); /* dies holding a reader slot, like a kill -9 */
    }
    int status;
    assert_int_equal(waitpid(crasher, &status, 0), crasher);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    s = open_store(&c);
    assert_int_equal(cl_store_stale_readers_cleared(s), 1);
    cl_store_close(s);
    s = open_store(&c);
    assert_int_equal(cl_store_stale_readers_cleared(s), 0);
    cl_store_close(s);

    close(release[1]);
    assert_int_equal(waitpid(holder, &status, 0), holder);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(ready[0]);
}

typedef struct {
    char seen[64][64];
    size_t n;
    size_t stop_after;
} scan_log;

static int log_key(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    scan_log *l = ud;
    cl_store_key_reader r;
    cl_store_key_reader_init(&r, key, klen);
    uint32_t part;
    const char *opp;
    size_t opplen;
    int64_t snap;
    assert_int_equal(cl_store_key_next_u32(&r, &part), CL_OK);
    assert_int_equal(cl_store_key_next_str(&r, &opp, &opplen), CL_OK);
    assert_int_equal(cl_store_key_next_i64(&r, &snap), CL_OK);
    assert_true(cl_store_key_done(&r));
    assert_true(l->n < 64);
    snprintf(l->seen[l->n++], 64, "%u|%.*s|%lld", part, (int)opplen, opp, (long long)snap);
    return l->stop_after && l->n == l->stop_after ? 1 : 0;
}

static void put_composite(cl_store_txn *b, uint32_t part, const char *opp, int64_t snap)
{
    cl_store_key k;
    cl_store_key_init(&k);
    cl_store_key_u32(&k, part);
    cl_store_key_str(&k, opp, strlen(opp));
    cl_store_key_i64(&k, snap);
    assert_true(k.ok);
    assert_int_equal(cl_store_put(b, DB_STATE, k.data, k.len, "v", 1, NULL, 0), CL_OK);
}

static int count_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    (*(size_t *)ud)++;
    return 0;
}

static size_t count_prefix(cl_store *s, const void *prefix, size_t plen)
{
    cl_store_txn *t;
    char err[CL_ERRLEN];
    assert_int_equal(cl_store_read_begin(s, &t, err, sizeof err), CL_OK);
    size_t n = 0;
    assert_int_equal(cl_store_scan_prefix(t, DB_STATE, prefix, plen, count_cb, &n, err, sizeof err),
                     CL_OK);
    cl_store_read_end(t);
    return n;
}

static void test_prefix_scan(void **state)
{
    cl_store_config c = small_config(1 << 20, 64 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_composite(b, 2, "006A", 5);
    put_composite(b, 1, "006B", 1);
    put_composite(b, 1, "006A", 300);
    put_composite(b, 1, "006A", -2);
    put_composite(b, 1, "006A", 7);
    put_composite(b, 1, "006AA", 1); /* "006A" must not be a prefix of it */
    put_composite(b, 0, "006A", 1);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    cl_store_key p;
    cl_store_key_init(&p);
    cl_store_key_u32(&p, 1);
    cl_store_key_str(&p, "006A", 4);
    scan_log l = {0};
    cl_store_txn *t;
    assert_int_equal(cl_store_read_begin(s, &t, err, sizeof err), CL_OK);
    assert_int_equal(cl_store_scan_prefix(t, DB_STATE, p.data, p.len, log_key, &l, err, sizeof err),
                     CL_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.seen[0], "1|006A|-2");
    assert_string_equal(l.seen[1], "1|006A|7");
    assert_string_equal(l.seen[2], "1|006A|300");

    /* Partition 1 only; strings group by length first. */
    memset(&l, 0, sizeof l);
    uint8_t part1[4];
    cl_store_u32_be(part1, 1);
    assert_int_equal(cl_store_scan_prefix(t, DB_STATE, part1, 4, log_key, &l, err, sizeof err),
                     CL_OK);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.seen[3], "1|006B|1");
    assert_string_equal(l.seen[4], "1|006AA|1");

    /* Stop early; the whole database in key order. */
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    assert_int_equal(cl_store_scan_prefix(t, DB_STATE, NULL, 0, log_key, &l, err, sizeof err),
                     CL_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.seen[0], "0|006A|1");
    assert_string_equal(l.seen[1], "1|006A|-2");
    cl_store_read_end(t);
    cl_store_close(s);
}

typedef struct {
    cl_store_txn *b;
    size_t visited;
    uint64_t grow_puts;
} mutate_ctx;

/* Deletes every even key it visits and, on the first visit, writes enough elsewhere to
 * force a map growth (the transaction and its cursors are replaced under the scan). */
static int mutate_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
    mutate_ctx *m = ud;
    uint64_t i = cl_store_be_u64((const uint8_t *)key + 4);
    m->visited++;
    char err[CL_ERRLEN];
    if (i % 2 == 0) {
        uint8_t copy[12];
        memcpy(copy, key, sizeof copy);
        if (cl_store_del(m->b, DB_STATE, copy, sizeof copy, err, sizeof err) != CL_OK)
            fail_msg("delete during scan: %s", err);
    }
    if (m->grow_puts) {
        put_many(m->b, 7, 0, m->grow_puts, 300);
        m->grow_puts = 0;
    }
    return 0;
}

static void test_scan_with_writes_and_growth(void **state)
{
    cl_store_config c = small_config(1 << 20, 256 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 5, 0, 2000, 100);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    mutate_ctx m = {b, 0, 10000};
    uint8_t p5[4];
    cl_store_u32_be(p5, 5);
    assert_int_equal(cl_store_scan_prefix(b, DB_STATE, p5, 4, mutate_cb, &m, err, sizeof err),
                     CL_OK);
    assert_int_equal(m.visited, 2000);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    cl_store_stats st;
    cl_store_stats_get(s, &st);
    assert_true(st.growths >= 1);
    assert_int_equal(count_prefix(s, p5, 4), 1000);
    for (uint64_t i = 1; i < 2000; i += 2)
        expect_present(s, 5, i, i + 1, 100);
    uint8_t p7[4];
    cl_store_u32_be(p7, 7);
    assert_int_equal(count_prefix(s, p7, 4), 10000);
    cl_store_close(s);
}

typedef struct {
    cl_store *s;
    atomic_int stop;
    int failures;
    size_t reads;
} reader_ctx;

static void *reader_thread(void *arg)
{
    reader_ctx *r = arg;
    while (!atomic_load(&r->stop)) {
        cl_store_txn *t;
        char err[CL_ERRLEN];
        if (cl_store_read_begin(r->s, &t, err, sizeof err) != CL_OK) {
            r->failures++;
            continue;
        }
        /* The committed base written before the thread started is always there. */
        uint8_t key[12];
        make_key(key, 4, 0);
        const void *v;
        size_t len;
        if (cl_store_get(t, DB_STATE, key, sizeof key, &v, &len, err, sizeof err) != CL_OK)
            r->failures++;
        cl_store_read_end(t);
        r->reads++;
    }
    return NULL;
}

static void test_growth_with_concurrent_readers(void **state)
{
    cl_store_config c = small_config(1 << 20, 256 << 20);
    cl_store *s = open_store(&c);
    char err[CL_ERRLEN];
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 4, 0, 10, 100);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);

    reader_ctx r = {s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_thread, &r), 0);
    for (int round = 0; round < 4; round++) {
        assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
        put_many(b, 6, (uint64_t)round * 5000, (uint64_t)(round + 1) * 5000, 300);
        assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(r.failures, 0);
    cl_store_stats st;
    cl_store_stats_get(s, &st);
    assert_true(st.growths >= 2);
    expect_present(s, 6, 0, 20000, 300);
    cl_store_close(s);
}

static void test_file_modes(void **state)
{
    mode_t old = umask(022);
    cl_store_config c = small_config(1 << 20, 64 << 20);
    cl_store *s = open_store(&c);
    cl_store_close(s);
    umask(old);
    struct stat st;
    char path[256];
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/state", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_open_errors(void **state)
{
    cl_store_config c = small_config(1 << 20, 64 << 20);
    cl_store *s;
    char err[CL_ERRLEN];
    assert_int_equal(cl_store_open(&s, "", dbs, &c, err, sizeof err), CL_EINVAL);
    static const char *const none[] = {NULL};
    assert_int_equal(cl_store_open(&s, dir, none, &c, err, sizeof err), CL_EINVAL);
    cl_store_config bad = small_config(64 << 20, 1 << 20);
    assert_int_equal(cl_store_open(&s, dir, dbs, &bad, err, sizeof err), CL_EINVAL);
    /* A path whose parent is a regular file. */
    char file[256], below[300];
    snprintf(file, sizeof file, "%s/plain", root);
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(below, sizeof below, "%s/x", file);
    assert_int_equal(cl_store_open(&s, below, dbs, &c, err, sizeof err), CL_EIO);
    assert_non_null(strstr(err, file));
}

static void test_keys(void **state)
{
    uint8_t a[8], b[8];
    cl_store_u64_be(a, 255);
    cl_store_u64_be(b, 256);
    assert_true(memcmp(a, b, 8) < 0);
    assert_int_equal(cl_store_be_u64(b), 256);
    uint8_t c4[4];
    cl_store_u32_be(c4, 0x01020304);
    assert_int_equal(c4[0], 1);
    assert_int_equal(c4[3], 4);
    assert_int_equal(cl_store_be_u32(c4), 0x01020304);

    /* Signed order survives bytewise comparison. */
    const int64_t vals[] = {INT64_MIN, -300, -1, 0, 1, 300, INT64_MAX};
    for (size_t i = 0; i + 1 < sizeof vals / sizeof vals[0]; i++) {
        cl_store_key x, y;
        cl_store_key_init(&x);
        cl_store_key_init(&y);
        cl_store_key_i64(&x, vals[i]);
        cl_store_key_i64(&y, vals[i + 1]);
        assert_true(memcmp(x.data, y.data, 8) < 0);
        cl_store_key_reader r;
        int64_t back;
        cl_store_key_reader_init(&r, x.data, x.len);
        assert_int_equal(cl_store_key_next_i64(&r, &back), CL_OK);
        assert_true(back == vals[i]);
    }

    /* Separators inside strings cannot confuse components. */
    cl_store_key k1, k2;
    cl_store_key_init(&k1);
    cl_store_key_str(&k1, "a|b", 3);
    cl_store_key_str(&k1, "c", 1);
    cl_store_key_init(&k2);
    cl_store_key_str(&k2, "a", 1);
    cl_store_key_str(&k2, "b|c", 3);
    assert_int_equal(k1.len, k2.len);
    assert_true(memcmp(k1.data, k2.data, k1.len) != 0);

    /* Overflow is sticky. */
    cl_store_key big;
    cl_store_key_init(&big);
    char filler[400] = {0};
    cl_store_key_str(&big, filler, sizeof filler);
    assert_true(big.ok);
    cl_store_key_str(&big, filler, 200);
    assert_false(big.ok);
    cl_store_key_u32(&big, 1);
    assert_false(big.ok);
    cl_store_key_init(&big);
    cl_store_key_str(&big, filler, 70000);
    assert_false(big.ok);

    /* Malformed keys are rejected, never over-read. */
    const uint8_t bad[] = {0x00, 0x05, 'a', 'b'};
    cl_store_key_reader r;
    const char *s;
    size_t n;
    cl_store_key_reader_init(&r, bad, sizeof bad);
    assert_int_equal(cl_store_key_next_str(&r, &s, &n), CL_EINVAL);
    uint64_t u;
    assert_int_equal(cl_store_key_next_u64(&r, &u), CL_EINVAL);
    uint32_t u32;
    cl_store_key_reader_init(&r, bad, 3);
    assert_int_equal(cl_store_key_next_u32(&r, &u32), CL_EINVAL);
}

static void test_options(void **state)
{
    static const cl_option *const tables[] = {cl_store_options, NULL};
    cl_config *cfg = cl_config_new("closedloop-test", "Store options.", tables);
    assert_non_null(cfg);
    char err[CL_ERRLEN];
    char *argv[] = {"closedloop-test", "--store.sync=nometasync", "--store.map.initial=2097152",
                    NULL};
    assert_int_equal(cl_config_load(cfg, 3, argv, err, sizeof err), CL_OK);
    cl_store_config c;
    assert_int_equal(cl_store_config_from(&c, cfg, err, sizeof err), CL_OK);
    assert_int_equal(c.sync, CL_STORE_SYNC_NOMETASYNC);
    assert_int_equal(c.map_initial, 2097152);
    assert_int_equal(c.map_max, 17179869184ull);
    assert_int_equal(c.batch_max_ops, 1000);
    assert_int_equal(c.batch_max_ms, 200);

    assert_int_equal(cl_config_set(cfg, "store.sync", "fast", "test", err, sizeof err), CL_OK);
    assert_int_equal(cl_store_config_from(&c, cfg, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "store.sync"));
    assert_non_null(strstr(err, "fast"));
    assert_int_equal(cl_config_set(cfg, "store.sync", "durable", "test", err, sizeof err), CL_OK);
    assert_int_equal(cl_config_set(cfg, "store.map.max", "1048576", "test", err, sizeof err),
                     CL_OK);
    assert_int_equal(cl_store_config_from(&c, cfg, err, sizeof err), CL_EINVAL);
    assert_non_null(strstr(err, "store.map.max"));
    cl_config_free(cfg);

    cl_store_sync sync;
    assert_int_equal(cl_store_parse_sync("nosync", &sync), CL_OK);
    assert_string_equal(cl_store_sync_name(sync), "nosync");
    assert_int_equal(cl_store_parse_sync("NOSYNC", &sync), CL_EINVAL);
}

static void test_prom_export(void **state)
{
    cl_store_config c = small_config(1 << 20, 64 << 20);
    cl_store *s = open_store(&c);
    cl_prom *reg = cl_prom_new();
    char err[CL_ERRLEN];
    assert_int_equal(cl_store_export_prom(s, reg, "join", err, sizeof err), CL_OK);
    cl_store_txn *b;
    assert_int_equal(cl_store_batch_begin(s, &b, err, sizeof err), CL_OK);
    put_many(b, 1, 0, 42, 10);
    assert_int_equal(cl_store_batch_commit(b, err, sizeof err), CL_OK);
    cl_buf out;
    cl_buf_init(&out, 0);
    assert_int_equal(cl_prom_render(reg, &out), CL_OK);
    assert_non_null(strstr(out.data, "closedloop_lmdb_entries{store=\"join\",db=\"state\"} 42\n"));
    assert_non_null(strstr(out.data, "closedloop_lmdb_entries{store=\"join\",db=\"offsets\"} 0\n"));
    assert_non_null(strstr(out.data, "closedloop_lmdb_map_size_bytes{store=\"join\"} 1048576\n"));
    assert_non_null(strstr(out.data, "closedloop_lmdb_map_max_bytes{store=\"join\"} 67108864\n"));
    assert_non_null(strstr(out.data, "closedloop_lmdb_commits_total{store=\"join\"} 1\n"));
    assert_non_null(strstr(out.data, "closedloop_lmdb_map_used_bytes{store=\"join\"} "));
    cl_buf_reset(&out);
    /* Scrapes do not double count. */
    assert_int_equal(cl_prom_render(reg, &out), CL_OK);
    assert_non_null(strstr(out.data, "closedloop_lmdb_commits_total{store=\"join\"} 1\n"));
    cl_store_close(s);
    /* After close the gauges are gone and scraping is safe. */
    cl_buf_reset(&out);
    assert_int_equal(cl_prom_render(reg, &out), CL_OK);
    assert_null(strstr(out.data, "closedloop_lmdb_map_size_bytes"));
    cl_buf_free(&out);
    cl_prom_free(reg);
}

int main(void)
{
    devnull = fopen("/dev/null", "w");
    cl_log_init("test", CL_LOG_WARN, CL_LOG_LOGFMT);
    cl_log_set_stream(devnull);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_batch_commit_and_reopen),
        T(test_time_trigger),
        T(test_map_growth_replays_every_op),
        T(test_full_at_max_applies_nothing),
        T(test_disk_full_at_commit_applies_nothing),
        T(test_reader_check_clears_crashed_reader),
        T(test_prefix_scan),
        T(test_scan_with_writes_and_growth),
        T(test_growth_with_concurrent_readers),
        T(test_file_modes),
        T(test_open_errors),
        T(test_keys),
        T(test_options),
        T(test_prom_export),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fclose(devnull);
    return rc;
}
