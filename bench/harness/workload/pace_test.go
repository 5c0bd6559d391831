package workload

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The open-loop schedule: record i is due at i/rate, record 0 at once;
// the count is bounded by the phase and by the record limit; the sender
// sleeps until the next due time, never past a millisecond.
func TestSchedule(t *testing.T) {
	s, err := newSchedule(1000, 2*time.Second, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if s.limit != 2000 {
		t.Fatalf("limit %d, want 2000 (1,000/s for 2 s)", s.limit)
	}
	for _, c := range []struct {
		el   time.Duration
		want int64
	}{
		{-time.Millisecond, 0},
		{0, 1}, // record 0 is due at the start, not one interval later
		{999 * time.Microsecond, 1},
		{time.Millisecond, 2},
		{1500 * time.Millisecond, 1501},
		{time.Hour, 2000}, // never more than the limit
	} {
		if got := s.due(c.el); got != c.want {
			t.Errorf("due(%v) = %d, want %d", c.el, got, c.want)
		}
	}
	if got := s.at(0); got != 0 {
		t.Errorf("at(0) = %v", got)
	}
	if got := s.at(1500); got != 1500*time.Millisecond {
		t.Errorf("at(1500) = %v, want 1.5s", got)
	}
	// A record is never sent before the time it is stamped with (its
	// latency would read short), and is sent as soon as that time comes.
	for i := int64(1); i < s.limit; i += 97 {
		if n := s.due(s.at(i) - time.Nanosecond); n > i {
			t.Fatalf("record %d (stamped %v) is due already 1 ns earlier: due = %d", i, s.at(i), n)
		}
		if n := s.due(s.at(i) + time.Microsecond); n <= i {
			t.Fatalf("record %d (stamped %v) is not due 1 µs after: due = %d", i, s.at(i), n)
		}
	}
	// Sleep until the next record: 0.4 ms left of record 3's interval.
	if got := s.wait(3, 2600*time.Microsecond); got != 400*time.Microsecond {
		t.Errorf("wait = %v, want 400µs", got)
	}
	if got := s.wait(3, 3*time.Millisecond); got != 0 {
		t.Errorf("wait at the due time = %v, want 0", got)
	}
	slow, _ := newSchedule(10, time.Minute, 1<<30)
	if got := slow.wait(1, 0); got != time.Millisecond {
		t.Errorf("wait at 10/s = %v, want the 1 ms cap", got)
	}
	if got := s.wait(2000, 0); got != 0 {
		t.Errorf("wait with nothing left = %v", got)
	}
	// The phase's last record is due by its end, whatever the rate: an
	// open-loop sender stops when the schedule is done.
	for _, rate := range []float64{1000, 3, 333.3, 7e5} {
		for _, dur := range []time.Duration{400 * time.Millisecond, time.Second, 1234567 * time.Microsecond} {
			s, _ := newSchedule(rate, dur, 1<<40)
			if s.due(dur) != s.limit || s.at(s.limit-1) > dur {
				t.Errorf("%v/s for %v: due(end) = %d of %d, last due at %v", rate, dur, s.due(dur), s.limit, s.at(s.limit-1))
			}
		}
	}
	// The record limit bounds a fast phase; a fractional count rounds up.
	if s, _ := newSchedule(1e6, time.Minute, 5000); s.limit != 5000 {
		t.Errorf("limit %d, want max-records 5000", s.limit)
	}
	if s, _ := newSchedule(3, 500*time.Millisecond, 100); s.limit != 2 {
		t.Errorf("limit %d, want 2 (1.5 rounded up)", s.limit)
	}
	for _, bad := range []struct {
		rate float64
		dur  time.Duration
		max  int64
	}{{0, time.Second, 10}, {-1, time.Second, 10}, {10, 0, 10}, {10, time.Second, 0}} {
		if _, err := newSchedule(bad.rate, bad.dur, bad.max); err == nil {
			t.Errorf("newSchedule(%v, %v, %d) accepted", bad.rate, bad.dur, bad.max)
		}
	}
}

func TestParseLoadsAndCurveRates(t *testing.T) {
	loads, err := ParseLoads("10, 25,50%,75,90")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loads, DefaultCurveLoads) {
		t.Fatalf("loads %v, want %v", loads, DefaultCurveLoads)
	}
	for _, bad := range []string{"", "0", "0.05", "5e-324", "-5", "abc", "NaN", "10,,20", "250", "10,10"} {
		if _, err := ParseLoads(bad); err == nil {
			t.Errorf("ParseLoads(%q) accepted", bad)
		}
	}
	if _, err := ParseLoads("x"); err == nil || !strings.Contains(err.Error(), "10,25,50,75,90") {
		t.Errorf("error does not say what to write: %v", err)
	}
	rates, err := CurveRates(40000, loads)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{4000, 10000, 20000, 30000, 36000} {
		if rates[i] < want-1e-6 || rates[i] > want+1e-6 {
			t.Fatalf("rates %v, want %v at %d", rates, want, i)
		}
	}
	if _, err := CurveRates(0, loads); err == nil {
		t.Error("a curve without a measured saturation was accepted")
	}
	if _, err := CurveRates(1000, nil); err == nil {
		t.Error("a curve without loads was accepted")
	}
	for load, want := range map[float64]string{0.1: "curve-10", 0.25: "curve-25", 0.9: "curve-90", 0.075: "curve-7.5", 0.07: "curve-7"} {
		if got := curveName(load); got != want {
			t.Errorf("curveName(%v) = %q, want %q", load, got, want)
		}
	}
}

// ParseLoads on any input: an error, or loads in [0.001, 2] without repeats
// that read back the same when written out again.
func FuzzParseLoads(f *testing.F) {
	for _, s := range []string{"10,25,50,75,90", "7.5", "200", "0", "-1", "1e2", "50%,60", "NaN", "Inf", ",", "10,10", "5e-324", "0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loads, err := ParseLoads(s)
		if err != nil {
			return
		}
		var parts []string
		for i, l := range loads {
			if !(l >= 0.001 && l <= 2) || slices.Contains(loads[:i], l) {
				t.Fatalf("%q: load %v", s, l)
			}
			parts = append(parts, strconv.FormatFloat(l*100, 'g', -1, 64))
		}
		again, err := ParseLoads(strings.Join(parts, ","))
		if err != nil || len(again) != len(loads) {
			t.Fatalf("%q -> %v -> %v, %v", s, loads, again, err)
		}
	})
}
