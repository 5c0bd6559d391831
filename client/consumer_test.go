package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

// values returns n distinct values prefix-0, prefix-1, ...
func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// pollUntil polls k until it has returned want distinct values and returns
// how often each value came back. An error fails the test unless
// tolerate(err) says it is expected (nil: none is).
func pollUntil(t *testing.T, k *client.Consumer, want int, tolerate func(error) bool) map[string]int {
	t.Helper()
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("polled %d distinct values, want %d", len(got), want)
		}
		recs, err := k.Poll(context.Background())
		if err != nil {
			if tolerate != nil && tolerate(err) {
				continue
			}
			t.Fatalf("poll: %v", err)
		}
		for _, r := range recs {
			got[string(r.Value)]++
		}
	}
	return got
}

// Defect 9: after a rebalance, a fetch from the old generation is refused;
// the consumer must learn the new assignment at once (not at its next
// heartbeat) and never retry the refused fetch in a loop. The broker
// counts refused fetches; each rebalance may cost the member at most a
// couple of them.
func TestConsumerLearnsRebalanceFromRefusedFetch(t *testing.T) {
	var refused, fetches atomic.Int64
	count := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if info.FullMethod == stratapb.Strata_Fetch_FullMethodName {
			fetches.Add(1)
			if status.Code(err) == codes.FailedPrecondition {
				refused.Add(1)
			}
		}
		return err
	}
	tb := startTestBroker(t, grpc.StreamInterceptor(count))
	c := tb.dial(t, nil)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "r", 4); err != nil {
		t.Fatal(err)
	}
	// Heartbeats every 2 s: a member that waits for them spins for
	// seconds after each rebalance.
	a, err := c.NewConsumer(ctx, "r", client.WithGroup("g", client.AtLeastOnce), client.WithSessionTimeout(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	pctx, stopPolling := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() {
		for {
			if _, err := a.Poll(pctx); err != nil {
				polled <- err
				return
			}
		}
	}()
	const rounds = 3
	for range rounds {
		b, err := c.NewConsumer(ctx, "r", client.WithGroup("g", client.AtLeastOnce))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a to learn that b joined", func() bool { return len(a.Assignment()) == 2 })
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a to learn that b left", func() bool { return len(a.Assignment()) == 4 })
	}
	stopPolling()
	if err := <-polled; !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		t.Fatalf("poll failed during the rebalances: %v", err)
	}
	const rebalances = 2 * rounds
	if n := refused.Load(); n > 2*rebalances {
		t.Fatalf("%d fetches (of %d) were refused for a stale generation in %d rebalances; want at most %d", n, fetches.Load(), rebalances, 2*rebalances)
	}
	t.Logf("%d of %d fetches refused in %d rebalances", refused.Load(), fetches.Load(), rebalances)
}

// Defect 9: a member whose session expired (its heartbeats were cut off)
// joins again by itself and resumes from the committed offsets; Poll does
// not fail with NOT_FOUND forever.
func TestConsumerRejoinsAfterSessionExpiry(t *testing.T) {
	tb := startTestBroker(t)
	var cut atomic.Bool
	cutHeartbeats := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if cut.Load() && (method == stratapb.Strata_Heartbeat_FullMethodName || method == stratapb.Strata_CommitOffsets_FullMethodName) {
			return status.Error(codes.Unavailable, "test: heartbeats are cut off")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c := tb.dial(t, cutHeartbeats)
	admin := tb.dial(t, nil)
	ctx := context.Background()
	if err := admin.CreateTopic(ctx, "s", 2); err != nil {
		t.Fatal(err)
	}
	produceValues(t, admin, "s", values("old", 10)...)
	k, err := c.NewConsumer(ctx, "s", client.WithGroup("g", client.AtLeastOnce), client.WithSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	pollUntil(t, k, 10, nil)
	if err := k.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	cut.Store(true)
	waitFor(t, "the broker to expire the member", func() bool {
		d, err := admin.API().DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: "g"})
		return err == nil && len(d.Members) == 0
	})
	produceValues(t, admin, "s", values("new", 10)...)
	cut.Store(false)

	got := pollUntil(t, k, 10, nil)
	for v := range got {
		if v[:3] != "new" {
			t.Fatalf("after rejoining, the consumer got %q again although it was committed", v)
		}
	}
	if len(k.Assignment()) != 2 {
		t.Fatalf("after rejoining, the consumer reads partitions %v, want both", k.Assignment())
	}
}

