package client

import (
	"context"
	"errors"
	"fmt"
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

// Consumer reads a topic.
type Consumer struct {
	c     *Client
	topic string
	cfg   consumerConfig
	stop  chan struct{}
	done  chan struct{}

	mu         sync.Mutex
	memberID   string
	generation int64
	assigned   []int32
	positions  map[int32]int64 // next offset per assigned partition; -1: not started
	processed  map[int32]int64 // returned by Poll, not yet committed (AtLeastOnce)
	reassigned bool
	closed     bool
}

// NewConsumer returns a consumer of topic. In group mode it joins the group
// now and heartbeats until Close.
func (c *Client) NewConsumer(ctx context.Context, topic string, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{earliest: true, session: 10 * time.Second, maxBytes: 1 << 20, maxWait: 500 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	k := &Consumer{c: c, topic: topic, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}), positions: map[int32]int64{}, processed: map[int32]int64{}}
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
	k.memberID = a.MemberId
	if err := k.adopt(ctx, a); err != nil {
		return nil, err
	}
	go k.heartbeats()
	return k, nil
}

// adopt takes a (new) assignment and loads committed positions.
func (k *Consumer) adopt(ctx context.Context, a *stratapb.GroupAssignment) error {
	committed, err := k.c.api.FetchCommitted(ctx, &stratapb.FetchCommittedRequest{Group: k.cfg.group})
	if err != nil {
		return fmt.Errorf("client: committed offsets of %s: %w", k.cfg.group, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.generation, k.assigned = a.Generation, a.Partitions
	k.positions, k.processed = map[int32]int64{}, map[int32]int64{}
	for _, p := range a.Partitions {
		if o, ok := committed.Offsets[p]; ok {
			k.positions[p] = o
		} else {
			k.positions[p] = -1
		}
	}
	return nil
}

func (k *Consumer) heartbeats() {
	defer close(k.done)
	t := time.NewTicker(k.cfg.session / 3)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), k.cfg.session/3)
		a, err := k.c.api.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: k.cfg.group, MemberId: k.memberID})
		cancel()
		if err != nil {
			continue // transient; the session timeout decides
		}
		k.mu.Lock()
		changed := a.Generation != k.generation
		if changed {
			k.reassigned = true
		}
		k.mu.Unlock()
		if changed {
			ctx, cancel := context.WithTimeout(context.Background(), k.cfg.session/3)
			k.adopt(ctx, a)
			cancel()
		}
	}
}

// Assignment is the partitions this consumer reads now.
func (k *Consumer) Assignment() []int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int32(nil), k.assigned...)
}

// Poll returns the next records from the assigned partitions, waiting up
// to about maxWait per partition when there are none.
func (k *Consumer) Poll(ctx context.Context) ([]Record, error) {
	if k.cfg.group != "" && k.cfg.delivery == AtLeastOnce {
		if err := k.Commit(ctx); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	gen := k.generation
	member := k.memberID
	var parts []int32
	starts := map[int32]int64{}
	for _, p := range k.assigned {
		parts = append(parts, p)
		starts[p] = k.positions[p]
	}
	k.mu.Unlock()
	var out []Record
	next := map[int32]int64{}
	for _, p := range parts {
		req := &stratapb.FetchRequest{Topic: k.topic, Partition: p, MaxBytes: k.cfg.maxBytes, MaxWaitMs: int32(k.cfg.maxWait.Milliseconds()),
			Group: k.cfg.group, MemberId: member, Generation: gen}
		switch {
		case starts[p] >= 0:
			req.Start = &stratapb.FetchRequest_Offset{Offset: starts[p]}
		case k.cfg.earliest:
			req.Start = &stratapb.FetchRequest_Earliest{Earliest: true}
		default:
			req.Start = &stratapb.FetchRequest_Latest{Latest: true}
		}
		s, err := k.c.api.Fetch(ctx, req)
		if err != nil {
			return out, err
		}
		resp, err := s.Recv()
		if status.Code(err) == codes.FailedPrecondition {
			return nil, nil // rebalanced meanwhile: the heartbeat brings the new assignment
		}
		if err != nil {
			return out, err
		}
		for _, r := range resp.Records {
			out = append(out, fromProto(k.topic, r))
		}
		next[p] = resp.NextOffset
	}
	k.mu.Lock()
	if k.generation != gen {
		k.mu.Unlock()
		return nil, nil // reassigned meanwhile: drop these, read again from the new positions
	}
	for p, o := range next {
		k.positions[p] = o
		k.processed[p] = o
	}
	k.mu.Unlock()
	if k.cfg.group != "" && k.cfg.delivery == AtMostOnce {
		if err := k.Commit(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Commit commits the positions after every record Poll has returned.
func (k *Consumer) Commit(ctx context.Context) error {
	if k.cfg.group == "" {
		return nil
	}
	k.mu.Lock()
	offs := k.processed
	gen := k.generation
	k.processed = map[int32]int64{}
	k.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	_, err := k.c.api.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: k.cfg.group, MemberId: k.memberID, Generation: gen, Offsets: offs})
	if status.Code(err) == codes.FailedPrecondition {
		// A rebalance started a new generation. Partitions that are still
		// ours were read by nobody else: commit those in the new
		// generation. Partitions that moved resume from their last commit
		// at their new owner (delivered again: at-least-once).
		a, herr := k.c.api.Heartbeat(ctx, &stratapb.HeartbeatRequest{Group: k.cfg.group, MemberId: k.memberID})
		if herr != nil {
			return nil
		}
		kept := map[int32]int64{}
		for _, p := range a.Partitions {
			if o, ok := offs[p]; ok {
				kept[p] = o
			}
		}
		if len(kept) > 0 {
			_, err = k.c.api.CommitOffsets(ctx, &stratapb.CommitOffsetsRequest{Group: k.cfg.group, MemberId: k.memberID, Generation: a.Generation, Offsets: kept})
		}
		if err == nil || status.Code(err) == codes.FailedPrecondition {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("client: commit %s: %w", k.cfg.group, err)
	}
	return nil
}

// Close commits (AtLeastOnce), leaves the group, and stops heartbeats. It
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
	var errs []error
	if k.cfg.delivery == AtLeastOnce {
		errs = append(errs, k.Commit(ctx))
	}
	close(k.stop)
	<-k.done
	_, err := k.c.api.LeaveGroup(ctx, &stratapb.LeaveGroupRequest{Group: k.cfg.group, MemberId: k.memberID})
	errs = append(errs, err)
	return errors.Join(errs...)
}
