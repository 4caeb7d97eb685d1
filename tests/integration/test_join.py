"""closedloop-join against the real broker: arrival in either order, duplicates, a
re-opened opportunity, a deletion, a post-close snapshot and poison records.

Records are written here with fastavro in Avro single-object encoding (an independent
implementation of the framing the C codec reads), and the `labeled` output is read back
with fastavro and folded with the consumer rule of docs/labeled-contract.md
(`fold_labeled`), which the crash and scale tests reuse.

The broker is deploy/kafka (started if needed). A missing broker fails the test.
"""
import hashlib
import io
import json
import os
import socket
import subprocess
import time
import uuid

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SOURCE = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
BROKER = os.environ.get("CL_TEST_BROKER", "127.0.0.1:9092")
JOIN = os.path.join(BIN, "closedloop-join")
DAY_MS = 86400000


# ---- broker and topics --------------------------------------------------------------

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


def make_topics(prefix, partitions=3):
    admin = AdminClient({"bootstrap.servers": BROKER})
    specs = [NewTopic(prefix + "snapshots", partitions, 1),
             NewTopic(prefix + "outcomes", partitions, 1),
             NewTopic(prefix + "labeled", partitions, 1),
             NewTopic(prefix + "dlq", 1, 1),
             NewTopic(prefix + "join-changelog", partitions, 1,
                      config={"cleanup.policy": "compact"})]
    for topic, fut in admin.create_topics(specs).items():
        fut.result(30)
    # Metadata propagation: wait until every topic is visible.
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(timeout=10)
        if all(s.topic in md.topics and len(md.topics[s.topic].partitions) == s.num_partitions
               for s in specs):
            return
        time.sleep(0.2)
    pytest.fail("topics did not appear in metadata")


def delete_topics(prefix):
    admin = AdminClient({"bootstrap.servers": BROKER})
    names = [prefix + n for n in ("snapshots", "outcomes", "labeled", "dlq", "join-changelog")]
    for _, fut in admin.delete_topics(names).items():
        try:
            fut.result(30)
        except Exception:
            pass


# ---- Avro single-object encoding ----------------------------------------------------

def load_schema(name):
    with open(os.path.join(SOURCE, "schemas", name + ".avsc")) as f:
        raw = json.load(f)
    parsed = fastavro.parse_schema(raw)
    # fastavro prints the fingerprint in the byte order of the single-object header.
    return parsed, bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


SNAPSHOT, SNAPSHOT_FP = load_schema("OpportunitySnapshot")
OUTCOME, OUTCOME_FP = load_schema("OpportunityOutcome")
LABELED, LABELED_FP = load_schema("LabeledExample")


def encode(schema, fp, record):
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def decode_labeled(value):
    assert value[:2] == b"\xc3\x01", "labeled value is not single-object encoded"
    assert value[2:10] == LABELED_FP, "labeled value written with an unknown schema"
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), LABELED)


def snapshot_id(run_id, opp):
    return hashlib.sha256(f"{run_id}\0{opp}".encode()).hexdigest()[:32]


def opp_id(n, tag="T"):
    return ("006" + tag + f"{n:014d}")[:18]


def snapshot(opp, day, run=None):
    run = run or f"run-{day}"
    return {
        "snapshot_id": snapshot_id(run, opp), "run_id": run,
        "snapshot_time": day * DAY_MS + 6 * 3600 * 1000, "opportunity_id": opp,
        "account_id": "001A00000000000001", "owner_id": "005A00000000000001",
        "stage": "Proposal", "amount": 1000.0, "currency": "USD",
        "created_date": day - 30, "expected_close_date": day + 30, "days_in_stage": 3,
        "segment": "SMB", "region": "EMEA", "product": "Core", "lead_source": "Web",
        "type": "New Business", "attributes": {}, "speed_to_close": 50.0,
        "largest_deal": 40.0, "product_mix": 30.0, "upsell_instances": 20.0,
        "win_rate": 60.0, "recency": 70.0, "features": {}, "opportunity_score": None,
        "account_score": None, "scores": [],
    }


