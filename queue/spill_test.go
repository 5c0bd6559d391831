package queue

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"
)

// runStore is the broker's part of spilling: it stores runs (encoded, as
// in the bucket) and reads them back.
type runStore struct {
	tb    testing.TB
	runs  map[string][]Record // decoded from the stored form once
	next  int
	done  map[string]bool
	bytes int
	loads int
}

func newRunStore(tb testing.TB) *runStore {
	return &runStore{tb: tb, runs: map[string][]Record{}, done: map[string]bool{}}
}

// spill stores what SpillPlan asks for and applies the spill; it reports
// whether there was anything to spill.
func (st *runStore) spill(s *State, now int64) bool {
	st.tb.Helper()
	run, recs := s.SpillPlan(now)
	if run == nil {
		return false
	}
	run.Key = fmt.Sprintf("runs/%06d", st.next)
	st.next++
	data := EncodeRun(recs)
	back, err := DecodeRun(data)
	if err != nil || len(back) != len(recs) {
		st.tb.Fatalf("stored run does not decode: %v", err)
	}
	st.runs[run.Key] = back
	st.bytes += len(data)
	if err := s.Apply(Event{Kind: KindSpill, Time: now, Run: run}); err != nil {
		st.tb.Fatal(err)
	}
	return true
}

// load reads back what LoadPlan asks for and applies the load; it
// reports whether there was anything to load.
func (st *runStore) load(s *State, now int64) bool {
	st.tb.Helper()
	run, n := s.LoadPlan(now)
	if run == nil {
		return false
	}
	st.loads++
	done, err := s.ApplyLoad(st.read(run, n, now))
	if err != nil {
		st.tb.Fatal(err)
	}
	if done != "" {
		if done != run.Key || st.done[done] {
			st.tb.Fatalf("load of %s said done %q", run.Key, done)
		}
		st.done[done] = true
		delete(st.runs, done)
	}
	return true
}

// read reads the n records a load plan asks for and makes the event.
func (st *runStore) read(run *Run, n int, now int64) (Event, []Record) {
	st.tb.Helper()
	all := st.runs[run.Key]
	if n <= 0 || run.Loaded+n > len(all) {
		st.tb.Fatalf("load plan of %d records of %+v (%d stored)", n, *run, len(all))
	}
	var next int64
	if run.Loaded+n < len(all) {
		next = all[run.Loaded+n].Due()
	}
	return LoadEvent(run, n, next, now), all[run.Loaded : run.Loaded+n]
}

