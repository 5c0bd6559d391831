package tier

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"
)

// StatusError is a backend error with an HTTP-like status code. Backends
// return it (wrapped) for failures that are not one of the sentinels, so
// IsRetryable can classify them.
type StatusError struct {
	Op     string // "get", "put", ...
	Key    string
	Status int    // HTTP status, 0 when there was no response
	Code   string // backend error code, e.g. "SlowDown"
	Err    error
}

func (e *StatusError) Error() string {
	msg := "tier: " + e.Op + " " + e.Key + ": "
	if e.Code != "" {
		msg += e.Code + ": "
	}
	if e.Err != nil {
		msg += e.Err.Error()
	}
	return msg
}

func (e *StatusError) Unwrap() error { return e.Err }

// ErrUnavailable is wrapped by errors that mean "the store did not answer
// usefully; trying again later may work" (injected faults, outages).
var ErrUnavailable = errors.New("tier: object store unavailable")

// IsRetryable reports whether err is transient: a timeout, a connection
// failure, a 5xx or 429 answer, or ErrUnavailable. Not-found, precondition
// failures, fencing, invalid keys and context cancellation are final.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrPreconditionFailed), errors.Is(err, ErrFenced),
		errors.Is(err, ErrInvalidKey), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Status == 429 || se.Status >= 500:
			return true
		case se.Code == "SlowDown" || se.Code == "InternalError" || se.Code == "RequestTimeout" || se.Code == "ServiceUnavailable":
			return true
		case se.Status != 0:
			return false
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}

// Backoff retries transient failures with exponential backoff and full
// jitter: attempt n waits a uniformly random time in [0, min(Max, Base*2^n)).
type Backoff struct {
	Base     time.Duration // first delay bound; default 50ms
	Max      time.Duration // largest delay bound; default 5s
	Attempts int           // total tries, the first included; default 6
}

// DefaultBackoff is 6 attempts, 50 ms base, 5 s cap: about 10 s at worst.
func DefaultBackoff() Backoff {
	return Backoff{Base: 50 * time.Millisecond, Max: 5 * time.Second, Attempts: 6}
}

// Delay is the bound of the wait after failed attempt n (0-based), before
// jitter.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Do calls fn until it succeeds, returns a non-retryable error, the
// attempts are used up, or ctx ends. It returns fn's last error.
func (b Backoff) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if b.Attempts <= 0 {
		b = DefaultBackoff()
	}
	var err error
	for n := 0; n < b.Attempts; n++ {
		if err = fn(ctx); err == nil || !IsRetryable(err) {
			return err
		}
		if n == b.Attempts-1 {
			break
		}
		wait := time.Duration(rand.Int64N(int64(b.Delay(n)) + 1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
	return err
}
