package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/partitioner"
)

// ProducerOption configures a Producer.
type ProducerOption func(*producerConfig)

type producerConfig struct {
	batchSize   int
	batchBytes  int
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

// WithBatchBytes sets the most payload bytes (keys, values, header keys
// and values) per produce request. Default 1 MiB. A batch is cut when the
// next record would take it past n; a record larger than n goes alone.
// Keep n well below the broker's message limit (16 MiB by default): a
// request over it is refused.
func WithBatchBytes(n int) ProducerOption {
	return func(c *producerConfig) { c.batchBytes = max(n, 1) }
}

// WithLinger sets how long a partial batch waits for more records. Default 5ms.
func WithLinger(d time.Duration) ProducerOption { return func(c *producerConfig) { c.linger = d } }

// WithMaxInFlight sets how many requests may be outstanding. Default 16:
// with `durable` acks each request waits for its WAL object (about one
// flush interval and a PUT), and a smaller window leaves records waiting
// for a free request slot at moderate load (docs/performance.md, "The
// consumer side's tail"). With WithBatchBytes it bounds the bytes in
// flight: at most MaxInFlight x BatchBytes (16 MiB by default).
// With the idempotent producer (the default), at most 8 of them are
// batches of one partition, counted from the partition's oldest batch not
// yet acknowledged: the broker recognizes a retry only among a producer's
// last 8 batches in a partition, so a larger value helps only across
// partitions.
func WithMaxInFlight(n int) ProducerOption {
	return func(c *producerConfig) { c.maxInFlight = max(n, 1) }
}

// maxBackoff caps the wait between two attempts of a request.
const maxBackoff = 2 * time.Second

// WithRetries sets how many times a failed request is resent after
// transient errors, with exponential backoff from base (capped at 2s) and
// full jitter. Default 5 retries from 50ms. When the request's broker
// could not be reached, its retry also waits until the metadata names a
// new owner or the broker answers again (these waits take at most the
// client's failover timeout per request, WithFailoverTimeout). A NOT_OWNER redirect is no failure (nothing was stored): it is
// resent at once to the owner named, up to 10 redirects per request.
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
// once, also when the retry goes to the partition's next owner (the
// sequence state moves with the partition). Either way the producer
// partitions records itself (FNV-1a 32 of the key mod the partition
// count, as the broker does) and sends one request per partition batch,
// to the partition's owner.
func WithIdempotence(on bool) ProducerOption { return func(c *producerConfig) { c.idempotent = on } }

// WithRequestTimeout bounds one produce attempt, ack wait included.
// Default 30s.
func WithRequestTimeout(d time.Duration) ProducerOption {
	return func(c *producerConfig) { c.timeout = d }
}

// Result is the outcome of one Send.
type Result struct {
	done      chan struct{} // its batch's: every result of a batch is resolved at once
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

// maxPartitionInFlight bounds, for the idempotent producer, the batches of
// one partition sent from the oldest one not resolved yet to the newest:
// the broker remembers a producer's last 8 batches per partition, so the
// retry of any batch still unresolved is recognized (answered with its
// offsets) and never refused as "too old".
const maxPartitionInFlight = 8

// batch is the records of one request. Once cut from pending, its fields
// are guarded by Producer.mu.
type batch struct {
	part    int32
	recs    []*stratapb.Record
	results []*Result
	bytes   int  // the records' payload bytes (recordBytes)
	full    bool // BatchSize records, or BatchBytes reached or the next record did not fit
	due     bool // lingered or flushed: send it as soon as allowed

	req        *stratapb.ProduceRequest // set when first sent
	retrying   bool                     // an attempt failed and the outcome is not known yet
	attempting bool                     // an attempt is under way
	resolved   bool
	done       chan struct{} // closed when every result is
}

func (b *batch) fail(err error) {
	for _, res := range b.results {
		res.Err, res.Partition, res.Offset = err, b.part, -1
	}
	close(b.done) // also each result's done: after every field is set
}

// partState is what the idempotent producer knows of one partition under
// its current producer id.
type partState struct {
	seq    int32    // base sequence of the partition's next batch
	window []*batch // sent, oldest first, from the oldest unresolved one
}

// canSend reports whether a new batch of the partition may go out: the
// window has room and no batch of it is retrying (a later batch never
// passes a retrying one).
func (ps *partState) canSend() bool {
	if len(ps.window) >= maxPartitionInFlight {
		return false
	}
	for _, b := range ps.window {
		if b.retrying {
			return false
		}
	}
	return true
}

// mayResend reports whether retrying batch b may be sent again: no earlier
// batch of the partition still waits to be sent again (retries go out in
// sequence order).
func (ps *partState) mayResend(b *batch) bool {
	for _, e := range ps.window {
		if e == b {
			return true
		}
		if e.retrying && !e.attempting {
			return false
		}
	}
	return true
}

// Producer sends records to one topic.
//
// Batches are cut and sent by dispatch, under mu, whenever something
// changes (a batch fills, the linger ends, Flush, a request resolves, a
// producer id arrives); each sent batch has one goroutine that attempts
// it until it resolves. In the idempotent mode a batch gets its producer
// id and sequence numbers when it is sent, never before and never
// without an id: after a batch fails for good, nothing more is sent until
// every batch under the old id is resolved and a new id is taken.
type Producer struct {
	c        *Client
	topic    string
	cfg      producerConfig
	lookupMu sync.Mutex // serializes looking up the partition count
	// stopped ends when Close gives up waiting: every request, retry
	// sleep and wait of the producer's goroutines ends with it, so Close
	// can stop them.
	stopped context.Context
	stop    context.CancelFunc

	mu      sync.Mutex          // guards every field below
	pending map[int32]*batch    // being filled, per partition
	sent    map[*batch]struct{} // sent and not resolved: at most cfg.maxInFlight
	changed chan struct{}       // closed and replaced when a batch is sent or resolved or the producer id changes
	timer   *time.Timer         // lingers for the pending batches
	closed  bool
	// partitions is the topic's partition count (0: not looked up yet);
	// written under lookupMu and mu.
	partitions int32
	rr         uint32
	sticky     int32 // partition of keyless records until its batch is cut; -1: pick one
	// Idempotent state:
	producerID int64 // 0: none yet
	epoch      int32
	needID     bool // send nothing until a (new) producer id is taken
	initing    bool // InitProducer is under way
	parts      map[int32]*partState
	// Send allocates records and results from these slabs, slabSize at a
	// time, rather than two objects and a channel per record.
	recSlab []stratapb.Record
	resSlab []Result
}

// slabSize is how many records (and results) Send allocates at once.
const slabSize = 64

// newRecord returns a zero record from the slab. Caller holds mu.
func (p *Producer) newRecord() *stratapb.Record {
	if len(p.recSlab) == cap(p.recSlab) {
		p.recSlab = make([]stratapb.Record, 0, slabSize)
	}
	p.recSlab = p.recSlab[:len(p.recSlab)+1]
	return &p.recSlab[len(p.recSlab)-1]
}

// newResult returns a zero result from the slab. Caller holds mu.
func (p *Producer) newResult() *Result {
	if len(p.resSlab) == cap(p.resSlab) {
		p.resSlab = make([]Result, 0, slabSize)
	}
	p.resSlab = p.resSlab[:len(p.resSlab)+1]
	return &p.resSlab[len(p.resSlab)-1]
}

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("client: producer closed")

// NewProducer returns a producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	cfg := producerConfig{batchSize: 500, batchBytes: 1 << 20, linger: 5 * time.Millisecond, maxInFlight: 16, retries: 5, backoff: 50 * time.Millisecond,
		partition: -1, acks: stratapb.Acks_ACKS_DURABLE, idempotent: true, timeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	stopped, stop := context.WithCancel(context.Background())
	return &Producer{c: c, topic: topic, cfg: cfg, pending: map[int32]*batch{}, sent: map[*batch]struct{}{},
		changed: make(chan struct{}), sticky: -1, needID: cfg.idempotent, parts: map[int32]*partState{},
		stopped: stopped, stop: stop}
}

// ProducerID is the id the broker gave this producer (0 before the first
// idempotent batch is sent, or when idempotence is off).
func (p *Producer) ProducerID() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.producerID
}

