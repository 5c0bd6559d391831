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

// Op names a Store operation, for per-operation fault rates.
type Op int

// The operations of Store.
const (
	OpGet Op = iota
	OpGetRange
	OpStat
	OpList
	OpPut
	OpPutIfAbsent
	OpPutIfMatch
	OpDelete
	numOps
)

var opNames = [numOps]string{"get", "get-range", "stat", "list", "put", "put-if-absent", "put-if-match", "delete"}

func (o Op) String() string {
	if o < 0 || o >= numOps {
		return fmt.Sprintf("Op(%d)", int(o))
	}
	return opNames[o]
}

func (o Op) isWrite() bool { return o >= OpPut }

// FaultConfig says which faults a FaultStore injects. The zero value
// injects none.
type FaultConfig struct {
	// Seed seeds the fault decisions: the same seed and the same sequence
	// of calls give the same faults. Default 0 (a valid seed).
	Seed uint64
	// ErrorRate is the fraction of calls (0..1) that fail before reaching
	// the inner store, with a retryable 503 SlowDown *StatusError wrapping
	// ErrUnavailable. Default 0.
	ErrorRate float64
	// OpErrorRate overrides ErrorRate for the operations it names.
	OpErrorRate map[Op]float64
	// LostResponseRate is the fraction of writes (puts of every kind,
	// deletes) that are applied to the inner store and then reported as
	// failed, with a retryable error wrapping ErrUnavailable: the response
	// was lost. Default 0.
	LostResponseRate float64
	// Latency is added before every call (the wait ends early if the
	// call's context ends). Default 0.
	Latency time.Duration
}

// FaultStats counts the calls a FaultStore received, by operation (failed
// ones included), and the faults it injected.
type FaultStats struct {
	Gets, GetRanges, Stats, Lists int64
	// Puts counts every put (S3's PUT request class); PutIfAbsents and
	// PutIfMatches count the conditional ones among them.
	Puts, PutIfAbsents, PutIfMatches int64
	Deletes                          int64

	InjectedErrors int64 // calls failed by ErrorRate / OpErrorRate
	LostResponses  int64 // writes applied, then reported as failed
	Unavailable    int64 // calls refused while the store was down
}

// FaultStore wraps a Store and injects faults: errors, lost responses,
// latency, and outages switched on and off at run time. It is the working
// fake that retry and recovery code is tested against. Safe for concurrent
// use; the fault sequence is deterministic only for a deterministic
// sequence of calls.
type FaultStore struct {
	inner Store
	cfg   FaultConfig

	rngMu sync.Mutex // guards rng
	rng   *rand.Rand

	down atomic.Bool

	calls                            [numOps]atomic.Int64
	injected, lost, unavailableCalls atomic.Int64
}

var _ Store = (*FaultStore)(nil)

