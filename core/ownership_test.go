package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// start runs a broker on s with its local data in dir: records up to
// 1000 bytes, 32 KiB segments. It is closed when the test ends.
func start(t *testing.T, s tier.Store, dir string) *core.Broker {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.DataDir, cfg.Store = dir, s
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.MaxRecordBytes = 1000
	cfg.Partition.SealBytes = 32 << 10
	b, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

func mustCreate(t *testing.T, b *core.Broker, name string, partitions int32) {
	t.Helper()
	if _, err := b.CreateTopic(context.Background(), core.TopicConfig{Name: name, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
}

func values(vs ...string) []segment.Record {
	recs := make([]segment.Record, len(vs))
	for i, v := range vs {
		recs[i].Value = []byte(v)
	}
	return recs
}

func produceTo(t *testing.T, b *core.Broker, topic string, p int32, vs ...string) []int64 {
	t.Helper()
	res, err := b.Produce(context.Background(), &core.ProduceRequest{Topic: topic, Partition: p, Acks: core.AcksDurable, Records: values(vs...)})
	if err != nil {
		t.Fatalf("produce %v to %s/%d: %v", vs, topic, p, err)
	}
	return res.Offsets
}

// readAll fetches partition p from offset 0 up to the high watermark the
// broker reports.
func readAll(t *testing.T, b *core.Broker, topic string, p int32) []string {
	t.Helper()
	ctx := context.Background()
	hw, err := b.ListOffsets(ctx, topic, p, core.Position{Kind: core.StartLatest})
	if err != nil {
		t.Fatalf("list offsets of %s/%d: %v", topic, p, err)
	}
	var out []string
	for next := int64(0); next < hw; {
		var res *core.FetchResult
		err := b.Fetch(ctx, &core.FetchRequest{Topic: topic, Partition: p, Start: core.Position{Kind: core.StartOffset, Offset: next}, MaxWait: 10 * time.Millisecond},
			func(r *core.FetchResult) error { res = r; return nil })
		if err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, p, next, err)
		}
		if res == nil || len(res.Records) == 0 {
			t.Fatalf("fetch %s/%d at %d returned nothing below the high watermark %d", topic, p, next, hw)
		}
		for _, r := range res.Records {
			if r.Offset != next {
				t.Fatalf("fetch %s/%d: record at offset %d, want %d", topic, p, r.Offset, next)
			}
			out = append(out, string(r.Value))
			next++
		}
	}
	return out
}

// Issue 11, section 1: reads, describes and list-offsets on a second
// broker claim nothing: the owner keeps acking durable writes, and the
// second broker sees the durable tail that is not sealed yet, read from
// the owner's WAL objects without fencing them.
func TestReadsOnAnotherBrokerDoNotTakeOwnership(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		a := start(t, s, t.TempDir())
		b := start(t, s, t.TempDir())
		mustCreate(t, a, "t", 2)
		var want [2][]string
		for i := 0; i < 5; i++ {
			for p := int32(0); p < 2; p++ {
				v := fmt.Sprintf("p%d-%d", p, i)
				produceTo(t, a, "t", p, v)
				want[p] = append(want[p], v)
			}
			ctx := context.Background()
			if _, err := b.DescribeTopic(ctx, "t"); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 2; p++ {
				if got := readAll(t, b, "t", p); fmt.Sprint(got) != fmt.Sprint(want[p]) {
					t.Fatalf("the second broker reads %s/%d as %v, want %v (the durable tail)", "t", p, got, want[p])
				}
			}
		}
		d, err := b.DescribeTopic(context.Background(), "t")
		if err != nil {
			t.Fatal(err)
		}
		for _, pi := range d.Partitions {
			if pi.HighWatermark != 5 {
				t.Fatalf("the second broker describes partition %d with high watermark %d, want 5", pi.Partition, pi.HighWatermark)
			}
		}
		for p := int32(0); p < 2; p++ {
			m, _, err := meta.NewManifestStore(s, storetest.TopicStorageName(t, s, "t"), p).Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if m.Epoch != 1 {
				t.Fatalf("partition %d is at epoch %d after reads on another broker, want 1 (never claimed)", p, m.Epoch)
			}
		}
	})
}

// Issue 11, section 1: a broker that loses one partition to another broker
// (which fences its whole WAL incarnation) keeps serving the partitions it
// still owns, under a new incarnation, and loses nothing it acked.
func TestFencedBrokerKeepsServingWhatItStillOwns(t *testing.T) {
	s := storetest.File(t)
	a := start(t, s, t.TempDir())
	b := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 2)
	produceTo(t, a, "t", 0, "a0-0")
	produceTo(t, a, "t", 1, "a1-0")
	old := a.Incarnation()
	produceTo(t, b, "t", 0, "b0-0") // b takes partition 0 over and fences a's incarnation
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for i := 1; ; i++ {
		// a learns of the fence at its next WAL write; that write fails
		// (retryable), later ones go through a new incarnation.
		_, err = a.Produce(context.Background(), &core.ProduceRequest{Topic: "t", Partition: 1, Records: values(fmt.Sprintf("a1-%d", i))})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker a no longer takes writes to partition 1, which it still owns: %v", err)
		}
	}
	if a.Incarnation() == old {
		t.Fatal("broker a still runs its fenced incarnation")
	}
	got := readAll(t, b, "t", 1)
	if len(got) < 2 || got[0] != "a1-0" {
		t.Fatalf("partition 1 reads %v; want a1-0 first and a's later write after it", got)
	}
	if got := readAll(t, a, "t", 0); fmt.Sprint(got) != "[a0-0 b0-0]" {
		t.Fatalf("partition 0 reads %v on a, want [a0-0 b0-0]", got)
	}
}

