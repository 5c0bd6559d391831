package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// fakeClock is a settable clock for retention and age-based sealing.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testConfig(t *testing.T, store tier.Store, dir string, clk *fakeClock) ingest.PartitionConfig {
	cfg := ingest.DefaultPartitionConfig()
	cfg.Topic, cfg.Partition = "orders", 0
	cfg.Dir = dir
	cfg.Store = store
	cfg.Fsync = ingest.FsyncAlways
	cfg.SealBytes = 64 << 10
	cfg.CheckInterval = time.Hour // tests drive Maintain themselves
	cfg.RetentionTime = 0         // tests use small timestamps; retention tests set it
	cfg.Segment = segment.WriterOptions{BlockSize: 8 << 10}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if clk != nil {
		cfg.Clock = clk.Now
	}
	return cfg
}

func value(i int64) []byte { return fmt.Appendf(nil, "value-%08d-%s", i, strings.Repeat("x", 200)) }

// appendN appends n records in batches of 10, with timestamps ts0+offset.
func appendN(t *testing.T, p *ingest.Partition, n int, ts0 int64) {
	t.Helper()
	ctx := context.Background()
	next := p.NextOffset()
	for i := 0; i < n; i += 10 {
		b := &segment.Batch{ProducerID: segment.NoProducer}
		for j := 0; j < 10 && i+j < n; j++ {
			off := next + int64(i+j)
			b.Records = append(b.Records, segment.Record{Timestamp: ts0 + off, Key: []byte("k"), Value: value(off)})
		}
		base, err := p.Append(ctx, b)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if base != next+int64(i) {
			t.Fatalf("append got base offset %d, want %d", base, next+int64(i))
		}
	}
}

// replayAll reads the partition from `from` with a reader that has no local
// data and checks that offsets are dense and values are the ones written.
func replayAll(t *testing.T, store tier.Store, topic string, from int64) int64 {
	t.Helper()
	cache, err := fetch.NewCache(fetch.DefaultCacheConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	r := fetch.NewPartitionReader(cache, store, fetch.NewBucketManifests(store, topic, 0, 0), nil)
	next := from
	for {
		res, err := r.Read(context.Background(), next, 64<<10)
		if err != nil {
			t.Fatalf("replay from %d: %v", next, err)
		}
		if len(res.Records) == 0 {
			return next
		}
		for _, rec := range res.Records {
			if rec.Offset != next {
				t.Fatalf("replay: got offset %d, want %d", rec.Offset, next)
			}
			if !bytes.Equal(rec.Value, value(rec.Offset)) {
				t.Fatalf("replay: offset %d has value %q", rec.Offset, rec.Value)
			}
			next++
		}
	}
}

func TestPartitionSealsAndAFreshReaderReplays(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		p, err := openPartition(t, ctx, testConfig(t, store, t.TempDir(), nil))
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, p, 2000, 1_700_000_000_000) // ~450 KiB: several seals by size
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		m, _ := p.Manifest(ctx)
		if len(m.Segments) < 3 {
			t.Fatalf("expected several segments sealed by size, got %d", len(m.Segments))
		}
		if err := p.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		m, _ = p.Manifest(ctx)
		if m.NextOffset() != 2000 {
			t.Fatalf("after SealNow the sealed log ends at %d, want 2000", m.NextOffset())
		}
		// Segments tile the offsets with no gap.
		for i, s := range m.Segments {
			if i > 0 && s.BaseOffset != m.Segments[i-1].LastOffset+1 {
				t.Fatalf("gap between segments %d and %d", i-1, i)
			}
		}
		if got := replayAll(t, store, "orders", 0); got != 2000 {
			t.Fatalf("fresh reader replayed up to %d, want 2000", got)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := p.Append(ctx, &segment.Batch{Records: []segment.Record{{Value: []byte("late")}}}); !errors.Is(err, ingest.ErrClosed) {
			t.Fatalf("append after close: got %v, want ErrClosed", err)
		}
	})
}

func TestPartitionReopenContinuesOffsets(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		sealOnClose bool
		keepDir     bool
	}{
		{"keep local dir, no seal on close", false, true},
		{"fresh dir after sealing close", true, false},
		{"keep local dir after sealing close", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := storetest.File(t)
			dir := t.TempDir()
			cfg := testConfig(t, store, dir, nil)
			cfg.SealOnClose = tc.sealOnClose
			p, err := openPartition(t, ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, p, 777, 1)
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if !tc.keepDir {
				cfg.Dir = t.TempDir()
			}
			p2, err := openPartition(t, ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p2.Close(ctx)
			if got := p2.NextOffset(); got != 777 {
				t.Fatalf("reopened partition continues at %d, want 777", got)
			}
			if p2.Epoch() != p.Epoch()+1 {
				t.Fatalf("reopen should bump the owner epoch: %d -> %d", p.Epoch(), p2.Epoch())
			}
			appendN(t, p2, 23, 1)
			if err := p2.SealNow(ctx); err != nil {
				t.Fatal(err)
			}
			if got := replayAll(t, store, "orders", 0); got != 800 {
				t.Fatalf("replay after reopen ends at %d, want 800", got)
			}
		})
	}
}

