#!/usr/bin/env bash
# A whole local Prefect stack on one machine: `scripts/stack.sh up` (make stack), `scripts/stack.sh down`
# (make stack-down) and `scripts/stack.sh restart-server` (make stack-restart-server: the server alone, on the same
# port and database, as an upgrade would). Server, work pools, alerts and automations from ops/ (`tuneflow ops apply`),
# deployments from prefect.yaml and one worker per pool; every port, database, log and pid file stays under
# data/stack/. The server's database is DB=sqlite (the default: a file under data/stack/home) or DB=postgres (a
# PostgreSQL that scripts/postgres.sh starts from data/stack/postgres; `down` stops it, `restart-server` leaves it
# running). `down` and `restart-server` act on the database the stack was started with.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$ROOT/data/stack"
BIN="${BIN:-$ROOT/.venv/bin}"
PREFECT="$BIN/prefect"
TUNEFLOW="$BIN/tuneflow"
PYTHON="$BIN/python"
# The first run of a server migrates its database: allow it a while on a small machine.
READY_TIMEOUT_S="${READY_TIMEOUT_S:-120}"

export PREFECT_HOME="$STACK/home"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
# Flow runs inherit the workers' environment: a heartbeat every 180 s, which the crash-zombie automation
# (ops/automations/crash-zombie-flows.yaml, 600 s) counts on whatever Prefect's default becomes.
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-180}"
# Each API call retries for about 4 minutes (2 + 4 + ... + 128 s) instead of 1 when the server is away, so runs and
# workers ride out a server restart (make stack-restart-server) or a short outage. The work pools' templates
# (ops/work-pools/) set both for runs started elsewhere.
export PREFECT_CLIENT_MAX_RETRIES="${PREFECT_CLIENT_MAX_RETRIES:-7}"
# Prefect hides the errors clients retry, SQLite's "database is locked" among them, from the server's log: shown,
# they tell when SQLite stops being enough (docs/operations.md).
export PREFECT_SERVER_LOG_RETRYABLE_ERRORS="${PREFECT_SERVER_LOG_RETRYABLE_ERRORS:-true}"

die() { echo "stack: $*" >&2; exit 1; }

PG_DIR="$STACK/postgres"
DB="${DB:-}"
case "$DB" in
  ""|sqlite|postgres) ;;
  *) die "unknown DB=$DB: use DB=sqlite (the default, a file under data/stack/home) or DB=postgres" \
       "(PostgreSQL, started under data/stack/postgres)" ;;
esac
# Whatever database the caller's environment names, the stack's server uses the one DB chooses.
unset PREFECT_API_DATABASE_CONNECTION_URL PREFECT_SERVER_DATABASE_CONNECTION_URL

recorded_db() { cat "$STACK/db" 2>/dev/null || echo sqlite; }

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start "$@" in its own session (so its process group, children included, can be stopped as one) and record it.
start() {
  local name="$1"; shift
  setsid "$@" >"$STACK/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STACK/pids/$name"
}

alive() { [[ -f "$STACK/pids/$1" ]] && kill -0 "$(cat "$STACK/pids/$1")" 2>/dev/null; }

wait_until_ready() {
  local url="$1" deadline=$((SECONDS + READY_TIMEOUT_S))
  until "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
    alive server || die "the server exited while starting; see $STACK/logs/server.log"
    (( SECONDS < deadline )) \
      || die "the server did not answer $url within ${READY_TIMEOUT_S}s; see $STACK/logs/server.log"
    sleep 1
  done
}

# The server's database: SQLite's file is Prefect's default; PostgreSQL is started (or found running) first.
start_server() {
  local port="$1" db; db="$(recorded_db)"
  if [[ "$db" == postgres ]]; then
    PREFECT_API_DATABASE_CONNECTION_URL="$(PYTHON="$PYTHON" "$ROOT/scripts/postgres.sh" start "$PG_DIR")" \
      || die "PostgreSQL did not start (see above)"
    export PREFECT_API_DATABASE_CONNECTION_URL
    echo "stack: starting the Prefect server on http://127.0.0.1:$port (PostgreSQL, data in $PG_DIR/data)"
  else
    echo "stack: starting the Prefect server on http://127.0.0.1:$port (SQLite under $PREFECT_HOME)"
  fi
  start server "$PREFECT" server start --host 127.0.0.1 --port "$port"
  wait_until_ready "http://127.0.0.1:$port/api/health"
}

