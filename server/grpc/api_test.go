package grpcserver_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

// start runs a broker on a loopback port and returns a client.
func start(t *testing.T, store tier.Store, dir string) (stratapb.StrataClient, *core.Broker, string) {
	t.Helper()
	cfg := brokertest.Config(t, store)
	cfg.DataDir = dir
	cfg.MaxRecordBytes = 1000
	cfg.Partition.SealBytes = 32 << 10
	b, addr := brokertest.Start(t, cfg)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return stratapb.NewStrataClient(conn), b, addr
}

func code(err error) codes.Code { return status.Code(err) }

func TestErrorsAreStatusCodesWithAdvice(t *testing.T) {
	c, _, _ := start(t, tier.NewMemStore(), t.TempDir())
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
		says string
	}{
		{"unknown topic", func() error {
			_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "nope", Records: []*stratapb.Record{{Value: []byte("x")}}})
			return err
		}, codes.NotFound, "strata topic create"},
		{"invalid name", func() error {
			_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "bad name!", Partitions: 1}})
			return err
		}, codes.InvalidArgument, "invalid topic name"},
		{"zero partitions", func() error {
			_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "z", Partitions: 0}})
			return err
		}, codes.InvalidArgument, "at least 1"},
		{"negative partitions", func() error {
			_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "z", Partitions: -3}})
			return err
		}, codes.InvalidArgument, "at least 1"},
		{"exists", func() error {
			_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 2}})
			return err
		}, codes.AlreadyExists, "already exists"},
		{"record too large", func() error {
			_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: []byte("ok")}, {Value: make([]byte, 2000)}}})
			return err
		}, codes.InvalidArgument, "1000-byte limit"},
		{"partition out of range", func() error {
			_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 7, Records: []*stratapb.Record{{Value: []byte("x")}}})
			return err
		}, codes.InvalidArgument, "partitions 0-1"},
		{"fetch partition out of range", func() error {
			s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "t", Partition: 2})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.InvalidArgument, "partitions 0-1"},
		{"empty produce", func() error {
			_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "t"})
			return err
		}, codes.InvalidArgument, "at least one"},
	} {
		err := tc.call()
		if code(err) != tc.want || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: got %v, want %v saying %q", tc.name, err, tc.want, tc.says)
		}
	}
	// The oversized request appended nothing, not even its valid record.
	d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "t"})
	if err != nil || d.Partitions[0].HighWatermark != 0 {
		t.Fatalf("a rejected request reached the log: %v %v", d, err)
	}
}

func TestProduceFetchAndLongPoll(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		c, _, _ := start(t, store, t.TempDir())
		ctx := context.Background()
		if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "ev", Partitions: 3}}); err != nil {
			t.Fatal(err)
		}
		// Keys pin partitions: every record of one key lands in one
		// partition, in order.
		var recs []*stratapb.Record
		for i := 0; i < 3000; i++ {
			recs = append(recs, &stratapb.Record{Key: []byte(fmt.Sprintf("user-%d", i%10)), Value: []byte(fmt.Sprintf("%d", i))})
		}
		resp, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "ev", Partition: -1, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		keyPart := map[string]int32{}
		for i, p := range resp.Partitions {
			k := string(recs[i].Key)
			if q, ok := keyPart[k]; ok && q != p {
				t.Fatalf("key %s went to partitions %d and %d", k, q, p)
			}
			keyPart[k] = p
		}
		total := 0
		for p := int32(0); p < 3; p++ {
			s, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: "ev", Partition: p, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			next := int64(0)
			for {
				for _, r := range m.Records {
					if r.Offset != next {
						t.Fatalf("partition %d: offset %d, want %d", p, r.Offset, next)
					}
					next++
					total++
				}
				if next >= m.HighWatermark {
					break
				}
				s, err = c.Fetch(ctx, &stratapb.FetchRequest{Topic: "ev", Partition: p, Start: &stratapb.FetchRequest_Offset{Offset: next}, MaxBytes: 4096})
				if err != nil {
					t.Fatal(err)
				}
				if m, err = s.Recv(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if total != 3000 {
			t.Fatalf("fetched %d records, produced 3000", total)
		}
		// A tailing fetch from latest receives a record produced after it
		// started, without polling.
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := c.Fetch(fctx, &stratapb.FetchRequest{Topic: "ev", Partition: 0, Start: &stratapb.FetchRequest_Latest{Latest: true}, Follow: true, MaxWaitMs: 60000})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *stratapb.FetchResponse, 1)
		go func() {
			m, err := s.Recv()
			if err == nil {
				got <- m
			}
			close(got)
		}()
		time.Sleep(50 * time.Millisecond) // let the stream start waiting
		if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "ev", Partition: 0, Records: []*stratapb.Record{{Value: []byte("tail")}}}); err != nil {
			t.Fatal(err)
		}
		m, ok := <-got
		if !ok || len(m.Records) != 1 || string(m.Records[0].Value) != "tail" {
			t.Fatalf("the tailing consumer got %v", m)
		}
		// Below the log start is OutOfRange and names it.
		o, err := c.ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: "ev", Partition: 0, Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}})
		if err != nil || o.Offset != m.HighWatermark {
			t.Fatalf("ListOffsets latest = %v, %v; want %d", o, err, m.HighWatermark)
		}
	})
}