func TestPartitionFencedByNewOwner(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		old, err := openPartition(t, ctx, testConfig(t, store, t.TempDir(), nil))
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, old, 100, 1)
		if err := old.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		// A second broker takes the partition over (bumps the epoch).
		cfg := testConfig(t, store, t.TempDir(), nil)
		cfg.SealOnClose = false
		newer, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer newer.Close(ctx)
		if newer.NextOffset() != 100 {
			t.Fatalf("new owner starts at %d, want 100", newer.NextOffset())
		}
		// The old owner's next seal must fail with ErrFenced, not overwrite.
		appendN(t, old, 10, 1)
		err = old.SealNow(ctx)
		if !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("old owner's seal: got %v, want ErrFenced", err)
		}
		if _, err := old.Append(ctx, &segment.Batch{Records: []segment.Record{{Value: []byte("x")}}}); !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("old owner's append after fencing: got %v, want ErrFenced", err)
		}
		old.Close(ctx)
		m, _ := newer.Manifest(ctx)
		if m.NextOffset() != 100 || m.Epoch != newer.Epoch() {
			t.Fatalf("manifest changed by the fenced owner: next %d epoch %d", m.NextOffset(), m.Epoch)
		}
	})
}

func TestPartitionRetentionAndSweep(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		// The sweep compares the clock with the store's LastModified: start at
		// the real time.
		clk := &fakeClock{now: time.Now()}
		cfg := testConfig(t, store, t.TempDir(), clk)
		cfg.RetentionTime = time.Hour
		cfg.SweepGrace = time.Minute
		p, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		old := clk.Now().Add(-3 * time.Hour).UnixMilli()
		appendN(t, p, 500, old) // expired timestamps
		if err := p.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		fresh := clk.Now().UnixMilli()
		appendN(t, p, 500, fresh-500)
		if err := p.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		before, _ := p.Manifest(ctx)
		// An orphan (as left by a crash between upload and commit).
		orphan := meta.SegmentKey("orders", 0, 5000, 99)
		if _, err := store.Put(ctx, orphan, strings.NewReader("orphan"), 6); err != nil {
			t.Fatal(err)
		}
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		after, _ := p.Manifest(ctx)
		if after.LogStartOffset != 500 {
			t.Fatalf("log start after time retention = %d, want 500", after.LogStartOffset)
		}
		for _, s := range before.Segments {
			_, err := store.Stat(ctx, s.Key)
			expired := s.LastOffset < 500
			if expired && !errors.Is(err, tier.ErrNotFound) {
				t.Errorf("expired segment %s still stored (err %v)", s.Key, err)
			}
			if !expired && err != nil {
				t.Errorf("live segment %s: %v", s.Key, err)
			}
		}
		// Reads below the log start are out of range, with the log start.
		cache, _ := fetch.NewCache(fetch.DefaultCacheConfig())
		defer cache.Close()
		r := fetch.NewPartitionReader(cache, store, p, p.Local())
		_, err = r.Read(ctx, 10, 1024)
		var oor *fetch.OutOfRangeError
		if !errors.As(err, &oor) || oor.LogStartOffset != 500 {
			t.Fatalf("read below log start: got %v, want OutOfRangeError with log start 500", err)
		}
		if got := replayAll(t, store, "orders", 500); got != 1000 {
			t.Fatalf("replay after retention ends at %d, want 1000", got)
		}
		// The orphan is young: the sweep leaves it until the grace passes.
		if n, err := p.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("sweep within grace deleted %d (err %v), want 0", n, err)
		}
		clk.Add(2 * time.Hour)
		if n, err := p.Sweep(ctx); err != nil || n != 1 {
			t.Fatalf("sweep after grace deleted %d (err %v), want 1", n, err)
		}
		if _, err := store.Stat(ctx, orphan); !errors.Is(err, tier.ErrNotFound) {
			t.Fatalf("orphan survived the sweep: %v", err)
		}
		if got := replayAll(t, store, "orders", 500); got != 1000 {
			t.Fatalf("sweep damaged live data: replay ends at %d", got)
		}
	})
}

