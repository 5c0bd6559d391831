package fetch_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// benchValue is a ~1 KiB JSON-ish record with a random payload, so it
// compresses about as well as real event data (2-3x), not absurdly well.
func benchValue(rng *rand.Rand, off int64) []byte {
	raw := make([]byte, 300)
	for i := range raw {
		raw[i] = byte(rng.IntN(64))
	}
	return fmt.Appendf(nil, `{"offset":%d,"user":"user-%05d","event":"checkout","items":[{"sku":"sku-%04d","qty":%d}],"session":"%s","note":"%s"}`,
		off, rng.IntN(50000), rng.IntN(9999), 1+rng.IntN(5), base64.StdEncoding.EncodeToString(raw),
		"the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog")
}

// seedBench writes rawBytes of records into sealed segments and returns the
// manifest.
func seedBench(b *testing.B, store tier.Store, rawBytes int, codec segment.Codec) *meta.Manifest {
	b.Helper()
	ctx := context.Background()
	cfg := ingest.DefaultPartitionConfig()
	cfg.Topic, cfg.Dir, cfg.Store = topic, b.TempDir(), store
	cfg.Fsync = ingest.FsyncNever
	cfg.SealBytes = 16 << 20
	cfg.LocalRetentionBytes = 0
	cfg.RetentionTime = 0
	cfg.CheckInterval = time.Hour
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Segment.Codec = codec
	p, err := ingest.OpenPartition(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	written := 0
	for off := int64(0); written < rawBytes; {
		batch := &segment.Batch{ProducerID: segment.NoProducer}
		for range 64 {
			v := benchValue(rng, off)
			written += len(v)
			batch.Records = append(batch.Records, segment.Record{Timestamp: 1_700_000_000_000 + off, Key: fmt.Appendf(nil, "user-%05d", off%50000), Value: v})
			off++
		}
		if _, err := p.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil { // seals everything
		b.Fatal(err)
	}
	m, _, err := meta.NewManifestStore(store, topic, 0).Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkColdReplay replays sealed history with an empty cache, side by
// side with plain sequential GETs of the same objects. Both report MB/s of
// compressed (stored) bytes, so strata's figure as a share of raw-get is
// the share of the object store's GET rate that replay achieves.
func BenchmarkColdReplay(b *testing.B) {
	for _, backend := range []string{"file", "minio"} {
		for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecS2} {
			b.Run(backend+"/"+codec.String(), func(b *testing.B) { benchColdReplay(b, backend, codec) })
		}
	}
}

func benchColdReplay(b *testing.B, backend string, codec segment.Codec) {
	var store tier.Store
	if backend == "file" {
		store = storetest.File(b)
	} else {
		store = storetest.MinIO(b)
	}
	m := seedBench(b, store, 96<<20, codec)
	sealed := m.SealedBytes()
	ctx := context.Background()
	b.Run("raw-get", func(b *testing.B) {
		b.SetBytes(sealed)
		for range b.N {
			for _, s := range m.Segments {
				rc, _, err := store.Get(ctx, s.Key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		}
	})
	// The CPU limit: decoding the same segments from memory on one
	// core, with no I/O at all.
	b.Run("decode-only", func(b *testing.B) {
		var objs [][]byte
		for _, s := range m.Segments {
			rc, _, err := store.Get(ctx, s.Key)
			if err != nil {
				b.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				b.Fatal(err)
			}
			objs = append(objs, data)
		}
		b.SetBytes(sealed)
		b.ResetTimer()
		for range b.N {
			for _, data := range objs {
				f, err := segment.ParseTail(data, int64(len(data)))
				if err != nil {
					b.Fatal(err)
				}
				for _, bl := range f.Blocks {
					if _, err := segment.DecodeBlock(data[bl.Pos:bl.Pos+bl.Len], f.Codec); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
	b.Run("strata", func(b *testing.B) {
		b.SetBytes(sealed)
		var gets, records int64
		for range b.N {
			c, err := fetch.NewCache(fetch.DefaultCacheConfig())
			if err != nil {
				b.Fatal(err)
			}
			r := fetch.NewPartitionReader(c, store, fetch.NewBucketManifests(store, topic, 0, time.Minute), nil)
			next := int64(0)
			for {
				res, err := r.Read(ctx, next, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Records) == 0 {
					break
				}
				next = res.NextOffset
			}
			records += next
			gets += c.Stats().Gets
			c.Close()
		}
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(gets)/float64(b.N), "GETs/replay")
	})
	// The stored-block path (ReadStored): the broker's share of a replay
	// when the consumer decodes (client.Consumer, client.PartitionStream):
	// GETs and the blocks handed on as stored, nothing decompressed.
	b.Run("stored", func(b *testing.B) {
		b.SetBytes(sealed)
		var gets, records int64
		for range b.N {
			c, err := fetch.NewCache(fetch.DefaultCacheConfig())
			if err != nil {
				b.Fatal(err)
			}
			r := fetch.NewPartitionReader(c, store, fetch.NewBucketManifests(store, topic, 0, time.Minute), nil)
			next := int64(0)
			for {
				res, err := r.ReadStored(ctx, next, 4<<20)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Blocks)+len(res.Records) == 0 {
					break
				}
				next = res.NextOffset
			}
			records += next
			gets += c.Stats().Gets
			c.Close()
		}
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(gets)/float64(b.N), "GETs/replay")
	})
}

// BenchmarkPointRead reads one record at a random offset from cold segments
// with an empty cache each time, and reports the GETs it cost.
func BenchmarkPointRead(b *testing.B) {
	for _, backend := range []string{"file", "minio"} {
		b.Run(backend, func(b *testing.B) {
			var store tier.Store
			if backend == "file" {
				store = storetest.File(b)
			} else {
				store = storetest.MinIO(b)
			}
			cs := newCounting(store)
			m := seedBench(b, cs, 32<<20, segment.CodecZstd)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(3, 4))
			cs.rangeGets.Store(0)
			b.ResetTimer()
			for range b.N {
				c, err := fetch.NewCache(fetch.DefaultCacheConfig())
				if err != nil {
					b.Fatal(err)
				}
				off := rng.Int64N(m.NextOffset())
				// The manifest is passed in, as a broker holds it in memory.
				r := fetch.NewPartitionReader(c, cs, staticManifest{m}, nil)
				res, err := r.Read(ctx, off, 1)
				if err != nil || len(res.Records) != 1 || res.Records[0].Offset != off {
					b.Fatalf("point read %d: %v", off, err)
				}
				c.Close()
			}
			b.ReportMetric(float64(cs.rangeGets.Load())/float64(b.N), "GETs/read")
		})
	}
}

type staticManifest struct{ m *meta.Manifest }

func (s staticManifest) Manifest(context.Context) (*meta.Manifest, error) { return s.m, nil }
