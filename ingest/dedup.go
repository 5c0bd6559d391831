package ingest

// Deduplication by message id (PartitionConfig.DedupWindow).
//
// A record may carry a message id: the value of the header named
// DedupHeader. The partition remembers the ids it stored, each with the
// offset of its stored copy and the broker time it was stored at. A
// record whose id the partition stored within DedupWindow before is
// acknowledged with the stored copy's offset and not stored again; the
// rest of its batch is stored as usual (the stored batch is a copy without
// the duplicates). The check runs under writeMu, where offsets are
// assigned, so of two concurrent writes of one id exactly one is stored;
// a record that repeats an id earlier in its own batch is a duplicate too.
//
// Bounds: at most DedupMaxIDs ids are remembered, the oldest dropped
// first; an id is forgotten DedupWindow after it was stored, by broker
// time (never the records' own timestamps).
//
// Rebuild: opening the partition (a restart, a takeover, a lost disk)
// rebuilds the ids from the log itself: the sealed segments sealed within
// the window that hold message ids (meta.SegmentRef.MsgIDs; read from the
// local log when it still has them, else from the bucket, newest first
// until DedupMaxIDs ids) and the unsealed local tail. A rebuilt id's
// time is an upper bound of when it was stored: its segment's sealing
// time, or the open for the unsealed tail. So after an open an id is
// remembered at least the window after its first copy was stored, and
// possibly longer: by up to the time between its append and its seal
// (SealInterval at most for a live partition; for a tail recovered from a
// dead broker's WAL, until that recovery). Ids in segments that retention
// deleted, or past the newest DedupMaxIDs, are not rebuilt. An open that
// cannot read the segments it needs fails (the next write opens again).
//
// With an idempotent producer, the stored copy of a batch with duplicates
// carries the base sequence that makes it end where the sent batch ended
// (the producer's next batch follows it, also after a rebuild from the
// log), and a retry of the sent batch is answered from the dedup set
// (producers.go, retryAnswer). A batch whose records were all duplicates
// stores nothing: the partition remembers its sequences in memory only,
// so when the partition is reopened before that producer's next batch,
// the next batch is refused as out of order (the Go client then fails it
// and continues under a new producer id).

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// DefaultDedupMaxIDs is how many message ids a partition remembers by
// default: at 256 bytes an id (the limit), about 30 MiB.
const DefaultDedupMaxIDs = 100_000

// MaxMsgIDBytes bounds a message id's length.
const MaxMsgIDBytes = 256

// ErrInvalidMsgID is wrapped when a record's message id is empty or over
// MaxMsgIDBytes; nothing of its batch is appended.
var ErrInvalidMsgID = errors.New("ingest: invalid message id")

