package export

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// deniedStore refuses every write with a final 403, as a bucket the
// credentials cannot write does.
type deniedStore struct{ tier.Store }

func denied(op, key string) error {
	return &tier.StatusError{Op: op, Key: key, Status: 403, Code: "AccessDenied", Err: errors.New("access denied")}
}

func (d deniedStore) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return tier.ObjectInfo{}, denied("put", key)
}

func (d deniedStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return tier.ObjectInfo{}, denied("put-if-absent", key)
}

func (d deniedStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return tier.ObjectInfo{}, denied("put-if-match", key)
}

// Bad input fails with an error that says what is wrong, and leaves
// nothing a reader could take for output.
func TestExportBadInput(t *testing.T) {
	ctx := context.Background()
	src := tier.NewMemStore()
	seedEvents(t, src, 2, 500)
	// A topic whose log starts at 300 (retention deleted 0-299).
	writeTopic(t, src, "trimmed", testID, 1, nil)
	seal(t, src, meta.StorageName("trimmed", testID), 0, genRecords(0, 600, midnight, 10)[300:], 100, 2<<10, 300)

	for _, tc := range []struct {
		name, topic string
		b           Bounds
		is          error
		says        string
	}{
		{"unknown topic", "nosuch", Bounds{}, ErrUnknownTopic, `topic "nosuch" does not exist`},
		{"bad topic name", "../x", Bounds{}, ErrUnknownTopic, "invalid topic name"},
		{"below the log start", "trimmed", Bounds{FromOffset: map[int32]int64{0: 10}}, ErrOutOfRange, "below the log start 300"},
		{"no such partition", "events", Bounds{Partitions: []int32{5}}, nil, "there is no partition 5"},
		{"bound of a partition not exported", "events", Bounds{Partitions: []int32{0}, FromOffset: map[int32]int64{1: 0}}, nil, "names partition 1"},
		{"to before from", "events", Bounds{FromOffset: map[int32]int64{0: 100}, ToOffset: map[int32]int64{0: 50}}, nil, "before the from offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := tier.NewMemStore()
			e := newExporter(t, testConfig(src, dst))
			_, err := e.Export(ctx, tc.topic, tc.b, nil)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want one wrapping %v that says %q", err, tc.is, tc.says)
			}
			if keys := parquetKeys(t, dst, ""); len(keys) != 0 {
				t.Fatalf("files written: %v", keys)
			}
		})
	}

	t.Run("target not writable", func(t *testing.T) {
		dst := deniedStore{tier.NewMemStore()}
		e := newExporter(t, testConfig(src, dst))
		_, err := e.Export(ctx, "events", Bounds{}, nil)
		if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), "export manifest") {
			t.Fatalf("error %v; want the denied manifest write named", err)
		}
		if keys := parquetKeys(t, dst, ""); len(keys) != 0 {
			t.Fatalf("files written: %v", keys)
		}
	})

	t.Run("files not writable", func(t *testing.T) {
		// The manifest can be written but not the files: a claim is left,
		// no file, and the error names the file.
		dst := &hookStore{Store: tier.NewMemStore(), before: func(op tier.Op, key string) error {
			if strings.HasSuffix(key, ".parquet") {
				return denied("put-if-absent", key)
			}
			return nil
		}}
		e := newExporter(t, testConfig(src, dst))
		_, err := e.Export(ctx, "events", Bounds{Partitions: []int32{0}}, nil)
		if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), ".parquet") {
			t.Fatalf("error %v", err)
		}
		if keys := parquetKeys(t, dst, ""); len(keys) != 0 {
			t.Fatalf("files written: %v", keys)
		}
		if m := loadManifest(t, dst, ManifestKey("", "events", testID, 0)); m.Pending == nil || len(m.Ranges) != 0 {
			t.Fatalf("manifest %+v: want a claim and no range", m)
		}
	})

	t.Run("corrupt manifest", func(t *testing.T) {
		dst := tier.NewMemStore()
		key := ManifestKey("", "events", testID, 0)
		dst.Put(ctx, key, strings.NewReader("{garbage"), 8)
		e := newExporter(t, testConfig(src, dst))
		_, err := e.Export(ctx, "events", Bounds{Partitions: []int32{0}}, nil)
		if !errors.Is(err, ErrManifestCorrupt) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("error %v", err)
		}
		if got := readAll(t, dst, key); string(got) != "{garbage" {
			t.Fatalf("the corrupt manifest was replaced by %q", got)
		}
	})

	t.Run("a file of another identity at the key", func(t *testing.T) {
		// Export topic "events" (old identity), delete and re-create it
		// with a new identity and the same offsets and dates: its first
		// file's key is taken, and the old file is not replaced.
		dst := tier.NewMemStore()
		e := newExporter(t, testConfig(src, dst))
		if _, err := e.Export(ctx, "events", Bounds{Partitions: []int32{0}}, nil); err != nil {
			t.Fatal(err)
		}
		keys := parquetKeys(t, dst, "")
		before := readAll(t, dst, keys[0])
		src2 := tier.NewMemStore()
		const newID = "fedcba9876543210fedcba9876543210"
		writeTopic(t, src2, "events", newID, 1, nil)
		seal(t, src2, meta.StorageName("events", newID), 0, genRecords(0, 500, midnight-250*100, 100), 300, 2<<10, 0)
		e2 := newExporter(t, testConfig(src2, dst))
		_, err := e2.Export(ctx, "events", Bounds{}, nil)
		if err == nil || !strings.Contains(err.Error(), "another export") || !strings.Contains(err.Error(), "nothing was replaced") {
			t.Fatalf("error %v", err)
		}
		if !bytes.Equal(readAll(t, dst, keys[0]), before) {
			t.Fatal("the old identity's file was replaced")
		}
	})

	t.Run("bad config", func(t *testing.T) {
		for _, mut := range []func(*Config){
			func(c *Config) { c.Target = nil },
			func(c *Config) { c.RowGroupBytes = 0 },
			func(c *Config) { c.RowGroupLimit = c.RowGroupBytes - 1 },
			func(c *Config) { c.FileBytes = 0 },
			func(c *Config) { c.Prefix = "a//b" },
			func(c *Config) { c.Parallel = 0 },
		} {
			cfg := testConfig(src, tier.NewMemStore())
			mut(&cfg)
			if _, err := New(cfg); err == nil {
				t.Errorf("config %+v accepted", cfg)
			}
		}
	})
}

