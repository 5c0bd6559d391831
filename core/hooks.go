package core

import (
	"context"
	"fmt"
	"time"

	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/segment"
)

// Hooks: the broker publishes what happens in it (a produce answered, a
// fetch result sent, a WAL object stored, a segment sealed) to the values
// in Config.Hooks, so a metrics adapter (package metrics) or a test can
// count events without the core importing a metrics library. A hook is
// any value implementing one or more of the interfaces below, one per
// event (as franz-go's hooks); New checks each with type assertions once,
// and Validate refuses a value that implements none.
//
// Every hook is called synchronously, on the goroutine where the event
// happens (a produce's caller, a fetch's sender, the WAL flusher, a
// partition's sealer), from many goroutines at once. A hook must be safe
// for concurrent use, cheap (atomic counters; no I/O, no lock held for
// long) and must never block: a hook that blocks stalls the data path it
// was called from (the WAL flusher delays every ack). A hook must not call
// back into the broker.
//
// What the hooks do not cover is read from the broker when it is needed
// (at a scrape): Stats (the read cache, the WAL buffer), OpenPartitions,
// and consumer lag (LagGroups, DescribeGroup). Object-store requests are
// observed by wrapping Config.Store in a tier.ObservedStore.
type Hook any

// ProduceHook is told of every Produce call when it returns.
type ProduceHook interface {
	OnProduce(ProduceEvent)
}

// ProduceEvent is one Produce call.
type ProduceEvent struct {
	Topic string
	// Acks is the request's ack mode with the default resolved (never
	// AcksDefault; an invalid mode is passed as given).
	Acks Acks
	// Records and Bytes are the request's records and their payload
	// bytes (keys, values, header keys and values; no per-record
	// overhead): acknowledged when Err is nil.
	Records int
	Bytes   int64
	// Duration: from the call until the answer, the wait for the ack
	// condition included.
	Duration time.Duration
	// Err is the call's error (an *Error, with its Kind), nil when the
	// records were acknowledged.
	Err error
}

// FetchHook is told of every result a Fetch sends (an empty one too:
// a long poll that found nothing).
type FetchHook interface {
	OnFetch(FetchEvent)
}

// FetchEvent is one fetch result sent.
type FetchEvent struct {
	Topic     string
	Partition int32
	Records   int
	Bytes     int64 // payload bytes, as in ProduceEvent, of the records sent as records
	// StoredBytes is the bytes of the sealed blocks sent as stored
	// (FetchRequest.Stored): compressed, their payload is not known to
	// the broker and not in Bytes; their records are in Records.
	StoredBytes int64
}

// WALFlushHook is told of every WAL flush when it ends (stored, or given
// up because the incarnation was fenced or the broker closed).
type WALFlushHook interface {
	OnWALFlush(WALFlushEvent)
}

// WALFlushEvent is one WAL object flush.
type WALFlushEvent struct {
	Bytes    int64 // the object's size
	Records  int64
	Attempts int           // PUT attempts, retries included
	Duration time.Duration // until stored (or given up), retries included
	Err      error         // nil when stored
}

// SealHook is told of every segment sealed into the object store.
type SealHook interface {
	OnSegmentSealed(SealEvent)
}

// SealEvent is one sealed segment.
type SealEvent struct {
	Topic     string // the topic's name (internal topics included)
	Partition int32
	Records   int64
	Bytes     int64 // the segment object's size
	Duration  time.Duration
}

// hooks are Config.Hooks sorted by the events they take.
type hooks struct {
	produce []ProduceHook
	fetch   []FetchHook
	flush   []WALFlushHook
	seal    []SealHook
}

