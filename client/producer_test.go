package client_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/history"
)

// keyFor returns a key the producer sends to partition part of n
// (FNV-1a 32 of the key mod n, as documented on WithIdempotence).
func keyFor(part, n int32, i int) []byte {
	for j := 0; ; j++ {
		k := []byte(fmt.Sprintf("k%d-%d", i, j))
		h := fnv.New32a()
		h.Write(k)
		if int32(h.Sum32()%uint32(n)) == part {
			return k
		}
	}
}

// sent is one value given to Send and its outcome.
type sent struct {
	value string
	res   *client.Result
}

// checkHistory records the sends and their outcomes, reads every partition
// of topic from the start, and fails the test on any anomaly of the
// history checker (lost, duplicate, inconsistent, ...).
func checkHistory(t *testing.T, c *client.Client, topic string, partitions int32, all []sent) {
	t.Helper()
	ctx := context.Background()
	var events []history.Event
	for _, s := range all {
		events = append(events, history.Event{Type: history.TypeSend, Topic: topic, Value: s.value})
		if err := s.res.Wait(ctx); err != nil {
			events = append(events, history.Event{Type: history.TypeUnknown, Topic: topic, Value: s.value, Error: err.Error()})
			continue
		}
		events = append(events, history.Event{Type: history.TypeAck, Topic: topic, Value: s.value, Partition: s.res.Partition, Offset: s.res.Offset})
	}
	for p := int32(0); p < partitions; p++ {
		k, err := c.NewConsumer(ctx, topic, client.WithPartitions(p))
		if err != nil {
			t.Fatal(err)
		}
		lo, err := c.API().ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: topic, Partition: p, Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}})
		if err != nil {
			t.Fatal(err)
		}
		var next int64
		for next < lo.Offset {
			recs, err := k.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var read []history.Rec
			for _, r := range recs {
				read = append(read, history.Rec{Offset: r.Offset, Value: string(r.Value)})
				next = r.Offset + 1
			}
			events = append(events, history.Event{Type: history.TypeRead, Topic: topic, Partition: p, Records: read})
		}
		events = append(events, history.Event{Type: history.TypeHWM, Topic: topic, Partition: p, HWM: lo.Offset})
		k.Close(ctx)
	}
	if rep := history.Check(events); !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
}

// retryHold is a client interceptor for TestIdempotentRetryIsNotPassed: it
// loses the answer to one batch of partition 0 (the broker stores it) and
// holds that batch's retry until either later batches of partition 0, first
// sent while the retry waited, have been stored (they passed the retrying
// batch), or the producer has kept sending to partition 1 without sending
// anything new to partition 0, or partition 1's records are all sent.
type retryHold struct {
	mu         sync.Mutex
	target     int32          // base sequence of the batch whose answer is lost; -1 until chosen
	lost       bool           // its first attempt was stored and its answer lost
	holding    bool           // its retry is held
	seen       map[int32]bool // base sequences of partition 0 sent so far
	late       map[int32]bool // partition-0 batches first sent while the retry was held
	passed     int            // of those, stored while the retry was held
	otherAcked int            // partition-1 batches stored while the retry was held
	release    chan struct{}
	released   bool
	otherDone  chan struct{} // closed when partition 1's sender has nothing left
}

// Holding stops once this many later batches passed the retry (the
// broker then no longer remembers the retried batch), or this many
// partition-1 batches were stored meanwhile and nothing passed.
const (
	passedEnough = 9
	otherEnough  = 40
)

func (h *retryHold) check() {
	if !h.released && (h.passed >= passedEnough || h.otherAcked >= otherEnough && h.passed == 0) {
		h.released = true
		close(h.release)
	}
}

