package tier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// A lost response applies the write, then reports a retryable error; for
// every kind of write.
func TestFaultStoreLostResponse(t *testing.T) {
	ctx := context.Background()
	mem := tier.NewMemStore()
	f := tier.NewFaultStore(mem, tier.FaultConfig{LostResponseRate: 1})
	check := func(op string, err error) {
		t.Helper()
		var se *tier.StatusError
		if !tier.IsRetryable(err) || !errors.As(err, &se) || !errors.Is(err, tier.ErrUnavailable) {
			t.Fatalf("%s with a lost response: %v, want a retryable *StatusError", op, err)
		}
	}
	_, err := f.Put(ctx, "k", strings.NewReader("v1"), 2)
	check("put", err)
	v1, err := mem.Stat(ctx, "k")
	if err != nil {
		t.Fatalf("a lost response must still apply the write: %v", err)
	}
	_, err = f.PutIfMatch(ctx, "k", v1.ETag, strings.NewReader("v2"), 2)
	check("put-if-match", err)
	if v2, _ := mem.Stat(ctx, "k"); v2.ETag == v1.ETag {
		t.Fatal("put-if-match with a lost response did not apply")
	}
	_, err = f.PutIfAbsent(ctx, "new", strings.NewReader("n"), 1)
	check("put-if-absent", err)
	if _, err := mem.Stat(ctx, "new"); err != nil {
		t.Fatalf("put-if-absent with a lost response did not apply: %v", err)
	}
	check("delete", f.Delete(ctx, "new"))
	if _, err := mem.Stat(ctx, "new"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("delete with a lost response did not apply: %v", err)
	}
	// A write that failed is reported as it failed, not as lost.
	if _, err := f.PutIfAbsent(ctx, "k", strings.NewReader("x"), 1); !errors.Is(err, tier.ErrPreconditionFailed) {
		t.Fatalf("a failed conditional write: %v, want ErrPreconditionFailed", err)
	}
	// Reads never lose responses.
	if _, err := f.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat: %v", err)
	}
	if st := f.Stats(); st.LostResponses != 4 || st.Puts != 4 || st.PutIfAbsents != 2 || st.PutIfMatches != 1 || st.Deletes != 1 || st.Stats != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Injected errors: the configured rate, per operation, retryable, never
// reaching the inner store, and the same for the same seed.
func TestFaultStoreErrorRate(t *testing.T) {
	ctx := context.Background()
	run := func(seed uint64) (string, tier.FaultStats) {
		mem := tier.NewMemStore()
		mem.Put(ctx, "k", strings.NewReader("v"), 1)
		f := tier.NewFaultStore(mem, tier.FaultConfig{Seed: seed, ErrorRate: 0.5, OpErrorRate: map[tier.Op]float64{tier.OpGet: 0, tier.OpPut: 1}})
		var trace strings.Builder
		for i := range 400 {
			_, err := f.Stat(ctx, "k")
			if err != nil {
				if !tier.IsRetryable(err) || !errors.Is(err, tier.ErrUnavailable) {
					t.Fatalf("injected error not retryable: %v", err)
				}
				trace.WriteByte('x')
			} else {
				trace.WriteByte('.')
			}
			if rc, _, err := f.Get(ctx, "k"); err != nil {
				t.Fatalf("get has rate 0 but failed: %v", err)
			} else {
				rc.Close()
			}
			body := fmt.Sprint(i)
			if _, err := f.Put(ctx, "p", strings.NewReader(body), int64(len(body))); err == nil {
				t.Fatal("put has rate 1 but succeeded")
			}
		}
		if _, err := mem.Stat(ctx, "p"); !errors.Is(err, tier.ErrNotFound) {
			t.Fatalf("an injected error reached the inner store: %v", err)
		}
		return trace.String(), f.Stats()
	}
	a, st := run(42)
	fails := strings.Count(a, "x")
	if fails < 150 || fails > 250 {
		t.Fatalf("error rate 0.5 failed %d of 400 stats", fails)
	}
	if st.Stats != 400 || st.Gets != 400 || st.Puts != 400 || st.InjectedErrors != int64(fails)+400 {
		t.Fatalf("stats %+v after %d injected stat failures", st, fails)
	}
	if b, _ := run(42); a != b {
		t.Fatal("the same seed gave a different fault sequence")
	}
	if c, _ := run(43); a == c {
		t.Fatal("another seed gave the same fault sequence")
	}
}

