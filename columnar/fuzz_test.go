package columnar

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/segment"
)

// allTypes is a spec with one field of every type; FuzzTypedAppend uses it
// when the fuzzed spec does not parse.
const allTypes = `{"fields": [{"name": "b", "type": "bool"}, {"name": "i", "type": "int32"}, {"name": "l", "type": "int64"}, {"name": "f", "type": "float64"}, {"name": "s", "type": "string"}, {"name": "t", "type": "timestamp_ms"}, {"name": "x", "type": "binary"}, {"name": "j", "type": "json"}]}`

// FuzzParseSpec: ParseSpec never panics; what it accepts is valid, makes
// a layout, and its stored form parses back to the same spec; what it
// refuses wraps ErrInvalidSpec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		allTypes,
		`{"fields": [{"name": "user", "type": "string"}]}`,
		`{"fields": []}`, `{}`, `null`, `[]`, ``,
		`{"fields": [{"name": "a", "type": "int64"}, {"name": "a", "type": "int64"}]}`,
		`{"Fields": [{"Name": "a", "Type": "int64"}]}`,
		`{"fields": [{"name": "offset", "type": "int64"}]}`,
		`{"fields": [{"name": "\ud800", "type": "int64"}]}`,
		`{"fields": null, "x": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) || s != nil {
				t.Fatalf("refused with %v (spec %v): not ErrInvalidSpec", err, s)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid spec: %v", err)
		}
		l, err := NewLayout(s)
		if err != nil {
			t.Fatalf("accepted spec makes no layout: %v", err)
		}
		if n := len(l.Schema().Fields()); n != 5+len(s.Fields)+2 {
			t.Fatalf("layout has %d columns for %d fields", n, len(s.Fields))
		}
		again, err := ParseSpec(s.Marshal())
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("stored form %s parses to %v, %v", s.Marshal(), again, err)
		}
	})
}

// FuzzInfer: Infer never panics, and every JSON object of the sample fits
// the spec it infers; values that do not fit are exactly the ones it
// skips. The fuzzed input is split at 0xff bytes (never in UTF-8) into
// the sample's values.
func FuzzInfer(f *testing.F) {
	for _, s := range []string{
		`{"a": 1}` + "\xff" + `{"a": 1.5, "b": "x"}`,
		`{"a": 1}` + "\xff" + `{"a": "1"}` + "\xff" + `[1]`,
		`{"n": 9223372036854775808}` + "\xff" + `{"n": 1e400}`,
		`{"o": {"p": [1, {"q": null}]}, "e": true}`,
		`{"a": 1, "a": 2}` + "\xff" + `{"b": null}`,
		`{"offset": 1}`, `{}`, `1`, ``,
		`{"s": "\ud800"}` + "\xff" + `{"s": "\ud83d\ude00"}`,
		`{"t": "2024-01-01T00:00:00Z", "x": "AP8="}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		values := bytes.Split(data, []byte{0xff})
		spec, err := Infer(values)
		if err != nil {
			if !errors.Is(err, ErrCannotInfer) {
				t.Fatalf("Infer failed with %v, not ErrCannotInfer", err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("inferred an invalid spec: %v", err)
		}
		l, err := NewLayout(spec)
		if err != nil {
			t.Fatal(err)
		}
		b := l.NewBuilder(nil, 0)
		defer b.Release()
		for i, v := range values {
			b.Append(&segment.Record{Offset: int64(i), Value: v})
		}
		rec := b.NewRecord()
		defer rec.Release()
		inv := rec.Column(int(rec.NumCols()) - 2).(*array.String)
		for i, v := range values {
			obj := isObject(v)
			if obj && !inv.IsNull(i) {
				t.Fatalf("sample object %d (%q) does not fit the inferred spec %s: %s", i, v, spec.Marshal(), inv.Value(i))
			}
			if !obj && inv.IsNull(i) {
				t.Fatalf("value %d (%q) is not an object and fits %s", i, v, spec.Marshal())
			}
			if obj {
				// Cross-check readObject against encoding/json.
				var m map[string]json.RawMessage
				if err := json.Unmarshal(v, &m); err != nil || m == nil {
					t.Fatalf("value %d (%q) taken as an object, encoding/json says %v", i, v, err)
				}
			}
		}
	})
}

