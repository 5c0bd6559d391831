package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// errSourceGone: the records of a claim were deleted (retention) before
// they could be read.
var errSourceGone = errors.New("export: the claimed records are gone from the source")

// The key-value metadata every file carries, so that a file found at a
// claim's key can be recognized (or refused) without trusting its name.
const (
	mdTopic         = "strata.topic"
	mdTopicID       = "strata.topic_id"
	mdPartition     = "strata.partition"
	mdFirst         = "strata.first_offset"
	mdLast          = "strata.last_offset"
	mdClaim         = "strata.claim"
	mdDate          = "strata.date"
	mdRows          = "strata.rows"
	mdSegmentBytes  = "strata.segment_bytes"
	mdMinTimestamp  = "strata.min_timestamp"
	mdMaxTimestamp  = "strata.max_timestamp"
	mdMisfits       = "strata.misfits"
	mdMisfitOffsets = "strata.misfit_offsets"
)

// writerProps are the Parquet settings of every file: zstd, statistics
// (min/max per row group and page, so engines skip by offset and
// timestamp), delta encoding of the offset and timestamp columns, no
// dictionary and no statistics for the opaque value blobs, and no row
// count limit (row groups are cut by bytes, one Arrow record each).
func writerProps(mem memory.Allocator) *parquet.WriterProperties {
	return parquet.NewWriterProperties(
		parquet.WithAllocator(mem),
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithCompressionLevel(1),
		parquet.WithStats(true),
		parquet.WithMaxRowGroupLength(math.MaxInt64),
		parquet.WithCreatedBy("strata export"),
		parquet.WithDictionaryFor(columnar.ColOffset, false),
		parquet.WithEncodingFor(columnar.ColOffset, parquet.Encodings.DeltaBinaryPacked),
		parquet.WithDictionaryFor(columnar.ColTimestamp, false),
		parquet.WithEncodingFor(columnar.ColTimestamp, parquet.Encodings.DeltaBinaryPacked),
		parquet.WithDictionaryFor(columnar.ColValue, false),
		parquet.WithStatsFor(columnar.ColValue, false),
		parquet.WithDictionaryFor(columnar.ColRaw, false),
		parquet.WithStatsFor(columnar.ColRaw, false),
	)
}

// rowEstimate is what a record adds to columnar's Builder.Bytes (the same
// accounting), known before it is appended.
func rowEstimate(r *segment.Record) int64 {
	n := len(r.Key) + len(r.Value) + 4 + 8 + 8 + 3*4
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 2*4
	}
	return int64(n)
}

func (e *Exporter) alloc() memory.Allocator {
	if e.cfg.Allocator != nil {
		return e.cfg.Allocator
	}
	return memory.DefaultAllocator
}

