"""closedloop-metrics figures against scikit-learn on the same data.

A generated labeled history (with duplicates, a superseded outcome, a stale record and
retractions) goes through `closedloop-metrics --offline`; the consumer rule and the
horizon policy are re-implemented independently in metrics_harness.py, and every
published figure of the cumulative and monthly windows is compared with sklearn's on
that evaluated set. The champion-vs-challenger DeLong p-value in the report is compared
with a Sun & Xu fast-DeLong reference.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (brier_score_loss, confusion_matrix, f1_score, log_loss,
                             precision_score, recall_score, roc_auc_score)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import metrics_harness as h  # noqa: E402


def run_offline(tmp_path, exs, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "labeled.jsonl"
    h.to_jsonl(exs, src)
    assert os.path.exists(h.METRICS), f"{h.METRICS} is not built"
    p = subprocess.run([h.METRICS, f"--offline={src}", f"--state.dir={tmp_path / 'state'}",
                        f"--metrics.report.dir={tmp_path / 'reports'}", "--store.sync=nosync",
                        "--log.level=warn", *extra],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return [h.untag(json.loads(line)) for line in p.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    exs = h.history()
    tmp = tmp_path_factory.mktemp("metrics")
    return exs, run_offline(tmp, exs), tmp


def pick(records, version, kind, start=None):
    out = [r for r in records if r["version"] == version and r["window"]["kind"] == kind
           and (start is None or r["window"]["start"] == start)]
    assert len(out) == 1, (version, kind, start, len(out))
    return out[0]


def check_against_sklearn(m, items):
    score = np.array([i[0] for i in items])
    prob = np.array([i[1] for i in items])
    y = np.array([i[2] for i in items])
    assert m["n"] == len(items) and m["won"] == int(y.sum()) and m["lost"] == int((1 - y).sum())
    pred = (score >= 70).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    c = m["confusion"]
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (tp, fp, tn, fn)
    assert c["threshold"] == 70
    assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0), abs=1e-12)
    assert m["recall"] == pytest.approx(recall_score(y, pred, zero_division=0), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0), abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, prob), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, prob, labels=[0, 1]), abs=1e-9)
    # Reliability bins. common/stats.h puts a probability exactly on an inner edge in the
    # upper bin (numpy.searchsorted side="right"); scikit-learn 1.9's calibration_curve
    # uses side="left". The score grid makes exact edges real (score 50 -> p = 0.5), so
    # the bins are checked against numpy with the documented convention, and against
    # calibration_curve itself on the examples that sit on no inner edge.
    inner = np.linspace(0, 1, 11)[1:-1]
    ids = np.searchsorted(inner, prob, side="right")
    bins = [b for b in m["calibration_bins"] if b["n"] > 0]
    ref = [(prob[ids == k].mean(), y[ids == k].mean()) for k in range(10) if (ids == k).any()]
    assert len(bins) == len(ref)
    for b, (p, t) in zip(bins, ref):
        assert b["observed_rate"] == pytest.approx(t, abs=1e-12)
        assert b["mean_predicted"] == pytest.approx(p, abs=1e-12)
        assert b["won"] == pytest.approx(b["n"] * t, abs=1e-6)
    off_edge = ~np.isin(prob, inner)
    if off_edge.all():
        prob_true, prob_pred = calibration_curve(y, prob, n_bins=10, strategy="uniform")
        assert np.allclose([b["observed_rate"] for b in bins], prob_true, atol=1e-12)
        assert np.allclose([b["mean_predicted"] for b in bins], prob_pred, atol=1e-12)
    else:
        sub = off_edge
        prob_true, _ = calibration_curve(y[sub], prob[sub], n_bins=10, strategy="uniform")
        ids_sub = np.searchsorted(inner, prob[sub], side="right")
        mine = [y[sub][ids_sub == k].mean() for k in range(10) if (ids_sub == k).any()]
        assert np.allclose(mine, prob_true, atol=1e-12)
    assert [b["n"] for b in m["calibration_bins"]] == np.bincount(ids, minlength=10).tolist()
    ece = sum(b["n"] / len(y) * abs(b["mean_predicted"] - b["observed_rate"]) for b in bins)
    assert m["ece"] == pytest.approx(ece, abs=1e-12)
    # Precision / recall by threshold.
    for t in m["thresholds"]:
        pr = score >= t["threshold"]
        assert t["predicted_positive"] == int(pr.sum())
        if pr.sum():
            assert t["precision"] == pytest.approx(y[pr].mean(), abs=1e-12)
        assert t["recall"] == pytest.approx(y[pr].sum() / y.sum(), abs=1e-12)


@pytest.mark.parametrize("version", [1, 2])
def test_cumulative_figures_match_sklearn(data, version):
    exs, records, _ = data
    items = h.evaluated(exs, version)
    assert len(items) > 300
    check_against_sklearn(pick(records, version, "CUMULATIVE"), items)


def test_monthly_windows_match_sklearn(data):
    exs, records, _ = data
    items = h.evaluated(exs, 1)
    monthly = [r for r in records if r["version"] == 1 and r["window"]["kind"] == "MONTHLY"]
    assert len(monthly) >= 4
    for m in monthly:
        sub = [i for i in items if m["window"]["start"] <= i[3] * h.DAY_MS < m["window"]["end"]]
        check_against_sklearn(m, sub)


def test_groups_and_bands(data):
    exs, records, _ = data
    items = h.evaluated(exs, 1)
    m = pick(records, 1, "CUMULATIVE")
    for g in m["by_stage"]:
        sub = [i for i in items if i[4]["snapshot"]["stage"] == g["key"]]
        y = np.array([i[2] for i in sub])
        s = np.array([i[0] for i in sub])
        assert g["n"] == len(sub) and g["won"] == y.sum()
        assert g["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert g["mean_score"] == pytest.approx(s.mean(), abs=1e-9)
    assert {g["key"] for g in m["by_owner"]} >= {"005A", "005D<script>"}
    for b in m["by_band"]:
        sub = [i for i in items if h.band(i[0]) == b["band"]]
        assert b["n"] == len(sub) and b["won"] == sum(i[2] for i in sub)


def test_horizon_policies(data, tmp_path):
    exs, _, _ = data
    # With horizon 0 the snapshot 2 days before close is eligible: a different set.
    recs = run_offline(tmp_path, exs, "--metrics.horizon.days=0")
    m = pick(recs, 1, "CUMULATIVE")
    items = h.evaluated(exs, 1, horizon_days=0)
    check_against_sklearn(m, items)
    assert m["horizon"] == "LATEST_BEFORE_HORIZON" and m["horizon_days"] == 0
    recs = run_offline(tmp_path / "all", exs, "--metrics.horizon=all_snapshots")
    m = pick(recs, 1, "CUMULATIVE")
    assert m["n"] == sum(len(s) for s in h.fold(exs).values())


def test_replaying_the_same_input_changes_no_figure(data, tmp_path):
    exs, records, _ = data
    again = run_offline(tmp_path, exs + exs[::-1] + exs)
    strip = lambda rs: sorted(json.dumps({k: v for k, v in r.items() if k != "generated_at"},
                                         sort_keys=True) for r in rs)
    assert strip(again) == strip(records)


def test_report_delong_matches_reference(data):
    exs, _, tmp = data
    a = {i[4]["snapshot"]["snapshot_id"]: i for i in h.evaluated(exs, 1)}
    b = {i[4]["snapshot"]["snapshot_id"]: i for i in h.evaluated(exs, 2)}
    common = sorted(set(a) & set(b))
    sa = np.array([a[k][0] for k in common])
    sb = np.array([b[k][0] for k in common])
    y = np.array([a[k][2] for k in common])
    aucs, p = h.fast_delong_p(sa, sb, y)
    html = (tmp / "reports" / "closed-won.html").read_text()
    row = re.search(r"<td>version 2</td><td class=\"n\">(\d+) \((\d+) won\)</td>"
                    r"<td class=\"n\">([0-9.]+)</td><td class=\"n\">([0-9.]+)</td>"
                    r"<td class=\"n\">[-+0-9.]+</td><td class=\"n\">([0-9.]+)</td>", html)
    assert row, "champion vs challenger row missing from the Closed Won report"
    assert int(row.group(1)) == len(common) and int(row.group(2)) == int(y.sum())
    assert float(row.group(3)) == pytest.approx(aucs[0], abs=5e-4)
    assert float(row.group(4)) == pytest.approx(aucs[1], abs=5e-4)
    assert float(row.group(5)) == pytest.approx(p, abs=5e-5)
