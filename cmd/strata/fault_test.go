package main

// Fault tests: the real binary on loopback under a steady produce load,
// crashed or starved in the ways issue 4 names, then drained in full and
// judged by the history checker (internal/history): no acknowledged record
// lost, no duplicate, no two values at one offset, no gap.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/internal/faultproxy"
	"github.com/stratalog/strata/internal/history"
	"github.com/stratalog/strata/internal/testenv"
)

const faultTopic = "jepsen"

// freeAddr reserves a loopback port so a restarted broker keeps its address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bucket is a fresh MinIO bucket; endpoint overrides where the broker
// sends its requests (a fault proxy), "" for MinIO itself.
type bucket struct {
	name, minio string
	env         []string
}

func newBucket(t testing.TB) bucket {
	ep := testenv.MinIO(t)
	b := make([]byte, 5)
	rand.Read(b)
	return bucket{name: "fault-" + hex.EncodeToString(b), minio: ep.Addr,
		env: []string{"AWS_ACCESS_KEY_ID=" + ep.AccessKey, "AWS_SECRET_ACCESS_KEY=" + ep.SecretKey}}
}

func (b bucket) url(endpoint string) string {
	if endpoint == "" {
		endpoint = b.minio
	}
	return fmt.Sprintf("s3://%s/strata?endpoint=%s&insecure=true&create=true", b.name, endpoint)
}

// proc is one `strata serve` process (built with failpoints by TestMain).
type proc struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBroker runs the binary on addr and waits until it answers.
func startBroker(t testing.TB, addr, dataDir, store string, env []string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--object-store", store, "--seal-bytes", "512KiB"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	b := &proc{cmd: cmd, logs: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = b.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-b.exited; b.exited <- nil })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(b.logs.String(), "strata broker listening") {
		select {
		case err := <-b.exited:
			b.exited <- err
			t.Fatalf("broker exited at start (%v):\n%s", err, b.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not start:\n%s", b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b
}

// kill9 kills the broker the way a machine loss would.
func (b *proc) kill9(t testing.TB) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGKILL)
	err := <-b.exited
	b.exited <- err
}

// waitExit waits for the broker to exit by itself (a failpoint) and
// returns its exit code.
func (b *proc) waitExit(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case err := <-b.exited:
		b.exited <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(within):
		t.Fatalf("broker did not exit within %v:\n%s", within, b.logs.String())
		return 0
	}
}

// rssKiB is the broker's resident memory.
func (b *proc) rssKiB() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

// load is a bounded produce workload that records its history.
type load struct {
	rec    *history.Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
	acked  atomic.Int64
	ackAt  sync.Map // value -> time.Time of the ack
}

// startLoad runs `producers` idempotent producers, each sending at most
// `perProducer` records at about 1,000 records/s, until stopped.
func startLoad(t testing.TB, addr string, rec *history.Recorder, acks stratapb.Acks, producers, perProducer int) *load {
	t.Helper()
	return startNamedLoad(t, "producer", addr, rec, acks, producers, perProducer)
}

// startNamedLoad is startLoad with producers (and their values) named
// prefix-N, so that two loads in one history never send the same value.
func startNamedLoad(t testing.TB, prefix, addr string, rec *history.Recorder, acks stratapb.Acks, producers, perProducer int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{rec: rec, cancel: cancel}
	for p := 0; p < producers; p++ {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		name := fmt.Sprintf("%s-%d", prefix, p)
		prod := c.NewProducer(faultTopic, client.WithAcks(acks), client.WithRetries(1000, 50*time.Millisecond),
			client.WithRequestTimeout(5*time.Second), client.WithLinger(2*time.Millisecond), client.WithBatchSize(50))
		type sent struct {
			value string
			res   *client.Result
		}
		outcomes := make(chan sent, 100000)
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			defer close(outcomes)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < perProducer; {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for j := 0; j < 10 && i < perProducer; j, i = j+1, i+1 {
					v := fmt.Sprintf("%s-%07d", name, i)
					rec.Send(name, faultTopic, v)
					res, err := prod.Send(ctx, client.Record{Key: []byte(v), Value: []byte(v)})
					if err != nil {
						rec.Unknown(name, faultTopic, v, err)
						if res == nil {
							continue
						}
					}
					outcomes <- sent{v, res}
				}
			}
		}()
		go func() {
			defer l.wg.Done()
			for s := range outcomes {
				wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				err := s.res.Wait(wctx)
				cancel()
				if err != nil {
					rec.Unknown(name, faultTopic, s.value, err)
					continue
				}
				rec.Ack(name, faultTopic, s.res.Partition, s.res.Offset, s.value)
				l.acked.Add(1)
				l.ackAt.Store(s.value, time.Now())
			}
			prod.Close(context.Background())
		}()
	}
	return l
}

