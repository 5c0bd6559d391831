package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/amqp"
	"github.com/rabbitmq/rabbitmq-stream-go-client/pkg/stream"

	"github.com/stratalog/strata/bench/harness/procs"
)

// RabbitConfig configures the RabbitMQ streams target.
type RabbitConfig struct {
	Home string // RabbitMQ's install (default /usr/lib/rabbitmq, Debian's)
	Dir  string
}

// Rabbit runs a single RabbitMQ node (Debian's rabbitmq-server) with the
// stream plugin, every file in a temporary directory, every listener on
// 127.0.0.1 (AMQP, stream, Erlang distribution, its own epmd port); a
// partition is one stream.
type Rabbit struct {
	cfg        RabbitConfig
	proc       *procs.Proc
	root       string
	epmdPort   int
	streamPort int
	amqpPort   int
	env        *stream.Environment
	version    string
}

func NewRabbit(cfg RabbitConfig) *Rabbit {
	if cfg.Home == "" {
		cfg.Home = "/usr/lib/rabbitmq"
	}
	return &Rabbit{cfg: cfg}
}

func (r *Rabbit) Name() string { return "rabbitmq-stream" }

func (r *Rabbit) Info() Info {
	return Info{Name: r.Name(), Version: r.version, Durability: "stream, one node; confirmed after the write to the segment file, no fsync (streams rely on replication, and this is one node); produced over the stream protocol, consumed over AMQP 0-9-1"}
}

func (r *Rabbit) Start(ctx context.Context) error {
	bin := filepath.Join(r.cfg.Home, "bin", "rabbitmq-server")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w: rabbitmq-server not installed (scripts/peers.sh install)", ErrUnavailable)
	}
	if m, _ := filepath.Glob(filepath.Join(r.cfg.Home, "lib", "rabbitmq_server-*")); len(m) > 0 {
		r.version = "RabbitMQ " + strings.TrimPrefix(filepath.Base(m[0]), "rabbitmq_server-")
	}
	root, err := os.MkdirTemp(r.cfg.Dir, "rabbit-")
	if err != nil {
		return err
	}
	r.root = root
	var ports [4]int
	for i := range ports {
		if ports[i], err = procs.FreePort(); err != nil {
			return err
		}
	}
	amqpPort, distPort := ports[0], ports[1]
	r.streamPort, r.epmdPort, r.amqpPort = ports[2], ports[3], amqpPort
	conf := fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
