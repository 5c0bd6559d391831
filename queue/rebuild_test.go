package queue

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// simConfig is a random share-group config, small enough that windows
// fill, timers spill and deliveries run out.
func simConfig(rng *rand.Rand) Config {
	return Config{
		Visibility:        time.Duration(5+rng.IntN(30)) * time.Second,
		MaxDeliveries:     int32(1 + rng.IntN(5)),
		BackoffMin:        time.Duration(100+rng.IntN(2000)) * time.Millisecond,
		BackoffMax:        time.Duration(3+rng.IntN(120)) * time.Second,
		BackoffMultiplier: 1 + 3*rng.Float64(),
		OrderedByKey:      rng.IntN(2) == 0,
		PriorityAging:     time.Duration(1+rng.IntN(10)) * time.Second,
		Window:            4 + rng.IntN(100),
		MemTimers:         minMemTimers + rng.IntN(16),
		Horizon:           time.Duration(1+rng.IntN(120)) * time.Second,
		Seed:              rng.Uint64(),
	}
}

// TestRebuildEquivalence runs random histories against a live state and
// rebuilds it from each snapshot plus the events after it, and from
// nothing plus every event: each rebuild must agree with the live state
// on every entry (status, delivery count, lease token and end, backoff
// and delay ends, dead-letter sequence), the settled records, the runs
// and the key queues; then the live state and two rebuilds run on in
// lock step and must hand out the same records and settle them alike.
func TestRebuildEquivalence(t *testing.T) {
	seeds, steps := 200/raceScale, 400
	if testing.Short() {
		seeds = 40
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 77))
			m := newSim(t, simConfig(rng), seed)
			for range steps {
				m.step()
			}
			for i := -1; i < len(m.snaps); i++ {
				for mode := range offerModes {
					if i >= 0 && mode != (i%offerModes) {
						continue // from nothing every way, from a snapshot one way each
					}
					r := m.rebuild(i, mode)
					if d := sameStates(m.s, r); d != "" {
						t.Fatalf("rebuilt from snapshot %d of %d (event %d of %d), offering way %d: %s", i, len(m.snaps), m.snapPos(i), len(m.log), mode, d)
					}
					if d := checkInternal(r); d != "" {
						t.Fatalf("rebuilt from snapshot %d of %d, offering way %d: %s", i, len(m.snaps), mode, d)
					}
				}
			}
			from := -1
			if len(m.snaps) > 0 {
				from = rng.IntN(len(m.snaps))
			}
			lockstep(t, m, []*State{m.s, m.rebuild(from, rng.IntN(offerModes)), m.rebuild(-1, offerLazily)}, 150, 0)
		})
	}
}

// TestRebuildSameOrder: when every record was offered before the
// snapshot, a rebuilt state hands records out in the same order as the
// live one, one at a time: when a backoff or a delay ended (what time
// alone decides) must not depend on when the live state was looked at.
func TestRebuildSameOrder(t *testing.T) {
	seeds := 80 / raceScale
	if testing.Short() {
		seeds = 20
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 78))
			cfg := simConfig(rng)
			cfg.Window = 1 << 20
			m := newSim(t, cfg, seed)
			m.produce(40 + rng.IntN(60))
			m.offer()
			for range 200 {
				m.step()
			}
			m.snapshot()
			m.noProduce = true
			for range 300 {
				m.step()
			}
			r := m.rebuild(len(m.snaps)-1, offerLazily)
			if d := sameStates(m.s, r); d != "" {
				t.Fatal(d)
			}
			lockstep(t, m, []*State{m.s, r}, 150, 1+rng.IntN(3))
		})
	}
}

func (m *sim) snapPos(i int) int {
	if i < 0 {
		return 0
	}
	return m.snaps[i].pos
}

