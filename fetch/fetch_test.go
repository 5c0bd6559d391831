package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// countingStore counts ranged GETs per object and can slow them down, so
// tests can see single flight and read-ahead.
type countingStore struct {
	tier.Store
	delay     time.Duration
	rangeGets atomic.Int64
	mu        sync.Mutex
	perKey    map[string]int
}

func newCounting(s tier.Store) *countingStore {
	return &countingStore{Store: s, perKey: map[string]int{}}
}

func (c *countingStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.rangeGets.Add(1)
	c.mu.Lock()
	c.perKey[key]++
	c.mu.Unlock()
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	return c.Store.GetRange(ctx, key, off, n)
}

const topic = "events"

func val(off int64) []byte {
	return fmt.Appendf(nil, `{"offset":%d,"user":"u-%03d","payload":"%s"}`, off, off%977, strings.Repeat("ab", int(off%50)))
}

// seed writes n records (timestamps ts0+offset*10) through a real
// partition, seals them, and returns the partition (still open, so its
// local log can serve hot reads).
func seed(t testing.TB, store tier.Store, n int, ts0 int64, sealBytes int64) *ingest.Partition {
	t.Helper()
	ctx := context.Background()
	cfg := ingest.DefaultPartitionConfig()
	cfg.Topic, cfg.Dir, cfg.Store = topic, t.TempDir(), store
	cfg.Fsync = ingest.FsyncNever
	cfg.SealBytes = sealBytes
	cfg.LocalRetentionBytes = 0
	cfg.RetentionTime = 0
	cfg.CheckInterval = time.Hour
	cfg.Segment = segment.WriterOptions{BlockSize: 16 << 10}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := ingest.OpenPartition(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	for i := 0; i < n; i += 50 {
		b := &segment.Batch{ProducerID: segment.NoProducer}
		for j := i; j < min(i+50, n); j++ {
			b.Records = append(b.Records, segment.Record{Timestamp: ts0 + int64(j)*10, Key: []byte("k"), Value: val(int64(j))})
		}
		if _, err := p.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Maintain(ctx); err != nil { // trims sealed local files
		t.Fatal(err)
	}
	return p
}

func newCache(t testing.TB, mut func(*fetch.CacheConfig)) *fetch.Cache {
	cfg := fetch.DefaultCacheConfig()
	if mut != nil {
		mut(&cfg)
	}
	c, err := fetch.NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func coldReader(c *fetch.Cache, s tier.BucketReader) *fetch.PartitionReader {
	return fetch.NewPartitionReader(c, s, fetch.NewBucketManifests(s, topic, 0, time.Minute), nil)
}

func TestReadEveryOffsetCold(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		seed(t, store, 3000, 1000, 128<<10)
		r := coldReader(newCache(t, nil), store)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		for range 200 {
			from := rng.Int64N(3000)
			maxBytes := 1 + rng.IntN(20<<10)
			res, err := r.Read(ctx, from, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) == 0 || res.Records[0].Offset != from {
				t.Fatalf("read from %d: first record %v", from, res.Records)
			}
			for i, rec := range res.Records {
				if rec.Offset != from+int64(i) || !bytes.Equal(rec.Value, val(rec.Offset)) {
					t.Fatalf("read from %d: record %d has offset %d", from, i, rec.Offset)
				}
			}
			if res.NextOffset != from+int64(len(res.Records)) || res.HighWatermark != 3000 {
				t.Fatalf("read from %d: next %d hwm %d", from, res.NextOffset, res.HighWatermark)
			}
		}
		// Past the end: nothing, no error.
		res, err := r.Read(ctx, 3000, 1024)
		if err != nil || len(res.Records) != 0 {
			t.Fatalf("read at the high watermark: %v, %d records", err, len(res.Records))
		}
	})
}

func TestReadHotAndColdAgree(t *testing.T) {
	store := storetest.File(t)
	p := seed(t, store, 1000, 0, 32<<10)
	// Unsealed tail, readable only from the local log.
	ctx := context.Background()
	b := &segment.Batch{ProducerID: segment.NoProducer}
	for j := 1000; j < 1100; j++ {
		b.Records = append(b.Records, segment.Record{Timestamp: int64(j) * 10, Value: val(int64(j))})
	}
	if _, err := p.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	r := fetch.NewPartitionReader(newCache(t, nil), store, p, p.Local())
	next := int64(0)
	for next < 1100 {
		res, err := r.Read(ctx, next, 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			t.Fatalf("no records at %d below the high watermark %d", next, res.HighWatermark)
		}
		for _, rec := range res.Records {
			if rec.Offset != next || !bytes.Equal(rec.Value, val(next)) {
				t.Fatalf("got offset %d, want %d", rec.Offset, next)
			}
			next++
		}
	}
}

func TestOffsetForTime(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		p := seed(t, store, 2000, 50_000, 64<<10)
		ctx := context.Background()
		for _, hot := range []bool{false, true} {
			var r *fetch.PartitionReader
			if hot {
				r = fetch.NewPartitionReader(newCache(t, nil), store, p, p.Local())
			} else {
				r = coldReader(newCache(t, nil), store)
			}
			for _, tc := range []struct{ ts, want int64 }{
				{0, 0},
				{50_000, 0},
				{50_001, 1},
				{50_000 + 1234*10, 1234},
				{50_000 + 1999*10, 1999},
				{50_000 + 1999*10 + 1, 2000}, // after the last record: the high watermark
			} {
				got, err := r.OffsetForTime(ctx, tc.ts)
				if err != nil || got != tc.want {
					t.Errorf("hot=%v OffsetForTime(%d) = %d, %v; want %d", hot, tc.ts, got, err, tc.want)
				}
			}
		}
	})
}