stream.listeners.tcp.1 = 127.0.0.1:%d
stream.advertised_host = 127.0.0.1
stream.advertised_port = %d
log.console = false
log.file.level = warning
`, amqpPort, r.streamPort, r.streamPort)
	if err := os.WriteFile(filepath.Join(root, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "enabled_plugins"), []byte("[rabbitmq_stream].\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "env.conf"), nil, 0o644); err != nil {
		return err
	}
	env := r.environ(distPort, amqpPort)
	p, err := procs.Start("rabbitmq-server", filepath.Join(root, "rabbitmq.out"), env, bin)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r.proc = p
	if err := p.WaitTCP(ctx, "127.0.0.1:"+strconv.Itoa(r.streamPort), 90*time.Second); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// The stream listener can accept before the plugin answers; retry
	// until the same deadline, and stop early if the server died.
	var e *stream.Environment
	deadline := time.Now().Add(90 * time.Second)
	for {
		e, err = stream.NewEnvironment(stream.NewEnvironmentOptions().SetHost("127.0.0.1").SetPort(r.streamPort).
			SetUser("guest").SetPassword("guest").SetMaxProducersPerClient(1).SetMaxConsumersPerClient(1))
		if err == nil {
			break
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%w: stream client: %v: %s", ErrUnavailable, err, p.Tail(2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.env = e
	return nil
}

func (r *Rabbit) environ(distPort, amqpPort int) []string {
	return []string{
		"HOME=" + r.root, // the Erlang cookie goes here
		"RABBITMQ_NODENAME=stratabench" + strconv.Itoa(os.Getpid()) + "@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(r.root, "env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(r.root, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(r.root, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(r.root, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(r.root, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(r.root, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(r.root, "rabbit.pid"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT=" + strconv.Itoa(r.epmdPort),
	}
}

func (r *Rabbit) Stop() error {
	if r.env != nil {
		r.env.Close()
	}
	err := r.proc.Stop(60 * time.Second)
	if r.epmdPort != 0 {
		// Erlang started its own epmd (a daemon, outside the process group)
		// on our private port: ask exactly that one to exit.
		procs.RunQuiet(context.Background(), 10*time.Second, []string{"ERL_EPMD_PORT=" + strconv.Itoa(r.epmdPort)}, "epmd", "-kill")
	}
	if r.root != "" {
		os.RemoveAll(r.root)
	}
	return err
}

func rabbitStream(topic string, p int) string { return fmt.Sprintf("%s-%d", topic, p) }

func (r *Rabbit) CreateTopic(ctx context.Context, topic string, partitions int) error {
	for p := 0; p < partitions; p++ {
		if err := r.env.DeclareStream(rabbitStream(topic, p), &stream.StreamOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func (r *Rabbit) Usage(ctx context.Context) Usage {
	return Usage{RSSBytes: procs.RSS(r.proc.PID()), CPUSeconds: procs.CPUSeconds(r.proc.PID()), DiskBytes: procs.DirBytes(filepath.Join(r.root, "mnesia"))}
}

type rabbitProducer struct {
	ps    []*stream.Producer
	next  atomic.Uint64
	slots chan struct{}
	cbs   sync.Map // *amqp.AMQP10 -> func(error)
	wg    sync.WaitGroup
	done  sync.WaitGroup
}

// NewProducer: one stream producer per partition, the client's dynamic
// batching (up to Batch messages per frame), at most Batch*InFlight
// unconfirmed messages.
func (r *Rabbit) NewProducer(ctx context.Context, topic string, partitions int, o ProducerOptions) (Producer, error) {
	p := &rabbitProducer{slots: make(chan struct{}, o.Batch*o.InFlight)}
	for i := 0; i < partitions; i++ {
		sp, err := r.env.NewProducer(rabbitStream(topic, i), stream.NewProducerOptions().SetBatchSize(min(o.Batch, 10000)))
		if err != nil {
			p.Close()
			return nil, err
		}
		p.ps = append(p.ps, sp)
		ch := sp.NotifyPublishConfirmation()
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			for sts := range ch {
				for _, st := range sts {
					var err error
					if !st.IsConfirmed() {
						err = fmt.Errorf("rabbitmq: not confirmed: %v (code %d)", st.GetError(), st.GetErrorCode())
					}
					if cb, ok := p.cbs.LoadAndDelete(st.GetMessage()); ok {
						cb.(func(error))(err)
						<-p.slots
						p.wg.Done()
					}
				}
			}
		}()
	}
	return p, nil
}

func (p *rabbitProducer) Send(ctx context.Context, v []byte, cb func(error)) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	m := amqp.NewMessage(v)
	p.wg.Add(1)
	p.cbs.Store(m, cb)
	if err := p.ps[int(p.next.Add(1)-1)%len(p.ps)].Send(m); err != nil {
		p.cbs.Delete(m)
		<-p.slots
		p.wg.Done()
		return err
	}
	return nil
}

func (p *rabbitProducer) Flush(ctx context.Context) error {
	return waitGroup(ctx, &p.wg)
}

func (p *rabbitProducer) Close() error {
	var errs []error
	for _, sp := range p.ps {
		errs = append(errs, sp.Close())
	}
	return errors.Join(errs...)
}

// rabbitConsumer reads a stream over AMQP 0-9-1 (basic.consume with
// x-stream-offset and a prefetch window), which RabbitMQ supports for
// streams. The stream protocol's own consumer (rabbitmq-stream-go-client
// v1.8.3 against Debian's RabbitMQ 3.10.8) received about 100 records/s
// here with both processes idle: the server sent one chunk per credit
// frame and the next credit came hundreds of milliseconds later; more
// initial credits, TCP_NODELAY and larger socket buffers changed nothing.
// Producers still use the stream protocol.
type rabbitConsumer struct {
	conn *amqp091.Connection
	ch   chan []byte
	done chan struct{}
	once sync.Once
}

// rabbitPrefetch is the consumer's window of unacknowledged deliveries;
// it acks every rabbitAckEvery (multiple), well inside the window.
const rabbitPrefetch, rabbitAckEvery = 2000, 500

func (r *Rabbit) NewConsumer(ctx context.Context, topic string, partition int, fromStart bool) (Consumer, error) {
	conn, err := amqp091.Dial(fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.amqpPort))
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(rabbitPrefetch, 0, false)
	}
	off := "next"
	if fromStart {
		off = "first"
	}
	var deliveries <-chan amqp091.Delivery
	if err == nil {
		deliveries, err = ch.Consume(rabbitStream(topic, partition), "", false, false, false, false, amqp091.Table{"x-stream-offset": off})
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	k := &rabbitConsumer{conn: conn, ch: make(chan []byte, 8192), done: make(chan struct{})}
	go func() {
		defer close(k.ch)
		n := 0
		for d := range deliveries {
			select {
			case k.ch <- d.Body:
			case <-k.done:
				return
			}
			if n++; n%rabbitAckEvery == 0 {
				if err := d.Ack(true); err != nil {
					return
				}
			}
		}
	}()
	return k, nil
}

func (k *rabbitConsumer) Poll(ctx context.Context, wait time.Duration) ([][]byte, error) {
	return drain(ctx, k.ch, wait, func() error { return errors.New("rabbitmq: consumer ended") })
}

func (k *rabbitConsumer) Close() error {
	k.once.Do(func() { close(k.done) })
	return k.conn.Close()
}
