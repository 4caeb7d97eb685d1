/*
 * fit.c — active-set Newton solver for (non-negatively / cap-) constrained logistic
 * regression, and the validation machinery around it. See fit.h and
 * docs/refit-math.md.
 *
 * Parameters θ = (a, β₁..β_k). Every constraint is a homogeneous linear inequality
 * c·θ <= 0 (βᵢ >= 0 is −βᵢ <= 0; the cap is βᵢ − (w⁰ᵢ+cap)·Σβ <= 0 and
 * (w⁰ᵢ−cap)·Σβ − βᵢ <= 0). Invariants of the main loop:
 *   - θ is feasible (up to rounding in the last bits, which the final weights absorb);
 *   - the working set W is a set of constraints active at θ (never a row twice); rows
 *     that depend on earlier ones are allowed and get multiplier 0, because the Newton
 *     step is solved by the rank-revealing null-space method;
 *   - the objective never increases beyond its rounding noise (Armijo line search);
 *   - a fit is returned only when the KKT conditions hold (stationarity, multiplier
 *     signs, feasibility, complementary slackness), checked explicitly.
 * docs/refit-math.md §4 describes the steps and §4.1 why they are shaped so.
 */
#include "fit.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define MAXP (CL_FIT_MAX_COMPONENTS + 1)
#define MAXC (3 * CL_FIT_MAX_COMPONENTS)
#define MAX_ETA_STEP 10.0

void cl_fit_options_default(cl_fit_options *o)
{
    memset(o, 0, sizeof *o);
    o->mode = CL_FIT_SIMPLEX;
    o->tolerance = 1e-20;
    o->max_iterations = 200;
}

void cl_cv_options_default(cl_cv_options *o)
{
    memset(o, 0, sizeof *o);
    o->folds = 5;
    o->min_train_won = 20;
    o->min_train_lost = 20;
    o->high_threshold = 70.0;
    o->ece_bins = 10;
}

/* --- the problem --------------------------------------------------------------- */

typedef struct {
    size_t n, k, p;
    const double *x;
    const uint8_t *y;
    const double *v;
    double lambda;
    double anchor[CL_FIT_MAX_COMPONENTS];
    double *eta; /* n scratch: linear index at the current trial point */
    double *h;   /* n scratch: v·p·(1−p) */
    double *r;   /* n scratch: v·(p − y) */
    double *hx;  /* n scratch: h·x_j */
    size_t ncons;
    double cons[MAXC][MAXP];
    /* Newton-step scratch (kept off the stack: ~240 kB at 64 components). */
    double Q[MAXP][MAXP], L[MAXP][MAXP], P[MAXP][MAXP], Z[MAXP][MAXP];
    double HZ[MAXP][MAXP], Hr[MAXP][MAXP], A[MAXP][MAXP];
    double nnls_M[MAXC][MAXC + 1];
} problem;

static double sigmoid(double t)
{
    if (t >= 0)
        return 1.0 / (1.0 + exp(-t));
    double e = exp(t);
    return e / (1.0 + e);
}

/* log(1 + e^t) without overflow or loss of digits for large |t|. */
static double softplus(double t) { return fmax(t, 0.0) + log1p(exp(-fabs(t))); }

static void linear_index(const problem *pb, const double *theta, double *eta)
{
    size_t n = pb->n;
    for (size_t i = 0; i < n; i++)
        eta[i] = theta[0];
    for (size_t j = 0; j < pb->k; j++) {
        double b = theta[1 + j];
        if (b == 0)
            continue;
        const double *col = pb->x + j * n;
        for (size_t i = 0; i < n; i++)
            eta[i] += b * col[i];
    }
}

static double penalty(const problem *pb, const double *theta)
{
    double s = 0;
    for (size_t j = 0; j < pb->k; j++) {
        double d = theta[1 + j] - pb->anchor[j];
        s += d * d;
    }
    return 0.5 * pb->lambda * s;
}

/* Objective at theta; leaves the linear index in pb->eta. */
static double objective(problem *pb, const double *theta)
{
    linear_index(pb, theta, pb->eta);
    double s = 0;
    for (size_t i = 0; i < pb->n; i++) {
        double v = pb->v ? pb->v[i] : 1.0;
        if (v == 0)
            continue;
        double t = pb->eta[i];
        s += v * (softplus(t) - (pb->y[i] ? t : 0.0));
    }
    return s + penalty(pb, theta);
}

/* Gradient and Hessian at the point whose linear index is in pb->eta. */
static void gradient_hessian(problem *pb, const double *theta, double *g, double H[MAXP][MAXP])
{
    size_t n = pb->n, k = pb->k;
    double g0 = 0, h00 = 0;
    for (size_t i = 0; i < n; i++) {
        double v = pb->v ? pb->v[i] : 1.0;
        double p = sigmoid(pb->eta[i]);
        pb->r[i] = v * (p - (double)pb->y[i]);
        pb->h[i] = v * p * (1.0 - p);
        g0 += pb->r[i];
        h00 += pb->h[i];
    }
    g[0] = g0;
    H[0][0] = h00;
    double *hx = pb->hx;
    for (size_t j = 0; j < k; j++) {
        const double *cj = pb->x + j * n;
        double gj = 0, h0j = 0;
        for (size_t i = 0; i < n; i++) {
            gj += pb->r[i] * cj[i];
            hx[i] = pb->h[i] * cj[i];
            h0j += hx[i];
        }
        g[1 + j] = gj + pb->lambda * (theta[1 + j] - pb->anchor[j]);
        H[0][1 + j] = H[1 + j][0] = h0j;
        for (size_t l = 0; l <= j; l++) {
            const double *cl = pb->x + l * n;
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += hx[i] * cl[i];
            H[1 + j][1 + l] = H[1 + l][1 + j] = s;
        }
        H[1 + j][1 + j] += pb->lambda;
    }
}

static double dot(const double *a, const double *b, size_t p);

/* Result of one Newton step on the face of the working set. */
typedef struct {
    double d[MAXP];      /* the step */
    double mu[MAXC];     /* multiplier per working row; 0 for a row dependent on earlier ones */
    double decrement;    /* −g·d: the Newton decrement (damped when a ridge was needed) */
    double stationarity; /* max |g + A_Wᵀμ|: the KKT stationarity residual at θ */
} newton;

/* Cholesky of the m×m matrix A (lower factor in place). Returns -1 at a pivot not above
 * `floor`: A is then not positive definite to working precision. */
static int cholesky(size_t m, double (*A)[MAXP], double floor)
{
    for (size_t c = 0; c < m; c++) {
        double s = A[c][c];
        for (size_t l = 0; l < c; l++)
            s -= A[c][l] * A[c][l];
        if (!(s > floor))
            return -1;
        A[c][c] = sqrt(s);
        for (size_t i = c + 1; i < m; i++) {
            double t = A[i][c];
            for (size_t l = 0; l < c; l++)
                t -= A[i][l] * A[c][l];
            A[i][c] = t / A[c][c];
        }
    }
    return 0;
}

/* Newton step on the face of the working set: minimize g·d + ½dᵀHd subject to A_W d = 0,
 * by the null-space method, which is rank-revealing where the KKT system is not.
 *
 * 1. The working rows are orthonormalized in order (Gram-Schmidt, twice for accuracy).
 *    A row whose residual is below 1e-10 of its norm is linearly dependent on earlier
 *    rows: it is implied by them, adds nothing to the face, and gets multiplier 0.
 *    (A KKT matrix with such a row — or a row twice — is exactly singular whatever is
 *    done to H; that was the "Newton system singular" failure on ordinary data.)
 * 2. An orthonormal basis Z of the face's null space completes that basis (pivoted on
 *    the projector's diagonal, so every accepted vector has residual ≥ 1/√p).
 * 3. The reduced system ZᵀHZ·u = −Zᵀg is solved by Cholesky after scaling its diagonal
 *    to 1. H is positive semidefinite; if the reduced Hessian is singular to working
 *    precision (collinear or constant components with λ = 0) a growing ridge δ is added
 *    in the scaled metric: a damped Newton step, still a descent direction. With a
 *    large δ it becomes a scaled projected-gradient step, so a step always exists.
 * 4. Multipliers solve A_Wᵀμ = −(g + Hd) exactly on the independent rows (A = L·Q, Q
 *    orthonormal, so Lᵀμ = −Q(g + Hd)).
 * Returns 0, or -1 when the data produce non-finite numbers. */