func TestConcurrentReadersShareOneGet(t *testing.T) {
	store := newCounting(storetest.File(t))
	seed(t, store, 2000, 0, 1<<20) // one segment
	store.delay = 50 * time.Millisecond
	c := newCache(t, func(c *fetch.CacheConfig) { c.ReadAheadSpans = 0; c.SpanBytes = 1 })
	r := coldReader(c, store)
	ctx := context.Background()
	if _, err := r.Read(ctx, 0, 1); err != nil { // load the footer
		t.Fatal(err)
	}
	before := store.rangeGets.Load()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Read(ctx, 1500, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := store.rangeGets.Load() - before; got != 1 {
		t.Fatalf("16 concurrent readers of one block caused %d GETs, want 1", got)
	}
}

func TestPointReadCostsAtMostTwoSegmentGets(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		cs := newCounting(store)
		seed(t, cs, 5000, 0, 4<<20)
		ctx := context.Background()
		for _, off := range []int64{0, 2500, 4999} {
			cs.rangeGets.Store(0)
			c := newCache(t, func(c *fetch.CacheConfig) { c.ReadAheadSpans = 0; c.SpanBytes = 1 })
			res, err := coldReader(c, cs).Read(ctx, off, 1)
			if err != nil || len(res.Records) != 1 || res.Records[0].Offset != off {
				t.Fatalf("point read %d: %v %v", off, res, err)
			}
			// Ranged GETs of the segment: tail (trailer+footer) and one block.
			// The manifest GET is a plain Get, not counted here.
			if got := cs.rangeGets.Load(); got > 2 {
				t.Fatalf("point read of offset %d cost %d ranged GETs, want <= 2", off, got)
			}
		}
	})
}

func TestCacheMemoryIsBounded(t *testing.T) {
	store := storetest.File(t)
	seed(t, store, 6000, 0, 256<<10)
	c := newCache(t, func(c *fetch.CacheConfig) { c.MemoryBytes = 8 << 10; c.SpanBytes = 4 << 10; c.DecodedBytes = 16 << 10 })
	r := coldReader(c, store)
	ctx := context.Background()
	for next := int64(0); next < 6000; {
		res, err := r.Read(ctx, next, 8<<10)
		if err != nil {
			t.Fatal(err)
		}
		next = res.NextOffset
		// A single block may exceed a tiny bound; the bound holds beyond it.
		if st := c.Stats(); st.MemoryBytes > 8<<10+4<<10 || st.DecodedBytes > 16<<10+64<<10 {
			t.Fatalf("cache holds %d compressed and %d decoded bytes, bounds are 8 and 16 KiB (plus one block)", st.MemoryBytes, st.DecodedBytes)
		}
	}
	if c.Stats().Evictions == 0 {
		t.Fatal("a replay larger than the cache evicted nothing")
	}
}

