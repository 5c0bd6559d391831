package wal

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/tier"
)

// StoredWithin is the lease for `local` acks: proof that the writer was
// not fenced within the last d. A wall clock stepped back (NTP) must not
// stretch that proof: measured across a backward step, the time since the
// last stored object is unknown, so the lease is not given.
func TestStoredWithinAcrossClockStepBack(t *testing.T) {
	var mu sync.Mutex
	start := time.Now()
	var offset time.Duration // the wall clock's steps
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return start.Add(time.Since(start) + offset).Round(0) // wall time only, as after a UnixNano
	}
	step := func(d time.Duration) {
		mu.Lock()
		offset += d
		mu.Unlock()
	}
	w, err := NewWriter(Config{Store: tier.NewMemStore(), Incarnation: "a", FlushInterval: time.Millisecond, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if w.StoredWithin(time.Second) {
		t.Fatal("lease given before any object was stored")
	}
	ac := newAcks()
	add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
	waitFor(t, "object 0", func() bool { return ac.get("p") == 1 })
	if !w.StoredWithin(time.Hour) {
		t.Fatal("no lease right after an object was stored")
	}
	step(2 * time.Hour)
	if w.StoredWithin(time.Hour) {
		t.Fatal("lease given 2h after the last stored object, want at most 1h")
	}
	step(-3 * time.Hour) // an hour before the object was stored
	if w.StoredWithin(time.Hour) {
		t.Fatal("lease given after the clock stepped back: the time since the last stored object is unknown")
	}
}

// A writer with nothing to write learns within ProbeInterval that another
// broker fenced it, so a broker taken over while idle stops (and its
// broker replaces the incarnation) without waiting for a write.
func TestIdleWriterNoticesItsFence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := tier.NewMemStore()
		w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond, ProbeInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx)
		ac := newAcks()
		add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
		<-ac.ch
		time.Sleep(3 * time.Second) // idle, unfenced: probes find nothing
		synctest.Wait()
		if err := w.Err(); err != nil {
			t.Fatalf("an unfenced idle writer failed: %v", err)
		}
		if _, err := NewReader(s, "b", nil).Fence(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if !errors.Is(w.Err(), ErrFenced) {
			t.Fatalf("an idle writer fenced a probe interval ago reports %v, want ErrFenced", w.Err())
		}
	})
}
