package flightserver_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	flightserver "github.com/stratalog/strata/server/flight"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// benchValue is the ~1 KiB JSON-like record of the fetch package's cold
// replay benchmark (a random part, so it compresses 2-3x like event data).
func benchValue(rng *rand.Rand, off int64) []byte {
	raw := make([]byte, 300)
	for i := range raw {
		raw[i] = byte(rng.IntN(64))
	}
	return fmt.Appendf(nil, `{"offset":%d,"user":"user-%05d","event":"checkout","items":[{"sku":"sku-%04d","qty":%d}],"session":"%s","note":"%s"}`,
		off, rng.IntN(50000), rng.IntN(9999), 1+rng.IntN(5), base64.StdEncoding.EncodeToString(raw),
		"the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog")
}

// smallValue is a ~100-byte event (a metric sample, a click): where a
// record's fixed costs, not its bytes, dominate.
func smallValue(rng *rand.Rand, off int64) []byte {
	return fmt.Appendf(nil, `{"host":"web-%03d","metric":"latency_ms","value":%d,"seq":%d}`, rng.IntN(500), rng.IntN(100000), off)
}

// benchData is a sealed topic of one partition in a store.
type benchData struct {
	store    tier.Store
	topic    string
	records  int64
	payload  int64    // key + value bytes of all records
	segments [][]byte // the sealed segment objects, for decode-only
	stored   int64
}

