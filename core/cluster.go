package core

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/stratalog/strata/meta"
)

// Ownership in a cluster. Membership proposes, the bucket decides: a
// Cluster (package membership, over gossip) proposes the owner of every
// partition and the coordinator of every group by rendezvous hashing over
// the live members; the broker takes writes only for the partitions
// proposed to it, and a claim (the manifest epoch CAS and the WAL fence)
// is what makes it the owner. When a partition is proposed to another
// broker, this one releases it (seals it and marks its manifest unowned,
// ingest.Partition.Release) and answers its writes with ErrNotOwner naming
// the proposed owner. Reads need no ownership (read.go).

// Node is a broker as the cluster knows it.
type Node struct {
	ID   string // the broker's node id, unique in the cluster
	Addr string // its client (gRPC) address, HOST:PORT
	Zone string // its zone label ("" when none)
	// Incarnation is the broker's current WAL incarnation, when its
	// Cluster publishes it ("" otherwise): it tells a live owner's
	// partitions, which it is handing off, from a dead one's.
	Incarnation string
}

// IncarnationPublisher is implemented by a Cluster that can tell the
// others this broker's current WAL incarnation (membership does, in its
// gossip metadata). The broker calls it whenever it starts one.
type IncarnationPublisher interface {
	SetIncarnation(inc string) error
}

// releaseWait bounds how long a broker about to claim a partition waits
// for its previous owner, alive and named in the manifest, to finish
// handing it off (seal, mark unowned): a claim before that fences the
// previous owner's whole incarnation. A dead owner is not waited for.
const releaseWait = 2 * time.Second

