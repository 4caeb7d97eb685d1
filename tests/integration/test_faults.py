"""Resource faults on the join worker, against real brokers.

Disk full during an LMDB commit, two ways: a map size limit (store.map.max) and a state
dir on a tiny tmpfs (ENOSPC from the file system; needs root to mount, as CI is). The
worker must stop with a non-zero exit and a message naming the store and what to do,
must not have committed Kafka offsets past what LMDB holds, and after a restart with
space back its labeled output must equal an undisturbed run's.

Broker loss: a broker of this test's own (deploy/kafka on other ports and a temp run dir;
the shared broker is not touched) is down when the worker starts and goes away again
mid-run. The worker waits, /healthz answers 503 with a reason while no broker is up,
and once the broker is back it finishes and its output equals the undisturbed run's.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import test_join
from test_join import (JOIN, delete_topics, dump_state, ensure_broker, fold_labeled, history,
                       join_args, labeled_set, make_topics, publish_history, read_topic)

SOURCE = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FAULT_PORT = int(os.environ.get("CL_FAULTS_TEST_PORT", "29192"))  # controller: +1


def run(prefix, group, state, *extra, timeout=300):
    if not os.access(JOIN, os.X_OK):
        pytest.fail(f"{JOIN} not built")
    return subprocess.run(join_args(prefix, group, state, extra=extra), capture_output=True,
                          text=True, timeout=timeout)


def committed(prefix, group, partitions):
    c = Consumer({"bootstrap.servers": test_join.BROKER, "group.id": group,
                  "enable.auto.commit": False})
    tps = [TopicPartition(prefix + t, p) for t in ("snapshots", "outcomes")
           for p in range(partitions)]
    out = {(tp.topic[len(prefix):], tp.partition): tp.offset for tp in c.committed(tps, 30)}
    c.close()
    return out


def stored(state):
    """Next offsets per (topic, partition) as LMDB holds them (join --dump-state)."""
    out = {}
    for m in re.finditer(r"^partition (\d+) next_snapshots=(-?\d+) next_outcomes=(-?\d+)",
                         dump_state(state), re.M):
        out[("snapshots", int(m.group(1)))] = int(m.group(2))
        out[("outcomes", int(m.group(1)))] = int(m.group(3))
    return out


def assert_offsets_not_past_state(prefix, group, state, partitions):
    lmdb = stored(state)
    for key, off in committed(prefix, group, partitions).items():
        if off < 0:
            continue  # nothing committed for that partition
        assert off <= lmdb.get(key, 0), \
            f"{key}: Kafka has offset {off} committed but LMDB holds state only up to {lmdb.get(key)}"


@pytest.fixture(scope="module")
def world():
    """One history published once per test; the undisturbed run over the first copy."""
    ensure_broker()
    snaps, outs = history(2500, seed=5, tag="F")
    prefixes = []

    def publish():
        p = f"itfault{uuid.uuid4().hex[:10]}."
        make_topics(p, partitions=3)
        publish_history(p, snaps, outs)
        prefixes.append(p)
        return p

    base = publish()
    with tempfile.TemporaryDirectory() as state:
        r = run(base, "base-" + uuid.uuid4().hex[:8], state)
        assert r.returncode == 0, r.stderr[-4000:]
    expected = labeled_set(fold_labeled(read_topic(base + "labeled")))
    assert len(expected) > 2500
    yield {"publish": publish, "expected": expected}
    for p in prefixes:
        delete_topics(p)


def test_map_full_stops_cleanly_and_resumes(world, tmp_path):
    prefix = world["publish"]()
    group = "mapfull-" + uuid.uuid4().hex[:8]
    state = str(tmp_path / "state")
    r = run(prefix, group, state, "--store.map.initial=1048576", "--store.map.max=1048576",
            "--store.batch.max.ops=200")
    assert r.returncode != 0, "the worker went on although its store could not grow"
    assert "LMDB map full" in r.stderr and "raise store.map.max" in r.stderr, r.stderr[-3000:]
    assert state in r.stderr, "the message must name the store"
    assert_offsets_not_past_state(prefix, group, state, 3)

    r = run(prefix, group, state)
    assert r.returncode == 0, r.stderr[-4000:]
    assert labeled_set(fold_labeled(read_topic(prefix + "labeled"))) == world["expected"]


def test_disk_full_on_tmpfs_stops_cleanly_and_resumes(world, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    prefix = world["publish"]()
    group = "diskfull-" + uuid.uuid4().hex[:8]
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768k,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"mount tmpfs failed: {r.stderr}"
    try:
        state = str(mnt / "state")
        r = run(prefix, group, state, "--store.batch.max.ops=200")
        assert r.returncode != 0, "the worker went on although the disk was full"
        assert re.search(r"No space left on device|free disk|disk full", r.stderr), \
            r.stderr[-3000:]
        assert state in r.stderr, "the message must name the store"
        assert_offsets_not_past_state(prefix, group, state, 3)

        # Space back: the same file system, grown.
        r = subprocess.run(["mount", "-o", "remount,size=256m", str(mnt)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        r = run(prefix, group, state)
        assert r.returncode == 0, r.stderr[-4000:]
        assert labeled_set(fold_labeled(read_topic(prefix + "labeled"))) == world["expected"]
        for name in os.listdir(state):
            mode = os.stat(os.path.join(state, name)).st_mode
            assert mode & 0o077 == 0, f"LMDB file {name} must be private (0600), is {oct(mode)}"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---- broker loss --------------------------------------------------------------------

def broker_ctl(action, run_dir):
    env = dict(os.environ, CLOSEDLOOP_KAFKA_PORT=str(FAULT_PORT), CLOSEDLOOP_KAFKA_DIR=run_dir)
    args = ["--wipe"] if action == "wipe" else []
    script = "start.sh" if action == "start" else "stop.sh"
    r = subprocess.run(["bash", os.path.join(SOURCE, "deploy", "kafka", script), *args],
                       env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"{script} {args}: {r.stdout}\n{r.stderr}"


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def unhealthy(port):
    status, body = healthz(port)
    return (status, body) if status == 503 else None


def http_port(log_path):
    m = re.search(r"event=join_started .*http_port=(\d+)", log_path.read_text())
    return int(m.group(1)) if m else None


def test_broker_away_at_start_and_mid_run(tmp_path):
    for p in (FAULT_PORT, FAULT_PORT + 1):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                pytest.fail(f"port {p} is in use; set CL_FAULTS_TEST_PORT to a free base port")
    run_dir = str(tmp_path / "kafka")
    saved = test_join.BROKER
    test_join.BROKER = f"127.0.0.1:{FAULT_PORT}"  # the helpers below talk to this broker
    proc = None
    try:
        broker_ctl("start", run_dir)
        snaps, outs = history(1500, seed=9, tag="B")
        half = len(outs) // 2
        base, prefix = f"itbb{uuid.uuid4().hex[:8]}.", f"itbd{uuid.uuid4().hex[:8]}."
        for p in (base, prefix):
            make_topics(p, partitions=3)
        publish_history(base, snaps, outs)
        r = run(base, "base", str(tmp_path / "base-state"))
        assert r.returncode == 0, r.stderr[-4000:]
        expected = labeled_set(fold_labeled(read_topic(base + "labeled")))

        publish_history(prefix, snaps, outs[:half])
        broker_ctl("stop", run_dir)

        # Start while the broker is away: the worker waits and says why on /healthz.
        log_path = tmp_path / "join.log"
        args = [a for a in join_args(prefix, "lossy", str(tmp_path / "state"))
                if not a.startswith("--join.exit.idle.ms")]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        port = wait_for(lambda: http_port(log_path), 60, "the join worker's HTTP server")
        status, body = wait_for(lambda: unhealthy(port), 60,
                                "/healthz to report 503 while the broker is down")
        assert "Kafka broker unreachable" in body, body
        assert proc.poll() is None, "the worker exited while the broker was down"

        broker_ctl("start", run_dir)
        wait_for(lambda: healthz(port)[0] == 200, 120, "/healthz back to 200")
        wait_for(lambda: len(read_topic(prefix + "labeled")) > 0, 120,
                 "labeled output after the broker came back")

        # Mid-run: away again, then back, then the rest of the history.
        broker_ctl("stop", run_dir)
        status, body = wait_for(lambda: unhealthy(port), 60, "/healthz to report 503 mid-run")
        assert "Kafka broker unreachable" in body, body
        time.sleep(10)  # stay away a while: the worker must not exit
        assert proc.poll() is None, "the worker exited while the broker was down"
        broker_ctl("start", run_dir)
        publish_history(prefix, [], outs[half:])
        wait_for(lambda: healthz(port)[0] == 200, 120, "/healthz back to 200 after the restart")
        wait_for(lambda: labeled_set(fold_labeled(read_topic(prefix + "labeled"))) == expected,
                 180, "the labeled output to equal the undisturbed run's")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-4000:]
        proc = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        test_join.BROKER = saved
        broker_ctl("wipe", run_dir)
