#!/usr/bin/env python3
"""Drives the whole closedloop on a history: the main job's engine (scripts/demo.sh) and
the end-to-end test's (tests/integration/test_e2e.py).

It plays a CRM history forward in time, one weekly scoring run at a time, through the
real workers on a real broker:

  every week W (in date order):
    1. Salesforce (the test server, tests/fakes/salesforce.py) learns every Opportunity
       change with SystemModstamp <= W, and closedloop-outcomes pulls them (--once);
    2. closedloop-snapshot publishes run W, scored by the current CHAMPION and any
       CHALLENGER it reads from the weights topic (shadow scoring);
    3. the driver waits until join, metrics and refit have consumed everything, so the
       weights that refit publishes are in force for the next week's run — as they
       would be in production, where a week passes between runs.

join, metrics and refit run for the whole replay as long-lived workers. At the end the
driver waits for a CHALLENGER on the weights topic and for both reports, prints a
summary, and stops every worker with SIGTERM (each must exit 0).

The history comes from closedloop-gen (default) or any folder in its layout, such as
closedloop-replay's conversion of a real CRM export (--history DIR).
"""
import argparse
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def say(msg):
    print("[loop %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class LoopError(Exception):
    pass


# ---------------------------------------------------------------- Avro reading
def load_schema(name):
    import fastavro
    with open(os.path.join(SRC, "schemas", name + ".avsc")) as f:
        return fastavro.parse_schema(json.load(f))


def decode(value, schema):
    import fastavro
    if value[:2] == b"\xc3\x01":
        body = value[10:]
    elif value[:1] == b"\x00":
        body = value[5:]
    else:
        raise ValueError("unknown framing")
    return fastavro.schemaless_reader(io.BytesIO(body), schema)


def read_topic(brokers, topic, schema):
    """Every decodable record of a topic, in offset order per partition."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": "loop-reader-" + uuid.uuid4().hex[:8],
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out = []
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error:
            return out
        for p in sorted(md.topics[topic].partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, lo)])
            pos = lo
            while pos < hi:
                m = c.poll(5)
                if m is None:
                    break
                if m.error():
                    continue
                pos = m.offset() + 1
                if m.value() is None:
                    continue
                try:
                    out.append(decode(m.value(), schema))
                except Exception:
                    pass
    finally:
        c.close()
    return out


# ---------------------------------------------------------------- processes
class Loop:
    def __init__(self, a):
        self.a = a
        self.bin = a.bin
        self.work = os.path.abspath(a.work)
        self.prefix = a.prefix or "loop-%s." % uuid.uuid4().hex[:8]
        self.brokers = a.brokers
        self.procs = {}
        self.logs = {}
        self.fake = None
        self.ports = {w: a.port_base + i for i, w in
                      enumerate(["snapshot", "outcomes", "join", "metrics", "refit"])}

    def exe(self, name):
        p = os.path.join(self.bin, name)
        if not os.path.exists(p):
            raise LoopError("%s is not built (expected %s)" % (name, p))
        return p

    def common(self, worker):
        return ["--brokers=" + self.brokers, "--topic.prefix=" + self.prefix,
                "--state.dir=" + os.path.join(self.work, "state", worker),
                "--http.listen=127.0.0.1:%d" % self.ports[worker],
                "--avro.schema.dir=" + os.path.join(SRC, "schemas"),
                "--log.level=" + self.a.log_level]

    def run(self, cmd, what, timeout=600, ok=(0,)):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        with open(os.path.join(self.work, "logs", what + ".log"), "a") as f:
            f.write(r.stderr)
        if r.returncode not in ok:
            raise LoopError("%s exited %d:\n%s" % (what, r.returncode, r.stderr[-3000:]))
        return r

    def start_worker(self, worker, extra):
        log = open(os.path.join(self.work, "logs", worker + ".log"), "a")
        cmd = [self.exe("closedloop-" + worker)] + self.common(worker) + extra
        self.procs[worker] = subprocess.Popen(cmd, stdout=log, stderr=log)
        self.logs[worker] = log

    def check_alive(self):
        for w, p in self.procs.items():
            if p.poll() is not None:
                tail = open(os.path.join(self.work, "logs", w + ".log")).read()[-3000:]
                raise LoopError("closedloop-%s exited with %s:\n%s" % (w, p.returncode, tail))

    def stop_workers(self):
        status = {}
        for w, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for w, p in self.procs.items():
            try:
                status[w] = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                status[w] = "killed after 60 s"
        for f in self.logs.values():
            f.close()
        self.procs = {}
        return status

    # ------------------------------------------------------------ fake Salesforce
    def start_salesforce(self):
        key = os.path.join(self.work, "salesforce.key")
        pub = os.path.join(self.work, "salesforce.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", key], check=True, capture_output=True)
        os.chmod(key, 0o600)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        port_file = os.path.join(self.work, "salesforce.port")
        log = open(os.path.join(self.work, "logs", "salesforce.log"), "w")
        self.fake = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "fakes", "salesforce.py"),
                                      "--port-file", port_file, "--jwt-public-key", pub],
                                     stdout=log, stderr=log)
        deadline = time.time() + 30
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if self.fake.poll() is not None or time.time() > deadline:
                raise LoopError("the test Salesforce server did not start (see logs/salesforce.log)")
            time.sleep(0.05)
        self.sf_url = "http://127.0.0.1:%s" % open(port_file).read().strip()
        self.sf_key = key

    def sf_upsert(self, records):
        """Releases changes to Salesforce. They are stamped with the current time (the
        replay happens now), and the driver waits until the next whole second so that
        the next pull, whose window ends at its start time, includes them."""
        t0 = time.time()
        for i in range(0, len(records), 2000):
            body = json.dumps({"records": records[i:i + 2000], "restamp": True}).encode()
            req = urllib.request.Request(self.sf_url + "/__fake/upsert", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
        if records:
            # The server stamps a batch 1 ms apart from the time of the call, so the
            # last stamp is at most max(now, t0 + N ms); the pull that follows ends at
            # its own start second, which must come after that stamp.
            last = max(time.time(), t0 + len(records) / 1000.0)
            time.sleep(max(0.0, int(last) + 1.01 - time.time()))

    def outcomes_args(self):
        return ["--salesforce.auth=jwt", "--salesforce.login.url=" + self.sf_url,
                "--salesforce.client.id=3MVG9test.client.id",
                "--salesforce.username=integration@example.com",
                "--salesforce.jwt.audience=https://login.salesforce.com",
                "--salesforce.private.key.file=" + self.sf_key,
                "--outcomes.start=2000-01-01T00:00:00Z", "--once"]

    # ------------------------------------------------------------ waiting
    def group_lag(self, group):
        try:
            r = subprocess.run([self.exe("closedloop"), "lag", "--brokers=" + self.brokers,
                                "--topic.prefix=" + self.prefix, "--group", group, "--output", "json"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            return None
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return None
        rows = data if isinstance(data, list) else data.get("partitions", data.get("rows", []))
        total = 0
        for row in rows:
            if not str(row.get("topic", "")).startswith(self.prefix):
                continue
            lag = row.get("lag")
            if lag is None or lag < 0:
                end, com = row.get("end_offset", row.get("end")), row.get("committed", row.get("current_offset"))
                if end is None:
                    continue
                lag = end - (com if com is not None and com >= 0 else 0)
            total += lag
        return total

    def wait_caught_up(self, groups, timeout):
        deadline = time.time() + timeout
        while True:
            self.check_alive()
            lags = [self.group_lag(g) for g in groups]
            if all(l == 0 for l in lags):
                return
            if time.time() > deadline:
                raise LoopError("workers did not catch up within %d s (lag %s)" % (timeout, lags))
            time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(SRC, "build", "bin"))
    ap.add_argument("--work", default=os.path.join(SRC, "out", "loop"))
    ap.add_argument("--brokers", default=os.environ.get("CLOSEDLOOP_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--prefix", default=None, help="topic prefix (default: a fresh one)")
    ap.add_argument("--history", default=None, help="use this history folder instead of generating one")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--months", type=int, default=18)
    ap.add_argument("--opportunities", type=int, default=20000)
    ap.add_argument("--learned-factors", action="store_true")
    ap.add_argument("--refit-every", type=int, default=500, help="refit after this many new outcomes")
    ap.add_argument("--port-base", type=int, default=19101)
    ap.add_argument("--timeout", type=int, default=900, help="seconds to wait for the challenger and reports")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--summary-json", default=None, help="also write the summary here")
    ap.add_argument("--wait-for", choices=["challenger", "refit"], default="challenger",
                    help="end when refit published a CHALLENGER (default), or any refit result "
                         "(CHALLENGER or REJECTED: for real histories where the seed may already be best)")
    a = ap.parse_args()

    loop = Loop(a)
    if os.path.exists(loop.work):
        shutil.rmtree(loop.work)
    os.makedirs(os.path.join(loop.work, "logs"))
    reports = os.path.join(loop.work, "reports")
    t0 = time.time()
    try:
        return drive(loop, a, reports, t0)
    except LoopError as e:
        say("FAILED: %s" % e)
        return 1
    finally:
        status = loop.stop_workers()
        bad = {w: s for w, s in status.items() if s != 0}
        if bad:
            say("workers that did not stop cleanly: %s" % bad)
        if loop.fake and loop.fake.poll() is None:
            loop.fake.terminate()
            loop.fake.wait(10)


def drive(loop, a, reports, t0):
    hist = a.history
    if not hist:
        hist = os.path.join(loop.work, "history")
        say("generating %d months of history (%d opportunities, seed %d)" % (a.months, a.opportunities, a.seed))
        gen = [loop.exe("closedloop-gen"), "--out", hist, "--seed", str(a.seed), "--months", str(a.months),
               "--opportunities", str(a.opportunities)]
        if a.learned_factors:
            gen.append("--learned-factors")
        loop.run(gen, "gen")
    runs = sorted(glob.glob(os.path.join(hist, "runs", "run-*.csv")) + glob.glob(os.path.join(hist, "runs", "run-*.jsonl")))
    if not runs:
        raise LoopError("no run files in %s/runs" % hist)
    changes = []
    with open(os.path.join(hist, "outcomes", "opportunities.jsonl")) as f:
        for line in f:
            if line.strip():
                changes.append(json.loads(line))
    changes.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))

    say("topics with prefix %s" % loop.prefix)
    loop.run([loop.exe("closedloop"), "topics", "create", "--brokers=" + loop.brokers,
              "--topic.prefix=" + loop.prefix], "topics")
    loop.start_salesforce()
    loop.start_worker("join", [])
    loop.start_worker("metrics", ["--metrics.report.dir=" + reports])
    loop.start_worker("refit", ["--refit.min.new.outcomes=%d" % a.refit_every])
    groups = ["closedloop-join", "closedloop-metrics", "closedloop-refit"]

    next_change = 0
    published = 0
    for i, run in enumerate(runs):
        day = os.path.basename(run).split("run-")[1][:10]
        cutoff = day + "T06:00:00.000+0000"  # runs are taken at 06:00Z
        batch = []
        while next_change < len(changes) and changes[next_change]["SystemModstamp"] <= cutoff:
            batch.append(changes[next_change])
            next_change += 1
        if batch:
            loop.sf_upsert(batch)
        loop.run([loop.exe("closedloop-outcomes")] + loop.common("outcomes") + loop.outcomes_args(), "outcomes")
        r = loop.run([loop.exe("closedloop-snapshot")] + loop.common("snapshot") +
                     ["--snapshot.input=" + run], "snapshot")
        for line in r.stdout.splitlines():
            try:
                published += int(json.loads(line).get("published", 0))
            except (ValueError, AttributeError):
                pass
        loop.wait_caught_up(groups, timeout=300)
        if i % 8 == 0 or i == len(runs) - 1:
            say("week %d/%d (%s): %d outcomes pulled so far, %d snapshots published" %
                (i + 1, len(runs), day, next_change, published))

    # Whatever changed after the last run (closes in the final days).
    if next_change < len(changes):
        loop.sf_upsert(changes[next_change:])
        loop.run([loop.exe("closedloop-outcomes")] + loop.common("outcomes") + loop.outcomes_args(), "outcomes")
    loop.wait_caught_up(groups, timeout=300)

    import fastavro  # noqa: F401  (installed by scripts/install-deps.sh)
    wschema = load_schema("WeightConfig")
    deadline = time.time() + a.timeout
    say("history replayed; waiting for a CHALLENGER and both reports")
    while True:
        loop.check_alive()
        weights = read_topic(loop.brokers, loop.prefix + "weights", wschema)
        wanted = ("CHALLENGER", "CHAMPION") if a.wait_for == "challenger" else ("CHALLENGER", "CHAMPION", "REJECTED")
        challengers = [w for w in weights if w["status"] in wanted and w["version"] > 1]
        have_reports = all(os.path.exists(os.path.join(reports, f)) for f in ("closed-won.html", "closed-lost.html"))
        if challengers and have_reports:
            break
        if time.time() > deadline:
            raise LoopError("no challenger (%d weight records) or reports (%s) after %d s" %
                            (len(weights), have_reports, a.timeout))
        time.sleep(1)

    summary = summarize(loop, hist, weights, reports, time.time() - t0)
    if a.summary_json:
        with open(a.summary_json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def summarize(loop, hist, weights, reports, elapsed):
    truth = json.load(open(os.path.join(hist, "truth.json"))) if os.path.exists(os.path.join(hist, "truth.json")) else None
    seed = [w for w in weights if w["version"] == 1]
    candidates = [w for w in weights if w["version"] > 1 and w["status"] in ("CHALLENGER", "CHAMPION")]
    if not candidates:  # --wait-for refit: only rejections; show the latest one
        candidates = [w for w in weights if w["version"] > 1]
    learned = max(candidates, key=lambda w: (w["version"], w["status"] != "REJECTED"))
    champion = max((w for w in weights if w["status"] == "CHAMPION"), key=lambda w: w["version"])
    names = sorted(set(learned["weights"]) | set(seed[0]["weights"] if seed else {}))
    true_w = truth["model"]["true_weights"] if truth else {}

    def dist(w):
        return sum(abs(w.get(n, 0) - true_w.get(n, 0)) for n in names) if true_w else None

    print()
    print("closedloop summary (%.0f s)" % elapsed)
    print("  %-18s %8s %10s %8s" % ("component", "seed", "learned", "true" if true_w else ""))
    for n in names:
        print("  %-18s %8.3f %10.3f %8s" % (n, seed[0]["weights"].get(n, 0) if seed else float("nan"),
                                            learned["weights"].get(n, 0),
                                            ("%.3f" % true_w[n]) if n in true_w else ""))
    if true_w:
        print("  L1 distance to the true weights: seed %.3f, learned (v%d, %s) %.3f" %
              (dist(seed[0]["weights"]), learned["version"], learned["status"], dist(learned["weights"])))
    print("  current champion: v%d; %d weight records on %sweights" % (champion["version"], len(weights), loop.prefix))
    if learned.get("reason"):
        print("  refit's reason: %s" % learned["reason"][:400])

    mschema = load_schema("ModelMetrics")
    metrics = read_topic(loop.brokers, loop.prefix + "metrics", mschema)
    latest = {}
    for m in metrics:
        if m["window"]["kind"] != "CUMULATIVE":
            continue
        latest[(m["model"], m["version"])] = m
    if latest:
        print("  %-28s %6s %9s %7s %6s" % ("model version (cumulative)", "n", "precision", "recall", "AUC"))
        for (model, version), m in sorted(latest.items()):
            def f(x):
                return "%.3f" % x if x is not None else "-"
            print("  %-28s %6d %9s %7s %6s" % ("%s v%d" % (model, version), m["n"], f(m.get("precision")),
                                               f(m.get("recall")), f(m.get("auc"))))
    print("  reports: %s" % " ".join(os.path.join(reports, f) for f in ("closed-won.html", "closed-lost.html")))
    print()
    return {"seed": seed[0]["weights"] if seed else None, "learned": learned["weights"],
            "learned_version": learned["version"], "learned_status": learned["status"],
            "true": true_w, "distance_seed": dist(seed[0]["weights"]) if seed and true_w else None,
            "distance_learned": dist(learned["weights"]) if true_w else None,
            "champion_version": champion["version"],
            "metrics": {"%s v%d" % k: {"n": v["n"], "precision": v.get("precision"),
                                       "recall": v.get("recall"), "auc": v.get("auc")} for k, v in latest.items()},
            "reports": reports}


if __name__ == "__main__":
    sys.exit(main())
