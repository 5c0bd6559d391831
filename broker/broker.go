package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/partitioner"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// Config configures a Broker.
type Config struct {
	DataDir string     // required: local partition logs live under it
	Store   tier.Store // required: segments, manifests and topic configs
	FS      vfs.FS     // the filesystem DataDir is on; default (and when nil) vfs.Default

	Fsync               ingest.FsyncPolicy // default FsyncInterval
	SealBytes           int64              // default 64 MiB
	SealInterval        time.Duration      // default 10 min
	LocalRetentionBytes int64              // per partition; default 1 GiB

	// MaxRecordBytes bounds one record's cost: key+value+headers plus
	// RecordOverheadBytes, and HeaderOverheadBytes per header. Default 1 MiB.
	MaxRecordBytes int
	// MaxPartitions bounds a topic's partition count. Default 10,000.
	MaxPartitions int
	// MaxGroups bounds the consumer groups with live members this broker
	// coordinates at once; a join past it is refused with
	// RESOURCE_EXHAUSTED. Default DefaultMaxGroups (10,000).
	MaxGroups int
	Cache     fetch.CacheConfig

	// The object-store WAL (docs/durability.md). Incarnation names this
	// broker process's WAL prefix; default a fresh wal.NewIncarnation.
	Incarnation         string
	WALFlushInterval    time.Duration // default 50ms
	WALFlushBytes       int64         // default 8 MiB
	WALMaxBufferedBytes int64         // default 256 MiB
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
	// Limits bounds what clients can make the broker hold in memory
	// (limits.go).
	Limits Limits

	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	pc := ingest.DefaultPartitionConfig()
	return Config{
		FS:                   vfs.Default,
		Fsync:                pc.Fsync,
		SealBytes:            pc.SealBytes,
		SealInterval:         pc.SealInterval,
		LocalRetentionBytes:  pc.LocalRetentionBytes,
		MaxRecordBytes:       1 << 20,
		MaxPartitions:        10000,
		MaxGroups:            DefaultMaxGroups,
		Cache:                fetch.DefaultCacheConfig(),
		WALFlushInterval:     50 * time.Millisecond,
		WALFlushBytes:        8 << 20,
		WALMaxBufferedBytes:  256 << 20,
		WALCollectInterval:   30 * time.Second,
		TopicRefreshInterval: 5 * time.Second,
		ProduceTimeout:       30 * time.Second,
		Limits:               DefaultLimits(),
		Logger:               slog.Default(),
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("broker: DataDir is required")
	case c.Store == nil:
		return errors.New("broker: Store is required")
	case c.SealBytes <= 0 || c.SealInterval <= 0 || c.LocalRetentionBytes < 0:
		return errors.New("broker: SealBytes and SealInterval must be positive, LocalRetentionBytes not negative")
	case c.MaxRecordBytes <= 0 || c.MaxPartitions <= 0 || c.MaxGroups <= 0:
		return errors.New("broker: MaxRecordBytes, MaxPartitions and MaxGroups must be positive")
	case c.Logger == nil:
		return errors.New("broker: Logger is required")
	case c.WALFlushInterval <= 0 || c.WALFlushBytes <= 0 || c.WALMaxBufferedBytes <= 0 || c.WALCollectInterval <= 0 || c.ProduceTimeout <= 0 || c.TopicRefreshInterval <= 0:
		return errors.New("broker: WAL settings, TopicRefreshInterval and ProduceTimeout must be positive")
	}
	if err := c.validateBounds(); err != nil {
		return err
	}
	return c.Cache.Validate()
}

// Broker serves the Strata gRPC API.
type Broker struct {
	stratapb.UnimplementedStrataServer
	cfg   Config
	cache *fetch.Cache
	ids   idAllocator
	lim   *limiter
	stop  chan struct{} // closed by Close: stops the background loops
	bg    sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*topic // opened topics
	closed bool
	opens  sync.WaitGroup // partitions being opened; Added under mu while !closed
	// wal and walr are the current incarnation's WAL writer and reader.
	// When another broker fences the incarnation (it took one of our
	// partitions over), the broker starts a new incarnation (rotate):
	// partitions opened under the old one are dropped and reopen under
	// the new one, so the partitions we still own keep taking writes.
	wal     *wal.Writer
	walr    *wal.Reader
	retired []*wal.Writer // fenced writers, closed by Close

	gmu    sync.Mutex        // guards groups and every group's fields
	groups map[string]*group // consumer groups this broker coordinates
}

