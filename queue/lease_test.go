package queue

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const t0 = int64(1_700_000_000_000)

// TestLeaseHeldUntilItEnds: a leased record is handed out to no one else
// while its lease runs; when it ends, the record comes back only after
// the backoff of a failed delivery, with the next delivery count.
func TestLeaseHeldUntilItEnds(t *testing.T) {
	s := New(Config{Visibility: 10 * time.Second, Seed: 3}, 0)
	mustOffer(t, s, t0, Record{Offset: 0, Timestamp: t0})
	l := receiveOne(t, s, t0)
	if l.Offset != 0 || l.Count != 1 || l.Until != t0+10_000 {
		t.Fatalf("lease %+v, want offset 0, count 1, until %d", l, t0+10_000)
	}
	for now := t0; now < l.Until; now += 250 {
		receiveNone(t, s, now)
	}
	receiveNone(t, s, l.Until-1)
	if st := status(t, s, 0); st != Leased {
		t.Fatalf("status before the lease end %v, want leased", st)
	}
	// The lease ran out: a failed delivery.
	back := l.Until + ms(s.Config().Backoff(0, 1))
	receiveNone(t, s, l.Until)
	if e, _ := s.Entry(0); e.Status != Backoff || e.Until != back {
		t.Fatalf("after the lease end: %+v, want backoff until %d", e, back)
	}
	if _, err := s.Settle(Ack, 0, l.Count, l.Token, l.Until, 0, ""); !errors.Is(err, ErrReceipt) {
		t.Fatalf("ack after the lease end: %v, want a receipt error", err)
	}
	receiveNone(t, s, back-1)
	l2 := receiveOne(t, s, back)
	if l2.Offset != 0 || l2.Count != 2 || l2.Token == l.Token {
		t.Fatalf("second lease %+v after %+v, want count 2 and a new token", l2, l)
	}
	// The old receipt does not settle the new lease.
	if _, err := s.Settle(Ack, 0, l.Count, l.Token, back, 0, ""); !errors.Is(err, ErrReceipt) {
		t.Fatalf("ack with the first receipt: %v, want a receipt error", err)
	}
	settle(t, s, Ack, l2, back+1, 0, "")
	if c := s.Counts(); c.Acked != 1 || c.Leased != 0 {
		t.Fatalf("counts %+v after the ack", c)
	}
}

// TestLeaseVisibility: a receive's own visibility sets the lease length.
func TestLeaseVisibility(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0}, Record{Offset: 1})
	evs := s.Receive(t0, 1, 2*time.Second, tokens(1))
	if len(evs) != 1 || evs[0].Until != t0+2000 {
		t.Fatalf("lease with 2s visibility: %+v", evs)
	}
	evs = s.Receive(t0, 1, 0, tokens(2))
	if len(evs) != 1 || evs[0].Until != t0+ms(DefaultVisibility) {
		t.Fatalf("lease with the group's visibility: %+v", evs)
	}
}

// TestExtend: an extension moves the lease end to delay from now; the
// record stays leased (and settleable) until then, and not after.
func TestExtend(t *testing.T) {
	s := New(Config{Visibility: 10 * time.Second}, 0)
	mustOffer(t, s, t0, Record{Offset: 0})
	l := receiveOne(t, s, t0)
	ev := settle(t, s, Extend, l, t0+5000, 20*time.Second, "")
	if ev.Kind != KindExtend || ev.Until != t0+25_000 {
		t.Fatalf("extend event %+v, want until %d", ev, t0+25_000)
	}
	for now := l.Until; now < ev.Until; now += 1000 {
		receiveNone(t, s, now)
	}
	if e, _ := s.Entry(0); e.Status != Leased || e.Until != ev.Until || e.Count != 1 {
		t.Fatalf("after the old end: %+v", e)
	}
	// Out-of-range extensions change nothing.
	for _, d := range []time.Duration{0, MinVisibility - time.Millisecond, MaxVisibility + time.Second} {
		if _, err := s.Settle(Extend, 0, l.Count, l.Token, t0+6000, d, ""); err == nil || errors.Is(err, ErrReceipt) {
			t.Fatalf("extend by %v: %v, want a range error", d, err)
		}
	}
	if e, _ := s.Entry(0); e.Until != ev.Until {
		t.Fatalf("a refused extension moved the end to %d", e.Until)
	}
	receiveNone(t, s, ev.Until-1)
	settle(t, s, Ack, l, ev.Until-1, 0, "") // the same receipt still settles
	// An extension that lets the lease run out.
	mustOffer(t, s, ev.Until, Record{Offset: 1})
	l = receiveOne(t, s, ev.Until)
	ext := settle(t, s, Extend, l, ev.Until, time.Second, "")
	receiveNone(t, s, ext.Until)
	if st := status(t, s, 1); st != Backoff {
		t.Fatalf("after an extended lease ran out: %v, want backoff", st)
	}
}

