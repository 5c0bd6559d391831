package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// midnight is 2024-03-01T00:00:00Z in ms: test data crosses it.
var midnight = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// seedEvents makes topic "events" (identity testID) with parts partitions
// of n records each in src, timestamps crossing midnight, and returns them.
func seedEvents(t testing.TB, src tier.Store, parts int32, n int) map[int32][]segment.Record {
	t.Helper()
	writeTopic(t, src, "events", testID, parts, nil)
	out := map[int32][]segment.Record{}
	for p := range parts {
		recs := genRecords(p, n, midnight-int64(n/2)*100, 100)
		seal(t, src, meta.StorageName("events", testID), p, recs, 300, 2<<10, 0)
		out[p] = recs
	}
	return out
}

func want(recs map[int32][]segment.Record) map[int32]int64 {
	w := map[int32]int64{}
	for p, r := range recs {
		w[p] = int64(len(r))
	}
	return w
}

// The export holds every record, every field as stored, exactly once; no
// file spans two dates; files and row groups are cut by bytes; the offset
// column has statistics per row group; the manifest commits exactly the
// files. Against the file store and MinIO as the target.
func TestExportRoundTrip(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dst tier.Store) {
		src := tier.NewMemStore()
		recs := seedEvents(t, src, 2, 2000)
		cfg := testConfig(src, dst)
		cfg.Prefix = "exports"
		e := newExporter(t, cfg)
		var last Progress
		res, err := e.Export(context.Background(), "events", Bounds{}, func(p Progress) { last = p })
		if err != nil {
			t.Fatal(err)
		}
		files := checkExactlyOnce(t, dst, "exports", "events", testID, want(recs))
		if len(files) < 6 {
			t.Fatalf("%d files for 2 x 2000 records with FileBytes 6 KiB: files are not cut by size", len(files))
		}
		dates := map[string]bool{}
		multiGroup := false
		for k, ef := range files {
			dates[strings.Split(strings.Split(k, "date=")[1], "/")[0]] = true
			multiGroup = multiGroup || ef.RowGroups > 1
			for g := range ef.RowGroups {
				if g > 0 && ef.OffsetMin[g] <= ef.OffsetMax[g-1] {
					t.Fatalf("%s: row groups out of offset order", k)
				}
			}
			for _, r := range ef.Rows {
				src := recs[r.Partition][r.Offset]
				if r.Timestamp != src.Timestamp || !bytes.Equal(r.Key, src.Key) || (r.Key == nil) != (src.Key == nil) ||
					!bytes.Equal(r.Value, src.Value) || (r.Value == nil) != (src.Value == nil) || !slices.EqualFunc(r.Headers, src.Headers, func(a, b segment.Header) bool {
					return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil)
				}) {
					t.Fatalf("%s offset %d: exported %+v, stored %+v", k, r.Offset, r, src)
				}
			}
		}
		if len(dates) != 2 {
			t.Fatalf("dates %v: the data spans two", dates)
		}
		if !multiGroup {
			t.Fatal("no file has more than one row group: row groups are not cut by bytes")
		}
		files0, records, pq, _ := res.Totals()
		if files0 != len(files) || records != 4000 || pq <= 0 {
			t.Fatalf("result: %d files, %d records, %d bytes; stored %d files", files0, records, pq, len(files))
		}
		if last.Records != 4000 || last.TotalRecords != 4000 || last.Files != len(files) || last.SegmentBytes <= 0 {
			t.Fatalf("last progress %+v", last)
		}
		// A second run finds nothing to do.
		res, err = e.Export(context.Background(), "events", Bounds{}, nil)
		if f, _, _, _ := res.Totals(); err != nil || f != 0 {
			t.Fatalf("a second run exported %d files (%v)", f, err)
		}
	})
}