type topic struct {
	cfg *stratapb.TopicConfig
	// id is the topic's identity, made when it was created ("" for a
	// topic created before identities existed); store is its storage
	// name, name/id, which its manifests, segment keys and WAL entries
	// carry, so a deleted and re-created topic never sees the old data.
	id, store string
	etag      string        // of the config object as loaded
	rr        atomic.Uint32 // round robin for keyless records
	mu        sync.Mutex
	parts     map[int32]*partition
	views     map[int32]*bucketView // read views of partitions not open here
	// opening holds a channel per partition being opened, closed when the
	// open ends; partitions open in parallel, each once.
	opening map[int32]chan struct{}
	deleted bool // DeleteTopic began: no new opens
}

type partition struct {
	log    *ingest.Partition
	reader *fetch.PartitionReader
	wal    *wal.Writer // the incarnation it was opened under
}

// isDeleted reports that the topic was deleted (here, or elsewhere and
// noticed by a topic refresh): its readers stop.
func (t *topic) isDeleted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleted
}

func (t *topic) checkPartition(p int32) error {
	if p < 0 || p >= t.cfg.Partitions {
		return status.Errorf(codes.InvalidArgument, "partition %d out of range: topic %q has partitions 0-%d", p, t.cfg.Name, t.cfg.Partitions-1)
	}
	return nil
}

// New returns a broker. It opens partitions lazily.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.Incarnation == "" {
		cfg.Incarnation = wal.NewIncarnation(time.Now())
	}
	cache, err := fetch.NewCache(cfg.Cache)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg: cfg, cache: cache, lim: newLimiter(cfg.Limits),
		topics: map[string]*topic{}, groups: map[string]*group{}, stop: make(chan struct{}),
	}
	if err := b.startIncarnation(cfg.Incarnation); err != nil {
		cache.Close()
		return nil, err
	}
	b.ids.store = cfg.Store
	b.bg.Add(2)
	go b.collectLoop()
	go b.topicRefreshLoop()
	return b, nil
}

func (b *Broker) newWriter(inc string) (*wal.Writer, error) {
	return wal.NewWriter(wal.Config{
		Store: b.cfg.Store, Incarnation: inc, Logger: b.cfg.Logger,
		FlushInterval: b.cfg.WALFlushInterval, FlushBytes: b.cfg.WALFlushBytes, MaxBufferedBytes: b.cfg.WALMaxBufferedBytes,
	})
}

// startIncarnation makes inc the broker's WAL incarnation and watches its
// writer: when another broker fences it, a new incarnation replaces it.
func (b *Broker) startIncarnation(inc string) error {
	w, err := b.newWriter(inc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		w.Close(context.Background())
		return nil
	}
	b.wal, b.walr = w, wal.NewReader(b.cfg.Store, inc, nil)
	b.mu.Unlock()
	b.cfg.Logger.Info("broker incarnation", "incarnation", inc)
	b.bg.Add(1)
	go b.watchIncarnation(w)
	return nil
}

func (b *Broker) walWriter() *wal.Writer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wal
}

func (b *Broker) walReader() *wal.Reader {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.walr
}

// watchIncarnation waits for w to fail. Fenced (another broker took one of
// our partitions over and fenced the whole incarnation), the broker drops
// every partition opened under w (their unacked writes fail; nothing they
// acked is lost: it is in w's objects below the fence, or, for `local`
// acks, on this disk, which a reopen trusts while we are still the owner)
// and starts a new incarnation, under which the partitions it still owns
// reopen on their next write.
func (b *Broker) watchIncarnation(w *wal.Writer) {
	defer b.bg.Done()
	select {
	case <-b.stop:
		return
	case <-w.Failed():
	}
	if !errors.Is(w.Err(), wal.ErrFenced) {
		return
	}
	b.retire(w, "WAL incarnation fenced by another broker")
}

