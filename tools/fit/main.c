/*
 * closedloop-fit — fit score weights offline from a CSV of labeled examples.
 *
 * The same solver the refit worker runs (common/fit.h), driven from a file, so that
 * an analyst can try a refit on an export, and so that the interop tests and the
 * benchmark can hold it against scikit-learn on identical data. Output is one JSON
 * object on stdout; errors name the file, line and column and exit 1 (2 for usage).
 *
 * Input: a header line, then one example per line, numbers only (no quoting: a
 * numeric export never needs it, and refusing quotes keeps the reader small and
 * strict). Columns: the label (default "won": 0/1, true/false), optionally a weight
 * and a close date (YYYY-MM-DD or days since 1970-01-01), and the components.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fit.h"
#include "util.h"

#define MAX_LINE (1u << 20)
#define MAX_COLUMNS 256
#define MAX_ROWS ((size_t)200000000)

typedef struct {
    const char *path;
    const char *label;
    const char *weight;
    const char *close_date;
    const char *components; /* comma-separated, NULL = every other column */
    const char *prior;      /* comma-separated champion weights */
    const char *reference_date;
    cl_fit_options fit;
    double half_life;
    int cv_folds;
    int have_c;
    double c;
} options;

typedef struct {
    size_t n, k;
    char *names[CL_FIT_MAX_COMPONENTS];
    double *x; /* column-major */
    uint8_t *won;
    double *weight;
    int32_t *close_day;
} dataset;

static void usage(FILE *out)
{
    fputs("usage: closedloop-fit [options] FILE.csv|-\n"
          "\n"
          "Fits P(won) = sigmoid(a + b * sum_i w_i c_i) (w_i >= 0, sum w_i = 1) or, with\n"
          "--mode unconstrained, plain L2 logistic regression, and prints JSON.\n"
          "\n"
          "  --mode simplex|unconstrained   model (default simplex)\n"
          "  --label COL          0/1 outcome column (default won)\n"
          "  --weight COL         per-example weight column\n"
          "  --close-date COL     close date column (YYYY-MM-DD or day number)\n"
          "  --components A,B,..  component columns (default: all other columns)\n"
          "  --l2 LAMBDA          L2 strength (objective: sum loss + LAMBDA/2 |beta - anchor|^2)\n"
          "  --C C                same as --l2 1/C (scikit-learn's convention)\n"
          "  --prior W1,W2,..     champion weights (simplex): anchor of the L2 term, centre of the cap\n"
          "  --prior-slope B0     anchor slope (default: fitted from the champion score)\n"
          "  --max-change CAP     |w_i - prior_i| <= CAP\n"
          "  --half-life DAYS     recency weighting by close date (needs --close-date)\n"
          "  --reference-date D   age origin for --half-life (default: latest close date)\n"
          "  --cv FOLDS           rolling-origin cross-validation by close date\n"
          "  --tolerance T        Newton-decrement tolerance (default 1e-14, relative)\n"
          "  --max-iterations N   (default 200)\n"
          "  -h, --help\n",
          out);
}

static int split_line(char *line, char **fields, size_t max, size_t *count)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    *count = n;
    return 0;
}

static int find_column(char **header, size_t ncol, const char *name)
{
    for (size_t c = 0; c < ncol; c++)
        if (strcmp(header[c], name) == 0)
            return (int)c;
    return -1;
}

static int parse_label(const char *s, uint8_t *out)
{
    int b;
    if (cl_parse_bool(s, &b) == CL_OK) {
        *out = (uint8_t)(b != 0);
        return CL_OK;
    }
    return CL_EINVAL;
}

static int parse_day(const char *s, int32_t *out)
{
    if (cl_parse_date(s, out) == CL_OK)
        return CL_OK;
    int64_t v;
    if (cl_parse_int64(s, &v) == CL_OK && v >= INT32_MIN && v <= INT32_MAX) {
        *out = (int32_t)v;
        return CL_OK;
    }
    return CL_EINVAL;
}

