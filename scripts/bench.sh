#!/usr/bin/env bash
# scripts/bench.sh: the benchmarks behind docs/performance.md, with MinIO.
# BENCHTIME (default 3x) and COUNT (default 3) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
state="$(mktemp -d)"
cleanup() { scripts/minio.sh stop "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
scripts/minio.sh start "$state"
# shellcheck disable=SC1091
source "$state/env"
go test -run '^$' -bench . -benchmem -count "${COUNT:-3}" -benchtime "${BENCHTIME:-1s}" ./segment/ ./ingest/
go test -run '^$' -bench . -benchmem -count "${COUNT:-3}" -benchtime "${BENCHTIME_COLD:-3x}" ./fetch/
