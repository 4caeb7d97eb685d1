/*
 * bench_store.c — LMDB store throughput: batched puts and point gets, in ops/s.
 *
 *     bench_store [keys] [value_bytes] [batch_ops] [dir]
 *     (defaults: 1000000 keys, 300-byte values, 1000 ops per batch, a fresh /tmp dir)
 *
 * For each sync mode (durable, nosync) it writes `keys` keys in random order (8-byte
 * big-endian hashes, as the join worker's keys are spread) in batches through the same
 * replayable-batch path the workers use, starting from a 64 MiB map so growth is part of
 * the figure, then reads every key back in another random order. One line per figure:
 *
 *     store.put sync=durable keys=1000000 value_bytes=300 batch_ops=1000 ops_per_s=...
 *     store.get sync=durable keys=1000000 value_bytes=300 ops_per_s=...
 *
 * Results are not committed from here: the lead's bench harness records them.
 */
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "util.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void key_of(uint64_t i, uint8_t out[8])
{
    cl_store_u64_be(out, cl_hash64(&i, sizeof i, 0x5eed));
}

static int run(const char *dir, cl_store_sync sync, uint64_t keys, size_t vlen, uint64_t batch)
{
    static const char *const dbs[] = {"bench", NULL};
    cl_store_config cfg;
    cl_store_config_defaults(&cfg);
    cfg.sync = sync;
    cfg.batch_max_ops = batch;
    cfg.batch_max_ms = 1000000;
    cfg.map_initial = 64ull << 20;
    cfg.map_max = 64ull << 30;
    char err[CL_ERRLEN];
    cl_store *s;
    if (cl_store_open(&s, dir, dbs, &cfg, err, sizeof err) != CL_OK) {
        fprintf(stderr, "bench_store: %s\n", err);
        return 1;
    }
    char *value = malloc(vlen ? vlen : 1);
    if (!value) return 1;
    for (size_t j = 0; j < vlen; j++)
        value[j] = (char)('a' + j % 26);

    int64_t t0 = cl_mono_ns();
    cl_store_txn *b = NULL;
    for (uint64_t i = 0; i < keys; i++) {
        if (!b && cl_store_batch_begin(s, &b, err, sizeof err) != CL_OK) goto fail;
        uint8_t k[8];
        key_of(i, k);
        memcpy(value, &i, vlen < sizeof i ? vlen : sizeof i);
        if (cl_store_put(b, 0, k, sizeof k, value, vlen, err, sizeof err) != CL_OK) goto fail;
        if (cl_store_batch_should_commit(b)) {
            int rc = cl_store_batch_commit(b, err, sizeof err);
            b = NULL;
            if (rc != CL_OK) goto fail;
        }
    }
    if (b) {
        int rc = cl_store_batch_commit(b, err, sizeof err);
        b = NULL;
        if (rc != CL_OK) goto fail;
    }
    double put_s = (double)(cl_mono_ns() - t0) / 1e9;

    t0 = cl_mono_ns();
    uint64_t found = 0;
    cl_store_txn *t = NULL;
    for (uint64_t n = 0; n < keys; n++) {
        if (n % 10000 == 0) {
            cl_store_read_end(t);
            if (cl_store_read_begin(s, &t, err, sizeof err) != CL_OK) goto fail;
        }
        uint64_t i = (n * 2654435761u + 12345) % keys; /* a permutation: 2654435761 is prime */
        uint8_t k[8];
        key_of(i, k);
        const void *v;
        size_t len;
        if (cl_store_get(t, 0, k, sizeof k, &v, &len, err, sizeof err) == CL_OK) found++;
    }
    cl_store_read_end(t);
    double get_s = (double)(cl_mono_ns() - t0) / 1e9;

    cl_store_stats st;
    cl_store_stats_get(s, &st);
    printf("store.put sync=%s keys=%" PRIu64 " value_bytes=%zu batch_ops=%" PRIu64
           " ops_per_s=%.0f map_used_bytes=%" PRIu64 " growths=%" PRIu64 "\n",
           cl_store_sync_name(sync), keys, vlen, batch, (double)keys / put_s, st.map_used,
           st.growths);
    printf("store.get sync=%s keys=%" PRIu64 " value_bytes=%zu ops_per_s=%.0f found=%" PRIu64 "\n",
           cl_store_sync_name(sync), keys, vlen, (double)keys / get_s, found);
    fflush(stdout);
    free(value);
    cl_store_close(s);
    return 0;
fail:
    fprintf(stderr, "bench_store: %s\n", err);
    cl_store_batch_abort(b);
    free(value);
    cl_store_close(s);
    return 1;
}

int main(int argc, char **argv)
{
    int64_t keys = 1000000, vlen = 300, batch = 1000;
    if ((argc > 1 && (cl_parse_int64(argv[1], &keys) != CL_OK || keys < 1)) ||
        (argc > 2 && (cl_parse_int64(argv[2], &vlen) != CL_OK || vlen < 0 || vlen > 1 << 20)) ||
        (argc > 3 && (cl_parse_int64(argv[3], &batch) != CL_OK || batch < 1))) {
        fprintf(stderr, "usage: bench_store [keys] [value_bytes] [batch_ops] [dir]\n");
        return 2;
    }
    cl_log_init("bench_store", CL_LOG_WARN, CL_LOG_LOGFMT);
    char root[256];
    if (argc > 4) {
        snprintf(root, sizeof root, "%s", argv[4]);
    } else {
        snprintf(root, sizeof root, "/tmp/cl-bench-store-XXXXXX");
        if (!mkdtemp(root)) {
            perror("mkdtemp");
            return 1;
        }
    }
    const cl_store_sync modes[] = {CL_STORE_SYNC_DURABLE, CL_STORE_SYNC_NOSYNC};
    int rc = 0;
    for (size_t m = 0; m < 2 && rc == 0; m++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, cl_store_sync_name(modes[m]));
        rc = run(dir, modes[m], (uint64_t)keys, (size_t)vlen, (uint64_t)batch);
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (argc <= 4) remove(root);
    return rc;
}