// retire replaces incarnation w (if it is still the current one) by a new
// one and drops every partition opened under w; the partitions this
// broker still owns reopen under the new incarnation on their next
// write, and their claim fences w and recovers from its objects, so
// nothing w stored is skipped. A partition is never reopened under the
// incarnation it was dropped from: w may still hold its unstored records
// in the write buffer, and recovery never reads its own incarnation.
func (b *Broker) retire(w *wal.Writer, why string) {
	b.mu.Lock()
	if b.closed || b.wal != w {
		b.mu.Unlock()
		return
	}
	b.retired = append(b.retired, w)
	b.mu.Unlock()
	if testHookFenceNoticed != nil {
		testHookFenceNoticed()
	}
	inc := wal.NewIncarnation(time.Now())
	for {
		err := b.startIncarnation(inc)
		if err == nil {
			break
		}
		b.cfg.Logger.Error("cannot start a new WAL incarnation; retrying", "err", err)
		select {
		case <-b.stop:
			return
		case <-time.After(time.Second):
		}
	}
	// The topics are listed only now that new opens get the new writer:
	// a topic loaded before this point may have opened a partition under
	// w (its open is then among t.opening or already in t.parts).
	b.mu.Lock()
	topics := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		topics = append(topics, t)
	}
	b.mu.Unlock()
	dropped := 0
	for _, t := range topics {
		dropped += b.dropPartitions(t, func(p *partition) bool { return p.wal == w })
	}
	b.cfg.Logger.Warn(why+"; started a new incarnation, partitions reopen on their next write",
		"retired", w.Incarnation(), "incarnation", inc, "partitions_dropped", dropped)
	// Store what w still buffers (records of the dropped partitions, below
	// any fence the reopens put on w) and stop it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.Close(ctx)
}

// testHookFenceNoticed, when set by a test, runs in watchIncarnation
// after the fence was noticed and before the new incarnation starts.
var testHookFenceNoticed func()

// dropPartitions closes, without sealing, the open partitions of t that
// match, after the opens under way; later writes reopen them (claiming
// again), reads fall back to the bucket. A dropped partition counts as
// being opened until it is closed, so a reopen waits: two Partitions
// never share a local directory (the old one's sealer may still be
// committing, rolling or trimming files while it stops).
func (b *Broker) dropPartitions(t *topic, match func(*partition) bool) int {
	t.mu.Lock()
	var opening []chan struct{}
	for _, ch := range t.opening {
		opening = append(opening, ch)
	}
	t.mu.Unlock()
	for _, ch := range opening {
		<-ch
	}
	type dropped struct {
		p    int32
		part *partition
		done chan struct{}
	}
	var drop []dropped
	t.mu.Lock()
	for p, part := range t.parts {
		if match(part) {
			d := dropped{p, part, make(chan struct{})}
			drop = append(drop, d)
			delete(t.parts, p)
			t.opening[p] = d.done // an open of p is only in t.opening when p is not in t.parts
		}
	}
	t.mu.Unlock()
	for _, d := range drop {
		d.part.log.Abandon()
		t.mu.Lock()
		delete(t.opening, d.p)
		close(d.done)
		t.mu.Unlock()
	}
	return len(drop)
}

// Incarnation names this broker process's current WAL prefix (a new one
// after another broker fenced the previous one).
func (b *Broker) Incarnation() string { return b.walWriter().Incarnation() }

// WALStats returns the WAL writer's counters.
func (b *Broker) WALStats() wal.Stats { return b.walWriter().Stats() }

// GetStats implements the API.
func (b *Broker) GetStats(ctx context.Context, _ *stratapb.GetStatsRequest) (*stratapb.BrokerStats, error) {
	ww := b.walWriter()
	c, w := b.cache.Stats(), ww.Stats()
	return &stratapb.BrokerStats{
		Incarnation: ww.Incarnation(),
		CacheHits:   c.Hits, CacheDiskHits: c.DiskHits, CacheMisses: c.Misses,
		ObjectGets: c.Gets, ObjectGetBytes: c.BytesFetched, Prefetches: c.Prefetches,
		CacheMemoryBytes: c.MemoryBytes, CacheDiskBytes: c.DiskBytes,
		WalObjects: w.Objects, WalBytes: w.Bytes, WalPutAttempts: w.Attempts, WalPutFailures: w.Failures,
		WalBufferedBytes: w.Buffered,
	}, nil
}

