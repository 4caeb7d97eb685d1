"""Every consuming worker exports its consumer lag on /metrics under kafka_exporter's
names (SPEC §5), so a Prometheus that already scrapes kafka_exporter needs no new
dashboards: kafka_consumergroup_current_offset / _lag{consumergroup,topic,partition}.

join, metrics and refit are started on a fresh topic prefix whose input topics hold a
few records (undecodable ones: they go to the DLQ, and the offsets still advance), and
their /metrics pages are scraped until the series for their input topic appear.
"""
import os
import socket
import subprocess
import time
import urllib.request
import uuid

from confluent_kafka import Producer

BIN = os.environ.get("CL_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
BROKERS = os.environ.get("CLOSEDLOOP_BROKERS", "127.0.0.1:9092")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def test_workers_export_consumer_lag(tmp_path):
    prefix = "test-lag-%s." % uuid.uuid4().hex[:8]
    r = subprocess.run([os.path.join(BIN, "closedloop"), "topics", "create", "--brokers", BROKERS,
                        "--topic.prefix", prefix], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    p = Producer({"bootstrap.servers": BROKERS})
    for topic in ("snapshots", "outcomes", "labeled"):
        for i in range(3):
            p.produce(prefix + topic, key=b"006000000000000%03d" % i, value=b"not avro")
    assert p.flush(30) == 0
    workers = {"join": "snapshots", "metrics": "labeled", "refit": "labeled"}
    procs = {}
    try:
        for w in workers:
            port = free_port()
            log = open(tmp_path / (w + ".log"), "w")
            procs[w] = (port, subprocess.Popen(
                [os.path.join(BIN, "closedloop-" + w), "--brokers=" + BROKERS, "--topic.prefix=" + prefix,
                 "--state.dir=%s" % (tmp_path / w), "--http.listen=127.0.0.1:%d" % port,
                 "--kafka.statistics.interval.ms=500", "--metrics.report.dir=%s" % (tmp_path / "r")
                 if w == "metrics" else "--log.level=info"], stdout=log, stderr=log))
        missing = dict(workers)
        deadline = time.time() + 60
        while missing and time.time() < deadline:
            for w, topic in list(missing.items()):
                port, proc = procs[w]
                assert proc.poll() is None, "closedloop-%s exited: %s" % (
                    w, (tmp_path / (w + ".log")).read_text()[-2000:])
                page = scrape(port)
                want = 'kafka_consumergroup_current_offset{consumergroup="closedloop-%s",topic="%s%s"' % (
                    w, prefix, topic)
                if want in page and "kafka_consumergroup_lag{" in page:
                    del missing[w]
            time.sleep(0.5)
        assert not missing, "no consumer lag series on /metrics of: %s" % sorted(missing)
    finally:
        for port, proc in procs.values():
            proc.terminate()
        for port, proc in procs.values():
            assert proc.wait(30) == 0
