package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stratalog/strata/bench/harness/procs"
)

// RedisConfig configures the Redis Streams target.
type RedisConfig struct {
	Bin   string // redis-server; "" looks it up in PATH
	Dir   string
	Fsync string // appendfsync: always or everysec
}

// Redis runs redis-server with AOF on; a partition is one stream key
// (XADD/XREAD).
type Redis struct {
	cfg     RedisConfig
	proc    *procs.Proc
	root    string
	addr    string
	rdb     *redis.Client
	version string
}

func NewRedis(cfg RedisConfig) *Redis { return &Redis{cfg: cfg} }

func (r *Redis) Name() string { return "redis-" + r.cfg.Fsync }

func (r *Redis) Info() Info {
	d := "AOF, appendfsync always (fsync before the reply)"
	if r.cfg.Fsync == "everysec" {
		d = "AOF, appendfsync everysec (fsync once a second; up to ~1 s of acked writes lost on power failure)"
	}
	return Info{Name: r.Name(), Version: r.version, Durability: d}
}

func (r *Redis) Start(ctx context.Context) error {
	bin := r.cfg.Bin
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return fmt.Errorf("%w: redis-server not installed (scripts/peers.sh install)", ErrUnavailable)
		}
	}
	out, _ := procs.RunQuiet(ctx, 10*time.Second, nil, bin, "--version")
	r.version = strings.TrimSpace(out)
	root, err := os.MkdirTemp(r.cfg.Dir, "redis-")
	if err != nil {
		return err
	}
	r.root = root
	port, err := procs.FreePort()
	if err != nil {
		return err
	}
	r.addr = "127.0.0.1:" + strconv.Itoa(port)
	p, err := procs.Start("redis-server", filepath.Join(root, "redis.log"), nil, bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--dir", root,
		"--appendonly", "yes", "--appendfsync", r.cfg.Fsync, "--save", "", "--daemonize", "no", "--loglevel", "warning")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r.proc = p
	if err := p.WaitTCP(ctx, r.addr, 30*time.Second); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r.rdb = redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 64})
	for i := 0; i < 100; i++ { // the port opens before loading finishes
		if err = r.rdb.Ping(ctx).Err(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (r *Redis) Stop() error {
	if r.rdb != nil {
		r.rdb.Close()
	}
	err := r.proc.Stop(30 * time.Second)
	if r.root != "" {
		os.RemoveAll(r.root)
	}
	return err
}

func redisKey(topic string, p int) string { return fmt.Sprintf("%s:%d", topic, p) }

// CreateTopic: streams are created by the first XADD; nothing to do.
func (r *Redis) CreateTopic(ctx context.Context, topic string, partitions int) error { return nil }

func (r *Redis) Usage(ctx context.Context) Usage {
	return Usage{RSSBytes: procs.RSS(r.proc.PID()), CPUSeconds: procs.CPUSeconds(r.proc.PID()), DiskBytes: procs.DirBytes(r.root)}
}

type redisProducer struct {
	rdb        *redis.Client
	b          *batcher
	topic      string
	partitions int
	next       atomic.Uint64
}

// NewProducer pipelines up to Batch XADDs per round trip, InFlight
// pipelines at once (Redis has no batch append; a pipeline is its batch).
func (r *Redis) NewProducer(ctx context.Context, topic string, partitions int, o ProducerOptions) (Producer, error) {
	p := &redisProducer{rdb: redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: o.InFlight + 2}), topic: topic, partitions: partitions}
	p.b = newBatcher(o.Batch, o.InFlight, func(_ int, vs [][]byte) error {
		_, err := p.rdb.Pipelined(context.Background(), func(pl redis.Pipeliner) error {
			for _, v := range vs {
				key := redisKey(p.topic, int(p.next.Add(1)-1)%p.partitions)
				pl.XAdd(context.Background(), &redis.XAddArgs{Stream: key, Values: []any{"v", v}})
			}
			return nil
		})
		return err
	})
	return p, nil
}

func (p *redisProducer) Send(ctx context.Context, v []byte, cb func(error)) error {
	return p.b.send(ctx, v, cb)
}
func (p *redisProducer) Flush(ctx context.Context) error { return p.b.flush(ctx) }
func (p *redisProducer) Close() error                    { p.b.close(); return p.rdb.Close() }

type redisConsumer struct {
	rdb  *redis.Client
	key  string
	last string
}

func (r *Redis) NewConsumer(ctx context.Context, topic string, partition int, fromStart bool) (Consumer, error) {
	k := &redisConsumer{rdb: redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 2}), key: redisKey(topic, partition), last: "0-0"}
	if !fromStart {
		msgs, err := k.rdb.XRevRangeN(ctx, k.key, "+", "-", 1).Result()
		if err != nil {
			k.rdb.Close()
			return nil, err
		}
		if len(msgs) == 1 {
			k.last = msgs[0].ID
		}
	}
	return k, nil
}

func (k *redisConsumer) Poll(ctx context.Context, wait time.Duration) ([][]byte, error) {
	res, err := k.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{k.key, k.last}, Count: 2000, Block: max(wait, time.Millisecond)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, s := range res {
		for _, m := range s.Messages {
			k.last = m.ID
			if v, ok := m.Values["v"].(string); ok {
				out = append(out, []byte(v))
			}
		}
	}
	return out, nil
}

func (k *redisConsumer) Close() error { return k.rdb.Close() }
