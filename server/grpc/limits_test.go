package grpcserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

// testConfig is a broker's and its front end's config.
type testConfig struct {
	core.Config
	Limits Limits
}

// serveLoopback runs a core broker and its front end, with the front
// end's server options, on a loopback port (internal/brokertest does the
// same; it imports this package, so this package's own tests cannot use
// it).
func serveLoopback(t *testing.T, cfg testConfig) (*Server, string) {
	t.Helper()
	b, err := core.New(cfg.Config)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(b, Config{Limits: cfg.Limits})
	if err != nil {
		b.Close(context.Background())
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(s.ServerOptions()...)
	stratapb.RegisterStrataServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(func() {
		srv.Stop()
		b.Close(context.Background())
	})
	return s, lis.Addr().String()
}

func newTestConfig(t *testing.T, store tier.Store) testConfig {
	cfg := core.DefaultConfig()
	cfg.DataDir, cfg.Store = t.TempDir(), store
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return testConfig{Config: cfg, Limits: DefaultLimits()}
}

func dialLoopback(t *testing.T, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, stratapb.StrataClient) {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, stratapb.NewStrataClient(conn)
}

// rawBytes sends and receives messages as the bytes they are, so a test
// can send what no well-behaved client builds (and builds it once, without
// the client's memory in the measurement).
type rawBytes struct{}

func (rawBytes) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawBytes) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawBytes) Name() string                       { return "proto" }

var _ encoding.Codec = rawBytes{}

// rawProduce encodes a ProduceRequest for topic t, partition 0, of n
// records with no key and no value, each with h empty headers.
func rawProduce(n, h int) []byte {
	var rec []byte
	for i := 0; i < h; i++ {
		rec = protowire.AppendTag(rec, recordHeadersField, protowire.BytesType)
		rec = protowire.AppendBytes(rec, nil)
	}
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, "t")
	for i := 0; i < n; i++ {
		msg = protowire.AppendTag(msg, produceRecordsField, protowire.BytesType)
		msg = protowire.AppendBytes(msg, rec)
	}
	return msg
}

func heapNow() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func mustCreate(t *testing.T, c stratapb.StrataClient, cfg *stratapb.TopicConfig) {
	t.Helper()
	if _, err := c.CreateTopic(context.Background(), &stratapb.CreateTopicRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
}

// roundTrip produces one record to t/0 and reads it back: the broker still
// serves normal work.
func roundTrip(t *testing.T, c stratapb.StrataClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: []byte("after")}}})
	if err != nil {
		t.Fatalf("a normal produce afterwards: %v", err)
	}
	s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: 0, Start: &stratapb.FetchRequest_Offset{Offset: resp.Offsets[0]}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || len(m.Records) == 0 || string(m.Records[0].Value) != "after" {
		t.Fatalf("a normal fetch afterwards: %v %v", m, err)
	}
}

// Empty records and headers cost their overhead, and a request over a
// per-request limit is refused with a message naming the limit.
func TestProduceLimitsCountOverhead(t *testing.T) {
	l := DefaultLimits()
	if c := recordCost(&stratapb.Record{}); c != core.RecordOverheadBytes {
		t.Fatalf("an empty record costs %d, want %d", c, core.RecordOverheadBytes)
	}
	if c := recordCost(&stratapb.Record{Headers: []*stratapb.Header{{}, {}}}); c != core.RecordOverheadBytes+2*core.HeaderOverheadBytes {
		t.Fatalf("a record with two empty headers costs %d", c)
	}
	for _, tc := range []struct {
		name  string
		shape produceShape
		says  string
	}{
		{"records", produceShape{records: l.MaxRecordsPerRequest + 1, cost: 1}, "100001 records, over the limit of 100000 per request"},
		{"headers", produceShape{records: 3, maxHeaders: l.MaxHeadersPerRecord + 1, maxHeadersAt: 2}, "record 2 has 1001 headers, over the limit of 1000"},
		{"cost", produceShape{records: 1, cost: l.MaxProduceBytes + 1}, "over the limit of 33554432 per request"},
	} {
		err := l.checkShape(tc.shape)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "nothing was written") {
			t.Errorf("%s: %v; want INVALID_ARGUMENT saying %q", tc.name, err, tc.says)
		}
	}
	if err := l.checkShape(produceShape{records: l.MaxRecordsPerRequest, maxHeaders: l.MaxHeadersPerRecord, cost: l.MaxProduceBytes}); err != nil {
		t.Fatalf("a request at every limit: %v", err)
	}
}

