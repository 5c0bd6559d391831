package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/client"
)

// countCalls is a client interceptor counting calls by method name (the
// last element of the full method).
type countCalls struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *countCalls) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *countCalls) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[name]
}

// Run settles in the background, many messages per call: 200 messages
// handled by 8 workers cost far fewer Ack calls than messages (one per
// message, settled by its worker, before). And Run returns only once
// every message it handled is settled: the acks are all there the moment
// it returns, with no waiting.
func TestRunSettlesManyMessagesPerCall(t *testing.T) {
	tb := startTestBroker(t)
	var cc countCalls
	c := tb.dial(t, cc.intercept)
	shareGroup(t, c, "jobs", 2, client.ShareGroupConfig{})
	const n = 200
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("job-%03d", i)
	}
	produceValues(t, c, "jobs", values...)
	k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
	var h handled
	var settled, failed atomic.Int64
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		h.saw(m)
		h.finished()
		return nil
	}, client.WithWorkers(8), client.WithSettled(func(m client.Message, settlement string, err error) {
		if settlement != "ack" {
			t.Errorf("%s settled by %s, want ack", m.Value, settlement)
		}
		if err != nil {
			failed.Add(1)
		}
		settled.Add(1)
	}))
	waitFor(t, "every message handled", func() bool { _, done := h.snapshot(); return done >= n })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	// No waiting here: Run's return means every settle returned.
	d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
	if err != nil || d.Acked != n || d.InFlight != 0 || d.Available != 0 {
		t.Fatalf("describe right after Run returned: %+v, %v; want %d acked, none in flight or available", d, err, n)
	}
	if settled.Load() != n || failed.Load() != 0 {
		t.Fatalf("WithSettled saw %d settlements, %d failed; want %d, none failed", settled.Load(), failed.Load(), n)
	}
	counts, _ := h.snapshot()
	for _, v := range values {
		if fmt.Sprint(counts[v]) != "[1]" {
			t.Fatalf("%s was handled with delivery counts %v, want once", v, counts[v])
		}
	}
	if acks := cc.get("Ack"); acks == 0 || acks > n/3 {
		t.Fatalf("%d Ack calls for %d messages: want settlements coalesced (at most %d calls)", acks, n, n/3)
	}
	t.Logf("%d messages: %d Receive calls, %d Ack calls", n, cc.get("Receive"), cc.get("Ack"))
}

// WithPrefetch: while the only worker is busy, Run holds the next
// messages leased, received ahead (1 + prefetch in flight at the broker);
// WithPrefetch(0) holds none beyond the worker's. When Run stops, what it
// received ahead goes back at once, not counted as a delivery.
func TestRunPrefetch(t *testing.T) {
	for _, prefetch := range []int{0, 3} {
		t.Run(fmt.Sprintf("prefetch=%d", prefetch), func(t *testing.T) {
			tb := startTestBroker(t)
			c := tb.dial(t, nil)
			shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{})
			produceValues(t, c, "jobs", "a", "b", "c", "d", "e", "f")
			k := c.NewShareConsumer("jobs", "workers", client.WithWait(time.Second))
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			var handledN atomic.Int64
			stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
				handledN.Add(1)
				select {
				case started <- struct{}{}:
				default:
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			}, client.WithWorkers(1), client.WithPrefetch(prefetch))
			<-started
			want := int64(1 + prefetch)
			waitFor(t, fmt.Sprintf("%d in flight", want), func() bool {
				d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
				return err == nil && d.InFlight == want
			})
			// It stays there: nothing more is received while the worker
			// is busy.
			time.Sleep(300 * time.Millisecond)
			d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
			if err != nil || d.InFlight != want || d.Available != 6-want {
				t.Fatalf("while the worker is busy: %+v, %v; want %d in flight, %d available", d, err, want, 6-want)
			}
			close(release) // the first handler acks after ctx ends: it returned nil
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v, want context.Canceled", err)
			}
			d, err = c.DescribeShareGroup(context.Background(), "jobs", "workers")
			if err != nil || d.InFlight != 0 || d.Acked+d.Available != 6 {
				t.Fatalf("after Run stopped: %+v, %v; want none in flight, the rest available", d, err)
			}
			msgs := receiveAll(t, k, int(d.Available))
			for _, m := range msgs {
				if m.DeliveryCount != 1 {
					t.Fatalf("after Run stopped, %s came with delivery count %d: a release must not count", m.Value, m.DeliveryCount)
				}
			}
			if got := handledN.Load(); got != d.Acked {
				t.Fatalf("%d handled, %d acked: only handled messages may be acked", got, d.Acked)
			}
		})
	}
}