/* Grows the per-row arrays to hold at least `need` rows. */
static int grow(dataset *ds, double **cols, size_t *cap, size_t need, int want_weight,
                int want_day)
{
    if (need <= *cap)
        return CL_OK;
    size_t nc = *cap ? *cap * 2 : 4096;
    for (size_t j = 0; j < ds->k; j++) {
        double *p = realloc(cols[j], nc * sizeof *p);
        if (!p)
            return CL_ENOMEM;
        cols[j] = p;
    }
    uint8_t *w = realloc(ds->won, nc);
    if (!w)
        return CL_ENOMEM;
    ds->won = w;
    if (want_weight) {
        double *p = realloc(ds->weight, nc * sizeof *p);
        if (!p)
            return CL_ENOMEM;
        ds->weight = p;
    }
    if (want_day) {
        int32_t *p = realloc(ds->close_day, nc * sizeof *p);
        if (!p)
            return CL_ENOMEM;
        ds->close_day = p;
    }
    *cap = nc;
    return CL_OK;
}

static void dataset_free(dataset *ds)
{
    for (size_t j = 0; j < ds->k; j++)
        free(ds->names[j]);
    free(ds->x);
    free(ds->won);
    free(ds->weight);
    free(ds->close_day);
}

static int read_dataset(const options *o, dataset *ds, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    const char *name = strcmp(o->path, "-") == 0 ? "<stdin>" : o->path;
    FILE *f = strcmp(o->path, "-") == 0 ? stdin : fopen(o->path, "r");
    if (!f)
        return cl_seterr(err, errlen, CL_EIO, "%s: %s", name, strerror(errno));
    char *line = NULL, *header_copy = NULL;
    size_t linecap = 0, lineno = 0, cap = 0;
    double *cols[CL_FIT_MAX_COMPONENTS] = {0};
    int rc = CL_OK;
    char *header[MAX_COLUMNS], *fields[MAX_COLUMNS];
    size_t ncol = 0;
    int label_col = -1, weight_col = -1, day_col = -1, comp_col[CL_FIT_MAX_COMPONENTS];
    ssize_t len;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        lineno++;
        if ((size_t)len > MAX_LINE) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: line longer than %u bytes", name,
                           lineno, MAX_LINE);
            goto done;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (memchr(line, '"', (size_t)len)) {
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "%s:%zu: quoted fields are not supported (numbers only)", name,
                           lineno);
            goto done;
        }
        if (!header_copy) {
            header_copy = strdup(line);
            if (!header_copy || split_line(header_copy, header, MAX_COLUMNS, &ncol) != 0) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: header has more than %d columns",
                               name, lineno, MAX_COLUMNS);
                goto done;
            }
            label_col = find_column(header, ncol, o->label);
            if (label_col < 0) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "%s:1: no label column \"%s\"", name,
                               o->label);
                goto done;
            }
            if (o->weight && (weight_col = find_column(header, ncol, o->weight)) < 0) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "%s:1: no weight column \"%s\"", name,
                               o->weight);
                goto done;
            }
            if (o->close_date && (day_col = find_column(header, ncol, o->close_date)) < 0) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "%s:1: no close date column \"%s\"", name,
                               o->close_date);
                goto done;
            }
            if (o->components) {
                char *list = strdup(o->components), *save = NULL;
                if (!list) {
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
                    goto done;
                }
                for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                    int c = find_column(header, ncol, t);
                    if (c < 0 || ds->k == CL_FIT_MAX_COMPONENTS) {
                        rc = cl_seterr(err, errlen, CL_EINVAL,
                                       c < 0 ? "%s:1: no component column \"%s\""
                                             : "%s:1: too many components at \"%s\"",
                                       name, t);
                        free(list);
                        goto done;
                    }
                    comp_col[ds->k] = c;
                    ds->names[ds->k++] = strdup(t);
                }
                free(list);
            } else {
                for (size_t c = 0; c < ncol; c++) {
                    if ((int)c == label_col || (int)c == weight_col || (int)c == day_col)
                        continue;
                    if (ds->k == CL_FIT_MAX_COMPONENTS) {
                        rc = cl_seterr(err, errlen, CL_EINVAL, "%s:1: more than %d components",
                                       name, CL_FIT_MAX_COMPONENTS);
                        goto done;
                    }
                    comp_col[ds->k] = (int)c;
                    ds->names[ds->k++] = strdup(header[c]);
                }
            }
            for (size_t j = 0; j < ds->k; j++)
                if (!ds->names[j]) {
                    rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
                    goto done;
                }
            if (ds->k == 0) {
                rc = cl_seterr(err, errlen, CL_EINVAL, "%s:1: no component columns", name);
                goto done;
            }
            continue;
        }
        size_t nf;
        if (split_line(line, fields, MAX_COLUMNS, &nf) != 0 || nf != ncol) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: expected %zu fields", name, lineno,
                           ncol);
            goto done;
        }
        if (ds->n == MAX_ROWS) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: more than %zu rows", name, lineno,
                           MAX_ROWS);
            goto done;
        }
        if (grow(ds, cols, &cap, ds->n + 1, weight_col >= 0, day_col >= 0) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "%s:%zu: out of memory", name, lineno);
            goto done;
        }
        size_t i = ds->n;
        if (parse_label(fields[label_col], &ds->won[i]) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: column %s: \"%.40s\" is not 0/1", name,
                           lineno, o->label, fields[label_col]);
            goto done;
        }
        if (weight_col >= 0 && (cl_parse_double(fields[weight_col], &ds->weight[i]) != CL_OK ||
                                ds->weight[i] < 0)) {
            rc = cl_seterr(err, errlen, CL_EINVAL,
                           "%s:%zu: column %s: \"%.40s\" is not a weight >= 0", name, lineno,
                           o->weight, fields[weight_col]);
            goto done;
        }
        if (day_col >= 0 && parse_day(fields[day_col], &ds->close_day[i]) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s:%zu: column %s: \"%.40s\" is not a date",
                           name, lineno, o->close_date, fields[day_col]);
            goto done;
        }
        for (size_t j = 0; j < ds->k; j++)
            if (cl_parse_double(fields[comp_col[j]], &cols[j][i]) != CL_OK) {
                rc = cl_seterr(err, errlen, CL_EINVAL,
                               "%s:%zu: column %s: \"%.40s\" is not a finite number", name,
                               lineno, ds->names[j], fields[comp_col[j]]);
                goto done;
            }
        ds->n++;
    }
    if (ferror(f)) {
        rc = cl_seterr(err, errlen, CL_EIO, "%s: read error: %s", name, strerror(errno));
        goto done;
    }
    if (ds->n == 0) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: no examples", name);
        goto done;
    }
    ds->x = malloc(ds->n * ds->k * sizeof *ds->x);
    if (!ds->x) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory for %zu rows", name, ds->n);
        goto done;
    }
    for (size_t j = 0; j < ds->k; j++)
        memcpy(ds->x + j * ds->n, cols[j], ds->n * sizeof *ds->x);
