#!/usr/bin/env bash
# scripts/test.sh: the whole test suite. Starts a real MinIO on loopback for
# the object-store tests (installing it once if missing), runs `go test`, and
# stops MinIO again. Extra arguments go to `go test` (default: ./...).
set -euo pipefail
cd "$(dirname "$0")/.."

state="$(mktemp -d)"
cleanup() { scripts/minio.sh stop "$state" || true; rm -rf "$state"; }
trap cleanup EXIT

scripts/minio.sh start "$state"
# shellcheck disable=SC1091
source "$state/env"

args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(./...)
go test -race -count=1 -timeout 15m "${args[@]}"
