package core

// Reads without ownership.
//
// A read never claims a partition: it never bumps an epoch and never
// fences anyone. When this broker has the partition open (it owns it) a
// read uses the open partition: the local log, cut at the high watermark,
// and the sealed segments. Otherwise it uses a bucketView: the manifest
// and sealed segments from the bucket, plus the durable tail that is not
// sealed yet, read from the WAL objects of the partition's owners
// (manifest Owner and WALOwners) without fencing them. A view sees only
// the contiguous run of offsets from the sealed end, and every record in
// that run is part of the log for good: a later owner fences that
// incarnation only after listing its objects, and recovers every one of
// them past the sealed end up to where a partition's offsets jump past a
// fence (a hole: an object the writer, with several PUTs in flight, never
// stored), which a contiguous run never crosses; so a reader never shows
// a record a takeover could take back. (Records in a stored object above
// a lower one still in flight may be shown before the writer acks them:
// they are kept by every recovery all the same.) A gap (an object
// collected after sealing, under a manifest this view has not seen yet,
// or one not stored yet) ends the tail until the next refresh.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// viewRefresh is how stale a bucket view's manifest and WAL tail may be:
// the poll interval of a follower on a broker that does not own the
// partition.
const viewRefresh = 250 * time.Millisecond

// readView is what reads of one partition go through.
type readView struct {
	reader *fetch.PartitionReader
	// changed returns a channel closed when the high watermark may have
	// moved; for a bucket view it is closed after Broker.viewPoll.
	changed func() <-chan struct{}
	// opened (bucket views; nil otherwise) is closed when the partition
	// is opened on this broker (a write claimed it) and reads switch to
	// it: a follower that began before the first write here waits on it
	// too, so it sees the records as soon as they are durable, not a poll
	// later.
	opened <-chan struct{}
	// bounds returns the log start and the high watermark.
	bounds func(ctx context.Context) (logStart, hw int64, err error)
	// local is the bytes on this broker's disk (0 for a bucket view).
	local func() int64
	// manifest is the view's manifest.
	manifest func(ctx context.Context) (*meta.Manifest, error)
	// stale reports that the view is no longer what reads should use: the
	// partition was opened here since, or the open one was dropped.
	stale func() bool
}

// view returns the read view of partition p of t, never claiming it.
func (b *Broker) view(ctx context.Context, t *topic, p int32) (*readView, error) {
	if err := t.checkPartition(p); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if part, ok := t.parts[p]; ok {
		lp := part.log
		return &readView{
			reader:  part.reader,
			changed: lp.Changed,
			bounds: func(ctx context.Context) (int64, int64, error) {
				m, _ := lp.Manifest(ctx)
				return m.LogStartOffset, lp.HighWatermark(), nil
			},
			local:    func() int64 { return lp.Local().Bytes() },
			manifest: lp.Manifest,
			stale: func() bool {
				t.mu.Lock()
				defer t.mu.Unlock()
				return t.parts[p] != part
			},
		}, nil
	}
	if t.views == nil {
		t.views = map[int32]*bucketView{}
	}
	v := t.views[p]
	if v == nil {
		v = &bucketView{store: b.cfg.Store, walr: b.walReader(), topic: t.store, partition: p, opened: make(chan struct{})}
		v.reader = fetch.NewPartitionReader(b.cache, b.cfg.Store, v, v)
		t.views[p] = v
	}
	return &readView{
		reader: v.reader,
		changed: func() <-chan struct{} {
			ch := make(chan struct{})
			time.AfterFunc(b.viewPoll, func() { close(ch) })
			return ch
		},
		opened: v.opened,
		bounds: func(ctx context.Context) (int64, int64, error) {
			v.Refresh() // describe and list-offsets answer from the bucket as it is now
			m, err := v.Manifest(ctx)
			if err != nil {
				return 0, 0, err
			}
			return m.LogStartOffset, v.NextOffset(), nil
		},
		local:    func() int64 { return 0 },
		manifest: v.Manifest,
		stale: func() bool {
			t.mu.Lock()
			defer t.mu.Unlock()
			_, open := t.parts[p]
			return open || t.views[p] != v // opened here since (and maybe dropped again: v.opened is closed)
		},
	}, nil
}

// partitionBounds returns the log start and high watermark of partition p
// of t without claiming it.
func (b *Broker) partitionBounds(ctx context.Context, t *topic, p int32) (logStart, hw int64, err error) {
	v, err := b.view(ctx, t, p)
	if err != nil {
		return 0, 0, err
	}
	return v.bounds(ctx)
}