func produceRequests() []*stratapb.ProduceRequest {
	return []*stratapb.ProduceRequest{
		{Topic: "t"},
		{Topic: "t", Partition: 3, Acks: stratapb.Acks_ACKS_LOCAL, ProducerId: 7, BaseSequence: 9, Records: []*stratapb.Record{{}}},
		{Topic: "orders", Records: []*stratapb.Record{
			{Key: []byte("k"), Value: []byte("value"), TimestampMs: 5},
			{Key: []byte{}, Headers: []*stratapb.Header{{Key: "a", Value: []byte("b")}, {}, {Key: "long", Value: make([]byte, 300)}}},
			{Value: make([]byte, 700), Offset: 3, Partition: 2},
		}},
	}
}

// The wire scan sees what decoding sees.
func TestScanProduceMatchesDecode(t *testing.T) {
	for i, req := range produceRequests() {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := scanProduce(b)
		if want := shapeOf(req); !ok || got != want {
			t.Errorf("request %d: scan %+v %v, decoded %+v", i, got, ok, want)
		}
	}
	// Duplicated scalar fields count once (the last wins), a known field
	// number with another wire type is an unknown field.
	rec := protowire.AppendTag(nil, recordValueField, protowire.BytesType)
	rec = protowire.AppendBytes(rec, make([]byte, 100))
	rec = protowire.AppendTag(rec, recordValueField, protowire.BytesType)
	rec = protowire.AppendBytes(rec, make([]byte, 7))
	rec = protowire.AppendTag(rec, recordKeyField, protowire.VarintType)
	rec = protowire.AppendVarint(rec, 12345)
	msg := protowire.AppendTag(nil, produceRecordsField, protowire.BytesType)
	msg = protowire.AppendBytes(msg, rec)
	msg = protowire.AppendTag(msg, produceRecordsField, protowire.Fixed32Type)
	msg = protowire.AppendFixed32(msg, 1)
	var req stratapb.ProduceRequest
	if err := proto.Unmarshal(msg, &req); err != nil {
		t.Fatal(err)
	}
	if got, ok := scanProduce(msg); !ok || got != shapeOf(&req) || got.cost != core.RecordOverheadBytes+7 {
		t.Fatalf("scan %+v %v, decoded %+v", got, ok, shapeOf(&req))
	}
	for _, bad := range [][]byte{{0x1a}, {0x1a, 5, 0}, {0x1a, 2, 0x1a, 9}, {0x00}} {
		if _, ok := scanProduce(bad); ok {
			t.Errorf("%x: scanned as valid", bad)
		}
	}
}

// FuzzScanProduce: the pre-scan never panics, and whenever protobuf
// decodes the input, the scan accepts it and counts what was decoded.
func FuzzScanProduce(f *testing.F) {
	for _, req := range produceRequests() {
		b, _ := proto.Marshal(req)
		f.Add(b)
	}
	f.Add(rawProduce(3, 2))
	f.Add([]byte{0x1a, 0x02, 0x1a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := scanProduce(b)
		var req stratapb.ProduceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return
		}
		if want := shapeOf(&req); !ok || got != want {
			t.Fatalf("scan %+v %v, decoded %+v", got, ok, want)
		}
		again, _ := scanProduce(b)
		if again != got {
			t.Fatalf("scan is not deterministic: %+v then %+v", got, again)
		}
	})
}

