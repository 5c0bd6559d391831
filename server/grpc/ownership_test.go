package grpcserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

func mustCreate(t *testing.T, c stratapb.StrataClient, name string, partitions int32) {
	t.Helper()
	if _, err := c.CreateTopic(context.Background(), &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: name, Partitions: partitions}}); err != nil {
		t.Fatal(err)
	}
}

func produceTo(t *testing.T, c stratapb.StrataClient, topic string, p int32, values ...string) []int64 {
	t.Helper()
	req := &stratapb.ProduceRequest{Topic: topic, Partition: p, Acks: stratapb.Acks_ACKS_DURABLE}
	for _, v := range values {
		req.Records = append(req.Records, &stratapb.Record{Value: []byte(v)})
	}
	resp, err := c.Produce(context.Background(), req)
	if err != nil {
		t.Fatalf("produce %v to %s/%d: %v", values, topic, p, err)
	}
	return resp.Offsets
}

// readAll fetches partition p from offset 0 up to the high watermark the
// broker reports.
func readAll(t *testing.T, c stratapb.StrataClient, topic string, p int32) []string {
	t.Helper()
	ctx := context.Background()
	lo, err := c.ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: topic, Partition: p, Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}})
	if err != nil {
		t.Fatalf("list offsets of %s/%d: %v", topic, p, err)
	}
	var out []string
	for next := int64(0); next < lo.Offset; {
		st, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: topic, Partition: p, Start: &stratapb.FetchRequest_Offset{Offset: next}, MaxWaitMs: 10})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil && err != io.EOF {
			t.Fatalf("fetch %s/%d at %d: %v", topic, p, next, err)
		}
		if resp == nil || len(resp.Records) == 0 {
			t.Fatalf("fetch %s/%d at %d returned nothing below the high watermark %d", topic, p, next, lo.Offset)
		}
		for _, r := range resp.Records {
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
		a, _, _ := start(t, s, t.TempDir())
		b, _, _ := start(t, s, t.TempDir())
		mustCreate(t, a, "t", 2)
		var want [2][]string
		for i := 0; i < 5; i++ {
			for p := int32(0); p < 2; p++ {
				v := fmt.Sprintf("p%d-%d", p, i)
				produceTo(t, a, "t", p, v)
				want[p] = append(want[p], v)
			}
			ctx := context.Background()
			if _, err := b.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "t"}); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 2; p++ {
				if got := readAll(t, b, "t", p); fmt.Sprint(got) != fmt.Sprint(want[p]) {
					t.Fatalf("the second broker reads %s/%d as %v, want %v (the durable tail)", "t", p, got, want[p])
				}
			}
		}
		d, err := b.DescribeTopic(context.Background(), &stratapb.DescribeTopicRequest{Name: "t"})
		if err != nil {
			t.Fatal(err)
		}
		for _, pi := range d.Partitions {
			if pi.HighWatermark != 5 {
				t.Fatalf("the second broker describes partition %d with high watermark %d, want 5", pi.Partition, pi.HighWatermark)
			}
		}
		for p := int32(0); p < 2; p++ {
			m, _, err := meta.NewManifestStore(s, manifestTopic(t, s, "t"), p).Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if m.Epoch != 1 {
				t.Fatalf("partition %d is at epoch %d after reads on another broker, want 1 (never claimed)", p, m.Epoch)
			}
		}
	})
}

// manifestTopic is the storage name of a topic (name/id) from its config.
func manifestTopic(t *testing.T, s tier.Store, name string) string {
	t.Helper()
	rc, _, err := s.Get(context.Background(), "topics/"+name+"/config.json")
	if err != nil {
		t.Fatalf("topic %s config: %v", name, err)
	}
	defer rc.Close()
	var cfg struct {
		ID string `json:"topic_id"`
	}
	if err := json.NewDecoder(rc).Decode(&cfg); err != nil || cfg.ID == "" {
		t.Fatalf("topic %s config has no identity: %v", name, err)
	}
	return name + "/" + cfg.ID
}