// lookup learns the topic's partition count, once.
func (p *Producer) lookup(ctx context.Context) error {
	p.mu.Lock()
	n := p.partitions
	p.mu.Unlock()
	if n > 0 {
		return nil
	}
	p.lookupMu.Lock()
	defer p.lookupMu.Unlock()
	p.mu.Lock()
	n = p.partitions
	p.mu.Unlock()
	if n > 0 {
		return nil
	}
	n, err := p.c.partitionCount(ctx, p.topic)
	if err != nil {
		return fmt.Errorf("client: look up topic %q: %w", p.topic, err)
	}
	if n <= 0 {
		return status.Errorf(codes.NotFound, "client: topic %q does not exist", p.topic)
	}
	p.mu.Lock()
	p.partitions = n
	p.mu.Unlock()
	return nil
}

// msgIDHeader is the header of a record's message id (core.HeaderMsgID):
// the broker deduplicates by it, per partition.
const msgIDHeader = "strata-msg-id"

// partitionOf picks a record's partition, as the broker would: by key, or
// for a keyless record with a message id by the id (so its copies reach
// the partition that deduplicates them). Caller holds mu.
func (p *Producer) partitionOf(r *stratapb.Record) int32 {
	switch {
	case p.cfg.partition >= 0:
		return p.cfg.partition
	case r.Key != nil:
		return partitioner.ForKey(r.Key, p.partitions)
	}
	for _, h := range r.Headers {
		if h.Key == msgIDHeader {
			return partitioner.ForKey(h.Value, p.partitions)
		}
	}
	// Keyless records stick to one partition until its batch is cut, so
	// they make full batches rather than one small request per partition.
	if p.sticky < 0 {
		p.rr++
		p.sticky = int32(p.rr % uint32(p.partitions))
	}
	return p.sticky
}

