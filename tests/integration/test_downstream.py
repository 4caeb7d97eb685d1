"""A consumer outside closedloop follows the weights topic (issue 8).

WeightConfig records are encoded by closedloop's own codec (closedloop-avro, single-
object encoding) and produced to a fresh compacted weights topic created by
`closedloop topics create`; then the example consumers in examples/downstream — Python
(confluent-kafka + fastavro) and C (plain librdkafka + avro-c) — must print exactly the
champions, in order, and skip what is not a champion or cannot be read.
"""
import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Producer

SRC = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SRC, "build", "bin"))
BROKERS = os.environ.get("CLOSEDLOOP_BROKERS", "127.0.0.1:9092")
SCHEMA = os.path.join(SRC, "schemas", "WeightConfig.avsc")


def weight_config(version, status, weights, parent=None):
    return {
        "model": "opportunity_score", "version": version,
        "parent_version": parent, "status": status, "created_at": 1764288000000 + version,
        "weights": weights, "stage_weights": [],
        "calibration": {"intercept": -3.0, "slope": 0.06},
        "bands": {"high": 70.0, "medium": 40.0},
        "components": [], "training": None, "validation": [], "comparison": None,
        "reason": "test %d" % version,
    }


SEED = {"speed_to_close": 0.15, "largest_deal": 0.20, "product_mix": 0.15,
        "upsell_instances": 0.25, "win_rate": 0.20, "recency": 0.05}
NEW = {"speed_to_close": 0.30, "largest_deal": 0.05, "product_mix": 0.10,
       "upsell_instances": 0.10, "win_rate": 0.35, "recency": 0.10}


def encode(records):
    """JSON records -> list of framed messages via closedloop-avro (4-byte BE length prefix)."""
    exe = os.path.join(BIN, "closedloop-avro")
    assert os.path.exists(exe), "closedloop-avro is not built at %s" % exe
    lines = "".join(json.dumps(r) + "\n" for r in records)
    out = subprocess.run([exe, "encode", "--schema-dir", os.path.join(SRC, "schemas"),
                          "--record", "WeightConfig"], input=lines.encode(), capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    data, msgs = out.stdout, []
    while data:
        n = int.from_bytes(data[:4], "big")
        msgs.append(data[4:4 + n])
        data = data[4 + n:]
    assert len(msgs) == len(records)
    return msgs


@pytest.fixture(scope="module")
def topic():
    prefix = "test-downstream-%s." % uuid.uuid4().hex[:8]
    cli = os.path.join(BIN, "closedloop")
    out = subprocess.run([cli, "topics", "create", "--brokers", BROKERS, "--topic.prefix", prefix],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, "topics create failed (is the broker up?): " + out.stderr
    name = prefix + "weights"
    msgs = encode([
        weight_config(1, "CHAMPION", SEED),
        weight_config(2, "CHALLENGER", NEW, parent=1),
        weight_config(2, "CHAMPION", NEW, parent=1),
        weight_config(1, "RETIRED", SEED),
    ])
    p = Producer({"bootstrap.servers": BROKERS, "partitioner": "murmur2_random"})
    for i, m in enumerate(msgs):
        p.produce(name, key=b"opportunity_score", value=m)
        if i == 1:
            p.produce(name, key=b"opportunity_score", value=b"\xc3\x01garbage!!")  # hostile
    assert p.flush(30) == 0
    return name


def check_output(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("champion ")]
    assert lines == [
        "champion model=opportunity_score version=1 largest_deal=0.2000 product_mix=0.1500 "
        "recency=0.0500 speed_to_close=0.1500 upsell_instances=0.2500 win_rate=0.2000",
        "champion model=opportunity_score version=2 largest_deal=0.0500 product_mix=0.1000 "
        "recency=0.1000 speed_to_close=0.3000 upsell_instances=0.1000 win_rate=0.3500",
    ]


def test_python_consumer(topic):
    out = subprocess.run([sys.executable, os.path.join(SRC, "examples", "downstream", "weights_consumer.py"),
                          "--brokers", BROKERS, "--topic", topic, "--schema", SCHEMA,
                          "--exit-after", "2", "--timeout", "60"],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    check_output(out.stdout)
    assert "skipping" in out.stderr  # the hostile record was reported, not fatal


def test_c_consumer(topic):
    fp = subprocess.run([os.path.join(BIN, "closedloop-avro"), "fingerprint", SCHEMA],
                        capture_output=True, text=True, check=True).stdout.strip()
    exe = os.path.join(BIN, "weights_consumer")
    assert os.path.exists(exe), "examples/downstream/weights_consumer is not built at %s" % exe
    out = subprocess.run([exe, BROKERS, topic, SCHEMA, fp, "2"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    check_output(out.stdout)
    assert "skipping" in out.stderr
