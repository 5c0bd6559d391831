package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrReject, wrapped in a Run handler's error, makes Run reject the
// message (to the dead-letter topic now, the error's text as reason)
// instead of nacking it: return fmt.Errorf("bad payload: %w",
// client.ErrReject).
var ErrReject = errors.New("client: reject")

// NackError, returned by a Run handler (NackAfter makes one), makes Run
// nack the message to come back after Delay instead of after the group's
// backoff.
type NackError struct {
	Delay time.Duration // 0 to 366 days; 0: the group's backoff
	Err   error         // the reason
}

func (e *NackError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("nack, again after %v", e.Delay)
	}
	return e.Err.Error()
}

func (e *NackError) Unwrap() error { return e.Err }

// NackAfter returns an error that makes Run nack the message with err's
// text as reason, to be delivered again after delay.
func NackAfter(delay time.Duration, err error) error { return &NackError{Delay: delay, Err: err} }

// RunOption configures ShareConsumer.Run.
type RunOption func(*runConfig)

type runConfig struct {
	workers  int
	prefetch int
	onError  func(Message, error)
	settled  func(Message, string, error)
}

// WithWorkers sets how many handlers run at once. Default 1.
func WithWorkers(n int) RunOption { return func(c *runConfig) { c.workers = max(n, 1) } }

// WithPrefetch sets how many received messages Run may hold, leased,
// waiting for a worker, on top of the ones the workers handle (0 to
// 1000; default 100): Run receives the next ones while the workers are
// busy, so a worker that finishes finds its next message at once instead
// of waiting for a receive's round trip (with durable leases, a WAL
// cycle: docs/queues.md). Run holds fewer when its handlers are slow: no
// more than the workers get through in half a lease (workers × half the
// visibility ÷ the handlers' pace: their mean time, or the time the
// longest running one has taken so far), and a message that waited half
// its lease for a worker is released (no delivery counted) rather than
// left to run out, which would count a delivery against the record's
// max deliveries. 0 receives only for idle workers (no message waits
// leased in a buffer): for handlers so slow that several consumers
// should share the backlog message by message.
func WithPrefetch(n int) RunOption {
	return func(c *runConfig) { c.prefetch = min(max(n, 0), maxReceiveRecords) }
}

// WithRunErrors sets a function Run calls when it could not extend or
// settle a message: the message's lease runs out and the record is
// delivered again (the delivery counted). Default: none; Run goes on
// either way. It is called from Run's goroutines, possibly at once for
// several messages.
func WithRunErrors(fn func(m Message, err error)) RunOption {
	return func(c *runConfig) { c.onError = fn }
}

// WithSettled sets a function Run calls once each message's settle call
// returned, with the settlement ("ack", "nack", "release" or "reject";
// a release also for messages received ahead that no handler took) and
// its outcome: err nil means the broker stored it (an ack is then never
// undone, docs/queues.md); else as WithRunErrors. It is called from
// Run's goroutines, possibly at once for several messages.
func WithSettled(fn func(m Message, settlement string, err error)) RunOption {
	return func(c *runConfig) { c.settled = fn }
}

const (
	// defaultVisibility is the broker's default visibility timeout, for a
	// group whose settings leave it 0.
	defaultVisibility = 30 * time.Second
	// settleTimeout bounds settling one message after its handler.
	settleTimeout = 30 * time.Second
	// runBackoff and maxRunBackoff space Run's receives after a
	// transient failure (full jitter).
	runBackoff    = 100 * time.Millisecond
	maxRunBackoff = 5 * time.Second
)

