package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// ManifestSource gives the partition's current manifest. The owning
// broker's ingest.Partition is one; BucketManifests reads it from the bucket.
type ManifestSource interface {
	Manifest(ctx context.Context) (*meta.Manifest, error)
}

// refresher is an optional capability of a ManifestSource: drop any cached
// copy, so the next Manifest call reads the bucket again.
type refresher interface{ Refresh() }

// HotLog is the local, not-yet-evicted tail of a partition
// (ingest.LocalLog satisfies it).
type HotLog interface {
	StartOffset() int64
	NextOffset() int64
	Read(from int64, maxBytes int) ([]segment.Batch, error)
}

// Result is what one Read or ReadBatches returns.
type Result struct {
	Records []segment.Record // Read: in offset order, all >= the requested offset; shared with the cache: do not modify
	// Batches (ReadBatches only; Records is then nil) are the same records
	// as Read would return, as views of the batches the read path decoded:
	// read-only (see ReadBatches).
	Batches        []segment.Batch
	NextOffset     int64 // where the next sequential read starts
	HighWatermark  int64 // the offset the next appended record will get
	LogStartOffset int64 // the oldest readable offset

	// Blocks (ReadStored only) are sealed blocks as stored, in offset
	// order, all before Records: the answer is the blocks' records at or
	// after SkipBefore (the offset asked for), then Records.
	Blocks     []StoredBlock
	SkipBefore int64

	views bool // ReadBatches: collect views in Batches, not copies in Records
	size  int  // views: the recordSize of the records in Batches
}

// Len is the number of records of the result (in Records or in Batches).
func (r *Result) Len() int {
	n := len(r.Records)
	for i := range r.Batches {
		n += len(r.Batches[i].Records)
	}
	return n
}

// PartitionReader reads one partition, hot and cold.
type PartitionReader struct {
	cache     *Cache
	src       tier.BucketReader
	manifests ManifestSource
	hot       HotLog // nil for a reader with no local data

	// lastNext is where the previous Read ended: a Read starting there is
	// sequential and gets read-ahead; a point read does not.
	lastNext atomic.Int64
}

// NewPartitionReader returns a reader over a partition. hot may be nil: the
// reader then serves only what is sealed (a stateless replay reader).
func NewPartitionReader(cache *Cache, src tier.BucketReader, manifests ManifestSource, hot HotLog) *PartitionReader {
	r := &PartitionReader{cache: cache, src: src, manifests: manifests, hot: hot}
	r.lastNext.Store(-1)
	return r
}

// recordSize is the byte count maxBytes is measured in: key, value and
// headers plus 64 bytes per record and 32 per header, what the broker's
// limits charge (broker.RecordOverheadBytes, HeaderOverheadBytes), so a
// read of empty records is bounded too.
func recordSize(r *segment.Record) int {
	n := len(r.Key) + len(r.Value) + 64
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 32
	}
	return n
}

// Read returns records from offset `from` on, up to about maxBytes (always at
// least one record when one exists at or after from), in Result.Records:
// copies of the decoded records (their keys, values and headers are shared
// with the cache: do not modify them).
func (r *PartitionReader) Read(ctx context.Context, from int64, maxBytes int) (*Result, error) {
	return r.read(ctx, from, maxBytes, false)
}

// ReadBatches is Read without the per-record copy: the same records, in
// Result.Batches, as views of the batches the read path decoded (the
// cache's decoded blocks, or a hot read's batches), sliced to the range.
//
// Ownership: the batches, their Records and everything those reference
// are shared with every other reader and are read-only: never write to
// them (not a field, not an element, not through append). They stay valid
// for as long as the caller holds them (the cache drops evicted blocks and
// never reuses their memory). A view's Records has no spare capacity, so
// an append to it copies instead of writing into the shared array.
func (r *PartitionReader) ReadBatches(ctx context.Context, from int64, maxBytes int) (*Result, error) {
	return r.read(ctx, from, maxBytes, true)
}

