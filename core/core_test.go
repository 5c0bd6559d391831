package core

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/fetch"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

func testConfig(t *testing.T, s tier.Store) Config {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Store = t.TempDir(), s
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

func newBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

// fitResult keeps a result within its budget, counting the per-record
// overhead, and always keeps one record.
func TestFitRecords(t *testing.T) {
	res := &fetch.Result{NextOffset: 10}
	for i := int64(0); i < 10; i++ {
		res.Records = append(res.Records, segment.Record{Offset: i})
	}
	fitResult(res, 3*RecordOverheadBytes)
	if len(res.Records) != 3 || res.NextOffset != 3 {
		t.Fatalf("%d records, next %d; want 3 empty records in 192 bytes, next 3", len(res.Records), res.NextOffset)
	}
	big := &fetch.Result{Records: []segment.Record{{Offset: 5, Value: make([]byte, 1000)}, {Offset: 6}}, NextOffset: 7}
	fitResult(big, 10)
	if len(big.Records) != 1 || big.NextOffset != 6 {
		t.Fatalf("%d records, next %d; want the first record alone", len(big.Records), big.NextOffset)
	}
}

// fitResult counts stored blocks by their stored bytes: blocks past the
// budget go, then the records after them; the first block always stays.
func TestFitStoredBlocks(t *testing.T) {
	blk := func(first, last int64, n int) fetch.StoredBlock {
		return fetch.StoredBlock{Data: make([]byte, n), FirstOffset: first, LastOffset: last, Records: last - first + 1}
	}
	for _, tc := range []struct {
		name            string
		budget          int64
		blocks, records int
		next            int64
	}{
		{"all fit", 10_000, 3, 2, 32},
		{"two blocks", 2*(1000+fetch.StoredBlockOverhead) + 10, 2, 0, 20},
		{"the first block alone", 10, 1, 0, 10},
		{"blocks and one record", 3*(1000+fetch.StoredBlockOverhead) + RecordOverheadBytes, 3, 1, 31},
	} {
		res := &fetch.Result{Blocks: []fetch.StoredBlock{blk(0, 9, 1000), blk(10, 19, 1000), blk(20, 29, 1000)},
			Records: []segment.Record{{Offset: 30}, {Offset: 31}}, NextOffset: 32}
		fitResult(res, tc.budget)
		if len(res.Blocks) != tc.blocks || len(res.Records) != tc.records || res.NextOffset != tc.next {
			t.Errorf("%s: %d blocks, %d records, next %d; want %d, %d, %d", tc.name, len(res.Blocks), len(res.Records), res.NextOffset, tc.blocks, tc.records, tc.next)
		}
	}
}

// The stored topic config is the JSON older brokers wrote (json.Marshal
// of the API's TopicConfig with "topic_id" beside its fields): the same
// bytes out, and such bytes load.
func TestStoredTopicFormat(t *testing.T) {
	const stored = `{"name":"orders","partitions":3,"retention_ms":60000,"retention_bytes":1024,"compression":"zstd","segment_bytes":65536,"topic_id":"0123abcd"}`
	cfg := &TopicConfig{Name: "orders", Partitions: 3, RetentionMs: 60000, RetentionBytes: 1024, Compression: "zstd", SegmentBytes: 65536}
	if got := string(encodeTopicConfig(cfg, "0123abcd")); got != stored {
		t.Fatalf("stored as\n%s\nwant\n%s", got, stored)
	}
	st, err := decodeTopicConfig("orders", []byte(stored))
	if err != nil || !reflect.DeepEqual(*st.TopicConfig, *cfg) || st.ID != "0123abcd" {
		t.Fatalf("decoded %+v (id %q), %v", st.TopicConfig, st.ID, err)
	}
	// Written before identities existed, and with the defaults omitted.
	st, err = decodeTopicConfig("old", []byte(`{"name":"old","partitions":1}`))
	if err != nil || st.ID != "" || st.Partitions != 1 {
		t.Fatalf("old config: %+v, %v", st, err)
	}
}

// Sizes out of range are refused on create and, in a stored config
// (written by an older broker), on load, with the same words.
func TestTopicSizeRanges(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  TopicConfig
		says string
	}{
		{TopicConfig{RetentionMs: math.MaxInt64}, "retention_ms 9223372036854775807 is out of range: use 0 (keep forever) or 1 to 3155760000000 (100 years)"},
		{TopicConfig{RetentionMs: 18446744073710}, "retention_ms 18446744073710 is out of range"},
		{TopicConfig{RetentionMs: -1}, "retention_ms -1 is out of range"},
		{TopicConfig{RetentionBytes: math.MaxInt64}, "retention_bytes 9223372036854775807 is out of range: use 0 (no size limit) or 1 to 1152921504606846976 (1 EiB)"},
		{TopicConfig{SegmentBytes: 1}, "segment_bytes 1 is out of range: use 0 (the broker's default) or 65536 (64 KiB) to 1073741824 (1 GiB)"},
		{TopicConfig{SegmentBytes: 5 << 30}, "segment_bytes 5368709120 is out of range"},
	} {
		tc.cfg.Name, tc.cfg.Partitions = "bad", 1
		_, err := b.CreateTopic(ctx, tc.cfg)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "nothing was created") {
			t.Errorf("%+v: %v; want ErrInvalidArgument saying %q", tc.cfg, err, tc.says)
		}
		data, _ := json.Marshal(tc.cfg)
		if _, err := decodeTopicConfig("bad", data); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("stored %s: %v", data, err)
		}
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1, RetentionMs: MaxRetentionMs, RetentionBytes: MaxRetentionBytes, SegmentBytes: MaxSegmentBytes}); err != nil {
		t.Fatal(err)
	}
}

