package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// ErrStaleIncarnation is returned by OpenPartition when the WAL
// incarnation it was given is among the partition's earlier owners: the
// partition must be reopened under a new incarnation, which recovers the
// old one's records (core rotates the incarnation).
var ErrStaleIncarnation = errors.New("ingest: partition opened under a stale WAL incarnation")

// OpenPartition takes the partition over and makes it ready for writes,
// in an order chosen so that a failed open claims nothing:
//
//  1. load the manifest (read only; create it when absent);
//  2. decide whether the local directory's data can be trusted
//     (adoptLocalDir) and open the local log;
//  3. claim: bump the owner epoch by CAS, naming this incarnation the owner
//     and keeping the previous owner among the WAL owners to recover from;
//  4. fence the earlier owners' WAL incarnations and recover the records
//     they stored but never sealed, rebuild the idempotent producer state,
//     seal what was recovered, rebuild the message ids of the dedup
//     window (dedup.go), and start the background sealer.
func OpenPartition(ctx context.Context, cfg PartitionConfig) (*Partition, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Partition{
		cfg:       cfg,
		manifests: meta.NewManifestStore(cfg.Store, cfg.Topic, cfg.Partition),
		log:       cfg.Logger.With("topic", cfg.Topic, "partition", cfg.Partition),
	}
	p.mu.changed = make(chan struct{})
	m, etag, created, err := p.loadOrCreate(ctx)
	if err != nil {
		return nil, err
	}
	// A partition taken over (or reopened after a restart) may hold
	// objects that an earlier owner uploaded and never committed: sweep
	// once soon. A new one holds none: only the backstop.
	if created {
		p.sweepDue = cfg.Clock().Add(p.idleSweepInterval())
	} else {
		p.sweepDue = cfg.Clock().Add(cfg.SweepInterval)
	}
	if self := p.self(); cfg.WAL != nil && m.Owner != self && slices.Contains(m.WALOwners, self) {
		// This incarnation owned the partition before the current owner
		// and may hold records of it that only its own WAL has (its disk
		// is not trusted now, see adoptLocalDir). Recovery cannot read its
		// own WAL (it would have to fence itself): only a new incarnation
		// may reopen the partition.
		return nil, fmt.Errorf("%w: %s/%d: this incarnation (%s) is among the earlier owners of the partition (current owner %s); reopen it under a new incarnation", ErrStaleIncarnation, cfg.Topic, cfg.Partition, self, m.Owner)
	}
	if cfg.WAL != nil {
		if err := p.adoptLocalDir(m); err != nil {
			return nil, err
		}
	}
	local, rep, err := OpenLocalLog(LocalLogOptions{
		FS:            cfg.FS,
		Dir:           cfg.Dir,
		Fsync:         cfg.Fsync,
		FsyncInterval: cfg.FsyncInterval,
		Clock:         cfg.Clock,
	}, m.NextOffset())
	if err != nil {
		return nil, fmt.Errorf("ingest: open %s/%d: %w", cfg.Topic, cfg.Partition, err)
	}
	if rep.Repaired() {
		// Sealed data that was dropped is read from the bucket; unsealed
		// data that was durable is refilled from the WAL by recover.
		p.log.Warn("local log damaged; repaired: "+rep.String(), "local_log", rep)
	} else if rep.TruncatedBytes > 0 {
		p.log.Warn("local log tail was torn; truncated", "file", rep.TruncatedFile, "bytes", rep.TruncatedBytes)
	}
	if !created {
		if m, etag, err = p.claim(ctx, m, etag); err != nil {
			local.Close()
			return nil, err
		}
	}
	if cfg.WAL != nil {
		p.dropOtherMarkers()
	}
	p.mu.manifest, p.mu.etag = m, etag
	p.local = local
	if err := p.recover(ctx, m); err != nil {
		local.Close()
		return nil, fmt.Errorf("ingest: recover %s/%d: %w", cfg.Topic, cfg.Partition, err)
	}
	p.log.Info("partition opened", "epoch", m.Epoch, "log_start", m.LogStartOffset,
		"sealed_next", m.NextOffset(), "next_offset", local.NextOffset(), "segments", len(m.Segments), "wal_owners", len(m.WALOwners))
	p.startMaintenance()
	return p, nil
}

