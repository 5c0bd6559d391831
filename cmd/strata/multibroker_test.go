package main

// Multi-process ownership tests (issue 11, "Proof"): two real brokers on
// one MinIO bucket, each a `strata serve` process on loopback, judged by
// the history checker (internal/history) after a full drain: nothing
// acknowledged is lost and no offset holds two values.
//
//   - reads and describes on a second broker while the first takes a
//     durable load: the first keeps acking (reads never take ownership);
//   - defect 1: the first broker's WAL garbage collection deleted its
//     sealed WAL objects, then the second takes a partition over, then the
//     first writes again: it must not ack at an offset the second assigned;
//   - defect 2: the first broker dies with records acked only locally, the
//     second takes over and acks durably, the first restarts on its old
//     disk: the second's durable acks must survive.
//
// The helpers (broker processes, loads, drain, checker) are those of
// fault_test.go and e2e_test.go.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/internal/faultproxy"
	"github.com/stratalog/strata/internal/history"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// store is the test's own view of the bucket the brokers share, to watch
// WAL objects and manifests (never to write).
func (b bucket) store(t testing.TB) tier.Store {
	t.Helper()
	ep := testenv.MinIO(t)
	st, err := tier.NewS3Store(context.Background(), tier.S3Config{
		Endpoint: b.minio, Bucket: b.name, Prefix: "strata",
		AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, Insecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// incarnation asks the broker at addr for its WAL incarnation.
func incarnation(t testing.TB, addr string) string {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.API().GetStats(context.Background(), &stratapb.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.Incarnation
}

// sealedEnd is how far partition p of the test topic is sealed, read from
// its manifest in the bucket (0 before the manifest exists).
func sealedEnd(t testing.TB, st tier.Store, p int32) int64 {
	t.Helper()
	m, _, err := meta.NewManifestStore(st, storetest.TopicStorageName(t, st, faultTopic), p).Load(context.Background())
	if errors.Is(err, tier.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.NextOffset()
}

// term stops a broker with SIGTERM (it seals what it can on the way out)
// and waits; a broker that does not exit in time is killed. A non-zero exit
// is fine: a fenced broker cannot seal.
func (b *proc) term(t testing.TB) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.exited:
		b.exited <- err
		if err != nil {
			t.Logf("broker exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Logf("broker did not exit within 30s of SIGTERM; killing it")
		b.kill9(t)
	}
}

// partitionProducer is a producer of single-record requests to partition
// 0 of the test topic on the broker at addr, with few retries so that a
// refused write shows within seconds; opts override these settings.
func partitionProducer(t testing.TB, addr string, acks stratapb.Acks, idempotent bool, opts ...client.ProducerOption) *client.Producer {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	opts = append([]client.ProducerOption{client.WithPartition(0), client.WithAcks(acks), client.WithIdempotence(idempotent),
		client.WithBatchSize(1), client.WithRetries(5, 100*time.Millisecond), client.WithRequestTimeout(10 * time.Second)}, opts...)
	return c.NewProducer(faultTopic, opts...)
}

// produceOne sends one value and waits for its outcome. With record set,
// the outcome goes to the history as an ack (or unknown); a caller that
// must not record an ack (acks=local) records it itself.
func produceOne(rec *history.Recorder, process string, p *client.Producer, value string, record bool) (int64, error) {
	rec.Send(process, faultTopic, value)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := p.Send(ctx, client.Record{Key: []byte(value), Value: []byte(value)})
	if err == nil || res != nil {
		err = res.Wait(ctx)
	}
	if err != nil {
		rec.Unknown(process, faultTopic, value, err)
		return -1, err
	}
	if record {
		rec.Ack(process, faultTopic, res.Partition, res.Offset, value)
	}
	return res.Offset, nil
}

// mustAck is produceOne for a write the sequence depends on.
func mustAck(t testing.TB, rec *history.Recorder, process string, p *client.Producer, value string) int64 {
	t.Helper()
	off, err := produceOne(rec, process, p, value, true)
	if err != nil {
		t.Fatalf("%s: %s was not acknowledged: %v", process, value, err)
	}
	return off
}

// durableLoad is a bounded, paced load of idempotent durable producers,
// keyed over every partition. The first failed record stops new sends (a
// broker that stopped acking fails the test, no need to wait for more).
type durableLoad struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	acked  atomic.Int64
	mu     sync.Mutex
	errs   []error // the first distinct failures
	failed int
}

func startDurableLoad(t testing.TB, addr string, rec *history.Recorder, producers, perProducer int) *durableLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &durableLoad{cancel: cancel}
	for i := 0; i < producers; i++ {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		name := fmt.Sprintf("A-producer-%d", i)
		prod := c.NewProducer(faultTopic, client.WithAcks(stratapb.Acks_ACKS_DURABLE), client.WithRetries(5, 50*time.Millisecond),
			client.WithRequestTimeout(10*time.Second), client.WithLinger(2*time.Millisecond), client.WithBatchSize(50))
		type sent struct {
			value string
			res   *client.Result
		}
		outcomes := make(chan sent, perProducer)
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			defer close(outcomes)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for n := 0; n < perProducer; {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for j := 0; j < 10 && n < perProducer; j, n = j+1, n+1 {
					v := fmt.Sprintf("%s-%07d", name, n)
					rec.Send(name, faultTopic, v)
					res, err := prod.Send(ctx, client.Record{Key: []byte(v), Value: []byte(v)})
					if err != nil && res == nil {
						rec.Unknown(name, faultTopic, v, err)
						l.fail(err)
						continue
					}
					outcomes <- sent{v, res}
				}
			}
		}()
		go func() {
			defer l.wg.Done()
			for s := range outcomes {
				wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := s.res.Wait(wctx)
				cancel()
				if err != nil {
					rec.Unknown(name, faultTopic, s.value, err)
					l.fail(err)
					continue
				}
				rec.Ack(name, faultTopic, s.res.Partition, s.res.Offset, s.value)
				l.acked.Add(1)
			}
			prod.Close(context.Background())
		}()
	}
	return l
}

func (l *durableLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed++
	if len(l.errs) < 5 && !slices.ContainsFunc(l.errs, func(e error) bool { return e.Error() == err.Error() }) {
		l.errs = append(l.errs, err)
	}
	l.cancel()
}

// stopped reports whether the load stopped early, after a failure.
func (l *durableLoad) stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed > 0
}

// wait waits for every outcome of the load.
func (l *durableLoad) wait() {
	l.wg.Wait()
	l.cancel()
}

// reader is the second broker's read traffic: describes, offset lookups,
// fetches (recorded in the history) and group describes, in rounds until
// stopped.
type reader struct {
	stop    chan struct{}
	done    chan struct{}
	rounds  int
	records int // records its fetches returned
	calls   int
	errs    []string // the first distinct failures
	failed  int
}

func startReader(addr string, env []string, rec *history.Recorder, partitions int32, since time.Time, group string) (*reader, error) {
	c, err := client.Dial(addr)
	if err != nil {
		return nil, err
	}
	r := &reader{stop: make(chan struct{}), done: make(chan struct{})}
	api := c.API()
	failed := func(what string, err error) {
		r.failed++
		if e := fmt.Sprintf("%s: %v", what, err); len(r.errs) < 5 && !slices.Contains(r.errs, e) {
			r.errs = append(r.errs, e)
		}
	}
	fetch := func(ctx context.Context, p int32, req *stratapb.FetchRequest, what string) (int64, bool) {
		req.Topic, req.Partition, req.MaxWaitMs, req.MaxBytes = faultTopic, p, 50, 256<<10
		r.calls++
		stream, err := api.Fetch(ctx, req)
		if err != nil {
			failed(what, err)
			return 0, false
		}
		var next int64
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				return next, true
			}
			if err != nil {
				failed(what, err)
				return 0, false
			}
			var recs []history.Rec
			for _, x := range resp.Records {
				recs = append(recs, history.Rec{Offset: x.Offset, Value: string(x.Value)})
			}
			if len(recs) > 0 {
				rec.Read("B-reader", faultTopic, p, recs)
				r.records += len(recs)
			}
			next = resp.NextOffset
		}
	}
	cliRun := func(args ...string) {
		r.calls++
		cmd := exec.Command(binary, append(args, "--broker", addr)...)
		cmd.Env = append(cmd.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			failed(fmt.Sprintf("strata %v", args), fmt.Errorf("%v: %s", err, out))
		}
	}
	go func() {
		defer close(r.done)
		defer c.Close()
		next := make([]int64, partitions)
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r.rounds++
			r.calls++
			if _, err := api.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: faultTopic}); err != nil {
				failed("DescribeTopic", err)
			}
			cliRun("topic", "describe", faultTopic)
			for p := int32(0); p < partitions; p++ {
				for _, spec := range []*stratapb.ListOffsetsRequest{
					{Spec: &stratapb.ListOffsetsRequest_Earliest{Earliest: true}},
					{Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}},
					{Spec: &stratapb.ListOffsetsRequest_TimestampMs{TimestampMs: since.UnixMilli()}},
				} {
					spec.Topic, spec.Partition = faultTopic, p
					r.calls++
					if _, err := api.ListOffsets(ctx, spec); err != nil {
						failed(fmt.Sprintf("ListOffsets %d %v", p, spec.Spec), err)
					}
				}
				fetch(ctx, p, &stratapb.FetchRequest{Start: &stratapb.FetchRequest_Earliest{Earliest: true}}, fmt.Sprintf("Fetch %d from earliest", p))
				fetch(ctx, p, &stratapb.FetchRequest{Start: &stratapb.FetchRequest_TimestampMs{TimestampMs: since.UnixMilli()}}, fmt.Sprintf("Fetch %d from a timestamp", p))
				if n, ok := fetch(ctx, p, &stratapb.FetchRequest{Start: &stratapb.FetchRequest_Offset{Offset: next[p]}}, fmt.Sprintf("Fetch %d at %d", p, next[p])); ok && n > next[p] {
					next[p] = n
				}
			}
			if group != "" {
				r.calls++
				if _, err := api.DescribeGroup(ctx, &stratapb.DescribeGroupRequest{Group: group}); err != nil {
					failed("DescribeGroup", err)
				}
				cliRun("group", "describe", group)
			}
			cancel()
		}
	}()
	return r, nil
}