// The broker's own sizes keep every object it stores with one PUT well
// below S3's 5 GiB limit.
func TestConfigBoundsObjectSizes(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		says string
	}{
		{func(c *Config) { c.WAL.FlushBytes = 2 << 30 }, "WAL.FlushBytes 2147483648 is over the limit of 1073741824"},
		{func(c *Config) { c.WAL.FlushBytes, c.WAL.MaxBufferedBytes = 64<<20, 32<<20 }, "MaxBufferedBytes 33554432 is below FlushBytes 67108864"},
		{func(c *Config) { c.WAL.MaxBufferedBytes = 5 << 30 }, "WAL.MaxBufferedBytes 5368709120 is over the limit"},
		{func(c *Config) { c.Partition.SealBytes = 2 << 30 }, "SealBytes 2147483648 is over the limit"},
		{func(c *Config) { c.Partition.SealBytes = 0 }, "SealBytes 0 must be positive"},
		{func(c *Config) { c.WAL.FlushInterval = 0 }, "FlushInterval, FlushBytes, MaxBufferedBytes, RetryMax and ProbeInterval must be positive"},
		{func(c *Config) { c.Cache.MemoryBytes = 0 }, "MemoryBytes 0 must be positive"},
	} {
		cfg := testConfig(t, tier.NewMemStore())
		tc.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v; want %q", err, tc.says)
		}
	}
	cfg := testConfig(t, tier.NewMemStore())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// MaxRecordBytes counts the per-record and per-header overhead, and a
// request with one record over it appends nothing.
func TestRecordCostLimit(t *testing.T) {
	cfg := testConfig(t, tier.NewMemStore())
	cfg.MaxRecordBytes = 1000
	b := newBroker(t, cfg)
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	recs := []segment.Record{{}, {}, {}, {}, {Value: make([]byte, 1000-RecordOverheadBytes+1)}}
	_, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: recs})
	var ce *Error
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &ce) || !strings.Contains(err.Error(), "record 4 costs 1001 bytes") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("record over the limit with its overhead: %v", err)
	}
	if n, err := b.ListOffsets(ctx, "t", 0, Position{Kind: StartLatest}); err != nil || n != 0 {
		t.Fatalf("high watermark %d, %v: want 0, nothing appended", n, err)
	}
	h := RecordCost(&segment.Record{Headers: []segment.Header{{}, {}}})
	if h != RecordOverheadBytes+2*HeaderOverheadBytes {
		t.Fatalf("a record with two empty headers costs %d", h)
	}
}

// A read of an idle partition answers (empty) after its MaxWait, even when
// the partition's view wakes the wait with nothing to read (a bucket
// view's refreshes): the wait has one deadline. It used to start again on
// every wake-up, so `strata consume` over a topic with an empty partition
// never returned.
func TestFetchOfAnIdlePartitionAnswers(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: []segment.Record{{Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got []*FetchResult
	err := b.Fetch(rctx, &FetchRequest{Topic: "t", Partition: 1, Start: Position{Kind: StartEarliest}, MaxWait: 3 * viewRefresh},
		func(r *FetchResult) error { got = append(got, r); return nil })
	if err != nil || len(got) != 1 || len(got[0].Records) != 0 {
		t.Fatalf("fetch of the idle partition: %v, %d results; want one empty result", err, len(got))
	}
}

// A follower that began on a partition not open here (no write yet: a
// bucket view, polled every viewPoll) is woken when a write opens the
// partition here, and sees the record as soon as it is durable, not a
// poll later. The poll is an hour here: without the wake-up the fetch
// would wait for it and the test would time out.
func TestFollowerWakesWhenThePartitionOpensHere(t *testing.T) {
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	b.viewPoll = time.Hour
	ctx := context.Background()
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := make(chan []segment.Record, 1)
	go func() {
		b.Fetch(rctx, &FetchRequest{Topic: "t", Partition: 0, Start: Position{Kind: StartEarliest}, Follow: true, MaxWait: time.Hour},
			func(r *FetchResult) error {
				if len(r.Records) > 0 {
					select {
					case got <- r.Records:
					default:
					}
				}
				return nil
			})
	}()
	// The follower is on the bucket view once the view exists.
	tp, err := b.loadTopic(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for {
		tp.mu.Lock()
		v := tp.views[0]
		tp.mu.Unlock()
		if v != nil {
			break
		}
		if rctx.Err() != nil {
			t.Fatal("the follower never read the bucket view")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := b.Produce(ctx, &ProduceRequest{Topic: "t", Partition: 0, Records: []segment.Record{{Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case recs := <-got:
		if len(recs) != 1 || string(recs[0].Value) != "x" {
			t.Fatalf("follower got %v", recs)
		}
	case <-rctx.Done():
		t.Fatal("the follower was not woken when the partition opened here: it waits for the bucket view's next poll")
	}
}
