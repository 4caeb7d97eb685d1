#!/usr/bin/env python3
"""bench_latency.py — end-to-end latency of the loop (SPEC §7): from an outcome appearing
in Salesforce to its LabeledExample, and from the N-th new outcome to a new WeightConfig.

    python3 bench/bench_latency.py [--bin-dir build/bin] [--opportunities 20000]
        [--months 12] [--singles 100] [--refit-every 200] [--poll-ms 500]
        [--brokers 127.0.0.1:9092] [--out FILE]

The world, under a fresh topic prefix: a closedloop-gen history whose weekly runs are all
published by closedloop-snapshot; the test Salesforce server (tests/fakes/salesforce.py)
holding the final state of every opportunity except a reserved set of closed ones;
closedloop-outcomes in follow mode (outcomes.poll.interval.ms = --poll-ms), closedloop-join
and closedloop-refit (refit.min.new.outcomes = --refit-every) running throughout. The
benchmark waits until the history is labeled and the refit's cycles on it are done, then:

 (a) outcome -> LabeledExample. For each of --singles reserved opportunities, one at a
     time: POST /__fake/upsert of its closing record with "restamp": true (its
     SystemModstamp becomes now), and the time until the first LabeledExample keyed by
     its id arrives on <prefix>labeled (a consumer assigned to the end of every partition
     before the first upsert). The outcomes worker only sees a record at its next pull
     whose window [.., pull start) ends after the record's second, so the poll interval
     plus up to one second bounds the pull wait: the figure is dominated by it, and the
     rest (query, produce, join, produce) is what closedloop itself adds.
 (b) N-th outcome -> WeightConfig. The refit's pending counter is read from its
     /metrics; the missing outcomes up to N are upserted one by one (each POST returns
     before the next is sent). The figure is the time from the N-th upsert to the next
     record on <prefix>weights (a consumer at its end before the first upsert). To make
     every cycle publish, refit.min.auc.gain = 1 (no refit can gain a whole unit of AUC,
     so each cycle ends in REJECTED after the full load, fit and validation, the same
     work as a CHALLENGER; a live challenger would turn the next cycle into a trial that
     may publish nothing). The refit's own cycle duration is reported beside it.

Baseline, same run, same broker: produce -> consume latency of one message with
confluent-kafka (acks=all, idempotent producer, a consumer assigned to the partition),
repeated --singles times.

Figures, one line each (also appended to --out):
  latency.outcome_to_labeled n=.. poll_ms=.. median_ms=.. p95_ms=.. max_ms=.. min_ms=..
  latency.kafka_raw_produce_consume n=.. median_ms=.. p95_ms=.. max_ms=..
  latency.nth_outcome_to_weights n_outcomes=.. seconds=.. status=.. version=..
      refit_cycle_seconds=.. training_examples=..
Nothing here is a test: it fails (non-zero, a message on stderr) when the loop does not
deliver, and never asserts a time.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
FAKE = os.path.join(SOURCE, "tests", "fakes", "salesforce.py")
CLIENT_ID = "3MVG9test.client.id"
USERNAME = "integration@example.com"
AUDIENCE = "https://login.salesforce.com"


class BenchError(Exception):
    pass


def log(msg):
    print("bench_latency: " + msg, file=sys.stderr, flush=True)


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def summary(values):
    return ("median_ms=%.1f p95_ms=%.1f max_ms=%.1f min_ms=%.1f"
            % (pct(values, 0.5), pct(values, 0.95), max(values), min(values)))


class KeyWatcher:
    """Consumes every partition of a topic from its current end, in a thread, and
    remembers when each key was first seen (time.monotonic())."""

    def __init__(self, brokers, topic):
        self.c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-lat-" + uuid.uuid4().hex,
                           "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                           "enable.partition.eof": False})
        md = self.c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error:
            raise BenchError("topic %s does not exist" % topic)
        self.c.assign([TopicPartition(topic, p, OFFSET_END) for p in md.topics[topic].partitions])
        self.first = {}
        self.count = 0
        self.arrivals = []  # (monotonic time, value) of every record
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopping = False
        self.error = None
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        try:
            while not self.stopping:
                m = self.c.poll(0.05)
                if m is None:
                    continue
                if m.error():
                    continue
                now = time.monotonic()
                with self.cond:
                    self.count += 1
                    k = m.key()
                    self.arrivals.append((now, m.value()))
                    if k is not None and k not in self.first:
                        self.first[k] = (now, m.value())
                    self.cond.notify_all()
        except Exception as e:  # surfaced by wait()
            self.error = e

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                if self.error:
                    raise BenchError("consumer failed: %s" % self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    def close(self):
        self.stopping = True
        self.t.join(5)
        self.c.close()


class World:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="cl-bench-lat-")
        self.prefix = "benchlat%s." % uuid.uuid4().hex[:8]
        self.procs = {}
        self.logs = {}
        self.fake = None

    def exe(self, name):
        p = os.path.join(self.a.bin_dir, name)
        if not os.access(p, os.X_OK):
            raise BenchError("%s is not built (expected %s)" % (name, p))
        return p

    def common(self, worker):
        return ["--brokers=" + self.a.brokers, "--topic.prefix=" + self.prefix,
                "--state.dir=" + os.path.join(self.work, "state", worker),
                "--http.listen=127.0.0.1:0", "--avro.schema.dir=" + os.path.join(SOURCE, "schemas"),
                "--log.level=info"]

    def run(self, cmd, what, timeout=900):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError("%s exited %d:\n%s" % (what, r.returncode, r.stderr[-3000:]))
        return r

    def start(self, worker, extra):
        path = os.path.join(self.work, worker + ".log")
        self.logs[worker] = path
        f = open(path, "w")
        self.procs[worker] = subprocess.Popen([self.exe("closedloop-" + worker)] + self.common(worker) + extra,
                                              stdout=f, stderr=f)
        f.close()

    def check_alive(self):
        for w, p in self.procs.items():
            if p.poll() is not None:
                raise BenchError("closedloop-%s exited %s:\n%s" % (w, p.returncode, self.tail(w)))
        if self.fake is not None and self.fake.poll() is not None:
            raise BenchError("the test Salesforce server exited %s" % self.fake.returncode)

    def tail(self, worker, n=3000):
        with open(self.logs[worker], errors="replace") as f:
            return f.read()[-n:]

    def http_port(self, worker, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_alive()
            m = re.search(r"http_port=(\d+)", open(self.logs[worker], errors="replace").read())
            if m:
                return int(m.group(1))
            time.sleep(0.1)
        raise BenchError("closedloop-%s did not log its http_port:\n%s" % (worker, self.tail(worker)))

    def metric(self, port, name, required=True):
        """A gauge's value; None while the worker has not set it yet (required=False)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            text = r.read().decode()
        m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.eE+-]+)$" % re.escape(name), text, re.M)
        if not m:
            if required:
                raise BenchError("metric %s not in /metrics on port %d" % (name, port))
            return None
        return float(m.group(1))

    def start_salesforce(self):
        key, pub = os.path.join(self.work, "sf.key"), os.path.join(self.work, "sf.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", key], check=True, capture_output=True)
        os.chmod(key, 0o600)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
        port_file = os.path.join(self.work, "sf.port")
        f = open(os.path.join(self.work, "salesforce.log"), "w")
        self.fake = subprocess.Popen([sys.executable, FAKE, "--port", "0", "--port-file", port_file,
                                      "--jwt-public-key", pub, "--client-id", CLIENT_ID,
                                      "--username", USERNAME, "--audience", AUDIENCE],
                                     stdout=f, stderr=f)
        f.close()
        deadline = time.time() + 30
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if self.fake.poll() is not None or time.time() > deadline:
                raise BenchError("the test Salesforce server did not start")
            time.sleep(0.05)
        self.sf_url = "http://127.0.0.1:%s" % open(port_file).read().strip()
        self.sf_key = key

    def upsert(self, records):
        body = json.dumps({"records": records, "restamp": True}).encode()
        req = urllib.request.Request(self.sf_url + "/__fake/upsert", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.fake is not None and self.fake.poll() is None:
            self.fake.send_signal(signal.SIGTERM)
            try:
                self.fake.wait(10)
            except subprocess.TimeoutExpired:
                self.fake.kill()
        try:
            from confluent_kafka.admin import AdminClient
            admin = AdminClient({"bootstrap.servers": self.a.brokers})
            md = admin.list_topics(timeout=10)
            topics = [t for t in md.topics if t.startswith(self.prefix)]
            if topics:
                for fut in admin.delete_topics(topics).values():
                    try:
                        fut.result(30)
                    except Exception:
                        pass
        except Exception as e:
            log("could not delete topics %s*: %s" % (self.prefix, e))
        if self.a.keep:
            log("work dir kept: %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def reserve(hist, count):
    """The final state of every opportunity, and `count` closed ones (latest closes first,
    so the history keeps its older outcomes) that have a snapshot on or before their
    close date, so that closing them yields at least one LabeledExample."""
    final = {}
    with open(os.path.join(hist, "outcomes", "opportunities.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                r.pop("attributes", None)
                prev = final.get(r["Id"])
                if prev is None or (r["SystemModstamp"], r["Id"]) >= (prev["SystemModstamp"], prev["Id"]):
                    final[r["Id"]] = r
    first_snapshot = {}
    runs = os.path.join(hist, "runs")
    for name in sorted(os.listdir(runs)):
        day = name[len("run-"):len("run-") + 10]
        with open(os.path.join(runs, name)) as f:
            header = f.readline().rstrip("\n").split(",")
            i_opp = header.index("opportunity_id")
            for line in f:
                opp = line.split(",")[i_opp]
                first_snapshot.setdefault(opp, day)
    closed = [r for r in final.values()
              if r.get("IsClosed") and not r.get("IsDeleted") and r["Id"] in first_snapshot
              and first_snapshot[r["Id"]] <= r["CloseDate"]]
    closed.sort(key=lambda r: (r["CloseDate"], r["Id"]), reverse=True)
    if len(closed) < count:
        raise BenchError("the history has only %d closed opportunities with a snapshot, %d needed; "
                         "raise --opportunities" % (len(closed), count))
    reserved = closed[:count]
    ids = {r["Id"] for r in reserved}
    rest = [r for r in final.values() if r["Id"] not in ids]
    return rest, reserved


def raw_latency(brokers, n):
    """produce -> consume of one message at a time on a fresh one-partition topic."""
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = "bench-lat-raw-%s" % uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        fut.result(30)
    try:
        p = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5})
        w = None
        deadline = time.time() + 30
        while True:  # metadata of a just-created topic may lag
            try:
                w = KeyWatcher(brokers, topic)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        out = []
        payload = os.urandom(400)
        try:
            time.sleep(1.0)  # let the assignment settle at the end offset
            for i in range(n + 3):  # the first messages warm up connections
                key = b"k%d" % i
                t0 = time.monotonic()
                p.produce(topic, key=key, value=payload)
                p.poll(0)
                p.flush(10)
                if not w.wait(lambda s: key in s.first, 30):
                    raise BenchError("raw message %d was not consumed within 30 s" % i)
                if i >= 3:
                    out.append((w.first[key][0] - t0) * 1000)
        finally:
            w.close()
        return out
    finally:
        admin.delete_topics([topic])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(SOURCE, "build", "bin"))
    ap.add_argument("--brokers", default=os.environ.get("CLOSEDLOOP_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--opportunities", type=int, default=20000, help="history size")
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--singles", type=int, default=100, help="K outcomes timed one at a time")
    ap.add_argument("--refit-every", type=int, default=200, help="refit.min.new.outcomes (N)")
    ap.add_argument("--poll-ms", type=int, default=500, help="outcomes.poll.interval.ms")
    ap.add_argument("--wait", type=int, default=600, help="seconds to wait for any one step")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, state)")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.singles < 1 or a.refit_every < 1:
        sys.exit("bench_latency: --singles and --refit-every must be >= 1")

    lines = []
    w = World(a)
    try:
        t0 = time.time()
        hist = os.path.join(w.work, "history")
        w.run([w.exe("closedloop-gen"), "--out", hist, "--opportunities", str(a.opportunities),
               "--months", str(a.months), "--seed", str(a.seed), "--log.level=warn"], "closedloop-gen")
        rest, reserved = reserve(hist, a.singles + a.refit_every)
        w.run([w.exe("closedloop"), "topics", "create", "--brokers=" + a.brokers,
               "--topic.prefix=" + w.prefix, "--log.level=warn"], "closedloop topics create")
        w.start_salesforce()
        w.start("join", [])
        w.start("refit", ["--refit.min.new.outcomes=%d" % a.refit_every, "--refit.min.auc.gain=1"])
        refit_port = w.http_port("refit")
        w.start("outcomes", ["--salesforce.auth=jwt", "--salesforce.login.url=" + w.sf_url,
                             "--salesforce.client.id=" + CLIENT_ID, "--salesforce.username=" + USERNAME,
                             "--salesforce.jwt.audience=" + AUDIENCE,
                             "--salesforce.private.key.file=" + w.sf_key,
                             "--outcomes.start=2000-01-01T00:00:00Z",
                             "--outcomes.poll.interval.ms=%d" % a.poll_ms])
        log("publishing %s runs of %d opportunities under %s" % (
            len(os.listdir(os.path.join(hist, "runs"))), a.opportunities, w.prefix))
        w.run([w.exe("closedloop-snapshot")] + w.common("snapshot") + [os.path.join(hist, "runs")],
              "closedloop-snapshot")
        for i in range(0, len(rest), 2000):
            w.upsert(rest[i:i + 2000])

        # Settled: the training set holds the history and no cycle is due or running.
        # The pending counter stays below N and the refit's examples stop growing.
        log("waiting for the history to be labeled and its refit cycles to finish")
        deadline = time.time() + a.wait
        stable, last = 0, None
        while stable < 6:
            w.check_alive()
            if time.time() > deadline:
                raise BenchError("the history did not settle within %d s (refit: %s)" % (a.wait, last))
            cur = (w.metric(refit_port, "closedloop_refit_training_examples", False),
                   w.metric(refit_port, "closedloop_refit_pending_outcomes", False))
            stable = stable + 1 if (cur == last and None not in cur and cur[0] > 0
                                    and cur[1] < a.refit_every) else 0
            last = cur
            time.sleep(0.5)
        setup_s = time.time() - t0
        log("settled after %.0f s: %d training examples, %d pending" % (setup_s, last[0], last[1]))

        labeled = KeyWatcher(a.brokers, w.prefix + "labeled")
        weights = KeyWatcher(a.brokers, w.prefix + "weights")
        time.sleep(1.0)  # the assignment at the end offset takes effect
        try:
            # (a) one outcome at a time.
            lat = []
            for r in reserved[:a.singles]:
                key = r["Id"].encode()
                ts = time.monotonic()
                w.upsert([r])
                if not labeled.wait(lambda s: key in s.first, a.wait):
                    w.check_alive()
                    raise BenchError("no LabeledExample for %s within %d s" % (r["Id"], a.wait))
                lat.append((labeled.first[key][0] - ts) * 1000)
            lines.append("latency.outcome_to_labeled n=%d poll_ms=%d %s"
                         % (len(lat), a.poll_ms, summary(lat)))
            log(lines[-1])

            # (b) outcomes one by one up to the N-th new one since the last cycle.
            deadline = time.time() + a.wait
            stable, last = 0, None
            while stable < 4:  # the refit has counted the singles
                w.check_alive()
                if time.time() > deadline:
                    raise BenchError("the refit did not settle after the singles (%s)" % (last,))
                cur = w.metric(refit_port, "closedloop_refit_pending_outcomes", False)
                stable = stable + 1 if cur is not None and cur == last else 0
                last = cur
                time.sleep(0.5)
            pending = int(last)
            need = a.refit_every - pending
            if need < 1 or need > len(reserved) - a.singles:
                raise BenchError("pending outcomes %d leave %d to upsert" % (pending, need))
            with weights.cond:
                seen_weights = weights.count
            for r in reserved[a.singles:a.singles + need]:
                w.upsert([r])
            tn = time.monotonic()
            if not weights.wait(lambda s: s.count > seen_weights, a.wait):
                w.check_alive()
                raise BenchError("no WeightConfig within %d s of the %d-th outcome" % (a.wait, a.refit_every))
            with weights.cond:
                tw, value = weights.arrivals[seen_weights]
            status, version = "?", "?"
            try:
                sys.path.insert(0, os.path.join(SOURCE, "scripts"))
                import loop as L  # Avro decoding of the weights topic
                rec = L.decode(value, L.load_schema("WeightConfig"))
                status, version = rec["status"], rec["version"]
            except Exception as e:  # a figure without its label is still a figure
                log("could not decode the WeightConfig: %s" % e)
            time.sleep(0.5)
            cycle = w.metric(refit_port, "closedloop_refit_last_fit_duration_seconds")
            examples = w.metric(refit_port, "closedloop_refit_training_examples")
            lines.append("latency.nth_outcome_to_weights n_outcomes=%d upserted_one_by_one=%d seconds=%.2f "
                         "status=%s version=%s refit_cycle_seconds=%.2f training_examples=%d poll_ms=%d"
                         % (a.refit_every, need, tw - tn, status, version, cycle, examples, a.poll_ms))
            log(lines[-1])
        finally:
            labeled.close()
            weights.close()

        raw = raw_latency(a.brokers, a.singles)
        lines.append("latency.kafka_raw_produce_consume n=%d %s" % (len(raw), summary(raw)))
        lines.append("latency.setup opportunities=%d months=%d seconds=%.0f"
                     % (a.opportunities, a.months, setup_s))
    except BenchError as e:
        for line in lines:
            print(line)
        print("bench_latency: %s" % e, file=sys.stderr)
        return 1
    finally:
        w.close()
    for line in lines:
        print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