// TestReceiptErrors: a receipt that names no live lease settles nothing
// and says so with a *ReceiptError.
func TestReceiptErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *State) (off int64, count int32, token uint64)
	}{
		{"wrong token", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			return l.Offset, l.Count, l.Token ^ 1
		}},
		{"old delivery count", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			settle(t, s, Nack, l, t0, time.Second, "")
			receive(t, s, t0, 2) // the other records
			l2 := receiveOne(t, s, t0+1000)
			if l2.Offset != l.Offset || l2.Count != 2 {
				t.Fatalf("second lease %+v", l2)
			}
			return l.Offset, l.Count, l2.Token
		}},
		{"old lease", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			settle(t, s, Release, l, t0, 0, "")
			l2 := receiveOne(t, s, t0)
			if l2.Count != l.Count {
				t.Fatalf("after a release: %+v, want count %d", l2, l.Count)
			}
			return l.Offset, l.Count, l.Token
		}},
		{"higher count", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			return l.Offset, l.Count + 1, l.Token
		}},
		{"never delivered", func(t *testing.T, s *State) (int64, int32, uint64) {
			return 1, 1, 12345
		}},
		{"never offered", func(t *testing.T, s *State) (int64, int32, uint64) {
			return 99, 1, 12345
		}},
		{"settled", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			settle(t, s, Ack, l, t0, 0, "")
			return l.Offset, l.Count, l.Token
		}},
		{"dead-lettered", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			settle(t, s, Reject, l, t0, 0, "no")
			return l.Offset, l.Count, l.Token
		}},
		{"ran out", func(t *testing.T, s *State) (int64, int32, uint64) {
			l := receiveOne(t, s, t0)
			s.Receive(l.Until, 0, 0, nil)
			return l.Offset, l.Count, l.Token
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kind := range []SettleKind{Ack, Nack, Release, Reject, Extend} {
				s := New(Config{}, 0)
				mustOffer(t, s, t0, Record{Offset: 0}, Record{Offset: 1}, Record{Offset: 2})
				off, count, token := tc.setup(t, s)
				now := s.now
				before := s.Snapshot()
				_, err := s.Settle(kind, off, count, token, now, time.Minute, "r")
				var re *ReceiptError
				if !errors.Is(err, ErrReceipt) || !errors.As(err, &re) || re.Offset != off || !strings.Contains(err.Error(), "settled nothing") {
					t.Fatalf("%v: %v, want a *ReceiptError for offset %d", kind, err, off)
				}
				if after := s.Snapshot(); string(after) != string(before) {
					t.Fatalf("%v of a bad receipt changed the state:\n%s\n%s", kind, before, after)
				}
			}
		})
	}
}

