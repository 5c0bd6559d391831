#!/usr/bin/env bash
# scripts/bench-smoke.sh: CI's smoke test of the bench harness
# (bench/harness, a separate Go module). Installs the peers, runs the
# harness's own tests against them and a real MinIO, then a quick-mode run
# of every workload against strata and every peer. The numbers are not
# judged; a peer that cannot be installed or started is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/peers.sh install
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
scripts/with-minio.sh bash -c 'cd bench/harness && go vet ./... && go test -count=1 -timeout 10m ./...'
cd bench/harness
go run ./cmd/stratabench -quick -require-peers -out "$out"
