package main

// Share groups through the CLI, on real processes (docs/queues.md):
//
//   - a `strata queue run` worker killed with -9 while it holds leases:
//     every leased record is delivered again after its lease, its
//     delivery counted; with --ordered-by-key the keys stay blocked
//     until then;
//   - a poison record reaches the dead-letter topic after max
//     deliveries, the gaps between deliveries within the backoff
//     formula's bounds, the dead letter's headers right;
//   - the broker killed with -9 and its disk deleted, during a stream of
//     acks, during dead-letter moves, with delayed records pending: after
//     a restart on the same bucket no settled record is delivered again,
//     nothing is lost, the dead-letter topic holds each origin offset
//     once, and no delayed record is delivered before its time;
//   - dlq redrive moves dead letters back as new records, rate-limited;
//   - bad input exits non-zero saying what is wrong, and the broker goes
//     on serving.
//
// Every wait is bounded; timing is checked by lower bounds only (with
// generous upper bounds where the formula has one).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// qdelivery is a line of `strata queue receive --format json`.
type qdelivery struct {
	Topic         string            `json:"topic"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Key           *string           `json:"key"`
	Value         string            `json:"value"`
	Headers       map[string]string `json:"headers"`
	Receipt       string            `json:"receipt"`
	DeliveryCount int32             `json:"delivery_count"`
	LeaseUntil    time.Time         `json:"lease_until"`
}

// qdead is a line of `strata dlq list --format json`.
type qdead struct {
	Partition       int32             `json:"partition"`
	Offset          int64             `json:"offset"`
	Key             *string           `json:"key"`
	Value           string            `json:"value"`
	Headers         map[string]string `json:"headers"`
	OriginTopic     string            `json:"origin_topic"`
	OriginPartition *int64            `json:"origin_partition"`
	OriginOffset    *int64            `json:"origin_offset"`
	OriginTimestamp string            `json:"origin_timestamp"`
	DeliveryCount   *int64            `json:"delivery_count"`
	FirstDelivery   string            `json:"first_delivery"`
	LastDelivery    string            `json:"last_delivery"`
	Reason          string            `json:"reason"`
	Group           string            `json:"group"`
}

// runCLI runs the binary with stdin, bounded by d, and returns its stdout
// and stderr; err is set when it exits non-zero or overruns d.
func runCLI(t testing.TB, d time.Duration, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("strata %v did not finish within %v", args, d)
	}
	return out.String(), errb.String(), err
}

// mustCLI is runCLI that fails the test unless the command succeeds.
func mustCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, errs, err := runCLI(t, time.Minute, stdin, args...)
	if err != nil {
		t.Fatalf("strata %v: %v\n%s", args, err, errs)
	}
	return out
}

// receiveJSON receives from a share group through the CLI.
func receiveJSON(t testing.TB, addr, topic, group string, max int, wait time.Duration, extra ...string) ([]qdelivery, error) {
	t.Helper()
	args := append([]string{"queue", "receive", topic, "--group", group, "--max", strconv.Itoa(max), "--wait", wait.String(),
		"--format", "json", "--broker", addr}, extra...)
	out, errs, err := runCLI(t, wait+time.Minute, "", args...)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errs)
	}
	var ds []qdelivery
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d qdelivery
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Errorf("queue receive printed %q: %v", line, err) // Errorf: settleLoop's goroutines call this
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// receiptRE finds the receipts a failed settle names on stderr.
var receiptRE = regexp.MustCompile(`(?m)^  receipt ("(?:[^"\\]|\\.)*"):`)

// settleCLI settles receipts through the CLI (op: ack, nack, reject, ...)
// and returns those that settled for sure: all when it exits 0; when it
// fails, those it does not name as failed, or none when it names none.
func settleCLI(t testing.TB, addr, op, topic, group string, receipts []string, extra ...string) (map[string]bool, error) {
	t.Helper()
	args := append([]string{"queue", op, topic, "--group", group, "--broker", addr}, extra...)
	out, errs, err := runCLI(t, time.Minute, strings.Join(receipts, "\n")+"\n", args...)
	ok := map[string]bool{}
	if err == nil {
		if got := strings.TrimSpace(out); got != strconv.Itoa(len(receipts)) {
			t.Errorf("queue %s of %d receipts exited 0 and printed %q", op, len(receipts), got)
		}
		for _, r := range receipts {
			ok[r] = true
		}
		return ok, nil
	}
	failed := map[string]bool{}
	for _, m := range receiptRE.FindAllStringSubmatch(errs, -1) {
		r, _ := strconv.Unquote(m[1])
		failed[r] = true
	}
	if len(failed) > 0 && strings.Contains(errs, "did not settle (the other") {
		for _, r := range receipts {
			if !failed[r] {
				ok[r] = true
			}
		}
	}
	return ok, fmt.Errorf("%v: %s", err, errs)
}

// describeJSONOf is `strata queue describe --output json`.
func describeJSONOf(t testing.TB, addr, topic, group string) describeJSON {
	t.Helper()
	d, err := tryDescribe(t, addr, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tryDescribe is describeJSONOf that returns the command's failure.
func tryDescribe(t testing.TB, addr, topic, group string) (describeJSON, error) {
	t.Helper()
	var d describeJSON
	out, errs, err := runCLI(t, time.Minute, "", "queue", "describe", topic, "--group", group, "--output", "json", "--broker", addr)
	if err != nil {
		return d, fmt.Errorf("%v: %s", err, errs)
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("queue describe --output json printed %q: %v", out, err)
	}
	return d, nil
}

// deadLetters is `strata dlq list --format json`.
func deadLetters(t testing.TB, addr, topic, group string) []qdead {
	t.Helper()
	out := mustCLI(t, "", "dlq", "list", topic, "--group", group, "--format", "json", "--broker", addr)
	var ds []qdead
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d qdead
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("dlq list printed %q: %v", line, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// waitFor polls cond for at most d (every 100ms, at first every ms).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(min(time.Since(start)/10+time.Millisecond, 100*time.Millisecond))
	}
}

// worker is a `strata queue run` process.
type worker struct {
	cmd    *exec.Cmd
	lines  chan string // its stdout (its commands' stdout), a line at a time
	stderr *syncBuffer
	exited chan error
}

func startWorker(t testing.TB, env []string, args ...string) *worker {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	w := &worker{cmd: cmd, lines: make(chan string, 10000), stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = w.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	go func() {
		<-scanned
		w.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if err := <-w.exited; t.Failed() {
			t.Logf("worker %v: %v\n%s", args, err, w.stderr.String())
		}
		w.exited <- nil
	})
	return w
}

// next returns the worker's next stdout lines, n of them, within d.
func (w *worker) next(t testing.TB, n int, d time.Duration) []string {
	t.Helper()
	var out []string
	timeout := time.After(d)
	for len(out) < n {
		select {
		case l := <-w.lines:
			out = append(out, l)
		case <-timeout:
			t.Fatalf("the worker printed %d lines of %d within %v (%q); its stderr:\n%s", len(out), n, d, out, w.stderr.String())
		}
	}
	return out
}

// kill9 kills the worker (and, by their parent-death signal, its commands).
func (w *worker) kill9(t testing.TB) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGKILL)
	err := <-w.exited
	w.exited <- err
}

