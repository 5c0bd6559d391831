#!/usr/bin/env bash
# scripts/with-minio.sh CMD...: run CMD with a throwaway MinIO on loopback
# (installed once if missing); its endpoint and credentials are exported as
# STRATA_TEST_MINIO_*. MinIO is stopped and its data removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
state="$(mktemp -d)"
cleanup() { scripts/minio.sh stop "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
scripts/minio.sh start "$state"
# shellcheck disable=SC1091
source "$state/env"
"$@"
