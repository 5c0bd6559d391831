package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/internal/testcerts"
	grpcserver "github.com/stratalog/strata/server/grpc"
)

// BenchmarkProduceTLSOverhead measures what TLS (and TLS with a bearer
// token and an ACL check on every request) costs produce throughput:
// three brokers in one process (plaintext; TLS; TLS with tokens and
// ACLs enforced), the file:// store, fsync interval, 1 KiB records
// through the Go client (batches of 500, 16 in flight, acks local,
// idempotent) into 4 partitions. Each iteration produces roundRecords to
// each broker in turn (each going first in turn), so the three share the
// machine's noise; it reports each one's MB/s and their ratios to
// plaintext.
//
//	go test ./bench -run '^$' -bench ProduceTLSOverhead -benchtime 9x
func BenchmarkProduceTLSOverhead(b *testing.B) {
	const roundRecords = 10000
	ctx := context.Background()
	ca := testcerts.NewCA(b, "bench")
	pair := ca.Issue(b, "broker", testcerts.Options{CommonName: "broker"})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	stls, err := auth.LoadServerTLS(auth.TLSFiles{CertFile: pair.CertFile, KeyFile: pair.KeyFile}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ccfg, err := client.LoadTLSConfig(client.TLSFiles{CAFile: ca.CertFile, ServerName: "localhost"})
	if err != nil {
		b.Fatal(err)
	}
	token := auth.NewToken()
	h, _ := auth.HashToken(token)
	tokens, err := auth.ParseTokens([]byte("principals:\n  - name: bench\n    tokens: [\"" + h + "\"]\n"))
	if err != nil {
		b.Fatal(err)
	}

	type target struct {
		name    string
		c       *client.Client
		elapsed time.Duration
	}
	start := func(name string, srvOpts []grpc.ServerOption, scfg grpcserver.Config, cliOpts ...client.Option) *target {
		cfg := brokertest.Config(b, storetest.File(b))
		cfg.Partition.Fsync = ingest.FsyncInterval
		_, _, addr := brokertest.StartServer(b, cfg, scfg, srvOpts...)
		c, err := client.Dial(addr, cliOpts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return &target{name: name, c: c}
	}
	plain := start("plaintext", nil, grpcserver.DefaultConfig())
	withTLS := start("tls", []grpc.ServerOption{grpc.Creds(stls.Credentials())}, grpcserver.DefaultConfig(), client.WithTLS(ccfg))

	// TLS with tokens and ACLs: the guard authenticates and authorizes
	// every request (its ACLs live in that broker's bucket).
	authStore := storetest.File(b)
	acls := auth.NewACLStore(authStore, auth.ACLStoreConfig{Logger: quiet})
	b.Cleanup(acls.Close)
	if _, err := acls.Add(ctx, auth.ACL{Principal: "bench", Type: auth.Topic, Name: "bench", Operations: []auth.Operation{auth.Admin}}); err != nil {
		b.Fatal(err)
	}
	g, err := auth.NewGuard(auth.Config{Enforce: true, Tokens: tokens, ACLs: acls, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	cfg := brokertest.Config(b, authStore)
	cfg.Partition.Fsync = ingest.FsyncInterval
	scfg := grpcserver.DefaultConfig()
	scfg.ACLs = acls
	_, _, addr := brokertest.StartServer(b, cfg, scfg, append(g.ServerOptions(), grpc.Creds(stls.Credentials()))...)
	ac, err := client.Dial(addr, client.WithTLS(ccfg), client.WithToken(token))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ac.Close() })
	withAuth := &target{name: "tls+auth", c: ac}

	targets := []*target{plain, withTLS, withAuth}
	producers := make([]*client.Producer, len(targets))
	for i, t := range targets {
		if err := t.c.CreateTopic(ctx, "bench", 4); err != nil {
			b.Fatalf("%s: %v", t.name, err)
		}
		producers[i] = t.c.NewProducer("bench", client.WithAcks(stratapb.Acks_ACKS_LOCAL), client.WithMaxInFlight(16))
	}
	value := bytes.Repeat([]byte("x"), 1024)
	round := func(p *client.Producer) time.Duration {
		t0 := time.Now()
		results := make([]*client.Result, 0, roundRecords)
		for range roundRecords {
			r, err := p.Send(ctx, client.Record{Value: value})
			if err != nil {
				b.Fatal(err)
			}
			results = append(results, r)
		}
		if err := p.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		for _, r := range results {
			if err := r.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	for i := range targets {
		round(producers[i]) // warm up: connections, handshakes, producer ids
	}
	b.SetBytes(int64(len(targets)) * roundRecords * 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range targets {
			j := (i + k) % len(targets) // each goes first in turn
			targets[j].elapsed += round(producers[j])
		}
	}
	b.StopTimer()
	mbps := func(t *target) float64 { return float64(b.N) * roundRecords * 1024 / 1e6 / t.elapsed.Seconds() }
	for _, t := range targets {
		b.ReportMetric(mbps(t), t.name+"_MB/s")
	}
	b.ReportMetric(mbps(withTLS)/mbps(plain), "tls/plaintext")
	b.ReportMetric(mbps(withAuth)/mbps(plain), "tls+auth/plaintext")
	for _, p := range producers {
		p.Close(ctx)
	}
}
