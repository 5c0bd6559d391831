#!/usr/bin/env bash
# scripts/cluster.sh: a local strata cluster of N brokers (default 3) and one
# MinIO, as processes on loopback, for trying the cluster out by hand.
#
#   scripts/cluster.sh up [N]   build strata, start MinIO and brokers b1..bN, wait until each answers
#   scripts/cluster.sh status   which brokers and MinIO are alive (exit 1 if any is not)
#   scripts/cluster.sh down     stop the brokers (SIGTERM: each seals into the bucket), then MinIO;
#                               removes the data, keeps the logs until the next up
#
# Broker bI listens for gRPC on 127.0.0.1:(7420+I) and gossips on
# 127.0.0.1:(7945+I); b1 starts the cluster, the others join it. Override the
# first ports with STRATA_CLUSTER_PORT (default 7421) and
# STRATA_CLUSTER_GOSSIP_PORT (default 7946).
#
# State lives in STRATA_CLUSTER_DIR (default .cluster/ in the repository):
#   strata          the binary the brokers run (go build ./cmd/strata)
#   bI/             broker bI's data directory
#   bI.pid bI.log   its process id and its log
#   minio/          MinIO's pid, log, data and env (scripts/minio.sh)
#   env             exports for a shell: broker list, object store, credentials
#
# down and a failed up stop only the processes whose pid files are here, and
# only while those pids still run this state directory's binary.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

state="${STRATA_CLUSTER_DIR:-$repo/.cluster}"
grpc_base="${STRATA_CLUSTER_PORT:-7421}"
gossip_base="${STRATA_CLUSTER_GOSSIP_PORT:-7946}"
bin_name="strata"

die() { echo "cluster.sh: $*" >&2; exit 1; }

# A broker's settings come from its flags alone: inherited STRATA_* variables
# (a shell that sourced an env file, say) would otherwise fill in the flags
# left unset, such as b1's --join; so would a config file's serve section
# (STRATA_CONFIG=/dev/null, an empty one, for the brokers below).
unset STRATA_LISTEN STRATA_DATA_DIR STRATA_OBJECT_STORE STRATA_NODE_ID STRATA_GOSSIP_LISTEN \
  STRATA_JOIN STRATA_ADVERTISE STRATA_GOSSIP_ADVERTISE STRATA_ZONE STRATA_GOSSIP_KEY_FILE

abs_state() {
  mkdir -p "$state"
  state="$(cd "$state" && pwd)"
}

# ours PID: the process runs this state directory's strata binary (a pid
# file outliving its process must not make us signal whatever reused it).
ours() {
  local pid="$1" argv0
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  argv0="$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)" || return 1
  [[ "$argv0" == "$state/$bin_name" ]]
}

# brokers: the broker names with pid files, in order (b1 b2 ... b10).
brokers() {
  local f
  for f in "$state"/b*.pid; do
    [[ -e "$f" ]] || continue
    f="${f##*/}"; echo "${f%.pid}"
  done | sort -V
}