// Run receives and handles messages until ctx ends, with the number of
// workers WithWorkers sets (each handles one message at a time) and up
// to WithPrefetch more received ahead for them. While a handler runs, Run
// extends its message's lease every half visibility (the consumer's
// WithVisibility, else the group's), so a handler may take longer than
// the visibility timeout; when the lease is lost anyway (an extension
// refused, or none possible before the lease ended), the handler's
// context is canceled: the record may be delivered to someone else by
// then. Once the handler returns:
//   - nil: the message is acked;
//   - an error wrapping ErrReject: rejected (to the dead-letter topic),
//     with the error's text as reason;
//   - a *NackError (NackAfter): nacked with its delay;
//   - any other error: nacked (back after the group's backoff, the
//     delivery counted), with the error's text as reason (cut to
//     MaxReasonBytes);
//   - any error after ctx ended (Run is stopping): released, without
//     penalty.
//
// Settling does not hold the worker: it takes its next message at once,
// and Run settles in the background, many messages per call (what waits
// while a call is in flight goes in the next one), so a broker stores the
// settlements of many handlers in one WAL object. Messages received
// ahead that no worker took when ctx ends, or within half their lease,
// are released. With several receives in flight (a window above the
// consumer's WithMaxRecords) messages may reach the workers in another
// order than the broker handed them out.
//
// Run returns when ctx ends, after every handler has returned and every
// message was settled (or its settle failed: WithRunErrors), with ctx's
// error; or earlier, after the same drain, with the error of a receive
// that cannot succeed by retrying (the topic or the group does not
// exist, an invalid option). Transient receive errors are retried with
// backoff.
func (k *ShareConsumer) Run(ctx context.Context, handler func(context.Context, Message) error, opts ...RunOption) error {
	cfg := runConfig{workers: 1, prefetch: defaultPrefetch}
	for _, o := range opts {
		o(&cfg)
	}
	vis, err := k.runVisibility(ctx)
	if err != nil {
		return err
	}
	win := newRunWindow(cfg.workers, cfg.prefetch, vis)
	st := k.startSettler(ctx, &cfg, cfg.workers+cfg.prefetch)
	var wg sync.WaitGroup
	for i := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, ok := win.pop(i)
				if !ok {
					return
				}
				switch {
				case ctx.Err() != nil:
					// Received ahead, and Run is stopping: give it back.
					st.submit(settleOp{kind: settleRelease, m: m})
					win.done(i, false)
				case !time.Now().Before(m.arrived.Add(vis - vis/8)):
					// Its lease has run out, or nearly, while it waited
					// for a worker (the reaper did not give it back in
					// time): do not work on it; give it back (no
					// delivery counted while the lease holds; a
					// release the broker refuses is reported).
					st.submit(settleOp{kind: settleRelease, m: m})
					win.done(i, false)
				default:
					k.handle(ctx, m, vis, handler, st)
					win.done(i, true)
				}
			}
		}()
	}
	// The reaper gives back what waited half its lease for a worker, so a
	// prefetch never lets a lease run out unhandled (that would count a
	// delivery against the record's max deliveries).
	reaperDone, stopReaper := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(reaperDone)
		t := time.NewTicker(max(vis/8, 50*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stopReaper:
				return
			case <-t.C:
			}
			for _, m := range win.reap(time.Now().Add(-vis / 2)) { // by arrival: a long poll's wait is not lease time
				st.submit(settleOp{kind: settleRelease, m: m})
			}
		}
	}()
	// Receives: enough at once to fill the window (each asks for at most
	// the consumer's max records), at most maxRunReceives.
	rctx, stopReceiving := context.WithCancel(ctx)
	loops := min(maxRunReceives, (cfg.workers+cfg.prefetch+k.cfg.maxRecords-1)/k.cfg.maxRecords)
	errs := make(chan error, loops)
	var receivers sync.WaitGroup
	for range loops {
		receivers.Go(func() {
			if err := k.receiveLoop(rctx, win, vis); err != nil {
				errs <- err
				stopReceiving() // the others too
			}
		})
	}
	receivers.Wait()
	stopReceiving()
	close(errs)
	runErr := <-errs
	win.close() // the workers take what is left, then end
	wg.Wait()
	close(stopReaper)
	<-reaperDone
	st.close()
	if runErr != nil {
		return runErr
	}
	return ctx.Err()
}

