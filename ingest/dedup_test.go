package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

const testMsgID = "msg-id"

func dedupConfig(cfg ingest.PartitionConfig, clk *fakeClock) ingest.PartitionConfig {
	cfg.DedupWindow, cfg.DedupHeader = time.Minute, testMsgID
	if clk != nil {
		cfg.Clock = clk.Now
	}
	return cfg
}

// rec is a record with message id id ("" for none).
func rec(id, val string) segment.Record {
	r := segment.Record{Timestamp: 1000, Value: []byte(val)}
	if id != "" {
		r.Headers = []segment.Header{{Key: testMsgID, Value: []byte(id)}}
	}
	return r
}

func batchOf(rs ...segment.Record) *segment.Batch {
	return &segment.Batch{ProducerID: segment.NoProducer, Records: rs}
}

// offsetsOf is each record's offset in res.
func offsetsOf(res ingest.AppendResult, n int) []int64 {
	if res.Offsets != nil {
		return res.Offsets
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = res.Base + int64(i)
	}
	return out
}

func mustWrite(t *testing.T, p *ingest.Partition, b *segment.Batch) ingest.AppendResult {
	t.Helper()
	res, err := p.Write(context.Background(), b)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return res
}

// A record whose message id was stored within the window is answered with
// the stored copy's offset and not stored again, also when it repeats an
// id earlier in its own batch; the rest of the batch is stored; after the
// window the id is stored again.
func TestDedupSameIDTwice(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := storetest.File(t)
	p, err := openPartition(t, context.Background(), dedupConfig(testConfig(t, s, t.TempDir(), clk), clk))
	if err != nil {
		t.Fatal(err)
	}
	if r := mustWrite(t, p, batchOf(rec("a", "a1"))); r.Base != 0 || r.Offsets != nil {
		t.Fatalf("first copy: %+v, want offset 0, no duplicate", r)
	}
	clk.Add(30 * time.Second)
	r := mustWrite(t, p, batchOf(rec("a", "a2"), rec("b", "b1"), rec("", "plain"), rec("b", "b2")))
	if got := offsetsOf(r, 4); !slices.Equal(got, []int64{0, 1, 2, 1}) || !slices.Equal(r.Deduplicated, []bool{true, false, false, true}) {
		t.Fatalf("second batch: offsets %v deduplicated %v; want [0 1 2 1] [true false false true]", got, r.Deduplicated)
	}
	if r.End != 3 || p.NextOffset() != 3 {
		t.Fatalf("end %d, log ends at %d; want 3 (two records stored)", r.End, p.NextOffset())
	}
	// A batch of duplicates only stores nothing.
	r = mustWrite(t, p, batchOf(rec("b", "b3")))
	if got := offsetsOf(r, 1); got[0] != 1 || !r.Deduplicated[0] || r.End != 2 || p.NextOffset() != 3 {
		t.Fatalf("all duplicates: %+v (log ends at %d); want offset 1, end 2, nothing stored", r, p.NextOffset())
	}
	// 61 s after "a" was stored (31 s after "b"): "a" is stored again.
	clk.Add(31 * time.Second)
	r = mustWrite(t, p, batchOf(rec("a", "a3"), rec("b", "b4")))
	if got := offsetsOf(r, 2); !slices.Equal(got, []int64{3, 1}) || p.NextOffset() != 4 {
		t.Fatalf("after a's window: offsets %v, log ends at %d; want [3 1], 4", got, p.NextOffset())
	}
	if got := readValues(t, p, s); !slices.Equal(got, []string{"a1", "b1", "plain", "a3"}) {
		t.Fatalf("stored %q", got)
	}
}

// Of N concurrent writes of one message id exactly one is stored, and
// every write is answered with its offset.
func TestDedupConcurrentWritesStoreOne(t *testing.T) {
	p, err := openPartition(t, context.Background(), dedupConfig(testConfig(t, storetest.File(t), t.TempDir(), nil), nil))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 16
	offs := make([]int64, writers)
	dups := make([]bool, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Write(context.Background(), batchOf(rec("same", fmt.Sprint(i))))
			offs[i], dups[i], errs[i] = offsetsOf(res, 1)[0], res.Deduplicated != nil && res.Deduplicated[0], err
		}()
	}
	wg.Wait()
	stored := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if offs[i] != 0 {
			t.Fatalf("writer %d answered with offset %d, want 0", i, offs[i])
		}
		if !dups[i] {
			stored++
		}
	}
	if stored != 1 || p.NextOffset() != 1 {
		t.Fatalf("%d writers were told they stored, log ends at %d; want exactly one stored copy", stored, p.NextOffset())
	}
}