up() {
  [[ -x "$PREFECT" ]] || die "no Prefect CLI at $PREFECT; run \`make install\` first (or set BIN=path/to/venv/bin)"
  local db="${DB:-sqlite}"
  if alive server; then
    [[ "$(recorded_db)" == "$db" ]] || die "already running on $(recorded_db) at $(cat "$STACK/url"), not $db;" \
      "\`make stack-down\` first, then \`make stack DB=$db\`"
    echo "stack: already running at $(cat "$STACK/url") ($db); \`make stack-down\` stops it"
    return
  fi
  mkdir -p "$STACK/logs" "$STACK/pids" "$PREFECT_HOME"
  echo "$db" >"$STACK/db"
  local port; port="$(free_port)"
  local url="http://127.0.0.1:$port"
  export PREFECT_API_URL="$url/api"
  echo "$url" >"$STACK/url"

  start_server "$port"

  # Work pools (with their base job templates), the alert webhook (TUNEFLOW_ALERT_URL) and every automation of
  # ops/, created or updated: an edit there reaches this server on the next `make stack`.
  [[ -n "${TUNEFLOW_ALERT_URL:-}" ]] || echo "stack: TUNEFLOW_ALERT_URL is not set: no alerts are sent" \
    "(set it to a Slack incoming webhook or any JSON webhook and run make stack again)"
  "$TUNEFLOW" ops apply | sed 's/^/stack: /' || die "tuneflow ops apply failed (see above)"

  if [[ -z "${TUNEFLOW_DRIVE_FILE_ID:-}" ]]; then
    echo "stack: TUNEFLOW_DRIVE_FILE_ID is not set: the deployments are created, but their runs will say which" \
         "Drive file to set (re-run with TUNEFLOW_DRIVE_FILE_ID=... make stack after make stack-down)"
  fi
  (cd "$ROOT" && TUNEFLOW_DRIVE_FILE_ID="${TUNEFLOW_DRIVE_FILE_ID:-}" "$PREFECT" --no-prompt deploy --all \
      >"$STACK/logs/deploy.log" 2>&1) || die "prefect deploy failed; see $STACK/logs/deploy.log"
  echo "stack: deployed retrain (pool gpu) and watch-drive (pool cpu)"

  # Workers run the tuneflow installed in $BIN's environment; the pull step changes into TUNEFLOW_WORK_DIR, so
  # runs keep their models under this checkout's data/.
  # The gpu worker takes one run at a time (one GPU). The cpu worker has no --limit: watch-drive's own
  # concurrency_limit (CANCEL_NEW, prefect.yaml) cancels ticks that pile up behind a slow or missed one, which a
  # worker limit would instead queue and run back to back.
  for pool in gpu cpu; do
    limit=(); [[ "$pool" == gpu ]] && limit=(--limit 1)
    TUNEFLOW_WORK_DIR="$ROOT" TUNEFLOW_DATA_ROOT="${TUNEFLOW_DATA_ROOT:-$ROOT/data}" \
      start "worker-$pool" "$PREFECT" worker start --pool "$pool" --type process "${limit[@]}"
  done
  sleep 2
  for pool in gpu cpu; do alive "worker-$pool" || die "the $pool worker exited; see $STACK/logs/worker-$pool.log"; done

  cat <<EOF
stack: up. Dashboard: $url
  deployments:  $url/deployments
  work pools:   $url/work-pools
  automations:  $url/automations   (crash-zombie-flows and the tuneflow-alert-* ones)
  logs:         $STACK/logs/
  use the CLI against it:  export PREFECT_API_URL=$PREFECT_API_URL
  stop it all:  make stack-down
EOF
}

# Stop one recorded process group: TERM, a grace period, then KILL.
stop() {
  local name="$1" pid
  [[ -f "$STACK/pids/$name" ]] || return 0
  pid="$(cat "$STACK/pids/$name")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stack: stopped $name"
  fi
  rm -f "$STACK/pids/$name"
}

# The server alone goes down and comes back on the same port and database, as for an upgrade; the workers and the
# runs they hold keep going (a run needs the server only at its next state change; no lease to lose: the gpu pool's
# concurrency limit is counted by the server from the runs' states).
restart_server() {
  alive server || die "no stack server is running; \`make stack\` starts one"
  [[ -z "$DB" || "$DB" == "$(recorded_db)" ]] \
    || die "the stack runs on $(recorded_db), not DB=$DB: its server restarts on the same database (leave DB unset)"
  local url; url="$(cat "$STACK/url")"
  export PREFECT_API_URL="$url/api"
  local started=$SECONDS
  stop server
  start_server "${url##*:}"
  echo "stack: server back at $url after $((SECONDS - started)) s down"
}

down() {
  # Workers first, so none picks up a run while the server goes away.
  stop worker-gpu
  stop worker-cpu
  stop server
  if [[ -f "$PG_DIR/data/postmaster.pid" ]]; then
    PYTHON="$PYTHON" "$ROOT/scripts/postgres.sh" stop "$PG_DIR" 2>&1 | sed 's/^/stack: /' \
      || die "PostgreSQL did not stop; see $PG_DIR/postgres.log"
  fi
  rm -f "$STACK/url"
  echo "stack: down (database and logs kept under $STACK; delete it to start afresh)"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  restart-server) restart_server ;;
  *) die "usage: $0 up|down|restart-server" ;;
esac
