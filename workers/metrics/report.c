/*
 * report.c — Closed Won / Closed Lost analysis pages (see report.h).
 *
 * Rendering appends to a cl_buf; every append can fail only by exceeding the buffer's
 * limit, so the functions below accumulate the first failure in `rc` and check it once
 * at the end instead of after every line.
 */
#include "report.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "score.h"

#define MONTHS_SHOWN 24
#define GROUP_ROWS 15

void cl_report_options_defaults(cl_report_options *o)
{
    memset(o, 0, sizeof *o);
    o->model = CL_SEED_MODEL;
    cl_pattern_options_defaults(&o->patterns);
}

int cl_report_check_salesforce_url(const char *url, char *err, size_t errlen)
{
    if (!url || !url[0])
        return CL_OK;
    const char *p;
    if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else
        goto bad;
    size_t host = 0;
    while (isalnum((unsigned char)p[host]) || p[host] == '.' || p[host] == '-')
        host++;
    if (host == 0 || host > 253)
        goto bad;
    p += host;
    if (*p == ':') {
        size_t d = 0;
        p++;
        while (isdigit((unsigned char)p[d]))
            d++;
        if (d == 0 || d > 5)
            goto bad;
        p += d;
    }
    if (*p == '/')
        p++;
    if (*p)
        goto bad;
    return CL_OK;
bad:
    return cl_seterr(err, errlen, CL_EINVAL,
                     "metrics.salesforce.instance.url '%.200s' is not http(s)://host[:port] "
                     "(e.g. https://acme.my.salesforce.com)",
                     url);
}

/* ---- output helpers ---------------------------------------------------------------- */

typedef struct {
    cl_buf *b;
    int rc;
} out_t;

static void put(out_t *o, const char *s)
{
    if (o->rc == CL_OK)
        o->rc = cl_buf_append(o->b, s, strlen(s));
}

static void putf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out_t *o, const char *fmt, ...)
{
    if (o->rc != CL_OK)
        return;
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        o->rc = CL_EINVAL;
    else
        o->rc = cl_buf_append(o->b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of a valid UTF-8 sequence at s (1..4), 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return n;
}

int cl_html_escape(cl_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int rc = CL_OK;
    while (*p && rc == CL_OK) {
        const char *rep = NULL;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep) {
            rc = cl_buf_append(b, rep, strlen(rep));
            p++;
            continue;
        }
        if (*p < 0x20 || *p == 0x7F) {
            /* Control characters are not allowed in XML and mean nothing on a page. */
            rc = cl_buf_append(b, " ", 1);
            p++;
            continue;
        }
        size_t n = utf8_len(p);
        if (n == 0) {
            rc = cl_buf_append(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
            p++;
            continue;
        }
        rc = cl_buf_append(b, p, n);
        p += n;
    }
    return rc;
}

static void esc(out_t *o, const char *s)
{
    if (o->rc == CL_OK)
        o->rc = cl_html_escape(o->b, s);
}

static void fmt_count(char *out, size_t len, int64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, v < 0 ? -v : v);
    size_t n = strlen(tmp), j = 0;
    if (v < 0 && j + 1 < len)
        out[j++] = '-';
    for (size_t i = 0; i < n && j + 1 < len; i++) {
        out[j++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n && j + 1 < len)
            out[j++] = ',';
    }
    out[j] = '\0';
}

/* Opportunity id, linked to Salesforce when configured. */
static void opp_link(out_t *o, const char *url, const char *id)
{
    if (!url || !url[0]) {
        put(o, "<code>");
        esc(o, id);
        put(o, "</code>");
        return;
    }
    size_t ul = strlen(url);
    put(o, "<a href=\"");
    /* url was validated (host and port only); drop a trailing '/' */
    char base[300];
    snprintf(base, sizeof base, "%.*s", (int)(ul && url[ul - 1] == '/' ? ul - 1 : ul), url);
    esc(o, base);
    put(o, "/lightning/r/Opportunity/");
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_')
            putf(o, "%c", *p);
        else
            putf(o, "%%%02X", *p);
    }
    put(o, "/view\"><code>");
    esc(o, id);
    put(o, "</code></a>");
}

static const char *css =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:0;"
    "color:#1f2933;background:#f7f8fa}"
    "main{max-width:1100px;margin:0 auto;padding:24px}"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px "
    "solid #d9dee5;padding-bottom:4px}"
    "p.lead{color:#52606d;margin:0 0 16px}p.note{color:#52606d;font-size:13px}"
    ".cards{display:flex;flex-wrap:wrap;gap:12px}"
    ".card{background:#fff;border:1px solid #d9dee5;border-radius:8px;padding:12px 16px;"
    "min-width:180px;flex:1}"
    ".card .v{font-size:26px;font-weight:600}.card .l{font-size:13px;color:#52606d}"
    "table{border-collapse:collapse;background:#fff;width:100%;font-size:14px;margin:8px 0}"
    "th,td{border:1px solid #d9dee5;padding:4px 8px;text-align:left}"
    "th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}"
    "svg{background:#fff;border:1px solid #d9dee5;border-radius:8px;margin:8px 0}"
    "svg text{font-size:12px;fill:#3e4c59}"
    "nav a{margin-right:16px}";