// TestSettleTwice: a receipt settles once.
func TestSettleTwice(t *testing.T) {
	for _, first := range []SettleKind{Ack, Nack, Release, Reject} {
		for _, second := range []SettleKind{Ack, Nack, Release, Reject, Extend} {
			s := New(Config{}, 0)
			mustOffer(t, s, t0, Record{Offset: 0})
			l := receiveOne(t, s, t0)
			settle(t, s, first, l, t0+1, 0, "")
			if _, err := s.Settle(second, l.Offset, l.Count, l.Token, t0+2, time.Minute, ""); !errors.Is(err, ErrReceipt) {
				t.Fatalf("%v after %v: %v, want a receipt error", second, first, err)
			}
		}
	}
}

// TestSettleBadArguments: an unknown kind or an out-of-range delay is an
// error that is not about the receipt, and settles nothing.
func TestSettleBadArguments(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0})
	l := receiveOne(t, s, t0)
	for _, tc := range []struct {
		kind  SettleKind
		delay time.Duration
	}{{0, 0}, {Extend + 1, 0}, {Nack, -time.Second}, {Nack, MaxDelay + time.Hour}} {
		if _, err := s.Settle(tc.kind, l.Offset, l.Count, l.Token, t0, tc.delay, ""); err == nil || errors.Is(err, ErrReceipt) {
			t.Fatalf("%v with delay %v: %v, want an argument error", tc.kind, tc.delay, err)
		}
	}
	if e, _ := s.Entry(0); e.Status != Leased {
		t.Fatalf("after refused settles: %+v", e)
	}
	settle(t, s, Ack, l, t0, 0, "")
}

func TestAck(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0, Timestamp: t0}, Record{Offset: 1, Timestamp: t0 + 1})
	l := receiveOne(t, s, t0)
	ev := settle(t, s, Ack, l, t0+5, 0, "")
	if ev.Kind != KindAck || ev.Offset != 0 || ev.Time != t0+5 {
		t.Fatalf("ack event %+v", ev)
	}
	if _, ok := s.Entry(0); ok {
		t.Fatal("an acked record is still held")
	}
	if f := s.Floor(); f != 1 {
		t.Fatalf("floor %d after acking offset 0, want 1", f)
	}
	// Never handed out again, however long we wait.
	if got := offsets(receive(t, s, t0+86_400_000, 10)); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after the ack: handed out %v, want [1]", got)
	}
	if c := s.Counts(); c.Acked != 1 || c.Leased != 1 || c.OldestUnsettled != t0+1 {
		t.Fatalf("counts %+v", c)
	}
}

// TestNack: a nack without a delay backs off (counted as a failed
// delivery); with one, the record comes back at exactly that delay.
func TestNack(t *testing.T) {
	s := New(Config{BackoffMin: 2 * time.Second, BackoffMax: time.Minute, Seed: 9}, 0)
	mustOffer(t, s, t0, Record{Offset: 0}, Record{Offset: 1})
	ls := receive(t, s, t0, 2)
	ev := settle(t, s, Nack, ls[0], t0+100, 0, "busy")
	want := t0 + 100 + ms(s.Config().Backoff(0, 1))
	if ev.Kind != KindNack || ev.Until != want || ev.Reason != "busy" {
		t.Fatalf("nack event %+v, want until %d", ev, want)
	}
	if e, _ := s.Entry(0); e.Status != Backoff || e.Until != want || e.Reason != "busy" || e.Count != 1 {
		t.Fatalf("after the nack: %+v", e)
	}
	ev = settle(t, s, Nack, ls[1], t0+100, 90*time.Second, "later")
	if ev.Until != t0+100+90_000 {
		t.Fatalf("nack with a delay: until %d, want %d", ev.Until, t0+100+90_000)
	}
	receiveNone(t, s, want-1)
	l := receiveOne(t, s, want)
	if l.Offset != 0 || l.Count != 2 {
		t.Fatalf("after the backoff: %+v", l)
	}
	settle(t, s, Ack, l, want, 0, "")
	receiveNone(t, s, ev.Until-1)
	if l := receiveOne(t, s, ev.Until); l.Offset != 1 || l.Count != 2 {
		t.Fatalf("after the nack's delay: %+v", l)
	}
}

