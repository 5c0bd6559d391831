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

// Altering ordered_by_key from true to false strands the key-blocked
// records: settled() frees a key only for keyed() records, which none is
// any more, so the next record of the key is never made available (until
// a rebuild).
func TestShareRegressionAlterUnorderedStrandsKeyBlocked(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	shareTopic(t, b, "jobs", 1, ShareGroupConfig{OrderedByKey: true})
	if _, err := b.Produce(ctx, &ProduceRequest{Topic: "jobs", Partition: 0, Records: []segment.Record{{Key: []byte("k"), Value: []byte("a")}, {Key: []byte("k"), Value: []byte("b")}}}); err != nil {
		t.Fatal(err)
	}
	ds := receive(t, b, "jobs", "workers", 10, time.Second)
	if len(ds) != 1 {
		t.Fatalf("ordered: %d in flight", len(ds))
	}
	if _, err := b.AlterShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "workers", OrderedByKey: false}); err != nil {
		t.Fatal(err)
	}
	settle(t, b, "jobs", "workers", SettleAck, ds)
	if got := receive(t, b, "jobs", "workers", 10, 2*time.Second); len(got) != 1 {
		d, _ := b.DescribeShareGroup(ctx, "jobs", "workers")
		t.Fatalf("after the alter and the ack: received %d; key-blocked %d", len(got), d.KeyBlocked)
	}
}

// Rebuilds apply every event under the group's current settings. After
// max_deliveries is raised, a rebuild replays an old dead-letter move with
// the record not dead-letter pending (its last nack is a backoff now): the
// DeadLetterAssign is ignored, so the dead-letter sequence goes back, and
// the next move reuses a sequence the dead-letter partition already
// stored: answered as a duplicate, the record is settled without a copy.
func TestShareRegressionAlterMaxDeliveriesReusesDLQSequence(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	b1 := newBroker(t, testConfig(t, store))
	shareTopic(t, b1, "jobs", 1, ShareGroupConfig{MaxDeliveries: 1, BackoffMinMs: 1, BackoffMaxMs: 1})
	produceN(t, b1, "jobs", 1, nil)
	ds := receive(t, b1, "jobs", "workers", 1, time.Second)
	settle(t, b1, "jobs", "workers", SettleNack, ds)
	waitDead := func(b *Broker, n int64) {
		t.Helper()
		for i := 0; i < 100; i++ {
			d, err := b.DescribeShareGroup(ctx, "jobs", "workers")
			if err == nil && d.DeadLettered == n {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("dead-lettered count never reached %d", n)
	}
	waitDead(b1, 1)
	if _, err := b1.AlterShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "workers", MaxDeliveries: 2, BackoffMinMs: 1, BackoffMaxMs: 1}); err != nil {
		t.Fatal(err)
	}
	// b1 stops first: two brokers without a cluster both claim what they
	// write to, and b1's own share maintenance would take the partitions
	// back from b2 at its next write.
	if err := b1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b2 := newBroker(t, testConfig(t, store)) // takes over, rebuilds under max 2
	produceN(t, b2, "jobs", 1, nil)
	first := receive(t, b2, "jobs", "workers", 1, time.Second)
	b2.shares.mu.Lock()
	for _, rt := range b2.shares.runtimes {
		pid, seq := rt.st.Producer()
		t.Logf("rebuilt: dead-letter producer %d next sequence %d", pid, seq)
	}
	b2.shares.mu.Unlock()
	settle(t, b2, "jobs", "workers", SettleNack, first)
	if ds := receive(t, b2, "jobs", "workers", 1, 3*time.Second); len(ds) == 1 {
		settle(t, b2, "jobs", "workers", SettleNack, ds)
	} else {
		t.Fatalf("second delivery: %d", len(ds))
	}
	waitDead(b2, 2)
	hw, err := b2.ListOffsets(ctx, "jobs.dlq.workers", 0, Position{Kind: StartLatest})
	t.Logf("dead-letter topic high watermark %d (%v)", hw, err)
	if hw != 2 {
		t.Fatalf("2 records dead-lettered, the dead-letter topic holds %d", hw)
	}
}
