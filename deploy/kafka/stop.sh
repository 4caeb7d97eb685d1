#!/usr/bin/env bash
# Stop the local broker started by deploy/kafka/start.sh. Idempotent: "not running"
# exits 0. SIGTERM lets Kafka shut down cleanly (controlled shutdown, flushed logs,
# clean-shutdown marker, so the next start skips log recovery); after
# CLOSEDLOOP_KAFKA_STOP_TIMEOUT seconds (default 30) it is killed.
#
#   bash deploy/kafka/stop.sh           # stop, keep data
#   bash deploy/kafka/stop.sh --wipe    # stop and delete data and logs (fresh cluster)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_dir=${CLOSEDLOOP_KAFKA_DIR:-$here/run}
stop_timeout=${CLOSEDLOOP_KAFKA_STOP_TIMEOUT:-30}
pid_file=$run_dir/kafka.pid

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

wipe=0
case ${1:-} in
    "") ;;
    --wipe) wipe=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: stop.sh [--wipe])" ;;
esac
[[ $stop_timeout =~ ^[0-9]+$ ]] || die "CLOSEDLOOP_KAFKA_STOP_TIMEOUT='$stop_timeout' is not a number of seconds"

[[ -d $run_dir ]] || { say "not running (no $run_dir)"; exit 0; }
exec 9>"$run_dir/.lock"
flock -w 600 9 || die "timed out waiting for the lock $run_dir/.lock"

pid=
if [[ -s $pid_file ]]; then
    pid=$(<"$pid_file")
    # Only signal the pid if it is still a Kafka JVM: pids are recycled.
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null \
        || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
        pid=
    fi
fi

if [[ -z $pid ]]; then
    say "not running"
else
    say "stopping broker pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + stop_timeout))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker did not stop within ${stop_timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    say "stopped"
fi
rm -f "$pid_file"

if ((wipe)); then
    rm -rf "$run_dir/data" "$run_dir/logs" "$run_dir/server.properties" "$run_dir/kafka.out"
    say "wiped data and logs in $run_dir"
fi