// stop sends SIGTERM and requires a clean exit within d.
func (w *worker) stop(t testing.TB, d time.Duration) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.exited:
		w.exited <- err
		if err != nil {
			t.Fatalf("the worker exited with %v after SIGTERM:\n%s", err, w.stderr.String())
		}
	case <-time.After(d):
		t.Fatalf("the worker did not stop within %v of SIGTERM:\n%s", d, w.stderr.String())
	}
}

// TestQueueKilledWorker: a `strata queue run` worker holds leases on
// records (its command sleeps) and is killed with -9. Every record it
// held is delivered again once its lease ends, with delivery count 2
// (never a second concurrent delivery: that would be count 1 again). With
// --ordered-by-key the worker holds only each key's first record; the
// second of a key is not delivered before the first is redelivered and
// acked.
func TestQueueKilledWorker(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	hold := []string{"sh", "-c", `echo "$STRATA_PARTITION $STRATA_OFFSET $STRATA_DELIVERY_COUNT $(cat)"; exec sleep 120`}

	t.Run("unordered", func(t *testing.T) {
		mustCLI(t, "", "topic", "create", "jobs", "--partitions", "2", "--broker", addr)
		mustCLI(t, "", "queue", "create", "jobs", "--group", "w", "--visibility", "3s", "--backoff", "100ms,500ms", "--broker", addr)
		const n = 6
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, "k%d=job-%d\n", i, i)
		}
		if got := strings.TrimSpace(mustCLI(t, in.String(), "produce", "jobs", "--key-separator", "=", "--broker", addr)); got != strconv.Itoa(n) {
			t.Fatalf("produce acknowledged %s, want %d", got, n)
		}
		w := startWorker(t, nil, append([]string{"queue", "run", "jobs", "--group", "w", "--concurrency", strconv.Itoa(n), "--broker", addr, "--"}, hold...)...)
		held := map[string]bool{}
		for _, l := range w.next(t, n, time.Minute) {
			f := strings.Fields(l)
			if len(f) != 4 || f[2] != "1" {
				t.Fatalf("the worker's command printed %q, want PARTITION OFFSET 1 VALUE", l)
			}
			held[f[3]] = true
		}
		if len(held) != n {
			t.Fatalf("the worker held %v, want %d distinct records", held, n)
		}
		if d := describeJSONOf(t, addr, "jobs", "w"); d.Totals.InFlight != n || d.Totals.Available != 0 {
			t.Fatalf("with the worker holding %d records, describe says %+v", n, d.Totals)
		}
		w.kill9(t)

		again := map[string]int32{}
		deadline := time.Now().Add(time.Minute)
		for len(again) < n && time.Now().Before(deadline) {
			ds, err := receiveJSON(t, addr, "jobs", "w", 10, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var rs []string
			for _, d := range ds {
				if _, dup := again[d.Value]; dup || !held[d.Value] {
					t.Fatalf("delivered %q (count %d) after the kill: not one of the held records, or twice", d.Value, d.DeliveryCount)
				}
				again[d.Value] = d.DeliveryCount
				rs = append(rs, d.Receipt)
			}
			if len(rs) > 0 {
				if _, err := settleCLI(t, addr, "ack", "jobs", "w", rs); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(again) != n {
			t.Fatalf("after the kill %d of the %d held records were delivered again: %v", len(again), n, again)
		}
		for v, c := range again {
			if c != 2 {
				t.Fatalf("%s was delivered again with count %d, want 2 (the lost lease counted once)", v, c)
			}
		}
		if d := describeJSONOf(t, addr, "jobs", "w"); d.Totals.Acked != n || d.Totals.InFlight != 0 || d.Totals.Backoff != 0 {
			t.Fatalf("after acking every record, describe says %+v", d.Totals)
		}
	})

	t.Run("ordered-by-key", func(t *testing.T) {
		mustCLI(t, "", "topic", "create", "ord", "--partitions", "1", "--broker", addr)
		mustCLI(t, "", "queue", "create", "ord", "--group", "o", "--ordered-by-key", "--visibility", "3s", "--backoff", "100ms,500ms", "--broker", addr)
		keys := []string{"a", "b", "c"}
		var in strings.Builder
		for _, round := range []string{"1", "2"} {
			for _, k := range keys {
				fmt.Fprintf(&in, "%s=%s%s\n", k, k, round)
			}
		}
		mustCLI(t, in.String(), "produce", "ord", "--key-separator", "=", "--broker", addr)
		w := startWorker(t, nil, append([]string{"queue", "run", "ord", "--group", "o", "--concurrency", "6", "--broker", addr, "--"}, hold...)...)
		held := map[string]bool{}
		for _, l := range w.next(t, len(keys), time.Minute) {
			f := strings.Fields(l)
			held[f[len(f)-1]] = true
		}
		for _, k := range keys {
			if !held[k+"1"] {
				t.Fatalf("the worker holds %v: with ordered delivery it must hold each key's first record", held)
			}
		}
		waitFor(t, 30*time.Second, "describe to count the second records key-blocked", func() bool {
			d := describeJSONOf(t, addr, "ord", "o")
			return d.Totals.InFlight == 3 && d.Totals.KeyBlocked == 3
		})
		w.kill9(t)
		select {
		case l := <-w.lines:
			t.Fatalf("the worker got a fourth record %q: a key's second record was delivered while its first was in flight", l)
		default:
		}

		acked := map[string]bool{}
		deadline := time.Now().Add(time.Minute)
		for len(acked) < 2*len(keys) && time.Now().Before(deadline) {
			ds, err := receiveJSON(t, addr, "ord", "o", 10, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var rs []string
			for _, d := range ds {
				k, round := d.Value[:1], d.Value[1:]
				switch {
				case acked[d.Value]:
					t.Fatalf("%s delivered again after its ack", d.Value)
				case round == "1" && d.DeliveryCount != 2:
					t.Fatalf("%s delivered again with count %d, want 2", d.Value, d.DeliveryCount)
				case round == "2" && !acked[k+"1"]:
					t.Fatalf("%s delivered before %s1 was redelivered and acked: its key was not blocked", d.Value, k)
				case round == "2" && d.DeliveryCount != 1:
					t.Fatalf("%s delivered with count %d, want 1", d.Value, d.DeliveryCount)
				}
				rs = append(rs, d.Receipt)
			}
			if len(rs) == 0 {
				continue
			}
			if _, err := settleCLI(t, addr, "ack", "ord", "o", rs); err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				acked[d.Value] = true
			}
		}
		if len(acked) != 2*len(keys) {
			t.Fatalf("acked %v after the kill, want all %d records", acked, 2*len(keys))
		}
	})
	s.stop(t)
}

// TestQueuePoisonToDLQ: a `queue run` command that always fails nacks its
// record with its stderr as reason, 3 times (--max-deliveries 3), and the
// record lands in the dead-letter topic with the origin, the count and
// the last reason in its headers. The gaps between deliveries are at
// least the backoff floor (min) and at most the formula's bound
// (min(max, min×2^(n−1))) plus generous slack.
func TestQueuePoisonToDLQ(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	const (
		minB, maxB = 200 * time.Millisecond, time.Second
		deliveries = 3
	)
	mustCLI(t, "", "topic", "create", "poison", "--partitions", "1", "--broker", addr)
	mustCLI(t, "", "queue", "create", "poison", "--group", "p", "--max-deliveries", strconv.Itoa(deliveries),
		"--backoff", minB.String()+","+maxB.String(), "--visibility", "10s", "--broker", addr)
	mustCLI(t, `{"key":"bad","value":"poison-pill","headers":{"trace":"t-1"}}`+"\n", "produce", "poison", "--format", "json", "--broker", addr)

	log := filepath.Join(t.TempDir(), "deliveries")
	w := startWorker(t, []string{"QLOG=" + log}, "queue", "run", "poison", "--group", "p", "--broker", addr, "--",
		"sh", "-c", `echo "$STRATA_DELIVERY_COUNT $(date +%s%N)" >> "$QLOG"; cat > /dev/null; echo "boom at delivery $STRATA_DELIVERY_COUNT" >&2; exit 3`)
	var dead []qdead
	waitFor(t, time.Minute, "the poison record in the dead-letter topic", func() bool {
		dead = deadLetters(t, addr, "poison", "p")
		return len(dead) > 0
	})
	w.stop(t, 30*time.Second)
	if !strings.Contains(w.stderr.String(), "handled 3 records") {
		t.Fatalf("the worker's summary does not count 3 records:\n%s", w.stderr.String())
	}

	// The gaps between deliveries.
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != deliveries {
		t.Fatalf("the command ran %d times (%q), want %d", len(lines), lines, deliveries)
	}
	var at []time.Time
	for i, l := range lines {
		f := strings.Fields(l)
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if len(f) != 2 || f[0] != strconv.Itoa(i+1) || err != nil {
			t.Fatalf("delivery log line %q, want %d NANOSECONDS", l, i+1)
		}
		at = append(at, time.Unix(0, ns))
	}
	for n := 1; n < deliveries; n++ {
		base := time.Duration(math.Min(float64(maxB), float64(minB)*math.Pow(2, float64(n-1))))
		gap := at[n].Sub(at[n-1])
		if gap < minB || gap > base+20*time.Second {
			t.Fatalf("delivery %d came %v after delivery %d: the backoff after delivery %d is %v + [0, %v]", n+1, gap, n, n, minB, base-minB)
		}
		t.Logf("gap after delivery %d: %v (backoff %v + [0, %v])", n, gap, minB, base-minB)
	}

	// The dead letter.
	if len(dead) != 1 {
		t.Fatalf("the dead-letter topic holds %d records, want 1: %+v", len(dead), dead)
	}
	d := dead[0]
	switch {
	case d.Value != "poison-pill" || d.Key == nil || *d.Key != "bad" || d.Headers["trace"] != "t-1":
		t.Fatalf("the dead letter lost the record's key, value or headers: %+v", d)
	case d.OriginTopic != "poison" || d.OriginPartition == nil || *d.OriginPartition != 0 || d.OriginOffset == nil || *d.OriginOffset != 0:
		t.Fatalf("the dead letter's origin is %s/%v@%v, want poison/0@0", d.OriginTopic, d.OriginPartition, d.OriginOffset)
	case d.DeliveryCount == nil || *d.DeliveryCount != deliveries:
		t.Fatalf("the dead letter's delivery count is %v, want %d", d.DeliveryCount, deliveries)
	case d.Reason != "boom at delivery 3":
		t.Fatalf("the dead letter's reason is %q, want the last command's stderr %q", d.Reason, "boom at delivery 3")
	case d.Group != "p":
		t.Fatalf("the dead letter's group is %q, want p", d.Group)
	}
	first, err1 := time.Parse(time.RFC3339, d.FirstDelivery)
	last, err2 := time.Parse(time.RFC3339, d.LastDelivery)
	_, err3 := time.Parse(time.RFC3339, d.OriginTimestamp)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("the dead letter's times do not parse as RFC 3339: first %q, last %q, origin %q", d.FirstDelivery, d.LastDelivery, d.OriginTimestamp)
	}
	if gap := last.Sub(first); gap < time.Duration(deliveries-1)*minB-2*time.Millisecond {
		t.Fatalf("the dead letter's first and last deliveries are %v apart, under %d backoffs of at least %v", gap, deliveries-1, minB)
	}
	if text := mustCLI(t, "", "dlq", "list", "poison", "--group", "p", "--broker", addr); text != "poison/0@0\tdeliveries=3\treason=\"boom at delivery 3\"\tpoison-pill\n" {
		t.Fatalf("dlq list printed %q", text)
	}
	if desc := describeJSONOf(t, addr, "poison", "p"); desc.Totals.DeadLettered != 1 || desc.Totals.Acked != 0 {
		t.Fatalf("describe after the dead letter: %+v", desc.Totals)
	}
	s.stop(t)
}

