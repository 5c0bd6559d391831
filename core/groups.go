package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

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
//   - groups.m holds the groups with members, at most MaxGroups of them. A
//     group leaves memory when its last member leaves or expires (its
//     state stays in the bucket and is read again on the next join); read
//     paths (FetchCommitted, DescribeGroup, ResetOffsets, member checks)
//     never add a group. A join that would pass the bound is refused with
//     ErrResourceExhausted.
//   - A member check (checkFetch) reads memory only, never the bucket:
//     members exist only in memory, so a group not in memory has none.
//   - Every stored state carries the random update ID of the write that
//     stored it. A failed compare-and-swap is settled by reading the state
//     back: our own write (also one whose answer was lost earlier) is
//     adopted; another broker's write is adopted as the group's offsets and
//     the commit is refused with ErrConflict (retry). Members are never
//     dropped because of a store error.
//   - One coordinator at a time, fenced by the bucket: a broker takes part
//     in a group only when the cluster proposes it as coordinator
//     (GroupKey; ErrNotOwner otherwise), and before its first member joins
//     it stores the state under its own coordID. A broker whose commit
//     finds the state stored under another coordID was taken over: it
//     drops the group's members and stores nothing, so a stale
//     coordinator's commits never land after a takeover.
//   - Committed offsets are never negative nor past the partition's high
//     watermark; offsets set by ResetOffsets lie in [log start, high
//     watermark]. Bounds are read without opening (claiming) a partition.
//   - No lock is held across I/O but a group's write lock: groups.mu
//     guards memory only; the bucket is read and written with only the
//     write lock of the group's name held (a stripe of writeLocks), which
//     serializes the read-modify-CAS of one group's state on this broker
//     and never blocks heartbeats, fetches or other groups. A commit is
//     checked against the member and generation under mu right before its
//     write; a rebalance during the write itself does not undo it (the
//     committed offsets were the member's to commit when it sent them).

const defaultSession = 10 * time.Second

// DefaultMaxGroups is the default bound on the consumer groups with members
// that one broker coordinates at once (each costs its members, assignment
// and committed offsets in memory).
const DefaultMaxGroups = 10000

// maxUnresolved bounds how many writes of unknown outcome a group
// remembers. Forgetting one is safe: if it applied, it is then taken for
// another broker's write, and the commit that found it is refused with
// ErrConflict instead of succeeding.
const maxUnresolved = 16

// groups is the broker's consumer-group coordinator state.
type groups struct {
	b *Broker

	mu sync.Mutex        // guards m and every group's fields; never held across I/O
	m  map[string]*group // groups with members

	// writeLocks: a group's state is read-modified-written in the bucket
	// with writeLocks[stripe(name)] held (taken before mu, never under it).
	writeLocks [64]sync.Mutex
}

func (gs *groups) init(b *Broker) {
	gs.b, gs.m = b, map[string]*group{}
}

// writeLock returns the write lock of group name.
func (gs *groups) writeLock(name string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(name))
	return &gs.writeLocks[h.Sum32()%uint32(len(gs.writeLocks))]
}

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
	// coordinator is the coordinator id (Broker.coordID) in the state as
	// last stored or read: this broker's once it coordinates the group.
	coordinator string
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
	// Coordinator names the broker process that wrote the state (its
	// coordID). A broker taking over a group's coordination stores the
	// state under its own name first, so a stale coordinator's next
	// commit finds another name and stops (see save).
	Coordinator string `json:"coordinator,omitempty"`
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

func validGroupName(name string) error {
	if !groupName.MatchString(name) || name == "." || name == ".." {
		return errorf(ErrInvalidArgument, "invalid group name %q: use 1-200 characters from a-z A-Z 0-9 . _ - (not . or ..)", name)
	}
	return nil
}

