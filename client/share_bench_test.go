package client_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/tier"
)

// BenchmarkShareDrain drains a backlog of 1 KiB records (20,000;
// STRATA_BENCH_SHARE_RECORDS for another count) from a share group on 4
// partitions of an in-process broker (WAL on an in-memory store, the
// default 50 ms flush interval, so a durable lease or ack costs a WAL
// cycle, not a PUT's time), in one run, four ways, and reports records/s:
//
//   - run: Run with 8 workers and a handler that returns nil (default
//     prefetch: 8 more received ahead; settles coalesced in the
//     background);
//
//   - run-prefetch1000: the same with WithPrefetch(1000) and
//     WithMaxRecords(1000) (receives of up to 1,000), about the records
//     in flight of the batch way;
//
//   - run-prefetch0: the same with WithPrefetch(0) (1,000 records at
//     most: receives only for idle workers, one WAL cycle per 8);
//
//   - batch: 8 goroutines, each Receive(100), then Ack of all 100 in one
//     call (the harness's queue worker);
//
//   - per-message: 8 goroutines, each Receive(1), then Ack(1) (how Run
//     settled before: a worker acked its message before taking the next;
//     1,000 records at most, it is that slow).
//
//     go test ./client -run '^$' -bench ShareDrain -benchtime 1x
func BenchmarkShareDrain(b *testing.B) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("STRATA_BENCH_SHARE_RECORDS")); err == nil && v > 0 {
		n = v
	}
	const workers = 8
	value := make([]byte, 1024)
	ways := []struct {
		name  string
		n     int                  // records drained: fewer for the slow ways
		opts  []client.ShareOption // the consumer's
		drain func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error
	}{
		{"run", n, nil, func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error {
			return runUntil(ctx, k, acked, n, client.WithWorkers(workers))
		}},
		{"run-prefetch1000", n, []client.ShareOption{client.WithMaxRecords(1000)}, func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error {
			return runUntil(ctx, k, acked, n, client.WithWorkers(workers), client.WithPrefetch(1000))
		}},
		{"run-prefetch0", min(n, 1000), nil, func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error {
			return runUntil(ctx, k, acked, n, client.WithWorkers(workers), client.WithPrefetch(0))
		}},
		{"batch", n, nil, func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error {
			return loopUntil(ctx, k, acked, n, workers, 100)
		}},
		{"per-message", min(n, 1000), nil, func(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int) error {
			return loopUntil(ctx, k, acked, n, workers, 1)
		}},
	}
	for _, w := range ways {
		b.Run(w.name, func(b *testing.B) {
			n := w.n
			for range b.N {
				b.StopTimer()
				cfg := brokertest.Config(b, tier.NewMemStore())
				_, addr := brokertest.Start(b, cfg)
				c, err := client.Dial(addr)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				if err := c.CreateTopic(ctx, "jobs", 4); err != nil {
					b.Fatal(err)
				}
				if _, err := c.CreateShareGroup(ctx, client.ShareGroupConfig{Topic: "jobs", Group: "w"}); err != nil {
					b.Fatal(err)
				}
				p := c.NewProducer("jobs")
				for i := range n {
					if _, err := p.Send(ctx, client.Record{Key: []byte(strconv.Itoa(i)), Value: value}); err != nil {
						b.Fatal(err)
					}
				}
				if err := p.Close(ctx); err != nil {
					b.Fatal(err)
				}
				k := c.NewShareConsumer("jobs", "w", append([]client.ShareOption{client.WithWait(time.Second)}, w.opts...)...)
				var acked atomic.Int64
				dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				b.StartTimer()
				start := time.Now()
				err = w.drain(dctx, k, &acked, n)
				elapsed := time.Since(start)
				b.StopTimer()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				d, err := c.DescribeShareGroup(ctx, "jobs", "w")
				if err != nil || d.Acked != int64(n) {
					b.Fatalf("after the drain: %+v, %v; want %d acked", d, err, n)
				}
				b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
				c.Close()
			}
		})
	}
}

// runUntil runs k.Run until n messages were acked (WithSettled).
func runUntil(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n int, opts ...client.RunOption) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failed atomic.Value
	opts = append(opts, client.WithSettled(func(m client.Message, settlement string, err error) {
		if settlement != "ack" {
			return // a release of what was received ahead, at the end
		}
		if err != nil {
			failed.Store(err)
			cancel()
			return
		}
		if acked.Add(1) == int64(n) {
			cancel()
		}
	}))
	err := k.Run(rctx, func(context.Context, client.Message) error { return nil }, opts...)
	if e, ok := failed.Load().(error); ok {
		return e
	}
	if ctx.Err() != nil {
		return fmt.Errorf("drain timed out at %d of %d acked", acked.Load(), n)
	}
	if err != nil && rctx.Err() == nil {
		return err
	}
	return nil
}

// loopUntil runs workers goroutines, each receiving up to batch messages
// and acking them in one call, until n were acked.
func loopUntil(ctx context.Context, k *client.ShareConsumer, acked *atomic.Int64, n, workers, batch int) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for acked.Load() < int64(n) && ctx.Err() == nil {
				msgs, err := k.Receive(ctx, batch)
				if err != nil {
					errs <- err
					return
				}
				if len(msgs) == 0 {
					continue
				}
				receipts := make([]string, len(msgs))
				for i, m := range msgs {
					receipts[i] = m.Receipt
				}
				if err := k.Ack(ctx, receipts...); err != nil {
					errs <- err
					return
				}
				acked.Add(int64(len(msgs)))
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if acked.Load() < int64(n) {
		return fmt.Errorf("drain timed out at %d of %d acked", acked.Load(), n)
	}
	return nil
}