// Close seals and closes every open partition. It is idempotent.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	topics := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		topics = append(topics, t)
	}
	b.mu.Unlock()
	close(b.stop)
	b.bg.Wait()
	b.opens.Wait() // a partition being opened joins t.parts first
	var errs []error
	for _, t := range topics {
		t.mu.Lock()
		for _, p := range t.parts {
			if err := p.log.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		t.mu.Unlock()
	}
	// Partitions sealed on close; what is still buffered belongs to
	// partitions that could not seal and must reach the bucket.
	b.mu.Lock()
	w, retired := b.wal, b.retired
	b.mu.Unlock()
	if err := w.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, r := range retired {
		r.Close(ctx) // fenced: nothing more can be stored
	}
	b.cache.Close()
	return errors.Join(errs...)
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

func validName(name string) error {
	if !topicName.MatchString(name) || name == "." || name == ".." {
		return status.Errorf(codes.InvalidArgument, "invalid topic name %q: use 1-200 characters from a-z A-Z 0-9 . _ -", name)
	}
	return nil
}

// statusOf maps internal errors to gRPC status errors.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var oor *fetch.OutOfRangeError
	switch {
	case errors.As(err, &oor):
		return status.Error(codes.OutOfRange, oor.Error())
	case errors.Is(err, fetch.ErrInvalidOffset):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, tier.ErrFenced):
		return status.Errorf(codes.Unavailable, "%v; retry: another broker owns the partition now", err)
	case tier.IsRetryable(err):
		return status.Errorf(codes.Unavailable, "%v; the object store is unavailable, retry later", err)
	case errors.Is(err, ingest.ErrClosed):
		return status.Error(codes.Unavailable, "the partition was closed while the request was in flight (the broker is shutting down, or the partition is being reopened after a takeover); the request's outcome is unknown: retry with the same producer sequence")
	case errors.Is(err, wal.ErrBackpressure):
		return status.Errorf(codes.Unavailable, "%v; this batch was not appended (in a request that spans partitions, the batches of the partitions before it may have been): retry after a backoff, with the same producer sequence so stored batches are recognized", err)
	case errors.Is(err, wal.ErrFenced), errors.Is(err, wal.ErrClosed):
		return status.Errorf(codes.Unavailable, "%v; retry on another broker", err)
	case errors.Is(err, ingest.ErrOutOfOrderSequence):
		// An earlier batch of this producer may still be in flight.
		return status.Errorf(codes.Aborted, "%v; retry after the earlier batches", err)
	case errors.Is(err, ingest.ErrStaleSequence), errors.Is(err, ingest.ErrProducerFenced):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (b *Broker) loadTopic(ctx context.Context, name string) (*topic, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, status.Error(codes.Unavailable, "broker is shutting down; retry on another broker")
	}
	if t, ok := b.topics[name]; ok {
		return t, nil
	}
	rc, info, err := b.cfg.Store.Get(ctx, meta.TopicConfigKey(name))
	if errors.Is(err, tier.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "topic %q does not exist; create it with `strata topic create %s --partitions N`", name, name)
	}
	if err != nil {
		return nil, statusOf(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	var st *storedTopic
	if err == nil {
		st, err = decodeTopicConfig(name, data)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "topic %q: config object %s is unreadable: %v; restore it or delete the topic's objects", name, meta.TopicConfigKey(name), err)
	}
	t := &topic{cfg: st.TopicConfig, id: st.ID, store: meta.StorageName(name, st.ID), etag: info.ETag, parts: map[int32]*partition{}, opening: map[int32]chan struct{}{}}
	b.topics[name] = t
	return t, nil
}

// partition returns partition p of t open for writes, opening it (which
// claims it: only the write path calls this) when it is not.
func (b *Broker) partition(ctx context.Context, t *topic, p int32) (*partition, error) {
	if err := t.checkPartition(p); err != nil {
		return nil, err
	}
	for {
		t.mu.Lock()
		if part, ok := t.parts[p]; ok {
			t.mu.Unlock()
			return part, nil
		}
		if t.deleted {
			t.mu.Unlock()
			return nil, status.Errorf(codes.NotFound, "topic %q was deleted", t.cfg.Name)
		}
		ch, busy := t.opening[p]
		if !busy {
			ch = make(chan struct{})
			t.opening[p] = ch
		}
		t.mu.Unlock()
		if busy {
			select {
			case <-ch: // opened, or failed: look again
				continue
			case <-ctx.Done():
				return nil, statusOf(ctx.Err())
			}
		}
		var part *partition
		err := b.beginOpen()
		counted := err == nil
		if counted {
			part, err = b.openPartition(ctx, t, p)
		}
		t.mu.Lock()
		delete(t.opening, p)
		close(ch)
		if err == nil {
			t.parts[p] = part
			delete(t.views, p)
		}
		t.mu.Unlock()
		if counted {
			b.opens.Done() // after joining t.parts: Close waits for this
		}
		return part, err
	}
}

// beginOpen counts an open in b.opens, unless the broker is closing.
func (b *Broker) beginOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return status.Error(codes.Unavailable, "broker is shutting down; retry on another broker")
	}
	b.opens.Add(1)
	return nil
}

