package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/bench/harness/report"
)

// A whole (tiny) run against the real strata binary on the embedded
// file:// store: every workload produces a result, the JSON reads back,
// the PNGs are written.
func TestQuickRunStrataFileStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	out := t.TempDir()
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, []string{"-quick", "-store", "file", "-targets", "strata-local", "-out", out, "-duration", "700ms",
		"-replay-mib", "4", "-partition-counts", "1,10", "-curve-point-duration", "300ms", "-queue-records", "2000", "-tmp", t.TempDir()}, &stdout)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	r, err := report.Read(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, wl := range []string{"produce", "e2e-saturation", "e2e-open", "replay-ingest", "replay", "partitions-1", "partitions-10"} {
		x := r.Find("strata-local", wl)
		if x == nil || x.Records == 0 {
			t.Errorf("%s: no result or no records: %+v", wl, x)
		}
	}
	// The latency curve: a point at each default load of the e2e
	// saturation rate, with both latencies (file store: no PUT counts).
	sat := r.Find("strata-local", "e2e-saturation")
	for _, load := range []float64{0.10, 0.25, 0.50, 0.75, 0.90} {
		x := r.Find("strata-local", fmt.Sprintf("curve-%.0f", load*100))
		if x == nil || sat == nil || x.Records == 0 || x.Load != load || x.Offered < sat.RecPerS*load*0.999 || x.Offered > sat.RecPerS*load*1.001 ||
			x.Latency2 == nil || x.Latency2.Count == 0 {
			t.Errorf("curve at %v of %+v: %+v", load, sat, x)
		}
	}
	if x := r.Find("strata-local", "replay"); x != nil && x.Records != r.Find("strata-local", "replay-ingest").Records {
		t.Errorf("replayed %d of %d records", x.Records, r.Find("strata-local", "replay-ingest").Records)
	}
	if x := r.Find("strata-local", "replay"); x == nil || x.Cost.CacheHitRatio < 0 || x.Cost.CacheHitRatio > 1 || !strings.Contains(x.Note, "hit ratio") {
		t.Errorf("cold replay has no read-cache hit ratio: %+v", x)
	}
	// The queue: the share group drained the whole backlog, each record
	// acked once, and the light-load phase ran at a tenth of that rate.
	q := r.Find("strata-share", "queue")
	if q == nil || q.Records != 2000 || q.Missing != 0 || q.Redelivered != 0 || q.Unacked != 0 || q.Latency == nil || q.Latency.Count != 2000 {
		t.Errorf("queue: %+v", q)
	}
	if f := r.Find("strata-share", "queue-fill"); f == nil || f.Records != 2000 {
		t.Errorf("queue fill: %+v", f)
	}
	if e := r.Find("strata-share", "queue-e2e-open"); q != nil && (e == nil || e.Records == 0 || e.Offered < q.RecPerS*0.09 || e.Offered > q.RecPerS*0.11) {
		t.Errorf("queue light load: %+v", e)
	}
	if k := r.QueueKind("strata-share"); k == nil || !strings.Contains(k.Durability, "ACKS_DURABLE") || !k.Comparable {
		t.Errorf("queue kinds: %+v", r.Queues)
	}
	if r.Limit("disk write+fsync") == nil || r.Limit("zstd decode") == nil {
		t.Errorf("limits missing: %+v", r.Limits)
	}
	for _, f := range []string{"results.md", "throughput.png", "latency-e2e.png", "latency-produce.png", "partitions.png", "queue.png", "latency-queue.png", "latency-curve.svg", "latency-curve.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestFlags(t *testing.T) {
	c, err := parse([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if c.p.Duration != 2*time.Second || c.p.ReplayMiB != 16 || c.partitionCounts != "1,100" || c.p.QueueRecords != 4000 || c.p.QueueTimeout != time.Minute {
		t.Fatalf("quick defaults %+v %s", c.p, c.partitionCounts)
	}
	if c.partitionPhase != 2*time.Second || c.partitionIdle != 0 {
		t.Fatalf("quick partitions phase %v, idle %v", c.partitionPhase, c.partitionIdle)
	}
	c, _ = parse(nil)
	if c.p.Duration != 10*time.Second || c.partitionCounts != "1,100,1000,10000" || c.p.QueueRecords != 100_000 || c.p.QueueWorkers != 8 || c.p.QueueBatch != 100 {
		t.Fatalf("full defaults %+v", c.p)
	}
	if c.partitionPhase != time.Minute || c.partitionIdle != time.Minute {
		t.Fatalf("full partitions phase %v, idle %v: a sustained phase is at least 60 s", c.partitionPhase, c.partitionIdle)
	}
	if c.p.CurveDuration != 10*time.Second || len(c.p.CurveLoads) != 5 || c.p.CurveLoads[0] != 0.1 || c.p.CurveLoads[4] != 0.9 || !has(c.workloads, "curve") {
		t.Fatalf("curve defaults %v %v, workloads %s", c.p.CurveDuration, c.p.CurveLoads, c.workloads)
	}
	if q, _ := parse([]string{"-quick"}); q.p.CurveDuration != 500*time.Millisecond {
		t.Fatalf("quick curve points of %v", q.p.CurveDuration)
	}
	if c, err := parse([]string{"-curve-loads", "20,80", "-curve-point-duration", "5s"}); err != nil || len(c.p.CurveLoads) != 2 || c.p.CurveLoads[1] != 0.8 || c.p.CurveDuration != 5*time.Second {
		t.Fatalf("-curve-loads 20,80: %+v %v", c, err)
	}
	if _, err := parse([]string{"-curve-loads", "0,50"}); err == nil {
		t.Fatal("a curve load of 0 % accepted")
	}
	if _, err := parse([]string{"-record-size", "8"}); err == nil {
		t.Fatal("record size 8 accepted")
	}
	if _, err := parse([]string{"-queue-batch", "1001"}); err == nil {
		t.Fatal("a queue batch over strata's receive limit accepted")
	}
	tg, err := newTarget("strata-local-5ms", c, t.TempDir(), nil, "strata")
	if err != nil || tg.Name() != "strata-local-5ms" || !strings.Contains(tg.Info().Durability, "--wal-flush-interval 5ms") {
		t.Fatalf("strata-local-5ms: %v %v", tg, err)
	}
	if _, err := newTarget("strata-local-soon", c, t.TempDir(), nil, "strata"); err == nil {
		t.Fatal("a flush interval that is not a duration was accepted")
	}
}
