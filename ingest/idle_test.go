package ingest_test

// What an idle partition costs: no buffer, no goroutine, no object-store
// request (issue 17, "Many partitions"); and the data stays right across
// appends that share the frame buffers, idle spells, and a crash.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC() // a second time: sync.Pool contents survive one
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestIdlePartitionsHoldNoBuffersOrGoroutines opens many partitions,
// appends one large batch to each and leaves them idle: the memory they
// hold must be far below one batch each (a partition that kept its
// frame buffer, grown to its largest batch, holds at least that), and
// they must hold no goroutine (a background loop or an fsync loop per
// partition held two).
func TestIdlePartitionsHoldNoBuffersOrGoroutines(t *testing.T) {
	const parts, batchBytes = 40, 512 << 10
	ctx := context.Background()
	store := tier.NewMemStore()
	big := &segment.Batch{ProducerID: segment.NoProducer}
	for i := 0; i < 64; i++ {
		big.Records = append(big.Records, segment.Record{Value: bytes.Repeat([]byte{byte(i)}, batchBytes/64)})
	}
	open := func(i int) *ingest.Partition {
		cfg := testConfig(t, store, filepath.Join(t.TempDir(), fmt.Sprint(i)), nil)
		cfg.Partition = int32(i)
		cfg.Fsync = ingest.FsyncInterval // the policy that had an fsync goroutine per log
		cfg.FsyncInterval = time.Hour    // armed, never due during the test
		cfg.SealBytes = 1 << 30
		p, err := openPartition(t, ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// One partition first: what every process has once (pools, the
	// store's maps, the logger) is not counted against the others.
	first := open(parts)
	if _, err := first.Append(ctx, big); err != nil {
		t.Fatal(err)
	}
	goroutines, heap := runtime.NumGoroutine(), heapInUse()
	ps := make([]*ingest.Partition, parts)
	for i := range ps {
		ps[i] = open(i)
		if _, err := ps[i].Append(ctx, big); err != nil {
			t.Fatal(err)
		}
	}
	grown := heapInUse() - heap
	if limit := int64(parts * batchBytes / 8); grown > limit {
		t.Errorf("%d idle partitions hold %d KiB after one %d KiB batch each (%d KiB each); want under %d KiB in all: a partition keeps a buffer between appends",
			parts, grown>>10, batchBytes>>10, grown/parts>>10, limit>>10)
	}
	if g := runtime.NumGoroutine() - goroutines; g > 0 {
		t.Errorf("%d idle partitions run %d more goroutines; want none (their background work waits on timers)", parts, g)
	}
	for _, p := range ps {
		if n := p.Local().BufferBytes(); n != 0 {
			t.Errorf("partition %d's local log holds %d buffer bytes between appends", p.Epoch(), n)
		}
	}
}

// countRequests returns every request the store was asked so far.
func countRequests(s *tier.FaultStore) int64 {
	st := s.Stats()
	return st.Gets + st.GetRanges + st.Stats + st.Lists + st.Puts + st.Deletes
}

// TestIdlePartitionMakesNoRequests drives the background rounds of an
// idle partition (everything sealed) over simulated days, one round per
// simulated minute, with the partition's own clock: within the first
// day it asks the store nothing; then the daily backstop sweep is one
// LIST. A partition that was taken over sweeps once soon (an earlier
// owner may have left uploads it never committed) and then goes quiet
// too.
func TestIdlePartitionMakesNoRequests(t *testing.T) {
	ctx := context.Background()
	store := tier.NewFaultStore(tier.NewMemStore(), tier.FaultConfig{})
	clk := &fakeClock{now: time.Now()}
	cfg := testConfig(t, store, t.TempDir(), clk)
	cfg.RetentionTime = 7 * 24 * time.Hour // retention on: its checks must not cost requests either
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := clk.Now().UnixMilli()
	appendN(t, p, 300, ts)
	if err := p.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	idle := func(p *ingest.Partition, d time.Duration) (requests, lists int64) {
		t.Helper()
		before, lbefore := countRequests(store), store.Stats().Lists
		for end := clk.Now().Add(d); clk.Now().Before(end); {
			clk.Add(time.Minute)
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return countRequests(store) - before, store.Stats().Lists - lbefore
	}
	if n, _ := idle(p, 23*time.Hour); n != 0 {
		t.Fatalf("an idle, sealed partition made %d object-store requests in 23 simulated hours; want 0", n)
	}
	// The backstop: one sweep between 24 and 26.4 hours after the open.
	if n, lists := idle(p, 4*time.Hour); n != 1 || lists != 1 {
		t.Fatalf("the daily backstop sweep made %d requests (%d LISTs); want 1 LIST", n, lists)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Reopened (a claim): one sweep within SweepInterval, then quiet.
	clk.Add(time.Minute)
	p, err = openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, lists := idle(p, cfg.SweepInterval+time.Minute); lists != 1 || n != 1 {
		t.Fatalf("after a takeover the partition made %d requests (%d LISTs) in its first %v; want 1 LIST (its sweep)", n, lists, cfg.SweepInterval)
	}
	if n, _ := idle(p, 20*time.Hour); n != 0 {
		t.Fatalf("after its sweep the idle partition made %d requests in 20 simulated hours; want 0", n)
	}
	if got := replayAll(t, store, "orders", 0); got != 300 {
		t.Fatalf("replay after the idle days ends at %d, want 300", got)
	}
}

// reacquireValue is the value of record off of partition part: reading
// it back proves the record is the partition's own and in its place
// (appends of many partitions share the frame buffers).
func reacquireValue(part int, off int64) []byte {
	return fmt.Appendf(nil, "p%d-o%d-%s", part, off, bytes.Repeat([]byte{'a' + byte(part)}, int(off%97)*40))
}

// TestDataSurvivesIdleAndCrash appends to several partitions at once
// (their frames encoded in shared buffers), lets them go idle (the
// interval fsync fires and disarms, background rounds run), appends
// again, reads everything back, then crashes the disk (only fsynced data
// survives) and reopens: every acknowledged record is there, intact and
// in its place, and the reopened partitions take appends.
func TestDataSurvivesIdleAndCrash(t *testing.T) {
	const parts = 6
	ctx := context.Background()
	store := tier.NewMemStore()
	mem := vfs.NewMem()
	clk := &fakeClock{now: time.Now()}
	config := func(fs vfs.FS, i int) ingest.PartitionConfig {
		cfg := testConfig(t, store, fmt.Sprintf("/data/%d", i), clk)
		cfg.FS, cfg.Partition = fs, int32(i)
		cfg.Fsync = ingest.FsyncAlways // acked = fsynced, so a crash keeps every acked record
		cfg.SealBytes = 1 << 30
		return cfg
	}
	ps := make([]*ingest.Partition, parts)
	for i := range ps {
		p, err := openPartition(t, ctx, config(mem, i))
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	acked := make([]int64, parts)
	produce := func(seed uint64) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, parts)
		for i, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(i)))
				for range 30 {
					b := &segment.Batch{ProducerID: segment.NoProducer}
					next := p.NextOffset()
					for j := range 1 + rng.IntN(40) {
						b.Records = append(b.Records, segment.Record{Timestamp: 1, Value: reacquireValue(i, next+int64(j))})
					}
					base, err := p.Append(ctx, b)
					if err != nil || base != next {
						errs[i] = fmt.Errorf("partition %d: append at %d: base %d, %v", i, next, base, err)
						return
					}
					acked[i] = base + int64(len(b.Records))
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(label string, ps []*ingest.Partition) {
		t.Helper()
		for i, p := range ps {
			if p.NextOffset() < acked[i] {
				t.Fatalf("%s: partition %d ends at %d, but %d records were acked", label, i, p.NextOffset(), acked[i])
			}
			n := int64(0)
			for n < acked[i] {
				bs, err := p.Local().Read(n, 64<<10)
				if err != nil || len(bs) == 0 {
					t.Fatalf("%s: partition %d: read at %d: %v (%d batches)", label, i, n, err, len(bs))
				}
				for _, b := range bs {
					for _, r := range b.Records {
						if r.Offset < n {
							continue
						}
						if r.Offset != n || !bytes.Equal(r.Value, reacquireValue(i, n)) {
							t.Fatalf("%s: partition %d: record at %d is %.40q, want offset %d with its own value", label, i, r.Offset, r.Value, n)
						}
						n++
					}
				}
			}
		}
	}
	produce(1)
	// Idle: background rounds over a simulated hour (no seal is due:
	// SealInterval is 10 minutes of appends... the files are young by
	// their first append only if the clock stays; move it less).
	for range 5 {
		clk.Add(time.Minute)
		for _, p := range ps {
			if err := p.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(2)
	check("after idle", ps)

	// Crash: the disk as a power cut leaves it (a random prefix of what
	// was not fsynced, maybe torn), then reopen every partition on it.
	crashed := mem.Crash(rand.New(rand.NewPCG(3, 4)))
	for _, p := range ps {
		p.Abandon() // the process died: nothing more reaches the disk we keep
	}
	re := make([]*ingest.Partition, parts)
	for i := range re {
		p, err := openPartition(t, ctx, config(crashed, i))
		if err != nil {
			t.Fatal(err)
		}
		re[i] = p
	}
	check("after the crash", re)
	ps = re
	produce(3)
	check("after appends to the recovered partitions", re)
}

// A partition opened empty seals its first record once it is
// SealInterval old, not at the next idle check: the first append into an
// empty file brings the next round forward to when that file comes due.
// (The rounds' timer was armed at the open for IdleCheckInterval, since
// nothing was due then, and an append that did not close a file did not
// move it: `--seal-interval 1s` sealed a new topic's first records a
// minute late, and an idle partition's next first record as late.)
func TestFirstRecordSealsAtSealIntervalNotAtIdleCheck(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, tier.NewMemStore(), t.TempDir(), nil)
	cfg.SealInterval = 200 * time.Millisecond
	cfg.CheckInterval = 50 * time.Millisecond
	cfg.IdleCheckInterval = time.Hour // the test would wait this long
	cfg.SealBytes = 1 << 30
	p, err := openPartition(t, ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(end int64) bool {
		m, err := p.Manifest(ctx)
		return err == nil && m.NextOffset() >= end
	}
	for round, end := range []int64{1, 2} {
		if _, err := p.Append(ctx, &segment.Batch{ProducerID: segment.NoProducer, Records: []segment.Record{{Value: []byte{byte(round)}}}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second) // far past SealInterval, far below IdleCheckInterval
		for !sealed(end) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the record appended to an empty file is not sealed after 20s (SealInterval %v): the next round waits for the idle check (%v)", round, cfg.SealInterval, cfg.IdleCheckInterval)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
