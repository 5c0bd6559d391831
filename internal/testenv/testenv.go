// Package testenv gives tests the external services the project's scripts
// start for them (scripts/test.sh), read from the environment.
//
// A test that needs a service calls the helper; when the service is missing
// the test is skipped on a developer machine and fails under CI=true, so CI
// can never pass by skipping the real backend.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MinIOEndpoint is how to reach the MinIO server scripts/test.sh started.
type MinIOEndpoint struct {
	Addr      string // host:port on loopback
	AccessKey string
	SecretKey string
}

// MinIO returns the test MinIO endpoint, or stops the test when there is none:
// t.Fatal under CI=true, t.Skip otherwise (run `make test` to get one).
func MinIO(t testing.TB) MinIOEndpoint {
	t.Helper()
	ep := MinIOEndpoint{
		Addr:      os.Getenv("STRATA_TEST_MINIO_ENDPOINT"),
		AccessKey: os.Getenv("STRATA_TEST_MINIO_ACCESS_KEY"),
		SecretKey: os.Getenv("STRATA_TEST_MINIO_SECRET_KEY"),
	}
	if ep.Addr == "" {
		Missing(t, "MinIO (STRATA_TEST_MINIO_ENDPOINT is unset; run the tests with `make test`)")
	}
	return ep
}

// Missing reports a missing external dependency: a failure under CI=true, a
// skip elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required test dependency missing under CI=true: %s", what)
	}
	t.Skipf("test dependency missing: %s", what)
}

// Grpcurl returns the path of the grpcurl binary that scripts/grpcurl.sh
// installs (a gRPC client strata did not write): $STRATA_TEST_GRPCURL, else
// the tool cache the script installs into, else grpcurl on $PATH. Without
// one the test stops as Missing says (install it with
// `bash scripts/grpcurl.sh install`; scripts/test.sh does).
func Grpcurl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STRATA_TEST_GRPCURL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("STRATA_TEST_GRPCURL=%s: %v", p, err)
		}
		return p
	}
	dir := os.Getenv("STRATA_TOOLS_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			if home, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(home, ".cache")
			}
		}
		dir = filepath.Join(cache, "strata", "bin")
	}
	if p := filepath.Join(dir, "grpcurl"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	Missing(t, "grpcurl (install it with `bash scripts/grpcurl.sh install`; scripts/test.sh does)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
