package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

func shareTopic(t *testing.T, b *Broker, name string, parts int32, cfg ShareGroupConfig) *ShareGroupConfig {
	t.Helper()
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: name, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	cfg.Topic = name
	if cfg.Group == "" {
		cfg.Group = "workers"
	}
	out, err := b.CreateShareGroup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func produceN(t *testing.T, b *Broker, topic string, n int, hdr func(i int) []segment.Header) {
	t.Helper()
	var recs []segment.Record
	for i := range n {
		r := segment.Record{Value: []byte(strconv.Itoa(i))}
		if hdr != nil {
			r.Headers = hdr(i)
		}
		recs = append(recs, r)
	}
	if _, err := b.Produce(context.Background(), &ProduceRequest{Topic: topic, Partition: -1, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, b *Broker, topic, group string, max int, wait time.Duration) []Delivery {
	t.Helper()
	ds, err := b.Receive(context.Background(), &ReceiveRequest{Topic: topic, Group: group, MaxRecords: max, Wait: wait})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func settle(t *testing.T, b *Broker, topic, group string, kind SettleKind, ds []Delivery) []SettleResult {
	t.Helper()
	var rs []string
	for _, d := range ds {
		rs = append(rs, d.Receipt)
	}
	res, err := b.Settle(context.Background(), &SettleRequest{Topic: topic, Group: group, Kind: kind, Receipts: rs})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Every record produced after the group's creation is received once and
// acked; an acked record is not received again, also by a broker that
// rebuilds the state from the bucket with an empty disk.
func TestShareReceiveAckSurvivesDiskLoss(t *testing.T) {
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	shareTopic(t, b, "jobs", 2, ShareGroupConfig{})
	produceN(t, b, "jobs", 100, nil)
	seen := map[string]bool{}
	var acked []Delivery
	for len(seen) < 100 {
		ds := receive(t, b, "jobs", "workers", 30, time.Second)
		if len(ds) == 0 {
			t.Fatalf("received %d of 100, then nothing", len(seen))
		}
		for _, d := range ds {
			v := string(d.Record.Value)
			if seen[v] {
				t.Fatalf("record %s delivered twice before any lease ended", v)
			}
			seen[v] = true
			if d.DeliveryCount != 1 {
				t.Fatalf("delivery count %d on a first delivery", d.DeliveryCount)
			}
		}
		acked = append(acked, ds...)
	}
	for _, r := range settle(t, b, "jobs", "workers", SettleAck, acked[:60]) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// Acking again: every receipt says it is settled.
	for _, r := range settle(t, b, "jobs", "workers", SettleAck, acked[:3]) {
		if !errors.Is(r.Err, ErrFailedPrecondition) {
			t.Fatalf("second ack: %v, want failed precondition", r.Err)
		}
	}
	// Another broker with an empty disk takes the partitions over (and
	// fences the first).
	b2 := newBroker(t, testConfig(t, store))
	// The 40 unacked ones come back after their lease (30 s): release them
	// through their receipts, which outlive the broker.
	for _, r := range settle(t, b2, "jobs", "workers", SettleRelease, acked[60:]) {
		if r.Err != nil {
			t.Fatalf("release after takeover: %v", r.Err)
		}
	}
	again := map[string]bool{}
	for {
		ds := receive(t, b2, "jobs", "workers", 100, 200*time.Millisecond)
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			again[string(d.Record.Value)] = true
		}
		settle(t, b2, "jobs", "workers", SettleAck, ds)
	}
	if len(again) != 40 {
		t.Fatalf("after the takeover %d records came back, want the 40 not acked", len(again))
	}
	for _, d := range acked[:60] {
		if again[string(d.Record.Value)] {
			t.Fatalf("acked record %s delivered again after the takeover", d.Record.Value)
		}
	}
}

// A record nacked MaxDeliveries times lands in the dead-letter topic with
// headers naming its origin, and is not delivered again.
func TestShareDeadLetter(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{MaxDeliveries: 2, BackoffMinMs: 1, BackoffMaxMs: 1})
	produceN(t, b, "jobs", 1, nil)
	for i := 1; i <= 2; i++ {
		ds := receive(t, b, "jobs", "workers", 10, 5*time.Second)
		if len(ds) != 1 || ds[0].DeliveryCount != int32(i) {
			t.Fatalf("delivery %d: %+v", i, ds)
		}
		res, err := b.Settle(context.Background(), &SettleRequest{Topic: "jobs", Group: "workers", Kind: SettleNack, Receipts: []string{ds[0].Receipt}, Reason: fmt.Sprintf("boom %d", i)})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	if ds := receive(t, b, "jobs", "workers", 10, 300*time.Millisecond); len(ds) != 0 {
		t.Fatalf("delivered a third time: %+v", ds)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []segment.Record
		err := b.Fetch(context.Background(), &FetchRequest{Topic: "jobs.dlq.workers", Partition: 0, Start: Position{Kind: StartEarliest}, MaxWait: 10 * time.Millisecond}, func(r *FetchResult) error {
			got = append(got, r.Records...)
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			t.Fatal(err)
		}
		if len(got) == 1 {
			h := map[string]string{}
			for _, x := range got[0].Headers {
				h[x.Key] = string(x.Value)
			}
			if h[HeaderDLQOriginTopic] != "jobs" || h[HeaderDLQOriginOffset] != "0" || h[HeaderDLQDeliveryCount] != "2" || h[HeaderDLQReason] != "boom 2" || h[HeaderDLQGroup] != "workers" {
				t.Fatalf("dead letter headers %v", h)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter after 10s (%d records)", len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
	d, err := b.DescribeShareGroup(context.Background(), "jobs", "workers")
	if err != nil || d.DeadLettered != 1 {
		t.Fatalf("describe: %+v %v", d, err)
	}
}

var errStop = errors.New("stop")

// A delayed record is not handed out before its time.
func TestShareDelayed(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{})
	start := time.Now()
	produceN(t, b, "jobs", 2, func(i int) []segment.Header {
		if i == 0 {
			return []segment.Header{{Key: HeaderDelay, Value: []byte("1500")}}
		}
		return nil
	})
	ds := receive(t, b, "jobs", "workers", 10, time.Second)
	if len(ds) != 1 || string(ds[0].Record.Value) != "1" {
		t.Fatalf("first receive %+v, want only the record without delay", ds)
	}
	ds = receive(t, b, "jobs", "workers", 10, 5*time.Second)
	if len(ds) != 1 || string(ds[0].Record.Value) != "0" {
		t.Fatalf("second receive %+v", ds)
	}
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("delayed record handed out after %v, before its 1.5s delay", el)
	}
}

// Delayed records past the in-memory bound are spilled to runs in the
// bucket and read back as they come due: records after them are delivered
// at once, every delayed one exactly once and never early, and memory
// holds at most the bound.
func TestShareDelayedSpill(t *testing.T) {
	store := tier.NewMemStore()
	cfg := testConfig(t, store)
	cfg.Share = ShareTuning{MemTimers: 64, Horizon: 300 * time.Millisecond}
	b := newBroker(t, cfg)
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{})
	const delayed = 1000
	due := time.Now().Add(2500 * time.Millisecond)
	produceN(t, b, "jobs", delayed, func(i int) []segment.Header {
		at := due.Add(time.Duration(i) * time.Millisecond).UnixMilli()
		return []segment.Header{{Key: HeaderDeliverAt, Value: []byte(strconv.FormatInt(at, 10))}}
	})
	produceN(t, b, "jobs", 10, nil) // values "0".."9", after the delayed ones
	ds := receive(t, b, "jobs", "workers", 100, 2*time.Second)
	if len(ds) != 10 {
		t.Fatalf("received %d records before the delayed ones are due, want the 10 without delay", len(ds))
	}
	settle(t, b, "jobs", "workers", SettleAck, ds)
	// Let maintenance spill, then look at memory and the bucket.
	time.Sleep(500 * time.Millisecond)
	rt := b.shares.runtimes[runtimeKey{mustTopic(t, b, "jobs").store, "workers", 0}]
	if err := rt.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := rt.st.Counts()
	_, inMemory := rt.st.InMemory()
	runs := len(rt.st.Runs())
	rt.unlock()
	if inMemory > 64 {
		t.Fatalf("%d delayed records in memory, over the bound of 64", inMemory)
	}
	if runs == 0 {
		t.Fatalf("no run spilled with %d delayed records and a bound of 64", delayed)
	}
	if c.Delayed != delayed {
		t.Fatalf("%d delayed counted, want %d", c.Delayed, delayed)
	}
	got := map[int64]bool{}
	for len(got) < delayed {
		ds := receive(t, b, "jobs", "workers", 200, 5*time.Second)
		if len(ds) == 0 {
			t.Fatalf("%d of %d delayed records delivered, then nothing", len(got), delayed)
		}
		now := time.Now()
		for _, d := range ds {
			if got[d.Record.Offset] {
				t.Fatalf("delayed record %d delivered twice", d.Record.Offset)
			}
			got[d.Record.Offset] = true
			// The deliver-at header is in whole milliseconds, as produced.
			if at := time.UnixMilli(due.Add(time.Duration(d.Record.Offset) * time.Millisecond).UnixMilli()); now.Before(at) {
				t.Fatalf("record %d delivered at %v, before its deliver-at %v", d.Record.Offset, now, at)
			}
		}
		settle(t, b, "jobs", "workers", SettleAck, ds)
	}
}

func mustTopic(t *testing.T, b *Broker, name string) *topic {
	t.Helper()
	tp, err := b.loadTopic(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// A topic consumed by a share group drops the segments the group settled,
// and keeps the ones it has not.
func TestShareRetentionByConsumption(t *testing.T) {
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Partition.CheckInterval = 50 * time.Millisecond
	b := newBroker(t, cfg)
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "jobs", Partitions: 1, SegmentBytes: MinSegmentBytes, ConsumedBy: []string{"workers"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "workers"}); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 1000)
	for i := 0; i < 4; i++ { // 4 x 100 KB: several 64 KiB segments
		recs := make([]segment.Record, 100)
		for j := range recs {
			recs[j] = segment.Record{Value: value}
		}
		if _, err := b.Produce(ctx, &ProduceRequest{Topic: "jobs", Partition: 0, Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	// Ack the first 300 records, keep the rest.
	var held []Delivery
	acked := 0
	for acked < 300 {
		ds := receive(t, b, "jobs", "workers", min(100, 300-acked), time.Second)
		settle(t, b, "jobs", "workers", SettleAck, ds)
		acked += len(ds)
	}
	held = receive(t, b, "jobs", "workers", 100, time.Second)
	if len(held) != 100 {
		t.Fatalf("received %d of the last 100", len(held))
	}
	tp := mustTopic(t, b, "jobs")
	tp.mu.Lock()
	part := tp.parts[0]
	tp.mu.Unlock()
	if err := part.log.SealNow(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		logStart, _, err := b.partitionBounds(ctx, tp, 0)
		if err != nil {
			t.Fatal(err)
		}
		if logStart > 300 {
			t.Fatalf("log start %d: retention dropped records the group has not acked (it acked 0-299)", logStart)
		}
		if logStart > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("log start still 0 after the group acked 300 records in several segments")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Clients cannot write, read or delete a share group's state log, nor
// make a share group on it; the topic list does not show it.
func TestShareStateLogIsTheBrokers(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{})
	ctx := context.Background()
	name := shareLogPrefix + "jobs"
	if _, err := b.Produce(ctx, &ProduceRequest{Topic: name, Partition: 0, Records: []segment.Record{{Value: []byte(`{"k":2,"o":0,"at":1}`)}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("produce to the state log: %v", err)
	}
	err := b.Fetch(ctx, &FetchRequest{Topic: name, Partition: 0}, func(*FetchResult) error { return nil })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("fetch of the state log: %v", err)
	}
	if _, err := b.DeleteTopic(ctx, name); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("delete of the state log: %v", err)
	}
	if _, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: name, Group: "g"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("share group on the state log: %v", err)
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "__mine", Partitions: 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("create of a __ topic: %v", err)
	}
	topics, err := b.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range topics {
		if tc.Name == name {
			t.Fatal("the topic list shows the state log")
		}
	}
	for _, g := range []string{".", ".."} {
		if _, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: g}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("group %q: %v", g, err)
		}
	}
	long := strings.Repeat("x", 190)
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: long, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: long, Group: "workers"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a default dead-letter name over 200 characters: %v", err)
	}
	// The topic itself can still be deleted, with its state log.
	if _, err := b.DeleteTopic(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.loadTopic(ctx, name); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("state log after its topic was deleted: %v", err)
	}
}

// walGate holds the WAL's object writes while closed, so records and
// state-log events stay appended but not durable.
type walGate struct {
	tier.Store
	mu   sync.Mutex
	hold chan struct{} // non-nil: WAL writes wait until it is closed
}

func (g *walGate) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	g.mu.Lock()
	h := g.hold
	g.mu.Unlock()
	if h != nil && strings.HasPrefix(key, "wal/") {
		select {
		case <-h:
		case <-ctx.Done():
			return tier.ObjectInfo{}, ctx.Err()
		}
	}
	return g.Store.PutIfAbsent(ctx, key, r, size)
}

// A state rebuilt on the same broker while an earlier runtime of it has a
// lease appended but not yet durable (a receive waiting to answer) must
// see that lease: otherwise both receives hand the record out, under two
// live leases. (The simulation found it: a takeover of the topic's
// partition drops the runtime while the state log stays open.)
func TestShareRebuildSeesLeasesNotYetDurable(t *testing.T) {
	warmCoders(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		g := &walGate{Store: tier.NewMemStore()}
		b := newBroker(t, testConfig(t, g))
		shareTopic(t, b, "jobs", 1, ShareGroupConfig{})
		receive(t, b, "jobs", "workers", 1, 0) // builds the state (and its first snapshot)
		produceN(t, b, "jobs", 1, nil)

		g.mu.Lock()
		g.hold = make(chan struct{})
		g.mu.Unlock()
		type got struct {
			ds  []Delivery
			err error
		}
		recv := func(out chan<- got) {
			ds, err := b.Receive(ctx, &ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 10})
			out <- got{ds, err}
		}
		first, second := make(chan got, 1), make(chan got, 1)
		go recv(first)
		synctest.Wait() // the lease is appended; the receive waits for it to be stored

		tp, err := b.loadTopic(ctx, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		b.shares.mu.Lock()
		rt := b.shares.runtimes[runtimeKey{tp.store, "workers", 0}]
		b.shares.mu.Unlock()
		if rt == nil {
			t.Fatal("no live state after a receive")
		}
		b.dropRuntime(rt) // as when the topic's partition is taken over and reopened
		go recv(second)
		synctest.Wait()
		g.mu.Lock()
		close(g.hold)
		g.hold = nil
		g.mu.Unlock()

		a, c := <-first, <-second
		if a.err != nil || len(a.ds) != 1 {
			t.Fatalf("first receive: %d records, %v; want the one record", len(a.ds), a.err)
		}
		if c.err != nil || len(c.ds) != 0 {
			t.Fatalf("second receive: %d records (%v): the record was handed out again while the first lease (until %v) was live", len(c.ds), c.err, a.ds[0].LeaseUntil)
		}
	})
}

// In a cluster, a broker that takes a partition over builds the share
// groups' state there without waiting for a client: records rejected on
// the old owner reach the dead-letter topic although nobody touches the
// group on the new one.
func TestShareStateResumesOnTheNewOwnerUnasked(t *testing.T) {
	store := tier.NewMemStore()
	b1 := clusterBroker(t, store, newView("b1", "b1", "b2"))
	shareTopic(t, b1, "jobs", 1, ShareGroupConfig{})
	ds := func() []Delivery {
		produceN(t, b1, "jobs", 3, nil)
		return receive(t, b1, "jobs", "workers", 3, time.Second)
	}()
	if len(ds) != 3 {
		t.Fatalf("received %d of 3", len(ds))
	}
	// Reject them with b1's background loop unable to move them: b1 stops
	// right after the rejects are stored.
	for _, r := range settle(t, b1, "jobs", "workers", SettleReject, ds) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	b1.Close(context.Background())
	v2 := newView("b2", "b2")
	b2 := clusterBroker(t, store, v2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		err := b2.Fetch(context.Background(), &FetchRequest{Topic: "jobs.dlq.workers", Partition: 0, MaxWait: 10 * time.Millisecond}, func(r *FetchResult) error {
			n += len(r.Records)
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			t.Fatal(err)
		}
		if n >= 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 rejected records in the dead-letter topic 20s after b2 took over, with no client on the group", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
