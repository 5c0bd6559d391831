package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// broker is one broker incarnation's WAL for tests.
type walBroker struct {
	w *wal.Writer
	r *wal.Reader
}

func newWALBroker(t *testing.T, s tier.Store, inc string) walBroker {
	t.Helper()
	w, err := wal.NewWriter(wal.Config{Store: s, Incarnation: inc, FlushInterval: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return walBroker{w: w, r: wal.NewReader(s, inc, nil)}
}

func walConfig(t *testing.T, s tier.Store, dir string, b walBroker) ingest.PartitionConfig {
	cfg := testConfig(t, s, dir, nil)
	cfg.Fsync = ingest.FsyncInterval
	cfg.WAL, cfg.WALReader = b.w, b.r
	cfg.SealOnClose = false
	return cfg
}

func idemBatch(pid int64, seq int32, n int, tag string) *segment.Batch {
	b := &segment.Batch{ProducerID: pid, BaseSequence: seq}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, segment.Record{Timestamp: 1000, Value: fmt.Appendf(nil, "%s-%d", tag, int(seq)+i)})
	}
	return b
}

// write appends and waits until the batch is durable; it returns the
// result.
func write(t *testing.T, p *ingest.Partition, b *segment.Batch) ingest.AppendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Write(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitDurable(ctx, res.End); err != nil {
		t.Fatal(err)
	}
	return res
}

// readValues reads every record of the partition as a broker's reader
// does: hot view first, sealed segments below it.
func readValues(t *testing.T, p *ingest.Partition, s tier.Store) []string {
	t.Helper()
	cache, err := fetch.NewCache(fetch.DefaultCacheConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	r := fetch.NewPartitionReader(cache, s, p, p.Hot())
	var out []string
	for off := int64(0); off < p.HighWatermark(); {
		res, err := r.Read(context.Background(), off, 1<<20)
		if err != nil || len(res.Records) == 0 {
			t.Fatalf("read at %d: %v", off, err)
		}
		for _, rec := range res.Records {
			out = append(out, string(rec.Value))
		}
		off = res.NextOffset
	}
	return out
}

// A broker that dies and loses its disk loses no durable record: the next
// owner, on an empty disk, recovers the tail from the dead broker's WAL
// objects, continues at the right offset, recognizes retried batches, and
// the dead broker is fenced.
func TestWALRecoveryAfterDiskLoss(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		a := newWALBroker(t, s, "a")
		pa, err := openPartition(t, ctx, walConfig(t, s, t.TempDir(), a))
		if err != nil {
			t.Fatal(err)
		}
		var last ingest.AppendResult
		for i := int32(0); i < 5; i++ {
			last = write(t, pa, idemBatch(7, i*10, 10, "p7"))
		}
		if pa.HighWatermark() != 50 || last.Base != 40 {
			t.Fatalf("hw %d, last base %d", pa.HighWatermark(), last.Base)
		}
		// Broker a dies with its disk: pa is never closed, its dir is gone.
		b := newWALBroker(t, s, "b")
		pb, err := openPartition(t, ctx, walConfig(t, s, t.TempDir(), b))
		if err != nil {
			t.Fatal(err)
		}
		if pb.NextOffset() != 50 || pb.HighWatermark() != 50 {
			t.Fatalf("new owner continues at %d (hw %d), want 50", pb.NextOffset(), pb.HighWatermark())
		}
		m, _ := pb.Manifest(ctx)
		if m.NextOffset() != 50 || len(m.WALOwners) != 0 || m.Owner != "b" {
			t.Fatalf("after recovery the manifest is sealed to %d with owners %q/%v; want 50, owner b, no earlier owners", m.NextOffset(), m.Owner, m.WALOwners)
		}
		got := readValues(t, pb, s)
		if len(got) != 50 || got[0] != "p7-0" || got[49] != "p7-49" {
			t.Fatalf("recovered %d records (%v...), want p7-0..p7-49", len(got), got[:min(3, len(got))])
		}
		// A retry of the last batch (its ack was lost) is stored once.
		dup := write(t, pb, idemBatch(7, 40, 10, "p7"))
		if !dup.Duplicate || dup.Base != 40 || pb.NextOffset() != 50 {
			t.Fatalf("retry after takeover: %+v, next %d; want a duplicate at 40", dup, pb.NextOffset())
		}
		// The next batch continues the sequence; a gap is refused.
		if r := write(t, pb, idemBatch(7, 50, 5, "p7")); r.Base != 50 {
			t.Fatalf("next batch at %d, want 50", r.Base)
		}
		if _, err := pb.Write(ctx, idemBatch(7, 70, 1, "p7")); !errors.Is(err, ingest.ErrOutOfOrderSequence) {
			t.Fatalf("sequence gap: %v, want ErrOutOfOrderSequence", err)
		}
		// The dead broker, if it comes back, can never ack again.
		res, err := pa.Write(ctx, idemBatch(8, 0, 1, "zombie"))
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = pa.WaitDurable(wctx, res.End)
			cancel()
		}
		if err == nil {
			t.Fatal("the fenced broker acknowledged a write as durable")
		}
		if !errors.Is(a.w.Err(), wal.ErrFenced) && !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("zombie write failed with %v (writer: %v), want a fence", err, a.w.Err())
		}
		pb.Close(ctx)
	})
}

