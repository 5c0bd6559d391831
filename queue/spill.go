package queue

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

// Run is a spilled part of the delayed records: a sorted, immutable
// object the broker stores (EncodeRun) and reads back (DecodeRun) as the
// records' time comes. It holds every record below Cursor that was never
// delivered and whose (DeliverAt, Offset) is at least (SplitAt,
// SplitOffset) at the time of the spill: a rule, not a list, so a rebuild
// that applies the spill event takes out the same records.
type Run struct {
	Key         string `json:"key"`
	Count       int    `json:"n"`
	Loaded      int    `json:"loaded"`   // entries read back so far (a prefix)
	MinOffset   int64  `json:"min_off"`  // the lowest offset in the run
	Cursor      int64  `json:"cursor"`   // the state's cursor at the spill
	SplitAt     int64  `json:"split_at"` // the first entry's deliver-at ...
	SplitOffset int64  `json:"split_off"`
	NextDue     int64  `json:"next_due"` // deliver-at of entry Loaded
}

func (r *Run) check() error {
	if r.Key == "" || r.Count <= 0 || r.Loaded < 0 || r.Loaded > r.Count || r.MinOffset < 0 || r.Cursor < r.MinOffset {
		return fmt.Errorf("queue: malformed run %+v", *r)
	}
	return nil
}

// SpillHorizon is the default Config.Horizon: only records due later than
// twice this from now are spilled, and a run is read back once its next
// record is due within it.
const SpillHorizon = time.Minute

// SpillPlan returns the run to store when more than MemTimers delayed
// records are in memory, or the window is full and records in backoff
// wait far ahead (a nack with a long delay): the latest-due records
// (delayed ones never delivered, and records in backoff outside any key's
// order), all due beyond twice the Horizon, sorted by when they are due,
// keeping the nearest delayed ones up to MemTimers/2. The broker stores
// them under a new key, sets Run.Key, and applies Event{Kind: KindSpill,
// Run: run}.
func (s *State) SpillPlan(now int64) (*Run, []Record) {
	s.advance(now)
	windowFull := s.held >= s.cfg.Window
	if s.delayed <= s.cfg.MemTimers && !windowFull {
		return nil, nil
	}
	limit := s.now + 2*s.cfg.Horizon.Milliseconds()
	var cand []Record
	farDelayed := 0
	for _, e := range s.entries {
		switch {
		case e.Status == Delayed && e.Count == 0 && e.DeliverAt > limit:
			cand = append(cand, e.Record)
			farDelayed++
		case e.Status == Backoff && e.Until > limit && !s.keyed(e):
			r := e.Record
			r.Failed = &Failed{Count: e.Count, First: e.First, Last: e.Last, Until: e.Until, Reason: e.Reason}
			cand = append(cand, r)
		}
	}
	sort.Slice(cand, func(i, j int) bool { return before(cand[i], cand[j]) })
	keep := 0
	if !windowFull {
		keep = s.cfg.MemTimers / 2
		if near := s.delayed - farDelayed; near > keep {
			keep = 0 // the near ones alone exceed the target: spill every far one
		} else {
			keep -= near
		}
	}
	if keep >= len(cand) {
		return nil, nil
	}
	cand = cand[keep:]
	first := cand[0]
	run := &Run{Count: len(cand), Cursor: s.cursor, SplitAt: first.Due(), SplitOffset: first.Offset, NextDue: first.Due(), MinOffset: first.Offset}
	for _, r := range cand {
		run.MinOffset = min(run.MinOffset, r.Offset)
	}
	return run, cand
}

// before orders spilled records by when they are due, then offset.
func before(a, b Record) bool {
	return a.Due() < b.Due() || a.Due() == b.Due() && a.Offset < b.Offset
}

// spill takes the run's records out of memory (the rule in Run's doc:
// below Cursor, due at or after the split, and never delivered and not
// leased, or in backoff outside any key's order).
func (s *State) spill(run *Run) {
	split := Record{DeliverAt: run.SplitAt, Offset: run.SplitOffset}
	for off, e := range s.entries {
		if off >= run.Cursor {
			continue
		}
		r := e.Record
		if e.Status == Backoff {
			r.Failed = &Failed{Until: e.Until}
		}
		if before(r, split) {
			continue
		}
		switch {
		case e.Status == Delayed && e.Count == 0:
			s.delayed--
		case (e.Status == Available || e.Status == KeyBlocked) && e.Count == 0:
			s.unlist(e)
			s.held--
		case e.Status == Backoff && !s.keyed(e):
			s.held--
		default:
			continue
		}
		e.gen++
		delete(s.entries, off)
	}
	r := *run
	s.runs = append(s.runs, &r)
	s.compactTimers()
}

