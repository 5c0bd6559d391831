package broker

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/tier"
)

// Reading a partition's bounds or a few of its records on behalf of a
// consumer group (lag, offset validation, resets) never opens the
// partition: opening claims it (bumps the manifest's owner epoch and fences
// the previous owner), and a read must never take ownership.

// partitionBounds returns partition p's log start and high watermark
// without opening or claiming it. When this broker has the partition open,
// they come from the open partition (its manifest's log start and its high
// watermark); otherwise from the manifest in the bucket, read only: its log
// start and its sealed end. A partition with no manifest yet is empty
// (0, 0).
func (b *Broker) partitionBounds(ctx context.Context, t *topic, p int32) (logStart, highWatermark int64, err error) {
	if p < 0 || p >= t.cfg.Partitions {
		return 0, 0, status.Errorf(codes.InvalidArgument, "partition %d out of range: topic %q has partitions 0-%d", p, t.cfg.Name, t.cfg.Partitions-1)
	}
	t.mu.Lock()
	part := t.parts[p]
	t.mu.Unlock()
	if part != nil {
		m, err := part.log.Manifest(ctx)
		if err != nil {
			return 0, 0, statusOf(err)
		}
		return m.LogStartOffset, part.log.HighWatermark(), nil
	}
	m, _, err := tier.NewManifestStore(b.cfg.Store, t.cfg.Name, p).Load(ctx)
	if errors.Is(err, tier.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, statusOf(err)
	}
	return m.LogStartOffset, m.NextOffset(), nil
}

// partitionReader returns a reader of partition p that claims nothing: the
// open partition's reader when this broker has it open, otherwise a reader
// of its sealed segments only (manifest read from the bucket on each call).
func (b *Broker) partitionReader(t *topic, p int32) *fetch.PartitionReader {
	t.mu.Lock()
	part := t.parts[p]
	t.mu.Unlock()
	if part != nil {
		return part.reader
	}
	return fetch.NewPartitionReader(b.cache, b.cfg.Store, fetch.NewBucketManifests(b.cfg.Store, t.cfg.Name, p, 0), nil)
}
