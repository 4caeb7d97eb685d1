"""closedloop-metrics on the real broker.

A generated labeled history (duplicates, a superseded outcome, a stale record,
retractions, a Kafka tombstone and one undecodable record) is produced to a fresh
`labeled` topic in Avro single-object encoding (fastavro, independent of the C codec).
The worker runs until its input is idle, publishes ModelMetrics and exits. The test
checks the published figures against scikit-learn on the reference evaluation set, the
poison record in the DLQ, and that replaying the same input (produced again, read by
the same state, and read from scratch by a new group and state) changes no figure.
A second run follows a `weights` topic holding the seed written with the schema before
`discovery` and a challenger with discovery evidence: both decode, and the Closed Lost
page lists the challenger's candidate factors.
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


def weight_config(version, status, weights, components=(), discovery=None):
    rec = {"model": h.MODEL, "version": version, "parent_version": 1 if version > 1 else None,
           "status": status, "created_at": 1746450000000 + version, "weights": weights,
           "stage_weights": [], "calibration": {"intercept": -3.0, "slope": 0.06},
           "bands": {"high": 70.0, "medium": 40.0}, "components": list(components),
           "training": None, "validation": [], "comparison": None, "reason": "test"}
    if discovery is not None:
        rec["discovery"] = discovery
    return rec


def single_object(path, rec):
    with open(path) as f:
        parsed = fastavro.parse_schema(json.load(f))
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(buf, parsed, rec)
    return buf.getvalue()


def test_lost_report_shows_the_latest_discovery_evidence(tmp_path):
    """The worker follows the weights topic: the seed written with the schema before
    `discovery` (schemas/history) still decodes, and the challenger's evidence appears
    on the Closed Lost page."""
    ensure_broker()
    prefix = f"itmetricsf{uuid.uuid4().hex[:10]}."
    make_topics(prefix)
    produce(prefix, h.history(n_opps=200, seed=29))
    seed = weight_config(1, "CHAMPION", dict(zip(h.COMPONENTS, h.SEED_W)))
    weights = {c: 0.9 * w for c, w in zip(h.COMPONENTS, h.CHALLENGER_W)}
    weights["owner_id_win_rate"] = 1.0 - sum(weights.values())
    owner = {"name": "owner_id_win_rate", "kind": "CATEGORY_WIN_RATE", "source": "owner_id",
             "smoothing": 20.0, "overall_rate": 0.4,
             "categories": [{"category": "005A", "rate": 0.45, "n": 120}], "breakpoints": [],
             "descending": False, "missing_value": 50.0}

    def evidence(name, source, gains, beats, adopted):
        return {"name": name, "kind": "CATEGORY_WIN_RATE", "source": source,
                "delta_auc": gains[0], "delta_log_loss": gains[1],
                "shuffled_max_delta_auc": gains[2], "shuffled_max_delta_log_loss": gains[3],
                "permutations": 19, "beats_shuffled": beats, "adopted": adopted,
                "n_examples": 4000, "n_with_value": 4000, "n_categories": 40}

    challenger = weight_config(2, "CHALLENGER", weights, [owner], [
        evidence("owner_id_win_rate", "owner_id", (0.041, 0.006, 0.011, 0.001), True, True),
        evidence("region_win_rate", "region<x>", (0.001, -0.0002, 0.008, 0.0012), False, False)])
    p = Producer({"bootstrap.servers": BROKER})
    p.produce(prefix + "weights", key=h.MODEL.encode(),
              value=single_object(os.path.join(h.SOURCE, "schemas", "history",
                                               "WeightConfig.v1.avsc"), seed))
    p.produce(prefix + "weights", key=(h.MODEL + "/challenger").encode(),
              value=single_object(os.path.join(h.SOURCE, "schemas", "WeightConfig.avsc"),
                                  challenger))
    assert p.flush(60) == 0

    log = run_metrics(prefix, "g-" + uuid.uuid4().hex, tmp_path / "state", tmp_path / "r")
    assert "weights_record_skipped" not in log, log[-4000:]
    assert "version=1 status=CHAMPION" in log and "version=2 status=CHALLENGER" in log
    html = (tmp_path / "r" / "closed-lost.html").read_text(encoding="utf-8")
    section = html[html.index("<h2>Factors the score misses</h2>"):]
    assert "Tested by the refit that produced version 2 (now challenger)" in section
    owner_row = section[section.index("<code>owner_id_win_rate</code>"):]
    owner_row = owner_row[:owner_row.index("</tr>")]
    assert "the owner&#39;s past win rate" in owner_row and "+0.041" in owner_row
    assert "adopted by challenger v2" in owner_row and "n = 4,000" in owner_row
    region_row = section[section.index("<code>region_win_rate</code>"):]
    region_row = region_row[:region_row.index("</tr>")]
    assert "not adopted (gain within noise)" in region_row
    assert "region&lt;x&gt;" in region_row and "region<x>" not in html
    assert "<h3>Groups that lose more often</h3>" in section