// Send queues a record and returns its Result. It blocks only while the
// record's partition has a full batch that cannot be sent yet (MaxInFlight
// requests are outstanding; or, idempotent, the partition's batches wait
// for a retry or fill its window, or a producer id is being taken); then
// it returns ctx's error if ctx ends first, and the record is not queued.
func (p *Producer) Send(ctx context.Context, r Record) (*Result, error) {
	if p.cfg.idempotent || p.cfg.partition < 0 {
		if err := p.lookup(ctx); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := p.newRecord()
	fillProto(rec, &r)
	size := recordBytes(rec)
	for {
		if p.closed {
			return nil, ErrProducerClosed
		}
		part := p.partitionOf(rec)
		b := p.pending[part]
		if b == nil {
			b = &batch{part: part, done: make(chan struct{})}
			p.pending[part] = b
		}
		if !b.full && (len(b.recs) == 0 || b.bytes+size <= p.cfg.batchBytes) {
			res := p.newResult()
			res.done = b.done
			b.recs = append(b.recs, rec)
			b.results = append(b.results, res)
			b.bytes += size
			if len(b.recs) >= p.cfg.batchSize || b.bytes >= p.cfg.batchBytes {
				p.cut(b)
			} else if p.timer == nil {
				p.timer = time.AfterFunc(p.cfg.linger, p.lingered)
			}
			return res, nil
		}
		if !b.full {
			// The record does not fit: the batch is full, and goes out
			// if it can; a keyless record then goes to the next batch.
			p.cut(b)
			if p.pending[part] != b {
				continue
			}
		}
		// The partition's batch is full and cannot go out yet: wait, so
		// memory stays bounded.
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
			p.mu.Lock()
		case <-ctx.Done():
			p.mu.Lock()
			return nil, ctx.Err()
		}
	}
}

// cut marks b full and sends it if the in-flight bounds allow. Caller
// holds mu.
func (p *Producer) cut(b *batch) {
	b.full = true
	if b.part == p.sticky {
		p.sticky = -1
	}
	p.dispatch()
}

// recordBytes is a record's payload in a request: key, value, header keys
// and values (what BatchBytes and the broker's produce byte counts count).
func recordBytes(r *stratapb.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// lingered makes every pending batch due when the linger ends.
func (p *Producer) lingered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	for _, b := range p.pending {
		b.due = true
	}
	p.dispatch()
}

// signal wakes whoever waits for a change. Caller holds mu.
func (p *Producer) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// dispatch sends every pending batch that is full or due, as far as the
// in-flight bounds allow, or starts taking a producer id when one is
// needed. It never blocks. Caller holds mu.
func (p *Producer) dispatch() {
	ready := func(b *batch) bool { return b.due || b.full }
	if p.cfg.idempotent && p.needID {
		if p.initing || len(p.sent) > 0 {
			return // the batches sent under the old id are resolved first
		}
		for _, b := range p.pending {
			if ready(b) {
				p.initing = true
				go p.takeID()
				return
			}
		}
		return
	}
	sent := false
	for part, b := range p.pending {
		if len(p.sent) >= p.cfg.maxInFlight {
			break
		}
		if !ready(b) {
			continue
		}
		req := &stratapb.ProduceRequest{Topic: p.topic, Partition: part, Records: b.recs, Acks: p.cfg.acks, TimeoutMs: int32(p.cfg.timeout / time.Millisecond)}
		if p.cfg.idempotent {
			ps := p.parts[part]
			if ps == nil {
				ps = &partState{}
				p.parts[part] = ps
			}
			if !ps.canSend() {
				continue
			}
			req.ProducerId, req.ProducerEpoch, req.BaseSequence = p.producerID, p.epoch, ps.seq
			ps.seq += int32(len(b.recs))
			ps.window = append(ps.window, b)
		}
		delete(p.pending, part)
		if part == p.sticky {
			p.sticky = -1
		}
		b.req, b.attempting = req, true
		p.sent[b] = struct{}{}
		sent = true
		go p.run(b)
	}
	if sent {
		p.signal()
	}
}

