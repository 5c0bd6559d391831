package ingest

import (
	"context"
	"errors"
	"fmt"
)

// advance moves the high watermark to end (if that is forward) and wakes
// its waiters.
func (p *Partition) advance(end int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if end > p.mu.hw {
		p.mu.hw = end
		close(p.mu.changed)
		p.mu.changed = make(chan struct{})
	}
}

// HighWatermark is the offset after the last record readers may see: with
// a WAL, the records stored in the object store (in a WAL object or a
// sealed segment), so a reader never sees a record a crash could take
// back; without one, every appended record.
func (p *Partition) HighWatermark() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.hw
}

// Changed returns a channel that is closed when the high watermark next
// moves, or when the partition is closed.
func (p *Partition) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.changed
}

// WaitDurable waits until the records below end are in the object store
// (with a WAL; without one, until they are in the local log and fsynced).
// It fails when ctx ends first or the partition can no longer make them
// durable (fenced, WAL failed, closed).
func (p *Partition) WaitDurable(ctx context.Context, end int64) error {
	if p.cfg.WAL == nil {
		return p.WaitLocal(ctx, end)
	}
	for {
		p.mu.Lock()
		hw, ch, fenced := p.mu.hw, p.mu.changed, p.mu.fenced
		p.mu.Unlock()
		if hw >= end {
			return nil
		}
		if fenced != nil {
			return fenced
		}
		select {
		case <-ch:
		case <-p.cfg.WAL.Failed():
			if hw := p.HighWatermark(); hw >= end {
				return nil
			}
			return fmt.Errorf("ingest: %s/%d: records below %d are not in the object store and this WAL incarnation can no longer store them; they are on this broker's disk, which a reopen keeps and seals while this broker still owns the partition, so the outcome is unknown: %w", p.cfg.Topic, p.cfg.Partition, end, p.cfg.WAL.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitLocal waits until the records below end are fsynced in the local
// log: the `local` ack. With a WAL it refuses once the partition or its
// WAL incarnation is known to be fenced, and it waits for the records to
// be durable instead when the WAL has stored nothing within
// LocalAckLease, so a broker that was taken over while idle learns it
// before it acks (issue 11, defect 13).
func (p *Partition) WaitLocal(ctx context.Context, end int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.local.Sync(); err != nil {
		return err
	}
	if p.cfg.WAL == nil {
		return nil
	}
	if err := p.usable(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	if err := p.cfg.WAL.Err(); err != nil {
		return fmt.Errorf("ingest: %s/%d: records below %d are fsynced on this broker's disk only and this WAL incarnation can no longer store them; a reopen keeps and seals them while this broker still owns the partition, so the outcome is unknown: %w", p.cfg.Topic, p.cfg.Partition, end, err)
	}
	if !p.cfg.WAL.StoredWithin(p.cfg.LocalAckLease) {
		return p.WaitDurable(ctx, end)
	}
	return nil
}