// GetStats counts WAL objects on the writing broker, and on a broker with
// an empty disk that replays the sealed history: misses and GETs first,
// hits when the same records are read again.
func TestStatsCountWALAndColdReads(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store tier.Store) {
		ctx := context.Background()
		a, ab, _ := start(t, store, t.TempDir())
		if _, err := a.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "ev", Partitions: 1}}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			var recs []*stratapb.Record
			for j := 0; j < 100; j++ {
				recs = append(recs, &stratapb.Record{Value: []byte(strings.Repeat(fmt.Sprint(i*100+j), 50))})
			}
			if _, err := a.Produce(ctx, &stratapb.ProduceRequest{Topic: "ev", Partition: 0, Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := a.GetStats(ctx, &stratapb.GetStatsRequest{})
		if err != nil || st.WalObjects == 0 || st.WalBytes == 0 || st.WalPutAttempts < st.WalObjects || st.Incarnation == "" {
			t.Fatalf("writer stats %+v, %v: want WAL objects counted", st, err)
		}
		if err := ab.Close(ctx); err != nil { // seals everything
			t.Fatal(err)
		}

		b, _, _ := start(t, store, t.TempDir())
		readAll := func() {
			t.Helper()
			s, err := b.Fetch(ctx, &stratapb.FetchRequest{Topic: "ev", Partition: 0, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxBytes: 8 << 20})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for n < 2000 {
				m, err := s.Recv()
				if err != nil {
					t.Fatalf("after %d records: %v", n, err)
				}
				n += len(m.Records)
			}
		}
		readAll()
		cold, err := b.GetStats(ctx, &stratapb.GetStatsRequest{})
		if err != nil || cold.CacheMisses == 0 || cold.ObjectGets == 0 || cold.ObjectGetBytes == 0 || cold.WalObjects != 0 {
			t.Fatalf("cold reader stats %+v, %v: want misses and GETs, no WAL objects", cold, err)
		}
		readAll()
		warm, _ := b.GetStats(ctx, &stratapb.GetStatsRequest{})
		if warm.CacheHits <= cold.CacheHits || warm.ObjectGets > cold.ObjectGets+1 {
			t.Fatalf("second read: hits %d -> %d, GETs %d -> %d; want hits up and no new block GETs", cold.CacheHits, warm.CacheHits, cold.ObjectGets, warm.ObjectGets)
		}
	})
}

// Partitions open in parallel, each once: many first writes at the same
// time, several to each partition, all land at dense offsets from 0. A
// DeleteTopic racing with first opens leaves nothing open or stored.
func TestPartitionsOpenInParallelOnce(t *testing.T) {
	ctx := context.Background()
	store := storetest.File(t)
	c, _, _ := start(t, store, t.TempDir())
	const parts, writers = 32, 3
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "wide", Partitions: parts}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, parts*writers)
	for p := int32(0); p < parts; p++ {
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "wide", Partition: p, Records: []*stratapb.Record{{Value: []byte("x")}}})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "wide"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Partitions {
		if p.HighWatermark != writers {
			t.Fatalf("partition %d holds %d records, want %d", p.Partition, p.HighWatermark, writers)
		}
	}

	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "doomed", Partitions: parts}}); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Produce(ctx, &stratapb.ProduceRequest{Topic: "doomed", Partition: p, Records: []*stratapb.Record{{Value: []byte("x")}}})
		}()
	}
	if _, err := c.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "doomed"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "doomed"}); code(err) != codes.NotFound {
		t.Fatalf("describe after delete: %v, want NotFound", err)
	}
}

// barrierStore holds each manifest GET until n of them wait together (or
// a second passes), and records the most that ever waited at once.
type barrierStore struct {
	tier.Store
	n       int
	mu      sync.Mutex
	waiting int
	most    int
	release chan struct{}
}

func (s *barrierStore) Get(ctx context.Context, key string) (io.ReadCloser, tier.ObjectInfo, error) {
	if strings.HasSuffix(key, "/manifest.json") {
		s.mu.Lock()
		s.waiting++
		s.most = max(s.most, s.waiting)
		if s.waiting == s.n {
			close(s.release)
		}
		release := s.release
		s.mu.Unlock()
		select {
		case <-release:
		case <-time.After(time.Second):
		}
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}
	return s.Store.Get(ctx, key)
}

// First writes to different partitions open them at the same time: all
// four manifest loads are in flight together.
func TestPartitionOpensOverlap(t *testing.T) {
	ctx := context.Background()
	const parts = 4
	bs := &barrierStore{Store: storetest.File(t), n: parts, release: make(chan struct{})}
	c, _, _ := start(t, bs, t.TempDir())
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "four", Partitions: parts}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := int32(0); p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "four", Partition: p, Records: []*stratapb.Record{{Value: []byte("x")}}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.most != parts {
		t.Fatalf("at most %d partition opens overlapped, want all %d", bs.most, parts)
	}
}

// consumed_by goes through the wire both ways: a topic created with it
// lists and describes with it, and a bad group name in it is refused.
func TestTopicConsumedBy(t *testing.T) {
	c, _, _ := start(t, tier.NewMemStore(), t.TempDir())
	ctx := context.Background()
	resp, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "work", Partitions: 1, ConsumedBy: []string{"g1", "g2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Config.ConsumedBy; len(got) != 2 || got[0] != "g1" || got[1] != "g2" {
		t.Fatalf("create answered consumed_by %v, want [g1 g2]", got)
	}
	d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "work"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Config.ConsumedBy; len(got) != 2 || got[0] != "g1" || got[1] != "g2" {
		t.Fatalf("describe answered consumed_by %v, want [g1 g2]", got)
	}
	l, err := c.ListTopics(ctx, &stratapb.ListTopicsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tc := range l.Topics {
		if tc.Name == "work" {
			found = len(tc.ConsumedBy) == 2
		}
	}
	if !found {
		t.Fatalf("list did not answer topic work with its consumed_by: %v", l.Topics)
	}
	_, err = c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "bad", Partitions: 1, ConsumedBy: []string{"no spaces"}}})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "consumed_by") {
		t.Fatalf("a bad group name in consumed_by: %v, want INVALID_ARGUMENT naming consumed_by", err)
	}
}
