#!/usr/bin/env bash
# The main job of the README: the whole loop on a generated 18-month history, on a real
# local Kafka broker.
#
#   scripts/demo.sh [loop.py options, e.g. --opportunities 50000 --seed 7]
#
# Installs what is missing, builds, starts the broker (and stops it again if it was not
# already running), then runs scripts/loop.py: closedloop-gen writes the history; week by
# week the test Salesforce server learns the closed opportunities, closedloop-outcomes
# pulls them and closedloop-snapshot publishes the scoring run; join, metrics and refit
# run throughout. It ends when refit has published a CHALLENGER and metrics has written
# both reports, prints a summary and exits 0. Work files, logs and reports: out/loop/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case "${1:-}" in -h|--help) exec python3 scripts/loop.py --help ;; esac

echo "==> dependencies"
bash scripts/install-deps.sh
echo "==> build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
echo "==> local Kafka broker"
port="${CLOSEDLOOP_KAFKA_PORT:-9092}"
started_broker=0
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then started_broker=1; fi
bash deploy/kafka/start.sh
if [ "$started_broker" = 1 ]; then trap 'echo "==> stopping the broker"; bash deploy/kafka/stop.sh >/dev/null || true' EXIT; fi

echo "==> the loop"
python3 scripts/loop.py --bin build/bin --brokers "127.0.0.1:$port" --work out/loop "$@"
