package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/queue"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// A share group's state on one partition, on the partition's owner.

const (
	// snapshotEvery: a state is snapshotted after this many events, or
	// snapshotInterval after its first unsnapshotted event.
	snapshotEvery    = 2000
	snapshotInterval = 30 * time.Second
	// recordCacheBytes bounds the records a state keeps to hand out
	// without reading them again.
	recordCacheBytes = 32 << 20
	// fillBytes is how much a fill reads at once.
	fillBytes = 1 << 20
	// deadLetterBatch bounds the dead-letter moves assigned at once (within
	// what a partition remembers of a producer: a retry is a duplicate).
	deadLetterBatch = 64
)

// sharePart is a share group's live state on partition p: the queue state,
// the topic partition it reads, the state-log partition it writes.
type sharePart struct {
	b     *Broker
	t, lt *topic // the topic and its state log
	p     int32
	cfgp  atomic.Pointer[ShareGroupConfig] // replaced when the group is altered
	key   runtimeKey
	ready chan struct{} // closed when built (err says whether it worked)
	err   error

	// token is held to change st and append to the state log (never a
	// mutex: held across I/O). It is the key's, shared by every runtime
	// the key has here over time (shares.tokenOf), so a rebuild takes it
	// before it reads the state log: by then no dropped runtime of the
	// key is appending, and none will (dropped).
	token chan struct{}
	// dropped is set, before rt leaves shares.runtimes, when rt is
	// forgotten (dropRuntime): its state may be stale, and lock refuses.
	dropped atomic.Bool
	st      *queue.State
	data    *partition // the topic's partition, open here
	log     *partition // the state log's partition, open here

	recs     map[int64]segment.Record // records of held entries (a cache)
	recBytes int64

	// guarded by token:
	unsnapped int            // events since the last snapshot
	firstUnsn time.Time      // time of the first of them
	lastSnap  atomic.Int64   // state-log offset of the latest stored snapshot
	doneRuns  []string       // runs fully read back: deleted after the next snapshot
	broken    error          // a state-log write failed: the runtime is dropped
	seen      uint64         // the state's Version at the last maintenance
	runKey    string         // the run being read back, and its records
	runRecs   []queue.Record // (a cache)
}

// errRuntimeDropped: the runtime was dropped before lock got its token;
// nothing was done, and a new runtime of the key may serve the request.
var errRuntimeDropped = &Error{Kind: ErrUnavailable, Msg: "the share group's state on this partition was dropped to be rebuilt (a takeover, a reopen or a failed write) while the request waited for it; nothing was done: retry"}

func (rt *sharePart) lock(ctx context.Context) error {
	select {
	case rt.token <- struct{}{}:
		if rt.dropped.Load() {
			<-rt.token
			return errRuntimeDropped
		}
		if rt.broken != nil {
			<-rt.token
			return rt.broken
		}
		return nil
	case <-ctx.Done():
		return classify(ctx.Err())
	}
}

func (rt *sharePart) unlock() { <-rt.token }

// cfg is the group's current settings.
func (rt *sharePart) cfg() *ShareGroupConfig { return rt.cfgp.Load() }

// current reports whether the runtime still sits on the partitions open
// here (a takeover or a WAL rotation drops and reopens them).
func (rt *sharePart) current() bool {
	rt.t.mu.Lock()
	d := rt.t.parts[rt.p]
	rt.t.mu.Unlock()
	rt.lt.mu.Lock()
	l := rt.lt.parts[rt.p]
	rt.lt.mu.Unlock()
	return d == rt.data && l == rt.log
}

// sharePart returns the live state of cfg's group on partition p of t,
// building it (which claims p and its state-log partition) if needed.
func (b *Broker) sharePart(ctx context.Context, t *topic, cfg *ShareGroupConfig, p int32) (*sharePart, error) {
	if err := t.checkPartition(p); err != nil {
		return nil, err
	}
	if err := b.checkWriter(t, p); err != nil {
		return nil, err
	}
	key := runtimeKey{t.store, cfg.Group, p}
	for {
		b.shares.mu.Lock()
		rt := b.shares.runtimes[key]
		if rt == nil {
			rt = &sharePart{b: b, t: t, p: p, key: key, ready: make(chan struct{}), token: b.shares.tokenOf(key)}
			rt.cfgp.Store(cfg)
			b.shares.runtimes[key] = rt
			// The build is the state's, not the caller's: it runs on its
			// own (ended by its deadline or Close), so a caller with a
			// short deadline neither keeps a large rebuild from finishing
			// nor waits past its deadline for it.
			go func() {
				bctx, cancel := b.bgContext(2 * time.Minute)
				defer cancel()
				rt.err = rt.build(bctx)
				if rt.err != nil {
					b.dropRuntime(rt)
				}
				close(rt.ready)
			}()
		}
		b.shares.mu.Unlock()
		select {
		case <-rt.ready:
		case <-ctx.Done():
			return nil, classify(ctx.Err())
		}
		if rt.err != nil {
			return nil, rt.err // the next request builds again
		}
		old := rt.cfg()
		if old.Seed != cfg.Seed || !rt.current() || rt.isBroken() || rt.dropped.Load() {
			b.dropRuntime(rt)
			continue
		}
		if old.queueConfig() != cfg.queueConfig() || old.DeadLetterTopic != cfg.DeadLetterTopic {
			if err := rt.lock(ctx); err != nil {
				b.dropRuntime(rt)
				continue
			}
			rt.cfgp.Store(cfg)
			rt.st.SetConfig(cfg.tunedConfig(b.cfg.Share))
			rt.unlock()
		}
		return rt, nil
	}
}

