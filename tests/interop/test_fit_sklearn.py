"""closedloop-fit against scikit-learn and against the optimality conditions.

Unconstrained mode must reproduce sklearn.linear_model.LogisticRegression (same C,
intercept unpenalized, lbfgs at a tight tolerance) to 1e-4 relative, with and without
sample weights. Simplex mode has no sklearn counterpart, so it is checked against its
KKT conditions (gradient computed here with numpy), against the truth on data drawn
from a non-negative model, and against the cap.
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

SEED = np.array([0.15, 0.20, 0.15, 0.25, 0.20, 0.05])
NAMES = ["speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate", "recency"]


def tool():
    bin_dir = os.environ.get("CL_BIN_DIR")
    assert bin_dir, "CL_BIN_DIR is not set: run through ctest"
    path = os.path.join(bin_dir, "closedloop-fit")
    assert os.access(path, os.X_OK), f"{path} is missing: build the closedloop-fit target"
    return path


def draw(n, weights, a, b, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 100, size=(n, len(weights)))
    p = 1.0 / (1.0 + np.exp(-(a + b * x @ weights)))
    y = (rng.uniform(size=n) < p).astype(int)
    return x, y


def write_csv(path, x, y, weight=None):
    cols = [y.reshape(-1, 1)]
    header = ["won"]
    if weight is not None:
        cols.append(weight.reshape(-1, 1))
        header.append("weight")
    cols.append(x)
    header += NAMES[: x.shape[1]]
    fmt = ["%d"] + (["%.17g"] if weight is not None else []) + ["%.17g"] * x.shape[1]
    np.savetxt(path, np.hstack(cols), delimiter=",", header=",".join(header), comments="", fmt=fmt)


def run(args):
    proc = subprocess.run([tool()] + args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"closedloop-fit {args} failed: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory() as d:
        yield d


def coef_vector(result, k):
    return np.array([result["coef"][name] for name in NAMES[:k]])


@pytest.mark.parametrize("c_value", [0.01, 1.0, 100.0])
def test_unconstrained_matches_sklearn(tmp, c_value):
    truth = np.array([0.3, -0.1, 0.2, 0.4, 0.1, 0.1])
    x, y = draw(6000, truth, -1.5, 0.05, seed=int(c_value * 100) + 1)
    path = os.path.join(tmp, "d.csv")
    write_csv(path, x, y)
    ours = run(["--mode", "unconstrained", "--C", repr(c_value), path])
    ref = LogisticRegression(C=c_value, tol=1e-12, max_iter=100000).fit(x, y)
    beta = coef_vector(ours, 6)
    np.testing.assert_allclose(beta, ref.coef_[0], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours["intercept"], ref.intercept_[0], rtol=1e-4, atol=1e-7)


def test_unconstrained_with_sample_weights_matches_sklearn(tmp):
    truth = np.array([0.5, 0.2, 0.3])
    x, y = draw(4000, truth, -2.0, 0.05, seed=5)
    w = np.random.default_rng(6).uniform(0.1, 3.0, size=len(y))
    path = os.path.join(tmp, "d.csv")
    write_csv(path, x, y, weight=w)
    ours = run(["--mode", "unconstrained", "--C", "0.5", "--weight", "weight", path])
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=100000).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(coef_vector(ours, 3), ref.coef_[0], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours["intercept"], ref.intercept_[0], rtol=1e-4)
    assert ours["effective_n"] == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-12)


def gradient(x, y, intercept, beta, lam=0.0, anchor=None):
    eta = intercept + x @ beta
    resid = 1.0 / (1.0 + np.exp(-eta)) - y
    g = np.concatenate([[resid.sum()], x.T @ resid])
    g[1:] += lam * (beta - (0 if anchor is None else anchor))
    return g


def test_simplex_kkt_and_recovery(tmp):
    truth = np.array([0.30, 0.05, 0.10, 0.35, 0.20, 0.00])
    x, y = draw(20000, truth, -4.0, 0.08, seed=9)
    path = os.path.join(tmp, "d.csv")
    write_csv(path, x, y)
    ours = run([path])
    w = np.array([ours["weights"][n] for n in NAMES])
    beta = coef_vector(ours, 6)
    assert w.min() >= 0
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w, truth, atol=0.02)
    np.testing.assert_allclose(beta, ours["slope"] * w, rtol=1e-9, atol=1e-15)
    assert ours["slope"] == pytest.approx(0.08, rel=0.1)
    # KKT: stationary in a and in every free β; at β = 0 the gradient points outward.
    g = gradient(x, y, ours["intercept"], beta)
    scale = np.abs(x).sum()
    assert abs(g[0]) < 1e-9 * len(y)
    for j, name in enumerate(NAMES):
        if ours["at_bound"][name] == "free":
            assert abs(g[1 + j]) < 1e-9 * scale, (name, g[1 + j])
        else:
            assert beta[j] == 0.0
            assert g[1 + j] > -1e-9 * scale, (name, g[1 + j])


def test_simplex_free_set_matches_sklearn(tmp):
    """Cross-check the constrained optimum independently: sklearn on the free set only.

    At the optimum, dropping the components held at 0 and fitting the rest without
    constraints must give the same β (they are all positive there)."""
    truth = np.array([0.40, 0.00, 0.25, 0.35, 0.00, 0.00])
    x, y = draw(15000, truth, -3.0, 0.07, seed=12)
    path = os.path.join(tmp, "d.csv")
    write_csv(path, x, y)
    ours = run(["--l2", "4.0", path])
    free = [j for j, n in enumerate(NAMES) if ours["at_bound"][n] == "free"]
    assert 0 in free and 3 in free
    ref = LogisticRegression(C=1 / 4.0, tol=1e-12, max_iter=100000).fit(x[:, free], y)
    assert (ref.coef_[0] > 0).all()
    np.testing.assert_allclose(coef_vector(ours, 6)[free], ref.coef_[0], rtol=1e-4)
    np.testing.assert_allclose(ours["intercept"], ref.intercept_[0], rtol=1e-4)


def test_cap_bounds_every_move(tmp):
    truth = np.array([0.45, 0.05, 0.05, 0.35, 0.10, 0.00])
    x, y = draw(10000, truth, -4.0, 0.09, seed=21)
    path = os.path.join(tmp, "d.csv")
    write_csv(path, x, y)
    prior = ",".join(repr(float(v)) for v in SEED)
    ours = run(["--prior", prior, "--max-change", "0.05", "--l2", "10", path])
    w = np.array([ours["weights"][n] for n in NAMES])
    assert np.all(np.abs(w - SEED) <= 0.05 + 1e-12)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert sum(ours["at_bound"][n] != "free" for n in NAMES) >= 3
    # The anchor slope is the champion's score refitted on this data.
    score = x @ SEED
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=100000).fit(score.reshape(-1, 1), y)
    assert ours["anchor_slope"] == pytest.approx(ref.coef_[0][0], rel=1e-4)


def test_recency_and_cross_validation_output(tmp):
    truth = np.array([0.5, 0.3, 0.2])
    x, y = draw(3000, truth, -2.5, 0.05, seed=31)
    days = np.sort(np.random.default_rng(32).integers(19000, 19700, size=len(y)))
    path = os.path.join(tmp, "d.csv")
    data = np.hstack([y.reshape(-1, 1), days.reshape(-1, 1), x])
    np.savetxt(path, data, delimiter=",", header="won,close,a,b,c", comments="", fmt="%.17g")
    out = run(["--close-date", "close", "--half-life", "90", "--cv", "4", "--prior", "0.2,0.3,0.5", path])
    age = days.max() - days
    w = 0.5 ** (age / 90.0)
    assert out["effective_n"] == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-9)
    assert len(out["cv"]) == 4 and len(out["cv_champion"]) == 4
    starts = [f["test_start"] for f in out["cv"]]
    assert starts == sorted(starts)
    for f in out["cv"]:
        assert f["evaluated"] and 0.5 < f["auc"] <= 1.0
        assert f["n_train"] == int((days < (np.datetime64(f["test_start"]) - np.datetime64("1970-01-01")).astype(int)).sum())


def test_errors_name_file_line_and_column(tmp):
    path = os.path.join(tmp, "bad.csv")
    with open(path, "w") as f:
        f.write("won,a,b\n1,10,20\n0,abc,30\n")
    proc = subprocess.run([tool(), path], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "bad.csv:3" in proc.stderr and "column a" in proc.stderr
    with open(path, "w") as f:
        f.write("won,a\n1,10\n1,20\n")
    proc = subprocess.run([tool(), path], capture_output=True, text=True)
    assert proc.returncode == 1 and "won and lost" in proc.stderr
    proc = subprocess.run([tool(), "--mode", "nope", path], capture_output=True, text=True)
    assert proc.returncode == 2