static int newton_step(problem *pb, const double *g, double H[MAXP][MAXP], const size_t *work,
                       size_t nwork, newton *out)
{
    size_t p = pb->p;
    double (*Q)[MAXP] = pb->Q, (*L)[MAXP] = pb->L, (*P)[MAXP] = pb->P, (*Z)[MAXP] = pb->Z;
    double (*HZ)[MAXP] = pb->HZ, (*Hr)[MAXP] = pb->Hr, (*A)[MAXP] = pb->A;
    size_t rowof[MAXP], r = 0; /* rowof[i]: working index of orthonormal row i */
    memset(out, 0, sizeof *out);
    for (size_t w = 0; w < nwork && r < p; w++) {
        const double *c = pb->cons[work[w]];
        double norm = sqrt(dot(c, c, p));
        if (!(norm > 0))
            continue;
        double q[MAXP];
        for (size_t j = 0; j < p; j++)
            q[j] = c[j] / norm;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < r; i++) {
                double t = dot(Q[i], q, p);
                for (size_t j = 0; j < p; j++)
                    q[j] -= t * Q[i][j];
            }
        double res = sqrt(dot(q, q, p));
        if (res <= 1e-10)
            continue; /* dependent on earlier working rows */
        for (size_t j = 0; j < p; j++)
            Q[r][j] = q[j] / res;
        rowof[r++] = w;
    }
    for (size_t i = 0; i < r; i++)
        for (size_t l = 0; l <= i; l++)
            L[i][l] = dot(pb->cons[work[rowof[i]]], Q[l], p);

    /* Null-space basis: P = I − QᵀQ, then repeatedly take P's largest column. */
    size_t m = p - r;
    for (size_t i = 0; i < p; i++)
        for (size_t j = 0; j < p; j++) {
            double s = i == j ? 1.0 : 0.0;
            for (size_t l = 0; l < r; l++)
                s -= Q[l][i] * Q[l][j];
            P[i][j] = s;
        }
    for (size_t z = 0; z < m; z++) {
        size_t best = 0;
        for (size_t i = 1; i < p; i++)
            if (P[i][i] > P[best][best])
                best = i;
        double v[MAXP];
        for (size_t j = 0; j < p; j++)
            v[j] = P[j][best];
        for (size_t i = 0; i < r; i++) {
            double t = dot(Q[i], v, p);
            for (size_t j = 0; j < p; j++)
                v[j] -= t * Q[i][j];
        }
        for (size_t i = 0; i < z; i++) {
            double t = dot(Z[i], v, p);
            for (size_t j = 0; j < p; j++)
                v[j] -= t * Z[i][j];
        }
        double norm = sqrt(dot(v, v, p));
        if (!(norm > 0))
            return -1;
        for (size_t j = 0; j < p; j++)
            Z[z][j] = v[j] / norm;
        for (size_t i = 0; i < p; i++)
            for (size_t j = 0; j < p; j++)
                P[i][j] -= Z[z][i] * Z[z][j];
    }

    /* Reduced Hessian and gradient, diagonally scaled. */
    double gr[MAXP], scale[MAXP], u[MAXP];
    for (size_t z = 0; z < m; z++)
        for (size_t i = 0; i < p; i++)
            HZ[z][i] = dot(H[i], Z[z], p);
    double maxdiag = 0;
    for (size_t a = 0; a < m; a++) {
        for (size_t b = 0; b <= a; b++)
            Hr[a][b] = Hr[b][a] = dot(Z[a], HZ[b], p);
        gr[a] = dot(Z[a], g, p);
        maxdiag = fmax(maxdiag, Hr[a][a]);
    }
    if (!isfinite(maxdiag))
        return -1;
    /* With every example saturated, H underflows to 0: the scaling is then the
     * identity and the ridge turns the step into plain projected gradient descent,
     * whose length the caller's trust region on η sets. */
    for (size_t a = 0; a < m; a++)
        scale[a] = maxdiag > 0 ? 1.0 / sqrt(fmax(Hr[a][a], 1e-14 * maxdiag)) : 1.0;
    double ridge = 0;
    int factored = m == 0;
    for (int attempt = 0; attempt < 16 && !factored; attempt++) {
        for (size_t a = 0; a < m; a++)
            for (size_t b = 0; b <= a; b++)
                A[a][b] = A[b][a] = Hr[a][b] * scale[a] * scale[b] + (a == b ? ridge : 0.0);
        factored = cholesky(m, A, 1e-12) == 0;
        ridge = ridge == 0 ? 1e-10 : ridge * 100.0;
    }
    if (!factored)
        return -1;
    for (size_t a = 0; a < m; a++) { /* forward: L y = −S·gr */
        double s = -scale[a] * gr[a];
        for (size_t b = 0; b < a; b++)
            s -= A[a][b] * u[b];
        u[a] = s / A[a][a];
    }
    for (size_t a = m; a-- > 0;) { /* back: Lᵀ x = y, then u = S·x */
        double s = u[a];
        for (size_t b = a + 1; b < m; b++)
            s -= A[b][a] * u[b];
        u[a] = s / A[a][a];
    }
    for (size_t a = 0; a < m; a++)
        u[a] *= scale[a];
    for (size_t j = 0; j < p; j++) {
        double s = 0;
        for (size_t a = 0; a < m; a++)
            s += Z[a][j] * u[a];
        out->d[j] = s;
    }
    out->decrement = -dot(g, out->d, p);

    /* Multipliers: Lᵀμ = −Q(g + Hd) on the independent rows. */
    double t[MAXP], qt[MAXP], mu[MAXP];
    for (size_t i = 0; i < p; i++)
        t[i] = -(g[i] + dot(H[i], out->d, p));
    for (size_t i = 0; i < r; i++)
        qt[i] = dot(Q[i], t, p);
    for (size_t i = r; i-- > 0;) {
        double s = qt[i];
        for (size_t l = i + 1; l < r; l++)
            s -= L[l][i] * mu[l];
        mu[i] = s / L[i][i];
    }
    for (size_t i = 0; i < r; i++)
        out->mu[rowof[i]] = mu[i];
    double res = 0;
    for (size_t j = 0; j < p; j++) {
        double s = g[j];
        for (size_t w = 0; w < nwork; w++)
            s += out->mu[w] * pb->cons[work[w]][j];
        res = fmax(res, fabs(s));
    }
    out->stationarity = res;
    if (!isfinite(out->decrement) || !isfinite(res))
        return -1;
    return 0;
}

static double dot(const double *a, const double *b, size_t p)
{
    double s = 0;
    for (size_t i = 0; i < p; i++)
        s += a[i] * b[i];
    return s;
}

/* Constraint rows for the mode and options (see the file comment). */
static void build_constraints(problem *pb, const cl_fit_options *o, double lower[],
                              double upper[])
{
    size_t k = pb->k, p = pb->p;
    pb->ncons = 0;
    for (size_t j = 0; j < k; j++) {
        lower[j] = 0;
        upper[j] = 1;
    }
    if (o->mode != CL_FIT_SIMPLEX)
        return;
    int cap = o->prior_weights && o->max_change > 0;
    for (size_t j = 0; j < k; j++) {
        if (cap) {
            lower[j] = fmax(0.0, o->prior_weights[j] - o->max_change);
            upper[j] = fmin(1.0, o->prior_weights[j] + o->max_change);
        }
        if (lower[j] > 0) {
            /* (w⁰−cap)·Σβ − βⱼ <= 0, which also implies βⱼ >= 0 */
            double *c = pb->cons[pb->ncons++];
            memset(c, 0, p * sizeof *c);
            for (size_t l = 0; l < k; l++)
                c[1 + l] = lower[j];
            c[1 + j] -= 1.0;
        } else {
            double *c = pb->cons[pb->ncons++];
            memset(c, 0, p * sizeof *c);
            c[1 + j] = -1.0;
        }
        if (upper[j] < 1) {
            double *c = pb->cons[pb->ncons++];
            memset(c, 0, p * sizeof *c);
            for (size_t l = 0; l < k; l++)
                c[1 + l] = -upper[j];
            c[1 + j] += 1.0;
        }
    }
}

/* Adds constraint c to the working set unless it is already there. A row twice in W
 * would make the face's constraint matrix rank-deficient (the step's solve copes, but
 * the set must stay a set: it bounds W's size by the number of constraints). */
static void work_add(size_t c, size_t *work, size_t *nwork)
{
    for (size_t w = 0; w < *nwork; w++)
        if (work[w] == c)
            return;
    work[(*nwork)++] = c;
}

