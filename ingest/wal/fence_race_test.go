package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// putHookStore runs a hook, once, when a PutIfAbsent of a given key
// arrives; a hook that returns an error fails that put (before it reaches
// the store), as a lost connection would.
type putHookStore struct {
	tier.Store
	mu    sync.Mutex
	hooks map[string]func() error
	seen  map[string]bool // keys a PutIfAbsent was started for
}

// started reports whether a PutIfAbsent of key has arrived.
func (s *putHookStore) started(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[key]
}

func (s *putHookStore) onPut(key string, f func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hooks == nil {
		s.hooks = map[string]func() error{}
	}
	s.hooks[key] = f
}

func (s *putHookStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	s.mu.Lock()
	f := s.hooks[key]
	delete(s.hooks, key)
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[key] = true
	s.mu.Unlock()
	if f != nil {
		if err := f(); err != nil {
			return tier.ObjectInfo{}, err
		}
	}
	return s.Store.PutIfAbsent(ctx, key, r, size)
}

// A fence whose PUT fails while the writer stores two more objects and
// garbage collection deletes the slot the fence was aimed at (the fence
// PUT then fails, or lands in the freed slot) must still
// land above every object the writer stored: Fence used to retry at the
// same (now free) sequence number, put the fence below the writer's
// newest object, and the writer went on storing and acking (split brain,
// issue 11 defect 1). And recovery must read past such a low fence: the
// objects above it were stored, and may have been acked, before the real
// fence.
func TestFenceLandsAboveObjectsStoredDuringItsRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error // what the fence's first PUT returns after the writer and GC ran
	}{
		{"first put fails", fmt.Errorf("connection reset: %w", tier.ErrUnavailable)},
		{"first put lands in the freed slot", nil},
	} {
		t.Run(tc.name, func(t *testing.T) { testFenceRace(t, tc.err) })
	}
}

func testFenceRace(t *testing.T, putErr error) {
	ctx := context.Background()
	s := &putHookStore{Store: tier.NewMemStore()}
	w, err := NewWriter(Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	ac := newAcks()
	add(t, w, "t", 0, batch(0, 1, "v"), ac.sink("p"))
	waitFor(t, "object 0", func() bool { return ac.get("p") == 1 })

	gc := NewReader(s, "gc", nil)
	allSealed := func(context.Context, string, int32) (int64, error) { return math.MaxInt64, nil }
	s.onPut(Key("a", 1), func() error {
		// While the fence for sequence 1 is on its way, the writer stores
		// objects 1 and 2 and the collector deletes 0 and 1 (sealed, and
		// not the newest).
		for i := int64(1); i <= 2; i++ {
			add(t, w, "t", 0, batch(i, 1, "v"), ac.sink("p"))
			waitFor(t, fmt.Sprintf("object %d", i), func() bool { return ac.get("p") == i+1 })
		}
		if n, err := gc.Collect(ctx, allSealed); err != nil || n != 2 {
			t.Errorf("collect deleted %d (%v), want objects 0 and 1", n, err)
		}
		return putErr
	})
	seq, err := NewReader(s, "b", nil).Fence(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if seq <= 2 {
		t.Errorf("fence at %d, below or at the writer's newest object 2", seq)
	}
	add(t, w, "t", 0, batch(3, 1, "v"), ac.sink("p"))
	waitFor(t, "the writer fenced, or object 3 stored", func() bool { return w.Err() != nil || ac.get("p") == 4 })
	if !errors.Is(w.Err(), ErrFenced) || ac.get("p") != 3 {
		t.Fatalf("after Fence returned %d the writer stored and acked up to %d (error %v); want ErrFenced and no ack past 3", seq, ac.get("p"), w.Err())
	}

	// Recovery (from the sealed end, 2: the collector deleted objects 0
	// and 1 as sealed) sees every record the writer acked, object 2
	// included: it reads past the fences in the freed slots.
	var got []int64
	if err := NewReader(s, "c", nil).ReadTail(ctx, "a", "t", 0, 2, func(b *segment.Batch) error {
		for _, r := range b.Records {
			got = append(got, r.Offset)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[2]" {
		t.Fatalf("recovery read offsets %v; want [2] (object 2, the only one not collected)", got)
	}
}

// An unreadable newest object (not a WAL object, not a fence) is no
// fence: Fence puts its fence above it rather than refusing, so the
// partitions to recover stay openable.
func TestFenceAboveCorruptNewestObject(t *testing.T) {
	ctx := context.Background()
	s := tier.NewMemStore()
	junk := []byte("not a WAL object at all, and not a fence either")
	if _, err := s.PutIfAbsent(ctx, Key("a", 0), bytes.NewReader(junk), int64(len(junk))); err != nil {
		t.Fatal(err)
	}
	seq, err := NewReader(s, "b", nil).Fence(ctx, "a")
	if err != nil || seq != 1 {
		t.Fatalf("Fence = %d, %v; want a fence at 1, above the corrupt object", seq, err)
	}
}
