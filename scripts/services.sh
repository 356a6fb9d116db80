# shellcheck shell=bash
# Makes sure a PostgreSQL server and a Redis server are reachable for the tests, and exports
#   VEXIL_TEST_DATABASE_URL  admin URL of a PostgreSQL server where tests may CREATE DATABASE
#   VEXIL_TEST_REDIS_URL     URL of a Redis server the tests share
# It is meant to be SOURCED (by scripts/test.sh): `source scripts/services.sh`.
#
# - A variable that is already set is kept as it is.
# - A server already answering on 127.0.0.1 (PostgreSQL 5432 as user postgres, Redis 6379) is reused.
# - Otherwise the server is installed with apt-get if missing, and a private instance is started
#   under target/test-services/ on a free loopback port. A private PostgreSQL data directory left
#   by an earlier run is reused.
# - The `redis-server` binary is installed even when a shared Redis answers: tests start their own.
# - `vexil_stop_test_services` stops what this script started, and nothing else; it runs on EXIT
#   (after any EXIT trap the caller had already set). Several runs in this checkout at once share
#   the private PostgreSQL: each holds a lease (target/test-services/pg.users/<shell pid>), and the
#   last one out stops it. Each run has its own private Redis.
#
# Settings, for CI and for testing this script:
#   VEXIL_TEST_PG_PORT     port of the shared PostgreSQL to look for (default 5432)
#   VEXIL_TEST_REDIS_PORT  port of the shared Redis to look for (default 6379)
#   VEXIL_TEST_SERVICES_DIR  where private instances live (default <target dir>/test-services)
#
# Works with or without `set -euo pipefail` in the caller: every command that may fail is checked.

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "services.sh must be sourced: source ${BASH_SOURCE[0]}" >&2
  exit 2
fi

# What this script started, for vexil_stop_test_services (empty: nothing): the private Redis's PID,
# the data directory of the private PostgreSQL this shell holds a lease on, the lock file.
_VEXIL_REDIS_PID=${_VEXIL_REDIS_PID-}
_VEXIL_REDIS_WATCHDOG_PID=${_VEXIL_REDIS_WATCHDOG_PID-}
_VEXIL_PG_DATA_LEASED=${_VEXIL_PG_DATA_LEASED-}
_VEXIL_SERVICES_LOCK=${_VEXIL_SERVICES_LOCK-}
_VEXIL_APT_UPDATED=${_VEXIL_APT_UPDATED-}
# Results of the _start_private functions (globals: their callers must not run them in a subshell):
# the port, and whether the server was started rather than found running.
_vexil_port=
_vexil_started=

_vexil_log() { echo "==> $*"; }
_vexil_warn() { echo "==> services.sh: $*" >&2; }

