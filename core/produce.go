package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/stratalog/strata/partitioner"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

const (
	// RecordOverheadBytes is what a record costs beyond its key, value
	// and headers, in every limit (MaxRecordBytes too): an empty record is
	// never free.
	RecordOverheadBytes = 64
	// HeaderOverheadBytes is what a header costs beyond its key and value.
	HeaderOverheadBytes = 32
)

// RecordCost is what record r costs in every limit: its key, value and
// headers plus RecordOverheadBytes, and HeaderOverheadBytes per header.
func RecordCost(r *segment.Record) int64 {
	n := int64(RecordOverheadBytes + len(r.Key) + len(r.Value))
	for _, h := range r.Headers {
		n += int64(HeaderOverheadBytes + len(h.Key) + len(h.Value))
	}
	return n
}

// Acks is when a produce request is answered (docs/durability.md).
type Acks int32

const (
	AcksDefault Acks = 0 // the broker's default: durable
	AcksNone    Acks = 1 // on receipt: the records have offsets, nothing more
	AcksLocal   Acks = 2 // after the broker's local log is fsynced
	AcksDurable Acks = 3 // after the records are in the object store
)

func (a Acks) String() string {
	switch a {
	case AcksDefault:
		return "default"
	case AcksNone:
		return "none"
	case AcksLocal:
		return "local"
	case AcksDurable:
		return "durable"
	}
	return "unknown"
}

// ProduceRequest is a batch of records for one topic.
type ProduceRequest struct {
	Topic string
	// Partition is where every record goes, or -1 to partition by key
	// (partitioner.ForKey; a record without a key by its message id,
	// HeaderMsgID, the same way; round robin for a record with neither).
	Partition int32
	// Records: Offset is ignored; a Timestamp of 0 is the broker's time.
	Records []segment.Record
	Acks    Acks
	// Timeout bounds the wait for the ack condition; 0 means the broker's
	// ProduceTimeout.
	Timeout time.Duration
	// ProducerID (from InitProducer; 0 for none), ProducerEpoch and
	// BaseSequence make the request idempotent: a retry is answered with
	// the stored offsets instead of storing a second copy.
	ProducerID    int64
	ProducerEpoch int32
	BaseSequence  int32
}

// ProduceResult says where every record of a request went.
type ProduceResult struct {
	Partitions []int32 // per record
	Offsets    []int64 // per record
	// Duplicate: the batch (or one of them) was a retry of a stored one;
	// the offsets are the stored ones.
	Duplicate bool
	// Deduplicated, per record, is true for a record whose message id
	// (HeaderMsgID) its partition stored within the topic's dedup window,
	// earlier or in this request: it was not stored again, and its offset
	// is the stored copy's. Nil when no record was.
	Deduplicated []bool
}