static void page_head(out_t *o, const char *title, const char *model, int64_t version,
                      const char *window, int64_t generated_at)
{
    char ts[32];
    cl_format_timestamp(generated_at, ts);
    put(o, "<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\">\n"
           "<head><meta charset=\"utf-8\"/>"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>");
    esc(o, title);
    put(o, "</title><style>");
    put(o, css);
    put(o, "</style></head>\n<body><main>\n<nav><a href=\"closed-won.html\">Closed Won "
           "analysis</a><a href=\"closed-lost.html\">Closed Lost analysis</a></nav>\n<h1>");
    esc(o, title);
    put(o, "</h1>\n<p class=\"lead\">Model <b>");
    esc(o, model);
    if (version > 0)
        putf(o, "</b> version <b>%" PRId64 "</b>", version);
    else
        put(o, "</b>");
    if (window) {
        put(o, ", deals closed ");
        esc(o, window);
    }
    putf(o, ". Generated %s.</p>\n", ts);
}

static void page_tail(out_t *o)
{
    put(o, "</main></body></html>\n");
}

static void card(out_t *o, const char *value, const char *label)
{
    put(o, "<div class=\"card\"><div class=\"v\">");
    esc(o, value);
    put(o, "</div><div class=\"l\">");
    esc(o, label);
    put(o, "</div></div>");
}

static const char *horizon_words(const cl_eval_set *s, char *buf, size_t len)
{
    switch (s->opts.horizon) {
    case CL_HORIZON_FIRST_SNAPSHOT:
        snprintf(buf, len, "Each deal is judged by the first score it was given.");
        break;
    case CL_HORIZON_ALL_SNAPSHOTS:
        snprintf(buf, len, "Every weekly score of a deal counts (a deal scored ten times "
                           "counts ten times).");
        break;
    default:
        snprintf(buf, len,
                 "Each deal is judged by the last score it had at least %d days before it "
                 "closed, so these figures measure a forecast, not a score given when the "
                 "outcome was already known.",
                 (int)s->opts.horizon_days);
        break;
    }
    return buf;
}

/* ---- charts ------------------------------------------------------------------------ */

#define CW 520
#define CH 300
#define ML 50
#define MR 16
#define MT 28
#define MB 44

static double sx(double x, double x0, double x1) { return ML + (x - x0) / (x1 - x0) * (CW - ML - MR); }
static double sy(double y, double y0, double y1) { return CH - MB - (y - y0) / (y1 - y0) * (CH - MT - MB); }

static void chart_open(out_t *o, const char *title, const char *xlabel, const char *ylabel,
                       double x0, double x1, double xstep, double y0, double y1, double ystep,
                       int ypercent)
{
    putf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\"><title>",
         CW, CH, CW, CH);
    esc(o, title);
    put(o, "</title>");
    putf(o, "<text x=\"%d\" y=\"18\" style=\"font-weight:600\">", ML);
    esc(o, title);
    put(o, "</text>");
    for (double y = y0; y <= y1 + 1e-9; y += ystep) {
        double py = sy(y, y0, y1);
        putf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>", ML, py,
             CW - MR, py);
        if (ypercent)
            putf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>", ML - 4,
                 py + 4, y * 100);
        else
            putf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>", ML - 4, py + 4, y);
    }
    for (double x = x0; xstep > 0 && x <= x1 + 1e-9; x += xstep) {
        double px = sx(x, x0, x1);
        putf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>", px, CH - MB + 16,
             x);
    }
    putf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#9aa5b1\"/>", ML, CH - MB,
         CW - MR, CH - MB);
    putf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (ML + CW - MR) / 2, CH - 8);
    esc(o, xlabel);
    put(o, "</text>");
    putf(o, "<text x=\"12\" y=\"%d\" transform=\"rotate(-90 12 %d)\" text-anchor=\"middle\">",
         (MT + CH - MB) / 2, (MT + CH - MB) / 2);
    esc(o, ylabel);
    put(o, "</text>");
}

static void legend(out_t *o, int i, const char *color, const char *label)
{
    int x = CW - MR - 240, y = MT + 4 + i * 16;
    putf(o, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>", x, y, color);
    putf(o, "<text x=\"%d\" y=\"%d\">", x + 14, y + 9);
    esc(o, label);
    put(o, "</text>");
}

static const char *palette[] = {"#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
                                "#0891b2", "#be185d", "#4b5563"};

/* ---- Closed Won analysis ----------------------------------------------------------- */

static void pct(char *out, size_t len, double v) { snprintf(out, len, "%.0f%%", 100 * v); }

static void headline(out_t *o, const cl_model_metrics *m)
{
    char v[64], l[256], a[32], b[32];
    put(o, "<div class=\"cards\">");
    fmt_count(a, sizeof a, m->won);
    fmt_count(b, sizeof b, m->lost);
    fmt_count(v, sizeof v, m->n);
    snprintf(l, sizeof l, "deals evaluated (%s won, %s lost)", a, b);
    card(o, v, l);
    if (m->auc.present) {
        pct(v, sizeof v, m->auc.value);
        snprintf(l, sizeof l, "AUC %.3f: how often a won deal scored above a lost one (50%% is "
                              "a coin flip)", m->auc.value);
        card(o, v, l);
    }
    int64_t pp = m->confusion.tp + m->confusion.fp;
    pct(v, sizeof v, m->precision.value);
    fmt_count(a, sizeof a, pp);
    snprintf(l, sizeof l, "of the %s deals scored HIGH (>= %.0f) were won (precision)", a,
             m->confusion.threshold);
    card(o, v, l);
    pct(v, sizeof v, m->recall.value);
    fmt_count(a, sizeof a, m->won);
    snprintf(l, sizeof l, "of the %s won deals had been scored HIGH (recall)", a);
    card(o, v, l);
    if (m->ece.present) {
        snprintf(v, sizeof v, "%.1f pts", 100 * m->ece.value);
        snprintf(l, sizeof l, "average gap between predicted and actual win rate (calibration "
                              "error); Brier %.3f", m->brier.value);
        card(o, v, l);
    }
    put(o, "</div>\n");
}

static void confusion_table(out_t *o, const cl_model_metrics *m)
{
    char a[32], b[32], c[32], d[32];
    fmt_count(a, sizeof a, m->confusion.tp);
    fmt_count(b, sizeof b, m->confusion.fp);
    fmt_count(c, sizeof c, m->confusion.fn);
    fmt_count(d, sizeof d, m->confusion.tn);
    putf(o, "<table><tr><th></th><th>Won</th><th>Lost</th></tr>"
            "<tr><th>Scored HIGH (&gt;= %.0f)</th><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>"
            "<tr><th>Scored below HIGH</th><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>"
            "</table>\n<p class=\"note\">F1 (balance of precision and recall) %.3f; log loss "
            "%.3f (lower is better).</p>\n",
         m->confusion.threshold, a, b, c, d, m->f1.value, m->log_loss.value);
}

static void predicted_vs_actual(out_t *o, const cl_eval_set *s, size_t vi,
                                const cl_metrics_window *w, const cl_model_metrics *m)
{
    const cl_eval_version *v = &s->versions[vi];
    double expected[CL_NUM_BANDS] = {0};
    int64_t n[CL_NUM_BANDS] = {0}, won[CL_NUM_BANDS] = {0};
    for (size_t i = 0; i < v->n; i++) {
        const cl_eval_item *it = &v->items[i];
        if (!cl_eval_in_window(it, w))
            continue;
        expected[it->band] += it->probability;
        n[it->band]++;
        won[it->band] += it->won;
    }
    double ymax = 1;
    for (int b = 0; b < CL_NUM_BANDS; b++) {
        if (expected[b] > ymax)
            ymax = expected[b];
        if ((double)won[b] > ymax)
            ymax = (double)won[b];
    }
    double step = pow(10, floor(log10(ymax)));
    if (ymax / step < 3)
        step /= 2;
    double top = ceil(ymax / step) * step;
    chart_open(o, "Predicted vs actual wins per band", "band", "deals won", 0, 0, 0, 0, top,
               step, 0);
    double slot = (CW - ML - MR) / 3.0;
    for (int b = 0; b < CL_NUM_BANDS; b++) {
        double x = ML + slot * b + slot * 0.2, bw = slot * 0.28;
        double y0 = sy(0, 0, top);
        double ye = sy(expected[b], 0, top), ya = sy((double)won[b], 0, top);
        putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", x, ye,
             bw, y0 - ye, "#93c5fd");
        putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>",
             x + bw, ya, bw, y0 - ya, palette[0]);
        putf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s (n = %" PRId64 ")</text>",
             x + bw, CH - MB + 16, cl_band_name((cl_band)b), n[b]);
    }
    legend(o, 0, "#93c5fd", "predicted (sum of probabilities)");
    legend(o, 1, palette[0], "actually won");
    put(o, "</svg>\n<table><tr><th>Band</th><th>Deals</th><th>Predicted wins</th><th>Actual "
           "wins</th><th>Actual win rate</th></tr>");
    for (int b = 0; b < CL_NUM_BANDS; b++) {
        char rate[16] = "-";
        if (n[b] > 0)
            pct(rate, sizeof rate, (double)won[b] / (double)n[b]);
        putf(o, "<tr><td>%s</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%.1f</td>"
                "<td class=\"n\">%" PRId64 "</td><td class=\"n\">%s</td></tr>",
             cl_band_name((cl_band)b), n[b], expected[b], won[b], rate);
    }
    put(o, "</table>\n<p class=\"note\">Predicted wins add up each deal's win probability; "
           "if the score is calibrated they match the actual wins. ");
    (void)m;
    put(o, "A well-ordered score has HIGH above MEDIUM above LOW.</p>\n");
}

