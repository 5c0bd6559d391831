package client

import (
	"context"
	"errors"
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
}

// WithBatchSize sets the most records per produce request. Default 500.
func WithBatchSize(n int) ProducerOption { return func(c *producerConfig) { c.batchSize = max(n, 1) } }

// WithLinger sets how long a partial batch waits for more records. Default 5ms.
func WithLinger(d time.Duration) ProducerOption { return func(c *producerConfig) { c.linger = d } }

// WithMaxInFlight sets how many requests may be outstanding. Default 4.
func WithMaxInFlight(n int) ProducerOption {
	return func(c *producerConfig) { c.maxInFlight = max(n, 1) }
}

// WithRetries sets how many times a failed request is resent after
// transient errors, with exponential backoff from base and full jitter.
// Default 5 retries from 50ms.
func WithRetries(n int, base time.Duration) ProducerOption {
	return func(c *producerConfig) { c.retries, c.backoff = max(n, 0), base }
}

// WithPartition sends every record to one partition instead of by key.
func WithPartition(p int32) ProducerOption { return func(c *producerConfig) { c.partition = p } }

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

// Producer sends records to one topic.
type Producer struct {
	c     *Client
	topic string
	cfg   producerConfig
	slots chan struct{} // in-flight requests: holding all of them means none is outstanding

	mu      sync.Mutex
	pending []*stratapb.Record
	results []*Result
	timer   *time.Timer
	closed  bool
}

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("client: producer closed")

// NewProducer returns a producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	cfg := producerConfig{batchSize: 500, linger: 5 * time.Millisecond, maxInFlight: 4, retries: 5, backoff: 50 * time.Millisecond, partition: -1}
	for _, o := range opts {
		o(&cfg)
	}
	return &Producer{c: c, topic: topic, cfg: cfg, slots: make(chan struct{}, cfg.maxInFlight)}
}

// Send queues a record and returns its Result. It blocks only while
// MaxInFlight requests are outstanding and the batch is full.
func (p *Producer) Send(ctx context.Context, r Record) (*Result, error) {
	res := &Result{done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrProducerClosed
	}
	p.pending = append(p.pending, toProto(&r))
	p.results = append(p.results, res)
	full := len(p.pending) >= p.cfg.batchSize
	if !full && p.timer == nil {
		p.timer = time.AfterFunc(p.cfg.linger, func() { p.flush(context.Background()) })
	}
	p.mu.Unlock()
	if full {
		if err := p.flush(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// flush sends the pending batch (waiting for an in-flight slot).
func (p *Producer) flush(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	recs, results := p.pending, p.results
	p.pending, p.results = nil, nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	if len(recs) == 0 {
		<-p.slots
		return nil
	}
	go func() {
		defer func() { <-p.slots }()
		resp, err := p.send(recs)
		for i, r := range results {
			if err != nil {
				r.Err = err
			} else {
				r.Partition, r.Offset = resp.Partitions[i], resp.Offsets[i]
			}
			close(r.done)
		}
	}()
	return nil
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

func (p *Producer) send(recs []*stratapb.Record) (*stratapb.ProduceResponse, error) {
	req := &stratapb.ProduceRequest{Topic: p.topic, Partition: p.cfg.partition, Records: recs}
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var resp *stratapb.ProduceResponse
		resp, err = p.c.api.Produce(ctx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !retryable(err) || attempt >= p.cfg.retries {
			return nil, err
		}
		bound := p.cfg.backoff << min(attempt, 10)
		time.Sleep(time.Duration(rand.Int64N(int64(bound) + 1)))
	}
}

// Flush sends what is pending and waits for every outstanding request.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.flush(ctx); err != nil {
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