/* The plain βⱼ >= 0 row, or ncons when j's lower bound is a cap row instead. */
static size_t bound_row(const problem *pb, size_t j)
{
    for (size_t c = 0; c < pb->ncons; c++) {
        const double *row = pb->cons[c];
        int plain = row[1 + j] == -1.0;
        for (size_t l = 0; l < pb->k && plain; l++)
            plain = l == j || row[1 + l] == 0;
        if (plain)
            return c;
    }
    return pb->ncons;
}

/* For a plain bound row (one non-zero coefficient), the index in θ it pins; else p. */
static size_t plain_bound_component(const problem *pb, size_t c)
{
    size_t nonzero = 0, at = pb->p;
    for (size_t j = 1; j < pb->p; j++)
        if (pb->cons[c][j] != 0) {
            nonzero++;
            at = j;
        }
    return nonzero == 1 ? at : pb->p;
}

/* KKT check at θ given the step's multipliers: stationarity |g + A_Wᵀμ| <= stat_tol,
 * dual feasibility μ >= −mu_tol, primal feasibility c·θ <= feas_tol for every row and
 * complementary slackness |c·θ| <= feas_tol for the working rows (the only ones with
 * μ ≠ 0). Returns 1 when all hold. */
static int kkt_holds(const problem *pb, const double *theta, const newton *nt,
                     const size_t *work, size_t nwork, double stat_tol, double mu_tol,
                     double feas_tol)
{
    if (!(nt->stationarity <= stat_tol))
        return 0;
    for (size_t w = 0; w < nwork; w++)
        if (nt->mu[w] < -mu_tol || fabs(dot(pb->cons[work[w]], theta, pb->p)) > feas_tol)
            return 0;
    for (size_t c = 0; c < pb->ncons; c++)
        if (dot(pb->cons[c], theta, pb->p) > feas_tol)
            return 0;
    return 1;
}


/* --- the vertex β = 0 ------------------------------------------------------------ */

/* Least squares over the passive rows P: min |Σ z_a·row_a − t| (β parts), by the
 * normal equations with partial pivoting (Lawson–Hanson keeps P linearly
 * independent; a zero pivot yields a zero coefficient). */
static void passive_solve(problem *pb, const size_t *P, size_t np, const double *t, double *z)
{
    size_t k = pb->k;
    double (*M)[MAXC + 1] = pb->nnls_M;
    for (size_t a = 0; a < np; a++) {
        for (size_t b = 0; b < np; b++)
            M[a][b] = dot(pb->cons[P[a]] + 1, pb->cons[P[b]] + 1, k);
        M[a][np] = dot(pb->cons[P[a]] + 1, t, k);
    }
    for (size_t c = 0; c < np; c++) {
        size_t piv = c;
        for (size_t i = c + 1; i < np; i++)
            if (fabs(M[i][c]) > fabs(M[piv][c]))
                piv = i;
        for (size_t j = 0; j <= np; j++) {
            double tmp = M[c][j];
            M[c][j] = M[piv][j];
            M[piv][j] = tmp;
        }
        for (size_t i = c + 1; i < np; i++) {
            double f = M[c][c] != 0 ? M[i][c] / M[c][c] : 0.0;
            for (size_t j = c; j <= np; j++)
                M[i][j] -= f * M[c][j];
        }
    }
    for (size_t c = np; c-- > 0;) {
        double s = M[c][np];
        for (size_t j = c + 1; j < np; j++)
            s -= M[c][j] * z[j];
        z[c] = M[c][c] != 0 ? s / M[c][c] : 0.0;
    }
}

/* Projection of t onto the polar side of the feasible cone: μ >= 0 minimizing
 * |Σ μ_c·row_c − t| over every constraint row (Lawson & Hanson 1974; exact in finitely
 * many steps). u = t − Σ μ_c·row_c is then the projection of t onto the cone
 * {β : row·β <= 0 for all rows} (Moreau). */
static void cone_project(problem *pb, const double *t, double *u)
{
    size_t k = pb->k, m = pb->ncons;
    double mu[MAXC] = {0}, z[MAXC], zp[MAXC];
    int passive[MAXC] = {0};
    double eps = 1e-13 * (1.0 + sqrt(dot(t, t, k)));
    for (int outer = 0; outer < 1000; outer++) {
        for (size_t j = 0; j < k; j++) {
            u[j] = t[j];
            for (size_t c = 0; c < m; c++)
                u[j] -= mu[c] * pb->cons[c][1 + j];
        }
        size_t best = m;
        double best_w = eps;
        for (size_t c = 0; c < m; c++) {
            double w = dot(pb->cons[c] + 1, u, k);
            if (!passive[c] && w > best_w) {
                best_w = w;
                best = c;
            }
        }
        if (best == m)
            break;
        passive[best] = 1;
        for (int inner = 0; inner < 1000; inner++) {
            size_t P[MAXC], np = 0;
            for (size_t c = 0; c < m; c++)
                if (passive[c])
                    P[np++] = c;
            passive_solve(pb, P, np, t, zp);
            memset(z, 0, m * sizeof *z);
            int all_positive = 1;
            for (size_t a = 0; a < np; a++) {
                z[P[a]] = zp[a];
                all_positive &= zp[a] > 0;
            }
            if (all_positive) {
                memcpy(mu, z, m * sizeof *mu);
                break;
            }
            double alpha = 1.0;
            for (size_t a = 0; a < np; a++)
                if (zp[a] <= 0)
                    alpha = fmin(alpha, mu[P[a]] / (mu[P[a]] - zp[a]));
            for (size_t c = 0; c < m; c++) {
                mu[c] += alpha * (z[c] - mu[c]);
                if (passive[c] && mu[c] <= 1e-15 * (1.0 + fabs(mu[c]))) {
                    mu[c] = 0;
                    passive[c] = 0;
                }
            }
        }
    }
    for (size_t j = 0; j < k; j++) {
        u[j] = t[j];
        for (size_t c = 0; c < m; c++)
            u[j] -= mu[c] * pb->cons[c][1 + j];
    }
}

/* The vertex β = 0 (numerically: Σβ·max|x| <= 1e-12), where the fit collapses when no
 * component ranks winners higher. There every constraint row is active at once (they
 * are homogeneous), 2k rows in k dimensions, so no working set of independent rows
 * describes the vertex and an active-set method cycles between sign-flipping
 * multipliers. The vertex is decided on all rows together instead: with the intercept
 * at its optimum for β = 0 (the weighted log-odds), β = 0 is optimal iff −∇_βF lies
 * in the cone spanned by the rows, i.e. its projection u onto the feasible cone is 0.
 * Otherwise u is a feasible descent direction (g·u = −|u|²): a projected-gradient step
 * along it leaves the vertex, and the rows active along u form the new working set.
 * Returns 1 when β = 0 is optimal, 0 after a step, -1 when no step decreases F. */
static int vertex_step(problem *pb, double *theta, double *f, double *g, double H[MAXP][MAXP],
                       double win_rate, double xscale, double stationarity_tol, size_t *work,
                       size_t *nwork)
{
    size_t k = pb->k, n = pb->n;
    for (size_t j = 0; j < k; j++)
        theta[1 + j] = 0;
    theta[0] = log(win_rate / (1.0 - win_rate));
    *f = objective(pb, theta);
    gradient_hessian(pb, theta, g, H);
    double t[MAXP], u[MAXP];
    for (size_t j = 0; j < k; j++)
        t[j] = -g[1 + j];
    cone_project(pb, t, u);
    double unorm = 0, uu = dot(u, u, k);
    for (size_t j = 0; j < k; j++)
        unorm = fmax(unorm, fabs(u[j]));
    if (unorm <= stationarity_tol) {
        *nwork = 0; /* β = 0 with every row active: nothing left to release */
        return 1;
    }
    for (size_t c = 0; c < pb->ncons; c++)
        if (dot(pb->cons[c] + 1, u, k) > 1e-9 * unorm * sqrt(dot(pb->cons[c], pb->cons[c], pb->p)))
            return -1; /* the projection failed to land in the cone */
    /* Step length: the quadratic model's minimizer along u, then no example's η may
     * move by more than MAX_ETA_STEP, then Armijo backtracking. */
    double uHu = 0;
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++)
            uHu += u[a] * H[1 + a][1 + b] * u[b];
    double largest = 0;
    for (size_t i = 0; i < n; i++) {
        double de = 0;
        for (size_t j = 0; j < k; j++)
            de += u[j] * pb->x[j * n + i];
        if (!pb->v || pb->v[i] > 0)
            largest = fmax(largest, fabs(de));
    }
    double alpha = uHu > 0 ? uu / uHu : 1.0 / xscale;
    if (largest > 0)
        alpha = fmin(alpha, MAX_ETA_STEP / largest);
    double trial[MAXP];
    memcpy(trial, theta, pb->p * sizeof *trial);
    for (int ls = 0; ls < 60; ls++, alpha *= 0.5) {
        for (size_t j = 0; j < k; j++)
            trial[1 + j] = alpha * u[j];
        double fn = objective(pb, trial);
        if (isfinite(fn) && fn <= *f - 1e-4 * alpha * uu) {
            memcpy(theta, trial, pb->p * sizeof *theta);
            *f = fn;
            double bnorm = sqrt(dot(theta + 1, theta + 1, k));
            *nwork = 0;
            for (size_t c = 0; c < pb->ncons; c++) {
                double cn = sqrt(dot(pb->cons[c], pb->cons[c], pb->p));
                if (dot(pb->cons[c], theta, pb->p) >= -1e-12 * cn * bnorm)
                    work_add(c, work, nwork);
            }
            for (size_t j = 0; j < k; j++)
                if (theta[1 + j] < 0)
                    theta[1 + j] = 0; /* the projection is feasible up to rounding */
            *f = objective(pb, theta);
            return 0;
        }
    }
    *f = objective(pb, theta);
    return -1;
}

