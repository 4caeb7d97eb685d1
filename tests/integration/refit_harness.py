"""Helpers of the refit integration tests: the broker, topics, fastavro encoding of
LabeledExample / WeightConfig, synthetic labeled examples from a known model, the
worker process, the weights topic and the ops CLI."""
import io
import json
import math
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
import uuid

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro.schema import fingerprint, to_parsing_canonical_form

import hashlib
import socket

SOURCE = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
BROKER = os.environ.get("CL_TEST_BROKER", "127.0.0.1:9092")
REFIT = os.path.join(BIN, "closedloop-refit")
CLI = os.path.join(BIN, "closedloop")
DAY_MS = 86400000
MODEL = "opportunity_score"
NAMES = ["speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate",
         "recency"]
SEED = [0.15, 0.20, 0.15, 0.25, 0.20, 0.05]
TRUTH = [0.05, 0.35, 0.05, 0.40, 0.05, 0.10]


def ensure_broker():
    host, port = BROKER.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return
    except OSError:
        pass
    start = os.path.join(SOURCE, "deploy", "kafka", "start.sh")
    if not os.path.exists(start):
        pytest.fail(f"no broker at {BROKER} and no {start} to start one")
    r = subprocess.run(["bash", start], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"deploy/kafka/start.sh failed: {r.stdout}\n{r.stderr}")


def load_schema(name):
    with open(os.path.join(SOURCE, "schemas", name + ".avsc")) as f:
        parsed = fastavro.parse_schema(json.load(f))
    return parsed, bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


LABELED, LABELED_FP = load_schema("LabeledExample")
WEIGHTS, WEIGHTS_FP = load_schema("WeightConfig")


def encode(schema, fp, record):
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def decode_weights(value):
    assert value[:2] == b"\xc3\x01", "weights value is not single-object encoded"
    assert value[2:10] == WEIGHTS_FP, "weights value written with an unknown schema"
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), WEIGHTS)