// Issue 11, section 1: a broker that loses one partition to another broker
// (which fences its whole WAL incarnation) keeps serving the partitions it
// still owns, under a new incarnation, and loses nothing it acked.
func TestFencedBrokerKeepsServingWhatItStillOwns(t *testing.T) {
	s := storetest.File(t)
	a, ba, _ := start(t, s, t.TempDir())
	b, _, _ := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 2)
	produceTo(t, a, "t", 0, "a0-0")
	produceTo(t, a, "t", 1, "a1-0")
	old := ba.Incarnation()
	produceTo(t, b, "t", 0, "b0-0") // b takes partition 0 over and fences a's incarnation
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for i := 1; ; i++ {
		// a learns of the fence at its next WAL write; that write fails
		// (retryable), later ones go through a new incarnation.
		_, err = a.Produce(context.Background(), &stratapb.ProduceRequest{Topic: "t", Partition: 1, Records: []*stratapb.Record{{Value: []byte(fmt.Sprintf("a1-%d", i))}}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker a no longer takes writes to partition 1, which it still owns: %v", err)
		}
	}
	if ba.Incarnation() == old {
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
		a, _, _ := start(t, s, t.TempDir())
		b, bb, _ := start(t, s, t.TempDir())
		ctx := context.Background()
		mustCreate(t, a, "t", 1)
		produceTo(t, a, "t", 0, "old-0", "old-1", "old-2", "old-3", "old-4")
		produceTo(t, b, "t", 0, "old-5") // b opens the partition too
		if _, err := a.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "t"}); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, a, "t", 1)
		if err := bb.RefreshTopics(ctx); err != nil {
			t.Fatal(err)
		}
		offs := produceTo(t, b, "t", 0, "new-0", "new-1", "new-2")
		if offs[0] != 0 {
			t.Fatalf("the re-created topic's first record got offset %d, want 0", offs[0])
		}
		c, _, _ := start(t, s, t.TempDir()) // a third broker, empty disk: reads the WAL tail
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
	a, _, _ := start(t, s, t.TempDir())
	b, bb, _ := start(t, s, t.TempDir())
	ctx := context.Background()
	mustCreate(t, a, "t", 1)
	produceTo(t, b, "t", 0, "x")
	if _, err := a.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := bb.RefreshTopics(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := b.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: []byte("y")}}})
	if code(err).String() != "NotFound" {
		t.Fatalf("produce to a topic deleted through another broker: %v, want NotFound", err)
	}
}

// A partition whose manifest CAS lost to a claimer that never fenced our
// WAL (it crashed first) is not stuck refusing writes: the write after the
// refusal claims it again.
func TestLostManifestCASDoesNotStickThePartition(t *testing.T) {
	s := storetest.File(t)
	a, _, _ := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 1)
	produceTo(t, a, "t", 0, "first")
	ms := meta.NewManifestStore(s, manifestTopic(t, s, "t"), 0)
	m, etag, err := ms.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	next := m.Clone()
	next.Epoch++
	next.Generation++
	next.WALOwners = append(next.WALOwners, m.Owner)
	next.Owner = "crashed-claimer"
	if _, err := ms.Update(context.Background(), etag, next); err != nil {
		t.Fatal(err)
	}
	big := string(make([]byte, 900))
	refused := false
	deadline := time.Now().Add(20 * time.Second)
	for !refused && time.Now().Before(deadline) {
		// 32 KiB segments: these writes make the partition seal, and its
		// manifest CAS then finds the other claim.
		req := &stratapb.ProduceRequest{Topic: "t", Partition: 0}
		for i := 0; i < 40; i++ {
			req.Records = append(req.Records, &stratapb.Record{Value: []byte(big)})
		}
		_, err := a.Produce(context.Background(), req)
		refused = err != nil
	}
	if !refused {
		t.Fatal("the partition never noticed the other claim")
	}
	var last error
	for i := 0; i < 3; i++ {
		if _, last = a.Produce(context.Background(), &stratapb.ProduceRequest{Topic: "t", Partition: 0, Records: []*stratapb.Record{{Value: []byte("after")}}}); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("writes after the lost CAS keep failing: %v", last)
	}
	if got := readAll(t, a, "t", 0); got[0] != "first" || got[len(got)-1] != "after" {
		t.Fatalf("log after the reclaim starts %q and ends %q", got[0], got[len(got)-1])
	}
}
