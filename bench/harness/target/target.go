// Package target is what the harness measures: a server it starts and
// stops itself on loopback (strata, NATS JetStream, Redis Streams, RabbitMQ
// streams), with a producer and a tailing/replaying consumer behind one
// small interface so every workload runs unchanged against each, and
// (Queuer, workqueue.go) each one's queue: competing workers that
// receive and ack.
package target

import (
	"context"
	"errors"
	"time"

	"github.com/stratalog/strata/bench/harness/s3proxy"
)

// ErrUnavailable wraps the reason a target cannot run here (not
// installed, failed to start, a mode it does not support).
var ErrUnavailable = errors.New("unavailable")

// Target is one system under test.
type Target interface {
	// Name is the short label used in tables and plots.
	Name() string
	// Start starts the server (data in a fresh temporary directory).
	Start(ctx context.Context) error
	// Stop stops it (by PID) and removes its data.
	Stop() error
	// Info says what runs: version and the durability setting.
	Info() Info
	CreateTopic(ctx context.Context, topic string, partitions int) error
	NewProducer(ctx context.Context, topic string, partitions int, o ProducerOptions) (Producer, error)
	// NewConsumer reads one partition from its first record (fromStart) or
	// from what is appended after it starts (tailing).
	NewConsumer(ctx context.Context, topic string, partition int, fromStart bool) (Consumer, error)
	// Usage is the server's resources now.
	Usage(ctx context.Context) Usage
}

// TopicSizer is a target that knows how many bytes a topic occupies in
// its store (strata: sealed bytes in the object store).
type TopicSizer interface {
	TopicBytes(ctx context.Context, topic string) int64
}

// ColdRestarter is a target that can restart with an empty local disk and
// read its history back from the object store (strata's cold replay).
type ColdRestarter interface {
	RestartCold(ctx context.Context) error
}

// Info describes a running target.
type Info struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	Durability string `json:"durability"` // what an ack means, in words
}

// Usage is what the server uses; fields unknown for a target are 0.
type Usage struct {
	RSSBytes    int64          `json:"rss_bytes"`
	DiskBytes   int64          `json:"disk_bytes"`   // local data directory
	ObjectBytes int64          `json:"object_bytes"` // sealed bytes in the object store
	Objects     s3proxy.Counts `json:"objects"`      // object-store requests so far
	// Read-cache block lookups so far (strata: GetStats of the running
	// broker process, so they restart at 0 with it).
	CacheHits   int64 `json:"cache_hits"`
	CacheMisses int64 `json:"cache_misses"`
	// CPUSeconds is the server's user+system CPU time so far (its process
	// and descendants); StoreCPUSeconds the object store's (strata on
	// MinIO: the MinIO server's), 0 without one.
	CPUSeconds      float64 `json:"cpu_seconds"`
	StoreCPUSeconds float64 `json:"store_cpu_seconds"`
}

// ProducerOptions are the producer's batching knobs, applied as each
// client allows (documented per target).
type ProducerOptions struct {
	Batch    int           // most records per request
	InFlight int           // requests outstanding at once
	Linger   time.Duration // how long a partial batch may wait (strata; others send what is queued at once)
}

// Producer sends records; partitions are spread round robin.
type Producer interface {
	// Send queues value; cb runs exactly once, when the server has
	// acknowledged it (nil) or it failed. Send may block for flow control.
	Send(ctx context.Context, value []byte, cb func(error)) error
	// Flush waits until every sent record's cb has run.
	Flush(ctx context.Context) error
	Close() error
}

// Consumer reads one partition.
type Consumer interface {
	// Poll returns the next values, waiting up to about wait when there
	// are none (then it returns none and no error).
	Poll(ctx context.Context, wait time.Duration) ([][]byte, error)
	Close() error
}
