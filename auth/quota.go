package auth

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Quotas are per-principal byte rates of produce and of fetch, each a
// token bucket (golang.org/x/time/rate) holding one second of its rate.
// A request waits until its principal's bucket is out of debt, then its
// bytes are taken (a produce request's before it is handled, a fetch
// response's after it is sent), so the bucket may go into debt by one
// request and the next one waits it off: the principal's rate over time
// is its quota, and nothing is ever refused for it. The wait ends early
// only with the caller's context.
type Quotas struct {
	cfg QuotaConfig

	mu      sync.Mutex // guards buckets
	buckets map[quotaKey]*rate.Limiter

	delays  atomic.Int64 // waits so far
	delayed atomic.Int64 // their total, in nanoseconds
}

// QuotaConfig configures Quotas.
type QuotaConfig struct {
	// Default rates of every principal, in bytes per second; 0: unlimited.
	ProduceBytesPerSecond, FetchBytesPerSecond int64
	// Per-principal rates (the token file's) replacing the defaults; a
	// nil field keeps the default, 0 is unlimited.
	Principals map[string]QuotaOverride
	// Now and Sleep are the clock (tests pass a fake one). Defaults:
	// time.Now, and a timer that ends early with ctx.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// QuotaOverride is one principal's rates.
type QuotaOverride struct {
	ProduceBytesPerSecond, FetchBytesPerSecond *int64
}

// Validate reports a negative rate.
func (c *QuotaConfig) Validate() error {
	if c.ProduceBytesPerSecond < 0 || c.FetchBytesPerSecond < 0 {
		return fmt.Errorf("auth: quotas are bytes per second, 0 for unlimited (got produce %d, fetch %d)", c.ProduceBytesPerSecond, c.FetchBytesPerSecond)
	}
	return nil
}

// QuotaConfigFromTokens adds the token file's per-principal rates to cfg.
func QuotaConfigFromTokens(cfg QuotaConfig, t *Tokens) QuotaConfig {
	for _, e := range t.Entries() {
		if e.ProduceBytesPerSecond == nil && e.FetchBytesPerSecond == nil {
			continue
		}
		if cfg.Principals == nil {
			cfg.Principals = map[string]QuotaOverride{}
		}
		cfg.Principals[e.Name] = QuotaOverride{ProduceBytesPerSecond: e.ProduceBytesPerSecond, FetchBytesPerSecond: e.FetchBytesPerSecond}
	}
	return cfg
}

type quotaKey struct {
	principal string
	kind      QuotaKind
}

// NewQuotas returns the quotas of cfg.
func NewQuotas(cfg QuotaConfig) (*Quotas, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return &Quotas{cfg: cfg, buckets: map[quotaKey]*rate.Limiter{}}, nil
}

// Rate is principal's rate of kind in bytes per second; 0: unlimited.
func (q *Quotas) Rate(principal string, kind QuotaKind) int64 {
	r := q.cfg.ProduceBytesPerSecond
	if kind == FetchQuota {
		r = q.cfg.FetchBytesPerSecond
	}
	if o, ok := q.cfg.Principals[principal]; ok {
		v := o.ProduceBytesPerSecond
		if kind == FetchQuota {
			v = o.FetchBytesPerSecond
		}
		if v != nil {
			r = *v
		}
	}
	return r
}

func (q *Quotas) bucket(principal string, kind QuotaKind) *rate.Limiter {
	if q == nil || kind == NoQuota {
		return nil
	}
	k := quotaKey{principal, kind}
	q.mu.Lock()
	defer q.mu.Unlock()
	if b, ok := q.buckets[k]; ok {
		return b
	}
	var b *rate.Limiter
	if r := q.Rate(principal, kind); r > 0 {
		b = rate.NewLimiter(rate.Limit(r), int(min(r, 1<<30)))
	}
	q.buckets[k] = b // nil: unlimited
	return b
}

// Wait waits until principal's bucket of kind is out of debt.
func (q *Quotas) Wait(ctx context.Context, principal string, kind QuotaKind) error {
	b := q.bucket(principal, kind)
	if b == nil {
		return nil
	}
	// Less than a byte of debt is none: the bucket's float arithmetic
	// leaves crumbs (a sleep of exactly the debt can end a fraction of a
	// byte short), which would count as a wait of their own.
	tokens := b.TokensAt(q.cfg.Now())
	if tokens > -1 {
		return nil
	}
	d := time.Duration(math.Ceil(-tokens / float64(b.Limit()) * float64(time.Second)))
	q.delays.Add(1)
	q.delayed.Add(int64(d))
	return q.cfg.Sleep(ctx, d)
}

// Charge takes n bytes from principal's bucket of kind (into debt, if it
// holds fewer).
func (q *Quotas) Charge(principal string, kind QuotaKind, n int) {
	b := q.bucket(principal, kind)
	if b == nil || n <= 0 {
		return
	}
	now := q.cfg.Now()
	for burst := b.Burst(); n > 0; {
		k := min(n, burst)
		b.ReserveN(now, k) // never refused: k is within the burst
		n -= k
	}
}

// Delays reports how many waits the quotas imposed and their total.
func (q *Quotas) Delays() (count int64, total time.Duration) {
	if q == nil {
		return 0, 0
	}
	return q.delays.Load(), time.Duration(q.delayed.Load())
}
