package bench

// BenchmarkColdReplayAPI: cold replay through the whole API path (broker
// read path, gRPC, the Go client) beside plain GETs of the same segment
// objects, at three history sizes, in records mode (the broker decodes)
// and stored-blocks mode (the client decodes). The broker runs in a child
// process (this test binary, re-executed: see TestMain) so its CPU time is
// its own: read from /proc/<pid>/stat, while the client's is this
// process's getrusage. docs/performance.md has the numbers.

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/meta"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// childEnv holds a brokerChild (JSON) when this test binary runs as the
// benchmark's broker.
const childEnv = "STRATA_BENCH_BROKER_CHILD"

// brokerChild is what the child broker needs: the bucket and an empty data
// directory, and where to write its CPU profile ("" none).
type brokerChild struct {
	Endpoint, AccessKey, SecretKey, Bucket string
	DataDir, Profile                       string
}

// runBrokerChild serves a broker with default settings on a loopback port,
// prints "ADDR host:port", and stops when its stdin closes.
func runBrokerChild(spec string) int {
	var c brokerChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		return 2
	}
	ctx := context.Background()
	store, err := tier.NewS3Store(ctx, tier.S3Config{Endpoint: c.Endpoint, Bucket: c.Bucket, AccessKey: c.AccessKey, SecretKey: c.SecretKey, Insecure: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		return 2
	}
	defer store.Close()
	cfg := core.DefaultConfig()
	cfg.DataDir, cfg.Store = c.DataDir, store
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := core.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		return 2
	}
	defer b.Close(ctx)
	s, err := grpcserver.New(b, grpcserver.DefaultConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		return 2
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		return 2
	}
	srv := grpc.NewServer(s.ServerOptions()...)
	stratapb.RegisterStrataServer(srv, s)
	go srv.Serve(lis)
	defer srv.Stop()
	if c.Profile != "" {
		f, err := os.Create(c.Profile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Printf("ADDR %s\n", lis.Addr())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// childBroker is a running child broker.
type childBroker struct {
	cmd   *exec.Cmd
	stdin io.Closer
	addr  string
}

func startChild(b *testing.B, spec brokerChild) *childBroker {
	b.Helper()
	js, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		in.Close()
		cmd.Wait()
		b.Fatalf("child broker did not start: %q, %v", line, err)
	}
	return &childBroker{cmd: cmd, stdin: in, addr: addr}
}

func (c *childBroker) stop(b *testing.B) {
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		b.Errorf("child broker: %v", err)
	}
}

// cpuSeconds is the user+system CPU time of pid so far, from
// /proc/<pid>/stat (in USER_HZ ticks, 100 a second on Linux).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(u+st) / 100
}

// selfCPUSeconds is this process's user+system CPU time so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// replayValue is a ~1 KiB JSON-like record with a random part, as
// fetch's BenchmarkColdReplay writes: it compresses about 2x.
func replayValue(rng *rand.Rand, off int64) []byte {
	raw := make([]byte, 300)
	for i := range raw {
		raw[i] = byte(rng.IntN(64))
	}
	return fmt.Appendf(nil, `{"offset":%d,"user":"user-%05d","event":"checkout","items":[{"sku":"sku-%04d","qty":%d}],"session":"%s","note":"%s"}`,
		off, rng.IntN(50000), rng.IntN(9999), 1+rng.IntN(5), base64.StdEncoding.EncodeToString(raw),
		"the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog")
}

const replayTopic = "replay"

// replayMaxBytes is the max_bytes of the replays' fetches, in both modes.
const replayMaxBytes = 4 << 20