// seedBenchTopic produces payloadBytes of records to topic "bench" through
// a broker whose partitions seal at 16 MiB, closes it (which seals the
// rest) and reads the segments back.
func seedBenchTopic(b *testing.B, store tier.Store, topic string, payloadBytes int64, value func(*rand.Rand, int64) []byte) *benchData {
	b.Helper()
	ctx := context.Background()
	cfg := brokertest.Config(b, store)
	cfg.Partition.SealBytes, cfg.Partition.LocalRetentionBytes = 16<<20, 0
	br, err := core.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := br.CreateTopic(ctx, core.TopicConfig{Name: topic, Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	d := &benchData{store: store, topic: topic}
	rng := rand.New(rand.NewPCG(7, 7))
	for off := int64(0); d.payload < payloadBytes; {
		recs := make([]segment.Record, 1000)
		for i := range recs {
			recs[i] = segment.Record{Timestamp: 1_700_000_000_000 + off, Key: fmt.Appendf(nil, "user-%05d", off%50000), Value: value(rng, off)}
			d.payload += int64(len(recs[i].Key) + len(recs[i].Value))
			off++
		}
		if _, err := br.Produce(ctx, &core.ProduceRequest{Topic: topic, Partition: 0, Records: recs, Acks: core.AcksLocal}); err != nil {
			b.Fatal(err)
		}
		d.records = off
	}
	if err := br.Close(ctx); err != nil {
		b.Fatal(err)
	}
	m, _, err := meta.NewManifestStore(store, storetest.TopicStorageName(b, store, topic), 0).Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if m.NextOffset() != d.records {
		b.Fatalf("sealed %d records, produced %d", m.NextOffset(), d.records)
	}
	for _, s := range m.Segments {
		rc, _, err := store.Get(ctx, s.Key)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			b.Fatal(err)
		}
		d.segments = append(d.segments, data)
		d.stored += int64(len(data))
	}
	return d
}

// coldBroker is a new broker on the data's store with an empty disk and
// an empty cache: every read of the topic is cold (the stateless path:
// manifest, footers, ranged block GETs with read-ahead).
func coldBroker(b *testing.B, d *benchData) *core.Broker {
	br, err := core.New(brokertest.Config(b, d.store))
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// BenchmarkFlight reads one cold range (a whole sealed partition) three
// ways in each iteration, interleaved so that all three see the same
// machine: Flight DoGet through the arrow Go Flight client, gRPC Fetch
// through strata's Go client (Consumer.Poll), and decode-only, the bound:
// segment.DecodeBlock of every block of the same segments, from memory, on
// one core. It reports each one's records/s and payload MB/s (key + value
// bytes) and the ratios the issue sets goals for.
//
//	go test -run '^$' -bench Flight -benchtime 3x ./server/flight/
//	STRATA_BENCH_FLIGHT_MB=256 ... (default 64 MiB of payload)
//	STRATA_BENCH_FLIGHT_WAYS=flight ... (only these of flight,grpc,decode;
//	    the ratios need all three)
//	STRATA_BENCH_FLIGHT_CPUPROFILE=flight.cpu ... (a CPU profile of the
//	    timed reads only, not of seeding the topic or starting brokers)
func BenchmarkFlight(b *testing.B) {
	mb := int64(64)
	if v := os.Getenv("STRATA_BENCH_FLIGHT_MB"); v != "" {
		fmt.Sscan(v, &mb)
	}
	ways := map[string]bool{"flight": true, "grpc": true, "decode": true}
	if v := os.Getenv("STRATA_BENCH_FLIGHT_WAYS"); v != "" {
		ways = map[string]bool{}
		for _, w := range strings.Split(v, ",") {
			if w = strings.TrimSpace(w); w != "flight" && w != "grpc" && w != "decode" {
				b.Fatalf("STRATA_BENCH_FLIGHT_WAYS: unknown way %q: name some of flight,grpc,decode", w)
			}
			ways[w] = true
		}
	}
	for _, backend := range []string{"file", "minio"} {
		b.Run(backend, func(b *testing.B) {
			var store tier.Store
			if backend == "file" {
				store = storetest.File(b)
			} else {
				store = storetest.MinIO(b)
			}
			for i, shape := range []struct {
				name  string
				value func(*rand.Rand, int64) []byte
			}{{"1KiB", benchValue}, {"100B", smallValue}} {
				var d *benchData // seeded once, however often the benchmark runs
				b.Run(shape.name, func(b *testing.B) {
					if d == nil {
						d = seedBenchTopic(b, store, fmt.Sprintf("bench%d", i), mb<<20, shape.value)
					}
					benchFlight(b, d, ways)
				})
			}
		})
	}
}

func benchFlight(b *testing.B, d *benchData, ways map[string]bool) {
	ctx := context.Background()
	var tFlight, tGRPC, tDecode time.Duration // wall clock
	var cFlight, cGRPC, cDecode time.Duration // CPU time of the process (server, client and decoding)
	if path := os.Getenv("STRATA_BENCH_FLIGHT_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.ResetTimer()
	for range b.N {
		if ways["flight"] {
			b.StopTimer()
			fb := coldBroker(b, d)
			fs, err := flightserver.New(fb, flightserver.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			faddr, stopF := serveGRPC(b, fs.ServerOptions(), fs.Register)
			fc, err := flight.NewClientWithMiddleware(faddr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()

			start, cpu := time.Now(), cpuTime()
			if n := readFlight(b, fc, d.topic); n != d.records {
				b.Fatalf("flight read %d records, want %d", n, d.records)
			}
			tFlight, cFlight = tFlight+time.Since(start), cFlight+cpuTime()-cpu

			b.StopTimer()
			fc.Close()
			stopF()
			fb.Close(ctx)
			b.StartTimer()
		}
		if ways["grpc"] {
			b.StopTimer()
			gb := coldBroker(b, d)
			gs, err := grpcserver.New(gb, grpcserver.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			gaddr, stopG := serveGRPC(b, gs.ServerOptions(), func(s *grpc.Server) { stratapb.RegisterStrataServer(s, gs) })
			gc, err := client.Dial(gaddr, client.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()

			start, cpu := time.Now(), cpuTime()
			if n := readGRPC(b, gc, d.topic, d.records); n != d.records {
				b.Fatalf("gRPC fetch read %d records, want %d", n, d.records)
			}
			tGRPC, cGRPC = tGRPC+time.Since(start), cGRPC+cpuTime()-cpu

			b.StopTimer()
			gc.Close()
			stopG()
			gb.Close(ctx)
			b.StartTimer()
		}
		if ways["decode"] {
			start, cpu := time.Now(), cpuTime()
			if n := decodeOnly(b, d.segments); n != d.records {
				b.Fatalf("decode-only decoded %d records, want %d", n, d.records)
			}
			tDecode, cDecode = tDecode+time.Since(start), cDecode+cpuTime()-cpu
		}
	}
	n := float64(b.N)
	rate := func(t time.Duration) float64 { return float64(d.records) * n / t.Seconds() }
	mbps := func(t time.Duration) float64 { return float64(d.payload) * n / 1e6 / t.Seconds() }
	// CPU seconds per million records: what each way costs whatever else
	// the machine runs (wall-clock rates on a shared machine move with
	// its load, and server, client and MinIO share its cores).
	cpuPerM := func(c time.Duration) float64 { return c.Seconds() / n / (float64(d.records) / 1e6) }
	if ways["flight"] {
		b.ReportMetric(rate(tFlight), "flight-rec/s")
		b.ReportMetric(mbps(tFlight), "flight-MB/s")
		b.ReportMetric(cFlight.Seconds()/n, "flight-cpu-s")
		b.ReportMetric(cpuPerM(cFlight), "flight-cpu-s/Mrec")
	}
	if ways["grpc"] {
		b.ReportMetric(rate(tGRPC), "grpc-rec/s")
		b.ReportMetric(mbps(tGRPC), "grpc-MB/s")
		b.ReportMetric(cGRPC.Seconds()/n, "grpc-cpu-s")
		b.ReportMetric(cpuPerM(cGRPC), "grpc-cpu-s/Mrec")
	}
	if ways["decode"] {
		b.ReportMetric(rate(tDecode), "decode-rec/s")
		b.ReportMetric(mbps(tDecode), "decode-MB/s")
		b.ReportMetric(cDecode.Seconds()/n, "decode-cpu-s")
		b.ReportMetric(cpuPerM(cDecode), "decode-cpu-s/Mrec")
	}
	if ways["flight"] && ways["decode"] {
		b.ReportMetric(100*tDecode.Seconds()/tFlight.Seconds(), "flight/decode-%")
	}
	if ways["flight"] && ways["grpc"] {
		b.ReportMetric(tGRPC.Seconds()/tFlight.Seconds(), "flight/grpc-x")
	}
	b.ReportMetric(float64(d.stored)/1e6, "stored-MB")
	b.ReportMetric(float64(d.payload)/1e6, "payload-MB")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serveGRPC serves a gRPC server on a loopback port; stop stops it.
func serveGRPC(b *testing.B, opts []grpc.ServerOption, register func(*grpc.Server)) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	return lis.Addr().String(), func() { srv.Stop(); <-done }
}

// readFlight reads the whole topic over Flight and returns the rows.
func readFlight(b *testing.B, fc flight.Client, topic string) int64 {
	ctx := context.Background()
	info, err := fc.GetFlightInfo(ctx, flightserver.PathDescriptor(topic))
	if err != nil {
		b.Fatal(err)
	}
	var rows int64
	for _, ep := range info.Endpoint {
		s, err := fc.DoGet(ctx, ep.Ticket)
		if err != nil {
			b.Fatal(err)
		}
		rdr, err := flight.NewRecordReader(s)
		if err != nil {
			b.Fatal(err)
		}
		for rdr.Next() {
			rows += rdr.Record().NumRows()
		}
		if err := rdr.Err(); err != nil {
			b.Fatal(err)
		}
		rdr.Release()
	}
	return rows
}

// readGRPC reads the topic's partition over gRPC Fetch with the Go
// client's Consumer until it has n records.
func readGRPC(b *testing.B, c *client.Client, topic string, n int64) int64 {
	ctx := context.Background()
	k, err := c.NewConsumer(ctx, topic, client.WithPartitions(0))
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close(ctx)
	var got int64
	for got < n {
		recs, err := k.Poll(ctx)
		if err != nil {
			b.Fatal(err)
		}
		got += int64(len(recs))
	}
	return got
}

// decodeOnly decodes every block of the segments and returns the records.
func decodeOnly(b *testing.B, segs [][]byte) int64 {
	var n int64
	for _, data := range segs {
		f, err := segment.ParseTail(data, int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		for _, bl := range f.Blocks {
			batches, err := segment.DecodeBlock(data[bl.Pos:bl.Pos+bl.Len], f.Codec)
			if err != nil {
				b.Fatal(err)
			}
			for _, bt := range batches {
				n += int64(len(bt.Records))
			}
		}
	}
	return n
}