// ledger is what a settling loop learned: the values whose settle was
// confirmed (when), deliveries seen, and violations.
type ledger struct {
	settling atomic.Int32 // settle commands running

	mu         sync.Mutex
	settled    map[string]time.Time // value -> when its settle's command returned success
	seen       map[string]int       // value -> deliveries received
	violations []string
}

func newLedger() *ledger {
	return &ledger{settled: map[string]time.Time{}, seen: map[string]int{}}
}

func (l *ledger) confirmed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.settled)
}

// settleLoop receives from topic's group and settles every delivery with
// op until done() or the deadline, through the broker's restarts (a
// failed command is retried). A delivery whose lease began after a
// confirmed settle of the same record is a violation. check, when set,
// judges each delivery and returns a violation or "".
func settleLoop(t testing.TB, addr, op, topic, group string, vis time.Duration, l *ledger, deadline time.Time, done func() bool, check func(qdelivery) string, extra ...string) {
	for !done() && time.Now().Before(deadline) {
		ds, err := receiveJSON(t, addr, topic, group, 20, time.Second, "--visibility", vis.String())
		if err != nil {
			time.Sleep(200 * time.Millisecond) // the broker is down or starting
			continue
		}
		var rs []string
		byReceipt := map[string]string{}
		l.mu.Lock()
		for _, d := range ds {
			l.seen[d.Value]++
			start := d.LeaseUntil.Add(-vis)
			if at, ok := l.settled[d.Value]; ok && start.After(at) {
				l.violations = append(l.violations, fmt.Sprintf("%s (%d@%d) delivered again (count %d, lease from %s) after its %s was confirmed at %s",
					d.Value, d.Partition, d.Offset, d.DeliveryCount, start.Format(time.RFC3339Nano), op, at.Format(time.RFC3339Nano)))
			}
			if check != nil {
				if v := check(d); v != "" {
					l.violations = append(l.violations, v)
				}
			}
			rs = append(rs, d.Receipt)
			byReceipt[d.Receipt] = d.Value
		}
		l.mu.Unlock()
		if len(rs) == 0 {
			continue
		}
		l.settling.Add(1)
		ok, _ := settleCLI(t, addr, op, topic, group, rs, extra...)
		l.settling.Add(-1)
		now := time.Now()
		l.mu.Lock()
		for r := range ok {
			if _, had := l.settled[byReceipt[r]]; !had {
				l.settled[byReceipt[r]] = now
			}
		}
		l.mu.Unlock()
	}
}

