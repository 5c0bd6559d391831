package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/internal/scrape"
	"github.com/stratalog/strata/internal/testcerts"
	"github.com/stratalog/strata/internal/testenv"
)

// obsBroker is a `strata serve` process whose logs are read safely while
// it runs, with its gRPC and (when asked) metrics addresses.
type obsBroker struct {
	cmd         *exec.Cmd
	addr        string
	metricsAddr string
	exited      chan struct{} // closed when the process has exited; then err is set
	err         error

	mu   sync.Mutex // guards logs
	logs bytes.Buffer
}

var (
	brokerAddrRE  = regexp.MustCompile(`strata broker listening"?[ ,]"?addr"?[=:]"?(127\.0\.0\.1:\d+)`)
	metricsAddrRE = regexp.MustCompile(`"?metrics_addr"?[=:]"?(127\.0\.0\.1:\d+)`)
)

// startObsBroker runs `strata serve` on free loopback ports with args
// added, and waits until it listens (and serves metrics, with
// --metrics-listen among args).
func startObsBroker(t *testing.T, args ...string) *obsBroker {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...)
	b := &obsBroker{cmd: exec.Command(binary, all...), exited: make(chan struct{})}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wantMetrics := strings.Contains(strings.Join(args, " "), "--metrics-listen")
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signaled := false
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.logs.WriteString(line + "\n")
			if m := brokerAddrRE.FindStringSubmatch(line); m != nil {
				b.addr = m[1]
			}
			if m := metricsAddrRE.FindStringSubmatch(line); m != nil {
				b.metricsAddr = m[1]
			}
			up := b.addr != "" && (!wantMetrics || b.metricsAddr != "")
			b.mu.Unlock()
			if up && !signaled {
				signaled = true
				close(ready)
			}
		}
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	select {
	case <-ready:
	case <-b.exited:
		t.Fatalf("broker exited at start (%v):\n%s", b.err, b.logText())
	case <-time.After(60 * time.Second):
		b.cmd.Process.Kill()
		t.Fatalf("broker did not start:\n%s", b.logText())
	}
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.exited
	})
	return b
}

func (b *obsBroker) logText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// stop sends SIGTERM and requires a clean exit within a minute.
func (b *obsBroker) stop(t *testing.T) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		if b.err != nil {
			t.Fatalf("broker exited with %v after SIGTERM:\n%s", b.err, b.logText())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("broker did not stop within 60s of SIGTERM:\n%s", b.logText())
	}
}

func (b *obsBroker) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (b *obsBroker) scrape(t *testing.T) *scrape.Scrape {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := scrape.Get(ctx, "http://"+b.metricsAddr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadResult is what obsLoad did.
type loadResult struct {
	records, bytes int // produced and acknowledged, payload bytes
	fetched        int // records fetched back
	lag            int // records group "g" has not consumed
}

// obsLoad is a small bounded load: creates topic "t" (2 partitions),
// produces requests*perRequest records of valueBytes each (acks durable),
// one produce to a missing topic (an error), fetches every partition
// from the start to its end, and commits a group's offset in the middle
// of partition 0 (so it lags).
func obsLoad(t *testing.T, api stratapb.StrataClient, requests, perRequest, valueBytes int) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := api.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	var res loadResult
	value := bytes.Repeat([]byte("v"), valueBytes)
	perPart := map[int32]int{}
	for i := 0; i < requests; i++ {
		p := int32(i % 2)
		req := &stratapb.ProduceRequest{Topic: "t", Partition: p, Acks: stratapb.Acks_ACKS_DURABLE}
		for j := 0; j < perRequest; j++ {
			req.Records = append(req.Records, &stratapb.Record{Value: value})
		}
		if _, err := api.Produce(ctx, req); err != nil {
			t.Fatal(err)
		}
		res.records, res.bytes = res.records+perRequest, res.bytes+perRequest*valueBytes
		perPart[p] += perRequest
	}
	if _, err := api.Produce(ctx, &stratapb.ProduceRequest{Topic: "no-such-topic", Partition: -1, Records: []*stratapb.Record{{Value: value}}}); err == nil {
		t.Fatal("a produce to a missing topic succeeded")
	}
	for p := int32(0); p < 2; p++ {
		for next := int64(0); next < int64(perPart[p]); {
			stream, err := api.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: p, Start: &stratapb.FetchRequest_Offset{Offset: next}, MaxWaitMs: 1})
			if err != nil {
				t.Fatal(err)
			}
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				res.fetched += len(resp.GetRecords())
				next = max(next, resp.GetNextOffset())
			}
		}
	}
	a, err := api.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: "g", Topic: "t", SessionTimeoutMs: 60000})
	if err != nil {
		t.Fatal(err)
	}
	committed := int64(perPart[0] / 2)
	if _, err := api.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: "g", MemberId: a.GetMemberId(), Generation: a.GetGeneration(), Offsets: map[int32]int64{0: committed, 1: int64(perPart[1])}}); err != nil {
		t.Fatal(err)
	}
	res.lag = perPart[0] - int(committed)
	return res
}

