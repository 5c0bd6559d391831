#!/usr/bin/env bash
# scripts/grpcurl.sh: install (once, cached) the pinned grpcurl, a gRPC
# client strata did not write, for the tests that list the broker's
# services through reflection and call its health check.
#
#   scripts/grpcurl.sh install   build the pinned grpcurl into the tool cache
#   scripts/grpcurl.sh path      print where it is installed
set -euo pipefail

GRPCURL_VERSION="v1.9.4"
TOOLS_DIR="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/bin}"
GRPCURL_BIN="$TOOLS_DIR/grpcurl"
STAMP="$TOOLS_DIR/grpcurl.version"

install() {
  if [[ -x "$GRPCURL_BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$GRPCURL_VERSION" ]]; then
    return 0
  fi
  mkdir -p "$TOOLS_DIR"
  echo "grpcurl.sh: building grpcurl $GRPCURL_VERSION into $TOOLS_DIR (once)" >&2
  local work
  work="$(mktemp -d)"
  # Build outside the strata module so its go.mod is untouched.
  (cd "$work" && GOBIN="$TOOLS_DIR" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION")
  rm -rf "$work"
  echo "$GRPCURL_VERSION" > "$STAMP"
}

case "${1:-}" in
  install) install ;;
  path) echo "$GRPCURL_BIN" ;;
  *) echo "usage: $0 install | path" >&2; exit 2 ;;
esac
