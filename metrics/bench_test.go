package metrics_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/tier"
)

// BenchmarkHooks: the cost of one event in each hook, from every core at
// once (the hooks run on the data path's goroutines).
func BenchmarkHooks(b *testing.B) {
	m := newMetricsB(b)
	b.Run("produce", func(b *testing.B) {
		e := core.ProduceEvent{Topic: "t", Acks: core.AcksLocal, Records: 500, Bytes: 512000, Duration: 3 * time.Millisecond}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.OnProduce(e)
			}
		})
	})
	b.Run("fetch", func(b *testing.B) {
		e := core.FetchEvent{Topic: "t", Records: 500, Bytes: 512000}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.OnFetch(e)
			}
		})
	})
	b.Run("object-store", func(b *testing.B) {
		r := tier.Request{Op: tier.OpGetRange, Bytes: 65536, Duration: 4 * time.Millisecond}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveRequest(r)
			}
		})
	})
	b.Run("grpc-unary", func(b *testing.B) {
		icpt := m.UnaryServerInterceptor()
		info := &grpc.UnaryServerInfo{FullMethod: "/strata.v1.Strata/Produce"}
		handler := func(context.Context, any) (any, error) { return nil, nil }
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				icpt(ctx, nil, info, handler)
			}
		})
	})
}
