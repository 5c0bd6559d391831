package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// DuckDB returns the directory whose node_modules holds DuckDB's Node.js
// client (@duckdb/node-api, installed by scripts/duckdb.sh, which
// scripts/test.sh runs), or stops the test when it or node is missing:
// t.Fatal under CI=true, t.Skip otherwise. The directory is
// $STRATA_DUCKDB_DIR, else duckdb-node in the tool cache
// ($STRATA_TOOLS_DIR, else $XDG_CACHE_HOME/strata/bin, else
// ~/.cache/strata/bin).
func DuckDB(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("STRATA_DUCKDB_DIR")
	if dir == "" {
		tools := os.Getenv("STRATA_TOOLS_DIR")
		if tools == "" {
			cache := os.Getenv("XDG_CACHE_HOME")
			if cache == "" {
				home, _ := os.UserHomeDir()
				cache = filepath.Join(home, ".cache")
			}
			tools = filepath.Join(cache, "strata", "bin")
		}
		dir = filepath.Join(tools, "duckdb-node")
	}
	if _, err := exec.LookPath("node"); err != nil {
		Missing(t, "node (for DuckDB's Node.js client; install nodejs and npm, then run scripts/duckdb.sh install)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err != nil {
		Missing(t, "DuckDB's Node.js client in "+dir+" (run scripts/duckdb.sh install, or the tests with `make test`)")
	}
	return dir
}