// writeFile builds claim c's file in the spool and stores it at c.Key with
// one PutIfAbsent. A file already there is adopted when its metadata names
// the same claim (reported by adopted), and refused otherwise.
func (e *Exporter) writeFile(ctx context.Context, j *job, c *Claim, tr *tracker) (r *Range, adopted bool, err error) {
	name := filepath.Join(e.cfg.SpoolDir, "strata-export-"+c.ID+"-"+randomHex(4)+".parquet.part")
	f, err := e.cfg.Spool.Create(name)
	if err != nil {
		return nil, false, fmt.Errorf("export: create the spool file %s: %w (set the spool directory to a writable one)", name, err)
	}
	defer func() {
		f.Close()
		e.cfg.Spool.Remove(name)
	}()
	mem := e.alloc()
	// The Parquet writer closes a writer that is an io.Closer: hide it.
	fw, err := pqarrow.NewFileWriter(j.layout.Schema(), struct{ io.Writer }{f}, writerProps(mem),
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
	if err != nil {
		return nil, false, fmt.Errorf("export: Parquet writer for %s: %w", c.Key, err)
	}
	defer fw.Close() // on errors: releases its buffers (the spool file is dropped)
	b := j.layout.NewBuilder(mem, j.p)
	defer b.Release()

	r = &Range{First: c.First, Last: c.Last, Key: c.Key, Date: c.Date, Claim: c.ID, SegmentBytes: c.SegmentBytes,
		MinTimestamp: math.MaxInt64, MaxTimestamp: math.MinInt64}
	var pending int64 // rows appended since the last progress report
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		rec := b.NewRecord()
		defer rec.Release()
		if err := fw.Write(rec); err != nil {
			return fmt.Errorf("export: write a row group of %s: %w", c.Key, err)
		}
		share := int64(0)
		if span := c.Last - c.First + 1; span > 0 {
			share = c.SegmentBytes * pending / span
		}
		tr.add(pending, share, 0, 0)
		pending = 0
		return nil
	}
	next := c.First
	for next <= c.Last {
		res, err := j.reader.Read(ctx, next, e.cfg.ReadBytes)
		var oor *fetch.OutOfRangeError
		if errors.As(err, &oor) {
			return nil, false, errSourceGone
		}
		if err != nil {
			return nil, false, fmt.Errorf("export: topic %q partition %d: read offsets from %d: %w", j.t.Name, j.p, next, err)
		}
		if len(res.Records) == 0 {
			break // past the sealed end: the claim's last records do not exist
		}
		for i := range res.Records {
			rec := &res.Records[i]
			if rec.Offset > c.Last {
				break
			}
			if b.Len() > 0 && int64(b.Bytes())+rowEstimate(rec) > c.RowGroupLimit {
				if err := flush(); err != nil {
					return nil, false, err
				}
			}
			b.Append(rec)
			r.Rows++
			pending++
			r.MinTimestamp, r.MaxTimestamp = min(r.MinTimestamp, rec.Timestamp), max(r.MaxTimestamp, rec.Timestamp)
			if int64(b.Bytes()) >= c.RowGroupBytes {
				if err := flush(); err != nil {
					return nil, false, err
				}
			}
		}
		next = max(next+1, res.NextOffset)
	}
	if err := flush(); err != nil {
		return nil, false, err
	}
	if r.Rows == 0 {
		r.MinTimestamp, r.MaxTimestamp = 0, 0
	}
	rep := b.Report()
	r.Misfits, r.MisfitOffsets = rep.Count, rep.FirstOffsets
	for _, kv := range [][2]string{
		{mdTopic, j.t.Name}, {mdTopicID, j.t.ID}, {mdPartition, strconv.Itoa(int(j.p))},
		{mdFirst, strconv.FormatInt(c.First, 10)}, {mdLast, strconv.FormatInt(c.Last, 10)},
		{mdClaim, c.ID}, {mdDate, c.Date}, {mdRows, strconv.FormatInt(r.Rows, 10)},
		{mdSegmentBytes, strconv.FormatInt(c.SegmentBytes, 10)},
		{mdMinTimestamp, strconv.FormatInt(r.MinTimestamp, 10)}, {mdMaxTimestamp, strconv.FormatInt(r.MaxTimestamp, 10)},
		{mdMisfits, strconv.FormatInt(r.Misfits, 10)}, {mdMisfitOffsets, joinInts(r.MisfitOffsets)},
	} {
		if err := fw.AppendKeyValueMetadata(kv[0], kv[1]); err != nil {
			return nil, false, fmt.Errorf("export: metadata of %s: %w", c.Key, err)
		}
	}
	if err := fw.Close(); err != nil {
		return nil, false, fmt.Errorf("export: finish %s in the spool file %s: %w", c.Key, name, err)
	}
	size, err := f.Size()
	if err != nil {
		return nil, false, fmt.Errorf("export: spool file %s: %w", name, err)
	}
	r.Bytes = size
	_, err = e.cfg.Target.PutIfAbsent(ctx, c.Key, io.NewSectionReader(f, 0, size), size)
	if err == nil {
		failpoint.Hit(failpoint.ExportFileStored)
		return r, false, nil
	}
	// The key holds a file (another exporter of this claim stored it, or
	// this write applied and its answer was lost), or the write failed:
	// what is stored decides.
	stored, serr := e.storedFile(ctx, j, c)
	switch {
	case serr != nil:
		return nil, false, serr
	case stored != nil:
		return stored, true, nil
	case errors.Is(err, tier.ErrPreconditionFailed):
		return nil, false, fmt.Errorf("export: %s existed and then vanished while it was checked; run again", c.Key)
	default:
		return nil, false, fmt.Errorf("export: store %s: %w (nothing was committed; the claim stays and the next run finishes it)", c.Key, err)
	}
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(s, ",")
}

