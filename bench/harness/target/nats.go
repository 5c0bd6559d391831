package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratalog/strata/bench/harness/procs"
)

// NATSConfig configures the NATS JetStream target.
type NATSConfig struct {
	Bin  string // nats-server (scripts/peers.sh installs the pinned one)
	Dir  string
	Sync string // "always": fsync before every ack (sync_interval: always); "default": every 2 min
}

// NATS runs nats-server -js with file storage on loopback; a partition is
// one stream (subject T.p), file storage, one replica.
type NATS struct {
	cfg     NATSConfig
	proc    *procs.Proc
	root    string
	nc      *nats.Conn
	js      jetstream.JetStream
	version string
}

func NewNATS(cfg NATSConfig) *NATS { return &NATS{cfg: cfg} }

func (n *NATS) Name() string {
	if n.cfg.Sync == "always" {
		return "nats-js-sync"
	}
	return "nats-js"
}

func (n *NATS) Info() Info {
	d := "JetStream file storage, R1; acked after the write to the store file, fsync every 2 min (default sync_interval)"
	if n.cfg.Sync == "always" {
		d = "JetStream file storage, R1, sync_interval: always (fsync before every ack)"
	}
	return Info{Name: n.Name(), Version: n.version, Durability: d}
}

func (n *NATS) Start(ctx context.Context) error {
	if n.cfg.Bin == "" {
		return fmt.Errorf("%w: nats-server not installed (scripts/peers.sh install)", ErrUnavailable)
	}
	if _, err := os.Stat(n.cfg.Bin); err != nil {
		return fmt.Errorf("%w: nats-server: %v (scripts/peers.sh install)", ErrUnavailable, err)
	}
	out, _ := procs.RunQuiet(ctx, 10*time.Second, nil, n.cfg.Bin, "--version")
	n.version = strings.TrimSpace(out)
	root, err := os.MkdirTemp(n.cfg.Dir, "nats-")
	if err != nil {
		return err
	}
	n.root = root
	port, err := procs.FreePort()
	if err != nil {
		return err
	}
	sync := ""
	if n.cfg.Sync == "always" {
		sync = "\n  sync_interval: always"
	}
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream {\n  store_dir: %q%s\n}\n", port, filepath.Join(root, "js"), sync)
	cf := filepath.Join(root, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := procs.Start("nats-server", filepath.Join(root, "nats.log"), nil, n.cfg.Bin, "-c", cf)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	n.proc = p
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := p.WaitTCP(ctx, addr, 30*time.Second); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	n.nc = nc
	return nil
}

func (n *NATS) Stop() error {
	if n.nc != nil {
		n.nc.Close()
	}
	err := n.proc.Stop(30 * time.Second)
	if n.root != "" {
		os.RemoveAll(n.root)
	}
	return err
}

func streamName(topic string, p int) string { return fmt.Sprintf("%s_%d", topic, p) }
func subject(topic string, p int) string    { return fmt.Sprintf("%s.%d", topic, p) }

func (n *NATS) CreateTopic(ctx context.Context, topic string, partitions int) error {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return err
	}
	for p := 0; p < partitions; p++ {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName(topic, p), Subjects: []string{subject(topic, p)},
			Storage: jetstream.FileStorage, Replicas: 1, Retention: jetstream.LimitsPolicy}); err != nil {
			return err
		}
	}
	return nil
}

func (n *NATS) Usage(ctx context.Context) Usage {
	return Usage{RSSBytes: procs.RSS(n.proc.PID()), CPUSeconds: procs.CPUSeconds(n.proc.PID()), DiskBytes: procs.DirBytes(filepath.Join(n.root, "js"))}
}

type natsProducer struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	topic      string
	partitions int
	next       atomic.Uint64
	q          *ackQueue
}

// NewProducer publishes asynchronously on its own connection with at most
// Batch*InFlight acks outstanding (the client has no request batching: every
// message is one publish, acked individually).
func (n *NATS) NewProducer(ctx context.Context, topic string, partitions int, o ProducerOptions) (Producer, error) {
	nc, err := nats.Connect(n.nc.ConnectedUrl(), nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.Batch*o.InFlight))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsProducer{nc: nc, js: js, topic: topic, partitions: partitions, q: newAckQueue(o.Batch*o.InFlight + 1024)}, nil
}

func (p *natsProducer) Send(ctx context.Context, v []byte, cb func(error)) error {
	subj := subject(p.topic, int(p.next.Add(1)-1)%p.partitions)
	for {
		f, err := p.js.PublishAsync(subj, v, jetstream.WithStallWait(time.Second))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return err
		}
		return p.q.push(ctx, func() error {
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			}
		}, cb)
	}
}

func (p *natsProducer) Flush(ctx context.Context) error { return p.q.flush(ctx) }

func (p *natsProducer) Close() error {
	p.q.close()
	p.nc.Close()
	return nil
}

type natsConsumer struct {
	it     jetstream.MessagesContext
	ch     chan []byte
	cancel context.CancelFunc
	err    atomic.Value
}

func (n *NATS) NewConsumer(ctx context.Context, topic string, partition int, fromStart bool) (Consumer, error) {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, err
	}
	pol := jetstream.DeliverNewPolicy
	if fromStart {
		pol = jetstream.DeliverAllPolicy
	}
	c, err := js.OrderedConsumer(ctx, streamName(topic, partition), jetstream.OrderedConsumerConfig{DeliverPolicy: pol})
	if err != nil {
		return nil, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(2000))
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	k := &natsConsumer{it: it, ch: make(chan []byte, 4096), cancel: cancel}
	go func() {
		defer close(k.ch)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					k.err.Store(err)
				}
				return
			}
			select {
			case k.ch <- m.Data():
			case <-cctx.Done():
				return
			}
		}
	}()
	return k, nil
}

func (k *natsConsumer) Poll(ctx context.Context, wait time.Duration) ([][]byte, error) {
	return drain(ctx, k.ch, wait, func() error {
		if e, ok := k.err.Load().(error); ok {
			return e
		}
		return errors.New("nats: consumer ended")
	})
}

func (k *natsConsumer) Close() error { k.cancel(); k.it.Stop(); return nil }

// drain waits up to wait for one value on ch, then takes whatever else is
// queued (up to 4096).
func drain(ctx context.Context, ch chan []byte, wait time.Duration, ended func() error) ([][]byte, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	var out [][]byte
	select {
	case v, ok := <-ch:
		if !ok {
			return nil, ended()
		}
		out = append(out, v)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < 4096 {
		select {
		case v, ok := <-ch:
			if !ok {
				return out, nil
			}
			out = append(out, v)
		default:
			return out, nil
		}
	}
	return out, nil
}
