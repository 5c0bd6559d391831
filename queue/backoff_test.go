package queue

import (
	"math"
	"testing"
	"time"
)

var backoffConfigs = []Config{
	{}, // 1s, doubling, up to 10 min
	{BackoffMin: 100 * time.Millisecond, BackoffMax: 5 * time.Second, BackoffMultiplier: 3},
	{BackoffMin: 2 * time.Second, BackoffMax: 2 * time.Second},
	{BackoffMin: 500 * time.Millisecond, BackoffMax: time.Hour, BackoffMultiplier: 1},
	{BackoffMin: 10 * time.Millisecond, BackoffMax: time.Hour, BackoffMultiplier: 1.5},
	{BackoffMin: time.Millisecond, BackoffMax: MaxDelay, BackoffMultiplier: maxBackoffMultiplier},
}

// backoffCap is the upper bound doc'd for Backoff: min(BackoffMax,
// BackoffMin × BackoffMultiplier^(count-1)).
func backoffCap(c Config, count int32) time.Duration {
	c = c.Defaults()
	b := float64(c.BackoffMin) * math.Pow(c.BackoffMultiplier, float64(count-1))
	return time.Duration(min(b*(1+1e-9), float64(c.BackoffMax)))
}

var backoffCounts = []int32{1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 50, 100, 999, MaxMaxDeliveries}

// TestBackoffBounds: every backoff is within [BackoffMin, cap(count)],
// the same for the same seed, offset and count.
func TestBackoffBounds(t *testing.T) {
	for _, cfg := range backoffConfigs {
		for seed := range uint64(4) {
			cfg.Seed = seed * 0x9e3779b97f4a7c15
			c := cfg.Defaults()
			for off := int64(0); off < 2000; off += 7 {
				for _, n := range backoffCounts {
					d := cfg.Backoff(off, n)
					if d < c.BackoffMin || d > backoffCap(cfg, n) {
						t.Fatalf("%+v: backoff(%d, %d) = %v, outside [%v, %v]", cfg, off, n, d, c.BackoffMin, backoffCap(cfg, n))
					}
					if again := cfg.Backoff(off, n); again != d {
						t.Fatalf("%+v: backoff(%d, %d) = %v, then %v", cfg, off, n, d, again)
					}
				}
			}
		}
	}
}

// TestBackoffJitter: the jitter depends on the seed and spreads over the
// whole span.
func TestBackoffJitter(t *testing.T) {
	a, b := Config{Seed: 1}, Config{Seed: 2}
	same, total := 0, 0
	var deciles [10]int
	for off := range int64(5000) {
		for _, n := range []int32{2, 5, 20} {
			total++
			if a.Backoff(off, n) == b.Backoff(off, n) {
				same++
			}
		}
		// count 20: the base is BackoffMax.
		span := DefaultBackoffMax - DefaultBackoffMin
		d := a.Backoff(off, 20) - DefaultBackoffMin
		deciles[min(int(10*d/span), 9)]++
	}
	if same > total/100 {
		t.Fatalf("%d of %d backoffs the same for two seeds", same, total)
	}
	for i, n := range deciles {
		if n < 5000/20 { // a tenth expected; fail only far below
			t.Fatalf("backoff jitter deciles %v: decile %d nearly empty", deciles, i)
		}
	}
}

// TestBackoffGaps: a record nacked (or left to run out) at every delivery
// comes back after exactly its backoff, never before (no hot loop), and
// within the bounds.
func TestBackoffGaps(t *testing.T) {
	for _, cfg := range backoffConfigs {
		for _, how := range []string{"nack", "ran out"} {
			cfg.Seed = 11
			cfg.MaxDeliveries = 40
			cfg.Visibility = 5 * time.Second
			s := New(cfg, 100)
			c := s.Config()
			mustOffer(t, s, t0, Record{Offset: 100})
			now := t0
			for n := int32(1); n < 40; n++ {
				l := receiveOne(t, s, now)
				if l.Count != n {
					t.Fatalf("%+v: delivery %d has count %d", cfg, n, l.Count)
				}
				failed := now + 3
				if how == "nack" {
					settle(t, s, Nack, l, failed, 0, "")
				} else {
					failed = l.Until
					s.Receive(failed, 0, 0, nil)
				}
				wake := s.NextWake()
				gap := wake - failed
				if gap != ms(c.Backoff(100, n)) || gap < ms(c.BackoffMin) || gap > ms(backoffCap(cfg, n)) {
					t.Fatalf("%+v %s: gap after delivery %d is %dms; backoff %v, min %v, cap %v", cfg, how, n, gap, c.Backoff(100, n), c.BackoffMin, backoffCap(cfg, n))
				}
				if wake-1 > failed {
					receiveNone(t, s, wake-1)
				}
				now = wake
			}
		}
	}
}

// TestBackoffHugeCount: a delivery count above any reachable one (from a
// corrupt snapshot) backs off as the highest reachable one: Backoff's
// loop runs at most MaxMaxDeliveries times, whatever the count.
func TestBackoffHugeCount(t *testing.T) {
	for _, c := range []Config{{BackoffMultiplier: 1, BackoffMax: time.Hour}, {BackoffMultiplier: 1.0000001, BackoffMax: MaxDelay}} {
		d := c.Backoff(1, math.MaxInt32)
		if d != c.Backoff(1, MaxMaxDeliveries) || d < time.Second || d > c.BackoffMax {
			t.Fatalf("%+v: backoff %v", c, d)
		}
	}
}
