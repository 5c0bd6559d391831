package tier

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Request is one finished object-store request, as an ObservedStore
// reports it.
type Request struct {
	Op Op
	// Duration: from the call until it returned; for a get or a ranged
	// get that succeeded, until its body was read to the end (or closed,
	// or failed), since the transfer is part of the request.
	Duration time.Duration
	// Bytes moved: for a put of any kind that succeeded, the object's size;
	// for a get or a ranged get, the body bytes the caller read; 0
	// otherwise (a failed put's bytes may or may not have been sent).
	Bytes int64
	// Err is the request's error (nil on success; for a get, the error
	// reading its body, io.EOF excluded). ErrorClass names its class.
	Err error
}

// RequestObserver learns of every request an ObservedStore made.
//
// ObserveRequest is called synchronously, on the caller's goroutine, from
// many goroutines at once, after the request finished: it must be safe
// for concurrent use, cheap (atomic counters) and must never block, or
// every object-store call waits for it.
type RequestObserver interface {
	ObserveRequest(Request)
}

// ObservedStore wraps a Store and reports each request it makes, with its
// duration, bytes and outcome, to a RequestObserver (metrics). It changes
// nothing else: bodies are passed to the inner store as given (so a
// backend that rewinds a seekable body for a retry still can), and its
// deadlines are the inner store's. Safe for concurrent use.
type ObservedStore struct {
	inner Store
	obs   RequestObserver
}

var (
	_ Store     = (*ObservedStore)(nil)
	_ Deadliner = (*ObservedStore)(nil)
)

// NewObservedStore wraps inner. Closing the ObservedStore closes inner.
func NewObservedStore(inner Store, obs RequestObserver) *ObservedStore {
	return &ObservedStore{inner: inner, obs: obs}
}

// Inner is the wrapped store.
func (o *ObservedStore) Inner() Store { return o.inner }

func (o *ObservedStore) report(op Op, start time.Time, n int64, err error) {
	o.obs.ObserveRequest(Request{Op: op, Duration: time.Since(start), Bytes: n, Err: err})
}

// Get implements BucketReader; the request is reported when its body ends.
func (o *ObservedStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	start := time.Now()
	rc, info, err := o.inner.Get(ctx, key)
	if err != nil {
		o.report(OpGet, start, 0, err)
		return nil, info, err
	}
	return &observedBody{rc: rc, o: o, op: OpGet, start: start}, info, nil
}

// GetRange implements BucketReader; the request is reported when its body
// ends.
func (o *ObservedStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := o.inner.GetRange(ctx, key, off, length)
	if err != nil {
		o.report(OpGetRange, start, 0, err)
		return nil, err
	}
	return &observedBody{rc: rc, o: o, op: OpGetRange, start: start}, nil
}

// Stat implements BucketReader.
func (o *ObservedStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	start := time.Now()
	info, err := o.inner.Stat(ctx, key)
	o.report(OpStat, start, 0, err)
	return info, err
}

// List implements BucketReader. The duration includes the time fn took.
func (o *ObservedStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	start := time.Now()
	err := o.inner.List(ctx, prefix, fn)
	o.report(OpList, start, 0, err)
	return err
}

// putBytes is what a put reports as moved: the object's size on success.
func putBytes(size int64, info ObjectInfo, err error) int64 {
	switch {
	case err != nil:
		return 0
	case size >= 0:
		return size
	}
	return info.Size
}

// Put implements Store.
func (o *ObservedStore) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	start := time.Now()
	info, err := o.inner.Put(ctx, key, r, size)
	o.report(OpPut, start, putBytes(size, info, err), err)
	return info, err
}

// PutIfAbsent implements Store.
func (o *ObservedStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	start := time.Now()
	info, err := o.inner.PutIfAbsent(ctx, key, r, size)
	o.report(OpPutIfAbsent, start, putBytes(size, info, err), err)
	return info, err
}

// PutIfMatch implements Store.
func (o *ObservedStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (ObjectInfo, error) {
	start := time.Now()
	info, err := o.inner.PutIfMatch(ctx, key, etag, r, size)
	o.report(OpPutIfMatch, start, putBytes(size, info, err), err)
	return info, err
}

// Delete implements Store.
func (o *ObservedStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := o.inner.Delete(ctx, key)
	o.report(OpDelete, start, 0, err)
	return err
}

// Close closes the inner store.
func (o *ObservedStore) Close() error { return o.inner.Close() }

// RequestTimeout implements Deadliner: the inner store's deadline.
func (o *ObservedStore) RequestTimeout(size int64) time.Duration {
	return RequestTimeout(o.inner, size)
}

// observedBody counts a get's body bytes and reports the request once:
// at the end of the body, at a read error, or at Close.
type observedBody struct {
	rc    io.ReadCloser
	o     *ObservedStore
	op    Op
	start time.Time

	mu   sync.Mutex // guards n and done (a body is read by one goroutine, but Close may come from another)
	n    int64
	done bool
}

func (b *observedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	b.mu.Unlock()
	if err != nil {
		if errors.Is(err, io.EOF) {
			b.finish(nil)
		} else {
			b.finish(err)
		}
	}
	return n, err
}

func (b *observedBody) Close() error {
	err := b.rc.Close()
	b.finish(nil)
	return err
}

func (b *observedBody) finish(err error) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done = true
	n := b.n
	b.mu.Unlock()
	b.o.report(b.op, b.start, n, err)
}

// ErrorClass names the class of an object-store error, for metrics labels
// (a small fixed set): "ok" for nil, then "not_found",
// "precondition_failed", "fenced", "timeout", "canceled", "invalid" (key,
// range or size), "unavailable" (ErrUnavailable: injected faults,
// outages), "throttled" (429, 503 or a SlowDown code), "server_error" (other 5xx),
// "client_error" (other 4xx), "network" (no answer: refused, reset, DNS)
// and "other".
func ErrorClass(err error) string {
	if err == nil {
		return "ok"
	}
	var se *StatusError
	isStatus := errors.As(err, &se)
	switch {
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrPreconditionFailed):
		return "precondition_failed"
	case errors.Is(err, ErrFenced):
		return "fenced"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrInvalidRange), errors.Is(err, ErrSizeMismatch):
		return "invalid"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case isStatus && (se.Status == 429 || se.Status == 503 || se.Code == "SlowDown" || se.Code == "SlowDownRead" || se.Code == "SlowDownWrite"):
		return "throttled"
	case isStatus && se.Status >= 500:
		return "server_error"
	case isStatus && se.Status >= 400:
		return "client_error"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network"
	}
	return "other"
}
