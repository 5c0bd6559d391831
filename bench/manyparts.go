package bench

// ManyPartitions: an in-process broker (core.Broker, no front end, so the
// process's memory is the broker's) producing across many partitions,
// then sitting idle, with every object-store request counted by
// operation and by what the key is (WAL object, manifest, segment, topic
// config, other). It is what the "Many partitions" section of
// docs/performance.md measures memory and requests with; the heap
// profiles it can write show where the memory per partition goes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// ManyPartitionsConfig configures one ManyPartitions run.
type ManyPartitionsConfig struct {
	Partitions int           // partitions of the topic; >= 1
	Duration   time.Duration // length of the produce phase
	MaxRecords int64         // records of the produce phase at most
	Idle       time.Duration // length of the idle phase after it (0: none)
	RecordSize int           // value bytes; default 1024
	// Batch is the records of one produce request, all for one
	// partition (as the Go client's sticky batches of keyless records);
	// default 500. Producers send requests in parallel; default 8.
	Batch     int
	Producers int
	Acks      core.Acks // default core.AcksLocal (the harness's strata-local)
	// Dir holds the broker's data directory and, without Store, a
	// file:// bucket. Required.
	Dir   string
	Store tier.Store // nil: a file:// store under Dir
	// Configure, when set, changes the broker's config before it starts.
	Configure func(*core.Config)
	// HeapProfile, when set, is where heap profiles are written: at the
	// end of the produce phase (HeapProfile) and of the idle phase
	// (HeapProfile with ".idle" before its extension).
	HeapProfile string
	// Logf, when set, is told of the run's progress.
	Logf func(format string, args ...any)
}

// ManyPartitionsResult is what one run measured.
type ManyPartitionsResult struct {
	Partitions int
	// Warm-up: every partition opened (one record each) before the
	// produce phase, with the requests that cost.
	WarmupSeconds  float64
	WarmupRequests map[string]int64
	// The produce phase.
	Records, Bytes int64
	Seconds        float64
	RecPerS        float64
	Requests       map[string]int64 // "PUT manifest" -> count, during the phase
	PutsPerGiB     float64          // every PUT of the phase per GiB of values
	Memory         MemorySample     // at the end of the produce phase
	// The idle phase.
	IdleSeconds     float64
	IdleRequests    map[string]int64
	IdlePerMinute   float64 // requests of every kind per minute while idle
	IdleMemory      MemorySample
	ProducedPerPart []int64 // records acked per partition (checked against the high watermarks)
}

// MemorySample is the process's memory at one moment, after a GC.
type MemorySample struct {
	RSS        int64 // resident set (Linux; 0 elsewhere)
	HeapInuse  int64
	StackInuse int64
	Sys        int64 // what the Go runtime holds from the OS
	Goroutines int
}

func sampleMemory() MemorySample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemorySample{RSS: rss(), HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse), Sys: int64(ms.Sys), Goroutines: runtime.NumGoroutine()}
}