done:
    for (size_t j = 0; j < CL_FIT_MAX_COMPONENTS; j++)
        free(cols[j]);
    free(line);
    free(header_copy);
    if (f != stdin)
        fclose(f);
    return rc;
}

static int parse_list(const char *s, double *out, size_t want, char *err, size_t errlen)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    size_t n = 0;
    int rc = CL_OK;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == want || cl_parse_double(t, &out[n]) != CL_OK) {
            rc = cl_seterr(err, errlen, CL_EINVAL, "--prior: \"%.40s\" is not a number, or more "
                           "than %zu values", t, want);
            break;
        }
        n++;
    }
    if (rc == CL_OK && n != want)
        rc = cl_seterr(err, errlen, CL_EINVAL, "--prior: %zu values for %zu components", n, want);
    free(copy);
    return rc;
}

static json_t *fold_json(const cl_fold_metrics *m)
{
    char start[11], end[11];
    cl_format_date(m->window.test_start, start);
    cl_format_date(m->window.test_end, end);
    return json_pack("{s:s, s:s, s:I, s:I, s:b, s:f, s:f, s:f, s:f, s:f, s:f}", "test_start",
                     start, "test_end", end, "n_train", (json_int_t)m->n_train, "n_test",
                     (json_int_t)m->n_test, "evaluated", m->evaluated, "auc", m->auc, "brier",
                     m->brier, "log_loss", m->log_loss, "ece", m->ece, "precision_high",
                     m->precision_high, "n_high", m->n_high);
}

