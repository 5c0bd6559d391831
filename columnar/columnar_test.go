package columnar

import (
	"bytes"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/segment"
)

// The default layout keeps every field of a record, nil key and value as
// null, headers in order with duplicates.
func TestDefaultLayoutRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	l, err := NewLayout(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := []segment.Record{
		{Offset: 7, Timestamp: 1700000000123, Key: []byte("k"), Value: []byte("v"), Headers: []segment.Header{{Key: "a", Value: []byte("1")}, {Key: "a", Value: nil}}},
		{Offset: 8, Timestamp: 1700000000124, Key: nil, Value: nil},
		{Offset: 9, Timestamp: 0, Key: []byte{}, Value: []byte{}},
	}
	b := l.NewBuilder(mem, 3)
	defer b.Release()
	for i := range recs {
		b.Append(&recs[i])
	}
	rec := b.NewRecord()
	defer rec.Release()
	if rec.NumRows() != 3 || b.Len() != 0 {
		t.Fatalf("rows %d, builder left %d", rec.NumRows(), b.Len())
	}
	if !rec.Schema().Equal(l.Schema()) {
		t.Fatalf("schema %v", rec.Schema())
	}
	part := rec.Column(0).(*array.Int32)
	off := rec.Column(1).(*array.Int64)
	ts := rec.Column(2).(*array.Timestamp)
	key := rec.Column(3).(*array.Binary)
	val := rec.Column(4).(*array.Binary)
	hdrs := rec.Column(5).(*array.List)
	hs := hdrs.ListValues().(*array.Struct)
	hk := hs.Field(0).(*array.String)
	hv := hs.Field(1).(*array.Binary)
	for i, r := range recs {
		if part.Value(i) != 3 || off.Value(i) != r.Offset || ts.Value(i) != arrow.Timestamp(r.Timestamp) {
			t.Fatalf("row %d: partition %d offset %d ts %d", i, part.Value(i), off.Value(i), ts.Value(i))
		}
		if key.IsNull(i) != (r.Key == nil) || (r.Key != nil && !bytes.Equal(key.Value(i), r.Key)) {
			t.Fatalf("row %d: key", i)
		}
		if val.IsNull(i) != (r.Value == nil) || (r.Value != nil && !bytes.Equal(val.Value(i), r.Value)) {
			t.Fatalf("row %d: value", i)
		}
		start, end := hdrs.ValueOffsets(i)
		if int(end-start) != len(r.Headers) {
			t.Fatalf("row %d: %d headers", i, end-start)
		}
		for j, h := range r.Headers {
			k := int(start) + j
			if hk.Value(k) != h.Key || hv.IsNull(k) != (h.Value == nil) || !bytes.Equal(hv.Value(k), h.Value) {
				t.Fatalf("row %d header %d", i, j)
			}
		}
	}
}

// A value-schema layout converts fitting values and keeps the others in
// _raw with the reason, counted.
func TestTypedLayoutKeepsMisfits(t *testing.T) {
	spec, err := ParseSpec([]byte(`{"fields":[{"name":"user","type":"string"},{"name":"n","type":"int64"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := l.NewBuilder(nil, 0)
	defer b.Release()
	vals := []string{`{"user":"ann","n":3}`, `{"user":"bob","n":1.5}`, `{"n":null}`, `[1]`, `{"user":"x","extra":1}`}
	for i, v := range vals {
		b.Append(&segment.Record{Offset: int64(i), Value: []byte(v)})
	}
	rec := b.NewRecord()
	defer rec.Release()
	user := rec.Column(5).(*array.String)
	n := rec.Column(6).(*array.Int64)
	inv := rec.Column(7).(*array.String)
	raw := rec.Column(8).(*array.Binary)
	if user.Value(0) != "ann" || n.Value(0) != 3 || !inv.IsNull(0) || !raw.IsNull(0) {
		t.Fatalf("row 0: %v %v", user, n)
	}
	if !user.IsNull(2) || !n.IsNull(2) || !inv.IsNull(2) {
		t.Fatal("row 2: missing and null fields are null, and the row fits")
	}
	for _, i := range []int{1, 3, 4} {
		if inv.IsNull(i) || string(raw.Value(i)) != vals[i] || !user.IsNull(i) || !n.IsNull(i) {
			t.Fatalf("row %d: invalid %q raw %q", i, inv.Value(i), raw.Value(i))
		}
	}
	r := b.Report()
	if r.Count != 3 || len(r.FirstOffsets) != 3 || r.FirstOffsets[0] != 1 || r.FirstOffsets[2] != 4 {
		t.Fatalf("report %+v", r)
	}
}
