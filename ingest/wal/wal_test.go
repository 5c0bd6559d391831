package wal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

func batch(base int64, n int, tag string) *segment.Batch {
	b := &segment.Batch{BaseOffset: base, ProducerID: segment.NoProducer}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, segment.Record{Offset: base + int64(i), Timestamp: 1000 + int64(i), Value: fmt.Appendf(nil, "%s-%d", tag, base+int64(i))})
	}
	return b
}

// acks collects sink calls per partition.
type acks struct {
	mu  sync.Mutex
	end map[string]int64
	ch  chan struct{}
}

func newAcks() *acks { return &acks{end: map[string]int64{}, ch: make(chan struct{}, 1000)} }

func (a *acks) sink(name string) Sink {
	return func(end int64) {
		a.mu.Lock()
		a.end[name] = end
		a.mu.Unlock()
		a.ch <- struct{}{}
	}
}

func (a *acks) get(name string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.end[name]
}

func add(t *testing.T, w *Writer, topic string, p int32, b *segment.Batch, s Sink) {
	t.Helper()
	n := EstimateSize(b)
	if err := w.Reserve(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(topic, p, b, n, s); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One flush stores everything buffered, across partitions, in one object,
// and recovery reads each partition back from it.
func TestGroupCommitOneObjectPerFlush(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		fs := tier.NewFaultStore(s, tier.FaultConfig{})
		// A first object, held in flight, makes the batches below wait
		// for one flush together (with nothing in flight the first
		// would be flushed at once).
		hs := &putHookStore{Store: fs}
		hold := make(chan struct{})
		hs.onPut(Key("inc-a", 0), func() error { <-hold; return nil })
		w, err := NewWriter(Config{Store: hs, Incarnation: "inc-a", FlushInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		a := newAcks()
		add(t, w, "warm", 0, batch(0, 1, "w"), a.sink("warm"))
		waitFor(t, "the first object in flight", func() bool { return hs.started(Key("inc-a", 0)) })
		for p := int32(0); p < 10; p++ {
			for i := int64(0); i < 3; i++ {
				add(t, w, "t", p, batch(i*5, 5, fmt.Sprint(p)), a.sink(fmt.Sprint(p)))
			}
		}
		close(hold)
		waitFor(t, "all partitions durable", func() bool {
			for p := 0; p < 10; p++ {
				if a.get(fmt.Sprint(p)) != 15 {
					return false
				}
			}
			return true
		})
		if st := w.Stats(); st.Objects != 2 || st.Buffered != 0 {
			t.Fatalf("stats %+v: want exactly 1 object for one flush of 10 partitions (after the first) and nothing buffered", st)
		}
		if got := fs.Stats().PutIfAbsents; got != 2 {
			t.Fatalf("%d PUTs for two flushes, want 2", got)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		r := NewReader(s, "inc-b", nil)
		if _, err := r.Fence(ctx, "inc-a"); err != nil {
			t.Fatal(err)
		}
		before := fs.Stats()
		var got []int64
		err = r.ReadTail(ctx, "inc-a", "t", 7, 3, func(b *segment.Batch) error {
			for _, rec := range b.Records {
				if want := fmt.Sprintf("7-%d", rec.Offset); string(rec.Value) != want {
					return fmt.Errorf("offset %d holds %q, want %q", rec.Offset, rec.Value, want)
				}
				got = append(got, rec.Offset)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 12 || got[0] != 3 || got[11] != 14 {
			t.Fatalf("tail from 3 = %v, want offsets 3..14", got)
		}
		_ = before
	})
}

// After a quiet spell a batch is flushed at once; the next upload starts
// one FlushInterval (the linger) after the previous one started, or as
// soon as FlushBytes are buffered, if a PUT slot is free; and an object
// stored above one in flight acks nothing until the lower one is stored.
func TestFlushTriggers(t *testing.T) {
	s := &putHookStore{Store: storetest.File(t)}
	hold := make(chan struct{})
	s.onPut(Key("inc", 0), func() error { <-hold; return nil })
	w, err := NewWriter(Config{Store: s, Incarnation: "inc", FlushInterval: time.Hour, FlushBytes: 4096, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	a := newAcks()
	add(t, w, "t", 0, batch(0, 1, "x"), a.sink("p"))
	waitFor(t, "object 0 started at once", func() bool { return s.started(Key("inc", 0)) })
	add(t, w, "t", 0, batch(1, 1, "x"), a.sink("p"))
	time.Sleep(100 * time.Millisecond)
	if s.started(Key("inc", 1)) {
		t.Fatal("a tiny batch was flushed long before the linger")
	}
	big := batch(2, 100, string(make([]byte, 100)))
	add(t, w, "t", 0, big, a.sink("p"))
	waitFor(t, "size-triggered flush stored", func() bool {
		_, err := s.Store.Stat(context.Background(), Key("inc", 1))
		return err == nil
	})
	time.Sleep(50 * time.Millisecond)
	if got := a.get("p"); got != 0 {
		t.Fatalf("acked up to %d while object 0 is still in flight; want nothing acked", got)
	}
	close(hold)
	waitFor(t, "both objects acked in order", func() bool { return a.get("p") == 102 })

	w2, err := NewWriter(Config{Store: s, Incarnation: "inc2", FlushInterval: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close(context.Background())
	hold2 := make(chan struct{})
	s.onPut(Key("inc2", 0), func() error { <-hold2; return nil })
	start := time.Now()
	add(t, w2, "t", 0, batch(0, 1, "y"), a.sink("q"))
	waitFor(t, "object 0 started", func() bool { return s.started(Key("inc2", 0)) })
	add(t, w2, "t", 0, batch(1, 1, "y"), a.sink("q"))
	waitFor(t, "linger-triggered flush", func() bool { return s.started(Key("inc2", 1)) })
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("the second upload started %v after the first, before the 30ms linger", el)
	}
	close(hold2)
	waitFor(t, "acked", func() bool { return a.get("q") == 2 })
}

// Lost responses and failures are retried until stored; each flush
// becomes exactly one object, and no sequence number is skipped.
func TestRetriesAndLostResponses(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		fs := tier.NewFaultStore(s, tier.FaultConfig{Seed: 7, OpErrorRate: map[tier.Op]float64{tier.OpPutIfAbsent: 0.3}, LostResponseRate: 0.3})
		w, err := NewWriter(Config{Store: fs, Incarnation: "inc", FlushInterval: time.Millisecond, RetryMax: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		a := newAcks()
		for i := int64(0); i < 30; i++ {
			add(t, w, "t", 0, batch(i, 1, "v"), a.sink("p"))
			waitFor(t, "ack", func() bool { return a.get("p") == i+1 })
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		st := fs.Stats()
		if st.InjectedErrors == 0 || st.LostResponses == 0 {
			t.Fatalf("faults not exercised: %+v", st)
		}
		r := NewReader(s, "other", nil)
		objs, err := r.List(ctx, "inc")
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range objs {
			if o.Seq != uint64(i) {
				t.Fatalf("object %d has sequence %d: sequence numbers must be dense", i, o.Seq)
			}
		}
		if _, err := r.Fence(ctx, "inc"); err != nil {
			t.Fatal(err)
		}
		next := int64(0)
		if err := r.ReadTail(ctx, "inc", "t", 0, 0, func(b *segment.Batch) error {
			if b.BaseOffset != next {
				return fmt.Errorf("batch at %d, want %d (duplicate or gap)", b.BaseOffset, next)
			}
			next = b.LastOffset() + 1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if next != 30 {
			t.Fatalf("recovered up to %d, want 30", next)
		}
	})
}

// A fenced writer never stores again, never acks the data it could not
// store, and recovery sees exactly what it acked.
func TestFenceStopsWriter(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		w, err := NewWriter(Config{Store: s, Incarnation: "old", FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		a := newAcks()
		add(t, w, "t", 0, batch(0, 2, "v"), a.sink("p"))
		waitFor(t, "first ack", func() bool { return a.get("p") == 2 })
		r := NewReader(s, "new", nil)
		seq, err := r.Fence(ctx, "old")
		if err != nil {
			t.Fatal(err)
		}
		if seq != 1 {
			t.Fatalf("fence at %d, want 1 (after the one stored object)", seq)
		}
		if again, err := r.Fence(ctx, "old"); err != nil || again != seq {
			t.Fatalf("second fence = %d, %v; want the same fence", again, err)
		}
		if r2, err := NewReader(s, "third", nil).Fence(ctx, "old"); err != nil || r2 != seq {
			t.Fatalf("another recoverer's fence = %d, %v; want the existing fence %d", r2, err, seq)
		}
		n := EstimateSize(batch(2, 1, "v"))
		if err := w.Reserve(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := w.Add("t", 0, batch(2, 1, "v"), n, a.sink("p")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Failed():
		case <-time.After(20 * time.Second):
			t.Fatal("writer did not notice its fence")
		}
		if !errors.Is(w.Err(), ErrFenced) {
			t.Fatalf("writer error %v, want ErrFenced", w.Err())
		}
		if a.get("p") != 2 {
			t.Fatalf("fenced writer acked up to %d", a.get("p"))
		}
		if err := w.Reserve(ctx, 1); !errors.Is(err, ErrFenced) {
			t.Fatalf("Reserve after fence: %v, want ErrFenced", err)
		}
		var got int64
		r.ReadTail(ctx, "old", "t", 0, 0, func(b *segment.Batch) error { got = b.LastOffset() + 1; return nil })
		if got != 2 {
			t.Fatalf("recovered to %d, want 2", got)
		}
	})
}

// Reserve blocks while the buffer is full and fails with ErrBackpressure
// when its context ends; a stored flush frees the space.
func TestBackpressure(t *testing.T) {
	s := storetest.File(t)
	fs := tier.NewFaultStore(s, tier.FaultConfig{})
	fs.SetDown(true)
	w, err := NewWriter(Config{Store: fs, Incarnation: "inc", FlushInterval: time.Millisecond, FlushBytes: 1000, MaxBufferedBytes: 1000, RetryMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	a := newAcks()
	if err := w.Reserve(context.Background(), 900); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("t", 0, batch(0, 1, "v"), 900, a.sink("p")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.Reserve(ctx, 200); !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Reserve over the limit during an outage: %v, want ErrBackpressure", err)
	}
	if st := w.Stats(); st.Buffered != 900 {
		t.Fatalf("buffered %d, want 900", st.Buffered)
	}
	fs.SetDown(false)
	if err := w.Reserve(context.Background(), 200); err != nil {
		t.Fatalf("Reserve after the store healed: %v", err)
	}
	w.Release(200)
	waitFor(t, "ack after heal", func() bool { return a.get("p") == 1 })
}

// Collect deletes an object only once every partition in it is sealed
// past it, and never deletes a fence.
func TestCollect(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		// Object 0 (another topic, sealed) is held in flight so that the
		// next two batches share object 1.
		hs := &putHookStore{Store: s}
		hold := make(chan struct{})
		hs.onPut(Key("a", 0), func() error { <-hold; return nil })
		w, err := NewWriter(Config{Store: hs, Incarnation: "a", FlushInterval: time.Millisecond, MaxInFlight: 1})
		if err != nil {
			t.Fatal(err)
		}
		ac := newAcks()
		add(t, w, "other", 0, batch(0, 1, "v"), ac.sink("other"))
		waitFor(t, "obj 0 in flight", func() bool { return hs.started(Key("a", 0)) })
		add(t, w, "t", 0, batch(0, 10, "v"), ac.sink("0"))
		add(t, w, "t", 1, batch(0, 10, "v"), ac.sink("1"))
		close(hold)
		waitFor(t, "obj 1", func() bool { return ac.get("0") == 10 && ac.get("1") == 10 })
		add(t, w, "t", 0, batch(10, 10, "v"), ac.sink("0"))
		waitFor(t, "obj 2", func() bool { return ac.get("0") == 20 })
		w.Close(ctx)
		r := NewReader(s, "b", nil)
		if _, err := r.Fence(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		sealed := map[int32]int64{0: 15, 1: 10}
		end := func(_ context.Context, topic string, p int32) (int64, error) {
			if topic != "t" {
				return math.MaxInt64, nil
			}
			return sealed[p], nil
		}
		n, err := r.Collect(ctx, end)
		if err != nil {
			t.Fatal(err)
		}
		fences := func() (walSeqs []uint64, fenceSeqs []uint64) {
			objs, _ := r.List(ctx, "a")
			for _, o := range objs {
				if h, err := r.header(ctx, o.Key); err == nil && h == nil {
					fenceSeqs = append(fenceSeqs, o.Seq)
				} else {
					walSeqs = append(walSeqs, o.Seq)
				}
			}
			return walSeqs, fenceSeqs
		}
		wals, fs := fences()
		if n != 2 || fmt.Sprint(wals) != "[2]" || len(fs) != MaxPipeline || fs[0] != 3 {
			t.Fatalf("deleted %d, left objects %v and fences %v; want objects 0 and 1 deleted, object 2 and the fences at 3..%d kept", n, wals, fs, 2+MaxPipeline)
		}
		sealed[0] = 20
		if n, err = r.Collect(ctx, end); err != nil || n != 1 {
			t.Fatalf("second collect deleted %d (%v), want 1", n, err)
		}
		if wals, fs := fences(); len(wals) != 0 || len(fs) != MaxPipeline {
			t.Fatalf("left objects %v and fences %v, want only the fences", wals, fs)
		}
	})
}

func TestParseKey(t *testing.T) {
	k := Key("0000000001234-abcd", 42)
	inc, seq, ok := ParseKey(k)
	if !ok || inc != "0000000001234-abcd" || seq != 42 {
		t.Fatalf("ParseKey(%q) = %q %d %v", k, inc, seq, ok)
	}
	for _, bad := range []string{"wal/x/12", "segments/x/00000000000000000001", "wal//00000000000000000001", "wal/x/0000000000000000000a"} {
		if _, _, ok := ParseKey(bad); ok {
			t.Fatalf("ParseKey(%q) accepted a bad key", bad)
		}
	}
}

// Collect never deletes an incarnation's newest object, so a fence placed
// after GC still lands above every sequence number the incarnation used:
// its next write fails (issue 11, defect 1: GC deleted all of a live
// writer's objects, the fence went to sequence 0 and the writer's next
// object was stored and acked).
func TestFenceAfterCollectStopsWriter(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx)
		ac := newAcks()
		for i := int64(0); i < 3; i++ {
			add(t, w, "t", 0, batch(i, 1, "v"), ac.sink("p"))
			waitFor(t, "ack", func() bool { return ac.get("p") == i+1 })
		}
		gc := NewReader(s, "a", nil) // the writer's own collector
		allSealed := func(context.Context, string, int32) (int64, error) { return math.MaxInt64, nil }
		n, err := gc.Collect(ctx, allSealed)
		if err != nil {
			t.Fatal(err)
		}
		objs, _ := gc.List(ctx, "a")
		if n != 2 || len(objs) != 1 || objs[0].Seq != 2 {
			t.Fatalf("collect deleted %d and left %+v; want objects 0 and 1 deleted and the newest (2) kept", n, objs)
		}
		seq, err := NewReader(s, "b", nil).Fence(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if seq != 3 {
			t.Fatalf("fence at %d, want 3 (after every object the writer stored)", seq)
		}
		add(t, w, "t", 0, batch(3, 1, "v"), ac.sink("p"))
		select {
		case <-w.Failed():
		case <-time.After(20 * time.Second):
			t.Fatal("writer stored an object after it was fenced")
		}
		if !errors.Is(w.Err(), ErrFenced) || ac.get("p") != 3 {
			t.Fatalf("writer error %v, acked to %d; want ErrFenced and no ack past 3", w.Err(), ac.get("p"))
		}
		// A second collect keeps the fence and the object below it.
		if _, err := gc.Collect(ctx, allSealed); err != nil {
			t.Fatal(err)
		}
		objs, _ = gc.List(ctx, "a")
		if len(objs) == 0 || objs[len(objs)-1].Seq != 2+MaxPipeline {
			t.Fatalf("after a second collect %+v; want the fences up to %d kept", objs, 2+MaxPipeline)
		}
		if gc.CachedHeaders() > len(objs) {
			t.Fatalf("reader caches %d headers for %d objects", gc.CachedHeaders(), len(objs))
		}
	})
}
