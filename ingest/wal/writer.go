package wal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/internal/failpoint"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

var (
	// ErrFenced is wrapped once another broker fenced this incarnation: it
	// may never store a WAL object again, so nothing new becomes durable.
	ErrFenced = errors.New("wal: this broker incarnation was fenced by another broker")
	// ErrBackpressure is wrapped when Reserve gave up waiting for buffer
	// space: the object store is slower than the produce rate.
	ErrBackpressure = errors.New("wal: write buffer full (the object store is slow or unreachable)")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("wal: writer closed")
)

// MaxPipeline bounds Config.MaxInFlight. Fence relies on it: a writer
// never has a PUT in flight more than MaxPipeline sequence numbers above
// its lowest unstored one.
const MaxPipeline = 8

// NewIncarnation returns a fresh incarnation name: the start time in
// milliseconds and 32 random bits, so names sort by start time and never
// repeat.
func NewIncarnation(now time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013d-%s", now.UnixMilli(), hex.EncodeToString(r[:]))
}

// Config configures a Writer. NewWriter takes a zero field to mean its
// default (DefaultConfig), then checks the result with Validate.
type Config struct {
	Store       tier.Store // required
	Incarnation string     // required; NewIncarnation() for a fresh process
	// FlushInterval: the linger. Uploads start at most one per
	// FlushInterval (unless FlushBytes are waiting), so a received record
	// waits at most this long for its upload to start while a PUT slot is
	// free, and a record after a quiet spell goes at once. It bounds the
	// PUT rate at light load. Default 50ms.
	FlushInterval time.Duration
	// FlushBytes: a flush starts as soon as this much is buffered. Default
	// 8 MiB.
	FlushBytes int64
	// MaxBufferedBytes bounds the data received but not yet stored
	// (buffered plus in flight); Reserve waits while it is reached. At
	// least FlushBytes. Default 256 MiB.
	MaxBufferedBytes int64
	// MaxInFlight: how many WAL PUTs may be in flight at once (1 to
	// MaxPipeline). Objects are still committed in sequence order: an
	// object acks its records only once every lower sequence is stored.
	// Default 4.
	MaxInFlight int
	// RetryMax caps the wait between attempts of a failing PUT. Default 2s.
	RetryMax time.Duration
	// ProbeInterval: how often an idle writer (nothing to flush) looks for
	// a fence at its next sequence number (one ranged GET), so a broker
	// taken over while idle learns it, and stops, without waiting for a
	// write. Default 5s.
	ProbeInterval time.Duration
	Clock         func() time.Time // default time.Now; the local-ack lease and object times use it, the linger and retries run on the runtime clock
	Logger        *slog.Logger     // default slog.Default()
	// OnFlush, when set, is told of every flush when it ends: stored, or
	// given up (fenced, closed). It is called synchronously on the
	// writer's flusher goroutine, after the object is stored and before
	// its records are acknowledged: it must be cheap and must never block
	// (metrics counters), or it delays every ack.
	OnFlush func(Flush)
}

// Flush describes one WAL flush, for Config.OnFlush.
type Flush struct {
	Bytes    int64         // the object's size (header included)
	Records  int64         // records in it
	Chunks   int           // partitions in it
	Attempts int           // PUT attempts it took
	Duration time.Duration // from the flush's start until stored (or given up), retries included
	Err      error         // nil when stored; why not otherwise
}

