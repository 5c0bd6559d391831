package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
)

// Close stops a producer whose batches are still retrying (issue 12:
// retries slept regardless of Close, so their goroutines outlived it):
// once Close's context ends, the retrying batch fails at once.
func TestCloseStopsRetryingBatches(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: every request fails, retryably
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := c.NewProducer("t", client.WithIdempotence(false), client.WithPartition(0), client.WithRetries(1000, time.Second))
	res, err := p.Send(context.Background(), client.Record{Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err == nil {
		t.Fatal("Close of a producer that cannot reach its broker reported success")
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := res.Wait(wctx); err == nil || wctx.Err() != nil {
		t.Fatalf("the batch after Close: %v (wait: %v); want it failed at once, not still retrying", err, wctx.Err())
	}
}
