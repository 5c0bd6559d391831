package queue

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Seeds are valid encodings made here; crashers found by the fuzzers
// are kept under testdata/fuzz/<FuzzName>/.

func seedEvents() []Event {
	run := &Run{Key: "runs/1", Count: 10, Loaded: 3, MinOffset: 4, Cursor: 20, SplitAt: t0 + 86_400_000, SplitOffset: 7, NextDue: t0 + 86_400_001}
	return []Event{
		{Kind: KindLease, Offset: 3, Time: t0, Token: 1<<64 - 1, Until: t0 + 30_000},
		{Kind: KindAck, Offset: 3, Time: t0 + 1},
		{Kind: KindNack, Offset: 4, Time: t0, Until: t0 + 1000, Reason: "busy"},
		{Kind: KindRelease, Offset: 5, Time: t0},
		{Kind: KindReject, Offset: 6, Time: t0, Reason: strings.Repeat("ü", 500)},
		{Kind: KindExtend, Offset: 7, Time: t0, Until: t0 + 60_000},
		{Kind: KindDeadLetterAssign, Offset: 6, Time: t0, Seq: 12},
		{Kind: KindDeadLettered, Offset: 6, Time: t0},
		{Kind: KindProducer, Time: t0, Producer: 99},
		{Kind: KindSpill, Time: t0, Run: run},
		{Kind: KindLoadRun, Time: t0, Run: run},
	}
}

// fuzzState is a small state with records in each status.
func fuzzState(tb testing.TB) *State {
	s := New(Config{OrderedByKey: true, MaxDeliveries: 2, MemTimers: minMemTimers}, 0)
	for off := range int64(12) {
		r := Record{Offset: off, Timestamp: t0, Priority: int8(off % 10), HasKey: off%3 == 0, KeyHash: uint64(off % 2)}
		if off%4 == 1 {
			r.DeliverAt = t0 + 86_400_000 + off
		}
		mustOffer(tb, s, t0, r)
	}
	ls := receive(tb, s, t0, 4)
	settle(tb, s, Nack, ls[0], t0, 0, "")
	settle(tb, s, Reject, ls[1], t0, 0, "")
	return s
}