func TestDiskCacheServesEvictedBlocks(t *testing.T) {
	store := newCounting(storetest.File(t))
	seed(t, store, 3000, 0, 1<<20)
	dir := t.TempDir()
	c := newCache(t, func(c *fetch.CacheConfig) {
		c.MemoryBytes = 16 << 10
		c.DiskBytes = 8 << 20
		c.Dir = dir
		c.ReadAheadSpans = 0
		c.DecodedBytes = 0 // so the second replay must go to the block levels
	})
	r := coldReader(c, store)
	ctx := context.Background()
	read := func() {
		for next := int64(0); next < 3000; {
			res, err := r.Read(ctx, next, 16<<10)
			if err != nil {
				t.Fatal(err)
			}
			next = res.NextOffset
		}
	}
	read()
	gets := store.rangeGets.Load()
	read()
	st := c.Stats()
	if store.rangeGets.Load() != gets {
		t.Fatalf("second replay issued %d GETs; the disk cache should have served it", store.rangeGets.Load()-gets)
	}
	if st.DiskHits == 0 || st.DiskBytes == 0 || st.DiskBytes > 8<<20 {
		t.Fatalf("disk level: %+v", st)
	}
}

func TestReadAheadPrefetchesSequentialReplay(t *testing.T) {
	store := newCounting(storetest.File(t))
	seed(t, store, 6000, 0, 8<<20)
	c := newCache(t, func(c *fetch.CacheConfig) { c.SpanBytes = 32 << 10; c.ReadAheadSpans = 2 })
	r := coldReader(c, store)
	ctx := context.Background()
	for next := int64(0); next < 6000; {
		res, err := r.Read(ctx, next, 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		next = res.NextOffset
		time.Sleep(time.Millisecond) // a consumer doing work
	}
	st := c.Stats()
	if st.Prefetches == 0 || st.Hits < st.Misses {
		t.Fatalf("sequential replay was not served by read-ahead: %+v", st)
	}
}

func TestReadBelowLogStartIsOutOfRange(t *testing.T) {
	store := storetest.File(t)
	seed(t, store, 10, 0, 1<<20)
	ctx := context.Background()
	ms := meta.NewManifestStore(store, topic, 0)
	m, etag, err := ms.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := m.Clone()
	next.Generation++
	next.LogStartOffset = 5
	if _, err := ms.Update(ctx, etag, next); err != nil {
		t.Fatal(err)
	}
	_, err = coldReader(newCache(t, nil), store).Read(ctx, 4, 100)
	var oor *fetch.OutOfRangeError
	if !errors.As(err, &oor) || oor.LogStartOffset != 5 || oor.Offset != 4 {
		t.Fatalf("got %v, want OutOfRangeError{Offset 4, LogStart 5}", err)
	}
	if !strings.Contains(err.Error(), "starts at 5") {
		t.Fatalf("error does not tell the log start: %v", err)
	}
}

func TestCorruptSegmentIsAnErrorNotAPanic(t *testing.T) {
	store := storetest.File(t)
	seed(t, store, 500, 0, 1<<20)
	ctx := context.Background()
	m, _, err := meta.NewManifestStore(store, topic, 0).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := m.Segments[0].Key
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	data[100] ^= 0xff // inside the first block
	if _, err := store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	_, err = coldReader(newCache(t, nil), store).Read(ctx, 0, 100)
	if !errors.Is(err, segment.ErrCorrupt) {
		t.Fatalf("reading a corrupted block: got %v, want segment.ErrCorrupt", err)
	}
}

func TestMissingManifestIsNotFound(t *testing.T) {
	store := storetest.File(t)
	_, err := coldReader(newCache(t, nil), store).Read(context.Background(), 0, 100)
	if !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("got %v, want tier.ErrNotFound", err)
	}
}
