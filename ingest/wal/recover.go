package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// Object is one WAL object found in the bucket.
type Object struct {
	Key         string
	Incarnation string
	Seq         uint64
	Size        int64
	Fence       bool // a fence rather than a WAL object (known after Scan)
}

// Reader reads other incarnations' WAL objects: fencing them, recovering
// partition tails, and deciding which objects are garbage. It caches
// decoded headers (objects never change), so recovering many partitions
// from one dead incarnation reads each header once. Safe for concurrent
// use.
type Reader struct {
	store tier.Store
	self  string // our own incarnation (never fenced by us)
	clock func() time.Time

	mu      sync.Mutex
	headers map[string]*Header // key -> header; nil entry: a fence; at most maxCachedHeaders
	fenced  map[string]uint64  // incarnation -> sequence of its fence
}

// maxCachedHeaders bounds the header cache. Headers of objects that are
// gone are dropped at every Collect (pruneCache); past the bound, an
// arbitrary entry is evicted (a miss costs one ranged GET).
const maxCachedHeaders = 16384

// NewReader returns a reader acting for incarnation self.
func NewReader(store tier.Store, self string, clock func() time.Time) *Reader {
	if clock == nil {
		clock = time.Now
	}
	return &Reader{store: store, self: self, clock: clock, headers: map[string]*Header{}, fenced: map[string]uint64{}}
}

// List returns an incarnation's objects in sequence order.
func (r *Reader) List(ctx context.Context, incarnation string) ([]Object, error) {
	return r.list(ctx, IncarnationPrefix(incarnation))
}

func (r *Reader) list(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	err := r.store.List(ctx, prefix, func(o tier.ObjectInfo) error {
		if inc, seq, ok := ParseKey(o.Key); ok {
			out = append(out, Object{Key: o.Key, Incarnation: inc, Seq: seq, Size: o.Size})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Incarnation != out[j].Incarnation {
			return out[i].Incarnation < out[j].Incarnation
		}
		return out[i].Seq < out[j].Seq
	})
	return out, nil
}

// Fence makes sure incarnation inc can never store another WAL object, by
// creating a fence object at its next sequence number. It returns the
// fence's sequence: every WAL object inc ever stored has a smaller one.
// Fencing an incarnation twice is harmless.
//
// The fence holds once it is the incarnation's newest object: the writer
// stores sequence n+1 only after n, and garbage collection never deletes
// an incarnation's newest object, so when a listing shows a fence as the
// newest, no object of inc lies above it and inc's next PUT hits it.
// Listing and putting are not atomic: between them the writer may store
// more objects and the collector delete the slot the fence was aimed at,
// so a fence can land below objects inc stored (a low fence). Fence
// therefore lists again after every attempt and fences above the newest
// object until the newest is a fence.
func (r *Reader) Fence(ctx context.Context, inc string) (uint64, error) {
	if inc == r.self {
		return 0, errors.New("wal: an incarnation cannot fence itself")
	}
	r.mu.Lock()
	seq, ok := r.fenced[inc]
	r.mu.Unlock()
	if ok {
		return seq, nil
	}
	body := fenceBody(r.self, r.clock().UnixMilli())
	for tries := 0; ; tries++ {
		objs, err := r.List(ctx, inc)
		if err != nil {
			return 0, err
		}
		next := uint64(0)
		if n := len(objs); n > 0 {
			newest := objs[n-1]
			h, herr := r.header(ctx, newest.Key)
			switch {
			case herr == nil && h == nil:
				r.remember(inc, newest.Seq)
				return newest.Seq, nil // the newest object is a fence
			case herr == nil, errors.Is(herr, ErrCorrupt):
				next = newest.Seq + 1 // a WAL object (a corrupt one is no fence either)
			case errors.Is(herr, tier.ErrNotFound), tier.IsRetryable(herr):
				// Collected since the listing (so no longer the newest),
				// or unreadable for now: list again.
				if err := sleepCtx(ctx, tier.Backoff{}.Wait(min(tries, 6))); err != nil {
					return 0, fmt.Errorf("wal: fence %s: %w", inc, herr)
				}
				continue
			default:
				return 0, fmt.Errorf("wal: fence %s: %w", inc, herr)
			}
		}
		_, err = r.store.PutIfAbsent(ctx, Key(inc, next), bytes.NewReader(body), int64(len(body)))
		switch {
		case err == nil, errors.Is(err, tier.ErrPreconditionFailed):
			// Placed, or the slot is taken (by the writer, or another
			// recoverer's fence): the next listing tells whether a fence
			// is now the newest object.
		case tier.IsRetryable(err) && ctx.Err() == nil:
			// The outcome is unknown: the next listing settles it.
			if err := sleepCtx(ctx, tier.Backoff{}.Wait(min(tries, 6))); err != nil {
				return 0, fmt.Errorf("wal: fence %s: %w", inc, err)
			}
		default:
			return 0, fmt.Errorf("wal: fence %s: %w", inc, err)
		}
	}
}

// sleepCtx waits d, or less when ctx ends first (then it returns ctx's
// error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Reader) remember(inc string, seq uint64) {
	r.mu.Lock()
	r.fenced[inc] = seq
	r.mu.Unlock()
}