// TestRelease: a released record is available at once and its delivery
// does not count.
func TestRelease(t *testing.T) {
	s := New(Config{MaxDeliveries: 2}, 0)
	mustOffer(t, s, t0, Record{Offset: 0})
	for i := range 10 { // many more than MaxDeliveries
		l := receiveOne(t, s, t0+int64(i))
		if l.Count != 1 {
			t.Fatalf("lease %d after releases: count %d, want 1", i, l.Count)
		}
		if ev := settle(t, s, Release, l, t0+int64(i), 0, ""); ev.Kind != KindRelease {
			t.Fatalf("release event %+v", ev)
		}
		if st := status(t, s, 0); st != Available {
			t.Fatalf("after a release: %v", st)
		}
	}
	if c := s.Counts(); c.Available != 1 || c.DeadLetterPending != 0 {
		t.Fatalf("counts %+v", c)
	}
}

// TestReject: a rejected record waits for the dead-letter topic and is
// never handed out again.
func TestReject(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0}, Record{Offset: 1})
	l := receiveOne(t, s, t0)
	ev := settle(t, s, Reject, l, t0, 0, "poison")
	if ev.Kind != KindReject || ev.Reason != "poison" {
		t.Fatalf("reject event %+v", ev)
	}
	if e, _ := s.Entry(0); e.Status != DeadLetterPending || e.Reason != "poison" || e.DLQSeq != -1 {
		t.Fatalf("after the reject: %+v", e)
	}
	for now := t0; now < t0+86_400_000; now += 3_600_000 {
		for _, l := range receive(t, s, now, 10) {
			if l.Offset == 0 {
				t.Fatalf("rejected record handed out at %d", now)
			}
			settle(t, s, Release, l, now, 0, "")
		}
	}
	if _, un := s.DeadLetters(10); len(un) != 1 || un[0].Offset != 0 {
		t.Fatalf("dead letters %v", un)
	}
}

// TestMaxDeliveries: the delivery that reaches MaxDeliveries and fails,
// by a nack or by running out, sends the record to the dead-letter topic.
func TestMaxDeliveries(t *testing.T) {
	for _, how := range []string{"nack", "ran out", "nack with delay"} {
		t.Run(how, func(t *testing.T) {
			s := New(Config{MaxDeliveries: 3, Visibility: time.Second, BackoffMin: time.Second, BackoffMax: time.Second}, 0)
			mustOffer(t, s, t0, Record{Offset: 0})
			now := t0
			for n := int32(1); n <= 3; n++ {
				l := receiveOne(t, s, now)
				if l.Count != n {
					t.Fatalf("delivery %d has count %d", n, l.Count)
				}
				switch how {
				case "nack":
					settle(t, s, Nack, l, now, 0, "fail")
				case "nack with delay":
					settle(t, s, Nack, l, now, time.Second, "fail")
				case "ran out":
					now = l.Until
					s.Receive(now, 0, 0, nil)
				}
				now += 1000
			}
			if e, _ := s.Entry(0); e.Status != DeadLetterPending || e.Count != 3 {
				t.Fatalf("after %d failed deliveries: %+v", 3, e)
			}
			receiveNone(t, s, now+86_400_000)
			if c := s.Counts(); c.DeadLetterPending != 1 || c.Backoff != 0 {
				t.Fatalf("counts %+v", c)
			}
		})
	}
}

