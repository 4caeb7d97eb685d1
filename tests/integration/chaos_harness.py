"""The chaos test's machinery (tests/integration/test_chaos.py, docs/chaos.md).

Runs the whole loop twice over the same generated history on a broker of its own:
undisturbed, then with a driver that SIGKILLs workers at random moments and restarts them
and that stops and restarts the broker once; then reads the four outputs of both runs
and compares them.

Both runs use the same week-by-week drive (scripts/loop.py's Loop class supplies the
processes, the fake Salesforce and the lag waits). It differs from loop.py's own drive in
one respect, and only so that "equal" is a property of the data and not of timing: the
refit worker runs once per week, after join has caught up, as a one-shot
(refit.exit.idle.ms), instead of for the whole replay. A long-lived refit decides a cycle
while join is still emitting the week's examples, so which examples a refit sees (and so
the weights it publishes, and so the next week's shadow scores) would depend on the
scheduler even without any fault. With the weekly one-shot every cycle sees exactly the
examples of the weeks before it, in both runs.

What is compared (and what is left out, and why) is in compare() and docs/chaos.md.
"""
import importlib.util
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

SRC = os.environ.get("CL_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

_spec = importlib.util.spec_from_file_location("closedloop_loop", os.path.join(SRC, "scripts", "loop.py"))
loop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loop)

LONG_LIVED = ("join", "metrics")
ONE_SHOT = ("outcomes", "snapshot", "refit")


