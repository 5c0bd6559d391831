package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// Broker is the protocol-free broker. See the package comment.
type Broker struct {
	cfg   Config
	hooks hooks // Config.Hooks by event; immutable
	cache *fetch.Cache
	seals *ingest.SealLimiter // shared by every partition: Config.SealConcurrency
	ids   *idAllocator
	stop  chan struct{} // closed by Close: stops the background loops
	bg    sync.WaitGroup
	// viewPoll is how often a follower of a partition not open here looks
	// at the bucket again (viewRefresh; tests lengthen it).
	viewPoll time.Duration

	mu     sync.Mutex
	topics map[string]*topic // opened topics; a topic's etag is guarded by mu too
	// removals counts topics taken out of topics (deleted or dropped by a
	// refresh): a load that read the bucket before a removal reads again.
	removals uint64
	closed   bool
	opens    sync.WaitGroup // partitions being opened; Added under mu while !closed
	// wal and walr are the current incarnation's WAL writer and reader.
	// When another broker fences the incarnation (it took one of our
	// partitions over), the broker starts a new incarnation (rotate):
	// partitions opened under the old one are dropped and reopen under
	// the new one, so the partitions we still own keep taking writes.
	wal     *wal.Writer
	walr    *wal.Reader
	retired []*wal.Writer // fenced writers, closed by Close

	groups groups
	shares shares // share groups' configs and live states (share.go)
	// coordID names this broker process as a group coordinator in the
	// group states it stores (node id and a random part: a restart is a
	// new coordinator).
	coordID string
	// releasing is a token that serializes hand-off passes (the
	// rebalance loop's and Release's); a channel, not a mutex, since a
	// pass holds it across I/O.
	releasing chan struct{}
}

type topic struct {
	cfg *TopicConfig // immutable
	// id is the topic's identity, made when it was created ("" for a
	// topic created before identities existed); store is its storage
	// name, name/id, which its manifests, segment keys and WAL entries
	// carry, so a deleted and re-created topic never sees the old data.
	id, store string
	etag      string        // of the config object as loaded; guarded by Broker.mu
	rr        atomic.Uint32 // round robin for keyless records
	// layout is the row layout of the topic's values once known
	// (ValueLayout; learnSchema for a schema stored after the load): set
	// once. inferring is a token held while a value schema is inferred.
	layout    atomic.Pointer[columnar.Layout]
	inferring chan struct{}

	mu    sync.Mutex
	parts map[int32]*partition
	views map[int32]*bucketView // read views of partitions not open here
	// opening holds a channel per partition being opened, closed when the
	// open ends; partitions open in parallel, each once.
	opening map[int32]chan struct{}
	deleted bool // DeleteTopic began (or a refresh found it gone): no new opens
	// closing is closed when Close has closed the partitions it took from
	// parts; nil until Close takes them.
	closing chan struct{}
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
		return errorf(ErrInvalidArgument, "partition %d out of range: topic %q has partitions 0-%d", p, t.cfg.Name, t.cfg.Partitions-1)
	}
	return nil
}

// New returns a broker. It opens partitions lazily.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WAL.Incarnation == "" {
		cfg.WAL.Incarnation = wal.NewIncarnation(time.Now())
	}
	cfg.WAL.Store, cfg.WAL.Logger = cfg.Store, cfg.Logger
	cache, err := fetch.NewCache(cfg.Cache)
	if err != nil {
		return nil, err
	}
	hs, err := sortHooks(cfg.Hooks)
	if err != nil {
		cache.Close()
		return nil, err
	}
	b := &Broker{cfg: cfg, hooks: hs, cache: cache, seals: ingest.NewSealLimiter(cfg.SealConcurrency), topics: map[string]*topic{}, stop: make(chan struct{}), viewPoll: viewRefresh}
	b.cfg.WAL.OnFlush = b.walFlushHook()
	b.groups.init(b)
	b.shares.init()
	b.coordID = b.self().ID + "-" + meta.NewWriteID()
	b.releasing = make(chan struct{}, 1)
	if err := b.startIncarnation(cfg.WAL.Incarnation); err != nil {
		cache.Close()
		return nil, err
	}
	b.ids = newIDAllocator(cfg.Store)
	b.bg.Add(3)
	go b.shareLoop()
	go b.every(b.cfg.WALCollectInterval, b.collectWALRound)
	go b.every(b.cfg.TopicRefreshInterval, b.refreshTopicsRound)
	if cfg.Cluster != nil {
		b.bg.Add(1)
		go b.rebalanceLoop()
	}
	return b, nil
}

