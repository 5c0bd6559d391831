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
// records are in memory: the latest-due half of them (those due beyond
// twice the Horizon), sorted by deliver-at. The broker stores them under a
// new key, sets Run.Key, and applies Event{Kind: KindSpill, Run: run}.
func (s *State) SpillPlan(now int64) (*Run, []Record) {
	s.advance(now)
	if s.delayed <= s.cfg.MemTimers {
		return nil, nil
	}
	limit := s.now + 2*s.cfg.Horizon.Milliseconds()
	var cand []Record
	for _, e := range s.entries {
		if e.Status == Delayed && e.Count == 0 && e.DeliverAt > limit {
			cand = append(cand, e.Record)
		}
	}
	sort.Slice(cand, func(i, j int) bool { return before(cand[i], cand[j]) })
	keep := s.cfg.MemTimers / 2
	if s.delayed-len(cand) > keep {
		keep = 0 // the near ones alone exceed the target: spill every far one
	} else {
		keep -= s.delayed - len(cand)
	}
	if keep >= len(cand) {
		return nil, nil
	}
	cand = cand[keep:]
	run := &Run{Count: len(cand), Cursor: s.cursor, SplitAt: cand[0].DeliverAt, SplitOffset: cand[0].Offset, NextDue: cand[0].DeliverAt, MinOffset: cand[0].Offset}
	for _, r := range cand {
		run.MinOffset = min(run.MinOffset, r.Offset)
	}
	return run, cand
}

func before(a, b Record) bool {
	return a.DeliverAt < b.DeliverAt || a.DeliverAt == b.DeliverAt && a.Offset < b.Offset
}

// spill takes the run's records out of memory (the rule in Run's doc).
func (s *State) spill(run *Run) {
	split := Record{DeliverAt: run.SplitAt, Offset: run.SplitOffset}
	for off, e := range s.entries {
		if off >= run.Cursor || e.Count != 0 || before(e.Record, split) {
			continue
		}
		switch e.Status {
		case Delayed:
			s.delayed--
		case Available, KeyBlocked:
			s.unlist(e)
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
		if r.DeliverAt <= s.now {
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
		e := &Entry{Record: r, DLQSeq: -1}
		s.entries[r.Offset] = e
		if r.DeliverAt > s.now {
			s.setDelayed(e, r.DeliverAt)
		} else {
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

const runRecordBytes = 8 + 8 + 8 + 8 + 1 + 1

// EncodeRun is a run's stored form: fixed-size records, sorted.
func EncodeRun(recs []Record) []byte {
	out := make([]byte, 0, 8+len(recs)*runRecordBytes)
	out = append(out, "SQRUN1\x00\x00"...)
	for _, r := range recs {
		out = binary.BigEndian.AppendUint64(out, uint64(r.Offset))
		out = binary.BigEndian.AppendUint64(out, uint64(r.Timestamp))
		out = binary.BigEndian.AppendUint64(out, uint64(r.DeliverAt))
		out = binary.BigEndian.AppendUint64(out, r.KeyHash)
		out = append(out, byte(r.Priority))
		hk := byte(0)
		if r.HasKey {
			hk = 1
		}
		out = append(out, hk)
	}
	return out
}

// DecodeRun parses a stored run and checks that it is sorted and in range.
func DecodeRun(data []byte) ([]Record, error) {
	if len(data) < 8 || string(data[:8]) != "SQRUN1\x00\x00" || (len(data)-8)%runRecordBytes != 0 {
		return nil, fmt.Errorf("queue: not a run object (%d bytes)", len(data))
	}
	data = data[8:]
	recs := make([]Record, 0, len(data)/runRecordBytes)
	for len(data) > 0 {
		r := Record{
			Offset:    int64(binary.BigEndian.Uint64(data)),
			Timestamp: int64(binary.BigEndian.Uint64(data[8:])),
			DeliverAt: int64(binary.BigEndian.Uint64(data[16:])),
			KeyHash:   binary.BigEndian.Uint64(data[24:]),
			Priority:  int8(data[32]),
			HasKey:    data[33] == 1,
		}
		if r.Offset < 0 || r.Priority < 0 || r.Priority > MaxPriority || data[33] > 1 {
			return nil, fmt.Errorf("queue: run record out of range: %+v", r)
		}
		if n := len(recs); n > 0 && !before(recs[n-1], r) {
			return nil, fmt.Errorf("queue: run records out of order at offset %d", r.Offset)
		}
		recs = append(recs, r)
		data = data[runRecordBytes:]
	}
	return recs, nil
}
