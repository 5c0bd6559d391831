package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
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
			p.sweepSoon()
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
	now := p.cfg.Clock()
	n, young, err := p.sweep(ctx, now)
	if err == nil {
		p.sweepAfter(now, young > 0)
	}
	return n, err
}

// sweepCount is sweep for the background rounds: it returns how many
// unreferenced objects it left because they are younger than SweepGrace.
func (p *Partition) sweepCount(ctx context.Context, now time.Time) (int, error) {
	_, young, err := p.sweep(ctx, now)
	return young, err
}

// When sweeps run. A sweep lists the partition's segments (a LIST
// request), so a partition that cannot have garbage does not sweep: with
// thousands of partitions, periodic sweeps were most of an idle broker's
// requests. Garbage (an object under the partition's segment prefix that
// its manifest does not reference) comes from an upload whose commit
// failed or whose outcome is unknown, a retention delete that failed
// (both known here: sweepSoon), or an earlier owner or a fenced writer
// (an open that claimed the partition sweeps SweepInterval later; a sweep
// that had to leave young unreferenced objects sweeps again SweepInterval
// later). Besides, every partition sweeps at least every
// IdleSweepInterval (with jitter), a backstop for what none of this
// foresaw. Caller holds sealMu.
func (p *Partition) sweepAfter(now time.Time, again bool) {
	if again {
		p.sweepDue = now.Add(p.cfg.SweepInterval)
		return
	}
	p.sweepDue = now.Add(p.idleSweepInterval())
}

// sweepSoon makes a sweep due within SweepInterval. Caller holds sealMu.
func (p *Partition) sweepSoon() {
	if due := p.cfg.Clock().Add(p.cfg.SweepInterval); due.Before(p.sweepDue) {
		p.sweepDue = due
	}
}

// idleSweepInterval is IdleSweepInterval plus up to a tenth of it at
// random, so that partitions opened together do not sweep together.
func (p *Partition) idleSweepInterval() time.Duration {
	d := p.cfg.IdleSweepInterval
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// Unlike a commit, a sweep deletes without a compare-and-swap, so it
// first checks, against the bucket's manifest read after the listing, that
// the partition is still ours: an owner taken over while idle has not
// noticed yet, and its own manifest does not reference the segments the
// new owner sealed since. It keeps every segment either manifest
// references (ours may lag the bucket after a lost commit answer).
//
// It returns how many objects it deleted, and how many unreferenced ones
// (by our manifest) it left because they are younger than SweepGrace.
func (p *Partition) sweep(ctx context.Context, now time.Time) (deleted, young int, err error) {
	m, _ := p.Manifest(ctx)
	ours := make(map[string]bool, len(m.Segments))
	for _, s := range m.Segments {
		ours[s.Key] = true
	}
	var candidates []string
	err = p.cfg.Store.List(ctx, meta.SegmentPrefix(p.cfg.Topic, p.cfg.Partition), func(o tier.ObjectInfo) error {
		switch {
		case ours[o.Key]:
			// Referenced: never garbage. (When every object is, the
			// sweep needs no manifest read.)
		case now.Sub(o.LastModified) >= p.cfg.SweepGrace:
			candidates = append(candidates, o.Key)
		default:
			young++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	if len(candidates) == 0 {
		return 0, young, nil
	}
	cur, _, err := p.manifests.Load(ctx)
	if err != nil {
		return 0, young, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
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
		return 0, young, err
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
			return i, young, fmt.Errorf("ingest: sweep %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
		}
	}
	if len(garbage) > 0 {
		p.log.Info("swept unreferenced segments", "objects", len(garbage))
	}
	return len(garbage), young, nil
}
