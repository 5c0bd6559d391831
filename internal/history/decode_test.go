package history

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	in := `{"type":"send","process":"p1","time":1,"topic":"t","value":"a"}

{"type":"ack","process":"p1","time":2,"topic":"t","partition":3,"offset":7,"value":"a"}
{"type":"fail","topic":"t","value":"b","error":"too large"}
{"type":"unknown","topic":"t","value":"c"}
{"type":"read","process":"c1","topic":"t","partition":3,"records":[{"offset":7,"value":"a"},{"offset":8,"value":"c"}]}
{"type":"read","process":"c1","topic":"t","partition":3,"records":[]}
  {"type":"read","process":"c1","topic":"t","partition":3}  ` + "\r" + `
{"type":"hwm","topic":"t","partition":3,"hwm":9}`
	got, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Type: TypeSend, Process: "p1", Time: 1, Topic: "t", Value: "a"},
		{Type: TypeAck, Process: "p1", Time: 2, Topic: "t", Partition: 3, Offset: 7, Value: "a"},
		{Type: TypeFail, Topic: "t", Value: "b", Error: "too large"},
		{Type: TypeUnknown, Topic: "t", Value: "c"},
		{Type: TypeRead, Process: "c1", Topic: "t", Partition: 3, Records: []Rec{{7, "a"}, {8, "c"}}},
		{Type: TypeRead, Process: "c1", Topic: "t", Partition: 3},
		{Type: TypeRead, Process: "c1", Topic: "t", Partition: 3},
		{Type: TypeHWM, Topic: "t", Partition: 3, HWM: 9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	const good = `{"type":"send","topic":"t","value":"a"}` + "\n"
	tests := []struct {
		name string
		line string
		want string // in the error
	}{
		{"bad JSON", `{"type":"send",`, "bad JSON"},
		{"not an object", `["send"]`, "bad JSON"},
		{"two objects", `{"type":"send","value":"a"}{"type":"send","value":"b"}`, "data after the object"},
		{"trailing brace", `{"type":"send","value":"a"}}`, "data after the object"},
		{"unknown field", `{"type":"send","value":"a","ofset":3}`, `unknown field "ofset"`},
		{"missing type", `{"value":"a"}`, "missing type"},
		{"null", `null`, "missing type"},
		{"unknown type", `{"type":"produce","value":"a"}`, `unknown type "produce"`},
		{"send without value", `{"type":"send","topic":"t"}`, "send event with no value"},
		{"ack without value", `{"type":"ack","topic":"t","offset":3}`, "ack event with no value"},
		{"fail without value", `{"type":"fail","topic":"t"}`, "fail event with no value"},
		{"unknown without value", `{"type":"unknown","topic":"t"}`, "unknown event with no value"},
		{"negative offset", `{"type":"ack","value":"a","offset":-1}`, "negative offset -1"},
		{"negative record offset", `{"type":"read","records":[{"offset":0,"value":"a"},{"offset":-5,"value":"b"}]}`, "record 1: negative offset -5"},
		{"negative partition", `{"type":"read","partition":-1}`, "negative partition -1"},
		{"negative hwm", `{"type":"hwm","hwm":-2}`, "negative hwm -2"},
		{"offset not a number", `{"type":"ack","value":"a","offset":"3"}`, "bad JSON"},
		{"offset overflows", `{"type":"ack","value":"a","offset":9223372036854775808}`, "bad JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The bad line is line 3, after a good line and a blank one.
			in := good + "\n" + tt.line + "\n" + good
			events, err := Decode(strings.NewReader(in))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode(%q): err = %v, want a *DecodeError", tt.line, err)
			}
			if de.Line != 3 || de.File != "" {
				t.Errorf("error at %q:%d, want line 3", de.File, de.Line)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "history: line 3: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want line 3 and %q", msg, tt.want)
			}
			if len(events) != 1 {
				t.Errorf("%d events before the error, want 1", len(events))
			}
		})
	}
}

func TestDecodeLongLines(t *testing.T) {
	big := strings.Repeat("x", 17<<20)
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	r.Send("p1", "t", "small")
	r.Read("c1", "t", 0, []Rec{{Offset: 0, Value: big}})
	r.Send("p1", "t", "small")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	events, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[1].Records[0].Value != big || events[2].Value != "small" {
		t.Fatalf("decoded %d events, wrong", len(events))
	}

	// A line over MaxLineSize is an error, not an unbounded allocation.
	huge := io.MultiReader(
		strings.NewReader(`{"type":"send","value":"a"}`+"\n"+`{"type":"send","value":"`),
		&repeatReader{b: 'y', n: MaxLineSize + 1},
		strings.NewReader(`"}`+"\n"),
	)
	_, err = Decode(huge)
	var de *DecodeError
	if !errors.As(err, &de) || de.Line != 2 || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Decode of a too long line: %v", err)
	}
}

// repeatReader yields n copies of b.
type repeatReader struct {
	b     byte
	n     int
	block []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	if len(r.block) == 0 {
		r.block = bytes.Repeat([]byte{r.b}, 64<<10)
	}
	for done := 0; done < n; {
		done += copy(p[done:n], r.block)
	}
	r.n -= n
	return n, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("boom")
	in := io.MultiReader(strings.NewReader(`{"type":"send","value":"a"}`+"\n"), errReader{boom})
	events, err := Decode(in)
	if !errors.Is(err, boom) || len(events) != 1 {
		t.Errorf("Decode: %d events, err %v; want 1 and boom", len(events), err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	events := []Event{
		{Type: TypeSend, Process: "p<1>", Time: 42, Topic: "t&u", Value: "v\n\"é\u2028"},
		{Type: TypeAck, Topic: "t", Partition: 2, Offset: 1 << 62, Value: "v"},
		{Type: TypeRead, Topic: "t", Records: []Rec{{0, ""}, {1, "x"}}},
		{Type: TypeHWM, Topic: "t", Partition: 1, HWM: 3},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, events); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != len(events) {
		t.Fatalf("%d lines for %d events:\n%s", n, len(events), buf.String())
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, events)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","process":"p1","time":1,"topic":"t","value":"a"}`,
		`{"type":"ack","topic":"t","partition":3,"offset":7,"value":"a"}` + "\n" + `{"type":"fail","value":"b","error":"e"}`,
		`{"type":"read","topic":"t","partition":1,"records":[{"offset":7,"value":"a"},{"offset":8,"value":""}]}`,
		`{"type":"read","records":[]}` + "\r\n\n" + `{"type":"hwm","hwm":9}`,
		`{"type":"unknown","value":"\u00e9\ud800\\x"}`,
		`{"type":"send","value":"a"}{}`,
		`{"Type":"send","VALUE":"a","value":"b"}`,
		"{\"type\":\"send\",\"value\":\"\xff\"}",
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := Decode(bytes.NewReader(data))
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Line < 1 {
				t.Fatalf("Decode error %v is not a *DecodeError with a line", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := Encode(&buf, events); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		again, err := Decode(&buf)
		if err != nil {
			t.Fatalf("decoding the re-encoded history: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(events, again) {
			t.Fatalf("round trip changed the events:\n got %+v\nwant %+v", again, events)
		}
		Check(events) // must not panic on any valid history
	})
}