// halt stops the reader and waits for its last round.
func (r *reader) halt() {
	close(r.stop)
	<-r.done
}

// TestMultiBrokerReadsDoNotFence: broker A takes a bounded durable load
// over 4 partitions while broker B, on the same bucket with an empty data
// directory, describes the topic and the group, lists offsets and fetches
// from the earliest offset, from a timestamp and onwards, over and over.
// Reads never take ownership: A acks every record, and what B read agrees
// with A's acks and with the final drain.
func TestMultiBrokerReadsDoNotFence(t *testing.T) {
	bk := newBucket(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	// Small, frequent seals, so that B has sealed data to serve.
	startBroker(t, addrA, t.TempDir(), bk.url(""), bk.env, "--seal-bytes", "32KiB", "--seal-interval", "1s")
	createTopic(t, addrA, bk.env)
	const group = "readers"
	cli(t, "", bk.env, "group", "reset", group, "--topic", faultTopic, "--to", "earliest", "--broker", addrA)
	startBroker(t, addrB, t.TempDir(), bk.url(""), bk.env)
	rec, path := newHistory(t)
	since := time.Now().Add(-time.Second)
	const producers, perProducer = 4, 5000
	l := startDurableLoad(t, addrA, rec, producers, perProducer)
	// B reads once A has acked (and sealed) a share of the load.
	waitUntil(t, "A to ack 4000 records", func() bool { return l.acked.Load() >= 4000 || l.stopped() })
	r, err := startReader(addrB, bk.env, rec, 4, since, group)
	if err != nil {
		t.Fatal(err)
	}
	l.wait()
	r.halt()
	t.Logf("A acked %d of %d records; B made %d read calls in %d rounds, %d failed, and read %d records",
		l.acked.Load(), producers*perProducer, r.calls, r.rounds, r.failed, r.records)
	if l.failed > 0 {
		t.Errorf("A stopped acking while B only read: %d records failed, first errors: %v", l.failed, l.errs)
	} else if n := l.acked.Load(); n != producers*perProducer {
		t.Errorf("A acked %d of %d records", n, producers*perProducer)
	}
	if r.failed > 0 {
		t.Errorf("B's reads failed %d times (of %d calls): %v", r.failed, r.calls, r.errs)
	}
	drain(t, addrA, rec, 4)
	check(t, rec, path)
	if r.records == 0 {
		t.Errorf("B's fetches returned no record in %d rounds: the consistency of B's reads was not tested", r.rounds)
	}
}

// TestMultiBrokerGCThenTakeover is issue 11's defect 1: A writes offsets
// 0-2 of partition 0 (three WAL objects) and seals them; its WAL garbage
// collection deletes the sealed objects; B takes the partition over by
// writing to it; A, idle since, writes again. A must not ack a durable
// write at an offset B also assigned: once B fenced A's incarnation, no
// WAL write of A's can succeed, whatever GC deleted before.
func TestMultiBrokerGCThenTakeover(t *testing.T) {
	bk := newBucket(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	const collectInterval = 200 * time.Millisecond
	a := startBroker(t, addrA, t.TempDir(), bk.url(""), bk.env, "--seal-interval", "100ms", "--wal-collect-interval", collectInterval.String())
	createTopic(t, addrA, bk.env)
	st := bk.store(t)
	incA := incarnation(t, addrA)
	rec, path := newHistory(t)
	pa := partitionProducer(t, addrA, stratapb.Acks_ACKS_DURABLE, true)
	for i := 0; i < 3; i++ {
		mustAck(t, rec, "A", pa, fmt.Sprintf("a-%d", i))
	}
	waitUntil(t, "A to seal offsets 0-2", func() bool { return sealedEnd(t, st, 0) >= 3 })
	// A's GC deletes its sealed WAL objects; it may keep the newest (so a
	// fence still lands above it). A GC round that deleted what it could
	// leaves no other trace in the bucket, so "GC is done" is: every object
	// but the newest is gone, and the listing stayed so over 5 collect
	// intervals (or is empty). Otherwise B could list in the middle of a
	// round that is still deleting the newest.
	walr := wal.NewReader(st, "multibroker-test", nil)
	var (
		left     []wal.Object
		lastSeen string
		since    time.Time
	)
	waitUntil(t, "A's WAL GC to delete its sealed WAL objects (all but the newest may go)", func() bool {
		objs, err := walr.List(context.Background(), incA)
		if err != nil {
			t.Fatal(err)
		}
		left = objs
		if seen := fmt.Sprint(objs); seen != lastSeen {
			lastSeen, since = seen, time.Now()
		}
		onlyNewest := len(objs) == 0 || objs[0].Seq == objs[len(objs)-1].Seq
		return onlyNewest && (len(objs) == 0 || time.Since(since) >= 5*collectInterval)
	})
	t.Logf("A's WAL objects left after GC: %v", left)

	b := startBroker(t, addrB, t.TempDir(), bk.url(""), bk.env) // seals after 10 minutes: not in this test
	pb := partitionProducer(t, addrB, stratapb.Acks_ACKS_DURABLE, true)
	bOffsets := map[int64]string{}
	off := mustAck(t, rec, "B", pb, "b-0") // B takes partition 0 over
	bOffsets[off] = "b-0"
	offA, errA := produceOne(rec, "A", pa, "a-late-0", true)
	if off, err := produceOne(rec, "B", pb, "b-1", true); err == nil {
		bOffsets[off] = "b-1"
	}
	if errA != nil {
		t.Logf("A's write after B's takeover failed (fine): %v", errA)
	} else if v, ok := bOffsets[offA]; ok {
		t.Errorf("split brain: A acked a-late-0 as durable at offset %d, where B acked %s", offA, v)
	}

	// Stop both (each seals what it owns); a fresh broker drains the bucket.
	a.term(t)
	b.term(t)
	addrC := freeAddr(t)
	startBroker(t, addrC, t.TempDir(), bk.url(""), bk.env)
	drain(t, addrC, rec, 4)
	check(t, rec, path)
}

// TestMultiBrokerStaleLocalData is issue 11's defect 2: A seals offsets
// 0-1 of partition 0; with the object store unreachable (a blackhole
// between A and MinIO) A acks offsets 2-3 with acks=local, so they reach
// only its disk; A is killed. B takes the partition over by writing and
// acks three records durably (B seals after 10 minutes, so it has not
// sealed them). A restarts on its old disk and claims the partition by
// writing. Every record B acked durably must be at its acked offset; A's
// local-only records may be lost (they are recorded as unknown, not as
// acks).
func TestMultiBrokerStaleLocalData(t *testing.T) {
	bk := newBucket(t)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: "http://" + bk.minio, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addrA, dirA, addrB := freeAddr(t), t.TempDir(), freeAddr(t)
	a := startBroker(t, addrA, dirA, bk.url(proxy.Addr()), bk.env, "--seal-interval", "100ms")
	createTopic(t, addrA, bk.env)
	st := bk.store(t)
	incA := incarnation(t, addrA)
	rec, path := newHistory(t)
	pa := partitionProducer(t, addrA, stratapb.Acks_ACKS_DURABLE, true)
	mustAck(t, rec, "A", pa, "a-0")
	mustAck(t, rec, "A", pa, "a-1")
	waitUntil(t, "A to seal offsets 0-1", func() bool { return sealedEnd(t, st, 0) >= 2 })

	// The store goes dark for A: acks=local records reach A's disk only.
	// A durable write to another partition first: A gives a local ack at
	// the fsync only while its WAL stored an object lately (defect 13's
	// lease); without a fresh one the local writes wait for the WAL, and
	// are on A's disk all the same, which is all this sequence needs. One
	// attempt each: a retry would append the value twice.
	mustAck(t, rec, "A", partitionProducer(t, addrA, stratapb.Acks_ACKS_DURABLE, true, client.WithPartition(1)), "a-other-partition")
	local := partitionProducer(t, addrA, stratapb.Acks_ACKS_LOCAL, false, client.WithRetries(0, 0), client.WithRequestTimeout(3*time.Second))
	proxy.SetBlackhole(true)
	for i := 0; i < 2; i++ {
		v := fmt.Sprintf("a-local-%d", i)
		off, err := produceOne(rec, "A", local, v, false) // records unknown on an error
		if err != nil {
			t.Logf("A: acks=local write %s was not acked (its record is on A's disk): %v", v, err)
			continue
		}
		rec.Unknown("A", faultTopic, v, fmt.Errorf("acked with acks=local at offset %d by a broker killed before the record reached the bucket", off))
	}
	a.kill9(t)
	proxy.SetBlackhole(false)
	if end := sealedEnd(t, st, 0); end != 2 {
		t.Fatalf("setup: A had sealed partition 0 to %d before it was killed, want 2", end)
	}
	inWAL := 0
	if err := wal.NewReader(st, "multibroker-test", nil).ReadTail(context.Background(), incA, faultTopic, 0, 2, func(b *segment.Batch) error {
		inWAL += len(b.Records)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inWAL != 0 {
		t.Fatalf("setup: %d of A's acks=local records reached its WAL before it was killed", inWAL)
	}

	b := startBroker(t, addrB, t.TempDir(), bk.url(""), bk.env) // seals after 10 minutes: not in this test
	pb := partitionProducer(t, addrB, stratapb.Acks_ACKS_DURABLE, true)
	for i := 0; i < 3; i++ {
		mustAck(t, rec, "B", pb, fmt.Sprintf("b-%d", i)) // the first takes partition 0 over
	}

	// A restarts on its old disk and claims partition 0 by writing.
	a = startBroker(t, addrA, dirA, bk.url(""), bk.env)
	pa = partitionProducer(t, addrA, stratapb.Acks_ACKS_DURABLE, true)
	if _, err := produceOne(rec, "A", pa, "a-after-restart", true); err != nil {
		t.Logf("A's write after its restart failed (fine): %v", err)
	}

	b.term(t)
	a.term(t)
	addrC := freeAddr(t)
	startBroker(t, addrC, t.TempDir(), bk.url(""), bk.env)
	drain(t, addrC, rec, 4)
	check(t, rec, path)
}
