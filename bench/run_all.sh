#!/usr/bin/env bash
# Run every lagmon benchmark once, from the repo root:   bench/run_all.sh
#
# One private Kafka broker (127.0.0.1:39092, work dir ${TMPDIR:-/tmp}/lagmon-bench/kafka-39092)
# serves the two Kafka benchmarks and is stopped before the two that need no Kafka, so that it
# does not compete for the CPU. A broker already running from that work directory is reused
# and left running. Each benchmark's output is also saved to $OUT (default
# ${TMPDIR:-/tmp}/lagmon-bench/results). About 30 minutes on 2 cores (bench.million alone takes about 12).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/lagmon-bench/results}
mkdir -p "$OUT"

started_broker=0
stop_broker() {
  if [ "$started_broker" = 1 ]; then
    "$PY" -m bench.common stop || true
    started_broker=0
  fi
}
trap stop_broker EXIT

if "$PY" -m bench.common status >/dev/null 2>&1; then
  echo "run_all: reusing the broker on 127.0.0.1:39092"
else
  "$PY" -m bench.common start >/dev/null
  started_broker=1
fi
BOOTSTRAP=127.0.0.1:39092

run() {  # run NAME ARGS...: one benchmark, its output shown and saved
  local name=$1; shift
  echo
  echo "=== $name ($(date -u +%H:%M:%S) UTC)"
  local t0=$SECONDS rc
  set +e
  "$PY" -m "bench.$name" "$@" 2>&1 | grep --line-buffered -v '^%[0-9]|' | tee "$OUT/$name.txt"
  rc=${PIPESTATUS[0]}
  set -e
  echo "=== $name took $((SECONDS - t0)) s (exit $rc)"
  [ "$rc" = 0 ] || failed="$failed $name"
}
failed=""

run accuracy --bootstrap "$BOOTSTRAP"
run sampler_cost --bootstrap "$BOOTSTRAP"
run footprint --bootstrap "$BOOTSTRAP"
stop_broker
run reporter_cost
run week
run million
echo
echo "run_all: results in $OUT"
if [ -n "$failed" ]; then echo "run_all: failed:$failed"; exit 1; fi
