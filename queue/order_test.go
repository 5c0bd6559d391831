package queue

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{}.Defaults(), true},
		{Config{Visibility: MinVisibility, MaxDeliveries: MaxMaxDeliveries, BackoffMin: time.Millisecond, BackoffMax: MaxDelay, BackoffMultiplier: 1, PriorityAging: time.Millisecond, Window: 1, MemTimers: minMemTimers}, true},
		{Config{Visibility: MinVisibility - 1}, false},
		{Config{Visibility: MaxVisibility + 1}, false},
		{Config{MaxDeliveries: -1}, false},
		{Config{MaxDeliveries: MaxMaxDeliveries + 1}, false},
		{Config{BackoffMin: -1}, false},
		{Config{BackoffMin: time.Microsecond}, false},
		{Config{BackoffMin: MaxDelay + 1}, false},
		{Config{BackoffMax: MaxDelay + 1}, false},
		{Config{BackoffMin: 2 * time.Second, BackoffMax: time.Second}, false},
		{Config{BackoffMultiplier: 0.5}, false},
		{Config{BackoffMultiplier: maxBackoffMultiplier + 1}, false},
		{Config{PriorityAging: -1}, false},
		{Config{PriorityAging: 500 * time.Microsecond}, false},
		{Config{PriorityAging: time.Hour + 1}, false},
		{Config{Window: -1}, false},
		{Config{Window: maxConfiguredWindow + 1}, false},
		{Config{MemTimers: minMemTimers - 1}, false},
		{Config{MemTimers: maxConfiguredMemTimer + 1}, false},
	} {
		if err := tc.cfg.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: Check() = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
	d := Config{BackoffMin: time.Hour}.Defaults()
	if d.BackoffMax != time.Hour || d.Visibility != DefaultVisibility || d.Window != DefaultWindow || d.MemTimers != DefaultMemTimers || d.Check() != nil {
		t.Fatalf("defaults %+v", d)
	}
}

// TestDelayed: a delayed record is not handed out before its deliver-at
// time, and holds back nothing offered after it.
func TestDelayed(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0,
		Record{Offset: 0, DeliverAt: t0 + 5000},
		Record{Offset: 1},
		Record{Offset: 2, DeliverAt: t0 + 1000},
		Record{Offset: 3, DeliverAt: t0}, // not in the future: not delayed
		Record{Offset: 4},
	)
	if c := s.Counts(); c.Delayed != 2 || c.Available != 3 {
		t.Fatalf("counts %+v", c)
	}
	for _, l := range receive(t, s, t0, 10) {
		if l.Offset != 1 && l.Offset != 3 && l.Offset != 4 {
			t.Fatalf("offset %d handed out at once", l.Offset)
		}
		settle(t, s, Ack, l, t0, 0, "")
	}
	for now := t0; now < t0+1000; now += 50 {
		receiveNone(t, s, now)
	}
	receiveNone(t, s, t0+999)
	if l := receiveOne(t, s, t0+1000); l.Offset != 2 {
		t.Fatalf("at its deliver-at: %+v", l)
	}
	if w := s.NextWake(); w != t0+1000+ms(DefaultVisibility) && w != t0+5000 {
		t.Fatalf("next wake %d", w)
	}
	receiveNone(t, s, t0+4999)
	if l := receiveOne(t, s, t0+5000); l.Offset != 0 {
		t.Fatalf("at its deliver-at: %+v", l)
	}
}

// TestDelayedRandom: many records with random delays, received at random
// times: none early, and each one handed out at the first receive at or
// after its deliver-at (receives take all).
func TestDelayedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := New(Config{MemTimers: 1 << 20}, 0)
	due := map[int64]int64{}
	now := t0
	for off := range int64(3000) {
		r := Record{Offset: off, Timestamp: now}
		if rng.IntN(3) > 0 {
			r.DeliverAt = now + int64(rng.IntN(600_000))
		}
		mustOffer(t, s, now, r)
		due[off] = max(r.DeliverAt, now)
		now += int64(rng.IntN(100))
	}
	for len(due) > 0 {
		for _, l := range receive(t, s, now, 1<<20) {
			if due[l.Offset] > now {
				t.Fatalf("offset %d handed out at %d, before %d", l.Offset, now, due[l.Offset])
			}
			delete(due, l.Offset)
			settle(t, s, Ack, l, now, 0, "")
		}
		for off, at := range due {
			if at <= now {
				t.Fatalf("offset %d due at %d not handed out at %d", off, at, now)
			}
		}
		now += int64(1 + rng.IntN(20_000))
	}
}

