#!/usr/bin/env bash
# `closedloop topics create|describe` and `closedloop lag` against the real local broker
# (started here, idempotently). Each run uses its own topic prefix and group.
set -euo pipefail

: "${CL_SOURCE_DIR:?run through ctest (CL_SOURCE_DIR unset)}"
: "${CL_BIN_DIR:?run through ctest (CL_BIN_DIR unset)}"
cli=$CL_BIN_DIR/closedloop
[[ -x $cli ]] || { echo "FAIL: $cli not built" >&2; exit 1; }
python3 -c 'import confluent_kafka' 2>/dev/null \
    || { echo "FAIL: python3 confluent_kafka is needed (pip install confluent-kafka)" >&2; exit 1; }

bash "$CL_SOURCE_DIR/deploy/kafka/start.sh" >&2
brokers=127.0.0.1:${CLOSEDLOOP_KAFKA_PORT:-9092}
prefix="ttopics-$$-$RANDOM."
bad_prefix="ttopics-bad-$$-$RANDOM."
tmp=$(mktemp -d)
cleanup() {
    python3 - "$brokers" "$prefix" "$bad_prefix" <<'PY' >/dev/null 2>&1 || true
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
names = [t for t in a.list_topics(timeout=10).topics if t.startswith((sys.argv[2], sys.argv[3]))]
if names:
    for f in a.delete_topics(names, operation_timeout=30).values():
        f.result()
PY
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
run() { "$cli" "$@" --brokers "$brokers"; }

# --- create, twice --------------------------------------------------------------
run topics create --topic.prefix "$prefix" --partitions 2 >"$tmp/create1" || fail "first create failed"
[[ $(grep -c '^created ' "$tmp/create1") == 7 ]] || { cat "$tmp/create1"; fail "expected 7 created topics"; }
run topics create --topic.prefix "$prefix" --partitions 2 >"$tmp/create2" || fail "second create is not idempotent"
[[ $(grep -c '^exists ' "$tmp/create2") == 7 ]] || { cat "$tmp/create2"; fail "expected 7 existing topics"; }

# --- describe: partitions and compaction as the catalogue says --------------------
run topics describe --topic.prefix "$prefix" --output json >"$tmp/describe.json" || fail "describe failed"
python3 - "$tmp/describe.json" "$prefix" <<'PY' || fail "describe output is wrong"
import json, sys
topics = {t["topic"]: t for t in json.load(open(sys.argv[1]))}
p = sys.argv[2]
expect = {"snapshots": 2, "outcomes": 2, "labeled": 2, "metrics": 2, "weights": 1, "dlq": 2, "join-changelog": 2}
assert set(topics) == {p + n for n in expect}, topics.keys()
for name, parts in expect.items():
    t = topics[p + name]
    assert t["partitions"] == parts, (name, t)
    assert t["replication_factor"] == 1, (name, t)
    compact = name in ("weights", "join-changelog")
    assert (t["cleanup_policy"] == "compact") == compact, (name, t)
    assert (t["configs"].get("cleanup.policy") == "compact") == compact, (name, t)
assert topics[p + "dlq"]["configs"]["retention.ms"] == "2592000000"
PY
run topics describe --topic.prefix "$prefix" | grep -q "^${prefix}weights partitions=1 .*cleanup.policy=compact" \
    || fail "text describe does not show weights as compacted"
if run topics describe "${prefix}does-not-exist" 2>"$tmp/err"; then fail "describe of a missing topic succeeded"; fi
grep -q 'does not exist' "$tmp/err" || fail "missing-topic error does not say so: $(cat "$tmp/err")"

# --- a weights topic that is not compacted is an error, not silently accepted -------
python3 - "$brokers" "${bad_prefix}weights" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic(sys.argv[2], 1, 1)], operation_timeout=30).values():
    f.result()
PY
if run topics create --topic.prefix "$bad_prefix" >"$tmp/bad" 2>"$tmp/bad.err"; then
    fail "create accepted a non-compacted weights topic"
fi
grep -q 'must be compacted' "$tmp/bad.err" || fail "no compaction error: $(cat "$tmp/bad.err")"

# --- lag -------------------------------------------------------------------------
group="${prefix}lag-group"
python3 - "$brokers" "${prefix}snapshots" "$group" <<'PY'
import sys
from confluent_kafka import Producer, Consumer, TopicPartition
brokers, topic, group = sys.argv[1:]
p = Producer({"bootstrap.servers": brokers})
for i in range(10):
    p.produce(topic, value=b"v", partition=0)
for i in range(4):
    p.produce(topic, value=b"v", partition=1)
assert p.flush(30) == 0
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)], asynchronous=False)
c.close()
PY
run lag --group "$group" --output json >"$tmp/lag.json" || fail "lag failed"
python3 - "$tmp/lag.json" "$group" "${prefix}snapshots" <<'PY' || fail "lag output is wrong"
import json, sys
rows = json.load(open(sys.argv[1]))
group, topic = sys.argv[2], sys.argv[3]
got = {(r["group"], r["topic"], r["partition"]): (r["committed_offset"], r["end_offset"], r["lag"]) for r in rows}
assert got == {(group, topic, 0): (3, 10, 7), (group, topic, 1): (4, 4, 0)}, got
PY
run lag --group "$group" >"$tmp/lag.txt" || fail "text lag failed"
grep -E "^$group +${prefix}snapshots +0 +3 +10 +7$" "$tmp/lag.txt" >/dev/null \
    || { cat "$tmp/lag.txt"; fail "text lag row for partition 0 is wrong"; }
grep -E "^$group +\(total\) +7$" "$tmp/lag.txt" >/dev/null || { cat "$tmp/lag.txt"; fail "lag total is wrong"; }
# Every group: the one above is among them; exit 0.
run lag >"$tmp/all.txt" || fail "lag over all groups failed"
grep -q "^$group " "$tmp/all.txt" || fail "lag over all groups does not list $group"
# A group that never committed is reported, exit 0.
run lag --group "${prefix}nobody" >"$tmp/none.txt" || fail "lag of an unknown group must exit 0"
grep -q 'no committed offsets' "$tmp/none.txt" || fail "unknown group not reported"

# --- usage errors ------------------------------------------------------------------
set +e
"$cli" topics frobnicate >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown subcommand must exit 2"
"$cli" topics create --partitions 0 >/dev/null 2>&1; [[ $? == 2 ]] || fail "--partitions 0 must exit 2"
"$cli" nosuchcommand >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown command must exit 2"
"$cli" lag --brokers 127.0.0.1:1 --admin.timeout.ms 2000 >/dev/null 2>&1; [[ $? == 1 ]] || fail "unreachable broker must exit 1"
set -e
"$cli" --help | grep -q 'topics' || fail "--help does not list topics"

echo "ok: topics create/describe and lag"