// DefaultConfig returns the defaults described on Config (Store and
// Incarnation are left for the caller).
func DefaultConfig() Config {
	return Config{
		FlushInterval:    50 * time.Millisecond,
		FlushBytes:       8 << 20,
		MaxBufferedBytes: 256 << 20,
		MaxInFlight:      4,
		RetryMax:         2 * time.Second,
		ProbeInterval:    5 * time.Second,
		Clock:            time.Now,
		Logger:           slog.Default(),
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil || c.Incarnation == "":
		return errors.New("wal: Store and Incarnation are required")
	case c.FlushInterval <= 0 || c.FlushBytes <= 0 || c.MaxBufferedBytes <= 0 || c.RetryMax <= 0 || c.ProbeInterval <= 0:
		return errors.New("wal: FlushInterval, FlushBytes, MaxBufferedBytes, RetryMax and ProbeInterval must be positive")
	case c.MaxInFlight < 1 || c.MaxInFlight > MaxPipeline:
		return fmt.Errorf("wal: MaxInFlight %d: use 1 to %d", c.MaxInFlight, MaxPipeline)
	case c.MaxBufferedBytes < c.FlushBytes:
		return fmt.Errorf("wal: MaxBufferedBytes %d is below FlushBytes %d: a flush could never fill", c.MaxBufferedBytes, c.FlushBytes)
	case c.Clock == nil || c.Logger == nil:
		return errors.New("wal: Clock and Logger are required")
	}
	if err := meta.ValidateIncarnation(c.Incarnation); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default. A
// MaxBufferedBytes left zero is at least FlushBytes.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = d.FlushBytes
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = max(d.MaxBufferedBytes, c.FlushBytes)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.RetryMax == 0 {
		c.RetryMax = d.RetryMax
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Sink learns that a partition's records up to end (exclusive) are stored.
type Sink func(end int64)

type pkey struct {
	topic     string
	partition int32
}

type chunk struct {
	topic     string
	partition int32
	first     int64
	last      int64
	buf       []byte
	reserved  int64
	sink      Sink
}

// Stats counts a Writer's work.
type Stats struct {
	Objects  int64 // WAL objects stored
	Bytes    int64 // their total size
	Attempts int64 // PUT attempts, retries included
	Failures int64 // failed attempts
	Buffered int64 // bytes received but not yet stored (now)
}

// Writer group-commits the records a broker receives, across all of its
// partitions, into one WAL object per flush. See the package comment.
type Writer struct {
	cfg   Config
	kick  chan struct{}  // capacity 1: wakes the flusher
	ended chan *upload   // an upload's outcome, for the flusher to commit
	ups   sync.WaitGroup // running uploads
	stop  chan struct{}  // closed by Close: flush what is left, then exit
	done  chan struct{}  // closed when the flusher exits
	ctx   context.Context
	halt  context.CancelFunc // aborts an in-flight flush (Close timed out)

	mu           sync.Mutex
	buffered     int64 // reserved bytes: pending plus in flight
	space        chan struct{}
	pending      map[pkey]*chunk
	order        []*chunk
	pendingBytes int64
	lastStart    time.Time // when the newest upload started (time.Now: the linger runs on the timer's clock, never on Config.Clock, which may step)
	next         uint64    // the sequence of the next object to start
	inflight     []*upload // started and not yet committed, in sequence order
	failed       error
	failedCh     chan struct{}
	closed       bool

	objects, bytes, attempts, failures atomic.Int64
	lastStored                         atomic.Int64 // Clock's UnixNano at the start of the latest PUT that stored a committed object (upload.proof); 0 before the first
}

// NewWriter starts a writer. The first object it stores has sequence 0.
func NewWriter(cfg Config) (*Writer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, halt := context.WithCancel(context.Background())
	w := &Writer{
		cfg: cfg, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ended: make(chan *upload, MaxPipeline), ctx: ctx, halt: halt, space: make(chan struct{}), pending: map[pkey]*chunk{}, failedCh: make(chan struct{}),
	}
	go w.run()
	return w, nil
}

// Incarnation is the writer's incarnation name.
func (w *Writer) Incarnation() string { return w.cfg.Incarnation }

// Failed is closed when the writer can no longer store anything (fenced or
// closed); Err then says why.
func (w *Writer) Failed() <-chan struct{} { return w.failedCh }

// Err is nil while the writer works, then why it stopped.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// StoredWithin reports whether the writer stored an object with a PUT
// that started within the last d: proof that it was not fenced that
// recently (a fenced writer never stores again; the store applied the
// object after the PUT started, and no completed fence lets a PUT
// apply). It counts from the PUT's start, not from when the object was
// committed: a lost or slow response, or (with several PUTs in flight)
// a slow lower object, can delay the commit long after the store applied
// the object, and a takeover may have completed in between. Used to
// bound how long local acks may go on after a takeover the writer has
// not noticed yet. Across a backward step of the wall clock the time
// since that PUT is unknown: no lease.
func (w *Writer) StoredWithin(d time.Duration) bool {
	last := w.lastStored.Load()
	elapsed := w.cfg.Clock().UnixNano() - last
	return last != 0 && elapsed >= 0 && elapsed <= int64(d)
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	buffered := w.buffered
	w.mu.Unlock()
	return Stats{Objects: w.objects.Load(), Bytes: w.bytes.Load(), Attempts: w.attempts.Load(), Failures: w.failures.Load(), Buffered: buffered}
}

// Reserve takes n bytes of buffer space for data about to be added,
// waiting while the buffer is full. It fails with ErrBackpressure when ctx
// ends first, and with the writer's error once it has failed. Every
// successful Reserve is followed by Add (which keeps the space until the
// data is stored) or Release.
func (w *Writer) Reserve(ctx context.Context, n int64) error {
	for {
		w.mu.Lock()
		if w.failed != nil {
			err := w.failed
			w.mu.Unlock()
			return err
		}
		// A reservation larger than the whole buffer is let in alone.
		if w.buffered+n <= w.cfg.MaxBufferedBytes || w.buffered == 0 {
			w.buffered += n
			w.mu.Unlock()
			return nil
		}
		ch := w.space
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrBackpressure, ctx.Err())
		case <-ch:
		}
	}
}