// cas is the read-modify-CAS of group states (one group's at a time, under
// its write lock). Retries are the caller's: a commit is answered promptly.
func (gs *groups) cas() meta.CAS {
	return meta.CAS{Store: gs.b.cfg.Store, Retry: tier.Backoff{Attempts: 1}}
}

// decodeStored decodes a group's stored version; found is false when none
// is stored.
func decodeStored(name string, v meta.Version) (st groupState, found bool, err error) {
	if !v.Exists() {
		return groupState{}, false, nil
	}
	st, err = decodeGroupState(v.Data)
	if err != nil {
		return groupState{}, false, errorf(ErrInternal, "group %q: stored state %s is unreadable: %v; restore or delete it", name, meta.GroupKey(name), err)
	}
	return st, true, nil
}

// readGroupState reads a group's stored state; found is false when none is
// stored.
func (gs *groups) readGroupState(ctx context.Context, name string) (st groupState, etag string, found bool, err error) {
	v, err := gs.cas().Read(ctx, meta.GroupKey(name))
	if err != nil {
		return groupState{}, "", false, err
	}
	st, found, err = decodeStored(name, v)
	return st, v.ETag, found, err
}

// lookup returns the group in memory, or else one read from the bucket
// that is not kept in memory (see admit). The bucket is read without mu.
func (gs *groups) lookup(ctx context.Context, name string) (*group, error) {
	if err := validGroupName(name); err != nil {
		return nil, err
	}
	gs.mu.Lock()
	g, ok := gs.m[name]
	gs.mu.Unlock()
	if ok {
		return g, nil
	}
	g = &group{name: name, members: map[string]*member{}, offsets: map[int32]int64{}}
	st, etag, found, err := gs.readGroupState(ctx, name)
	if err != nil {
		return nil, classify(err)
	}
	if found {
		g.topic, g.etag, g.offsets, g.coordinator = st.Topic, etag, st.Offsets, st.Coordinator
	}
	return g, nil
}

// admit keeps g in memory, within the bound: when the bound is reached,
// sessions are expired first (which lets empty groups go). Caller holds
// mu.
func (gs *groups) admit(g *group, now time.Time) error {
	if gs.m[g.name] == g {
		return nil
	}
	limit := gs.b.cfg.MaxGroups
	if len(gs.m) >= limit {
		for _, o := range gs.m {
			gs.expire(o, now)
		}
	}
	if n := len(gs.m); n >= limit {
		return errorf(ErrResourceExhausted, "group %q: this broker already coordinates %d consumer groups with live members, its limit of %d; the member was not added and nothing was stored: stop the consumers of unused groups (or let their sessions expire) and join again, or coordinate the group on another broker", g.name, n, limit)
	}
	gs.m[g.name] = g
	return nil
}

