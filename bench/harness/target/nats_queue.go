package target

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var _ Queuer = (*NATS)(nil)

// natsQueueConsumer is the durable pull consumer every worker shares.
const natsQueueConsumer = "workers"

func (n *NATS) QueueKinds() []QueueKind {
	d := "work-queue stream (WorkQueuePolicy), file storage, R1, default sync (fsync every 2 min); a publish is acked after the write to the block file; DoubleAck returns once the server removed the message"
	if n.cfg.Sync == "always" {
		d = "work-queue stream (WorkQueuePolicy), file storage, R1, sync_interval: always: a publish is acked after its write is fsynced; an ack removes the message and writes a tombstone, fsynced, before DoubleAck's reply"
	}
	return []QueueKind{{Name: n.Name(), Target: n.Name(), Durability: d, Comparable: n.cfg.Sync == "always", AckConfirmed: true, Prefetch: true}}
}

// CreateQueue creates a work-queue stream (subject <name>.0) and one
// durable pull consumer with explicit acks, a 30 s ack wait (strata's
// default visibility) and room for every worker's window of unacked
// messages.
func (n *NATS) CreateQueue(ctx context.Context, kind, name string, partitions, workers, batch int) (Queue, error) {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject(name, 0)},
		Storage: jetstream.FileStorage, Replicas: 1, Retention: jetstream.WorkQueuePolicy}); err != nil {
		return nil, fmt.Errorf("create work-queue stream: %w", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: natsQueueConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: max(4*workers*batch, 1000)}); err != nil {
		return nil, fmt.Errorf("create pull consumer: %w", err)
	}
	return &natsQueue{n: n, js: js, name: name}, nil
}

type natsQueue struct {
	n    *NATS
	js   jetstream.JetStream
	name string
}

// NewProducer publishes asynchronously, as the stream workloads' producer.
func (q *natsQueue) NewProducer(ctx context.Context, o ProducerOptions) (Producer, error) {
	return q.n.NewProducer(ctx, q.name, 1, o)
}

// NewWorker pulls on its own connection with a window of Batch messages
// (the client asks for more as it hands them out), so up to one batch
// waits in the client ahead of each Receive.
func (q *natsQueue) NewWorker(ctx context.Context, o WorkerOptions) (Worker, error) {
	nc, err := nats.Connect(q.n.nc.ConnectedUrl(), nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var c jetstream.Consumer
		if c, err = js.Consumer(ctx, q.name, natsQueueConsumer); err == nil {
			var it jetstream.MessagesContext
			if it, err = c.Messages(jetstream.PullMaxMessages(max(o.Batch, 2))); err == nil {
				w := &natsWorker{nc: nc, it: it, ch: make(chan jetstream.Msg, o.Batch), batch: o.Batch, wait: o.Wait}
				go w.pump()
				return w, nil
			}
		}
	}
	nc.Close()
	return nil, err
}

func (q *natsQueue) Unacked(ctx context.Context) (int64, error) {
	s, err := q.js.Stream(ctx, q.name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int64(info.State.Msgs), nil
}

type natsWorker struct {
	nc    *nats.Conn
	it    jetstream.MessagesContext
	ch    chan jetstream.Msg
	batch int
	wait  time.Duration
	err   atomic.Value
}

func (w *natsWorker) pump() {
	defer close(w.ch)
	for {
		m, err := w.it.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				w.err.Store(err)
			}
			return
		}
		w.ch <- m // Close stops the iterator first; the buffer holds its window
	}
}

func (w *natsWorker) Receive(ctx context.Context) ([]QueueMsg, error) {
	t := time.NewTimer(w.wait)
	defer t.Stop()
	var out []QueueMsg
	select {
	case m, ok := <-w.ch:
		if !ok {
			if e, ok := w.err.Load().(error); ok {
				return nil, e
			}
			return nil, errors.New("nats: pull consumer ended")
		}
		out = append(out, QueueMsg{Value: m.Data(), ref: m})
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < w.batch {
		select {
		case m, ok := <-w.ch:
			if !ok {
				return out, nil
			}
			out = append(out, QueueMsg{Value: m.Data(), ref: m})
		default:
			return out, nil
		}
	}
	return out, nil
}

// Ack sends a plain ack for every message but the last and a DoubleAck
// (ack with a reply) for the last: the server applies a connection's acks
// in order, so its reply means every ack of the batch was applied. One
// round trip per batch.
func (w *natsWorker) Ack(ctx context.Context, msgs []QueueMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs[:len(msgs)-1] {
		if err := m.ref.(jetstream.Msg).Ack(); err != nil {
			return err
		}
	}
	return msgs[len(msgs)-1].ref.(jetstream.Msg).DoubleAck(ctx)
}

func (w *natsWorker) Close() error {
	w.it.Stop()
	go func() {
		for range w.ch { // unblock pump; what is left is redelivered after AckWait
		}
	}()
	w.nc.Close()
	return nil
}
