package tier

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// FaultConfig says which faults a FaultStore injects.
type FaultConfig struct {
	Seed uint64 // makes the injected faults repeatable
	// ErrorRate is the fraction of calls that fail without reaching the
	// inner store, with a retryable 503 SlowDown error.
	ErrorRate float64
	// LostResponseRate is the fraction of writes (puts, deletes) that are
	// applied to the inner store and then reported as failed with a
	// retryable error: the response was "lost".
	LostResponseRate float64
	// Latency is added to every call.
	Latency time.Duration
}

// FaultStats counts calls by operation and the faults injected.
type FaultStats struct {
	Gets, GetRanges, Stats, Lists, Puts, Deletes int64
	InjectedErrors, LostResponses, Unavailable   int64
}

// FaultStore wraps a Store and injects faults, for tests. Safe for
// concurrent use.
type FaultStore struct {
	inner Store
	cfg   FaultConfig

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	down atomic.Bool

	gets, getRanges, stats, lists, puts, deletes atomic.Int64
	injected, lost, unavailable                  atomic.Int64
}

var _ Store = (*FaultStore)(nil)

// NewFaultStore wraps inner.
func NewFaultStore(inner Store, cfg FaultConfig) *FaultStore {
	return &FaultStore{inner: inner, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// SetDown makes every call fail with ErrUnavailable (true) or heals the
// store (false).
func (f *FaultStore) SetDown(down bool) { f.down.Store(down) }

// Stats returns the counters.
func (f *FaultStore) Stats() FaultStats {
	return FaultStats{
		Gets: f.gets.Load(), GetRanges: f.getRanges.Load(), Stats: f.stats.Load(), Lists: f.lists.Load(),
		Puts: f.puts.Load(), Deletes: f.deletes.Load(),
		InjectedErrors: f.injected.Load(), LostResponses: f.lost.Load(), Unavailable: f.unavailable.Load(),
	}
}

func (f *FaultStore) roll(rate float64) bool {
	if rate <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < rate
}

// before runs ahead of every call: latency, outage, injected error.
func (f *FaultStore) before(ctx context.Context, op, key string) error {
	if f.cfg.Latency > 0 {
		t := time.NewTimer(f.cfg.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if f.down.Load() {
		f.unavailable.Add(1)
		return &StatusError{Op: op, Key: key, Code: "Unavailable", Err: ErrUnavailable}
	}
	if f.roll(f.cfg.ErrorRate) {
		f.injected.Add(1)
		return &StatusError{Op: op, Key: key, Status: 503, Code: "SlowDown", Err: fmt.Errorf("injected fault: %w", ErrUnavailable)}
	}
	return nil
}

// after runs after a write applied: maybe lose its response.
func (f *FaultStore) after(op, key string, err error) error {
	if err == nil && f.roll(f.cfg.LostResponseRate) {
		f.lost.Add(1)
		return &StatusError{Op: op, Key: key, Code: "ResponseLost", Err: fmt.Errorf("injected lost response (the write applied): %w", ErrUnavailable)}
	}
	return err
}

// Get implements BucketReader.
func (f *FaultStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	f.gets.Add(1)
	if err := f.before(ctx, "get", key); err != nil {
		return nil, ObjectInfo{}, err
	}
	return f.inner.Get(ctx, key)
}

// GetRange implements BucketReader.
func (f *FaultStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	f.getRanges.Add(1)
	if err := f.before(ctx, "get", key); err != nil {
		return nil, err
	}
	return f.inner.GetRange(ctx, key, off, length)
}

// Stat implements BucketReader.
func (f *FaultStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	f.stats.Add(1)
	if err := f.before(ctx, "stat", key); err != nil {
		return ObjectInfo{}, err
	}
	return f.inner.Stat(ctx, key)
}

// List implements BucketReader.
func (f *FaultStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	f.lists.Add(1)
	if err := f.before(ctx, "list", prefix); err != nil {
		return err
	}
	return f.inner.List(ctx, prefix, fn)
}

// Put implements Store.
func (f *FaultStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	f.puts.Add(1)
	if err := f.before(ctx, "put", key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.Put(ctx, key, r, size)
	return info, f.after("put", key, err)
}

// PutIfAbsent implements Store.
func (f *FaultStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	f.puts.Add(1)
	if err := f.before(ctx, "put-if-absent", key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.PutIfAbsent(ctx, key, r, size)
	return info, f.after("put-if-absent", key, err)
}

// PutIfMatch implements Store.
func (f *FaultStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	f.puts.Add(1)
	if err := f.before(ctx, "put-if-match", key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.PutIfMatch(ctx, key, etag, r, size)
	return info, f.after("put-if-match", key, err)
}

// Delete implements Store.
func (f *FaultStore) Delete(ctx context.Context, key string) error {
	f.deletes.Add(1)
	if err := f.before(ctx, "delete", key); err != nil {
		return err
	}
	return f.after("delete", key, f.inner.Delete(ctx, key))
}

// Close closes the inner store.
func (f *FaultStore) Close() error { return f.inner.Close() }