func (r *PartitionReader) read(ctx context.Context, from int64, maxBytes int, views bool) (*Result, error) {
	if from < 0 {
		return nil, fmt.Errorf("%w: %d is negative; offsets start at 0", ErrInvalidOffset, from)
	}
	if maxBytes <= 0 {
		maxBytes = 1
	}
	m, err := r.manifests.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{HighWatermark: m.NextOffset(), LogStartOffset: m.LogStartOffset, NextOffset: from, views: views}
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
		// The local file may have been trimmed under us: fall through to
		// the sealed copy.
	}
	sequential := r.lastNext.Load() == from
	defer func() { r.lastNext.Store(res.NextOffset) }()
	if err := r.readCold(ctx, m, res, from, maxBytes, sequential); err != nil {
		if errors.Is(err, tier.ErrNotFound) {
			// A segment vanished: retention moved the log start (it
			// commits the manifest before it deletes the objects), so
			// the current manifest says where the log starts now.
			if rf, ok := r.manifests.(refresher); ok {
				rf.Refresh()
			}
			if m2, err2 := r.manifests.Manifest(ctx); err2 == nil && from < m2.LogStartOffset {
				return nil, &OutOfRangeError{Offset: from, LogStartOffset: m2.LogStartOffset, HighWatermark: res.HighWatermark}
			}
		}
		return nil, err
	}
	return res, nil
}

// appendRecords adds the records of batches at or after from to res until
// maxBytes is reached, and reports whether it stopped for the byte limit.
func appendRecords(res *Result, batches []segment.Batch, from int64, maxBytes int) bool {
	if res.views {
		return appendViews(res, batches, from, maxBytes)
	}
	size := 0
	for _, rec := range res.Records {
		size += recordSize(&rec)
	}
	for bi := range batches {
		for ri := range batches[bi].Records {
			rec := &batches[bi].Records[ri]
			if rec.Offset < res.NextOffset || rec.Offset < from {
				continue
			}
			s := recordSize(rec)
			if len(res.Records) > 0 && size+s > maxBytes {
				return true
			}
			res.Records = append(res.Records, *rec)
			res.NextOffset = rec.Offset + 1
			size += s
		}
	}
	return size >= maxBytes
}

// appendViews is appendRecords for ReadBatches: it adds views of batches
// (each batch's Records sliced to the records taken, with no spare
// capacity) instead of copies of their records, and takes the same
// records appendRecords would.
func appendViews(res *Result, batches []segment.Batch, from int64, maxBytes int) bool {
	start := max(from, res.NextOffset)
	for bi := range batches {
		b := &batches[bi]
		recs := b.Records
		// Offsets rise within a batch: skip to the first one wanted.
		i := sort.Search(len(recs), func(i int) bool { return recs[i].Offset >= start })
		j := i
		full := false
		for ; j < len(recs); j++ {
			s := recordSize(&recs[j])
			if (len(res.Batches) > 0 || j > i) && res.size+s > maxBytes {
				full = true
				break
			}
			res.size += s
		}
		if j > i {
			v := segment.Batch{BaseOffset: recs[i].Offset, ProducerID: b.ProducerID, ProducerEpoch: b.ProducerEpoch,
				BaseSequence: b.BaseSequence, Records: recs[i:j:j]}
			if b.ProducerID != segment.NoProducer {
				v.BaseSequence += int32(i) // the sequence of the view's first record
			}
			res.Batches = append(res.Batches, v)
			res.NextOffset = recs[j-1].Offset + 1
			start = res.NextOffset
		}
		if full {
			return true
		}
	}
	return res.size >= maxBytes
}

// readCold reads sealed segments from the block holding `from` on.
func (r *PartitionReader) readCold(ctx context.Context, m *meta.Manifest, res *Result, from int64, maxBytes int, sequential bool) error {
	blocks := 0
	for si := m.FindSegment(from); si < len(m.Segments); si++ {
		seg := m.Segments[si]
		f, err := r.cache.Footer(ctx, r.src, seg)
		if err != nil {
			return err
		}
		bi, ok := blockForOffset(f, res.NextOffset)
		if !ok {
			continue
		}
		for ; bi < len(f.Blocks); bi++ {
			batches, err := r.cache.Batches(ctx, r.src, seg.Key, f, bi)
			if err != nil {
				return err
			}
			full := appendRecords(res, batches, from, maxBytes)
			if blocks++; sequential || blocks > 1 {
				// A sequential reader: keep the next spans coming.
				r.cache.Prefetch(r.src, seg.Key, f, bi+1)
			}
			if full {
				return nil
			}
		}
		if si+1 < len(m.Segments) && (sequential || blocks > 1) {
			r.prefetchSegment(ctx, m.Segments[si+1])
		}
	}
	return nil
}

