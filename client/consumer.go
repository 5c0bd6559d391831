package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// Delivery says when a group consumer commits; there is no default, the
// caller chooses.
type Delivery int

const (
	// AtLeastOnce commits a Poll's records at the next Poll, Commit or
	// Close: records being processed when the consumer dies are delivered
	// again to whoever takes the partition over.
	AtLeastOnce Delivery = iota + 1
	// AtMostOnce commits before Poll returns the records: a consumer that
	// dies while processing loses them.
	AtMostOnce
)

// ConsumerOption configures a Consumer.
type ConsumerOption func(*consumerConfig)

type consumerConfig struct {
	partitions []int32
	group      string
	delivery   Delivery
	earliest   bool
	session    time.Duration
	maxBytes   int32
	maxWait    time.Duration
	records    bool // WithStoredBlocks(false): ask for records only
}

// WithPartitions reads these partitions (assign mode).
func WithPartitions(ps ...int32) ConsumerOption {
	return func(c *consumerConfig) { c.partitions = append([]int32(nil), ps...) }
}

// WithGroup joins a consumer group with the given delivery mode.
func WithGroup(name string, d Delivery) ConsumerOption {
	return func(c *consumerConfig) { c.group, c.delivery = name, d }
}

// WithStartLatest starts partitions without a committed offset at the end
// instead of the earliest offset.
func WithStartLatest() ConsumerOption { return func(c *consumerConfig) { c.earliest = false } }

// WithSessionTimeout sets the group session timeout. Default 10s;
// heartbeats go every third of it.
func WithSessionTimeout(d time.Duration) ConsumerOption {
	return func(c *consumerConfig) { c.session = d }
}

// WithStoredBlocks chooses how sealed history comes (docs/fetch.md). On
// (the default), the consumer asks for stored blocks: the broker sends
// sealed segment blocks as stored, compressed and with their CRCs, and
// the consumer verifies, decompresses and decodes them itself, on every
// core (a block that fails its CRC fails Poll with a *CorruptBlockError
// and the position stays); max bytes then count stored, compressed bytes.
// Off, the broker decodes and sends records, as brokers without the mode
// always do (the consumer takes either answer).
func WithStoredBlocks(on bool) ConsumerOption {
	return func(c *consumerConfig) { c.records = !on }
}

// WithFetchMaxBytes bounds one fetch response per partition (default
// 1 MiB; the broker clamps it to its own cap, 16 MiB by default). Keep it
// below the connection's receive limit (the client's default is 64 MiB;
// set it with grpc.MaxCallRecvMsgSize through WithDialOptions).
func WithFetchMaxBytes(n int32) ConsumerOption {
	return func(c *consumerConfig) { c.maxBytes = n }
}

// ErrConsumerClosed is returned by Poll after Close.
var ErrConsumerClosed = errors.New("client: consumer closed")

// A member the broker forgot (its session expired, or the broker
// restarted) joins again at once; after a failed join the next waits
// rejoinBackoff, doubling per failure up to maxRejoinBackoff, with full
// jitter.
const (
	rejoinBackoff    = 100 * time.Millisecond
	maxRejoinBackoff = 5 * time.Second
)

// Consumer reads a topic.
//
// In group mode, the heartbeat goroutine and Poll share the membership:
// whichever first learns that it changed (a heartbeat answer with a new
// generation, a fetch or commit refused for a stale generation, a member
// id the broker no longer knows) heartbeats or joins again and adopts the
// new assignment, under syncMu, so there is one live member id per
// Consumer and each change is adopted once.
type Consumer struct {
	c      *Client
	topic  string
	cfg    consumerConfig
	bg     context.Context    // ended by Close: stops heartbeats and joins
	stopBG context.CancelFunc // ends bg
	done   chan struct{}      // closed when the heartbeat goroutine has returned

	syncMu sync.Mutex // serializes Heartbeat and JoinGroup calls and adopting their answers
	// Guarded by syncMu:
	joinFailures int       // failed joins in a row
	nextJoin     time.Time // no join before this (backoff after failed joins)

	mu         sync.Mutex // guards the fields below
	memberID   string     // "": not a member (the broker forgot it); the next Poll or heartbeat joins
	generation int64      // of the assignment; -1: none adopted yet for memberID
	epoch      uint64     // counts adopted assignments (generations start over with a broker)
	assigned   []int32
	positions  map[int32]int64 // next offset per assigned partition; -1: not started
	processed  map[int32]int64 // returned by Poll, not yet committed (AtLeastOnce)
	changed    chan struct{}   // closed (and replaced) when the assignment changes
	closed     bool
}

