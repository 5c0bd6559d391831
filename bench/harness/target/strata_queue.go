package target

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

var _ Queuer = (*Strata)(nil)

// strataShareGroup is the share group every strata queue gets.
const strataShareGroup = "workers"

// QueueKinds: one share group, whatever the target's produce ack mode
// (the queue's producer always uses ACKS_DURABLE, so strata-local and
// strata-none measure the same queue: strata-share).
func (s *Strata) QueueKinds() []QueueKind {
	name := "strata-share"
	if s.cfg.FlushInterval != "" {
		name += "-" + s.cfg.FlushInterval
	}
	flush := "50ms"
	if s.cfg.FlushInterval != "" {
		flush = s.cfg.FlushInterval
	}
	store := "the embedded file:// store"
	if s.cfg.MinIO != nil {
		store = "MinIO"
	}
	return []QueueKind{{Name: name, Target: s.Name(), Comparable: true, AckConfirmed: true, Prefetch: true,
		Durability: "share group; produced with ACKS_DURABLE; every receive's leases and every ack are events in the group-committed WAL object (" +
			store + ", --wal-flush-interval " + flush + ") before the call returns"}}
}

// CreateQueue creates a topic of partitions partitions and a share
// group on it that starts at its first record.
func (s *Strata) CreateQueue(ctx context.Context, kind, name string, partitions, workers, batch int) (Queue, error) {
	if err := s.c.CreateTopic(ctx, name, int32(max(partitions, 1))); err != nil {
		return nil, err
	}
	if _, err := s.c.CreateShareGroup(ctx, client.ShareGroupConfig{Topic: name, Group: strataShareGroup, StartFromEarliest: true}); err != nil {
		return nil, fmt.Errorf("create share group: %w", err)
	}
	return &strataQueue{s: s, topic: name}, nil
}

type strataQueue struct {
	s     *Strata
	topic string
}

func (q *strataQueue) NewProducer(ctx context.Context, o ProducerOptions) (Producer, error) {
	opts := []client.ProducerOption{client.WithAcks(stratapb.Acks_ACKS_DURABLE),
		client.WithBatchSize(o.Batch), client.WithMaxInFlight(o.InFlight), client.WithLinger(o.Linger)}
	if q.s.cfg.NoIdempotence {
		opts = append(opts, client.WithIdempotence(false))
	}
	return &strataProducer{p: q.s.c.NewProducer(q.topic, opts...), q: newAckQueue(o.Batch*o.InFlight*2 + 1024)}, nil
}

// NewWorker dials its own connection: one ShareConsumer, receives of up
// to Batch records long-polling up to Wait, one receive kept ahead of the
// caller (the Go client's Run does the same with WithPrefetch; a window
// of one batch per worker, as the peers' prefetch): while the workload
// acks a batch, the next one is being leased.
func (q *strataQueue) NewWorker(ctx context.Context, o WorkerOptions) (Worker, error) {
	c, err := client.Dial(q.s.addr, client.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20))))
	if err != nil {
		return nil, err
	}
	k := c.NewShareConsumer(q.topic, strataShareGroup, client.WithMaxRecords(o.Batch), client.WithWait(o.Wait),
		client.WithReceiveMaxBytes(32<<20))
	wctx, cancel := context.WithCancel(context.Background())
	w := &strataWorker{c: c, k: k, cancel: cancel, ahead: make(chan received), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for wctx.Err() == nil {
			ms, err := k.Receive(wctx, o.Batch)
			select {
			case w.ahead <- received{ms, err}:
			case <-wctx.Done():
				w.release(ms)
				return
			}
		}
	}()
	return w, nil
}

// Unacked is, summed over the partitions, the records below the high
// watermark that the group has not settled (its floor: every record below
// is settled).
func (q *strataQueue) Unacked(ctx context.Context) (int64, error) {
	d, err := q.s.c.DescribeShareGroup(ctx, q.topic, strataShareGroup)
	if err != nil {
		return 0, err
	}
	t, err := q.s.c.API().DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: q.topic})
	if err != nil {
		return 0, err
	}
	floor := map[int32]int64{}
	for _, p := range d.Partitions {
		floor[p.Partition] = p.Floor
	}
	var n int64
	for _, p := range t.Partitions {
		n += max(p.HighWatermark-floor[p.Partition], 0)
	}
	return n, nil
}

type strataWorker struct {
	c      *client.Client
	k      *client.ShareConsumer
	cancel context.CancelFunc
	ahead  chan received // the receive kept ahead of the caller (unbuffered: one batch held)
	done   chan struct{} // the receiving goroutine ended
}

type received struct {
	ms  []client.Message
	err error
}

func (w *strataWorker) Receive(ctx context.Context) ([]QueueMsg, error) {
	var r received
	select {
	case r = <-w.ahead:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err // the workload pauses and asks again; the next receive is under way
	}
	out := make([]QueueMsg, len(r.ms))
	for i, m := range r.ms {
		out[i] = QueueMsg{Value: m.Value, ref: m.Receipt}
	}
	return out, nil
}

// Ack settles every receipt in one call per owning broker (one here).
func (w *strataWorker) Ack(ctx context.Context, msgs []QueueMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	rs := make([]string, len(msgs))
	for i, m := range msgs {
		rs[i] = m.ref.(string)
	}
	return w.k.Ack(ctx, rs...)
}

// release gives back messages received ahead and never handed out.
func (w *strataWorker) release(ms []client.Message) {
	if len(ms) == 0 {
		return
	}
	rs := make([]string, len(ms))
	for i, m := range ms {
		rs[i] = m.Receipt
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.k.Release(ctx, rs...)
}

// Close stops the receive kept ahead, releases what it got, and closes
// the connection.
func (w *strataWorker) Close() error {
	w.cancel()
	<-w.done // it released what it held
	return w.c.Close()
}