// Defect 9: the broker restarts (group membership lives in its memory):
// the consumer joins again by itself and resumes from the committed
// offsets, kept in the bucket.
func TestConsumerRejoinsAfterBrokerRestart(t *testing.T) {
	tb := startTestBroker(t)
	c := tb.dial(t, nil)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	produceValues(t, c, "b", values("old", 10)...)
	k, err := c.NewConsumer(ctx, "b", client.WithGroup("g", client.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	pollUntil(t, k, 10, nil)
	if err := k.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	tb.restart()
	waitFor(t, "the client to reconnect", func() bool {
		_, err := c.API().ListTopics(ctx, &stratapb.ListTopicsRequest{})
		return err == nil
	})
	produceValues(t, c, "b", values("new", 10)...)
	// While the connection comes back, calls may fail with UNAVAILABLE;
	// the application retries those. Anything else is a failure.
	unavailable := func(err error) bool { return status.Code(err) == codes.Unavailable }
	got := pollUntil(t, k, 10, unavailable)
	for v := range got {
		if v[:3] != "new" {
			t.Fatalf("after the restart, the consumer got %q again although it was committed", v)
		}
	}
}

// An AtMostOnce consumer commits before Poll returns; when a rebalance
// moves a partition between its fetch and its commit, the records of that
// partition must not be returned (the new owner reads them from the
// committed offset): no record reaches two members.
func TestAtMostOnceNeverReturnsRecordsOfAMovedPartition(t *testing.T) {
	tb := startTestBroker(t)
	admin := tb.dial(t, nil)
	ctx := context.Background()
	if err := admin.CreateTopic(ctx, "m", 2); err != nil {
		t.Fatal(err)
	}
	produceValues(t, admin, "m", values("v", 40)...)
	var (
		once   sync.Once
		second *client.Consumer
		joinEr error
	)
	// Before the first commit reaches the broker, a second member joins:
	// the commit is from a stale generation.
	joinFirst := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == stratapb.Strata_CommitOffsets_FullMethodName {
			once.Do(func() {
				second, joinEr = admin.NewConsumer(context.Background(), "m", client.WithGroup("g", client.AtMostOnce))
			})
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c := tb.dial(t, joinFirst)
	first, err := c.NewConsumer(ctx, "m", client.WithGroup("g", client.AtMostOnce))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	if len(first.Assignment()) != 2 {
		t.Fatalf("the only member reads %v, want both partitions", first.Assignment())
	}
	recs, err := first.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if joinEr != nil || second == nil {
		t.Fatalf("second member: %v", joinEr)
	}
	defer second.Close(ctx)
	moved := map[int32]bool{}
	for _, p := range second.Assignment() {
		moved[p] = true
	}
	if len(moved) != 1 {
		t.Fatalf("the second member reads %v, want one partition", second.Assignment())
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if moved[r.Partition] {
			t.Fatalf("Poll returned record %q of partition %d, which moved to another member before the commit", r.Value, r.Partition)
		}
		seen[string(r.Value)] = true
	}
	for {
		more, err := second.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(more) == 0 {
			break
		}
		for _, r := range more {
			if seen[string(r.Value)] {
				t.Fatalf("record %q was delivered to both members", r.Value)
			}
			seen[string(r.Value)] = true
		}
	}
	if len(seen) != 40 {
		t.Fatalf("the members got %d distinct records, want 40", len(seen))
	}
}