// Topic sizes have ranges, checked on create and on load, and the message
// says the range. retention_ms = MaxInt64 used to be accepted (every
// produce then failed with INTERNAL); 18446744073710 wrapped to a
// retention of half a millisecond.
func TestTopicSizeRanges(t *testing.T) {
	_, addr := serveLoopback(t, newTestConfig(t, tier.NewMemStore()))
	_, c := dialLoopback(t, addr)
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  *stratapb.TopicConfig
		says string
	}{
		{&stratapb.TopicConfig{RetentionMs: math.MaxInt64}, "retention_ms 9223372036854775807 is out of range: use 0 (keep forever) or 1 to 3155760000000 (100 years)"},
		{&stratapb.TopicConfig{RetentionMs: 18446744073710}, "retention_ms 18446744073710 is out of range"},
		{&stratapb.TopicConfig{RetentionMs: -1}, "retention_ms -1 is out of range"},
		{&stratapb.TopicConfig{RetentionBytes: math.MaxInt64}, "retention_bytes 9223372036854775807 is out of range: use 0 (no size limit) or 1 to 1152921504606846976 (1 EiB)"},
		{&stratapb.TopicConfig{SegmentBytes: 1}, "segment_bytes 1 is out of range: use 0 (the broker's default) or 65536 (64 KiB) to 1073741824 (1 GiB)"},
		{&stratapb.TopicConfig{SegmentBytes: 5 << 30}, "segment_bytes 5368709120 is out of range"},
	} {
		tc.cfg.Name, tc.cfg.Partitions = "bad", 1
		_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: tc.cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v; want INVALID_ARGUMENT saying %q", tc.cfg, err, tc.says)
		}
	}
	mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1, RetentionMs: core.MaxRetentionMs, RetentionBytes: core.MaxRetentionBytes, SegmentBytes: core.MaxSegmentBytes})
	roundTrip(t, c)
}

// The front end's limits are checked, and against the broker's
// MaxRecordBytes (the broker's own object sizes: core's
// TestConfigBoundsObjectSizes).
func TestLimitsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		set  func(*testConfig)
		says string
	}{
		{func(c *testConfig) { c.MaxRecordBytes = 64 << 20 }, "MaxRecordBytes 67108864 is over"},
		{func(c *testConfig) { c.Limits.ProduceBufferBytes = 1 << 20 }, "ProduceBufferBytes 1048576 is below MaxProduceBytes"},
		{func(c *testConfig) { c.Limits.StreamWindowBytes = 1000 }, "at least 64 KiB"},
	} {
		cfg := newTestConfig(t, tier.NewMemStore())
		tc.set(&cfg)
		b, err := core.New(cfg.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(b, Config{Limits: cfg.Limits}); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v; want %q", err, tc.says)
		}
		b.Close(context.Background())
	}
}

// Fetch budgets: a stream that cannot get its share blocks (it does not
// spin: synctest.Wait returns only once every goroutine is blocked) until
// bytes are released, by its own earlier responses (per stream) or by
// other streams (broker-wide); a stream whose context ends stops counting.
func TestFetchBudgetWaitsUntilReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget("fetch responses", 100)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s1 := b.stream(ctx, 60)
		first, err := s1.acquire(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *lease)
		go func() {
			l, _ := s1.acquire(ctx, 10) // 60 outstanding + 10 > the stream's 60
			got <- l
		}()
		synctest.Wait()
		if st := b.state(); st.waiting != 1 || st.used != 60 {
			t.Fatalf("state %+v: want one stream waiting on its own limit", st)
		}
		first.release()
		second := <-got
		if st := b.state(); st.used != 10 || st.waiting != 0 {
			t.Fatalf("state %+v after the first response was written", st)
		}

		// Broker-wide: s2 waits for s1's bytes.
		s2ctx, s2cancel := context.WithCancel(ctx)
		s2 := b.stream(s2ctx, 1000)
		big, err := s2.acquire(s2ctx, 90)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error)
		var third *lease
		go func() {
			var err error
			third, err = s1.acquire(ctx, 20)
			errc <- err
		}()
		synctest.Wait()
		if st := b.state(); st.waiting != 1 || st.used != 100 {
			t.Fatalf("state %+v: want s1 waiting on the broker's budget", st)
		}
		// s2 ends without releasing (its transport dropped the bytes):
		// they stop counting and s1 proceeds.
		s2cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		big.release() // late release of a dropped stream's lease: no double count
		if st := b.state(); st.used != 30 {
			t.Fatalf("used %d, want 30 (s1's two leases)", st.used)
		}

		// A waiter whose context ends gives up with its error.
		s3ctx, s3cancel := context.WithCancel(ctx)
		s3 := b.stream(s3ctx, 1000)
		go func() {
			_, err := s3.acquire(s3ctx, 100)
			errc <- err
		}()
		synctest.Wait()
		s3cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled waiter: %v", err)
		}
		second.release()
		third.release()
		s1.finish(ctx)
		if st := b.state(); st.used != 0 || st.waiting != 0 {
			t.Fatalf("state %+v after every stream finished", st)
		}
	})
}

