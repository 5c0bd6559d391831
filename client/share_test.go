package client_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
)

// shareGroup creates topic with parts partitions and share group
// "workers" on it with cfg's settings.
func shareGroup(t *testing.T, c *client.Client, topic string, parts int32, cfg client.ShareGroupConfig) {
	t.Helper()
	ctx := context.Background()
	if err := c.CreateTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	cfg.Topic, cfg.Group = topic, "workers"
	if _, err := c.CreateShareGroup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// receiveAll receives until n messages came.
func receiveAll(t *testing.T, k *client.ShareConsumer, n int) []client.Message {
	t.Helper()
	var out []client.Message
	for range 50 {
		if len(out) >= n {
			break
		}
		msgs, err := k.Receive(context.Background(), n-len(out))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
	if len(out) != n {
		t.Fatalf("received %d messages, want %d", len(out), n)
	}
	return out
}

func receiptsOf(msgs []client.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Receipt)
	}
	return out
}

func TestReceiptPartition(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int32
		ok   bool
	}{
		{"3-AQAAAA", 3, true},
		{"0-x", 0, true},
		{"2147483647-x", 2147483647, true},
		{"2147483648-x", 0, false},
		{"03-x", 0, false},
		{"-1-x", 0, false},
		{"+1-x", 0, false},
		{"3", 0, false},
		{"3-", 0, false},
		{"a-b", 0, false},
		{"", 0, false},
	} {
		p, err := client.ReceiptPartition(tc.in)
		if (err == nil) != tc.ok || (tc.ok && p != tc.want) {
			t.Errorf("ReceiptPartition(%q) = %d, %v; want %d, ok %v", tc.in, p, err, tc.want, tc.ok)
		}
	}
}

// Receive hands out each record once, with a receipt of its partition;
// one Ack settles receipts of several partitions; settling them again
// fails per receipt with a *SettleError naming each receipt and why.
func TestShareConsumerReceiveAndSettle(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	ctx := context.Background()
	shareGroup(t, c, "jobs", 3, client.ShareGroupConfig{})
	var values []string
	for i := range 30 {
		values = append(values, fmt.Sprintf("job-%02d", i))
	}
	produceValues(t, c, "jobs", values...)
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
	msgs := receiveAll(t, k, 30)
	var got []string
	parts := map[int32]bool{}
	for _, m := range msgs {
		got = append(got, string(m.Value))
		p, err := client.ReceiptPartition(m.Receipt)
		if err != nil || p != m.Partition || m.DeliveryCount != 1 || m.Topic != "jobs" || m.LeaseUntil.IsZero() {
			t.Fatalf("message %+v (receipt partition %d, %v)", m, p, err)
		}
		parts[m.Partition] = true
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(values, ",") || len(parts) != 3 {
		t.Fatalf("received %v from partitions %v; want each value once, from all 3 partitions", got, parts)
	}
	until, err := k.Extend(ctx, time.Minute, msgs[0].Receipt, msgs[1].Receipt)
	if err != nil || time.Until(until) < 50*time.Second {
		t.Fatalf("extend: %v, %v", until, err)
	}
	if err := k.Ack(ctx, receiptsOf(msgs)...); err != nil {
		t.Fatal(err)
	}
	err = k.Ack(ctx, append(receiptsOf(msgs[:2]), "not-a-receipt")...)
	var se *client.SettleError
	if !errors.As(err, &se) || len(se.Failed) != 3 || se.Receipts != 3 {
		t.Fatalf("acking settled receipts: %v; want a *SettleError with 3 failed receipts", err)
	}
	if f := se.Failed[0]; f.Receipt != msgs[0].Receipt || f.Code != codes.FailedPrecondition || !strings.Contains(f.Message, "already settled") {
		t.Fatalf("first failure %+v: want FAILED_PRECONDITION, already settled", f)
	}
	if f := se.Failed[2]; f.Code != codes.InvalidArgument {
		t.Fatalf("a malformed receipt failed with %+v, want INVALID_ARGUMENT", f)
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("status.Code of the settle error = %v, want the first receipt's code", status.Code(err))
	}
	d, err := c.DescribeShareGroup(ctx, "jobs", "workers")
	if err != nil || d.Acked != 30 || d.InFlight != 0 || len(d.Partitions) != 3 {
		t.Fatalf("describe: %+v, %v", d, err)
	}
	// Nothing left: a receive waits its wait and returns nothing.
	if left, err := k.Receive(ctx, 10); err != nil || len(left) != 0 {
		t.Fatalf("receive after everything was acked: %v, %v", left, err)
	}
}

// The admin wrappers: create, list, alter, describe and delete.
func TestShareGroupAdmin(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "jobs", 2); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.CreateShareGroup(ctx, client.ShareGroupConfig{Topic: "jobs", Group: "workers", Visibility: 10 * time.Second, MaxDeliveries: 3})
	if err != nil || cfg.Seed == 0 || cfg.Visibility != 10*time.Second || len(cfg.StartOffsets) != 2 {
		t.Fatalf("create: %+v, %v", cfg, err)
	}
	if _, err := c.CreateShareGroup(ctx, client.ShareGroupConfig{Topic: "jobs", Group: "workers"}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("create again: %v, want ALREADY_EXISTS", err)
	}
	alt, err := c.AlterShareGroup(ctx, client.ShareGroupConfig{Topic: "jobs", Group: "workers", Visibility: 20 * time.Second})
	if err != nil || alt.Visibility != 20*time.Second || alt.MaxDeliveries != 0 || alt.Seed != cfg.Seed {
		t.Fatalf("alter: %+v, %v; want the new visibility, max deliveries back to the default, the seed kept", alt, err)
	}
	list, err := c.ListShareGroups(ctx, "")
	if err != nil || len(list) != 1 || list[0].Group != "workers" || list[0].Visibility != 20*time.Second {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := c.DeleteShareGroup(ctx, "jobs", "workers"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeShareGroup(ctx, "jobs", "workers"); status.Code(err) != codes.NotFound {
		t.Fatalf("describe a deleted group: %v, want NOT_FOUND", err)
	}
}

// handled counts what a Run handler saw.
type handled struct {
	mu     sync.Mutex
	counts map[string][]int32 // value -> delivery counts, in order
	done   int
}

func (h *handled) saw(m client.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[string][]int32{}
	}
	v := string(m.Value)
	h.counts[v] = append(h.counts[v], m.DeliveryCount)
}

func (h *handled) finished() {
	h.mu.Lock()
	h.done++
	h.mu.Unlock()
}

func (h *handled) snapshot() (map[string][]int32, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]int32{}
	for k, v := range h.counts {
		out[k] = append([]int32(nil), v...)
	}
	return out, h.done
}