static void reliability(out_t *o, const cl_model_metrics *m)
{
    chart_open(o, "Reliability: predicted vs observed win rate", "predicted win probability",
               "observed win rate", 0, 1, 0.2, 0, 1, 0.2, 1);
    putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#9aa5b1\" "
            "stroke-dasharray=\"4 4\"/>",
         sx(0, 0, 1), sy(0, 0, 1), sx(1, 0, 1), sy(1, 0, 1));
    put(o, "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\" points=\"");
    for (size_t b = 0; b < m->n_calibration_bins; b++) {
        const cl_metrics_calibration_bin *cb = &m->calibration_bins[b];
        if (cb->n > 0)
            putf(o, "%.1f,%.1f ", sx(cb->mean_predicted.value, 0, 1),
                 sy(cb->observed_rate.value, 0, 1));
    }
    put(o, "\"/>");
    for (size_t b = 0; b < m->n_calibration_bins; b++) {
        const cl_metrics_calibration_bin *cb = &m->calibration_bins[b];
        if (cb->n > 0)
            putf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"#2563eb\"><title>"
                    "predicted %.0f%%, observed %.0f%%, n = %" PRId64 "</title></circle>",
                 sx(cb->mean_predicted.value, 0, 1), sy(cb->observed_rate.value, 0, 1),
                 3 + fmin(6, log10((double)cb->n + 1)), 100 * cb->mean_predicted.value,
                 100 * cb->observed_rate.value, cb->n);
    }
    legend(o, 0, "#2563eb", "bins (dot size ~ deals)");
    put(o, "</svg>\n<table><tr><th>Predicted</th><th>Deals</th><th>Won</th><th>Mean "
           "predicted</th><th>Observed</th></tr>");
    for (size_t b = 0; b < m->n_calibration_bins; b++) {
        const cl_metrics_calibration_bin *cb = &m->calibration_bins[b];
        if (cb->n == 0)
            continue;
        putf(o, "<tr><td>%.0f%%-%.0f%%</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%"
                PRId64 "</td><td class=\"n\">%.1f%%</td><td class=\"n\">%.1f%%</td></tr>",
             100 * cb->lower, 100 * cb->upper, cb->n, cb->won, 100 * cb->mean_predicted.value,
             100 * cb->observed_rate.value);
    }
    put(o, "</table>\n<p class=\"note\">A calibrated score sits on the dashed line: of the deals "
           "given a 30% chance, about 30% are won.</p>\n");
}

static void distributions(out_t *o, const cl_eval_set *s, size_t vi, const cl_metrics_window *w)
{
    const cl_eval_version *v = &s->versions[vi];
    int64_t hw[10] = {0}, hl[10] = {0}, nw = 0, nl = 0;
    for (size_t i = 0; i < v->n; i++) {
        const cl_eval_item *it = &v->items[i];
        if (!cl_eval_in_window(it, w))
            continue;
        int b = (int)floor(it->score / 10);
        b = b < 0 ? 0 : b > 9 ? 9 : b;
        if (it->won) {
            hw[b]++;
            nw++;
        } else {
            hl[b]++;
            nl++;
        }
    }
    double ymax = 0.1;
    for (int b = 0; b < 10; b++) {
        if (nw && (double)hw[b] / (double)nw > ymax)
            ymax = (double)hw[b] / (double)nw;
        if (nl && (double)hl[b] / (double)nl > ymax)
            ymax = (double)hl[b] / (double)nl;
    }
    double top = ceil(ymax * 10) / 10;
    chart_open(o, "Score distribution: won vs lost deals", "score", "share of deals", 0, 100, 10,
               0, top, top / 5, 1);
    double bw = (CW - ML - MR) / 10.0;
    for (int b = 0; b < 10; b++) {
        double fw = nw ? (double)hw[b] / (double)nw : 0, fl = nl ? (double)hl[b] / (double)nl : 0;
        double x = sx(b * 10, 0, 100);
        putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#059669\"><title>"
                "won %" PRId64 "</title></rect>",
             x + 2, sy(fw, 0, top), bw / 2 - 2, sy(0, 0, top) - sy(fw, 0, top), hw[b]);
        putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#dc2626\"><title>"
                "lost %" PRId64 "</title></rect>",
             x + bw / 2, sy(fl, 0, top), bw / 2 - 2, sy(0, 0, top) - sy(fl, 0, top), hl[b]);
    }
    char l1[64], l2[64];
    snprintf(l1, sizeof l1, "won (n = %" PRId64 ")", nw);
    snprintf(l2, sizeof l2, "lost (n = %" PRId64 ")", nl);
    legend(o, 0, "#059669", l1);
    legend(o, 1, "#dc2626", l2);
    put(o, "</svg>\n<p class=\"note\">The further apart the green and red bars, the better the "
           "score separates deals that will be won from those that will be lost.</p>\n");
}

static void pr_by_threshold(out_t *o, const cl_model_metrics *m)
{
    chart_open(o, "Precision and recall by threshold", "threshold (score)", "", 0, 100, 10, 0, 1,
               0.2, 1);
    const char *colors[2] = {palette[0], palette[2]};
    for (int series = 0; series < 2; series++) {
        putf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
             colors[series]);
        for (size_t t = 0; t < m->n_thresholds; t++) {
            const cl_metrics_threshold_point *p = &m->thresholds[t];
            cl_opt_double v = series == 0 ? p->precision : p->recall;
            if (v.present)
                putf(o, "%.1f,%.1f ", sx(p->threshold, 0, 100), sy(v.value, 0, 1));
        }
        put(o, "\"/>");
    }
    double hx = sx(m->confusion.threshold, 0, 100);
    putf(o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#9aa5b1\" "
            "stroke-dasharray=\"4 4\"/><text x=\"%.1f\" y=\"%d\">HIGH</text>",
         hx, MT, hx, CH - MB, hx + 3, MT + 40);
    legend(o, 0, colors[0], "precision: share of flagged deals won");
    legend(o, 1, colors[1], "recall: share of wins flagged");
    put(o, "</svg>\n");
}

