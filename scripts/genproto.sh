#!/usr/bin/env bash
# scripts/genproto.sh: regenerate api/stratapb from api/proto. Installs the
# pinned protoc plugins into the tool cache; protoc itself comes from
# Debian's protobuf-compiler (installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_DIR="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/bin}"
mkdir -p "$TOOLS_DIR"
if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
GOBIN="$TOOLS_DIR" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$TOOLS_DIR" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH="$TOOLS_DIR:$PATH" protoc -I api/proto \
  --go_out=. --go_opt=module=github.com/stratalog/strata \
  --go-grpc_out=. --go-grpc_opt=module=github.com/stratalog/strata \
  api/proto/strata/v1/strata.proto