// TestPriorityOrder: higher priority first; equal ones oldest first, then
// by offset.
func TestPriorityOrder(t *testing.T) {
	s := New(Config{PriorityAging: time.Hour}, 0)
	prios := []int8{3, 9, 0, 5, 9, 1, 7, 2, 8, 4, 6, 0, 12, -3}
	for i, p := range prios {
		mustOffer(t, s, t0+int64(i/4), Record{Offset: int64(i), Priority: p})
	}
	var got []int8
	for range prios {
		l := receiveOne(t, s, t0+100)
		e, _ := s.Entry(l.Offset)
		got = append(got, e.Priority)
		if e.Priority == 9 && l.Offset != 1 && len(got) == 1 {
			t.Fatalf("first handed out %d, want offset 1 (the oldest of priority 9)", l.Offset)
		}
	}
	if !slices.IsSortedFunc(got, func(a, b int8) int { return int(b - a) }) || got[0] != 9 || got[len(got)-1] != 0 {
		t.Fatalf("priorities handed out %v, want descending from 9 (12 clamped) to 0 (-3 clamped)", got)
	}
	// Same priority, same time: offset order; older first otherwise.
	s = New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0, Priority: 4}, Record{Offset: 1, Priority: 4})
	l := receiveOne(t, s, t0)
	settle(t, s, Release, l, t0+10, 0, "") // 0 is available since t0+10 now
	mustOffer(t, s, t0+20, Record{Offset: 2, Priority: 4})
	if got := offsets(receive(t, s, t0+30, 3)); !slices.Equal(got, []int64{1, 0, 2}) {
		t.Fatalf("equal priorities handed out %v, want [1 0 2]", got)
	}
}

// TestPriorityAging: effective priority is priority + ⌊waiting /
// PriorityAging⌋, ties to the longest waiting.
func TestPriorityAging(t *testing.T) {
	aging := int64(1000)
	for _, tc := range []struct {
		low      int8
		lowSince int64
		high     int8
		at       int64
		want     int64 // offset handed out first: 0 is the low one
	}{
		{0, 0, 3, 2999, 1}, // 0+2 < 3
		{0, 0, 3, 3000, 0}, // 0+3 = 3, older
		{0, 0, 9, 8999, 1},
		{0, 0, 9, 9000, 0},
		{2, 0, 9, 7000, 0},
		{2, 0, 9, 6999, 1},
		{5, 0, 5, 0, 0},
	} {
		s := New(Config{PriorityAging: time.Duration(aging) * time.Millisecond}, 0)
		mustOffer(t, s, t0+tc.lowSince, Record{Offset: 0, Priority: tc.low})
		mustOffer(t, s, t0+tc.at, Record{Offset: 1, Priority: tc.high})
		if l := receiveOne(t, s, t0+tc.at); l.Offset != tc.want {
			t.Errorf("%+v: handed out %d first", tc, l.Offset)
		}
	}
}

// TestBoundedStarvation: behind a steady stream of priority-9 records
// that receivers keep up with, a record of priority p is handed out
// within (9-p) × PriorityAging (plus one receive step).
func TestBoundedStarvation(t *testing.T) {
	const aging, step = 1000, 100
	for p := int8(0); p < MaxPriority; p++ {
		s := New(Config{PriorityAging: aging * time.Millisecond}, 0)
		mustOffer(t, s, t0, Record{Offset: 0, Priority: p})
		now, off := t0, int64(1)
		for {
			mustOffer(t, s, now, Record{Offset: off, Priority: 9})
			off++
			l := receiveOne(t, s, now)
			settle(t, s, Ack, l, now, 0, "")
			if l.Offset == 0 {
				break
			}
			if now-t0 > int64(MaxPriority-p)*aging+step {
				t.Fatalf("priority %d: not handed out after %dms behind priority 9", p, now-t0)
			}
			now += step
		}
		if wait := now - t0; wait > int64(MaxPriority-p)*aging+step || wait < int64(MaxPriority-p)*aging {
			t.Fatalf("priority %d handed out after %dms, want within [%d, %d]", p, wait, int64(MaxPriority-p)*aging, int64(MaxPriority-p)*aging+step)
		}
	}
}

