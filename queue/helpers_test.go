package queue

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// ms is a duration in the state's unit.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// tokens returns a source of distinct, reproducible lease tokens.
func tokens(seed uint64) func() uint64 {
	var n uint64
	return func() uint64 {
		n++
		return mix(seed, n, 0x70c) | 1
	}
}

// testTokens makes the tokens of the leases the tests' helpers take.
var testTokens = tokens(42)

func mustOffer(t testing.TB, s *State, now int64, recs ...Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Offer(r, now); err != nil {
			t.Fatal(err)
		}
	}
}

// receive leases up to max records at now and returns the leases, in the
// order handed out.
func receive(t testing.TB, s *State, now int64, max int) []Lease {
	t.Helper()
	var out []Lease
	for _, ev := range s.Receive(now, max, 0, testTokens) {
		e, ok := s.Entry(ev.Offset)
		if ev.Kind != KindLease || !ok || e.Status != Leased || e.Token != ev.Token || e.Until != ev.Until {
			t.Fatalf("receive at %d returned %+v; the entry is %+v", now, ev, e)
		}
		out = append(out, Lease{Offset: ev.Offset, Count: e.Count, Token: ev.Token, Until: ev.Until})
	}
	return out
}

func offsets(ls []Lease) []int64 {
	out := make([]int64, len(ls))
	for i, l := range ls {
		out[i] = l.Offset
	}
	return out
}

// receiveOne leases exactly one record at now.
func receiveOne(t testing.TB, s *State, now int64) Lease {
	t.Helper()
	ls := receive(t, s, now, 1)
	if len(ls) != 1 {
		t.Fatalf("receive at %d: %d leases, want 1 (counts %+v)", now, len(ls), s.Counts())
	}
	return ls[0]
}

// receiveNone checks that nothing is handed out at now.
func receiveNone(t testing.TB, s *State, now int64) {
	t.Helper()
	if ls := receive(t, s, now, 100); len(ls) > 0 {
		t.Fatalf("receive at %d handed out %v, want nothing", now, offsets(ls))
	}
}

func settle(t testing.TB, s *State, kind SettleKind, l Lease, now int64, delay time.Duration, reason string) Event {
	t.Helper()
	ev, err := s.Settle(kind, l.Offset, l.Count, l.Token, now, delay, reason)
	if err != nil {
		t.Fatalf("%v of %+v at %d: %v", kind, l, now, err)
	}
	return ev
}

// moves are dead letters as (offset, sequence) pairs.
func moves(es []Entry) [][2]int64 {
	out := make([][2]int64, len(es))
	for i, e := range es {
		out[i] = [2]int64{e.Offset, int64(e.DLQSeq)}
	}
	return out
}

func status(t testing.TB, s *State, off int64) Status {
	t.Helper()
	e, ok := s.Entry(off)
	if !ok {
		return 0
	}
	return e.Status
}

// sameStates reports how two states differ in what a rebuild must agree
// on: cursor, clock, counters, every entry (all but the time it became
// available), the spilled runs, the key queues and the sizes. "" when
// they agree.
func sameStates(a, b *State) string { return compareStates(a, b, true) }

// compareStates is sameStates, comparing lease tokens only if tokens.
func compareStates(a, b *State, tokens bool) string {
	switch {
	case a.cursor != b.cursor:
		return fmt.Sprintf("cursor %d vs %d", a.cursor, b.cursor)
	case a.now != b.now:
		return fmt.Sprintf("now %d vs %d", a.now, b.now)
	case a.acked != b.acked || a.dead != b.dead:
		return fmt.Sprintf("acked/dead %d/%d vs %d/%d", a.acked, a.dead, b.acked, b.dead)
	case a.producer != b.producer || a.nextSeq != b.nextSeq:
		return fmt.Sprintf("producer %d/%d vs %d/%d", a.producer, a.nextSeq, b.producer, b.nextSeq)
	case a.held != b.held || a.delayed != b.delayed:
		return fmt.Sprintf("held/delayed %d/%d vs %d/%d", a.held, a.delayed, b.held, b.delayed)
	}
	for _, off := range unionKeys(a.entries, b.entries) {
		x, y := a.entries[off], b.entries[off]
		if x == nil || y == nil {
			return fmt.Sprintf("offset %d: entry %v vs %v", off, describe(x), describe(y))
		}
		if !tokens {
			y2 := *y
			y2.Token = x.Token
			y = &y2
		}
		if d := sameEntry(*x, *y); d != "" {
			return fmt.Sprintf("offset %d: %s (%+v vs %+v)", off, d, *x, *y)
		}
	}
	if ra, rb := a.Runs(), b.Runs(); !reflect.DeepEqual(ra, rb) {
		return fmt.Sprintf("runs %+v vs %+v", ra, rb)
	}
	for _, k := range unionKeys(a.keys, b.keys) {
		x, y := a.keys[k], b.keys[k]
		if x == nil {
			x = &keyQueue{}
		}
		if y == nil {
			y = &keyQueue{}
		}
		if x.has != y.has || x.has && x.holder != y.holder || !slices.Equal(x.waiting, y.waiting) {
			return fmt.Sprintf("key %d: %+v vs %+v", k, *x, *y)
		}
	}
	if ca, cb := a.Counts(), b.Counts(); ca != cb {
		return fmt.Sprintf("counts %+v vs %+v", ca, cb)
	}
	return ""
}