def outcome(opp, close_day, version_ms, won=True):
    return {
        "opportunity_id": opp, "account_id": "001A00000000000001",
        "owner_id": "005A00000000000001", "outcome": "WON" if won else "LOST",
        "stage_name": "Closed Won" if won else "Closed Lost", "close_date": close_day,
        "final_value": 1000.0, "currency": "USD", "created_date": close_day - 60,
        "days_to_close": 60, "system_modstamp": version_ms, "source": "rest",
        "ingested_at": version_ms + 1000, "type": None, "lead_source": None,
    }


class Writer:
    """Produces keyed records with the Java partitioner (murmur2), as the workers do."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.p = Producer({"bootstrap.servers": BROKER, "partitioner": "murmur2_random",
                           "enable.idempotence": True, "linger.ms": 20,
                           "queue.buffering.max.messages": 500000})

    def _send(self, topic, key, value, headers=None):
        while True:
            try:
                self.p.produce(self.prefix + topic, key=key, value=value, headers=headers)
                return
            except BufferError:
                self.p.poll(0.1)

    def snapshot(self, rec):
        self._send("snapshots", rec["opportunity_id"].encode(),
                   encode(SNAPSHOT, SNAPSHOT_FP, rec))

    def outcome(self, rec):
        self._send("outcomes", rec["opportunity_id"].encode(), encode(OUTCOME, OUTCOME_FP, rec))

    def tombstone(self, opp):
        self._send("outcomes", opp.encode(), None)

    def raw(self, topic, key, value):
        self._send(topic, key, value)

    def flush(self):
        assert self.p.flush(60) == 0, "records not acknowledged by the broker"


# ---- the worker ---------------------------------------------------------------------

def join_args(prefix, group, state_dir, idle_ms=2500, extra=()):
    return [JOIN, f"--brokers={BROKER}", f"--topic.prefix={prefix}", f"--group.id={group}",
            f"--state.dir={state_dir}", "--http.listen=127.0.0.1:0",
            f"--join.exit.idle.ms={idle_ms}", "--store.sync=nosync",
            "--log.level=info", *extra]


def run_join(prefix, group, state_dir, timeout=300, extra=()):
    if not os.path.exists(JOIN):
        pytest.fail(f"{JOIN} not built")
    r = subprocess.run(join_args(prefix, group, state_dir, extra=extra), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"closedloop-join exited {r.returncode}:\n{r.stderr[-4000:]}"
    return r.stderr


def dump_state(state_dir):
    r = subprocess.run([JOIN, f"--state.dir={state_dir}", "--dump-state"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ---- reading the output -------------------------------------------------------------

def read_topic(topic, decode=None, timeout=60):
    """Every record of `topic` from the beginning to its current end."""
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "reader-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, done = [], {p for p in parts if ends[p] == 0}
    deadline = time.time() + timeout
    while len(done) < len(parts) and time.time() < deadline:
        msgs = c.consume(10000, 1.0)
        for m in msgs:
            if m.error():
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or []))
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    c.close()
    assert len(done) == len(parts), f"could not read {topic} to its end"
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def fold_labeled(records):
    """The consumer rule of docs/labeled-contract.md. Returns
    {opportunity_id: (outcome_version, {snapshot_id: example})} for live examples."""
    state = {}  # opp -> [version, retracted, {sid: example}]
    for _, _, key, value, _ in records:
        opp = key.decode()
        if value is None:  # a Kafka tombstone retracts everything, with no version
            if opp in state:
                state[opp][2] = {}
            continue
        ex = decode_labeled(value)
        assert ex["snapshot"]["opportunity_id"] == opp == ex["outcome"]["opportunity_id"]
        v = ex["outcome_version"]
        v = int(v.timestamp() * 1000) if hasattr(v, "timestamp") else v
        cur = state.get(opp)
        if ex["retracted"]:
            if cur is None or v >= cur[0]:
                state[opp] = [v, True, {}]
            continue
        if cur is not None and (v < cur[0] or (v == cur[0] and cur[1])):
            continue  # stale, or already retracted at this version
        if cur is None or v > cur[0]:
            cur = state[opp] = [v, False, {}]
        cur[2][ex["snapshot"]["snapshot_id"]] = ex
    return {opp: (s[0], s[2]) for opp, s in state.items() if s[2]}


def labeled_set(folded):
    return {(opp, sid, v) for opp, (v, exs) in folded.items() for sid in exs}


# ---- the test -----------------------------------------------------------------------

@pytest.fixture
def env(tmp_path):
    ensure_broker()
    prefix = f"itjoin{uuid.uuid4().hex[:10]}."
    make_topics(prefix)
    yield prefix, "join-" + uuid.uuid4().hex[:8], str(tmp_path / "state")
    delete_topics(prefix)


def test_join_scenarios(env):
    prefix, group, state_dir = env
    w = Writer(prefix)
    D = 20100  # days since epoch
    expected = set()

    # A: snapshots first, outcome later (second phase). s3 is taken after the close.
    a = opp_id(1)
    sa = [snapshot(a, D), snapshot(a, D + 7), snapshot(a, D + 21)]
    # B: outcome first, snapshots in the second phase.
    b = opp_id(2)
    ob = outcome(b, D + 15, 5_000)
    sb = [snapshot(b, D + 1)]
    # C: duplicates of everything.
    c = opp_id(3)
    sc = snapshot(c, D)
    oc = outcome(c, D + 5, 7_000, won=False)
    # D: closed, re-opened (tombstone), scored again, closed again later.
    d = opp_id(4)
    sd1, sd2 = snapshot(d, D), snapshot(d, D + 20)
    od1, od2 = outcome(d, D + 10, 10_000), outcome(d, D + 40, 20_000, won=False)
    # E: deleted after closing.
    e = opp_id(5)
    se, oe = snapshot(e, D), outcome(e, D + 3, 3_000)
    # F: still open: waits, nothing emitted.
    f = opp_id(6)
    sf = snapshot(f, D)

    for s in sa + [sc, sc, sd1, se, sf]:
        w.snapshot(s)
    for o in [ob, oc, od1, oe]:
        w.outcome(o)
    w.raw("snapshots", b"006POISON000000001", b"\xc3\x01garbage")
    w.raw("outcomes", None, encode(OUTCOME, OUTCOME_FP, outcome(opp_id(9), D, 1)))
    w.flush()
    run_join(prefix, group, state_dir)

    # Second phase: the worker restarts from the offsets in LMDB.
    w.outcome(outcome(a, D + 14, 4_000))
    for s in sb:
        w.snapshot(s)
    w.snapshot(sc)
    w.outcome(oc)
    w.tombstone(d)
    w.snapshot(sd2)
    w.outcome(od2)
    w.tombstone(e)
    w.outcome(outcome(e, D + 3, 2_000))  # an older version arriving late: stale
    w.flush()
    log = run_join(prefix, group, state_dir)

    expected |= {(a, sa[0]["snapshot_id"], 4_000), (a, sa[1]["snapshot_id"], 4_000)}
    expected |= {(b, sb[0]["snapshot_id"], 5_000)}
    expected |= {(c, sc["snapshot_id"], 7_000)}
    expected |= {(d, sd1["snapshot_id"], 20_000), (d, sd2["snapshot_id"], 20_000)}

    records = read_topic(prefix + "labeled")
    folded = fold_labeled(records)
    assert labeled_set(folded) == expected

    # Content: joined examples carry both sides and days_before_close.
    ex = folded[a][1][sa[1]["snapshot_id"]]
    assert ex["days_before_close"] == 7
    assert ex["outcome"]["outcome"] == "WON"
    assert ex["snapshot"]["stage"] == "Proposal"
    # The post-close snapshot of A was never emitted, not even retracted.
    assert all(decode_labeled(r[3])["snapshot"]["snapshot_id"] != sa[2]["snapshot_id"]
               for r in records if r[3] is not None)
    # The deletion and the re-open produced retraction markers.
    retracted = [(r[2].decode(), decode_labeled(r[3])) for r in records if r[3] is not None]
    retracted = [(k, x) for k, x in retracted if x["retracted"]]
    assert any(k == e for k, _ in retracted)
    assert any(k == d and x["snapshot"]["snapshot_id"] == sd1["snapshot_id"] for k, x in retracted)
    # Output is keyed by opportunity id, so it is co-partitioned with the inputs.
    assert all(r[2] is not None for r in records)

    # Poison records went to the DLQ with their source coordinates; the rest went on.
    dlq = read_topic(prefix + "dlq")
    assert len(dlq) == 2
    for _, _, key, value, headers in dlq:
        h = {k: v for k, v in headers}
        assert h["source.topic"].decode() in (prefix + "snapshots", prefix + "outcomes")
        assert int(h["source.offset"]) >= 0
        assert h["worker"] == b"join"
        assert h["error"]
    assert {k for _, _, k, _, _ in dlq} == {b"006POISON000000001", None}

    # The state: F waits with its snapshot; E is retracted; offsets are at the end.
    dump = dump_state(state_dir)
    line_f = [ln for ln in dump.splitlines() if ln.startswith("state ") and f" {f} " in ln]
    assert len(line_f) == 1 and "outcome=0" in line_f[0]
    line_e = [ln for ln in dump.splitlines() if ln.startswith("state ") and f" {e} " in ln]
    assert len(line_e) == 1 and "retracted=1" in line_e[0] and "version=3000" in line_e[0]
    assert "record_to_dlq" not in log  # poison was handled in the first run only


def test_join_rejects_bad_config(tmp_path):
    r = subprocess.run([JOIN, "--join.snapshots.max=0", f"--state.dir={tmp_path}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "join.snapshots.max" in r.stderr


# ---- a larger history, for the crash, scale and bench runs --------------------------

def history(n, seed=7, tag="H"):
    """Deterministic events for n opportunities over ~8 months (so no open opportunity
    expires): (snapshots, outcome_events) where outcome_events are ("o", record) or
    ("t", opp). Mix: ~3 snapshots each, 85% closed, 4% re-opened and closed again, 2%
    deleted, 3% closed unscored, 5% re-published snapshots, some post-close snapshots."""
    import random
    rnd = random.Random(seed)
    D = 20000
    snaps, outs = [], []
    for i in range(n):
        opp = opp_id(i, tag)
        start = D + rnd.randrange(0, 120)
        kind = rnd.random()
        if kind < 0.03:  # unscored: an outcome, never a snapshot
            close = start + rnd.randrange(5, 60)
            outs.append((close * DAY_MS, ("o", outcome(opp, close, close * DAY_MS + i))))
            continue
        days = sorted(rnd.sample(range(start, start + 90), rnd.randrange(1, 5)))
        for d in days:
            snaps.append(snapshot(opp, d))
            if rnd.random() < 0.05:
                snaps.append(snapshot(opp, d))
        if kind < 0.88:
            close = days[-1] + rnd.randrange(-3, 20)  # may exclude the last snapshot
            v1 = close * DAY_MS + i
            outs.append((v1, ("o", outcome(opp, close, v1, won=rnd.random() < 0.3))))
            r = rnd.random()
            if r < 0.04:  # re-opened, scored again, closed again
                outs.append((v1 + 1, ("t", opp)))
                later = close + 10
                snaps.append(snapshot(opp, later))
                v2 = (later + 20) * DAY_MS + i
                outs.append((v2, ("o", outcome(opp, later + 20, v2, won=False))))
            elif r < 0.06:  # deleted
                outs.append((v1 + 2, ("t", opp)))
    rnd.shuffle(snaps)
    outs.sort(key=lambda e: e[0])
    return snaps, [e[1] for e in outs]


def publish_history(prefix, snaps, outs):
    w = Writer(prefix)
    for s in snaps:
        w.snapshot(s)
    for kind, x in outs:
        if kind == "o":
            w.outcome(x)
        else:
            w.tombstone(x)
    w.flush()