// TestBoundedStarvationRule: the rule behind the bound, under a stream
// receivers do not keep up with: a record of priority p is handed out
// before every record that became available (9-p) × PriorityAging or
// more after it.
func TestBoundedStarvationRule(t *testing.T) {
	const aging = 1000
	rng := rand.New(rand.NewPCG(1, 1))
	for p := int8(0); p < MaxPriority; p++ {
		s := New(Config{PriorityAging: aging * time.Millisecond}, 0)
		offered := map[int64]int64{}
		mustOffer(t, s, t0, Record{Offset: 0, Priority: p})
		offered[0] = t0
		now, off := t0, int64(1)
		var before []int64
		for done := false; !done; now += int64(rng.IntN(300)) {
			for range 1 + rng.IntN(3) { // more than the one received per step
				mustOffer(t, s, now, Record{Offset: off, Priority: int8(int(p) + 1 + rng.IntN(int(MaxPriority-p)))})
				offered[off] = now
				off++
			}
			for _, l := range receive(t, s, now, 1) {
				settle(t, s, Ack, l, now, 0, "")
				if l.Offset == 0 {
					done = true
					break
				}
				before = append(before, l.Offset)
			}
			if now-t0 > 1000*aging {
				t.Fatalf("priority %d never handed out", p)
			}
		}
		for _, o := range before {
			if offered[o]-t0 >= int64(MaxPriority-p)*aging {
				t.Fatalf("priority %d: offset %d, available %dms after it, handed out first", p, o, offered[o]-t0)
			}
		}
		if len(before) == 0 {
			t.Fatalf("priority %d: the stream never got ahead", p)
		}
	}
}

