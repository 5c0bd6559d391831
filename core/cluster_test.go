package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// viewCluster is one broker's view of a cluster, set by the test: every
// key is proposed to owner[key], else to def.
type viewCluster struct {
	self    Node
	mu      sync.Mutex
	members []Node
	owner   map[string]string
	def     string
	changes chan struct{}
}

func newView(self string, members ...string) *viewCluster {
	v := &viewCluster{self: Node{ID: self, Addr: self + ":1"}, owner: map[string]string{}, def: self, changes: make(chan struct{}, 1)}
	for _, m := range members {
		v.members = append(v.members, Node{ID: m, Addr: m + ":1"})
	}
	return v
}

func (v *viewCluster) Self() Node { return v.self }
func (v *viewCluster) Members() []Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.members
}
func (v *viewCluster) Owner(key string) Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := v.def
	if o, ok := v.owner[key]; ok {
		id = o
	}
	return Node{ID: id, Addr: id + ":1"}
}
func (v *viewCluster) Changes() <-chan struct{} { return v.changes }

// propose sets the proposed owner of key and signals the change.
func (v *viewCluster) propose(key, id string) {
	v.mu.Lock()
	v.owner[key] = id
	v.mu.Unlock()
	select {
	case v.changes <- struct{}{}:
	default:
	}
}

func clusterBroker(t *testing.T, s tier.Store, v *viewCluster) *Broker {
	cfg := testConfig(t, s)
	cfg.Cluster = v
	cfg.RebalanceInterval = 20 * time.Millisecond
	return newBroker(t, cfg)
}

func values(n int) []segment.Record {
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i].Value = []byte{byte(i)}
	}
	return recs
}

// A broker takes writes only for the partitions proposed to it; others get
// ErrNotOwner naming the owner, and nothing is stored.
func TestWritesGoOnlyToTheProposedOwner(t *testing.T) {
	ctx := context.Background()
	s := tier.NewMemStore()
	v1 := newView("b1", "b1", "b2")
	v1.propose(PartitionKey("t", 1), "b2")
	b1 := clusterBroker(t, s, v1)
	if _, err := b1.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	_, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 1, Records: values(3)})
	var ce *Error
	if !errors.Is(err, ErrNotOwner) || !errors.As(err, &ce) || ce.Owner == nil || ce.Owner.ID != "b2" || ce.Owner.Addr != "b2:1" {
		t.Fatalf("produce to a partition proposed to b2: %v, want ErrNotOwner naming b2", err)
	}
	if hw, err := b1.ListOffsets(ctx, "t", 1, Position{Kind: StartLatest}); err != nil || hw != 0 {
		t.Fatalf("partition 1 holds %d records (%v) after a redirected produce, want 0", hw, err)
	}
	// Keyless records without a partition go to the partitions it owns.
	res, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: -1, Records: values(4)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Partitions {
		if p != 0 {
			t.Fatalf("a keyless record went to partition %d, which b1 does not own", p)
		}
	}
	md, err := b1.Metadata(ctx, nil, []string{"g"})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Owners[0].ID != "b1" || md.Topics[0].Owners[1].ID != "b2" || md.Groups[0].Owner.ID != "b1" {
		t.Fatalf("metadata %+v %v", md, err)
	}
}

// When a partition is proposed to another broker, its owner hands it off:
// sealed, manifest unowned. The next owner claims it without fencing the
// old owner's incarnation, which goes on writing its other partitions.
func TestHandOffSealsAndDoesNotFence(t *testing.T) {
	ctx := context.Background()
	s := tier.NewMemStore()
	v1, v2 := newView("b1", "b1", "b2"), newView("b2", "b1", "b2")
	for _, v := range []*viewCluster{v1, v2} {
		v.def = "b1"
	}
	b1, b2 := clusterBroker(t, s, v1), clusterBroker(t, s, v2)
	if _, err := b1.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if _, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: p, Records: values(10)}); err != nil {
			t.Fatal(err)
		}
	}
	inc := b1.Incarnation()
	v1.propose(PartitionKey("t", 0), "b2")
	v2.propose(PartitionKey("t", 0), "b2")
	ms := meta.NewManifestStore(s, b1.mustTopic(t, "t").store, 0)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, _, err := ms.Load(ctx)
		if err == nil && m.Owner == "" && m.NextOffset() == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition 0 not handed off: %+v %v", m, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := b2.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: values(5)})
	if err != nil || res.Offsets[0] != 10 {
		t.Fatalf("the new owner's produce: %+v %v, want offsets from 10", res, err)
	}
	if _, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 1, Records: values(5)}); err != nil {
		t.Fatalf("the old owner's other partition: %v", err)
	}
	if got := b1.Incarnation(); got != inc {
		t.Fatalf("the hand-off fenced the old owner: incarnation %s, was %s", got, inc)
	}
	if _, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: values(1)}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("the old owner took a write for the partition it handed off: %v", err)
	}
}

