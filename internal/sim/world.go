package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/segment"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
	"github.com/stratalog/strata/vfs"
)

// This file is the world: one shared bucket, broker slots with their
// disks, broker processes, and the fault wrapper each process reaches the
// bucket through. It also keeps the god's-eye observations the checker
// needs (who wrote which manifest when, whose WAL PUTs carried which
// offsets), stamped with the world's logical clock.

// errKilled is what every store call of a killed process gets. It is not
// retryable, so the dead broker's loops give up quickly.
var errKilled = errors.New("sim: this broker process was killed; its calls never reach the bucket")

// errConnLost is what a client gets when its broker died, or its answer
// never came, while the request was in flight: the outcome is unknown.
var errConnLost = errors.New("sim: connection to the broker lost while the request was in flight")

// Faults are the per-call fault probabilities of one process's store.
type Faults struct {
	Err503 float64 // refused before reaching the bucket (503 SlowDown): nothing applied
	Lost   float64 // writes applied, then the response is lost (a retryable error)
	Hang   float64 // a write is held until the caller's context ends or the burst heals, then maybe applied; a read times out at once
}

func (f Faults) String() string {
	return fmt.Sprintf("503=%.2f lost=%.2f hang=%.2f", f.Err503, f.Lost, f.Hang)
}

// brokerTuning is the broker configuration of every simulated process:
// small intervals and sizes so that seals, WAL garbage collection and
// their races happen within seconds of fake time.
type brokerTuning struct {
	SealBytes          int64
	SealInterval       time.Duration
	WALFlushInterval   time.Duration
	WALCollectInterval time.Duration
	ProduceTimeout     time.Duration
}

var tuning = brokerTuning{
	SealBytes:          2 << 10,
	SealInterval:       2 * time.Second,
	WALFlushInterval:   20 * time.Millisecond,
	WALCollectInterval: 500 * time.Millisecond,
	ProduceTimeout:     3 * time.Second,
}

// World is the simulated cluster. Its methods are called by the runner's
// goroutine; the brokers' goroutines only reach it through their stores
// (observe) and the logical clock.
type World struct {
	seed   uint64
	noGC   bool // the brokers' own WAL collector never runs
	bucket *tier.MemStore
	logger *slog.Logger
	clock  atomic.Int64 // logical time: orders every event the checker compares

	mu    sync.Mutex // guards slots and every slot's fields
	slots []*slot

	closers sync.WaitGroup // Close of killed brokers

	obs observations
}

// slot is one broker "machine": a disk that outlives processes.
type slot struct {
	id    int
	disk  *vfs.Mem
	lives int
	proc  *Process // nil while down
}

// Process is one broker process (one incarnation as started; the broker
// may start others internally).
type Process struct {
	Name  string // "b<slot>.<life>", or "drain<n>"
	Slot  int    // -1 for drain brokers
	Core  *core.Broker
	B     *grpcserver.Server // the gRPC front end over Core: the sim calls its API methods
	store *procStore
	// reads lets one read-only client request in at a time: the broker
	// reads a bucket view under the view's lock, retrying with backoff,
	// and a second reader blocked on that sync.Mutex would stop
	// synctest's clock (see procStore.do).
	reads chan struct{}
}

// Now is the world's logical clock: every call returns a larger number.
func (w *World) Now() int64 { return w.clock.Add(1) }

