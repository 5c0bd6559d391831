package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// ProducerOption configures a Producer.
type ProducerOption func(*producerConfig)

type producerConfig struct {
	batchSize   int
	linger      time.Duration
	maxInFlight int
	retries     int
	backoff     time.Duration
	partition   int32
	acks        stratapb.Acks
	idempotent  bool
	timeout     time.Duration
}

// WithBatchSize sets the most records per produce request. Default 500.
func WithBatchSize(n int) ProducerOption { return func(c *producerConfig) { c.batchSize = max(n, 1) } }

// WithLinger sets how long a partial batch waits for more records. Default 5ms.
func WithLinger(d time.Duration) ProducerOption { return func(c *producerConfig) { c.linger = d } }

// WithMaxInFlight sets how many requests may be outstanding. Default 4.
func WithMaxInFlight(n int) ProducerOption {
	return func(c *producerConfig) { c.maxInFlight = max(n, 1) }
}

// maxBackoff caps the wait between two attempts of a request.
const maxBackoff = 2 * time.Second

// WithRetries sets how many times a failed request is resent after
// transient errors, with exponential backoff from base (capped at 2s) and
// full jitter. Default 5 retries from 50ms.
func WithRetries(n int, base time.Duration) ProducerOption {
	return func(c *producerConfig) { c.retries, c.backoff = max(n, 0), base }
}

// WithPartition sends every record to one partition instead of by key.
func WithPartition(p int32) ProducerOption { return func(c *producerConfig) { c.partition = p } }

// WithAcks sets when the broker acknowledges a request: ACKS_NONE (on
// receipt), ACKS_LOCAL (after its local fsync) or ACKS_DURABLE (after the
// records are in the object store; the default). See docs/durability.md.
func WithAcks(a stratapb.Acks) ProducerOption { return func(c *producerConfig) { c.acks = a } }

// WithIdempotence turns the idempotent producer on or off. On (the
// default), the producer gets a producer id from the broker and numbers
// each partition's records, so a retry after a lost response is stored
// once; the producer then partitions records itself (FNV-1a 32 of the key
// mod the partition count, as the broker does) and sends one request per
// partition batch.
func WithIdempotence(on bool) ProducerOption { return func(c *producerConfig) { c.idempotent = on } }

// WithRequestTimeout bounds one produce attempt, ack wait included.
// Default 30s.
func WithRequestTimeout(d time.Duration) ProducerOption {
	return func(c *producerConfig) { c.timeout = d }
}

// Result is the outcome of one Send.
type Result struct {
	done      chan struct{}
	Partition int32
	Offset    int64
	Err       error
}

// Wait blocks until the record is acknowledged or failed.
func (r *Result) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the outcome is known.
func (r *Result) Done() <-chan struct{} { return r.done }

// pending is the batch being filled for one partition (-1: the broker
// partitions, in the non-idempotent mode).
type pending struct {
	recs    []*stratapb.Record
	results []*Result
}

// Producer sends records to one topic.
type Producer struct {
	c     *Client
	topic string
	cfg   producerConfig
	slots chan struct{} // in-flight requests: holding all of them means none is outstanding

	sendMu  sync.Mutex // orders slot taking and sequence assignment
	mu      sync.Mutex
	pending map[int32]*pending
	timer   *time.Timer
	closed  bool
	// Idempotent state, guarded by mu.
	ready      bool
	producerID int64
	epoch      int32
	seq        map[int32]int32 // next sequence per partition
	partitions int32
	rr         uint32
	sticky     int32 // partition of keyless records until its batch is cut; -1: pick one
}

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("client: producer closed")

// NewProducer returns a producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	cfg := producerConfig{batchSize: 500, linger: 5 * time.Millisecond, maxInFlight: 4, retries: 5, backoff: 50 * time.Millisecond,
		partition: -1, acks: stratapb.Acks_ACKS_DURABLE, idempotent: true, timeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	return &Producer{c: c, topic: topic, cfg: cfg, slots: make(chan struct{}, cfg.maxInFlight), pending: map[int32]*pending{}, sticky: -1}
}

// ProducerID is the id the broker gave this producer (0 before the first
// idempotent send, or when idempotence is off).
func (p *Producer) ProducerID() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.producerID
}

// initIdempotent gets a producer id and the topic's partition count.
// Caller holds mu.
func (p *Producer) initIdempotent(ctx context.Context) error {
	if p.ready {
		return nil
	}
	if p.partitions == 0 {
		resp, err := p.c.api.ListTopics(ctx, &stratapb.ListTopicsRequest{})
		if err != nil {
			return fmt.Errorf("client: look up topic %q: %w", p.topic, err)
		}
		for _, t := range resp.Topics {
			if t.Name == p.topic {
				p.partitions = t.Partitions
			}
		}
		if p.partitions == 0 {
			return status.Errorf(codes.NotFound, "client: topic %q does not exist", p.topic)
		}
	}
	resp, err := p.c.api.InitProducer(ctx, &stratapb.InitProducerRequest{})
	if err != nil {
		return fmt.Errorf("client: init producer: %w", err)
	}
	p.producerID, p.epoch, p.seq, p.ready = resp.ProducerId, resp.ProducerEpoch, map[int32]int32{}, true
	return nil
}

