package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// Consumer groups (log semantics). The broker is the coordinator of the
// groups it is asked about: membership and generations live in memory,
// committed offsets live in the bucket (groups/<name>/state.json, written by
// compare-and-swap) so a restarted broker, or a fresh one on the same
// bucket, sees them. Assignment is range assignment over member IDs sorted
// lexically, computed by the broker (see docs/groups.md).
//
// Invariants:
//   - b.groups holds the groups with members, at most maxGroups of them. A
//     group leaves memory when its last member leaves or expires (its
//     state stays in the bucket and is read again on the next join); read
//     paths (FetchCommitted, DescribeGroup, ResetOffsets, member checks)
//     never add a group. A join that would pass the bound is refused with
//     RESOURCE_EXHAUSTED.
//   - A member check (checkAssigned) reads memory only, never the bucket:
//     members exist only in memory, so a group not in memory has none.
//   - Every stored state carries the random update ID of the write that
//     stored it. A failed compare-and-swap is settled by reading the state
//     back: our own write (also one whose answer was lost earlier) is
//     adopted; another broker's write is adopted as the group's offsets and
//     the commit is refused with ABORTED (retry). Members are never dropped
//     because of a store error.
//   - Committed offsets are never negative nor past the partition's high
//     watermark; offsets set by ResetOffsets lie in [log start, high
//     watermark]. Bounds are read without opening (claiming) a partition
//     (bounds.go).

const defaultSession = 10 * time.Second

// DefaultMaxGroups is the default bound on the consumer groups with members
// that one broker coordinates at once (each costs its members, assignment
// and committed offsets in memory).
const DefaultMaxGroups = 10000

// maxGroups bounds b.groups.
func (b *Broker) maxGroups() int { return b.cfg.MaxGroups }

// maxUnresolved bounds how many writes of unknown outcome a group
// remembers. Forgetting one is safe: if it applied, it is then taken for
// another broker's write, and the commit that found it is refused with
// ABORTED instead of succeeding.
const maxUnresolved = 16

// readBackTimeout bounds the read that settles a write of unknown outcome.
const readBackTimeout = 10 * time.Second

type member struct {
	id         string
	timeout    time.Duration
	lastSeen   time.Time
	partitions []int32
}

type group struct {
	name       string
	topic      string
	generation int64
	members    map[string]*member
	offsets    map[int32]int64 // committed, as last stored or read: next offset to consume
	etag       string          // of the state object as last stored or read; "" when not stored yet
	// unresolved are the update IDs of this broker's writes whose outcome
	// is unknown (the answer was lost and reading back failed). All were
	// conditional on etag, so at most one of them applied.
	unresolved []string
}

type groupState struct {
	Topic   string          `json:"topic"`
	Offsets map[int32]int64 `json:"offsets"`
	// UpdateID is random per write: it recognizes our own write after its
	// answer was lost. Empty in states written before it existed.
	UpdateID string `json:"update_id,omitempty"`
}

// decodeGroupState parses a group's stored state: committed offsets are
// never negative and name partitions >= 0.
func decodeGroupState(data []byte) (groupState, error) {
	var st groupState
	if err := json.Unmarshal(data, &st); err != nil {
		return groupState{}, err
	}
	for p, off := range st.Offsets {
		if p < 0 || off < 0 {
			return groupState{}, fmt.Errorf("committed offset %d for partition %d", off, p)
		}
	}
	if st.Offsets == nil {
		st.Offsets = map[int32]int64{}
	}
	return st, nil
}

var groupName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

func newUpdateID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func validGroupName(name string) error {
	if !groupName.MatchString(name) {
		return status.Errorf(codes.InvalidArgument, "invalid group name %q: use 1-200 characters from a-z A-Z 0-9 . _ -", name)
	}
	return nil
}

