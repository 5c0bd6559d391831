package grpcserver_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
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

// A partition whose manifest CAS lost to a claimer that never fenced our
// WAL (it crashed first) is not stuck refusing writes: the write after the
// refusal claims it again.
func TestLostManifestCASDoesNotStickThePartition(t *testing.T) {
	s := storetest.File(t)
	a, _, _ := start(t, s, t.TempDir())
	mustCreate(t, a, "t", 1)
	produceTo(t, a, "t", 0, "first")
	ms := meta.NewManifestStore(s, storetest.TopicStorageName(t, s, "t"), 0)
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
