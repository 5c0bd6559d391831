package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/segment"
)

// AppendResult says where a batch went.
type AppendResult struct {
	Base      int64 // offset of the first record
	End       int64 // offset after the last record (the offset to wait for: see Offsets)
	Duplicate bool  // a retry of a batch already stored at Base: nothing was appended
	// Offsets, when not nil, is each record's offset: some records were
	// duplicates of stored ones (by message id, dedup.go), answered with
	// the stored copy's offset, and the others took consecutive offsets.
	// End is then past the highest of them, so that a wait for End waits
	// for the stored copies too. Nil when the offsets are Base, Base+1, ...
	Offsets []int64
	// Deduplicated, with Offsets, says per record that it was a duplicate
	// and not stored again.
	Deduplicated []bool
}

// Append writes a batch and returns its base offset; see Write.
func (p *Partition) Append(ctx context.Context, b *segment.Batch) (int64, error) {
	r, err := p.Write(ctx, b)
	return r.Base, err
}

// Write assigns the batch its offsets (setting b.BaseOffset and each
// record's Offset), writes it to the local log under the fsync policy and,
// with a WAL, queues it for the next WAL object. It returns before the
// batch is durable: WaitLocal and WaitDurable wait for that. A retry of an
// idempotent producer's batch that is already stored is answered with the
// stored batch's offsets (Duplicate) and appends nothing; a batch whose
// sequence skips ahead waits up to SequenceWait for the batches it
// overtook, then fails with ErrOutOfOrderSequence. Write waits for WAL
// buffer space (backpressure) until ctx ends. With DedupWindow, records
// whose message id was stored within the window are not stored again
// (see AppendResult.Offsets and dedup.go): a copy of b without them is
// stored and given the offsets, b itself is left as it was. A record with
// an invalid message id fails the whole batch (ErrInvalidMsgID).
func (p *Partition) Write(ctx context.Context, b *segment.Batch) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	if len(b.Records) == 0 {
		return AppendResult{}, errors.New("ingest: empty batch: a batch needs at least one record")
	}
	if err := p.checkMsgIDs(b); err != nil {
		return AppendResult{}, err
	}
	// A retry of a stored batch is answered before anything waits for
	// buffer space: under backpressure it must learn it is stored, not be
	// refused (issue 11, defect 16).
	if res, done, err := p.duplicate(b); done {
		return res, err
	}
	var reserved int64
	if p.cfg.WAL != nil {
		reserved = wal.EstimateSize(b)
		if err := p.cfg.WAL.Reserve(ctx, reserved); err != nil {
			return AppendResult{}, fmt.Errorf("ingest: %s/%d: batch not appended: %w", p.cfg.Topic, p.cfg.Partition, err)
		}
	}
	// An idempotent batch that overtook an earlier batch of its producer
	// (requests in flight at once are handled in any order) waits up to
	// SequenceWait for it rather than failing at once.
	var waitUntil <-chan time.Time
	for {
		res, retry, err := p.write(b, reserved)
		if retry == nil {
			if err != nil {
				return res, err
			}
			if p.cfg.WAL == nil {
				p.advance(res.End)
			}
			p.maybeRoll()
			return res, nil
		}
		if waitUntil == nil {
			t := time.NewTimer(p.cfg.SequenceWait)
			defer t.Stop()
			waitUntil = t.C
		}
		select {
		case <-retry:
			continue
		case <-waitUntil:
		case <-ctx.Done():
		}
		if reserved > 0 {
			p.cfg.WAL.Release(reserved)
		}
		return res, err
	}
}

