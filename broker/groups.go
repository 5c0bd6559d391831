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
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/tier"
)

// Consumer groups (log semantics). The broker is the coordinator of the
// groups it is asked about: membership and generations live in memory,
// committed offsets live in the bucket (groups/<name>/state.json, written by
// compare-and-swap) so a restarted broker, or a fresh one on the same
// bucket, sees them. Assignment is range assignment over member IDs sorted
// lexically, computed by the broker (see docs/groups.md).

const defaultSession = 10 * time.Second

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
	offsets    map[int32]int64 // committed: next offset to consume
	etag       string          // of the state object; "" when not stored yet
}

type groupState struct {
	Topic   string          `json:"topic"`
	Offsets map[int32]int64 `json:"offsets"`
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
	return st, nil
}

var groupName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

func groupKey(name string) string { return "groups/" + name + "/state.json" }

// loadGroup returns the group, reading its committed offsets from the
// bucket the first time. Caller holds b.gmu.
func (b *Broker) loadGroup(ctx context.Context, name string) (*group, error) {
	if !groupName.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid group name %q: use 1-200 characters from a-z A-Z 0-9 . _ -", name)
	}
	if g, ok := b.groups[name]; ok {
		return g, nil
	}
	g := &group{name: name, members: map[string]*member{}, offsets: map[int32]int64{}}
	rc, info, err := b.cfg.Store.Get(ctx, groupKey(name))
	switch {
	case errors.Is(err, tier.ErrNotFound):
	case err != nil:
		return nil, statusOf(err)
	default:
		data, err := io.ReadAll(io.LimitReader(rc, 16<<20))
		rc.Close()
		var st groupState
		if err == nil {
			st, err = decodeGroupState(data)
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "group %q: stored state is unreadable: %v", name, err)
		}
		g.topic, g.etag = st.Topic, info.ETag
		if st.Offsets != nil {
			g.offsets = st.Offsets
		}
	}
	b.groups[name] = g
	return g, nil
}

// save writes the group's committed offsets by CAS. Caller holds b.gmu.
func (b *Broker) saveGroup(ctx context.Context, g *group, offsets map[int32]int64) error {
	data, _ := json.Marshal(groupState{Topic: g.topic, Offsets: offsets})
	var (
		info tier.ObjectInfo
		err  error
	)
	if g.etag == "" {
		info, err = b.cfg.Store.PutIfAbsent(ctx, groupKey(g.name), bytes.NewReader(data), int64(len(data)))
	} else {
		info, err = b.cfg.Store.PutIfMatch(ctx, groupKey(g.name), g.etag, bytes.NewReader(data), int64(len(data)))
	}
	if errors.Is(err, tier.ErrPreconditionFailed) {
		delete(b.groups, g.name) // reload on the next call
		return status.Errorf(codes.Aborted, "group %q: its offsets were changed by another broker; retry", g.name)
	}
	if err != nil {
		return statusOf(err)
	}
	g.etag, g.offsets = info.ETag, offsets
	return nil
}

// expire removes members whose session ran out and rebalances if any did.
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
	g, err := b.loadGroup(ctx, req.Group)
	if err != nil {
		return nil, err
	}
	if g.topic != "" && g.topic != req.Topic {
		return nil, status.Errorf(codes.InvalidArgument, "group %q consumes topic %q; a group reads one topic: use another group name for %q", g.name, g.topic, req.Topic)
	}
	g.topic = req.Topic
	timeout := time.Duration(req.SessionTimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultSession
	}
	id := make([]byte, 6)
	rand.Read(id)
	m := &member{id: req.Group + "-" + hex.EncodeToString(id), timeout: timeout, lastSeen: time.Now()}
	b.expire(g, time.Now())
	g.members[m.id] = m
	b.rebalance(g)
	b.cfg.Logger.Info("group member joined", "group", g.name, "member", m.id, "generation", g.generation)
	return assignment(g, m), nil
}

func (b *Broker) memberOf(ctx context.Context, groupName, id string) (*group, *member, error) {
	g, err := b.loadGroup(ctx, groupName)
	if err != nil {
		return nil, nil, err
	}
	b.expire(g, time.Now())
	m, ok := g.members[id]
	if !ok {
		return nil, nil, status.Errorf(codes.NotFound, "member %q is not in group %q (its session expired or it left); join again", id, groupName)
	}
	return g, m, nil
}

