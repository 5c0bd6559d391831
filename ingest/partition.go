package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// PartitionConfig configures one partition's write path. Start from
// DefaultPartitionConfig and set the required fields (Topic, Dir, Store).
type PartitionConfig struct {
	Topic     string     // required; a valid topic name
	Partition int32      // >= 0
	Dir       string     // required; local directory for this partition's log
	FS        vfs.FS     // filesystem for the local log; default vfs.Default
	Store     tier.Store // required; where sealed segments and the manifest live

	Fsync         FsyncPolicy   // local-log fsync policy; default FsyncInterval
	FsyncInterval time.Duration // period of FsyncInterval; default 50ms

	// SealBytes: the active local file is closed and sealed into a segment
	// when it reaches this size. Default 64 MiB.
	SealBytes int64
	// SealInterval: ... or when its first record is this old, so quiet
	// partitions still reach the object store. Default 10 minutes.
	SealInterval time.Duration
	// LocalRetentionBytes: sealed data kept on local disk as a hot cache for
	// readers near the tail. Unsealed data is always kept. Default 1 GiB.
	LocalRetentionBytes int64

	// RetentionTime: sealed segments whose newest record is older than this
	// are deleted from the object store. 0 keeps them forever. Default 7 days.
	RetentionTime time.Duration
	// RetentionBytes: the oldest segments are deleted while the rest still
	// holds at least this many bytes (a floor, as in Kafka). 0 = no limit.
	RetentionBytes int64

	Segment segment.WriterOptions // codec and block size of sealed segments

	// SweepInterval: how often unreferenced objects under the partition's
	// segment prefix are looked for. Default 10 minutes.
	SweepInterval time.Duration
	// SweepGrace: unreferenced objects younger than this are left alone,
	// since a (fenced) writer may still be about to commit them. Default 1h.
	SweepGrace time.Duration
	// CheckInterval: period of the background loop that rolls aged files,
	// seals, and applies retention. Default 1s.
	CheckInterval time.Duration
	// SealOnClose: Close seals the unsealed tail, so a graceful shutdown
	// leaves every record in the object store. Default true.
	SealOnClose bool

	// WAL, when set, makes appends durable in the object store: each batch
	// is group-committed into the broker's WAL objects, readers see only
	// stored records (HighWatermark), and opening the partition recovers
	// the records earlier owners stored in their WAL objects but never
	// sealed. WALReader must be set with it.
	WAL       *wal.Writer
	WALReader *wal.Reader
	// ProducerExpiry: an idempotent producer idle this long is forgotten
	// by the manifest's producer snapshot. Default 7 days.
	ProducerExpiry time.Duration
	// LocalAckLease: a `local` ack is given at the local fsync only while
	// the WAL stored an object within this long; otherwise (an idle
	// broker, whose partitions may have been taken over without its
	// noticing) the ack waits for the next WAL object, which fails at once
	// if the broker was fenced. It bounds the `local` acks a fenced broker
	// can give to those accepted within about one flush interval of its
	// last stored object. Default 1s.
	LocalAckLease time.Duration
	// SequenceWait: how long a batch whose producer sequence skips ahead
	// waits for the earlier batches (that it overtook on the way in)
	// before it fails with ErrOutOfOrderSequence. Default 2s.
	SequenceWait time.Duration

	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// DefaultPartitionConfig returns a config with every default filled in.
func DefaultPartitionConfig() PartitionConfig {
	return PartitionConfig{
		FS:                  vfs.Default,
		Fsync:               FsyncInterval,
		FsyncInterval:       50 * time.Millisecond,
		SealBytes:           64 << 20,
		SealInterval:        10 * time.Minute,
		LocalRetentionBytes: 1 << 30,
		RetentionTime:       7 * 24 * time.Hour,
		SweepInterval:       10 * time.Minute,
		SweepGrace:          time.Hour,
		CheckInterval:       time.Second,
		SealOnClose:         true,
		ProducerExpiry:      7 * 24 * time.Hour,
		SequenceWait:        2 * time.Second,
		LocalAckLease:       time.Second,
		Clock:               time.Now,
		Logger:              slog.Default(),
	}
}

// Validate reports the first invalid field.
func (c *PartitionConfig) Validate() error {
	switch {
	case c.Topic == "":
		return errors.New("ingest: partition config: Topic is required")
	case c.Partition < 0:
		return fmt.Errorf("ingest: partition config: Partition %d is negative", c.Partition)
	case c.Dir == "":
		return errors.New("ingest: partition config: Dir is required")
	case c.Store == nil:
		return errors.New("ingest: partition config: Store is required")
	case c.FS == nil || c.Clock == nil || c.Logger == nil:
		return errors.New("ingest: partition config: FS, Clock and Logger must be set (start from DefaultPartitionConfig)")
	case c.SealBytes <= 0:
		return fmt.Errorf("ingest: partition config: SealBytes %d must be positive", c.SealBytes)
	case c.SealInterval <= 0 || c.CheckInterval <= 0 || c.SweepInterval <= 0:
		return errors.New("ingest: partition config: SealInterval, CheckInterval and SweepInterval must be positive")
	case c.LocalRetentionBytes < 0 || c.RetentionBytes < 0 || c.RetentionTime < 0 || c.SweepGrace < 0:
		return errors.New("ingest: partition config: retention settings must not be negative")
	case (c.WAL == nil) != (c.WALReader == nil):
		return errors.New("ingest: partition config: WAL and WALReader go together")
	case c.ProducerExpiry <= 0:
		return errors.New("ingest: partition config: ProducerExpiry must be positive")
	}
	return nil
}

// ErrClosed is returned by calls on a closed Partition.
var ErrClosed = errors.New("ingest: partition closed")

// Partition is one partition's write path on its owning broker.
type Partition struct {
	cfg       PartitionConfig
	manifests *meta.ManifestStore
	local     *LocalLog
	log       *slog.Logger

	kick chan struct{} // wakes the background loop; capacity 1
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the background loop exits

	// sealMu serializes sealing, retention and sweeping: the background loop
	// and Close/SealNow take it, so a manifest update never races another.
	sealMu    sync.Mutex
	lastSweep time.Time // guarded by sealMu

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
	// appended, when not nil, is closed at the next append (guarded by
	// writeMu); out-of-order batches wait on it.
	appended chan struct{}
	// appendMu: Append holds it shared while writing; Close takes it
	// exclusively to mark the partition closed, so no append lands after
	// the final seal.
	appendMu  sync.RWMutex
	closeOnce sync.Once
	closeErr  error
}

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
//     seal what was recovered, and start the background sealer.
func OpenPartition(ctx context.Context, cfg PartitionConfig) (*Partition, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Partition{
		cfg:       cfg,
		manifests: meta.NewManifestStore(cfg.Store, cfg.Topic, cfg.Partition),
		log:       cfg.Logger.With("topic", cfg.Topic, "partition", cfg.Partition),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	p.mu.changed = make(chan struct{})
	m, etag, created, err := p.loadOrCreate(ctx)
	if err != nil {
		return nil, err
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
	go p.loop()
	return p, nil
}

func (p *Partition) self() string {
	if p.cfg.WAL != nil {
		return p.cfg.WAL.Incarnation()
	}
	return ""
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
// producer state and sets the high watermark.
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
	if p.cfg.WAL != nil && p.local.NextOffset() > sealedEnd {
		// What was recovered is in no WAL object of ours: seal it now.
		if err := p.sealAll(ctx); err != nil {
			return err
		}
	}
	p.advance(p.local.NextOffset())
	return nil
}

// AppendResult says where a batch went.
type AppendResult struct {
	Base      int64 // offset of the first record
	End       int64 // offset after the last record
	Duplicate bool  // a retry of a batch already stored at Base: nothing was appended
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
// buffer space (backpressure) until ctx ends.
func (p *Partition) Write(ctx context.Context, b *segment.Batch) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	if len(b.Records) == 0 {
		return AppendResult{}, errors.New("ingest: empty batch: a batch needs at least one record")
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
	base, dup, err := p.producers.check(b)
	p.writeMu.Unlock()
	switch {
	case dup:
		return AppendResult{Base: base, End: base + int64(len(b.Records)), Duplicate: true}, true, nil
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
	if base, dup, err := p.producers.check(b); err != nil || dup {
		if errors.Is(err, ErrOutOfOrderSequence) {
			if p.appended == nil {
				p.appended = make(chan struct{})
			}
			return AppendResult{}, p.appended, err
		}
		release()
		return AppendResult{Base: base, End: base + int64(len(b.Records)), Duplicate: dup}, nil, err
	}
	base, err := p.local.Append(b)
	if err != nil {
		release()
		return AppendResult{}, nil, err
	}
	p.producers.record(b, p.cfg.Clock().UnixMilli())
	if p.appended != nil {
		close(p.appended)
		p.appended = nil
	}
	if p.cfg.WAL != nil {
		if err := p.cfg.WAL.Add(p.cfg.Topic, p.cfg.Partition, b, reserved, p.advance); err != nil {
			// The record has an offset but can never be acknowledged as
			// durable by this broker: stop taking writes.
			p.failWAL(err)
			return AppendResult{}, nil, err
		}
	}
	return AppendResult{Base: base, End: base + int64(len(b.Records))}, nil, nil
}

// maybeRoll closes the active local file once it reaches SealBytes.
func (p *Partition) maybeRoll() {
	if files := p.local.Files(); len(files) > 0 {
		if active := files[len(files)-1]; active.Active && active.Bytes >= p.cfg.SealBytes {
			if err := p.local.Roll(); err == nil {
				p.wake()
			} // else: the append is stored; the roll is retried by the loop
		}
	}
}

func (p *Partition) failWAL(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.fenced == nil {
		p.mu.fenced = fmt.Errorf("ingest: %s/%d: the WAL failed, no more writes: %w", p.cfg.Topic, p.cfg.Partition, err)
	}
}

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
// moves.
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

func (p *Partition) usable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return ErrClosed
	}
	return p.mu.fenced
}

func (p *Partition) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
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

func (p *Partition) loop() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		case <-p.kick:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-p.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		if err := p.Maintain(ctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Warn("partition maintenance failed; will retry", "err", err)
		}
		cancel()
	}
}

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
	if now.Sub(p.lastSweep) >= p.cfg.SweepInterval {
		if _, err := p.sweep(ctx, now); err != nil {
			return err
		}
		p.lastSweep = now
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
	p.mu.Lock()
	m, etag := p.mu.manifest, p.mu.etag
	p.mu.Unlock()
	from := m.NextOffset()

	var buf bytes.Buffer
	w := segment.NewWriter(&buf, p.cfg.Segment)
	prods := producersFrom(m.Producers)
	nowMs := p.cfg.Clock().UnixMilli() // broker time, never the records' own
	err := p.local.ReadFile(f.BaseOffset, func(b *segment.Batch) error {
		if b.LastOffset() < from {
			return nil
		}
		if b.BaseOffset < from {
			return fmt.Errorf("ingest: local batch %d-%d straddles the sealed end %d", b.BaseOffset, b.LastOffset(), from)
		}
		prods.record(b, nowMs)
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
	})
	if err := p.commit(ctx, etag, next); err != nil {
		return err
	}
	failpoint.Hit(failpoint.ManifestCommitted)
	p.advance(next.NextOffset())
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
	// Recovery sealed everything earlier owners' WAL objects held before
	// the partition took writes, so they are no longer needed.
	next.WALOwners = nil
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
	if p.cfg.RetentionTime == 0 && p.cfg.RetentionBytes == 0 {
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
		if !expired && !oversize {
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

// Close stops the background loop, seals the unsealed tail when
// SealOnClose is set (otherwise it stays, fsynced, in the local log for the
// next open), and closes the local log. It is idempotent; later calls
// return the first call's result.
func (p *Partition) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.appendMu.Lock()
		p.mu.Lock()
		p.mu.closed = true
		fenced := p.mu.fenced
		p.mu.Unlock()
		p.appendMu.Unlock()
		close(p.stop)
		<-p.done
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

// Abandon stops the partition without sealing: for a topic being deleted.
// Appends fail with ErrClosed afterwards. It is safe to call with or after
// Close.
func (p *Partition) Abandon() {
	p.cfg.SealOnClose = false
	p.Close(context.Background())
}

// Hot is the partition's local log as readers see it: only records below
// the high watermark.
func (p *Partition) Hot() *HotView { return &HotView{p: p} }

// HotView is the read side of a partition's local log, cut at the high
// watermark (it satisfies fetch.HotLog).
type HotView struct{ p *Partition }

// StartOffset is the oldest offset on local disk.
func (h *HotView) StartOffset() int64 { return h.p.local.StartOffset() }

// NextOffset is the high watermark.
func (h *HotView) NextOffset() int64 { return h.p.HighWatermark() }

// Read is LocalLog.Read without the records at or past the high watermark.
func (h *HotView) Read(from int64, maxBytes int) ([]segment.Batch, error) {
	hw := h.p.HighWatermark()
	if from >= hw {
		return nil, nil
	}
	bs, err := h.p.local.Read(from, maxBytes)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i].BaseOffset >= hw {
			return bs[:i], nil
		}
		if bs[i].LastOffset() >= hw {
			bs[i].Records = bs[i].Records[:hw-bs[i].BaseOffset]
			return bs[:i+1], nil
		}
	}
	return bs, nil
}
