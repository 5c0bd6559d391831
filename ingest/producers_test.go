package ingest

import (
	"errors"
	"testing"

	"github.com/stratalog/strata/segment"
)

func pbatch(id int64, epoch int16, seq int32, n int) *segment.Batch {
	return &segment.Batch{ProducerID: id, ProducerEpoch: epoch, BaseSequence: seq, Records: make([]segment.Record, n)}
}

// The sequence rules of the idempotent producer, one case at a time.
func TestProducerSequenceRules(t *testing.T) {
	ps := producers{}
	next := int64(0)
	appendB := func(b *segment.Batch) {
		t.Helper()
		if _, dup, err := ps.check(b); err != nil || dup {
			t.Fatalf("batch seq %d: dup=%v err=%v, want it appended", b.BaseSequence, dup, err)
		}
		b.BaseOffset = next
		next += int64(len(b.Records))
		ps.record(b, 0)
	}
	if _, _, err := ps.check(pbatch(1, 0, 10, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("an unknown producer starting at 10: %v, want out of order", err)
	}
	for i := int32(0); i < 10; i++ {
		appendB(pbatch(1, 0, i*3, 3)) // offsets 0..29
	}
	// A retry of any of the last rememberBatches (8) batches answers with
	// its offsets, also after a snapshot round trip (a restart or a
	// takeover: issue 11, defect 4).
	for name, ps := range map[string]producers{"memory": ps, "snapshot": producersFrom(ps.snapshot(-1))} {
		for i := int32(10 - rememberBatches); i < 10; i++ {
			m, dup, err := ps.check(pbatch(1, 0, i*3, 3))
			if err != nil || !dup || m.base != int64(i*3) {
				t.Fatalf("%s: retry of seq %d: base %d dup %v err %v", name, i*3, m.base, dup, err)
			}
		}
	}
	if _, _, err := ps.check(pbatch(1, 0, 0, 3)); !errors.Is(err, ErrStaleSequence) {
		t.Fatalf("retry of a forgotten batch: %v, want stale", err)
	}
	if _, _, err := ps.check(pbatch(1, 0, 33, 3)); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("a gap: %v, want out of order", err)
	}
	if _, _, err := ps.check(pbatch(1, 0, 27, 2)); !errors.Is(err, ErrStaleSequence) {
		t.Fatalf("a batch overlapping the last one with another size: %v, want stale", err)
	}
	// A new epoch starts at 0 and fences the old one.
	if _, _, err := ps.check(pbatch(1, 1, 5, 1)); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("new epoch at 5: %v", err)
	}
	appendB(pbatch(1, 1, 0, 1))
	if _, _, err := ps.check(pbatch(1, 0, 30, 1)); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("old epoch after a new one: %v, want fenced", err)
	}
	// Non-idempotent batches are never checked.
	if _, dup, err := ps.check(pbatch(segment.NoProducer, 0, 99, 1)); err != nil || dup {
		t.Fatalf("plain batch: %v %v", dup, err)
	}
	// The snapshot keeps each producer's last batch and survives a round trip.
	snap := ps.snapshot(-1)
	back := producersFrom(snap)
	if m, dup, err := back.check(pbatch(1, 1, 0, 1)); err != nil || !dup || m.base != 30 {
		t.Fatalf("retry after a snapshot round trip: base %d dup %v err %v", m.base, dup, err)
	}
}