def say(msg):
    print("[chaos %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- own broker
class OwnBroker:
    """A broker of the test's own (deploy/kafka on other ports and dir): the chaos run
    stops it mid-run, which must never touch the shared broker other tests use."""

    def __init__(self, port, run_dir):
        self.port, self.run_dir = port, run_dir
        self.brokers = "127.0.0.1:%d" % port

    def _ctl(self, script, *args):
        env = dict(os.environ, CLOSEDLOOP_KAFKA_PORT=str(self.port), CLOSEDLOOP_KAFKA_DIR=self.run_dir)
        r = subprocess.run(["bash", os.path.join(SRC, "deploy", "kafka", script), *args], env=env,
                           capture_output=True, text=True, timeout=400)
        if r.returncode != 0:
            raise loop.LoopError("deploy/kafka/%s %s failed:\n%s\n%s" % (script, " ".join(args),
                                                                         r.stdout[-2000:], r.stderr[-2000:]))

    def start(self):
        self._ctl("start.sh")

    def stop(self):
        self._ctl("stop.sh")

    def wipe(self):
        self._ctl("stop.sh", "--wipe")


# ---------------------------------------------------------------- chaos plan
class Chaos:
    """Which process to kill when. Kills are drawn up front from the seed (target and a
    delay into the week); a kill whose process already finished is carried to the next
    week, so the count of real kills reaches the plan."""

    def __init__(self, seed, kills, weeks, broker, broker_week):
        self.rng = random.Random(seed)
        self.planned = kills
        self.weeks = weeks
        self.broker = broker
        self.broker_week = broker_week
        self.kills = []          # (week, target, seconds into the step)
        self.restarts = 0
        self.broker_restarts = 0
        self.carry = []
        self.lock = threading.RLock()

    def targets_for_week(self, week):
        """Targets to kill during `week`, spread so the plan is met before the end."""
        remaining = self.planned - len(self.kills)
        left_weeks = max(1, self.weeks - week)
        due = self.carry
        self.carry = []
        expected = remaining / left_weeks
        n = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
        n = max(0, n - len(due))
        for _ in range(n):
            due.append(self.rng.choice(LONG_LIVED + ONE_SHOT))
        return due


class ChaosLoop(loop.Loop):
    """loop.Loop whose one-shot runs can be killed mid-run (and are then run again, as a
    scheduler would) and whose long-lived workers are restarted when the chaos driver
    kills them."""

    def __init__(self, a, chaos=None, extra_args=()):
        super().__init__(a)
        self.chaos = chaos
        self.extra_args = list(extra_args)
        self.lock = threading.RLock()
        self.oneshot_kill = {}   # what -> seconds after start
        self.timers = []
        self.week = 0
        self.step_seconds = {w: 1.0 for w in ONE_SHOT}
        self.week_seconds = 5.0

    def sf_upsert(self, records):
        """loop.Loop.sf_upsert, plus the wait it lacks: the fake stamps a batch's records
        1 ms apart (strictly increasing), so a batch of N records can carry stamps up to N ms
        past the call, beyond the whole second loop.py waits for; the next pull's window
        (< its start time) would leave those for the week after, or lose them after the
        last run. Wait until the second after the last possible stamp."""
        t0 = time.time()
        super().sf_upsert(records)
        last = t0 + len(records) / 1000.0
        if time.time() <= last:
            time.sleep(int(last) + 1.01 - time.time())

    def common(self, worker):
        return super().common(worker) + self.extra_args

    def run(self, cmd, what, timeout=600, ok=(0,)):
        while True:
            delay = self.oneshot_kill.pop(what, None)
            t0 = time.time()
            log = open(os.path.join(self.work, "logs", what + ".log"), "a")
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
            killed = threading.Event()
            timer = None
            if delay is not None:
                def kill(p=p):
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
                        killed.set()
                timer = threading.Timer(delay, kill)
                timer.start()
            try:
                out, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise loop.LoopError("%s did not finish within %d s" % (what, timeout))
            finally:
                if timer:
                    timer.cancel()
                log.close()
            if killed.is_set():
                with self.chaos.lock:
                    self.chaos.kills.append((self.week, what, round(delay, 2)))
                    self.chaos.restarts += 1
                say("week %d: SIGKILL %s %.2f s into its run; running it again" % (self.week, what, delay))
                continue
            if delay is not None and self.chaos:
                self.chaos.carry.append(what)  # finished before the kill: try next week
            self.step_seconds[what] = time.time() - t0
            if p.returncode not in ok:
                tail = open(os.path.join(self.work, "logs", what + ".log")).read()[-3000:]
                raise loop.LoopError("%s exited %d:\n%s" % (what, p.returncode, tail))
            return subprocess.CompletedProcess(cmd, p.returncode, out, "")

    def kill_long_lived(self, worker):
        with self.lock:
            p = self.procs.get(worker)
            if p is None or p.poll() is not None:
                self.chaos.carry.append(worker)
                return
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.logs[worker].close()
            self.chaos.kills.append((self.week, worker, None))
            self.chaos.restarts += 1
            args = self.worker_args[worker]
            self.start_worker(worker, args)
        say("week %d: SIGKILL %s; restarted" % (self.week, worker))

    def start_long_lived(self, worker, args):
        if not hasattr(self, "worker_args"):
            self.worker_args = {}
        self.worker_args[worker] = args
        with self.lock:
            self.start_worker(worker, args)

    def check_alive(self):
        with self.lock:
            super().check_alive()

    def plan_week(self, week):
        """Arms this week's kills: one-shots at a random moment of their run (bounded by
        how long that step took last time), long-lived workers at a random moment of the
        week."""
        self.week = week
        if not self.chaos:
            return
        for target in self.chaos.targets_for_week(week):
            if target in ONE_SHOT:
                if target in self.oneshot_kill:
                    self.chaos.carry.append(target)
                else:
                    self.oneshot_kill[target] = self.chaos.rng.uniform(0.05, max(0.2, self.step_seconds[target]))
            else:
                t = threading.Timer(self.chaos.rng.uniform(0.1, max(0.5, self.week_seconds)),
                                    self.kill_long_lived, (target,))
                t.daemon = True
                t.start()
                self.timers.append(t)

    def end_week(self):
        for t in self.timers:
            if not t.finished.is_set():  # not fired this week: the kill moves on
                t.cancel()
                self.chaos.carry.append(t.args[0])
        self.timers = []
        # An armed one-shot kill whose step did not run this week moves on.
        for what in list(self.oneshot_kill):
            self.oneshot_kill.pop(what)
            self.chaos.carry.append(what)


# ---------------------------------------------------------------- one whole run
def drive(a, chaos=None, extra_args=(), broker=None):
    """One replay of the history in a.work on a.brokers; returns the topic prefix."""
    lp = ChaosLoop(a, chaos, extra_args)
    os.makedirs(os.path.join(lp.work, "logs"), exist_ok=True)
    reports = os.path.join(lp.work, "reports")
    try:
        _drive(lp, a, reports, chaos, broker)
    finally:
        for t in lp.timers:
            t.cancel()
        status = lp.stop_workers()
        if lp.fake and lp.fake.poll() is None:
            lp.fake.terminate()
            lp.fake.wait(10)
    bad = {w: s for w, s in status.items() if s != 0}
    if bad:
        raise loop.LoopError("workers that did not stop cleanly (SIGTERM -> exit 0): %s" % bad)
    return lp.prefix


def _drive(lp, a, reports, chaos, broker):
    import glob
    hist = a.history
    runs = sorted(glob.glob(os.path.join(hist, "runs", "run-*.csv")))
    if not runs:
        raise loop.LoopError("no run files in %s/runs" % hist)
    changes = []
    with open(os.path.join(hist, "outcomes", "opportunities.jsonl")) as f:
        for line in f:
            if line.strip():
                changes.append(json.loads(line))
    changes.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
    if chaos:
        chaos.weeks = len(runs)
    lp.run([lp.exe("closedloop"), "topics", "create", "--brokers=" + lp.brokers,
            "--topic.prefix=" + lp.prefix], "topics")
    lp.start_salesforce()
    # CL_CHAOS_KAFKA_DEBUG: librdkafka debug contexts for join, to diagnose a stall.
    dbg = os.environ.get("CL_CHAOS_KAFKA_DEBUG")
    lp.start_long_lived("join", ["--kafka.debug=" + dbg] if dbg else [])
    lp.start_long_lived("metrics", ["--metrics.report.dir=" + reports])
    refit = [lp.exe("closedloop-refit")] + lp.common("refit") + [
        "--refit.min.new.outcomes=%d" % a.refit_every, "--refit.exit.idle.ms=1500"]
    outcomes = [lp.exe("closedloop-outcomes")] + lp.common("outcomes") + lp.outcomes_args()
    groups = ["closedloop-join", "closedloop-metrics"]
    next_change = 0
    for i, run in enumerate(runs + [None]):
        t0 = time.time()
        lp.plan_week(i)
        if run is not None:
            cutoff = os.path.basename(run).split("run-")[1][:10] + "T06:00:00.000+0000"
        else:  # whatever changed after the last run
            cutoff = "9999"
        batch = []
        while next_change < len(changes) and changes[next_change]["SystemModstamp"] <= cutoff:
            batch.append(changes[next_change])
            next_change += 1
        if batch:
            lp.sf_upsert(batch)
        lp.run(outcomes, "outcomes")
        if run is not None:
            lp.run([lp.exe("closedloop-snapshot")] + lp.common("snapshot") + ["--snapshot.input=" + run],
                   "snapshot")
        if chaos and broker and i == chaos.broker_week:
            # Join and metrics are busy with this week's records: take the broker away
            # under them, then bring it back on the same data dir.
            say("week %d: stopping the broker" % i)
            broker.stop()
            time.sleep(chaos.rng.uniform(2, 6))
            broker.start()
            chaos.broker_restarts += 1
            say("week %d: broker back" % i)
        lp.wait_caught_up(groups, timeout=600)
        lp.run(refit, "refit")
        lp.end_week() if chaos else None
        lp.week_seconds = time.time() - t0
        if i % 8 == 0 or run is None:
            say("week %d/%d: %d changes released%s" % (i + 1, len(runs) + 1, next_change,
                "" if not chaos else ", %d kills so far" % len(chaos.kills)))
    lp.wait_caught_up(groups, timeout=600)
    # The final figures: a one-shot metrics run publishes the whole state once at idle,
    # under one generated_at, after the long-lived one is stopped (SIGTERM, exit 0).
    with lp.lock:
        p = lp.procs.pop("metrics")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
        lp.logs.pop("metrics").close()
    if rc != 0:
        raise loop.LoopError("metrics did not stop cleanly on SIGTERM: exit %s" % rc)
    lp.run([lp.exe("closedloop-metrics")] + lp.common("metrics") +
           ["--metrics.report.dir=" + reports, "--metrics.exit.idle.ms=1500"], "metrics-final")


# ---------------------------------------------------------------- reading the outputs
def read_records(brokers, topic):
    """(partition, offset, key, value bytes or None) of every record, partition order."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": "chaos-reader-" + uuid.uuid4().hex[:8],
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out = []
    try:
        md = c.list_topics(topic, timeout=30)
        if topic not in md.topics or md.topics[topic].error:
            raise loop.LoopError("topic %s is missing" % topic)
        for p in sorted(md.topics[topic].partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, lo)])
            pos = lo
            while pos < hi:
                m = c.poll(10)
                if m is None:
                    raise loop.LoopError("%s[%d]: no record at offset %d of %d" % (topic, p, pos, hi))
                if m.error():
                    continue
                pos = m.offset() + 1
                out.append((p, m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def canon(x):
    return json.dumps(x, sort_keys=True, default=str)


def without(d, *fields):
    return {k: v for k, v in d.items() if k not in fields}


# The replay releases each change to the fake Salesforce stamped with the wall clock (as
# loop.py does: the pull's window ends at its start time), so SystemModstamp, and with it
# outcome_version, differ between any two runs; ingested_at, joined_at, generated_at and
# created_at are wall-clock by definition. They are left out of the comparison; the order
# of versions they define is still honoured (latest per key, the consumer rule).
OUTCOME_CLOCK = ("system_modstamp", "ingested_at")


def collect(brokers, prefix):
    sch = {n: loop.load_schema(n) for n in ("OpportunityOutcome", "LabeledExample",
                                            "ModelMetrics", "WeightConfig")}
    state = {}
    # outcomes: the latest record per key (a tombstone is a deleted opportunity)
    latest = {}
    recs = read_records(brokers, prefix + "outcomes")
    for _, _, key, value in recs:
        latest[key] = None if value is None else without(loop.decode(value, sch["OpportunityOutcome"]),
                                                         *OUTCOME_CLOCK)
    state["outcomes"] = {k.decode(): canon(v) for k, v in latest.items()}
    state["outcomes_records"] = len(recs)
    # labeled: the consumer rule of docs/labeled-contract.md
    opps = {}
    recs = read_records(brokers, prefix + "labeled")
    for _, _, key, value in recs:
        o = opps.setdefault(key, {"v": None, "retracted": False, "live": {}})
        if value is None:
            o["live"] = {}
            continue
        ex = loop.decode(value, sch["LabeledExample"])
        v = ex["outcome_version"]
        if ex["retracted"]:
            if o["v"] is None or v >= o["v"]:
                o.update(v=v, retracted=True, live={})
            continue
        if o["v"] is None or v > o["v"]:
            o.update(v=v, retracted=False, live={})
        elif v < o["v"] or o["retracted"]:
            continue
        ex = without(ex, "outcome_version", "joined_at")
        ex["outcome"] = without(ex["outcome"], *OUTCOME_CLOCK)
        o["live"][ex["snapshot"]["snapshot_id"]] = canon(ex)
    state["labeled"] = {k.decode(): sorted(o["live"].values()) for k, o in opps.items() if o["live"]}
    state["labeled_records"] = len(recs)
    state["labeled_examples"] = sum(len(v) for v in state["labeled"].values())
    # metrics: the final publish (one generated_at), per (model, version, window)
    rows = [loop.decode(v, sch["ModelMetrics"]) for _, _, _, v in read_records(brokers, prefix + "metrics")
            if v is not None]
    if not rows:
        raise loop.LoopError("no records on %smetrics" % prefix)
    last = max(r["generated_at"] for r in rows)
    final = {}
    for r in rows:
        if r["generated_at"] == last:
            w = r["window"]
            final[canon([r["model"], r["version"], w])] = canon(without(r, "generated_at"))
    state["metrics"] = final
    # weights: the sequence of transitions on the (single-partition) topic; a record
    # re-published after a crash (identical apart from created_at) counts once
    seq = []
    for _, _, _, v in read_records(brokers, prefix + "weights"):
        if v is None:
            continue
        c = canon(without(loop.decode(v, sch["WeightConfig"]), "created_at"))
        if c not in seq:
            seq.append(c)
    state["weights"] = seq
    return state


def compare(base, chaos):
    """Differences between two collect() results, as readable lines (empty = equal)."""
    diffs = []
    for what in ("outcomes", "labeled", "metrics"):
        a, b = base[what], chaos[what]
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                diffs.append("%s[%s]: undisturbed %s | chaos %s" % (what, k, str(a.get(k))[:300],
                                                                   str(b.get(k))[:300]))
    if base["weights"] != chaos["weights"]:
        for i in range(max(len(base["weights"]), len(chaos["weights"]))):
            x = base["weights"][i] if i < len(base["weights"]) else None
            y = chaos["weights"][i] if i < len(chaos["weights"]) else None
            if x != y:
                diffs.append("weights[%d]: undisturbed %s | chaos %s" % (i, str(x)[:400], str(y)[:400]))
    return diffs


def find_strings(log_dir, secrets):
    """(file, name) for every one of `secrets` (name -> string) found in a file under log_dir."""
    hits = []
    for root, _, files in os.walk(log_dir):
        for f in files:
            path = os.path.join(root, f)
            data = open(path, "rb").read()
            for name, s in secrets.items():
                if s.encode() in data:
                    hits.append((path, name))
    return hits