# Runs apt-get install for the given packages, with one `apt-get update` per shell.
_vexil_apt_install() {
  if [[ $EUID -ne 0 ]]; then
    _vexil_warn "cannot install $* without root; install it, or set the VEXIL_TEST_* URLs"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _vexil_warn "no apt-get to install $*; install it, or set the VEXIL_TEST_* URLs"
    return 1
  fi
  # 9>&-: daemons the packages start must not inherit the lock held while this script runs.
  _vexil_log "installing $* (apt-get)"
  if [[ -z $_VEXIL_APT_UPDATED ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq 9>&- || return 1
    _VEXIL_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" 9>&- || return 1
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
_vexil_port_in_use() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Prints the first port from $1 upwards that nothing listens on (a candidate: a server started on it
# may still lose a race, so callers retry).
_vexil_free_port() {
  local port=$1
  while _vexil_port_in_use "$port"; do
    port=$((port + 1))
  done
  echo "$port"
}

_vexil_target_dir() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return 1
  echo "${CARGO_TARGET_DIR:-$root/target}"
}

# ---------------------------------------------------------------------------------------------- #
# PostgreSQL

# Whether a PostgreSQL server on 127.0.0.1:$1 lets user postgres in without a password.
_vexil_pg_answers() {
  local port=$1
  if command -v psql >/dev/null 2>&1; then
    [[ $(PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtqc 'select 1' \
      2>/dev/null) == 1 ]]
  elif command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -t 3
  else
    _vexil_port_in_use "$port"
  fi
}

# Prints the directory holding initdb, pg_ctl and postgres (newest installed version), if any.
_vexil_pg_bindir() {
  local dir
  while IFS= read -r dir; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      echo "$dir"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  return 1
}

# Runs a command as the owner of the private cluster: PostgreSQL refuses to run as root.
_vexil_as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Starts the private PostgreSQL in $1, or finds it running for another run; sets _vexil_port and
# _vexil_started. The caller holds the lock and takes a lease.
_vexil_pg_start_private() {
  local data=$1 bindir port
  bindir=$(_vexil_pg_bindir) || return 1

  if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres || return 1
  fi

  # A data directory from another PostgreSQL version, or from an interrupted initdb, is test data:
  # start afresh.
  if [[ -d $data && $(cat "$data/PG_VERSION" 2>/dev/null) != "$("$bindir/postgres" -V | sed -E 's/^[^0-9]*([0-9]+).*/\1/')" ]]; then
    _vexil_warn "discarding unusable data directory $data"
    rm -rf "$data" || return 1
  fi

  if [[ ! -d $data ]]; then
    mkdir -p "$data" || return 1
    [[ $EUID -ne 0 ]] || chown postgres:postgres "$data" || return 1
    chmod 700 "$data" || return 1
    _vexil_as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C \
      >"$data.initdb.log" 2>&1 || {
      _vexil_warn "initdb failed, see $data.initdb.log"
      return 1
    }
    # Test data only: durability is not worth the fsyncs.
    cat >>"$data/postgresql.conf" <<EOF || return 1

# vexil: a private test server, reachable on the loopback interface only.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi

  # Running for another run of this script (or left behind by one that was killed): share it.
  if _vexil_as_pg "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
    if [[ -n $port ]] && _vexil_pg_answers "$port"; then
      _vexil_port=$port
      _vexil_started=
      return 0
    fi
    _vexil_warn "the private PostgreSQL in $data runs but does not answer"
    return 1
  fi

  port=55432
  for _ in 1 2 3 4 5; do
    port=$(_vexil_free_port "$port")
    # pg_ctl -w waits, with a deadline (-t), until the server accepts connections or has failed.
    # 9>&-: the server must not inherit the lock held while this script sets things up.
    if _vexil_as_pg "$bindir/pg_ctl" start -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -k '$data'" >/dev/null 2>&1 9>&- &&
      _vexil_pg_answers "$port"; then
      _vexil_port=$port
      _vexil_started=1
      return 0
    fi
    _vexil_as_pg "$bindir/pg_ctl" stop -D "$data" -m immediate >/dev/null 2>&1 || true
    port=$((port + 1))
  done
  _vexil_warn "the private PostgreSQL did not start, see $data/server.log"
  return 1
}

_vexil_ensure_postgres() {
  if [[ -n ${VEXIL_TEST_DATABASE_URL:-} ]]; then
    _vexil_log "PostgreSQL: using VEXIL_TEST_DATABASE_URL from the environment"
    export VEXIL_TEST_DATABASE_URL
    return 0
  fi

  local shared_port=${VEXIL_TEST_PG_PORT:-5432} data port
  if _vexil_pg_answers "$shared_port"; then
    export VEXIL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$shared_port/postgres"
    _vexil_log "PostgreSQL: reusing the server on 127.0.0.1:$shared_port"
    return 0
  fi

  if ! _vexil_pg_bindir >/dev/null; then
    _vexil_apt_install postgresql || return 1
    # The Debian package may have started its own cluster on 5432.
    if _vexil_pg_answers "$shared_port"; then
      export VEXIL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$shared_port/postgres"
      _vexil_log "PostgreSQL: reusing the server the package started on 127.0.0.1:$shared_port"
      return 0
    fi
  fi

  data="$_VEXIL_SERVICES_DIR/pg"
  _vexil_pg_start_private "$data" || return 1
  port=$_vexil_port
  mkdir -p "$data.users" && : >"$data.users/$$" || return 1
  _VEXIL_PG_DATA_LEASED=$data
  export VEXIL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  if [[ -n $_vexil_started ]]; then
    _vexil_log "PostgreSQL: started a private server on 127.0.0.1:$port ($data)"
  else
    _vexil_log "PostgreSQL: sharing the private server already running on 127.0.0.1:$port ($data)"
  fi
}

# ---------------------------------------------------------------------------------------------- #
# Redis

# Whether a Redis server on 127.0.0.1:$1 answers PING.
_vexil_redis_answers() {
  local reply
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) || return 1
  else
    # shellcheck disable=SC2016
    reply=$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && printf "PING\r\n" >&3 && head -n1 <&3' _ "$1" \
      2>/dev/null) || return 1
    reply=${reply#+}
  fi
  [[ ${reply%$'\r'} == PONG ]]
}

# Starts a private redis-server with its files in $1; sets _vexil_port to its port. Not to be called
# in a subshell: the server must be a child of this shell, and its PID kept in _VEXIL_REDIS_PID.
_vexil_redis_start_private() {
  local dir=$1 port=56379 pid deadline
  mkdir -p "$dir" || return 1
  for _ in 1 2 3 4 5; do
    port=$(_vexil_free_port "$port")
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --dir "$dir" --logfile "$dir/redis.log" </dev/null >>"$dir/output.log" 2>&1 9>&- &
    pid=$!
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      if _vexil_redis_answers "$port"; then
        _VEXIL_REDIS_PID=$pid
        _vexil_port=$port
        # The EXIT trap cannot run if this shell is SIGKILLed (a CI timeout): then the server is
        # orphaned, and this watchdog stops it within a second. (Field 4 of stat is the parent.)
        (
          stat=()
          while read -r -a stat <"/proc/$pid/stat" && [[ ${stat[3]} == "$$" ]]; do
            sleep 1
          done
          if [[ -n ${stat[3]-} && ${stat[3]} != "$$" ]]; then
            kill "$pid"
          fi
        ) </dev/null >/dev/null 2>&1 9>&- &
        _VEXIL_REDIS_WATCHDOG_PID=$!
        return 0
      fi
      sleep 0.05
    done
    # It exited (most likely the port was taken after all) or never answered: try the next port.
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    port=$((port + 1))
  done
  _vexil_warn "the private Redis did not start, see $dir/redis.log"
  return 1
}

_vexil_ensure_redis() {
  local shared_port=${VEXIL_TEST_REDIS_PORT:-6379} port dir

  # Tests spawn their own redis-server (RedisServer, RedisCluster) whatever the shared server is.
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    _vexil_apt_install redis-server redis-tools || return 1
  fi

  if [[ -n ${VEXIL_TEST_REDIS_URL:-} ]]; then
    _vexil_log "Redis: using VEXIL_TEST_REDIS_URL from the environment"
    export VEXIL_TEST_REDIS_URL
    return 0
  fi

  if _vexil_redis_answers "$shared_port"; then
    export VEXIL_TEST_REDIS_URL="redis://127.0.0.1:$shared_port"
    _vexil_log "Redis: reusing the server on 127.0.0.1:$shared_port"
    return 0
  fi

  dir="$_VEXIL_SERVICES_DIR/redis"
  _vexil_redis_start_private "$dir" || return 1
  port=$_vexil_port
  export VEXIL_TEST_REDIS_URL="redis://127.0.0.1:$port"
  _vexil_log "Redis: started a private server on 127.0.0.1:$port (pid $_VEXIL_REDIS_PID, $dir)"
}

# ---------------------------------------------------------------------------------------------- #
# Cleanup

# Stops what this script started (the private Redis by PID; the private PostgreSQL with pg_ctl on
# its data directory, once no other live run holds a lease on it), and nothing else. Safe to call
# twice.
vexil_stop_test_services() {
  local pid=${_VEXIL_REDIS_PID-} watchdog=${_VEXIL_REDIS_WATCHDOG_PID-}
  local data=${_VEXIL_PG_DATA_LEASED-} lock=${_VEXIL_SERVICES_LOCK-}
  local deadline bindir lease others=0
  if [[ -n $pid ]]; then
    _VEXIL_REDIS_PID=
    _VEXIL_REDIS_WATCHDOG_PID=
    if [[ -n $watchdog ]]; then
      kill "$watchdog" 2>/dev/null || true
      wait "$watchdog" 2>/dev/null || true
    fi
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset VEXIL_TEST_REDIS_URL
    _vexil_log "Redis: stopped the private server (pid $pid)"
  fi
  if [[ -n $data ]]; then
    _VEXIL_PG_DATA_LEASED=
    unset VEXIL_TEST_DATABASE_URL
    {
      # Under the lock, so that no run starts sharing the server while it is being stopped.
      [[ -z $lock ]] || ! command -v flock >/dev/null 2>&1 || flock -w 120 9 || true
      rm -f "$data.users/$$"
      for lease in "$data.users"/*; do
        [[ -e $lease ]] || continue
        if [[ -d /proc/${lease##*/} ]]; then
          others=$((others + 1))
        else
          rm -f "$lease" # its run was killed before it could clean up
        fi
      done
      if ((others > 0)); then
        _vexil_log "PostgreSQL: left the private server running for $others other run(s)"
      elif bindir=$(_vexil_pg_bindir) &&
        _vexil_as_pg "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null 2>&1 9>&-; then
        _vexil_log "PostgreSQL: stopped the private server ($data)"
      else
        _vexil_warn "could not stop the private PostgreSQL in $data"
      fi
    } 9>"${lock:-/dev/null}"
  fi
  return 0
}

