package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/metrics"
	"github.com/stratalog/strata/tier"
)

// obsFlags are serve's observability flags: logs and metrics.
type obsFlags struct {
	logFormat, logLevel *string
	metricsListen       *string
	maxTopics           *int
	lagInterval         *time.Duration
}

func addObsFlags(fs *flag.FlagSet) *obsFlags {
	d := metrics.DefaultConfig()
	return &obsFlags{
		logFormat:     fs.String("log-format", "text", "log format: text or json"),
		logLevel:      fs.String("log-level", "info", "least severe log level written: debug, info, warn or error"),
		metricsListen: fs.String("metrics-listen", "", "serve Prometheus metrics on http://HOST:PORT/metrics (default: off; docs/metrics.md)"),
		maxTopics:     fs.Int("metrics-max-topics", d.MaxTopics, "topics with a metrics label of their own; the others are counted as topic=\""+metrics.OtherTopic+"\""),
		lagInterval:   fs.Duration("metrics-lag-interval", d.LagInterval, "how often consumer-group lag is computed for the metrics"),
	}
}

// logger builds the process's logger from --log-format and --log-level
// and makes it slog's default, so every package's logs go through it.
func (o *obsFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	switch *o.logLevel {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", *o.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *o.logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("invalid --log-format %q: use text or json", *o.logFormat)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	return log, nil
}

// monitor is the broker's metrics: the adapter and its HTTP server. A nil
// monitor (no --metrics-listen) does nothing.
type monitor struct {
	m   *metrics.Metrics
	srv *http.Server
	lis net.Listener
}

// startMetrics listens on --metrics-listen and serves /metrics. An address
// that cannot be bound is an error here, before the broker starts.
func (o *obsFlags) startMetrics(log *slog.Logger) (*monitor, error) {
	if *o.metricsListen == "" {
		return nil, nil
	}
	cfg := metrics.DefaultConfig()
	cfg.MaxTopics, cfg.LagInterval, cfg.Logger = *o.maxTopics, *o.lagInterval, log
	m, err := metrics.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("--metrics-max-topics or --metrics-lag-interval: %w", err)
	}
	lis, err := net.Listen("tcp", *o.metricsListen)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("metrics: cannot listen on --metrics-listen %s: %w; the broker was not started: choose a free address, or stop what holds this one", *o.metricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mon := &monitor{m: m, lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := mon.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	// Not "addr": scripts and tests find the broker's address by it.
	log.Info("serving metrics", "metrics_addr", lis.Addr().String(), "path", "/metrics")
	return mon, nil
}

// observe wraps the broker's object store so its requests are counted.
func (mon *monitor) observe(st tier.Store) tier.Store {
	if mon == nil {
		return st
	}
	return tier.NewObservedStore(st, mon.m)
}

// hooks are the core hooks to add to core.Config.Hooks.
func (mon *monitor) hooks() []core.Hook {
	if mon == nil {
		return nil
	}
	return []core.Hook{mon.m}
}

// serverOptions count the gRPC server's calls by method and code.
func (mon *monitor) serverOptions() []grpc.ServerOption {
	if mon == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(mon.m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(mon.m.StreamServerInterceptor()),
	}
}

// watch starts reading the broker for the metrics the hooks do not cover.
func (mon *monitor) watch(b *core.Broker) error {
	if mon == nil {
		return nil
	}
	return mon.m.Watch(b)
}

// close stops the metrics server and the adapter's goroutine. Safe on nil.
func (mon *monitor) close() {
	if mon == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mon.srv.Shutdown(ctx)
	mon.m.Close()
}
