// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"testing"
	"time"

	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// Records already in the group's window whose segments retention then
// drops are not skipped: a receive that picks one fails as a whole (after
// logging every lease it made), again and again.
func TestShareRegressionRetentionDropsRecordInWindow(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, tier.NewMemStore())
	cfg.Partition.SealBytes = 1 << 20
	cfg.Partition.SealInterval = 100 * time.Millisecond
	cfg.Partition.CheckInterval = 100 * time.Millisecond
	b := newBroker(t, cfg)
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "jobs", Partitions: 1, RetentionMs: 1500}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "workers", VisibilityMs: 1000}); err != nil {
		t.Fatal(err)
	}
	receive(t, b, "jobs", "workers", 1, 0) // the state is live: the share loop reads ahead
	for i := 0; i < 40; i++ {
		if _, err := b.Produce(ctx, &ProduceRequest{Topic: "jobs", Partition: 0, Records: []segment.Record{{Value: make([]byte, 900<<10)}}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // the share loop reads the 40 into the window; retention drops them
	fails := 0
	for i := 0; i < 5; i++ {
		ds, err := b.Receive(ctx, &ReceiveRequest{Topic: "jobs", Group: "workers", MaxRecords: 1000, Wait: time.Second})
		if err != nil {
			fails++
			t.Logf("receive: %v", err)
		} else {
			t.Logf("received %d", len(ds))
		}
		time.Sleep(time.Second)
	}
	d, _ := b.DescribeShareGroup(ctx, "jobs", "workers")
	t.Logf("describe: available %d in flight %d backoff %d dlq-pending %d dead-lettered %d", d.Available, d.InFlight, d.Backoff, d.DeadLetterPending, d.DeadLettered)
	if fails > 1 {
		t.Fatalf("%d of 5 receives failed on records retention dropped", fails)
	}
}