// The codec hands a large response's lease to its encoded bytes: the lease
// ends when the transport frees them, not when SendMsg returns.
func TestCodecLeaseFollowsEncodedBytes(t *testing.T) {
	b := newBudget("fetch responses", 64<<20)
	ctx := context.Background()
	s := b.stream(ctx, 64<<20)
	l, err := s.acquire(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	c := &serverCodec{proto: encoding.GetCodecV2("proto"), lim: newLimiter(DefaultLimits())}
	out := &stratapb.FetchResponse{Records: []*stratapb.Record{{Value: make([]byte, 300<<10)}}}
	m := &leasedResponse{FetchResponse: out, lease: l}
	data, err := c.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !m.transferred || l.Size() < int64(proto.Size(out)) || b.state().used != l.Size() {
		t.Fatalf("lease %d (used %d) for %d encoded bytes, transferred %v", l.Size(), b.state().used, proto.Size(out), m.transferred)
	}
	encoded := data.Materialize()
	// The default codec marshals a leasedResponse as the response it
	// wraps, to the same bytes.
	plain, err := encoding.GetCodecV2("proto").Marshal(&leasedResponse{FetchResponse: out})
	if err != nil || !bytes.Equal(plain.Materialize(), encoded) {
		t.Fatalf("default codec: %v", err)
	}
	plain.Free()
	data.Ref()  // the transport takes its own reference while it writes
	data.Free() // SendMsg is done with it
	if used := b.state().used; used == 0 {
		t.Fatal("the lease ended while the transport still held the bytes")
	}
	data.Free() // the transport wrote the last byte
	if used := b.state().used; used != 0 {
		t.Fatalf("%d bytes still counted after the transport freed the response", used)
	}
}

// A negative fetch offset is the caller's mistake: INVALID_ARGUMENT, not
// INTERNAL.
func TestNegativeFetchOffsetIsInvalidArgument(t *testing.T) {
	_, addr := serveLoopback(t, newTestConfig(t, tier.NewMemStore()))
	_, c := dialLoopback(t, addr)
	mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1})
	s, err := c.Fetch(context.Background(), &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Offset{Offset: -5}})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "-5 is negative") {
		t.Fatalf("fetch from -5: %v; want INVALID_ARGUMENT", err)
	}
}

// raceStore blocks segment reads while armed until the segment read is
// deleted (as retention does), then lets the read go on to a missing
// object.
type raceStore struct {
	tier.Store
	mu      sync.Mutex
	armed   bool
	blocked chan string // the key of the first blocked read
	deleted map[string]chan struct{}
}

func (s *raceStore) hold(key string) {
	if !strings.Contains(key, "/segments/") {
		return
	}
	s.mu.Lock()
	if !s.armed {
		s.mu.Unlock()
		return
	}
	ch, ok := s.deleted[key]
	if !ok {
		ch = make(chan struct{})
		s.deleted[key] = ch
		select {
		case s.blocked <- key:
		default:
		}
	}
	s.mu.Unlock()
	<-ch
}

