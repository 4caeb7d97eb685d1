"""Exposure checks on a running worker (the join worker, on the shared broker): its HTTP
endpoint binds to loopback by default and is read-only (405 for POST/PUT/DELETE), the LMDB
files it creates are 0600, and a planted Kafka password given by flag appears neither in
its log nor on /metrics.

Not covered here yet (see docs/security.md): the outcomes worker's JWT and
client-credentials flows and the registry client with planted secrets; SOQL escaping with
hostile strings beyond tests/unit.
"""
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from test_join import JOIN, delete_topics, ensure_broker, join_args, make_topics


@pytest.fixture
def running_join(tmp_path):
    ensure_broker()
    if not os.access(JOIN, os.X_OK):
        pytest.fail(f"{JOIN} not built")
    prefix = f"itsec{uuid.uuid4().hex[:10]}."
    make_topics(prefix)
    secret = "Pl4nted-" + uuid.uuid4().hex
    state = tmp_path / "state"
    # Default http.listen (the worker's own default address), and a password property that
    # librdkafka accepts but PLAINTEXT never uses.
    args = [a for a in join_args(prefix, "sec-" + uuid.uuid4().hex[:6], str(state))
            if not a.startswith("--http.listen") and not a.startswith("--join.exit.idle.ms")]
    args += ["--http.listen=127.0.0.1:0", "-X", f"sasl.password={secret}", "--log.level=debug"]
    log_path = tmp_path / "join.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, port = time.time() + 60, None
        while port is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"event=join_started .*http_port=(\d+)", log_path.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        assert port, "join did not start:\n" + log_path.read_text()[-3000:]
        yield {"port": port, "secret": secret, "log": log_path, "state": state, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
        delete_topics(prefix)


def request(port, method, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"x" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_is_loopback_only_by_default():
    r = subprocess.run([JOIN, "--print-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("http.listen"))
    assert re.match(r"http\.listen = 127\.0\.0\.1:\d+\s", line), line


def test_endpoints_are_read_only_and_secrets_stay_out(running_join):
    port, secret = running_join["port"], running_join["secret"]
    for path in ("/metrics", "/healthz"):
        for method in ("POST", "PUT", "DELETE"):
            status, _ = request(port, method, path)
            assert status == 405, f"{method} {path} answered {status}"
    status, metrics = request(port, "GET", "/metrics")
    assert status == 200
    assert "closedloop_" in metrics
    assert secret not in metrics, "the planted password is on /metrics"
    status, _ = request(port, "GET", "/healthz")
    assert status == 200

    running_join["proc"].terminate()
    assert running_join["proc"].wait(60) == 0
    log = running_join["log"].read_text()
    assert "event=join_started" in log
    assert secret not in log, "the planted password is in the log"

    state = running_join["state"]
    files = [os.path.join(d, f) for d, _, fs in os.walk(state) for f in fs]
    assert any(f.endswith(".mdb") for f in files), files
    for f in files:
        if f.endswith(".mdb"):
            mode = os.stat(f).st_mode & 0o777
            assert mode == 0o600, f"{f} is {oct(mode)}, must be 0600"
