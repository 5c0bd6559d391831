package core

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/tier"
)

// gateStore holds the calls hold matches until release is closed, and
// reports each one held on entered.
type gateStore struct {
	tier.Store
	hold    func(op, key string) bool
	entered chan string
	release chan struct{}
	once    sync.Once
}

func newGateStore(hold func(op, key string) bool) *gateStore {
	return &gateStore{Store: tier.NewMemStore(), hold: hold, entered: make(chan string, 16), release: make(chan struct{})}
}

func (s *gateStore) gate(ctx context.Context, op, key string) error {
	if !s.hold(op, key) {
		return nil
	}
	s.entered <- op + " " + key
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *gateStore) open() { s.once.Do(func() { close(s.release) }) }

func (s *gateStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	if err := s.gate(ctx, "get", key); err != nil {
		return nil, tier.ObjectInfo{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *gateStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, n int64) (tier.ObjectInfo, error) {
	if err := s.gate(ctx, "put", key); err != nil {
		return tier.ObjectInfo{}, err
	}
	return s.Store.PutIfAbsent(ctx, key, r, n)
}

func (s *gateStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, n int64) (tier.ObjectInfo, error) {
	if err := s.gate(ctx, "put", key); err != nil {
		return tier.ObjectInfo{}, err
	}
	return s.Store.PutIfMatch(ctx, key, etag, r, n)
}

// hangGuard is how long a call that must not wait on a held store call
// may take before the test calls it blocked (a guard against a hang, not
// a timing goal: the call needs no I/O that is held).
const hangGuard = 30 * time.Second

func mustReturn(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(hangGuard):
		t.Fatalf("%s is blocked behind a store call of another request: a lock is held across I/O", what)
	}
}

// Loading a topic reads the bucket without the broker-wide lock: while
// one topic's config GET hangs, requests on a loaded topic go on.
func TestTopicLoadHoldsNoLockAcrossItsRead(t *testing.T) {
	ctx := context.Background()
	var armed sync.Mutex
	slowArmed := false
	s := newGateStore(func(op, key string) bool {
		armed.Lock()
		defer armed.Unlock()
		return slowArmed && op == "get" && strings.Contains(key, "slow")
	})
	defer s.open()
	b := newBroker(t, testConfig(t, s))
	for _, name := range []string{"fast", "slow"} {
		if _, err := b.CreateTopic(ctx, TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	produceValues(t, b, "fast", 0, 3)
	armed.Lock()
	slowArmed = true
	armed.Unlock()
	slow := make(chan error, 1)
	go func() {
		_, err := b.ListOffsets(ctx, "slow", 0, Position{Kind: StartLatest})
		slow <- err
	}()
	<-s.entered // the slow topic's config GET hangs
	mustReturn(t, "a produce to a loaded topic", func() error {
		_, err := b.Produce(ctx, &ProduceRequest{Topic: "fast", Partition: 0, Acks: AcksNone, Records: produceRecords(1)})
		return err
	})
	s.open()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// A load that read a topic's config before the topic was deleted does not
// cache the deleted topic: it reads again and finds it gone.
func TestTopicLoadRacingADeleteReadsAgain(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var raced atomic.Bool
	testHookTopicRead = func(name string) {
		if raced.CompareAndSwap(false, true) {
			// Between this load's read and its insert, another request
			// loads and deletes the topic.
			if _, err := b.DeleteTopic(ctx, name); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { testHookTopicRead = nil }()
	if _, err := b.loadTopic(ctx, "t"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("load racing a delete: %v; want ErrTopicNotFound", err)
	}
	b.mu.Lock()
	_, cached := b.topics["t"]
	b.mu.Unlock()
	if cached {
		t.Fatal("the deleted topic is cached")
	}
}

// A commit's compare-and-swap holds only its group's write lock: while it
// hangs in the store, the group's members heartbeat and other groups join.
func TestGroupCommitHoldsNoGroupsLockAcrossItsWrite(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool // the join's takeover write passes; the commit's hangs
	s := newGateStore(func(op, key string) bool {
		return armed.Load() && op == "put" && strings.HasPrefix(key, "groups/slow/")
	})
	defer s.open()
	b := newBroker(t, testConfig(t, s))
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "t", 0, 10)
	a, err := b.JoinGroup(ctx, "slow", "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	commit := make(chan error, 1)
	go func() { commit <- b.CommitOffsets(ctx, "slow", a.MemberID, a.Generation, map[int32]int64{0: 7}) }()
	<-s.entered // the commit's PUT hangs
	mustReturn(t, "a heartbeat of the committing group", func() error {
		_, err := b.Heartbeat("slow", a.MemberID)
		return err
	})
	mustReturn(t, "a join of another group", func() error {
		_, err := b.JoinGroup(ctx, "other", "t", time.Hour)
		return err
	})
	mustReturn(t, "a fetch by the committing group's member", func() error {
		return b.Fetch(ctx, &FetchRequest{Topic: "t", Group: "slow", MemberID: a.MemberID, Generation: a.Generation}, func(*FetchResult) error { return nil })
	})
	s.open()
	if err := <-commit; err != nil {
		t.Fatal(err)
	}
	if _, got, err := b.FetchCommitted(ctx, "slow"); err != nil || got[0] != 7 {
		t.Fatalf("committed %v, %v; want 7", got, err)
	}
}

func (s *gateStore) Put(ctx context.Context, key string, r io.Reader, n int64) (tier.ObjectInfo, error) {
	if err := s.gate(ctx, "put", key); err != nil {
		return tier.ObjectInfo{}, err
	}
	return s.Store.Put(ctx, key, r, n)
}

// Close seals partitions without holding their topic's lock: while the
// seal of partition 0 hangs in the store, a follower of partition 1 of
// the same topic (read from the bucket, written by another broker) goes
// on receiving records.
func TestCloseHoldsNoTopicLockWhileSealing(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool
	s := newGateStore(func(op, key string) bool {
		return armed.Load() && op == "put" && strings.Contains(key, "/partitions/0/segments/")
	})
	defer s.open()
	a, err := New(testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	other := newBroker(t, testConfig(t, s))
	if _, err := a.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2, Compression: "none"}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, a, "t", 0, 3) // a owns partition 0, unsealed
	got := make(chan int, 16)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	followed := make(chan error, 1)
	go func() {
		followed <- a.Fetch(fctx, &FetchRequest{Topic: "t", Partition: 1, Follow: true, MaxWait: 10 * time.Millisecond},
			func(r *FetchResult) error { got <- len(r.Records); return nil })
	}()
	produceValues(t, other, "t", 1, 2)
	<-got // the follower runs
	armed.Store(true)
	closed := make(chan error, 1)
	go func() { closed <- a.Close(ctx) }()
	<-s.entered // a's seal of partition 0 hangs
	produceValues(t, other, "t", 1, 2)
	select {
	case n := <-got:
		if n == 0 {
			t.Fatal("an empty result")
		}
	case err := <-followed:
		t.Fatalf("the follower ended: %v", err)
	case <-time.After(hangGuard):
		t.Fatal("the follower of partition 1 is blocked while Close seals partition 0: a topic lock is held across the seal")
	}
	stop()
	<-followed
	s.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// DeleteTopic racing Close: whichever takes a partition first closes it,
// and nothing is stored under the topic once both returned.
func TestDeleteTopicRacingCloseLeavesNoObjects(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool
	s := newGateStore(func(op, key string) bool {
		return armed.Load() && op == "put" && strings.Contains(key, "/segments/")
	})
	defer s.open()
	b, err := New(testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1, Compression: "none"}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "t", 0, 3)
	top, err := b.loadTopic(ctx, "t") // DeleteTopic's own load is done before Close
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	<-s.entered // Close took the partition and its seal hangs
	deleted := make(chan error, 1)
	go func() {
		// What DeleteTopic does after its load (the broker is closing, so
		// a new load is refused).
		if err := b.cfg.Store.Delete(ctx, "topics/t/config.json"); err != nil {
			deleted <- err
			return
		}
		b.removeTopic(top)
		_, err := b.deleteTopicData(ctx, top)
		deleted <- err
	}()
	s.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	var left []string
	s.Store.List(ctx, "topics/t/", func(o tier.ObjectInfo) error { left = append(left, o.Key); return nil })
	if len(left) > 0 {
		t.Fatalf("objects left under the deleted topic: %v", left)
	}
}