static void top_share_table(out_t *o, const cl_eval_set *s, size_t vi,
                            const cl_metrics_window *w)
{
    put(o, "<table><tr><th>Top of the pipeline by score</th><th>Deals</th><th>Won among "
           "them</th><th>Precision</th><th>Share of all wins</th></tr>");
    const double shares[] = {0.1, 0.2, 0.3};
    for (size_t i = 0; i < 3; i++) {
        cl_eval_top_k k;
        if (cl_eval_top_share(s, vi, w, shares[i], &k, NULL, 0) != CL_OK)
            continue;
        putf(o, "<tr><td>top %.0f%%</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%" PRId64
                "</td><td class=\"n\">%.0f%%</td><td class=\"n\">%.0f%%</td></tr>",
             100 * shares[i], k.k, k.won_in_top, 100 * k.precision, 100 * k.recall);
    }
    put(o, "</table>\n");
}

static void group_table(out_t *o, const char *title, const cl_metrics_group *g, size_t n)
{
    if (n == 0)
        return;
    put(o, "<h3>");
    esc(o, title);
    put(o, "</h3><table><tr><th>");
    esc(o, title);
    put(o, "</th><th>Deals</th><th>Won</th><th>Win rate</th><th>Mean score</th><th>AUC</th>"
           "<th>Precision at HIGH</th></tr>");
    for (size_t i = 0; i < n && i < GROUP_ROWS; i++) {
        put(o, "<tr><td>");
        esc(o, g[i].key[0] ? g[i].key : "(not set)");
        putf(o, "</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%" PRId64
                "</td><td class=\"n\">%.0f%%</td><td class=\"n\">%.1f</td>",
             g[i].n, g[i].won, 100.0 * (double)g[i].won / (double)g[i].n, g[i].mean_score.value);
        if (g[i].auc.present)
            putf(o, "<td class=\"n\">%.3f</td>", g[i].auc.value);
        else
            put(o, "<td class=\"n\">-</td>");
        if (g[i].precision.present)
            putf(o, "<td class=\"n\">%.0f%%</td></tr>", 100 * g[i].precision.value);
        else
            put(o, "<td class=\"n\">-</td></tr>");
    }
    put(o, "</table>\n");
    if (n > GROUP_ROWS)
        putf(o, "<p class=\"note\">The %d largest of %zu groups.</p>\n", GROUP_ROWS, n);
}

static const char *status_of(const cl_eval_version *v)
{
    return v->info ? cl_model_status_name(v->info->status) : "status unknown";
}

static void over_time(out_t *o, const cl_eval_set *s, const char *model,
                      const cl_metrics_window *wins, size_t nwin, int64_t generated_at)
{
    /* Monthly windows only; AUC per version per month. */
    size_t months[MONTHS_SHOWN], nm = 0;
    for (size_t i = 0; i < nwin && nm < MONTHS_SHOWN; i++)
        if (wins[i].kind == CL_WINDOW_MONTHLY)
            months[nm++] = i;
    if (nm == 0)
        return;
    cl_model_metrics *m = malloc(sizeof *m);
    if (!m) {
        o->rc = CL_ENOMEM;
        return;
    }
    chart_open(o, "AUC by month of close, per model version", "", "AUC", 0, 0, 0, 0.3, 1, 0.1,
               0);
    double slot = (CW - ML - MR) / (double)nm;
    for (size_t k = 0; k < nm; k++) {
        char lab[64];
        cl_eval_window_label(&wins[months[k]], lab, sizeof lab);
        if (nm <= 12 || k % 2 == 0) {
            putf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", ML + slot * (k + 0.5),
                 CH - MB + 16);
            esc(o, lab);
            put(o, "</text>");
        }
    }
    int series = 0;
    cl_buf table;
    cl_buf_init(&table, 0);
    out_t t = {&table, CL_OK};
    for (size_t vi = 0; vi < s->nversions; vi++) {
        const cl_eval_version *v = &s->versions[vi];
        if (strcmp(v->model, model) != 0)
            continue;
        const char *color = palette[series % 8];
        putf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        putf(&t, "<tr><td>version %" PRId64 " (%s)</td>", v->version, status_of(v));
        for (size_t k = 0; k < nm; k++) {
            if (cl_eval_version_metrics(s, vi, &wins[months[k]], generated_at, m, NULL, 0) ==
                    CL_OK &&
                m->auc.present) {
                putf(o, "%.1f,%.1f ", ML + slot * (k + 0.5), sy(fmax(0.3, m->auc.value), 0.3, 1));
                putf(&t, "<td class=\"n\">%.3f (n = %" PRId64 ")</td>", m->auc.value, m->n);
            } else {
                put(&t, "<td class=\"n\">-</td>");
            }
        }
        put(o, "\"/>");
        put(&t, "</tr>");
        char lab[128];
        snprintf(lab, sizeof lab, "v%" PRId64 " %s", v->version, status_of(v));
        if (series < 8)
            legend(o, series, color, lab);
        series++;
    }
    put(o, "</svg>\n<table><tr><th>Version</th>");
    for (size_t k = 0; k < nm; k++) {
        char lab[64];
        cl_eval_window_label(&wins[months[k]], lab, sizeof lab);
        put(o, "<th>");
        esc(o, lab);
        put(o, "</th>");
    }
    put(o, "</tr>");
    if (t.rc == CL_OK)
        put(o, table.data ? table.data : "");
    else
        o->rc = t.rc;
    put(o, "</table>\n");
    cl_buf_free(&table);
    free(m);
}