// peakAllocator counts the bytes the Arrow and Parquet code holds, and
// the most it held at once.
type peakAllocator struct {
	inner     memory.Allocator
	mu        sync.Mutex
	cur, peak int64
}

func (a *peakAllocator) note(d int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur += d
	a.peak = max(a.peak, a.cur)
}

func (a *peakAllocator) Allocate(n int) []byte {
	a.note(int64(n))
	return a.inner.Allocate(n)
}

func (a *peakAllocator) Reallocate(n int, b []byte) []byte {
	a.note(int64(n - len(b)))
	return a.inner.Reallocate(n, b)
}

func (a *peakAllocator) Free(b []byte) {
	a.note(-int64(len(b)))
	a.inner.Free(b)
}

// Memory is bounded by the row group, not the topic: the Arrow and
// Parquet buffers of an export of 4x the records (files 4x as big) peak
// at about the same, within a few row-group limits.
func TestExportBoundedMemory(t *testing.T) {
	peak := func(n int) int64 {
		src, dst := tier.NewMemStore(), tier.NewMemStore()
		seedEvents(t, src, 1, n)
		cfg := testConfig(src, dst)
		cfg.FileBytes = 1 << 30 // one file per date: the whole topic
		a := &peakAllocator{inner: memory.NewGoAllocator()}
		cfg.Allocator = a
		e := newExporter(t, cfg)
		res, err := e.Export(context.Background(), "events", Bounds{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, recs, _, _ := res.Totals(); recs != int64(n) {
			t.Fatalf("exported %d of %d", recs, n)
		}
		return a.peak
	}
	small, large := peak(2000), peak(8000)
	limit := testConfig(nil, nil).RowGroupLimit
	t.Logf("peak Arrow/Parquet bytes: %d for 2000 records, %d for 8000 (row group limit %d)", small, large, limit)
	if large > small+small/4 {
		t.Fatalf("peak memory grows with the topic: %d for 2000 records, %d for 8000", small, large)
	}
	if large > 16*limit+(1<<20) {
		t.Fatalf("peak memory %d is far above the row group limit %d", large, limit)
	}
}
