package target

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

var _ Queuer = (*Redis)(nil)

// redisQueueGroup is the consumer group every worker is a consumer of.
const redisQueueGroup = "workers"

func (r *Redis) QueueKinds() []QueueKind {
	d := "stream + consumer group (XREADGROUP, XACK), AOF appendfsync always: the XADD, the pending-entries change of an XREADGROUP and the XACK are fsynced before the reply; XACK leaves the entry in the stream (no XDEL)"
	if r.cfg.Fsync == "everysec" {
		d = "stream + consumer group (XREADGROUP, XACK), AOF appendfsync everysec: replies before the fsync, up to ~1 s of acked writes and acks lost on power failure; XACK leaves the entry in the stream (no XDEL)"
	}
	return []QueueKind{{Name: r.Name(), Target: r.Name(), Durability: d, Comparable: r.cfg.Fsync == "always", AckConfirmed: true}}
}

// CreateQueue creates the stream key and its consumer group, reading from
// the stream's first entry.
func (r *Redis) CreateQueue(ctx context.Context, kind, name string, partitions, workers, batch int) (Queue, error) {
	key := redisKey(name, 0)
	if err := r.rdb.XGroupCreateMkStream(ctx, key, redisQueueGroup, "0").Err(); err != nil {
		return nil, fmt.Errorf("XGROUP CREATE: %w", err)
	}
	return &redisQueue{r: r, name: name, key: key}, nil
}

type redisQueue struct {
	r       *Redis
	name    string
	key     string
	workers atomic.Int64
}

// NewProducer pipelines XADDs, as the stream workloads' producer.
func (q *redisQueue) NewProducer(ctx context.Context, o ProducerOptions) (Producer, error) {
	return q.r.NewProducer(ctx, q.name, 1, o)
}

// NewWorker is a consumer of the group (its own name and connection).
func (q *redisQueue) NewWorker(ctx context.Context, o WorkerOptions) (Worker, error) {
	return &redisWorker{rdb: redis.NewClient(&redis.Options{Addr: q.r.addr, PoolSize: 2}), key: q.key,
		consumer: "w" + strconv.FormatInt(q.workers.Add(1), 10), o: o}, nil
}

// Unacked: the group's pending entries (delivered, not acked) plus its
// lag (entries not yet delivered).
func (q *redisQueue) Unacked(ctx context.Context) (int64, error) {
	gs, err := q.r.rdb.XInfoGroups(ctx, q.key).Result()
	if err != nil {
		return 0, err
	}
	for _, g := range gs {
		if g.Name == redisQueueGroup {
			if g.Lag < 0 {
				return 0, errors.New("redis: the consumer group's lag is unknown")
			}
			return g.Pending + g.Lag, nil
		}
	}
	return 0, fmt.Errorf("redis: no consumer group %q on %s", redisQueueGroup, q.key)
}

type redisWorker struct {
	rdb      *redis.Client
	key      string
	consumer string
	o        WorkerOptions
}

// Receive is one XREADGROUP of up to Batch new entries, blocking up to
// Wait.
func (w *redisWorker) Receive(ctx context.Context) ([]QueueMsg, error) {
	res, err := w.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: redisQueueGroup, Consumer: w.consumer,
		Streams: []string{w.key, ">"}, Count: int64(w.o.Batch), Block: max(w.o.Wait, 1)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []QueueMsg
	for _, s := range res {
		for _, m := range s.Messages {
			v, _ := m.Values["v"].(string)
			out = append(out, QueueMsg{Value: []byte(v), ref: m.ID})
		}
	}
	return out, nil
}

// Ack is one XACK of every id.
func (w *redisWorker) Ack(ctx context.Context, msgs []QueueMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ref.(string)
	}
	n, err := w.rdb.XAck(ctx, w.key, redisQueueGroup, ids...).Result()
	if err != nil {
		return err
	}
	if n != int64(len(ids)) {
		return fmt.Errorf("redis: XACK acknowledged %d of %d entries", n, len(ids))
	}
	return nil
}

func (w *redisWorker) Close() error { return w.rdb.Close() }