static void comparisons(out_t *o, const cl_eval_set *s, const char *model, int primary,
                        const cl_metrics_window *w)
{
    int any = 0;
    for (size_t vi = 0; vi < s->nversions; vi++) {
        const cl_eval_version *v = &s->versions[vi];
        if ((int)vi == primary || strcmp(v->model, model) != 0)
            continue;
        if (v->info && v->info->status != CL_MODEL_CHALLENGER && v->info->status != CL_MODEL_CANDIDATE)
            continue;
        cl_eval_comparison c;
        if (cl_eval_compare(s, (size_t)primary, vi, w, &c, NULL, 0) != CL_OK)
            continue;
        if (!any) {
            put(o, "<table><tr><th>Challenger</th><th>Paired deals</th><th>AUC champion</th>"
                   "<th>AUC challenger</th><th>Difference</th><th>p-value (DeLong)</th>"
                   "<th>Precision at HIGH</th><th>Right only by (McNemar)</th><th>Verdict</th>"
                   "</tr>");
            any = 1;
        }
        putf(o, "<tr><td>version %" PRId64 "</td><td class=\"n\">%zu (%zu won)</td>", v->version,
             c.n_paired, c.n_won);
        if (c.has_delong) {
            const char *verdict = c.delong.p_value < 0.05
                                      ? (c.delong.delta > 0 ? "challenger better" : "champion better")
                                      : "no significant difference";
            putf(o, "<td class=\"n\">%.3f</td><td class=\"n\">%.3f</td><td class=\"n\">%+.3f</td>"
                    "<td class=\"n\">%.4f</td>",
                 c.delong.auc_a, c.delong.auc_b, c.delong.delta, c.delong.p_value);
            putf(o, "<td class=\"n\">%.0f%% vs %.0f%%</td><td class=\"n\">champion %" PRIu64
                    ", challenger %" PRIu64 " (p = %.4f)</td><td>%s</td></tr>",
                 100 * c.precision_high_a, 100 * c.precision_high_b, c.mcnemar.only_a_right,
                 c.mcnemar.only_b_right, c.mcnemar.p_value, verdict);
        } else {
            putf(o, "<td colspan=\"4\">too few won or lost pairs for a test</td><td class=\"n\">"
                    "%.0f%% vs %.0f%%</td><td>-</td><td>not enough data</td></tr>",
                 100 * c.precision_high_a, 100 * c.precision_high_b);
        }
    }
    if (any)
        put(o, "</table>\n<p class=\"note\">Both versions score the same deals (shadow scoring), "
               "so the difference is measured on identical opportunities. A p-value below 0.05 "
               "means the difference is unlikely to be chance.</p>\n");
    else
        put(o, "<p class=\"note\">No challenger has been scored on the same deals yet.</p>\n");
}

static void case_table(out_t *o, const cl_eval_set *s, const cl_patterns *p,
                       const cl_pattern_case *cs, size_t n, const char *url)
{
    const cl_eval_version *v = &s->versions[p->version];
    put(o, "<table><tr><th>Opportunity</th><th>Owner</th><th>Stage (when scored)</th>"
           "<th>Segment</th><th>Amount</th><th>Score</th><th>Band</th><th>Closed</th>"
           "<th>Pushed the score up</th><th>Pushed it down</th></tr>");
    for (size_t i = 0; i < n; i++) {
        const cl_eval_item *it = &v->items[cs[i].item];
        char day[11];
        cl_format_date(it->close_date, day);
        put(o, "<tr><td>");
        opp_link(o, url, cl_eval_string(s, it->opportunity));
        put(o, "</td><td>");
        esc(o, cl_eval_string(s, it->attr[CL_EVAL_OWNER]));
        put(o, "</td><td>");
        esc(o, cl_eval_string(s, it->attr[CL_EVAL_STAGE]));
        put(o, "</td><td>");
        esc(o, cl_eval_string(s, it->attr[CL_EVAL_SEGMENT]));
        if (it->has_amount)
            putf(o, "</td><td class=\"n\">%.0f", it->amount);
        else
            put(o, "</td><td class=\"n\">-");
        putf(o, "</td><td class=\"n\">%.1f</td><td>%s</td><td>%s</td><td>", it->score,
             cl_band_name((cl_band)it->band), day);
        if (p->weights_known && cs[i].top_positive >= 0)
            putf(o, "%s (+%.1f pts)", cl_builtin_component_names[cs[i].top_positive],
                 cs[i].contributions[cs[i].top_positive]);
        else
            put(o, "-");
        put(o, "</td><td>");
        if (p->weights_known && cs[i].top_negative >= 0)
            putf(o, "%s (%.1f pts)", cl_builtin_component_names[cs[i].top_negative],
                 cs[i].contributions[cs[i].top_negative]);
        else
            put(o, "-");
        put(o, "</td></tr>");
    }
    put(o, "</table>\n");
}

static void empty_page(out_t *o, const char *title, const char *model, int64_t generated_at)
{
    page_head(o, title, model, 0, NULL, generated_at);
    put(o, "<p>No Closed Won or Closed Lost outcome has been evaluated yet for this model. "
           "The report fills in as labeled examples arrive.</p>\n");
    page_tail(o);
}

static void render_won(out_t *o, const cl_eval_set *s, const cl_report_options *opt, int vi,
                       const cl_metrics_window *wins, size_t nwin, const cl_model_metrics *m,
                       const cl_patterns *p, const char *wlabel)
{
    const cl_eval_version *v = &s->versions[vi];
    char buf[512];
    page_head(o, "Closed Won analysis", v->model, v->version, wlabel, opt->generated_at);
    putf(o, "<p>How accurate were the scores? This page compares each deal's score with how the "
            "deal actually ended. %s",
         horizon_words(s, buf, sizeof buf));
    if (s->excluded_by_horizon)
        putf(o, " %" PRIu64 " closed deals had no score that early and are left out.",
             s->excluded_by_horizon);
    put(o, "</p>\n");
    headline(o, m);
    put(o, "<h2>Deals scored HIGH vs how they ended</h2>\n");
    confusion_table(o, m);
    put(o, "<h2>Predicted vs actual</h2>\n");
    predicted_vs_actual(o, s, (size_t)vi, &wins[0], m);
    put(o, "<h2>Reliability diagram</h2>\n");
    reliability(o, m);
    put(o, "<h2>Score distributions</h2>\n");
    distributions(o, s, (size_t)vi, &wins[0]);
    put(o, "<h2>Precision and recall by threshold</h2>\n");
    pr_by_threshold(o, m);
    top_share_table(o, s, (size_t)vi, &wins[0]);
    put(o, "<h2>Over time, per model version</h2>\n");
    over_time(o, s, v->model, wins, nwin, opt->generated_at);
    put(o, "<h3>Champion vs challenger</h3>\n");
    comparisons(o, s, v->model, vi, &wins[0]);
    put(o, "<h2>Quality by stage, segment and owner</h2>\n<p class=\"note\">AUC inside a group "
           "says how well the score ranks that group's deals; '-' where a group has only wins or "
           "only losses.</p>\n");
    group_table(o, "Stage", m->by_stage, m->n_by_stage);
    group_table(o, "Segment", m->by_segment, m->n_by_segment);
    group_table(o, "Owner", m->by_owner, m->n_by_owner);
    putf(o, "<h2>Wins the model scored LOW</h2>\n<p>%" PRId64 " of %" PRId64
            " deals scored LOW (below %.0f) were won.",
         p->low_won, p->n_low, v->bands.medium);
    if (p->n_low_wins < (size_t)p->low_won)
        putf(o, " The %zu lowest-scored are listed.", p->n_low_wins);
    put(o, "</p>\n");
    if (p->n_low_wins)
        case_table(o, s, p, p->low_wins, p->n_low_wins, opt->salesforce_url);
    page_tail(o);
}