// storedFile returns the range of the file stored at claim c's key, nil
// when there is none, and an error when the file there is not c's.
func (e *Exporter) storedFile(ctx context.Context, j *job, c *Claim) (*Range, error) {
	info, err := e.cfg.Target.Stat(ctx, c.Key)
	if errors.Is(err, tier.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: check %s: %w", c.Key, err)
	}
	md, err := readFileMetadata(ctx, e.cfg.Target, c.Key, info.Size)
	if err != nil {
		return nil, fmt.Errorf("export: %s is stored but is not a readable Parquet file (%v); it was not written by this export: move it away and run again", c.Key, err)
	}
	want := map[string]string{mdTopic: j.t.Name, mdTopicID: j.t.ID, mdPartition: strconv.Itoa(int(j.p)),
		mdFirst: strconv.FormatInt(c.First, 10), mdLast: strconv.FormatInt(c.Last, 10), mdClaim: c.ID}
	for k, v := range want {
		if md[k] != v {
			return nil, fmt.Errorf("export: %s is stored with %s %q, not %q: it belongs to another export (another identity of topic %q, or another manifest); nothing was replaced: move it away or export to another prefix",
				c.Key, k, md[k], v, j.t.Name)
		}
	}
	num := func(k string) int64 {
		n, _ := strconv.ParseInt(md[k], 10, 64)
		return n
	}
	r := &Range{First: c.First, Last: c.Last, Key: c.Key, Date: c.Date, Claim: c.ID, Bytes: info.Size,
		Rows: num(mdRows), SegmentBytes: c.SegmentBytes, MinTimestamp: num(mdMinTimestamp), MaxTimestamp: num(mdMaxTimestamp),
		Misfits: num(mdMisfits)}
	for s := range strings.SplitSeq(md[mdMisfitOffsets], ",") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && len(r.MisfitOffsets) < columnar.MaxReportedOffsets {
			r.MisfitOffsets = append(r.MisfitOffsets, n)
		}
	}
	if r.Rows < 0 || r.Rows > c.Last-c.First+1 || r.Misfits < 0 || r.Misfits > r.Rows || r.MinTimestamp > r.MaxTimestamp {
		return nil, fmt.Errorf("export: %s names claim %s but its counts (%d rows, %d misfits) do not fit offsets %d to %d; move it away and run again",
			c.Key, c.ID, r.Rows, r.Misfits, c.First, c.Last)
	}
	return r, nil
}

// readFileMetadata reads a stored Parquet file's key-value metadata (its
// footer: two ranged GETs).
func readFileMetadata(ctx context.Context, st tier.BucketReader, key string, size int64) (map[string]string, error) {
	pr, err := file.NewParquetReader(&objectReader{ctx: ctx, st: st, key: key, size: size})
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	kv := pr.MetaData().KeyValueMetadata()
	md := make(map[string]string, kv.Len())
	for i, k := range kv.Keys() {
		md[k] = kv.Values()[i]
	}
	return md, nil
}

// objectReader reads a stored object with ranged GETs: the io.ReaderAt
// and io.Seeker a Parquet reader needs.
type objectReader struct {
	ctx  context.Context
	st   tier.BucketReader
	key  string
	size int64
	pos  int64
}

func (o *objectReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("export: read %s at negative offset %d", o.key, off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), o.size-off)
	rc, err := o.st.GetRange(o.ctx, o.key, off, n)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	got, err := io.ReadFull(rc, p[:n])
	if err == nil && n < int64(len(p)) {
		err = io.EOF
	}
	return got, err
}

func (o *objectReader) Read(p []byte) (int, error) {
	n, err := o.ReadAt(p, o.pos)
	o.pos += int64(n)
	return n, err
}

func (o *objectReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += o.pos
	case io.SeekEnd:
		off += o.size
	default:
		return 0, fmt.Errorf("export: seek %s: whence %d", o.key, whence)
	}
	if off < 0 {
		return 0, fmt.Errorf("export: seek %s to %d", o.key, off)
	}
	o.pos = off
	return off, nil
}