// sortHooks sorts hs by interface; ok is false for a hook that implements
// none.
func sortHooks(hs []Hook) (out hooks, err error) {
	for i, h := range hs {
		known := false
		if x, ok := h.(ProduceHook); ok {
			out.produce, known = append(out.produce, x), true
		}
		if x, ok := h.(FetchHook); ok {
			out.fetch, known = append(out.fetch, x), true
		}
		if x, ok := h.(WALFlushHook); ok {
			out.flush, known = append(out.flush, x), true
		}
		if x, ok := h.(SealHook); ok {
			out.seal, known = append(out.seal, x), true
		}
		if !known {
			return hooks{}, fmt.Errorf("core: Hooks[%d] (%T) implements none of the hook interfaces (ProduceHook, FetchHook, WALFlushHook, SealHook)", i, h)
		}
	}
	return out, nil
}

// payloadBytes is what the hooks count as a record's bytes.
func payloadBytes(r *segment.Record) int64 {
	n := int64(len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

func recordsBytes(rs []segment.Record) int64 {
	var n int64
	for i := range rs {
		n += payloadBytes(&rs[i])
	}
	return n
}

// Produce validates every record, appends per partition, then waits for
// the ack condition (docs/durability.md). A request with one bad record
// appends nothing. A record that repeats a message id stored within the
// dedup window is answered with the stored copy's offset (ProduceResult.
// Deduplicated) once that copy meets the ack condition. The ProduceHooks
// are told when it returns.
func (b *Broker) Produce(ctx context.Context, req *ProduceRequest) (*ProduceResult, error) {
	if len(b.hooks.produce) == 0 {
		return b.produce(ctx, req)
	}
	start := time.Now()
	res, err := b.produce(ctx, req)
	acks := req.Acks
	if acks == AcksDefault {
		acks = AcksDurable
	}
	ev := ProduceEvent{Topic: req.Topic, Acks: acks, Records: len(req.Records), Bytes: recordsBytes(req.Records), Duration: time.Since(start), Err: err}
	for _, h := range b.hooks.produce {
		h.OnProduce(ev)
	}
	return res, err
}

// onFetch tells the FetchHooks of a result about to be sent (nil: an
// empty one).
func (b *Broker) onFetch(topic string, p int32, res *FetchResult) {
	if len(b.hooks.fetch) == 0 {
		return
	}
	ev := FetchEvent{Topic: topic, Partition: p}
	if res != nil {
		ev.Records, ev.Bytes = len(res.Records), recordsBytes(res.Records)
		for i := range res.Blocks {
			bl := &res.Blocks[i]
			ev.Records += int(min(bl.Records, bl.LastOffset-max(bl.FirstOffset, res.SkipBefore)+1))
			ev.StoredBytes += int64(len(bl.Data))
		}
	}
	for _, h := range b.hooks.fetch {
		h.OnFetch(ev)
	}
}

// walFlushHook is the WAL writers' OnFlush: nil without WALFlushHooks.
func (b *Broker) walFlushHook() func(wal.Flush) {
	if len(b.hooks.flush) == 0 {
		return nil
	}
	return func(f wal.Flush) {
		ev := WALFlushEvent{Bytes: f.Bytes, Records: f.Records, Attempts: f.Attempts, Duration: f.Duration, Err: f.Err}
		for _, h := range b.hooks.flush {
			h.OnWALFlush(ev)
		}
	}
}

// sealHook is partition p of topic name's OnSeal: nil without SealHooks.
func (b *Broker) sealHook(name string, p int32) func(ingest.Sealed) {
	if len(b.hooks.seal) == 0 {
		return nil
	}
	return func(s ingest.Sealed) {
		ev := SealEvent{Topic: name, Partition: p, Records: s.Records, Bytes: s.Bytes, Duration: s.Duration}
		for _, h := range b.hooks.seal {
			h.OnSegmentSealed(ev)
		}
	}
}

// LagGroups names the consumer groups this broker reports lag for: those
// with state in the bucket or members here (ListGroups) that the cluster
// proposes this broker to coordinate (every group in a cluster of one), so
// each group's lag is reported by one broker. Sorted by name.
func (b *Broker) LagGroups(ctx context.Context) ([]string, error) {
	all, err := b.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, g := range all {
		if b.checkCoordinator(g) == nil {
			out = append(out, g)
		}
	}
	return out, nil
}
