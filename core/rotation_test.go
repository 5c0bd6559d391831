package core

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/ingest/wal"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// hangStore makes one manifest write hang until its caller gives up, and
// then the read that settles it (tier's read-back after a canceled write,
// which runs on a context of its own for up to 10 s): a partition whose
// seal was in flight when it was dropped takes that long to close. It
// records a manifest write (a claim) that arrives meanwhile.
type hangStore struct {
	tier.Store
	armed    atomic.Bool   // the next manifest PutIfMatch hangs
	holdNext atomic.Bool   // the next manifest Get hangs
	holding  atomic.Bool   // that Get is hanging
	putHung  chan struct{} // closed when the armed put hangs
	held     chan struct{} // closed when the Get hangs

	mu            sync.Mutex
	claimedMidway []string // manifest writes while the Get hung
}

func isManifest(key string) bool { return strings.HasSuffix(key, "/manifest.json") }

func (s *hangStore) PutIfMatch(ctx context.Context, key, etag string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if isManifest(key) {
		if s.holding.Load() {
			s.mu.Lock()
			s.claimedMidway = append(s.claimedMidway, key)
			s.mu.Unlock()
		}
		if s.armed.CompareAndSwap(true, false) {
			close(s.putHung)
			<-ctx.Done()
			s.holdNext.Store(true)
			return tier.ObjectInfo{}, ctx.Err()
		}
	}
	return s.Store.PutIfMatch(ctx, key, etag, r, size)
}

func (s *hangStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	if isManifest(key) && s.holdNext.CompareAndSwap(true, false) {
		s.holding.Store(true)
		close(s.held)
		<-ctx.Done()
		s.holding.Store(false)
		return nil, tier.ObjectInfo{}, ctx.Err()
	}
	return s.Store.Get(ctx, key)
}

// testBroker starts a broker on s whose partitions seal a file once it
// holds sealBytes (1: at every produce).
func testBroker(t *testing.T, s tier.Store, sealBytes int64) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Store = t.TempDir(), s
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Partition.SealBytes = sealBytes
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// createTopic makes a one-partition topic. Its segments are not
// compressed: the zstd encoder is a process-wide pool whose goroutines
// must not start inside a synctest bubble.
func createTopic(t *testing.T, b *Broker, name string) {
	t.Helper()
	if _, err := b.CreateTopic(context.Background(), TopicConfig{Name: name, Partitions: 1, Compression: "none"}); err != nil {
		t.Fatal(err)
	}
}

func produce(ctx context.Context, b *Broker, topic string, p int32, v string) error {
	_, err := b.Produce(ctx, &ProduceRequest{Topic: topic, Partition: p, Acks: AcksDurable,
		Records: []segment.Record{{Value: []byte(v)}}})
	return err
}

// When a fenced incarnation's partitions are dropped, a partition still
// closing (its sealer stuck in a store call) must not be reopened on the
// same local directory until it is closed: two Partitions on one
// directory each append, roll and trim the same files, and the reopened
// one may claim and recover while the old one still seals.
func TestDroppedPartitionIsNotReopenedWhileItCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := &hangStore{Store: tier.NewMemStore(), putHung: make(chan struct{}), held: make(chan struct{})}
		b := testBroker(t, s, 1)
		defer b.Close(ctx)
		createTopic(t, b, "t")
		if err := produce(ctx, b, "t", 0, "v0"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // its seal is committed
		s.armed.Store(true)
		if err := produce(ctx, b, "t", 0, "v1"); err != nil {
			t.Fatal(err)
		}
		<-s.putHung // the sealer is stuck committing v1's segment

		// Another broker fences this incarnation; the next write learns
		// it, and the broker drops the partition to reopen it under a
		// new incarnation. The drop stops the sealer, whose settling read
		// then hangs.
		if _, err := wal.NewReader(s, "another-broker", nil).Fence(ctx, b.Incarnation()); err != nil {
			t.Fatal(err)
		}
		if err := produce(ctx, b, "t", 0, "v2"); err == nil {
			t.Fatal("a write acked by a fenced incarnation")
		}
		<-s.held

		if err := produce(ctx, b, "t", 0, "v3"); err != nil {
			t.Fatalf("write after the partition reopened: %v", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.claimedMidway) > 0 {
			t.Fatalf("the partition was reopened and claimed (%v) while its previous Partition was still closing on the same directory", s.claimedMidway)
		}
	})
}

