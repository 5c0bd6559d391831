package hist

import (
	"math"
	"sync"
	"testing"
	"time"
)

func near(got, want time.Duration) bool {
	return math.Abs(float64(got-want)) <= 0.002*float64(want)+float64(time.Microsecond)
}

func TestUniformPercentiles(t *testing.T) {
	h := New()
	// 1..10000 µs, once each: p50 = 5000 µs, p99 = 9900 µs, p999 = 9990 µs.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		if got := h.Quantile(c.q); !near(got, c.want) {
			t.Errorf("q%.3f = %v, want %v", c.q, got, c.want)
		}
	}
	s := h.Summarize()
	if s.Count != 10000 || math.Abs(s.P99-9.9) > 0.05 || len(s.Curve) != len(CurveQuantiles) {
		t.Fatalf("summary %+v", s)
	}
	for i := 1; i < len(s.Curve); i++ {
		if s.Curve[i] < s.Curve[i-1] {
			t.Fatalf("curve not monotonic: %v", s.Curve)
		}
	}
}

// A stall shows in the tail: 1% of observations at 100 ms move p99.9, not
// p50.
func TestTailStall(t *testing.T) {
	h := New()
	h.RecordN(time.Millisecond, 9900)
	h.RecordN(100*time.Millisecond, 100)
	if got := h.Quantile(0.5); !near(got, time.Millisecond) {
		t.Fatalf("p50 = %v", got)
	}
	if got := h.Quantile(0.999); !near(got, 100*time.Millisecond) {
		t.Fatalf("p999 = %v", got)
	}
	if got := h.Quantile(0.99); !near(got, time.Millisecond) {
		t.Fatalf("p99 = %v (exactly 99%% are 1 ms)", got)
	}
}

func TestClampAndConcurrency(t *testing.T) {
	h := New()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.Record(0)         // clamped up to 1 µs
				h.Record(time.Hour) // clamped down to the range's top
			}
		}()
	}
	wg.Wait()
	if h.Count() != 16000 {
		t.Fatalf("count %d", h.Count())
	}
	if h.Max() < 4*time.Minute {
		t.Fatalf("max %v", h.Max())
	}
	if (New()).Summarize().Count != 0 {
		t.Fatal("empty summary")
	}
}
