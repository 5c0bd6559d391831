package core

import (
	"context"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/segment"
)

// FetchRequest reads one partition from a position.
type FetchRequest struct {
	Topic     string
	Partition int32
	Start     Position
	// MaxBytes bounds the record bytes of one result (at least one record
	// is returned when one exists); <= 0 means 1 MiB. A front end caps it.
	MaxBytes int
	// MaxWait is how long a read waits for records before it answers
	// empty (or, following, looks again); <= 0 means 500ms.
	MaxWait time.Duration
	// Follow keeps reading as records arrive, until ctx ends or an error.
	Follow bool
	// Group, MemberID and Generation, when Group is set, make the fetch a
	// group member's: it is refused (before every result) unless the
	// partition is assigned to the member in the current generation.
	Group      string
	MemberID   string
	Generation int64
	// Budget, when set, is asked for each result's bytes before the
	// partition is read; the records are trimmed to what it grants.
	Budget FetchBudget
	// Batches hands each result's records out as FetchResult.Batches,
	// views of the read path's decoded batches (fetch's ReadBatches: no
	// per-record copy), instead of FetchResult.Records. For a front end
	// that only reads the records: the views are shared and read-only.
	Batches bool
	// Stored asks for sealed data as stored (fetch.PartitionReader.
	// ReadStored): results carry the compressed segment blocks, never
	// decompressed by the broker, and MaxBytes and the budget count their
	// stored bytes. Data not in sealed blocks still comes as records.
	Stored bool
}

// FetchBudget bounds the bytes of fetch results held at once (built, or
// queued for a slow reader). Acquire may block, and must return when ctx
// ends.
type FetchBudget interface {
	Acquire(ctx context.Context, n int64) (FetchLease, error)
}

// A FetchLease holds bytes of a FetchBudget until it is released.
type FetchLease interface {
	Size() int64 // the bytes granted (cost units: see RecordCost)
	Release()    // idempotent
}

// FetchResult is one batch of records read. With FetchRequest.Stored its
// records are those of Blocks at or after SkipBefore, then Records.
type FetchResult struct {
	Partition int32
	// Blocks and SkipBefore (FetchRequest.Stored): sealed blocks as
	// stored, their records at or after SkipBefore coming before Records.
	Blocks     []fetch.StoredBlock // shared with the cache: do not modify
	SkipBefore int64
	Records    []segment.Record
	// Batches (FetchRequest.Batches; Records is then nil) are the records
	// as views of the read path's decoded batches, shared with every
	// other reader: never modify them (fetch.PartitionReader.ReadBatches).
	Batches        []segment.Batch
	NextOffset     int64
	HighWatermark  int64
	LogStartOffset int64
	// Lease is the budget's lease the result was built under (nil without
	// a budget, and for an empty result): the send function owns it and
	// releases it (or hands it on) when the result's bytes are gone.
	Lease FetchLease
}

// Fetch reads partition req.Partition of req.Topic, never claiming it, and
// calls send with each result: once (records, or an empty result after
// MaxWait), or, following, with every batch of records until ctx ends,
// send fails, or an error (a deleted topic ends a follower with
// ErrTopicNotFound). A tailing fetch never busy-polls: it waits on the
// partition's append notification.
func (b *Broker) Fetch(ctx context.Context, req *FetchRequest, send func(*FetchResult) error) error {
	if err := clientTopic(req.Topic, "read"); err != nil {
		return err
	}
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return err
	}
	v, err := b.view(ctx, t, req.Partition)
	if err != nil {
		return err
	}
	if err := b.checkFetch(req); err != nil {
		return err
	}
	next, err := b.resolveStart(ctx, v, req.Start)
	if err != nil {
		return err
	}
	maxBytes := req.MaxBytes
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	maxWait := req.MaxWait
	if maxWait <= 0 {
		maxWait = 500 * time.Millisecond
	}
	// One deadline for the whole wait: a wake-up that brings no record
	// (a bucket view's refresh, an append past the read) does not start
	// the wait again, so a read of an idle partition answers in maxWait.
	deadline := time.Now().Add(maxWait)
	for {
		if t.isDeleted() {
			return errorf(ErrTopicNotFound, "topic %q was deleted", t.cfg.Name)
		}
		if v.stale() {
			// The partition was opened here (a write claimed it) or
			// dropped since: switch to what reads use now.
			if v, err = b.view(ctx, t, req.Partition); err != nil {
				return err
			}
		}
		wait := v.changed() // before reading: no append is missed
		// The result's share of the budget: waits while the caller has
		// too much outstanding.
		var lease FetchLease
		if req.Budget != nil {
			if lease, err = req.Budget.Acquire(ctx, int64(maxBytes)); err != nil {
				return classify(err)
			}
		}
		var res *fetch.Result
		if req.Stored {
			res, err = v.reader.ReadStored(ctx, next, maxBytes)
		} else {
			res, err = readOf(v.reader, req.Batches)(ctx, next, maxBytes)
		}
		if err != nil {
			release(lease)
			return classify(err)
		}
		if err := b.checkFetch(req); err != nil {
			release(lease)
			return err
		}
		if res.Len() > 0 || len(res.Blocks) > 0 {
			if lease != nil {
				fitResult(res, lease.Size())
				fitBatches(res, lease.Size())
			}
			next = res.NextOffset
			out := &FetchResult{Partition: req.Partition, Blocks: res.Blocks, SkipBefore: res.SkipBefore, Records: res.Records, Batches: res.Batches, NextOffset: res.NextOffset, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset, Lease: lease}
			b.onFetchResult(t.cfg.Name, out)
			if err := send(out); err != nil {
				return err
			}
			if !req.Follow {
				return nil
			}
			continue
		}
		release(lease)
		left := time.Until(deadline)
		if req.Follow {
			left = maxWait // following: only a wake-up ends the wait
		}
		timer := time.NewTimer(max(left, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return classify(ctx.Err())
		case <-wait:
			timer.Stop()
		case <-v.opened:
			timer.Stop()
		case <-timer.C:
			if !req.Follow {
				b.onFetch(t.cfg.Name, req.Partition, nil)
				return send(&FetchResult{Partition: req.Partition, NextOffset: next, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset})
			}
		}
	}
}

func release(l FetchLease) {
	if l != nil {
		l.Release()
	}
}

// fitResult drops records, then blocks, from the end of res until their
// cost (RecordCost, StoredBlockCost) fits n bytes (one block or record
// always stays), so what a result builds stays within the budget it was
// given.
func fitResult(res *fetch.Result, n int64) {
	var cost int64
	for i := range res.Blocks {
		cost += StoredBlockCost(&res.Blocks[i])
		if i > 0 && cost > n {
			res.Blocks, res.Records = res.Blocks[:i], nil
			res.NextOffset = res.Blocks[i-1].LastOffset + 1
			return
		}
	}
	for i := range res.Records {
		cost += RecordCost(&res.Records[i])
		if (i > 0 || len(res.Blocks) > 0) && cost > n {
			res.Records = res.Records[:i]
			if i > 0 {
				res.NextOffset = res.Records[i-1].Offset + 1
			} else {
				res.NextOffset = res.Blocks[len(res.Blocks)-1].LastOffset + 1
			}
			return
		}
	}
}

// StoredBlockCost is what a stored block costs in the fetch limits: its
// stored bytes plus fetch.StoredBlockOverhead.
func StoredBlockCost(b *fetch.StoredBlock) int64 { return int64(fetch.StoredBlockCost(b)) }