// Release returns reserved space that will not be added.
func (w *Writer) Release(n int64) {
	w.mu.Lock()
	w.release(n)
	w.mu.Unlock()
}

func (w *Writer) release(n int64) {
	w.buffered -= n
	close(w.space)
	w.space = make(chan struct{})
}

// Add queues a batch (with its offsets assigned) for the next WAL object,
// holding `reserved` bytes of space until it is stored. Batches of one
// partition must be added in offset order. sink is called, from the
// flusher, once the batch is stored. Add never blocks on the object store.
func (w *Writer) Add(topic string, partition int32, b *segment.Batch, reserved int64, sink Sink) error {
	return w.add(topic, partition, b.BaseOffset, b.LastOffset(), reserved, sink, func(dst []byte) []byte {
		return segment.AppendBatch(dst, b)
	}, int(min(EstimateSize(b), math.MaxInt32)))
}

// AddEncoded is Add for a batch already encoded: enc is
// segment.AppendBatch of a batch whose offsets run from first to last
// (the local log's frame payload, so a batch is encoded once). The bytes
// are copied before AddEncoded returns: the caller may reuse enc at once.
// An enc whose fixed fields do not say first and last is refused.
func (w *Writer) AddEncoded(topic string, partition int32, first, last int64, enc []byte, reserved int64, sink Sink) error {
	if base, count, ok := segment.BatchSpan(enc); !ok || base != first || base+int64(count)-1 != last || last < first {
		w.mu.Lock()
		w.release(reserved)
		w.mu.Unlock()
		return fmt.Errorf("wal: %s/%d: encoded batch (%d bytes) does not hold offsets %d-%d", topic, partition, len(enc), first, last)
	}
	return w.add(topic, partition, first, last, reserved, sink, func(dst []byte) []byte { return append(dst, enc...) }, len(enc))
}

// chunkBufs holds the buffers of committed chunks for new chunks to
// reuse: a chunk growing from empty by doubling copied and allocated
// several times its size (profiled: most of the produce path's
// allocation). Buffers over maxPooledChunk are left to the garbage
// collector. A buffer returns here only once its object is stored and
// committed, when nothing reads it any more.
var chunkBufs sync.Pool

const maxPooledChunk = 16 << 20

// getChunkBuf returns an empty buffer with room for at least n bytes.
func getChunkBuf(n int) []byte {
	if v := chunkBufs.Get(); v != nil {
		if b := *(v.(*[]byte)); cap(b) >= n {
			return b[:0]
		}
	}
	return make([]byte, 0, max(n, 64<<10))
}

func putChunkBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledChunk {
		chunkBufs.Put(&b)
	}
}

