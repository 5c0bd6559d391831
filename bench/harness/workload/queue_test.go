package workload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/bench/harness/target"
)

func queueParams() Params {
	return Params{RecordSize: 1024, Partitions: 2, Producers: 2, Batch: 100, InFlight: 2, Linger: time.Millisecond,
		Duration: time.Second, MaxRecords: 1 << 20, QueueRecords: 1500, QueueWorkers: 4, QueueBatch: 50,
		QueueWait: 200 * time.Millisecond, QueueTimeout: time.Minute}
}

// checkDrain: every record of the backlog was acked exactly once, none
// was delivered twice, the server holds none unacked, and every ack's
// latency was recorded.
func checkDrain(t *testing.T, fill, drain *Result, n int64) {
	t.Helper()
	if fill == nil || fill.Records != n {
		t.Fatalf("fill: %+v, want %d records confirmed", fill, n)
	}
	if drain.Records != n || drain.Missing != 0 || drain.Redelivered != 0 || drain.Unacked != 0 || drain.Errors != 0 {
		t.Fatalf("drain: %d acked, %d missing, %d delivered again, %d unacked on the server, %d errors (%s); want %d acked once",
			drain.Records, drain.Missing, drain.Redelivered, drain.Unacked, drain.Errors, drain.Note, n)
	}
	if drain.Latency == nil || drain.Latency.Count != n || drain.Latency2 == nil || drain.Latency2.Count == 0 {
		t.Fatalf("latency: %+v / %+v, want %d acks", drain.Latency, drain.Latency2, n)
	}
}