// NewWorld returns a world of n broker slots, each with an empty disk, on
// one empty bucket. No process runs yet.
func NewWorld(seed uint64, n int, logs io.Writer) *World {
	if logs == nil {
		logs = io.Discard
	}
	w := &World{
		seed:   seed,
		bucket: tier.NewMemStore(),
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for i := range n {
		w.slots = append(w.slots, &slot{id: i, disk: vfs.NewMem()})
	}
	w.obs.kills, w.obs.incs, w.obs.walObjects = map[string]int64{}, map[string]string{}, map[string]map[uint64]int64{}
	w.obs.eras, w.obs.idEra, w.obs.knows = map[string]int{}, map[string]int{}, map[string][]know{}
	return w
}

// Start starts a new process in a slot that is down, on the slot's disk.
func (w *World) Start(s int) (*Process, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sl := w.slots[s]
	if sl.proc != nil {
		return nil, fmt.Errorf("sim: slot %d already runs %s", s, sl.proc.Name)
	}
	sl.lives++
	p, err := w.newProcess(fmt.Sprintf("b%d.%d", s, sl.lives), s, sl.disk)
	if err != nil {
		return nil, err
	}
	sl.proc = p
	return p, nil
}

// StartFresh starts a process outside the slots, on a fresh disk, with a
// healthy store: the final drain's readers.
func (w *World) StartFresh(name string) (*Process, error) {
	return w.newProcess(name, -1, vfs.NewMem())
}

// newStore returns the store wrapper of a new process.
func (w *World) newStore(name string) *procStore {
	st := &procStore{w: w, proc: name, inner: w.bucket, dead: make(chan struct{})}
	h := uint64(0)
	for _, c := range name {
		h = h*131 + uint64(c)
	}
	st.mu.rng = rand.New(rand.NewPCG(w.seed, h))
	st.mu.heal = make(chan struct{})
	return st
}

func (w *World) newProcess(name string, s int, disk vfs.FS) (*Process, error) {
	st := w.newStore(name)
	cfg := core.DefaultConfig()
	cfg.DataDir = "data"
	cfg.Store = st
	cfg.Partition.FS = disk
	// Incarnation names sort by start time, like wal.NewIncarnation's,
	// but are deterministic.
	cfg.WAL.Incarnation = fmt.Sprintf("%013d-%s", time.Now().UnixMilli(), strings.ReplaceAll(name, ".", "-"))
	cfg.Partition.SealBytes, cfg.Partition.SealInterval = tuning.SealBytes, tuning.SealInterval
	cfg.WAL.FlushInterval, cfg.WALCollectInterval = tuning.WALFlushInterval, tuning.WALCollectInterval
	if w.seed%2 == 0 {
		// Even seeds keep one WAL PUT in flight, odd seeds pipeline
		// (the default, several in flight): both writers are covered.
		cfg.WAL.MaxInFlight = 1
	}
	if w.noGC {
		cfg.WALCollectInterval = 1000 * time.Hour
	}
	cfg.ProduceTimeout = tuning.ProduceTimeout
	cfg.Cache = fetch.DefaultCacheConfig()
	cfg.Cache.MemoryBytes, cfg.Cache.DecodedBytes = 4<<20, 4<<20
	cfg.Logger = w.logger.With("proc", name)
	b, err := core.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("sim: start %s: %w", name, err)
	}
	front, err := grpcserver.New(b, grpcserver.DefaultConfig())
	if err != nil {
		b.Close(context.Background())
		return nil, fmt.Errorf("sim: start %s: %w", name, err)
	}
	w.obs.mu.Lock()
	w.obs.incs[cfg.WAL.Incarnation] = name
	w.obs.mu.Unlock()
	return &Process{Name: name, Slot: s, Core: b, B: front, store: st, reads: make(chan struct{}, 1)}, nil
}

// Proc returns the process running in slot s, or nil.
func (w *World) Proc(s int) *Process {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.slots[s].proc
}

// Kill kills slot s's process: its store is cut off for good (every later
// call fails, and so do calls held by a pause or a hang, none of them
// applied), its disk keeps only what was fsynced (keepDisk; torn, when not
// nil, also keeps a random torn prefix of unsynced appends) or is lost,
// and the broker is closed with a canceled context so its goroutines
// exit. It returns the killed process's name, or "" if the slot was down.
func (w *World) Kill(s int, keepDisk bool, torn *rand.Rand) string {
	w.mu.Lock()
	sl := w.slots[s]
	p := sl.proc
	if p == nil {
		w.mu.Unlock()
		return ""
	}
	sl.proc = nil
	w.obs.kill(p.Name, w.Now())
	p.store.kill()
	if keepDisk {
		sl.disk = sl.disk.Crash(torn)
	} else {
		sl.disk = vfs.NewMem()
	}
	w.mu.Unlock()
	w.closers.Add(1)
	go func() {
		defer w.closers.Done()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p.Core.Close(ctx)
	}()
	return p.Name
}

