"""closedloop-join crash and scale-out tests on the real broker.

Crash: the same history is published under two topic prefixes (identical partitions and
offsets). One worker runs undisturbed; the other is killed with SIGKILL at random
moments (>= 10) and restarted each time. After the consumer rule, the labeled sets are
equal, and so are the LMDB states (dumped canonically with --dump-state).

Scale: two instances share a group; one is killed mid-run; the survivor restores the
dead one's partitions from join-changelog and finishes. Its labeled set and state equal
the undisturbed run's.

Size: CL_JOIN_CRASH_OPPS opportunities (default 50000, the CI form: a few minutes on two
cores); CL_JOIN_CRASH_KILLS kills (default 10). Set them higher for the long form.
"""
import os
import random
import re
import signal
import subprocess
import time
import uuid

import pytest

from test_join import (dump_state, ensure_broker, delete_topics, fold_labeled, history,
                       join_args, labeled_set, make_topics, publish_history, read_topic,
                       run_join, JOIN)

OPPS = int(os.environ.get("CL_JOIN_CRASH_OPPS", "50000"))
KILLS = int(os.environ.get("CL_JOIN_CRASH_KILLS", "10"))
SEED = int(os.environ.get("CL_JOIN_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The history, and the undisturbed run over it."""
    ensure_broker()
    if not os.path.exists(JOIN):
        pytest.fail(f"{JOIN} not built")
    snaps, outs = history(OPPS, seed=SEED % 1000)
    prefixes = []

    def publish():
        p = f"itjc{uuid.uuid4().hex[:10]}."
        make_topics(p, partitions=4)
        publish_history(p, snaps, outs)
        prefixes.append(p)
        return p

    base = publish()
    state = str(tmp_path_factory.mktemp("undisturbed"))
    run_join(base, "base-" + uuid.uuid4().hex[:8], state, timeout=900)
    expected = labeled_set(fold_labeled(read_topic(base + "labeled", timeout=300)))
    dump = dump_state(state)
    assert len(expected) > OPPS  # most opportunities joined, several snapshots each
    yield {"publish": publish, "expected": expected, "dump": dump}
    for p in prefixes:
        delete_topics(p)


def test_join_sigkill_restart_equals_undisturbed(baseline, tmp_path):
    prefix = baseline["publish"]()
    state = str(tmp_path / "state")
    group = "crash-" + uuid.uuid4().hex[:8]
    # Static membership: a restarted incarnation takes its predecessor's place at once
    # instead of waiting for the session of the killed one to time out.
    extra = ["-X", "group.instance.id=" + group + "-0", "-X", "session.timeout.ms=10000"]
    rnd = random.Random(SEED)
    kills, log_tail = 0, ""
    while kills < KILLS:
        errlog = open(tmp_path / f"run{kills}.log", "w")
        proc = subprocess.Popen(join_args(prefix, group, state, idle_ms=60000, extra=extra),
                                stdout=subprocess.DEVNULL, stderr=errlog)
        time.sleep(rnd.uniform(0.5, 2.5))
        assert proc.poll() is None, f"worker exited early: {open(errlog.name).read()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        errlog.close()
        kills += 1
        log_tail = open(errlog.name).read()
    assert "join_started" in log_tail
    stderr = run_join(prefix, group, state, timeout=900, extra=extra)
    assert "join_stopped status=OK" in stderr

    got = labeled_set(fold_labeled(read_topic(prefix + "labeled", timeout=300)))
    assert got == baseline["expected"], (
        f"seed {SEED}: {len(got - baseline['expected'])} extra, "
        f"{len(baseline['expected'] - got)} missing")
    assert dump_state(state) == baseline["dump"], f"seed {SEED}: LMDB state differs"


def test_join_two_instances_one_killed(baseline, tmp_path):
    prefix = baseline["publish"]()
    group = "scale-" + uuid.uuid4().hex[:8]
    extra = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"]
    state_a, state_b = str(tmp_path / "a"), str(tmp_path / "b")
    log_a, log_b = open(tmp_path / "a.log", "w"), open(tmp_path / "b.log", "w")
    a = subprocess.Popen(join_args(prefix, group, state_a, idle_ms=20000, extra=extra),
                         stdout=subprocess.DEVNULL, stderr=log_a)
    b = subprocess.Popen(join_args(prefix, group, state_b, idle_ms=20000, extra=extra),
                         stdout=subprocess.DEVNULL, stderr=log_b)
    try:
        # Wait until B owns partitions and has committed work of its own.
        deadline = time.time() + 120
        while time.time() < deadline:
            text = open(log_b.name).read()
            if "join_partition_assigned" in text and b.poll() is None:
                break
            time.sleep(0.2)
        time.sleep(2.0)
        assert b.poll() is None, "instance B exited before it could be killed"
        b.send_signal(signal.SIGKILL)
        b.wait()
        assert a.wait(timeout=900) == 0, open(log_a.name).read()[-4000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
        log_a.close()
        log_b.close()
    text_a = open(log_a.name).read()
    restores = re.findall(r"event=restore_done partition=(\d+) records=(\d+)", text_a)
    assert restores, "the survivor did not restore any partition from the changelog"
    assert any(int(n) > 0 for _, n in restores), "restores read no changelog record"

    got = labeled_set(fold_labeled(read_topic(prefix + "labeled", timeout=300)))
    assert got == baseline["expected"]
    assert dump_state(state_a) == baseline["dump"]
