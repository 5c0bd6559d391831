package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stratalog/strata/ingest/wal"
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

	// SweepInterval: how soon unreferenced objects under the partition's
	// segment prefix are looked for once some may be there (after an
	// upload that was not committed, a failed delete, a takeover, or a
	// sweep that left young ones). Default 10 minutes.
	SweepInterval time.Duration
	// SweepGrace: unreferenced objects younger than this are left alone,
	// since a (fenced) writer may still be about to commit them. Default 1h.
	SweepGrace time.Duration
	// CheckInterval: the shortest time between two background rounds
	// (which roll aged files, seal, apply retention and sweep), and the
	// wait before a failed round is retried. A round runs when something
	// is due (a file reaching SealInterval, a segment reaching
	// RetentionTime, a sweep), when an append closes a file or is the
	// first into the active file, and at least
	// every IdleCheckInterval. Default 1s.
	CheckInterval time.Duration
	// IdleCheckInterval: the longest time between two background rounds
	// (when it is below CheckInterval, CheckInterval). Default 1 minute.
	IdleCheckInterval time.Duration
	// IdleSweepInterval: a partition sweeps at least this often (plus up
	// to a tenth at random), even when nothing it knows of can have left
	// garbage; see sweepAfter for when it sweeps sooner. Default 24h.
	IdleSweepInterval time.Duration
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
	// the WAL stored an object with a PUT that started within this long
	// (wal.Writer.StoredWithin); otherwise (an idle
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

	// DedupWindow, when positive, drops records whose message id (the
	// value of header DedupHeader) the partition stored within this long
	// before, by broker time: the duplicate is answered with the stored
	// copy's offset and not stored again (dedup.go). 0 turns it off.
	DedupWindow time.Duration
	// DedupHeader names the header that carries a record's message id;
	// required with DedupWindow.
	DedupHeader string
	// DedupMaxIDs bounds the message ids remembered (the newest kept);
	// 0 means DefaultDedupMaxIDs.
	DedupMaxIDs int

	// Seals, when set, bounds how many partitions seal at once (shared by
	// every partition of a broker): a seal holds its segment in memory
	// while it builds and uploads it, and partitions opened together
	// reach SealInterval together. nil: no bound.
	Seals *SealLimiter

	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
	// OnSeal, when set, is told of every segment the partition sealed,
	// once its manifest commit succeeded. It is called synchronously on
	// the goroutine sealing (a background round of the partition, or a
	// SealNow or Close caller): it must be cheap and must never block
	// (metrics counters).
	OnSeal func(Sealed)
}

// Sealed describes one sealed segment, for PartitionConfig.OnSeal.
type Sealed struct {
	Records  int64         // records in the segment
	Bytes    int64         // the segment object's size
	Duration time.Duration // building, uploading and committing it
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
		IdleCheckInterval:   time.Minute,
		IdleSweepInterval:   24 * time.Hour,
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
	case c.SealInterval <= 0 || c.CheckInterval <= 0 || c.SweepInterval <= 0 || c.IdleCheckInterval <= 0 || c.IdleSweepInterval <= 0:
		return errors.New("ingest: partition config: SealInterval, CheckInterval, IdleCheckInterval, SweepInterval and IdleSweepInterval must be positive")
	case c.LocalRetentionBytes < 0 || c.RetentionBytes < 0 || c.RetentionTime < 0 || c.SweepGrace < 0:
		return errors.New("ingest: partition config: retention settings must not be negative")
	case (c.WAL == nil) != (c.WALReader == nil):
		return errors.New("ingest: partition config: WAL and WALReader go together")
	case c.ProducerExpiry <= 0:
		return errors.New("ingest: partition config: ProducerExpiry must be positive")
	case c.DedupWindow < 0:
		return fmt.Errorf("ingest: partition config: DedupWindow %v is negative (0 turns dedup off)", c.DedupWindow)
	case c.DedupWindow > 0 && c.DedupHeader == "":
		return errors.New("ingest: partition config: DedupWindow needs DedupHeader")
	case c.DedupMaxIDs < 0:
		return fmt.Errorf("ingest: partition config: DedupMaxIDs %d is negative (0 means %d)", c.DedupMaxIDs, DefaultDedupMaxIDs)
	}
	return nil
}

// SealLimiter bounds the seals in progress at once across the partitions
// that share it. Safe for concurrent use.
type SealLimiter struct{ slots chan struct{} }

// NewSealLimiter returns a limiter of n concurrent seals (at least 1).
func NewSealLimiter(n int) *SealLimiter {
	return &SealLimiter{slots: make(chan struct{}, max(n, 1))}
}

// acquire waits for a slot until ctx ends; a nil limiter has no bound.
func (l *SealLimiter) acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// InUse is how many seals hold a slot now.
func (l *SealLimiter) InUse() int { return len(l.slots) }