// settledAll reports whether the group has nothing left: every record of
// the topic read and settled, none leased, waiting or on its way to the
// dead-letter topic.
func settledAll(d describeJSON, want int64) bool {
	t := d.Totals
	return t.Available == 0 && t.InFlight == 0 && t.Backoff == 0 && t.Delayed == 0 && t.KeyBlocked == 0 &&
		t.DeadLetterPending == 0 && t.Acked+t.DeadLettered >= want
}

// TestQueueBrokerKill9: the broker is killed with -9 and its data
// directory deleted, then a new broker starts on the same bucket (MinIO)
// and address: (a) during a stream of acks, (b) during dead-letter moves
// (rejects), (c) with delayed records pending. No record whose settle was
// confirmed is delivered again, every produced record is settled in the
// end (acked, or once in the dead-letter topic), and no delayed record is
// delivered before its time.
func TestQueueBrokerKill9(t *testing.T) {
	type scenario struct {
		name, op   string
		records    int
		killAfter  int           // confirmed settles before the kill (-1: right after the produce)
		delay      time.Duration // produce --delay
		groupFlags []string
	}
	for _, sc := range []scenario{
		{name: "acks", op: "ack", records: 300, killAfter: 100},
		{name: "dlq-moves", op: "reject", records: 120, killAfter: 40},
		{name: "delayed", op: "ack", records: 60, killAfter: -1, delay: 5 * time.Second},
	} {
		t.Run(sc.name, func(t *testing.T) {
			bk := newBucket(t)
			addr, dir := freeAddr(t), t.TempDir()
			a := startBroker(t, addr, dir, bk.url(""), bk.env)
			const topic, group = "work", "g"
			const vis = 5 * time.Second
			mustCLI(t, "", "topic", "create", topic, "--partitions", "2", "--broker", addr)
			mustCLI(t, "", append([]string{"queue", "create", topic, "--group", group, "--backoff", "100ms,500ms", "--broker", addr}, sc.groupFlags...)...)
			var in strings.Builder
			for i := range sc.records {
				fmt.Fprintf(&in, "k%d=v-%d\n", i%13, i)
			}
			args := []string{"produce", topic, "--key-separator", "=", "--broker", addr}
			if sc.delay > 0 {
				args = append(args, "--delay", sc.delay.String())
			}
			produced := time.Now()
			if got := strings.TrimSpace(mustCLI(t, in.String(), args...)); got != strconv.Itoa(sc.records) {
				t.Fatalf("produce acknowledged %s, want %d", got, sc.records)
			}
			var check func(qdelivery) string
			if sc.delay > 0 {
				due := produced.Add(sc.delay)
				check = func(d qdelivery) string {
					if start := d.LeaseUntil.Add(-vis); start.Before(due.Add(-time.Millisecond)) || time.Now().Before(due) {
						return fmt.Sprintf("%s delivered at %s, before its time %s (produced with --delay %v at %s)",
							d.Value, start.Format(time.RFC3339Nano), due.Format(time.RFC3339Nano), sc.delay, produced.Format(time.RFC3339Nano))
					}
					return ""
				}
			}
			var extra []string
			if sc.op == "reject" {
				extra = []string{"--reason", "rejected by the test"}
			}

			l := newLedger()
			var allDone bool
			var doneMu sync.Mutex
			done := func() bool { doneMu.Lock(); defer doneMu.Unlock(); return allDone }
			deadline := time.Now().Add(3 * time.Minute)
			var wg sync.WaitGroup
			if sc.killAfter >= 0 {
				for range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						settleLoop(t, addr, sc.op, topic, group, vis, l, deadline, done, check, extra...)
					}()
				}
				waitFor(t, 2*time.Minute, fmt.Sprintf("%d confirmed %ss", sc.killAfter, sc.op), func() bool { return l.confirmed() >= sc.killAfter })
				if d, err := tryDescribe(t, addr, topic, group); err == nil {
					t.Logf("before the kill: %+v", d.Totals)
				}
				// Kill while a settle command runs (its request on its
				// way, or its answer).
				waitFor(t, 30*time.Second, "a settle command running", func() bool { return l.settling.Load() > 0 })
				time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
			}
			a.kill9(t)
			killedAt := time.Now()
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if sc.delay > 0 && killedAt.Sub(produced) >= sc.delay {
				t.Logf("the broker was killed %v after the produce, past the delay: the test proves less", killedAt.Sub(produced))
			}
			b := startBroker(t, addr, t.TempDir(), bk.url(""), bk.env)
			restarted := time.Now()
			t.Cleanup(func() {
				if t.Failed() || time.Since(restarted) > 20*time.Second {
					t.Logf("the new broker's log:\n%s", b.logs.String())
				}
			})
			if sc.killAfter < 0 {
				for range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						settleLoop(t, addr, sc.op, topic, group, vis, l, deadline, done, check, extra...)
					}()
				}
			}
			// Every record settled, as the new broker sees it (a settle
			// whose outcome the loop did not learn either settled, or
			// the record came back and was settled again).
			var last describeJSON
			logged := time.Now()
			waitFor(t, 3*time.Minute, "every record settled after the restart", func() bool {
				d, err := tryDescribe(t, addr, topic, group)
				last = d
				if time.Since(logged) > 5*time.Second {
					logged = time.Now()
					t.Logf("%v after the restart: %+v (%v); %d settles confirmed", time.Since(restarted).Round(time.Millisecond), d.Totals, err, l.confirmed())
				}
				return err == nil && settledAll(d, int64(sc.records))
			})
			t.Logf("every record settled %v after the restart", time.Since(restarted).Round(time.Millisecond))
			if got := last.Totals.Acked + last.Totals.DeadLettered; got != int64(sc.records) {
				t.Fatalf("the group counts %d records settled (%+v), want %d: a record settled twice", got, last.Totals, sc.records)
			}
			doneMu.Lock()
			allDone = true
			doneMu.Unlock()
			wg.Wait()
			l.mu.Lock()
			defer l.mu.Unlock()
			if len(l.violations) > 0 {
				t.Fatalf("%d violations, the first: %s", len(l.violations), strings.Join(l.violations[:min(5, len(l.violations))], "\n"))
			}
			for i := range sc.records {
				if v := fmt.Sprintf("v-%d", i); l.seen[v] == 0 {
					t.Fatalf("%s was never delivered", v)
				}
			}
			redelivered := 0
			for _, n := range l.seen {
				redelivered += n - 1
			}
			t.Logf("%d %ss confirmed before the kill; %d deliveries beyond the first (leases lost with the broker, settles whose outcome was unknown)",
				sc.killAfter, sc.op, redelivered)

			if sc.op == "reject" {
				// Each origin offset once in the dead-letter topic, after
				// the new owner repeated the moves it found pending.
				var dead []qdead
				waitFor(t, time.Minute, "every dead letter moved", func() bool {
					dead = deadLetters(t, addr, topic, group)
					return len(dead) >= sc.records
				})
				time.Sleep(time.Second) // a repeated move would land by now
				dead = deadLetters(t, addr, topic, group)
				seen := map[string]int{}
				for _, d := range dead {
					if d.OriginPartition == nil || d.OriginOffset == nil {
						t.Fatalf("a dead letter without its origin: %+v", d)
					}
					seen[fmt.Sprintf("%d@%d", *d.OriginPartition, *d.OriginOffset)]++
					if d.Reason != "rejected by the test" {
						t.Fatalf("dead letter %s has reason %q", d.Value, d.Reason)
					}
				}
				for o, n := range seen {
					if n != 1 {
						t.Fatalf("origin %s is %d times in the dead-letter topic, want once", o, n)
					}
				}
				if len(seen) != sc.records || len(dead) != sc.records {
					t.Fatalf("the dead-letter topic holds %d records of %d origin offsets, want %d", len(dead), len(seen), sc.records)
				}
			}
		})
	}
}

