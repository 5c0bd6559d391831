package wal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

// listFailStore fails every List once failing is set, as a store that
// stops answering LISTs would.
type listFailStore struct {
	tier.Store
	failing atomic.Bool
}

func (s *listFailStore) List(ctx context.Context, prefix string, fn func(tier.ObjectInfo) error) error {
	if s.failing.Load() {
		return fmt.Errorf("list %s: connection reset: %w", prefix, tier.ErrUnavailable)
	}
	return s.Store.List(ctx, prefix, fn)
}

// A fence that gave up halfway (its PUT at N+1 failed, the ones above
// landed, then its next LIST failed, so Fence returned an error and the
// open that called it failed) leaves fences above the writer's newest
// object N with N+1 still free. Garbage collection then keeps the
// topmost fence as the incarnation's newest object and deletes N and
// everything below it (all sealed). A later Fence must still stop the
// writer: it used to find no WAL object at all, fence 0..MaxPipeline-1,
// return, and the writer stored and acked object N+1 afterwards (split
// brain: the new owner never sees that record).
func TestFenceAfterAnAbandonedFenceAndCollect(t *testing.T) {
	ctx := context.Background()
	mem := tier.NewMemStore()
	w, err := NewWriter(Config{Store: mem, Incarnation: "a", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	ac := newAcks()
	const newest = 9 // N: the writer's newest object
	for i := int64(0); i <= newest; i++ {
		add(t, w, "t", 0, batch(i, 1, "v"), ac.sink("p"))
		waitFor(t, fmt.Sprintf("object %d", i), func() bool { return ac.get("p") == i+1 })
	}

	// The first recoverer: its PUT at N+1 fails (not applied), the PUTs
	// at N+2..N+MaxPipeline land, and then the store stops answering its
	// LISTs: Fence gives up.
	hs := &putHookStore{Store: mem}
	lf := &listFailStore{Store: hs}
	hs.onPut(Key("a", newest+1), func() error { return fmt.Errorf("connection reset: %w", tier.ErrUnavailable) })
	hs.onPut(Key("a", newest+MaxPipeline), func() error { lf.failing.Store(true); return nil })
	if _, err := NewReader(lf, "b", nil).Fence(ctx, "a"); err == nil {
		t.Fatal("the first Fence succeeded; the test needs it to give up halfway")
	}
	if _, err := mem.Stat(ctx, Key("a", newest+1)); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("slot %d: %v; the test needs it free", newest+1, err)
	}

	// Another broker's collector: everything is sealed.
	allSealed := func(context.Context, string, int32) (int64, error) { return math.MaxInt64, nil }
	if _, err := NewReader(mem, "gc", nil).Collect(ctx, allSealed); err != nil {
		t.Fatal(err)
	}

	// The next recoverer (the same open retried, or another broker).
	seq, err := NewReader(mem, "c", nil).Fence(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	add(t, w, "t", 0, batch(newest+1, 1, "after"), ac.sink("p"))
	waitFor(t, "the writer fenced, or the record acked", func() bool { return w.Err() != nil || ac.get("p") > newest+1 })
	if !errors.Is(w.Err(), ErrFenced) || ac.get("p") != newest+1 {
		t.Fatalf("after Fence returned %d the writer acked up to %d (error %v); want ErrFenced and no ack past %d", seq, ac.get("p"), w.Err(), newest+1)
	}
	if seq <= newest {
		t.Errorf("Fence = %d; every object the writer stored (up to %d) must lie below it", seq, newest)
	}
}
