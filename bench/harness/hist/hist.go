// Package hist records latencies in an HDR histogram (1 µs to 5 min, 3
// significant digits) and reports percentiles, safely from many goroutines.
package hist

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Hist is a concurrency-safe latency histogram in microseconds.
type Hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// New returns an empty histogram.
func New() *Hist {
	return &Hist{h: hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)}
}

// Record adds one observation (clamped to the histogram's range).
func (h *Hist) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n observations of d.
func (h *Hist) RecordN(d time.Duration, n int64) {
	us := d.Microseconds()
	if us < 1 {
		us = 1
	}
	if max := h.h.HighestTrackableValue(); us > max {
		us = max
	}
	h.mu.Lock()
	h.h.RecordValues(us, n)
	h.mu.Unlock()
}

// Count is the number of observations.
func (h *Hist) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Quantile returns the q-quantile (0 < q <= 1), e.g. 0.99 for p99.
func (h *Hist) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Duration(h.h.ValueAtQuantile(q*100)) * time.Microsecond
}

// Max is the largest observation.
func (h *Hist) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Duration(h.h.Max()) * time.Microsecond
}

// Summary is the percentiles reported for a latency distribution, in ms.
type Summary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	// Curve is the latency at each quantile of CurveQuantiles, for plots.
	Curve []float64 `json:"curve_ms,omitempty"`
}

// CurveQuantiles are the quantiles of a percentile curve: 0, 0.9, 0.99, ...
// spaced evenly in "number of nines".
var CurveQuantiles = []float64{0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summarize returns the percentiles.
func (h *Hist) Summarize() Summary {
	s := Summary{Count: h.Count()}
	if s.Count == 0 {
		return s
	}
	s.P50, s.P90, s.P99, s.P999 = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	s.Max = ms(h.Max())
	for _, q := range CurveQuantiles {
		s.Curve = append(s.Curve, ms(h.Quantile(q)))
	}
	return s
}
