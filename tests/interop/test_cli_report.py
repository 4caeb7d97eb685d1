"""`closedloop report` renders the reports from the metrics worker's state alone.

The state is built by `closedloop-metrics --offline` from a generated labeled history;
then `closedloop report` (no broker, no input) must print the same ModelMetrics figures
the worker printed and write both reports into the directory it is given.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import metrics_harness as h  # noqa: E402

CLI = os.path.join(os.path.dirname(h.METRICS), "closedloop")


def figures(records):
    """(model, version, window kind, window start) -> the headline figures."""
    out = {}
    for r in records:
        key = (r["model"], r["version"], r["window"]["kind"], r["window"]["start"])
        out[key] = (r["n"], r["won"], r["lost"], r.get("auc"), r.get("brier"), r.get("precision"))
    return out


def test_report_from_state(tmp_path):
    src = tmp_path / "labeled.jsonl"
    h.to_jsonl(h.history(), src)
    state = tmp_path / "state"
    worker = subprocess.run([h.METRICS, f"--offline={src}", f"--state.dir={state}",
                             f"--metrics.report.dir={tmp_path / 'worker-reports'}",
                             "--store.sync=nosync", "--log.level=warn"],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    assert os.path.exists(CLI), f"{CLI} is not built"
    out = tmp_path / "reports"
    rep = subprocess.run([CLI, "report", f"--state.dir={state}", f"--metrics.report.dir={out}"],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    by_worker = figures(h.untag(json.loads(l)) for l in worker.stdout.splitlines() if l.strip())
    by_cli = figures(h.untag(json.loads(l)) for l in rep.stdout.splitlines() if l.strip())
    assert by_worker and by_cli == by_worker
    for name in ("closed-won.html", "closed-lost.html"):
        page = (out / name).read_text()
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_report_on_unusable_state_fails_clearly(tmp_path):
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("this is a file, not an LMDB state directory")
    rep = subprocess.run([CLI, "report", f"--state.dir={not_a_dir}",
                          f"--metrics.report.dir={tmp_path / 'r'}"],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 1, rep.stderr
    assert "closedloop report:" in rep.stderr and str(not_a_dir) in rep.stderr
    assert not (tmp_path / "r" / "closed-won.html").exists()