// loadOrCreate reads the manifest, or creates the partition's first one
// (owned by this incarnation: created reports that, and no claim is needed).
func (p *Partition) loadOrCreate(ctx context.Context) (m *meta.Manifest, etag string, created bool, err error) {
	m, etag, err = p.manifests.Load(ctx)
	if errors.Is(err, tier.ErrNotFound) {
		m = &meta.Manifest{Topic: p.cfg.Topic, Partition: p.cfg.Partition, Epoch: 1, Generation: 1, Owner: p.self()}
		etag, err = p.manifests.Create(ctx, m)
		if err != nil {
			return nil, "", false, fmt.Errorf("ingest: create manifest of %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
		}
		return m, etag, true, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("ingest: open %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	return m, etag, false, nil
}

// claim bumps the manifest's epoch by CAS. With a WAL it names this
// incarnation the owner and keeps the earlier owners whose WAL objects
// may hold unsealed records.
func (p *Partition) claim(ctx context.Context, m *meta.Manifest, etag string) (*meta.Manifest, string, error) {
	self := p.self()
	next := m.Clone()
	next.Epoch++
	next.Generation++
	if p.cfg.WAL != nil {
		if m.Owner != "" && m.Owner != self && !slices.Contains(next.WALOwners, m.Owner) {
			next.WALOwners = append(next.WALOwners, m.Owner)
		}
		next.Owner = self
	}
	etag, err := p.manifests.Update(ctx, etag, next)
	if err != nil {
		return nil, "", fmt.Errorf("ingest: claim %s/%d: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
	return next, etag, nil
}

const ownerMarkerPrefix = "owner-"

// adoptLocalDir decides, before the claim, whether the local directory's
// data can be trusted, and removes it when not. It is trusted only when it
// is provably part of the durable log: the incarnation that last adopted
// the directory (its owner marker) is the manifest's current owner, so no
// other broker has claimed the partition since that incarnation wrote the
// data, and everything it wrote is either in its WAL objects (which the
// claim below fences and recovery reads) or only on this disk. A marker
// naming an earlier owner is not enough: a later owner may have
// acknowledged other records at the same offsets. Data without any marker
// is trusted only for a manifest that never had an owner (before the
// object-store WAL). Then the directory is marked as this incarnation's
// too; the old markers are removed only after the claim succeeded
// (dropOtherMarkers), so an open that fails before its claim leaves the
// data as trusted as it was.
func (p *Partition) adoptLocalDir(m *meta.Manifest) error {
	fs, dir := p.cfg.FS, p.cfg.Dir
	if err := fs.MkdirAll(dir); err != nil {
		return fmt.Errorf("ingest: local dir %s: %w", dir, err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("ingest: local dir %s: %w", dir, err)
	}
	self := p.self()
	var markers []string
	trusted := false
	hasData := false
	for _, n := range names {
		if inc, ok := strings.CutPrefix(n, ownerMarkerPrefix); ok {
			markers = append(markers, n)
			if inc == m.Owner {
				trusted = true
			}
		} else if strings.HasSuffix(n, logSuffix) {
			hasData = true
		}
	}
	if len(markers) == 0 && m.Owner == "" && len(m.WALOwners) == 0 {
		trusted = true // data from before the WAL existed (no owner was recorded)
	}
	if hasData && !trusted {
		p.log.Warn("local data was written by an incarnation that is not the partition's current owner; dropping it and recovering from the bucket",
			"dir", dir, "markers", markers, "owner", m.Owner)
		for _, n := range names {
			if strings.HasSuffix(n, logSuffix) {
				if err := fs.Remove(filepath.Join(dir, n)); err != nil {
					return fmt.Errorf("ingest: drop stale %s: %w", n, err)
				}
			}
		}
	}
	mine := ownerMarkerPrefix + self
	if !slices.Contains(markers, mine) {
		f, err := fs.Create(filepath.Join(dir, mine))
		if err != nil {
			return fmt.Errorf("ingest: mark %s: %w", dir, err)
		}
		f.Close()
	}
	if err := fs.SyncDir(dir); err != nil {
		return fmt.Errorf("ingest: mark %s: %w", dir, err)
	}
	return nil
}

// dropOtherMarkers removes every owner marker but this incarnation's, once
// its claim is committed.
func (p *Partition) dropOtherMarkers() {
	names, err := p.cfg.FS.List(p.cfg.Dir)
	if err != nil {
		return // stale markers only widen nothing: trust needs the current owner's
	}
	mine := ownerMarkerPrefix + p.self()
	for _, n := range names {
		if strings.HasPrefix(n, ownerMarkerPrefix) && n != mine {
			p.cfg.FS.Remove(filepath.Join(p.cfg.Dir, n))
		}
	}
}

// recover completes the local log from earlier owners' WAL objects, seals
// what was recovered (so the chain of owners never grows), rebuilds the
// producer state and the message ids, and sets the high watermark.
func (p *Partition) recover(ctx context.Context, m *meta.Manifest) error {
	if p.cfg.WAL != nil {
		for _, inc := range m.WALOwners {
			if inc == p.cfg.WAL.Incarnation() {
				continue
			}
			seq, err := p.cfg.WALReader.Fence(ctx, inc)
			if err != nil {
				return err
			}
			before := p.local.NextOffset()
			err = p.cfg.WALReader.ReadTail(ctx, inc, p.cfg.Topic, p.cfg.Partition, before, func(b *segment.Batch) error {
				if b.BaseOffset > p.local.NextOffset() {
					return fmt.Errorf("%w: WAL of %s continues at offset %d but the log ends at %d", ErrCorrupt, inc, b.BaseOffset, p.local.NextOffset())
				}
				if b.BaseOffset < p.local.NextOffset() {
					return nil // already recovered from the disk or an earlier owner
				}
				return p.local.AppendAt(b)
			})
			if err != nil {
				return err
			}
			p.log.Info("recovered from an earlier owner's WAL", "incarnation", inc, "fence_seq", seq, "from", before, "to", p.local.NextOffset())
		}
	}
	p.producers = producersFrom(m.Producers)
	sealedEnd := m.NextOffset()
	nowMs := p.cfg.Clock().UnixMilli() // the tail's append times are unknown: count its expiry from now
	for _, f := range p.local.Files() {
		if f.EndOffset <= sealedEnd {
			continue
		}
		err := p.local.ReadFile(f.BaseOffset, func(b *segment.Batch) error {
			if b.LastOffset() >= sealedEnd {
				p.producers.record(b, nowMs)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	p.recoveredEnd = p.local.NextOffset()
	if p.cfg.WAL != nil && p.local.NextOffset() > sealedEnd {
		// What was recovered is in no WAL object of ours: seal it now.
		if err := p.sealAll(ctx); err != nil {
			return err
		}
	}
	m, _ = p.Manifest(ctx) // with what the recovery sealed
	if err := p.rebuildMsgIDs(ctx, m); err != nil {
		return err
	}
	p.advance(p.local.NextOffset())
	return nil
}
