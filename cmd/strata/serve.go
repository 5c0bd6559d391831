package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	flightserver "github.com/stratalog/strata/server/flight"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:7420", "gRPC listen address HOST:PORT")
	dataDir := fs.String("data-dir", "strata-data", "local data directory")
	store := fs.String("object-store", "", "object store URL: file:///abs/dir or s3://bucket/prefix?endpoint=HOST:PORT&insecure=true&region=R (default: file:// under --data-dir)")
	sealBytes := sizeFlag(fs, "seal-bytes", 64<<20, "seal a partition's local data into a segment at this size (e.g. 64MiB)")
	sealInterval := fs.Duration("seal-interval", 10*time.Minute, "... or when its oldest unsealed record is this old")
	localRet := sizeFlag(fs, "local-retention-bytes", 1<<30, "sealed data kept on local disk per partition as a hot cache")
	maxRecord := sizeFlag(fs, "max-record-bytes", 1<<20, "largest record accepted")
	fsync := fs.String("fsync", "interval", "local log fsync policy: always, interval or never")
	walInterval := fs.Duration("wal-flush-interval", 50*time.Millisecond, "the linger: WAL object uploads start at most once per interval (sooner when --wal-flush-bytes wait), so a record waits at most this long for its upload to start while a slot is free; it bounds the PUT rate at light load")
	walInflight := fs.Int("wal-max-inflight", 4, fmt.Sprintf("WAL object uploads in flight at once (1 to %d); they are still acknowledged in order", wal.MaxPipeline))
	walBytes := sizeFlag(fs, "wal-flush-bytes", 8<<20, "start a WAL object upload as soon as this much is buffered (at most 1GiB; default 8MiB, or --wal-max-buffered when that is smaller)")
	walMax := sizeFlag(fs, "wal-max-buffered", 256<<20, "most data received but not yet in the object store; producers wait (then fail, retryably) beyond it")
	walCollect := fs.Duration("wal-collect-interval", 30*time.Second, "how often WAL objects whose records are all sealed are deleted")
	maxMessage := sizeFlag(fs, "max-message-bytes", 16<<20, "largest gRPC message accepted (a produce request is one); larger ones are refused before they are decoded")
	maxProduce := sizeFlag(fs, "produce-buffer-bytes", 256<<20, "most produce requests held in memory at once (counted with 64 bytes per record); beyond it requests are refused, retryably")
	maxFetch := sizeFlag(fs, "fetch-buffer-bytes", 256<<20, "most fetch response bytes built or waiting for slow readers at once; beyond it fetches wait")
	produceTimeout := fs.Duration("produce-timeout", 30*time.Second, "how long a produce waits for its ack condition when the request names no timeout")
	flightListen := fs.String("flight-listen", "", "also serve topics' history as Arrow over Arrow Flight on this address HOST:PORT (docs/flight.md); empty: no Flight server")
	cf := addClusterFlags(fs)
	af := addAuthFlags(fs)
	obs := addObsFlags(fs)
	ef := addExportFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := flagDefaults(fs); err != nil { // STRATA_<NAME>, then the config file's serve section
		return err
	}
	log, err := obs.logger()
	if err != nil {
		return err
	}
	policy, err := ingest.ParseFsyncPolicy(*fsync)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if *store == "" {
		*store = "file://" + filepath.Join(dir, "bucket")
	}
	st, err := tier.Open(ctx, *store)
	if err != nil {
		return err
	}
	defer st.Close()
	sec, err := af.setup(ctx, st, log)
	if err != nil {
		return err
	}
	defer sec.close()
	cfg := core.DefaultConfig()
	cfg.DataDir, cfg.Store, cfg.Logger = filepath.Join(dir, "broker"), st, log
	cfg.Partition.Fsync, cfg.Partition.SealBytes, cfg.Partition.SealInterval, cfg.Partition.LocalRetentionBytes = policy, int64(*sealBytes), *sealInterval, int64(*localRet)
	cfg.MaxRecordBytes = int(*maxRecord)
	cfg.WAL.FlushInterval, cfg.WAL.FlushBytes, cfg.WAL.MaxBufferedBytes = *walInterval, int64(*walBytes), int64(*walMax)
	if *walInflight < 1 || *walInflight > wal.MaxPipeline {
		return fmt.Errorf("--wal-max-inflight %d: use 1 to %d", *walInflight, wal.MaxPipeline)
	}
	cfg.WAL.MaxInFlight = *walInflight
	cfg.WALCollectInterval = *walCollect
	if !flagSet(fs, "wal-flush-bytes") && cfg.WAL.FlushBytes > cfg.WAL.MaxBufferedBytes {
		cfg.WAL.FlushBytes = cfg.WAL.MaxBufferedBytes // a small buffer flushes when full
	}
	cfg.ProduceTimeout = *produceTimeout
	scfg := grpcserver.DefaultConfig()
	scfg.Limits.MaxMessageBytes, scfg.Limits.ProduceBufferBytes, scfg.Limits.FetchBufferBytes = int(*maxMessage), int64(*maxProduce), int64(*maxFetch)
	if scfg.Limits.MaxProduceBytes < 2*int64(*maxMessage) {
		scfg.Limits.MaxProduceBytes = 2 * int64(*maxMessage) // a full message of payload plus its per-record overhead
	}
	scfg.ACLs = sec.acls
	if err := scfg.Validate(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	defer lis.Close()
	mon, err := obs.startMetrics(log)
	if err != nil {
		return err
	}
	defer mon.close()
	cfg.Store, cfg.Hooks = mon.observe(cfg.Store), append(cfg.Hooks, mon.hooks()...)
	advertise := *cf.advertise
	if advertise == "" {
		advertise = lis.Addr().String()
	}
	cfg.Node = core.Node{ID: *cf.nodeID, Addr: advertise, Zone: *cf.zone}
	gc, err := cf.start(advertise)
	if err != nil {
		return err
	}
	if gc != nil {
		cfg.Cluster = gc
		defer gc.c.Shutdown()
		log.Info("gossip started", "node_id", gc.c.Name(), "gossip_addr", gc.c.Addr(), "join", *cf.join, "settle", *cf.settle)
		if *cf.gossipKeyFile != "" {
			defer watchGossipKeys(ctx, gc.c, *cf.gossipKeyFile, log)()
		}
	}
	b, err := core.New(cfg)
	if err != nil {
		return err
	}
	front, err := grpcserver.New(b, scfg)
	if err == nil {
		err = mon.watch(b)
	}
	if err != nil {
		b.Close(context.Background())
		return err
	}
	stopExport, err := ef.start(ctx, st, gc, dir, log) // continuous export (export=parquet topics); own goroutine
	if err != nil {
		b.Close(context.Background())
		return err
	}
	defer stopExport()
	// Message size, flow-control windows, stream cap and the codec that
	// enforces the front end's memory limits (server/grpc/limits.go).
	// The metrics interceptors first, so they count the refusals of the
	// auth interceptors too.
	srv := grpc.NewServer(append(append(front.ServerOptions(), mon.serverOptions()...), sec.opts...)...)
	stratapb.RegisterStrataServer(srv, front)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(stratapb.Strata_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	storeAttrs := []any{"object_store", tier.RedactURL(*store)}
	if s3, ok := st.(*tier.S3Store); ok {
		storeAttrs = append(storeAttrs, "object_store_credentials", s3.CredentialSource())
	}
	log.Info("strata broker listening", append([]any{"addr", lis.Addr().String(), "advertise", advertise, "data_dir", dir}, append(storeAttrs, sec.desc...)...)...)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	var fsrv *grpc.Server // the Arrow Flight server, when --flight-listen
	if *flightListen != "" {
		// The gRPC server's TLS, authentication, ACLs and quotas (the
		// Guard has the Flight methods' rules), and its metrics.
		if fsrv, err = serveFlight(b, *flightListen, append(mon.serverOptions(), sec.opts...), sec.guard, errc, log); err != nil {
			srv.Stop()
			b.Close(context.Background())
			return err
		}
	}
	select {
	case err := <-errc:
		b.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	hs.Shutdown() // NOT_SERVING: load balancers and probes stop sending
	if gc != nil {
		// Graceful leave: propose ourselves for nothing (writes are
		// redirected), tell the others, then hand every partition off.
		start, open := time.Now(), b.OpenPartitions()
		gc.leaving.Store(true)
		if err := gc.c.Leave(5 * time.Second); err != nil {
			log.Warn("leaving the gossip ring", "err", err)
		}
		b.Release() // after the rebalance pass the leave started, if any
		log.Info("left the cluster and handed partitions off", "partitions", open, "took", time.Since(start).Round(time.Millisecond))
	}
	log.Info("shutting down: finishing in-flight requests, sealing partitions")
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		if fsrv != nil {
			wg.Go(fsrv.GracefulStop) // waits for the DoGet streams
		}
		srv.GracefulStop()
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		srv.Stop() // tailing fetch streams do not end by themselves
		if fsrv != nil {
			fsrv.Stop() // nor do DoGet streams of slow readers
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// serveFlight serves the Arrow Flight front end of b on addr, with the
// server options opts and ListFlights showing what guard lets a caller
// describe; Serve's result goes to errc.
func serveFlight(b *core.Broker, addr string, opts []grpc.ServerOption, guard *auth.Guard, errc chan<- error, log *slog.Logger) (*grpc.Server, error) {
	fcfg := flightserver.DefaultConfig()
	fcfg.Visible = func(ctx context.Context, topic string) bool {
		return guard.Authorize(ctx, flightserver.Method("ListFlights"), auth.TopicAccess(auth.Describe, topic)) == nil
	}
	front, err := flightserver.New(b, fcfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--flight-listen %s: %w", addr, err)
	}
	srv := grpc.NewServer(append(front.ServerOptions(), opts...)...)
	front.Register(srv)
	log.Info("arrow flight listening", "flight_addr", lis.Addr().String())
	go func() { errc <- srv.Serve(lis) }()
	return srv, nil
}

// flagSet reports whether the command line set the flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