// Under a bounded load, the counters move by exactly what was done:
// records and bytes produced, records fetched, records the WAL stored,
// gRPC calls by code; consumer lag shows the uncommitted records.
func TestMetricsUnderLoad(t *testing.T) {
	b := startObsBroker(t, "--metrics-listen", "127.0.0.1:0", "--metrics-lag-interval", "200ms", "--seal-bytes", "16KiB")
	before := b.scrape(t)
	api := stratapb.NewStrataClient(b.dial(t))
	const requests, perRequest, valueBytes = 8, 50, 100
	load := obsLoad(t, api, requests, perRequest, valueBytes)
	if load.fetched != load.records {
		t.Fatalf("fetched %d records of %d", load.fetched, load.records)
	}
	after := b.scrape(t)
	delta := func(name string, labels ...string) float64 {
		return after.Sum(name, labels...) - before.Sum(name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"strata_produce_records_total", []string{"topic", "t", "acks", "durable"}, load.records},
		{"strata_produce_bytes_total", []string{"topic", "t", "acks", "durable"}, load.bytes},
		{"strata_produce_requests_total", []string{"topic", "t"}, requests},
		{"strata_produce_errors_total", []string{"kind", "topic_not_found"}, 1},
		{"strata_produce_duration_seconds_count", []string{"acks", "durable"}, requests},
		{"strata_fetch_records_total", []string{"topic", "t"}, load.fetched},
		{"strata_fetch_bytes_total", []string{"topic", "t"}, load.fetched * valueBytes},
		{"strata_grpc_requests_total", []string{"method", "/strata.v1.Strata/Produce", "code", "OK"}, requests},
		{"strata_grpc_requests_total", []string{"method", "/strata.v1.Strata/Produce", "code", "NotFound"}, 1},
		{"strata_grpc_requests_total", []string{"method", "/strata.v1.Strata/CreateTopic", "code", "OK"}, 1},
	} {
		if got := delta(c.name, c.labels...); got != float64(c.want) {
			t.Errorf("%s%v moved by %v, want %d", c.name, c.labels, got, c.want)
		}
	}
	// A record can be acknowledged durable once a sealed segment holds it,
	// before its WAL object is stored (a small --seal-bytes seals often):
	// the WAL's count catches up within a flush or so.
	waitFor(t, 30*time.Second, "the WAL's records counter to reach the records produced", func() bool {
		got := b.scrape(t).Sum("strata_wal_records_total") - before.Sum("strata_wal_records_total")
		if got > float64(load.records) {
			t.Fatalf("strata_wal_records_total moved by %v, more than the %d records produced", got, load.records)
		}
		return got == float64(load.records)
	})
	if got := after.Sum("strata_partitions_owned"); got != 2 {
		t.Errorf("strata_partitions_owned = %v, want 2", got)
	}
	if d := delta("strata_object_store_requests_total", "operation", "put-if-absent", "result", "ok"); d < delta("strata_wal_objects_total") || d < 1 {
		t.Errorf("%v put-if-absent requests for %v WAL objects", d, delta("strata_wal_objects_total"))
	}
	// The lag goroutine runs every 200ms: wait (bounded) for a round after the commit.
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := b.scrape(t)
		lag := s.Sum("strata_consumer_lag_records", "group", "g", "topic", "t", "partition", "0")
		caught := s.Sum("strata_consumer_lag_records", "group", "g", "topic", "t", "partition", "1")
		if lag == float64(load.lag) && caught == 0 && s.Has("strata_consumer_lag_seconds", "group", "g", "partition", "0") {
			if s.Sum("strata_consumer_lag_seconds", "group", "g", "partition", "0") <= 0 {
				t.Errorf("a lagging partition shows no lag in seconds")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag of group g: partition 0 %v (want %d), partition 1 %v (want 0), after 30s", lag, load.lag, caught)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.stop(t)
}

// A metrics port in use is an error at start; the broker never listens.
func TestMetricsListenInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--metrics-listen", held.Addr().String()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve with its metrics port in use: %v, want exit status 1:\n%s", err, out)
	}
	if !strings.Contains(string(out), "--metrics-listen "+held.Addr().String()) || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "the broker was not started") {
		t.Errorf("the error does not name the flag, the address and the cause:\n%s", out)
	}
	if strings.Contains(string(out), "strata broker listening") {
		t.Errorf("the broker started anyway:\n%s", out)
	}
}

