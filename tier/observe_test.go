package tier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/tier/tiertest"
)

// recorder is a RequestObserver that keeps every request.
type recorder struct {
	mu   sync.Mutex
	reqs []tier.Request
}

func (r *recorder) ObserveRequest(req tier.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
}

func (r *recorder) take() []tier.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// The wrapper keeps the store contract: the acceptance suite passes
// through it.
func TestObservedStoreContract(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tier.Store {
		return tier.NewObservedStore(tier.NewMemStore(), &recorder{})
	})
}

// Every request is reported once, with its operation, bytes and outcome;
// a get when its body ends.
func TestObservedStoreReports(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := tier.NewObservedStore(tier.NewMemStore(), rec)
	if _, err := s.Put(ctx, "a/1", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(ctx, "a/1", strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("put-if-absent of an existing key: %v", err)
	}
	rc, _, err := s.Get(ctx, "a/1")
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 2 {
		t.Fatalf("a get was reported before its body was read: %+v", got)
	}
	io.ReadAll(rc)
	rc.Close() // reported at EOF already: not again
	rr, err := s.GetRange(ctx, "a/1", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	rr.Close() // closed unread: reported with 0 bytes
	if _, err := s.Stat(ctx, "nope"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatal(err)
	}
	s.List(ctx, "a/", func(tier.ObjectInfo) error { return nil })
	s.Delete(ctx, "a/1")

	type want struct {
		op    tier.Op
		bytes int64
		class string
	}
	wants := []want{
		{tier.OpGet, 5, "ok"}, {tier.OpGetRange, 0, "ok"}, {tier.OpStat, 0, "not_found"},
		{tier.OpList, 0, "ok"}, {tier.OpDelete, 0, "ok"},
	}
	got := rec.take()
	if len(got) != len(wants) {
		t.Fatalf("got %d reports, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.Op != w.op || g.Bytes != w.bytes || tier.ErrorClass(g.Err) != w.class || g.Duration < 0 {
			t.Errorf("report %d: %v %d bytes %s, want %v %d bytes %s", i, g.Op, g.Bytes, tier.ErrorClass(g.Err), w.op, w.bytes, w.class)
		}
	}
}

// A put reports the object's size (the stored size when the caller gave
// none); a failed put reports none.
func TestObservedStorePutBytes(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := tier.NewObservedStore(tier.NewMemStore(), rec)
	info, err := s.Put(ctx, "k", strings.NewReader("12345678"), -1) // unknown size: the stored size
	if err != nil {
		t.Fatal(err)
	}
	s.PutIfMatch(ctx, "k", info.ETag, strings.NewReader("abc"), 3)
	s.PutIfMatch(ctx, "k", "stale", strings.NewReader("abc"), 3)
	got := rec.take()
	if len(got) != 3 || got[0].Bytes != 8 || got[1].Bytes != 3 || got[2].Bytes != 0 ||
		tier.ErrorClass(got[2].Err) != "precondition_failed" || got[1].Op != tier.OpPutIfMatch {
		t.Fatalf("put reports: %+v", got)
	}
}

// The wrapper passes the inner store's deadlines on.
func TestObservedStoreDeadline(t *testing.T) {
	inner := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{Latency: time.Hour})
	s := tier.NewObservedStore(inner, &recorder{})
	if got, want := tier.RequestTimeout(s, 10), tier.RequestTimeout(inner, 10); got != want {
		t.Fatalf("RequestTimeout through the wrapper %v, want the inner store's %v", got, want)
	}
}

func TestErrorClass(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                     "ok",
		tier.ErrNotFound:                        "not_found",
		tier.ErrPreconditionFailed:              "precondition_failed",
		fmt.Errorf("x: %w", tier.ErrFenced):     "fenced",
		&tier.TimeoutError{Op: "get", Key: "k"}: "timeout",
		context.Canceled:                        "canceled",
		tier.ErrInvalidKey:                      "invalid",
		&tier.StatusError{Status: 503, Code: "SlowDown"}:         "throttled",
		&tier.StatusError{Status: 429}:                           "throttled",
		&tier.StatusError{Status: 503, Err: tier.ErrUnavailable}: "unavailable",
		&tier.StatusError{Status: 500, Code: "InternalError"}:    "server_error",
		&tier.StatusError{Status: 403, Code: "AccessDenied"}:     "client_error",
		errors.New("something else"):                             "other",
	} {
		if got := tier.ErrorClass(err); got != want {
			t.Errorf("ErrorClass(%v) = %q, want %q", err, got, want)
		}
	}
}
