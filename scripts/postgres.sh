#!/usr/bin/env bash
# A private PostgreSQL for a Prefect server, kept in one folder: `scripts/postgres.sh start DIR` creates the cluster
# on first use (DIR/data), starts it on a free port of 127.0.0.1 with its unix socket in DIR/socket, makes sure the
# role and database `prefect` exist, and prints the server's PREFECT_API_DATABASE_CONNECTION_URL on stdout (and
# nothing else there); `stop DIR` stops it; `bin` prints the folder of the server binaries, or fails saying how to
# install them. Used by scripts/stack.sh (DB=postgres, DIR=data/stack/postgres) and by tests/test_deployments.py.
#
# PostgreSQL refuses to run as root. Run as root (CI, containers), the cluster belongs to the system user
# `postgres` (which Debian's postgresql package creates; created here if missing) and every server command runs
# through `runuser -u postgres`; anyone else runs it as themselves.
set -euo pipefail

PG_USER_AS_ROOT="${TUNEFLOW_PG_USER:-postgres}"
START_TIMEOUT_S="${PG_START_TIMEOUT_S:-60}"
INSTALL_HINT="install Debian's package (as root): apt-get update && apt-get install -y postgresql;"
INSTALL_HINT+=" or set PG_BIN to the folder holding initdb, pg_ctl and postgres"

die() { echo "postgres: $*" >&2; exit 1; }
say() { echo "postgres: $*" >&2; }

# Debian keeps the server binaries out of PATH, one folder per major version: take the newest, else PATH's.
find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/initdb" ]] || die "PG_BIN=$PG_BIN holds no initdb and pg_ctl; $INSTALL_HINT"
    echo "$PG_BIN"
    return
  fi
  local versions=(/usr/lib/postgresql/*/bin) dir  # the pattern itself when nothing matches: no pg_ctl in it
  dir="$(printf '%s\n' "${versions[@]}" | sort -V | tail -n 1)"
  if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  die "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; $INSTALL_HINT"
}

pg_user() {
  if [[ "$(id -u)" == 0 ]]; then echo "$PG_USER_AS_ROOT"; else id -un; fi
}

# Run a server command as the cluster's owner, from / (its home may be unreadable to that user).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u "$PG_USER_AS_ROOT" -- "$@")
  else
    "$@"
  fi
}

ensure_owner_exists() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u "$PG_USER_AS_ROOT" >/dev/null 2>&1 && return 0
  say "creating the system user $PG_USER_AS_ROOT to own the cluster (PostgreSQL refuses to run as root)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "$PG_USER_AS_ROOT" \
    || die "could not create the system user $PG_USER_AS_ROOT; create it, or set TUNEFLOW_PG_USER to another" \
      "unprivileged user"
}

free_port() {
  "${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [[ -f "$1/data/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

psql_admin() {
  local dir="$1"; shift
  as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$(cat "$dir/port")" -d postgres "$@"
}

url_of() {
  echo "postgresql+asyncpg://prefect:$(cat "$1/password")@127.0.0.1:$(cat "$1/port")/prefect"
}

start() {
  local dir="$1"
  BIN="$(find_bin)"
  ensure_owner_exists
  local owner; owner="$(pg_user)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if running "$dir"; then
    say "already running on 127.0.0.1:$(cat "$dir/port") (data in $dir/data)"
    url_of "$dir"
    return
  fi
  mkdir -p "$dir/socket"
  chown "$owner" "$dir" "$dir/socket"
  chmod 700 "$dir/socket"  # only the owner (and root) may use the socket, where local connections need no password
  as_owner test -w "$dir" \
    || die "the user $owner cannot write to $dir: a folder above it is not searchable by others" \
      "(chmod o+x it), or use a DIR elsewhere"

  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    say "creating a cluster in $dir/data ($("$BIN/postgres" --version), owner $owner)"
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/password")
    # Local (socket) connections: the owner, by peer; TCP: passwords only (scram-sha-256).
    as_owner "$BIN/initdb" -D "$dir/data" --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
  fi
  [[ -s "$dir/password" ]] || die "$dir/password is missing or empty: delete $dir to start afresh"

  local port; port="$(free_port)"
  echo "$port" >"$dir/port"
  # Prefect's server keeps a pool of connections per process; the default 100 is plenty for one server.
  as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_TIMEOUT_S" \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir/socket'" start >/dev/null \
    || die "PostgreSQL did not start; see $dir/postgres.log"

  if [[ "$(psql_admin "$dir" -tA -c "SELECT count(*) FROM pg_roles WHERE rolname = 'prefect'")" == 0 ]]; then
    psql_admin "$dir" -c "CREATE ROLE prefect LOGIN"
  fi
  psql_admin "$dir" -v password="$(cat "$dir/password")" <<<"ALTER ROLE prefect PASSWORD :'password';"
  if [[ "$(psql_admin "$dir" -tA -c "SELECT count(*) FROM pg_database WHERE datname = 'prefect'")" == 0 ]]; then
    psql_admin "$dir" -c "CREATE DATABASE prefect OWNER prefect"
  fi
  say "running on 127.0.0.1:$port, database prefect (data in $dir/data, log $dir/postgres.log)"
  url_of "$dir"
}

stop() {
  local dir="$1"
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  dir="$(cd "$dir" && pwd)"
  BIN="$(find_bin)"
  running "$dir" || return 0
  as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t "$START_TIMEOUT_S" stop >/dev/null \
    || die "PostgreSQL in $dir/data did not stop; see $dir/postgres.log"
  say "stopped (data kept in $dir/data)"
}

case "${1:-}" in
  start) [[ -n "${2:-}" ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ -n "${2:-}" ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  bin) find_bin ;;
  *) die "usage: $0 start DIR | stop DIR | bin" ;;
esac
