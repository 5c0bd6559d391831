package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// DemoConfig sizes the demo.
type DemoConfig struct {
	Dir        string     // working directory: broker data dir and replay cache live here
	Store      tier.Store // where segments go
	Topic      string     // default "demo"
	Partitions int        // default 3
	Records    int        // per partition; default 20,000
	BatchSize  int        // records per batch; default 100
	SealBytes  int64      // local file size that triggers a seal; default 1 MiB
	Span       time.Duration
	Now        func() time.Time
}

// DemoReport is what the demo measured.
type DemoReport struct {
	Records        int64
	RawBytes       int64 // key+value bytes produced
	Segments       int
	SealedBytes    int64
	AppendTime     time.Duration
	ReplayTime     time.Duration
	ReplayRecords  int64
	ReplayGets     int64
	TimeQuery      time.Time
	TimeQueryFound []int64 // per partition: first offset at or after TimeQuery
}

func (c *DemoConfig) defaults() {
	if c.Topic == "" {
		c.Topic = "demo"
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.Records == 0 {
		c.Records = 20000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.SealBytes == 0 {
		c.SealBytes = 1 << 20
	}
	if c.Span == 0 {
		c.Span = 14 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// demoValue is the value of record i of a partition: JSON-like, so the
// compression ratio is a realistic one.
func demoValue(p, i int, ts int64) []byte {
	return fmt.Appendf(nil, `{"partition":%d,"seq":%d,"ts":%d,"user":"user-%04d","event":"page_view","path":"/products/%d","ok":true}`,
		p, i, ts, i%1000, i%97)
}

// Demo writes a log, seals it into the store, then replays it with a fresh
// reader that has no local data, verifying every record. It prints what it
// does to out.
func Demo(ctx context.Context, cfg DemoConfig, out io.Writer) (*DemoReport, error) {
	cfg.defaults()
	if cfg.Store == nil || cfg.Dir == "" {
		return nil, errors.New("bench: demo needs a Dir and a Store")
	}
	rep := &DemoReport{}
	now := cfg.Now()
	start := now.Add(-cfg.Span).UnixMilli()
	step := cfg.Span.Milliseconds() / int64(cfg.Records)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// 1. Append through the write path and seal.
	t0 := time.Now()
	for p := 0; p < cfg.Partitions; p++ {
		pc := ingest.DefaultPartitionConfig()
		pc.Topic, pc.Partition = cfg.Topic, int32(p)
		pc.Dir = filepath.Join(cfg.Dir, "broker", fmt.Sprintf("%s-%d", cfg.Topic, p))
		pc.Store = cfg.Store
		pc.SealBytes = cfg.SealBytes
		pc.RetentionTime = 0
		pc.Logger = quiet
		part, err := ingest.OpenPartition(ctx, pc)
		if err != nil {
			return nil, err
		}
		for i := 0; i < cfg.Records; i += cfg.BatchSize {
			b := &segment.Batch{ProducerID: segment.NoProducer}
			for j := i; j < min(i+cfg.BatchSize, cfg.Records); j++ {
				ts := start + int64(j)*step
				r := segment.Record{Timestamp: ts, Key: fmt.Appendf(nil, "user-%04d", j%1000), Value: demoValue(p, j, ts)}
				rep.RawBytes += int64(len(r.Key) + len(r.Value))
				b.Records = append(b.Records, r)
			}
			if _, err := part.Append(ctx, b); err != nil {
				part.Close(ctx)
				return nil, err
			}
			rep.Records += int64(len(b.Records))
		}
		if err := part.Close(ctx); err != nil { // seals the tail
			return nil, err
		}
	}
	rep.AppendTime = time.Since(t0)
	for p := 0; p < cfg.Partitions; p++ {
		m, _, err := meta.NewManifestStore(cfg.Store, cfg.Topic, int32(p)).Load(ctx)
		if err != nil {
			return nil, err
		}
		rep.Segments += len(m.Segments)
		rep.SealedBytes += m.SealedBytes()
	}
	fmt.Fprintf(out, "wrote %d records (%d partitions, %.1f MiB of keys+values) in %v\n",
		rep.Records, cfg.Partitions, float64(rep.RawBytes)/(1<<20), rep.AppendTime.Round(time.Millisecond))
	fmt.Fprintf(out, "sealed %d segments, %.1f MiB in the object store (%.1fx compression)\n",
		rep.Segments, float64(rep.SealedBytes)/(1<<20), float64(rep.RawBytes)/float64(max(rep.SealedBytes, 1)))

	// 2. Replay everything with a reader that has no local data at all.
	cc := fetch.DefaultCacheConfig()
	cache, err := fetch.NewCache(cc)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	t1 := time.Now()
	rep.TimeQuery = time.UnixMilli(start + cfg.Span.Milliseconds()/2)
	for p := 0; p < cfg.Partitions; p++ {
		r := fetch.NewPartitionReader(cache, cfg.Store, fetch.NewBucketManifests(cfg.Store, cfg.Topic, int32(p), time.Minute), nil)
		next := int64(0)
		for {
			res, err := r.Read(ctx, next, 4<<20)
			if err != nil {
				return nil, err
			}
			if len(res.Records) == 0 {
				break
			}
			for _, rec := range res.Records {
				want := demoValue(p, int(rec.Offset), start+rec.Offset*step)
				if rec.Offset != next || crc32.ChecksumIEEE(rec.Value) != crc32.ChecksumIEEE(want) {
					return nil, fmt.Errorf("bench: replay of partition %d: record at offset %d (expected %d) does not match what was written", p, rec.Offset, next)
				}
				next++
			}
		}
		if next != int64(cfg.Records) {
			return nil, fmt.Errorf("bench: replay of partition %d returned %d records, wrote %d", p, next, cfg.Records)
		}
		rep.ReplayRecords += next
		off, err := r.OffsetForTime(ctx, rep.TimeQuery.UnixMilli())
		if err != nil {
			return nil, err
		}
		rep.TimeQueryFound = append(rep.TimeQueryFound, off)
	}
	rep.ReplayTime = time.Since(t1)
	rep.ReplayGets = cache.Stats().Gets
	fmt.Fprintf(out, "replayed %d records from the object store with an empty cache in %v (%.0f records/s, %d GETs), every record verified\n",
		rep.ReplayRecords, rep.ReplayTime.Round(time.Millisecond), float64(rep.ReplayRecords)/rep.ReplayTime.Seconds(), rep.ReplayGets)
	fmt.Fprintf(out, "first offsets at or after %s: %v\n", rep.TimeQuery.UTC().Format(time.RFC3339), rep.TimeQueryFound)
	return rep, nil
}