# Installs vexil_stop_test_services as (part of) the EXIT trap, once per shell, after any EXIT trap
# already set.
_vexil_install_exit_trap() {
  [[ -z ${_VEXIL_EXIT_TRAP_INSTALLED-} ]] || return 0
  local existing
  local -a words
  existing=$(trap -p EXIT)
  if [[ -n $existing ]]; then
    # `trap -p` prints `trap -- 'command' EXIT`, quoted for eval.
    eval "words=($existing)"
    trap -- "${words[2]}"$'\n'"vexil_stop_test_services" EXIT
  else
    trap -- vexil_stop_test_services EXIT
  fi
  _VEXIL_EXIT_TRAP_INSTALLED=1
}

_vexil_services_main() {
  local status=0
  _VEXIL_SERVICES_DIR=${VEXIL_TEST_SERVICES_DIR:-$(_vexil_target_dir)/test-services}
  mkdir -p "$_VEXIL_SERVICES_DIR" || return 1
  _VEXIL_SERVICES_LOCK=$_VEXIL_SERVICES_DIR/.lock
  _vexil_install_exit_trap
  {
    # Runs in this checkout at once must not both initdb, or start and stop, the same server.
    if command -v flock >/dev/null 2>&1; then
      flock -w 300 9 || _vexil_warn "could not lock $_VEXIL_SERVICES_LOCK; going on without it"
    fi
    _vexil_ensure_postgres || status=1
    _vexil_ensure_redis || status=1
  } 9>"$_VEXIL_SERVICES_LOCK"
  return "$status"
}

_vexil_services_main || {
  _vexil_warn "test services are not available"
  return 1
}