// At most DedupMaxIDs ids are remembered, the oldest dropped first.
func TestDedupBoundedMemory(t *testing.T) {
	cfg := dedupConfig(testConfig(t, storetest.File(t), t.TempDir(), nil), nil)
	cfg.DedupMaxIDs = 10
	p, err := openPartition(t, context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		mustWrite(t, p, batchOf(rec(fmt.Sprint("id-", i), "v")))
	}
	// The newest 10 (15-24) are remembered; 14 and older were dropped.
	if r := mustWrite(t, p, batchOf(rec("id-15", "v"), rec("id-24", "v"))); r.Offsets == nil || !r.Deduplicated[0] || !r.Deduplicated[1] {
		t.Fatalf("the newest ids: %+v, want both deduplicated", r)
	}
	if r := mustWrite(t, p, batchOf(rec("id-14", "v"))); r.Offsets != nil || r.Base != 25 {
		t.Fatalf("an id past the bound: %+v, want it stored again at 25", r)
	}
	// Storing id-14 dropped the oldest remembered, id-15.
	if r := mustWrite(t, p, batchOf(rec("id-15", "v"))); r.Offsets != nil || r.Base != 26 {
		t.Fatalf("the oldest id after one more: %+v, want it stored again at 26", r)
	}
}

// A message id over 256 bytes (or empty) fails the whole batch.
func TestDedupInvalidMsgIDRefused(t *testing.T) {
	p, err := openPartition(t, context.Background(), dedupConfig(testConfig(t, storetest.File(t), t.TempDir(), nil), nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{strings.Repeat("x", ingest.MaxMsgIDBytes+1)} {
		_, err := p.Write(context.Background(), batchOf(rec("ok", "v"), rec(id, "v")))
		if !errors.Is(err, ingest.ErrInvalidMsgID) || !strings.Contains(err.Error(), "record 1") {
			t.Fatalf("id of %d bytes: %v, want ErrInvalidMsgID naming record 1", len(id), err)
		}
	}
	empty := batchOf(segment.Record{Headers: []segment.Header{{Key: testMsgID}}})
	if _, err := p.Write(context.Background(), empty); !errors.Is(err, ingest.ErrInvalidMsgID) {
		t.Fatalf("empty id: %v, want ErrInvalidMsgID", err)
	}
	if p.NextOffset() != 0 {
		t.Fatalf("log ends at %d, want nothing stored", p.NextOffset())
	}
	if r := mustWrite(t, p, batchOf(rec(strings.Repeat("x", ingest.MaxMsgIDBytes), "v"))); r.Base != 0 {
		t.Fatalf("an id of exactly 256 bytes: %+v", r)
	}
}

// The dedup set survives a restart and a takeover by a broker that lost
// the disk: rebuilt from the WAL tail the dead owner left, from the
// sealed segments in the bucket, and from the local log; a rebuilt id is
// forgotten after the window.
func TestDedupSurvivesRestartAndDiskLoss(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		clk := &fakeClock{now: time.Now()}
		a := newWALBroker(t, s, "a")
		pa, err := openPartition(t, ctx, dedupConfig(walConfig(t, s, t.TempDir(), a), clk))
		if err != nil {
			t.Fatal(err)
		}
		write(t, pa, batchOf(rec("", "x0"), rec("a", "a1"), rec("b", "b1"))) // 0-2, durable in a's WAL only
		// Broker a dies with its disk; b takes over on an empty one.
		b := newWALBroker(t, s, "b")
		pb, err := openPartition(t, ctx, dedupConfig(walConfig(t, s, t.TempDir(), b), clk))
		if err != nil {
			t.Fatal(err)
		}
		r := write(t, pb, batchOf(rec("b", "b2"), rec("c", "c1"), rec("a", "a2")))
		if got := offsetsOf(r, 3); !slices.Equal(got, []int64{2, 3, 1}) || pb.NextOffset() != 4 {
			t.Fatalf("after a takeover with the disk lost: offsets %v, log ends at %d; want [2 3 1], 4", got, pb.NextOffset())
		}
		// A graceful restart (everything sealed) on yet another empty
		// disk reads the ids back from the bucket's segments.
		clk.Add(20 * time.Second)
		if err := pb.Close(ctx); err != nil {
			t.Fatal(err)
		}
		c := newWALBroker(t, s, "c")
		cfg := dedupConfig(walConfig(t, s, t.TempDir(), c), clk)
		pc, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := pc.Manifest(ctx)
		if len(m.Segments) == 0 || m.Segments[len(m.Segments)-1].MsgIDs != 1 {
			t.Fatalf("segments %+v; want the last one to count its 1 message id", m.Segments)
		}
		r = write(t, pc, batchOf(rec("a", "a3"), rec("c", "c2")))
		if got := offsetsOf(r, 2); !slices.Equal(got, []int64{1, 3}) || pc.NextOffset() != 4 {
			t.Fatalf("after a restart on an empty disk: offsets %v, log ends at %d; want [1 3], 4", got, pc.NextOffset())
		}
		// A crash and restart with the disk rebuilds from the local log
		// what is only there and in c's WAL (d, at 4).
		if r := write(t, pc, batchOf(rec("d", "d1"))); r.Base != 4 {
			t.Fatalf("d stored at %d, want 4", r.Base)
		}
		pc.Abandon()
		pd, err := openPartition(t, ctx, dedupConfig(walConfig(t, s, cfg.Dir, newWALBroker(t, s, "d")), clk))
		if err != nil {
			t.Fatal(err)
		}
		if r := write(t, pd, batchOf(rec("d", "d2"))); offsetsOf(r, 1)[0] != 4 || pd.NextOffset() != 5 {
			t.Fatalf("after a restart with the disk: %+v, log ends at %d; want d deduplicated at 4", r, pd.NextOffset())
		}
		// Past the window (from the latest seal) every id is new again.
		clk.Add(61 * time.Second)
		r = write(t, pd, batchOf(rec("a", "a4"), rec("c", "c3"), rec("d", "d3")))
		if r.Offsets != nil || r.Base != 5 || pd.NextOffset() != 8 {
			t.Fatalf("past the window: %+v, log ends at %d; want all three stored at 5-7", r, pd.NextOffset())
		}
		pd.Close(ctx)
	})
}

