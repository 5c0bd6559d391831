package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/metrics"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// BenchmarkProduceMetrics measures what metrics cost produce throughput:
// the load of BenchmarkProduce (1 KiB records through the Go client, 16
// requests in flight, 4 partitions, acks=local, file:// store) against two
// brokers in one process, one without metrics and one with everything
// `strata serve --metrics-listen` turns on (the core hooks, the observed
// object store, the gRPC interceptors, the lag goroutine). Each op is one
// round on each broker, in alternating order, so both see the same machine;
// it reports each side's median records/s and the median of the rounds'
// on/off ratios. batch=500 is the client's default batch; batch=1 sends one
// record per request, the worst case for the per-request hooks.
func BenchmarkProduceMetrics(b *testing.B) {
	for _, c := range []struct {
		batch, perRound int
	}{{500, 20000}, {1, 1000}} {
		b.Run(fmt.Sprintf("batch=%d", c.batch), func(b *testing.B) {
			off := newMetricsBenchBroker(b, c.batch, false)
			on := newMetricsBenchBroker(b, c.batch, true)
			value := bytes.Repeat([]byte("x"), 1024)
			off.round(b, value, c.perRound) // warm up both
			on.round(b, value, c.perRound)
			var offRates, onRates, ratios []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var o, n float64
				if i%2 == 0 {
					o, n = off.round(b, value, c.perRound), on.round(b, value, c.perRound)
				} else {
					n, o = on.round(b, value, c.perRound), off.round(b, value, c.perRound)
				}
				offRates, onRates, ratios = append(offRates, o), append(onRates, n), append(ratios, n/o)
			}
			b.StopTimer()
			b.ReportMetric(median(offRates), "off-records/s")
			b.ReportMetric(median(onRates), "on-records/s")
			b.ReportMetric(median(ratios), "on/off")
		})
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// metricsBenchBroker is a broker and a producer to it.
type metricsBenchBroker struct {
	p *client.Producer
}

func newMetricsBenchBroker(b *testing.B, batch int, on bool) *metricsBenchBroker {
	cfg := brokertest.Config(b, storetest.File(b))
	var opts []grpc.ServerOption
	var m *metrics.Metrics
	if on {
		mc := metrics.DefaultConfig()
		mc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		var err error
		if m, err = metrics.New(mc); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(m.Close)
		cfg.Store = tier.NewObservedStore(cfg.Store, m)
		cfg.Hooks = []core.Hook{m}
		opts = []grpc.ServerOption{grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(m.StreamServerInterceptor())}
	}
	broker, _, addr := brokertest.StartServer(b, cfg, grpcserver.DefaultConfig(), opts...)
	if m != nil {
		if err := m.Watch(broker); err != nil {
			b.Fatal(err)
		}
	}
	c, err := client.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.CreateTopic(context.Background(), "bench", 4); err != nil {
		b.Fatal(err)
	}
	return &metricsBenchBroker{p: c.NewProducer("bench", client.WithAcks(stratapb.Acks_ACKS_LOCAL), client.WithMaxInFlight(16), client.WithBatchSize(batch))}
}

// round produces n records, waits for every ack, and returns records/s.
func (mb *metricsBenchBroker) round(b *testing.B, value []byte, n int) float64 {
	ctx := context.Background()
	start := time.Now()
	results := make([]*client.Result, 0, n)
	for i := 0; i < n; i++ {
		r, err := mb.p.Send(ctx, client.Record{Value: value})
		if err != nil {
			b.Fatal(err)
		}
		results = append(results, r)
	}
	if err := mb.p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for _, r := range results {
		if err := r.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