@pytest.fixture
def env(tmp_path):
    ensure_broker()
    if not os.access(REFIT, os.X_OK):
        pytest.fail(f"{REFIT} is not built")
    prefix = f"itrefit{uuid.uuid4().hex[:10]}."
    admin = AdminClient({"bootstrap.servers": BROKER})
    specs = [NewTopic(prefix + "labeled", 3, 1), NewTopic(prefix + "dlq", 1, 1),
             NewTopic(prefix + "weights", 1, 1, config={"cleanup.policy": "compact"})]
    for _, fut in admin.create_topics(specs).items():
        fut.result(30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(timeout=10)
        if all(s.topic in md.topics for s in specs):
            break
        time.sleep(0.2)
    yield prefix, str(tmp_path / "state"), tmp_path
    for _, fut in admin.delete_topics([s.topic for s in specs]).items():
        try:
            fut.result(30)
        except Exception:
            pass


def score_of(w, c):
    return min(100.0, max(0.0, sum(wi * ci for wi, ci in zip(w, c))))


def entry(version, w, c, cal=(-3.0, 0.06)):
    s = score_of(w, c)
    band = "HIGH" if s >= 70 else "MEDIUM" if s >= 40 else "LOW"
    return {"model": MODEL, "version": version, "score": s, "band": band,
            "probability": 1 / (1 + math.exp(-(cal[0] + cal[1] * s)))}


def example(n, snap_day, close_day, won, comps, scores, version_ms, attrs=None):
    opp = f"006R{n:014d}"
    run = f"run-{snap_day}"
    snap = {
        "snapshot_id": hashlib.sha256(f"{run}\0{opp}".encode()).hexdigest()[:32],
        "run_id": run, "snapshot_time": snap_day * DAY_MS + 6 * 3600 * 1000,
        "opportunity_id": opp, "account_id": f"001A{n:014d}", "owner_id": "005A00000000000001",
        "stage": "Proposal", "amount": 1000.0, "currency": "USD",
        "created_date": snap_day - 30, "expected_close_date": close_day, "days_in_stage": 3,
        "segment": "SMB", "region": "EMEA", "product": "Core", "lead_source": "Web",
        "type": "New Business", "attributes": {}, "features": {},
        "opportunity_score": None, "account_score": None, "scores": scores,
    }
    snap.update(dict(zip(NAMES, comps)))
    snap.update(attrs or {})
    outcome = {
        "opportunity_id": opp, "account_id": f"001A{n:014d}",
        "owner_id": "005A00000000000001", "outcome": "WON" if won else "LOST",
        "stage_name": "Closed Won" if won else "Closed Lost", "close_date": close_day,
        "final_value": 1000.0, "currency": "USD", "created_date": snap_day - 30,
        "days_to_close": close_day - snap_day + 30, "system_modstamp": version_ms,
        "source": "rest", "ingested_at": version_ms + 1000, "type": None, "lead_source": None,
    }
    return opp, {"days_before_close": close_day - snap_day, "outcome_version": version_ms,
                 "retracted": False, "joined_at": version_ms + 2000, "snapshot": snap,
                 "outcome": outcome}


def produce(prefix, records):
    p = Producer({"bootstrap.servers": BROKER, "partitioner": "murmur2_random",
                  "linger.ms": 20, "queue.buffering.max.messages": 500000})
    for key, rec in records:
        value = encode(LABELED, LABELED_FP, rec)
        while True:
            try:
                p.produce(prefix + "labeled", key=key.encode(), value=value)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0, "labeled records not acknowledged by the broker"


def produce_raw(prefix, key, value, topic="labeled"):
    p = Producer({"bootstrap.servers": BROKER, "partitioner": "murmur2_random"})
    p.produce(prefix + topic, key=key, value=value)
    assert p.flush(30) == 0, "record not acknowledged by the broker"


def read_topic(topic, count, timeout=30):
    """The first `count` records of a one-partition topic."""
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "it-" + uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.time() + timeout
    while len(out) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            out.append(m)
    c.close()
    assert len(out) == count, f"{topic}: {len(out)} records, expected {count}"
    return out


def draw(rng, truth, a, b, n0, count, first_day, days, snapshots, champion_w=None,
         challenger=None):
    """count opportunities closing over `days` from first_day, labels from truth."""
    out = []
    for i in range(count):
        comps = [rng.uniform(0, 100) for _ in NAMES]
        p = 1 / (1 + math.exp(-(a + b * score_of(truth, comps))))
        won = rng.random() < p
        close = first_day + int(days * i / count)
        for s in range(snapshots):
            snap_day = close - 7 * (snapshots - s) - 7
            scores = [entry(1, champion_w or SEED, comps)]
            if challenger:
                scores.append(entry(challenger[0], challenger[1], comps, challenger[2]))
            out.append(example(n0 + i, snap_day, close, won, comps, scores,
                               1700000000000 + (n0 + i)))
    return out


class Refit:
    def __init__(self, prefix, state, log_path, *flags):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [REFIT, "--brokers", BROKER, "--topic.prefix", prefix,
             "--group.id", prefix + "refit", "--state.dir", state,
             "--http.listen", "127.0.0.1:0", "--store.sync", "nosync",
             "--refit.discover", "false", "--refit.schedule.hours", "0",
             "--refit.half.life.days", "0", *flags],
            stdout=self.log, stderr=self.log)

    def port(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                m = re.findall(rb"event=refit_started .*http_port=(\d+)", f.read())
            if m:
                return int(m[-1])
            assert self.proc.poll() is None, self.tail()
            time.sleep(0.2)
        pytest.fail("refit did not start:\n" + self.tail())

    def tail(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("refit did not stop within 60 s of SIGTERM:\n" + self.tail())
        self.log.close()
        assert rc == 0, f"refit exited {rc}:\n{self.tail()}"


def read_weights(prefix, want, timeout, worker):
    """All weights records (key, record) once `want(records)` holds."""
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "it-" + uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(prefix + "weights", 0, 0)])
    records = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                records.append((m.key().decode(), decode_weights(m.value())))
                continue
            if want(records):
                return records
            assert worker.proc.poll() is None, "refit exited:\n" + worker.tail()
    finally:
        c.close()
    pytest.fail(f"weights topic never satisfied the expectation; got "
                f"{[(k, r['version'], r['status']) for k, r in records]}\n{worker.tail()}")


def cli(prefix, *args, check=True):
    r = subprocess.run([CLI, *args, "--brokers", BROKER, "--topic.prefix", prefix],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"closedloop {' '.join(args)}: {r.returncode}\n{r.stderr}"
    return r


def has(status, version):
    return lambda recs: any(r["status"] == status and r["version"] == version for _, r in recs)


def distance(w, ref):
    return sum(abs(w[n] - r) for n, r in zip(NAMES, ref))


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


