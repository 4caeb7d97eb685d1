#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time.
#   fuzz/run.sh BUILD_DIR SECONDS
# Each target fuzz_<name> starts from the committed seed corpus fuzz/corpus/<name>/
# (copied, so the tree stays clean). Exits non-zero if any target finds a crash, a leak
# or a timeout, and prints the executions it ran.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS}
seconds=${2:-20}
shopt -s nullglob
targets=("$build"/bin/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz/run.sh: no fuzz targets in $build/bin (was it configured with -DCL_FUZZ=ON and clang?)" >&2
  exit 1
fi
status=0
for t in "${targets[@]}"; do
  name=$(basename "$t"); name=${name#fuzz_}
  work=$(mktemp -d)
  if [ -d "$root/fuzz/corpus/$name" ]; then cp -r "$root/fuzz/corpus/$name/." "$work/"; fi
  log=$(mktemp)
  if "$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/crash-" \
       "$work" >"$log" 2>&1; then
    echo "fuzz $name: ok ($(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#') executions in ${seconds}s, crashes 0)"
  else
    echo "fuzz $name: FAILED — last lines:"; tail -40 "$log"
    status=1
  fi
  rm -rf "$work" "$log"
done
exit $status
