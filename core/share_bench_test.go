package core

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// BenchmarkShareDelayedMemory: a million records delayed by a day, then a
// thousand without delay, on one partition with the default bounds.
// Reports the heap the broker holds once the group has read past every
// delayed record (after a GC), the runs spilled, and how long the records
// after them waited (receive of all 1,000), ratio to an empty group's.
//
//	go test ./core -run '^$' -bench ShareDelayedMemory -benchtime 1x
//	(STRATA_BENCH_DELAYED=N for another count than a million)
func BenchmarkShareDelayedMemory(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	store, err := tier.NewFileStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Store = b.TempDir(), store
	cfg.Logger = discardLogger()
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(ctx)
	if _, err := br.CreateTopic(ctx, TopicConfig{Name: "jobs", Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	if _, err := br.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "w"}); err != nil {
		b.Fatal(err)
	}
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapInuse) / (1 << 20)
	}
	base := heap()
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	if v, err := strconv.Atoi(os.Getenv("STRATA_BENCH_DELAYED")); err == nil && v > 0 {
		n = v
	}
	at := []byte(strconv.FormatInt(time.Now().Add(24*time.Hour).UnixMilli(), 10))
	for i := 0; i < n; i += 1000 {
		recs := make([]segment.Record, 1000)
		for j := range recs {
			recs[j] = segment.Record{Value: []byte("delayed-" + strconv.Itoa(i+j)), Headers: []segment.Header{{Key: HeaderDeliverAt, Value: at}}}
		}
		if _, err := br.Produce(ctx, &ProduceRequest{Topic: "jobs", Partition: 0, Records: recs, Acks: AcksLocal}); err != nil {
			b.Fatal(err)
		}
	}
	recs := make([]segment.Record, 1000)
	for j := range recs {
		recs[j] = segment.Record{Value: []byte("now-" + strconv.Itoa(j))}
	}
	if _, err := br.Produce(ctx, &ProduceRequest{Topic: "jobs", Partition: 0, Records: recs}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < 1000 {
		ds, err := br.Receive(ctx, &ReceiveRequest{Topic: "jobs", Group: "w", MaxRecords: 1000, Wait: 20 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) == 0 {
			b.Fatalf("%d of the 1000 records after the delayed ones received, then nothing", got)
		}
		got += len(ds)
	}
	wait := time.Since(start)
	b.StopTimer()
	rt := br.shares.runtimes[runtimeKey{mustTopicB(b, br, "jobs").store, "w", 0}]
	rt.lock(ctx)
	_, inMem := rt.st.InMemory()
	runs := len(rt.st.Runs())
	c := rt.st.Counts()
	rt.unlock()
	b.ReportMetric(heap()-base, "heap-MiB")
	b.ReportMetric(float64(inMem), "delayed-in-memory")
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(c.Delayed), "delayed")
	b.ReportMetric(wait.Seconds(), "s-to-receive-1000-after")
}

func mustTopicB(b *testing.B, br *Broker, name string) *topic {
	t, err := br.loadTopic(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