// TestDeadLetterFlow: the broker takes a producer id, assigns sequences
// to the records waiting, stores them, and reports them stored.
func TestDeadLetterFlow(t *testing.T) {
	s := New(Config{}, 0)
	for off := range int64(5) {
		mustOffer(t, s, t0, Record{Offset: off})
	}
	var held Lease
	for _, l := range receive(t, s, t0, 5) {
		if l.Offset == 2 {
			held = l
			continue
		}
		settle(t, s, Reject, l, t0, 0, "r")
	}
	as, un := s.DeadLetters(3)
	if len(as) != 0 || len(un) != 3 || un[0].Offset != 0 || un[1].Offset != 1 || un[2].Offset != 3 {
		t.Fatalf("dead letters %v %v, want none assigned and 0, 1, 3 (max 3)", moves(as), moves(un))
	}
	apply := func(ev Event) {
		t.Helper()
		if err := s.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	apply(Event{Kind: KindProducer, Time: t0, Producer: 77})
	if p, seq := s.Producer(); p != 77 || seq != 0 {
		t.Fatalf("producer %d/%d", p, seq)
	}
	// Sequences assigned out of offset order: assigned ones are listed in
	// sequence order, before the rest.
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 3, Seq: 0})
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 0, Seq: 1})
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 0, Seq: 7}) // already assigned: kept, but 7 is used
	if _, seq := s.Producer(); seq != 8 {
		t.Fatalf("next sequence %d, want 8 (a logged sequence is never handed out again)", seq)
	}
	as, un = s.DeadLetters(10)
	if got := moves(as); len(got) != 2 || got[0] != [2]int64{3, 0} || got[1] != [2]int64{0, 1} {
		t.Fatalf("assigned %v, want (3,0) then (0,1)", got)
	}
	if got := moves(un); len(got) != 2 || got[0][0] != 1 || got[1][0] != 4 {
		t.Fatalf("unassigned %v, want 1 and 4", got)
	}
	// Assigning a record that is not waiting changes nothing.
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 2, Seq: 9})
	if e, _ := s.Entry(2); e.DLQSeq != -1 || e.Status != Leased {
		t.Fatalf("assign of a leased record: %+v", e)
	}
	// A new producer (the old one fenced): sequences start again, and
	// what was assigned under the old one is assigned anew.
	apply(Event{Kind: KindProducer, Time: t0, Producer: 78})
	if p, seq := s.Producer(); p != 78 || seq != 0 {
		t.Fatalf("after a new producer: %d/%d", p, seq)
	}
	if as, un := s.DeadLetters(10); len(as) != 0 || len(un) != 4 {
		t.Fatalf("after a new producer: assigned %v, unassigned %v", moves(as), moves(un))
	}
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 3, Seq: 0})
	apply(Event{Kind: KindDeadLetterAssign, Time: t0, Offset: 0, Seq: 1})
	apply(Event{Kind: KindDeadLettered, Time: t0, Offset: 3})
	apply(Event{Kind: KindDeadLettered, Time: t0, Offset: 0})
	if _, ok := s.Entry(3); ok {
		t.Fatal("a dead-lettered record is still held")
	}
	c := s.Counts()
	if c.DeadLettered != 2 || c.DeadLetterPending != 2 || c.Leased != 1 || c.Acked != 0 {
		t.Fatalf("counts %+v", c)
	}
	settle(t, s, Ack, held, t0, 0, "")
	receiveNone(t, s, t0+86_400_000)
	if f := s.Floor(); f != 1 {
		t.Fatalf("floor %d, want 1", f)
	}
}