// TestQueueRedrive: dead letters moved back by `strata dlq redrive` are
// new records of the topic: delivered from count 1, without the
// strata-dlq-* headers; --max stops early and the next run goes on where
// it stopped; --rate spaces the records (N records at R/s take at least
// (N−1)/R); a run with nothing left moves 0.
func TestQueueRedrive(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	const topic, group, n = "rd", "r", 30
	mustCLI(t, "", "topic", "create", topic, "--partitions", "2", "--broker", addr)
	mustCLI(t, "", "queue", "create", topic, "--group", group, "--max-deliveries", "1", "--broker", addr)
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d=v-%d\n", i, i)
	}
	mustCLI(t, in.String(), "produce", topic, "--key-separator", "=", "--broker", addr)
	for rejected := 0; rejected < n; {
		ds, err := receiveJSON(t, addr, topic, group, n, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			t.Fatalf("nothing to receive after %d rejects of %d", rejected, n)
		}
		var rs []string
		for _, d := range ds {
			rs = append(rs, d.Receipt)
		}
		// A nack at the group's max deliveries (1) dead-letters too.
		if _, err := settleCLI(t, addr, "nack", topic, group, rs, "--reason", "try later"); err != nil {
			t.Fatal(err)
		}
		rejected += len(ds)
	}
	waitFor(t, 30*time.Second, "every record dead-lettered", func() bool { return len(deadLetters(t, addr, topic, group)) == n })

	out, errs, err := runCLI(t, time.Minute, "", "dlq", "redrive", topic, "--group", group, "--max", "10", "--rate", "50/s", "--broker", addr)
	if err != nil || strings.TrimSpace(out) != "10" || !strings.Contains(errs, "redrove 10 records from rd.dlq.r to their origin topics") {
		t.Fatalf("dlq redrive --max 10: %v, stdout %q, stderr %q", err, out, errs)
	}
	const rate = 10.0
	start := time.Now()
	out, errs, err = runCLI(t, time.Minute, "", "dlq", "redrive", topic, "--group", group, "--rate", fmt.Sprintf("%g/s", rate), "--broker", addr)
	took := time.Since(start)
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(n-10) {
		t.Fatalf("dlq redrive: %v, stdout %q, stderr %q", err, out, errs)
	}
	if least := time.Duration(float64(n-10-1) / rate * float64(time.Second)); took < least {
		t.Fatalf("redrove %d records at --rate %g/s in %v, under the %v the rate allows", n-10, rate, took, least)
	}
	t.Logf("redrove %d records at %g/s in %v", n-10, rate, took)
	if out := mustCLI(t, "", "dlq", "redrive", topic, "--group", group, "--broker", addr); strings.TrimSpace(out) != "0" {
		t.Fatalf("a third redrive moved %s records, want 0 (the others went on from the commit)", out)
	}

	got := map[string]bool{}
	for deadline := time.Now().Add(time.Minute); len(got) < n && time.Now().Before(deadline); {
		ds, err := receiveJSON(t, addr, topic, group, n, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rs []string
		for _, d := range ds {
			if got[d.Value] {
				t.Fatalf("%s redriven twice", d.Value)
			}
			got[d.Value] = true
			if d.DeliveryCount != 1 {
				t.Fatalf("redriven %s delivered with count %d, want 1", d.Value, d.DeliveryCount)
			}
			for h := range d.Headers {
				if strings.HasPrefix(h, "strata-dlq-") {
					t.Fatalf("redriven %s kept header %s", d.Value, h)
				}
			}
			if d.Key == nil || "v-"+strings.TrimPrefix(*d.Key, "k") != d.Value {
				t.Fatalf("redriven %s has key %v", d.Value, d.Key)
			}
			rs = append(rs, d.Receipt)
		}
		if len(rs) > 0 {
			if _, err := settleCLI(t, addr, "ack", topic, group, rs); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got) != n {
		t.Fatalf("received %d redriven records, want %d", len(got), n)
	}
	s.stop(t)
}

// TestQueueBadInput: bad receipts, flags out of range and a dead-letter
// topic equal to the topic: each command exits non-zero with a message
// that says what is wrong, and the broker goes on serving.
func TestQueueBadInput(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	const topic = "bad"
	mustCLI(t, "", "topic", "create", topic, "--partitions", "1", "--broker", addr)
	mustCLI(t, "", "queue", "create", topic, "--group", "g1", "--broker", addr)
	mustCLI(t, "", "queue", "create", topic, "--group", "g2", "--broker", addr)
	mustCLI(t, "first\n", "produce", topic, "--broker", addr)
	one := func(group string) qdelivery {
		ds, err := receiveJSON(t, addr, topic, group, 1, 5*time.Second)
		if err != nil || len(ds) != 1 {
			t.Fatalf("receive from %s: %v %v", group, ds, err)
		}
		return ds[0]
	}
	d1, d2 := one("g1"), one("g2")
	mustCLI(t, "", "queue", "ack", topic, "--group", "g1", d1.Receipt, "--broker", addr)

	q := func(args ...string) []string { return append(append([]string{"queue"}, args...), "--broker", addr) }
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		says  []string
	}{
		{"settled receipt", q("ack", topic, "--group", "g1", d1.Receipt), "", []string{"already settled", strconv.Quote(d1.Receipt)}},
		{"forged receipt", q("ack", topic, "--group", "g1", "0-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "", []string{"receipt", "invalid argument"}},
		{"garbage receipt", q("nack", topic, "--group", "g1", "garbage"), "", []string{`"garbage" is not a receipt`}},
		{"garbage receipt on stdin", q("release", topic, "--group", "g1"), "garbage\n", []string{`"garbage" is not a receipt`}},
		{"receipt of another group", q("ack", topic, "--group", "g1", d2.Receipt), "", []string{`is not of share group "g1"`}},
		{"no receipt", q("ack", topic, "--group", "g1"), "", []string{"no receipt given"}},
		{"negative nack delay", q("nack", topic, "--group", "g2", "--delay", "-5s", d2.Receipt), "", []string{"--delay -5s is out of range"}},
		{"negative produce delay", []string{"produce", topic, "--delay", "-5s", "--broker", addr}, "x\n", []string{"--delay -5s is out of range"}},
		{"priority 12", []string{"produce", topic, "--priority", "12", "--broker", addr}, "x\n", []string{"--priority 12 is out of range", "0", "9"}},
		{"delay and deliver-at", []string{"produce", topic, "--delay", "1s", "--deliver-at", "2026-01-01T00:00:00Z", "--broker", addr}, "x\n", []string{"give one of them"}},
		{"dead letter is the topic", q("create", topic, "--group", "g3", "--dead-letter", topic), "", []string{"its own topic", "invalid argument"}},
		{"visibility 13h on create", q("create", topic, "--group", "g4", "--visibility", "13h"), "", []string{"visibility timeout 13h0m0s is out of range"}},
		{"visibility 13h on receive", q("receive", topic, "--group", "g2", "--visibility", "13h"), "", []string{"--visibility 13h0m0s is out of range"}},
		{"visibility 13h on run", q("run", topic, "--group", "g2", "--visibility", "13h", "--", "true"), "", []string{"--visibility 13h0m0s is out of range"}},
		{"no such group", q("receive", topic, "--group", "nope", "--wait", "0s"), "", []string{"not found", `share group "nope"`, "strata queue create"}},
		{"alter no such group", q("alter", topic, "--group", "nope", "--visibility", "5s"), "", []string{"has no share group nope"}},
		{"alter --from", q("alter", topic, "--group", "g1", "--from", "earliest"), "", []string{"fixed at its creation"}},
		{"bad backoff", q("create", topic, "--group", "g5", "--backoff", "1s"), "", []string{"MIN,MAX"}},
		{"dedup header in text", []string{"produce", topic, "--dedup-id-header", "id", "--broker", addr}, "x\n", []string{"--format json"}},
		{"dedup header missing", []string{"produce", topic, "--format", "json", "--dedup-id-header", "id", "--broker", addr}, `{"value":"x"}` + "\n", []string{"line 1", "no header id"}},
		{"run without a command", q("run", topic, "--group", "g2"), "", []string{"after --"}},
		{"prefetch 1001 on run", q("run", topic, "--group", "g2", "--prefetch", "1001", "--", "true"), "", []string{"--prefetch 1001 is out of range", "0 to 1000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, err := runCLI(t, time.Minute, tc.stdin, tc.args...)
			if err == nil {
				t.Fatalf("strata %v exited 0", tc.args)
			}
			if !strings.HasPrefix(errs, "strata: ") {
				t.Fatalf("strata %v: stderr %q does not start with \"strata: \"", tc.args, errs)
			}
			for _, s := range tc.says {
				if !strings.Contains(errs, s) {
					t.Fatalf("strata %v: stderr %q does not say %q", tc.args, errs, s)
				}
			}
		})
	}
	// The broker goes on serving: a produce, and g1 receives the record.
	if got := strings.TrimSpace(mustCLI(t, "after\n", "produce", topic, "--priority", "9", "--broker", addr)); got != "1" {
		t.Fatalf("produce after the bad input acknowledged %s", got)
	}
	if d := one("g1"); d.Value != "after" || d.Headers["strata-priority"] != "9" {
		t.Fatalf("after the bad input g1 received %+v, want the record \"after\" with priority 9", d)
	}
	if groups := mustCLI(t, "", "queue", "list", topic, "--broker", addr); strings.Count(groups, "\n") != 3 { // a header and two groups
		t.Fatalf("the bad creates made groups: %q", groups)
	}
	s.stop(t)
}

// TestQueueCLIHelpers: the parsing the queue commands rely on.
func TestQueueCLIHelpers(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		for in, want := range map[string]float64{"0": 0, "100": 100, "100/s": 100, "60/m": 1, "7200/h": 2, "2.5/s": 2.5} {
			if got, err := parseRate(in); err != nil || got != want {
				t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
			}
		}
		for _, in := range []string{"-1", "x", "10/d", "", "NaN"} {
			if _, err := parseRate(in); err == nil {
				t.Errorf("parseRate(%q) accepted", in)
			}
		}
	})
	t.Run("receipts", func(t *testing.T) {
		in := "0-abc\n\n  1-def  \nhello world\t2-ghi\n" + `{"receipt":"3-jkl","value":"x"}` + "\n"
		got, err := readReceipts(nil, strings.NewReader(in))
		if err != nil || strings.Join(got, ",") != "0-abc,1-def,2-ghi,3-jkl" {
			t.Fatalf("readReceipts: %v, %v", got, err)
		}
		if got, err := readReceipts([]string{"-"}, strings.NewReader("0-a\n")); err != nil || len(got) != 1 {
			t.Fatalf(`readReceipts("-"): %v, %v`, got, err)
		}
		if got, _ := readReceipts([]string{"0-a", "1-b"}, strings.NewReader("ignored\n")); len(got) != 2 {
			t.Fatalf("readReceipts(args) read stdin: %v", got)
		}
		for _, bad := range []string{"", "\n\n", `{"value":"x"}` + "\n"} {
			if _, err := readReceipts(nil, strings.NewReader(bad)); err == nil {
				t.Errorf("readReceipts(%q) accepted", bad)
			}
		}
		if _, err := readReceipts([]string{"0-a", "-"}, strings.NewReader("")); err == nil {
			t.Error("receipts and - together accepted")
		}
	})
	t.Run("produce lines", func(t *testing.T) {
		extra := map[string][]byte{"strata-priority": []byte("3")}
		r, err := parseProduceLine(`{"key":"k","value":"v","headers":{"id":"m-1","strata-priority":"1"}}`, "json", "", extra, "id")
		if err != nil || string(r.Key) != "k" || string(r.Value) != "v" || string(r.Headers["strata-msg-id"]) != "m-1" || string(r.Headers["strata-priority"]) != "3" {
			t.Fatalf("json line: %+v, %v", r, err)
		}
		if r, err := parseProduceLine(`{"value":""}`, "json", "", nil, ""); err != nil || r.Key != nil || r.Value == nil || len(r.Value) != 0 {
			t.Fatalf("json line without key: %+v, %v", r, err)
		}
		if r, err := parseProduceLine("a=b=c", "text", "=", nil, ""); err != nil || string(r.Key) != "a" || string(r.Value) != "b=c" {
			t.Fatalf("text line: %+v, %v", r, err)
		}
		for _, bad := range []string{`{"key":"k"}`, `{"value":1}`, `{"value":"v","extra":1}`, `{"value":"v"} {"value":"w"}`, `not json`} {
			if _, err := parseProduceLine(bad, "json", "", nil, ""); err == nil {
				t.Errorf("json line %q accepted", bad)
			}
		}
	})
	t.Run("stderr tail", func(t *testing.T) {
		tb := &tailBuffer{max: 8}
		io.WriteString(tb, "0123456789")
		io.WriteString(tb, "abcdef")
		if got := tb.String(); got != "89abcdef" {
			t.Fatalf("tail %q, want 89abcdef", got)
		}
		tb = &tailBuffer{max: 4}
		io.WriteString(tb, "xé€") // é is 2 bytes, € 3: the last 4 bytes start inside é
		if got := tb.String(); got != "€" {
			t.Fatalf("tail %q, want a whole rune", got)
		}
	})
}

