package tier_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

func newFileStore(t *testing.T) (*tier.FileStore, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := tier.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// Objects are plain files at their keys' paths; the store's own files are
// neither listed nor addressable.
func TestFileStoreLayout(t *testing.T) {
	s, dir := newFileStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "topics/t/0/seg", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "topics", "t", "0", "seg"))
	if err != nil || string(b) != "data" {
		t.Fatalf("object file: %q, %v", b, err)
	}
	for _, k := range []string{".strata-tmp/x", ".strata-lock", ".strata-anything"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), 1); !errors.Is(err, tier.ErrInvalidKey) {
			t.Errorf("put of reserved key %q: %v", k, err)
		}
	}
	var keys []string
	s.List(ctx, "", func(o tier.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if strings.Join(keys, ",") != "topics/t/0/seg" {
		t.Fatalf("list shows %v", keys)
	}
	// Nothing is left in the temporary directory.
	if ents, _ := os.ReadDir(filepath.Join(dir, ".strata-tmp")); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
	// List never walks out of the root.
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "outside"), []byte("x"), 0o644); err == nil {
		defer os.Remove(filepath.Join(filepath.Dir(dir), "outside"))
	}
	for _, p := range []string{"../", "../o", "./", "topics/../"} {
		if err := s.List(ctx, p, func(o tier.ObjectInfo) error { return errors.New("listed " + o.Key) }); err != nil {
			t.Errorf("list %q: %v", p, err)
		}
	}
}

// A key cannot be both an object and a prefix in a directory tree: such
// writes fail with ErrInvalidKey and change nothing.
func TestFileStoreKeyPrefixConflict(t *testing.T) {
	s, _ := newFileStore(t)
	ctx := context.Background()
	s.Put(ctx, "a/b", strings.NewReader("x"), 1)
	s.Put(ctx, "f", strings.NewReader("x"), 1)
	for _, tc := range []struct {
		op  string
		err error
	}{
		{"put a", func() error { _, err := s.Put(ctx, "a", strings.NewReader("y"), 1); return err }()},
		{"put-if-absent a", func() error { _, err := s.PutIfAbsent(ctx, "a", strings.NewReader("y"), 1); return err }()},
		{"put f/g", func() error { _, err := s.Put(ctx, "f/g", strings.NewReader("y"), 1); return err }()},
		{"put-if-absent f/g/h", func() error { _, err := s.PutIfAbsent(ctx, "f/g/h", strings.NewReader("y"), 1); return err }()},
	} {
		if !errors.Is(tc.err, tier.ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", tc.op, tc.err)
		}
	}
	if _, err := s.PutIfMatch(ctx, "a", "x", strings.NewReader("y"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Errorf("put-if-match of a prefix: %v, want ErrPreconditionFailed", err)
	}
	for _, k := range []string{"a/b", "f"} {
		if st, err := s.Stat(ctx, k); err != nil || st.Size != 1 {
			t.Errorf("%s changed: %+v, %v", k, st, err)
		}
	}
}

// Deleting the last object under a directory removes the empty
// directories, up to (not including) the root.
func TestFileStoreDeletePrunesEmptyDirs(t *testing.T) {
	s, dir := newFileStore(t)
	ctx := context.Background()
	s.Put(ctx, "x/y/z/1", strings.NewReader("1"), 1)
	s.Put(ctx, "x/keep", strings.NewReader("k"), 1)
	if err := s.Delete(ctx, "x/y/z/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x", "y")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("x/y was not pruned: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x", "keep")); err != nil {
		t.Errorf("x/keep: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the root went away: %v", err)
	}
}

// ETags survive reopening the store (they are derived from the files).
func TestFileStoreETagStableAcrossReopen(t *testing.T) {
	s, dir := newFileStore(t)
	ctx := context.Background()
	info, err := s.Put(ctx, "k", strings.NewReader("v"), 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := tier.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	st, err := s2.Stat(ctx, "k")
	if err != nil || st.ETag != info.ETag {
		t.Fatalf("etag after reopen %q (%v), put said %q", st.ETag, err, info.ETag)
	}
	if _, err := s2.PutIfMatch(ctx, "k", info.ETag, strings.NewReader("w"), 1); err != nil {
		t.Fatalf("PutIfMatch after reopen: %v", err)
	}
}

// Old temporary files (from a crashed writer) are removed on open; recent
// ones (a writer in another process may be using them) are kept.
func TestFileStoreRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".strata-tmp")
	os.MkdirAll(tmp, 0o755)
	stale, fresh := filepath.Join(tmp, "put-stale"), filepath.Join(tmp, "put-fresh")
	os.WriteFile(stale, []byte("x"), 0o644)
	os.WriteFile(fresh, []byte("x"), 0o644)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	s, err := tier.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temporary file removed: %v", err)
	}
}

// After Close, writes fail and Close stays a no-op.
func TestFileStoreClose(t *testing.T) {
	s, _ := newFileStore(t)
	ctx := context.Background()
	s.Put(ctx, "k", strings.NewReader("v"), 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Put(ctx, "k2", strings.NewReader("v"), 1); err == nil || tier.IsRetryable(err) {
		t.Fatalf("put after close: %v, want a final error", err)
	}
	if err := s.Delete(ctx, "k"); err == nil {
		t.Fatal("delete after close succeeded")
	}
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("reads keep working after close: %v", err)
	}
}

func TestNewFileStoreErrors(t *testing.T) {
	if _, err := tier.NewFileStore(""); err == nil {
		t.Error("empty directory accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := tier.NewFileStore(f); err == nil {
		t.Error("a regular file accepted as the root")
	}
}