// receiveLoop receives into the window while it has room, until ctx
// ends (nil) or a receive fails in a way retrying cannot mend (its
// error). Transient failures are retried with backoff.
func (k *ShareConsumer) receiveLoop(ctx context.Context, win *runWindow, vis time.Duration) error {
	for failures, empties := 0, 0; ; {
		n := win.take(ctx, k.cfg.maxRecords)
		if n == 0 {
			return nil // ctx ended
		}
		msgs, err := k.receive(ctx, n, vis)
		if ctx.Err() != nil && len(msgs) > 0 {
			k.giveBack(ctx, msgs, 0, nil) // released: Run is stopping
			msgs = nil
		}
		win.push(msgs, n)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && len(msgs) == 0 && k.cfg.wait < time.Second:
			// Nothing, and receives hardly wait: do not spin.
			if k.c.sleep(ctx, jitter(backoff(runBackoff, empties, time.Second))) {
				empties++
			}
		case err == nil:
			failures, empties = 0, 0
		case !transient(err):
			return err
		default:
			if k.c.sleep(ctx, jitter(backoff(runBackoff, failures, maxRunBackoff))) {
				failures++
			}
		}
	}
}

// maxRunReceives bounds a Run's receives in flight at once.
const maxRunReceives = 4

// defaultPrefetch is WithPrefetch's default.
const defaultPrefetch = 100

// runWindow holds a Run's messages between receive and worker, and
// bounds them: the workers' plus up to prefetch received ahead, fewer
// when the handlers are slow, so that a message received ahead waits at
// most about half its lease for a worker (workers × vis/2 ÷ the
// handlers' pace: their mean time, or the time the longest running one
// has taken so far, whichever is longer).
type runWindow struct {
	workers, prefetch int
	vis               time.Duration

	mu      sync.Mutex
	ready   sync.Cond     // on mu: queue grew, or closed
	queue   []Message     // received, no worker has taken them; oldest first
	held    int           // taken for receives, queued or being handled
	mean    time.Duration // handler time, exponentially weighted; 0: none yet
	running []time.Time   // per worker: when its handler began; zero when idle
	closed  bool          // no more pushes: pop ends once queue is empty
	freed   chan struct{} // a token when held fell
}

func newRunWindow(workers, prefetch int, vis time.Duration) *runWindow {
	w := &runWindow{workers: workers, prefetch: prefetch, vis: vis, running: make([]time.Time, workers), freed: make(chan struct{}, 1)}
	w.ready.L = &w.mu
	return w
}

// limit is how many messages may be held now. Caller holds mu.
func (w *runWindow) limit() int {
	pace := w.mean
	now := time.Now()
	for _, began := range w.running {
		if !began.IsZero() {
			pace = max(pace, now.Sub(began))
		}
	}
	ahead := w.prefetch
	if pace > 0 {
		ahead = min(ahead, int(int64(w.workers)*int64(w.vis/2)/int64(pace)))
	}
	return w.workers + ahead
}

// take waits until there is room and takes it, up to most, for a
// receive; 0 when ctx ended first.
func (w *runWindow) take(ctx context.Context, most int) int {
	for {
		w.mu.Lock()
		n := min(w.limit()-w.held, most)
		if n > 0 {
			w.held += n
			w.mu.Unlock()
			return n
		}
		w.mu.Unlock()
		select {
		case <-w.freed:
		case <-ctx.Done():
			return 0
		}
	}
}

// push queues what a receive that took n brought, and gives back the
// room it did not fill.
func (w *runWindow) push(msgs []Message, n int) {
	w.mu.Lock()
	w.queue = append(w.queue, msgs...)
	w.mu.Unlock()
	w.ready.Broadcast()
	w.release(n - len(msgs))
}

// pop waits for a message for worker i; false once closed and empty.
func (w *runWindow) pop(i int) (Message, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && !w.closed {
		w.ready.Wait()
	}
	if len(w.queue) == 0 {
		return Message{}, false
	}
	m := w.queue[0]
	w.queue[0] = Message{}
	w.queue = w.queue[1:]
	w.running[i] = time.Now()
	return m, true
}

// done ends worker i's message and returns its room; handled counts the
// handler's time.
func (w *runWindow) done(i int, handled bool) {
	w.mu.Lock()
	if took := time.Since(w.running[i]); handled {
		if w.mean == 0 {
			w.mean = took
		} else {
			w.mean += (took - w.mean) / 8
		}
	}
	w.running[i] = time.Time{}
	w.mu.Unlock()
	w.release(1)
}