// openPartition opens partition p of t (recovering what earlier owners left
// in their WAL objects). Partitions open in parallel; partition() makes
// sure each opens once and that Close sees it.
func (b *Broker) openPartition(ctx context.Context, t *topic, p int32) (*partition, error) {
	pc := ingest.DefaultPartitionConfig()
	pc.Topic, pc.Partition = t.store, p
	pc.Dir = b.partitionDir(t, p)
	pc.Store, pc.FS = b.cfg.Store, b.cfg.FS
	pc.Fsync = b.cfg.Fsync
	pc.SealBytes, pc.SealInterval, pc.LocalRetentionBytes = b.cfg.SealBytes, b.cfg.SealInterval, b.cfg.LocalRetentionBytes
	if t.cfg.SegmentBytes > 0 {
		pc.SealBytes = t.cfg.SegmentBytes
	}
	pc.RetentionTime = time.Duration(t.cfg.RetentionMs) * time.Millisecond
	pc.RetentionBytes = t.cfg.RetentionBytes
	codec, err := segment.ParseCodec(t.cfg.Compression)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	pc.Segment.Codec = codec
	pc.Logger = b.cfg.Logger
	b.mu.Lock()
	pc.WAL, pc.WALReader = b.wal, b.walr
	b.mu.Unlock()
	lp, err := ingest.OpenPartition(ctx, pc)
	if err != nil {
		return nil, statusOf(err)
	}
	part := &partition{log: lp, wal: pc.WAL}
	part.reader = fetch.NewPartitionReader(b.cache, b.cfg.Store, lp, lp.Hot())
	return part, nil
}

// partitionDir is the local directory of partition p of t.
func (b *Broker) partitionDir(t *topic, p int32) string {
	return meta.PartitionDir(b.cfg.DataDir, t.cfg.Name, t.id, p)
}

// storedTopic is a topic config as the bucket holds it: the API's config
// and the topic's identity.
type storedTopic struct {
	*stratapb.TopicConfig
	ID string `json:"topic_id,omitempty"`
}

// decodeTopicConfig parses a stored topic config and checks what CreateTopic
// checked when it wrote it.
func decodeTopicConfig(name string, data []byte) (*storedTopic, error) {
	st := &storedTopic{TopicConfig: &stratapb.TopicConfig{}}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, err
	}
	if st.TopicConfig == nil {
		st.TopicConfig = &stratapb.TopicConfig{}
	}
	if len(st.ID) > 64 || strings.ContainsAny(st.ID, "/\\") || st.ID == "." || st.ID == ".." {
		return nil, fmt.Errorf("topic id %q is not a valid identity", st.ID)
	}
	for _, c := range st.ID {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return nil, fmt.Errorf("topic id %q is not lowercase hex", st.ID)
		}
	}
	cfg := st.TopicConfig
	switch {
	case cfg.Name != name:
		return nil, fmt.Errorf("it names topic %q", cfg.Name)
	case cfg.Partitions <= 0 || cfg.Partitions > maxStoredPartitions:
		return nil, fmt.Errorf("partitions %d is not in 1-%d", cfg.Partitions, maxStoredPartitions)
	}
	if err := checkTopicSizes(cfg); err != nil {
		return nil, err
	}
	if _, err := segment.ParseCodec(cfg.Compression); err != nil {
		return nil, err
	}
	return st, nil
}

// maxStoredPartitions bounds the partition count a stored topic config may
// claim, whatever the broker's MaxPartitions (which may have changed).
const maxStoredPartitions = 1 << 20

// CreateTopic implements the API.
func (b *Broker) CreateTopic(ctx context.Context, req *stratapb.CreateTopicRequest) (*stratapb.CreateTopicResponse, error) {
	cfg := req.GetConfig()
	if cfg == nil {
		return nil, status.Error(codes.InvalidArgument, "config is required")
	}
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	switch {
	case cfg.Partitions <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "partitions must be at least 1 (got %d)", cfg.Partitions)
	case int(cfg.Partitions) > b.cfg.MaxPartitions:
		return nil, status.Errorf(codes.InvalidArgument, "partitions %d is over the broker's limit of %d", cfg.Partitions, b.cfg.MaxPartitions)
	}
	if err := checkTopicSizes(cfg); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v; nothing was created", err)
	}
	if cfg.Compression == "" {
		cfg.Compression = "zstd"
	}
	if _, err := segment.ParseCodec(cfg.Compression); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	data, _ := json.Marshal(&storedTopic{TopicConfig: cfg, ID: meta.NewTopicID()})
	_, err := b.cfg.Store.PutIfAbsent(ctx, meta.TopicConfigKey(cfg.Name), bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, tier.ErrPreconditionFailed) {
		return nil, status.Errorf(codes.AlreadyExists, "topic %q already exists", cfg.Name)
	}
	if err != nil {
		return nil, statusOf(err)
	}
	b.cfg.Logger.Info("topic created", "topic", cfg.Name, "partitions", cfg.Partitions)
	return &stratapb.CreateTopicResponse{Config: cfg}, nil
}