// takeID gets a producer id for the batches waiting to be sent. If none
// can be had, those batches fail: none of them was sent.
func (p *Producer) takeID() {
	var (
		resp *stratapb.InitProducerResponse
		err  error
	)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.stopped, p.cfg.timeout)
		resp, err = p.c.api.InitProducer(ctx, &stratapb.InitProducerRequest{})
		cancel()
		if err == nil || !retryable(err) || attempt >= p.cfg.retries || !p.sleep(jitter(backoff(p.cfg.backoff, attempt, maxBackoff))) {
			break
		}
	}
	var failed []*batch
	p.mu.Lock()
	p.initing = false
	if err == nil {
		p.producerID, p.epoch, p.needID, p.parts = resp.ProducerId, resp.ProducerEpoch, false, map[int32]*partState{}
	} else {
		for part, b := range p.pending {
			if b.due || b.full {
				failed = append(failed, b)
				delete(p.pending, part)
				if part == p.sticky {
					p.sticky = -1
				}
			}
		}
		err = fmt.Errorf("client: %s: could not get a producer id (InitProducer: %w), so these records were not sent and none of them is stored; send them again", p.topic, err)
	}
	p.dispatch()
	p.signal()
	p.mu.Unlock()
	for _, b := range failed {
		b.fail(err)
	}
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		return !tooLarge(err) // a full buffer or a quota passes; the size stays
	}
	return false
}

// tooLarge reports a message over a gRPC size limit ("received message
// larger than max (N vs. LIMIT)"): the request, refused unread by the
// broker's transport (its MaxRecvMsgSize), or the broker's answer,
// refused by this client's (MaxCallRecvMsgSize) after the broker acted
// on the request. Resending cannot succeed either way.
func tooLarge(err error) bool {
	return status.Code(err) == codes.ResourceExhausted && strings.Contains(status.Convert(err).Message(), "larger than max")
}

// oversize is the size gRPC named in a tooLarge error, or -1.
func oversize(err error) int {
	m := status.Convert(err).Message()
	i := strings.Index(m, "larger than max (")
	if i < 0 {
		return -1
	}
	var n, limit int
	if _, err := fmt.Sscanf(m[i+len("larger than max ("):], "%d vs. %d)", &n, &limit); err != nil {
		return -1
	}
	return n
}

// run attempts b until it is acknowledged, fails for good or runs out of
// retries, then resolves it. Each attempt goes to the partition's owner as
// the client knows it; a NOT_OWNER answer (nothing was stored) is resent
// to the owner it names without counting as a failure; after a failure to
// reach the broker, the retry also waits until the client knows where to
// send it (Client.awaitOwner; at most the failover timeout in all). Resends keep the partition's order: they
// go through the same retrying/mayResend gate as any retry.
func (p *Producer) run(b *batch) {
	var (
		resp *stratapb.ProduceResponse
		addr string
		err  error
	)
	attempts, failures, redirects := 0, 0, 0
	var failoverEnd time.Time // waiting for a new owner ends then (from the first failure to reach one)
	for {
		attempts++
		ctx, cancel := context.WithTimeout(p.stopped, p.cfg.timeout+5*time.Second)
		resp, addr, err = p.c.produceOnce(ctx, b.req)
		cancel()
		if err == nil {
			break
		}
		_, moved := NotOwner(err)
		if moved {
			redirects++
			if redirects > maxRedirects {
				break
			}
		} else {
			failures++
			if !retryable(err) || failures > p.cfg.retries {
				break
			}
		}
		p.mu.Lock()
		b.retrying, b.attempting = true, false // later batches of the partition wait
		p.mu.Unlock()
		var wait time.Duration
		switch {
		case moved && redirects == 1:
		case moved:
			wait = jitter(backoff(redirectBackoff, redirects-2, maxBackoff))
		default:
			wait = jitter(backoff(p.cfg.backoff, failures-1, maxBackoff))
		}
		if !p.sleep(wait) {
			break // Close gave up: resolved with the last error
		}
		if unreachable(err) {
			if failoverEnd.IsZero() {
				failoverEnd = time.Now().Add(p.c.cfg.failover)
			}
			p.c.awaitOwner(p.stopped, func() string { a, _ := p.c.cachedOwner(p.topic, b.part); return a }, addr, failoverEnd)
		}
		p.mu.Lock()
		if p.cfg.idempotent {
			for ps := p.parts[b.part]; !ps.mayResend(b) && p.stopped.Err() == nil; {
				ch := p.changed
				p.mu.Unlock()
				select {
				case <-ch:
				case <-p.stopped.Done():
				}
				p.mu.Lock()
			}
		}
		b.attempting = true
		p.signal() // a later retrying batch may go now
		p.mu.Unlock()
	}
	p.resolve(b, resp, err, attempts, redirects)
}