// bucketView is a partition as a broker that does not own it sees it: a
// fetch.ManifestSource and fetch.HotLog over the bucket. Safe for
// concurrent use.
type bucketView struct {
	store     tier.Store
	walr      *wal.Reader
	topic     string // storage name
	partition int32
	reader    *fetch.PartitionReader
	opened    chan struct{} // closed when the partition is opened here and the view is dropped

	mu      sync.Mutex
	m       *meta.Manifest  // nil: the partition has no manifest yet
	tail    []wal.TailEntry // contiguous durable entries from m.NextOffset()
	end     int64           // offset after the tail
	fetched time.Time
}

var (
	_ fetch.ManifestSource = (*bucketView)(nil)
	_ fetch.HotLog         = (*bucketView)(nil)
)

// Manifest returns the manifest, refreshing it and the WAL tail when
// older than viewRefresh. A partition never written has an empty
// manifest.
func (v *bucketView) Manifest(ctx context.Context) (*meta.Manifest, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.fetched.IsZero() && time.Since(v.fetched) < viewRefresh {
		return v.m, nil
	}
	if err := v.refreshLocked(ctx); err != nil {
		return nil, err
	}
	return v.m, nil
}

// Refresh makes the next Manifest call read the bucket (fetch calls it
// when a segment vanished).
func (v *bucketView) Refresh() {
	v.mu.Lock()
	v.fetched = time.Time{}
	v.mu.Unlock()
}

func (v *bucketView) refreshLocked(ctx context.Context) error {
	m, _, err := meta.NewManifestStore(v.store, v.topic, v.partition).Load(ctx)
	if errors.Is(err, tier.ErrNotFound) {
		m, err = &meta.Manifest{Version: meta.ManifestVersion, Topic: v.topic, Partition: v.partition}, nil
	}
	if err != nil {
		return err
	}
	owners := append(append([]string(nil), m.WALOwners...), m.Owner)
	end := m.NextOffset()
	var tail []wal.TailEntry
	for _, inc := range owners {
		if inc == "" {
			continue
		}
		entries, err := v.walr.Entries(ctx, inc, v.topic, v.partition, end)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Entry.First > end {
				break // a gap: what follows waits for the next refresh
			}
			if e.Entry.Last >= end {
				tail = append(tail, e)
				end = e.Entry.Last + 1
			}
		}
	}
	v.m, v.tail, v.end, v.fetched = m, tail, end, time.Now()
	return nil
}

// StartOffset is where the WAL tail starts: the sealed end.
func (v *bucketView) StartOffset() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		return 0
	}
	return v.m.NextOffset()
}

// NextOffset is the offset after the durable tail: the high watermark.
func (v *bucketView) NextOffset() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.end
}

// Read returns the tail's batches from offset from on, up to about
// maxBytes (at least one batch when one exists).
func (v *bucketView) Read(from int64, maxBytes int) ([]segment.Batch, error) {
	v.mu.Lock()
	tail := v.tail
	v.mu.Unlock()
	i := sort.Search(len(tail), func(i int) bool { return tail[i].Entry.Last >= from })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []segment.Batch
	size := 0
	for ; i < len(tail) && (len(out) == 0 || size < maxBytes); i++ {
		batches, err := v.walr.ReadEntry(ctx, tail[i])
		if err != nil {
			if errors.Is(err, tier.ErrNotFound) {
				v.Refresh() // sealed and collected: the segments have it now
			}
			return nil, fmt.Errorf("core: read the WAL tail of %s/%d: %w", v.topic, v.partition, err)
		}
		for j := range batches {
			bt := &batches[j]
			if bt.LastOffset() < from {
				continue
			}
			wal.TrimBatch(bt, from)
			out = append(out, *bt)
			for k := range bt.Records {
				size += len(bt.Records[k].Key) + len(bt.Records[k].Value) + 16
			}
			if size >= maxBytes {
				break
			}
		}
	}
	return out, nil
}

// partitionReader returns a reader of partition p that claims nothing (see
// view); p must be in range.
func (b *Broker) partitionReader(t *topic, p int32) *fetch.PartitionReader {
	v, err := b.view(context.Background(), t, p)
	if err != nil {
		return fetch.NewPartitionReader(b.cache, b.cfg.Store, fetch.NewBucketManifests(b.cfg.Store, t.store, p, 0), nil)
	}
	return v.reader
}