// ListTopics implements the API.
func (b *Broker) ListTopics(ctx context.Context, _ *stratapb.ListTopicsRequest) (*stratapb.ListTopicsResponse, error) {
	var names []string
	err := b.cfg.Store.List(ctx, meta.TopicsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.TopicNameOfConfigKey(o.Key); ok {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, statusOf(err)
	}
	sort.Strings(names)
	resp := &stratapb.ListTopicsResponse{}
	for _, n := range names {
		t, err := b.loadTopic(ctx, n)
		if err != nil {
			return nil, err
		}
		resp.Topics = append(resp.Topics, t.cfg)
	}
	return resp, nil
}

// DescribeTopic implements the API.
func (b *Broker) DescribeTopic(ctx context.Context, req *stratapb.DescribeTopicRequest) (*stratapb.DescribeTopicResponse, error) {
	t, err := b.loadTopic(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	resp := &stratapb.DescribeTopicResponse{Config: t.cfg}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		v, err := b.view(ctx, t, p)
		if err != nil {
			return nil, err
		}
		logStart, hw, err := v.bounds(ctx) // fresh from the bucket for a view
		if err != nil {
			return nil, statusOf(err)
		}
		m, err := v.manifest(ctx)
		if err != nil {
			return nil, statusOf(err)
		}
		resp.Partitions = append(resp.Partitions, &stratapb.PartitionInfo{
			Partition: p, LogStartOffset: logStart, HighWatermark: hw,
			SealedBytes: m.SealedBytes(), SealedSegments: int64(len(m.Segments)), LocalBytes: v.local(),
		})
	}
	return resp, nil
}

// ListOffsets implements the API.
func (b *Broker) ListOffsets(ctx context.Context, req *stratapb.ListOffsetsRequest) (*stratapb.ListOffsetsResponse, error) {
	t, err := b.loadTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	v, err := b.view(ctx, t, req.GetPartition())
	if err != nil {
		return nil, err
	}
	off, err := b.resolveStart(ctx, v, req.GetEarliest(), req.GetLatest(), req.Spec == nil, req.GetTimestampMs(), 0)
	if err != nil {
		return nil, err
	}
	return &stratapb.ListOffsetsResponse{Offset: off}, nil
}

func (b *Broker) resolveStart(ctx context.Context, v *readView, earliest, latest, none bool, ts, offset int64) (int64, error) {
	logStart, hw, err := v.bounds(ctx)
	if err != nil {
		return 0, statusOf(err)
	}
	switch {
	case earliest || none:
		return logStart, nil
	case latest:
		return hw, nil
	case ts != 0:
		off, err := v.reader.OffsetForTime(ctx, ts)
		return off, statusOf(err)
	}
	return offset, nil
}

// Produce implements the API: validate every record, append per
// partition, then wait for the ack condition (docs/durability.md).
func (b *Broker) Produce(ctx context.Context, req *stratapb.ProduceRequest) (*stratapb.ProduceResponse, error) {
	admitted, err := b.lim.admitProduce(req) // the request's share of the produce budget
	if err != nil {
		return nil, err
	}
	defer admitted.release()
	t, err := b.loadTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if len(req.Records) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no records: a produce request needs at least one")
	}
	if req.Partition < -1 || req.Partition >= t.cfg.Partitions {
		return nil, status.Errorf(codes.InvalidArgument, "partition %d out of range: topic %q has partitions 0-%d (or -1 to partition by key)", req.Partition, t.cfg.Name, t.cfg.Partitions-1)
	}
	acks := req.Acks
	if acks == stratapb.Acks_ACKS_DEFAULT {
		acks = stratapb.Acks_ACKS_DURABLE
	}
	if _, ok := stratapb.Acks_name[int32(acks)]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown acks %d: use none, local or durable", acks)
	}
	idempotent := req.ProducerId != 0
	if idempotent {
		switch {
		case req.ProducerId < 0:
			return nil, status.Errorf(codes.InvalidArgument, "producer id %d is negative: get one from InitProducer", req.ProducerId)
		case req.Partition < 0:
			return nil, status.Error(codes.InvalidArgument, "an idempotent produce request names its partition: sequences are per partition (the client partitions by key itself)")
		case req.BaseSequence < 0 || req.ProducerEpoch < 0 || req.ProducerEpoch > math.MaxInt16:
			return nil, status.Errorf(codes.InvalidArgument, "producer epoch %d or base sequence %d out of range", req.ProducerEpoch, req.BaseSequence)
		}
	}
	timeout := b.cfg.ProduceTimeout
	if req.TimeoutMs > 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Validate everything before appending anything.
	now := time.Now().UnixMilli()
	parts := make([]int32, len(req.Records))
	batches := map[int32]*segment.Batch{}
	index := map[int32][]int{}
	var order []int32
	for i, r := range req.Records {
		if err := checkRecordCost(i, r, b.cfg.MaxRecordBytes); err != nil {
			return nil, err
		}
		p := req.Partition
		if p < 0 {
			if r.Key != nil {
				p = partitioner.ForKey(r.Key, t.cfg.Partitions)
			} else {
				p = int32(t.rr.Add(1) % uint32(t.cfg.Partitions))
			}
		}
		parts[i] = p
		bt, ok := batches[p]
		if !ok {
			bt = &segment.Batch{ProducerID: segment.NoProducer}
			if idempotent {
				bt.ProducerID, bt.ProducerEpoch, bt.BaseSequence = req.ProducerId, int16(req.ProducerEpoch), req.BaseSequence
			}
			batches[p] = bt
			order = append(order, p)
		}
		ts := r.TimestampMs
		if ts == 0 {
			ts = now
		}
		rec := segment.Record{Timestamp: ts, Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, segment.Header{Key: h.Key, Value: h.Value})
		}
		bt.Records = append(bt.Records, rec)
		index[p] = append(index[p], i)
	}
	resp := &stratapb.ProduceResponse{Partitions: parts, Offsets: make([]int64, len(req.Records))}
	type written struct {
		part *partition
		end  int64
	}
	var done []written
	for _, p := range order {
		part, err := b.partition(ctx, t, p)
		if err != nil {
			return nil, err
		}
		res, err := part.log.Write(ctx, batches[p])
		if err != nil {
			if errors.Is(err, tier.ErrFenced) {
				// Another broker claimed the partition (its manifest CAS
				// beat ours) but may not have fenced our WAL (it may have
				// crashed first). Retire our incarnation: the next write
				// here claims the partition again under a new one and
				// recovers what we and the other stored.
				go b.retire(part.wal, "a partition's manifest was claimed by another broker")
			}
			return nil, statusOf(err)
		}
		resp.Duplicate = resp.Duplicate || res.Duplicate
		for j, i := range index[p] {
			resp.Offsets[i] = res.Base + int64(j)
		}
		done = append(done, written{part, res.End})
	}
	for _, w := range done {
		switch acks {
		case stratapb.Acks_ACKS_LOCAL:
			err = w.part.log.WaitLocal(ctx, w.end)
		case stratapb.Acks_ACKS_DURABLE:
			err = w.part.log.WaitDurable(ctx, w.end)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, status.Errorf(codes.DeadlineExceeded, "records were appended but not yet stored (%s acks) within %v; the outcome is unknown: retry with the same producer sequence and the broker answers with the stored offsets", strings.ToLower(strings.TrimPrefix(acks.String(), "ACKS_")), timeout)
		}
		if err != nil {
			return nil, statusOf(err)
		}
	}
	return resp, nil
}