// stop ends the load and waits for every outcome.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// ackedAfter counts acks at or after t.
func (l *load) ackedAfter(t time.Time) int {
	n := 0
	l.ackAt.Range(func(_, v any) bool {
		if !v.(time.Time).Before(t) {
			n++
		}
		return true
	})
	return n
}

// drain reads every partition from the start to its high watermark,
// recording what it sees, until the high watermarks stop moving.
func drain(t testing.TB, addr string, rec *history.Recorder, partitions int32) {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	next := make([]int64, partitions)
	for stable := 0; stable < 2; {
		moved := false
		for p := int32(0); p < partitions; p++ {
			hw, err := c.API().ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: faultTopic, Partition: p, Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}})
			if err != nil {
				t.Fatalf("drain: list offsets of %d: %v", p, err)
			}
			for next[p] < hw.Offset {
				stream, err := c.API().Fetch(ctx, &stratapb.FetchRequest{Topic: faultTopic, Partition: p, Start: &stratapb.FetchRequest_Offset{Offset: next[p]}, MaxWaitMs: 100})
				if err != nil {
					t.Fatalf("drain: fetch %d at %d: %v", p, next[p], err)
				}
				for {
					resp, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("drain: fetch %d at %d: %v", p, next[p], err)
					}
					var recs []history.Rec
					for _, r := range resp.Records {
						recs = append(recs, history.Rec{Offset: r.Offset, Value: string(r.Value)})
					}
					if len(recs) > 0 {
						rec.Read("drain", faultTopic, p, recs)
					}
					next[p] = resp.NextOffset
				}
				moved = true
			}
			rec.HighWatermark(faultTopic, p, hw.Offset)
		}
		if moved {
			stable = 0
		} else {
			stable++
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// check runs the history checker and fails the test on any anomaly.
func check(t testing.TB, rec *history.Recorder, path string) *history.Report {
	t.Helper()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := history.CheckFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("history: %s", rep)
	if !rep.OK() {
		t.Fatalf("history checker found anomalies (history kept at %s):\n%s", path, rep)
	}
	if rep.Acks == 0 {
		t.Fatal("nothing was acknowledged: the test proved nothing")
	}
	return rep
}

func newHistory(t testing.TB) (*history.Recorder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.jsonl")
	rec, err := history.CreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return rec, path
}

func createTopic(t testing.TB, addr string, env []string) {
	t.Helper()
	cli(t, "", env, "topic", "create", faultTopic, "--partitions", "4", "--broker", addr)
}

// waitAcks waits until the load has at least n acks.
func waitAcks(t testing.TB, l *load, n int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d acks", n), func() bool { return l.acked.Load() >= n })
}

// Fault 1: kill -9 during a steady durable load, delete the data
// directory, start a new broker on the same bucket.
func TestFaultKill9DiskLostDurable(t *testing.T) {
	bk := newBucket(t)
	addr, dir := freeAddr(t), t.TempDir()
	a := startBroker(t, addr, dir, bk.url(""), bk.env)
	createTopic(t, addr, bk.env)
	rec, path := newHistory(t)
	l := startLoad(t, addr, rec, stratapb.Acks_ACKS_DURABLE, 2, 20000)
	waitAcks(t, l, 2000)
	a.kill9(t)
	killed := time.Now()
	before := l.acked.Load()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, addr, t.TempDir(), bk.url(""), bk.env)
	waitAcks(t, l, before+2000)
	l.stop()
	drain(t, addr, rec, 4)
	check(t, rec, path)
	if !strings.Contains(b.logs.String(), "recovered from an earlier owner's WAL") {
		t.Fatalf("the new broker did not recover from the dead broker's WAL:\n%s", b.logs.String())
	}
	t.Logf("acked before the kill: %d, after: %d", before, l.ackedAfter(killed))
}