// Against every peer's queue (RabbitMQ: both kinds) and strata's share
// group: a small backlog drained by competing workers, every record
// acked exactly once; then the light-load phase delivers every record
// produced. A peer that is not installed is skipped, except under
// CI=true (scripts/peers.sh install first).
func TestQueueAgainstEveryTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	home, _ := os.UserHomeDir()
	nats := filepath.Join(home, ".cache", "strata", "bin", "nats-server")
	if d := os.Getenv("STRATA_TOOLS_DIR"); d != "" {
		nats = filepath.Join(d, "nats-server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin, err := target.BuildStrata(ctx, filepath.Join("..", "..", ".."), tmp)
	if err != nil {
		t.Fatal(err)
	}
	var minio *target.MinIO // under scripts/with-minio.sh: strata on MinIO, requests counted
	if ep := os.Getenv("STRATA_TEST_MINIO_ENDPOINT"); ep != "" {
		minio = &target.MinIO{Endpoint: ep, AccessKey: os.Getenv("STRATA_TEST_MINIO_ACCESS_KEY"), SecretKey: os.Getenv("STRATA_TEST_MINIO_SECRET_KEY")}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but STRATA_TEST_MINIO_ENDPOINT is not set (run under scripts/with-minio.sh)")
	}
	for _, tg := range []target.Target{
		target.NewStrata(target.StrataConfig{Bin: bin, Dir: tmp, MinIO: minio, Acks: "local", FlushInterval: "10ms"}),
		target.NewNATS(target.NATSConfig{Bin: nats, Dir: tmp, Sync: "always"}),
		target.NewRedis(target.RedisConfig{Dir: tmp, Fsync: "always"}),
		target.NewRabbit(target.RabbitConfig{Dir: tmp}),
	} {
		t.Run(tg.Name(), func(t *testing.T) {
			if err := tg.Start(ctx); err != nil {
				tg.Stop()
				if errors.Is(err, target.ErrUnavailable) && os.Getenv("CI") != "true" {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			defer tg.Stop()
			p := queueParams()
			for _, k := range tg.(target.Queuer).QueueKinds() {
				fill, drain, err := QueueDrain(ctx, tg, k, "q-"+k.Name, p)
				if err != nil {
					t.Fatalf("%s: %v", k.Name, err)
				}
				checkDrain(t, fill, drain, p.QueueRecords)
				if strings.HasPrefix(k.Name, "strata") && minio != nil && drain.Cost.Requests == 0 {
					t.Errorf("%s: no object-store request counted while acking %d records", k.Name, drain.Records)
				}
				if drain.Cost.RSSBytes == 0 {
					t.Errorf("%s: no RSS", k.Name)
				}
				r, err := QueueEndToEnd(ctx, tg, k, "qlat-"+k.Name, p, 300)
				if err != nil {
					t.Fatalf("%s light load: %v", k.Name, err)
				}
				if r.Missing != 0 || r.Records == 0 || r.Latency.Count != r.Records {
					t.Fatalf("%s light load: %d received, %d never received, %d latencies", k.Name, r.Records, r.Missing, r.Latency.Count)
				}
			}
		})
	}
}

// fakeTarget has an in-memory queue (fakeQueue) that can deliver one
// record twice and can keep one record unacked on the "server": the
// drain's accounting must see both.
type fakeTarget struct{ q *fakeQueue }

func (f *fakeTarget) Name() string                                   { return "fake" }
func (f *fakeTarget) Start(context.Context) error                    { return nil }
func (f *fakeTarget) Stop() error                                    { return nil }
func (f *fakeTarget) Info() target.Info                              { return target.Info{Name: "fake"} }
func (f *fakeTarget) CreateTopic(context.Context, string, int) error { return nil }
func (f *fakeTarget) NewProducer(context.Context, string, int, target.ProducerOptions) (target.Producer, error) {
	return nil, errors.New("fake: no topics")
}
func (f *fakeTarget) NewConsumer(context.Context, string, int, bool) (target.Consumer, error) {
	return nil, errors.New("fake: no topics")
}
func (f *fakeTarget) Usage(context.Context) target.Usage { return target.Usage{} }
func (f *fakeTarget) QueueKinds() []target.QueueKind {
	return []target.QueueKind{{Name: "fake", AckConfirmed: true}}
}
func (f *fakeTarget) CreateQueue(context.Context, string, string, int, int, int) (target.Queue, error) {
	return f.q, nil
}

type fakeQueue struct {
	dup, lose bool
	mu        sync.Mutex // guards the fields below
	ready     [][]byte
	held      int64 // acked, but kept by the "server"
	dupDone   bool
}

func (q *fakeQueue) NewProducer(context.Context, target.ProducerOptions) (target.Producer, error) {
	return fakeProducer{q}, nil
}

func (q *fakeQueue) NewWorker(context.Context, target.WorkerOptions) (target.Worker, error) {
	return fakeWorker{q}, nil
}

func (q *fakeQueue) Unacked(context.Context) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held + int64(len(q.ready)), nil
}

type fakeProducer struct{ q *fakeQueue }

func (p fakeProducer) Send(_ context.Context, v []byte, cb func(error)) error {
	p.q.mu.Lock()
	p.q.ready = append(p.q.ready, append([]byte(nil), v...))
	p.q.mu.Unlock()
	cb(nil)
	return nil
}
func (p fakeProducer) Flush(context.Context) error { return nil }
func (p fakeProducer) Close() error                { return nil }

type fakeWorker struct{ q *fakeQueue }

func (w fakeWorker) Receive(ctx context.Context) ([]target.QueueMsg, error) {
	q := w.q
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.ready), 10)
	var out []target.QueueMsg
	for _, v := range q.ready[:n] {
		out = append(out, target.QueueMsg{Value: v})
	}
	q.ready = q.ready[n:]
	if q.dup && !q.dupDone && n > 0 {
		q.dupDone = true
		q.ready = append([][]byte{out[0].Value}, q.ready...) // delivered again next
	}
	if q.lose && n > 0 && q.held == 0 {
		q.held = 1
	}
	return out, nil
}

func (w fakeWorker) Ack(context.Context, []target.QueueMsg) error { return nil }
func (w fakeWorker) Close() error                                 { return nil }

// The drain counts a second delivery of a record, and reports a record
// the server still holds after every ack as an error.
func TestQueueDrainAccounting(t *testing.T) {
	ctx := context.Background()
	p := queueParams()
	p.QueueRecords = 500
	fill, drain, err := QueueDrain(ctx, &fakeTarget{&fakeQueue{}}, target.QueueKind{Name: "fake"}, "q", p)
	if err != nil {
		t.Fatal(err)
	}
	checkDrain(t, fill, drain, 500)

	_, drain, err = QueueDrain(ctx, &fakeTarget{&fakeQueue{dup: true}}, target.QueueKind{Name: "fake"}, "q", p)
	if err != nil || drain.Records != 500 || drain.Redelivered != 1 {
		t.Fatalf("one record delivered twice: %+v, %v", drain, err)
	}

	_, drain, err = QueueDrain(ctx, &fakeTarget{&fakeQueue{lose: true}}, target.QueueKind{Name: "fake"}, "q", p)
	if err == nil || drain.Unacked != 1 || !strings.Contains(err.Error(), "holds 1 unacked") {
		t.Fatalf("a record the server kept: %+v, %v", drain, err)
	}
}