// awaitRelease waits, before partition p of t is claimed here, while the
// manifest names as owner the incarnation of another live broker, up to
// releaseWait. Errors end the wait: the claim then decides, as always.
func (b *Broker) awaitRelease(ctx context.Context, t *topic, p int32, self string) {
	if b.cfg.Cluster == nil {
		return
	}
	ms := meta.NewManifestStore(b.cfg.Store, t.store, p)
	deadline := time.Now().Add(releaseWait)
	for {
		m, _, err := ms.Load(ctx)
		if err != nil || m.Owner == "" || m.Owner == self || !b.liveIncarnation(m.Owner) || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// liveIncarnation reports whether another live broker publishes inc as
// its current incarnation.
func (b *Broker) liveIncarnation(inc string) bool {
	self := b.cfg.Cluster.Self().ID
	for _, n := range b.cfg.Cluster.Members() {
		if n.ID != self && n.Incarnation == inc {
			return true
		}
	}
	return false
}

// Cluster proposes who owns what. Config.Cluster nil is a cluster of one:
// this broker owns everything. Implementations are safe for concurrent use.
type Cluster interface {
	// Self is this broker.
	Self() Node
	// Members are the live brokers, this one included, sorted by ID.
	Members() []Node
	// Owner proposes the owner of key (PartitionKey, GroupKey) among the
	// members that take part in ownership.
	Owner(key string) Node
	// Changes is signalled (coalesced) when the members change.
	Changes() <-chan struct{}
}

// PartitionKey is the ownership key of a partition.
func PartitionKey(topic string, p int32) string { return "p/" + topic + "/" + strconv.Itoa(int(p)) }

// OwnerKey is the ownership key of partition p of the topic: its own, or
// that of the topic it is colocated with (a share group's state log and
// default dead-letter topic live with the partitions they serve).
func (c *TopicConfig) OwnerKey(p int32) string {
	if c.Colocate != "" {
		return PartitionKey(c.Colocate, p)
	}
	return PartitionKey(c.Name, p)
}

// GroupKey is the ownership key of a consumer group's coordinator.
func GroupKey(group string) string { return "g/" + group }

// self is this broker.
func (b *Broker) self() Node {
	if b.cfg.Cluster == nil {
		return b.cfg.Node
	}
	return b.cfg.Cluster.Self()
}

// ownerOf returns the proposed owner of key and whether it is this broker.
func (b *Broker) ownerOf(key string) (Node, bool) {
	c := b.cfg.Cluster
	if c == nil {
		return b.cfg.Node, true
	}
	o := c.Owner(key)
	if o.ID == "" {
		return c.Self(), true
	}
	return o, o.ID == c.Self().ID
}

// Metadata is the cluster as this broker sees it: its live brokers and
// the proposed owner of each partition and group asked about.
type Metadata struct {
	Self    Node
	Brokers []Node
	Topics  []TopicOwners
	Groups  []GroupOwner
}

// TopicOwners is the proposed owner of each partition of a topic.
type TopicOwners struct {
	Name   string
	Owners []Node // one per partition, in order
}

// GroupOwner is the proposed coordinator of a group.
type GroupOwner struct {
	Group string
	Owner Node
}

// Metadata answers for the named topics (every topic when none is named)
// and groups. It reads topic configs only; it opens nothing.
func (b *Broker) Metadata(ctx context.Context, topics, groups []string) (*Metadata, error) {
	md := &Metadata{Self: b.self()}
	if b.cfg.Cluster != nil {
		md.Brokers = b.cfg.Cluster.Members()
	} else {
		md.Brokers = []Node{b.cfg.Node}
	}
	var cfgs []*TopicConfig
	if len(topics) == 0 {
		all, err := b.ListTopics(ctx)
		if err != nil {
			return nil, err
		}
		cfgs = all
	}
	for _, name := range topics {
		t, err := b.loadTopic(ctx, name)
		if err != nil {
			return nil, err
		}
		cfgs = append(cfgs, t.cfg)
	}
	for _, c := range cfgs {
		to := TopicOwners{Name: c.Name, Owners: make([]Node, c.Partitions)}
		for p := range c.Partitions {
			to.Owners[p], _ = b.ownerOf(c.OwnerKey(p))
		}
		md.Topics = append(md.Topics, to)
	}
	for _, g := range groups {
		if err := validGroupName(g); err != nil {
			return nil, err
		}
		o, _ := b.ownerOf(GroupKey(g))
		md.Groups = append(md.Groups, GroupOwner{Group: g, Owner: o})
	}
	return md, nil
}

// checkWriter returns ErrNotOwner unless this broker is the proposed owner
// of partition p of t.
func (b *Broker) checkWriter(t *topic, p int32) error {
	o, self := b.ownerOf(t.cfg.OwnerKey(p))
	if self {
		return nil
	}
	return &Error{Kind: ErrNotOwner, Owner: &o, Msg: fmt.Sprintf(
		"partition %s/%d is owned by broker %s at %s, not by this broker (%s); nothing was stored: send its writes there (clients refresh their metadata and retry)",
		t.cfg.Name, p, o.ID, o.Addr, b.self().ID)}
}

// ownedRoundRobin picks the partition of a keyless record sent without a
// partition: round robin over the partitions proposed to this broker, or
// over all when none is (checkWriter then redirects).
func (b *Broker) ownedRoundRobin(t *topic) int32 {
	n := t.cfg.Partitions
	start := int32(t.rr.Add(1) % uint32(n))
	if b.cfg.Cluster == nil {
		return start
	}
	for i := range n {
		p := (start + i) % n
		if _, self := b.ownerOf(t.cfg.OwnerKey(p)); self {
			return p
		}
	}
	return start
}

// releaseTimeout bounds one partition's release (its final seal).
const releaseTimeout = 30 * time.Second

// rebalanceLoop releases the open partitions proposed to other brokers,
// when the members change and every RebalanceInterval (a proposal can
// change without a membership event once a new member has settled). The
// caller did b.bg.Add(1).
func (b *Broker) rebalanceLoop() {
	defer b.bg.Done()
	t := time.NewTicker(b.cfg.RebalanceInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-b.cfg.Cluster.Changes():
		case <-t.C:
		}
		b.releaseNotOwned(func(t *topic, p int32) bool {
			_, self := b.ownerOf(t.cfg.OwnerKey(p))
			return !self
		})
	}
}

// releaseNotOwned releases the open partitions that match, a few at a
// time, and returns how many it released.
func (b *Broker) releaseNotOwned(match func(t *topic, p int32) bool) int {
	b.releasing <- struct{}{} // one pass at a time: Release waits for the loop's
	defer func() { <-b.releasing }()
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, 4)
		mu  sync.Mutex
		n   int
	)
	for _, t := range b.topicList() {
		t.waitOpens()
		t.mu.Lock()
		var take []int32
		for p := range t.parts {
			if match(t, p) {
				take = append(take, p)
			}
		}
		t.mu.Unlock()
		for _, p := range take {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if b.release(t, p) {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return n
}

// release hands partition p of t off (ingest.Partition.Release). While it
// seals, the partition counts as being opened, so a write here waits for
// the release to end (and is then redirected, or reopens it if the
// proposal came back), and two Partitions never share its directory.
func (b *Broker) release(t *topic, p int32) bool {
	t.mu.Lock()
	part, ok := t.parts[p]
	if !ok || t.deleted || t.closing != nil {
		t.mu.Unlock()
		return false
	}
	done := make(chan struct{})
	delete(t.parts, p)
	t.opening[p] = done
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	start := time.Now()
	err := part.log.Release(ctx)
	cancel()
	t.mu.Lock()
	delete(t.opening, p)
	close(done)
	t.mu.Unlock()
	if err != nil {
		b.cfg.Logger.Warn("partition released without a clean handoff: its next owner fences this incarnation and recovers from the WAL", "topic", t.cfg.Name, "partition", p, "err", err)
		return true
	}
	b.cfg.Logger.Info("partition handed off", "topic", t.cfg.Name, "partition", p, "took", time.Since(start).Round(time.Millisecond))
	return true
}

// Release hands off every open partition (a graceful leave: call it after
// the broker left the cluster's proposals, before Close), after the
// rebalance pass under way, if any. It returns how many partitions it
// released itself.
func (b *Broker) Release() int {
	return b.releaseNotOwned(func(*topic, int32) bool { return true })
}

// OpenPartitions is how many partitions this broker has open for writes.
func (b *Broker) OpenPartitions() int {
	n := 0
	for _, t := range b.topicList() {
		t.mu.Lock()
		n += len(t.parts)
		t.mu.Unlock()
	}
	return n
}