// prefetchSegment warms the next segment's footer and first span in the
// background so a replay crosses segment boundaries without a stall.
func (r *PartitionReader) prefetchSegment(ctx context.Context, seg meta.SegmentRef) {
	if r.cache.cfg.ReadAheadSpans == 0 || r.cache.ctx.Err() != nil {
		return
	}
	r.cache.wg.Add(1)
	go func() {
		defer r.cache.wg.Done()
		f, err := r.cache.Footer(r.cache.ctx, r.src, seg)
		if err == nil {
			r.cache.Prefetch(r.src, seg.Key, f, 0)
		}
	}()
}

func blockForOffset(f *segment.Footer, off int64) (int, bool) {
	for i, b := range f.Blocks {
		if b.LastOffset >= off {
			return i, true
		}
	}
	return 0, false
}

// OffsetForTime returns the offset of the first record whose timestamp is at
// or after ts (milliseconds since the epoch), or the high watermark when
// there is none.
func (r *PartitionReader) OffsetForTime(ctx context.Context, ts int64) (int64, error) {
	m, err := r.manifests.Manifest(ctx)
	if err != nil {
		return 0, err
	}
	hot := int64(-1)
	hwm := m.NextOffset()
	if r.hot != nil {
		hot, hwm = r.hot.StartOffset(), r.hot.NextOffset()
	}
	for _, seg := range m.Segments {
		if seg.MaxTimestamp < ts {
			continue
		}
		if hot >= 0 && seg.BaseOffset >= hot {
			break // read it locally below
		}
		f, err := r.cache.Footer(ctx, r.src, seg)
		if err != nil {
			return 0, err
		}
		for bi := range f.Blocks {
			if f.Blocks[bi].MaxTimestamp < ts {
				continue
			}
			batches, err := r.cache.Batches(ctx, r.src, seg.Key, f, bi)
			if err != nil {
				return 0, err
			}
			for _, b := range batches {
				for _, rec := range b.Records {
					if rec.Timestamp >= ts && rec.Offset >= m.LogStartOffset {
						return rec.Offset, nil
					}
				}
			}
		}
	}
	if hot < 0 {
		return hwm, nil
	}
	// Scan the local tail, starting where the sealed data we skipped ends.
	from := max(hot, m.LogStartOffset)
	for from < hwm {
		batches, err := r.hot.Read(from, 1<<20)
		if err != nil {
			return 0, err
		}
		if len(batches) == 0 {
			break
		}
		for _, b := range batches {
			for _, rec := range b.Records {
				if rec.Offset >= from && rec.Timestamp >= ts {
					return rec.Offset, nil
				}
			}
			from = max(from, b.LastOffset()+1)
		}
	}
	return hwm, nil
}

// BucketManifests reads a partition's manifest from the bucket, caching it
// for TTL: the manifest source of a reader that does not own the partition.
type BucketManifests struct {
	src tier.BucketReader
	key string
	ttl time.Duration

	mu      sync.Mutex
	cached  *meta.Manifest
	fetched time.Time
}

// NewBucketManifests returns a manifest source for (topic, partition). A ttl
// of 0 reads the bucket on every call.
func NewBucketManifests(src tier.BucketReader, topic string, partition int32, ttl time.Duration) *BucketManifests {
	return &BucketManifests{src: src, key: meta.ManifestKey(topic, partition), ttl: ttl}
}

// Manifest returns the cached manifest or reads it from the bucket.
func (b *BucketManifests) Manifest(ctx context.Context) (*meta.Manifest, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cached != nil && time.Since(b.fetched) < b.ttl {
		return b.cached, nil
	}
	rc, _, err := b.src.Get(ctx, b.key)
	if err != nil {
		return nil, fmt.Errorf("fetch: read manifest %s: %w", b.key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch: read manifest %s: %w", b.key, err)
	}
	m, err := meta.DecodeManifest(data)
	if err != nil {
		return nil, fmt.Errorf("fetch: manifest %s: %w", b.key, err)
	}
	b.cached, b.fetched = m, time.Now()
	return m, nil
}

// Refresh drops the cached manifest.
func (b *BucketManifests) Refresh() {
	b.mu.Lock()
	b.cached = nil
	b.mu.Unlock()
}