func (s *raceStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	s.hold(key)
	return s.Store.Get(ctx, key)
}

func (s *raceStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.hold(key)
	return s.Store.GetRange(ctx, key, off, n)
}

func (s *raceStore) Delete(ctx context.Context, key string) error {
	err := s.Store.Delete(ctx, key)
	s.mu.Lock()
	if ch, ok := s.deleted[key]; ok {
		close(ch)
		delete(s.deleted, key)
	} else if s.armed {
		s.deleted[key] = closedChan()
	}
	s.mu.Unlock()
	return err
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// A cold read whose segment retention deletes under it answers
// OUT_OF_RANGE with the new log start, not INTERNAL.
func TestReadRacingRetentionIsOutOfRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := &raceStore{Store: storetest.File(t), blocked: make(chan string, 1), deleted: map[string]chan struct{}{}}
	cfg := newTestConfig(t, store)
	cfg.Partition.SealBytes, cfg.Partition.LocalRetentionBytes = 32<<10, 0
	a, addr := serveLoopback(t, cfg)
	_, c := dialLoopback(t, addr)
	// Keep only the newest segment.
	mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1, RetentionBytes: 1})
	produce := func(c stratapb.StrataClient, n int) {
		t.Helper()
		recs := make([]*stratapb.Record, n)
		for i := range recs {
			recs[i] = &stratapb.Record{Value: make([]byte, 1000)}
		}
		if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	produce(c, 40)
	if err := a.Core().Close(ctx); err != nil { // seals everything
		t.Fatal(err)
	}

	// A second broker with an empty disk owns the partition (a write
	// claimed it; its reads then use the owner's manifest): every read of
	// the sealed data is cold.
	cfg.DataDir = t.TempDir()
	_, addr2 := serveLoopback(t, cfg)
	_, c2 := dialLoopback(t, addr2)
	produce(c2, 1)
	d, err := c2.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	start := d.Partitions[0].LogStartOffset
	store.mu.Lock()
	store.armed = true
	store.mu.Unlock()
	errc := make(chan error, 1)
	go func() {
		s, err := c2.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Offset{Offset: start}})
		if err == nil {
			var m *stratapb.FetchResponse
			m, err = s.Recv()
			if err == nil {
				err = errors.New("got records: " + m.String()[:min(80, len(m.String()))])
			}
		}
		errc <- err
	}()
	select {
	case <-store.blocked:
	case err := <-errc:
		t.Fatalf("the read ended before it reached the segment: %v", err)
	}
	// Seal a newer segment: retention drops the one being read.
	produce(c2, 40)
	err = <-errc
	if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("read racing retention: %v; want OUT_OF_RANGE", err)
	}
}