// writeReplayHistory produces payload bytes of replayValues into one
// partition through an in-process broker, which then closes (sealing
// everything), and returns the record count, payload bytes and the
// sealed segments.
func writeReplayHistory(b *testing.B, store tier.Store, payload int64) (records, bytes int64, m *meta.Manifest) {
	b.Helper()
	ctx := context.Background()
	br, addr := brokertest.Start(b, brokertest.Config(b, store))
	c, err := client.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, replayTopic, 1); err != nil {
		b.Fatal(err)
	}
	p := c.NewProducer(replayTopic, client.WithAcks(stratapb.Acks_ACKS_LOCAL), client.WithMaxInFlight(8), client.WithPartition(0))
	rng := rand.New(rand.NewPCG(7, 7))
	var results []*client.Result
	for bytes < payload {
		v := replayValue(rng, records)
		r, err := p.Send(ctx, client.Record{Key: fmt.Appendf(nil, "user-%05d", records%50000), Value: v})
		if err != nil {
			b.Fatal(err)
		}
		results = append(results, r)
		records++
		bytes += int64(len(v))
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	for _, r := range results {
		if err := r.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := br.Close(ctx); err != nil { // seals everything
		b.Fatal(err)
	}
	// The WAL objects are garbage once sealed; a running cluster deletes
	// them within WALCollectInterval. Delete them now, so the replays
	// read history as it is once that has happened (a broker's view of a
	// partition otherwise reads the headers of every WAL object left).
	gc, _ := brokertest.Start(b, brokertest.Config(b, store))
	if n, err := gc.CollectWAL(ctx); err != nil || n == 0 {
		b.Fatalf("collected %d WAL objects: %v", n, err)
	}
	if err := gc.Close(ctx); err != nil {
		b.Fatal(err)
	}
	m, _, err = meta.NewManifestStore(store, storetest.TopicStorageName(b, store, replayTopic), 0).Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if m.NextOffset() != records {
		b.Fatalf("sealed through offset %d, wrote %d records", m.NextOffset(), records)
	}
	return records, bytes, m
}

// BenchmarkColdReplayAPI replays history of 64 MiB, 256 MiB and 1 GiB of
// payload (one partition, default broker settings, MinIO) from a broker
// with an empty disk and cache, through gRPC and the Go client's
// PartitionStream:
//
//   - raw-get: plain sequential GETs of the same segment objects;
//   - records: the broker decodes every block and sends records (the old
//     path; the client decodes protobuf only);
//   - stored: the broker sends the blocks as stored and the client
//     verifies, decompresses and decodes them on every core;
//   - stored-transfer: the same fetches, the client decoding nothing: the
//     broker's and the transport's share of the stored replay alone.
//
// MB/s is of stored (compressed) bytes; broker-cpu-s/GiB and
// client-cpu-s/GiB are CPU seconds per GiB of payload replayed, the
// broker's from its own process. STRATA_BENCH_PROFILE_DIR, when set,
// gets the broker's CPU profile of each replay.
func BenchmarkColdReplayAPI(b *testing.B) {
	ep := testenv.MinIO(b)
	for _, mib := range []int64{64, 256, 1024} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			ctx := context.Background()
			rb := make([]byte, 6)
			crand.Read(rb)
			bucket := "strata-bench-" + hex.EncodeToString(rb)
			store, err := tier.NewS3Store(ctx, tier.S3Config{Endpoint: ep.Addr, Bucket: bucket, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, Insecure: true, CreateBucket: true})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			records, payload, m := writeReplayHistory(b, store, mib<<20)
			sealed := m.SealedBytes()
			gib := float64(payload) / (1 << 30)
			b.Run("raw-get", func(b *testing.B) {
				b.SetBytes(sealed)
				cpu0 := selfCPUSeconds()
				for range b.N {
					for _, s := range m.Segments {
						rc, _, err := store.Get(ctx, s.Key)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.Copy(io.Discard, rc); err != nil {
							b.Fatal(err)
						}
						rc.Close()
					}
				}
				b.ReportMetric((selfCPUSeconds()-cpu0)/gib/float64(b.N), "client-cpu-s/GiB")
			})
			for _, mode := range []string{"records", "stored", "stored-transfer"} {
				b.Run(mode, func(b *testing.B) {
					b.SetBytes(sealed)
					var brokerCPU, clientCPU float64
					for i := range b.N {
						b.StopTimer()
						spec := brokerChild{Endpoint: ep.Addr, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, Bucket: bucket, DataDir: b.TempDir()}
						if dir := os.Getenv("STRATA_BENCH_PROFILE_DIR"); dir != "" {
							spec.Profile = filepath.Join(dir, fmt.Sprintf("broker-%dMiB-%s-%d.prof", mib, mode, i))
						}
						child := startChild(b, spec)
						c, err := client.Dial(child.addr, client.WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20))))
						if err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						pid := child.cmd.Process.Pid
						bcpu0, ccpu0 := cpuSeconds(pid), selfCPUSeconds()
						if mode == "stored-transfer" {
							transferAll(b, c, records)
						} else {
							replayAll(b, c, records, payload, mode == "stored")
						}
						brokerCPU += cpuSeconds(pid) - bcpu0
						clientCPU += selfCPUSeconds() - ccpu0
						b.StopTimer()
						c.Close()
						child.stop(b)
						b.StartTimer()
					}
					b.ReportMetric(brokerCPU/gib/float64(b.N), "broker-cpu-s/GiB")
					b.ReportMetric(clientCPU/gib/float64(b.N), "client-cpu-s/GiB")
					b.ReportMetric(float64(payload)*float64(b.N)/1e6/b.Elapsed().Seconds(), "payload-MB/s")
				})
			}
		})
	}
}

// replayAll reads partition 0 from offset 0 to records and checks that it
// got every offset once, in order, and the payload bytes written.
func replayAll(b *testing.B, c *client.Client, records, payload int64, stored bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := c.StreamPartition(ctx, replayTopic, 0, client.StreamMaxBytes(replayMaxBytes), client.StreamStoredBlocks(stored))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next, bytes int64
	for next < records {
		recs, err := s.Next(ctx)
		if err != nil {
			b.Fatalf("replay at offset %d: %v", next, err)
		}
		for i := range recs {
			if recs[i].Offset != next {
				b.Fatalf("replay: offset %d after %d", recs[i].Offset, next-1)
			}
			next++
			bytes += int64(len(recs[i].Value))
		}
	}
	if bytes != payload {
		b.Fatalf("replayed %d payload bytes, wrote %d", bytes, payload)
	}
}

// transferAll reads partition 0 as stored blocks to records without
// decoding them: the broker's and the transport's share alone.
func transferAll(b *testing.B, c *client.Client, records int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.API().Fetch(ctx, &stratapb.FetchRequest{Topic: replayTopic, Partition: 0, Follow: true, MaxBytes: replayMaxBytes, StoredBlocks: true,
		Start: &stratapb.FetchRequest_Offset{Offset: 0}})
	if err != nil {
		b.Fatal(err)
	}
	for next := int64(0); next < records; {
		resp, err := s.Recv()
		if err != nil {
			b.Fatalf("transfer at offset %d: %v", next, err)
		}
		next = resp.NextOffset
	}
}