static int check_data(const cl_fit_data *d, char *err, size_t errlen)
{
    if (!d || !d->x || !d->won || d->n == 0)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: no training examples");
    if (d->k == 0 || d->k > CL_FIT_MAX_COMPONENTS)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: %zu components (want 1..%d)", d->k,
                         CL_FIT_MAX_COMPONENTS);
    if (d->n > SIZE_MAX / sizeof(double) / (d->k + 3))
        return cl_seterr(err, errlen, CL_ENOMEM, "fit: %zu examples is too many", d->n);
    for (size_t i = 0; i < d->n * d->k; i++)
        if (!isfinite(d->x[i]))
            return cl_seterr(err, errlen, CL_EINVAL,
                             "fit: component %zu of example %zu is not a finite number",
                             i / d->n, i % d->n);
    for (size_t i = 0; i < d->n; i++) {
        if (d->won[i] > 1)
            return cl_seterr(err, errlen, CL_EINVAL, "fit: example %zu has label %u (want 0/1)",
                             i, (unsigned)d->won[i]);
        if (d->weight && (!isfinite(d->weight[i]) || d->weight[i] < 0))
            return cl_seterr(err, errlen, CL_EINVAL, "fit: example %zu has weight %g (want >= 0)",
                             i, d->weight[i]);
    }
    return CL_OK;
}

static int check_options(const cl_fit_data *d, const cl_fit_options *o, char *err,
                         size_t errlen)
{
    if (o->mode != CL_FIT_SIMPLEX && o->mode != CL_FIT_UNCONSTRAINED)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: unknown mode %d", (int)o->mode);
    if (!isfinite(o->l2) || o->l2 < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: l2 = %g (want a finite value >= 0)", o->l2);
    if (!isfinite(o->max_change) || o->max_change < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: max_change = %g (want >= 0)",
                         o->max_change);
    if (!isfinite(o->prior_slope) || o->prior_slope < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: prior_slope = %g (want >= 0)",
                         o->prior_slope);
    if (!isfinite(o->tolerance) || o->tolerance < 0)
        return cl_seterr(err, errlen, CL_EINVAL, "fit: tolerance = %g (want >= 0)", o->tolerance);
    if (o->mode == CL_FIT_SIMPLEX && o->max_change > 0 && !o->prior_weights)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "fit: max_change needs the champion's weights (prior_weights)");
    if (o->mode == CL_FIT_SIMPLEX && o->prior_weights) {
        double s = 0;
        for (size_t j = 0; j < d->k; j++) {
            double w = o->prior_weights[j];
            if (!isfinite(w) || w < 0)
                return cl_seterr(err, errlen, CL_EINVAL, "fit: prior weight %zu is %g (want >= 0)",
                                 j, w);
            s += w;
        }
        if (fabs(s - 1.0) > 1e-9)
            return cl_seterr(err, errlen, CL_EINVAL, "fit: prior weights sum to %.12g, not 1", s);
    }
    return CL_OK;
}

/* Calibration of one fixed score column: unconstrained fit of σ(a + b·s), with a
 * negligible ridge on b so that perfectly separated data still has a finite answer. */
static int fit_calibration(const double *score, const cl_fit_data *d, double *a, double *b,
                           char *err, size_t errlen)
{
    cl_fit_data one = {d->n, 1, score, d->won, d->weight};
    cl_fit_options o;
    cl_fit_options_default(&o);
    o.mode = CL_FIT_UNCONSTRAINED;
    double total = 0;
    for (size_t i = 0; i < d->n; i++)
        total += d->weight ? d->weight[i] : 1.0;
    o.l2 = 1e-10 * (1.0 + total);
    cl_fit_result r;
    int rc = cl_fit(&one, &o, &r, err, errlen);
    if (rc != CL_OK)
        return rc;
    *a = r.intercept;
    *b = r.coef[0];
    return CL_OK;
}