// Bad log flags are refused before anything starts; --log-format json
// writes one JSON object per line, --log-level warn hides info.
func TestLogFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "verbose"}} {
		out, err := exec.Command(binary, append([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "invalid "+args[0]) {
			t.Errorf("serve %v: %v, %q; want an error naming %s", args, err, out, args[0])
		}
	}
	b := startObsBroker(t, "--log-format", "json")
	b.stop(t)
	lines := strings.Split(strings.TrimSpace(b.logText()), "\n")
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Fatalf("not a JSON log record: %q (%v)", l, err)
		}
	}
	// --log-level warn: the broker starts silently (no info lines) and
	// still serves; its address comes from a health check of a port it
	// was given.
	port := freePort(t)
	cmd := exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--listen", port, "--log-level", "warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitServing(t, port)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("broker exited with %v:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "level=INFO") {
		t.Errorf("--log-level warn wrote info lines:\n%s", stderr.String())
	}
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitServing waits (bounded) until the health service at addr answers
// SERVING.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker at %s not serving after 60s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The health service answers SERVING for the server and for the Strata
// service, and goes NOT_SERVING for both as soon as the broker starts to
// drain (SIGTERM), before it stops: a watcher sees the change.
func TestHealthNotServingDuringDrain(t *testing.T) {
	b := startObsBroker(t)
	hc := healthpb.NewHealthClient(b.dial(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	services := []string{"", stratapb.Strata_ServiceDesc.ServiceName}
	var watches []healthpb.Health_WatchClient
	for _, svc := range services {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v, %v; want SERVING", svc, resp.GetStatus(), err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if first, err := w.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch of %q: first status %v, %v; want SERVING", svc, first.GetStatus(), err)
		}
		watches = append(watches, w)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	for i, w := range watches {
		resp, err := w.Recv()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch of %q after SIGTERM: %v, %v; want NOT_SERVING while the broker drains", services[i], resp.GetStatus(), err)
		}
	}
	// The watchers go away (as a load balancer's would): the drain ends.
	cancel()
	b.stop(t)
}

// grpcurl runs the grpcurl that scripts/grpcurl.sh installs: flags (the
// connection's, -plaintext or TLS flags, then the call's, such as -d),
// the address, then args (list, or a method), and returns its output; it
// fails the test when grpcurl fails.
func grpcurl(t *testing.T, addr string, flags []string, args ...string) string {
	t.Helper()
	bin := testenv.Grpcurl(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append(append([]string{"-max-time", "30"}, flags...), addr)
	full = append(full, args...)
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %v: %v\n%s", full, err, out)
	}
	return string(out)
}