// Bounds by offset and by time; a run with wider bounds continues where
// the narrower one stopped, without gaps or duplicates.
func TestExportBoundsAndResume(t *testing.T) {
	src, dst := tier.NewMemStore(), tier.NewMemStore()
	recs := seedEvents(t, src, 2, 1000)
	e := newExporter(t, testConfig(src, dst))
	ctx := context.Background()
	res, err := e.Export(ctx, "events", Bounds{Partitions: []int32{0}, FromOffset: map[int32]int64{0: 100}, ToOffset: map[int32]int64{0: 400}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Partitions) != 1 || res.Partitions[0].Records != 300 {
		t.Fatalf("offset bounds 100-400 of partition 0: %+v", res.Partitions)
	}
	m := loadManifest(t, dst, ManifestKey("", "events", testID, 0))
	if m.Ranges[0].First != 100 || m.Ranges[len(m.Ranges)-1].Last != 399 {
		t.Fatalf("ranges %+v", m.Ranges)
	}
	// By time: the second half of partition 1 (from midnight on).
	res, err = e.Export(ctx, "events", Bounds{Partitions: []int32{1}, FromTime: time.UnixMilli(midnight)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Partitions[0]; got.From != 500 || got.Records != 500 {
		t.Fatalf("from midnight: %+v, want from 500, 500 records", got)
	}
	// Everything: fills the gaps (0-99, 400-999 of partition 0; 0-499 of 1).
	res, err = e.Export(ctx, "events", Bounds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _, _ := res.Totals(); n != 2000-300-500 {
		t.Fatalf("the full run exported %d records, want %d", n, 2000-300-500)
	}
	checkExactlyOnce(t, dst, "", "events", testID, want(recs))

	// Newly sealed records are exported by the next run, and only they.
	more := genRecords(0, 1200, midnight-500*100, 100)[1000:]
	all := append(slices.Clone(recs[0]), more...)
	seal(t, src, meta.StorageName("events", testID), 0, all, 300, 2<<10, 0)
	res, err = e.Export(ctx, "events", Bounds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _, _ := res.Totals(); n != 200 {
		t.Fatalf("after 200 more were sealed the run exported %d", n)
	}
	checkExactlyOnce(t, dst, "", "events", testID, map[int32]int64{0: 1200, 1: 1000})
}

// A run killed after its file's PUT and before the commit leaves a claim
// and a file; the next run finishes exactly that claim (adopting the file)
// and goes on: no duplicate, no gap.
func TestExportKilledBetweenPutAndCommit(t *testing.T) {
	src := tier.NewMemStore()
	recs := seedEvents(t, src, 1, 3000)
	fault := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{})
	var puts atomic.Int64
	dst := &hookStore{Store: fault}
	dst.after = func(op tier.Op, key string) {
		if strings.HasSuffix(key, ".parquet") && puts.Add(1) == 3 {
			fault.SetDown(true) // the process "dies": nothing after this PUT reaches the store
		}
	}
	e := newExporter(t, testConfig(src, dst))
	_, err := e.Export(context.Background(), "events", Bounds{}, nil)
	if err == nil {
		t.Fatal("the export succeeded with the store down")
	}
	fault.SetDown(false)
	dst.after = nil
	m := loadManifest(t, fault, ManifestKey("", "events", testID, 0))
	if m.Pending == nil || len(m.Ranges) != 2 {
		t.Fatalf("after the kill: %d ranges, pending %+v; want 2 and a claim", len(m.Ranges), m.Pending)
	}
	if _, err := fault.Stat(context.Background(), m.Pending.Key); err != nil {
		t.Fatalf("the claimed file should be stored: %v", err)
	}
	// The claim without its commit is invisible to nobody: the file is
	// whole. A new exporter (a new process) resumes.
	e2 := newExporter(t, testConfig(src, fault))
	res, err := e2.Export(context.Background(), "events", Bounds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Partitions[0].Adopted != 1 {
		t.Fatalf("the resumed run adopted %d files, want the 1 stored before the kill", res.Partitions[0].Adopted)
	}
	checkExactlyOnce(t, fault, "", "events", testID, want(recs))
}

// A run killed after its claim and before any file: the next run writes
// exactly the claimed range to the claimed key.
func TestExportKilledAfterClaim(t *testing.T) {
	src := tier.NewMemStore()
	recs := seedEvents(t, src, 1, 2000)
	dst := &hookStore{Store: tier.NewMemStore()}
	dst.before = func(op tier.Op, key string) error {
		if strings.HasSuffix(key, ".parquet") {
			return errors.New("killed")
		}
		return nil
	}
	e := newExporter(t, testConfig(src, dst))
	if _, err := e.Export(context.Background(), "events", Bounds{}, nil); err == nil {
		t.Fatal("no error")
	}
	claim := loadManifest(t, dst, ManifestKey("", "events", testID, 0)).Pending
	if claim == nil {
		t.Fatal("no claim left")
	}
	if keys := parquetKeys(t, dst, ""); len(keys) != 0 {
		t.Fatalf("files stored: %v", keys)
	}
	dst.before = nil
	cfg := testConfig(src, dst)
	cfg.FileBytes = 1 << 20 // another exporter with other sizes still writes the claim as claimed
	e2 := newExporter(t, cfg)
	if _, err := e2.Export(context.Background(), "events", Bounds{}, nil); err != nil {
		t.Fatal(err)
	}
	m := loadManifest(t, dst, ManifestKey("", "events", testID, 0))
	if r := m.Ranges[0]; r.Claim != claim.ID || r.Key != claim.Key || r.First != claim.First || r.Last != claim.Last {
		t.Fatalf("first range %+v, want the claim %+v", r, claim)
	}
	checkExactlyOnce(t, dst, "", "events", testID, want(recs))
}

// Lost responses and 503s on every kind of write and read of the target:
// the export still completes exactly once.
func TestExportUnderFaults(t *testing.T) {
	for seed := range uint64(4) {
		src := tier.NewMemStore()
		recs := seedEvents(t, src, 1, 1500)
		dst := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{Seed: seed, ErrorRate: 0.1, LostResponseRate: 0.3})
		cfg := testConfig(src, dst)
		cfg.Retry = tier.Backoff{Attempts: 8, Base: time.Millisecond, Max: 2 * time.Millisecond}
		e := newExporter(t, cfg)
		var err error
		for range 20 { // a run may give up on a fault; the next continues
			if _, err = e.Export(context.Background(), "events", Bounds{}, nil); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if dst.Stats().LostResponses == 0 {
			t.Fatalf("seed %d: no lost response injected", seed)
		}
		checkExactlyOnce(t, dst.Inner(), "", "events", testID, want(recs))
	}
}

// Two exporters racing on one partition: every range is committed once
// (the commits the two count add up to the manifest's ranges), no file
// overlaps another, and together they export everything.
func TestExportRace(t *testing.T) {
	src, dst := tier.NewMemStore(), tier.NewMemStore()
	recs := seedEvents(t, src, 1, 4000)
	var (
		wg      sync.WaitGroup
		results [2]*Result
		errs    [2]error
	)
	for i := range 2 {
		e := newExporter(t, testConfig(src, dst))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.Export(context.Background(), "events", Bounds{}, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("exporter %d: %v", i, err)
		}
	}
	files := checkExactlyOnce(t, dst, "", "events", testID, want(recs))
	a, _, _, _ := results[0].Totals()
	b, _, _, _ := results[1].Totals()
	if a+b != len(files) {
		t.Fatalf("the exporters committed %d + %d ranges; the manifest has %d", a, b, len(files))
	}
}

// With TakeOverAfter, another exporter's fresh claim is left to it (the
// partition is busy); an old one is finished.
func TestExportTakeOverAfter(t *testing.T) {
	src := tier.NewMemStore()
	recs := seedEvents(t, src, 1, 1000)
	dst := &hookStore{Store: tier.NewMemStore()}
	dst.before = func(op tier.Op, key string) error {
		if strings.HasSuffix(key, ".parquet") {
			return errors.New("killed")
		}
		return nil
	}
	now := time.Now()
	cfg := testConfig(src, dst)
	cfg.Now = func() time.Time { return now }
	e := newExporter(t, cfg)
	e.Export(context.Background(), "events", Bounds{}, nil) // leaves a claim
	dst.before = nil
	cfg2 := testConfig(src, dst)
	cfg2.TakeOverAfter = time.Minute
	cfg2.Now = func() time.Time { return now.Add(30 * time.Second) }
	e2 := newExporter(t, cfg2)
	res, err := e2.Export(context.Background(), "events", Bounds{}, nil)
	if !errors.Is(err, ErrBusy) || !res.Partitions[0].Busy {
		t.Fatalf("a 30 s old claim with TakeOverAfter 1m: %v, %+v", err, res)
	}
	cfg2.Now = func() time.Time { return now.Add(2 * time.Minute) }
	e3 := newExporter(t, cfg2)
	if _, err := e3.Export(context.Background(), "events", Bounds{}, nil); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dst, "", "events", testID, want(recs))
}

// Retention deleted a claimed range's segments before its file was
// stored: the claim is committed as lost (never exported, never claimed
// again), and the run goes on from the log start.
func TestExportClaimLostToRetention(t *testing.T) {
	src := tier.NewMemStore()
	recs := seedEvents(t, src, 1, 1500)
	dst := &hookStore{Store: tier.NewMemStore()}
	dst.before = func(op tier.Op, key string) error {
		if strings.HasSuffix(key, ".parquet") {
			return errors.New("killed")
		}
		return nil
	}
	e := newExporter(t, testConfig(src, dst))
	e.Export(context.Background(), "events", Bounds{}, nil)
	claim := loadManifest(t, dst, ManifestKey("", "events", testID, 0)).Pending
	if claim == nil || claim.First != 0 {
		t.Fatalf("claim %+v", claim)
	}
	dst.before = nil
	// Retention drops the first segment (records 0-299).
	storage := meta.StorageName("events", testID)
	ms := meta.NewManifestStore(src, storage, 0)
	m, etag, err := ms.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gone := m.Segments[0]
	m.Segments, m.LogStartOffset, m.Generation = m.Segments[1:], gone.LastOffset+1, m.Generation+1
	if _, err := ms.Update(context.Background(), etag, m); err != nil {
		t.Fatal(err)
	}
	src.Delete(context.Background(), gone.Key)
	e2 := newExporter(t, testConfig(src, dst))
	res, err := e2.Export(context.Background(), "events", Bounds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Partitions[0]
	resume := max(claim.Last+1, gone.LastOffset+1) // after the lost claim, from the new log start
	if got.Lost != claim.Last-claim.First+1 || got.Skipped != resume-claim.Last-1 {
		t.Fatalf("lost %d (want %d), skipped %d (want %d)", got.Lost, claim.Last-claim.First+1, got.Skipped, resume-claim.Last-1)
	}
	final := loadManifest(t, dst, ManifestKey("", "events", testID, 0))
	if final.Ranges[0].Lost == "" || final.Ranges[0].Key != "" {
		t.Fatalf("the first range should be lost: %+v", final.Ranges[0])
	}
	if got.Records != int64(len(recs[0]))-resume {
		t.Fatalf("exported %d records, want everything from the new log start", got.Records)
	}
}

// A topic with a JSON value schema is exported with its typed layout
// (core.TopicLayout): one column per field, and the misfit report of each
// range in the manifest. A json topic without a schema gets one inferred
// from its sealed records and stored in its config; one with nothing
// sealed has nothing to export, and that is not an error.
func TestExportTypedLayout(t *testing.T) {
	src, dst := tier.NewMemStore(), tier.NewMemStore()
	schema := json.RawMessage(`{"fields":[{"name":"user","type":"string"},{"name":"n","type":"int64"},{"name":"pad","type":"string"}]}`)
	writeTopic(t, src, "typed", testID, 1, map[string]any{"value_format": "json", "value_schema": schema})
	recs := genRecords(0, 500, midnight+1000, 10)
	for i := range recs {
		if i == 7 || i == 300 {
			recs[i].Value = []byte(`not json`)
		}
	}
	seal(t, src, meta.StorageName("typed", testID), 0, recs, 200, 2<<10, 0)
	e := newExporter(t, testConfig(src, dst))
	if _, err := e.Export(context.Background(), "typed", Bounds{}, nil); err != nil {
		t.Fatal(err)
	}
	// Tombstones (nil values, every 11th from 5) do not fit an object
	// schema either. Each range reports its count and first offsets.
	misfit := func(i int) bool { return recs[i].Value == nil || i == 7 || i == 300 }
	m := loadManifest(t, dst, ManifestKey("", "typed", testID, 0))
	var rows int64
	for _, r := range m.Ranges {
		var wantOffs []int64
		for o := r.First; o <= r.Last; o++ {
			if misfit(int(o)) {
				wantOffs = append(wantOffs, o)
			}
		}
		if r.Misfits != int64(len(wantOffs)) || !slices.Equal(r.MisfitOffsets, wantOffs[:min(len(wantOffs), columnar.MaxReportedOffsets)]) {
			t.Fatalf("range %d-%d reports %d misfits at %v, want %d at %v", r.First, r.Last, r.Misfits, r.MisfitOffsets, len(wantOffs), wantOffs)
		}
		rows += r.Rows
	}
	if rows != int64(len(recs)) {
		t.Fatalf("%d rows committed, want %d", rows, len(recs))
	}
	tbl := readTable(t, dst, parquetKeys(t, dst, "")[0])
	for _, col := range []string{"user", "n", "pad", "_invalid", "_raw"} {
		if len(tbl.Schema().FieldIndices(col)) != 1 {
			t.Fatalf("no typed column %q in %s", col, tbl.Schema())
		}
	}
	if len(tbl.Schema().FieldIndices("value")) != 0 {
		t.Fatalf("a typed file has the value blob: %s", tbl.Schema())
	}

	// Inferred: no schema in the config; after the export one is stored.
	writeTopic(t, src, "inferred", testID, 1, map[string]any{"value_format": "json"})
	e2 := newExporter(t, testConfig(src, dst))
	if res, err := e2.Export(context.Background(), "inferred", Bounds{}, nil); err != nil || len(res.Partitions) != 1 || res.Partitions[0].Files != 0 {
		t.Fatalf("a json topic with nothing sealed: %+v, %v; want nothing exported and no error", res, err)
	}
	good := genRecords(0, 300, midnight, 10)
	for i := range good {
		good[i].Value = fmt.Appendf(nil, `{"user":"u-%d","n":%d}`, i%7, i)
	}
	seal(t, src, meta.StorageName("inferred", testID), 0, good, 100, 2<<10, 0)
	if _, err := e2.Export(context.Background(), "inferred", Bounds{}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := core.ReadTopicConfig(context.Background(), src, "inferred")
	if err != nil || len(cfg.ValueSchema) == 0 {
		t.Fatalf("no schema stored after the export inferred one: %+v, %v", cfg, err)
	}
	for _, k := range parquetKeys(t, dst, "topic=inferred/") {
		if tbl := readTable(t, dst, k); len(tbl.Schema().FieldIndices("n")) != 1 {
			t.Fatalf("%s has no inferred column n: %s", k, tbl.Schema())
		}
	}
}

// Continuous mode: a round exports the topics marked export=parquet (and
// only the partitions owns accepts), and the next round only what was
// sealed since; the Loop stops at Close.
func TestExportMarked(t *testing.T) {
	src, dst := tier.NewMemStore(), tier.NewMemStore()
	writeTopic(t, src, "marked", testID, 2, map[string]any{"export": "parquet"})
	writeTopic(t, src, "plain", "", 1, nil)
	for p := range int32(2) {
		seal(t, src, meta.StorageName("marked", testID), p, genRecords(p, 600, midnight, 10), 200, 2<<10, 0)
	}
	seal(t, src, "plain", 0, genRecords(0, 100, midnight, 10), 200, 2<<10, 0)
	e := newExporter(t, testConfig(src, dst))
	rr, err := e.ExportMarked(context.Background(), func(tp *Topic, p int32) bool { return p == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if rr.Topics != 1 || len(rr.Results) != 1 || rr.Results[0].Topic != "marked" {
		t.Fatalf("round: %+v", rr)
	}
	for _, k := range parquetKeys(t, dst, "") {
		if !strings.Contains(k, "topic=marked/") || !strings.Contains(k, "/partition=1/") {
			t.Fatalf("exported %s: only partition 1 of marked is owned", k)
		}
	}
	l := e.StartLoop(LoopConfig{Interval: time.Hour}) // its first round runs at once
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := dst.Stat(context.Background(), ManifestKey("", "marked", testID, 0)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop's first round exported nothing of partition 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.Close()
	l.Close()
	if _, err := e.ExportMarked(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dst, "", "marked", testID, map[int32]int64{0: 600, 1: 600})
}

// Two exporters on one claim: A claims a range and is held just before
// its file's PUT; B finds A's pending claim, writes the same range to the
// same key and commits it. Then A goes on: its PUT finds the key taken by
// a file of its own claim, its commit loses the CAS, and it continues from
// the manifest. The range is committed once, by B, from A's claim.
func TestExportRaceOnOneClaim(t *testing.T) {
	src, mem := tier.NewMemStore(), tier.NewMemStore()
	recs := seedEvents(t, src, 1, 2000)
	aPaused, bCommitted := make(chan struct{}), make(chan struct{})
	var aHeld, bPut atomic.Bool
	var once sync.Once
	aStore := &hookStore{Store: mem, before: func(op tier.Op, key string) error {
		if op == tier.OpPutIfAbsent && strings.HasSuffix(key, ".parquet") && aHeld.CompareAndSwap(false, true) {
			close(aPaused)
			<-bCommitted
		}
		return nil
	}}
	bStore := &hookStore{Store: mem, after: func(op tier.Op, key string) {
		if strings.HasSuffix(key, ".parquet") {
			bPut.Store(true)
		} else if op == tier.OpPutIfMatch && bPut.Load() {
			once.Do(func() { close(bCommitted) })
		}
	}}
	a, b := newExporter(t, testConfig(src, aStore)), newExporter(t, testConfig(src, bStore))
	var (
		aRes *Result
		aErr error
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		aRes, aErr = a.Export(context.Background(), "events", Bounds{}, nil)
	}()
	<-aPaused
	claim := loadManifest(t, mem, ManifestKey("", "events", testID, 0)).Pending
	if claim == nil || claim.By != a.id {
		t.Fatalf("A's claim is not pending: %+v", claim)
	}
	bRes, bErr := b.Export(context.Background(), "events", Bounds{}, nil)
	wg.Wait()
	if aErr != nil || bErr != nil {
		t.Fatalf("A: %v; B: %v", aErr, bErr)
	}
	files := checkExactlyOnce(t, mem, "", "events", testID, want(recs))
	first := loadManifest(t, mem, ManifestKey("", "events", testID, 0)).Ranges[0]
	if first.Claim != claim.ID || first.Key != claim.Key {
		t.Fatalf("the first range %+v is not A's claim %+v", first, claim)
	}
	na, _, _, _ := aRes.Totals()
	nb, _, _, _ := bRes.Totals()
	if na+nb != len(files) {
		t.Fatalf("A committed %d and B %d ranges; the manifest has %d", na, nb, len(files))
	}
}
