#!/usr/bin/env bash
# scripts/peers.sh: install (once) the systems bench/harness measures strata
# against. The harness starts and stops every server itself, on loopback,
# with data in temporary directories; this script only installs.
#
#   scripts/peers.sh install   nats-server (pinned, go install into the tool
#                              cache) + Debian's redis-server and rabbitmq-server
#   scripts/peers.sh nats      only nats-server
#   scripts/peers.sh debian    only redis-server and rabbitmq-server
#   scripts/peers.sh versions  print what is installed
#
# The Debian packages' own services are not started by the install (a
# policy-rc.d that forbids it is in place for the duration of apt-get), so
# nothing listens on the packages' default ports afterwards.
set -euo pipefail

NATS_VERSION="v2.15.2"
TOOLS_DIR="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/bin}"
NATS_BIN="$TOOLS_DIR/nats-server"
NATS_STAMP="$TOOLS_DIR/nats-server.version"

install_nats() {
  if [[ -x "$NATS_BIN" && -f "$NATS_STAMP" && "$(cat "$NATS_STAMP")" == "$NATS_VERSION" ]]; then
    return 0
  fi
  mkdir -p "$TOOLS_DIR"
  echo "peers.sh: building nats-server $NATS_VERSION into $TOOLS_DIR (a minute or two, once)" >&2
  local work
  work="$(mktemp -d)"
  # Build outside the strata modules so no go.mod is touched.
  (cd "$work" && GOBIN="$TOOLS_DIR" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$NATS_VERSION")
  rm -rf "$work"
  echo "$NATS_VERSION" > "$NATS_STAMP"
}

have_debian_peers() {
  command -v redis-server >/dev/null 2>&1 &&
    { command -v rabbitmq-server >/dev/null 2>&1 || [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; }
}

install_debian() {
  if have_debian_peers; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "peers.sh: no apt-get here; install redis-server and rabbitmq-server by hand" >&2
    return 1
  fi
  local sudo=()
  [[ "$(id -u)" != 0 ]] && sudo=(sudo)
  # Keep the packages' services from starting (we run our own instances).
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    created=1
  fi
  # Installing Erlang may leave its epmd daemon running on port 4369 on
  # every interface; it is stopped below unless it was already there.
  local epmd_before=0
  (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null && epmd_before=1
  local rc=0
  {
    "${sudo[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server rabbitmq-server
  } || rc=$?
  [[ $created == 1 ]] && "${sudo[@]}" rm -f "$policy"
  # A service that got started anyway (no policy-rc.d support) is stopped.
  if command -v service >/dev/null 2>&1; then
    "${sudo[@]}" service redis-server stop >/dev/null 2>&1 || true
    "${sudo[@]}" service rabbitmq-server stop >/dev/null 2>&1 || true
  fi
  if [[ $epmd_before == 0 ]] && (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null && command -v epmd >/dev/null 2>&1; then
    epmd -kill >/dev/null 2>&1 || true
  fi
  return $rc
}

versions() {
  if [[ -x "$NATS_BIN" ]]; then echo "nats-server $("$NATS_BIN" --version 2>&1 | head -1)"; else echo "nats-server: not installed"; fi
  if command -v redis-server >/dev/null 2>&1; then redis-server --version; else echo "redis-server: not installed"; fi
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='rabbitmq-server ${Version}\n' rabbitmq-server 2>/dev/null || echo "rabbitmq-server: not installed"
  fi
}

case "${1:-}" in
  install) install_nats; install_debian ;;
  nats) install_nats ;;
  debian) install_debian ;;
  versions) versions ;;
  nats-bin) echo "$NATS_BIN" ;;
  *) echo "usage: $0 install | nats | debian | versions | nats-bin" >&2; exit 2 ;;
esac
