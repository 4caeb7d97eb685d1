#!/usr/bin/env bash
# bench/run.sh — the whole benchmark suite of SPEC §7, run sequentially on this machine,
# every figure beside its baseline measured in the same run, written to bench/RESULTS.md.
#
#   bash bench/run.sh [--quick] [--build DIR] [--only NAME[,NAME...]] [--results FILE]
#
#   --quick     small scale (a smoke check of the harness, ~2 minutes); the default is the
#               SPEC scale: 1M rows / opportunities / examples (see README.md for times)
#   --build     build directory (default: build, relative to the source tree); it is
#               configured if needed and always rebuilt first (cmake --build DIR -j2)
#   --only      run only these benchmarks (names below); the others are left out of the file
#   --results   where the report goes (default bench/RESULTS.md)
#
# Benchmarks: avro store kafka_raw snapshot outcomes join metrics fit refit latency.
# Each one's complete output (stdout+stderr) is kept in bench/results/<name>.txt and its
# figure lines (`name key=value ...` or `name value`) are turned into the tables of the
# report. A benchmark that fails or times out does not stop the others: its table says
# FAILED with the end of its output. The broker (127.0.0.1:9092) is started with
# deploy/kafka/start.sh when it is not already up, and stopped at the end only then.
#
# Exit status: 0 when every benchmark produced its figures, 1 when any failed, 2 on a
# usage error or a build failure (nothing is run on a tree that does not build).
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
BUILD=build
ONLY=
RESULTS=$SRC/bench/RESULTS.md
ALL="avro store kafka_raw snapshot outcomes join metrics fit refit latency"

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --build) [ $# -ge 2 ] || usage; BUILD=$2; shift ;;
    --build=*) BUILD=${1#--build=} ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    --results) [ $# -ge 2 ] || usage; RESULTS=$2; shift ;;
    --results=*) RESULTS=${1#--results=} ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
BIN=$BUILD/bin
OUT=$SRC/bench/results
BROKERS=${CLOSEDLOOP_BROKERS:-127.0.0.1:9092}
SELECTED=$ALL
if [ -n "$ONLY" ]; then
    SELECTED=
    for n in ${ONLY//,/ }; do
        case " $ALL " in *" $n "*) SELECTED="$SELECTED $n" ;; *) echo "run.sh: no benchmark '$n' (have: $ALL)" >&2; exit 2 ;; esac
    done
fi

# Scale. Full = SPEC §7 (1M); the latency bench uses a 20k-opportunity history (its
# figure is a wait, not a throughput; the history only sets the refit cycle's size).
if [ "$QUICK" = 1 ]; then
    N_AVRO=20000 N_STORE=50000 N_RAW=20000 N_SNAP=20000 N_JOIN=5000 N_METRICS=50000
    N_FIT=20000 N_REFIT=20000 LAT_OPPS=3000 LAT_SINGLES=10 LAT_N=50 TIMEOUT=600 N_OUTCOMES=5000
else
    N_AVRO=1000000 N_STORE=1000000 N_RAW=1000000 N_SNAP=1000000 N_JOIN=1000000
    N_METRICS=1000000 N_FIT=1000000 N_REFIT=1000000 LAT_OPPS=20000 LAT_SINGLES=100 LAT_N=200
    N_OUTCOMES=200000
    TIMEOUT=1800
fi
LAT_POLL_MS=500