// runInBackground runs k.Run and returns a stop function that ends it and
// returns its error.
func runInBackground(t *testing.T, k *client.ShareConsumer, handler func(context.Context, client.Message) error, opts ...client.RunOption) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Run(ctx, handler, opts...) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A handler slower than the visibility timeout still owns its message:
// Run extends the lease while it runs, and acks it once. Without the
// extensions the leases would run out during the handlers, and the idle
// worker would get the records again (delivery count 2), and the acks
// would fail.
func TestRunExtendsLeasesOfSlowHandlers(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	// Backoff floor 1 ms: a lost lease would bring the record back at once.
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond})
	produceValues(t, c, "jobs", "a", "b", "c")
	// Leases of 2s, extended every 1s (1s of slack for each extension on
	// a loaded machine); handlers of 4.5s.
	k := c.NewShareConsumer("jobs", "workers", client.WithVisibility(2*time.Second), client.WithWait(time.Second))
	var h handled
	var runErrs []error
	var mu sync.Mutex
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		h.saw(m)
		defer h.finished()
		select {
		case <-time.After(4500 * time.Millisecond): // 2.25 visibility timeouts
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, client.WithWorkers(4), client.WithRunErrors(func(m client.Message, err error) {
		mu.Lock()
		runErrs = append(runErrs, err)
		mu.Unlock()
	}))
	waitFor(t, "the three slow handlers", func() bool { _, done := h.snapshot(); return done >= 3 })
	waitFor(t, "the acks", func() bool {
		d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
		return err == nil && d.Acked == 3
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	counts, _ := h.snapshot()
	for _, v := range []string{"a", "b", "c"} {
		if fmt.Sprint(counts[v]) != "[1]" {
			t.Errorf("%s was handled with delivery counts %v, want once, [1]", v, counts[v])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runErrs) > 0 {
		t.Fatalf("Run reported %v", runErrs)
	}
	d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
	if err != nil || d.Acked != 3 || d.InFlight != 0 || d.Available != 0 || d.Backoff != 0 {
		t.Fatalf("describe after Run: %+v, %v; want 3 acked, nothing else", d, err)
	}
}

// A handler's error nacks its message (back after the backoff, counted;
// after max deliveries to the dead-letter topic with the error as
// reason); ErrReject rejects it at once; NackAfter nacks it with a delay;
// nil acks.
func TestRunNacksAndRejectsOnError(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	ctx := context.Background()
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{MaxDeliveries: 2, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond})
	produceValues(t, c, "jobs", "ok", "fail", "reject", "later")
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
	var h handled
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		h.saw(m)
		defer h.finished()
		switch v := string(m.Value); {
		case v == "fail":
			return errors.New("boom")
		case v == "reject":
			return fmt.Errorf("bad payload: %w", client.ErrReject)
		case v == "later" && m.DeliveryCount == 1:
			return client.NackAfter(50*time.Millisecond, errors.New("not yet"))
		}
		return nil
	}, client.WithWorkers(2))
	waitFor(t, "every outcome", func() bool {
		d, err := c.DescribeShareGroup(ctx, "jobs", "workers")
		return err == nil && d.Acked == 2 && d.DeadLettered == 2
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	counts, _ := h.snapshot()
	want := map[string]string{"ok": "[1]", "fail": "[1 2]", "reject": "[1]", "later": "[1 2]"}
	for v, w := range want {
		if fmt.Sprint(counts[v]) != w {
			t.Errorf("%s was handled with delivery counts %v, want %s", v, counts[v], w)
		}
	}
	dead := readAll(t, c, "jobs.dlq.workers", 2)
	reasons := map[string]string{}
	for _, r := range dead {
		reasons[string(r.Value)] = string(r.Headers["strata-dlq-reason"])
	}
	if reasons["fail"] != "boom" || !strings.Contains(reasons["reject"], "bad payload") || len(reasons) != 2 {
		t.Fatalf("dead letters with reasons %v: want fail (boom) and reject (bad payload)", reasons)
	}
}

// readAll reads partition 0 of topic from the start until it has n
// records.
func readAll(t *testing.T, c *client.Client, topic string, n int) []client.Record {
	t.Helper()
	k, err := c.NewConsumer(context.Background(), topic, client.WithPartitions(0))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(context.Background())
	var out []client.Record
	for range 100 {
		if len(out) >= n {
			break
		}
		recs, err := k.Poll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	if len(out) != n {
		t.Fatalf("%s holds %d records, want %d", topic, len(out), n)
	}
	return out
}

// Redrive moves dead letters back to their origin topic, without the
// dead-letter headers and with the others, where the share group
// receives them as new records; Max stops it early and the next run goes
// on where it stopped; a run with nothing left redrives nothing.
func TestRedrive(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	ctx := context.Background()
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{})
	p := c.NewProducer("jobs")
	for i := range 5 {
		if _, err := p.Send(ctx, client.Record{Value: []byte(fmt.Sprintf("v%d", i)), Headers: map[string][]byte{"trace": []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
	msgs := receiveAll(t, k, 5)
	if err := k.Reject(ctx, "poison", receiptsOf(msgs)...); err != nil {
		t.Fatal(err)
	}
	readAll(t, c, "jobs.dlq.workers", 5) // the dead-letter moves are done

	var progress [][2]int64
	n, err := c.Redrive(ctx, client.RedriveOptions{Topic: "jobs", Group: "workers", Max: 2, Rate: 1000,
		Progress: func(done, total int64) { progress = append(progress, [2]int64{done, total}) }})
	if err != nil || n != 2 {
		t.Fatalf("redrive with Max 2: %d, %v", n, err)
	}
	if len(progress) == 0 || progress[len(progress)-1] != [2]int64{2, 2} {
		t.Fatalf("progress %v, want it to end at 2 of 2", progress)
	}
	if n, err = c.Redrive(ctx, client.RedriveOptions{Topic: "jobs", Group: "workers"}); err != nil || n != 3 {
		t.Fatalf("the second redrive: %d, %v; want the 3 left", n, err)
	}
	if n, err = c.Redrive(ctx, client.RedriveOptions{Topic: "jobs", Group: "workers"}); err != nil || n != 0 {
		t.Fatalf("a third redrive: %d, %v; want nothing left", n, err)
	}
	again := receiveAll(t, k, 5)
	var got []string
	for _, m := range again {
		got = append(got, string(m.Value))
		if m.DeliveryCount != 1 || string(m.Headers["trace"]) != strings.TrimPrefix(string(m.Value), "v") {
			t.Fatalf("redriven %+v: want delivery count 1 and its own headers", m)
		}
		for h := range m.Headers {
			if strings.HasPrefix(h, "strata-dlq-") {
				t.Fatalf("redriven %s kept header %s", m.Value, h)
			}
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "v0,v1,v2,v3,v4" {
		t.Fatalf("redriven %v, want each of v0-v4 once", got)
	}
	// To another topic.
	if err := c.CreateTopic(ctx, "elsewhere", 1); err != nil {
		t.Fatal(err)
	}
	if err := k.Reject(ctx, "again", receiptsOf(again)...); err != nil {
		t.Fatal(err)
	}
	readAll(t, c, "jobs.dlq.workers", 10)
	if n, err = c.Redrive(ctx, client.RedriveOptions{DeadLetterTopic: "jobs.dlq.workers", To: "elsewhere"}); err != nil || n != 5 {
		t.Fatalf("redrive to another topic: %d, %v", n, err)
	}
	readAll(t, c, "elsewhere", 5)
}

// In a cluster, a consumer given one seed receives from every owner of
// the topic's partitions (each broker serves only those it owns), and one
// Ack of receipts of every partition reaches each partition's owner.
func TestShareConsumerInACluster(t *testing.T) {
	tc := startCluster(t, 2)
	c := dialCluster(t, tc.brokers[0].node.Addr)
	ctx := context.Background()
	const topic, parts = "jobs", 8
	shareGroup(t, c, topic, parts, client.ShareGroupConfig{})
	owners := tc.partitionOwners(topic, parts)
	if len(brokerIDs(owners)) < 2 {
		t.Fatalf("setup: the partitions are owned by %v only; the test needs both brokers to own some", brokerIDs(owners))
	}
	p := c.NewProducer(topic, client.WithLinger(time.Millisecond))
	all := sendKeyed(t, p, "v", 40, parts, nil)
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireAcked(t, all)
	k := c.NewShareConsumer(topic, "workers", client.WithWait(time.Second))
	// One receive reaches both owners: every record is available on each.
	first, err := k.Receive(ctx, 40)
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]bool{}
	for _, m := range first {
		from[owners[m.Partition]] = true
	}
	if len(from) != 2 {
		t.Fatalf("one receive got records of the partitions of %v only, want both brokers'", from)
	}
	msgs := append(first, receiveAll(t, k, 40-len(first))...)
	if err := k.Ack(ctx, receiptsOf(msgs)...); err != nil {
		t.Fatal(err)
	}
	var acked int64
	for _, cb := range tc.brokers {
		// Each owner describes its own partitions live.
		d, err := cb.b.DescribeShareGroup(ctx, topic, "workers")
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range d.Partitions {
			if sp.Owner == cb.node.ID {
				acked += sp.Acked
			}
		}
	}
	if acked != 40 {
		t.Fatalf("the owners counted %d acks, want 40", acked)
	}
}

// A settle sent by a client whose metadata is stale reaches the new
// owner: the old one answers NOT_OWNER per receipt naming it, and the
// consumer follows. The leases moved with the partition, so the receipts
// still settle.
func TestShareSettleFollowsNotOwner(t *testing.T) {
	tc := startCluster(t, 2)
	c := dialCluster(t, tc.brokers[0].node.Addr)
	ctx := context.Background()
	const topic = "jobs"
	shareGroup(t, c, topic, 1, client.ShareGroupConfig{})
	produceValues(t, c, topic, "a", "b", "c")
	k := c.NewShareConsumer(topic, "workers", client.WithWait(time.Second))
	msgs := receiveAll(t, k, 3)
	old := tc.partitionOwners(topic, 1)[0]
	moveTo := tc.brokers[0].node.ID
	if old == moveTo {
		moveTo = tc.brokers[1].node.ID
	}
	tc.sc.move(core.PartitionKey(topic, 0), moveTo)
	if err := k.Ack(ctx, receiptsOf(msgs)...); err != nil {
		t.Fatalf("ack after the partition moved from %s to %s: %v", old, moveTo, err)
	}
	d, err := tc.byID(moveTo).b.DescribeShareGroup(ctx, topic, "workers")
	if err != nil || d.Acked != 3 || d.Partitions[0].Owner != moveTo {
		t.Fatalf("the new owner describes %+v, %v; want 3 acked there", d, err)
	}
}

// A Run stopped while a handler runs releases its message (the handler
// returned the canceled context's error): the record is available again
// at once, its delivery not counted.
func TestRunReleasesOnStop(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{})
	produceValues(t, c, "jobs", "a")
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
	started := make(chan struct{})
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	msgs, err := k.Receive(context.Background(), 1)
	if err != nil || len(msgs) != 1 || msgs[0].DeliveryCount != 1 {
		t.Fatalf("after Run stopped: %+v, %v; want the record back at once with delivery count 1", msgs, err)
	}
}
