#!/usr/bin/env bash
# The test command (`make test`): formatting, lints, then every test with nextest.
# Installs what it needs when it is missing, and reuses it when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> no import loops between modules"
# The store is the exception for now: its root defines `Store` and every module adds an `impl Store`.
python3 scripts/module-cycles.py $(ls -d libs/*/src services/*/src | grep -v '^libs/store/')

# PostgreSQL and Redis for the integration tests: reused when running, started privately (and
# installed, if missing) when not, and stopped again on exit.
# shellcheck source=scripts/services.sh
source scripts/services.sh
# Real client libraries the data-plane tests drive: the OpenFeature OFREP providers (PyPI, npm) and
# the npm `eventsource` package. Installed under target/ and services/*/tests/clients when missing.
# shellcheck source=scripts/clients.sh
source scripts/clients.sh
# shellcheck source=scripts/sse-clients.sh
source scripts/sse-clients.sh

# nextest does not run doc tests (they hold the examples in the crate docs); run them first so that
# nextest's summary is the last thing printed.
echo "==> doc tests"
cargo test --workspace --doc

echo "==> cargo nextest run"
cargo nextest run --workspace --no-fail-fast