func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range seedEvents() {
		f.Add(EncodeEvent(ev))
	}
	f.Add([]byte(`{"k":2,"o":-1,"at":0}`))
	f.Add([]byte(`{"k":10,"at":5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(data)
		if err != nil {
			return
		}
		// A decoded event encodes to a form that decodes to itself.
		again, err := DecodeEvent(EncodeEvent(ev))
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("%+v re-decodes to %+v, %v", ev, again, err)
		}
		// Applying it to a state (a log may hold any valid event)
		// leaves a state that works.
		s := fuzzState(t)
		if ev.Kind == KindLoadRun {
			s.ApplyLoad(ev, nil)
		} else {
			s.Apply(ev)
		}
		useState(t, s, ev.Time)
	})
}

// useState calls what the broker calls on a state; none may panic or
// hang, and a snapshot of it restores.
func useState(t *testing.T, s *State, now int64) {
	s.Counts()
	s.Floor()
	s.NextWake()
	s.DeadLetters(10)
	s.Runs()
	s.CanOffer()
	s.SpillPlan(now)
	if run, n := s.LoadPlan(now); run != nil && n <= 0 {
		t.Fatalf("load plan of %d records", n)
	}
	for _, ev := range s.Receive(now, 100, 0, tokens(1)) {
		e, _ := s.Entry(ev.Offset)
		s.Settle(Nack, ev.Offset, e.Count, ev.Token, now, 0, "")
	}
	s.Receive(now+86_400_000, 100, time.Second, tokens(2))
	data := s.Snapshot()
	r, err := Restore(s.Config(), data)
	if err != nil {
		t.Fatalf("a state's own snapshot does not restore: %v\n%s", err, data)
	}
	r.Counts()
}

func FuzzDecodeRun(f *testing.F) {
	f.Add(EncodeRun(nil))
	f.Add(EncodeRun([]Record{{Offset: 1, Timestamp: 2, DeliverAt: 3, KeyHash: 4, Priority: 5, HasKey: true}, {Offset: 0, DeliverAt: 4}}))
	f.Add([]byte("SQRUN1\x00\x00" + strings.Repeat("\x00", runRecordBytes)))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := DecodeRun(data)
		if err != nil {
			return
		}
		if len(recs) != (len(data)-8)/runRecordBytes {
			t.Fatalf("%d records from %d bytes", len(recs), len(data))
		}
		// A decoded run encodes to the same bytes.
		if again := EncodeRun(recs); !bytes.Equal(again, data) {
			t.Fatalf("re-encoded run differs:\n%x\n%x", data, again)
		}
		for i := 1; i < len(recs); i++ {
			if !before(recs[i-1], recs[i]) {
				t.Fatalf("decoded run out of order at %d", i)
			}
		}
		// Its records read back into a state that spilled them.
		if len(recs) > 0 {
			s := New(Config{}, 0)
			cursor := int64(0)
			for _, r := range recs {
				cursor = max(cursor, r.Offset+1)
			}
			run := &Run{Key: "k", Count: len(recs), MinOffset: 0, Cursor: cursor, NextDue: recs[0].DeliverAt}
			s.cursor = cursor
			if err := s.Apply(Event{Kind: KindSpill, Run: run}); err != nil {
				t.Fatal(err)
			}
			ev := LoadEvent(run, len(recs), 0, recs[0].DeliverAt)
			if _, err := s.ApplyLoad(ev, recs); err != nil {
				t.Fatal(err)
			}
			if d := checkInternal(s); d != "" {
				t.Fatal(d)
			}
			useState(t, s, recs[0].DeliverAt)
		}
	})
}

func FuzzRestore(f *testing.F) {
	f.Add(fuzzState(f).Snapshot())
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 3))
		m := newSim(f, simConfig(rng), seed)
		for range 150 {
			m.step()
		}
		f.Add(m.s.Snapshot())
	}
	f.Add([]byte(`{"v":1,"cursor":5,"now":10,"entries":[{"o":1,"ts":0,"st":5,"hk":true,"kh":3,"dq":-1},{"o":2,"ts":0,"st":5,"hk":true,"kh":3,"dq":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, cfg := range []Config{{}, {OrderedByKey: true, MaxDeliveries: 2, Window: 4, MemTimers: minMemTimers}} {
			s, err := Restore(cfg, data)
			if err != nil {
				continue
			}
			// A restored state snapshots to a form that restores to the
			// same snapshot.
			snap := s.Snapshot()
			r, err := Restore(cfg, snap)
			if err != nil {
				t.Fatalf("a restored state's snapshot does not restore: %v", err)
			}
			if again := r.Snapshot(); !bytes.Equal(again, snap) {
				t.Fatalf("restore of a restored snapshot differs:\n%s\n%s", snap, again)
			}
			useState(t, s, s.now)
		}
	})
}

// FuzzOperations runs the operations the fuzzer picks (one byte each)
// against a live state, checking after each what receivers rely on: no
// record leased to two at once, none handed out after it was settled,
// before its time or its backoff's end, nor out of its key's order; the
// state's own bookkeeping; then that rebuilds from the log agree with it.
func FuzzOperations(f *testing.F) {
	f.Add(uint64(1), []byte{0, 20, 20, 45, 60, 20, 70, 80, 90, 96, 20, 45, 0, 0, 20, 65, 85})
	f.Add(uint64(2), bytes.Repeat([]byte{10, 30, 50, 70, 82, 87, 92, 97}, 20))
	f.Add(uint64(3), []byte{0, 0, 0, 0, 80, 80, 96, 70, 70, 70, 87, 87, 20, 20, 50, 50})
	f.Fuzz(func(t *testing.T, seed uint64, ops []byte) {
		if len(ops) > 600 {
			ops = ops[:600]
		}
		rng := rand.New(rand.NewPCG(seed, 4))
		m := newSim(t, simConfig(rng), seed)
		for _, op := range ops {
			m.do(int(op) % 100)
		}
		for i := -1; i < len(m.snaps); i++ {
			mode := (i + 1) % offerModes
			if d := sameStates(m.s, m.rebuild(i, mode)); d != "" {
				t.Fatalf("rebuilt from snapshot %d of %d, offering way %d: %s", i, len(m.snaps), mode, d)
			}
		}
	})
}

func TestEventCodec(t *testing.T) {
	for _, ev := range seedEvents() {
		back, err := DecodeEvent(EncodeEvent(ev))
		if err != nil || !reflect.DeepEqual(back, ev) {
			t.Fatalf("%s decodes to %s, %v", short(ev), short(back), err)
		}
	}
	// A reason is logged valid and cut at a rune boundary.
	for _, reason := range []string{strings.Repeat("a", 5000), strings.Repeat("é", MaxReasonBytes), "bad \xff\xfe", strings.Repeat("€", 400) + "\xc3"} {
		back, err := DecodeEvent(EncodeEvent(Event{Kind: KindNack, Offset: 1, Reason: reason}))
		if err != nil || len(back.Reason) > MaxReasonBytes || !utf8.ValidString(back.Reason) || back.Reason != cutReason(reason) {
			t.Fatalf("reason of %d bytes logged as %d bytes (valid %v): %v", len(reason), len(back.Reason), utf8.ValidString(back.Reason), err)
		}
		if len(reason) > MaxReasonBytes && utf8.ValidString(reason) && (!strings.HasPrefix(reason, back.Reason) || len(back.Reason) < MaxReasonBytes-3) {
			t.Fatalf("a valid reason of %d bytes cut to %d bytes", len(reason), len(back.Reason))
		}
	}
	s := New(Config{}, 0)
	mustOffer(t, s, t0, Record{Offset: 0})
	l := receiveOne(t, s, t0)
	ev := settle(t, s, Reject, l, t0, 0, strings.Repeat("é", MaxReasonBytes))
	if e, _ := s.Entry(0); e.Reason != ev.Reason || len(e.Reason) > MaxReasonBytes {
		t.Fatalf("kept a reason of %d bytes, logged %d", len(e.Reason), len(ev.Reason))
	}
	for name, bad := range map[string]string{
		"not json":          `{"k":2`,
		"kind 0":            `{"k":0,"at":1}`,
		"unknown kind":      `{"k":99,"at":1}`,
		"negative offset":   `{"k":2,"o":-1,"at":1}`,
		"negative time":     `{"k":2,"at":-1}`,
		"negative sequence": `{"k":7,"s":-1,"at":1}`,
		"spill without run": `{"k":10,"at":1}`,
		"ack with a run":    `{"k":2,"at":1,"run":{"key":"a","n":1,"loaded":0,"min_off":0,"cursor":1}}`,
		"malformed run":     `{"k":10,"at":1,"run":{"key":"","n":1,"loaded":0,"min_off":0,"cursor":1}}`,
		"run loaded beyond": `{"k":11,"at":1,"run":{"key":"a","n":1,"loaded":2,"min_off":0,"cursor":1}}`,
		"long reason":       `{"k":3,"at":1,"r":"` + strings.Repeat("x", MaxReasonBytes+1) + `"}`,
	} {
		if ev, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("%s: decoded %s", name, short(ev))
		}
	}
}