// header returns the decoded header of an object, or nil for a fence.
func (r *Reader) header(ctx context.Context, key string) (*Header, error) {
	r.mu.Lock()
	h, ok := r.headers[key]
	r.mu.Unlock()
	if ok {
		return h, nil
	}
	head, err := r.getRange(ctx, key, 0, HeadBytes)
	if err != nil {
		return nil, err
	}
	if IsFence(head) {
		r.cache(key, nil)
		return nil, nil
	}
	size, err := HeaderSize(head)
	if err != nil {
		return nil, fmt.Errorf("wal: %s: %w", key, err)
	}
	if size > int64(len(head)) {
		rest, err := r.getRange(ctx, key, int64(len(head)), size-int64(len(head)))
		if err != nil {
			return nil, err
		}
		head = append(head, rest...)
	}
	h, err = DecodeHeader(head)
	if err != nil {
		return nil, fmt.Errorf("wal: %s: %w", key, err)
	}
	r.cache(key, h)
	return h, nil
}

func (r *Reader) cache(key string, h *Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.headers[key]; !ok && len(r.headers) >= maxCachedHeaders {
		for k := range r.headers {
			delete(r.headers, k)
			break
		}
	}
	r.headers[key] = h
}

// pruneCache drops the cached headers of objects not in objs (a full
// listing): they were deleted.
func (r *Reader) pruneCache(objs []Object) {
	live := make(map[string]bool, len(objs))
	for _, o := range objs {
		live[o.Key] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.headers {
		if !live[k] {
			delete(r.headers, k)
		}
	}
}

// CachedHeaders is how many object headers the reader holds.
func (r *Reader) CachedHeaders() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.headers)
}

// Forget drops cached headers of deleted objects.
func (r *Reader) forget(key string) {
	r.mu.Lock()
	delete(r.headers, key)
	r.mu.Unlock()
}

func (r *Reader) getRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	rc, err := r.store.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", key, err)
	}
	return b, nil
}

// TailEntry is one WAL object's entry for a partition.
type TailEntry struct {
	Key   string
	Data  int64 // object position of the entry's data
	Entry Entry
}

// Entries returns, in sequence order, the entries incarnation inc stored
// for (topic, partition) holding records at or after from, reading only
// headers (cached). It reads past fences: objects above a fence exist only
// when that fence landed low (see Fence), and they were stored, maybe
// acked, before the fence that holds. Without a fence the answer is
// the objects stored so far: every record in them is durable, so a
// reader that owns nothing may serve them. Objects collected since the
// listing are skipped: they were sealed.
func (r *Reader) Entries(ctx context.Context, inc, topic string, partition int32, from int64) ([]TailEntry, error) {
	objs, err := r.List(ctx, inc)
	if err != nil {
		return nil, err
	}
	var out []TailEntry
	for _, o := range objs {
		h, err := r.header(ctx, o.Key)
		if errors.Is(err, tier.ErrNotFound) {
			// Collected since the listing: sealed, so below from for an
			// owner (whose from is at least the sealed end); a reader
			// without ownership sees the gap in the offsets it gets.
			continue
		}
		if err != nil {
			return nil, err
		}
		if h == nil {
			continue // a fence; a low one may have objects above it
		}
		if e, ok := h.Find(topic, partition); ok && e.Last >= from {
			out = append(out, TailEntry{Key: o.Key, Data: h.DataStart + int64(e.Pos), Entry: e})
		}
	}
	return out, nil
}