// readGroupState reads a group's stored state; found is false when none is
// stored.
func (b *Broker) readGroupState(ctx context.Context, name string) (st groupState, etag string, found bool, err error) {
	rc, info, err := b.cfg.Store.Get(ctx, meta.GroupKey(name))
	if errors.Is(err, tier.ErrNotFound) {
		return groupState{}, "", false, nil
	}
	if err != nil {
		return groupState{}, "", false, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	rc.Close()
	if err != nil {
		return groupState{}, "", false, err
	}
	st, err = decodeGroupState(data)
	if err != nil {
		return groupState{}, "", false, status.Errorf(codes.Internal, "group %q: stored state %s is unreadable: %v; restore or delete it", name, meta.GroupKey(name), err)
	}
	return st, info.ETag, true, nil
}

// readGroup returns the group in memory, or else one read from the bucket
// that is not kept in memory (see admit). Caller holds b.gmu.
func (b *Broker) readGroup(ctx context.Context, name string) (*group, error) {
	if err := validGroupName(name); err != nil {
		return nil, err
	}
	if g, ok := b.groups[name]; ok {
		return g, nil
	}
	g := &group{name: name, members: map[string]*member{}, offsets: map[int32]int64{}}
	st, etag, found, err := b.readGroupState(ctx, name)
	if err != nil {
		return nil, statusOf(err)
	}
	if found {
		g.topic, g.etag, g.offsets = st.Topic, etag, st.Offsets
	}
	return g, nil
}

// admit keeps g in memory, within the bound: when the bound is reached,
// sessions are expired first (which lets empty groups go). Caller holds
// b.gmu.
func (b *Broker) admit(g *group, now time.Time) error {
	if b.groups[g.name] == g {
		return nil
	}
	if len(b.groups) >= b.maxGroups() {
		for _, o := range b.groups {
			b.expire(o, now)
		}
	}
	if n := len(b.groups); n >= b.maxGroups() {
		return status.Errorf(codes.ResourceExhausted, "group %q: this broker already coordinates %d consumer groups with live members, its limit of %d; the member was not added and nothing was stored: stop the consumers of unused groups (or let their sessions expire) and join again, or coordinate the group on another broker", g.name, n, b.maxGroups())
	}
	b.groups[g.name] = g
	return nil
}

// putGroupState writes data conditionally on the state g was read at.
func (b *Broker) putGroupState(ctx context.Context, g *group, data []byte) (tier.ObjectInfo, error) {
	if g.etag == "" {
		return b.cfg.Store.PutIfAbsent(ctx, meta.GroupKey(g.name), bytes.NewReader(data), int64(len(data)))
	}
	return b.cfg.Store.PutIfMatch(ctx, meta.GroupKey(g.name), g.etag, bytes.NewReader(data), int64(len(data)))
}

// saveGroup stores the committed offsets apply makes of the stored ones,
// by compare-and-swap. apply must not modify its argument. A write whose
// answer was lost, or whose condition failed, is settled by reading the
// state back (see the invariants above); the group's members are never
// touched. Caller holds b.gmu.
func (b *Broker) saveGroup(ctx context.Context, g *group, apply func(stored map[int32]int64) map[int32]int64) error {
	for attempt := 0; ; attempt++ {
		offsets := apply(g.offsets)
		st := groupState{Topic: g.topic, Offsets: offsets, UpdateID: newUpdateID()}
		data, _ := json.Marshal(st)
		info, err := b.putGroupState(ctx, g, data)
		if err == nil {
			g.etag, g.offsets, g.unresolved = info.ETag, offsets, nil
			return nil
		}
		lost := tier.IsRetryable(err) || ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		if !lost && !errors.Is(err, tier.ErrPreconditionFailed) {
			return statusOf(err) // a final answer: the write did not apply
		}
		if lost {
			g.unresolved = append(g.unresolved, st.UpdateID)
			if len(g.unresolved) > maxUnresolved {
				g.unresolved = g.unresolved[len(g.unresolved)-maxUnresolved:]
			}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
		cur, etag, found, rerr := b.readGroupState(rctx, g.name)
		cancel()
		switch {
		case rerr != nil && lost:
			return status.Errorf(codes.Unavailable, "group %q: storing the committed offsets failed (%v) and reading them back failed too (%v): the commit may or may not be stored; retry it (this broker recognizes its own earlier write)", g.name, err, rerr)
		case rerr != nil:
			return status.Errorf(codes.Unavailable, "group %q: the stored offsets changed since this broker read them, and reading them back failed (%v); this commit was not stored: retry it", g.name, rerr)
		case found && cur.UpdateID == st.UpdateID:
			// This write applied; its answer was lost.
			g.etag, g.offsets, g.unresolved = etag, offsets, nil
			return nil
		case found && cur.UpdateID != "" && slices.Contains(g.unresolved, cur.UpdateID) && attempt == 0:
			// An earlier write of ours applied and its answer was lost:
			// adopt it and write this one on top of it.
			g.etag, g.offsets, g.unresolved = etag, cur.Offsets, nil
			continue
		case lost && (found && etag == g.etag || !found && g.etag == ""):
			return status.Errorf(codes.Unavailable, "group %q: storing the committed offsets failed (%v); reading back found them not stored: retry the commit", g.name, err)
		}
		// Another broker wrote the state: adopt what it stored, keep the
		// members, and let the client retry on top of it.
		g.etag, g.unresolved = etag, nil
		if !found {
			g.offsets = map[int32]int64{}
		} else if cur.Topic == g.topic {
			g.offsets = cur.Offsets
		}
		outcome := "this commit was not stored"
		if lost {
			outcome = fmt.Sprintf("the store's answer to this commit was lost (%v), so it may have been stored and then replaced", err)
		}
		return status.Errorf(codes.Aborted, "group %q: its committed offsets in the bucket were changed by another broker (another coordinator of the group, or an offset reset) since this broker read them; %s. The group's members are kept and this broker now has the stored offsets: retry the commit", g.name, outcome)
	}
}

// expire removes members whose session ran out and rebalances if any did.
// A group left without members leaves memory. Caller holds b.gmu.
func (b *Broker) expire(g *group, now time.Time) {
	changed := false
	for id, m := range g.members {
		if now.Sub(m.lastSeen) > m.timeout {
			delete(g.members, id)
			changed = true
			b.cfg.Logger.Info("group member expired", "group", g.name, "member", id)
		}
	}
	if changed {
		b.rebalance(g)
	}
	b.forgetIfEmpty(g)
}

// forgetIfEmpty drops g from memory when it has no members: its state is
// in the bucket. Caller holds b.gmu.
func (b *Broker) forgetIfEmpty(g *group) {
	if len(g.members) == 0 && b.groups[g.name] == g {
		delete(b.groups, g.name)
	}
}

// rebalance starts a new generation with a range assignment.
func (b *Broker) rebalance(g *group) {
	g.generation++
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	b.mu.Lock()
	t := b.topics[g.topic]
	b.mu.Unlock()
	n := 0
	if t != nil {
		n = int(t.cfg.Partitions)
	}
	next := 0
	for i, id := range ids {
		share := n / len(ids)
		if i < n%len(ids) {
			share++
		}
		m := g.members[id]
		m.partitions = m.partitions[:0]
		for p := next; p < next+share; p++ {
			m.partitions = append(m.partitions, int32(p))
		}
		next += share
	}
}

func assignment(g *group, m *member) *stratapb.GroupAssignment {
	return &stratapb.GroupAssignment{MemberId: m.id, Generation: g.generation, Partitions: append([]int32(nil), m.partitions...)}
}

// JoinGroup implements the API.
func (b *Broker) JoinGroup(ctx context.Context, req *stratapb.JoinGroupRequest) (*stratapb.GroupAssignment, error) {
	if _, err := b.loadTopic(ctx, req.Topic); err != nil {
		return nil, err
	}
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, err := b.readGroup(ctx, req.Group)
	if err != nil {
		return nil, err
	}
	if g.topic != "" && g.topic != req.Topic {
		return nil, status.Errorf(codes.InvalidArgument, "group %q consumes topic %q; a group reads one topic: use another group name for %q", g.name, g.topic, req.Topic)
	}
	now := time.Now()
	b.expire(g, now)
	if err := b.admit(g, now); err != nil {
		return nil, err
	}
	g.topic = req.Topic
	timeout := time.Duration(req.SessionTimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultSession
	}
	id := make([]byte, 6)
	rand.Read(id)
	m := &member{id: req.Group + "-" + hex.EncodeToString(id), timeout: timeout, lastSeen: now}
	g.members[m.id] = m
	b.rebalance(g)
	b.cfg.Logger.Info("group member joined", "group", g.name, "member", m.id, "generation", g.generation)
	return assignment(g, m), nil
}

// memberOf finds a live member, in memory only. Caller holds b.gmu.
func (b *Broker) memberOf(groupName, id string) (*group, *member, error) {
	g, ok := b.groups[groupName]
	if ok {
		b.expire(g, time.Now())
		if m, ok := g.members[id]; ok {
			return g, m, nil
		}
	}
	if err := validGroupName(groupName); err != nil {
		return nil, nil, err
	}
	return nil, nil, status.Errorf(codes.NotFound, "member %q is not in group %q (its session expired, it left, or the coordinating broker restarted); join again", id, groupName)
}

// Heartbeat implements the API.
func (b *Broker) Heartbeat(ctx context.Context, req *stratapb.HeartbeatRequest) (*stratapb.GroupAssignment, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.memberOf(req.Group, req.MemberId)
	if err != nil {
		return nil, err
	}
	m.lastSeen = time.Now()
	return assignment(g, m), nil
}

// LeaveGroup implements the API.
func (b *Broker) LeaveGroup(ctx context.Context, req *stratapb.LeaveGroupRequest) (*stratapb.LeaveGroupResponse, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, _, err := b.memberOf(req.Group, req.MemberId)
	if err != nil {
		return nil, err
	}
	delete(g.members, req.MemberId)
	b.rebalance(g)
	b.forgetIfEmpty(g)
	return &stratapb.LeaveGroupResponse{}, nil
}

// checkAssigned rejects a group member's request from a stale generation or
// for a partition that is not the member's. It reads memory only (no
// bucket round trip; ctx is unused), so a fetch stream can run it before
// every response (see checkFetch).
func (b *Broker) checkAssigned(_ context.Context, groupName, id string, generation int64, p int32) error {
	return b.assigned(groupName, id, generation, p)
}

// checkFetch is checkAssigned for a fetch that names a group member, and
// nil for one that does not. Memory only: cheap enough for every response.
func (b *Broker) checkFetch(req *stratapb.FetchRequest) error {
	if req.Group == "" {
		return nil
	}
	return b.assigned(req.Group, req.MemberId, req.Generation, req.Partition)
}

func (b *Broker) assigned(groupName, id string, generation int64, p int32) error {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.memberOf(groupName, id)
	if err != nil {
		return err
	}
	if generation != g.generation {
		return status.Errorf(codes.FailedPrecondition, "fetch from stale generation %d (group %q is at %d): heartbeat to get the new assignment", generation, g.name, g.generation)
	}
	for _, q := range m.partitions {
		if q == p {
			return nil
		}
	}
	return status.Errorf(codes.FailedPrecondition, "partition %d is not assigned to member %q in generation %d", p, m.id, g.generation)
}

// commitTarget checks that req comes from a live member in the current
// generation and names only its partitions and offsets >= 0. Caller holds
// b.gmu.
func (b *Broker) commitTarget(req *stratapb.CommitOffsetsRequest) (*group, *member, error) {
	g, m, err := b.memberOf(req.Group, req.MemberId)
	if err != nil {
		return nil, nil, err
	}
	if req.Generation != g.generation {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "commit from stale generation %d (group %q is at %d): heartbeat to get the new assignment", req.Generation, g.name, g.generation)
	}
	for p, o := range req.Offsets {
		if !slices.Contains(m.partitions, p) {
			return nil, nil, status.Errorf(codes.FailedPrecondition, "partition %d is not assigned to member %q in generation %d", p, m.id, g.generation)
		}
		if o < 0 {
			return nil, nil, status.Errorf(codes.InvalidArgument, "negative offset %d for partition %d: commit the offset after the last record processed; nothing was stored", o, p)
		}
	}
	return g, m, nil
}

// CommitOffsets implements the API.
func (b *Broker) CommitOffsets(ctx context.Context, req *stratapb.CommitOffsetsRequest) (*stratapb.CommitOffsetsResponse, error) {
	b.gmu.Lock()
	g, _, err := b.commitTarget(req)
	var topicName string
	if err == nil {
		topicName = g.topic
	}
	b.gmu.Unlock()
	if err != nil {
		return nil, err
	}
	// Bounds are read outside b.gmu (they may need the bucket); high
	// watermarks only grow, so the check stays true.
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return nil, err
	}
	for p, o := range req.Offsets {
		_, hwm, err := b.partitionBounds(ctx, t, p)
		if err != nil {
			return nil, err
		}
		if o > hwm {
			return nil, status.Errorf(codes.OutOfRange, "commit offset %d for partition %d is past its high watermark %d: commit the offset after the last record processed (at most %d); nothing was stored", o, p, hwm, hwm)
		}
	}
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.commitTarget(req) // again: the group may have changed meanwhile
	if err != nil {
		return nil, err
	}
	m.lastSeen = time.Now()
	err = b.saveGroup(ctx, g, func(stored map[int32]int64) map[int32]int64 {
		next := make(map[int32]int64, len(stored)+len(req.Offsets))
		for p, o := range stored {
			next[p] = o
		}
		for p, o := range req.Offsets {
			next[p] = o
		}
		return next
	})
	if err != nil {
		return nil, err
	}
	return &stratapb.CommitOffsetsResponse{}, nil
}

