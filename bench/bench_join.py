#!/usr/bin/env python3
"""bench_join.py — closedloop-join sustained throughput and peak RSS, beside the raw
librdkafka consume+produce rate of the same number of records of the same size on the
same broker, in one run (SPEC §7).

    python3 bench/bench_join.py [--opportunities 1000000] [--bin-dir build/bin]
                                [--brokers 127.0.0.1:9092] [--partitions 6] [--out FILE]

Steps: generate a deterministic history (tests/integration/test_join.py: ~2.6 snapshots
and ~1 outcome event per opportunity, re-opens, deletions, duplicates), publish it under a
fresh topic prefix, run closedloop-join until it has read everything (join.exit.idle.ms),
then run bench_kafka_raw with as many messages as the join consumed and their mean size.

Figures (one `key=value` line, also appended to --out):
  join.records_in_per_s      input records consumed per second of processing
  join.labeled_per_s         labeled records produced per second of processing
  join.peak_rss_mb           peak resident set of the worker
  kafka_raw.consume_produce_per_s, ratio = join.records_in_per_s / raw
Processing time runs from the first partition assignment to the last record's commit
(the idle wait before exit is not counted). The state uses store.sync=durable unless
--nosync is given.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
os.environ.setdefault("CL_SOURCE_DIR", SOURCE)

import test_join as T  # noqa: E402  (history, publishing, topic helpers)
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

IDLE_MS = 3000


def ts(line):
    m = re.search(r"ts=(\S+Z)", line)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() if m else None


def topic_total(topic):
    c = Consumer({"bootstrap.servers": T.BROKER, "group.id": "bench-" + uuid.uuid4().hex})
    md = c.list_topics(topic, timeout=10)
    total = 0
    for p in md.topics[topic].partitions:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += hi - lo
    c.close()
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--opportunities", type=int, default=1_000_000)
    ap.add_argument("--bin-dir", default=os.path.join(SOURCE, "build", "bin"))
    ap.add_argument("--brokers", default=T.BROKER)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--nosync", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    T.BROKER = a.brokers
    join = os.path.join(a.bin_dir, "closedloop-join")
    raw = os.path.join(a.bin_dir, "bench_kafka_raw")
    for b in (join, raw):
        if not os.path.exists(b):
            sys.exit(f"bench_join: {b} not built")
    T.ensure_broker()

    t0 = time.time()
    snaps, outs = T.history(a.opportunities, seed=11, tag="B")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    T.make_topics(prefix, partitions=a.partitions)
    try:
        T.publish_history(prefix, snaps, outs)
        n_in = len(snaps) + len(outs)
        sizes = [len(T.encode(T.SNAPSHOT, T.SNAPSHOT_FP, s)) for s in snaps[:2000]]
        mean_size = int(sum(sizes) / len(sizes))
        del snaps, outs
        print(f"bench_join: published {n_in} records in {time.time() - t0:.0f}s", file=sys.stderr)

        with tempfile.TemporaryDirectory() as state:
            args = [join, f"--brokers={a.brokers}", f"--topic.prefix={prefix}",
                    f"--group.id=bench-{uuid.uuid4().hex[:8]}", f"--state.dir={state}",
                    "--http.listen=127.0.0.1:0", f"--join.exit.idle.ms={IDLE_MS}",
                    f"--store.sync={'nosync' if a.nosync else 'durable'}",
                    "--store.map.initial=1073741824"]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"bench_join: closedloop-join failed:\n{r.stderr[-3000:]}")
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
            lines = r.stderr.splitlines()
            start = next(ts(ln) for ln in lines if "event=join_partition_assigned" in ln)
            end = next(ts(ln) for ln in lines if "event=join_idle_exit" in ln) - IDLE_MS / 1000
        seconds = max(end - start, 1e-3)
        n_out = topic_total(prefix + "labeled")

        rr = subprocess.run([raw, str(n_in), str(mean_size), str(a.partitions), a.brokers],
                            capture_output=True, text=True)
        m = re.search(r"kafka_raw\.consume_produce .*msgs_per_s=([0-9.]+)", rr.stdout)
        if rr.returncode != 0 or not m:
            sys.exit(f"bench_join: bench_kafka_raw failed:\n{rr.stdout}\n{rr.stderr[-2000:]}")
        raw_rate = float(m.group(1))
    finally:
        T.delete_topics(prefix)

    in_rate = n_in / seconds
    line = (f"join opportunities={a.opportunities} records_in={n_in} labeled_out={n_out} "
            f"value_bytes={mean_size} partitions={a.partitions} "
            f"sync={'nosync' if a.nosync else 'durable'} seconds={seconds:.1f} "
            f"records_in_per_s={in_rate:.0f} labeled_per_s={n_out / seconds:.0f} "
            f"peak_rss_mb={rss_mb:.1f} kafka_raw.consume_produce_per_s={raw_rate:.0f} "
            f"ratio={in_rate / raw_rate:.3f}")
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
