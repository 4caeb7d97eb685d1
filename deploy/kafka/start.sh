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
#
# Optional second listener, SASL_SSL with SCRAM-SHA-512 (unset: PLAINTEXT only, as before):
#   CLOSEDLOOP_KAFKA_SASL_SSL_PORT    port on 127.0.0.1 for the SASL_SSL listener
#   CLOSEDLOOP_KAFKA_SSL_KEYSTORE     PKCS12 keystore of the broker (default: a test CA and
#                                     certificate made by make-test-ca.sh in <run dir>/tls)
#   CLOSEDLOOP_KAFKA_SSL_KEYSTORE_PASSWORD_FILE  file holding the keystore password
#   CLOSEDLOOP_KAFKA_SCRAM_USER       SCRAM user created on the broker (default closedloop)
#   CLOSEDLOOP_KAFKA_SCRAM_PASSWORD_FILE  file holding its password (default: a random one
#                                     written to <run dir>/tls/scram.password, mode 0600)
# Passwords travel in files, never in argv or the environment of the workers.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${CLOSEDLOOP_KAFKA_PORT:-9092}
controller_port=${CLOSEDLOOP_KAFKA_CONTROLLER_PORT:-}
run_dir=${CLOSEDLOOP_KAFKA_DIR:-$here/run}
cache_dir=${CLOSEDLOOP_KAFKA_CACHE:-$here/.cache}
heap=${CLOSEDLOOP_KAFKA_HEAP:-512m}
start_timeout=${CLOSEDLOOP_KAFKA_START_TIMEOUT:-120}
sasl_port=${CLOSEDLOOP_KAFKA_SASL_SSL_PORT:-}

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (( $1 >= 1 && $1 <= 65535 )); }
is_port "$port" || die "CLOSEDLOOP_KAFKA_PORT='$port' is not a TCP port (1..65535)"
[[ -n $controller_port ]] || controller_port=$((port + 1))
is_port "$controller_port" || die "CLOSEDLOOP_KAFKA_CONTROLLER_PORT='$controller_port' is not a TCP port"
[[ $controller_port != "$port" ]] || die "client and controller ports are both $port"
[[ $heap =~ ^[0-9]+[kKmMgG]$ ]] || die "CLOSEDLOOP_KAFKA_HEAP='$heap' is not a JVM size like 512m"
[[ $start_timeout =~ ^[0-9]+$ ]] || die "CLOSEDLOOP_KAFKA_START_TIMEOUT='$start_timeout' is not a number of seconds"
if [[ -n $sasl_port ]]; then
    is_port "$sasl_port" || die "CLOSEDLOOP_KAFKA_SASL_SSL_PORT='$sasl_port' is not a TCP port"
    [[ $sasl_port != "$port" && $sasl_port != "$controller_port" ]] \
        || die "CLOSEDLOOP_KAFKA_SASL_SSL_PORT=$sasl_port collides with the client or controller port"
fi

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

# --- SASL_SSL (only when CLOSEDLOOP_KAFKA_SASL_SSL_PORT is set) -----------------
tls_dir=$run_dir/tls
keystore= keystore_password= scram_user= scram_password_file=

# Resolves the keystore, its password and the SCRAM user/password file; makes a test
# CA with make-test-ca.sh when no keystore is given. Everything secret stays 0600.
prepare_sasl_ssl() {
    local running=${1:-}
    keystore=${CLOSEDLOOP_KAFKA_SSL_KEYSTORE:-}
    local ks_pw_file=${CLOSEDLOOP_KAFKA_SSL_KEYSTORE_PASSWORD_FILE:-}
    if [[ -z $keystore ]]; then
        [[ -z $ks_pw_file ]] || die "CLOSEDLOOP_KAFKA_SSL_KEYSTORE_PASSWORD_FILE is set without CLOSEDLOOP_KAFKA_SSL_KEYSTORE"
        bash "$here/make-test-ca.sh" "$tls_dir" >&2 || die "could not make the test CA in $tls_dir"
        keystore=$tls_dir/server.p12
        ks_pw_file=$tls_dir/server.p12.password
    fi
    [[ -r $keystore ]] || die "keystore '$keystore' (CLOSEDLOOP_KAFKA_SSL_KEYSTORE) is not readable"
    [[ -n $ks_pw_file && -r $ks_pw_file ]] \
        || die "the keystore password file '${ks_pw_file}' (CLOSEDLOOP_KAFKA_SSL_KEYSTORE_PASSWORD_FILE) is not readable"
    keystore_password=$(head -n1 "$ks_pw_file")
    # The value lands in a properties file: no line breaks or escapes that would change it.
    [[ $keystore_password =~ ^[A-Za-z0-9._~@%+=:,/-]{1,256}$ ]] \
        || die "the keystore password in $ks_pw_file must be 1..256 of [A-Za-z0-9._~@%+=:,/-]"
    [[ $keystore != *$'\n'* && $keystore != *'\'* ]] || die "keystore path '$keystore' has a newline or backslash"

    scram_user=${CLOSEDLOOP_KAFKA_SCRAM_USER:-closedloop}
    [[ $scram_user =~ ^[A-Za-z0-9._-]{1,64}$ ]] \
        || die "CLOSEDLOOP_KAFKA_SCRAM_USER='$scram_user' must be 1..64 of [A-Za-z0-9._-]"
    scram_password_file=${CLOSEDLOOP_KAFKA_SCRAM_PASSWORD_FILE:-}
    if [[ -z $scram_password_file ]]; then
        scram_password_file=$tls_dir/scram.password
        if [[ ! -s $scram_password_file ]]; then
            (umask 077 && mkdir -p "$tls_dir" && openssl rand -hex 24 >"$scram_password_file") \
                || die "could not write $scram_password_file"
        fi
    fi
    [[ -r $scram_password_file && -s $scram_password_file ]] \
        || die "the SCRAM password file '$scram_password_file' (CLOSEDLOOP_KAFKA_SCRAM_PASSWORD_FILE) is empty or unreadable"
    if [[ -z $running ]] && port_open "$sasl_port"; then
        die "SASL_SSL port $sasl_port is in use; set CLOSEDLOOP_KAFKA_SASL_SSL_PORT"
    fi
}

# Creates or updates the SCRAM-SHA-512 credential through the PLAINTEXT listener with
# the admin API (KRaft stores it in the metadata log, so it survives restarts); the
# password is read from its file inside Python, never passed on a command line.
upsert_scram_user() {
    python3 -c 'import confluent_kafka' 2>/dev/null \
        || die "the SASL_SSL listener needs python3 with confluent-kafka to create the SCRAM user (pip install confluent-kafka)"
    python3 - "$bootstrap" "$scram_user" "$scram_password_file" <<'PY' || die "could not create the SCRAM-SHA-512 user '$scram_user'"
import sys
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)
bootstrap, user, pw_file = sys.argv[1:4]
with open(pw_file, "rb") as f:
    password = f.readline().rstrip(b"\r\n")
if not password:
    sys.exit(f"{pw_file} holds an empty password")
admin = AdminClient({"bootstrap.servers": bootstrap})
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info, password)])
for fut in futures.values():
    fut.result(30)
