package ingest

// Idempotent producer state of one partition.
//
// A batch from an idempotent producer carries (producer id, epoch, base
// sequence); its records take sequences base, base+1, ... The partition
// remembers each producer's last few batches and, for a new batch:
//   - appends it when its base sequence follows the producer's last one,
//     or is 0 from a producer the partition does not know;
//   - recognizes a retry of one of the remembered batches (same base
//     sequence and record count) and answers with that batch's offsets
//     instead of appending again;
//   - rejects any other sequence (a gap, or a batch too old to remember)
//     and a batch from an epoch older than the producer's current one.
// The state is rebuilt on open from the manifest's snapshot (as of the
// sealed end) plus the unsealed tail, so it survives restarts and
// takeovers.

import (
	"errors"
	"fmt"
	"sort"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
)

// rememberBatches is how many recent batches per producer a partition can
// recognize as retries: at least as many as a producer may have in flight
// to one partition (the Go client caps that at this number), in memory
// and in the manifest's snapshot alike.
const rememberBatches = 8

// maxSnapshotProducers bounds the producers a manifest snapshot keeps (the
// most recently active ones).
const maxSnapshotProducers = 1000

var (
	// ErrOutOfOrderSequence is wrapped when a batch's sequence skips ahead
	// of what the partition expects: an earlier batch has not arrived (yet:
	// with several requests in flight, a retry may fix it).
	ErrOutOfOrderSequence = errors.New("ingest: out-of-order producer sequence")
	// ErrStaleSequence is wrapped when a batch's sequence is older than
	// the batches the partition remembers: it was stored long ago.
	ErrStaleSequence = errors.New("ingest: producer sequence too old")
	// ErrProducerFenced is wrapped when a batch comes from an older epoch
	// of a producer than one already seen.
	ErrProducerFenced = errors.New("ingest: producer epoch is stale")
)

type batchMeta struct {
	firstSeq int32
	count    int32
	base     int64 // offset of the first record
	atMs     int64
}

type producerEntry struct {
	epoch   int16
	batches []batchMeta // oldest first, at most rememberBatches
}

func (e *producerEntry) last() batchMeta { return e.batches[len(e.batches)-1] }

type producers map[int64]*producerEntry

func producersFrom(snap []meta.ProducerState) producers {
	ps := producers{}
	for _, s := range snap {
		e := &producerEntry{epoch: s.Epoch}
		for _, b := range s.Earlier {
			e.batches = append(e.batches, batchMeta{firstSeq: b.FirstSeq, count: b.Count, base: b.BaseOffset, atMs: s.LastMs})
		}
		e.batches = append(e.batches, batchMeta{firstSeq: s.FirstSeq, count: s.Count, base: s.BaseOffset, atMs: s.LastMs})
		if len(e.batches) > rememberBatches {
			e.batches = e.batches[len(e.batches)-rememberBatches:]
		}
		ps[s.ID] = e
	}
	return ps
}

// check decides what to do with a batch: (_, false, nil) append it;
// (m, true, nil) it is a retry of the stored batch m; or an error. A
// stored batch with fewer records than the retry that ends at the same
// sequence is the retried batch stored without its duplicate records
// (dedup.go): the caller answers it from the dedup set (retryAnswer).
func (ps producers) check(b *segment.Batch) (batchMeta, bool, error) {
	if b.ProducerID == segment.NoProducer {
		return batchMeta{}, false, nil
	}
	e := ps[b.ProducerID]
	if e == nil || len(e.batches) == 0 {
		// A producer's first batch in this partition starts at 0; a later
		// one may have overtaken it. (A producer forgotten after
		// ProducerExpiry gets this error until it starts over with a new
		// producer id, as the Go client does.)
		if b.BaseSequence != 0 {
			return batchMeta{}, false, fmt.Errorf("%w: producer %d is unknown in this partition and its batch starts at sequence %d, not 0", ErrOutOfOrderSequence, b.ProducerID, b.BaseSequence)
		}
		return batchMeta{}, false, nil
	}
	switch {
	case b.ProducerEpoch < e.epoch:
		return batchMeta{}, false, fmt.Errorf("%w: producer %d epoch %d is older than epoch %d seen before; this producer instance was replaced", ErrProducerFenced, b.ProducerID, b.ProducerEpoch, e.epoch)
	case b.ProducerEpoch > e.epoch:
		if b.BaseSequence != 0 {
			return batchMeta{}, false, fmt.Errorf("%w: producer %d starts epoch %d at sequence %d; a new epoch starts at 0", ErrOutOfOrderSequence, b.ProducerID, b.ProducerEpoch, b.BaseSequence)
		}
		return batchMeta{}, false, nil
	}
	last := e.last()
	if b.BaseSequence == last.firstSeq+last.count {
		return batchMeta{}, false, nil
	}
	end := b.BaseSequence + int32(len(b.Records))
	for _, m := range e.batches {
		if m.firstSeq == b.BaseSequence && int(m.count) == len(b.Records) ||
			m.firstSeq+m.count == end && int(m.count) < len(b.Records) {
			return m, true, nil
		}
	}
	if b.BaseSequence < last.firstSeq+last.count {
		return batchMeta{}, false, fmt.Errorf("%w: producer %d sequence %d was stored too long ago to tell its offsets (the partition remembers the last %d batches); treat it as stored", ErrStaleSequence, b.ProducerID, b.BaseSequence, rememberBatches)
	}
	return batchMeta{}, false, fmt.Errorf("%w: producer %d sent sequence %d but the partition expects %d: an earlier batch is missing", ErrOutOfOrderSequence, b.ProducerID, b.BaseSequence, last.firstSeq+last.count)
}

// record notes an appended batch (with its offsets assigned) at broker
// time nowMs; never pass a record's own timestamp, which a producer sets
// (a backfill sends event times weeks old). A batch with no records is
// one whose records were all duplicates (dedup.go): it moves the
// producer's sequence on in memory only.
func (ps producers) record(b *segment.Batch, nowMs int64) {
	if b.ProducerID == segment.NoProducer {
		return
	}
	e := ps[b.ProducerID]
	if e == nil || b.ProducerEpoch != e.epoch {
		e = &producerEntry{epoch: b.ProducerEpoch}
		ps[b.ProducerID] = e
	}
	e.batches = append(e.batches, batchMeta{firstSeq: b.BaseSequence, count: int32(len(b.Records)), base: b.BaseOffset, atMs: nowMs})
	if len(e.batches) > rememberBatches {
		e.batches = e.batches[len(e.batches)-rememberBatches:]
	}
}

// snapshot returns each producer's remembered batches, most recently
// active first kept when over the limit, dropping producers idle (by
// broker time) since before expireMs.
func (ps producers) snapshot(expireMs int64) []meta.ProducerState {
	out := make([]meta.ProducerState, 0, len(ps))
	for id, e := range ps {
		if len(e.batches) == 0 {
			continue
		}
		l := e.last()
		if l.atMs < expireMs {
			continue
		}
		st := meta.ProducerState{ID: id, Epoch: e.epoch, FirstSeq: l.firstSeq, Count: l.count, BaseOffset: l.base, LastMs: l.atMs}
		for _, m := range e.batches[:len(e.batches)-1] {
			st.Earlier = append(st.Earlier, meta.ProducerBatch{FirstSeq: m.firstSeq, Count: m.count, BaseOffset: m.base})
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].LastMs != out[j].LastMs {
			return out[i].LastMs > out[j].LastMs
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > maxSnapshotProducers {
		out = out[:maxSnapshotProducers]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
