"""The pipeline through a SASL_SSL listener (SCRAM-SHA-512) with nothing but `kafka.*`
passthrough (-X security.protocol=SASL_SSL -X sasl.mechanisms=... -X ssl.ca.location=...).

A second broker is started by this test (deploy/kafka/start.sh with its own ports and run
dir, CLOSEDLOOP_KAFKA_SASL_SSL_PORT set, a test CA made by make-test-ca.sh in the run dir)
so the shared broker on 9092 is not touched; it is stopped and wiped at the end, also on
failure. The SCRAM password is a planted unique string: it must not appear in any log line
or /metrics page.

librdkafka before 2.6.1 cannot authenticate with SCRAM to Kafka 3.8.1+/4.x (it repeats the
client nonce, librdkafka#4895; the broker answers "invalid credentials"). When the
librdkafka the binaries link is that old, one test checks that the workers say so
(event kafka_scram_librdkafka_too_old) and fail instead of hanging, and the pipeline runs
on the newer librdkafka that the confluent-kafka wheel ships (same soname, loaded with
LD_LIBRARY_PATH) — the deployment must do the same (docs/security.md).
"""
import ctypes
import glob
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from test_join import OUTCOME, OUTCOME_FP, decode_labeled, encode, outcome

SOURCE = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
PORT = int(os.environ.get("CL_SASL_TEST_PORT", "29092"))  # controller PORT+1, SASL_SSL PORT+2
SASL_PORT = PORT + 2
USER = "closedloop-it"
SCRAM_FIXED = 0x020601FF
DAY_MS = 86400000


