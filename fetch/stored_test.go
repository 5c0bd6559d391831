package fetch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// variedRecord is record off of seedVaried: keys, values and headers
// present, empty and absent in turn.
func variedRecord(off int64) segment.Record {
	r := segment.Record{Offset: off, Timestamp: 1_700_000_000_000 + off, Key: fmt.Appendf(nil, "key-%d", off%13), Value: val(off)}
	switch {
	case off%7 == 0:
		r.Key = nil
	case off%11 == 0:
		r.Key = []byte{}
	}
	if off%5 == 0 {
		r.Value = nil
	}
	if off%3 == 0 {
		r.Headers = []segment.Header{{Key: "trace", Value: fmt.Appendf(nil, "t-%d", off)}, {Key: "empty"}}
	}
	return r
}

// seedVaried writes n variedRecords in batches of up to 37 through a real
// partition with 8 KiB blocks, seals them into segments of about sealBytes,
// trims the local copy, and returns the partition (open: its local log
// serves what is appended later).
func seedVaried(t testing.TB, store tier.Store, n int, sealBytes int64) *ingest.Partition {
	t.Helper()
	ctx := context.Background()
	cfg := ingest.DefaultPartitionConfig()
	cfg.Topic, cfg.Dir, cfg.Store = topic, t.TempDir(), store
	cfg.Fsync = ingest.FsyncNever
	cfg.SealBytes = sealBytes
	cfg.LocalRetentionBytes = 0
	cfg.RetentionTime = 0
	cfg.CheckInterval = time.Hour
	cfg.Segment = segment.WriterOptions{BlockSize: 8 << 10}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := ingest.OpenPartition(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	appendVaried(t, p, 0, int64(n))
	if err := p.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func appendVaried(t testing.TB, p *ingest.Partition, from, to int64) {
	t.Helper()
	for i := from; i < to; {
		b := &segment.Batch{ProducerID: segment.NoProducer}
		for j := i; j < min(i+1+i%37, to); j++ {
			b.Records = append(b.Records, variedRecord(j))
		}
		if _, err := p.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		i += int64(len(b.Records))
	}
}

// storedRecords is what a consumer makes of a ReadStored result: the
// blocks decoded with segment's decoder, cut at SkipBefore, then the
// records.
func storedRecords(t testing.TB, res *fetch.Result) []segment.Record {
	t.Helper()
	var out []segment.Record
	for _, b := range res.Blocks {
		batches, err := segment.DecodeBlock(b.Data, b.Codec)
		if err != nil {
			t.Fatalf("block %d-%d: %v", b.FirstOffset, b.LastOffset, err)
		}
		if batches[0].BaseOffset != b.FirstOffset || batches[len(batches)-1].LastOffset() != b.LastOffset {
			t.Fatalf("block index %d-%d, decoded %d-%d", b.FirstOffset, b.LastOffset, batches[0].BaseOffset, batches[len(batches)-1].LastOffset())
		}
		for _, bt := range batches {
			for _, r := range bt.Records {
				if r.Offset >= res.SkipBefore {
					out = append(out, r)
				}
			}
		}
	}
	return append(out, res.Records...)
}

// cost is what a result counts against maxBytes.
func cost(res *fetch.Result) int {
	n := 0
	for i := range res.Blocks {
		n += fetch.StoredBlockCost(&res.Blocks[i])
	}
	for _, r := range res.Records {
		n += len(r.Key) + len(r.Value) + 64
		for _, h := range r.Headers {
			n += len(h.Key) + len(h.Value) + 32
		}
	}
	return n
}

// readAll reads [from, hwm) with read, checking each result against what
// was asked, and returns the records.
func readAll(t testing.TB, from, hwm int64, maxBytes int, read func(from int64) (*fetch.Result, error), stored bool) []segment.Record {
	t.Helper()
	var out []segment.Record
	for next := from; next < hwm; {
		res, err := read(next)
		if err != nil {
			t.Fatalf("read from %d: %v", next, err)
		}
		recs := res.Records
		if stored {
			recs = storedRecords(t, res)
			if res.SkipBefore != next {
				t.Fatalf("read from %d: skip_before %d", next, res.SkipBefore)
			}
			if c := cost(res); c > maxBytes && len(res.Blocks)+len(res.Records) > 1 {
				t.Fatalf("read from %d with maxBytes %d: %d blocks and %d records cost %d", next, maxBytes, len(res.Blocks), len(res.Records), c)
			}
		}
		if len(recs) == 0 || recs[0].Offset != next || res.NextOffset != recs[len(recs)-1].Offset+1 {
			t.Fatalf("read from %d: %d records, next %d", next, len(recs), res.NextOffset)
		}
		out = append(out, recs...)
		next = res.NextOffset
	}
	return out
}

// ReadStored answers with blocks as stored, whose records (from the offset
// asked for on) are exactly what Read answers, from any start, mid-block
// included, and never more than maxBytes of stored bytes; the broker
// decodes nothing.
func TestReadStoredMatchesRead(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		const n = 3000
		seedVaried(t, store, n, 64<<10)
		ctx := context.Background()
		m, err := fetch.NewBucketManifests(store, topic, 0, 0).Manifest(ctx)
		if err != nil || len(m.Segments) < 3 {
			t.Fatalf("manifest %v, %v: want several segments", m, err)
		}
		records := coldReader(newCache(t, nil), store)
		want := readAll(t, 0, n, 1<<20, func(from int64) (*fetch.Result, error) { return records.Read(ctx, from, 1<<20) }, false)
		for i, r := range want {
			if exp := variedRecord(int64(i)); r.Offset != int64(i) || !reflect.DeepEqual(normalize(r), normalize(exp)) {
				t.Fatalf("Read gives %+v at %d, want %+v", r, i, exp)
			}
		}
		rng := rand.New(rand.NewPCG(5, 6))
		starts := []int64{0, 1, m.Segments[1].BaseOffset, m.Segments[1].BaseOffset - 1, n - 1}
		for range 6 {
			starts = append(starts, rng.Int64N(n))
		}
		for _, from := range starts {
			for _, maxBytes := range []int{20 << 10, 64 << 10, 1 << 20} {
				c := newCache(t, nil)
				r := coldReader(c, store)
				got := readAll(t, from, n, maxBytes, func(from int64) (*fetch.Result, error) { return r.ReadStored(ctx, from, maxBytes) }, true)
				if !reflect.DeepEqual(got, want[from:]) {
					t.Fatalf("from %d, maxBytes %d: stored blocks give other records than Read", from, maxBytes)
				}
				if st := c.Stats(); st.DecodedBytes != 0 {
					t.Fatalf("from %d, maxBytes %d: the reader decoded %d bytes of blocks; stored reads must not decompress", from, maxBytes, st.DecodedBytes)
				}
			}
		}
	})
}

