// Package brokertest runs a real broker (core plus its gRPC front end) in
// the test process, serving gRPC on a loopback port, for tests and
// benchmarks of the API and the client.
package brokertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// Config returns core.DefaultConfig with a temporary data dir, the given
// store, and a silent logger.
func Config(t testing.TB, store tier.Store) core.Config {
	cfg := core.DefaultConfig()
	cfg.DataDir, cfg.Store = t.TempDir(), store
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// Start serves a broker with cfg on 127.0.0.1 and returns it with its
// address, with the front end's default config and server options (its
// limits). The server stops and the broker closes when the test ends.
func Start(t testing.TB, cfg core.Config) (*core.Broker, string) {
	t.Helper()
	b, _, addr := StartServer(t, cfg, grpcserver.DefaultConfig())
	return b, addr
}

// StartServer is Start with the front end's config, and returns the front
// end too.
func StartServer(t testing.TB, cfg core.Config, scfg grpcserver.Config, opts ...grpc.ServerOption) (*core.Broker, *grpcserver.Server, string) {
	t.Helper()
	b, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := grpcserver.New(b, scfg)
	if err != nil {
		b.Close(context.Background())
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close(context.Background())
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(s.ServerOptions(), opts...)...)
	stratapb.RegisterStrataServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(func() {
		srv.Stop()
		b.Close(context.Background())
	})
	return b, s, lis.Addr().String()
}
