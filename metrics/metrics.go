// Package metrics is strata's Prometheus adapter: it implements the core's
// hooks (core.ProduceHook, FetchHook, WALFlushHook, SealHook) and the
// object store's tier.RequestObserver, reads what the hooks do not cover
// from the broker at scrape time (read cache, WAL buffer, partitions
// owned) or periodically (consumer lag), and gives a gRPC interceptor
// pair that counts RPCs by full method name and status code, for every
// gRPC front end (server/grpc, Arrow Flight). docs/metrics.md lists every
// metric.
//
// Invariants:
//   - Everything is registered on the adapter's own registry (Registry,
//     Handler), never on the global one, so two brokers in one process
//     (tests) keep separate metrics.
//   - The hooks never block and take no lock on their fast path: a
//     counter is a prometheus child resolved once and then updated
//     atomically; the first use of a label combination takes the
//     library's lock once.
//   - Label cardinality is bounded: at most Config.MaxTopics topics get a
//     label value of their own, in the order they are first used
//     successfully (a produce acknowledged, a fetch result sent, a segment
//     sealed; a request that failed never takes a slot, so requests for
//     topics that do not exist cannot fill them), kept for the process's
//     life; every other topic is counted under OtherTopic. Consumer lag
//     is reported for at most MaxLagGroups groups and MaxLagPartitions
//     partitions in all. Ack modes, operations, error classes and gRPC
//     methods and codes are fixed sets. There is no per-record, per-key,
//     per-producer or per-member label.
//   - Consumer lag is computed by one goroutine every LagInterval, each
//     round bounded by LagTimeout, never at scrape time: a scrape costs no
//     object-store request.
//
// Concurrency: a Metrics is safe for concurrent use. Close stops the lag
// goroutine and is idempotent.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/tier"
)

// OtherTopic is the topic label value of every topic past
// Config.MaxTopics. No topic a client creates can have this name (names
// starting with "__" are the broker's own).
const OtherTopic = "__other"

// Config configures a Metrics. Start from DefaultConfig.
type Config struct {
	// MaxTopics is how many topics get a label value of their own; the
	// rest share OtherTopic. Default 100.
	MaxTopics int
	// LagInterval: how often consumer lag is computed. Default 30s.
	LagInterval time.Duration
	// LagTimeout bounds one lag round (its bucket reads). Default 10s.
	LagTimeout time.Duration
	// MaxLagGroups: lag is reported for at most this many groups (the
	// first by name); the rest are counted in
	// strata_consumer_lag_omitted_groups. Default 100.
	MaxLagGroups int
	// MaxLagPartitions: at most this many (group, partition) lag series
	// in all; the groups that would pass it are omitted whole. Default
	// 2000.
	MaxLagPartitions int
	// Logger gets the lag rounds' failures (at debug level). Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		MaxTopics:        100,
		LagInterval:      30 * time.Second,
		LagTimeout:       10 * time.Second,
		MaxLagGroups:     100,
		MaxLagPartitions: 2000,
		Logger:           slog.Default(),
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.MaxTopics < 0 || c.MaxLagGroups < 0 || c.MaxLagPartitions < 0:
		return fmt.Errorf("metrics: MaxTopics (%d), MaxLagGroups (%d) and MaxLagPartitions (%d) must not be negative", c.MaxTopics, c.MaxLagGroups, c.MaxLagPartitions)
	case c.LagInterval <= 0 || c.LagTimeout <= 0:
		return fmt.Errorf("metrics: LagInterval (%v) and LagTimeout (%v) must be positive", c.LagInterval, c.LagTimeout)
	case c.Logger == nil:
		return errors.New("metrics: Logger is required")
	}
	return nil
}

// Broker is what Watch reads from the broker (a *core.Broker).
type Broker interface {
	Stats() core.Stats
	OpenPartitions() int
	LagGroups(ctx context.Context) ([]string, error)
	DescribeGroup(ctx context.Context, group string) (*core.GroupDescription, error)
}

var (
	_ Broker               = (*core.Broker)(nil)
	_ core.ProduceHook     = (*Metrics)(nil)
	_ core.FetchHook       = (*Metrics)(nil)
	_ core.WALFlushHook    = (*Metrics)(nil)
	_ core.SealHook        = (*Metrics)(nil)
	_ tier.RequestObserver = (*Metrics)(nil)
	_ prometheus.Collector = (*brokerCollector)(nil)
)