// ReadEntry reads and decodes one entry's batches. A collected object is
// tier.ErrNotFound.
func (r *Reader) ReadEntry(ctx context.Context, te TailEntry) ([]segment.Batch, error) {
	data, err := r.getRange(ctx, te.Key, te.Data, int64(te.Entry.Len))
	if err != nil {
		if errors.Is(err, tier.ErrNotFound) {
			r.forget(te.Key)
		}
		return nil, err
	}
	batches, err := DecodeEntry(te.Entry, data)
	if err != nil {
		return nil, fmt.Errorf("wal: %s: %w", te.Key, err)
	}
	return batches, nil
}

// TrimBatch cuts the records before from off b (a batch straddling from),
// keeping its producer sequence right.
func TrimBatch(b *segment.Batch, from int64) {
	if b.BaseOffset >= from {
		return
	}
	cut := int(from - b.BaseOffset)
	b.Records = b.Records[cut:]
	b.BaseOffset = from
	if b.ProducerID != segment.NoProducer {
		b.BaseSequence += int32(cut)
	}
}

// ReadTail calls fn, in offset order, with every batch of a partition that
// incarnation inc stored with records at or after from, trimmed to start at
// from. The incarnation must be fenced first (or be this one), so that the
// set of its objects is final. Only the objects holding the partition are
// read, and of them only the partition's byte range.
func (r *Reader) ReadTail(ctx context.Context, inc, topic string, partition int32, from int64, fn func(*segment.Batch) error) error {
	entries, err := r.Entries(ctx, inc, topic, partition, from)
	if err != nil {
		return err
	}
	for _, te := range entries {
		batches, err := r.ReadEntry(ctx, te)
		if errors.Is(err, tier.ErrNotFound) {
			continue // collected since the listing, as above
		}
		if err != nil {
			return err
		}
		for i := range batches {
			b := &batches[i]
			if b.LastOffset() < from {
				continue
			}
			TrimBatch(b, from)
			if err := fn(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// SealedEnd tells the garbage collector how far a partition is sealed: the
// offset after its last sealed record, or math.MaxInt64 when the partition
// (or its topic) no longer exists.
type SealedEnd func(ctx context.Context, topic string, partition int32) (int64, error)

// Collect deletes every WAL object all of whose entries are sealed (each
// entry's last offset is below its partition's sealed end), except the
// newest object of each incarnation: Fence puts its fence after the newest
// object it lists, so deleting an incarnation's newest object could let a
// later fence land at a sequence number the incarnation has used already,
// and its next object would then succeed (split brain). Fences stay for
// the same reason. It returns how many objects it deleted. A crash midway
// leaves only objects a later Collect deletes.
func (r *Reader) Collect(ctx context.Context, sealed SealedEnd) (int, error) {
	objs, err := r.list(ctx, Prefix)
	if err != nil {
		return 0, err
	}
	r.pruneCache(objs)
	ends := map[pkey]int64{}
	deleted := 0
	for i, o := range objs {
		if i+1 == len(objs) || objs[i+1].Incarnation != o.Incarnation {
			continue // the newest object of its incarnation stays
		}
		h, err := r.header(ctx, o.Key)
		if errors.Is(err, tier.ErrNotFound) {
			continue
		}
		if err != nil {
			return deleted, err
		}
		if h == nil {
			continue
		}
		garbage := true
		for _, e := range h.Entries {
			k := pkey{e.Topic, e.Partition}
			end, ok := ends[k]
			if !ok {
				if end, err = sealed(ctx, e.Topic, e.Partition); err != nil {
					return deleted, err
				}
				ends[k] = end
			}
			if e.Last >= end {
				garbage = false
				break
			}
		}
		if !garbage {
			continue
		}
		if err := r.store.Delete(ctx, o.Key); err != nil {
			return deleted, fmt.Errorf("wal: delete %s: %w", o.Key, err)
		}
		r.forget(o.Key)
		deleted++
	}
	return deleted, nil
}
