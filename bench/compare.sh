#!/usr/bin/env bash
# Before/after: runs the service benchmarks of BENCHMARKS.md for two release builds, alternating them
# so that both see the same machine (BENCHMARKS.md, "Before and after the structure change").
#
#   bench/compare.sh <before target/release dir> <after target/release dir> [rounds, default 2]
#
# Each directory needs `vexil` and the examples `update_throughput`, `idle_streams` and `propagation`
# (`cargo build --release -p vexil -p vexil-streaming -p vexil-control-api --bins --examples`; for an
# older commit, in a `git worktree` with its own CARGO_TARGET_DIR). Needs what bench/dataplane.sh needs.
set -uo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1 AFTER=$2 ROUNDS=${3:-2}
ulimit -n 20000
for round in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    T=$BEFORE; [ $side = after ] && T=$AFTER
    echo "=== round $round, $side ($T), $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
    "$T/examples/update_throughput" --seconds 10 --concurrency 64 --flags 100 2>&1 \
      | grep -E '^(updates|latency|errors|relay|audit)'
    VEXIL_BIN=$T/vexil bench/dataplane.sh 20 64 2>&1 | grep -E '^==|Requests/sec|p50|server CPU'
    "$T/examples/idle_streams" 10000 2>&1 | tail -1
    "$T/examples/propagation" --vexil "$T/vexil" --clients 1000 --changes 50 2>&1 \
      | grep -E 'every delivery|last client|CPU per delivery'
  done
done
