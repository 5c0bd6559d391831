package target

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

var _ Queuer = (*Rabbit)(nil)

// QueueKinds: a quorum queue (RabbitMQ's replicated, durable queue; one
// member here) and, as a second line, a classic durable queue. Both are
// used over AMQP 0-9-1: persistent messages, publisher confirms, manual
// acks with a prefetch of one batch per worker. basic.ack has no reply in
// AMQP 0-9-1, so an ack call returns once the frame is written.
func (r *Rabbit) QueueKinds() []QueueKind {
	return []QueueKind{
		{Name: "rabbitmq-quorum", Target: r.Name(), Comparable: true, Prefetch: true,
			Durability: "quorum queue, one member; persistent messages confirmed after the Raft log entry is fsynced; consumer acks are Raft commands too, but basic.ack has no reply (the ack call returns once sent)"},
		{Name: "rabbitmq-classic", Target: r.Name(), Prefetch: true,
			Durability: "classic durable queue; persistent messages confirmed once written to the message store (fsynced in batches before the confirm); acks have no reply and are not fsynced one by one"},
	}
}

func rabbitQueueArgs(kind string) (amqp091.Table, error) {
	switch kind {
	case "rabbitmq-quorum":
		return amqp091.Table{"x-queue-type": "quorum"}, nil
	case "rabbitmq-classic":
		return amqp091.Table{"x-queue-type": "classic"}, nil
	}
	return nil, fmt.Errorf("rabbitmq: unknown queue kind %q (rabbitmq-quorum, rabbitmq-classic)", kind)
}

func (r *Rabbit) amqpURL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.amqpPort) }

// CreateQueue declares a durable queue of kind.
func (r *Rabbit) CreateQueue(ctx context.Context, kind, name string, partitions, workers, batch int) (Queue, error) {
	args, err := rabbitQueueArgs(kind)
	if err != nil {
		return nil, err
	}
	conn, err := amqp091.Dial(r.amqpURL())
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDeclare(name, true, false, false, false, args)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("declare %s %q: %w", kind, name, err)
	}
	conn.Close()
	return &rabbitQueue{r: r, name: name, args: args}, nil
}

type rabbitQueue struct {
	r    *Rabbit
	name string
	args amqp091.Table
}

type rabbitQueueProducer struct {
	conn *amqp091.Connection
	chs  []*amqp091.Channel
	b    *batcher
}

// NewProducer: one connection, InFlight channels in confirm mode; each
// request publishes up to Batch persistent messages and waits for every
// confirm.
func (q *rabbitQueue) NewProducer(ctx context.Context, o ProducerOptions) (Producer, error) {
	conn, err := amqp091.Dial(q.r.amqpURL())
	if err != nil {
		return nil, err
	}
	p := &rabbitQueueProducer{conn: conn}
	for i := 0; i < o.InFlight; i++ {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			conn.Close()
			return nil, err
		}
		p.chs = append(p.chs, ch)
	}
	p.b = newBatcher(o.Batch, o.InFlight, func(w int, vs [][]byte) error {
		ch := p.chs[w]
		dcs := make([]*amqp091.DeferredConfirmation, 0, len(vs))
		for _, v := range vs {
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q.name, false, false,
				amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: v})
			if err != nil {
				return err
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			ok, err := dc.WaitContext(context.Background())
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("rabbitmq: publish nacked by the broker")
			}
		}
		return nil
	})
	return p, nil
}

func (p *rabbitQueueProducer) Send(ctx context.Context, v []byte, cb func(error)) error {
	return p.b.send(ctx, v, cb)
}
func (p *rabbitQueueProducer) Flush(ctx context.Context) error { return p.b.flush(ctx) }
func (p *rabbitQueueProducer) Close() error                    { p.b.close(); return p.conn.Close() }

// NewWorker consumes on its own connection and channel with a prefetch of
// Batch unacked deliveries.
func (q *rabbitQueue) NewWorker(ctx context.Context, o WorkerOptions) (Worker, error) {
	conn, err := amqp091.Dial(q.r.amqpURL())
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(o.Batch, 0, false)
	}
	var ds <-chan amqp091.Delivery
	if err == nil {
		ds, err = ch.Consume(q.name, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &rabbitWorker{conn: conn, ch: ch, ds: ds, o: o}, nil
}

// Unacked is the queue's ready count once the workers' channels are
// closed (what they held unacked is requeued by then): read for a second,
// the largest value seen.
func (q *rabbitQueue) Unacked(ctx context.Context) (int64, error) {
	conn, err := amqp091.Dial(q.r.amqpURL())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	var most int64
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		st, err := ch.QueueDeclarePassive(q.name, true, false, false, false, q.args)
		if err != nil {
			return 0, err
		}
		most = max(most, int64(st.Messages))
	}
	return most, nil
}

type rabbitWorker struct {
	conn  *amqp091.Connection
	ch    *amqp091.Channel
	ds    <-chan amqp091.Delivery
	o     WorkerOptions
	acked bool // an ack was sent
}

func (w *rabbitWorker) Receive(ctx context.Context) ([]QueueMsg, error) {
	t := time.NewTimer(w.o.Wait)
	defer t.Stop()
	var out []QueueMsg
	select {
	case d, ok := <-w.ds:
		if !ok {
			return nil, errors.New("rabbitmq: consumer channel closed")
		}
		out = append(out, QueueMsg{Value: d.Body, ref: d})
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < w.o.Batch {
		select {
		case d, ok := <-w.ds:
			if !ok {
				return out, nil
			}
			out = append(out, QueueMsg{Value: d.Body, ref: d})
		default:
			return out, nil
		}
	}
	return out, nil
}

// Ack acks every delivery up to the batch's last (multiple): one frame,
// no reply.
func (w *rabbitWorker) Ack(ctx context.Context, msgs []QueueMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	w.acked = true
	return msgs[len(msgs)-1].ref.(amqp091.Delivery).Ack(true)
}

// rabbitAckGrace is how long Close waits after an ack before it closes
// the channel. basic.ack has no reply, and a channel closed right after
// its last ack races the queue applying it (a quorum queue settles
// through its Raft log; the consumer's end reaches it another way): in a
// full run, 35 of 100,000 records acked just before the close were
// requeued. The wait is after the measured phase.
const rabbitAckGrace = time.Second

func (w *rabbitWorker) Close() error {
	if w.acked {
		time.Sleep(rabbitAckGrace)
	}
	w.ch.Close()
	return w.conn.Close()
}