// The hostile produce requests, sent to a loopback broker: 4 MiB
// of empty records (the old code allocated ~1.5 GiB for it, ~385x its wire
// size, and stored all 2M records), 4 MiB of empty headers on one record,
// 16 MiB of records with 1,000 headers each, and a 60 MiB message. Each is
// refused before it is decoded; the bytes allocated while serving it stay
// within a few times its wire size, and normal work goes on.
func TestHostileProduceIsRefusedBeforeDecoding(t *testing.T) {
	_, addr := serveLoopback(t, newTestConfig(t, storetest.File(t)))
	_, c := dialLoopback(t, addr)
	mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1})
	raw, _ := dialLoopback(t, addr, grpc.WithDefaultCallOptions(grpc.ForceCodec(rawBytes{})))
	for _, tc := range []struct {
		name string
		msg  func() []byte
		code codes.Code
		says string
	}{
		{"4 MiB of empty records", func() []byte { return rawProduce(2_000_000, 0) }, codes.InvalidArgument, "2000000 records, over the limit of 100000 per request"},
		{"4 MiB of empty headers", func() []byte { return rawProduce(1, 2_000_000) }, codes.InvalidArgument, "record 0 has 2000000 headers, over the limit of 1000"},
		{"16 MiB of 1000-header records", func() []byte { return rawProduce(8000, 1000) }, codes.InvalidArgument, "over the limit of 33554432 per request"},
		{"60 MiB of empty records", func() []byte { return rawProduce(30_000_000, 0) }, codes.ResourceExhausted, "larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.msg()
			before := heapNow()
			var out []byte
			err := raw.Invoke(context.Background(), "/strata.v1.Strata/Produce", &msg, &out)
			after := heapNow()
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d wire bytes: %d bytes allocated while serving (%.1fx); heap in use %d -> %d MiB; %v",
				len(msg), alloc, float64(alloc)/float64(len(msg)), before.HeapInuse>>20, after.HeapInuse>>20, err)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%v; want %v saying %q", err, tc.code, tc.says)
			}
			if alloc > 4*uint64(len(msg)) {
				t.Fatalf("serving it allocated %d bytes, over 4x its %d wire bytes", alloc, len(msg))
			}
		})
	}
	d, err := c.DescribeTopic(context.Background(), &stratapb.DescribeTopicRequest{Name: "t"})
	if err != nil || d.Partitions[0].HighWatermark != 0 {
		t.Fatalf("refused requests were stored: %v %v", d, err)
	}
	roundTrip(t, c)
}

// holdWALStore blocks WAL object PUTs until release is closed: durable
// produce requests stay in flight.
type holdWALStore struct {
	tier.Store
	release chan struct{}
}

func (s *holdWALStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, n int64) (tier.ObjectInfo, error) {
	if strings.HasPrefix(key, "wal/") {
		<-s.release
	}
	return s.Store.PutIfAbsent(ctx, key, r, n)
}

// The broker-wide produce budget: requests waiting for their ack hold
// their share; one that does not fit is refused with RESOURCE_EXHAUSTED
// (retryable; nothing of it is written), and once the others are answered
// the same request is taken.
func TestProduceBudgetRefusesWhenFull(t *testing.T) {
	store := &holdWALStore{Store: tier.NewMemStore(), release: make(chan struct{})}
	cfg := newTestConfig(t, store)
	cfg.Limits.MaxProduceBytes, cfg.Limits.ProduceBufferBytes = 20<<20, 20<<20 // room for one 15 MiB request
	b, addr := serveLoopback(t, cfg)
	_, c := dialLoopback(t, addr)
	mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1})
	big := make([]*stratapb.Record, 15)
	for i := range big {
		big[i] = &stratapb.Record{Value: make([]byte, 1000<<10)}
	}
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: big})
		done <- err
	}()
	for st := b.lim.produce.state(); st.used == 0; st = b.lim.produce.state() {
		select { // until the first request holds its share
		case <-st.changed:
		case err := <-done:
			t.Fatalf("the first request ended: %v", err)
		case <-time.After(time.Minute): // a guard against a hang, not a timing assertion
			t.Fatal("the first request never took its share of the produce budget")
		}
	}
	_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: big})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "nothing was written: retry after a backoff") {
		t.Fatalf("a request over the produce budget: %v", err)
	}
	close(store.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := b.lim.produce.state(); st.used != 0 {
		t.Fatalf("%d bytes of the produce budget still held after every request was answered", st.used)
	}
	if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: big}); err != nil {
		t.Fatalf("the same request once the budget is free: %v", err)
	}
	roundTrip(t, c)
}