// NewConsumer returns a consumer of topic. In group mode it joins the group
// now and heartbeats until Close; when the broker forgets the member (its
// session expired, or the broker restarted), the consumer joins again by
// itself and resumes from the group's committed offsets.
func (c *Client) NewConsumer(ctx context.Context, topic string, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{earliest: true, session: 10 * time.Second, maxBytes: 1 << 20, maxWait: 500 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	k := &Consumer{c: c, topic: topic, cfg: cfg, done: make(chan struct{}), generation: -1,
		positions: map[int32]int64{}, processed: map[int32]int64{}, changed: make(chan struct{})}
	k.bg, k.stopBG = context.WithCancel(c.closed)
	switch {
	case cfg.group != "" && len(cfg.partitions) > 0:
		return nil, errors.New("client: use WithGroup or WithPartitions, not both")
	case cfg.group != "" && cfg.delivery != AtLeastOnce && cfg.delivery != AtMostOnce:
		return nil, errors.New("client: a group consumer needs an explicit delivery mode: AtLeastOnce or AtMostOnce")
	case cfg.group == "":
		if len(cfg.partitions) == 0 {
			return nil, errors.New("client: WithPartitions or WithGroup is required")
		}
		k.assigned = cfg.partitions
		for _, p := range cfg.partitions {
			k.positions[p] = -1
		}
		close(k.done)
		return k, nil
	}
	a, err := c.api.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: cfg.group, Topic: topic, SessionTimeoutMs: int32(cfg.session.Milliseconds())})
	if err != nil {
		return nil, fmt.Errorf("client: join group %s: %w", cfg.group, err)
	}
	if err := k.adopt(ctx, a.MemberId, a); err != nil {
		c.api.LeaveGroup(ctx, &stratapb.LeaveGroupRequest{Group: cfg.group, MemberId: a.MemberId})
		return nil, err
	}
	go k.heartbeats()
	return k, nil
}

// changedLocked records a new assignment. Caller holds mu.
func (k *Consumer) changedLocked() {
	k.epoch++
	close(k.changed)
	k.changed = make(chan struct{})
}

// adopt takes member's (new) assignment a and the committed positions of
// its partitions. When those cannot be read, the member keeps no
// assignment until the next heartbeat or Poll adopts one. Caller holds
// syncMu.
func (k *Consumer) adopt(ctx context.Context, member string, a *stratapb.GroupAssignment) error {
	committed, err := k.c.api.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: k.cfg.group})
	k.mu.Lock()
	defer k.mu.Unlock()
	k.memberID = member
	k.positions, k.processed = map[int32]int64{}, map[int32]int64{}
	defer k.changedLocked()
	if err != nil {
		k.generation, k.assigned = -1, nil
		return fmt.Errorf("client: committed offsets of group %s: %w; the consumer reads nothing until it has them (it asks again at the next Poll or heartbeat)", k.cfg.group, err)
	}
	k.generation, k.assigned = a.Generation, a.Partitions
	for _, p := range a.Partitions {
		if o, ok := committed.Offsets[p]; ok {
			k.positions[p] = o
		} else {
			k.positions[p] = -1
		}
	}
	return nil
}

// forget drops member, which the broker no longer knows, with its
// assignment; records it returned but did not commit are delivered again
// (from the committed offsets). Caller holds syncMu.
func (k *Consumer) forget(member string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.memberID == member {
		k.memberID, k.generation, k.assigned = "", -1, nil
		k.positions, k.processed = map[int32]int64{}, map[int32]int64{}
		k.changedLocked()
	}
}

// resync learns the current assignment, unless one newer than epoch seen
// was adopted meanwhile: it heartbeats, adopts a new generation, and joins
// again when the broker no longer knows the member. Poll calls it when a
// fetch or commit is refused, the heartbeat goroutine on every tick.
func (k *Consumer) resync(ctx context.Context, seen uint64) error {
	k.syncMu.Lock()
	defer k.syncMu.Unlock()
	k.mu.Lock()
	epoch, member, gen := k.epoch, k.memberID, k.generation
	k.mu.Unlock()
	if epoch != seen {
		return nil
	}
	if member != "" {
		a, err := k.c.api.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: k.cfg.group, MemberId: member})
		switch {
		case err == nil && a.Generation == gen:
			return nil
		case err == nil:
			return k.adopt(ctx, member, a)
		case status.Code(err) != codes.NotFound:
			return fmt.Errorf("client: heartbeat to group %s: %w", k.cfg.group, err)
		}
		k.forget(member)
	}
	return k.join(ctx)
}