// TestSpillMillion: a million records delayed by a day, with room for
// 1024 timers in memory: memory stays bounded (the far ones are spilled
// to runs), records without a delay offered meanwhile are handed out at
// once, and a day later every delayed record is handed out exactly once,
// none before its time and none later than one step after it. Memory
// then holds at most what doc.go allows: Window, MemTimers (and a load's
// worth), and the records due within 2 × Horizon.
func TestSpillMillion(t *testing.T) {
	n := 1_000_000 / raceScale
	if testing.Short() {
		n = 100_000
	}
	const memTimers, window = 1024, 1024
	const day = int64(24 * time.Hour / time.Millisecond)
	s := New(Config{MemTimers: memTimers, Window: window, Seed: 1}, 0)
	st := newRunStore(t)
	var dues []int64 // every deliver-at, sorted
	got := 0         // delayed records handed out
	bound := func(now int64) {
		t.Helper()
		near := sort.Search(len(dues), func(i int) bool { return dues[i] > now+2*ms(s.cfg.Horizon) }) - got
		entries, delayed := s.InMemory()
		if entries > window+memTimers+memTimers/4+near || delayed > memTimers+memTimers/4+near {
			t.Fatalf("at %d: %d entries in memory (%d delayed), %d due within twice the horizon", now, entries, delayed, near)
		}
	}
	due := make([]int64, n+n/1000) // deliver-at of each delayed offset
	delayed := map[int64]bool{}
	now, off := t0, int64(0)
	first := now + day // the earliest deliver-at
	for i := range n {
		deliverAt := now + day + int64(i%977)
		if !s.CanOffer() {
			t.Fatalf("window full after %d delayed records", i)
		}
		mustOffer(t, s, now, Record{Offset: off, Timestamp: now, DeliverAt: deliverAt, Priority: int8(i % 10)})
		delayed[off] = true
		due[off] = deliverAt
		off++
		for st.spill(s, now) {
		}
		if i%1000 == 999 {
			// A record without a delay, offered after them: handed out at once.
			mustOffer(t, s, now, Record{Offset: off, Timestamp: now})
			l := receiveOne(t, s, now)
			if l.Offset != off {
				t.Fatalf("handed out %d, want the record just offered (%d)", l.Offset, off)
			}
			settle(t, s, Ack, l, now, 0, "")
			off++
			now++
			bound(now)
		}
	}
	bound(now)
	if c := s.Counts(); c.Delayed != int64(n) || c.Available+c.Leased != 0 {
		t.Fatalf("counts %+v, want %d delayed", c, n)
	}
	if len(s.runs) < n/memTimers {
		t.Fatalf("%d runs for %d delayed records", len(s.runs), n)
	}
	if len(s.entries) > window+memTimers {
		t.Fatalf("%d records in memory after offering, want at most %d", len(s.entries), window+memTimers)
	}
	t.Logf("%d records in %d runs (%d bytes), %d in memory", n, len(s.runs), st.bytes, len(s.entries))
	for off, at := range due {
		if delayed[int64(off)] {
			dues = append(dues, at)
		}
	}
	slices.Sort(dues)

	// Nothing comes out early, up to the last moment.
	for now = first - 10*ms(s.cfg.Horizon); now < first; now += 1000 {
		for st.load(s, now) {
		}
		receiveNone(t, s, now)
		bound(now)
	}
	// A day later: every one once, on time (within the step).
	const step = 250
	late := int64(0)
	for now = first - 1; got < n; now += step {
		for st.spill(s, now) { // once a step: a plan looks at every record in memory
		}
		for progress := true; progress; {
			progress = false
			for st.load(s, now) {
				progress = true
			}
			bound(now)
			for _, l := range receive(t, s, now, 1000) {
				progress = true
				if !delayed[l.Offset] {
					t.Fatalf("offset %d handed out twice (or was never delayed)", l.Offset)
				}
				if at := due[l.Offset]; at > now {
					t.Fatalf("offset %d due at %d handed out at %d", l.Offset, at, now)
				} else {
					late = max(late, now-at)
				}
				delete(delayed, l.Offset)
				got++
				settle(t, s, Ack, l, now, 0, "")
			}
		}
		if now > first+2*day {
			t.Fatalf("%d of %d delivered after two days", got, n)
		}
	}
	t.Logf("latest by %dms; %d loads", late, st.loads)
	if late > step {
		t.Fatalf("a record handed out %dms after its time (steps of %dms)", late, step)
	}
	if c := s.Counts(); c != (Counts{Acked: int64(n + n/1000)}) || len(s.entries) != 0 || len(s.runs) != 0 || len(st.runs) != 0 {
		t.Fatalf("at the end: counts %+v, %d entries, %d runs, %d stored", c, len(s.entries), len(s.runs), len(st.runs))
	}
}

