package flightserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// env is a broker with both front ends on loopback, and a client of each.
type env struct {
	b      *core.Broker
	fs     *flightserver.Server
	flight flight.Client
	grpc   stratapb.StrataClient
	addr   string // of the Flight server
}

// testConfig is a broker that seals at 32 KiB and keeps no sealed data on
// its disk, so a sealed range is read cold (from the object store through
// the block cache) and the unsealed tail from the local log.
func testConfig(t testing.TB, store tier.Store) core.Config {
	cfg := brokertest.Config(t, store)
	cfg.Partition.SealBytes, cfg.Partition.LocalRetentionBytes = 32<<10, 0
	return cfg
}

// start serves a broker with cfg over gRPC and Flight.
func start(t testing.TB, cfg core.Config, fcfg flightserver.Config) *env {
	t.Helper()
	b, _, addr := brokertest.StartServer(t, cfg, grpcserver.DefaultConfig())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fs, faddr := serveFlight(t, b, fcfg)
	fc, err := flight.NewClientWithMiddleware(faddr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return &env{b: b, fs: fs, flight: fc, grpc: stratapb.NewStrataClient(conn), addr: faddr}
}

// serveFlight serves a Flight front end of b on a loopback port, with
// the extra server options opts, until the test ends.
func serveFlight(t testing.TB, b *core.Broker, cfg flightserver.Config, opts ...grpc.ServerOption) (*flightserver.Server, string) {
	t.Helper()
	fs, err := flightserver.New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(fs.ServerOptions(), opts...)...)
	fs.Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return fs, lis.Addr().String()
}

// row is one row read back: a record and its partition.
type row struct {
	partition int32
	rec       segment.Record
}

// stream is what one DoGet returned.
type stream struct {
	rows    []row
	batches int
	report  *flightserver.Report
}

// doGet reads one ticket's stream with the arrow Flight client, checking
// that the schema is the default layout's.
func doGet(ctx context.Context, fc flight.Client, tkt *flight.Ticket) (*stream, error) {
	s, err := fc.DoGet(ctx, tkt)
	if err != nil {
		return nil, err
	}
	rdr, err := flight.NewRecordReader(s)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	want, _ := columnar.NewLayout(nil)
	if !rdr.Schema().Equal(want.Schema()) {
		return nil, errors.New("stream schema " + rdr.Schema().String() + " is not the default layout's")
	}
	out := &stream{}
	for rdr.Next() {
		rec := rdr.Record()
		out.batches++
		out.rows = append(out.rows, rowsOf(rec)...)
		if out.report != nil {
			return nil, errors.New("a batch came after the one with the report")
		}
		if r, ok := flightserver.ParseReport(rdr.LatestAppMetadata()); ok {
			out.report = &r
		}
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return out, err
	}
	return out, nil
}

// rowsOf converts a record batch of the default layout back to records,
// keeping nil keys, values and header values nil.
func rowsOf(rec arrow.Record) []row {
	part := rec.Column(0).(*array.Int32)
	off := rec.Column(1).(*array.Int64)
	ts := rec.Column(2).(*array.Timestamp)
	key := rec.Column(3).(*array.Binary)
	val := rec.Column(4).(*array.Binary)
	hdrs := rec.Column(5).(*array.List)
	hs := hdrs.ListValues().(*array.Struct)
	hk := hs.Field(0).(*array.String)
	hv := hs.Field(1).(*array.Binary)
	clone := func(a *array.Binary, i int) []byte {
		if a.IsNull(i) {
			return nil
		}
		return append([]byte{}, a.Value(i)...)
	}
	var out []row
	for i := 0; i < int(rec.NumRows()); i++ {
		r := segment.Record{Offset: off.Value(i), Timestamp: int64(ts.Value(i)), Key: clone(key, i), Value: clone(val, i)}
		start, end := hdrs.ValueOffsets(i)
		for j := start; j < end; j++ {
			r.Headers = append(r.Headers, segment.Header{Key: hk.Value(int(j)), Value: clone(hv, int(j))})
		}
		out = append(out, row{partition: part.Value(i), rec: r})
	}
	return out
}

// waitFor polls cond every 20ms for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