// join joins the group as a new member and adopts its assignment, after
// the backoff that earlier failed joins set. Caller holds syncMu.
func (k *Consumer) join(ctx context.Context) error {
	if wait := time.Until(k.nextJoin); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-k.bg.Done():
			t.Stop()
		}
	}
	if k.bg.Err() != nil {
		return ErrConsumerClosed
	}
	a, err := k.c.api.JoinGroup(ctx, &stratapb.JoinGroupRequest{Group: k.cfg.group, Topic: k.topic, SessionTimeoutMs: int32(k.cfg.session.Milliseconds())})
	if err != nil {
		k.joinFailures++
		k.nextJoin = time.Now().Add(jitter(backoff(rejoinBackoff, k.joinFailures-1, maxRejoinBackoff)))
		return fmt.Errorf("client: join group %s again (the broker no longer knew this member: its session expired or the broker restarted): %w; the consumer tries again, with backoff, at the next Poll or heartbeat", k.cfg.group, err)
	}
	k.joinFailures, k.nextJoin = 0, time.Time{}
	return k.adopt(ctx, a.MemberId, a)
}

// backoff is base doubled n times, at most ceiling.
func backoff(base time.Duration, n int, ceiling time.Duration) time.Duration {
	return min(base<<min(n, 20), ceiling)
}

// jitter is a random duration in [0, bound] (full jitter).
func jitter(bound time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(bound) + 1))
}

func (k *Consumer) heartbeats() {
	defer close(k.done)
	interval := k.cfg.session / 3
	t := time.NewTimer(interval)
	defer t.Stop()
	for failures := 0; ; {
		select {
		case <-k.bg.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		epoch := k.epoch
		k.mu.Unlock()
		ctx, cancel := context.WithTimeout(k.bg, interval)
		err := k.resync(ctx, epoch)
		cancel()
		next := interval
		if err != nil {
			// Try again soon: one lost heartbeat must not cost the
			// session.
			failures++
			next = min(interval, jitter(backoff(rejoinBackoff, failures-1, maxRejoinBackoff)))
		} else {
			failures = 0
		}
		t.Reset(next)
	}
}

// Assignment is the partitions this consumer reads now.
func (k *Consumer) Assignment() []int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int32(nil), k.assigned...)
}

// refused reports whether a group member's fetch or commit was turned
// down because its view of the group is stale: an old generation or a
// partition no longer its own (FAILED_PRECONDITION), or a member id the
// broker forgot (NOT_FOUND).
func refused(err error) bool {
	c := status.Code(err)
	return c == codes.FailedPrecondition || c == codes.NotFound
}

