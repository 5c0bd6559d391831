// Package brokertest runs a real broker in the test process, serving gRPC
// on a loopback port, for tests and benchmarks of the API and the client.
package brokertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/broker"
	"github.com/stratalog/strata/tier"
)

// Config returns broker.DefaultConfig with a temporary data dir, the given
// store, and a silent logger.
func Config(t testing.TB, store tier.Store) broker.Config {
	cfg := broker.DefaultConfig()
	cfg.DataDir, cfg.Store = t.TempDir(), store
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// Start serves a broker with cfg on 127.0.0.1 and returns it with its
// address, with the broker's own server options (its limits). The server stops and the broker closes when the test ends.
func Start(t testing.TB, cfg broker.Config) (*broker.Broker, string) {
	t.Helper()
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(b.ServerOptions()...)
	stratapb.RegisterStrataServer(srv, b)
	go srv.Serve(lis)
	t.Cleanup(func() {
		srv.Stop()
		b.Close(context.Background())
	})
	return b, lis.Addr().String()
}
