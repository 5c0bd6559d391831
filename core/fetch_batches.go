package core

import (
	"context"

	"github.com/stratalog/strata/fetch"
)

// readOf is how a fetch reads the partition: copies of the records, or
// (FetchRequest.Batches) views of the decoded batches.
func readOf(r *fetch.PartitionReader, batches bool) func(ctx context.Context, from int64, maxBytes int) (*fetch.Result, error) {
	if batches {
		return r.ReadBatches
	}
	return r.Read
}

// fitBatches is fitResult for a result of batch views: it drops records
// from the end until their cost fits n bytes (one record always stays),
// by reslicing the views, never by writing to them.
func fitBatches(res *fetch.Result, n int64) {
	var cost int64
	kept := 0
	for bi := range res.Batches {
		recs := res.Batches[bi].Records
		for i := range recs {
			cost += RecordCost(&recs[i])
			if (kept > 0 || i > 0) && cost > n {
				res.Batches[bi].Records = recs[:i:i]
				if i == 0 {
					res.Batches = res.Batches[:bi]
				} else {
					res.Batches = res.Batches[:bi+1]
				}
				last := res.Batches[len(res.Batches)-1].Records
				res.NextOffset = last[len(last)-1].Offset + 1
				return
			}
		}
		kept += len(recs)
	}
}

// onFetchResult tells the FetchHooks of a result about to be sent.
func (b *Broker) onFetchResult(topic string, out *FetchResult) {
	if len(out.Batches) == 0 {
		b.onFetch(topic, out.Partition, out)
		return
	}
	if len(b.hooks.fetch) == 0 {
		return
	}
	ev := FetchEvent{Topic: topic, Partition: out.Partition}
	for i := range out.Batches {
		ev.Records += len(out.Batches[i].Records)
		ev.Bytes += recordsBytes(out.Batches[i].Records)
	}
	for _, h := range b.hooks.fetch {
		h.OnFetch(ev)
	}
}