// partitionOf picks a record's partition in the idempotent mode, as the
// broker would. Caller holds mu.
func (p *Producer) partitionOf(r *stratapb.Record) int32 {
	switch {
	case p.cfg.partition >= 0:
		return p.cfg.partition
	case r.Key != nil:
		h := fnv.New32a()
		h.Write(r.Key)
		return int32(h.Sum32() % uint32(p.partitions))
	}
	// Keyless records stick to one partition until its batch is sent, so
	// they make full batches rather than one small request per partition.
	if p.sticky < 0 {
		p.rr++
		p.sticky = int32(p.rr % uint32(p.partitions))
	}
	return p.sticky
}

// Send queues a record and returns its Result. It blocks only while
// MaxInFlight requests are outstanding and a batch is full.
func (p *Producer) Send(ctx context.Context, r Record) (*Result, error) {
	res := &Result{done: make(chan struct{})}
	rec := toProto(&r)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrProducerClosed
	}
	part := p.cfg.partition
	if p.cfg.idempotent {
		if err := p.initIdempotent(ctx); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		part = p.partitionOf(rec)
	}
	b := p.pending[part]
	if b == nil {
		b = &pending{}
		p.pending[part] = b
	}
	b.recs = append(b.recs, rec)
	b.results = append(b.results, res)
	full := len(b.recs) >= p.cfg.batchSize
	if !full && p.timer == nil {
		p.timer = time.AfterFunc(p.cfg.linger, func() { p.flush(context.Background(), false) })
	}
	p.mu.Unlock()
	if full {
		if err := p.flush(ctx, true); err != nil {
			return res, err
		}
	}
	return res, nil
}

type request struct {
	req     *stratapb.ProduceRequest
	results []*Result
}

// flush sends the pending batches: only the full ones when fullOnly, else
// all, each after taking an in-flight slot. Slots are taken and sequence
// numbers assigned in one order under sendMu, so a partition's batches hold
// slots in sequence order and an earlier batch never waits behind a later
// one.
func (p *Producer) flush(ctx context.Context, fullOnly bool) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	for {
		p.mu.Lock()
		part, found := int32(0), false
		for q, b := range p.pending {
			if !fullOnly || len(b.recs) >= p.cfg.batchSize {
				part, found = q, true
				break
			}
		}
		if !found && !fullOnly && p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
		p.mu.Unlock()
		if !found {
			return nil
		}
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
		b := p.pending[part]
		if b == nil {
			p.mu.Unlock()
			<-p.slots
			continue
		}
		delete(p.pending, part)
		if part == p.sticky {
			p.sticky = -1
		}
		req := &stratapb.ProduceRequest{Topic: p.topic, Partition: part, Records: b.recs, Acks: p.cfg.acks, TimeoutMs: int32(p.cfg.timeout / time.Millisecond)}
		if p.cfg.idempotent && p.ready {
			req.ProducerId, req.ProducerEpoch, req.BaseSequence = p.producerID, p.epoch, p.seq[part]
			p.seq[part] += int32(len(b.recs))
		}
		p.mu.Unlock()
		r := request{req, b.results}
		go func() {
			defer func() { <-p.slots }()
			resp, err := p.send(r.req)
			p.finish(r, resp, err)
		}()
	}
}

func (p *Producer) finish(r request, resp *stratapb.ProduceResponse, err error) {
	if err != nil && r.req.ProducerId != 0 {
		// A batch that failed for good leaves a gap in this partition's
		// sequence: later batches would be refused. Start over with a new
		// producer id.
		p.mu.Lock()
		if p.producerID == r.req.ProducerId {
			p.ready = false
		}
		p.mu.Unlock()
	}
	for i, res := range r.results {
		if err != nil {
			res.Err = err
		} else {
			res.Partition, res.Offset = resp.Partitions[i], resp.Offsets[i]
		}
		close(res.done)
	}
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

func (p *Producer) send(req *stratapb.ProduceRequest) (*stratapb.ProduceResponse, error) {
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.timeout+5*time.Second)
		var resp *stratapb.ProduceResponse
		resp, err = p.c.api.Produce(ctx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !retryable(err) || attempt >= p.cfg.retries {
			return nil, err
		}
		bound := min(p.cfg.backoff<<min(attempt, 10), maxBackoff)
		time.Sleep(time.Duration(rand.Int64N(int64(bound) + 1)))
	}
}

// Flush sends what is pending and waits for every outstanding request.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.flush(ctx, false); err != nil {
		return err
	}
	// Taking every slot waits out every outstanding request.
	taken := 0
	defer func() {
		for ; taken > 0; taken-- {
			<-p.slots
		}
	}()
	for ; taken < cap(p.slots); taken++ {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close flushes and stops the producer. It is idempotent.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	return p.Flush(ctx)
}
