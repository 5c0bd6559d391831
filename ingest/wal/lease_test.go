package wal

import (
	"context"
	"errors"
	"io"
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

// heldResponseStore applies a PutIfAbsent of key and then holds its
// response until release is closed, as a connection that went silent
// after the store took the object would.
type heldResponseStore struct {
	tier.Store
	key     string
	applied chan struct{} // closed once the held put was applied
	release chan struct{}
}

func (s *heldResponseStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	info, err := s.Store.PutIfAbsent(ctx, key, r, size)
	if key == s.key {
		close(s.applied)
		<-s.release
	}
	return info, err
}

// The lease is measured from when the PUT that stored an object started,
// not from when the writer committed it: with several PUTs in flight an
// object is committed only once every lower one is stored, which can be
// long after the store applied it, and a fence can have completed in
// between (the takeover's fences go into the free slots above). Here
// objects 0 and 1 were both applied ten seconds ago; object 0's response
// comes only now, so both are committed now, yet nothing proves the
// writer unfenced within the last five seconds.
func TestStoredWithinCountsFromThePutNotTheCommit(t *testing.T) {
	var mu sync.Mutex
	var offset time.Duration
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	}
	st := tier.NewMemStore()
	s := &heldResponseStore{Store: st, key: Key("a", 0), applied: make(chan struct{}), release: make(chan struct{})}
	w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond, MaxInFlight: 2, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	ac := newAcks()
	add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
	<-s.applied
	add(t, w, "t", 0, batch(1, 1, "v"), ac.sink("p"))
	waitFor(t, "object 1 stored", func() bool {
		_, err := st.Stat(context.Background(), Key("a", 1))
		return err == nil
	})
	mu.Lock()
	offset += 10 * time.Second
	mu.Unlock()
	close(s.release)
	waitFor(t, "objects 0 and 1 committed", func() bool { return ac.get("p") == 2 })
	if w.StoredWithin(5 * time.Second) {
		t.Fatal("lease given for 5s although both objects were stored by PUTs that started 10s ago")
	}
	if !w.StoredWithin(time.Hour) {
		t.Fatal("no lease within an hour of the PUTs")
	}
}

// The linger is measured on the runtime's clock, the one its timer runs
// on: a wall clock (Config.Clock) stepped back an hour after an upload
// must not hold the next record for that hour.
func TestLingerSurvivesAWallClockStepBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var offset time.Duration
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return time.Now().Add(offset).Round(0) // wall time only
		}
		w, err := NewWriter(Config{Store: tier.NewMemStore(), Incarnation: "a", FlushInterval: 10 * time.Millisecond, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(context.Background())
		ac := newAcks()
		add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
		<-ac.ch
		mu.Lock()
		offset -= time.Hour
		mu.Unlock()
		add(t, w, "t", 0, batch(1, 1, "v"), ac.sink("p"))
		time.Sleep(time.Second) // a hundred lingers
		synctest.Wait()
		if got := ac.get("p"); got != 2 {
			t.Fatalf("acked to %d a second after the record was added, want 2: the linger waited out the clock's step back", got)
		}
	})
}