// reap takes out the queued messages that arrived before before, to be
// given back.
func (w *runWindow) reap(before time.Time) []Message {
	w.mu.Lock()
	var out []Message
	kept := w.queue[:0]
	for _, m := range w.queue {
		if m.arrived.Before(before) {
			out = append(out, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(w.queue[len(kept):])
	w.queue = kept
	w.mu.Unlock()
	w.release(len(out))
	return out
}

// close ends pushing: the workers take what is queued, then pop ends.
func (w *runWindow) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.ready.Broadcast()
}

func (w *runWindow) release(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.held -= n
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// transient reports whether a receive that failed with err may succeed
// when tried again.
func transient(err error) bool {
	if _, moved := NotOwner(err); moved {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	case codes.ResourceExhausted:
		return !tooLarge(err) // an answer over the receive limit stays over it
	}
	return false
}

// runVisibility is the lease Run asks for: the consumer's, else the
// group's. It fails when the group does not exist.
func (k *ShareConsumer) runVisibility(ctx context.Context) (time.Duration, error) {
	if k.cfg.visibility > 0 {
		return k.cfg.visibility, nil
	}
	groups, err := k.c.ListShareGroups(ctx, k.topic)
	if err != nil {
		return 0, fmt.Errorf("client: run share group %s of %s: look up its visibility timeout: %w", k.group, k.topic, err)
	}
	for _, g := range groups {
		if g.Group == k.group {
			if g.Visibility > 0 {
				return g.Visibility, nil
			}
			return defaultVisibility, nil
		}
	}
	return 0, status.Errorf(codes.NotFound, "client: run share group %s of %s: no such share group: create it first (CreateShareGroup)", k.group, k.topic)
}

// handle runs handler on m, extending m's lease meanwhile, and hands m's
// settlement, by the handler's outcome, to the settler.
func (k *ShareConsumer) handle(ctx context.Context, m Message, vis time.Duration, handler func(context.Context, Message) error, st *settler) {
	hctx, cancelHandler := context.WithCancel(ctx)
	defer cancelHandler()
	stop := make(chan struct{})
	extended := make(chan error, 1) // nil: the lease is held till the end
	go func() { extended <- k.keepLease(m, vis, stop, cancelHandler) }()
	err := handler(hctx, m)
	close(stop)
	lost := <-extended
	// Settle even when the lease seems lost: it ran out by this client's
	// conservative reckoning, and the broker may still hold it.
	op := settleOp{m: m, lost: lost}
	var nack *NackError
	switch {
	case err == nil:
		op.kind = settleAck
	case ctx.Err() != nil || lost != nil:
		// Run is stopping, or the handler's context was canceled because
		// the lease was lost: no fault of the record's.
		op.kind = settleRelease
	case errors.Is(err, ErrReject):
		op.kind, op.reason = settleReject, err.Error()
	case errors.As(err, &nack):
		op.kind, op.delay, op.reason = settleNack, nack.Delay, err.Error()
	default:
		op.kind, op.reason = settleNack, err.Error()
	}
	st.submit(op)
}

// settleOp is one message's settlement, for the settler.
type settleOp struct {
	kind   settleKind
	delay  time.Duration
	reason string
	m      Message
	lost   error // why the lease was lost, if it was
}

// settleCalls bounds the batches a Run's settler has in flight at once,
// and settleGroupCalls the calls of one batch (one per kind, delay and
// reason) in flight at once.
const (
	settleCalls      = 2
	settleGroupCalls = 32
)

// settler settles Run's messages in the background, coalescing: while
// settleCalls calls are in flight, what is submitted waits, and goes in
// the next call (one per kind, delay and reason; settleAll routes each
// receipt to its partition's owner).
type settler struct {
	k    *ShareConsumer
	ctx  context.Context // Run's without its cancelation: settling outlives its end
	cfg  *runConfig
	ops  chan settleOp
	done chan struct{}
}

func (k *ShareConsumer) startSettler(ctx context.Context, cfg *runConfig, queue int) *settler {
	st := &settler{k: k, ctx: context.WithoutCancel(ctx), cfg: cfg, ops: make(chan settleOp, queue), done: make(chan struct{})}
	go st.run()
	return st
}

// submit queues op; it waits while the queue is full (the settle calls
// in flight hold the workers back).
func (st *settler) submit(op settleOp) { st.ops <- op }

// close waits until everything submitted is settled. Nothing may be
// submitted after.
func (st *settler) close() {
	close(st.ops)
	<-st.done
}

func (st *settler) run() {
	defer close(st.done)
	slots := make(chan struct{}, settleCalls)
	var calls sync.WaitGroup
	defer calls.Wait()
	for op := range st.ops {
		slots <- struct{}{} // wait for a free call: meanwhile more queue up
		batch := []settleOp{op}
	more:
		for len(batch) < maxSettleReceipts {
			select {
			case op, ok := <-st.ops:
				if !ok {
					break more
				}
				batch = append(batch, op)
			default:
				break more
			}
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			defer func() { <-slots }()
			st.settle(batch)
		}()
	}
}

// settle settles batch, one settleAll per kind, delay and reason, those
// calls at once (nacks with distinct reasons are a call each: in turn they
// would queue the batch's acks past their leases), and reports each
// message's outcome.
func (st *settler) settle(batch []settleOp) {
	type group struct {
		kind   settleKind
		delay  time.Duration
		reason string
	}
	var order []group
	byGroup := map[group][]settleOp{}
	for _, op := range batch {
		g := group{op.kind, op.delay, op.reason}
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], op)
	}
	sem := make(chan struct{}, settleGroupCalls)
	var wg sync.WaitGroup
	for _, g := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ops := byGroup[g]
			receipts := make([]string, len(ops))
			for i, op := range ops {
				receipts[i] = op.m.Receipt
			}
			ctx, cancel := context.WithTimeout(st.ctx, settleTimeout)
			res, err := st.k.settleAll(ctx, g.kind, g.delay, g.reason, receipts)
			cancel()
			for i, op := range ops {
				var rerr error
				switch {
				case i < len(res) && res[i].err != nil:
					rerr = &SettleError{Op: settleNames[g.kind], Topic: st.k.topic, Group: st.k.group, Receipts: 1, Failed: []*ReceiptError{res[i].err}}
				case i >= len(res) && err != nil:
					rerr = err
				}
				if rerr != nil && st.cfg.onError != nil {
					st.cfg.onError(op.m, errors.Join(op.lost, rerr))
				}
				if st.cfg.settled != nil {
					st.cfg.settled(op.m, settleNames[g.kind], rerr)
				}
			}
		})
	}
	wg.Wait()
}

