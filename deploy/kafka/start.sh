#!/usr/bin/env bash
# Start a real single-node Apache Kafka 4.x broker (KRaft, broker+controller in one
# JVM) on 127.0.0.1 without Docker, for tests, benchmarks and local runs.
#
#   bash deploy/kafka/start.sh        # idempotent: "already running" exits 0
#   bash deploy/kafka/stop.sh         # idempotent
#
# The broker jars come from Maven Central through `mvn dependency:copy-dependencies`
# on deploy/kafka/pom.xml and are cached in deploy/kafka/.cache/libs, so only the
# first start downloads. Broker settings closedloop relies on live in
# deploy/kafka/broker.properties; this script only adds the node-specific lines.
#
# Environment:
#   CLOSEDLOOP_KAFKA_PORT             client port (default 9092)
#   CLOSEDLOOP_KAFKA_CONTROLLER_PORT  KRaft controller port (default client port + 1)
#   CLOSEDLOOP_KAFKA_DIR              run dir: data, logs, pid (default deploy/kafka/run)
#   CLOSEDLOOP_KAFKA_CACHE            jar cache (default deploy/kafka/.cache)
#   CLOSEDLOOP_KAFKA_HEAP             JVM max heap (default 512m)
#   CLOSEDLOOP_KAFKA_START_TIMEOUT    seconds to wait until the broker answers (default 120)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${CLOSEDLOOP_KAFKA_PORT:-9092}
controller_port=${CLOSEDLOOP_KAFKA_CONTROLLER_PORT:-}
run_dir=${CLOSEDLOOP_KAFKA_DIR:-$here/run}
cache_dir=${CLOSEDLOOP_KAFKA_CACHE:-$here/.cache}
heap=${CLOSEDLOOP_KAFKA_HEAP:-512m}
start_timeout=${CLOSEDLOOP_KAFKA_START_TIMEOUT:-120}

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (( $1 >= 1 && $1 <= 65535 )); }
is_port "$port" || die "CLOSEDLOOP_KAFKA_PORT='$port' is not a TCP port (1..65535)"
[[ -n $controller_port ]] || controller_port=$((port + 1))
is_port "$controller_port" || die "CLOSEDLOOP_KAFKA_CONTROLLER_PORT='$controller_port' is not a TCP port"
[[ $controller_port != "$port" ]] || die "client and controller ports are both $port"
[[ $heap =~ ^[0-9]+[kKmMgG]$ ]] || die "CLOSEDLOOP_KAFKA_HEAP='$heap' is not a JVM size like 512m"
[[ $start_timeout =~ ^[0-9]+$ ]] || die "CLOSEDLOOP_KAFKA_START_TIMEOUT='$start_timeout' is not a number of seconds"

pid_file=$run_dir/kafka.pid
data_dir=$run_dir/data
log_dir=$run_dir/logs
props=$run_dir/server.properties
bootstrap=127.0.0.1:$port

mkdir -p "$run_dir" "$log_dir" "$cache_dir"
# Tests start the broker concurrently; one start at a time per run dir.
exec 9>"$run_dir/.lock"
flock -w 600 9 || die "timed out waiting for the lock $run_dir/.lock held by another start/stop"

# --- helpers ------------------------------------------------------------------
# The pid in the pid file is ours only if that process is a Kafka JVM (pids recycle).
our_pid() {
    [[ -s $pid_file ]] || return 1
    local pid
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ready = a Kafka client can fetch cluster metadata listing at least one broker.
# confluent_kafka (librdkafka, the same client the workers use) when Python has it;
# otherwise the port is open and the broker logged that it started.
have_pyclient() { python3 -c 'import confluent_kafka' 2>/dev/null; }
broker_answers() {
    if have_pyclient; then
        python3 - "$bootstrap" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1], "socket.timeout.ms": 3000}).list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
PY
    else
        port_open "$port" && grep -q 'Kafka Server started' "$log_dir/server.log" 2>/dev/null
    fi
}

ensure_java() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || [[ -f $cache_dir/libs/.complete ]] || missing+=(maven)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} with apt-get"
        local sudo=
        (( EUID == 0 )) || sudo=sudo
        $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed; install Java 17 and Maven by hand"
    fi
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ -n $major ]] && (( major >= 17 )) || die "Kafka 4.x needs Java 17 or newer; found '$(java -version 2>&1 | head -n1)'"
}