func (rt *sharePart) isBroken() bool {
	select {
	case rt.token <- struct{}{}:
		broken := rt.broken != nil
		<-rt.token
		return broken
	default:
		return false // busy: whoever holds it finds out
	}
}

// dropRuntime forgets rt (if it is still the runtime of its key) and
// makes its lock refuse, so no request still holding rt changes its state
// or appends to the state log once a new runtime may be built.
func (b *Broker) dropRuntime(rt *sharePart) {
	rt.dropped.Store(true)
	b.shares.mu.Lock()
	if b.shares.runtimes[rt.key] == rt {
		delete(b.shares.runtimes, rt.key)
	}
	b.shares.mu.Unlock()
}

// build opens the partition and its state-log partition and rebuilds the
// state: the latest snapshot, then every event after it.
func (rt *sharePart) build(ctx context.Context) error {
	b := rt.b
	lt, err := b.ensureTopic(ctx, shareLogPrefix+rt.t.cfg.Name, rt.t)
	if err != nil {
		return err
	}
	if lt.cfg.Partitions < rt.t.cfg.Partitions {
		return errorf(ErrInternal, "state log %q has %d partitions, fewer than topic %q's %d", lt.cfg.Name, lt.cfg.Partitions, rt.t.cfg.Name, rt.t.cfg.Partitions)
	}
	rt.lt = lt
	if rt.data, err = b.partition(ctx, rt.t, rt.p); err != nil {
		return err
	}
	if rt.log, err = b.partition(ctx, lt, rt.p); err != nil {
		return err
	}
	rt.recs = map[int64]segment.Record{}
	// An earlier runtime of the key here (dropped: a takeover of the
	// topic's partition, a reopen) may have appended events that are not
	// durable yet, for requests still waiting to answer: they are in the
	// log below NextOffset, not below the high watermark. Take the key's
	// token, so that runtime's last append is done and no other follows,
	// then wait for every event appended so far and replay them all;
	// otherwise this runtime would hand out records those requests are
	// about to answer as leased (or settle them again).
	if err := rt.lock(ctx); err != nil {
		return err
	}
	defer rt.unlock()
	end := rt.log.log.NextOffset()
	if err := rt.log.log.WaitDurable(ctx, end); err != nil {
		return classify(err)
	}
	snapKey, snapOff, err := rt.latestSnapshot(ctx, end)
	if err != nil {
		return err
	}
	if snapKey != "" {
		data, err := rt.getObject(ctx, snapKey, true)
		if err != nil {
			return err
		}
		st, err := queue.Restore(rt.cfg().tunedConfig(b.cfg.Share), data)
		if err != nil {
			return errorf(ErrInternal, "share group %q partition %d: snapshot %s is unreadable (%v); the group's state there cannot be rebuilt", rt.cfg().Group, rt.p, snapKey, err)
		}
		rt.st = st
		rt.lastSnap.Store(snapOff)
	} else {
		start := int64(0)
		if !rt.cfg().StartFromEarliest && int(rt.p) < len(rt.cfg().StartOffsets) {
			start = rt.cfg().StartOffsets[rt.p]
		}
		rt.st = queue.New(rt.cfg().tunedConfig(b.cfg.Share), start)
	}
	// Replay the events after the snapshot (without one, the group logged
	// nothing yet: its first snapshot comes before its first event, so the
	// state log may have dropped what is below its start).
	tag := []byte(rt.cfg().tag())
	n := 0
	m, _ := rt.log.log.Manifest(ctx)
	from := snapOff
	if snapKey == "" {
		from = max(from, m.LogStartOffset)
	} else if from < m.LogStartOffset {
		return errorf(ErrInternal, "share group %q partition %d: the state log starts at %d, after its snapshot at %d: events it needs are gone; the group's state there cannot be rebuilt", rt.cfg().Group, rt.p, m.LogStartOffset, from)
	}
	for from < end {
		res, err := rt.log.reader.Read(ctx, from, fillBytes)
		if err != nil {
			return classify(err)
		}
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			from = r.Offset + 1
			if r.Offset >= end || !bytes.Equal(r.Key, tag) {
				continue
			}
			ev, err := queue.DecodeEvent(r.Value)
			if err != nil {
				return errorf(ErrInternal, "share group %q partition %d: state-log record %d is unreadable: %v", rt.cfg().Group, rt.p, r.Offset, err)
			}
			if err := rt.replay(ctx, ev); err != nil {
				return err
			}
			n++
		}
	}
	rt.unsnapped = n
	if n > 0 {
		rt.firstUnsn = time.Now()
	}
	if snapKey == "" {
		// The first snapshot, before this state logs anything (see
		// trimStateLog).
		if err := rt.snapshotLocked(ctx); err != nil {
			return err
		}
	}
	b.cfg.Logger.Debug("share group state rebuilt", "topic", rt.t.cfg.Name, "group", rt.cfg().Group, "partition", rt.p, "snapshot", snapOff, "events", n)
	return nil
}