// WaitKilled waits until every killed broker's Close returned.
func (w *World) WaitKilled() { w.closers.Wait() }

// Live returns the processes running in the slots, in slot order.
func (w *World) Live() []*Process {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*Process
	for _, sl := range w.slots {
		if sl.proc != nil {
			out = append(out, sl.proc)
		}
	}
	return out
}

// ConfigExists reports, from the bucket itself, whether topic's config
// object exists: whether the topic exists.
func (w *World) ConfigExists(topic string) bool {
	_, err := w.bucket.Stat(context.Background(), "topics/"+topic+"/config.json")
	return err == nil
}

// Pause models SIGSTOP: the process's store calls, those in flight and
// new ones, are held and applied only at Resume; its client requests
// wait too.
func (p *Process) Pause() { p.store.pause() }

// Resume ends a Pause.
func (p *Process) Resume() { p.store.resume() }

// Paused reports whether the process is paused.
func (p *Process) Paused() bool { return p.store.paused() != nil }

// SetFaults sets the process's store fault probabilities; the zero Faults
// heals it (and releases its hung calls).
func (p *Process) SetFaults(f Faults) { p.store.setFaults(f) }

// Killed reports whether the process was killed.
func (p *Process) Killed() bool {
	select {
	case <-p.store.dead:
		return true
	default:
		return false
	}
}

// clientReq marks the context of a client request (Call).
type clientReq struct{}

// Call runs fn as a client request to the process: it waits while the
// process is paused (the request sits in its socket), and the answer
// reaches the client only if the process is alive and running when fn
// returns. sent is false when the request never reached the broker (it
// was dead, or ctx ended first); err is errConnLost when the answer was
// lost.
func (p *Process) Call(ctx context.Context, fn func(ctx context.Context) error) (sent bool, err error) {
	return p.do(context.WithValue(ctx, clientReq{}, true), fn)
}

// Trigger is Call for work the broker would also do on its own (a WAL
// collection): not a client request.
func (p *Process) Trigger(ctx context.Context, fn func(ctx context.Context) error) (sent bool, err error) {
	return p.do(ctx, fn)
}

func (p *Process) do(ctx context.Context, fn func(ctx context.Context) error) (sent bool, err error) {
	if err := p.store.gate(ctx); err != nil {
		return false, err
	}
	err = fn(ctx)
	if gerr := p.store.gate(ctx); gerr != nil {
		return true, fmt.Errorf("%w (%v)", errConnLost, gerr)
	}
	return true, err
}

// Read is Call for a read-only request (Fetch, DescribeTopic,
// ListOffsets): it waits for the process's other read-only request, if
// any, to end, and marks ctx with ReadOnly(ctx, what).
func (p *Process) Read(ctx context.Context, what string, fn func(ctx context.Context) error) (sent bool, err error) {
	select {
	case p.reads <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-p.reads }()
	return p.Call(ReadOnly(ctx, what), fn)
}

// procStore is one process's way to the bucket: tier.Store with faults,
// pause and kill. Decisions come from a PCG seeded by the run's seed and
// the process name; which call gets which decision depends on goroutine
// interleaving.
type procStore struct {
	w     *World
	proc  string
	inner tier.Store
	dead  chan struct{} // closed by kill

	mu struct {
		sync.Mutex
		rng    *rand.Rand
		faults Faults
		hold   chan struct{} // non-nil while paused; closed by resume
		heal   chan struct{} // closed (and replaced) when faults are cleared
	}
}

var _ tier.Store = (*procStore)(nil)

func (s *procStore) kill() {
	select {
	case <-s.dead:
	default:
		close(s.dead)
	}
}

func (s *procStore) pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.hold == nil {
		s.mu.hold = make(chan struct{})
	}
}

func (s *procStore) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.hold != nil {
		close(s.mu.hold)
		s.mu.hold = nil
	}
}

func (s *procStore) paused() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hold
}