static void rules_table(out_t *o, const cl_patterns *p, cl_rule_kind kind)
{
    size_t shown = 0;
    for (size_t i = 0; i < p->nrules; i++) {
        const cl_pattern_rule *r = &p->rules[i];
        if (r->kind != kind)
            continue;
        if (!shown++)
            put(o, "<table><tr><th>Pattern</th><th>Deals</th><th>Rate</th><th>Overall</th>"
                   "<th>Lift</th><th>Support</th><th>p-value</th></tr>");
        put(o, "<tr><td>");
        esc(o, r->text);
        putf(o, "</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%.0f%%</td><td class=\"n\">"
                "%.0f%%</td><td class=\"n\">%.2f</td><td class=\"n\">%.1f%%</td>"
                "<td class=\"n\">%.4f</td></tr>",
             r->n, 100 * r->rate, 100 * r->base_rate, r->lift, 100 * r->support, r->p_value);
    }
    if (shown)
        put(o, "</table>\n");
    else
        put(o, "<p class=\"note\">No pattern with enough deals behind it.</p>\n");
}

/* ---- factors the score misses -------------------------------------------------------- */

/* A later status of the same version replaces an earlier one; records of different keys
 * (hence partitions) of the weights topic can arrive in either order. */
static int status_rank(cl_model_status s)
{
    switch (s) {
    case CL_MODEL_CANDIDATE:
        return 0;
    case CL_MODEL_CHALLENGER:
        return 1;
    case CL_MODEL_CHAMPION:
    case CL_MODEL_REJECTED:
        return 2;
    default:
        return 3;
    }
}

int cl_report_discovery_update(cl_report_discovery *table, size_t *n, size_t cap,
                               const cl_weight_config *c)
{
    if (c->n_discovery == 0) return 0;
    size_t i = 0;
    while (i < *n && strcmp(table[i].model, c->model) != 0)
        i++;
    if (i == *n) {
        if (*n == cap) return 0;
        (*n)++;
    } else if (c->version < table[i].version ||
               (c->version == table[i].version &&
                status_rank(c->status) < status_rank(table[i].status))) {
        return 0;
    }
    cl_report_discovery *d = &table[i];
    cl_strlcpy(d->model, c->model, sizeof d->model);
    d->version = c->version;
    d->status = c->status;
    d->created_at = c->created_at;
    d->n = c->n_discovery < CL_MAX_DISCOVERY ? c->n_discovery : CL_MAX_DISCOVERY;
    memcpy(d->factors, c->discovery, d->n * sizeof *d->factors);
    return 1;
}

void cl_report_factor_words(const cl_candidate_evidence *e, char *out, size_t len)
{
    static const struct {
        cl_component_kind kind;
        const char *source, *words;
    } known[] = {
        {CL_COMPONENT_CATEGORY_WIN_RATE, "owner_id", "the owner's past win rate"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "account_id", "the account's past win rate"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "lead_source",
         "the past win rate of the deal's lead source"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "segment", "the past win rate of the deal's segment"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "region", "the past win rate of the deal's region"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "product", "the past win rate of the deal's product"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "stage", "the past win rate of deals in the same stage"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "type", "the past win rate of the deal's type"},
        {CL_COMPONENT_CATEGORY_WIN_RATE, "currency",
         "the past win rate of deals in the same currency"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "amount", "deal size, ranked against past deals"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "days_open", "how long the deal has been open"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "days_in_stage",
         "how long the deal has sat in its stage"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "days_to_close", "days left to the expected close date"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "opportunity_score", "the CRM's own opportunity score"},
        {CL_COMPONENT_NUMERIC_PERCENTILE, "account_score", "the CRM's own account score"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].kind == e->kind && strcmp(known[i].source, e->source) == 0) {
            snprintf(out, len, "%s", known[i].words);
            return;
        }
    switch (e->kind) {
    case CL_COMPONENT_CATEGORY_WIN_RATE:
        snprintf(out, len, "the past win rate of the deal's '%.128s'", e->source);
        break;
    case CL_COMPONENT_NUMERIC_PERCENTILE:
        snprintf(out, len, "'%.128s', ranked against past deals", e->source);
        break;
    default:
        snprintf(out, len, "'%.128s' as the CRM gives it", e->source);
    }
}

static const char *status_words(cl_model_status s)
{
    switch (s) {
    case CL_MODEL_CANDIDATE:
        return "candidate";
    case CL_MODEL_CHALLENGER:
        return "challenger";
    case CL_MODEL_CHAMPION:
        return "champion";
    case CL_MODEL_REJECTED:
        return "rejected";
    default:
        return "retired";
    }
}

static const char *attr_words(int attr)
{
    switch (attr) {
    case CL_EVAL_OWNER:
        return "Owner";
    case CL_EVAL_SEGMENT:
        return "Segment";
    case CL_EVAL_LEAD_SOURCE:
        return "Lead source";
    case CL_EVAL_PRODUCT:
        return "Product";
    case CL_EVAL_STAGE:
        return "Stage";
    default:
        return cl_eval_attr_names[attr];
    }
}

static void factor_decision(out_t *o, const cl_report_discovery *d, const cl_candidate_evidence *e)
{
    if (!e->delta_auc.present) {
        put(o, "not evaluated (the test could not run on these deals)");
    } else if (e->adopted) {
        switch (d->status) {
        case CL_MODEL_REJECTED:
            putf(o,
                 "<span class=\"good\">adopted by v%" PRId64 "</span>, which was rejected (it "
                 "did not beat the champion overall)",
                 d->version);
            break;
        case CL_MODEL_CHAMPION:
            putf(o, "<span class=\"good\">adopted by v%" PRId64 "</span>, now the champion",
                 d->version);
            break;
        case CL_MODEL_RETIRED:
            putf(o, "<span class=\"good\">adopted by v%" PRId64 "</span>, since retired",
                 d->version);
            break;
        default:
            putf(o, "<span class=\"good\">adopted by %s v%" PRId64 "</span>",
                 status_words(d->status), d->version);
        }
    } else if (e->beats_shuffled) {
        put(o, "not adopted: it passed, but the model already holds as many learned factors as "
               "it may");
    } else {
        put(o, "not adopted (gain within noise)");
    }
}