// Metrics is the Prometheus adapter. Pass it in core.Config.Hooks, wrap the
// object store with tier.NewObservedStore(store, m), add its interceptors
// to the gRPC servers, call Watch with the broker once it exists, and serve
// Handler.
type Metrics struct {
	cfg    Config
	reg    *prometheus.Registry
	topics topicSet

	produceReqs, produceRecords, produceBytes *prometheus.CounterVec // topic, acks
	produceErrors                             *prometheus.CounterVec // topic, acks, kind
	produceDur                                [numAcks]prometheus.Observer
	fetchResponses, fetchRecords, fetchBytes  *prometheus.CounterVec // topic
	fetchStoredBytes                          *prometheus.CounterVec // topic
	sealedSegments, sealedBytes               *prometheus.CounterVec // topic

	walObjects, walBytes, walRecords, walAttempts, walFailures prometheus.Counter
	walDur                                                     prometheus.Observer

	storeReqs  *prometheus.CounterVec // operation, result
	storeDur   [numOps]prometheus.Observer
	storeBytes [numOps]prometheus.Counter

	grpcReqs *prometheus.CounterVec // method, code

	lagErrors prometheus.Counter

	lag lagState

	mu struct {
		sync.Mutex
		watching bool // Watch was called
		closed   bool // Close was called
	}
	stop chan struct{} // closed by Close: ends the lag goroutine
	done chan struct{} // closed when the lag goroutine ends
}

// Buckets of the latency histograms: 0.5 ms to about 16 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// Ack-mode label values, by core.Acks (0: an invalid mode).
const numAcks = 4

var acksLabels = [numAcks]string{"invalid", "none", "local", "durable"}

func acksIndex(a core.Acks) int {
	if a >= core.AcksNone && a <= core.AcksDurable {
		return int(a)
	}
	return 0
}

// The object-store operations, by tier.Op.
var storeOps = []tier.Op{tier.OpGet, tier.OpGetRange, tier.OpStat, tier.OpList, tier.OpPut, tier.OpPutIfAbsent, tier.OpPutIfMatch, tier.OpDelete}

const numOps = 8

// New returns an adapter with its own registry (with the Go runtime and
// process collectors).
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), stop: make(chan struct{}), done: make(chan struct{})}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	m.produceReqs = counterVec("strata_produce_requests_total", "Produce requests answered, acknowledged or failed.", "topic", "acks")
	m.produceRecords = counterVec("strata_produce_records_total", "Records of acknowledged produce requests.", "topic", "acks")
	m.produceBytes = counterVec("strata_produce_bytes_total", "Payload bytes (keys, values, headers) of acknowledged produce requests.", "topic", "acks")
	m.produceErrors = counterVec("strata_produce_errors_total", "Produce requests that failed, by the core's error kind.", "topic", "acks", "kind")
	pd := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_produce_duration_seconds", Help: "Time to answer an acknowledged produce request, the wait for its ack condition included.", Buckets: latencyBuckets}, []string{"acks"})
	m.reg.MustRegister(pd)
	for i, l := range acksLabels {
		m.produceDur[i] = pd.WithLabelValues(l)
	}
	m.fetchResponses = counterVec("strata_fetch_responses_total", "Fetch results sent (an empty long poll included; a following fetch sends many).", "topic")
	m.fetchRecords = counterVec("strata_fetch_records_total", "Records sent in fetch results.", "topic")
	m.fetchBytes = counterVec("strata_fetch_bytes_total", "Payload bytes of the records sent in fetch results as records.", "topic")
	m.fetchStoredBytes = counterVec("strata_fetch_stored_bytes_total", "Bytes of the sealed blocks sent in fetch results as stored (compressed; their records are in strata_fetch_records_total).", "topic")
	m.sealedSegments = counterVec("strata_sealed_segments_total", "Segments sealed into the object store.", "topic")
	m.sealedBytes = counterVec("strata_sealed_bytes_total", "Bytes of the segments sealed into the object store.", "topic")

	m.walObjects = counter("strata_wal_objects_total", "WAL objects stored.")
	m.walBytes = counter("strata_wal_bytes_total", "Bytes of the WAL objects stored.")
	m.walRecords = counter("strata_wal_records_total", "Records in the WAL objects stored.")
	m.walAttempts = counter("strata_wal_upload_attempts_total", "WAL object PUT attempts, retries included.")
	m.walFailures = counter("strata_wal_flush_failures_total", "WAL flushes given up (the incarnation was fenced, or the broker closed first).")
	wd := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_wal_flush_duration_seconds", Help: "Time from a WAL flush's start until its object was stored, retries included.", Buckets: latencyBuckets})
	m.reg.MustRegister(wd)
	m.walDur = wd

	m.storeReqs = counterVec("strata_object_store_requests_total", "Object-store requests, by operation and result (ok or the error class).", "operation", "result")
	sd := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strata_object_store_request_duration_seconds", Help: "Object-store request time (a get's until its body was read), by operation.", Buckets: latencyBuckets}, []string{"operation"})
	sb := counterVec("strata_object_store_bytes_total", "Bytes moved by object-store requests: sent by puts, received by gets.", "operation")
	m.reg.MustRegister(sd)
	for _, op := range storeOps {
		m.storeDur[op], m.storeBytes[op] = sd.WithLabelValues(op.String()), sb.WithLabelValues(op.String())
	}

	m.grpcReqs = counterVec("strata_grpc_requests_total", "gRPC calls finished, by full method name and status code.", "method", "code")
	m.lagErrors = counter("strata_consumer_lag_errors_total", "Consumer-lag rounds or groups whose lag could not be read.")
	m.topics.init(cfg.MaxTopics, m)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_metrics_labeled_topics", Help: "Topics with a label value of their own (at most the configured limit; the rest are counted as topic=\"" + OtherTopic + "\")."},
		func() float64 { return float64(m.topics.admitted()) }))
	return m, nil
}

