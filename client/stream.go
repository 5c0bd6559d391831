package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/stratalog/strata/api/stratapb"
)

// StreamOption configures a PartitionStream.
type StreamOption func(*streamConfig)

type streamConfig struct {
	offset   int64 // -1: the start given by latest
	latest   bool
	maxBytes int32
	records  bool
	workers  int
	ahead    int
}

// StreamFrom starts the stream at offset (default: the earliest offset).
func StreamFrom(offset int64) StreamOption {
	return func(c *streamConfig) { c.offset, c.latest = offset, false }
}

// StreamFromLatest starts the stream at the end: only records appended
// from now on.
func StreamFromLatest() StreamOption {
	return func(c *streamConfig) { c.offset, c.latest = -1, true }
}

// StreamMaxBytes bounds each response of the stream (default 1 MiB; the
// broker clamps it to its own cap). With stored blocks it counts stored,
// compressed bytes; keep it below the connection's receive limit.
func StreamMaxBytes(n int32) StreamOption { return func(c *streamConfig) { c.maxBytes = n } }

// StreamStoredBlocks chooses stored blocks (on, the default) or records
// decoded by the broker (off); see WithStoredBlocks.
func StreamStoredBlocks(on bool) StreamOption { return func(c *streamConfig) { c.records = !on } }

// StreamWorkers sets how many blocks are decoded at once (default
// GOMAXPROCS).
func StreamWorkers(n int) StreamOption { return func(c *streamConfig) { c.workers = max(1, n) } }

// PartitionStream follows one partition with one fetch stream: it reads
// ahead while the caller handles what Next returned, decodes stored
// blocks on up to StreamWorkers goroutines, and returns the records in
// offset order. Memory is bounded: at most a few responses are read ahead
// (2 x workers blocks, decoded or being decoded); beyond that the stream
// stops reading and gRPC flow control holds the broker back.
//
// A PartitionStream does not reconnect: after an error (the broker went
// away, a corrupt block), Next returns it from then on; open a new stream
// from the offset after the last record returned. Next is safe for
// concurrent use but returns each record once, to one caller. Close stops
// the stream's goroutines and waits for them; it is idempotent.
type PartitionStream struct {
	topic     string
	partition int32
	cancel    context.CancelFunc
	items     chan *streamItem // in offset order; closed when the reader stops
	wg        sync.WaitGroup   // the reader and the decoders

	mu   sync.Mutex  // serializes Next; guards the fields below
	head *streamItem // dequeued, not yet returned (Next's ctx ended while it decoded)
	err  error       // the stream's end, returned by every later Next
}

// streamItem is one piece of the stream: a block's records (being decoded
// until done is closed) or a response's records, or the stream's end.
type streamItem struct {
	done chan struct{}
	recs []Record
	err  error
}

type decodeJob struct {
	it   *streamItem
	b    *stratapb.StoredBlock
	skip int64
}

// ErrStreamClosed is what Next returns after Close.
var ErrStreamClosed = errors.New("client: partition stream closed")

// StreamPartition opens a following fetch stream of partition p of topic,
// from the earliest offset unless an option says otherwise. It goes to
// the partition's owner when the client knows one (else any broker).
// ctx bounds opening the stream only; Close (or the Client's) ends it.
func (c *Client) StreamPartition(ctx context.Context, topic string, p int32, opts ...StreamOption) (*PartitionStream, error) {
	cfg := streamConfig{offset: -1, maxBytes: 1 << 20, workers: decodeWorkers()}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.ahead = 2 * cfg.workers
	req := &stratapb.FetchRequest{Topic: topic, Partition: p, MaxBytes: cfg.maxBytes, MaxWaitMs: 500, Follow: true, StoredBlocks: !cfg.records}
	switch {
	case cfg.offset >= 0:
		req.Start = &stratapb.FetchRequest_Offset{Offset: cfg.offset}
	case cfg.latest:
		req.Start = &stratapb.FetchRequest_Latest{Latest: true}
	default:
		req.Start = &stratapb.FetchRequest_Earliest{Earliest: true}
	}
	sctx, cancel := context.WithCancel(c.closed)
	stop := context.AfterFunc(ctx, cancel) // an ended ctx before the stream is up ends it
	stream, err := c.api.Fetch(sctx, req)
	stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: stream partition %d of %s: %w", p, topic, err)
	}
	s := &PartitionStream{topic: topic, partition: p, cancel: cancel, items: make(chan *streamItem, cfg.ahead)}
	jobs := make(chan decodeJob, cfg.ahead)
	for range cfg.workers {
		s.wg.Go(func() {
			for j := range jobs {
				j.it.recs, j.it.err = decodeBlock(topic, p, j.b, j.skip)
				close(j.it.done)
			}
		})
	}
	s.wg.Go(func() {
		defer close(s.items)
		defer close(jobs)
		push := func(it *streamItem) bool {
			select {
			case s.items <- it:
				return true
			case <-sctx.Done():
				return false
			}
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if sctx.Err() == nil {
					push(doneItem(nil, fmt.Errorf("client: stream partition %d of %s: %w", p, topic, err)))
				}
				return
			}
			if err := checkOrder(topic, p, resp); err != nil {
				push(doneItem(nil, err))
				return
			}
			for _, b := range resp.Blocks {
				it := &streamItem{done: make(chan struct{})}
				select {
				case jobs <- decodeJob{it: it, b: b, skip: resp.SkipBefore}:
				case <-sctx.Done():
					return
				}
				if !push(it) {
					return
				}
			}
			if len(resp.Records) > 0 {
				recs := make([]Record, len(resp.Records))
				for i, r := range resp.Records {
					recs[i] = fromProto(topic, r)
				}
				if !push(doneItem(recs, nil)) {
					return
				}
			}
		}
	})
	return s, nil
}

func doneItem(recs []Record, err error) *streamItem {
	it := &streamItem{done: make(chan struct{}), recs: recs, err: err}
	close(it.done)
	return it
}

// Next returns the next records of the partition, in offset order (one
// stored block's, or one response's records), waiting until there are
// some, ctx ends, or the stream fails.
func (s *PartitionStream) Next(ctx context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return nil, s.err
		}
		if s.head == nil {
			select {
			case it, ok := <-s.items:
				if !ok {
					s.err = ErrStreamClosed
					continue
				}
				s.head = it
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-s.head.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		it := s.head
		s.head = nil
		if it.err != nil {
			s.err = it.err
			continue
		}
		if len(it.recs) > 0 {
			return it.recs, nil
		}
	}
}

// Close ends the stream and waits for its goroutines. It is idempotent.
func (s *PartitionStream) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}
