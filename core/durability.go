package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// idBlock is how many producer ids a broker takes from the bucket at once.
const idBlock = 1000

// idAllocator hands out producer ids unique in the bucket: it takes blocks
// of idBlock ids by compare-and-swap on meta.ProducerIDKey, so no two brokers
// (or incarnations) ever hand out the same id. Ids start at 1. No lock is
// held across I/O: one caller at a time takes a block (holding taking, a
// channel its waiters can leave when their context ends), while mu guards
// only the block in memory.
type idAllocator struct {
	store  tier.Store
	taking chan struct{} // a token held by the one caller taking a block
	mu     sync.Mutex
	next   int64 // next id to hand out
	limit  int64 // end of the current block (exclusive)
}

func newIDAllocator(store tier.Store) *idAllocator {
	return &idAllocator{store: store, taking: make(chan struct{}, 1)}
}

// idState is the stored producer-id block: the next id not yet taken, and
// the random id of the write that stored it (so a write whose answer was
// lost is recognized, see meta.CAS).
type idState struct {
	Next   int64  `json:"next"`
	Writer string `json:"writer,omitempty"`
}

func (a *idAllocator) allocate(ctx context.Context) (int64, error) {
	for {
		if id, ok := a.fromBlock(); ok {
			return id, nil
		}
		select {
		case a.taking <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if a.hasID() {
			<-a.taking // another caller took a block meanwhile
			continue
		}
		first, err := a.takeBlock(ctx)
		if err == nil {
			a.mu.Lock()
			a.next, a.limit = first, first+idBlock
			a.mu.Unlock()
		}
		<-a.taking
		if err != nil {
			return 0, err
		}
	}
}

// fromBlock hands out the next id of the block in memory, if any is left.
func (a *idAllocator) fromBlock() (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next < a.limit {
		a.next++
		return a.next - 1, true
	}
	return 0, false
}

// hasID reports whether the block in memory has an id left.
func (a *idAllocator) hasID() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.next < a.limit
}

// takeBlock takes the next block from the bucket and returns its first id.
func (a *idAllocator) takeBlock(ctx context.Context) (int64, error) {
	var first int64
	_, err := meta.CAS{Store: a.store, Limit: 1 << 10}.Update(ctx, meta.ProducerIDKey, func(v meta.Version) ([]byte, error) {
		cur := idState{Next: 1}
		if v.Exists() {
			if err := json.Unmarshal(v.Data, &cur); err != nil || cur.Next < 1 {
				return nil, fmt.Errorf("core: %s is corrupt (%q): fix or delete it", meta.ProducerIDKey, v.Data)
			}
		}
		if cur.Next > math.MaxInt64-idBlock {
			return nil, errors.New("core: producer ids exhausted")
		}
		first = cur.Next
		return json.Marshal(idState{Next: cur.Next + idBlock, Writer: meta.NewWriteID()})
	})
	if err != nil {
		// A block whose write's outcome is unknown may be taken: skipping
		// it wastes ids but never hands one out twice.
		return 0, fmt.Errorf("core: allocate a producer id block: %w", err)
	}
	return first, nil
}

// every runs fn every interval, with a context that ends after one
// interval, until the broker closes. The caller did b.bg.Add(1).
func (b *Broker) every(interval time.Duration, fn func(ctx context.Context)) {
	b.everyWithin(interval, interval, fn)
}

// everyWithin is every with another bound on each run than the interval.
func (b *Broker) everyWithin(interval, timeout time.Duration, fn func(ctx context.Context)) {
	defer b.bg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := b.bgContext(timeout)
		fn(ctx)
		cancel()
	}
}

