package meta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

var fastRetry = tier.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 50}

type counter struct {
	N      int    `json:"n"`
	Writer string `json:"writer"`
}

func incr(cur meta.Version) ([]byte, error) {
	var c counter
	if cur.Exists() {
		if err := json.Unmarshal(cur.Data, &c); err != nil {
			return nil, err
		}
	}
	return json.Marshal(counter{N: c.N + 1, Writer: meta.NewWriteID()})
}

// Every increment that Update reports stored is applied exactly once,
// although half the writes' answers are lost and a fifth of all calls fail:
// a lost write is recognized as ours by reading it back, not retried on top
// of itself nor taken for another writer's and redone (either would count
// it twice). An Update that reports ErrOutcomeUnknown counts at most once.
func TestCASUpdateExactlyOnceUnderLostAnswers(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		f := tier.NewFaultStore(s, tier.FaultConfig{Seed: 7, LostResponseRate: 0.5, ErrorRate: 0.2})
		c := meta.CAS{Store: f, Retry: fastRetry}
		const writers, each = 4, 10
		var (
			wg                 sync.WaitGroup
			mu                 sync.Mutex
			stored, unknown, n int
		)
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					_, err := c.Update(context.Background(), "counter", incr)
					mu.Lock()
					switch {
					case err == nil:
						stored++
					case errors.Is(err, meta.ErrOutcomeUnknown):
						unknown++
					default:
						t.Errorf("update: %v", err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		v, err := meta.CAS{Store: s}.Read(context.Background(), "counter")
		if err != nil {
			t.Fatal(err)
		}
		var got counter
		if err := json.Unmarshal(v.Data, &got); err != nil {
			t.Fatal(err)
		}
		n = got.N
		if n < stored || n > stored+unknown {
			t.Fatalf("counter = %d after %d stored and %d unknown increments (lost answers %d)", n, stored, unknown, f.Stats().LostResponses)
		}
		if f.Stats().LostResponses == 0 || stored < writers*each/2 {
			t.Fatalf("lost answers %d, stored %d of %d: the test did not test what it should", f.Stats().LostResponses, stored, writers*each)
		}
	})
}

func TestCASSwapConflict(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		c := meta.CAS{Store: s}
		e1, err := c.Swap(ctx, "k", "", []byte("one"))
		if err != nil {
			t.Fatal(err)
		}
		var cerr *meta.ConflictError
		if _, err := c.Swap(ctx, "k", "", []byte("other")); !errors.As(err, &cerr) || !errors.Is(err, tier.ErrPreconditionFailed) {
			t.Fatalf("create over an existing object: %v, want a ConflictError", err)
		}
		if string(cerr.Current.Data) != "one" || cerr.Current.ETag != e1 || cerr.Lost != nil {
			t.Fatalf("conflict reports %q %q lost=%v, want the stored version", cerr.Current.Data, cerr.Current.ETag, cerr.Lost)
		}
		e2, err := c.Swap(ctx, "k", e1, []byte("two"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Swap(ctx, "k", e1, []byte("stale")); !errors.As(err, &cerr) || string(cerr.Current.Data) != "two" || cerr.Current.ETag != e2 {
			t.Fatalf("swap from a stale ETag: %v, want a ConflictError naming version two", err)
		}
		v, err := c.Read(ctx, "k")
		if err != nil || string(v.Data) != "two" {
			t.Fatalf("read %q %v, want two", v.Data, err)
		}
		if v, err := c.Read(ctx, "absent"); err != nil || v.Exists() {
			t.Fatalf("read of an absent key: %+v %v, want the zero Version", v, err)
		}
	})
}

// hookStore runs hook after a conditional write reached the inner store and
// then fails it as if its answer were lost (or the caller's context ended).
type hookStore struct {
	tier.Store
	hook func(ctx context.Context) error
}

func (h hookStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if _, err := h.Store.PutIfMatch(ctx, key, etag, r, size); err != nil {
		return tier.ObjectInfo{}, err
	}
	return tier.ObjectInfo{}, h.hook(ctx)
}

func TestCASSwapLostThenReplacedIsAConflict(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	e1, err := meta.CAS{Store: s}.Swap(ctx, "k", "", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	lost := tier.ErrUnavailable
	h := hookStore{Store: s, hook: func(ctx context.Context) error {
		// Another writer replaces our write before we read it back.
		if _, err := s.Put(ctx, "k", bytes.NewReader([]byte("theirs")), 6); err != nil {
			return err
		}
		return lost
	}}
	_, err = meta.CAS{Store: h, Retry: fastRetry}.Swap(ctx, "k", e1, []byte("ours"))
	var cerr *meta.ConflictError
	if !errors.As(err, &cerr) || string(cerr.Current.Data) != "theirs" || !errors.Is(cerr.Lost, lost) {
		t.Fatalf("swap whose write was lost and replaced: %v, want a ConflictError with Lost set", err)
	}
}

func TestCASSwapSettledAfterCallerCancels(t *testing.T) {
	s := storetest.File(t)
	e1, err := meta.CAS{Store: s}.Swap(context.Background(), "k", "", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := hookStore{Store: s, hook: func(context.Context) error { cancel(); return context.Canceled }}
	e2, err := meta.CAS{Store: h, Retry: fastRetry}.Swap(ctx, "k", e1, []byte("two"))
	if err != nil {
		t.Fatalf("a write that applied before the caller canceled: %v, want it settled as stored", err)
	}
	if v, _ := (meta.CAS{Store: s}).Read(context.Background(), "k"); v.ETag != e2 || string(v.Data) != "two" {
		t.Fatalf("stored %q at %q, Swap said %q", v.Data, v.ETag, e2)
	}
}

func TestCASOutcomeUnknownWhenReadBackFails(t *testing.T) {
	s := storetest.File(t)
	e1, err := meta.CAS{Store: s}.Swap(context.Background(), "k", "", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	f := tier.NewFaultStore(s, tier.FaultConfig{LostResponseRate: 1, OpErrorRate: map[tier.Op]float64{tier.OpGet: 1}})
	_, err = meta.CAS{Store: f, Retry: tier.Backoff{Base: time.Millisecond, Attempts: 3}}.Swap(context.Background(), "k", e1, []byte("two"))
	if !errors.Is(err, meta.ErrOutcomeUnknown) {
		t.Fatalf("lost answer and failed read-back: %v, want ErrOutcomeUnknown", err)
	}
	// Retrying the same bytes once the store is back is recognized as ours.
	if _, err := (meta.CAS{Store: s}).Swap(context.Background(), "k", e1, []byte("two")); err != nil {
		t.Fatalf("retry of the same write: %v", err)
	}
}