// An outage fails every call with a retryable error until healed.
func TestFaultStoreDown(t *testing.T) {
	ctx := context.Background()
	f := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{})
	if _, err := f.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	f.SetDown(true)
	if !f.Down() {
		t.Fatal("Down() is false after SetDown(true)")
	}
	errs := map[string]error{}
	_, _, errs["get"] = f.Get(ctx, "k")
	_, errs["stat"] = f.Stat(ctx, "k")
	_, errs["put"] = f.Put(ctx, "k2", strings.NewReader("v"), 1)
	errs["list"] = f.List(ctx, "", func(tier.ObjectInfo) error { return nil })
	errs["delete"] = f.Delete(ctx, "k")
	for op, err := range errs {
		if !errors.Is(err, tier.ErrUnavailable) || !tier.IsRetryable(err) {
			t.Errorf("%s while down: %v", op, err)
		}
	}
	if st := f.Stats(); st.Unavailable != 5 {
		t.Fatalf("%d calls counted as unavailable, want 5", st.Unavailable)
	}
	f.SetDown(false)
	if _, err := f.Stat(ctx, "k"); err != nil {
		t.Fatalf("healed store: %v", err)
	}
	if _, err := f.Stat(ctx, "k2"); !errors.Is(err, tier.ErrNotFound) {
		t.Fatalf("a put while down reached the store: %v", err)
	}
}

// Latency delays every call, and a context that ends cuts it short.
func TestFaultStoreLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{Latency: 100 * time.Millisecond})
		start := time.Now()
		if _, err := f.Put(context.Background(), "k", strings.NewReader("v"), 1); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("put took %v, want the 100ms latency", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		start = time.Now()
		if _, err := f.Stat(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 10*time.Millisecond {
			t.Fatalf("stat with a 10ms deadline: %v after %v", err, time.Since(start))
		}
	})
}

// Retrying through the fault store: Backoff carries reads through a high
// error rate.
func TestFaultStoreWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		mem := tier.NewMemStore()
		mem.Put(ctx, "k", strings.NewReader("v"), 1)
		f := tier.NewFaultStore(mem, tier.FaultConfig{Seed: 3, ErrorRate: 0.5})
		bo := tier.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 30}
		for range 50 {
			if err := bo.Do(ctx, func(ctx context.Context) error { _, err := f.Stat(ctx, "k"); return err }); err != nil {
				t.Fatalf("retries through 50%% errors failed: %v", err)
			}
		}
		if f.Stats().InjectedErrors == 0 {
			t.Fatal("no faults injected")
		}
	})
}

// TestManifestSurvivesLostResponses: with every write's response lost, a
// manifest update still reports success (it recognizes its own write) and
// with half the calls failing it still converges.
func TestManifestSurvivesFaults(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		f := tier.NewFaultStore(s, tier.FaultConfig{Seed: 9, LostResponseRate: 1})
		ms := meta.NewManifestStore(f, "lost", 0)
		etag, err := ms.Create(ctx, &meta.Manifest{Topic: "lost", Epoch: 1, Generation: 1})
		if err != nil {
			t.Fatalf("create with a lost response: %v", err)
		}
		for i := 0; i < 5; i++ {
			cur, e, err := ms.Load(ctx)
			if err != nil || e != etag {
				t.Fatalf("load: %v (etag %q, want %q)", err, e, etag)
			}
			next := cur.Clone()
			next.Generation++
			next.Segments = append(next.Segments, meta.SegmentRef{Key: fmt.Sprint("s", i), BaseOffset: int64(i * 10), LastOffset: int64(i*10 + 9)})
			if etag, err = ms.Update(ctx, etag, next); err != nil {
				t.Fatalf("update %d with a lost response: %v", i, err)
			}
		}
		m, _, err := ms.Load(ctx)
		if err != nil || len(m.Segments) != 5 || m.Generation != 6 {
			t.Fatalf("after lost responses: %+v, %v", m, err)
		}
		// Half of all calls fail before reaching the store.
		g := tier.NewFaultStore(s, tier.FaultConfig{Seed: 10, ErrorRate: 0.5})
		ms2 := meta.NewManifestStore(g, "lost", 0)
		for i := 0; i < 5; i++ {
			cur, e, err := ms2.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			next := cur.Clone()
			next.Generation++
			next.LogStartOffset = int64(i)
			if _, err := ms2.Update(ctx, e, next); err != nil {
				t.Fatalf("update %d through 50%% errors: %v", i, err)
			}
		}
	})
}