port_of() { echo $(( grpc_base + ${1#b} - 1 )); }
gossip_port_of() { echo $(( gossip_base + ${1#b} - 1 )); }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# answers ADDR: the broker serves requests (lists topics).
answers() { timeout 10 "$state/$bin_name" topic list --broker "$1" > /dev/null 2>&1; }

minio_alive() {
  [[ -f "$state/minio/pid" ]] && kill -0 "$(cat "$state/minio/pid")" 2>/dev/null
}

stop_all() {
  local b pid waiting=()
  for b in $(brokers); do
    pid="$(cat "$state/$b.pid")"
    if ours "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      waiting+=("$b:$pid")
    else
      echo "cluster.sh: $b (pid $pid) was not running" >&2
    fi
  done
  # A broker hands its partitions off (sealing them into the bucket) before
  # it exits: give it the time its shutdown may take (leaving the ring, the
  # hand-off, up to 10 s of draining, up to 60 s of closing), and keep MinIO
  # up until then.
  local entry deadline=$(( SECONDS + 90 ))
  for entry in "${waiting[@]}"; do
    b="${entry%%:*}"; pid="${entry#*:}"
    while ours "$pid" && (( SECONDS < deadline )); do sleep 0.2; done
    if ours "$pid"; then
      echo "cluster.sh: $b (pid $pid) did not stop within 90 s of SIGTERM; killing it; its unsealed records may be only in its WAL objects" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "cluster.sh: stopped $b (pid $pid)" >&2
  done
  for b in $(brokers); do
    rm -f "$state/$b.pid"; rm -rf "${state:?}/$b"
  done
  if [[ -d "$state/minio" ]]; then
    scripts/minio.sh stop "$state/minio"
    rm -f "$state/minio/env"
  fi
  rm -f "$state/env"
}

up() {
  local n="${1:-3}"
  if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || (( n > 50 )); then die "N must be between 1 and 50, not '$n'"; fi
  abs_state
  local b
  for b in $(brokers); do
    if ours "$(cat "$state/$b.pid")"; then
      die "a cluster is already up in $state ($b is running): run 'scripts/cluster.sh down' first"
    fi
  done
  minio_alive && die "MinIO from an earlier run is still up in $state/minio: run 'scripts/cluster.sh down' first"
  # Leftovers of a run that ended without down: its bucket is gone, so its
  # data directories must go too.
  for b in $(brokers); do rm -f "$state/$b.pid"; done
  rm -rf "${state:?}"/b[0-9]* "$state/env"

  local i port gport
  for (( i = 1; i <= n; i++ )); do
    port=$(( grpc_base + i - 1 )); gport=$(( gossip_base + i - 1 ))
    port_in_use "$port" && die "port 127.0.0.1:$port (b$i's gRPC) is in use; free it or set STRATA_CLUSTER_PORT"
    port_in_use "$gport" && die "port 127.0.0.1:$gport (b$i's gossip) is in use; free it or set STRATA_CLUSTER_GOSSIP_PORT"
  done

  echo "cluster.sh: building $state/$bin_name" >&2
  go build -o "$state/$bin_name" ./cmd/strata

  started=0
  trap 'if (( ! started )); then echo "cluster.sh: up failed; stopping what it started" >&2; stop_all; fi' EXIT
  mkdir -p "$state/minio"
  scripts/minio.sh start "$state/minio"
  # shellcheck disable=SC1091
  source "$state/minio/env"
  local store="s3://strata/cluster?endpoint=$STRATA_TEST_MINIO_ENDPOINT&insecure=true&create=true"
  local seed="127.0.0.1:$gossip_base"

  for (( i = 1; i <= n; i++ )); do
    b="b$i"; port=$(( grpc_base + i - 1 )); gport=$(( gossip_base + i - 1 ))
    local args=(serve
      --listen "127.0.0.1:$port"
      --data-dir "$state/$b"
      --object-store "$store"
      --node-id "$b"
      --gossip-listen "127.0.0.1:$gport")
    if (( i > 1 )); then args+=(--join "$seed"); fi
    STRATA_CONFIG=/dev/null AWS_ACCESS_KEY_ID="$STRATA_TEST_MINIO_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$STRATA_TEST_MINIO_SECRET_KEY" \
      nohup "$state/$bin_name" "${args[@]}" > "$state/$b.log" 2>&1 < /dev/null &
    echo $! > "$state/$b.pid"
  done

  local pid deadline addrs=()
  for (( i = 1; i <= n; i++ )); do
    b="b$i"; port=$(( grpc_base + i - 1 )); pid="$(cat "$state/$b.pid")"
    deadline=$(( SECONDS + 60 ))
    until answers "127.0.0.1:$port"; do
      if ! ours "$pid"; then
        echo "cluster.sh: $b (pid $pid) exited before it answered; the end of $state/$b.log:" >&2
        tail -n 20 "$state/$b.log" >&2
        exit 1
      fi
      if (( SECONDS >= deadline )); then
        echo "cluster.sh: $b (pid $pid) did not answer on 127.0.0.1:$port within 60 s; the end of $state/$b.log:" >&2
        tail -n 20 "$state/$b.log" >&2
        exit 1
      fi
      sleep 0.2
    done
    addrs+=("127.0.0.1:$port")
  done
  # shellcheck disable=SC2034 # read by the EXIT trap
  started=1

  local list
  list="$(IFS=,; echo "${addrs[*]}")"
  cat > "$state/env" <<ENV
export STRATA_CLUSTER_BROKERS=$list
export STRATA_OBJECT_STORE='$store'
export STRATA_JOIN=$seed
export AWS_ACCESS_KEY_ID=$STRATA_TEST_MINIO_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$STRATA_TEST_MINIO_SECRET_KEY
ENV
  echo "strata cluster up: $n brokers, MinIO at $STRATA_TEST_MINIO_ENDPOINT, state in $state"
  for (( i = 1; i <= n; i++ )); do
    b="b$i"
    echo "  $b  grpc 127.0.0.1:$(port_of "$b")  gossip 127.0.0.1:$(gossip_port_of "$b")  pid $(cat "$state/$b.pid")  log $state/$b.log"
  done
  echo "brokers: $list (any one serves as --broker)"
  echo "try:     $state/$bin_name topic create demo --partitions 3 --broker ${addrs[0]}"
  echo "shell:   source $state/env   (broker list, object store, seed and MinIO credentials)"
}

status() {
  [[ -d "$state" ]] || { echo "no cluster state in $state"; return 1; }
  abs_state
  local b pid port ok=0 any=0
  for b in $(brokers); do
    any=1
    pid="$(cat "$state/$b.pid")"; port="$(port_of "$b")"
    if ! ours "$pid"; then
      echo "$b  down     (pid $pid gone; log $state/$b.log)"; ok=1
    elif answers "127.0.0.1:$port"; then
      echo "$b  up       grpc 127.0.0.1:$port  pid $pid"
    else
      echo "$b  running  grpc 127.0.0.1:$port  pid $pid  (not answering)"; ok=1
    fi
  done
  (( any )) || { echo "no brokers in $state"; ok=1; }
  if minio_alive; then
    echo "minio  up  $(grep -o '127.0.0.1:[0-9]*' "$state/minio/env" 2>/dev/null || true)  pid $(cat "$state/minio/pid")"
  else
    echo "minio  down"; ok=1
  fi
  return "$ok"
}

down() {
  [[ -d "$state" ]] || { echo "cluster.sh: no cluster state in $state; nothing to stop" >&2; return 0; }
  abs_state
  stop_all
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [N] | status | down" >&2; exit 2 ;;
esac
