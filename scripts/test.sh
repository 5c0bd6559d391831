#!/usr/bin/env bash
# scripts/test.sh: the whole test suite, under the race detector, with a
# real MinIO on loopback for the object-store tests. Extra arguments go to
# `go test` (default: ./...).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(./...)
exec scripts/with-minio.sh go test -race -count=1 -timeout 15m "${args[@]}"