// add appends a batch of offsets first-last to its partition's chunk with
// encode, which appends the batch's encoding (about size bytes) to dst.
func (w *Writer) add(topic string, partition int32, first, last, reserved int64, sink Sink, encode func(dst []byte) []byte, size int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed != nil {
		w.release(reserved)
		return w.failed
	}
	k := pkey{topic, partition}
	c := w.pending[k]
	if c == nil {
		c = &chunk{topic: topic, partition: partition, first: first, buf: getChunkBuf(size)}
		w.pending[k] = c
		w.order = append(w.order, c)
	} else if first != c.last+1 {
		w.release(reserved)
		return fmt.Errorf("wal: %s/%d: batch at offset %d added after %d", topic, partition, first, c.last)
	}
	before := len(c.buf)
	if cap(c.buf)-len(c.buf) < size {
		// Grow once, to twice the need, into a pooled buffer when one fits.
		nb := getChunkBuf(2 * (len(c.buf) + size))
		nb = append(nb, c.buf...)
		putChunkBuf(c.buf)
		c.buf = nb
	}
	c.buf = encode(c.buf)
	c.last = last
	c.reserved += reserved
	c.sink = sink
	wasEmpty := w.pendingBytes == 0
	w.pendingBytes += int64(len(c.buf) - before)
	if wasEmpty || w.pendingBytes >= w.cfg.FlushBytes {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// upload is one WAL object on its way to the store.
type upload struct {
	seq      uint64
	chunks   []*chunk
	size     int64
	start    time.Time
	attempts int
	proof    time.Time // Clock when the PUT that stored the object started (its first attempt's, when a retry found it stored)
	err      error     // the outcome: nil once stored
	ended    bool
}

// run is the flusher. It starts uploads (at most MaxInFlight at once, in
// sequence order) and commits them in sequence order: an object's records
// are acknowledged only once it and every object below it are stored, and
// the first upload that fails for good fails the writer.
func (w *Writer) run() {
	defer close(w.done)
	defer w.ups.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	probe := time.NewTicker(w.cfg.ProbeInterval)
	defer probe.Stop()
	for {
		w.mu.Lock()
		if w.failed != nil {
			w.mu.Unlock()
			return
		}
		stopping := w.closed
		now := time.Now()
		// Uploads start at most one per FlushInterval (the linger: it
		// bounds the PUT rate at light load, whatever the store's
		// latency), sooner when FlushBytes are waiting, and only while
		// a slot is free. After a quiet spell the first record goes at
		// once.
		wait := w.lastStart.Add(w.cfg.FlushInterval).Sub(now)
		if len(w.order) > 0 && len(w.inflight) < w.cfg.MaxInFlight &&
			(stopping || wait <= 0 || w.pendingBytes >= w.cfg.FlushBytes) {
			w.lastStart = now
			u := &upload{seq: w.next, chunks: w.order, start: time.Now()}
			w.order, w.pending, w.pendingBytes = nil, map[pkey]*chunk{}, 0
			w.next++
			w.inflight = append(w.inflight, u)
			w.mu.Unlock()
			w.ups.Add(1)
			go w.upload(u)
			continue
		}
		idle := len(w.order) == 0 && len(w.inflight) == 0
		armTimer := len(w.order) > 0 && len(w.inflight) < w.cfg.MaxInFlight
		seq := w.next
		w.mu.Unlock()
		if idle && stopping {
			return
		}
		// (Since Go 1.23 a stopped or reset timer delivers no stale tick.)
		var tc <-chan time.Time
		if armTimer {
			timer.Reset(wait)
			tc = timer.C
		}
		var pc <-chan time.Time
		if idle {
			pc = probe.C
		}
		var sc <-chan struct{}
		if !stopping {
			sc = w.stop
		}
		select {
		case <-tc:
		case <-w.kick:
		case <-sc:
		case u := <-w.ended:
			w.commit(u)
		case <-pc:
			w.probe(seq)
		}
		timer.Stop()
	}
}

// upload stores one WAL object, retrying until it is stored or the writer
// is fenced or halted, and hands the outcome to the flusher.
func (w *Writer) upload(u *upload) {
	defer w.ups.Done()
	h := &Header{Incarnation: w.cfg.Incarnation, Seq: u.seq, CreatedMs: w.cfg.Clock().UnixMilli()}
	var pos uint64
	for _, c := range u.chunks {
		h.Entries = append(h.Entries, Entry{
			Topic: c.topic, Partition: c.partition, First: c.first, Last: c.last,
			Pos: pos, Len: uint32(len(c.buf)), CRC: crc32.Checksum(c.buf, castagnoli),
		})
		pos += uint64(len(c.buf))
	}
	head := encodeHeader(h)
	u.size = int64(len(head)) + int64(pos)
	key := Key(w.cfg.Incarnation, u.seq)
	body := func() io.Reader {
		parts := make([]io.Reader, 0, len(u.chunks)+1)
		parts = append(parts, bytes.NewReader(head))
		for _, c := range u.chunks {
			parts = append(parts, bytes.NewReader(c.buf))
		}
		return io.MultiReader(parts...)
	}
	// Each attempt gets its own deadline, the store's for this size: a
	// PUT on a connection that went silent costs one deadline, and the
	// next attempt goes out on a new connection. A timed-out attempt may
	// have applied; the next one then finds our object at the key
	// (ErrPreconditionFailed) and resolveExisting reads it back as ours.
	timeout := tier.RequestTimeout(w.cfg.Store, u.size)
	var err error
	var first time.Time
	for attempt := 0; ; attempt++ {
		u.attempts++
		w.attempts.Add(1)
		start := w.cfg.Clock()
		if attempt == 0 {
			first = start
		}
		err = w.putAttempt(key, body(), u.size, timeout)
		u.proof = start
		if errors.Is(err, tier.ErrPreconditionFailed) {
			// Stored by an earlier attempt (if ours): any of them, so
			// the proof dates from the first.
			err = w.resolveExisting(key)
			u.proof = first
		}
		if err == nil || errors.Is(err, ErrFenced) || w.ctx.Err() != nil {
			break
		}
		w.failures.Add(1)
		if attempt == 0 || attempt%20 == 0 {
			w.cfg.Logger.Warn("WAL object upload failed; retrying", "key", key, "attempt", attempt+1, "err", err)
		}
		d := (tier.Backoff{Base: 25 * time.Millisecond, Max: w.cfg.RetryMax}).Wait(attempt)
		select {
		case <-time.After(d):
		case <-w.ctx.Done():
		}
	}
	if err != nil && w.ctx.Err() != nil && !errors.Is(err, ErrFenced) {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
	}
	u.err = err
	w.ended <- u // never blocks: at most MaxPipeline uploads exist, and the channel holds that many
}

// commit takes an upload's outcome and, in sequence order, acknowledges
// every stored object whose lower sequences are all stored. A failed
// upload fails the writer at once (a fence above a slow lower upload
// needs no wait: nothing at or above it will be acknowledged).
func (w *Writer) commit(u *upload) {
	u.ended = true
	if u.err != nil {
		w.report(u)
		w.fail(u.err)
		return
	}
	for {
		w.mu.Lock()
		if w.failed != nil || len(w.inflight) == 0 || !w.inflight[0].ended {
			w.mu.Unlock()
			return
		}
		u := w.inflight[0]
		w.inflight = w.inflight[1:]
		w.mu.Unlock()
		failpoint.Hit(failpoint.WALUploaded)
		w.lastStored.Store(u.proof.UnixNano())
		w.objects.Add(1)
		w.bytes.Add(u.size)
		w.report(u)
		var reserved int64
		for _, c := range u.chunks {
			c.sink(c.last + 1)
			reserved += c.reserved
			if u.attempts == 1 {
				// Stored by its only attempt, whose answer came after the
				// whole body was sent: nothing reads the buffer again. (A
				// timed-out attempt's transport may still be reading its
				// body after the attempt returned: such buffers are left
				// to the garbage collector.)
				putChunkBuf(c.buf)
			}
			c.buf = nil
		}
		w.mu.Lock()
		w.release(reserved)
		w.mu.Unlock()
	}
}

// report tells OnFlush how an upload ended.
func (w *Writer) report(u *upload) {
	if w.cfg.OnFlush == nil {
		return
	}
	var records int64
	for _, c := range u.chunks {
		records += c.last - c.first + 1
	}
	w.cfg.OnFlush(Flush{Bytes: u.size, Records: records, Chunks: len(u.chunks), Attempts: u.attempts, Duration: time.Since(u.start), Err: u.err})
}

// putAttempt is one PutIfAbsent of a WAL object under its own deadline.
// An attempt cut off by that deadline fails with a retryable
// *tier.TimeoutError: its outcome is unknown.
func (w *Writer) putAttempt(key string, body io.Reader, size int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(w.ctx, timeout, &tier.TimeoutError{Op: "put-if-absent", Key: key, After: timeout})
	defer cancel()
	_, err := w.cfg.Store.PutIfAbsent(ctx, key, body, size)
	if err != nil && ctx.Err() != nil && w.ctx.Err() == nil {
		return context.Cause(ctx)
	}
	return err
}

// probe looks for a fence at seq, the next sequence number, while the
// writer is idle (run calls it, so no flush is in flight): a fence there
// fails the writer as its next PUT would. Any error (no object: not
// fenced) leaves the question to the next probe or PUT.
func (w *Writer) probe(seq uint64) {
	key := Key(w.cfg.Incarnation, seq)
	ctx, cancel := context.WithTimeout(w.ctx, tier.RequestTimeout(w.cfg.Store, int64(len(magicFence))))
	defer cancel()
	rc, err := w.cfg.Store.GetRange(ctx, key, 0, int64(len(magicFence)))
	if err != nil {
		return
	}
	head, err := io.ReadAll(rc)
	rc.Close()
	if err == nil && IsFence(head) {
		w.fail(fmt.Errorf("%w: found a fence at %s while idle", ErrFenced, key))
	}
}

// resolveExisting decides what an existing object at our key is: our own
// earlier attempt whose response was lost (stored: nil), a fence (ErrFenced),
// or, if it cannot be read now, a retryable error.
func (w *Writer) resolveExisting(key string) error {
	rc, err := w.cfg.Store.GetRange(w.ctx, key, 0, int64(len(magicWAL)))
	if err != nil {
		return fmt.Errorf("wal: read back %s: %w", key, err)
	}
	defer rc.Close()
	head, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("wal: read back %s: %w", key, err)
	}
	switch {
	case IsFence(head):
		return fmt.Errorf("%w: found a fence at %s", ErrFenced, key)
	case string(head) == magicWAL:
		return nil // only this incarnation writes WAL objects under its prefix
	}
	return fmt.Errorf("%w: %s holds neither a WAL object nor a fence", ErrCorrupt, key)
}

// NoticeFence fails the writer as fenced: key, under its prefix, holds a
// fence another broker put there (Reader.WatchOwnFences).
func (w *Writer) NoticeFence(key string) {
	w.fail(fmt.Errorf("%w: a read found a fence at %s", ErrFenced, key))
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed != nil {
		return
	}
	w.failed = err
	w.halt() // in-flight uploads stop: nothing more can be acknowledged
	close(w.failedCh)
	close(w.space)
	w.space = make(chan struct{})
	if errors.Is(err, ErrFenced) {
		w.cfg.Logger.Error("WAL writer fenced: another broker took over this broker's partitions; nothing more will be acknowledged as durable", "incarnation", w.cfg.Incarnation, "err", err)
	}
}

// Close stores what is buffered (waiting at most until ctx ends) and stops
// the writer. Later Reserve and Add calls fail with ErrClosed.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.halt()
		<-w.done
	}
	w.halt()
	w.fail(ErrClosed)
	err := w.Err()
	if errors.Is(err, ErrClosed) && ctx.Err() == nil {
		return nil
	}
	return err
}

// EstimateSize is the buffer space a batch will take: an upper bound of
// its encoding.
func EstimateSize(b *segment.Batch) int64 {
	n := int64(64)
	for i := range b.Records {
		r := &b.Records[i]
		n += int64(len(r.Key)+len(r.Value)) + 3*binaryMaxVarint
		for _, h := range r.Headers {
			n += int64(len(h.Key)+len(h.Value)) + 2*binaryMaxVarint
		}
	}
	return min(n, math.MaxInt64/2)
}

const binaryMaxVarint = 10
