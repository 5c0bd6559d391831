// Package columnar turns a partition's records into Arrow record batches:
// the one row layout that the Arrow Flight front end (server/flight) and
// the Parquet export (export) both use, so a range read over Flight and
// the same range read from Parquet have the same columns and values.
//
// The default layout (no value schema) has these columns, in this order:
//
//	partition  int32                                    not null
//	offset     int64                                    not null
//	timestamp  timestamp[ms, tz=UTC]                     not null
//	key        binary                                   null: the record has no key
//	value      binary                                   null: a tombstone (no value)
//	headers    list<struct<key: utf8, value: binary>>   not null; empty when none; order and duplicates kept
//
// A topic whose values are JSON objects may declare a value schema (Spec),
// or have one inferred from sample values (Infer); its layout then replaces the value column by one column per declared
// field (see spec.go), followed by two columns that carry the records
// whose values do not fit:
//
//	_invalid   utf8     null when the value fits; else why it does not
//	_raw       binary   null when the value fits; else the value as stored
//
// Invariants:
//   - Every record appended becomes exactly one row, in append order: a
//     value that does not fit the schema is never dropped and never turned
//     into a wrong value; its fields are null and _invalid/_raw say why and
//     keep the bytes. Report counts those rows and names their first
//     offsets.
//   - The builder copies what it keeps and never writes to what it is
//     given: the records passed to Append and AppendRecords may be shared
//     (with the read cache, read-only) and may be reused once the call
//     returns.
//   - Building allocates per batch, not per row (the default layout): a
//     Builder reserves its buffers for the rows it is given (AppendRecords
//     sizes them from the records in one pass) and for the size of the
//     batch it cut last, so a stream of similar batches grows no buffer
//     row by row.
//   - A Layout is immutable and safe for concurrent use; a Builder is not.
package columnar

import (
	"unsafe"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/segment"
)

// Column names of the layouts.
const (
	ColPartition = "partition"
	ColOffset    = "offset"
	ColTimestamp = "timestamp"
	ColKey       = "key"
	ColValue     = "value"
	ColHeaders   = "headers"
	ColInvalid   = "_invalid"
	ColRaw       = "_raw"
)

// MaxReportedOffsets is how many offsets of records that do not fit the
// schema a Report names (it counts all of them).
const MaxReportedOffsets = 16

