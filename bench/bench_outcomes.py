#!/usr/bin/env python3
"""bench_outcomes.py — closedloop-outcomes backfill throughput, REST paging vs Bulk API
2.0, against the test Salesforce server and the real broker (issue 4: "a backfill of
200,000 opportunities through Bulk API 2.0 and through REST paging").

    python3 bench/bench_outcomes.py [--opportunities 200000] [--bin-dir build/bin]

Both runs start from an empty state and a fresh topic and pull the same closed
opportunities; the figure is records published and acknowledged per second of the
worker's wall time (authentication, every page or Bulk result chunk, Avro encoding,
produce with acks=all, LMDB watermark commits). The baseline, in the same run, is raw
confluent-kafka producing the same number of records of the same size to the same
broker, so the ratio shows what the Salesforce side and the bookkeeping cost.

One line per figure:
  outcomes.rest records=N seconds=S records_per_s=X
  outcomes.bulk records=N seconds=S records_per_s=X
  outcomes.raw_produce records=N records_per_s=Y
  outcomes.ratio rest_over_raw=... bulk_over_raw=...
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))


def topic_census(h, topic):
    """(number of records, their value sizes) on the topic, without decoding."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": h.BROKERS, "group.id": "bench-" + h.rand(),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    n, sizes = 0, []
    md = c.list_topics(topic, timeout=10)
    for p in sorted(md.topics[topic].partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        n += hi - lo
        if hi > lo and len(sizes) < 1000:
            c.assign([TopicPartition(topic, p, lo)])
            m = c.poll(10)
            if m is not None and not m.error() and m.value():
                sizes.append(len(m.value()))
    c.close()
    return n, sizes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--opportunities", type=int, default=200000)
    ap.add_argument("--bin-dir", default=os.path.join(SOURCE, "build", "bin"))
    a = ap.parse_args()
    os.environ["CL_SOURCE_DIR"] = SOURCE
    os.environ["CL_BIN_DIR"] = os.path.abspath(a.bin_dir)
    import outcomes_harness as h
    from confluent_kafka import Producer

    base = int(time.time() * 1000) - 10 * 86400000
    records = [h.opportunity(i, base + i * 3, won=(i % 3 == 0), amount=1000.0 + i % 977)
               for i in range(a.opportunities)]
    figures = {}
    for mode, args in (("rest", ["--outcomes.source=rest", "--outcomes.batch.size=2000"]),
                       ("bulk", ["--outcomes.source=bulk"])):
        env = h.Env(records)
        try:
            t0 = time.monotonic()
            r = env.run("--store.sync=durable", *args, timeout=3600)
            dt = time.monotonic() - t0
            if r.returncode != 0:
                print("outcomes.%s FAILED exit=%d %s" % (mode, r.returncode, r.stderr[-2000:]))
                return 1
            n, sizes = topic_census(h, env.topic)
            if n != a.opportunities:
                print("outcomes.%s FAILED published=%d expected=%d" % (mode, n, a.opportunities))
                return 1
            figures[mode] = n / dt
            print("outcomes.%s records=%d seconds=%.2f records_per_s=%.0f" % (mode, n, dt, n / dt), flush=True)
        finally:
            env.close()

    # Baseline: the same number of records of the same mean size, raw produce + acks.
    mean = int(sum(sizes) / len(sizes)) if sizes else 200
    env = h.Env([])
    try:
        p = Producer({"bootstrap.servers": h.BROKERS, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "partitioner": "murmur2_random"})
        payload = b"x" * mean
        t0 = time.monotonic()
        for i in range(a.opportunities):
            while True:
                try:
                    p.produce(env.topic, key=h.make_id("006", i).encode(), value=payload)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 10000 == 0:
                p.poll(0)
        p.flush(120)
        dt = time.monotonic() - t0
        raw = a.opportunities / dt
        print("outcomes.raw_produce records=%d value_bytes=%d records_per_s=%.0f" % (a.opportunities, mean, raw))
    finally:
        env.close()
    print("outcomes.ratio rest_over_raw=%.3f bulk_over_raw=%.3f" % (figures["rest"] / raw, figures["bulk"] / raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
