package columnar

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/segment"
)

// appendRecords are records of every shape: nil and empty keys and
// values, no headers, duplicate headers, nil header values, long header
// keys; JSON values that fit allTypes and ones that do not. Records with
// headers come in runs of 700 with runs of 700 without (AppendRecords
// adds the header lists of a run without headers in bulk).
func appendRecords(rng *rand.Rand, n int) []segment.Record {
	recs := make([]segment.Record, n)
	for i := range recs {
		r := &recs[i]
		r.Offset, r.Timestamp = int64(1000+i), 1_700_000_000_000+int64(rng.IntN(1000))
		switch rng.IntN(4) {
		case 0:
		case 1:
			r.Key = []byte{}
		default:
			r.Key = fmt.Appendf(nil, "key-%d", rng.IntN(100))
		}
		switch rng.IntN(5) {
		case 0:
		case 1:
			r.Value = []byte("not json")
		case 2:
			r.Value = []byte{}
		default:
			r.Value = fmt.Appendf(nil, `{"i": %d, "s": "%s"}`, rng.IntN(1000), strings.Repeat("x", rng.IntN(300)))
		}
		if (i/700)%2 == 1 {
			continue
		}
		for range rng.IntN(3) {
			h := segment.Header{Key: strings.Repeat("header-key-", 1+rng.IntN(5))}
			if rng.IntN(3) > 0 {
				h.Value = fmt.Appendf(nil, "%d", rng.IntN(1e6))
			}
			r.Headers = append(r.Headers, h)
		}
	}
	return recs
}

// AppendRecords adds the rows Append adds, cut where a caller that cuts
// once Bytes reaches a limit would cut them, whatever the chunks it is
// given; every batch the same as Append's, default and typed layouts;
// nothing leaks.
func TestAppendRecordsMatchesAppend(t *testing.T) {
	spec, err := ParseSpec([]byte(allTypes))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Spec{nil, spec} {
		l, err := NewLayout(s)
		if err != nil {
			t.Fatal(err)
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		rng := rand.New(rand.NewPCG(1, 2))
		recs := appendRecords(rng, 3000)
		const limit = 20 << 10
		// One row at a time, cut as DoGet cuts.
		var want []arrow.Record
		wb := l.NewBuilder(mem, 4)
		for i := range recs {
			wb.Append(&recs[i])
			if wb.Bytes() >= limit {
				want = append(want, wb.NewRecord())
			}
		}
		want = append(want, wb.NewRecord())
		// In random chunks.
		var got []arrow.Record
		gb := l.NewBuilder(mem, 4)
		for rest := recs; len(rest) > 0; {
			chunk := rest[:min(len(rest), 1+rng.IntN(400))]
			rest = rest[len(chunk):]
			for len(chunk) > 0 {
				n := gb.AppendRecords(chunk, limit)
				if n == 0 {
					t.Fatalf("AppendRecords added nothing with %d bytes in the batch (limit %d)", gb.Bytes(), limit)
				}
				chunk = chunk[n:]
				if gb.Bytes() >= limit {
					got = append(got, gb.NewRecord())
				}
			}
		}
		got = append(got, gb.NewRecord())
		if len(got) != len(want) || len(want) < 10 {
			t.Fatalf("spec %v: %d batches in chunks, %d row by row (want several)", s != nil, len(got), len(want))
		}
		for i := range want {
			if !array.RecordEqual(got[i], want[i]) {
				t.Fatalf("spec %v: batch %d differs:\n got %v\nwant %v", s != nil, i, got[i], want[i])
			}
		}
		if wr, gr := wb.Report(), gb.Report(); wr.Count == 0 && s != nil || fmt.Sprint(wr) != fmt.Sprint(gr) {
			t.Fatalf("reports: row by row %+v, chunks %+v", wr, gr)
		}
		for _, r := range append(got, want...) {
			r.Release()
		}
		wb.Release()
		gb.Release()
		mem.AssertSize(t, 0)
	}
}

// AppendRecords never goes past its limit by more than one row, and adds
// nothing once Bytes has reached it.
func TestAppendRecordsStopsAtTheLimit(t *testing.T) {
	l, _ := NewLayout(nil)
	b := l.NewBuilder(nil, 0)
	defer b.Release()
	recs := make([]segment.Record, 100)
	for i := range recs {
		recs[i] = segment.Record{Offset: int64(i), Value: make([]byte, 100)}
	}
	row := rowBytes(&recs[0])
	n := b.AppendRecords(recs, 10*row+1)
	if n != 11 || b.Len() != 11 || b.Bytes() != 11*row {
		t.Fatalf("added %d rows (%d bytes), want 11: the 11th reaches the limit", n, b.Bytes())
	}
	if n := b.AppendRecords(recs[11:], 10*row); n != 0 {
		t.Fatalf("added %d rows past the limit", n)
	}
	if n := b.AppendRecords(nil, 1<<20); n != 0 {
		t.Fatalf("added %d rows of none", n)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if off := rec.Column(1).(*array.Int64); off.Len() != 11 || off.Value(10) != 10 {
		t.Fatalf("batch of %d rows", off.Len())
	}
}

// Building a batch allocates per batch, not per row or per doubling of a
// buffer: in a steady stream, a batch of 5000 rows (long header keys
// among them), given in chunks as decoded batches come, costs the
// allocations of a batch of one row (Arrow's arrays and buffers), as the
// Go allocator counts them.
func TestAppendRecordsAllocatesPerBatch(t *testing.T) {
	l, _ := NewLayout(nil)
	b := l.NewBuilder(memory.NewGoAllocator(), 0)
	defer b.Release()
	recs := appendRecords(rand.New(rand.NewPCG(5, 6)), 5000)
	batch := func() {
		for rest := recs; len(rest) > 0; {
			chunk := rest[:min(len(rest), 700)] // decoded batches of 700 records
			rest = rest[len(chunk):]
			b.AppendRecords(chunk, 1<<30)
		}
		b.NewRecord().Release()
	}
	batch() // the first batch sizes the next ones
	many := testing.AllocsPerRun(5, batch)
	one := testing.AllocsPerRun(5, func() {
		b.AppendRecords(recs[:1], 1<<30)
		b.NewRecord().Release()
	})
	if many > one+4 {
		t.Fatalf("%.0f allocations to build a batch of %d rows, %.0f for one row: building allocates per row or per regrowth", many, len(recs), one)
	}
}
