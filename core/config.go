package core

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/tier"
)

// Config configures a Broker. It embeds the configs of the layers the
// broker drives (ingest, wal, fetch) instead of copying their fields; the
// broker sets the per-partition and per-process fields of each (listed on
// the field).
type Config struct {
	DataDir string     // required: local partition logs live under it
	Store   tier.Store // required: segments, manifests, topic configs, group state

	// Partition is the template every partition opens with (its Fsync,
	// SealBytes, SealInterval, LocalRetentionBytes, FS, ...). The broker
	// sets Topic, Partition, Dir, Store, WAL, WALReader and Logger, and
	// from the topic's config RetentionTime, RetentionBytes, the segment
	// codec and (when the topic sets segment_bytes) SealBytes. Default
	// ingest.DefaultPartitionConfig(); SealBytes at most 1 GiB.
	Partition ingest.PartitionConfig
	// WAL configures the object-store WAL writer (docs/durability.md):
	// FlushInterval (the linger, default 50ms), MaxInFlight (PUTs in
	// flight, default 4), FlushBytes (default 8 MiB, at most
	// 1 GiB), MaxBufferedBytes (default 256 MiB, at most 4 GiB), ... The
	// broker sets Store and Logger; Incarnation names this broker
	// process's WAL prefix, default a fresh wal.NewIncarnation. Default
	// wal.DefaultConfig().
	WAL wal.Config
	// Cache is the read path's block cache. Default
	// fetch.DefaultCacheConfig().
	Cache fetch.CacheConfig
	// Share tunes every share group's state on this broker: its read-ahead
	// window, delayed records held in memory, spill horizon (zero fields:
	// package queue's defaults). Tests shrink them.
	Share ShareTuning

	// MaxRecordBytes bounds one record's cost: key+value+headers plus
	// RecordOverheadBytes, and HeaderOverheadBytes per header. Default
	// 1 MiB.
	MaxRecordBytes int
	// MaxPartitions bounds a topic's partition count. Default 10,000.
	MaxPartitions int
	// SealConcurrency bounds the partitions sealing at once on this
	// broker (each holds its segment in memory while it builds and
	// uploads it; partitions opened together reach their seal interval
	// together). Default 4.
	SealConcurrency int
	// MaxGroups bounds the consumer groups with live members this broker
	// coordinates at once; a join past it is refused with
	// ErrResourceExhausted. Default DefaultMaxGroups (10,000).
	MaxGroups int
	// WALCollectInterval: how often WAL objects whose records are all
	// sealed are deleted. Default 30s.
	WALCollectInterval time.Duration
	// TopicRefreshInterval: how often the topics this broker has cached
	// are checked against the bucket (one LIST), so a topic deleted or
	// re-created through another broker stops taking writes here. Default 5s.
	TopicRefreshInterval time.Duration
	// ProduceTimeout: how long a produce request waits for its ack
	// condition (and for WAL buffer space) when it names no timeout.
	// Default 30s.
	ProduceTimeout time.Duration

	// Node is this broker as Metadata reports it when Cluster is nil (with
	// a Cluster, Cluster.Self()): its client address, set by the front end.
	Node Node
	// Cluster proposes the owner of every partition and the coordinator
	// of every group (package membership, over gossip). nil: a cluster of
	// one, which owns everything.
	Cluster Cluster
	// RebalanceInterval: how often, besides on membership changes, open
	// partitions proposed to another broker are handed off. Default 1s.
	RebalanceInterval time.Duration

	Logger *slog.Logger // required; default slog.Default()

	// Hooks are told of produce calls, fetch results, WAL flushes and
	// sealed segments (hooks.go): each implements one or more of
	// ProduceHook, FetchHook, WALFlushHook and SealHook. Called
	// synchronously on the data path: each must be cheap and never block.
	// Default none.
	Hooks []Hook
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		Partition:            ingest.DefaultPartitionConfig(),
		WAL:                  wal.DefaultConfig(),
		Cache:                fetch.DefaultCacheConfig(),
		MaxRecordBytes:       1 << 20,
		MaxPartitions:        10000,
		SealConcurrency:      4,
		MaxGroups:            DefaultMaxGroups,
		WALCollectInterval:   30 * time.Second,
		TopicRefreshInterval: 5 * time.Second,
		ProduceTimeout:       30 * time.Second,
		RebalanceInterval:    time.Second,
		Logger:               slog.Default(),
	}
}

// Bounds of the broker's own sizes (Config.Validate).
const (
	// maxObjectBytes bounds WAL.FlushBytes and Partition.SealBytes: far
	// below S3's 5 GiB single-PUT limit.
	maxObjectBytes = 1 << 30
	// maxWALBufferedBytes bounds WAL.MaxBufferedBytes. A WAL object holds
	// everything buffered when its flush starts, so this (plus one
	// request) is the largest WAL object there can be: still below 5 GiB.
	maxWALBufferedBytes = 4 << 30
)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("core: DataDir is required")
	case c.Store == nil:
		return errors.New("core: Store is required")
	case c.MaxRecordBytes <= 0 || c.MaxPartitions <= 0 || c.MaxGroups <= 0 || c.SealConcurrency <= 0:
		return errors.New("core: MaxRecordBytes, MaxPartitions, MaxGroups and SealConcurrency must be positive")
	case c.Logger == nil:
		return errors.New("core: Logger is required")
	case c.WALCollectInterval <= 0 || c.ProduceTimeout <= 0 || c.TopicRefreshInterval <= 0 || c.RebalanceInterval <= 0:
		return errors.New("core: WALCollectInterval, TopicRefreshInterval, ProduceTimeout and RebalanceInterval must be positive")
	}
	switch {
	case c.Partition.SealBytes > maxObjectBytes:
		return fmt.Errorf("core: Partition.SealBytes %d is over the limit of %d (1 GiB): a segment is stored with one PUT", c.Partition.SealBytes, maxObjectBytes)
	case c.WAL.FlushBytes > maxObjectBytes:
		return fmt.Errorf("core: WAL.FlushBytes %d is over the limit of %d (1 GiB): a WAL object is stored with one PUT", c.WAL.FlushBytes, maxObjectBytes)
	case c.WAL.MaxBufferedBytes > maxWALBufferedBytes:
		return fmt.Errorf("core: WAL.MaxBufferedBytes %d is over the limit of %d (4 GiB): a WAL object can hold everything buffered and is stored with one PUT (5 GiB at most on S3)", c.WAL.MaxBufferedBytes, maxWALBufferedBytes)
	}
	if _, err := sortHooks(c.Hooks); err != nil {
		return err
	}
	// The layers check their own fields, with the fields the broker sets
	// filled in.
	pc := c.Partition
	pc.Topic, pc.Dir, pc.Store, pc.Logger = "t", c.DataDir, c.Store, c.Logger
	pc.WAL, pc.WALReader = nil, nil
	if err := pc.Validate(); err != nil {
		return fmt.Errorf("core: Partition: %w", err)
	}
	wc := c.WAL
	wc.Store, wc.Logger = c.Store, c.Logger
	if wc.Incarnation == "" {
		wc.Incarnation = wal.NewIncarnation(time.Now())
	}
	if err := wc.Validate(); err != nil {
		return fmt.Errorf("core: WAL: %w", err)
	}
	if err := c.Cache.Validate(); err != nil {
		return fmt.Errorf("core: Cache: %w", err)
	}
	return nil
}

// ShareTuning is the broker-wide part of a share group's queue settings.
type ShareTuning struct {
	Window    int
	MemTimers int
	Horizon   time.Duration
}
