package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

// trimLocal deletes the oldest sealed local files while sealed local data is
// over LocalRetentionBytes, and every local file below the log start.
func (p *Partition) trimLocal() error {
	m, _ := p.Manifest(context.Background())
	sealedEnd := m.NextOffset()
	var sealedBytes int64
	files := p.local.Files()
	for _, f := range files {
		if !f.Active && f.EndOffset <= sealedEnd {
			sealedBytes += f.Bytes
		}
	}
	dropTo := int64(-1)
	for _, f := range files {
		if f.Active || f.EndOffset > sealedEnd {
			break
		}
		if sealedBytes <= p.cfg.LocalRetentionBytes && f.EndOffset > m.LogStartOffset {
			break
		}
		sealedBytes -= f.Bytes
		dropTo = f.EndOffset
	}
	if dropTo < 0 {
		return nil
	}
	_, err := p.local.DropBefore(dropTo)
	return err
}

// applyRetention drops whole segments past the retention limits: manifest
// first, objects second.
func (p *Partition) applyRetention(ctx context.Context, now time.Time) error {
	floor := p.floor.Load()
	if p.cfg.RetentionTime == 0 && p.cfg.RetentionBytes == 0 && floor == 0 {
		return nil
	}
	p.mu.Lock()
	m, etag := p.mu.manifest, p.mu.etag
	p.mu.Unlock()
	total := m.SealedBytes()
	cutoff := now.Add(-p.cfg.RetentionTime).UnixMilli()
	drop := 0
	for _, s := range m.Segments {
		expired := p.cfg.RetentionTime > 0 && s.MaxTimestamp < cutoff
		oversize := p.cfg.RetentionBytes > 0 && total-s.Size >= p.cfg.RetentionBytes
		consumed := s.LastOffset < floor
		if !expired && !oversize && !consumed {
			break
		}
		total -= s.Size
		drop++
	}
	if drop == 0 {
		return nil
	}
	next := m.Clone()
	next.Generation++
	next.Segments = next.Segments[drop:]
	next.LogStartOffset = m.Segments[drop-1].LastOffset + 1
	if err := p.commit(ctx, etag, next); err != nil {
		return err
	}
	p.log.Info("retention dropped segments", "segments", drop, "log_start", next.LogStartOffset)
	for _, s := range m.Segments[:drop] {
		if err := p.cfg.Store.Delete(ctx, s.Key); err != nil {
			// Unreferenced now; Sweep deletes it later.
			p.log.Warn("delete of expired segment failed; sweep will retry", "key", s.Key, "err", err)
		}
	}
	return nil
}

// Sweep deletes objects under the partition's segment prefix that the
// manifest does not reference and that are older than SweepGrace. It
// returns how many it deleted.
func (p *Partition) Sweep(ctx context.Context) (int, error) {
	p.sealMu.Lock()
	defer p.sealMu.Unlock()
	return p.sweep(ctx, p.cfg.Clock())
}

// Unlike a commit, a sweep deletes without a compare-and-swap, so it
// first checks, against the bucket's manifest read after the listing, that
// the partition is still ours: an owner taken over while idle has not
// noticed yet, and its own manifest does not reference the segments the
// new owner sealed since. It keeps every segment either manifest
// references (ours may lag the bucket after a lost commit answer).
func (p *Partition) sweep(ctx context.Context, now time.Time) (int, error) {
	m, _ := p.Manifest(ctx)
	var candidates []string
	err := p.cfg.Store.List(ctx, meta.SegmentPrefix(p.cfg.Topic, p.cfg.Partition), func(o tier.ObjectInfo) error {
		if now.Sub(o.LastModified) >= p.cfg.SweepGrace {
			candidates = append(candidates, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	if len(candidates) == 0 {
		return 0, nil
	}
	cur, _, err := p.manifests.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	if cur.Epoch != m.Epoch || cur.Owner != m.Owner {
		p.mu.Lock()
		if p.mu.fenced == nil {
			p.mu.fenced = fmt.Errorf("ingest: %s/%d: another broker owns this partition now (manifest epoch %d owner %q; ours %d %q), nothing swept: %w",
				p.cfg.Topic, p.cfg.Partition, cur.Epoch, cur.Owner, m.Epoch, m.Owner, tier.ErrFenced)
			p.log.Error("partition fenced; stopping writes", "err", p.mu.fenced)
		}
		err := p.mu.fenced
		p.mu.Unlock()
		return 0, err
	}
	live := make(map[string]bool, len(m.Segments)+len(cur.Segments))
	for _, s := range m.Segments {
		live[s.Key] = true
	}
	for _, s := range cur.Segments {
		live[s.Key] = true
	}
	var garbage []string
	for _, k := range candidates {
		if !live[k] {
			garbage = append(garbage, k)
		}
	}
	for i, k := range garbage {
		if err := p.cfg.Store.Delete(ctx, k); err != nil {
			return i, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
		}
	}
	if len(garbage) > 0 {
		p.log.Info("swept unreferenced segments", "objects", len(garbage))
	}
	return len(garbage), nil
}