// rss reads VmRSS from /proc/self/status (0 when there is none).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// ManyPartitions runs the workload: create a topic of cfg.Partitions
// partitions, open every one (warm-up, one record each), produce for
// cfg.Duration (or cfg.MaxRecords), then stay idle for cfg.Idle, and
// check that each partition's high watermark is what was acked to it.
func ManyPartitions(ctx context.Context, cfg ManyPartitionsConfig) (*ManyPartitionsResult, error) {
	if cfg.Partitions < 1 || cfg.Dir == "" || cfg.Duration <= 0 {
		return nil, errors.New("bench: many partitions: Partitions >= 1, Dir and Duration are required")
	}
	if cfg.RecordSize <= 0 {
		cfg.RecordSize = 1024
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Producers <= 0 {
		cfg.Producers = 8
	}
	if cfg.Acks == core.AcksDefault {
		cfg.Acks = core.AcksLocal
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = 1 << 40
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	store := cfg.Store
	if store == nil {
		fs, err := tier.NewFileStore(filepath.Join(cfg.Dir, "bucket"))
		if err != nil {
			return nil, err
		}
		store = fs
	}
	cs := NewCountingStore(store)
	bc := core.DefaultConfig()
	bc.DataDir, bc.Store = filepath.Join(cfg.Dir, "data"), cs
	bc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.Configure != nil {
		cfg.Configure(&bc)
	}
	br, err := core.New(bc)
	if err != nil {
		return nil, err
	}
	defer br.Close(context.Background())
	const topic = "many"
	if _, err := br.CreateTopic(ctx, core.TopicConfig{Name: topic, Partitions: int32(cfg.Partitions)}); err != nil {
		return nil, err
	}
	res := &ManyPartitionsResult{Partitions: cfg.Partitions, ProducedPerPart: make([]int64, cfg.Partitions)}
	value := bytes.Repeat([]byte("0123456789abcdef"), (cfg.RecordSize+15)/16)[:cfg.RecordSize]
	produce := func(p int32, n int) error {
		recs := make([]segment.Record, n)
		for i := range recs {
			recs[i].Value = value
		}
		_, err := br.Produce(ctx, &core.ProduceRequest{Topic: topic, Partition: p, Records: recs, Acks: cfg.Acks})
		if err == nil {
			atomic.AddInt64(&res.ProducedPerPart[p], int64(n))
		}
		return err
	}

	// Warm-up: open every partition, in parallel.
	cs.Reset()
	start := time.Now()
	var next atomic.Int64
	if err := parallel(cfg.Producers*4, func() error {
		for {
			p := next.Add(1) - 1
			if p >= int64(cfg.Partitions) {
				return nil
			}
			if err := produce(int32(p), 1); err != nil {
				return fmt.Errorf("warm-up of partition %d: %w", p, err)
			}
		}
	}); err != nil {
		return nil, err
	}
	res.WarmupSeconds = time.Since(start).Seconds()
	res.WarmupRequests = cs.Reset()
	logf("%d partitions: opened in %.1fs", cfg.Partitions, res.WarmupSeconds)

	// Produce phase: each request goes to the next partition round robin.
	var records atomic.Int64
	var rr atomic.Uint64
	start = time.Now()
	deadline := start.Add(cfg.Duration)
	if err := parallel(cfg.Producers, func() error {
		for time.Now().Before(deadline) && records.Load() < cfg.MaxRecords {
			p := int32(rr.Add(1) % uint64(cfg.Partitions))
			if err := produce(p, cfg.Batch); err != nil {
				return err
			}
			records.Add(int64(cfg.Batch))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	res.Requests = cs.Reset()
	res.Records = records.Load()
	res.Bytes = res.Records * int64(cfg.RecordSize)
	res.RecPerS = float64(res.Records) / res.Seconds
	res.PutsPerGiB = float64(sumOp(res.Requests, "PUT")) / (float64(res.Bytes) / (1 << 30))
	res.Memory = sampleMemory()
	if err := writeHeap(cfg.HeapProfile); err != nil {
		return nil, err
	}
	logf("%d partitions: %.0f records/s, %.0f PUTs/GiB, RSS %d MiB, heap %d MiB, %d goroutines",
		cfg.Partitions, res.RecPerS, res.PutsPerGiB, res.Memory.RSS>>20, res.Memory.HeapInuse>>20, res.Memory.Goroutines)

	// Idle phase.
	if cfg.Idle > 0 {
		start = time.Now()
		select {
		case <-time.After(cfg.Idle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res.IdleSeconds = time.Since(start).Seconds()
		res.IdleRequests = cs.Reset()
		var n int64
		for _, v := range res.IdleRequests {
			n += v
		}
		res.IdlePerMinute = float64(n) / (res.IdleSeconds / 60)
		res.IdleMemory = sampleMemory()
		if cfg.HeapProfile != "" {
			ext := filepath.Ext(cfg.HeapProfile)
			if err := writeHeap(strings.TrimSuffix(cfg.HeapProfile, ext) + ".idle" + ext); err != nil {
				return nil, err
			}
		}
		logf("%d partitions idle %.0fs: %.1f requests/min, RSS %d MiB, heap %d MiB", cfg.Partitions, res.IdleSeconds, res.IdlePerMinute, res.IdleMemory.RSS>>20, res.IdleMemory.HeapInuse>>20)
	}

	// Verify: every partition's high watermark is what was acked to it.
	for p, want := range res.ProducedPerPart {
		hw, err := br.ListOffsets(ctx, topic, int32(p), core.Position{Kind: core.StartLatest})
		if err != nil {
			return nil, err
		}
		if hw != want {
			return nil, fmt.Errorf("partition %d: high watermark %d, but %d records were acked", p, hw, want)
		}
	}
	return res, nil
}

func writeHeap(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parallel runs fn n times at once and returns the first error.
func parallel(n int, fn func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sumOp(m map[string]int64, op string) int64 {
	var n int64
	for k, v := range m {
		if strings.HasPrefix(k, op+" ") {
			n += v
		}
	}
	return n
}

// FormatRequests lists request counts, largest first ("PUT wal 1200,
// GET manifest 10").
func FormatRequests(m map[string]int64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return int(m[b] - m[a])
		}
		return strings.Compare(a, b)
	})
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

// CountingStore counts every request to the store it wraps by operation
// (GET, GETRANGE, STAT, LIST, PUT, DELETE; a conditional put is a PUT, as
// S3 bills it) and by the kind of key (KeyKind). Safe for concurrent use.
type CountingStore struct {
	tier.Store
	mu     sync.Mutex
	counts map[string]int64
}

var _ tier.Store = (*CountingStore)(nil)

// NewCountingStore wraps s.
func NewCountingStore(s tier.Store) *CountingStore {
	return &CountingStore{Store: s, counts: map[string]int64{}}
}

// KeyKind names what a key is: wal, manifest, segment, topic-config,
// groups, shares, ids or other.
func KeyKind(key string) string {
	switch {
	case strings.HasPrefix(key, "wal/"):
		return "wal"
	case strings.HasSuffix(key, "/manifest.json"):
		return "manifest"
	case strings.Contains(key, "/segments/"):
		return "segment"
	case strings.HasPrefix(key, "topics/") && strings.HasSuffix(key, "/config.json"):
		return "topic-config"
	case strings.HasPrefix(key, "topics/"):
		return "topics"
	case strings.HasPrefix(key, "groups/"):
		return "groups"
	case strings.HasPrefix(key, "shares/"):
		return "shares"
	}
	if i := strings.IndexByte(key, '/'); i > 0 {
		return key[:i]
	}
	return "other"
}

func (c *CountingStore) count(op, key string) {
	c.mu.Lock()
	c.counts[op+" "+KeyKind(key)]++
	c.mu.Unlock()
}

// Reset returns the counts so far and starts again from zero.
func (c *CountingStore) Reset() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.counts
	c.counts = map[string]int64{}
	return m
}

func (c *CountingStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	c.count("GET", key)
	return c.Store.Get(ctx, key)
}

func (c *CountingStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	c.count("GETRANGE", key)
	return c.Store.GetRange(ctx, key, off, length)
}

func (c *CountingStore) Stat(ctx context.Context, key string) (tier.ObjectInfo, error) {
	c.count("STAT", key)
	return c.Store.Stat(ctx, key)
}

func (c *CountingStore) List(ctx context.Context, prefix string, fn func(tier.ObjectInfo) error) error {
	c.count("LIST", prefix)
	return c.Store.List(ctx, prefix, fn)
}

func (c *CountingStore) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	c.count("PUT", key)
	return c.Store.Put(ctx, key, r, size)
}

func (c *CountingStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	c.count("PUT", key)
	return c.Store.PutIfAbsent(ctx, key, r, size)
}

func (c *CountingStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	c.count("PUT", key)
	return c.Store.PutIfMatch(ctx, key, etag, r, size)
}

func (c *CountingStore) Delete(ctx context.Context, key string) error {
	c.count("DELETE", key)
	return c.Store.Delete(ctx, key)
}