// TestCounts: each status is counted, spilled records as delayed.
func TestCounts(t *testing.T) {
	s := New(Config{OrderedByKey: true, MemTimers: minMemTimers}, 10)
	day := int64(86_400_000)
	recs := []Record{
		{Offset: 10, Timestamp: t0 - 50},                      // acked
		{Offset: 11, Timestamp: t0 - 40},                      // leased
		{Offset: 12, Timestamp: t0 - 30},                      // backoff
		{Offset: 13, Timestamp: t0 - 20},                      // dead-letter pending
		{Offset: 14, Timestamp: t0 - 10},                      // dead-lettered
		{Offset: 15, Timestamp: t0, HasKey: true, KeyHash: 1}, // available
		{Offset: 16, Timestamp: t0, HasKey: true, KeyHash: 1}, // key-blocked
		{Offset: 17, Timestamp: t0},                           // available
	}
	for i := range 20 { // delayed, far: some get spilled
		recs = append(recs, Record{Offset: int64(18 + i), Timestamp: t0, DeliverAt: t0 + day + int64(i)})
	}
	mustOffer(t, s, t0, recs...)
	ls := receive(t, s, t0, 5)
	if got := offsets(ls); len(got) != 5 || got[0] != 10 || got[4] != 14 {
		t.Fatalf("handed out %v, want 10 to 14", got)
	}
	settle(t, s, Ack, ls[0], t0, 0, "")
	settle(t, s, Nack, ls[2], t0, 0, "")
	settle(t, s, Reject, ls[3], t0, 0, "")
	settle(t, s, Reject, ls[4], t0, 0, "")
	if err := s.Apply(Event{Kind: KindDeadLettered, Time: t0, Offset: 14}); err != nil {
		t.Fatal(err)
	}
	run, spilled := s.SpillPlan(t0)
	if run == nil {
		t.Fatal("no spill of 20 delayed records with MemTimers 16")
	}
	run.Key = "r"
	if err := s.Apply(Event{Kind: KindSpill, Time: t0, Run: run}); err != nil {
		t.Fatal(err)
	}
	want := Counts{Available: 2, Leased: 1, Backoff: 1, Delayed: 20, KeyBlocked: 1, DeadLetterPending: 1, Acked: 1, DeadLettered: 1, OldestUnsettled: t0 - 40}
	if c := s.Counts(); c != want {
		t.Fatalf("counts %+v\nwant   %+v (%d spilled)", c, want, len(spilled))
	}
}

// TestSkipTo: records gone to retention are skipped; the cursor never
// moves back, and the floor follows it once all before is settled.
func TestSkipTo(t *testing.T) {
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0}, Record{Offset: 1})
	s.SkipTo(10)
	if c := s.Cursor(); c != 10 {
		t.Fatalf("cursor %d after SkipTo(10)", c)
	}
	s.SkipTo(5)
	if c := s.Cursor(); c != 10 {
		t.Fatalf("cursor %d after SkipTo(5), want 10: it never moves back", c)
	}
	if err := s.Offer(Record{Offset: 7}, t0); err == nil {
		t.Fatal("a record below the cursor offered")
	}
	mustOffer(t, s, t0, Record{Offset: 10})
	if f := s.Floor(); f != 0 {
		t.Fatalf("floor %d with offset 0 unsettled", f)
	}
	for _, l := range receive(t, s, t0, 10) {
		settle(t, s, Ack, l, t0, 0, "")
	}
	if f := s.Floor(); f != 11 {
		t.Fatalf("floor %d after settling everything, want 11", f)
	}
}

// TestAdvance: time alone ends leases and backoffs; the clock never moves
// back.
func TestAdvance(t *testing.T) {
	s := New(Config{Visibility: time.Second, BackoffMin: time.Second, BackoffMax: time.Second}, 0)
	mustOffer(t, s, t0, Record{Offset: 0})
	l := receiveOne(t, s, t0)
	s.Advance(l.Until - 1)
	if st := status(t, s, 0); st != Leased {
		t.Fatalf("before the lease end: %v", st)
	}
	s.Advance(l.Until)
	if st := status(t, s, 0); st != Backoff {
		t.Fatalf("at the lease end: %v", st)
	}
	if w := s.NextWake(); w != l.Until+1000 {
		t.Fatalf("next wake %d, want the backoff's end %d", w, l.Until+1000)
	}
	s.Advance(t0) // back: nothing changes
	if s.now != l.Until {
		t.Fatalf("clock %d after advancing back, want %d", s.now, l.Until)
	}
	s.Advance(l.Until + 1000)
	if st := status(t, s, 0); st != Available {
		t.Fatalf("after the backoff: %v", st)
	}
	if w := s.NextWake(); w != 0 {
		t.Fatalf("next wake %d with nothing waiting", w)
	}
}