// Issue 11, defect 3: a deleted topic's records never come back in a
// re-created topic of the same name, also on a broker that did not
// handle the delete and after a takeover from the WAL.
func TestRecreatedTopicIsANewTopic(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		a := start(t, s, t.TempDir())
		b := start(t, s, t.TempDir())
		ctx := context.Background()
		mustCreate(t, a, "t", 1)
		produceTo(t, a, "t", 0, "old-0", "old-1", "old-2", "old-3", "old-4")
		produceTo(t, b, "t", 0, "old-5") // b opens the partition too
		if _, err := a.DeleteTopic(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, a, "t", 1)
		if err := b.RefreshTopics(ctx); err != nil {
			t.Fatal(err)
		}
		offs := produceTo(t, b, "t", 0, "new-0", "new-1", "new-2")
		if offs[0] != 0 {
			t.Fatalf("the re-created topic's first record got offset %d, want 0", offs[0])
		}
		c := start(t, s, t.TempDir()) // a third broker, empty disk: reads the WAL tail
		if got := readAll(t, c, "t", 0); fmt.Sprint(got) != "[new-0 new-1 new-2]" {
			t.Fatalf("the re-created topic reads %v, want [new-0 new-1 new-2]", got)
		}
		produceTo(t, c, "t", 0, "new-3") // c takes over and recovers from b's WAL
		if got := readAll(t, c, "t", 0); fmt.Sprint(got) != "[new-0 new-1 new-2 new-3]" {
			t.Fatalf("after a takeover the re-created topic reads %v, want [new-0 new-1 new-2 new-3]", got)
		}
	})
}

// Issue 11, defect 3: a broker that did not handle a DeleteTopic stops
// acking writes to the topic once it refreshes its topics.
func TestTopicDeletedElsewhereStopsTakingWrites(t *testing.T) {
	s := storetest.File(t)
	a := start(t, s, t.TempDir())
	b := start(t, s, t.TempDir())
	ctx := context.Background()
	mustCreate(t, a, "t", 1)
	produceTo(t, b, "t", 0, "x")
	if _, err := a.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := b.RefreshTopics(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := b.Produce(ctx, &core.ProduceRequest{Topic: "t", Partition: 0, Records: values("y")})
	if !errors.Is(err, core.ErrTopicNotFound) {
		t.Fatalf("produce to a topic deleted through another broker: %v, want ErrTopicNotFound", err)
	}
}

// A follower reading a topic through a broker that did not handle its
// DeleteTopic ends with ErrTopicNotFound once that broker refreshes its
// topics, instead of waiting forever on a partition that no longer
// exists.
func TestFollowerOfTopicDeletedElsewhereEnds(t *testing.T) {
	s := tier.NewMemStore()
	a := start(t, s, t.TempDir())
	b := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 1)
	produceTo(t, a, "t", 0, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := make(chan int, 1)
	ended := make(chan error, 1)
	go func() {
		ended <- b.Fetch(ctx, &core.FetchRequest{Topic: "t", Partition: 0, Follow: true, MaxWait: 10 * time.Millisecond, Start: core.Position{Kind: core.StartOffset}},
			func(r *core.FetchResult) error {
				select {
				case first <- len(r.Records):
				default:
				}
				return nil
			})
	}()
	if n := <-first; n != 1 {
		t.Fatalf("first result has %d records; want the record", n)
	}
	if _, err := a.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := b.RefreshTopics(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; !errors.Is(err, core.ErrTopicNotFound) {
		t.Fatalf("the follower of a deleted topic ended with %v, want ErrTopicNotFound", err)
	}
}

// failGets fails every Get of one key while on.
type failGets struct {
	tier.Store
	key string
	on  *atomic.Bool
}

func (s failGets) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	if key == s.key && s.on.Load() {
		return nil, tier.ObjectInfo{}, fmt.Errorf("get refused by the test: %w", tier.ErrUnavailable)
	}
	return s.Store.Get(ctx, key)
}

// A topic whose config cannot be read during a refresh does not stop the
// refresh: another topic deleted meanwhile is still dropped.
func TestRefreshGoesOnPastATopicItCannotRead(t *testing.T) {
	s := storetest.File(t)
	a := start(t, s, t.TempDir())
	ctx := context.Background()
	mustCreate(t, a, "gone", 1)
	mustCreate(t, a, "flaky", 1)
	on := &atomic.Bool{}
	b := start(t, failGets{Store: s, key: "topics/flaky/config.json", on: on}, t.TempDir())
	produceTo(t, b, "gone", 0, "x")
	produceTo(t, b, "flaky", 0, "f")
	for _, name := range []string{"gone", "flaky"} {
		if _, err := a.DeleteTopic(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, a, "flaky", 1) // another config object: b must read it to compare identities
	on.Store(true)
	if err := b.RefreshTopics(ctx); err == nil {
		t.Fatal("a refresh that could not read a topic's config reported no error")
	}
	if _, err := b.Produce(ctx, &core.ProduceRequest{Topic: "gone", Partition: 0, Records: values("y")}); !errors.Is(err, core.ErrTopicNotFound) {
		t.Fatalf("produce to a deleted topic after a refresh that failed on another topic: %v, want ErrTopicNotFound", err)
	}
}
