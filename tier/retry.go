package tier

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is a retry policy: exponential backoff with full jitter. After
// failed attempt n (0-based) the wait is uniformly random in [0, Delay(n)],
// where Delay(n) = min(Max, Base*2^n). Full jitter spreads the retries of
// many clients that failed together (a 503 burst), so they do not return
// in lockstep.
//
// The zero value is usable: every zero field takes its default.
type Backoff struct {
	Base     time.Duration // bound of the first wait; default 50ms
	Max      time.Duration // largest bound of any wait; default 5s
	Attempts int           // total tries, the first included; default 6 (1 = never retry)
}

// Defaults of Backoff's fields.
const (
	DefaultBackoffBase     = 50 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
	DefaultBackoffAttempts = 6
)

// DefaultBackoff is 6 attempts, 50 ms base, 5 s cap: the five waits are
// bounded by 50+100+200+400+800 ms, 1.55 s in all (0.78 s on average).
func DefaultBackoff() Backoff {
	return Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax, Attempts: DefaultBackoffAttempts}
}

// withDefaults fills zero (or negative) fields.
func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Attempts <= 0 {
		b.Attempts = DefaultBackoffAttempts
	}
	return b
}

// Delay is the bound of the wait after failed attempt n (0-based), before
// jitter: min(Max, Base*2^n).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Wait is a random wait after failed attempt n: uniform in [0, Delay(n)].
func (b Backoff) Wait(n int) time.Duration {
	return time.Duration(rand.Int64N(int64(b.Delay(n)) + 1))
}

// Do calls fn until it succeeds, returns an error that is not retryable
// (see IsRetryable), the attempts are used up, or ctx ends. It returns nil
// or fn's last error; when ctx ends during a wait, that error joined with
// ctx's error. Do never sleeps after the last attempt.
func (b Backoff) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	b = b.withDefaults()
	var err error
	for n := 0; ; n++ {
		if err = fn(ctx); err == nil || !IsRetryable(err) || n == b.Attempts-1 {
			return err
		}
		t := time.NewTimer(b.Wait(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
