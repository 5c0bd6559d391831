#!/usr/bin/env bash
# scripts/bench.sh: the benchmarks behind docs/performance.md, with MinIO.
# COUNT (default 3), BENCHTIME (default 1s) and BENCHTIME_COLD (default 3x)
# tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-minio.sh bash -c '
  go test -run "^$" -bench . -benchmem -count "${COUNT:-3}" -benchtime "${BENCHTIME:-1s}" ./segment/ ./ingest/ &&
  go test -run "^$" -bench . -benchmem -count "${COUNT:-3}" -benchtime "${BENCHTIME_COLD:-3x}" ./fetch/ &&
  go test -run "^$" -bench "Produce" -count 2 -benchtime 200000x ./bench/ &&
  go test -run "^$" -bench "EndToEnd" -count 2 -benchtime 300x ./bench/'
