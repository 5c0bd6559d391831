package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/stratalog/strata/tier"
)

// producerIDKey holds the next unallocated producer id block.
const producerIDKey = "producers/next-id.json"

// idBlock is how many producer ids a broker takes from the bucket at once.
const idBlock = 1000

// idAllocator hands out producer ids unique in the bucket: it takes blocks
// of idBlock ids by compare-and-swap on producerIDKey, so no two brokers
// (or incarnations) ever hand out the same id. Ids start at 1.
type idAllocator struct {
	store tier.Store
	mu    sync.Mutex
	next  int64 // next id to hand out
	limit int64 // end of the current block (exclusive)
}

type idState struct {
	Next int64 `json:"next"`
}

func (a *idAllocator) allocate(ctx context.Context) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next < a.limit {
		a.next++
		return a.next - 1, nil
	}
	for attempt := 0; attempt < 20; attempt++ {
		cur := idState{Next: 1}
		etag := ""
		rc, info, err := a.store.Get(ctx, producerIDKey)
		switch {
		case err == nil:
			data, rerr := io.ReadAll(io.LimitReader(rc, 1<<10))
			rc.Close()
			if rerr != nil {
				return 0, rerr
			}
			if err := json.Unmarshal(data, &cur); err != nil || cur.Next < 1 {
				return 0, fmt.Errorf("broker: %s is corrupt (%q): fix or delete it", producerIDKey, data)
			}
			etag = info.ETag
		case !errors.Is(err, tier.ErrNotFound):
			return 0, err
		}
		if cur.Next > math.MaxInt64-idBlock {
			return 0, errors.New("broker: producer ids exhausted")
		}
		data, _ := json.Marshal(idState{Next: cur.Next + idBlock})
		if etag == "" {
			_, err = a.store.PutIfAbsent(ctx, producerIDKey, bytes.NewReader(data), int64(len(data)))
		} else {
			_, err = a.store.PutIfMatch(ctx, producerIDKey, etag, bytes.NewReader(data), int64(len(data)))
		}
		if errors.Is(err, tier.ErrPreconditionFailed) {
			continue // another broker took a block first
		}
		if err != nil {
			// The outcome is unknown: the block may be taken; skipping it
			// wastes ids but never hands one out twice.
			return 0, err
		}
		a.next, a.limit = cur.Next+1, cur.Next+idBlock
		return cur.Next, nil
	}
	return 0, errors.New("broker: could not allocate a producer id block: too much contention on " + producerIDKey)
}

// collectLoop deletes WAL objects whose records are all sealed.
func (b *Broker) collectLoop() {
	defer b.bg.Done()
	t := time.NewTicker(b.cfg.WALCollectInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.WALCollectInterval)
		n, err := b.CollectWAL(ctx)
		cancel()
		if err != nil {
			b.cfg.Logger.Warn("WAL garbage collection failed; will retry", "err", err)
		} else if n > 0 {
			b.cfg.Logger.Debug("WAL objects collected", "deleted", n)
		}
	}
}

// CollectWAL deletes every WAL object in the bucket (this broker's and
// earlier incarnations') whose partitions are all sealed past it, and
// returns how many it deleted.
func (b *Broker) CollectWAL(ctx context.Context) (int, error) {
	return b.walr.Collect(ctx, b.sealedEnd)
}

// sealedEnd is how far a partition is sealed, from the open partition or
// the bucket; math.MaxInt64 for a partition whose topic is gone.
func (b *Broker) sealedEnd(ctx context.Context, topic string, p int32) (int64, error) {
	b.mu.Lock()
	t := b.topics[topic]
	b.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		part := t.parts[p]
		t.mu.Unlock()
		if part != nil {
			m, _ := part.log.Manifest(ctx)
			return m.NextOffset(), nil
		}
	}
	m, _, err := tier.NewManifestStore(b.cfg.Store, topic, p).Load(ctx)
	if err == nil {
		return m.NextOffset(), nil
	}
	if !errors.Is(err, tier.ErrNotFound) {
		return 0, err
	}
	if _, err := b.cfg.Store.Stat(ctx, configKey(topic)); errors.Is(err, tier.ErrNotFound) {
		return math.MaxInt64, nil
	} else if err != nil {
		return 0, err
	}
	return 0, nil
}
