package export

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// Config says where an Exporter reads and writes and how it cuts files.
type Config struct {
	// Source is the bucket the topic lives in (the brokers' object
	// store). Export reads it; its one write there is a json topic's
	// inferred value schema, stored in the topic's config by CAS when no
	// broker or exporter stored one yet (core.TopicLayout). Required.
	Source tier.Store
	// Target receives the Parquet files and the export manifests.
	// Required.
	Target tier.Store
	// Prefix is put in front of every key written to Target ("": the
	// store's root). A broker exports to its own bucket under "exports".
	Prefix string

	// RowGroupBytes: a row group is cut once its rows reach this many
	// bytes (columnar's Builder.Bytes: keys, values, headers and the
	// fixed-width columns, uncompressed). Default 64 MiB.
	RowGroupBytes int64
	// RowGroupLimit: a row group never grows past this many bytes; the
	// row that would take it over starts the next one (a single larger
	// row makes a row group of its own). At least RowGroupBytes. Default
	// 2 x RowGroupBytes.
	RowGroupLimit int64
	// FileBytes: a file is cut once its records' share of sealed segment
	// bytes (compressed, as stored) reaches this; files are also cut at a
	// change of UTC date and at the end of what is sealed. The Parquet
	// file is about this size (docs/performance.md gives the ratio).
	// Default 256 MiB.
	FileBytes int64
	// ReadBytes bounds one read of the source (fetch's maxBytes).
	// Default 4 MiB.
	ReadBytes int

	// Cache is the read cache of the source; nil: the Exporter makes one
	// with CacheConfig and closes it in Close.
	Cache *fetch.Cache
	// CacheConfig is used when Cache is nil. Default: fetch's defaults
	// with 64 MiB of compressed and 32 MiB of decoded blocks.
	CacheConfig fetch.CacheConfig

	// Spool is the filesystem a file is built in before its PUT, under
	// SpoolDir (default vfs.Default and os.TempDir()). A spool file lives
	// only while its file is built and uploaded.
	Spool    vfs.FS
	SpoolDir string

	// TakeOverAfter: a pending claim that another exporter made less than
	// this long ago (by its clock) is left to it, and the partition is
	// skipped this time (ErrBusy). 0 finishes every pending claim at once
	// (the CLI: a killed run resumes immediately); brokers use minutes, so
	// that two brokers do not build the same file. Default 0.
	TakeOverAfter time.Duration
	// Name says who claims, in the manifests (informational). Default
	// "<hostname>-<pid>".
	Name string
	// Retry is the retry policy of manifest reads and writes (meta.CAS).
	// The zero value is tier's default backoff.
	Retry tier.Backoff
	// ManifestTTL is how long a read partition manifest of the source is
	// reused (fetch.BucketManifests). Default 5s.
	ManifestTTL time.Duration
	// Parallel is how many partitions are exported at once. Memory grows
	// with it. Default 1.
	Parallel int
	// Allocator holds the Arrow and Parquet buffers (nil: Go's heap).
	Allocator memory.Allocator
	// Logger gets a line per committed file at debug level and problems
	// at warn level. Default: discard.
	Logger *slog.Logger
	// Now is the clock of claims and commits. Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default set and no stores.
func DefaultConfig() Config {
	cc := fetch.DefaultCacheConfig()
	cc.MemoryBytes, cc.DecodedBytes = 64<<20, 32<<20
	host, _ := os.Hostname()
	if host == "" {
		host = "exporter"
	}
	return Config{
		RowGroupBytes: 64 << 20,
		RowGroupLimit: 128 << 20,
		FileBytes:     256 << 20,
		ReadBytes:     4 << 20,
		CacheConfig:   cc,
		Spool:         vfs.Default,
		SpoolDir:      os.TempDir(),
		Name:          fmt.Sprintf("%s-%d", host, os.Getpid()),
		ManifestTTL:   5 * time.Second,
		Parallel:      1,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:           time.Now,
	}
}

// maxFileBytes bounds FileBytes: a file is uploaded with one PUT (S3's
// single PUT takes up to 5 GiB; Parquet is about as big as the segments).
const maxFileBytes = 4 << 30

// Validate reports the first invalid field. A zero RowGroupLimit becomes
// 2 x RowGroupBytes.
func (c *Config) Validate() error {
	if c.RowGroupLimit == 0 {
		c.RowGroupLimit = 2 * c.RowGroupBytes
	}
	switch {
	case c.Source == nil || c.Target == nil:
		return errors.New("export: config: Source and Target are required")
	case c.RowGroupBytes <= 0:
		return fmt.Errorf("export: config: RowGroupBytes %d must be positive", c.RowGroupBytes)
	case c.RowGroupLimit < c.RowGroupBytes:
		return fmt.Errorf("export: config: RowGroupLimit %d is under RowGroupBytes %d", c.RowGroupLimit, c.RowGroupBytes)
	case c.FileBytes <= 0 || c.FileBytes > maxFileBytes:
		return fmt.Errorf("export: config: FileBytes %d must be 1 to %d (4 GiB)", c.FileBytes, int64(maxFileBytes))
	case c.ReadBytes <= 0:
		return fmt.Errorf("export: config: ReadBytes %d must be positive", c.ReadBytes)
	case c.Spool == nil || c.SpoolDir == "":
		return errors.New("export: config: Spool and SpoolDir are required")
	case c.TakeOverAfter < 0 || c.ManifestTTL < 0:
		return errors.New("export: config: TakeOverAfter and ManifestTTL must not be negative")
	case c.Parallel <= 0:
		return fmt.Errorf("export: config: Parallel %d must be positive", c.Parallel)
	case len(c.Name) > 256:
		return errors.New("export: config: Name is over 256 bytes")
	case c.Logger == nil || c.Now == nil:
		return errors.New("export: config: Logger and Now are required")
	}
	if err := tier.ValidateKey(joinPrefix(c.Prefix, "x")); c.Prefix != "" && err != nil {
		return fmt.Errorf("export: config: Prefix %q: %v", c.Prefix, err)
	}
	if c.Cache == nil {
		return c.CacheConfig.Validate()
	}
	return nil
}