// A message received ahead that waits for a busy worker is given back
// (released: no delivery counted) once half its lease is gone, never left
// to run out unhandled (that would count a delivery against the record's
// max deliveries, and could dead-letter a record no handler ever saw);
// and Run stops receiving ahead of a handler that is slower than half a
// lease. The record is handled later, on its first counted delivery.
func TestRunGivesBackPrefetchedMessagesBeforeTheirLeaseRunsOut(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond})
	produceValues(t, c, "jobs", "slow", "next")
	k := c.NewShareConsumer("jobs", "workers", client.WithVisibility(time.Second), client.WithWait(time.Second))
	var h handled
	var mu sync.Mutex
	var runErrs []string
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		h.saw(m)
		defer h.finished()
		if string(m.Value) == "slow" {
			time.Sleep(2500 * time.Millisecond) // its lease is extended; "next" waits
		}
		return nil
	}, client.WithWorkers(1), client.WithPrefetch(1), client.WithRunErrors(func(m client.Message, err error) {
		mu.Lock()
		runErrs = append(runErrs, string(m.Value)+": "+err.Error())
		mu.Unlock()
	}))
	waitFor(t, "both acked", func() bool {
		d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
		return err == nil && d.Acked == 2
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	counts, _ := h.snapshot()
	mu.Lock()
	defer mu.Unlock()
	for _, v := range []string{"slow", "next"} {
		if fmt.Sprint(counts[v]) != "[1]" {
			t.Errorf("%s was handled with delivery counts %v, want once, on delivery 1 (a lease that ran out in Run's buffer counts a delivery)", v, counts[v])
		}
	}
	if len(runErrs) != 0 {
		t.Errorf("Run reported %q, want nothing: no lease may run out in its buffer", runErrs)
	}
}

// A receive that long-polled for longer than the visibility timeout
// before records came hands them to the worker with a whole lease: the
// broker's lease starts when it hands a record out, not when the receive
// was sent. (Judged from the send, the record looked expired on arrival
// and was dropped unhandled, its lease left to run out: a delivery
// counted, dead-lettered with MaxDeliveries 1.)
func TestRunHandlesRecordsThatCameAfterALongPoll(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{MaxDeliveries: 1})
	k := c.NewShareConsumer("jobs", "workers", client.WithVisibility(time.Second), client.WithWait(5*time.Second))
	var h handled
	var mu sync.Mutex
	var runErrs []error
	runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		h.saw(m)
		h.finished()
		return nil
	}, client.WithRunErrors(func(m client.Message, err error) {
		mu.Lock()
		runErrs = append(runErrs, err)
		mu.Unlock()
	}))
	time.Sleep(1500 * time.Millisecond) // the receive is polling: past one visibility timeout
	produceValues(t, c, "jobs", "late")
	waitFor(t, "the record acked", func() bool {
		d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
		return err == nil && d.Acked == 1
	})
	counts, _ := h.snapshot()
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(counts["late"]) != "[1]" || len(runErrs) > 0 {
		t.Fatalf("the record that came after a long poll was handled with delivery counts %v, Run reported %v; want [1] and nothing", counts["late"], runErrs)
	}
}

// Nacks with distinct reasons are a settle call each; they go at once, so
// the acks queued with them land inside their leases. (In turn, 30 nacks
// of 150 ms each held the batch's acks for 4.5 s, past their 1 s leases:
// every ack failed.)
func TestRunSettlesDistinctNacksAtOnce(t *testing.T) {
	tb := startTestBroker(t)
	slowNack := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Nack") {
			time.Sleep(150 * time.Millisecond)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c := tb.dial(t, slowNack)
	// The nacked records stay in backoff for the test.
	shareGroup(t, c, "jobs", 1, client.ShareGroupConfig{BackoffMin: 10 * time.Minute, BackoffMax: 20 * time.Minute})
	var values []string
	for i := range 30 {
		values = append(values, fmt.Sprintf("fail-%02d", i))
	}
	for i := range 10 {
		values = append(values, fmt.Sprintf("ok-%02d", i))
	}
	produceValues(t, c, "jobs", values...)
	k := c.NewShareConsumer("jobs", "workers", client.WithVisibility(time.Second), client.WithWait(time.Second))
	var mu sync.Mutex
	var runErrs []string
	stop := runInBackground(t, k, func(ctx context.Context, m client.Message) error {
		if v := string(m.Value); strings.HasPrefix(v, "fail-") {
			return fmt.Errorf("cannot do %s", v) // a reason of its own
		}
		return nil
	}, client.WithWorkers(8), client.WithRunErrors(func(m client.Message, err error) {
		mu.Lock()
		runErrs = append(runErrs, string(m.Value)+": "+err.Error())
		mu.Unlock()
	}))
	waitFor(t, "every record settled", func() bool {
		d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
		return err == nil && d.Acked+d.Backoff >= 40
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	d, err := c.DescribeShareGroup(context.Background(), "jobs", "workers")
	mu.Lock()
	defer mu.Unlock()
	if err != nil || d.Acked != 10 || d.Backoff != 30 || len(runErrs) > 0 {
		t.Fatalf("after Run: %+v, %v; Run reported %d errors %q; want 10 acked, 30 in backoff, no error", d, err, len(runErrs), runErrs)
	}
}
