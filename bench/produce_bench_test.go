package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
)

// benchBroker runs a broker on loopback with the file:// store and the
// given fsync policy, and returns a client.
func benchBroker(b *testing.B, fsync ingest.FsyncPolicy) *client.Client {
	cfg := brokertest.Config(b, storetest.File(b))
	cfg.Partition.Fsync = fsync
	_, addr := brokertest.Start(b, cfg)
	c, err := client.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkProduce: 1 KiB records through the Go client (batches of 500,
// 16 in flight, idempotent) over gRPC on loopback into 4 partitions, per
// ack mode, with the embedded file:// store as the object store.
func BenchmarkProduce(b *testing.B) {
	for _, acks := range []stratapb.Acks{stratapb.Acks_ACKS_NONE, stratapb.Acks_ACKS_LOCAL, stratapb.Acks_ACKS_DURABLE} {
		b.Run("acks="+strings.ToLower(strings.TrimPrefix(acks.String(), "ACKS_")), func(b *testing.B) {
			c := benchBroker(b, ingest.FsyncInterval)
			ctx := context.Background()
			if err := c.CreateTopic(ctx, "bench", 4); err != nil {
				b.Fatal(err)
			}
			p := c.NewProducer("bench", client.WithAcks(acks), client.WithMaxInFlight(16))
			value := bytes.Repeat([]byte("x"), 1024)
			b.SetBytes(1024)
			b.ResetTimer()
			var last []*client.Result
			for i := 0; i < b.N; i++ {
				r, err := p.Send(ctx, client.Record{Value: value})
				if err != nil {
					b.Fatal(err)
				}
				last = append(last, r)
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			for _, r := range last {
				if err := r.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkEndToEndLatency: one producer sends 1 KiB records one at a time
// (each waits for its ack); a tailing consumer (Fetch with follow) receives
// them. Reports send-to-receive latency percentiles.
//
// Records are acked `local`, but consumers see a record only once it is in
// the object store (docs/durability.md), so the latency is about one WAL
// flush interval.
func BenchmarkEndToEndLatency(b *testing.B) {
	const acks = stratapb.Acks_ACKS_LOCAL
	c := benchBroker(b, ingest.FsyncInterval)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.CreateTopic(ctx, "lat", 1); err != nil {
		b.Fatal(err)
	}
	stream, err := c.API().Fetch(ctx, &stratapb.FetchRequest{Topic: "lat", Start: &stratapb.FetchRequest_Offset{Offset: 0}, Follow: true, MaxWaitMs: 60000})
	if err != nil {
		b.Fatal(err)
	}
	lat := make(chan time.Duration, 1024)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				close(lat)
				return
			}
			now := time.Now().UnixNano()
			for _, r := range resp.Records {
				lat <- time.Duration(now - int64(binary.LittleEndian.Uint64(r.Value)))
			}
		}
	}()
	value := make([]byte, 1024)
	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.LittleEndian.PutUint64(value, uint64(time.Now().UnixNano()))
		if _, err := c.API().Produce(ctx, &stratapb.ProduceRequest{Topic: "lat", Partition: 0, Records: []*stratapb.Record{{Value: value}}, Acks: acks}); err != nil {
			b.Fatal(err)
		}
		select {
		case d, ok := <-lat:
			if !ok {
				b.Fatal("the tailing stream ended")
			}
			all = append(all, d)
		case <-time.After(30 * time.Second):
			b.Fatal("a produced record never reached the tailing consumer")
		}
	}
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.999), "p999-µs")
}
