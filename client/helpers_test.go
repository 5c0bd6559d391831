package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/leakcheck"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// TestMain fails the package's tests if they leave goroutines behind
// (heartbeats of a closed consumer, requests of a closed producer, ...).
func TestMain(m *testing.M) { leakcheck.Main(m) }

// testBroker is a real broker serving gRPC on a loopback port, with the
// test's server interceptors, that can be restarted on the same address
// and bucket (its group membership, kept in memory, is lost; committed
// offsets, kept in the bucket, are not).
type testBroker struct {
	t    *testing.T
	cfg  core.Config
	opts []grpc.ServerOption
	addr string
	srv  *grpc.Server
	b    *core.Broker
}

func startTestBroker(t *testing.T, opts ...grpc.ServerOption) *testBroker {
	t.Helper()
	tb := &testBroker{t: t, cfg: brokertest.Config(t, tier.NewMemStore()), opts: opts}
	tb.start("127.0.0.1:0")
	t.Cleanup(tb.stop)
	return tb
}

func (tb *testBroker) start(addr string) {
	tb.t.Helper()
	b, err := core.New(tb.cfg)
	if err != nil {
		tb.t.Fatal(err)
	}
	fe, err := grpcserver.New(b, grpcserver.DefaultConfig())
	if err != nil {
		b.Close(context.Background())
		tb.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		b.Close(context.Background())
		tb.t.Fatal(err)
	}
	srv := grpc.NewServer(tb.opts...)
	stratapb.RegisterStrataServer(srv, fe)
	go srv.Serve(lis)
	tb.addr, tb.srv, tb.b = lis.Addr().String(), srv, b
}

func (tb *testBroker) stop() {
	if tb.srv == nil {
		return
	}
	tb.srv.Stop()
	tb.b.Close(context.Background())
	tb.srv, tb.b = nil, nil
}

// restart stops the broker and starts a new one on the same address,
// data directory and bucket.
func (tb *testBroker) restart() {
	tb.t.Helper()
	addr := tb.addr
	tb.stop()
	tb.start(addr)
}

// dial connects a client to the broker, with the given client interceptor
// (nil: none).
func (tb *testBroker) dial(t *testing.T, icpt grpc.UnaryClientInterceptor) *client.Client {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if icpt != nil {
		opts = append(opts, grpc.WithUnaryInterceptor(icpt))
	}
	c, err := client.Dial(tb.addr, client.WithDialOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (the condition is what the test waits for, not a timing goal).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// produceValues sends values to topic with a plain producer and waits for
// every ack.
func produceValues(t *testing.T, c *client.Client, topic string, values ...string) {
	t.Helper()
	ctx := context.Background()
	p := c.NewProducer(topic)
	var rs []*client.Result
	for _, v := range values {
		r, err := p.Send(ctx, client.Record{Key: []byte(v), Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