// lockstep runs states that agree on with the same inputs and checks that
// they go on agreeing: the same records handed out at every step (as a
// set when max is 0 and receives take all; in the same order when each
// receive takes at most max), settled alike, spilled and loaded alike. It
// produces more records as it goes.
func lockstep(t *testing.T, m *sim, states []*State, steps, max int) {
	t.Helper()
	now := m.s.now
	offered := make([]int, len(states))
	for i, s := range states {
		offered[i], _ = slices.BinarySearchFunc(m.recs, s.Cursor(), func(r Record, off int64) int { return int(r.Offset - off) })
	}
	toks := make([]func() uint64, len(states))
	for i := range toks {
		toks[i] = tokens(uint64(1000 + i))
	}
	fail := func(step int, format string, args ...any) {
		t.Helper()
		t.Fatalf("lock step %d (at %d): %s", step, now, fmt.Sprintf(format, args...))
	}
	for step := range steps {
		switch x := m.rng.IntN(10); {
		case x < 6:
			now += int64(1 + m.rng.IntN(5000))
		case x < 9:
			now += int64(1 + m.rng.IntN(300_000))
		default:
			now += int64(1 + m.rng.IntN(86_400_000))
		}
		m.now = now
		if max == 0 && step < steps/2 && m.rng.IntN(3) == 0 {
			m.produce(1 + m.rng.IntN(8))
		}
		for i, s := range states {
			for offered[i] < len(m.recs) && s.CanOffer() {
				if err := s.Offer(m.recs[offered[i]], now); err != nil {
					fail(step, "offer: %v", err)
				}
				offered[i]++
			}
			if offered[i] != offered[0] {
				fail(step, "state %d took %d records, state 0 %d", i, offered[i], offered[0])
			}
		}
		// Spill and load alike.
		for range 100 {
			run, recs := states[0].SpillPlan(now)
			for i, s := range states[1:] {
				r2, recs2 := s.SpillPlan(now)
				if !reflect.DeepEqual(run, r2) || !reflect.DeepEqual(recs, recs2) {
					fail(step, "state %d plans spill %+v, state 0 %+v", i+1, r2, run)
				}
			}
			if run == nil {
				break
			}
			run.Key = fmt.Sprintf("lock-%d-%d", step, len(m.store))
			m.store[run.Key] = recs
			for _, s := range states {
				if err := s.Apply(Event{Kind: KindSpill, Time: now, Run: run}); err != nil {
					fail(step, "spill: %v", err)
				}
			}
		}
		for range 1000 {
			run, n := states[0].LoadPlan(now)
			for i, s := range states[1:] {
				r2, n2 := s.LoadPlan(now)
				if !reflect.DeepEqual(run, r2) || n != n2 {
					fail(step, "state %d plans load %+v %d, state 0 %+v %d", i+1, r2, n2, run, n)
				}
			}
			if run == nil {
				break
			}
			all := m.store[run.Key]
			var next int64
			if run.Loaded+n < len(all) {
				next = all[run.Loaded+n].Due()
			}
			ev := LoadEvent(run, n, next, now)
			for _, s := range states {
				if _, err := s.ApplyLoad(ev, all[run.Loaded:run.Loaded+n]); err != nil {
					fail(step, "load: %v", err)
				}
			}
		}
		// Receive alike.
		take := max
		if take == 0 {
			take = 1 << 20
		}
		var got [][]Lease
		for i, s := range states {
			var ls []Lease
			for _, ev := range s.Receive(now, take, 0, toks[i]) {
				e, _ := s.Entry(ev.Offset)
				if r := m.record(ev.Offset); r.DeliverAt > now {
					fail(step, "offset %d handed out before its deliver-at %d", ev.Offset, r.DeliverAt)
				}
				ls = append(ls, Lease{Offset: ev.Offset, Count: e.Count, Until: ev.Until})
			}
			if max == 0 {
				slices.SortFunc(ls, func(a, b Lease) int { return int(a.Offset - b.Offset) })
			}
			got = append(got, ls)
			if !reflect.DeepEqual(ls, got[0]) {
				fail(step, "state %d handed out %+v, state 0 %+v", i, ls, got[0])
			}
		}
		// Settle alike: each leased record by a rule of its offset, count
		// and the step.
		for _, off := range sortedOffsets(states[0].entries) {
			e0 := states[0].entries[off]
			if e0.Status != Leased {
				continue
			}
			kind, delay := lockstepSettle(off, e0.Count, step)
			if kind == 0 {
				continue
			}
			var ev0 Event
			for i, s := range states {
				e := s.entries[off]
				if e == nil || e.Status != Leased {
					fail(step, "offset %d leased in state 0, %v in state %d", off, describe(e), i)
				}
				ev, err := s.Settle(kind, off, e.Count, e.Token, now, delay, "lock step")
				if err != nil {
					fail(step, "state %d: %v of offset %d: %v", i, kind, off, err)
				}
				ev.Token = 0
				if i == 0 {
					ev0 = ev
				} else if !reflect.DeepEqual(ev, ev0) {
					fail(step, "state %d settled %+v, state 0 %+v", i, ev, ev0)
				}
			}
		}
		// Dead letters alike: assign and store all.
		a0, u0 := states[0].DeadLetters(1 << 20)
		for i, s := range states[1:] {
			if a, u := s.DeadLetters(1 << 20); !slices.Equal(moves(a), moves(a0)) || !slices.Equal(moves(u), moves(u0)) {
				fail(step, "state %d dead letters %v %v, state 0 %v %v", i+1, moves(a), moves(u), moves(a0), moves(u0))
			}
		}
		var evs []Event
		if p, _ := states[0].Producer(); p == 0 && len(u0) > 0 {
			evs = append(evs, Event{Kind: KindProducer, Time: now, Producer: 42})
		}
		_, seq := states[0].Producer()
		if len(evs) > 0 {
			seq = 0
		}
		for _, e := range u0 {
			evs = append(evs, Event{Kind: KindDeadLetterAssign, Time: now, Offset: e.Offset, Seq: seq})
			seq++
		}
		for _, e := range append(a0, u0...) {
			if m.rng.IntN(2) == 0 {
				evs = append(evs, Event{Kind: KindDeadLettered, Time: now, Offset: e.Offset})
			}
		}
		for _, s := range states {
			for _, ev := range evs {
				if err := s.Apply(ev); err != nil {
					fail(step, "apply %+v: %v", ev, err)
				}
			}
		}
		for i, s := range states[1:] {
			if d := compareStates(states[0], s, false); d != "" { // each has tokens of its own
				fail(step, "state %d: %s", i+1, d)
			}
			if d := checkInternal(s); d != "" {
				fail(step, "state %d: %s", i+1, d)
			}
		}
	}
}

// lockstepSettle is how the lock step settles a leased record: by a hash
// of its offset, delivery count and the step, so every state does the
// same (kind 0: left to run out).
func lockstepSettle(off int64, count int32, step int) (SettleKind, time.Duration) {
	switch mix(uint64(off), uint64(count), uint64(step)) % 20 {
	case 0, 1, 2, 3, 4, 5, 6, 7:
		return Ack, 0
	case 8, 9, 10:
		return Nack, 0
	case 11:
		return Nack, 90 * time.Second
	case 12:
		return Release, 0
	case 13:
		return Reject, 0
	case 14:
		return Extend, time.Minute
	}
	return 0, 0
}
