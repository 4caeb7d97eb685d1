/*
 * bench_metrics.c — metrics aggregator throughput and report render time.
 *
 *     bench_metrics [records] [dir]
 *     (defaults: 1000000 labeled records, a fresh /tmp dir)
 *
 * Generates `records` labeled examples (about 4 snapshots per opportunity, champion and
 * challenger scores on each, ~5 months of close dates) in memory, applies them to the
 * keyed LMDB state through the worker's own path (cl_aggregate_apply in batches of 1000,
 * store.sync=nosync, so the figure is the aggregator and not the disk), applies them a
 * second time (a full replay: all duplicates), then evaluates the state (every version
 * and window) and renders both reports. Baseline: the same records put into the same
 * store as raw bytes (cl_store_put of the encoded row), i.e. what LMDB alone costs.
 * One line per figure:
 *
 *     metrics.aggregate records=... records_per_s=... baseline_puts_per_s=... ratio=...
 *     metrics.replay records=... records_per_s=...
 *     metrics.evaluate records=... opportunities=... versions=... windows=... seconds=...
 *     metrics.render bytes_won=... bytes_lost=... seconds=...
 */
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics/aggregate.h"
#include "metrics/evaluate.h"
#include "metrics/report.h"
#include "score.h"
#include "store.h"
#include "util.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static uint64_t rng = 88172645463325252ull;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void make(cl_labeled_example *e, uint64_t i)
{
    static const char *stages[] = {"Prospecting", "Qualification", "Proposal", "Negotiation"};
    static const char *segments[] = {"SMB", "Mid", "Enterprise"};
    uint64_t opp = i / 4, k = i % 4;
    cl_labeled_example_init(e);
    cl_snapshot *s = &e->snapshot;
    snprintf(s->opportunity_id, sizeof s->opportunity_id, "006B%011" PRIu64, opp);
    snprintf(e->outcome.opportunity_id, sizeof e->outcome.opportunity_id, "%s", s->opportunity_id);
    snprintf(s->snapshot_id, sizeof s->snapshot_id, "%016" PRIx64 "%016" PRIx64, opp, k);
    snprintf(s->run_id, sizeof s->run_id, "run-%" PRIu64, k);
    snprintf(s->stage, sizeof s->stage, "%s", stages[opp % 4]);
    snprintf(s->segment, sizeof s->segment, "%s", segments[opp % 3]);
    snprintf(s->owner_id, sizeof s->owner_id, "005O%04" PRIu64, opp % 200);
    int32_t close = 20089 + (int32_t)(opp % 150);
    int32_t day = close - 2 - 7 * (int32_t)k;
    s->snapshot_time = (int64_t)day * 86400000LL;
    e->outcome.close_date = close;
    e->days_before_close = close - day;
    double sum = 0;
    for (int c = 0; c < CL_NUM_BUILTINS; c++) {
        s->components[c] = floor(uniform() * 101);
        sum += s->components[c];
    }
    e->outcome.outcome = uniform() < sum / 600 ? CL_OUTCOME_WON : CL_OUTCOME_LOST;
    e->outcome.system_modstamp = e->outcome_version = (int64_t)close * 86400000LL + 1;
    s->n_scores = 2;
    for (int v = 0; v < 2; v++) {
        cl_score_entry *se = &s->scores[v];
        snprintf(se->model, sizeof se->model, "%s", CL_SEED_MODEL);
        se->version = v + 1;
        se->score = round(100 * fmin(100, sum / 6 + (v ? 5 * (uniform() - 0.5) : 0))) / 100;
        se->band = se->score >= 70 ? CL_BAND_HIGH : se->score >= 40 ? CL_BAND_MEDIUM : CL_BAND_LOW;
        se->probability = 1 / (1 + exp(3 - 0.06 * se->score));
    }
}

static int apply_all(cl_store *st, uint64_t n, cl_labeled_example *e, cl_buf *scratch,
                     int raw, char *err, size_t errlen)
{
    cl_store_txn *b = NULL;
    int rc = CL_OK;
    for (uint64_t i = 0; i < n && rc == CL_OK; i++) {
        if (!b && (rc = cl_store_batch_begin(st, &b, err, errlen)) != CL_OK)
            break;
        make(e, i);
        if (raw) {
            cl_metrics_row r;
            rc = cl_metrics_row_from_example(e, NULL, &r, err, errlen);
            cl_buf_reset(scratch);
            if (rc == CL_OK)
                rc = cl_metrics_row_encode(&r, scratch, err, errlen);
            uint8_t key[8];
            cl_store_u64_be(key, i);
            if (rc == CL_OK)
                rc = cl_store_put(b, CL_AGG_DB_ROWS, key, 8, scratch->data, scratch->len, err,
                                  errlen);
        } else {
            cl_aggregate_effect eff;
            rc = cl_aggregate_apply(b, e, NULL, scratch, &eff, NULL, err, errlen);
        }
        if (rc == CL_OK && cl_store_batch_ops(b) >= 1000) {
            rc = cl_store_batch_commit(b, err, errlen);
            b = NULL;
        }
    }
    if (b)
        rc = rc == CL_OK ? cl_store_batch_commit(b, err, errlen) : (cl_store_batch_abort(b), rc);
    return rc;
}