// InitProducer implements the API.
func (b *Broker) InitProducer(ctx context.Context, _ *stratapb.InitProducerRequest) (*stratapb.InitProducerResponse, error) {
	id, err := b.ids.allocate(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return &stratapb.InitProducerResponse{ProducerId: id}, nil
}

// Fetch implements the API.
func (b *Broker) Fetch(req *stratapb.FetchRequest, stream stratapb.Strata_FetchServer) error {
	ctx := stream.Context()
	t, err := b.loadTopic(ctx, req.GetTopic())
	if err != nil {
		return err
	}
	v, err := b.view(ctx, t, req.GetPartition())
	if err != nil {
		return err
	}
	if req.Group != "" {
		if err := b.checkAssigned(ctx, req.Group, req.MemberId, req.Generation, req.Partition); err != nil {
			return err
		}
	}
	next, err := b.resolveStart(ctx, v, req.GetEarliest(), req.GetLatest(), req.Start == nil, req.GetTimestampMs(), req.GetOffset())
	if err != nil {
		return err
	}
	maxBytes := b.cfg.Limits.clampFetchBytes(req.MaxBytes)
	maxWait := time.Duration(req.MaxWaitMs) * time.Millisecond
	if maxWait <= 0 {
		maxWait = 500 * time.Millisecond
	}
	budget := b.lim.fetch.stream(ctx, b.cfg.Limits.FetchStreamBytes)
	defer budget.finish(ctx)
	for {
		if t.isDeleted() {
			return status.Errorf(codes.NotFound, "topic %q was deleted", t.cfg.Name)
		}
		if v.stale() {
			// The partition was opened here (a write claimed it) or
			// dropped since: switch to what reads use now.
			if v, err = b.view(ctx, t, req.GetPartition()); err != nil {
				return err
			}
		}
		wait := v.changed() // before reading: no append is missed
		// The response's share of the fetch budget: waits while this
		// stream or the broker has too much outstanding.
		lease, err := budget.acquire(ctx, int64(maxBytes))
		if err != nil {
			return statusOf(err)
		}
		res, err := v.reader.Read(ctx, next, maxBytes)
		if err != nil {
			lease.release()
			return statusOf(err)
		}
		if err := b.checkFetch(req); err != nil {
			lease.release()
			return err
		}
		if len(res.Records) > 0 {
			fitRecords(res, lease.size())
			out := &stratapb.FetchResponse{NextOffset: res.NextOffset, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset}
			for i := range res.Records {
				out.Records = append(out.Records, toProto(&res.Records[i], req.Partition))
			}
			next = res.NextOffset // res is garbage from here: a blocked send holds only the encoded bytes
			if err := budget.sendLeased(stream, out, lease); err != nil {
				return err
			}
			if !req.Follow {
				return nil
			}
			continue
		}
		lease.release()
		timer := time.NewTimer(maxWait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return statusOf(ctx.Err())
		case <-wait:
			timer.Stop()
		case <-timer.C:
			if !req.Follow {
				return stream.Send(&stratapb.FetchResponse{NextOffset: next, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset})
			}
		}
	}
}

func toProto(r *segment.Record, p int32) *stratapb.Record {
	out := &stratapb.Record{Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp, Offset: r.Offset, Partition: p}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, &stratapb.Header{Key: h.Key, Value: h.Value})
	}
	return out
}