// A partition opened while the broker is replacing its fenced
// incarnation (here: of a topic first used at that moment, so not among
// the topics the broker had) gets the fenced writer; it must be dropped
// and reopened like the others, or it refuses every write until the
// broker restarts.
func TestPartitionOpenedDuringRotationIsReopened(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := tier.NewMemStore()
		b := testBroker(t, s, 1)
		defer b.Close(ctx)
		createTopic(t, b, "a")
		createTopic(t, b, "b")
		if err := produce(ctx, b, "a", 0, "a0"); err != nil {
			t.Fatal(err)
		}
		fenced := b.Incarnation()
		testHookFenceNoticed = func() {
			// Topic b is loaded now and its partition opened under the
			// fenced writer, which refuses the write.
			produce(ctx, b, "b", 0, "b0")
		}
		defer func() { testHookFenceNoticed = nil }()
		if _, err := wal.NewReader(s, "another-broker", nil).Fence(ctx, fenced); err != nil {
			t.Fatal(err)
		}
		// The next WAL write finds the fence (the record may still be
		// acked: the sealer commits it to a segment, which the fence does
		// not stop while the partition is ours).
		produce(ctx, b, "a", 0, "a1")
		time.Sleep(time.Second) // fake time: the WAL flush runs and fails
		synctest.Wait()         // the new incarnation runs and the partitions are dropped
		if b.Incarnation() == fenced {
			t.Fatal("the broker still runs its fenced incarnation")
		}
		if err := produce(ctx, b, "a", 0, "a2"); err != nil {
			t.Fatalf("write to a/0 under the new incarnation: %v", err)
		}
		if err := produce(ctx, b, "b", 0, "b1"); err != nil {
			t.Fatalf("write to b/0, opened while the incarnation was replaced: %v", err)
		}
	})
}

// A durable write that fails because the incarnation was fenced is on
// this broker's disk, and when the broker still owns the partition its
// next incarnation keeps and seals it: the error must say the outcome is
// unknown, not that the records can no longer be stored.
func TestFencedWriteErrorSaysOutcomeUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := tier.NewMemStore()
		b := testBroker(t, s, 64<<20) // no seal before the fence is noticed
		defer b.Close(ctx)
		createTopic(t, b, "t")
		if err := produce(ctx, b, "t", 0, "v0"); err != nil {
			t.Fatal(err)
		}
		if _, err := wal.NewReader(s, "another-broker", nil).Fence(ctx, b.Incarnation()); err != nil {
			t.Fatal(err)
		}
		failed := produce(ctx, b, "t", 0, "v1")
		if failed == nil {
			t.Fatal("a write acked by a fenced incarnation")
		}
		synctest.Wait() // the new incarnation runs and the partition is dropped
		if err := produce(ctx, b, "t", 0, "v2"); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		top := b.topics["t"]
		b.mu.Unlock()
		v, err := b.view(ctx, top, 0)
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.reader.Read(ctx, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res.Records {
			got = append(got, string(r.Value))
		}
		if strings.Join(got, " ") != "v0 v1 v2" {
			t.Fatalf("the partition reads %v, want [v0 v1 v2] (v1 kept from the disk)", got)
		}
		msg := failed.Error()
		if strings.Contains(msg, "can no longer be stored") || !strings.Contains(msg, "outcome is unknown") {
			t.Fatalf("the refused write was stored, but its error says %q; want it to say the outcome is unknown", msg)
		}
	})
}

// readPartition reads partition 0 of topic name on b as a consumer would,
// from offset 0 to the high watermark.
func readPartition(t *testing.T, b *Broker, name string) []string {
	t.Helper()
	ctx := context.Background()
	top, err := b.loadTopic(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.view(ctx, top, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for next := int64(0); ; {
		res, err := v.reader.Read(ctx, next, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			return got
		}
		for _, r := range res.Records {
			got = append(got, string(r.Value))
		}
		next = res.NextOffset
	}
}

// A broker whose partition another broker took over while it was idle
// notices the fence without a write (its WAL writer probes), replaces its
// incarnation and drops the partition, so its readers see the new owner's
// records instead of the old tail forever.
func TestIdleBrokerTakenOverServesFreshReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := tier.NewMemStore()
		a := testBroker(t, s, 64<<20)
		defer a.Close(ctx)
		b := testBroker(t, s, 64<<20)
		defer b.Close(ctx)
		createTopic(t, a, "t")
		if err := produce(ctx, a, "t", 0, "from-a"); err != nil {
			t.Fatal(err)
		}
		if err := produce(ctx, b, "t", 0, "from-b"); err != nil { // b takes the partition over
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // fake time: a stays idle
		synctest.Wait()
		if got := strings.Join(readPartition(t, a, "t"), " "); got != "from-a from-b" {
			t.Fatalf("the idle, taken-over broker reads %q, want %q", got, "from-a from-b")
		}
	})
}
