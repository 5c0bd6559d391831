package client_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stratalog/strata/client"
)

// produceTo writes n records "v<i>" to partition p of topic and waits for
// their acks.
func produceTo(t *testing.T, c *client.Client, topic string, p int32, n int) {
	t.Helper()
	ctx := context.Background()
	prod := c.NewProducer(topic, client.WithPartition(p))
	for i := 0; i < n; i++ {
		if _, err := prod.Send(ctx, client.Record{Value: []byte(fmt.Sprint("v", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// pollRecords polls k until it has returned n records (a test broker has
// them all, so a handful of Polls do).
func pollRecords(t *testing.T, k *client.Consumer, n int) []client.Record {
	t.Helper()
	var out []client.Record
	for i := 0; len(out) < n; i++ {
		if i == 50 {
			t.Fatalf("50 Polls returned %d records, want %d", len(out), n)
		}
		recs, err := k.Poll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

// TestSeekAssignMode: a consumer without a group starts a partition
// anywhere, forward or back, and refuses partitions it does not read.
func TestSeekAssignMode(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "s", 2); err != nil {
		t.Fatal(err)
	}
	produceTo(t, c, "s", 1, 10)
	k, err := c.NewConsumer(ctx, "s", client.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close(ctx)
	if err := k.Seek(0, 0); err == nil {
		t.Fatal("seek of partition 0, not read by this consumer, was accepted")
	}
	if err := k.Seek(1, -1); err == nil {
		t.Fatal("seek to offset -1 was accepted")
	}
	if err := k.Seek(1, 7); err != nil {
		t.Fatal(err)
	}
	recs := pollRecords(t, k, 3)
	if len(recs) != 3 || recs[0].Offset != 7 || string(recs[0].Value) != "v7" || recs[2].Offset != 9 {
		t.Fatalf("after Seek(1, 7): %d records from offset %d, want offsets 7-9", len(recs), recs[0].Offset)
	}
	if err := k.Seek(1, 2); err != nil {
		t.Fatal(err)
	}
	if recs := pollRecords(t, k, 8); recs[0].Offset != 2 || len(recs) != 8 {
		t.Fatalf("after Seek(1, 2): %d records from offset %d, want offsets 2-9", len(recs), recs[0].Offset)
	}
}

// TestSeekGroupHandsBackRecords: a group member Polls more than it
// handles, Seeks each partition back to its first unhandled record and
// closes; the commit stops there, so the next member of the group gets
// exactly the unhandled records. A group consumer never seeks forward.
func TestSeekGroupHandsBackRecords(t *testing.T) {
	c := startBroker(t)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "g", 2); err != nil {
		t.Fatal(err)
	}
	produceTo(t, c, "g", 0, 20)
	produceTo(t, c, "g", 1, 20)
	a, err := c.NewConsumer(ctx, "g", client.WithGroup("crew", client.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Seek(0, 0); err == nil {
		t.Fatal("a group member without a position accepted a seek")
	}
	recs := pollRecords(t, a, 40)
	if len(recs) != 40 {
		t.Fatalf("first member polled %d records, want 40", len(recs))
	}
	if err := a.Seek(0, 21); err == nil {
		t.Fatal("a group member seeked forward past what Poll returned")
	}
	// Handled: partition 0 up to offset 4, nothing of partition 1.
	if err := a.Seek(0, 5); err != nil {
		t.Fatal(err)
	}
	if err := a.Seek(1, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := c.NewConsumer(ctx, "g", client.WithGroup("crew", client.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	first := map[int32]int64{}
	count := map[int32]int{}
	for _, r := range pollRecords(t, b, 35) {
		if _, ok := first[r.Partition]; !ok {
			first[r.Partition] = r.Offset
		}
		count[r.Partition]++
	}
	if first[0] != 5 || count[0] != 15 || first[1] != 0 || count[1] != 20 {
		t.Fatalf("the next member read partition 0 from %d (%d records) and partition 1 from %d (%d records); want 5 (15) and 0 (20)",
			first[0], count[0], first[1], count[1])
	}
}