// TestSpillRule: a spill takes exactly the rule's records (below the
// cursor, never delivered, due at or after the split), so applying the
// event to a state that holds the same records takes out the same ones.
func TestSpillRule(t *testing.T) {
	s := New(Config{MemTimers: minMemTimers}, 0)
	far := t0 + 3_600_000
	for off := range int64(40) {
		r := Record{Offset: off, Timestamp: t0, DeliverAt: far + (off*7919)%40}
		if off%5 == 0 {
			r.DeliverAt = t0 + 1000 // near: never spilled
		}
		mustOffer(t, s, t0, r)
	}
	run, recs := s.SpillPlan(t0)
	if run == nil {
		t.Fatal("no spill plan with 40 delayed and MemTimers 16")
	}
	if got := s.delayed - len(recs); got != minMemTimers/2 {
		t.Fatalf("keeps %d delayed in memory, want %d", got, minMemTimers/2)
	}
	// The latest-due ones.
	for _, e := range s.entries {
		if !slices.ContainsFunc(recs, func(r Record) bool { return r.Offset == e.Offset }) && !before(e.Record, recs[0]) {
			t.Fatalf("kept %+v, due after the split %+v", e.Record, recs[0])
		}
	}
	twin, err := Restore(s.Config(), s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	run.Key = "k"
	for _, x := range []*State{s, twin} {
		if err := x.Apply(Event{Kind: KindSpill, Time: t0, Run: run}); err != nil {
			t.Fatal(err)
		}
		if x.Counts().Delayed != 40 || len(x.entries) != 40-len(recs) {
			t.Fatalf("after the spill: %+v, %d in memory", x.Counts(), len(x.entries))
		}
	}
	if d := sameStates(s, twin); d != "" {
		t.Fatal(d)
	}
	// A record offered after the spill is not the run's, even if due later.
	mustOffer(t, twin, t0, Record{Offset: 40, DeliverAt: far + 1000})
	if _, ok := twin.Entry(40); !ok {
		t.Fatal("a record offered after the spill is gone")
	}
	// No spill event without a run; a load is not applied with Apply.
	if err := s.Apply(Event{Kind: KindSpill, Time: t0}); err == nil {
		t.Fatal("spill without a run applied")
	}
	ev := LoadEvent(run, 2, recs[2].DeliverAt, far)
	back := recs[:2]
	if err := s.Apply(ev); err == nil {
		t.Fatal("a load applied with Apply")
	}
	if _, err := s.ApplyLoad(ev, back[:1]); err == nil {
		t.Fatal("a load of 2 records given 1 applied")
	}
	if _, err := s.ApplyLoad(Event{Kind: KindAck}, nil); err == nil {
		t.Fatal("ApplyLoad of an ack")
	}
}

// TestLoadPlan: nothing is read back before a run's next record is due
// within the Horizon; a load reads at most MemTimers/4 records; asking
// until there is nothing left reads back every record due within the
// Horizon, before its time, and no run record due later than the last
// one read.
func TestLoadPlan(t *testing.T) {
	h := 20 * time.Second
	s := New(Config{MemTimers: minMemTimers, Horizon: h}, 0)
	base := t0 + 3_600_000
	for off := range int64(200) {
		mustOffer(t, s, t0, Record{Offset: off, DeliverAt: base + off*1000}) // one a second
	}
	st := newRunStore(t)
	for st.spill(s, t0) {
	}
	if s.delayed > minMemTimers || len(s.runs) == 0 {
		t.Fatalf("%d delayed in memory, %d runs", s.delayed, len(s.runs))
	}
	first := slices.MinFunc(s.Runs(), func(a, b Run) int { return int(a.NextDue - b.NextDue) }).NextDue
	if run, _ := s.LoadPlan(first - ms(h) - 1); run != nil {
		t.Fatalf("load plan %+v before the horizon", *run)
	}
	now := first - ms(h)
	for st.load(s, now) {
		if run, n := s.LoadPlan(now); run != nil && n > minMemTimers/4 {
			t.Fatalf("load plan of %d records", n)
		}
	}
	for off := range int64(200) {
		_, held := s.Entry(off)
		inRun := false
		for _, r := range s.runs {
			for _, rec := range st.runs[r.Key][r.Loaded:] {
				inRun = inRun || rec.Offset == off
			}
		}
		if at := base + off*1000; at <= now+ms(h) && !held {
			t.Fatalf("offset %d due at %d (horizon %d) not in memory", off, at, now+ms(h))
		}
		if held == inRun {
			t.Fatalf("offset %d in memory %v, in a run %v", off, held, inRun)
		}
	}
	receiveNone(t, s, now)
}

// TestSpillKeepsNear: records due within twice the Horizon are never
// spilled, even when they alone exceed MemTimers.
func TestSpillKeepsNear(t *testing.T) {
	s := New(Config{MemTimers: minMemTimers}, 0)
	for off := range int64(50) {
		at := t0 + 1000 + off
		if off%2 == 1 {
			at = t0 + 86_400_000 + off
		}
		mustOffer(t, s, t0, Record{Offset: off, DeliverAt: at})
	}
	run, recs := s.SpillPlan(t0)
	if run == nil || len(recs) != 25 {
		t.Fatalf("spill plan of %d records, want every far one (25)", len(recs))
	}
	for _, r := range recs {
		if r.Offset%2 != 1 {
			t.Fatalf("near record %d in the plan", r.Offset)
		}
	}
}

func TestRunCodec(t *testing.T) {
	recs := []Record{
		{Offset: 5, Timestamp: -3, DeliverAt: 10, KeyHash: 1<<64 - 1, Priority: 9, HasKey: true},
		{Offset: 1, Timestamp: 7, DeliverAt: 11},
		{Offset: 2, Timestamp: 7, DeliverAt: 11, Priority: 3},
	}
	data := EncodeRun(recs)
	back, err := DecodeRun(data)
	if err != nil || !slices.Equal(back, recs) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if back, err := DecodeRun(EncodeRun(nil)); err != nil || len(back) != 0 {
		t.Fatalf("empty run: %v %v", back, err)
	}
	for name, bad := range map[string][]byte{
		"short":        data[:7],
		"magic":        append([]byte("SQRUN1\x00\x00"), data[8:]...),
		"truncated":    data[:len(data)-1],
		"out of order": EncodeRun([]Record{recs[1], recs[0]}),
		"duplicate":    EncodeRun([]Record{recs[1], recs[1]}),
		"priority":     EncodeRun([]Record{{Offset: 1, Priority: 10}}),
		"negative":     EncodeRun([]Record{{Offset: -1}}),
	} {
		if _, err := DecodeRun(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// A burst of spilled records all due at once comes back only as the
// window has room: LoadCount never lets the state hold more than Window
// records that are not delayed.
func TestLoadCountKeepsTheWindow(t *testing.T) {
	const day = int64(24 * 3600 * 1000)
	s := New(Config{Window: 10, MemTimers: 16, Horizon: time.Second}, 0)
	for i := int64(0); i < 100; i++ {
		mustOffer(t, s, 1, Record{Offset: i, Timestamp: 1, DeliverAt: day})
	}
	run, recs := s.SpillPlan(1)
	if run == nil {
		t.Fatal("no spill of 100 delayed records over a bound of 16")
	}
	run.Key = "r"
	if err := s.Apply(Event{Kind: KindSpill, Time: 1, Run: run}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for round := 0; round < 1000 && got < 100; round++ {
		now := day + int64(round)
		r, n := s.LoadPlan(now)
		if r != nil {
			if n = s.LoadCount(r, recs, n, now); n > 0 {
				next := int64(0)
				if r.Loaded+n < len(recs) {
					next = recs[r.Loaded+n].Due()
				}
				if _, err := s.ApplyLoad(LoadEvent(r, n, next, now), recs[r.Loaded:r.Loaded+n]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if entries, delayed := s.InMemory(); entries-delayed > 10 {
			t.Fatalf("round %d: %d records not delayed in memory, over the window of 10", round, entries-delayed)
		}
		for _, l := range receive(t, s, now, 3) {
			settle(t, s, Ack, l, now, 0, "")
			got++
		}
	}
	if got != 100 {
		t.Fatalf("%d of the 100 delayed records delivered (%d of them spilled)", got, run.Count)
	}
}

// Records nacked with a long delay do not stall the partition: once they
// fill the window they are spilled with their delivery state, the records
// after them are handed out, and they come back at their time with their
// delivery count and reason.
func TestNackedFarAheadSpillsWithItsState(t *testing.T) {
	const day = int64(24 * 3600 * 1000)
	s := New(Config{Window: 10, MemTimers: 16, Horizon: time.Second}, 0)
	store := map[string][]Record{}
	drive := func(now int64) {
		if run, recs := s.SpillPlan(now); run != nil {
			run.Key = fmt.Sprintf("r%d", len(store))
			store[run.Key] = recs
			if err := s.Apply(Event{Kind: KindSpill, Time: now, Run: run}); err != nil {
				t.Fatal(err)
			}
		}
		for {
			r, n := s.LoadPlan(now)
			if r == nil {
				return
			}
			all := store[r.Key]
			if n = s.LoadCount(r, all, n, now); n == 0 {
				return
			}
			next := int64(0)
			if r.Loaded+n < len(all) {
				next = all[r.Loaded+n].Due()
			}
			if _, err := s.ApplyLoad(LoadEvent(r, n, next, now), all[r.Loaded:r.Loaded+n]); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := int64(0)
	offer := func(now int64) {
		for s.CanOffer() {
			mustOffer(t, s, now, Record{Offset: next, Timestamp: now})
			next++
		}
	}
	offer(1)
	for _, l := range receive(t, s, 1, 10) {
		settle(t, s, Nack, l, 1, 24*time.Hour, "later")
	}
	drive(2)
	offer(2)
	got := receive(t, s, 3, 10)
	if len(got) != 10 || got[0].Offset < 10 {
		t.Fatalf("after 10 records nacked for a day, %d handed out (first %v): the window stalled", len(got), offsets(got))
	}
	for _, l := range got {
		settle(t, s, Ack, l, 3, 0, "")
	}
	back := map[int64]bool{}
	for now := day + 1; now < day+100 && len(back) < 10; now++ {
		drive(now)
		for _, l := range receive(t, s, now, 10) {
			e, _ := s.Entry(l.Offset)
			if l.Offset >= 10 {
				settle(t, s, Ack, l, now, 0, "")
				continue
			}
			if l.Count != 2 || e.Reason != "later" || e.First != 1 {
				t.Fatalf("record %d came back with count %d, reason %q, first delivery %d: want 2, later, 1", l.Offset, l.Count, e.Reason, e.First)
			}
			back[l.Offset] = true
			settle(t, s, Ack, l, now, 0, "")
		}
	}
	if len(back) != 10 {
		t.Fatalf("%d of the 10 nacked records came back after their day", len(back))
	}
}
