package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/partitioner"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// dedupClock is a settable broker clock for the partitions.
type dedupClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *dedupClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *dedupClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// idRec is a record with message id id ("" for none).
func idRec(id string) segment.Record {
	r := segment.Record{Value: []byte("v-" + id)}
	if id != "" {
		r.Headers = []segment.Header{{Key: HeaderMsgID, Value: []byte(id)}}
	}
	return r
}

func produceIDs(t *testing.T, b *Broker, topic string, part int32, ids ...string) *ProduceResult {
	t.Helper()
	req := &ProduceRequest{Topic: topic, Partition: part}
	for _, id := range ids {
		req.Records = append(req.Records, idRec(id))
	}
	res, err := b.Produce(context.Background(), req)
	if err != nil {
		t.Fatalf("produce %q: %v", ids, err)
	}
	return res
}

func latest(t *testing.T, b *Broker, topic string, p int32) int64 {
	t.Helper()
	n, err := b.ListOffsets(context.Background(), topic, p, Position{Kind: StartLatest})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A second record with a stored message id is answered with the first
// copy's offset and not stored, beside records stored as usual; after the
// topic's window it is stored again.
func TestDedupProduceSameIDTwice(t *testing.T) {
	clk := &dedupClock{now: time.Now()}
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Partition.Clock = clk.Now
	b := newBroker(t, cfg)
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1, DedupWindowMs: 10_000}); err != nil {
		t.Fatal(err)
	}
	if r := produceIDs(t, b, "t", 0, "a"); r.Offsets[0] != 0 || r.Deduplicated != nil {
		t.Fatalf("first copy: %+v", r)
	}
	r := produceIDs(t, b, "t", 0, "a", "b", "", "b")
	if !slices.Equal(r.Offsets, []int64{0, 1, 2, 1}) || !slices.Equal(r.Deduplicated, []bool{true, false, false, true}) {
		t.Fatalf("second request: offsets %v, deduplicated %v; want [0 1 2 1], [true false false true]", r.Offsets, r.Deduplicated)
	}
	if n := latest(t, b, "t", 0); n != 3 {
		t.Fatalf("partition ends at %d, want 3: the duplicates are not stored", n)
	}
	clk.Add(10*time.Second + time.Millisecond)
	if r := produceIDs(t, b, "t", 0, "a"); r.Offsets[0] != 3 || r.Deduplicated != nil {
		t.Fatalf("after the window: %+v, want it stored again at 3", r)
	}
}

// Of N concurrent produce requests with one message id exactly one copy
// is stored, and every request is answered with its offset.
func TestDedupConcurrentProducesStoreOne(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	if _, err := b.CreateTopic(context.Background(), TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	results := make([]*ProduceResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.Produce(context.Background(), &ProduceRequest{Topic: "t", Partition: -1, Records: []segment.Record{idRec("once")}})
		}()
	}
	wg.Wait()
	stored := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.Offsets[0] != 0 {
			t.Fatalf("request %d answered with offset %d, want 0", i, r.Offsets[0])
		}
		if r.Deduplicated == nil {
			stored++
		}
	}
	if end := latest(t, b, "t", 0); stored != 1 || end != 1 {
		t.Fatalf("%d requests stored a copy and the partition ends at %d; want exactly one copy", stored, end)
	}
}

// A broker that restarts on the same bucket with an empty data directory
// (its disk lost) still deduplicates an id stored within the window.
func TestDedupSurvivesRestartWithDiskLost(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		b1, err := New(testConfig(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b1.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 4}); err != nil {
			t.Fatal(err)
		}
		first := produceIDs(t, b1, "t", -1, "order-1", "order-2")
		if err := b1.Close(ctx); err != nil {
			t.Fatal(err)
		}
		b2 := newBroker(t, testConfig(t, s)) // a fresh data dir
		r := produceIDs(t, b2, "t", -1, "order-2", "order-3", "order-1")
		if !slices.Equal(r.Deduplicated, []bool{true, false, true}) {
			t.Fatalf("after the restart: deduplicated %v, want [true false true]", r.Deduplicated)
		}
		if r.Partitions[0] != first.Partitions[1] || r.Offsets[0] != first.Offsets[1] ||
			r.Partitions[2] != first.Partitions[0] || r.Offsets[2] != first.Offsets[0] {
			t.Fatalf("duplicates answered at %v/%v, want the first copies' %v/%v", r.Partitions, r.Offsets, first.Partitions, first.Offsets)
		}
		var total int64
		for p := range int32(4) {
			total += latest(t, b2, "t", p)
		}
		if total != 3 {
			t.Fatalf("the topic holds %d records, want 3", total)
		}
	})
}

// Keyless records with one message id land in one partition (the hash of
// the id), so their copies meet where they are deduplicated.
func TestDedupKeylessRecordsPartitionedByID(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	if _, err := b.CreateTopic(context.Background(), TopicConfig{Name: "t", Partitions: 8}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		id := fmt.Sprint("id-", i)
		want := partitioner.ForKey([]byte(id), 8)
		for try := range 5 {
			r := produceIDs(t, b, "t", -1, id)
			if r.Partitions[0] != want {
				t.Fatalf("%s, copy %d, went to partition %d, want %d", id, try, r.Partitions[0], want)
			}
			if (r.Deduplicated != nil) != (try > 0) {
				t.Fatalf("%s, copy %d: deduplicated %v", id, try, r.Deduplicated)
			}
		}
	}
	// A keyed record goes by its key, id or not.
	r, err := b.Produce(context.Background(), &ProduceRequest{Topic: "t", Partition: -1, Records: []segment.Record{{Key: []byte("k"), Headers: []segment.Header{{Key: HeaderMsgID, Value: []byte("id-0")}}}}})
	if err != nil || r.Partitions[0] != partitioner.ForKey([]byte("k"), 8) {
		t.Fatalf("keyed record: %+v, %v", r, err)
	}
}

// A message id over 256 bytes, or an empty one, is refused and nothing
// of the request is stored; a window out of range is refused on create
// and on load.
func TestDedupBadInputRefused(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{strings.Repeat("x", MaxMsgIDBytes+1), ""} {
		bad := segment.Record{Headers: []segment.Header{{Key: HeaderMsgID, Value: []byte(id)}}}
		_, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: []segment.Record{idRec("fine"), bad}})
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "record 1 has an invalid strata-msg-id header") || !strings.Contains(err.Error(), "nothing was written") {
			t.Fatalf("id of %d bytes: %v; want ErrInvalidArgument naming record 1", len(id), err)
		}
	}
	if n := latest(t, b, "t", 0); n != 0 {
		t.Fatalf("partition ends at %d, want nothing stored", n)
	}
	for _, ms := range []int64{-1, MaxDedupWindowMs + 1} {
		cfg := TopicConfig{Name: "bad", Partitions: 1, DedupWindowMs: ms}
		_, err := b.CreateTopic(ctx, cfg)
		says := fmt.Sprintf("dedup_window_ms %d is out of range: use 0 (the default, 2m0s) or 1 to 86400000 (24 hours)", ms)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), says) {
			t.Fatalf("window %d: %v; want %q", ms, err, says)
		}
		data, _ := json.Marshal(cfg)
		if _, err := decodeTopicConfig("bad", data); err == nil || !strings.Contains(err.Error(), says) {
			t.Fatalf("stored window %d: %v", ms, err)
		}
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "max", Partitions: 1, DedupWindowMs: MaxDedupWindowMs}); err != nil {
		t.Fatal(err)
	}
}
