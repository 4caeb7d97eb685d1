"""Both analysis reports opened in headless Chromium (Debian's `chromium` package).

The reports come from `closedloop-metrics --offline` on a generated history that
includes a hostile owner name ("005D<script>"). Each page must be well-formed XML,
reference nothing outside itself, render in Chromium with no console error, produce a
screenshot, and show the key figures (deal counts, AUC, precision at HIGH) that the
same run published as ModelMetrics. A missing Chromium fails the test.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import metrics_harness as h  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(tmp_path, *args):
    assert os.path.exists(CHROMIUM), "chromium is not installed (apt-get install -y chromium)"
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    src = tmp / "labeled.jsonl"
    h.to_jsonl(h.history(), src)
    assert os.path.exists(h.METRICS), f"{h.METRICS} is not built"
    p = subprocess.run([h.METRICS, f"--offline={src}", f"--state.dir={tmp / 'state'}",
                        f"--metrics.report.dir={tmp / 'out'}", "--store.sync=nosync",
                        "--metrics.salesforce.instance.url=https://acme.my.salesforce.com",
                        "--log.level=warn"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    recs = [h.untag(json.loads(line)) for line in p.stdout.splitlines() if line.strip()]
    cum = next(r for r in recs if r["version"] == 1 and r["window"]["kind"] == "CUMULATIVE")
    return tmp, cum


@pytest.mark.parametrize("name", ["closed-won.html", "closed-lost.html"])
def test_report_renders_without_errors(reports, name, tmp_path):
    tmp, cum = reports
    path = tmp / "out" / name
    html = path.read_text(encoding="utf-8")
    ET.fromstring(html.split("\n", 1)[1])  # well-formed (after the doctype line)
    assert not re.search(r"(src|href)=\"(https?:)?//(?!acme\.my\.salesforce\.com)", html), \
        "the report references an external resource"
    assert "<script" not in html.lower(), "unescaped hostile input or script in the page"
    assert "005D&lt;script&gt;" in html

    shot = tmp_path / "shot.png"
    p = chromium(tmp_path, "--window-size=1200,3000", f"--screenshot={shot}", path.as_uri())
    assert shot.exists() and shot.stat().st_size > 10000, p.stderr[-2000:]
    console = [l for l in p.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert not console, "console errors:\n" + "\n".join(console)

    p = chromium(tmp_path, "--dump-dom", path.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    n = f"{cum['n']:,}"
    if name == "closed-won.html":
        assert "Closed Won analysis" in dom
        assert n in dom and f"{round(100 * cum['auc'])}%" in dom
        assert f"{round(100 * cum['precision'])}%" in dom
        assert "Reliability: predicted vs observed win rate" in dom
        assert "Precision and recall by threshold" in dom
        assert "AUC by month of close" in dom
        assert "<td>version 2</td>" in dom  # champion vs challenger row
    else:
        assert "Closed Lost analysis" in dom
        lost = f"{cum['lost']:,}"
        assert lost in dom
        assert "High-scored losses" in dom and "Misleading components" in dom
        assert "https://acme.my.salesforce.com/lightning/r/Opportunity/006T" in dom
        assert "Recommended weight changes" in dom
