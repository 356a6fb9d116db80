# shellcheck shell=bash
# Installs the real SSE clients that services/streaming's tests drive (the npm `eventsource` package,
# pinned in services/streaming/tests/clients/package-lock.json) and exports
#   VEXIL_TEST_SSE_CLIENTS  the directory holding sse_client.mjs and its node_modules
# It is meant to be SOURCED (by scripts/test.sh): `source scripts/sse-clients.sh`.
#
# - Idempotent and fast once installed: `npm ci` runs only when node_modules is missing or older than
#   the lock file.
# - Node.js 20 or newer is required; it is installed with apt-get (nodejs, npm) when missing.
# - Without it the streaming tests fail (they do not skip): the variable is left unset.
# Works with or without `set -euo pipefail` in the caller.

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "sse-clients.sh must be sourced: source ${BASH_SOURCE[0]}" >&2
  exit 2
fi

_vexil_sse_clients() {
  local dir
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../services/streaming/tests/clients" && pwd) || return 1

  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "==> installing nodejs and npm (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm || return 1
    else
      echo "==> sse-clients.sh: node and npm are needed for the streaming tests; install Node.js 20+" >&2
      return 1
    fi
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || return 1
  if ((major < 20)); then
    echo "==> sse-clients.sh: Node.js $(node --version) is too old for the eventsource package; 20+ is needed" >&2
    return 1
  fi

  if [[ ! -d $dir/node_modules/eventsource || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    echo "==> installing the SSE test clients (npm ci in ${dir#"$PWD"/})"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  fi
  export VEXIL_TEST_SSE_CLIENTS="$dir"
}

_vexil_sse_clients || echo "==> sse-clients.sh: the SSE test clients are not installed; the streaming tests will fail" >&2