// With an idempotent producer, a batch stored without its duplicates
// keeps the producer's sequence: its next batch follows, a retry of it is
// answered with the first answer's offsets, also after a takeover that
// rebuilt the state from the log.
func TestDedupIdempotentBatches(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	a := newWALBroker(t, s, "a")
	pa, err := openPartition(t, ctx, dedupConfig(walConfig(t, s, t.TempDir(), a), nil))
	if err != nil {
		t.Fatal(err)
	}
	idem := func(seq int32, rs ...segment.Record) *segment.Batch {
		return &segment.Batch{ProducerID: 7, BaseSequence: seq, Records: rs}
	}
	check := func(what string, p *ingest.Partition, b *segment.Batch, dup bool, offs []int64, dedup []bool) {
		t.Helper()
		bc := *b
		bc.Records = slices.Clone(b.Records)
		r := write(t, p, &bc)
		if got := offsetsOf(r, len(b.Records)); r.Duplicate != dup || !slices.Equal(got, offs) || !slices.Equal(r.Deduplicated, dedup) {
			t.Fatalf("%s: %+v; want duplicate=%v, offsets %v, deduplicated %v", what, r, dup, offs, dedup)
		}
	}
	check("first", pa, idem(0, rec("a", "a1")), false, []int64{0}, nil)
	second := idem(1, rec("a", "a2"), rec("", "x"), rec("b", "b1"))
	check("with a duplicate", pa, second, false, []int64{0, 1, 2}, []bool{true, false, false})
	check("its retry", pa, second, true, []int64{0, 1, 2}, []bool{true, false, false})
	onlyDups := idem(4, rec("b", "b2"))
	check("duplicates only", pa, onlyDups, false, []int64{2}, []bool{true})
	check("its retry", pa, onlyDups, true, []int64{2}, []bool{true})
	check("the next batch", pa, idem(5, rec("c", "c1")), false, []int64{3}, nil)
	// Broker a dies with its disk; b rebuilds from a's WAL.
	pb, err := openPartition(t, ctx, dedupConfig(walConfig(t, s, t.TempDir(), newWALBroker(t, s, "b")), nil))
	if err != nil {
		t.Fatal(err)
	}
	check("a retry after the takeover", pb, second, true, []int64{0, 1, 2}, []bool{true, false, false})
	check("the last batch's retry", pb, idem(5, rec("c", "c1")), true, []int64{3}, nil)
	check("the next batch after the takeover", pb, idem(6, rec("", "y")), false, []int64{4}, nil)
	if got := readValues(t, pb, s); !slices.Equal(got, []string{"a1", "x", "b1", "c1", "y"}) {
		t.Fatalf("stored %q", got)
	}
	pb.Close(ctx)
}
