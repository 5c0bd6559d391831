package fetch

import (
	"context"
	"errors"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// StoredBlock is one sealed segment block exactly as the object store holds
// it: the block header (codec, lengths, CRC32C) and the compressed record
// batches, never decompressed by the reader. The index fields are the
// footer's entry for the block; a consumer checks the decoded block against
// them.
type StoredBlock struct {
	Data                    []byte // the bytes [Pos, Pos+Len) of the segment; shared with the cache: do not modify
	Codec                   segment.Codec
	FirstOffset, LastOffset int64
	Records                 int64
}

// StoredBlockOverhead is what a stored block costs against maxBytes on top
// of its stored bytes (its framing in a response, as a record costs 64
// bytes on top of its own).
const StoredBlockOverhead = 64

// StoredBlockCost is a block's share of maxBytes.
func StoredBlockCost(b *StoredBlock) int { return len(b.Data) + StoredBlockOverhead }

// ReadStored is Read for a consumer that decodes sealed data itself: the
// sealed blocks holding the records from `from` on come as stored
// (Result.Blocks, compressed, with their CRCs, never decompressed here),
// and data that is not in sealed blocks (the local log, a bucket view's WAL
// tail) comes as records after them (Result.Records). maxBytes counts a
// block's stored bytes plus StoredBlockOverhead, and a record as Read
// counts it. The first block may start before `from`: Result.SkipBefore is
// `from`, and the answer is the blocks' records at or after it, then
// Records. At least one block or record is returned when one exists at or
// after from. A block whose cost alone is over maxBytes is sent as its
// records, decoded and cut to maxBytes as Read does, so no answer is ever
// larger than the caller allowed.
//
// A read served from the local log (from at or after the hot log's start)
// is answered as Read answers it: records only.
func (r *PartitionReader) ReadStored(ctx context.Context, from int64, maxBytes int) (*Result, error) {
	if from < 0 {
		return r.Read(ctx, from, maxBytes) // the same error
	}
	if maxBytes <= 0 {
		maxBytes = 1
	}
	m, err := r.manifests.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{HighWatermark: m.NextOffset(), LogStartOffset: m.LogStartOffset, NextOffset: from, SkipBefore: from}
	if r.hot != nil {
		res.HighWatermark = r.hot.NextOffset()
	}
	if from < m.LogStartOffset {
		return nil, &OutOfRangeError{Offset: from, LogStartOffset: m.LogStartOffset, HighWatermark: res.HighWatermark}
	}
	if from >= res.HighWatermark {
		return res, nil
	}
	if r.hot != nil && from >= r.hot.StartOffset() {
		batches, err := r.hot.Read(from, maxBytes)
		if err == nil {
			appendRecords(res, batches, from, maxBytes)
			return res, nil
		}
		// Trimmed under us: the sealed copy has it.
	}
	sequential := r.lastNext.Load() == from
	defer func() { r.lastNext.Store(res.NextOffset) }()
	used, err := r.readColdStored(ctx, m, res, from, maxBytes, sequential)
	if err != nil {
		return nil, r.coldError(ctx, from, res, err)
	}
	// Room left after the sealed data: the hot tail continues it.
	if r.hot != nil && len(res.Records) == 0 && used < maxBytes && res.NextOffset < res.HighWatermark && res.NextOffset >= r.hot.StartOffset() {
		if batches, err := r.hot.Read(res.NextOffset, maxBytes-used); err == nil {
			appendRecordsWithin(res, batches, maxBytes-used, len(res.Blocks) == 0)
		}
	}
	return res, nil
}

// coldError is what a failed cold read reports: a segment that vanished
// because retention moved the log start is an *OutOfRangeError.
func (r *PartitionReader) coldError(ctx context.Context, from int64, res *Result, err error) error {
	if errors.Is(err, tier.ErrNotFound) {
		if rf, ok := r.manifests.(refresher); ok {
			rf.Refresh()
		}
		if m2, err2 := r.manifests.Manifest(ctx); err2 == nil && from < m2.LogStartOffset {
			return &OutOfRangeError{Offset: from, LogStartOffset: m2.LogStartOffset, HighWatermark: res.HighWatermark}
		}
	}
	return err
}

// readColdStored adds sealed blocks from the one holding res.NextOffset on
// while their cost fits maxBytes, and returns the cost used. It decides on
// a block from the footer before loading it, so a block that does not fit
// costs no GET.
func (r *PartitionReader) readColdStored(ctx context.Context, m *meta.Manifest, res *Result, from int64, maxBytes int, sequential bool) (int, error) {
	used, loaded := 0, 0
	for si := m.FindSegment(from); si < len(m.Segments); si++ {
		seg := m.Segments[si]
		f, err := r.cache.Footer(ctx, r.src, seg)
		if err != nil {
			return used, err
		}
		bi, ok := blockForOffset(f, res.NextOffset)
		if !ok {
			continue
		}
		for ; bi < len(f.Blocks); bi++ {
			info := &f.Blocks[bi]
			cost := int(info.Len) + StoredBlockOverhead
			switch {
			case len(res.Blocks) > 0 && used+cost > maxBytes:
				return used, nil
			case len(res.Blocks) == 0 && cost > maxBytes:
				// Larger than the answer may be: its records, cut to
				// maxBytes (the next read continues in the block).
				batches, err := r.cache.Batches(ctx, r.src, seg.Key, f, bi)
				if err != nil {
					return used, err
				}
				appendRecords(res, batches, from, maxBytes)
				if sequential {
					r.cache.Prefetch(r.src, seg.Key, f, bi+1)
				}
				return maxBytes, nil
			}
			data, err := r.cache.StoredBlock(ctx, r.src, seg.Key, f, bi)
			if err != nil {
				return used, err
			}
			res.Blocks = append(res.Blocks, StoredBlock{Data: data, Codec: f.Codec, FirstOffset: info.FirstOffset, LastOffset: info.LastOffset, Records: info.Records})
			res.NextOffset = info.LastOffset + 1
			used += cost
			if loaded++; sequential || loaded > 1 {
				r.cache.PrefetchStored(r.src, seg.Key, f, bi+1)
				// A reader that decodes nothing keeps up with its GETs:
				// once read-ahead reaches this segment's end, warm the
				// next one, so crossing it costs no wait for its footer
				// and first span.
				end := f.Blocks[len(f.Blocks)-1]
				if left := end.Pos + end.Len - (info.Pos + info.Len); si+1 < len(m.Segments) && left <= int64(r.cache.cfg.ReadAheadSpans)*r.cache.cfg.SpanBytes {
					r.prefetchSegmentStored(m.Segments[si+1])
				}
			}
			if used >= maxBytes {
				return used, nil
			}
		}
		if si+1 < len(m.Segments) && (sequential || loaded > 1) {
			r.prefetchSegmentStored(m.Segments[si+1])
		}
	}
	return used, nil
}

// prefetchSegmentStored is prefetchSegment for a stored-block reader: the
// next segment's first span is loaded, not decoded.
func (r *PartitionReader) prefetchSegmentStored(seg meta.SegmentRef) {
	if r.cache.cfg.ReadAheadSpans == 0 || r.cache.ctx.Err() != nil {
		return
	}
	r.cache.wg.Add(1)
	go func() {
		defer r.cache.wg.Done()
		f, err := r.cache.Footer(r.cache.ctx, r.src, seg)
		if err == nil {
			r.cache.PrefetchStored(r.src, seg.Key, f, 0)
		}
	}()
}

// appendRecordsWithin adds the records of batches at or after
// res.NextOffset while their size fits budget; atLeastOne lets the first
// record in whatever its size (an answer that has nothing else yet).
func appendRecordsWithin(res *Result, batches []segment.Batch, budget int, atLeastOne bool) {
	size := 0
	for bi := range batches {
		for ri := range batches[bi].Records {
			rec := &batches[bi].Records[ri]
			if rec.Offset < res.NextOffset {
				continue
			}
			s := recordSize(rec)
			if size+s > budget && !(atLeastOne && len(res.Records) == 0) {
				return
			}
			res.Records = append(res.Records, *rec)
			res.NextOffset = rec.Offset + 1
			size += s
		}
	}
}
