#!/usr/bin/env bash
# Data-plane load benchmark (BENCHMARKS.md, "Evaluation service"): a release `vexil control-api` and
# `vexil evaluation` on PostgreSQL and a private Redis, 200 flags in one environment, then wrk -c64
# against POST /v1/evaluate (all 200 flags, a different context per request) and GET /v1/flags with
# the current ETag (304). Reports requests/s, latency and the evaluation process's CPU per request.
#
#   bench/dataplane.sh [seconds per run, default 20] [connections, default 64]
#
# Needs wrk (apt-get install wrk), PostgreSQL on 127.0.0.1:5432 (trust, user postgres), redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-20}
CONNECTIONS=${2:-64}
API_PORT=18480 EVAL_PORT=18481 REDIS_PORT=18482
DB=vexil_bench_dataplane
TOKEN=vxm_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
# VEXIL_BIN: an already built binary to measure instead of building one.
if [ -z "${VEXIL_BIN:-}" ]; then cargo build --release -q -p vexil; fi
BIN=${VEXIL_BIN:-target/release/vexil}
LOGS=$(mktemp -d)

redis-server --port $REDIS_PORT --save "" --appendonly no >"$LOGS/redis.log" 2>&1 &
PIDS+=($!)
psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $DB" -c "create database $DB" >/dev/null

export VEXIL__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export VEXIL__BUS__URL=redis://127.0.0.1:$REDIS_PORT
export VEXIL__LOG__LEVEL=warn VEXIL_BOOTSTRAP_TOKEN=$TOKEN
# The per-key rate limit stays on (its cost is part of each request) but far above what one machine sends.
export VEXIL__DATAPLANE__RATE_LIMIT_PER_SECOND=100000000

wait_ready() {
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never became ready; logs in $LOGS" >&2
  exit 1
}

$BIN migrate >"$LOGS/migrate.log" 2>&1
VEXIL__SERVER__PORT=$API_PORT $BIN control-api >"$LOGS/control-api.log" 2>&1 &
PIDS+=($!)
wait_ready $API_PORT
SERVER_KEY=$(python3 bench/setup_flags.py "http://127.0.0.1:$API_PORT/api/v1" "$TOKEN")
export SERVER_KEY

VEXIL__SERVER__PORT=$EVAL_PORT $BIN evaluation >"$LOGS/evaluation.log" 2>&1 &
EVAL_PID=$!
PIDS+=($EVAL_PID)
wait_ready $EVAL_PORT
# Wait until the replica has the 200 flags (the key rotation is the last change).
for _ in $(seq 1 100); do
  COUNT=$(curl -s "http://127.0.0.1:$EVAL_PORT/v1/flags" -H "Authorization: Bearer $SERVER_KEY" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("flags", [])))' 2>/dev/null || echo 0)
  [ "$COUNT" = 200 ] && break
  sleep 0.2
done
[ "$COUNT" = 200 ] || { echo "the evaluation replica has $COUNT flags, not 200" >&2; exit 1; }
ETAG=$(curl -s -D - -o /dev/null "http://127.0.0.1:$EVAL_PORT/v1/flags" -H "Authorization: Bearer $SERVER_KEY" \
  | tr -d '\r' | awk 'tolower($1) == "etag:" {print $2}')
export ETAG
echo "evaluate response: $(curl -s -X POST "http://127.0.0.1:$EVAL_PORT/v1/evaluate" -H "Authorization: Bearer $SERVER_KEY" \
  -H 'Content-Type: application/json' -d '{"context":{"targetingKey":"user-1","country":"DE"}}' | wc -c) bytes"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$EVAL_PID/stat"; }
run() {
  local name=$1 script=$2 path=$3
  local before after out requests
  before=$(cpu_ticks)
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s "bench/$script" "http://127.0.0.1:$EVAL_PORT$path")
  after=$(cpu_ticks)
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "== $name"
  echo "$out" | grep -E "Requests/sec|requests in|p50|Socket errors" || true
  awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "server CPU: %.1f s, %.1f us per request\n", t / hz, t / hz / n * 1e6 }'
}

run "POST /v1/evaluate, 200 flags, a new context per request" evaluate.lua /v1/evaluate
run "GET /v1/flags with If-None-Match (304)" flags304.lua /v1/flags
psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $DB" >/dev/null 2>&1 || true
