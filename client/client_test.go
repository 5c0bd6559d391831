package client_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/tier"
)

func startBroker(t *testing.T) *client.Client {
	t.Helper()
	_, addr := brokertest.Start(t, brokertest.Config(t, tier.NewMemStore()))
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProducerBatchesAndAcksEverything(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "t", 4); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("t", client.WithBatchSize(64), client.WithMaxInFlight(3), client.WithLinger(time.Millisecond))
	var results []*client.Result
	for i := 0; i < 5000; i++ {
		r, err := p.Send(ctx, client.Record{Key: []byte(fmt.Sprint("k", i%13)), Value: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]bool{}
	keyPart := map[string]int32{}
	for i, r := range results {
		if err := r.Wait(ctx); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		at := [2]int64{int64(r.Partition), r.Offset}
		if seen[at] {
			t.Fatalf("two records acked at partition %d offset %d", r.Partition, r.Offset)
		}
		seen[at] = true
		k := fmt.Sprint("k", i%13)
		if q, ok := keyPart[k]; ok && q != r.Partition {
			t.Fatalf("key %s in partitions %d and %d", k, q, r.Partition)
		}
		keyPart[k] = r.Partition
	}
	if _, err := p.Send(ctx, client.Record{Value: []byte("late")}); err != client.ErrProducerClosed {
		t.Fatalf("send after close: %v", err)
	}
}

func consumeAll(t *testing.T, k *client.Consumer, want int, got map[string]int, mu *sync.Mutex) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			return
		}
		recs, err := k.Poll(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		for _, r := range recs {
			got[string(r.Value)]++
		}
		mu.Unlock()
	}
}