// HeaderType is the Arrow type of one header: a key/value struct.
var HeaderType = arrow.StructOf(
	arrow.Field{Name: "key", Type: arrow.BinaryTypes.String},
	arrow.Field{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
)

// TimestampType is the type of the timestamp column: milliseconds, UTC.
var TimestampType = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// Layout is the row layout of one topic: the default one, or the one of
// its value schema.
type Layout struct {
	spec   *Spec // nil: the default layout
	schema *arrow.Schema
}

// NewLayout returns the layout for a topic's value schema; spec nil (or
// with no fields) gives the default layout. The spec must be valid
// (ParseSpec or Infer made it).
func NewLayout(spec *Spec) (*Layout, error) {
	fields := []arrow.Field{
		{Name: ColPartition, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColTimestamp, Type: TimestampType},
		{Name: ColKey, Type: arrow.BinaryTypes.Binary, Nullable: true},
	}
	if spec == nil || len(spec.Fields) == 0 {
		fields = append(fields,
			arrow.Field{Name: ColValue, Type: arrow.BinaryTypes.Binary, Nullable: true},
			arrow.Field{Name: ColHeaders, Type: arrow.ListOf(HeaderType)},
		)
		return &Layout{schema: arrow.NewSchema(fields, nil)}, nil
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec = &Spec{Fields: append([]Field(nil), spec.Fields...)} // a Layout is immutable: its own copy
	fields = append(fields, arrow.Field{Name: ColHeaders, Type: arrow.ListOf(HeaderType)})
	for _, f := range spec.Fields {
		fields = append(fields, arrow.Field{Name: f.Name, Type: f.arrowType(), Nullable: true})
	}
	fields = append(fields,
		arrow.Field{Name: ColInvalid, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: ColRaw, Type: arrow.BinaryTypes.Binary, Nullable: true},
	)
	return &Layout{spec: spec, schema: arrow.NewSchema(fields, nil)}, nil
}

// Schema is the Arrow schema of the layout's record batches.
func (l *Layout) Schema() *arrow.Schema { return l.schema }

// Spec is the value schema of the layout (nil for the default layout);
// the caller must not modify it.
func (l *Layout) Spec() *Spec { return l.spec }

// Report says which appended records did not fit the value schema.
type Report struct {
	Count        int64   // rows whose value did not fit
	FirstOffsets []int64 // the offsets of the first of them, at most MaxReportedOffsets
}

// add counts one record that did not fit.
func (r *Report) add(offset int64) {
	r.Count++
	if len(r.FirstOffsets) < MaxReportedOffsets {
		r.FirstOffsets = append(r.FirstOffsets, offset)
	}
}

// Merge adds o to r (the offsets of r first).
func (r *Report) Merge(o Report) {
	r.Count += o.Count
	for _, off := range o.FirstOffsets {
		if len(r.FirstOffsets) == MaxReportedOffsets {
			break
		}
		r.FirstOffsets = append(r.FirstOffsets, off)
	}
}

// Builder accumulates the rows of one partition and cuts record batches.
// It is not safe for concurrent use.
type Builder struct {
	layout    *Layout
	partition int32
	rb        *array.RecordBuilder
	bytes     int // approximate bytes appended since the last NewRecord
	report    Report
	// last is the size of the batch NewRecord cut last: what the next
	// batch's buffers are reserved for when its first rows arrive.
	last, cur sizes
	scratch   scratch // AppendRecords' bulk columns, made on first use

	// columns of rb, by role
	part    *array.Int32Builder
	offset  *array.Int64Builder
	ts      *array.TimestampBuilder
	key     *array.BinaryBuilder
	value   *array.BinaryBuilder // default layout only
	headers *array.ListBuilder
	hdr     *array.StructBuilder
	hdrKey  *array.StringBuilder
	hdrVal  *array.BinaryBuilder
	typed   *typedColumns // value-schema layout only
}

// NewBuilder returns a builder of rows of partition p. mem nil means the
// Go allocator. Release it when done.
func (l *Layout) NewBuilder(mem memory.Allocator, p int32) *Builder {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	rb := array.NewRecordBuilder(mem, l.schema)
	b := &Builder{
		layout:    l,
		partition: p,
		rb:        rb,
		part:      rb.Field(0).(*array.Int32Builder),
		offset:    rb.Field(1).(*array.Int64Builder),
		ts:        rb.Field(2).(*array.TimestampBuilder),
		key:       rb.Field(3).(*array.BinaryBuilder),
	}
	next := 4
	if l.spec == nil {
		b.value = rb.Field(next).(*array.BinaryBuilder)
		next++
	}
	b.headers = rb.Field(next).(*array.ListBuilder)
	b.hdr = b.headers.ValueBuilder().(*array.StructBuilder)
	b.hdrKey = b.hdr.FieldBuilder(0).(*array.StringBuilder)
	b.hdrVal = b.hdr.FieldBuilder(1).(*array.BinaryBuilder)
	next++
	if l.spec != nil {
		b.typed = newTypedColumns(l.spec, rb, next)
	}
	return b
}

// sizes are what rows hold: what a builder reserves its buffers for.
type sizes struct {
	rows, keyBytes, valueBytes, headers, headerKeyBytes, headerValueBytes int
}

func (z *sizes) add(r *segment.Record) {
	z.rows++
	z.keyBytes += len(r.Key)
	z.valueBytes += len(r.Value)
	z.headers += len(r.Headers)
	for i := range r.Headers {
		z.headerKeyBytes += len(r.Headers[i].Key)
		z.headerValueBytes += len(r.Headers[i].Value)
	}
}

// reserve makes room for z more rows, and, for the first rows of a batch,
// for at least the size of the batch cut last: one allocation per buffer
// per batch in a steady stream, instead of regrowing each from empty.
func (b *Builder) reserve(z sizes) {
	if b.cur.rows == 0 {
		z = sizes{
			rows: max(z.rows, b.last.rows), keyBytes: max(z.keyBytes, b.last.keyBytes), valueBytes: max(z.valueBytes, b.last.valueBytes),
			headers: max(z.headers, b.last.headers), headerKeyBytes: max(z.headerKeyBytes, b.last.headerKeyBytes), headerValueBytes: max(z.headerValueBytes, b.last.headerValueBytes),
		}
	}
	b.part.Reserve(z.rows)
	b.offset.Reserve(z.rows)
	b.ts.Reserve(z.rows)
	b.key.Reserve(z.rows)
	reserveData(b.key, z.keyBytes)
	b.headers.Reserve(z.rows)
	if z.headers > 0 {
		b.hdr.Reserve(z.headers)
		reserveData(b.hdrKey.BinaryBuilder, z.headerKeyBytes)
		reserveData(b.hdrVal, z.headerValueBytes)
	}
	if b.typed == nil {
		b.value.Reserve(z.rows)
		reserveData(b.value, z.valueBytes)
	}
}

// reserveData makes room for n more bytes of bb's data, growing it at
// least twofold (ReserveData alone grows to exactly what is asked: row by
// row, that would copy the data once per row).
func reserveData(bb *array.BinaryBuilder, n int) {
	if need := bb.DataLen() + n; need > bb.DataCap() {
		bb.ReserveData(max(need, 2*bb.DataCap()) - bb.DataLen())
	}
}

// Append adds r as one row. It never fails: a value that does not fit the
// value schema becomes a row with null fields, the reason in _invalid and
// the value in _raw, and is counted in Report. AppendRecords is the faster
// way to add many rows.
func (b *Builder) Append(r *segment.Record) {
	var z sizes
	z.add(r)
	b.reserve(z)
	b.appendRow(r)
	b.cur.add(r)
	b.bytes += rowBytes(r)
}

// AppendRecords adds rows from recs in order while Bytes is below
// maxBytes (so it stops after the row that reaches it, or at the end of
// recs) and returns how many it added. It sizes the buffers for those
// rows first, so a batch costs one allocation per buffer rather than one
// regrowth per doubling. Each row is what Append would add.
func (b *Builder) AppendRecords(recs []segment.Record, maxBytes int) int {
	var z sizes
	n, bytes := 0, b.bytes
	for n < len(recs) && bytes < maxBytes {
		z.add(&recs[n])
		bytes += rowBytes(&recs[n])
		n++
	}
	if n == 0 {
		return 0
	}
	b.reserve(z)
	// The fixed-width columns (and empty header lists) in bulk, a piece of
	// scratchRows rows at a time; the rest row by row.
	for lo := 0; lo < n; lo += scratchRows {
		piece := recs[lo:min(n, lo+scratchRows)]
		headers := b.appendFixed(piece)
		for i := range piece {
			b.appendVar(&piece[i], headers)
		}
	}
	b.cur.rows += z.rows
	b.cur.keyBytes += z.keyBytes
	b.cur.valueBytes += z.valueBytes
	b.cur.headers += z.headers
	b.cur.headerKeyBytes += z.headerKeyBytes
	b.cur.headerValueBytes += z.headerValueBytes
	b.bytes = bytes
	return n
}

// scratchRows is the most rows appendFixed takes at once (the size of
// the Builder's scratch columns).
const scratchRows = 1024

// scratch holds the fixed-width values of up to scratchRows rows, to be
// appended in bulk.
type scratch struct {
	part      []int32 // the partition, scratchRows times
	offset    []int64
	ts        []arrow.Timestamp
	hdrOffset []int32 // an empty header list's offsets
	valid     []bool  // true, scratchRows times
}

// appendFixed adds the partition, offset and timestamp columns of recs
// (at most scratchRows, reserved) in bulk, and their header lists too
// when none of them has a header; it reports whether some have (then
// appendVar adds each row's list).
func (b *Builder) appendFixed(recs []segment.Record) (headers bool) {
	s := &b.scratch
	if s.part == nil {
		s.part, s.offset, s.ts = make([]int32, scratchRows), make([]int64, scratchRows), make([]arrow.Timestamp, scratchRows)
		s.hdrOffset, s.valid = make([]int32, scratchRows), make([]bool, scratchRows)
		for i := range scratchRows {
			s.part[i], s.valid[i] = b.partition, true
		}
	}
	n := len(recs)
	for i := range recs {
		s.offset[i], s.ts[i] = recs[i].Offset, arrow.Timestamp(recs[i].Timestamp)
		headers = headers || len(recs[i].Headers) > 0
	}
	b.part.AppendValues(s.part[:n], nil)
	b.offset.AppendValues(s.offset[:n], nil)
	b.ts.AppendValues(s.ts[:n], nil)
	if !headers {
		at := int32(b.hdr.Len())
		for i := range n {
			s.hdrOffset[i] = at
		}
		b.headers.AppendValues(s.hdrOffset[:n], s.valid[:n])
	}
	return headers
}

// appendRow adds r as one row into buffers reserved for it (reserve).
func (b *Builder) appendRow(r *segment.Record) {
	b.part.UnsafeAppend(b.partition)
	b.offset.UnsafeAppend(r.Offset)
	b.ts.UnsafeAppend(arrow.Timestamp(r.Timestamp))
	b.appendVar(r, true)
}

// appendVar adds r's key, value (or typed fields) and, with headers,
// its header list, into buffers reserved for them.
func (b *Builder) appendVar(r *segment.Record, headers bool) {
	if r.Key == nil {
		b.key.AppendNull()
	} else {
		b.key.UnsafeAppend(r.Key)
	}
	if headers {
		b.headers.Append(true)
	}
	for i := range r.Headers {
		h := &r.Headers[i]
		b.hdr.Append(true)
		// The key's bytes without a copy to []byte (Append(string)
		// converts, which allocates): the builder copies them.
		b.hdrKey.BinaryBuilder.Append(unsafe.Slice(unsafe.StringData(h.Key), len(h.Key)))
		if h.Value == nil {
			b.hdrVal.AppendNull()
		} else {
			b.hdrVal.Append(h.Value)
		}
	}
	if b.typed == nil {
		if r.Value == nil {
			b.value.AppendNull()
		} else {
			b.value.UnsafeAppend(r.Value)
		}
	} else if !b.typed.append(r.Value) {
		b.report.add(r.Offset)
	}
}

// rowBytes approximates what a row costs in the batch: its bytes plus the
// fixed-width columns and offsets.
func rowBytes(r *segment.Record) int {
	n := len(r.Key) + len(r.Value) + 4 + 8 + 8 + 3*4
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 2*4
	}
	return n
}

// Len is the number of rows appended since the last NewRecord.
func (b *Builder) Len() int { return b.offset.Len() }

// Bytes approximates the bytes appended since the last NewRecord (what a
// caller cuts batches or row groups by).
func (b *Builder) Bytes() int { return b.bytes }

// NewRecord returns the rows appended since the last call as one record
// batch (the caller releases it) and starts an empty one.
func (b *Builder) NewRecord() arrow.Record {
	b.bytes = 0
	if b.cur.rows > 0 {
		b.last = b.cur
	}
	b.cur = sizes{}
	return b.rb.NewRecord()
}

// Report is the cumulative report of the rows appended whose value did
// not fit the schema (always empty for the default layout).
func (b *Builder) Report() Report {
	r := b.report
	r.FirstOffsets = append([]int64(nil), r.FirstOffsets...)
	return r
}

// Release frees the builder's buffers.
func (b *Builder) Release() { b.rb.Release() }
