package tier

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"
)

// ErrTimeout is wrapped by the error of a request that got no complete
// answer within its deadline (see Deadline): the store is hung (a
// connection went silent, as when a NAT or load balancer forgets it) or
// far slower than healthy. The outcome is unknown: a write may or may not
// have applied, so a conditional write that timed out is resolved by
// reading the object back, never taken for a success or a lost race.
// IsRetryable reports it retryable.
var ErrTimeout = errors.New("tier: object store request timed out")

// TimeoutError is a request that got no complete answer within its
// deadline. It wraps ErrTimeout (and the transport's timeout error, if
// that is what ended it). Use errors.Is(err, ErrTimeout) to test for it.
type TimeoutError struct {
	Op    string        // "put-if-absent", "get", ...
	Key   string        // the object key (or prefix, or bucket)
	After time.Duration // the deadline that passed; 0 when the transport's own timeout hit
	Err   error         // the transport's timeout error; nil for the request deadline
}

func (e *TimeoutError) Error() string {
	msg := "tier: " + e.Op + " " + e.Key + ": no complete answer"
	if e.After > 0 {
		msg += " within the request's deadline of " + e.After.Round(time.Millisecond).String()
	} else if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	msg += ": the object store is hung or too slow"
	if strings.HasPrefix(e.Op, "put") || e.Op == "delete" {
		msg += "; the write may or may not have applied (read the object back to know)"
	}
	return msg
}

func (e *TimeoutError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrTimeout}
	}
	return []error{ErrTimeout, e.Err}
}

// Deadline is how long one object-store request may take: Base plus the
// time to move its bytes at MinThroughput. A request that has no complete
// answer by then fails with a *TimeoutError (ErrTimeout).
//
// The defaults fit a store on the same LAN or in the same region: a
// healthy one answers a small request in milliseconds (S3's slowest tail
// in well under a second) and moves 50 MiB/s or more per connection, so a
// request past its deadline is almost surely stuck, and retrying it on a
// new connection costs one deadline instead of minio-go's one-minute
// header timeout.
//
// The zero value is usable: every zero field takes its default.
type Deadline struct {
	// Base is the time any request may take, whatever its size: the round
	// trips, the store's own work (a lookup, an fsync) and a pause of a
	// healthy but loaded store. Default DefaultDeadlineBase (5 s).
	Base time.Duration
	// MinThroughput is the slowest transfer, in bytes per second, that
	// still counts as healthy: a request that moves n bytes may take
	// n/MinThroughput more than Base. Default DefaultMinThroughput
	// (8 MiB/s: a 1 Gbit/s LAN moves about 110 MiB/s, so this is a store
	// an order of magnitude slower than healthy; an 8 MiB WAL object gets
	// 6 s, a 64 MiB segment 13 s).
	MinThroughput int64
}

// Defaults of Deadline's fields.
const (
	DefaultDeadlineBase  = 5 * time.Second
	DefaultMinThroughput = 8 << 20 // bytes per second
)

func (d Deadline) withDefaults() Deadline {
	if d.Base <= 0 {
		d.Base = DefaultDeadlineBase
	}
	if d.MinThroughput <= 0 {
		d.MinThroughput = DefaultMinThroughput
	}
	return d
}

// For is the deadline of a request that moves size bytes (a negative size
// counts as 0): Base + size/MinThroughput.
func (d Deadline) For(size int64) time.Duration {
	d = d.withDefaults()
	if size <= 0 {
		return d.Base
	}
	extra := float64(size) / float64(d.MinThroughput) * float64(time.Second)
	if extra >= float64(math.MaxInt64-d.Base) {
		return math.MaxInt64
	}
	return d.Base + time.Duration(extra)
}

// Deadliner is implemented by stores that bound each of their requests by
// a deadline (S3Store; FaultStore passes its inner store's on).
type Deadliner interface {
	// RequestTimeout is the deadline the store gives one request that
	// moves size bytes.
	RequestTimeout(size int64) time.Duration
}

// RequestTimeout is how long one request to s that moves size bytes may
// take: s's own deadline if it is a Deadliner, else the default
// Deadline's. Callers that bound an attempt themselves (the WAL writer)
// use it, so both bounds agree.
func RequestTimeout(s BucketReader, size int64) time.Duration {
	if d, ok := s.(Deadliner); ok {
		return d.RequestTimeout(size)
	}
	return Deadline{}.For(size)
}

// errDeadlinePassed is the cancellation cause of an attempt whose deadline
// passed.
var errDeadlinePassed = errors.New("tier: request deadline passed")

// attempt bounds one request: when its deadline passes, its context is
// canceled (cause errDeadlinePassed). The deadline can be moved while the
// request runs: a Get learns its size from the answer, a List or a
// streamed upload gets a new one each time it makes progress, and the
// clock can be paused meanwhile (the caller's callback, the caller's body
// reader).
type attempt struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu    sync.Mutex // guards the fields below
	timer *time.Timer
	limit time.Duration // the deadline now running, for the error
	over  bool          // the deadline passed, or done was called: no more resets
}

// startAttempt starts an attempt under parent with deadline d from now.
func startAttempt(parent context.Context, d time.Duration) *attempt {
	ctx, cancel := context.WithCancelCause(parent)
	a := &attempt{parent: parent, ctx: ctx, cancel: cancel, limit: d}
	a.timer = time.AfterFunc(d, a.expire)
	return a
}

func (a *attempt) expire() {
	a.mu.Lock()
	a.over = true
	a.mu.Unlock()
	a.cancel(errDeadlinePassed)
}

// reset gives the attempt a new deadline d from now, unless the old one
// has passed already. (A reset racing the timer's firing may lose: then
// the deadline passed.)
func (a *attempt) reset(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.over {
		return
	}
	a.limit = d
	a.timer.Stop()
	a.timer.Reset(d)
}

// pause stops the clock until the next reset.
func (a *attempt) pause() {
	a.mu.Lock()
	if !a.over {
		a.timer.Stop()
	}
	a.mu.Unlock()
}

// done ends the attempt and releases its context.
func (a *attempt) done() {
	a.mu.Lock()
	a.over = true
	a.timer.Stop()
	a.mu.Unlock()
	a.cancel(nil)
}

// timedOut reports whether the attempt ended because its deadline passed
// (and not because the caller's context ended).
func (a *attempt) timedOut() bool {
	return a.parent.Err() == nil && errors.Is(context.Cause(a.ctx), errDeadlinePassed)
}

// timeoutErr is the error of a request whose deadline passed.
func (a *attempt) timeoutErr(op, key string) error {
	a.mu.Lock()
	limit := a.limit
	a.mu.Unlock()
	return &TimeoutError{Op: op, Key: key, After: limit}
}
