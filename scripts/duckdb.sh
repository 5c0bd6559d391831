#!/usr/bin/env bash
# scripts/duckdb.sh: install (once, cached) DuckDB's Node.js client, which
# the export tests use to read strata's Parquet export the way an analyst
# would (cmd/strata's TestExportDuckDB*).
#
#   scripts/duckdb.sh install   npm-install the pinned @duckdb/node-api into
#                               the tool cache (needs node and npm)
#   scripts/duckdb.sh dir       print the directory whose node_modules holds it
#   scripts/duckdb.sh query SQL run SQL through scripts/duckdb-query.mjs and
#                               print the rows as JSON
#
# The tests find the install at $STRATA_DUCKDB_DIR, else in the tool cache
# below; under CI=true a missing install fails them.
set -euo pipefail

DUCKDB_NODE_VERSION="1.5.6-r.1"
TOOLS_DIR="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/bin}"
DUCKDB_DIR="${STRATA_DUCKDB_DIR:-$TOOLS_DIR/duckdb-node}"
STAMP="$DUCKDB_DIR/strata.version"
HERE="$(cd "$(dirname "$0")" && pwd)"

installed() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$DUCKDB_NODE_VERSION" && -d "$DUCKDB_DIR/node_modules/@duckdb/node-api" ]]
}

install() {
  if installed; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "duckdb.sh: node and npm are needed to install @duckdb/node-api (apt-get install nodejs npm)" >&2
    return 1
  fi
  mkdir -p "$DUCKDB_DIR"
  echo "duckdb.sh: installing @duckdb/node-api@$DUCKDB_NODE_VERSION into $DUCKDB_DIR (once)" >&2
  # A package.json of its own, so npm installs here and never walks up
  # into the repository.
  [[ -f "$DUCKDB_DIR/package.json" ]] || echo '{"name":"strata-duckdb-tools","private":true}' > "$DUCKDB_DIR/package.json"
  (cd "$DUCKDB_DIR" && npm install --no-audit --no-fund --silent --save-exact "@duckdb/node-api@$DUCKDB_NODE_VERSION")
  # Prove it loads and runs before stamping it.
  node "$HERE/duckdb-query.mjs" "SELECT 42 AS answer" > /dev/null
  echo "$DUCKDB_NODE_VERSION" > "$STAMP"
}

case "${1:-}" in
  install) install ;;
  dir) echo "$DUCKDB_DIR" ;;
  query) shift; STRATA_DUCKDB_DIR="$DUCKDB_DIR" node "$HERE/duckdb-query.mjs" "$@" ;;
  *) echo "usage: $0 install|dir|query SQL" >&2; exit 2 ;;
esac
