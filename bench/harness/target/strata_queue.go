package target

import (
	"context"
	"fmt"

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
	return []QueueKind{{Name: name, Target: s.Name(), Comparable: true, AckConfirmed: true,
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
// to Batch records long-polling up to Wait.
func (q *strataQueue) NewWorker(ctx context.Context, o WorkerOptions) (Worker, error) {
	c, err := client.Dial(q.s.addr, client.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20))))
	if err != nil {
		return nil, err
	}
	k := c.NewShareConsumer(q.topic, strataShareGroup, client.WithMaxRecords(o.Batch), client.WithWait(o.Wait),
		client.WithReceiveMaxBytes(32<<20))
	return &strataWorker{c: c, k: k, batch: o.Batch}, nil
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
	c     *client.Client
	k     *client.ShareConsumer
	batch int
}

func (w *strataWorker) Receive(ctx context.Context) ([]QueueMsg, error) {
	ms, err := w.k.Receive(ctx, w.batch)
	if err != nil {
		return nil, err
	}
	out := make([]QueueMsg, len(ms))
	for i, m := range ms {
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

func (w *strataWorker) Close() error { return w.c.Close() }