PY
}

# Ready on SASL_SSL = a client that verifies the broker certificate against the CA and
# authenticates with SCRAM gets metadata (the credential has reached the listener).
sasl_answers() {
    local ca=${CLOSEDLOOP_KAFKA_SSL_CA:-$tls_dir/ca.pem}
    python3 - "127.0.0.1:$sasl_port" "$scram_user" "$scram_password_file" "$ca" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
bootstrap, user, pw_file, ca = sys.argv[1:5]
with open(pw_file) as f:
    password = f.readline().rstrip("\r\n")
conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password,
        "socket.timeout.ms": 3000}
import os
if os.path.exists(ca):
    conf["ssl.ca.location"] = ca
md = AdminClient(conf).list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
PY
}

wait_sasl_ready() {
    local deadline=$((SECONDS + start_timeout))
    while ((SECONDS < deadline)); do
        sasl_answers && return 0
        sleep 1
    done
    die "the SASL_SSL listener on 127.0.0.1:$sasl_port did not accept '$scram_user' within ${start_timeout}s (log: $log_dir/server.log)"
}

finish_sasl_ssl() {
    [[ -n $sasl_port ]] || return 0
    upsert_scram_user
    wait_sasl_ready
    say "SASL_SSL (SCRAM-SHA-512) ready on 127.0.0.1:$sasl_port for user $scram_user (CA ${CLOSEDLOOP_KAFKA_SSL_CA:-$tls_dir/ca.pem})"
}

write_properties() {
    # With SASL_SSL the file holds the keystore password: create it private first.
    [[ -z $sasl_port ]] || (umask 077 && rm -f "$props.tmp" && : >"$props.tmp")
    {
        printf '# Generated by deploy/kafka/start.sh from broker.properties; edit that file.\n'
        cat "$here/broker.properties"
        cat <<EOF

# --- node-specific (start.sh) ---
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
EOF
        if [[ -z $sasl_port ]]; then
            cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data_dir
EOF
        else
            # Brokers talk to each other (and the controller) in PLAINTEXT on loopback, so
            # no SCRAM credential is needed before the first start; clients choose.
            cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
log.dirs=$data_dir

# --- SASL_SSL listener (CLOSEDLOOP_KAFKA_SASL_SSL_PORT) ---
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$keystore
listener.name.sasl_ssl.ssl.keystore.password=$keystore_password
listener.name.sasl_ssl.ssl.client.auth=none
EOF
        fi
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
    if [[ -n $sasl_port ]] && ! grep -q "^listeners=.*SASL_SSL://127.0.0.1:$sasl_port," "$props" 2>/dev/null; then
        die "the running broker (pid $pid) has no SASL_SSL listener on port $sasl_port; stop it first (stop.sh)"
    fi
    if broker_answers; then
        say "already running (pid $pid) on $bootstrap"
        if [[ -n $sasl_port ]]; then
            prepare_sasl_ssl running
            finish_sasl_ssl
        fi
        exit 0
    fi
    say "broker pid $pid is up but not answering yet; waiting"
    wait_ready "$pid"
    say "ready on $bootstrap (pid $pid)"
    if [[ -n $sasl_port ]]; then
        prepare_sasl_ssl running
        finish_sasl_ssl
    fi
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
[[ -z $sasl_port ]] || prepare_sasl_ssl
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
finish_sasl_ssl