// DeleteTopic implements the API: the config object goes first, so the
// topic is gone for every broker at once; then the open partitions are
// closed without sealing, and every object under the topic's prefix and
// the local directories are deleted. A crash midway leaves only
// unreferenced objects under a prefix no topic names; deleting the topic
// again (after re-creating it) or a sweep removes them.
func (b *Broker) DeleteTopic(ctx context.Context, req *stratapb.DeleteTopicRequest) (*stratapb.DeleteTopicResponse, error) {
	t, err := b.loadTopic(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := b.cfg.Store.Delete(ctx, meta.TopicConfigKey(t.cfg.Name)); err != nil {
		return nil, statusOf(err)
	}
	b.mu.Lock()
	delete(b.topics, t.cfg.Name)
	b.mu.Unlock()
	// No new opens; the ones under way finish (and join t.parts) first.
	t.mu.Lock()
	t.deleted = true
	var opening []chan struct{}
	for _, ch := range t.opening {
		opening = append(opening, ch)
	}
	t.mu.Unlock()
	for _, ch := range opening {
		<-ch
	}
	t.mu.Lock()
	for p, part := range t.parts {
		part.log.Abandon()
		removeLocal(b.cfg.FS, b.partitionDir(t, p))
	}
	t.parts = map[int32]*partition{}
	t.mu.Unlock()
	var keys []string
	if err := b.cfg.Store.List(ctx, meta.TopicPrefix(t.cfg.Name), func(o tier.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return nil, statusOf(err)
	}
	for _, k := range keys {
		if err := b.cfg.Store.Delete(ctx, k); err != nil {
			return nil, statusOf(err)
		}
	}
	b.cfg.Logger.Info("topic deleted", "topic", t.cfg.Name, "objects", len(keys))
	return &stratapb.DeleteTopicResponse{ObjectsDeleted: int64(len(keys))}, nil
}

// removeLocal deletes a partition's local directory (on a vfs.FS other
// than the OS: the files in it, which is all such a filesystem has).
func removeLocal(fs vfs.FS, dir string) {
	if fs == vfs.Default {
		os.RemoveAll(dir)
		return
	}
	names, _ := fs.List(dir)
	for _, n := range names {
		fs.Remove(filepath.Join(dir, n))
	}
	fs.SyncDir(dir)
}