// Records are visible to readers only once durable: a reader never sees
// a record that a crash could take back.
func TestHighWatermarkIsDurable(t *testing.T) {
	s := tier.NewFaultStore(storetest.File(t), tier.FaultConfig{})
	ctx := context.Background()
	a := newWALBroker(t, s, "a")
	p, err := openPartition(t, ctx, walConfig(t, s, t.TempDir(), a))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	write(t, p, idemBatch(1, 0, 3, "x"))
	s.SetDown(true)
	res, err := p.Write(ctx, idemBatch(1, 3, 3, "x"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if hw := p.HighWatermark(); hw != 3 {
		t.Fatalf("high watermark %d during an outage, want 3 (only the stored records)", hw)
	}
	if bs, _ := p.Hot().Read(0, 1<<20); len(bs) != 1 || len(bs[0].Records) != 3 {
		t.Fatalf("readers see %d batches during an outage, want only the stored one", len(bs))
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if err := p.WaitDurable(wctx, res.End); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable during an outage: %v, want a timeout", err)
	}
	cancel()
	if err := p.WaitLocal(ctx, res.End); err != nil {
		t.Fatalf("local ack during an object-store outage: %v", err)
	}
	s.SetDown(false)
	wctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.WaitDurable(wctx, res.End); err != nil {
		t.Fatalf("after the store healed: %v", err)
	}
	if hw := p.HighWatermark(); hw != 6 {
		t.Fatalf("high watermark %d after heal, want 6", hw)
	}
}

// A locally acked record survives a process crash when the disk is kept,
// even if it never reached the object store.
func TestLocalAckSurvivesRestartWithDisk(t *testing.T) {
	s := tier.NewFaultStore(storetest.File(t), tier.FaultConfig{})
	ctx := context.Background()
	dir := t.TempDir()
	a := newWALBroker(t, s, "a")
	pa, err := openPartition(t, ctx, walConfig(t, s, dir, a))
	if err != nil {
		t.Fatal(err)
	}
	write(t, pa, idemBatch(1, 0, 2, "x"))
	s.SetDown(true)
	res, err := pa.Write(ctx, idemBatch(1, 2, 2, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.WaitLocal(ctx, res.End); err != nil {
		t.Fatal(err)
	}
	// Crash: pa is abandoned without closing; the store comes back.
	s.SetDown(false)
	b := newWALBroker(t, s, "b")
	pb, err := openPartition(t, ctx, walConfig(t, s, dir, b))
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close(ctx)
	if pb.HighWatermark() != 4 {
		t.Fatalf("after restart with the disk: hw %d, want 4 (the locally acked records too)", pb.HighWatermark())
	}
	m, _ := pb.Manifest(ctx)
	if m.NextOffset() != 4 {
		t.Fatalf("recovered local records were not sealed: sealed end %d", m.NextOffset())
	}
}

// Local data written by an owner the partition has had since is stale and
// is dropped, never served: here broker a's disk holds two locally acked
// records that never reached the bucket, broker b took over (without them)
// and wrote its own records at those offsets, and then a restarts on its
// old disk.
func TestStaleLocalDataDropped(t *testing.T) {
	s := storetest.File(t)
	faulty := tier.NewFaultStore(s, tier.FaultConfig{})
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	a := newWALBroker(t, faulty, "a")
	pa, err := openPartition(t, ctx, walConfig(t, faulty, dirA, a))
	if err != nil {
		t.Fatal(err)
	}
	write(t, pa, idemBatch(1, 0, 2, "a"))
	faulty.SetDown(true)
	res, err := pa.Write(ctx, idemBatch(1, 2, 2, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.WaitLocal(ctx, res.End); err != nil {
		t.Fatal(err)
	}
	b := newWALBroker(t, s, "b")
	pb, err := openPartition(t, ctx, walConfig(t, s, dirB, b))
	if err != nil {
		t.Fatal(err)
	}
	write(t, pb, idemBatch(2, 0, 3, "b")) // offsets 2-4, unsealed
	c := newWALBroker(t, s, "c")
	pc, err := openPartition(t, ctx, walConfig(t, s, dirA, c))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	got := readValues(t, pc, s)
	want := []string{"a-0", "a-1", "b-0", "b-1", "b-2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restarts on its stale disk the log is %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dirA, "owner-c")); err != nil {
		t.Fatalf("the directory is not marked as c's: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirA, "owner-a")); !os.IsNotExist(err) {
		t.Fatalf("a's marker is still there: %v", err)
	}
}

// A batch that overtakes an earlier batch of its producer (two requests in
// flight, handled in the other order) waits for it and lands after it; a
// real gap fails after SequenceWait with ErrOutOfOrderSequence and appends
// nothing.
func TestWriteWaitsForOvertakenBatch(t *testing.T) {
	ctx := context.Background()
	s := storetest.File(t)
	b := newWALBroker(t, s, "a")
	cfg := walConfig(t, s, t.TempDir(), b)
	cfg.SequenceWait = 10 * time.Second
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)

	second := make(chan ingest.AppendResult, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := p.Write(ctx, idemBatch(3, 10, 5, "p3"))
		if err != nil {
			errc <- err
			return
		}
		second <- res
	}()
	// Let the second batch arrive first and wait; nothing is appended.
	time.Sleep(100 * time.Millisecond)
	if n := p.NextOffset(); n != 0 {
		t.Fatalf("the overtaking batch was appended before the first one (next offset %d)", n)
	}
	if r := write(t, p, idemBatch(3, 0, 10, "p3")); r.Base != 0 {
		t.Fatalf("first batch at %d, want 0", r.Base)
	}
	select {
	case r := <-second:
		if r.Base != 10 || r.Duplicate {
			t.Fatalf("overtaking batch: %+v, want base 10", r)
		}
		if err := p.WaitDurable(ctx, r.End); err != nil { // its WAL object may be a later one
			t.Fatal(err)
		}
	case err := <-errc:
		t.Fatalf("overtaking batch failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("overtaking batch never landed")
	}
	if got := readValues(t, p, s); len(got) != 15 || got[10] != "p3-10" {
		t.Fatalf("read %v, want p3-0..p3-14 in order", got)
	}

	p.Close(ctx)
	cfg.SequenceWait = 50 * time.Millisecond
	p, err = openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(ctx, idemBatch(3, 20, 1, "p3")); !errors.Is(err, ingest.ErrOutOfOrderSequence) {
		t.Fatalf("a gap that never fills: %v, want ErrOutOfOrderSequence", err)
	}
	if n := p.NextOffset(); n != 15 {
		t.Fatalf("next offset %d after a refused batch, want 15", n)
	}
	if st := b.w.Stats(); st.Buffered != 0 {
		t.Fatalf("refused batch still holds %d buffered WAL bytes", st.Buffered)
	}
}

// Issue 11, defect 2: a's local records past its sealed end never reached
// its WAL; b took over (recovering nothing, so a stayed among the WAL
// owners) and acked other records at those offsets; a restarting on its
// old disk must not trust that disk: b's acked records stay.
func TestStaleLocalDataOfAnEarlierOwnerDropped(t *testing.T) {
	s := storetest.File(t)
	faulty := tier.NewFaultStore(s, tier.FaultConfig{})
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	a := newWALBroker(t, faulty, "a")
	pa, err := openPartition(t, ctx, walConfig(t, faulty, dirA, a))
	if err != nil {
		t.Fatal(err)
	}
	write(t, pa, idemBatch(1, 0, 2, "a"))
	if err := pa.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	faulty.SetDown(true) // a's next records reach only its disk
	res, err := pa.Write(ctx, idemBatch(1, 2, 2, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Local().Sync(); err != nil || res.End != 4 {
		t.Fatalf("local append: end %d, %v", res.End, err)
	}
	b := newWALBroker(t, s, "b")
	pb, err := openPartition(t, ctx, walConfig(t, s, dirB, b))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := pb.Manifest(ctx); len(m.WALOwners) != 1 || m.WALOwners[0] != "a" {
		t.Fatalf("b's manifest WAL owners %v, want [a] (nothing recovered, nothing sealed)", m.WALOwners)
	}
	write(t, pb, idemBatch(2, 0, 3, "b")) // offsets 2-4, durable, unsealed
	a2 := newWALBroker(t, s, "a2")
	pa2, err := openPartition(t, ctx, walConfig(t, s, dirA, a2))
	if err != nil {
		t.Fatal(err)
	}
	defer pa2.Close(ctx)
	got := readValues(t, pa2, s)
	want := []string{"a-0", "a-1", "b-0", "b-1", "b-2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restarts on its old disk the log is %v, want %v", got, want)
	}
}

// A restart on the same disk trusts it when no other broker claimed the
// partition since: records acked with local acks only (never in the WAL)
// survive.
func TestLocalDataOfTheCurrentOwnerTrusted(t *testing.T) {
	s := storetest.File(t)
	faulty := tier.NewFaultStore(s, tier.FaultConfig{})
	ctx := context.Background()
	dir := t.TempDir()
	a := newWALBroker(t, faulty, "a")
	pa, err := openPartition(t, ctx, walConfig(t, faulty, dir, a))
	if err != nil {
		t.Fatal(err)
	}
	write(t, pa, idemBatch(1, 0, 2, "a"))
	faulty.SetDown(true)
	res, err := pa.Write(ctx, idemBatch(1, 2, 2, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Local().Sync(); err != nil || res.End != 4 {
		t.Fatalf("local append: end %d, %v", res.End, err)
	}
	a2 := newWALBroker(t, s, "a2")
	pa2, err := openPartition(t, ctx, walConfig(t, s, dir, a2))
	if err != nil {
		t.Fatal(err)
	}
	defer pa2.Close(ctx)
	got := readValues(t, pa2, s)
	want := []string{"a-0", "a-1", "a-2", "a-3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restarts on its disk the log is %v, want %v", got, want)
	}
}

// Issue 11, defect 4: idempotent-producer state expires by broker time,
// never by the records' own timestamps: a backfill with event times a
// month old keeps its dedup state across a seal and a restart, and a
// retry of any of its in-flight batches is recognized.
func TestProducerStateOfABackfillSurvivesSealAndRestart(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	dir := t.TempDir()
	old := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	batchAt := func(seq int32) *segment.Batch {
		b := idemBatch(7, seq, 2, "backfill")
		for i := range b.Records {
			b.Records[i].Timestamp = old
		}
		return b
	}
	p, err := openPartition(t, ctx, testConfig(t, s, dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	for seq := int32(0); seq < 16; seq += 2 {
		if _, err := p.Write(ctx, batchAt(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil { // seals
		t.Fatal(err)
	}
	p2, err := openPartition(t, ctx, testConfig(t, s, t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close(ctx)
	for seq := int32(0); seq < 16; seq += 2 {
		res, err := p2.Write(ctx, batchAt(seq))
		if err != nil || !res.Duplicate || res.Base != int64(seq) {
			t.Fatalf("retry of batch at sequence %d after a restart: %+v, %v; want a duplicate at offset %d", seq, res, err, seq)
		}
	}
	if n := p2.NextOffset(); n != 16 {
		t.Fatalf("log ends at %d after the retries, want 16", n)
	}
}

// Issue 11, defect 16: under backpressure (the WAL buffer is full because
// the store is down) a retry of a batch already appended is answered as
// the duplicate it is, with its offsets, instead of "write buffer full".
func TestRetryOfStoredBatchUnderBackpressureIsADuplicate(t *testing.T) {
	s := storetest.File(t)
	faulty := tier.NewFaultStore(s, tier.FaultConfig{})
	ctx := context.Background()
	w, err := wal.NewWriter(wal.Config{Store: faulty, Incarnation: "a", FlushInterval: time.Millisecond, FlushBytes: 1000, MaxBufferedBytes: 1000, RetryMax: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		w.Close(cctx)
	}()
	cfg := walConfig(t, faulty, t.TempDir(), walBroker{w: w, r: wal.NewReader(faulty, "a", nil)})
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abandon()
	faulty.SetDown(true)
	first := idemBatch(3, 0, 1, strings.Repeat("x", 900))
	if _, err := p.Write(ctx, first); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Write(wctx, idemBatch(3, 1, 1, strings.Repeat("y", 900))); !errors.Is(err, wal.ErrBackpressure) {
		t.Fatalf("a new batch with the buffer full: %v, want backpressure", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer rcancel()
	res, err := p.Write(rctx, idemBatch(3, 0, 1, strings.Repeat("x", 900)))
	if err != nil || !res.Duplicate || res.Base != 0 {
		t.Fatalf("retry of the appended batch under backpressure: %+v, %v; want a duplicate at offset 0", res, err)
	}
}

// Issue 11, defect 13: a broker taken over while idle must not go on
// acking `local` writes that can never reach the bucket: once its WAL has
// stored nothing within LocalAckLease, a local ack waits for the next WAL
// object, which finds the fence.
func TestFencedIdleOwnerStopsLocalAcks(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	var skew atomic.Int64 // the writer's clock runs ahead of real time by this
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	w, err := wal.NewWriter(wal.Config{Store: s, Incarnation: "a", FlushInterval: time.Millisecond, RetryMax: 10 * time.Millisecond, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	cfg := walConfig(t, s, t.TempDir(), walBroker{w: w, r: wal.NewReader(s, "a", nil)})
	pa, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Abandon()
	write(t, pa, idemBatch(1, 0, 2, "a")) // durable: a WAL object stored now
	res, err := pa.Write(ctx, idemBatch(1, 2, 1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.WaitLocal(ctx, res.End); err != nil {
		t.Fatalf("local ack of a busy owner: %v", err)
	}
	if err := pa.WaitDurable(ctx, res.End); err != nil {
		t.Fatal(err)
	}
	skew.Add(int64(time.Minute)) // a is idle past its lease
	b := newWALBroker(t, s, "b")
	pb, err := openPartition(t, ctx, walConfig(t, s, t.TempDir(), b))
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close(ctx)
	acked := 0
	for i := 0; i < 20; i++ {
		res, err := pa.Write(ctx, idemBatch(1, int32(3+i), 1, "a"))
		if err != nil {
			continue
		}
		if err := pa.WaitLocal(ctx, res.End); err == nil {
			acked++
		}
	}
	if acked > 0 {
		t.Fatalf("the fenced owner acked %d of 20 local writes that can never be stored", acked)
	}
}

// flipByte flips one byte in the middle of a file.
func flipByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func localFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no local files in %s: %v", dir, err)
	}
	return names
}

// Issue 11, defect 12: damaged local data never makes a partition
// unopenable. Damage in sealed data is dropped and read from the bucket;
// damage in unsealed, durable data is cut at the last good frame and
// refilled from the WAL; the open claims only once it can serve.
func TestDamagedLocalDataIsRepaired(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := newWALBroker(t, s, "a")
	pa, err := openPartition(t, ctx, walConfig(t, s, dir, a))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := int32(0); i < 6; i += 2 {
		write(t, pa, idemBatch(1, i, 2, "sealed"))
		want = append(want, fmt.Sprintf("sealed-%d", i), fmt.Sprintf("sealed-%d", i+1))
	}
	if err := pa.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	for i := int32(6); i < 12; i += 2 {
		write(t, pa, idemBatch(1, i, 2, "tail"))
		want = append(want, fmt.Sprintf("tail-%d", i), fmt.Sprintf("tail-%d", i+1))
	}
	files := localFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("want a sealed and an active file, have %v", files)
	}
	for _, f := range files {
		flipByte(t, f) // the closed (sealed) file and the active (unsealed) one
	}
	a2 := newWALBroker(t, s, "a2")
	pa2, err := openPartition(t, ctx, walConfig(t, s, dir, a2))
	if err != nil {
		t.Fatalf("open with damaged local files: %v", err)
	}
	defer pa2.Close(ctx)
	if got := readValues(t, pa2, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the repair the log is %v, want %v", got, want)
	}
	res, err := pa2.Write(ctx, idemBatch(1, 12, 1, "after"))
	if err != nil || res.Base != 12 {
		t.Fatalf("append after the repair: %+v, %v; want offset 12", res, err)
	}
}

// segmentPuts fails segment uploads while failing says so.
type segmentPuts struct {
	tier.Store
	failing func(n int) bool // n counts segment uploads from 1
	n       atomic.Int64
}

func (s *segmentPuts) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if strings.HasSuffix(key, ".seg") && s.failing(int(s.n.Add(1))) {
		return tier.ObjectInfo{}, fmt.Errorf("segment upload refused by the test: %w", tier.ErrUnavailable)
	}
	return s.Store.Put(ctx, key, r, size)
}

// Found by the simulation (seed 4273): a recovery seals file by file, and
// the first commit used to clear the earlier owners from the manifest; when
// a later file failed to seal, the next owner no longer read the earlier
// owner's WAL and lost its durable acks. The owners stay until a commit
// seals past everything recovered.
func TestPartlySealedRecoveryKeepsTheEarlierOwners(t *testing.T) {
	s := storetest.File(t)
	ctx := context.Background()
	dir := t.TempDir()
	noSegments := &segmentPuts{Store: s, failing: func(int) bool { return true }}
	a := newWALBroker(t, noSegments, "a")
	cfg := walConfig(t, noSegments, dir, a)
	cfg.SealBytes = 1 // every batch closes its file
	pa, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := int32(0); i < 6; i += 2 {
		write(t, pa, idemBatch(1, i, 2, "a")) // durable in a's WAL; never sealed
		want = append(want, fmt.Sprintf("a-%d", i), fmt.Sprintf("a-%d", i+1))
	}
	pa.Abandon()
	if len(localFiles(t, dir)) < 3 {
		t.Fatalf("want several unsealed local files, have %v", localFiles(t, dir))
	}
	secondFails := &segmentPuts{Store: s, failing: func(n int) bool { return n >= 2 }}
	a2 := newWALBroker(t, secondFails, "a2")
	cfg2 := walConfig(t, secondFails, dir, a2)
	if _, err := openPartition(t, ctx, cfg2); err == nil {
		t.Fatal("the recovery's seal was meant to fail part way")
	}
	b := newWALBroker(t, s, "b")
	pb, err := openPartition(t, ctx, walConfig(t, s, t.TempDir(), b))
	if err != nil {
		t.Fatal(err)
	}
	if got := readValues(t, pb, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a part-sealed recovery and a takeover the log is %v, want %v", got, want)
	}
}