// A client strata did not write (grpcurl) lists the services through
// reflection, calls the health check, and calls a Strata method from the
// descriptors reflection serves.
func TestGrpcurlReflectionAndHealth(t *testing.T) {
	b := startObsBroker(t)
	plain := []string{"-plaintext"}
	list := grpcurl(t, b.addr, plain, "list")
	for _, svc := range []string{"strata.v1.Strata", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(list, svc+"\n") {
			t.Errorf("grpcurl list does not name %s:\n%s", svc, list)
		}
	}
	for _, svc := range []string{"", "strata.v1.Strata"} {
		out := grpcurl(t, b.addr, append(plain, "-d", fmt.Sprintf(`{"service": %q}`, svc)), "grpc.health.v1.Health/Check")
		if !strings.Contains(out, `"SERVING"`) {
			t.Errorf("health check of %q through grpcurl: %s", svc, out)
		}
	}
	grpcurl(t, b.addr, append(plain, "-d", `{"config": {"name": "via-grpcurl", "partitions": 3}}`), "strata.v1.Strata/CreateTopic")
	if out := grpcurl(t, b.addr, append(plain, "-d", `{}`), "strata.v1.Strata/ListTopics"); !strings.Contains(out, `"via-grpcurl"`) {
		t.Errorf("ListTopics through grpcurl does not show the topic it created:\n%s", out)
	}
	b.stop(t)
}

// The same over TLS with bearer tokens: grpcurl trusting the broker's CA
// and sending a token lists the services through reflection and calls the
// health check (grpcurl learns the health service's schema through
// reflection, which needs an authenticated caller; the check itself is
// public); without a token reflection is refused, and without the CA
// grpcurl does not connect at all.
func TestGrpcurlOverTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "grpcurl")
	srv := ca.Issue(t, "broker", testcerts.Options{CommonName: "broker"})
	tok := auth.NewToken()
	tokenFile := writeFile(t, "tokens.yaml", "principals:\n  - name: ops\n    tokens: [\""+mustHash(t, tok)+"\"]\n")
	b := startObsBroker(t, "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--token-file", tokenFile, "--super-users", "ops", "--metrics-listen", "127.0.0.1:0")
	tls := []string{"-cacert", ca.CertFile}
	authed := slices.Clip(append(tls, "-H", "authorization: Bearer "+tok))
	if out := grpcurl(t, b.addr, append(authed, "-d", `{"service": "strata.v1.Strata"}`), "grpc.health.v1.Health/Check"); !strings.Contains(out, `"SERVING"`) {
		t.Errorf("health check over TLS: %s", out)
	}
	list := grpcurl(t, b.addr, authed, "list")
	if !strings.Contains(list, "strata.v1.Strata\n") || !strings.Contains(list, "grpc.health.v1.Health\n") {
		t.Errorf("grpcurl list over TLS:\n%s", list)
	}
	if out, err := grpcurlErr(t, b.addr, tls, "list"); err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("reflection without a token: %v\n%s", err, out)
	}
	if out, err := grpcurlErr(t, b.addr, nil, "list"); err == nil {
		t.Errorf("grpcurl without the broker's CA connected:\n%s", out)
	}
	// The metrics interceptors run before the auth ones: refusals count.
	if got := b.scrape(t).Sum("strata_grpc_requests_total", "method", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "code", "Unauthenticated"); got < 1 {
		t.Errorf("the refused reflection call is not counted as Unauthenticated (%v)", got)
	}
	b.stop(t)
}

// grpcurlErr is grpcurl for a call expected to fail: its output and error.
func grpcurlErr(t *testing.T, addr string, flags []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append(append(append([]string{"-max-time", "30"}, flags...), addr), args...)
	out, err := exec.CommandContext(ctx, testenv.Grpcurl(t), full...).CombinedOutput()
	return string(out), err
}
