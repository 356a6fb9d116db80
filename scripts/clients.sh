# shellcheck shell=bash
# Installs the real OpenFeature OFREP providers that the evaluation service's tests drive
# (services/evaluation/tests/api/providers.rs), and exports
#   VEXIL_TEST_PYTHON        a Python with PyPI's openfeature-provider-ofrep and openfeature-sdk
#   VEXIL_TEST_NODE_CLIENTS  services/evaluation/tests/clients, with npm's @openfeature/ofrep-provider,
#                            @openfeature/ofrep-web-provider and their SDKs installed
# It is meant to be SOURCED (by scripts/test.sh): `source scripts/clients.sh`.
#
# - Python: a venv at <target dir>/test-clients/venv with tests/clients/requirements.txt (pinned).
# - Node: `npm ci` in services/evaluation/tests/clients, from its package-lock.json (pinned).
# - Idempotent and fast when nothing changed: each part is redone only when its pins changed (a copy of
#   what was installed is kept beside it) or the install is missing. python3/node/npm are installed
#   with apt-get when missing.
# - A variable that is already set is kept as it is (point it at your own install).
#
# Works with or without `set -euo pipefail` in the caller: every command that may fail is checked.
# The tests fail (they do not skip) when the variables are missing.

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "clients.sh must be sourced: source ${BASH_SOURCE[0]}" >&2
  exit 2
fi

_vexil_clients_log() { echo "==> $*"; }
_vexil_clients_warn() { echo "==> clients.sh: $*" >&2; }

# Installs Debian packages, with one `apt-get update` per shell.
_vexil_clients_apt() {
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    _vexil_clients_warn "cannot install $* (need root and apt-get); install it yourself"
    return 1
  fi
  _vexil_clients_log "installing $* (apt-get)"
  if [[ -z ${_VEXIL_CLIENTS_APT_UPDATED-} ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    _VEXIL_CLIENTS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || return 1
}

_vexil_clients_python() {
  local root=$1 target=$2
  local requirements=$root/services/evaluation/tests/clients/requirements.txt
  local venv=$target/test-clients/venv
  if [[ -n ${VEXIL_TEST_PYTHON-} ]]; then
    return 0
  fi
  if [[ -x $venv/bin/python ]] && cmp -s "$requirements" "$venv/.vexil-requirements.txt"; then
    export VEXIL_TEST_PYTHON=$venv/bin/python
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    _vexil_clients_apt python3 python3-venv || return 1
  fi
  _vexil_clients_log "installing the Python OFREP provider in $venv"
  rm -rf "$venv" || return 1
  mkdir -p "$(dirname "$venv")" || return 1
  python3 -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" || {
    _vexil_clients_warn "pip install failed"
    return 1
  }
  cp "$requirements" "$venv/.vexil-requirements.txt" || return 1
  export VEXIL_TEST_PYTHON=$venv/bin/python
}

_vexil_clients_node() {
  local root=$1
  local clients=$root/services/evaluation/tests/clients
  if [[ -n ${VEXIL_TEST_NODE_CLIENTS-} ]]; then
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    _vexil_clients_apt nodejs npm || return 1
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || major=0
  if ((major < 20)); then
    _vexil_clients_warn "node $(node --version 2>/dev/null) is too old: the providers need Node 20 or newer (global fetch)"
    return 1
  fi
  # npm ci keeps a copy of the lock file it installed from; the same content means nothing to do.
  if ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.vexil-package-lock.json"; then
    _vexil_clients_log "installing the npm OFREP providers in $clients"
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error) || {
      _vexil_clients_warn "npm ci failed"
      return 1
    }
    cp "$clients/package-lock.json" "$clients/node_modules/.vexil-package-lock.json" || return 1
  fi
  export VEXIL_TEST_NODE_CLIENTS=$clients
}

_vexil_clients_main() {
  local root target status=0
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return 1
  target=${CARGO_TARGET_DIR:-$root/target}
  _vexil_clients_python "$root" "$target" || status=1
  _vexil_clients_node "$root" || status=1
  return "$status"
}

_vexil_clients_main || {
  _vexil_clients_warn "the OFREP test clients are not installed; the provider tests will fail"
  return 1
}