func (h *retryHold) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	pr, ok := req.(*stratapb.ProduceRequest)
	if !ok {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	h.mu.Lock()
	if pr.Partition == 0 && h.target < 0 && pr.BaseSequence >= 10 {
		h.target = pr.BaseSequence
	}
	isTarget := pr.Partition == 0 && pr.BaseSequence == h.target
	if pr.Partition == 0 && !h.seen[pr.BaseSequence] {
		h.seen[pr.BaseSequence] = true
		if h.holding && !h.released && pr.BaseSequence > h.target {
			h.late[pr.BaseSequence] = true
		}
	}
	if isTarget && h.lost && !h.holding {
		h.holding = true
		h.mu.Unlock()
		select {
		case <-h.release:
		case <-h.otherDone:
			h.mu.Lock()
			if !h.released {
				h.released = true
				close(h.release)
			}
			h.mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	h.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case isTarget && !h.lost && err == nil:
		h.lost = true
		return status.Error(codes.Unavailable, "test: the answer was lost (the batch is stored)")
	case err == nil && h.holding && !h.released && pr.Partition == 0 && h.late[pr.BaseSequence]:
		h.passed++
	case err == nil && h.holding && !h.released && pr.Partition == 1:
		h.otherAcked++
	}
	h.check()
	return err
}

// Defect 14: while a batch of the idempotent producer waits for its retry,
// later batches of its partition must not pass it: the broker remembers
// only a partition's last few batches, and a retry of a stored batch it
// no longer remembers is refused ("sequence too old") although it is
// stored. Every record is acked, stored once, at its acked offset.
func TestIdempotentRetryIsNotPassedByLaterBatches(t *testing.T) {
	tb := startTestBroker(t)
	h := &retryHold{target: -1, seen: map[int32]bool{}, late: map[int32]bool{}, release: make(chan struct{}), otherDone: make(chan struct{})}
	c := tb.dial(t, h.intercept)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "o", 2); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("o", client.WithBatchSize(5), client.WithLinger(time.Millisecond), client.WithRetries(5, 10*time.Millisecond))
	const perPartition = 500
	var (
		mu  sync.Mutex
		all []sent
		wg  sync.WaitGroup
	)
	for part := int32(0); part < 2; part++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sent
			for i := range perPartition {
				v := fmt.Sprintf("p%d-%04d", part, i)
				r, err := p.Send(ctx, client.Record{Key: keyFor(part, 2, i), Value: []byte(v)})
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, sent{v, r})
			}
			if part == 1 {
				for _, s := range mine {
					s.res.Wait(ctx)
				}
				close(h.otherDone)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	lost, passed, other := h.lost, h.passed, h.otherAcked
	h.mu.Unlock()
	t.Logf("while the retry was held, %d batches of its partition sent meanwhile and %d of the other partition were stored", passed, other)
	if !lost {
		t.Fatal("the test never lost an answer")
	}
	for _, s := range all {
		if err := s.res.Wait(ctx); err != nil {
			t.Fatalf("record %s: %v (%d later batches of its partition passed the retrying one)", s.value, err, passed)
		}
	}
	checkHistory(t, c, "o", 2, all)
}

// lostAfterFailure is a client interceptor for
// TestIdempotentProducerNeverSendsWithoutProducerID: it refuses the first
// batch for good (never sending it) once the test lets it go, and loses the
// answer to the first attempt of the next batch (which is stored).
type lostAfterFailure struct {
	mu          sync.Mutex
	produces    int
	outstanding int // produce calls under way
	violations  []string
	releaseA    chan struct{}
}

func (l *lostAfterFailure) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	l.mu.Lock()
	if method == stratapb.Strata_InitProducer_FullMethodName && l.outstanding > 0 {
		l.violations = append(l.violations, fmt.Sprintf("InitProducer called while %d produce requests were unresolved", l.outstanding))
	}
	pr, ok := req.(*stratapb.ProduceRequest)
	if !ok {
		l.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if pr.ProducerId == 0 {
		l.violations = append(l.violations, fmt.Sprintf("a batch of %d records went out without a producer id", len(pr.Records)))
	}
	l.produces++
	n := l.produces
	l.outstanding++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.outstanding--
		l.mu.Unlock()
	}()
	switch n {
	case 1:
		<-l.releaseA
		return status.Error(codes.Internal, "test: batch A is refused for good (it was never sent)")
	case 2:
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "test: the answer was lost (the batch is stored)")
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Defect 15: after a batch fails for good, the next batch (already waiting
// when the failure came) must not go out without a producer id: if it did,
// its retry after a lost answer would be stored twice. It waits for a new
// producer id, taken once the old id's batches are resolved.
func TestIdempotentProducerNeverSendsWithoutProducerID(t *testing.T) {
	tb := startTestBroker(t)
	l := &lostAfterFailure{releaseA: make(chan struct{})}
	c := tb.dial(t, l.intercept)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "f", 1); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("f", client.WithBatchSize(2), client.WithLinger(time.Hour), client.WithRetries(3, 10*time.Millisecond))
	a1, err := p.Send(ctx, client.Record{Value: []byte("a1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, client.Record{Value: []byte("a2")}); err != nil { // a full batch: sent now, held
		t.Fatal(err)
	}
	b1, err := p.Send(ctx, client.Record{Value: []byte("b1")}) // waits for its linger
	if err != nil {
		t.Fatal(err)
	}
	close(l.releaseA)
	if err := a1.Wait(ctx); err == nil {
		t.Fatal("batch A was acked although the test refused it")
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b1.Wait(ctx); err != nil {
		t.Fatalf("b1: %v", err)
	}
	l.mu.Lock()
	violations := l.violations
	l.mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	k, err := c.NewConsumer(ctx, "f", client.WithPartitions(0))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := k.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Value))
	}
	if len(got) != 1 || got[0] != "b1" || recs[0].Offset != b1.Offset {
		t.Fatalf("partition 0 holds %q, want only b1 once, at its acked offset %d", got, b1.Offset)
	}
}