// save stores the committed offsets apply makes of the stored ones, by
// compare-and-swap (meta.CAS). apply must not modify its argument. A write
// whose answer was lost, or whose condition failed, is settled by reading
// the state back (see the invariants above). With claim (joins and
// commits: coordination) the state is stored under this broker's coordID,
// and a state stored under another's means a takeover: this broker drops
// the group's members and refuses the write (ErrNotOwner); without claim
// (an offset reset) the state keeps its coordinator and the members are
// never touched. Caller holds g's write lock, not mu: the store calls run
// without mu, and g's stored fields (topic, offsets, etag, unresolved),
// which only write-lock holders change, are read and set under mu.
func (gs *groups) save(ctx context.Context, g *group, claim bool, apply func(stored map[int32]int64) map[int32]int64) error {
	for attempt := 0; ; attempt++ {
		gs.mu.Lock()
		topic, etag0 := g.topic, g.etag
		coordinator := g.coordinator
		if claim {
			coordinator = gs.b.coordID
		}
		offsets := apply(g.offsets)
		unresolved := slices.Clone(g.unresolved)
		gs.mu.Unlock()
		st := groupState{Topic: topic, Offsets: offsets, UpdateID: meta.NewWriteID(), Coordinator: coordinator}
		data, _ := json.Marshal(st)
		etag, err := gs.cas().Swap(ctx, meta.GroupKey(g.name), etag0, data)
		if err == nil {
			gs.mu.Lock()
			g.etag, g.offsets, g.unresolved, g.coordinator = etag, offsets, nil, st.Coordinator
			gs.mu.Unlock()
			return nil
		}
		var cerr *meta.ConflictError
		if errors.Is(err, meta.ErrOutcomeUnknown) {
			gs.mu.Lock()
			g.unresolved = append(g.unresolved, st.UpdateID)
			if len(g.unresolved) > maxUnresolved {
				g.unresolved = g.unresolved[len(g.unresolved)-maxUnresolved:]
			}
			gs.mu.Unlock()
			return &Error{Kind: ErrUnavailable, Cause: err, Msg: fmt.Sprintf("group %q: %v: the commit may or may not be stored; retry it (this broker recognizes its own earlier write)", g.name, err)}
		}
		if !errors.As(err, &cerr) {
			return classify(fmt.Errorf("group %q: the committed offsets were not stored: %w", g.name, err))
		}
		cur, found, derr := decodeStored(g.name, cerr.Current)
		if derr != nil {
			return derr
		}
		if found && slices.Contains(unresolved, cur.UpdateID) && attempt == 0 {
			// An earlier write of ours applied and its answer was lost:
			// adopt it and write this one on top of it.
			gs.mu.Lock()
			g.etag, g.offsets, g.unresolved = cerr.Current.ETag, cur.Offsets, nil
			gs.mu.Unlock()
			continue
		}
		if claim && found && cur.Coordinator != "" && cur.Coordinator != gs.b.coordID {
			// Another broker took the group's coordination over: this
			// one is stale. Its members are dropped here; they rejoin at
			// the coordinator.
			gs.mu.Lock()
			for id := range g.members {
				delete(g.members, id)
			}
			gs.forgetIfEmpty(g)
			gs.mu.Unlock()
			gs.b.cfg.Logger.Warn("group coordination taken over by another broker; dropped its members here", "group", g.name, "coordinator", cur.Coordinator)
			return gs.b.notCoordinator(g.name, fmt.Sprintf("group %q is coordinated by another broker now (%s took it over in the bucket); this commit was not stored: the member must rejoin the group at its coordinator", g.name, cur.Coordinator))
		}
		// Another broker wrote the state: adopt what it stored, keep the
		// members, and let the client retry on top of it.
		gs.mu.Lock()
		g.etag, g.unresolved = cerr.Current.ETag, nil
		if !found {
			g.offsets = map[int32]int64{}
		} else if cur.Topic == g.topic {
			g.offsets = cur.Offsets
		}
		gs.mu.Unlock()
		outcome := "this commit was not stored"
		if cerr.Lost != nil {
			outcome = fmt.Sprintf("the store's answer to this commit was lost (%v), so it may have been stored and then replaced", cerr.Lost)
		}
		return errorf(ErrConflict, "group %q: its committed offsets in the bucket were changed by another broker (another coordinator of the group, or an offset reset) since this broker read them; %s. The group's members are kept and this broker now has the stored offsets: retry the commit", g.name, outcome)
	}
}

// expire removes members whose session ran out and rebalances if any did.
// A group left without members leaves memory. Caller holds mu.
func (gs *groups) expire(g *group, now time.Time) {
	changed := false
	for id, m := range g.members {
		if now.Sub(m.lastSeen) > m.timeout {
			delete(g.members, id)
			changed = true
			gs.b.cfg.Logger.Info("group member expired", "group", g.name, "member", id)
		}
	}
	if changed {
		gs.rebalance(g)
	}
	gs.forgetIfEmpty(g)
}

