// Package testenv gives tests the external services the project's scripts
// start for them (scripts/test.sh), read from the environment.
//
// A test that needs a service calls the helper; when the service is missing
// the test is skipped on a developer machine and fails under CI=true, so CI
// can never pass by skipping the real backend.
package testenv

import (
	"os"
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
