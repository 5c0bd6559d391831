package tier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/tier"
)

func TestIsRetryable(t *testing.T) {
	dialRefused := &url.Error{Op: "Put", URL: "http://127.0.0.1:1/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"not found", fmt.Errorf("x: %w", tier.ErrNotFound), false},
		{"precondition failed", fmt.Errorf("x: %w", tier.ErrPreconditionFailed), false},
		{"fenced", tier.ErrFenced, false},
		{"invalid key", tier.ErrInvalidKey, false},
		{"invalid range", tier.ErrInvalidRange, false},
		{"canceled", context.Canceled, false},
		{"canceled while waiting for a retry", errors.Join(tier.ErrUnavailable, context.Canceled), false},
		{"deadline (a timeout)", context.DeadlineExceeded, true},
		{"i/o timeout", os.ErrDeadlineExceeded, true},
		{"unavailable", tier.ErrUnavailable, true},
		{"503 SlowDown", &tier.StatusError{Status: 503, Code: "SlowDown"}, true},
		{"500", &tier.StatusError{Status: 500, Code: "InternalError"}, true},
		{"502", &tier.StatusError{Status: 502}, true},
		{"429", &tier.StatusError{Status: 429}, true},
		{"408", &tier.StatusError{Status: 408}, true},
		{"SlowDown code without status", &tier.StatusError{Code: "SlowDown"}, true},
		{"403", &tier.StatusError{Status: 403, Code: "AccessDenied"}, false},
		{"400", &tier.StatusError{Status: 400, Code: "InvalidArgument"}, false},
		{"404 bucket", &tier.StatusError{Status: 404, Code: "NoSuchBucket"}, false},
		{"connection refused", dialRefused, true},
		{"connection reset", reset, true},
		{"wrapped reset", &tier.StatusError{Op: "get", Err: reset}, true},
		{"broken pipe", syscall.EPIPE, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, false},
		{"unknown", errors.New("mystery"), false},
	} {
		if got := tier.IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := tier.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 5}
	for n, want := range []time.Duration{1, 2, 4, 5, 5, 5} {
		if got := b.Delay(n); got != want*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want*time.Millisecond)
		}
	}
	if got := b.Delay(1000); got != b.Max {
		t.Errorf("Delay(1000) = %v: must stay at Max without overflowing", got)
	}
	// Zero fields take the documented defaults.
	var zero tier.Backoff
	if zero.Delay(0) != tier.DefaultBackoffBase || zero.Delay(100) != tier.DefaultBackoffMax {
		t.Errorf("zero Backoff: Delay(0) %v, Delay(100) %v", zero.Delay(0), zero.Delay(100))
	}
	if d := tier.DefaultBackoff(); d.Base != 50*time.Millisecond || d.Max != 5*time.Second || d.Attempts != 6 {
		t.Errorf("DefaultBackoff() = %+v", d)
	}
}

// Full jitter: waits are spread over the whole of [0, Delay(n)].
func TestBackoffJitter(t *testing.T) {
	b := tier.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n := range 6 {
		bound := b.Delay(n)
		lo, hi := bound, time.Duration(0)
		for range 2000 {
			w := b.Wait(n)
			if w < 0 || w > bound {
				t.Fatalf("Wait(%d) = %v, outside [0, %v]", n, w, bound)
			}
			lo, hi = min(lo, w), max(hi, w)
		}
		if lo > bound/10 || hi < bound*9/10 {
			t.Errorf("Wait(%d) spans only [%v, %v] of [0, %v]: not full jitter", n, lo, hi, bound)
		}
	}
}

// Do on a fake clock: bounded attempts, each wait within its bound.
func TestBackoffDo(t *testing.T) {
	b := tier.Backoff{Base: 10 * time.Millisecond, Max: 40 * time.Millisecond, Attempts: 5}
	synctest.Test(t, func(t *testing.T) {
		var at []time.Time
		err := b.Do(context.Background(), func(context.Context) error {
			at = append(at, time.Now())
			return fmt.Errorf("503: %w", tier.ErrUnavailable)
		})
		if len(at) != 5 || !errors.Is(err, tier.ErrUnavailable) {
			t.Fatalf("always retryable: %d attempts, err %v; want 5 attempts and the last error", len(at), err)
		}
		for n := 1; n < len(at); n++ {
			if wait := at[n].Sub(at[n-1]); wait > b.Delay(n-1) {
				t.Errorf("wait after attempt %d = %v, over its bound %v", n-1, wait, b.Delay(n-1))
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		start, calls := time.Now(), 0
		err := b.Do(context.Background(), func(context.Context) error { calls++; return tier.ErrNotFound })
		if calls != 1 || !errors.Is(err, tier.ErrNotFound) || time.Since(start) != 0 {
			t.Fatalf("a final error: %d calls, %v after %v; want 1 call, no wait", calls, err, time.Since(start))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := b.Do(context.Background(), func(context.Context) error {
			if calls++; calls < 3 {
				return tier.ErrUnavailable
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("recovery after 2 failures: %d calls, %v", calls, err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		// Attempts 1 never retries; zero fields default to 6 attempts.
		calls := 0
		tier.Backoff{Attempts: 1}.Do(context.Background(), func(context.Context) error { calls++; return tier.ErrUnavailable })
		if calls != 1 {
			t.Errorf("Attempts 1: %d calls", calls)
		}
		calls = 0
		tier.Backoff{}.Do(context.Background(), func(context.Context) error { calls++; return tier.ErrUnavailable })
		if calls != tier.DefaultBackoffAttempts {
			t.Errorf("zero Backoff: %d calls, want %d", calls, tier.DefaultBackoffAttempts)
		}
	})
}

// A context that ends during a wait ends Do at once.
func TestBackoffDoHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := tier.Backoff{Base: time.Hour, Max: time.Hour, Attempts: 3}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start, calls := time.Now(), 0
		err := slow.Do(ctx, func(context.Context) error { calls++; return tier.ErrUnavailable })
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tier.ErrUnavailable) || time.Since(start) > time.Second || calls > 2 {
			t.Fatalf("deadline during a wait: %v after %v and %d calls", err, time.Since(start), calls)
		}
		ctx, cancel2 := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Minute); cancel2() }()
		err = slow.Do(ctx, func(context.Context) error { return tier.ErrUnavailable })
		if !errors.Is(err, context.Canceled) || tier.IsRetryable(err) {
			t.Fatalf("canceled during a wait: %v (retryable %v)", err, tier.IsRetryable(err))
		}
	})
}