// replay applies one logged event while rebuilding, first offering the
// records it needs.
func (rt *sharePart) replay(ctx context.Context, ev queue.Event) error {
	need := int64(-1)
	switch ev.Kind {
	case queue.KindSpill:
		need = ev.Run.Cursor - 1
	case queue.KindProducer, queue.KindLoadRun:
	default:
		need = ev.Offset
	}
	for need >= rt.st.Cursor() {
		got, err := rt.fill(ctx, need+1, ev.Time)
		if err != nil {
			return err
		}
		if !got {
			break // the records are gone (retention) or not readable yet
		}
	}
	if ev.Kind == queue.KindLoadRun {
		recs, err := rt.runRecords(ctx, ev.Run)
		if err != nil {
			return err
		}
		done, err := rt.st.ApplyLoad(ev, recs)
		if done != "" {
			rt.doneRuns = append(rt.doneRuns, done)
		}
		return err
	}
	return rt.st.Apply(ev)
}

// runRecords reads back the entries of run that ev.Run.Loaded adds (from
// the state's current Loaded).
func (rt *sharePart) runRecords(ctx context.Context, evRun *queue.Run) ([]queue.Record, error) {
	from := -1
	for _, r := range rt.st.Runs() {
		if r.Key == evRun.Key {
			from = r.Loaded
		}
	}
	if from < 0 {
		return nil, nil // read back before the snapshot: ApplyLoad skips it
	}
	recs, err := rt.runEntries(ctx, evRun.Key)
	if err != nil || evRun.Loaded > len(recs) || from > evRun.Loaded {
		return nil, errorf(ErrInternal, "share group %q partition %d: run %s is unreadable or short (%v)", rt.cfg().Group, rt.p, evRun.Key, err)
	}
	return recs[from:evRun.Loaded], nil
}

// latestSnapshot finds the newest snapshot at or below state-log offset end.
func (rt *sharePart) latestSnapshot(ctx context.Context, end int64) (string, int64, error) {
	best, bestOff := "", int64(0)
	err := rt.b.cfg.Store.List(ctx, rt.snapPrefix(), func(o tier.ObjectInfo) error {
		if off, ok := meta.ShareSnapshotOffset(o.Key); ok && off <= end && (best == "" || off > bestOff) {
			best, bestOff = o.Key, off
		}
		return nil
	})
	if err != nil {
		return "", 0, classify(err)
	}
	return best, bestOff, nil
}

// Snapshot coders, made and first used at package init: the coders make
// their pools lazily, and pools made inside a testing/synctest bubble
// would break every other bubble.
var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<30))
)

func init() {
	if _, err := zdec.DecodeAll(zenc.EncodeAll([]byte("warm up"), nil), nil); err != nil {
		panic("core: zstd: " + err.Error())
	}
}

func (rt *sharePart) getObject(ctx context.Context, key string, compressed bool) ([]byte, error) {
	rc, _, err := rt.b.cfg.Store.Get(ctx, key)
	if err != nil {
		return nil, classify(fmt.Errorf("share group %q partition %d: %s: %w", rt.cfg().Group, rt.p, key, err))
	}
	data, err := io.ReadAll(io.LimitReader(rc, 1<<30))
	rc.Close()
	if err != nil {
		return nil, classify(err)
	}
	if compressed {
		if data, err = zdec.DecodeAll(data, nil); err != nil {
			return nil, errorf(ErrInternal, "share group %q partition %d: %s does not decompress: %v", rt.cfg().Group, rt.p, key, err)
		}
	}
	return data, nil
}

