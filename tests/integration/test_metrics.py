"""closedloop-metrics on the real broker.

A generated labeled history (duplicates, a superseded outcome, a stale record,
retractions, a Kafka tombstone and one undecodable record) is produced to a fresh
`labeled` topic in Avro single-object encoding (fastavro, independent of the C codec).
The worker runs until its input is idle, publishes ModelMetrics and exits. The test
checks the published figures against scikit-learn on the reference evaluation set, the
poison record in the DLQ, and that replaying the same input (produced again, read by
the same state, and read from scratch by a new group and state) changes no figure.
"""
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import fastavro
import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro.schema import fingerprint, to_parsing_canonical_form
from sklearn.metrics import brier_score_loss, log_loss, precision_score, roc_auc_score

sys.path.insert(0, os.path.dirname(__file__))
import metrics_harness as h  # noqa: E402

BROKER = os.environ.get("CL_TEST_BROKER", "127.0.0.1:9092")


def ensure_broker():
    host, port = BROKER.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return
    except OSError:
        pass
    start = os.path.join(h.SOURCE, "deploy", "kafka", "start.sh")
    if not os.path.exists(start):
        pytest.fail(f"no broker at {BROKER} and no {start} to start one")
    r = subprocess.run(["bash", start], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"deploy/kafka/start.sh failed: {r.stdout}\n{r.stderr}")


def schema(name):
    with open(os.path.join(h.SOURCE, "schemas", name + ".avsc")) as f:
        parsed = fastavro.parse_schema(json.load(f))
    return parsed, bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


LABELED, LABELED_FP = schema("LabeledExample")
METRICS, METRICS_FP = schema("ModelMetrics")


def encode(record):
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + LABELED_FP)
    fastavro.schemaless_writer(buf, LABELED, record)
    return buf.getvalue()


def decode_metrics(value):
    assert value[:2] == b"\xc3\x01" and value[2:10] == METRICS_FP
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), METRICS, METRICS)


def make_topics(prefix):
    admin = AdminClient({"bootstrap.servers": BROKER})
    specs = [NewTopic(prefix + "labeled", 3, 1), NewTopic(prefix + "metrics", 1, 1),
             NewTopic(prefix + "dlq", 1, 1),
             NewTopic(prefix + "weights", 1, 1, config={"cleanup.policy": "compact"})]
    for _, fut in admin.create_topics(specs).items():
        fut.result(30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(timeout=10)
        if all(s.topic in md.topics and len(md.topics[s.topic].partitions) == s.num_partitions
               for s in specs):
            return
        time.sleep(0.2)
    pytest.fail("topics did not appear in metadata")


def produce(prefix, exs, extra=()):
    p = Producer({"bootstrap.servers": BROKER, "partitioner": "murmur2_random",
                  "enable.idempotence": True})
    for e in exs:
        p.produce(prefix + "labeled", key=e["snapshot"]["opportunity_id"].encode(),
                  value=encode(e))
    for key, value in extra:
        p.produce(prefix + "labeled", key=key, value=value)
    assert p.flush(60) == 0


def read_topic(topic, timeout=60):
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "reader-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, done = [], {p for p in parts if ends[p] == 0}
    deadline = time.time() + timeout
    while len(done) < len(parts) and time.time() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error():
                continue
            out.append((m.key(), m.value(), m.headers() or []))
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    c.close()
    assert len(done) == len(parts), f"could not read {topic} to its end"
    return out


def run_metrics(prefix, group, state, reports):
    assert os.path.exists(h.METRICS), f"{h.METRICS} is not built"
    r = subprocess.run([h.METRICS, f"--brokers={BROKER}", f"--topic.prefix={prefix}",
                        f"--group.id={group}", f"--state.dir={state}",
                        f"--metrics.report.dir={reports}", "--http.listen=127.0.0.1:0",
                        "--metrics.exit.idle.ms=3000", "--store.sync=nosync"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"closedloop-metrics exited {r.returncode}:\n{r.stderr[-4000:]}"
    return r.stderr


def figures(records):
    """Published ModelMetrics without generated_at, keyed by (version, window)."""
    out = {}
    for key, value, _ in records:
        m = decode_metrics(value)
        assert key.decode() == m["model"]
        m.pop("generated_at")
        k = (m["version"], m["window"]["kind"], str(m["window"]["start"]))
        out[k] = json.dumps(m, sort_keys=True, default=str)
    return out


def test_metrics_on_the_broker(tmp_path):
    ensure_broker()
    prefix = f"itmetrics{uuid.uuid4().hex[:10]}."
    make_topics(prefix)
    exs = h.history(n_opps=400, seed=23)
    # A Kafka tombstone retracts opportunity 7 as well.
    tomb_opp = "006T00000000007"
    exs_ref = exs + [dict(e, retracted=True) for e in exs
                     if e["snapshot"]["opportunity_id"] == tomb_opp]
    extra = [(tomb_opp.encode(), None), (b"006POISON", b"\xc3\x01not avro at all")]
    produce(prefix, exs, extra)
    log = run_metrics(prefix, "g-" + uuid.uuid4().hex, tmp_path / "state", tmp_path / "r1")
    assert "metrics_published" in log

    first = read_topic(prefix + "metrics")
    got = {}
    for _, value, _ in first:
        m = decode_metrics(value)
        got[(m["version"], m["window"]["kind"])] = m
    for version in (1, 2):
        items = h.evaluated(exs_ref, version)
        m = got[(version, "CUMULATIVE")]
        y = np.array([i[2] for i in items])
        s = np.array([i[0] for i in items])
        p = np.array([i[1] for i in items])
        assert m["n"] == len(items) and m["won"] == int(y.sum())
        assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert m["precision"] == pytest.approx(precision_score(y, s >= 70, zero_division=0),
                                               abs=1e-12)
        assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        assert m["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1]), abs=1e-9)
        assert m["horizon"] == "LATEST_BEFORE_HORIZON" and m["horizon_days"] == 7
    assert (tmp_path / "r1" / "closed-won.html").stat().st_size > 10000
    assert (tmp_path / "r1" / "closed-lost.html").stat().st_size > 5000

    dlq = read_topic(prefix + "dlq")
    assert len(dlq) == 1 and dlq[0][0] == b"006POISON"
    headers = dict(dlq[0][2])
    assert headers["worker"] == b"metrics" and headers["source.topic"] == (prefix + "labeled").encode()

    # Replay: the same records again, read by the same state -> identical figures.
    produce(prefix, exs, extra)
    run_metrics(prefix, "g-" + uuid.uuid4().hex, tmp_path / "state", tmp_path / "r2")
    second = read_topic(prefix + "metrics")[len(first):]
    assert second, "nothing published after the replay"
    assert figures(second) == figures(first)

    # And from scratch (new group, new state) over the doubled topic -> identical figures.
    before = len(first) + len(second)
    run_metrics(prefix, "g-" + uuid.uuid4().hex, tmp_path / "state2", tmp_path / "r3")
    third = read_topic(prefix + "metrics")[before:]
    assert figures(third) == figures(first)
