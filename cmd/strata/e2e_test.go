package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/leakcheck"
	"github.com/stratalog/strata/internal/testenv"
)

// binary is the strata binary, built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "strata")
	// No config file of the machine's user reaches the commands the
	// tests run (docs/cli-config.md).
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Unsetenv("STRATA_CONFIG")
	if out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build strata: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := leakcheck.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind by the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type server struct {
	cmd  *exec.Cmd
	addr string
	logs *bytes.Buffer
}

var listenRE = regexp.MustCompile(`listening" addr=(127\.0\.0\.1:\d+)`) // not gossip_addr=

// serveBin starts `strata serve` on a free loopback port.
func serveBin(t testing.TB, dataDir, store string, env ...string) *server {
	t.Helper()
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--seal-bytes", "256KiB"}
	if store != "" {
		args = append(args, "--object-store", store)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, logs: &bytes.Buffer{}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.logs.WriteString(sc.Text() + "\n")
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case s.addr = <-found:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("broker did not start")
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return s
}

// stop sends SIGTERM and requires a clean exit.
func (s *server) stop(t testing.TB) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("broker exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("broker did not stop within 60s of SIGTERM")
	}
}

func cli(t testing.TB, stdin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("strata %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// hwms parses `topic describe`'s table into per-partition high
// watermarks.
func hwms(t testing.TB, describe string) []int {
	var out []int
	for _, line := range strings.Split(describe, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 {
			if _, err := strconv.Atoi(f[0]); err != nil {
				continue // the header
			}
			if n, err := strconv.Atoi(f[2]); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// consumeAll reads every partition from the start and checks per-key order.
func consumeAll(t testing.TB, addr string, env []string, parts []int, want int) {
	t.Helper()
	total := 0
	for p, n := range parts {
		if n == 0 {
			continue
		}
		out := cli(t, "", env, "consume", "events", "--broker", addr, "--partition", strconv.Itoa(p), "--from", "earliest", "--max", strconv.Itoa(n), "--format", "json")
		last := map[string]int{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for i, line := range lines {
			var r struct {
				Offset int64  `json:"offset"`
				Key    string `json:"key"`
				Value  string `json:"value"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("bad json line %q: %v", line, err)
			}
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: line %d has offset %d", p, i, r.Offset)
			}
			seq, _ := strconv.Atoi(strings.TrimPrefix(r.Value, "event-"))
			if prev, ok := last[r.Key]; ok && seq <= prev {
				t.Fatalf("partition %d: key %s out of order (%d after %d)", p, r.Key, seq, prev)
			}
			last[r.Key] = seq
		}
		total += len(lines)
	}
	if total != want {
		t.Fatalf("consumed %d records, want %d", total, want)
	}
}

func runE2E(t testing.TB, store string, env []string) {
	const n = 100000
	data := t.TempDir()
	s := serveBin(t, data, store, env...)
	cli(t, "", env, "topic", "create", "events", "--partitions", "4", "--broker", s.addr)
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "user-%d=event-%d\n", i%97, i)
	}
	before := time.Now().Add(-time.Second)
	if got := strings.TrimSpace(cli(t, in.String(), env, "produce", "events", "--key-separator", "=", "--broker", s.addr)); got != strconv.Itoa(n) {
		t.Fatalf("produce acknowledged %s, want %d", got, n)
	}
	parts := hwms(t, cli(t, "", env, "topic", "describe", "events", "--broker", s.addr))
	if len(parts) != 4 {
		t.Fatalf("describe gave %v", parts)
	}
	consumeAll(t, s.addr, env, parts, n)

	// SIGTERM: a clean stop that seals everything; restart on the same dir.
	s.stop(t)
	s2 := serveBin(t, data, store, env...)
	consumeAll(t, s2.addr, env, parts, n)
	s2.stop(t)

	// A second broker with an empty data dir on the same bucket replays all.
	if store == "" {
		store = "file://" + filepath.Join(data, "bucket")
	}
	s3 := serveBin(t, t.TempDir(), store, env...)
	consumeAll(t, s3.addr, env, parts, n)
	// It read everything from the object store: `strata stats` shows the
	// misses and GETs.
	if st := cli(t, "", env, "stats", "--broker", s3.addr); !regexp.MustCompile(`read cache: \d+ hits \(\d+ from disk\), [1-9]\d* misses, hit ratio [0-9.]+; [1-9]\d* GETs`).MatchString(st) {
		t.Fatalf("strata stats after a cold replay:\n%s", st)
	}
	// From a timestamp: everything was produced after `before`.
	out := cli(t, "", env, "consume", "events", "--broker", s3.addr, "--partition", "0", "--from-time", before.UTC().Format(time.RFC3339), "--max", "1", "--format", "json")
	if !strings.Contains(out, `"offset":0`) {
		t.Fatalf("consume --from-time before all data should start at offset 0: %s", out)
	}
	s3.stop(t)
}

func TestEndToEndFileStore(t *testing.T) {
	runE2E(t, "", nil)
}

func TestEndToEndMinIO(t *testing.T) {
	ep := testenv.MinIO(t)
	b := make([]byte, 5)
	rand.Read(b)
	store := fmt.Sprintf("s3://e2e-%s/strata?endpoint=%s&insecure=true&create=true", hex.EncodeToString(b), ep.Addr)
	runE2E(t, store, []string{"AWS_ACCESS_KEY_ID=" + ep.AccessKey, "AWS_SECRET_ACCESS_KEY=" + ep.SecretKey})
}

// TestEndToEndConsumerGroup: two consumers of one group run one after the
// other; the second continues from the first's committed offsets, so the
// two together print every record exactly once. Reset rewinds the group.
func TestEndToEndConsumerGroup(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	cli(t, "", nil, "topic", "create", "jobs", "--partitions", "2", "--broker", s.addr)
	var in strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&in, "job-%d\n", i)
	}
	cli(t, in.String(), nil, "produce", "jobs", "--broker", s.addr)
	seen := map[string]int{}
	for _, n := range []string{"300", "700"} {
		out := cli(t, "", nil, "consume", "jobs", "--group", "workers", "--max", n, "--broker", s.addr)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			seen[line]++
		}
	}
	if len(seen) != 1000 {
		t.Fatalf("two group consumers printed %d distinct records, want 1000", len(seen))
	}
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("%s printed %d times", v, c)
		}
	}
	desc := cli(t, "", nil, "group", "describe", "workers", "-o", "json", "--broker", s.addr)
	var d struct {
		Members []any `json:"members"`
		Lag     []struct {
			LagRecords *int64 `json:"lag_records"`
		} `json:"lag"`
	}
	if err := json.Unmarshal([]byte(desc), &d); err != nil {
		t.Fatalf("group describe -o json: %v\n%s", err, desc)
	}
	if len(d.Members) != 0 || len(d.Lag) < 2 {
		t.Fatalf("after the members left: %d members, lag of %d partitions:\n%s", len(d.Members), len(d.Lag), desc)
	}
	for _, l := range d.Lag {
		if l.LagRecords == nil || *l.LagRecords != 0 {
			t.Fatalf("after consuming everything the lag should be 0:\n%s", desc)
		}
	}
	if list := cli(t, "", nil, "group", "list", "--broker", s.addr); strings.Fields(list)[0] != "GROUP" || strings.Join(strings.Fields(list)[1:], " ") != "workers" {
		t.Fatalf("group list: %q", list)
	}
	cli(t, "", nil, "group", "reset", "workers", "--topic", "jobs", "--to", "earliest", "--broker", s.addr)
	out := cli(t, "", nil, "consume", "jobs", "--group", "workers", "--max", "1000", "--broker", s.addr)
	if got := len(strings.Split(strings.TrimSpace(out), "\n")); got != 1000 {
		t.Fatalf("after a reset to earliest the group read %d records, want 1000", got)
	}
	s.stop(t)
}

// TestEndToEndGroupTakeover: against the real binary, three Go-client
// consumers of one group split six partitions; one commits part of its
// work, reads more without committing, and dies (its connection drops, so
// its heartbeats stop). The two survivors take its partitions over and
// continue from the committed offsets: together with what the dead member
// committed they consume every record, none skipped, and the uncommitted
// ones are delivered again (at-least-once).
func TestEndToEndGroupTakeover(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	ctx := context.Background()
	admin, err := client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(ctx, "work", 6); err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int) {
		p := admin.NewProducer("work")
		for i := from; i < to; i++ {
			// Keyed, so every partition (the dead member's too) gets records.
			if _, err := p.Send(ctx, client.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const first, total = 6000, 6600
	produce(0, first)
	join := func() (*client.Client, *client.Consumer) {
		c, err := client.Dial(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		k, err := c.NewConsumer(ctx, "work", client.WithGroup("crew", client.AtLeastOnce), client.WithSessionTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	c1, k1 := join()
	defer c1.Close()
	c2, k2 := join()
	defer c2.Close()
	c3, k3 := join()
	waitUntil(t, "three members to split the partitions", func() bool {
		return len(k1.Assignment()) == 2 && len(k2.Assignment()) == 2 && len(k3.Assignment()) == 2
	})
	committedByDead := map[string]bool{}
	recs, err := k3.Poll(ctx)
	if err != nil || len(recs) == 0 {
		t.Fatalf("the doomed member read nothing: %v", err)
	}
	if err := k3.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		committedByDead[string(r.Value)] = true
	}
	produce(first, total)
	uncommitted, _ := k3.Poll(ctx) // read, never committed
	c3.Close()                     // dies: no leave, no more heartbeats

	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	poll := func(k *client.Consumer) {
		recs, err := k.Poll(ctx)
		if err != nil {
			return
		}
		mu.Lock()
		for _, r := range recs {
			seen[string(r.Value)] = true
		}
		mu.Unlock()
	}
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < total; i++ {
			v := strconv.Itoa(i)
			if !seen[v] && !committedByDead[v] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !complete() {
		if time.Now().After(deadline) {
			t.Fatalf("survivors consumed %d records; with the dead member's %d commits that is short of %d (assignments %v %v)",
				len(seen), len(committedByDead), total, k1.Assignment(), k2.Assignment())
		}
		poll(k1)
		poll(k2)
	}
	// A survivor learns its new assignment at its next heartbeat.
	waitUntil(t, "the survivors to hold all 6 partitions", func() bool {
		poll(k1)
		poll(k2)
		return len(k1.Assignment())+len(k2.Assignment()) == 6
	})
	for _, r := range uncommitted {
		if !seen[string(r.Value)] {
			t.Fatalf("record %s, read but not committed by the dead member, was not delivered again", r.Value)
		}
	}
	if len(uncommitted) == 0 {
		t.Fatal("the dead member's uncommitted read was empty; the test proves nothing about redelivery")
	}
	k1.Close(ctx)
	k2.Close(ctx)
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