// produce is Produce (hooks.go) without the hooks.
func (b *Broker) produce(ctx context.Context, req *ProduceRequest) (*ProduceResult, error) {
	if err := clientTopic(req.Topic, "write"); err != nil {
		return nil, err
	}
	t, err := b.loadTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	if len(req.Records) == 0 {
		return nil, errorf(ErrInvalidArgument, "no records: a produce request needs at least one")
	}
	if req.Partition < -1 || req.Partition >= t.cfg.Partitions {
		return nil, errorf(ErrInvalidArgument, "partition %d out of range: topic %q has partitions 0-%d (or -1 to partition by key)", req.Partition, t.cfg.Name, t.cfg.Partitions-1)
	}
	acks := req.Acks
	if acks == AcksDefault {
		acks = AcksDurable
	}
	if acks < AcksNone || acks > AcksDurable {
		return nil, errorf(ErrInvalidArgument, "unknown acks %d: use none, local or durable", acks)
	}
	idempotent := req.ProducerID != 0
	if idempotent {
		switch {
		case req.ProducerID < 0:
			return nil, errorf(ErrInvalidArgument, "producer id %d is negative: get one from InitProducer", req.ProducerID)
		case req.Partition < 0:
			return nil, errorf(ErrInvalidArgument, "an idempotent produce request names its partition: sequences are per partition (the client partitions by key itself)")
		case req.BaseSequence < 0 || req.ProducerEpoch < 0 || req.ProducerEpoch > math.MaxInt16:
			return nil, errorf(ErrInvalidArgument, "producer epoch %d or base sequence %d out of range", req.ProducerEpoch, req.BaseSequence)
		}
	}
	timeout := b.cfg.ProduceTimeout
	if req.Timeout > 0 {
		timeout = req.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Validate everything before appending anything.
	now := time.Now().UnixMilli()
	parts := make([]int32, len(req.Records))
	batches := map[int32]*segment.Batch{}
	index := map[int32][]int{}
	var order []int32
	for i := range req.Records {
		r := &req.Records[i]
		if c := RecordCost(r); c > int64(b.cfg.MaxRecordBytes) {
			return nil, errorf(ErrInvalidArgument, "record %d costs %d bytes (key, value and headers plus %d bytes per record and %d per header), over the %d-byte limit; nothing was written: split it or raise --max-record-bytes", i, c, RecordOverheadBytes, HeaderOverheadBytes, b.cfg.MaxRecordBytes)
		}
		id, hasID, err := msgIDOf(i, r)
		if err != nil {
			return nil, err
		}
		p := req.Partition
		if p < 0 {
			switch {
			case r.Key != nil:
				p = partitioner.ForKey(r.Key, t.cfg.Partitions)
			case hasID:
				// Dedup is per partition: copies of one id meet there.
				p = partitioner.ForKey(id, t.cfg.Partitions)
			default:
				p = b.ownedRoundRobin(t)
			}
		}
		parts[i] = p
		bt, ok := batches[p]
		if !ok {
			bt = &segment.Batch{ProducerID: segment.NoProducer}
			if idempotent {
				bt.ProducerID, bt.ProducerEpoch, bt.BaseSequence = req.ProducerID, int16(req.ProducerEpoch), req.BaseSequence
			}
			batches[p] = bt
			order = append(order, p)
		}
		rec := segment.Record{Timestamp: r.Timestamp, Key: r.Key, Value: r.Value, Headers: r.Headers}
		if rec.Timestamp == 0 {
			rec.Timestamp = now
		}
		if hasQueueHeaders(&rec) {
			rec.Headers = append([]segment.Header(nil), rec.Headers...) // the caller's stay as given
			if err := queueHeaders(&rec, now); err != nil {
				return nil, errorf(ErrInvalidArgument, "record %d: %v; nothing was written", i, err)
			}
		}
		bt.Records = append(bt.Records, rec)
		index[p] = append(index[p], i)
	}
	for _, p := range order {
		if err := b.checkWriter(t, p); err != nil {
			return nil, err
		}
	}
	res := &ProduceResult{Partitions: parts, Offsets: make([]int64, len(req.Records))}
	type written struct {
		part *partition
		end  int64
	}
	var done []written
	for _, p := range order {
		part, err := b.partition(ctx, t, p)
		if err != nil {
			return nil, err
		}
		wr, err := part.log.Write(ctx, batches[p])
		if err != nil {
			if errors.Is(err, tier.ErrFenced) {
				// Another broker claimed the partition (its manifest CAS
				// beat ours) but may not have fenced our WAL (it may have
				// crashed first). Retire our incarnation: the next write
				// here claims the partition again under a new one and
				// recovers what we and the other stored.
				go b.retire(part.wal, "a partition's manifest was claimed by another broker")
				if o, self := b.ownerOf(t.cfg.OwnerKey(p)); !self {
					// The cluster names the new owner: redirect there.
					return nil, &Error{Kind: ErrNotOwner, Owner: &o, Cause: err, Msg: fmt.Sprintf(
						"partition %s/%d was taken over by broker %s at %s while this broker (%s) held it; this request's records for it were not stored (in a request that spans partitions, those of partitions before it may have been): send them there",
						t.cfg.Name, p, o.ID, o.Addr, b.self().ID)}
				}
			}
			return nil, classify(err)
		}
		res.Duplicate = res.Duplicate || wr.Duplicate
		for j, i := range index[p] {
			if wr.Offsets == nil {
				res.Offsets[i] = wr.Base + int64(j)
				continue
			}
			res.Offsets[i] = wr.Offsets[j]
			if wr.Deduplicated[j] {
				if res.Deduplicated == nil {
					res.Deduplicated = make([]bool, len(req.Records))
				}
				res.Deduplicated[i] = true
			}
		}
		done = append(done, written{part, wr.End})
	}
	for _, w := range done {
		switch acks {
		case AcksLocal:
			err = w.part.log.WaitLocal(ctx, w.end)
		case AcksDurable:
			err = w.part.log.WaitDurable(ctx, w.end)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &Error{Kind: ErrDeadlineExceeded, Cause: err, Msg: "records were appended but not yet stored (" + acks.String() + " acks) within " + timeout.String() + "; the outcome is unknown: retry with the same producer sequence and the broker answers with the stored offsets"}
		}
		if err != nil {
			return nil, classify(err)
		}
	}
	return res, nil
}

// InitProducer returns a producer id unique in the bucket.
func (b *Broker) InitProducer(ctx context.Context) (int64, error) {
	id, err := b.ids.allocate(ctx)
	if err != nil {
		return 0, classify(err)
	}
	return id, nil
}
