package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// Maintain runs one round of background work: roll an aged active file,
// seal every closed unsealed file, trim local files past the local
// retention, apply object-store retention, and sweep garbage when due.
func (p *Partition) Maintain(ctx context.Context) error {
	p.sealMu.Lock()
	defer p.sealMu.Unlock()
	if err := p.usable(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	now := p.cfg.Clock()
	if files := p.local.Files(); len(files) > 0 {
		a := files[len(files)-1]
		if a.Active && a.Bytes > 0 && !a.FirstAppend.IsZero() && now.Sub(a.FirstAppend) >= p.cfg.SealInterval {
			if err := p.local.Roll(); err != nil {
				return err
			}
		}
	}
	if err := p.sealClosed(ctx); err != nil {
		return err
	}
	if err := p.trimLocal(); err != nil {
		return err
	}
	if err := p.applyRetention(ctx, now); err != nil {
		return err
	}
	if !now.Before(p.sweepDue) {
		young, err := p.sweepCount(ctx, now)
		if err != nil {
			p.sweepDue = now.Add(p.cfg.SweepInterval)
			return err
		}
		p.sweepAfter(now, young > 0)
	}
	return nil
}

// SealNow rolls the active file and seals everything appended so far. When
// it returns nil, every record appended before the call is in a committed
// segment.
func (p *Partition) SealNow(ctx context.Context) error {
	if err := p.usable(); err != nil {
		return err
	}
	return p.sealAll(ctx)
}

func (p *Partition) sealAll(ctx context.Context) error {
	p.sealMu.Lock()
	defer p.sealMu.Unlock()
	if err := p.local.Roll(); err != nil {
		return err
	}
	return p.sealClosed(ctx)
}

// sealClosed seals every closed local file not yet in the manifest, oldest
// first. Caller holds sealMu.
func (p *Partition) sealClosed(ctx context.Context) error {
	for _, f := range p.local.Files() {
		if f.Active {
			break
		}
		m, _ := p.Manifest(ctx)
		if f.EndOffset <= m.NextOffset() {
			continue // already sealed
		}
		if err := p.sealFile(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// sealFile builds a segment from one closed local file, uploads it, and
// commits it to the manifest.
func (p *Partition) sealFile(ctx context.Context, f FileInfo) error {
	release, err := p.cfg.Seals.acquire(ctx)
	if err != nil {
		return fmt.Errorf("ingest: seal %s: waiting for a seal slot: %w", f.Name, err)
	}
	defer release()
	p.mu.Lock()
	m, etag := p.mu.manifest, p.mu.etag
	p.mu.Unlock()
	from := m.NextOffset()
	start := time.Now()

	var buf bytes.Buffer
	w := segment.NewWriter(&buf, p.cfg.Segment)
	prods := producersFrom(m.Producers)
	nowMs := p.cfg.Clock().UnixMilli() // broker time, never the records' own
	var msgIDs int64
	err = p.local.ReadFile(f.BaseOffset, func(b *segment.Batch) error {
		if b.LastOffset() < from {
			return nil
		}
		if b.BaseOffset < from {
			return fmt.Errorf("ingest: local batch %d-%d straddles the sealed end %d", b.BaseOffset, b.LastOffset(), from)
		}
		prods.record(b, nowMs)
		msgIDs += p.countMsgIDs(b)
		return w.Append(b)
	})
	if err != nil {
		return fmt.Errorf("ingest: seal %s: %w", f.Name, err)
	}
	footer, err := w.Finish()
	if err != nil {
		return fmt.Errorf("ingest: seal %s: %w", f.Name, err)
	}
	if footer.RecordCount == 0 {
		return nil
	}
	if footer.FirstOffset != from {
		return fmt.Errorf("ingest: seal %s: segment starts at %d but the sealed log ends at %d; refusing to leave a gap", f.Name, footer.FirstOffset, from)
	}
	key := meta.SegmentKey(p.cfg.Topic, p.cfg.Partition, footer.FirstOffset, m.Epoch)
	size := int64(buf.Len())
	committed := false
	defer func() {
		if !committed {
			// The object may be stored (an upload whose answer was lost,
			// or a commit that failed after it) and referenced by nothing.
			p.sweepSoon()
		}
	}()
	if _, err := p.cfg.Store.Put(ctx, key, bytes.NewReader(buf.Bytes()), size); err != nil {
		return fmt.Errorf("ingest: upload segment %s: %w", key, err)
	}
	failpoint.Hit(failpoint.SegmentUploaded)
	next := m.Clone()
	next.Generation++
	next.Producers = prods.snapshot(p.cfg.Clock().Add(-p.cfg.ProducerExpiry).UnixMilli())
	next.Segments = append(next.Segments, meta.SegmentRef{
		Key:          key,
		BaseOffset:   footer.FirstOffset,
		LastOffset:   footer.LastOffset,
		MinTimestamp: footer.MinTimestamp,
		MaxTimestamp: footer.MaxTimestamp,
		Records:      footer.RecordCount,
		Size:         size,
		Codec:        footer.Codec.String(),
		SealedAtMs:   p.cfg.Clock().UnixMilli(),
		MsgIDs:       msgIDs,
	})
	if err := p.commit(ctx, etag, next); err != nil {
		return err
	}
	committed = true
	failpoint.Hit(failpoint.ManifestCommitted)
	p.advance(next.NextOffset())
	if p.cfg.OnSeal != nil {
		p.cfg.OnSeal(Sealed{Records: footer.RecordCount, Bytes: size, Duration: time.Since(start)})
	}
	p.log.Debug("segment sealed", "key", key, "first", footer.FirstOffset, "last", footer.LastOffset, "bytes", size)
	return nil
}

// errResync is wrapped when a commit found the manifest changed by an
// earlier write of ours whose answer was lost: the partition adopts it and
// the caller retries from it.
var errResync = errors.New("ingest: the manifest holds an earlier write of ours whose answer was lost; adopted it, retry")

// commit CASes the manifest and records the result. A lost CAS fences the
// partition for good, unless the manifest that beat us carries our epoch
// and owner: only this Partition writes at its epoch (a new owner bumps
// it), so that manifest is the result of an earlier write of ours whose
// answer was lost (and whose read-back failed too, as in a store outage).
// It is adopted and the commit fails with errResync, to be redone from it.
func (p *Partition) commit(ctx context.Context, prevETag string, next *meta.Manifest) error {
	// The earlier owners' WAL objects are needed until everything
	// recovered from them (or from a trusted disk, which is in no WAL
	// object of ours) is sealed: a recovery seals file by file, and
	// forgetting the owners after the first file would lose the rest if a
	// later seal fails and another broker takes over.
	if next.NextOffset() >= p.recoveredEnd {
		next.WALOwners = nil
	}
	etag, err := p.manifests.Update(ctx, prevETag, next)
	if err != nil && !errors.Is(err, tier.ErrFenced) {
		// The outcome may be unknown (canceled, store unreachable): if our
		// write did apply, adopt it rather than fence ourselves next time.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if cur, curETag, lerr := p.manifests.Load(rctx); lerr == nil && cur.UpdateID == next.UpdateID {
			etag, err = curETag, nil
		}
		cancel()
	}
	if errors.Is(err, tier.ErrFenced) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		cur, curETag, lerr := p.manifests.Load(rctx)
		cancel()
		if lerr == nil && cur.Epoch == next.Epoch && cur.Owner == next.Owner {
			p.mu.Lock()
			p.mu.manifest, p.mu.etag = cur, curETag
			p.mu.Unlock()
			p.advance(cur.NextOffset())
			p.log.Warn("manifest changed by an earlier write of ours whose answer was lost; adopted it", "generation", cur.Generation)
			return fmt.Errorf("%w (generation %d)", errResync, cur.Generation)
		}
		if lerr != nil {
			// Cannot tell ours from a new owner's now: not fenced yet.
			return fmt.Errorf("ingest: %s/%d: manifest changed and cannot be read back now (%v); will retry: %w", p.cfg.Topic, p.cfg.Partition, lerr, tier.ErrUnavailable)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if errors.Is(err, tier.ErrFenced) {
			p.mu.fenced = fmt.Errorf("ingest: %s/%d: another broker owns this partition now: %w", p.cfg.Topic, p.cfg.Partition, err)
			p.log.Error("partition fenced; stopping writes", "err", err)
			return p.mu.fenced
		}
		return err
	}
	p.mu.manifest, p.mu.etag = next, etag
	return nil
}
