package target

import (
	"context"
	"sync"
)

// ackQueue runs callbacks in send order: each entry waits for its own
// completion; one goroutine drains the queue. Bounded by its channel.
type ackQueue struct {
	ch      chan ackEntry
	wg      sync.WaitGroup // outstanding entries
	done    chan struct{}
	closeMu sync.Once
}

type ackEntry struct {
	wait func() error
	cb   func(error)
}

func newAckQueue(depth int) *ackQueue {
	q := &ackQueue{ch: make(chan ackEntry, depth), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for e := range q.ch {
			e.cb(e.wait())
			q.wg.Done()
		}
	}()
	return q
}

func (q *ackQueue) push(ctx context.Context, wait func() error, cb func(error)) error {
	q.wg.Add(1)
	select {
	case q.ch <- ackEntry{wait, cb}:
		return nil
	case <-ctx.Done():
		q.wg.Done()
		return ctx.Err()
	}
}

func (q *ackQueue) flush(ctx context.Context) error {
	return waitGroup(ctx, &q.wg)
}

func (q *ackQueue) close() {
	q.closeMu.Do(func() { close(q.ch) })
	<-q.done
}

// batcher turns single sends into requests of up to batch records, with
// inflight requests outstanding at once: a worker takes the first queued
// record and whatever else is queued (no linger), sends, and runs the
// callbacks. Used for clients without their own async batching.
type batcher struct {
	ch   chan item
	wg   sync.WaitGroup // outstanding items
	work sync.WaitGroup // workers
	once sync.Once
}

type item struct {
	v  []byte
	cb func(error)
}

func newBatcher(batch, inflight int, send func(worker int, vs [][]byte) error) *batcher {
	b := &batcher{ch: make(chan item, batch*inflight)}
	for w := 0; w < inflight; w++ {
		b.work.Add(1)
		go func() {
			defer b.work.Done()
			items := make([]item, 0, batch)
			vs := make([][]byte, 0, batch)
			for first := range b.ch {
				items, vs = append(items[:0], first), append(vs[:0], first.v)
			fill:
				for len(items) < batch {
					select {
					case it, ok := <-b.ch:
						if !ok {
							break fill
						}
						items, vs = append(items, it), append(vs, it.v)
					default:
						break fill
					}
				}
				err := send(w, vs)
				for _, it := range items {
					it.cb(err)
					b.wg.Done()
				}
			}
		}()
	}
	return b
}

func (b *batcher) send(ctx context.Context, v []byte, cb func(error)) error {
	b.wg.Add(1)
	select {
	case b.ch <- item{v, cb}:
		return nil
	case <-ctx.Done():
		b.wg.Done()
		return ctx.Err()
	}
}

func (b *batcher) flush(ctx context.Context) error {
	return waitGroup(ctx, &b.wg)
}

func (b *batcher) close() {
	b.once.Do(func() { close(b.ch) })
	b.work.Wait()
}

// waitGroup waits for wg until ctx ends.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	ok := make(chan struct{})
	go func() { wg.Wait(); close(ok) }()
	select {
	case <-ok:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