// resolve delivers b's outcome after attempts, redirects of them answered
// NOT_OWNER.
func (p *Producer) resolve(b *batch, resp *stratapb.ProduceResponse, err error, attempts, redirects int) {
	p.mu.Lock()
	delete(p.sent, b)
	b.resolved, b.retrying, b.attempting = true, false, false
	if p.cfg.idempotent {
		ps := p.parts[b.part]
		for len(ps.window) > 0 && ps.window[0].resolved {
			ps.window[0] = nil
			ps.window = ps.window[1:]
		}
		if err != nil {
			// A gap in the partition's sequence: its later batches would
			// be refused. Take a new producer id once every batch sent
			// under this one is resolved.
			p.needID = true
		}
	}
	p.dispatch()
	p.signal()
	p.mu.Unlock()
	if err != nil {
		where := fmt.Sprintf("%s/%d", p.topic, b.part)
		if _, moved := NotOwner(err); moved {
			stored := "not stored"
			if attempts > redirects {
				stored = "not acknowledged (an earlier attempt failed: they may or may not be stored)"
			}
			err = fmt.Errorf("client: %s: %d records %s: still redirected after %d attempts (the brokers disagree on the partition's owner until their views converge by gossip); send them again: %w", where, len(b.recs), stored, attempts, err)
		} else if tooLarge(err) && oversize(err) == proto.Size(b.req) {
			// The request itself (its size is the one named): refused
			// unread by the broker's transport.
			stored := "none of them is stored"
			if attempts-redirects > 1 {
				stored = "an earlier attempt failed, so they may or may not be stored"
			}
			err = fmt.Errorf("client: %s: %d records (%d bytes of payload) in one request over the broker's message limit: the broker refused it unread and %s; send smaller records or batches (WithBatchBytes), or raise the broker's --max-message-bytes: %w", where, len(b.recs), b.bytes, stored, err)
		} else if tooLarge(err) {
			// The broker's answer, over this client's receive limit: the
			// broker acted on the request.
			err = fmt.Errorf("client: %s: %d records not acknowledged: the broker's answer was over this client's gRPC receive limit, so they may or may not be stored (most likely stored: sending them again may store them twice); raise the limit (grpc.MaxCallRecvMsgSize in WithDialOptions) or send smaller batches (WithBatchSize): %w", where, len(b.recs), err)
		} else if retryable(err) {
			err = fmt.Errorf("client: %s: %d records not acknowledged after %d attempts; they may or may not be stored: %w", where, len(b.recs), attempts, err)
		} else {
			err = fmt.Errorf("client: %s: %d records failed: %w", where, len(b.recs), err)
		}
		b.fail(err)
		return
	}
	for i, res := range b.results {
		res.Partition, res.Offset = resp.Partitions[i], resp.Offsets[i]
	}
	close(b.done) // also each result's done: after every field is set
}

// Flush sends what is pending and waits until every batch pending or
// outstanding when it was called is resolved (acknowledged or failed: see
// each Result).
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	var wait []*batch
	for _, b := range p.pending {
		b.due = true
		wait = append(wait, b)
	}
	for b := range p.sent {
		wait = append(wait, b)
	}
	p.dispatch()
	p.mu.Unlock()
	for _, b := range wait {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close flushes and stops the producer, waiting for outstanding batches
// at most until ctx ends. Batches still retrying then give up at once and
// fail (their outcome is unknown: they may be stored), so no goroutine of
// the producer outlives Close for long. It is idempotent.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.stop() // what is still retrying gives up now and is resolved as failed
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	return err
}

// sleep waits d, or until Close gives up; it reports whether to go on.
func (p *Producer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stopped.Done():
		return false
	}
}
