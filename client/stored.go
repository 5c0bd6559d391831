package client

// Stored blocks: the fetch mode in which the broker sends sealed data as
// it is stored (docs/fetch.md) and the client verifies, decompresses and
// decodes it, with segment's own decoder, on several cores.

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/segment"
)

// ErrCorruptBlock is wrapped by every *CorruptBlockError.
var ErrCorruptBlock = errors.New("client: corrupt stored block")

// CorruptBlockError reports a stored block that failed verification: its
// CRC32C, its decoding, or a check against the index entry the broker sent
// with it. Nothing of the response it came in is returned, and a
// consumer's position does not move past it.
type CorruptBlockError struct {
	Topic                   string
	Partition               int32
	FirstOffset, LastOffset int64 // what the index says the block holds
	Err                     error // what failed; wraps segment.ErrCorrupt
}

func (e *CorruptBlockError) Error() string {
	return fmt.Sprintf("client: topic %s partition %d: the stored block of offsets %d-%d is corrupt: %v; nothing of it was returned and the position did not move past offset %d: fetch again (a block that stays corrupt is damaged in the object store; see docs/fetch.md)",
		e.Topic, e.Partition, e.FirstOffset, e.LastOffset, e.Err, e.FirstOffset)
}

// Unwrap returns both ErrCorruptBlock and the cause.
func (e *CorruptBlockError) Unwrap() []error { return []error{ErrCorruptBlock, e.Err} }

// corrupt is a verification failure of a response's content.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{segment.ErrCorrupt}, args...)...)
}

// decodeWorkers is how many goroutines decode the blocks of a response at
// once by default: one per core the process may use.
func decodeWorkers() int { return runtime.GOMAXPROCS(0) }

// decodeBlock verifies and decodes one stored block and returns its
// records at or after skip, in offset order.
func decodeBlock(topic string, p int32, b *stratapb.StoredBlock, skip int64) ([]Record, error) {
	fail := func(err error) ([]Record, error) {
		return nil, &CorruptBlockError{Topic: topic, Partition: p, FirstOffset: b.FirstOffset, LastOffset: b.LastOffset, Err: err}
	}
	if b.Codec > 255 {
		return fail(corrupt("codec %d is not a segment codec", b.Codec))
	}
	batches, err := segment.DecodeBlock(b.Data, segment.Codec(b.Codec))
	if err != nil {
		return fail(err)
	}
	// The decoded block must be what the index says: the same offsets,
	// increasing, and the same record count.
	var n int64
	last := int64(-1)
	for i := range batches {
		bt := &batches[i]
		if bt.BaseOffset <= last {
			return fail(corrupt("batch %d starts at offset %d, not after %d", i, bt.BaseOffset, last))
		}
		last = bt.LastOffset()
		n += int64(len(bt.Records))
	}
	if batches[0].BaseOffset != b.FirstOffset || last != b.LastOffset || n != b.Records {
		return fail(corrupt("the block holds offsets %d-%d (%d records), its index entry says %d-%d (%d records)",
			batches[0].BaseOffset, last, n, b.FirstOffset, b.LastOffset, b.Records))
	}
	keep := n
	if skip > b.FirstOffset {
		keep = max(0, last-skip+1)
	}
	out := make([]Record, 0, min(keep, n))
	for i := range batches {
		bt := &batches[i]
		if bt.LastOffset() < skip {
			continue
		}
		for j := range bt.Records {
			if r := &bt.Records[j]; r.Offset >= skip {
				out = append(out, fromSegment(topic, p, r))
			}
		}
	}
	return out, nil
}

// decodeFetch returns the records of a fetch response in offset order:
// those of its stored blocks at or after SkipBefore, decoded on up to
// workers goroutines, then its records. Any block that fails to verify,
// or blocks and records out of order, fail the whole response with a
// *CorruptBlockError; nothing of it is returned then.
func decodeFetch(topic string, p int32, resp *stratapb.FetchResponse, workers int) ([]Record, error) {
	blocks := resp.Blocks
	if err := checkOrder(topic, p, resp); err != nil {
		return nil, err
	}
	parts := make([][]Record, len(blocks))
	errs := make([]error, len(blocks))
	workers = max(1, min(workers, len(blocks)))
	if workers == 1 {
		for i := range blocks {
			if parts[i], errs[i] = decodeBlock(topic, p, blocks[i], resp.SkipBefore); errs[i] != nil {
				break
			}
		}
	} else {
		var next atomic.Int64
		var failed atomic.Bool
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for !failed.Load() {
					i := int(next.Add(1) - 1)
					if i >= len(blocks) {
						return
					}
					if parts[i], errs[i] = decodeBlock(topic, p, blocks[i], resp.SkipBefore); errs[i] != nil {
						failed.Store(true)
					}
				}
			})
		}
		wg.Wait()
	}
	n := len(resp.Records)
	for i := range blocks {
		if errs[i] != nil {
			return nil, errs[i]
		}
		n += len(parts[i])
	}
	out := make([]Record, 0, n)
	for _, part := range parts {
		out = append(out, part...)
	}
	for _, r := range resp.Records {
		out = append(out, fromProto(topic, r))
	}
	return out, nil
}

// checkOrder checks what can be checked before decoding: blocks in
// increasing, non-overlapping offset order, records after them in
// increasing order (in a response without blocks too: the fetch
// invariant), and no block wholly below SkipBefore.
func checkOrder(topic string, p int32, resp *stratapb.FetchResponse) error {
	last := int64(-1)
	for i, b := range resp.Blocks {
		bad := func(format string, args ...any) error {
			return &CorruptBlockError{Topic: topic, Partition: p, FirstOffset: b.FirstOffset, LastOffset: b.LastOffset, Err: corrupt(format, args...)}
		}
		switch {
		case b.FirstOffset < 0 || b.LastOffset < b.FirstOffset || b.Records <= 0:
			return bad("index entry %d-%d with %d records", b.FirstOffset, b.LastOffset, b.Records)
		case b.FirstOffset <= last:
			return bad("block %d overlaps or precedes the block before it (which ends at %d)", i, last)
		case b.LastOffset < resp.SkipBefore:
			return bad("block %d ends below the response's first offset %d", i, resp.SkipBefore)
		}
		last = b.LastOffset
	}
	for _, r := range resp.Records {
		if r.Offset <= last {
			return &CorruptBlockError{Topic: topic, Partition: p, FirstOffset: r.Offset, LastOffset: r.Offset,
				Err: corrupt("record %d does not follow the blocks or records before it (offset %d)", r.Offset, last)}
		}
		last = max(last, r.Offset)
	}
	return nil
}

// fromSegment is a record decoded from a stored block, as fromProto would
// give it had the broker sent it as a record: an empty header value is
// nil (protobuf does not tell an empty value from none).
func fromSegment(topic string, p int32, r *segment.Record) Record {
	out := Record{Topic: topic, Partition: p, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		out.Headers = make(map[string][]byte, len(r.Headers))
		for _, h := range r.Headers {
			v := h.Value
			if len(v) == 0 {
				v = nil
			}
			setHeader(&out, h.Key, v)
		}
	}
	return out
}

// setHeader adds a received header to out, reading the queue settings
// the strata-* headers carry.
func setHeader(out *Record, key string, value []byte) {
	switch key {
	case HeaderDeliverAt:
		if ms, err := strconv.ParseInt(string(value), 10, 64); err == nil {
			out.DeliverAt = time.UnixMilli(ms)
		}
	case HeaderPriority:
		out.Priority, _ = strconv.Atoi(string(value))
	case HeaderMsgID:
		out.MsgID = string(value)
	}
	out.Headers[key] = value
}