// wait blocks until ch is closed, d passes or ctx ends.
func wait(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Seek makes the next Poll read partition p from offset; p must be
// assigned to this consumer now (Assignment). A consumer without a group
// seeks anywhere. A group consumer seeks only back, to at most the offset
// after the last record Poll returned from p, so it still never commits an
// offset past a record it did not return; with AtLeastOnce, offset is also
// p's position for the next commit: records from offset on count as not
// processed. So a caller that Polled more records than it handled Seeks
// each partition back to its first unhandled record, and Close commits no
// further than that. Call Seek between Polls: a Poll running meanwhile may
// move the position past it. On an error nothing changed.
func (k *Consumer) Seek(p int32, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("client: seek partition %d of %s to offset %d: offsets are not negative; nothing changed", p, k.topic, offset)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	pos, ok := k.positions[p]
	switch {
	case !ok:
		return fmt.Errorf("client: seek partition %d of %s: not assigned to this consumer (assigned: %v); nothing changed", p, k.topic, k.assigned)
	case k.cfg.group != "" && pos < 0:
		return fmt.Errorf("client: seek partition %d of %s to offset %d: a group consumer seeks only back, and it has no position in this partition yet (no committed offset, nothing Polled); nothing changed", p, k.topic, offset)
	case k.cfg.group != "" && offset > pos:
		return fmt.Errorf("client: seek partition %d of %s to offset %d: a group consumer seeks only back, and its position in this partition is %d; nothing changed", p, k.topic, offset, pos)
	}
	k.positions[p] = offset
	if k.cfg.group != "" && k.cfg.delivery == AtLeastOnce {
		k.processed[p] = offset
	}
	return nil
}

// Poll returns the next records from the assigned partitions, waiting up
// to about maxWait per partition when there are none. In group mode, a
// fetch refused because the group rebalanced (or forgot this member)
// makes Poll heartbeat, or join again, at once and read the new
// assignment; Poll never repeats a refused fetch without learning
// something new first, and waits up to maxWait when it learns nothing.
func (k *Consumer) Poll(ctx context.Context) ([]Record, error) {
	if k.cfg.group != "" && k.cfg.delivery == AtLeastOnce {
		if err := k.Commit(ctx); err != nil {
			return nil, err
		}
	}
	// A round after the first reads an assignment adopted in the round
	// before.
	for range 3 {
		k.mu.Lock()
		if k.closed {
			k.mu.Unlock()
			return nil, ErrConsumerClosed
		}
		epoch, member, gen, changed := k.epoch, k.memberID, k.generation, k.changed
		parts := append([]int32(nil), k.assigned...)
		starts := make(map[int32]int64, len(parts))
		for _, p := range parts {
			starts[p] = k.positions[p]
		}
		k.mu.Unlock()
		if k.cfg.group != "" && gen < 0 {
			if err := k.resync(ctx, epoch); err != nil {
				return nil, err
			}
			continue
		}
		if len(parts) == 0 {
			return nil, wait(ctx, changed, k.cfg.maxWait)
		}
		out, next, err := k.fetch(ctx, member, gen, parts, starts)
		if k.cfg.group != "" && (refused(err) || unreachable(err)) {
			// Refused, or the coordinator (which serves a member's
			// fetches) cannot be reached: the heartbeat finds the
			// coordinator, or joins again at a new one.
			if err := k.resync(ctx, epoch); err != nil {
				return nil, err
			}
			k.mu.Lock()
			learned := k.epoch != epoch
			k.mu.Unlock()
			switch {
			case learned:
				continue
			case status.Code(err) == codes.NotFound:
				return nil, err // the member is known: something else is missing (the topic?)
			case unreachable(err):
				return nil, err // the member is known and its coordinator answers: retry later
			}
			// Refused, but the broker has nothing newer: wait, never spin.
			return nil, wait(ctx, changed, k.cfg.maxWait)
		}
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		if k.epoch != epoch {
			k.mu.Unlock()
			continue // reassigned meanwhile: drop these, read again from the new positions
		}
		if k.cfg.delivery != AtMostOnce {
			for p, o := range next {
				k.positions[p] = o
				if k.cfg.group != "" {
					k.processed[p] = o
				}
			}
			k.mu.Unlock()
			return out, nil
		}
		k.mu.Unlock()
		// AtMostOnce: return only the records whose positions are
		// committed; the others are read again by whoever owns their
		// partition now.
		committed, err := k.commitOffsets(ctx, member, gen, epoch, next)
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		if k.epoch == epoch {
			for p := range committed {
				k.positions[p] = next[p]
			}
		}
		k.mu.Unlock()
		kept := out[:0]
		for _, r := range out {
			if committed[r.Partition] {
				kept = append(kept, r)
			}
		}
		return kept, nil
	}
	return nil, nil
}

// fetch reads each partition once from its start position and returns the
// records and the next position of each partition.
func (k *Consumer) fetch(ctx context.Context, member string, gen int64, parts []int32, starts map[int32]int64) ([]Record, map[int32]int64, error) {
	var out []Record
	next := make(map[int32]int64, len(parts))
	for _, p := range parts {
		req := &stratapb.FetchRequest{Topic: k.topic, Partition: p, MaxBytes: k.cfg.maxBytes, MaxWaitMs: int32(k.cfg.maxWait.Milliseconds()),
			Group: k.cfg.group, MemberId: member, Generation: gen, StoredBlocks: !k.cfg.records}
		switch {
		case starts[p] >= 0:
			req.Start = &stratapb.FetchRequest_Offset{Offset: starts[p]}
		case k.cfg.earliest:
			req.Start = &stratapb.FetchRequest_Earliest{Earliest: true}
		default:
			req.Start = &stratapb.FetchRequest_Latest{Latest: true}
		}
		resp, err := k.fetchOne(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		recs, err := decodeFetch(k.topic, p, resp, decodeWorkers())
		if err != nil {
			return nil, nil, err
		}
		if out == nil {
			out = recs
		} else {
			out = append(out, recs...)
		}
		next[p] = resp.NextOffset
	}
	return out, next, nil
}

// fetchOne reads one response. The stream is canceled when it returns:
// gRPC keeps an unfinished stream (and a goroutine) until its context ends.
func (k *Consumer) fetchOne(ctx context.Context, req *stratapb.FetchRequest) (*stratapb.FetchResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := k.c.api.Fetch(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.Recv()
}

// Commit commits the positions after every record Poll has returned. When
// the group rebalanced meanwhile, the positions of partitions that are
// still this consumer's are committed in the new generation; those of
// partitions that moved are dropped (their new owner reads from the last
// commit: at-least-once).
func (k *Consumer) Commit(ctx context.Context) error {
	if k.cfg.group == "" {
		return nil
	}
	k.mu.Lock()
	offs, member, gen, epoch := k.processed, k.memberID, k.generation, k.epoch
	k.processed = map[int32]int64{}
	k.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	if _, err := k.commitOffsets(ctx, member, gen, epoch, offs); err != nil {
		// Not committed: keep them for the next Commit, unless newer
		// positions replaced them meanwhile.
		k.mu.Lock()
		if k.epoch == epoch {
			for p, o := range offs {
				if _, ok := k.processed[p]; !ok {
					k.processed[p] = o
				}
			}
		}
		k.mu.Unlock()
		return err
	}
	return nil
}

// commitOffsets commits offs as member in generation gen (the assignment
// of epoch) and returns the partitions whose offsets are committed. When
// the commit is refused because the group moved on, it heartbeats (or
// joins again), commits the partitions that are still this member's in the
// new generation, and adopts the new assignment.
func (k *Consumer) commitOffsets(ctx context.Context, member string, gen int64, epoch uint64, offs map[int32]int64) (map[int32]bool, error) {
	all := make(map[int32]bool, len(offs))
	for p := range offs {
		all[p] = true
	}
	if member == "" {
		return map[int32]bool{}, nil
	}
	_, err := k.c.api.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: k.cfg.group, MemberId: member, Generation: gen, Offsets: offs})
	switch {
	case err == nil:
		return all, nil
	case !refused(err):
		return nil, fmt.Errorf("client: commit %s: %w", k.cfg.group, err)
	}
	k.syncMu.Lock()
	defer k.syncMu.Unlock()
	k.mu.Lock()
	now, cur := k.epoch, k.memberID
	k.mu.Unlock()
	if now != epoch || cur != member {
		// A new assignment was adopted meanwhile, its positions read
		// from the committed offsets: these records are read again.
		return map[int32]bool{}, nil
	}
	a, err := k.c.api.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: k.cfg.group, MemberId: member})
	switch {
	case status.Code(err) == codes.NotFound:
		k.forget(member)
		if err := k.join(ctx); err != nil && !errors.Is(err, ErrConsumerClosed) {
			return map[int32]bool{}, err
		}
		return map[int32]bool{}, nil
	case err != nil:
		return nil, fmt.Errorf("client: commit %s: heartbeat after a refused commit: %w", k.cfg.group, err)
	}
	kept := map[int32]int64{}
	for _, p := range a.Partitions {
		if o, ok := offs[p]; ok {
			kept[p] = o
		}
	}
	committed := map[int32]bool{}
	if len(kept) > 0 {
		_, err := k.c.api.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: k.cfg.group, MemberId: member, Generation: a.Generation, Offsets: kept})
		switch {
		case err == nil:
			for p := range kept {
				committed[p] = true
			}
		case !refused(err):
			return nil, fmt.Errorf("client: commit %s: %w", k.cfg.group, err)
		}
	}
	if a.Generation != gen {
		// After the commit, so the adopted positions include it. A
		// failure leaves no assignment; the next Poll adopts one.
		k.adopt(ctx, member, a)
	}
	return committed, nil
}

// Close stops heartbeats, commits (AtLeastOnce) and leaves the group. It
// is idempotent.
func (k *Consumer) Close(ctx context.Context) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()
	if k.cfg.group == "" {
		return nil
	}
	k.stopBG()
	<-k.done
	var errs []error
	if k.cfg.delivery == AtLeastOnce {
		errs = append(errs, k.Commit(ctx))
	}
	k.syncMu.Lock() // a join under way ends first, so its member leaves too
	k.mu.Lock()
	member := k.memberID
	k.mu.Unlock()
	k.syncMu.Unlock()
	if member != "" {
		_, err := k.c.api.LeaveGroup(ctx, &stratapb.LeaveGroupRequest{Group: k.cfg.group, MemberId: member})
		if status.Code(err) != codes.NotFound { // NOT_FOUND: its session already expired
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
