package columnar

import (
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/stratalog/strata/segment"
)

// ParseSpec matches member names exactly and refuses what encoding/json
// alone would take quietly (other spellings, repeats, unknown members).
func TestParseSpecStrict(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"FIELDS": [{"name": "a", "type": "int64"}]}`, `unknown member "FIELDS"`},
		{`{"fields": [{"NAME": "a", "type": "int64"}]}`, `unknown member "NAME"`},
		{`{"fields": [{"name": "a", "type": "int64", "nullable": true}]}`, `unknown member "nullable"`},
		{`{"fields": [{"name": "a", "name": "b", "type": "int64"}]}`, `"name" appears twice`},
		{`{"fields": [], "fields": [{"name": "a", "type": "int64"}]}`, `"fields" appears twice`},
		{`{"fields": {"name": "a"}}`, `not an array`},
		{`{"fields": [1]}`, `not a JSON object`},
		{`{"fields": [{"name": 1, "type": "int64"}]}`, `cannot unmarshal`},
		{`{"fields": [{"name": "a", "type": "int64"}]} {}`, `data after`},
		{`{"fields": [{"name": "\udc00", "type": "int64"}]}`, `surrogate`},
		{`{"fields": []}`, `no fields`},
		{`{}`, `no fields`},
		{`{"fields": [{"name": "a", "type": "INT64"}]}`, `the types are`},
		{`{"fields": [{"name": "key", "type": "string"}]}`, `own columns`},
		{`{"fields": [{"name": "a", "type": "bool"}, {"name": "a", "type": "bool"}]}`, `declared twice`},
		{`[]`, `not a JSON object`},
	} {
		_, err := ParseSpec([]byte(tc.in))
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSpec(%s): %v, want ErrInvalidSpec saying %q", tc.in, err, tc.want)
		}
	}
	s, err := ParseSpec([]byte(` {"fields": [{"type": "json", "name": "value"}, {"name": "n", "type": "int32"}]} `))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Marshal()); got != `{"fields":[{"name":"value","type":"json"},{"name":"n","type":"int32"}]}` {
		t.Fatalf("stored form %s", got)
	}
}

// What encoding/json would silently re-spell does not fit: bytes that are
// not UTF-8 and lone surrogates (both decoded as U+FFFD), base64 with line
// breaks or stray bits (decoded as if canonical).
func TestMisfitsNotRespelt(t *testing.T) {
	spec, err := ParseSpec([]byte(`{"fields": [{"name": "s", "type": "string"}, {"name": "b", "type": "binary"}, {"name": "\ufffd", "type": "int64"}, {"name": "t", "type": "timestamp_ms"}, {"name": "j", "type": "json"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ value, want string }{
		{"{\"s\": \"\xff\"}", "not valid UTF-8"},
		{`{"s": "\ud800"}`, "surrogate"},
		{`{"s": "\udc00\ud800"}`, "surrogate"},
		{`{"s": "\ud800\u0041"}`, "surrogate"},
		{`{"\ud800": 1}`, "surrogate"},
		{`{"j": ["\ud800x"]}`, "surrogate"},
		{`{"b": "QQ==\n"}`, "standard padded base64"},
		{`{"b": "QR=="}`, "standard padded base64"},
		{`{"b": "QQ"}`, "not base64"},
		{`{"t": 1.5}`, "not milliseconds"},
		{`{"t": "yesterday"}`, "RFC 3339"},
		{`{"s": "a",}`, "not JSON"},
		{`{"s" "a"}`, "not JSON"},
		{`{"s": "a"} x`, "data after"},
		{``, "not JSON"},
	} {
		l, err := NewLayout(spec)
		if err != nil {
			t.Fatal(err)
		}
		b := l.NewBuilder(nil, 0)
		b.Append(&segment.Record{Value: []byte(tc.value)})
		rec := b.NewRecord()
		inv := rec.Column(10).(*array.String)
		raw := rec.Column(11).(*array.Binary)
		if inv.IsNull(0) || !strings.Contains(inv.Value(0), tc.want) || string(raw.Value(0)) != tc.value {
			t.Errorf("%q: _invalid %q, _raw %q; want a misfit saying %q", tc.value, inv.ValueStr(0), raw.Value(0), tc.want)
		}
		rec.Release()
		b.Release()
	}
	// What does fit: a surrogate pair, an escaped backslash before "u",
	// a time with an offset (truncated to the millisecond, in UTC).
	l, _ := NewLayout(spec)
	b := l.NewBuilder(nil, 0)
	defer b.Release()
	b.Append(&segment.Record{Value: []byte(`{"s": "\ud83d\ude00\\ud800", "b": "AP8=", "t": "2024-01-01T01:00:00.0019+01:00", "j": {"x": [1, 2.50]}}`)})
	rec := b.NewRecord()
	defer rec.Release()
	if inv := rec.Column(10).(*array.String); !inv.IsNull(0) {
		t.Fatalf("does not fit: %s", inv.Value(0))
	}
	if s := rec.Column(5).(*array.String).Value(0); s != "\U0001F600\\ud800" {
		t.Fatalf("s = %q", s)
	}
	if b := rec.Column(6).(*array.Binary).Value(0); string(b) != "\x00\xff" {
		t.Fatalf("b = %q", b)
	}
	if ts := rec.Column(8).(*array.Timestamp).Value(0); ts != 1704067200001 {
		t.Fatalf("t = %d", ts)
	}
	if j := rec.Column(9).(*array.String).Value(0); j != `{"x":[1,2.50]}` {
		t.Fatalf("j = %s", j)
	}
}

// A layout keeps its own copy of the spec.
func TestLayoutOwnsSpec(t *testing.T) {
	spec := &Spec{Fields: []Field{{Name: "a", Type: TypeInt64}}}
	l, err := NewLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Fields[0].Type = TypeString
	if l.Spec().Fields[0].Type != TypeInt64 {
		t.Fatal("the layout's spec changed with the caller's")
	}
}