func normalize(r segment.Record) segment.Record {
	if len(r.Headers) == 0 {
		r.Headers = nil
	}
	for i := range r.Headers {
		if len(r.Headers[i].Value) == 0 {
			r.Headers[i].Value = nil
		}
	}
	return r
}

// A block larger than the answer may be comes as its records, cut to
// maxBytes, and the next read continues inside it.
func TestReadStoredSendsAnOversizeBlockAsRecords(t *testing.T) {
	store := storetest.File(t)
	seedVaried(t, store, 500, 64<<10)
	ctx := context.Background()
	r := coldReader(newCache(t, nil), store)
	const maxBytes = 600 // below any block's stored size
	sawRecords := false
	got := readAll(t, 0, 500, maxBytes, func(from int64) (*fetch.Result, error) {
		res, err := r.ReadStored(ctx, from, maxBytes)
		if err == nil && len(res.Blocks) > 0 {
			t.Fatalf("read from %d: a block of %d bytes in an answer of at most %d", from, len(res.Blocks[0].Data), maxBytes)
		}
		if err == nil && len(res.Records) > 0 {
			sawRecords = true
		}
		return res, err
	}, true)
	if !sawRecords || len(got) != 500 {
		t.Fatalf("%d records (records seen: %v)", len(got), sawRecords)
	}
	for i, rec := range got {
		if !reflect.DeepEqual(normalize(rec), normalize(variedRecord(int64(i)))) {
			t.Fatalf("record %d differs", i)
		}
	}
}

// An answer that reaches the end of the sealed data continues with the
// local log's records after the blocks, in one result.
func TestReadStoredSealedThenLocal(t *testing.T) {
	store := storetest.File(t)
	p := seedVaried(t, store, 1000, 32<<10)
	appendVaried(t, p, 1000, 1100) // the unsealed tail, local only
	local := p.Local()
	if local.StartOffset() < 200 || local.StartOffset() > 1000 {
		t.Fatalf("the local log starts at %d; the test needs sealed data before it", local.StartOffset())
	}
	r := fetch.NewPartitionReader(newCache(t, nil), store, p, local)
	ctx := context.Background()
	from := local.StartOffset() - 150
	res, err := r.ReadStored(ctx, from, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blocks) == 0 || len(res.Records) == 0 {
		t.Fatalf("from %d: %d blocks, %d records; want sealed blocks, then local records", from, len(res.Blocks), len(res.Records))
	}
	got := storedRecords(t, res)
	if len(got) != int(1100-from) || res.NextOffset != 1100 {
		t.Fatalf("from %d: %d records, next %d; want through 1099", from, len(got), res.NextOffset)
	}
	for i, rec := range got {
		if !reflect.DeepEqual(normalize(rec), normalize(variedRecord(from+int64(i)))) {
			t.Fatalf("record %d (offset %d) differs", i, from+int64(i))
		}
	}
	// From the local log on, the answer is Read's: records only.
	res, err = r.ReadStored(ctx, local.StartOffset(), 4<<20)
	if err != nil || len(res.Blocks) != 0 || len(res.Records) != int(1100-local.StartOffset()) {
		t.Fatalf("hot read: %v, %d blocks, %d records", err, len(res.Blocks), len(res.Records))
	}
}

// Below the log start and at the high watermark ReadStored answers as Read.
func TestReadStoredBounds(t *testing.T) {
	store := storetest.File(t)
	seedVaried(t, store, 100, 1<<20)
	r := coldReader(newCache(t, nil), store)
	ctx := context.Background()
	if _, err := r.ReadStored(ctx, -1, 100); err == nil {
		t.Fatal("a negative offset was accepted")
	}
	res, err := r.ReadStored(ctx, 100, 1<<20)
	if err != nil || len(res.Blocks)+len(res.Records) != 0 || res.HighWatermark != 100 {
		t.Fatalf("at the high watermark: %v, %+v", err, res)
	}
}
