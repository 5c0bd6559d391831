package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/meta"
)

// ErrClosed is returned by calls on a closed Partition.
var ErrClosed = errors.New("ingest: partition closed")

// Partition is one partition's write path on its owning broker.
type Partition struct {
	cfg       PartitionConfig
	manifests *meta.ManifestStore
	local     *LocalLog
	log       *slog.Logger

	// maint runs the background maintenance (Maintain) in rounds on a
	// timer (maintain.go): at most one round at a time, and no goroutine
	// while the partition waits for the next, so an idle partition costs
	// a timer, not a goroutine.
	maint struct {
		sync.Mutex
		t       *time.Timer // nil until the open finished
		stopped bool        // Close began: never armed again
		kicked  bool        // woken during a round: the next one runs at once
		// firstAppend is the FirstAppend of the active file the rounds
		// were last woken for (wakeForFirstAppend).
		firstAppend time.Time
		running     sync.WaitGroup // an armed or running round
	}
	bgCtx    context.Context // the rounds' context, canceled by Close
	bgCancel context.CancelFunc

	// sealMu serializes sealing, retention and sweeping: the background
	// rounds and Close/SealNow take it, so a manifest update never races
	// another.
	sealMu sync.Mutex
	// sweepDue is when the next sweep is due (see sweepAfter); guarded
	// by sealMu.
	sweepDue time.Time
	// recoveredEnd is the local end when the open finished recovering:
	// records below it past the sealed end came from earlier owners' WAL
	// objects (or from a trusted disk) and are in no WAL object of ours,
	// so the manifest keeps naming the earlier owners (WALOwners) until a
	// commit seals past it. Set before the sealer starts; read under
	// sealMu.
	recoveredEnd int64

	mu struct {
		sync.Mutex
		manifest *meta.Manifest // last committed manifest
		etag     string         // its ETag
		fenced   error          // non-nil once a CAS failed: we no longer own the partition
		closed   bool
		hw       int64         // high watermark: records below it are stored (see HighWatermark)
		changed  chan struct{} // closed and replaced when hw moves
	}
	// writeMu orders offset assignment, WAL adds and the producer state,
	// so a partition's batches reach the WAL in offset order.
	writeMu   sync.Mutex
	producers producers // guarded by writeMu
	ids       *msgIDs   // message ids stored lately (nil with dedup off); guarded by writeMu
	// appended, when not nil, is closed at the next append (guarded by
	// writeMu); out-of-order batches wait on it.
	appended chan struct{}
	// appendMu: Append holds it shared while writing; Close takes it
	// exclusively to mark the partition closed, so no append lands after
	// the final seal.
	appendMu  sync.RWMutex
	closeOnce sync.Once
	closeErr  error
	// floor: every record below it may be dropped (its consumers settled
	// it, SetRetentionFloor); 0: none. Retention drops whole segments
	// below it.
	floor atomic.Int64
}

// SetRetentionFloor lets retention drop the sealed segments that lie
// wholly below offset floor (retention by consumption: every share group
// named in the topic's config settled them), on top of the time and size
// limits. It never moves back: a lower floor than an earlier one is
// ignored.
func (p *Partition) SetRetentionFloor(floor int64) {
	for {
		cur := p.floor.Load()
		if floor <= cur {
			return
		}
		if p.floor.CompareAndSwap(cur, floor) {
			p.wake() // retention may drop segments now
			return
		}
	}
}

func (p *Partition) self() string {
	if p.cfg.WAL != nil {
		return p.cfg.WAL.Incarnation()
	}
	return ""
}

func (p *Partition) usable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return ErrClosed
	}
	return p.mu.fenced
}

// Local is the partition's local log, for hot reads.
func (p *Partition) Local() *LocalLog { return p.local }

// NextOffset is the offset the next appended record will get (the high
// watermark for readers).
func (p *Partition) NextOffset() int64 { return p.local.NextOffset() }

// Manifest returns the last committed manifest. The result must not be
// modified.
func (p *Partition) Manifest(context.Context) (*meta.Manifest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.manifest, nil
}

// Epoch is the owner epoch this Partition claimed.
func (p *Partition) Epoch() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.manifest.Epoch
}

// Close stops the background rounds, seals the unsealed tail when
// SealOnClose is set (otherwise it stays, fsynced, in the local log for the
// next open), and closes the local log. It is idempotent; later calls
// return the first call's result.
func (p *Partition) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.appendMu.Lock()
		p.mu.Lock()
		p.mu.closed = true
		fenced := p.mu.fenced
		// Wake the waiters once: a follower (core) looks again and finds
		// the partition dropped from reads here; WaitDurable looks at the
		// high watermark again (the WAL may still store its records).
		close(p.mu.changed)
		p.mu.changed = make(chan struct{})
		p.mu.Unlock()
		p.appendMu.Unlock()
		p.stopMaintenance()
		var errs []error
		if p.cfg.SealOnClose && fenced == nil {
			if err := p.sealAll(ctx); err != nil {
				errs = append(errs, fmt.Errorf("ingest: seal on close: %w", err))
			}
		}
		if err := p.local.Close(); err != nil {
			errs = append(errs, err)
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Release hands the partition off to its next owner: it closes it, sealing
// every record (SealOnClose is implied), and then marks the manifest
// unowned (Owner "", no WAL owners), so the next owner claims it without
// fencing this incarnation, which goes on serving its other partitions.
// It returns an error, and leaves the manifest naming this incarnation,
// when anything is left unsealed: the next owner then fences and recovers
// from the WAL, as after a crash. Nothing acknowledged is lost either way.
func (p *Partition) Release(ctx context.Context) error {
	p.cfg.SealOnClose = true
	if err := p.Close(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	m, etag, fenced := p.mu.manifest, p.mu.etag, p.mu.fenced
	p.mu.Unlock()
	if fenced != nil {
		return nil // another owner has it already
	}
	if end := p.local.NextOffset(); m.NextOffset() < end {
		return fmt.Errorf("ingest: release %s/%d: sealed to %d of %d; the next owner recovers the rest from the WAL", p.cfg.Topic, p.cfg.Partition, m.NextOffset(), end)
	}
	if m.Owner == "" {
		return nil
	}
	next := m.Clone()
	next.Generation++
	next.Owner, next.WALOwners = "", nil
	if err := p.commit(ctx, etag, next); err != nil {
		return fmt.Errorf("ingest: release %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	return nil
}

// Abandon stops the partition without sealing: for a topic being deleted.
// Appends fail with ErrClosed afterwards. It is safe to call with or after
// Close.
func (p *Partition) Abandon() {
	p.cfg.SealOnClose = false
	p.Close(context.Background())
}