func (s *procStore) setFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.faults = f
	if f == (Faults{}) {
		close(s.mu.heal)
		s.mu.heal = make(chan struct{})
	}
}

// running waits while the process is paused; it fails once it is killed.
func (s *procStore) running() error {
	for {
		select {
		case <-s.dead:
			return errKilled
		default:
		}
		h := s.paused()
		if h == nil {
			return nil
		}
		select {
		case <-h:
		case <-s.dead:
			return errKilled
		}
	}
}

// gate is running for client requests, which also give up when ctx ends.
func (s *procStore) gate(ctx context.Context) error {
	for {
		select {
		case <-s.dead:
			return errKilled
		default:
		}
		h := s.paused()
		if h == nil {
			return nil
		}
		select {
		case <-h:
		case <-s.dead:
			return errKilled
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type fault int

const (
	noFault fault = iota
	fault503
	faultLost
	faultHang
)

// roll draws the fault of one call, and a small latency.
func (s *procStore) roll(write bool) (fault, time.Duration, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.mu.faults
	x := s.mu.rng.Float64()
	lat := time.Duration(s.mu.rng.IntN(3)) * time.Millisecond
	switch {
	case x < f.Err503:
		return fault503, lat, s.mu.heal
	case x < f.Err503+f.Hang:
		return faultHang, lat, s.mu.heal
	case write && x < f.Err503+f.Hang+f.Lost:
		return faultLost, lat, s.mu.heal
	}
	return noFault, lat, s.mu.heal
}

func (s *procStore) coin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.rng.IntN(2) == 0
}

// do runs one store call through the faults. fn makes the call on the
// bucket; body is a write's payload (for the observations).
//
//   - A call whose context has ended is not sent.
//   - A write takes a small latency on the way (cut short, and not
//     applied, if its context ends); then, while the process is paused,
//     it is held, and it applies when the process resumes, whatever its
//     context says by then (the request was on the wire). Its answer,
//     too, waits for the process to run.
//   - 503: refused, nothing applied. Lost (writes): applied, then a
//     retryable error. Hang: a write is held until its context ends or
//     the faults heal, then applies or not (a coin), and the caller gets
//     an error.
//   - Reads never wait: no latency, a hung read fails at once with a
//     retryable timeout, and a paused process's reads are answered. The
//     broker reads under a lock that other requests wait for (a bucket
//     view reads under its own), and goroutines blocked on a sync.Mutex
//     stop synctest's clock, so a read that waited for time or for a
//     resume would hang the run. The broker writes under no such lock.
//   - Once the process is killed every call fails with errKilled, held
//     calls included, and none of them applies.
func (s *procStore) do(ctx context.Context, op tier.Op, key string, body []byte, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	write := op >= tier.OpPut
	wait := s.alive
	if write {
		wait = s.running
	}
	f, lat, heal := s.roll(write)
	if !write {
		lat = 0
		if f == faultHang {
			return &tier.StatusError{Op: op.String(), Key: key, Code: "RequestTimeout", Err: fmt.Errorf("sim: hung request timed out, not applied: %w", tier.ErrUnavailable)}
		}
	}
	if lat > 0 {
		// On the way: a context that ends now stops it.
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.dead:
			t.Stop()
			return errKilled
		}
	}
	if err := s.alive(); err != nil {
		return err
	}
	switch f {
	case fault503:
		return &tier.StatusError{Op: op.String(), Key: key, Status: 503, Code: "SlowDown", Err: fmt.Errorf("sim: injected 503, not applied: %w", tier.ErrUnavailable)}
	case faultHang:
		select {
		case <-ctx.Done():
		case <-heal:
		case <-s.dead:
			return errKilled
		}
		if err := wait(); err != nil {
			return err
		}
		applied := false
		if s.coin() {
			err := fn(context.WithoutCancel(ctx))
			s.observe(ctx, op, key, body, err)
			applied = err == nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sim: hung %s %s (applied: %v): %w", op, key, applied, err)
		}
		return &tier.StatusError{Op: op.String(), Key: key, Code: "RequestTimeout", Err: fmt.Errorf("sim: hung request released (applied: %v): %w", applied, tier.ErrUnavailable)}
	}
	if err := wait(); err != nil {
		return err
	}
	err := fn(context.WithoutCancel(ctx))
	s.observe(ctx, op, key, body, err)
	if rerr := wait(); rerr != nil {
		return rerr
	}
	if err == nil && f == faultLost {
		return &tier.StatusError{Op: op.String(), Key: key, Code: "ResponseLost", Err: fmt.Errorf("sim: injected lost response (the write applied): %w", tier.ErrUnavailable)}
	}
	return err
}

// alive fails once the process is killed.
func (s *procStore) alive() error {
	select {
	case <-s.dead:
		return errKilled
	default:
		return nil
	}
}

func (s *procStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	var (
		rc   io.ReadCloser
		info tier.ObjectInfo
	)
	err := s.do(ctx, tier.OpGet, key, nil, func(ctx context.Context) (err error) {
		rc, info, err = s.inner.Get(ctx, key)
		return err
	})
	return rc, info, err
}

func (s *procStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, tier.OpGetRange, key, nil, func(ctx context.Context) (err error) {
		rc, err = s.inner.GetRange(ctx, key, off, n)
		return err
	})
	return rc, err
}