// FetchCommitted implements the API.
func (b *Broker) FetchCommitted(ctx context.Context, req *stratapb.FetchCommittedRequest) (*stratapb.FetchCommittedResponse, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, err := b.readGroup(ctx, req.Group)
	if err != nil {
		return nil, err
	}
	out := &stratapb.FetchCommittedResponse{Topic: g.topic, Offsets: map[int32]int64{}}
	for p, o := range g.offsets {
		out.Offsets[p] = o
	}
	return out, nil
}

// ListGroups implements the API: every group with state in the bucket.
func (b *Broker) ListGroups(ctx context.Context, _ *stratapb.ListGroupsRequest) (*stratapb.ListGroupsResponse, error) {
	seen := map[string]bool{}
	err := b.cfg.Store.List(ctx, meta.GroupsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.GroupNameOfKey(o.Key); ok {
			seen[name] = true
		}
		return nil
	})
	if err != nil {
		return nil, statusOf(err)
	}
	b.gmu.Lock()
	for name, g := range b.groups {
		if len(g.members) > 0 {
			seen[name] = true
		}
	}
	b.gmu.Unlock()
	out := &stratapb.ListGroupsResponse{}
	for name := range seen {
		out.Groups = append(out.Groups, name)
	}
	sort.Strings(out.Groups)
	return out, nil
}

