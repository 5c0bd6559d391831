package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stratalog/strata/internal/leakcheck"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// TestMain fails the package's tests if they leave goroutines behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }

const testID = "0123456789abcdef0123456789abcdef"

// writeTopic stores a topic config as the broker does (the config's JSON
// plus topic_id), with extra fields merged in.
func writeTopic(t testing.TB, st tier.Store, name, id string, parts int32, extra map[string]any) {
	t.Helper()
	cfg := map[string]any{"name": name, "partitions": parts}
	if id != "" {
		cfg["topic_id"] = id
	}
	for k, v := range extra {
		cfg[k] = v
	}
	data, _ := json.Marshal(cfg)
	if _, err := st.Put(context.Background(), meta.TopicConfigKey(name), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// seal writes recs (offsets consecutive from recs[0].Offset) as sealed
// segments of perSeg records each, blocks of blockSize bytes, and the
// partition's manifest with the given log start.
func seal(t testing.TB, st tier.Store, storage string, p int32, recs []segment.Record, perSeg, blockSize int, logStart int64) {
	t.Helper()
	ctx := context.Background()
	m := &meta.Manifest{Topic: storage, Partition: p, Epoch: 1, LogStartOffset: logStart}
	for i := 0; i < len(recs); i += perSeg {
		seg := recs[i:min(i+perSeg, len(recs))]
		var buf bytes.Buffer
		w := segment.NewWriter(&buf, segment.WriterOptions{BlockSize: blockSize})
		for k := 0; k < len(seg); k += 10 {
			b := &segment.Batch{BaseOffset: seg[k].Offset, ProducerID: segment.NoProducer, Records: slices.Clone(seg[k:min(k+10, len(seg))])}
			if err := w.Append(b); err != nil {
				t.Fatal(err)
			}
		}
		f, err := w.Finish()
		if err != nil {
			t.Fatal(err)
		}
		key := meta.SegmentKey(storage, p, f.FirstOffset, 1)
		if _, err := st.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			t.Fatal(err)
		}
		m.Segments = append(m.Segments, meta.SegmentRef{Key: key, BaseOffset: f.FirstOffset, LastOffset: f.LastOffset,
			MinTimestamp: f.MinTimestamp, MaxTimestamp: f.MaxTimestamp, Records: f.RecordCount, Size: int64(buf.Len()), Codec: "zstd"})
	}
	ms := meta.NewManifestStore(st, storage, p)
	if cur, etag, err := ms.Load(ctx); err == nil {
		m.Generation = cur.Generation + 1
		if _, err := ms.Update(ctx, etag, m); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := ms.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// genRecords makes n records of partition p from offset 0: keys (some
// nil), JSON values (some tombstones), headers (some), timestamps from ts0
// every step ms.
func genRecords(p int32, n int, ts0, step int64) []segment.Record {
	recs := make([]segment.Record, n)
	for i := range recs {
		r := segment.Record{Offset: int64(i), Timestamp: ts0 + int64(i)*step}
		if i%7 != 3 {
			r.Key = fmt.Appendf(nil, "key-%d-%d", p, i%13)
		}
		if i%11 != 5 {
			r.Value = fmt.Appendf(nil, `{"user":"u-%d","n":%d,"pad":"%s"}`, i%31, i, strings.Repeat("x", i%40))
		}
		if i%3 == 0 {
			r.Headers = []segment.Header{{Key: "trace", Value: fmt.Appendf(nil, "t-%d", i)}, {Key: "empty", Value: nil}}
		}
		recs[i] = r
	}
	return recs
}

// testConfig is a Config over src and dst with small sizes and a
// memory spool.
func testConfig(src, dst tier.Store) Config {
	cfg := DefaultConfig()
	cfg.Source, cfg.Target = src, dst
	cfg.RowGroupBytes, cfg.RowGroupLimit = 8<<10, 16<<10
	cfg.FileBytes = 6 << 10
	cfg.ReadBytes = 4 << 10
	cfg.Spool, cfg.SpoolDir = vfs.NewMem(), "/spool"
	cfg.Retry = tier.Backoff{Attempts: 3, Base: 1e6, Max: 1e7}
	return cfg
}

func newExporter(t testing.TB, cfg Config) *Exporter {
	t.Helper()
	if err := cfg.Spool.MkdirAll(cfg.SpoolDir); err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// row is one exported row as read back from Parquet.
type row struct {
	Partition int32
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []segment.Header
}

// exportedFile is one Parquet file read back.
type exportedFile struct {
	Key       string
	Rows      []row
	RowGroups int
	Metadata  map[string]string
	Size      int64
	OffsetMin []int64 // per row group, from the column statistics
	OffsetMax []int64
}

func readAll(t testing.TB, st tier.BucketReader, key string) []byte {
	t.Helper()
	rc, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readTable reads a Parquet file whole (any layout).
func readTable(t testing.TB, st tier.BucketReader, key string) arrow.Table {
	t.Helper()
	pr, err := file.NewParquetReader(bytes.NewReader(readAll(t, st, key)))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: 1 << 20}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Release)
	return tbl
}

// readFile reads a Parquet file of the default layout back.
func readFile(t testing.TB, st tier.BucketReader, key string) exportedFile {
	t.Helper()
	data := readAll(t, st, key)
	pr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	defer pr.Close()
	ef := exportedFile{Key: key, RowGroups: pr.NumRowGroups(), Metadata: map[string]string{}, Size: int64(len(data))}
	kv := pr.MetaData().KeyValueMetadata()
	for i, k := range kv.Keys() {
		ef.Metadata[k] = kv.Values()[i]
	}
	offCol := pr.MetaData().Schema.ColumnIndexByName("offset")
	for rg := 0; rg < pr.NumRowGroups(); rg++ {
		cc, err := pr.MetaData().RowGroup(rg).ColumnChunk(offCol)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cc.Statistics()
		if err != nil || st == nil || !st.HasMinMax() {
			t.Fatalf("%s row group %d: no offset statistics (%v)", key, rg, err)
		}
		s := st.(interface {
			Min() int64
			Max() int64
		})
		ef.OffsetMin, ef.OffsetMax = append(ef.OffsetMin, s.Min()), append(ef.OffsetMax, s.Max())
	}
	fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: 1 << 20}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 1<<20)
	defer tr.Release()
	for tr.Next() {
		rec := tr.Record()
		col := func(name string) arrow.Array {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) != 1 {
				t.Fatalf("%s: no column %q in %s", key, name, rec.Schema())
			}
			return rec.Column(idx[0])
		}
		parts := col("partition").(*array.Int32)
		offs := col("offset").(*array.Int64)
		ts := col("timestamp").(*array.Timestamp)
		keys := col("key").(*array.Binary)
		vals := col("value").(*array.Binary)
		hdrs := col("headers").(*array.List)
		hs := hdrs.ListValues().(*array.Struct)
		hk, hv := hs.Field(0).(*array.String), hs.Field(1).(*array.Binary)
		for i := 0; i < int(rec.NumRows()); i++ {
			r := row{Partition: parts.Value(i), Offset: offs.Value(i), Timestamp: int64(ts.Value(i))}
			if !keys.IsNull(i) {
				r.Key = slices.Clone(keys.Value(i))
				if r.Key == nil {
					r.Key = []byte{}
				}
			}
			if !vals.IsNull(i) {
				r.Value = slices.Clone(vals.Value(i))
				if r.Value == nil {
					r.Value = []byte{}
				}
			}
			start, end := hdrs.ValueOffsets(i)
			for h := start; h < end; h++ {
				hdr := segment.Header{Key: hk.Value(int(h))}
				if !hv.IsNull(int(h)) {
					hdr.Value = slices.Clone(hv.Value(int(h)))
				}
				r.Headers = append(r.Headers, hdr)
			}
			ef.Rows = append(ef.Rows, r)
		}
	}
	return ef
}