func TestPartitionRetentionBytes(t *testing.T) {
	ctx := context.Background()
	store := storetest.File(t)
	cfg := testConfig(t, store, t.TempDir(), nil)
	cfg.RetentionTime = 0
	cfg.RetentionBytes = 1 // keep only the newest segment
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	for i := 0; i < 3; i++ {
		appendN(t, p, 100, 1)
		if err := p.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	m, _ := p.Manifest(ctx)
	if len(m.Segments) != 1 || m.LogStartOffset != 200 {
		t.Fatalf("byte retention kept %d segments, log start %d; want 1 segment from 200", len(m.Segments), m.LogStartOffset)
	}
}

func TestPartitionSealsByAge(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Now()}
	cfg := testConfig(t, storetest.File(t), t.TempDir(), clk)
	cfg.SealInterval = 10 * time.Minute
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	appendN(t, p, 5, 1) // far below SealBytes
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Manifest(ctx); len(m.Segments) != 0 {
		t.Fatal("sealed before the interval passed")
	}
	clk.Add(11 * time.Minute)
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Manifest(ctx); m.NextOffset() != 5 {
		t.Fatalf("quiet partition not sealed after the interval: sealed end %d", m.NextOffset())
	}
}

func TestPartitionLocalRetentionKeepsHotCache(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, storetest.File(t), t.TempDir(), nil)
	cfg.LocalRetentionBytes = 100 << 10
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	appendN(t, p, 4000, 1) // ~900 KiB, ~14 local files
	if err := p.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	local := p.Local()
	if local.Bytes() > cfg.LocalRetentionBytes+cfg.SealBytes+(16<<10) {
		t.Fatalf("local log holds %d bytes, over the %d hot-cache budget", local.Bytes(), cfg.LocalRetentionBytes)
	}
	if local.StartOffset() == 0 {
		t.Fatal("no sealed local file was dropped")
	}
	// Hot and cold reads together still return every record.
	cache, _ := fetch.NewCache(fetch.DefaultCacheConfig())
	defer cache.Close()
	r := fetch.NewPartitionReader(cache, cfg.Store, p, local)
	next := int64(0)
	for next < 4000 {
		res, err := r.Read(ctx, next, 32<<10)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range res.Records {
			if rec.Offset != next || !bytes.Equal(rec.Value, value(next)) {
				t.Fatalf("read got offset %d, want %d", rec.Offset, next)
			}
			next++
		}
	}
}

// failCommits fails manifest writes (PutIfMatch) while on, after letting
// the segment upload through: a crash between upload and commit.
type failCommits struct {
	tier.Store
	on atomic.Bool
}

func (f *failCommits) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if f.on.Load() {
		return tier.ObjectInfo{}, fmt.Errorf("injected: broker died before the manifest commit: %w", context.Canceled)
	}
	return f.Store.PutIfMatch(ctx, key, etag, r, size)
}

func TestPartitionCrashBetweenUploadAndCommit(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, inner tier.Store) {
		ctx := context.Background()
		store := &failCommits{Store: inner}
		dir := t.TempDir()
		cfg := testConfig(t, store, dir, nil)
		cfg.SealOnClose = false
		p, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, p, 300, 1)
		store.on.Store(true)
		if err := p.SealNow(ctx); err == nil {
			t.Fatal("seal succeeded although the manifest commit failed")
		}
		p.Close(ctx) // the "crash": nothing more committed, local log kept
		// The upload happened: an object the manifest does not reference.
		orphans := func() int {
			m, _, err := meta.NewManifestStore(inner, "orders", 0).Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			live := map[string]bool{}
			for _, s := range m.Segments {
				live[s.Key] = true
			}
			n := 0
			inner.List(ctx, meta.SegmentPrefix("orders", 0), func(o tier.ObjectInfo) error {
				if !live[o.Key] {
					n++
				}
				return nil
			})
			return n
		}
		if orphans() == 0 {
			t.Fatal("no orphan segment after the failed commit; the failure was not between upload and commit")
		}
		store.on.Store(false)
		cfg.SweepGrace = 0
		p2, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close(ctx)
		if p2.NextOffset() != 300 {
			t.Fatalf("reopen continues at %d, want 300", p2.NextOffset())
		}
		if err := p2.SealNow(ctx); err != nil {
			t.Fatal(err)
		}
		if got := replayAll(t, inner, "orders", 0); got != 300 {
			t.Fatalf("replay after recovery ends at %d, want 300", got)
		}
		if _, err := p2.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if n := orphans(); n != 0 {
			t.Fatalf("%d orphans left after the sweep", n)
		}
		if got := replayAll(t, inner, "orders", 0); got != 300 {
			t.Fatalf("the sweep damaged live data: replay ends at %d", got)
		}
	})
}

