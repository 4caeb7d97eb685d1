"""closedloop-snapshot against the real broker (deploy/kafka), decoded with fastavro.

Every test uses its own topic prefix. Records are read back with confluent-kafka and
decoded independently of closedloop: strip the single-object header (C3 01 + 8-byte
CRC-64-AVRO fingerprint, checked against the .avsc) and read the datum with
fastavro.schemaless_reader. Scores are recomputed here from the weights, so the test
also checks what the scorer computed, not only that it wrote something.
"""
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.request

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SRC = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SRC, "build", "bin"))
BROKER = "127.0.0.1:9092"
SNAPSHOT = os.path.join(BIN, "closedloop-snapshot")
SEED = {"speed_to_close": 0.15, "largest_deal": 0.20, "product_mix": 0.15,
        "upsell_instances": 0.25, "win_rate": 0.20, "recency": 0.05}
COMPONENTS = list(SEED)


def load_schema(name):
    with open(os.path.join(SRC, "schemas", name + ".avsc")) as f:
        raw = json.load(f)
    fp = fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(raw), "CRC-64-AVRO")
    return fastavro.parse_schema(raw), bytes.fromhex(fp)


SNAP_SCHEMA, SNAP_FP = load_schema("OpportunitySnapshot")
WEIGHTS_SCHEMA, WEIGHTS_FP = load_schema("WeightConfig")


