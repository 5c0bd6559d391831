package columnar

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/stratalog/strata/segment"
)

// Infer types each member by every value it takes, keeps first-seen
// order, and skips values that are not JSON objects.
func TestInferTypes(t *testing.T) {
	values := []string{
		`{"id": 1, "price": 2, "name": "a", "ok": true, "tags": ["x"], "when": null}`,
		`not json`,
		`[1, 2]`,
		`{"id": -9223372036854775808, "price": 2.5, "name": "b", "ok": false, "tags": null, "extra": {"a": 1}}`,
		`{"id": 9223372036854775807, "mixed": 1}`,
		`{"mixed": "one", "big": 100000000000000000000, "huge": 1e400, "exp": 1e3}`,
		`{"a": 1, "a": 2, "dup_only": true}`, // a member twice: never fits, skipped
		"{\"bad\": \"\xff\"}",                // not UTF-8: skipped
		`{"lone": "\ud800"}`,                 // not Unicode: skipped
	}
	spec, err := Infer(bytesOf(values))
	if err != nil {
		t.Fatal(err)
	}
	want := "id:int64 price:float64 name:string ok:bool tags:json when:json extra:json mixed:json big:float64 huge:json exp:float64"
	if got := specString(spec); got != want {
		t.Fatalf("inferred\n %s\nwant\n %s", got, want)
	}
	if n := misfits(t, spec, values); n != 5 {
		t.Fatalf("%d values did not fit, want the 5 that are not objects", n)
	}
}

// Infer refuses, saying to declare a schema, what it cannot make one of.
func TestInferRefuses(t *testing.T) {
	many := make([]string, 0, MaxFields+1)
	for i := range MaxFields + 1 {
		many = append(many, fmt.Sprintf(`"f%d": 1`, i))
	}
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"no values", nil, "no values"},
		{"no objects", []string{`1`, `"x"`, `[{}]`}, "none of the 3 sampled values is a JSON object"},
		{"tombstone", []string{"\x00nil"}, "none of the 1"},
		{"no members", []string{`{}`, `{ }`}, "no members"},
		{"reserved", []string{`{"user": 1}`, `{"offset": 2}`}, `member "offset"`},
		{"reserved _raw", []string{`{"_raw": 2}`}, `member "_raw"`},
		{"empty name", []string{`{"": 2}`}, "an empty name"},
		{"long name", []string{`{"` + strings.Repeat("n", MaxFieldName+1) + `": 2}`}, "over 256 bytes"},
		{"too many", []string{"{" + strings.Join(many, ",") + "}"}, "more than 1024 distinct members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Infer(bytesOf(tc.values))
			if !errors.Is(err, ErrCannotInfer) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrCannotInfer saying %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "value schema") {
				t.Fatalf("err %v does not say what to do", err)
			}
		})
	}
	// A name reserved in a value that is skipped anyway is no obstacle.
	if _, err := Infer(bytesOf([]string{`{"offset": 1, "offset": 2}`, `{"n": 1}`})); err != nil {
		t.Fatal(err)
	}
}

// The property FuzzInfer checks, on fixed samples: every object of the
// sample fits the spec inferred from it.
func TestInferredSpecFitsItsSample(t *testing.T) {
	values := []string{
		`{"a": 1, "b": {"c": [1, 2, {"d": null}]}, "t": "2024-01-01T00:00:00Z"}`,
		`{"b": "text", "a": 3, "z": 1.5e-300}`,
		`{"a": null, "q": "\u00e9\ud83d\ude00", "r": ""}`,
		`{"z": -0, "r": "x", "a": 0}`,
	}
	spec, err := Infer(bytesOf(values))
	if err != nil {
		t.Fatal(err)
	}
	if n := misfits(t, spec, values); n != 0 {
		t.Fatalf("%d sample objects do not fit %s", n, specString(spec))
	}
}

// bytesOf turns test values into record values; "\x00nil" stands for a
// tombstone.
func bytesOf(values []string) [][]byte {
	out := make([][]byte, len(values))
	for i, v := range values {
		if v != "\x00nil" {
			out[i] = []byte(v)
		}
	}
	return out
}

func specString(s *Spec) string {
	var parts []string
	for _, f := range s.Fields {
		parts = append(parts, f.Name+":"+f.Type)
	}
	return strings.Join(parts, " ")
}

// misfits appends values under spec and returns how many did not fit,
// checking that each is one row.
func misfits(t testing.TB, spec *Spec, values []string) int64 {
	t.Helper()
	l, err := NewLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := l.NewBuilder(nil, 0)
	defer b.Release()
	for i, v := range bytesOf(values) {
		b.Append(&segment.Record{Offset: int64(i), Value: v})
	}
	rec := b.NewRecord()
	defer rec.Release()
	if int(rec.NumRows()) != len(values) {
		t.Fatalf("%d rows for %d values", rec.NumRows(), len(values))
	}
	inv := rec.Column(int(rec.NumCols()) - 2).(*array.String)
	for i := range values {
		if !inv.IsNull(i) {
			t.Logf("value %d does not fit: %s", i, inv.Value(i))
		}
	}
	return b.Report().Count
}