static int open_store(const char *root, const char *name, cl_store **st, char *err,
                      size_t errlen)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    cl_store_config c;
    cl_store_config_defaults(&c);
    c.sync = CL_STORE_SYNC_NOSYNC;
    c.batch_max_ops = 1000000;
    return cl_store_open(st, dir, cl_aggregate_db_names, &c, err, errlen);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    char root[256];
    if (argc > 2)
        snprintf(root, sizeof root, "%s", argv[2]);
    else {
        snprintf(root, sizeof root, "/tmp/cl-bench-metrics-XXXXXX");
        if (!mkdtemp(root))
            return 1;
    }
    cl_log_init("bench", CL_LOG_WARN, CL_LOG_LOGFMT);
    char err[CL_ERRLEN];
    cl_labeled_example *e = malloc(sizeof *e);
    cl_buf scratch;
    cl_buf_init(&scratch, 0);
    cl_store *raw = NULL, *st = NULL;
    int rc = open_store(root, "raw", &raw, err, sizeof err);
    int64_t t0 = cl_mono_ns();
    if (rc == CL_OK)
        rc = apply_all(raw, n, e, &scratch, 1, err, sizeof err);
    double raw_s = (double)(cl_mono_ns() - t0) / 1e9;
    cl_store_close(raw);
    if (rc == CL_OK)
        rc = open_store(root, "state", &st, err, sizeof err);
    t0 = cl_mono_ns();
    if (rc == CL_OK)
        rc = apply_all(st, n, e, &scratch, 0, err, sizeof err);
    double agg_s = (double)(cl_mono_ns() - t0) / 1e9;
    t0 = cl_mono_ns();
    if (rc == CL_OK)
        rc = apply_all(st, n, e, &scratch, 0, err, sizeof err);
    double replay_s = (double)(cl_mono_ns() - t0) / 1e9;
    if (rc == CL_OK)
        printf("metrics.aggregate records=%" PRIu64 " records_per_s=%.0f baseline_puts_per_s=%.0f "
               "ratio=%.2f\nmetrics.replay records=%" PRIu64 " records_per_s=%.0f\n",
               n, (double)n / agg_s, (double)n / raw_s, raw_s / agg_s, n, (double)n / replay_s);

    cl_eval_set *s = NULL;
    cl_model_metrics *m = malloc(sizeof *m);
    cl_store_txn *t = NULL;
    t0 = cl_mono_ns();
    if (rc == CL_OK)
        rc = cl_store_read_begin(st, &t, err, sizeof err);
    cl_eval_options o;
    cl_eval_options_defaults(&o);
    if (rc == CL_OK)
        rc = cl_eval_set_build(t, &o, &s, err, sizeof err);
    if (t)
        cl_store_read_end(t);
    size_t nwin = 0, published = 0;
    cl_metrics_window w[64];
    if (rc == CL_OK) {
        nwin = cl_eval_windows(s, w, 64);
        for (size_t v = 0; v < s->nversions && rc == CL_OK; v++)
            for (size_t k = 0; k < nwin && rc == CL_OK; k++) {
                rc = cl_eval_version_metrics(s, v, &w[k], 0, m, err, sizeof err);
                if (rc == CL_ENOTFOUND)
                    rc = CL_OK;
                else if (rc == CL_OK)
                    published++;
            }
    }
    double eval_s = (double)(cl_mono_ns() - t0) / 1e9;
    if (rc == CL_OK)
        printf("metrics.evaluate records=%" PRIu64 " opportunities=%" PRIu64 " versions=%zu "
               "windows=%zu model_metrics=%zu seconds=%.3f\n",
               n, s->opportunities, s->nversions, nwin, published, eval_s);
    cl_buf won, lost;
    cl_buf_init(&won, 0);
    cl_buf_init(&lost, 0);
    cl_report_options ro;
    cl_report_options_defaults(&ro);
    t0 = cl_mono_ns();
    if (rc == CL_OK)
        rc = cl_report_render(s, &ro, &won, &lost, err, sizeof err);
    double render_s = (double)(cl_mono_ns() - t0) / 1e9;
    if (rc == CL_OK)
        printf("metrics.render bytes_won=%zu bytes_lost=%zu seconds=%.3f\n", won.len, lost.len,
               render_s);
    cl_buf_free(&won);
    cl_buf_free(&lost);
    cl_eval_set_free(s);
    cl_store_close(st);
    cl_buf_free(&scratch);
    free(m);
    free(e);
    if (argc <= 2)
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != CL_OK) {
        fprintf(stderr, "bench_metrics: %s\n", err);
        return 1;
    }
    return 0;
}