func (b *Broker) mustTopic(t *testing.T, name string) *topic {
	t.Helper()
	tp, err := b.loadTopic(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// A group's coordinator is fenced by the bucket: once another broker took
// the group over (its views said so before this broker's did), the stale
// coordinator's commit is refused and stores nothing.
func TestStaleCoordinatorCommitRefused(t *testing.T) {
	ctx := context.Background()
	s := tier.NewMemStore()
	v1, v2 := newView("b1", "b1", "b2"), newView("b2", "b1", "b2")
	b1, b2 := clusterBroker(t, s, v1), clusterBroker(t, s, v2)
	if _, err := b1.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: values(50)}); err != nil {
		t.Fatal(err)
	}
	a1, err := b1.JoinGroup(ctx, "g", "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.CommitOffsets(ctx, "g", a1.MemberID, a1.Generation, map[int32]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	// b2's view moved the group to b2 first; b1's has not yet.
	a2, err := b2.JoinGroup(ctx, "g", "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.CommitOffsets(ctx, "g", a2.MemberID, a2.Generation, map[int32]int64{0: 20}); err != nil {
		t.Fatal(err)
	}
	// Refused, and refused again when retried (a conflict would be
	// adopted and the retry stored).
	for range 2 {
		if err := b1.CommitOffsets(ctx, "g", a1.MemberID, a1.Generation, map[int32]int64{0: 7}); err == nil {
			t.Fatal("the stale coordinator's commit was stored")
		}
	}
	if _, got, err := b2.FetchCommitted(ctx, "g"); err != nil || got[0] != 20 {
		t.Fatalf("committed %v %v, want the new coordinator's 20", got, err)
	}
	// Its member is gone there: it must rejoin at the coordinator.
	if _, err := b1.Heartbeat("g", a1.MemberID); !errors.Is(err, ErrMemberNotFound) {
		t.Fatalf("heartbeat at the stale coordinator: %v, want ErrMemberNotFound", err)
	}
	// A broker not proposed as coordinator refuses the group's calls.
	v1.propose(GroupKey("g"), "b2")
	if _, err := b1.JoinGroup(ctx, "g", "t", time.Hour); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("join at a broker not proposed: %v, want ErrNotOwner", err)
	}
}

// A write that reaches the next owner while the old one is still handing
// the partition off waits for the hand-off (the old owner is alive and
// its incarnation is named in the manifest) instead of claiming over it,
// which would fence the old owner's whole incarnation.
func TestClaimWaitsForALiveOwnersHandOff(t *testing.T) {
	ctx := context.Background()
	s := tier.NewMemStore()
	slow := tier.NewFaultStore(s, tier.FaultConfig{Latency: 100 * time.Millisecond}) // the old owner's seal takes a while
	v1, v2 := newView("b1", "b1", "b2"), newView("b2", "b1", "b2")
	v1.def, v2.def = "b1", "b1"
	cfg := testConfig(t, slow)
	cfg.Cluster, cfg.RebalanceInterval = v1, 20*time.Millisecond
	b1 := newBroker(t, cfg)
	b2 := clusterBroker(t, s, v2)
	if _, err := b1.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: values(10)}); err != nil {
		t.Fatal(err)
	}
	v2.mu.Lock()
	v2.members[0].Incarnation = b1.Incarnation() // as gossip publishes it
	v2.mu.Unlock()
	inc := b1.Incarnation()
	v1.propose(PartitionKey("t", 0), "b2")
	v2.propose(PartitionKey("t", 0), "b2")
	res, err := b2.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: values(5)})
	if err != nil || res.Offsets[0] != 10 {
		t.Fatalf("the new owner's produce: %+v %v, want offsets from 10", res, err)
	}
	// No fence in the old owner's WAL prefix.
	err = s.List(ctx, meta.WALIncarnationPrefix(inc), func(o tier.ObjectInfo) error {
		rc, _, err := s.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		head := make([]byte, 16)
		n, _ := io.ReadFull(rc, head)
		if wal.IsFence(head[:n]) {
			return fmt.Errorf("fence %s", o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the new owner claimed over the live old owner instead of waiting for its hand-off: %v", err)
	}
}
