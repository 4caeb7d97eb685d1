"""common/stats against sklearn.metrics and an independent DeLong implementation.

The C code is built into a throwaway shared object from the very sources the library
uses (common/stats.c, common/error.c) and called through ctypes, so what is compared is
the shipped code, not a re-implementation. DeLong is compared with the fast midrank
algorithm of Sun & Xu (2014), written here in numpy, which shares no structure with the
C version (that one counts by binary search).
"""
import ctypes
import math
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, confusion_matrix, log_loss, roc_auc_score


class DelongResult(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("auc_a", "auc_b", "delta", "variance", "z", "p_value")] + [
        ("n_won", ctypes.c_size_t),
        ("n_lost", ctypes.c_size_t),
    ]


class CalibrationBin(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("lo", "hi", "mean_predicted", "observed_rate", "count")]


class Confusion(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("tp", "fp", "tn", "fn")]


@pytest.fixture(scope="module")
def lib():
    src = os.environ.get("CL_SOURCE_DIR")
    assert src, "CL_SOURCE_DIR is not set: run through ctest"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "no C compiler on PATH to build the stats module for ctypes"
    with tempfile.TemporaryDirectory() as d:
        so = os.path.join(d, "libclstats.so")
        subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-std=gnu11", "-D_GNU_SOURCE", "-I", os.path.join(src, "common"),
             os.path.join(src, "common", "stats.c"), os.path.join(src, "common", "error.c"), "-lm", "-o", so],
            check=True,
        )
        handle = ctypes.CDLL(so)
        yield handle


D = ctypes.POINTER(ctypes.c_double)
U8 = ctypes.POINTER(ctypes.c_uint8)


def dptr(a):
    return a.ctypes.data_as(D)


def uptr(a):
    return a.ctypes.data_as(U8)


def call_metric(lib, name, values, y, w=None):
    out = ctypes.c_double()
    err = ctypes.create_string_buffer(512)
    fn = getattr(lib, name)
    rc = fn(dptr(values), uptr(y), dptr(w) if w is not None else None, ctypes.c_size_t(len(y)), ctypes.byref(out), err,
            ctypes.c_size_t(512))
    assert rc == 0, err.value.decode()
    return out.value


def data(seed, n=2000, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.4).astype(np.uint8)
    score = rng.normal(size=n) + 0.8 * y
    if ties:
        score = np.round(score * 4) / 4  # many ties
    prob = 1 / (1 + np.exp(-(score - 0.3)))
    w = rng.uniform(0.1, 2.0, size=n)
    return np.ascontiguousarray(score), np.ascontiguousarray(prob), np.ascontiguousarray(y), np.ascontiguousarray(w)


@pytest.mark.parametrize("seed,ties", [(1, False), (2, True), (3, True)])
def test_auc_brier_log_loss_match_sklearn(lib, seed, ties):
    score, prob, y, w = data(seed, ties=ties)
    assert call_metric(lib, "cl_stats_auc", score, y) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert call_metric(lib, "cl_stats_auc", score, y, w) == pytest.approx(roc_auc_score(y, score, sample_weight=w), abs=1e-12)
    assert call_metric(lib, "cl_stats_brier", prob, y) == pytest.approx(brier_score_loss(y, prob), abs=1e-14)
    assert call_metric(lib, "cl_stats_brier", prob, y, w) == pytest.approx(brier_score_loss(y, prob, sample_weight=w), abs=1e-14)
    assert call_metric(lib, "cl_stats_log_loss", prob, y) == pytest.approx(log_loss(y, prob), abs=1e-13)
    assert call_metric(lib, "cl_stats_log_loss", prob, y, w) == pytest.approx(log_loss(y, prob, sample_weight=w), abs=1e-13)


def test_histogram_auc_matches_sklearn_on_the_score_grid(lib):
    rng = np.random.default_rng(4)
    n = 5000
    y = (rng.uniform(size=n) < 0.35).astype(np.uint8)
    score = np.round(np.clip(rng.normal(50, 15, size=n) + 8 * y, 0, 100), 2)

    class Hist(ctypes.Structure):
        _fields_ = [("lo", ctypes.c_double), ("resolution", ctypes.c_double), ("nbins", ctypes.c_size_t),
                    ("won", ctypes.c_void_p), ("lost", ctypes.c_void_p)]

    h = Hist()
    assert lib.cl_score_hist_init(ctypes.byref(h), ctypes.c_double(0), ctypes.c_double(100), ctypes.c_double(0.01), None, ctypes.c_size_t(0)) == 0
    for s, label in zip(score, y):
        assert lib.cl_score_hist_add(ctypes.byref(h), ctypes.c_double(s), ctypes.c_int(int(label)), ctypes.c_int64(1), None, ctypes.c_size_t(0)) == 0
    out = ctypes.c_double()
    assert lib.cl_score_hist_auc(ctypes.byref(h), ctypes.byref(out), None, ctypes.c_size_t(0)) == 0
    lib.cl_score_hist_free(ctypes.byref(h))
    assert out.value == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_ece_bins_match_calibration_curve(lib):
    _, prob, y, _ = data(5, n=4000)
    nbins = 10
    bins = (CalibrationBin * nbins)()
    ece = ctypes.c_double()
    err = ctypes.create_string_buffer(512)
    rc = lib.cl_stats_ece(dptr(prob), uptr(y), None, ctypes.c_size_t(len(y)), ctypes.c_size_t(nbins), ctypes.byref(ece), bins,
                          err, ctypes.c_size_t(512))
    assert rc == 0, err.value.decode()
    frac_pos, mean_pred = calibration_curve(y, prob, n_bins=nbins, strategy="uniform")
    ours = [(b.observed_rate, b.mean_predicted, b.count) for b in bins if b.count > 0]
    assert len(ours) == len(frac_pos)
    for (rate, mean, _), ref_rate, ref_mean in zip(ours, frac_pos, mean_pred):
        assert rate == pytest.approx(ref_rate, abs=1e-12)
        assert mean == pytest.approx(ref_mean, abs=1e-12)
    # ECE from the reference bins, weighted by their counts.
    counts = np.array([c for _, _, c in ours])
    expected = float(np.sum(counts / len(y) * np.abs(mean_pred - frac_pos)))
    assert ece.value == pytest.approx(expected, abs=1e-12)