// TestOrderedByKey: one record per key in flight; the next only once the
// previous is acked or stored as a dead letter, across nacks, releases
// and leases that ran out; records without a key are not held back.
func TestOrderedByKey(t *testing.T) {
	s := New(Config{OrderedByKey: true, BackoffMin: time.Second, BackoffMax: time.Second, Visibility: time.Hour}, 0)
	k := func(off int64, key uint64) Record { return Record{Offset: off, HasKey: true, KeyHash: key} }
	mustOffer(t, s, t0, k(0, 1), k(1, 1), k(2, 2), Record{Offset: 3}, k(4, 1), k(5, 2), Record{Offset: 6, KeyHash: 1})
	ls := receive(t, s, t0, 10)
	if got := offsets(ls); !slices.Equal(got, []int64{0, 2, 3, 6}) {
		t.Fatalf("handed out %v, want the first of each key and those without: [0 2 3 6]", got)
	}
	if c := s.Counts(); c.KeyBlocked != 3 {
		t.Fatalf("counts %+v, want 3 key-blocked", c)
	}
	now := t0
	// Key 1: a nack holds the key through the backoff.
	settle(t, s, Nack, ls[0], now, 0, "")
	receiveNone(t, s, now+999)
	l := receiveOne(t, s, now+1000)
	if l.Offset != 0 || l.Count != 2 {
		t.Fatalf("after the backoff %+v, want offset 0 again", l)
	}
	// A release holds it too.
	now += 1000
	settle(t, s, Release, l, now, 0, "")
	evs := s.Receive(now, 1, 10*time.Second, testTokens)
	if len(evs) != 1 || evs[0].Offset != 0 {
		t.Fatalf("after a release %+v, want offset 0 again", evs)
	}
	// So does a lease that ran out, and its backoff.
	now = evs[0].Until
	receiveNone(t, s, now)
	l = receiveOne(t, s, now+1000)
	if l.Offset != 0 || l.Count != 3 {
		t.Fatalf("after running out %+v, want offset 0 at delivery 3", l)
	}
	now += 1000
	settle(t, s, Ack, l, now, 0, "")
	l = receiveOne(t, s, now)
	if l.Offset != 1 {
		t.Fatalf("after the ack of 0: %+v, want 1", l)
	}
	// A reject holds the key until the record is stored as a dead letter.
	settle(t, s, Reject, l, now, 0, "")
	receiveNone(t, s, now+60_000)
	now += 60_000
	if err := s.Apply(Event{Kind: KindDeadLettered, Time: now, Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if got := offsets(receive(t, s, now, 10)); !slices.Equal(got, []int64{4}) {
		t.Fatalf("after 1 was dead-lettered: %v, want [4]", got)
	}
	// Key 2 goes on when 2 is acked.
	settle(t, s, Ack, ls[1], now, 0, "")
	if got := offsets(receive(t, s, now, 10)); !slices.Equal(got, []int64{5}) {
		t.Fatalf("after 2 was acked: %v, want [5]", got)
	}
	// Without OrderedByKey, keys hold nothing back.
	s = New(Config{}, 0)
	mustOffer(t, s, t0, k(0, 1), k(1, 1), k(2, 1))
	if got := offsets(receive(t, s, t0, 10)); len(got) != 3 {
		t.Fatalf("unordered group handed out %v, want all 3", got)
	}
}

// TestOrderedByKeyMaxDeliveries: a record that ran out of deliveries
// holds its key until stored as a dead letter.
func TestOrderedByKeyMaxDeliveries(t *testing.T) {
	s := New(Config{OrderedByKey: true, MaxDeliveries: 2, BackoffMin: time.Second, BackoffMax: time.Second}, 0)
	mustOffer(t, s, t0, Record{Offset: 0, HasKey: true, KeyHash: 7}, Record{Offset: 1, HasKey: true, KeyHash: 7})
	now := t0
	for range 2 {
		l := receiveOne(t, s, now)
		settle(t, s, Nack, l, now, 0, "")
		now += 1000
	}
	if st := status(t, s, 0); st != DeadLetterPending {
		t.Fatalf("after 2 failed deliveries: %v", st)
	}
	receiveNone(t, s, now+86_400_000)
	now += 86_400_000
	if err := s.Apply(Event{Kind: KindDeadLettered, Time: now, Offset: 0}); err != nil {
		t.Fatal(err)
	}
	if l := receiveOne(t, s, now); l.Offset != 1 {
		t.Fatalf("after the dead-letter move: %+v", l)
	}
}

// TestOrderedByKeyDelayed: records with a deliver-at time leave their
// key's order, in both directions, whatever the producer's clock said.
func TestOrderedByKeyDelayed(t *testing.T) {
	s := New(Config{OrderedByKey: true, Visibility: time.Hour}, 0)
	mustOffer(t, s, t0,
		Record{Offset: 0, Timestamp: t0, DeliverAt: t0 + 60_000, HasKey: true, KeyHash: 3},
		Record{Offset: 1, Timestamp: t0 + 600_000, DeliverAt: t0 + 30_000, HasKey: true, KeyHash: 3}, // a producer clock 10 min ahead
		Record{Offset: 2, Timestamp: t0, HasKey: true, KeyHash: 3},
		Record{Offset: 3, Timestamp: t0, HasKey: true, KeyHash: 3},
	)
	if got := offsets(receive(t, s, t0, 10)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("handed out %v, want [2]: the delayed ones hold nothing back", got)
	}
	if got := offsets(receive(t, s, t0+30_000, 10)); !slices.Equal(got, []int64{1}) {
		t.Fatalf("at 30s: %v, want [1], while 2 is in flight", got)
	}
	if got := offsets(receive(t, s, t0+60_000, 10)); !slices.Equal(got, []int64{0}) {
		t.Fatalf("at 60s: %v, want [0]", got)
	}
	if st := status(t, s, 3); st != KeyBlocked {
		t.Fatalf("offset 3 is %v, want key-blocked behind 2", st)
	}
}