func (b *Broker) newWriter(inc string) (*wal.Writer, error) {
	wc := b.cfg.WAL
	wc.Incarnation = inc
	return wal.NewWriter(wc)
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
	b.walr.WatchOwnFences(w.NoticeFence)
	b.mu.Unlock()
	b.cfg.Logger.Info("broker incarnation", "incarnation", inc)
	if pub, ok := b.cfg.Cluster.(IncarnationPublisher); ok {
		if err := pub.SetIncarnation(inc); err != nil {
			b.cfg.Logger.Warn("could not publish the WAL incarnation to the cluster; brokers taking partitions from this one will fence it instead of waiting for its hand-off", "err", err)
		}
	}
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
	if b.closed || b.wal != w || slices.Contains(b.retired, w) {
		b.mu.Unlock()
		return // retired already, or being retired by another caller
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
	dropped := 0
	for _, t := range b.topicList() {
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

// topicList copies the cached topics.
func (b *Broker) topicList() []*topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	topics := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		topics = append(topics, t)
	}
	return topics
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
	t.waitOpens()
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

// waitOpens waits for the opens of t under way when it is called.
func (t *topic) waitOpens() {
	t.mu.Lock()
	var opening []chan struct{}
	for _, ch := range t.opening {
		opening = append(opening, ch)
	}
	t.mu.Unlock()
	for _, ch := range opening {
		<-ch
	}
}

// Incarnation names this broker process's current WAL prefix (a new one
// after another broker fenced the previous one).
func (b *Broker) Incarnation() string { return b.walWriter().Incarnation() }

// WALStats returns the WAL writer's counters.
func (b *Broker) WALStats() wal.Stats { return b.walWriter().Stats() }

// Stats are a broker's counters.
type Stats struct {
	Incarnation string
	Cache       fetch.CacheStats
	WAL         wal.Stats
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	ww := b.walWriter()
	return Stats{Incarnation: ww.Incarnation(), Cache: b.cache.Stats(), WAL: ww.Stats()}
}

// Close seals and closes every open partition. It is idempotent. A topic
// being deleted is not sealed: DeleteTopic abandons what it finds, and
// waits for the partitions Close took, so nothing is stored under the
// deleted topic's prefix after DeleteTopic listed it.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	topics := b.topicList()
	close(b.stop)
	b.bg.Wait()
	b.opens.Wait() // a partition being opened joins t.parts first
	var errs []error
	for _, t := range topics {
		t.mu.Lock()
		if t.deleted || t.closing != nil {
			t.mu.Unlock()
			continue
		}
		parts := t.parts
		t.parts = map[int32]*partition{}
		done := make(chan struct{})
		t.closing = done
		t.mu.Unlock()
		for _, p := range parts {
			if err := p.log.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		close(done)
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

// testHookTopicRead, when set by a test, runs in loadTopic after the
// topic's config was read from the bucket.
var testHookTopicRead func(name string)

// loadTopic returns the topic, from memory or else from the bucket. The
// bucket is read without b.mu held; a topic removed meanwhile (deleted
// here, or dropped by a refresh) makes the load read again, so a load
// never caches a topic older than a removal.
func (b *Broker) loadTopic(ctx context.Context, name string) (*topic, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errShuttingDown()
		}
		if t, ok := b.topics[name]; ok {
			b.mu.Unlock()
			return t, nil
		}
		removals := b.removals
		b.mu.Unlock()
		t, err := b.readTopic(ctx, name)
		if err != nil {
			return nil, err
		}
		if testHookTopicRead != nil {
			testHookTopicRead(name)
		}
		b.mu.Lock()
		switch cur, ok := b.topics[name]; {
		case b.closed:
			b.mu.Unlock()
			return nil, errShuttingDown()
		case ok:
			b.mu.Unlock()
			return cur, nil // loaded meanwhile: one topic object per name
		case b.removals != removals:
			b.mu.Unlock()
			continue // what we read may be what was just removed
		}
		b.topics[name] = t
		b.mu.Unlock()
		return t, nil
	}
}

// readTopic reads topic name's config from the bucket.
func (b *Broker) readTopic(ctx context.Context, name string) (*topic, error) {
	st, etag, err := readStoredTopic(ctx, b.cfg.Store, name)
	if err != nil {
		return nil, err
	}
	return &topic{cfg: st.TopicConfig, id: st.ID, store: meta.StorageName(name, st.ID), etag: etag, parts: map[int32]*partition{}, opening: map[int32]chan struct{}{}, inferring: make(chan struct{}, 1)}, nil
}

// removeTopic takes t out of the cache (if it is still there).
func (b *Broker) removeTopic(t *topic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.topics[t.cfg.Name] == t {
		delete(b.topics, t.cfg.Name)
	}
	b.removals++
}

// partition returns partition p of t open for writes, opening it (which
// claims it: only the write path calls this) when it is not.
func (b *Broker) partition(ctx context.Context, t *topic, p int32) (*partition, error) {
	if err := t.checkPartition(p); err != nil {
		return nil, err
	}
	for {
		// Again at every turn: a write that waited for a hand-off of p
		// must not reopen it once it is proposed to another broker.
		if err := b.checkWriter(t, p); err != nil {
			return nil, err
		}
		t.mu.Lock()
		if part, ok := t.parts[p]; ok {
			t.mu.Unlock()
			return part, nil
		}
		if t.deleted {
			t.mu.Unlock()
			return nil, errorf(ErrTopicNotFound, "topic %q was deleted", t.cfg.Name)
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
				return nil, classify(ctx.Err())
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
			if v := t.views[p]; v != nil {
				close(v.opened) // followers of the bucket view switch to the open partition now
			}
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
		return errShuttingDown()
	}
	b.opens.Add(1)
	return nil
}

// openPartition opens partition p of t (recovering what earlier owners left
// in their WAL objects). Partitions open in parallel; partition() makes
// sure each opens once and that Close sees it.
func (b *Broker) openPartition(ctx context.Context, t *topic, p int32) (*partition, error) {
	pc := b.cfg.Partition
	pc.Topic, pc.Partition = t.store, p
	pc.Dir = b.partitionDir(t, p)
	pc.Store = b.cfg.Store
	if t.cfg.SegmentBytes > 0 {
		pc.SealBytes = t.cfg.SegmentBytes
	}
	pc.RetentionTime = time.Duration(t.cfg.RetentionMs) * time.Millisecond
	pc.RetentionBytes = t.cfg.RetentionBytes
	codec, err := segment.ParseCodec(t.cfg.Compression)
	if err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	pc.Segment.Codec = codec
	pc.DedupWindow, pc.DedupHeader = dedupWindow(t.cfg), HeaderMsgID
	pc.Logger = b.cfg.Logger
	pc.OnSeal = b.sealHook(t.cfg.Name, p)
	pc.Seals = b.seals
	b.mu.Lock()
	pc.WAL, pc.WALReader = b.wal, b.walr
	b.mu.Unlock()
	b.awaitRelease(ctx, t, p, pc.WAL.Incarnation())
	lp, err := ingest.OpenPartition(ctx, pc)
	if errors.Is(err, ingest.ErrStaleIncarnation) {
		// This incarnation dropped the partition (a hand-off whose seal
		// lost to another claimer) and may hold records of it in its own
		// WAL: reopen under a new incarnation, which recovers them.
		go b.retire(pc.WAL, "a partition this incarnation handed off unfinished was written again")
	}
	if err != nil {
		return nil, classify(err)
	}
	part := &partition{log: lp, wal: pc.WAL}
	part.reader = fetch.NewPartitionReader(b.cache, b.cfg.Store, lp, lp.Hot())
	return part, nil
}

// partitionDir is the local directory of partition p of t.
func (b *Broker) partitionDir(t *topic, p int32) string {
	return meta.PartitionDir(b.cfg.DataDir, t.cfg.Name, t.id, p)
}

// removeLocal deletes a partition's local directory (on a vfs.FS other
// than the OS: the files in it, which is all such a filesystem has).
func (b *Broker) removeLocal(dir string) {
	fs := b.cfg.Partition.FS
	if fs == vfs.Default || fs == nil {
		os.RemoveAll(dir)
		return
	}
	names, _ := fs.List(dir)
	for _, n := range names {
		fs.Remove(filepath.Join(dir, n))
	}
	fs.SyncDir(dir)
}

// CreateTopic creates a topic: its config object is written only if
// absent, so two brokers cannot both create one topic with different
// settings. It returns the config as stored (compression defaulted).
func (b *Broker) CreateTopic(ctx context.Context, cfg TopicConfig) (*TopicConfig, error) {
	if err := validNewName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Colocate != "" {
		return nil, errorf(ErrInvalidArgument, "colocate is set by the broker on the topics it creates for share groups; create topic %q without it", cfg.Name)
	}
	if len(cfg.ConsumedBy) > maxConsumedBy {
		return nil, errorf(ErrInvalidArgument, "consumed_by names %d share groups, over the limit of %d; nothing was created", len(cfg.ConsumedBy), maxConsumedBy)
	}
	for _, g := range cfg.ConsumedBy {
		if err := validGroupName(g); err != nil {
			return nil, errorf(ErrInvalidArgument, "consumed_by: %v; nothing was created", err)
		}
	}
	return b.createTopic(ctx, cfg)
}

// maxConsumedBy bounds the share groups a topic's retention waits for.
const maxConsumedBy = 16

// createTopic creates a topic, one of a client's (CreateTopic checked its
// name) or one the broker makes for itself.
func (b *Broker) createTopic(ctx context.Context, cfg TopicConfig) (*TopicConfig, error) {
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	switch {
	case cfg.Partitions <= 0:
		return nil, errorf(ErrInvalidArgument, "partitions must be at least 1 (got %d)", cfg.Partitions)
	case int(cfg.Partitions) > b.cfg.MaxPartitions:
		return nil, errorf(ErrInvalidArgument, "partitions %d is over the broker's limit of %d", cfg.Partitions, b.cfg.MaxPartitions)
	}
	if err := checkTopicSizes(&cfg); err != nil {
		return nil, errorf(ErrInvalidArgument, "%v; nothing was created", err)
	}
	if cfg.Compression == "" {
		cfg.Compression = "zstd"
	}
	if _, err := segment.ParseCodec(cfg.Compression); err != nil {
		return nil, errorf(ErrInvalidArgument, "%v", err)
	}
	if err := checkValueConfig(&cfg); err != nil { // stores the schema compact
		return nil, errorf(ErrInvalidArgument, "topic %q: %v; nothing was created", cfg.Name, err)
	}
	// The topic's new identity makes the config unique to this create, so
	// a create whose answer was lost is recognized as ours (meta.CAS).
	id := meta.NewTopicID()
	data := encodeTopicConfig(&cfg, id)
	_, err := meta.CAS{Store: b.cfg.Store}.Swap(ctx, meta.TopicConfigKey(cfg.Name), "", data)
	var cerr *meta.ConflictError
	if errors.As(err, &cerr) {
		return nil, errorf(ErrTopicExists, "topic %q already exists", cfg.Name)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("topic %q: %w", cfg.Name, err))
	}
	// A topic of this name still cached here is an older one, deleted
	// through another broker before the refresh noticed: forget it now,
	// or requests would go on reaching the deleted topic's data.
	b.mu.Lock()
	old := b.topics[cfg.Name]
	b.mu.Unlock()
	if old != nil && old.id != id {
		b.forgetTopic(old)
	}
	b.cfg.Logger.Info("topic created", "topic", cfg.Name, "partitions", cfg.Partitions)
	return &cfg, nil
}

// ListTopics returns the configs of every topic in the bucket, by name.
func (b *Broker) ListTopics(ctx context.Context) ([]*TopicConfig, error) {
	var names []string
	err := b.cfg.Store.List(ctx, meta.TopicsPrefix, func(o tier.ObjectInfo) error {
		if name, ok := meta.TopicNameOfConfigKey(o.Key); ok {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	sort.Strings(names)
	var out []*TopicConfig
	for _, n := range names {
		if strings.HasPrefix(n, internalPrefix) {
			continue // the broker's own (share-group state logs)
		}
		t, err := b.loadTopic(ctx, n)
		if err != nil {
			return nil, err
		}
		c := t.describedConfig()
		out = append(out, &c)
	}
	return out, nil
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	Partition      int32
	LogStartOffset int64
	HighWatermark  int64
	SealedBytes    int64
	SealedSegments int64
	LocalBytes     int64 // on this broker's disk (0 when not open here)
}

// TopicDescription is a topic's config and partitions.
type TopicDescription struct {
	Config     TopicConfig
	Partitions []PartitionInfo
}

// DescribeTopic describes a topic and its partitions, claiming none.
func (b *Broker) DescribeTopic(ctx context.Context, name string) (*TopicDescription, error) {
	t, err := b.loadTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	out := &TopicDescription{Config: t.describedConfig()}
	for p := int32(0); p < t.cfg.Partitions; p++ {
		v, err := b.view(ctx, t, p)
		if err != nil {
			return nil, err
		}
		logStart, hw, err := v.bounds(ctx) // fresh from the bucket for a view
		if err != nil {
			return nil, classify(err)
		}
		m, err := v.manifest(ctx)
		if err != nil {
			return nil, classify(err)
		}
		out.Partitions = append(out.Partitions, PartitionInfo{
			Partition: p, LogStartOffset: logStart, HighWatermark: hw,
			SealedBytes: m.SealedBytes(), SealedSegments: int64(len(m.Segments)), LocalBytes: v.local(),
		})
	}
	return out, nil
}

// StartKind says where a Position is.
type StartKind int

const (
	// StartEarliest is the log start.
	StartEarliest StartKind = iota
	// StartLatest is the high watermark.
	StartLatest
	// StartTime is the first offset whose timestamp is at or after
	// TimestampMs (a TimestampMs of 0 means offset 0).
	StartTime
	// StartOffset is Offset.
	StartOffset
)

// Position is a place in a partition: the earliest, latest, an offset or
// a time.
type Position struct {
	Kind        StartKind
	Offset      int64
	TimestampMs int64
}

// ListOffsets resolves pos in partition p of topic, claiming nothing.
func (b *Broker) ListOffsets(ctx context.Context, topicName string, p int32, pos Position) (int64, error) {
	if err := clientTopic(topicName, "read"); err != nil {
		return 0, err
	}
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return 0, err
	}
	v, err := b.view(ctx, t, p)
	if err != nil {
		return 0, err
	}
	return b.resolveStart(ctx, v, pos)
}

func (b *Broker) resolveStart(ctx context.Context, v *readView, pos Position) (int64, error) {
	logStart, hw, err := v.bounds(ctx)
	if err != nil {
		return 0, classify(err)
	}
	switch pos.Kind {
	case StartEarliest:
		return logStart, nil
	case StartLatest:
		return hw, nil
	case StartTime:
		if pos.TimestampMs == 0 {
			return 0, nil
		}
		off, err := v.reader.OffsetForTime(ctx, pos.TimestampMs)
		return off, classify(err)
	}
	return pos.Offset, nil
}

// DeleteTopic deletes a topic and returns how many objects it deleted:
// the config object goes first, so the topic is gone for every broker at
// once; then the open partitions are closed without sealing, and every
// object under the topic's prefix and the local directories are deleted.
// A crash midway leaves only unreferenced objects under a prefix no topic
// names; deleting the topic again (after re-creating it) or a sweep
// removes them.
func (b *Broker) DeleteTopic(ctx context.Context, name string) (int64, error) {
	if err := clientTopic(name, "delete"); err != nil {
		return 0, err
	}
	return b.deleteTopic(ctx, name)
}

// deleteTopic deletes a topic, one of a client's or the broker's own.
func (b *Broker) deleteTopic(ctx context.Context, name string) (int64, error) {
	t, err := b.loadTopic(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := b.cfg.Store.Delete(ctx, meta.TopicConfigKey(t.cfg.Name)); err != nil {
		return 0, classify(err)
	}
	b.removeTopic(t)
	n, err := b.deleteTopicData(ctx, t)
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(t.cfg.Name, internalPrefix) {
		if err := b.deleteShares(ctx, t); err != nil {
			return n, err
		}
	}
	b.cfg.Logger.Info("topic deleted", "topic", t.cfg.Name, "objects", n)
	return n, nil
}

// deleteTopicData closes t's partitions without sealing (or waits for
// Close, which took them first, to seal them), removes their local
// directories and deletes every object under t's prefix; it returns how
// many objects it deleted.
func (b *Broker) deleteTopicData(ctx context.Context, t *topic) (int64, error) {
	// No new opens; the ones under way finish (and join t.parts) first.
	t.mu.Lock()
	t.deleted = true
	t.mu.Unlock()
	t.waitOpens()
	t.mu.Lock()
	parts := t.parts
	t.parts = map[int32]*partition{}
	closing := t.closing
	t.mu.Unlock()
	for p, part := range parts {
		part.log.Abandon()
		b.removeLocal(b.partitionDir(t, p))
	}
	if closing != nil {
		// Close took the partitions first and is sealing them: list the
		// objects only once it stored what it stores.
		select {
		case <-closing:
		case <-ctx.Done():
			return 0, classify(ctx.Err())
		}
	}
	return b.deletePrefix(ctx, meta.TopicPrefix(t.cfg.Name))
}

// deletePrefix deletes every object under prefix and returns how many.
func (b *Broker) deletePrefix(ctx context.Context, prefix string) (int64, error) {
	var keys []string
	if err := b.cfg.Store.List(ctx, prefix, func(o tier.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return 0, classify(err)
	}
	for _, k := range keys {
		if err := b.cfg.Store.Delete(ctx, k); err != nil {
			return 0, classify(err)
		}
	}
	return int64(len(keys)), nil
}

// MaxRecordBytes is the largest record cost the broker accepts (Config).
func (b *Broker) MaxRecordBytes() int { return b.cfg.MaxRecordBytes }
