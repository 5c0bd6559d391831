package client_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/membership"
)

// dialCluster connects a client to the brokers at addrs (seeds).
func dialCluster(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.Dial(strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendKeyed sends n values (prefix-i), value i keyed to partition i mod
// partitions; at(i) runs before value i is sent.
func sendKeyed(t *testing.T, p *client.Producer, prefix string, n int, partitions int32, at func(i int, sent []sent)) []sent {
	t.Helper()
	var all []sent
	for i := range n {
		if at != nil {
			at(i, all)
		}
		v := fmt.Sprintf("%s-%04d", prefix, i)
		r, err := p.Send(context.Background(), client.Record{Key: keyFor(int32(i)%partitions, partitions, i), Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sent{v, r})
	}
	return all
}

// requireAcked fails the test unless every send was acknowledged.
func requireAcked(t *testing.T, all []sent) {
	t.Helper()
	for _, s := range all {
		if err := s.res.Wait(context.Background()); err != nil {
			t.Fatalf("record %s: %v", s.value, err)
		}
	}
}

// A producer given one seed of three brokers learns the others and sends
// each partition's batches to its owner: every record is stored once, and
// every broker stored only the partitions it owns. Without routing the
// seed refuses the partitions it does not own (NOT_OWNER) and their
// records fail.
func TestClusterProducerWritesEachPartitionAtItsOwner(t *testing.T) {
	tc := startCluster(t, 3)
	c := dialCluster(t, tc.brokers[1].node.Addr)
	ctx := context.Background()
	const topic, parts = "routed", 12
	if err := c.CreateTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	owners := tc.partitionOwners(topic, parts)
	if len(brokerIDs(owners)) < 3 {
		t.Fatalf("setup: the partitions are owned by %v only; the test needs all three brokers to own some", brokerIDs(owners))
	}
	p := c.NewProducer(topic, client.WithBatchSize(10), client.WithLinger(time.Millisecond))
	all := sendKeyed(t, p, "v", 1200, parts, nil)
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireAcked(t, all)
	acc, _ := tc.rec.snapshot()
	written := map[int32]bool{}
	for _, a := range acc {
		if a.broker != owners[a.partition] {
			t.Errorf("broker %s stored a batch of partition %d, owned by %s", a.broker, a.partition, owners[a.partition])
		}
		written[a.partition] = true
	}
	for p := range int32(parts) {
		if !written[p] {
			t.Errorf("partition %d (owner %s) was never written", p, owners[p])
		}
	}
	checkHistory(t, c, topic, parts, all)
}

// The static cluster moves every partition to another broker while a
// producer streams; the old owners release them. The producer follows the
// NOT_OWNER redirects; the idempotent sequences keep every record stored
// once, in order, whatever was in flight at the move.
func TestClusterProducerFollowsMovedPartitions(t *testing.T) {
	tc := startCluster(t, 3)
	c := dialCluster(t, tc.brokers[0].node.Addr)
	ctx := context.Background()
	const topic, parts = "moving", 3
	if err := c.CreateTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	before := tc.partitionOwners(topic, parts)
	after := make([]string, parts)
	p := c.NewProducer(topic, client.WithBatchSize(10), client.WithLinger(time.Millisecond))
	all := sendKeyed(t, p, "m", 900, parts, func(i int, sent []sent) {
		if i != 600 {
			return
		}
		// Records 300-599 are queued or in flight when the partitions move.
		if err := sent[300].res.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		tc.rec.setPhase(1)
		for p := range int32(parts) {
			for _, cb := range tc.brokers {
				if cb.node.ID != before[p] {
					after[p] = cb.node.ID
					tc.sc.move(core.PartitionKey(topic, p), cb.node.ID)
					break
				}
			}
		}
	})
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireAcked(t, all)
	acc, redirected := tc.rec.snapshot()
	for p := range int32(parts) {
		n := 0
		for _, a := range acc {
			if a.phase == 1 && a.partition == p && a.broker == after[p] {
				n++
			}
		}
		if n == 0 {
			t.Errorf("partition %d moved from %s to %s, which stored none of its batches", p, before[p], after[p])
		}
	}
	t.Logf("%d produce requests redirected", redirected)
	checkHistory(t, c, topic, parts, all)
}

// A broker dies mid-stream (its server stops, its core closes without a
// hand-off), and then the cluster gives its partitions to the others. The
// producer waits for the new owners and resends there; a consumer reading
// every partition fails over to a live broker. Every record is acked,
// stored once, and read.
func TestClusterBrokerDeathProducerAndConsumerContinue(t *testing.T) {
	tc := startCluster(t, 3)
	var addrs []string
	for _, cb := range tc.brokers {
		addrs = append(addrs, cb.node.Addr)
	}
	c := dialCluster(t, addrs...)
	ctx := context.Background()
	const topic, parts = "dying", 6
	if err := c.CreateTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	owners := tc.partitionOwners(topic, parts)
	victim := owners[0]
	var victimParts []int32
	for p, o := range owners {
		if o == victim {
			victimParts = append(victimParts, int32(p))
		}
	}

	// The consumer: every partition, from the start, until stopped.
	reader := dialCluster(t, addrs...)
	var all []int32
	for p := range int32(parts) {
		all = append(all, p)
	}
	k, err := reader.NewConsumer(ctx, topic, client.WithPartitions(all...))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		read = map[string]int{}
	)
	pctx, stopPolling := context.WithCancel(ctx)
	polled := make(chan error, 1)
	go func() {
		for pctx.Err() == nil {
			recs, err := k.Poll(pctx)
			if err != nil && pctx.Err() == nil {
				polled <- err
				return
			}
			mu.Lock()
			for _, r := range recs {
				read[string(r.Value)]++
			}
			mu.Unlock()
		}
		polled <- nil
	}()

	p := c.NewProducer(topic, client.WithBatchSize(10), client.WithLinger(time.Millisecond))
	sends := sendKeyed(t, p, "d", 900, parts, func(i int, sent []sent) {
		if i != 450 {
			return
		}
		if err := sent[200].res.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		tc.rec.setPhase(1)
		tc.kill(indexOf(tc, victim))
		// The cluster notices the death a little later (gossip takes
		// seconds): meanwhile the dead broker is still named the owner.
		time.Sleep(300 * time.Millisecond)
		tc.sc.remove(victim)
	})
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireAcked(t, sends)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		var missing []string
		for _, s := range sends {
			if read[s.value] == 0 {
				missing = append(missing, fmt.Sprintf("%s@p%d/%d", s.value, s.res.Partition, s.res.Offset))
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		select {
		case err := <-polled:
			t.Fatalf("the consumer stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer did not read %d acked records, such as %v (victim %s owned %v)", len(missing), missing[:min(len(missing), 5)], victim, victimParts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopPolling()
	if err := <-polled; err != nil {
		t.Fatalf("the consumer failed: %v", err)
	}
	acc, _ := tc.rec.snapshot()
	for _, vp := range victimParts {
		moved := false
		for _, a := range acc {
			moved = moved || a.phase == 1 && a.partition == vp && a.broker != victim
		}
		if !moved {
			t.Errorf("partition %d of the dead broker %s: no batch stored elsewhere after its death", vp, victim)
		}
	}
	checkHistory(t, c, topic, parts, sends)
}

func indexOf(tc *testCluster, id string) int {
	for i, cb := range tc.brokers {
		if cb.node.ID == id {
			return i
		}
	}
	tc.t.Fatalf("no broker %q", id)
	return -1
}

// A group consumer follows its group's coordinator: when the coordinator
// moves (the old one answers NOT_OWNER, and the new one takes the group
// over in the bucket) or dies, the consumer's calls go
// to the new coordinator, which does not know the member: it joins there
// and goes on from the committed offsets, and reads what is produced
// after the change.
func TestClusterGroupConsumerFollowsCoordinator(t *testing.T) {
	for _, change := range []string{"moved", "killed"} {
		t.Run(change, func(t *testing.T) {
			tc := startCluster(t, 3)
			const topic, group = "jobs", "workers"
			coord := tc.owner(core.GroupKey(group)).ID
			var seed, next string
			for _, cb := range tc.brokers {
				if cb.node.ID != coord {
					if seed == "" {
						seed = cb.node.Addr
					} else {
						next = cb.node.ID
					}
				}
			}
			c := dialCluster(t, seed) // not the coordinator
			ctx := context.Background()
			if err := c.CreateTopic(ctx, topic, 4); err != nil {
				t.Fatal(err)
			}
			produceValues(t, c, topic, values("old", 100)...)
			k, err := c.NewConsumer(ctx, topic, client.WithGroup(group, client.AtLeastOnce), client.WithSessionTimeout(3*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close(ctx)
			pollUntil(t, k, 100, nil)
			if err := k.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if d, err := tc.byID(coord).b.DescribeGroup(ctx, group); err != nil || len(d.Members) != 1 {
				t.Fatalf("setup: the coordinator %s describes the group as %+v (%v), want one member", coord, d, err)
			}

			switch change {
			case "moved":
				tc.sc.move(core.GroupKey(group), next)
			case "killed":
				tc.kill(indexOf(tc, coord))
				tc.sc.remove(coord)
				next = tc.owner(core.GroupKey(group)).ID
			}
			produceValues(t, c, topic, values("new", 100)...)
			for v := range pollUntil(t, k, 100, nil) {
				if !strings.HasPrefix(v, "new") {
					t.Fatalf("after the coordinator change the consumer got %q again although it was committed", v)
				}
			}
			// The old coordinator may have served those fetches (its member
			// lives until its session expires); the heartbeats find the new
			// one, and the consumer joins there and reads on.
			waitFor(t, "the consumer to join at the new coordinator", func() bool {
				d, err := tc.byID(next).b.DescribeGroup(ctx, group)
				return err == nil && len(d.Members) == 1 && len(k.Assignment()) == 4
			})
			produceValues(t, c, topic, values("late", 50)...)
			late := map[string]bool{}
			deadline := time.Now().Add(30 * time.Second)
			for len(late) < 50 {
				if time.Now().After(deadline) {
					t.Fatalf("after joining at the new coordinator the consumer read %d of the 50 late values", len(late))
				}
				recs, err := k.Poll(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					switch v := string(r.Value); {
					case strings.HasPrefix(v, "late"):
						late[v] = true
					case strings.HasPrefix(v, "old"):
						// "new" ones may come again: read at the old
						// coordinator, their commit was refused.
						t.Fatalf("after the coordinator change the consumer got %q again although it was committed", v)
					}
				}
			}
		})
	}
}

// Dial takes a list of seeds: the first one being down does not matter.
func TestDialSkipsADownSeed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close() // nothing listens there
	tb := startTestBroker(t)
	c := dialCluster(t, down, tb.addr)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "seeds", 2); err != nil {
		t.Fatal(err)
	}
	produceValues(t, c, "seeds", values("s", 20)...)
	k, err := c.NewConsumer(ctx, "seeds", client.WithPartitions(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := pollUntil(t, k, 20, nil); len(got) != 20 {
		t.Fatalf("read %d values, want 20", len(got))
	}
	if _, err := client.Dial(" , "); err == nil {
		t.Fatal("Dial of an empty address list succeeded")
	}
}

// gossipView is core.Cluster over a membership.Cluster, as strata serve
// runs it (without its graceful leave).
type gossipView struct{ c *membership.Cluster }

func coreNode(m membership.Member) core.Node {
	return core.Node{ID: m.Name, Addr: m.ClientAddr, Zone: m.Zone}
}

func (g gossipView) Self() core.Node { return coreNode(g.c.Self()) }

func (g gossipView) Members() []core.Node {
	var out []core.Node
	for _, m := range g.c.Members() {
		out = append(out, coreNode(m))
	}
	return out
}

func (g gossipView) Owner(key string) core.Node {
	m, ok := g.c.Owner(key)
	if !ok {
		return core.Node{}
	}
	return coreNode(m)
}

func (g gossipView) Changes() <-chan struct{} { return g.c.Changes() }

// startGossipCluster starts n brokers g0, g1, ... that find each other by
// gossip on loopback.
func startGossipCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	lis := listeners(t, n)
	views := map[string]gossipView{}
	var nodes []core.Node
	var first *membership.Cluster
	for i, l := range lis {
		cfg := membership.Config{Name: fmt.Sprintf("g%d", i), ClientAddr: l.Addr().String()}
		if first != nil {
			cfg.Seeds = []string{first.Addr()}
		}
		mc, err := membership.Join(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mc.Shutdown() }) // after the brokers stop
		if first == nil {
			first = mc
		}
		views[cfg.Name] = gossipView{mc}
		nodes = append(nodes, core.Node{ID: cfg.Name, Addr: cfg.ClientAddr})
	}
	waitFor(t, "every broker to see the others", func() bool {
		for _, v := range views {
			if len(v.c.Members()) != n {
				return false
			}
		}
		return true
	})
	tc := &testCluster{t: t, owner: views["g0"].Owner, rec: &produceLog{}}
	tc.serve(lis, nodes, func(n core.Node) core.Cluster { return views[n.ID] })
	return tc
}

// Over real gossip membership: a producer given one seed writes every
// partition at the owner the members agree on.
func TestClusterOverGossip(t *testing.T) {
	tc := startGossipCluster(t, 3)
	c := dialCluster(t, tc.brokers[2].node.Addr)
	ctx := context.Background()
	const topic, parts = "gossip", 6
	if err := c.CreateTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	owners := tc.partitionOwners(topic, parts)
	if len(brokerIDs(owners)) < 2 {
		t.Fatalf("setup: the partitions are owned by %v only", brokerIDs(owners))
	}
	p := c.NewProducer(topic, client.WithBatchSize(10), client.WithLinger(time.Millisecond))
	all := sendKeyed(t, p, "g", 300, parts, nil)
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	requireAcked(t, all)
	acc, _ := tc.rec.snapshot()
	for _, a := range acc {
		if a.broker != owners[a.partition] {
			t.Errorf("broker %s stored a batch of partition %d, owned by %s", a.broker, a.partition, owners[a.partition])
		}
	}
	checkHistory(t, c, topic, parts, all)
}