func (s *procStore) Stat(ctx context.Context, key string) (tier.ObjectInfo, error) {
	var info tier.ObjectInfo
	err := s.do(ctx, tier.OpStat, key, nil, func(ctx context.Context) (err error) {
		info, err = s.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

func (s *procStore) List(ctx context.Context, prefix string, fn func(tier.ObjectInfo) error) error {
	var infos []tier.ObjectInfo
	err := s.do(ctx, tier.OpList, prefix, nil, func(ctx context.Context) error {
		return s.inner.List(ctx, prefix, func(o tier.ObjectInfo) error {
			infos = append(infos, o)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, o := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (s *procStore) put(ctx context.Context, op tier.Op, key string, r io.Reader, size int64, fn func(ctx context.Context, body []byte) (tier.ObjectInfo, error)) (tier.ObjectInfo, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return tier.ObjectInfo{}, err
	}
	if size >= 0 && int64(len(body)) != size {
		return tier.ObjectInfo{}, fmt.Errorf("sim: %s %s: body is %d bytes, not %d: %w", op, key, len(body), size, tier.ErrSizeMismatch)
	}
	var info tier.ObjectInfo
	err = s.do(ctx, op, key, body, func(ctx context.Context) (err error) {
		info, err = fn(ctx, body)
		return err
	})
	return info, err
}

func (s *procStore) Put(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return s.put(ctx, tier.OpPut, key, r, size, func(ctx context.Context, body []byte) (tier.ObjectInfo, error) {
		return s.inner.Put(ctx, key, bytes.NewReader(body), int64(len(body)))
	})
}

func (s *procStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return s.put(ctx, tier.OpPutIfAbsent, key, r, size, func(ctx context.Context, body []byte) (tier.ObjectInfo, error) {
		return s.inner.PutIfAbsent(ctx, key, bytes.NewReader(body), int64(len(body)))
	})
}

func (s *procStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	return s.put(ctx, tier.OpPutIfMatch, key, r, size, func(ctx context.Context, body []byte) (tier.ObjectInfo, error) {
		return s.inner.PutIfMatch(ctx, key, etag, bytes.NewReader(body), int64(len(body)))
	})
}

func (s *procStore) Delete(ctx context.Context, key string) error {
	return s.do(ctx, tier.OpDelete, key, nil, func(ctx context.Context) error {
		return s.inner.Delete(ctx, key)
	})
}

// Close is a no-op: the bucket is shared.
func (s *procStore) Close() error { return nil }

// observe records, at the moment a call reached the bucket, what the
// checker's local-ack rule needs: successful manifest writes (ownership
// moves), manifest precondition failures and WAL PUTs (a process learns
// of a move through them), and which offsets each stored WAL object of a
// process holds.
func (s *procStore) observe(ctx context.Context, op tier.Op, key string, body []byte, err error) {
	if s.w.obs.topics(s.proc, ctx.Value(clientReq{}) != nil, op, key, body, err, s.w.Now) {
		return
	}
	precond := errors.Is(err, tier.ErrPreconditionFailed)
	if err != nil && !precond {
		return
	}
	if topic, part, ok := manifestKey(key); ok {
		switch {
		case err == nil && op >= tier.OpPut && op <= tier.OpPutIfMatch:
			e := event{at: s.w.Now(), proc: s.proc, topic: topic, part: part}
			s.w.obs.add(&s.w.obs.manifestWrites, e)
			if what, ok := ctx.Value(readOnly{}).(string); ok {
				e.what = what
				s.w.obs.add(&s.w.obs.readClaims, e)
			}
		case precond:
			s.w.obs.add(&s.w.obs.reveals, event{at: s.w.Now(), proc: s.proc, topic: topic, part: part, what: "manifest"})
		}
		return
	}
	inc, seq, ok := wal.ParseKey(key)
	if !ok {
		return
	}
	if (op == tier.OpGet || op == tier.OpGetRange) && err == nil {
		// A process reading a fence under its own prefix learns that it
		// was fenced; but not through a read-only request's bucket view
		// (it reads the WAL objects of a partition's owners, its own
		// fenced incarnation's among them), which tells the WAL writer
		// nothing: the writer may still take a local ack until it finds
		// the fence itself.
		s.w.obs.mu.Lock()
		own := s.w.obs.incs[inc] == s.proc
		s.w.obs.mu.Unlock()
		if own && ctx.Value(readOnly{}) == nil && s.w.isFence(key) {
			s.w.obs.add(&s.w.obs.reveals, event{at: s.w.Now(), proc: s.proc, what: "fence"})
		}
		return
	}
	if op != tier.OpPutIfAbsent {
		return
	}
	if wal.IsFence(body) {
		if err == nil {
			s.w.obs.add(&s.w.obs.fences, event{at: s.w.Now(), proc: s.proc, what: inc})
		}
		return
	}
	h, herr := wal.DecodeHeader(body)
	if herr != nil {
		return
	}
	s.w.obs.mu.Lock()
	s.w.obs.incs[inc] = s.proc
	s.w.obs.mu.Unlock()
	at, when := s.w.Now(), time.Now()
	if err != nil {
		return // refused: the process learns why only when it reads the object back
	}
	s.w.obs.mu.Lock()
	if s.w.obs.walObjects[inc] == nil {
		s.w.obs.walObjects[inc] = map[uint64]int64{}
	}
	s.w.obs.walObjects[inc][seq] = at
	s.w.obs.mu.Unlock()
	for _, e := range h.Entries {
		// A WAL entry names the topic's storage name, "name" or
		// "name/<topic id>"; the checker compares names.
		name, _, _ := strings.Cut(e.Topic, "/")
		ev := event{at: at, proc: s.proc, topic: name, part: e.Partition, first: e.First, last: e.Last, what: "wal", storage: e.Topic, when: when, inc: inc, seq: seq}
		if start, end := h.DataStart+int64(e.Pos), h.DataStart+int64(e.Pos)+int64(e.Len); end <= int64(len(body)) {
			if batches, err := wal.DecodeEntry(e, body[start:end]); err == nil {
				for _, b := range batches {
					for _, r := range b.Records {
						ev.values = append(ev.values, string(r.Value))
					}
				}
			}
		}
		s.w.obs.add(&s.w.obs.reveals, ev)
		s.w.obs.add(&s.w.obs.walStored, ev)
	}
}

// configName returns the topic name of a config key
// ("topics/<name>/config.json").
func configName(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "topics/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/config.json")
	return name, ok && !strings.Contains(name, "/")
}

// topics records what config calls do to topic eras and to a process's
// view of them; it reports whether the call was one of them.
//   - A config create that applied starts a new era (odd), a delete that
//     applied ends it (even); the create's identity is noted.
//   - A process that reads a config (or finds it missing) for a client
//     request sees the current era: a broker reads the config in a
//     request when it loads the topic (none cached). Its background
//     reads (the refresh, GC) do not count: the refresh drops a cached
//     topic whose config is gone or has another identity, but that drop
//     is not seen here, and the next request loads the topic again. So
//     what a broker resolves a name to is the era of its last load, or,
//     when it loads during a request, anything up to the era it finds.
func (o *observations) topics(proc string, client bool, op tier.Op, key string, body []byte, err error, now func() int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	name, ok := configName(key)
	if !ok {
		return false
	}
	switch {
	case op == tier.OpPutIfAbsent && err == nil:
		if o.eras[name]%2 == 0 {
			o.eras[name]++
		}
		var cfg struct {
			ID string `json:"topic_id"`
		}
		if json.Unmarshal(body, &cfg) == nil && cfg.ID != "" {
			o.idEra[name+"/"+cfg.ID] = o.eras[name]
		}
	case op == tier.OpDelete && err == nil:
		if o.eras[name]%2 == 1 {
			o.eras[name]++
		}
	case op == tier.OpGet && client && (err == nil || errors.Is(err, tier.ErrNotFound)):
		o.knows[proc+"\x00"+name] = append(o.knows[proc+"\x00"+name], know{now(), o.eras[name]})
	}
	return true
}

// Era is the current era of a topic name (see observations.eras).
func (w *World) Era(name string) int {
	w.obs.mu.Lock()
	defer w.obs.mu.Unlock()
	return w.obs.eras[name]
}

// isFence reports whether the object at key is a WAL fence (god's view).
func (w *World) isFence(key string) bool {
	rc, err := w.bucket.GetRange(context.Background(), key, 0, 16)
	if err != nil {
		return false
	}
	defer rc.Close()
	head, _ := io.ReadAll(rc)
	return wal.IsFence(head)
}

// manifestKey parses "topics/<name>/.../partitions/<p>/manifest.json"
// (tolerating extra path segments, such as a topic id, in between).
func manifestKey(key string) (string, int32, bool) {
	rest, ok := strings.CutPrefix(key, "topics/")
	if !ok || !strings.HasSuffix(rest, "/manifest.json") {
		return "", 0, false
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 4 || segs[len(segs)-3] != "partitions" {
		return "", 0, false
	}
	p, err := strconv.Atoi(segs[len(segs)-2])
	if err != nil {
		return "", 0, false
	}
	return segs[0], int32(p), true
}

// event is one observation, at a logical time.
type event struct {
	at          int64
	proc        string
	topic       string
	part        int32
	first, last int64     // WAL entries: the offsets held
	what        string    // read claims: the request; fences: the incarnation; reveals: "wal", "fence" or "manifest"
	storage     string    // WAL entries: the topic's storage name ("name/<topic id>")
	when        time.Time // WAL entries: the fake time they were stored
	values      []string  // WAL entries: the records' values, first to last
	inc         string    // WAL entries: the incarnation whose object holds them
	seq         uint64    // WAL entries: that object's sequence number
}

// committedLocked reports whether WAL entry e's object and every lower
// object of its incarnation were stored before logical time at: then its
// writer could acknowledge it, and recovery keeps it. An object stored
// above one that was not (a hole: with several PUTs in flight, a lower
// one may never land) is dropped by recovery for a partition whose
// offsets it would leave a gap in. Caller holds o.mu.
func (o *observations) committedLocked(e event, at int64) bool {
	objs := o.walObjects[e.inc]
	for s := uint64(0); s < e.seq; s++ {
		if t, ok := objs[s]; !ok || t >= at {
			return false
		}
	}
	return true
}

// holds reports whether a WAL entry holds value at offset off.
func (e event) holds(off int64, value string) bool {
	i := off - e.first
	return e.first <= off && off <= e.last && i < int64(len(e.values)) && e.values[i] == value
}

// know is a process's view of a topic name at a logical time: the era it
// saw (it read the topic's config, or found it missing).
type know struct {
	at  int64
	era int
}

// readOnly is the context key that marks a client request that only
// reads (its value names the request): a manifest written on its behalf
// is a read that claimed ownership.
type readOnly struct{}

// ReadOnly marks ctx as a read-only request's.
func ReadOnly(ctx context.Context, what string) context.Context {
	return context.WithValue(ctx, readOnly{}, what)
}

// observations are the world's god's-eye records.
type observations struct {
	mu             sync.Mutex
	manifestWrites []event                     // successful manifest writes
	reveals        []event                     // what tells a process about a takeover: its stored WAL PUTs ("wal", per partition), its reads of its own fence ("fence"), its manifest precondition failures ("manifest", per partition)
	walStored      []event                     // stored WAL objects' entries
	walObjects     map[string]map[uint64]int64 // incarnation -> sequence -> logical time its WAL object was stored
	readClaims     []event                     // manifest writes made for read-only requests
	fences         []event                     // fences stored, by whom, of which incarnation
	incs           map[string]string           // incarnation -> the process that writes its WAL
	kills          map[string]int64            // process -> logical time of its kill
	// eras counts each topic name's config creates and deletes, as they
	// apply: odd while a topic of that name exists (era 2k-1 is the k-th
	// one), even after its delete. idEra maps a topic's storage name
	// ("name/<id>") to its era.
	eras  map[string]int
	idEra map[string]int
	knows map[string][]know // process + "\x00" + topic -> the eras it saw, in time order
}

func (o *observations) add(list *[]event, e event) {
	o.mu.Lock()
	*list = append(*list, e)
	o.mu.Unlock()
}

func (o *observations) kill(proc string, at int64) {
	o.mu.Lock()
	o.kills[proc] = at
	o.mu.Unlock()
}

// fetchStream is an in-memory stratapb.Strata_FetchServer: it keeps what
// the broker sends.
type fetchStream struct {
	grpc.ServerStream // nil: only the methods below are used
	ctx               context.Context
	out               []*stratapb.FetchResponse
}

var _ stratapb.Strata_FetchServer = (*fetchStream)(nil)

func (s *fetchStream) Context() context.Context { return s.ctx }

func (s *fetchStream) Send(r *stratapb.FetchResponse) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	s.out = append(s.out, r)
	return nil
}

// SendMsg takes what the broker sends through the generic stream: a
// FetchResponse, possibly wrapped (it must then still be one, through
// its ProtoReflect). It keeps a copy: the broker may reuse the original.
func (s *fetchStream) SendMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("sim: fetch stream: the broker sent a %T, not a protobuf message", m)
	}
	r, ok := proto.Clone(pm.ProtoReflect().Interface()).(*stratapb.FetchResponse)
	if !ok {
		return fmt.Errorf("sim: fetch stream: the broker sent a %T, not a FetchResponse", m)
	}
	return s.Send(r)
}

func (s *fetchStream) SetHeader(metadata.MD) error  { return nil }
func (s *fetchStream) SendHeader(metadata.MD) error { return nil }
func (s *fetchStream) SetTrailer(metadata.MD)       {}

// WarmUp creates the segment package's shared zstd encoder and decoder,
// which are made lazily on first use and hold channels: made inside one
// synctest bubble, they would belong to it and break every other bubble
// ("receive on synctest channel from outside bubble"). Call it once,
// outside any bubble, before the first Run.
func WarmUp() error {
	var buf bytes.Buffer
	w := segment.NewWriter(&buf, segment.WriterOptions{Codec: segment.CodecZstd})
	if err := w.Append(&segment.Batch{ProducerID: segment.NoProducer, Records: []segment.Record{{Value: []byte("warm up")}}}); err != nil {
		return err
	}
	if _, err := w.Finish(); err != nil {
		return err
	}
	data := buf.Bytes()
	r, err := segment.Open(context.Background(), bytesRange(data), int64(len(data)))
	if err != nil {
		return err
	}
	_, err = r.ReadBlock(context.Background(), 0)
	return err
}

type bytesRange []byte

func (b bytesRange) ReadRange(_ context.Context, off, n int64) ([]byte, error) {
	return b[off:min(off+n, int64(len(b)))], nil
}
