/*
 * bench_refit.c — one refit cycle of closedloop-refit at scale, stage by stage.
 *
 *   bench_refit [--n 1000000] [--state DIR] [--csv PATH] [--seed 1]
 *
 * Draws n closed opportunities (one snapshot each, six components 0..100, labels from
 * a known model whose weights differ from the seed's), stores them in a fresh LMDB
 * training set through the labeled consumer rule (as the worker does), then times the
 * stages of a cycle: loading the rows from LMDB, and cl_refit_run (selection, the
 * capped simplex fit, rolling-origin validation of the refit and of the champion on 5
 * folds; discovery off, as it multiplies the fits by 2 x 20 per candidate). With
 * --csv it also writes the design (won, six components) so bench_refit.py can time
 * scikit-learn on exactly the same data in the same run. Output: "name value" lines.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "avro.h"
#include "refit/refit.h"
#include "refit/training_set.h"
#include "score.h"
#include "util.h"

static uint64_t rng_state = 1;

static double uniform(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static const double TRUTH[6] = {0.30, 0.05, 0.10, 0.35, 0.20, 0.00};

int main(int argc, char **argv)
{
    size_t n = 1000000;
    const char *state = "/tmp/bench_refit_state";
    const char *csv = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--state") == 0)
            state = argv[i + 1];
        else if (strcmp(argv[i], "--csv") == 0)
            csv = argv[i + 1];
        else if (strcmp(argv[i], "--seed") == 0)
            rng_state = strtoull(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "bench_refit: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char err[CL_ERRLEN];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", state);
    if (system(cmd) != 0)
        return 1;
    cl_avro_schemas *schemas;
    if (cl_avro_schemas_load(CL_DEFAULT_SCHEMA_DIR, &schemas, err, sizeof err) != CL_OK) {
        fprintf(stderr, "bench_refit: %s\n", err);
        return 1;
    }
    cl_store_config sc;
    cl_store_config_defaults(&sc);
    sc.sync = CL_STORE_SYNC_NOSYNC;
    cl_training_set *ts;
    if (cl_training_set_open(&ts, state, &sc, schemas, err, sizeof err) != CL_OK) {
        fprintf(stderr, "bench_refit: %s\n", err);
        return 1;
    }
    FILE *out = csv ? fopen(csv, "w") : NULL;
    if (csv && !out) {
        perror(csv);
        return 1;
    }
    if (out)
        fprintf(out, "won,speed_to_close,largest_deal,product_mix,upsell_instances,win_rate,"
                     "recency\n");
    cl_labeled_example *e = malloc(sizeof *e);
    int64_t t0 = cl_mono_ns();
    cl_store_txn *b = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!b && cl_store_batch_begin(cl_training_set_store(ts), &b, err, sizeof err) != CL_OK)
            goto fail;
        cl_labeled_example_init(e);
        cl_snapshot *s = &e->snapshot;
        snprintf(s->opportunity_id, sizeof s->opportunity_id, "006B%014zu", i);
        int32_t close = 19000 + (int32_t)(1460.0 * (double)i / (double)n);
        snprintf(s->run_id, sizeof s->run_id, "run-%d", close - 14);
        cl_snapshot_id(s->run_id, s->opportunity_id, s->snapshot_id, NULL, 0);
        s->snapshot_time = (int64_t)(close - 14) * 86400000LL;
        snprintf(s->stage, sizeof s->stage, "Proposal");
        s->created_date = close - 60;
        s->expected_close_date = close;
        double score = 0;
        for (int j = 0; j < 6; j++) {
            s->components[j] = round(10000 * uniform()) / 100;
            score += TRUTH[j] * s->components[j];
        }
        int won = uniform() < 1 / (1 + exp(-(-4.0 + 0.08 * score)));
        cl_outcome *o = &e->outcome;
        memcpy(o->opportunity_id, s->opportunity_id, sizeof o->opportunity_id);
        o->outcome = won ? CL_OUTCOME_WON : CL_OUTCOME_LOST;
        snprintf(o->stage_name, sizeof o->stage_name, "%s", won ? "Closed Won" : "Closed Lost");
        o->close_date = close;
        o->created_date = close - 60;
        o->days_to_close = 60;
        o->system_modstamp = o->ingested_at = e->outcome_version = e->joined_at = 1700000000000;
        e->days_before_close = 14;
        cl_ts_effect eff;
        if (cl_training_set_apply(ts, b, s->opportunity_id, e, &eff, err, sizeof err) != CL_OK)
            goto fail;
        if (out) {
            fprintf(out, "%d", won);
            for (int j = 0; j < 6; j++)
                fprintf(out, ",%.2f", s->components[j]);
            fputc('\n', out);
        }
        if (cl_store_batch_ops(b) >= 20000) {
            if (cl_store_batch_commit(b, err, sizeof err) != CL_OK)
                goto fail;
            b = NULL;
        }
    }
    if (b && cl_store_batch_commit(b, err, sizeof err) != CL_OK)
        goto fail;
    if (out)
        fclose(out);
    printf("refit_examples %zu\n", n);
    printf("refit_store_seconds %.3f\n", (double)(cl_mono_ns() - t0) / 1e9);

    cl_weight_config *champ = malloc(sizeof *champ);
    cl_weight_config_seed(champ, 0);
    cl_refit_options o;
    cl_refit_options_default(&o);
    o.discover = 0;
    const char *cat[CL_ROWS_MAX_SOURCES], *num[CL_ROWS_MAX_SOURCES];
    cl_rows_spec spec;
    if (cl_refit_rows_spec(&o, champ, NULL, &spec, cat, num, err, sizeof err) != CL_OK)
        goto fail;
    t0 = cl_mono_ns();
    cl_training_rows rows;
    if (cl_training_rows_load(ts, &spec, &rows, NULL, err, sizeof err) != CL_OK)
        goto fail;
    double load_s = (double)(cl_mono_ns() - t0) / 1e9;
    t0 = cl_mono_ns();
    cl_refit_result res;
    if (cl_refit_run(&rows, champ, &o, 2, 0, &res, err, sizeof err) != CL_OK)
        goto fail;
    double run_s = (double)(cl_mono_ns() - t0) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("refit_load_rows_seconds %.3f\n", load_s);
    printf("refit_run_seconds %.3f\n", run_s);
    printf("refit_cycle_seconds %.3f\n", load_s + run_s);
    printf("refit_outcome %s\n", cl_refit_outcome_name(res.outcome));
    printf("refit_folds_evaluated %zu\n", res.folds_evaluated);
    printf("refit_validation_auc %.5f\n", res.challenger_cv.auc);
    printf("refit_champion_validation_auc %.5f\n", res.champion_cv.auc);
    if (res.config)
        for (size_t j = 0; j < res.config->weights.n; j++)
            printf("refit_weight_%s %.5f\n", res.config->weights.items[j].component,
                   res.config->weights.items[j].weight);
    printf("refit_peak_rss_mib %.1f\n", (double)ru.ru_maxrss / 1024.0);
    cl_refit_result_free(&res);
    cl_training_rows_free(&rows);
    cl_training_set_close(ts);
    cl_avro_schemas_free(schemas);
    free(champ);
    free(e);
    if (system(cmd) != 0)
        return 1;
    return 0;
fail:
    fprintf(stderr, "bench_refit: %s\n", err);
    return 1;
}