// Heartbeat implements the API.
func (b *Broker) Heartbeat(ctx context.Context, req *stratapb.HeartbeatRequest) (*stratapb.GroupAssignment, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.memberOf(ctx, req.Group, req.MemberId)
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
	g, _, err := b.memberOf(ctx, req.Group, req.MemberId)
	if err != nil {
		return nil, err
	}
	delete(g.members, req.MemberId)
	b.rebalance(g)
	return &stratapb.LeaveGroupResponse{}, nil
}

// checkAssigned rejects a group member's request from a stale generation or
// for a partition that is not the member's.
func (b *Broker) checkAssigned(ctx context.Context, groupName, id string, generation int64, p int32) error {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.memberOf(ctx, groupName, id)
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

// CommitOffsets implements the API.
func (b *Broker) CommitOffsets(ctx context.Context, req *stratapb.CommitOffsetsRequest) (*stratapb.CommitOffsetsResponse, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, m, err := b.memberOf(ctx, req.Group, req.MemberId)
	if err != nil {
		return nil, err
	}
	if req.Generation != g.generation {
		return nil, status.Errorf(codes.FailedPrecondition, "commit from stale generation %d (group %q is at %d): heartbeat to get the new assignment", req.Generation, g.name, g.generation)
	}
	owned := map[int32]bool{}
	for _, p := range m.partitions {
		owned[p] = true
	}
	next := make(map[int32]int64, len(g.offsets)+len(req.Offsets))
	for p, o := range g.offsets {
		next[p] = o
	}
	for p, o := range req.Offsets {
		if !owned[p] {
			return nil, status.Errorf(codes.FailedPrecondition, "partition %d is not assigned to member %q in generation %d", p, m.id, g.generation)
		}
		if o < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "negative offset %d for partition %d", o, p)
		}
		next[p] = o
	}
	m.lastSeen = time.Now()
	if err := b.saveGroup(ctx, g, next); err != nil {
		return nil, err
	}
	return &stratapb.CommitOffsetsResponse{}, nil
}

// FetchCommitted implements the API.
func (b *Broker) FetchCommitted(ctx context.Context, req *stratapb.FetchCommittedRequest) (*stratapb.FetchCommittedResponse, error) {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, err := b.loadGroup(ctx, req.Group)
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
	err := b.cfg.Store.List(ctx, "groups/", func(o tier.ObjectInfo) error {
		if name, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, "groups/"), "/state.json"); ok {
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

// DescribeGroup implements the API, with lag per partition.
func (b *Broker) DescribeGroup(ctx context.Context, req *stratapb.DescribeGroupRequest) (*stratapb.DescribeGroupResponse, error) {
	b.gmu.Lock()
	g, err := b.loadGroup(ctx, req.Group)
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
		v, err := b.view(ctx, t, p)
		if err != nil {
			return nil, err
		}
		logStart, hwm, err := v.bounds(ctx)
		if err != nil {
			return nil, statusOf(err)
		}
		committed, ok := offsets[p]
		from := committed
		if !ok {
			committed, from = -1, logStart
		}
		from = max(from, logStart)
		lag := &stratapb.PartitionLag{Partition: p, Committed: committed, HighWatermark: hwm, LagRecords: max(hwm-from, 0)}
		if lag.LagRecords > 0 {
			if res, err := v.reader.Read(ctx, from, 1); err == nil && len(res.Records) > 0 {
				lag.LagSeconds = max(time.Since(time.UnixMilli(res.Records[0].Timestamp)).Seconds(), 0)
			}
		}
		out.Lag = append(out.Lag, lag)
	}
	return out, nil
}

// ResetOffsets implements the API. The group must have no live members.
func (b *Broker) ResetOffsets(ctx context.Context, req *stratapb.ResetOffsetsRequest) (*stratapb.ResetOffsetsResponse, error) {
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	offsets := map[int32]int64{}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		v, err := b.view(ctx, t, p)
		if err != nil {
			return nil, err
		}
		off, err := b.resolveStart(ctx, v, req.GetEarliest(), req.GetLatest(), req.To == nil, req.GetTimestampMs(), req.GetOffset())
		if err != nil {
			return nil, err
		}
		offsets[p] = off
	}
	b.gmu.Lock()
	defer b.gmu.Unlock()
	g, err := b.loadGroup(ctx, req.Group)
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
	if err := b.saveGroup(ctx, g, offsets); err != nil {
		return nil, err
	}
	return &stratapb.ResetOffsetsResponse{Offsets: offsets}, nil
}