def test_confusion_matches_sklearn(lib):
    score, _, y, _ = data(6)
    for threshold in (-1.0, 0.0, 0.5, 1.7):
        c = Confusion()
        rc = lib.cl_stats_confusion(dptr(score), uptr(y), None, ctypes.c_size_t(len(y)), ctypes.c_double(threshold),
                                    ctypes.byref(c), None, ctypes.c_size_t(0))
        assert rc == 0
        tn, fp, fn, tp = confusion_matrix(y, (score >= threshold).astype(int), labels=[0, 1]).ravel()
        assert (c.tp, c.fp, c.tn, c.fn) == (tp, fp, tn, fn)


# --- DeLong, after Sun & Xu (2014), "Fast implementation of DeLong's algorithm" ------


def midrank(x):
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = len(x)
    t = np.zeros(n)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = t
    return out


def fast_delong(scores, y):
    """scores: (2, n). Returns aucs (2,) and the 2x2 covariance of the AUCs."""
    pos = scores[:, y == 1]
    neg = scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.array([midrank(r) for r in pos])
    ty = np.array([midrank(r) for r in neg])
    tz = np.array([midrank(r) for r in np.hstack([pos, neg])])
    aucs = tz[:, :m].sum(axis=1) / m / n - (m + 1.0) / 2.0 / n
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    sx = np.cov(v01)
    sy = np.cov(v10)
    return aucs, sx / m + sy / n


@pytest.mark.parametrize("seed,ties", [(7, False), (8, True), (9, False)])
def test_delong_matches_fast_delong(lib, seed, ties):
    rng = np.random.default_rng(seed)
    n = 1500
    y = (rng.uniform(size=n) < 0.3).astype(np.uint8)
    base = rng.normal(size=n) + 0.7 * y
    a = base + rng.normal(scale=0.8, size=n)
    b = base + 0.3 * y + rng.normal(scale=0.8, size=n)
    if ties:
        a, b = np.round(a * 3) / 3, np.round(b * 3) / 3
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    r = DelongResult()
    err = ctypes.create_string_buffer(512)
    rc = lib.cl_stats_delong(dptr(a), dptr(b), uptr(y), ctypes.c_size_t(n), ctypes.byref(r), err, ctypes.c_size_t(512))
    assert rc == 0, err.value.decode()
    aucs, cov = fast_delong(np.vstack([a, b]), y)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[1] - aucs[0]) / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2))
    assert r.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert r.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert r.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r.variance == pytest.approx(var, rel=1e-9)
    assert r.z == pytest.approx(z, rel=1e-9)
    assert r.p_value == pytest.approx(p, rel=1e-8, abs=1e-300)
    assert (r.n_won, r.n_lost) == (int(y.sum()), int(n - y.sum()))


def test_mcnemar_matches_binomial_and_chi_square(lib):
    class Mcnemar(ctypes.Structure):
        _fields_ = [("only_a_right", ctypes.c_uint64), ("only_b_right", ctypes.c_uint64), ("statistic", ctypes.c_double),
                    ("p_value", ctypes.c_double), ("exact", ctypes.c_int)]

    lib.cl_stats_mcnemar.restype = Mcnemar
    for b, c in [(0, 7), (3, 10), (12, 12), (40, 22), (200, 150)]:
        r = lib.cl_stats_mcnemar(ctypes.c_uint64(b), ctypes.c_uint64(c))
        n = b + c
        if n < 25:
            tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
            expected = min(1.0, 2 * tail)
            assert r.exact == 1
        else:
            chi2 = (abs(b - c) - 1) ** 2 / n
            expected = math.erfc(math.sqrt(chi2 / 2))
            assert r.exact == 0
        assert r.p_value == pytest.approx(expected, rel=1e-12)