// windowProbe is a client interceptor for TestIdempotentWindowPerPartition:
// it holds the answer to one stored batch of partition 0 and counts the
// later batches of partition 0 sent before that answer is returned.
type windowProbe struct {
	mu         sync.Mutex
	target     int32 // base sequence of the batch whose answer is held; -1 until chosen
	unresolved bool  // the target's answer has not been returned yet
	seen       map[int32]bool
	later      int // partition-0 batches first sent while the target was unresolved
	otherAcked int // partition-1 batches stored while the target was unresolved
	// progress counts the records partition 0's sender has queued; quiet
	// counts the partition-1 batches stored since it last changed.
	progress     atomic.Int64
	lastProgress int64
	quiet        int
	release      chan struct{}
	released     bool
	otherDone    chan struct{}
}

// quietEnough partition-1 batches stored while partition 0's sender made
// no progress show that partition 0 stopped sending.
const quietEnough = 100

// check releases the held answer once it is clear how many later batches
// of partition 0 get sent: more than 8 did, or partition 0's sender has
// been stuck while quietEnough batches of partition 1 were stored.
func (w *windowProbe) check() {
	if !w.released && (w.later > 8 || w.quiet >= quietEnough) {
		w.released = true
		close(w.release)
	}
}

func (w *windowProbe) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	pr, ok := req.(*stratapb.ProduceRequest)
	if !ok {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	w.mu.Lock()
	isTarget := false
	if pr.Partition == 0 && !w.seen[pr.BaseSequence] {
		w.seen[pr.BaseSequence] = true
		switch {
		case w.target < 0 && pr.BaseSequence >= 10:
			w.target, w.unresolved, isTarget = pr.BaseSequence, true, true
		case w.unresolved && pr.BaseSequence > w.target:
			w.later++
		}
	}
	w.check()
	w.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if isTarget {
		select {
		case <-w.release:
		case <-w.otherDone:
		}
		w.mu.Lock()
		w.unresolved = false
		w.mu.Unlock()
		return err
	}
	w.mu.Lock()
	if err == nil && w.unresolved && pr.Partition == 1 {
		w.otherAcked++
		if n := w.progress.Load(); n != w.lastProgress {
			w.lastProgress, w.quiet = n, 0
		} else {
			w.quiet++
		}
	}
	w.check()
	w.mu.Unlock()
	return err
}

// Defect 14: the idempotent producer never has more than 8 batches of one
// partition outstanding, counted from the oldest one not yet answered,
// whatever WithMaxInFlight says: the broker recognizes a retry only among
// a partition's last 8 batches. The other partitions keep flowing.
func TestIdempotentWindowPerPartition(t *testing.T) {
	tb := startTestBroker(t)
	w := &windowProbe{target: -1, seen: map[int32]bool{}, release: make(chan struct{}), otherDone: make(chan struct{})}
	c := tb.dial(t, w.intercept)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "w", 2); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer("w", client.WithBatchSize(5), client.WithLinger(time.Millisecond), client.WithMaxInFlight(16))
	var (
		mu  sync.Mutex
		all []sent
		wg  sync.WaitGroup
	)
	for part := int32(0); part < 2; part++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sent
			n := 500
			if part == 1 {
				n = 2000 // the clock while partition 0 waits
			}
			for i := range n {
				v := fmt.Sprintf("p%d-%04d", part, i)
				r, err := p.Send(ctx, client.Record{Key: keyFor(part, 2, i), Value: []byte(v)})
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, sent{v, r})
				if part == 0 {
					w.progress.Add(1)
				}
			}
			if part == 1 {
				for _, s := range mine {
					s.res.Wait(ctx)
				}
				close(w.otherDone)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	later, other := w.later, w.otherAcked
	w.mu.Unlock()
	t.Logf("while one batch of partition 0 was unanswered, %d later batches of it were sent and %d of partition 1 stored", later, other)
	if later > 7 {
		t.Fatalf("%d later batches of partition 0 were sent while one of its batches was unanswered; want at most 7 (8 in all)", later)
	}
	if other == 0 {
		t.Fatal("partition 1 did not flow while partition 0 waited")
	}
	checkHistory(t, c, "w", 2, all)
}