static void discovery_table(out_t *o, const cl_report_discovery *d)
{
    char ts[32], a[32], b[32], words[300];
    cl_format_timestamp(d->created_at, ts);
    int64_t n_examples = 0;
    int32_t permutations = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->factors[i].n_examples > n_examples) n_examples = d->factors[i].n_examples;
        if (d->factors[i].permutations > permutations) permutations = d->factors[i].permutations;
    }
    fmt_count(a, sizeof a, n_examples);
    putf(o,
         "<p>Tested by the refit that produced version %" PRId64 " (now %s), published %s, "
         "on %s past deals.</p>\n",
         d->version, status_words(d->status), ts, a);
    putf(o,
         "<p class=\"note\">Each factor was tested the way it would have been used: the "
         "model was trained on older deals and checked on newer ones, with and without the "
         "factor. <b>AUC gain</b>: how much better the model then tells won from lost deals "
         "(AUC 0.5 is a coin flip, 1 is perfect; +0.01 is a real improvement). <b>Log-loss "
         "gain</b>: how much better its win probabilities became (positive is better). Some "
         "gain appears by chance alone, so the same test was repeated %d times with the "
         "outcomes shuffled; a factor counts only when its real gains beat every shuffled "
         "one.</p>\n",
         (int)permutations);
    put(o, "<table><tr><th>Factor</th><th>What it measures</th><th>AUC gain</th>"
           "<th>Log-loss gain</th><th>Best gain on shuffled outcomes (AUC / log loss)</th>"
           "<th>Beats shuffled outcomes</th><th>Deals</th><th>Decision</th></tr>");
    for (size_t i = 0; i < d->n; i++) {
        const cl_candidate_evidence *e = &d->factors[i];
        cl_report_factor_words(e, words, sizeof words);
        put(o, "<tr><td><code>");
        esc(o, e->name);
        put(o, "</code></td><td>");
        esc(o, words);
        put(o, "</td>");
        if (e->delta_auc.present && e->delta_log_loss.present &&
            e->shuffled_max_delta_auc.present && e->shuffled_max_delta_log_loss.present)
            putf(o,
                 "<td class=\"n\">%+.3f</td><td class=\"n\">%+.4f</td><td class=\"n\">%+.3f / "
                 "%+.4f</td><td>%s</td>",
                 e->delta_auc.value, e->delta_log_loss.value, e->shuffled_max_delta_auc.value,
                 e->shuffled_max_delta_log_loss.value,
                 e->beats_shuffled ? "<span class=\"good\">yes</span>" : "no");
        else
            put(o, "<td class=\"n\">-</td><td class=\"n\">-</td><td class=\"n\">-</td><td>-</td>");
        fmt_count(a, sizeof a, e->n_examples);
        fmt_count(b, sizeof b, e->n_with_value);
        if (e->n_with_value == e->n_examples)
            putf(o, "<td class=\"n\">n = %s", a);
        else
            putf(o, "<td class=\"n\">n = %s (%s with a value)", a, b);
        if (e->kind == CL_COMPONENT_CATEGORY_WIN_RATE)
            putf(o, "; %" PRId64 " group%s with enough history", e->n_categories,
                 e->n_categories == 1 ? "" : "s");
        put(o, "</td><td>");
        factor_decision(o, d, e);
        put(o, "</td></tr>");
    }
    put(o, "</table>\n");
}

static void factors_section(out_t *o, const cl_eval_set *s, const cl_report_options *opt,
                            const char *model, const cl_patterns *p)
{
    put(o, "<h2>Factors the score misses</h2>\n<p>The score is built from six components. Deals "
           "are also won or lost for reasons outside them: who owns the deal, where it came "
           "from, what is being sold. Below: what the refit worker found when it tested such "
           "factors on past deals, and the groups of deals that lose more often than "
           "average.</p>\n<h3>Candidate factors tested</h3>\n");
    const cl_report_discovery *d = NULL;
    for (size_t i = 0; opt->discovery && i < opt->ndiscovery; i++)
        if (strcmp(opt->discovery[i].model, model) == 0) d = &opt->discovery[i];
    if (d && d->n > 0)
        discovery_table(o, d);
    else
        put(o, "<p class=\"note\">No refit of this model has tested candidate factors yet "
               "(the refit worker tests them when refit.discover is on; the results arrive "
               "with its next published version).</p>\n");

    char a[32];
    fmt_count(a, sizeof a, p->n);
    putf(o,
         "<h3>Groups that lose more often</h3>\n<p class=\"note\">Among the %s evaluated "
         "deals (%.0f%% lost): the owners, segments, lead sources, products and stages whose "
         "deals were lost at least %.1f times as often as average, with at least %zu deals "
         "and unlikely to be chance (p &lt; %.2f); at most %zu per attribute. Lift = the "
         "group's lost rate divided by the overall lost rate; support = the group's share "
         "of all evaluated deals. A group here that no factor above covers is worth adding "
         "to the refit's candidates.</p>\n",
         a, 100 * p->base_lost_rate, opt->patterns.min_lift, opt->patterns.min_sample,
         opt->patterns.max_p_value, opt->patterns.max_groups);
    if (p->n_lost_groups == 0) {
        put(o, "<p class=\"note\">No group is large enough and loses clearly more often than "
               "average.</p>\n");
        return;
    }
    put(o, "<table><tr><th>Attribute</th><th>Group</th><th>Deals</th><th>Lost</th>"
           "<th>Lost rate</th><th>Overall</th><th>Lift</th><th>Support</th><th>p-value</th></tr>");
    for (size_t i = 0; i < p->n_lost_groups; i++) {
        const cl_pattern_lost_group *g = &p->lost_groups[i];
        putf(o, "<tr><td>%s</td><td>", attr_words(g->attr));
        esc(o, cl_eval_string(s, g->key));
        putf(o,
             "</td><td class=\"n\">%" PRId64 "</td><td class=\"n\">%" PRId64 "</td>"
             "<td class=\"n\">%.0f%%</td><td class=\"n\">%.0f%%</td><td class=\"n\">%.2f</td>"
             "<td class=\"n\">%.1f%%</td><td class=\"n\">%.4f</td></tr>",
             g->n, g->lost, 100 * g->rate, 100 * p->base_lost_rate, g->lift, 100 * g->support,
             g->p_value);
    }
    put(o, "</table>\n");
}