func TestGroupConsumersSplitAndResume(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	c.CreateTopic(ctx, "q", 4)
	p := c.NewProducer("q")
	for i := 0; i < 2000; i++ {
		p.Send(ctx, client.Record{Value: []byte(fmt.Sprint(i))})
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewConsumer(ctx, "q", client.WithGroup("g", 0)); err == nil {
		t.Fatal("a group consumer without an explicit delivery mode was accepted")
	}
	a, err := c.NewConsumer(ctx, "q", client.WithGroup("g", client.AtLeastOnce), client.WithSessionTimeout(600*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.NewConsumer(ctx, "q", client.WithGroup("g", client.AtLeastOnce), client.WithSessionTimeout(600*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until a's background heartbeat has seen b's join.
	deadline := time.Now().Add(20 * time.Second)
	for len(a.Assignment())+len(b.Assignment()) != 4 || len(a.Assignment()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no split: %v %v", a.Assignment(), b.Assignment())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range []*client.Consumer{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); consumeAll(t, k, 2000, got, &mu) }()
	}
	wg.Wait()
	if len(got) != 2000 {
		t.Fatalf("the group consumed %d distinct records, want 2000", len(got))
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A new member resumes after the committed offsets: nothing is left.
	d, err := c.NewConsumer(ctx, "q", client.WithGroup("g", client.AtMostOnce))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	recs, err := d.Poll(ctx)
	if err != nil || len(recs) != 0 {
		t.Fatalf("after everything was committed a new member got %d records (%v)", len(recs), err)
	}
}

func TestAssignModeConsumer(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	c.CreateTopic(ctx, "a", 2)
	p := c.NewProducer("a", client.WithPartition(1))
	for i := 0; i < 10; i++ {
		p.Send(ctx, client.Record{Value: []byte(fmt.Sprint(i))})
	}
	p.Close(ctx)
	k, err := c.NewConsumer(ctx, "a", client.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := k.Poll(ctx)
	if err != nil || len(recs) != 10 || recs[9].Offset != 9 || recs[0].Partition != 1 {
		t.Fatalf("poll: %d records, %v", len(recs), err)
	}
}

// Large records with the default batching: a batch is cut by its bytes
// too (WithBatchBytes, default 1 MiB), so 300 records of 64 KiB (19 MiB:
// more than the broker's 16 MiB message limit in one request of the
// default 500 records) are all stored, and every request the broker saw
// held at most 1 MiB of payload; WithBatchBytes sets the cut.
func TestProducerCutsBatchesByBytes(t *testing.T) {
	c, hook := startCountingBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "big", 1); err != nil {
		t.Fatal(err)
	}
	send := func(p *client.Producer, n int) {
		t.Helper()
		var results []*client.Result
		for i := range n {
			v := make([]byte, 64<<10)
			v[0] = byte(i)
			r, err := p.Send(ctx, client.Record{Value: v})
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, r)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		for i, r := range results {
			if err := r.Wait(ctx); err != nil {
				t.Fatalf("record %d of 64 KiB: %v", i, err)
			}
		}
	}
	send(c.NewProducer("big"), 300)
	if n, most := hook.get(); n != 300 || most > 1<<20 {
		t.Fatalf("broker stored %d records, the largest request %d bytes; want 300 in requests of at most 1 MiB", n, most)
	}
	hook.reset()
	send(c.NewProducer("big", client.WithBatchBytes(200<<10)), 30)
	if n, most := hook.get(); n != 30 || most > 200<<10 {
		t.Fatalf("broker stored %d records, the largest request %d bytes; want 30 in requests of at most 200 KiB", n, most)
	}
}

// startCountingBroker starts a broker whose produce requests a
// requestSizes counts, and dials it.
func startCountingBroker(t *testing.T) (*client.Client, *requestSizes) {
	t.Helper()
	hook := &requestSizes{}
	cfg := brokertest.Config(t, tier.NewMemStore())
	cfg.Hooks = []core.Hook{hook}
	_, addr := brokertest.Start(t, cfg)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, hook
}

// requestSizes is a core.ProduceHook that counts the records stored and
// the largest request's payload.
type requestSizes struct {
	mu      sync.Mutex
	records int
	most    int64
}

func (h *requestSizes) OnProduce(e core.ProduceEvent) {
	if e.Err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records += e.Records
	h.most = max(h.most, e.Bytes)
}

func (h *requestSizes) get() (int, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.records, h.most
}

func (h *requestSizes) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records, h.most = 0, 0
}

// A record larger than the broker's message limit is refused by its
// transport unread: the producer does not resend it, and its error says
// why and that nothing is stored; the producer goes on with the next
// records.
func TestProducerRecordOverTheMessageLimit(t *testing.T) {
	c, hook := startCountingBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "big", 1); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("big", client.WithRetries(5, 2*time.Second))
	defer p.Close(ctx)
	big, err := p.Send(ctx, client.Record{Value: make([]byte, 17<<20)})
	if err != nil {
		t.Fatal(err)
	}
	// "none of them is stored" is said only after a single attempt: a
	// resent request would say they may or may not be.
	err = big.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "over the broker's message limit") || !strings.Contains(err.Error(), "none of them is stored") {
		t.Fatalf("17 MiB record: %v; want the message limit named and nothing stored after one attempt", err)
	}
	small, err := p.Send(ctx, client.Record{Value: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	if err := small.Wait(ctx); err != nil {
		t.Fatalf("the record after: %v", err)
	}
	if n, _ := hook.get(); n != 1 {
		t.Fatalf("broker stored %d records, want the small one only", n)
	}
}

// An answer over the client's own gRPC receive limit carries the same
// "larger than max" text as a request the broker refused, but the broker
// stored the records: the error must not say none is stored.
func TestProducerAnswerOverTheClientsReceiveLimit(t *testing.T) {
	hook := &requestSizes{}
	cfg := brokertest.Config(t, tier.NewMemStore())
	cfg.Hooks = []core.Hook{hook}
	_, addr := brokertest.Start(t, cfg)
	c, err := client.Dial(addr, client.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("t", client.WithBatchSize(400), client.WithLinger(time.Second))
	defer p.Close(ctx)
	var last *client.Result
	for range 400 {
		if last, err = p.Send(ctx, client.Record{Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	err = last.Wait(ctx)
	if err == nil || strings.Contains(err.Error(), "none of them is stored") || !strings.Contains(err.Error(), "receive limit") {
		t.Fatalf("answer over the client's limit: %v; want the receive limit named and the records maybe stored", err)
	}
	if n, _ := hook.get(); n != 400 {
		t.Fatalf("broker stored %d records, want 400", n)
	}
}

// An answer larger than gRPC's default 4 MiB receive limit reaches the
// consumer with the client's defaults (it accepts answers up to 64 MiB):
// ten 600 KiB records polled with 8 MiB max bytes, which the broker
// answers in one response. Before, the poll failed with
// RESOURCE_EXHAUSTED ("received message larger than max").
func TestConsumerTakesAnAnswerOverFourMiB(t *testing.T) {
	c := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "big", 1); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("big")
	var last *client.Result
	for i := range 10 {
		v := make([]byte, 600<<10)
		v[0] = byte(i)
		r, err := p.Send(ctx, client.Record{Value: v})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := last.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	k, err := c.NewConsumer(ctx, "big", client.WithPartitions(0), client.WithFetchMaxBytes(8<<20), client.WithStoredBlocks(false))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	var got []client.Record
	for len(got) < 10 && ctx.Err() == nil {
		recs, err := k.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of 10 records: %v", len(got), err)
		}
		got = append(got, recs...)
	}
	for i, r := range got {
		if len(r.Value) != 600<<10 || r.Value[0] != byte(i) || r.Offset != int64(i) {
			t.Fatalf("record %d: offset %d, %d bytes", i, r.Offset, len(r.Value))
		}
	}
}
