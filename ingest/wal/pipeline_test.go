package wal

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// tail reads what recovery gets of a partition, from offset from.
func tail(t *testing.T, r *Reader, inc, topic string, p int32, from int64) []int64 {
	t.Helper()
	var got []int64
	err := r.ReadTail(context.Background(), inc, topic, p, from, func(b *segment.Batch) error {
		for _, rec := range b.Records {
			got = append(got, rec.Offset)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ReadTail %s/%d from %d: %v", topic, p, from, err)
	}
	return got
}

// A later object stored while an earlier one hangs: Fence must not wait
// for the hung upload, and must take its slot, so that the upload fails
// when it gets through and the writer acknowledges neither object. (A
// fence placed only above the newest stored object, as with one PUT in
// flight, lets the hung upload land later: the writer then acks both
// objects after the takeover.)
func TestFenceFillsTheSlotOfAHungUpload(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st tier.Store) {
		ctx := context.Background()
		s := &putHookStore{Store: st}
		hold := make(chan struct{})
		s.onPut(Key("a", 0), func() error { <-hold; return nil })
		w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond, MaxInFlight: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx)
		ac := newAcks()
		add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
		waitFor(t, "object 0 in flight", func() bool { return s.started(Key("a", 0)) })
		add(t, w, "t", 0, batch(1, 1, "v"), ac.sink("p"))
		waitFor(t, "object 1 stored", func() bool {
			_, err := st.Stat(ctx, Key("a", 1))
			return err == nil
		})
		seq, err := NewReader(s, "b", nil).Fence(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if seq != 2 {
			t.Errorf("Fence = %d, want 2 (above object 1, the newest stored)", seq)
		}
		close(hold)
		select {
		case <-w.Failed():
		case <-time.After(20 * time.Second):
			t.Fatal("the writer did not learn it was fenced")
		}
		if !errors.Is(w.Err(), ErrFenced) || ac.get("p") != 0 {
			t.Fatalf("writer error %v, acked up to %d; want ErrFenced and nothing acked", w.Err(), ac.get("p"))
		}
		// Offset 0 was in the hole, so the tail is empty: offset 1 cannot
		// follow without a gap, and was never acked.
		if got := tail(t, NewReader(st, "c", nil), "a", "t", 0, 0); len(got) != 0 {
			t.Fatalf("recovered %v across the hole at sequence 0, want nothing", got)
		}
	})
}

// A crash with a hole in the sequence: object 1 never stored, object 2
// stored above it. Recovery of a partition whose offsets were in the hole
// ends below it; a partition whose offsets run on across the hole keeps
// what is above it; and a reader's view (Entries) agrees.
func TestRecoveryAcrossAHoleInTheSequence(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st tier.Store) {
		ctx := context.Background()
		s := &putHookStore{Store: st}
		w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: 20 * time.Millisecond, FlushBytes: 1024, MaxInFlight: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx)
		ac := newAcks()
		add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
		add(t, w, "t", 1, batch(0, 1, "v"), ac.sink("q")) // maybe object 0, maybe 1: partition 1 is contiguous either way
		waitFor(t, "object 0 stored", func() bool { return ac.get("p") == 1 })
		waitFor(t, "partition 1 stored", func() bool { return ac.get("q") == 1 })
		first, _ := w.Stats(), 0
		next := uint64(first.Objects)
		hold := make(chan struct{})
		s.onPut(Key("a", next), func() error { <-hold; return fmt.Errorf("connection reset: %w", tier.ErrUnavailable) })
		add(t, w, "t", 0, batch(1, 1, "hole"), ac.sink("p"))
		waitFor(t, "the hole's upload in flight", func() bool { return s.started(Key("a", next)) })
		add(t, w, "t", 0, batch(2, 1, "above"), ac.sink("p"))
		add(t, w, "t", 1, batch(1, 20, string(make([]byte, 64))), ac.sink("q")) // FlushBytes: the next object starts now
		waitFor(t, "the object above the hole stored", func() bool {
			_, err := st.Stat(ctx, Key("a", next+1))
			return err == nil
		})
		r := NewReader(st, "b", nil)
		if _, err := r.Fence(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		close(hold) // the hung upload fails; its retry finds the fence
		<-w.Failed()
		if ac.get("p") != 1 || ac.get("q") != 1 {
			t.Fatalf("acked p to %d and q to %d above the hole", ac.get("p"), ac.get("q"))
		}
		if got := fmt.Sprint(tail(t, r, "a", "t", 0, 0)); got != "[0]" {
			t.Fatalf("partition 0 recovered %s, want [0] (offset 1 was in the hole)", got)
		}
		if got := tail(t, r, "a", "t", 1, 0); len(got) != 21 || got[20] != 20 {
			t.Fatalf("partition 1 recovered %v, want offsets 0..20 (contiguous across the hole)", got)
		}
		for p, want := range map[int32]int64{0: 0, 1: 20} {
			entries, err := r.Entries(ctx, "a", "t", p, 0)
			if err != nil {
				t.Fatal(err)
			}
			end := int64(0)
			for _, e := range entries {
				if e.Entry.First > end {
					break
				}
				end = e.Entry.Last + 1
			}
			if end-1 != want {
				t.Errorf("a reader's view of partition %d ends at %d, recovery at %d", p, end-1, want)
			}
		}
	})
}
