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
	workers int
	onError func(Message, error)
}

// WithWorkers sets how many handlers run at once. Default 1.
func WithWorkers(n int) RunOption { return func(c *runConfig) { c.workers = max(n, 1) } }

// WithRunErrors sets a function Run calls (from the message's worker)
// when it could not extend or settle a message: the message's lease runs
// out and the record is delivered again (the delivery counted). Default:
// none; Run goes on either way.
func WithRunErrors(fn func(m Message, err error)) RunOption {
	return func(c *runConfig) { c.onError = fn }
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
// workers WithWorkers sets (each handles one message at a time; Run asks
// only for as many messages as workers are idle, so no message waits
// leased in a buffer). While a handler runs, Run extends its message's
// lease every half visibility (the consumer's WithVisibility, else the
// group's), so a handler may take longer than the visibility timeout;
// when the lease is lost anyway (an extension refused, or none possible
// before the lease ended), the handler's context is canceled: the record
// may be delivered to someone else by then. Once the handler returns:
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
// Run returns when ctx ends, after every handler has returned and its
// message was settled, with ctx's error; or earlier, after the same
// drain, with the error of a receive that cannot succeed by retrying
// (the topic or the group does not exist, an invalid option). Transient
// receive errors are retried with backoff.
func (k *ShareConsumer) Run(ctx context.Context, handler func(context.Context, Message) error, opts ...RunOption) error {
	cfg := runConfig{workers: 1}
	for _, o := range opts {
		o(&cfg)
	}
	vis, err := k.runVisibility(ctx)
	if err != nil {
		return err
	}
	idle := make(chan struct{}, cfg.workers) // a token per idle worker
	for range cfg.workers {
		idle <- struct{}{}
	}
	work := make(chan Message)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				k.handle(ctx, m, vis, handler, &cfg)
				idle <- struct{}{}
			}
		}()
	}
	var runErr error
	for failures, empties := 0, 0; ctx.Err() == nil; {
		// Take every idle worker's token: at least one.
		n := 0
		select {
		case <-idle:
			n++
		case <-ctx.Done():
		}
		if n == 0 {
			break
		}
	more:
		for n < cfg.workers {
			select {
			case <-idle:
				n++
			default:
				break more
			}
		}
		msgs, err := k.receive(ctx, min(n, k.cfg.maxRecords), vis)
		if ctx.Err() != nil && len(msgs) > 0 {
			k.giveBack(ctx, msgs, 0, nil) // released: Run is stopping
			msgs = nil
		}
		for _, m := range msgs {
			work <- m // an idle worker takes it: its token was taken
		}
		for range n - len(msgs) {
			idle <- struct{}{}
		}
		switch {
		case ctx.Err() != nil:
		case err == nil && len(msgs) == 0 && k.cfg.wait < time.Second:
			// Nothing, and receives hardly wait: do not spin.
			if k.c.sleep(ctx, jitter(backoff(runBackoff, empties, time.Second))) {
				empties++
			}
			continue
		case err == nil:
			failures, empties = 0, 0
			continue
		case !transient(err):
			runErr = err
		default:
			if k.c.sleep(ctx, jitter(backoff(runBackoff, failures, maxRunBackoff))) {
				failures++
				continue
			}
		}
		break
	}
	close(work)
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	return ctx.Err()
}

// transient reports whether a receive that failed with err may succeed
// when tried again.
func transient(err error) bool {
	if _, moved := NotOwner(err); moved {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		return true
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

// handle runs handler on m, extending m's lease meanwhile, and settles m
// by the handler's outcome.
func (k *ShareConsumer) handle(ctx context.Context, m Message, vis time.Duration, handler func(context.Context, Message) error, cfg *runConfig) {
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
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var nack *NackError
	switch {
	case err == nil:
		err = k.Ack(sctx, m.Receipt)
	case ctx.Err() != nil || lost != nil:
		// Run is stopping, or the handler's context was canceled because
		// the lease was lost: no fault of the record's.
		err = k.Release(sctx, m.Receipt)
	case errors.Is(err, ErrReject):
		err = k.Reject(sctx, err.Error(), m.Receipt)
	case errors.As(err, &nack):
		err = k.Nack(sctx, nack.Delay, err.Error(), m.Receipt)
	default:
		err = k.Nack(sctx, 0, err.Error(), m.Receipt)
	}
	if err != nil {
		k.report(cfg, m, errors.Join(lost, err))
	}
}

func (k *ShareConsumer) report(cfg *runConfig, m Message, err error) {
	if cfg.onError != nil {
		cfg.onError(m, err)
	}
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