// NewFaultStore wraps inner. Closing the FaultStore closes inner.
func NewFaultStore(inner Store, cfg FaultConfig) *FaultStore {
	return &FaultStore{inner: inner, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// Inner is the wrapped store.
func (f *FaultStore) Inner() Store { return f.inner }

// SetDown makes every call fail, without reaching the inner store, with a
// retryable 503 error wrapping ErrUnavailable (true), or heals the store
// (false).
func (f *FaultStore) SetDown(down bool) { f.down.Store(down) }

// Down reports whether the store is down.
func (f *FaultStore) Down() bool { return f.down.Load() }

// Stats returns the counters.
func (f *FaultStore) Stats() FaultStats {
	c := func(o Op) int64 { return f.calls[o].Load() }
	return FaultStats{
		Gets: c(OpGet), GetRanges: c(OpGetRange), Stats: c(OpStat), Lists: c(OpList),
		Puts: c(OpPut) + c(OpPutIfAbsent) + c(OpPutIfMatch), PutIfAbsents: c(OpPutIfAbsent), PutIfMatches: c(OpPutIfMatch),
		Deletes:        c(OpDelete),
		InjectedErrors: f.injected.Load(), LostResponses: f.lost.Load(), Unavailable: f.unavailableCalls.Load(),
	}
}

// roll draws whether a fault of the given rate happens.
func (f *FaultStore) roll(rate float64) bool {
	if rate <= 0 {
		return false
	}
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	return f.rng.Float64() < rate
}

// before runs ahead of every call: count, latency, outage, injected error.
func (f *FaultStore) before(ctx context.Context, op Op, key string) error {
	f.calls[op].Add(1)
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
		f.unavailableCalls.Add(1)
		return &StatusError{Op: op.String(), Key: key, Status: 503, Code: "ServiceUnavailable", Err: fmt.Errorf("store is down: %w", ErrUnavailable)}
	}
	rate, ok := f.cfg.OpErrorRate[op]
	if !ok {
		rate = f.cfg.ErrorRate
	}
	if f.roll(rate) {
		f.injected.Add(1)
		return &StatusError{Op: op.String(), Key: key, Status: 503, Code: "SlowDown", Err: fmt.Errorf("injected fault: %w", ErrUnavailable)}
	}
	return nil
}

// after runs after a write reached the inner store: if it applied, maybe
// lose its response.
func (f *FaultStore) after(op Op, key string, err error) error {
	if err == nil && op.isWrite() && f.roll(f.cfg.LostResponseRate) {
		f.lost.Add(1)
		return &StatusError{Op: op.String(), Key: key, Code: "ResponseLost", Err: fmt.Errorf("injected lost response (the write applied): %w", ErrUnavailable)}
	}
	return err
}

// Get implements BucketReader.
func (f *FaultStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	if err := f.before(ctx, OpGet, key); err != nil {
		return nil, ObjectInfo{}, err
	}
	return f.inner.Get(ctx, key)
}

// GetRange implements BucketReader.
func (f *FaultStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := f.before(ctx, OpGetRange, key); err != nil {
		return nil, err
	}
	return f.inner.GetRange(ctx, key, off, length)
}

// Stat implements BucketReader.
func (f *FaultStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := f.before(ctx, OpStat, key); err != nil {
		return ObjectInfo{}, err
	}
	return f.inner.Stat(ctx, key)
}

// List implements BucketReader.
func (f *FaultStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := f.before(ctx, OpList, prefix); err != nil {
		return err
	}
	return f.inner.List(ctx, prefix, fn)
}

// Put implements Store.
func (f *FaultStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	if err := f.before(ctx, OpPut, key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.Put(ctx, key, r, size)
	return info, f.after(OpPut, key, err)
}

// PutIfAbsent implements Store.
func (f *FaultStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	if err := f.before(ctx, OpPutIfAbsent, key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.PutIfAbsent(ctx, key, r, size)
	return info, f.after(OpPutIfAbsent, key, err)
}

// PutIfMatch implements Store.
func (f *FaultStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	if err := f.before(ctx, OpPutIfMatch, key); err != nil {
		return ObjectInfo{}, err
	}
	info, err := f.inner.PutIfMatch(ctx, key, etag, r, size)
	return info, f.after(OpPutIfMatch, key, err)
}

// Delete implements Store. A lost response is injected only for deletes
// that succeeded.
func (f *FaultStore) Delete(ctx context.Context, key string) error {
	if err := f.before(ctx, OpDelete, key); err != nil {
		return err
	}
	return f.after(OpDelete, key, f.inner.Delete(ctx, key))
}

// Close closes the inner store.
func (f *FaultStore) Close() error { return f.inner.Close() }

var _ Deadliner = (*FaultStore)(nil)

// RequestTimeout implements Deadliner: the inner store's deadline (see
// tier.RequestTimeout) plus the injected Latency.
func (f *FaultStore) RequestTimeout(size int64) time.Duration {
	return RequestTimeout(f.inner, size) + f.cfg.Latency
}