// duplicate answers a batch that needs no append: a retry of a stored
// idempotent batch (its offsets, Duplicate) or one the producer state
// refuses for good (stale sequence, fenced producer epoch). done is false
// when the batch must go on to write (new, or out of order for now).
func (p *Partition) duplicate(b *segment.Batch) (res AppendResult, done bool, err error) {
	if b.ProducerID == segment.NoProducer {
		return AppendResult{}, false, nil
	}
	if err := p.usable(); err != nil {
		return AppendResult{}, true, err
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	m, dup, err := p.producers.check(b)
	switch {
	case dup:
		res, err := p.retryResult(b, m)
		return res, true, err
	case err != nil && !errors.Is(err, ErrOutOfOrderSequence):
		return AppendResult{}, true, err
	}
	return AppendResult{}, false, nil
}

// write checks b against the producer state and appends it. When b is out
// of order it returns, with the error, a channel closed at the next append
// to the partition (after which b may fit); the caller still holds the
// reservation then. On any other error the reservation is released.
func (p *Partition) write(b *segment.Batch, reserved int64) (AppendResult, <-chan struct{}, error) {
	release := func() {
		if reserved > 0 {
			p.cfg.WAL.Release(reserved)
		}
	}
	p.appendMu.RLock()
	defer p.appendMu.RUnlock()
	if err := p.usable(); err != nil {
		release()
		return AppendResult{}, nil, err
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if m, dup, err := p.producers.check(b); err != nil || dup {
		if errors.Is(err, ErrOutOfOrderSequence) {
			if p.appended == nil {
				p.appended = make(chan struct{})
			}
			return AppendResult{}, p.appended, err
		}
		release()
		if err != nil {
			return AppendResult{}, nil, err
		}
		res, err := p.retryResult(b, m)
		return res, nil, err
	}
	nowMs := p.cfg.Clock().UnixMilli()
	// The message ids are checked here, where offsets are assigned, so of
	// two concurrent writes of one id exactly one is stored.
	stored := b
	plan := p.plan(b, nowMs)
	if plan != nil {
		stored = plan.stored
	}
	if len(stored.Records) == 0 {
		// Every record is a duplicate: nothing to append.
		release()
		stored.BaseOffset = p.local.NextOffset()
		p.producers.record(stored, nowMs)
		p.wakeAppended()
		return plan.result(stored.BaseOffset), nil, nil
	}
	// The batch is encoded once: the WAL copies the local log's frame
	// payload (the same segment.AppendBatch bytes) before the pooled
	// buffer holding it is released.
	base, enc, releaseEnc, err := p.local.appendShared(stored)
	if err != nil {
		release()
		return AppendResult{}, nil, err
	}
	p.producers.record(stored, nowMs)
	p.remember(stored, nowMs, nowMs)
	p.wakeAppended()
	if p.cfg.WAL == nil {
		releaseEnc()
	} else {
		err := p.cfg.WAL.AddEncoded(p.cfg.Topic, p.cfg.Partition, stored.BaseOffset, stored.LastOffset(), enc, reserved, p.advance)
		releaseEnc()
		if err != nil {
			// The record has an offset but can never be acknowledged as
			// durable by this broker: stop taking writes.
			p.failWAL(err)
			return AppendResult{}, nil, err
		}
	}
	if plan != nil {
		return plan.result(base), nil, nil
	}
	return AppendResult{Base: base, End: base + int64(len(b.Records))}, nil, nil
}

// wakeAppended wakes the batches waiting for an earlier batch of their
// producer. Caller holds writeMu.
func (p *Partition) wakeAppended() {
	if p.appended != nil {
		close(p.appended)
		p.appended = nil
	}
}

// retryResult answers a retry of the stored batch m. Caller holds
// writeMu.
func (p *Partition) retryResult(b *segment.Batch, m batchMeta) (AppendResult, error) {
	if int(m.count) < len(b.Records) {
		return p.retryAnswer(b, m)
	}
	return AppendResult{Base: m.base, End: m.base + int64(len(b.Records)), Duplicate: true}, nil
}

// maybeRoll closes the active local file once it reaches SealBytes, and
// brings the next background round forward when the active file got its
// first record (its SealInterval runs from then; the round armed before
// may be as far off as IdleCheckInterval).
func (p *Partition) maybeRoll() {
	files := p.local.Files()
	if len(files) == 0 {
		return
	}
	active := files[len(files)-1]
	switch {
	case !active.Active:
	case active.Bytes >= p.cfg.SealBytes:
		if err := p.local.Roll(); err == nil {
			p.wake()
		} // else: the append is stored; the roll is retried by the loop
	case !active.FirstAppend.IsZero():
		p.wakeForFirstAppend(active.FirstAppend)
	}
}

func (p *Partition) failWAL(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.fenced == nil {
		p.mu.fenced = fmt.Errorf("ingest: %s/%d: the WAL failed, no more writes: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
}
