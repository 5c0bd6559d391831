#!/usr/bin/env bash
# scripts/test.sh: the whole test suite, under the race detector, with a
# real MinIO on loopback for the object-store tests and the pinned grpcurl
# (installed once into the tool cache) for the tests that use a client
# strata did not write. Extra arguments go to `go test` (default: ./...).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(./...)
scripts/grpcurl.sh install
STRATA_TEST_GRPCURL="$(scripts/grpcurl.sh path)"
export STRATA_TEST_GRPCURL
# DuckDB reads the Parquet export in the export tests (cmd/strata).
if ! scripts/duckdb.sh install; then
  [[ "${CI:-}" == true ]] && { echo "test.sh: installing DuckDB failed" >&2; exit 1; }
  echo "test.sh: DuckDB is not installed; its tests will be skipped" >&2
fi
exec scripts/with-minio.sh go test -race -count=1 -timeout 15m "${args[@]}"