// bgContext is the context of background work: it ends after timeout, or
// when the broker closes.
func (b *Broker) bgContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	go func() {
		select {
		case <-b.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// collectWALRound deletes WAL objects whose records are all sealed.
func (b *Broker) collectWALRound(ctx context.Context) {
	n, err := b.CollectWAL(ctx)
	if err != nil {
		b.cfg.Logger.Warn("WAL garbage collection failed; will retry", "err", err)
	} else if n > 0 {
		b.cfg.Logger.Debug("WAL objects collected", "deleted", n)
	}
}

// CollectWAL deletes every WAL object in the bucket (this broker's and
// earlier incarnations') whose partitions are all sealed past it, and
// returns how many it deleted.
func (b *Broker) CollectWAL(ctx context.Context) (int, error) {
	return b.walReader().Collect(ctx, b.sealedEnd)
}

// sealedEnd is how far a partition is sealed, from the open partition or
// the bucket; math.MaxInt64 for a partition whose topic is gone, or was
// re-created since (another identity): its WAL entries are garbage.
func (b *Broker) sealedEnd(ctx context.Context, store string, p int32) (int64, error) {
	name, id := meta.SplitStorageName(store)
	b.mu.Lock()
	t := b.topics[name]
	b.mu.Unlock()
	if t != nil && t.store == store {
		t.mu.Lock()
		part := t.parts[p]
		t.mu.Unlock()
		if part != nil {
			m, _ := part.log.Manifest(ctx)
			return m.NextOffset(), nil
		}
	}
	rc, _, err := b.cfg.Store.Get(ctx, meta.TopicConfigKey(name))
	if errors.Is(err, tier.ErrNotFound) {
		return math.MaxInt64, nil
	}
	if err != nil {
		return 0, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return 0, err
	}
	st, err := decodeTopicConfig(name, data)
	if err != nil {
		return 0, fmt.Errorf("core: topic %q config unreadable, WAL objects holding it are kept: %w", name, err)
	}
	if st.ID != id {
		return math.MaxInt64, nil // deleted and re-created: another topic now
	}
	m, _, err := meta.NewManifestStore(b.cfg.Store, store, p).Load(ctx)
	if errors.Is(err, tier.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.NextOffset(), nil
}

// refreshTopicsRound checks the cached topics against the bucket.
func (b *Broker) refreshTopicsRound(ctx context.Context) {
	if err := b.RefreshTopics(ctx); err != nil {
		b.cfg.Logger.Warn("topic refresh failed; will retry", "err", err)
	}
}

// RefreshTopics forgets every cached topic whose config object is gone or
// was replaced (the topic was deleted, or deleted and re-created, through
// another broker): its open partitions are dropped without sealing, so
// they stop taking writes, and the next request loads the topic anew.
func (b *Broker) RefreshTopics(ctx context.Context) error {
	etags := map[string]string{}
	err := b.cfg.Store.List(ctx, meta.TopicsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.TopicNameOfConfigKey(o.Key); ok {
			etags[name] = o.ETag
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	var gone, changed []*topic
	for name, t := range b.topics {
		etag, ok := etags[name]
		switch {
		case !ok:
			gone = append(gone, t)
		case etag != t.etag:
			changed = append(changed, t) // maybe re-created: compare identities
		}
	}
	b.mu.Unlock()
	var errs []error // a topic that cannot be checked now is checked next time; the others go on
	for _, t := range changed {
		st, etag, err := b.topicIdentity(ctx, t.cfg.Name)
		switch {
		case errors.Is(err, tier.ErrNotFound):
			gone = append(gone, t)
		case err != nil:
			errs = append(errs, fmt.Errorf("topic %q: %w", t.cfg.Name, err))
		case st.ID != t.id:
			gone = append(gone, t)
		default:
			b.mu.Lock()
			t.etag = etag
			b.mu.Unlock()
			t.learnSchema(st.TopicConfig) // a value schema inferred elsewhere
		}
	}
	for _, t := range gone {
		b.forgetTopic(t)
	}
	return errors.Join(errs...)
}

// forgetTopic stops serving a cached topic whose config is gone or was
// replaced: its open partitions are dropped without sealing, its readers
// end, and the next request loads the topic anew.
func (b *Broker) forgetTopic(t *topic) {
	b.removeTopic(t)
	t.mu.Lock()
	t.deleted = true
	t.mu.Unlock()
	n := b.dropPartitions(t, func(*partition) bool { return true })
	b.cfg.Logger.Warn("topic deleted or re-created through another broker; stopped serving it here", "topic", t.cfg.Name, "partitions_dropped", n)
}

// topicIdentity reads a topic's stored config (and identity) and the
// config's ETag.
func (b *Broker) topicIdentity(ctx context.Context, name string) (*storedTopic, string, error) {
	rc, info, err := b.cfg.Store.Get(ctx, meta.TopicConfigKey(name))
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, "", err
	}
	st, err := decodeTopicConfig(name, data)
	if err != nil {
		return nil, "", fmt.Errorf("core: topic %q config unreadable: %w", name, err)
	}
	return st, info.ETag, nil
}
