package core

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// countingHook implements every hook interface and keeps the events.
type countingHook struct {
	mu      sync.Mutex
	produce []ProduceEvent
	fetch   []FetchEvent
	flush   []WALFlushEvent
	seal    []SealEvent
}

var (
	_ ProduceHook  = (*countingHook)(nil)
	_ FetchHook    = (*countingHook)(nil)
	_ WALFlushHook = (*countingHook)(nil)
	_ SealHook     = (*countingHook)(nil)
)

func (h *countingHook) OnProduce(e ProduceEvent) {
	h.mu.Lock()
	h.produce = append(h.produce, e)
	h.mu.Unlock()
}

func (h *countingHook) OnFetch(e FetchEvent) {
	h.mu.Lock()
	h.fetch = append(h.fetch, e)
	h.mu.Unlock()
}

func (h *countingHook) OnWALFlush(e WALFlushEvent) {
	h.mu.Lock()
	h.flush = append(h.flush, e)
	h.mu.Unlock()
}

func (h *countingHook) OnSegmentSealed(e SealEvent) {
	h.mu.Lock()
	h.seal = append(h.seal, e)
	h.mu.Unlock()
}

// produceOnly implements one hook interface only.
type produceOnly struct{ n int }

func (p *produceOnly) OnProduce(ProduceEvent) { p.n++ }

// Each hook is told of each event once, with the right counts: produce
// calls (failed ones with their error), fetch results, WAL flushes and
// sealed segments; a hook implementing one interface gets that event only.
func TestHooksSeeEveryEvent(t *testing.T) {
	ctx := context.Background()
	h, one := &countingHook{}, &produceOnly{}
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Hooks = []Hook{h, one}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	const requests, perRequest = 3, 10
	var wantBytes int64
	for i := 0; i < requests; i++ {
		req := &ProduceRequest{Topic: "t", Partition: int32(i % 2)}
		for j := 0; j < perRequest; j++ {
			r := segment.Record{Key: []byte("k"), Value: []byte(strings.Repeat("v", j)), Headers: []segment.Header{{Key: "h", Value: []byte("xy")}}}
			wantBytes += int64(1 + j + 3)
			req.Records = append(req.Records, r)
		}
		if _, err := b.Produce(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	_, err = b.Produce(ctx, &ProduceRequest{Topic: "missing", Partition: -1, Acks: AcksLocal, Records: []segment.Record{{Value: []byte("x")}}})
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != ErrTopicNotFound {
		t.Fatalf("produce to a missing topic: %v", err)
	}
	fetched := 0
	err = b.Fetch(ctx, &FetchRequest{Topic: "t", Partition: 0, MaxWait: time.Millisecond}, func(r *FetchResult) error {
		fetched += len(r.Records)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An empty long poll is a result too.
	if err := b.Fetch(ctx, &FetchRequest{Topic: "t", Partition: 1, Start: Position{Kind: StartLatest}, MaxWait: time.Millisecond}, func(*FetchResult) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil { // seals both partitions
		t.Fatal(err)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.produce) != requests+1 || one.n != requests+1 {
		t.Fatalf("%d and %d produce events, want %d", len(h.produce), one.n, requests+1)
	}
	var records int
	var bytes int64
	for _, e := range h.produce[:requests] {
		if e.Err != nil || e.Topic != "t" || e.Acks != AcksDurable || e.Duration <= 0 {
			t.Errorf("produce event %+v: want topic t, acks durable (the default resolved), no error", e)
		}
		records, bytes = records+e.Records, bytes+e.Bytes
	}
	if records != requests*perRequest || bytes != wantBytes {
		t.Errorf("produce events count %d records, %d bytes; want %d, %d", records, bytes, requests*perRequest, wantBytes)
	}
	if e := h.produce[requests]; e.Topic != "missing" || e.Acks != AcksLocal || !errors.As(e.Err, &ce) || ce.Kind != ErrTopicNotFound {
		t.Errorf("failed produce event %+v: want topic missing, acks local, ErrTopicNotFound", e)
	}
	if len(h.fetch) != 2 || h.fetch[0].Records != fetched || fetched != 2*perRequest || h.fetch[0].Partition != 0 || h.fetch[1].Records != 0 || h.fetch[1].Partition != 1 {
		t.Errorf("fetch events %+v (fetched %d records of partition 0): want one with %d records and one empty", h.fetch, fetched, 2*perRequest)
	}
	var flushed int64
	for _, e := range h.flush {
		if e.Err != nil || e.Bytes <= 0 || e.Attempts < 1 {
			t.Errorf("WAL flush event %+v", e)
		}
		flushed += e.Records
	}
	if flushed != requests*perRequest {
		t.Errorf("WAL flush events count %d records, want %d", flushed, requests*perRequest)
	}
	var sealed int64
	parts := map[int32]bool{}
	for _, e := range h.seal {
		if e.Topic != "t" || e.Bytes <= 0 {
			t.Errorf("seal event %+v: want the topic's name and a size", e)
		}
		sealed += e.Records
		parts[e.Partition] = true
	}
	if sealed != requests*perRequest || len(parts) != 2 {
		t.Errorf("seal events count %d records in %d partitions, want %d in 2", sealed, len(parts), requests*perRequest)
	}
}

// A hook that implements none of the interfaces is a mistake: refused.
func TestHooksUnknownRefused(t *testing.T) {
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Hooks = []Hook{struct{}{}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "Hooks[0]") {
		t.Fatalf("Validate with a non-hook: %v", err)
	}
}

// LagGroups names the groups with state, in a cluster of one all of them.
func TestLagGroups(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"b", "a"} {
		if _, err := b.JoinGroup(ctx, g, "t", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.LagGroups(ctx)
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Fatalf("LagGroups = %v, %v; want [a b]", got, err)
	}
}