// fill offers the partition's next durable records to the state, up to
// offset limit (exclusive; -1: as far as the window allows). It reports
// whether it offered anything.
func (rt *sharePart) fill(ctx context.Context, limit int64, now int64) (bool, error) {
	from := rt.st.Cursor()
	if limit < 0 && !rt.st.CanOffer() || limit >= 0 && from >= limit {
		return false, nil
	}
	res, err := rt.data.reader.Read(ctx, from, fillBytes)
	var oor *fetch.OutOfRangeError
	if errors.As(err, &oor) {
		m, _ := rt.data.log.Manifest(ctx)
		if m.LogStartOffset > from { // retention dropped records never settled: skipped
			rt.b.cfg.Logger.Warn("share group skipped records that retention dropped before the group settled them", "topic", rt.t.cfg.Name, "group", rt.cfg().Group, "partition", rt.p, "from", from, "log_start", m.LogStartOffset)
			rt.st.SkipTo(m.LogStartOffset)
			return true, nil
		}
		return false, nil
	}
	if err != nil {
		return false, classify(err)
	}
	got := false
	for _, r := range res.Records {
		if r.Offset < from || limit >= 0 && r.Offset >= limit || limit < 0 && !rt.st.CanOffer() {
			continue
		}
		if err := rt.st.Offer(recordMeta(&r), now); err != nil {
			return got, errorf(ErrInternal, "%v", err)
		}
		got = true
		if size := int64(RecordCost(&r)); rt.recBytes+size <= recordCacheBytes {
			rt.recs[r.Offset] = r
			rt.recBytes += size
		}
	}
	return got, nil
}

// recordMeta is what the queue state keeps of a record.
func recordMeta(r *segment.Record) queue.Record {
	q := queue.Record{Offset: r.Offset, Timestamp: r.Timestamp}
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderDeliverAt:
			q.DeliverAt, _ = strconv.ParseInt(string(h.Value), 10, 64)
		case HeaderPriority:
			if v, err := strconv.Atoi(string(h.Value)); err == nil && v >= 0 && v <= queue.MaxPriority {
				q.Priority = int8(v)
			}
		}
	}
	if r.Key != nil {
		h := fnv.New64a()
		h.Write(r.Key)
		q.KeyHash, q.HasKey = h.Sum64(), true
	}
	return q
}

// record returns the record at offset, from the cache or the partition.
func (rt *sharePart) record(ctx context.Context, off int64) (segment.Record, error) {
	if r, ok := rt.recs[off]; ok {
		return r, nil
	}
	res, err := rt.data.reader.Read(ctx, off, 64<<10)
	if err != nil {
		return segment.Record{}, classify(err)
	}
	for _, r := range res.Records {
		if r.Offset == off {
			return r, nil
		}
	}
	return segment.Record{}, errorf(ErrInternal, "record %d of %s/%d is not readable", off, rt.t.cfg.Name, rt.p)
}

// forget drops a settled record from the cache.
func (rt *sharePart) forget(off int64) {
	if r, ok := rt.recs[off]; ok {
		rt.recBytes -= int64(RecordCost(&r))
		delete(rt.recs, off)
	}
}

// appendEvents appends evs to the state log (under the token) and returns
// the offset to wait for. A failed append breaks the runtime: the state in
// memory is ahead of the log, so it is rebuilt from the log.
func (rt *sharePart) appendEvents(ctx context.Context, evs []queue.Event) (int64, error) {
	if len(evs) == 0 {
		return rt.log.log.NextOffset(), nil
	}
	// The events are applied already: a caller that leaves now must not
	// make the append fail (that breaks the runtime), so the write has its
	// own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tag := []byte(rt.cfg().tag())
	batch := &segment.Batch{ProducerID: segment.NoProducer}
	now := time.Now().UnixMilli()
	for _, ev := range evs {
		batch.Records = append(batch.Records, segment.Record{Timestamp: now, Key: tag, Value: queue.EncodeEvent(ev)})
	}
	wr, err := rt.log.log.Write(ctx, batch)
	if err != nil {
		rt.broken = fmt.Errorf("share group state log write failed: %w", err)
		rt.b.dropRuntime(rt)
		return 0, classify(err)
	}
	if rt.unsnapped == 0 {
		rt.firstUnsn = time.Now()
	}
	rt.unsnapped += len(evs)
	return wr.End, nil
}

// durable waits until the state log is stored up to end. A failure breaks
// the runtime (what it acknowledged in memory may not be stored).
func (rt *sharePart) durable(ctx context.Context, end int64) error {
	err := rt.log.log.WaitDurable(ctx, end)
	if err != nil && ctx.Err() == nil {
		rt.b.dropRuntime(rt)
	}
	return err
}

// maintain does what time asks of the state: read ahead, spill and read
// back delayed records, move dead letters, snapshot.
func (rt *sharePart) maintain(ctx context.Context) (changed bool, err error) {
	if err := rt.lock(ctx); err != nil {
		return false, err
	}
	now := time.Now().UnixMilli()
	rt.st.Advance(now)
	for i := 0; i < 4; i++ {
		if got, err := rt.fill(ctx, -1, now); err != nil || !got {
			break
		}
	}
	evs, err := rt.spillAndLoad(ctx, now)
	var end int64
	if err == nil {
		end, err = rt.appendEvents(ctx, evs)
	}
	v := rt.st.Version()
	changed = v != rt.seen
	rt.seen = v
	rt.unlock()
	if err != nil {
		return changed, err
	}
	if err := rt.durable(ctx, end); err != nil {
		return changed, err
	}
	for i := 0; i < 16; i++ {
		moved, err := rt.moveDeadLetters(ctx)
		if err != nil {
			return changed, err
		}
		if !moved {
			break
		}
	}
	return changed, rt.maybeSnapshot(ctx)
}