// parquetKeys lists the .parquet objects under prefix.
func parquetKeys(t testing.TB, st tier.BucketReader, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(o tier.ObjectInfo) error {
		if strings.HasSuffix(o.Key, ".parquet") {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func loadManifest(t testing.TB, st tier.BucketReader, key string) *Manifest {
	t.Helper()
	m, err := DecodeManifest(readAll(t, st, key))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkExactlyOnce proves the export of topic (id) at dst under prefix
// holds every offset 0..want[p]-1 of each partition exactly once across
// the Parquet files, that the manifests commit exactly those files with
// no claim pending, and that every file keeps its key's promises (one
// date, its offsets). It returns the files read.
func checkExactlyOnce(t testing.TB, dst tier.BucketReader, prefix, topic, id string, want map[int32]int64) map[string]exportedFile {
	t.Helper()
	files := map[string]exportedFile{}
	seen := map[int32]map[int64]int{}
	for _, k := range parquetKeys(t, dst, prefix) {
		ef := readFile(t, dst, k)
		files[k] = ef
		var p int32
		var first, last int64
		var date string
		rest := strings.TrimPrefix(k, joinPrefix(prefix, "topic="+topic+"/"))
		if _, err := fmt.Sscanf(strings.ReplaceAll(rest, "/", " "), "date=%s partition=%d %d-%d.parquet", &date, &p, &first, &last); err != nil {
			t.Fatalf("key %s does not parse: %v", k, err)
		}
		for _, r := range ef.Rows {
			if r.Partition != p || r.Offset < first || r.Offset > last {
				t.Fatalf("%s holds partition %d offset %d", k, r.Partition, r.Offset)
			}
			if d := DateOf(r.Timestamp); d != date {
				t.Fatalf("%s (date %s) holds offset %d of date %s", k, date, r.Offset, d)
			}
			if seen[p] == nil {
				seen[p] = map[int64]int{}
			}
			seen[p][r.Offset]++
		}
	}
	for p, n := range want {
		for o := int64(0); o < n; o++ {
			if c := seen[p][o]; c != 1 {
				t.Fatalf("partition %d offset %d is in %d files, want exactly 1", p, o, c)
			}
		}
		if int64(len(seen[p])) != n {
			t.Fatalf("partition %d: %d offsets exported, want %d", p, len(seen[p]), n)
		}
		m := loadManifest(t, dst, ManifestKey(prefix, topic, id, p))
		if m.Pending != nil {
			t.Fatalf("partition %d: a claim is still pending: %+v", p, m.Pending)
		}
		var rows int64
		for _, r := range m.Ranges {
			ef, ok := files[r.Key]
			if !ok {
				t.Fatalf("partition %d: committed range %d-%d names %s, which is not stored", p, r.First, r.Last, r.Key)
			}
			if int64(len(ef.Rows)) != r.Rows || ef.Size != r.Bytes || ef.Metadata[mdClaim] != r.Claim {
				t.Fatalf("%s: manifest says %d rows, %d bytes, claim %s; the file has %d, %d, %s", r.Key, r.Rows, r.Bytes, r.Claim, len(ef.Rows), ef.Size, ef.Metadata[mdClaim])
			}
			rows += r.Rows
		}
		if rows != n {
			t.Fatalf("partition %d: the manifest commits %d rows, want %d", p, rows, n)
		}
	}
	var committed int
	for p := range want {
		committed += len(loadManifest(t, dst, ManifestKey(prefix, topic, id, p)).Ranges)
	}
	if committed != len(files) {
		t.Fatalf("%d Parquet files stored, %d committed: a file outside the manifests", len(files), committed)
	}
	return files
}

// hookStore wraps a store and calls a hook before each write (an error
// from it fails the write without applying it) and after a write applied.
type hookStore struct {
	tier.Store
	mu     sync.Mutex
	before func(op tier.Op, key string) error
	after  func(op tier.Op, key string)
}

func (h *hookStore) hooks() (func(tier.Op, string) error, func(tier.Op, string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.before, h.after
}

func (h *hookStore) write(op tier.Op, key string, fn func() (tier.ObjectInfo, error)) (tier.ObjectInfo, error) {
	before, after := h.hooks()
	if before != nil {
		if err := before(op, key); err != nil {
			return tier.ObjectInfo{}, err
		}
	}
	info, err := fn()
	if err == nil && after != nil {
		after(op, key)
	}
	return info, err
}

func (h *hookStore) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return h.write(tier.OpPut, key, func() (tier.ObjectInfo, error) { return h.Store.Put(ctx, key, r, size) })
}

func (h *hookStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return h.write(tier.OpPutIfAbsent, key, func() (tier.ObjectInfo, error) { return h.Store.PutIfAbsent(ctx, key, r, size) })
}

func (h *hookStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return h.write(tier.OpPutIfMatch, key, func() (tier.ObjectInfo, error) { return h.Store.PutIfMatch(ctx, key, etag, r, size) })
}