// compactTimers drops the timers of records no longer waiting for them
// (spilled, settled): they would otherwise stay until their time.
func (s *State) compactTimers() {
	live := s.timers[:0]
	for _, it := range s.timers {
		if e := s.entries[it.off]; e != nil && e.gen == it.gen {
			live = append(live, it)
		}
	}
	clear(s.timers[len(live):])
	s.timers = live
	heap.Init(&s.timers)
}

// LoadPlan returns the run whose next record is due soonest, when that is
// within the Horizon of now, and how many of its records to read back
// (nil when none is due): at most MemTimers/4 at once. A broker calls it
// again until it returns nil, so every record due within the Horizon is
// back in memory before its time.
func (s *State) LoadPlan(now int64) (*Run, int) {
	s.advance(now)
	var next *Run
	for _, r := range s.runs {
		if next == nil || r.NextDue < next.NextDue {
			next = r
		}
	}
	if next == nil || next.NextDue > s.now+s.cfg.Horizon.Milliseconds() {
		return nil, 0
	}
	r := *next
	return &r, min(r.Count-r.Loaded, max(s.cfg.MemTimers/4, 1))
}

// LoadCount is how many of the run's records from run.Loaded on (recs is
// the whole run) to read back now, at most max: a prefix whose records
// fit the state's bounds, those due now in the window's room (they become
// available) and those due later within the Horizon in the room for
// delayed records. So a burst of records coming due at once is read back
// as the window drains, never all at once; 0 when none fits.
func (s *State) LoadCount(run *Run, recs []Record, max int, now int64) int {
	s.advance(now)
	window := s.cfg.Window - s.held
	timers := s.cfg.MemTimers - s.delayed
	n := 0
	for _, r := range recs[min(run.Loaded, len(recs)):] {
		if n >= max {
			break
		}
		if r.Failed != nil || r.DeliverAt <= s.now { // joins the window
			if window <= 0 {
				break
			}
			window--
		} else {
			if timers <= 0 {
				break
			}
			timers--
		}
		n++
	}
	return n
}

// InMemory returns how many unsettled records the state holds in memory,
// and how many of them are delayed (bounded by MemTimers, but for records
// due within twice the Horizon).
func (s *State) InMemory() (entries, delayed int) { return len(s.entries), s.delayed }

// LoadEvent is the event that records reading back recs, the run's
// entries from run.Loaded on (recs holds the run's whole remainder or a
// prefix of it; next is the deliver-at of the entry after them, 0 at the
// end).
func LoadEvent(run *Run, n int, next int64, now int64) Event {
	r := *run
	r.Loaded += n
	r.NextDue = next
	return Event{Kind: KindLoadRun, Time: now, Run: &r}
}

// ApplyLoad applies a KindLoadRun event with the records it read back (the
// run's entries from its previous Loaded up to ev.Run.Loaded). It returns
// the run's key when the run is done (fully read back): the broker deletes
// it once a snapshot that no longer lists it is stored.
func (s *State) ApplyLoad(ev Event, recs []Record) (done string, err error) {
	if ev.Kind != KindLoadRun || ev.Run == nil {
		return "", fmt.Errorf("queue: ApplyLoad of a %d event", ev.Kind)
	}
	s.advance(ev.Time)
	i := s.findRun(ev.Run.Key)
	if i < 0 {
		return "", nil // loaded before the snapshot we started from
	}
	cur := s.runs[i]
	if want := ev.Run.Loaded - cur.Loaded; want != len(recs) {
		return "", fmt.Errorf("queue: run %s load of %d records given %d", cur.Key, want, len(recs))
	}
	for _, r := range recs {
		if _, ok := s.entries[r.Offset]; ok {
			continue
		}
		f := r.Failed
		r.Failed = nil
		e := &Entry{Record: r, DLQSeq: -1}
		s.entries[r.Offset] = e
		switch {
		case f != nil: // back in backoff, as it was
			e.Count, e.First, e.Last, e.Reason = f.Count, f.First, f.Last, f.Reason
			s.held++
			s.setStatus(e, Backoff)
			e.Until = f.Until
			heap.Push(&s.timers, timerItem{at: e.Until, off: e.Offset, gen: e.gen})
			s.advance(s.now)
		case r.DeliverAt > s.now:
			s.setDelayed(e, r.DeliverAt)
		default:
			s.held++
			s.makeAvailable(e, s.now)
		}
	}
	cur.Loaded, cur.NextDue = ev.Run.Loaded, ev.Run.NextDue
	if cur.Loaded >= cur.Count {
		s.runs = append(s.runs[:i:i], s.runs[i+1:]...)
		return cur.Key, nil
	}
	return "", nil
}