func sameEntry(x, y Entry) string {
	switch {
	case x.Record != y.Record:
		return "record"
	case x.Status != y.Status:
		return fmt.Sprintf("status %v vs %v", x.Status, y.Status)
	case x.Count != y.Count:
		return "count"
	case x.Status == Leased && x.Token != y.Token:
		return "token"
	case (x.Status == Leased || x.Status == Backoff || x.Status == Delayed) && x.Until != y.Until:
		return "until"
	case x.First != y.First || x.Last != y.Last:
		return "first/last delivery"
	case x.Reason != y.Reason:
		return "reason"
	case x.DLQSeq != y.DLQSeq:
		return "dead-letter sequence"
	}
	return ""
}

func describe(e *Entry) string {
	if e == nil {
		return "none"
	}
	return fmt.Sprintf("%+v", *e)
}

func unionKeys[K int64 | uint64, V any](a, b map[K]V) []K {
	var out []K
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// checkInternal checks a state's own bookkeeping: the counters, the lists
// and timers each entry must be in, the key queues. It returns the first
// problem found, "" when none.
func checkInternal(s *State) string {
	pending := 0
	for _, e := range s.entries {
		if e.Status == DeadLetterPending {
			pending++
		}
	}
	if pending != s.dlqPending {
		return fmt.Sprintf("%d records dead-letter pending, counted %d", pending, s.dlqPending)
	}
	held, delayed := 0, 0
	liveTimer := map[int64]int64{}
	for _, it := range s.timers {
		if e := s.entries[it.off]; e != nil && e.gen == it.gen {
			liveTimer[it.off] = it.at
		}
	}
	listed := map[int64]bool{}
	for p := range s.avail {
		for _, it := range s.avail[p] {
			if e := s.entries[it.off]; e != nil && e.gen == it.gen && e.Status == Available {
				if int(e.Priority) != p {
					return fmt.Sprintf("offset %d of priority %d listed at %d", it.off, e.Priority, p)
				}
				listed[it.off] = true
			}
		}
	}
	inFlight := map[uint64][]int64{}
	for _, off := range sortedOffsets(s.entries) {
		e := s.entries[off]
		if off != e.Offset || off >= s.cursor {
			return fmt.Sprintf("entry %+v under offset %d (cursor %d)", *e, off, s.cursor)
		}
		if e.Priority < 0 || e.Priority > MaxPriority || e.Count < 0 || e.Count > s.cfg.MaxDeliveries {
			return fmt.Sprintf("entry %+v out of range", *e)
		}
		if e.Status == Delayed {
			delayed++
		} else {
			held++
		}
		switch e.Status {
		case Available:
			if !listed[off] {
				return fmt.Sprintf("available offset %d is in no list", off)
			}
			if e.DeliverAt > s.now {
				return fmt.Sprintf("offset %d available before its deliver-at %d (now %d)", off, e.DeliverAt, s.now)
			}
		case Leased, Backoff, Delayed:
			at, ok := liveTimer[off]
			if !ok || at != e.Until {
				return fmt.Sprintf("%v offset %d (until %d) has timer %d %v", e.Status, off, e.Until, at, ok)
			}
			if e.Until <= s.now {
				return fmt.Sprintf("%v offset %d ends at %d, before now %d", e.Status, off, e.Until, s.now)
			}
			if e.Status == Delayed && (e.Until != e.DeliverAt || e.Count != 0) {
				return fmt.Sprintf("delayed entry %+v", *e)
			}
		case KeyBlocked:
			k := s.keys[e.KeyHash]
			if !s.keyed(e) || k == nil || !slices.Contains(k.waiting, off) {
				return fmt.Sprintf("key-blocked offset %d is not waiting on its key", off)
			}
			if !k.has {
				return fmt.Sprintf("key-blocked offset %d waits on a key nothing holds", off)
			}
		case DeadLetterPending:
		default:
			return fmt.Sprintf("offset %d has status %v", off, e.Status)
		}
		if e.Status != KeyBlocked && e.Status != Delayed && s.keyed(e) {
			inFlight[e.KeyHash] = append(inFlight[e.KeyHash], off)
		}
	}
	if held != s.held || delayed != s.delayed {
		return fmt.Sprintf("held/delayed counted %d/%d, kept %d/%d", held, delayed, s.held, s.delayed)
	}
	for _, k := range slices.Sorted(maps.Keys(inFlight)) {
		offs := inFlight[k]
		q := s.keys[k]
		if len(offs) > 1 {
			return fmt.Sprintf("key %d has %v in flight at once", k, offs)
		}
		if q == nil || !q.has || q.holder != offs[0] {
			return fmt.Sprintf("key %d: in flight %v, queue %+v", k, offs, q)
		}
	}
	for k, q := range s.keys {
		if q.has {
			if e := s.entries[q.holder]; e == nil || e.KeyHash != k || e.Status == KeyBlocked || e.Status == Delayed {
				return fmt.Sprintf("key %d held by offset %d, which is %v", k, q.holder, describe(e))
			}
		}
	}
	return ""
}

func sortedOffsets[V any](m map[int64]V) []int64 { return slices.Sorted(maps.Keys(m)) }
