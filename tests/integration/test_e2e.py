"""End to end (SPEC §6): generated history -> all five workers on the real broker -> a
new weight config on `weights` closer to the generator's true weights than the seed's,
and both reports written. Runs the main job's own driver (scripts/loop.py), so the
README's first command and this test exercise the same path."""
import json
import os
import subprocess
import sys

SRC = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SRC, "build", "bin"))
BROKERS = os.environ.get("CLOSEDLOOP_BROKERS", "127.0.0.1:9092")
BUILD = os.environ.get("CL_BUILD_DIR", os.path.join(SRC, "build"))


def test_whole_loop_learns_the_true_weights(tmp_path):
    summary = tmp_path / "summary.json"
    out = subprocess.run(
        [sys.executable, os.path.join(SRC, "scripts", "loop.py"), "--bin", BIN, "--brokers", BROKERS,
         "--work", str(tmp_path / "loop"), "--months", "12", "--opportunities", "6000", "--seed", "11",
         "--refit-every", "300", "--port-base", "19201", "--timeout", "600",
         "--summary-json", str(summary)],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    s = json.loads(summary.read_text())
    # The learned weights are a proper weight vector ...
    assert abs(sum(s["learned"].values()) - 1) < 1e-9
    assert all(w >= 0 for w in s["learned"].values())
    # ... that moved from the seed toward the generator's truth.
    assert s["distance_learned"] < 0.5 * s["distance_seed"], s
    assert s["learned_status"] in ("CHALLENGER", "CHAMPION")
    for name in ("closed-won.html", "closed-lost.html"):
        page = open(os.path.join(s["reports"], name)).read()
        assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    # metrics published figures for the seed model at least
    assert any(k.endswith("v1") and v["n"] > 0 for k, v in s["metrics"].items())
    assert "closedloop summary" in out.stdout