say() { printf 'run.sh: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- build
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    say "configuring $BUILD"
    cmake -S "$SRC" -B "$BUILD" >/dev/null || { say "cmake configure failed"; exit 2; }
fi
say "building $BUILD"
cmake --build "$BUILD" -j2 >"$SRC/bench/.build.log" 2>&1 || {
    tail -30 "$SRC/bench/.build.log" >&2
    say "build failed: nothing benchmarked"
    exit 2
}
rm -f "$SRC/bench/.build.log"

# ---------------------------------------------------------------- broker
STARTED_BROKER=0
broker_up() { local hp=${BROKERS%%,*}; (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; }
if ! broker_up; then
    say "starting the broker (deploy/kafka/start.sh)"
    bash "$SRC/deploy/kafka/start.sh" >&2 || { say "could not start the broker"; exit 2; }
    STARTED_BROKER=1
fi
cleanup() {
    if [ "$STARTED_BROKER" = 1 ]; then
        say "stopping the broker this run started"
        bash "$SRC/deploy/kafka/stop.sh" >&2 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- benchmarks
mkdir -p "$OUT"
STATUS=$OUT/.status
: >"$STATUS"
SUITE_START=$(date +%s)
export CL_SOURCE_DIR=$SRC CL_BIN_DIR=$BIN CLOSEDLOOP_BROKERS=$BROKERS

# run NAME SCALE-NOTE CMD...: output to results/NAME.txt, a status line per bench.
run() {
    local name=$1 scale=$2
    shift 2
    case " $SELECTED " in *" $name "*) ;; *) return 0 ;; esac
    local start end rc
    say "== $name ($scale)"
    start=$(date +%s.%N)
    (cd "$SRC" && timeout --kill-after=30 "$TIMEOUT" "$@") >"$OUT/$name.txt" 2>&1
    rc=$?
    end=$(date +%s.%N)
    [ $rc = 124 ] && echo "run.sh: timed out after ${TIMEOUT}s" >>"$OUT/$name.txt"
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$rc" "$(echo "$end - $start" | bc)" "$scale" >>"$STATUS"
    say "   $name: exit $rc, $(printf %.0f "$(echo "$end - $start" | bc)") s"
}

# Peak RSS of a whole process: GNU time's %M (KiB) appended as a figure line.
rss() {
    local label=$1 # "name k=v ...", one argument
    shift
    local f
    f=$(mktemp)
    /usr/bin/time -f %M -o "$f" "$@"
    local rc=$?
    [ -s "$f" ] && echo "$label peak_rss_mb=$(awk '{v=$NF} END {printf "%.1f", v/1024}' "$f")"
    rm -f "$f"
    return $rc
}
export -f rss

run avro "$N_AVRO records" "$BIN/bench_avro" "$N_AVRO"
run store "$N_STORE keys" "$BIN/bench_store" "$N_STORE"
run kafka_raw "$N_RAW messages of 512 B" "$BIN/bench_kafka_raw" "$N_RAW" 512 6 "$BROKERS"
run snapshot "$N_SNAP rows" bash bench/bench_snapshot.sh "$N_SNAP" "$BUILD"
run outcomes "$N_OUTCOMES opportunities backfilled" python3 bench/bench_outcomes.py \
    --opportunities "$N_OUTCOMES" --bin-dir "$BIN"
run join "$N_JOIN opportunities" python3 bench/bench_join.py --opportunities "$N_JOIN" \
    --bin-dir "$BIN" --brokers "$BROKERS"
run metrics "$N_METRICS labeled records" bash -c \
    "rss 'metrics.process records=$N_METRICS' '$BIN/bench_metrics' $N_METRICS"
run fit "$N_FIT examples" python3 bench/bench_fit.py --bin "$BIN" --n "$N_FIT"
run refit "$N_REFIT examples" python3 bench/bench_refit.py --bin "$BIN" --n "$N_REFIT"
run latency "history of $LAT_OPPS opportunities, K=$LAT_SINGLES, N=$LAT_N, poll ${LAT_POLL_MS} ms" \
    python3 bench/bench_latency.py --bin-dir "$BIN" --brokers "$BROKERS" \
    --opportunities "$LAT_OPPS" --singles "$LAT_SINGLES" --refit-every "$LAT_N" \
    --poll-ms "$LAT_POLL_MS"

SUITE_SECONDS=$(($(date +%s) - SUITE_START))

# ---------------------------------------------------------------- report
CMDLINE="bash bench/run.sh$([ "$QUICK" = 1 ] && echo ' --quick') --build ${BUILD#"$SRC"/}$([ -n "$ONLY" ] && echo " --only $ONLY")"
python3 - "$SRC" "$OUT" "$STATUS" "$RESULTS" "$QUICK" "$BUILD" "$SUITE_SECONDS" "$CMDLINE" <<'PYEOF'
import datetime, os, platform, re, subprocess, sys

src, out, status_file, results, quick, build, suite_s, cmdline = sys.argv[1:9]
quick = quick == "1"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def parse(text):
    """Figure lines: `name k=v k=v ...` -> {name: {k: v}} (a repeated name gets a
    #2 suffix) and `name value` -> {name: value}."""
    kv, plain = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not re.match(r"^[a-z_][a-z0-9_.-]*$", parts[0]):
            continue
        if all("=" in p for p in parts[1:]):
            d = dict(p.split("=", 1) for p in parts[1:])
            name, i = parts[0], 2
            while name in kv:
                name, i = "%s#%d" % (parts[0], i), i + 1
            kv[name] = d
        elif len(parts) == 2 and "=" not in parts[1]:
            try:
                plain[parts[0]] = float(parts[1])
            except ValueError:
                plain[parts[0]] = parts[1]
    return kv, plain


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        s = "{:,.0f}".format(v)
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.3g" % v
    return s + (" " + unit if unit else "")


def ratio(a, b, digits=3):
    a, b = num(a), num(b)
    return "%.*f" % (digits, a / b) if a is not None and b else "—"


rows_of = {}


def rows_avro(kv, p):
    rows = []
    for name, d in kv.items():
        base = {"avro.encode": "avro.raw_write", "avro.decode": "avro.raw_read",
                "avro.decode_resolved": None}.get(name.split("#")[0], "-")
        if base == "-":
            continue
        b = kv.get(base, {}).get("records_per_s") if base else None
        label = "%s %s (%s B)" % (name.split("#")[0], d.get("framing", "resolved"), d.get("bytes", "?"))
        rows.append((label, fmt(num(d.get("records_per_s")), "rec/s"),
                     "%s %s" % (base, fmt(num(b), "rec/s")) if base else "—", ratio(d.get("records_per_s"), b)))
    return rows


def rows_store(kv, p):
    rows = []
    for name, d in kv.items():
        if name.startswith("store."):
            rows.append(("%s sync=%s" % (name.split("#")[0], d.get("sync")), fmt(num(d.get("ops_per_s")), "ops/s"),
                         "— (LMDB itself is the floor)", "—"))
    return rows


def rows_kafka_raw(kv, p):
    return [(n, "%s (%s MB/s)" % (fmt(num(d.get("msgs_per_s")), "msg/s"), d.get("mb_per_s")), "— (this is the baseline)", "—")
            for n, d in kv.items() if n.startswith("kafka_raw.")]


def rows_snapshot(kv, p):
    w, r = kv["snapshot.worker"], kv["snapshot.raw_produce"]
    return [("closedloop-snapshot rows/s (%s rows)" % w["rows"], fmt(num(w["rows_per_s"]), "rows/s"),
             "raw librdkafka produce of the same records %s" % fmt(num(r["msgs_per_s"]), "msg/s"),
             ratio(w["rows_per_s"], r["msgs_per_s"])),
            ("closedloop-snapshot peak RSS", fmt(num(w.get("peak_rss_mb")), "MB"), "—", "—")]


def rows_outcomes(kv, p):
    raw = kv["outcomes.raw_produce"]
    rows = []
    for mode, label in (("rest", "REST queryAll paging"), ("bulk", "Bulk API 2.0")):
        o = kv["outcomes." + mode]
        rows.append(("closedloop-outcomes backfill via %s (%s records)" % (label, o["records"]),
                     fmt(num(o["records_per_s"]), "rec/s"),
                     "raw produce of as many %s-byte records %s" % (raw["value_bytes"], fmt(num(raw["records_per_s"]), "rec/s")),
                     ratio(o["records_per_s"], raw["records_per_s"])))
    return rows


def rows_join(kv, p):
    d = kv["join"]
    return [("closedloop-join input records/s (%s in, %s B, sync=%s)" % (d["records_in"], d["value_bytes"], d["sync"]),
             fmt(num(d["records_in_per_s"]), "rec/s"),
             "raw librdkafka consume+produce %s" % fmt(num(d["kafka_raw.consume_produce_per_s"]), "msg/s"), d["ratio"]),
            ("closedloop-join labeled records/s (%s out)" % d["labeled_out"], fmt(num(d["labeled_per_s"]), "rec/s"),
             "—", "—"),
            ("closedloop-join peak RSS (%s opportunities)" % d["opportunities"], fmt(num(d["peak_rss_mb"]), "MB"),
             "—", "—")]


def rows_metrics(kv, p):
    a = kv["metrics.aggregate"]
    rows = [("aggregate records/s (%s records)" % a["records"], fmt(num(a["records_per_s"]), "rec/s"),
             "raw LMDB puts of the same rows %s" % fmt(num(a["baseline_puts_per_s"]), "puts/s"),
             ratio(a["records_per_s"], a["baseline_puts_per_s"]))]
    if "metrics.replay" in kv:
        rows.append(("replay (all duplicates) records/s", fmt(num(kv["metrics.replay"]["records_per_s"]), "rec/s"),
                     "—", "—"))
    if "metrics.evaluate" in kv:
        e = kv["metrics.evaluate"]
        rows.append(("evaluate (%s opportunities, %s versions x %s windows)" % (e.get("opportunities"), e.get("versions"),
                                                                                 e.get("windows")),
                     fmt(num(e["seconds"]), "s"), "—", "—"))
    if "metrics.render" in kv:
        rows.append(("render both reports", fmt(num(kv["metrics.render"]["seconds"]), "s"), "—", "—"))
    if "metrics.process" in kv:
        rows.append(("peak RSS (aggregator through the worker's code, offline)",
                     fmt(num(kv["metrics.process"]["peak_rss_mb"]), "MB"), "—", "—"))
    return rows


def rows_fit(kv, p):
    k = "fit.unconstrained."
    return [("closedloop-fit unconstrained, %d examples (solver time)" % p["fit.examples"],
             fmt(p[k + "closedloop_seconds"], "s"),
             "scikit-learn lbfgs default tol %s" % fmt(p[k + "sklearn_default_tol_seconds"], "s"),
             ratio(p[k + "closedloop_seconds"], p[k + "sklearn_default_tol_seconds"])),
            ("same, against scikit-learn tol=1e-10", fmt(p[k + "closedloop_seconds"], "s"),
             "scikit-learn tol=1e-10 %s" % fmt(p[k + "sklearn_tol_1e-10_seconds"], "s"),
             ratio(p[k + "closedloop_seconds"], p[k + "sklearn_tol_1e-10_seconds"])),
            ("closedloop-fit wall time incl. CSV parsing", fmt(p[k + "closedloop_wall_seconds_incl_csv"], "s"), "—", "—"),
            ("max relative coefficient difference vs scikit-learn", "%.2g" % p[k + "max_rel_coef_diff_vs_sklearn"],
             "—", "—"),
            ("closedloop-fit simplex (production) fit", fmt(p["fit.simplex.closedloop_seconds"], "s"), "—", "—"),
            ("simplex max |weight - truth|", "%.3g" % p["fit.simplex.max_abs_weight_error_vs_truth"], "—", "—")]


def rows_refit(kv, p):
    sk = p["sklearn_cycle_equivalent_seconds"]
    return [("refit cycle (load rows + fit + 2x5-fold validation), %d examples" % p["refit_examples"],
             fmt(p["refit_cycle_seconds"], "s"), "scikit-learn, same number of fits %s" % fmt(sk, "s"),
             ratio(p["refit_cycle_seconds"], sk)),
            ("of which fit + validation", fmt(p["refit_run_seconds"], "s"), "same %s" % fmt(sk, "s"),
             ratio(p["refit_run_seconds"], sk)),
            ("one fit", "—", "scikit-learn one fit %s" % fmt(p["sklearn_one_fit_seconds"], "s"), "—"),
            ("storing the examples in the training set (LMDB)", fmt(p["refit_store_seconds"], "s"), "—", "—"),
            ("validated AUC, refit vs champion", "%.4f" % p["refit_validation_auc"],
             "champion %.4f" % p["refit_champion_validation_auc"], "outcome: %s" % p.get("refit_outcome", "?")),
            ("peak RSS (refit through the worker's code)", fmt(p["refit_peak_rss_mib"], "MiB"), "—", "—")]


def rows_latency(kv, p):
    o, r = kv["latency.outcome_to_labeled"], kv["latency.kafka_raw_produce_consume"]
    n = kv["latency.nth_outcome_to_weights"]
    rows = []
    for q in ("median", "p95", "max"):
        rows.append(("outcome in Salesforce -> LabeledExample, %s (K=%s, poll %s ms)" % (q, o["n"], o["poll_ms"]),
                     fmt(num(o[q + "_ms"]), "ms"), "raw produce->consume %s" % fmt(num(r[q + "_ms"]), "ms"),
                     ratio(o[q + "_ms"], r[q + "_ms"], 0)))
    rows.append(("N-th new outcome -> next WeightConfig (N=%s, %s)" % (n["n_outcomes"], n["status"]),
                 fmt(num(n["seconds"]), "s"), "of which the refit cycle %s (%s training examples)"
                 % (fmt(num(n["refit_cycle_seconds"]), "s"), n["training_examples"]), "—"))
    return rows


TITLES = {
    "avro": ("Avro encode/decode", rows_avro),
    "store": ("LMDB store (batched put, point get)", rows_store),
    "kafka_raw": ("Raw librdkafka on this broker (the Kafka baseline)", rows_kafka_raw),
    "snapshot": ("Snapshot producer", rows_snapshot),
    "outcomes": ("Outcomes ingester backfill (test Salesforce server)", rows_outcomes),
    "join": ("Join worker throughput", rows_join),
    "metrics": ("Metrics aggregator", rows_metrics),
    "fit": ("Fit vs scikit-learn LogisticRegression", rows_fit),
    "refit": ("Refit cycle vs scikit-learn", rows_refit),
    "latency": ("End-to-end latency", rows_latency),
}

status = []
for line in open(status_file):
    name, rc, secs, scale = line.rstrip("\n").split("\t")
    status.append((name, int(rc), float(secs), scale))

meminfo = dict(l.split(":", 1) for l in open("/proc/meminfo") if ":" in l)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
broker = sh("grep -o '<kafka.version>[^<]*' %s/deploy/kafka/pom.xml | cut -d'>' -f2" % src) or \
    sh("grep -m1 -A1 '<artifactId>kafka_2' %s/deploy/kafka/pom.xml | grep -o '[0-9][0-9.]*'" % src) or "?"
commit = sh("git -C %s rev-parse --short HEAD" % src)
dirty = " (with uncommitted changes)" if sh("git -C %s status --porcelain --untracked-files=no" % src) else ""
btype = sh("grep -m1 '^CMAKE_BUILD_TYPE:' %s/CMakeCache.txt | cut -d= -f2" % build) or \
    "RelWithDebInfo (the project default)"

L = []
L.append("# closedloop benchmark results")
L.append("")
if quick:
    L.append("> **Quick smoke run, not the committed figures.** Small scale, checks that the harness")
    L.append("> works end to end; the figures below say little about the system at SPEC scale.")
    L.append("> Run `bash bench/run.sh` on a quiet machine for those.")
    L.append("")
L.append("Generated by `bench/run.sh` (see [README.md](README.md) for what each figure means).")
L.append("")
L.append("| | |")
L.append("|---|---|")
L.append("| date | %s |" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
L.append("| command | `%s` |" % cmdline)
L.append("| scale | %s |" % ("quick (smoke)" if quick else "full (SPEC §7: 1M)"))
L.append("| commit | %s%s, CMAKE_BUILD_TYPE=%s |" % (commit, dirty, btype))
L.append("| machine | %s cores (nproc), %s RAM, %s, kernel %s |" % (
    os.cpu_count(), fmt(int(meminfo["MemTotal"].split()[0]) / 1048576.0, "GiB"), cpu, platform.release()))
L.append("| librdkafka | %s |" % (sh("pkg-config --modversion rdkafka") or "?"))
L.append("| Kafka broker | %s (single node, KRaft, deploy/kafka) |" % broker)
L.append("| avro-c | %s |" % (sh("pkg-config --modversion avro-c") or "?"))
L.append("| LMDB | %s |" % (sh("pkg-config --modversion lmdb") or sh("dpkg-query -W -f '${Version}' liblmdb-dev") or "?"))
L.append("| Python / scikit-learn | %s / %s |" % (platform.python_version(),
                                                 sh("python3 -c 'import sklearn; print(sklearn.__version__)'") or "?"))
L.append("| suite elapsed | %d s |" % int(suite_s))
L.append("")
L.append("Ratio = figure / baseline, both measured in this run on this machine and broker. For")
L.append("throughputs higher is better; for times (fit, refit, latency) lower is better.")
L.append("")

L.append("## Summary")
L.append("")
L.append("| benchmark | scale | status | elapsed | raw output |")
L.append("|---|---|---|---|---|")
for name, rc, secs, scale in status:
    st = "ok" if rc == 0 else ("FAILED (timed out)" if rc == 124 else "FAILED (exit %d)" % rc)
    L.append("| %s | %s | %s | %.0f s | [results/%s.txt](results/%s.txt) |" % (name, scale, st, secs, name, name))
L.append("")

rss_rows = []
for name, rc, secs, scale in status:
    title, fn = TITLES[name]
    L.append("## %s" % title)
    L.append("")
    text = open(os.path.join(out, name + ".txt"), errors="replace").read()
    rows, error = None, None
    if rc == 0:
        try:
            kv, plain = parse(text)
            rows = fn(kv, plain)
            if not rows:
                error = "no figure lines in the output"
        except (KeyError, TypeError, ValueError) as e:
            error = "figure missing from the output: %r" % (e,)
    else:
        error = "exit status %d%s" % (rc, " (timed out)" if rc == 124 else "")
    L.append("Scale: %s. Elapsed: %.0f s." % (scale, secs))
    L.append("")
    if error:
        L.append("**FAILED**: %s. End of its output:" % error)
        L.append("")
        L.append("```")
        L.extend(text.strip().splitlines()[-15:])
        L.append("```")
        L.append("")
        continue
    L.append("| figure | value | baseline (same run) | ratio |")
    L.append("|---|---|---|---|")
    for r in rows:
        L.append("| %s |" % " | ".join(c.replace("|", "\\|") for c in r))
        if "peak RSS" in r[0]:
            rss_rows.append((name, scale, r[1]))
    L.append("")

L.append("## Peak RSS of each worker")
L.append("")
L.append("| worker | scale | peak RSS |")
L.append("|---|---|---|")
for name, scale, v in rss_rows:
    L.append("| %s | %s | %s |" % (name, scale, v))
L.append("")
L.append("join and snapshot: the worker process itself (getrusage of the child / GNU time);")
L.append("metrics and refit: the bench process driving the worker's own code (aggregation,")
L.append("training set load and refit cycle), since their input at 1M is generated in-process.")
L.append("Peak RSS counts every resident page, including those of LMDB's memory map: the join")
L.append("state of 1M opportunities (every kept snapshot) lives in a memory-mapped file, and the")
L.append("pages the kernel keeps resident are file-backed and reclaimable, not heap.")
L.append("")

with open(results, "w") as f:
    f.write("\n".join(L))
print("run.sh: wrote %s" % results, file=sys.stderr)
PYEOF

FAILED=$(awk -F'\t' '$2 != 0 {print $1}' "$STATUS" | tr '\n' ' ')
rm -f "$STATUS"
if [ -n "$FAILED" ]; then
    say "FAILED: $FAILED(see bench/results/<name>.txt)"
    exit 1
fi
say "all benchmarks done in ${SUITE_SECONDS}s"
exit 0