// forgetIfEmpty drops g from memory when it has no members: its state is
// in the bucket. Caller holds mu.
func (gs *groups) forgetIfEmpty(g *group) {
	if len(g.members) == 0 && gs.m[g.name] == g {
		delete(gs.m, g.name)
	}
}

// rebalance starts a new generation with a range assignment. Caller holds
// mu (and takes Broker.mu under it).
func (gs *groups) rebalance(g *group) {
	g.generation++
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	gs.b.mu.Lock()
	t := gs.b.topics[g.topic]
	gs.b.mu.Unlock()
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

// Assignment is a group member's share of its group's topic.
type Assignment struct {
	MemberID   string
	Generation int64
	Partitions []int32
}

func assignment(g *group, m *member) *Assignment {
	return &Assignment{MemberID: m.id, Generation: g.generation, Partitions: append([]int32(nil), m.partitions...)}
}

// JoinGroup adds a member to group (created on first join) reading
// topic, and rebalances. sessionTimeout <= 0 means 10s.
func (b *Broker) JoinGroup(ctx context.Context, groupName, topicName string, sessionTimeout time.Duration) (*Assignment, error) {
	if _, err := b.loadTopic(ctx, topicName); err != nil {
		return nil, err
	}
	gs := &b.groups
	if err := validGroupName(groupName); err != nil {
		return nil, err
	}
	if err := b.checkCoordinator(groupName); err != nil {
		return nil, err
	}
	wl := gs.writeLock(groupName)
	wl.Lock()
	defer wl.Unlock()
	g, err := gs.lookup(ctx, groupName)
	if err != nil {
		return nil, err
	}
	if err := gs.takeOver(ctx, g, topicName); err != nil {
		return nil, err
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if cur, ok := gs.m[groupName]; ok {
		g = cur // only joins add groups, and they hold the write lock: g is cur unless it was read from the bucket
	}
	if g.topic != "" && g.topic != topicName {
		return nil, errorf(ErrInvalidArgument, "group %q consumes topic %q; a group reads one topic: use another group name for %q", g.name, g.topic, topicName)
	}
	now := time.Now()
	gs.expire(g, now)
	if err := gs.admit(g, now); err != nil {
		return nil, err
	}
	g.topic = topicName
	if sessionTimeout <= 0 {
		sessionTimeout = defaultSession
	}
	id := make([]byte, 6)
	rand.Read(id)
	m := &member{id: groupName + "-" + hex.EncodeToString(id), timeout: sessionTimeout, lastSeen: now}
	g.members[m.id] = m
	gs.rebalance(g)
	b.cfg.Logger.Info("group member joined", "group", g.name, "member", m.id, "generation", g.generation)
	return assignment(g, m), nil
}

// memberOf finds a live member, in memory only. Caller holds mu.
func (gs *groups) memberOf(groupName, id string) (*group, *member, error) {
	g, ok := gs.m[groupName]
	if ok {
		gs.expire(g, time.Now())
		if m, ok := g.members[id]; ok {
			return g, m, nil
		}
	}
	if err := validGroupName(groupName); err != nil {
		return nil, nil, err
	}
	return nil, nil, errorf(ErrMemberNotFound, "member %q is not in group %q (its session expired, it left, or the coordinating broker restarted); join again", id, groupName)
}

// takeOver makes this broker the group's coordinator in the bucket before
// a member joins here: the state is stored under this broker's coordID,
// so the commits of a coordinator the group had before are refused from
// now on (save). A group already coordinated here is left as it is.
// Caller holds g's write lock.
func (gs *groups) takeOver(ctx context.Context, g *group, topic string) error {
	gs.mu.Lock()
	_, inMemory := gs.m[g.name]
	ours := g.coordinator == gs.b.coordID
	if g.topic != "" && g.topic != topic {
		gs.mu.Unlock()
		return nil // JoinGroup refuses it
	}
	gs.mu.Unlock()
	if inMemory || ours {
		return nil
	}
	if g.topic == "" {
		g.topic = topic
	}
	return gs.save(ctx, g, true, func(stored map[int32]int64) map[int32]int64 { return stored })
}

// checkCoordinator returns ErrNotOwner unless this broker is the proposed
// coordinator of the group.
func (b *Broker) checkCoordinator(group string) error {
	if _, self := b.ownerOf(GroupKey(group)); self {
		return nil
	}
	return b.notCoordinator(group, "")
}

// notCoordinator is ErrNotOwner for a group's coordination: it names the
// proposed coordinator when that is another broker; else (this broker is
// proposed but another took over in the bucket, as membership views
// converge) the error says to rejoin.
func (b *Broker) notCoordinator(group, msg string) error {
	o, self := b.ownerOf(GroupKey(group))
	if self {
		return &Error{Kind: ErrMemberNotFound, Msg: msg}
	}
	if msg == "" {
		msg = fmt.Sprintf("group %q is coordinated by broker %s at %s, not by this broker (%s); nothing was done: send the group's calls there", group, o.ID, o.Addr, b.self().ID)
	}
	return &Error{Kind: ErrNotOwner, Owner: &o, Msg: msg}
}

// Heartbeat keeps a member's session and returns its assignment.
func (b *Broker) Heartbeat(groupName, memberID string) (*Assignment, error) {
	if err := b.checkCoordinator(groupName); err != nil {
		return nil, err
	}
	gs := &b.groups
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, m, err := gs.memberOf(groupName, memberID)
	if err != nil {
		return nil, err
	}
	m.lastSeen = time.Now()
	return assignment(g, m), nil
}

// LeaveGroup removes a member and rebalances.
func (b *Broker) LeaveGroup(groupName, memberID string) error {
	if err := b.checkCoordinator(groupName); err != nil {
		return err
	}
	gs := &b.groups
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, _, err := gs.memberOf(groupName, memberID)
	if err != nil {
		return err
	}
	delete(g.members, memberID)
	gs.rebalance(g)
	gs.forgetIfEmpty(g)
	return nil
}

// checkFetch rejects a group member's fetch from a stale generation or for
// a partition that is not the member's, and accepts a fetch that names no
// group. Memory only: cheap enough for every result.
func (b *Broker) checkFetch(req *FetchRequest) error {
	if req.Group == "" {
		return nil
	}
	gs := &b.groups
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, m, err := gs.memberOf(req.Group, req.MemberID)
	if err != nil {
		return err
	}
	if req.Generation != g.generation {
		return errorf(ErrFailedPrecondition, "fetch from stale generation %d (group %q is at %d): heartbeat to get the new assignment", req.Generation, g.name, g.generation)
	}
	if slices.Contains(m.partitions, req.Partition) {
		return nil
	}
	return errorf(ErrFailedPrecondition, "partition %d is not assigned to member %q in generation %d", req.Partition, m.id, g.generation)
}

// commitTarget checks that a commit comes from a live member in the
// current generation and names only its partitions and offsets >= 0.
// Caller holds mu.
func (gs *groups) commitTarget(groupName, memberID string, generation int64, offsets map[int32]int64) (*group, *member, error) {
	g, m, err := gs.memberOf(groupName, memberID)
	if err != nil {
		return nil, nil, err
	}
	if generation != g.generation {
		return nil, nil, errorf(ErrFailedPrecondition, "commit from stale generation %d (group %q is at %d): heartbeat to get the new assignment", generation, g.name, g.generation)
	}
	for p, o := range offsets {
		if !slices.Contains(m.partitions, p) {
			return nil, nil, errorf(ErrFailedPrecondition, "partition %d is not assigned to member %q in generation %d", p, m.id, g.generation)
		}
		if o < 0 {
			return nil, nil, errorf(ErrInvalidArgument, "negative offset %d for partition %d: commit the offset after the last record processed; nothing was stored", o, p)
		}
	}
	return g, m, nil
}

// CommitOffsets stores a member's committed offsets (next offset to
// consume, per partition).
func (b *Broker) CommitOffsets(ctx context.Context, groupName, memberID string, generation int64, offsets map[int32]int64) error {
	if err := b.checkCoordinator(groupName); err != nil {
		return err
	}
	gs := &b.groups
	gs.mu.Lock()
	g, _, err := gs.commitTarget(groupName, memberID, generation, offsets)
	var topicName string
	if err == nil {
		topicName = g.topic
	}
	gs.mu.Unlock()
	if err != nil {
		return err
	}
	// Bounds are read without locks (they may need the bucket); high
	// watermarks only grow, so the check stays true.
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return err
	}
	for p, o := range offsets {
		_, hwm, err := b.partitionBounds(ctx, t, p)
		if err != nil {
			return classify(err)
		}
		if o > hwm {
			return errorf(ErrOutOfRange, "commit offset %d for partition %d is past its high watermark %d: commit the offset after the last record processed (at most %d); nothing was stored", o, p, hwm, hwm)
		}
	}
	wl := gs.writeLock(groupName)
	wl.Lock()
	defer wl.Unlock()
	gs.mu.Lock()
	g, m, err := gs.commitTarget(groupName, memberID, generation, offsets) // again: the group may have changed meanwhile
	if err == nil {
		m.lastSeen = time.Now()
	}
	gs.mu.Unlock()
	if err != nil {
		return err
	}
	return gs.save(ctx, g, true, func(stored map[int32]int64) map[int32]int64 {
		next := make(map[int32]int64, len(stored)+len(offsets))
		for p, o := range stored {
			next[p] = o
		}
		for p, o := range offsets {
			next[p] = o
		}
		return next
	})
}

// FetchCommitted returns a group's topic and committed offsets.
func (b *Broker) FetchCommitted(ctx context.Context, groupName string) (topic string, offsets map[int32]int64, err error) {
	gs := &b.groups
	g, err := gs.lookup(ctx, groupName)
	if err != nil {
		return "", nil, err
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return g.topic, maps(g.offsets), nil
}

func maps(m map[int32]int64) map[int32]int64 {
	out := make(map[int32]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ListGroups returns every group with state in the bucket or members
// here, by name.
func (b *Broker) ListGroups(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	err := b.cfg.Store.List(ctx, meta.GroupsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.GroupNameOfKey(o.Key); ok {
			seen[name] = true
		}
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	gs := &b.groups
	gs.mu.Lock()
	for name, g := range gs.m {
		if len(g.members) > 0 {
			seen[name] = true
		}
	}
	gs.mu.Unlock()
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// GroupMember is one member and its partitions.
type GroupMember struct {
	MemberID   string
	Partitions []int32
}

// PartitionLag is how far a group is behind in one partition.
type PartitionLag struct {
	Partition     int32
	Committed     int64 // -1: nothing committed
	HighWatermark int64
	LagRecords    int64
	LagSeconds    float64 // age of the first record not consumed
}

// GroupDescription is a group's members, generation and lag.
type GroupDescription struct {
	Group      string
	Topic      string
	Generation int64
	Members    []GroupMember // by member ID
	Lag        []PartitionLag
}

// DescribeGroup describes a group, with lag per partition. It opens no
// partition.
func (b *Broker) DescribeGroup(ctx context.Context, groupName string) (*GroupDescription, error) {
	gs := &b.groups
	g, err := gs.lookup(ctx, groupName)
	if err != nil {
		return nil, err
	}
	gs.mu.Lock()
	gs.expire(g, time.Now())
	out := &GroupDescription{Group: g.name, Topic: g.topic, Generation: g.generation}
	for _, m := range g.members {
		out.Members = append(out.Members, GroupMember{MemberID: m.id, Partitions: append([]int32(nil), m.partitions...)})
	}
	offsets := maps(g.offsets)
	topicName := g.topic
	gs.mu.Unlock()
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].MemberID < out.Members[j].MemberID })
	if topicName == "" {
		return nil, errorf(ErrGroupNotFound, "group %q does not exist", groupName)
	}
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return nil, err
	}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		logStart, hwm, err := b.partitionBounds(ctx, t, p)
		if err != nil {
			return nil, classify(err)
		}
		committed, ok := offsets[p]
		from := committed
		if !ok {
			committed, from = -1, logStart
		}
		from = max(from, logStart)
		lag := PartitionLag{Partition: p, Committed: committed, HighWatermark: hwm, LagRecords: max(hwm-from, 0)}
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
func (b *Broker) resetOffset(ctx context.Context, t *topic, p int32, to Position) (int64, error) {
	logStart, hwm, err := b.partitionBounds(ctx, t, p)
	if err != nil {
		return 0, classify(err)
	}
	switch to.Kind {
	case StartEarliest:
		return logStart, nil
	case StartLatest:
		return hwm, nil
	case StartTime:
		if logStart == hwm {
			return hwm, nil
		}
		off, err := b.partitionReader(t, p).OffsetForTime(ctx, to.TimestampMs)
		if err != nil {
			return 0, classify(err)
		}
		return min(max(off, logStart), hwm), nil
	case StartOffset:
		o := to.Offset
		switch {
		case o < 0:
			return 0, errorf(ErrInvalidArgument, "reset offset %d is negative; partition %d of topic %q holds offsets %d up to its high watermark %d: reset to an offset in [%d, %d], or to earliest or latest; nothing was stored", o, p, t.cfg.Name, logStart, hwm, logStart, hwm)
		case o < logStart || o > hwm:
			return 0, errorf(ErrOutOfRange, "reset offset %d is outside partition %d of topic %q, which holds offsets %d (log start) up to its high watermark %d: reset to an offset in [%d, %d], or to earliest or latest; nothing was stored", o, p, t.cfg.Name, logStart, hwm, logStart, hwm)
		}
		return o, nil
	}
	return 0, errorf(ErrInvalidArgument, "unknown reset target %d: use earliest, latest, a timestamp or an offset", to.Kind)
}

// ResetOffsets sets a group's committed offsets of every partition of
// topic to the position to. The group must have no live members. It opens
// no partition.
func (b *Broker) ResetOffsets(ctx context.Context, groupName, topicName string, to Position) (map[int32]int64, error) {
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return nil, err
	}
	if err := validGroupName(groupName); err != nil {
		return nil, err
	}
	if err := b.checkCoordinator(groupName); err != nil {
		return nil, err
	}
	offsets := map[int32]int64{}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		off, err := b.resetOffset(ctx, t, p, to)
		if err != nil {
			return nil, err
		}
		offsets[p] = off
	}
	gs := &b.groups
	wl := gs.writeLock(groupName)
	wl.Lock()
	defer wl.Unlock()
	g, err := gs.lookup(ctx, groupName)
	if err != nil {
		return nil, err
	}
	gs.mu.Lock()
	gs.expire(g, time.Now())
	switch {
	case len(g.members) > 0:
		n := len(g.members)
		gs.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "group %q has %d live members; stop its consumers before resetting offsets", g.name, n)
	case g.topic != "" && g.topic != topicName:
		cur := g.topic
		gs.mu.Unlock()
		return nil, errorf(ErrInvalidArgument, "group %q consumes topic %q, not %q", g.name, cur, topicName)
	}
	g.topic = topicName
	gs.mu.Unlock()
	// An offset reset is not coordination: the state keeps naming its
	// coordinator, whose members then retry their commits on top of it.
	if err := gs.save(ctx, g, false, func(map[int32]int64) map[int32]int64 { return offsets }); err != nil {
		return nil, err
	}
	return offsets, nil
}