static void render_lost(out_t *o, const cl_eval_set *s, const cl_report_options *opt, int vi,
                        const cl_model_metrics *m, const cl_patterns *p, const char *wlabel)
{
    const cl_eval_version *v = &s->versions[vi];
    char a[32], b[32];
    page_head(o, "Closed Lost analysis", v->model, v->version, wlabel, opt->generated_at);
    put(o, "<p>Where did the model go wrong? This page looks at the deals it was confident "
           "about that were lost, the patterns they share, and what to change.</p>\n");
    put(o, "<div class=\"cards\">");
    fmt_count(a, sizeof a, p->lost);
    fmt_count(b, sizeof b, p->n);
    char l[256];
    snprintf(l, sizeof l, "deals lost, of %s evaluated (%.0f%%)", b, 100 * p->base_lost_rate);
    card(o, a, l);
    fmt_count(a, sizeof a, p->high_lost);
    fmt_count(b, sizeof b, p->n_high);
    snprintf(l, sizeof l, "of the %s deals scored HIGH were lost (%.0f%%)", b,
             p->n_high ? 100.0 * (double)p->high_lost / (double)p->n_high : 0);
    card(o, a, l);
    if (m->auc.present) {
        snprintf(a, sizeof a, "%.3f", m->auc.value);
        card(o, a, "AUC: how often a won deal scored above a lost one (0.5 is a coin flip)");
    }
    put(o, "</div>\n");

    putf(o, "<h2>High-scored losses</h2>\n<p>Deals scored HIGH (%.0f or more) that were lost, "
            "highest score first.",
         v->bands.high);
    if (p->n_high_losses < (size_t)p->high_lost)
        putf(o, " The first %zu of %" PRId64 ".", p->n_high_losses, p->high_lost);
    put(o, " 'Pushed up' / 'pushed down' name the component that moved the score most above or "
           "below an average deal's, in score points.</p>\n");
    if (p->n_high_losses)
        case_table(o, s, p, p->high_losses, p->n_high_losses, opt->salesforce_url);

    putf(o, "<h2>Failure patterns</h2>\n<p class=\"note\">Only groups of at least %zu deals whose "
            "rate is at least %.1f times the overall rate and unlikely to be chance (p &lt; "
            "%.2f). Lift = the group's rate divided by the overall rate; support = the group's "
            "share of all evaluated deals.</p>\n<h3>HIGH score, lost anyway</h3>\n",
         opt->patterns.min_sample, opt->patterns.min_lift, opt->patterns.max_p_value);
    rules_table(o, p, CL_RULE_HIGH_LOST);
    put(o, "<h3>LOW score, won anyway</h3>\n");
    rules_table(o, p, CL_RULE_LOW_WON);

    put(o, "<h2>Misleading components</h2>\n<p class=\"note\">Inside the HIGH band, a component "
           "whose average is as high for lost deals as for won ones did not help tell them apart. "
           "AUC alone: how well the component on its own ranks won above lost deals.</p>\n"
           "<table><tr><th>Component</th><th>Weight</th><th>Mean, won in HIGH</th>"
           "<th>Mean, lost in HIGH</th><th>AUC alone</th><th>Verdict</th></tr>");
    for (int k = 0; k < CL_NUM_BUILTINS; k++) {
        const cl_pattern_component *c = &p->components[k];
        putf(o, "<tr><td>%s</td>", c->name);
        if (p->weights_known)
            putf(o, "<td class=\"n\">%.2f</td>", c->weight);
        else
            put(o, "<td class=\"n\">-</td>");
        if (c->n_won_high > 0 && c->n_lost_high > 0)
            putf(o, "<td class=\"n\">%.1f (n = %" PRId64 ")</td><td class=\"n\">%.1f (n = %" PRId64
                    ")</td>",
                 c->mean_won_high, c->n_won_high, c->mean_lost_high, c->n_lost_high);
        else
            put(o, "<td class=\"n\">-</td><td class=\"n\">-</td>");
        if (c->has_auc)
            putf(o, "<td class=\"n\">%.3f</td>", c->auc);
        else
            put(o, "<td class=\"n\">-</td>");
        putf(o, "<td>%s</td></tr>",
             c->misleading ? "<span class=\"bad\">misleading</span>"
                           : (c->n_won_high > 0 && c->n_lost_high > 0 ? "<span class=\"good\">"
                                                                        "helpful</span>"
                                                                      : "not enough data"));
    }
    put(o, "</table>\n<h2>Recommended weight changes</h2>\n");
    if (!p->weights_known) {
        put(o, "<p class=\"note\">This version's weights are not known here (its configuration "
               "was not seen on the weights topic), so no change is proposed.</p>\n");
    } else if (p->nrecommendations == 0) {
        put(o, "<p class=\"note\">The data do not call for a change of more than 0.02 in any "
               "weight.</p>\n");
    } else {
        put(o, "<table><tr><th>Component</th><th>Now</th><th>Suggested</th><th>Evidence</th>"
               "</tr>");
        for (size_t i = 0; i < p->nrecommendations; i++) {
            const cl_pattern_recommendation *r = &p->recommendations[i];
            putf(o, "<tr><td>%s</td><td class=\"n\">%.2f</td><td class=\"n\">%.2f</td><td>",
                 r->component, r->current, r->suggested);
            esc(o, r->evidence);
            put(o, "</td></tr>");
        }
        putf(o, "</table>\n<p class=\"note\">Suggestions move each weight at most %.2f and keep "
                "the weights summing to 1. The refit worker tests changes like these on past "
                "deals before any reaches production.</p>\n",
             opt->patterns.max_weight_change);
    }
    factors_section(o, s, opt, v->model, p);
    page_tail(o);
}

int cl_report_render(const cl_eval_set *s, const cl_report_options *opt, cl_buf *won,
                     cl_buf *lost, char *err, size_t errlen)
{
    const char *model = opt->model ? opt->model : CL_SEED_MODEL;
    int rc = cl_report_check_salesforce_url(opt->salesforce_url, err, errlen);
    if (rc != CL_OK)
        return rc;
    out_t ow = {won, CL_OK}, ol = {lost, CL_OK};
    int vi = cl_eval_primary_version(s, model);
    cl_metrics_window wins[2 + MONTHS_SHOWN + 64];
    size_t nwin = cl_eval_windows(s, wins, sizeof wins / sizeof wins[0]);
    cl_model_metrics *m = malloc(sizeof *m);
    if (!m)
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    if (vi < 0 || nwin == 0 ||
        (rc = cl_eval_version_metrics(s, (size_t)vi, &wins[0], opt->generated_at, m, err,
                                      errlen)) == CL_ENOTFOUND) {
        empty_page(&ow, "Closed Won analysis", model, opt->generated_at);
        empty_page(&ol, "Closed Lost analysis", model, opt->generated_at);
        free(m);
        rc = ow.rc != CL_OK ? ow.rc : ol.rc;
        return rc == CL_OK ? CL_OK : cl_seterr(err, errlen, rc, "report larger than its buffer");
    }
    if (rc != CL_OK) {
        free(m);
        return rc;
    }
    cl_patterns p;
    rc = cl_patterns_analyse(s, (size_t)vi, &wins[0], &opt->patterns, &p, err, errlen);
    if (rc != CL_OK) {
        free(m);
        return rc;
    }
    char wlabel[64];
    cl_eval_window_label(&wins[0], wlabel, sizeof wlabel);
    render_won(&ow, s, opt, vi, wins, nwin, m, &p, wlabel);
    render_lost(&ol, s, opt, vi, m, &p, wlabel);
    cl_patterns_free(&p);
    free(m);
    rc = ow.rc != CL_OK ? ow.rc : ol.rc;
    return rc == CL_OK ? CL_OK
                       : cl_seterr(err, errlen, rc, "report: %s (buffer limit)",
                                   cl_status_name(rc));
}
