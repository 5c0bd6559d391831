// Package storetest runs a test against every real object-store backend:
// the embedded file:// store and MinIO (started by scripts/test.sh). Under
// CI=true a missing MinIO fails the test instead of skipping it.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// ForEach runs fn as one subtest per backend, each with a fresh, empty store.
func ForEach(t *testing.T, fn func(t *testing.T, s tier.Store)) {
	t.Helper()
	t.Run("file", func(t *testing.T) { fn(t, File(t)) })
	t.Run("minio", func(t *testing.T) { fn(t, MinIO(t)) })
}

// File returns a fresh file:// store in a temporary directory.
func File(t testing.TB) tier.Store {
	t.Helper()
	s, err := tier.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// MinIO returns a store on a fresh bucket of the test MinIO.
func MinIO(t testing.TB) tier.Store {
	t.Helper()
	ep := testenv.MinIO(t)
	b := make([]byte, 6)
	rand.Read(b)
	s, err := tier.NewS3Store(context.Background(), tier.S3Config{
		Endpoint:     ep.Addr,
		Bucket:       "strata-test-" + hex.EncodeToString(b),
		AccessKey:    ep.AccessKey,
		SecretKey:    ep.SecretKey,
		Insecure:     true,
		CreateBucket: true,
	})
	if err != nil {
		t.Fatalf("connect to test MinIO at %s: %v", ep.Addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TopicStorageName returns how the bucket names a topic's objects
// (meta.StorageName: name/id), reading the identity from the topic's
// config object.
func TopicStorageName(t testing.TB, s tier.Store, name string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), meta.TopicConfigKey(name))
	if err != nil {
		t.Fatalf("topic %s config: %v", name, err)
	}
	defer rc.Close()
	var cfg struct {
		ID string `json:"topic_id"`
	}
	if err := json.NewDecoder(rc).Decode(&cfg); err != nil {
		t.Fatalf("topic %s config: %v", name, err)
	}
	return meta.StorageName(name, cfg.ID)
}
