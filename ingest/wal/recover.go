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
	onFence func(key string)   // told of a fence found under self's prefix (WatchOwnFences)
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

// WatchOwnFences makes the reader tell f of every fence it reads under
// its own incarnation's prefix (another broker fenced this one), whatever
// the read was for: garbage collection, a reader's view, a recovery. The
// broker passes its Writer's NoticeFence, so that the writer stops at the
// first read of a fence rather than at its next PUT or probe.
func (r *Reader) WatchOwnFences(f func(key string)) {
	r.mu.Lock()
	r.onFence = f
	r.mu.Unlock()
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

// Fence makes sure incarnation inc can never store another WAL object,
// by creating fence objects where its next PUTs would go. It returns a
// fence above every WAL object inc stored: every WAL object inc ever
// stored has a smaller sequence (the lowest such fence, unless garbage
// collection deleted the newest WAL object below fences). Fencing an
// incarnation twice is harmless.
//
// A writer keeps at most MaxPipeline PUTs in flight and starts sequence
// s only once every sequence up to s-MaxPipeline is stored, so when N is
// its newest stored object, every PUT it can still make is at a sequence
// in [N-W+1, N+W] (W = MaxPipeline), and it can never store above N+W
// without storing N+1 first. Fence is therefore done once a listing
// shows every slot in [N-W+1, N] taken (by a WAL object or a fence: a
// free slot there is an upload of the writer that may still land, so it
// gets a fence) and fences in all of [N+1, N+W]. Garbage collection never
// deletes an incarnation's topmost object nor any fence, but it may
// delete the newest WAL object once fences lie above it; since every
// fence lies at most W above a WAL object the Fence that put it found, N
// is taken as at least the topmost fence minus W (a fence that gave up
// halfway may have left N+1 free). Listing and putting are not atomic: the
// writer may store more objects between them and the collector free
// slots, so a fence can land below objects inc stored (a low fence);
// Fence lists again after every round of puts until the condition holds.
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
		// Find the newest WAL object, reading headers from the top down
		// (at most the fences above it plus one).
		newest := int64(-1)
		retry := false
		for i := len(objs) - 1; i >= 0 && newest < 0; i-- {
			h, herr := r.header(ctx, objs[i].Key)
			switch {
			case herr == nil && h == nil:
				// a fence
			case herr == nil, errors.Is(herr, ErrCorrupt):
				newest = int64(objs[i].Seq) // a WAL object (a corrupt one is no fence either)
			case errors.Is(herr, tier.ErrNotFound), tier.IsRetryable(herr):
				retry = true // collected since the listing, or unreadable for now
			default:
				return 0, fmt.Errorf("wal: fence %s: %w", inc, herr)
			}
			if retry {
				break
			}
		}
		if retry {
			if err := sleepCtx(ctx, tier.Backoff{}.Wait(min(tries, 6))); err != nil {
				return 0, fmt.Errorf("wal: fence %s: list again: %w", inc, err)
			}
			continue
		}
		// A fence is never more than MaxPipeline above the newest WAL
		// object the Fence that put it had found, so the topmost fence
		// F proves that inc stored sequence F-MaxPipeline, or a later
		// one, even when garbage collection has deleted it since (the
		// collector keeps an incarnation's topmost object, a fence, and
		// may delete every WAL object below it). Without this, a fence
		// that gave up halfway (fences above N, N+1 still free) and a
		// collection of everything up to N left a later Fence finding
		// no WAL object: it fenced 0..MaxPipeline-1 and the writer went
		// on to store, and ack, N+1.
		if len(objs) > 0 && int64(objs[len(objs)-1].Seq) > newest {
			newest = max(newest, int64(objs[len(objs)-1].Seq)-MaxPipeline)
		}
		taken := make(map[uint64]bool, len(objs))
		for _, o := range objs {
			taken[o.Seq] = true
		}
		lo := uint64(max(newest-MaxPipeline+1, 0))
		hi := uint64(newest + MaxPipeline)
		// Every object above newest is a fence (read above), so the
		// condition is that every slot in [lo, hi] is taken.
		var free []uint64
		for s := lo; s <= hi; s++ {
			if !taken[s] {
				free = append(free, s)
			}
		}
		if len(free) == 0 {
			r.remember(inc, uint64(newest+1))
			return uint64(newest + 1), nil
		}
		for _, s := range free {
			_, err = r.store.PutIfAbsent(ctx, Key(inc, s), bytes.NewReader(body), int64(len(body)))
			switch {
			case err == nil, errors.Is(err, tier.ErrPreconditionFailed):
				// Placed, or the slot is taken (by the writer, or another
				// recoverer's fence): the next listing tells.
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
		r.mu.Lock()
		f := r.onFence
		r.mu.Unlock()
		if inc, _, ok := ParseKey(key); ok && inc == r.self && f != nil {
			f(key)
		}
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
// set of its objects is final, and from must be at or above the
// partition's sealed end. Only the objects holding the partition are read,
// and of them only the partition's byte range.
//
// Objects may have been stored out of order (a writer keeps several PUTs
// in flight), so a crashed or fenced writer can leave a hole: a sequence
// number it never stored, now taken by a fence, with stored objects above
// it. The writer acknowledged nothing at or above a hole, so when the
// partition's offsets jump past a fence (the missing records were in the
// hole) the tail ends there: what lies above was never acknowledged and
// cannot follow without a gap. A partition whose offsets run on across a
// hole keeps its records above it (they were never acknowledged either,
// but are whole, and a reader that owns nothing may have shown them).
// Above from, a jump past a missing object that is not a fence is handed
// to fn as it is (the caller reports the gap): a collected object held
// only sealed records.
func (r *Reader) ReadTail(ctx context.Context, inc, topic string, partition int32, from int64, fn func(*segment.Batch) error) error {
	objs, err := r.List(ctx, inc)
	if err != nil {
		return err
	}
	expected := from
	fenced := false // a fence since the partition's previous entry
	for _, o := range objs {
		h, err := r.header(ctx, o.Key)
		if errors.Is(err, tier.ErrNotFound) {
			continue // collected since the listing: sealed
		}
		if err != nil {
			return err
		}
		if h == nil {
			fenced = true
			continue
		}
		e, ok := h.Find(topic, partition)
		if !ok {
			continue
		}
		if e.Last < expected {
			fenced = false
			continue
		}
		if e.First > expected && fenced {
			return nil // the records at expected were in a hole: never acknowledged
		}
		fenced = false
		batches, err := r.ReadEntry(ctx, TailEntry{Key: o.Key, Data: h.DataStart + int64(e.Pos), Entry: e})
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
		expected = e.Last + 1
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
