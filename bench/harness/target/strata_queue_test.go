package target

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// A strata worker whose receive failed (a broker restart, a failover)
// goes on receiving: the workload pauses after an error and asks again,
// and the worker must ask the broker again, not return the first error
// for good.
func TestStrataWorkerReceivesAgainAfterAnError(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return nil, status.Error(codes.Unavailable, "test: a transient failure")
	}))
	stratapb.RegisterStrataServer(srv, stratapb.UnimplementedStrataServer{})
	go srv.Serve(lis)
	defer srv.Stop()
	q := &strataQueue{s: &Strata{addr: lis.Addr().String()}, topic: "jobs"}
	w, err := q.NewWorker(context.Background(), WorkerOptions{Batch: 10, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := w.Receive(ctx); err == nil || ctx.Err() != nil {
			t.Fatalf("receive %d: %v, want the broker's failure", i, err)
		}
		before := calls.Load()
		for calls.Load() == before && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if ctx.Err() != nil {
			t.Fatalf("after failure %d the worker never asked the broker again", i+1)
		}
	}
}