func TestPartitionStoreOutageThenHeal(t *testing.T) {
	ctx := context.Background()
	fault := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{})
	cfg := testConfig(t, fault, t.TempDir(), nil)
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	fault.SetDown(true)
	appendN(t, p, 500, 1) // appends keep working on local disk
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = p.SealNow(sctx)
	cancel()
	if err == nil || !tier.IsRetryable(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("seal during an outage: %v, want a retryable error", err)
	}
	if m, _ := p.Manifest(ctx); m.NextOffset() != 0 {
		t.Fatal("the manifest moved during an outage")
	}
	fault.SetDown(false)
	if err := p.SealNow(ctx); err != nil {
		t.Fatalf("seal after the store healed: %v", err)
	}
	if m, _ := p.Manifest(ctx); m.NextOffset() != 500 {
		t.Fatalf("after healing the sealed log ends at %d, want 500", m.NextOffset())
	}
}

func TestPartitionConfigValidate(t *testing.T) {
	good := testConfig(t, tier.NewMemStore(), t.TempDir(), nil)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*ingest.PartitionConfig){
		"no topic":        func(c *ingest.PartitionConfig) { c.Topic = "" },
		"negative part":   func(c *ingest.PartitionConfig) { c.Partition = -1 },
		"no dir":          func(c *ingest.PartitionConfig) { c.Dir = "" },
		"no store":        func(c *ingest.PartitionConfig) { c.Store = nil },
		"zero seal bytes": func(c *ingest.PartitionConfig) { c.SealBytes = 0 },
		"neg retention":   func(c *ingest.PartitionConfig) { c.RetentionBytes = -1 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := ingest.OpenPartition(context.Background(), c); err == nil {
			t.Errorf("%s: OpenPartition accepted it", name)
		}
	}
}

func TestPartitionRefusesNewerManifest(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	body := `{"version":2,"topic":"orders","partition":0,"epoch":1,"generation":1}`
	store.Put(ctx, meta.ManifestKey("orders", 0), strings.NewReader(body), int64(len(body)))
	_, err := openPartition(t, ctx, testConfig(t, store, t.TempDir(), nil))
	if !errors.Is(err, meta.ErrManifestVersion) {
		t.Fatalf("open over a newer manifest: %v, want ErrManifestVersion", err)
	}
	rc, _, _ := store.Get(ctx, meta.ManifestKey("orders", 0))
	data, _ := io.ReadAll(rc)
	if string(data) != body {
		t.Fatal("the newer manifest was rewritten")
	}
}

// outageAfterPut applies the next armed PutIfMatch, then takes the store
// down (so the answer and every read-back are lost, as in a store
// outage) and returns an error.
type outageAfterPut struct {
	*tier.FaultStore
	armed atomic.Bool
}

func (s *outageAfterPut) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if !s.armed.CompareAndSwap(true, false) {
		return s.FaultStore.PutIfMatch(ctx, key, etag, r, size)
	}
	if _, err := s.FaultStore.PutIfMatch(ctx, key, etag, r, size); err != nil {
		return tier.ObjectInfo{}, err
	}
	s.SetDown(true)
	return tier.ObjectInfo{}, fmt.Errorf("connection reset after the write applied: %w", tier.ErrUnavailable)
}

// Issue 11, defect 5: a seal whose manifest commit applied but whose
// answer and read-back were lost (a store outage) must not fence the
// partition: the next commit sees a manifest at our own epoch and owner
// and adopts it.
func TestPartitionAmbiguousCommitDoesNotFenceItself(t *testing.T) {
	s := &outageAfterPut{FaultStore: tier.NewFaultStore(storetest.File(t), tier.FaultConfig{})}
	ctx := context.Background()
	cfg := testConfig(t, s, t.TempDir(), nil)
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	appendN(t, p, 20, 1000)
	s.armed.Store(true)
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = p.SealNow(sctx)
	cancel()
	if err == nil {
		t.Fatal("seal during the outage succeeded")
	}
	s.SetDown(false)
	appendN(t, p, 20, 2000)
	for i := 0; i < 3; i++ { // the first may adopt the applied write and ask for a retry
		if err = p.SealNow(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("seal after the outage: %v; the partition fenced itself", err)
	}
	if _, err := p.Append(ctx, &segment.Batch{ProducerID: segment.NoProducer, Records: []segment.Record{{Timestamp: 3000, Value: value(40)}}}); err != nil {
		t.Fatalf("append after the outage: %v", err)
	}
	m, _ := p.Manifest(ctx)
	if m.NextOffset() != 40 {
		t.Fatalf("sealed to %d, want 40", m.NextOffset())
	}
}

// openPartition opens a partition that is abandoned (closed without
// sealing, if still open) when the test ends.
func openPartition(t *testing.T, ctx context.Context, cfg ingest.PartitionConfig) (*ingest.Partition, error) {
	t.Helper()
	p, err := ingest.OpenPartition(ctx, cfg)
	if err == nil {
		t.Cleanup(p.Abandon)
	}
	return p, err
}