# Jars are fetched once; .complete records which pom.xml they were fetched for.
ensure_jars() {
    local want have=
    want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
    [[ -f $cache_dir/libs/.complete ]] && have=$(<"$cache_dir/libs/.complete")
    [[ $have == "$want" ]] && return 0
    command -v mvn >/dev/null || die "Maven is needed to fetch the Kafka jars (apt-get install maven)"
    say "fetching Apache Kafka jars from Maven Central into $cache_dir/libs (first start only)"
    rm -rf "$cache_dir/libs.tmp"
    local mvn_args=(-q -B -f "$here/pom.xml" dependency:copy-dependencies
                    "-DoutputDirectory=$cache_dir/libs.tmp" -DincludeScope=runtime)
    # Offline first: the jars are often already in ~/.m2.
    if ! mvn -o "${mvn_args[@]}" >"$cache_dir/mvn.log" 2>&1; then
        mvn "${mvn_args[@]}" >"$cache_dir/mvn.log" 2>&1 \
            || { tail -n 20 "$cache_dir/mvn.log" >&2; die "mvn could not fetch the Kafka jars (log: $cache_dir/mvn.log)"; }
    fi
    compgen -G "$cache_dir/libs.tmp/kafka_2.13-*.jar" >/dev/null || die "mvn finished but kafka_2.13 jar is missing in $cache_dir/libs.tmp"
    rm -rf "$cache_dir/libs"
    mv "$cache_dir/libs.tmp" "$cache_dir/libs"
    printf '%s\n' "$want" >"$cache_dir/libs/.complete"
}

write_properties() {
    {
        printf '# Generated by deploy/kafka/start.sh from broker.properties; edit that file.\n'
        cat "$here/broker.properties"
        cat <<EOF

# --- node-specific (start.sh) ---
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data_dir
EOF
    } >"$props.tmp"
    mv "$props.tmp" "$props"
}

jvm_opts=(-Xmx"$heap" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
          -Dkafka.logs.dir="$log_dir" -Dlog4j2.configurationFile="$here/log4j2.properties"
          -cp "$cache_dir/libs/*")
java_run() { java "${jvm_opts[@]}" "$@"; }

wait_ready() {
    local pid=$1 deadline=$((SECONDS + start_timeout))
    while ((SECONDS < deadline)); do
        if broker_answers; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$run_dir/kafka.out" "$log_dir/server.log" >&2 2>/dev/null || true
            die "the broker exited during start-up (logs: $run_dir/kafka.out, $log_dir/server.log)"
        fi
        sleep 1
    done
    tail -n 30 "$log_dir/server.log" >&2 2>/dev/null || true
    die "the broker (pid $pid) did not answer on $bootstrap within ${start_timeout}s (log: $log_dir/server.log)"
}

# --- already running? ---------------------------------------------------------
if pid=$(our_pid); then
    if broker_answers; then
        say "already running (pid $pid) on $bootstrap"
        exit 0
    fi
    say "broker pid $pid is up but not answering yet; waiting"
    wait_ready "$pid"
    say "ready on $bootstrap (pid $pid)"
    exit 0
fi
rm -f "$pid_file"
if port_open "$port"; then
    if broker_answers; then
        say "a Kafka broker not started by this script already answers on $bootstrap; using it"
        exit 0
    fi
    die "port $port is in use by something that is not a Kafka broker; set CLOSEDLOOP_KAFKA_PORT"
fi
port_open "$controller_port" && die "controller port $controller_port is in use; set CLOSEDLOOP_KAFKA_CONTROLLER_PORT"

# --- start --------------------------------------------------------------------
ensure_java
ensure_jars
write_properties

if [[ ! -f $data_dir/meta.properties ]]; then
    cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka-storage random-uuid gave '$cluster_id'"
    say "formatting KRaft storage in $data_dir (cluster id $cluster_id)"
    java_run kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$props" \
        --ignore-formatted >"$log_dir/format.log" 2>&1 \
        || { cat "$log_dir/format.log" >&2; die "formatting $data_dir failed"; }
fi

say "starting Apache Kafka on $bootstrap (controller 127.0.0.1:$controller_port, data $data_dir)"
# setsid: the broker must outlive the shell (and the test's process group) that started it.
setsid nohup java "${jvm_opts[@]}" kafka.Kafka "$props" \
    >"$run_dir/kafka.out" 2>&1 </dev/null 9>&- &
pid=$!
printf '%s\n' "$pid" >"$pid_file"
wait_ready "$pid"
say "ready on $bootstrap (pid $pid, log $log_dir/server.log)"