// MsgID returns the value of r's first header named header.
func MsgID(r *segment.Record, header string) ([]byte, bool) {
	for i := range r.Headers {
		if r.Headers[i].Key == header {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// CheckMsgID reports, wrapping ErrInvalidMsgID, a message id that is
// empty or too long.
func CheckMsgID(id []byte) error {
	switch {
	case len(id) == 0:
		return fmt.Errorf("%w: the id is empty", ErrInvalidMsgID)
	case len(id) > MaxMsgIDBytes:
		return fmt.Errorf("%w: the id is %d bytes, over the %d-byte limit", ErrInvalidMsgID, len(id), MaxMsgIDBytes)
	}
	return nil
}

// msgIDs is a partition's dedup set. Not safe for concurrent use: the
// Partition guards it with writeMu.
type msgIDs struct {
	windowMs int64
	max      int
	byID     map[string]msgEntry
	// order holds the ids in the order they were stored, oldest at head;
	// an element whose id was stored again later (another offset) is
	// stale and skipped.
	order []msgQueued
	head  int
}

type msgEntry struct{ offset, atMs int64 }

type msgQueued struct {
	id string
	msgEntry
}

func newMsgIDs(windowMs int64, max int) *msgIDs {
	return &msgIDs{windowMs: windowMs, max: max, byID: map[string]msgEntry{}}
}

// lookup returns the offset of the stored copy of id, if it was stored
// within the window before nowMs.
func (s *msgIDs) lookup(id []byte, nowMs int64) (int64, bool) {
	e, ok := s.byID[string(id)]
	if !ok || e.atMs < nowMs-s.windowMs {
		return 0, false
	}
	return e.offset, true
}

// add remembers id as stored at offset at broker time atMs, then drops
// the ids past the window (before nowMs) and over the bound.
func (s *msgIDs) add(id []byte, offset, atMs, nowMs int64) {
	k := string(id)
	e := msgEntry{offset: offset, atMs: atMs}
	s.byID[k] = e
	s.order = append(s.order, msgQueued{id: k, msgEntry: e})
	s.trim(nowMs)
}

func (s *msgIDs) trim(nowMs int64) {
	for s.head < len(s.order) {
		q := s.order[s.head]
		cur, ok := s.byID[q.id]
		stale := !ok || cur != q.msgEntry
		if !stale && len(s.byID) <= s.max && q.atMs >= nowMs-s.windowMs {
			break
		}
		if !stale {
			delete(s.byID, q.id)
		}
		s.order[s.head] = msgQueued{}
		s.head++
	}
	if s.head > 1024 && s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// len is how many ids are remembered.
func (s *msgIDs) len() int { return len(s.byID) }

// dedupPlan is what a batch becomes once its duplicates are taken out.
type dedupPlan struct {
	stored *segment.Batch // the records to append (a copy of the batch without its duplicates)
	// slot is, per record of the sent batch, its index in stored.Records,
	// or (for a duplicate of a record in the same batch) the index of the
	// first copy; -1 for a duplicate of a record stored before, at first.
	slot  []int
	first []int64
	dup   []bool
	any   bool // some record is a duplicate
}

// plan looks b's message ids up; nil when dedup is off or no record of b
// is a duplicate. Caller holds writeMu.
func (p *Partition) plan(b *segment.Batch, nowMs int64) *dedupPlan {
	if p.ids == nil || !p.anyDuplicate(b, nowMs) {
		return nil
	}
	pl := &dedupPlan{slot: make([]int, len(b.Records)), first: make([]int64, len(b.Records)), dup: make([]bool, len(b.Records))}
	var inBatch map[string]int
	j := 0
	for i := range b.Records {
		id, ok := MsgID(&b.Records[i], p.cfg.DedupHeader)
		if !ok {
			pl.slot[i] = j
			j++
			continue
		}
		if off, ok := p.ids.lookup(id, nowMs); ok {
			pl.slot[i], pl.first[i], pl.dup[i], pl.any = -1, off, true, true
			continue
		}
		if k, ok := inBatch[string(id)]; ok {
			pl.slot[i], pl.dup[i], pl.any = k, true, true
			continue
		}
		if inBatch == nil {
			inBatch = map[string]int{}
		}
		inBatch[string(id)] = j
		pl.slot[i] = j
		j++
	}
	if !pl.any {
		return nil
	}
	st := &segment.Batch{ProducerID: b.ProducerID, ProducerEpoch: b.ProducerEpoch, Records: make([]segment.Record, 0, j)}
	for i := range b.Records {
		if !pl.dup[i] {
			st.Records = append(st.Records, b.Records[i])
		}
	}
	if b.ProducerID != segment.NoProducer {
		// End where the sent batch ends: the producer's next batch
		// follows the stored one, also in a state rebuilt from the log.
		st.BaseSequence = b.BaseSequence + int32(len(b.Records)-j)
	}
	pl.stored = st
	return pl
}

// anyDuplicate reports whether a record of b repeats an id stored
// within the window or earlier in b; it allocates nothing for a batch
// without ids. Caller holds writeMu.
func (p *Partition) anyDuplicate(b *segment.Batch, nowMs int64) bool {
	var seen map[string]struct{}
	for i := range b.Records {
		id, ok := MsgID(&b.Records[i], p.cfg.DedupHeader)
		if !ok {
			continue
		}
		if _, ok := p.ids.lookup(id, nowMs); ok {
			return true
		}
		if _, ok := seen[string(id)]; ok {
			return true
		}
		if seen == nil {
			seen = map[string]struct{}{}
		}
		seen[string(id)] = struct{}{}
	}
	return false
}

// result is the answer to the sent batch once pl.stored was appended at
// base (nothing appended when it is empty).
func (pl *dedupPlan) result(base int64) AppendResult {
	res := AppendResult{Offsets: make([]int64, len(pl.slot)), Deduplicated: pl.dup}
	var end int64
	for i, k := range pl.slot {
		if k >= 0 {
			res.Offsets[i] = base + int64(k)
		} else {
			res.Offsets[i] = pl.first[i]
		}
		end = max(end, res.Offsets[i]+1)
	}
	res.Base, res.End = res.Offsets[0], end
	return res
}

// remember adds the message ids of an appended batch. Caller holds
// writeMu (or is the open, before any write).
func (p *Partition) remember(b *segment.Batch, atMs, nowMs int64) {
	if p.ids == nil {
		return
	}
	for i := range b.Records {
		if id, ok := MsgID(&b.Records[i], p.cfg.DedupHeader); ok {
			p.ids.add(id, b.BaseOffset+int64(i), atMs, nowMs)
		}
	}
}

// countMsgIDs is how many records of b carry a message id (0 with dedup
// off).
func (p *Partition) countMsgIDs(b *segment.Batch) int64 {
	if p.cfg.DedupWindow <= 0 {
		return 0
	}
	var n int64
	for i := range b.Records {
		if _, ok := MsgID(&b.Records[i], p.cfg.DedupHeader); ok {
			n++
		}
	}
	return n
}

// checkMsgIDs refuses a batch with an invalid message id (with dedup on).
func (p *Partition) checkMsgIDs(b *segment.Batch) error {
	if p.cfg.DedupWindow <= 0 {
		return nil
	}
	for i := range b.Records {
		if id, ok := MsgID(&b.Records[i], p.cfg.DedupHeader); ok {
			if err := CheckMsgID(id); err != nil {
				return fmt.Errorf("ingest: %s/%d: record %d of the batch: %w; nothing of the batch was appended", p.cfg.Topic, p.cfg.Partition, i, err)
			}
		}
	}
	return nil
}

// retryAnswer answers a retry of an idempotent batch stored without its
// duplicates (m, its stored part, has fewer records than b): the offsets
// come from the dedup set. A record with a message id that the set maps
// elsewhere than the next stored offset was a duplicate; every other
// record is the next stored one. Caller holds writeMu.
func (p *Partition) retryAnswer(b *segment.Batch, m batchMeta) (AppendResult, error) {
	stale := fmt.Errorf("%w: producer %d sequence %d was stored without its duplicate records, whose message ids the partition no longer remembers, so it cannot tell their offsets; treat it as stored", ErrStaleSequence, b.ProducerID, b.BaseSequence)
	if p.ids == nil {
		return AppendResult{}, stale
	}
	nowMs := p.cfg.Clock().UnixMilli()
	res := AppendResult{Offsets: make([]int64, len(b.Records)), Deduplicated: make([]bool, len(b.Records)), Duplicate: true}
	next := m.base
	end := m.base + int64(m.count)
	for i := range b.Records {
		if id, ok := MsgID(&b.Records[i], p.cfg.DedupHeader); ok {
			if off, ok := p.ids.lookup(id, nowMs); ok && off != next {
				res.Offsets[i], res.Deduplicated[i] = off, true
				end = max(end, off+1)
				continue
			}
		}
		res.Offsets[i] = next
		next++
	}
	if next != m.base+int64(m.count) {
		return AppendResult{}, stale
	}
	res.Base, res.End = res.Offsets[0], end
	return res, nil
}

// rebuildMsgIDs fills the dedup set from the log at open (see the top of
// this file), with m the manifest after recovery.
func (p *Partition) rebuildMsgIDs(ctx context.Context, m *meta.Manifest) error {
	if p.cfg.DedupWindow <= 0 {
		return nil
	}
	maxIDs := p.cfg.DedupMaxIDs
	if maxIDs == 0 {
		maxIDs = DefaultDedupMaxIDs
	}
	p.ids = newMsgIDs(p.cfg.DedupWindow.Milliseconds(), maxIDs)
	nowMs := p.cfg.Clock().UnixMilli()
	cutoff := nowMs - p.ids.windowMs
	// The segments to read, newest first, until they hold enough ids.
	var segs []meta.SegmentRef
	var ids int64
	for i := len(m.Segments) - 1; i >= 0 && ids < int64(maxIDs); i-- {
		if s := m.Segments[i]; s.MsgIDs > 0 && s.SealedAtMs >= cutoff {
			segs = append(segs, s)
			ids += s.MsgIDs
		}
	}
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		err := p.readSealed(ctx, s, func(b *segment.Batch) {
			p.remember(b, s.SealedAtMs, nowMs)
		})
		if err != nil {
			return fmt.Errorf("rebuild message ids from segment %s: %w", s.Key, err)
		}
	}
	sealedEnd := m.NextOffset()
	for _, f := range p.local.Files() {
		if f.EndOffset <= sealedEnd {
			continue
		}
		err := p.local.ReadFile(f.BaseOffset, func(b *segment.Batch) error {
			if b.BaseOffset >= sealedEnd {
				p.remember(b, nowMs, nowMs)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rebuild message ids from the local log: %w", err)
		}
	}
	if n := p.ids.len(); n > 0 {
		p.log.Info("message ids rebuilt", "ids", n, "segments", len(segs))
	}
	return nil
}

// readSealed calls fn for every batch of sealed segment s: from the local
// log when it still holds all of it, else from the bucket.
func (p *Partition) readSealed(ctx context.Context, s meta.SegmentRef, fn func(*segment.Batch)) error {
	if p.local.StartOffset() <= s.BaseOffset && p.local.NextOffset() > s.LastOffset {
		for from := s.BaseOffset; from <= s.LastOffset; {
			bs, err := p.local.Read(from, 1<<20)
			if err != nil {
				return err
			}
			if len(bs) == 0 {
				return fmt.Errorf("%w: the local log has no batch at %d", ErrCorrupt, from)
			}
			for i := range bs {
				if bs[i].BaseOffset >= from && bs[i].BaseOffset <= s.LastOffset {
					fn(&bs[i])
				}
				from = max(from, bs[i].LastOffset()+1)
			}
		}
		return nil
	}
	r, err := segment.Open(ctx, storeRange{p.cfg.Store, s.Key}, s.Size)
	if err != nil {
		return err
	}
	for i := range r.Footer().Blocks {
		bs, err := r.ReadBlock(ctx, i)
		if err != nil {
			return err
		}
		for j := range bs {
			fn(&bs[j])
		}
	}
	return nil
}

// storeRange reads ranges of one object of a store.
type storeRange struct {
	store tier.BucketReader
	key   string
}

func (r storeRange) ReadRange(ctx context.Context, off, length int64) ([]byte, error) {
	rc, err := r.store.GetRange(ctx, r.key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
