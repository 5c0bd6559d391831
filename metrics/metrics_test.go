package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/leakcheck"
	"github.com/stratalog/strata/internal/scrape"
	"github.com/stratalog/strata/metrics"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newMetricsB(b *testing.B) *metrics.Metrics {
	cfg := metrics.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := metrics.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

func newMetrics(t *testing.T, edit func(*metrics.Config)) *metrics.Metrics {
	t.Helper()
	cfg := metrics.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if edit != nil {
		edit(&cfg)
	}
	m, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// get scrapes m through its HTTP handler, as Prometheus does.
func get(t *testing.T, m *metrics.Metrics) *scrape.Scrape {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	s, err := scrape.Get(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// At most MaxTopics topics get their own label value, in the order they
// are first used successfully; the rest are counted as OtherTopic, and a
// failed request never takes a slot.
func TestTopicLabelLimit(t *testing.T) {
	m := newMetrics(t, func(c *metrics.Config) { c.MaxTopics = 2 })
	notFound := &core.Error{Kind: core.ErrTopicNotFound, Msg: "no such topic"}
	m.OnProduce(core.ProduceEvent{Topic: "ghost", Acks: core.AcksDurable, Records: 5, Err: notFound})
	for i, topic := range []string{"a", "b", "c", "d", "a"} {
		m.OnProduce(core.ProduceEvent{Topic: topic, Acks: core.AcksLocal, Records: 10 + i, Bytes: 100})
	}
	m.OnFetch(core.FetchEvent{Topic: "e", Records: 3, Bytes: 30})
	m.OnFetch(core.FetchEvent{Topic: "b", Records: 4, Bytes: 40})
	m.OnSegmentSealed(core.SealEvent{Topic: "f", Bytes: 1000})

	s := get(t, m)
	if got := s.LabelValues("strata_produce_requests_total", "topic"); !slices.Equal(got, []string{metrics.OtherTopic, "a", "b"}) {
		t.Fatalf("produce topics %v, want a, b and %s", got, metrics.OtherTopic)
	}
	for _, c := range []struct {
		name, topic string
		want        float64
	}{
		{"strata_produce_records_total", "a", 10 + 14},
		{"strata_produce_records_total", "b", 11},
		{"strata_produce_records_total", metrics.OtherTopic, 12 + 13}, // c and d; ghost failed
		{"strata_produce_requests_total", metrics.OtherTopic, 3},      // ghost, c, d
		{"strata_produce_errors_total", metrics.OtherTopic, 1},
		{"strata_fetch_records_total", metrics.OtherTopic, 3},
		{"strata_fetch_records_total", "b", 4},
		{"strata_sealed_bytes_total", metrics.OtherTopic, 1000},
	} {
		if got := s.Sum(c.name, "topic", c.topic); got != c.want {
			t.Errorf("%s{topic=%q} = %v, want %v", c.name, c.topic, got, c.want)
		}
	}
	if !s.Has("strata_produce_errors_total", "topic", metrics.OtherTopic, "acks", "durable", "kind", "topic_not_found") {
		t.Errorf("the failed produce is not counted with its kind")
	}
	if got := s.Sum("strata_metrics_labeled_topics"); got != 2 {
		t.Errorf("strata_metrics_labeled_topics = %v, want 2", got)
	}
	if s.Has("strata_produce_records_total", "topic", "ghost") || s.Has("strata_fetch_records_total", "topic", "e") {
		t.Errorf("a topic past the limit has a label value of its own")
	}
}

// Every hook and the object-store observer move their metrics by what the
// event says.
func TestEventsCounted(t *testing.T) {
	m := newMetrics(t, nil)
	m.OnProduce(core.ProduceEvent{Topic: "t", Acks: core.AcksNone, Records: 7, Bytes: 70, Duration: time.Millisecond})
	m.OnProduce(core.ProduceEvent{Topic: "t", Acks: core.AcksDurable, Records: 3, Bytes: 30, Duration: 2 * time.Second})
	m.OnProduce(core.ProduceEvent{Topic: "t", Acks: core.Acks(9), Records: 1, Err: &core.Error{Kind: core.ErrInvalidArgument}})
	m.OnFetch(core.FetchEvent{Topic: "t", Records: 0})
	m.OnFetch(core.FetchEvent{Topic: "t", Records: 5, Bytes: 50})
	m.OnFetch(core.FetchEvent{Topic: "t", Records: 20, StoredBytes: 900})
	m.OnWALFlush(core.WALFlushEvent{Bytes: 4096, Records: 10, Attempts: 2, Duration: 30 * time.Millisecond})
	m.OnWALFlush(core.WALFlushEvent{Attempts: 1, Err: errors.New("fenced")})
	m.OnSegmentSealed(core.SealEvent{Topic: "t", Records: 10, Bytes: 2048})
	m.ObserveRequest(tier.Request{Op: tier.OpPutIfAbsent, Bytes: 4096, Duration: 20 * time.Millisecond})
	m.ObserveRequest(tier.Request{Op: tier.OpGetRange, Bytes: 100})
	m.ObserveRequest(tier.Request{Op: tier.OpStat, Err: tier.ErrNotFound})

	s := get(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"strata_produce_requests_total", []string{"acks", "none"}, 1},
		{"strata_produce_records_total", []string{"acks", "none"}, 7},
		{"strata_produce_bytes_total", []string{"acks", "durable"}, 30},
		{"strata_produce_errors_total", []string{"acks", "invalid", "kind", "invalid_argument"}, 1},
		{"strata_produce_duration_seconds_count", []string{"acks", "durable"}, 1},
		{"strata_produce_duration_seconds_sum", []string{"acks", "durable"}, 2},
		{"strata_produce_duration_seconds_count", []string{"acks", "invalid"}, 0}, // failed: not observed
		{"strata_fetch_responses_total", nil, 3},
		{"strata_fetch_records_total", nil, 25},
		{"strata_fetch_bytes_total", nil, 50},
		{"strata_fetch_stored_bytes_total", nil, 900},
		{"strata_wal_objects_total", nil, 1},
		{"strata_wal_bytes_total", nil, 4096},
		{"strata_wal_records_total", nil, 10},
		{"strata_wal_upload_attempts_total", nil, 3},
		{"strata_wal_flush_failures_total", nil, 1},
		{"strata_wal_flush_duration_seconds_count", nil, 1},
		{"strata_sealed_segments_total", nil, 1},
		{"strata_sealed_bytes_total", nil, 2048},
		{"strata_object_store_requests_total", []string{"operation", "put-if-absent", "result", "ok"}, 1},
		{"strata_object_store_requests_total", []string{"operation", "stat", "result", "not_found"}, 1},
		{"strata_object_store_bytes_total", []string{"operation", "put-if-absent"}, 4096},
		{"strata_object_store_bytes_total", []string{"operation", "get-range"}, 100},
		{"strata_object_store_request_duration_seconds_count", []string{"operation", "stat"}, 1},
	} {
		if got := s.Sum(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// 2 s lands in the 2.048 s bucket and above, not below.
	if got := s.Sum("strata_produce_duration_seconds_bucket", "acks", "durable", "le", "1.024"); got != 0 {
		t.Errorf("a 2s produce is in the 1.024s bucket")
	}
	if got := s.Sum("strata_produce_duration_seconds_bucket", "acks", "durable", "le", "2.048"); got != 1 {
		t.Errorf("a 2s produce is not in the 2.048s bucket")
	}
}

// fakeBroker is a Broker with fixed stats and groups.
type fakeBroker struct {
	groups []string
	failed string // DescribeGroup of this group fails
}

func (f *fakeBroker) Stats() core.Stats {
	var s core.Stats
	s.Cache.Hits, s.Cache.Misses, s.Cache.BytesFetched, s.WAL.Buffered = 9, 3, 1234, 77
	return s
}

func (f *fakeBroker) OpenPartitions() int { return 5 }

func (f *fakeBroker) LagGroups(context.Context) ([]string, error) { return f.groups, nil }

func (f *fakeBroker) DescribeGroup(_ context.Context, g string) (*core.GroupDescription, error) {
	if g == f.failed {
		return nil, &core.Error{Kind: core.ErrUnavailable, Msg: "store down"}
	}
	return &core.GroupDescription{Group: g, Topic: "t", Lag: []core.PartitionLag{
		{Partition: 0, LagRecords: 4, LagSeconds: 1.5}, {Partition: 1, LagRecords: 0},
	}}, nil
}

// What is read from the broker is exported at the scrape: cache and WAL
// counters, partitions owned, and the latest lag round within its limits.
func TestWatch(t *testing.T) {
	m := newMetrics(t, func(c *metrics.Config) {
		c.MaxLagGroups, c.MaxLagPartitions = 3, 4 // 2 partitions per group: 2 groups fit
		c.LagInterval = time.Hour                 // only the first round runs by itself
	})
	b := &fakeBroker{groups: []string{"g1", "g2", "g3", "g4", "g5"}, failed: "g2"}
	if err := m.Watch(b); err != nil {
		t.Fatal(err)
	}
	if err := m.Watch(b); err == nil {
		t.Fatal("a second Watch was accepted")
	}
	m.RefreshLag(context.Background(), b)
	s := get(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"strata_cache_hits_total", nil, 9},
		{"strata_cache_misses_total", nil, 3},
		{"strata_cache_fetched_bytes_total", nil, 1234},
		{"strata_wal_buffered_bytes", nil, 77},
		{"strata_partitions_owned", nil, 5},
		{"strata_consumer_lag_records", []string{"group", "g1", "topic", "t", "partition", "0"}, 4},
		{"strata_consumer_lag_seconds", []string{"group", "g1", "partition", "0"}, 1.5},
		{"strata_consumer_lag_records", []string{"group", "g3", "partition", "1"}, 0},
		// g4 and g5: over MaxLagGroups (g4 would also pass MaxLagPartitions).
		{"strata_consumer_lag_omitted_groups", nil, 2},
	} {
		if got := s.Sum(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := s.LabelValues("strata_consumer_lag_records", "group"); !slices.Equal(got, []string{"g1", "g3"}) {
		t.Errorf("lag reported for groups %v, want g1 and g3 (g2 failed, the rest over the limits)", got)
	}
	if s.Sum("strata_consumer_lag_errors_total") < 1 || s.Sum("strata_consumer_lag_updated_timestamp_seconds") <= 0 {
		t.Errorf("the failed group is not counted, or the round's time is missing")
	}
}

// The interceptors count every call by full method name and status code,
// unary and streaming; with a real broker, the hooks and the observed
// store count what the calls did.
func TestBrokerThroughGRPC(t *testing.T) {
	ctx := context.Background()
	m := newMetrics(t, nil)
	cfg := brokertest.Config(t, tier.NewObservedStore(tier.NewMemStore(), m))
	cfg.Hooks = []core.Hook{m}
	b, _, addr := brokertest.StartServer(t, cfg, grpcserver.DefaultConfig(),
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(m.StreamServerInterceptor()))
	if err := m.Watch(b); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := stratapb.NewStrataClient(conn)
	if _, err := api.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	const requests, perRequest, valueBytes = 5, 20, 100
	value := bytes.Repeat([]byte("v"), valueBytes)
	for i := 0; i < requests; i++ {
		req := &stratapb.ProduceRequest{Topic: "t", Partition: int32(i % 2), Acks: stratapb.Acks_ACKS_DURABLE}
		for j := 0; j < perRequest; j++ {
			req.Records = append(req.Records, &stratapb.Record{Value: value})
		}
		if _, err := api.Produce(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.Produce(ctx, &stratapb.ProduceRequest{Topic: "missing", Partition: -1, Records: []*stratapb.Record{{Value: value}}}); err == nil {
		t.Fatal("produce to a missing topic succeeded")
	}
	fetched := 0
	for p := int32(0); p < 2; p++ {
		stream, err := api.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: p, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxWaitMs: 1})
		if err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			fetched += len(resp.GetRecords())
		}
	}
	s := get(t, m)
	want := map[string]float64{
		"strata_produce_records_total":  requests * perRequest,
		"strata_produce_bytes_total":    requests * perRequest * valueBytes,
		"strata_produce_requests_total": requests + 1,
		"strata_fetch_records_total":    float64(fetched),
		"strata_fetch_bytes_total":      float64(fetched * valueBytes),
		"strata_wal_records_total":      requests * perRequest,
		"strata_partitions_owned":       2,
	}
	for name, w := range want {
		if got := s.Sum(name); got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	if fetched == 0 {
		t.Errorf("fetched nothing")
	}
	const svc = "/strata.v1.Strata/"
	for _, c := range []struct {
		method, code string
		want         float64
	}{
		{"Produce", "OK", requests}, {"Produce", "NotFound", 1}, {"Fetch", "OK", 2}, {"CreateTopic", "OK", 1},
	} {
		if got := s.Sum("strata_grpc_requests_total", "method", svc+c.method, "code", c.code); got != c.want {
			t.Errorf("strata_grpc_requests_total{method=%s,code=%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	// Every WAL object stored is one put-if-absent the observed store saw.
	if puts, objects := s.Sum("strata_object_store_requests_total", "operation", "put-if-absent", "result", "ok"), s.Sum("strata_wal_objects_total"); objects < 1 || puts < objects {
		t.Errorf("%v put-if-absent requests for %v WAL objects", puts, objects)
	}
	if got := s.Sum("strata_object_store_bytes_total", "operation", "put-if-absent"); got < s.Sum("strata_wal_bytes_total") {
		t.Errorf("object-store put-if-absent bytes %v below the WAL's %v", got, s.Sum("strata_wal_bytes_total"))
	}
}

func TestConfigRefused(t *testing.T) {
	for _, edit := range []func(*metrics.Config){
		func(c *metrics.Config) { c.MaxTopics = -1 },
		func(c *metrics.Config) { c.LagInterval = 0 },
		func(c *metrics.Config) { c.Logger = nil },
	} {
		cfg := metrics.DefaultConfig()
		edit(&cfg)
		if _, err := metrics.New(cfg); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
			t.Errorf("config %+v: %v", cfg, err)
		}
	}
}