int cl_fit(const cl_fit_data *d, const cl_fit_options *opts, cl_fit_result *r, char *err,
           size_t errlen)
{
    memset(r, 0, sizeof *r);
    int rc = check_data(d, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_fit_options o;
    if (opts)
        o = *opts;
    else
        cl_fit_options_default(&o);
    if ((rc = check_options(d, &o, err, errlen)) != CL_OK)
        return rc;
    double tolerance = o.tolerance > 0 ? o.tolerance : 1e-20;
    int max_iterations = o.max_iterations > 0 ? o.max_iterations : 200;

    size_t n = d->n, k = d->k;
    double total = 0, total_sq = 0, won_weight = 0, xscale = 1.0;
    for (size_t i = 0; i < n; i++) {
        double v = d->weight ? d->weight[i] : 1.0;
        total += v;
        total_sq += v * v;
        if (v > 0) {
            if (d->won[i]) {
                r->n_won++;
                won_weight += v;
            } else {
                r->n_lost++;
            }
        }
    }
    if (r->n_won == 0 || r->n_lost == 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "fit: needs both won and lost outcomes (have %zu won, %zu lost)",
                         r->n_won, r->n_lost);
    for (size_t i = 0; i < n * k; i++)
        xscale = fmax(xscale, fabs(d->x[i]));
    r->k = k;
    r->weight_sum = total;
    r->effective_n = total * total / total_sq;

    problem *pb = calloc(1, sizeof *pb);
    double *scratch = malloc(4 * n * sizeof *scratch);
    if (!pb || !scratch) {
        free(pb);
        free(scratch);
        return cl_seterr(err, errlen, CL_ENOMEM, "fit: cannot allocate for %zu examples", n);
    }
    pb->n = n;
    pb->k = k;
    pb->p = k + 1;
    pb->x = d->x;
    pb->y = d->won;
    pb->v = d->weight;
    pb->lambda = o.l2;
    pb->eta = scratch;
    pb->h = scratch + n;
    pb->r = scratch + 2 * n;
    pb->hx = scratch + 3 * n;

    double theta[MAXP] = {0}, lower[CL_FIT_MAX_COMPONENTS], upper[CL_FIT_MAX_COMPONENTS];
    build_constraints(pb, &o, lower, upper);

    /* Anchor and starting point. The start must be feasible; β = s·w⁰ (s > 0) is
     * feasible for every cap, with slack s·cap on each cap constraint. */
    double start_scale = 0.01 / xscale;
    if (o.mode == CL_FIT_SIMPLEX && o.prior_weights) {
        double b0 = o.prior_slope;
        if (b0 == 0) {
            double *s0 = pb->hx; /* scratch until the solver starts: the champion's score */
            for (size_t i = 0; i < n; i++) {
                double s = 0;
                for (size_t j = 0; j < k; j++)
                    s += o.prior_weights[j] * d->x[j * n + i];
                s0[i] = s;
            }
            double a0;
            rc = fit_calibration(s0, d, &a0, &b0, err, errlen);
            if (rc != CL_OK)
                goto done;
            /* A champion score that does not rank winners higher anchors at 0. */
            b0 = fmax(b0, 0.0);
        }
        r->anchor_slope = b0;
        for (size_t j = 0; j < k; j++) {
            pb->anchor[j] = b0 * o.prior_weights[j];
            theta[1 + j] = (b0 > 0 ? b0 : start_scale) * o.prior_weights[j];
        }
    } else if (o.mode == CL_FIT_SIMPLEX) {
        for (size_t j = 0; j < k; j++)
            theta[1 + j] = start_scale / (double)k;
    }
    {
        double mean_y = won_weight / total;
        double offset = 0;
        for (size_t j = 0; j < k; j++) {
            if (theta[1 + j] == 0)
                continue;
            double m = 0;
            for (size_t i = 0; i < n; i++)
                m += (d->weight ? d->weight[i] : 1.0) * d->x[j * n + i];
            offset += theta[1 + j] * m / total;
        }
        theta[0] = log(mean_y / (1.0 - mean_y)) - offset;
    }

    size_t work[MAXC], nwork = 0;
    for (size_t c = 0; c < pb->ncons; c++)
        if (dot(pb->cons[c], theta, pb->p) >= 0)
            work[nwork++] = c; /* only βⱼ = 0 rows (w⁰ⱼ = 0) can be tight at the start */

    double f = objective(pb, theta);
    double g[MAXP], H[MAXP][MAXP], trial[MAXP];
    newton nt;
    double *step = nt.d;
    double decrement_floor = tolerance * (1.0 + total);
    /* KKT tolerances. The gradient is a sum of Σv terms of size up to max|x|, so its
     * rounding floor is ~1e-16·Σv·max|x|; stationarity is demanded to 1e-9 of that
     * scale, multipliers (same units) to 1e-10, and constraints (rows of O(1)
     * coefficients in β) to 1e-9 of Σ|β| (floored at 1e-15/max|x|). */
    double gradient_scale = (1.0 + total) * xscale;
    double stationarity_tol = 1e-9 * gradient_scale;
    double multiplier_floor = 1e-10 * gradient_scale;
    int converged = 0, iter;
    for (iter = 0; iter < max_iterations; iter++) {
        if (o.mode == CL_FIT_SIMPLEX) {
            double bs = 0;
            for (size_t j = 0; j < k; j++)
                bs += fabs(theta[1 + j]);
            if (bs * xscale <= 1e-12) {
                int vr = vertex_step(pb, theta, &f, g, H, won_weight / total, xscale,
                                     stationarity_tol, work, &nwork);
                if (vr == 1) {
                    r->kkt_residual = fabs(g[0]) / gradient_scale;
                    converged = 1;
                    break;
                }
                if (vr < 0) {
                    rc = cl_seterr(err, errlen, CL_ERR,
                                   "fit: no descent from β = 0 at iteration %d", iter);
                    goto done;
                }
                continue;
            }
        }
        gradient_hessian(pb, theta, g, H);
        if (newton_step(pb, g, H, work, nwork, &nt) != 0) {
            rc = cl_seterr(err, errlen, CL_ERR,
                           "fit: non-finite Newton step at iteration %d (component values too "
                           "large to fit in double precision?)",
                           iter);
            goto done;
        }
        /* The solve leaves ~1e-20 in directions a plain bound pins; zero them so
         * that a weight at 0 stays exactly 0. */
        for (size_t w = 0; w < nwork; w++) {
            const double *row = pb->cons[work[w]];
            size_t nonzero = 0, at = 0;
            for (size_t j = 1; j < pb->p; j++)
                if (row[j] != 0) {
                    nonzero++;
                    at = j;
                }
            if (nonzero == 1)
                step[at] = 0;
        }
        double decrement = -dot(g, step, pb->p);
        r->newton_decrement = decrement;
        double beta_sum = 0;
        for (size_t j = 0; j < k; j++)
            beta_sum += fabs(theta[1 + j]);
        /* Relative to Σ|β|, with a floor on β's natural scale (logit per unit of x, so
         * 1/max|x|) for when β collapses toward 0 (no positive association). */
        double feasibility_tol = 1e-9 * (beta_sum + 1e-6 / xscale);
        /* The active constraint that most wants to let go (most negative multiplier). */
        size_t worst = nwork;
        double worst_mu = -multiplier_floor;
        for (size_t w = 0; w < nwork; w++)
            if (nt.mu[w] < worst_mu) {
                worst_mu = nt.mu[w];
                worst = w;
            }
        /* Stationary on this face: the decrement is at the floor, or — where it stalls
         * above the floor because no finite optimum exists (λ = 0 and data separable
         * along a feasible direction: F keeps creeping down as β runs off to
         * infinity) — it is in the rounding regime and the face's gradient is within
         * 1e-12 of its scale, as optimal as double precision can tell (where a
         * gradient-tolerance solver such as lbfgs stops too). Then θ is optimal if no
         * active constraint wants to let go and the KKT conditions hold; otherwise
         * the constraint with the most negative multiplier is released. If only
         * stationarity is short (a ridge-damped step), the step is still taken. */
        double face_tol = decrement <= decrement_floor ? stationarity_tol : 1e-3 * stationarity_tol;
        if (decrement <= decrement_floor ||
            (decrement < 1e-8 * (1.0 + total) && nt.stationarity <= face_tol)) {
            if (worst < nwork) {
                work[worst] = work[--nwork];
                continue;
            }
            if (kkt_holds(pb, theta, &nt, work, nwork, face_tol, multiplier_floor,
                          feasibility_tol)) {
                r->kkt_residual = nt.stationarity / gradient_scale;
                converged = 1;
                break;
            }
        }
        /* Longest step along `step`: no example's linear index may move by more than
         * MAX_ETA_STEP + max|η| (a trust region on η: where examples sit saturated on
         * the wrong side — e.g. a start at a huge champion slope on separable data — the
         * curvature is ~0 and the raw step astronomically long; growing with |η| lets
         * the iterate still reach a far optimum, such as a calibration slope on
         * separable data, geometrically). Near the optimum it never binds, so
         * convergence stays quadratic. Then the ratio test over rows not in W. */
        double alpha_max = 1.0;
        {
            double *deta = pb->hx; /* free scratch between Hessians */
            for (size_t i = 0; i < n; i++)
                deta[i] = step[0];
            for (size_t j = 0; j < k; j++)
                if (step[1 + j] != 0)
                    for (size_t i = 0; i < n; i++)
                        deta[i] += step[1 + j] * d->x[j * n + i];
            double largest = 0, spread = 0; /* pb->eta holds η(θ) here */
            for (size_t i = 0; i < n; i++)
                if (!d->weight || d->weight[i] > 0) {
                    largest = fmax(largest, fabs(deta[i]));
                    spread = fmax(spread, fabs(pb->eta[i]));
                }
            double radius = MAX_ETA_STEP + spread;
            if (largest > radius)
                alpha_max = radius / largest;
        }
        size_t blocking = pb->ncons;
        /* Constraints never involve the intercept, so "parallel" is judged on β alone
         * (the intercept's step is on another scale and would mask it). */
        double step_norm = sqrt(dot(step + 1, step + 1, k));
        for (size_t c = 0; c < pb->ncons; c++) {
            int in_work = 0;
            for (size_t w = 0; w < nwork; w++)
                in_work |= work[w] == c;
            if (in_work)
                continue;
            double cd = dot(pb->cons[c], step, pb->p);
            double cnorm = sqrt(dot(pb->cons[c], pb->cons[c], pb->p));
            if (cd <= 1e-12 * cnorm * step_norm)
                continue; /* moving away from, or parallel to, this constraint */
            double slack = -dot(pb->cons[c], theta, pb->p);
            double a = fmax(slack, 0.0) / cd;
            if (a < alpha_max) {
                alpha_max = a;
                blocking = c;
            }
        }
        /* A blocking row so close that the whole step to it promises a decrease below
         * the rounding noise of F: F cannot tell that step from noise, so Armijo would
         * shorten it forever without reaching the row. The step to the row is taken
         * as it is (it keeps every working row satisfied and lands on the blocker). */
        double noise = 1e-13 * (1.0 + fabs(f));
        int to_blocker = blocking < pb->ncons && alpha_max * decrement <= noise;
        /* Backtracking (Armijo). Near the optimum the decrease is at the level of the
         * rounding noise in f, so a step that keeps f within that noise is taken. */
        double alpha = alpha_max, f_new = f;
        int accepted = 0;
        if (to_blocker) {
            for (size_t j = 0; j < pb->p; j++)
                trial[j] = theta[j] + alpha * step[j];
            f_new = objective(pb, trial);
            accepted = isfinite(f_new);
        }
        for (int ls = 0; ls < 60 && !accepted; ls++) {
            for (size_t j = 0; j < pb->p; j++)
                trial[j] = theta[j] + alpha * step[j];
            f_new = objective(pb, trial);
            if (isfinite(f_new) && (f_new <= f - 1e-4 * alpha * decrement ||
                                    (decrement < 1e-8 * (1.0 + total) && f_new <= f + noise))) {
                accepted = 1;
                break;
            }
            alpha *= 0.5;
        }
        if (!accepted) {
            /* No progress above the rounding noise of F: at the floor of double
             * precision. That is the optimum only if the KKT conditions say so. */
            if (decrement < 1e-8 * (1.0 + total)) {
                if (worst < nwork) {
                    work[worst] = work[--nwork];
                    f = objective(pb, theta); /* η back at θ (the trials moved it) */
                    continue;
                }
                if (kkt_holds(pb, theta, &nt, work, nwork, stationarity_tol, multiplier_floor,
                              feasibility_tol)) {
                    r->kkt_residual = nt.stationarity / gradient_scale;
                    converged = 1;
                    break;
                }
            }
            rc = cl_seterr(err, errlen, CL_ERR,
                           "fit: line search failed at iteration %d (Newton decrement %g, KKT "
                           "residual %g)",
                           iter, decrement, nt.stationarity / gradient_scale);
            goto done;
        }
        memcpy(theta, trial, pb->p * sizeof *theta);
        f = f_new;
        /* Rounding can leave a bound row a hair positive; βⱼ >= 0 is restored exactly
         * (and f, with the linear index the next Hessian uses, recomputed). */
        int clamped = 0;
        for (size_t j = 0; j < k; j++)
            if (o.mode == CL_FIT_SIMPLEX && theta[1 + j] < 0) {
                theta[1 + j] = 0;
                clamped = 1;
                size_t c = bound_row(pb, j);
                if (c < pb->ncons)
                    work_add(c, work, &nwork);
            }
        if (clamped)
            f = objective(pb, theta);
        if (blocking < pb->ncons && alpha == alpha_max) {
            /* The clamp above may already have put this very row into W. */
            work_add(blocking, work, &nwork);
            /* Land exactly on a plain βⱼ >= 0 bound (the ratio test leaves ~1e-18). */
            size_t at = plain_bound_component(pb, blocking);
            if (at < pb->p && theta[at] != 0) {
                theta[at] = 0;
                f = objective(pb, theta);
            }
        }
    }
    r->iterations = iter;
    if (!converged) {
        rc = cl_seterr(err, errlen, CL_ERR,
                       "fit: no convergence in %d iterations (Newton decrement %g); nothing "
                       "should be published from this fit",
                       max_iterations, r->newton_decrement);
        goto done;
    }

    r->intercept = theta[0];
    r->objective = f;
    r->log_loss = (f - penalty(pb, theta)) / total;
    for (size_t j = 0; j < k; j++)
        r->coef[j] = theta[1 + j];
    if (o.mode == CL_FIT_SIMPLEX) {
        double b = 0;
        for (size_t j = 0; j < k; j++)
            b += theta[1 + j];
        /* A slope whose whole effect over the components' range is below 1e-9 in
         * log-odds is rounding noise around b = 0, and so would its weights be. */
        if (!(b * xscale > 1e-9)) {
            rc = cl_seterr(err, errlen, CL_ECONFLICT,
                           "fit: no component is positively associated with winning on this "
                           "data (fitted slope %g); weights are undefined",
                           b);
            goto done;
        }
        r->slope = b;
        /* w = β/b projected onto {Σw = 1, lower <= w <= upper}: wⱼ = clip(βⱼ/b + τ) with
         * τ found by bisection (Σ is monotone in τ). The solver holds the constraints to
         * 1e-9 relative, so τ only removes rounding, but unlike clip-then-renormalize
         * it cannot push a clipped weight back out of its interval. A weight at an
         * exact 0 bound stays exactly 0. */
        double lo_tau = -1.0, hi_tau = 1.0, sum = 0;
        for (int it = 0; it < 200; it++) {
            double tau = 0.5 * (lo_tau + hi_tau);
            sum = 0;
            for (size_t j = 0; j < k; j++)
                if (theta[1 + j] != 0 || lower[j] > 0)
                    sum += fmin(fmax(theta[1 + j] / b + tau, lower[j]), upper[j]);
            if (sum < 1.0)
                lo_tau = tau;
            else
                hi_tau = tau;
            if (!(hi_tau - lo_tau > 0x1p-60))
                break;
        }
        double tau = 0.5 * (lo_tau + hi_tau);
        sum = 0;
        for (size_t j = 0; j < k; j++) {
            double w = theta[1 + j] != 0 || lower[j] > 0
                           ? fmin(fmax(theta[1 + j] / b + tau, lower[j]), upper[j])
                           : 0.0;
            r->weights[j] = w;
            sum += w;
        }
        for (size_t j = 0; j < k; j++) {
            /* Σ is 1 to ~k·1e-16 here; dividing keeps it so without moving any weight
             * out of its interval by more than that. */
            r->weights[j] /= sum;
            double tol = 1e-9;
            r->at_bound[j] = r->weights[j] <= lower[j] + tol ? -1
                             : r->weights[j] >= upper[j] - tol ? 1
                                                               : 0;
        }
    }
    rc = CL_OK;
done:
    free(scratch);
    free(pb);
    return rc;
}

void cl_fit_predict(const cl_fit_data *d, const cl_fit_result *r, double *score,
                    double *probability)
{
    for (size_t i = 0; i < d->n; i++) {
        double s = 0, eta = r->intercept;
        for (size_t j = 0; j < r->k; j++) {
            double c = d->x[j * d->n + i];
            eta += r->coef[j] * c;
            s += (r->slope > 0 ? r->weights[j] : r->coef[j]) * c;
        }
        if (score)
            score[i] = s;
        if (probability)
            probability[i] = sigmoid(eta);
    }
}

int cl_fit_recency_weights(const int32_t *close_day, const double *base, size_t n,
                           int32_t reference_day, double half_life_days, double *out,
                           char *err, size_t errlen)
{
    if (!isfinite(half_life_days) || !(half_life_days > 0))
        return cl_seterr(err, errlen, CL_EINVAL, "recency: half-life %g days (want > 0)",
                         half_life_days);
    for (size_t i = 0; i < n; i++) {
        double age = fmax(0.0, (double)reference_day - (double)close_day[i]);
        out[i] = (base ? base[i] : 1.0) * exp2(-age / half_life_days);
    }
    return CL_OK;
}

double cl_fit_effective_n(const double *w, size_t n)
{
    if (!w)
        return (double)n;
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += w[i];
        s2 += w[i] * w[i];
    }
    return s2 > 0 ? s * s / s2 : 0.0;
}

