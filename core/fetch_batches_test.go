package core

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// fitBatches trims a result of batch views to exactly the records
// fitResult keeps of the same records, for every budget, without
// writing to the views' records.
func TestFitBatches(t *testing.T) {
	var recs []segment.Record
	for i := range int64(20) {
		recs = append(recs, segment.Record{Offset: 100 + i, Value: make([]byte, i*7%30)})
	}
	// Batches of 1, 5, 2, 8 and 4 records.
	split := func() *fetch.Result {
		res := &fetch.Result{NextOffset: 120}
		at := 0
		for _, n := range []int{1, 5, 2, 8, 4} {
			res.Batches = append(res.Batches, segment.Batch{BaseOffset: recs[at].Offset, Records: recs[at : at+n : at+n]})
			at += n
		}
		return res
	}
	before := fmt.Sprint(recs)
	for n := int64(0); n < 20*(RecordOverheadBytes+30); n += 7 {
		want := &fetch.Result{Records: append([]segment.Record(nil), recs...), NextOffset: 120}
		fitResult(want, n)
		got := split()
		fitBatches(got, n)
		var flat []segment.Record
		for _, b := range got.Batches {
			if len(b.Records) == 0 {
				t.Fatalf("budget %d: an empty batch left in the result", n)
			}
			flat = append(flat, b.Records...)
		}
		if !reflect.DeepEqual(flat, want.Records) || got.NextOffset != want.NextOffset {
			t.Fatalf("budget %d: fitBatches keeps %d records (next %d), fitResult %d (next %d)", n, len(flat), got.NextOffset, len(want.Records), want.NextOffset)
		}
	}
	if fmt.Sprint(recs) != before {
		t.Fatal("fitBatches wrote to the records it trimmed")
	}
}

// fixedBudget grants at most n bytes per result.
type fixedBudget int64

func (b fixedBudget) Acquire(_ context.Context, n int64) (FetchLease, error) {
	return fixedLease(min(n, int64(b))), nil
}

type fixedLease int64

func (l fixedLease) Size() int64 { return int64(l) }
func (fixedLease) Release()      {}

// A fetch with Batches gives the records a fetch without it gives, result
// by result (under a budget that trims them too), as batch views.
func TestFetchBatchesMatchesRecords(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for i := range 20 {
		var recs []segment.Record
		for j := range 1 + i%7 {
			recs = append(recs, segment.Record{Key: fmt.Appendf(nil, "k%d", j), Value: make([]byte, 10*i+j),
				Headers: []segment.Header{{Key: "h", Value: []byte{byte(i)}}}})
		}
		if _, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: recs, Acks: AcksLocal}); err != nil {
			t.Fatal(err)
		}
		total += int64(len(recs))
	}
	read := func(batches bool, from int64, maxBytes int, budget FetchBudget) *FetchResult {
		var out *FetchResult
		req := &FetchRequest{Topic: "t", Partition: 0, Start: Position{Kind: StartOffset, Offset: from}, MaxBytes: maxBytes, Batches: batches}
		if budget != nil {
			req.Budget = budget
		}
		if err := b.Fetch(ctx, req, func(r *FetchResult) error { out = r; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, budget := range []FetchBudget{nil, fixedBudget(300)} {
		for from := int64(0); from < total; from += 3 { // below the high watermark: no waiting
			for _, maxBytes := range []int{1, 200, 1000, 1 << 20} {
				want := read(false, from, maxBytes, budget)
				got := read(true, from, maxBytes, budget)
				var flat []segment.Record
				for _, bt := range got.Batches {
					flat = append(flat, bt.Records...)
				}
				if got.Records != nil || !reflect.DeepEqual(flat, want.Records) || got.NextOffset != want.NextOffset {
					t.Fatalf("from %d, %d bytes, budget %v: Batches gives %d records (next %d), Records %d (next %d)",
						from, maxBytes, budget, len(flat), got.NextOffset, len(want.Records), want.NextOffset)
				}
			}
		}
	}
}