static int parse_number_arg(const char *flag, const char *s, double *out)
{
    if (cl_parse_double(s, out) != CL_OK) {
        fprintf(stderr, "closedloop-fit: %s: \"%s\" is not a number\n", flag, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    o.label = "won";
    cl_fit_options_default(&o.fit);
    static const struct option longopts[] = {
        {"mode", required_argument, 0, 'm'},        {"label", required_argument, 0, 'L'},
        {"weight", required_argument, 0, 'w'},      {"close-date", required_argument, 0, 'd'},
        {"components", required_argument, 0, 'k'},  {"l2", required_argument, 0, 'l'},
        {"C", required_argument, 0, 'C'},           {"prior", required_argument, 0, 'p'},
        {"prior-slope", required_argument, 0, 'b'}, {"max-change", required_argument, 0, 'x'},
        {"half-life", required_argument, 0, 'H'},   {"reference-date", required_argument, 0, 'r'},
        {"cv", required_argument, 0, 'v'},          {"tolerance", required_argument, 0, 't'},
        {"max-iterations", required_argument, 0, 'i'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    double num;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "simplex") == 0)
                o.fit.mode = CL_FIT_SIMPLEX;
            else if (strcmp(optarg, "unconstrained") == 0)
                o.fit.mode = CL_FIT_UNCONSTRAINED;
            else {
                fprintf(stderr, "closedloop-fit: --mode: \"%s\" (want simplex|unconstrained)\n",
                        optarg);
                return 2;
            }
            break;
        case 'L': o.label = optarg; break;
        case 'w': o.weight = optarg; break;
        case 'd': o.close_date = optarg; break;
        case 'k': o.components = optarg; break;
        case 'p': o.prior = optarg; break;
        case 'r': o.reference_date = optarg; break;
        case 'l':
            if (parse_number_arg("--l2", optarg, &o.fit.l2)) return 2;
            break;
        case 'C':
            if (parse_number_arg("--C", optarg, &o.c) || !(o.c > 0)) {
                fprintf(stderr, "closedloop-fit: --C must be > 0\n");
                return 2;
            }
            o.have_c = 1;
            break;
        case 'b':
            if (parse_number_arg("--prior-slope", optarg, &o.fit.prior_slope)) return 2;
            break;
        case 'x':
            if (parse_number_arg("--max-change", optarg, &o.fit.max_change)) return 2;
            break;
        case 'H':
            if (parse_number_arg("--half-life", optarg, &o.half_life) || !(o.half_life > 0)) {
                fprintf(stderr, "closedloop-fit: --half-life must be > 0 days\n");
                return 2;
            }
            break;
        case 't':
            if (parse_number_arg("--tolerance", optarg, &o.fit.tolerance)) return 2;
            break;
        case 'v':
        case 'i':
            if (parse_number_arg(ch == 'v' ? "--cv" : "--max-iterations", optarg, &num) ||
                num < 1 || num > (ch == 'v' ? CL_CV_MAX_FOLDS : 100000) || num != floor(num)) {
                fprintf(stderr, "closedloop-fit: %s: \"%s\" out of range\n",
                        ch == 'v' ? "--cv" : "--max-iterations", optarg);
                return 2;
            }
            if (ch == 'v')
                o.cv_folds = (int)num;
            else
                o.fit.max_iterations = (int)num;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    o.path = argv[optind];
    if (o.have_c)
        o.fit.l2 = 1.0 / o.c;
    if ((o.half_life > 0 || o.cv_folds > 0) && !o.close_date) {
        fprintf(stderr, "closedloop-fit: --half-life and --cv need --close-date\n");
        return 2;
    }

    char err[CL_ERRLEN];
    dataset ds;
    if (read_dataset(&o, &ds, err, sizeof err) != CL_OK) {
        fprintf(stderr, "closedloop-fit: %s\n", err);
        dataset_free(&ds);
        return 1;
    }
    int status = 1;
    double prior[CL_FIT_MAX_COMPONENTS];
    double *train_weight = NULL;
    json_t *out = NULL;
    if (o.prior) {
        if (parse_list(o.prior, prior, ds.k, err, sizeof err) != CL_OK)
            goto fail;
        o.fit.prior_weights = prior;
    }
    const double *weights = ds.weight;
    int32_t reference = 0;
    if (o.half_life > 0) {
        reference = ds.close_day[0];
        for (size_t i = 1; i < ds.n; i++)
            if (ds.close_day[i] > reference)
                reference = ds.close_day[i];
        if (o.reference_date && cl_parse_date(o.reference_date, &reference) != CL_OK) {
            cl_seterr(err, sizeof err, CL_EINVAL, "--reference-date: \"%s\" is not YYYY-MM-DD",
                      o.reference_date);
            goto fail;
        }
        train_weight = malloc(ds.n * sizeof *train_weight);
        if (!train_weight) {
            cl_seterr(err, sizeof err, CL_ENOMEM, "out of memory");
            goto fail;
        }
        if (cl_fit_recency_weights(ds.close_day, ds.weight, ds.n, reference, o.half_life,
                                   train_weight, err, sizeof err) != CL_OK)
            goto fail;
        weights = train_weight;
    }
    cl_fit_data data = {ds.n, ds.k, ds.x, ds.won, weights};
    cl_fit_result r;
    int64_t t0 = cl_mono_ns();
    if (cl_fit(&data, &o.fit, &r, err, sizeof err) != CL_OK)
        goto fail;
    double seconds = (double)(cl_mono_ns() - t0) / 1e9;

    out = json_object();
    json_t *coef = json_object(), *w = json_object(), *bound = json_object();
    for (size_t j = 0; j < ds.k; j++) {
        json_object_set_new(coef, ds.names[j], json_real(r.coef[j]));
        if (o.fit.mode == CL_FIT_SIMPLEX) {
            json_object_set_new(w, ds.names[j], json_real(r.weights[j]));
            json_object_set_new(bound, ds.names[j],
                                json_string(r.at_bound[j] < 0   ? "lower"
                                            : r.at_bound[j] > 0 ? "upper"
                                                                : "free"));
        }
    }
    json_object_set_new(out, "mode",
                        json_string(o.fit.mode == CL_FIT_SIMPLEX ? "simplex" : "unconstrained"));
    json_object_set_new(out, "n", json_integer((json_int_t)ds.n));
    json_object_set_new(out, "n_won", json_integer((json_int_t)r.n_won));
    json_object_set_new(out, "n_lost", json_integer((json_int_t)r.n_lost));
    json_object_set_new(out, "weight_sum", json_real(r.weight_sum));
    json_object_set_new(out, "effective_n", json_real(r.effective_n));
    json_object_set_new(out, "l2", json_real(o.fit.l2));
    json_object_set_new(out, "intercept", json_real(r.intercept));
    json_object_set_new(out, "coef", coef);
    if (o.fit.mode == CL_FIT_SIMPLEX) {
        json_object_set_new(out, "slope", json_real(r.slope));
        json_object_set_new(out, "weights", w);
        json_object_set_new(out, "at_bound", bound);
        json_object_set_new(out, "anchor_slope", json_real(r.anchor_slope));
    } else {
        json_decref(w);
        json_decref(bound);
    }
    json_object_set_new(out, "objective", json_real(r.objective));
    json_object_set_new(out, "log_loss", json_real(r.log_loss));
    json_object_set_new(out, "iterations", json_integer(r.iterations));
    json_object_set_new(out, "newton_decrement", json_real(r.newton_decrement));
    json_object_set_new(out, "fit_seconds", json_real(seconds));
    if (o.half_life > 0) {
        char day[11];
        cl_format_date(reference, day);
        json_object_set_new(out, "half_life_days", json_real(o.half_life));
        json_object_set_new(out, "reference_date", json_string(day));
    }
    if (o.cv_folds > 0) {
        cl_cv_options cv;
        cl_cv_options_default(&cv);
        cv.folds = (size_t)o.cv_folds;
        cv.half_life_days = o.half_life;
        cl_fold_metrics folds[CL_CV_MAX_FOLDS], champion[CL_CV_MAX_FOLDS];
        size_t nf, nc = 0;
        cl_fit_data base = {ds.n, ds.k, ds.x, ds.won, ds.weight};
        if (cl_fit_cross_validate(&base, ds.close_day, &cv, &o.fit, NULL, folds, &nf, err,
                                  sizeof err) != CL_OK)
            goto fail;
        if (o.fit.prior_weights &&
            cl_fit_cross_validate(&base, ds.close_day, &cv, &o.fit, prior, champion, &nc, err,
                                  sizeof err) != CL_OK)
            goto fail;
        json_t *arr = json_array(), *carr = json_array();
        for (size_t f = 0; f < nf; f++)
            json_array_append_new(arr, fold_json(&folds[f]));
        for (size_t f = 0; f < nc; f++)
            json_array_append_new(carr, fold_json(&champion[f]));
        json_object_set_new(out, "cv", arr);
        if (nc > 0)
            json_object_set_new(out, "cv_champion", carr);
        else
            json_decref(carr);
    }
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!text) {
        cl_seterr(err, sizeof err, CL_ENOMEM, "cannot serialize the result");
        goto fail;
    }
    puts(text);
    free(text);
    status = 0;
    goto cleanup;
fail:
    fprintf(stderr, "closedloop-fit: %s\n", err);
cleanup:
    json_decref(out);
    free(train_weight);
    dataset_free(&ds);
    return status;
}