@pytest.fixture(scope="module", autouse=True)
def broker():
    for tool in (SNAPSHOT, os.path.join(BIN, "closedloop"), os.path.join(BIN, "closedloop-gen")):
        assert os.access(tool, os.X_OK), f"{tool} is not built"
    r = subprocess.run(["bash", os.path.join(SRC, "deploy", "kafka", "start.sh")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "the local Kafka broker did not start:\n" + r.stdout + r.stderr


def new_prefix(partitions=3):
    p = "test-snap-" + "".join(random.choices(string.ascii_lowercase, k=10)) + "."
    r = subprocess.run([os.path.join(BIN, "closedloop"), "topics", "create",
                        "--topic.prefix=" + p, f"--partitions={partitions}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return p


def run_snapshot(prefix, *args, tmp, stdin=None, timeout=300, check=None):
    cmd = [SNAPSHOT, "--topic.prefix=" + prefix, "--http.listen=127.0.0.1:0",
           "--state.dir=" + str(tmp / "state"), "--snapshot.weights.wait.ms=20000", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr[-4000:]}"
    return r


def summaries(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def decode(value, schema=SNAP_SCHEMA, fp=SNAP_FP):
    assert value[:2] == b"\xc3\x01", "not single-object encoded"
    assert value[2:10] == fp, "written with another schema than the .avsc"
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


def read_topic(topic, expect=None, idle=5.0, limit=120.0):
    """Every record of the topic (all partitions, from the start) as (key, value, headers)."""
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "t-" + topic + str(random.random()),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = list(md.partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof, last, start = [], set(), time.time(), time.time()
    while time.time() - start < limit:
        m = c.poll(0.5)
        if m is None:
            if len(eof) == len(parts) and (expect is None or len(out) >= expect):
                break
            if expect is None and time.time() - last > idle:
                break
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
            continue
        eof.discard(m.partition())
        last = time.time()
        out.append((m.key().decode() if m.key() else None, m.value(), m.headers() or []))
    c.close()
    return out


def seed_score(snap, weights=SEED, intercept=-3.0, slope=0.06, high=70, medium=40):
    s = min(max(sum(weights[k] * snap[k] for k in weights), 0.0), 100.0)
    band = "HIGH" if s >= high else "MEDIUM" if s >= medium else "LOW"
    return s, band, 1.0 / (1.0 + math.exp(-(intercept + slope * s)))


def weight_config(version, status, weights, parent=None):
    return {"model": "opportunity_score", "version": version, "parent_version": parent,
            "status": status, "created_at": int(time.time() * 1000), "weights": weights,
            "calibration": {"intercept": -4.0, "slope": 0.08},
            "bands": {"high": 65.0, "medium": 35.0}, "reason": "integration test"}


def encode_weights(rec):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, WEIGHTS_SCHEMA, rec)
    return b"\xc3\x01" + WEIGHTS_FP + buf.getvalue()


def produce(topic, key, value):
    p = Producer({"bootstrap.servers": BROKER})
    errs = []
    p.produce(topic, key=key, value=value, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs == [None], errs


def snapshot_id(run, opp):
    return hashlib.sha256(f"{run}\0{opp}".encode()).hexdigest()[:32]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    r = subprocess.run([os.path.join(BIN, "closedloop-gen"), "--out", str(out / "h"),
                        "--opportunities", "25000", "--months", "3", "--seed", "11"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    runs = sorted((out / "h" / "runs").iterdir())
    sizes = {p: sum(1 for _ in open(p)) - 1 for p in runs}
    return runs, sizes


def check_record(key, value, champion_only=True, challenger=None):
    snap = decode(value)
    assert key == snap["opportunity_id"]
    assert snap["snapshot_id"] == snapshot_id(snap["run_id"], snap["opportunity_id"])
    scores = snap["scores"]
    assert len(scores) == (1 if champion_only else 2)
    s, band, prob = seed_score(snap)
    assert (scores[0]["model"], scores[0]["version"]) == ("opportunity_score", 1)
    assert scores[0]["score"] == pytest.approx(s, abs=1e-9)
    assert scores[0]["band"] == band
    assert scores[0]["probability"] == pytest.approx(prob, rel=1e-12)
    if challenger:
        s2, band2, prob2 = seed_score(snap, challenger["weights"], -4.0, 0.08, 65, 35)
        assert (scores[1]["model"], scores[1]["version"]) == ("opportunity_score", challenger["version"])
        assert scores[1]["score"] == pytest.approx(s2, abs=1e-9)
        assert scores[1]["band"] == band2
        assert scores[1]["probability"] == pytest.approx(prob2, rel=1e-12)
    return snap


def test_large_run_champion_then_challenger_then_idempotent_rerun(history, tmp_path):
    runs, sizes = history
    big = max(runs, key=lambda p: sizes[p])
    assert sizes[big] >= 10000, f"largest generated run has only {sizes[big]} rows"
    prefix = new_prefix()
    topic = prefix + "snapshots"

    r = run_snapshot(prefix, str(big), tmp=tmp_path, check=0)
    (s,) = summaries(r.stdout)
    assert s["status"] == "published"
    assert (s["read"], s["published"], s["rejected"], s["failed"]) == (sizes[big], sizes[big], 0, 0)
    assert "weights_seed_in_force" in r.stderr  # empty weights topic: the seed is the champion

    recs = read_topic(topic, expect=sizes[big])
    assert len(recs) == sizes[big]
    with open(big, newline="") as f:
        expected = {row["opportunity_id"]: row for row in csv.DictReader(f)}
    seen = set()
    for key, value, _ in recs:
        snap = check_record(key, value)
        row = expected[key]
        assert snap["stage"] == row["stage"] and snap["run_id"] == row["run_id"]
        for c in COMPONENTS:
            assert snap[c] == float(row[c])
        seen.add(snap["snapshot_id"])
    assert len(seen) == sizes[big]

    # A CHALLENGER appears on the weights topic: the next run carries both scores.
    challenger = weight_config(2, "CHALLENGER", {"speed_to_close": 0.3, "largest_deal": 0.05,
                                                 "product_mix": 0.05, "upsell_instances": 0.1,
                                                 "win_rate": 0.4, "recency": 0.1}, parent=1)
    produce(prefix + "weights", b"opportunity_score", encode_weights(challenger))
    other = [p for p in runs if p != big][-1]
    r = run_snapshot(prefix, str(other), tmp=tmp_path, check=0)
    (s2,) = summaries(r.stdout)
    assert s2["published"] == sizes[other]
    recs = read_topic(topic, expect=sizes[big] + sizes[other])
    assert len(recs) == sizes[big] + sizes[other]
    run_other = s2["run_id"]
    n_other = 0
    for key, value, _ in recs:
        snap = decode(value)
        if snap["run_id"] == run_other:
            check_record(key, value, champion_only=False, challenger=challenger)
            n_other += 1
    assert n_other == sizes[other]

    # Re-running the first file publishes the same snapshot ids again, no new ones.
    r = run_snapshot(prefix, str(big), tmp=tmp_path, check=0)
    recs = read_topic(topic, expect=2 * sizes[big] + sizes[other])
    ids_big = {decode(v)["snapshot_id"] for _, v, _ in recs if decode(v)["run_id"] == s["run_id"]}
    assert ids_big == seen
    assert sum(1 for _, v, _ in recs if decode(v)["run_id"] == s["run_id"]) == 2 * sizes[big]


HEADER = ("run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
          "created_date,expected_close_date,days_in_stage,segment,region,product,lead_source,"
          "type,speed_to_close,largest_deal,product_mix,upsell_instances,win_rate,recency,"
          "opportunity_score,account_score")


def row(opp, stage="Proposal", comps=("50", "60", "70", "80", "90", "100"), run="run-t"):
    return (f"{run},2025-03-03T06:00:00.000Z,{opp},001A,005B,{stage},1000.5,USD,2025-01-01,"
            f"2025-06-30,12,Enterprise,EMEA,Widgets,Web,New Business," + ",".join(comps) + ",55.5,")


BAD_FILE = "\n".join([
    HEADER,
    row("006G1"),                                                # line 2 good
    row(""),                                                     # line 3 missing id
    row("006B2", comps=("50", "abc", "70", "80", "90", "100")),  # line 4 non-numeric (column 18)
    row("006B3", comps=("50", "60", "101", "80", "90", "100")),  # line 5 outside 0..100 (column 19)
    row("006B4", stage="Closed Won"),                            # line 6 unknown stage
    row("006G1"),                                                # line 7 duplicate id
    row("006G2"),                                                # line 8 good
]) + "\n"

STAGES = "--snapshot.stages=Prospecting,Qualification,Needs Analysis,Proposal,Negotiation"


def test_bad_rows_are_skipped_and_reported_by_file_line_column(tmp_path):
    prefix = new_prefix()
    path = tmp_path / "run-bad.csv"
    path.write_text(BAD_FILE)
    r = run_snapshot(prefix, STAGES, str(path), tmp=tmp_path, check=0)
    (s,) = summaries(r.stdout)
    assert (s["read"], s["published"], s["rejected"], s["failed"]) == (7, 2, 5, 0)
    assert s["rejected_lines"] == [3, 4, 5, 6, 7]
    log = r.stderr
    name = str(path)
    assert re.search(re.escape(name) + r" line 3 column 3 \(opportunity_id\): is empty", log)
    assert re.search(re.escape(name) + r" line 4 column 18 \(largest_deal\): 'abc' is not a number", log)
    assert re.search(re.escape(name) + r" line 5 column 19 \(product_mix\): '101' is outside 0..100", log)
    assert re.search(re.escape(name) + r" line 6 column 6 \(stage\): 'Closed Won' is not one of snapshot.stages", log)
    assert re.search(re.escape(name) + r" line 7: opportunity_id '006G1' appears twice in the run", log)
    recs = read_topic(prefix + "snapshots", expect=2)
    assert sorted(k for k, _, _ in recs) == ["006G1", "006G2"]


def test_bad_rows_fail_policy_publishes_nothing(tmp_path):
    prefix = new_prefix()
    path = tmp_path / "run-bad.csv"
    path.write_text(BAD_FILE)
    r = run_snapshot(prefix, STAGES, "--snapshot.bad.rows=fail", str(path), tmp=tmp_path, check=1)
    (s,) = summaries(r.stdout)
    assert s["status"] == "rejected"
    assert (s["read"], s["published"], s["rejected"]) == (7, 0, 5)
    assert "nothing was published" in r.stderr
    assert read_topic(prefix + "snapshots", idle=3) == []


def create_topics(specs):
    admin = AdminClient({"bootstrap.servers": BROKER})
    for f in admin.create_topics(specs).values():
        f.result()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broker_down_at_start_fails_clearly_and_publishes_nothing(tmp_path):
    path = tmp_path / "run-ok.csv"
    path.write_text(HEADER + "\n" + row("006X1") + "\n")
    r = run_snapshot("test-snap-down.", f"--brokers=127.0.0.1:{free_port()}",
                     "--snapshot.weights.wait.ms=2000", str(path), tmp=tmp_path, check=1)
    assert "weights topic" in r.stderr and "gave up" in r.stderr
    assert all(s["published"] == 0 for s in summaries(r.stdout))


def test_missing_snapshots_topic_fails_before_publishing(tmp_path):
    prefix = "test-snap-" + "".join(random.choices(string.ascii_lowercase, k=10)) + "."
    create_topics([NewTopic(prefix + "weights", 1, 1, config={"cleanup.policy": "compact"})])
    path = tmp_path / "run-ok.csv"
    path.write_text(HEADER + "\n" + row("006X1") + "\n" + row("006X2") + "\n")
    r = run_snapshot(prefix, "--snapshot.connect.timeout.ms=5000", str(path), tmp=tmp_path, check=1)
    (s,) = summaries(r.stdout)
    assert s["status"] == "failed" and s["published"] == 0 and s["failed"] == 2
    assert "closedloop topics create" in s["error"] and "nothing was published" in s["error"]


def test_rows_kafka_refuses_are_reported_exactly(tmp_path):
    """A topic whose max.message.bytes is too small for some records: those rows, and
    only those, are reported as not published, by line."""
    prefix = "test-snap-" + "".join(random.choices(string.ascii_lowercase, k=10)) + "."
    create_topics([NewTopic(prefix + "snapshots", 1, 1, config={"max.message.bytes": "500"}),
                   NewTopic(prefix + "weights", 1, 1, config={"cleanup.policy": "compact"}),
                   NewTopic(prefix + "dlq", 1, 1)])
    lines = [HEADER]
    for i in range(12):
        r = row(f"006M{i}")
        if i in (2, 9):
            r = r.replace("Enterprise,EMEA,Widgets,Web,New Business",
                          ",".join(["x" * 120] * 5))
        lines.append(r)
    path = tmp_path / "run-mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    r = run_snapshot(prefix, "-X", "batch.num.messages=1", str(path), tmp=tmp_path, check=1)
    (s,) = summaries(r.stdout)
    assert s["status"] == "failed"
    assert (s["read"], s["published"], s["failed"]) == (12, 10, 2)
    assert s["unpublished_lines"] == [4, 11]
    recs = read_topic(prefix + "snapshots", expect=10)
    assert sorted(k for k, _, _ in recs) == sorted(f"006M{i}" for i in range(12) if i not in (2, 9))


def test_jsonl_from_stdin(tmp_path):
    prefix = new_prefix()
    rows = []
    for i in range(5):
        rows.append(json.dumps({"run_id": "run-j", "snapshot_time": "2025-03-03T06:00:00.000Z",
                                "opportunity_id": f"006J{i}", "account_id": None, "owner_id": "005",
                                "stage": "Proposal", "amount": 10.0 * i, "currency": "EUR",
                                "created_date": "2025-01-01", "expected_close_date": "2025-05-01",
                                "days_in_stage": i, "segment": "SMB", "region": None,
                                "product": None, "lead_source": None, "type": None,
                                "speed_to_close": 10 * i, "largest_deal": 20, "product_mix": 30,
                                "upsell_instances": 40, "win_rate": 50, "recency": 60,
                                "opportunity_score": None, "account_score": 12.5}))
    r = run_snapshot(prefix, "--snapshot.format=jsonl", "-", tmp=tmp_path, stdin="\n".join(rows) + "\n", check=0)
    (s,) = summaries(r.stdout)
    assert (s["input"], s["published"]) == ("stdin", 5)
    recs = read_topic(prefix + "snapshots", expect=5)
    for key, value, _ in recs:
        snap = check_record(key, value)
        assert snap["currency"] == "EUR" and snap["account_id"] is None
        assert snap["account_score"] == 12.5 and snap["region"] is None


def test_malformed_weights_record_goes_to_dlq_and_weights_stay(tmp_path):
    prefix = new_prefix()
    produce(prefix + "weights", b"opportunity_score", b"\xc3\x01garbage-not-avro")
    bad = weight_config(3, "CHAMPION", {"speed_to_close": 0.5, "largest_deal": 0.6}, parent=1)
    produce(prefix + "weights", b"opportunity_score", encode_weights(bad))  # sums to 1.1
    path = tmp_path / "run-ok.csv"
    path.write_text(HEADER + "\n" + row("006W1") + "\n")
    r = run_snapshot(prefix, str(path), tmp=tmp_path, check=0)
    recs = read_topic(prefix + "snapshots", expect=1)
    check_record(*recs[0][:2])  # seed champion only
    dlq = read_topic(prefix + "dlq", expect=2)
    assert len(dlq) == 2
    for key, value, headers in dlq:
        h = {k: v.decode() for k, v in headers}
        assert key == "opportunity_score" and h["worker"] == "snapshot"
        assert h["source.topic"] == prefix + "weights" and h["error"]
    assert dlq[0][1] == b"\xc3\x01garbage-not-avro"
    assert r.stderr.count("weights_record_rejected") == 2


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_follow_directory_picks_up_new_runs_and_weights(history, tmp_path):
    runs, sizes = history
    small = sorted((p for p in runs if sizes[p] > 0), key=lambda p: sizes[p])[:3]
    prefix = new_prefix()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(small[0], inbox / small[0].name)
    (inbox / ".partial.csv.tmp").write_text("not a run")  # hidden: never read
    errlog = open(tmp_path / "follow.err", "w+")
    cmd = [SNAPSHOT, "--topic.prefix=" + prefix, "--http.listen=127.0.0.1:0", "--follow",
           "--state.dir=" + str(tmp_path / "state"), "--snapshot.poll.interval.ms=200",
           "--snapshot.settle.ms=0", str(inbox)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, text=True)
    try:
        def log():
            errlog.seek(0)
            return errlog.read()
        port = int(wait_for(lambda: re.search(r"event=http_listening .*port=(\d+)", log()), 30,
                            "the HTTP endpoint").group(1))
        first = json.loads(proc.stdout.readline())
        assert first["published"] == sizes[small[0]]
        text = metrics(port)
        assert 'closedloop_snapshot_weights_version{model="opportunity_score",status="CHAMPION"} 1' in text
        assert f'closedloop_snapshot_rows_total{{result="published"}} {sizes[small[0]]}' in text
        assert "kafka_consumergroup_lag{" in text

        challenger = weight_config(5, "CHALLENGER", {"speed_to_close": 0.5, "largest_deal": 0.5}, parent=1)
        produce(prefix + "weights", b"opportunity_score", encode_weights(challenger))
        wait_for(lambda: 'status="CHALLENGER"} 5' in metrics(port), 30, "the challenger in /metrics")
        shutil.copy(small[1], inbox / small[1].name)
        second = json.loads(proc.stdout.readline())
        assert second["published"] == sizes[small[1]]
        recs = read_topic(prefix + "snapshots", expect=sizes[small[0]] + sizes[small[1]])
        for key, value, _ in recs:
            snap = decode(value)
            if snap["run_id"] == second["run_id"]:
                check_record(key, value, champion_only=False, challenger=challenger)
            else:
                check_record(key, value)

        # The challenger is rejected: from the next run on, champion only again.
        produce(prefix + "weights", b"opportunity_score",
                encode_weights(dict(challenger, status="REJECTED")))
        wait_for(lambda: 'status="CHALLENGER"' not in metrics(port), 30, "the challenger to end")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0

    # Restart: the done-file record in LMDB means nothing is published twice.
    r = run_snapshot(prefix, str(inbox), tmp=tmp_path, check=0)
    assert summaries(r.stdout) == []
    shutil.copy(small[2], inbox / small[2].name)
    r = run_snapshot(prefix, str(inbox), tmp=tmp_path, check=0)
    (s,) = summaries(r.stdout)
    assert s["input"].endswith(small[2].name) and s["published"] == sizes[small[2]]