// The stalled followers: 100 follow streams that never read, with
// the default max_bytes and with 64 MiB. The old code held every response
// each stream had built: ~3.3 MiB per stream with the default, ~30 MiB
// per stream with 64 MiB, without bound. Now what they hold stays within
// the fetch budget (48 MiB here), the broker keeps serving produce while
// they stall, and everything is released when they go away.
func TestStalledFollowersCostBoundedMemory(t *testing.T) {
	const streams, budgetBytes = 100, 48 << 20
	for _, maxBytes := range []int32{0, 64 << 20} {
		t.Run(map[int32]string{0: "default max_bytes", 64 << 20: "64 MiB max_bytes"}[maxBytes], func(t *testing.T) {
			cfg := newTestConfig(t, storetest.File(t))
			cfg.Limits.FetchBufferBytes = budgetBytes
			b, addr := serveLoopback(t, cfg)
			_, c := dialLoopback(t, addr)
			mustCreate(t, c, &stratapb.TopicConfig{Name: "t", Partitions: 1})
			ctx := context.Background()
			for i := 0; i < 24; i++ { // 24 MiB of 100-byte values
				recs := make([]*stratapb.Record, 10000)
				for j := range recs {
					recs[j] = &stratapb.Record{Value: make([]byte, 100)}
				}
				if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: recs}); err != nil {
					t.Fatal(err)
				}
			}
			before := heapNow()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var conns []stratapb.StrataClient
			for i := 0; i < streams/10; i++ { // windows that fill at once: the client buffers 64 KiB per connection
				_, sc := dialLoopback(t, addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
				conns = append(conns, sc)
			}
			for i := 0; i < streams; i++ {
				if _, err := conns[i%len(conns)].Fetch(sctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Earliest{Earliest: true}, Follow: true, MaxBytes: maxBytes}); err != nil {
					t.Fatal(err)
				}
			}
			// Measure once every stream is blocked (waiting for budget, or
			// inside a send of an encoded response its reader never takes)
			// and stays so: no budget change between the snapshot and the
			// measurement.
			var stalled runtime.MemStats
			var st budgetState
			guard := time.After(2 * time.Minute) // against a hang, not a timing assertion
			for {
				st = b.lim.fetch.state()
				if st.waiting+st.sending < streams {
					select {
					case <-st.changed:
					case <-guard:
						t.Fatalf("the streams never all blocked: %+v", st)
					}
					continue
				}
				stalled = heapNow()
				select {
				case <-st.changed:
					continue
				default:
				}
				break
			}
			growth := int64(stalled.HeapInuse) - int64(before.HeapInuse)
			t.Logf("%d stalled streams: heap in use %d -> %d MiB (%.2f MiB per stream; live objects %d -> %d MiB); budget %d of %d MiB, %d waiting, %d in send",
				streams, before.HeapInuse>>20, stalled.HeapInuse>>20, float64(growth)/streams/(1<<20), before.HeapAlloc>>20, stalled.HeapAlloc>>20, st.used>>20, st.limit>>20, st.waiting, st.sending)
			if st.used > budgetBytes+int64(cfg.MaxRecordBytes)*streams {
				t.Fatalf("the streams hold %d bytes of a %d-byte budget", st.used, budgetBytes)
			}
			if limit := int64(budgetBytes + 16<<20); growth > limit {
				t.Fatalf("heap grew by %d MiB with %d stalled streams, over %d MiB", growth>>20, streams, limit>>20)
			}
			// Produce goes on while the readers stall.
			if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: []byte("x")}}}); err != nil {
				t.Fatal(err)
			}
			cancel()
			for st := b.lim.fetch.state(); st.used != 0 || st.waiting != 0 || st.sending != 0; st = b.lim.fetch.state() {
				<-st.changed
			}
			// A reader that does read gets responses of at most
			// MaxFetchBytes (plus one record), whatever it asked for.
			s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: maxBytes})
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			limit := 1<<20 + cfg.MaxRecordBytes // max_bytes 0: 1 MiB
			if maxBytes > 0 {
				limit = int(cfg.Limits.MaxFetchBytes) + cfg.MaxRecordBytes
			}
			if size := proto.Size(m); len(m.Records) == 0 || size > limit {
				t.Fatalf("a fetch with max_bytes %d: %d records in %d bytes, want 1 to %d bytes", maxBytes, len(m.Records), size, limit)
			}
			roundTrip(t, c)
		})
	}
}
