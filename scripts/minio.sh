#!/usr/bin/env bash
# scripts/minio.sh: install (once, cached) and run a throwaway MinIO server
# on a free loopback port for the test suite.
#
#   scripts/minio.sh install        build the pinned MinIO into the tool cache
#   scripts/minio.sh start STATEDIR start it; writes STATEDIR/env (exports) and STATEDIR/pid
#   scripts/minio.sh stop STATEDIR  stop the server started there and remove its data
set -euo pipefail

MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
TOOLS_DIR="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/bin}"
MINIO_BIN="$TOOLS_DIR/minio"
STAMP="$TOOLS_DIR/minio.version"

install() {
  if [[ -x "$MINIO_BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$MINIO_VERSION" ]]; then
    return 0
  fi
  mkdir -p "$TOOLS_DIR"
  echo "minio.sh: building MinIO $MINIO_VERSION into $TOOLS_DIR (a few minutes, once)" >&2
  local work
  work="$(mktemp -d)"
  # Build outside the strata module so its go.mod is untouched.
  (cd "$work" && GOBIN="$TOOLS_DIR" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION")
  rm -rf "$work"
  echo "$MINIO_VERSION" > "$STAMP"
}

free_port() {
  local p
  for _ in $(seq 1 200); do
    # Below Linux's ephemeral range (32768-60999): a port some outgoing
    # connection uses refuses a connect yet cannot be bound.
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  echo "minio.sh: no free port found" >&2; return 1
}

# healthy PORT: MinIO's liveness endpoint answers 200 (bash only: a fresh
# machine may have no curl).
healthy() (
  exec 2>/dev/null
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET /minio/health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  IFS= read -r -t 2 line <&3 || true
  [[ "$line" == *" 200 "* ]]
)

start() {
  local state="$1" attempt
  install
  mkdir -p "$state/data"
  # A port found free may be taken before MinIO binds it (the tests start
  # servers in parallel): try again on other ports.
  for attempt in 1 2 3 4 5; do
    start_once "$state" && return 0
    grep -q "already in use" "$state/minio.log" 2>/dev/null || return 1
    echo "minio.sh: port taken meanwhile; retrying on other ports ($attempt/5)" >&2
  done
  return 1
}

start_once() {
  local state="$1"
  local port cport
  port="$(free_port)"; cport="$(free_port)"
  local user="strata-test" pass="strata-test-secret-$RANDOM$RANDOM"
  MINIO_ROOT_USER="$user" MINIO_ROOT_PASSWORD="$pass" MINIO_BROWSER=off \
    "$MINIO_BIN" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" \
    "$state/data" > "$state/minio.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 1 300); do
    if healthy "$port"; then
      cat > "$state/env" <<ENV
export STRATA_TEST_MINIO_ENDPOINT=127.0.0.1:$port
export STRATA_TEST_MINIO_ACCESS_KEY=$user
export STRATA_TEST_MINIO_SECRET_KEY=$pass
ENV
      echo "minio.sh: MinIO listening on 127.0.0.1:$port (pid $(cat "$state/pid"))" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "minio.sh: MinIO exited early:" >&2; cat "$state/minio.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "minio.sh: MinIO did not become ready in 30s" >&2; cat "$state/minio.log" >&2
  stop "$state"; return 1
}

stop() {
  local state="$1"
  if [[ -f "$state/pid" ]]; then
    local pid; pid="$(cat "$state/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/pid"
  fi
  rm -rf "$state/data"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?state dir}" ;;
  stop) stop "${2:?state dir}" ;;
  *) echo "usage: $0 install | start STATEDIR | stop STATEDIR" >&2; exit 2 ;;
esac