// DescribeGroup implements the API, with lag per partition. It opens no
// partition.
func (b *Broker) DescribeGroup(ctx context.Context, req *stratapb.DescribeGroupRequest) (*stratapb.DescribeGroupResponse, error) {
	b.gmu.Lock()
	g, err := b.readGroup(ctx, req.Group)
	if err != nil {
		b.gmu.Unlock()
		return nil, err
	}
	b.expire(g, time.Now())
	out := &stratapb.DescribeGroupResponse{Group: g.name, Topic: g.topic, Generation: g.generation}
	for _, m := range g.members {
		out.Members = append(out.Members, &stratapb.GroupMember{MemberId: m.id, Partitions: append([]int32(nil), m.partitions...)})
	}
	offsets := make(map[int32]int64, len(g.offsets))
	for p, o := range g.offsets {
		offsets[p] = o
	}
	topicName := g.topic
	b.gmu.Unlock()
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].MemberId < out.Members[j].MemberId })
	if topicName == "" {
		return nil, status.Errorf(codes.NotFound, "group %q does not exist", req.Group)
	}
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return nil, err
	}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		logStart, hwm, err := b.partitionBounds(ctx, t, p)
		if err != nil {
			return nil, err
		}
		committed, ok := offsets[p]
		from := committed
		if !ok {
			committed, from = -1, logStart
		}
		from = max(from, logStart)
		lag := &stratapb.PartitionLag{Partition: p, Committed: committed, HighWatermark: hwm, LagRecords: max(hwm-from, 0)}
		if lag.LagRecords > 0 {
			if res, err := b.partitionReader(t, p).Read(ctx, from, 1); err == nil && len(res.Records) > 0 {
				lag.LagSeconds = max(time.Since(time.UnixMilli(res.Records[0].Timestamp)).Seconds(), 0)
			}
		}
		out.Lag = append(out.Lag, lag)
	}
	return out, nil
}