// TestQueueRunStops: `queue run` extends the lease of a record whose
// command outlives the visibility timeout (no one else receives it
// meanwhile); on SIGTERM it takes no more records, lets the running
// command finish and acks its record; with --max 1 a failing command's
// record is nacked, not released (it comes back with its delivery
// counted), and the worker exits 0.
func TestQueueRunStops(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	const vis = 3 * time.Second
	mustCLI(t, "", "topic", "create", "slow", "--partitions", "1", "--broker", addr)
	mustCLI(t, "", "queue", "create", "slow", "--group", "s", "--visibility", vis.String(), "--backoff", "100ms,200ms", "--broker", addr)
	mustCLI(t, "long\nnext\n", "produce", "slow", "--broker", addr)

	// The command runs twice the visibility timeout; SIGTERM comes while it runs.
	w := startWorker(t, nil, "queue", "run", "slow", "--group", "s", "--broker", addr, "--",
		"sh", "-c", `echo "start $(cat)"; sleep 6; echo done`)
	if l := w.next(t, 1, time.Minute); l[0] != "start long" {
		t.Fatalf("the worker ran %q first, want the record long", l[0])
	}
	started := time.Now()
	time.Sleep(vis + vis/2)
	if ds, err := receiveJSON(t, addr, "slow", "s", 10, 0); err != nil || len(ds) != 1 || ds[0].Value != "next" {
		t.Fatalf("past the visibility timeout of the running command's record, a receive got %+v (%v): want only the other record (the lease is extended)", ds, err)
	} else if _, err := settleCLI(t, addr, "release", "slow", "s", []string{ds[0].Receipt}); err != nil {
		t.Fatal(err)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if l := w.next(t, 1, time.Minute); l[0] != "done" {
		t.Fatalf("after SIGTERM the running command printed %q, want done: it was not let finish", l[0])
	}
	w.stop(t, time.Minute)
	if took := time.Since(started); took < 6*time.Second {
		t.Fatalf("the worker stopped %v after the command started, before the command's 6s", took)
	}
	select {
	case l := <-w.lines:
		t.Fatalf("after SIGTERM the worker took another record: %q", l)
	default:
	}
	if d := describeJSONOf(t, addr, "slow", "s"); d.Totals.Acked != 1 || d.Totals.Available != 1 {
		t.Fatalf("after the stop, describe says %+v: want the long record acked and the other available", d.Totals)
	}

	// --max 1 with a failing command: nacked, the worker exits 0.
	out, errs, err := runCLI(t, time.Minute, "", "queue", "run", "slow", "--group", "s", "--max", "1", "--broker", addr, "--",
		"sh", "-c", `cat > /dev/null; echo "no good" >&2; exit 4`)
	if err != nil || !strings.Contains(errs, "handled 1 records") || !strings.Contains(errs, "no good") {
		t.Fatalf("queue run --max 1: %v, stdout %q, stderr %q", err, out, errs)
	}
	var ds []qdelivery
	waitFor(t, 30*time.Second, "the nacked record back after its backoff", func() bool {
		ds, err = receiveJSON(t, addr, "slow", "s", 10, time.Second)
		return err == nil && len(ds) > 0
	})
	if len(ds) != 1 || ds[0].Value != "next" || ds[0].DeliveryCount != 2 {
		t.Fatalf("after the failed command, receive got %+v: want next at delivery 2 (the test's release gave its delivery back, the command's failure counted; a release by the worker would make it 1)", ds)
	}
	s.stop(t)
}

// TestQueueProduceHeaders: produce --format json with --dedup-id-header
// stores one copy of records that share an id (the broker's dedup on the
// message-id header), and --delay, --deliver-at, --priority and --header
// land as the headers of every record.
func TestQueueProduceHeaders(t *testing.T) {
	s := serveBin(t, t.TempDir(), "")
	addr := s.addr
	mustCLI(t, "", "topic", "create", "hd", "--partitions", "3", "--broker", addr)
	in := `{"value":"a","headers":{"id":"m-1"}}` + "\n" + `{"value":"a again","headers":{"id":"m-1"}}` + "\n" + `{"key":"k","value":"b","headers":{"id":"m-2"}}` + "\n"
	if got := strings.TrimSpace(mustCLI(t, in, "produce", "hd", "--format", "json", "--dedup-id-header", "id", "--broker", addr)); got != "3" {
		t.Fatalf("produce acknowledged %s of 3 (a duplicate is acknowledged, not stored)", got)
	}
	sum := 0
	for _, n := range hwms(t, mustCLI(t, "", "topic", "describe", "hd", "--broker", addr)) {
		sum += n
	}
	if sum != 2 {
		t.Fatalf("the topic holds %d records, want 2: records with one message id were stored twice", sum)
	}
	mustCLI(t, "x\n", "produce", "hd", "--partition", "0", "--priority", "4", "--header", "team=ops", "--delay", "1h", "--broker", addr)
	at := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	mustCLI(t, "y\n", "produce", "hd", "--partition", "0", "--deliver-at", at.Format(time.RFC3339), "--broker", addr)
	p0 := hwms(t, mustCLI(t, "", "topic", "describe", "hd", "--broker", addr))[0]
	out := mustCLI(t, "", "consume", "hd", "--partition", "0", "--from", "earliest", "--max", strconv.Itoa(p0), "--format", "json", "--broker", addr)
	var x, y struct{ Headers map[string]string }
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Value   string
			Headers map[string]string
		}
		json.Unmarshal([]byte(line), &r)
		switch r.Value {
		case "x":
			x.Headers = r.Headers
		case "y":
			y.Headers = r.Headers
		}
	}
	if x.Headers["strata-priority"] != "4" || x.Headers["team"] != "ops" || x.Headers["strata-deliver-at"] == "" {
		t.Fatalf("record x has headers %v: want strata-priority 4, team ops and a deliver-at (the broker's turn of strata-delay-ms)", x.Headers)
	}
	if y.Headers["strata-deliver-at"] != strconv.FormatInt(at.UnixMilli(), 10) {
		t.Fatalf("record y has headers %v: want strata-deliver-at %d (%s)", y.Headers, at.UnixMilli(), at)
	}
	s.stop(t)
}
