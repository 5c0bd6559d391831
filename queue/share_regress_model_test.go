// A model test from an adversarial review of share groups: random
// operations with rebuilds from every snapshot, checked against a model.

package queue

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

type logged struct {
	ev   Event
	recs []Record // KindLoadRun: the records read back
}

func checkCounters(s *State) error {
	held, delayed := 0, 0
	for _, e := range s.entries {
		if e.Status == Delayed {
			delayed++
		} else {
			held++
		}
	}
	if held != s.held || delayed != s.delayed {
		return fmt.Errorf("counters held %d delayed %d, recount %d %d", s.held, s.delayed, held, delayed)
	}
	return nil
}

func runModel(t *testing.T, seed uint64, ordered bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg := Config{Window: 20, MemTimers: 16, Horizon: time.Second, MaxDeliveries: 3, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, Visibility: time.Second, OrderedByKey: ordered, Seed: seed | 1, PriorityAging: time.Second}
	now := int64(1_000_000)
	var recs []Record
	for i := 0; i < 300; i++ {
		r := Record{Offset: int64(i), Timestamp: now + int64(i), Priority: int8(rng.IntN(10))}
		if rng.IntN(3) == 0 {
			r.DeliverAt = now + int64(rng.IntN(20_000))
		}
		if rng.IntN(2) == 0 {
			r.KeyHash, r.HasKey = uint64(rng.IntN(4)), true
		}
		recs = append(recs, r)
	}
	runs := map[string][]Record{}
	s := New(cfg, 0)
	var log []logged
	type snap struct {
		data []byte
		at   int
	}
	var snaps []snap
	tok := uint64(0)
	token := func() uint64 { tok++; return tok }
	var pid int64
	for step := 0; step < 2000; step++ {
		now += int64(rng.IntN(300))
		switch rng.IntN(8) {
		case 0, 1:
			s.Advance(now)
			for s.CanOffer() && int(s.Cursor()) < len(recs) {
				s.Offer(recs[s.Cursor()], now)
			}
			for _, ev := range s.Receive(now, 1+rng.IntN(5), time.Duration(1+rng.IntN(3))*time.Second, token) {
				log = append(log, logged{ev: ev})
			}
		case 2, 3:
			var leased []*Entry
			for _, e := range s.entries {
				if e.Status == Leased {
					leased = append(leased, e)
				}
			}
			if len(leased) == 0 {
				continue
			}
			e := leased[rng.IntN(len(leased))]
			kind := SettleKind(1 + rng.IntN(5))
			delay := time.Duration(0)
			if kind == Extend {
				delay = time.Duration(1+rng.IntN(3)) * time.Second
			} else if kind == Nack && rng.IntN(2) == 0 {
				delay = time.Duration(rng.IntN(5000)) * time.Millisecond
			}
			ev, err := s.Settle(kind, e.Offset, e.Count, e.Token, now, delay, "r")
			if err == nil {
				log = append(log, logged{ev: ev})
			}
		case 4:
			if run, rr := s.SpillPlan(now); run != nil {
				run.Key = fmt.Sprintf("run-%d", step)
				runs[run.Key] = rr
				ev := Event{Kind: KindSpill, Time: now, Run: run}
				if err := s.Apply(ev); err != nil {
					t.Fatal(err)
				}
				log = append(log, logged{ev: ev})
			}
			for i := 0; i < 8; i++ {
				run, n := s.LoadPlan(now)
				if run == nil {
					break
				}
				rr := runs[run.Key]
				next := int64(0)
				if run.Loaded+n < len(rr) {
					next = rr[run.Loaded+n].DeliverAt
				}
				ev := LoadEvent(run, n, next, now)
				part := rr[run.Loaded : run.Loaded+n]
				if _, err := s.ApplyLoad(ev, part); err != nil {
					t.Fatal(err)
				}
				log = append(log, logged{ev: ev, recs: part})
			}
		case 5:
			assigned, unassigned := s.DeadLetters(8)
			if p, _ := s.Producer(); p == 0 && len(unassigned) > 0 {
				pid++
				ev := Event{Kind: KindProducer, Producer: pid, Time: now}
				s.Apply(ev)
				log = append(log, logged{ev: ev})
				assigned, unassigned = s.DeadLetters(8)
			}
			if len(assigned) == 0 {
				for _, e := range unassigned {
					_, seq := s.Producer()
					ev := Event{Kind: KindDeadLetterAssign, Offset: e.Offset, Seq: seq, Time: now}
					s.Apply(ev)
					log = append(log, logged{ev: ev})
				}
				assigned, _ = s.DeadLetters(0)
			}
			for _, e := range assigned {
				if rng.IntN(4) == 0 {
					break
				}
				ev := Event{Kind: KindDeadLettered, Offset: e.Offset, Time: now}
				s.Apply(ev)
				log = append(log, logged{ev: ev})
			}
		case 6:
			if rng.IntN(3) == 0 {
				snaps = append(snaps, snap{s.Snapshot(), len(log)})
			}
		case 7:
			s.Advance(now)
		}
		if err := checkCounters(s); err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
	}
	s.Advance(now)
	// Rebuild from each snapshot (and from scratch) and compare.
	snaps = append(snaps, snap{nil, 0})
	for _, sn := range snaps {
		var r *State
		if sn.data == nil {
			r = New(cfg, 0)
		} else {
			var err error
			if r, err = Restore(cfg, sn.data); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range log[sn.at:] {
			need := int64(-1)
			switch l.ev.Kind {
			case KindSpill:
				need = l.ev.Run.Cursor - 1
			case KindProducer, KindLoadRun:
			default:
				need = l.ev.Offset
			}
			for need >= r.Cursor() {
				r.Offer(recs[r.Cursor()], l.ev.Time)
			}
			if l.ev.Kind == KindLoadRun {
				from := -1
				for _, rn := range r.Runs() {
					if rn.Key == l.ev.Run.Key {
						from = rn.Loaded
					}
				}
				var part []Record
				if from >= 0 {
					part = runs[l.ev.Run.Key][from:l.ev.Run.Loaded]
				}
				if _, err := r.ApplyLoad(l.ev, part); err != nil {
					t.Fatalf("seed %d: replay: %v", seed, err)
				}
			} else if err := r.Apply(l.ev); err != nil {
				t.Fatalf("seed %d: replay: %v", seed, err)
			}
		}
		r.Advance(now)
		if err := checkCounters(r); err != nil {
			t.Fatalf("seed %d rebuilt from %d: %v", seed, sn.at, err)
		}
		// Every live leased entry is leased in the rebuild with the same token;
		// every settled (absent) one below the live cursor is absent or spilled.
		for off, e := range s.entries {
			re, ok := r.entries[off]
			if e.Status == Leased && (!ok || re.Status != Leased || re.Token != e.Token) {
				t.Fatalf("seed %d rebuilt from snapshot at event %d: offset %d leased live (token %d) but %v %+v in the rebuild", seed, sn.at, off, e.Token, ok, re)
			}
			if ok && (re.Status != e.Status || re.Count != e.Count) {
				t.Errorf("seed %d rebuilt from %d: offset %d live %v/%d, rebuilt %v/%d", seed, sn.at, off, e.Status, e.Count, re.Status, re.Count)
			}
		}
		for off, re := range r.entries {
			if _, ok := s.entries[off]; !ok && off < s.cursor && re.Status != Delayed {
				inRun := false
				for _, rn := range s.runs {
					_ = rn
					inRun = true
				}
				if !inRun {
					t.Errorf("seed %d rebuilt from %d: offset %d settled live but %v in the rebuild", seed, sn.at, off, re.Status)
				}
			}
		}
	}
}

func TestShareRegressionModel(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		runModel(t, seed, seed%2 == 0)
		if t.Failed() {
			return
		}
	}
}
