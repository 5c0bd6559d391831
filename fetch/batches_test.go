package fetch_test

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// flatten is the records of a ReadBatches result, in order.
func flatten(res *fetch.Result) []segment.Record {
	var out []segment.Record
	for _, b := range res.Batches {
		out = append(out, b.Records...)
	}
	return out
}

// checkViews checks that res's batches are well-formed views: non-empty,
// no spare capacity (an append cannot write into the shared array),
// BaseOffset the first record's, offsets dense within a view.
func checkViews(t *testing.T, res *fetch.Result) {
	t.Helper()
	for i, b := range res.Batches {
		if len(b.Records) == 0 || cap(b.Records) != len(b.Records) {
			t.Fatalf("view %d: %d records, capacity %d; want a non-empty view with no spare capacity", i, len(b.Records), cap(b.Records))
		}
		if b.BaseOffset != b.Records[0].Offset || b.LastOffset() != b.Records[len(b.Records)-1].Offset {
			t.Fatalf("view %d: base offset %d, records %d-%d", i, b.BaseOffset, b.Records[0].Offset, b.Records[len(b.Records)-1].Offset)
		}
	}
	if res.Records != nil {
		t.Fatalf("ReadBatches filled Records (%d)", len(res.Records))
	}
}

// ReadBatches returns exactly the records Read returns (cold, from random
// offsets, with random byte limits), as views of the decoded blocks: two
// reads of one range hand out the same records in memory, not copies.
func TestReadBatchesMatchesRead(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		seed(t, store, 3000, 1000, 128<<10)
		r := coldReader(newCache(t, nil), store)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(3, 4))
		for range 200 {
			from := rng.Int64N(3100)
			maxBytes := 1 + rng.IntN(40<<10)
			want, err := r.Read(ctx, from, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadBatches(ctx, from, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			checkViews(t, got)
			if recs := flatten(got); !reflect.DeepEqual(recs, want.Records) || got.Len() != len(want.Records) {
				t.Fatalf("read from %d, %d bytes: ReadBatches gives %d records, Read %d (or they differ)", from, maxBytes, len(recs), len(want.Records))
			}
			if got.NextOffset != want.NextOffset || got.HighWatermark != want.HighWatermark || got.LogStartOffset != want.LogStartOffset {
				t.Fatalf("read from %d: ReadBatches next %d hwm %d start %d; Read %d %d %d", from,
					got.NextOffset, got.HighWatermark, got.LogStartOffset, want.NextOffset, want.HighWatermark, want.LogStartOffset)
			}
			if len(got.Batches) == 0 {
				continue
			}
			// No copy: the same range again is the same memory.
			again, err := r.ReadBatches(ctx, from, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if &again.Batches[0].Records[0] != &got.Batches[0].Records[0] {
				t.Fatalf("read from %d: two ReadBatches of one range hand out different copies of its first record", from)
			}
		}
	})
}

// ReadBatches of the local tail (hot) agrees with Read too, and a read
// crossing from sealed to hot data keeps offset order without gaps.
func TestReadBatchesHot(t *testing.T) {
	store := storetest.File(t)
	p := seed(t, store, 1000, 0, 32<<10)
	ctx := context.Background()
	b := &segment.Batch{ProducerID: segment.NoProducer}
	for j := 1000; j < 1100; j++ {
		b.Records = append(b.Records, segment.Record{Timestamp: int64(j) * 10, Value: val(int64(j))})
	}
	if _, err := p.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	r := fetch.NewPartitionReader(newCache(t, nil), store, p, p.Local())
	for next := int64(0); next < 1100; {
		want, err := r.Read(ctx, next, 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadBatches(ctx, next, 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		checkViews(t, got)
		if !reflect.DeepEqual(flatten(got), want.Records) || got.NextOffset != want.NextOffset {
			t.Fatalf("read from %d: ReadBatches and Read differ", next)
		}
		if len(want.Records) == 0 {
			t.Fatalf("no records at %d", next)
		}
		next = got.NextOffset
	}
}
