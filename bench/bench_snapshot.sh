#!/usr/bin/env bash
# bench_snapshot.sh — closedloop-snapshot rows/s on one large run, against plain
# librdkafka producing the same records to the same broker (bench_snapshot.c), in the
# same run. SPEC §7 "snapshot producer rows/s".
#
#   bench/bench_snapshot.sh [ROWS] [BUILD_DIR]     (default 1000000 rows, build/)
#
# Builds one run file of ROWS rows from a closedloop-gen history (rows of several
# weekly runs, opportunity ids made unique, one run_id), creates topics under a unique
# prefix, times the worker (its run_finished duration: validation pass, scoring,
# encoding, publishing, and waiting for every acknowledgement), replays the records
# it wrote with raw librdkafka, and prints both figures and their ratio:
#
#   snapshot.worker rows=N seconds=S rows_per_s=X peak_rss_mb=M   (M: the worker's peak RSS)
#   snapshot.raw_produce messages=N bytes=B msgs_per_s=Y mb_per_s=Z failed=0
#   snapshot.ratio worker_over_raw=X/Y
#
# The broker must run (bash deploy/kafka/start.sh). Topics are left for inspection
# under the printed prefix.
set -euo pipefail
ROWS=${1:-1000000}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${2:-$SRC/build}
BIN=$BUILD/bin
BROKERS=${CLOSEDLOOP_BROKERS:-127.0.0.1:9092}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX="bench-snap-$$-$RANDOM."

for tool in closedloop closedloop-gen closedloop-snapshot bench_snapshot; do
    [ -x "$BIN/$tool" ] || { echo "bench_snapshot: $BIN/$tool is not built" >&2; exit 1; }
done

# Enough opportunities that the runs together hold ROWS rows (about 4 rows per
# opportunity over 6 months of weekly runs).
OPPS=$(( ROWS / 4 + 1000 ))
"$BIN/closedloop-gen" --out "$WORK/h" --opportunities "$OPPS" --months 6 --seed 3 \
    --log.level=warn >/dev/null
python3 - "$WORK/h/runs" "$WORK/run.csv" "$ROWS" <<'EOF'
import csv, os, sys
runs, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 0
with open(out, "w", newline="") as f:
    w = None
    for name in sorted(os.listdir(runs), reverse=True):
        with open(os.path.join(runs, name), newline="") as r:
            rd = csv.reader(r)
            header = next(rd)
            if w is None:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
            i_run, i_opp = header.index("run_id"), header.index("opportunity_id")
            for row in rd:
                row[i_opp] = row[i_opp] + "-" + row[i_run][4:]
                row[i_run] = "run-bench"
                w.writerow(row)
                n += 1
                if n >= rows:
                    sys.exit(0)
sys.exit("only %d rows generated, %d wanted" % (n, rows))
EOF

create_topics() {  # idempotent; retried because a just-created topic may not be described yet
    for _ in 1 2 3 4 5; do
        "$BIN/closedloop" topics create --brokers="$BROKERS" --topic.prefix="$1" \
            --log.level=warn >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "bench_snapshot: cannot create topics with prefix $1" >&2
    return 1
}
create_topics "$PREFIX"
create_topics "${PREFIX}raw."

# Peak RSS of the worker process (GNU time's %M, KiB), reported on the worker line.
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f %M -o "$WORK/maxrss")
"${TIME[@]}" "$BIN/closedloop-snapshot" --brokers="$BROKERS" --topic.prefix="$PREFIX" \
    --http.listen=127.0.0.1:0 --state.dir="$WORK/state" "$WORK/run.csv" \
    >"$WORK/summary.json" 2>"$WORK/snapshot.log"
RSS_MB=unknown
[ -s "$WORK/maxrss" ] && RSS_MB=$(python3 -c "print(round(int(open('$WORK/maxrss').read().split()[-1]) / 1024, 1))")
DURATION_MS=$(sed -n 's/.*event=run_finished .* duration_ms=\([0-9]*\).*/\1/p' "$WORK/snapshot.log")
PUBLISHED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["published"])' "$WORK/summary.json")
[ "$PUBLISHED" = "$ROWS" ] || { echo "bench_snapshot: published $PUBLISHED of $ROWS" >&2; exit 1; }
WORKER_RPS=$(python3 -c "print(round($ROWS / ($DURATION_MS / 1000.0)))")
echo "snapshot.worker rows=$ROWS seconds=$(python3 -c "print($DURATION_MS/1000.0)") rows_per_s=$WORKER_RPS peak_rss_mb=$RSS_MB prefix=$PREFIX"

RAW=$("$BIN/bench_snapshot" "${PREFIX}snapshots" "${PREFIX}raw.snapshots" "$BROKERS")
echo "$RAW"
RAW_RPS=$(echo "$RAW" | sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p')
echo "snapshot.ratio worker_over_raw=$(python3 -c "print(round($WORKER_RPS / $RAW_RPS, 3))")"