/* --- subsets ------------------------------------------------------------------- */

/* A column-major copy of the rows selected by `keep` (and, for weights, optional
 * recency re-weighting relative to `reference_day`). */
typedef struct {
    cl_fit_data data;
    double *x;
    uint8_t *won;
    double *weight;
} subset;

static void subset_free(subset *s)
{
    free(s->x);
    free(s->won);
    free(s->weight);
    memset(s, 0, sizeof *s);
}

static int subset_make(const cl_fit_data *d, size_t k, const uint8_t *keep,
                       const uint8_t *labels, const int32_t *close_day, int32_t reference_day,
                       double half_life_days, subset *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    size_t m = 0;
    for (size_t i = 0; i < d->n; i++)
        m += keep[i] != 0;
    s->x = malloc((m ? m : 1) * k * sizeof *s->x);
    s->won = malloc(m ? m : 1);
    s->weight = malloc((m ? m : 1) * sizeof *s->weight);
    if (!s->x || !s->won || !s->weight) {
        subset_free(s);
        return cl_seterr(err, errlen, CL_ENOMEM, "fit: cannot allocate a %zu-row subset", m);
    }
    size_t row = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!keep[i])
            continue;
        for (size_t j = 0; j < k; j++)
            s->x[j * m + row] = d->x[j * d->n + i];
        s->won[row] = labels[i];
        double v = d->weight ? d->weight[i] : 1.0;
        if (half_life_days > 0) {
            double age = fmax(0.0, (double)reference_day - (double)close_day[i]);
            v *= exp2(-age / half_life_days);
        }
        s->weight[row] = v;
        row++;
    }
    s->data.n = m;
    s->data.k = k;
    s->data.x = s->x;
    s->data.won = s->won;
    s->data.weight = s->weight;
    return CL_OK;
}

