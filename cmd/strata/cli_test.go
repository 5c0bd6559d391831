package main

// The CLI on the Go client (issue 12): `strata consume` reads every
// partition unless told one, and `strata produce` retries a request whose
// answer was lost and stores it once. Both drive the real binary.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

// cliWithin is cli with a deadline: a command that would wait for records
// that never come fails the test instead of hanging it.
func cliWithin(t testing.TB, d time.Duration, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return out.String(), fmt.Errorf("strata %v did not finish within %v (stdout had %d lines)", args, d, strings.Count(out.String(), "\n"))
		}
		return out.String(), fmt.Errorf("strata %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

type jsonRecord struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

// parseRecords parses `consume --format json` output and checks that each
// partition's records come in offset order, without a gap, from start[p]
// (0 when absent).
func parseRecords(t testing.TB, out string, start map[int32]int64) []jsonRecord {
	t.Helper()
	var recs []jsonRecord
	next := map[int32]int64{}
	for p, o := range start {
		next[p] = o
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r jsonRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad json line %q: %v", line, err)
		}
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: offset %d after offset %d", r.Partition, r.Offset, next[r.Partition]-1)
		}
		next[r.Partition]++
		recs = append(recs, r)
	}
	return recs
}

// TestConsumeEveryPartition: without --partition, `strata consume --from
// earliest --max N` over a 4-partition topic prints N records from every
// partition, each partition's in order; --partition narrows it to one;
// --from-offset needs --partition.
func TestConsumeEveryPartition(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	cli(t, "", nil, "topic", "create", "wide", "--partitions", "4", "--broker", s.addr)
	const total = 2000
	var in strings.Builder
	for i := 0; i < total; i++ {
		fmt.Fprintf(&in, "k%d=v%d\n", i%101, i)
	}
	if got := strings.TrimSpace(cli(t, in.String(), nil, "produce", "wide", "--key-separator", "=", "--broker", s.addr)); got != strconv.Itoa(total) {
		t.Fatalf("produce acknowledged %s, want %d", got, total)
	}
	hw := hwms(t, cli(t, "", nil, "topic", "describe", "wide", "--broker", s.addr))
	if len(hw) != 4 {
		t.Fatalf("describe gave %v", hw)
	}
	for p, n := range hw {
		if n == 0 {
			t.Fatalf("partition %d got no records (high watermarks %v): the test needs all four", p, hw)
		}
	}

	// Everything: all four partitions, every record once.
	out, err := cliWithin(t, time.Minute, "", "consume", "wide", "--from", "earliest", "--max", strconv.Itoa(total), "--format", "json", "--broker", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	recs := parseRecords(t, out, nil)
	if len(recs) != total {
		t.Fatalf("consume --max %d printed %d records", total, len(recs))
	}
	values := map[string]bool{}
	perPartition := make([]int, 4)
	for _, r := range recs {
		values[r.Value] = true
		perPartition[r.Partition]++
	}
	if len(values) != total {
		t.Fatalf("consume printed %d distinct values of %d", len(values), total)
	}
	for p := range hw {
		if perPartition[p] != hw[p] {
			t.Fatalf("partition %d: printed %d records, its high watermark is %d", p, perPartition[p], hw[p])
		}
	}

	// --max N stops after N records in total.
	out, err = cliWithin(t, time.Minute, "", "consume", "wide", "--from", "earliest", "--max", "10", "--format", "json", "--broker", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if recs := parseRecords(t, out, nil); len(recs) != 10 {
		t.Fatalf("consume --max 10 printed %d records", len(recs))
	}

	// --partition P narrows it, also with --from-offset.
	out, err = cliWithin(t, time.Minute, "", "consume", "wide", "--partition", "2", "--from-offset", "3", "--max", strconv.Itoa(hw[2]-3), "--format", "json", "--broker", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	recs = parseRecords(t, out, map[int32]int64{2: 3})
	for _, r := range recs {
		if r.Partition != 2 {
			t.Fatalf("consume --partition 2 printed a record of partition %d", r.Partition)
		}
	}
	if len(recs) != hw[2]-3 {
		t.Fatalf("consume --partition 2 --from-offset 3 printed %d records, want %d", len(recs), hw[2]-3)
	}

	// --from-time applies to every partition: all of them start at 0.
	out, err = cliWithin(t, time.Minute, "", "consume", "wide", "--from-time", "2000-01-01T00:00:00Z", "--max", strconv.Itoa(total), "--format", "json", "--broker", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if recs := parseRecords(t, out, nil); len(recs) != total {
		t.Fatalf("consume --from-time printed %d records, want %d", len(recs), total)
	}

	if _, err := cliWithin(t, time.Minute, "", "consume", "wide", "--from-offset", "3", "--max", "1", "--broker", s.addr); err == nil || !strings.Contains(err.Error(), "--partition") {
		t.Fatalf("--from-offset without --partition: %v, want an error that asks for --partition", err)
	}
	s.stop(t)
}

// ackDropper is a gRPC front of a broker for the calls the CLI producer
// makes. It forwards every produce; for the first `drop` of them, once
// the broker has answered (the records are stored), it cuts the CLI's
// connections, so the answer never reaches the CLI: the ack is lost.
type ackDropper struct {
	stratapb.UnimplementedStrataServer
	up  stratapb.StrataClient
	lis *trackingListener

	mu         sync.Mutex
	drop       int // answers still to drop
	dropped    int // answers dropped
	duplicates int // answers the broker marked Duplicate (a retry of a stored request)
}

func (d *ackDropper) ListTopics(ctx context.Context, req *stratapb.ListTopicsRequest) (*stratapb.ListTopicsResponse, error) {
	return d.up.ListTopics(ctx, req)
}

func (d *ackDropper) InitProducer(ctx context.Context, req *stratapb.InitProducerRequest) (*stratapb.InitProducerResponse, error) {
	return d.up.InitProducer(ctx, req)
}

func (d *ackDropper) Produce(ctx context.Context, req *stratapb.ProduceRequest) (*stratapb.ProduceResponse, error) {
	resp, err := d.up.Produce(ctx, req)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if resp.Duplicate {
		d.duplicates++
	}
	drop := d.drop > 0
	if drop {
		d.drop--
		d.dropped++
	}
	d.mu.Unlock()
	if drop {
		d.lis.cut()
		return nil, status.Error(codes.Unavailable, "ackDropper: the connection was cut; this answer never arrives")
	}
	return resp, nil
}

// trackingListener remembers the connections it accepted, to cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes every connection accepted so far.
func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// TestProduceRetriesAfterLostAck: the CLI produces through a front that
// lets the broker store the first requests and then cuts the connection
// before their answers reach the CLI. The CLI retries, the broker
// recognizes each retry as a duplicate of what it stored, and every line
// is stored exactly once: the high watermarks add up to the line count and
// reading back gives each line once.
func TestProduceRetriesAfterLostAck(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	cli(t, "", nil, "topic", "create", "lossy", "--partitions", "4", "--broker", s.addr)
	up, err := client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &trackingListener{Listener: l}
	front := &ackDropper{up: up.API(), lis: lis, drop: 2}
	srv := grpc.NewServer()
	stratapb.RegisterStrataServer(srv, front)
	go srv.Serve(lis)
	defer srv.Stop()

	const lines = 3000
	var in strings.Builder
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&in, "k%d=line-%d\n", i%37, i)
	}
	out, err := cliWithin(t, 2*time.Minute, in.String(), "produce", "lossy", "--key-separator", "=", "--broker", l.Addr().String())
	if err != nil {
		t.Fatalf("the CLI producer did not get past the lost acks: %v", err)
	}
	if got := strings.TrimSpace(out); got != strconv.Itoa(lines) {
		t.Fatalf("produce acknowledged %s, want %d", got, lines)
	}
	front.mu.Lock()
	dropped, duplicates := front.dropped, front.duplicates
	front.mu.Unlock()
	if dropped != 2 {
		t.Fatalf("the front dropped %d answers, want 2: the test proved nothing", dropped)
	}
	if duplicates == 0 {
		t.Fatal("no retry reached the broker as a duplicate of a stored request")
	}

	sum := 0
	for _, n := range hwms(t, cli(t, "", nil, "topic", "describe", "lossy", "--broker", s.addr)) {
		sum += n
	}
	if sum != lines {
		t.Fatalf("the partitions hold %d records for %d lines: the retries stored copies", sum, lines)
	}
	recs, err := cliWithin(t, time.Minute, "", "consume", "lossy", "--from", "earliest", "--max", strconv.Itoa(lines), "--format", "json", "--broker", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range parseRecords(t, recs, nil) {
		seen[r.Value]++
	}
	for i := 0; i < lines; i++ {
		if v := fmt.Sprintf("line-%d", i); seen[v] != 1 {
			t.Fatalf("%s is stored %d times, want once", v, seen[v])
		}
	}
	t.Logf("answers dropped: %d; retries answered as duplicates: %d", dropped, duplicates)
	s.stop(t)
}

// TestProduceConsumeOnAGossipCluster: three `strata serve` processes form
// a cluster by gossip on one bucket. `strata produce` given one broker
// sends each partition's lines to its owner (the seed refuses the others'
// partitions), and `strata consume` given a list whose first broker is
// down reads every line once.
func TestProduceConsumeOnAGossipCluster(t *testing.T) {
	bucket := "file://" + t.TempDir()
	var (
		brokers []*server
		first   string
	)
	for i := 0; i < 3; i++ {
		gossip := freeAddr(t)
		env := []string{"STRATA_NODE_ID=n" + strconv.Itoa(i), "STRATA_GOSSIP_LISTEN=" + gossip, "STRATA_SETTLE=0s"}
		if first != "" {
			env = append(env, "STRATA_JOIN="+first)
		} else {
			first = gossip
		}
		brokers = append(brokers, serveBin(t, t.TempDir(), bucket, env...))
	}
	c, err := client.Dial(brokers[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	cli(t, "", nil, "topic", "create", "spread", "--partitions", "6", "--broker", brokers[0].addr)
	deadline := time.Now().Add(time.Minute)
	for {
		// Every broker sees the three, and they own partitions of the
		// topic between them.
		agreed, owners := true, map[string]bool{}
		for _, b := range brokers {
			api, err := client.Dial(b.addr)
			if err != nil {
				t.Fatal(err)
			}
			md, err := api.API().Metadata(ctx, &stratapb.MetadataRequest{Topics: []string{"spread"}})
			api.Close()
			if err != nil || len(md.Brokers) != 3 {
				agreed = false
				break
			}
			for _, o := range md.Topics[0].Owners {
				owners[o.NodeId] = true
			}
		}
		if agreed && len(owners) > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the brokers did not form a cluster owning the topic's partitions between them (owners %v)", owners)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const lines = 2000
	var in strings.Builder
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&in, "k%d=line-%d\n", i%41, i)
	}
	out, err := cliWithin(t, 2*time.Minute, in.String(), "produce", "spread", "--key-separator", "=", "--broker", brokers[1].addr)
	if err != nil {
		t.Fatalf("produce through one broker of the cluster: %v", err)
	}
	if got := strings.TrimSpace(out); got != strconv.Itoa(lines) {
		t.Fatalf("produce acknowledged %s, want %d", got, lines)
	}
	down := freeAddr(t)
	recs, err := cliWithin(t, time.Minute, "", "consume", "spread", "--from", "earliest", "--max", strconv.Itoa(lines), "--format", "json", "--broker", down+","+brokers[2].addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range parseRecords(t, recs, nil) {
		seen[r.Value]++
	}
	for i := 0; i < lines; i++ {
		if n := seen[fmt.Sprintf("line-%d", i)]; n != 1 {
			t.Fatalf("line-%d read %d times, want once", i, n)
		}
	}
}

// TestConsumeColdHistoryInBothModes: a broker with an empty disk replays
// sealed history through `strata consume`, as stored blocks (the default)
// and as records (--stored-blocks=false), and prints the same lines, from
// the start and from an offset inside a block.
func TestConsumeColdHistoryInBothModes(t *testing.T) {
	bucket := "file://" + t.TempDir()
	w := serveBin(t, t.TempDir(), bucket)
	cli(t, "", nil, "topic", "create", "cold", "--partitions", "1", "--broker", w.addr)
	const total = 3000
	var in strings.Builder
	for i := 0; i < total; i++ {
		fmt.Fprintf(&in, "k%d=%s-%d\n", i%7, strings.Repeat("v", i%200), i)
	}
	if got := strings.TrimSpace(cli(t, in.String(), nil, "produce", "cold", "--key-separator", "=", "--broker", w.addr)); got != strconv.Itoa(total) {
		t.Fatalf("produce acknowledged %s, want %d", got, total)
	}
	w.stop(t) // seals everything
	r := serveBin(t, t.TempDir(), bucket)
	for _, from := range []int64{0, 1234} {
		var outs []string
		for _, stored := range []string{"true", "false"} {
			out, err := cliWithin(t, time.Minute, "", "consume", "cold", "--partition", "0", "--from-offset", strconv.FormatInt(from, 10),
				"--max", strconv.FormatInt(total-from, 10), "--format", "json", "--stored-blocks="+stored, "--broker", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			if recs := parseRecords(t, out, map[int32]int64{0: from}); len(recs) != int(total-from) {
				t.Fatalf("--stored-blocks=%s from %d printed %d records", stored, from, len(recs))
			}
			outs = append(outs, out)
		}
		if outs[0] != outs[1] {
			t.Fatalf("from %d: stored blocks and records print different lines", from)
		}
	}
}