// resetOffset resolves a ResetOffsets target for partition p, within the
// partition's [log start, high watermark]. It opens no partition.
func (b *Broker) resetOffset(ctx context.Context, t *topic, p int32, req *stratapb.ResetOffsetsRequest) (int64, error) {
	logStart, hwm, err := b.partitionBounds(ctx, t, p)
	if err != nil {
		return 0, err
	}
	switch to := req.To.(type) {
	case nil, *stratapb.ResetOffsetsRequest_Earliest:
		return logStart, nil
	case *stratapb.ResetOffsetsRequest_Latest:
		return hwm, nil
	case *stratapb.ResetOffsetsRequest_TimestampMs:
		if logStart == hwm {
			return hwm, nil
		}
		off, err := b.partitionReader(t, p).OffsetForTime(ctx, to.TimestampMs)
		if err != nil {
			return 0, statusOf(err)
		}
		return min(max(off, logStart), hwm), nil
	case *stratapb.ResetOffsetsRequest_Offset:
		o := to.Offset
		switch {
		case o < 0:
			return 0, status.Errorf(codes.InvalidArgument, "reset offset %d is negative; partition %d of topic %q holds offsets %d up to its high watermark %d: reset to an offset in [%d, %d], or to earliest or latest; nothing was stored", o, p, t.cfg.Name, logStart, hwm, logStart, hwm)
		case o < logStart || o > hwm:
			return 0, status.Errorf(codes.OutOfRange, "reset offset %d is outside partition %d of topic %q, which holds offsets %d (log start) up to its high watermark %d: reset to an offset in [%d, %d], or to earliest or latest; nothing was stored", o, p, t.cfg.Name, logStart, hwm, logStart, hwm)
		}
		return o, nil
	default:
		return 0, status.Errorf(codes.InvalidArgument, "unknown reset target %T: use earliest, latest, a timestamp or an offset", to)
	}
}

// ResetOffsets implements the API. The group must have no live members.
// It opens no partition.
func (b *Broker) ResetOffsets(ctx context.Context, req *stratapb.ResetOffsetsRequest) (*stratapb.ResetOffsetsResponse, error) {
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	if err := validGroupName(req.Group); err != nil {
		return nil, err
	}
	offsets := map[int32]int64{}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		off, err := b.resetOffset(ctx, t, p, req)
		if err != nil {
			return nil, err
		}
		offsets[p] = off
	}
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, err := b.readGroup(ctx, req.Group)
	if err != nil {
		return nil, err
	}
	b.expire(g, time.Now())
	if len(g.members) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "group %q has %d live members; stop its consumers before resetting offsets", g.name, len(g.members))
	}
	if g.topic != "" && g.topic != req.Topic {
		return nil, status.Errorf(codes.InvalidArgument, "group %q consumes topic %q, not %q", g.name, g.topic, req.Topic)
	}
	g.topic = req.Topic
	if err := b.saveGroup(ctx, g, func(map[int32]int64) map[int32]int64 { return offsets }); err != nil {
		return nil, err
	}
	return &stratapb.ResetOffsetsResponse{Offsets: offsets}, nil
}