// Registry is the adapter's registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// OnProduce implements core.ProduceHook.
func (m *Metrics) OnProduce(e core.ProduceEvent) {
	tm := m.topics.get(e.Topic, e.Err == nil)
	ai := acksIndex(e.Acks)
	ac := tm.acks(ai)
	ac.reqs.Inc()
	if e.Err != nil {
		m.produceErrors.WithLabelValues(tm.label, acksLabels[ai], errorKind(e.Err)).Inc()
		return
	}
	ac.records.Add(float64(e.Records))
	ac.bytes.Add(float64(e.Bytes))
	m.produceDur[ai].Observe(e.Duration.Seconds())
}

// OnFetch implements core.FetchHook.
func (m *Metrics) OnFetch(e core.FetchEvent) {
	tm := m.topics.get(e.Topic, true)
	tm.fetchResponses.Inc()
	if e.Records > 0 {
		tm.fetchRecords.Add(float64(e.Records))
		tm.fetchBytes.Add(float64(e.Bytes))
		tm.fetchStoredBytes.Add(float64(e.StoredBytes))
	}
}

// OnWALFlush implements core.WALFlushHook.
func (m *Metrics) OnWALFlush(e core.WALFlushEvent) {
	m.walAttempts.Add(float64(e.Attempts))
	if e.Err != nil {
		m.walFailures.Inc()
		return
	}
	m.walObjects.Inc()
	m.walBytes.Add(float64(e.Bytes))
	m.walRecords.Add(float64(e.Records))
	m.walDur.Observe(e.Duration.Seconds())
}

// OnSegmentSealed implements core.SealHook.
func (m *Metrics) OnSegmentSealed(e core.SealEvent) {
	tm := m.topics.get(e.Topic, true)
	tm.sealedSegments.Inc()
	tm.sealedBytes.Add(float64(e.Bytes))
}

// ObserveRequest implements tier.RequestObserver.
func (m *Metrics) ObserveRequest(r tier.Request) {
	op := r.Op.String()
	m.storeReqs.WithLabelValues(op, tier.ErrorClass(r.Err)).Inc()
	if r.Op < 0 || int(r.Op) >= numOps {
		return
	}
	m.storeDur[r.Op].Observe(r.Duration.Seconds())
	if r.Bytes > 0 {
		m.storeBytes[r.Op].Add(float64(r.Bytes))
	}
}

// errorKinds are the label values of the core's error kinds.
var errorKinds = []struct {
	kind  error
	label string
}{
	{core.ErrInvalidArgument, "invalid_argument"}, {core.ErrTopicNotFound, "topic_not_found"},
	{core.ErrGroupNotFound, "group_not_found"}, {core.ErrMemberNotFound, "member_not_found"},
	{core.ErrTopicExists, "topic_exists"}, {core.ErrOutOfRange, "out_of_range"},
	{core.ErrFailedPrecondition, "failed_precondition"}, {core.ErrConflict, "conflict"},
	{core.ErrNotOwner, "not_owner"}, {core.ErrUnavailable, "unavailable"},
	{core.ErrResourceExhausted, "resource_exhausted"}, {core.ErrDeadlineExceeded, "deadline_exceeded"},
	{core.ErrCanceled, "canceled"}, {core.ErrInternal, "internal"},
}

// errorKind is the label value of err's core kind ("other" for none).
func errorKind(err error) string {
	var ce *core.Error
	if errors.As(err, &ce) {
		for _, k := range errorKinds {
			if ce.Kind == k.kind {
				return k.label
			}
		}
	}
	return "other"
}

// Close stops the lag goroutine (if Watch started it) and waits for it. It
// is idempotent.
func (m *Metrics) Close() {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return
	}
	m.mu.closed = true
	watching := m.mu.watching
	m.mu.Unlock()
	close(m.stop)
	if watching {
		<-m.done
	}
}
