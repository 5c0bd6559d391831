package bench

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

// BenchmarkDurableProduceMinIO: 1 KiB records acked `durable` (after the
// WAL object holding them is in MinIO, on loopback), through the Go client
// into 8 partitions. Reports producer-side ack latency percentiles,
// throughput, and object-store PUTs per GiB ingested (WAL objects,
// segments and manifests together), plus WAL objects per second.
//
//   - sustained: 4 producers, 16 requests of 500 records in flight each:
//     as fast as acks allow.
//   - light: 1 producer sending 1,000 records/s: the flush interval, not
//     the size, cuts the WAL objects.
func BenchmarkDurableProduceMinIO(b *testing.B) {
	for _, tc := range []struct {
		name      string
		producers int
		inFlight  int
		rate      int // records/s per producer; 0 = unlimited
	}{
		{"sustained", 4, 16, 0},
		{"light", 1, 16, 1000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store := tier.NewFaultStore(storetest.MinIO(b), tier.FaultConfig{})
			br, addr := brokertest.Start(b, brokertest.Config(b, store))
			c, err := client.Dial(addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			if err := c.CreateTopic(ctx, "durable", 8); err != nil {
				b.Fatal(err)
			}
			value := bytes.Repeat([]byte("x"), 1024)
			per := (b.N + tc.producers - 1) / tc.producers
			lats := make([][]time.Duration, tc.producers)
			putsBefore, walBefore := store.Stats().Puts, br.WALStats().Objects
			b.SetBytes(1024)
			b.ResetTimer()
			var wg sync.WaitGroup
			for p := 0; p < tc.producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					prod := c.NewProducer("durable", client.WithAcks(stratapb.Acks_ACKS_DURABLE), client.WithMaxInFlight(tc.inFlight))
					defer prod.Close(ctx)
					type sent struct {
						at  time.Time
						res *client.Result
					}
					ch := make(chan sent, 1<<16)
					done := make(chan struct{})
					go func() {
						defer close(done)
						for s := range ch {
							if err := s.res.Wait(ctx); err != nil {
								b.Error(err)
								return
							}
							lats[p] = append(lats[p], time.Since(s.at))
						}
					}()
					start := time.Now()
					for i := 0; i < per; i++ {
						if tc.rate > 0 {
							if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(tc.rate))); d > 0 {
								time.Sleep(d)
							}
						}
						now := time.Now()
						r, err := prod.Send(ctx, client.Record{Value: value})
						if err != nil {
							b.Error(err)
							break
						}
						ch <- sent{now, r}
					}
					prod.Flush(ctx)
					close(ch)
					<-done
				}()
			}
			wg.Wait()
			b.StopTimer()
			elapsed := b.Elapsed().Seconds()
			var all []time.Duration
			for _, l := range lats {
				all = append(all, l...)
			}
			if len(all) == 0 {
				b.Fatal("no acks")
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			pct := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000 }
			gib := float64(len(all)) * 1024 / (1 << 30)
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(len(all))/elapsed, "records/s")
			b.ReportMetric(float64(store.Stats().Puts-putsBefore)/gib, "PUTs/GiB")
			b.ReportMetric(float64(br.WALStats().Objects-walBefore)/elapsed, "WAL-objects/s")
		})
	}
}
