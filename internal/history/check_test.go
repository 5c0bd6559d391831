package history

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// record builds a history with a Recorder writing to a buffer and decodes it
// back, so the tests go through the real format.
func record(t *testing.T, build func(r *Recorder)) []Event {
	t.Helper()
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	build(r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	events, err := Decode(&buf)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return events
}

const topic = "t"

// produce records a send of value and its ack at partition p, offset off.
func produce(r *Recorder, process, value string, p int32, off int64) {
	r.Send(process, topic, value)
	r.Ack(process, topic, p, off, value)
}

// recs makes records of values at consecutive offsets from first.
func recs(first int64, values ...string) []Rec {
	out := make([]Rec, len(values))
	for i, v := range values {
		out[i] = Rec{Offset: first + int64(i), Value: v}
	}
	return out
}

// base is a clean history: three values acked at offsets 0..2 of
// partition 0, all read back, and the final high watermark 3.
func base(r *Recorder) {
	produce(r, "p1", "v0", 0, 0)
	produce(r, "p1", "v1", 0, 1)
	produce(r, "p1", "v2", 0, 2)
	r.Read("c1", topic, 0, recs(0, "v0", "v1", "v2"))
}

func pos(p int32, off int64) Position { return Position{Partition: p, Offset: off} }

// anomalies is what a test expects Check to find; nil fields expect none.
type anomalies struct {
	lost         []Lost
	duplicates   []Duplicate
	inconsistent []Inconsistent
	ackMismatch  []AckMismatch
	gaps         []Gap
	unexpected   []Unexpected
	failed       []FailedButPresent
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		build func(r *Recorder)
		want  anomalies
		check func(t *testing.T, rep *Report) // extra assertions, may be nil
	}{
		{
			name: "clean",
			build: func(r *Recorder) {
				base(r)
				// Repeated reads, by the same and another consumer, in
				// overlapping batches, are not anomalies.
				r.Read("c1", topic, 0, recs(1, "v1", "v2"))
				r.Read("c2", topic, 0, recs(0, "v0", "v1"))
				r.Read("c2", topic, 0, recs(2, "v2"))
				r.Read("c2", topic, 0, nil) // an empty poll
				r.HighWatermark(topic, 0, 3)
			},
			check: func(t *testing.T, rep *Report) {
				if rep.Sends != 3 || rep.Acks != 3 || rep.Fails != 0 || rep.Unknowns != 0 ||
					rep.Reads != 5 || rep.Records != 8 || rep.Observed != 3 || rep.HWMs != 1 || rep.Events != 12 {
					t.Errorf("counts: %+v", rep)
				}
			},
		},
		{
			name: "acked but never read is lost",
			build: func(r *Recorder) {
				produce(r, "p1", "v0", 0, 0)
				produce(r, "p1", "v1", 0, 1)
				produce(r, "p2", "v2", 0, 2)
				r.Read("c1", topic, 0, recs(0, "v0", "v1"))
				r.HighWatermark(topic, 0, 2)
			},
			want: anomalies{lost: []Lost{{Topic: topic, Value: "v2", Process: "p2", Acked: pos(0, 2)}}},
		},
		{
			name: "one value at two offsets is a duplicate",
			build: func(r *Recorder) {
				base(r)
				// v1 written twice (say a retried produce), read at its
				// acked offset and at 3.
				r.Read("c1", topic, 0, recs(3, "v1"))
				r.HighWatermark(topic, 0, 4)
			},
			// Read at its acked offset too, so not an ack mismatch.
			want: anomalies{duplicates: []Duplicate{{Topic: topic, Value: "v1", Positions: []Position{pos(0, 1), pos(0, 3)}}}},
		},
		{
			name: "same value in two partitions is a duplicate",
			build: func(r *Recorder) {
				base(r)
				r.Read("c2", topic, 1, recs(0, "v0"))
				r.HighWatermark(topic, 0, 3)
				r.HighWatermark(topic, 1, 1)
			},
			want: anomalies{duplicates: []Duplicate{{Topic: topic, Value: "v0", Positions: []Position{pos(0, 0), pos(1, 0)}}}},
		},
		{
			name: "two values at one offset are inconsistent",
			build: func(r *Recorder) {
				base(r)
				r.Send("p2", topic, "x")
				r.Unknown("p2", topic, "x", errors.New("timeout"))
				r.Read("c2", topic, 0, recs(0, "v0", "x", "v2"))
				r.HighWatermark(topic, 0, 3)
			},
			want: anomalies{inconsistent: []Inconsistent{{
				Topic: topic, Partition: 0, Offset: 1, Values: []string{"v1", "x"}, Readers: []string{"c1", "c2"},
			}}},
			check: func(t *testing.T, rep *Report) {
				if rep.UnknownPresent != 1 || rep.UnknownAbsent != 0 {
					t.Errorf("unknown present/absent = %d/%d, want 1/0", rep.UnknownPresent, rep.UnknownAbsent)
				}
			},
		},
		{
			name: "offsets missing below the high watermark are gaps",
			build: func(r *Recorder) {
				produce(r, "p1", "v0", 0, 0)
				produce(r, "p1", "v1", 0, 1)
				produce(r, "p1", "v3", 0, 3)
				r.Read("c1", topic, 0, recs(0, "v0", "v1"))
				r.Read("c1", topic, 0, recs(3, "v3"))
				// The maximum high watermark counts.
				r.HighWatermark(topic, 0, 6)
				r.HighWatermark(topic, 0, 4)
				// Partition 1 starts at 10 (say, after retention): below
				// the lowest observed offset is not a gap.
				produce(r, "p1", "w10", 1, 10)
				produce(r, "p1", "w11", 1, 11)
				r.Read("c1", topic, 1, recs(10, "w10", "w11"))
				r.HighWatermark(topic, 1, 12)
				// Partition 2 has records but nothing was read.
				r.Send("p1", topic, "u")
				r.Unknown("p1", topic, "u", nil)
				r.HighWatermark(topic, 2, 2)
				// Partition 3 has no high watermark: not checked.
				produce(r, "p1", "z5", 3, 5)
				r.Read("c1", topic, 3, recs(5, "z5"))
			},
			want: anomalies{gaps: []Gap{
				{Topic: topic, Partition: 0, From: 2, To: 3, HWM: 6},
				{Topic: topic, Partition: 0, From: 4, To: 6, HWM: 6},
				{Topic: topic, Partition: 2, From: 0, To: 2, HWM: 2},
			}},
			check: func(t *testing.T, rep *Report) {
				if rep.UnknownAbsent != 1 {
					t.Errorf("UnknownAbsent = %d, want 1", rep.UnknownAbsent)
				}
			},
		},
		{
			name: "a large gap is one range",
			build: func(r *Recorder) {
				base(r)
				r.HighWatermark(topic, 0, 1_000_000_003)
			},
			want: anomalies{gaps: []Gap{{Topic: topic, Partition: 0, From: 3, To: 1_000_000_003, HWM: 1_000_000_003}}},
		},
		{
			name: "a value never sent is unexpected",
			build: func(r *Recorder) {
				base(r)
				r.Read("c2", topic, 0, recs(3, "ghost"))
				r.HighWatermark(topic, 0, 4)
			},
			want: anomalies{unexpected: []Unexpected{{Topic: topic, Value: "ghost", Reader: "c2", Positions: []Position{pos(0, 3)}}}},
		},
		{
			name: "a failed value that is read",
			build: func(r *Recorder) {
				base(r)
				r.Send("p2", topic, "f")
				r.Fail("p2", topic, "f", errors.New("record too large"))
				r.Read("c1", topic, 0, recs(3, "f"))
				r.HighWatermark(topic, 0, 4)
			},
			want: anomalies{failed: []FailedButPresent{{
				Topic: topic, Value: "f", Process: "p2", Error: "record too large", Positions: []Position{pos(0, 3)},
			}}},
		},
		{
			name: "a failed value that is not read is fine",
			build: func(r *Recorder) {
				base(r)
				r.Send("p2", topic, "f")
				r.Fail("p2", topic, "f", errors.New("record too large"))
				r.HighWatermark(topic, 0, 3)
			},
			check: func(t *testing.T, rep *Report) {
				if rep.Fails != 1 {
					t.Errorf("Fails = %d, want 1", rep.Fails)
				}
			},
		},
		{
			name: "an unknown value that is read is fine",
			build: func(r *Recorder) {
				base(r)
				r.Send("p2", topic, "u")
				r.Unknown("p2", topic, "u", errors.New("connection reset"))
				r.Read("c1", topic, 0, recs(3, "u"))
				r.HighWatermark(topic, 0, 4)
			},
			check: func(t *testing.T, rep *Report) {
				if rep.Unknowns != 1 || rep.UnknownPresent != 1 || rep.UnknownAbsent != 0 {
					t.Errorf("unknowns %d, present %d, absent %d; want 1, 1, 0", rep.Unknowns, rep.UnknownPresent, rep.UnknownAbsent)
				}
			},
		},
		{
			name: "an unknown value that is not read is fine",
			build: func(r *Recorder) {
				base(r)
				r.Send("p2", topic, "u")
				r.Unknown("p2", topic, "u", errors.New("connection reset"))
				r.Send("p2", topic, "crashed") // no outcome at all
				r.HighWatermark(topic, 0, 3)
			},
			check: func(t *testing.T, rep *Report) {
				if rep.Unknowns != 1 || rep.UnknownPresent != 0 || rep.UnknownAbsent != 1 {
					t.Errorf("unknowns %d, present %d, absent %d; want 1, 0, 1", rep.Unknowns, rep.UnknownPresent, rep.UnknownAbsent)
				}
			},
		},
		{
			name: "acked at 5 but read at 6 is an ack mismatch",
			build: func(r *Recorder) {
				for i := range 5 {
					produce(r, "p1", fmt.Sprint("v", i), 0, int64(i))
				}
				r.Send("p2", topic, "u")
				r.Unknown("p2", topic, "u", nil)
				produce(r, "p1", "a", 0, 5)
				r.Read("c1", topic, 0, recs(0, "v0", "v1", "v2", "v3", "v4", "u", "a"))
				r.HighWatermark(topic, 0, 7)
			},
			want: anomalies{ackMismatch: []AckMismatch{{
				Topic: topic, Value: "a", Process: "p1", Acked: pos(0, 5), Observed: []Position{pos(0, 6)},
			}}},
		},
		{
			name: "acked in one partition, read in another",
			build: func(r *Recorder) {
				base(r)
				produce(r, "p1", "a", 1, 0)
				r.Read("c1", topic, 2, recs(0, "a"))
			},
			want: anomalies{ackMismatch: []AckMismatch{{
				Topic: topic, Value: "a", Process: "p1", Acked: pos(1, 0), Observed: []Position{pos(2, 0)},
			}}},
		},
		{
			name: "topics are checked separately",
			build: func(r *Recorder) {
				base(r)
				// "v0" was sent to topic t only: reading it from topic
				// other is a phantom, and its ack in t is not matched by
				// the read in other.
				r.Read("c1", "other", 0, recs(0, "v0"))
				r.Send("p1", "other", "o1")
				r.Ack("p1", "other", 0, 1, "o1")
			},
			want: anomalies{
				lost:       []Lost{{Topic: "other", Value: "o1", Process: "p1", Acked: pos(0, 1)}},
				unexpected: []Unexpected{{Topic: "other", Value: "v0", Reader: "c1", Positions: []Position{pos(0, 0)}}},
			},
		},
		{
			name: "several anomalies at once",
			build: func(r *Recorder) {
				base(r)
				produce(r, "p1", "lost", 0, 3)
				r.Send("p1", topic, "f")
				r.Fail("p1", topic, "f", errors.New("denied"))
				r.Read("c2", topic, 0, []Rec{{Offset: 2, Value: "f"}, {Offset: 4, Value: "v0"}})
				r.HighWatermark(topic, 0, 5)
			},
			want: anomalies{
				lost:         []Lost{{Topic: topic, Value: "lost", Process: "p1", Acked: pos(0, 3)}},
				duplicates:   []Duplicate{{Topic: topic, Value: "v0", Positions: []Position{pos(0, 0), pos(0, 4)}}},
				inconsistent: []Inconsistent{{Topic: topic, Partition: 0, Offset: 2, Values: []string{"v2", "f"}, Readers: []string{"c1", "c2"}}},
				gaps:         []Gap{{Topic: topic, Partition: 0, From: 3, To: 4, HWM: 5}},
				failed:       []FailedButPresent{{Topic: topic, Value: "f", Process: "p1", Error: "denied", Positions: []Position{pos(0, 2)}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Check(record(t, tt.build))
			w := tt.want
			same(t, "Lost", rep.Lost, w.lost)
			same(t, "Duplicates", rep.Duplicates, w.duplicates)
			same(t, "Inconsistent", rep.Inconsistent, w.inconsistent)
			same(t, "AckMismatches", rep.AckMismatches, w.ackMismatch)
			same(t, "Gaps", rep.Gaps, w.gaps)
			same(t, "Unexpected", rep.Unexpected, w.unexpected)
			same(t, "FailedButPresent", rep.FailedButPresent, w.failed)
			wantOK := reflect.DeepEqual(w, anomalies{})
			if rep.OK() != wantOK {
				t.Errorf("OK() = %v, want %v", rep.OK(), wantOK)
			}
			if tt.check != nil {
				tt.check(t, rep)
			}
			if t.Failed() {
				t.Logf("report:\n%v", rep)
			}
		})
	}
}

func same[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestOKFalseForEachKind(t *testing.T) {
	// OK must look at every list, whatever Check puts in them.
	reports := map[string]*Report{
		"lost":               {Lost: make([]Lost, 1)},
		"duplicate":          {Duplicates: make([]Duplicate, 1)},
		"inconsistent":       {Inconsistent: make([]Inconsistent, 1)},
		"ack mismatch":       {AckMismatches: make([]AckMismatch, 1)},
		"gap":                {Gaps: make([]Gap, 1)},
		"unexpected":         {Unexpected: make([]Unexpected, 1)},
		"failed but present": {FailedButPresent: make([]FailedButPresent, 1)},
	}
	for name, rep := range reports {
		if rep.OK() {
			t.Errorf("%s: OK() = true", name)
		}
	}
	if !(&Report{Sends: 1, UnknownPresent: 1}).OK() {
		t.Error("empty report: OK() = false")
	}
}

func TestCheckDoesNotModifyEvents(t *testing.T) {
	events := record(t, func(r *Recorder) {
		r.Send("p1", topic, "b")
		r.Ack("p1", topic, 0, 7, "b")
		r.Read("c1", topic, 0, []Rec{{Offset: 9, Value: "b"}, {Offset: 3, Value: "a"}})
		r.Read("c2", topic, 0, []Rec{{Offset: 9, Value: "c"}})
		r.HighWatermark(topic, 0, 12)
	})
	before, err := encodeString(events)
	if err != nil {
		t.Fatal(err)
	}
	rep := Check(events)
	if rep.OK() {
		t.Fatal("expected anomalies")
	}
	after, err := encodeString(events)
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Errorf("Check modified its input:\nbefore %s\nafter  %s", before, after)
	}
}

func encodeString(events []Event) (string, error) {
	var b strings.Builder
	err := Encode(&b, events)
	return b.String(), err
}

func TestReportString(t *testing.T) {
	events := record(t, func(r *Recorder) {
		for i := range 25 {
			produce(r, "p1", fmt.Sprintf("v%02d", i), 0, int64(i))
		}
		r.Send("p1", topic, "u")
		r.Unknown("p1", topic, "u", nil)
		r.Read("c1", topic, 0, recs(0, "ghost"))
		r.HighWatermark(topic, 0, 26)
	})
	s := Check(events).String()
	for _, want := range []string{
		"ANOMALIES", "lost=25", "unexpected=1", "gap=1", "acks=25", "unknowns=1",
		"lost (25):", `t "v00" acked at p0@0 (by p1)`, `t "v09"`, "... and 15 more",
		`t "ghost" read at [p0@0]`, "[1,26)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"v10"`) {
		t.Errorf("String() shows more than %d examples:\n%s", maxExamples, s)
	}

	ok := Check(record(t, base)).String()
	if !strings.HasPrefix(ok, "history: OK") || strings.Contains(ok, "ANOMALIES") {
		t.Errorf("clean String() = %q", ok)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	prodPath := filepath.Join(dir, "producer.jsonl")
	consPath := filepath.Join(dir, "consumer.jsonl")
	prod, err := CreateFile(prodPath)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := CreateFile(consPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		v := fmt.Sprint("v", i)
		prod.Send("p1", topic, v)
		prod.Ack("p1", topic, 0, int64(i), v)
		cons.Read("c1", topic, 0, recs(int64(i), v))
	}
	cons.HighWatermark(topic, 0, 100)
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cons.Close(); err != nil {
		t.Fatal(err)
	}

	events, err := ReadFiles(prodPath, consPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 301 {
		t.Fatalf("ReadFiles: %d events, want 301", len(events))
	}
	for i := 1; i < len(events); i++ {
		if events[i].Time < events[i-1].Time {
			t.Fatalf("event %d at %d is before event %d at %d", i, events[i].Time, i-1, events[i-1].Time)
		}
	}
	rep, err := CheckFiles(prodPath, consPath)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Sends != 100 || rep.Observed != 100 {
		t.Errorf("CheckFiles:\n%v", rep)
	}
	// Without the consumer's history every ack is lost.
	rep, err = CheckFiles(prodPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Lost) != 100 {
		t.Errorf("producer only: %d lost, want 100", len(rep.Lost))
	}

	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"type":"send","value":"a"}`+"\n"+`{"type":"ack"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = CheckFiles(prodPath, bad)
	var de *DecodeError
	if !errors.As(err, &de) || de.File != bad || de.Line != 2 || !strings.Contains(err.Error(), "bad.jsonl:2:") {
		t.Errorf("CheckFiles with a bad file: %v", err)
	}
	if _, err := CheckFiles(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("CheckFiles of a missing file: no error")
	}
}

func TestMergeByTimeKeepsFileOrder(t *testing.T) {
	a := []Event{{Type: TypeSend, Value: "a1", Time: 5}, {Type: TypeSend, Value: "a2", Time: 1}, {Type: TypeSend, Value: "a3", Time: 9}}
	b := []Event{{Type: TypeSend, Value: "b1", Time: 3}, {Type: TypeSend, Value: "b2", Time: 5}}
	var got []string
	for _, e := range mergeByTime(a, b) {
		got = append(got, e.Value)
	}
	want := []string{"b1", "a1", "a2", "b2", "a3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merge = %v, want %v", got, want)
	}
}

func BenchmarkCheck(b *testing.B) {
	// About a million events: 250k values sent, acked, and read back in
	// batches of 100 by two consumers.
	const n = 250_000
	events := make([]Event, 0, 2*n+2*n/100+1)
	for i := range n {
		v := fmt.Sprintf("p1-%06d", i)
		events = append(events,
			Event{Type: TypeSend, Process: "p1", Topic: topic, Value: v},
			Event{Type: TypeAck, Process: "p1", Topic: topic, Partition: int32(i % 4), Offset: int64(i / 4), Value: v})
	}
	for _, c := range []string{"c1", "c2"} {
		for p := range int32(4) {
			for first := 0; first < n/4; first += 100 {
				rs := make([]Rec, 0, 100)
				for off := first; off < first+100 && off < n/4; off++ {
					rs = append(rs, Rec{Offset: int64(off), Value: fmt.Sprintf("p1-%06d", off*4+int(p))})
				}
				events = append(events, Event{Type: TypeRead, Process: c, Topic: topic, Partition: p, Records: rs})
			}
		}
	}
	for p := range int32(4) {
		events = append(events, Event{Type: TypeHWM, Topic: topic, Partition: p, HWM: n / 4})
	}
	b.ResetTimer()
	for b.Loop() {
		if rep := Check(events); !rep.OK() {
			b.Fatal(rep)
		}
	}
}