int cl_fit_stages(const cl_fit_data *d, const uint32_t *stage, size_t nstages,
                  const cl_fit_options *o, const cl_fit_result *global, double stage_l2,
                  size_t min_won, size_t min_lost, cl_fit_result *out, int *fitted, char *err,
                  size_t errlen)
{
    if (!global || global->slope <= 0 || global->k != d->k)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "stage fit: needs a global simplex fit over the same components");
    uint8_t *keep = malloc(d->n ? d->n : 1);
    if (!keep)
        return cl_seterr(err, errlen, CL_ENOMEM, "stage fit: out of memory");
    for (size_t i = 0; i < d->n; i++)
        if (stage[i] >= nstages) {
            free(keep);
            return cl_seterr(err, errlen, CL_EINVAL, "stage fit: example %zu has stage %u of %zu",
                             i, stage[i], nstages);
        }
    int rc = CL_OK;
    for (size_t s = 0; s < nstages; s++) {
        size_t won = 0, lost = 0;
        for (size_t i = 0; i < d->n; i++) {
            keep[i] = stage[i] == s && (!d->weight || d->weight[i] > 0);
            if (keep[i])
                *(d->won[i] ? &won : &lost) += 1;
        }
        out[s] = *global;
        fitted[s] = 0;
        if (won < min_won || lost < min_lost)
            continue;
        subset sub;
        if ((rc = subset_make(d, d->k, keep, d->won, NULL, 0, 0, &sub, err, errlen)) != CL_OK)
            break;
        cl_fit_options so = *o;
        so.mode = CL_FIT_SIMPLEX;
        so.prior_weights = global->weights;
        so.prior_slope = global->slope;
        so.l2 = stage_l2;
        char inner[CL_ERRLEN];
        rc = cl_fit(&sub.data, &so, &out[s], inner, sizeof inner);
        subset_free(&sub);
        if (rc != CL_OK) {
            rc = cl_seterr(err, errlen, rc, "stage fit: stage %zu (%zu won, %zu lost): %s", s, won,
                           lost, inner);
            break;
        }
        fitted[s] = 1;
    }
    free(keep);
    return rc;
}

/* --- rolling-origin cross-validation -------------------------------------------- */

static int compare_int32(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

int cl_cv_windows(const int32_t *close_day, size_t n, size_t folds, cl_cv_window *out,
                  size_t *nout, char *err, size_t errlen)
{
    *nout = 0;
    if (folds == 0 || folds > CL_CV_MAX_FOLDS)
        return cl_seterr(err, errlen, CL_EINVAL, "cv: %zu folds (want 1..%d)", folds,
                         CL_CV_MAX_FOLDS);
    if (n < 2)
        return cl_seterr(err, errlen, CL_EINVAL, "cv: %zu examples are too few to split", n);
    int32_t *days = malloc(n * sizeof *days);
    if (!days)
        return cl_seterr(err, errlen, CL_ENOMEM, "cv: out of memory");
    memcpy(days, close_day, n * sizeof *days);
    qsort(days, n, sizeof *days, compare_int32);
    int32_t last_start = days[0];
    size_t count = 0;
    int32_t starts[CL_CV_MAX_FOLDS];
    for (size_t f = 1; f <= folds; f++) {
        int32_t start = days[(size_t)((double)n * (double)f / (double)(folds + 1))];
        /* A boundary at the very first day would leave nothing to train on; equal
         * boundaries (many outcomes on one day) merge into one window. */
        if (start <= last_start)
            continue;
        starts[count++] = start;
        last_start = start;
    }
    int32_t end = days[n - 1] + 1;
    free(days);
    for (size_t f = 0; f < count; f++) {
        out[f].test_start = starts[f];
        out[f].test_end = f + 1 < count ? starts[f + 1] : end;
    }
    *nout = count;
    if (count == 0)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "cv: all %zu outcomes closed on one day; no time-ordered split exists", n);
    return CL_OK;
}

static int evaluate_fold(const cl_fit_data *d, size_t k, const uint8_t *labels,
                         const int32_t *close_day, const cl_cv_options *cv,
                         const cl_fit_options *fit, const double *fixed_weights,
                         cl_cv_window window, uint8_t *keep, cl_fold_metrics *m, char *err,
                         size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->window = window;
    size_t won = 0, lost = 0, test_won = 0, test_lost = 0;
    for (size_t i = 0; i < d->n; i++) {
        int positive = !d->weight || d->weight[i] > 0;
        keep[i] = close_day[i] < window.test_start && positive;
        if (keep[i])
            *(labels[i] ? &won : &lost) += 1;
        else if (positive && close_day[i] >= window.test_start && close_day[i] < window.test_end)
            *(labels[i] ? &test_won : &test_lost) += 1;
    }
    m->n_train = won + lost;
    m->n_test = test_won + test_lost;
    if (won < cv->min_train_won || lost < cv->min_train_lost || won == 0 || lost == 0 ||
        test_won == 0 || test_lost == 0)
        return CL_OK; /* not evaluated: too few outcomes on one side */

    subset train, test;
    int rc = subset_make(d, k, keep, labels, close_day, window.test_start, cv->half_life_days,
                         &train, err, errlen);
    if (rc != CL_OK)
        return rc;
    for (size_t i = 0; i < d->n; i++)
        keep[i] = close_day[i] >= window.test_start && close_day[i] < window.test_end &&
                  (!d->weight || d->weight[i] > 0);
    rc = subset_make(d, k, keep, labels, NULL, 0, 0, &test, err, errlen);
    if (rc != CL_OK) {
        subset_free(&train);
        return rc;
    }
    size_t nt = test.data.n;
    double *score = malloc(nt * sizeof *score), *prob = malloc(nt * sizeof *prob);
    double *train_score = fixed_weights ? malloc(train.data.n * sizeof *train_score) : NULL;
    cl_fit_result r;
    char inner[CL_ERRLEN];
    if (!score || !prob || (fixed_weights && !train_score)) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "cv: out of memory");
        goto out;
    }
    if (fixed_weights) {
        memset(&r, 0, sizeof r);
        r.k = k;
        for (size_t j = 0; j < k; j++)
            r.weights[j] = fixed_weights[j];
        for (size_t i = 0; i < train.data.n; i++) {
            double s = 0;
            for (size_t j = 0; j < k; j++)
                s += fixed_weights[j] * train.x[j * train.data.n + i];
            train_score[i] = s;
        }
        double a, b;
        rc = fit_calibration(train_score, &train.data, &a, &b, inner, sizeof inner);
        if (rc == CL_OK) {
            r.intercept = a;
            r.slope = b > 0 ? b : 0;
            for (size_t j = 0; j < k; j++)
                r.coef[j] = b * fixed_weights[j];
            /* A fixed score keeps its own ranking even if its calibration slope is
             * not positive on this window; report the score, not Σβc. */
            cl_fit_predict(&test.data, &r, NULL, prob);
            for (size_t i = 0; i < nt; i++) {
                double s = 0;
                for (size_t j = 0; j < k; j++)
                    s += fixed_weights[j] * test.x[j * nt + i];
                score[i] = s;
            }
        }
    } else {
        rc = cl_fit(&train.data, fit, &r, inner, sizeof inner);
        if (rc == CL_OK)
            cl_fit_predict(&test.data, &r, score, prob);
    }
    if (rc == CL_ECONFLICT) {
        rc = CL_OK; /* no positive association in this window: fold not evaluated */
        goto out;
    }
    if (rc != CL_OK) {
        rc = cl_seterr(err, errlen, rc, "cv: fold with test window starting day %d: %s",
                       (int)window.test_start, inner);
        goto out;
    }
    const double *tw = test.weight;
    cl_confusion c;
    if ((rc = cl_stats_auc(score, test.won, tw, nt, &m->auc, err, errlen)) != CL_OK ||
        (rc = cl_stats_brier(prob, test.won, tw, nt, &m->brier, err, errlen)) != CL_OK ||
        (rc = cl_stats_log_loss(prob, test.won, tw, nt, &m->log_loss, err, errlen)) != CL_OK ||
        (rc = cl_stats_ece(prob, test.won, tw, nt, cv->ece_bins ? cv->ece_bins : 10, &m->ece,
                           NULL, err, errlen)) != CL_OK ||
        (rc = cl_stats_confusion(score, test.won, tw, nt, cv->high_threshold, &c, err,
                                 errlen)) != CL_OK)
        goto out;
    m->precision_high = cl_stats_prf(&c).precision;
    m->n_high = c.tp + c.fp;
    m->evaluated = 1;