// Fault 2: the same with local acks and the disk kept.
func TestFaultKill9LocalAcksDiskKept(t *testing.T) {
	bk := newBucket(t)
	addr, dir := freeAddr(t), t.TempDir()
	a := startBroker(t, addr, dir, bk.url(""), bk.env)
	createTopic(t, addr, bk.env)
	rec, path := newHistory(t)
	l := startLoad(t, addr, rec, stratapb.Acks_ACKS_LOCAL, 2, 20000)
	waitAcks(t, l, 2000)
	a.kill9(t)
	before := l.acked.Load()
	startBroker(t, addr, dir, bk.url(""), bk.env)
	waitAcks(t, l, before+2000)
	l.stop()
	drain(t, addr, rec, 4)
	check(t, rec, path)
}

// Fault 3: crashes at the failpoints between a WAL upload and the acks,
// between a segment upload and its manifest commit, and right after the
// commit; the restarted broker (disk deleted after the WAL crash, kept
// after the others) loses nothing.
func TestFaultFailpoints(t *testing.T) {
	for _, tc := range []struct {
		point    string
		keepDisk bool
	}{
		{failpoint.WALUploaded + "=40", false},
		{failpoint.SegmentUploaded + "=2", true},
		{failpoint.ManifestCommitted + "=2", true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			bk := newBucket(t)
			addr, dir := freeAddr(t), t.TempDir()
			a := startBroker(t, addr, dir, bk.url(""), append(bk.env, "STRATA_FAILPOINTS="+tc.point), "--seal-bytes", "128KiB")
			createTopic(t, addr, bk.env)
			rec, path := newHistory(t)
			l := startLoad(t, addr, rec, stratapb.Acks_ACKS_DURABLE, 2, 20000)
			if code := a.waitExit(t, 2*time.Minute); code != failpoint.ExitCode {
				t.Fatalf("broker exited with %d, want the failpoint's %d:\n%s", code, failpoint.ExitCode, a.logs.String())
			}
			before := l.acked.Load()
			if !tc.keepDisk {
				os.RemoveAll(dir)
				dir = t.TempDir()
			}
			startBroker(t, addr, dir, bk.url(""), bk.env)
			waitAcks(t, l, before+1000)
			l.stop()
			drain(t, addr, rec, 4)
			check(t, rec, path)
		})
	}
}

// Fault 4: an object store that fails 30% of requests and loses the
// response of 10% of the writes it applied.
func TestFaultFlakyObjectStore(t *testing.T) {
	bk := newBucket(t)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: "http://" + bk.minio, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir(), bk.url(proxy.Addr()), bk.env, "--seal-bytes", "128KiB")
	createTopic(t, addr, bk.env)
	rec, path := newHistory(t)
	proxy.SetFailRate(0.3)
	proxy.SetLoseRate(0.1)
	l := startLoad(t, addr, rec, stratapb.Acks_ACKS_DURABLE, 2, 6000)
	waitAcks(t, l, 6000)
	l.stop()
	st := proxy.Stats()
	proxy.Heal()
	if st.Failed == 0 || st.Lost == 0 {
		t.Fatalf("faults were not exercised: %+v", st)
	}
	drain(t, addr, rec, 4)
	check(t, rec, path)
	t.Logf("proxy: %+v", st)
}

