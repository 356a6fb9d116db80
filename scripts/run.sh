#!/usr/bin/env bash
# `make run`: Vexil standalone on http://127.0.0.1:8080 (SQLite in ./data, no other service needed).
# The first start prints a management token and each environment's SDK keys, once.
# Extra arguments go to `vexil standalone` (e.g. `make run ARGS="--port 9090"`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p vexil -- standalone "$@"
