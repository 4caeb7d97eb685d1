"""Shared harness for the outcomes integration tests: the real broker, the test
Salesforce (tests/fakes/salesforce.py), a JWT key pair, the worker, and a reader that
decodes what the worker published (fastavro, single-object framing).

Nothing here skips: a missing broker, binary or tool fails the test with a message.
"""
import datetime
import io
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.request

import fastavro
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SOURCE_DIR = os.environ.get("CL_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("CL_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
BROKERS = "127.0.0.1:%s" % os.environ.get("CLOSEDLOOP_KAFKA_PORT", "9092")
WORKER = os.path.join(BIN_DIR, "closedloop-outcomes")
FAKE = os.path.join(SOURCE_DIR, "tests", "fakes", "salesforce.py")
CLIENT_ID = "3MVG9closedloop.test"
USERNAME = "integration@example.com"
AUDIENCE = "https://login.salesforce.com"

with open(os.path.join(SOURCE_DIR, "schemas", "OpportunityOutcome.avsc")) as f:
    OUTCOME_SCHEMA = fastavro.parse_schema(json.load(f))


def ensure_broker():
    r = subprocess.run(["bash", os.path.join(SOURCE_DIR, "deploy", "kafka", "start.sh")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "could not start the Kafka broker (deploy/kafka/start.sh): " + \
        r.stdout + r.stderr
    assert os.access(WORKER, os.X_OK), "worker binary missing: %s (build first)" % WORKER


def rand(n=8):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def make_id(prefix, i):
    # 18 alphanumerics, unique per i.
    return (prefix + "%012d" % i + "AAA")[:18]


def sf_dt(ms):
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03d+0000" % (ms % 1000)


def opportunity(i, modstamp_ms, closed=True, won=True, deleted=False, amount=1000.0):
    return {"Id": make_id("006", i), "AccountId": make_id("001", i), "OwnerId": make_id("005", 1),
            "StageName": ("Closed Won" if won else "Closed Lost") if closed else "Negotiation",
            "IsClosed": closed, "IsWon": won and closed, "IsDeleted": deleted,
            "CloseDate": time.strftime("%Y-%m-%d", time.gmtime(modstamp_ms // 1000)),
            "Amount": amount, "CreatedDate": sf_dt(modstamp_ms - 30 * 86400000),
            "SystemModstamp": sf_dt(modstamp_ms), "LastModifiedDate": sf_dt(modstamp_ms),
            "Type": "New Business", "LeadSource": "Web"}


class Env:
    """One test's world: temp dir, key pair, fake server, unique topic prefix."""

    def __init__(self, records, fake_args=()):
        ensure_broker()
        self.dir = tempfile.mkdtemp(prefix="cl-outcomes-")
        self.prefix = "cltest.%s." % rand()
        self.topic = self.prefix + "outcomes"
        self.state = os.path.join(self.dir, "state")
        self.key = os.path.join(self.dir, "key.pem")
        self.pub = os.path.join(self.dir, "pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", self.key], check=True,
                       capture_output=True)
        os.chmod(self.key, 0o600)
        subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-out", self.pub],
                       check=True, capture_output=True)
        self.data = os.path.join(self.dir, "opps.jsonl")
        with open(self.data, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        port_file = os.path.join(self.dir, "port")
        self.fake_log = open(os.path.join(self.dir, "fake.log"), "w")
        self.fake = subprocess.Popen(
            [sys.executable, FAKE, "--data", self.data, "--port", "0", "--port-file", port_file,
             "--jwt-public-key", self.pub, "--client-id", CLIENT_ID, "--username", USERNAME,
             "--audience", AUDIENCE] + list(fake_args),
            stdout=self.fake_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            assert self.fake.poll() is None, "fake Salesforce exited: " + self.read_fake_log()
            assert time.time() < deadline, "fake Salesforce did not start"
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        self.url = "http://127.0.0.1:%d" % self.port
        admin = AdminClient({"bootstrap.servers": BROKERS})
        fs = admin.create_topics([NewTopic(self.topic, num_partitions=3, replication_factor=1)])
        for t, fut in fs.items():
            fut.result(30)

    def read_fake_log(self):
        self.fake_log.flush()
        return open(os.path.join(self.dir, "fake.log")).read()

    def close(self):
        if self.fake.poll() is None:
            self.fake.send_signal(signal.SIGTERM)
            self.fake.wait(10)
        AdminClient({"bootstrap.servers": BROKERS}).delete_topics([self.topic])
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- control of the fake ---
    def control(self, path, body=None):
        req = urllib.request.Request(self.url + "/__fake/" + path,
                                     data=json.dumps(body or {}).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def faults(self, **kw):
        return self.control("faults", kw)

    def upsert(self, records):
        return self.control("upsert", {"records": records})

    def stats(self):
        return self.control("stats")

    # --- the worker ---
    def args(self, *extra, auth="jwt"):
        a = [WORKER, "--brokers=" + BROKERS, "--topic.prefix=" + self.prefix,
             "--state.dir=" + self.state, "--http.listen=127.0.0.1:0",
             "--salesforce.login.url=" + self.url, "--salesforce.client.id=" + CLIENT_ID,
             "--salesforce.jwt.audience=" + AUDIENCE,
             "--salesforce.retry.backoff.ms=20", "--salesforce.retry.backoff.max.ms=200",
             "--outcomes.batch.size=200", "--outcomes.bulk.max.records=150",
             "--outcomes.bulk.poll.ms=50", "--store.sync=nometasync"]
        if auth == "jwt":
            a += ["--salesforce.auth=jwt", "--salesforce.username=" + USERNAME,
                  "--salesforce.private.key.file=" + self.key]
        return a + list(extra)

    def run(self, *extra, timeout=120, auth="jwt"):
        r = subprocess.run(self.args(*extra, auth=auth) + ["--once"], capture_output=True,
                           text=True, timeout=timeout)
        return r

    def start(self, *extra):
        self.log_path = os.path.join(self.dir, "worker-%s.log" % rand(4))
        return subprocess.Popen(self.args(*extra) + ["--once"], stdout=subprocess.DEVNULL,
                                stderr=open(self.log_path, "w"))

    # --- what is on the topic ---
    def read_topic(self):
        """Every record on the topic as (key, value dict or None, headers), in offset order
        per partition."""
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "cltest-" + rand(),
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        md = c.list_topics(self.topic, timeout=10)
        parts = sorted(md.topics[self.topic].partitions)
        out = []
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(self.topic, p, lo)])
            got = 0
            deadline = time.time() + 30
            while got < hi - lo:
                assert time.time() < deadline, "timed out reading %s[%d]" % (self.topic, p)
                m = c.poll(1.0)
                if m is None or m.error():
                    continue
                got += 1
                v = m.value()
                if v is None:
                    rec = None
                else:
                    assert v[:2] == b"\xc3\x01", "not single-object framed: %r" % v[:4]
                    rec = plain(fastavro.schemaless_reader(io.BytesIO(v[10:]), OUTCOME_SCHEMA))
                out.append((m.key().decode(), rec, dict(m.headers() or [])))
        c.close()
        return out


def plain(rec):
    """fastavro turns logical types into datetime/date; back to the wire numbers
    (timestamp-millis as ms, date as days since the epoch)."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    out = {}
    for k, v in rec.items():
        if isinstance(v, datetime.datetime):
            v = (v - epoch) // datetime.timedelta(milliseconds=1)
        elif isinstance(v, datetime.date):
            v = (v - epoch.date()).days
        out[k] = v
    return out


def latest_by_key(records):
    """What a compacting consumer ends up with: key -> (outcome, system_modstamp) of the
    newest record, tombstones removing the key."""
    latest = {}
    for key, rec, headers in records:
        if rec is None:
            latest.pop(key, None)
        else:
            latest[key] = (rec["outcome"], rec["system_modstamp"])
    return latest


def expected_from(records_by_id):
    """The set the topic must hold for the server's current records."""
    from_server = {}
    for r in records_by_id.values():
        if r["IsClosed"] and not r.get("IsDeleted"):
            from_server[r["Id"]] = ("WON" if r["IsWon"] else "LOST", parse_ms(r["SystemModstamp"]))
    return from_server


def parse_ms(s):
    import calendar
    base, frac_tz = s[:19], s[19:]
    ms = int(frac_tz[1:4]) if frac_tz.startswith(".") else 0
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + ms


def load_jsonl(path):
    by_id = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                by_id[r["Id"]] = r
    return by_id