// keepLease extends m's lease by vis every vis/2 (this client's clock,
// from when the lease was asked for: skew-free) until stop is closed. It
// returns nil when the lease was held throughout; when it was lost (an
// extension refused, or none succeeded before the lease ran out) it
// cancels the handler and returns why.
func (k *ShareConsumer) keepLease(m Message, vis time.Duration, stop <-chan struct{}, cancelHandler func()) error {
	ends := m.received.Add(vis) // the lease ends no later than this
	next := m.received.Add(vis / 2)
	retry := min(max(vis/10, 100*time.Millisecond), time.Second)
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		ctx, cancel := context.WithDeadline(context.Background(), ends)
		go func() { // the extension ends when the handler does
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		sent := time.Now()
		_, err := k.Extend(ctx, vis, m.Receipt)
		cancel()
		var se *SettleError
		switch {
		case err == nil:
			ends, next = sent.Add(vis), sent.Add(vis/2)
		case isStopped(stop):
			return nil
		case errors.As(err, &se) && len(se.Failed) > 0 && !transientCode(se.Failed[0].Code):
			cancelHandler()
			return fmt.Errorf("client: share group %s of %s: the lease of %s/%d@%d was lost, the handler's context is canceled and the record may be delivered again: %w", k.group, k.topic, k.topic, m.Partition, m.Offset, err)
		case !time.Now().Add(retry).Before(ends):
			cancelHandler()
			return fmt.Errorf("client: share group %s of %s: the lease of %s/%d@%d ran out before it could be extended (the handler's context is canceled; the record may be delivered again): %w", k.group, k.topic, k.topic, m.Partition, m.Offset, err)
		default:
			next = time.Now().Add(retry)
		}
		t.Reset(time.Until(next))
	}
}

func isStopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// transientCode reports whether a receipt that failed with code may
// settle when tried again.
func transientCode(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled:
		return true
	}
	return false
}