// spillAndLoad stores a run when too many delayed records are in memory,
// and reads one back when its records come due; it returns the events
// (applied).
func (rt *sharePart) spillAndLoad(ctx context.Context, now int64) ([]queue.Event, error) {
	var evs []queue.Event
	if run, recs := rt.st.SpillPlan(now); run != nil {
		run.Key = meta.ShareRunKey(rt.t.store, rt.cfg().Group, rt.p)
		data := queue.EncodeRun(recs)
		if _, err := rt.b.cfg.Store.PutIfAbsent(ctx, run.Key, bytes.NewReader(data), int64(len(data))); err != nil {
			return nil, classify(fmt.Errorf("storing spilled delayed records: %w", err))
		}
		ev := queue.Event{Kind: queue.KindSpill, Time: now, Run: run}
		if err := rt.st.Apply(ev); err != nil {
			return nil, errorf(ErrInternal, "%v", err)
		}
		for _, r := range recs {
			rt.forget(r.Offset)
		}
		evs = append(evs, ev)
	}
	for i := 0; i < 64; i++ {
		run, n := rt.st.LoadPlan(now)
		if run == nil {
			break
		}
		recs, err := rt.runEntries(ctx, run.Key)
		if err != nil {
			return evs, err
		}
		if n = rt.st.LoadCount(run, recs, n, now); n == 0 {
			break // no room: the records come back as the window drains
		}
		if run.Loaded+n > len(recs) {
			return evs, errorf(ErrInternal, "run %s holds %d records, its state says %d", run.Key, len(recs), run.Count)
		}
		next := int64(0)
		if run.Loaded+n < len(recs) {
			next = recs[run.Loaded+n].Due()
		}
		ev := queue.LoadEvent(run, n, next, now)
		done, err := rt.st.ApplyLoad(ev, recs[run.Loaded:run.Loaded+n])
		if err != nil {
			return evs, errorf(ErrInternal, "%v", err)
		}
		if done != "" {
			rt.doneRuns = append(rt.doneRuns, done)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// runEntries returns a run's records, read once and kept while the run is
// being read back.
func (rt *sharePart) runEntries(ctx context.Context, key string) ([]queue.Record, error) {
	if rt.runKey == key {
		return rt.runRecs, nil
	}
	data, err := rt.getObject(ctx, key, false)
	if err != nil {
		return nil, err
	}
	recs, err := queue.DecodeRun(data)
	if err != nil {
		return nil, errorf(ErrInternal, "share group %q partition %d: run %s is unreadable: %v", rt.cfg().Group, rt.p, key, err)
	}
	rt.runKey, rt.runRecs = key, recs
	return recs, nil
}

// snapPrefix is the prefix of this group creation's snapshots of p.
func (rt *sharePart) snapPrefix() string {
	c := rt.cfg()
	return meta.ShareSnapshotPrefix(rt.t.store, c.Group, fmt.Sprintf("%016x", c.Seed), rt.p)
}

// maybeSnapshot stores a snapshot when enough events were logged since the
// last one.
func (rt *sharePart) maybeSnapshot(ctx context.Context) error {
	if err := rt.lock(ctx); err != nil {
		return err
	}
	defer rt.unlock()
	if rt.unsnapped == 0 || rt.unsnapped < snapshotEvery && time.Since(rt.firstUnsn) < snapshotInterval {
		return nil
	}
	return rt.snapshotLocked(ctx)
}

// snapshotLocked (the caller holds the token) logs a tick, so the
// snapshot is of a moment in the log and stored only once this broker
// stored a state-log write after every event it covers (a fenced owner
// cannot), then stores the snapshot, deletes older ones and the runs read
// back, and lets the state log drop what every group's snapshots cover.
func (rt *sharePart) snapshotLocked(ctx context.Context) error {
	tick := queue.Event{Kind: queue.KindTick, Time: time.Now().UnixMilli()}
	_ = rt.st.Apply(tick)
	at, err := rt.appendEvents(ctx, []queue.Event{tick})
	if err != nil {
		return err
	}
	data := rt.st.Snapshot()
	done := rt.doneRuns
	if err := rt.durable(ctx, at); err != nil {
		return err
	}
	key := meta.ShareSnapshotKey(rt.t.store, rt.cfg().Group, fmt.Sprintf("%016x", rt.cfg().Seed), rt.p, at)
	z := zenc.EncodeAll(data, nil)
	if _, err := rt.b.cfg.Store.PutIfAbsent(ctx, key, bytes.NewReader(z), int64(len(z))); err != nil && !errors.Is(err, tier.ErrPreconditionFailed) {
		return classify(fmt.Errorf("storing a share-group snapshot: %w", err))
	}
	rt.doneRuns = nil
	rt.unsnapped = 0
	rt.lastSnap.Store(at)
	var old []string
	_ = rt.b.cfg.Store.List(ctx, rt.snapPrefix(), func(o tier.ObjectInfo) error {
		if off, ok := meta.ShareSnapshotOffset(o.Key); ok && off < at {
			old = append(old, o.Key)
		}
		return nil
	})
	for _, k := range append(old, done...) {
		_ = rt.b.cfg.Store.Delete(ctx, k) // garbage if it fails: a later snapshot retries the older ones
	}
	rt.b.trimStateLog(ctx, rt.lt, rt.t, rt.p)
	return nil
}

// trimStateLog lets partition p of the state log lt drop the events below
// every share group's latest snapshot of p, as listed in the bucket. A
// group without a snapshot of p has no events there (a state stores its
// first snapshot before it logs anything).
func (b *Broker) trimStateLog(ctx context.Context, lt, t *topic, p int32) {
	cfgs, err := b.ListShareGroups(ctx, t.cfg.Name)
	if err != nil {
		return // next snapshot
	}
	floor := int64(-1)
	for _, cfg := range cfgs {
		probe := &sharePart{b: b, t: t, p: p}
		probe.cfgp.Store(cfg)
		key, off, err := probe.latestSnapshot(ctx, math.MaxInt64)
		if err != nil {
			return
		}
		if key != "" && (floor < 0 || off < floor) {
			floor = off
		}
	}
	if floor <= 0 {
		return
	}
	lt.mu.Lock()
	part := lt.parts[p]
	lt.mu.Unlock()
	if part != nil {
		part.log.SetRetentionFloor(floor)
	}
}

// moveDeadLetters stores the records waiting for the dead-letter topic
// there, each with the producer id and sequence logged for it first, so a
// move retried by a new owner is recognized as a duplicate.
func (rt *sharePart) moveDeadLetters(ctx context.Context) (moved bool, err error) {
	if err := rt.lock(ctx); err != nil {
		return false, err
	}
	assigned, unassigned := rt.st.DeadLetters(deadLetterBatch)
	if len(assigned)+len(unassigned) == 0 {
		rt.unlock()
		return false, nil
	}
	var evs []queue.Event
	now := time.Now().UnixMilli()
	if pid, _ := rt.st.Producer(); pid == 0 && len(unassigned) > 0 {
		pid, err := rt.b.InitProducer(ctx)
		if err != nil {
			rt.unlock()
			return false, err
		}
		ev := queue.Event{Kind: queue.KindProducer, Producer: pid, Time: now}
		_ = rt.st.Apply(ev)
		evs = append(evs, ev)
		assigned, unassigned = rt.st.DeadLetters(deadLetterBatch)
	}
	if len(assigned) == 0 {
		for _, e := range unassigned {
			_, seq := rt.st.Producer()
			ev := queue.Event{Kind: queue.KindDeadLetterAssign, Offset: e.Offset, Seq: seq, Time: now}
			_ = rt.st.Apply(ev)
			evs = append(evs, ev)
		}
		assigned, _ = rt.st.DeadLetters(0)
	}
	pid, _ := rt.st.Producer()
	end, err := rt.appendEvents(ctx, evs)
	rt.unlock()
	if err != nil {
		return false, err
	}
	if err := rt.durable(ctx, end); err != nil {
		return false, err
	}
	dt, err := rt.b.loadTopic(ctx, rt.cfg().deadLetterTopic())
	if err != nil {
		return false, err
	}
	// The records, read under the token (the record cache is the state's).
	if err := rt.lock(ctx); err != nil {
		return false, err
	}
	var copies []segment.Record
	var gone []queue.Event
	for _, e := range assigned {
		rec, err := rt.record(ctx, e.Offset)
		var oor *fetch.OutOfRangeError
		if errors.As(err, &oor) {
			gone = append(gone, queue.Event{Kind: queue.KindGone, Offset: e.Offset, Time: time.Now().UnixMilli()})
			continue
		}
		if err != nil {
			rt.unlock()
			return false, err
		}
		copies = append(copies, rt.deadLetter(rec, e))
	}
	if len(gone) > 0 {
		moved = true
		// Retention dropped some before they were moved: they are gone,
		// and the others are assigned again under a new producer (their
		// sequences would have a gap).
		gone = append(gone, queue.Event{Kind: queue.KindProducer, Producer: 0, Time: time.Now().UnixMilli()})
		for _, ev := range gone {
			_ = rt.st.Apply(ev)
			rt.forget(ev.Offset)
		}
		end, err := rt.appendEvents(ctx, gone)
		rt.unlock()
		if err != nil {
			return false, err
		}
		return moved, rt.durable(ctx, end)
	}
	rt.unlock()
	// One request: the batch's sequences are consecutive (assigned
	// together), and a retry after a crash sends the same batch, which the
	// dead-letter partition answers as a duplicate.
	_, err = rt.b.Produce(ctx, &ProduceRequest{
		Topic: dt.cfg.Name, Partition: rt.p % dt.cfg.Partitions, Acks: AcksDurable,
		Records: copies, ProducerID: pid, BaseSequence: assigned[0].DLQSeq,
	})
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrFailedPrecondition) {
		// The dead-letter partition does not know our producer (its state
		// expired) or refuses the sequence: take a new producer id; the
		// moves are assigned again.
		if err := rt.lock(ctx); err != nil {
			return false, err
		}
		ev := queue.Event{Kind: queue.KindProducer, Producer: 0, Time: time.Now().UnixMilli()}
		_ = rt.st.Apply(ev)
		end, err := rt.appendEvents(ctx, []queue.Event{ev})
		rt.unlock()
		if err != nil {
			return false, err
		}
		return moved, rt.durable(ctx, end)
	}
	if err != nil {
		return false, fmt.Errorf("moving %d records of %s/%d to dead-letter topic %q: %w", len(copies), rt.t.cfg.Name, rt.p, dt.cfg.Name, err)
	}
	if err := rt.lock(ctx); err != nil {
		return false, err
	}
	var done []queue.Event
	for _, e := range assigned {
		ev := queue.Event{Kind: queue.KindDeadLettered, Offset: e.Offset, Time: time.Now().UnixMilli()}
		_ = rt.st.Apply(ev)
		rt.forget(e.Offset)
		done = append(done, ev)
	}
	end, err = rt.appendEvents(ctx, done)
	rt.unlock()
	if err != nil {
		return false, err
	}
	if err := rt.durable(ctx, end); err != nil {
		return false, err
	}
	return true, nil
}

// deadLetter is the dead-letter copy of rec: its key, value and headers,
// plus headers naming where it came from and why.
func (rt *sharePart) deadLetter(rec segment.Record, e queue.Entry) segment.Record {
	ts := func(ms int64) []byte { return []byte(time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")) }
	hs := make([]segment.Header, 0, len(rec.Headers)+9)
	for _, h := range rec.Headers {
		switch {
		case strings.HasPrefix(h.Key, "strata-dlq-"):
		case h.Key == HeaderMsgID:
			// Kept under another name: the copy is not a duplicate of the
			// record (a record dead-lettered twice lands twice), and a
			// redrive within the window is not dropped as one.
			hs = append(hs, segment.Header{Key: HeaderDLQOriginMsgID, Value: h.Value})
		default:
			hs = append(hs, h)
		}
	}
	hs = append(hs,
		segment.Header{Key: HeaderDLQOriginTopic, Value: []byte(rt.t.cfg.Name)},
		segment.Header{Key: HeaderDLQOriginPartition, Value: []byte(strconv.Itoa(int(rt.p)))},
		segment.Header{Key: HeaderDLQOriginOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
		segment.Header{Key: HeaderDLQOriginTime, Value: ts(rec.Timestamp)},
		segment.Header{Key: HeaderDLQGroup, Value: []byte(rt.cfg().Group)},
		segment.Header{Key: HeaderDLQDeliveryCount, Value: []byte(strconv.Itoa(int(e.Count)))},
		segment.Header{Key: HeaderDLQReason, Value: []byte(e.Reason)},
	)
	if e.First > 0 {
		hs = append(hs, segment.Header{Key: HeaderDLQFirstDelivery, Value: ts(e.First)}, segment.Header{Key: HeaderDLQLastDelivery, Value: ts(e.Last)})
	}
	return segment.Record{Key: rec.Key, Value: rec.Value, Headers: hs}
}

// shareLoopInterval is how often live share-group states are maintained
// (lease ends, backoffs and delays are applied at once by receives; this
// moves dead letters, spills, snapshots and wakes waiting receivers).
const shareLoopInterval = 200 * time.Millisecond

// shareLoop maintains every live share-group state every
// shareLoopInterval (each round bounded by 30 s).
func (b *Broker) shareLoop() {
	b.everyWithin(shareLoopInterval, 30*time.Second, b.shareLoopRound)
}

// shareLoopRound maintains every live share-group state once.
func (b *Broker) shareLoopRound(ctx context.Context) {
	b.shares.mu.Lock()
	rts := make([]*sharePart, 0, len(b.shares.runtimes))
	for _, rt := range b.shares.runtimes {
		rts = append(rts, rt)
	}
	b.shares.mu.Unlock()
	sort.Slice(rts, func(i, j int) bool { return rts[i].key.p < rts[j].key.p })
	any := false
	for _, rt := range rts {
		select {
		case <-rt.ready:
		default:
			continue
		}
		if rt.err != nil {
			continue
		}
		if _, err := b.shareConfig(ctx, rt.t, rt.cfg().Group, false); errors.Is(err, ErrGroupNotFound) {
			continue // deleted: forgotten by shareConfig
		}
		if err := b.checkWriter(rt.t, rt.p); err != nil || !rt.current() {
			b.dropRuntime(rt)
			continue
		}
		changed, err := rt.maintain(ctx)
		if err != nil && ctx.Err() == nil {
			b.cfg.Logger.Warn("share group maintenance failed; will retry", "topic", rt.t.cfg.Name, "group", rt.cfg().Group, "partition", rt.p, "err", err)
		}
		any = any || changed
	}
	b.applyConsumedRetention(rts)
	if any {
		b.shares.notify()
	}
	if b.cfg.Cluster != nil && time.Since(b.shares.scanned) > shareScanInterval {
		b.shares.scanned = time.Now()
		b.activateShares(ctx)
	}
}

// shareScanInterval is how often a broker in a cluster looks for share
// groups on partitions it owns whose state it does not hold yet.
const shareScanInterval = 5 * time.Second

// activateShares builds, in the background, the state of every share
// group on every partition this broker owns and does not hold yet: after
// a restart or a takeover, dead-letter moves, read-back of delayed
// records and retention by consumption go on without waiting for a
// client. Only in a cluster, where ownership is proposed: a standalone
// broker claims only what it is asked for (another broker on the same
// bucket may serve the rest).
func (b *Broker) activateShares(ctx context.Context) {
	var keys []string
	if err := b.cfg.Store.List(ctx, meta.SharesPrefix, func(o tier.ObjectInfo) error {
		if strings.HasSuffix(o.Key, "/config.json") {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		return
	}
	for _, k := range keys {
		parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(k, meta.SharesPrefix), "/config.json"), "/")
		if len(parts) != 3 && len(parts) != 2 {
			continue
		}
		name, group := parts[0], parts[len(parts)-1]
		t, err := b.loadTopic(ctx, name)
		if err != nil || t.store != strings.Join(parts[:len(parts)-1], "/") {
			continue // gone, or another identity of the name
		}
		cfg, err := b.shareConfig(ctx, t, group, false)
		if err != nil {
			continue
		}
		for p := range t.cfg.Partitions {
			if _, self := b.ownerOf(t.cfg.OwnerKey(p)); !self {
				continue
			}
			b.shares.mu.Lock()
			_, live := b.shares.runtimes[runtimeKey{t.store, group, p}]
			b.shares.mu.Unlock()
			if live {
				continue
			}
			select {
			case b.shares.activating <- struct{}{}:
			default:
				return // enough builds under way: next scan
			}
			b.bg.Add(1)
			go func() {
				defer b.bg.Done()
				defer func() { <-b.shares.activating }()
				bctx, cancel := b.bgContext(2 * time.Minute)
				defer cancel()
				if _, err := b.sharePart(bctx, t, cfg, p); err != nil && bctx.Err() == nil {
					b.cfg.Logger.Debug("share group state not built yet; will retry", "topic", t.cfg.Name, "group", group, "partition", p, "err", err)
				}
			}()
		}
	}
}

// applyConsumedRetention lets each topic with ConsumedBy groups drop the
// segments every named group has settled, for the partitions where every
// named group's state is live here.
func (b *Broker) applyConsumedRetention(rts []*sharePart) {
	type tp struct {
		t *topic
		p int32
	}
	floors := map[tp]map[string]int64{}
	for _, rt := range rts {
		select {
		case <-rt.ready:
		default:
			continue
		}
		if len(rt.t.cfg.ConsumedBy) == 0 || rt.err != nil || !rt.current() {
			continue
		}
		select {
		case rt.token <- struct{}{}:
		default:
			continue // busy: next round
		}
		if rt.dropped.Load() || rt.broken != nil {
			<-rt.token
			continue // its state may be ahead of the log
		}
		f := rt.st.Floor()
		<-rt.token
		k := tp{rt.t, rt.p}
		if floors[k] == nil {
			floors[k] = map[string]int64{}
		}
		floors[k][rt.cfg().Group] = f
	}
	for k, byGroup := range floors {
		floor := int64(-1)
		for _, g := range k.t.cfg.ConsumedBy {
			f, ok := byGroup[g]
			if !ok {
				floor = -1
				break
			}
			if floor < 0 || f < floor {
				floor = f
			}
		}
		if floor > 0 {
			k.t.mu.Lock()
			part := k.t.parts[k.p]
			k.t.mu.Unlock()
			if part != nil {
				part.log.SetRetentionFloor(floor)
			}
		}
	}
}