func (s *State) findRun(key string) int {
	for i, r := range s.runs {
		if r.Key == key {
			return i
		}
	}
	return -1
}

// Runs returns the spilled runs not fully read back.
func (s *State) Runs() []Run {
	out := make([]Run, len(s.runs))
	for i, r := range s.runs {
		out[i] = *r
	}
	return out
}

const runRecordBytes = 8 + 8 + 8 + 8 + 1 + 1 // a record never delivered

// failedBytes is what a record in backoff adds (before its reason).
const failedBytes = 4 + 8 + 8 + 8 + 2

var runMagic = []byte("SQRUN2\x00\x00")

// EncodeRun is a run's stored form: the records in order, each its fixed
// fields, a flag, and for one in backoff its delivery state and reason.
func EncodeRun(recs []Record) []byte {
	out := make([]byte, 0, len(runMagic)+len(recs)*runRecordBytes)
	out = append(out, runMagic...)
	for _, r := range recs {
		out = binary.BigEndian.AppendUint64(out, uint64(r.Offset))
		out = binary.BigEndian.AppendUint64(out, uint64(r.Timestamp))
		out = binary.BigEndian.AppendUint64(out, uint64(r.DeliverAt))
		out = binary.BigEndian.AppendUint64(out, r.KeyHash)
		out = append(out, byte(r.Priority))
		flags := byte(0)
		if r.HasKey {
			flags |= 1
		}
		if r.Failed != nil {
			flags |= 2
		}
		out = append(out, flags)
		if f := r.Failed; f != nil {
			reason := f.Reason
			if len(reason) > MaxReasonBytes {
				reason = reason[:MaxReasonBytes]
			}
			out = binary.BigEndian.AppendUint32(out, uint32(f.Count))
			out = binary.BigEndian.AppendUint64(out, uint64(f.First))
			out = binary.BigEndian.AppendUint64(out, uint64(f.Last))
			out = binary.BigEndian.AppendUint64(out, uint64(f.Until))
			out = binary.BigEndian.AppendUint16(out, uint16(len(reason)))
			out = append(out, reason...)
		}
	}
	return out
}

// DecodeRun parses a stored run and checks that it is sorted and in range.
func DecodeRun(data []byte) ([]Record, error) {
	if len(data) < len(runMagic) || string(data[:len(runMagic)]) != string(runMagic) {
		return nil, fmt.Errorf("queue: not a run object (%d bytes)", len(data))
	}
	data = data[len(runMagic):]
	var recs []Record
	for len(data) > 0 {
		if len(data) < runRecordBytes {
			return nil, fmt.Errorf("queue: run truncated (%d bytes left)", len(data))
		}
		r := Record{
			Offset:    int64(binary.BigEndian.Uint64(data)),
			Timestamp: int64(binary.BigEndian.Uint64(data[8:])),
			DeliverAt: int64(binary.BigEndian.Uint64(data[16:])),
			KeyHash:   binary.BigEndian.Uint64(data[24:]),
			Priority:  int8(data[32]),
			HasKey:    data[33]&1 != 0,
		}
		flags := data[33]
		data = data[runRecordBytes:]
		if r.Offset < 0 || r.Priority < 0 || r.Priority > MaxPriority || flags > 3 {
			return nil, fmt.Errorf("queue: run record out of range: %+v", r)
		}
		if flags&2 != 0 {
			if len(data) < failedBytes {
				return nil, fmt.Errorf("queue: run truncated in record %d", r.Offset)
			}
			f := &Failed{
				Count: int32(binary.BigEndian.Uint32(data)),
				First: int64(binary.BigEndian.Uint64(data[4:])),
				Last:  int64(binary.BigEndian.Uint64(data[12:])),
				Until: int64(binary.BigEndian.Uint64(data[20:])),
			}
			n := int(binary.BigEndian.Uint16(data[28:]))
			data = data[failedBytes:]
			if n > MaxReasonBytes || len(data) < n || f.Count <= 0 || f.Count > MaxMaxDeliveries || f.Until < 0 {
				return nil, fmt.Errorf("queue: run record %d: delivery state out of range", r.Offset)
			}
			f.Reason = string(data[:n])
			data = data[n:]
			r.Failed = f
		}
		if n := len(recs); n > 0 && !before(recs[n-1], r) {
			return nil, fmt.Errorf("queue: run records out of order at offset %d", r.Offset)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