// Fault 5: the object store stops answering for 20 s, then heals.
// Durable produces wait and then fail (retryably); the broker's memory
// stays bounded; nothing acknowledged is lost; acks resume after the heal.
func TestFaultObjectStoreOutage(t *testing.T) {
	bk := newBucket(t)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: "http://" + bk.minio, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := freeAddr(t)
	b := startBroker(t, addr, t.TempDir(), bk.url(proxy.Addr()), bk.env, "--wal-max-buffered", "4MiB", "--produce-timeout", "3s")
	createTopic(t, addr, bk.env)
	rec, path := newHistory(t)
	l := startLoad(t, addr, rec, stratapb.Acks_ACKS_DURABLE, 2, 60000)
	waitAcks(t, l, 1000)
	baseRSS := b.rssKiB()
	proxy.SetBlackhole(true)
	ackedAtOutage := l.acked.Load()
	var maxRSS int64
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		maxRSS = max(maxRSS, b.rssKiB())
	}
	// Acks stop during the outage (a few may have been in flight).
	if during := l.acked.Load() - ackedAtOutage; during > 2000 {
		t.Fatalf("%d records acked as durable while the object store was unreachable", during)
	}
	proxy.SetBlackhole(false)
	healed := time.Now()
	waitUntil(t, "acks after the heal", func() bool { return l.ackedAfter(healed) >= 1000 })
	l.stop()
	drain(t, addr, rec, 4)
	check(t, rec, path)
	t.Logf("RSS before the outage %d KiB, max during it %d KiB", baseRSS, maxRSS)
	if maxRSS > baseRSS+256<<10 {
		t.Fatalf("broker RSS grew from %d KiB to %d KiB during the outage: memory is not bounded", baseRSS, maxRSS)
	}
}

// Fault 6: a producer retries after a lost ack: the broker stores one
// copy and answers the retry with the first attempt's offsets, also after
// the broker was killed and replaced on an empty disk.
func TestFaultRetryAfterLostAck(t *testing.T) {
	bk := newBucket(t)
	addr, dir := freeAddr(t), t.TempDir()
	a := startBroker(t, addr, dir, bk.url(""), bk.env)
	createTopic(t, addr, bk.env)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	pid, err := c.API().InitProducer(ctx, &stratapb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rec, path := newHistory(t)
	req := func(seq int32, vals ...string) *stratapb.ProduceRequest {
		r := &stratapb.ProduceRequest{Topic: faultTopic, Partition: 1, ProducerId: pid.ProducerId, BaseSequence: seq}
		for _, v := range vals {
			r.Records = append(r.Records, &stratapb.Record{Value: []byte(v)})
			rec.Send("retrier", faultTopic, v)
		}
		return r
	}
	// The ack of the first attempt is lost: the client gives up before
	// the broker answers (the records are appended all the same).
	first := req(0, "lost-ack-0", "lost-ack-1")
	lctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	_, err = c.API().Produce(lctx, first)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Canceled {
		t.Fatalf("first attempt: %v, want it cut off", err)
	}
	var resp *stratapb.ProduceResponse
	waitUntil(t, "the retry to be acked", func() bool {
		resp, err = c.API().Produce(ctx, first)
		return err == nil
	})
	for i, v := range []string{"lost-ack-0", "lost-ack-1"} {
		rec.Ack("retrier", faultTopic, 1, resp.Offsets[i], v)
	}
	// A second batch is acked, the ack is "lost" with the broker: kill -9,
	// disk deleted, new broker; the retry must find the stored copy.
	second := req(2, "lost-ack-2")
	resp2, err := c.API().Produce(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	a.kill9(t)
	os.RemoveAll(dir)
	startBroker(t, addr, t.TempDir(), bk.url(""), bk.env)
	var again *stratapb.ProduceResponse
	waitUntil(t, "the retry after the takeover", func() bool {
		again, err = c.API().Produce(ctx, second)
		return err == nil
	})
	if !again.Duplicate || again.Offsets[0] != resp2.Offsets[0] {
		t.Fatalf("retry after takeover: duplicate=%v offset %d; want the stored copy at %d", again.Duplicate, again.Offsets[0], resp2.Offsets[0])
	}
	rec.Ack("retrier", faultTopic, 1, again.Offsets[0], "lost-ack-2")
	drain(t, addr, rec, 4)
	rep := check(t, rec, path)
	if rep.Observed != 3 {
		t.Fatalf("observed %d values, want exactly the 3 sent", rep.Observed)
	}
}