out:
    free(score);
    free(prob);
    free(train_score);
    subset_free(&train);
    subset_free(&test);
    return rc;
}

static int cross_validate(const cl_fit_data *d, size_t k, const uint8_t *labels,
                          const int32_t *close_day, const cl_cv_options *cv,
                          const cl_fit_options *fit, const double *fixed_weights,
                          cl_fold_metrics *out, size_t *nout, char *err, size_t errlen)
{
    cl_cv_window windows[CL_CV_MAX_FOLDS];
    size_t nw;
    int rc = cl_cv_windows(close_day, d->n, cv->folds, windows, &nw, err, errlen);
    if (rc != CL_OK)
        return rc;
    uint8_t *keep = malloc(d->n);
    if (!keep)
        return cl_seterr(err, errlen, CL_ENOMEM, "cv: out of memory");
    for (size_t f = 0; f < nw && rc == CL_OK; f++)
        rc = evaluate_fold(d, k, labels, close_day, cv, fit, fixed_weights, windows[f], keep,
                           &out[f], err, errlen);
    free(keep);
    *nout = nw;
    return rc;
}

int cl_fit_cross_validate(const cl_fit_data *d, const int32_t *close_day,
                          const cl_cv_options *cv, const cl_fit_options *fit,
                          const double *fixed_weights, cl_fold_metrics *out, size_t *nout,
                          char *err, size_t errlen)
{
    *nout = 0;
    int rc = check_data(d, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (!close_day)
        return cl_seterr(err, errlen, CL_EINVAL, "cv: close dates are required");
    return cross_validate(d, d->k, d->won, close_day, cv, fit, fixed_weights, out, nout, err,
                          errlen);
}

cl_fold_metrics cl_fit_cv_mean(const cl_fold_metrics *folds, size_t nfolds)
{
    cl_fold_metrics m;
    memset(&m, 0, sizeof m);
    int count = 0;
    for (size_t f = 0; f < nfolds; f++) {
        if (!folds[f].evaluated)
            continue;
        count++;
        m.n_train += folds[f].n_train;
        m.n_test += folds[f].n_test;
        m.auc += folds[f].auc;
        m.brier += folds[f].brier;
        m.log_loss += folds[f].log_loss;
        m.ece += folds[f].ece;
        m.precision_high += folds[f].precision_high;
        m.n_high += folds[f].n_high;
    }
    if (count > 0) {
        m.auc /= count;
        m.brier /= count;
        m.log_loss /= count;
        m.ece /= count;
        m.precision_high /= count;
    }
    m.evaluated = count;
    return m;
}

/* --- factor discovery ------------------------------------------------------------ */

/* splitmix64: small, seedable, good enough to shuffle labels reproducibly. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Mean validated AUC and log loss of the model on the given columns (the base block
 * plus, if candidate < k, that one column moved next to it). */
static int validated(const cl_fit_data *d, size_t k_base, size_t candidate,
                     const uint8_t *labels, const int32_t *close_day, const cl_cv_options *cv,
                     const cl_fit_options *fit, double *columns, double *auc, double *log_loss,
                     int *ok, char *err, size_t errlen)
{
    size_t k = k_base + (candidate < d->k ? 1 : 0);
    memcpy(columns, d->x, k_base * d->n * sizeof *columns);
    if (candidate < d->k)
        memcpy(columns + k_base * d->n, d->x + candidate * d->n, d->n * sizeof *columns);
    cl_fit_data view = {d->n, k, columns, labels, d->weight};
    cl_fold_metrics folds[CL_CV_MAX_FOLDS];
    size_t nf;
    int rc = cross_validate(&view, k, labels, close_day, cv, fit, NULL, folds, &nf, err, errlen);
    if (rc != CL_OK)
        return rc;
    cl_fold_metrics mean = cl_fit_cv_mean(folds, nf);
    *auc = mean.auc;
    *log_loss = mean.log_loss;
    *ok = mean.evaluated > 0 && (size_t)mean.evaluated == nf;
    return CL_OK;
}

int cl_fit_discover_factors(const cl_fit_data *d, size_t k_base, const int32_t *close_day,
                            const cl_cv_options *cv, const cl_fit_options *fit,
                            const cl_discovery_options *disc, cl_factor_evidence *out,
                            char *err, size_t errlen)
{
    int rc = check_data(d, err, errlen);
    if (rc != CL_OK)
        return rc;
    if (k_base == 0 || k_base >= d->k || k_base + 1 > CL_FIT_MAX_COMPONENTS || !close_day)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "discovery: need 1 <= base components < total (%zu, %zu) and close dates",
                         k_base, d->k);
    size_t ncand = d->k - k_base, nperm = disc ? disc->permutations : 19;
    uint64_t state = disc ? disc->seed : 1;
    cl_fit_options fo = *fit;
    fo.prior_weights = NULL;
    fo.prior_slope = 0;
    fo.max_change = 0;
    double *columns = malloc((k_base + 1) * d->n * sizeof *columns);
    uint8_t *labels = malloc(d->n);
    if (!columns || !labels) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "discovery: out of memory");
        goto done;
    }
    memcpy(labels, d->won, d->n);
    for (size_t c = 0; c < ncand; c++) {
        out[c].column = k_base + c;
        out[c].null_gain_auc = -INFINITY;
        out[c].null_gain_log_loss = -INFINITY;
        out[c].adopt = 0;
    }
    /* Round 0 uses the real labels; rounds 1..nperm a fresh shuffle each. A candidate
     * whose fit fails or whose folds cannot all be evaluated counts as "no gain". */
    for (size_t round = 0; round <= nperm; round++) {
        if (round > 0)
            for (size_t i = d->n - 1; i > 0; i--) {
                size_t j = (size_t)(next_random(&state) % (i + 1));
                uint8_t t = labels[i];
                labels[i] = labels[j];
                labels[j] = t;
            }
        double auc0, ll0;
        int ok0;
        char inner[CL_ERRLEN];
        rc = validated(d, k_base, d->k, labels, close_day, cv, &fo, columns, &auc0, &ll0, &ok0,
                       inner, sizeof inner);
        if (rc != CL_OK || !ok0) {
            if (round == 0) {
                rc = cl_seterr(err, errlen, rc != CL_OK ? rc : CL_EINVAL,
                               "discovery: the base model cannot be validated: %s",
                               rc != CL_OK ? inner : "some folds lack outcomes");
                goto done;
            }
            rc = CL_OK;
            continue; /* a shuffle the base cannot fit says nothing about candidates */
        }
        for (size_t c = 0; c < ncand; c++) {
            double auc1, ll1;
            int ok1;
            int vr = validated(d, k_base, k_base + c, labels, close_day, cv, &fo, columns, &auc1,
                               &ll1, &ok1, inner, sizeof inner);
            if (vr == CL_ENOMEM) {
                rc = cl_seterr(err, errlen, vr, "discovery: %s", inner);
                goto done;
            }
            double gain_auc = (vr == CL_OK && ok1) ? auc1 - auc0 : 0.0;
            double gain_ll = (vr == CL_OK && ok1) ? ll0 - ll1 : 0.0;
            if (round == 0) {
                out[c].gain_auc = gain_auc;
                out[c].gain_log_loss = gain_ll;
            } else {
                out[c].null_gain_auc = fmax(out[c].null_gain_auc, gain_auc);
                out[c].null_gain_log_loss = fmax(out[c].null_gain_log_loss, gain_ll);
            }
        }
    }
    for (size_t c = 0; c < ncand; c++) {
        if (!isfinite(out[c].null_gain_auc))
            out[c].null_gain_auc = 0;
        if (!isfinite(out[c].null_gain_log_loss))
            out[c].null_gain_log_loss = 0;
        out[c].adopt = out[c].gain_auc > 0 && out[c].gain_log_loss > 0 &&
                       out[c].gain_auc > out[c].null_gain_auc &&
                       out[c].gain_log_loss > out[c].null_gain_log_loss;
    }
    rc = CL_OK;
done:
    free(columns);
    free(labels);
    return rc;
}
