package export

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// benchValue is a ~700-byte JSON event with a random payload, so it
// compresses about as well as real event data (2-3x), not absurdly well
// (the same shape as fetch's replay benchmark).
func benchValue(rng *rand.Rand, off int64) []byte {
	raw := make([]byte, 300)
	for i := range raw {
		raw[i] = byte(rng.IntN(64))
	}
	return fmt.Appendf(nil, `{"offset":%d,"user":"user-%05d","event":"checkout","items":[{"sku":"sku-%04d","qty":%d}],"session":"%s","note":"%s"}`,
		off, rng.IntN(50000), rng.IntN(9999), 1+rng.IntN(5), base64.StdEncoding.EncodeToString(raw),
		"the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog")
}

// seedBench writes rawBytes of records of topic "bench" through a real
// partition (its sealing, blocks and codec), seals them and returns the
// partition manifest.
func seedBench(b *testing.B, store tier.Store, rawBytes int) *meta.Manifest {
	b.Helper()
	ctx := context.Background()
	writeTopic(b, store, "bench", testID, 1, nil)
	storage := meta.StorageName("bench", testID)
	cfg := ingest.DefaultPartitionConfig()
	cfg.Topic, cfg.Dir, cfg.Store = storage, b.TempDir(), store
	cfg.Fsync = ingest.FsyncNever
	cfg.SealBytes = 16 << 20
	cfg.LocalRetentionBytes = 0
	cfg.RetentionTime = 0
	cfg.CheckInterval = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := ingest.OpenPartition(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ts := time.Date(2024, 3, 1, 6, 0, 0, 0, time.UTC).UnixMilli() // one date
	written := 0
	for off := int64(0); written < rawBytes; {
		batch := &segment.Batch{ProducerID: segment.NoProducer}
		for range 64 {
			v := benchValue(rng, off)
			written += len(v)
			batch.Records = append(batch.Records, segment.Record{Timestamp: ts + off, Key: fmt.Appendf(nil, "user-%05d", off%50000), Value: v,
				Headers: []segment.Header{{Key: "source", Value: []byte("web")}}})
			off++
		}
		if _, err := p.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil { // seals everything
		b.Fatal(err)
	}
	m, _, err := meta.NewManifestStore(store, storage, 0).Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkExport exports one partition's sealed range (64 MiB of values
// by default; STRATA_BENCH_EXPORT_MB changes it) from a cold cache to an
// in-memory target with the default file and row-group sizes, each
// iteration into an empty target ("parquet"); it reports records/s, MB/s
// of sealed segment bytes read, Parquet bytes per segment byte, and the
// peak bytes the Arrow and Parquet buffers held. "read" reads the same
// range through the same reader and cache without building anything: the
// bound the export runs against.
func BenchmarkExport(b *testing.B) {
	mb := 64
	if s := os.Getenv("STRATA_BENCH_EXPORT_MB"); s != "" {
		mb, _ = strconv.Atoi(s)
	}
	src := tier.NewMemStore()
	m := seedBench(b, src, mb<<20)
	var records int64
	for _, s := range m.Segments {
		records += s.Records
	}
	segBytes := m.SealedBytes()
	report := func(b *testing.B) {
		secs := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(float64(records)/secs, "records/s")
		b.ReportMetric(float64(segBytes)/secs/1e6, "segMB/s")
		b.ReportMetric(float64(segBytes)/(1<<20), "seg-MiB")
		b.ReportMetric(float64(records), "records")
	}
	b.Run("read", func(b *testing.B) {
		for range b.N {
			cache, err := fetch.NewCache(DefaultConfig().CacheConfig)
			if err != nil {
				b.Fatal(err)
			}
			storage := meta.StorageName("bench", testID)
			r := fetch.NewPartitionReader(cache, src, fetch.NewBucketManifests(src, storage, 0, 5*time.Second), nil)
			var n int64
			for next := int64(0); next < m.NextOffset(); {
				res, err := r.Read(context.Background(), next, 4<<20)
				if err != nil {
					b.Fatal(err)
				}
				n += int64(len(res.Records))
				next = res.NextOffset
			}
			cache.Close()
			if n != records {
				b.Fatalf("read %d of %d records", n, records)
			}
		}
		report(b)
	})
	b.Run("parquet", func(b *testing.B) {
		var pq, peak int64
		for range b.N {
			dst := tier.NewMemStore()
			cfg := DefaultConfig()
			cfg.Source, cfg.Target = src, dst
			cfg.Spool, cfg.SpoolDir = vfs.Default, b.TempDir()
			a := &peakAllocator{inner: memory.NewGoAllocator()}
			cfg.Allocator = a
			e, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			res, err := e.Export(context.Background(), "bench", Bounds{}, nil)
			e.Close()
			if err != nil {
				b.Fatal(err)
			}
			_, n, p, _ := res.Totals()
			if n != records {
				b.Fatalf("exported %d of %d records", n, records)
			}
			pq, peak = p, max(peak, a.peak)
		}
		report(b)
		b.ReportMetric(float64(pq)/float64(segBytes), "parquet-bytes/seg-byte")
		b.ReportMetric(float64(peak)/(1<<20), "peak-arrow-MiB")
	})
}