def rdkafka_version(path):
    lib = ctypes.CDLL(path)
    lib.rd_kafka_version.restype = ctypes.c_int
    return lib.rd_kafka_version() & 0xFFFFFFFF


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    for tool in ("closedloop", "closedloop-join", "closedloop-snapshot"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            pytest.fail(f"{BIN}/{tool} is not built")
    for p in (PORT, PORT + 1, SASL_PORT):
        if not port_free(p):
            pytest.fail(f"port {p} is in use; set CL_SASL_TEST_PORT to a free base port")
    base = tmp_path_factory.mktemp("sasl")
    run_dir = base / "kafka"
    password = "Pl4nted-" + uuid.uuid4().hex
    pw_file = base / "scram.password"
    pw_file.write_text(password + "\n")
    os.chmod(pw_file, 0o600)
    env = dict(os.environ, CLOSEDLOOP_KAFKA_PORT=str(PORT), CLOSEDLOOP_KAFKA_DIR=str(run_dir),
               CLOSEDLOOP_KAFKA_SASL_SSL_PORT=str(SASL_PORT), CLOSEDLOOP_KAFKA_SCRAM_USER=USER,
               CLOSEDLOOP_KAFKA_SCRAM_PASSWORD_FILE=str(pw_file))
    stop = ["bash", os.path.join(SOURCE, "deploy", "kafka", "stop.sh"), "--wipe"]
    try:
        r = subprocess.run(["bash", os.path.join(SOURCE, "deploy", "kafka", "start.sh")],
                           env=env, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, f"start.sh with SASL_SSL failed:\n{r.stdout}\n{r.stderr}"
        assert password not in r.stdout + r.stderr
        props = (run_dir / "server.properties").read_text()
        assert f"SASL_SSL://127.0.0.1:{SASL_PORT}" in props
        assert os.stat(run_dir / "server.properties").st_mode & 0o077 == 0, \
            "server.properties holds the keystore password and must be private"
        assert password not in props, "the SCRAM password must not be in server.properties"
        ca = run_dir / "tls" / "ca.pem"
        assert ca.exists()
        yield {"password": password, "ca": str(ca), "dir": run_dir, "base": base}
    finally:
        subprocess.run(stop, env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(run_dir, ignore_errors=True)


def linked_version():
    return rdkafka_version("librdkafka.so.1")


@pytest.fixture(scope="module")
def lib_env(broker):
    """Environment for the C binaries: as is when the linked librdkafka can do SCRAM with
    this broker, else LD_LIBRARY_PATH to the confluent-kafka wheel's librdkafka."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
    if linked_version() >= SCRAM_FIXED:
        return env
    import confluent_kafka
    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    found = glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*"))
    if not found:
        pytest.fail("the linked librdkafka is older than 2.6.1 (SCRAM fails against Kafka 4) "
                    "and the confluent-kafka wheel ships no librdkafka to use instead")
    if rdkafka_version(found[0]) < SCRAM_FIXED:
        pytest.fail(f"{found[0]} is older than librdkafka 2.6.1 too")
    shim = broker["base"] / "librdkafka"
    shim.mkdir(exist_ok=True)
    link = shim / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(found[0])
    env["LD_LIBRARY_PATH"] = str(shim) + (":" + env["LD_LIBRARY_PATH"]
                                          if env.get("LD_LIBRARY_PATH") else "")
    return env


def sasl_flags(broker, password=None, ca=True):
    flags = [f"--brokers=127.0.0.1:{SASL_PORT}", "-X", "security.protocol=SASL_SSL",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={USER}",
             "-X", f"sasl.password={password or broker['password']}"]
    return flags + (["-X", f"ssl.ca.location={broker['ca']}"] if ca else [])


def py_conf(broker, **extra):
    conf = {"bootstrap.servers": f"127.0.0.1:{SASL_PORT}", "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
            "sasl.password": broker["password"], "ssl.ca.location": broker["ca"]}
    conf.update(extra)
    return conf


def read_all(broker, topic, timeout=60):
    c = Consumer(py_conf(broker, **{"group.id": "r-" + uuid.uuid4().hex,
                                    "enable.auto.commit": False,
                                    "auto.offset.reset": "earliest"}))
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, deadline = [], time.time() + timeout
    while sum(ends.values()) > len(out) and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if not m.error():
                out.append((m.key(), m.value()))
    c.close()
    assert len(out) == sum(ends.values()), f"could not read {topic} to its end over SASL_SSL"
    return out


def no_secret(text, secret, where):
    assert secret not in text, f"the SASL password appears in {where}"


def test_old_librdkafka_scram_is_diagnosed_not_retried_forever(broker, tmp_path):
    """With the librdkafka the binaries link: either SCRAM works, or the worker names the
    cause and exits non-zero (never a silent retry loop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
    r = subprocess.run([os.path.join(BIN, "closedloop-join"), *sasl_flags(broker),
                        "--topic.prefix=probe.", "--group.id=probe", f"--state.dir={tmp_path}",
                        "--http.listen=127.0.0.1:0"],
                       env=env, capture_output=True, text=True, timeout=120)
    no_secret(r.stdout + r.stderr, broker["password"], "the join worker's log")
    if linked_version() >= SCRAM_FIXED:
        # Authenticated; the topics of this prefix do not exist.
        assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr[-3000:]
    else:
        assert r.returncode != 0
        assert "event=kafka_scram_librdkafka_too_old" in r.stderr, r.stderr[-3000:]
        assert "Kafka authentication failed" in r.stderr, r.stderr[-3000:]


def test_pipeline_over_sasl_ssl(broker, lib_env, tmp_path):
    pw = broker["password"]
    prefix = f"sasl{uuid.uuid4().hex[:8]}."
    logs = []

    # 1. Topics, through SASL_SSL only.
    r = subprocess.run([os.path.join(BIN, "closedloop"), "topics", "create", *sasl_flags(broker),
                        f"--topic.prefix={prefix}", "--partitions=3"],
                       env=lib_env, capture_output=True, text=True, timeout=120)
    logs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    assert f"{prefix}join-changelog" in r.stdout

    # 2. A scoring run published by the snapshot worker.
    n = 12
    header = ("run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
              "created_date,expected_close_date,days_in_stage,segment,region,product,"
              "lead_source,type,speed_to_close,largest_deal,product_mix,upsell_instances,"
              "win_rate,recency,opportunity_score,account_score")
    opps = [f"006SASL{i:011d}" for i in range(n)]
    rows = [f"run-sasl,2025-03-03T06:00:00.000Z,{o},001A,005B,Proposal,1000,USD,2025-01-01,"
            f"2025-06-30,12,SMB,EMEA,Core,Web,New Business,50,60,70,80,90,100,," for o in opps]
    run_file = tmp_path / "run.csv"
    run_file.write_text(header + "\n" + "\n".join(rows) + "\n")
    r = subprocess.run([os.path.join(BIN, "closedloop-snapshot"), *sasl_flags(broker),
                        f"--topic.prefix={prefix}", "--http.listen=127.0.0.1:0",
                        f"--state.dir={tmp_path / 'snapshot-state'}",
                        "--snapshot.weights.wait.ms=3000", str(run_file)],
                       env=lib_env, capture_output=True, text=True, timeout=180)
    logs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr[-4000:]
    summary = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert summary and summary[-1]["published"] == n, r.stdout

    # 3. Outcomes for two thirds of them (Python client over SASL_SSL).
    p = Producer(py_conf(broker, partitioner="murmur2_random"))
    close_day = 20150  # 2025-03-03 is day 20150; close a week later
    closed = opps[: 2 * n // 3]
    for i, o in enumerate(closed):
        p.produce(prefix + "outcomes", key=o.encode(),
                  value=encode(OUTCOME, OUTCOME_FP,
                               outcome(o, close_day + 7, (close_day + 7) * DAY_MS + i, i % 2 == 0)))
    assert p.flush(60) == 0

    # 4. The join worker; /metrics and /healthz scraped while it runs.
    log_path = tmp_path / "join.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([os.path.join(BIN, "closedloop-join"), *sasl_flags(broker),
                                 f"--topic.prefix={prefix}", f"--group.id=g-{prefix}",
                                 f"--state.dir={tmp_path / 'join-state'}",
                                 "--http.listen=127.0.0.1:0", "--join.exit.idle.ms=6000",
                                 "--store.sync=nosync"],
                                env=lib_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        port, deadline = None, time.time() + 60
        while port is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"event=join_started .*http_port=(\d+)", log_path.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        assert port, "join did not start:\n" + log_path.read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
        no_secret(metrics, pw, "/metrics")
        assert proc.wait(180) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs.append(log_path.read_text())

    # 5. The labeled output, read over SASL_SSL: one example per closed opportunity.
    labeled = [(k.decode(), decode_labeled(v)) for k, v in read_all(broker, prefix + "labeled")
               if v is not None]
    assert sorted(k for k, _ in labeled) == sorted(closed)
    for k, ex in labeled:
        assert ex["snapshot"]["run_id"] == "run-sasl" and not ex["retracted"]
        assert ex["days_before_close"] == 7

    for text in logs:
        no_secret(text, pw, "a worker's log")


def test_wrong_password_fails_clearly(broker, lib_env, tmp_path):
    wrong = "Wr0ng-" + uuid.uuid4().hex
    r = subprocess.run([os.path.join(BIN, "closedloop-join"), *sasl_flags(broker, wrong),
                        "--topic.prefix=nope.", "--group.id=nope",
                        f"--state.dir={tmp_path}", "--http.listen=127.0.0.1:0"],
                       env=lib_env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Kafka authentication failed" in r.stderr and "invalid credentials" in r.stderr, \
        r.stderr[-3000:]
    assert "kafka.sasl.password" in r.stderr  # says what to check
    no_secret(r.stdout + r.stderr, wrong, "the log of a failed login")

    r = subprocess.run([os.path.join(BIN, "closedloop"), "topics", "describe",
                        *sasl_flags(broker, wrong), "--admin.timeout.ms=5000"],
                       env=lib_env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "invalid credentials" in r.stderr, r.stderr[-3000:]
    no_secret(r.stdout + r.stderr, wrong, "the CLI's output")


def test_untrusted_certificate_is_refused(broker, lib_env, tmp_path):
    """Without the test CA, the broker's certificate does not verify: no connection."""
    r = subprocess.run([os.path.join(BIN, "closedloop"), "topics", "describe",
                        *sasl_flags(broker, ca=False),
                        "--admin.timeout.ms=5000"],
                       env=lib_env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert re.search(r"certificate verify failed|SSL handshake failed", r.stderr), r.stderr[-3000:]