// isObject reports whether v is one JSON object of valid Unicode with
// distinct member names: what Infer samples.
func isObject(v []byte) bool {
	if v == nil {
		return false
	}
	seen := map[string]bool{}
	return readObject(v, func(name string, _ json.RawMessage) error {
		if seen[name] {
			return errors.New("twice")
		}
		seen[name] = true
		return nil
	}) == nil
}

// FuzzTypedAppend: converting a value to the typed columns never panics
// and makes exactly one row; a row that fits has _invalid and _raw null
// and field values that are the JSON values of the input's members
// (compared as values, not as text); a row that does not fit has every
// field null, the reason in _invalid, the input in _raw, and is counted.
func FuzzTypedAppend(f *testing.F) {
	for _, v := range []string{
		`{"b": true, "i": -2147483648, "l": 9223372036854775807, "f": 1.5e300, "s": "\u00e9\ud83d\ude00", "t": 1700000000000, "x": "AP8=", "j": {"k": [1, "2", null]}}`,
		`{"t": "2024-02-29T23:59:59.999999+05:30", "f": -0, "i": 0}`,
		`{"i": 2147483648}`, `{"l": 1.0}`, `{"f": 1e400}`, `{"s": 1}`, `{"x": "QQ==\n"}`,
		`{"b": null, "j": null}`, `{"j": "\ud800"}`, `{"zzz": 1}`, `{"b": true, "b": true}`,
		`[]`, `null`, ``, "{\"s\": \"\xff\"}", `{"s": "a"} {}`, `{"s": "a",}`,
	} {
		f.Add([]byte(allTypes), []byte(v))
	}
	f.Add([]byte(`{"fields": [{"name": "value", "type": "json"}]}`), []byte(`{"value": 1}`))
	f.Add([]byte(`{"fields": [{"name": "", "type": "json"}]}`), []byte(`{"": 1}`))
	f.Fuzz(func(t *testing.T, specData, value []byte) {
		spec, err := ParseSpec(specData)
		if err != nil {
			spec, _ = ParseSpec([]byte(allTypes))
		}
		l, err := NewLayout(spec)
		if err != nil {
			t.Fatal(err)
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		b := l.NewBuilder(mem, 1)
		defer b.Release()
		if len(value) > 0 && value[0] == 'N' {
			value = nil // a tombstone
		}
		b.Append(&segment.Record{Offset: 5, Value: value})
		if b.Len() != 1 {
			t.Fatalf("%d rows for one Append", b.Len())
		}
		rec := b.NewRecord()
		defer rec.Release()
		if rec.NumRows() != 1 {
			t.Fatalf("%d rows for one Append", rec.NumRows())
		}
		// AppendRecords makes the same row.
		b2 := l.NewBuilder(mem, 1)
		defer b2.Release()
		if n := b2.AppendRecords([]segment.Record{{Offset: 5, Value: value}}, 1); n != 1 {
			t.Fatalf("AppendRecords added %d rows of one", n)
		}
		rec2 := b2.NewRecord()
		defer rec2.Release()
		if !array.RecordEqual(rec, rec2) {
			t.Fatalf("AppendRecords made\n%v\nAppend made\n%v", rec2, rec)
		}
		first := 5 // partition, offset, timestamp, key, headers
		n := len(spec.Fields)
		inv := rec.Column(first + n).(*array.String)
		raw := rec.Column(first + n + 1).(*array.Binary)
		rep := b.Report()
		if !inv.IsNull(0) {
			if inv.Value(0) == "" || raw.IsNull(0) != (value == nil) || !bytes.Equal(raw.Value(0), value) {
				t.Fatalf("misfit row: _invalid %q, _raw %q, input %q", inv.Value(0), raw.Value(0), value)
			}
			for i := range spec.Fields {
				if !rec.Column(first + i).IsNull(0) {
					t.Fatalf("misfit row has field %q set", spec.Fields[i].Name)
				}
			}
			if rep.Count != 1 || len(rep.FirstOffsets) != 1 || rep.FirstOffsets[0] != 5 {
				t.Fatalf("misfit reported as %+v", rep)
			}
			return
		}
		if !raw.IsNull(0) || rep.Count != 0 {
			t.Fatalf("fitting row has _raw %q, report %+v", raw.Value(0), rep)
		}
		// The input, read by encoding/json: an object whose members are
		// all declared.
		var members map[string]json.RawMessage
		if err := json.Unmarshal(value, &members); err != nil || members == nil {
			t.Fatalf("%q fits, encoding/json reads it as %v, %v", value, members, err)
		}
		declared := map[string]bool{}
		for _, f := range spec.Fields {
			declared[f.Name] = true
		}
		for name := range members {
			if !declared[name] {
				t.Fatalf("%q fits with undeclared member %q", value, name)
			}
		}
		for i, f := range spec.Fields {
			col := rec.Column(first + i)
			m, ok := members[f.Name]
			if !ok || string(m) == "null" {
				if !col.IsNull(0) {
					t.Fatalf("field %q absent or null in %q, column has %s", f.Name, value, col.ValueStr(0))
				}
				continue
			}
			if col.IsNull(0) {
				t.Fatalf("field %q is %s in %q, column is null", f.Name, m, value)
			}
			if err := sameValue(f.Type, m, col); err != nil {
				t.Fatalf("field %q of %q: %v", f.Name, value, err)
			}
		}
	})
}

// sameValue checks that row 0 of col holds the JSON value m, by the
// field type's rules, read independently of convert.
func sameValue(typ string, m json.RawMessage, col arrow.Array) error {
	mismatch := func(got any) error {
		return errors.New("column holds " + strconv.Quote(col.ValueStr(0)) + ", input " + string(m) + " reads as " + strconv.Quote(toString(got)))
	}
	switch typ {
	case TypeBool:
		var v bool
		if json.Unmarshal(m, &v) != nil || col.(*array.Boolean).Value(0) != v {
			return mismatch(v)
		}
	case TypeInt32:
		v, err := strconv.ParseInt(string(m), 10, 32)
		if err != nil || int64(col.(*array.Int32).Value(0)) != v {
			return mismatch(v)
		}
	case TypeInt64:
		v, err := strconv.ParseInt(string(m), 10, 64)
		if err != nil || col.(*array.Int64).Value(0) != v {
			return mismatch(v)
		}
	case TypeFloat64:
		var v float64
		if json.Unmarshal(m, &v) != nil || col.(*array.Float64).Value(0) != v {
			return mismatch(v)
		}
	case TypeString:
		var v string
		if json.Unmarshal(m, &v) != nil || col.(*array.String).Value(0) != v {
			return mismatch(v)
		}
	case TypeBinary:
		var v string
		if json.Unmarshal(m, &v) != nil || base64.StdEncoding.EncodeToString(col.(*array.Binary).Value(0)) != v {
			return mismatch(v)
		}
	case TypeTimestampMs:
		var ms int64
		var s string
		if json.Unmarshal(m, &s) == nil {
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return mismatch(s)
			}
			ms = ts.UnixMilli()
		} else if v, err := strconv.ParseInt(string(m), 10, 64); err == nil {
			ms = v
		} else {
			return mismatch(string(m))
		}
		if int64(col.(*array.Timestamp).Value(0)) != ms {
			return mismatch(ms)
		}
	case TypeJSON:
		var want, got any
		d := json.NewDecoder(bytes.NewReader(m))
		d.UseNumber()
		if err := d.Decode(&want); err != nil {
			return err
		}
		text := col.(*array.String).Value(0)
		d = json.NewDecoder(bytes.NewReader([]byte(text)))
		d.UseNumber()
		if err := d.Decode(&got); err != nil || !reflect.DeepEqual(want, got) || !json.Valid([]byte(text)) {
			return mismatch(want)
		}
		var compact bytes.Buffer
		if json.Compact(&compact, m) != nil || compact.String() != text {
			return errors.New("json column " + strconv.Quote(text) + " is not the compact text of " + string(m))
		}
	default:
		return errors.New("unknown type " + typ)
	}
	return nil
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
