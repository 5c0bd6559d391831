package workload

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// schedule is an open-loop arrival schedule: record i is due at
// i/rate seconds after the start, for i < limit. The sender sends every
// record that is due and stamps it with its due time, so a sender held
// up by the system (flow control, a slow Send) makes the records it
// delays late by the full delay: no coordinated omission.
type schedule struct {
	rate  float64 // records per second, > 0
	limit int64   // records in all, >= 0
}

// newSchedule returns the schedule of an open-loop phase of dur at rate
// records/s: at most maxRecords, and no more than the phase has due
// times for (rate*dur, rounded up), so the phase is bounded in count
// whatever its clock does, and its last record is due before dur ends
// (due(dur) == limit).
func newSchedule(rate float64, dur time.Duration, maxRecords int64) (schedule, error) {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return schedule{}, fmt.Errorf("open loop: offered rate %v records/s: want a positive number", rate)
	}
	if dur <= 0 || maxRecords < 1 {
		return schedule{}, fmt.Errorf("open loop: duration %v and at most %d records: want both positive", dur, maxRecords)
	}
	n := math.Ceil(rate * dur.Seconds())
	if n > float64(maxRecords) {
		n = float64(maxRecords)
	}
	return schedule{rate: rate, limit: int64(n)}, nil
}

// due is how many records are due by elapsed since the start: those
// with i/rate <= elapsed (record 0 is due at once), at most limit.
func (s schedule) due(elapsed time.Duration) int64 {
	if elapsed < 0 {
		return 0
	}
	n := math.Floor(elapsed.Seconds()*s.rate) + 1
	if n > float64(s.limit) {
		return s.limit
	}
	return int64(n)
}

// at is record i's due time, as an offset from the start.
func (s schedule) at(i int64) time.Duration {
	return time.Duration(float64(i) / s.rate * float64(time.Second))
}

// wait is how long a sender that has sent `sent` records may sleep at
// elapsed: until the next record is due, at most a millisecond (so a
// late wake-up costs little); 0 when one is due now or none is left.
func (s schedule) wait(sent int64, elapsed time.Duration) time.Duration {
	if sent >= s.limit {
		return 0
	}
	return min(max(s.at(sent)-elapsed, 0), time.Millisecond)
}

// DefaultCurveLoads are the latency curve's offered loads: fractions of
// each target's own saturation.
var DefaultCurveLoads = []float64{0.10, 0.25, 0.50, 0.75, 0.90}

// ParseLoads reads comma-separated percentages of saturation ("10,25,50")
// into fractions, in the order given. Each must be at least 0.1 and at
// most 200 (beyond saturation is allowed, to see overload); none may
// repeat.
func ParseLoads(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "%"))
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v >= 0.1 && v <= 200) {
			return nil, fmt.Errorf("curve load %q: want a percentage of saturation from 0.1 to 200, e.g. 10,25,50,75,90", f)
		}
		for _, o := range out {
			if o == v/100 {
				return nil, fmt.Errorf("curve load %v%% given twice", v)
			}
		}
		out = append(out, v/100)
	}
	return out, nil
}

// CurveRates are the offered rates (records/s) of the curve's points:
// each load times saturation, the target's measured saturation rate.
func CurveRates(saturation float64, loads []float64) ([]float64, error) {
	if !(saturation > 0) || math.IsInf(saturation, 0) {
		return nil, fmt.Errorf("latency curve: saturation %v records/s: it must be measured (and positive) first", saturation)
	}
	if len(loads) == 0 {
		return nil, errors.New("latency curve: no loads")
	}
	out := make([]float64, len(loads))
	for i, l := range loads {
		if !(l > 0) {
			return nil, fmt.Errorf("latency curve: load %v: want a positive fraction of saturation", l)
		}
		out[i] = l * saturation
	}
	return out, nil
}

// curveName is the workload name of the point at load (a fraction):
// curve-10 for 10 %.
func curveName(load float64) string {
	return "curve-" + strconv.FormatFloat(math.Round(load*1e4)/100, 'f', -1, 64)
}
